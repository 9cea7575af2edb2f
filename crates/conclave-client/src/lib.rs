//! A native client of the LiveKit client protocol, for tests, bots and the
//! load generator.
//!
//! [`Client`] is sans-IO: it takes signalling messages, datagrams and time
//! through `handle_*` and gives signalling messages, datagrams, events and
//! its next timeout through [`Client::poll_output`]. It keeps the two peer
//! connections of the protocol: the publisher connection (the client offers)
//! and the subscriber connection (the server offers). Media goes through
//! str0m in RTP mode, so the caller writes and reads RTP payloads as they are
//! (str0m answers NACKs from its send cache and sends NACKs for gaps it
//! sees). [`driver`] runs a client over real sockets with tokio.

pub mod driver;
pub mod net;
pub mod server_process;
pub mod synth;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conclave_types::{ParticipantSid, RoomName, TrackSid, TrackSource};
use livekit_protocol as lk;
use lk::signal_request::Message as Req;
use lk::signal_response::Message as Resp;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, SeqNo};
use str0m::{Candidate, Event, IceConnectionState, Input, Output as RtcOutput, Rtc};

pub use str0m::media::{MediaKind, Mid, Rid};

/// What can go wrong in the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the server sent a message that is not valid protobuf")]
    BadMessage,
    #[error("the server sent an SDP that could not be used")]
    BadSdp,
    #[error("the server refused the session: {0}")]
    Refused(String),
    #[error("unknown track {0}")]
    UnknownTrack(String),
    #[error("network: {0}")]
    Io(String),
    #[error("the server went away")]
    Closed,
}

/// The longest ping interval a server may ask for.
const MAX_PING_INTERVAL_SECS: u64 = 3600;

/// One of the two peer connections of a participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pc {
    Publisher,
    Subscriber,
}

/// A track to publish. Video with several layers is simulcast; the layers
/// go from the lowest to the highest, as LiveKit names them (`q`, `h`, `f`).
#[derive(Debug, Clone)]
pub struct TrackSpec {
    /// The client's id for the track (the `a=msid` track id).
    pub cid: String,
    pub kind: MediaKind,
    pub source: TrackSource,
    pub layers: Vec<Layer>,
}

/// One simulcast layer of a video track.
#[derive(Debug, Clone)]
pub struct Layer {
    pub rid: String,
    pub width: u32,
    pub height: u32,
    pub bitrate: u32,
}

impl TrackSpec {
    /// A microphone track.
    pub fn audio(cid: impl Into<String>) -> Self {
        Self {
            cid: cid.into(),
            kind: MediaKind::Audio,
            source: TrackSource::Microphone,
            layers: Vec::new(),
        }
    }

    /// A camera track with LiveKit's three simulcast layers.
    pub fn simulcast_camera(cid: impl Into<String>) -> Self {
        let layer = |rid: &str, width, height, bitrate| Layer {
            rid: rid.into(),
            width,
            height,
            bitrate,
        };
        Self {
            cid: cid.into(),
            kind: MediaKind::Video,
            source: TrackSource::Camera,
            layers: vec![
                layer("q", 320, 180, 150_000),
                layer("h", 640, 360, 500_000),
                layer("f", 1280, 720, 2_500_000),
            ],
        }
    }
}

/// One RTP packet to send on a published track.
#[derive(Debug)]
pub struct Packet<'a> {
    /// The track, by the client's id.
    pub cid: &'a str,
    /// The simulcast layer, for simulcast video.
    pub rid: Option<&'a str>,
    /// In the codec's clock (48 kHz for Opus, 90 kHz for video).
    pub timestamp: u32,
    pub marker: bool,
    /// -dBov for the RFC 6464 audio level extension (audio only).
    pub audio_level: Option<i8>,
    pub payload: Vec<u8>,
}

