//! Faults under load. A scenario's load runs against a gateway the harness starts, while
//! the broker goes away or the gateway is killed; then the loss check compares every
//! acknowledged event with what is on the topics (acknowledged ⊆ consumed).
//!
//! Each fault is a module of its own; this one holds what they share: how the gateway is
//! started, the mock cluster, a seeded random source and the figures' helpers.
//!
//! - [`broker_outage`]: the gateway talks to an in-process mock Kafka cluster (librdkafka's
//!   `MockCluster`, over TCP) whose broker is taken down for a while in the middle of the
//!   run. Figures: losses, the slowest failure against the hooks' ack timeout, and how
//!   long after the broker's return 2xx answers resume.
//! - [`kafka_faults`]: the same mock cluster answers bursts of produce requests with
//!   retriable errors (`NOT_ENOUGH_REPLICAS`, `REQUEST_TIMED_OUT`, `NOT_LEADER_FOR_PARTITION`)
//!   and transport failures, with a round-trip time that wanders between 0 and 2 s, for
//!   most of the run; then the faults stop. Figures: losses, duplicates, and whether 2xx
//!   answers came back at full rate (the producer did not wedge).
//! - [`slow_clients`]: the load runs once as a baseline, then again beside slow clients
//!   that trickle a request head or a body a byte at a time. Figures: whether every slow
//!   connection was closed within its read timeout + 1 s, the legitimate p99 against the
//!   baseline's, and the gateway's descriptors and memory before, during and after.
//! - [`h2_abuse`]: the load runs once as a baseline, then again beside clients that open
//!   HTTP/2 connections one after another and abuse them (rapid reset, CONTINUATION
//!   flood). Figures: how each abusive connection was closed and how much it could write,
//!   the gateway's CPU with and without the abuse, and the legitimate p99 against the
//!   baseline's.
//! - [`gateway_kill`]: the gateway, on the scenario's real broker in another process, is
//!   killed with SIGKILL at random moments and started again each time. Figures: losses,
//!   restart times, and events published for requests that were never answered (in
//!   flight at a kill).

mod broker_outage;
mod gateway_kill;
mod h2_abuse;
mod kafka_faults;
mod slow_clients;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::mocking::MockCluster;

use crate::scenario::Scenario;
use crate::spawn::{Server, READY_TIMEOUT};

pub use broker_outage::{broker_outage, OutageFigures};
pub use gateway_kill::{gateway_kill, KillFigures};
pub use h2_abuse::{h2_abuse, AbuseTally, H2AbuseFigures};
pub use kafka_faults::{kafka_faults, KafkaFaultFigures};
pub use slow_clients::{slow_clients, SlowFigures};

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

/// A mock cluster with the scenario's topics, and the gateway started on it; the
/// scenario's loss check reads from it too.
async fn on_mock_cluster(
    scenario: &mut Scenario,
    gateway: &Gateway,
) -> Result<(
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    Server,
)> {
    let cluster = MockCluster::new(1).context("starting the mock Kafka cluster")?;
    for topic in &scenario.gateway_topics {
        cluster
            .create_topic(topic, MOCK_PARTITIONS, 1)
            .with_context(|| format!("creating {topic} on the mock cluster"))?;
    }
    let bootstrap = cluster.bootstrap_servers();
    scenario.kafka.brokers = bootstrap.clone();
    let server = gateway
        .start(&format!("HOOKGATE_KAFKA__BROKERS={bootstrap}"))
        .await?;
    Ok((cluster, server))
}

/// xorshift64: reproducible from a seed, no dependency.
struct Random(u64);

impl Random {
    fn new(seed: u64) -> Self {
        Random(seed | 1)
    }

    /// Uniform in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Whether the p99 under attack stayed within `factor` of the baseline's (always, when
/// no factor is asked for).
fn p99_within(factor: Option<f64>, baseline: Option<u64>, attack: Option<u64>) -> bool {
    match (factor, baseline, attack) {
        (Some(factor), Some(base), Some(attack)) => attack as f64 <= base as f64 * factor,
        (Some(_), _, _) => false,
        (None, _, _) => true,
    }
}

/// The longest of `durations`, in milliseconds.
fn longest<'a>(durations: impl Iterator<Item = &'a Duration>) -> f64 {
    durations.max().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}
