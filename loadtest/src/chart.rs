//! A report as an SVG picture: latency by percentile (on a "nines" axis, where the tail
//! gets as much room as the median) and completed requests per second over the run.

use std::fmt::Write;

use crate::report::{Mode, Report};

const WIDTH: f64 = 900.0;
const PANEL_HEIGHT: f64 = 260.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 60.0;
const GAP: f64 = 80.0;
/// The percentile axis ends at p99.999: five nines.
const MAX_NINES: f64 = 5.0;

/// The whole picture, as a standalone SVG document.
pub fn svg(report: &Report) -> String {
    let height = TOP + 2.0 * PANEL_HEIGHT + GAP + 50.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{}</text>"#,
        escape(&title(report))
    );
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="44" fill="#555">{}</text>"##,
        escape(&subtitle(report))
    );
    latency_panel(&mut out, report, TOP);
    throughput_panel(&mut out, report, TOP + PANEL_HEIGHT + GAP);
    out.push_str("</svg>\n");
    out
}

fn title(report: &Report) -> String {
    let s = &report.setup;
    let what = match &report.scenario {
        Some(scenario) => format!("scenario {}", scenario.name),
        None => format!("{} {}", s.method, s.url),
    };
    let load = match (s.mode, s.rate) {
        (Mode::Open, Some(rate)) => format!("open loop at {rate} req/s"),
        _ => "closed loop".to_owned(),
    };
    format!(
        "{what}: {load}, {} connections{}",
        s.connections,
        if s.http2 { ", HTTP/2" } else { "" }
    )
}

fn subtitle(report: &Report) -> String {
    let mut parts = vec![format!("{:.0} req/s", report.requests_per_s)];
    if let Some(l) = &report.latency_us {
        parts.push(format!(
            "p50 {} · p99 {} · p99.9 {} · max {}",
            ms(l.p50),
            ms(l.p99),
            ms(l.p99_9),
            ms(l.max)
        ));
    }
    if let Some(cpu) = report.server_cpu_us_per_request {
        parts.push(format!("server {cpu:.1} µs CPU/request"));
    }
    if let Some(v) = &report.verification {
        parts.push(format!(
            "{} acknowledged, {} missing",
            v.acknowledged, v.missing
        ));
    }
    parts.join("  |  ")
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// How many nines a percentile has: p90 is 1, p99 is 2, p99.9 is 3.
fn nines(percentile: f64) -> f64 {
    let rest = (100.0 - percentile) / 100.0;
    if rest <= 0.0 {
        MAX_NINES
    } else {
        (-rest.log10()).clamp(0.0, MAX_NINES)
    }
}

/// A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&v| v >= value)
        .unwrap_or(10.0 * magnitude)
}

fn frame(out: &mut String, top: f64, label: &str) {
    let w = WIDTH - LEFT - RIGHT;
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{w}" height="{PANEL_HEIGHT}" fill="none" stroke="#999"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#,
        top - 8.0,
        escape(label)
    );
}

fn latency_panel(out: &mut String, report: &Report, top: f64) {
    frame(out, top, "Latency by percentile (ms)");
    let points = &report.latency_percentiles_us;
    if points.is_empty() {
        no_data(out, top);
        return;
    }
    let max_ms = points.iter().map(|&(_, us)| us).max().unwrap_or(0) as f64 / 1000.0;
    let y_max = nice_ceiling(max_ms);
    let w = WIDTH - LEFT - RIGHT;
    let x = |p: f64| LEFT + nines(p) / MAX_NINES * w;
    let y = |v_ms: f64| top + PANEL_HEIGHT - v_ms / y_max * PANEL_HEIGHT;
    for (label, p) in [
        ("p0", 0.0),
        ("p90", 90.0),
        ("p99", 99.0),
        ("p99.9", 99.9),
        ("p99.99", 99.99),
        ("p99.999", 99.999),
    ] {
        let gx = x(p);
        let _ = writeln!(
            out,
            r##"<line x1="{gx:.1}" y1="{top}" x2="{gx:.1}" y2="{}" stroke="#eee"/><text x="{gx:.1}" y="{}" text-anchor="middle">{label}</text>"##,
            top + PANEL_HEIGHT,
            top + PANEL_HEIGHT + 16.0
        );
    }
    y_ticks(out, top, y_max, |v| format!("{v}"));
    let line: Vec<String> = points
        .iter()
        .map(|&(p, us)| format!("{:.1},{:.1}", x(p), y(us as f64 / 1000.0)))
        .collect();
    let _ = writeln!(
        out,
        r##"<polyline class="latency" points="{}" fill="none" stroke="#1f77b4" stroke-width="2"/>"##,
        line.join(" ")
    );
}

