//! Load generator: many participants in one process against a system under
//! test (Conclave, Janus's VideoRoom, or the ceiling forwarder), the same synthetic media and
//! the same measurements for each, and a report of what the system cost.
//!
//! A run starts the target (pinned to its own CPU when asked), lets the
//! publishers join and start sending, then the receivers (in a meeting
//! everyone joins at once), measures over a window after a warm-up, and
//! reads the target's CPU time and memory from `/proc` over that window.

pub mod ceiling;
pub mod conclave;
pub mod janus;
pub mod measure;
pub mod media;
pub mod netns;
pub mod target;

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use livekit_protocol::VideoQuality;
use serde::Serialize;
use tokio::sync::oneshot;

use measure::{ProcUsage, percentile, proc_usage};
use media::{SIMULCAST, Source, Talk};
use target::{Outcome, Plan, Target, Wants, Window};

/// Which system is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// The Conclave server (`conclave serve`).
    Conclave,
    /// Janus (Debian's `janus`), its VideoRoom plugin.
    Janus,
    /// The plain UDP forwarder: no crypto, no congestion control.
    Ceiling,
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Conclave => "conclave",
            Self::Janus => "janus",
            Self::Ceiling => "ceiling",
        }
    }
}

/// Who sends what to whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// P participants talk (default 1), the others listen to all of them.
    AudioFanout,
    /// P participants (default 1) publish audio and simulcast video; the
    /// others receive all of it, the video at one layer (`--layer`).
    VideoFanout,
    /// P participants (default all) publish audio and simulcast video, and
    /// everyone receives everyone: one video at the high layer, the rest at
    /// the low one.
    Meeting,
    /// A large meeting: P participants (default 10) publish audio and
    /// simulcast video, and everyone receives every audio but the video of
    /// only N other publishers (`--last-n`), the first at the high layer
    /// and the rest at the low one, as clients that show the last N
    /// speakers do.
    LastN,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Self::AudioFanout => "audio-fanout",
            Self::VideoFanout => "video-fanout",
            Self::Meeting => "meeting",
            Self::LastN => "last-n",
        }
    }

    /// Whether everyone joins at once and receives (a meeting), rather than
    /// receivers joining a room where publishers already send.
    pub fn is_meeting(self) -> bool {
        matches!(self, Self::Meeting | Self::LastN)
    }
}

/// The name of a simulcast layer.
pub fn layer_name(q: VideoQuality) -> &'static str {
    match q {
        VideoQuality::Low => "low",
        VideoQuality::Medium => "medium",
        _ => "high",
    }
}

/// A run's settings.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: TargetKind,
    pub scenario: Scenario,
    pub participants: usize,
    /// How many of them publish; the scenario's default when `None`.
    pub publishers: Option<usize>,
    /// Seconds measured, after the warm-up.
    pub seconds: f64,
    pub warmup: f64,
    /// The layer receivers ask for in video fan-out.
    pub layer: VideoQuality,
    /// How many publishers' video each participant receives in `last-n`.
    pub last_n: usize,
    /// How many publishers talk at a time (taking turns); the others send
    /// silence as Opus does with discontinuous transmission. All when
    /// `None`.
    pub talkers: Option<usize>,
    /// The server binary (Conclave), `janus`, or this program (the
    /// forwarder).
    pub binary: PathBuf,
    /// Janus's event loops: the CPUs it may run on unless given.
    pub janus_event_loops: Option<usize>,
    /// The CPU the target is pinned to.
    pub target_cpu: Option<usize>,
    /// Whether this process was pinned to a CPU of its own.
    pub loadgen_pinned: bool,
}

