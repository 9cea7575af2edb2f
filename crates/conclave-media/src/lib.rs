//! The sans-IO media core of the Conclave SFU.
//!
//! [`MediaCore`] owns one [`str0m::Rtc`] per WebRTC peer connection and
//! forwards RTP between them. It never touches a socket and never reads the
//! clock: datagrams and the current time come in through `handle_*`, and
//! datagrams to send, events and the next wake-up time go out through
//! [`MediaCore::poll_output`].
//!
//! The core runs str0m in RTP mode: payloads are forwarded as they arrive,
//! so end-to-end encrypted media passes through untouched. Only RTP headers
//! and codec payload descriptors are read (for keyframes and layer switches).

mod alloc;
mod keyframe;
mod red;
mod rewrite;
mod sdp;
mod stun;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId, Reliability};
use str0m::format::{Codec, PayloadParams};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Rid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo};
use str0m::{Candidate, Event, IceConnectionState, Input, Output as RtcOutput, Rtc};

pub use keyframe::{VideoCodec, starts_keyframe};
pub use red::{prefer_red, primary as red_primary};
pub use rewrite::{Rewriter, Rewritten};

/// Label of the ordered, reliable data channel (the LiveKit convention).
pub const RELIABLE_LABEL: &str = "_reliable";
/// Label of the unordered data channel without retransmissions.
pub const LOSSY_LABEL: &str = "_lossy";

/// How often at most a keyframe is requested from one publisher stream.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);
/// Weight of a new audio level sample in the smoothed level.
const LEVEL_SMOOTHING: f32 = 0.1;
/// An audio level older than this counts as silence (DTX sends nothing).
const LEVEL_STALE: Duration = Duration::from_millis(500);
/// Where the congestion controller starts toward a subscriber before
/// feedback arrives: enough for one camera at the middle layer and audio.
const INITIAL_DOWNLINK_ESTIMATE: str0m::bwe::Bitrate = str0m::bwe::Bitrate::kbps(1_000);
/// How often layer bitrates are measured and downlinks shared out.
const ALLOCATION_INTERVAL: Duration = Duration::from_millis(500);
/// A downlink estimate that moves by more than 1/this of the one its
/// downlink was shared out by is shared out again at once.
const ESTIMATE_STEP_DIVISOR: u64 = 10;
/// A simulcast layer without packets for this long is considered stopped.
const LAYER_IDLE: Duration = Duration::from_millis(1500);
/// Packets kept per outgoing video stream to answer NACKs, and for how long.
/// Each kept packet costs its subscriber's connection a slot of about 430
/// bytes (the payload is shared with the other subscribers), so the window
/// is held to what a NACK can still usefully ask for: a receiver asks within
/// a few round trips, and WebRTC senders keep max(1 s, 3 RTT). The count
/// only bounds bursts: the top layer sends a few hundred packets a second.
const RTX_CACHE_PACKETS: usize = 1024;
const RTX_CACHE_AGE: Duration = Duration::from_millis(1500);
/// Resends stop for a moment when they exceed this share of a stream's bytes
/// in the last second: enough to repair 30% loss, and a bound against a
/// subscriber that asks for everything again.
const RTX_RATIO_CAP: f32 = 0.5;

/// Timers found already due while draining a connection that run at once
/// (see `MediaCore::drain`), beyond two for each packet written to it since
/// it was last drained; the rest wait for `handle_timeout`.
const MAX_DUE_NOW_ROUNDS: usize = 8;

/// Identifies one peer connection inside a [`MediaCore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer{}", self.0)
    }
}

/// A media section (m-line) of one peer connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MediaId(String);

impl MediaId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<Mid> for MediaId {
    fn from(m: Mid) -> Self {
        MediaId(m.to_string())
    }
}

impl fmt::Display for MediaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a peer connection is for, seen from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The client sends media; the client makes the offers.
    Publisher,
    /// The server sends media; the server makes the offers.
    Subscriber,
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Audio,
    Video,
}

impl From<MediaKind> for Kind {
    fn from(k: MediaKind) -> Self {
        match k {
            MediaKind::Audio => Kind::Audio,
            MediaKind::Video => Kind::Video,
        }
    }
}

impl From<Kind> for MediaKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Audio => MediaKind::Audio,
            Kind::Video => MediaKind::Video,
        }
    }
}

/// Simulcast quality a subscriber wants at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Quality {
    Low = 0,
    Medium = 1,
    High = 2,
}

/// Errors of the media core. Display texts are safe to show to clients.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("unknown peer connection")]
    UnknownPeer,
    #[error("unknown media section")]
    UnknownMedia,
    #[error("the session description could not be parsed")]
    BadSdp,
    #[error("the session description was refused")]
    SdpRefused,
    #[error("an answer arrived without an offer")]
    NoPendingOffer,
    #[error("the ICE candidate could not be parsed")]
    BadCandidate,
    #[error("the datagram belongs to no peer")]
    NotForUs,
}

/// Something the media core wants the caller to do or know.
#[derive(Debug)]
pub enum Output {
    /// Send `contents` from the local address `source` to `destination`.
    Transmit {
        source: SocketAddr,
        destination: SocketAddr,
        contents: Vec<u8>,
    },
    /// Something happened on a peer connection.
    Event(MediaEvent),
    /// Call [`MediaCore::handle_timeout`] at this time (or earlier on input).
    Timeout(Instant),
}

/// Events for the signalling layer.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// ICE and DTLS are up.
    Connected(PeerId),
    /// ICE lost the peer; it may come back (network change) or not.
    Disconnected(PeerId),
    /// The peer failed for good (fatal protocol error) and was removed.
    Failed {
        peer: PeerId,
        /// Subscribers that received its tracks: their connections need a
        /// new offer.
        renegotiate: Vec<PeerId>,
    },
    /// A publisher's offer added a media section that sends to us.
    TrackAdded {
        peer: PeerId,
        mid: MediaId,
        kind: Kind,
        /// The `msid` track id of the section: the client's track id.
        track_id: String,
        /// Simulcast layers by rid, empty without simulcast.
        rids: Vec<String>,
    },
    /// A publisher stopped sending on a media section.
    TrackRemoved {
        peer: PeerId,
        mid: MediaId,
        /// Subscribers that received it: their connections need a new offer.
        renegotiate: Vec<PeerId>,
    },
    /// A data channel message arrived.
    Data {
        peer: PeerId,
        reliable: bool,
        data: Vec<u8>,
    },
    /// A subscriber's downlink has no room for a track (or room again).
    DowntrackPaused {
        peer: PeerId,
        track_id: String,
        paused: bool,
    },
    /// The first packet was forwarded to a subscriber; `track_id` is the
    /// track id given to [`MediaCore::subscribe`].
    DowntrackStarted { peer: PeerId, track_id: String },
}

/// The recent quality of one peer connection's link, from RTCP reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkStats {
    /// Worst fraction of packets lost (0..1) over the connection's streams.
    pub loss: f32,
    /// Round-trip time, when known.
    pub rtt: Option<Duration>,
    /// Worst interarrival jitter (RFC 3550) over the connection's streams,
    /// when known.
    pub jitter: Option<Duration>,
    /// When the figures were last updated.
    pub at: Instant,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub rtp_forwarded: u64,
    /// NACKs received from subscribers.
    pub nacks_received: u64,
    /// PLIs and FIRs received from subscribers.
    pub keyframe_requests_received: u64,
    /// PLIs sent to publishers.
    pub keyframe_requests_sent: u64,
    /// Audio packets received with RFC 2198 redundancy (RED).
    pub red_packets_in: u64,
}

impl std::ops::AddAssign for Counters {
    /// Adds another core's counts (one core per engine).
    fn add_assign(&mut self, o: Self) {
        // Destructured: a new counter cannot be forgotten here.
        let Self {
            packets_in,
            bytes_in,
            packets_out,
            bytes_out,
            rtp_forwarded,
            nacks_received,
            keyframe_requests_received,
            keyframe_requests_sent,
            red_packets_in,
        } = o;
        self.packets_in += packets_in;
        self.bytes_in += bytes_in;
        self.packets_out += packets_out;
        self.bytes_out += bytes_out;
        self.rtp_forwarded += rtp_forwarded;
        self.nacks_received += nacks_received;
        self.keyframe_requests_received += keyframe_requests_received;
        self.keyframe_requests_sent += keyframe_requests_sent;
        self.red_packets_in += red_packets_in;
    }
}

