//! The synthetic media a publisher sends: Opus-sized audio at 50 packets/s
//! and VP8 at 30 frames/s per simulcast layer, each payload stamped with its
//! send time (microseconds since the run's base instant) and a counter.

use std::time::{Duration, Instant};

use conclave_client::synth::{audio_payload, vp8_frame};

/// Bytes of one audio packet (Opus at about 32 kbit/s, 20 ms).
pub const AUDIO_BYTES: usize = 100;
/// Largest RTP payload.
pub const MTU: usize = 1_200;

/// Whether a received payload of `len` bytes is audio: the synthetic audio
/// packets have a size no video packet has (see the test below), which
/// tells them apart the same way for every target.
pub fn is_audio_payload(len: usize) -> bool {
    len == AUDIO_BYTES
}
const AUDIO_EVERY: Duration = Duration::from_millis(20);
/// In silence, Opus with discontinuous transmission (on by default in
/// LiveKit's clients) sends one frame every 400 ms: every 20th slot.
const DTX_SLOTS: u64 = 20;
/// How long a turn of talking lasts when publishers take turns.
pub const TURN: Duration = Duration::from_secs(2);
/// The audio level of a silent frame (-127 dBov).
const SILENCE: i8 = -127;
const FRAME_EVERY: Duration = Duration::from_micros(33_333);
const KEYFRAME_EVERY: Duration = Duration::from_secs(3);

/// A simulcast layer: its rid and bitrate in bits per second.
#[derive(Debug, Clone, Copy)]
pub struct LayerPlan {
    pub rid: &'static str,
    pub bitrate: u32,
}

/// LiveKit's three layers at realistic rates.
pub const SIMULCAST: [LayerPlan; 3] = [
    LayerPlan {
        rid: "q",
        bitrate: 150_000,
    },
    LayerPlan {
        rid: "h",
        bitrate: 500_000,
    },
    LayerPlan {
        rid: "f",
        bitrate: 2_500_000,
    },
];

/// Who talks when: publishers take turns of [`TURN`], `talkers` of the
/// `publishers` at a time; the others are silent, and send a frame every
/// 400 ms as Opus does with discontinuous transmission.
#[derive(Debug, Clone, Copy)]
pub struct Talk {
    pub index: usize,
    pub publishers: usize,
    pub talkers: usize,
}

impl Talk {
    /// Talking all the time.
    pub fn always() -> Self {
        Self {
            index: 0,
            publishers: 1,
            talkers: 1,
        }
    }

    /// Whether this publisher talks `since` the schedule started.
    fn talking(&self, since: Duration) -> bool {
        if self.talkers >= self.publishers {
            return true;
        }
        let turn = (since.as_millis() / TURN.as_millis()) as usize;
        let first = (turn * self.talkers) % self.publishers;
        (self.index + self.publishers - first) % self.publishers < self.talkers
    }
}

/// One packet to send.
#[derive(Debug)]
pub struct Outgoing {
    /// `audio` or `video`.
    pub cid: &'static str,
    pub rid: Option<&'static str>,
    /// The index of its layer in the source's plan (video only).
    pub layer: Option<usize>,
    pub timestamp: u32,
    pub marker: bool,
    pub audio_level: Option<i8>,
    pub payload: Vec<u8>,
}

/// The sending schedule of one publisher.
pub struct Source {
    audio: bool,
    talk: Talk,
    layers: Vec<LayerPlan>,
    base: Instant,
    start: Instant,
    next_audio: Instant,
    next_frame: Instant,
    next_key: Instant,
    audio_n: u64,
    frame_n: u64,
    key_due: bool,
    counter: u64,
}

impl Source {
    /// A publisher that sends audio (if `audio`, talking as `talk` says)
    /// and the given video layers from `now`; stamps count from `base`.
    pub fn new(audio: bool, talk: Talk, layers: Vec<LayerPlan>, base: Instant, now: Instant) -> Self {
        Self {
            audio,
            talk,
            layers,
            base,
            start: now,
            next_audio: now,
            next_frame: now,
            next_key: now + KEYFRAME_EVERY,
            audio_n: 0,
            frame_n: 0,
            key_due: true,
            counter: 0,
        }
    }

    /// The video layers it sends, lowest first.
    pub fn layers(&self) -> &[LayerPlan] {
        &self.layers
    }

    /// Whether it sends video.
    pub fn has_video(&self) -> bool {
        !self.layers.is_empty()
    }

    /// Starts the schedule again at `now` (when publishing begins), with a
    /// keyframe first.
    pub fn start_at(&mut self, now: Instant) {
        self.start = now;
        self.next_audio = now;
        self.next_frame = now;
        self.next_key = now + KEYFRAME_EVERY;
        self.audio_n = 0;
        self.frame_n = 0;
        self.key_due = true;
    }

    /// When packets are next due.
    pub fn next_wake(&self) -> Instant {
        match (self.audio, self.layers.is_empty()) {
            (true, false) => self.next_audio.min(self.next_frame),
            (true, true) => self.next_audio,
            (false, _) => self.next_frame,
        }
    }

    /// A keyframe was asked for: the next frame of every layer is one.
    pub fn keyframe(&mut self) {
        self.key_due = true;
    }

