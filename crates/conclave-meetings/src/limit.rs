//! Limits on guessing meeting ids and passcodes: failures counted per
//! source address (IPv6 by /64) in a fixed window. Time is an argument.

use std::collections::HashMap;
use std::net::IpAddr;

/// Failures allowed per source in one window.
pub const MAX_FAILURES: u32 = 30;
/// The window, in seconds.
pub const WINDOW_SECS: i64 = 15 * 60;
/// Sources remembered at most; the oldest windows go first.
const MAX_SOURCES: usize = 100_000;

/// The part of an address that counts as one source.
pub fn source_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[derive(Debug, Default)]
pub struct Limiter {
    windows: HashMap<IpAddr, (i64, u32)>,
}

impl Limiter {
    /// `Some(seconds)` to wait when `addr` may not try now.
    pub fn blocked(&self, addr: IpAddr, now: i64) -> Option<i64> {
        let (start, n) = self.windows.get(&source_key(addr))?;
        (now < start + WINDOW_SECS && *n >= MAX_FAILURES).then(|| start + WINDOW_SECS - now)
    }

    /// Counts a failed attempt from `addr`.
    pub fn fail(&mut self, addr: IpAddr, now: i64) {
        if self.windows.len() >= MAX_SOURCES {
            self.windows.retain(|_, (start, _)| now < *start + WINDOW_SECS);
            if self.windows.len() >= MAX_SOURCES {
                return;
            }
        }
        let w = self.windows.entry(source_key(addr)).or_insert((now, 0));
        if now >= w.0 + WINDOW_SECS {
            *w = (now, 0);
        }
        w.1 = w.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_block_a_source_and_its_v6_neighbours_until_the_window_ends() {
        let mut l = Limiter::default();
        let a: IpAddr = "2001:db8:1:2::5".parse().expect("addr");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("addr");
        let c: IpAddr = "2001:db8:1:3::5".parse().expect("addr");
        for i in 0..MAX_FAILURES {
            assert_eq!(l.blocked(a, 100), None, "{i}");
            l.fail(if i % 2 == 0 { a } else { b }, 100);
        }
        assert_eq!(l.blocked(a, 100), Some(WINDOW_SECS));
        assert!(l.blocked(b, 200).is_some());
        assert_eq!(l.blocked(c, 200), None);
        assert_eq!(l.blocked(a, 100 + WINDOW_SECS), None);
    }
}
