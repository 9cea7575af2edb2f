//! The publisher answers NACKs like a real client: video packets lost on the
//! way to the server are asked for again and resent over RTX.
//!
//! Sans-IO, on a simulated clock: the client's publisher connection talks
//! to a str0m peer standing in for the server (ICE-lite, RTP mode, as the
//! server's is), and the test plays the server's signalling and loses some
//! of the client's video packets.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conclave_client::synth::vp8_frame;
use conclave_client::{Client, ClientEvent, Output, Packet, Pc, TrackSpec};
use livekit_protocol as lk;
use lk::signal_request::Message as Req;
use lk::signal_response::Message as Resp;
use prost::Message;
use str0m::change::SdpOffer;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output as RtcOutput, Rtc};

/// The payload type of `codec` and of its RTX in an SDP.
fn payload_types(sdp: &str, codec: &str) -> (u8, u8) {
    let pt = sdp
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("a=rtpmap:")?;
            let (pt, name) = rest.split_once(' ')?;
            name.starts_with(codec).then(|| pt.parse().ok()).flatten()
        })
        .expect("the codec is offered");
    let rtx = sdp
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("a=fmtp:")?;
            let (rtx, params) = rest.split_once(' ')?;
            (params == format!("apt={pt}"))
                .then(|| rtx.parse().ok())
                .flatten()
        })
        .expect("RTX is offered for the codec");
    (pt, rtx)
}

fn response(m: Resp) -> Vec<u8> {
    lk::SignalResponse { message: Some(m) }.encode_to_vec()
}

