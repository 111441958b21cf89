//! What the gateway's Kafka clients are made from: the brokers, how topics are checked or
//! created, and the producer properties after defaults, overrides and secrets. Built by
//! the config (`config::kafka`), used by the sink, the topic checks and `tail`.

use std::fmt;
use std::time::Duration;

/// librdkafka's default `message.max.bytes`.
pub const DEFAULT_MESSAGE_MAX_BYTES: u64 = 1_000_000;

/// `[kafka]`, resolved.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub create_topics: bool,
    pub partitions: i32,
    pub replication_factor: i32,
    pub connect_timeout: Duration,
    pub properties: ResolvedProperties,
}

/// The producer properties after defaults, overrides and secret resolution. `Debug` hides
/// the values that came from secrets.
#[derive(Clone, Default)]
pub struct ResolvedProperties {
    /// (name, value, whether the value is a secret)
    pub entries: Vec<(String, String, bool)>,
}

impl fmt::Debug for ResolvedProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v, secret) in &self.entries {
            if *secret {
                m.entry(k, &hookgate_event::REDACTED);
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

impl ResolvedProperties {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _, _)| k == name)
            .map(|(_, v, _)| v.as_str())
    }

    /// The producer's `message.max.bytes`: the largest record it will send.
    pub fn message_max_bytes(&self) -> u64 {
        self.get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES)
    }
}