/// Configuration of the media core.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Local host candidates: the addresses clients reach the media socket at.
    pub candidates: Vec<SocketAddr>,
}

/// The forwarding core: peer connections and the routes between them.
pub struct MediaCore {
    config: MediaConfig,
    next_peer: u64,
    /// Boxed: a connection's state is about 10 KiB, and a map of it inline
    /// would hold that much in every spare slot and copy it all on growth.
    peers: HashMap<PeerId, Box<Peer>>,
    /// Publisher connections not offered yet. Their str0m state is built
    /// by the client's first offer: one who only listens never sends one,
    /// and an idle connection would cost as much memory as a used one.
    unoffered: HashSet<PeerId>,
    /// Last known remote address of each peer, for demultiplexing.
    by_addr: HashMap<SocketAddr, PeerId>,
    /// Each peer's local ICE username fragment, to route connectivity checks
    /// from addresses not seen before.
    by_ufrag: HashMap<String, PeerId>,
    /// Published tracks, by publisher peer and media section.
    sources: HashMap<(PeerId, Mid), Source>,
    /// Subscriber media section -> the source it forwards.
    downtrack_source: HashMap<(PeerId, Mid), (PeerId, Mid)>,
    /// Peers with work to carry out (outputs to poll).
    dirty: HashSet<PeerId>,
    /// Peers taken from `dirty` and not drained yet, the next at the end.
    draining: Vec<PeerId>,
    /// Every peer's next timer, earliest first. Entries whose time is no
    /// longer the peer's `next_timeout` are stale and skipped, so a timer
    /// costs O(log n) and never a scan over every peer.
    timers: BinaryHeap<Reverse<(Instant, PeerId)>>,
    out: VecDeque<Output>,
    counters: Counters,
    /// Last cumulative (nacks, keyframe requests) per outgoing stream.
    egress_seen: HashMap<(PeerId, Mid, Option<Rid>), (u64, u64)>,
    /// One DTLS certificate for every connection, made once: generating a
    /// key pair per connection would dominate the cost of a join.
    dtls_cert: Option<str0m::config::DtlsCert>,
    /// The crypto of every connection: one DTLS configuration for all
    /// (`conclave-dtls`).
    crypto: std::sync::Arc<str0m::crypto::CryptoProvider>,
    last_allocation: Option<Instant>,
    /// The latest time given with an input.
    now: Instant,
}

struct Peer {
    /// Boxed apart from the rest: with str0m's `Rtc` (about 10 KiB) inline
    /// a connection was 10 384 bytes, just over jemalloc's 10 KiB size
    /// class, and took 12 KiB; apart, the two take 10.3 KiB.
    rtc: Box<Rtc>,
    role: Role,
    /// The outstanding offer and its SDP, kept only until it is answered: a
    /// subscriber's offer lists every track it receives.
    pending_offer: Option<(SdpPendingOffer, String)>,
    connected: bool,
    next_timeout: Option<Instant>,
    channels: HashMap<ChannelId, bool>,
    reliable: Option<ChannelId>,
    lossy: Option<ChannelId>,
    needs_channels: bool,
    /// The congestion controller's estimate of the downlink (bit/s).
    estimate: Option<u64>,
    /// The estimate the downlink was last shared out by.
    shared_for: Option<u64>,
    /// Link quality from the last stats round.
    link: Option<LinkStats>,
    /// The next offer restarts ICE.
    ice_restart: bool,
    /// Media sections to switch off in the next offer.
    pending_inactive: Vec<Mid>,
    /// An offer must follow once the outstanding one is answered.
    renegotiate: bool,
    /// Sources with a track to this subscriber that no offer has carried
    /// yet, so that an offer looks at those sources only and not at every
    /// track of the process.
    new_downtracks: Vec<(PeerId, Mid)>,
    /// RTP packets written since the connection was last drained: str0m's
    /// pacer lets each out only after a round of its timers.
    unsent: usize,
}

struct Source {
    kind: Kind,
    /// Higher goes first when a downlink is shared out.
    priority: u8,
    /// Smoothed audio level (linear, 0..1) from the RFC 6464 header extension.
    level: f32,
    last_level_at: Option<Instant>,
    /// Simulcast layers with their rank (see `rid_rank`), lowest first;
    /// empty without simulcast.
    ranked: Vec<(usize, Rid)>,
    /// Last time a packet arrived per layer (`None` = no simulcast).
    last_packet: HashMap<Option<Rid>, Instant>,
    last_keyframe_request: HashMap<Option<Rid>, Instant>,
    /// Bytes received per layer since the last measurement, and the
    /// smoothed bit rate (bit/s).
    rates: HashMap<Option<Rid>, (u64, Option<u64>)>,
    /// Muted by its owner or a moderator: nothing is forwarded.
    muted: bool,
    downtracks: Vec<Downtrack>,
}

struct Downtrack {
    peer: PeerId,
    /// `None` until the media section is in an offer.
    mid: Option<Mid>,
    stream_id: String,
    track_id: String,
    enabled: bool,
    max_quality: Quality,
    /// The highest layer the subscriber's estimated downlink allows.
    bwe_cap: Quality,
    /// The downlink has no room for this track at all.
    bwe_paused: bool,
    current: Option<Option<Rid>>,
    rewriter: rewrite::Rewriter,
    vp8: rewrite::Vp8Rewriter,
    pt_map: HashMap<u8, Option<OutPt>>,
    started: bool,
}

/// How a publisher's payload type goes out to one subscriber.
#[derive(Debug, Clone, Copy)]
struct OutPt {
    pt: u8,
    /// The subscriber did not negotiate RED: send only the primary block.
    unwrap_red: bool,
}

impl MediaCore {
    /// A core with no peers. `start` is the current time: the core never
    /// reads the clock, every later time comes with an input.
    pub fn new(config: MediaConfig, start: Instant) -> Self {
        let crypto = conclave_dtls::provider();
        Self {
            config,
            next_peer: 1,
            peers: HashMap::new(),
            unoffered: HashSet::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            sources: HashMap::new(),
            downtrack_source: HashMap::new(),
            dirty: HashSet::new(),
            draining: Vec::new(),
            timers: BinaryHeap::new(),
            out: VecDeque::new(),
            counters: Counters::default(),
            egress_seen: HashMap::new(),
            dtls_cert: crypto.dtls_provider.generate_certificate(),
            crypto,
            last_allocation: None,
            now: start,
        }
    }

    /// Traffic counters since start.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Smoothed audio level (linear amplitude, 0..1) of every published
    /// audio track that carried a level recently.
    pub fn audio_levels(&self, now: Instant) -> Vec<(PeerId, MediaId, f32)> {
        self.sources
            .iter()
            .filter(|(_, s)| s.kind == Kind::Audio)
            .filter(|(_, s)| {
                s.last_level_at
                    .is_some_and(|t| now.saturating_duration_since(t) < LEVEL_STALE)
            })
            .map(|((peer, mid), s)| (*peer, MediaId::from(*mid), s.level))
            .collect()
    }

    /// Sets how much a published track matters when a subscriber's downlink
    /// is shared out (e.g. screen share above the active speaker above
    /// thumbnails).
    pub fn set_priority(&mut self, publisher: PeerId, mid: &MediaId, priority: u8) {
        if let Some(src) = self.sources.get_mut(&(publisher, Mid::from(mid.as_str()))) {
            src.priority = priority;
        }
    }

    /// Stops (or resumes) forwarding a published track. While muted nothing
    /// of it reaches a subscriber, whatever the publisher sends; forwarding
    /// resumes continuously, video at the next keyframe.
    pub fn set_muted(&mut self, publisher: PeerId, mid: &MediaId, muted: bool) {
        if let Some(src) = self.sources.get_mut(&(publisher, Mid::from(mid.as_str()))) {
            src.muted = muted;
            if muted {
                for d in &mut src.downtracks {
                    d.current = None;
                }
            }
        }
    }

    /// The highest quality any subscriber currently wants of a published
    /// track; `None` when nobody receives it.
    pub fn wanted_quality(&self, publisher: PeerId, mid: &MediaId) -> Option<Quality> {
        let src = self.sources.get(&(publisher, Mid::from(mid.as_str())))?;
        src.downtracks
            .iter()
            .filter(|d| d.enabled && d.mid.is_some())
            .map(|d| d.max_quality)
            .max()
    }

    /// The recent link quality of a peer connection.
    pub fn link_stats(&self, peer: PeerId) -> Option<LinkStats> {
        self.peers.get(&peer).and_then(|p| p.link)
    }

