//! Rate limits: a per-hook limit (governor's GCRA), charged only once a request is
//! authenticated so forged floods cannot spend a real sender's quota; and an optional
//! per-client limit within a hook, keyed by client IP or a header and checked before the
//! body is read, whose keyed store is capped so attacker-chosen keys cannot grow memory.
//!
//! With `[cluster] redis` the per-hook limit is the fleet's ([`crate::cluster::limit`]):
//! a hook then keeps a [`Lease`] of cells taken from it, and its share of the rate
//! (rate / replicas) for while Redis cannot answer.
//!
//! Refusals carry the wait until the next request would pass, for `Retry-After`.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// A sustained rate and a burst, as a limiter is made from: at most [`Rate::MAX`]
/// requests per second, a burst of at least one (checked when the config is built).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: NonZeroU32,
}

impl Rate {
    /// The fastest rate a limit may have.
    pub const MAX: f64 = 1e6;

    /// A rate of `per_second` (above 0, at most [`Rate::MAX`]) with `burst`, or with one
    /// second's worth when `burst` is `None`; `None` if either is out of range.
    pub fn new(per_second: f64, burst: Option<u32>) -> Option<Rate> {
        if !(per_second.is_finite() && per_second > 0.0 && per_second <= Rate::MAX) {
            return None;
        }
        let burst = burst.unwrap_or_else(|| per_second.ceil().max(1.0) as u32);
        Some(Rate {
            per_second,
            burst: NonZeroU32::new(burst)?,
        })
    }

    pub fn quota(&self) -> Quota {
        let period = Duration::from_secs_f64(1.0 / self.per_second);
        Quota::with_period(period)
            .expect("a rate of at most 1e6 per second has a period above zero")
            .allow_burst(self.burst)
    }
}

/// A hook's limiter. Generic over the clock so tests can drive time.
pub struct HookLimiter<C: Clock = DefaultClock> {
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    clock: C,
}

impl<C: Clock> fmt::Debug for HookLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HookLimiter")
    }
}

impl HookLimiter<DefaultClock> {
    pub fn new(quota: Quota) -> Self {
        Self::with_clock(quota, DefaultClock::default())
    }
}

impl<C: Clock + Clone> HookLimiter<C> {
    pub fn with_clock(quota: Quota, clock: C) -> Self {
        HookLimiter {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
        }
    }

    /// Takes one request's worth; `Err` is how long until one would pass.
    pub fn check(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// A per-client limiter with a hard cap on the number of clients it tracks.
///
/// Each client's state is one GCRA "theoretical arrival time". When the store is full,
/// clients whose state has decayed (they are back at a full burst, the same as unknown)
/// are dropped first; if that frees too little, the map is cleared, which hands every
/// tracked client a fresh burst. Memory stays at `capacity` entries whatever the keys.
pub struct ClientLimiter {
    /// Nanoseconds between requests at the sustained rate.
    interval: u64,
    /// How far ahead of now a client's arrival time may run: (burst - 1) intervals.
    tolerance: u64,
    capacity: usize,
    shards: Vec<Mutex<HashMap<u64, u64>>>,
    hasher: std::collections::hash_map::RandomState,
    epoch: std::time::Instant,
}

impl fmt::Debug for ClientLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientLimiter({} clients max)", self.capacity)
    }
}

const SHARDS: usize = 16;

