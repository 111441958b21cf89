//! The `hookgate` command's library: the commands that compose the gateway
//! (`hookgate-gateway`) with the flow consumer (`hookgate-consumer`) and Kafka.
//!
//! # Layout
//! - `main.rs`: the command line; `hookgate run` serves a config with
//!   [`hookgate_gateway::run`];
//! - [`local`]: `hookgate local`, gateway, consumer and an embedded broker in one process,
//!   with a loopback echo endpoint for the flows' calls;
//! - [`check`]: `hookgate check`, a config validated and its hooks listed;
//! - [`sign`]: `hookgate sign`, what a sender would send;
//! - [`tail`]: `hookgate tail`, events printed as they arrive.

pub mod check;
pub mod local;
pub mod sign;
pub mod tail;
