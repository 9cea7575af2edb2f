//! Janus as a target: Debian's `janus` (1.1.2) started with a configuration
//! written here (the VideoRoom plugin and the WebSocket transport only, the
//! API on 127.0.0.1, ICE on [`JANUS_IP`] only, in the load generator's own
//! network namespace (`netns`), no STUN or TURN, DTLS-SRTP as always,
//! `event_loops` as many as the CPUs it runs on), and participants
//! that speak its VideoRoom API over a WebSocket with str0m peer
//! connections (full ICE, as Janus is not ICE-lite).
//!
//! Every participant joins the room as a VideoRoom "publisher" (a member):
//! those with a [`Source`] publish Opus and three-layer VP8 simulcast (by
//! rid) in one peer connection; those that receive subscribe, in one more
//! peer connection, to every other publisher's streams as Janus announces
//! them, the first at the `first` quality and the rest at `rest`
//! (substreams 0, 1, 2); past the number of videos wanted, to the audio
//! stream alone (by the `mid` Janus names in its list of publishers). They send the same media and measure the same way
//! as Conclave's participants, and answer keyframe requests with keyframes
//! and NACKs from str0m's send cache.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use livekit_protocol::VideoQuality;
use serde_json::{Value, json};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use conclave_client::driver;
use conclave_client::net::{bind_stamped, recv_stamped};

use crate::measure::Receiver;
use crate::media::Source;
use crate::netns::{JANUS_IP, PEER_IP};
use crate::target::{Joining, Outcome, Plan, Target, Wants};

/// The room every participant joins.
const ROOM: u64 = 1234;
/// The UDP ports Janus's peer connections use: below the kernel's
/// ephemeral range, so that no participant's socket is counted as Janus's.
pub const RTP_PORTS: RangeInclusive<u16> = 20_000..=29_999;
/// Publishers the room admits (Conclave's rooms have no limit).
const MAX_PUBLISHERS: u64 = 1_000;
/// The room's bitrate cap for each publisher (REMB), above what the three
/// layers send together (3.15 Mbit/s).
const ROOM_BITRATE: u64 = 4_000_000;
/// How long Janus may take to start and answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where Janus's plugins and transports are installed: the directory
/// holding `plugins/libjanus_videoroom.so` and
/// `transports/libjanus_websockets.so`.
fn library_dir() -> Result<PathBuf, String> {
    let mut candidates = vec![
        PathBuf::from("/usr/lib/janus"),
        PathBuf::from("/usr/local/lib/janus"),
    ];
    if let Ok(dirs) = std::fs::read_dir("/usr/lib") {
        candidates.extend(dirs.flatten().map(|d| d.path().join("janus")));
    }
    candidates
        .into_iter()
        .find(|d| {
            d.join("plugins/libjanus_videoroom.so").is_file()
                && d.join("transports/libjanus_websockets.so").is_file()
        })
        .ok_or_else(|| {
            "Janus's VideoRoom plugin and WebSocket transport were not found under /usr/lib: \
             apt-get install janus"
                .into()
        })
}

/// The `janus` program: `binary` if it names a file, else found on `PATH`.
pub fn find_binary(binary: &Path) -> Result<PathBuf, String> {
    if binary.components().count() > 1 {
        return binary
            .is_file()
            .then(|| binary.to_path_buf())
            .ok_or_else(|| format!("no Janus at {}: apt-get install janus", binary.display()));
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(binary))
        .find(|p| p.is_file())
        .ok_or_else(|| "Janus is not installed (no `janus` on PATH): apt-get install janus".into())
}