    /// Number of peer connections, those not negotiated yet included.
    pub fn peer_count(&self) -> usize {
        self.peers.len() + self.unoffered.len()
    }

    /// Creates a peer connection. A subscriber connection gets the two data
    /// channels right away; its first offer comes from [`Self::create_offer`].
    /// A publisher connection takes no memory until the client's first
    /// offer reaches [`Self::accept_offer`].
    pub fn add_peer(&mut self, now: Instant, role: Role) -> PeerId {
        let id = PeerId(self.next_peer);
        self.next_peer += 1;
        self.now = self.now.max(now);
        match role {
            Role::Publisher => {
                self.unoffered.insert(id);
            }
            Role::Subscriber => self.build_peer(id, role),
        }
        id
    }

    /// Builds the str0m side of a peer connection, as of the latest input's
    /// time.
    fn build_peer(&mut self, id: PeerId, role: Role) {
        let now = self.now;
        let mut builder = Rtc::builder().set_crypto_provider(self.crypto.clone());
        if let Some(cert) = &self.dtls_cert {
            builder = builder.set_dtls_cert(cert.clone());
        }
        let mut rtc = builder
            .set_rtp_mode(true)
            .set_ice_lite(true)
            // Opus with RFC 2198 redundancy where the client offers it.
            .enable_opus(true, true)
            .enable_bwe((role == Role::Subscriber).then_some(INITIAL_DOWNLINK_ESTIMATE))
            .set_stats_interval(Some(Duration::from_secs(1)))
            .build(now);
        for addr in &self.config.candidates {
            match Candidate::host(*addr, "udp") {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(e) => tracing::warn!(%e, "unusable local candidate"),
            }
        }
        let mut peer = Peer {
            rtc: Box::new(rtc),
            role,
            pending_offer: None,
            connected: false,
            next_timeout: None,
            channels: HashMap::new(),
            reliable: None,
            lossy: None,
            needs_channels: false,
            estimate: None,
            shared_for: None,
            link: None,
            ice_restart: false,
            pending_inactive: Vec::new(),
            renegotiate: false,
            new_downtracks: Vec::new(),
            unsent: 0,
        };
        if role == Role::Subscriber {
            // The data channels go into the first offer.
            peer.needs_channels = true;
        }
        let ufrag = peer.rtc.direct_api().local_ice_credentials().ufrag;
        self.by_ufrag.insert(ufrag, id);
        self.peers.insert(id, Box::new(peer));
        self.dirty.insert(id);
        self.process();
    }
}

impl MediaCore {
    /// Removes a peer connection and everything routed to or from it.
    /// Returns the subscribers that received tracks it published: their
    /// connections need a new offer.
    pub fn remove_peer(&mut self, peer: PeerId) -> Vec<PeerId> {
        self.unoffered.remove(&peer);
        if let Some(mut p) = self.peers.remove(&peer) {
            p.rtc.disconnect();
        }
        self.by_addr.retain(|_, v| *v != peer);
        self.by_ufrag.retain(|_, v| *v != peer);
        self.dirty.remove(&peer);
        let published: Vec<(PeerId, Mid)> = self.sources.keys().filter(|k| k.0 == peer).copied().collect();
        let mut affected = Vec::new();
        for key in published {
            affected.extend(self.remove_source(key));
        }
        for src in self.sources.values_mut() {
            src.downtracks.retain(|d| d.peer != peer);
        }
        self.downtrack_source.retain(|k, _| k.0 != peer);
        self.egress_seen.retain(|k, _| k.0 != peer);
        affected.sort_unstable();
        affected.dedup();
        affected
    }

