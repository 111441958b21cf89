//! Reading the topics into the index.
//!
//! One thread reads every partition of the console's topics with `assign()`, from the
//! offsets the index holds (or from the start for a partition it has never seen), turns
//! each record into an [`Entry`] ([`classify`]) and writes them in batches, with the
//! offsets they reach, in one transaction each. The console never commits offsets to
//! Kafka: the index is the only record of its progress, so a deleted index is rebuilt.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hookgate_event::{Event, EventData};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value as Json;

use crate::index::{
    millis, DeadLetterRow, Delivery, Entry, ExecutionRow, Index, Origin, Retention,
};

/// What a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Events of hooks and pollers.
    Events,
    Rejections,
    Executions,
    DeadLetters,
    /// The pollers' control topic.
    Pollers,
}

/// Records written per transaction at most.
const BATCH: usize = 5000;
/// How long a batch may wait to fill.
const LINGER: Duration = Duration::from_millis(100);
/// How often new partitions and topics are looked for, and retention applied.
const HOUSEKEEPING: Duration = Duration::from_secs(10);

/// Progress, for `/api/status` and the tests.
#[derive(Debug, Default)]
pub struct Progress {
    pub indexed: AtomicU64,
    pub skipped: AtomicU64,
    pub batches: AtomicU64,
}

/// Turns one record of a topic of `kind` into an index row; `None` for a record that
/// is not one (a tombstone on an event topic, a record that does not decode).
pub fn classify(kind: Kind, m: &impl Message, body_limit: usize) -> Option<Entry> {
    let origin = Origin {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
    };
    let record_ms = m.timestamp().to_millis();
    let size = m.payload().map_or(0, <[u8]>::len);
    match kind {
        Kind::Events | Kind::Rejections => {
            // An event put back for a redrive is not a new delivery; its run shows it.
            if hookgate_consumer::redrive::header(m, hookgate_consumer::redrive::FLOW_HEADER)
                .is_some()
            {
                return None;
            }
            let event = hookgate_event::decode_message(m).ok()?;
            let time_ms = event_time(&event).or(record_ms).unwrap_or_else(now_ms);
            let data = data_json(&event);
            let text = |key: &str| data.and_then(|d| d.get(key)).and_then(Json::as_str);
            let (status, reason) = if kind == Kind::Rejections {
                let status = data
                    .and_then(|d| d.get("status"))
                    .and_then(Json::as_u64)
                    .unwrap_or(0) as u16;
                (status, text("reason").map(str::to_string))
            } else {
                (0, None)
            };
            let hook = event
                .extension("hook")
                .filter(|h| !h.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| event.source.clone());
            let method = text("method")
                .or(event.extension("httpmethod"))
                .map(str::to_string);
            let path = text("path")
                .or(event.extension("httppath"))
                .map(str::to_string);
            let (truncated, json) = bounded(event.to_json().to_string(), body_limit);
            Some(Entry::Delivery(Delivery {
                time_ms,
                hook,
                accepted: kind == Kind::Events,
                status,
                reason,
                delivery_id: event.extension("deliveryid").map(str::to_string),
                event_id: event.id,
                method,
                path,
                size,
                truncated,
                event: json,
                origin,
            }))
        }
        Kind::Executions => {
            let record: Json = serde_json::from_slice(m.payload()?).ok()?;
            let s = |key: &str| record.get(key).and_then(Json::as_str);
            let flow = match (s("namespace"), s("flow")) {
                (Some(ns), Some(f)) => format!("{ns}.{f}"),
                (None, Some(f)) => f.to_string(),
                _ => return None,
            };
            let time_ms = s("started")
                .and_then(hookgate_common::time::parse_rfc3339)
                .map(millis)
                .or(record_ms)
                .unwrap_or_else(now_ms);
            Some(Entry::Execution(ExecutionRow {
                id: s("id")?.to_string(),
                flow,
                state: s("state").unwrap_or("UNKNOWN").to_string(),
                event_id: record
                    .pointer("/event/id")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string(),
                time_ms,
                duration_ms: record
                    .get("duration_ms")
                    .and_then(Json::as_i64)
                    .unwrap_or(0),
                redrive_of: record
                    .pointer("/redrive/of")
                    .and_then(Json::as_str)
                    .map(str::to_string),
                record: String::from_utf8_lossy(m.payload()?).into_owned(),
                origin,
            }))
        }
        Kind::DeadLetters => {
            let header =
                |name: &str| hookgate_consumer::redrive::header(m, name).map(str::to_string);
            let event = hookgate_event::decode_message(m).ok();
            let event_id = event.as_ref().map(|e| e.id.clone()).unwrap_or_else(|| {
                format!("{}:{}:{}", origin.topic, origin.partition, origin.offset)
            });
            let text = match &event {
                Some(e) => e.to_json().to_string(),
                None => String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            };
            let (truncated, json) = bounded(text, body_limit);
            Some(Entry::DeadLetter(DeadLetterRow {
                time_ms: record_ms.unwrap_or_else(now_ms),
                flow: header(hookgate_consumer::redrive::DEAD_LETTER_FLOW),
                execution: header(hookgate_consumer::redrive::DEAD_LETTER_EXECUTION),
                event_id,
                reason: header("hookgate-dead-letter-reason"),
                source_topic: header(hookgate_consumer::redrive::DEAD_LETTER_TOPIC),
                truncated,
                event: json,
                run: header("hookgate-dead-letter-run"),
                origin,
            }))
        }
        Kind::Pollers => {
            let id = String::from_utf8_lossy(m.key()?).into_owned();
            let state = m.payload().and_then(|v| serde_json::from_slice(v).ok());
            Some(Entry::Poller {
                id,
                state,
                time_ms: record_ms.unwrap_or_else(now_ms),
            })
        }
    }
}

