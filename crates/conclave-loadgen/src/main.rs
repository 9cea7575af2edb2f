//! `conclave-loadgen`: runs load scenarios against Conclave, Janus and the
//! ceiling forwarder, side by side, and reports. Runs that include Janus
//! happen in a network namespace of their own (see `netns`): the program
//! starts itself again inside one.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use conclave_loadgen::{
    Report, RunConfig, Scenario, TargetKind, ceiling, idle_rss_kib, janus, label, netns, pin_self, run, table,
};
use livekit_protocol::VideoQuality;

#[derive(Parser)]
#[command(
    name = "conclave-loadgen",
    about = "Load generator and benchmarks for Conclave"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Layer {
    Low,
    Medium,
    High,
}

impl Layer {
    fn quality(self) -> VideoQuality {
        match self {
            Layer::Low => VideoQuality::Low,
            Layer::Medium => VideoQuality::Medium,
            Layer::High => VideoQuality::High,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// One scenario against one target.
    Run {
        #[arg(long, value_enum, default_value = "conclave")]
        target: TargetKind,
        #[arg(long, value_enum, default_value = "video-fanout")]
        scenario: Scenario,
        #[arg(long, default_value_t = 10)]
        participants: usize,
        /// The layer receivers ask for in video fan-out.
        #[arg(long, value_enum, default_value = "low")]
        layer: Layer,
        #[command(flatten)]
        common: Common,
    },
    /// Scenarios at several sizes, the targets alternating (A B C A B C),
    /// with the ratios of their figures of merit.
    Bench {
        /// Participant counts to run each scenario at.
        #[arg(long, value_delimiter = ',', default_value = "10,20,50")]
        sizes: Vec<usize>,
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "audio-fanout,video-fanout,meeting,last-n"
        )]
        scenarios: Vec<Scenario>,
        /// The layers video fan-out is run at, each in turn.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "low")]
        layers: Vec<Layer>,
        /// Rounds of A B C per scenario and size.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// The targets, in the order each round runs them.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "conclave,janus,ceiling"
        )]
        targets: Vec<TargetKind>,
        #[command(flatten)]
        common: Common,
    },
    /// The ceiling forwarder itself (started by `run` and `bench`).
    Forward {
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
}

#[derive(clap::Args)]
struct Common {
    /// Seconds measured after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// How many participants publish (default: 1 in fan-outs, all in a
    /// meeting, 10 in `last-n`).
    #[arg(long)]
    publishers: Option<usize>,
    /// In `last-n`: how many publishers' video each participant receives.
    #[arg(long, default_value_t = 4)]
    last_n: usize,
    /// How many publishers talk at a time, taking turns of 2 s; the others
    /// are silent and send one audio frame every 400 ms, as Opus does with
    /// discontinuous transmission (default: all talk all the time).
    #[arg(long)]
    talkers: Option<usize>,
    /// The conclave server binary (default: CONCLAVE_BIN or the workspace's
    /// release build).
    #[arg(long)]
    server: Option<PathBuf>,
    /// The Janus program (Debian's `janus`).
    #[arg(long, default_value = "janus")]
    janus: PathBuf,
    /// Janus's event loops (default: the CPUs it runs on, so one with
    /// `--pin`).
    #[arg(long)]
    janus_event_loops: Option<usize>,
    /// Pin the target to CPU 1 and this program to CPU 0.
    #[arg(long)]
    pin: bool,
    /// Also write the reports as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn config(
    target: TargetKind,
    scenario: Scenario,
    participants: usize,
    layer: Layer,
    c: &Common,
) -> Result<RunConfig, String> {
    let binary = match target {
        TargetKind::Conclave => match &c.server {
            Some(p) => p.clone(),
            None => conclave_client::server_process::server_binary("release").map_err(|e| e.to_string())?,
        },
        TargetKind::Janus => janus::find_binary(&c.janus)?,
        TargetKind::Ceiling => std::env::current_exe().map_err(|e| e.to_string())?,
    };
    Ok(RunConfig {
        target,
        scenario,
        participants,
        publishers: c.publishers,
        seconds: c.seconds,
        warmup: c.warmup,
        layer: layer.quality(),
        last_n: c.last_n,
        talkers: c.talkers,
        binary,
        janus_event_loops: c.janus_event_loops,
        target_cpu: c.pin.then_some(1),
        loadgen_pinned: c.pin,
    })
}

