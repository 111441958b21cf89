//! Telemetry's one home: metric names, the recorder functions the pipeline calls, and the
//! Prometheus rendering for the admin listener.
//!
//! Labels are bounded: a hook id (from config) and an outcome (a closed set). Never a
//! path, an address or anything from a request.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hookgate_common::histogram::Histogram;
use metrics::{counter, gauge, Counter, Gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const REQUESTS: &str = "hookgate_requests_total";
pub const REQUEST_SECONDS: &str = "hookgate_request_duration_seconds";
pub const DELIVERY_SECONDS: &str = "hookgate_kafka_delivery_seconds";
pub const DELIVERY_ERRORS: &str = "hookgate_kafka_delivery_errors_total";
pub const PRODUCER_QUEUE: &str = "hookgate_kafka_producer_queue_messages";
pub const PRODUCER_REPLACED: &str = "hookgate_kafka_producer_replaced_total";
pub const AUTH_FAILURES: &str = "hookgate_auth_failures_total";
pub const RATE_LIMITED: &str = "hookgate_rate_limited_total";
pub const SHED: &str = "hookgate_shed_total";
pub const IN_FLIGHT: &str = "hookgate_in_flight_requests";
pub const PAUSED: &str = "hookgate_paused_connections";
pub const BODY_BYTES: &str = "hookgate_request_body_bytes";
pub const RELOADS: &str = "hookgate_config_reloads_total";
pub const REJECTION_RECORDS: &str = "hookgate_rejection_records_total";
pub const REJECTION_RECORDS_DROPPED: &str = "hookgate_rejection_records_dropped_total";
pub const BUILD_INFO: &str = "hookgate_build_info";
pub const FILTER_ERRORS: &str = "hookgate_filter_errors_total";
pub const CLUSTER_DEGRADED: &str = "hookgate_cluster_degraded";
pub const CLUSTER_REPLICAS: &str = "hookgate_cluster_replicas";
pub const CLUSTER_FALLBACKS: &str = "hookgate_cluster_fallbacks_total";

/// Every series and its `# HELP` text; histograms are rendered by [`Histogram`].
const HELP: &[(&str, &str)] = &[
    (REQUESTS, "Requests answered, by hook and outcome."),
    (
        DELIVERY_ERRORS,
        "Events the broker did not acknowledge, by hook.",
    ),
    (
        PRODUCER_QUEUE,
        "Messages and requests the Kafka producer holds, not yet acknowledged.",
    ),
    (
        PRODUCER_REPLACED,
        "Kafka producers replaced after a fatal error.",
    ),
    (
        AUTH_FAILURES,
        "Requests refused by authentication, by hook and reason.",
    ),
    (
        RATE_LIMITED,
        "Requests refused by a rate limit, by hook and limit (hook or client).",
    ),
    (SHED, "Requests shed for load (503), by reason."),
    (
        FILTER_ERRORS,
        "Requests whose ingress filter failed to evaluate (published anyway), by hook.",
    ),
    (IN_FLIGHT, "Requests being served now."),
    (
        PAUSED,
        "Connections left unread while the in-flight limit is reached.",
    ),
    (
        RELOADS,
        "Configuration reloads, by result (ok or rejected).",
    ),
    (
        REJECTION_RECORDS,
        "Rejection records published, by hook and reason.",
    ),
    (
        REJECTION_RECORDS_DROPPED,
        "Rejection records not made, by cause.",
    ),
    (BUILD_INFO, "Always 1; the labels tell the running version."),
    (
        CLUSTER_DEGRADED,
        "1 while the cluster's Redis cannot be used and each replica decides alone, else 0.",
    ),
    (
        CLUSTER_REPLICAS,
        "Live gateway replicas, as counted on the cluster's Redis at the last heartbeat.",
    ),
    (
        CLUSTER_FALLBACKS,
        "Requests decided by their replica alone because Redis could not be used, by feature (rate_limit, replay, idempotency).",
    ),
];

/// The histograms and their `# HELP` text.
const HISTOGRAM_HELP: &[(&str, &str)] = &[
    (
        REQUEST_SECONDS,
        "Time from the request's head to the answer, in seconds, by hook.",
    ),
    (
        BODY_BYTES,
        "Request body sizes as received, in bytes, by hook.",
    ),
    (
        DELIVERY_SECONDS,
        "Time from enqueueing an event to the broker's acknowledgement, in seconds.",
    ),
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls reuse it).
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed (an embedding program's); then our
        // metrics go there and this handle renders nothing.
        let _ = metrics::set_global_recorder(recorder);
        for (name, help) in HELP {
            metrics::describe_counter!(*name, *help);
        }
        for (name, help) in HISTOGRAM_HELP {
            Histogram::describe(name, help);
        }
        gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle
    })
}

/// The metrics in Prometheus' text format, with the process's own.
pub fn render() -> String {
    let mut out = install().render();
    Histogram::render_all("hookgate_", &mut out);
    hookgate_common::process::render(&mut out);
    out
}

/// Upper bounds of the latency buckets, in seconds.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds of the body-size buckets, in bytes.
const BYTES: &[f64] = &[
    256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0,
];

/// Every `outcome` label value, in one place.
pub const OUTCOMES: &[&str] = &[
    "accepted",
    "handshake",
    "filtered",
    "polled",
    "not_found",
    "method_not_allowed",
    "unauthorized",
    "forbidden",
    "rate_limited",
    "too_large",
    "unsupported_encoding",
    "unsupported_media_type",
    "bad_request",
    "body_timeout",
    "shed",
    "idempotency_conflict",
    "queue_full",
    "ack_timeout",
    "delivery_failed",
    "delivery_refused",
];