fn now_ms() -> i64 {
    millis(SystemTime::now())
}

fn event_time(event: &Event) -> Option<i64> {
    event
        .time
        .as_deref()
        .and_then(hookgate_common::time::parse_rfc3339)
        .map(millis)
}

fn data_json(event: &Event) -> Option<&Json> {
    match &event.data {
        EventData::Json(v) => Some(v),
        EventData::Binary { .. } => None,
    }
}

/// `text`, cut at `limit` bytes (on a character boundary) when longer.
fn bounded(mut text: String, limit: usize) -> (bool, String) {
    if text.len() <= limit {
        return (false, text);
    }
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    (true, text)
}

/// The topics to read and what each carries.
#[derive(Debug, Clone, Default)]
pub struct Topics(pub Vec<(String, Kind)>);

impl Topics {
    fn kind(&self, topic: &str) -> Option<Kind> {
        self.0.iter().find(|(t, _)| t == topic).map(|(_, k)| *k)
    }
}

/// Reads `topics` into `index` until `stop` is set. Runs on its own thread.
pub fn run(
    mut index: Index,
    kafka: rdkafka::ClientConfig,
    topics: Topics,
    body_limit: usize,
    retention: Retention,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = kafka.create()?;
    let mut assigned: HashSet<(String, i32)> = HashSet::new();
    let mut positions: HashMap<(String, i32), i64> = HashMap::new();
    let mut housekeeping = Instant::now() - HOUSEKEEPING;
    let mut entries = Vec::with_capacity(BATCH);
    // Retention also runs whenever a quarter of `max_events` was written since it last
    // did, so a burst never takes the index far past its bound.
    let retain_every = (retention.max_events / 4).max(1000);
    let mut written: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = housekeeping.elapsed() >= HOUSEKEEPING;
        if due {
            housekeeping = Instant::now();
            assign_new(&consumer, &index, &topics, &mut assigned)?;
        }
        if due || written >= retain_every {
            written = 0;
            if let Err(e) = index.retain(retention, now_ms()) {
                tracing::warn!(error = %e, "console index retention failed");
            }
        }
        let started = Instant::now();
        while entries.len() < BATCH && started.elapsed() < LINGER {
            match consumer.poll(LINGER.saturating_sub(started.elapsed())) {
                Some(Ok(m)) => {
                    positions.insert((m.topic().to_string(), m.partition()), m.offset() + 1);
                    match topics
                        .kind(m.topic())
                        .and_then(|k| classify(k, &m, body_limit))
                    {
                        Some(entry) => entries.push(entry),
                        None => {
                            progress.skipped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "console reader");
                    break;
                }
                None => break,
            }
        }
        if entries.is_empty() && positions.is_empty() {
            continue;
        }
        let offsets: Vec<(String, i32, i64)> =
            positions.drain().map(|((t, p), o)| (t, p, o)).collect();
        index.write(&entries, &offsets)?;
        written += entries.len() as u64;
        progress
            .indexed
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        progress.batches.fetch_add(1, Ordering::Relaxed);
        entries.clear();
    }
    Ok(())
}

