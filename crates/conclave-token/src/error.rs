//! The one error type of this crate.

/// Why a token could not be signed, verified or used.
///
/// Every message is short and safe to show to a client: none of them names a
/// secret, a key, a claim value or a parser detail. Log the variant (its
/// `Debug` form carries no data either) and return the `Display` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is longer than [`crate::MAX_TOKEN_LEN`] bytes.
    #[error("token too large")]
    TooLarge,
    /// Not three base64url parts, bad base64, bad JSON, a claim of the wrong
    /// type, a duplicate claim or an unsupported header field.
    #[error("malformed token")]
    Malformed,
    /// The header's `alg` is not `HS256` (this includes `none`), or its `typ`
    /// is present and not `JWT`.
    #[error("unsupported token algorithm")]
    UnsupportedAlgorithm,
    /// `iss` is missing or names an API key this server does not know.
    #[error("unknown API key")]
    UnknownKey,
    /// The signature does not match the token's content.
    #[error("invalid token signature")]
    BadSignature,
    /// The token has no `exp` claim (or `exp` is 0).
    #[error("token has no expiry")]
    MissingExpiry,
    /// `exp` has passed (after the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is still in the future (after the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// The token grants `roomJoin` but carries no identity (`sub`).
    #[error("token has no identity")]
    MissingIdentity,
    /// The token does not grant `roomJoin`.
    #[error("token does not allow joining a room")]
    JoinNotAllowed,
    /// The token grants `roomJoin` but names no room.
    #[error("token names no room")]
    MissingRoom,
    /// The token is for another room than the one asked for.
    #[error("token is not valid for this room")]
    RoomMismatch,
    /// The token lacks the grant an operation needs.
    #[error("permission denied")]
    PermissionDenied,
    /// Signing was asked with an empty API key or secret.
    #[error("API key or secret is empty")]
    EmptyCredentials,
    /// The claims could not be encoded (should not happen).
    #[error("token could not be encoded")]
    Encode,
}

impl TokenError {
    /// The HTTP status a server should answer with: 401 when the token itself
    /// is not acceptable, 403 when it is genuine but does not grant what was
    /// asked, 500 for signing-side failures.
    #[must_use]
    pub fn http_status(self) -> u16 {
        match self {
            Self::TooLarge
            | Self::Malformed
            | Self::UnsupportedAlgorithm
            | Self::UnknownKey
            | Self::BadSignature
            | Self::MissingExpiry
            | Self::Expired
            | Self::NotYetValid
            | Self::MissingIdentity => 401,
            Self::JoinNotAllowed | Self::MissingRoom | Self::RoomMismatch | Self::PermissionDenied => 403,
            Self::EmptyCredentials | Self::Encode => 500,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TokenError;

    #[test]
    fn messages_are_short_and_plain() {
        let all = [
            TokenError::TooLarge,
            TokenError::Malformed,
            TokenError::UnsupportedAlgorithm,
            TokenError::UnknownKey,
            TokenError::BadSignature,
            TokenError::MissingExpiry,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::MissingIdentity,
            TokenError::JoinNotAllowed,
            TokenError::MissingRoom,
            TokenError::RoomMismatch,
            TokenError::PermissionDenied,
            TokenError::EmptyCredentials,
            TokenError::Encode,
        ];
        for e in all {
            let msg = e.to_string();
            assert!(!msg.is_empty() && msg.len() < 48, "{msg}");
            assert!(matches!(e.http_status(), 401 | 403 | 500));
        }
    }
}
