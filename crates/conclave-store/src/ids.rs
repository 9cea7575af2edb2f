//! Typed identifiers and the small enumerations stored as text.

use std::fmt;

/// A stored value that is not a valid identifier or enumeration value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}")]
pub struct IdError {
    what: &'static str,
}

fn valid_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|rest| (8..=64).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

macro_rules! random_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// A new random identifier.
            pub fn random() -> Self {
                Self(format!("{}{}", $prefix, conclave_types::random_base62(22)))
            }

            /// Parses an identifier from untrusted text.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                if valid_id(s, $prefix) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(IdError { what: $what })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

random_id!(
    /// A user account (`usr_` and 22 base62 characters).
    UserId,
    "usr_",
    "user id"
);
random_id!(
    /// A registered passkey (`pk_` and 22 base62 characters).
    PasskeyId,
    "pk_",
    "passkey id"
);

random_id!(
    /// A meeting (`mtg_` and 22 base62 characters: 131 random bits). It is
    /// also the name of the meeting's room in the SFU.
    MeetingId,
    "mtg_",
    "meeting id"
);
random_id!(
    /// A file shared in a meeting (`fil_` and 22 base62 characters).
    FileId,
    "fil_",
    "file id"
);

/// What a user may do beyond their own account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        match s {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            _ => Err(IdError { what: "role" }),
        }
    }
}

/// Where an account stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserStatus {
    /// Registered or invited; the e-mail address is not confirmed yet.
    Pending,
    Active,
    /// Switched off by an administrator.
    Disabled,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Pending => "pending",
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        match s {
            "pending" => Ok(UserStatus::Pending),
            "active" => Ok(UserStatus::Active),
            "disabled" => Ok(UserStatus::Disabled),
            _ => Err(IdError {
                what: "account status",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_refuse_junk() {
        let u = UserId::random();
        assert_eq!(UserId::parse(u.as_str()), Ok(u.clone()));
        assert!(u.as_str().starts_with("usr_"));
        for bad in [
            "",
            "usr_",
            "usr_short",
            "pk_aaaaaaaaaaaa",
            "usr_aaaa'aaaaaaa",
            "usr_ääääääääääää",
        ] {
            assert!(UserId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(PasskeyId::parse(PasskeyId::random().as_str()).is_ok());
        assert!(PasskeyId::parse(u.as_str()).is_err());
    }

    #[test]
    fn enumerations_round_trip() {
        for r in [Role::User, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Ok(r));
        }
        for s in [UserStatus::Pending, UserStatus::Active, UserStatus::Disabled] {
            assert_eq!(UserStatus::parse(s.as_str()), Ok(s));
        }
        assert!(Role::parse("root").is_err());
        assert!(UserStatus::parse("").is_err());
    }
}
