//! The sans-IO session core: rooms, participants, and the LiveKit client
//! protocol, on top of the media core.
//!
//! [`Sfu`] takes decoded signalling requests, received datagrams and the
//! time through `handle_*` methods and hands out signalling responses,
//! datagrams to send and its next wake-up through [`Sfu::poll_output`].
//! It knows no sockets, no HTTP and no clock. Every permission check of the
//! media plane happens here, on the server, whatever a client claims.

// The protocol keeps fields marked deprecated that older SDKs still read;
// they are filled on purpose.
#![allow(deprecated)]

mod model;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use conclave_media::{
    Kind, MediaConfig, MediaCore, MediaEvent, Output as MediaOutput, PeerId, Quality, Role,
};
use conclave_types::{
    ParticipantIdentity, ParticipantSid, Permissions, RoomName, RoomSid, TrackSid, TrackSource,
};
use livekit_protocol as lk;
use lk::signal_request::Message as Req;
use lk::signal_response::Message as Resp;
use prost::Message as _;
use prost::bytes::Bytes;

pub use model::{ConnId, RoomSettings};
use model::{Participant, PendingUpdate, Room, Track, Wish};

/// The protocol version this server speaks.
pub const PROTOCOL_VERSION: i32 = 16;
/// Seconds between client pings, announced in the join response.
pub const PING_INTERVAL_SECS: i32 = 3;
/// Seconds without a ping after which a participant's signalling counts as
/// lost (its connection is closed; the participant may still resume).
pub const PING_TIMEOUT_SECS: i32 = 8;
/// How long after its signalling was lost a participant may still resume
/// (a client notices a dead connection by its own ping timeout, then
/// reconnects, possibly from a new address) before it is removed.
pub const RESUME_GRACE: Duration = Duration::from_secs(15);
/// How long a participant whose media connection dropped may take to come back.
const MEDIA_LOSS_GRACE: Duration = Duration::from_secs(20);
/// How often speakers and wanted layers are re-evaluated.
const TICK: Duration = Duration::from_millis(300);
/// Smoothed level above which a participant counts as speaking (about -40 dBov).
const SPEAKING_LEVEL: f32 = 0.01;
/// Priorities of video when a subscriber's downlink is shared out.
const PRIORITY_SCREEN_SHARE: u8 = 2;
const PRIORITY_SPEAKER: u8 = 1;
const PRIORITY_NORMAL: u8 = 0;
/// Largest data packet relayed.
pub const MAX_DATA_PACKET: usize = 64 * 1024;

/// The current time, as both a monotonic instant (timers) and wall-clock
/// milliseconds since the Unix epoch (timestamps shown to clients).
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    pub unix_ms: i64,
}

/// Errors of the session core. Display texts are safe to show to clients.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignalError {
    #[error("room not found")]
    RoomNotFound,
    #[error("participant not found")]
    ParticipantNotFound,
    #[error("track not found")]
    TrackNotFound,
    #[error("the room is full")]
    RoomFull,
    #[error("not allowed")]
    NotAllowed,
    #[error("invalid request")]
    InvalidRequest,
    #[error("unknown connection")]
    UnknownConnection,
}

/// What a join asks for, after the token was verified.
#[derive(Debug, Clone)]
pub struct JoinParams {
    pub room: RoomName,
    pub identity: ParticipantIdentity,
    pub name: String,
    pub metadata: String,
    pub attributes: HashMap<String, String>,
    pub permissions: Permissions,
    /// May create the room when it does not exist.
    pub create_room: bool,
    pub auto_subscribe: bool,
    pub client_protocol: i32,
    /// What the participant is (a person, a bot, a recorder, a phone
    /// line), shown to everyone.
    pub kind: lk::participant_info::Kind,
}

/// A signalling message for one connection or many: built once, and
/// encoded once, by whichever connection writes it first, however many
/// connections it goes to (news of a participant goes to everyone in the
/// room).
#[derive(Debug)]
pub struct Outgoing {
    message: Resp,
    encoded: OnceLock<Bytes>,
}

impl Outgoing {
    pub fn new(message: Resp) -> Arc<Self> {
        Arc::new(Outgoing {
            message,
            encoded: OnceLock::new(),
        })
    }

    /// The message.
    pub fn message(&self) -> &Resp {
        &self.message
    }

    /// The `SignalResponse` in protobuf, encoded at the first call. Its
    /// only field is the message, so it is the message's own encoding.
    pub fn encoded(&self) -> Bytes {
        self.encoded
            .get_or_init(|| {
                let mut buf = Vec::with_capacity(self.message.encoded_len());
                self.message.encode(&mut buf);
                Bytes::from(buf)
            })
            .clone()
    }
}

/// Output of the core.
#[derive(Debug)]
pub enum Output {
    /// Send a signalling message on a connection.
    Signal { conn: ConnId, message: Arc<Outgoing> },
    /// Close a signalling connection after sending what was queued.
    Close { conn: ConnId },
    /// Send a datagram.
    Transmit {
        source: SocketAddr,
        destination: SocketAddr,
        contents: Vec<u8>,
    },
    /// Call [`Sfu::handle_timeout`] at this time.
    Timeout(Instant),
}

/// Figures for metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub rooms: usize,
    pub participants: usize,
    pub tracks: usize,
    pub media: conclave_media::Counters,
}

impl std::ops::AddAssign for Stats {
    /// Adds another engine's figures.
    fn add_assign(&mut self, o: Self) {
        self.rooms += o.rooms;
        self.participants += o.participants;
        self.tracks += o.tracks;
        self.media += o.media;
    }
}

/// Static configuration of the core.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    pub media: MediaConfig,
    pub server_version: String,
    pub node_id: String,
    pub default_room: RoomSettings,
}

/// The SFU's session core.
pub struct Sfu {
    config: SfuConfig,
    media: MediaCore,
    rooms: HashMap<RoomName, Room>,
    /// Boxed: a participant is about 700 bytes, and a map holds its values
    /// in every spare slot of a table that doubles as it grows.
    participants: HashMap<ParticipantSid, Box<Participant>>,
    by_conn: HashMap<ConnId, ParticipantSid>,
    by_peer: HashMap<PeerId, ParticipantSid>,
    out: VecDeque<Output>,
    now: Option<Now>,
    next_tick: Option<Instant>,
}

impl Sfu {
    /// An empty server. `start` is the current time; the core never reads the
    /// clock, later times come with the inputs.
    pub fn new(config: SfuConfig, start: Instant) -> Self {
        Self {
            media: MediaCore::new(config.media.clone(), start),
            config,
            rooms: HashMap::new(),
            participants: HashMap::new(),
            by_conn: HashMap::new(),
            by_peer: HashMap::new(),
            out: VecDeque::new(),
            now: None,
            next_tick: None,
        }
    }

    pub fn stats(&self) -> Stats {
        Stats {
            rooms: self.rooms.len(),
            participants: self.participants.len(),
            tracks: self
                .participants
                .values()
                .map(|p| p.tracks.values().filter(|t| t.mid.is_some()).count())
                .sum(),
            media: self.media.counters(),
        }
    }

    // ----------------------------------------------------------------- input

