//! Unit tests of the session core, driven through its public inputs with a
//! hand-made clock and no sockets. Being inside the crate, they also check
//! the internal state a rule is meant to protect (a refused request must not
//! have changed anything).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conclave_media::{Kind, MediaConfig, MediaEvent, MediaId};
use conclave_types::{ParticipantIdentity, ParticipantSid, Permissions, RoomName, TrackSid, TrackSource};
use livekit_protocol as lk;
use lk::signal_request::Message as Req;
use lk::signal_response::Message as Resp;
use prost::Message as _;

use super::{
    ConnId, JoinParams, Now, Output, PING_TIMEOUT_SECS, RESUME_GRACE, RoomSettings, Sfu, SfuConfig,
    SignalError, TICK,
};

const SERVER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)), 5000);
/// Base of the wall clock shown to clients.
const UNIX_MS: i64 = 1_800_000_000_000;

/// One signalling message or a close, by connection.
type Sent = Vec<(ConnId, Option<Resp>)>;

struct Harness {
    sfu: Sfu,
    start: Instant,
    elapsed: Duration,
}

impl Harness {
    fn new() -> Self {
        Self::with_room(RoomSettings::default())
    }

    fn with_room(default_room: RoomSettings) -> Self {
        // The only read of the real clock; everything after is simulated.
        let start = Instant::now();
        Self {
            sfu: Sfu::new(
                SfuConfig {
                    media: MediaConfig {
                        candidates: vec![SERVER],
                    },
                    server_version: "1.0.0-test".into(),
                    node_id: "ND_unit".into(),
                    default_room,
                },
                start,
            ),
            start,
            elapsed: Duration::ZERO,
        }
    }

    fn now(&self) -> Now {
        Now {
            mono: self.start + self.elapsed,
            unix_ms: UNIX_MS + self.elapsed.as_millis() as i64,
        }
    }

    fn room() -> RoomName {
        RoomName::new("unit-room").expect("room name")
    }

    fn join_with(
        &mut self,
        conn: u64,
        identity: &str,
        permissions: Permissions,
    ) -> Result<ParticipantSid, SignalError> {
        let now = self.now();
        self.sfu.handle_join(
            now,
            ConnId(conn),
            JoinParams {
                room: Self::room(),
                identity: ParticipantIdentity::new(identity).expect("identity"),
                name: format!("{identity} (name)"),
                metadata: String::new(),
                attributes: HashMap::new(),
                permissions,
                create_room: true,
                auto_subscribe: true,
                client_protocol: 16,
                kind: lk::participant_info::Kind::Standard,
            },
        )
    }

    fn join(&mut self, conn: u64, identity: &str) -> ParticipantSid {
        self.join_with(conn, identity, Permissions::default())
            .expect("join")
    }

    fn request(&mut self, conn: u64, m: Req) -> Result<(), SignalError> {
        let now = self.now();
        self.sfu
            .handle_request(now, ConnId(conn), lk::SignalRequest { message: Some(m) })
    }

    /// Moves the simulated clock and runs the timers.
    fn advance(&mut self, by: Duration) {
        self.elapsed += by;
        let now = self.now();
        self.sfu.handle_timeout(now);
    }

    /// Lets one tick pass (news of those who publish nothing goes out),
    /// then drains.
    fn tick_and_drain(&mut self) -> Sent {
        self.advance(TICK);
        self.drain()
    }

    /// Every signalling message and close queued so far (datagrams dropped).
    fn drain(&mut self) -> Sent {
        let mut out = Vec::new();
        loop {
            match self.sfu.poll_output() {
                Output::Timeout(_) => return out,
                Output::Signal { conn, message } => out.push((conn, Some(message.message().clone()))),
                Output::Close { conn } => out.push((conn, None)),
                Output::Transmit { .. } => {}
            }
        }
    }

    fn publish(&mut self, conn: u64, source: lk::TrackSource, kind: lk::TrackType, cid: &str) -> String {
        self.request(conn, add_track(source, kind, cid))
            .expect("add track");
        let out = self.drain();
        msgs(&out, conn)
            .into_iter()
            .find_map(|m| match m {
                Resp::TrackPublished(t) if t.cid == cid => t.track.as_ref().map(|t| t.sid.clone()),
                _ => None,
            })
            .expect("a TrackPublished response")
    }

    /// What the media core reports when the publisher's offer carries the
    /// track: from then on the track is part of the participant's info.
    fn media_arrives(&mut self, owner: &ParticipantSid, cid: &str, mid: &str) {
        let peer = self.sfu.participants[owner].publisher;
        self.sfu.on_media_event(MediaEvent::TrackAdded {
            peer,
            mid: MediaId::from(str0m::media::Mid::from(mid)),
            kind: Kind::Audio,
            track_id: cid.into(),
            rids: Vec::new(),
        });
        self.drain();
    }

    fn track_muted(&self, owner: &ParticipantSid, track: &str) -> bool {
        let sid = TrackSid::parse(track).expect("track sid");
        self.sfu.participants[owner].tracks[&sid].muted
    }
}

fn msgs(out: &Sent, conn: u64) -> Vec<&Resp> {
    out.iter()
        .filter(|(c, _)| c.0 == conn)
        .filter_map(|(_, m)| m.as_ref())
        .collect()
}

fn closed(out: &Sent, conn: u64) -> bool {
    out.iter().any(|(c, m)| c.0 == conn && m.is_none())
}

