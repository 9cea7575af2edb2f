#![no_main]
//! Arbitrary signalling messages and datagrams from a server into the
//! native client, with its two tracks waiting to be published.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conclave_client::{Client, Output, Pc, TrackSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let a = SocketAddr::from(([127, 0, 0, 1], 40000));
    let b = SocketAddr::from(([127, 0, 0, 1], 40001));
    let server = SocketAddr::from(([127, 0, 0, 1], 7882));
    let mut now = Instant::now();
    let mut client = Client::new(now, a, b);
    client.publish(TrackSpec::audio("audio"));
    client.publish(TrackSpec::simulcast_camera("video"));
    // Frames: a kind byte, a two-byte length, the bytes.
    let mut rest = data;
    while rest.len() >= 3 {
        let kind = rest[0];
        let n = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let frame = &rest[3..3 + n];
        now += Duration::from_millis(u64::from(kind >> 4));
        match kind % 3 {
            0 => {
                let _ = client.handle_signal(now, frame);
            }
            1 => client.handle_datagram(now, Pc::Publisher, server, frame),
            _ => client.handle_datagram(now, Pc::Subscriber, server, frame),
        }
        client.handle_timeout(now);
        for _ in 0..100_000 {
            if let Output::Timeout(_) = client.poll_output() {
                break;
            }
        }
        rest = &rest[3 + n..];
    }
});
