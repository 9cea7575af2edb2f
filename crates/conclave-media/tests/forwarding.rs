//! The media core forwards a publisher's audio and video to a subscriber,
//! deterministically: two in-process str0m clients, no sockets, and a clock
//! that only moves when the test moves it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conclave_media::{MediaConfig, MediaCore, MediaEvent, MediaId, Output, PeerId, Role};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output as RtcOutput, Rtc};

const SERVER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)), 5000);
const PUBLISHER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)), 6000);
const SUBSCRIBER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 3)), 7000);

struct Client {
    rtc: Rtc,
    addr: SocketAddr,
    events: Vec<Event>,
}

impl Client {
    fn new(addr: SocketAddr, now: Instant) -> Self {
        let mut rtc = Rtc::builder().build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        Self {
            rtc,
            addr,
            events: Vec::new(),
        }
    }
}

/// The marker bit and payload type of an SRTP datagram (its RTP header is in
/// the clear); `None` for anything else.
fn rtp_marker_and_pt(datagram: &[u8]) -> Option<(bool, u8)> {
    let b1 = *datagram.get(1)?;
    let rtp = datagram.len() > 12 && datagram[0] >> 6 == 2 && !(72..=79).contains(&(b1 & 0x7f));
    rtp.then_some((b1 & 0x80 != 0, b1 & 0x7f))
}

/// The simulated network: everything sent is delivered at once, in order,
/// except that every `lose_to_subscriber`-th datagram toward the subscriber
/// is lost when that is set.
struct World {
    now: Instant,
    core: MediaCore,
    publisher: Client,
    subscriber: Client,
    core_events: Vec<MediaEvent>,
    lose_to_subscriber: Option<u64>,
    to_subscriber: u64,
    /// RTP marker and payload type of what was sent toward the subscriber,
    /// and of what of it was lost.
    rtp_to_subscriber: Vec<Option<(bool, u8)>>,
    lost: Vec<Option<(bool, u8)>>,
    /// The core's last answer to the publisher.
    answer_to_publisher: String,
}

