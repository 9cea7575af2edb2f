//! API key and secret newtypes.

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// A public API key: the token's `iss` claim names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ApiKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for ApiKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ApiKey {
    fn from(key: &str) -> Self {
        Self::new(key)
    }
}

impl From<String> for ApiKey {
    fn from(key: String) -> Self {
        Self(key)
    }
}

/// The shared secret of an API key (the HMAC key of HS256).
///
/// `Debug` prints `ApiSecret(<redacted>)`, there is no `Display` and no
/// `Serialize`, and the memory is wiped when the value is dropped. The server
/// should refuse secrets shorter than [`ApiSecret::MIN_LEN`] at start-up
/// ([`ApiSecret::is_strong`]); this crate itself accepts any non-empty secret
/// so that tokens from existing deployments keep working.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct ApiSecret(String);

impl ApiSecret {
    /// The shortest secret a server should accept in its configuration.
    pub const MIN_LEN: usize = 32;

    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for code that must compute another MAC with it
    /// (for instance webhook signatures). Never log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the secret is at least [`ApiSecret::MIN_LEN`] bytes long.
    #[must_use]
    pub fn is_strong(&self) -> bool {
        self.0.len() >= Self::MIN_LEN
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for ApiSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiSecret(<redacted>)")
    }
}

impl Drop for ApiSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl From<&str> for ApiSecret {
    fn from(secret: &str) -> Self {
        Self::new(secret)
    }
}

impl From<String> for ApiSecret {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::{ApiKey, ApiSecret};

    #[test]
    fn secret_debug_is_redacted() {
        let s = ApiSecret::new("hunter2-hunter2-hunter2-hunter2-xx");
        assert_eq!(format!("{s:?}"), "ApiSecret(<redacted>)");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(ApiSecret(<redacted>))");
        assert!(s.is_strong());
        assert!(!ApiSecret::new("short").is_strong());
    }

    #[test]
    fn key_display_and_serde() {
        let k = ApiKey::new("APIabc");
        assert_eq!(k.to_string(), "APIabc");
        assert_eq!(serde_json::to_string(&k).expect("serialize key"), "\"APIabc\"");
        let s: ApiSecret = serde_json::from_str("\"xyz\"").expect("deserialize secret");
        assert_eq!(s.expose(), "xyz");
    }
}
