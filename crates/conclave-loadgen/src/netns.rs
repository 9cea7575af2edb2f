//! A private network namespace for runs that include Janus.
//!
//! Janus 1.1.2 never gathers ICE candidates on a loopback interface (it
//! skips interfaces flagged as loopback before its enforce list is
//! consulted), so on the host it would only offer the machine's other
//! addresses; and libnice ties each socket to the interface of its address
//! (`IP_UNICAST_IF`), so a loopback address on another interface cannot
//! send either. Runs with Janus therefore happen in a network namespace of
//! their own, which has loopback and one veth pair, `janus0` with
//! [`JANUS_IP`] and `janus1` with [`PEER_IP`] (from 198.18.0.0/15, the
//! range set aside for benchmarks, and only inside the namespace). Janus
//! gathers on `janus0` only; Janus's participants bind their media sockets
//! to `janus1`'s address; its API stays on 127.0.0.1. Every target of such
//! a run, Conclave and the ceiling too, runs in that namespace; nothing in
//! it reaches any other network.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// Set in the environment of the program once it runs in the namespace.
pub const ENV: &str = "CONCLAVE_LOADGEN_NETNS";

/// The address Janus gathers its ICE candidates on.
pub const JANUS_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The address Janus's participants send their media from.
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// The veth pair made in the namespace: [`JANUS_IP`] is on the first,
/// [`PEER_IP`] on the second.
const LINK: &str = "janus0";
const PEER: &str = "janus1";

/// Whether this program already runs in the namespace.
pub fn inside() -> bool {
    std::env::var_os(ENV).is_some()
}

/// Whether this process runs as root (effective user id 0).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Runs this program again with the same arguments in a new network
/// namespace (`unshare`; without root, in a user namespace of its own too)
/// and returns its exit code.
pub fn rerun_inside() -> Result<i32, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new("unshare");
    if !is_root() {
        cmd.args(["--user", "--map-root-user"]);
    }
    let status = cmd
        .args(["--net", "--"])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(ENV, "1")
        .status()
        .map_err(|e| format!("cannot run unshare ({e}): apt-get install util-linux"))?;
    Ok(status.code().unwrap_or(1))
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip ({e}): apt-get install iproute2"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn sysctl(path: &str, value: &str) -> Result<(), String> {
    std::fs::write(format!("/proc/sys/net/ipv4/conf/{path}"), value)
        .map_err(|e| format!("cannot set net.ipv4.conf.{path} in the namespace: {e}"))
}

/// Brings loopback up and adds the veth pair. Only inside the namespace.
pub fn setup() -> Result<(), String> {
    if !inside() {
        return Err("the Janus addresses are only made in the load generator's own network namespace".into());
    }
    ip(&["link", "set", "lo", "up"])?;
    ip(&["link", "add", LINK, "type", "veth", "peer", "name", PEER])?;
    ip(&["addr", "add", &format!("{JANUS_IP}/30"), "dev", LINK])?;
    ip(&["addr", "add", &format!("{PEER_IP}/30"), "dev", PEER])?;
    // What Janus sends leaves through janus0 and comes back in through
    // janus1 from an address of this same namespace: accept it.
    for dev in ["all", PEER, LINK] {
        sysctl(&format!("{dev}/accept_local"), "1")?;
        sysctl(&format!("{dev}/rp_filter"), "0")?;
    }
    ip(&["link", "set", PEER, "up"])?;
    ip(&["link", "set", LINK, "up"])
}
