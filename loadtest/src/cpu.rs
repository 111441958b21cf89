//! Process CPU time and peak memory read from `/proc`.
//!
//! CPU time per request is the figure servers are compared on: on a 2-core
//! machine the harness and the server share the cores, so requests/s mostly
//! measures who got scheduled, while CPU microseconds per request measures
//! what the server had to spend.

use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Which process to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Process {
    Pid(u32),
    /// The harness itself, so a report can show whether the client was the
    /// bottleneck.
    This,
}

impl Process {
    fn proc_path(self, file: &str) -> String {
        match self {
            Process::Pid(pid) => format!("/proc/{pid}/{file}"),
            Process::This => format!("/proc/self/{file}"),
        }
    }
}

/// User plus system CPU time consumed so far by all threads of `process`.
pub fn cpu_time(process: Process) -> Result<Duration> {
    let path = process.proc_path("stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_stat_cpu_ticks(&stat).with_context(|| format!("parsing {path}"))?;
    Ok(ticks_to_duration(ticks, clock_ticks_per_second()))
}

/// Peak resident set size (`VmHWM`) in KiB.
pub fn peak_rss_kib(process: Process) -> Result<u64> {
    status_kib(process, "VmHWM")
}

/// Resident set size now (`VmRSS`) in KiB.
pub fn rss_kib(process: Process) -> Result<u64> {
    status_kib(process, "VmRSS")
}

fn status_kib(process: Process, field: &str) -> Result<u64> {
    let path = process.proc_path("status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_status_kib(&status, field).with_context(|| format!("no {field} line in {path}"))
}

/// File descriptors the process has open.
pub fn open_fds(process: Process) -> Result<usize> {
    let path = process.proc_path("fd");
    Ok(std::fs::read_dir(&path)
        .with_context(|| format!("reading {path}"))?
        .count())
}

/// `utime + stime`, in clock ticks, from the contents of `/proc/PID/stat`.
///
/// The process name (field 2) is in parentheses and may itself contain
/// spaces and parentheses, so fields are counted from the *last* `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Result<u64> {
    let Some(close) = stat.rfind(')') else {
        bail!("no ')' closing the process name");
    };
    // After the name come field 3 (state) onwards; utime and stime are
    // fields 14 and 15 of proc(5), i.e. the 12th and 13th after the name.
    let mut fields = stat[close + 1..].split_ascii_whitespace().skip(11);
    let mut next = |name: &str| -> Result<u64> {
        fields
            .next()
            .with_context(|| format!("missing {name}"))?
            .parse::<u64>()
            .with_context(|| format!("{name} is not a number"))
    };
    let utime = next("utime")?;
    let stime = next("stime")?;
    Ok(utime + stime)
}

/// The `VmHWM` figure of `/proc/PID/status`, in KiB.
pub fn parse_vm_hwm_kib(status: &str) -> Option<u64> {
    parse_status_kib(status, "VmHWM")
}

/// A `Name:   123 kB` line of `/proc/PID/status`, in KiB.
pub fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let mut parts = line[field.len() + 1..].split_ascii_whitespace();
    let value = parts.next()?.parse().ok()?;
    // The kernel always says kB; anything else means a format we don't know.
    (parts.next() == Some("kB")).then_some(value)
}

/// `sysconf(_SC_CLK_TCK)`: the unit of the times in `/proc/PID/stat`.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions and only reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // Linux has used 100 on every architecture for decades; fall back to it
    // rather than fail a run over a figure that cannot really be missing.
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

fn ticks_to_duration(ticks: u64, per_second: u64) -> Duration {
    Duration::from_micros(ticks.saturating_mul(1_000_000) / per_second)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shaped like a real line (52 fields), with a name holding spaces and
    // parentheses as `prctl(PR_SET_NAME)` allows.
    const STAT: &str = "4242 (my (odd) srv) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                        321 87 0 0 20 0 3 0 123456 987654321 2500 18446744073709551615 \
                        1 1 0 0 0 0 0 4096 17610 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_cpu_ticks_are_utime_plus_stime() {
        assert_eq!(parse_stat_cpu_ticks(STAT).unwrap(), 321 + 87);
    }

    #[test]
    fn stat_name_with_spaces_and_parentheses() {
        let line = "7 (a) b) (c d) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1";
        assert_eq!(parse_stat_cpu_ticks(line).unwrap(), 11);
    }

    #[test]
    fn stat_rejects_truncated_lines() {
        assert!(parse_stat_cpu_ticks("1 (x) S 1 2 3").is_err());
        assert!(parse_stat_cpu_ticks("garbage").is_err());
    }

    #[test]
    fn vm_hwm_is_read_in_kib() {
        let status = "Name:\tsrv\nVmPeak:\t  20000 kB\nVmHWM:\t    5120 kB\nVmRSS:\t 4000 kB\n";
        assert_eq!(parse_vm_hwm_kib(status), Some(5120));
        assert_eq!(parse_vm_hwm_kib("Name:\tkthread\n"), None);
    }

    #[test]
    fn ticks_convert_to_microseconds() {
        assert_eq!(
            ticks_to_duration(408, 100),
            Duration::from_micros(4_080_000)
        );
    }

    #[test]
    fn own_process_is_readable() {
        assert!(cpu_time(Process::This).is_ok());
        assert!(peak_rss_kib(Process::This).unwrap() > 0);
    }
}
