//! Prometheus histograms with fixed buckets, shared by the gateway's and the consumer's
//! metrics: recording is two relaxed atomic adds, with no allocation and nothing to drain.
//! (The exporter's own histograms keep every sample until an upkeep pass sorts them into
//! buckets: an allocation every few samples and memory that grows with traffic in
//! between; and they render as summaries in a process whose recorder was built without
//! buckets.) Every series lives in one process-wide registry, so a process that runs the
//! gateway and the consumer together renders both with their buckets.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// One histogram series: a metric name and at most one label.
pub struct Histogram {
    name: &'static str,
    label: Option<(&'static str, String)>,
    bounds: &'static [f64],
    /// Per bucket, then one for above the last bound (`+Inf`); not cumulative.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
    /// The sum is kept in whole units of `1 / unit` of the metric's unit (nanoseconds
    /// for seconds with `unit = 1e9`, bytes with `1.0`).
    unit: f64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Histogram({})", self.name)
    }
}

impl Histogram {
    /// The process-wide series of `name` with `label` (`None`: no label), registered on
    /// first use; later calls, after a reload for instance, share it.
    pub fn series(
        name: &'static str,
        label: Option<(&'static str, &str)>,
        bounds: &'static [f64],
        unit: f64,
    ) -> Arc<Histogram> {
        let mut all = registry().lock().expect("histogram registry");
        let same = |h: &&Arc<Histogram>| {
            h.name == name && h.label.as_ref().map(|(k, v)| (*k, v.as_str())) == label
        };
        if let Some(h) = all.iter().find(same) {
            return h.clone();
        }
        let h = Arc::new(Histogram {
            name,
            label: label.map(|(k, v)| (k, v.to_string())),
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            unit,
        });
        all.push(h.clone());
        h
    }

    /// Records `value`, in the metric's unit.
    pub fn record(&self, value: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum
            .fetch_add((value * self.unit) as u64, Ordering::Relaxed);
    }

    /// Gives the histogram `name` its `# HELP` text.
    pub fn describe(name: &'static str, help: &'static str) {
        let mut helps = help_texts().lock().expect("histogram help");
        if !helps.iter().any(|(n, _)| *n == name) {
            helps.push((name, help));
        }
    }

    /// Appends every registered histogram whose name starts with `prefix`, in
    /// Prometheus' text format.
    pub fn render_all(prefix: &str, out: &mut String) {
        let all = registry().lock().expect("histogram registry");
        let mut names: Vec<&'static str> = all
            .iter()
            .map(|h| h.name)
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort_unstable();
        names.dedup();
        let helps = help_texts().lock().expect("histogram help");
        for name in names {
            if let Some((_, help)) = helps.iter().find(|(n, _)| *n == name) {
                let _ = writeln!(out, "# HELP {name} {help}");
            }
            let _ = writeln!(out, "# TYPE {name} histogram");
            for h in all.iter().filter(|h| h.name == name) {
                h.render(out);
            }
            out.push('\n');
        }
    }

    fn render(&self, out: &mut String) {
        let series = self
            .label
            .as_ref()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)));
        let with_le = |le: &str| match &series {
            Some(s) => format!("{{{s},le=\"{le}\"}}"),
            None => format!("{{le=\"{le}\"}}"),
        };
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or("+Inf".to_string(), f64::to_string);
            let _ = writeln!(out, "{}_bucket{} {cumulative}", self.name, with_le(&le));
        }
        let series = series.map(|s| format!("{{{s}}}")).unwrap_or_default();
        let sum = self.sum.load(Ordering::Relaxed) as f64 / self.unit;
        let _ = writeln!(out, "{}_sum{series} {sum}", self.name);
        let _ = writeln!(out, "{}_count{series} {cumulative}", self.name);
    }
}

/// The `# HELP` texts given with [`Histogram::describe`].
fn help_texts() -> &'static Mutex<Vec<(&'static str, &'static str)>> {
    static HELP: OnceLock<Mutex<Vec<(&'static str, &'static str)>>> = OnceLock::new();
    HELP.get_or_init(Mutex::default)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets_sum_and_count() {
        let h = Histogram::series(
            "test_render_seconds",
            Some(("hook", "a\"b")),
            &[0.01, 0.1],
            1e9,
        );
        for v in [0.005, 0.01, 0.05, 3.0] {
            h.record(v);
        }
        // The same series after a reload.
        Histogram::series(
            "test_render_seconds",
            Some(("hook", "a\"b")),
            &[0.01, 0.1],
            1e9,
        )
        .record(0.2);
        let mut text = String::new();
        Histogram::render_all("test_render", &mut text);
        let family: Vec<&str> = text.lines().collect();
        assert_eq!(
            family,
            [
                "# TYPE test_render_seconds histogram",
                r#"test_render_seconds_bucket{hook="a\"b",le="0.01"} 2"#,
                r#"test_render_seconds_bucket{hook="a\"b",le="0.1"} 3"#,
                r#"test_render_seconds_bucket{hook="a\"b",le="+Inf"} 5"#,
                r#"test_render_seconds_sum{hook="a\"b"} 3.265"#,
                r#"test_render_seconds_count{hook="a\"b"} 5"#,
                "",
            ]
        );
    }

    #[test]
    fn a_series_without_a_label() {
        Histogram::series("test_plain_bytes", None, &[10.0], 1.0).record(11.0);
        let mut text = String::new();
        Histogram::render_all("test_plain", &mut text);
        assert_eq!(
            text,
            "# TYPE test_plain_bytes histogram\ntest_plain_bytes_bucket{le=\"10\"} 0\n\
             test_plain_bytes_bucket{le=\"+Inf\"} 1\ntest_plain_bytes_sum 11\n\
             test_plain_bytes_count 1\n\n"
        );
    }
}
