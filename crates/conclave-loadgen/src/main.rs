//! `conclave-loadgen`: runs load scenarios against Conclave and the ceiling
//! forwarder, side by side, and reports.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use conclave_loadgen::{
    Report, RunConfig, Scenario, TargetKind, ceiling, idle_rss_kib, label, pin_self, run, table,
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
    /// Scenarios at several sizes, Conclave and the ceiling alternating
    /// (A B A B), with the ratios of their figures of merit.
    Bench {
        /// Participant counts to run each scenario at.
        #[arg(long, value_delimiter = ',', default_value = "10,20,50")]
        sizes: Vec<usize>,
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "audio-fanout,video-fanout,meeting"
        )]
        scenarios: Vec<Scenario>,
        /// The layers video fan-out is run at, each in turn.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "low")]
        layers: Vec<Layer>,
        /// Rounds of A B per scenario and size.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
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
    /// meeting).
    #[arg(long)]
    publishers: Option<usize>,
    /// The conclave server binary (default: CONCLAVE_BIN or the workspace's
    /// release build).
    #[arg(long)]
    server: Option<PathBuf>,
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
        binary,
        target_cpu: c.pin.then_some(1),
        loadgen_pinned: c.pin,
    })
}

fn write_json(
    path: &Option<PathBuf>,
    idle_rss_kib: Option<u64>,
    reports: &[Report],
    ratios: &[serde_json::Value],
) -> Result<(), String> {
    if let Some(path) = path {
        let doc = serde_json::json!({
            "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "args": std::env::args().skip(1).collect::<Vec<_>>(),
            "conclave_idle_rss_kib": idle_rss_kib,
            "reports": reports,
            "ratios": ratios,
        });
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

async fn bench(
    sizes: &[usize],
    scenarios: &[Scenario],
    layers: &[Layer],
    rounds: usize,
    common: &Common,
) -> Result<(), String> {
    let idle = idle_rss_kib(&config(
        TargetKind::Conclave,
        Scenario::AudioFanout,
        0,
        Layer::Low,
        common,
    )?)
    .await?;
    let mut reports = Vec::new();
    let mut ratios = Vec::new();
    for &scenario in scenarios {
        let layers = if scenario == Scenario::VideoFanout {
            layers
        } else {
            &[Layer::Low][..]
        };
        for &layer in layers {
            for &n in sizes {
                let mut ours = Vec::new();
                let mut ceiling = Vec::new();
                let mut valid = true;
                let mut name = String::new();
                for _ in 0..rounds.max(1) {
                    for target in [TargetKind::Conclave, TargetKind::Ceiling] {
                        let r = run(&config(target, scenario, n, layer, common)?).await?;
                        eprint!("{}", table(std::slice::from_ref(&r)));
                        valid &= r.valid;
                        name = label(&r);
                        match target {
                            TargetKind::Conclave => ours.push(r.packets_per_cpu_second),
                            TargetKind::Ceiling => ceiling.push(r.packets_per_cpu_second),
                        }
                        reports.push(r);
                    }
                }
                let (a, b) = (median(ours), median(ceiling));
                ratios.push(serde_json::json!({
                    "scenario": name,
                    "participants": n,
                    "conclave_packets_per_cpu_second": a,
                    "ceiling_packets_per_cpu_second": b,
                    "conclave_over_ceiling": if b > 0.0 { a / b } else { 0.0 },
                    "valid": valid,
                }));
            }
        }
    }
    println!("{}", table(&reports));
    println!(
        "Conclave with nobody connected: {:.1} MiB resident",
        idle as f64 / 1024.0
    );
    println!("Conclave / ceiling, forwarded packets per target CPU-second (medians):");
    for r in &ratios {
        println!(
            "  {:<19} n={:<5} {:>10.0} / {:>10.0} = {:.3}{}",
            r["scenario"].as_str().unwrap_or(""),
            r["participants"],
            r["conclave_packets_per_cpu_second"].as_f64().unwrap_or(0.0),
            r["ceiling_packets_per_cpu_second"].as_f64().unwrap_or(0.0),
            r["conclave_over_ceiling"].as_f64().unwrap_or(0.0),
            if r["valid"].as_bool().unwrap_or(false) {
                ""
            } else {
                "  (not valid: loss above 0.1% or a silent receiver)"
            },
        );
    }
    write_json(&common.json, Some(idle), &reports, &ratios)
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
            write_json(&common.json, None, std::slice::from_ref(&report), &[])
        }
        Cmd::Bench {
            sizes,
            scenarios,
            layers,
            rounds,
            common,
        } => bench(&sizes, &scenarios, &layers, rounds, &common).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let pin = match &cli.command {
        Cmd::Run { common, .. } | Cmd::Bench { common, .. } => common.pin,
        Cmd::Forward { .. } => false,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if pin {
        // Before the runtime's threads exist, so that they inherit the CPU.
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
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
