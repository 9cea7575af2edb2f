//! The room model: rooms, participants and their tracks, and how they are
//! described on the wire.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use conclave_media::{Kind, MediaId, PeerId, Quality};
use conclave_types::{
    ParticipantIdentity, ParticipantSid, Permissions, RoomName, RoomSid, TrackSid, TrackSource,
};
use livekit_protocol as lk;

/// Identifies one signalling connection (one WebSocket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Settings of a room, from the API or defaults.
#[derive(Debug, Clone)]
pub struct RoomSettings {
    /// Seconds an empty room that never had anyone lives.
    pub empty_timeout: u32,
    /// Seconds a room lives after the last participant left.
    pub departure_timeout: u32,
    /// 0 = no limit.
    pub max_participants: u32,
    pub metadata: String,
}

impl Default for RoomSettings {
    fn default() -> Self {
        Self {
            empty_timeout: 300,
            departure_timeout: 20,
            max_participants: 0,
            metadata: String::new(),
        }
    }
}

pub(crate) struct Room {
    pub sid: RoomSid,
    pub name: RoomName,
    pub settings: RoomSettings,
    pub created_unix_ms: i64,
    /// Participants in join order.
    pub participants: Vec<ParticipantSid>,
    /// Participants announced as speaking, loudest first.
    pub speakers: Vec<ParticipantSid>,
    pub had_participants: bool,
    pub empty_since: Instant,
    /// News of participants who publish nothing, newest per participant
    /// in the order they first changed, sent to the others at the next tick.
    pub pending_updates: Vec<PendingUpdate>,
    /// Numbers the news put in `pending_updates`, so that a member is sent
    /// only what is newer than the roster it got.
    pub news_seq: u64,
}

/// News of a participant waiting for the next tick.
#[derive(Debug)]
pub(crate) struct PendingUpdate {
    pub subject: ParticipantSid,
    /// The room's `news_seq` when it last changed.
    pub seq: u64,
    pub info: lk::ParticipantInfo,
}

impl Room {
    pub fn info(&self, publishers: u32) -> lk::Room {
        lk::Room {
            sid: self.sid.to_string(),
            name: self.name.to_string(),
            empty_timeout: self.settings.empty_timeout,
            departure_timeout: self.settings.departure_timeout,
            max_participants: self.settings.max_participants,
            creation_time: self.created_unix_ms / 1000,
            creation_time_ms: self.created_unix_ms,
            metadata: self.settings.metadata.clone(),
            num_participants: self.participants.len() as u32,
            num_publishers: publishers,
            ..Default::default()
        }
    }
}

pub(crate) struct Track {
    pub sid: TrackSid,
    pub cid: String,
    pub kind: Kind,
    pub source: TrackSource,
    pub name: String,
    pub muted: bool,
    pub width: u32,
    pub height: u32,
    pub simulcast: bool,
    pub layers: Vec<lk::VideoLayer>,
    pub encryption: i32,
    pub stereo: bool,
    pub disable_dtx: bool,
    /// The client asked for plain Opus rather than RED (RFC 2198).
    pub disable_red: bool,
    /// The publisher connection's media section, once the offer carried it.
    pub mid: Option<MediaId>,
    pub mime_type: String,
    /// The codec the client named when announcing the track (e.g. `vp8`).
    pub codec: String,
    /// The qualities last announced to the publisher (dynacast); `None`
    /// before the first announcement.
    pub announced_quality: Option<Option<Quality>>,
}

/// The source a track counts as for permissions: an unnamed source counts
/// as the camera for video and the microphone for audio.
pub(crate) fn effective_source(source: TrackSource, kind: Kind) -> TrackSource {
    match (source, kind) {
        (TrackSource::Unknown, Kind::Video) => TrackSource::Camera,
        (TrackSource::Unknown, Kind::Audio) => TrackSource::Microphone,
        (s, _) => s,
    }
}

impl Track {
    pub fn effective_source(&self) -> TrackSource {
        effective_source(self.source, self.kind)
    }

    pub fn info(&self) -> lk::TrackInfo {
        lk::TrackInfo {
            sid: self.sid.to_string(),
            r#type: match self.kind {
                Kind::Audio => lk::TrackType::Audio as i32,
                Kind::Video => lk::TrackType::Video as i32,
            },
            name: self.name.clone(),
            muted: self.muted,
            width: self.width,
            height: self.height,
            simulcast: self.simulcast,
            disable_dtx: self.disable_dtx,
            disable_red: self.disable_red,
            source: self.source.to_proto(),
            layers: self.layers.clone(),
            mime_type: self.mime_type.clone(),
            mid: self.mid.as_ref().map(|m| m.to_string()).unwrap_or_default(),
            stereo: self.stereo,
            encryption: self.encryption,
            ..Default::default()
        }
    }
}

/// What a subscriber asked for one track.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wish {
    pub subscribed: bool,
    pub enabled: bool,
    pub quality: Quality,
}

impl Default for Wish {
    fn default() -> Self {
        Self {
            subscribed: true,
            enabled: true,
            quality: Quality::High,
        }
    }
}