#[test]
fn lost_video_packets_are_resent_over_rtx() {
    let start = Instant::now();
    let mut now = start;
    let client_pub: SocketAddr = "127.0.0.1:40000".parse().expect("address");
    let client_sub: SocketAddr = "127.0.0.1:40001".parse().expect("address");
    let server_addr: SocketAddr = "127.0.0.1:7882".parse().expect("address");
    let mut server = Rtc::builder()
        .set_rtp_mode(true)
        .set_ice_lite(true)
        .enable_opus(true, false)
        .build(now);
    server.add_local_candidate(Candidate::host(server_addr, "udp").expect("candidate"));
    let mut client = Client::new(now, client_pub, client_sub);
    client.publish(TrackSpec::simulcast_camera("video"));
    client
        .handle_signal(
            now,
            &response(Resp::Join(lk::JoinResponse {
                ping_interval: 5,
                ..Default::default()
            })),
        )
        .expect("join");

    let mut vp8: Option<(u8, u8)> = None;
    let mut publishing = false;
    let mut next_frame = now;
    let mut frame: u64 = 0;
    // Sequence numbers of VP8 packets lost on the way, and the ones that
    // arrived (first time or resent), by SSRC.
    let mut lost: HashMap<u32, BTreeSet<u16>> = HashMap::new();
    let mut arrived: HashMap<u32, BTreeSet<u16>> = HashMap::new();
    let mut rtx_seen = 0usize;
    let mut video_sent = 0usize;
    let mut to_client: VecDeque<Vec<u8>> = VecDeque::new();

    while now < start + Duration::from_secs(6) {
        // The client's outputs.
        let client_wake = loop {
            match client.poll_output() {
                Output::Signal(req) => match req.message {
                    Some(Req::AddTrack(a)) => {
                        let published = response(Resp::TrackPublished(lk::TrackPublishedResponse {
                            cid: a.cid.clone(),
                            track: Some(lk::TrackInfo {
                                sid: format!("TR_{}", a.cid),
                                ..Default::default()
                            }),
                        }));
                        client.handle_signal(now, &published).expect("track published");
                    }
                    Some(Req::Offer(sd)) => {
                        vp8 = Some(payload_types(&sd.sdp, "VP8/90000"));
                        let offer = SdpOffer::from_sdp_string(&sd.sdp).expect("an SDP offer");
                        let answer = server
                            .sdp_api()
                            .accept_offer(offer)
                            .expect("the offer is accepted");
                        let answer = response(Resp::Answer(lk::SessionDescription {
                            r#type: "answer".into(),
                            sdp: answer.to_sdp_string(),
                            ..Default::default()
                        }));
                        client.handle_signal(now, &answer).expect("answer");
                    }
                    _ => {}
                },
                Output::Transmit {
                    pc: Pc::Publisher,
                    contents,
                    ..
                } => {
                    // RTP (not RTCP) of the VP8 payload type, not its RTX.
                    let rtp = contents.len() > 12 && (128..192).contains(&contents[0]);
                    let pt = contents.get(1).map(|b| b & 0x7f);
                    let is_vp8 = rtp && vp8.is_some_and(|(v, _)| pt == Some(v)) && contents[1] < 192;
                    if rtp && vp8.is_some_and(|(_, r)| pt == Some(r)) {
                        rtx_seen += 1;
                    }
                    if is_vp8 {
                        video_sent += 1;
                        // From the second second to the fourth, one in ten is lost.
                        let lossy =
                            now > start + Duration::from_secs(2) && now < start + Duration::from_secs(4);
                        if lossy && video_sent.is_multiple_of(10) {
                            let seq = u16::from_be_bytes([contents[2], contents[3]]);
                            let ssrc =
                                u32::from_be_bytes([contents[8], contents[9], contents[10], contents[11]]);
                            lost.entry(ssrc).or_default().insert(seq);
                            continue;
                        }
                    }
                    let recv =
                        Receive::new(Protocol::Udp, client_pub, server_addr, &contents).expect("a datagram");
                    server
                        .handle_input(Input::Receive(now, recv))
                        .expect("server input");
                }
                Output::Transmit { .. } => {}
                Output::Event(ClientEvent::Published { .. }) => publishing = true,
                Output::Event(_) => {}
                Output::Timeout(t) => break t,
            }
        };
        // The server's outputs.
        let server_wake = loop {
            match server.poll_output().expect("server output") {
                RtcOutput::Timeout(t) => break t,
                RtcOutput::Transmit(t) => to_client.push_back(t.contents.into()),
                RtcOutput::Event(Event::RtpPacket(p)) => {
                    arrived
                        .entry(*p.header.ssrc)
                        .or_default()
                        .insert(p.header.sequence_number);
                }
                RtcOutput::Event(_) => {}
            }
        };
        while let Some(d) = to_client.pop_front() {
            client.handle_datagram(now, Pc::Publisher, server_addr, &d);
        }
        // Media: one frame of each layer every 33 ms once published.
        if publishing && now >= next_frame {
            for rid in ["q", "h", "f"] {
                let packets = vp8_frame(frame.is_multiple_of(90), 3_000, 1_200, frame as u16, 0, frame);
                let last = packets.len() - 1;
                for (i, payload) in packets.into_iter().enumerate() {
                    client
                        .write_rtp(
                            now,
                            Packet {
                                cid: "video",
                                rid: Some(rid),
                                timestamp: (frame * 3000) as u32,
                                marker: i == last,
                                audio_level: None,
                                payload,
                            },
                        )
                        .expect("the track is published");
                }
            }
            frame += 1;
            next_frame += Duration::from_micros(33_333);
            continue;
        }
        let mut wake = client_wake.min(server_wake);
        if publishing {
            wake = wake.min(next_frame);
        }
        now = wake.max(now + Duration::from_micros(100));
        client.handle_timeout(now);
        server.handle_input(Input::Timeout(now)).expect("server timeout");
    }

    assert!(publishing, "the track was never published");
    let lost_total: usize = lost.values().map(BTreeSet::len).sum();
    assert!(
        lost_total >= 20,
        "too few packets were lost to test: {lost_total}"
    );
    assert!(rtx_seen > 0, "no RTX packet was sent");
    let repaired: usize = lost
        .iter()
        .map(|(ssrc, seqs)| {
            let got = arrived.get(ssrc);
            seqs.iter().filter(|s| got.is_some_and(|g| g.contains(s))).count()
        })
        .sum();
    // Losses end two seconds before the test does: every one is asked for and resent.
    assert_eq!(
        repaired, lost_total,
        "{repaired} of {lost_total} lost packets were resent (RTX packets seen: {rtx_seen})"
    );
}
