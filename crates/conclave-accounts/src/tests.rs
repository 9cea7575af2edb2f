//! The account rules end to end on an SQLite store with mail in a folder,
//! including the attacks each rule is there to stop.

use std::net::IpAddr;
use std::path::PathBuf;

use super::*;

const PW: &str = "correct horse battery staple";
const T0: i64 = 1_700_000_000;

struct Fixture {
    accounts: Accounts,
    mail_dir: PathBuf,
    dir: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn addr(s: &str) -> IpAddr {
    s.parse().expect("address")
}

async fn fixture_with(change: impl FnOnce(&mut Settings)) -> Fixture {
    let dir = std::env::temp_dir().join(format!("conclave-accounts-{}", conclave_types::random_base62(10)));
    let store = Store::open_sqlite(&dir.join("db.sqlite")).await.expect("store");
    let mail_dir = dir.join("mail");
    let mailer = Mailer::folder(mail_dir.clone(), "Conclave <noreply@conclave.invalid>").expect("mailer");
    let mut settings = Settings::new(Url::parse("http://localhost:7880/").expect("url"), [7u8; 32]);
    change(&mut settings);
    let accounts = Accounts::new(store, settings, mailer).expect("accounts");
    Fixture {
        accounts,
        mail_dir,
        dir,
    }
}

async fn fixture() -> Fixture {
    fixture_with(|_| {}).await
}

impl Fixture {
    /// All mails so far, decoded, oldest first.
    fn mails(&self) -> Vec<String> {
        let mut files: Vec<_> = std::fs::read_dir(&self.mail_dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .map(|f| {
                let raw = std::fs::read_to_string(f).expect("mail");
                raw.replace("=\r\n", "").replace("=3D", "=")
            })
            .collect()
    }

    fn last_token(&self) -> String {
        let mails = self.mails();
        let last = mails.last().expect("a mail");
        let at = last.find("#token=").expect("a link") + 7;
        last[at..at + 43].to_owned()
    }

    async fn active_user(&self, email: &str) -> User {
        self.accounts
            .register(email, "Ada Lovelace", PW, addr("192.0.2.200"), T0)
            .await
            .expect("register");
        self.accounts
            .confirm_email(&self.last_token(), T0 + 10)
            .await
            .expect("confirm");
        self.accounts
            .store()
            .user_by_email(email)
            .await
            .expect("lookup")
            .expect("exists")
    }

    async fn sign_in(&self, email: &str, now: i64) -> NewSession {
        self.accounts
            .sign_in(email, PW, addr("192.0.2.1"), "Chrome/156 Linux", None, now)
            .await
            .expect("sign in")
    }

    async fn current(&self, s: &NewSession, now: i64) -> CurrentSession {
        self.accounts.session(&s.token, now).await.expect("session")
    }
}

#[tokio::test]
async fn registration_needs_the_mailed_link_once_and_in_time() {
    let f = fixture().await;
    f.accounts
        .register("Ada@Example.org ", "Ada Lovelace", PW, addr("192.0.2.200"), T0)
        .await
        .expect("register");
    let token = f.last_token();
    assert!(f.mails()[0].contains("To: ada@example.org"));
    // Not usable before confirmation.
    let e = f
        .accounts
        .sign_in("ada@example.org", PW, addr("192.0.2.1"), "", None, T0 + 5)
        .await
        .expect_err("unconfirmed");
    assert!(matches!(e, AccountsError::NotConfirmed));
    // A forged or truncated token is refused.
    assert!(matches!(
        f.accounts.confirm_email(&token[..40], T0 + 6).await,
        Err(AccountsError::LinkInvalid)
    ));
    f.accounts.confirm_email(&token, T0 + 10).await.expect("confirm");
    // Reused link.
    assert!(matches!(
        f.accounts.confirm_email(&token, T0 + 11).await,
        Err(AccountsError::LinkInvalid)
    ));
    let s = f.sign_in("ada@example.org", T0 + 20).await;
    assert_eq!(s.level, SessionLevel::Full);

    // An expired link.
    f.accounts
        .register("bob@example.org", "Bob", PW, addr("192.0.2.200"), T0)
        .await
        .expect("register");
    let token = f.last_token();
    let late = T0 + f.accounts.settings().confirm_link_lifetime;
    assert!(matches!(
        f.accounts.confirm_email(&token, late).await,
        Err(AccountsError::LinkInvalid)
    ));
}

#[tokio::test]
async fn registration_rules() {
    let f = fixture().await;
    assert!(matches!(
        f.accounts
            .register(
                "ada@example.org",
                "Ada",
                "password123456",
                addr("192.0.2.200"),
                T0
            )
            .await,
        Err(AccountsError::WeakPassword(_))
    ));
    assert!(matches!(
        f.accounts
            .register("not-an-address", "Ada", PW, addr("192.0.2.200"), T0)
            .await,
        Err(AccountsError::Invalid(_))
    ));
    assert!(matches!(
        f.accounts
            .register("ada@example.org", "", PW, addr("192.0.2.200"), T0)
            .await,
        Err(AccountsError::Invalid(_))
    ));
    let closed = fixture_with(|s| s.self_registration = false).await;
    assert!(matches!(
        closed
            .accounts
            .register("ada@example.org", "Ada", PW, addr("192.0.2.200"), T0)
            .await,
        Err(AccountsError::RegistrationClosed)
    ));
}

#[tokio::test]
async fn registration_does_not_reveal_existing_accounts() {
    let f = fixture().await;
    f.active_user("ada@example.org").await;
    let before = f.mails().len();
    // Same answer as a new registration; the owner gets a notice instead of a link.
    f.accounts
        .register("ada@example.org", "Mallory", PW, addr("192.0.2.200"), T0 + 100)
        .await
        .expect("same answer");
    let mails = f.mails();
    assert_eq!(mails.len(), before + 1);
    assert!(mails[before].contains("exists already"));
    assert!(!mails[before].contains("#token="));
    // The account is unchanged.
    let u = f
        .accounts
        .store()
        .user_by_email("ada@example.org")
        .await
        .expect("get")
        .expect("user");
    assert_eq!(u.display_name, "Ada Lovelace");
}

#[tokio::test]
async fn sign_in_gives_one_answer_for_unknown_wrong_and_disabled() {
    let f = fixture().await;
    f.active_user("ada@example.org").await;
    let disabled = f.active_user("eve@example.org").await;
    f.accounts
        .store()
        .set_status(&disabled.id, UserStatus::Disabled, None)
        .await
        .expect("disable");
    let mut answers = Vec::new();
    let verified = || {
        f.accounts
            .hasher
            .verified
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    for (email, pw) in [
        ("nobody@example.org", PW),
        ("ada@example.org", "wrong password here"),
        ("eve@example.org", PW),
    ] {
        let before = verified();
        let e = f
            .accounts
            .sign_in(email, pw, addr("192.0.2.9"), "", None, T0 + 100)
            .await
            .expect_err("refused");
        // Each answer cost one password hash, so none comes sooner than
        // another: an unknown address verifies against a dummy hash.
        assert_eq!(verified() - before, 1, "{email}: hashes verified");
        answers.push((e.status(), e.client_message()));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
}

#[tokio::test]
async fn throttling_per_account_and_per_address() {
    let f = fixture().await;
    f.active_user("ada@example.org").await;
    let max = f.accounts.settings().account_throttle.max_failures;
    for i in 0..max {
        let e = f
            .accounts
            .sign_in(
                "ada@example.org",
                "wrong guess number",
                addr("198.51.100.1"),
                "",
                None,
                T0 + i,
            )
            .await
            .expect_err("wrong");
        assert!(matches!(e, AccountsError::SignInFailed));
    }
    // Locked: even the right password from another address waits.
    let e = f
        .accounts
        .sign_in("ada@example.org", PW, addr("203.0.113.5"), "", None, T0 + 10)
        .await
        .expect_err("locked");
    assert!(matches!(e, AccountsError::Throttled { .. }));
    // The owner was told.
    assert!(f.mails().last().expect("mail").contains("failed attempts"));
    // An unknown address locks the same way: throttling reveals nothing.
    for i in 0..max {
        let _ = f
            .accounts
            .sign_in(
                "ghost@example.org",
                "wrong guess number",
                addr("198.51.100.2"),
                "",
                None,
                T0 + i,
            )
            .await;
    }
    let e = f
        .accounts
        .sign_in("ghost@example.org", PW, addr("203.0.113.6"), "", None, T0 + 10)
        .await
        .expect_err("locked");
    assert!(matches!(e, AccountsError::Throttled { .. }));
    // After the lock, the right password works.
    let later = T0 + 10 + f.accounts.settings().account_throttle.lock;
    f.sign_in("ada@example.org", later).await;

    // Per source address: many accounts tried from one address.
    let per_address = f.accounts.settings().address_throttle.max_failures;
    for i in 0..per_address {
        let _ = f
            .accounts
            .sign_in(
                &format!("user{i}@example.org"),
                "wrong guess number",
                addr("2001:db8::1"),
                "",
                None,
                later,
            )
            .await;
    }
    // Another address of the same /64 is throttled too.
    let e = f
        .accounts
        .sign_in("ada@example.org", PW, addr("2001:db8::2"), "", None, later + 1)
        .await
        .expect_err("address locked");
    assert!(matches!(e, AccountsError::Throttled { .. }));
    // The stored throttle keys carry no address or e-mail.
    assert!(
        f.accounts
            .store()
            .find_text("2001:db8")
            .await
            .expect("search")
            .is_empty()
    );
    assert!(
        f.accounts
            .store()
            .find_text("ghost@")
            .await
            .expect("search")
            .is_empty()
    );
}

#[tokio::test]
async fn sessions_time_out_and_sign_in_replaces_the_old_session() {
    let f = fixture().await;
    f.active_user("ada@example.org").await;
    let s = f.sign_in("ada@example.org", T0).await;
    let idle = f.accounts.settings().session_idle;
    // Used within the idle time: stays alive up to the absolute limit.
    let mut now = T0;
    while now + idle - 60 < T0 + f.accounts.settings().session_absolute {
        now += idle - 60;
        if now >= T0 + f.accounts.settings().session_absolute {
            break;
        }
        f.current(&s, now).await;
    }
    assert!(matches!(
        f.accounts
            .session(&s.token, T0 + f.accounts.settings().session_absolute)
            .await,
        Err(AccountsError::NotSignedIn)
    ));
    // Idle timeout.
    let s = f.sign_in("ada@example.org", T0).await;
    assert!(matches!(
        f.accounts.session(&s.token, T0 + idle).await,
        Err(AccountsError::NotSignedIn)
    ));
    // Session fixation: a session id the browser had before sign-in is never kept.
    let planted = f.sign_in("ada@example.org", T0).await;
    let fresh = f
        .accounts
        .sign_in(
            "ada@example.org",
            PW,
            addr("192.0.2.1"),
            "",
            Some(&planted.token),
            T0 + 1,
        )
        .await
        .expect("sign in");
    assert_ne!(fresh.token, planted.token);
    assert!(f.accounts.session(&planted.token, T0 + 2).await.is_err());
    f.current(&fresh, T0 + 2).await;
    // CSRF token must match.
    let cur = f.current(&fresh, T0 + 3).await;
    assert!(f.accounts.csrf_ok(&cur, Some(&fresh.csrf)));
    assert!(!f.accounts.csrf_ok(&cur, None));
    assert!(!f.accounts.csrf_ok(&cur, Some(&planted.csrf)));
    // Listing and revoking.
    let other = f.sign_in("ada@example.org", T0 + 4).await;
    let list = f.accounts.sessions(&cur).await.expect("list");
    assert_eq!(list.iter().filter(|s| s.current).count(), 1);
    let other_id = secrets::token_hash(&other.token);
    f.accounts
        .revoke_session(&cur, &other_id, T0 + 5)
        .await
        .expect("revoke");
    assert!(f.accounts.session(&other.token, T0 + 6).await.is_err());
    assert!(matches!(
        f.accounts.revoke_session(&cur, &other_id, T0 + 6).await,
        Err(AccountsError::NotFound)
    ));
    f.accounts.sign_out(&fresh.token).await.expect("sign out");
    assert!(f.accounts.session(&fresh.token, T0 + 7).await.is_err());
}

#[tokio::test]
async fn totp_enrolment_sign_in_and_replay() {
    let f = fixture().await;
    f.active_user("ada@example.org").await;
    let s = f.sign_in("ada@example.org", T0).await;
    let cur = f.current(&s, T0).await;
    let setup = f.accounts.totp_begin(&cur, T0).await.expect("begin");
    assert!(
        setup
            .uri
            .starts_with("otpauth://totp/Conclave:ada%40example.org?")
    );
    // The secret is stored sealed, not as it was shown.
    let stored = f
        .accounts
        .store()
        .totp(&cur.user.id)
        .await
        .expect("get")
        .expect("totp");
    assert!(stored.secret.starts_with("v1.") && !stored.secret.contains(&setup.secret));
    assert!(matches!(
        f.accounts.totp_confirm(&cur, "000000", T0).await,
        Err(AccountsError::CodeInvalid)
    ));
    let code = totp::code_at(&setup.secret, T0).expect("code");
    let enrolled = f.accounts.totp_confirm(&cur, &code, T0).await.expect("confirm");
    let codes = enrolled.recovery_codes.expect("recovery codes");
    assert_eq!(codes.len(), 10);
    assert!(enrolled.session.is_none());
    // Recovery codes are stored hashed.
    assert!(
        f.accounts
            .store()
            .find_text(&codes[0].replace('-', ""))
            .await
            .expect("search")
            .is_empty()
    );

    // Sign in: the password alone is not enough now.
    let t1 = T0 + 300;
    let half = f.sign_in("ada@example.org", t1).await;
    assert_eq!(half.level, SessionLevel::SecondFactor);
    let half_cur = f.current(&half, t1).await;
    assert!(matches!(
        f.accounts.require_full(&half_cur),
        Err(AccountsError::StepDue)
    ));
    assert!(matches!(
        f.accounts.sessions(&half_cur).await,
        Err(AccountsError::StepDue)
    ));
    let code = totp::code_at(&setup.secret, t1).expect("code");
    let full = f.accounts.sign_in_totp(&half_cur, &code, t1).await.expect("totp");
    assert_eq!(full.level, SessionLevel::Full);
    // A new session id after the privilege change; the half session is gone.
    assert_ne!(full.token, half.token);
    assert!(f.accounts.session(&half.token, t1).await.is_err());

    // Replay: the same code in a second sign-in within its validity is refused.
    let again = f.sign_in("ada@example.org", t1 + 5).await;
    let again_cur = f.current(&again, t1 + 5).await;
    assert!(matches!(
        f.accounts.sign_in_totp(&again_cur, &code, t1 + 5).await,
        Err(AccountsError::CodeInvalid)
    ));
    // So is the code of an earlier step (still inside the skew window).
    let earlier = totp::code_at(&setup.secret, t1 - 30).expect("code");
    assert!(matches!(
        f.accounts.sign_in_totp(&again_cur, &earlier, t1 + 5).await,
        Err(AccountsError::CodeInvalid)
    ));
    // A recovery code works once.
    let rec = f
        .accounts
        .sign_in_recovery(&again_cur, &codes[0], t1 + 6)
        .await
        .expect("recovery");
    assert_eq!(rec.level, SessionLevel::Full);
    let third = f.sign_in("ada@example.org", t1 + 7).await;
    let third_cur = f.current(&third, t1 + 7).await;
    assert!(matches!(
        f.accounts.sign_in_recovery(&third_cur, &codes[0], t1 + 7).await,
        Err(AccountsError::CodeInvalid)
    ));
    // Guessing codes locks the second step.
    let mut last = None;
    for i in 0..6 {
        last = Some(f.accounts.sign_in_totp(&third_cur, "123456", t1 + 8 + i).await);
    }
    assert!(matches!(last, Some(Err(AccountsError::Throttled { .. }))));
}

#[tokio::test]
async fn administrators_must_enrol_a_second_factor() {
    let f = fixture().await;
    let admin = f.active_user("root@example.org").await;
    f.accounts
        .store()
        .set_role(&admin.id, Role::Admin)
        .await
        .expect("role");
    let s = f.sign_in("root@example.org", T0).await;
    assert_eq!(s.level, SessionLevel::MustEnrol);
    let cur = f.current(&s, T0).await;
    assert!(matches!(
        f.accounts.admin_users(&cur).await,
        Err(AccountsError::StepDue)
    ));
    let setup = f.accounts.totp_begin(&cur, T0).await.expect("begin");
    let code = totp::code_at(&setup.secret, T0).expect("code");
    let enrolled = f.accounts.totp_confirm(&cur, &code, T0).await.expect("confirm");
    let full = enrolled.session.expect("a new session after enrolment");
    assert!(f.accounts.session(&s.token, T0).await.is_err());
    let cur = f.current(&full, T0).await;
    assert_eq!(f.accounts.admin_users(&cur).await.expect("users").len(), 1);

    // Everyone, when the operator says so.
    let g = fixture_with(|s| s.require_second_factor = true).await;
    g.active_user("ada@example.org").await;
    assert_eq!(
        g.sign_in("ada@example.org", T0).await.level,
        SessionLevel::MustEnrol
    );
}

#[tokio::test]
async fn administration_invite_disable_role_delete() {
    let f = fixture().await;
    let admin = f.active_user("root@example.org").await;
    f.accounts
        .store()
        .set_role(&admin.id, Role::Admin)
        .await
        .expect("role");
    let admin_secret = totp::new_secret();
    f.accounts
        .store()
        .put_totp(&conclave_store::TotpRecord {
            user_id: admin.id.clone(),
            secret: secrets::seal(
                &f.accounts.settings().secret_key,
                admin.id.as_str(),
                &admin_secret,
            )
            .expect("seal"),
            confirmed: true,
            last_step: 0,
            created_at: T0,
        })
        .await
        .expect("totp");
    let s = f.sign_in("root@example.org", T0).await;
    let half = f.current(&s, T0).await;
    let full = f
        .accounts
        .sign_in_totp(&half, &totp::code_at(&admin_secret, T0).expect("code"), T0)
        .await
        .expect("2fa");
    let admin_s = f.current(&full, T0).await;

    // A plain user cannot administer.
    f.active_user("ada@example.org").await;
    let user_s = f.sign_in("ada@example.org", T0).await;
    let user_cur = f.current(&user_s, T0).await;
    assert!(matches!(
        f.accounts.admin_users(&user_cur).await,
        Err(AccountsError::Forbidden)
    ));
    assert!(matches!(
        f.accounts
            .invite(&user_cur, "x@example.org", Role::User, T0)
            .await,
        Err(AccountsError::Forbidden)
    ));

    // Invitation: a link to choose a password, once.
    f.accounts
        .invite(&admin_s, "new@example.org", Role::User, T0)
        .await
        .expect("invite");
    let token = f.last_token();
    assert!(f.mails().last().expect("mail").contains("/account/invite#token="));
    assert!(matches!(
        f.accounts
            .accept_invite(&token, "New Person", "weak", T0 + 1)
            .await,
        Err(AccountsError::WeakPassword(_))
    ));
    // Built from the invited address: refused, and the link still works.
    assert!(matches!(
        f.accounts
            .accept_invite(&token, "New Person", "newexampleorg2024", T0 + 1)
            .await,
        Err(AccountsError::WeakPassword(_))
    ));
    f.accounts
        .accept_invite(&token, "New Person", PW, T0 + 2)
        .await
        .expect("accept");
    assert!(matches!(
        f.accounts.accept_invite(&token, "New Person", PW, T0 + 3).await,
        Err(AccountsError::LinkInvalid)
    ));
    let new_s = f.sign_in("new@example.org", T0 + 4).await;

    // Disabling ends the sessions and refuses sign-in with the usual answer.
    let ada = f
        .accounts
        .store()
        .user_by_email("ada@example.org")
        .await
        .expect("get")
        .expect("ada");
    f.accounts
        .admin_set_enabled(&admin_s, ada.id.as_str(), false, T0 + 5)
        .await
        .expect("disable");
    assert!(f.accounts.session(&user_s.token, T0 + 5).await.is_err());
    assert!(matches!(
        f.accounts
            .sign_in("ada@example.org", PW, addr("192.0.2.1"), "", None, T0 + 6)
            .await,
        Err(AccountsError::SignInFailed)
    ));
    f.accounts
        .admin_set_enabled(&admin_s, ada.id.as_str(), true, T0 + 7)
        .await
        .expect("enable");
    f.sign_in("ada@example.org", T0 + 8).await;

    // A role change ends the user's sessions (privilege change).
    let new_user = f
        .accounts
        .store()
        .user_by_email("new@example.org")
        .await
        .expect("get")
        .expect("new");
    f.accounts
        .admin_set_role(&admin_s, new_user.id.as_str(), Role::Admin, T0 + 9)
        .await
        .expect("role");
    assert!(f.accounts.session(&new_s.token, T0 + 9).await.is_err());
    // An administrator does not administer their own account here.
    assert!(matches!(
        f.accounts
            .admin_delete(&admin_s, admin.id.as_str(), T0 + 10)
            .await,
        Err(AccountsError::Conflict(_))
    ));
    f.accounts
        .admin_delete(&admin_s, ada.id.as_str(), T0 + 11)
        .await
        .expect("delete");
    assert!(f.accounts.store().user(&ada.id).await.expect("get").is_none());
    let audit = f.accounts.admin_audit(&admin_s, 100).await.expect("audit");
    assert!(audit.iter().any(|e| e.action == "account.delete"));
    assert!(
        audit
            .iter()
            .all(|e| !e.actor.contains("usr_") && !e.subject.contains("usr_"))
    );
}

#[tokio::test]
async fn deletion_needs_the_password_and_leaves_no_personal_row() {
    let f = fixture().await;
    let u = f.active_user("grace.hopper@example.org").await;
    let s = f.sign_in("grace.hopper@example.org", T0).await;
    let cur = f.current(&s, T0).await;
    let setup = f.accounts.totp_begin(&cur, T0).await.expect("totp");
    f.accounts
        .totp_confirm(&cur, &totp::code_at(&setup.secret, T0).expect("code"), T0)
        .await
        .expect("confirm");
    // Some failed sign-ins leave throttle state behind.
    let _ = f
        .accounts
        .sign_in(
            "grace.hopper@example.org",
            "not the password",
            addr("192.0.2.77"),
            "",
            None,
            T0 + 1,
        )
        .await;
    f.sign_in("grace.hopper@example.org", T0 + 2).await;
    assert!(matches!(
        f.accounts.delete_account(&cur, "not the password", T0 + 3).await,
        Err(AccountsError::ReauthRequired)
    ));
    f.accounts.delete_account(&cur, PW, T0 + 4).await.expect("delete");
    assert!(f.accounts.session(&s.token, T0 + 5).await.is_err());
    let store = f.accounts.store();
    for needle in [u.id.as_str(), "grace.hopper", "Ada Lovelace", &setup.secret] {
        assert_eq!(
            store.find_text(needle).await.expect("search"),
            Vec::<String>::new(),
            "{needle}"
        );
    }
    // The audit log keeps the events under a pseudonym.
    let entries = store.audit(100).await.expect("audit");
    assert!(entries.iter().any(|e| e.action == "account.delete"));
    // The farewell mail went out after the rows were gone.
    assert!(f.mails().last().expect("mail").contains("deleted"));
}

#[tokio::test]
async fn passwords_are_rehashed_when_parameters_change() {
    let f = fixture().await;
    let u = f.active_user("ada@example.org").await;
    let old = u.password_hash.clone().expect("hash");
    let store = f.accounts.store().clone();
    let mail_dir = f.mail_dir.clone();
    let mut settings = f.accounts.settings().clone();
    settings.hash.iterations = 3;
    let stronger = Accounts::new(
        store.clone(),
        settings,
        Mailer::folder(mail_dir, "noreply@conclave.invalid").expect("mailer"),
    )
    .expect("accounts");
    stronger
        .sign_in("ada@example.org", PW, addr("192.0.2.1"), "", None, T0 + 100)
        .await
        .expect("old hash still verifies");
    let new = store
        .user(&u.id)
        .await
        .expect("get")
        .expect("user")
        .password_hash
        .expect("hash");
    assert_ne!(old, new);
    assert!(new.contains("t=3"));
}

#[tokio::test]
async fn passkeys_need_a_domain_name() {
    let f = fixture_with(|s| s.public_url = Url::parse("http://127.0.0.1:7880/").expect("url")).await;
    assert!(!f.accounts.passkeys_available());
    f.active_user("ada@example.org").await;
    let s = f.sign_in("ada@example.org", T0).await;
    let cur = f.current(&s, T0).await;
    assert!(matches!(
        f.accounts.passkey_register_start(&cur, T0).await,
        Err(AccountsError::Unavailable(_))
    ));
    let g = fixture().await;
    assert!(g.accounts.passkeys_available());
    g.active_user("ada@example.org").await;
    let s = g.sign_in("ada@example.org", T0).await;
    let cur = g.current(&s, T0).await;
    let options = g
        .accounts
        .passkey_register_start(&cur, T0)
        .await
        .expect("options");
    assert_eq!(options["publicKey"]["rp"]["id"], "localhost");
    // A junk answer is refused without a panic.
    assert!(
        g.accounts
            .passkey_register_finish(&cur, "Laptop", serde_json::json!({"id": 1}), T0)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn openid_state_must_exist_and_match_the_browser() {
    let f = fixture().await;
    assert!(matches!(
        f.accounts
            .oidc_finish("corp", "code", "unknown-state", Some("b"), "", None, T0)
            .await,
        Err(AccountsError::LinkInvalid)
    ));
    assert!(matches!(
        f.accounts.oidc_start("nope", T0).await,
        Err(AccountsError::NotFound)
    ));
}

#[tokio::test]
async fn password_reset_by_mail_without_enumeration() {
    let f = fixture().await;
    let u = f.active_user("ada@example.org").await;
    let s = f.sign_in("ada@example.org", T0).await;
    let cur = f.current(&s, T0).await;
    let setup = f.accounts.totp_begin(&cur, T0).await.expect("totp");
    f.accounts
        .totp_confirm(&cur, &totp::code_at(&setup.secret, T0).expect("code"), T0)
        .await
        .expect("confirm");
    let before = f.mails().len();
    // Unknown addresses get the same answer and no mail.
    f.accounts
        .request_password_reset("nobody@example.org", addr("192.0.2.5"), T0 + 1)
        .await
        .expect("same answer");
    f.accounts
        .request_password_reset("ada@example.org", addr("192.0.2.5"), T0 + 2)
        .await
        .expect("requested");
    // The mail goes out in the background.
    let mut waited = 0;
    while f.mails().len() == before && waited < 100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        waited += 1;
    }
    assert_eq!(f.mails().len(), before + 1);
    assert!(f.mails().last().expect("mail").contains("/account/reset#token="));
    let token = f.last_token();
    // A weak password is refused and the link still works afterwards.
    assert!(matches!(
        f.accounts.reset_password(&token, "password", T0 + 3).await,
        Err(AccountsError::WeakPassword(_))
    ));
    let new = "amber lantern drifts over granite hills";
    f.accounts
        .reset_password(&token, new, T0 + 4)
        .await
        .expect("reset");
    // Used once; every session ended.
    assert!(matches!(
        f.accounts.reset_password(&token, new, T0 + 5).await,
        Err(AccountsError::LinkInvalid)
    ));
    assert!(f.accounts.session(&s.token, T0 + 5).await.is_err());
    // The new password works; the second factor is still asked.
    let again = f
        .accounts
        .sign_in("ada@example.org", new, addr("192.0.2.1"), "", None, T0 + 6)
        .await
        .expect("sign in");
    assert_eq!(again.level, SessionLevel::SecondFactor);
    assert!(f.accounts.store().user(&u.id).await.expect("get").is_some());
    // An expired link.
    let before = f.mails().len();
    f.accounts
        .request_password_reset("ada@example.org", addr("192.0.2.5"), T0 + 10)
        .await
        .expect("requested");
    let mut waited = 0;
    while f.mails().len() == before && waited < 100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        waited += 1;
    }
    let late = f.last_token();
    assert!(matches!(
        f.accounts.reset_password(&late, new, T0 + 10 + 3600).await,
        Err(AccountsError::LinkInvalid)
    ));
}

#[tokio::test]
async fn registration_is_limited_per_source_address() {
    let f = fixture().await;
    let max = f.accounts.settings().registration_throttle.max_failures;
    for i in 0..max {
        f.accounts
            .register(
                &format!("u{i}@example.org"),
                "Someone",
                PW,
                addr("203.0.113.9"),
                T0 + i,
            )
            .await
            .expect("allowed");
    }
    assert!(matches!(
        f.accounts
            .register(
                "one-more@example.org",
                "Someone",
                PW,
                addr("203.0.113.9"),
                T0 + 20
            )
            .await,
        Err(AccountsError::Throttled { .. })
    ));
    // Another address may still register.
    f.accounts
        .register("other@example.org", "Someone", PW, addr("198.51.100.3"), T0 + 21)
        .await
        .expect("other address");
}

#[test]
fn email_addresses_are_normalised_and_checked() {
    assert_eq!(
        normalise_email("  Ada@Example.ORG ").expect("ok"),
        "ada@example.org"
    );
    for bad in [
        "",
        "ada",
        "@example.org",
        "ada@",
        "ada@example",
        "a b@example.org",
        "ada@@x.org",
        "<a>@x.org",
    ] {
        assert!(normalise_email(bad).is_err(), "{bad}");
    }
    assert!(normalise_email(&format!("{}@example.org", "a".repeat(65))).is_err());
    assert!(check_display_name("  ").is_err());
    assert!(check_display_name("Ada\u{0}").is_err());
    assert_eq!(check_display_name(" Ada ").expect("ok"), "Ada");
}

/// Untrusted text through every parser of the crate: nothing panics.
#[test]
fn untrusted_text_never_panics() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let alphabet: Vec<char> = "aZ09@.-_=+/ #%\u{0}\u{7f}\u{e9}\u{1F600}\u{202e}:;<>\"'\\"
        .chars()
        .collect();
    let policy = password::PasswordPolicy::default();
    let secret = totp::new_secret();
    for _ in 0..2_000 {
        let len = rng.random_range(0..80);
        let s: String = (0..len)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())])
            .collect();
        let _ = normalise_email(&s);
        let _ = check_display_name(&s);
        let _ = policy.check(&s, &[&s]);
        let _ = totp::matching_step(&secret, &s, T0);
        let _ = secrets::looks_like_token(&s);
        let _ = secrets::open(&[1u8; 32], "usr_x", &s);
        let _ = secrets::open(&[1u8; 32], "usr_x", &format!("v1.{s}"));
        let _ = UserId::parse(&s);
        let _ = PasskeyId::parse(&s);
    }
}
