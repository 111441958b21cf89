//! A hook's rate limit over the whole fleet: the same GCRA as [`crate::ratelimit`], its
//! one number (the theoretical arrival time) kept in Redis and updated by a script in one
//! round trip, on Redis's clock so that replicas' clocks need not agree.
//!
//! A replica does not go to Redis for every request. It takes a few cells at once (a
//! [`Lease`]: what it expects to use in the next 10 ms, at most 10 ms of the hook's rate
//! and a share of its burst), and spends them locally; the cells are debited from the
//! fleet's limit when taken, so a lease can never let the fleet past its limit. Cells
//! not spent within 50 ms are dropped (a replica whose traffic stopped gives up at most
//! 10 ms of the rate). At low rates a lease is one cell, one round trip per request; at
//! thousands of requests a second the round trips are a hundredth of the requests.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Cluster, Down};
use crate::ratelimit::Rate;

/// KEYS: the hook's arrival time. ARGV: microseconds between requests at the rate, how
/// far ahead of now the arrival time may run ((burst - 1) intervals), the cells wanted.
/// Returns `{granted, wait}`: the cells taken (as many as fit, up to the number wanted),
/// and when none fit, the microseconds until one would.
///
/// Times are microseconds since the epoch as Lua numbers (doubles: exact to well below a
/// microsecond for centuries), stored with three decimals so that a rate whose interval
/// is not a whole number of microseconds does not drift.
pub(super) const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local room = math.floor((tolerance - (tat - now)) / interval) + 1
if room < 1 then
  return {0, math.ceil(tat - now - tolerance)}
end
local granted = math.min(wanted, room)
local after = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%.3f', after), 'PX', math.ceil((after - now) / 1000) + 1000)
return {granted, 0}
";

/// How far ahead a lease looks: the cells a replica takes at once are what it used in
/// this long, at most this long of the hook's rate.
const LEASE_AHEAD: f64 = 0.010;
/// Cells not spent within this long are dropped.
const LEASE_TTL: Duration = Duration::from_millis(50);
/// The window over which a replica measures its own demand.
const DEMAND_WINDOW: Duration = Duration::from_millis(100);

/// A hook's cells taken from the fleet's limit and not yet spent, and this replica's
/// demand, which sizes the next lease.
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
    fn spend(&self, rate: Rate, replicas: u32) -> Result<(), u32> {
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
    fn keep(&self, spare: u32) {
        if spare == 0 {
            return;
        }
        let mut s = self.0.lock().expect("lease lock");
        s.cells += spare;
        s.expires = Instant::now() + LEASE_TTL;
    }
}

impl Cluster {
    /// Charges one request to `hook`'s limit over the fleet, from its `lease` or with a
    /// new one: `Ok(Err(wait))` when it is refused, `Err(Down)` when Redis cannot decide
    /// (the caller applies its share).
    pub async fn charge(
        &self,
        hook: &str,
        rate: Rate,
        lease: &Lease,
    ) -> Result<Result<(), Duration>, Down> {
        let (mut conn, _) = self.usable()?;
        let wanted = match lease.spend(rate, self.replicas()) {
            Ok(()) => return Ok(Ok(())),
            Err(wanted) => wanted,
        };
        let interval = 1e6 / rate.per_second;
        let tolerance = interval * f64::from(rate.burst.get() - 1);
        let result: Result<(u32, u64), _> = self
            .gcra
            .key(self.limit_key(hook))
            .arg(interval)
            .arg(tolerance)
            .arg(wanted)
            .invoke_async(&mut conn)
            .await;
        match result {
            Ok((0, wait)) => Ok(Err(Duration::from_micros(wait.max(1)))),
            Ok((granted, _)) => {
                lease.keep(granted - 1);
                Ok(Ok(()))
            }
            Err(e) => {
                self.failed("rate limit", &e);
                Err(Down)
            }
        }
    }

    fn limit_key(&self, hook: &str) -> String {
        format!("{}:limit:{hook}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
