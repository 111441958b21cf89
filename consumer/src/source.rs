//! The source: a consumer group over the event topics, each record decoded into an
//! [`Event`](hookgate_event::Event).

use std::time::Duration;

use anyhow::Context;
use hookgate_event::{decode, Event, Record};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::ClientConfig;

/// Where to read.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub brokers: String,
    pub group: String,
    pub topics: Vec<String>,
}

/// Joins the group and subscribes to the topics.
pub fn subscribe(config: &SourceConfig) -> anyhow::Result<StreamConsumer> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group)
        .set("enable.auto.commit", "true")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("max.poll.interval.ms", "300000")
        .create()
        .context("creating the Kafka consumer")?;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).context("subscribing")?;
    Ok(consumer)
}

/// Decodes one record into an event.
pub fn decode_message(msg: &BorrowedMessage<'_>) -> Result<Event, hookgate_event::DecodeError> {
    let headers: Vec<(&str, &[u8])> = msg
        .headers()
        .map(|hs| hs.iter().filter_map(|h| Some((h.key, h.value?))).collect())
        .unwrap_or_default();
    decode(Record {
        headers: &headers,
        value: msg.payload(),
    })
}

/// Reads and logs events until `stop` resolves.
pub async fn run(
    config: SourceConfig,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let consumer = subscribe(&config)?;
    tokio::pin!(stop);
    loop {
        let msg = tokio::select! {
            m = consumer.recv() => m,
            _ = &mut stop => break,
        };
        match msg {
            Ok(m) => match decode_message(&m) {
                Ok(event) => tracing::info!(
                    topic = m.topic(),
                    partition = m.partition(),
                    offset = m.offset(),
                    event_id = %event.id,
                    event_type = %event.event_type,
                    source = %event.source,
                    "event"
                ),
                Err(e) => {
                    tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), reason = %e, "skipped a record that is not an event")
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "kafka error");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    Ok(())
}
