//! Reading topics back over a time window, outside the consumer group: how `redrive`
//! and `dry-run` find an event by its id, and how `redrive` finds dead letters.
//!
//! Each partition is read from the first record at or after the window's start
//! (`offsets_for_times`) up to its end as it was when the scan began, so a scan always
//! stops, even while the topic keeps growing.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaSettings;

/// How long the brokers may take to answer a metadata or offsets request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a scan may go without receiving a record before it gives up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Records a scan keeps at most: the rest are counted, not kept.
pub const MAX_KEPT: usize = 10_000;

/// What a scan found.
#[derive(Debug, Default)]
pub struct Found {
    /// The records `keep` accepted, in the order read.
    pub records: Vec<OwnedMessage>,
    /// Records read in all.
    pub read: u64,
    /// Accepted past [`MAX_KEPT`], and dropped.
    pub dropped: u64,
}

/// Reads `topics` from `since` ago to their current end and keeps the records `keep`
/// accepts. A topic that does not exist is an error naming it.
pub async fn scan<F>(
    kafka: &KafkaSettings,
    topics: &[String],
    since: Duration,
    keep: F,
) -> anyhow::Result<Found>
where
    F: FnMut(&OwnedMessage) -> bool + Send + 'static,
{
    let mut config = kafka.client_config();
    config
        .set(
            "group.id",
            format!("hookgate-scan-{}", uuid::Uuid::now_v7().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    let consumer: BaseConsumer = config.create().context("creating the Kafka reader")?;
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || read_window(&consumer, &topics, since, keep))
        .await
        .context("the scan stopped")?
}

fn read_window<F>(
    consumer: &BaseConsumer,
    topics: &[String],
    since: Duration,
    mut keep: F,
) -> anyhow::Result<Found>
where
    F: FnMut(&OwnedMessage) -> bool,
{
    let start_ms = SystemTime::now()
        .checked_sub(since)
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    // Per partition: the offset to stop before (the end when the scan began).
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut by_time = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .with_context(|| format!("reading the metadata of topic `{topic}`"))?;
        let Some(t) = metadata.topics().first().filter(|t| t.error().is_none()) else {
            bail!("topic `{topic}` does not exist on the cluster");
        };
        if t.partitions().is_empty() {
            bail!("topic `{topic}` does not exist on the cluster");
        }
        for p in t.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), REQUEST_TIMEOUT)
                .with_context(|| format!("reading the offsets of `{topic}` [{}]", p.id()))?;
            if high > low {
                ends.insert((topic.clone(), p.id()), high);
                by_time.add_partition_offset(topic, p.id(), Offset::Offset(start_ms))?;
            }
        }
    }
    let mut found = Found::default();
    if ends.is_empty() {
        return Ok(found);
    }
    let starts = consumer
        .offsets_for_times(by_time, REQUEST_TIMEOUT)
        .context("finding where the window starts")?;
    let mut assignment = TopicPartitionList::new();
    for e in starts.elements() {
        let key = (e.topic().to_string(), e.partition());
        match e.offset() {
            // A partition with nothing as recent as the window: nothing to read.
            Offset::Offset(start) if start < ends[&key] => {
                assignment.add_partition_offset(e.topic(), e.partition(), Offset::Offset(start))?;
            }
            _ => {
                ends.remove(&key);
            }
        }
    }
    if ends.is_empty() {
        return Ok(found);
    }
    consumer
        .assign(&assignment)
        .context("reading the partitions")?;
    let mut idle_since = std::time::Instant::now();
    while !ends.is_empty() {
        match consumer.poll(Duration::from_millis(200)) {
            None => {
                if idle_since.elapsed() > IDLE_TIMEOUT {
                    bail!(
                        "the brokers sent nothing for {} s; {} partitions were not read to their end",
                        IDLE_TIMEOUT.as_secs(),
                        ends.len()
                    );
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {
                // The end of a partition (past records never delivered, such as
                // transaction markers): drop those whose position reached their end.
                idle_since = std::time::Instant::now();
                if let Ok(positions) = consumer.position() {
                    for e in positions.elements() {
                        let key = (e.topic().to_string(), e.partition());
                        if let (Offset::Offset(at), Some(&end)) = (e.offset(), ends.get(&key)) {
                            if at >= end {
                                ends.remove(&key);
                            }
                        }
                    }
                }
            }
            Some(Err(e)) => return Err(e).context("reading the partitions"),
            Some(Ok(m)) => {
                idle_since = std::time::Instant::now();
                let key = (m.topic().to_string(), m.partition());
                let Some(&end) = ends.get(&key) else {
                    continue;
                };
                let offset = m.offset();
                if offset < end {
                    found.read += 1;
                    let m = m.detach();
                    if keep(&m) {
                        if found.records.len() < MAX_KEPT {
                            found.records.push(m);
                        } else {
                            found.dropped += 1;
                        }
                    }
                }
                // Done at the last record of the window, without waiting for the EOF.
                if offset + 1 >= end {
                    ends.remove(&key);
                }
            }
        }
    }
    Ok(found)
}
