//! `cargo xtask bench [ARGS]`: release builds of the server and the load
//! generator, then `conclave-loadgen bench --pin` (the server, Janus or the
//! ceiling on one CPU, the load generator on another; the three alternate)
//! with the JSON report in `target/bench/results.json`. ARGS go to
//! `conclave-loadgen bench`.

use std::process::Command;

use super::{Result, build_web, cargo, have, root, run};

pub fn bench(args: &[String]) -> Result<()> {
    // `cargo xtask bench -- ARGS` and `cargo xtask bench ARGS` mean the same.
    let args = args.strip_prefix(&["--".to_owned()]).unwrap_or(args);
    if !have("taskset") {
        return Err("the benchmarks pin processes to CPUs with taskset: apt-get install util-linux".into());
    }
    if !have("janus") {
        return Err("the benchmarks run Janus beside Conclave: apt-get install janus".into());
    }
    // The server embeds the web app.
    build_web()?;
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "conclave-server",
        "-p",
        "conclave-loadgen",
    ]))?;
    let out = root().join("target/bench");
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    run(Command::new(root().join("target/release/conclave-loadgen"))
        .arg("bench")
        .arg("--pin")
        .arg("--server")
        .arg(root().join("target/release/conclave"))
        .arg("--json")
        .arg(out.join("results.json"))
        .args(args)
        .current_dir(root()))
}
