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

/// Keeps VP8 PictureID and TL0PICIDX continuous across source switches, as
/// the sequence numbers are.
#[derive(Debug, Clone, Default)]
pub struct Vp8Rewriter {
    pid_offset: u16,
    tl0_offset: u8,
    last_pid: Option<u16>,
    last_tl0: Option<u8>,
}

impl Vp8Rewriter {
    /// Continues after the last forwarded values with the new source's
    /// first packet.
    pub fn switch_source(&mut self, ids: crate::keyframe::Vp8Ids) {
        if let (Some((pid, _)), Some(last)) = (ids.picture_id, self.last_pid) {
            self.pid_offset = last.wrapping_add(1).wrapping_sub(pid);
        }
        if let (Some(tl0), Some(last)) = (ids.tl0_pic_idx, self.last_tl0) {
            self.tl0_offset = last.wrapping_add(1).wrapping_sub(tl0);
        }
    }

    /// The outgoing PictureID (in the packet's own width) and TL0PICIDX.
    pub fn rewrite(&mut self, ids: crate::keyframe::Vp8Ids) -> (Option<u16>, Option<u8>) {
        let pid = ids.picture_id.map(|(pid, wide)| {
            let mask = if wide { 0x7fff } else { 0x7f };
            let out = pid.wrapping_add(self.pid_offset) & mask;
            self.last_pid = Some(out);
            out
        });
        let tl0 = ids.tl0_pic_idx.map(|t| {
            let out = t.wrapping_add(self.tl0_offset);
            self.last_tl0 = Some(out);
            out
        });
        (pid, tl0)
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
    fn vp8_ids_continue_across_a_switch() {
        use crate::keyframe::Vp8Ids;
        let ids = |pid: u16, tl0: u8| Vp8Ids {
            picture_id: Some((pid, true)),
            tl0_pic_idx: Some(tl0),
        };
        let mut r = Vp8Rewriter::default();
        r.switch_source(ids(100, 7));
        assert_eq!(r.rewrite(ids(100, 7)), (Some(100), Some(7)));
        assert_eq!(r.rewrite(ids(101, 8)), (Some(101), Some(8)));
        // Another layer numbers its pictures differently.
        r.switch_source(ids(0x7ffe, 250));
        assert_eq!(r.rewrite(ids(0x7ffe, 250)), (Some(102), Some(9)));
        // PictureID wraps in its 15 bits.
        assert_eq!(r.rewrite(ids(0x7fff, 251)), (Some(103), Some(10)));
        assert_eq!(r.rewrite(ids(0, 252)), (Some(104), Some(11)));
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
