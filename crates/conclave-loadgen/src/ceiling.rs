//! The ceiling: a minimal UDP forwarder with no crypto, no congestion
//! control and no feedback, and the plain-RTP participants that load it.
//! It forwards each packet to the subscribers that asked for its SSRC, in
//! batches (`recvmmsg`, `sendmmsg`): what it forwards per CPU-second is
//! what this machine can do at best.

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use livekit_protocol::VideoQuality;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, sendmmsg};

use crate::measure::Receiver;
use crate::media::Source;
use crate::target::{Joining, Outcome, Plan, Target, Wants};

/// A subscriber's first datagram: this, then the SSRCs it wants (4 bytes
/// each, big-endian). The forwarder answers [`WELCOME`].
pub const HELLO: &[u8] = b"CONCLAVE-CEILING-JOIN";
pub const WELCOME: &[u8] = b"CONCLAVE-CEILING-OK";

/// Datagrams read per `recvmmsg`.
const BATCH: usize = 32;
/// Datagrams written per `sendmmsg`.
const SEND_BATCH: usize = 256;
const MAX_DATAGRAM: usize = 2048;
/// The receive buffer the forwarder asks for.
const FORWARDER_RECV_BUFFER: usize = 4 << 20;

/// The SSRC of a publisher's stream: audio, or a video layer by index.
pub fn ssrc(publisher: usize, layer: Option<usize>) -> u32 {
    0x1000_0000 | ((publisher as u32 & 0xf_ffff) << 4) | layer.map_or(0, |l| l as u32 + 1)
}

/// The layer index of a quality in the three-layer plan.
fn layer_of(q: VideoQuality) -> usize {
    match q {
        VideoQuality::Low => 0,
        VideoQuality::Medium => 1,
        _ => 2,
    }
}

/// The SSRCs participant `index` receives.
pub fn wanted(index: usize, wants: &Wants) -> Vec<u32> {
    let mut out = Vec::new();
    for (shown, p) in (0..wants.publishers).filter(|&p| p != index).enumerate() {
        out.push(ssrc(p, None));
        if wants.video && shown < wants.videos {
            let q = if shown == 0 { wants.first } else { wants.rest };
            out.push(ssrc(p, Some(layer_of(q))));
        }
    }
    out
}

/// In the forwarder's list of sends: the answer to a join, not a datagram.
const ANSWER: usize = usize::MAX;

/// The forwarder's routing table: SSRC to the subscribers that want it.
#[derive(Default)]
struct Routes(HashMap<u32, Vec<SockaddrIn>>);

impl Routes {
    /// A datagram from `from`: a join (answered) or a packet to forward.
    /// Pushes (datagram index or [`ANSWER`], destination) pairs to `out`.
    fn route(&mut self, index: usize, data: &[u8], from: SockaddrIn, out: &mut Vec<(usize, SockaddrIn)>) {
        if let Some(list) = data.strip_prefix(HELLO) {
            for ssrc in list.chunks_exact(4) {
                let ssrc = u32::from_be_bytes([ssrc[0], ssrc[1], ssrc[2], ssrc[3]]);
                let subs = self.0.entry(ssrc).or_default();
                if !subs.contains(&from) {
                    subs.push(from);
                }
            }
            out.push((ANSWER, from));
            return;
        }
        let Some(header) = data.get(8..12) else { return };
        let ssrc = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        if let Some(subs) = self.0.get(&ssrc) {
            out.extend(subs.iter().map(|&to| (index, to)));
        }
    }
}