/// The machine's CPUs, read before `--pin` confines this process to one.
static MACHINE_CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

fn machine_cpus() -> usize {
    *MACHINE_CPUS.get_or_init(|| std::thread::available_parallelism().map_or(0, |n| n.get()))
}

fn write_json(
    path: &Option<PathBuf>,
    idle_rss_kib: Option<u64>,
    reports: &[Report],
    ratios: &[serde_json::Value],
    failures: &[serde_json::Value],
) -> Result<(), String> {
    if let Some(path) = path {
        let doc = serde_json::json!({
            "cpus": machine_cpus(),
            "args": std::env::args().skip(1).collect::<Vec<_>>(),
            "conclave_idle_rss_kib": idle_rss_kib,
            "reports": reports,
            "ratios": ratios,
            "failures": failures,
        });
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The median; of an even number of figures, the mean of the middle two,
/// so that two rounds count alike rather than the better one alone.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[mid],
        _ => (v[mid - 1] + v[mid]) / 2.0,
    }
}

/// The median figure of merit of each target, by name.
type Medians = Vec<(TargetKind, f64)>;

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// The ratios between the targets' medians: Conclave over Janus, and each
/// over the ceiling.
fn ratios_of(name: &str, n: usize, medians: &Medians, valid: bool) -> serde_json::Value {
    let get = |t| medians.iter().find(|(k, _)| *k == t).map(|(_, v)| *v);
    let mut r = serde_json::json!({ "scenario": name, "participants": n, "valid": valid });
    for (t, v) in medians {
        r[format!("{}_packets_per_cpu_second", t.name())] = serde_json::json!(v);
    }
    let pairs = [
        (TargetKind::Conclave, TargetKind::Janus),
        (TargetKind::Conclave, TargetKind::Ceiling),
        (TargetKind::Janus, TargetKind::Ceiling),
    ];
    for (a, b) in pairs {
        if let (Some(x), Some(y)) = (get(a), get(b)) {
            r[format!("{}_over_{}", a.name(), b.name())] = serde_json::json!(ratio(x, y));
        }
    }
    r
}

