//! The rows the store reads and writes.

use crate::ids::{PasskeyId, Role, UserId, UserStatus};

/// An account. `email` is normalised (trimmed, lower-case) by the caller;
/// it is empty (`None`) for accounts known only through an OpenID provider
/// that gave no usable address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: Option<String>,
    pub display_name: String,
    /// PHC string (Argon2id), or `None` for accounts without a password.
    pub password_hash: Option<String>,
    pub role: Role,
    pub status: UserStatus,
    /// JSON object of attributes from identity providers.
    pub attributes: String,
    pub created_at: i64,
    pub confirmed_at: Option<i64>,
}

/// What an e-mailed link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    /// Confirms the address given at registration.
    Confirm,
    /// An administrator's invitation: confirms the address and sets a password.
    Invite,
    /// A forgotten password: sets a new one.
    Reset,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::Confirm => "confirm",
            TokenPurpose::Invite => "invite",
            TokenPurpose::Reset => "reset",
        }
    }
}

/// An e-mailed link, stored by the hash of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailToken {
    pub token_hash: String,
    pub user_id: UserId,
    pub purpose: TokenPurpose,
    pub created_at: i64,
    pub expires_at: i64,
}

/// How far a session has come through sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionLevel {
    /// The password was right; a second factor is still due.
    SecondFactor,
    /// Signed in, but a second factor must be enrolled before anything else.
    MustEnrol,
    /// Fully signed in.
    Full,
}

impl SessionLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionLevel::SecondFactor => "second_factor",
            SessionLevel::MustEnrol => "must_enrol",
            SessionLevel::Full => "full",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "second_factor" => Some(SessionLevel::SecondFactor),
            "must_enrol" => Some(SessionLevel::MustEnrol),
            "full" => Some(SessionLevel::Full),
            _ => None,
        }
    }
}

/// A server-side session, stored by the hash of the cookie's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id_hash: String,
    pub user_id: UserId,
    pub csrf_token: String,
    pub level: SessionLevel,
    pub created_at: i64,
    pub last_seen_at: i64,
    /// The absolute end of the session.
    pub expires_at: i64,
    /// When the user last proved who they are (for re-authentication).
    pub authenticated_at: i64,
    /// A short description of the browser, shown in the session list.
    pub user_agent: String,
}

/// A TOTP secret (base32) and the last time step whose code was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpRecord {
    pub user_id: UserId,
    pub secret: String,
    pub confirmed: bool,
    pub last_step: i64,
    pub created_at: i64,
}

/// A WebAuthn credential; `data` is the serialised credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRecord {
    pub id: PasskeyId,
    pub user_id: UserId,
    /// The credential id, base64url.
    pub credential_id: String,
    pub name: String,
    pub data: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// An account at an OpenID provider linked to a local user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcIdentity {
    pub provider: String,
    pub subject: String,
    pub user_id: UserId,
    /// JSON object of the mapped claims.
    pub claims: String,
    pub created_at: i64,
    pub last_login_at: i64,
}

/// State kept between the steps of a ceremony (WebAuthn, OpenID Connect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingFlow {
    pub id_hash: String,
    pub kind: String,
    pub user_id: Option<UserId>,
    pub data: String,
    pub expires_at: i64,
}

/// Failed attempts for one throttle key within the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThrottleState {
    pub failures: i64,
    pub window_start: i64,
    pub locked_until: i64,
}

/// One line of the audit log. `actor` and `subject` are pseudonyms, never
/// user ids or addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: String,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: String,
}
