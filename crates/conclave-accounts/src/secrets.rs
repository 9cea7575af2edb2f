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

/// Encrypts a secret that the server must read back (a TOTP key) with
/// AES-256-GCM under a key derived from the server key, bound to
/// `context` (the owner's id) so that a value moved to another row does
/// not open. The result is `v1.` and base64url of nonce and ciphertext.
pub fn seal(key: &[u8; 32], context: &str, plaintext: &str) -> Result<String, crate::AccountsError> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(&sealing_key(key))
        .map_err(|_| crate::AccountsError::Internal("sealing key".into()))?;
    let mut nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut nonce);
    let sealed = cipher
        .encrypt(
            &aes_gcm::Nonce::from(nonce),
            Payload {
                msg: plaintext.as_bytes(),
                aad: context.as_bytes(),
            },
        )
        .map_err(|_| crate::AccountsError::Internal("sealing failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(format!("v1.{}", URL_SAFE_NO_PAD.encode(out)))
}

/// Opens what [`seal`] made for the same context.
pub fn open(key: &[u8; 32], context: &str, sealed: &str) -> Result<String, crate::AccountsError> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let bad = || crate::AccountsError::Internal("a sealed value does not open".into());
    let bytes = sealed
        .strip_prefix("v1.")
        .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
        .ok_or_else(bad)?;
    if bytes.len() < 12 + 16 {
        return Err(bad());
    }
    let (nonce, ciphertext) = bytes.split_at(12);
    let nonce: [u8; 12] = nonce.try_into().map_err(|_| bad())?;
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(&sealing_key(key)).map_err(|_| bad())?;
    let plain = cipher
        .decrypt(
            &aes_gcm::Nonce::from(nonce),
            Payload {
                msg: ciphertext,
                aad: context.as_bytes(),
            },
        )
        .map_err(|_| bad())?;
    String::from_utf8(plain).map_err(|_| bad())
}

fn sealing_key(key: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return out;
    };
    mac.update(b"conclave seal v1");
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
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
    fn sealed_values_open_only_with_key_and_context() {
        let k = [3u8; 32];
        let sealed = seal(&k, "usr_a", "JBSWY3DPEHPK3PXP").expect("seal");
        assert!(sealed.starts_with("v1.") && !sealed.contains("JBSWY3"));
        assert_ne!(
            sealed,
            seal(&k, "usr_a", "JBSWY3DPEHPK3PXP").expect("seal"),
            "fresh nonce"
        );
        assert_eq!(open(&k, "usr_a", &sealed).expect("open"), "JBSWY3DPEHPK3PXP");
        assert!(open(&k, "usr_b", &sealed).is_err());
        assert!(open(&[4u8; 32], "usr_a", &sealed).is_err());
        for junk in ["", "v1.", "v1.AAAA", "v2.xyz", "JBSWY3DPEHPK3PXP"] {
            assert!(open(&k, "usr_a", junk).is_err(), "{junk}");
        }
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
