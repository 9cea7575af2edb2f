//! Whatever a server sends never panics the client.
//!
//! The same inputs drive the `client_signal` fuzz target (`fuzz/`); this
//! test runs a fixed-seed sample of them on every `cargo test`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conclave_client::{Client, Output, Pc, TrackSpec};
use livekit_protocol as lk;
use lk::signal_response::Message as M;
use prost::Message;

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
    fn text(&mut self, max: usize) -> String {
        String::from_utf8_lossy(&self.bytes(max)).into_owned()
    }
}

/// A publisher offer-shaped SDP with random parts, so parsing goes deep.
fn sdp(rng: &mut Rng) -> String {
    let mut s = String::from("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n");
    for mid in 0..(rng.next() % 3) {
        let kind = if rng.next().is_multiple_of(2) {
            "audio"
        } else {
            "video"
        };
        s.push_str(&format!(
            "m={kind} 9 UDP/TLS/RTP/SAVPF 96 111\r\nc=IN IP4 0.0.0.0\r\na=mid:{mid}\r\n\
             a=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:sha-256 {}\r\na=setup:actpass\r\n\
             a=msid:PA_x {}\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:111 opus/48000/2\r\na=sendonly\r\n\
             a=ssrc:{} cname:x\r\na=rtcp-mux\r\n",
            rng.text(8),
            rng.text(24),
            rng.text(40),
            rng.text(20),
            rng.next() as u32,
        ));
        if rng.next().is_multiple_of(4) {
            s.push_str(&rng.text(200));
        }
    }
    s
}

/// A response built from random parts, shaped like what servers send.
fn crafted(rng: &mut Rng) -> lk::SignalResponse {
    let m = match rng.next() % 8 {
        0 => M::Join(lk::JoinResponse {
            ping_interval: rng.next() as i32,
            ping_timeout: rng.next() as i32,
            participant: Some(lk::ParticipantInfo {
                sid: rng.text(30),
                ..Default::default()
            }),
            room: Some(lk::Room {
                name: rng.text(30),
                ..Default::default()
            }),
            ..Default::default()
        }),
        1 => M::TrackPublished(lk::TrackPublishedResponse {
            cid: match rng.next() % 3 {
                0 => "audio".into(),
                1 => "video".into(),
                _ => rng.text(10),
            },
            track: Some(lk::TrackInfo {
                sid: format!("TR_{}", rng.text(10)),
                ..Default::default()
            }),
        }),
        2 => M::Offer(lk::SessionDescription {
            r#type: "offer".into(),
            sdp: sdp(rng),
            ..Default::default()
        }),
        3 => M::Answer(lk::SessionDescription {
            r#type: "answer".into(),
            sdp: sdp(rng),
            ..Default::default()
        }),
        4 => M::Trickle(lk::TrickleRequest {
            candidate_init: format!(
                "{{\"candidate\":\"candidate:{} 1 udp {} 127.0.0.1 {} typ host\"}}",
                rng.text(5),
                rng.next() as u32,
                rng.next() as u16
            ),
            target: (rng.next() % 3) as i32,
            ..Default::default()
        }),
        5 => M::Leave(lk::LeaveRequest {
            reason: rng.next() as i32,
            ..Default::default()
        }),
        6 => M::Pong(rng.next() as i64),
        _ => M::Update(lk::ParticipantUpdate {
            participants: vec![lk::ParticipantInfo {
                sid: rng.text(20),
                ..Default::default()
            }],
        }),
    };
    lk::SignalResponse { message: Some(m) }
}

fn drain(client: &mut Client) {
    for _ in 0..100_000 {
        if let Output::Timeout(_) = client.poll_output() {
            return;
        }
    }
    panic!("the client produced output without end");
}

#[test]
fn random_server_messages_and_datagrams_never_panic() {
    let mut rng = Rng(0x5eed_c11e_0000_0004);
    let a: SocketAddr = "127.0.0.1:40000".parse().expect("address");
    let b: SocketAddr = "127.0.0.1:40001".parse().expect("address");
    let server: SocketAddr = "127.0.0.1:7882".parse().expect("address");
    for round in 0..200u32 {
        let mut now = Instant::now();
        let mut client = Client::new(now, a, b);
        client.publish(TrackSpec::audio("audio"));
        client.publish(TrackSpec::simulcast_camera("video"));
        for _ in 0..30 {
            now += Duration::from_millis(rng.next() % 50);
            match rng.next() % 4 {
                0 => {
                    let _ = client.handle_signal(now, &rng.bytes(300));
                }
                1 => {
                    let pc = if rng.next().is_multiple_of(2) {
                        Pc::Publisher
                    } else {
                        Pc::Subscriber
                    };
                    client.handle_datagram(now, pc, server, &rng.bytes(1500));
                }
                _ => {
                    let bytes = crafted(&mut rng).encode_to_vec();
                    let _ = client.handle_signal(now, &bytes);
                }
            }
            client.handle_timeout(now);
            drain(&mut client);
        }
        if round.is_multiple_of(50) {
            client.leave();
            drain(&mut client);
        }
    }
}
