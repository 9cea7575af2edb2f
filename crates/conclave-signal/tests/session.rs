//! Session resumption through the session core's public inputs, with a
//! hand-made clock. The other rules are unit-tested inside the crate
//! (`src/tests.rs`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conclave_media::MediaConfig;
use conclave_signal::{ConnId, JoinParams, Now, Output, RoomSettings, Sfu, SfuConfig, SignalError};
use conclave_types::{ParticipantIdentity, ParticipantSid, Permissions, RoomName};
use livekit_protocol as lk;
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
        let start = Instant::now();
        Self {
            sfu: Sfu::new(
                SfuConfig {
                    media: MediaConfig {
                        candidates: vec![SocketAddr::from(([10, 0, 0, 1], 5000))],
                    },
                    server_version: "test".into(),
                    node_id: "ND_test".into(),
                    default_room,
                },
                start,
            ),
            start,
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
}

fn for_conn(out: &[(u64, Option<Resp>)], conn: u64) -> Vec<&Resp> {
    out.iter()
        .filter(|(c, _)| *c == conn)
        .filter_map(|(_, m)| m.as_ref())
        .collect()
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