/// Something that happened in the session.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    /// The server accepted the join.
    Joined {
        /// This participant's id, as the server named it.
        participant: Option<ParticipantSid>,
        room: Option<RoomName>,
        /// Participants already in the room.
        others: usize,
    },
    /// A published track was accepted and negotiated.
    Published { cid: String, sid: TrackSid, mid: Mid },
    /// A peer connection's ICE is connected.
    Connected(Pc),
    /// The server offered a track on the subscriber connection (a new media
    /// section, or one reused for another track), in the offer's order:
    /// the moment to choose its quality or turn it off, before its media
    /// flows.
    Offered {
        mid: Mid,
        kind: MediaKind,
        track: TrackSid,
    },
    /// An RTP packet on the subscriber connection. `track` is the server's
    /// track id (from the offer's `a=msid`), when known.
    Rtp {
        mid: Mid,
        kind: MediaKind,
        track: Option<TrackSid>,
        seq: u64,
        timestamp: u32,
        marker: bool,
        payload: Arc<[u8]>,
        at: Instant,
    },
    /// The server asks for a keyframe of a published video layer.
    KeyframeRequest { mid: Mid, rid: Option<Rid> },
    /// The server refused to let a track be published (no permission);
    /// the track is dropped.
    Refused { cid: String, message: String },
    /// The session went on over a new signalling connection after the
    /// last one closed.
    Resumed,
    /// The server ended the session.
    Left { reason: i32 },
}

/// What the client wants done.
#[derive(Debug)]
pub enum Output {
    /// A signalling message to send.
    Signal(Box<lk::SignalRequest>),
    /// A datagram to send from the given connection's socket.
    Transmit {
        pc: Pc,
        destination: SocketAddr,
        contents: Vec<u8>,
    },
    Event(ClientEvent),
    /// Call [`Client::handle_timeout`] at this time if nothing else happens.
    Timeout(Instant),
}

struct Published {
    spec: TrackSpec,
    sid: Option<TrackSid>,
    mid: Option<Mid>,
    seq: HashMap<Option<Rid>, u64>,
}

/// One participant's session.
pub struct Client {
    publisher: Rtc,
    subscriber: Rtc,
    publisher_addr: SocketAddr,
    subscriber_addr: SocketAddr,
    tracks: Vec<Published>,
    pending_offer: Option<SdpPendingOffer>,
    offer_due: bool,
    joined: bool,
    ping_interval: Duration,
    next_ping: Option<Instant>,
    /// Subscriber media sections to the server's track ids.
    remote_tracks: HashMap<Mid, TrackSid>,
    out: VecDeque<Output>,
    now: Instant,
}

fn new_rtc(now: Instant, local: SocketAddr) -> Rtc {
    let mut rtc = Rtc::builder()
        .set_crypto_provider(conclave_dtls::provider())
        .set_rtp_mode(true)
        .enable_opus(true, false)
        .set_stats_interval(Some(Duration::from_secs(1)))
        .build(now);
    if let Ok(c) = Candidate::host(local, "udp") {
        rtc.add_local_candidate(c);
    }
    rtc
}

impl Client {
    /// A client whose publisher and subscriber connections use the given
    /// local addresses (one socket each). `now` is the current time; the
    /// client never reads the clock.
    pub fn new(now: Instant, publisher_addr: SocketAddr, subscriber_addr: SocketAddr) -> Self {
        Self {
            publisher: new_rtc(now, publisher_addr),
            subscriber: new_rtc(now, subscriber_addr),
            publisher_addr,
            subscriber_addr,
            tracks: Vec::new(),
            pending_offer: None,
            offer_due: false,
            joined: false,
            ping_interval: Duration::from_secs(5),
            next_ping: None,
            remote_tracks: HashMap::new(),
            out: VecDeque::new(),
            now,
        }
    }

    /// Asks to publish a track: it is announced once joined and negotiated
    /// when the server has accepted it.
    pub fn publish(&mut self, spec: TrackSpec) {
        if self.joined {
            self.announce(&spec);
        }
        self.tracks.push(Published {
            spec,
            sid: None,
            mid: None,
            seq: HashMap::new(),
        });
    }

    /// Leaves the room.
    pub fn leave(&mut self) {
        self.signal(Req::Leave(lk::LeaveRequest {
            reason: lk::DisconnectReason::ClientInitiated as i32,
            ..Default::default()
        }));
    }

