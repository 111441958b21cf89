//! Faults under load. A scenario's load runs against a gateway the harness starts, while
//! the broker goes away or the gateway is killed; then the loss check compares every
//! acknowledged event with what is on the topics (acknowledged ⊆ consumed).
//!
//! - [`broker_outage`]: the gateway talks to an in-process mock Kafka cluster (librdkafka's
//!   `MockCluster`, over TCP) whose broker is taken down for a while in the middle of the
//!   run. Figures: losses, the slowest failure against the hooks' ack timeout, and how
//!   long after the broker's return 2xx answers resume.
//! - [`gateway_kill`]: the gateway, on the scenario's real broker in another process, is
//!   killed with SIGKILL at random moments and started again each time. Figures: losses,
//!   restart times, and events published for requests that were never answered (in
//!   flight at a kill).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::mocking::MockCluster;
use serde::Serialize;

use crate::load::LoadConfig;
use crate::report::Report;
use crate::scenario::{run_during, Scenario};
use crate::spawn::{Server, READY_TIMEOUT};

/// Partitions of each topic on the mock cluster. librdkafka's mock broker keeps about
/// 5 MiB per partition and drops older records; 32 hold a minute at 1,000 requests/s of
/// 1 KiB bodies.
const MOCK_PARTITIONS: i32 = 32;

/// How to start the gateway under test.
#[derive(Clone, Debug)]
pub struct Gateway {
    /// A shell command, e.g. `target/release/hookgate run --config gw.toml`.
    pub command: String,
    pub cpus: Option<Vec<usize>>,
    /// Where it accepts requests.
    pub addr: SocketAddr,
    /// Its readiness URL (`/readyz` on the admin listener), if any.
    pub ready: Option<String>,
}

impl Gateway {
    async fn start(&self, env: &str) -> Result<Server> {
        let command = if env.is_empty() {
            self.command.clone()
        } else {
            format!("env {env} {}", self.command)
        };
        let mut server = Server::start(&command, self.cpus.as_deref())?;
        server
            .wait_ready(self.addr, self.ready.as_deref(), READY_TIMEOUT)
            .await?;
        Ok(server)
    }
}

/// What a broker outage did.
#[derive(Clone, Debug, Serialize)]
pub struct OutageFigures {
    /// When the broker went down, seconds into the measured window.
    pub down_at_s: f64,
    pub down_for_s: f64,
    /// Seconds from the broker's return to the end of the first measured second with a
    /// 2xx answer: an upper bound on the time to recover.
    pub recovered_within_s: Option<f64>,
    /// The slowest non-2xx answer, and the hooks' longest ack timeout.
    pub slowest_failure_ms: Option<f64>,
    pub ack_timeout_ms: f64,
}

impl OutageFigures {
    /// Every failure was answered within the ack timeout (with `margin` for scheduling)
    /// and the gateway recovered.
    pub fn passed(&self, margin: Duration) -> bool {
        let limit = self.ack_timeout_ms + margin.as_secs_f64() * 1000.0;
        self.slowest_failure_ms.is_none_or(|ms| ms <= limit) && self.recovered_within_s.is_some()
    }
}

/// Runs the scenario against a gateway on a mock cluster whose broker is down from
/// `down_at` (into the measured window) for `down_for`.
pub async fn broker_outage(
    scenario: &mut Scenario,
    config: &LoadConfig,
    gateway: &Gateway,
    down_at: Duration,
    down_for: Duration,
) -> Result<(Report, OutageFigures)> {
    let cluster = MockCluster::new(1).context("starting the mock Kafka cluster")?;
    for topic in scenario.mix.topics() {
        cluster
            .create_topic(topic, MOCK_PARTITIONS, 1)
            .with_context(|| format!("creating {topic} on the mock cluster"))?;
    }
    let bootstrap = cluster.bootstrap_servers();
    scenario.kafka.brokers = bootstrap.clone();
    let server = gateway
        .start(&format!("HOOKGATE_KAFKA__BROKERS={bootstrap}"))
        .await?;
    let outage = async {
        tokio::time::sleep(config.warmup + down_at).await;
        eprintln!("hookgate-loadtest: broker down");
        cluster.broker_down(1).context("taking the broker down")?;
        tokio::time::sleep(down_for).await;
        cluster.broker_up(1).context("bringing the broker back")?;
        eprintln!("hookgate-loadtest: broker up");
        anyhow::Ok(())
    };
    let (report, outage) = run_during(scenario, config, outage).await?;
    outage?;
    server.stop()?;
    let back = down_at + down_for;
    let recovered_within_s = report
        .ok_per_s
        .iter()
        .enumerate()
        .skip(back.as_secs() as usize)
        .find(|(_, ok)| **ok > 0)
        .map(|(second, _)| (second as f64 + 1.0 - back.as_secs_f64()).max(0.0));
    let figures = OutageFigures {
        down_at_s: down_at.as_secs_f64(),
        down_for_s: down_for.as_secs_f64(),
        recovered_within_s,
        slowest_failure_ms: report.slowest_failure_us.map(|us| us as f64 / 1000.0),
        ack_timeout_ms: scenario.mix.longest_ack_timeout().as_secs_f64() * 1000.0,
    };
    Ok((report, figures))
}