async fn bench(
    sizes: &[usize],
    scenarios: &[Scenario],
    layers: &[Layer],
    rounds: usize,
    targets: &[TargetKind],
    common: &Common,
) -> Result<(), String> {
    let mut targets = targets.to_vec();
    targets.dedup();
    if targets.is_empty() {
        return Err("no targets to run".into());
    }
    let idle = if targets.contains(&TargetKind::Conclave) {
        Some(
            idle_rss_kib(&config(
                TargetKind::Conclave,
                Scenario::AudioFanout,
                0,
                Layer::Low,
                common,
            )?)
            .await?,
        )
    } else {
        None
    };
    let mut reports = Vec::new();
    let mut ratios = Vec::new();
    let mut failures = Vec::new();
    for &scenario in scenarios {
        let layers = if scenario == Scenario::VideoFanout {
            layers
        } else {
            &[Layer::Low][..]
        };
        for &layer in layers {
            for &n in sizes {
                let mut configs = Vec::new();
                for &t in &targets {
                    configs.push((t, config(t, scenario, n, layer, common)?));
                }
                let size = rounds_of(&targets, rounds, |t| {
                    let c = configs.iter().find(|(k, _)| *k == t).map(|(_, c)| c.clone());
                    async move { run(&c.ok_or("no configuration")?).await }
                })
                .await;
                let name = size
                    .reports
                    .first()
                    .map_or_else(|| scenario.name().to_owned(), label);
                for (t, e) in &size.failures {
                    failures.push(serde_json::json!({
                        "target": t.name(), "scenario": name, "participants": n, "error": e,
                    }));
                }
                ratios.push(ratios_of(&name, n, &size.medians, size.valid));
                reports.extend(size.reports);
            }
        }
    }
    println!("{}", table(&reports));
    if let Some(idle) = idle {
        println!(
            "Conclave with nobody connected: {:.1} MiB resident",
            idle as f64 / 1024.0
        );
    }
    println!("Forwarded packets per target CPU-second (medians) and their ratios:");
    for r in &ratios {
        let mut line = format!(
            "  {:<19} n={:<5}",
            r["scenario"].as_str().unwrap_or(""),
            r["participants"]
        );
        for t in &targets {
            let v = r[format!("{}_packets_per_cpu_second", t.name())]
                .as_f64()
                .unwrap_or(0.0);
            line.push_str(&format!(" {}={v:.0}", t.name()));
        }
        for key in [
            "conclave_over_janus",
            "conclave_over_ceiling",
            "janus_over_ceiling",
        ] {
            if let Some(v) = r[key].as_f64() {
                line.push_str(&format!(" {}={v:.3}", key.replace("_over_", "/")));
            }
        }
        if !r["valid"].as_bool().unwrap_or(false) {
            line.push_str("  (not valid: loss above 0.1%, a silent receiver or a failed run)");
        }
        println!("{line}");
    }
    write_json(&common.json, idle, &reports, &ratios, &failures)?;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of the runs failed (listed above and under \"failures\" in the JSON); \
             the others are reported",
            failures.len()
        ))
    }
}

/// What the rounds of one scenario and size gave.
struct SizeResult {
    reports: Vec<Report>,
    /// Runs that ended in an error, by target.
    failures: Vec<(TargetKind, String)>,
    medians: Medians,
    /// Every run succeeded and was valid.
    valid: bool,
}

/// Runs `rounds` rounds of every target (A B C A B C). A run that fails is
/// recorded and makes the size not valid; the other runs still count, so
/// that one overloaded run does not lose the rest of the benchmark.
async fn rounds_of<F, Fut>(targets: &[TargetKind], rounds: usize, mut run_one: F) -> SizeResult
where
    F: FnMut(TargetKind) -> Fut,
    Fut: std::future::Future<Output = Result<Report, String>>,
{
    let mut figures: Vec<(TargetKind, Vec<f64>)> = targets.iter().map(|&t| (t, Vec::new())).collect();
    let mut out = SizeResult {
        reports: Vec::new(),
        failures: Vec::new(),
        medians: Vec::new(),
        valid: true,
    };
    for _ in 0..rounds.max(1) {
        for (target, figs) in figures.iter_mut() {
            match run_one(*target).await {
                Ok(r) => {
                    eprint!("{}", table(std::slice::from_ref(&r)));
                    out.valid &= r.valid;
                    figs.push(r.packets_per_cpu_second);
                    out.reports.push(r);
                }
                Err(e) => {
                    eprintln!("conclave-loadgen: a run of {} failed: {e}", target.name());
                    out.valid = false;
                    out.failures.push((*target, e));
                }
            }
        }
    }
    out.medians = figures
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(t, v)| (t, median(v)))
        .collect();
    out
}