fn throughput_panel(out: &mut String, report: &Report, top: f64) {
    frame(out, top, "Completed requests per second");
    let seconds = &report.throughput_per_s;
    if seconds.is_empty() {
        no_data(out, top);
        return;
    }
    let y_max = nice_ceiling(seconds.iter().copied().max().unwrap_or(0) as f64);
    let w = WIDTH - LEFT - RIGHT;
    let bar = w / seconds.len() as f64;
    y_ticks(out, top, y_max, |v| format!("{v}"));
    for (i, &n) in seconds.iter().enumerate() {
        let h = n as f64 / y_max * PANEL_HEIGHT;
        let _ = writeln!(
            out,
            r##"<rect class="second" x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#2ca02c"><title>second {}: {n}</title></rect>"##,
            LEFT + i as f64 * bar + bar * 0.1,
            top + PANEL_HEIGHT - h,
            bar * 0.8,
            i + 1
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">second of the measured window (the last may be partial)</text>"#,
        LEFT + w / 2.0,
        top + PANEL_HEIGHT + 16.0
    );
}

fn y_ticks(out: &mut String, top: f64, y_max: f64, label: impl Fn(f64) -> String) {
    for i in 0..=4 {
        let v = y_max * f64::from(i) / 4.0;
        let gy = top + PANEL_HEIGHT - PANEL_HEIGHT * f64::from(i) / 4.0;
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{gy:.1}" x2="{}" y2="{gy:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            gy + 4.0,
            label(v)
        );
    }
}

fn no_data(out: &mut String, top: f64) {
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">no responses</text>"#,
        LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        top + PANEL_HEIGHT / 2.0
    );
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::report::{Setup, Stats};

    fn report() -> Report {
        let mut stats = Stats::new();
        for us in 1..=10_000u64 {
            stats.sent += 1;
            stats.record_response(
                202,
                0,
                Duration::from_micros(us),
                Duration::from_micros(us * 250),
            );
        }
        let setup = Setup {
            url: "http://127.0.0.1:1/hooks/<x>".to_owned(),
            mode: Mode::Open,
            http2: false,
            connections: 8,
            h2_connections: 0,
            rate: Some(4000.0),
            method: "POST".to_owned(),
            body_bytes: 1024,
            warmup_s: 0.0,
            timeout_s: 5.0,
        };
        Report::new(setup, &stats, Duration::from_millis(2500), None, None)
    }

    #[test]
    fn plots_every_percentile_and_every_second() {
        let svg = svg(&report());
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        let line = svg
            .lines()
            .find(|l| l.contains("class=\"latency\""))
            .unwrap();
        let points = line
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(
            points.split(' ').count(),
            crate::report::CHART_PERCENTILES.len()
        );
        // Latency never falls as the percentile rises: y (downwards) never grows.
        let ys: Vec<f64> = points
            .split(' ')
            .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        assert!(ys.windows(2).all(|w| w[1] <= w[0]), "{ys:?}");
        // 10 000 responses over 2.5 s: three bars, 3999, 4000 and 2001.
        assert_eq!(svg.matches("class=\"second\"").count(), 3);
        assert!(svg.contains("<title>second 3: 2001</title>"));
        // Text from the report is escaped.
        assert!(svg.contains("/hooks/&lt;x&gt;"));
        assert!(svg.contains("open loop at 4000 req/s, 8 connections"));
    }

    #[test]
    fn nines_and_axes() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines(100.0), MAX_NINES);
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(1.3), 2.0);
        assert_eq!(nice_ceiling(37.0), 50.0);
        assert_eq!(nice_ceiling(5000.0), 5000.0);
    }

    #[test]
    fn an_empty_report_says_so() {
        let mut r = report();
        r.latency_percentiles_us.clear();
        r.throughput_per_s.clear();
        assert_eq!(svg(&r).matches("no responses").count(), 2);
    }
}