/// The configuration files of one Janus process, in `dir`.
/// `lib` is where Janus's plugins and transports are installed.
fn write_config(dir: &Path, lib: &Path, ws_port: u16, event_loops: usize) -> Result<(), String> {
    let io = |e: std::io::Error| format!("cannot write Janus's configuration in {}: {e}", dir.display());
    for sub in ["plugins", "transports", "events", "loggers"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(io)?;
    }
    // Only the VideoRoom plugin and the WebSocket transport are loaded.
    for (sub, file) in [
        ("plugins", "libjanus_videoroom.so"),
        ("transports", "libjanus_websockets.so"),
    ] {
        std::os::unix::fs::symlink(lib.join(sub).join(file), dir.join(sub).join(file)).map_err(io)?;
    }
    let d = dir.display();
    let (first, last) = (RTP_PORTS.start(), RTP_PORTS.end());
    let janus = format!(
        "general: {{\n\
         \tconfigs_folder = \"{d}\"\n\
         \tplugins_folder = \"{d}/plugins\"\n\
         \ttransports_folder = \"{d}/transports\"\n\
         \tevents_folder = \"{d}/events\"\n\
         \tloggers_folder = \"{d}/loggers\"\n\
         \tdebug_level = 4\n\
         \tserver_name = \"conclave-bench\"\n\
         \tsession_timeout = 0\n\
         \tevent_loops = {event_loops}\n\
         }}\n\
         certificates: {{\n}}\n\
         media: {{\n\
         \tipv6 = false\n\
         \trtp_port_range = \"{first}-{last}\"\n\
         }}\n\
         nat: {{\n\
         \tnice_debug = false\n\
         \tice_lite = false\n\
         \tice_tcp = false\n\
         \tfull_trickle = false\n\
         \tignore_mdns = true\n\
         \tice_enforce_list = \"{JANUS_IP}\"\n\
         }}\n\
         plugins: {{\n}}\n\
         transports: {{\n}}\n\
         loggers: {{\n}}\n\
         events: {{\n\tbroadcast = false\n}}\n"
    );
    let websockets = format!(
        "general: {{\n\
         \tjson = \"compact\"\n\
         \tws = true\n\
         \tws_port = {ws_port}\n\
         \tws_ip = \"127.0.0.1\"\n\
         \twss = false\n\
         }}\n\
         admin: {{\n\
         \tadmin_ws = false\n\
         \tadmin_wss = false\n\
         }}\n"
    );
    let videoroom = "general: {\n}\n";
    for (name, text) in [
        ("janus.jcfg", janus.as_str()),
        ("janus.transport.websockets.jcfg", websockets.as_str()),
        ("janus.plugin.videoroom.jcfg", videoroom),
    ] {
        std::fs::write(dir.join(name), text).map_err(io)?;
    }
    Ok(())
}

/// A Janus process started for one run, with one room for everyone.
pub struct JanusTarget {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl JanusTarget {
    /// Starts `binary` with `event_loops` event loops, on `cpu` when given,
    /// and creates the room through the API.
    pub async fn start(binary: &Path, cpu: Option<usize>, event_loops: usize) -> Result<Self, String> {
        let binary = find_binary(binary)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "conclave-janus-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        write_config(&dir, &library_dir()?, port, event_loops.max(1))?;
        let log = std::fs::File::create(dir.join("janus.log")).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        let child = cmd
            .arg("-C")
            .arg(dir.join("janus.jcfg"))
            .arg("-F")
            .arg(&dir)
            .arg("--disable-colors")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start Janus {}: {e}", binary.display()))?;
        let target = Self {
            child,
            dir,
            url: format!("ws://127.0.0.1:{port}/"),
        };
        target
            .create_room()
            .await
            .map_err(|e| format!("Janus did not start: {e}\n{}", target.log()))?;
        Ok(target)
    }

