//! Sharing a subscriber's estimated downlink over its video tracks.
//!
//! Pure functions: the media core measures layer bitrates and the
//! congestion controller's estimate, this module decides the highest
//! simulcast layer each track may use.

use crate::Quality;

/// One video track a subscriber receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// The best quality the subscriber asked for.
    pub max: Quality,
    /// Measured bitrate (bit/s) of each layer, Low, Medium, High; `None`
    /// when that layer is not being sent.
    pub layers: [Option<u64>; 3],
}

const QUALITIES: [Quality; 3] = [Quality::Low, Quality::Medium, Quality::High];

impl Demand {
    /// Layers that are sent and not above the wish, lowest first.
    fn usable(&self) -> impl Iterator<Item = (Quality, u64)> + '_ {
        QUALITIES
            .iter()
            .zip(self.layers.iter())
            .filter(|(q, _)| **q <= self.max)
            .filter_map(|(q, r)| r.map(|r| (*q, r)))
    }
}

/// The result for one track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The highest layer the track may use.
    pub cap: Quality,
    /// Bit rate that layer costs (0 when nothing is measured yet or paused).
    pub rate: u64,
    /// Not even the lowest layer fits: send nothing.
    pub paused: bool,
}

/// Gives tracks their lowest usable layer in the order given (higher
/// priority first) while the budget allows and pauses the rest; the first
/// track always keeps its lowest layer, so a link that is merely
/// underestimated never goes dark. Then raises tracks one layer at a time
/// in the same order while the budget allows. A track whose layers are not
/// measured yet (a camera that has just started) gets its lowest layer and
/// costs nothing until the next round has measured it: sending its wish
/// blind would put up to its best layer on a link whose estimate may not
/// carry it, and what the pacer cannot send waits in its queue for seconds.
pub fn allocate(budget: u64, demands: &[Demand]) -> Vec<Grant> {
    let mut used: u64 = 0;
    let mut grants: Vec<Grant> = Vec::with_capacity(demands.len());
    for (i, d) in demands.iter().enumerate() {
        let g = match d.usable().next() {
            Some((q, r)) if i == 0 || used + r <= budget => Grant {
                cap: q,
                rate: r,
                paused: false,
            },
            Some((q, _)) => Grant {
                cap: q,
                rate: 0,
                paused: true,
            },
            None => Grant {
                cap: Quality::Low,
                rate: 0,
                paused: false,
            },
        };
        used += g.rate;
        grants.push(g);
    }
    loop {
        let mut raised = false;
        for (d, g) in demands.iter().zip(grants.iter_mut()) {
            if g.paused {
                continue;
            }
            let Some((q, r)) = d.usable().find(|(q, _)| *q > g.cap) else {
                continue;
            };
            let extra = r.saturating_sub(g.rate);
            if used + extra <= budget {
                used += extra;
                *g = Grant {
                    cap: q,
                    rate: r,
                    paused: false,
                };
                raised = true;
            }
        }
        if !raised {
            return grants;
        }
    }
}

/// How a track forwarded to a subscriber counts against the estimate of
/// its downlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// Audio: it carries no transport-wide sequence numbers (see `sdp.rs`),
    /// so the estimate, made from the numbered packets alone, does not
    /// cover it, and it takes nothing of it.
    Uncounted,
    /// Video of one stream (bit/s): never cut, taken off first.
    Fixed(u64),
    /// Simulcast video: shares what is left.
    Layers(Demand),
}

/// What [`share`] gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shared {
    /// One grant per [`Share::Layers`] track, in their order.
    pub grants: Vec<Grant>,
    /// The rate (bit/s) of what was granted: the congestion controller's
    /// floor.
    pub minimum: u64,
    /// The rate worth probing for: every track at its best usable layer.
    pub desired: u64,
}

/// Shares `estimate` over `tracks`, simulcast tracks in their order (higher
/// priority first), as [`allocate`] does.
pub fn share(estimate: u64, tracks: &[Share]) -> Shared {
    let mut fixed: u64 = 0;
    let mut demands = Vec::new();
    for t in tracks {
        match t {
            Share::Uncounted => {}
            Share::Fixed(rate) => fixed += rate,
            Share::Layers(d) => demands.push(*d),
        }
    }
    let grants = allocate(estimate.saturating_sub(fixed), &demands);
    let minimum = fixed + grants.iter().map(|g| g.rate).sum::<u64>();
    let desired = (fixed + desired(&demands)).max(minimum);
    Shared {
        grants,
        minimum,
        desired,
    }
}

