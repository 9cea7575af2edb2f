//! Typed identifiers and small value types shared by every Conclave crate.
//!
//! Nothing here performs I/O. Identifiers that cross the wire are validated
//! newtypes, so a room name or an identity that reached the core is known to
//! be well formed.

use std::fmt;

/// Error for a value that does not satisfy its type's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue {
    /// Which kind of value was refused, e.g. "room name".
    pub what: &'static str,
    /// A short, client-safe reason.
    pub reason: &'static str,
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.what, self.reason)
    }
}

impl std::error::Error for InvalidValue {}

macro_rules! validated_name {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Longest accepted value, in bytes.
            pub const MAX_LEN: usize = $max;

            /// Validates and wraps `value`.
            pub fn new(value: impl Into<String>) -> Result<Self, InvalidValue> {
                let value = value.into();
                if value.is_empty() {
                    return Err(InvalidValue { what: $what, reason: "must not be empty" });
                }
                if value.len() > Self::MAX_LEN {
                    return Err(InvalidValue { what: $what, reason: "too long" });
                }
                if value.chars().any(|c| c.is_control()) {
                    return Err(InvalidValue { what: $what, reason: "contains control characters" });
                }
                Ok(Self(value))
            }

            /// The value as a string slice.
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

validated_name!(
    /// The name of a room, chosen by whoever creates it (from a token or the API).
    RoomName,
    "room name",
    128
);
validated_name!(
    /// The stable identity of a participant within a room (the token's `sub`).
    ParticipantIdentity,
    "participant identity",
    256
);

macro_rules! sid {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The prefix every value of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A new random identifier: the prefix and 16 base62 characters
            /// (about 95 random bits).
            pub fn random() -> Self {
                Self(format!("{}{}", $prefix, random_base62(16)))
            }

            /// Parses an identifier received from a peer.
            pub fn parse(value: &str) -> Result<Self, InvalidValue> {
                let rest = value
                    .strip_prefix($prefix)
                    .ok_or(InvalidValue { what: stringify!($name), reason: "wrong prefix" })?;
                if rest.is_empty() || rest.len() > 64 || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(InvalidValue { what: stringify!($name), reason: "malformed" });
                }
                Ok(Self(value.to_owned()))
            }

            /// The identifier as a string slice.
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

sid!(
    /// Server-assigned identifier of a room instance.
    RoomSid,
    "RM_"
);
sid!(
    /// Server-assigned identifier of one participant session.
    ParticipantSid,
    "PA_"
);
sid!(
    /// Server-assigned identifier of a published track.
    TrackSid,
    "TR_"
);

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `len` random characters from the base62 alphabet, from the operating
/// system's cryptographic random source.
pub fn random_base62(len: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(BASE62[rng.random_range(0..BASE62.len())]))
        .collect()
}

/// Where a published track comes from. Permissions are granted per source.
///
/// Tokens name sources `"camera"`, `"microphone"`, `"screen_share"` and
/// `"screen_share_audio"`; anything else is [`TrackSource::Unknown`], which
/// grants nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrackSource {
    Camera,
    Microphone,
    ScreenShare,
    ScreenShareAudio,
    Unknown,
}

impl TrackSource {
    /// Every source a participant can be allowed to publish.
    pub const ALL: [TrackSource; 4] = [
        TrackSource::Camera,
        TrackSource::Microphone,
        TrackSource::ScreenShare,
        TrackSource::ScreenShareAudio,
    ];

