//! hookgate-consumer: reads hookgate's event topics in a consumer group and runs flows on
//! them.
//!
//! # Layout
//! - [`source`]: the consumer group and the decode step;
//! - [`expression`]: the one expression language of conditions and templates;
//! - [`outbound`]: the SSRF-safe HTTP client of the `http` task (and of pollers).

pub mod expression;
pub mod outbound;
pub mod source;
