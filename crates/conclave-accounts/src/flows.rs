//! The account operations: registration, sign-in, second factors,
//! sessions, deletion and administration.

use std::net::IpAddr;

use conclave_store::{
    EmailToken, OidcIdentity, PasskeyRecord, PendingFlow, SessionRecord, TokenPurpose, TotpRecord,
};
use serde::Serialize;
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
};

use crate::mail::Mail;
use crate::{
    Accounts, AccountsError, PasskeyId, Role, SessionLevel, User, UserId, UserStatus, check_display_name,
    normalise_email, secrets, totp,
};

/// A session just made: the cookie value and the CSRF token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub token: String,
    pub csrf: String,
    pub level: SessionLevel,
}

/// The session a request carries, after its checks.
#[derive(Debug, Clone)]
pub struct CurrentSession {
    pub id_hash: String,
    pub user: User,
    pub level: SessionLevel,
    pub csrf: String,
    pub authenticated_at: i64,
}

/// What a signed-in user sees of their account.
#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    pub id: String,
    pub email: Option<String>,
    pub display_name: String,
    pub role: &'static str,
    pub has_password: bool,
    pub totp: bool,
    pub passkeys: Vec<PasskeyView>,
    pub recovery_codes_left: i64,
    pub second_factor_required: bool,
    pub identities: Vec<String>,
    pub attributes: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct PasskeyView {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    pub id: String,
    pub current: bool,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub user_agent: String,
}

/// A user as administrators see them.
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub id: String,
    pub email: Option<String>,
    pub display_name: String,
    pub role: &'static str,
    pub status: &'static str,
    pub created_at: i64,
    pub second_factor: bool,
}

/// A new TOTP secret to show once.
#[derive(Debug, Clone, Serialize)]
pub struct TotpSetup {
    pub secret: String,
    pub uri: String,
}

/// The result of enrolling a second factor.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// Recovery codes, made with the first second factor (shown once).
    pub recovery_codes: Option<Vec<String>>,
    /// A replacement session when enrolment raised the session's level.
    pub session: Option<NewSession>,
}

const FLOW_PASSKEY_REGISTER: &str = "passkey-register";
const FLOW_PASSKEY_AUTH: &str = "passkey-auth";
const FLOW_OIDC: &str = "oidc";
const FLOW_LIFETIME: i64 = 5 * 60;
const RECOVERY_CODES: usize = 10;
const RESET_LINK_LIFETIME: i64 = 3600;
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

fn recovery_code() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let mut s = String::with_capacity(11);
    for i in 0..10 {
        if i == 5 {
            s.push('-');
        }
        s.push(char::from(
            RECOVERY_ALPHABET[rng.random_range(0..RECOVERY_ALPHABET.len())],
        ));
    }
    s
}

