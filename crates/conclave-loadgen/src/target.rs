//! What a system under test must offer the load generator: a process whose
//! cost is measured, and participants that join it, publish a [`Source`]
//! and measure what they receive. Conclave, Janus and the ceiling forwarder
//! are targets; another SFU is added by implementing [`Target`] for it.

use std::future::Future;
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use livekit_protocol::VideoQuality;
use tokio::sync::oneshot;

use crate::measure::Receiver;
use crate::media::Source;

/// The measured window of a run and the clock stamps count from.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Stamps in payloads are microseconds since this instant.
    pub base: Instant,
    /// Packets before this count only for the join time.
    pub measure_from: Instant,
    /// Receivers stop here.
    pub until: Instant,
}

/// What one participant receives and measures.
#[derive(Debug, Clone, Copy)]
pub struct Wants {
    /// How many participants publish; they are numbered `0..publishers`.
    pub publishers: usize,
    /// The quality of the first other publisher's video (the one shown
    /// large) and of the others'.
    pub first: VideoQuality,
    pub rest: VideoQuality,
    /// Whether the publishers send video at all.
    pub video: bool,
    /// How many other publishers' video to receive, the first ones (in
    /// the order the participant learns of them); of the rest only audio.
    pub videos: usize,
    pub window: Window,
}

/// What one participant does in a run.
pub struct Plan {
    /// Its number in the run; publishers come first.
    pub index: usize,
    /// The media it publishes, if it publishes.
    pub source: Option<Source>,
    /// What it receives, if it receives.
    pub receive: Option<Wants>,
    /// Told once the participant's first media has left.
    pub publishing: Option<oneshot::Sender<()>>,
    /// A participant that only publishes stops when this is set.
    pub stop: Arc<AtomicBool>,
}

/// What one participant brings back.
#[derive(Debug)]
pub struct Outcome {
    /// When it started to join.
    pub joined_at: Instant,
    /// What it received, if it was to receive.
    pub received: Option<Receiver>,
    /// Times its signalling connection was closed by the target and the
    /// session resumed on a new one.
    pub resumes: u32,
}

/// A participant's run, from joining until it is done.
pub type Joining = Pin<Box<dyn Future<Output = Result<Outcome, String>> + Send + 'static>>;

/// A system under test, running.
pub trait Target: Send + Sync {
    /// The process whose CPU time and memory are its cost.
    fn pid(&self) -> u32;
    /// The UDP ports its media arrives on (loopback), to read its drops:
    /// one port for Conclave and the ceiling, a range for Janus (a socket
    /// per peer connection).
    fn media_ports(&self) -> RangeInclusive<u16>;
    /// What it logged, to explain a failure.
    fn log(&self) -> String;
    /// One participant joins and follows `plan`.
    fn join(&self, plan: Plan) -> Joining;
}