    /// A signalling message from the server (protobuf bytes).
    pub fn handle_signal(&mut self, now: Instant, bytes: &[u8]) -> Result<(), ClientError> {
        self.now = now;
        let msg =
            <lk::SignalResponse as prost::Message>::decode(bytes).map_err(|_| ClientError::BadMessage)?;
        match msg.message {
            Some(Resp::Join(join)) => {
                if join.ping_interval > 0 {
                    let secs = u64::from(join.ping_interval.unsigned_abs()).min(MAX_PING_INTERVAL_SECS);
                    self.ping_interval = Duration::from_secs(secs);
                }
                self.next_ping = Some(now + self.ping_interval);
                // Tracks are announced once, whatever the server repeats.
                if !self.joined {
                    self.joined = true;
                    let specs: Vec<TrackSpec> = self.tracks.iter().map(|t| t.spec.clone()).collect();
                    for spec in &specs {
                        self.announce(spec);
                    }
                }
                self.emit(ClientEvent::Joined {
                    participant: join.participant.and_then(|p| ParticipantSid::parse(&p.sid).ok()),
                    room: join.room.and_then(|r| RoomName::new(r.name).ok()),
                    others: join.other_participants.len(),
                });
            }
            Some(Resp::TrackPublished(t)) => {
                if let Some(track) = self.tracks.iter_mut().find(|x| x.spec.cid == t.cid) {
                    // A track id that is not one is never negotiated.
                    track.sid = t.track.and_then(|i| TrackSid::parse(&i.sid).ok());
                    self.offer_due = track.sid.is_some();
                }
            }
            Some(Resp::Answer(sd)) => {
                let answer = SdpAnswer::from_sdp_string(&sd.sdp).map_err(|_| ClientError::BadSdp)?;
                if let Some(pending) = self.pending_offer.take() {
                    self.publisher
                        .sdp_api()
                        .accept_answer(pending, answer)
                        .map_err(|_| ClientError::BadSdp)?;
                    let done: Vec<(String, TrackSid, Mid)> = self
                        .tracks
                        .iter()
                        .filter_map(|t| Some((t.spec.cid.clone(), t.sid.clone()?, t.mid?)))
                        .collect();
                    for (cid, sid, mid) in done {
                        self.emit(ClientEvent::Published { cid, sid, mid });
                    }
                }
            }
            Some(Resp::Offer(sd)) => {
                let offer = SdpOffer::from_sdp_string(&sd.sdp).map_err(|_| ClientError::BadSdp)?;
                let answer = self
                    .subscriber
                    .sdp_api()
                    .accept_offer(offer)
                    .map_err(|_| ClientError::BadSdp)?;
                self.signal(Req::Answer(lk::SessionDescription {
                    r#type: "answer".into(),
                    sdp: answer.to_sdp_string(),
                    id: sd.id,
                    ..Default::default()
                }));
                for (mid, track) in note_msids(&mut self.remote_tracks, &sd.sdp) {
                    if let Some(kind) = self.subscriber.media(mid).map(|m| m.kind()) {
                        self.emit(ClientEvent::Offered { mid, kind, track });
                    }
                }
            }
            Some(Resp::Trickle(t)) => {
                let line = candidate_line(&t.candidate_init);
                if let Some(c) = line.and_then(|l| Candidate::from_sdp_string(&l).ok()) {
                    let rtc = if t.target == lk::SignalTarget::Subscriber as i32 {
                        &mut self.subscriber
                    } else {
                        &mut self.publisher
                    };
                    rtc.add_remote_candidate(c);
                }
            }
            Some(Resp::RequestResponse(r)) if r.reason != lk::request_response::Reason::Ok as i32 => {
                if let Some(lk::request_response::Request::AddTrack(req)) = r.request {
                    let before = self.tracks.len();
                    self.tracks.retain(|t| t.spec.cid != req.cid || t.sid.is_some());
                    if self.tracks.len() < before {
                        // The others need not wait for it any more.
                        self.offer_due = self.tracks.iter().any(|t| t.mid.is_none());
                        self.emit(ClientEvent::Refused {
                            cid: req.cid,
                            message: r.message.chars().take(200).collect(),
                        });
                    }
                }
            }
            Some(Resp::Reconnect(_)) => self.emit(ClientEvent::Resumed),
            Some(Resp::Leave(l)) => self.emit(ClientEvent::Left { reason: l.reason }),
            _ => {}
        }
        Ok(())
    }

