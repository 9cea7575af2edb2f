//! Untrusted signalling input never panics the session core.
//!
//! The same inputs drive the `signal_request` fuzz target (`fuzz/`); this
//! test runs a fixed-seed sample of them on every `cargo test`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conclave_media::MediaConfig;
use conclave_signal::{ConnId, JoinParams, Now, Output, RoomSettings, Sfu, SfuConfig};
use conclave_types::{ParticipantIdentity, Permissions, RoomName};
use livekit_protocol as lk;
use prost::Message;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.next() as usize) % (max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn text(&mut self, max: usize) -> String {
        String::from_utf8_lossy(&self.bytes(max)).into_owned()
    }
}

fn sfu() -> Sfu {
    Sfu::new(
        SfuConfig {
            media: MediaConfig {
                candidates: vec![SocketAddr::from(([10, 0, 0, 1], 5000))],
            },
            server_version: "test".into(),
            node_id: "ND_test".into(),
            default_room: RoomSettings::default(),
        },
        Instant::now(),
    )
}

fn drain(sfu: &mut Sfu) {
    for _ in 0..100_000 {
        if let Output::Timeout(_) = sfu.poll_output() {
            return;
        }
    }
    panic!("the core produced output without end");
}

/// A request built from random parts, shaped like what clients send.
fn crafted(rng: &mut Rng) -> lk::SignalRequest {
    use lk::signal_request::Message as M;
    let sid = format!("TR_{}", rng.text(20));
    let m = match rng.next() % 12 {
        0 => M::Offer(lk::SessionDescription {
            r#type: "offer".into(),
            sdp: rng.text(2000),
            ..Default::default()
        }),
        1 => M::Answer(lk::SessionDescription {
            r#type: "answer".into(),
            sdp: rng.text(2000),
            ..Default::default()
        }),
        2 => M::Trickle(lk::TrickleRequest {
            candidate_init: format!("{{\"candidate\":\"candidate:{}\"}}", rng.text(100)),
            target: (rng.next() % 3) as i32,
            ..Default::default()
        }),
        3 => M::AddTrack(lk::AddTrackRequest {
            cid: rng.text(40),
            name: rng.text(40),
            r#type: (rng.next() % 4) as i32,
            source: (rng.next() % 6) as i32,
            width: rng.next() as u32,
            height: rng.next() as u32,
            ..Default::default()
        }),
        4 => M::Mute(lk::MuteTrackRequest {
            sid,
            muted: rng.next().is_multiple_of(2),
        }),
        5 => M::Subscription(lk::UpdateSubscription {
            track_sids: vec![sid, rng.text(10)],
            subscribe: rng.next().is_multiple_of(2),
            ..Default::default()
        }),
        6 => M::TrackSetting(lk::UpdateTrackSettings {
            track_sids: vec![sid],
            disabled: rng.next().is_multiple_of(2),
            quality: (rng.next() % 5) as i32,
            width: rng.next() as u32,
            height: rng.next() as u32,
            ..Default::default()
        }),
        7 => M::Ping(rng.next() as i64),
        8 => M::PingReq(lk::Ping {
            timestamp: rng.next() as i64,
            rtt: rng.next() as i64,
        }),
        9 => M::UpdateMetadata(lk::UpdateParticipantMetadata {
            metadata: rng.text(100),
            name: rng.text(100),
            ..Default::default()
        }),
        10 => M::Leave(lk::LeaveRequest::default()),
        _ => M::SyncState(lk::SyncState::default()),
    };
    lk::SignalRequest { message: Some(m) }
}

#[test]
fn random_signalling_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let start = Instant::now();
    let mut sfu = sfu();
    let room = RoomName::new("fuzz").expect("room");
    for round in 0..300u64 {
        let now = Now {
            mono: start + Duration::from_millis(round * 50),
            unix_ms: 1_800_000_000_000,
        };
        let conn = ConnId(round);
        let joined = sfu.handle_join(
            now,
            conn,
            JoinParams {
                room: room.clone(),
                identity: ParticipantIdentity::new(format!("p{}", round % 7)).expect("identity"),
                name: rng.text(20),
                metadata: String::new(),
                attributes: Default::default(),
                permissions: Permissions {
                    can_update_metadata: round.is_multiple_of(2),
                    ..Permissions::default()
                },
                create_room: true,
                auto_subscribe: true,
                client_protocol: 16,
                kind: lk::participant_info::Kind::Standard,
            },
        );
        assert!(joined.is_ok());
        drain(&mut sfu);
        for _ in 0..20 {
            // Raw bytes as the WebSocket would deliver them, then crafted messages.
            if let Ok(req) = lk::SignalRequest::decode(rng.bytes(300).as_slice()) {
                let _ = sfu.handle_request(now, conn, req);
            }
            let _ = sfu.handle_request(now, conn, crafted(&mut rng));
            let src = SocketAddr::from(([10, 0, 0, 2], (rng.next() % 65535) as u16));
            sfu.handle_datagram(
                now,
                src,
                SocketAddr::from(([10, 0, 0, 1], 5000)),
                &rng.bytes(1500),
            );
            drain(&mut sfu);
        }
        sfu.handle_timeout(now);
        drain(&mut sfu);
    }
}