async fn main_async(cli: Cli) -> Result<(), String> {
    match cli.command {
        Cmd::Forward { listen } => tokio::task::spawn_blocking(move || ceiling::forward(listen))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string()),
        Cmd::Run {
            target,
            scenario,
            participants,
            layer,
            common,
        } => {
            let report = run(&config(target, scenario, participants, layer, &common)?).await?;
            print!("{}", table(std::slice::from_ref(&report)));
            write_json(&common.json, None, std::slice::from_ref(&report), &[], &[])
        }
        Cmd::Bench {
            sizes,
            scenarios,
            layers,
            rounds,
            targets,
            common,
        } => bench(&sizes, &scenarios, &layers, rounds, &targets, &common).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let with_janus = match &cli.command {
        Cmd::Run { target, .. } => *target == TargetKind::Janus,
        Cmd::Bench { targets, .. } => targets.contains(&TargetKind::Janus),
        Cmd::Forward { .. } => false,
    };
    if with_janus {
        if !netns::inside() {
            return match netns::rerun_inside() {
                Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
                Err(e) => {
                    eprintln!("conclave-loadgen: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        if let Err(e) = netns::setup() {
            eprintln!("conclave-loadgen: cannot prepare the network namespace for Janus: {e}");
            return ExitCode::FAILURE;
        }
    }
    let pin = match &cli.command {
        Cmd::Run { common, .. } | Cmd::Bench { common, .. } => common.pin,
        Cmd::Forward { .. } => false,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if pin {
        // Before the runtime's threads exist, so that they inherit the CPU.
        let cpus = machine_cpus();
        let pinned = if cpus < 2 {
            Err(format!("--pin needs two CPUs, this machine has {cpus}"))
        } else {
            pin_self(0)
        };
        if let Err(e) = pinned {
            eprintln!("conclave-loadgen: {e}");
            return ExitCode::FAILURE;
        }
        builder.worker_threads(1);
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("conclave-loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(main_async(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conclave-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![5.0]), 5.0);
        assert_eq!(median(vec![90.0, 60.0]), 75.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    fn report(target: TargetKind, figure: f64) -> Report {
        Report {
            target,
            scenario: Scenario::AudioFanout,
            layer: None,
            last_n: None,
            participants: 3,
            publishers: 1,
            talkers: 1,
            seconds: 1.0,
            packets: 100,
            expected: 100,
            loss_percent: 0.0,
            streams: 2,
            unwanted_packets: 0,
            latency_p50_us: 1,
            latency_p99_us: 1,
            audio_latency_p50_us: 1,
            audio_latency_p99_us: 1,
            join_p50_ms: 1,
            join_p95_ms: 1,
            join_cpu_ms: Some(0.5),
            received_mbit_s: 0.1,
            server_cpu_seconds: 0.1,
            server_rss_kib: 1,
            server_anon_kib: 1,
            packets_per_cpu_second: figure,
            loadgen_cpu_seconds: 0.1,
            other_cpu_seconds: 0.0,
            target_socket_drops: 0,
            udp_rcvbuf_errors: 0,
            udp_sndbuf_errors: 0,
            silent_receivers: 0,
            resumes: 0,
            valid: true,
            pinned: false,
        }
    }

    /// One failed run is recorded and makes the size not valid; the other
    /// runs, the failed target's other round included, still count.
    #[tokio::test]
    async fn a_failed_run_is_recorded_and_the_others_count() {
        let targets = [TargetKind::Conclave, TargetKind::Ceiling];
        let mut calls = 0;
        let size = rounds_of(&targets, 2, |t| {
            calls += 1;
            let first = calls == 1;
            async move {
                if first {
                    Err("the server went away".to_owned())
                } else {
                    Ok(report(t, if t == TargetKind::Conclave { 10.0 } else { 100.0 }))
                }
            }
        })
        .await;
        assert_eq!(calls, 4, "every run of every round is tried");
        assert_eq!(size.reports.len(), 3);
        assert_eq!(
            size.failures,
            vec![(TargetKind::Conclave, "the server went away".to_owned())]
        );
        assert!(!size.valid, "a size with a failed run is not valid");
        assert_eq!(
            size.medians,
            vec![(TargetKind::Conclave, 10.0), (TargetKind::Ceiling, 100.0)]
        );

        // Every run of a target failed: it has no figure at all.
        let size = rounds_of(&targets, 1, |t| async move {
            if t == TargetKind::Conclave {
                Err("refused".to_owned())
            } else {
                Ok(report(t, 100.0))
            }
        })
        .await;
        assert_eq!(size.medians, vec![(TargetKind::Ceiling, 100.0)]);
        assert!(!size.valid);
    }
}
