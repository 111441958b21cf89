//! The end-to-end loss check: every event the gateway acknowledged with a 2xx must be on
//! its hook's topic (acknowledged ⊆ consumed), counted once or more.
//!
//! Before the load, the end offset of every partition of the hook topics is noted; after
//! it, exactly the records from there to the new end offsets are read back, so events of
//! earlier runs or other senders neither hide a loss nor count as one.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hookgate_gateway::sink::kafka::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

/// How long to wait for metadata and offsets.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// With acknowledged ids still unseen, how long the topics must stay quiet, once read to
/// their reported end, before those ids count as missing.
const QUIET: Duration = Duration::from_secs(2);
/// Ids listed in the report when events are missing.
const MISSING_SHOWN: usize = 10;

/// The result of the check, per hook and in total.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Verification {
    /// 2xx answers with an event id, warm-up included.
    pub acknowledged: u64,
    /// Acknowledged events found on their topic.
    pub found: u64,
    /// Acknowledged events not found: lost.
    pub missing: u64,
    /// Extra copies of acknowledged events (a retried produce): at-least-once, not a loss.
    pub duplicates: u64,
    /// 2xx answers without an event id (a hook with a custom answer): not checkable.
    pub unverifiable: u64,
    /// Records read back from the topics.
    pub records_read: u64,
    /// Time spent reading them.
    pub read_s: f64,
    pub hooks: Vec<HookVerification>,
    /// Some of the missing ids, to look for in the gateway's logs.
    pub missing_ids: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HookVerification {
    pub hook: String,
    pub topic: String,
    pub acknowledged: u64,
    pub missing: u64,
    pub duplicates: u64,
}

impl Verification {
    /// No acknowledged event is missing, and there was something to check.
    pub fn passed(&self) -> bool {
        self.missing == 0 && self.acknowledged > 0
    }
}

impl std::fmt::Display for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  loss check            {} acknowledged, {} found, {} missing, {} duplicates \
             ({} records read in {:.1} s)",
            self.acknowledged,
            self.found,
            self.missing,
            self.duplicates,
            self.records_read,
            self.read_s
        )?;
        if self.unverifiable > 0 {
            writeln!(
                f,
                "    {} 2xx answers named no event id and were not checked",
                self.unverifiable
            )?;
        }
        for h in &self.hooks {
            writeln!(
                f,
                "    {:<20}{} acknowledged, {} missing, {} duplicates ({})",
                h.hook, h.acknowledged, h.missing, h.duplicates, h.topic
            )?;
        }
        if !self.missing_ids.is_empty() {
            writeln!(f, "    missing, e.g.: {}", self.missing_ids.join(", "))?;
        }
        Ok(())
    }
}

/// The partitions of the hook topics and where they ended before the load.
pub struct Checkpoint {
    kafka: KafkaSettings,
    /// (topic, partition) → end offset before the load.
    start: BTreeMap<(String, i32), i64>,
}

/// A client for reading the hook topics: no group is joined, nothing is committed.
fn reader(kafka: &KafkaSettings) -> Result<BaseConsumer> {
    hookgate_gateway::sink::kafka::base_config(&kafka.brokers, &kafka.properties)
        .set("group.id", "hookgate-loadtest-verify")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("allow.auto.create.topics", "false")
        // A start offset the broker no longer has (retention, a mock broker's cap): read
        // what it still has, so that what it dropped shows as missing.
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating the Kafka client for the loss check")
}

impl Checkpoint {
    /// Notes the end offset of every partition of `topics`. Fails when a topic does not
    /// exist: the gateway creates its topics when it starts.
    pub fn take(kafka: &KafkaSettings, topics: &[&str]) -> Result<Self> {
        let consumer = reader(kafka)?;
        let mut start = BTreeMap::new();
        for &topic in topics {
            let metadata = consumer
                .fetch_metadata(Some(topic), BROKER_TIMEOUT)
                .with_context(|| format!("reading metadata from {}", kafka.brokers))?;
            let partitions = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
                .unwrap_or_default();
            if partitions.is_empty() {
                bail!(
                    "topic `{topic}` does not exist on {}: start the gateway (it creates its \
                     topics) before the load",
                    kafka.brokers
                );
            }
            for p in partitions {
                let (_, high) = consumer
                    .fetch_watermarks(topic, p, BROKER_TIMEOUT)
                    .with_context(|| format!("end offset of {topic}/{p}"))?;
                start.insert((topic.to_string(), p), high);
            }
        }
        Ok(Self {
            kafka: kafka.clone(),
            start,
        })
    }

