//! The store's behaviour, run against SQLite and against PostgreSQL.
//!
//! PostgreSQL comes from `CONCLAVE_TEST_POSTGRES_URL` (set by `cargo xtask
//! test`, which starts a server on loopback); each run makes its own
//! database there.

use super::*;

const POSTGRES_ENV: &str = "CONCLAVE_TEST_POSTGRES_URL";

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("conclave-store-{}", conclave_types::random_base62(10)));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

async fn sqlite() -> (Store, std::path::PathBuf) {
    let dir = temp_dir();
    let store = Store::open_sqlite(&dir.join("conclave.db"))
        .await
        .expect("open sqlite");
    (store, dir)
}

/// A fresh PostgreSQL database on the server named by the environment.
async fn postgres() -> Store {
    let Ok(url) = std::env::var(POSTGRES_ENV) else {
        panic!(
            "{POSTGRES_ENV} is not set: the storage tests need a PostgreSQL server. Run `cargo xtask test` \
             (it installs Debian's postgresql and starts one on loopback), or start one yourself and set \
             {POSTGRES_ENV}=postgres://USER@127.0.0.1:PORT/postgres"
        );
    };
    let admin = Store::open(&url).await.expect("connect to the test PostgreSQL");
    let name = format!(
        "conclave_test_{}",
        conclave_types::random_base62(12).to_ascii_lowercase()
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin.pool)
        .await
        .expect("create test database");
    admin.close().await;
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url.as_str(), String::new()),
    };
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    Store::open(&format!("{base}/{name}{query}"))
        .await
        .expect("open test database")
}

fn user(email: &str) -> User {
    User {
        id: UserId::random(),
        email: Some(email.to_owned()),
        display_name: "Ada Lovelace".into(),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        role: Role::User,
        status: UserStatus::Pending,
        attributes: "{}".into(),
        created_at: 1_000,
        confirmed_at: None,
    }
}

