//! A signalling connection whose client stops reading: the engine closes it
//! once its outbox is full, keeps the session for a resume, and serves the
//! other connections as before. Runs the real engine task on a loopback
//! UDP socket; the outboxes stand in for the WebSocket tasks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use conclave_media::MediaConfig;
use conclave_runtime::{ConnOut, Engine, EngineHandle, OUTBOX_CAPACITY, Resume};
use conclave_signal::{ConnId, JoinParams, RoomSettings, Sfu, SfuConfig};
use conclave_types::{ParticipantIdentity, ParticipantSid, Permissions, RoomName};
use livekit_protocol as lk;
use lk::signal_response::Message as Resp;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Guards against a hang only: every wait here ends in milliseconds.
const HANG: Duration = Duration::from_secs(20);

fn room() -> RoomName {
    RoomName::new("stalled").expect("room name")
}

fn params(identity: &str) -> Box<JoinParams> {
    Box::new(JoinParams {
        room: room(),
        identity: ParticipantIdentity::new(identity).expect("identity"),
        name: identity.to_owned(),
        metadata: String::new(),
        attributes: HashMap::new(),
        permissions: Permissions::default(),
        create_room: true,
        auto_subscribe: true,
        client_protocol: 16,
        kind: lk::participant_info::Kind::Standard,
    })
}

async fn engine() -> EngineHandle {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("a loopback socket");
    let local = socket.local_addr().expect("its address");
    let sfu = Sfu::new(
        SfuConfig {
            media: MediaConfig {
                candidates: vec![local],
            },
            server_version: "1.0.0-test".into(),
            node_id: "ND_stalled".into(),
            default_room: RoomSettings::default(),
        },
        Instant::now(),
    );
    Engine::start(sfu, socket, vec![local])
}

/// The next thing an outbox yields: `None` once the engine dropped it.
async fn next(rx: &mut mpsc::Receiver<ConnOut>) -> Option<ConnOut> {
    tokio::time::timeout(HANG, rx.recv())
        .await
        .expect("the engine answers")
}

fn message(out: Option<ConnOut>) -> Resp {
    match out {
        Some(ConnOut::Message(m)) => m.message().clone(),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Joins `identity` on a new connection whose outbox holds `capacity`
/// messages.
async fn join(engine: &EngineHandle, identity: &str, capacity: usize) -> (ConnId, mpsc::Receiver<ConnOut>) {
    let (tx, rx) = mpsc::channel(capacity);
    let conn = engine.new_conn();
    engine
        .join(conn, params(identity), tx)
        .await
        .expect("engine")
        .unwrap_or_else(|e| panic!("{identity} cannot join: {e:?}"));
    (conn, rx)
}

#[tokio::test]
async fn a_connection_that_stops_reading_is_closed_and_its_session_resumes() {
    let engine = engine().await;
    // Alice's outbox holds one message and is not read until later.
    let (_, mut alice_rx) = join(&engine, "alice", 1).await;
    // Bob joins: the roster update to Alice has no room left.
    let (bob, mut bob_rx) = join(&engine, "bob", OUTBOX_CAPACITY).await;

    // Alice's connection: what fitted, then closed by the engine.
    let Resp::Join(join) = message(next(&mut alice_rx).await) else {
        panic!("alice's first message is not the join response");
    };
    let alice_sid = ParticipantSid::parse(&join.participant.expect("alice's info").sid).expect("sid");
    let mut after = Vec::new();
    while let Some(out) = next(&mut alice_rx).await {
        after.push(out);
    }
    assert!(after.is_empty(), "an outbox of one message held more: {after:?}");

    // Her session is kept for a resume; Bob's connection works on.
    let names = engine
        .with(|sfu, _| sfu.list_participants(&room()))
        .await
        .expect("engine")
        .expect("the room exists");
    let mut identities: Vec<String> = names.into_iter().map(|p| p.identity).collect();
    identities.sort();
    assert_eq!(identities, ["alice", "bob"], "a slow connection ends no session");
    assert!(matches!(message(next(&mut bob_rx).await), Resp::Join(_)));
    engine
        .request(
            bob,
            lk::SignalRequest {
                message: Some(lk::signal_request::Message::Ping(7)),
            },
        )
        .expect("engine");
    loop {
        if let Resp::Pong(7) = message(next(&mut bob_rx).await) {
            break;
        }
    }

    // Alice comes back on a new connection and reads it.
    let (resumed_tx, mut resumed_rx) = mpsc::channel(OUTBOX_CAPACITY);
    let resumed = engine.new_conn();
    engine
        .resume(
            resumed,
            Resume {
                sid: alice_sid,
                room: room(),
                identity: ParticipantIdentity::new("alice").expect("identity"),
            },
            resumed_tx,
        )
        .await
        .expect("engine")
        .expect("alice resumes");
    assert!(
        matches!(message(next(&mut resumed_rx).await), Resp::Reconnect(_)),
        "a resumed session starts with a reconnect response"
    );
}
