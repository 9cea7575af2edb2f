//! The one error type of the crate, with the text a client may see.

use conclave_store::StoreError;

/// Why an account operation failed.
///
/// [`AccountsError::client_message`] is what a client may be told; it
/// never says whether an account exists and never carries internal detail.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// Input that breaks a rule; the text says which.
    #[error("{0}")]
    Invalid(&'static str),
    /// The password was refused; the text says why.
    #[error("the password is too weak: {0}")]
    WeakPassword(String),
    #[error("self-registration is switched off")]
    RegistrationClosed,
    /// Wrong e-mail address or password, unknown or disabled account: one answer.
    #[error("sign-in failed")]
    SignInFailed,
    /// The password was right but the address is not confirmed yet.
    #[error("the e-mail address is not confirmed")]
    NotConfirmed,
    #[error("too many attempts; retry in {retry_after} s")]
    Throttled { retry_after: i64 },
    /// The link is unknown, used or expired: one answer.
    #[error("the link is not valid")]
    LinkInvalid,
    /// A wrong, reused or expired second-factor code or assertion.
    #[error("the code is not valid")]
    CodeInvalid,
    #[error("not signed in")]
    NotSignedIn,
    /// Signed in, but the session has not finished a step (second factor or enrolment).
    #[error("another step of the sign-in is due")]
    StepDue,
    #[error("not allowed")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(&'static str),
    /// The password must be entered again for this.
    #[error("re-authentication needed")]
    ReauthRequired,
    /// A feature that this server's configuration cannot offer.
    #[error("{0}")]
    Unavailable(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("mail delivery failed: {0}")]
    Mail(String),
    /// An identity provider or the WebAuthn library failed.
    #[error("{0}")]
    External(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl AccountsError {
    /// The HTTP-like status class of the error (the server maps it).
    pub fn status(&self) -> u16 {
        match self {
            AccountsError::Invalid(_) | AccountsError::WeakPassword(_) | AccountsError::LinkInvalid => 400,
            AccountsError::SignInFailed
            | AccountsError::CodeInvalid
            | AccountsError::NotSignedIn
            | AccountsError::NotConfirmed => 401,
            AccountsError::RegistrationClosed
            | AccountsError::Forbidden
            | AccountsError::StepDue
            | AccountsError::ReauthRequired => 403,
            AccountsError::NotFound => 404,
            AccountsError::Conflict(_) => 409,
            AccountsError::Throttled { .. } => 429,
            AccountsError::Unavailable(_) => 501,
            AccountsError::External(_) => 502,
            AccountsError::Store(_) | AccountsError::Mail(_) | AccountsError::Internal(_) => 500,
        }
    }

    /// A short text for the client. Internal failures get a fixed text.
    pub fn client_message(&self) -> String {
        match self {
            AccountsError::Invalid(m) | AccountsError::Conflict(m) | AccountsError::Unavailable(m) => {
                (*m).to_owned()
            }
            AccountsError::WeakPassword(reason) => format!("Please choose a stronger password: {reason}"),
            AccountsError::RegistrationClosed => {
                "Registration is by invitation only on this server. Ask an administrator for an invitation."
                    .into()
            }
            AccountsError::SignInFailed => "The e-mail address or the password is wrong.".into(),
            AccountsError::NotConfirmed => {
                "Please confirm your e-mail address first: follow the link in the mail we sent you.".into()
            }
            AccountsError::Throttled { retry_after } => {
                let minutes = (retry_after + 59) / 60;
                format!("Too many attempts. Please try again in {minutes} minute(s).")
            }
            AccountsError::LinkInvalid => {
                "This link is not valid: it was used already or has expired.".into()
            }
            AccountsError::CodeInvalid => "The code is not valid. Please try again.".into(),
            AccountsError::NotSignedIn => "Please sign in.".into(),
            AccountsError::StepDue => "Please finish signing in first.".into(),
            AccountsError::Forbidden => "You are not allowed to do this.".into(),
            AccountsError::NotFound => "Not found.".into(),
            AccountsError::ReauthRequired => "Please enter your password again to confirm.".into(),
            AccountsError::External(_) => {
                "The sign-in service did not answer as expected. Please try again.".into()
            }
            AccountsError::Store(_) | AccountsError::Mail(_) | AccountsError::Internal(_) => {
                "Something went wrong on the server. Please try again later.".into()
            }
        }
    }

    /// Whether the error is the server's fault (to be logged).
    pub fn is_internal(&self) -> bool {
        self.status() >= 500
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_detail_never_reaches_the_client() {
        let e = AccountsError::Internal("secret path /var/lib/x".into());
        assert!(!e.client_message().contains("/var"));
        let e = AccountsError::Mail("smtp.example.org refused user@example.org".into());
        assert!(!e.client_message().contains("example"));
        let e = AccountsError::External("issuer said: token abc".into());
        assert!(!e.client_message().contains("abc"));
        assert!(
            AccountsError::Throttled { retry_after: 61 }
                .client_message()
                .contains("2 minute")
        );
    }

    #[test]
    fn one_answer_for_every_failed_sign_in() {
        // Unknown user, wrong password and disabled account all map to this one value.
        assert_eq!(AccountsError::SignInFailed.status(), 401);
        assert!(!AccountsError::SignInFailed.client_message().contains("exist"));
    }
}
