//! What subscribers measure, and what the server process costs.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use serde::Serialize;

/// One received stream: which sequence numbers came, how late, how much.
#[derive(Debug, Default)]
struct Stream {
    first_seq: Option<u64>,
    last_seq: u64,
    seen: std::collections::HashSet<u64>,
}

/// Everything one subscriber received.
#[derive(Debug, Default)]
pub struct Receiver {
    streams: HashMap<String, Stream>,
    pub packets: u64,
    pub bytes: u64,
    /// One-way delays in microseconds (send stamp to arrival).
    pub delays_us: Vec<u64>,
    /// The same, of audio packets only.
    pub audio_delays_us: Vec<u64>,
    pub first_packet: Option<Instant>,
    /// Packets in the window of a video the participant had asked the
    /// server to stop sending: none should arrive.
    pub unwanted: u64,
}

impl Receiver {
    /// One packet of `stream` with its (extended) sequence number, size and
    /// the delay its stamp shows. Packets before `measure_from` only count
    /// for the join time.
    pub fn on_packet(&mut self, stream: &str, seq: u64, bytes: usize, delay: Option<Duration>, at: Instant) {
        self.first_packet.get_or_insert(at);
        self.packets += 1;
        self.bytes += bytes as u64;
        if let Some(d) = delay {
            self.delays_us.push(d.as_micros() as u64);
            if crate::media::is_audio_payload(bytes) {
                self.audio_delays_us.push(d.as_micros() as u64);
            }
        }
        if !self.streams.contains_key(stream) {
            self.streams.insert(stream.to_owned(), Stream::default());
        }
        let Some(s) = self.streams.get_mut(stream) else {
            return;
        };
        s.first_seq = Some(s.first_seq.map_or(seq, |f| f.min(seq)));
        s.last_seq = s.last_seq.max(seq);
        s.seen.insert(seq);
    }

    /// How many streams delivered packets in the window.
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// (expected, received) packets over all streams, by sequence numbers.
    pub fn expected_received(&self) -> (u64, u64) {
        self.streams.values().fold((0, 0), |(e, r), s| {
            let expected = s.first_seq.map_or(0, |f| s.last_seq - f + 1);
            (e + expected, r + s.seen.len() as u64)
        })
    }
}

/// The `p`-th percentile (0..=100) of `v` (sorted here).
pub fn percentile(v: &mut [u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let rank = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[rank.min(v.len() - 1)]
}

/// CPU time and resident memory of a process, from `/proc`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcUsage {
    pub cpu_seconds: f64,
    pub rss_kib: u64,
    /// The resident memory that is the process's own (`RssAnon`): its heap
    /// and stacks, without the pages of its program file, which the page
    /// cache holds or drops independently of the load.
    pub anon_kib: u64,
}

/// Reads `/proc/<pid>/stat` (user + system time) and `/proc/<pid>/status`
/// (VmRSS, RssAnon). `None` when the process is gone or the files are not
/// Linux's.
pub fn proc_usage(pid: u32) -> Option<ProcUsage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    Some(ProcUsage {
        cpu_seconds: (utime + stime) as f64 / 100.0,
        rss_kib: status_kib(&status, "VmRSS:"),
        anon_kib: status_kib(&status, "RssAnon:"),
    })
}

/// A `kB` field of `/proc/<pid>/status`; 0 when it is missing.
fn status_kib(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The machine's UDP counters that say a datagram was lost in this host:
/// (receive buffer full, send buffer full), from `/proc/net/snmp`.
pub fn udp_buffer_errors() -> Option<(u64, u64)> {
    parse_snmp_udp(&std::fs::read_to_string("/proc/net/snmp").ok()?)
}

fn parse_snmp_udp(text: &str) -> Option<(u64, u64)> {
    let mut rows = text.lines().filter(|l| l.starts_with("Udp: "));
    let names: Vec<&str> = rows.next()?.split_whitespace().collect();
    let values: Vec<&str> = rows.next()?.split_whitespace().collect();
    let field = |name: &str| -> Option<u64> {
        let at = names.iter().position(|n| *n == name)?;
        values.get(at)?.parse().ok()
    };
    Some((field("RcvbufErrors")?, field("SndbufErrors")?))
}

/// Datagrams dropped by the IPv4 UDP sockets bound to `ports` (their
/// receive buffers were full), from `/proc/net/udp`.
pub fn udp_socket_drops(ports: RangeInclusive<u16>) -> Option<u64> {
    parse_udp_drops(&std::fs::read_to_string("/proc/net/udp").ok()?, ports)
}

fn parse_udp_drops(text: &str, ports: RangeInclusive<u16>) -> Option<u64> {
    let mut found = false;
    let mut drops = 0u64;
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let port = fields
            .get(1)
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
        if let Some(port) = port
            && ports.contains(&port)
            && let Some(d) = fields.last().and_then(|d| d.parse::<u64>().ok())
        {
            found = true;
            drops += d;
        }
    }
    found.then_some(drops)
}

/// CPU seconds every process of the machine spent over all CPUs, from
/// `/proc/stat` (all time that was not idle).
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = cpu.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let busy: u64 = v.iter().take(8).sum::<u64>() - v.get(3)? - v.get(4).copied().unwrap_or(0);
    Some(busy as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_comes_from_sequence_gaps() {
        let mut r = Receiver::default();
        let now = Instant::now();
        for seq in [10, 11, 13, 14, 14] {
            r.on_packet("a", seq, 100, Some(Duration::from_micros(500)), now);
        }
        r.on_packet("b", 1, 100, None, now);
        assert_eq!(r.expected_received(), (6, 5));
        assert_eq!(r.packets, 6);
        assert_eq!(r.delays_us.len(), 5);
    }

    #[test]
    fn percentiles() {
        let mut v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&mut v, 50.0), 51);
        assert_eq!(percentile(&mut v, 99.0), 99);
        assert_eq!(percentile(&mut [], 50.0), 0);
    }

    #[test]
    fn udp_counters_are_read() {
        let snmp = "Ip: Forwarding\nIp: 1\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors \
                    SndbufErrors InCsumErrors\nUdp: 10 0 5 20 4 7 0\nUdpLite: InDatagrams\nUdpLite: 0\n";
        assert_eq!(parse_snmp_udp(snmp), Some((4, 7)));
        assert_eq!(parse_snmp_udp("nothing"), None);
        let udp = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  \
                   timeout inode ref pointer drops\n\
                   1: 0100007F:1EC2 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 1 2 \
                   0000000000000000 12\n";
        assert_eq!(parse_udp_drops(udp, 7874..=7874), Some(12));
        assert_eq!(parse_udp_drops(udp, 7875..=7875), None);
        let two = format!(
            "{udp}   2: 0100007F:1EC4 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 1 2 0 5\n"
        );
        assert_eq!(parse_udp_drops(&two, 7870..=7880), Some(17));
        assert!(udp_buffer_errors().is_some());
        assert!(machine_busy_seconds().is_some_and(|s| s > 0.0));
    }

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let u = proc_usage(std::process::id()).expect("/proc of this process");
        assert!(u.rss_kib > 0);
        assert!(u.anon_kib > 0 && u.anon_kib <= u.rss_kib, "{u:?}");
        assert!(proc_usage(u32::MAX).is_none());
    }

    #[test]
    fn status_fields_are_read_by_name() {
        let status = "Name:\tconclave\nVmRSS:\t  130000 kB\nRssAnon:\t  108000 kB\nRssFile:\t 22000 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), 130_000);
        assert_eq!(status_kib(status, "RssAnon:"), 108_000);
        assert_eq!(status_kib(status, "RssShmem:"), 0);
    }
}