    /// The name used in access tokens (`canPublishSources`).
    pub fn as_str(self) -> &'static str {
        match self {
            TrackSource::Camera => "camera",
            TrackSource::Microphone => "microphone",
            TrackSource::ScreenShare => "screen_share",
            TrackSource::ScreenShareAudio => "screen_share_audio",
            TrackSource::Unknown => "unknown",
        }
    }

    /// Parses a token name; anything unrecognised is [`TrackSource::Unknown`].
    pub fn parse(name: &str) -> Self {
        match name {
            "camera" => TrackSource::Camera,
            "microphone" => TrackSource::Microphone,
            "screen_share" => TrackSource::ScreenShare,
            "screen_share_audio" => TrackSource::ScreenShareAudio,
            _ => TrackSource::Unknown,
        }
    }

    /// From the LiveKit protocol's `TrackSource` number
    /// (0 unknown, 1 camera, 2 microphone, 3 screen share, 4 screen share audio).
    pub fn from_proto(value: i32) -> Self {
        match value {
            1 => TrackSource::Camera,
            2 => TrackSource::Microphone,
            3 => TrackSource::ScreenShare,
            4 => TrackSource::ScreenShareAudio,
            _ => TrackSource::Unknown,
        }
    }

    /// The LiveKit protocol's `TrackSource` number.
    pub fn to_proto(self) -> i32 {
        match self {
            TrackSource::Unknown => 0,
            TrackSource::Camera => 1,
            TrackSource::Microphone => 2,
            TrackSource::ScreenShare => 3,
            TrackSource::ScreenShareAudio => 4,
        }
    }
}

impl fmt::Display for TrackSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a participant may do in a room. Every check on the server reads this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// May receive others' tracks.
    pub can_subscribe: bool,
    /// May publish tracks at all; `sources` narrows which.
    pub can_publish: bool,
    /// Sources allowed when `can_publish` is set. Empty means all.
    pub sources: Vec<TrackSource>,
    /// May send data packets.
    pub can_publish_data: bool,
    /// May change its own name, metadata and attributes.
    pub can_update_metadata: bool,
    /// Hidden participants are not announced to others. Refused unless the
    /// room allows it (see the signal crate).
    pub hidden: bool,
    /// Moderates the room (mute others, remove participants).
    pub admin: bool,
}

impl Permissions {
    /// Whether a track from `source` may be published.
    pub fn may_publish(&self, source: TrackSource) -> bool {
        self.can_publish && (self.sources.is_empty() || self.sources.contains(&source))
    }
}

impl Default for Permissions {
    /// A regular participant: publish everything, subscribe, send data.
    fn default() -> Self {
        Self {
            can_subscribe: true,
            can_publish: true,
            sources: Vec::new(),
            can_publish_data: true,
            can_update_metadata: false,
            hidden: false,
            admin: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(RoomName::new("team-weekly").is_ok());
        assert!(RoomName::new("").is_err());
        assert!(RoomName::new("a\u{0}b").is_err());
        assert!(RoomName::new("x".repeat(129)).is_err());
        assert!(ParticipantIdentity::new("alice@example.org").is_ok());
    }

    #[test]
    fn sids_round_trip_and_reject_garbage() {
        let sid = ParticipantSid::random();
        assert!(sid.as_str().starts_with("PA_"));
        assert_eq!(ParticipantSid::parse(sid.as_str()), Ok(sid.clone()));
        assert!(ParticipantSid::parse("TR_abc").is_err());
        assert!(ParticipantSid::parse("PA_").is_err());
        assert!(ParticipantSid::parse("PA_a-b").is_err());
        assert_ne!(TrackSid::random(), TrackSid::random());
    }

    #[test]
    fn source_permissions() {
        let mut p = Permissions::default();
        assert!(p.may_publish(TrackSource::ScreenShare));
        p.sources = vec![TrackSource::Microphone];
        assert!(p.may_publish(TrackSource::Microphone));
        assert!(!p.may_publish(TrackSource::Camera));
        p.can_publish = false;
        assert!(!p.may_publish(TrackSource::Microphone));
        for s in TrackSource::ALL {
            assert_eq!(TrackSource::parse(s.as_str()), s);
            assert_eq!(TrackSource::from_proto(s.to_proto()), s);
        }
        assert_eq!(TrackSource::parse("Camera"), TrackSource::Unknown);
        assert_eq!(TrackSource::from_proto(99), TrackSource::Unknown);
    }
}
