#![no_main]
//! Arbitrary WebSocket frames as LiveKit signalling requests of a joined
//! participant.

use std::net::SocketAddr;
use std::time::Instant;

use conclave_media::MediaConfig;
use conclave_signal::{ConnId, JoinParams, Now, Output, RoomSettings, Sfu, SfuConfig};
use conclave_types::{ParticipantIdentity, Permissions, RoomName};
use libfuzzer_sys::fuzz_target;
use livekit_protocol as lk;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let mut sfu = Sfu::new(SfuConfig {
        media: MediaConfig { candidates: vec![SocketAddr::from(([10, 0, 0, 1], 5000))] },
        server_version: "fuzz".into(),
        node_id: "ND_fuzz".into(),
        default_room: RoomSettings::default(),
    }, Instant::now());
    let now = Now { mono: Instant::now(), unix_ms: 1_800_000_000_000 };
    for (i, who) in ["a", "b"].iter().enumerate() {
        let _ = sfu.handle_join(
            now,
            ConnId(i as u64),
            JoinParams {
                room: RoomName::new("fuzz").expect("valid"),
                identity: ParticipantIdentity::new(*who).expect("valid"),
                name: String::new(),
                metadata: String::new(),
                attributes: Default::default(),
                permissions: Permissions { can_update_metadata: true, ..Permissions::default() },
                create_room: true,
                auto_subscribe: true,
                client_protocol: 16,
                kind: lk::participant_info::Kind::Standard,
            },
        );
    }
    // Frames separated by a two-byte length, all from participant "a".
    let mut rest = data;
    while rest.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let frame = &rest[2..2 + n];
        if let Ok(req) = lk::SignalRequest::decode(frame) {
            let _ = sfu.handle_request(now, ConnId(0), req);
        }
        while !matches!(sfu.poll_output(), Output::Timeout(_)) {}
        rest = &rest[2 + n..];
    }
});
