//! Untrusted datagrams and session descriptions never panic the media core.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conclave_media::{MediaConfig, MediaCore, Output, Role};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.next() as usize) % (max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn drain(core: &mut MediaCore) {
    for _ in 0..100_000 {
        if let Output::Timeout(_) = core.poll_output() {
            return;
        }
    }
    panic!("the core produced output without end");
}

#[test]
fn random_datagrams_and_sdp_never_panic() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let local = SocketAddr::from(([10, 0, 0, 1], 5000));
    let start = Instant::now();
    let mut core = MediaCore::new(
        MediaConfig {
            candidates: vec![local],
        },
        start,
    );
    let publisher = core.add_peer(start, Role::Publisher);
    let subscriber = core.add_peer(start, Role::Subscriber);
    let _ = core.create_offer(subscriber);
    for i in 0..5_000u64 {
        let now = start + Duration::from_millis(i);
        let mut datagram = rng.bytes(1500);
        // Steer some datagrams into each demultiplexing branch: STUN, DTLS, RTP/RTCP.
        if let Some(first) = datagram.first_mut() {
            *first = match i % 4 {
                0 => 0x00,
                1 => 0x16,
                2 => 0x80,
                _ => *first,
            };
        }
        let src = SocketAddr::from(([10, 0, 0, 2], 40_000 + (i % 3) as u16));
        let _ = core.handle_receive(now, src, local, &datagram);
        if i % 500 == 0 {
            let sdp = String::from_utf8_lossy(&rng.bytes(3000)).into_owned();
            let _ = core.accept_offer(publisher, &sdp, &[]);
            let _ = core.accept_answer(subscriber, &sdp);
            let _ = core.add_remote_candidate(publisher, &sdp);
        }
        core.handle_timeout(now);
        drain(&mut core);
    }
}
