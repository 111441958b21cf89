//! A hook's rate limit over the whole fleet: the same GCRA as [`crate::ratelimit`], its
//! one number (the theoretical arrival time) kept in Redis and updated by a script in one
//! round trip, on Redis's clock so that replicas' clocks need not agree.

use std::time::Duration;

use super::{Cluster, Down};
use crate::ratelimit::Rate;

/// KEYS: the hook's arrival time. ARGV: microseconds between requests at the rate, how
/// far ahead of now the arrival time may run ((burst - 1) intervals). Returns 0 when the
/// request passes, otherwise the microseconds until one would.
///
/// Times are microseconds since the epoch as Lua numbers (doubles: exact to well below a
/// microsecond for centuries), stored with three decimals so that a rate whose interval
/// is not a whole number of microseconds does not drift.
pub(super) const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > tolerance then
  return math.ceil(tat - now - tolerance)
end
local after = tat + interval
redis.call('SET', KEYS[1], string.format('%.3f', after), 'PX', math.ceil((after - now) / 1000) + 1000)
return 0
";

impl Cluster {
    /// Charges one request to `hook`'s limit over the fleet: `Ok(Err(wait))` when it is
    /// refused, `Err(Down)` when Redis cannot decide (the caller applies its share).
    pub async fn charge(&self, hook: &str, rate: Rate) -> Result<Result<(), Duration>, Down> {
        let (mut conn, _) = self.usable()?;
        let interval = 1e6 / rate.per_second;
        let tolerance = interval * f64::from(rate.burst.get() - 1);
        let result: Result<u64, _> = self
            .gcra
            .key(self.limit_key(hook))
            .arg(interval)
            .arg(tolerance)
            .invoke_async(&mut conn)
            .await;
        match result {
            Ok(0) => Ok(Ok(())),
            Ok(wait) => Ok(Err(Duration::from_micros(wait))),
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
