//! Time-based one-time passwords (RFC 6238: HMAC-SHA1, 6 digits, 30 s
//! steps, one step of clock skew either way).

use rand::RngCore;
use totp_rs::{Algorithm, Secret, Totp};

use crate::AccountsError;

pub const STEP: u64 = 30;

/// A fresh 160-bit secret, base32.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    Secret::new(Box::new(bytes)).to_base32()
}

fn totp(secret: &str, account: &str, issuer: &str) -> Result<Totp, AccountsError> {
    let secret =
        Secret::try_from_base32(secret).map_err(|_| AccountsError::Internal("stored TOTP secret".into()))?;
    totp_rs::Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(STEP)
        .with_secret(secret)
        .with_account_name(account)
        .with_issuer(Some(issuer))
        .build()
        .map_err(|e| AccountsError::Internal(format!("TOTP: {e}")))
}

/// The `otpauth://` URI an authenticator app imports.
pub fn provisioning_uri(secret: &str, account: &str, issuer: &str) -> Result<String, AccountsError> {
    totp(secret, account, issuer)?
        .to_url()
        .map_err(|e| AccountsError::Internal(format!("TOTP URI: {e}")))
}

/// The time step whose code `code` is, within the allowed skew of `now`,
/// or `None`. The caller must still refuse a step used before.
pub fn matching_step(secret: &str, code: &str, now: i64) -> Result<Option<i64>, AccountsError> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let t = totp(secret, "x", "x")?;
    let now = u64::try_from(now).unwrap_or(0);
    Ok(t.check(&code, now).and_then(|step| i64::try_from(step).ok()))
}

/// The code of a time (for tests and tools).
pub fn code_at(secret: &str, now: i64) -> Result<String, AccountsError> {
    Ok(totp(secret, "x", "x")?
        .generate(u64::try_from(now).unwrap_or(0))
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 seed "12345678901234567890" (6 digits).
    #[test]
    fn rfc_6238_vectors() {
        let secret = Secret::new(Box::new(*b"12345678901234567890")).to_base32();
        for (t, code) in [
            (59, "287082"),
            (1111111109, "081804"),
            (1234567890, "005924"),
            (2000000000, "279037"),
        ] {
            assert_eq!(code_at(&secret, t).expect("code"), code, "t={t}");
            assert_eq!(
                matching_step(&secret, code, t).expect("check"),
                Some(t / 30),
                "t={t}"
            );
        }
    }

    #[test]
    fn skew_is_one_step_and_junk_is_refused() {
        let s = new_secret();
        let now = 1_700_000_000;
        let code = code_at(&s, now).expect("code");
        assert!(matching_step(&s, &code, now + 30).expect("check").is_some());
        assert!(matching_step(&s, &code, now - 30).expect("check").is_some());
        assert!(matching_step(&s, &code, now + 90).expect("check").is_none());
        for junk in ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦"] {
            assert_eq!(matching_step(&s, junk, now).expect("check"), None);
        }
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert!(matching_step(&s, &spaced, now).expect("check").is_some());
        let uri = provisioning_uri(&s, "ada@example.org", "Conclave").expect("uri");
        assert!(uri.starts_with("otpauth://totp/"));
    }
}
