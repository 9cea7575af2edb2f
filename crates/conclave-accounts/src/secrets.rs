//! Random tokens and the hashes that stand for them in the database.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A fresh random token: 32 bytes, base64url (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of a token, hex. Tokens are random, so a fast hash suffices:
/// a database reader cannot turn the hash back into a usable token.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Whether text looks like a token of [`random_token`] (checked before any lookup).
pub fn looks_like_token(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A keyed pseudonym (HMAC-SHA256, 16 hex digits after `p:`): stable for
/// one value and key, not reversible without the key.
pub fn pseudonym(key: &[u8; 32], value: &str) -> String {
    format!("p:{}", &keyed_hash(key, value)[..16])
}

/// HMAC-SHA256 of a value, hex.
pub fn keyed_hash(key: &[u8; 32], value: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        // HMAC takes keys of any length; this branch cannot be reached.
        return hex(&Sha256::digest(value.as_bytes()));
    };
    mac.update(value.as_bytes());
    hex(&mac.finalize().into_bytes())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time comparison of two strings.
pub fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_recognised() {
        let a = random_token();
        assert!(looks_like_token(&a));
        assert_ne!(a, random_token());
        assert!(!looks_like_token("short"));
        assert!(!looks_like_token(&format!("{}=", &a[..42])));
        assert_eq!(token_hash(&a).len(), 64);
        assert_eq!(token_hash(&a), token_hash(&a));
    }

    #[test]
    fn pseudonyms_depend_on_the_key() {
        let k1 = [1u8; 32];
        let k2 = [2u8; 32];
        assert_eq!(pseudonym(&k1, "usr_x"), pseudonym(&k1, "usr_x"));
        assert_ne!(pseudonym(&k1, "usr_x"), pseudonym(&k2, "usr_x"));
        assert!(!pseudonym(&k1, "usr_x").contains("usr_x"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
