//! Sequence number and timestamp rewriting for one outgoing stream.
//!
//! A subscriber sees one continuous RTP stream per track even when the
//! server switches between simulcast layers (each with its own sequence
//! numbers and timestamp base) or when a publisher restarts its stream.

use std::time::Instant;

/// Rewrites the sequence numbers and timestamps of forwarded packets.
#[derive(Debug, Clone)]
pub struct Rewriter {
    clock_rate: u32,
    state: Option<State>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    /// Added to the extended incoming sequence number.
    seq_offset: u64,
    /// Added (wrapping) to the incoming RTP timestamp.
    ts_offset: u32,
    /// Lowest extended incoming sequence number accepted from the current source.
    min_in_seq: u64,
    last_out_seq: u64,
    last_out_ts: u32,
    last_sent_at: Instant,
}

/// The rewritten header values of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    pub seq: u64,
    pub timestamp: u32,
}

/// First outgoing sequence number. Below 2^16 so that the receiver's
/// rollover counter starts at zero without out-of-band signalling.
const FIRST_OUT_SEQ: u64 = 1;

impl Rewriter {
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            state: None,
        }
    }

    /// Starts forwarding from a new source (first packet, or a layer switch).
    /// `in_seq` and `in_ts` are the first packet of the new source.
    pub fn switch_source(&mut self, in_seq: u64, in_ts: u32, now: Instant) {
        let (next_seq, next_ts) = match self.state {
            None => (FIRST_OUT_SEQ, in_ts),
            Some(s) => {
                // Advance the timestamp by the wall time since the last packet,
                // at least one tick so the new frame is distinct.
                let elapsed = now.saturating_duration_since(s.last_sent_at);
                let ticks = (elapsed.as_secs_f64() * f64::from(self.clock_rate)).round();
                let ticks = (ticks as u64).clamp(1, u64::from(u32::MAX / 2)) as u32;
                (s.last_out_seq + 1, s.last_out_ts.wrapping_add(ticks))
            }
        };
        let (last_out_seq, last_out_ts) = match self.state {
            None => (next_seq.wrapping_sub(1), next_ts),
            Some(s) => (s.last_out_seq, s.last_out_ts),
        };
        self.state = Some(State {
            seq_offset: next_seq.wrapping_sub(in_seq),
            ts_offset: next_ts.wrapping_sub(in_ts),
            min_in_seq: in_seq,
            last_out_seq,
            last_out_ts,
            last_sent_at: now,
        });
    }

    /// Whether a source was chosen.
    pub fn is_started(&self) -> bool {
        self.state.is_some()
    }

    /// Rewrites one packet of the current source. `None` for a packet from
    /// before the current source began (it would collide with packets
    /// already sent).
    pub fn rewrite(&mut self, in_seq: u64, in_ts: u32, now: Instant) -> Option<Rewritten> {
        let s = self.state.as_mut()?;
        if in_seq < s.min_in_seq {
            return None;
        }
        let seq = in_seq.wrapping_add(s.seq_offset);
        let timestamp = in_ts.wrapping_add(s.ts_offset);
        if seq > s.last_out_seq {
            s.last_out_seq = seq;
            s.last_out_ts = timestamp;
            s.last_sent_at = now;
        }
        Some(Rewritten { seq, timestamp })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn continuous_across_switch() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        assert!(r.rewrite(5, 100, t0).is_none());
        r.switch_source(50_000, 1_000_000, t0);
        let a = r.rewrite(50_000, 1_000_000, t0).expect("first");
        assert_eq!(a.seq, 1);
        assert_eq!(a.timestamp, 1_000_000);
        let b = r.rewrite(50_001, 1_003_000, t0).expect("second");
        assert_eq!(b.seq, 2);
        // Switch to another layer 100 ms later, with unrelated numbering.
        let t1 = t0 + Duration::from_millis(100);
        r.switch_source(7, 42, t1);
        let c = r.rewrite(7, 42, t1).expect("after switch");
        assert_eq!(c.seq, 3);
        assert_eq!(c.timestamp, 1_003_000 + 9_000);
        // A late packet of the new source from before the switch is dropped.
        assert!(r.rewrite(6, 40, t1).is_none());
        // Reordered packets of the current source keep their relative order.
        let d = r.rewrite(9, 42, t1).expect("ahead");
        let e = r.rewrite(8, 42, t1).expect("late");
        assert_eq!((d.seq, e.seq), (5, 4));
    }

    #[test]
    fn timestamp_wraps() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(48_000);
        r.switch_source(1, u32::MAX - 10, t0);
        let a = r.rewrite(2, 5, t0).expect("wrapped");
        assert_eq!(a.timestamp, 5);
    }
}
