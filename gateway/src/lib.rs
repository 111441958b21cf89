//! The hookgate gateway: a webhook ingress gateway. It authenticates each request, turns
//! it into one CloudEvents event, publishes it to Kafka, and answers the sender only once
//! the broker has acknowledged it. The `hookgate` command (the top-level package) runs it,
//! alone or with the flow consumer and an embedded broker (`hookgate local`).
//!
//! # Layout
//! The data path, in the order a request meets it:
//! - [`server`]: accepts connections (bounded), speaks HTTP/1.1 and HTTP/2 via hyper;
//! - [`pipeline`]: the request handler, top to bottom: route → auth → limits → body →
//!   normalize → [`filter`] → publish → answer;
//! - [`router`]: path → [`hook::Hook`];
//! - [`auth`]: one file per scheme;
//! - [`normalize`]: body → `data.body`, one file per content type; [`json`]: the one-pass
//!   JSON scan that validates bodies and finds values by pointer;
//! - [`envelope`]: the admitted request as a record (key, type, redacted fields, trace
//!   context, time and id), encoded once per request with `hookgate_event` (the `event/`
//!   crate, the wire contract);
//! - [`sink`]: Kafka (or the benchmark-only null sink), awaiting acknowledgements;
//! - [`error`]: the one mapping from a refusal to an HTTP answer.
//!
//! Around it: [`config`] (layered, strict, validated before any port is bound; it builds
//! the runtime types the data path uses, [`hook::Hook`] among them), [`in_flight`] (the
//! in-flight limit, which also pauses idle connections while reached), [`reload`]
//! (SIGHUP and `POST /reload`), [`ratelimit`] and [`client`] (per-hook and per-client
//! limits, source allowlists), [`replay`] (delivery ids already accepted), [`cluster`]
//! (replay claims and rate limits shared by the replicas on Redis), [`trace`] (a
//! request's spans, when traces are exported), [`handshake`] (provider endpoint checks),
//! [`tls`], [`topics`] and [`health`] (startup checks and readiness), [`admin`] (health,
//! readiness, metrics, reload), [`metrics`], [`filter`] (ingress filters), [`replies`]
//! (synchronous hooks: flows' answers and `GET /executions/{id}`), [`shutdown`], [`hex`]
//! (the hex digits signatures and escapes use), and [`sender`]
//! (what a sender sends, signed: for trying a hook and for the load harness).

pub mod admin;
pub mod auth;
pub mod client;
pub mod cluster;
pub mod config;
pub mod envelope;
pub mod error;
pub mod filter;
pub mod handshake;
pub mod health;
pub mod hex;
pub mod hook;
pub mod idempotency;
pub mod in_flight;
pub mod json;
pub mod metrics;
pub mod normalize;
pub mod pipeline;
pub mod ratelimit;
pub mod rejections;
pub mod reload;
pub mod replay;
pub mod replies;
pub mod router;
pub mod sender;
pub mod server;
pub mod shutdown;
pub mod sink;
pub mod tls;
pub mod topics;
pub mod trace;

use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::net::TcpListener;

