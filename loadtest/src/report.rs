//! Measurements: per-worker statistics, their merge, and the final report as
//! a table for people and JSON for scripts and charts.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::verify::Verification;

/// Latencies are recorded in microseconds from 1 µs to 60 s.
const LATENCY_MAX_US: u64 = 60_000_000;
const SIGNIFICANT_FIGURES: u8 = 3;

/// Version of the JSON layout, bumped when a field changes meaning.
pub const FORMAT: u32 = 1;

/// Errors by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Errors {
    /// No connection could be made for the request.
    pub connect: u64,
    /// No complete response within `--timeout`.
    pub timeout: u64,
    /// The connection failed while the request was being sent or answered.
    pub io: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.connect + self.timeout + self.io
    }
}

/// What one worker measured. Each worker owns one so the hot path takes no
/// lock; they are merged once the run is over.
#[derive(Clone, Debug)]
pub struct Stats {
    pub latency: Histogram<u64>,
    pub sent: u64,
    pub responses: BTreeMap<u16, u64>,
    pub errors: Errors,
    /// Open loop only: requests due within the measured window that their
    /// connection was still too far behind to send when the window closed.
    pub missed: u64,
    /// Completed responses per second of the measured window.
    pub per_second: Vec<u64>,
    /// 2xx responses per second of the measured window.
    pub ok_per_second: Vec<u64>,
    /// The longest time a non-2xx answer took, µs.
    pub slowest_failure_us: u64,
    /// Measured responses by request group (a scenario's hook), then status.
    pub by_group: BTreeMap<u16, BTreeMap<u16, u64>>,
    /// (group, event id) of every 2xx answer, warm-up included, when ids are collected.
    pub acks: Vec<(u16, Box<str>)>,
    /// 2xx answers that named no event id.
    pub acks_without_id: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, LATENCY_MAX_US, SIGNIFICANT_FIGURES)
                .expect("static histogram bounds are valid"),
            sent: 0,
            responses: BTreeMap::new(),
            errors: Errors::default(),
            missed: 0,
            per_second: Vec::new(),
            ok_per_second: Vec::new(),
            slowest_failure_us: 0,
            by_group: BTreeMap::new(),
            acks: Vec::new(),
            acks_without_id: 0,
        }
    }

    /// Records a response that took `latency` and completed `at` after the
    /// start of the measured window.
    pub fn record_response(&mut self, status: u16, group: u16, latency: Duration, at: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        // A response slower than the histogram's range is still a response;
        // clamping keeps it counted, at the top bucket.
        self.latency.saturating_record(us);
        if !(200..300).contains(&status) {
            self.slowest_failure_us = self.slowest_failure_us.max(us);
        }
        self.count_response(status, group, at);
    }

    /// Counts a response that completed `at` after the start of the measured window
    /// without timing it: its request was due before the window (an open loop
    /// catching up).
    pub fn count_response(&mut self, status: u16, group: u16, at: Duration) {
        *self.responses.entry(status).or_insert(0) += 1;
        *self
            .by_group
            .entry(group)
            .or_default()
            .entry(status)
            .or_insert(0) += 1;
        let second = usize::try_from(at.as_secs()).unwrap_or(usize::MAX);
        bump(&mut self.per_second, second);
        if (200..300).contains(&status) {
            bump(&mut self.ok_per_second, second);
        }
    }

    pub fn merge(&mut self, other: &Stats) {
        self.latency
            .add(&other.latency)
            .expect("histograms share bounds");
        self.sent += other.sent;
        for (&status, &count) in &other.responses {
            *self.responses.entry(status).or_insert(0) += count;
        }
        for (&group, statuses) in &other.by_group {
            let mine = self.by_group.entry(group).or_default();
            for (&status, &count) in statuses {
                *mine.entry(status).or_insert(0) += count;
            }
        }
        self.errors.connect += other.errors.connect;
        self.errors.timeout += other.errors.timeout;
        self.errors.io += other.errors.io;
        self.missed += other.missed;
        add_series(&mut self.per_second, &other.per_second);
        add_series(&mut self.ok_per_second, &other.ok_per_second);
        self.slowest_failure_us = self.slowest_failure_us.max(other.slowest_failure_us);
    }

    /// Responses of any status.
    pub fn completed(&self) -> u64 {
        self.responses.values().sum()
    }

    /// Responses with a 2xx status.
    pub fn succeeded(&self) -> u64 {
        self.responses.range(200..300).map(|(_, n)| n).sum()
    }
}