    /// Connects to the API (retrying while Janus starts) and creates the room.
    async fn create_room(&self) -> Result<(), String> {
        let until = Instant::now() + START_TIMEOUT;
        let mut ws = loop {
            match connect(&self.url).await {
                Ok(ws) => break ws,
                Err(e) if Instant::now() >= until => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let session = request(&mut ws, json!({"janus": "create"})).await?;
        let session = session["data"]["id"].as_u64().ok_or("no session id")?;
        let handle = request(
            &mut ws,
            json!({"janus": "attach", "session_id": session, "plugin": "janus.plugin.videoroom"}),
        )
        .await?;
        let handle = handle["data"]["id"].as_u64().ok_or("no handle id")?;
        let created = request(
            &mut ws,
            json!({
                "janus": "message",
                "session_id": session,
                "handle_id": handle,
                "body": {
                    "request": "create",
                    "room": ROOM,
                    "description": "benchmark",
                    "publishers": MAX_PUBLISHERS,
                    "bitrate": ROOM_BITRATE,
                    "audiocodec": "opus",
                    "videocodec": "vp8",
                    "notify_joining": false,
                    "permanent": false,
                },
            }),
        )
        .await?;
        if created["plugindata"]["data"]["videoroom"] != "created" {
            return Err(format!("the room was not created: {created}"));
        }
        let _ = ws.close(None).await;
        Ok(())
    }
}

impl Drop for JanusTarget {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Target for JanusTarget {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn media_ports(&self) -> RangeInclusive<u16> {
        RTP_PORTS
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("janus.log")).unwrap_or_default()
    }

    fn join(&self, plan: Plan) -> Joining {
        let url = self.url.clone();
        Box::pin(async move {
            let joined_at = Instant::now();
            let index = plan.index;
            let received = participate(&url, plan)
                .await
                .map_err(|e| format!("participant {index}: {e}"))?;
            Ok(Outcome {
                joined_at,
                received,
                resumes: 0,
            })
        })
    }
}

/// A WebSocket to Janus's API.
async fn connect(url: &str) -> Result<Ws, String> {
    let mut req = url.into_client_request().map_err(|e| e.to_string())?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("janus-protocol"),
    );
    let (ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(driver::signalling_config()), false)
        .await
        .map_err(|e| format!("cannot reach Janus at {url}: {e}"))?;
    Ok(ws)
}

async fn send(ws: &mut Ws, msg: &Value) -> Result<(), String> {
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .map_err(|e| format!("Janus's WebSocket: {e}"))
}

/// The next JSON message from Janus; `None` when the socket closed.
fn parse(msg: Message) -> Option<Result<Value, String>> {
    match msg {
        Message::Text(t) => {
            Some(serde_json::from_str(t.as_str()).map_err(|e| format!("not JSON from Janus: {e}")))
        }
        Message::Binary(b) => {
            Some(serde_json::from_slice(&b).map_err(|e| format!("not JSON from Janus: {e}")))
        }
        _ => None,
    }
}

/// Sends `msg` with a transaction and waits for its answer (not the ack).
async fn request(ws: &mut Ws, mut msg: Value) -> Result<Value, String> {
    let tx = "setup";
    msg["transaction"] = json!(tx);
    send(ws, &msg).await?;
    let until = Instant::now() + START_TIMEOUT;
    loop {
        let next = tokio::time::timeout_at(until.into(), ws.next())
            .await
            .map_err(|_| "Janus did not answer within 10 s".to_owned())?;
        let Some(Ok(m)) = next else {
            return Err("Janus closed the WebSocket".into());
        };
        let Some(v) = parse(m) else { continue };
        let v = v?;
        if v["transaction"] != tx || v["janus"] == "ack" {
            continue;
        }
        if v["janus"] == "error" {
            return Err(format!("Janus refused {msg}: {}", v["error"]));
        }
        if let Some(e) = v["plugindata"]["data"].get("error") {
            return Err(format!("the VideoRoom refused {msg}: {e}"));
        }
        return Ok(v);
    }
}

/// The substream Janus sends for a quality.
fn substream(q: VideoQuality) -> u8 {
    match q {
        VideoQuality::Low => 0,
        VideoQuality::Medium => 1,
        _ => 2,
    }
}

/// The participant number in a VideoRoom display name (`p<N>`).
fn display_index(display: &str) -> Option<usize> {
    display.strip_prefix('p')?.parse().ok()
}

/// One str0m peer connection on one UDP socket.
struct Peer {
    rtc: Rtc,
    local: SocketAddr,
    next: Instant,
}

impl Peer {
    fn new(now: Instant, local: SocketAddr) -> Self {
        let mut rtc = Rtc::builder()
            .set_crypto_provider(conclave_dtls::provider())
            .set_rtp_mode(true)
            .set_ice_lite(false)
            .enable_opus(true, false)
            .set_stats_interval(Some(Duration::from_secs(1)))
            .build(now);
        if let Ok(c) = Candidate::host(local, "udp") {
            rtc.add_local_candidate(c);
        }
        Self {
            rtc,
            local,
            next: now,
        }
    }

    fn receive(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if let Ok(r) = Receive::new(Protocol::Udp, from, self.local, data) {
            let _ = self.rtc.handle_input(Input::Receive(now, r));
        }
    }

    /// Polls until only a timeout is left; datagrams to send and events go
    /// to `out` and `events`.
    fn drain(&mut self, now: Instant, out: &mut Vec<(SocketAddr, Vec<u8>)>, events: &mut Vec<Event>) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.next = t;
                    return;
                }
                Ok(Output::Transmit(t)) => out.push((t.destination, t.contents.into())),
                Ok(Output::Event(e)) => events.push(e),
                Err(e) => {
                    tracing::debug!(error = %e, "peer connection failed");
                    self.next = now + Duration::from_secs(1);
                    return;
                }
            }
        }
    }
}

