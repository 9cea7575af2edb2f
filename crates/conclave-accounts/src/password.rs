//! Password rules (length, a strength estimate, lists of common passwords)
//! and Argon2id hashing with re-hashing when the parameters change.

use std::collections::HashSet;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use zxcvbn::matching::patterns::MatchPattern;
use zxcvbn::{Score, zxcvbn};

use crate::AccountsError;

/// Words that make a poor password on this service whatever their score.
const SERVICE_WORDS: [&str; 8] = [
    "conclave",
    "meeting",
    "videoconference",
    "conference",
    "password",
    "passwort",
    "welcome",
    "willkommen",
];

/// Longest password accepted (in bytes): long enough for passphrases,
/// short enough that hashing cannot be abused.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The password rules of this server.
#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    pub min_chars: usize,
    /// Extra refused passwords (lower-case), e.g. from an operator's file.
    pub refused: HashSet<String>,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_chars: 12,
            refused: HashSet::new(),
        }
    }
}

impl PasswordPolicy {
    /// Adds the passwords of a list (one a line; `#` starts a comment).
    pub fn add_list(&mut self, text: &str) {
        for line in text.lines() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                self.refused.insert(line.to_lowercase());
            }
        }
    }

    /// Checks a new password. `context` holds what the user entered
    /// elsewhere (e-mail address, name): a password built from it is weak.
    /// The error says why the password was refused.
    pub fn check(&self, password: &str, context: &[&str]) -> Result<(), AccountsError> {
        let chars = password.chars().count();
        if chars < self.min_chars {
            return Err(AccountsError::WeakPassword(format!(
                "use at least {} characters.",
                self.min_chars
            )));
        }
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(AccountsError::WeakPassword(format!(
                "use at most {MAX_PASSWORD_BYTES} bytes."
            )));
        }
        if password.chars().any(char::is_control) {
            return Err(AccountsError::WeakPassword(
                "control characters are not allowed.".into(),
            ));
        }
        let lower = password.to_lowercase();
        let trimmed = lower.trim_end_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation());
        if self.refused.contains(&lower) || (!trimmed.is_empty() && self.refused.contains(trimmed)) {
            return Err(AccountsError::WeakPassword(
                "it is on this server's list of refused passwords.".into(),
            ));
        }
        let mut inputs: Vec<&str> = SERVICE_WORDS.to_vec();
        let mut parts = Vec::new();
        for c in context {
            parts.extend(
                c.split(|ch: char| !ch.is_alphanumeric())
                    .filter(|p| p.chars().count() >= 3)
                    .map(str::to_lowercase),
            );
            inputs.push(c);
        }
        inputs.extend(parts.iter().map(String::as_str));
        // What is left of the password once the user's own words are taken out.
        let mut rest: String = lower.chars().filter(|c| c.is_alphanumeric()).collect();
        let mut longest_first = parts.clone();
        longest_first.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in &longest_first {
            rest = rest.replace(p.as_str(), "");
        }
        if rest.chars().count() * 2 < self.min_chars {
            return Err(AccountsError::WeakPassword(
                "it is made of your name or e-mail address.".into(),
            ));
        }
        let entropy = zxcvbn(password, &inputs);
        // zxcvbn ships a ranked list of the 30,000 most common passwords;
        // its dictionary type is not exported, only printable.
        let common = entropy.sequence().iter().any(|m| {
            matches!(&m.pattern, MatchPattern::Dictionary(d)
                if format!("{:?}", d.dictionary_name) == "Passwords" && m.token.chars().count() + 2 >= chars)
        });
        if common {
            return Err(AccountsError::WeakPassword(
                "it is on a list of commonly used passwords.".into(),
            ));
        }
        if entropy.score() < Score::Three {
            let mut reason = String::new();
            if let Some(feedback) = entropy.feedback() {
                if let Some(w) = feedback.warning() {
                    reason.push_str(&w.to_string());
                }
                for s in feedback.suggestions() {
                    if !reason.is_empty() {
                        reason.push(' ');
                    }
                    reason.push_str(&s.to_string());
                }
            }
            if reason.is_empty() {
                reason = "it would be guessed too easily. Add more words or characters.".into();
            }
            return Err(AccountsError::WeakPassword(reason));
        }
        Ok(())
    }
}

/// Argon2id parameters. The floor is OWASP's minimum: 19 MiB, 2 passes, 1 lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl HashParams {
    pub const MIN_MEMORY_KIB: u32 = 19 * 1024;
    pub const MIN_ITERATIONS: u32 = 2;

    pub fn validate(&self) -> Result<(), String> {
        if self.memory_kib < Self::MIN_MEMORY_KIB {
            return Err(format!(
                "argon2 memory must be at least {} KiB",
                Self::MIN_MEMORY_KIB
            ));
        }
        if self.iterations < Self::MIN_ITERATIONS {
            return Err(format!(
                "argon2 iterations must be at least {}",
                Self::MIN_ITERATIONS
            ));
        }
        if !(1..=16).contains(&self.parallelism) {
            return Err("argon2 parallelism must be 1 to 16".into());
        }
        Ok(())
    }
}

