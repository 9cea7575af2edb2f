//! Token claims, the video grant and the effective join permissions.
//!
//! The JSON shape is the one LiveKit SDKs mint: registered claims `iss`,
//! `sub`, `nbf`, `exp` (optionally `iat`, `jti`) plus `name`, `metadata`,
//! `attributes`, `kind`, `sha256` and a `video` object with camelCase fields.
//! Every field may be absent or `null`; unknown fields (for instance `sip`,
//! `agent`, `roomConfig`, `roomPreset` or grants added by newer SDKs) are
//! ignored. A field present twice, or of the wrong JSON type, makes the token
//! malformed.

use std::collections::BTreeMap;
use std::fmt;

use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::TokenError;

pub use conclave_types::TrackSource;

/// (De)serializes `canPublishSources` as a list of token names. An unknown
/// name reads as [`TrackSource::Unknown`], which grants nothing (and writes
/// back as `"unknown"`).
mod source_list {
    use super::TrackSource;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[TrackSource], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| x.as_str()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<TrackSource>, D::Error> {
        let names: Option<Vec<String>> = Option::deserialize(d)?;
        Ok(names
            .unwrap_or_default()
            .iter()
            .map(|n| TrackSource::parse(n))
            .collect())
    }
}

/// The `video` grant of a token, with LiveKit's camelCase JSON names.
///
/// `can_publish`, `can_subscribe` and `can_publish_data` keep the
/// difference between "absent" (`None`) and an explicit value, because
/// absent means *allowed* for `canPublish`/`canSubscribe`, and "same as
/// `canPublish`" for `canPublishData`. Use [`VideoGrant::publish_allowed`] and
/// friends, or [`Claims::join_grant`], rather than reading them directly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoGrant {
    /// May create and delete rooms (RoomService).
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_false")]
    pub room_create: bool,
    /// May list rooms (RoomService).
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_false")]
    pub room_list: bool,
    /// May record rooms.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_false")]
    pub room_record: bool,
    /// May administer [`VideoGrant::room`] (RoomService participant calls).
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_false")]
    pub room_admin: bool,
    /// May join [`VideoGrant::room`].
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_false")]
    pub room_join: bool,
    /// The room this grant is for (empty when none).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub room: String,
    /// May publish media; absent means yes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_publish: Option<bool>,
    /// May subscribe to others' media; absent means yes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_subscribe: Option<bool>,
    /// May publish data packets; absent means the same as `can_publish`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_publish_data: Option<bool>,
    /// When non-empty, only these sources may be published.
    #[serde(default, with = "source_list", skip_serializing_if = "Vec::is_empty")]
    pub can_publish_sources: Vec<TrackSource>,
    /// May change its own name, metadata and attributes.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_false")]
    pub can_update_own_metadata: bool,
    /// May administer ingresses.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_false")]
    pub ingress_admin: bool,
    /// Invisible to the other participants.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_false")]
    pub hidden: bool,
    /// Joins as a recorder.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_false")]
    pub recorder: bool,
    /// Joins as an agent.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "is_false")]
    pub agent: bool,
    /// Room a participant may be forwarded or moved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_room: Option<String>,
}

impl VideoGrant {
    /// `canPublish`, absent meaning yes.
    #[must_use]
    pub fn publish_allowed(&self) -> bool {
        self.can_publish.unwrap_or(true)
    }

    /// `canSubscribe`, absent meaning yes.
    #[must_use]
    pub fn subscribe_allowed(&self) -> bool {
        self.can_subscribe.unwrap_or(true)
    }

    /// `canPublishData`, absent meaning the same as `canPublish`.
    #[must_use]
    pub fn publish_data_allowed(&self) -> bool {
        self.can_publish_data.unwrap_or_else(|| self.publish_allowed())
    }

