//! Telemetry's one home: metric names, the recorder functions the pipeline calls, and the
//! Prometheus rendering for the admin listener.
//!
//! Labels are bounded: a hook id (from config) and an outcome (a closed set). Never a
//! path, an address or anything from a request.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics::{counter, gauge, Counter, Gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const REQUESTS: &str = "hookgate_requests_total";
pub const REQUEST_SECONDS: &str = "hookgate_request_duration_seconds";
pub const DELIVERY_SECONDS: &str = "hookgate_kafka_delivery_seconds";
pub const DELIVERY_ERRORS: &str = "hookgate_kafka_delivery_errors_total";
pub const PRODUCER_QUEUE: &str = "hookgate_kafka_producer_queue";
pub const PRODUCER_REPLACED: &str = "hookgate_kafka_producer_replaced_total";
pub const AUTH_FAILURES: &str = "hookgate_auth_failures_total";
pub const RATE_LIMITED: &str = "hookgate_rate_limited_total";
pub const SHED: &str = "hookgate_shed_total";
pub const IN_FLIGHT: &str = "hookgate_in_flight_requests";
pub const PAUSED: &str = "hookgate_paused_connections";
pub const BODY_BYTES: &str = "hookgate_request_body_bytes";
pub const RELOADS: &str = "hookgate_config_reloads_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls reuse it).
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed (an embedding program's); then our
        // metrics go there and this handle renders nothing.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The metrics in Prometheus' text format.
pub fn render() -> String {
    let mut out = install().render();
    Histogram::render_all(&mut out);
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

/// A Prometheus histogram with fixed buckets: recording is two relaxed atomic adds, with
/// no allocation and nothing to drain. (The exporter's own histograms keep every sample
/// until an upkeep pass sorts them into buckets: an allocation every few samples and
/// memory that grows with traffic in between.) The sum is kept in whole `unit`s
/// (nanoseconds, bytes) and rendered in the metric's unit.
pub struct Histogram {
    name: &'static str,
    hook: Option<String>,
    bounds: &'static [f64],
    /// Per bucket, then one for above the last bound (`+Inf`); not cumulative.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
    unit: f64,
}

impl Histogram {
    /// The process-wide series of `name` for `hook` (`None`: no label), registered on
    /// first use; later calls, after a reload for instance, share it.
    fn series(
        name: &'static str,
        hook: Option<&str>,
        bounds: &'static [f64],
        unit: f64,
    ) -> Arc<Histogram> {
        let mut all = registry().lock().expect("histogram registry");
        if let Some(h) = all
            .iter()
            .find(|h| h.name == name && h.hook.as_deref() == hook)
        {
            return h.clone();
        }
        let h = Arc::new(Histogram {
            name,
            hook: hook.map(str::to_string),
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            unit,
        });
        all.push(h.clone());
        h
    }

    /// Records `value`, in the metric's unit.
    fn record(&self, value: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum
            .fetch_add((value * self.unit) as u64, Ordering::Relaxed);
    }

    fn render_all(out: &mut String) {
        let all = registry().lock().expect("histogram registry");
        let mut names: Vec<&'static str> = all.iter().map(|h| h.name).collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let _ = writeln!(out, "# TYPE {name} histogram");
            for h in all.iter().filter(|h| h.name == name) {
                h.render(out);
            }
            out.push('\n');
        }
    }

    fn render(&self, out: &mut String) {
        let label = |le: &str| match &self.hook {
            Some(hook) => format!("{{hook=\"{}\",le=\"{le}\"}}", escape(hook)),
            None => format!("{{le=\"{le}\"}}"),
        };
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or("+Inf".to_string(), f64::to_string);
            let _ = writeln!(out, "{}_bucket{} {cumulative}", self.name, label(&le));
        }
        let series = match &self.hook {
            Some(hook) => format!("{{hook=\"{}\"}}", escape(hook)),
            None => String::new(),
        };
        let sum = self.sum.load(Ordering::Relaxed) as f64 / self.unit;
        let _ = writeln!(out, "{}_sum{series} {sum}", self.name);
        let _ = writeln!(out, "{}_count{series} {cumulative}", self.name);
    }
}

fn registry() -> &'static Mutex<Vec<Arc<Histogram>>> {
    static ALL: OnceLock<Mutex<Vec<Arc<Histogram>>>> = OnceLock::new();
    ALL.get_or_init(Mutex::default)
}

/// A label value as Prometheus' text format quotes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Every `outcome` label value, in one place.
pub const OUTCOMES: &[&str] = &[
    "accepted",
    "handshake",
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
            duration: Histogram::series(REQUEST_SECONDS, Some(hook), SECONDS, 1e9),
            body: Histogram::series(BODY_BYTES, Some(hook), BYTES, 1.0),
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

/// A request refused by a rate limit: `limit` is `hook` or `client`.
pub fn rate_limited(hook: &str, limit: &'static str) {
    counter!(RATE_LIMITED, "hook" => hook.to_string(), "limit" => limit).increment(1);
}

/// A request shed for load: `reason` is `in_flight` or `queue_full`.
pub fn shed(reason: &'static str) {
    counter!(SHED, "reason" => reason).increment(1);
}

/// Requests being handled now.
pub fn in_flight(n: usize) {
    in_flight_gauge().set(n as f64);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets_sum_and_count() {
        let h = Histogram::series("test_render_seconds", Some("a\"b"), &[0.01, 0.1], 1e9);
        for v in [0.005, 0.01, 0.05, 3.0] {
            h.record(v);
        }
        // The same series after a reload.
        Histogram::series("test_render_seconds", Some("a\"b"), &[0.01, 0.1], 1e9).record(0.2);
        let text = render();
        let family: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "# TYPE test_render_seconds histogram")
            .take(6)
            .collect();
        assert_eq!(
            family,
            [
                "# TYPE test_render_seconds histogram",
                r#"test_render_seconds_bucket{hook="a\"b",le="0.01"} 2"#,
                r#"test_render_seconds_bucket{hook="a\"b",le="0.1"} 3"#,
                r#"test_render_seconds_bucket{hook="a\"b",le="+Inf"} 5"#,
                r#"test_render_seconds_sum{hook="a\"b"} 3.265"#,
                r#"test_render_seconds_count{hook="a\"b"} 5"#,
            ]
        );
    }
}