impl ClientLimiter {
    pub fn new(per_second: f64, burst: u32, capacity: usize) -> ClientLimiter {
        let interval = (1e9 / per_second).max(1.0) as u64;
        ClientLimiter {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.max(1) - 1)),
            capacity: capacity.max(SHARDS),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            epoch: std::time::Instant::now(),
        }
    }

    /// Clients tracked now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().expect("limiter lock").len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks `key` at the current time.
    pub fn check(&self, key: &[u8]) -> Result<(), Duration> {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.check_at(key, now)
    }

    /// Checks `key` at `now` (nanoseconds since the limiter's epoch).
    pub fn check_at(&self, key: &[u8], now: u64) -> Result<(), Duration> {
        let hash = self.hasher.hash_one(key);
        let shard = &self.shards[(hash as usize) % SHARDS];
        let mut map = shard.lock().expect("limiter lock");
        let tat = map.get(&hash).copied().unwrap_or(now).max(now);
        if tat - now > self.tolerance {
            return Err(Duration::from_nanos(tat - now - self.tolerance));
        }
        let per_shard = self.capacity / SHARDS;
        if map.len() >= per_shard && !map.contains_key(&hash) {
            map.retain(|_, t| *t > now);
            if map.len() >= per_shard {
                map.clear();
            }
        }
        map.insert(hash, tat + self.interval);
        Ok(())
    }
}

/// How far ahead a lease looks: the cells a replica takes at once are what it used in
/// this long, at most this long of the hook's rate.
const LEASE_AHEAD: f64 = 0.010;
/// Cells not spent within this long are dropped.
const LEASE_TTL: Duration = Duration::from_millis(50);
/// The window over which a replica measures its own demand.
const DEMAND_WINDOW: Duration = Duration::from_millis(100);

/// A hook's cells taken from the fleet's limit (`[cluster] redis`, see
/// [`crate::cluster::limit`]) and not yet spent, and this replica's demand, which sizes
/// the next lease.
#[derive(Debug)]
pub struct Lease(Mutex<LeaseState>);

#[derive(Debug)]
struct LeaseState {
    cells: u32,
    expires: Instant,
    window_start: Instant,
    seen: u32,
    /// Requests per second at the last full window.
    demand: f64,
}

impl Default for Lease {
    fn default() -> Lease {
        let now = Instant::now();
        Lease(Mutex::new(LeaseState {
            cells: 0,
            expires: now,
            window_start: now,
            seen: 0,
            demand: 0.0,
        }))
    }
}

impl Lease {
    /// Spends a leased cell if one is left; otherwise how many cells to ask for.
    pub fn spend(&self, rate: Rate, replicas: u32) -> Result<(), u32> {
        let now = Instant::now();
        let mut s = self.0.lock().expect("lease lock");
        let elapsed = now.duration_since(s.window_start);
        if elapsed >= DEMAND_WINDOW {
            s.demand = f64::from(s.seen) / elapsed.as_secs_f64();
            s.window_start = now;
            s.seen = 0;
        }
        s.seen += 1;
        if s.cells > 0 && now < s.expires {
            s.cells -= 1;
            return Ok(());
        }
        s.cells = 0;
        // What this replica would use in LEASE_AHEAD, within LEASE_AHEAD of the rate and
        // half of its share of the burst.
        let by_rate = rate.per_second * LEASE_AHEAD;
        let by_burst = f64::from(rate.burst.get()) / f64::from(2 * replicas.max(1));
        let size = (s.demand * LEASE_AHEAD).min(by_rate).min(by_burst).floor();
        Err((size as u32).max(1))
    }

    /// Keeps the cells of a lease beyond the one its request spends.
    pub fn keep(&self, spare: u32) {
        if spare == 0 {
            return;
        }
        let mut s = self.0.lock().expect("lease lock");
        s.cells += spare;
        s.expires = Instant::now() + LEASE_TTL;
    }
}

