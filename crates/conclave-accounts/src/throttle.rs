//! Sign-in throttling: failures counted per key within a window; too many
//! lock the key for a time that doubles while failures go on. Pure
//! functions over [`ThrottleState`]; the caller stores the state.

use conclave_store::ThrottleState;

/// Limits for one kind of key (an account, a source address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleRule {
    /// Failures allowed within `window` seconds before the key locks.
    pub max_failures: i64,
    pub window: i64,
    /// Seconds of the first lock; each further round of failures doubles it.
    pub lock: i64,
}

/// The longest lock, whatever the failures.
pub const MAX_LOCK: i64 = 24 * 3600;

impl ThrottleRule {
    /// Seconds until the key may try again, if it is locked now.
    pub fn locked(&self, state: Option<&ThrottleState>, now: i64) -> Option<i64> {
        let s = state?;
        (s.locked_until > now).then(|| s.locked_until - now)
    }

    /// The state after one more failure, and whether this failure locked the key.
    pub fn fail(&self, state: Option<ThrottleState>, now: i64) -> (ThrottleState, bool) {
        let mut s = state.unwrap_or(ThrottleState {
            failures: 0,
            window_start: now,
            locked_until: 0,
        });
        if s.locked_until <= now {
            let quiet_since = s.window_start.max(s.locked_until);
            let window_passed = s.failures < self.max_failures && now - s.window_start >= self.window;
            if window_passed || now - quiet_since >= MAX_LOCK {
                s = ThrottleState {
                    failures: 0,
                    window_start: now,
                    locked_until: 0,
                };
            }
        }
        s.failures += 1;
        let mut locked_now = false;
        if s.failures >= self.max_failures && (s.failures - self.max_failures) % self.max_failures == 0 {
            let round = ((s.failures - self.max_failures) / self.max_failures).min(16) as u32;
            let lock = self.lock.saturating_mul(1_i64 << round).min(MAX_LOCK);
            s.locked_until = now + lock;
            s.window_start = now;
            locked_now = true;
        }
        (s, locked_now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: ThrottleRule = ThrottleRule {
        max_failures: 5,
        window: 900,
        lock: 900,
    };

    #[test]
    fn locks_after_the_allowed_failures_and_doubles() {
        let mut s = None;
        for i in 1..=4 {
            let (n, locked) = RULE.fail(s, 100 + i);
            assert!(!locked);
            assert_eq!(RULE.locked(Some(&n), 100 + i), None);
            s = Some(n);
        }
        let (n, locked) = RULE.fail(s, 110);
        assert!(locked);
        assert_eq!(RULE.locked(Some(&n), 110), Some(900));
        assert_eq!(RULE.locked(Some(&n), 110 + 900), None);
        // Five more failures after the lock: twice as long.
        let mut s = Some(n);
        for i in 0..5 {
            s = Some(RULE.fail(s, 1_100 + i).0);
        }
        assert_eq!(RULE.locked(s.as_ref(), 1_104), Some(1_800));
    }

    #[test]
    fn a_quiet_window_forgets_failures() {
        let (s, _) = RULE.fail(None, 0);
        let (s, _) = RULE.fail(Some(s), 10);
        let (s, _) = RULE.fail(Some(s), 2_000);
        assert_eq!(s.failures, 1);
    }

    #[test]
    fn the_lock_is_bounded() {
        let mut s = None;
        for i in 0..500 {
            s = Some(RULE.fail(s, i).0);
        }
        assert!(RULE.locked(s.as_ref(), 500).expect("locked") <= MAX_LOCK);
    }
}
