//! The consumer's metrics: flows run and their outcome, durations, task retries, dead
//! letters, consumer lag, polls by outcome, the pollers a replica runs and the outbound
//! connections opened. Labels are bounded: flow ids and task ids from config, and small
//! fixed sets.

use std::sync::OnceLock;
use std::time::Duration;

use hookgate_common::histogram::Histogram;
use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const FLOWS: &str = "hookgate_consumer_flows_total";
pub const FLOW_SECONDS: &str = "hookgate_consumer_flow_duration_seconds";
pub const TASK_RETRIES: &str = "hookgate_consumer_task_retries_total";
pub const DEAD_LETTERS: &str = "hookgate_consumer_dead_letters_total";
pub const LAG: &str = "hookgate_consumer_lag_messages";
pub const POLLS: &str = "hookgate_consumer_polls_total";
pub const POLLERS_OWNED: &str = "hookgate_consumer_pollers_owned";
pub const BUILD_INFO: &str = "hookgate_consumer_build_info";
pub const OUTBOUND_CONNECTIONS: &str = "hookgate_consumer_outbound_connections_total";

/// Every series and its `# HELP` text.
const HELP: &[(&str, &str)] = &[
    (FLOWS, "Flow runs finished, by flow and state."),
    (TASK_RETRIES, "Task attempts retried, by flow and task."),
    (
        DEAD_LETTERS,
        "Records sent to the dead-letter topic, by reason.",
    ),
    (
        LAG,
        "Messages behind the end of the assigned partitions, summed.",
    ),
    (POLLS, "Polls, by poller and outcome."),
    (POLLERS_OWNED, "Pollers this replica runs."),
    (BUILD_INFO, "Always 1; the labels tell the running version."),
    (
        OUTBOUND_CONNECTIONS,
        "TCP connections opened by http tasks, pollers and token requests (kept-alive ones count once).",
    ),
];

/// Upper bounds of the run-duration buckets, in seconds.
const FLOW_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs a Prometheus recorder unless the process already has one (the gateway's, in
/// `hookgate local`), in which case counters and gauges go there. Histograms are kept in
/// the process-wide registry of [`Histogram`] either way, so they render as histograms
/// with the same buckets whichever process renders them.
pub fn install() {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).ok().map(|()| handle)
    });
    describe();
}

/// Describes every series to whichever recorder the process has (ours, or the
/// gateway's in `hookgate local`), and sets the build info. Installs nothing.
pub fn describe() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        for (name, help) in HELP {
            metrics::describe_counter!(*name, *help);
        }
        Histogram::describe(FLOW_SECONDS, "Flow run durations, in seconds, by flow.");
        gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    });
}

/// The metrics in Prometheus' text format (only the histograms when another recorder
/// owns the counters and gauges).
pub fn render() -> String {
    let mut out = HANDLE
        .get()
        .and_then(|h| h.as_ref())
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    Histogram::render_all("hookgate_consumer_", &mut out);
    // In `hookgate local` the gateway's page already has the process's metrics.
    if HANDLE.get().is_some_and(Option::is_some) {
        hookgate_common::process::render(&mut out);
    }
    out
}

/// A flow run ended in `state` (`success`, `failed`, `skipped`).
pub fn flow_finished(flow: &str, state: &'static str, elapsed: Duration) {
    counter!(FLOWS, "flow" => flow.to_string(), "state" => state).increment(1);
    Histogram::series(FLOW_SECONDS, Some(("flow", flow)), FLOW_BUCKETS, 1e9)
        .record(elapsed.as_secs_f64());
}

pub fn task_retry(flow: &str, task: &str) {
    counter!(TASK_RETRIES, "flow" => flow.to_string(), "task" => task.to_string()).increment(1);
}

/// `reason`: `undecodable` or `flow_failed`.
pub fn dead_letter(reason: &'static str) {
    counter!(DEAD_LETTERS, "reason" => reason).increment(1);
}

pub fn consumer_lag(lag: i64) {
    gauge!(LAG).set(lag as f64);
}

/// `outcome`: `fired`, `quiet` (the condition did not fire) or `failed`.
pub fn poll(poller: &str, outcome: &'static str) {
    counter!(POLLS, "poller" => poller.to_string(), "outcome" => outcome).increment(1);
}

/// Pollers running on this replica.
pub fn pollers_owned(n: usize) {
    gauge!(POLLERS_OWNED).set(n as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_described_with_the_version_and_the_process() {
        install();
        flow_finished("shop.orders", "success", Duration::from_millis(3));
        task_retry("shop.orders", "book");
        dead_letter("flow_failed");
        consumer_lag(7);
        poll("stock", "fired");
        pollers_owned(1);
        let text = render();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).unwrap();
            assert!(text.contains(&format!("# HELP {name} ")), "{name}:\n{text}");
        }
        for series in [
            "hookgate_consumer_lag_messages 7",
            "hookgate_consumer_build_info{version=",
            "hookgate_consumer_flow_duration_seconds_bucket{flow=\"shop.orders\"",
            "process_resident_memory_bytes ",
        ] {
            assert!(text.contains(series), "{series} missing:\n{text}");
        }
    }
}
