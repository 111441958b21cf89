//! The in-memory sink: records as the pipeline publishes them, kept in a list that tests
//! read back (the event's value and headers exactly as Kafka would get them).

use std::sync::Mutex;

use rdkafka::message::Headers;

use super::{Delivered, Record};

/// One published record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// Record headers in order; a header without a value is left out.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Every record published so far; one partition, offsets from 0.
#[derive(Debug, Default)]
pub struct MemorySink {
    records: Mutex<Vec<StoredRecord>>,
}

impl MemorySink {
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// Takes the records published since the last call.
    pub fn take(&self) -> Vec<StoredRecord> {
        std::mem::take(&mut *self.lock())
    }

    pub(super) fn push(&self, record: Record<'_>) -> Delivered {
        let headers = record
            .headers
            .into_kafka()
            .iter()
            .filter_map(|h| Some((h.key.to_string(), h.value?.to_vec())))
            .collect();
        let mut records = self.lock();
        records.push(StoredRecord {
            topic: record.topic.to_string(),
            key: record.key.map(<[u8]>::to_vec),
            value: record.value.to_vec(),
            headers,
        });
        Delivered {
            partition: 0,
            offset: records.len() as i64 - 1,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<StoredRecord>> {
        // A test that panicked while holding the lock left whole records behind.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}