/// The bit rate worth probing for: every track at its best usable layer.
fn desired(demands: &[Demand]) -> u64 {
    demands
        .iter()
        .filter_map(|d| d.usable().last().map(|(_, r)| r))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIMULCAST: [Option<u64>; 3] = [Some(150_000), Some(500_000), Some(2_500_000)];

    fn demand(max: Quality) -> Demand {
        Demand {
            max,
            layers: SIMULCAST,
        }
    }

    #[test]
    fn plenty_of_bandwidth_gives_every_wish() {
        let g = allocate(10_000_000, &[demand(Quality::High), demand(Quality::Medium)]);
        assert_eq!(g[0].cap, Quality::High);
        assert_eq!(g[1].cap, Quality::Medium);
    }

    #[test]
    fn a_weak_link_gets_low_layers_first_track_first() {
        // 1.2 Mbit/s: two tracks at medium (1.0) fit, a high one does not.
        let g = allocate(1_200_000, &[demand(Quality::High), demand(Quality::High)]);
        assert_eq!((g[0].cap, g[1].cap), (Quality::Medium, Quality::Medium));
        // 800 kbit/s: the first track gets medium, the second stays low.
        let g = allocate(800_000, &[demand(Quality::High), demand(Quality::High)]);
        assert_eq!((g[0].cap, g[1].cap), (Quality::Medium, Quality::Low));
    }

    #[test]
    fn the_first_track_keeps_its_lowest_layer_the_others_pause() {
        let g = allocate(10_000, &[demand(Quality::High), demand(Quality::High)]);
        assert_eq!((g[0].cap, g[0].paused), (Quality::Low, false));
        assert!(g[1].paused, "a track that does not fit is paused");
        // With room for two low layers nobody pauses.
        let g = allocate(300_000, &[demand(Quality::High), demand(Quality::High)]);
        assert!(!g[0].paused && !g[1].paused);
        assert_eq!((g[0].cap, g[1].cap), (Quality::Low, Quality::Low));
    }

    #[test]
    fn stopped_layers_are_skipped_and_unmeasured_tracks_start_low() {
        let d = Demand {
            max: Quality::High,
            layers: [Some(150_000), None, Some(2_500_000)],
        };
        assert_eq!(allocate(3_000_000, &[d])[0].cap, Quality::High);
        assert_eq!(allocate(1_000_000, &[d])[0].cap, Quality::Low);
        let unknown = Demand {
            max: Quality::High,
            layers: [None; 3],
        };
        // Not even a generous estimate sends an unmeasured track its wish,
        // and it is never paused: it has nothing to cost yet.
        for budget in [0, 100_000_000] {
            let g = allocate(budget, &[unknown, unknown]);
            assert!(
                g.iter()
                    .all(|g| (g.cap, g.rate, g.paused) == (Quality::Low, 0, false)),
                "{g:?}"
            );
        }
    }

    #[test]
    fn desired_rate_is_the_sum_of_best_layers() {
        assert_eq!(desired(&[demand(Quality::High), demand(Quality::Low)]), 2_650_000);
    }

    #[test]
    fn audio_takes_nothing_of_the_estimate_and_single_streams_go_first() {
        // A meeting's receiver at the initial estimate of 1 Mbit/s: 19
        // audio streams (about 1 Mbit/s, not covered by the estimate) and
        // two simulcast cameras. Both cameras keep their low layer.
        let mut tracks = vec![Share::Uncounted; 19];
        tracks.push(Share::Layers(demand(Quality::High)));
        tracks.push(Share::Layers(demand(Quality::Low)));
        let s = share(1_000_000, &tracks);
        assert_eq!(s.grants.len(), 2);
        assert!(s.grants.iter().all(|g| !g.paused), "{:?}", s.grants);
        assert_eq!(
            (s.grants[0].cap, s.grants[1].cap),
            (Quality::Medium, Quality::Low)
        );
        assert_eq!(s.minimum, 650_000);
        assert_eq!(s.desired, 2_650_000);
        // A single-stream video of 900 kbit/s is taken off first: the
        // second camera no longer fits and pauses.
        tracks.push(Share::Fixed(900_000));
        let s = share(1_000_000, &tracks);
        assert_eq!((s.grants[0].cap, s.grants[0].paused), (Quality::Low, false));
        assert!(s.grants[1].paused);
        assert_eq!((s.minimum, s.desired), (1_050_000, 3_550_000));
    }
}
