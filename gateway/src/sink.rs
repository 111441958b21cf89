//! Where accepted events go: Kafka, nowhere (the `null` sink, for benchmarks that
//! measure the gateway without a broker), or a list in memory (for tests that look at the
//! records the pipeline makes without a broker).
//!
//! [`Sink::enqueue`] hands a record over (the sink copies it); the [`Pending`] it returns
//! resolves only once the event is durable (the broker's acknowledgement) or has failed,
//! and the pipeline answers the sender from that outcome and nothing else.

pub mod kafka;
mod memory;

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};

pub use kafka::KafkaSink;
pub use memory::{MemorySink, StoredRecord};

/// The sink the gateway publishes to.
pub enum Sink {
    Kafka(KafkaSink),
    /// Accepts and drops every event after normalization. Benchmarks only: nothing is
    /// stored, so a 202 from a null sink promises nothing.
    Null,
    /// Keeps every record in memory, in publishing order. Tests and benches only.
    Memory(MemorySink),
}

/// One record to publish.
pub struct Record<'a> {
    pub topic: &'a str,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub headers: RecordHeaders,
}

impl Record<'_> {
    /// Bytes of value, key and headers: what counts toward the broker's record limit.
    pub fn len(&self) -> usize {
        self.value.len() + self.headers.len() + self.key.map_or(0, <[u8]>::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Record headers, built in place in the form the Kafka client sends.
pub struct RecordHeaders {
    /// Always present; taken only for the moment [`OwnedHeaders::insert`], which consumes
    /// the list, runs.
    headers: Option<OwnedHeaders>,
    bytes: usize,
}

impl RecordHeaders {
    pub fn with_capacity(n: usize) -> Self {
        RecordHeaders {
            headers: Some(OwnedHeaders::new_with_capacity(n)),
            bytes: 0,
        }
    }

    /// The headers as the Kafka client takes them.
    pub(crate) fn into_kafka(self) -> OwnedHeaders {
        self.headers.expect("record headers are present")
    }

    /// Bytes of names and values, as they count toward the record's size.
    pub fn len(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    pub fn push(&mut self, name: &str, value: &[u8]) {
        self.bytes += name.len() + value.len();
        let headers = self.headers.take().expect("record headers are present");
        self.headers = Some(headers.insert(Header {
            key: name,
            value: Some(value),
        }));
    }
}

/// Where a published record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// Why a record was not published, classified by what the sender should do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    /// The producer's queue is full: shed at once (503, retry later).
    #[error("producer queue is full")]
    QueueFull,
    /// No acknowledgement within the hook's ack timeout (503, retry later).
    #[error("no acknowledgement within {0:?}")]
    Timeout(Duration),
    /// A failure a retry may fix: broker down, leader moving, request timed out (503).
    #[error("delivery failed: {0}")]
    Transient(String),
    /// The record is larger than the broker accepts (413; retrying will not help).
    #[error("record too large for the broker: {0}")]
    TooLarge(String),
    /// Misconfiguration the sender cannot fix: authorization, unknown topic (500).
    #[error("delivery refused: {0}")]
    Permanent(String),
}

/// A record handed to the sink, whose outcome is not known yet.
pub enum Pending<'a> {
    Kafka(kafka::Pending<'a>),
    Done(Result<Delivered, PublishError>),
}

impl Pending<'_> {
    /// Waits at most `ack_timeout` for the record's acknowledgement.
    pub async fn wait(self, ack_timeout: Duration) -> Result<Delivered, PublishError> {
        match self {
            Pending::Kafka(k) => k.wait(ack_timeout).await,
            Pending::Done(result) => result,
        }
    }
}

impl Sink {
    /// Hands `record` to the sink, which keeps a copy of what it needs: the caller's
    /// buffers are free again when this returns.
    pub fn enqueue(&self, record: Record<'_>) -> Pending<'_> {
        match self {
            Sink::Kafka(k) => match k.enqueue(record) {
                Ok(pending) => Pending::Kafka(pending),
                Err(e) => Pending::Done(Err(e)),
            },
            Sink::Null => Pending::Done(Ok(Delivered {
                partition: -1,
                offset: -1,
            })),
            Sink::Memory(m) => Pending::Done(Ok(m.push(record))),
        }
    }

    pub fn is_kafka(&self) -> bool {
        matches!(self, Sink::Kafka(_))
    }

    /// Waits until every queued record is delivered or `timeout` passes (at shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Sink::Kafka(k) = self {
            k.flush(timeout);
        }
    }
}