    /// Whether `source` may be published: `canPublish` must hold, and when
    /// `canPublishSources` is non-empty the source must be listed in it.
    /// [`TrackSource::Unknown`] is never allowed when a list is given.
    #[must_use]
    pub fn source_allowed(&self, source: TrackSource) -> bool {
        if !self.publish_allowed() {
            return false;
        }
        if self.can_publish_sources.is_empty() {
            return true;
        }
        source != TrackSource::Unknown && self.can_publish_sources.contains(&source)
    }
}

/// The claims of an access token.
///
/// `nbf`, `exp` and `iat` are unix seconds. They are read from integers or
/// from fractional numbers (rounded down); negative values read as 0. An
/// `exp` of 0 means "no expiry" and is refused by the verifier and by
/// [`crate::sign`]; an `nbf` of 0 puts no lower bound.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The API key that signed the token. [`crate::sign`] overwrites it.
    #[serde(default, deserialize_with = "null_default")]
    pub iss: String,
    /// The participant identity (empty for server-API tokens).
    #[serde(default, deserialize_with = "null_default")]
    pub sub: String,
    /// Display name.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    /// Participant metadata (opaque text).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub metadata: String,
    /// Participant attributes.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub attributes: BTreeMap<String, String>,
    /// Not before (unix seconds); 0 means no bound.
    #[serde(default, deserialize_with = "numeric_date")]
    pub nbf: u64,
    /// Expiry (unix seconds); 0 means absent.
    #[serde(default, deserialize_with = "numeric_date")]
    pub exp: u64,
    /// Issued at (unix seconds), informational.
    #[serde(
        default,
        deserialize_with = "opt_numeric_date",
        skip_serializing_if = "Option::is_none"
    )]
    pub iat: Option<u64>,
    /// Token id, informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The video grant.
    #[serde(default, deserialize_with = "object_or_null")]
    pub video: VideoGrant,
    /// Hex SHA-256 of a request body this token vouches for (webhooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Participant kind: `standard`, `ingress`, `egress`, `sip` or `agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// What a verified token lets its holder do in the room it joins, resolved
/// from the grant's defaults. Built by [`Claims::join_grant`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGrant {
    /// The room to join.
    pub room: String,
    /// The participant identity (never empty).
    pub identity: String,
    /// Display name (may be empty).
    pub name: String,
    /// Initial metadata.
    pub metadata: String,
    /// Initial attributes.
    pub attributes: BTreeMap<String, String>,
    /// Participant kind claim, if any.
    pub kind: Option<String>,
    /// May publish at least one media source: `publish_sources` is non-empty.
    pub can_publish: bool,
    /// May subscribe to others' tracks.
    pub can_subscribe: bool,
    /// May send data packets.
    pub can_publish_data: bool,
    /// The sources that may be published, without duplicates, in
    /// [`TrackSource::ALL`] order. Empty when publishing is not allowed.
    pub publish_sources: Vec<TrackSource>,
    /// May change its own name, metadata and attributes.
    pub can_update_own_metadata: bool,
    /// Invisible to the other participants.
    pub hidden: bool,
    /// Joins as a recorder.
    pub recorder: bool,
    /// Joins as an agent.
    pub agent: bool,
    /// Also administers this room.
    pub room_admin: bool,
}

impl JoinGrant {
    /// Whether `source` may be published.
    #[must_use]
    pub fn can_publish_source(&self, source: TrackSource) -> bool {
        self.publish_sources.contains(&source)
    }
}

impl Claims {
    /// Claims for a participant token: `identity` may join `room` with the
    /// default permissions, valid from `now_unix` for `ttl_secs` seconds.
    #[must_use]
    pub fn for_join(identity: &str, room: &str, now_unix: u64, ttl_secs: u64) -> Self {
        Self {
            sub: identity.to_owned(),
            nbf: now_unix,
            exp: now_unix.saturating_add(ttl_secs),
            video: VideoGrant {
                room_join: true,
                room: room.to_owned(),
                ..VideoGrant::default()
            },
            ..Self::default()
        }
    }

