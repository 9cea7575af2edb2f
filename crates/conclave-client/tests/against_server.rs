//! Two native clients against a real `conclave serve` process on loopback:
//! one publishes Opus-sized audio and simulcast VP8, the other receives
//! both tracks with the stamps the publisher wrote, in order. The
//! subscriber's keyframe request reaches the publisher through the server,
//! and the keyframe it sends in answer reaches the subscriber. With two
//! media engines, rooms on either carry media. A signalling connection
//! that drops is resumed; one the client closes is closed by the server
//! in answer.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use conclave_client::driver::{App, run};
use conclave_client::server_process::{ServerProcess, server_binary};
use conclave_client::synth::{audio_payload, read_stamp, vp8_frame};
use conclave_client::{Client, ClientEvent, MediaKind, Mid, Packet, TrackSpec};
use conclave_types::TrackSid;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Sends 20 ms audio and, every 40 ms, one small frame on each layer.
struct Publisher {
    base: Instant,
    next: Option<Instant>,
    tick: u64,
    key_due: bool,
    /// Keyframe requests the server passed on.
    keyframe_requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl App for Publisher {
    fn on_event(&mut self, now: Instant, event: &ClientEvent, _client: &mut Client) {
        match event {
            ClientEvent::Published { cid, .. } if cid == "video" => self.next = Some(now),
            ClientEvent::KeyframeRequest { .. } => {
                self.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                self.key_due = true;
            }
            _ => {}
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        self.next
    }

    fn on_wake(&mut self, now: Instant, client: &mut Client) {
        let micros = now.duration_since(self.base).as_micros() as u64;
        let n = self.tick;
        let audio = audio_payload(80, micros, n);
        let _ = client.write_rtp(
            now,
            Packet {
                cid: "audio",
                rid: None,
                timestamp: (n * 960) as u32,
                marker: false,
                audio_level: Some(-20),
                payload: audio,
            },
        );
        if n.is_multiple_of(2) {
            let key = std::mem::take(&mut self.key_due) || n == 0;
            for rid in ["q", "h", "f"] {
                let packets = vp8_frame(key, 2_000, 1_200, (n / 2) as u16, micros, n);
                let last = packets.len() - 1;
                for (i, p) in packets.into_iter().enumerate() {
                    let _ = client.write_rtp(
                        now,
                        Packet {
                            cid: "video",
                            rid: Some(rid),
                            timestamp: (n * 1800) as u32,
                            marker: i == last,
                            audio_level: None,
                            payload: p,
                        },
                    );
                }
            }
        }
        self.tick += 1;
        self.next = Some(now + Duration::from_millis(20));
    }

    fn done(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Counts what arrives per track and checks the stamps; after some video
/// it asks for a keyframe and waits to see one.
#[derive(Default)]
struct Subscriber {
    per_track: HashMap<Option<TrackSid>, (usize, u64)>,
    out_of_order: usize,
    /// Tracks the server offered, with their kinds.
    offered: HashMap<TrackSid, MediaKind>,
    /// Packets of a track not offered before them.
    unannounced: usize,
    joined_others: Option<usize>,
    /// The video section and when a keyframe was last asked for.
    asked: Option<(Mid, Instant)>,
    keyframe_after_asking: bool,
    keyframe_requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

/// The first packet of a VP8 keyframe (start bit, then P=0 in the frame header).
fn starts_vp8_keyframe(payload: &[u8]) -> bool {
    payload.first().is_some_and(|b| b & 0x10 != 0) && payload.get(4).is_some_and(|b| b & 0x01 == 0)
}

impl App for Subscriber {
    fn on_event(&mut self, now: Instant, event: &ClientEvent, client: &mut Client) {
        match event {
            ClientEvent::Joined { others, .. } => self.joined_others = Some(*others),
            ClientEvent::Offered { kind, track, .. } => {
                self.offered.insert(track.clone(), *kind);
            }
            ClientEvent::Rtp {
                mid,
                kind,
                track,
                payload,
                ..
            } => {
                if track.as_ref().and_then(|t| self.offered.get(t)) != Some(kind) {
                    self.unannounced += 1;
                }
                let Some((_, counter)) = read_stamp(payload) else {
                    return;
                };
                let e = self.per_track.entry(track.clone()).or_default();
                if counter < e.1 {
                    self.out_of_order += 1;
                }
                e.0 += 1;
                e.1 = counter;
                if *kind == MediaKind::Video {
                    match self.asked {
                        None if e.0 >= 20 => {
                            client.request_keyframe(*mid);
                            self.asked = Some((*mid, now));
                        }
                        Some(_) if starts_vp8_keyframe(payload) => self.keyframe_after_asking = true,
                        // The server limits how often it asks publishers: ask again now and then.
                        Some((m, at))
                            if !self.keyframe_after_asking && now > at + Duration::from_millis(500) =>
                        {
                            client.request_keyframe(m);
                            self.asked = Some((m, now));
                        }
                        _ => {}
                    }
                }
                let enough = self.per_track.len() == 2
                    && self.per_track.values().all(|(n, _)| *n >= 60)
                    && self.keyframe_after_asking
                    && self.keyframe_requests.load(Ordering::Relaxed) > 0;
                if enough {
                    self.stop.store(true, Ordering::Relaxed);
                }
            }
            _ => {}
        }
    }

    fn done(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_client_publishes_and_another_receives() {
    let bin = server_binary("debug").unwrap_or_else(|e| panic!("{e}"));
    let server = ServerProcess::start(&bin, &[]).unwrap_or_else(|e| panic!("{e}"));
    publish_and_receive(&server, "native").await;
}

/// RTP packets each media engine forwarded, from `/metrics`.
fn forwarded_per_engine(server: &ServerProcess) -> Vec<u64> {
    let metrics = server.metrics().unwrap_or_else(|e| panic!("{e}"));
    (0..server.media_workers)
        .map(|i| {
            let line = format!("conclave_engine_rtp_forwarded_total{{engine=\"{i}\"}} ");
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(&line))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {line}in the metrics:\n{metrics}"))
        })
        .collect()
}

/// With two engines, rooms land on both, each room's media stays on its
/// engine, and both engines carry media end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_on_each_engine_carry_media() {
    let bin = server_binary("debug").unwrap_or_else(|e| panic!("{e}"));
    let server =
        ServerProcess::start(&bin, &[("CONCLAVE_MEDIA_WORKERS", "2")]).unwrap_or_else(|e| panic!("{e}"));
    let mut before = forwarded_per_engine(&server);
    assert_eq!(before, [0, 0]);
    let mut rooms_on = [Vec::new(), Vec::new()];
    // The placement is a fixed function of the name: these names reach both
    // engines within a few tries (a hash gives each about half).
    for i in 0..12 {
        let room = format!("engines-{i}");
        publish_and_receive(&server, &room).await;
        let after = forwarded_per_engine(&server);
        let grew: Vec<usize> = (0..2).filter(|&e| after[e] > before[e]).collect();
        assert_eq!(
            grew.len(),
            1,
            "room {room} was forwarded by engines {grew:?}: {before:?} -> {after:?}"
        );
        rooms_on[grew[0]].push(room);
        before = after;
        if rooms_on.iter().all(|r| !r.is_empty()) {
            break;
        }
    }
    assert!(
        rooms_on.iter().all(|r| !r.is_empty()),
        "every room landed on one engine: {rooms_on:?}"
    );
}

/// A TCP proxy to `target` whose open connections are all cut when
/// `cut` is sent a new value; later connections pass.
async fn cutting_proxy(target: SocketAddr) -> (SocketAddr, watch::Sender<u32>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback listener");
    let addr = listener.local_addr().expect("its address");
    let (cut, _) = watch::channel(0u32);
    let accepted = Arc::new(AtomicUsize::new(0));
    let (cuts, count) = (cut.clone(), accepted.clone());
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            let mut cut = cuts.subscribe();
            cut.mark_unchanged();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = cut.changed() => {}
                }
            });
        }
    });
    (addr, cut, accepted)
}

