//! Building blocks shared by hookgate's gateway and its flow consumer.
//!
//! # Layout
//! - [`config`]: layered, strict configuration loading (embedded defaults → file →
//!   `HOOKGATE_<TABLE>__<KEY>` environment variables), problems reported with their TOML
//!   path and a fix, and the value types both configs use: durations, sizes and secret
//!   references.

pub mod config;