fn normalise_recovery_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn short_agent(ua: &str) -> String {
    let browser = ["Edg/", "Firefox/", "Chrome/", "Safari/"]
        .iter()
        .find(|b| ua.contains(*b))
        .map_or("Browser", |b| match *b {
            "Edg/" => "Edge",
            "Firefox/" => "Firefox",
            "Chrome/" => "Chromium",
            _ => "Safari",
        });
    let os = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Windows", "Windows"),
        ("Mac OS", "macOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(k, _)| ua.contains(k))
    .map_or("", |(_, v)| v);
    if os.is_empty() {
        browser.to_owned()
    } else {
        format!("{browser} on {os}")
    }
}

impl Accounts {
    // ---------- registration ----------

    /// Registers an account and mails a confirmation link. Registering an
    /// address that has an account answers the same and mails the owner
    /// instead, so the answer tells nothing about existing accounts.
    pub async fn register(
        &self,
        email: &str,
        name: &str,
        password: &str,
        source: IpAddr,
        now: i64,
    ) -> Result<(), AccountsError> {
        if !self.settings.self_registration {
            return Err(AccountsError::RegistrationClosed);
        }
        // Every attempt counts against the source address: registration
        // sends mail and hashes, so it must not be run in bulk.
        let key = format!("reg:{}", self.address_key(source));
        let state = self.store.throttle(&key).await?;
        if let Some(retry_after) = self.settings.registration_throttle.locked(state.as_ref(), now) {
            return Err(AccountsError::Throttled { retry_after });
        }
        let (state, _) = self.settings.registration_throttle.fail(state, now);
        self.store.put_throttle(&key, &state).await?;
        let email = normalise_email(email)?;
        let name = check_display_name(name)?;
        self.settings.password.check(password, &[&email, &name])?;
        // Hash in every case: the answer takes as long whether or not the address is known.
        let hash = self.hash_password(password).await?;
        if let Some(existing) = self.store.user_by_email(&email).await? {
            if existing.status == UserStatus::Pending && existing.password_hash.is_some() {
                self.send_confirmation(&existing, now).await?;
            } else {
                self.send(Mail {
                    to: email.clone(),
                    subject: format!(
                        "{}: someone tried to register with your address",
                        self.settings.site_name
                    ),
                    body: format!(
                        "Someone, perhaps you, tried to register at {} with this e-mail address.\n\
                         An account with this address exists already, so nothing was changed.\n\n\
                         Sign in at {}/account\n\nIf it was not you, you can ignore this mail.\n",
                        self.settings.site_name,
                        self.settings.public_url.as_str().trim_end_matches('/'),
                    ),
                })
                .await?;
            }
            return Ok(());
        }
        let user = User {
            id: UserId::random(),
            email: Some(email),
            display_name: name,
            password_hash: Some(hash),
            role: Role::User,
            status: UserStatus::Pending,
            attributes: "{}".into(),
            created_at: now,
            confirmed_at: None,
        };
        match self.store.insert_user(&user).await {
            Ok(()) => {}
            // A concurrent registration of the same address: same answer.
            Err(conclave_store::StoreError::Conflict) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        self.audit(now, Some(&user.id), "account.register", Some(&user.id), "")
            .await;
        self.send_confirmation(&user, now).await
    }

    async fn send_confirmation(&self, user: &User, now: i64) -> Result<(), AccountsError> {
        let Some(email) = &user.email else {
            return Ok(());
        };
        self.store
            .delete_email_tokens(&user.id, TokenPurpose::Confirm)
            .await?;
        let token = secrets::random_token();
        self.store
            .insert_email_token(&EmailToken {
                token_hash: secrets::token_hash(&token),
                user_id: user.id.clone(),
                purpose: TokenPurpose::Confirm,
                created_at: now,
                expires_at: now + self.settings.confirm_link_lifetime,
            })
            .await?;
        let hours = self.settings.confirm_link_lifetime / 3600;
        self.send(Mail {
            to: email.clone(),
            subject: format!("{}: please confirm your e-mail address", self.settings.site_name),
            body: format!(
                "Hello {},\n\nplease confirm your e-mail address to finish your registration at {}:\n\n{}\n\n\
                 The link works once and for {hours} hours.\nIf you did not register, ignore this mail.\n",
                user.display_name,
                self.settings.site_name,
                self.link("/account/confirm", &token),
            ),
        })
        .await
    }

    /// Confirms an address with the token of a mailed link (single use, expiring).
    pub async fn confirm_email(&self, token: &str, now: i64) -> Result<(), AccountsError> {
        if !secrets::looks_like_token(token) {
            return Err(AccountsError::LinkInvalid);
        }
        let user = self
            .store
            .use_email_token(&secrets::token_hash(token), TokenPurpose::Confirm, now)
            .await?
            .ok_or(AccountsError::LinkInvalid)?;
        let Some(u) = self.store.user(&user).await? else {
            return Err(AccountsError::LinkInvalid);
        };
        if u.status == UserStatus::Pending {
            self.store
                .set_status(&user, UserStatus::Active, Some(now))
                .await?;
        }
        self.audit(now, Some(&user), "account.confirm", Some(&user), "")
            .await;
        Ok(())
    }

    /// An administrator invites someone: a pending account and a mailed
    /// link to choose a password.
    pub async fn invite(
        &self,
        actor: &CurrentSession,
        email: &str,
        role: Role,
        now: i64,
    ) -> Result<(), AccountsError> {
        self.require_admin(actor)?;
        let link = self.create_invitation(email, role, now).await?;
        let _ = link;
        self.audit(now, Some(&actor.user.id), "admin.invite", None, role.as_str())
            .await;
        Ok(())
    }

    /// Makes an invitation and mails it; returns the link (for the
    /// command line, which bootstraps the first administrator).
    pub async fn create_invitation(
        &self,
        email: &str,
        role: Role,
        now: i64,
    ) -> Result<String, AccountsError> {
        let email = normalise_email(email)?;
        let user = match self.store.user_by_email(&email).await? {
            Some(u) if u.status == UserStatus::Pending => u,
            Some(_) => {
                return Err(AccountsError::Conflict(
                    "An account with this e-mail address exists already.",
                ));
            }
            None => {
                let display = email.split('@').next().unwrap_or("").to_owned();
                let u = User {
                    id: UserId::random(),
                    email: Some(email.clone()),
                    display_name: check_display_name(&display).unwrap_or_else(|_| "New user".into()),
                    password_hash: None,
                    role,
                    status: UserStatus::Pending,
                    attributes: "{}".into(),
                    created_at: now,
                    confirmed_at: None,
                };
                self.store.insert_user(&u).await?;
                u
            }
        };
        if user.role != role {
            self.store.set_role(&user.id, role).await?;
        }
        self.store
            .delete_email_tokens(&user.id, TokenPurpose::Invite)
            .await?;
        let token = secrets::random_token();
        self.store
            .insert_email_token(&EmailToken {
                token_hash: secrets::token_hash(&token),
                user_id: user.id.clone(),
                purpose: TokenPurpose::Invite,
                created_at: now,
                expires_at: now + self.settings.invite_link_lifetime,
            })
            .await?;
        let link = self.link("/account/invite", &token);
        let days = self.settings.invite_link_lifetime / 86_400;
        self.send(Mail {
            to: email,
            subject: format!("{}: you are invited", self.settings.site_name),
            body: format!(
                "Hello,\n\nyou are invited to {}. Choose your name and password here:\n\n{link}\n\n\
                 The link works once and for {days} days.\n",
                self.settings.site_name
            ),
        })
        .await?;
        Ok(link)
    }

    /// Accepts an invitation: sets name and password and confirms the address.
    pub async fn accept_invite(
        &self,
        token: &str,
        name: &str,
        password: &str,
        now: i64,
    ) -> Result<(), AccountsError> {
        if !secrets::looks_like_token(token) {
            return Err(AccountsError::LinkInvalid);
        }
        let name = check_display_name(name)?;
        let token_hash = secrets::token_hash(token);
        let user = self
            .store
            .peek_email_token(&token_hash, TokenPurpose::Invite, now)
            .await?
            .ok_or(AccountsError::LinkInvalid)?;
        let u = self.store.user(&user).await?.ok_or(AccountsError::LinkInvalid)?;
        // The link stays usable until a password passes the rules.
        let email = u.email.clone().unwrap_or_default();
        self.settings.password.check(password, &[&email, &name])?;
        let hash = self.hash_password(password).await?;
        if self
            .store
            .use_email_token(&token_hash, TokenPurpose::Invite, now)
            .await?
            .as_ref()
            != Some(&user)
        {
            return Err(AccountsError::LinkInvalid);
        }
        self.store.set_profile(&user, &name, &u.attributes).await?;
        self.store.set_password_hash(&user, &hash).await?;
        self.store
            .set_status(&user, UserStatus::Active, Some(now))
            .await?;
        self.audit(now, Some(&user), "account.accept_invite", Some(&user), "")
            .await;
        Ok(())
    }

    // ---------- forgotten passwords ----------

    /// Mails a link to choose a new password, if the address belongs to an
    /// active account. The answer is the same either way, and the mail is
    /// sent in the background so that the time of the answer tells nothing
    /// either. Every request counts against the source address.
    pub async fn request_password_reset(
        &self,
        email: &str,
        source: IpAddr,
        now: i64,
    ) -> Result<(), AccountsError> {
        let key = format!("reset:{}", self.address_key(source));
        let state = self.store.throttle(&key).await?;
        if let Some(retry_after) = self.settings.registration_throttle.locked(state.as_ref(), now) {
            return Err(AccountsError::Throttled { retry_after });
        }
        let (state, _) = self.settings.registration_throttle.fail(state, now);
        self.store.put_throttle(&key, &state).await?;
        let email = normalise_email(email)?;
        let Some(user) = self.store.user_by_email(&email).await? else {
            return Ok(());
        };
        if user.status != UserStatus::Active {
            return Ok(());
        }
        self.store
            .delete_email_tokens(&user.id, TokenPurpose::Reset)
            .await?;
        let token = secrets::random_token();
        self.store
            .insert_email_token(&EmailToken {
                token_hash: secrets::token_hash(&token),
                user_id: user.id.clone(),
                purpose: TokenPurpose::Reset,
                created_at: now,
                expires_at: now + RESET_LINK_LIFETIME,
            })
            .await?;
        self.audit(now, None, "account.reset_requested", Some(&user.id), "")
            .await;
        let mail = Mail {
            to: email,
            subject: format!("{}: choose a new password", self.settings.site_name),
            body: format!(
                "Hello {},\n\nsomeone, perhaps you, asked to reset the password of your account at {}.\n\
                 Choose a new password here:\n\n{}\n\nThe link works once and for one hour. \
                 If it was not you, ignore this mail: your password stays as it is.\n",
                user.display_name,
                self.settings.site_name,
                self.link("/account/reset", &token),
            ),
        };
        let mailer = self.mailer.clone();
        tokio::spawn(async move {
            if let Err(e) = mailer.send(&mail).await {
                tracing::error!(error = %e, "mail delivery failed");
            }
        });
        Ok(())
    }

    /// Sets a new password with the token of a reset link (single use,
    /// one hour). Every session of the account ends; a second factor is
    /// still asked at the next sign-in.
    pub async fn reset_password(&self, token: &str, password: &str, now: i64) -> Result<(), AccountsError> {
        if !secrets::looks_like_token(token) {
            return Err(AccountsError::LinkInvalid);
        }
        let hash = secrets::token_hash(token);
        let user_id = self
            .store
            .peek_email_token(&hash, TokenPurpose::Reset, now)
            .await?
            .ok_or(AccountsError::LinkInvalid)?;
        let user = match self.store.user(&user_id).await? {
            Some(u) if u.status == UserStatus::Active => u,
            _ => return Err(AccountsError::LinkInvalid),
        };
        let email = user.email.clone().unwrap_or_default();
        // The link stays usable until a password passes the rules.
        self.settings
            .password
            .check(password, &[&email, &user.display_name])?;
        let new_hash = self.hash_password(password).await?;
        if self
            .store
            .use_email_token(&hash, TokenPurpose::Reset, now)
            .await?
            .as_ref()
            != Some(&user_id)
        {
            return Err(AccountsError::LinkInvalid);
        }
        self.store.set_password_hash(&user_id, &new_hash).await?;
        self.store.delete_sessions_of(&user_id, None).await?;
        self.store.clear_throttle(&self.account_key(&email)).await?;
        self.audit(now, Some(&user_id), "account.password_reset", Some(&user_id), "")
            .await;
        let _ = self
            .send(Mail {
                to: email,
                subject: format!("{}: your password was changed", self.settings.site_name),
                body: format!(
                    "Hello {},\n\nthe password of your account at {} was changed with a reset link, \
                     and every session was signed out.\nIf this was not you, contact your administrator at once.\n",
                    user.display_name, self.settings.site_name
                ),
            })
            .await;
        Ok(())
    }

    // ---------- sign-in ----------

    /// Signs in with e-mail address and password. Unknown addresses, wrong
    /// passwords and disabled accounts get one answer after the same work;
    /// both the address tried and the source address are throttled, the
    /// former whether or not an account exists. `replacing` is the session
    /// cookie the browser sent, which ends here (no session fixation).
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        source: IpAddr,
        user_agent: &str,
        replacing: Option<&str>,
        now: i64,
    ) -> Result<NewSession, AccountsError> {
        if let Some(old) = replacing {
            self.sign_out(old).await?;
        }
        let email = normalise_email(email).unwrap_or_else(|_| email.trim().to_lowercase());
        let account_key = self.account_key(&email);
        let address_key = self.address_key(source);
        let account_state = self.store.throttle(&account_key).await?;
        let address_state = self.store.throttle(&address_key).await?;
        let wait = [
            self.settings.account_throttle.locked(account_state.as_ref(), now),
            self.settings.address_throttle.locked(address_state.as_ref(), now),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(retry_after) = wait {
            return Err(AccountsError::Throttled { retry_after });
        }
        let user = if password.len() > crate::password::MAX_PASSWORD_BYTES {
            None
        } else {
            self.store.user_by_email(&email).await?
        };
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        let ok = self.verify_password(password, hash.as_deref()).await;
        let user = match (ok, user) {
            (true, Some(u)) if u.status == UserStatus::Active => u,
            (true, Some(u)) if u.status == UserStatus::Pending => {
                // The password is right: saying so tells the attacker nothing new.
                return Err(AccountsError::NotConfirmed);
            }
            (_, user) => {
                let (account, locked) = self.settings.account_throttle.fail(account_state, now);
                self.store.put_throttle(&account_key, &account).await?;
                let (address, _) = self.settings.address_throttle.fail(address_state, now);
                self.store.put_throttle(&address_key, &address).await?;
                if let Some(u) = user.filter(|u| u.status == UserStatus::Active) {
                    self.audit(now, None, "signin.failure", Some(&u.id), "").await;
                    if locked {
                        self.warn_of_failures(&u, account.failures).await;
                    }
                }
                return Err(AccountsError::SignInFailed);
            }
        };
        self.store.clear_throttle(&account_key).await?;
        if let Some(stored) = &hash
            && self.hasher.needs_rehash(stored)
        {
            let fresh = self.hash_password(password).await?;
            self.store.set_password_hash(&user.id, &fresh).await?;
        }
        let level = self.level_after_primary(&user).await?;
        self.audit(
            now,
            Some(&user.id),
            "signin.password",
            Some(&user.id),
            level.as_str(),
        )
        .await;
        self.start_session(&user.id, level, user_agent, now).await
    }

    async fn warn_of_failures(&self, user: &User, failures: i64) {
        let Some(email) = &user.email else { return };
        let mail = Mail {
            to: email.clone(),
            subject: format!("{}: failed sign-ins to your account", self.settings.site_name),
            body: format!(
                "Hello {},\n\nthere were {failures} failed attempts to sign in to your account at {}.\n\
                 Sign-in is paused for a while. If this was not you, someone may be guessing your password:\n\
                 choose a strong one you use nowhere else and set up a second factor.\n",
                user.display_name, self.settings.site_name
            ),
        };
        // The mail is a courtesy; a failure must not change the answer.
        let _ = self.send(mail).await;
    }

    /// Whether the user has a confirmed second factor.
    async fn has_second_factor(&self, user: &UserId) -> Result<bool, AccountsError> {
        if self.store.totp(user).await?.is_some_and(|t| t.confirmed) {
            return Ok(true);
        }
        Ok(!self.store.passkeys_of(user).await?.is_empty())
    }

    fn second_factor_required(&self, user: &User) -> bool {
        user.role == Role::Admin || self.settings.require_second_factor
    }

    async fn level_after_primary(&self, user: &User) -> Result<SessionLevel, AccountsError> {
        Ok(if self.has_second_factor(&user.id).await? {
            SessionLevel::SecondFactor
        } else if self.second_factor_required(user) {
            SessionLevel::MustEnrol
        } else {
            SessionLevel::Full
        })
    }

    /// Makes a session with a fresh random id.
    async fn start_session(
        &self,
        user: &UserId,
        level: SessionLevel,
        user_agent: &str,
        now: i64,
    ) -> Result<NewSession, AccountsError> {
        let token = secrets::random_token();
        let csrf = secrets::random_token();
        self.store
            .insert_session(&SessionRecord {
                id_hash: secrets::token_hash(&token),
                user_id: user.clone(),
                csrf_token: csrf.clone(),
                level,
                created_at: now,
                last_seen_at: now,
                expires_at: now + self.settings.session_absolute,
                authenticated_at: now,
                user_agent: short_agent(user_agent),
            })
            .await?;
        Ok(NewSession { token, csrf, level })
    }

    /// Replaces a session by a new one with a new id (privilege change).
    async fn rotate(
        &self,
        s: &CurrentSession,
        level: SessionLevel,
        now: i64,
    ) -> Result<NewSession, AccountsError> {
        let old = self.store.session(&s.id_hash).await?;
        self.store.delete_session(&s.id_hash).await?;
        let ua = old.map(|o| o.user_agent).unwrap_or_default();
        let token = secrets::random_token();
        let csrf = secrets::random_token();
        self.store
            .insert_session(&SessionRecord {
                id_hash: secrets::token_hash(&token),
                user_id: s.user.id.clone(),
                csrf_token: csrf.clone(),
                level,
                created_at: now,
                last_seen_at: now,
                expires_at: now + self.settings.session_absolute,
                authenticated_at: now,
                user_agent: ua,
            })
            .await?;
        Ok(NewSession { token, csrf, level })
    }

    /// The session of a cookie value, if it is valid now. Idle and
    /// absolute timeouts end it; so does a disabled or deleted account.
    pub async fn session(&self, token: &str, now: i64) -> Result<CurrentSession, AccountsError> {
        if !secrets::looks_like_token(token) {
            return Err(AccountsError::NotSignedIn);
        }
        let id_hash = secrets::token_hash(token);
        let s = self
            .store
            .session(&id_hash)
            .await?
            .ok_or(AccountsError::NotSignedIn)?;
        let idle = if s.level == SessionLevel::Full {
            self.settings.session_idle
        } else {
            // An unfinished sign-in does not wait long.
            self.settings.session_idle.min(10 * 60)
        };
        if now >= s.expires_at || now - s.last_seen_at >= idle {
            self.store.delete_session(&id_hash).await?;
            return Err(AccountsError::NotSignedIn);
        }
        let user = match self.store.user(&s.user_id).await? {
            Some(u) if u.status == UserStatus::Active => u,
            _ => {
                self.store.delete_session(&id_hash).await?;
                return Err(AccountsError::NotSignedIn);
            }
        };
        if now - s.last_seen_at >= 30 {
            self.store.touch_session(&id_hash, now).await?;
        }
        Ok(CurrentSession {
            id_hash,
            user,
            level: s.level,
            csrf: s.csrf_token,
            authenticated_at: s.authenticated_at,
        })
    }

    /// Ends the session of a cookie value (unknown values are ignored).
    pub async fn sign_out(&self, token: &str) -> Result<(), AccountsError> {
        if secrets::looks_like_token(token) {
            self.store.delete_session(&secrets::token_hash(token)).await?;
        }
        Ok(())
    }

    /// Whether a request's CSRF token is the session's.
    pub fn csrf_ok(&self, s: &CurrentSession, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| secrets::same(p, &s.csrf))
    }

    /// A fully signed-in session.
    pub fn require_full(&self, s: &CurrentSession) -> Result<(), AccountsError> {
        match s.level {
            SessionLevel::Full => Ok(()),
            _ => Err(AccountsError::StepDue),
        }
    }

    /// A session that may enrol a second factor (full, or one that must enrol).
    fn require_enrol(&self, s: &CurrentSession) -> Result<(), AccountsError> {
        match s.level {
            SessionLevel::Full | SessionLevel::MustEnrol => Ok(()),
            SessionLevel::SecondFactor => Err(AccountsError::StepDue),
        }
    }

    fn require_admin(&self, s: &CurrentSession) -> Result<(), AccountsError> {
        self.require_full(s)?;
        if s.user.role != Role::Admin {
            return Err(AccountsError::Forbidden);
        }
        Ok(())
    }

    fn require_second_step(&self, s: &CurrentSession) -> Result<(), AccountsError> {
        if s.level != SessionLevel::SecondFactor {
            return Err(AccountsError::Conflict(
                "No second factor is due for this session.",
            ));
        }
        Ok(())
    }

    async fn second_factor_locked(&self, user: &UserId, now: i64) -> Result<(), AccountsError> {
        let state = self.store.throttle(&self.factor_key(user)).await?;
        if let Some(retry_after) = self.settings.second_factor_throttle.locked(state.as_ref(), now) {
            return Err(AccountsError::Throttled { retry_after });
        }
        Ok(())
    }

    async fn second_factor_failed(&self, user: &User, now: i64) -> Result<AccountsError, AccountsError> {
        let key = self.factor_key(&user.id);
        let state = self.store.throttle(&key).await?;
        let (state, locked) = self.settings.second_factor_throttle.fail(state, now);
        self.store.put_throttle(&key, &state).await?;
        self.audit(now, None, "signin.second_factor_failure", Some(&user.id), "")
            .await;
        if locked {
            self.warn_of_failures(user, state.failures).await;
        }
        Ok(AccountsError::CodeInvalid)
    }

    /// Finishes sign-in with a TOTP code; a code is accepted only once.
    pub async fn sign_in_totp(
        &self,
        s: &CurrentSession,
        code: &str,
        now: i64,
    ) -> Result<NewSession, AccountsError> {
        self.require_second_step(s)?;
        self.second_factor_locked(&s.user.id, now).await?;
        if !self.check_totp(&s.user.id, code, now, true).await? {
            return Err(self.second_factor_failed(&s.user, now).await?);
        }
        self.store.clear_throttle(&self.factor_key(&s.user.id)).await?;
        self.audit(now, Some(&s.user.id), "signin.totp", Some(&s.user.id), "")
            .await;
        self.rotate(s, SessionLevel::Full, now).await
    }

    /// Checks a code against the user's secret and claims its time step.
    async fn check_totp(
        &self,
        user: &UserId,
        code: &str,
        now: i64,
        confirmed: bool,
    ) -> Result<bool, AccountsError> {
        let Some(t) = self.store.totp(user).await? else {
            return Ok(false);
        };
        if t.confirmed != confirmed {
            return Ok(false);
        }
        let secret = secrets::open(&self.settings.secret_key, user.as_str(), &t.secret)?;
        let Some(step) = totp::matching_step(&secret, code, now)? else {
            return Ok(false);
        };
        Ok(self.store.claim_totp_step(user, step).await?)
    }

    /// Finishes sign-in with a recovery code, which is then used up.
    pub async fn sign_in_recovery(
        &self,
        s: &CurrentSession,
        code: &str,
        now: i64,
    ) -> Result<NewSession, AccountsError> {
        self.require_second_step(s)?;
        self.second_factor_locked(&s.user.id, now).await?;
        let hash = secrets::keyed_hash(&self.settings.secret_key, &normalise_recovery_code(code));
        if !self.store.use_recovery_code(&s.user.id, &hash, now).await? {
            return Err(self.second_factor_failed(&s.user, now).await?);
        }
        self.store.clear_throttle(&self.factor_key(&s.user.id)).await?;
        self.audit(
            now,
            Some(&s.user.id),
            "signin.recovery_code",
            Some(&s.user.id),
            "",
        )
        .await;
        if let Some(email) = &s.user.email {
            let left = self.store.unused_recovery_codes(&s.user.id).await?;
            let _ = self
                .send(Mail {
                    to: email.clone(),
                    subject: format!("{}: a recovery code was used", self.settings.site_name),
                    body: format!(
                        "Hello {},\n\na recovery code was used to sign in to your account. {left} codes are left.\n\
                         If this was not you, sign in, change your password and make new recovery codes.\n",
                        s.user.display_name
                    ),
                })
                .await;
        }
        self.rotate(s, SessionLevel::Full, now).await
    }

    fn webauthn(&self) -> Result<&webauthn_rs::Webauthn, AccountsError> {
        self.webauthn.as_ref().ok_or(AccountsError::Unavailable(
            "Passkeys need the server to be reached by a domain name, not an IP address.",
        ))
    }

    fn flow_id(kind: &str, session_hash: &str) -> String {
        secrets::token_hash(&format!("{kind}:{session_hash}"))
    }

    async fn user_passkeys(&self, user: &UserId) -> Result<Vec<(PasskeyRecord, Passkey)>, AccountsError> {
        let mut out = Vec::new();
        for r in self.store.passkeys_of(user).await? {
            let pk: Passkey = serde_json::from_str(&r.data)
                .map_err(|e| AccountsError::Internal(format!("stored passkey: {e}")))?;
            out.push((r, pk));
        }
        Ok(out)
    }

    /// Starts a passkey assertion as the second step of sign-in; returns
    /// the options for `navigator.credentials.get`.
    pub async fn passkey_sign_in_start(
        &self,
        s: &CurrentSession,
        now: i64,
    ) -> Result<serde_json::Value, AccountsError> {
        self.require_second_step(s)?;
        let w = self.webauthn()?;
        let keys: Vec<Passkey> = self
            .user_passkeys(&s.user.id)
            .await?
            .into_iter()
            .map(|(_, k)| k)
            .collect();
        if keys.is_empty() {
            return Err(AccountsError::Conflict("This account has no passkey."));
        }
        let (options, state) = w
            .start_passkey_authentication(&keys)
            .map_err(|e| AccountsError::Internal(format!("WebAuthn: {e}")))?;
        let id = Self::flow_id(FLOW_PASSKEY_AUTH, &s.id_hash);
        let _ = self.store.take_flow(&id, FLOW_PASSKEY_AUTH, now).await?;
        self.store
            .put_flow(&PendingFlow {
                id_hash: id,
                kind: FLOW_PASSKEY_AUTH.into(),
                user_id: Some(s.user.id.clone()),
                data: serde_json::to_string(&state).map_err(|e| AccountsError::Internal(e.to_string()))?,
                expires_at: now + FLOW_LIFETIME,
            })
            .await?;
        serde_json::to_value(options).map_err(|e| AccountsError::Internal(e.to_string()))
    }

    /// Finishes sign-in with a passkey assertion.
    pub async fn passkey_sign_in_finish(
        &self,
        s: &CurrentSession,
        credential: serde_json::Value,
        now: i64,
    ) -> Result<NewSession, AccountsError> {
        self.require_second_step(s)?;
        self.second_factor_locked(&s.user.id, now).await?;
        let w = self.webauthn()?;
        let flow = self
            .store
            .take_flow(
                &Self::flow_id(FLOW_PASSKEY_AUTH, &s.id_hash),
                FLOW_PASSKEY_AUTH,
                now,
            )
            .await?
            .ok_or(AccountsError::CodeInvalid)?;
        let state: PasskeyAuthentication =
            serde_json::from_str(&flow.data).map_err(|e| AccountsError::Internal(e.to_string()))?;
        let Ok(credential) = serde_json::from_value::<PublicKeyCredential>(credential) else {
            return Err(self.second_factor_failed(&s.user, now).await?);
        };
        let result = match w.finish_passkey_authentication(&credential, &state) {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(error = %e, "passkey assertion refused");
                return Err(self.second_factor_failed(&s.user, now).await?);
            }
        };
        for (record, mut key) in self.user_passkeys(&s.user.id).await? {
            if key.cred_id() == result.cred_id() {
                key.update_credential(&result);
                let data = serde_json::to_string(&key).map_err(|e| AccountsError::Internal(e.to_string()))?;
                self.store.update_passkey(&record.id, &data, now).await?;
            }
        }
        self.store.clear_throttle(&self.factor_key(&s.user.id)).await?;
        self.audit(now, Some(&s.user.id), "signin.passkey", Some(&s.user.id), "")
            .await;
        self.rotate(s, SessionLevel::Full, now).await
    }

    // ---------- the account page ----------

    pub async fn account(&self, s: &CurrentSession) -> Result<AccountView, AccountsError> {
        let u = &s.user;
        let totp = self.store.totp(&u.id).await?.is_some_and(|t| t.confirmed);
        let passkeys = self
            .store
            .passkeys_of(&u.id)
            .await?
            .into_iter()
            .map(|p| PasskeyView {
                id: p.id.to_string(),
                name: p.name,
                created_at: p.created_at,
                last_used_at: p.last_used_at,
            })
            .collect();
        let identities = self
            .store
            .oidc_identities_of(&u.id)
            .await?
            .into_iter()
            .map(|i| i.provider)
            .collect();
        Ok(AccountView {
            id: u.id.to_string(),
            email: u.email.clone(),
            display_name: u.display_name.clone(),
            role: u.role.as_str(),
            has_password: u.password_hash.is_some(),
            totp,
            passkeys,
            recovery_codes_left: self.store.unused_recovery_codes(&u.id).await?,
            second_factor_required: self.second_factor_required(u),
            identities,
            attributes: serde_json::from_str(&u.attributes).unwrap_or(serde_json::Value::Null),
        })
    }

    /// Starts TOTP enrolment: a new secret, shown once.
    pub async fn totp_begin(&self, s: &CurrentSession, now: i64) -> Result<TotpSetup, AccountsError> {
        self.require_enrol(s)?;
        if self.store.totp(&s.user.id).await?.is_some_and(|t| t.confirmed) {
            return Err(AccountsError::Conflict(
                "An authenticator app is set up already. Remove it first to set up another.",
            ));
        }
        let secret = totp::new_secret();
        // Kept sealed under the server key: a copy of the database alone
        // does not yield working codes.
        let sealed = secrets::seal(&self.settings.secret_key, s.user.id.as_str(), &secret)?;
        self.store
            .put_totp(&TotpRecord {
                user_id: s.user.id.clone(),
                secret: sealed,
                confirmed: false,
                last_step: 0,
                created_at: now,
            })
            .await?;
        let account = s
            .user
            .email
            .clone()
            .unwrap_or_else(|| s.user.display_name.clone());
        let uri = totp::provisioning_uri(&secret, &account, &self.settings.site_name)?;
        Ok(TotpSetup { secret, uri })
    }

    /// Confirms TOTP enrolment with a first code.
    pub async fn totp_confirm(
        &self,
        s: &CurrentSession,
        code: &str,
        now: i64,
    ) -> Result<Enrolled, AccountsError> {
        self.require_enrol(s)?;
        self.second_factor_locked(&s.user.id, now).await?;
        if !self.check_totp(&s.user.id, code, now, false).await? {
            return Err(self.second_factor_failed(&s.user, now).await?);
        }
        self.audit(now, Some(&s.user.id), "factor.totp_added", Some(&s.user.id), "")
            .await;
        self.after_enrolment(s, now).await
    }

    async fn after_enrolment(&self, s: &CurrentSession, now: i64) -> Result<Enrolled, AccountsError> {
        let recovery_codes = if self.store.unused_recovery_codes(&s.user.id).await? == 0 {
            Some(self.make_recovery_codes(&s.user.id).await?)
        } else {
            None
        };
        let session = if s.level == SessionLevel::MustEnrol {
            Some(self.rotate(s, SessionLevel::Full, now).await?)
        } else {
            None
        };
        if let Some(email) = &s.user.email {
            let _ = self
                .send(Mail {
                    to: email.clone(),
                    subject: format!("{}: a second factor was added", self.settings.site_name),
                    body: format!(
                        "Hello {},\n\na second factor was added to your account. If this was not you, \
                         contact your administrator at once.\n",
                        s.user.display_name
                    ),
                })
                .await;
        }
        Ok(Enrolled {
            recovery_codes,
            session,
        })
    }

    async fn make_recovery_codes(&self, user: &UserId) -> Result<Vec<String>, AccountsError> {
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| recovery_code()).collect();
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| secrets::keyed_hash(&self.settings.secret_key, &normalise_recovery_code(c)))
            .collect();
        self.store.replace_recovery_codes(user, &hashes).await?;
        Ok(codes)
    }

    /// New recovery codes (the old ones stop working); needs the password.
    pub async fn recovery_codes_renew(
        &self,
        s: &CurrentSession,
        password: &str,
        now: i64,
    ) -> Result<Vec<String>, AccountsError> {
        self.require_full(s)?;
        self.reauthenticate(s, password, now).await?;
        if !self.has_second_factor(&s.user.id).await? {
            return Err(AccountsError::Conflict("Set up a second factor first."));
        }
        self.audit(
            now,
            Some(&s.user.id),
            "factor.recovery_codes_renewed",
            Some(&s.user.id),
            "",
        )
        .await;
        self.make_recovery_codes(&s.user.id).await
    }

    /// Removes the authenticator app; needs the password. A user who must
    /// have a second factor keeps at least one.
    pub async fn totp_remove(
        &self,
        s: &CurrentSession,
        password: &str,
        now: i64,
    ) -> Result<(), AccountsError> {
        self.require_full(s)?;
        self.reauthenticate(s, password, now).await?;
        if self.second_factor_required(&s.user) && self.store.passkeys_of(&s.user.id).await?.is_empty() {
            return Err(AccountsError::Conflict(
                "Your account must keep a second factor. Add a passkey before removing the app.",
            ));
        }
        self.store.delete_totp(&s.user.id).await?;
        self.audit(now, Some(&s.user.id), "factor.totp_removed", Some(&s.user.id), "")
            .await;
        Ok(())
    }

    /// Starts passkey registration; returns options for `navigator.credentials.create`.
    pub async fn passkey_register_start(
        &self,
        s: &CurrentSession,
        now: i64,
    ) -> Result<serde_json::Value, AccountsError> {
        self.require_enrol(s)?;
        let w = self.webauthn()?;
        let existing = self
            .user_passkeys(&s.user.id)
            .await?
            .into_iter()
            .map(|(_, k)| k.cred_id().clone())
            .collect::<Vec<_>>();
        let name = s
            .user
            .email
            .clone()
            .unwrap_or_else(|| s.user.display_name.clone());
        let (options, state) = w
            .start_passkey_registration(
                crate::passkey::user_handle(&s.user.id),
                &name,
                &s.user.display_name,
                Some(existing),
            )
            .map_err(|e| AccountsError::Internal(format!("WebAuthn: {e}")))?;
        let id = Self::flow_id(FLOW_PASSKEY_REGISTER, &s.id_hash);
        let _ = self.store.take_flow(&id, FLOW_PASSKEY_REGISTER, now).await?;
        self.store
            .put_flow(&PendingFlow {
                id_hash: id,
                kind: FLOW_PASSKEY_REGISTER.into(),
                user_id: Some(s.user.id.clone()),
                data: serde_json::to_string(&state).map_err(|e| AccountsError::Internal(e.to_string()))?,
                expires_at: now + FLOW_LIFETIME,
            })
            .await?;
        serde_json::to_value(options).map_err(|e| AccountsError::Internal(e.to_string()))
    }

    /// Finishes passkey registration with the browser's credential.
    pub async fn passkey_register_finish(
        &self,
        s: &CurrentSession,
        name: &str,
        credential: serde_json::Value,
        now: i64,
    ) -> Result<Enrolled, AccountsError> {
        self.require_enrol(s)?;
        let w = self.webauthn()?;
        let name = check_display_name(if name.trim().is_empty() { "Passkey" } else { name })?;
        let flow = self
            .store
            .take_flow(
                &Self::flow_id(FLOW_PASSKEY_REGISTER, &s.id_hash),
                FLOW_PASSKEY_REGISTER,
                now,
            )
            .await?
            .ok_or(AccountsError::Invalid(
                "The passkey registration expired. Please try again.",
            ))?;
        let state: PasskeyRegistration =
            serde_json::from_str(&flow.data).map_err(|e| AccountsError::Internal(e.to_string()))?;
        let credential: RegisterPublicKeyCredential = serde_json::from_value(credential)
            .map_err(|_| AccountsError::Invalid("The passkey answer is not valid."))?;
        let key = w.finish_passkey_registration(&credential, &state).map_err(|e| {
            tracing::info!(error = %e, "passkey registration refused");
            AccountsError::Invalid("The passkey could not be verified.")
        })?;
        let credential_id = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.cred_id())
        };
        let record = PasskeyRecord {
            id: PasskeyId::random(),
            user_id: s.user.id.clone(),
            credential_id,
            name,
            data: serde_json::to_string(&key).map_err(|e| AccountsError::Internal(e.to_string()))?,
            created_at: now,
            last_used_at: None,
        };
        match self.store.insert_passkey(&record).await {
            Ok(()) => {}
            Err(conclave_store::StoreError::Conflict) => {
                return Err(AccountsError::Conflict("This passkey is registered already."));
            }
            Err(e) => return Err(e.into()),
        }
        self.audit(
            now,
            Some(&s.user.id),
            "factor.passkey_added",
            Some(&s.user.id),
            "",
        )
        .await;
        self.after_enrolment(s, now).await
    }

    /// Removes a passkey of the signed-in user; needs the password (when
    /// the account has one). A required second factor is kept.
    pub async fn passkey_remove(
        &self,
        s: &CurrentSession,
        id: &str,
        password: &str,
        now: i64,
    ) -> Result<(), AccountsError> {
        self.require_full(s)?;
        self.reauthenticate(s, password, now).await?;
        let id = PasskeyId::parse(id).map_err(|_| AccountsError::NotFound)?;
        let keys = self.store.passkeys_of(&s.user.id).await?;
        let totp = self.store.totp(&s.user.id).await?.is_some_and(|t| t.confirmed);
        if self.second_factor_required(&s.user) && !totp && keys.len() <= 1 {
            return Err(AccountsError::Conflict("Your account must keep a second factor."));
        }
        if !self.store.delete_passkey(&s.user.id, &id).await? {
            return Err(AccountsError::NotFound);
        }
        self.audit(
            now,
            Some(&s.user.id),
            "factor.passkey_removed",
            Some(&s.user.id),
            "",
        )
        .await;
        Ok(())
    }

    /// Proves again who the user is: the password, or for accounts without
    /// one (OpenID only), a sign-in within the last minutes.
    async fn reauthenticate(
        &self,
        s: &CurrentSession,
        password: &str,
        now: i64,
    ) -> Result<(), AccountsError> {
        match &s.user.password_hash {
            Some(hash) => {
                self.second_factor_locked(&s.user.id, now).await?;
                if self.verify_password(password, Some(hash)).await {
                    Ok(())
                } else {
                    self.second_factor_failed(&s.user, now).await?;
                    Err(AccountsError::ReauthRequired)
                }
            }
            None if now - s.authenticated_at <= self.settings.reauth_window => Ok(()),
            None => Err(AccountsError::ReauthRequired),
        }
    }

    /// Changes the password; other sessions end.
    pub async fn change_password(
        &self,
        s: &CurrentSession,
        current: &str,
        new: &str,
        now: i64,
    ) -> Result<(), AccountsError> {
        self.require_full(s)?;
        if s.user.password_hash.is_some() {
            self.reauthenticate(s, current, now).await?;
        }
        let email = s.user.email.clone().unwrap_or_default();
        self.settings
            .password
            .check(new, &[&email, &s.user.display_name])?;
        let hash = self.hash_password(new).await?;
        self.store.set_password_hash(&s.user.id, &hash).await?;
        self.store
            .delete_sessions_of(&s.user.id, Some(&s.id_hash))
            .await?;
        self.audit(
            now,
            Some(&s.user.id),
            "account.password_changed",
            Some(&s.user.id),
            "",
        )
        .await;
        Ok(())
    }

    /// The user's sessions, newest first.
    pub async fn sessions(&self, s: &CurrentSession) -> Result<Vec<SessionView>, AccountsError> {
        self.require_full(s)?;
        Ok(self
            .store
            .sessions_of(&s.user.id)
            .await?
            .into_iter()
            .map(|r| SessionView {
                current: r.id_hash == s.id_hash,
                id: r.id_hash,
                created_at: r.created_at,
                last_seen_at: r.last_seen_at,
                user_agent: r.user_agent,
            })
            .collect())
    }

    /// Ends one of the user's own sessions.
    pub async fn revoke_session(&self, s: &CurrentSession, id: &str, now: i64) -> Result<(), AccountsError> {
        self.require_full(s)?;
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AccountsError::NotFound);
        }
        if !self.store.delete_session_of(&s.user.id, id).await? {
            return Err(AccountsError::NotFound);
        }
        self.audit(now, Some(&s.user.id), "session.revoke", Some(&s.user.id), "")
            .await;
        Ok(())
    }

    /// Deletes the signed-in user's account after re-authentication:
    /// profile, credentials, sessions and identities go; audit entries stay
    /// under a pseudonym that nothing stored links to the person any more.
    pub async fn delete_account(
        &self,
        s: &CurrentSession,
        password: &str,
        now: i64,
    ) -> Result<(), AccountsError> {
        self.require_full(s)?;
        self.reauthenticate(s, password, now).await?;
        self.delete_user_data(&s.user, Some(&s.user.id), now).await
    }

    async fn delete_user_data(
        &self,
        user: &User,
        actor: Option<&UserId>,
        now: i64,
    ) -> Result<(), AccountsError> {
        if user.role == Role::Admin
            && user.status == UserStatus::Active
            && self.store.count_users_with_role(Role::Admin).await? <= 1
        {
            return Err(AccountsError::Conflict(
                "The last administrator cannot be deleted. Make someone else an administrator first.",
            ));
        }
        // Throttle entries of the address are keyed hashes; remove them too.
        if let Some(email) = &user.email {
            self.store.clear_throttle(&self.account_key(email)).await?;
        }
        self.store.clear_throttle(&self.factor_key(&user.id)).await?;
        self.store.delete_user(&user.id).await?;
        self.audit(now, actor, "account.delete", Some(&user.id), "").await;
        if let Some(email) = &user.email {
            let _ = self
                .send(Mail {
                    to: email.clone(),
                    subject: format!("{}: your account was deleted", self.settings.site_name),
                    body: format!(
                        "Hello,\n\nyour account at {} and its data were deleted.\n",
                        self.settings.site_name
                    ),
                })
                .await;
        }
        Ok(())
    }

    // ---------- administration ----------

    pub async fn admin_users(&self, s: &CurrentSession) -> Result<Vec<UserView>, AccountsError> {
        self.require_admin(s)?;
        let mut out = Vec::new();
        for u in self.store.users().await? {
            let second_factor = self.has_second_factor(&u.id).await?;
            out.push(UserView {
                id: u.id.to_string(),
                email: u.email,
                display_name: u.display_name,
                role: u.role.as_str(),
                status: u.status.as_str(),
                created_at: u.created_at,
                second_factor,
            });
        }
        Ok(out)
    }

    async fn target(&self, s: &CurrentSession, id: &str) -> Result<User, AccountsError> {
        self.require_admin(s)?;
        let id = UserId::parse(id).map_err(|_| AccountsError::NotFound)?;
        if id == s.user.id {
            return Err(AccountsError::Conflict(
                "Use your own account page for your account.",
            ));
        }
        self.store.user(&id).await?.ok_or(AccountsError::NotFound)
    }

    /// Disables or enables an account; disabling ends its sessions.
    pub async fn admin_set_enabled(
        &self,
        s: &CurrentSession,
        id: &str,
        enabled: bool,
        now: i64,
    ) -> Result<(), AccountsError> {
        let u = self.target(s, id).await?;
        let status = match (enabled, u.status) {
            (true, UserStatus::Disabled) => {
                if u.confirmed_at.is_some() {
                    UserStatus::Active
                } else {
                    UserStatus::Pending
                }
            }
            (true, other) => other,
            (false, _) => UserStatus::Disabled,
        };
        self.store.set_status(&u.id, status, None).await?;
        if !enabled {
            self.store.delete_sessions_of(&u.id, None).await?;
        }
        self.audit(
            now,
            Some(&s.user.id),
            if enabled { "admin.enable" } else { "admin.disable" },
            Some(&u.id),
            "",
        )
        .await;
        Ok(())
    }

    /// Changes a user's role; their sessions end (privilege change).
    pub async fn admin_set_role(
        &self,
        s: &CurrentSession,
        id: &str,
        role: Role,
        now: i64,
    ) -> Result<(), AccountsError> {
        let u = self.target(s, id).await?;
        self.store.set_role(&u.id, role).await?;
        self.store.delete_sessions_of(&u.id, None).await?;
        self.audit(
            now,
            Some(&s.user.id),
            "admin.set_role",
            Some(&u.id),
            role.as_str(),
        )
        .await;
        Ok(())
    }

    pub async fn admin_delete(&self, s: &CurrentSession, id: &str, now: i64) -> Result<(), AccountsError> {
        let u = self.target(s, id).await?;
        self.delete_user_data(&u, Some(&s.user.id), now).await
    }

    /// The newest audit entries.
    pub async fn admin_audit(
        &self,
        s: &CurrentSession,
        limit: i64,
    ) -> Result<Vec<conclave_store::AuditEntry>, AccountsError> {
        self.require_admin(s)?;
        Ok(self.store.audit(limit.clamp(1, 1000)).await?)
    }

    // ---------- OpenID Connect ----------

    /// Starts sign-in at a provider: returns the URL to send the browser
    /// to and the value of the cookie that binds the flow to this browser.
    pub async fn oidc_start(&self, provider: &str, now: i64) -> Result<(String, String), AccountsError> {
        let binding = secrets::random_token();
        let (url, state, pending) = self.oidc.start(provider, secrets::token_hash(&binding)).await?;
        self.store
            .put_flow(&PendingFlow {
                id_hash: secrets::token_hash(&state),
                kind: FLOW_OIDC.into(),
                user_id: None,
                data: serde_json::to_string(&pending).map_err(|e| AccountsError::Internal(e.to_string()))?,
                expires_at: now + 10 * 60,
            })
            .await?;
        Ok((url, binding))
    }

    /// Finishes sign-in at a provider: checks state and browser binding,
    /// validates the ID token, finds or creates the user and starts a session.
    #[allow(clippy::too_many_arguments)]
    pub async fn oidc_finish(
        &self,
        provider: &str,
        code: &str,
        state: &str,
        binding: Option<&str>,
        user_agent: &str,
        replacing: Option<&str>,
        now: i64,
    ) -> Result<NewSession, AccountsError> {
        if let Some(old) = replacing {
            self.sign_out(old).await?;
        }
        if state.is_empty() || state.len() > 200 || code.is_empty() || code.len() > 2000 {
            return Err(AccountsError::LinkInvalid);
        }
        let flow = self
            .store
            .take_flow(&secrets::token_hash(state), FLOW_OIDC, now)
            .await?
            .ok_or(AccountsError::LinkInvalid)?;
        let pending: crate::oidc::PendingLogin =
            serde_json::from_str(&flow.data).map_err(|e| AccountsError::Internal(e.to_string()))?;
        let bound = binding.is_some_and(|b| secrets::same(&secrets::token_hash(b), &pending.binding_hash));
        if pending.provider != provider || !bound {
            return Err(AccountsError::LinkInvalid);
        }
        let identity = self.oidc.finish(&pending, code).await?;
        let attributes = serde_json::Value::Object(identity.attributes.clone()).to_string();
        let claims = attributes.clone();
        let user_id = match self
            .store
            .oidc_user(&identity.provider, &identity.subject)
            .await?
        {
            Some(id) => {
                let u = self.store.user(&id).await?.ok_or(AccountsError::SignInFailed)?;
                if u.status != UserStatus::Active {
                    return Err(AccountsError::SignInFailed);
                }
                self.store
                    .set_profile(&u.id, &u.display_name, &attributes)
                    .await?;
                if let Some(role) = identity.role
                    && role != u.role
                {
                    self.store.set_role(&u.id, role).await?;
                    self.audit(now, None, "oidc.role_mapped", Some(&u.id), role.as_str())
                        .await;
                }
                id
            }
            None => {
                let email = match &identity.email {
                    Some(e) if self.store.user_by_email(e).await?.is_none() => Some(e.clone()),
                    Some(_) => {
                        return Err(AccountsError::Conflict(
                            "An account with this e-mail address exists already. Sign in with its password.",
                        ));
                    }
                    None => None,
                };
                let name = identity
                    .name
                    .as_deref()
                    .and_then(|n| check_display_name(n).ok())
                    .unwrap_or_else(|| "New user".into());
                let u = User {
                    id: UserId::random(),
                    email,
                    display_name: name,
                    password_hash: None,
                    role: identity.role.unwrap_or(Role::User),
                    status: UserStatus::Active,
                    attributes: attributes.clone(),
                    created_at: now,
                    confirmed_at: Some(now),
                };
                self.store.insert_user(&u).await?;
                self.audit(
                    now,
                    Some(&u.id),
                    "account.register_oidc",
                    Some(&u.id),
                    &identity.provider,
                )
                .await;
                u.id
            }
        };
        self.store
            .put_oidc_identity(&OidcIdentity {
                provider: identity.provider.clone(),
                subject: identity.subject.clone(),
                user_id: user_id.clone(),
                claims,
                created_at: now,
                last_login_at: now,
            })
            .await?;
        let user = self
            .store
            .user(&user_id)
            .await?
            .ok_or(AccountsError::SignInFailed)?;
        let level = self.level_after_primary(&user).await?;
        self.audit(
            now,
            Some(&user.id),
            "signin.oidc",
            Some(&user.id),
            &identity.provider,
        )
        .await;
        self.start_session(&user.id, level, user_agent, now).await
    }

    /// Removes expired sessions, links, ceremonies and throttle entries.
    pub async fn housekeeping(&self, now: i64) -> Result<(), AccountsError> {
        Ok(self.store.purge_expired(now, self.settings.session_idle).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_look_right() {
        let c = recovery_code();
        assert_eq!(c.len(), 11);
        assert_eq!(&c[5..6], "-");
        assert_eq!(normalise_recovery_code(&c.to_uppercase()), c.replace('-', ""));
        assert_eq!(normalise_recovery_code(" ab cd-ef "), "abcdef");
    }

    #[test]
    fn user_agents_are_shortened() {
        let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36";
        assert_eq!(short_agent(ua), "Chromium on Linux");
        assert_eq!(short_agent(""), "Browser");
    }
}
