//! `broker-outage`: the broker of a mock cluster goes down in the middle of the run.

use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{on_mock_cluster, Gateway};
use crate::load::LoadConfig;
use crate::report::Report;
use crate::scenario::{run_during, Scenario};

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
    let (cluster, server) = on_mock_cluster(scenario, gateway).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