/// The result of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: TargetKind,
    pub scenario: Scenario,
    /// The layer receivers asked for (video fan-out only).
    pub layer: Option<&'static str>,
    /// How many publishers' video each participant received (`last-n`
    /// only).
    pub last_n: Option<usize>,
    pub participants: usize,
    pub publishers: usize,
    /// How many publishers talked at a time.
    pub talkers: usize,
    pub seconds: f64,
    /// Packets the receivers got in the measured window.
    pub packets: u64,
    /// Packets the sequence numbers say should have arrived.
    pub expected: u64,
    pub loss_percent: f64,
    /// Streams that delivered packets in the window, all receivers
    /// together.
    pub streams: usize,
    /// Packets of videos receivers had turned off (`last-n`): any is a
    /// fault of the target.
    pub unwanted_packets: u64,
    /// One-way delay from the publisher's send stamp to the receiver.
    pub latency_p50_us: u64,
    pub latency_p99_us: u64,
    /// The same, of audio packets only (0 without audio): video waits in
    /// pacers and in keyframe bursts, audio shows the rest.
    pub audio_latency_p50_us: u64,
    pub audio_latency_p99_us: u64,
    /// From starting to connect to the first media packet.
    pub join_p50_ms: u64,
    pub join_p95_ms: u64,
    /// The target's CPU time per participant who joined, from the first
    /// join until the last one's first media packet (what it forwarded
    /// meanwhile included): the join times also wait for this program,
    /// this is the target's side alone. `None` when someone's first
    /// packet came after the warm-up.
    pub join_cpu_ms: Option<f64>,
    /// Payload bits per second, all receivers together.
    pub received_mbit_s: f64,
    /// CPU time of the target over the measured window, and its memory at
    /// the window's end: all resident, and its own (without its program's
    /// file pages).
    pub server_cpu_seconds: f64,
    pub server_rss_kib: u64,
    pub server_anon_kib: u64,
    /// Packets received per target CPU-second: the figure of merit.
    pub packets_per_cpu_second: f64,
    /// CPU time of this program over the window: near `seconds` when it
    /// runs on one CPU, it was the bottleneck.
    pub loadgen_cpu_seconds: f64,
    /// CPU time of every other process of the machine over the window: not
    /// near zero, the machine was not quiet.
    pub other_cpu_seconds: f64,
    /// Datagrams the target's media socket dropped (its buffer was full).
    pub target_socket_drops: u64,
    /// The machine's UDP receive and send buffer errors over the window:
    /// beyond the target's drops, the load generator's sockets lost them.
    pub udp_rcvbuf_errors: u64,
    pub udp_sndbuf_errors: u64,
    /// Receivers that got no media at all.
    pub silent_receivers: usize,
    /// Signalling connections the target closed (a reader that fell too far
    /// behind) and that were resumed on a new one.
    pub resumes: u64,
    /// The loss is at most 0.1%, every receiver got media and none got
    /// video it had turned off: the figure of merit counts.
    pub valid: bool,
    /// Whether the target and this program ran on separate CPUs.
    pub pinned: bool,
}

/// The largest loss at which a run counts.
pub const MAX_LOSS_PERCENT: f64 = 0.1;

