//! `kafka-faults`: the mock cluster answers produce requests with retriable errors and
//! transport failures, at a wandering round-trip time, then recovers.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde::Serialize;

use super::{on_mock_cluster, Gateway, Random};
use crate::load::LoadConfig;
use crate::report::Report;
use crate::scenario::{run_during, Scenario};

/// What the injected Kafka faults did.
#[derive(Clone, Debug, Serialize)]
pub struct KafkaFaultFigures {
    /// Produce requests answered with an error, transport failures included.
    pub errors_injected: usize,
    /// Of which transport failures (the broker drops the connection).
    pub disconnects: usize,
    /// The round-trip times the broker was given, in order, milliseconds.
    pub round_trips_ms: Vec<u64>,
    /// When the faults stopped, seconds into the measured window.
    pub faults_until_s: f64,
    /// 2xx answers in each whole second of the measured window after the faults stopped.
    pub ok_per_s_after: Vec<u64>,
    /// Extra copies of acknowledged events over acknowledged events.
    pub duplicate_rate: f64,
}

impl KafkaFaultFigures {
    /// The producer is not wedged: every whole second after the faults (and after
    /// `settle`) had 2xx answers at half the rate or more.
    pub fn recovered(&self, rate: f64, settle: usize) -> bool {
        let after: Vec<u64> = self.ok_per_s_after.iter().skip(settle).copied().collect();
        !after.is_empty() && after.iter().all(|ok| *ok as f64 >= rate / 2.0)
    }
}

/// The retriable produce errors a broker answers under trouble.
const PRODUCE_ERRORS: [RDKafkaRespErr; 4] = [
    RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
    RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
    RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
    RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT,
];

/// Runs the scenario against a gateway on a mock cluster that fails produce requests and
/// varies its round-trip time from the start of the measured window until 80 % of it.
pub async fn kafka_faults(
    scenario: &mut Scenario,
    config: &LoadConfig,
    gateway: &Gateway,
    seed: u64,
) -> Result<(Report, KafkaFaultFigures)> {
    let (cluster, server) = on_mock_cluster(scenario, gateway).await?;
    let until = config.duration.mul_f64(0.8);
    let faults = async {
        let mut random = Random::new(seed);
        tokio::time::sleep(config.warmup).await;
        let end = Instant::now() + until;
        let (mut errors, mut disconnects, mut round_trips) = (0, 0, Vec::new());
        let mut tick = 0u64;
        while Instant::now() < end {
            // A burst of 1–8 errors every 250 ms; a new round-trip time every second.
            tick += 1;
            if tick % 4 == 1 {
                let rtt = (random.next() * 2000.0) as u64;
                cluster
                    .broker_round_trip_time(1, Duration::from_millis(rtt))
                    .context("setting the round-trip time")?;
                round_trips.push(rtt);
            }
            let burst: Vec<RDKafkaRespErr> = (0..1 + (random.next() * 8.0) as usize)
                .map(|_| PRODUCE_ERRORS[(random.next() * 4.0) as usize % 4])
                .collect();
            disconnects += burst
                .iter()
                .filter(|e| **e == RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT)
                .count();
            errors += burst.len();
            cluster.request_errors(RDKafkaApiKey::Produce, &burst);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        cluster.clear_request_errors(RDKafkaApiKey::Produce);
        cluster
            .broker_round_trip_time(1, Duration::ZERO)
            .context("clearing the round-trip time")?;
        eprintln!("hookgate-loadtest: Kafka faults stopped");
        anyhow::Ok((errors, disconnects, round_trips))
    };
    let (report, faults) = run_during(scenario, config, faults).await?;
    let (errors_injected, disconnects, round_trips_ms) = faults?;
    server.stop()?;
    // The whole seconds of the measured window after the faults; later ones only drain.
    let first = until.as_secs_f64().ceil() as usize;
    let last = (config.duration.as_secs() as usize).min(report.ok_per_s.len());
    let ok_per_s_after = report.ok_per_s[first.min(last)..last].to_vec();
    let duplicate_rate = report.verification.as_ref().map_or(0.0, |v| {
        v.duplicates as f64 / (v.acknowledged.max(1)) as f64
    });
    let figures = KafkaFaultFigures {
        errors_injected,
        disconnects,
        round_trips_ms,
        faults_until_s: until.as_secs_f64(),
        ok_per_s_after,
        duplicate_rate,
    };
    Ok((report, figures))
}