/// Counts one more at `second`, growing the series as needed.
fn bump(series: &mut Vec<u64>, second: usize) {
    if second >= series.len() {
        series.resize(second + 1, 0);
    }
    series[second] += 1;
}

/// Adds `other` to `series`, second by second.
fn add_series(series: &mut Vec<u64>, other: &[u64]) {
    if other.len() > series.len() {
        series.resize(other.len(), 0);
    }
    for (mine, theirs) in series.iter_mut().zip(other) {
        *mine += theirs;
    }
}

/// Percentiles a latency chart plots: dense where tails are (p90 to p99.999).
pub const CHART_PERCENTILES: &[f64] = &[
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999, 100.0,
];

fn percentiles(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    CHART_PERCENTILES
        .iter()
        .map(|&p| {
            let us = if p >= 100.0 {
                h.max()
            } else {
                h.value_at_percentile(p)
            };
            (p, us)
        })
        .collect()
}

/// Latency summary in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    /// `None` for an empty histogram, whose percentiles would read as 0 µs.
    pub fn from_histogram(h: &Histogram<u64>) -> Option<Self> {
        (!h.is_empty()).then(|| Self {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Each connection sends as soon as its previous response arrived.
    Closed,
    /// Requests follow a fixed timetable (`--rate`).
    Open,
}

/// CPU and memory of a process over the measured window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    pub cpu: Duration,
    /// Wall time between the two CPU samples.
    pub wall: Duration,
    pub peak_rss_kib: Option<u64>,
}

impl Usage {
    fn cpu_us_per_request(&self, completed: u64) -> Option<f64> {
        (completed > 0).then(|| self.cpu.as_secs_f64() * 1e6 / completed as f64)
    }

    /// CPU time over wall time: 1.0 is one core fully busy.
    fn cores(&self) -> Option<f64> {
        (!self.wall.is_zero()).then(|| self.cpu.as_secs_f64() / self.wall.as_secs_f64())
    }
}

/// How the run was set up, echoed into the report so a JSON file stands on
/// its own.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Setup {
    pub url: String,
    pub mode: Mode,
    pub http2: bool,
    pub connections: usize,
    /// HTTP/2 connections the workers were spread over; 0 for HTTP/1.1.
    pub h2_connections: usize,
    pub rate: Option<f64>,
    pub method: String,
    pub body_bytes: usize,
    pub warmup_s: f64,
    pub timeout_s: f64,
}

/// The final report. Field names are the JSON keys.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub format: u32,
    pub setup: Setup,
    pub requests_sent: u64,
    pub responses: BTreeMap<u16, u64>,
    pub errors: Errors,
    pub missed: u64,
    /// Length of the measured window, including the wait for the responses
    /// still in flight when it closed.
    pub duration_s: f64,
    /// Completed responses (any status) per measured second.
    pub requests_per_s: f64,
    pub latency_us: Option<Latency>,
    /// `[percentile, µs]` pairs from p0 to p100, for charts.
    pub latency_percentiles_us: Vec<(f64, u64)>,
    pub throughput_per_s: Vec<u64>,
    /// 2xx responses per measured second.
    pub ok_per_s: Vec<u64>,
    /// The longest time a non-2xx answer took, µs; absent when every answer was a 2xx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slowest_failure_us: Option<u64>,
    pub server_pid: Option<u32>,
    pub server_cpu_us: Option<u64>,
    pub server_cpu_us_per_request: Option<f64>,
    pub server_cpu_cores: Option<f64>,
    pub server_peak_rss_kib: Option<u64>,
    pub client_cpu_us_per_request: Option<f64>,
    pub client_cpu_cores: Option<f64>,
    /// Measured responses by request group, then status; a scenario names the groups
    /// in [`Report::scenario`].
    #[serde(skip)]
    pub by_group: BTreeMap<u16, BTreeMap<u16, u64>>,
    /// The scenario that was run, with the responses of each of its hooks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenario: Option<ScenarioReport>,
    /// The loss check, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