    /// Applies a client's offer and returns the answer.
    /// Answers a publisher's offer. Audio tracks listed in `red_tracks` (by
    /// their `a=msid` track id) are asked to send Opus in RED.
    pub fn accept_offer(
        &mut self,
        peer: PeerId,
        sdp: &str,
        red_tracks: &[String],
    ) -> Result<String, MediaError> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|_| MediaError::BadSdp)?;
        if self.unoffered.remove(&peer) {
            self.build_peer(peer, Role::Publisher);
        }
        let p = self.peers.get_mut(&peer).ok_or(MediaError::UnknownPeer)?;
        let answer = p.rtc.sdp_api().accept_offer(offer).map_err(|e| {
            tracing::debug!(%peer, error = %e, "offer refused");
            MediaError::SdpRefused
        })?;
        let answer = red::prefer_red(&answer.to_sdp_string(), sdp, red_tracks);
        let answer = sdp::twcc_for_video_only(&answer);
        // An offer that restarts ICE gives us new credentials too.
        note_ufrags(&mut self.by_ufrag, peer, &answer);
        self.dirty.insert(peer);
        self.process();
        Ok(answer)
    }

    /// Makes an offer for a server-offering (subscriber) connection if there
    /// is anything to negotiate and no offer is outstanding. While one is
    /// outstanding the new changes wait for its answer.
    pub fn create_offer(&mut self, peer: PeerId) -> Result<Option<String>, MediaError> {
        let p = self.peers.get_mut(&peer).ok_or(MediaError::UnknownPeer)?;
        if p.pending_offer.is_some() {
            p.renegotiate = true;
            return Ok(None);
        }
        let mut api = p.rtc.sdp_api();
        if std::mem::take(&mut p.ice_restart) {
            api.ice_restart(true);
        }
        if p.needs_channels {
            api.add_channel_with_config(ChannelConfig {
                label: RELIABLE_LABEL.into(),
                ordered: true,
                reliability: Reliability::Reliable,
                ..Default::default()
            });
            api.add_channel_with_config(ChannelConfig {
                label: LOSSY_LABEL.into(),
                ordered: false,
                reliability: Reliability::MaxRetransmits { retransmits: 0 },
                ..Default::default()
            });
        }
        for mid in p.pending_inactive.drain(..) {
            api.set_direction(mid, Direction::Inactive);
        }
        let mut added = Vec::new();
        for key in std::mem::take(&mut p.new_downtracks) {
            let Some(src) = self.sources.get_mut(&key) else {
                continue;
            };
            for d in src
                .downtracks
                .iter_mut()
                .filter(|d| d.peer == peer && d.mid.is_none())
            {
                let mid = api.add_media(
                    src.kind.into(),
                    Direction::SendOnly,
                    Some(d.stream_id.clone()),
                    Some(d.track_id.clone()),
                    None,
                );
                d.mid = Some(mid);
                added.push((mid, key));
            }
        }
        let applied = api.apply();
        p.needs_channels = false;
        p.renegotiate = false;
        for (mid, key) in added {
            self.downtrack_source.insert((peer, mid), key);
        }
        let Some((offer, pending)) = applied else {
            return Ok(None);
        };
        let sdp = sdp::twcc_for_video_only(&offer.to_sdp_string());
        p.pending_offer = Some((pending, sdp.clone()));
        note_ufrags(&mut self.by_ufrag, peer, &sdp);
        Ok(Some(sdp))
    }

    /// For a client that lost its signalling connection and came back: the
    /// outstanding offer again if one was never answered, else a new offer
    /// with fresh ICE credentials so the client can reach us from a new
    /// network address.
    pub fn restart_offer(&mut self, peer: PeerId) -> Result<Option<String>, MediaError> {
        let p = self.peers.get_mut(&peer).ok_or(MediaError::UnknownPeer)?;
        if let Some((_, sdp)) = &p.pending_offer {
            return Ok(Some(sdp.clone()));
        }
        p.ice_restart = true;
        self.create_offer(peer)
    }

    /// Applies the client's answer to our last offer. Returns whether a new
    /// offer is needed for changes made meanwhile.
    pub fn accept_answer(&mut self, peer: PeerId, sdp: &str) -> Result<bool, MediaError> {
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|_| MediaError::BadSdp)?;
        let p = self.peers.get_mut(&peer).ok_or(MediaError::UnknownPeer)?;
        let (pending, _) = p.pending_offer.take().ok_or(MediaError::NoPendingOffer)?;
        p.rtc.sdp_api().accept_answer(pending, answer).map_err(|e| {
            tracing::debug!(%peer, error = %e, "answer refused");
            MediaError::SdpRefused
        })?;
        let again = p.renegotiate;
        self.dirty.insert(peer);
        self.process();
        Ok(again)
    }

    /// Adds a trickled remote ICE candidate (`candidate:...` line).
    pub fn add_remote_candidate(&mut self, peer: PeerId, candidate: &str) -> Result<(), MediaError> {
        let line = candidate.trim();
        if line.is_empty() {
            // End-of-candidates marker.
            return Ok(());
        }
        let c = Candidate::from_sdp_string(line).map_err(|_| MediaError::BadCandidate)?;
        let p = self.peers.get_mut(&peer).ok_or(MediaError::UnknownPeer)?;
        p.rtc.add_remote_candidate(c);
        self.dirty.insert(peer);
        self.process();
        Ok(())
    }

    /// Routes a published track to a subscriber connection. The media
    /// section is created in the next [`Self::create_offer`].
    pub fn subscribe(
        &mut self,
        subscriber: PeerId,
        publisher: PeerId,
        source_mid: &MediaId,
        stream_id: &str,
        track_id: &str,
    ) -> Result<(), MediaError> {
        let p = self.peers.get_mut(&subscriber).ok_or(MediaError::UnknownPeer)?;
        let key = (publisher, Mid::from(source_mid.as_str()));
        let src = self.sources.get_mut(&key).ok_or(MediaError::UnknownMedia)?;
        if src.downtracks.iter().any(|d| d.peer == subscriber) {
            return Ok(());
        }
        let clock_rate = match src.kind {
            Kind::Audio => 48_000,
            Kind::Video => 90_000,
        };
        src.downtracks.push(Downtrack {
            peer: subscriber,
            mid: None,
            stream_id: stream_id.to_owned(),
            track_id: track_id.to_owned(),
            enabled: true,
            max_quality: Quality::High,
            bwe_cap: Quality::High,
            bwe_paused: false,
            current: None,
            rewriter: rewrite::Rewriter::new(clock_rate),
            vp8: rewrite::Vp8Rewriter::default(),
            pt_map: HashMap::new(),
            started: false,
        });
        p.new_downtracks.push(key);
        Ok(())
    }

    /// Stops routing a track to a subscriber; its media section goes inactive
    /// in the next offer.
    pub fn unsubscribe(&mut self, subscriber: PeerId, publisher: PeerId, source_mid: &MediaId) {
        let key = (publisher, Mid::from(source_mid.as_str()));
        let Some(src) = self.sources.get_mut(&key) else {
            return;
        };
        let mut removed = Vec::new();
        src.downtracks.retain(|d| {
            if d.peer == subscriber {
                removed.push(d.mid);
                false
            } else {
                true
            }
        });
        for mid in removed.into_iter().flatten() {
            self.downtrack_source.remove(&(subscriber, mid));
            if let Some(p) = self.peers.get_mut(&subscriber) {
                p.pending_inactive.push(mid);
            }
        }
    }

    /// Sets what a subscriber wants of one track: whether to receive it at all
    /// and, for simulcast video, the highest quality.
    pub fn set_downtrack(
        &mut self,
        subscriber: PeerId,
        publisher: PeerId,
        source_mid: &MediaId,
        enabled: bool,
        max_quality: Quality,
    ) {
        let key = (publisher, Mid::from(source_mid.as_str()));
        if let Some(src) = self.sources.get_mut(&key) {
            for d in src.downtracks.iter_mut().filter(|d| d.peer == subscriber) {
                d.enabled = enabled;
                d.max_quality = max_quality;
            }
        }
    }

    /// Sends a data channel message. Returns false when it could not be queued
    /// (channel not open, or buffer full).
    pub fn send_data(&mut self, peer: PeerId, reliable: bool, data: &[u8]) -> bool {
        let Some(p) = self.peers.get_mut(&peer) else {
            return false;
        };
        let id = if reliable { p.reliable } else { p.lossy };
        let Some(id) = id else { return false };
        let Some(mut ch) = p.rtc.channel(id) else {
            return false;
        };
        let ok = ch.write(true, data).unwrap_or(false);
        self.dirty.insert(peer);
        ok
    }

    /// Feeds one received UDP datagram.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &[u8],
    ) -> Result<(), MediaError> {
        self.now = self.now.max(now);
        self.counters.packets_in += 1;
        self.counters.bytes_in += contents.len() as u64;
        let recv =
            Receive::new(Protocol::Udp, source, destination, contents).map_err(|_| MediaError::NotForUs)?;
        let input = Input::Receive(now, recv);
        let known = self
            .by_addr
            .get(&source)
            .copied()
            .filter(|id| self.peers.get(id).is_some_and(|p| p.rtc.accepts(&input)));
        let id = match known {
            Some(id) => id,
            None => {
                // Only a connectivity check can come from a new address; it
                // names our side's ICE username fragment.
                let found = stun::local_ufrag(contents)
                    .and_then(|u| self.by_ufrag.get(u).copied())
                    .filter(|id| self.peers.get(id).is_some_and(|p| p.rtc.accepts(&input)))
                    .ok_or(MediaError::NotForUs)?;
                self.by_addr.insert(source, found);
                found
            }
        };
        let p = self.peers.get_mut(&id).ok_or(MediaError::UnknownPeer)?;
        if let Err(e) = p.rtc.handle_input(input) {
            tracing::debug!(peer = %id, error = %e, "input refused");
        }
        // Only this connection now: what it forwards waits in the
        // subscribers until `poll_output`, so that the packets of a burst
        // of datagrams leave each subscriber in one drain.
        self.drain(id);
        Ok(())
    }

    /// Drives timers. Call at (or after) the time of the last `Output::Timeout`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        match self.last_allocation {
            None => self.last_allocation = Some(now),
            Some(t) if now.saturating_duration_since(t) >= ALLOCATION_INTERVAL => {
                self.allocate(now, now.saturating_duration_since(t));
                self.last_allocation = Some(now);
            }
            Some(_) => {}
        }
        while let Some(&Reverse((t, id))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            if p.next_timeout != Some(t) {
                continue;
            }
            // Polled again (and given a new timer) when drained below.
            p.next_timeout = None;
            if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                tracing::debug!(peer = %id, error = %e, "timeout handling failed");
            }
            self.dirty.insert(id);
        }
        // What the timers produced is drained by `poll_output`, one
        // connection at a time.
    }

    /// The earliest pending timer, dropping stale heap entries on the way.
    fn next_timer(&mut self) -> Option<Instant> {
        while let Some(&Reverse((t, id))) = self.timers.peek() {
            if self.peers.get(&id).is_some_and(|p| p.next_timeout == Some(t)) {
                return Some(t);
            }
            self.timers.pop();
        }
        None
    }

    /// Drops every stale timer entry (they pile up when timers keep moving
    /// before they are due).
    fn rebuild_timers(&mut self) {
        self.timers = self
            .peers
            .iter()
            .filter_map(|(id, p)| Some(Reverse((p.next_timeout?, *id))))
            .collect();
    }

    /// The next thing to do: a datagram to send, an event, or when to call
    /// [`Self::handle_timeout`].
    pub fn poll_output(&mut self) -> Output {
        // One connection is drained at a time, and only when nothing is
        // left to hand out: in a fan-out the first receivers' datagrams can
        // leave while the others are still being drained, instead of each
        // waiting for the encryption of every copy.
        loop {
            if let Some(o) = self.out.pop_front() {
                return o;
            }
            match self.next_to_drain() {
                Some(id) => self.drain(id),
                None => break,
            }
        }
        let next = self.next_timer();
        Output::Timeout(next.unwrap_or(self.now + Duration::from_secs(1)))
    }

    /// Drains every peer with pending work until none is left.
    fn process(&mut self) {
        while let Some(id) = self.next_to_drain() {
            self.drain(id);
        }
    }

    /// The next connection with pending work. Those marked meanwhile wait
    /// for the ones already taken, so each is drained once per generation
    /// without rescanning the set.
    fn next_to_drain(&mut self) -> Option<PeerId> {
        if self.draining.is_empty() {
            self.draining.extend(self.dirty.drain());
        }
        self.draining.pop()
    }

    fn drain(&mut self, id: PeerId) {
        let mut due_now = 0;
        let mut unsent = match self.peers.get_mut(&id) {
            Some(p) => std::mem::take(&mut p.unsent),
            None => return,
        };
        let budget = MAX_DUE_NOW_ROUNDS + 2 * unsent;
        // str0m's pacer releases a written packet only after a round of its
        // timers, and asks for another round as soon as it released one.
        // For the packets written since the last drain that round runs
        // before the poll, rather than after a poll that would only
        // announce it.
        let mut timers_first = unsent > 0;
        loop {
            let Some(p) = self.peers.get_mut(&id) else { return };
            if std::mem::take(&mut timers_first) && due_now < budget {
                due_now += 1;
                if let Err(e) = p.rtc.handle_input(Input::Timeout(self.now)) {
                    tracing::debug!(peer = %id, error = %e, "timeout handling failed");
                }
            }
            match p.rtc.poll_output() {
                Ok(RtcOutput::Timeout(t)) => {
                    // A timer already due (the pacer releasing a packet just
                    // written, a stream's report) runs now rather than after a
                    // round through the caller: that round would add a wake-up
                    // and the timer's granularity to every forwarded packet.
                    // Bounded, so that a connection whose timer never moves
                    // cannot spin.
                    if t <= self.now && due_now < budget {
                        due_now += 1;
                        if let Err(e) = p.rtc.handle_input(Input::Timeout(self.now)) {
                            tracing::debug!(peer = %id, error = %e, "timeout handling failed");
                        }
                        continue;
                    }
                    if p.next_timeout != Some(t) {
                        p.next_timeout = Some(t);
                        self.timers.push(Reverse((t, id)));
                        if self.timers.len() > 4 * self.peers.len() + 1024 {
                            self.rebuild_timers();
                        }
                    }
                    return;
                }
                Ok(RtcOutput::Transmit(t)) => {
                    if unsent > 0 {
                        unsent -= 1;
                        timers_first = true;
                    }
                    let contents: Vec<u8> = t.contents.into();
                    self.counters.packets_out += 1;
                    self.counters.bytes_out += contents.len() as u64;
                    self.out.push_back(Output::Transmit {
                        source: t.source,
                        destination: t.destination,
                        contents,
                    });
                }
                Ok(RtcOutput::Event(e)) => self.on_event(id, e),
                Err(e) => {
                    tracing::info!(peer = %id, error = %e, "peer connection failed");
                    let renegotiate = self.remove_peer(id);
                    self.out.push_back(Output::Event(MediaEvent::Failed {
                        peer: id,
                        renegotiate,
                    }));
                    return;
                }
            }
        }
    }

    fn emit(&mut self, e: MediaEvent) {
        self.out.push_back(Output::Event(e));
    }

    fn on_event(&mut self, id: PeerId, ev: Event) {
        match ev {
            Event::Connected => {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.connected = true;
                }
                self.emit(MediaEvent::Connected(id));
            }
            Event::IceConnectionStateChange(state) => {
                let Some(p) = self.peers.get_mut(&id) else { return };
                match state {
                    IceConnectionState::Disconnected if p.connected => {
                        p.connected = false;
                        self.emit(MediaEvent::Disconnected(id));
                    }
                    IceConnectionState::Connected | IceConnectionState::Completed
                        if !p.connected && p.rtc.is_connected() =>
                    {
                        p.connected = true;
                        self.emit(MediaEvent::Connected(id));
                    }
                    _ => {}
                }
            }
            Event::MediaAdded(m) => self.on_media_added(id, m.mid, m.kind, m.direction, m.simulcast),
            Event::MediaChanged(c)
                if !c.direction.is_receiving() && self.sources.contains_key(&(id, c.mid)) =>
            {
                let renegotiate = self.remove_source((id, c.mid));
                self.emit(MediaEvent::TrackRemoved {
                    peer: id,
                    mid: c.mid.into(),
                    renegotiate,
                });
            }
            Event::RtpPacket(pkt) => self.forward(id, pkt),
            Event::KeyframeRequest(req) => {
                if let Some(&(publisher, mid)) = self.downtrack_source.get(&(id, req.mid)) {
                    let layer = self
                        .sources
                        .get(&(publisher, mid))
                        .and_then(|s| s.downtracks.iter().find(|d| d.peer == id))
                        .and_then(|d| d.current);
                    if let Some(layer) = layer {
                        self.request_keyframe(publisher, mid, layer, req.kind);
                    }
                }
            }
            Event::ChannelOpen(cid, label) => {
                let Some(p) = self.peers.get_mut(&id) else { return };
                let reliable = label != LOSSY_LABEL;
                p.channels.insert(cid, reliable);
                if label == RELIABLE_LABEL {
                    p.reliable = Some(cid);
                } else if label == LOSSY_LABEL {
                    p.lossy = Some(cid);
                }
            }
            Event::ChannelClose(cid) => {
                let Some(p) = self.peers.get_mut(&id) else { return };
                p.channels.remove(&cid);
                if p.reliable == Some(cid) {
                    p.reliable = None;
                }
                if p.lossy == Some(cid) {
                    p.lossy = None;
                }
            }
            Event::ChannelData(d) => {
                let reliable = self
                    .peers
                    .get(&id)
                    .and_then(|p| p.channels.get(&d.id).copied())
                    .unwrap_or(true);
                self.emit(MediaEvent::Data {
                    peer: id,
                    reliable,
                    data: d.data,
                });
            }
            Event::EgressBitrateEstimate(str0m::bwe::BweKind::Twcc { estimate, .. }) => {
                let estimate = estimate.as_u64();
                let Some(p) = self.peers.get_mut(&id) else {
                    return;
                };
                p.estimate = Some(estimate);
                // A first estimate, or one that moved by more than a step,
                // is acted on now rather than at the next round: a fall
                // would otherwise fill the pacer's queue until then, and the
                // first round tells the controller what to probe for.
                let moved = p
                    .shared_for
                    .is_none_or(|s| estimate.abs_diff(s) * ESTIMATE_STEP_DIVISOR > s);
                if moved {
                    self.share_downlink(id);
                }
            }
            Event::MediaIngressStats(st) => {
                let jitter = self.jitter(id, st.mid, Some(st.jitter));
                self.note_link(id, st.loss, st.rtt, jitter, st.timestamp);
            }
            Event::MediaEgressStats(st) => {
                let jitter = self.jitter(id, st.mid, st.remote.as_ref().map(|r| r.jitter));
                self.note_link(id, st.loss, st.rtt, jitter, st.timestamp);
                let seen = self.egress_seen.entry((id, st.mid, st.rid)).or_default();
                let keyframes = st.plis + st.firs;
                self.counters.nacks_received += st.nacks.saturating_sub(seen.0);
                self.counters.keyframe_requests_received += keyframes.saturating_sub(seen.1);
                *seen = (st.nacks, keyframes);
            }
            Event::Closed => {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.connected = false;
                }
                self.emit(MediaEvent::Disconnected(id));
            }
            _ => {}
        }
    }

    /// A stream's jitter in RTP timestamp units as time, from the clock
    /// rate of its kind of media (Opus 48 kHz, video 90 kHz).
    fn jitter(&self, id: PeerId, mid: Mid, units: Option<u32>) -> Option<Duration> {
        let kind = self.peers.get(&id)?.rtc.media(mid)?.kind();
        let rate = if kind == MediaKind::Audio { 48_000 } else { 90_000 };
        units.map(|u| Duration::from_secs_f64(f64::from(u) / f64::from(rate)))
    }

    /// Folds one stream's report into its connection's link figures: the
    /// worst loss, round-trip time and jitter within a stats round count.
    fn note_link(
        &mut self,
        id: PeerId,
        loss: Option<f32>,
        rtt: Option<Duration>,
        jitter: Option<Duration>,
        at: Instant,
    ) {
        let Some(p) = self.peers.get_mut(&id) else { return };
        let loss = loss.unwrap_or(0.0).clamp(0.0, 1.0);
        let worst = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        p.link = Some(match p.link {
            Some(l) if at.saturating_duration_since(l.at) < Duration::from_millis(500) => LinkStats {
                loss: l.loss.max(loss),
                rtt: worst(l.rtt, rtt),
                jitter: worst(l.jitter, jitter),
                at: l.at,
            },
            _ => LinkStats {
                loss,
                rtt,
                jitter,
                at,
            },
        });
    }

    fn on_media_added(
        &mut self,
        id: PeerId,
        mid: Mid,
        kind: MediaKind,
        direction: Direction,
        simulcast: Option<str0m::media::Simulcast>,
    ) {
        let Some(p) = self.peers.get_mut(&id) else { return };
        if p.role != Role::Publisher || !direction.is_receiving() {
            return;
        }
        let track_id = p
            .rtc
            .media(mid)
            .map(|m| m.track_id().to_owned())
            .unwrap_or_default();
        let rids: Vec<Rid> = simulcast
            .map(|s| s.recv.into_iter().map(|l| l.rid).collect())
            .unwrap_or_default();
        self.sources.insert(
            (id, mid),
            Source {
                kind: kind.into(),
                priority: 0,
                level: 0.0,
                last_level_at: None,
                ranked: rank_layers(&rids),
                last_packet: HashMap::new(),
                last_keyframe_request: HashMap::new(),
                rates: HashMap::new(),
                muted: false,
                downtracks: Vec::new(),
            },
        );
        self.emit(MediaEvent::TrackAdded {
            peer: id,
            mid: mid.into(),
            kind: kind.into(),
            track_id,
            rids: rids.iter().map(|r| r.to_string()).collect(),
        });
    }

    /// Removes a published track; returns the subscribers whose connections
    /// carried it.
    fn remove_source(&mut self, key: (PeerId, Mid)) -> Vec<PeerId> {
        let Some(src) = self.sources.remove(&key) else {
            return Vec::new();
        };
        let mut affected = Vec::new();
        for d in src.downtracks {
            if let Some(mid) = d.mid {
                self.downtrack_source.remove(&(d.peer, mid));
                if let Some(p) = self.peers.get_mut(&d.peer) {
                    p.pending_inactive.push(mid);
                    affected.push(d.peer);
                }
            }
        }
        affected
    }

    /// Measures layer bit rates and shares each subscriber's estimated
    /// downlink over its video tracks (see `alloc`).
    fn allocate(&mut self, now: Instant, elapsed: Duration) {
        let secs = elapsed.as_secs_f64().max(0.001);
        for src in self.sources.values_mut() {
            for (layer, (bytes, rate)) in src.rates.iter_mut() {
                let active = src
                    .last_packet
                    .get(layer)
                    .is_some_and(|t| now.saturating_duration_since(*t) < LAYER_IDLE);
                let measured = (*bytes as f64 * 8.0 / secs) as u64;
                *bytes = 0;
                *rate = active.then(|| rate.map_or(measured, |r| (r + measured) / 2));
            }
        }
        let subscribers: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.estimate.is_some())
            .map(|(id, _)| *id)
            .collect();
        for peer in subscribers {
            self.share_downlink(peer);
        }
    }

    /// Shares one subscriber's estimated downlink over its video tracks
    /// with the layer rates of the last measurement, and tells its
    /// congestion controller what to sustain and what to probe for.
    fn share_downlink(&mut self, peer: PeerId) {
        let Some(estimate) = self.peers.get(&peer).and_then(|p| p.estimate) else {
            return;
        };
        let mut others = Vec::new();
        let mut demands = Vec::new();
        let mut slots = Vec::new();
        for (key, src) in self.sources.iter() {
            for (i, d) in src.downtracks.iter().enumerate() {
                if d.peer != peer || !d.enabled || d.mid.is_none() {
                    continue;
                }
                if src.kind == Kind::Audio {
                    others.push(alloc::Share::Uncounted);
                    continue;
                }
                if src.ranked.is_empty() {
                    others.push(alloc::Share::Fixed(
                        src.rates.values().filter_map(|(_, r)| *r).sum::<u64>(),
                    ));
                    continue;
                }
                let mut layers = [None; 3];
                for (rank, rid) in &src.ranked {
                    layers[(*rank).min(2)] = src.rates.get(&Some(*rid)).and_then(|(_, r)| *r);
                }
                demands.push((
                    src.priority,
                    alloc::Demand {
                        max: d.max_quality,
                        layers,
                    },
                ));
                slots.push((src.priority, *key, i));
            }
        }
        // Higher priority first.
        let mut order: Vec<usize> = (0..demands.len()).collect();
        order.sort_by(|a, b| demands[*b].0.cmp(&demands[*a].0));
        let slots: Vec<((PeerId, Mid), usize)> = order.iter().map(|&o| (slots[o].1, slots[o].2)).collect();
        let tracks: Vec<alloc::Share> = others
            .into_iter()
            .chain(order.iter().map(|&o| alloc::Share::Layers(demands[o].1)))
            .collect();
        let shared = alloc::share(estimate, &tracks);
        tracing::debug!(%peer, estimate, ?tracks, ?shared, "downlink shared out");
        for ((key, i), g) in slots.iter().zip(shared.grants.iter()) {
            if let Some(d) = self.sources.get_mut(key).and_then(|s| s.downtracks.get_mut(*i)) {
                d.bwe_cap = g.cap;
                if d.bwe_paused != g.paused {
                    d.bwe_paused = g.paused;
                    // Resuming starts again at a keyframe.
                    d.current = None;
                    self.out.push_back(Output::Event(MediaEvent::DowntrackPaused {
                        peer,
                        track_id: d.track_id.clone(),
                        paused: g.paused,
                    }));
                }
            }
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            p.shared_for = Some(estimate);
            p.rtc.bwe().set_bitrate(
                str0m::bwe::Bitrate::bps(shared.minimum),
                str0m::bwe::Bitrate::bps(shared.desired),
            );
            self.dirty.insert(peer);
        }
    }

    fn request_keyframe(
        &mut self,
        publisher: PeerId,
        mid: Mid,
        layer: Option<Rid>,
        kind: KeyframeRequestKind,
    ) {
        let now = self.now;
        let Some(src) = self.sources.get_mut(&(publisher, mid)) else {
            return;
        };
        if src
            .last_keyframe_request
            .get(&layer)
            .is_some_and(|t| now.saturating_duration_since(*t) < KEYFRAME_REQUEST_INTERVAL)
        {
            return;
        }
        let Some(p) = self.peers.get_mut(&publisher) else {
            return;
        };
        if let Some(rx) = p.rtc.direct_api().stream_rx_by_mid(mid, layer) {
            rx.request_keyframe(kind);
            src.last_keyframe_request.insert(layer, now);
            self.counters.keyframe_requests_sent += 1;
            self.dirty.insert(publisher);
        }
    }

    fn forward(&mut self, publisher: PeerId, pkt: RtpPacket) {
        let now = pkt.timestamp;
        let Some(p) = self.peers.get_mut(&publisher) else {
            return;
        };
        let (mid, rid) = {
            let mut api = p.rtc.direct_api();
            let Some(rx) = api.stream_rx(&pkt.header.ssrc) else {
                return;
            };
            (rx.mid(), rx.rid())
        };
        let in_pt = *pkt.header.payload_type;
        let params = p.rtc.codec_config().params();
        // The codec of the packet, and whether it comes wrapped in RED.
        let (in_params, in_red): (Option<PayloadParams>, bool) =
            match params.iter().find(|pp| *pp.pt() == in_pt) {
                Some(pp) => (Some(*pp), false),
                None => match params.iter().find(|pp| pp.red().map(|r| *r) == Some(in_pt)) {
                    Some(pp) => (Some(*pp), true),
                    None => (None, false),
                },
            };
        let Some(src) = self.sources.get_mut(&(publisher, mid)) else {
            return;
        };
        if in_red {
            self.counters.red_packets_in += 1;
        }
        src.last_packet.insert(rid, now);
        src.rates.entry(rid).or_default().0 += (pkt.payload.len() + pkt.header.header_len) as u64;
        if let Some(db) = pkt.header.ext_vals.audio_level {
            // -dBov to linear amplitude, smoothed over about ten packets.
            let linear = 10f32.powf(f32::from(db.clamp(-127, 0)) / 20.0);
            src.level += (linear - src.level) * LEVEL_SMOOTHING;
            src.last_level_at = Some(now);
        }
        let codec = in_params
            .map(|pp| video_codec(pp.spec().codec))
            .unwrap_or(VideoCodec::Other);
        let is_key = src.kind == Kind::Video && starts_keyframe(codec, &pkt.payload);
        let vp8_ids = if codec == VideoCodec::Vp8 {
            keyframe::vp8_ids(&pkt.payload)
        } else {
            None
        };
        if src.muted {
            return;
        }
        let mut keyframe_wanted = false;
        // The layer for each wish, chosen once per packet (not per subscriber).
        let mut choices: [Option<Option<Rid>>; 3] = [None; 3];
        for d in src.downtracks.iter_mut() {
            let Some(sub_mid) = d.mid else { continue };
            if !d.enabled || d.bwe_paused {
                continue;
            }
            let wish = d.max_quality.min(d.bwe_cap);
            let want = *choices[wish as usize]
                .get_or_insert_with(|| choose_layer(&src.ranked, &src.last_packet, wish, now));
            if d.current != Some(want) {
                if rid != want {
                    continue;
                }
                if src.kind == Kind::Video && !is_key {
                    keyframe_wanted = true;
                    continue;
                }
                d.current = Some(want);
                d.rewriter.switch_source(*pkt.seq_no, pkt.header.timestamp, now);
                if let Some(ids) = vp8_ids {
                    d.vp8.switch_source(ids);
                }
            }
            if d.current != Some(rid) {
                continue;
            }
            let Some(sub) = self.peers.get_mut(&d.peer) else {
                continue;
            };
            if !sub.connected {
                continue;
            }
            let out = *d.pt_map.entry(in_pt).or_insert_with(|| {
                let m = in_params.and_then(|pp| sub.rtc.codec_config().match_params(pp))?;
                Some(match (in_red, m.red()) {
                    (false, _) => OutPt {
                        pt: *m.pt(),
                        unwrap_red: false,
                    },
                    (true, Some(red)) => OutPt {
                        pt: *red,
                        unwrap_red: false,
                    },
                    (true, None) => OutPt {
                        pt: *m.pt(),
                        unwrap_red: true,
                    },
                })
            });
            let Some(OutPt {
                pt: out_pt,
                unwrap_red,
            }) = out
            else {
                continue;
            };
            let payload = if unwrap_red {
                match red::primary(&pkt.payload) {
                    Some(primary) => std::sync::Arc::from(primary),
                    None => continue,
                }
            } else {
                pkt.payload.clone()
            };
            let Some(rw) = d.rewriter.rewrite(*pkt.seq_no, pkt.header.timestamp, now) else {
                continue;
            };
            let mut api = sub.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(sub_mid, None) else {
                continue;
            };
            if !d.started && src.kind == Kind::Video {
                tx.set_rtx_cache(RTX_CACHE_PACKETS, RTX_CACHE_AGE, Some(RTX_RATIO_CAP));
            }
            let ext = ExtensionValues {
                audio_level: pkt.header.ext_vals.audio_level,
                voice_activity: pkt.header.ext_vals.voice_activity,
                video_orientation: pkt.header.ext_vals.video_orientation,
                video_content_type: pkt.header.ext_vals.video_content_type,
                ..Default::default()
            };
            let mut write = RtpWrite::new(out_pt.into(), SeqNo::from(rw.seq), rw.timestamp, now, payload)
                .marker(pkt.header.marker)
                .ext_vals(ext)
                .nackable(src.kind == Kind::Video);
            if let Some(ids) = vp8_ids
                && let Some(patch) = vp8_patch(&pkt.payload, d.vp8.rewrite(ids))
            {
                write = write.vp8_patch(patch);
            }
            tx.write_rtp(write);
            sub.unsent += 1;
            self.counters.rtp_forwarded += 1;
            self.dirty.insert(d.peer);
            if !d.started {
                d.started = true;
                self.out.push_back(Output::Event(MediaEvent::DowntrackStarted {
                    peer: d.peer,
                    track_id: d.track_id.clone(),
                }));
            }
        }
        if keyframe_wanted {
            self.request_keyframe(publisher, mid, rid, KeyframeRequestKind::Pli);
        }
    }
}

