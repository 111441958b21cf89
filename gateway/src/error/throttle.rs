//! Warnings that can come once per request — every request shed, every delivery failing
//! while the broker is away — are logged at most once a second per kind, with the number
//! left out since the last one. A line per refused request would make an overload or an
//! outage worse: formatting and writing it costs about as much as the refusal itself.
//! Exact counts are in `hookgate_requests_total`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// At most one line per kind in this interval.
const INTERVAL: Duration = Duration::from_secs(1);

/// One kind of warning: when it was last logged and how many were left out since.
pub(super) struct Throttle {
    /// Intervals since the process's first throttled warning, plus one; 0: never logged.
    logged: AtomicU64,
    skipped: AtomicU64,
}

impl Throttle {
    pub(super) const fn new() -> Throttle {
        Throttle {
            logged: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// `Some(n)` if a line is due at `now` (`n` were left out since the last one), `None`
    /// if this one is to be left out.
    pub(super) fn admit(&self, now: Instant) -> Option<u64> {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        let epoch = *EPOCH.get_or_init(|| now);
        let tick = now.saturating_duration_since(epoch).as_nanos() / INTERVAL.as_nanos() + 1;
        let tick = u64::try_from(tick).unwrap_or(u64::MAX);
        let last = self.logged.load(Ordering::Relaxed);
        if last < tick
            && self
                .logged
                .compare_exchange(last, tick, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.skipped.swap(0, Ordering::Relaxed))
        } else {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_then_the_count_of_those_left_out() {
        let throttle = Throttle::new();
        let t0 = Instant::now();
        assert_eq!(throttle.admit(t0), Some(0));
        for _ in 0..3 {
            assert_eq!(throttle.admit(t0), None);
        }
        assert_eq!(throttle.admit(t0 + INTERVAL), Some(3));
        assert_eq!(throttle.admit(t0 + INTERVAL), None);
        assert_eq!(throttle.admit(t0 + 5 * INTERVAL), Some(1));
    }
}