    /// A datagram arrived on a connection's socket at `at`, which may be
    /// earlier than the last input's time (a datagram that waited in the
    /// socket); media events carry it.
    pub fn handle_datagram(&mut self, at: Instant, pc: Pc, source: SocketAddr, contents: &[u8]) {
        self.now = self.now.max(at);
        let destination = match pc {
            Pc::Publisher => self.publisher_addr,
            Pc::Subscriber => self.subscriber_addr,
        };
        let Ok(recv) = Receive::new(Protocol::Udp, source, destination, contents) else {
            return;
        };
        let _ = self.rtc(pc).handle_input(Input::Receive(at, recv));
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        let _ = self.publisher.handle_input(Input::Timeout(now));
        let _ = self.subscriber.handle_input(Input::Timeout(now));
        if self.next_ping.is_some_and(|t| now >= t) {
            self.next_ping = Some(now + self.ping_interval);
            self.signal(Req::Ping(0));
        }
    }

    /// Writes one RTP packet of a published track. Sequence numbers are
    /// kept per layer.
    pub fn write_rtp(&mut self, now: Instant, packet: Packet<'_>) -> Result<(), ClientError> {
        let Packet {
            cid,
            rid,
            timestamp,
            marker,
            audio_level,
            payload,
        } = packet;
        let track = self
            .tracks
            .iter_mut()
            .find(|t| t.spec.cid == cid)
            .ok_or_else(|| ClientError::UnknownTrack(cid.to_owned()))?;
        let mid = track
            .mid
            .ok_or_else(|| ClientError::UnknownTrack(cid.to_owned()))?;
        let codec = if track.spec.kind == MediaKind::Audio {
            Codec::Opus
        } else {
            Codec::Vp8
        };
        let pt = self
            .publisher
            .codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
            .ok_or_else(|| ClientError::UnknownTrack(cid.to_owned()))?;
        let rid: Option<Rid> = rid.map(Rid::from);
        let seq = track.seq.entry(rid).or_insert(1);
        *seq += 1;
        let seq_no = SeqNo::from(*seq);
        let nackable = track.spec.kind == MediaKind::Video;
        let mut api = self.publisher.direct_api();
        let tx = api
            .stream_tx_by_mid(mid, rid)
            .ok_or_else(|| ClientError::UnknownTrack(cid.to_owned()))?;
        let ext = ExtensionValues {
            audio_level,
            voice_activity: audio_level.map(|l| l > -50),
            ..Default::default()
        };
        tx.write_rtp(
            RtpWrite::new(pt, seq_no, timestamp, now, payload)
                .marker(marker)
                .ext_vals(ext)
                .nackable(nackable),
        );
        Ok(())
    }

    /// Asks the server for one quality of a subscribed video track (by the
    /// server's track id), as a client does for the size it shows it at.
    pub fn set_quality(&mut self, track_sid: &TrackSid, quality: lk::VideoQuality) {
        self.signal(Req::TrackSetting(lk::UpdateTrackSettings {
            track_sids: vec![track_sid.as_str().to_owned()],
            quality: quality as i32,
            ..Default::default()
        }));
    }

    /// Asks the server to stop sending a subscribed track that is not shown
    /// (it stays subscribed), as a client with adaptive streaming does.
    pub fn disable(&mut self, track_sid: &TrackSid) {
        self.signal(Req::TrackSetting(lk::UpdateTrackSettings {
            track_sids: vec![track_sid.as_str().to_owned()],
            disabled: true,
            ..Default::default()
        }));
    }

    /// Asks the server for a keyframe of a subscribed video section.
    pub fn request_keyframe(&mut self, mid: Mid) {
        if let Some(rx) = self.subscriber.direct_api().stream_rx_by_mid(mid, None) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
        }
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Output {
        if self.offer_due && self.pending_offer.is_none() && self.tracks.iter().all(|t| t.sid.is_some()) {
            self.offer_due = false;
            self.make_offer();
        }
        if let Some(o) = self.out.pop_front() {
            return o;
        }
        let a = self.drain(Pc::Publisher);
        let b = self.drain(Pc::Subscriber);
        if let Some(o) = self.out.pop_front() {
            return o;
        }
        let mut next = a.min(b);
        if let Some(p) = self.next_ping {
            next = next.min(p);
        }
        Output::Timeout(next)
    }

    // ---------------------------------------------------------------- internal

