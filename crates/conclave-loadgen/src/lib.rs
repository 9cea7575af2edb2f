//! Load generator: many native clients in one process against a Conclave
//! server or the ceiling forwarder, the same synthetic media and the same
//! measurements for both, and a report of what the server cost.

pub mod ceiling;
pub mod conclave;
pub mod measure;
pub mod media;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use conclave_client::TrackSpec;
use conclave_client::server_process::ServerProcess;
use livekit_protocol::VideoQuality;
use serde::Serialize;

use measure::{ProcUsage, Receiver, percentile, proc_usage};
use media::{LayerPlan, SIMULCAST, Source};

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// The Conclave server (`conclave serve`).
    Conclave,
    /// The plain UDP forwarder: no crypto, no congestion control.
    Ceiling,
}

/// Who sends what to whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// One participant talks, everyone else listens.
    AudioFanout,
    /// One participant publishes audio and simulcast video; everyone else
    /// receives the audio and one layer (`--layer`).
    VideoFanout,
    /// Everyone publishes audio and simulcast video and receives everyone:
    /// one video at the high layer, the rest at the low one.
    Meeting,
}

/// A run's settings.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: Target,
    pub scenario: Scenario,
    pub participants: usize,
    /// Seconds measured, after the warm-up.
    pub seconds: f64,
    pub warmup: f64,
    /// The layer subscribers ask for in video fan-out.
    pub layer: VideoQuality,
    /// The server binary (Conclave) or this program (the forwarder).
    pub binary: PathBuf,
    /// CPU the server or forwarder is pinned to, and the one this process
    /// is pinned to, when `taskset` is there.
    pub cpus: Option<(usize, usize)>,
}

/// The result of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: Target,
    pub scenario: Scenario,
    pub participants: usize,
    pub publishers: usize,
    pub seconds: f64,
    /// Packets the subscribers received in the measured window.
    pub packets: u64,
    /// Packets the sequence numbers say should have arrived.
    pub expected: u64,
    pub loss_percent: f64,
    pub latency_p50_us: u64,
    pub latency_p99_us: u64,
    pub join_p50_ms: u64,
    pub join_p95_ms: u64,
    pub received_mbit_s: f64,
    /// CPU time and memory of the server or forwarder.
    pub server_cpu_seconds: f64,
    pub server_rss_kib: u64,
    /// Packets received by subscribers per server CPU-second.
    pub packets_per_cpu_second: f64,
    /// Whether processes were pinned to separate CPUs.
    pub pinned: bool,
}