/// Receives until its signalling connection is cut once, then until media
/// has kept coming for a while on the resumed session.
struct Resuming {
    cut: watch::Sender<u32>,
    packets: usize,
    cut_at: Option<usize>,
    resumed_at: Option<usize>,
    resumes: usize,
    stop: Arc<AtomicBool>,
}

impl App for Resuming {
    fn on_event(&mut self, _now: Instant, event: &ClientEvent, _client: &mut Client) {
        match event {
            ClientEvent::Rtp { .. } => {
                self.packets += 1;
                if self.packets == 100 && self.cut_at.is_none() {
                    self.cut_at = Some(self.packets);
                    self.cut.send_modify(|n| *n += 1);
                }
                if self.resumed_at.is_some_and(|at| self.packets >= at + 200) {
                    self.stop.store(true, Ordering::Relaxed);
                }
            }
            ClientEvent::Resumed => {
                self.resumes += 1;
                self.resumed_at = Some(self.packets);
            }
            _ => {}
        }
    }

    fn done(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// When the signalling connection drops without the server ending the
/// session, the driver resumes it on a new connection; media goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_signalling_connection_is_resumed() {
    let bin = server_binary("debug").unwrap_or_else(|e| panic!("{e}"));
    let server = ServerProcess::start(&bin, &[]).unwrap_or_else(|e| panic!("{e}"));
    let http: SocketAddr = server
        .url
        .strip_prefix("http://")
        .and_then(|a| a.parse().ok())
        .expect("the server's address");
    let (proxy, cut, accepted) = cutting_proxy(http).await;
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = spawn_publisher(&server, "resume", &stop, &Arc::new(AtomicUsize::new(0)));
    let sub_token = server.token("resume", "bob").expect("token");
    let mut subscriber = Resuming {
        cut,
        packets: 0,
        cut_at: None,
        resumed_at: None,
        resumes: 0,
        stop: stop.clone(),
    };
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        run(
            &format!("http://{proxy}"),
            &sub_token,
            LOOPBACK,
            Vec::new(),
            &mut subscriber,
        ),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(10), publishing).await;
    assert!(
        matches!(result, Ok(Ok(()))),
        "the subscriber did not finish: {result:?}; {} packets, cut after {:?}, resumed at {:?}\n{}",
        subscriber.packets,
        subscriber.cut_at,
        subscriber.resumed_at,
        server.log()
    );
    assert_eq!(
        subscriber.cut_at,
        Some(100),
        "the connection was cut once media flowed"
    );
    assert_eq!(subscriber.resumes, 1, "one resume for one cut");
    assert_eq!(
        accepted.load(Ordering::Relaxed),
        2,
        "the join's connection and the resume's"
    );
}