    /// The effective permissions for joining a room.
    ///
    /// `room` is the room the client asked for, when it asked for one; the
    /// LiveKit client protocol takes the room from the token, so pass `None`
    /// then. Refuses when `roomJoin` is not granted, when the token names no
    /// room, when `room` is given and differs from the token's, or when the
    /// identity is empty.
    pub fn join_grant(&self, room: Option<&str>) -> Result<JoinGrant, TokenError> {
        let v = &self.video;
        if !v.room_join {
            return Err(TokenError::JoinNotAllowed);
        }
        if v.room.is_empty() {
            return Err(TokenError::MissingRoom);
        }
        if room.is_some_and(|asked| asked != v.room) {
            return Err(TokenError::RoomMismatch);
        }
        if self.sub.is_empty() {
            return Err(TokenError::MissingIdentity);
        }
        let publish_sources: Vec<TrackSource> = TrackSource::ALL
            .into_iter()
            .filter(|s| v.source_allowed(*s))
            .collect();
        Ok(JoinGrant {
            room: v.room.clone(),
            identity: self.sub.clone(),
            name: self.name.clone(),
            metadata: self.metadata.clone(),
            attributes: self.attributes.clone(),
            kind: self.kind.clone(),
            can_publish: !publish_sources.is_empty(),
            can_subscribe: v.subscribe_allowed(),
            can_publish_data: v.publish_data_allowed(),
            publish_sources,
            can_update_own_metadata: v.can_update_own_metadata,
            hidden: v.hidden,
            recorder: v.recorder,
            agent: v.agent,
            room_admin: v.room_admin,
        })
    }

    /// Allows RoomService `CreateRoom` and `DeleteRoom` (`roomCreate`).
    pub fn require_room_create(&self) -> Result<(), TokenError> {
        allow(self.video.room_create)
    }

    /// Allows RoomService `ListRooms` (`roomList`).
    pub fn require_room_list(&self) -> Result<(), TokenError> {
        allow(self.video.room_list)
    }

    /// Allows recording (`roomRecord`).
    pub fn require_room_record(&self) -> Result<(), TokenError> {
        allow(self.video.room_record)
    }

    /// Allows RoomService calls on the participants and metadata of `room`
    /// (`roomAdmin` together with `room` equal to it).
    pub fn require_room_admin(&self, room: &str) -> Result<(), TokenError> {
        allow(self.video.room_admin && !self.video.room.is_empty() && self.video.room == room)
    }
}

fn allow(granted: bool) -> Result<(), TokenError> {
    if granted {
        Ok(())
    } else {
        Err(TokenError::PermissionDenied)
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Reads `null` as the type's default.
fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Deserializes `T` only from a JSON object. Derived struct deserializers
/// also accept arrays (fields by position), which no other JWT library reads;
/// refusing them keeps every verifier seeing the same claims.
pub(crate) struct ObjectOnly<T>(pub(crate) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(ObjectOnly)
    }
}

/// Reads an object, or `null` as the default.
fn object_or_null<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<ObjectOnly<T>>::deserialize(deserializer)?.map_or_else(T::default, |o| o.0))
}

struct NumericDate;

impl Visitor<'_> for NumericDate {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a numeric date")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        Ok(u64::try_from(v).unwrap_or(0))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        if !v.is_finite() {
            return Err(E::custom("non-finite date"));
        }
        if v <= 0.0 {
            return Ok(0);
        }
        // Saturating float-to-int conversion, rounding down.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(v.floor() as u64)
    }
}

fn numeric_date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    Ok(opt_numeric_date(deserializer)?.unwrap_or(0))
}

