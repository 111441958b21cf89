//! `h2-abuse`: HTTP/2 connections that reset streams in a burst or send a header block
//! that never ends, beside the load.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use super::{p99_within, Gateway};
use crate::h2_abuse::{Attack, Outcome, ENHANCE_YOUR_CALM};
use crate::load::LoadConfig;
use crate::report::Report;
use crate::scenario::{run_during, Scenario};

/// How the gateway ended the connections of one kind of HTTP/2 abuse.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AbuseTally {
    pub connections: usize,
    /// Ended with GOAWAY(ENHANCE_YOUR_CALM), with another GOAWAY, closed without a
    /// GOAWAY, or not closed within [`ABUSE_PATIENCE`].
    pub goaway_calm: usize,
    pub goaway_other: usize,
    pub closed_without_goaway: usize,
    pub not_closed: usize,
    /// The most bytes one connection wrote before it was cut off, and the longest one
    /// stayed open, milliseconds.
    pub most_sent_bytes: usize,
    pub longest_open_ms: f64,
}

impl AbuseTally {
    fn add(&mut self, outcome: Outcome) {
        self.connections += 1;
        match outcome.goaway {
            Some(ENHANCE_YOUR_CALM) => self.goaway_calm += 1,
            Some(_) => self.goaway_other += 1,
            None if outcome.closed_after < ABUSE_PATIENCE => self.closed_without_goaway += 1,
            None => self.not_closed += 1,
        }
        self.most_sent_bytes = self.most_sent_bytes.max(outcome.sent);
        self.longest_open_ms = self
            .longest_open_ms
            .max(outcome.closed_after.as_secs_f64() * 1000.0);
    }

    /// Every connection was ended with a GOAWAY before it could write `max_bytes`.
    fn all_cut_off(&self, max_bytes: usize) -> bool {
        self.connections > 0
            && self.goaway_calm + self.goaway_other == self.connections
            && self.most_sent_bytes <= max_bytes
    }
}

/// What the HTTP/2 abusers did, and what they cost.
#[derive(Clone, Debug, Default, Serialize)]
pub struct H2AbuseFigures {
    /// Abusive clients at once, each opening one connection after another; half of them
    /// rapid-reset, half CONTINUATION-flood.
    pub abusers: usize,
    pub rapid_reset: AbuseTally,
    pub continuation_flood: AbuseTally,
    /// Connections that failed before the preface went out.
    pub connect_errors: usize,
    /// Legitimate traffic's p99 without and with the abuse, microseconds.
    pub baseline_p99_us: Option<u64>,
    pub attack_p99_us: Option<u64>,
    /// The gateway's CPU in cores busy, without and with the abuse.
    pub baseline_cores: Option<f64>,
    pub attack_cores: Option<f64>,
    /// The gateway's CPU spent per abusive connection: the difference of the two runs'
    /// CPU time over the abusive connections, microseconds.
    pub cpu_us_per_abusive_connection: Option<f64>,
    /// The gateway's resident memory (KiB) before the abuse and 2 s after it.
    pub rss_kib: [u64; 2],
}

impl H2AbuseFigures {
    /// Every abusive connection was ended by the gateway with a GOAWAY before it could
    /// write `max_bytes`, and (when `p99_factor` is given) the legitimate p99 stayed
    /// within that factor of the baseline's.
    pub fn passed(&self, max_bytes: usize, p99_factor: Option<f64>) -> bool {
        let p99_ok = p99_within(p99_factor, self.baseline_p99_us, self.attack_p99_us);
        self.rapid_reset.all_cut_off(max_bytes)
            && self.continuation_flood.all_cut_off(max_bytes)
            && p99_ok
    }

    fn add(&mut self, attack: Attack, outcome: std::io::Result<Outcome>) {
        match (attack, outcome) {
            (_, Err(_)) => self.connect_errors += 1,
            (Attack::RapidReset, Ok(o)) => self.rapid_reset.add(o),
            (Attack::ContinuationFlood, Ok(o)) => self.continuation_flood.add(o),
        }
    }
}

/// How long an abusive client waits for the gateway to close its connection.
const ABUSE_PATIENCE: Duration = Duration::from_secs(10);
/// What one abusive connection may write at most before the client gives up on it.
const ABUSE_LIMIT: usize = 64 << 20;

/// Runs the load on one gateway alone, then beside `abusers` clients that abuse HTTP/2
/// connections one after another until the load ends. Returns both reports.
pub async fn h2_abuse(
    scenario: &Scenario,
    config: &LoadConfig,
    gateway: &Gateway,
    abusers: usize,
) -> Result<(Report, Report, H2AbuseFigures)> {
    use crate::cpu::{rss_kib, Process};
    let server = gateway.start("").await?;
    let mut config = config.clone();
    config.server_pid = Some(server.pid());
    let baseline = crate::scenario::run(scenario, &config).await?;
    let process = Process::Pid(server.pid());
    let before = rss_kib(process)?;
    let path = scenario.mix.first_path();
    // The abuse fills the measured window, after the warm-up.
    let from = Instant::now() + config.warmup;
    let until = from + config.duration;
    let abuse = async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..abusers {
            let attack = if i % 2 == 0 {
                Attack::RapidReset
            } else {
                Attack::ContinuationFlood
            };
            let (addr, path) = (gateway.addr, path.to_string());
            tasks.spawn(async move {
                tokio::time::sleep_until(from.into()).await;
                let mut outcomes = Vec::new();
                while Instant::now() < until {
                    outcomes.push(attack.run(addr, &path, ABUSE_LIMIT, ABUSE_PATIENCE).await);
                }
                (attack, outcomes)
            });
        }
        let mut figures = H2AbuseFigures {
            abusers,
            ..H2AbuseFigures::default()
        };
        while let Some(done) = tasks.join_next().await {
            if let Ok((attack, outcomes)) = done {
                for outcome in outcomes {
                    figures.add(attack, outcome);
                }
            }
        }
        figures
    };
    let (attack, mut figures) = run_during(scenario, &config, abuse).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    figures.rss_kib = [before, rss_kib(process)?];
    server.stop()?;
    figures.baseline_p99_us = baseline.latency_us.as_ref().map(|l| l.p99);
    figures.attack_p99_us = attack.latency_us.as_ref().map(|l| l.p99);
    figures.baseline_cores = baseline.server_cpu_cores;
    figures.attack_cores = attack.server_cpu_cores;
    let made = figures.rapid_reset.connections + figures.continuation_flood.connections;
    if let (Some(base), Some(under)) = (baseline.server_cpu_us, attack.server_cpu_us) {
        // Both windows are as long, and the abuse fills the second: the extra CPU is its.
        figures.cpu_us_per_abusive_connection =
            (made > 0).then(|| under.saturating_sub(base) as f64 / made as f64);
    }
    Ok((baseline, attack, figures))
}