impl World {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            now,
            core: MediaCore::new(
                MediaConfig {
                    candidates: vec![SERVER],
                },
                now,
            ),
            publisher: Client::new(PUBLISHER, now),
            subscriber: Client::new(SUBSCRIBER, now),
            core_events: Vec::new(),
            lose_to_subscriber: None,
            to_subscriber: 0,
            rtp_to_subscriber: Vec::new(),
            lost: Vec::new(),
            answer_to_publisher: String::new(),
        }
    }

    /// Delivers every pending datagram until all sides are quiet.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for which in 0..2 {
                let client = if which == 0 {
                    &mut self.publisher
                } else {
                    &mut self.subscriber
                };
                loop {
                    match client.rtc.poll_output().expect("client output") {
                        RtcOutput::Timeout(_) => break,
                        RtcOutput::Event(e) => client.events.push(e),
                        RtcOutput::Transmit(t) => {
                            moved = true;
                            let bytes: Vec<u8> = t.contents.into();
                            let _ = self
                                .core
                                .handle_receive(self.now, t.source, t.destination, &bytes);
                        }
                    }
                }
            }
            loop {
                match self.core.poll_output() {
                    Output::Timeout(_) => break,
                    Output::Event(e) => self.core_events.push(e),
                    Output::Transmit {
                        source,
                        destination,
                        contents,
                    } => {
                        moved = true;
                        if destination == self.subscriber.addr {
                            self.rtp_to_subscriber.push(rtp_marker_and_pt(&contents));
                        }
                        if destination == self.subscriber.addr
                            && let Some(every) = self.lose_to_subscriber
                        {
                            self.to_subscriber += 1;
                            if self.to_subscriber.is_multiple_of(every) {
                                self.lost.push(rtp_marker_and_pt(&contents));
                                continue;
                            }
                        }
                        let client = if destination == self.publisher.addr {
                            &mut self.publisher
                        } else if destination == self.subscriber.addr {
                            &mut self.subscriber
                        } else {
                            panic!("datagram to an unknown address");
                        };
                        let recv =
                            Receive::new(Protocol::Udp, source, destination, &contents).expect("datagram");
                        client
                            .rtc
                            .handle_input(Input::Receive(self.now, recv))
                            .expect("client input");
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the simulated network never settled");
    }

    /// Moves the clock and lets every side handle its timers.
    fn advance(&mut self, by: Duration) {
        self.now += by;
        for c in [&mut self.publisher, &mut self.subscriber] {
            c.rtc
                .handle_input(Input::Timeout(self.now))
                .expect("client timeout");
        }
        self.core.handle_timeout(self.now);
        self.settle();
    }

    /// Lets time pass in 10 ms steps with nothing sent (connections
    /// establish, timers run).
    fn idle(&mut self, total: Duration) {
        self.run_for(total, Duration::from_millis(10), |_| {});
    }

    fn run_for(&mut self, total: Duration, step: Duration, mut each: impl FnMut(&mut World)) {
        let end = self.now + total;
        while self.now < end {
            each(self);
            self.advance(step);
        }
    }
}

fn offer_from_publisher(world: &mut World, kinds: &[MediaKind]) -> (PeerId, Vec<Mid>) {
    let peer = world.core.add_peer(world.now, Role::Publisher);
    let mut api = world.publisher.rtc.sdp_api();
    let mids: Vec<Mid> = kinds
        .iter()
        .map(|k| {
            api.add_media(
                *k,
                Direction::SendOnly,
                Some("stream".into()),
                Some(format!("cid-{k:?}")),
                None,
            )
        })
        .collect();
    let (offer, pending) = api.apply().expect("offer");
    let answer = world
        .core
        .accept_offer(peer, &offer.to_sdp_string(), &[])
        .expect("core answers");
    world
        .publisher
        .rtc
        .sdp_api()
        .accept_answer(
            pending,
            SdpAnswer::from_sdp_string(&answer).expect("answer parses"),
        )
        .expect("answer accepted");
    world.answer_to_publisher = answer;
    world.settle();
    (peer, mids)
}

fn subscribe_all(world: &mut World, publisher: PeerId) -> PeerId {
    let added: Vec<MediaId> = world
        .core_events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::TrackAdded { peer, mid, .. } if *peer == publisher => Some(mid.clone()),
            _ => None,
        })
        .collect();
    assert!(
        !added.is_empty(),
        "the core announced no published track: {:?}",
        world.core_events
    );
    let sub = world.core.add_peer(world.now, Role::Subscriber);
    for (i, mid) in added.iter().enumerate() {
        world
            .core
            .subscribe(sub, publisher, mid, &format!("PA_p|TR_{i}"), &format!("TR_{i}"))
            .expect("subscribe");
    }
    let offer = world
        .core
        .create_offer(sub)
        .expect("offer")
        .expect("something to offer");
    let answer = world
        .subscriber
        .rtc
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&offer).expect("offer parses"))
        .expect("subscriber answers");
    let again = world
        .core
        .accept_answer(sub, &answer.to_sdp_string())
        .expect("core accepts the answer");
    assert!(!again, "no further negotiation is pending");
    world.settle();
    sub
}

fn write_frame(c: &mut Client, mid: Mid, codec: Codec, now: Instant, time: MediaTime, data: &[u8]) {
    let pt = {
        let w = c.rtc.writer(mid).expect("writer");
        w.payload_params()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
            .expect("codec negotiated")
    };
    c.rtc
        .writer(mid)
        .expect("writer")
        .write(pt, now, time, data.to_vec())
        .expect("write");
}

