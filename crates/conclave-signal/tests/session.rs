//! The session core's rules, driven through its inputs with a hand-made
//! clock: joins, permissions, moderation limits, leaving, timeouts, resume.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conclave_media::MediaConfig;
use conclave_signal::{
    ConnId, JoinParams, Now, Output, PING_TIMEOUT_SECS, RoomSettings, Sfu, SfuConfig, SignalError,
};
use conclave_types::{ParticipantIdentity, ParticipantSid, Permissions, RoomName, TrackSource};
use livekit_protocol as lk;
use lk::signal_request::Message as Req;
use lk::signal_response::Message as Resp;

struct Harness {
    sfu: Sfu,
    start: Instant,
    at: Duration,
}

impl Harness {
    fn new() -> Self {
        Self::with_room(RoomSettings::default())
    }

    fn with_room(default_room: RoomSettings) -> Self {
        Self {
            sfu: Sfu::new(SfuConfig {
                media: MediaConfig {
                    candidates: vec![SocketAddr::from(([10, 0, 0, 1], 5000))],
                },
                server_version: "test".into(),
                node_id: "ND_test".into(),
                default_room,
            }),
            start: Instant::now(),
            at: Duration::ZERO,
        }
    }

    fn now(&self) -> Now {
        Now {
            mono: self.start + self.at,
            unix_ms: 1_800_000_000_000 + self.at.as_millis() as i64,
        }
    }