async fn users_and_links(s: &Store) {
    let u = user("ada@example.org");
    s.insert_user(&u).await.expect("insert");
    assert!(matches!(
        s.insert_user(&User {
            id: UserId::random(),
            ..user("ada@example.org")
        })
        .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(s.user(&u.id).await.expect("get"), Some(u.clone()));
    assert_eq!(
        s.user_by_email("ada@example.org")
            .await
            .expect("get")
            .map(|x| x.id),
        Some(u.id.clone())
    );
    assert_eq!(s.user_by_email("nobody@example.org").await.expect("get"), None);

    s.set_status(&u.id, UserStatus::Active, Some(1_100))
        .await
        .expect("status");
    s.set_status(&u.id, UserStatus::Active, None)
        .await
        .expect("status again");
    let got = s.user(&u.id).await.expect("get").expect("exists");
    assert_eq!((got.status, got.confirmed_at), (UserStatus::Active, Some(1_100)));
    s.set_role(&u.id, Role::Admin).await.expect("role");
    assert_eq!(s.count_users_with_role(Role::Admin).await.expect("count"), 1);
    s.set_password_hash(&u.id, "new").await.expect("hash");
    s.set_profile(&u.id, "Ada", "{\"dept\":\"x\"}")
        .await
        .expect("profile");
    let got = s.user(&u.id).await.expect("get").expect("exists");
    assert_eq!(got.password_hash.as_deref(), Some("new"));
    assert_eq!(got.display_name, "Ada");

    // A user without e-mail; several may exist.
    for _ in 0..2 {
        let mut n = user("x");
        n.email = None;
        s.insert_user(&n).await.expect("no e-mail");
    }
    assert_eq!(s.users().await.expect("list").len(), 3);

    // Links: used once, within their lifetime, for their purpose only.
    let t = EmailToken {
        token_hash: "h1".into(),
        user_id: u.id.clone(),
        purpose: TokenPurpose::Confirm,
        created_at: 1_000,
        expires_at: 2_000,
    };
    s.insert_email_token(&t).await.expect("token");
    assert_eq!(
        s.peek_email_token("h1", TokenPurpose::Confirm, 1_500)
            .await
            .expect("peek"),
        Some(u.id.clone())
    );
    assert_eq!(
        s.peek_email_token("h1", TokenPurpose::Confirm, 2_000)
            .await
            .expect("peek"),
        None
    );
    assert_eq!(
        s.peek_email_token("h1", TokenPurpose::Reset, 1_500)
            .await
            .expect("peek"),
        None
    );
    assert_eq!(
        s.use_email_token("h1", TokenPurpose::Invite, 1_500)
            .await
            .expect("use"),
        None
    );
    assert_eq!(
        s.use_email_token("h1", TokenPurpose::Confirm, 2_000)
            .await
            .expect("use"),
        None
    );
    assert_eq!(
        s.use_email_token("h1", TokenPurpose::Confirm, 1_500)
            .await
            .expect("use"),
        Some(u.id.clone())
    );
    assert_eq!(
        s.use_email_token("h1", TokenPurpose::Confirm, 1_501)
            .await
            .expect("reuse"),
        None
    );
    assert_eq!(
        s.use_email_token("nope", TokenPurpose::Confirm, 1_500)
            .await
            .expect("use"),
        None
    );
}

async fn sessions_and_factors(s: &Store) {
    let u = user("grace@example.org");
    s.insert_user(&u).await.expect("insert");
    let session = |h: &str| SessionRecord {
        id_hash: h.into(),
        user_id: u.id.clone(),
        csrf_token: "c".into(),
        level: SessionLevel::Full,
        created_at: 10,
        last_seen_at: 10,
        expires_at: 1_000,
        authenticated_at: 10,
        user_agent: "Chromium on Linux".into(),
    };
    for h in ["s1", "s2", "s3"] {
        s.insert_session(&session(h)).await.expect("session");
    }
    s.touch_session("s1", 20).await.expect("touch");
    assert_eq!(
        s.session("s1").await.expect("get").map(|x| x.last_seen_at),
        Some(20)
    );
    assert_eq!(s.sessions_of(&u.id).await.expect("list").len(), 3);
    let other = UserId::random();
    assert!(!s.delete_session_of(&other, "s2").await.expect("not theirs"));
    assert!(s.delete_session_of(&u.id, "s2").await.expect("theirs"));
    assert_eq!(s.delete_sessions_of(&u.id, Some("s1")).await.expect("others"), 1);
    assert!(s.session("s1").await.expect("get").is_some());
    assert!(s.delete_session("s1").await.expect("delete"));
    assert!(s.session("s1").await.expect("get").is_none());

    // TOTP: a time step is claimed once; earlier steps are refused after it.
    let t = TotpRecord {
        user_id: u.id.clone(),
        secret: "JBSWY3DPEHPK3PXP".into(),
        confirmed: false,
        last_step: 0,
        created_at: 10,
    };
    s.put_totp(&t).await.expect("totp");
    s.put_totp(&t).await.expect("totp replaced");
    assert!(s.claim_totp_step(&u.id, 100).await.expect("claim"));
    assert!(!s.claim_totp_step(&u.id, 100).await.expect("replay"));
    assert!(!s.claim_totp_step(&u.id, 99).await.expect("older"));
    assert!(s.claim_totp_step(&u.id, 101).await.expect("next"));
    let got = s.totp(&u.id).await.expect("get").expect("exists");
    assert!(got.confirmed);
    assert_eq!(got.last_step, 101);

    // Recovery codes: each used once.
    s.replace_recovery_codes(&u.id, &["a".into(), "b".into()])
        .await
        .expect("codes");
    assert_eq!(s.unused_recovery_codes(&u.id).await.expect("count"), 2);
    assert!(s.use_recovery_code(&u.id, "a", 50).await.expect("use"));
    assert!(!s.use_recovery_code(&u.id, "a", 51).await.expect("reuse"));
    assert!(
        !s.use_recovery_code(&other, "b", 51)
            .await
            .expect("someone else's")
    );
    assert_eq!(s.unused_recovery_codes(&u.id).await.expect("count"), 1);

    // Passkeys.
    let p = PasskeyRecord {
        id: PasskeyId::random(),
        user_id: u.id.clone(),
        credential_id: "cred".into(),
        name: "Laptop".into(),
        data: "{}".into(),
        created_at: 10,
        last_used_at: None,
    };
    s.insert_passkey(&p).await.expect("passkey");
    assert!(matches!(
        s.insert_passkey(&PasskeyRecord {
            id: PasskeyId::random(),
            ..p.clone()
        })
        .await,
        Err(StoreError::Conflict)
    ));
    s.update_passkey(&p.id, "{\"n\":1}", 30).await.expect("update");
    let got = s.passkeys_of(&u.id).await.expect("list");
    assert_eq!((got.len(), got[0].last_used_at), (1, Some(30)));
    assert!(!s.delete_passkey(&other, &p.id).await.expect("not theirs"));

    // OpenID identities.
    let i = OidcIdentity {
        provider: "corp".into(),
        subject: "sub-1".into(),
        user_id: u.id.clone(),
        claims: "{}".into(),
        created_at: 10,
        last_login_at: 10,
    };
    s.put_oidc_identity(&i).await.expect("identity");
    s.put_oidc_identity(&OidcIdentity {
        claims: "{\"groups\":[]}".into(),
        last_login_at: 20,
        ..i.clone()
    })
    .await
    .expect("update identity");
    assert_eq!(
        s.oidc_user("corp", "sub-1").await.expect("get"),
        Some(u.id.clone())
    );
    assert_eq!(s.oidc_user("other", "sub-1").await.expect("get"), None);
    assert_eq!(
        s.oidc_identities_of(&u.id).await.expect("list")[0].last_login_at,
        20
    );

    // Flows are taken once and only before they expire.
    let f = PendingFlow {
        id_hash: "f1".into(),
        kind: "passkey-register".into(),
        user_id: Some(u.id.clone()),
        data: "{}".into(),
        expires_at: 100,
    };
    s.put_flow(&f).await.expect("flow");
    assert_eq!(s.take_flow("f1", "oidc", 50).await.expect("wrong kind"), None);
    assert_eq!(
        s.take_flow("f1", "passkey-register", 50).await.expect("take"),
        Some(f.clone())
    );
    assert_eq!(
        s.take_flow("f1", "passkey-register", 50).await.expect("again"),
        None
    );
    s.put_flow(&PendingFlow {
        id_hash: "f2".into(),
        user_id: None,
        ..f.clone()
    })
    .await
    .expect("flow");
    assert_eq!(
        s.take_flow("f2", "passkey-register", 100).await.expect("expired"),
        None
    );

    // Throttle state.
    let st = ThrottleState {
        failures: 3,
        window_start: 5,
        locked_until: 0,
    };
    s.put_throttle("k", &st).await.expect("put");
    s.put_throttle("k", &ThrottleState { failures: 4, ..st })
        .await
        .expect("update");
    assert_eq!(s.throttle("k").await.expect("get").map(|t| t.failures), Some(4));
    s.clear_throttle("k").await.expect("clear");
    assert_eq!(s.throttle("k").await.expect("get"), None);
}

async fn deletion_and_catalogue(s: &Store) {
    let u = user("hopper@example.org");
    s.insert_user(&u).await.expect("insert");
    s.insert_email_token(&EmailToken {
        token_hash: "t".into(),
        user_id: u.id.clone(),
        purpose: TokenPurpose::Confirm,
        created_at: 1,
        expires_at: 2,
    })
    .await
    .expect("token");
    s.put_totp(&TotpRecord {
        user_id: u.id.clone(),
        secret: "S".into(),
        confirmed: true,
        last_step: 0,
        created_at: 1,
    })
    .await
    .expect("totp");
    s.replace_recovery_codes(&u.id, &["r".into()])
        .await
        .expect("codes");
    s.append_audit(&AuditEntry {
        id: "a1".into(),
        at: 5,
        actor: "p:1234".into(),
        action: "user.register".into(),
        subject: "p:1234".into(),
        detail: String::new(),
    })
    .await
    .expect("audit");
    // A meeting the user owns, with an invitee, a ban and a file; and the
    // user as invitee, banned guest-like subject and uploader in someone
    // else's meeting.
    let other = user("lovelace@example.org");
    s.insert_user(&other).await.expect("insert");
    let meeting = |id: MeetingId, owner: &UserId| MeetingRecord {
        id,
        owner_id: owner.clone(),
        title: "Hopper's review".into(),
        starts_at: Some(10),
        ends_at: None,
        access: "invited".into(),
        lobby: "everyone".into(),
        guests: false,
        passcode_hash: Some("$argon2id$x".into()),
        locked: false,
        rights: "{}".into(),
        created_at: 1,
        updated_at: 1,
    };
    let invitee = |kind: &str, value: &str| InviteeRecord {
        kind: kind.into(),
        value: value.into(),
        role: "participant".into(),
    };
    let own = meeting(MeetingId::random(), &u.id);
    s.insert_meeting(&own, &[invitee("email", "lovelace@example.org")])
        .await
        .expect("meeting");
    let theirs = meeting(MeetingId::random(), &other.id);
    s.insert_meeting(
        &theirs,
        &[
            invitee("email", "hopper@example.org"),
            invitee("domain", "example.org"),
        ],
    )
    .await
    .expect("meeting");
    assert!(
        s.insert_meeting(&theirs, &[]).await.is_err(),
        "a meeting id is unique"
    );
    assert_eq!(
        s.meetings_inviting("email", "hopper@example.org")
            .await
            .expect("invited"),
        vec![theirs.id.clone()]
    );
    s.ban(&theirs.id, u.id.as_str(), 3).await.expect("ban");
    s.ban(&theirs.id, u.id.as_str(), 4)
        .await
        .expect("a second ban is no error");
    assert!(s.is_banned(&theirs.id, u.id.as_str()).await.expect("banned"));
    for m in [&own.id, &theirs.id] {
        let f = FileRecord {
            id: FileId::random(),
            meeting_id: m.clone(),
            uploader: u.id.to_string(),
            name: "plan.pdf".into(),
            content_type: "application/pdf".into(),
            size: 8,
            created_at: 5,
        };
        s.insert_file(&f, b"%PDF-1.7").await.expect("file");
        let (back, data) = s.file(m, &f.id).await.expect("read").expect("stored");
        assert_eq!((back, data.as_slice()), (f, &b"%PDF-1.7"[..]));
    }
    s.set_meeting_locked(&theirs.id, true, 6).await.expect("lock");
    assert!(s.meeting(&theirs.id).await.expect("read").expect("stored").locked);

    assert!(!s.find_text(u.id.as_str()).await.expect("search").is_empty());
    assert!(s.delete_user(&u.id).await.expect("delete"));
    assert!(
        s.meeting(&own.id).await.expect("read").is_none(),
        "an owned meeting was kept"
    );
    assert_eq!(
        s.invitees(&theirs.id).await.expect("invitees"),
        vec![invitee("domain", "example.org")]
    );
    assert!(s.files_of(&theirs.id).await.expect("files").is_empty());
    assert!(s.delete_meeting(&theirs.id).await.expect("delete meeting"));
    assert!(s.invitees(&theirs.id).await.expect("invitees").is_empty());
    assert!(!s.delete_user(&u.id).await.expect("delete again"));
    assert_eq!(
        s.find_text(u.id.as_str()).await.expect("search"),
        Vec::<String>::new()
    );
    assert_eq!(
        s.find_text("hopper@").await.expect("search"),
        Vec::<String>::new()
    );
    assert_eq!(s.audit(10).await.expect("audit").len(), 1);

    let tables = s.table_names().await.expect("tables");
    for t in TABLES {
        assert!(tables.iter().any(|x| x == t), "{t} missing from {tables:?}");
    }
    // LIKE wildcards in the needle are taken literally.
    assert_eq!(s.find_text("%").await.expect("search"), Vec::<String>::new());
    s.purge_expired(10_000, 3_600).await.expect("purge");
}

async fn all(s: &Store) {
    users_and_links(s).await;
    sessions_and_factors(s).await;
    deletion_and_catalogue(s).await;
}

#[tokio::test]
async fn sqlite_store() {
    let (s, dir) = sqlite().await;
    assert_eq!(s.backend(), Backend::Sqlite);
    all(&s).await;
    s.close().await;
    // Reopening finds the schema in place.
    let again = Store::open_sqlite(&dir.join("conclave.db"))
        .await
        .expect("reopen");
    assert_eq!(again.users().await.expect("users").len(), 5);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("conclave.db"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the database file is private");
    }
    again.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn postgres_store() {
    let s = postgres().await;
    assert_eq!(s.backend(), Backend::Postgres);
    all(&s).await;
    s.close().await;
}

#[tokio::test]
async fn bad_urls_are_refused_without_echoing_them() {
    let e = Store::open("mysql://root:secret@localhost/x")
        .await
        .expect_err("unsupported");
    assert!(!e.to_string().contains("secret"));
    let e = Store::open("postgres://u:hunter2@127.0.0.1:1/db")
        .await
        .expect_err("unreachable");
    assert!(!e.to_string().contains("hunter2"), "{e}");
}