/// The publisher sends 20 ms of Opus silence every 20 ms and a small VP8
/// frame every 40 ms for `total`, answering keyframe requests like a real
/// encoder; the stream starts with delta frames. Returns the number of
/// keyframe requests the publisher received.
fn publish_for(w: &mut World, audio: Mid, video: Mid, total: Duration) -> usize {
    let mut n: u64 = 0;
    let mut seen_requests = 0;
    let mut key_due = false;
    let base = w.now;
    w.run_for(total, Duration::from_millis(20), |w| {
        let now = w.now;
        let requests = w
            .publisher
            .events
            .iter()
            .filter(|e| matches!(e, Event::KeyframeRequest(_)))
            .count();
        key_due |= requests > seen_requests;
        seen_requests = requests;
        let tick = (now - base).as_millis() as u64 / 20;
        write_frame(
            &mut w.publisher,
            audio,
            Codec::Opus,
            now,
            MediaTime::new(tick * 960, Frequency::FORTY_EIGHT_KHZ),
            &[0xf8, 0xff, 0xfe],
        );
        if n.is_multiple_of(2) {
            let key = std::mem::take(&mut key_due);
            let mut frame = vec![
                if key { 0x10 } else { 0x11 },
                0x02,
                0x00,
                0x9d,
                0x01,
                0x2a,
                0x40,
                0x01,
                0xf0,
                0x00,
            ];
            // Small frames: the congestion controller toward the subscriber
            // starts at 1 Mbit/s, and this network delivers in 20 ms bursts.
            frame.extend(std::iter::repeat_n(0x55u8, 600));
            write_frame(
                &mut w.publisher,
                video,
                Codec::Vp8,
                now,
                MediaTime::new(tick * 1800, Frequency::NINETY_KHZ),
                &frame,
            );
        }
        n += 1;
    });
    seen_requests
}

#[test]
fn audio_and_video_reach_the_subscriber() {
    let mut w = World::new();
    let (publisher, mids) = offer_from_publisher(&mut w, &[MediaKind::Audio, MediaKind::Video]);
    // ICE and DTLS complete within simulated time.
    w.idle(Duration::from_millis(2000));
    assert!(
        w.core_events.contains(&MediaEvent::Connected(publisher)),
        "publisher never connected"
    );
    let sub = subscribe_all(&mut w, publisher);
    w.idle(Duration::from_millis(2000));
    assert!(
        w.core_events.contains(&MediaEvent::Connected(sub)),
        "subscriber never connected"
    );

    let (audio, video) = (mids[0], mids[1]);
    let seen_requests = publish_for(&mut w, audio, video, Duration::from_secs(3));

    let received = |kind: MediaKind| {
        w.subscriber
            .events
            .iter()
            .filter(|e| matches!(e, Event::MediaData(d) if w.subscriber.rtc.media(d.mid).map(|m| m.kind()) == Some(kind)))
            .count()
    };
    let (audio_frames, video_frames) = (received(MediaKind::Audio), received(MediaKind::Video));
    assert!(
        audio_frames >= 100,
        "subscriber got {audio_frames} of 150 audio frames"
    );
    assert!(
        video_frames >= 50,
        "subscriber got {video_frames} of 75 video frames"
    );
    // Nothing reaches the subscriber before the first keyframe, then everything.
    let first = w.subscriber.events.iter().find_map(|e| match e {
        Event::MediaData(d) if w.subscriber.rtc.media(d.mid).map(|m| m.kind()) == Some(MediaKind::Video) => {
            Some(d.data[0])
        }
        _ => None,
    });
    assert_eq!(
        first.map(|b| b & 0x01),
        Some(0),
        "the first forwarded video frame is not a keyframe"
    );
    let started = w
        .core_events
        .iter()
        .filter(|e| matches!(e, MediaEvent::DowntrackStarted { peer, .. } if *peer == sub))
        .count();
    assert_eq!(started, 2, "one DowntrackStarted per forwarded track");
    let c = w.core.counters();
    assert!(c.rtp_forwarded > 200, "forwarded {} packets", c.rtp_forwarded);
    assert!(
        c.keyframe_requests_sent >= 1,
        "no keyframe was requested for the new subscriber"
    );
    assert!(
        seen_requests >= 1,
        "the publisher never received the keyframe request"
    );
}