async fn bind_media() -> Result<UdpSocket, String> {
    // As much room as a native client's socket has, and each datagram
    // dated by its arrival, as the native client's.
    bind_stamped(
        SocketAddr::new(PEER_IP.into(), 0),
        conclave_client::driver::RECV_BUFFER,
    )
    .await
    .map_err(|e| e.to_string())
}

async fn recv_from(
    sock: Option<&UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, Instant)> {
    match sock {
        Some(s) => recv_stamped(s, buf).await,
        None => std::future::pending().await,
    }
}

/// The publishing side of a participant.
struct Publishing {
    peer: Peer,
    source: Source,
    pending: Option<SdpPendingOffer>,
    audio: Option<Mid>,
    video: Option<Mid>,
    seq: HashMap<(Mid, Option<Rid>), u64>,
    /// ICE and DTLS are up: media flows.
    sending: bool,
    publishing: Option<oneshot::Sender<()>>,
}

impl Publishing {
    /// The SDP offer of the audio and (simulcast) video sections.
    fn offer(&mut self) -> Result<String, String> {
        let mut api = self.peer.rtc.sdp_api();
        let stream = Some("conclave-loadgen".to_owned());
        self.audio = Some(api.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            stream.clone(),
            Some("audio".into()),
            None,
        ));
        if self.source.has_video() {
            let mut s = Simulcast::new();
            for layer in self.source.layers() {
                s.add_send_layer(SimulcastLayer::new(layer.rid));
            }
            self.video = Some(api.add_media(
                MediaKind::Video,
                Direction::SendOnly,
                stream,
                Some("video".into()),
                Some(s),
            ));
        }
        let (offer, pending) = api.apply().ok_or("nothing to offer")?;
        self.pending = Some(pending);
        Ok(offer.to_sdp_string())
    }

    fn answer(&mut self, sdp: &str) -> Result<(), String> {
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| format!("Janus's answer: {e}"))?;
        let pending = self.pending.take().ok_or("an answer without an offer")?;
        self.peer
            .rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| format!("Janus's answer: {e}"))
    }

    fn send_due(&mut self, now: Instant) {
        for o in self.source.due(now) {
            let (mid, codec) = if o.cid == "audio" {
                (self.audio, Codec::Opus)
            } else {
                (self.video, Codec::Vp8)
            };
            let Some(mid) = mid else { continue };
            let Some(pt) = self
                .peer
                .rtc
                .codec_config()
                .params()
                .iter()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
            else {
                continue;
            };
            let rid = o.rid.map(Rid::from);
            let seq = self.seq.entry((mid, rid)).or_insert(1);
            *seq += 1;
            let ext = ExtensionValues {
                audio_level: o.audio_level,
                voice_activity: o.audio_level.map(|l| l > -50),
                ..Default::default()
            };
            let video = o.cid != "audio";
            let mut api = self.peer.rtc.direct_api();
            if let Some(tx) = api.stream_tx_by_mid(mid, rid) {
                tx.write_rtp(
                    RtpWrite::new(pt, SeqNo::from(*seq), o.timestamp, now, o.payload)
                        .marker(o.marker)
                        .ext_vals(ext)
                        .nackable(video),
                );
            }
        }
        if let Some(tx) = self.publishing.take() {
            let _ = tx.send(());
        }
    }
}

/// The receiving side of a participant.
struct Receiving {
    peer: Peer,
    wants: Wants,
    recv: Receiver,
    /// Feeds subscribed to or about to be.
    known: HashSet<u64>,
    /// Feeds to subscribe to next: feed id, participant number, the
    /// `mid` of its audio stream.
    queue: Vec<(u64, usize, Option<String>)>,
    /// Video feeds asked for so far (the first gets `first`).
    videos: usize,
    /// A subscription change is under way (until Janus has our answer).
    busy: bool,
    /// The subscription exists (joined as a subscriber).
    joined: bool,
}

impl Receiving {
    /// Nothing subscribed yet; media arrives on a peer connection from `addr`.
    fn new(now: Instant, addr: SocketAddr, wants: Wants) -> Self {
        Self {
            peer: Peer::new(now, addr),
            wants,
            recv: Receiver::default(),
            known: HashSet::new(),
            queue: Vec::new(),
            videos: 0,
            busy: false,
            joined: false,
        }
    }