/// Pins a process to one CPU with `taskset`; false when that is not possible.
fn pin(pid: u32, cpu: usize) -> bool {
    Command::new("taskset")
        .args(["-pc", &cpu.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

struct Forwarder(Child);

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn layers_for(scenario: Scenario, target: Target, layer: VideoQuality) -> Vec<LayerPlan> {
    match (scenario, target) {
        (Scenario::AudioFanout, _) => Vec::new(),
        (_, Target::Conclave) => SIMULCAST.to_vec(),
        // The forwarder selects nothing: send only what subscribers get.
        (Scenario::VideoFanout, Target::Ceiling) => vec![SIMULCAST[(layer as usize).min(2)]],
        (Scenario::Meeting, Target::Ceiling) => vec![SIMULCAST[0]],
    }
}

/// The process's usage at `from` and at `until`: the measured window only.
async fn cost_between(pid: u32, from: Instant, until: Instant) -> (ProcUsage, ProcUsage) {
    tokio::time::sleep_until(from.into()).await;
    let before = proc_usage(pid).unwrap_or_default();
    tokio::time::sleep_until(until.into()).await;
    (before, proc_usage(pid).unwrap_or_default())
}

/// Runs one scenario against one target and reports.
pub async fn run(cfg: &RunConfig) -> Result<Report, String> {
    let n = cfg.participants.max(2);
    let publishers = if cfg.scenario == Scenario::Meeting { n } else { 1 };
    let base = Instant::now();
    let start = base + Duration::from_millis(200);
    let measure_from = start + Duration::from_secs_f64(cfg.warmup);
    let until = measure_from + Duration::from_secs_f64(cfg.seconds);
    let mut pinned = false;
    if let Some((_, own)) = cfg.cpus {
        pinned = pin(std::process::id(), own);
    }
    let layers = layers_for(cfg.scenario, cfg.target, cfg.layer);
    // The server's cost is read while it still runs.
    let (receivers, before, after) = match cfg.target {
        Target::Conclave => {
            let server = ServerProcess::start(&cfg.binary, &[]).map_err(|e| e.to_string())?;
            if let Some((cpu, _)) = cfg.cpus {
                pinned &= pin(server.pid(), cpu);
            }
            let cost = tokio::spawn(cost_between(server.pid(), measure_from, until));
            let receivers =
                run_conclave(cfg, &server, n, publishers, &layers, base, measure_from, until).await?;
            let (before, after) = cost.await.map_err(|e| e.to_string())?;
            (receivers, before, after)
        }
        Target::Ceiling => {
            let port = std::net::UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .map_err(|e| e.to_string())?
                .port();
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
            let child = Command::new(&cfg.binary)
                .args(["forward", "--listen", &addr.to_string()])
                .stdin(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start the forwarder {}: {e}", cfg.binary.display()))?;
            let fwd = Forwarder(child);
            if let Some((cpu, _)) = cfg.cpus {
                pinned &= pin(fwd.0.id(), cpu);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let cost = tokio::spawn(cost_between(fwd.0.id(), measure_from, until));
            let receivers = run_ceiling(addr, n, publishers, &layers, base, measure_from, until).await?;
            let (before, after) = cost.await.map_err(|e| e.to_string())?;
            (receivers, before, after)
        }
    };
    let mut delays: Vec<u64> = Vec::new();
    let mut joins: Vec<u64> = Vec::new();
    let (mut packets, mut expected, mut bytes) = (0u64, 0u64, 0u64);
    for (r, joined_at) in &receivers {
        let (e, got) = r.expected_received();
        expected += e;
        packets += got;
        bytes += r.bytes;
        delays.extend_from_slice(&r.delays_us);
        if let Some(first) = r.first_packet {
            joins.push(first.duration_since(*joined_at).as_millis() as u64);
        }
    }
    if receivers.iter().any(|(r, _)| r.first_packet.is_none()) {
        return Err(format!(
            "{} of {} subscribers received nothing",
            receivers.iter().filter(|(r, _)| r.first_packet.is_none()).count(),
            receivers.len()
        ));
    }
    let cpu = after.cpu_seconds - before.cpu_seconds;
    Ok(Report {
        target: cfg.target,
        scenario: cfg.scenario,
        participants: n,
        publishers,
        seconds: cfg.seconds,
        packets,
        expected,
        loss_percent: if expected == 0 {
            0.0
        } else {
            100.0 * expected.saturating_sub(packets) as f64 / expected as f64
        },
        latency_p50_us: percentile(&mut delays, 50.0),
        latency_p99_us: percentile(&mut delays, 99.0),
        join_p50_ms: percentile(&mut joins, 50.0),
        join_p95_ms: percentile(&mut joins, 95.0),
        received_mbit_s: bytes as f64 * 8.0 / cfg.seconds / 1e6,
        server_cpu_seconds: cpu,
        server_rss_kib: after.rss_kib,
        packets_per_cpu_second: if cpu > 0.0 { packets as f64 / cpu } else { 0.0 },
        pinned,
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_conclave(
    cfg: &RunConfig,
    server: &ServerProcess,
    n: usize,
    publishers: usize,
    layers: &[LayerPlan],
    base: Instant,
    measure_from: Instant,
    until: Instant,
) -> Result<Vec<(Receiver, Instant)>, String> {
    let room = format!("bench-{}", std::process::id());
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (first, rest) = match cfg.scenario {
        Scenario::Meeting => (VideoQuality::High, VideoQuality::Low),
        _ => (cfg.layer, cfg.layer),
    };
    let mut tasks = Vec::new();
    for i in 0..n {
        let token = server.token(&room, &format!("p{i}")).map_err(|e| e.to_string())?;
        let url = server.url.clone();
        let publishes = i < publishers;
        let receives = cfg.scenario == Scenario::Meeting || i >= publishers;
        let layers = layers.to_vec();
        tasks.push(tokio::spawn(async move {
            let joined_at = Instant::now();
            if publishes && !receives {
                let mut tracks = vec![TrackSpec::audio("audio")];
                if !layers.is_empty() {
                    tracks.push(TrackSpec::simulcast_camera("video"));
                }
                let count = tracks.len();
                let source = Source::new(true, layers, base, Instant::now());
                let mut app = conclave::Publisher::new(source, count, until);
                conclave_client::driver::run(&url, &token, loopback, tracks, &mut app)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(None)
            } else if publishes {
                // A meeting participant publishes and receives: two clients
                // would be two participants, so this one does both.
                let mut app = MeetingMember::new(
                    Source::new(true, layers, base, Instant::now()),
                    conclave::Subscriber::new(base, measure_from, until, first, rest),
                );
                let tracks = vec![TrackSpec::audio("audio"), TrackSpec::simulcast_camera("video")];
                conclave_client::driver::run(&url, &token, loopback, tracks, &mut app)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Some((app.sub.recv, joined_at)))
            } else {
                let mut app = conclave::Subscriber::new(base, measure_from, until, first, rest);
                conclave_client::driver::run(&url, &token, loopback, Vec::new(), &mut app)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Some((app.recv, joined_at)))
            }
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        let r: Result<Option<(Receiver, Instant)>, String> = t.await.map_err(|e| e.to_string())?;
        if let Some(x) = r.map_err(|e| format!("{e}\n{}", server.log()))? {
            out.push(x);
        }
    }
    Ok(out)
}

/// A meeting participant: publishes like [`conclave::Publisher`] and
/// measures like [`conclave::Subscriber`].
struct MeetingMember {
    publ: conclave::Publisher,
    sub: conclave::Subscriber,
}

impl MeetingMember {
    fn new(source: Source, sub: conclave::Subscriber) -> Self {
        Self {
            publ: conclave::Publisher::new(source, 2, Instant::now() + Duration::from_secs(3600)),
            sub,
        }
    }
}

impl conclave_client::driver::App for MeetingMember {
    fn on_event(
        &mut self,
        now: Instant,
        event: &conclave_client::ClientEvent,
        client: &mut conclave_client::Client,
    ) {
        self.publ.on_event(now, event, client);
        self.sub.on_event(now, event, client);
    }

    fn next_wake(&self) -> Option<Instant> {
        match (self.publ.next_wake(), self.sub.next_wake()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_wake(&mut self, now: Instant, client: &mut conclave_client::Client) {
        if self.publ.next_wake().is_some_and(|w| w <= now) {
            self.publ.on_wake(now, client);
        }
    }

    fn done(&self) -> bool {
        self.sub.done()
    }
}

async fn run_ceiling(
    addr: SocketAddr,
    n: usize,
    publishers: usize,
    layers: &[LayerPlan],
    base: Instant,
    measure_from: Instant,
    until: Instant,
) -> Result<Vec<(Receiver, Instant)>, String> {
    let mut subs = Vec::new();
    let mut pubs = Vec::new();
    for i in 0..n {
        if i >= publishers || publishers == n {
            subs.push(tokio::spawn(ceiling::subscribe(addr, base, measure_from, until)));
        }
    }
    // Subscribers join first, as they would be in the room already.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..publishers {
        let source = Source::new(true, layers.to_vec(), base, Instant::now());
        pubs.push(tokio::spawn(ceiling::publish(
            addr,
            source,
            (i as u32 + 1) << 8,
            until,
        )));
    }
    let mut out = Vec::new();
    for s in subs {
        out.push(s.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?);
    }
    for p in pubs {
        p.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// The reports as a table.
pub fn table(reports: &[Report]) -> String {
    let mut s = format!(
        "{:<9} {:<13} {:>5} {:>9} {:>7} {:>8} {:>8} {:>7} {:>7} {:>8} {:>7} {:>9} {:>12}\n",
        "target",
        "scenario",
        "n",
        "packets",
        "loss%",
        "p50 us",
        "p99 us",
        "join50",
        "join95",
        "Mbit/s",
        "cpu s",
        "rss MiB",
        "pkts/cpu-s"
    );
    for r in reports {
        s.push_str(&format!(
            "{:<9} {:<13} {:>5} {:>9} {:>7.3} {:>8} {:>8} {:>7} {:>7} {:>8.1} {:>7.2} {:>9.1} {:>12.0}\n",
            serde_json::to_value(r.target)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            serde_json::to_value(r.scenario)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            r.participants,
            r.packets,
            r.loss_percent,
            r.latency_p50_us,
            r.latency_p99_us,
            r.join_p50_ms,
            r.join_p95_ms,
            r.received_mbit_s,
            r.server_cpu_seconds,
            r.server_rss_kib as f64 / 1024.0,
            r.packets_per_cpu_second,
        ));
    }
    s
}