/// Transport-wide congestion control numbers video packets only, in both
/// directions: the core's answer leaves it out of the publisher's audio
/// section, its offer out of the subscriber's, and the audio the subscriber
/// receives carries no transport-wide sequence number while video does.
#[test]
fn transport_wide_sequence_numbers_go_on_video_only() {
    const TWCC: &str = "transport-wide-cc-extensions-01";
    let mut w = World::new();
    let (publisher, mids) = offer_from_publisher(&mut w, &[MediaKind::Audio, MediaKind::Video]);
    let in_section = |sdp: &str, kind: &str| {
        let start = sdp.find(&format!("m={kind} ")).expect("section");
        let end = sdp[start + 2..].find("m=").map_or(sdp.len(), |e| start + 2 + e);
        sdp[start..end].contains(TWCC)
    };
    let answer = w.answer_to_publisher.clone();
    assert!(
        !in_section(&answer, "audio"),
        "audio keeps TWCC in the answer:\n{answer}"
    );
    assert!(
        in_section(&answer, "video"),
        "video lost TWCC in the answer:\n{answer}"
    );
    w.idle(Duration::from_millis(2000));
    let sub = subscribe_all(&mut w, publisher);
    w.idle(Duration::from_millis(2000));
    assert!(w.core_events.contains(&MediaEvent::Connected(sub)));
    publish_for(&mut w, mids[0], mids[1], Duration::from_secs(2));

    let twcc_numbered = |kind: MediaKind| {
        let data: Vec<bool> = w
            .subscriber
            .events
            .iter()
            .filter_map(|e| match e {
                Event::MediaData(d) if w.subscriber.rtc.media(d.mid).map(|m| m.kind()) == Some(kind) => {
                    Some(d.ext_vals.transport_cc.is_some())
                }
                _ => None,
            })
            .collect();
        assert!(data.len() >= 20, "only {} {kind:?} frames arrived", data.len());
        (data.iter().all(|n| *n), data.iter().any(|n| *n))
    };
    assert_eq!(
        twcc_numbered(MediaKind::Audio),
        (false, false),
        "audio carries TWCC numbers"
    );
    assert_eq!(
        twcc_numbered(MediaKind::Video),
        (true, true),
        "video lacks TWCC numbers"
    );
}

/// With every tenth datagram toward the subscriber lost, the subscriber asks
/// for the missing video packets (NACK) and the core resends them from its
/// cache on the RTX payload type. (Each video frame here is one packet with
/// the marker bit, so a resend is an RTX packet with the marker bit; the
/// core's bandwidth probes are RTX padding without it.)
#[test]
fn lost_packets_toward_the_subscriber_are_resent() {
    let mut w = World::new();
    let (publisher, mids) = offer_from_publisher(&mut w, &[MediaKind::Audio, MediaKind::Video]);
    w.idle(Duration::from_millis(2000));
    let sub = subscribe_all(&mut w, publisher);
    w.idle(Duration::from_millis(2000));
    assert!(w.core_events.contains(&MediaEvent::Connected(sub)));
    let vp8 = w
        .subscriber
        .rtc
        .codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == Codec::Vp8)
        .copied()
        .expect("the subscriber negotiated VP8");
    let (video_pt, rtx_pt) = (*vp8.pt(), *vp8.resend().expect("VP8 with RTX"));
    w.lose_to_subscriber = Some(10);
    publish_for(&mut w, mids[0], mids[1], Duration::from_secs(4));
    w.lose_to_subscriber = None;
    w.idle(Duration::from_millis(500));
    let count = |v: &[Option<(bool, u8)>], want: (bool, u8)| v.iter().filter(|x| **x == Some(want)).count();
    let lost_video = count(&w.lost, (true, video_pt));
    let resent = count(&w.rtp_to_subscriber, (true, rtx_pt)) - count(&w.lost, (true, rtx_pt));
    let nacks = w.core.counters().nacks_received;
    assert!(lost_video >= 5, "only {lost_video} video packets were lost");
    assert!(nacks > 0, "the subscriber's NACKs never reached the core");
    assert!(
        resent * 4 >= lost_video * 3,
        "{resent} resends delivered for {lost_video} lost video packets ({nacks} NACKs)"
    );
}