/// Adds the partitions of `topics` not yet assigned, each from where the index stopped.
fn assign_new(
    consumer: &BaseConsumer,
    index: &Index,
    topics: &Topics,
    assigned: &mut HashSet<(String, i32)>,
) -> anyhow::Result<()> {
    let stored = index.offsets()?;
    let mut tpl = TopicPartitionList::new();
    for (topic, _) in &topics.0 {
        let metadata = match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(topic = %topic, error = %e, "console cannot read the topic's partitions yet");
                continue;
            }
        };
        for t in metadata.topics() {
            if t.error().is_some() {
                continue;
            }
            for p in t.partitions() {
                let key = (topic.clone(), p.id());
                if assigned.contains(&key) {
                    continue;
                }
                let offset = stored
                    .get(&key)
                    .map_or(Offset::Beginning, |o| Offset::Offset(*o));
                tpl.add_partition_offset(topic, p.id(), offset)?;
                assigned.insert(key);
            }
        }
    }
    if tpl.count() > 0 {
        consumer.incremental_assign(&tpl)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{OwnedHeaders, OwnedMessage, Timestamp};

    fn message(
        topic: &str,
        key: Option<&str>,
        value: &[u8],
        headers: &[(&str, &str)],
    ) -> OwnedMessage {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(rdkafka::message::Header {
                key: k,
                value: Some(*v),
            });
        }
        OwnedMessage::new(
            Some(value.to_vec()),
            key.map(|k| k.as_bytes().to_vec()),
            topic.into(),
            Timestamp::CreateTime(1_800_000_000_000),
            0,
            7,
            Some(h),
        )
    }

    const CT: &str = hookgate_event::STRUCTURED_CONTENT_TYPE;

    #[test]
    fn a_rejection_record_becomes_a_refused_delivery_with_its_reason() {
        let value = serde_json::json!({
            "specversion": "1.0", "id": "r-1", "source": "/hooks/github", "type": "hookgate.rejection",
            "time": "2027-01-15T08:00:00Z", "datacontenttype": "application/json",
            "dataschema": "urn:hookgate:rejection:v1", "hook": "github", "authscheme": "hmac",
            "data": {"status": 401, "reason": "signature mismatch", "detail": "", "method": "POST", "path": "/hooks/github"}
        });
        let m = message(
            "hookgate.rejections",
            None,
            value.to_string().as_bytes(),
            &[("content-type", CT)],
        );
        let Some(Entry::Delivery(d)) = classify(Kind::Rejections, &m, 65536) else {
            panic!("not a delivery");
        };
        assert!(!d.accepted);
        assert_eq!(
            (d.status, d.reason.as_deref()),
            (401, Some("signature mismatch"))
        );
        assert_eq!(d.hook, "github");
        assert_eq!(d.method.as_deref(), Some("POST"));
        assert_eq!(d.origin.offset, 7);
    }

    #[test]
    fn a_large_event_is_kept_cut_at_the_limit() {
        let body = "é".repeat(10_000);
        let value = serde_json::json!({
            "specversion": "1.0", "id": "e-1", "source": "/hooks/orders", "type": "t",
            "hook": "orders", "data": {"body": body}
        });
        let m = message(
            "orders",
            None,
            value.to_string().as_bytes(),
            &[("content-type", CT)],
        );
        let Some(Entry::Delivery(d)) = classify(Kind::Events, &m, 1001) else {
            panic!("not a delivery");
        };
        assert!(d.truncated);
        assert!(d.event.len() <= 1001 && d.event.len() >= 999);
        assert_eq!(d.size, value.to_string().len());
        assert_eq!(d.time_ms, 1_800_000_000_000, "no event time: the record's");
    }

    #[test]
    fn execution_and_poller_records_are_read() {
        let run = serde_json::json!({
            "id": "x-1", "flow": "war-room", "namespace": "ops", "state": "SUCCESS",
            "started": "1970-01-01T00:00:01Z", "duration_ms": 12,
            "event": {"id": "e-9"}, "redrive": {"origin": "dead-letter", "of": "x-0"}
        });
        let m = message("hookgate.executions", None, run.to_string().as_bytes(), &[]);
        let Some(Entry::Execution(e)) = classify(Kind::Executions, &m, 100) else {
            panic!("not an execution");
        };
        assert_eq!(
            (e.flow.as_str(), e.event_id.as_str(), e.time_ms),
            ("ops.war-room", "e-9", 1000)
        );
        assert_eq!(e.redrive_of.as_deref(), Some("x-0"));
        let m = message(
            "hookgate.pollers",
            Some("stock"),
            br#"{"active":true,"fired_at":5,"polled_at":6}"#,
            &[],
        );
        let Some(Entry::Poller { id, state, .. }) = classify(Kind::Pollers, &m, 100) else {
            panic!("not a poller");
        };
        assert_eq!(id, "stock");
        assert_eq!(state.unwrap()["active"], true);
        let garbage = message("orders", None, b"not an event", &[]);
        let redriven = message(
            "orders",
            None,
            br#"{"specversion":"1.0","id":"e-1","source":"/hooks/orders","type":"t","data":{}}"#,
            &[
                ("content-type", CT),
                ("hookgate-redrive-flow", "shop.fragile"),
            ],
        );
        assert!(classify(Kind::Events, &redriven, 100).is_none());
        assert!(classify(Kind::Events, &garbage, 100).is_none());
    }
}