/// Records the local ICE username fragments of a session description we
/// hand out: the client's connectivity checks will name them. Earlier ones
/// stay until the peer goes, for checks still in flight across a restart.
fn note_ufrags(by_ufrag: &mut HashMap<String, PeerId>, peer: PeerId, sdp: &str) {
    for line in sdp.lines() {
        if let Some(ufrag) = line.trim().strip_prefix("a=ice-ufrag:") {
            by_ufrag.insert(ufrag.to_owned(), peer);
        }
    }
}

/// The descriptor rewrite that gives a VP8 packet its continuous PictureID
/// and TL0PICIDX; `None` when there is nothing to change.
fn vp8_patch(payload: &[u8], (pid, tl0): (Option<u16>, Option<u8>)) -> Option<str0m::rtp::Vp8Patch> {
    if pid.is_none() && tl0.is_none() {
        return None;
    }
    let mut b = str0m::rtp::Vp8Descriptor::parse(payload).ok()?.patch();
    if let Some(p) = pid {
        b = b.picture_id(p);
    }
    if let Some(t) = tl0 {
        b = b.tl0_pic_idx(t);
    }
    b.build().ok()
}

fn video_codec(c: Codec) -> VideoCodec {
    match c {
        Codec::Vp8 => VideoCodec::Vp8,
        Codec::Vp9 => VideoCodec::Vp9,
        Codec::H264 => VideoCodec::H264,
        Codec::Av1 => VideoCodec::Av1,
        _ => VideoCodec::Other,
    }
}