    fn join_with(
        &mut self,
        conn: u64,
        identity: &str,
        permissions: Permissions,
    ) -> Result<ParticipantSid, SignalError> {
        let params = JoinParams {
            room: RoomName::new("room").expect("room"),
            identity: ParticipantIdentity::new(identity).expect("identity"),
            name: identity.to_uppercase(),
            metadata: String::new(),
            attributes: HashMap::new(),
            permissions,
            create_room: true,
            auto_subscribe: true,
            client_protocol: 16,
        };
        let now = self.now();
        self.sfu.handle_join(now, ConnId(conn), params)
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

    /// Everything the core wants to send, by connection; closes as `None`.
    fn drain(&mut self) -> Vec<(u64, Option<Resp>)> {
        let mut out = Vec::new();
        loop {
            match self.sfu.poll_output() {
                Output::Timeout(_) => return out,
                Output::Signal { conn, message } => out.push((conn.0, message.message)),
                Output::Close { conn } => out.push((conn.0, None)),
                Output::Transmit { .. } => {}
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        self.at += by;
        let now = self.now();
        self.sfu.handle_timeout(now);
    }
}

fn for_conn(out: &[(u64, Option<Resp>)], conn: u64) -> Vec<&Resp> {
    out.iter()
        .filter(|(c, _)| *c == conn)
        .filter_map(|(_, m)| m.as_ref())
        .collect()
}

fn add_track(source: lk::TrackSource, kind: lk::TrackType, cid: &str) -> Req {
    Req::AddTrack(lk::AddTrackRequest {
        cid: cid.into(),
        name: cid.into(),
        r#type: kind as i32,
        source: source as i32,
        ..Default::default()
    })
}

fn published_sid(out: &[(u64, Option<Resp>)], conn: u64) -> String {
    for_conn(out, conn)
        .into_iter()
        .find_map(|m| match m {
            Resp::TrackPublished(t) => t.track.as_ref().map(|t| t.sid.clone()),
            _ => None,
        })
        .expect("a TrackPublished response")
}

#[test]
fn join_answers_with_the_room_then_an_offer() {
    let mut h = Harness::new();
    let sid = h.join(1, "ada");
    let out = h.drain();
    let msgs = for_conn(&out, 1);
    let Some(Resp::Join(join)) = msgs.first() else {
        panic!("first message is not the join response: {msgs:?}")
    };
    assert!(join.subscriber_primary);
    let me = join.participant.as_ref().expect("participant");
    assert_eq!(me.sid, sid.to_string());
    assert_eq!(me.identity, "ada");
    assert!(
        me.permission
            .as_ref()
            .is_some_and(|p| p.can_publish && p.can_subscribe)
    );
    assert_eq!(join.room.as_ref().map(|r| r.name.as_str()), Some("room"));
    assert!(
        join.server_info.as_ref().is_some_and(|s| !s.version.is_empty()),
        "clients refuse servers without a version"
    );
    assert!(
        msgs.iter()
            .any(|m| matches!(m, Resp::Offer(o) if o.sdp.contains("m=application"))),
        "no subscriber offer with data channels"
    );

    h.join(2, "bob");
    let out = h.drain();
    let seen = for_conn(&out, 1)
        .into_iter()
        .any(|m| matches!(m, Resp::Update(u) if u.participants.iter().any(|p| p.identity == "bob")));
    assert!(seen, "ada was not told that bob joined");
    let Some(Resp::Join(j)) = for_conn(&out, 2).first().copied() else {
        panic!("bob got no join response")
    };
    assert_eq!(j.other_participants.len(), 1);
}

#[test]
fn publishing_needs_the_permission_for_the_source() {
    let mut h = Harness::new();
    let viewer = Permissions {
        can_publish: false,
        ..Permissions::default()
    };
    h.join_with(1, "viewer", viewer).expect("join");
    let mic_only = Permissions {
        sources: vec![TrackSource::Microphone],
        ..Permissions::default()
    };
    h.join_with(2, "speaker", mic_only).expect("join");
    h.drain();

    let r = h.request(
        1,
        add_track(lk::TrackSource::Microphone, lk::TrackType::Audio, "m1"),
    );
    assert_eq!(r, Err(SignalError::NotAllowed));
    let r = h.request(
        2,
        add_track(lk::TrackSource::ScreenShare, lk::TrackType::Video, "s1"),
    );
    assert_eq!(r, Err(SignalError::NotAllowed));
    let r = h.request(2, add_track(lk::TrackSource::Unknown, lk::TrackType::Video, "v1"));
    assert_eq!(
        r,
        Err(SignalError::NotAllowed),
        "an unnamed video source counts as a camera"
    );
    let out = h.drain();
    for conn in [1, 2] {
        let msgs = for_conn(&out, conn);
        assert!(
            !msgs.iter().any(|m| matches!(m, Resp::TrackPublished(_))),
            "a refused track was published"
        );
        assert!(msgs.iter().any(|m| matches!(m, Resp::RequestResponse(r) if r.reason == lk::request_response::Reason::NotAllowed as i32)));
    }

    h.request(
        2,
        add_track(lk::TrackSource::Microphone, lk::TrackType::Audio, "m2"),
    )
    .expect("allowed");
    let out = h.drain();
    assert!(published_sid(&out, 2).starts_with("TR_"));
}

#[test]
fn nobody_can_unmute_someone_else() {
    let mut h = Harness::new();
    h.join(1, "ada");
    let admin = Permissions {
        admin: true,
        ..Permissions::default()
    };
    h.join_with(2, "mod", admin).expect("join");
    h.request(
        1,
        add_track(lk::TrackSource::Microphone, lk::TrackType::Audio, "mic"),
    )
    .expect("add");
    let out = h.drain();
    let track = published_sid(&out, 1);
    let room = RoomName::new("room").expect("room");
    let ada = ParticipantIdentity::new("ada").expect("id");

    // The room API only mutes.
    assert_eq!(
        h.sfu.mute_published_track(&room, &ada, &track, false),
        Err(SignalError::NotAllowed)
    );
    let info = h
        .sfu
        .mute_published_track(&room, &ada, &track, true)
        .expect("mute");
    assert!(info.muted);
    let out = h.drain();
    assert!(
        for_conn(&out, 1)
            .iter()
            .any(|m| matches!(m, Resp::Mute(r) if r.sid == track && r.muted)),
        "the owner's client was not told to mute"
    );
    // Another participant cannot change the track's state through signalling.
    let r = h.request(
        2,
        Req::Mute(lk::MuteTrackRequest {
            sid: track.clone(),
            muted: false,
        }),
    );
    assert_eq!(r, Err(SignalError::TrackNotFound));
    let still = h
        .sfu
        .mute_published_track(&room, &ada, &track, true)
        .expect("state");
    assert!(still.muted, "a foreign unmute changed the track");
}

#[test]
fn metadata_changes_need_the_permission() {
    let mut h = Harness::new();
    h.join(1, "ada");
    h.drain();
    let r = h.request(
        1,
        Req::UpdateMetadata(lk::UpdateParticipantMetadata {
            name: "Queen".into(),
            request_id: 7,
            ..Default::default()
        }),
    );
    assert_eq!(r, Err(SignalError::NotAllowed));
    let out = h.drain();
    assert!(for_conn(&out, 1).iter().any(|m| matches!(m, Resp::RequestResponse(r) if r.request_id == 7 && r.reason == lk::request_response::Reason::NotAllowed as i32)));
}

#[test]
fn ping_pong_leave_and_timeouts() {
    let mut h = Harness::new();
    h.join(1, "ada");
    h.join(2, "bob");
    h.drain();
    h.request(1, Req::Ping(42)).expect("ping");
    h.request(1, Req::PingReq(lk::Ping { timestamp: 5, rtt: 0 }))
        .expect("ping");
    let out = h.drain();
    let msgs = for_conn(&out, 1);
    assert!(msgs.iter().any(|m| matches!(m, Resp::Pong(42))));
    assert!(
        msgs.iter()
            .any(|m| matches!(m, Resp::PongResp(p) if p.last_ping_timestamp == 5))
    );

    // Bob leaves: ada sees him disconnected.
    h.request(2, Req::Leave(lk::LeaveRequest::default()))
        .expect("leave");
    let out = h.drain();
    assert!(for_conn(&out, 1).iter().any(|m| matches!(m, Resp::Update(u) if u.participants.iter().any(|p| p.identity == "bob" && p.state == lk::participant_info::State::Disconnected as i32))));
    assert_eq!(h.sfu.stats().participants, 1);

    // Ada goes silent: gone after the ping timeout, and the empty room after its departure timeout.
    h.advance(Duration::from_secs(PING_TIMEOUT_SECS as u64 - 1));
    assert_eq!(h.sfu.stats().participants, 1, "removed before the ping timeout");
    h.advance(Duration::from_secs(2));
    assert_eq!(h.sfu.stats().participants, 0, "a silent participant stayed");
    assert_eq!(h.sfu.stats().rooms, 1);
    h.advance(Duration::from_secs(
        u64::from(RoomSettings::default().departure_timeout) + 1,
    ));
    assert_eq!(h.sfu.stats().rooms, 0, "the empty room stayed");
}

#[test]
fn full_rooms_and_duplicate_identities() {
    let mut h = Harness::with_room(RoomSettings {
        max_participants: 2,
        ..RoomSettings::default()
    });
    h.join(1, "ada");
    h.join(2, "bob");
    assert_eq!(
        h.join_with(3, "eve", Permissions::default()),
        Err(SignalError::RoomFull)
    );
    h.drain();
    // Ada joins again from elsewhere: the old session is told to leave and closed.
    h.join(4, "ada");
    let out = h.drain();
    let old = for_conn(&out, 1);
    assert!(
        old.iter().any(
            |m| matches!(m, Resp::Leave(l) if l.reason == lk::DisconnectReason::DuplicateIdentity as i32)
        )
    );
    assert!(
        out.iter().any(|(c, m)| *c == 1 && m.is_none()),
        "the old connection was not closed"
    );
    assert_eq!(h.sfu.stats().participants, 2);
}

#[test]
fn resume_needs_the_same_identity() {
    let mut h = Harness::new();
    let sid = h.join(1, "ada");
    h.join(2, "bob");
    h.drain();
    let now = h.now();
    h.sfu.handle_disconnect(now, ConnId(1));
    assert_eq!(
        h.sfu.stats().participants,
        2,
        "a dropped connection is not a leave"
    );
    let room = RoomName::new("room").expect("room");
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
    let msgs = for_conn(&out, 4);
    assert!(
        matches!(msgs.first(), Some(Resp::Reconnect(_))),
        "first message is not the reconnect response"
    );
    assert!(
        msgs.iter()
            .any(|m| matches!(m, Resp::Update(u) if u.participants.iter().any(|p| p.identity == "bob")))
    );
    assert!(
        msgs.iter()
            .any(|m| matches!(m, Resp::Offer(o) if o.sdp.contains("a=ice-ufrag")))
    );
    assert!(
        for_conn(&out, 3).is_empty(),
        "the refused connection got messages"
    );
}