    /// A client connected with a verified token. Sends the join response (and
    /// the first subscriber offer) on `conn`.
    pub fn handle_join(
        &mut self,
        now: Now,
        conn: ConnId,
        params: JoinParams,
    ) -> Result<ParticipantSid, SignalError> {
        self.now = Some(now);
        if !self.rooms.contains_key(&params.room) {
            if !params.create_room {
                return Err(SignalError::RoomNotFound);
            }
            self.create_room(now, params.room.clone(), self.config.default_room.clone());
        }
        // The same identity joining again replaces the older session.
        let existing = self
            .participants
            .values()
            .find(|p| p.room == params.room && p.identity == params.identity)
            .map(|p| p.sid.clone());
        if let Some(old) = existing {
            self.remove_participant(&old, lk::DisconnectReason::DuplicateIdentity);
        }
        let room = self.rooms.get(&params.room).ok_or(SignalError::RoomNotFound)?;
        let max = room.settings.max_participants;
        if max > 0 && room.participants.len() >= max as usize {
            return Err(SignalError::RoomFull);
        }
        let news_seen = room.news_seq;
        let sid = ParticipantSid::random();
        let publisher = self.media.add_peer(now.mono, Role::Publisher);
        let subscriber = self.media.add_peer(now.mono, Role::Subscriber);
        let p = Participant {
            sid: sid.clone(),
            identity: params.identity,
            room: params.room.clone(),
            conn: Some(conn),
            name: params.name,
            metadata: params.metadata,
            attributes: params.attributes,
            permissions: params.permissions,
            joined_unix_ms: now.unix_ms,
            version: 1,
            publisher,
            subscriber,
            auto_subscribe: params.auto_subscribe,
            tracks: Default::default(),
            wishes: HashMap::new(),
            last_ping: now.mono,
            media_lost_since: None,
            client_protocol: params.client_protocol,
            kind: params.kind as i32,
            quality: None,
            ratings_sent: false,
            news_seen,
        };
        self.by_conn.insert(conn, sid.clone());
        self.by_peer.insert(publisher, sid.clone());
        self.by_peer.insert(subscriber, sid.clone());
        self.participants.insert(sid.clone(), Box::new(p));
        let room = self
            .rooms
            .get_mut(&params.room)
            .ok_or(SignalError::RoomNotFound)?;
        room.participants.push(sid.clone());
        room.had_participants = true;

        let join = self.join_response(&sid);
        self.send(conn, Resp::Join(join));
        tracing::info!(room = %params.room, participant = %sid, "participant joined");
        self.broadcast_participant(&sid, lk::participant_info::State::Joined);
        // Subscribe the newcomer to what is already published.
        if let Some(p) = self.participants.get(&sid)
            && p.auto_subscribe
            && p.permissions.can_subscribe
        {
            {
                let others: Vec<(ParticipantSid, TrackSid)> = self
                    .room_members(&params.room)
                    .into_iter()
                    .filter(|o| *o != sid)
                    .flat_map(|o| {
                        let tracks: Vec<TrackSid> = self
                            .participants
                            .get(&o)
                            .map(|op| {
                                op.tracks
                                    .values()
                                    .filter(|t| t.mid.is_some())
                                    .map(|t| t.sid.clone())
                                    .collect()
                            })
                            .unwrap_or_default();
                        tracks.into_iter().map(move |t| (o.clone(), t))
                    })
                    .collect();
                for (publisher_sid, track) in others {
                    self.subscribe(&sid, &publisher_sid, &track);
                }
            }
        }
        self.negotiate_subscriber(&sid);
        self.update_dynacast();
        Ok(sid)
    }

    /// A signalling message arrived on `conn`.
    pub fn handle_request(
        &mut self,
        now: Now,
        conn: ConnId,
        req: lk::SignalRequest,
    ) -> Result<(), SignalError> {
        self.now = Some(now);
        let sid = self
            .by_conn
            .get(&conn)
            .cloned()
            .ok_or(SignalError::UnknownConnection)?;
        if let Some(p) = self.participants.get_mut(&sid) {
            p.last_ping = now.mono;
        }
        let Some(msg) = req.message else { return Ok(()) };
        let result = self.dispatch(now, conn, &sid, msg);
        self.update_dynacast();
        result
    }

    /// The signalling connection closed without a leave. The participant
    /// stays (its media may still flow) and can resume with a new
    /// connection; it is removed when it does not come back within the ping
    /// timeout and [`RESUME_GRACE`].
    pub fn handle_disconnect(&mut self, now: Now, conn: ConnId) {
        self.now = Some(now);
        if let Some(sid) = self.by_conn.remove(&conn)
            && let Some(p) = self.participants.get_mut(&sid)
            && p.conn == Some(conn)
        {
            tracing::info!(participant = %sid, "signalling connection lost; waiting for the participant to resume");
            p.conn = None;
        }
    }

    /// A client reconnects its signalling for an existing session (`reconnect=1`
    /// with its participant sid). The token must name the same room and
    /// identity. On success the client gets a reconnect response, the current
    /// roster and a subscriber offer that restarts ICE.
    pub fn handle_resume(
        &mut self,
        now: Now,
        conn: ConnId,
        sid: &ParticipantSid,
        room: &RoomName,
        identity: &ParticipantIdentity,
    ) -> Result<(), SignalError> {
        self.now = Some(now);
        let p = self
            .participants
            .get_mut(sid)
            .ok_or(SignalError::ParticipantNotFound)?;
        if &p.room != room || &p.identity != identity {
            tracing::warn!(participant = %sid, "refused to resume a session with another participant's token");
            return Err(SignalError::NotAllowed);
        }
        let old = p.conn.replace(conn);
        p.last_ping = now.mono;
        p.news_seen = self.rooms.get(room).map_or(0, |r| r.news_seq);
        p.ratings_sent = false;
        let subscriber = p.subscriber;
        if let Some(old) = old {
            self.by_conn.remove(&old);
            self.out.push_back(Output::Close { conn: old });
        }
        self.by_conn.insert(conn, sid.clone());
        tracing::info!(participant = %sid, "participant resumed");
        let server_info = self.join_response(sid).server_info;
        self.send(
            conn,
            Resp::Reconnect(lk::ReconnectResponse {
                server_info,
                ..Default::default()
            }),
        );
        let others = self.roster(room, sid);
        if !others.is_empty() {
            self.send(conn, Resp::Update(lk::ParticipantUpdate { participants: others }));
        }
        let offer = self.media.restart_offer(subscriber);
        self.send_offer(conn, sid, offer);
        Ok(())
    }

    /// A datagram arrived on the media socket.
    pub fn handle_datagram(
        &mut self,
        now: Now,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &[u8],
    ) {
        self.now = Some(now);
        if self
            .media
            .handle_receive(now.mono, source, destination, contents)
            .is_err()
        {
            tracing::trace!("dropped a datagram from an unknown peer");
        }
    }

    /// Drives timers.
    pub fn handle_timeout(&mut self, now: Now) {
        self.now = Some(now);
        self.media.handle_timeout(now.mono);
        if self.next_tick.is_some_and(|t| now.mono < t) {
            return;
        }
        self.next_tick = Some(now.mono + TICK);
        // News first: what the tick says about a participant (speaking,
        // connection quality) must not reach a member before the
        // participant does.
        self.flush_updates();
        self.update_speakers(now.mono);
        self.update_dynacast();
        self.update_connection_quality(now.mono);
        // Participants that stopped pinging: their signalling is closed, and
        // after the grace for a resume they go, as do those that lost media
        // for good.
        let ping_timeout = Duration::from_secs(PING_TIMEOUT_SECS as u64);
        let silent: Vec<(ParticipantSid, ConnId)> = self
            .participants
            .values()
            .filter(|p| now.mono.saturating_duration_since(p.last_ping) > ping_timeout)
            .filter_map(|p| Some((p.sid.clone(), p.conn?)))
            .collect();
        for (sid, conn) in silent {
            tracing::info!(participant = %sid, "no pings; signalling closed, waiting for the participant to resume");
            self.by_conn.remove(&conn);
            if let Some(p) = self.participants.get_mut(&sid) {
                p.conn = None;
            }
            self.out.push_back(Output::Close { conn });
        }
        let gone: Vec<(ParticipantSid, lk::DisconnectReason)> = self
            .participants
            .values()
            .filter_map(|p| {
                if now.mono.saturating_duration_since(p.last_ping) > ping_timeout + RESUME_GRACE {
                    Some((p.sid.clone(), lk::DisconnectReason::SignalClose))
                } else if p
                    .media_lost_since
                    .is_some_and(|t| now.mono.saturating_duration_since(t) > MEDIA_LOSS_GRACE)
                {
                    Some((p.sid.clone(), lk::DisconnectReason::ConnectionTimeout))
                } else {
                    None
                }
            })
            .collect();
        for (sid, reason) in gone {
            tracing::info!(participant = %sid, ?reason, "removing unresponsive participant");
            self.remove_participant(&sid, reason);
        }
        // Rooms empty for longer than they may be.
        let expired: Vec<RoomName> = self
            .rooms
            .values()
            .filter(|r| {
                let limit = if r.had_participants {
                    r.settings.departure_timeout
                } else {
                    r.settings.empty_timeout
                };
                r.participants.is_empty()
                    && now.mono.saturating_duration_since(r.empty_since)
                        >= Duration::from_secs(u64::from(limit))
            })
            .map(|r| r.name.clone())
            .collect();
        for name in expired {
            tracing::info!(room = %name, "closing empty room");
            self.rooms.remove(&name);
        }
    }

