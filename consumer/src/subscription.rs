//! Which topics the consumer reads: the listed ones, and those `kafka.topic_pattern`
//! matches, never the consumer's own output topics.
//!
//! A pattern such as `^hookgate\..*` also matches the dead-letter, executions and control
//! topics. Read as events, dead letters would run failed flows again and dead-letter them
//! again, in a loop, and execution records would be dead-lettered as "not an event". So
//! the pattern is not handed to librdkafka (whose regular expressions cannot exclude
//! names): the consumer lists the cluster's topics itself, every [`REFRESH`], keeps those
//! the pattern matches except its own and Kafka's internal ones (`__…`), and subscribes to
//! that list whenever it changes. Listing an own topic in `kafka.topics` is a config error.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::watch;

use crate::config::KafkaSettings;

/// How often the topics matching the pattern are looked up again: how soon a new topic
/// is read.
pub const REFRESH: Duration = Duration::from_secs(10);

/// The topics to subscribe to, from the config.
#[derive(Debug, Clone)]
pub struct Subscription {
    listed: Vec<String>,
    pattern: Option<regex::Regex>,
    /// The consumer's own topics: never read.
    own: BTreeSet<String>,
}

impl Subscription {
    pub fn new(kafka: &KafkaSettings) -> Subscription {
        Subscription {
            listed: kafka.topics.clone(),
            pattern: kafka.topic_pattern.as_deref().map(|p| {
                regex::Regex::new(p).expect("the pattern was checked when the config was built")
            }),
            own: own_topics(kafka),
        }
    }

    /// Whether the topics can change while running (only a pattern makes them change).
    pub fn follows_a_pattern(&self) -> bool {
        self.pattern.is_some()
    }

    /// The topics to read among `existing`: the listed ones and the pattern's, sorted.
    pub fn topics<'a>(&self, existing: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut out: BTreeSet<String> = self.listed.iter().cloned().collect();
        if let Some(pattern) = &self.pattern {
            out.extend(
                existing
                    .into_iter()
                    .filter(|t| {
                        pattern.is_match(t) && !self.own.contains(*t) && !t.starts_with("__")
                    })
                    .map(str::to_string),
            );
        }
        out.into_iter().collect()
    }

    /// The consumer's own topics that the pattern matches (and that are left out).
    pub fn own_matched(&self) -> Vec<&str> {
        match &self.pattern {
            Some(p) => self
                .own
                .iter()
                .filter(|t| p.is_match(t))
                .map(String::as_str)
                .collect(),
            None => Vec::new(),
        }
    }
}

/// The topics the consumer writes: dead letters, execution records, the pollers' control
/// topic.
pub fn own_topics(kafka: &KafkaSettings) -> BTreeSet<String> {
    let mut own = BTreeSet::from([kafka.dead_letter_topic.clone(), kafka.control_topic.clone()]);
    own.extend(kafka.executions_topic.clone());
    own
}

/// Looks the cluster's topics up with `client` and sends the list to read whenever it
/// changes, every [`REFRESH`], until the receiver is gone.
pub async fn follow(
    subscription: Subscription,
    client: std::sync::Arc<BaseConsumer>,
    topics: watch::Sender<Vec<String>>,
) {
    loop {
        tokio::time::sleep(REFRESH).await;
        let Some(now) = resolve(&subscription, &client).await else {
            continue;
        };
        let changed = topics.send_if_modified(|current| {
            if *current == now {
                false
            } else {
                *current = now;
                true
            }
        });
        if changed {
            tracing::info!(
                topics = %hookgate_common::logging::List(&topics.borrow()),
                "the topics matching kafka.topic_pattern changed"
            );
        }
        if topics.is_closed() {
            return;
        }
    }
}

/// The topics a consumer of `kafka` reads now: the listed ones, and those the pattern
/// matches on the cluster.
pub async fn current_topics(kafka: &KafkaSettings) -> anyhow::Result<Vec<String>> {
    let subscription = Subscription::new(kafka);
    if !subscription.follows_a_pattern() {
        return Ok(subscription.topics([]));
    }
    let lister: std::sync::Arc<BaseConsumer> = std::sync::Arc::new(
        kafka
            .client_config()
            .create()
            .map_err(|e| anyhow::anyhow!("creating the Kafka metadata client: {e}"))?,
    );
    resolve(&subscription, &lister)
        .await
        .ok_or_else(|| anyhow::anyhow!("the brokers did not list their topics"))
}

/// The topics to read now, from the cluster's metadata; `None` when the brokers did not
/// answer (the subscription stays as it is).
pub async fn resolve(
    subscription: &Subscription,
    client: &std::sync::Arc<BaseConsumer>,
) -> Option<Vec<String>> {
    let client = client.clone();
    let names = tokio::task::spawn_blocking(move || {
        client
            .fetch_metadata(None, Duration::from_secs(10))
            .map(|m| {
                m.topics()
                    .iter()
                    .map(|t| t.name().to_string())
                    .collect::<Vec<_>>()
            })
    })
    .await
    .ok()?;
    match names {
        Ok(names) => Some(subscription.topics(names.iter().map(String::as_str))),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the topics for kafka.topic_pattern");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(topics: &[&str], pattern: Option<&str>) -> KafkaSettings {
        KafkaSettings {
            brokers: "b".into(),
            group: "g".into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            topic_pattern: pattern.map(str::to_string),
            dead_letter_topic: "hookgate.dead-letter".into(),
            executions_topic: Some("hookgate.executions".into()),
            control_topic: "hookgate.pollers".into(),
            control_partitions: 1,
            schedules_topic: "hookgate.schedules".into(),
            properties: Vec::new(),
            consumer_properties: Vec::new(),
            producer_properties: Vec::new(),
        }
    }

    #[test]
    fn a_pattern_never_takes_in_the_consumers_own_topics() {
        let s = Subscription::new(&kafka(&["extra"], Some("^hookgate\\..*")));
        let existing = [
            "hookgate.orders",
            "hookgate.alerts",
            "hookgate.dead-letter",
            "hookgate.executions",
            "hookgate.pollers",
            "__consumer_offsets",
            "other",
        ];
        assert_eq!(
            s.topics(existing),
            ["extra", "hookgate.alerts", "hookgate.orders"]
        );
        assert_eq!(
            s.own_matched(),
            [
                "hookgate.dead-letter",
                "hookgate.executions",
                "hookgate.pollers"
            ]
        );
    }

    #[test]
    fn without_a_pattern_the_listed_topics_are_read() {
        let s = Subscription::new(&kafka(&["b", "a"], None));
        assert!(!s.follows_a_pattern());
        assert_eq!(s.topics(["c"]), ["a", "b"]);
        assert!(s.own_matched().is_empty());
    }
}