/// One hook's metric handles, registered once so that recording on the hot path is an
/// atomic add, not a registry lookup with freshly allocated labels.
pub struct HookMetrics {
    requests: Vec<Counter>,
    duration: Arc<Histogram>,
    body: Arc<Histogram>,
    delivery_errors: Counter,
}

impl std::fmt::Debug for HookMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HookMetrics")
    }
}

impl HookMetrics {
    pub fn new(hook: &str) -> HookMetrics {
        install();
        HookMetrics {
            requests: OUTCOMES
                .iter()
                .map(|o| counter!(REQUESTS, "hook" => hook.to_string(), "outcome" => *o))
                .collect(),
            duration: Histogram::series(REQUEST_SECONDS, Some(("hook", hook)), SECONDS, 1e9),
            body: Histogram::series(BODY_BYTES, Some(("hook", hook)), BYTES, 1.0),
            delivery_errors: counter!(DELIVERY_ERRORS, "hook" => hook.to_string()),
        }
    }

    /// The handles of requests that matched no hook.
    pub fn unmatched() -> &'static HookMetrics {
        static NONE: OnceLock<HookMetrics> = OnceLock::new();
        NONE.get_or_init(|| HookMetrics::new("(none)"))
    }

    /// One finished request.
    pub fn request(&self, outcome: &str, elapsed: Duration) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.requests[i].increment(1);
        }
        self.duration.record(elapsed.as_secs_f64());
    }

    /// A body as received.
    pub fn body_bytes(&self, n: usize) {
        self.body.record(n as f64);
    }

    /// One produce, from enqueue to acknowledgement or failure.
    pub fn delivery(&self, elapsed: Duration, ok: bool) {
        delivery_seconds().record(elapsed.as_secs_f64());
        if !ok {
            self.delivery_errors.increment(1);
        }
    }
}

fn delivery_seconds() -> &'static Histogram {
    static H: OnceLock<Arc<Histogram>> = OnceLock::new();
    H.get_or_init(|| Histogram::series(DELIVERY_SECONDS, None, SECONDS, 1e9))
}

fn in_flight_gauge() -> &'static Gauge {
    static G: OnceLock<Gauge> = OnceLock::new();
    G.get_or_init(|| gauge!(IN_FLIGHT))
}

/// Messages the producer holds.
pub fn producer_queue(n: i32) {
    gauge!(PRODUCER_QUEUE).set(f64::from(n));
}

/// A producer replaced after a fatal error.
pub fn producer_replaced() {
    counter!(PRODUCER_REPLACED).increment(1);
}

/// A request that failed authentication, by reason (`missing`, `malformed`, `mismatch`,
/// `timestamp`, `replay`).
pub fn auth_failure(hook: &str, reason: &'static str) {
    counter!(AUTH_FAILURES, "hook" => hook.to_string(), "reason" => reason).increment(1);
}

/// A request whose ingress filter failed to evaluate.
pub fn filter_error(hook: &str) {
    counter!(FILTER_ERRORS, "hook" => hook.to_string()).increment(1);
}

/// A request refused by a rate limit: `limit` is `hook` or `client`.
pub fn rate_limited(hook: &str, limit: &'static str) {
    counter!(RATE_LIMITED, "hook" => hook.to_string(), "limit" => limit).increment(1);
}

/// A request shed for load: `reason` is `in_flight` or `queue_full`.
pub fn shed(reason: &'static str) {
    counter!(SHED, "reason" => reason).increment(1);
}

/// A request took a place in flight.
pub fn admitted() {
    in_flight_gauge().increment(1.0);
}

/// A request in flight finished, however it ended.
pub fn released() {
    in_flight_gauge().decrement(1.0);
}

fn paused_gauge() -> &'static Gauge {
    static G: OnceLock<Gauge> = OnceLock::new();
    G.get_or_init(|| gauge!(PAUSED))
}

/// A connection left unread while the in-flight limit is reached.
pub fn connection_paused() {
    paused_gauge().increment(1.0);
}

/// A paused connection read again.
pub fn connection_resumed() {
    paused_gauge().decrement(1.0);
}

/// A configuration reload: `result` is `ok` or `rejected`.
pub fn reload(result: &'static str) {
    counter!(RELOADS, "result" => result).increment(1);
}

/// A rejection record published for `hook` (`(none)`: a path that matched no hook).
pub fn rejection_record(hook: &str, reason: &'static str) {
    counter!(REJECTION_RECORDS, "hook" => hook.to_string(), "reason" => reason).increment(1);
}

/// A rejection record not made: `cause` is `rate_limited` (its bucket was empty) or
/// `queue_full` (the producer could not take it).
pub fn rejection_record_dropped(cause: &'static str) {
    counter!(REJECTION_RECORDS_DROPPED, "cause" => cause).increment(1);
}

/// Whether the cluster's Redis is unusable (requests decided by each replica alone).
pub fn cluster_degraded(degraded: bool) {
    gauge!(CLUSTER_DEGRADED).set(if degraded { 1.0 } else { 0.0 });
}

/// Live replicas counted on Redis.
pub fn cluster_replicas(n: u32) {
    gauge!(CLUSTER_REPLICAS).set(f64::from(n));
}

/// A request decided without Redis: `feature` is `rate_limit`, `replay` or `idempotency`.
pub fn cluster_fallback(feature: &'static str) {
    counter!(CLUSTER_FALLBACKS, "feature" => feature).increment(1);
}
