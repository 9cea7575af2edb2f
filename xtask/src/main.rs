//! Project tasks: `cargo xtask serve`, `cargo xtask test`, `cargo xtask build-web`.
//!
//! Each task installs what it needs on a fresh Debian machine (as root) or
//! says exactly what is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod bench;

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((t, r)) => (t.as_str(), r.to_vec()),
        None => ("help", Vec::new()),
    };
    let result = match task {
        "serve" => serve(&rest),
        "test" => test(&rest),
        "build-web" => build_web(),
        "setup" => setup(),
        "fuzz" => fuzz(&rest),
        "bench" => bench::bench(&rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n\
                 tasks:\n  serve [ARGS]   build everything and run the server (ARGS go to `conclave serve`)\n  \
                 test           install prerequisites and run every check and test\n  \
                 build-web      build the web app into web/dist\n  \
                 setup          install the test prerequisites only\n  \
                 fuzz [SECS]    run every fuzz target for SECS seconds each (default 60; needs a nightly toolchain)\n  \
                 bench [ARGS]   build in release and run the benchmarks: Conclave, Janus and the ceiling forwarder\n                 \
                 (ARGS go to `conclave-loadgen bench`; results in target/bench/results.json)"
            );
            return if task == "help" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("$ {}", shown.replace('"', ""));
    let status = cmd.status().map_err(|e| format!("cannot start {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Installs missing Debian packages when running as root.
fn apt_install(packages: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(check, _)| !Path::new(check).exists() && !have(check))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() || !have("apt-get") {
        return Err(format!(
            "missing Debian packages: {}. Install them with: sudo apt-get install {}",
            missing.join(", "),
            missing.join(" ")
        ));
    }
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn npm_ci() -> Result<()> {
    if !have("npm") {
        return Err(
            "npm is missing: install Node.js 20 or newer (Debian: apt-get install nodejs npm)".into(),
        );
    }
    let web = root().join("web");
    // Installed, and not older than the lock file (a new package was added).
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(installed), Some(locked)) = (
        modified(&web.join("node_modules/.package-lock.json")),
        modified(&web.join("package-lock.json")),
    ) && installed >= locked
    {
        return Ok(());
    }
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&web))
}

fn build_web() -> Result<()> {
    npm_ci()?;
    run(Command::new("npm")
        .args(["run", "build"])
        .current_dir(root().join("web")))
}

/// Everything the test suite needs beyond the Rust toolchain.
fn setup() -> Result<()> {
    apt_install(&[
        ("/usr/bin/chromium", "chromium"),
        ("python3", "python3"),
        ("npm", "npm"),
        // Network namespaces and traffic shaping for the constrained-network browser tests.
        ("/usr/sbin/tc", "iproute2"),
        // The load generator's benchmark test pins processes to CPUs, and
        // runs Janus in a network namespace of its own (unshare).
        ("taskset", "util-linux"),
        ("unshare", "util-linux"),
        // Janus's VideoRoom runs beside Conclave in the benchmark smoke test.
        ("janus", "janus"),
        // The storage tests run against PostgreSQL as well as SQLite.
        ("/usr/lib/postgresql", "postgresql"),
        // webauthn-rs builds on OpenSSL.
        ("/usr/include/openssl/ssl.h", "libssl-dev"),
        ("pkg-config", "pkg-config"),
    ])?;
    npm_ci()?;
    let reqs = root().join("tests/sdk/requirements.txt");
    let ok = Command::new("python3")
        .args(["-c", "import livekit.rtc, livekit.api, pytest"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let mut pip = Command::new("python3");
        pip.args(["-m", "pip", "install", "--quiet", "-r"]).arg(&reqs);
        if run(&mut pip).is_err() {
            // Debian's system Python refuses global installs unless told.
            run(Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "--break-system-packages", "-r"])
                .arg(&reqs))?;
        }
    }
    // A real SMTP server for the account browser tests.
    pip_install("aiosmtpd", "aiosmtpd==1.4.6")?;
    Ok(())
}

/// Installs a pinned Python package unless `module` imports already.
fn pip_install(module: &str, requirement: &str) -> Result<()> {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Ok(());
    }
    let plain = run(Command::new("python3").args(["-m", "pip", "install", "--quiet", requirement]));
    if plain.is_err() {
        run(Command::new("python3").args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--break-system-packages",
            requirement,
        ]))?;
    }
    Ok(())
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    // `cargo run` gives this program the variables of its own package;
    // passed on, they differ from a plain `cargo build`'s, and build
    // scripts that watch one (ring's watches CARGO_MANIFEST_DIR) make every
    // build that alternates with a plain one rebuild the dependencies.
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(runs_package_variable) {
            c.env_remove(name);
        }
    }
    c
}

/// A variable `cargo run` sets for the package it runs.
fn runs_package_variable(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_MANIFEST_LINKS"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
        )
}

fn serve(args: &[String]) -> Result<()> {
    // `cargo xtask serve -- ARGS` and `cargo xtask serve ARGS` mean the same.
    let args = args.strip_prefix(&["--".to_owned()]).unwrap_or(args);
    build_web()?;
    run(cargo().args(["build", "--release", "-p", "conclave-server"]))?;
    run(Command::new(root().join("target/release/conclave"))
        .arg("serve")
        .args(args)
        .current_dir(root()))
}

struct Step {
    name: &'static str,
    result: Result<()>,
}