    /// The next output. Call until it returns [`Output::Timeout`].
    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.out.pop_front() {
            return o;
        }
        loop {
            match self.media.poll_output() {
                MediaOutput::Transmit {
                    source,
                    destination,
                    contents,
                } => {
                    return Output::Transmit {
                        source,
                        destination,
                        contents,
                    };
                }
                MediaOutput::Event(e) => {
                    self.on_media_event(e);
                    if let Some(o) = self.out.pop_front() {
                        return o;
                    }
                }
                MediaOutput::Timeout(t) => {
                    if let Some(o) = self.out.pop_front() {
                        return o;
                    }
                    // Wake for the session's own periodic work too.
                    let tick = self.next_tick.or(self.now.map(|n| n.mono));
                    return Output::Timeout(tick.map_or(t, |c| c.min(t)));
                }
            }
        }
    }

    // ------------------------------------------------------ room service API

    /// Creates a room, or returns the existing one.
    pub fn create_room(&mut self, now: Now, name: RoomName, settings: RoomSettings) -> lk::Room {
        self.now = Some(now);
        let room = self.rooms.entry(name.clone()).or_insert_with(|| Room {
            sid: RoomSid::random(),
            name,
            settings,
            created_unix_ms: now.unix_ms,
            participants: Vec::new(),
            speakers: Vec::new(),
            had_participants: false,
            empty_since: now.mono,
            pending_updates: Vec::new(),
            news_seq: 0,
        });
        let sid = room.name.clone();
        self.room_info(&sid).unwrap_or_default()
    }

    pub fn list_rooms(&self, names: &[RoomName]) -> Vec<lk::Room> {
        let mut v: Vec<lk::Room> = self
            .rooms
            .keys()
            .filter(|n| names.is_empty() || names.contains(n))
            .filter_map(|n| self.room_info(n))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Ends a room: everyone in it is disconnected.
    pub fn delete_room(&mut self, room: &RoomName) -> Result<(), SignalError> {
        let members = self.existing_room_members(room)?;
        for sid in members {
            self.remove_participant(&sid, lk::DisconnectReason::RoomDeleted);
        }
        self.rooms.remove(room);
        Ok(())
    }

    pub fn list_participants(&self, room: &RoomName) -> Result<Vec<lk::ParticipantInfo>, SignalError> {
        let r = self.rooms.get(room).ok_or(SignalError::RoomNotFound)?;
        Ok(r.participants
            .iter()
            .filter_map(|s| self.participants.get(s))
            .map(|p| p.info(lk::participant_info::State::Active))
            .collect())
    }

    pub fn get_participant(
        &self,
        room: &RoomName,
        identity: &ParticipantIdentity,
    ) -> Result<lk::ParticipantInfo, SignalError> {
        let sid = self.find(room, identity)?;
        self.participants
            .get(&sid)
            .map(|p| p.info(lk::participant_info::State::Active))
            .ok_or(SignalError::ParticipantNotFound)
    }

    pub fn remove_participant_by_identity(
        &mut self,
        room: &RoomName,
        identity: &ParticipantIdentity,
    ) -> Result<(), SignalError> {
        let sid = self.find(room, identity)?;
        self.remove_participant(&sid, lk::DisconnectReason::ParticipantRemoved);
        Ok(())
    }

    /// Mutes a published track on behalf of a moderator. Only muting exists:
    /// nobody can switch on someone else's microphone or camera, so
    /// `muted == false` is refused.
    pub fn mute_published_track(
        &mut self,
        room: &RoomName,
        identity: &ParticipantIdentity,
        track: &str,
        muted: bool,
    ) -> Result<lk::TrackInfo, SignalError> {
        if !muted {
            tracing::warn!(room = %room, track, "refused a request to unmute someone else's track");
            return Err(SignalError::NotAllowed);
        }
        let sid = self.find(room, identity)?;
        let track_sid = TrackSid::parse(track).map_err(|_| SignalError::TrackNotFound)?;
        let p = self
            .participants
            .get_mut(&sid)
            .ok_or(SignalError::ParticipantNotFound)?;
        if !p.tracks.contains_key(&track_sid) {
            return Err(SignalError::TrackNotFound);
        }
        self.force_mute(&sid, &track_sid);
        self.broadcast_participant(&sid, lk::participant_info::State::Active);
        self.participants
            .get(&sid)
            .and_then(|p| p.tracks.get(&track_sid))
            .map(Track::info)
            .ok_or(SignalError::TrackNotFound)
    }

    /// Mutes every track of `sources` that a participant publishes, on
    /// behalf of a moderator or because the right to publish them went.
    /// Returns how many tracks were muted.
    pub fn mute_sources(
        &mut self,
        room: &RoomName,
        identity: &ParticipantIdentity,
        sources: &[TrackSource],
    ) -> Result<usize, SignalError> {
        let sid = self.find(room, identity)?;
        let n = self.mute_sources_of(&sid, sources);
        if n > 0 {
            self.broadcast_participant(&sid, lk::participant_info::State::Active);
        }
        Ok(n)
    }

    fn mute_sources_of(&mut self, sid: &ParticipantSid, sources: &[TrackSource]) -> usize {
        let tracks: Vec<TrackSid> = self
            .participants
            .get(sid)
            .map(|p| {
                p.tracks
                    .values()
                    .filter(|t| !t.muted && sources.contains(&t.effective_source()))
                    .map(|t| t.sid.clone())
                    .collect()
            })
            .unwrap_or_default();
        for t in &tracks {
            self.force_mute(sid, t);
        }
        tracks.len()
    }

    /// Mutes one track: the flag, the forwarding, and a request to the
    /// client to mute it too. Never the other way round.
    fn force_mute(&mut self, sid: &ParticipantSid, track_sid: &TrackSid) {
        let Some(p) = self.participants.get_mut(sid) else {
            return;
        };
        let publisher = p.publisher;
        let conn = p.conn;
        let Some(t) = p.tracks.get_mut(track_sid) else {
            return;
        };
        t.muted = true;
        if let Some(mid) = &t.mid {
            self.media.set_muted(publisher, mid, true);
        }
        p.version += 1;
        if let Some(conn) = conn {
            self.send(
                conn,
                Resp::Mute(lk::MuteTrackRequest {
                    sid: track_sid.to_string(),
                    muted: true,
                }),
            );
        }
    }

    /// Changes a participant's name, metadata, attributes or permissions.
    pub fn update_participant(
        &mut self,
        room: &RoomName,
        identity: &ParticipantIdentity,
        name: Option<String>,
        metadata: Option<String>,
        attributes: HashMap<String, String>,
        permission: Option<&lk::ParticipantPermission>,
    ) -> Result<lk::ParticipantInfo, SignalError> {
        let sid = self.find(room, identity)?;
        let p = self
            .participants
            .get_mut(&sid)
            .ok_or(SignalError::ParticipantNotFound)?;
        if let Some(n) = name {
            p.name = n;
        }
        if let Some(m) = metadata {
            p.metadata = m;
        }
        for (k, v) in attributes {
            if v.is_empty() {
                p.attributes.remove(&k);
            } else {
                p.attributes.insert(k, v);
            }
        }
        if permission.is_some_and(|perm| perm.hidden) {
            tracing::warn!(room = %room, participant = %sid, "refused to hide a participant");
            return Err(SignalError::NotAllowed);
        }
        p.version += 1;
        if let Some(perm) = permission {
            self.replace_permissions(&sid, model::permission_from_proto(perm));
        }
        self.broadcast_participant(&sid, lk::participant_info::State::Active);
        self.participants
            .get(&sid)
            .map(|p| p.info(lk::participant_info::State::Active))
            .ok_or(SignalError::ParticipantNotFound)
    }

    /// Replaces a participant's permissions. Hiding is refused; tracks of
    /// sources no longer allowed are muted and no longer forwarded.
    pub fn set_permissions(
        &mut self,
        room: &RoomName,
        identity: &ParticipantIdentity,
        permissions: Permissions,
    ) -> Result<(), SignalError> {
        let sid = self.find(room, identity)?;
        if permissions.hidden {
            tracing::warn!(room = %room, participant = %sid, "refused to hide a participant");
            return Err(SignalError::NotAllowed);
        }
        self.replace_permissions(&sid, permissions);
        if let Some(p) = self.participants.get_mut(&sid) {
            p.version += 1;
        }
        self.broadcast_participant(&sid, lk::participant_info::State::Active);
        Ok(())
    }

    fn replace_permissions(&mut self, sid: &ParticipantSid, mut permissions: Permissions) {
        let Some(p) = self.participants.get_mut(sid) else {
            return;
        };
        permissions.admin = p.permissions.admin;
        p.permissions = permissions;
        let revoked: Vec<TrackSource> = TrackSource::ALL
            .into_iter()
            .filter(|s| !p.permissions.may_publish(*s))
            .collect();
        self.mute_sources_of(sid, &revoked);
    }

    /// Sends data from the server to everyone (or the listed identities) in a room.
    pub fn send_data(
        &mut self,
        room: &RoomName,
        data: Vec<u8>,
        reliable: bool,
        destinations: &[String],
        topic: Option<String>,
    ) -> Result<(), SignalError> {
        let members = self.existing_room_members(room)?;
        if data.len() > MAX_DATA_PACKET {
            return Err(SignalError::InvalidRequest);
        }
        let kind = if reliable {
            lk::data_packet::Kind::Reliable
        } else {
            lk::data_packet::Kind::Lossy
        };
        let packet = lk::DataPacket {
            kind: kind as i32,
            destination_identities: destinations.to_vec(),
            value: Some(lk::data_packet::Value::User(lk::UserPacket {
                payload: data,
                destination_identities: destinations.to_vec(),
                topic,
                ..Default::default()
            })),
            ..Default::default()
        };
        let bytes = packet.encode_to_vec();
        for sid in members {
            let Some(p) = self.participants.get(&sid) else {
                continue;
            };
            if !destinations.is_empty() && !destinations.iter().any(|d| d == p.identity.as_str()) {
                continue;
            }
            self.media.send_data(p.subscriber, reliable, &bytes);
        }
        Ok(())
    }

    // -------------------------------------------------------------- internals

    fn dispatch(
        &mut self,
        now: Now,
        conn: ConnId,
        sid: &ParticipantSid,
        msg: Req,
    ) -> Result<(), SignalError> {
        match msg {
            Req::Offer(sd) => {
                let p = self.participant(sid)?;
                let publisher = p.publisher;
                // Audio in RED unless the client asked otherwise (livekit-client
                // does when its encryption is on).
                let red_tracks: Vec<String> = p
                    .tracks
                    .values()
                    .filter(|t| t.kind == conclave_media::Kind::Audio && !t.disable_red)
                    .map(|t| t.cid.clone())
                    .collect();
                match self.media.accept_offer(publisher, &sd.sdp, &red_tracks) {
                    Ok(answer) => self.send(
                        conn,
                        Resp::Answer(lk::SessionDescription {
                            r#type: "answer".into(),
                            sdp: answer,
                            id: sd.id,
                            ..Default::default()
                        }),
                    ),
                    Err(e) => {
                        tracing::info!(participant = %sid, error = %e, "publisher offer refused");
                        return Err(SignalError::InvalidRequest);
                    }
                }
            }
            Req::Answer(sd) => {
                let subscriber = self.participant(sid)?.subscriber;
                match self.media.accept_answer(subscriber, &sd.sdp) {
                    Ok(true) => self.negotiate_subscriber(sid),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::info!(participant = %sid, error = %e, "subscriber answer refused");
                        return Err(SignalError::InvalidRequest);
                    }
                }
            }
            Req::Trickle(t) => {
                let p = self.participant(sid)?;
                let peer = if t.target == lk::SignalTarget::Subscriber as i32 {
                    p.subscriber
                } else {
                    p.publisher
                };
                let candidate = parse_candidate_init(&t.candidate_init).ok_or(SignalError::InvalidRequest)?;
                if let Err(e) = self.media.add_remote_candidate(peer, &candidate) {
                    tracing::debug!(participant = %sid, error = %e, "remote candidate refused");
                }
            }
            Req::AddTrack(req) => self.add_track(conn, sid, req)?,
            Req::Mute(m) => {
                let track_sid = TrackSid::parse(&m.sid).map_err(|_| SignalError::TrackNotFound)?;
                let p = self
                    .participants
                    .get_mut(sid)
                    .ok_or(SignalError::ParticipantNotFound)?;
                let publisher = p.publisher;
                let t = p.tracks.get_mut(&track_sid).ok_or(SignalError::TrackNotFound)?;
                // Unmuting is publishing again: only with the right to
                // publish that source (a moderator may have taken it away).
                if !m.muted && !p.permissions.may_publish(t.effective_source()) {
                    tracing::warn!(participant = %sid, "refused to unmute a track without the right to publish it");
                    self.send(
                        conn,
                        Resp::Mute(lk::MuteTrackRequest {
                            sid: m.sid,
                            muted: true,
                        }),
                    );
                    return Err(SignalError::NotAllowed);
                }
                if t.muted != m.muted {
                    t.muted = m.muted;
                    if let Some(mid) = &t.mid {
                        self.media.set_muted(publisher, mid, m.muted);
                    }
                    p.version += 1;
                    self.broadcast_participant(sid, lk::participant_info::State::Active);
                }
            }
            Req::Subscription(s) => {
                let mut sids: Vec<String> = s.track_sids.clone();
                for pt in &s.participant_tracks {
                    sids.extend(pt.track_sids.iter().cloned());
                }
                for ts in sids {
                    let Ok(track) = TrackSid::parse(&ts) else { continue };
                    let Some(owner) = self.track_owner(sid, &track) else {
                        continue;
                    };
                    let p = self
                        .participants
                        .get_mut(sid)
                        .ok_or(SignalError::ParticipantNotFound)?;
                    p.wishes.entry(track.clone()).or_default().subscribed = s.subscribe;
                    if s.subscribe {
                        self.subscribe(sid, &owner, &track);
                    } else {
                        self.unsubscribe(sid, &owner, &track);
                    }
                }
                self.negotiate_subscriber(sid);
            }
            Req::TrackSetting(s) => {
                for ts in &s.track_sids {
                    let Ok(track) = TrackSid::parse(ts) else { continue };
                    let Some(owner) = self.track_owner(sid, &track) else {
                        continue;
                    };
                    let quality = {
                        let op = self.participant(&owner)?;
                        let t = op.tracks.get(&track).ok_or(SignalError::TrackNotFound)?;
                        if s.width > 0 || s.height > 0 {
                            model::quality_for_size(s.width, s.height, t)
                        } else {
                            match lk::VideoQuality::try_from(s.quality) {
                                Ok(lk::VideoQuality::Low) => Quality::Low,
                                Ok(lk::VideoQuality::Medium) => Quality::Medium,
                                _ => Quality::High,
                            }
                        }
                    };
                    let p = self
                        .participants
                        .get_mut(sid)
                        .ok_or(SignalError::ParticipantNotFound)?;
                    let w = p.wishes.entry(track.clone()).or_default();
                    w.enabled = !s.disabled;
                    w.quality = quality;
                    let wish = *w;
                    self.apply_wish(sid, &owner, &track, wish);
                }
            }
            Req::Leave(_) => {
                tracing::info!(participant = %sid, "participant left");
                self.remove_participant(sid, lk::DisconnectReason::ClientInitiated);
            }
            Req::Ping(ts) => self.send(conn, Resp::Pong(ts)),
            Req::PingReq(ping) => self.send(
                conn,
                Resp::PongResp(lk::Pong {
                    last_ping_timestamp: ping.timestamp,
                    timestamp: now.unix_ms,
                }),
            ),
            Req::UpdateMetadata(u) => {
                let p = self
                    .participants
                    .get_mut(sid)
                    .ok_or(SignalError::ParticipantNotFound)?;
                if !p.permissions.can_update_metadata {
                    self.send(
                        conn,
                        Resp::RequestResponse(lk::RequestResponse {
                            request_id: u.request_id,
                            reason: lk::request_response::Reason::NotAllowed as i32,
                            message: "not allowed to update own metadata".into(),
                            ..Default::default()
                        }),
                    );
                    return Err(SignalError::NotAllowed);
                }
                if !u.name.is_empty() {
                    p.name = u.name.clone();
                }
                if !u.metadata.is_empty() {
                    p.metadata = u.metadata.clone();
                }
                for (k, v) in &u.attributes {
                    if v.is_empty() {
                        p.attributes.remove(k);
                    } else {
                        p.attributes.insert(k.clone(), v.clone());
                    }
                }
                p.version += 1;
                self.send(
                    conn,
                    Resp::RequestResponse(lk::RequestResponse {
                        request_id: u.request_id,
                        reason: lk::request_response::Reason::Ok as i32,
                        ..Default::default()
                    }),
                );
                self.broadcast_participant(sid, lk::participant_info::State::Active);
            }
            // Accepted and not needed by this server: layer hints come from
            // the media, resumption and simulation are not offered.
            _ => {}
        }
        Ok(())
    }

    fn add_track(
        &mut self,
        conn: ConnId,
        sid: &ParticipantSid,
        req: lk::AddTrackRequest,
    ) -> Result<(), SignalError> {
        let source = TrackSource::from_proto(req.source);
        let kind = if req.r#type == lk::TrackType::Video as i32 {
            Kind::Video
        } else {
            Kind::Audio
        };
        let p = self
            .participants
            .get_mut(sid)
            .ok_or(SignalError::ParticipantNotFound)?;
        let effective_source = model::effective_source(source, kind);
        if !p.permissions.may_publish(effective_source) {
            tracing::warn!(participant = %sid, ?source, "refused to publish a track without permission");
            self.send(
                conn,
                Resp::RequestResponse(lk::RequestResponse {
                    reason: lk::request_response::Reason::NotAllowed as i32,
                    message: "not allowed to publish this source".into(),
                    request: Some(lk::request_response::Request::AddTrack(req)),
                    ..Default::default()
                }),
            );
            return Err(SignalError::NotAllowed);
        }
        if req.cid.is_empty() || req.cid.len() > 256 || p.tracks.len() >= 32 {
            return Err(SignalError::InvalidRequest);
        }
        if let Some(existing) = p.tracks.values().find(|t| t.cid == req.cid) {
            let info = existing.info();
            self.send(
                conn,
                Resp::TrackPublished(lk::TrackPublishedResponse {
                    cid: req.cid,
                    track: Some(info),
                }),
            );
            return Ok(());
        }
        let simulcast = req.layers.len() > 1
            || req
                .simulcast_codecs
                .iter()
                .any(|c| !c.layers.is_empty() && c.layers.len() > 1);
        let track = Track {
            sid: TrackSid::random(),
            cid: req.cid.clone(),
            kind,
            source,
            name: req.name.chars().take(256).collect(),
            muted: req.muted,
            width: req.width,
            height: req.height,
            simulcast,
            layers: req.layers.clone(),
            encryption: req.encryption,
            stereo: req.stereo,
            disable_dtx: req.disable_dtx,
            disable_red: req.disable_red,
            mid: None,
            mime_type: String::new(),
            codec: req
                .simulcast_codecs
                .first()
                .map(|c| c.codec.to_ascii_lowercase())
                .filter(|c| c.len() <= 16 && c.bytes().all(|b| b.is_ascii_alphanumeric()))
                .unwrap_or_default(),
            announced_quality: None,
        };
        let info = track.info();
        p.tracks.insert(track.sid.clone(), track);
        self.send(
            conn,
            Resp::TrackPublished(lk::TrackPublishedResponse {
                cid: req.cid,
                track: Some(info),
            }),
        );
        Ok(())
    }

    fn on_media_event(&mut self, e: MediaEvent) {
        match e {
            MediaEvent::TrackAdded {
                peer,
                mid,
                kind,
                track_id,
                rids,
            } => {
                let Some(sid) = self.by_peer.get(&peer).cloned() else {
                    return;
                };
                let Some(p) = self.participants.get_mut(&sid) else {
                    return;
                };
                // Match the media section to an announced track by the client's
                // track id, else the oldest announced track of the same kind.
                let matched = p
                    .tracks
                    .values()
                    .find(|t| t.mid.is_none() && t.cid == track_id)
                    .or_else(|| p.tracks.values().find(|t| t.mid.is_none() && t.kind == kind))
                    .map(|t| t.sid.clone());
                let Some(track_sid) = matched else {
                    tracing::info!(participant = %sid, %mid, "media without an announced track is not forwarded");
                    return;
                };
                if let Some(t) = p.tracks.get_mut(&track_sid) {
                    if t.source == TrackSource::ScreenShare {
                        self.media.set_priority(peer, &mid, PRIORITY_SCREEN_SHARE);
                    }
                    if t.muted {
                        self.media.set_muted(peer, &mid, true);
                    }
                    t.mid = Some(mid);
                    t.simulcast = t.simulcast || rids.len() > 1;
                    t.mime_type = match (kind, t.codec.is_empty()) {
                        (Kind::Audio, _) => "audio/opus".into(),
                        (Kind::Video, false) => format!("video/{}", t.codec),
                        (Kind::Video, true) => String::new(),
                    };
                }
                p.version += 1;
                let room = p.room.clone();
                self.broadcast_participant(&sid, lk::participant_info::State::Active);
                // Auto-subscribe everyone else.
                let others: Vec<ParticipantSid> = self
                    .room_members(&room)
                    .into_iter()
                    .filter(|o| *o != sid)
                    .collect();
                for o in others {
                    let wants = self
                        .participants
                        .get(&o)
                        .is_some_and(|op| op.auto_subscribe && op.permissions.can_subscribe);
                    if wants {
                        self.subscribe(&o, &sid, &track_sid);
                        self.negotiate_subscriber(&o);
                    }
                }
            }
            MediaEvent::TrackRemoved {
                peer,
                mid,
                renegotiate,
            } => {
                self.forget_track(peer, &mid);
                self.renegotiate(renegotiate);
            }
            MediaEvent::Connected(peer) => {
                if let Some(sid) = self.by_peer.get(&peer).cloned()
                    && let Some(p) = self.participants.get_mut(&sid)
                {
                    p.media_lost_since = None;
                }
            }
            MediaEvent::Disconnected(peer) => {
                let at = self.now.map(|n| n.mono);
                if let (Some(sid), Some(at)) = (self.by_peer.get(&peer).cloned(), at)
                    && let Some(p) = self.participants.get_mut(&sid)
                {
                    p.media_lost_since.get_or_insert(at);
                }
            }
            MediaEvent::Failed { peer, renegotiate } => {
                if let Some(sid) = self.by_peer.get(&peer).cloned() {
                    self.remove_participant(&sid, lk::DisconnectReason::MediaFailure);
                }
                self.renegotiate(renegotiate);
            }
            MediaEvent::Data { peer, reliable, data } => self.relay_data(peer, reliable, &data),
            MediaEvent::DowntrackPaused {
                peer,
                track_id,
                paused,
            } => {
                let Some(conn) = self
                    .by_peer
                    .get(&peer)
                    .and_then(|s| self.participants.get(s))
                    .and_then(|p| p.conn)
                else {
                    return;
                };
                let Ok(track) = TrackSid::parse(&track_id) else {
                    return;
                };
                let Some(owner) = self.participants.values().find(|p| p.tracks.contains_key(&track)) else {
                    return;
                };
                let state = if paused {
                    lk::StreamState::Paused
                } else {
                    lk::StreamState::Active
                };
                let info = lk::StreamStateInfo {
                    participant_sid: owner.sid.to_string(),
                    track_sid: track_id,
                    state: state as i32,
                };
                self.send(
                    conn,
                    Resp::StreamStateUpdate(lk::StreamStateUpdate {
                        stream_states: vec![info],
                    }),
                );
            }
            MediaEvent::DowntrackStarted { peer, track_id } => {
                let conn = self
                    .by_peer
                    .get(&peer)
                    .and_then(|sid| self.participants.get(sid))
                    .and_then(|p| p.conn);
                if let Some(conn) = conn {
                    self.send(
                        conn,
                        Resp::TrackSubscribed(lk::TrackSubscribed { track_sid: track_id }),
                    );
                }
            }
        }
    }

    /// Announces who speaks, per room, when the set or its order changes.
    fn update_speakers(&mut self, now: Instant) {
        let mut levels: HashMap<ParticipantSid, f32> = HashMap::new();
        for (peer, _, level) in self.media.audio_levels(now) {
            if let Some(sid) = self.by_peer.get(&peer) {
                let l = levels.entry(sid.clone()).or_default();
                *l = l.max(level);
            }
        }
        let rooms: Vec<RoomName> = self.rooms.keys().cloned().collect();
        for name in rooms {
            let Some(room) = self.rooms.get(&name) else {
                continue;
            };
            let mut speaking: Vec<(ParticipantSid, f32)> = room
                .participants
                .iter()
                .filter(|s| self.participants.get(*s).is_some_and(|p| !p.permissions.hidden))
                .filter_map(|s| levels.get(s).map(|l| (s.clone(), *l)))
                .filter(|(_, l)| *l >= SPEAKING_LEVEL)
                .collect();
            speaking.sort_by(|a, b| b.1.total_cmp(&a.1));
            let now_speaking: Vec<ParticipantSid> = speaking.iter().map(|(s, _)| s.clone()).collect();
            if now_speaking == room.speakers {
                continue;
            }
            // Speakers' cameras go before other thumbnails when downlinks are shared out.
            for sid in &room.participants {
                let Some(p) = self.participants.get(sid) else {
                    continue;
                };
                let priority = if now_speaking.contains(sid) {
                    PRIORITY_SPEAKER
                } else {
                    PRIORITY_NORMAL
                };
                for t in p.tracks.values().filter(|t| t.source == TrackSource::Camera) {
                    if let Some(mid) = &t.mid {
                        self.media.set_priority(p.publisher, mid, priority);
                    }
                }
            }
            let mut infos: Vec<lk::SpeakerInfo> = speaking
                .iter()
                .map(|(sid, level)| lk::SpeakerInfo {
                    sid: sid.to_string(),
                    level: level.min(1.0),
                    active: true,
                })
                .collect();
            for gone in room.speakers.iter().filter(|s| !now_speaking.contains(s)) {
                infos.push(lk::SpeakerInfo {
                    sid: gone.to_string(),
                    level: 0.0,
                    active: false,
                });
            }
            let conns: Vec<ConnId> = room
                .participants
                .iter()
                .filter_map(|s| self.participants.get(s))
                .filter_map(|p| p.conn)
                .collect();
            if let Some(room) = self.rooms.get_mut(&name) {
                room.speakers = now_speaking;
            }
            self.send_to_all(
                conns,
                Resp::SpeakersChanged(lk::SpeakersChanged { speakers: infos }),
            );
        }
    }

    /// Tells everyone in a room how good each participant's connection is,
    /// when a rating changes; a connection new to the room (joined or
    /// resumed) gets every rating once, as the others already have them.
    fn update_connection_quality(&mut self, now: Instant) {
        let rooms: Vec<RoomName> = self.rooms.keys().cloned().collect();
        for name in rooms {
            let members = self.room_members(&name);
            let mut changed = Vec::new();
            for sid in &members {
                let Some(p) = self.participants.get(sid) else {
                    continue;
                };
                let links = [
                    self.media.link_stats(p.publisher),
                    self.media.link_stats(p.subscriber),
                ];
                let (quality, score) = rate_connection(&links, p.media_lost_since.is_some(), now);
                if let Some(p) = self.participants.get_mut(sid)
                    && p.quality.map(|(q, _)| q) != Some(quality)
                {
                    p.quality = Some((quality, score));
                    if !p.permissions.hidden {
                        changed.push(lk::ConnectionQualityInfo {
                            participant_sid: sid.to_string(),
                            quality: quality as i32,
                            score,
                        });
                    }
                }
            }
            let mut newcomers = Vec::new();
            let mut others = Vec::new();
            for sid in &members {
                let Some(p) = self.participants.get_mut(sid) else {
                    continue;
                };
                let Some(conn) = p.conn else { continue };
                if std::mem::replace(&mut p.ratings_sent, true) {
                    others.push(conn);
                } else {
                    newcomers.push(conn);
                }
            }
            if !newcomers.is_empty() {
                let all: Vec<lk::ConnectionQualityInfo> = members
                    .iter()
                    .filter_map(|s| self.participants.get(s))
                    .filter(|p| !p.permissions.hidden)
                    .filter_map(|p| {
                        let (quality, score) = p.quality?;
                        Some(lk::ConnectionQualityInfo {
                            participant_sid: p.sid.to_string(),
                            quality: quality as i32,
                            score,
                        })
                    })
                    .collect();
                if !all.is_empty() {
                    self.send_to_all(
                        newcomers,
                        Resp::ConnectionQuality(lk::ConnectionQualityUpdate { updates: all }),
                    );
                }
            }
            if changed.is_empty() {
                continue;
            }
            self.send_to_all(
                others,
                Resp::ConnectionQuality(lk::ConnectionQualityUpdate { updates: changed }),
            );
        }
    }

    /// Tells publishers which simulcast layers anyone still receives, so
    /// unwatched layers stop (dynacast).
    fn update_dynacast(&mut self) {
        let mut updates: Vec<(ConnId, lk::SubscribedQualityUpdate)> = Vec::new();
        for p in self.participants.values_mut() {
            let Some(conn) = p.conn else { continue };
            for t in p.tracks.values_mut() {
                let Some(mid) = &t.mid else { continue };
                if t.kind != Kind::Video || !t.simulcast {
                    continue;
                }
                let wanted = self.media.wanted_quality(p.publisher, mid);
                if t.announced_quality == Some(wanted) {
                    continue;
                }
                t.announced_quality = Some(wanted);
                let qualities: Vec<lk::SubscribedQuality> = [
                    (lk::VideoQuality::Low, Quality::Low),
                    (lk::VideoQuality::Medium, Quality::Medium),
                    (lk::VideoQuality::High, Quality::High),
                ]
                .into_iter()
                .map(|(q, ours)| lk::SubscribedQuality {
                    quality: q as i32,
                    enabled: wanted >= Some(ours),
                })
                .collect();
                let codecs = if t.codec.is_empty() {
                    Vec::new()
                } else {
                    vec![lk::SubscribedCodec {
                        codec: t.codec.clone(),
                        qualities: qualities.clone(),
                    }]
                };
                updates.push((
                    conn,
                    lk::SubscribedQualityUpdate {
                        track_sid: t.sid.to_string(),
                        subscribed_qualities: qualities,
                        subscribed_codecs: codecs,
                    },
                ));
            }
        }
        for (conn, update) in updates {
            self.send(conn, Resp::SubscribedQualityUpdate(update));
        }
    }

    fn relay_data(&mut self, peer: PeerId, reliable: bool, data: &[u8]) {
        let Some(sid) = self.by_peer.get(&peer).cloned() else {
            return;
        };
        let Some(p) = self.participants.get(&sid) else {
            return;
        };
        if peer != p.publisher {
            return;
        }
        if !p.permissions.can_publish_data {
            tracing::warn!(participant = %sid, "dropped data from a participant without data permission");
            return;
        }
        if data.len() > MAX_DATA_PACKET {
            return;
        }
        let Ok(mut packet) = lk::DataPacket::decode(data) else {
            tracing::debug!(participant = %sid, "undecodable data packet dropped");
            return;
        };
        // The server states who sent it; a client cannot speak for another.
        packet.participant_identity = p.identity.to_string();
        packet.participant_sid = p.sid.to_string();
        let mut destinations = packet.destination_identities.clone();
        match packet.value.as_mut() {
            Some(lk::data_packet::Value::User(u)) => {
                u.participant_identity = p.identity.to_string();
                u.participant_sid = p.sid.to_string();
                destinations.extend(u.destination_identities.iter().cloned());
            }
            Some(lk::data_packet::Value::Speaker(_)) | Some(lk::data_packet::Value::Metrics(_)) | None => {
                return;
            }
            Some(_) => {}
        }
        let bytes = packet.encode_to_vec();
        let room = p.room.clone();
        // A client attributes data only to participants it knows: news of
        // the sender still waiting for the tick goes out first.
        if self
            .rooms
            .get(&room)
            .is_some_and(|r| r.pending_updates.iter().any(|u| u.subject == sid))
        {
            self.flush_room_updates(&room);
        }
        for o in self.room_members(&room) {
            if o == sid {
                continue;
            }
            let Some(op) = self.participants.get(&o) else {
                continue;
            };
            if !destinations.is_empty() && !destinations.iter().any(|d| d == op.identity.as_str()) {
                continue;
            }
            self.media.send_data(op.subscriber, reliable, &bytes);
        }
    }

    fn subscribe(&mut self, subscriber: &ParticipantSid, publisher: &ParticipantSid, track: &TrackSid) {
        let Some(pubp) = self.participants.get(publisher) else {
            return;
        };
        let Some(t) = pubp.tracks.get(track) else { return };
        let Some(mid) = t.mid.clone() else { return };
        let publisher_peer = pubp.publisher;
        let stream_id = format!("{}|{}", pubp.sid, t.sid);
        let Some(subp) = self.participants.get(subscriber) else {
            return;
        };
        if !subp.permissions.can_subscribe {
            return;
        }
        let wish = subp.wishes.get(track).copied().unwrap_or_default();
        if !wish.subscribed {
            return;
        }
        let sub_peer = subp.subscriber;
        if self
            .media
            .subscribe(sub_peer, publisher_peer, &mid, &stream_id, track.as_str())
            .is_ok()
        {
            self.media
                .set_downtrack(sub_peer, publisher_peer, &mid, wish.enabled, wish.quality);
        }
    }

    fn unsubscribe(&mut self, subscriber: &ParticipantSid, publisher: &ParticipantSid, track: &TrackSid) {
        let Some(pubp) = self.participants.get(publisher) else {
            return;
        };
        let Some(mid) = pubp.tracks.get(track).and_then(|t| t.mid.clone()) else {
            return;
        };
        let publisher_peer = pubp.publisher;
        let Some(subp) = self.participants.get(subscriber) else {
            return;
        };
        self.media.unsubscribe(subp.subscriber, publisher_peer, &mid);
    }

    fn apply_wish(
        &mut self,
        subscriber: &ParticipantSid,
        publisher: &ParticipantSid,
        track: &TrackSid,
        wish: Wish,
    ) {
        let Some(pubp) = self.participants.get(publisher) else {
            return;
        };
        let Some(mid) = pubp.tracks.get(track).and_then(|t| t.mid.clone()) else {
            return;
        };
        let publisher_peer = pubp.publisher;
        let Some(subp) = self.participants.get(subscriber) else {
            return;
        };
        self.media
            .set_downtrack(subp.subscriber, publisher_peer, &mid, wish.enabled, wish.quality);
    }

    /// Sends the subscriber connection a new offer if anything changed.
    /// Offers anew to the subscriber connections `peers` (a track they
    /// carried went away).
    fn renegotiate(&mut self, peers: Vec<PeerId>) {
        for peer in peers {
            if let Some(sid) = self.by_peer.get(&peer).cloned() {
                self.negotiate_subscriber(&sid);
            }
        }
    }

    fn negotiate_subscriber(&mut self, sid: &ParticipantSid) {
        let Some(p) = self.participants.get(sid) else {
            return;
        };
        let (peer, conn) = (p.subscriber, p.conn);
        let Some(conn) = conn else { return };
        let offer = self.media.create_offer(peer);
        self.send_offer(conn, sid, offer);
    }

    fn send_offer(
        &mut self,
        conn: ConnId,
        sid: &ParticipantSid,
        offer: Result<Option<String>, conclave_media::MediaError>,
    ) {
        match offer {
            Ok(Some(sdp)) => self.send(
                conn,
                Resp::Offer(lk::SessionDescription {
                    r#type: "offer".into(),
                    sdp,
                    ..Default::default()
                }),
            ),
            Ok(None) => {}
            Err(e) => tracing::debug!(participant = %sid, error = %e, "no subscriber offer"),
        }
    }

    fn remove_participant(&mut self, sid: &ParticipantSid, reason: lk::DisconnectReason) {
        let Some(p) = self.participants.remove(sid) else {
            return;
        };
        // Only connections that carried what the participant published need
        // a new offer: a room of 1000 asked every member's connection for
        // one on every leave.
        let mut affected = self.media.remove_peer(p.publisher);
        affected.extend(self.media.remove_peer(p.subscriber));
        self.by_peer.remove(&p.publisher);
        self.by_peer.remove(&p.subscriber);
        if let Some(conn) = p.conn {
            self.by_conn.remove(&conn);
            if reason != lk::DisconnectReason::ClientInitiated && reason != lk::DisconnectReason::SignalClose
            {
                self.send(
                    conn,
                    Resp::Leave(lk::LeaveRequest {
                        can_reconnect: false,
                        reason: reason as i32,
                        action: lk::leave_request::Action::Disconnect as i32,
                        ..Default::default()
                    }),
                );
            }
            self.out.push_back(Output::Close { conn });
        }
        let now = self.now.map(|n| n.mono);
        if let Some(room) = self.rooms.get_mut(&p.room) {
            room.participants.retain(|s| s != sid);
            if room.participants.is_empty()
                && let Some(now) = now
            {
                room.empty_since = now;
            }
        }
        tracing::info!(room = %p.room, participant = %sid, ?reason, "participant removed");
        if !p.permissions.hidden {
            let mut info = p.info(lk::participant_info::State::Disconnected);
            info.version = p.version + 1;
            info.disconnect_reason = reason as i32;
            info.tracks.clear();
            self.send_update_to_room(&p.room, sid, info, !p.tracks.is_empty());
        }
        self.renegotiate(affected);
    }

    /// A publisher stopped sending a track: it leaves the participant's info.
    fn forget_track(&mut self, peer: PeerId, mid: &conclave_media::MediaId) {
        let Some(sid) = self.by_peer.get(&peer).cloned() else {
            return;
        };
        let Some(p) = self.participants.get_mut(&sid) else {
            return;
        };
        let Some(track_sid) = p.track_by_mid(mid).map(|t| t.sid.clone()) else {
            return;
        };
        p.tracks.remove(&track_sid);
        p.version += 1;
        self.broadcast_participant(&sid, lk::participant_info::State::Active);
    }

    fn broadcast_participant(&mut self, sid: &ParticipantSid, state: lk::participant_info::State) {
        let Some(p) = self.participants.get(sid) else {
            return;
        };
        let info = p.info(state);
        let room = p.room.clone();
        let own_conn = p.conn;
        let hidden = p.permissions.hidden;
        let publishes = !p.tracks.is_empty();
        // The participant itself learns of its own changes (e.g. permissions).
        if let Some(conn) = own_conn {
            self.send(
                conn,
                Resp::Update(lk::ParticipantUpdate {
                    participants: vec![info.clone()],
                }),
            );
        }
        if hidden {
            return;
        }
        self.send_update_to_room(&room, sid, info, publishes);
    }

    /// Tells the other members of `room` of a change to `subject`. Unless
    /// `immediate` the news waits for the next tick and goes out with that
    /// of the others who changed meanwhile, one message per member: when
    /// many who only listen join at once, a message per pair would flood
    /// every member's connection (LiveKit's server batches them likewise).
    /// News sent at once replaces what waited about the same participant.
    fn send_update_to_room(
        &mut self,
        room: &RoomName,
        subject: &ParticipantSid,
        info: lk::ParticipantInfo,
        immediate: bool,
    ) {
        let Some(r) = self.rooms.get_mut(room) else { return };
        let waiting = r.pending_updates.iter().position(|u| &u.subject == subject);
        if !immediate {
            r.news_seq += 1;
            let seq = r.news_seq;
            match waiting {
                Some(i) => {
                    r.pending_updates[i].seq = seq;
                    r.pending_updates[i].info = info;
                }
                None => r.pending_updates.push(PendingUpdate {
                    subject: subject.clone(),
                    seq,
                    info,
                }),
            }
            return;
        }
        if let Some(i) = waiting {
            r.pending_updates.remove(i);
        }
        let conns: Vec<ConnId> = self
            .room_members(room)
            .iter()
            .filter(|s| *s != subject)
            .filter_map(|s| self.participants.get(s).and_then(|p| p.conn))
            .collect();
        self.send_to_all(
            conns,
            Resp::Update(lk::ParticipantUpdate {
                participants: vec![info],
            }),
        );
    }

    /// Sends every room's waiting news: one update per member, with what is
    /// newer than the member's roster, but its own.
    fn flush_updates(&mut self) {
        let rooms: Vec<RoomName> = self
            .rooms
            .values()
            .filter(|r| !r.pending_updates.is_empty())
            .map(|r| r.name.clone())
            .collect();
        for name in rooms {
            self.flush_room_updates(&name);
        }
    }

    /// Sends one room's waiting news (see [`Self::flush_updates`]).
    fn flush_room_updates(&mut self, room: &RoomName) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        let news = std::mem::take(&mut r.pending_updates);
        let members: Vec<(ParticipantSid, ConnId, u64)> = r
            .participants
            .iter()
            .filter_map(|s| {
                let p = self.participants.get(s)?;
                Some((s.clone(), p.conn?, p.news_seen))
            })
            .collect();
        // Most members get all of the news (those already there before
        // any of it): one message for them all, the rest one each.
        let mut everything = Vec::new();
        for (member, conn, seen) in members {
            let wanted = |u: &&PendingUpdate| u.subject != member && u.seq > seen;
            if news.iter().filter(wanted).count() == news.len() {
                everything.push(conn);
                continue;
            }
            let participants: Vec<lk::ParticipantInfo> =
                news.iter().filter(wanted).map(|u| u.info.clone()).collect();
            if !participants.is_empty() {
                self.send(conn, Resp::Update(lk::ParticipantUpdate { participants }));
            }
        }
        if !everything.is_empty() && !news.is_empty() {
            let participants = news.into_iter().map(|u| u.info).collect();
            self.send_to_all(everything, Resp::Update(lk::ParticipantUpdate { participants }));
        }
    }

    /// Everyone in a room `viewer` may see, but the viewer.
    fn roster(&self, room: &RoomName, viewer: &ParticipantSid) -> Vec<lk::ParticipantInfo> {
        self.room_members(room)
            .iter()
            .filter(|s| *s != viewer)
            .filter_map(|s| self.participants.get(s))
            .filter(|o| !o.permissions.hidden)
            .map(|o| o.info(lk::participant_info::State::Active))
            .collect()
    }

    fn join_response(&self, sid: &ParticipantSid) -> lk::JoinResponse {
        let Some(p) = self.participants.get(sid) else {
            return lk::JoinResponse::default();
        };
        let others = self.roster(&p.room, sid);
        lk::JoinResponse {
            room: self.room_info(&p.room),
            participant: Some(p.info(lk::participant_info::State::Joined)),
            other_participants: others,
            server_version: self.config.server_version.clone(),
            subscriber_primary: true,
            ping_timeout: PING_TIMEOUT_SECS,
            ping_interval: PING_INTERVAL_SECS,
            server_info: Some(lk::ServerInfo {
                edition: lk::server_info::Edition::Standard as i32,
                version: self.config.server_version.clone(),
                protocol: PROTOCOL_VERSION,
                node_id: self.config.node_id.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn room_info(&self, name: &RoomName) -> Option<lk::Room> {
        let room = self.rooms.get(name)?;
        let publishers = room
            .participants
            .iter()
            .filter_map(|s| self.participants.get(s))
            .filter(|p| p.tracks.values().any(|t| t.mid.is_some()))
            .count() as u32;
        Some(room.info(publishers))
    }

    /// The members of a room that must exist.
    fn existing_room_members(&self, room: &RoomName) -> Result<Vec<ParticipantSid>, SignalError> {
        Ok(self
            .rooms
            .get(room)
            .ok_or(SignalError::RoomNotFound)?
            .participants
            .clone())
    }

    fn room_members(&self, room: &RoomName) -> Vec<ParticipantSid> {
        self.rooms
            .get(room)
            .map(|r| r.participants.clone())
            .unwrap_or_default()
    }

    fn participant(&self, sid: &ParticipantSid) -> Result<&Participant, SignalError> {
        self.participants
            .get(sid)
            .map(|p| &**p)
            .ok_or(SignalError::ParticipantNotFound)
    }

    fn find(&self, room: &RoomName, identity: &ParticipantIdentity) -> Result<ParticipantSid, SignalError> {
        if !self.rooms.contains_key(room) {
            return Err(SignalError::RoomNotFound);
        }
        self.participants
            .values()
            .find(|p| &p.room == room && &p.identity == identity)
            .map(|p| p.sid.clone())
            .ok_or(SignalError::ParticipantNotFound)
    }

    /// The owner of a track in the same room as `asker`.
    fn track_owner(&self, asker: &ParticipantSid, track: &TrackSid) -> Option<ParticipantSid> {
        let room = &self.participants.get(asker)?.room;
        self.room_members(room).into_iter().find(|s| {
            self.participants
                .get(s)
                .is_some_and(|p| p.tracks.contains_key(track))
        })
    }

    fn send(&mut self, conn: ConnId, message: Resp) {
        self.out.push_back(Output::Signal {
            conn,
            message: Outgoing::new(message),
        });
    }

    /// Sends one message to every connection in `conns`, built and encoded
    /// once.
    fn send_to_all(&mut self, conns: impl IntoIterator<Item = ConnId>, message: Resp) {
        let message = Outgoing::new(message);
        for conn in conns {
            self.out.push_back(Output::Signal {
                conn,
                message: message.clone(),
            });
        }
    }
}

/// Rates a participant's connection from its links' recent loss and round
/// trip: excellent up to 2 % loss and 300 ms, good up to 8 % and 600 ms,
/// else poor; lost while its media connection is down. The score is a
/// rough 1..5 opinion score for display.
fn rate_connection(
    links: &[Option<conclave_media::LinkStats>],
    media_lost: bool,
    now: Instant,
) -> (lk::ConnectionQuality, f32) {
    if media_lost {
        return (lk::ConnectionQuality::Lost, 1.0);
    }
    let fresh = links
        .iter()
        .flatten()
        .filter(|l| now.saturating_duration_since(l.at) < Duration::from_secs(5));
    let (mut loss, mut rtt, mut jitter) = (0.0f32, Duration::ZERO, Duration::ZERO);
    for l in fresh {
        loss = loss.max(l.loss);
        rtt = rtt.max(l.rtt.unwrap_or_default());
        jitter = jitter.max(l.jitter.unwrap_or_default());
    }
    let score = (4.5 - loss * 25.0 - rtt.as_secs_f32() * 2.0 - jitter.as_secs_f32() * 10.0).clamp(1.0, 4.5);
    let quality = if loss <= 0.02 && rtt <= Duration::from_millis(300) && jitter <= Duration::from_millis(30)
    {
        lk::ConnectionQuality::Excellent
    } else if loss <= 0.08 && rtt <= Duration::from_millis(600) && jitter <= Duration::from_millis(100) {
        lk::ConnectionQuality::Good
    } else {
        lk::ConnectionQuality::Poor
    };
    (quality, score)
}

/// Extracts the `candidate` line from a trickled `RTCIceCandidateInit` JSON.
fn parse_candidate_init(json: &str) -> Option<String> {
    if json.len() > 4096 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let line = v.get("candidate")?.as_str()?;
    Some(line.strip_prefix("a=").unwrap_or(line).to_owned())
}

#[cfg(test)]
mod rating_tests {
    use super::*;
    use conclave_media::LinkStats;

    fn link(loss: f32, rtt_ms: u64, at: Instant) -> Option<LinkStats> {
        jittery(loss, rtt_ms, 2, at)
    }

    fn jittery(loss: f32, rtt_ms: u64, jitter_ms: u64, at: Instant) -> Option<LinkStats> {
        Some(LinkStats {
            loss,
            rtt: Some(Duration::from_millis(rtt_ms)),
            jitter: Some(Duration::from_millis(jitter_ms)),
            at,
        })
    }

    #[test]
    fn connection_ratings() {
        let now = Instant::now();
        let q = |links: &[Option<LinkStats>], lost| rate_connection(links, lost, now).0;
        assert_eq!(q(&[None, None], false), lk::ConnectionQuality::Excellent);
        assert_eq!(
            q(&[link(0.01, 40, now), None], false),
            lk::ConnectionQuality::Excellent
        );
        assert_eq!(
            q(&[link(0.0, 40, now), link(0.05, 40, now)], false),
            lk::ConnectionQuality::Good
        );
        assert_eq!(
            q(&[link(0.0, 450, now), None], false),
            lk::ConnectionQuality::Good
        );
        assert_eq!(q(&[link(0.3, 40, now), None], false), lk::ConnectionQuality::Poor);
        // Jitter counts too.
        assert_eq!(
            q(&[jittery(0.0, 40, 60, now)], false),
            lk::ConnectionQuality::Good
        );
        assert_eq!(
            q(&[jittery(0.0, 40, 150, now)], false),
            lk::ConnectionQuality::Poor
        );
        assert_eq!(q(&[link(0.0, 40, now), None], true), lk::ConnectionQuality::Lost);
        // Figures older than five seconds no longer count.
        let later = now + Duration::from_secs(6);
        assert_eq!(
            rate_connection(&[link(0.3, 40, now)], false, later).0,
            lk::ConnectionQuality::Excellent
        );
        let (_, good) = rate_connection(&[link(0.0, 20, now)], false, now);
        let (_, bad) = rate_connection(&[link(0.1, 20, now)], false, now);
        assert!(good > bad);
    }
}

#[cfg(test)]
mod tests;
