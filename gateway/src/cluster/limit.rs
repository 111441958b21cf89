//! A hook's rate limit over the whole fleet: the same GCRA as [`crate::ratelimit`], its
//! one number (the theoretical arrival time) kept in Redis and updated by a script in one
//! round trip, on Redis's clock so that replicas' clocks need not agree.
//!
//! A replica does not go to Redis for every request. It takes a few cells at once (a
//! [`Lease`], kept with the hook's limiter): what it expects to use in the next 10 ms, at most 10 ms of the hook's rate
//! and a share of its burst), and spends them locally; the cells are debited from the
//! fleet's limit when taken, so a lease can never let the fleet past its limit. Cells
//! not spent within 50 ms are dropped (a replica whose traffic stopped gives up at most
//! 10 ms of the rate). At low rates a lease is one cell, one round trip per request; at
//! thousands of requests a second the round trips are a hundredth of the requests.

use std::time::Duration;

use super::{Cluster, Down};
use crate::ratelimit::{Lease, Rate};

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
