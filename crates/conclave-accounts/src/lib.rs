//! Conclave accounts: registration confirmed by e-mail, password rules and
//! Argon2id hashing, sign-in throttling without user enumeration, second
//! factors (TOTP, passkeys, recovery codes), server-side sessions, OpenID
//! Connect sign-in, account deletion and administration.
//!
//! Everything here is independent of HTTP: the server crate turns requests
//! into calls of [`Accounts`] and its errors into responses. Every
//! operation takes the current time as `now` (seconds since the Unix
//! epoch) and never reads the clock itself, so rules about time are tested
//! with any time.

mod error;
mod flows;
pub mod mail;
pub mod oidc;
mod passkey;
pub mod password;
pub mod secrets;
pub mod throttle;
pub mod totp;

use std::net::IpAddr;

pub use conclave_store::{PasskeyId, Role, SessionLevel, Store, User, UserId, UserStatus};
pub use error::AccountsError;
pub use flows::*;
use mail::{Mail, Mailer};
use password::{HashParams, Hasher, PasswordPolicy};
use throttle::ThrottleRule;
pub use url::Url;

/// The rules of this server's accounts.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The address users reach the server at: links in mails, the WebAuthn
    /// origin (its host is the relying party id) and OpenID redirects.
    pub public_url: Url,
    /// Shown in mails and authenticator apps.
    pub site_name: String,
    /// Whether anyone may register; otherwise administrators invite.
    pub self_registration: bool,
    /// Whether every user (not only administrators) needs a second factor.
    pub require_second_factor: bool,
    pub password: PasswordPolicy,
    pub hash: HashParams,
    /// Seconds without a request after which a session ends.
    pub session_idle: i64,
    /// Seconds after sign-in after which a session ends whatever happens.
    pub session_absolute: i64,
    pub confirm_link_lifetime: i64,
    pub invite_link_lifetime: i64,
    /// Seconds after a sign-in within which deletion needs no password
    /// (for accounts without one).
    pub reauth_window: i64,
    pub account_throttle: ThrottleRule,
    pub address_throttle: ThrottleRule,
    /// Second-factor failures per account.
    pub second_factor_throttle: ThrottleRule,
    /// Registrations per source address.
    pub registration_throttle: ThrottleRule,
    /// Key of the pseudonyms in the audit log and of hashed addresses.
    pub secret_key: [u8; 32],
    pub oidc: Vec<oidc::ProviderSettings>,
}

impl Settings {
    /// Defaults for a server at `public_url`, keyed with `secret_key`.
    pub fn new(public_url: Url, secret_key: [u8; 32]) -> Self {
        Self {
            public_url,
            site_name: "Conclave".into(),
            self_registration: true,
            require_second_factor: false,
            password: PasswordPolicy::default(),
            hash: HashParams::default(),
            session_idle: 30 * 60,
            session_absolute: 12 * 3600,
            confirm_link_lifetime: 24 * 3600,
            invite_link_lifetime: 7 * 24 * 3600,
            reauth_window: 5 * 60,
            account_throttle: ThrottleRule {
                max_failures: 5,
                window: 15 * 60,
                lock: 15 * 60,
            },
            address_throttle: ThrottleRule {
                max_failures: 30,
                window: 15 * 60,
                lock: 15 * 60,
            },
            second_factor_throttle: ThrottleRule {
                max_failures: 5,
                window: 15 * 60,
                lock: 15 * 60,
            },
            registration_throttle: ThrottleRule {
                max_failures: 10,
                window: 3600,
                lock: 3600,
            },
            secret_key,
            oidc: Vec::new(),
        }
    }
}

/// The accounts service: the store, the rules and the mailer.
pub struct Accounts {
    store: Store,
    settings: Settings,
    hasher: Hasher,
    mailer: Mailer,
    webauthn: Option<webauthn_rs::Webauthn>,
    oidc: oidc::Providers,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts").finish_non_exhaustive()
    }
}