#[test]
fn a_removed_publisher_stops_forwarding_and_renegotiates() {
    let mut w = World::new();
    let (publisher, _) = offer_from_publisher(&mut w, &[MediaKind::Audio]);
    w.idle(Duration::from_millis(2000));
    let sub = subscribe_all(&mut w, publisher);
    // A second subscriber that receives nothing of it.
    let other = w.core.add_peer(w.now, Role::Subscriber);
    assert!(
        w.core.create_offer(other).expect("offer").is_some(),
        "data channels"
    );
    w.idle(Duration::from_millis(1000));
    // Only the connection that carried the publisher's track needs an offer.
    assert_eq!(w.core.remove_peer(publisher), vec![sub]);
    assert_eq!(
        w.core.remove_peer(other),
        Vec::new(),
        "a listener's leave changes no one"
    );
    // The subscriber's media section goes inactive in the next offer.
    let offer = w
        .core
        .create_offer(sub)
        .expect("offer")
        .expect("the removal needs an offer");
    assert!(
        offer.contains("a=inactive"),
        "the forwarded section is not switched off:\n{offer}"
    );
    assert_eq!(w.core.peer_count(), 1);
}

/// Opus payloads pass through untouched and in order, the downtrack is
/// announced once under the track id given to `subscribe`, and a disabled
/// downtrack forwards nothing until it is enabled again.
#[test]
fn audio_passes_through_and_stops_while_disabled() {
    let mut w = World::new();
    let (publisher, mids) = offer_from_publisher(&mut w, &[MediaKind::Audio]);
    w.idle(Duration::from_millis(2000));
    let source = w
        .core_events
        .iter()
        .find_map(|e| match e {
            MediaEvent::TrackAdded {
                peer,
                mid,
                kind: conclave_media::Kind::Audio,
                track_id,
                rids,
            } if *peer == publisher => {
                assert_eq!(track_id, "cid-Audio", "the msid track id is the client's");
                assert!(rids.is_empty());
                Some(mid.clone())
            }
            _ => None,
        })
        .expect("TrackAdded for the audio section");
    let sub = subscribe_all(&mut w, publisher);
    w.idle(Duration::from_millis(2000));
    assert!(w.core_events.contains(&MediaEvent::Connected(sub)));

    let audio = mids[0];
    let mut n: u64 = 0;
    let mut written: Vec<Vec<u8>> = Vec::new();
    let mut send = |w: &mut World, written: &mut Vec<Vec<u8>>| {
        // Every frame distinct, to check order and content.
        let payload = vec![0xfc, (n >> 8) as u8, n as u8, 0x42];
        let now = w.now;
        write_frame(
            &mut w.publisher,
            audio,
            Codec::Opus,
            now,
            MediaTime::new(n * 960, Frequency::FORTY_EIGHT_KHZ),
            &payload,
        );
        written.push(payload);
        n += 1;
    };
    w.run_for(Duration::from_secs(2), Duration::from_millis(20), |w| {
        send(w, &mut written)
    });
    let received = |w: &World| -> Vec<Vec<u8>> {
        w.subscriber
            .events
            .iter()
            .filter_map(|e| match e {
                Event::MediaData(d) => Some(d.data.to_vec()),
                _ => None,
            })
            .collect()
    };
    let got = received(&w);
    assert!(got.len() >= 90, "subscriber got {} of 100 frames", got.len());
    // What arrives is a contiguous, unchanged run of what was sent (the jitter
    // buffer may hold the newest frames back).
    let first = written
        .iter()
        .position(|p| *p == got[0])
        .expect("the first received frame was never sent");
    assert_eq!(got.as_slice(), &written[first..first + got.len()]);
    let started: Vec<&MediaEvent> = w
        .core_events
        .iter()
        .filter(|e| matches!(e, MediaEvent::DowntrackStarted { .. }))
        .collect();
    assert_eq!(
        started,
        vec![&MediaEvent::DowntrackStarted {
            peer: sub,
            track_id: "TR_0".into()
        }]
    );
    let forwarded = w.core.counters().rtp_forwarded;
    assert!(forwarded >= 90, "forwarded {forwarded}");

    // Disabled: nothing is forwarded however much the publisher sends.
    w.core
        .set_downtrack(sub, publisher, &source, false, conclave_media::Quality::High);
    let before = received(&w).len();
    w.run_for(Duration::from_secs(1), Duration::from_millis(20), |w| {
        send(w, &mut written)
    });
    assert_eq!(
        w.core.counters().rtp_forwarded,
        forwarded,
        "a disabled downtrack forwarded"
    );
    assert!(
        received(&w).len() <= before + 5,
        "frames kept arriving while disabled"
    );

    // Enabled again: forwarding resumes, without a second DowntrackStarted.
    w.core
        .set_downtrack(sub, publisher, &source, true, conclave_media::Quality::High);
    let resumed_at = received(&w).len();
    w.run_for(Duration::from_secs(1), Duration::from_millis(20), |w| {
        send(w, &mut written)
    });
    assert!(w.core.counters().rtp_forwarded >= forwarded + 45);
    assert!(received(&w).len() >= resumed_at + 40, "forwarding did not resume");
    assert_eq!(
        w.core_events
            .iter()
            .filter(|e| matches!(e, MediaEvent::DowntrackStarted { .. }))
            .count(),
        1
    );

    // Muted at the source (by a moderator): nothing reaches any subscriber,
    // whatever the publisher keeps sending.
    w.core.set_muted(publisher, &source, true);
    let forwarded = w.core.counters().rtp_forwarded;
    let before = received(&w).len();
    w.run_for(Duration::from_secs(1), Duration::from_millis(20), |w| {
        send(w, &mut written)
    });
    assert_eq!(
        w.core.counters().rtp_forwarded,
        forwarded,
        "a muted track was forwarded"
    );
    assert!(
        received(&w).len() <= before + 5,
        "frames kept arriving while muted"
    );

    // Unmuted by its owner: forwarding resumes, in order and unchanged.
    w.core.set_muted(publisher, &source, false);
    let resumed_at = received(&w).len();
    w.run_for(Duration::from_secs(1), Duration::from_millis(20), |w| {
        send(w, &mut written)
    });
    let got = received(&w);
    assert!(
        got.len() >= resumed_at + 40,
        "forwarding did not resume after unmute"
    );
    let tail = &got[resumed_at + 5..];
    let first = written
        .iter()
        .position(|p| *p == tail[0])
        .expect("a received frame was never sent");
    assert_eq!(tail, &written[first..first + tail.len()]);
}

