//! Records read with rdkafka, decoded without copying their headers (the `rdkafka`
//! feature): what the flow consumer, `hookgate tail` and a downstream Rust consumer
//! would otherwise each write.

use rdkafka::message::{Headers, Message};

use crate::decode::{decode, DecodeError, Event, Record};

/// Decodes a record as read from Kafka: its headers (those without a value are left out)
/// and its value.
pub fn decode_message<M: Message>(msg: &M) -> Result<Event, DecodeError> {
    let headers: Vec<(&str, &[u8])> = msg
        .headers()
        .map(|hs| hs.iter().filter_map(|h| Some((h.key, h.value?))).collect())
        .unwrap_or_default();
    decode(Record {
        headers: &headers,
        value: msg.payload(),
    })
}