    /// Notes the publishers of a VideoRoom event to subscribe to.
    fn note_publishers(&mut self, own: usize, list: &Value) {
        let Some(list) = list.as_array() else { return };
        for p in list {
            let (Some(id), Some(n)) = (p["id"].as_u64(), p["display"].as_str().and_then(display_index))
            else {
                continue;
            };
            if n != own && n < self.wants.publishers && self.known.insert(id) {
                let audio = p["streams"].as_array().and_then(|streams| {
                    streams
                        .iter()
                        .find(|s| s["type"] == "audio")
                        .and_then(|s| s["mid"].as_str())
                        .map(str::to_owned)
                });
                self.queue.push((id, n, audio));
            }
        }
        self.queue.sort_by_key(|(_, n, _)| *n);
    }

    /// The `streams` of a subscription to the queued feeds: whole feeds
    /// while videos are wanted, then their audio streams alone.
    fn take_streams(&mut self) -> Result<Vec<Value>, String> {
        let mut out = Vec::new();
        for (feed, _, audio) in std::mem::take(&mut self.queue) {
            let mut s = json!({ "feed": feed });
            if self.wants.video && self.videos < self.wants.videos {
                let q = if self.videos == 0 {
                    self.wants.first
                } else {
                    self.wants.rest
                };
                self.videos += 1;
                s["substream"] = json!(substream(q));
            } else if self.wants.video {
                let mid = audio.ok_or_else(|| format!("Janus named no audio stream of feed {feed}"))?;
                s["mid"] = json!(mid);
            }
            out.push(s);
        }
        Ok(out)
    }

    fn on_rtp(&mut self, p: &str0m::rtp::RtpPacket, mid: Option<Mid>) {
        let at = p.timestamp;
        let window = self.wants.window;
        if at < window.measure_from {
            self.recv.first_packet.get_or_insert(at);
            return;
        }
        if at >= window.until {
            return;
        }
        let delay = conclave_client::synth::read_stamp(&p.payload).map(|(sent, _)| {
            at.duration_since(window.base)
                .saturating_sub(Duration::from_micros(sent))
        });
        let stream = mid.map_or_else(|| p.header.ssrc.to_string(), |m| m.to_string());
        self.recv
            .on_packet(&stream, *p.seq_no, p.payload.len(), delay, at);
    }
}

/// What a sent request was for.
enum Pending {
    Session,
    AttachPublisher,
    AttachSubscriber,
}

/// One participant's state in the VideoRoom.
struct Member {
    index: usize,
    session: Option<u64>,
    publisher_handle: Option<u64>,
    subscriber_handle: Option<u64>,
    attaching_subscriber: bool,
    pending: HashMap<String, Pending>,
    next_tx: u64,
    /// Messages to send to Janus.
    out: Vec<Value>,
    publ: Option<Publishing>,
    sub: Option<Receiving>,
}

impl Member {
    fn request(&mut self, mut msg: Value, pending: Option<Pending>) {
        self.next_tx += 1;
        let tx = format!("t{}", self.next_tx);
        msg["transaction"] = json!(tx);
        if let Some(s) = self.session {
            msg["session_id"] = json!(s);
        }
        if let Some(p) = pending {
            self.pending.insert(tx, p);
        }
        self.out.push(msg);
    }

    fn message(&mut self, handle: u64, body: Value, jsep: Option<Value>) {
        let mut msg = json!({"janus": "message", "handle_id": handle, "body": body});
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        self.request(msg, None);
    }

