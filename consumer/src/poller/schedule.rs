//! Cron schedules for pollers and flows (Kestra's Schedule trigger, Workato's
//! scheduler): a poller with `schedule` polls at the pattern's ticks, in its time zone,
//! instead of on an interval; a flow with `trigger.schedule` runs at them. Either runs on
//! one replica of the cluster ([`super::cluster`]), and the last tick it stored tells a
//! replica that takes it over whether a tick was missed: with `missed = "run_once"` a
//! missed tick (or several) is made up by one poll or run at once, with `"skip"` (the
//! default) it waits for the next tick.
//!
//! ```toml
//! [[pollers]]
//! id = "weekday-report"
//! schedule = { cron = "0 6 * * MON-FRI", timezone = "Europe/Berlin", missed = "run_once" }
//! uri = "https://reports.example/api/daily"
//! topic = "hookgate.polls"
//!
//! [[flows]]
//! id = "nightly-cleanup"
//! trigger = { schedule = { cron = "0 3 * * *", timezone = "Europe/Berlin" } }
//! ```
//!
//! A flow's tick is an event (`urn:hookgate:schedule:v1`, type `hookgate.schedule`) on
//! `kafka.schedules_topic`: published once by the replica that owns the schedule, then
//! run at least once like any event; `trigger.body.scheduled` is the tick.
//!
//! Patterns have five fields (minute to weekday) or six (seconds first), and the
//! nicknames `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.

use std::time::Duration;

use chrono::{TimeZone as _, Utc};
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use serde::{Deserialize, Serialize};

/// `schedule` in a poller or a flow's trigger, as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    pub cron: String,
    /// An IANA time zone name; default `UTC`.
    #[serde(default = "utc")]
    pub timezone: String,
    #[serde(default)]
    pub missed: Missed,
}

fn utc() -> String {
    "UTC".into()
}

/// What a poller does about ticks that passed while no replica ran it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Wait for the next tick.
    #[default]
    Skip,
    /// Poll once at once, however many ticks were missed.
    RunOnce,
}

/// How to fix a schedule's key that [`ScheduleConfig::build`] refused.
pub fn fix(key: &str) -> &'static str {
    match key {
        "cron" => "write five fields (minute hour day month weekday), six with seconds first, or @hourly/@daily/@weekly/@monthly",
        _ => "write a zone such as \"Europe/Berlin\" or \"UTC\"",
    }
}

/// A schedule, parsed.
#[derive(Debug, Clone)]
pub struct Schedule {
    pattern: String,
    cron: Cron,
    tz: chrono_tz::Tz,
    missed: Missed,
}

impl ScheduleConfig {
    /// The schedule, or what is wrong with it and under which key.
    pub fn build(&self) -> Result<Schedule, (&'static str, String)> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(&self.cron)
            .map_err(|e| {
                (
                    "cron",
                    format!("`{}` is not a cron pattern: {e}", self.cron),
                )
            })?;
        let tz: chrono_tz::Tz = self.timezone.parse().map_err(|_| {
            (
                "timezone",
                format!("`{}` is not an IANA time zone", self.timezone),
            )
        })?;
        Ok(Schedule {
            pattern: self.cron.trim().to_string(),
            cron,
            tz,
            missed: self.missed,
        })
    }
}

impl Schedule {
    /// `cron "0 6 * * MON-FRI" Europe/Berlin`, for listings.
    pub fn describe(&self) -> String {
        let missed = match self.missed {
            Missed::Skip => "",
            Missed::RunOnce => ", missed: run once",
        };
        format!("cron \"{}\" {}{missed}", self.pattern, self.tz.name())
    }

    /// `ms` as a time in the schedule's zone, to the whole second (ticks are on seconds).
    fn at(&self, ms: u64) -> Option<chrono::DateTime<chrono_tz::Tz>> {
        let whole = i64::try_from(ms / 1000).ok()?;
        Some(
            Utc.timestamp_opt(whole, 0)
                .single()?
                .with_timezone(&self.tz),
        )
    }

