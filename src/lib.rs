//! hookgate: a webhook ingress gateway. It authenticates each request, turns it into one
//! CloudEvents event, publishes it to Kafka, and answers the sender only once the broker
//! has acknowledged it.
//!
//! # Layout
//! The data path, in the order a request meets it:
//! - [`server`]: accepts connections (bounded), speaks HTTP/1.1 and HTTP/2 via hyper;
//! - [`pipeline`]: the request handler, top to bottom: route → auth → limits → body →
//!   normalize → publish → answer;
//! - [`router`]: path → [`hook::Hook`];
//! - [`auth`]: one file per scheme;
//! - [`normalize`]: body → `data.body`, one file per content type;
//! - `hookgate_event` (the `event/` crate): the wire contract, encoded once per request;
//! - [`sink`]: Kafka (or the benchmark-only null sink), awaiting acknowledgements;
//! - [`error`]: the one mapping from a refusal to an HTTP answer.
//!
//! Around it: [`config`] (layered, strict, validated before any port is bound),
//! [`topics`] and [`health`] (startup checks and readiness), [`admin`] (health, readiness,
//! metrics), [`metrics`], [`shutdown`], and [`local`] (`hookgate local`: everything in one
//! process with an embedded broker).

pub mod admin;
pub mod auth;
pub mod check;
pub mod config;
pub mod error;
pub mod handshake;
pub mod health;
pub mod hook;
pub mod local;
pub mod metrics;
pub mod normalize;
pub mod pipeline;
pub mod replay;
pub mod router;
pub mod server;
pub mod shutdown;
pub mod sign;
pub mod sink;
pub mod tail;
pub mod topics;

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::Settings;
use crate::health::Health;
use crate::pipeline::{Gateway, Limits};
use crate::shutdown::Shutdown;
use crate::sink::{KafkaSink, Sink};
use crate::topics::Topics;

/// The bound listeners the gateway serves on (bound by the caller, after validation, so
/// tests can pass `127.0.0.1:0`).
pub struct Listeners {
    pub http: TcpListener,
    pub admin: TcpListener,
}

/// Which sink to publish to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SinkKind {
    #[default]
    Kafka,
    /// Accept and drop: for benchmarks only.
    Null,
}

/// Runs the gateway until `shutdown`: checks (or creates) the hook topics, serves the
/// webhook and admin listeners, then drains and flushes the producer.
pub async fn run(
    settings: Settings,
    listeners: Listeners,
    sink_kind: SinkKind,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    metrics::install();
    let health = Arc::new(Health::new());
    let sink = match sink_kind {
        SinkKind::Kafka => {
            let topics = Topics::new(&settings.kafka)?;
            let wanted = hook_topics(&settings);
            topics
                .ensure(&settings.hooks, &wanted, &settings.kafka)
                .await?;
            health.set_metadata(Ok(Vec::new()));
            tokio::spawn(topics.watch(wanted, health.clone(), shutdown.clone()));
            Sink::Kafka(KafkaSink::new(&settings.kafka, health.clone())?)
        }
        SinkKind::Null => {
            tracing::warn!("null sink: events are dropped after normalization (benchmarks only)");
            health.set_metadata(Ok(Vec::new()));
            Sink::Null
        }
    };
    let limits = Limits {
        max_in_flight: settings.server.max_in_flight,
        body_read_timeout: settings.server.body_read_timeout.get(),
        max_record_bytes: usize::try_from(settings.kafka.properties.message_max_bytes())
            .unwrap_or(usize::MAX),
    };
    let gateway = Arc::new(Gateway::new(settings.hooks, sink, limits));

    let admin = tokio::spawn(server::serve(
        listeners.admin,
        settings.server.clone(),
        move |req| {
            let health = health.clone();
            async move { admin::handle(&req, &health) }
        },
        shutdown.clone(),
    ));
    let gw = gateway.clone();
    server::serve(
        listeners.http,
        settings.server.clone(),
        move |req| {
            let gw = gw.clone();
            async move { gw.handle(req).await }
        },
        shutdown,
    )
    .await;
    let _ = admin.await;
    tracing::info!("flushing the producer");
    gateway.sink().flush(settings.server.shutdown_timeout.get());
    Ok(())
}

/// The distinct topics of the configured hooks.
pub fn hook_topics(settings: &Settings) -> Vec<String> {
    let mut topics: Vec<String> = settings.hooks.iter().map(|h| h.topic.clone()).collect();
    topics.sort();
    topics.dedup();
    topics
}