    /// Reads what was appended since [`Checkpoint::take`] and checks `acks` against it.
    /// `hooks[group]` is the (hook id, topic) of each acknowledgement's group.
    pub fn check(
        self,
        acks: &Acks,
        hooks: &[(&str, &str)],
        read_timeout: Duration,
    ) -> Result<Verification> {
        let began = Instant::now();
        // A new client: the load may have cut the broker off from the first one.
        let consumer = reader(&self.kafka)?;
        // Times each acknowledged id was seen, by topic; other records are not kept.
        let mut seen: HashMap<&str, HashMap<&str, u32>> = HashMap::new();
        for (group, id) in &acks.ids {
            let topic = hooks[usize::from(*group)].1;
            seen.entry(topic).or_default().insert(id, 0);
        }
        let mut outstanding: usize = seen.values().map(HashMap::len).sum();

        // Every partition is read from its start, even one whose end offset did not move:
        // a broker may report an end offset one short (Tansu does, at times), and the
        // reading stops only once every acknowledged id was found or the partitions have
        // been quiet for `QUIET`.
        let mut assignment = TopicPartitionList::new();
        let mut ends: HashMap<(String, i32), (i64, i64)> = HashMap::new(); // (next, end)
        for ((topic, p), &from) in &self.start {
            let (_, end) = consumer
                .fetch_watermarks(topic, *p, BROKER_TIMEOUT)
                .with_context(|| format!("end offset of {topic}/{p}"))?;
            assignment.add_partition_offset(topic, *p, Offset::Offset(from))?;
            ends.insert((topic.clone(), *p), (from, end));
        }
        consumer.assign(&assignment)?;
        let deadline = Instant::now() + read_timeout;
        let mut last_record = Instant::now();
        let mut records_read = 0u64;
        loop {
            let at_end = ends.values().all(|(next, end)| next >= end);
            if at_end && (outstanding == 0 || last_record.elapsed() >= QUIET) {
                break;
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "warning: the hook topics were not read to their end within \
                     {read_timeout:?}; unread events count as missing"
                );
                break;
            }
            let Some(result) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let msg = match result {
                Ok(msg) => msg,
                // A connection error left from a broker outage during the load: librdkafka
                // reconnects by itself; the deadline bounds the wait.
                Err(e) => {
                    eprintln!("warning: reading the hook topics back: {e}; retrying");
                    continue;
                }
            };
            last_record = Instant::now();
            records_read += 1;
            if let Some((next, _)) = ends.get_mut(&(msg.topic().to_string(), msg.partition())) {
                *next = (*next).max(msg.offset() + 1);
            }
            let Some(id) = record_id(&msg) else {
                continue;
            };
            if let Some(count) = seen.get_mut(msg.topic()).and_then(|ids| ids.get_mut(&*id)) {
                if *count == 0 {
                    outstanding -= 1;
                }
                *count += 1;
            }
        }

        let mut v = Verification {
            unverifiable: acks.without_id,
            records_read,
            ..Verification::default()
        };
        v.hooks = hooks
            .iter()
            .map(|(hook, topic)| HookVerification {
                hook: hook.to_string(),
                topic: topic.to_string(),
                ..HookVerification::default()
            })
            .collect();
        for (group, id) in &acks.ids {
            let h = &mut v.hooks[usize::from(*group)];
            h.acknowledged += 1;
            match seen.get(h.topic.as_str()).and_then(|ids| ids.get(&**id)) {
                Some(&n) if n > 0 => {
                    v.found += 1;
                    h.duplicates += u64::from(n - 1);
                }
                _ => {
                    h.missing += 1;
                    if v.missing_ids.len() < MISSING_SHOWN {
                        v.missing_ids.push(id.to_string());
                    }
                }
            }
        }
        v.acknowledged = v.hooks.iter().map(|h| h.acknowledged).sum();
        v.missing = v.hooks.iter().map(|h| h.missing).sum();
        v.duplicates = v.hooks.iter().map(|h| h.duplicates).sum();
        v.read_s = began.elapsed().as_secs_f64();
        Ok(v)
    }
}

/// The event id of a record: the `ce_id` header in binary mode, the `id` member of the
/// value in structured mode.
fn record_id(msg: &impl Message) -> Option<Box<str>> {
    if let Some(headers) = msg.headers() {
        for h in headers.iter() {
            if h.key == "ce_id" {
                return h
                    .value
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .map(Into::into);
            }
        }
    }
    event_id(msg.payload()?)
}

/// The event ids the server acknowledged during a run (warm-up included), when
/// [`LoadConfig::collect_ids`] is set.
#[derive(Debug, Default)]
pub struct Acks {
    /// (group, id) per 2xx answer.
    pub ids: Vec<(u16, Box<str>)>,
    /// 2xx answers that named no event id.
    pub without_id: u64,
}

/// The `id` member of a JSON object answer, as the gateway's `202 {"id":"…"}` has it.
pub(crate) fn event_id(body: &[u8]) -> Option<Box<str>> {
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        id: std::borrow::Cow<'a, str>,
    }
    let answer: Answer<'_> = serde_json::from_slice(body).ok()?;
    Some(answer.id.into())
}
