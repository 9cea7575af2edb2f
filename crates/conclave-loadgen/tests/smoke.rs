//! A few seconds of each scenario against every target (Conclave, Janus,
//! the ceiling) through the real program, so the harness never rots:
//! packets must arrive and the JSON must hold every figure. Nothing here
//! looks at speed. Janus must be installed (`apt-get install janus`); the
//! runs with it need root or user namespaces (a network namespace of their
//! own).

use std::process::Command;

use conclave_client::server_process::server_binary;

/// Fails, saying how to install it, when Janus is missing.
fn require_janus() {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("janus").is_file()));
    assert!(
        found,
        "Janus is not installed: the benchmark smoke test runs Janus's VideoRoom beside Conclave. \
         Install it with `apt-get install janus` (or run `cargo xtask test`, which does)"
    );
}

fn run(args: &[&str]) -> serde_json::Value {
    let server = server_binary("debug").unwrap_or_else(|e| panic!("{e}"));
    let json = std::env::temp_dir().join(format!(
        "conclave-loadgen-{}-{}.json",
        std::process::id(),
        args.join("-")
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_conclave-loadgen"))
        .args(args)
        .args(["--seconds", "2", "--server"])
        .arg(&server)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("conclave-loadgen runs");
    assert!(
        out.status.success(),
        "conclave-loadgen {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&json).expect("the JSON report");
    let _ = std::fs::remove_file(&json);
    serde_json::from_str(&text).expect("the report is JSON")
}

#[test]
fn every_scenario_runs_against_every_target() {
    require_janus();
    // Streams each run delivers with 3 participants: a fan-out's 2
    // receivers get the audio (and the video) of its publisher; in a
    // meeting each gets the audio and video of the 2 others; in `last-n`
    // with one video, the 2 audios and 1 video.
    for (scenario, streams) in [
        ("audio-fanout", 2),
        ("video-fanout", 4),
        ("meeting", 12),
        ("last-n", 9),
    ] {
        // Turning a video off takes a request to the server, answered only
        // by the media stopping: in `last-n`, joins (all at once) and those
        // requests get three seconds before the window.
        let warmup = if scenario == "last-n" { "3" } else { "1" };
        for target in ["conclave", "janus", "ceiling"] {
            let doc = run(&[
                "run",
                "--target",
                target,
                "--scenario",
                scenario,
                "--participants",
                "3",
                "--last-n",
                "1",
                "--warmup",
                warmup,
            ]);
            let r = &doc["reports"][0];
            assert_eq!(r["target"], target);
            assert_eq!(r["scenario"], scenario);
            let packets = r["packets"].as_u64().expect("packets");
            assert!(packets > 0, "{target} {scenario}: no packets arrived: {r}");
            assert_eq!(
                r["silent_receivers"], 0,
                "{target} {scenario}: a receiver got nothing: {r}"
            );
            assert_eq!(
                r["streams"], streams,
                "{target} {scenario}: not the streams asked for: {r}"
            );
            assert_eq!(
                r["unwanted_packets"], 0,
                "{target} {scenario}: video that was turned off arrived: {r}"
            );
            for key in [
                "expected",
                "loss_percent",
                "latency_p50_us",
                "latency_p99_us",
                "join_p50_ms",
                "server_cpu_seconds",
                "server_rss_kib",
                "server_anon_kib",
                "packets_per_cpu_second",
                "loadgen_cpu_seconds",
            ] {
                assert!(r[key].is_number(), "{target} {scenario}: {key} missing in {r}");
            }
            assert!(r["expected"].as_u64().expect("expected") >= packets);
        }
    }
}

/// The bench command as `cargo xtask bench` runs it (pinned), with some
/// publishers of a meeting and a fan-out at the high layer.
#[test]
fn bench_prints_ratios() {
    require_janus();
    let doc = run(&[
        "bench",
        "--sizes",
        "3",
        "--scenarios",
        "meeting,video-fanout",
        "--layers",
        "high",
        "--publishers",
        "2",
        "--rounds",
        "1",
        "--pin",
        "--warmup",
        "1",
    ]);
    let reports = doc["reports"].as_array().expect("reports");
    assert_eq!(reports.len(), 6, "{doc}");
    let targets: Vec<&str> = reports.iter().filter_map(|r| r["target"].as_str()).collect();
    assert_eq!(
        targets,
        ["conclave", "janus", "ceiling", "conclave", "janus", "ceiling"],
        "the targets alternate"
    );
    for r in reports {
        assert_eq!(r["publishers"], 2, "{r}");
        assert!(r["packets"].as_u64().is_some_and(|p| p > 0), "{r}");
        assert_eq!(r["silent_receivers"], 0, "{r}");
        assert_eq!(r["pinned"], true, "{r}");
    }
    assert_eq!(reports[3]["layer"], "high");
    assert!(
        doc["conclave_idle_rss_kib"].as_u64().is_some_and(|k| k > 0),
        "{doc}"
    );
    let ratios = doc["ratios"].as_array().expect("ratios");
    assert_eq!(ratios.len(), 2, "{doc}");
    for ratio in ratios {
        for key in [
            "conclave_over_janus",
            "conclave_over_ceiling",
            "janus_over_ceiling",
        ] {
            assert!(ratio[key].is_number(), "{key} missing in {ratio}");
        }
    }
}