    fn rtc(&mut self, pc: Pc) -> &mut Rtc {
        match pc {
            Pc::Publisher => &mut self.publisher,
            Pc::Subscriber => &mut self.subscriber,
        }
    }

    fn emit(&mut self, e: ClientEvent) {
        self.out.push_back(Output::Event(e));
    }

    fn signal(&mut self, m: Req) {
        self.out
            .push_back(Output::Signal(Box::new(lk::SignalRequest { message: Some(m) })));
    }

    fn announce(&mut self, spec: &TrackSpec) {
        let (ty, layers) = if spec.kind == MediaKind::Audio {
            (lk::TrackType::Audio, Vec::new())
        } else {
            let layers = spec
                .layers
                .iter()
                .enumerate()
                .map(|(i, l)| lk::VideoLayer {
                    quality: i as i32,
                    width: l.width,
                    height: l.height,
                    bitrate: l.bitrate,
                    rid: l.rid.clone(),
                    ..Default::default()
                })
                .collect();
            (lk::TrackType::Video, layers)
        };
        let top = spec.layers.last();
        self.signal(Req::AddTrack(lk::AddTrackRequest {
            cid: spec.cid.clone(),
            name: spec.cid.clone(),
            r#type: ty as i32,
            source: spec.source.to_proto(),
            width: top.map_or(0, |l| l.width),
            height: top.map_or(0, |l| l.height),
            layers,
            disable_red: true,
            ..Default::default()
        }));
    }

    fn make_offer(&mut self) {
        let mut api = self.publisher.sdp_api();
        let mut added = Vec::new();
        for (i, t) in self.tracks.iter().enumerate() {
            if t.mid.is_some() {
                continue;
            }
            let simulcast = (t.spec.layers.len() > 1).then(|| {
                let mut s = Simulcast::new();
                for l in &t.spec.layers {
                    s.add_send_layer(SimulcastLayer::new(&l.rid));
                }
                s
            });
            let mid = api.add_media(
                t.spec.kind,
                Direction::SendOnly,
                Some("conclave-client".into()),
                Some(t.spec.cid.clone()),
                simulcast,
            );
            added.push((i, mid));
        }
        let Some((offer, pending)) = api.apply() else {
            return;
        };
        for (i, mid) in added {
            if let Some(t) = self.tracks.get_mut(i) {
                t.mid = Some(mid);
            }
        }
        self.pending_offer = Some(pending);
        self.signal(Req::Offer(lk::SessionDescription {
            r#type: "offer".into(),
            sdp: offer.to_sdp_string(),
            ..Default::default()
        }));
    }

    /// Polls one connection until it only has a timeout left; returns it.
    fn drain(&mut self, pc: Pc) -> Instant {
        loop {
            let polled = self.rtc(pc).poll_output();
            match polled {
                Ok(RtcOutput::Timeout(t)) => return t,
                Ok(RtcOutput::Transmit(t)) => self.out.push_back(Output::Transmit {
                    pc,
                    destination: t.destination,
                    contents: t.contents.into(),
                }),
                Ok(RtcOutput::Event(e)) => self.on_event(pc, e),
                Err(e) => {
                    tracing::debug!(?pc, error = %e, "peer connection failed");
                    return self.now + Duration::from_secs(1);
                }
            }
        }
    }

    fn on_event(&mut self, pc: Pc, e: Event) {
        match e {
            Event::IceConnectionStateChange(
                IceConnectionState::Connected | IceConnectionState::Completed,
            ) => self.emit(ClientEvent::Connected(pc)),
            Event::RtpPacket(p) if pc == Pc::Subscriber => {
                let mid = self
                    .subscriber
                    .direct_api()
                    .stream_rx(&p.header.ssrc)
                    .map(|rx| rx.mid());
                let kind = mid.and_then(|m| self.subscriber.media(m)).map(|m| m.kind());
                if let (Some(mid), Some(kind)) = (mid, kind) {
                    self.emit(ClientEvent::Rtp {
                        mid,
                        kind,
                        track: self.remote_tracks.get(&mid).cloned(),
                        seq: *p.seq_no,
                        timestamp: p.header.timestamp,
                        marker: p.header.marker,
                        payload: p.payload,
                        at: p.timestamp,
                    });
                }
            }
            Event::KeyframeRequest(k) if pc == Pc::Publisher => self.emit(ClientEvent::KeyframeRequest {
                mid: k.mid,
                rid: k.rid,
            }),
            _ => {}
        }
    }
}