/// Alice publishes audio and simulcast video in `room` until `stop`.
fn spawn_publisher(
    server: &ServerProcess,
    room: &str,
    stop: &Arc<AtomicBool>,
    keyframe_requests: &Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Result<(), conclave_client::ClientError>> {
    let token = server.token(room, "alice").expect("token");
    let url = server.url.clone();
    let mut publisher = Publisher {
        base: Instant::now(),
        next: None,
        tick: 0,
        key_due: true,
        keyframe_requests: keyframe_requests.clone(),
        stop: stop.clone(),
    };
    tokio::spawn(async move {
        let tracks = vec![TrackSpec::audio("audio"), TrackSpec::simulcast_camera("video")];
        run(&url, &token, LOOPBACK, tracks, &mut publisher).await
    })
}

/// One participant publishes audio and simulcast video in `room`, another
/// receives both tracks in order, asks for a keyframe and gets one.
async fn publish_and_receive(server: &ServerProcess, room: &str) {
    let stop = Arc::new(AtomicBool::new(false));
    let keyframe_requests = Arc::new(AtomicUsize::new(0));
    let publishing = spawn_publisher(server, room, &stop, &keyframe_requests);
    let sub_token = server.token(room, "bob").expect("token");
    let mut subscriber = Subscriber {
        keyframe_requests: keyframe_requests.clone(),
        stop: stop.clone(),
        ..Default::default()
    };
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        run(&server.url, &sub_token, LOOPBACK, Vec::new(), &mut subscriber),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let published = tokio::time::timeout(Duration::from_secs(10), publishing).await;
    assert!(
        matches!(result, Ok(Ok(()))),
        "the subscriber did not finish: {result:?}; got {:?}, keyframe requests at the publisher: {}, \
         a keyframe after asking: {}\n{}",
        subscriber.per_track,
        keyframe_requests.load(Ordering::Relaxed),
        subscriber.keyframe_after_asking,
        server.log()
    );
    assert!(
        matches!(published, Ok(Ok(Ok(())))),
        "the publisher did not finish cleanly: {published:?}"
    );
    // Either may join first: the subscriber gets the tracks either way.
    assert!(
        matches!(subscriber.joined_others, Some(0 | 1)),
        "the subscriber's join: {:?}",
        subscriber.joined_others
    );
    assert_eq!(
        subscriber.per_track.len(),
        2,
        "tracks received: {:?}",
        subscriber.per_track
    );
    assert!(
        subscriber.per_track.keys().all(Option::is_some),
        "tracks are named by the server's ids: {:?}",
        subscriber.per_track
    );
    assert_eq!(subscriber.out_of_order, 0, "stamps went backwards");
    assert_eq!(
        subscriber.unannounced, 0,
        "every track is offered, with its kind, before its media: {:?}",
        subscriber.offered
    );
    let mut kinds: Vec<MediaKind> = subscriber.offered.values().copied().collect();
    kinds.sort_by_key(|k| *k == MediaKind::Video);
    assert_eq!(
        kinds,
        [MediaKind::Audio, MediaKind::Video],
        "offered: {:?}",
        subscriber.offered
    );
}

/// A client that closes its signalling connection gets the server's close
/// in answer (RFC 6455, section 5.5.1), so it knows the server read
/// everything it sent before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_a_close() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    let bin = server_binary("debug").unwrap_or_else(|e| panic!("{e}"));
    let server = ServerProcess::start(&bin, &[]).unwrap_or_else(|e| panic!("{e}"));
    let token = server.token("close", "ada").expect("token");
    let (mut ws, _) =
        tokio_tungstenite::connect_async(conclave_client::driver::signalling_url(&server.url, &token))
            .await
            .expect("the signalling connection opens");
    // The join response first.
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
    assert!(
        matches!(first, Ok(Some(Ok(Message::Binary(_))))),
        "no join response: {first:?}"
    );
    ws.close(None).await.expect("close sent");
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(c))) => return Ok(c),
                Some(Ok(_)) => {}
                other => return Err(format!("{other:?}")),
            }
        }
    })
    .await;
    assert!(
        matches!(answer, Ok(Ok(_))),
        "the server did not answer the close: {answer:?}\n{}",
        server.log()
    );
}