/// Participant infos sent to `conn` in updates.
fn updates(out: &Sent, conn: u64) -> Vec<lk::ParticipantInfo> {
    msgs(out, conn)
        .into_iter()
        .filter_map(|m| match m {
            Resp::Update(u) => Some(u.participants.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn add_track(source: lk::TrackSource, kind: lk::TrackType, cid: &str) -> Req {
    Req::AddTrack(lk::AddTrackRequest {
        cid: cid.into(),
        name: format!("{cid} name"),
        r#type: kind as i32,
        source: source as i32,
        ..Default::default()
    })
}

fn not_allowed(m: &Resp) -> bool {
    matches!(m, Resp::RequestResponse(r) if r.reason == lk::request_response::Reason::NotAllowed as i32)
}

#[test]
fn join_sends_the_join_response_first_then_an_offer() {
    let mut h = Harness::new();
    let perms = Permissions {
        can_publish: false,
        can_publish_data: false,
        can_update_metadata: true,
        ..Permissions::default()
    };
    let sid = h.join_with(1, "ada", perms).expect("join");
    let out = h.drain();
    let m = msgs(&out, 1);
    let Some(Resp::Join(join)) = m.first() else {
        panic!("the first message is not the join response: {m:?}");
    };
    assert!(join.subscriber_primary, "the server offers the subscriber side");
    assert_eq!(join.ping_timeout, PING_TIMEOUT_SECS);
    assert!(join.ping_interval > 0 && join.ping_interval < join.ping_timeout);
    assert!(join.other_participants.is_empty());
    let me = join.participant.as_ref().expect("participant info");
    assert_eq!(me.sid, sid.to_string());
    assert_eq!(me.identity, "ada");
    assert_eq!(me.state, lk::participant_info::State::Joined as i32);
    let p = me.permission.as_ref().expect("permissions in the join response");
    assert!(!p.can_publish);
    assert!(!p.can_publish_data);
    assert!(p.can_subscribe);
    assert!(p.can_update_metadata);
    assert_eq!(join.room.as_ref().map(|r| r.name.as_str()), Some("unit-room"));
    let offer_at = m
        .iter()
        .position(|m| matches!(m, Resp::Offer(o) if o.r#type == "offer" && o.sdp.contains("m=application")))
        .expect("a subscriber offer with the data channels");
    assert!(offer_at > 0);
    // A publisher and a subscriber connection per participant.
    assert_eq!(h.sfu.media.peer_count(), 2);
    assert_eq!(h.sfu.by_conn.get(&ConnId(1)), Some(&sid));
}

#[test]
fn a_second_join_updates_the_first() {
    let mut h = Harness::new();
    let ada = h.join(1, "ada");
    h.drain();
    let bob = h.join(2, "bob");
    let out = h.tick_and_drain();
    let seen = updates(&out, 1);
    assert!(
        seen.iter()
            .any(|p| p.sid == bob.to_string() && p.identity == "bob"),
        "ada was not told about bob: {seen:?}"
    );
    let Some(Resp::Join(j)) = msgs(&out, 2).first().copied() else {
        panic!("bob got no join response first");
    };
    let others: Vec<&str> = j.other_participants.iter().map(|p| p.sid.as_str()).collect();
    assert_eq!(others, vec![ada.to_string().as_str()]);
    assert!(
        updates(&out, 2).iter().all(|p| p.sid != ada.to_string()),
        "bob learns of ada from the join response, not a separate update"
    );
}

#[test]
fn publishing_without_permission_is_refused() {
    let mut h = Harness::new();
    let viewer = h
        .join_with(
            1,
            "viewer",
            Permissions {
                can_publish: false,
                ..Permissions::default()
            },
        )
        .expect("join");
    let speaker = h
        .join_with(
            2,
            "speaker",
            Permissions {
                sources: vec![TrackSource::Microphone],
                ..Permissions::default()
            },
        )
        .expect("join");
    h.drain();

    assert_eq!(
        h.request(
            1,
            add_track(lk::TrackSource::Microphone, lk::TrackType::Audio, "a")
        ),
        Err(SignalError::NotAllowed)
    );
    // The sources list lacks the camera (an unnamed video source is one).
    for (source, cid) in [
        (lk::TrackSource::Camera, "c"),
        (lk::TrackSource::Unknown, "u"),
        (lk::TrackSource::ScreenShare, "s"),
    ] {
        assert_eq!(
            h.request(2, add_track(source, lk::TrackType::Video, cid)),
            Err(SignalError::NotAllowed),
            "{source:?} was accepted"
        );
    }
    let out = h.drain();
    for conn in [1, 2] {
        let m = msgs(&out, conn);
        assert!(
            !m.iter().any(|m| matches!(m, Resp::TrackPublished(_))),
            "a refused track was published"
        );
        assert!(m.iter().any(|m| not_allowed(m)), "no NOT_ALLOWED response");
    }
    // The refusal names the request it refuses.
    assert!(msgs(&out, 1).iter().any(|m| matches!(
        m,
        Resp::RequestResponse(r)
            if matches!(&r.request, Some(lk::request_response::Request::AddTrack(a)) if a.cid == "a")
    )));
    assert!(h.sfu.participants[&viewer].tracks.is_empty());
    assert!(h.sfu.participants[&speaker].tracks.is_empty());
    // Nobody else heard of the refused tracks.
    assert!(updates(&out, 1).iter().all(|p| p.tracks.is_empty()));
}

#[test]
fn publishing_with_permission_is_announced() {
    let mut h = Harness::new();
    let speaker = h
        .join_with(
            1,
            "speaker",
            Permissions {
                sources: vec![TrackSource::Microphone],
                ..Permissions::default()
            },
        )
        .expect("join");
    h.drain();
    let track = h.publish(1, lk::TrackSource::Microphone, lk::TrackType::Audio, "mic");
    assert!(track.starts_with("TR_"), "not a track sid: {track}");
    let stored = &h.sfu.participants[&speaker].tracks;
    assert_eq!(stored.len(), 1);
    assert!(stored.values().all(|t| t.cid == "mic" && t.mid.is_none()));
    // Announcing the same client track again gives the same track.
    let again = h.publish(1, lk::TrackSource::Microphone, lk::TrackType::Audio, "mic");
    assert_eq!(again, track);
    assert_eq!(h.sfu.participants[&speaker].tracks.len(), 1);
}

#[test]
fn the_room_service_can_mute_but_never_unmute() {
    let mut h = Harness::new();
    let ada = h.join(1, "ada");
    h.join(2, "bob");
    let track = h.publish(1, lk::TrackSource::Microphone, lk::TrackType::Audio, "mic");
    h.media_arrives(&ada, "mic", "0");
    let room = Harness::room();
    let identity = ParticipantIdentity::new("ada").expect("identity");

    // Ada muted herself; nobody may switch her microphone back on.
    h.request(
        1,
        Req::Mute(lk::MuteTrackRequest {
            sid: track.clone(),
            muted: true,
        }),
    )
    .expect("own mute");
    h.drain();
    assert_eq!(
        h.sfu.mute_published_track(&room, &identity, &track, false),
        Err(SignalError::NotAllowed)
    );
    assert!(h.track_muted(&ada, &track), "the refused unmute unmuted");
    let out = h.drain();
    assert!(
        !msgs(&out, 1)
            .iter()
            .any(|m| matches!(m, Resp::Mute(r) if !r.muted)),
        "the owner was told to unmute"
    );

    // Unmuted by her again, then muted by a moderator.
    h.request(
        1,
        Req::Mute(lk::MuteTrackRequest {
            sid: track.clone(),
            muted: false,
        }),
    )
    .expect("own unmute");
    h.drain();
    let info = h
        .sfu
        .mute_published_track(&room, &identity, &track, true)
        .expect("mute");
    assert!(info.muted);
    assert_eq!(info.sid, track);
    assert!(h.track_muted(&ada, &track));
    let out = h.drain();
    assert!(
        msgs(&out, 1)
            .iter()
            .any(|m| matches!(m, Resp::Mute(r) if r.sid == track && r.muted)),
        "the owner's client was not told to mute"
    );
    assert!(
        updates(&out, 2)
            .iter()
            .any(|p| p.sid == ada.to_string() && p.tracks.iter().any(|t| t.sid == track && t.muted)),
        "the room did not learn of the mute"
    );
    assert_eq!(
        h.sfu
            .mute_published_track(&room, &identity, "TR_doesnotexist", true),
        Err(SignalError::TrackNotFound)
    );
}

#[test]
fn mute_requests_only_reach_the_senders_own_tracks() {
    let mut h = Harness::new();
    let ada = h.join(1, "ada");
    h.join(2, "bob");
    let track = h.publish(1, lk::TrackSource::Microphone, lk::TrackType::Audio, "mic");
    h.media_arrives(&ada, "mic", "0");

    for muted in [true, false] {
        assert_eq!(
            h.request(
                2,
                Req::Mute(lk::MuteTrackRequest {
                    sid: track.clone(),
                    muted,
                }),
            ),
            Err(SignalError::TrackNotFound)
        );
        assert!(!h.track_muted(&ada, &track), "bob changed ada's track");
    }
    let out = h.drain();
    assert!(
        updates(&out, 1).is_empty() && updates(&out, 2).is_empty(),
        "a refused mute was announced"
    );

    // Her own track: both ways, announced to the room.
    let version = h.sfu.participants[&ada].version;
    h.request(
        1,
        Req::Mute(lk::MuteTrackRequest {
            sid: track.clone(),
            muted: true,
        }),
    )
    .expect("mute");
    assert!(h.track_muted(&ada, &track));
    assert!(h.sfu.participants[&ada].version > version);
    let out = h.drain();
    assert!(
        updates(&out, 2)
            .iter()
            .any(|p| p.tracks.iter().any(|t| t.sid == track && t.muted))
    );
    h.request(
        1,
        Req::Mute(lk::MuteTrackRequest {
            sid: track.clone(),
            muted: false,
        }),
    )
    .expect("unmute");
    assert!(!h.track_muted(&ada, &track));
}

#[test]
fn metadata_updates_need_the_permission() {
    let mut h = Harness::new();
    let ada = h.join(1, "ada");
    let bob = h
        .join_with(
            2,
            "bob",
            Permissions {
                can_update_metadata: true,
                ..Permissions::default()
            },
        )
        .expect("join");
    h.tick_and_drain();
    let update = |id| {
        Req::UpdateMetadata(lk::UpdateParticipantMetadata {
            name: "Queen".into(),
            metadata: "{\"x\":1}".into(),
            request_id: id,
            ..Default::default()
        })
    };
    assert_eq!(h.request(1, update(7)), Err(SignalError::NotAllowed));
    let out = h.tick_and_drain();
    assert!(
        msgs(&out, 1)
            .iter()
            .any(|m| not_allowed(m) && matches!(m, Resp::RequestResponse(r) if r.request_id == 7))
    );
    assert!(updates(&out, 2).is_empty(), "a refused change was announced");
    assert_eq!(h.sfu.participants[&ada].name, "ada (name)");
    assert!(h.sfu.participants[&ada].metadata.is_empty());

    h.request(2, update(8)).expect("allowed");
    let out = h.tick_and_drain();
    assert!(msgs(&out, 2).iter().any(|m| matches!(
        m,
        Resp::RequestResponse(r) if r.request_id == 8 && r.reason == lk::request_response::Reason::Ok as i32
    )));
    assert_eq!(h.sfu.participants[&bob].name, "Queen");
    assert!(
        updates(&out, 1)
            .iter()
            .any(|p| p.sid == bob.to_string() && p.name == "Queen" && p.metadata == "{\"x\":1}")
    );
}

#[test]
fn leaving_is_announced_as_disconnected() {
    let mut h = Harness::new();
    h.join(1, "ada");
    let bob = h.join(2, "bob");
    h.drain();
    h.request(2, Req::Leave(lk::LeaveRequest::default()))
        .expect("leave");
    let out = h.tick_and_drain();
    let gone: Vec<_> = updates(&out, 1)
        .into_iter()
        .filter(|p| p.sid == bob.to_string())
        .collect();
    assert_eq!(gone.len(), 1, "ada got {gone:?}");
    assert_eq!(gone[0].state, lk::participant_info::State::Disconnected as i32);
    assert_eq!(
        gone[0].disconnect_reason,
        lk::DisconnectReason::ClientInitiated as i32
    );
    // The leaver is not told to leave, its connection is just closed.
    assert!(!msgs(&out, 2).iter().any(|m| matches!(m, Resp::Leave(_))));
    assert!(closed(&out, 2));
    assert_eq!(h.sfu.participants.len(), 1);
    assert_eq!(h.sfu.media.peer_count(), 2, "bob's peer connections stayed");
    assert_eq!(h.request(2, Req::Ping(1)), Err(SignalError::UnknownConnection));
}

#[test]
fn pings_are_answered() {
    let mut h = Harness::new();
    h.join(1, "ada");
    h.drain();
    h.elapsed = Duration::from_millis(1234);
    h.request(1, Req::Ping(4242)).expect("ping");
    h.request(
        1,
        Req::PingReq(lk::Ping {
            timestamp: 99,
            rtt: 10,
        }),
    )
    .expect("ping");
    let out = h.drain();
    let m = msgs(&out, 1);
    assert!(matches!(m.first(), Some(Resp::Pong(4242))), "got {m:?}");
    assert!(m.iter().any(|m| matches!(
        m,
        Resp::PongResp(p) if p.last_ping_timestamp == 99 && p.timestamp == UNIX_MS + 1234
    )));
}

#[test]
fn a_silent_participant_times_out() {
    let mut h = Harness::new();
    h.join(1, "ada");
    let bob = h.join(2, "bob");
    h.drain();
    let timeout = Duration::from_secs(PING_TIMEOUT_SECS as u64);
    // Ada keeps pinging, bob says nothing.
    for _ in 0..3 {
        h.advance(timeout / 3);
        h.request(1, Req::Ping(0)).expect("ping");
    }
    assert_eq!(h.sfu.participants.len(), 2, "removed at the timeout, not after");
    h.advance(Duration::from_secs(1));
    // Bob's signalling is closed, but he may still resume for a while.
    let out = h.drain();
    assert!(
        closed(&out, 2),
        "bob's connection was not closed at the ping timeout"
    );
    assert_eq!(
        h.sfu.participants.len(),
        2,
        "bob was removed before he could resume"
    );
    // Ada goes on pinging through bob's grace for a resume.
    let step = Duration::from_secs(1);
    let mut waited = Duration::ZERO;
    while waited + step < RESUME_GRACE {
        h.advance(step);
        waited += step;
        h.request(1, Req::Ping(0)).expect("ping");
        assert_eq!(h.sfu.participants.len(), 2, "bob was removed within the grace");
    }
    h.advance(RESUME_GRACE - waited + step);
    assert_eq!(
        h.sfu.participants.len(),
        1,
        "bob stayed after the grace for a resume"
    );
    assert!(!h.sfu.participants.contains_key(&bob));
    let out = h.tick_and_drain();
    assert!(
        updates(&out, 1)
            .iter()
            .any(|p| p.sid == bob.to_string() && p.state == lk::participant_info::State::Disconnected as i32)
    );
    assert!(!closed(&out, 1));
}

#[test]
fn empty_rooms_close_after_their_timeouts() {
    let settings = RoomSettings {
        empty_timeout: 60,
        departure_timeout: 10,
        ..RoomSettings::default()
    };
    let mut h = Harness::with_room(settings.clone());
    // A room nobody joined lives for its empty timeout.
    let now = h.now();
    h.sfu
        .create_room(now, RoomName::new("unused").expect("name"), settings);
    h.join(1, "ada");
    h.request(1, Req::Leave(lk::LeaveRequest::default()))
        .expect("leave");
    h.drain();
    assert_eq!(h.sfu.rooms.len(), 2);
    h.advance(Duration::from_secs(9));
    assert!(
        h.sfu.rooms.contains_key(&Harness::room()),
        "closed before the departure timeout"
    );
    h.advance(Duration::from_secs(2));
    assert!(
        !h.sfu.rooms.contains_key(&Harness::room()),
        "the room stayed after its departure timeout"
    );
    assert_eq!(h.sfu.rooms.len(), 1, "the unused room went early");
    h.advance(Duration::from_secs(50));
    assert!(h.sfu.rooms.is_empty(), "the unused room stayed");
}

#[test]
fn a_full_room_refuses_joins() {
    let mut h = Harness::with_room(RoomSettings {
        max_participants: 2,
        ..RoomSettings::default()
    });
    h.join(1, "ada");
    h.join(2, "bob");
    h.drain();
    assert_eq!(
        h.join_with(3, "eve", Permissions::default()),
        Err(SignalError::RoomFull)
    );
    let out = h.drain();
    assert!(msgs(&out, 3).is_empty());
    assert!(updates(&out, 1).is_empty(), "a refused join was announced");
    assert_eq!(h.sfu.participants.len(), 2);
    assert_eq!(
        h.sfu.media.peer_count(),
        4,
        "a refused join left peer connections"
    );
    assert!(!h.sfu.by_conn.contains_key(&ConnId(3)));
}

#[test]
fn a_duplicate_identity_replaces_the_old_session() {
    let mut h = Harness::new();
    let old = h.join(1, "ada");
    h.join(2, "bob");
    h.drain();
    let new = h.join(3, "ada");
    assert_ne!(old, new);
    let out = h.tick_and_drain();
    let m = msgs(&out, 1);
    assert!(
        m.iter().any(
            |m| matches!(m, Resp::Leave(l) if l.reason == lk::DisconnectReason::DuplicateIdentity as i32)
        )
    );
    assert!(closed(&out, 1), "the old connection was not closed");
    assert!(matches!(msgs(&out, 3).first(), Some(Resp::Join(_))));
    let seen = updates(&out, 2);
    assert!(
        seen.iter()
            .any(|p| p.sid == old.to_string() && p.state == lk::participant_info::State::Disconnected as i32)
    );
    assert!(seen.iter().any(|p| p.sid == new.to_string()));
    assert_eq!(h.sfu.participants.len(), 2);
    assert_eq!(h.sfu.media.peer_count(), 4);
    assert_eq!(h.request(1, Req::Ping(1)), Err(SignalError::UnknownConnection));
}

/// A client's subscriber connection on the simulated network: a normal
/// (full ICE) str0m peer that answers the server's offer.
mod net {
    use super::*;
    use str0m::change::SdpOffer;
    use str0m::net::{Protocol, Receive};
    use str0m::{Candidate, Event, Input, Output as RtcOutput, Rtc};

    pub const CLIENT: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 3)), 7000);

    pub struct Client {
        pub rtc: Rtc,
        pub events: Vec<Event>,
    }

    impl Client {
        /// Answers `offer`; the answer SDP goes back through signalling.
        pub fn answering(now: Instant, offer: &str) -> (Self, String) {
            let mut rtc = Rtc::builder().build(now);
            rtc.add_local_candidate(Candidate::host(CLIENT, "udp").expect("candidate"));
            let answer = rtc
                .sdp_api()
                .accept_offer(SdpOffer::from_sdp_string(offer).expect("offer parses"))
                .expect("client answers");
            (
                Self {
                    rtc,
                    events: Vec::new(),
                },
                answer.to_sdp_string(),
            )
        }
    }

    /// Delivers datagrams both ways until quiet; signalling goes to `sent`.
    pub fn settle(h: &mut Harness, c: &mut Client, sent: &mut Sent) {
        for _ in 0..10_000 {
            let now = h.now().mono;
            let mut moved = false;
            loop {
                match c.rtc.poll_output().expect("client output") {
                    RtcOutput::Timeout(_) => break,
                    RtcOutput::Event(e) => c.events.push(e),
                    RtcOutput::Transmit(t) => {
                        moved = true;
                        let bytes: Vec<u8> = t.contents.into();
                        let n = h.now();
                        h.sfu.handle_datagram(n, t.source, t.destination, &bytes);
                    }
                }
            }
            loop {
                match h.sfu.poll_output() {
                    Output::Timeout(_) => break,
                    Output::Signal { conn, message } => sent.push((conn, Some(message.message().clone()))),
                    Output::Close { conn } => sent.push((conn, None)),
                    Output::Transmit {
                        source,
                        destination,
                        contents,
                    } => {
                        // Datagrams for other participants' (unconnected) peers are lost.
                        if destination == CLIENT {
                            moved = true;
                            let recv = Receive::new(Protocol::Udp, source, destination, &contents)
                                .expect("datagram");
                            c.rtc
                                .handle_input(Input::Receive(now, recv))
                                .expect("client input");
                        }
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the simulated network never settled");
    }

    pub fn step(h: &mut Harness, c: &mut Client, by: Duration, sent: &mut Sent) {
        h.advance(by);
        c.rtc
            .handle_input(Input::Timeout(h.now().mono))
            .expect("client timeout");
        settle(h, c, sent);
    }
}

#[test]
fn relayed_data_names_the_real_sender() {
    use str0m::Event;

    let mut h = Harness::new();
    let ada = h.join(1, "ada");
    let bob = h.join(2, "bob");
    let out = h.drain();
    let offer = msgs(&out, 2)
        .into_iter()
        .find_map(|m| match m {
            Resp::Offer(o) => Some(o.sdp.clone()),
            _ => None,
        })
        .expect("bob's subscriber offer");
    let (mut client, answer) = net::Client::answering(h.now().mono, &offer);
    h.request(
        2,
        Req::Answer(lk::SessionDescription {
            r#type: "answer".into(),
            sdp: answer,
            ..Default::default()
        }),
    )
    .expect("answer accepted");

    // ICE, DTLS and SCTP come up in simulated time; pings keep bob in.
    let mut sent = Vec::new();
    let mut open = None;
    for i in 0..500 {
        net::step(&mut h, &mut client, Duration::from_millis(10), &mut sent);
        if i % 100 == 0 {
            h.request(1, Req::Ping(0)).expect("ping");
            h.request(2, Req::Ping(0)).expect("ping");
        }
        open = client.events.iter().find_map(|e| match e {
            Event::ChannelOpen(id, label) if label == conclave_media::RELIABLE_LABEL => Some(*id),
            _ => None,
        });
        if open.is_some() {
            break;
        }
    }
    let reliable = open.expect("bob's reliable data channel never opened");

    // Ada's client claims to be someone else, twice over.
    let spoofed = lk::DataPacket {
        kind: lk::data_packet::Kind::Reliable as i32,
        participant_identity: "bob".into(),
        participant_sid: bob.to_string(),
        value: Some(lk::data_packet::Value::User(lk::UserPacket {
            payload: b"hello".to_vec(),
            participant_identity: "mallory".into(),
            participant_sid: "PA_mallory".into(),
            topic: Some("chat".into()),
            ..Default::default()
        })),
        ..Default::default()
    };
    // What the media core reports for a message on ada's publisher connection.
    let peer = h.sfu.participants[&ada].publisher;
    h.sfu.on_media_event(MediaEvent::Data {
        peer,
        reliable: true,
        data: spoofed.encode_to_vec(),
    });
    // Data only counts on the publisher connection: the same on ada's
    // subscriber connection is not relayed.
    let ada_sub = h.sfu.participants[&ada].subscriber;
    h.sfu.on_media_event(MediaEvent::Data {
        peer: ada_sub,
        reliable: true,
        data: spoofed.encode_to_vec(),
    });
    for _ in 0..50 {
        net::step(&mut h, &mut client, Duration::from_millis(10), &mut sent);
    }
    let got: Vec<lk::DataPacket> = client
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ChannelData(d) if d.id == reliable => Some(d.data.clone()),
            _ => None,
        })
        .map(|d| lk::DataPacket::decode(d.as_slice()).expect("a data packet"))
        .collect();
    assert_eq!(got.len(), 1, "bob got {got:?}");
    let p = &got[0];
    assert_eq!(p.participant_identity, "ada");
    assert_eq!(p.participant_sid, ada.to_string());
    let Some(lk::data_packet::Value::User(u)) = &p.value else {
        panic!("not a user packet: {p:?}");
    };
    assert_eq!(u.participant_identity, "ada");
    assert_eq!(u.participant_sid, ada.to_string());
    assert_eq!(u.payload, b"hello");
    assert_eq!(u.topic.as_deref(), Some("chat"));

    // The hosts take the chat (data) right away: nothing more is relayed.
    let no_chat = Permissions {
        can_publish_data: false,
        ..Permissions::default()
    };
    h.sfu
        .set_permissions(
            &Harness::room(),
            &ParticipantIdentity::new("ada").expect("identity"),
            no_chat,
        )
        .expect("permissions");
    h.sfu.on_media_event(MediaEvent::Data {
        peer,
        reliable: true,
        data: spoofed.encode_to_vec(),
    });
    for _ in 0..50 {
        net::step(&mut h, &mut client, Duration::from_millis(10), &mut sent);
    }
    let after = client
        .events
        .iter()
        .filter(|e| matches!(e, Event::ChannelData(d) if d.id == reliable))
        .count();
    assert_eq!(after, 1, "data was relayed without the right");
}

#[test]
fn resume_needs_the_same_identity() {
    let mut h = Harness::new();
    let sid = h.join(1, "ada");
    h.join(2, "bob");
    h.drain();
    let now = h.now();
    h.sfu.handle_disconnect(now, ConnId(1));
    assert_eq!(h.sfu.participants.len(), 2, "a dropped connection is not a leave");
    let room = Harness::room();
    let bob = ParticipantIdentity::new("bob").expect("id");
    let ada = ParticipantIdentity::new("ada").expect("id");
    assert_eq!(
        h.sfu.handle_resume(now, ConnId(3), &sid, &room, &bob),
        Err(SignalError::NotAllowed)
    );
    h.sfu
        .handle_resume(now, ConnId(4), &sid, &room, &ada)
        .expect("resume");
    let out = h.drain();
    let to_new = msgs(&out, 4);
    assert!(
        matches!(to_new.first(), Some(Resp::Reconnect(_))),
        "first message is not the reconnect response"
    );
    assert!(updates(&out, 4).iter().any(|p| p.identity == "bob"));
    assert!(
        to_new
            .iter()
            .any(|m| matches!(m, Resp::Offer(o) if o.sdp.contains("a=ice-ufrag")))
    );
    assert!(msgs(&out, 3).is_empty(), "the refused connection got messages");
}

#[test]
fn a_right_taken_away_mutes_the_track_and_its_owner_cannot_unmute_it() {
    let mut h = Harness::new();
    let ada = h.join(1, "ada");
    h.join(2, "bob");
    let track = h.publish(1, lk::TrackSource::Microphone, lk::TrackType::Audio, "mic");
    h.media_arrives(&ada, "mic", "0");
    h.drain();
    let room = Harness::room();
    let identity = ParticipantIdentity::new("ada").expect("identity");

    // The hosts take the microphone away: the track is muted at once and
    // everyone learns of it.
    let silent = Permissions {
        sources: vec![TrackSource::Camera],
        ..Permissions::default()
    };
    h.sfu
        .set_permissions(&room, &identity, silent)
        .expect("permissions");
    assert!(h.track_muted(&ada, &track));
    let out = h.drain();
    assert!(
        msgs(&out, 1)
            .iter()
            .any(|m| matches!(m, Resp::Mute(r) if r.sid == track && r.muted))
    );
    assert!(
        updates(&out, 2)
            .iter()
            .any(|p| p.sid == ada.to_string() && p.tracks.iter().any(|t| t.sid == track && t.muted))
    );

    // Her client tries to unmute: refused, and told to stay muted.
    assert_eq!(
        h.request(
            1,
            Req::Mute(lk::MuteTrackRequest {
                sid: track.clone(),
                muted: false,
            }),
        ),
        Err(SignalError::NotAllowed)
    );
    assert!(h.track_muted(&ada, &track));
    let out = h.drain();
    assert!(
        msgs(&out, 1)
            .iter()
            .any(|m| matches!(m, Resp::Mute(r) if r.sid == track && r.muted))
    );

    // A moderator muting a whole source works the same way; hiding is never possible.
    let hidden = Permissions {
        hidden: true,
        ..Permissions::default()
    };
    assert_eq!(
        h.sfu.set_permissions(&room, &identity, hidden),
        Err(SignalError::NotAllowed)
    );
    h.sfu
        .set_permissions(&room, &identity, Permissions::default())
        .expect("permissions");
    h.request(
        1,
        Req::Mute(lk::MuteTrackRequest {
            sid: track.clone(),
            muted: false,
        }),
    )
    .expect("her own unmute, with the right back");
    assert!(!h.track_muted(&ada, &track));
    assert_eq!(
        h.sfu.mute_sources(&room, &identity, &[TrackSource::Microphone]),
        Ok(1)
    );
    assert!(h.track_muted(&ada, &track));
}

#[test]
fn bots_recorders_and_phone_lines_are_shown_as_what_they_are() {
    let mut h = Harness::new();
    h.join(1, "ada");
    h.drain();
    let now = h.now();
    h.sfu
        .handle_join(
            now,
            ConnId(2),
            JoinParams {
                room: Harness::room(),
                identity: ParticipantIdentity::new("recorder").expect("identity"),
                name: "Recorder".into(),
                metadata: String::new(),
                attributes: HashMap::new(),
                permissions: Permissions::default(),
                create_room: true,
                auto_subscribe: true,
                client_protocol: 16,
                kind: lk::participant_info::Kind::Egress,
            },
        )
        .expect("join");
    let out = h.tick_and_drain();
    assert!(
        updates(&out, 1)
            .iter()
            .any(|p| p.identity == "recorder" && p.kind == lk::participant_info::Kind::Egress as i32),
        "ada was not told that a recorder joined"
    );
}

/// Listeners who join together are announced together: each member gets
/// one update at the next tick with everyone who joined after its own join
/// (the others were in its join response), not a message per pair.
#[test]
fn listeners_joining_together_are_announced_in_one_update_per_member() {
    let mut h = Harness::new();
    h.join(1, "ada");
    h.tick_and_drain();
    let listeners: Vec<ParticipantSid> = (2..=6).map(|c| h.join(c, &format!("listener-{c}"))).collect();
    let out = h.drain();
    assert!(
        updates(&out, 1).is_empty(),
        "a listener's news did not wait for the tick"
    );
    let out = h.tick_and_drain();
    for conn in 1..=6u64 {
        // Connection 1 is ada's, connection c the listener at c - 2.
        let later = &listeners[(conn as usize).saturating_sub(1).min(listeners.len())..];
        let mut expected: Vec<String> = later.iter().map(|s| s.to_string()).collect();
        expected.sort();
        let batches = msgs(&out, conn)
            .into_iter()
            .filter(|m| matches!(m, Resp::Update(_)))
            .count();
        assert_eq!(batches, usize::from(!expected.is_empty()), "connection {conn}");
        let mut seen: Vec<String> = updates(&out, conn).into_iter().map(|p| p.sid).collect();
        seen.sort();
        assert_eq!(seen, expected, "connection {conn}");
    }
    // Nothing is sent twice.
    assert!(updates(&h.tick_and_drain(), 1).is_empty());
}

/// The news that every earlier member gets is one message, built and
/// encoded once for all of them; those who joined with it get their own.
#[test]
fn news_for_every_earlier_member_is_one_shared_message() {
    let mut h = Harness::new();
    h.join(1, "ada");
    h.join(2, "bob");
    h.tick_and_drain();
    let newcomers: Vec<String> = (3..=6)
        .map(|c| h.join(c, &format!("listener-{c}")).to_string())
        .collect();
    h.drain();
    h.advance(TICK);
    let mut updates: HashMap<u64, std::sync::Arc<crate::Outgoing>> = HashMap::new();
    loop {
        match h.sfu.poll_output() {
            Output::Timeout(_) => break,
            Output::Signal { conn, message } if matches!(message.message(), Resp::Update(_)) => {
                assert!(updates.insert(conn.0, message).is_none(), "one update per member");
            }
            _ => {}
        }
    }
    let (ada, bob) = (&updates[&1], &updates[&2]);
    assert!(std::sync::Arc::ptr_eq(ada, bob), "ada and bob share one message");
    let Resp::Update(u) = ada.message() else {
        panic!("an update")
    };
    let sids: Vec<String> = u.participants.iter().map(|p| p.sid.clone()).collect();
    assert_eq!(sids, newcomers, "in the order they joined");
    // Encoded once, as the `SignalResponse` a client decodes.
    let bytes = ada.encoded();
    assert_eq!(bytes.as_ptr(), bob.encoded().as_ptr(), "encoded once");
    let decoded = lk::SignalResponse::decode(bytes.as_ref()).expect("decodes");
    assert_eq!(decoded.message.as_ref(), Some(ada.message()));
    // Those who joined with the news get what came after them, each alone.
    for conn in 3..=5u64 {
        assert!(!std::sync::Arc::ptr_eq(&updates[&conn], ada), "connection {conn}");
        let Resp::Update(u) = updates[&conn].message() else {
            panic!("an update")
        };
        let expected = &newcomers[conn as usize - 2..];
        let sids: Vec<String> = u.participants.iter().map(|p| p.sid.clone()).collect();
        assert_eq!(sids, expected, "connection {conn}");
    }
    assert!(!updates.contains_key(&6), "the last to join has no news");
}

/// News of a participant who publishes is not held back, and replaces
/// what waited about them.
#[test]
fn a_publishers_news_is_not_held_back() {
    let mut h = Harness::new();
    h.join(1, "ada");
    h.drain();
    let bob = h
        .join_with(
            2,
            "bob",
            Permissions {
                sources: vec![TrackSource::Microphone],
                ..Permissions::default()
            },
        )
        .expect("join");
    h.publish(2, lk::TrackSource::Microphone, lk::TrackType::Audio, "mic");
    // The publisher's offer carries the track.
    let peer = h.sfu.participants[&bob].publisher;
    h.sfu.on_media_event(MediaEvent::TrackAdded {
        peer,
        mid: MediaId::from(str0m::media::Mid::from("0")),
        kind: Kind::Audio,
        track_id: "mic".into(),
        rids: Vec::new(),
    });
    let out = h.drain();
    let seen = updates(&out, 1);
    assert!(
        seen.iter()
            .any(|p| p.sid == bob.to_string() && p.tracks.len() == 1),
        "ada waited for bob's track: {seen:?}"
    );
    let later = updates(&h.tick_and_drain(), 1);
    assert!(later.is_empty(), "stale news of bob followed: {later:?}");
}

/// A listener who joins and leaves within one tick ends up gone for the
/// others, never left behind as joined.
#[test]
fn a_listener_who_leaves_before_the_tick_is_shown_gone() {
    let mut h = Harness::new();
    h.join(1, "ada");
    h.drain();
    let bob = h.join(2, "bob");
    h.request(2, Req::Leave(lk::LeaveRequest::default()))
        .expect("leave");
    let seen: Vec<lk::ParticipantInfo> = updates(&h.tick_and_drain(), 1)
        .into_iter()
        .filter(|p| p.sid == bob.to_string())
        .collect();
    assert_eq!(seen.len(), 1, "ada got {seen:?}");
    assert_eq!(seen[0].state, lk::participant_info::State::Disconnected as i32);
}

/// A hidden participant is never announced, neither joining nor leaving,
/// at once or at the tick.
#[test]
fn a_hidden_participant_is_never_announced() {
    let mut h = Harness::new();
    h.join(1, "ada");
    h.tick_and_drain();
    let ghost = h
        .join_with(
            2,
            "ghost",
            Permissions {
                hidden: true,
                ..Permissions::default()
            },
        )
        .expect("join");
    let mut out = h.tick_and_drain();
    h.request(2, Req::Leave(lk::LeaveRequest::default()))
        .expect("leave");
    out.extend(h.tick_and_drain());
    let seen = updates(&out, 1);
    assert!(
        seen.iter().all(|p| p.sid != ghost.to_string()),
        "ada was told of the hidden participant: {seen:?}"
    );
}

/// What a tick says about a newcomer who publishes nothing (its connection
/// quality) reaches the others only after the news of the newcomer: a
/// client drops a rating of a participant it does not know, and the rating
/// is sent again only when it changes.
#[test]
fn a_listeners_rating_follows_its_news() {
    let mut h = Harness::new();
    h.join(1, "ada");
    h.tick_and_drain();
    let bob = h.join(2, "bob");
    let out = h.tick_and_drain();
    let mentions: Vec<&str> = msgs(&out, 1)
        .into_iter()
        .filter_map(|m| match m {
            Resp::Update(u) if u.participants.iter().any(|p| p.sid == bob.to_string()) => Some("news"),
            Resp::ConnectionQuality(q) if q.updates.iter().any(|u| u.participant_sid == bob.to_string()) => {
                Some("rating")
            }
            _ => None,
        })
        .collect();
    assert_eq!(mentions, vec!["news", "rating"]);
}

/// Data from a newcomer whose news still waits for the tick sends that
/// news first: a client attributes data only to participants it knows.
#[test]
fn a_newcomers_data_follows_its_news() {
    let mut h = Harness::new();
    h.join(1, "ada");
    h.tick_and_drain();
    let bob = h.join(2, "bob");
    let out = h.drain();
    assert!(
        updates(&out, 1).iter().all(|p| p.sid != bob.to_string()),
        "the news of bob did not wait for the tick"
    );
    let chat = lk::DataPacket {
        kind: lk::data_packet::Kind::Reliable as i32,
        value: Some(lk::data_packet::Value::User(lk::UserPacket {
            payload: b"hi".to_vec(),
            ..Default::default()
        })),
        ..Default::default()
    };
    let peer = h.sfu.participants[&bob].publisher;
    h.sfu.on_media_event(MediaEvent::Data {
        peer,
        reliable: true,
        data: chat.encode_to_vec(),
    });
    let out = h.drain();
    assert!(
        updates(&out, 1).iter().any(|p| p.sid == bob.to_string()),
        "bob's data went out before the news of bob"
    );
    assert!(
        updates(&out, 2).iter().all(|p| p.sid != bob.to_string()),
        "bob was told of himself"
    );
}

/// The participants whose ratings reached `conn`.
fn rated(out: &Sent, conn: u64) -> Vec<String> {
    msgs(out, conn)
        .into_iter()
        .filter_map(|m| match m {
            Resp::ConnectionQuality(q) => Some(q.updates.iter().map(|u| u.participant_sid.clone())),
            _ => None,
        })
        .flatten()
        .collect()
}

/// A newcomer gets the ratings the others already have (they are sent
/// again only when they change), and so does a connection that resumes;
/// the others get only what changed.
#[test]
fn a_newcomer_gets_the_ratings_already_given() {
    let mut h = Harness::new();
    let ada = h.join(1, "ada");
    h.tick_and_drain();
    let bob = h.join(2, "bob");
    let out = h.tick_and_drain();
    let to_bob = rated(&out, 2);
    assert!(
        to_bob.contains(&ada.to_string()),
        "bob never learns ada's rating: {to_bob:?}"
    );
    assert!(to_bob.contains(&bob.to_string()));
    assert_eq!(
        rated(&out, 1),
        vec![bob.to_string()],
        "ada is told again what she knows"
    );
    let out = h.tick_and_drain();
    assert!(
        rated(&out, 1).is_empty() && rated(&out, 2).is_empty(),
        "unchanged ratings were sent again"
    );

    let now = h.now();
    h.sfu.handle_disconnect(now, ConnId(2));
    let room = Harness::room();
    let identity = ParticipantIdentity::new("bob").expect("id");
    h.sfu
        .handle_resume(now, ConnId(3), &bob, &room, &identity)
        .expect("resume");
    let out = h.tick_and_drain();
    let to_resumed = rated(&out, 3);
    assert!(
        to_resumed.contains(&ada.to_string()) && to_resumed.contains(&bob.to_string()),
        "the resumed connection lacks ratings: {to_resumed:?}"
    );
    assert!(rated(&out, 1).is_empty());
}

/// The subscriber offers sent to `conn`.
fn offers(out: &Sent, conn: u64) -> Vec<String> {
    msgs(out, conn)
        .into_iter()
        .filter_map(|m| match m {
            Resp::Offer(o) => Some(o.sdp.clone()),
            _ => None,
        })
        .collect()
}

/// Answers `offer` on `conn` with `client`'s connection, made on the first.
fn answer(h: &mut Harness, conn: u64, client: &mut Option<str0m::Rtc>, offer: &str) {
    let sdp = match client {
        Some(rtc) => rtc
            .sdp_api()
            .accept_offer(str0m::change::SdpOffer::from_sdp_string(offer).expect("offer parses"))
            .expect("client answers")
            .to_sdp_string(),
        None => {
            let (c, sdp) = net::Client::answering(h.now().mono, offer);
            *client = Some(c.rtc);
            sdp
        }
    };
    h.request(
        conn,
        Req::Answer(lk::SessionDescription {
            r#type: "answer".into(),
            sdp,
            ..Default::default()
        }),
    )
    .expect("answer accepted");
}

/// Sends a publisher's offer on `conn` and applies the server's answer;
/// returns everything the server sent meanwhile.
fn offer_on(
    h: &mut Harness,
    conn: u64,
    rtc: &mut str0m::Rtc,
    (offer, pending): (str0m::change::SdpOffer, str0m::change::SdpPendingOffer),
) -> Sent {
    h.request(
        conn,
        Req::Offer(lk::SessionDescription {
            r#type: "offer".into(),
            sdp: offer.to_sdp_string(),
            ..Default::default()
        }),
    )
    .expect("offer accepted");
    let out = h.drain();
    let sdp = msgs(&out, conn)
        .into_iter()
        .find_map(|m| match m {
            Resp::Answer(a) => Some(a.sdp.clone()),
            _ => None,
        })
        .expect("the server's answer");
    rtc.sdp_api()
        .accept_answer(
            pending,
            str0m::change::SdpAnswer::from_sdp_string(&sdp).expect("answer parses"),
        )
        .expect("answer applies");
    out
}

/// Ada publishes a microphone over the simulated network; bob receives it
/// (his connection has answered the offer that carries it), cyd may not
/// subscribe. Returns ada's client, on connection 1, and the microphone's
/// media section; bob is on 2, cyd on 3.
fn ada_publishes_to_bob(h: &mut Harness) -> (net::Client, str0m::media::Mid) {
    use str0m::media::{Direction, MediaKind};
    use str0m::{Candidate, Rtc};

    let mic = Permissions {
        sources: vec![TrackSource::Microphone],
        ..Permissions::default()
    };
    h.join_with(1, "ada", mic).expect("join");
    h.join(2, "bob");
    let no_subscribe = Permissions {
        can_subscribe: false,
        ..Permissions::default()
    };
    h.join_with(3, "cyd", no_subscribe).expect("join");
    let out = h.drain();
    let mut clients = [None, None];
    for (conn, client) in [2, 3].into_iter().zip(clients.iter_mut()) {
        let first = offers(&out, conn);
        assert_eq!(first.len(), 1, "conn {conn}: {first:?}");
        answer(h, conn, client, &first[0]);
    }

    // Ada publishes a microphone: her offer carries the track, and her
    // publisher connection comes up on the simulated network.
    h.publish(1, lk::TrackSource::Microphone, lk::TrackType::Audio, "mic");
    let mut rtc = Rtc::builder().build(h.now().mono);
    rtc.add_local_candidate(Candidate::host(net::CLIENT, "udp").expect("candidate"));
    let mut api = rtc.sdp_api();
    let mic = api.add_media(
        MediaKind::Audio,
        Direction::SendOnly,
        Some("ada-stream".into()),
        Some("mic".into()),
        None,
    );
    let changes = api.apply().expect("an offer");
    let mut out = offer_on(h, 1, &mut rtc, changes);
    let mut ada = net::Client {
        rtc,
        events: Vec::new(),
    };
    for _ in 0..200 {
        net::step(h, &mut ada, Duration::from_millis(10), &mut out);
        if !offers(&out, 2).is_empty() {
            break;
        }
    }
    let bobs = offers(&out, 2);
    assert_eq!(bobs.len(), 1, "bob is offered ada's track: {bobs:?}");
    assert!(bobs[0].contains("m=audio"), "{}", bobs[0]);
    assert!(offers(&out, 3).is_empty(), "cyd subscribes to nothing");
    answer(h, 2, &mut clients[0], &bobs[0]);
    h.drain();
    (ada, mic)
}

/// Bob (connection 2) got one offer, switching ada's track off; cyd
/// (connection 3) got none.
fn ada_is_switched_off_for_bob_only(out: &Sent) {
    let bobs = offers(out, 2);
    assert_eq!(bobs.len(), 1, "bob's connection is renegotiated: {bobs:?}");
    assert!(
        bobs[0].contains("a=inactive"),
        "ada's section is not switched off:\n{}",
        bobs[0]
    );
    assert!(offers(out, 3).is_empty(), "cyd got an offer");
}

/// When a publisher leaves, the connections that carried its tracks get an
/// offer switching them off; a member who received none of them gets none.
#[test]
fn a_publishers_leave_renegotiates_its_subscribers_only() {
    let mut h = Harness::new();
    ada_publishes_to_bob(&mut h);
    h.request(1, Req::Leave(lk::LeaveRequest::default()))
        .expect("leave");
    let out = h.drain();
    ada_is_switched_off_for_bob_only(&out);
}

/// The same when the publisher stops sending one track.
#[test]
fn an_unpublished_track_renegotiates_its_subscribers_only() {
    use str0m::media::Direction;

    let mut h = Harness::new();
    let (mut ada, mid) = ada_publishes_to_bob(&mut h);
    let mut api = ada.rtc.sdp_api();
    api.set_direction(mid, Direction::Inactive);
    let changes = api.apply().expect("an offer");
    let out = offer_on(&mut h, 1, &mut ada.rtc, changes);
    ada_is_switched_off_for_bob_only(&out);
}
