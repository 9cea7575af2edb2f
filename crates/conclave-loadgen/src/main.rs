//! `conclave-loadgen`: runs load scenarios against Conclave and the ceiling
//! forwarder, side by side, and reports.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use conclave_loadgen::{Report, RunConfig, Scenario, Target, ceiling, run, table};
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

#[derive(Clone, Copy, clap::ValueEnum)]
enum Layer {
    Low,
    Medium,
    High,
}

#[derive(Subcommand)]
enum Cmd {
    /// One scenario against one target.
    Run {
        #[arg(long, value_enum, default_value = "conclave")]
        target: Target,
        #[arg(long, value_enum, default_value = "video-fanout")]
        scenario: Scenario,
        #[arg(long, default_value_t = 10)]
        participants: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Scenarios at several sizes, Conclave and the ceiling alternating
    /// (A B A B), with the ratios.
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
    /// The layer subscribers ask for in video fan-out.
    #[arg(long, value_enum, default_value = "low")]
    layer: Layer,
    /// The conclave server binary (default: CONCLAVE_BIN or the workspace's
    /// release build).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Pin the server to CPU 1 and this program to CPU 0.
    #[arg(long)]
    pin: bool,
    /// Also write the reports as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn config(target: Target, scenario: Scenario, participants: usize, c: &Common) -> Result<RunConfig, String> {
    let binary = match target {
        Target::Conclave => match &c.server {
            Some(p) => p.clone(),
            None => conclave_client::server_process::server_binary("release").map_err(|e| e.to_string())?,
        },
        Target::Ceiling => std::env::current_exe().map_err(|e| e.to_string())?,
    };
    Ok(RunConfig {
        target,
        scenario,
        participants,
        seconds: c.seconds,
        warmup: c.warmup,
        layer: match c.layer {
            Layer::Low => VideoQuality::Low,
            Layer::Medium => VideoQuality::Medium,
            Layer::High => VideoQuality::High,
        },
        binary,
        cpus: c.pin.then_some((1, 0)),
    })
}

fn write_json(
    path: &Option<PathBuf>,
    reports: &[Report],
    ratios: &[serde_json::Value],
) -> Result<(), String> {
    if let Some(path) = path {
        let doc = serde_json::json!({ "reports": reports, "ratios": ratios });
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

async fn main_async(cli: Cli) -> Result<(), String> {
    match cli.command {
        Cmd::Forward { listen } => {
            tokio::task::spawn_blocking(move || ceiling::forward(listen))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            Ok(())
        }
        Cmd::Run {
            target,
            scenario,
            participants,
            common,
        } => {
            let report = run(&config(target, scenario, participants, &common)?).await?;
            print!("{}", table(std::slice::from_ref(&report)));
            write_json(&common.json, std::slice::from_ref(&report), &[])
        }
        Cmd::Bench {
            sizes,
            scenarios,
            rounds,
            common,
        } => {
            let mut reports = Vec::new();
            let mut ratios = Vec::new();
            for &scenario in &scenarios {
                for &n in &sizes {
                    let mut ours = Vec::new();
                    let mut ceiling = Vec::new();
                    for _ in 0..rounds.max(1) {
                        for target in [Target::Conclave, Target::Ceiling] {
                            let r = run(&config(target, scenario, n, &common)?).await?;
                            eprint!("{}", table(std::slice::from_ref(&r)));
                            match target {
                                Target::Conclave => ours.push(r.packets_per_cpu_second),
                                Target::Ceiling => ceiling.push(r.packets_per_cpu_second),
                            }
                            reports.push(r);
                        }
                    }
                    let (a, b) = (median(ours), median(ceiling));
                    ratios.push(serde_json::json!({
                        "scenario": scenario,
                        "participants": n,
                        "conclave_packets_per_cpu_second": a,
                        "ceiling_packets_per_cpu_second": b,
                        "conclave_over_ceiling": if b > 0.0 { a / b } else { 0.0 },
                    }));
                }
            }
            println!("{}", table(&reports));
            println!("Conclave / ceiling, forwarded packets per server CPU-second (medians):");
            for r in &ratios {
                println!(
                    "  {:<13} n={:<5} {:>10.0} / {:>10.0} = {:.3}",
                    r["scenario"].as_str().unwrap_or(""),
                    r["participants"],
                    r["conclave_packets_per_cpu_second"].as_f64().unwrap_or(0.0),
                    r["ceiling_packets_per_cpu_second"].as_f64().unwrap_or(0.0),
                    r["conclave_over_ceiling"].as_f64().unwrap_or(0.0),
                );
            }
            write_json(&common.json, &reports, &ratios)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
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