/// Pins every thread of this process to `cpu` with `taskset`. Called
/// before the runtime starts, so that threads made later inherit it.
pub fn pin_self(cpu: usize) -> Result<(), String> {
    let ok = Command::new("taskset")
        .args(["-a", "-pc", &cpu.to_string(), &std::process::id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run taskset ({e}): apt-get install util-linux"))?
        .success();
    if ok {
        Ok(())
    } else {
        Err(format!("taskset could not pin this process to CPU {cpu}"))
    }
}

/// What is read from `/proc` at each end of the measured window.
#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    target: ProcUsage,
    own: ProcUsage,
    /// CPU seconds of the whole machine.
    busy: f64,
    /// The machine's UDP (receive, send) buffer errors.
    buffers: (u64, u64),
    /// Drops at the target's media socket.
    drops: u64,
}

fn snapshot(pid: u32, ports: &RangeInclusive<u16>) -> Snapshot {
    Snapshot {
        target: proc_usage(pid).unwrap_or_default(),
        own: proc_usage(std::process::id()).unwrap_or_default(),
        busy: measure::machine_busy_seconds().unwrap_or_default(),
        buffers: measure::udp_buffer_errors().unwrap_or_default(),
        drops: measure::udp_socket_drops(ports.clone()).unwrap_or_default(),
    }
}

/// Snapshots at `from` and at `until`.
async fn cost_between(
    pid: u32,
    ports: RangeInclusive<u16>,
    from: Instant,
    until: Instant,
) -> (Snapshot, Snapshot) {
    tokio::time::sleep_until(from.into()).await;
    let before = snapshot(pid, &ports);
    tokio::time::sleep_until(until.into()).await;
    (before, snapshot(pid, &ports))
}

/// The target's CPU seconds every 10 ms until `until`, to tell what the
/// joins cost it.
async fn sample_cpu(pid: u32, until: Instant) -> Vec<(Instant, f64)> {
    let mut samples = Vec::new();
    loop {
        let now = Instant::now();
        if let Some(u) = proc_usage(pid) {
            samples.push((now, u.cpu_seconds));
        }
        if now >= until {
            return samples;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The CPU seconds of the first sample taken at or after `at`.
fn cpu_at(samples: &[(Instant, f64)], at: Instant) -> Option<f64> {
    samples.iter().find(|(t, _)| *t >= at).map(|(_, cpu)| *cpu)
}

/// The target's CPU milliseconds per joined participant: from the first
/// sample to the one after the last receiver's first packet.
fn join_cpu_ms(samples: &[(Instant, f64)], outcomes: &[Outcome], joined: usize) -> Option<f64> {
    let mut last = None;
    for o in outcomes {
        let Some(r) = &o.received else { continue };
        let first = r.first_packet?;
        last = last.max(Some(first));
    }
    let start = samples.first()?.1;
    let end = cpu_at(samples, last?)?;
    (joined > 0).then(|| (end - start) * 1000.0 / joined as f64)
}

/// The last part of a log, to show with an error.
fn tail(log: &str) -> &str {
    let mut at = log.len().saturating_sub(4000);
    while !log.is_char_boundary(at) {
        at += 1;
    }
    &log[at..]
}

/// Janus's event loops for `cfg`: as many as the CPUs it runs on (one
/// when pinned), unless given.
pub fn janus_event_loops(cfg: &RunConfig) -> usize {
    cfg.janus_event_loops.unwrap_or_else(|| match cfg.target_cpu {
        Some(_) => 1,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}

/// Starts the target of `cfg`.
pub async fn start_target(cfg: &RunConfig) -> Result<Box<dyn Target>, String> {
    Ok(match cfg.target {
        TargetKind::Conclave => Box::new(conclave::ConclaveTarget::start(&cfg.binary, cfg.target_cpu)?),
        TargetKind::Janus => {
            if !netns::inside() {
                return Err("Janus runs only in the load generator's own network namespace \
                            (`conclave-loadgen` enters it by itself)"
                    .into());
            }
            Box::new(janus::JanusTarget::start(&cfg.binary, cfg.target_cpu, janus_event_loops(cfg)).await?)
        }
        TargetKind::Ceiling => Box::new(ceiling::CeilingTarget::start(&cfg.binary, cfg.target_cpu)?),
    })
}

/// The resident memory of the target with nobody connected, a second
/// after it started.
pub async fn idle_rss_kib(cfg: &RunConfig) -> Result<u64, String> {
    let target = start_target(cfg).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    proc_usage(target.pid())
        .map(|u| u.rss_kib)
        .ok_or_else(|| "the target's memory could not be read from /proc".into())
}

/// Runs one scenario against one target and reports.
pub async fn run(cfg: &RunConfig) -> Result<Report, String> {
    let target = start_target(cfg).await?;
    let n = cfg.participants.max(2);
    let meeting = cfg.scenario.is_meeting();
    let publishers = match (cfg.scenario, cfg.publishers) {
        (Scenario::Meeting, p) => p.unwrap_or(n).clamp(1, n),
        (Scenario::LastN, p) => p.unwrap_or(10).clamp(1, n),
        // A fan-out needs someone to fan out to.
        (_, p) => p.unwrap_or(1).clamp(1, n - 1),
    };
    let video = cfg.scenario != Scenario::AudioFanout;
    let layers = if video { SIMULCAST.to_vec() } else { Vec::new() };
    let (first, rest) = if meeting {
        (VideoQuality::High, VideoQuality::Low)
    } else {
        (cfg.layer, cfg.layer)
    };
    let base = Instant::now();
    let window_from = |start: Instant| {
        let measure_from = start + Duration::from_secs_f64(cfg.warmup);
        Window {
            base,
            measure_from,
            until: measure_from + Duration::from_secs_f64(cfg.seconds),
        }
    };
    let videos = match cfg.scenario {
        Scenario::LastN => cfg.last_n,
        _ => usize::MAX,
    };
    let wants = |window| Wants {
        publishers,
        first,
        rest,
        video,
        videos,
        window,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut window = window_from(Instant::now());
    // In a meeting everyone joins at once; in a fan-out the receivers join
    // once the publishers send, and their joins are what is measured.
    let mut join_samples = meeting.then(|| tokio::spawn(sample_cpu(target.pid(), window.measure_from)));
    let mut tasks = Vec::new();
    let mut ready = Vec::new();
    for index in 0..publishers {
        let (tx, rx) = oneshot::channel();
        ready.push(rx);
        tasks.push(tokio::spawn(target.join(Plan {
            index,
            source: Some(Source::new(
                true,
                Talk {
                    index,
                    publishers,
                    talkers: talkers(cfg, publishers),
                },
                layers.clone(),
                base,
                Instant::now(),
            )),
            receive: meeting.then(|| wants(window)),
            publishing: Some(tx),
            stop: stop.clone(),
        })));
    }
    if !meeting {
        // Receivers join a room where media already flows.
        for rx in ready {
            if tokio::time::timeout(Duration::from_secs(20), rx).await.is_err() {
                stop.store(true, Ordering::Relaxed);
                return Err(format!(
                    "a publisher did not start within 20 s\n{}",
                    tail(&target.log())
                ));
            }
        }
        window = window_from(Instant::now());
        join_samples = Some(tokio::spawn(sample_cpu(target.pid(), window.measure_from)));
    }
    for index in publishers..n {
        tasks.push(tokio::spawn(target.join(Plan {
            index,
            source: None,
            receive: Some(wants(window)),
            publishing: None,
            stop: stop.clone(),
        })));
    }
    let cost = tokio::spawn(cost_between(
        target.pid(),
        target.media_ports(),
        window.measure_from,
        window.until,
    ));
    // Receivers end with the window; publishers that only publish are told
    // to stop then.
    let (senders, receivers) = tasks.split_at_mut(if meeting { 0 } else { publishers });
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut failure = None;
    for t in receivers.iter_mut() {
        match t.await {
            Ok(Ok(o)) => outcomes.push(o),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(e) => failure = failure.or(Some(e.to_string())),
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in senders.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(10), t).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(e))) => failure = failure.or(Some(e)),
            Ok(Err(e)) => failure = failure.or(Some(e.to_string())),
            Err(_) => failure = failure.or(Some("a publisher did not leave within 10 s".into())),
        }
    }
    let (before, after) = cost.await.map_err(|e| e.to_string())?;
    let samples = match join_samples {
        Some(s) => s.await.map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    let joined = if meeting { n } else { n - publishers };
    if let Some(e) = failure {
        return Err(format!("{e}\n{}", tail(&target.log())));
    }
    drop(target);
    let cpu = after.target.cpu_seconds - before.target.cpu_seconds;
    let own_cpu = after.own.cpu_seconds - before.own.cpu_seconds;
    let cost = Cost {
        cpu,
        rss_kib: after.target.rss_kib,
        anon_kib: after.target.anon_kib,
        own_cpu,
        other_cpu: (after.busy - before.busy - cpu - own_cpu).max(0.0),
        target_drops: after.drops.saturating_sub(before.drops),
        rcvbuf_errors: after.buffers.0.saturating_sub(before.buffers.0),
        sndbuf_errors: after.buffers.1.saturating_sub(before.buffers.1),
        join_cpu_ms: join_cpu_ms(&samples, &outcomes, joined),
    };
    Ok(report(cfg, n, publishers, &outcomes, &cost))
}

/// What a run cost, over the measured window.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    cpu: f64,
    rss_kib: u64,
    anon_kib: u64,
    own_cpu: f64,
    other_cpu: f64,
    target_drops: u64,
    rcvbuf_errors: u64,
    sndbuf_errors: u64,
    /// Of the joins, not of the window.
    join_cpu_ms: Option<f64>,
}

fn report(cfg: &RunConfig, n: usize, publishers: usize, outcomes: &[Outcome], cost: &Cost) -> Report {
    let Cost {
        cpu,
        rss_kib,
        own_cpu,
        ..
    } = *cost;
    let mut delays: Vec<u64> = Vec::new();
    let mut audio_delays: Vec<u64> = Vec::new();
    let mut joins: Vec<u64> = Vec::new();
    let (mut packets, mut expected, mut bytes) = (0u64, 0u64, 0u64);
    let (mut streams, mut unwanted) = (0usize, 0u64);
    let resumes = outcomes.iter().map(|o| u64::from(o.resumes)).sum();
    for o in outcomes {
        let Some(r) = &o.received else { continue };
        let (e, got) = r.expected_received();
        expected += e;
        packets += got;
        bytes += r.bytes;
        streams += r.streams();
        unwanted += r.unwanted;
        delays.extend_from_slice(&r.delays_us);
        audio_delays.extend_from_slice(&r.audio_delays_us);
        if let Some(first) = r.first_packet {
            joins.push(first.saturating_duration_since(o.joined_at).as_millis() as u64);
        }
    }
    let silent = outcomes
        .iter()
        .filter(|o| o.received.as_ref().is_some_and(|r| r.first_packet.is_none()))
        .count();
    // A receiver that got nothing lost everything it should have had: the
    // run is not valid.
    let loss_percent = if expected == 0 {
        100.0
    } else {
        100.0 * expected.saturating_sub(packets) as f64 / expected as f64
    };
    Report {
        target: cfg.target,
        scenario: cfg.scenario,
        layer: (cfg.scenario == Scenario::VideoFanout).then(|| layer_name(cfg.layer)),
        last_n: (cfg.scenario == Scenario::LastN).then_some(cfg.last_n),
        participants: n,
        publishers,
        talkers: talkers(cfg, publishers),
        seconds: cfg.seconds,
        packets,
        expected,
        loss_percent,
        streams,
        unwanted_packets: unwanted,
        latency_p50_us: percentile(&mut delays, 50.0),
        latency_p99_us: percentile(&mut delays, 99.0),
        audio_latency_p50_us: percentile(&mut audio_delays, 50.0),
        audio_latency_p99_us: percentile(&mut audio_delays, 99.0),
        join_p50_ms: percentile(&mut joins, 50.0),
        join_p95_ms: percentile(&mut joins, 95.0),
        join_cpu_ms: cost.join_cpu_ms,
        received_mbit_s: bytes as f64 * 8.0 / cfg.seconds / 1e6,
        server_cpu_seconds: cpu,
        server_rss_kib: rss_kib,
        server_anon_kib: cost.anon_kib,
        packets_per_cpu_second: if cpu > 0.0 { packets as f64 / cpu } else { 0.0 },
        loadgen_cpu_seconds: own_cpu,
        other_cpu_seconds: cost.other_cpu,
        target_socket_drops: cost.target_drops,
        udp_rcvbuf_errors: cost.rcvbuf_errors,
        udp_sndbuf_errors: cost.sndbuf_errors,
        silent_receivers: silent,
        resumes,
        valid: silent == 0 && unwanted == 0 && loss_percent <= MAX_LOSS_PERCENT,
        pinned: cfg.target_cpu.is_some() && cfg.loadgen_pinned,
    }
}

/// A scenario's label in tables: the layer for video fan-out, N for
/// `last-n`.
pub fn label(r: &Report) -> String {
    let name = match (r.layer, r.last_n) {
        (Some(l), _) => format!("{}/{l}", r.scenario.name()),
        (None, Some(n)) => format!("{}/{n}", r.scenario.name()),
        (None, None) => r.scenario.name().to_owned(),
    };
    if r.talkers < r.publishers {
        format!("{name}/talk{}", r.talkers)
    } else {
        name
    }
}

/// How many of the `publishers` talk at a time.
fn talkers(cfg: &RunConfig, publishers: usize) -> usize {
    cfg.talkers.map_or(publishers, |t| t.min(publishers))
}

/// The reports as a table. Loss above 0.1% is marked with `!`; `a p99 us`
/// is the delay of audio packets alone; `rss MiB` the target's resident
/// memory, `anon MiB` the part of it that is not its program file's;
/// `lg cpu` is the load generator's CPU time, `other` that of the rest of the
/// machine, `drops` the datagrams the target's socket dropped, `ms/join`
/// the target's CPU milliseconds per participant who joined.
pub fn table(reports: &[Report]) -> String {
    let mut s = format!(
        "{:<9} {:<19} {:>5} {:>4} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>8} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7} {:>12} {:>7}\n",
        "target",
        "scenario",
        "n",
        "pub",
        "packets",
        "loss%",
        "p50 us",
        "p99 us",
        "a p99 us",
        "join50",
        "join95",
        "Mbit/s",
        "cpu s",
        "rss MiB",
        "anon MiB",
        "lg cpu",
        "other",
        "drops",
        "pkts/cpu-s",
        "ms/join"
    );
    for r in reports {
        let loss = format!("{:.3}{}", r.loss_percent, if r.valid { "" } else { "!" });
        s.push_str(&format!(
            "{:<9} {:<19} {:>5} {:>4} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>8.1} {:>7.2} {:>8.1} {:>8.1} {:>7.2} {:>7.2} {:>7} {:>12.0} {:>7}\n",
            r.target.name(),
            label(r),
            r.participants,
            r.publishers,
            r.packets,
            loss,
            r.latency_p50_us,
            r.latency_p99_us,
            r.audio_latency_p99_us,
            r.join_p50_ms,
            r.join_p95_ms,
            r.received_mbit_s,
            r.server_cpu_seconds,
            r.server_rss_kib as f64 / 1024.0,
            r.server_anon_kib as f64 / 1024.0,
            r.loadgen_cpu_seconds,
            r.other_cpu_seconds,
            r.target_socket_drops,
            r.packets_per_cpu_second,
            r.join_cpu_ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.2}")),
        ));
    }
    for r in reports.iter().filter(|r| r.resumes > 0) {
        s.push_str(&format!(
            "{} {} {}: the target closed {} signalling connections (readers too slow); each was resumed\n",
            r.target.name(),
            label(r),
            r.participants,
            r.resumes
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Receiver;

    fn cfg() -> RunConfig {
        RunConfig {
            target: TargetKind::Ceiling,
            scenario: Scenario::VideoFanout,
            participants: 3,
            publishers: None,
            seconds: 2.0,
            warmup: 1.0,
            layer: VideoQuality::Medium,
            last_n: 4,
            talkers: None,
            binary: PathBuf::new(),
            janus_event_loops: None,
            target_cpu: None,
            loadgen_pinned: false,
        }
    }

    /// A receiver whose first packet came `after` `base`.
    fn joined(base: Instant, after: Option<Duration>) -> Outcome {
        let mut r = Receiver::default();
        if let Some(d) = after {
            r.on_packet("a", 1, 100, None, base + d);
        }
        Outcome {
            joined_at: base,
            received: Some(r),
            resumes: 0,
        }
    }

    #[test]
    fn the_joins_cost_is_counted_until_the_last_first_packet() {
        let base = Instant::now();
        let ms = Duration::from_millis;
        // CPU seconds every 10 ms: 0.5 s of CPU over the first 200 ms.
        let samples: Vec<(Instant, f64)> = (0..=40)
            .map(|i| (base + ms(10 * i), (f64::from(i as u32) * 0.025).min(0.5)))
            .collect();
        let outcomes = [joined(base, Some(ms(50))), joined(base, Some(ms(195)))];
        // Up to the sample at 200 ms: 0.5 s for two joins.
        let per_join = join_cpu_ms(&samples, &outcomes, 2).expect("a figure");
        assert!((per_join - 250.0).abs() < 1e-6, "{per_join}");
        // A publisher's outcome (nothing received) does not count.
        let with_sender = [
            joined(base, Some(ms(95))),
            Outcome {
                joined_at: base,
                received: None,
                resumes: 0,
            },
        ];
        let per_join = join_cpu_ms(&samples, &with_sender, 1).expect("a figure");
        assert!((per_join - 250.0).abs() < 1e-6, "{per_join}");
        // Someone never got a packet, or got it after the last sample: no
        // figure rather than a wrong one.
        assert_eq!(join_cpu_ms(&samples, &[joined(base, None)], 1), None);
        assert_eq!(join_cpu_ms(&samples, &[joined(base, Some(ms(401)))], 1), None);
        assert_eq!(join_cpu_ms(&[], &outcomes, 2), None);
    }

    #[test]
    fn reports_count_loss_and_flag_silent_receivers() {
        let now = Instant::now();
        let mut r = Receiver::default();
        for seq in 1..=1000 {
            if seq != 500 {
                r.on_packet("a", seq, 100, Some(Duration::from_micros(seq)), now);
            }
        }
        let got = Outcome {
            joined_at: now,
            received: Some(r),
            resumes: 0,
        };
        let cost = Cost {
            cpu: 0.5,
            rss_kib: 1024,
            anon_kib: 512,
            own_cpu: 0.2,
            ..Cost::default()
        };
        let rep = report(&cfg(), 3, 1, std::slice::from_ref(&got), &cost);
        assert_eq!((rep.packets, rep.expected), (999, 1000));
        assert!((rep.loss_percent - 0.1).abs() < 1e-9);
        assert!(rep.valid);
        assert_eq!(rep.packets_per_cpu_second, 1998.0);
        assert_eq!(rep.layer, Some("medium"));
        let silent = Outcome {
            joined_at: now,
            received: Some(Receiver::default()),
            resumes: 0,
        };
        let rep = report(&cfg(), 3, 1, &[got, silent], &cost);
        assert!(!rep.valid, "a receiver that got nothing makes the run invalid");
        assert_eq!(rep.silent_receivers, 1);
        let mut extra = Receiver::default();
        extra.on_packet("a", 1, 100, None, now);
        extra.unwanted = 3;
        let extra = Outcome {
            joined_at: now,
            received: Some(extra),
            resumes: 2,
        };
        let rep = report(&cfg(), 3, 1, &[extra], &cost);
        assert_eq!(rep.unwanted_packets, 3);
        assert_eq!(rep.resumes, 2);
        assert!(table(std::slice::from_ref(&rep)).contains("closed 2 signalling connections"));
        assert!(
            !rep.valid,
            "video that was turned off but still came makes the run invalid"
        );
        let table = table(&[rep]);
        assert!(table.contains("video-fanout/medium"), "{table}");
        assert!(table.contains('!'), "{table}");
    }

    /// Audio's delay is reported apart from the video's.
    #[test]
    fn audio_delay_is_reported_on_its_own() {
        let now = Instant::now();
        let mut r = Receiver::default();
        for seq in 1..=100 {
            r.on_packet(
                "a",
                seq,
                media::AUDIO_BYTES,
                Some(Duration::from_micros(1_000)),
                now,
            );
            r.on_packet("v", seq, media::MTU, Some(Duration::from_micros(50_000)), now);
        }
        let got = Outcome {
            joined_at: now,
            received: Some(r),
            resumes: 0,
        };
        let rep = report(&cfg(), 2, 1, &[got], &Cost::default());
        assert_eq!(
            (rep.audio_latency_p50_us, rep.audio_latency_p99_us),
            (1_000, 1_000)
        );
        assert_eq!(rep.latency_p99_us, 50_000);
    }
}
