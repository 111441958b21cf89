//! `gateway-kill`: the gateway is killed with SIGKILL at random moments and restarted.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use super::{Gateway, Random};
use crate::load::LoadConfig;
use crate::report::Report;
use crate::scenario::{run_during, Scenario};

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
    let mut random = Random::new(seed);
    let (from, to) = (window.mul_f64(0.05), window.mul_f64(0.9));
    let slice = (to - from) / kills.max(1) as u32;
    (0..kills)
        .map(|i| from + slice * i as u32 + slice.mul_f64(0.2 + 0.6 * random.next()))
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
}
