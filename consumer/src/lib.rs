//! hookgate-consumer: reads hookgate's event topics in a consumer group and runs flows on
//! them — conditions, outbound HTTP calls, Kafka produces, logs — at least once, with
//! retries and a dead-letter topic.
//!
//! # Layout
//! - [`config`]: the consumer's TOML, layered and validated like the gateway's;
//! - [`flow`]: triggers, conditions, variables and tasks;
//! - [`task`]: one file per task kind (`http`, `kafka`, `log`);
//! - [`expression`]: the one expression language of conditions and templates;
//! - [`request`]: a templated HTTP request, shared by the `http` task and pollers;
//! - [`outbound`]: the SSRF-safe HTTP client of the `http` task and of pollers;
//! - [`poller`]: pull triggers that poll an API and publish an event, once per cluster;
//! - [`executor`]: runs one flow for one event and makes its execution record;
//! - [`runtime`]: the consumer group, ordering, concurrency, commits and dead letters;
//! - [`subscription`]: which topics are read (listed, or matching a pattern, never the
//!   consumer's own);
//! - [`admin`]: health, readiness and metrics; [`metrics`].

pub mod admin;
pub mod config;
pub mod executor;
pub mod expression;
pub mod flow;
pub mod metrics;
pub mod outbound;
pub mod poller;
pub mod request;
pub mod runtime;
pub mod subscription;
pub mod task;
