//! Building blocks shared by hookgate's gateway and its flow consumer.
//!
//! # Layout
//! - [`config`]: layered, strict configuration loading (embedded defaults → file →
//!   `HOOKGATE_<TABLE>__<KEY>` environment variables), problems reported with their TOML
//!   path and a fix, and the value types both configs use: durations, sizes and secret
//!   references.
//! - [`histogram`]: Prometheus histograms with fixed buckets, for both binaries' metrics.
//! - [`logging`]: the logger both binaries install: text or JSON lines on stderr.
//! - [`net`]: address blocks, for allowlists and the outbound policy.
//! - [`process`]: the process's CPU, memory and file-descriptor metrics, from `/proc`.
//! - [`telemetry`]: W3C trace context and spans exported over OTLP, for both binaries.
//! - [`time`]: durations and RFC 3339 times as people write them, parsed in one place.

pub mod config;
pub mod histogram;
pub mod logging;
pub mod net;
pub mod process;
pub mod telemetry;
pub mod time;