/// Whole seconds for `Retry-After`, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    u64::try_from(wait.as_nanos().div_ceil(1_000_000_000))
        .unwrap_or(u64::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    /// Offers `offered` requests per second, evenly, for `seconds`, and counts admissions.
    fn admitted(per_second: f64, burst: u32, offered: u32, seconds: u32) -> u32 {
        let quota = Rate::new(per_second, Some(burst)).unwrap().quota();
        let clock = FakeRelativeClock::default();
        let limiter = HookLimiter::with_clock(quota, clock.clone());
        let step = Duration::from_secs(1) / offered;
        let mut ok = 0;
        for _ in 0..offered * seconds {
            if limiter.check().is_ok() {
                ok += 1;
            }
            clock.advance(step);
        }
        ok
    }

    #[test]
    fn admits_burst_plus_rate_times_time_under_three_times_the_load() {
        for (n, b, t) in [
            (10.0, 20, 30),
            (100.0, 50, 10),
            (1000.0, 2000, 5),
            (2.5, 5, 60),
        ] {
            let offered = (3.0 * n) as u32;
            let got = f64::from(admitted(n, b, offered, t));
            let expected = f64::from(b) + n * f64::from(t);
            assert!(
                (got - expected).abs() <= expected * 0.05,
                "N={n} B={b} T={t}: admitted {got}, expected {expected} ± 5%"
            );
        }
    }

    #[test]
    fn a_refusal_says_how_long_to_wait() {
        let quota = Rate::new(0.5, Some(1)).unwrap().quota();
        let clock = FakeRelativeClock::default();
        let limiter = HookLimiter::with_clock(quota, clock.clone());
        assert!(limiter.check().is_ok());
        let wait = limiter.check().unwrap_err();
        assert!(
            wait > Duration::from_millis(1900) && wait <= Duration::from_secs(2),
            "{wait:?}"
        );
        assert_eq!(retry_after_secs(wait), 2);
        clock.advance(Duration::from_secs(2));
        assert!(limiter.check().is_ok());
    }

    #[test]
    fn unusable_rates_make_no_limiter() {
        for per_second in [0.0, -1.0, f64::NAN, 1e9] {
            assert!(Rate::new(per_second, None).is_none(), "{per_second}");
        }
        assert!(Rate::new(1.0, Some(0)).is_none());
        assert_eq!(Rate::new(2.5, None).unwrap().burst.get(), 3);
    }

    #[test]
    fn client_limits_are_per_key() {
        let l = ClientLimiter::new(1.0, 2, 1000);
        let s = 1_000_000_000;
        assert!(l.check_at(b"a", 0).is_ok());
        assert!(l.check_at(b"a", 0).is_ok());
        let wait = l.check_at(b"a", 0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        assert!(
            l.check_at(b"b", 0).is_ok(),
            "another client has its own burst"
        );
        assert!(l.check_at(b"a", s).is_ok());
    }

    #[test]
    fn the_keyed_store_stays_within_its_cap() {
        let cap = 10_000;
        let l = ClientLimiter::new(1.0, 1, cap);
        for i in 0..100_000u32 {
            let _ = l.check_at(&i.to_le_bytes(), 0);
            assert!(l.len() <= cap);
        }
        assert!(l.len() <= cap, "{} > {cap}", l.len());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn leases_follow_demand_within_the_rate_and_the_burst() {
        let rate = |per_second, burst| Rate::new(per_second, Some(burst)).unwrap();
        // A first request knows no demand: one cell.
        let lease = Lease::default();
        assert_eq!(lease.spend(rate(1e6, 1_000_000), 3), Err(1));
        // 5,000 requests a second seen over a window: 50 cells, within 10 ms of the rate.
        {
            let mut s = lease.0.lock().unwrap();
            s.demand = 5_000.0;
        }
        assert_eq!(lease.spend(rate(1e6, 1_000_000), 3), Err(50));
        assert_eq!(lease.spend(rate(300.0, 30), 3), Err(3));
        assert_eq!(
            lease.spend(rate(300.0, 6), 3),
            Err(1),
            "half of a burst share"
        );
        // Kept cells are spent before asking again, and expire.
        lease.keep(2);
        assert_eq!(lease.spend(rate(300.0, 30), 3), Ok(()));
        assert_eq!(lease.spend(rate(300.0, 30), 3), Ok(()));
        assert!(lease.spend(rate(300.0, 30), 3).is_err());
        lease.keep(5);
        lease.0.lock().unwrap().expires = Instant::now() - Duration::from_millis(1);
        assert!(
            lease.spend(rate(300.0, 30), 3).is_err(),
            "expired cells are dropped"
        );
    }
}
