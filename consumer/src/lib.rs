//! hookgate-consumer: reads hookgate's event topics in a consumer group.
//!
//! Today it decodes every event with the `hookgate-event` contract crate and logs it;
//! flows (conditions, outbound HTTP, Kafka produce) run on top of this source. Records
//! that are not events are logged with the reason and skipped, so one bad record never
//! stops a partition.
//!
//! # Layout
//! - [`source`]: the consumer group and the decode step.

pub mod source;