/// Rank of a simulcast layer by its rid: LiveKit names them q, h, f.
fn rid_rank(rid: &Rid, position: usize) -> usize {
    match &**rid {
        "q" => 0,
        "h" => 1,
        "f" => 2,
        _ => position,
    }
}

/// Simulcast layers with their rank, lowest first (layers of one rank in
/// the order the publisher gave them).
fn rank_layers(rids: &[Rid]) -> Vec<(usize, Rid)> {
    let mut ranked: Vec<(usize, Rid)> = rids
        .iter()
        .enumerate()
        .map(|(i, r)| (rid_rank(r, i), *r))
        .collect();
    ranked.sort_by_key(|(rank, _)| *rank);
    ranked
}

/// The layer a subscriber should get: the best active layer not above its
/// wish, else the lowest active layer, else the lowest layer. `ranked` is
/// what `rank_layers` gives.
fn choose_layer(
    ranked: &[(usize, Rid)],
    last_packet: &HashMap<Option<Rid>, Instant>,
    max_quality: Quality,
    now: Instant,
) -> Option<Rid> {
    let active = |r: &Rid| {
        last_packet
            .get(&Some(*r))
            .is_some_and(|t| now.saturating_duration_since(*t) < LAYER_IDLE)
    };
    let cap = max_quality as usize;
    ranked
        .iter()
        .rev()
        .find(|(rank, r)| *rank <= cap && active(r))
        .or_else(|| ranked.iter().find(|(_, r)| active(r)))
        .or(ranked.first())
        .map(|(_, r)| *r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A published track with one subscriber, whose layers (`None` without
    /// simulcast) each carried `bits` in the last second.
    fn source(
        kind: Kind,
        subscriber: PeerId,
        mid: Mid,
        layers: &[(Option<Rid>, u64)],
        now: Instant,
    ) -> Source {
        Source {
            kind,
            priority: 0,
            level: 0.0,
            last_level_at: None,
            ranked: rank_layers(&layers.iter().filter_map(|(r, _)| *r).collect::<Vec<_>>()),
            last_packet: layers.iter().map(|(r, _)| (*r, now)).collect(),
            last_keyframe_request: HashMap::new(),
            rates: layers.iter().map(|(r, bits)| (*r, (bits / 8, None))).collect(),
            muted: false,
            downtracks: vec![Downtrack {
                peer: subscriber,
                mid: Some(mid),
                stream_id: String::new(),
                track_id: format!("{mid}"),
                enabled: true,
                max_quality: Quality::High,
                bwe_cap: Quality::High,
                bwe_paused: false,
                current: None,
                rewriter: rewrite::Rewriter::new(90_000),
                vp8: rewrite::Vp8Rewriter::default(),
                pt_map: HashMap::new(),
                started: false,
            }],
        }
    }

    /// Two simulcast cameras of `publisher` (layers of 150 kbit/s, 500
    /// kbit/s and 2.5 Mbit/s) sent to `sub`: measured in an earlier round
    /// when `measured`, else carrying those rates since the last round.
    fn add_cameras(core: &mut MediaCore, sub: PeerId, publisher: PeerId, now: Instant, measured: bool) {
        let simulcast = [
            (Some(Rid::from("q")), 150_000),
            (Some(Rid::from("h")), 500_000),
            (Some(Rid::from("f")), 2_500_000),
        ];
        for name in ["v1", "v2"] {
            let mid = Mid::from(name);
            let mut src = source(Kind::Video, sub, mid, &simulcast, now);
            if measured {
                for (layer, bits) in simulcast {
                    src.rates.insert(layer, (0, Some(bits)));
                }
            }
            core.sources.insert((publisher, mid), src);
        }
    }

    /// A meeting's receiver at the initial estimate: the audio of 19
    /// others (about 1 Mbit/s, which the estimate does not cover) leaves
    /// both simulcast cameras their low layer, and the congestion
    /// controller is asked for their rates alone.
    #[test]
    fn audio_takes_nothing_of_a_subscribers_downlink() {
        let now = Instant::now();
        let mut core = MediaCore::new(MediaConfig { candidates: vec![] }, now);
        let sub = core.add_peer(now, Role::Subscriber);
        let publisher = PeerId(1_000);
        for i in 0..19 {
            let mid = Mid::from(format!("a{i}").as_str());
            let src = source(Kind::Audio, sub, mid, &[(None, 52_000)], now);
            core.sources.insert((publisher, mid), src);
        }
        add_cameras(&mut core, sub, publisher, now, false);
        core.peers.get_mut(&sub).expect("subscriber").estimate = Some(1_000_000);
        core.out.clear();
        core.allocate(now, Duration::from_secs(1));

        let video: Vec<(Quality, bool)> = core
            .sources
            .values()
            .filter(|s| s.kind == Kind::Video)
            .map(|s| (s.downtracks[0].bwe_cap, s.downtracks[0].bwe_paused))
            .collect();
        assert_eq!(video.len(), 2);
        assert!(
            video.iter().all(|(_, paused)| !paused),
            "a camera was paused: {video:?}"
        );
        assert!(
            video.iter().any(|(cap, _)| *cap == Quality::Medium),
            "the 650 kbit/s left after two low layers did not raise one: {video:?}"
        );
        assert!(
            !core
                .out
                .iter()
                .any(|o| matches!(o, Output::Event(MediaEvent::DowntrackPaused { paused: true, .. }))),
            "a pause was announced"
        );
    }

    /// A downlink estimate that moves by more than a step is shared out at
    /// once, without waiting for the next measuring round; a small move
    /// waits for it.
    #[test]
    fn an_estimate_that_moves_is_shared_out_at_once() {
        let now = Instant::now();
        let mut core = MediaCore::new(MediaConfig { candidates: vec![] }, now);
        let sub = core.add_peer(now, Role::Subscriber);
        add_cameras(&mut core, sub, PeerId(1_000), now, true);
        let caps = |core: &MediaCore| -> Vec<(Quality, bool)> {
            let mut v: Vec<_> = core
                .sources
                .values()
                .map(|s| (s.downtracks[0].bwe_cap, s.downtracks[0].bwe_paused))
                .collect();
            v.sort();
            v
        };
        let estimate = |core: &mut MediaCore, bits: u64| {
            core.on_event(
                sub,
                Event::EgressBitrateEstimate(str0m::bwe::BweKind::Twcc {
                    estimate: str0m::bwe::Bitrate::bps(bits),
                    can_probe: true,
                }),
            );
        };
        // The first estimate is acted on, though it is the initial one.
        estimate(&mut core, 200_000);
        assert_eq!(
            caps(&core),
            vec![(Quality::Low, false), (Quality::Low, true)],
            "the first estimate was not shared out"
        );
        // A rise: both cameras at their best.
        estimate(&mut core, 10_000_000);
        assert_eq!(caps(&core), vec![(Quality::High, false); 2]);
        // A fall: down to what 2 Mbit/s carries, at once.
        estimate(&mut core, 2_000_000);
        assert_eq!(caps(&core), vec![(Quality::Medium, false); 2]);
        // A move of 5% waits for the next round.
        estimate(&mut core, 2_100_000);
        let shared_for = core.peers.get(&sub).and_then(|p| p.shared_for);
        assert_eq!(shared_for, Some(2_000_000), "a small move was shared out");
        // The round uses the newest estimate.
        core.allocate(now, Duration::from_secs(1));
        let shared_for = core.peers.get(&sub).and_then(|p| p.shared_for);
        assert_eq!(shared_for, Some(2_100_000));
    }

    /// Connections are drained one at a time, and only when every output
    /// already produced has been handed out: in a fan-out the first
    /// receivers' datagrams leave before the last copies are made.
    #[test]
    fn outputs_are_handed_out_before_the_next_connection_is_drained() {
        let now = Instant::now();
        let mut core = MediaCore::new(MediaConfig { candidates: vec![] }, now);
        let peers: Vec<PeerId> = (0..3).map(|_| core.add_peer(now, Role::Subscriber)).collect();
        while !matches!(core.poll_output(), Output::Timeout(_)) {}
        core.dirty.extend(peers.iter().copied());
        core.out.push_back(Output::Event(MediaEvent::Connected(peers[0])));
        assert!(matches!(
            core.poll_output(),
            Output::Event(MediaEvent::Connected(_))
        ));
        assert_eq!(
            core.dirty.len(),
            3,
            "a connection was drained before the output left"
        );

        // Each connection is drained once per round; one marked again
        // meanwhile waits for the others.
        let first = core.next_to_drain().expect("a connection to drain");
        core.dirty.insert(first);
        let mut order = vec![first];
        while let Some(id) = core.next_to_drain() {
            order.push(id);
        }
        assert_eq!(order.len(), 4);
        assert_eq!(
            order[3], first,
            "a connection marked again went ahead of the others"
        );
        let mut round: Vec<PeerId> = order[..3].to_vec();
        round.sort();
        assert_eq!(round, peers);
    }

    #[test]
    fn a_publisher_connection_is_built_by_its_first_offer() {
        let now = Instant::now();
        let server: SocketAddr = "10.0.0.1:5000".parse().expect("address");
        let mut core = MediaCore::new(
            MediaConfig {
                candidates: vec![server],
            },
            now,
        );
        let listener = core.add_peer(now, Role::Publisher);
        let speaker = core.add_peer(now, Role::Publisher);
        assert_eq!(
            (core.peer_count(), core.peers.len()),
            (2, 0),
            "built before any offer"
        );

        let mut client = Rtc::builder().build(now);
        let mut api = client.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, _) = api.apply().expect("an offer");
        assert!(
            matches!(
                core.accept_offer(speaker, "not sdp", &[]),
                Err(MediaError::BadSdp)
            ),
            "a bad offer is refused"
        );
        assert!(core.peers.is_empty(), "a bad offer built a connection");
        let answer = core
            .accept_offer(speaker, &offer.to_sdp_string(), &[])
            .expect("the offer is answered");
        assert!(answer.contains("m=audio"));
        assert!(core.peers.contains_key(&speaker) && !core.peers.contains_key(&listener));
        assert_eq!(core.peer_count(), 2);

        core.remove_peer(listener);
        core.remove_peer(speaker);
        assert_eq!(core.peer_count(), 0);
        assert!(
            matches!(
                core.accept_offer(listener, &offer.to_sdp_string(), &[]),
                Err(MediaError::UnknownPeer)
            ),
            "a removed connection came back"
        );
    }

    #[test]
    fn layer_choice_follows_wish_and_activity() {
        let now = Instant::now();
        // Layers in an order other than their rank: ranked by name.
        let rids: Vec<Rid> = vec!["f".into(), "q".into(), "h".into()];
        let ranked = rank_layers(&rids);
        assert_eq!(ranked, vec![(0, "q".into()), (1, "h".into()), (2, "f".into())]);
        let mut last = HashMap::new();
        // Nothing active yet: lowest.
        assert_eq!(choose_layer(&ranked, &last, Quality::High, now), Some("q".into()));
        for r in &rids {
            last.insert(Some(*r), now);
        }
        assert_eq!(choose_layer(&ranked, &last, Quality::High, now), Some("f".into()));
        assert_eq!(
            choose_layer(&ranked, &last, Quality::Medium, now),
            Some("h".into())
        );
        assert_eq!(choose_layer(&ranked, &last, Quality::Low, now), Some("q".into()));
        // The high layer stops (dynacast): fall back to the best active one.
        let later = now + Duration::from_secs(2);
        last.insert(Some("q".into()), later);
        last.insert(Some("h".into()), later);
        assert_eq!(
            choose_layer(&ranked, &last, Quality::High, later),
            Some("h".into())
        );
        // Only the high layer is active: a lower wish gets it rather than nothing.
        let mut only_high = HashMap::new();
        only_high.insert(Some("f".into()), now);
        assert_eq!(
            choose_layer(&ranked, &only_high, Quality::Low, now),
            Some("f".into())
        );
        // Layers named otherwise rank by their position.
        let other = rank_layers(&["a".into(), "b".into()]);
        assert_eq!(other, vec![(0, "a".into()), (1, "b".into())]);
        // No simulcast.
        assert_eq!(choose_layer(&[], &last, Quality::High, now), None);
    }
}
