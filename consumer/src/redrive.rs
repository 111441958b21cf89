//! Redrive: running one flow again, and only that flow, for events that already passed.
//!
//! Kafka-native: `hookgate-consumer redrive` puts the event back on the topic it came
//! from, as it was first published (same key, value and CloudEvents id), with
//! [`FLOW_HEADER`] naming the flow, [`ORIGIN_HEADER`] saying where it was taken from and
//! [`OF_HEADER`] the execution it repeats. A consumer that reads such a record runs
//! that flow alone for it (conditions still apply; the trigger is not asked again) and
//! its execution record carries `redrive: {origin, of}`. Consumers of the topic other
//! than hookgate see the event a second time, as at-least-once delivery allows: its id
//! is unchanged, so they can tell.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context as _};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::config::Settings;
use crate::executor::Redrive;
use crate::flow::Flow;

/// The flow a redriven record is for (`namespace.id`).
pub const FLOW_HEADER: &str = "hookgate-redrive-flow";
/// `dead-letter` or `event`: where the record was taken from.
pub const ORIGIN_HEADER: &str = "hookgate-redrive-origin";
/// The execution id of the run being repeated.
pub const OF_HEADER: &str = "hookgate-redrive-of";
/// Prefix of the headers a dead letter adds (see [`crate::runtime`]).
pub const DEAD_LETTER_PREFIX: &str = "hookgate-dead-letter-";
/// The dead-letter header naming the flow that failed.
pub const DEAD_LETTER_FLOW: &str = "hookgate-dead-letter-flow";
/// The dead-letter header naming the execution that failed.
pub const DEAD_LETTER_EXECUTION: &str = "hookgate-dead-letter-execution";
/// The dead-letter header naming the topic the event came from.
pub const DEAD_LETTER_TOPIC: &str = "hookgate-dead-letter-topic";

/// How long one redriven record may wait for the broker's acknowledgement.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);

/// A header's value as text.
pub fn header<'a>(m: &'a impl Message, name: &str) -> Option<&'a str> {
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| std::str::from_utf8(h.value?).ok())
}

/// The flow a record asks to run alone, and what its execution record says of it.
pub fn requested(m: &impl Message) -> Option<(String, Redrive)> {
    let flow = header(m, FLOW_HEADER)?;
    Some((
        flow.to_string(),
        Redrive {
            origin: header(m, ORIGIN_HEADER).unwrap_or("event").to_string(),
            of: header(m, OF_HEADER).map(str::to_string),
        },
    ))
}

/// Where the events to redrive are found.
#[derive(Debug, Clone)]
pub enum Source {
    /// The event with this id, on the topics the consumer reads.
    Event(String),
    /// The flow's dead letters.
    DeadLetters,
}

/// One event put back on its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redriven {
    pub event_id: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The execution repeated, when known.
    pub of: Option<String>,
}

/// Finds the events `source` names within `since` and puts each back on its topic for
/// `flow` alone. A dead-lettered event is redriven once even when it failed several
/// times in the window (its latest dead letter is used).
pub async fn redrive(
    settings: &Settings,
    flow: &Flow,
    source: &Source,
    since: Duration,
) -> anyhow::Result<Vec<Redriven>> {
    let kafka = &settings.kafka;
    let flow_id = flow.qualified_id();
    let topics = match source {
        Source::Event(_) => crate::subscription::current_topics(kafka).await?,
        Source::DeadLetters => vec![kafka.dead_letter_topic.clone()],
    };
    let found = match source {
        Source::Event(id) => {
            let id = id.clone();
            crate::scan::scan(kafka, &topics, since, move |m| {
                hookgate_event::decode_message(m).is_ok_and(|e| e.id == id)
            })
            .await?
        }
        Source::DeadLetters => {
            let wanted = flow_id.clone();
            crate::scan::scan(kafka, &topics, since, move |m| {
                header(m, DEAD_LETTER_FLOW) == Some(wanted.as_str())
            })
            .await?
        }
    };
    if found.dropped > 0 {
        bail!(
            "more than {} events match; narrow the window with --since",
            crate::scan::MAX_KEPT
        );
    }
    // One record per event id: the latest.
    let mut latest: BTreeMap<String, OwnedMessage> = BTreeMap::new();
    for m in found.records {
        let id = hookgate_event::decode_message(&m)
            .map(|e| e.id)
            .unwrap_or_else(|_| format!("{}:{}:{}", m.topic(), m.partition(), m.offset()));
        latest.insert(id, m);
    }
    if latest.is_empty() {
        match source {
            Source::Event(id) => bail!(
                "no event with id `{id}` on {} in the last {} (fix: widen --since, or check the id)",
                topics.join(", "),
                humantime::format_duration(since)
            ),
            Source::DeadLetters => return Ok(Vec::new()),
        }
    }
    let producer: FutureProducer = kafka.producer()?;
    let mut out = Vec::new();
    for (event_id, m) in latest {
        out.push(put_back(&producer, &m, event_id, &flow_id).await?);
    }
    Ok(out)
}

/// Puts one record back on its topic for `flow` alone: an event as read from its topic,
/// or a dead letter (back on the topic it names). The console's redrive uses this too.
pub async fn put_back(
    producer: &FutureProducer,
    m: &OwnedMessage,
    event_id: String,
    flow: &str,
) -> anyhow::Result<Redriven> {
    let dead_letter = header(m, DEAD_LETTER_FLOW).is_some();
    let origin = if dead_letter { "dead-letter" } else { "event" };
    let of = header(m, DEAD_LETTER_EXECUTION).map(str::to_string);
    let topic = if dead_letter {
        header(m, DEAD_LETTER_TOPIC)
            .with_context(|| {
                format!("the dead letter of event `{event_id}` does not name its topic")
            })?
            .to_string()
    } else {
        m.topic().to_string()
    };
    let headers = redrive_headers(m, flow, origin, of.as_deref());
    let mut record = FutureRecord::to(&topic)
        .payload(m.payload().unwrap_or_default())
        .headers(headers);
    if let Some(key) = m.key() {
        record = record.key(key);
    }
    let (partition, offset) = producer
        .send(record, PRODUCE_TIMEOUT)
        .await
        .map(|d| (d.partition, d.offset))
        .map_err(|(e, _)| anyhow::anyhow!("putting event `{event_id}` back on `{topic}`: {e}"))?;
    Ok(Redriven {
        event_id,
        topic,
        partition,
        offset,
        of,
    })
}

/// The record's own headers, without those of earlier dead letters and redrives, and
/// the redrive's.
fn redrive_headers(m: &OwnedMessage, flow: &str, origin: &str, of: Option<&str>) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    if let Some(existing) = m.headers() {
        for h in existing.iter() {
            if h.key.starts_with(DEAD_LETTER_PREFIX) || h.key.starts_with("hookgate-redrive-") {
                continue;
            }
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    for (key, value) in [
        (FLOW_HEADER, Some(flow)),
        (ORIGIN_HEADER, Some(origin)),
        (OF_HEADER, of),
    ] {
        if let Some(value) = value {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
    }
    headers
}