    fn attach(&mut self, pending: Pending) {
        self.request(
            json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}),
            Some(pending),
        );
    }

    /// Subscribes to the queued feeds: a new subscription, or more streams
    /// in the existing one.
    fn pump(&mut self) -> Result<(), String> {
        let Some(sub) = &mut self.sub else { return Ok(()) };
        if sub.queue.is_empty() || sub.busy {
            return Ok(());
        }
        match self.subscriber_handle {
            None if !self.attaching_subscriber => {
                self.attaching_subscriber = true;
                self.attach(Pending::AttachSubscriber);
            }
            None => {}
            Some(handle) => {
                sub.busy = true;
                let streams = sub.take_streams()?;
                let body = if sub.joined {
                    json!({"request": "subscribe", "streams": streams})
                } else {
                    sub.joined = true;
                    json!({"request": "join", "ptype": "subscriber", "room": ROOM, "streams": streams})
                };
                self.message(handle, body, None);
            }
        }
        Ok(())
    }

    /// A message from Janus.
    fn on_janus(&mut self, msg: &Value) -> Result<(), String> {
        let tx = msg["transaction"].as_str().unwrap_or_default();
        match msg["janus"].as_str().unwrap_or_default() {
            "success" => match self.pending.remove(tx) {
                Some(Pending::Session) => {
                    self.session = msg["data"]["id"].as_u64();
                    self.attach(Pending::AttachPublisher);
                }
                Some(Pending::AttachPublisher) => {
                    let handle = msg["data"]["id"].as_u64().ok_or("no handle id")?;
                    self.publisher_handle = Some(handle);
                    let body = json!({
                        "request": "join",
                        "ptype": "publisher",
                        "room": ROOM,
                        "display": format!("p{}", self.index),
                    });
                    self.message(handle, body, None);
                }
                Some(Pending::AttachSubscriber) => {
                    self.subscriber_handle = msg["data"]["id"].as_u64();
                    self.attaching_subscriber = false;
                    self.pump()?;
                }
                None => {}
            },
            "error" => return Err(format!("Janus: {}", msg["error"])),
            "event" => {
                let data = &msg["plugindata"]["data"];
                if let Some(e) = data.get("error") {
                    return Err(format!("the VideoRoom: {e} ({})", data["error_code"]));
                }
                let sender = msg["sender"].as_u64();
                let jsep = msg.get("jsep");
                if sender.is_some() && sender == self.publisher_handle {
                    self.on_publisher_event(data, jsep)?;
                } else if sender.is_some() && sender == self.subscriber_handle {
                    self.on_subscriber_event(data, jsep)?;
                }
            }
            "trickle" => {
                let sender = msg["sender"].as_u64();
                let line = msg["candidate"]["candidate"].as_str().unwrap_or_default();
                let line = line.strip_prefix("a=").unwrap_or(line);
                if let Ok(c) = Candidate::from_sdp_string(line) {
                    if sender.is_some() && sender == self.publisher_handle {
                        if let Some(p) = &mut self.publ {
                            p.peer.rtc.add_remote_candidate(c);
                        }
                    } else if let Some(s) = &mut self.sub {
                        s.peer.rtc.add_remote_candidate(c);
                    }
                }
            }
            // Seen as loss in the figures if it happens before the end.
            "hangup" => tracing::debug!(reason = %msg["reason"], "Janus hung up"),
            _ => {}
        }
        Ok(())
    }

    fn on_publisher_event(&mut self, data: &Value, jsep: Option<&Value>) -> Result<(), String> {
        if data["videoroom"] == "joined"
            && let (Some(p), Some(handle)) = (&mut self.publ, self.publisher_handle)
        {
            let sdp = p.offer()?;
            let body = json!({"request": "publish", "audiocodec": "opus", "videocodec": "vp8"});
            // Our rids go from the lowest layer to the highest.
            let jsep = json!({"type": "offer", "sdp": sdp, "trickle": false, "rid_order": "lmh"});
            self.message(handle, body, Some(jsep));
        }
        if let Some(s) = &mut self.sub {
            s.note_publishers(self.index, &data["publishers"]);
        }
        if let (Some(j), Some(p)) = (jsep, &mut self.publ)
            && j["type"] == "answer"
        {
            p.answer(j["sdp"].as_str().unwrap_or_default())?;
        }
        self.pump()
    }

    fn on_subscriber_event(&mut self, data: &Value, jsep: Option<&Value>) -> Result<(), String> {
        let (Some(sub), Some(handle)) = (&mut self.sub, self.subscriber_handle) else {
            return Ok(());
        };
        if let Some(j) = jsep
            && j["type"] == "offer"
        {
            let offer = SdpOffer::from_sdp_string(j["sdp"].as_str().unwrap_or_default())
                .map_err(|e| format!("Janus's offer: {e}"))?;
            let answer = sub
                .peer
                .rtc
                .sdp_api()
                .accept_offer(offer)
                .map_err(|e| format!("Janus's offer: {e}"))?;
            let jsep = json!({"type": "answer", "sdp": answer.to_sdp_string(), "trickle": false});
            self.message(handle, json!({"request": "start"}), Some(jsep));
            return Ok(());
        }
        if data["started"] == "ok" || (data["videoroom"] == "updated" && jsep.is_none()) {
            sub.busy = false;
            self.pump()?;
        }
        Ok(())
    }
}