/// A scenario's part of the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub description: String,
    pub hooks: Vec<HookResponses>,
}

/// The measured responses of one hook of a scenario.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HookResponses {
    pub hook: String,
    pub responses: BTreeMap<u16, u64>,
}

impl Report {
    pub fn new(
        setup: Setup,
        stats: &Stats,
        measured: Duration,
        server: Option<(u32, Usage)>,
        client: Option<Usage>,
    ) -> Self {
        let completed = stats.completed();
        let secs = measured.as_secs_f64();
        Self {
            format: FORMAT,
            setup,
            requests_sent: stats.sent,
            responses: stats.responses.clone(),
            errors: stats.errors,
            missed: stats.missed,
            duration_s: secs,
            requests_per_s: if secs > 0.0 {
                completed as f64 / secs
            } else {
                0.0
            },
            latency_us: Latency::from_histogram(&stats.latency),
            latency_percentiles_us: percentiles(&stats.latency),
            throughput_per_s: stats.per_second.clone(),
            ok_per_s: stats.ok_per_second.clone(),
            slowest_failure_us: (stats.completed() > stats.succeeded())
                .then_some(stats.slowest_failure_us),
            server_pid: server.map(|(pid, _)| pid),
            server_cpu_us: server
                .map(|(_, u)| u64::try_from(u.cpu.as_micros()).unwrap_or(u64::MAX)),
            server_cpu_us_per_request: server.and_then(|(_, u)| u.cpu_us_per_request(completed)),
            server_cpu_cores: server.and_then(|(_, u)| u.cores()),
            server_peak_rss_kib: server.and_then(|(_, u)| u.peak_rss_kib),
            client_cpu_us_per_request: client.and_then(|u| u.cpu_us_per_request(completed)),
            client_cpu_cores: client.and_then(|u| u.cores()),
            by_group: stats.by_group.clone(),
            scenario: None,
            verification: None,
        }
    }

    /// Names the request groups after a scenario's hooks.
    pub fn set_scenario(&mut self, name: &str, description: &str, hooks: &[&str]) {
        let hooks = hooks
            .iter()
            .enumerate()
            .map(|(i, hook)| HookResponses {
                hook: hook.to_string(),
                responses: u16::try_from(i)
                    .ok()
                    .and_then(|g| self.by_group.get(&g).cloned())
                    .unwrap_or_default(),
            })
            .collect();
        self.scenario = Some(ScenarioReport {
            name: name.to_string(),
            description: description.to_string(),
            hooks,
        });
    }

    /// At least one 2xx response arrived.
    pub fn succeeded(&self) -> bool {
        self.responses.range(200..300).any(|(_, &n)| n > 0)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serialises")
    }
}

