//! A `conclave serve` process on loopback with a fresh data directory, for
//! integration tests and benchmarks, and access tokens for it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conclave_token::{ApiKey, ApiSecret, Claims};

use crate::ClientError;

/// The API key and secret every server started here is configured with.
pub const API_KEY: &str = "APIconclavetest";
const API_SECRET: &str = "conclave-test-secret-0123456789abcdef";

/// A running server; stopped when dropped.
pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The media port of the first engine; engine `i` has `udp_port + i`.
    pub udp_port: u16,
    /// How many media engines the server runs.
    pub media_workers: u16,
    http_port: u16,
    data_dir: PathBuf,
}

/// Where the server binary is: `CONCLAVE_BIN`, or `conclave` in the
/// workspace's target directory for the given profile.
pub fn server_binary(profile: &str) -> Result<PathBuf, ClientError> {
    if let Some(bin) = std::env::var_os("CONCLAVE_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let bin = target.join(profile).join("conclave");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(ClientError::Io(format!(
            "no server binary at {}: build it with `cargo build -p conclave-server` (add --release for \
             the release profile) or set CONCLAVE_BIN",
            bin.display()
        )))
    }
}

fn free_tcp_port() -> Result<u16, ClientError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| ClientError::Io(e.to_string()))?;
    Ok(l.local_addr().map_err(|e| ClientError::Io(e.to_string()))?.port())
}

/// Media engines of a test server unless the caller sets
/// `CONCLAVE_MEDIA_WORKERS`: more than one, so that tests cross the
/// placement of rooms on engines.
const TEST_WORKERS: u16 = 2;

/// The first of `count` consecutive UDP ports that were free together.
fn free_udp_ports(count: u16) -> Result<u16, ClientError> {
    let io = |e: std::io::Error| ClientError::Io(e.to_string());
    for _ in 0..100 {
        let first = UdpSocket::bind("127.0.0.1:0").map_err(io)?;
        let port = first.local_addr().map_err(io)?.port();
        if u32::from(port) + u32::from(count) > 65536 {
            continue;
        }
        // Held until all are known free.
        let rest: Result<Vec<UdpSocket>, _> = (1..count)
            .map(|i| UdpSocket::bind(("127.0.0.1", port + i)))
            .collect();
        if rest.is_ok() {
            return Ok(port);
        }
    }
    Err(ClientError::Io(format!(
        "found no {count} consecutive free UDP ports on loopback"
    )))
}

impl ServerProcess {
    /// Starts `binary` on free loopback ports and waits until it is ready.
    /// `extra_env` is added to the server's environment.
    pub fn start(binary: &Path, extra_env: &[(&str, &str)]) -> Result<Self, ClientError> {
        Self::start_on(binary, extra_env, None)
    }

    /// Like [`ServerProcess::start`], with every thread of the server kept
    /// on one CPU (through `taskset`, which must then be installed).
    pub fn start_on(
        binary: &Path,
        extra_env: &[(&str, &str)],
        cpu: Option<usize>,
    ) -> Result<Self, ClientError> {
        let io = |e: std::io::Error| ClientError::Io(e.to_string());
        let http_port = free_tcp_port()?;
        let media_workers = match extra_env.iter().find(|(k, _)| *k == "CONCLAVE_MEDIA_WORKERS") {
            Some((_, v)) => match v.parse::<u16>() {
                Ok(0) => std::thread::available_parallelism().map_or(1, |n| n.get().min(256) as u16),
                Ok(n) => n,
                Err(_) => {
                    return Err(ClientError::Io(format!(
                        "CONCLAVE_MEDIA_WORKERS={v} is not a number"
                    )));
                }
            },
            None => TEST_WORKERS,
        };
        let udp_port = free_udp_ports(media_workers)?;
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let data_dir = std::env::temp_dir().join(format!("conclave-client-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&data_dir).map_err(io)?;
        let log = std::fs::File::create(data_dir.join("server.log")).map_err(io)?;
        let mut cmd = match cpu {
            // taskset runs the server in its own process, so its pid is the server's.
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        cmd.arg("serve")
            .env("CONCLAVE_SERVER_DATA_DIR", &data_dir)
            .env("CONCLAVE_HTTP_LISTEN", format!("127.0.0.1:{http_port}"))
            .env("CONCLAVE_MEDIA_UDP_PORT", udp_port.to_string())
            .env("CONCLAVE_MEDIA_WORKERS", media_workers.to_string())
            .env("CONCLAVE_MEDIA_ANNOUNCE", "127.0.0.1")
            .env("CONCLAVE_AUTH_API_KEY", API_KEY)
            .env("CONCLAVE_AUTH_API_SECRET", API_SECRET)
            .env("CONCLAVE_LOG_LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io)?)
            .stderr(log);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|e| {
            let how = if cpu.is_some() {
                " (pinning needs taskset: apt-get install util-linux)"
            } else {
                ""
            };
            ClientError::Io(format!("cannot start {}: {e}{how}", binary.display()))
        })?;
        let mut server = Self {
            child,
            url: format!("http://127.0.0.1:{http_port}"),
            udp_port,
            media_workers,
            http_port,
            data_dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready(http_port) {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(ClientError::Io(format!(
                    "the server exited with {status}: {}",
                    server.log()
                )));
            }
            if Instant::now() > deadline {
                return Err(ClientError::Io(format!(
                    "the server was not ready within 20 s: {}",
                    server.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// The server's process id, to read its CPU time and memory.
    /// The server's Prometheus figures (`/metrics`).
    pub fn metrics(&self) -> Result<String, ClientError> {
        http_get(self.http_port, "/metrics")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default()
    }

    /// A token to join `room` as `identity`, valid for an hour.
    pub fn token(&self, room: &str, identity: &str) -> Result<String, ClientError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims::for_join(identity, room, now, 3600);
        conclave_token::sign(&claims, &ApiKey::new(API_KEY), &ApiSecret::new(API_SECRET))
            .map_err(|e| ClientError::Refused(e.to_string()))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// `GET /readyz` answers 200.
/// The body of `GET path` on the server's HTTP port.
fn http_get(port: u16, path: &str) -> Result<String, ClientError> {
    let io = |e: std::io::Error| ClientError::Io(format!("GET {path}: {e}"));
    let mut s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).map_err(io)?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(io)?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .map_err(io)?;
    let mut response = String::new();
    s.read_to_string(&mut response).map_err(io)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| ClientError::Io(format!("GET {path}: no HTTP response")))?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(ClientError::Io(format!(
            "GET {path}: {}",
            head.lines().next().unwrap_or("")
        )));
    }
    Ok(body.to_owned())
}

fn ready(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap_or(0);
    buf[..n].starts_with(b"HTTP/1.0 200") || buf[..n].starts_with(b"HTTP/1.1 200")
}