/// Runs the forwarder on `listen` (an IPv4 address) until its socket fails.
pub fn forward(listen: SocketAddr) -> std::io::Result<()> {
    let SocketAddr::V4(_) = listen else {
        return Err(std::io::Error::other("the forwarder listens on IPv4 only"));
    };
    let sock = UdpSocket::bind(listen)?;
    // Room for bursts while the forwarder waits for its CPU (capped by the
    // kernel at net.core.rmem_max).
    let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(FORWARDER_RECV_BUFFER);
    let fd = sock.as_raw_fd();
    let mut bufs = vec![[0u8; MAX_DATAGRAM]; BATCH];
    let mut lens = [0usize; BATCH];
    let mut rx = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let mut tx = MultiHeaders::<SockaddrIn>::preallocate(SEND_BATCH, None);
    let mut routes = Routes::default();
    let mut sends: Vec<(usize, SockaddrIn)> = Vec::with_capacity(SEND_BATCH);
    loop {
        sends.clear();
        let from: Vec<Option<SockaddrIn>> = {
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
                bufs.iter_mut().map(|b| [IoSliceMut::new(&mut b[..])]).collect();
            let got = recvmmsg(fd, &mut rx, iovs.iter_mut(), MsgFlags::MSG_WAITFORONE, None)
                .map_err(std::io::Error::from)?;
            got.enumerate()
                .map(|(i, m)| {
                    lens[i] = m.bytes;
                    m.address
                })
                .collect()
        };
        for (i, addr) in from.into_iter().enumerate() {
            if let (Some(addr), Some(buf)) = (addr, bufs.get(i)) {
                routes.route(i, &buf[..lens[i]], addr, &mut sends);
            }
        }
        for chunk in sends.chunks(SEND_BATCH) {
            let slices: Vec<[IoSlice<'_>; 1]> = chunk
                .iter()
                .map(|&(i, _)| match bufs.get(i) {
                    Some(b) => [IoSlice::new(&b[..lens[i]])],
                    None => [IoSlice::new(WELCOME)],
                })
                .collect();
            let addrs: Vec<Option<SockaddrIn>> = chunk.iter().map(|&(_, a)| Some(a)).collect();
            let mut start = 0;
            while start < chunk.len() {
                // A datagram that cannot be sent is skipped, as a network would lose it.
                let sent = sendmmsg(
                    fd,
                    &mut tx,
                    slices[start..].iter(),
                    &addrs[start..],
                    [],
                    MsgFlags::empty(),
                )
                .map_or(0, Iterator::count);
                start += sent.max(1);
            }
        }
    }
}

/// The forwarder as a target: this program's `forward` command in a child
/// process.
pub struct CeilingTarget {
    child: Child,
    addr: SocketAddr,
}

impl CeilingTarget {
    /// Starts `binary forward` on a free loopback port, on `cpu` when given.
    pub fn start(binary: &Path, cpu: Option<usize>) -> Result<Self, String> {
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut cmd = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let child = cmd
            .args(["forward", "--listen", &addr.to_string()])
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the forwarder {}: {e}", binary.display()))?;
        let target = Self { child, addr };
        target.wait_ready()?;
        Ok(target)
    }

    /// Waits until the forwarder answers a join.
    fn wait_ready(&self) -> Result<(), String> {
        let probe = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        probe
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        for _ in 0..100 {
            let _ = probe.send_to(HELLO, self.addr);
            if let Ok((n, _)) = probe.recv_from(&mut buf)
                && &buf[..n] == WELCOME
            {
                return Ok(());
            }
        }
        Err("the forwarder did not answer within 10 s".into())
    }
}

impl Drop for CeilingTarget {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Target for CeilingTarget {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn media_ports(&self) -> std::ops::RangeInclusive<u16> {
        self.addr.port()..=self.addr.port()
    }

    fn log(&self) -> String {
        String::new()
    }

    fn join(&self, plan: Plan) -> Joining {
        let addr = self.addr;
        Box::pin(async move {
            let joined_at = Instant::now();
            let Plan {
                index,
                source,
                receive,
                publishing,
                stop,
            } = plan;
            let sending = async {
                if let Some(source) = source {
                    let stop = stop.clone();
                    let until = receive.map(|w| w.window.until);
                    let done =
                        move || stop.load(Ordering::Relaxed) || until.is_some_and(|u| Instant::now() >= u);
                    publish(addr, source, index, publishing, done).await
                } else {
                    Ok(())
                }
            };
            let receiving = async {
                match receive {
                    Some(wants) => subscribe(addr, index, wants).await.map(Some),
                    None => Ok(None),
                }
            };
            let (p, s) = tokio::join!(sending, receiving);
            p.map_err(|e| e.to_string())?;
            Ok(Outcome {
                joined_at,
                received: s.map_err(|e| e.to_string())?,
                resumes: 0,
            })
        })
    }
}

/// A 12-byte RTP header in front of `payload`.
pub fn rtp(seq: u16, timestamp: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.push(0x80);
    p.push(if marker { 0x80 | 96 } else { 96 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&timestamp.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Sends `source`'s packets to the forwarder as plain RTP until `done`.
async fn publish(
    forwarder: SocketAddr,
    mut source: Source,
    index: usize,
    mut publishing: Option<tokio::sync::oneshot::Sender<()>>,
    done: impl Fn() -> bool,
) -> std::io::Result<()> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let mut seqs: HashMap<u32, u16> = HashMap::new();
    source.start_at(Instant::now());
    while !done() {
        tokio::time::sleep_until(source.next_wake().into()).await;
        for o in source.due(Instant::now()) {
            let ssrc = ssrc(index, o.layer);
            let seq = seqs.entry(ssrc).or_insert(0);
            *seq = seq.wrapping_add(1);
            let _ = sock
                .send_to(&rtp(*seq, o.timestamp, ssrc, o.marker, &o.payload), forwarder)
                .await;
        }
        if let Some(tx) = publishing.take() {
            let _ = tx.send(());
        }
    }
    Ok(())
}

/// Joins the forwarder for the streams participant `index` wants and
/// records what arrives until the window ends; packets before it count
/// only for the join time.
async fn subscribe(forwarder: SocketAddr, index: usize, wants: Wants) -> std::io::Result<Receiver> {
    let window = wants.window;
    // As much room as a native client's socket has, and each datagram
    // dated by its arrival, as the native client's.
    let sock = conclave_client::net::bind_stamped(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        conclave_client::driver::RECV_BUFFER,
    )
    .await?;
    let mut hello = HELLO.to_vec();
    for s in wanted(index, &wants) {
        hello.extend_from_slice(&s.to_be_bytes());
    }
    let mut recv = Receiver::default();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut welcomed = false;
    // Extended sequence numbers per SSRC.
    let mut ext: HashMap<u32, u64> = HashMap::new();
    let mut names: HashMap<u32, String> = HashMap::new();
    while Instant::now() < window.until {
        if !welcomed {
            sock.send_to(&hello, forwarder).await?;
        }
        let wait = if welcomed {
            window.until.saturating_duration_since(Instant::now())
        } else {
            Duration::from_millis(100)
        };
        let Ok(r) = tokio::time::timeout(wait, conclave_client::net::recv_stamped(&sock, &mut buf)).await
        else {
            continue;
        };
        let (n, _, at) = r?;
        let data = &buf[..n];
        if data == WELCOME {
            welcomed = true;
            continue;
        }
        if n < 12 + conclave_client::synth::STAMP_LEN {
            continue;
        }
        let seq16 = u16::from_be_bytes([data[2], data[3]]);
        let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let last = ext.entry(ssrc).or_insert(u64::from(seq16));
        let seq = extend(*last, seq16);
        *last = (*last).max(seq);
        if at < window.measure_from {
            recv.first_packet.get_or_insert(at);
            continue;
        }
        if at >= window.until {
            break;
        }
        let payload = &data[12..];
        let delay = conclave_client::synth::read_stamp(payload).map(|(sent, _)| {
            at.duration_since(window.base)
                .saturating_sub(Duration::from_micros(sent))
        });
        let name = names.entry(ssrc).or_insert_with(|| ssrc.to_string());
        recv.on_packet(name, seq, payload.len(), delay, at);
    }
    Ok(recv)
}

/// The 64-bit sequence number nearest to `last` with the low bits `seq`.
fn extend(last: u64, seq: u16) -> u64 {
    let base = last & !0xffff;
    let candidates = [base.wrapping_sub(0x1_0000), base, base + 0x1_0000];
    candidates
        .into_iter()
        .map(|b| b | u64::from(seq))
        .min_by_key(|c| c.abs_diff(last))
        .unwrap_or(u64::from(seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Window;
    use std::net::SocketAddrV4;

    fn sockaddr(port: u16) -> SockaddrIn {
        SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
    }

    #[test]
    fn sequence_numbers_extend_across_wraps() {
        assert_eq!(extend(5, 6), 6);
        assert_eq!(extend(0xfffe, 1), 0x1_0001);
        assert_eq!(extend(0x1_0001, 0xffff), 0xffff);
    }

    #[test]
    fn headers_are_rtp() {
        let p = rtp(0x1234, 7, 9, true, &[1, 2]);
        assert_eq!(&p[..4], &[0x80, 0x80 | 96, 0x12, 0x34]);
        assert_eq!(p.len(), 14);
    }

    #[test]
    fn subscribers_get_only_the_streams_they_asked_for() {
        let now = Instant::now();
        let mut wants = Wants {
            publishers: 3,
            first: VideoQuality::High,
            rest: VideoQuality::Low,
            video: true,
            videos: usize::MAX,
            window: Window {
                base: now,
                measure_from: now,
                until: now,
            },
        };
        // Participant 1 wants publishers 0 and 2: 0 high, 2 low, both audios.
        let w = wanted(1, &wants);
        assert_eq!(
            w,
            vec![ssrc(0, None), ssrc(0, Some(2)), ssrc(2, None), ssrc(2, Some(0))]
        );
        let mut routes = Routes::default();
        let mut hello = HELLO.to_vec();
        for s in &w {
            hello.extend_from_slice(&s.to_be_bytes());
        }
        let (a, b) = (sockaddr(1000), sockaddr(1001));
        let mut out = Vec::new();
        routes.route(0, &hello, a, &mut out);
        assert_eq!(out, vec![(ANSWER, a)], "a join is answered");
        out.clear();
        routes.route(1, &rtp(1, 0, ssrc(0, Some(2)), false, &[0; 20]), b, &mut out);
        assert_eq!(out, vec![(1, a)]);
        out.clear();
        routes.route(2, &rtp(1, 0, ssrc(0, Some(1)), false, &[0; 20]), b, &mut out);
        assert!(out.is_empty(), "a layer nobody asked for goes nowhere");
        routes.route(3, &[1, 2, 3], b, &mut out);
        assert!(out.is_empty());
        // Showing one video: participant 1 gets both audios, 0's video.
        wants.videos = 1;
        assert_eq!(
            wanted(1, &wants),
            vec![ssrc(0, None), ssrc(0, Some(2)), ssrc(2, None)]
        );
    }
}