impl Default for HashParams {
    fn default() -> Self {
        Self {
            memory_kib: Self::MIN_MEMORY_KIB,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Hashes and verifies passwords with one set of parameters.
#[derive(Debug, Clone)]
pub struct Hasher {
    params: HashParams,
    /// A hash of a random password, verified for unknown accounts so that
    /// they take as long as known ones.
    dummy: String,
    /// How many hashes `verify` computed, shared by the clones.
    #[cfg(test)]
    pub(crate) verified: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Hasher {
    pub fn new(params: HashParams) -> Result<Self, AccountsError> {
        params.validate().map_err(AccountsError::Internal)?;
        let mut h = Hasher {
            params,
            dummy: String::new(),
            #[cfg(test)]
            verified: Default::default(),
        };
        h.dummy = h.hash(&crate::secrets::random_token())?;
        Ok(h)
    }

    fn argon2(&self) -> Result<Argon2<'static>, AccountsError> {
        let p = Params::new(
            self.params.memory_kib,
            self.params.iterations,
            self.params.parallelism,
            None,
        )
        .map_err(|e| AccountsError::Internal(format!("argon2 parameters: {e}")))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, p))
    }

    /// A PHC string of the password with a fresh salt.
    pub fn hash(&self, password: &str) -> Result<String, AccountsError> {
        let hash = self
            .argon2()?
            .hash_password(password.as_bytes())
            .map_err(|e| AccountsError::Internal(format!("argon2: {e}")))?;
        Ok(hash.to_string())
    }

    /// Whether the password matches the stored hash. `None` (no account)
    /// verifies against a dummy hash and fails, taking the same time.
    pub fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        let (hash, real) = match stored {
            Some(h) => (h, true),
            None => (self.dummy.as_str(), false),
        };
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        let Ok(argon2) = self.argon2() else { return false };
        #[cfg(test)]
        self.verified.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ok = password.len() <= MAX_PASSWORD_BYTES
            && argon2.verify_password(password.as_bytes(), &parsed).is_ok();
        ok && real
    }

    /// Whether a stored hash was made with other parameters (or another
    /// algorithm) and should be replaced at the next successful sign-in.
    pub fn needs_rehash(&self, stored: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(stored) else {
            return true;
        };
        if parsed.algorithm.as_str() != "argon2id" {
            return true;
        }
        match Params::try_from(&parsed) {
            Ok(p) => {
                p.m_cost() != self.params.memory_kib
                    || p.t_cost() != self.params.iterations
                    || p.p_cost() != self.params.parallelism
            }
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(p: &PasswordPolicy, pw: &str) -> String {
        match p.check(pw, &["ada.lovelace@example.org", "Ada Lovelace"]) {
            Err(AccountsError::WeakPassword(r)) => r,
            other => panic!("{pw:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn weak_passwords_are_refused_with_a_reason() {
        let p = PasswordPolicy::default();
        assert!(refused(&p, "short").contains("at least 12"));
        assert!(refused(&p, "password1234").contains("common"));
        assert!(!refused(&p, "aaaaaaaaaaaaaaaa").is_empty());
        assert!(!refused(&p, "qwertyuiop123").is_empty());
        // Built from the user's own name and address.
        assert!(!refused(&p, "adalovelace2024").is_empty());
        assert!(!refused(&p, "conclave12345").is_empty());
        assert!(refused(&p, &"x".repeat(2000)).contains("at most"));
    }

    #[test]
    fn strong_passwords_pass() {
        let p = PasswordPolicy::default();
        for pw in [
            "correct horse battery staple",
            "T7#vq9!Lm2$wZp4",
            "Brücke-Nebel-Kompass-81",
        ] {
            assert!(p.check(pw, &["ada@example.org"]).is_ok(), "{pw}");
        }
    }

    #[test]
    fn operator_list_is_applied() {
        let mut p = PasswordPolicy::default();
        p.add_list("# refused here\nKestrel-Orbit-Meadow\n");
        assert!(refused(&p, "kestrel-orbit-meadow").contains("list"));
        assert!(refused(&p, "Kestrel-Orbit-Meadow!!1").contains("list"));
    }

    #[test]
    fn hashing_verifies_and_notices_old_parameters() {
        let h = Hasher::new(HashParams::default()).expect("hasher");
        let stored = h.hash("correct horse battery staple").expect("hash");
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify("correct horse battery staple", Some(&stored)));
        assert!(!h.verify("correct horse battery stapler", Some(&stored)));
        assert!(!h.verify("correct horse battery staple", None));
        assert!(!h.verify("x", Some("not a hash")));
        assert!(!h.needs_rehash(&stored));
        let stronger = Hasher::new(HashParams {
            memory_kib: 20 * 1024,
            iterations: 3,
            parallelism: 1,
        })
        .expect("hasher");
        assert!(stronger.needs_rehash(&stored));
        // Old hashes still verify with new parameters; the hash carries its own.
        assert!(stronger.verify("correct horse battery staple", Some(&stored)));
        assert!(h.needs_rehash("$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"));
    }

    #[test]
    fn parameters_below_the_floor_are_refused() {
        for p in [
            HashParams {
                memory_kib: 4096,
                ..HashParams::default()
            },
            HashParams {
                iterations: 1,
                ..HashParams::default()
            },
            HashParams {
                parallelism: 0,
                ..HashParams::default()
            },
        ] {
            assert!(Hasher::new(p).is_err());
        }
    }
}
