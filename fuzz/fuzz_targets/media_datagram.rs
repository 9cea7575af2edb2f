#![no_main]
//! Arbitrary datagrams into the media core with a publisher and a
//! subscriber connection waiting.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conclave_media::{MediaConfig, MediaCore, Output, Role};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let local = SocketAddr::from(([10, 0, 0, 1], 5000));
    let start = Instant::now();
    let mut core = MediaCore::new(MediaConfig { candidates: vec![local] }, start);
    let _publisher = core.add_peer(start, Role::Publisher);
    let subscriber = core.add_peer(start, Role::Subscriber);
    let _ = core.create_offer(subscriber);
    // The input is a sequence of datagrams, each prefixed by a one-byte length.
    let mut rest = data;
    let mut t = start;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        let (datagram, next) = tail.split_at(n);
        t += Duration::from_millis(10);
        let _ = core.handle_receive(t, SocketAddr::from(([10, 0, 0, 2], 40000)), local, datagram);
        core.handle_timeout(t);
        while !matches!(core.poll_output(), Output::Timeout(_)) {}
        rest = next;
    }
});