pub(crate) struct Participant {
    pub sid: ParticipantSid,
    pub identity: ParticipantIdentity,
    pub room: RoomName,
    pub conn: Option<ConnId>,
    pub name: String,
    pub metadata: String,
    pub attributes: HashMap<String, String>,
    pub permissions: Permissions,
    pub joined_unix_ms: i64,
    pub version: u32,
    pub publisher: PeerId,
    pub subscriber: PeerId,
    pub auto_subscribe: bool,
    /// Published and pending tracks by sid.
    pub tracks: BTreeMap<TrackSid, Track>,
    /// Wishes for others' tracks.
    pub wishes: HashMap<TrackSid, Wish>,
    pub last_ping: Instant,
    pub media_lost_since: Option<Instant>,
    pub client_protocol: i32,
    pub kind: i32,
    /// The connection rating last announced, and its score.
    pub quality: Option<(lk::ConnectionQuality, f32)>,
    /// Whether this signalling connection has had every rating of the room
    /// since it joined or resumed; until then the next round sends it all
    /// of them, not just those that changed.
    pub ratings_sent: bool,
    /// The room's `news_seq` when this participant last got the whole
    /// roster (joining, resuming): older news is in it.
    pub news_seen: u64,
}

impl Participant {
    pub fn info(&self, state: lk::participant_info::State) -> lk::ParticipantInfo {
        lk::ParticipantInfo {
            sid: self.sid.to_string(),
            identity: self.identity.to_string(),
            state: state as i32,
            tracks: self
                .tracks
                .values()
                .filter(|t| t.mid.is_some())
                .map(Track::info)
                .collect(),
            metadata: self.metadata.clone(),
            joined_at: self.joined_unix_ms / 1000,
            joined_at_ms: self.joined_unix_ms,
            name: self.name.clone(),
            version: self.version,
            permission: Some(permission_to_proto(&self.permissions)),
            is_publisher: self.tracks.values().any(|t| t.mid.is_some()),
            kind: self.kind,
            attributes: self.attributes.clone(),
            client_protocol: self.client_protocol,
            ..Default::default()
        }
    }

    pub fn track_by_mid(&self, mid: &MediaId) -> Option<&Track> {
        self.tracks.values().find(|t| t.mid.as_ref() == Some(mid))
    }
}

pub(crate) fn permission_to_proto(p: &Permissions) -> lk::ParticipantPermission {
    lk::ParticipantPermission {
        can_subscribe: p.can_subscribe,
        can_publish: p.can_publish,
        can_publish_data: p.can_publish_data,
        can_publish_sources: p.sources.iter().map(|s| s.to_proto()).collect(),
        hidden: p.hidden,
        can_update_metadata: p.can_update_metadata,
        ..Default::default()
    }
}

pub(crate) fn permission_from_proto(p: &lk::ParticipantPermission) -> Permissions {
    Permissions {
        can_subscribe: p.can_subscribe,
        can_publish: p.can_publish,
        sources: p
            .can_publish_sources
            .iter()
            .map(|s| TrackSource::from_proto(*s))
            .collect(),
        can_publish_data: p.can_publish_data,
        can_update_metadata: p.can_update_metadata,
        hidden: p.hidden,
        admin: false,
    }
}

/// Quality wanted for a track shown `width` x `height` pixels large, given
/// the published size.
pub(crate) fn quality_for_size(width: u32, height: u32, track: &Track) -> Quality {
    let shown = width.max(height);
    let full = track.width.max(track.height).max(1);
    if shown == 0 {
        return Quality::High;
    }
    // Layers are commonly full, half and quarter size: the smallest layer
    // at least as large as the video is shown, so nothing is upscaled.
    if shown * 4 <= full {
        Quality::Low
    } else if shown * 2 <= full {
        Quality::Medium
    } else {
        Quality::High
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(width: u32, height: u32) -> Track {
        Track {
            sid: TrackSid::random(),
            cid: String::new(),
            kind: Kind::Video,
            source: TrackSource::Camera,
            name: String::new(),
            muted: false,
            width,
            height,
            simulcast: true,
            layers: Vec::new(),
            encryption: 0,
            stereo: false,
            disable_dtx: false,
            disable_red: false,
            mid: None,
            mime_type: String::new(),
            codec: String::new(),
            announced_quality: None,
        }
    }

    #[test]
    fn quality_by_displayed_size() {
        let t = video(1280, 720);
        assert_eq!(quality_for_size(1280, 720, &t), Quality::High);
        assert_eq!(quality_for_size(640, 360, &t), Quality::Medium);
        assert_eq!(quality_for_size(320, 180, &t), Quality::Low);
        // A 400 pixel tile gets the 640 pixel layer, not the 320 one.
        assert_eq!(quality_for_size(400, 225, &t), Quality::Medium);
        assert_eq!(quality_for_size(700, 394, &t), Quality::High);
        assert_eq!(quality_for_size(0, 0, &t), Quality::High);
    }

    #[test]
    fn permissions_round_trip() {
        let p = Permissions {
            sources: vec![TrackSource::Microphone, TrackSource::ScreenShare],
            ..Permissions::default()
        };
        assert_eq!(permission_from_proto(&permission_to_proto(&p)), p);
    }
}
