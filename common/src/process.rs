//! The process's own metrics in Prometheus' text format, read from `/proc` at each
//! scrape: CPU seconds, resident and virtual memory, open and maximum file descriptors,
//! and the start time. The names are the ones Prometheus' client libraries use, so the
//! usual dashboards and alerts apply. On a system without `/proc` nothing is written.

use std::fmt::Write as _;

/// One process metric, already read.
struct Sample {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: f64,
}

/// Appends the process metrics to `out`.
pub fn render(out: &mut String) {
    for s in samples() {
        let _ = writeln!(out, "# HELP {} {}", s.name, s.help);
        let _ = writeln!(out, "# TYPE {} {}", s.name, s.kind);
        let _ = writeln!(out, "{} {}", s.name, s.value);
    }
}

fn samples() -> Vec<Sample> {
    let mut out = Vec::new();
    // SAFETY: sysconf only reads a system constant.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK) as f64,
            libc::sysconf(libc::_SC_PAGESIZE) as f64,
        )
    };
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // `fields[0]` is field 3 of proc(5): utime is 14, stime 15, starttime 22,
        // vsize 23, rss 24.
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        if let (Some(user), Some(system)) = (field(14), field(15)) {
            out.push(Sample {
                name: "process_cpu_seconds_total",
                kind: "counter",
                help: "User and system CPU time spent, in seconds.",
                value: (user + system) / ticks,
            });
        }
        if let Some(rss) = field(24) {
            out.push(Sample {
                name: "process_resident_memory_bytes",
                kind: "gauge",
                help: "Resident memory, in bytes.",
                value: rss * page,
            });
        }
        if let Some(vsize) = field(23) {
            out.push(Sample {
                name: "process_virtual_memory_bytes",
                kind: "gauge",
                help: "Virtual memory, in bytes.",
                value: vsize,
            });
        }
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())
        });
        if let (Some(start), Some(boot)) = (field(22), boot) {
            out.push(Sample {
                name: "process_start_time_seconds",
                kind: "gauge",
                help: "When the process started, in seconds since the Unix epoch.",
                value: boot + start / ticks,
            });
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.push(Sample {
            name: "process_open_fds",
            kind: "gauge",
            help: "Open file descriptors.",
            value: fds.count() as f64,
        });
    }
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse::<f64>().ok())
        });
    if let Some(max) = max_fds {
        out.push(Sample {
            name: "process_max_fds",
            kind: "gauge",
            help: "The soft limit of open file descriptors.",
            value: max,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_metrics_are_read_and_described() {
        let mut out = String::new();
        render(&mut out);
        let value = |name: &str| -> f64 {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} "))?.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in\n{out}"))
        };
        assert!(value("process_resident_memory_bytes") > 1_000_000.0);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        assert!(value("process_cpu_seconds_total") >= 0.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = value("process_start_time_seconds");
        assert!(
            started <= now + 1.0 && started > now - 86_400.0 * 30.0,
            "{started}"
        );
        for name in ["process_cpu_seconds_total", "process_open_fds"] {
            assert!(out.contains(&format!("# HELP {name} ")));
        }
    }
}
