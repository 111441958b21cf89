//! Reading back what the gateway published: `assign()` on every partition from offset 0,
//! no consumer group, so reads are immediate and independent of other tests.

use std::time::{Duration, Instant};

use hookgate_event::{decode, DecodeError, Event, Record};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// A record as read back.
#[derive(Debug, Clone)]
pub struct Read {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Read {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).map(|v| std::str::from_utf8(v).unwrap())
    }

    /// Decodes the record with the contract crate.
    pub fn event(&self) -> Event {
        self.try_event().expect("a CloudEvent")
    }

    /// Decodes the record with the contract crate, or says why it cannot.
    pub fn try_event(&self) -> Result<Event, DecodeError> {
        let headers: Vec<(&str, &[u8])> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        decode(Record {
            headers: &headers,
            value: Some(&self.value),
        })
    }

    /// The structured-mode value as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.value).expect("structured value is JSON")
    }
}

fn consumer(brokers: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "hookgate-it-reader")
        .set("enable.auto.commit", "false")
        .set("allow.auto.create.topics", "false")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    assert!(partitions > 0, "topic {topic} has no partitions");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    consumer
}

fn owned(m: &OwnedMessage) -> Read {
    Read {
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().unwrap_or_default().to_vec(),
        headers: m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Reads records until `done` says so or `timeout` passes; returns what was read.
pub fn read_until(
    brokers: &str,
    topic: &str,
    timeout: Duration,
    mut done: impl FnMut(&[Read]) -> bool,
) -> Vec<Read> {
    let consumer = consumer(brokers, topic);
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while !done(&out) && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(owned(&m.detach())),
            Some(Err(e)) => eprintln!("read error (retrying): {e}"),
            None => {}
        }
    }
    out
}

/// Reads exactly `n` records (fails after `timeout` with fewer).
pub fn read_n(brokers: &str, topic: &str, n: usize) -> Vec<Read> {
    let got = read_until(brokers, topic, Duration::from_secs(20), |r| r.len() >= n);
    assert!(
        got.len() >= n,
        "read {} of {n} records from {topic}",
        got.len()
    );
    got
}

/// The event ids on a topic, read until `sentinel` arrives.
pub fn ids_until(brokers: &str, topic: &str, sentinel: &str) -> Vec<String> {
    let reads = read_until(brokers, topic, Duration::from_secs(30), |r| {
        r.last().is_some_and(|x| x.event().id == sentinel)
            || r.iter().any(|x| x.event().id == sentinel)
    });
    let ids: Vec<String> = reads.iter().map(|r| r.event().id).collect();
    assert!(
        ids.iter().any(|i| i == sentinel),
        "sentinel {sentinel} never arrived"
    );
    ids
}

/// Produces records synchronously (each flushed), for tests that feed a consumer.
pub struct Producer {
    inner: rdkafka::producer::BaseProducer,
}

impl Producer {
    pub fn new(brokers: &str) -> Producer {
        Producer {
            inner: ClientConfig::new()
                .set("bootstrap.servers", brokers)
                .create()
                .expect("producer"),
        }
    }

    /// Produces a structured-mode webhook event as the gateway makes it; returns its id.
    pub fn event(
        &self,
        topic: &str,
        key: Option<&str>,
        hook: &str,
        event_type: &str,
        body: &serde_json::Value,
    ) -> String {
        let (id, value) = webhook_event(hook, event_type, body);
        self.send(topic, key.map(str::as_bytes), &value, event_headers());
        id
    }

    /// Produces an arbitrary record.
    pub fn raw(&self, topic: &str, key: Option<&str>, value: &[u8]) {
        self.send(
            topic,
            key.map(str::as_bytes),
            value,
            rdkafka::message::OwnedHeaders::new(),
        );
    }

    /// Produces a record with headers.
    pub fn with_headers(
        &self,
        topic: &str,
        key: Option<&str>,
        value: &[u8],
        headers: &[(&str, &str)],
    ) {
        let mut h = rdkafka::message::OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(rdkafka::message::Header {
                key: k,
                value: Some(*v),
            });
        }
        self.send(topic, key.map(str::as_bytes), value, h);
    }

    fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: rdkafka::message::OwnedHeaders,
    ) {
        use rdkafka::producer::{BaseRecord, Producer as _};
        let mut record = BaseRecord::<[u8], [u8]>::to(topic)
            .payload(value)
            .headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        self.inner
            .send(record)
            .map_err(|(e, _)| e)
            .expect("enqueue");
        self.inner.flush(Duration::from_secs(10)).expect("flush");
    }
}

/// Creates a topic with `partitions` partitions.
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topic");
}

/// A structured-mode webhook event of `hook` as the gateway makes it, stamped now: its id
/// and the record value.
pub fn webhook_event(hook: &str, event_type: &str, body: &serde_json::Value) -> (String, Vec<u8>) {
    use hookgate_event::{
        structured, Attributes, BodyEncoding, Fields, WebhookRequest, WEBHOOK_SCHEMA,
    };
    let id = uuid::Uuid::now_v7().hyphenated().to_string();
    let source = format!("/hooks/{hook}");
    let time = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    let mut headers = Fields::new();
    headers.push("content-type", "application/json");
    let query = Fields::new();
    let attrs = Attributes {
        id: &id,
        source: &source,
        event_type,
        time: &time,
        dataschema: WEBHOOK_SCHEMA,
        hook,
        authscheme: "none",
        signed: None,
        deliveryid: None,
        traceparent: None,
        respond: None,
    };
    let request = WebhookRequest {
        method: "POST",
        path: &source,
        query: &query,
        headers: &headers,
    };
    let body_json = serde_json::to_vec(body).unwrap();
    let mut value = Vec::new();
    structured::encode_webhook(&attrs, &request, &body_json, BodyEncoding::Json, &mut value);
    (id, value)
}

/// The record headers of a structured-mode event.
pub fn event_headers() -> rdkafka::message::OwnedHeaders {
    rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
        key: "content-type",
        value: Some(hookgate_event::STRUCTURED_CONTENT_TYPE),
    })
}