    /// The first tick strictly after `now_ms`, in milliseconds since the Unix epoch.
    pub fn next_after(&self, now_ms: u64) -> Option<u64> {
        let now = self.at(now_ms)?;
        let next = self.cron.find_next_occurrence(&now, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The IANA name of the schedule's time zone.
    pub fn zone(&self) -> &str {
        self.tz.name()
    }

    /// The last tick at or before `now_ms`.
    pub fn last_tick(&self, now_ms: u64) -> Option<u64> {
        let now = self.at(now_ms)?;
        let prev = self.cron.find_previous_occurrence(&now, true).ok()?;
        u64::try_from(prev.timestamp_millis()).ok()
    }

    /// How long to wait after a poll that ended at `now_ms`: until the next tick.
    pub fn wait(&self, now_ms: u64) -> Duration {
        match self.next_after(now_ms) {
            Some(next) => Duration::from_millis(next.saturating_sub(now_ms)),
            // A pattern with no future tick (a date in the past): never again.
            None => Duration::from_secs(365 * 24 * 3600),
        }
    }

    /// How long to wait before the first poll on this replica, given when the poller
    /// last polled (anywhere in the cluster): at once when a tick was missed and the
    /// policy is `run_once`, else until the next tick.
    pub fn first_wait(&self, polled_at: Option<u64>, now_ms: u64) -> Duration {
        if let (Missed::RunOnce, Some(polled_at)) = (self.missed, polled_at) {
            if self.last_tick(now_ms).is_some_and(|tick| tick > polled_at) {
                return Duration::ZERO;
            }
        }
        self.wait(now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, tz: &str, missed: Missed) -> Schedule {
        ScheduleConfig {
            cron: cron.into(),
            timezone: tz.into(),
            missed,
        }
        .build()
        .unwrap()
    }

    /// 2027-01-15T05:30:00Z, a Friday, in winter.
    const NOW: u64 = 1_799_991_000_000;

    #[test]
    fn ticks_follow_the_pattern_in_its_time_zone() {
        // 06:00 in Berlin is 05:00Z in winter: the next one is Monday's.
        let s = schedule("0 6 * * MON-FRI", "Europe/Berlin", Missed::Skip);
        let monday_0500z = 1_800_248_400_000;
        assert_eq!(s.next_after(NOW), Some(monday_0500z));
        let utc = schedule("0 6 * * *", "UTC", Missed::Skip);
        assert_eq!(utc.next_after(NOW), Some(NOW + 30 * 60 * 1000));
        let every_second = schedule("* * * * * *", "UTC", Missed::Skip);
        assert_eq!(every_second.wait(NOW + 250), Duration::from_millis(750));
    }

    #[test]
    fn a_missed_tick_runs_once_or_is_skipped() {
        let run_once = schedule("*/5 * * * *", "UTC", Missed::RunOnce);
        // Last polled 12 minutes ago: ticks were missed; poll now.
        assert_eq!(
            run_once.first_wait(Some(NOW - 12 * 60_000), NOW),
            Duration::ZERO
        );
        // Last polled at the latest tick: wait for the next (05:35Z).
        assert_eq!(
            run_once.first_wait(Some(NOW), NOW + 60_000),
            Duration::from_secs(4 * 60)
        );
        // Never polled: nothing was missed.
        assert_eq!(
            run_once.first_wait(None, NOW + 60_000),
            Duration::from_secs(4 * 60)
        );
        let skip = schedule("*/5 * * * *", "UTC", Missed::Skip);
        assert_eq!(
            skip.first_wait(Some(NOW - 12 * 60_000), NOW + 60_000),
            Duration::from_secs(4 * 60)
        );
    }

    #[test]
    fn bad_patterns_and_zones_name_their_key() {
        let bad = |cron: &str, tz: &str| {
            ScheduleConfig {
                cron: cron.into(),
                timezone: tz.into(),
                missed: Missed::Skip,
            }
            .build()
            .unwrap_err()
            .0
        };
        assert_eq!(bad("61 * * * *", "UTC"), "cron");
        assert_eq!(bad("every day", "UTC"), "cron");
        assert_eq!(bad("0 6 * * *", "Mars/Olympus"), "timezone");
    }
}