/// What the kills did.
#[derive(Clone, Debug, Serialize)]
pub struct KillFigures {
    pub kills: usize,
    /// From SIGKILL to ready again, per kill, milliseconds.
    pub restart_ms: Vec<f64>,
    /// Records on the topics that no 2xx answer named: requests in flight at a kill
    /// whose event was stored but never acknowledged (the sender saw an error and would
    /// retry). Not losses.
    pub unacknowledged_published: u64,
}

/// Runs the scenario while the gateway is killed (SIGKILL) `kills` times at random
/// moments of the measured window and restarted each time.
pub async fn gateway_kill(
    scenario: &Scenario,
    config: &LoadConfig,
    gateway: &Gateway,
    kills: usize,
    seed: u64,
) -> Result<(Report, KillFigures)> {
    let server = gateway.start("").await?;
    let moments = kill_moments(kills, config.duration, seed);
    let killer = async move {
        let mut server = server;
        let start = Instant::now() + config.warmup;
        let mut restart_ms = Vec::with_capacity(moments.len());
        for at in moments {
            tokio::time::sleep_until((start + at).into()).await;
            let killed = Instant::now();
            server.kill()?;
            server = gateway.start("").await?;
            restart_ms.push(killed.elapsed().as_secs_f64() * 1000.0);
            eprintln!(
                "hookgate-loadtest: killed the gateway at {:.1} s, ready again after {:.0} ms",
                at.as_secs_f64(),
                restart_ms.last().copied().unwrap_or_default()
            );
        }
        anyhow::Ok((server, restart_ms))
    };
    let (report, killer) = run_during(scenario, config, killer).await?;
    let (server, restart_ms) = killer?;
    server.stop()?;
    let unacknowledged_published = report
        .verification
        .as_ref()
        .map_or(0, |v| v.records_read.saturating_sub(v.found + v.duplicates));
    let figures = KillFigures {
        kills,
        restart_ms,
        unacknowledged_published,
    };
    Ok((report, figures))
}

/// `kills` moments spread at random over the middle of `window`, in order: each in its
/// own slice of 5–90 % of the window, so that restarts do not pile up.
fn kill_moments(kills: usize, window: Duration, seed: u64) -> Vec<Duration> {
    let mut state = seed | 1;
    let mut next = || {
        // xorshift64: reproducible from the seed, no dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let (from, to) = (window.mul_f64(0.05), window.mul_f64(0.9));
    let slice = (to - from) / kills.max(1) as u32;
    (0..kills)
        .map(|i| from + slice * i as u32 + slice.mul_f64(0.2 + 0.6 * next()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_moments_are_ordered_inside_the_window_and_reproducible() {
        let window = Duration::from_secs(60);
        let moments = kill_moments(20, window, 7);
        assert_eq!(moments.len(), 20);
        assert!(moments.windows(2).all(|w| w[0] < w[1]), "{moments:?}");
        assert!(moments[0] >= window.mul_f64(0.05));
        assert!(*moments.last().unwrap() <= window.mul_f64(0.9));
        assert_eq!(moments, kill_moments(20, window, 7));
        assert_ne!(moments, kill_moments(20, window, 8));
    }

    #[test]
    fn an_outage_passes_only_with_fast_failures_and_a_recovery() {
        let figures = OutageFigures {
            down_at_s: 2.0,
            down_for_s: 3.0,
            recovered_within_s: Some(1.0),
            slowest_failure_ms: Some(2_100.0),
            ack_timeout_ms: 2_000.0,
        };
        assert!(figures.passed(Duration::from_millis(500)));
        assert!(!figures.passed(Duration::ZERO));
        let never = OutageFigures {
            recovered_within_s: None,
            ..figures
        };
        assert!(!never.passed(Duration::from_secs(1)));
    }
}
