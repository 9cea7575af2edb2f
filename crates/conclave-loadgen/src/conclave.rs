//! Participants of a Conclave room: native clients that publish the
//! synthetic media or receive and measure it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use conclave_client::MediaKind;
use conclave_client::driver::App;
use conclave_client::synth::read_stamp;
use conclave_client::{Client, ClientEvent, Packet};
use conclave_types::TrackSid;
use livekit_protocol::VideoQuality;

use crate::measure::Receiver;
use crate::media::Source;

/// Publishes once its tracks are negotiated, until `until`.
pub struct Publisher {
    pub source: Source,
    pending: usize,
    until: Instant,
}

impl Publisher {
    /// `tracks` is how many tracks it publishes (it starts when all are).
    pub fn new(source: Source, tracks: usize, until: Instant) -> Self {
        Self {
            source,
            pending: tracks,
            until,
        }
    }
}

impl App for Publisher {
    fn on_event(&mut self, _now: Instant, event: &ClientEvent, _client: &mut Client) {
        match event {
            ClientEvent::Published { .. } => self.pending = self.pending.saturating_sub(1),
            ClientEvent::KeyframeRequest { .. } => self.source.keyframe(),
            _ => {}
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        (self.pending == 0).then(|| self.source.next_wake())
    }

    fn on_wake(&mut self, now: Instant, client: &mut Client) {
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
    }

    fn done(&self) -> bool {
        Instant::now() >= self.until
    }
}

/// Receives every track and measures it. Asks `first` quality for the first
/// video track it sees and `rest` for the others.
pub struct Subscriber {
    pub recv: Receiver,
    base: Instant,
    measure_from: Instant,
    until: Instant,
    first: VideoQuality,
    rest: VideoQuality,
    asked: HashSet<TrackSid>,
}

impl Subscriber {
    pub fn new(
        base: Instant,
        measure_from: Instant,
        until: Instant,
        first: VideoQuality,
        rest: VideoQuality,
    ) -> Self {
        Self {
            recv: Receiver::default(),
            base,
            measure_from,
            until,
            first,
            rest,
            asked: HashSet::new(),
        }
    }
}

impl App for Subscriber {
    fn on_event(&mut self, _now: Instant, event: &ClientEvent, client: &mut Client) {
        let ClientEvent::Rtp {
            kind,
            track,
            seq,
            payload,
            at,
            ..
        } = event
        else {
            return;
        };
        if let Some(track) = track
            && *kind == MediaKind::Video
            && !self.asked.contains(track)
        {
            let q = if self.asked.is_empty() {
                self.first
            } else {
                self.rest
            };
            client.set_quality(track, q);
            self.asked.insert(track.clone());
        }
        let track = track.as_ref().map_or("", TrackSid::as_str);
        if *at < self.measure_from {
            self.recv.first_packet.get_or_insert(*at);
            return;
        }
        let delay = read_stamp(payload).map(|(sent, _)| {
            at.duration_since(self.base)
                .saturating_sub(Duration::from_micros(sent))
        });
        self.recv.on_packet(track, *seq, payload.len(), delay, *at);
    }

    fn next_wake(&self) -> Option<Instant> {
        Some(self.until)
    }

    fn on_wake(&mut self, _now: Instant, _client: &mut Client) {}

    fn done(&self) -> bool {
        Instant::now() >= self.until
    }
}
