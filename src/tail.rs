//! `hookgate tail TOPIC`: prints the events on a topic as they arrive, one JSON object per
//! line, so nobody needs another Kafka client to see what the gateway publishes.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use hookgate_event::decode_message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use hookgate_gateway::shutdown::Shutdown;

/// What to read and from where.
pub struct Options {
    pub brokers: String,
    /// librdkafka properties (security, SASL) from a gateway config, if one was given.
    pub properties: Option<hookgate_gateway::sink::kafka::ResolvedProperties>,
    pub topic: String,
    /// Start at the oldest event rather than the next one.
    pub from_beginning: bool,
    /// Stop after this many events.
    pub max: Option<u64>,
}

/// Reads `options.topic` until `shutdown` (or `max` events), printing each event.
pub async fn run(options: Options, shutdown: Shutdown) -> anyhow::Result<()> {
    let mut config = match &options.properties {
        Some(p) => hookgate_gateway::sink::kafka::base_config(&options.brokers, p),
        None => {
            let mut c = ClientConfig::new();
            c.set("bootstrap.servers", &options.brokers);
            c
        }
    };
    let consumer: BaseConsumer = config
        .set("group.id", "hookgate-tail")
        .set("enable.auto.commit", "false")
        .set("allow.auto.create.topics", "false")
        .create()
        .context("creating the Kafka client")?;
    let metadata = consumer
        .fetch_metadata(Some(&options.topic), Duration::from_secs(10))
        .with_context(|| format!("reading metadata from {}", options.brokers))?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == options.topic && t.error().is_none() && !t.partitions().is_empty())
        .with_context(|| format!("topic `{}` does not exist", options.topic))?;
    let start = if options.from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    let mut assignment = TopicPartitionList::new();
    for p in topic.partitions() {
        assignment.add_partition_offset(&options.topic, p.id(), start)?;
    }
    consumer.assign(&assignment)?;
    eprintln!(
        "reading {} ({} partition{}) from {}",
        options.topic,
        topic.partitions().len(),
        if topic.partitions().len() == 1 {
            ""
        } else {
            "s"
        },
        options.brokers
    );
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    while !shutdown.is_triggered() && options.max.is_none_or(|m| printed < m) {
        // Poll in short slices on a blocking thread so the runtime stays responsive.
        let line =
            tokio::task::block_in_place(|| match consumer.poll(Duration::from_millis(200)) {
                None => None,
                Some(Err(e)) => Some(Err(anyhow::anyhow!(e))),
                Some(Ok(msg)) => Some(Ok(render(&msg))),
            });
        match line {
            None => continue,
            Some(Err(e)) => eprintln!("kafka error: {e}"),
            Some(Ok(line)) => {
                let mut out = stdout.lock();
                writeln!(out, "{line}")?;
                out.flush()?;
                printed += 1;
            }
        }
    }
    Ok(())
}

/// One record as a line: the decoded event, or a note saying why it is not one.
pub fn render(msg: &impl Message) -> String {
    match decode_message(msg) {
        Ok(event) => event.to_json().to_string(),
        Err(e) => serde_json::json!({
            "error": e.to_string(),
            "partition": msg.partition(),
            "offset": msg.offset(),
        })
        .to_string(),
    }
}