/// Remembers `a=msid` track ids per media section of an SDP; returns the
/// sections whose track is new, in the SDP's order.
fn note_msids(map: &mut HashMap<Mid, TrackSid>, sdp: &str) -> Vec<(Mid, TrackSid)> {
    let mut new = Vec::new();
    let mut mid: Option<Mid> = None;
    for line in sdp.lines() {
        if line.starts_with("m=") {
            mid = None;
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            mid = Some(Mid::from(m.trim()));
        } else if let (Some(m), Some(msid)) = (mid, line.strip_prefix("a=msid:"))
            && let Some(track) = msid
                .split_whitespace()
                .nth(1)
                .and_then(|t| TrackSid::parse(t).ok())
            && map.get(&m) != Some(&track)
        {
            map.insert(m, track.clone());
            new.push((m, track));
        }
    }
    new
}

/// The `candidate:` line from a trickled `RTCIceCandidateInit` JSON, without
/// a JSON parser: the value of its `"candidate"` member.
fn candidate_line(init: &str) -> Option<String> {
    let at = init.find("\"candidate\"")?;
    let rest = &init[at + "\"candidate\"".len()..];
    let start = rest.find('"')? + 1;
    let end = rest[start..].find('"')? + start;
    let line = &rest[start..end];
    Some(line.strip_prefix("a=").unwrap_or(line).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msids_are_mapped_to_their_sections() {
        let mut map = HashMap::new();
        let sdp = "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\na=msid:PA_x TR_a\r\nm=video 9 X 96\r\na=mid:1\r\n\
                   a=msid:PA_x TR_v\r\nm=application 9 X\r\na=mid:2\r\n";
        let new = note_msids(&mut map, sdp);
        assert_eq!(map.get(&Mid::from("0")).map(TrackSid::as_str), Some("TR_a"));
        assert_eq!(map.get(&Mid::from("1")).map(TrackSid::as_str), Some("TR_v"));
        assert_eq!(map.len(), 2);
        let names: Vec<(&str, &str)> = new.iter().map(|(m, t)| (&**m, t.as_str())).collect();
        assert_eq!(names, [("0", "TR_a"), ("1", "TR_v")], "new sections, in order");
        // The next offer repeats them and reuses section 1 for another track.
        let again = sdp.replace("TR_v", "TR_w");
        let new = note_msids(&mut map, &again);
        let names: Vec<(&str, &str)> = new.iter().map(|(m, t)| (&**m, t.as_str())).collect();
        assert_eq!(names, [("1", "TR_w")], "only what changed is new");
    }

    #[test]
    fn candidate_lines_come_out_of_their_json() {
        assert_eq!(
            candidate_line(r#"{"candidate":"candidate:1 1 udp 2 10.0.0.1 5000 typ host","sdpMid":"0"}"#)
                .as_deref(),
            Some("candidate:1 1 udp 2 10.0.0.1 5000 typ host")
        );
        assert_eq!(candidate_line("{}"), None);
        assert_eq!(candidate_line(r#"{"candidate":"unterminated"#), None);
        assert_eq!(candidate_line(""), None);
    }

    #[test]
    fn garbage_from_the_server_is_an_error_not_a_panic() {
        let now = Instant::now();
        let a: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let mut c = Client::new(now, a, a);
        assert!(matches!(
            c.handle_signal(now, &[0xff, 0xff, 0xff]),
            Err(ClientError::BadMessage)
        ));
        let bad_offer = lk::SignalResponse {
            message: Some(Resp::Offer(lk::SessionDescription {
                r#type: "offer".into(),
                sdp: "not sdp".into(),
                ..Default::default()
            })),
        };
        let bytes = prost::Message::encode_to_vec(&bad_offer);
        assert!(matches!(c.handle_signal(now, &bytes), Err(ClientError::BadSdp)));
        c.handle_datagram(now, Pc::Subscriber, a, &[1, 2, 3]);
        assert!(matches!(c.poll_output(), Output::Timeout(_)));
    }
}