fn test(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--no-browser");
    setup()?;
    let mut steps = Vec::new();
    let mut step = |name: &'static str, result: Result<()>| {
        if let Err(e) = &result {
            eprintln!("xtask: step {name} failed: {e}");
        }
        steps.push(Step { name, result });
    };
    step("cargo fmt", run(cargo().args(["fmt", "--all", "--check"])));
    step(
        "web typecheck",
        run(Command::new("npm")
            .args(["run", "typecheck"])
            .current_dir(root().join("web"))),
    );
    let web = build_web();
    let web_ok = web.is_ok();
    step("web build", web);
    step(
        "cargo clippy",
        run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])),
    );
    // The fuzz targets are a workspace of their own (running them needs a
    // nightly toolchain, see `cargo xtask fuzz`); they must still compile
    // against the crates they call. Sharing the target directory reuses
    // what clippy checked.
    step(
        "fuzz targets check",
        run(cargo()
            .args([
                "check",
                "--manifest-path",
                "fuzz/Cargo.toml",
                "--bins",
                "--target-dir",
            ])
            .arg(root().join("target"))),
    );
    // The server binary first: the native client's tests run it.
    let bin = root().join("target/debug/conclave");
    let built = web_ok && run(cargo().args(["build", "-p", "conclave-server"])).is_ok();
    // A PostgreSQL server on loopback for the storage tests, stopped on drop.
    let postgres = TestPostgres::start();
    if let Err(e) = &postgres {
        eprintln!("xtask: {e}");
    }
    let mut cargo_test = cargo();
    cargo_test
        .args(["test", "--workspace", "--no-fail-fast"])
        .env("CONCLAVE_BIN", &bin);
    if let Ok(pg) = &postgres {
        cargo_test.env("CONCLAVE_TEST_POSTGRES_URL", &pg.url);
    }
    step("cargo test", run(&mut cargo_test));
    drop(postgres);
    if !built {
        step(
            "server build",
            Err("the server or the web app did not build".into()),
        );
    } else if !quick {
        step(
            "browser tests",
            run(Command::new("npm")
                .args(["test"])
                .current_dir(root().join("web"))
                .env("CONCLAVE_BIN", &bin)),
        );
        step(
            "Python SDK tests",
            run(Command::new("python3")
                .args(["-m", "pytest", "tests/sdk", "-q", "-p", "no:cacheprovider"])
                .current_dir(root())
                .env("CONCLAVE_BIN", &bin)),
        );
    }
    let failed: Vec<&str> = steps
        .iter()
        .filter(|s| s.result.is_err())
        .map(|s| s.name)
        .collect();
    let passed = steps.len() - failed.len();
    println!();
    for s in &steps {
        println!("{} {}", if s.result.is_ok() { "ok  " } else { "FAIL" }, s.name);
    }
    println!("steps: {passed} passed, {} failed", failed.len());
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed: {}", failed.join(", ")))
    }
}

/// A throwaway PostgreSQL server: a fresh cluster in a temporary directory,
/// listening on a free loopback port with its socket in that directory,
/// run as the `postgres` user when started as root. Stopped and removed
/// on drop.
struct TestPostgres {
    url: String,
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

impl TestPostgres {
    fn start() -> Result<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path().join("bin"))
                    .filter(|p| p.join("initdb").exists())
                    .max()
            })
            .ok_or("PostgreSQL was not found in /usr/lib/postgresql: apt-get install postgresql")?;
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!("conclave-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        if as_postgres {
            run(Command::new("chown").arg("postgres:").arg(&dir))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let pg = TestPostgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=disable"),
            dir: dir.clone(),
            bin,
            as_postgres,
        };
        run(pg
            .command("initdb")
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .stdout(std::process::Stdio::null()))?;
        run(pg
            .command("pg_ctl")
            .arg("-D")
            .arg(dir.join("data"))
            .arg("-l")
            .arg(dir.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                dir.display()
            ))
            .args(["-w", "start"]))?;
        Ok(pg)
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The fuzz targets in `fuzz/fuzz_targets`.
const FUZZ_TARGETS: [&str; 7] = [
    "token_verify",
    "signal_request",
    "media_datagram",
    "keyframe",
    "red",
    "client_signal",
    "meeting_input",
];

fn fuzz(args: &[String]) -> Result<()> {
    let secs: u64 = match args.first() {
        Some(s) => s.parse().map_err(|_| format!("not a number of seconds: {s}"))?,
        None => 60,
    };
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !nightly {
        return Err("fuzzing needs a nightly toolchain: rustup toolchain install nightly".into());
    }
    if !have("cargo-fuzz") {
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    for target in FUZZ_TARGETS {
        // The rustup proxy, so that `+nightly` selects the toolchain.
        run(Command::new("cargo")
            .args([
                "+nightly",
                "fuzz",
                "run",
                target,
                "--",
                &format!("-max_total_time={secs}"),
            ])
            .env_remove("CARGO")
            .env_remove("RUSTUP_TOOLCHAIN")
            .current_dir(root().join("fuzz")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::runs_package_variable;

    #[test]
    fn only_the_run_packages_variables_are_dropped() {
        for name in [
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_CRATE_NAME",
        ] {
            assert!(runs_package_variable(name), "{name} is passed on");
        }
        for name in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_PROFILE_RELEASE_DEBUG",
            "CARGO_TERM_COLOR",
        ] {
            assert!(!runs_package_variable(name), "{name} is dropped");
        }
    }
}