use crate::admin::Admin;
use crate::config::Loaded;
use crate::health::Health;
use crate::pipeline::{Gateway, Limits, Live};
use crate::rejections::Rejections;
use crate::reload::Reloader;
use crate::shutdown::Shutdown;
use crate::sink::{KafkaSink, Sink};
use crate::topics::Topics;
use hookgate_common::config::SecretSet;

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
/// webhook and admin listeners, reloads on SIGHUP or `POST /reload`, then drains and
/// flushes the producer.
pub async fn run(
    loaded: Loaded,
    listeners: Listeners,
    sink_kind: SinkKind,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    metrics::install();
    let Loaded {
        source,
        env,
        config,
        settings,
    } = loaded;
    if let Some(t) = &settings.telemetry {
        hookgate_common::telemetry::install(t, "hookgate-gateway");
    }
    let health = Arc::new(Health::new());
    let sink = match sink_kind {
        SinkKind::Kafka => {
            let topics = Topics::new(&settings.kafka)?;
            let wanted = crate::topics::hook_topics(&settings.hooks);
            topics
                .ensure(
                    &settings.hooks,
                    settings.rejections_topic(),
                    &settings.topics(),
                    &settings.kafka,
                )
                .await?;
            health.set_metadata(Ok(Vec::new()));
            let sink = KafkaSink::new(&settings.kafka, health.clone())?;
            sink.warm(&wanted, settings.kafka.connect_timeout).await;
            tokio::spawn(topics.watch(wanted, health.clone(), shutdown.clone()));
            Sink::Kafka(sink)
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
    let tls = match &settings.server.tls {
        Some(t) => Some(Arc::new(ArcSwap::new(
            tls::load(t, settings.server.http2).map_err(|e| anyhow::anyhow!("server.tls: {e}"))?,
        ))),
        None => None,
    };
    let reload_token = Arc::new(ArcSwapOption::new(
        settings
            .admin
            .reload_token
            .as_ref()
            .map(|r| r.resolve(&env))
            .transpose()
            .map_err(|e| anyhow::anyhow!("admin.reload_token: {e}"))?
            .map(|s| Arc::new(SecretSet::new(&[s]))),
    ));
    let server_cfg = settings.server.clone();
    let mut gateway = Gateway::new(
        Live::new(settings.hooks, settings.trusted_proxies),
        sink,
        limits,
    );
    if let Some(rejections) = &settings.rejections {
        gateway = gateway.with_rejections(Rejections::new(rejections));
    }
    if let Some(shared) = &settings.cluster {
        let cluster = crate::cluster::Cluster::new(shared)?;
        cluster.start(shutdown.clone());
        tracing::info!(redis = %shared.address, "replicas share replay claims and rate limits on Redis");
        gateway = gateway.with_cluster(cluster);
    }
    if sink_kind == SinkKind::Kafka {
        let client =
            crate::sink::kafka::base_config(&settings.kafka.brokers, &settings.kafka.properties);
        let replies = Arc::new(crate::replies::Replies::new(&settings.replies, client));
        gateway = gateway.with_replies(replies, shutdown.clone());
    }
    let gateway = Arc::new(gateway);
    let reloader = Arc::new(Reloader::new(
        matches!(source, hookgate_common::config::Source::File(_)).then_some(source),
        env,
        config,
        gateway.clone(),
        tls.clone(),
        reload_token.clone(),
    ));
    tokio::spawn(reload_on_sighup(reloader.clone(), shutdown.clone()));
    tokio::spawn(watch_producer_queue(gateway.clone(), shutdown.clone()));

    // Shutdown in phases a load balancer understands: at the signal `/readyz` turns 503
    // while the listener keeps serving for `drain_delay`; then it stops accepting and
    // in-flight requests get `shutdown_timeout`; the admin listener answers until the
    // producer is flushed.
    let (stop_serving, serving) = shutdown::channel();
    let (stop_admin, admin_serving) = shutdown::channel();
    tokio::spawn({
        let (health, shutdown, drain) = (
            health.clone(),
            shutdown.clone(),
            server_cfg.drain_delay.get(),
        );
        async move {
            shutdown.wait().await;
            health.set_draining();
            if !drain.is_zero() {
                tracing::info!(
                    drain_delay = ?drain,
                    "draining: /readyz answers 503; still serving until the delay ends"
                );
                tokio::time::sleep(drain).await;
            }
            stop_serving.trigger();
        }
    });
    let admin = Arc::new(Admin {
        health,
        reloader: Some(reloader),
        reload_token,
    });
    let admin_addr = listeners.admin.local_addr()?;
    let admin_task = tokio::spawn(server::serve(
        listeners.admin,
        // The admin listener stays on the shared runtime, whatever `server.threads` says.
        config::ServerConfig {
            threads: 0,
            ..server_cfg.clone()
        },
        None,
        None,
        move |req, _peer| {
            let admin = admin.clone();
            async move { admin.handle(req).await }
        },
        admin_serving,
    ));
    // Announced only now: the topics are checked and the producer is ready.
    tracing::info!(
        http = %listeners.http.local_addr()?,
        admin = %admin_addr,
        hooks = gateway.live().router.hooks().count(),
        "hookgate listening"
    );
    let gw = gateway.clone();
    server::serve(
        listeners.http,
        server_cfg.clone(),
        tls,
        Some(gateway.in_flight()),
        move |req, peer| {
            let gw = gw.clone();
            async move { gw.handle(req, Some(peer)).await }
        },
        serving,
    )
    .await;
    if let Some(cluster) = gateway.cluster() {
        // Event ids of the last requests' claims, so other replicas know them.
        cluster.flush_outbox().await;
    }
    tracing::info!("flushing the producer");
    let sink = gateway.clone();
    let timeout = server_cfg.shutdown_timeout.get();
    // librdkafka's flush blocks: off the runtime, so the admin listener still answers.
    let _ = tokio::task::spawn_blocking(move || {
        sink.sink().flush(timeout);
        hookgate_common::telemetry::flush(timeout);
    })
    .await;
    stop_admin.trigger();
    let _ = admin_task.await;
    Ok(())
}

/// Reloads on every SIGHUP until shutdown.
async fn reload_on_sighup(reloader: Arc<Reloader>, shutdown: Shutdown) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload with POST /reload instead");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP received; reloading the configuration");
                let _ = reloader.reload().await;
            }
            _ = shutdown.wait() => return,
        }
    }
}

/// Publishes the producer's queue depth once a second.
async fn watch_producer_queue(gateway: Arc<Gateway>, shutdown: Shutdown) {
    let Sink::Kafka(kafka) = gateway.sink() else {
        return;
    };
    loop {
        metrics::producer_queue(kafka.in_flight());
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = shutdown.wait() => return,
        }
    }
}
