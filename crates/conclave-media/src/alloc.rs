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
    /// Bit rate that layer costs (0 when nothing is measured yet).
    pub rate: u64,
}

/// Gives every track its lowest usable layer, then raises tracks one layer
/// at a time, in the order given (higher priority first), while the budget
/// allows. A track whose layers are not measured yet keeps its wish: there
/// is nothing to base a cut on. No track is paused; the lowest layer is the
/// floor.
pub fn allocate(budget: u64, demands: &[Demand]) -> Vec<Grant> {
    let mut grants: Vec<Grant> = demands
        .iter()
        .map(|d| match d.usable().next() {
            Some((q, r)) => Grant { cap: q, rate: r },
            None => Grant { cap: d.max, rate: 0 },
        })
        .collect();
    let mut used: u64 = grants.iter().map(|g| g.rate).sum();
    loop {
        let mut raised = false;
        for (d, g) in demands.iter().zip(grants.iter_mut()) {
            let Some((q, r)) = d.usable().find(|(q, _)| *q > g.cap) else {
                continue;
            };
            let extra = r.saturating_sub(g.rate);
            if used + extra <= budget {
                used += extra;
                *g = Grant { cap: q, rate: r };
                raised = true;
            }
        }
        if !raised {
            return grants;
        }
    }
}

/// The bit rate worth probing for: every track at its best usable layer.
pub fn desired(demands: &[Demand]) -> u64 {
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
    fn the_lowest_layer_is_the_floor() {
        let g = allocate(10_000, &[demand(Quality::High)]);
        assert_eq!(g[0].cap, Quality::Low);
    }

    #[test]
    fn stopped_layers_are_skipped_and_unmeasured_tracks_keep_their_wish() {
        let d = Demand {
            max: Quality::High,
            layers: [Some(150_000), None, Some(2_500_000)],
        };
        assert_eq!(allocate(3_000_000, &[d])[0].cap, Quality::High);
        assert_eq!(allocate(1_000_000, &[d])[0].cap, Quality::Low);
        let unknown = Demand {
            max: Quality::Medium,
            layers: [None; 3],
        };
        assert_eq!(allocate(0, &[unknown])[0].cap, Quality::Medium);
    }

    #[test]
    fn desired_rate_is_the_sum_of_best_layers() {
        assert_eq!(desired(&[demand(Quality::High), demand(Quality::Low)]), 2_650_000);
    }
}
