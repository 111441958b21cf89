//! Telemetry's one home: metric names, the recorder functions the pipeline calls, and the
//! Prometheus rendering for the admin listener.
//!
//! Labels are bounded: a hook id (from config) and an outcome (a closed set). Never a
//! path, an address or anything from a request.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const REQUESTS: &str = "hookgate_requests_total";
pub const REQUEST_SECONDS: &str = "hookgate_request_duration_seconds";
pub const DELIVERY_SECONDS: &str = "hookgate_kafka_delivery_seconds";
pub const DELIVERY_ERRORS: &str = "hookgate_kafka_delivery_errors_total";
pub const PRODUCER_QUEUE: &str = "hookgate_kafka_producer_queue";
pub const PRODUCER_REPLACED: &str = "hookgate_kafka_producer_replaced_total";
pub const AUTH_FAILURES: &str = "hookgate_auth_failures_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls reuse it).
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
            .expect("static bucket list is non-empty")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed (an embedding program's); then our
        // metrics go there and this handle renders nothing.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The metrics in Prometheus' text format.
pub fn render() -> String {
    install().render()
}

/// One finished request.
pub fn request(hook: &str, outcome: &'static str, elapsed: Duration) {
    let hook = if hook.is_empty() { "(none)" } else { hook };
    counter!(REQUESTS, "hook" => hook.to_string(), "outcome" => outcome).increment(1);
    histogram!(REQUEST_SECONDS, "hook" => hook.to_string()).record(elapsed.as_secs_f64());
}

/// One produce, from enqueue to acknowledgement or failure.
pub fn delivery(hook: &str, elapsed: Duration, ok: bool) {
    histogram!(DELIVERY_SECONDS).record(elapsed.as_secs_f64());
    if !ok {
        counter!(DELIVERY_ERRORS, "hook" => hook.to_string()).increment(1);
    }
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
