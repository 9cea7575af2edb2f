//! The ceiling: a minimal UDP forwarder with no crypto, no congestion
//! control and no layer selection, and the plain-RTP clients that load it.
//! What it forwards per CPU-second is what this machine can do at best.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::measure::Receiver;
use crate::media::Source;

/// A subscriber's first datagram; the forwarder answers [`WELCOME`].
pub const HELLO: &[u8] = b"CONCLAVE-CEILING-JOIN";
pub const WELCOME: &[u8] = b"CONCLAVE-CEILING-OK";

/// Forwards every datagram to every joined subscriber, one `send_to` each.
/// Runs until the socket fails.
pub fn forward(listen: SocketAddr) -> std::io::Result<()> {
    let sock = UdpSocket::bind(listen)?;
    let mut subscribers: Vec<SocketAddr> = Vec::new();
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, from) = sock.recv_from(&mut buf)?;
        let data = &buf[..n];
        if data == HELLO {
            if !subscribers.contains(&from) {
                subscribers.push(from);
            }
            let _ = sock.send_to(WELCOME, from);
            continue;
        }
        for to in &subscribers {
            if *to != from {
                let _ = sock.send_to(data, to);
            }
        }
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

/// Sends `source`'s packets to the forwarder as plain RTP until `until`.
pub async fn publish(
    forwarder: SocketAddr,
    mut source: Source,
    ssrc_base: u32,
    until: Instant,
) -> std::io::Result<()> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let mut seqs: HashMap<(&str, Option<&str>), u16> = HashMap::new();
    let mut ssrcs: HashMap<(&str, Option<&str>), u32> = HashMap::new();
    while Instant::now() < until {
        tokio::time::sleep_until(source.next_wake().into()).await;
        for o in source.due(Instant::now()) {
            let key = (o.cid, o.rid);
            let next = ssrc_base + ssrcs.len() as u32;
            let ssrc = *ssrcs.entry(key).or_insert(next);
            let seq = seqs.entry(key).or_insert(0);
            *seq = seq.wrapping_add(1);
            let _ = sock
                .send_to(&rtp(*seq, o.timestamp, ssrc, o.marker, &o.payload), forwarder)
                .await;
        }
    }
    Ok(())
}

/// Joins the forwarder and records what arrives until `until`; packets
/// before `measure_from` count only for the join time.
pub async fn subscribe(
    forwarder: SocketAddr,
    base: Instant,
    measure_from: Instant,
    until: Instant,
) -> std::io::Result<(Receiver, Instant)> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let started = Instant::now();
    let mut recv = Receiver::default();
    let mut buf = vec![0u8; 2048];
    let mut welcomed = false;
    // Extended sequence numbers per SSRC.
    let mut ext: HashMap<u32, u64> = HashMap::new();
    while Instant::now() < until {
        if !welcomed {
            sock.send_to(HELLO, forwarder).await?;
        }
        let wait = if welcomed {
            until.saturating_duration_since(Instant::now())
        } else {
            Duration::from_millis(100)
        };
        let Ok(r) = tokio::time::timeout(wait, sock.recv_from(&mut buf)).await else {
            continue;
        };
        let (n, _) = r?;
        let data = &buf[..n];
        if data == WELCOME {
            welcomed = true;
            continue;
        }
        let at = Instant::now();
        if n < 12 + conclave_client::synth::STAMP_LEN {
            continue;
        }
        let seq16 = u16::from_be_bytes([data[2], data[3]]);
        let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let last = ext.entry(ssrc).or_insert(u64::from(seq16));
        let seq = extend(*last, seq16);
        *last = (*last).max(seq);
        if at < measure_from {
            recv.first_packet.get_or_insert(at);
            continue;
        }
        let delay = conclave_client::synth::read_stamp(&data[12..]).map(|(sent, _)| {
            at.duration_since(base)
                .saturating_sub(Duration::from_micros(sent))
        });
        recv.on_packet(&ssrc.to_string(), seq, n, delay, at);
    }
    Ok((recv, started))
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
}