impl Accounts {
    /// Builds the service. Passkeys are offered only when the public URL
    /// has a domain name (WebAuthn does not accept IP addresses).
    pub fn new(store: Store, settings: Settings, mailer: Mailer) -> Result<Self, AccountsError> {
        let hasher = Hasher::new(settings.hash)?;
        let webauthn = passkey::webauthn(&settings)?;
        if webauthn.is_none() {
            tracing::warn!(
                "passkeys are off: the public URL has no domain name (use e.g. http://localhost:PORT)"
            );
        }
        let oidc = oidc::Providers::new(&settings)?;
        Ok(Self {
            store,
            settings,
            hasher,
            mailer,
            webauthn,
            oidc,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn passkeys_available(&self) -> bool {
        self.webauthn.is_some()
    }

    /// The configured OpenID providers as `(id, display name)`.
    pub fn oidc_providers(&self) -> Vec<(String, String)> {
        self.settings
            .oidc
            .iter()
            .map(|p| (p.id.clone(), p.name.clone()))
            .collect()
    }

    fn pseudonym(&self, user: &UserId) -> String {
        secrets::pseudonym(&self.settings.secret_key, user.as_str())
    }

    /// Writes an audit entry naming users only by pseudonym.
    async fn audit(
        &self,
        now: i64,
        actor: Option<&UserId>,
        action: &str,
        subject: Option<&UserId>,
        detail: &str,
    ) {
        let entry = conclave_store::AuditEntry {
            id: format!("aud_{}", conclave_types::random_base62(20)),
            at: now,
            actor: actor.map_or_else(|| "-".to_owned(), |u| self.pseudonym(u)),
            action: action.to_owned(),
            subject: subject.map_or_else(|| "-".to_owned(), |u| self.pseudonym(u)),
            detail: detail.to_owned(),
        };
        if let Err(e) = self.store.append_audit(&entry).await {
            tracing::error!(error = %e, action, "cannot write the audit log");
        }
    }

    /// Sends a mail; a failure is logged and reported.
    async fn send(&self, mail: Mail) -> Result<(), AccountsError> {
        self.mailer.send(&mail).await.inspect_err(|e| {
            tracing::error!(error = %e, "mail delivery failed");
        })
    }

    fn link(&self, path: &str, token: &str) -> String {
        let base = self.settings.public_url.as_str().trim_end_matches('/');
        format!("{base}{path}#token={token}")
    }

    async fn hash_password(&self, password: &str) -> Result<String, AccountsError> {
        let hasher = self.hasher.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hasher.hash(&password))
            .await
            .map_err(|e| AccountsError::Internal(e.to_string()))?
    }

    async fn verify_password(&self, password: &str, stored: Option<&str>) -> bool {
        let hasher = self.hasher.clone();
        let password = password.to_owned();
        let stored = stored.map(str::to_owned);
        tokio::task::spawn_blocking(move || hasher.verify(&password, stored.as_deref()))
            .await
            .unwrap_or(false)
    }

    /// Throttle key of a source address: IPv6 by its /64, keyed hash.
    fn address_key(&self, addr: IpAddr) -> String {
        let text = match addr {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
        };
        format!(
            "addr:{}",
            &secrets::keyed_hash(&self.settings.secret_key, &text)[..32]
        )
    }

    /// Throttle key of a submitted e-mail address (known or not).
    fn account_key(&self, email: &str) -> String {
        format!(
            "acct:{}",
            &secrets::keyed_hash(&self.settings.secret_key, email)[..32]
        )
    }

    fn factor_key(&self, user: &UserId) -> String {
        format!(
            "2fa:{}",
            &secrets::keyed_hash(&self.settings.secret_key, user.as_str())[..32]
        )
    }
}

/// Normalises and checks an e-mail address: trimmed, lower-case, one `@`
/// with text on both sides, a dot in the domain, no spaces or controls,
/// at most 254 characters.
pub fn normalise_email(raw: &str) -> Result<String, AccountsError> {
    let e = raw.trim().to_lowercase();
    let bad = AccountsError::Invalid("Please enter a valid e-mail address.");
    if e.len() > 254 || e.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad);
    }
    let Some((local, domain)) = e.split_once('@') else {
        return Err(bad);
    };
    if local.is_empty()
        || local.len() > 64
        || domain.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || e.contains(['<', '>', '"', ',', ';', '(', ')', '[', ']', '\\'])
    {
        return Err(bad);
    }
    Ok(e)
}

/// Checks a display name: 1 to 64 characters, no control characters.
pub fn check_display_name(raw: &str) -> Result<String, AccountsError> {
    let n = raw.trim();
    let count = n.chars().count();
    if !(1..=64).contains(&count) || n.chars().any(char::is_control) {
        return Err(AccountsError::Invalid("Names have 1 to 64 characters."));
    }
    Ok(n.to_owned())
}

#[cfg(test)]
mod tests;