    /// Every packet due by `now`.
    pub fn due(&mut self, now: Instant) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let micros = now.duration_since(self.base).as_micros() as u64;
        while self.audio && self.next_audio <= now {
            self.counter += 1;
            let talking = self.talk.talking(AUDIO_EVERY * self.audio_n as u32);
            out.push(Outgoing {
                cid: "audio",
                rid: None,
                layer: None,
                timestamp: (self.audio_n * 960) as u32,
                marker: false,
                audio_level: Some(if talking { -25 } else { SILENCE }),
                payload: audio_payload(AUDIO_BYTES, micros, self.counter),
            });
            // The next 20 ms slot while talking; in silence the 20th, or
            // the first where talking starts again.
            let mut step = 1;
            while step < DTX_SLOTS && !self.talk.talking(AUDIO_EVERY * (self.audio_n + step) as u32) {
                step += 1;
            }
            self.audio_n += step;
            self.next_audio = self.start + AUDIO_EVERY * self.audio_n as u32;
        }
        while !self.layers.is_empty() && self.next_frame <= now {
            let key = std::mem::take(&mut self.key_due) || now >= self.next_key;
            if key {
                self.next_key = now + KEYFRAME_EVERY;
            }
            let timestamp = (self.frame_n * 3_000) as u32;
            for (index, layer) in self.layers.iter().enumerate() {
                self.counter += 1;
                let bytes = (layer.bitrate / 8 / 30) as usize;
                let packets = vp8_frame(key, bytes, MTU, self.frame_n as u16, micros, self.counter);
                let last = packets.len().saturating_sub(1);
                for (i, payload) in packets.into_iter().enumerate() {
                    out.push(Outgoing {
                        cid: "video",
                        rid: (self.layers.len() > 1).then_some(layer.rid),
                        layer: Some(index),
                        timestamp,
                        marker: i == last,
                        audio_level: None,
                        payload,
                    });
                }
            }
            self.frame_n += 1;
            self.next_frame = self.start + FRAME_EVERY * self.frame_n as u32;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_second_has_the_planned_rates() {
        let t0 = Instant::now();
        let mut s = Source::new(true, Talk::always(), SIMULCAST.to_vec(), t0, t0);
        let mut all = Vec::new();
        let mut now = t0;
        while now < t0 + Duration::from_secs(1) {
            all.extend(s.due(now));
            now += Duration::from_millis(5);
        }
        let audio = all.iter().filter(|o| o.cid == "audio").count();
        assert_eq!(audio, 50);
        for layer in SIMULCAST {
            let bits: usize = all
                .iter()
                .filter(|o| o.rid == Some(layer.rid))
                .map(|o| o.payload.len() * 8)
                .sum();
            let want = layer.bitrate as usize;
            assert!(
                bits > want * 9 / 10 && bits < want * 12 / 10,
                "{}: {bits} bit/s",
                layer.rid
            );
        }
        // The first frame of each layer is a keyframe.
        let first = all.iter().find(|o| o.rid == Some("f")).expect("video");
        assert_eq!(first.payload[4] & 0x01, 0);
    }

    /// Ten publishers taking turns with one talker: each talks one turn in
    /// ten at 50 packets/s and is otherwise silent at 2.5 packets/s; one
    /// talks at any moment; timestamps keep pace with the clock.
    #[test]
    fn publishers_take_turns_and_are_otherwise_silent() {
        let t0 = Instant::now();
        let total = TURN * 10;
        let mut sources: Vec<Source> = (0..10)
            .map(|index| {
                let talk = Talk {
                    index,
                    publishers: 10,
                    talkers: 1,
                };
                Source::new(true, talk, Vec::new(), t0, t0)
            })
            .collect();
        let mut sent: Vec<Vec<(Instant, Outgoing)>> = (0..10).map(|_| Vec::new()).collect();
        let mut now = t0;
        while now < t0 + total {
            for (i, s) in sources.iter_mut().enumerate() {
                sent[i].extend(s.due(now).into_iter().map(|o| (now, o)));
            }
            now += Duration::from_millis(5);
        }
        for (i, packets) in sent.iter().enumerate() {
            let loud = packets.iter().filter(|(_, o)| o.audio_level == Some(-25)).count();
            assert_eq!(loud, 100, "publisher {i} talked {loud} packets");
            let silent = packets.len() - loud;
            assert!(
                (44..=47).contains(&silent),
                "publisher {i}: {silent} silent packets"
            );
            for (at, o) in packets {
                let ms = u64::from(o.timestamp) / 48;
                let elapsed = at.duration_since(t0).as_millis() as u64;
                assert!(
                    elapsed.abs_diff(ms) <= 5,
                    "publisher {i}: timestamp {ms} ms at {elapsed} ms"
                );
            }
        }
        for turn in 0..10u32 {
            let at = TURN * turn + TURN / 2;
            let talking = sources.iter().filter(|s| s.talk.talking(at)).count();
            assert_eq!(talking, 1, "turn {turn}");
        }
    }

    /// Audio is told from video by its size alone, on every layer and
    /// for keyframes too.
    #[test]
    fn audio_payloads_have_a_size_no_video_payload_has() {
        let t0 = Instant::now();
        for layers in [SIMULCAST.to_vec(), vec![SIMULCAST[0]], vec![SIMULCAST[2]]] {
            let mut s = Source::new(true, Talk::always(), layers, t0, t0);
            let mut now = t0;
            let (mut audio, mut video) = (0, 0);
            while now < t0 + Duration::from_secs(4) {
                if now >= t0 + Duration::from_secs(2) {
                    s.keyframe();
                }
                for o in s.due(now) {
                    let is_audio = o.cid == "audio";
                    assert_eq!(
                        is_audio_payload(o.payload.len()),
                        is_audio,
                        "{} bytes",
                        o.payload.len()
                    );
                    if is_audio {
                        audio += 1;
                    } else {
                        video += 1;
                    }
                }
                now += Duration::from_millis(5);
            }
            assert!(
                audio >= 200 && video >= 120,
                "{audio} audio, {video} video packets"
            );
        }
    }
}