/// A forwarded packet leaves the core in the same round as the packet that
/// brought it: the core itself runs the timers its connections ask for at
/// the latest input (the pacer, to release what was just written), so the
/// caller's timer granularity is not added to every packet's delay.
#[test]
fn a_forwarded_packet_leaves_without_waiting_for_a_timer() {
    let mut w = World::new();
    let (publisher, mids) = offer_from_publisher(&mut w, &[MediaKind::Audio]);
    w.idle(Duration::from_millis(2000));
    let sub = subscribe_all(&mut w, publisher);
    w.idle(Duration::from_millis(2000));
    assert!(w.core_events.contains(&MediaEvent::Connected(sub)));
    let audio = mids[0];
    let rtp_sent = |w: &World| w.rtp_to_subscriber.iter().filter(|r| r.is_some()).count();
    let mut both_released = 0;
    for round in 0..20u64 {
        // Time moves for the publisher only: the core gets its packets and
        // no timeout.
        w.now += Duration::from_millis(40);
        let before = rtp_sent(&w);
        for n in [2 * round, 2 * round + 1] {
            w.now += Duration::from_millis(1);
            let now = w.now;
            w.publisher
                .rtc
                .handle_input(Input::Timeout(now))
                .expect("client timeout");
            write_frame(
                &mut w.publisher,
                audio,
                Codec::Opus,
                now,
                MediaTime::new(n * 960, Frequency::FORTY_EIGHT_KHZ),
                &[0xfc, n as u8, 0x42],
            );
            w.settle();
        }
        if rtp_sent(&w) >= before + 2 {
            both_released += 1;
        }
    }
    // The pacer may still hold a packet back now and then (probing, its
    // budget); that is its job, and not what this is about.
    assert!(
        both_released >= 15,
        "both frames forwarded at once in only {both_released} of 20 rounds"
    );
}
