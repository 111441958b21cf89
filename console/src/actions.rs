//! What the console changes: redrive of dead letters. Each is read back from Kafka at
//! the offset the index recorded (the index may hold the event cut; Kafka has it whole)
//! and put back on its topic for its flow alone, as `hookgate-consumer redrive` does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value as Json};

use crate::Console;

/// How long reading one dead letter back may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Redrives the dead letters `seqs`; one result per dead letter, `ok` or `error`.
pub async fn redrive(console: &Arc<Console>, seqs: &[i64]) -> Vec<Json> {
    let mut out = Vec::new();
    for &seq in seqs {
        let result = redrive_one(console, seq).await;
        out.push(match result {
            Ok(r) => json!({
                "seq": seq, "ok": true, "event_id": r.event_id, "topic": r.topic,
                "partition": r.partition, "offset": r.offset, "of": r.of,
            }),
            Err(e) => json!({ "seq": seq, "ok": false, "error": e.to_string() }),
        });
    }
    out
}

async fn redrive_one(
    console: &Arc<Console>,
    seq: i64,
) -> anyhow::Result<hookgate_consumer::redrive::Redriven> {
    let c = console.clone();
    let (row, message) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let row = c
            .reader
            .dead_letter(seq)?
            .ok_or_else(|| anyhow::anyhow!("no dead letter {seq} in the index"))?;
        let origin = &row["origin"];
        let message = fetch(
            &c.settings.consumer.kafka.consumer_config(),
            origin["topic"].as_str().unwrap_or_default(),
            origin["partition"].as_i64().unwrap_or_default() as i32,
            origin["offset"].as_i64().unwrap_or_default(),
        )?;
        Ok((row, message))
    })
    .await??;
    let flow = row["flow"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("dead letter {seq} names no flow"))?;
    hookgate_consumer::flow::find(&console.settings.consumer.flows, flow)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let producer = console.producer()?;
    let event_id = row["event_id"].as_str().unwrap_or_default().to_string();
    let done = hookgate_consumer::redrive::put_back(producer, &message, event_id, flow).await?;
    let c = console.clone();
    tokio::task::spawn_blocking(move || {
        crate::index::Index::mark_redriven(
            c.reader.path(),
            seq,
            crate::index::millis(std::time::SystemTime::now()),
        )
    })
    .await??;
    Ok(done)
}

/// Reads the record at `offset` of a topic partition.
pub fn fetch(
    config: &rdkafka::ClientConfig,
    topic: &str,
    partition: i32,
    offset: i64,
) -> anyhow::Result<OwnedMessage> {
    let mut config = config.clone();
    config.set("group.id", "hookgate-console-fetch");
    config.set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config.create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + FETCH_TIMEOUT;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) if m.offset() == offset => return Ok(m.detach()),
            Some(Ok(m)) if m.offset() > offset => break,
            Some(Ok(_)) | None => {}
            Some(Err(e)) => anyhow::bail!("reading {topic}/{partition} at {offset}: {e}"),
        }
    }
    anyhow::bail!(
        "the record {topic}/{partition} at offset {offset} is no longer on Kafka (retention?)"
    )
}