fn or_dash<T: fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.setup;
        let protocol = if s.http2 {
            format!("HTTP/2 over {} connections", s.h2_connections)
        } else {
            "HTTP/1.1".to_owned()
        };
        match (s.mode, s.rate) {
            (Mode::Open, Some(rate)) => writeln!(
                f,
                "open loop at {rate} req/s, {} connections, {protocol}",
                s.connections
            )?,
            _ => writeln!(f, "closed loop, {} connections, {protocol}", s.connections)?,
        }
        match &self.scenario {
            Some(scenario) => {
                writeln!(f, "  {:<22}{} at {}", "scenario", scenario.name, s.url)?;
            }
            None => {
                writeln!(f, "  {:<22}{} {}", "target", s.method, s.url)?;
                writeln!(f, "  {:<22}{} bytes", "body", s.body_bytes)?;
            }
        }
        writeln!(
            f,
            "  {:<22}{:.3} s (after {:.3} s warm-up)",
            "duration", self.duration_s, s.warmup_s
        )?;
        writeln!(f, "  {:<22}{}", "requests sent", self.requests_sent)?;
        let responses = if self.responses.is_empty() {
            "none".to_owned()
        } else {
            self.responses
                .iter()
                .map(|(status, n)| format!("{status}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(f, "  {:<22}{responses}", "responses")?;
        if let Some(scenario) = &self.scenario {
            for h in &scenario.hooks {
                let responses: Vec<String> = h
                    .responses
                    .iter()
                    .map(|(status, n)| format!("{status}: {n}"))
                    .collect();
                writeln!(f, "    {:<20}{}", h.hook, responses.join(", "))?;
            }
        }
        writeln!(
            f,
            "  {:<22}connect {}, timeout {}, io {}",
            "errors", self.errors.connect, self.errors.timeout, self.errors.io
        )?;
        if s.mode == Mode::Open {
            writeln!(f, "  {:<22}{}", "missed (behind)", self.missed)?;
        }
        writeln!(f, "  {:<22}{:.1}", "requests/s", self.requests_per_s)?;
        match &self.latency_us {
            Some(l) => {
                writeln!(f, "  latency (µs)")?;
                for (name, value) in [
                    ("p50", l.p50),
                    ("p90", l.p90),
                    ("p99", l.p99),
                    ("p99.9", l.p99_9),
                    ("max", l.max),
                ] {
                    writeln!(f, "    {name:<20}{value}")?;
                }
                writeln!(f, "    {:<20}{:.1}", "mean", l.mean)?;
                if let Some(us) = self.slowest_failure_us {
                    writeln!(f, "    {:<20}{us}", "slowest non-2xx")?;
                }
            }
            None => writeln!(f, "  {:<22}-", "latency (µs)")?,
        }
        if let Some(pid) = self.server_pid {
            writeln!(f, "  server (pid {pid})")?;
            writeln!(
                f,
                "    {:<20}{}",
                "CPU µs/request",
                or_dash(self.server_cpu_us_per_request.map(|v| format!("{v:.1}")))
            )?;
            writeln!(
                f,
                "    {:<20}{}",
                "CPU cores busy",
                or_dash(self.server_cpu_cores.map(|v| format!("{v:.2}")))
            )?;
            writeln!(
                f,
                "    {:<20}{}",
                "peak RSS (KiB)",
                or_dash(self.server_peak_rss_kib)
            )?;
        }
        writeln!(
            f,
            "  client CPU µs/req     {} ({} cores busy)",
            or_dash(self.client_cpu_us_per_request.map(|v| format!("{v:.1}"))),
            or_dash(self.client_cpu_cores.map(|v| format!("{v:.2}")))
        )?;
        match &self.verification {
            Some(v) => write!(f, "{v}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> Setup {
        Setup {
            url: "http://127.0.0.1:1/".to_owned(),
            mode: Mode::Closed,
            http2: false,
            connections: 4,
            h2_connections: 0,
            rate: None,
            method: "POST".to_owned(),
            body_bytes: 10,
            warmup_s: 0.0,
            timeout_s: 5.0,
        }
    }

    /// 1..=1000 µs once each, split over two workers to exercise the merge.
    fn stats() -> Stats {
        let mut a = Stats::new();
        let mut b = Stats::new();
        for us in 1..=1000u64 {
            let w = if us % 2 == 0 { &mut a } else { &mut b };
            w.sent += 1;
            let at = Duration::from_millis(us * 2 - 1);
            w.record_response(202, 0, Duration::from_micros(us), at);
        }
        b.errors.timeout = 3;
        b.sent += 3;
        a.record_response(500, 1, Duration::from_micros(1), Duration::ZERO);
        a.sent += 1;
        a.merge(&b);
        a
    }

    #[test]
    fn percentiles_come_from_the_merged_histogram() {
        let stats = stats();
        // Below 2048 µs a 3-significant-figure histogram is exact.
        let l = Latency::from_histogram(&stats.latency).unwrap();
        assert_eq!(l.p50, 500);
        assert_eq!(l.p90, 900);
        assert_eq!(l.p99, 990);
        assert_eq!(l.p99_9, 999);
        assert_eq!(l.max, 1000);
        assert!((l.mean - 500_501.0 / 1001.0).abs() < 0.01, "{}", l.mean);
    }

    #[test]
    fn empty_histogram_has_no_latency() {
        assert_eq!(Latency::from_histogram(&Stats::new().latency), None);
    }

    #[test]
    fn counts_rates_and_buckets() {
        let stats = stats();
        assert_eq!(stats.completed(), 1001);
        assert_eq!(stats.succeeded(), 1000);
        assert_eq!(stats.sent, 1004);
        // Completions were spread over 0..2 s at one every 2 ms, plus one at 0.
        assert_eq!(stats.per_second, vec![501, 500]);
        let usage = Usage {
            cpu: Duration::from_millis(20),
            wall: Duration::from_secs(2),
            peak_rss_kib: Some(4096),
        };
        let report = Report::new(
            setup(),
            &stats,
            Duration::from_secs(2),
            Some((7, usage)),
            None,
        );
        assert!((report.requests_per_s - 500.5).abs() < 1e-9);
        assert!((report.server_cpu_us_per_request.unwrap() - 20_000.0 / 1001.0).abs() < 1e-9);
        assert!((report.server_cpu_cores.unwrap() - 0.01).abs() < 1e-9);
        assert!(report.succeeded());
    }

    #[test]
    fn json_has_the_documented_shape() {
        let stats = stats();
        let usage = Usage {
            cpu: Duration::from_millis(20),
            wall: Duration::from_secs(2),
            peak_rss_kib: Some(4096),
        };
        let report = Report::new(
            setup(),
            &stats,
            Duration::from_secs(2),
            Some((7, usage)),
            None,
        );
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["format"], 1);
        assert_eq!(json["setup"]["mode"], "closed");
        assert_eq!(json["requests_sent"], 1004);
        assert_eq!(json["responses"]["202"], 1000);
        assert_eq!(json["responses"]["500"], 1);
        assert_eq!(json["errors"]["timeout"], 3);
        assert_eq!(json["errors"]["connect"], 0);
        assert_eq!(json["latency_us"]["p50"], 500);
        assert_eq!(json["latency_us"]["p99_9"], 999);
        assert_eq!(json["latency_us"]["max"], 1000);
        assert_eq!(json["throughput_per_s"], serde_json::json!([501, 500]));
        assert_eq!(json["server_pid"], 7);
        assert_eq!(json["server_cpu_us"], 20_000);
        assert_eq!(json["server_peak_rss_kib"], 4096);
        assert!(json["client_cpu_us_per_request"].is_null());
    }

    #[test]
    fn table_shows_the_figures() {
        let report = Report::new(setup(), &stats(), Duration::from_secs(2), None, None);
        let table = report.to_string();
        assert!(
            table.contains("closed loop, 4 connections, HTTP/1.1"),
            "{table}"
        );
        assert!(table.contains("202: 1000, 500: 1"), "{table}");
        assert!(table.contains("p99.9"), "{table}");
        assert!(!table.contains("server (pid"), "{table}");
    }

    #[test]
    fn no_2xx_is_no_success() {
        let mut stats = Stats::new();
        stats.record_response(503, 0, Duration::from_micros(5), Duration::ZERO);
        let report = Report::new(setup(), &stats, Duration::from_secs(1), None, None);
        assert!(!report.succeeded());
    }
}
