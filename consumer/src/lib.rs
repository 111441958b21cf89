//! hookgate-consumer: reads hookgate's event topics in a consumer group and runs flows on
//! them — conditions, outbound HTTP calls, Kafka produces, logs — at least once, with
//! retries and a dead-letter topic.
//!
//! # Layout
//! - [`config`]: the consumer's TOML, layered and validated like the gateway's;
//! - [`flow`]: triggers, conditions, variables and tasks;
//! - [`task`]: one file per task kind (`http`, `kafka`, `log`);
//! - conditions and templates are `hookgate-expression`'s, the language the gateway's
//!   ingress filters share;
//! - [`request`]: a templated HTTP request, shared by the `http` task and pollers;
//!   [`connection`]: named APIs (base URL, auth, headers) that requests use;
//! - [`outbound`]: the SSRF-safe HTTP client of the `http` task and of pollers;
//! - [`poller`]: pull triggers that poll an API and publish an event, once per cluster;
//! - [`executor`]: runs one flow for one event and makes its execution record (the run
//!   log); [`dry_run`]: what it would do, with nothing sent;
//! - [`runtime`]: the consumer group, ordering, concurrency, commits and dead letters;
//! - [`reply`]: the answers flows give synchronous hooks' callers;
//! - [`redrive`]: one flow run again for chosen events, through their topic;
//! - [`scan`]: topics read back over a time window (how redrive and dry-run find events);
//! - [`subscription`]: which topics are read (listed, or matching a pattern, never the
//!   consumer's own);
//! - [`authorize`]: the OAuth2 authorization code grant, run once for a connection;
//! - [`admin`]: health, readiness and metrics; [`metrics`].

pub mod admin;
pub mod authorize;
pub mod config;
pub mod connection;
pub mod dry_run;
pub mod executor;
pub mod flow;
pub mod metrics;
pub mod outbound;
pub mod poller;
pub mod redrive;
pub mod reply;
pub mod request;
pub mod runtime;
pub mod scan;
pub mod subscription;
pub mod task;
