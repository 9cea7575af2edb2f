//! Conclave as a target: a `conclave serve` process on loopback, and
//! participants that are native clients publishing the synthetic media or
//! receiving and measuring it.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use conclave_client::driver::{App, run};
use conclave_client::server_process::ServerProcess;
use conclave_client::synth::read_stamp;
use conclave_client::{Client, ClientEvent, MediaKind, Packet, TrackSpec};
use conclave_types::TrackSid;
use tokio::sync::oneshot;

use crate::measure::Receiver;
use crate::media::Source;
use crate::target::{Joining, Outcome, Plan, Target, Wants};

/// A Conclave server started for one run, with one room for everyone.
pub struct ConclaveTarget {
    server: ServerProcess,
    room: String,
}

impl ConclaveTarget {
    /// Starts `binary` on loopback, on `cpu` when given.
    pub fn start(binary: &Path, cpu: Option<usize>) -> Result<Self, String> {
        // Pinned to one CPU, one engine; otherwise one per core.
        let workers = if cpu.is_some() { "1" } else { "0" };
        let server = ServerProcess::start_on(binary, &[("CONCLAVE_MEDIA_WORKERS", workers)], cpu)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            server,
            room: format!("bench-{}", std::process::id()),
        })
    }
}

impl Target for ConclaveTarget {
    fn pid(&self) -> u32 {
        self.server.pid()
    }

    fn media_ports(&self) -> std::ops::RangeInclusive<u16> {
        self.server.udp_port..=self.server.udp_port + self.server.media_workers.saturating_sub(1)
    }

    fn log(&self) -> String {
        self.server.log()
    }

    fn join(&self, plan: Plan) -> Joining {
        let token = self.server.token(&self.room, &format!("p{}", plan.index));
        let url = self.server.url.clone();
        Box::pin(async move {
            let token = token.map_err(|e| e.to_string())?;
            let joined_at = Instant::now();
            let mut tracks = Vec::new();
            if let Some(source) = &plan.source {
                tracks.push(TrackSpec::audio("audio"));
                if source.has_video() {
                    tracks.push(TrackSpec::simulcast_camera("video"));
                }
            }
            let mut app = Member::new(plan, tracks.len());
            run(&url, &token, IpAddr::V4(Ipv4Addr::LOCALHOST), tracks, &mut app)
                .await
                .map_err(|e| format!("participant {}: {e}", app.index))?;
            Ok(Outcome {
                joined_at,
                received: app.sub.map(|s| s.recv),
                resumes: app.resumes,
            })
        })
    }
}

/// A participant: publishes, receives, or both.
struct Member {
    index: usize,
    publ: Option<Publisher>,
    sub: Option<Subscriber>,
    stop: Arc<AtomicBool>,
    /// Signalling connections resumed after the server closed them.
    resumes: u32,
}

impl Member {
    fn new(plan: Plan, tracks: usize) -> Self {
        let Plan {
            index,
            source,
            receive,
            publishing,
            stop,
        } = plan;
        Self {
            index,
            publ: source.map(|source| Publisher {
                source,
                pending: tracks,
                publishing,
            }),
            sub: receive.map(Subscriber::new),
            stop,
            resumes: 0,
        }
    }
}

impl App for Member {
    fn on_event(&mut self, now: Instant, event: &ClientEvent, client: &mut Client) {
        if let ClientEvent::Resumed = event {
            self.resumes += 1;
        }
        if let Some(p) = &mut self.publ {
            p.on_event(now, event);
        }
        if let Some(s) = &mut self.sub {
            s.on_event(event, client);
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let a = self.publ.as_ref().and_then(Publisher::next_wake);
        let b = self.sub.as_ref().map(|s| s.wants.window.until);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_wake(&mut self, now: Instant, client: &mut Client) {
        if let Some(p) = &mut self.publ
            && p.next_wake().is_some_and(|w| w <= now)
        {
            p.send(now, client);
        }
    }

    fn done(&self) -> bool {
        match &self.sub {
            Some(s) => Instant::now() >= s.wants.window.until,
            None => self.stop.load(Ordering::Relaxed),
        }
    }
}

/// Sends the source's packets once every track is negotiated; answers
/// keyframe requests with keyframes (str0m answers NACKs from its cache).
struct Publisher {
    source: Source,
    /// Tracks not yet negotiated.
    pending: usize,
    publishing: Option<oneshot::Sender<()>>,
}

impl Publisher {
    fn on_event(&mut self, now: Instant, event: &ClientEvent) {
        match event {
            ClientEvent::Published { .. } => {
                self.pending = self.pending.saturating_sub(1);
                if self.pending == 0 {
                    self.source.start_at(now);
                }
            }
            ClientEvent::KeyframeRequest { .. } => self.source.keyframe(),
            _ => {}
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        (self.pending == 0).then(|| self.source.next_wake())
    }

    fn send(&mut self, now: Instant, client: &mut Client) {
        for o in self.source.due(now) {
            let _ = client.write_rtp(
                now,
                Packet {
                    cid: o.cid,
                    rid: o.rid,
                    timestamp: o.timestamp,
                    marker: o.marker,
                    audio_level: o.audio_level,
                    payload: o.payload,
                },
            );
        }
        if let Some(tx) = self.publishing.take() {
            let _ = tx.send(());
        }
    }
}

/// Receives every track and measures it. As the server offers video
/// tracks, asks the `first` quality for the first and `rest` for the
/// others, up to `wants.videos` of them, and asks the server not to send
/// those beyond (they stay subscribed); counts what still arrives of them.
/// Deciding when a track is offered, before its media flows, is what a
/// client showing the last N speakers does.
struct Subscriber {
    recv: Receiver,
    wants: Wants,
    asked: HashSet<TrackSid>,
    hidden: HashSet<TrackSid>,
}

impl Subscriber {
    fn new(wants: Wants) -> Self {
        Self {
            recv: Receiver::default(),
            wants,
            asked: HashSet::new(),
            hidden: HashSet::new(),
        }
    }

    fn on_event(&mut self, event: &ClientEvent, client: &mut Client) {
        match event {
            ClientEvent::Offered {
                kind: MediaKind::Video,
                track,
                ..
            } => self.on_video_offered(track, client),
            ClientEvent::Rtp {
                track,
                seq,
                payload,
                at,
                ..
            } => self.on_rtp(track.as_ref(), *seq, payload, *at),
            _ => {}
        }
    }

    fn on_video_offered(&mut self, track: &TrackSid, client: &mut Client) {
        if self.asked.contains(track) || self.hidden.contains(track) {
            return;
        }
        if self.asked.len() >= self.wants.videos {
            client.disable(track);
            self.hidden.insert(track.clone());
            return;
        }
        let q = if self.asked.is_empty() {
            self.wants.first
        } else {
            self.wants.rest
        };
        client.set_quality(track, q);
        self.asked.insert(track.clone());
    }

    fn on_rtp(&mut self, track: Option<&TrackSid>, seq: u64, payload: &[u8], at: Instant) {
        let window = self.wants.window;
        if track.is_some_and(|t| self.hidden.contains(t)) {
            if (window.measure_from..window.until).contains(&at) {
                self.recv.unwanted += 1;
            }
            return;
        }
        if at < window.measure_from {
            self.recv.first_packet.get_or_insert(at);
            return;
        }
        if at >= window.until {
            return;
        }
        let delay = read_stamp(payload).map(|(sent, _)| {
            at.duration_since(window.base)
                .saturating_sub(Duration::from_micros(sent))
        });
        let track = track.map_or("", TrackSid::as_str);
        self.recv.on_packet(track, seq, payload.len(), delay, at);
    }
}