/// Joins the room, publishes and receives as `plan` says, and measures.
async fn participate(url: &str, plan: Plan) -> Result<Option<Receiver>, String> {
    let Plan {
        index,
        source,
        receive,
        publishing,
        stop,
    } = plan;
    let now = Instant::now();
    let pub_sock = match &source {
        Some(_) => Some(bind_media().await?),
        None => None,
    };
    let sub_sock = match &receive {
        Some(_) => Some(bind_media().await?),
        None => None,
    };
    let local = |s: &Option<UdpSocket>| s.as_ref().and_then(|s| s.local_addr().ok());
    let mut m = Member {
        index,
        session: None,
        publisher_handle: None,
        subscriber_handle: None,
        attaching_subscriber: false,
        pending: HashMap::new(),
        next_tx: 0,
        out: Vec::new(),
        publ: match (source, local(&pub_sock)) {
            (Some(source), Some(addr)) => Some(Publishing {
                peer: Peer::new(now, addr),
                source,
                pending: None,
                audio: None,
                video: None,
                seq: HashMap::new(),
                sending: false,
                publishing,
            }),
            _ => None,
        },
        sub: match (receive, local(&sub_sock)) {
            (Some(wants), Some(addr)) => Some(Receiving::new(now, addr, wants)),
            _ => None,
        },
    };
    let mut ws = connect(url).await?;
    m.request(json!({"janus": "create"}), Some(Pending::Session));
    let mut pub_buf = vec![0u8; 2048];
    let mut sub_buf = vec![0u8; 2048];
    let mut datagrams: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    loop {
        for msg in std::mem::take(&mut m.out) {
            send(&mut ws, &msg).await?;
        }
        let now = Instant::now();
        if let Some(p) = &mut m.publ {
            p.peer.drain(now, &mut datagrams, &mut events);
            for e in events.drain(..) {
                match e {
                    Event::Connected if !p.sending => {
                        p.sending = true;
                        p.source.start_at(now);
                    }
                    Event::KeyframeRequest(_) => p.source.keyframe(),
                    _ => {}
                }
            }
            if let Some(sock) = &pub_sock {
                for (to, data) in datagrams.drain(..) {
                    // A full socket buffer loses the datagram, as a network would.
                    let _ = sock.send_to(&data, to).await;
                }
            }
        }
        if let Some(s) = &mut m.sub {
            s.peer.drain(now, &mut datagrams, &mut events);
            for e in events.drain(..) {
                if let Event::RtpPacket(p) = e {
                    let mid = s
                        .peer
                        .rtc
                        .direct_api()
                        .stream_rx(&p.header.ssrc)
                        .map(|rx| rx.mid());
                    s.on_rtp(&p, mid);
                }
            }
            if let Some(sock) = &sub_sock {
                for (to, data) in datagrams.drain(..) {
                    let _ = sock.send_to(&data, to).await;
                }
            }
        }
        let done = match &m.sub {
            Some(s) => now >= s.wants.window.until,
            None => stop.load(Ordering::Relaxed),
        };
        if done {
            break;
        }
        let mut wake = now + Duration::from_millis(100);
        if let Some(p) = &m.publ {
            wake = wake.min(p.peer.next);
            if p.sending {
                wake = wake.min(p.source.next_wake());
            }
        }
        if let Some(s) = &m.sub {
            wake = wake.min(s.peer.next).min(s.wants.window.until);
        }
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(msg)) => {
                    if let Some(v) = parse(msg) {
                        m.on_janus(&v?)?;
                    }
                }
                Some(Err(e)) => return Err(format!("Janus's WebSocket: {e}")),
                None => return Err("Janus closed the WebSocket".into()),
            },
            r = recv_from(pub_sock.as_ref(), &mut pub_buf) => {
                if let (Ok((n, from, at)), Some(p)) = (r, &mut m.publ) {
                    p.peer.receive(at, from, &pub_buf[..n]);
                }
            }
            r = recv_from(sub_sock.as_ref(), &mut sub_buf) => {
                if let (Ok((n, from, at)), Some(s)) = (r, &mut m.sub) {
                    s.peer.receive(at, from, &sub_buf[..n]);
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        let now = Instant::now();
        if let Some(p) = &mut m.publ {
            let _ = p.peer.rtc.handle_input(Input::Timeout(now));
            if p.sending && p.source.next_wake() <= now {
                p.send_due(now);
            }
        }
        if let Some(s) = &mut m.sub {
            let _ = s.peer.rtc.handle_input(Input::Timeout(now));
        }
    }
    let _ = ws.close(None).await;
    Ok(m.sub.map(|s| s.recv))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Window;

    fn wants(publishers: usize) -> Wants {
        let now = Instant::now();
        Wants {
            publishers,
            first: VideoQuality::High,
            rest: VideoQuality::Low,
            video: true,
            videos: usize::MAX,
            window: Window {
                base: now,
                measure_from: now,
                until: now,
            },
        }
    }

    #[test]
    fn publishers_are_subscribed_once_in_order_first_high_then_low() {
        let now = Instant::now();
        let addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        let mut r = Receiving::new(now, addr, wants(3));
        let list = json!([
            {"id": 30, "display": "p2"},
            {"id": 10, "display": "p0"},
            {"id": 20, "display": "p1"},
            {"id": 40, "display": "p7"},
            {"id": 50, "display": "someone"},
            {"display": "p0"},
        ]);
        r.note_publishers(1, &list);
        r.note_publishers(1, &list);
        r.note_publishers(1, &json!("not a list"));
        assert_eq!(r.queue, vec![(10, 0, None), (30, 2, None)]);
        let streams = r.take_streams().expect("streams");
        assert_eq!(
            streams,
            vec![
                json!({"feed": 10, "substream": 2}),
                json!({"feed": 30, "substream": 0})
            ]
        );
        assert!(r.queue.is_empty());
    }

    #[test]
    fn past_the_videos_wanted_only_the_audio_stream_is_subscribed() {
        let now = Instant::now();
        let addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        let mut r = Receiving::new(
            now,
            addr,
            Wants {
                videos: 1,
                ..wants(4)
            },
        );
        let streams = json!([{"type": "audio", "mid": "a0"}, {"type": "video", "mid": "v1"}]);
        r.note_publishers(
            3,
            &json!([
                {"id": 10, "display": "p0", "streams": streams},
                {"id": 20, "display": "p1", "streams": streams},
            ]),
        );
        assert_eq!(
            r.take_streams().expect("streams"),
            vec![
                json!({"feed": 10, "substream": 2}),
                json!({"feed": 20, "mid": "a0"})
            ]
        );
        // A feed whose audio stream is not named cannot be taken without
        // its video: that is an error, not a silent extra video.
        r.note_publishers(3, &json!([{"id": 30, "display": "p2"}]));
        let e = r.take_streams().expect_err("no audio mid");
        assert!(e.contains("feed 30"), "{e}");
    }

    #[test]
    fn display_names() {
        assert_eq!(display_index("p12"), Some(12));
        assert_eq!(display_index("p"), None);
        assert_eq!(display_index("x1"), None);
    }

    #[test]
    fn the_configuration_names_only_loopback_and_the_namespace_address() {
        let base = std::env::temp_dir().join(format!("conclave-janus-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (lib, dir) = (base.join("lib"), base.join("conf"));
        for (sub, file) in [
            ("plugins", "libjanus_videoroom.so"),
            ("transports", "libjanus_websockets.so"),
        ] {
            std::fs::create_dir_all(lib.join(sub)).expect("lib");
            std::fs::write(lib.join(sub).join(file), b"").expect("lib file");
        }
        write_config(&dir, &lib, 8188, 2).expect("configuration written");
        let janus = std::fs::read_to_string(dir.join("janus.jcfg")).expect("janus.jcfg");
        assert!(janus.contains("event_loops = 2"), "{janus}");
        assert!(janus.contains("ice_enforce_list = \"198.18.0.1\""), "{janus}");
        assert!(janus.contains("rtp_port_range = \"20000-29999\""), "{janus}");
        let ws = std::fs::read_to_string(dir.join("janus.transport.websockets.jcfg")).expect("ws");
        assert!(ws.contains("ws_ip = \"127.0.0.1\""), "{ws}");
        for (sub, file) in [
            ("plugins", "libjanus_videoroom.so"),
            ("transports", "libjanus_websockets.so"),
        ] {
            let names: Vec<_> = std::fs::read_dir(dir.join(sub))
                .expect("folder")
                .flatten()
                .map(|e| e.file_name())
                .collect();
            assert_eq!(
                names,
                vec![std::ffi::OsString::from(file)],
                "only {file} in {sub}"
            );
        }
        let _ = std::fs::remove_dir_all(&base);
    }
}
