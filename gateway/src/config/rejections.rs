//! `[rejections]`: records of refused requests on a topic of their own.

use hookgate_common::config::Problems;
use serde::Deserialize;

use super::hook::valid_topic;
use crate::ratelimit::Rate;
use crate::rejections::RejectionSettings;

/// The most records per second a bucket may allow.
const MAX_RATE: f64 = 10_000.0;

/// Where the records of refused requests go, and how many may be made.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RejectionsConfig {
    /// The topic of the records; `""` makes none.
    pub topic: String,
    /// Records per second at most for each hook and reason (a burst of one second's
    /// worth); past it, refusals are only counted.
    pub per_second: f64,
    /// Records per second at most for requests to paths that match no hook, all together.
    pub unknown_per_second: f64,
}

impl RejectionsConfig {
    /// The settings, `None` when records are off; problems go to `p`.
    pub(super) fn build(&self, p: &mut Problems) -> Option<RejectionSettings> {
        let mut rate = |key: &str, per_second: f64| {
            let rate = (per_second <= MAX_RATE)
                .then(|| Rate::new(per_second, None))
                .flatten();
            if rate.is_none() {
                p.push(
                    format!("rejections.{key}"),
                    format!("{per_second} is not a usable rate"),
                    "give a rate above 0 and at most 10000",
                );
            }
            rate
        };
        let per_hook = rate("per_second", self.per_second);
        let unknown = rate("unknown_per_second", self.unknown_per_second);
        if self.topic.is_empty() {
            return None;
        }
        if !valid_topic(&self.topic) {
            p.push(
                "rejections.topic",
                format!("`{}` is not a valid Kafka topic name", self.topic),
                "use 1 to 249 letters, digits, '.', '_' or '-', or \"\" to make no records",
            );
            return None;
        }
        Some(RejectionSettings {
            topic: self.topic.clone(),
            per_hook: per_hook?,
            unknown: unknown?,
        })
    }
}
