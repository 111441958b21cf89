//! `[kafka]`: the brokers, librdkafka properties, and how topics are checked or created.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use hookgate_common::config::{ConfigDuration, Environment, Problems, PropertyValue};

use crate::sink::kafka::ResolvedProperties;

/// Properties the gateway sets itself, because its guarantees depend on them, with the
/// reason given to whoever tries to set them.
pub const RESERVED_PROPERTIES: &[(&str, &str)] = &[
    (
        "acks",
        "the gateway always waits for acks=all, so a 202 means every in-sync replica has the event",
    ),
    (
        "request.required.acks",
        "the gateway always waits for acks=all, so a 202 means every in-sync replica has the event",
    ),
    (
        "enable.idempotence",
        "always on, so the producer's retries never duplicate or reorder events",
    ),
    (
        "delivery.report.only.error",
        "the gateway answers a sender only after its event's delivery report",
    ),
    (
        "retries",
        "the idempotent producer needs its retries; bound the wait with each hook's `ack_timeout`",
    ),
    (
        "message.send.max.retries",
        "the idempotent producer needs its retries; bound the wait with each hook's `ack_timeout`",
    ),
    (
        "max.in.flight.requests.per.connection",
        "the idempotent producer sets it to keep order",
    ),
    (
        "max.in.flight",
        "the idempotent producer sets it to keep order",
    ),
    ("transactional.id", "the gateway does not use transactions"),
    ("bootstrap.servers", "set `kafka.brokers` instead"),
    ("metadata.broker.list", "set `kafka.brokers` instead"),
    (
        "allow.auto.create.topics",
        "topics are checked at startup; set `kafka.create_topics = true` to have them created",
    ),
];

/// The producer settings the gateway starts from; any of them can be overridden in
/// `kafka.properties`. Linger and batching trade a few milliseconds of latency for
/// throughput; the queue bounds keep memory flat when the broker is slow; a short reconnect
/// backoff brings 202s back within about a second of a broker's return (librdkafka's
/// default lets it grow to 10 s during an outage).
pub const DEFAULT_PROPERTIES: &[(&str, &str)] = &[
    ("reconnect.backoff.max.ms", "1000"),
    ("linger.ms", "3"),
    ("batch.num.messages", "10000"),
    ("compression.type", "lz4"),
    ("queue.buffering.max.messages", "100000"),
    ("queue.buffering.max.kbytes", "65536"),
    ("socket.nagle.disable", "true"),
];

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Create hook topics that do not exist, with `partitions` and `replication_factor`.
    /// When off, a missing topic is a startup error.
    pub create_topics: bool,
    pub partitions: i32,
    /// -1 takes the broker's default.
    pub replication_factor: i32,
    /// How long startup and `check` wait for the brokers to answer.
    pub connect_timeout: ConfigDuration,
    /// Any librdkafka producer property (`"linger.ms" = 10`, `"security.protocol" =
    /// "SASL_SSL"`, `"sasl.password" = { env = "KAFKA_PASSWORD" }`), except the reserved
    /// ones.
    pub properties: BTreeMap<String, PropertyValue>,
}

impl KafkaConfig {
    /// Checks the table and resolves the properties; `max_ack_timeout` is the longest ack
    /// timeout of any hook, which `message.timeout.ms` must cover.
    pub(super) fn resolve(
        &self,
        env: &Environment,
        max_ack_timeout: Duration,
        p: &mut Problems,
    ) -> ResolvedProperties {
        if self.brokers.trim().is_empty() {
            p.push(
                "kafka.brokers",
                "is empty",
                "list the bootstrap brokers, like \"kafka-1:9092,kafka-2:9092\"",
            );
        }
        if self.partitions < 1 {
            p.push("kafka.partitions", "must be at least 1", "raise it");
        }
        if self.replication_factor == 0 || self.replication_factor < -1 {
            p.push(
                "kafka.replication_factor",
                "must be at least 1, or -1 for the broker's default",
                "raise it",
            );
        }
        let mut resolved = ResolvedProperties::default();
        for (name, value) in DEFAULT_PROPERTIES {
            resolved
                .entries
                .push((name.to_string(), value.to_string(), false));
        }
        let timeout_ms = max_ack_timeout.as_millis().max(1).to_string();
        resolved
            .entries
            .push(("message.timeout.ms".into(), timeout_ms, false));
        for (name, value) in &self.properties {
            let key = format!("kafka.properties.\"{name}\"");
            if let Some((_, why)) = RESERVED_PROPERTIES.iter().find(|(r, _)| r == name) {
                p.push(&key, format!("cannot be set: {why}"), "remove it");
                continue;
            }
            match value.resolve(env) {
                Ok((v, secret)) => resolved.entries.push((name.clone(), v, secret)),
                Err(e) => p.secret(&key, e),
            }
        }
        for timeout_key in ["message.timeout.ms", "delivery.timeout.ms"] {
            if let Some(PropertyValue::Plain(v)) = self.properties.get(timeout_key) {
                match v.parse::<u64>() {
                    Ok(ms) if u128::from(ms) >= max_ack_timeout.as_millis() || ms == 0 => {}
                    Ok(ms) => p.push(
                        format!("kafka.properties.\"{timeout_key}\""),
                        format!(
                            "{ms} ms is shorter than the longest hook ack_timeout ({} ms), so librdkafka would give up on events the gateway is still waiting for",
                            max_ack_timeout.as_millis()
                        ),
                        "raise it, or lower the hooks' ack_timeout",
                    ),
                    Err(_) => p.push(
                        format!("kafka.properties.\"{timeout_key}\""),
                        format!("`{v}` is not a number of milliseconds"),
                        "write a whole number of milliseconds",
                    ),
                }
            }
        }
        resolved
    }
}