fn opt_numeric_date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    struct Opt;
    impl<'de> Visitor<'de> for Opt {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a numeric date or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(NumericDate).map(Some)
        }
    }
    deserializer.deserialize_option(Opt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Claims {
        try_parse(json).expect("claims parse")
    }

    fn try_parse(json: &str) -> Result<Claims, serde_json::Error> {
        serde_json::from_str::<ObjectOnly<Claims>>(json).map(|c| c.0)
    }

    #[test]
    fn absent_and_null_fields_default() {
        let c = parse(r#"{"iss":"k","exp":5,"video":null,"name":null,"attributes":null}"#);
        assert_eq!(c.video, VideoGrant::default());
        assert!(c.name.is_empty() && c.attributes.is_empty());
        let c = parse(
            r#"{"exp":5,"video":{"roomJoin":null,"room":null,"canPublish":null,"canPublishSources":null}}"#,
        );
        assert!(!c.video.room_join);
        assert!(c.video.publish_allowed());
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let c = parse(
            r#"{"exp":5,"sip":{"admin":true},"agent":{"admin":true},"roomConfig":{"name":"x"},
               "video":{"roomJoin":true,"room":"r","canSubscribeMetrics":true,"newThing":[1,2]}}"#,
        );
        assert!(c.video.room_join);
        assert_eq!(c.video.room, "r");
    }

    #[test]
    fn wrong_types_and_duplicates_are_errors() {
        for bad in [
            r#"{"exp":"5"}"#,
            r#"{"sub":5}"#,
            r#"{"video":{"roomJoin":"true"}}"#,
            r#"{"video":{"canPublishSources":[1]}}"#,
            r#"{"attributes":{"a":1}}"#,
            r#"{"sub":"a","sub":"b"}"#,
            r#"{"video":{"room":"a","room":"b"}}"#,
            r#"{"exp":1e400}"#,
            r#"[]"#,
            r#"["k","alice"]"#,
            r#"{"video":[]}"#,
            r#"{"video":[true,true,true,true,true,"r"]}"#,
            r#"{"video":true}"#,
            r#"null"#,
        ] {
            assert!(try_parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numeric_dates() {
        assert_eq!(parse(r#"{"exp":12.9}"#).exp, 12);
        assert_eq!(parse(r#"{"exp":-4}"#).exp, 0);
        assert_eq!(parse(r#"{"exp":-4.5}"#).exp, 0);
        assert_eq!(parse(r#"{"exp":1e30}"#).exp, u64::MAX);
        assert_eq!(parse(r#"{"exp":null,"iat":null}"#).iat, None);
        assert_eq!(parse(r#"{"iat":7}"#).iat, Some(7));
    }

    #[test]
    fn sources_parse_exactly() {
        let c = parse(
            r#"{"video":{"canPublishSources":["camera","microphone","screen_share","screen_share_audio","Camera","x"]}}"#,
        );
        assert_eq!(
            c.video.can_publish_sources,
            vec![
                TrackSource::Camera,
                TrackSource::Microphone,
                TrackSource::ScreenShare,
                TrackSource::ScreenShareAudio,
                TrackSource::Unknown,
                TrackSource::Unknown
            ]
        );
        for s in TrackSource::ALL {
            assert_eq!(TrackSource::parse(s.as_str()), s);
            assert_eq!(TrackSource::from_proto(s.to_proto()), s);
        }
        assert_eq!(TrackSource::from_proto(99), TrackSource::Unknown);
    }

    #[test]
    fn publish_defaults_follow_the_reference() {
        let g = VideoGrant::default();
        assert!(g.publish_allowed() && g.subscribe_allowed() && g.publish_data_allowed());
        let g = VideoGrant {
            can_publish: Some(false),
            ..VideoGrant::default()
        };
        assert!(!g.publish_data_allowed(), "data follows canPublish when absent");
        assert!(!g.source_allowed(TrackSource::Camera));
        let g = VideoGrant {
            can_publish: Some(false),
            can_publish_data: Some(true),
            can_publish_sources: vec![TrackSource::Camera],
            ..VideoGrant::default()
        };
        assert!(g.publish_data_allowed());
        assert!(!g.source_allowed(TrackSource::Camera), "canPublish=false wins");
        let g = VideoGrant {
            can_publish_sources: vec![TrackSource::Microphone, TrackSource::Unknown],
            ..VideoGrant::default()
        };
        assert!(g.source_allowed(TrackSource::Microphone));
        assert!(!g.source_allowed(TrackSource::Camera));
        assert!(!g.source_allowed(TrackSource::Unknown));
    }

    #[test]
    fn join_grant_resolves_and_refuses() {
        let mut c = Claims::for_join("alice", "r1", 100, 60);
        assert_eq!(c.exp, 160);
        let g = c.join_grant(Some("r1")).expect("join r1");
        assert_eq!(g.room, "r1");
        assert_eq!(g.identity, "alice");
        assert!(g.can_publish && g.can_subscribe && g.can_publish_data);
        assert_eq!(g.publish_sources, TrackSource::ALL.to_vec());
        assert!(!g.hidden && !g.room_admin && !g.can_update_own_metadata);
        assert_eq!(c.join_grant(None).expect("join").room, "r1");

        assert_eq!(c.join_grant(Some("r2")), Err(TokenError::RoomMismatch));

        c.video.can_publish_sources = vec![TrackSource::Microphone, TrackSource::Unknown];
        let g = c.join_grant(None).expect("join");
        assert_eq!(g.publish_sources, vec![TrackSource::Microphone]);
        assert!(g.can_publish_source(TrackSource::Microphone));
        assert!(!g.can_publish_source(TrackSource::Camera));

        c.video.can_publish_sources = vec![TrackSource::Unknown];
        let g = c.join_grant(None).expect("join");
        assert!(!g.can_publish && g.publish_sources.is_empty());

        c.video.can_publish = Some(false);
        c.video.can_publish_sources.clear();
        let g = c.join_grant(None).expect("join");
        assert!(!g.can_publish && !g.can_publish_data && g.can_subscribe);

        let mut no_room = Claims::for_join("alice", "", 0, 60);
        assert_eq!(no_room.join_grant(None), Err(TokenError::MissingRoom));
        no_room.video.room_join = false;
        assert_eq!(no_room.join_grant(None), Err(TokenError::JoinNotAllowed));
        let anon = Claims::for_join("", "r1", 0, 60);
        assert_eq!(anon.join_grant(None), Err(TokenError::MissingIdentity));
    }

    #[test]
    fn service_permissions() {
        let mut c = Claims::default();
        assert_eq!(c.require_room_create(), Err(TokenError::PermissionDenied));
        assert_eq!(c.require_room_list(), Err(TokenError::PermissionDenied));
        assert_eq!(c.require_room_record(), Err(TokenError::PermissionDenied));
        assert_eq!(c.require_room_admin(""), Err(TokenError::PermissionDenied));
        c.video.room_create = true;
        c.video.room_list = true;
        c.video.room_record = true;
        c.video.room_admin = true;
        assert!(c.require_room_create().is_ok());
        assert!(c.require_room_list().is_ok());
        assert!(c.require_room_record().is_ok());
        assert_eq!(c.require_room_admin(""), Err(TokenError::PermissionDenied));
        c.video.room = "a".into();
        assert!(c.require_room_admin("a").is_ok());
        assert_eq!(c.require_room_admin("b"), Err(TokenError::PermissionDenied));
    }

    #[test]
    fn serialization_is_minimal_and_round_trips() {
        let mut c = Claims::for_join("alice", "r1", 100, 60);
        c.iss = "k".into();
        let json = serde_json::to_string(&c).expect("serialize");
        assert_eq!(
            json,
            r#"{"iss":"k","sub":"alice","nbf":100,"exp":160,"video":{"roomJoin":true,"room":"r1"}}"#
        );
        c.video.can_publish_sources = vec![TrackSource::ScreenShareAudio];
        c.video.can_publish = Some(false);
        c.attributes.insert("a".into(), "b".into());
        c.kind = Some("agent".into());
        let back = parse(&serde_json::to_string(&c).expect("serialize"));
        assert_eq!(back, c);
    }
}
