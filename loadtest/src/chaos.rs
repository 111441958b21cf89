//! Faults under load. A scenario's load runs against a gateway the harness starts, while
//! the broker goes away or the gateway is killed; then the loss check compares every
//! acknowledged event with what is on the topics (acknowledged ⊆ consumed).
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

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde::Serialize;

use crate::h2_abuse::{Attack, Outcome, ENHANCE_YOUR_CALM};
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
    Ok((cluster, server))
}

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

/// What the slow clients did, and what they cost the others.
#[derive(Clone, Debug, Serialize)]
pub struct SlowFigures {
    /// Slow connections per attack, and attacks.
    pub slow_connections: usize,
    pub rounds: usize,
    /// Slow connections the gateway closed within its read timeout + 1 s, over all
    /// rounds.
    pub closed_in_time: usize,
    /// The longest a slow connection stayed open, against the longest read timeout.
    pub longest_open_ms: f64,
    pub read_timeout_ms: f64,
    /// The longest open time of those trickling a head, and of those trickling a body.
    pub longest_head_ms: f64,
    pub longest_body_ms: f64,
    /// Legitimate traffic's p99 without and with the slow clients (the first round),
    /// microseconds.
    pub baseline_p99_us: Option<u64>,
    pub attack_p99_us: Option<u64>,
    /// The gateway's open descriptors and resident memory (KiB): before the first
    /// attack, then during each and once it is over (when both are back within
    /// [`SlowFigures::back`]'s bounds, or after [`SETTLE`]).
    pub fds: Vec<usize>,
    pub rss_kib: Vec<u64>,
    /// Seconds from each attack's end until descriptors and memory were back, or until
    /// the harness stopped waiting.
    pub settled_s: Vec<f64>,
}

/// How long after an attack the harness waits for descriptors and memory to come back.
pub const SETTLE: Duration = Duration::from_secs(15);
/// Descriptors the gateway may have open beyond its count before an attack (logs, the
/// producer's sockets).
pub const FD_SLACK: usize = 16;

impl SlowFigures {
    /// Whether `fds` and `rss_kib` are back to the level before the attack: descriptors
    /// within [`FD_SLACK`], memory within 10 % + 8 MiB.
    pub fn back(before: (usize, u64), now: (usize, u64)) -> bool {
        now.0 <= before.0 + FD_SLACK && now.1 <= before.1 + before.1 / 10 + 8 * 1024
    }

    /// Every slow connection was cut in time, descriptors and memory came back after every
    /// round, and (when `p99_factor` is given) the legitimate p99 stayed within that
    /// factor of the baseline's.
    pub fn passed(&self, p99_factor: Option<f64>) -> bool {
        let p99_ok = p99_within(p99_factor, self.baseline_p99_us, self.attack_p99_us);
        let before = (self.fds[0], self.rss_kib[0]);
        let all_back = self
            .fds
            .iter()
            .zip(&self.rss_kib)
            .skip(2)
            .step_by(2)
            .all(|(&fds, &rss)| SlowFigures::back(before, (fds, rss)));
        self.closed_in_time == self.slow_connections * self.rounds && all_back && p99_ok
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

/// How long a slow client waits between the bytes it sends.
const TRICKLE: Duration = Duration::from_millis(500);

/// One slow client: half of them trickle a request head, the others a body the hook
/// must read (it is signed). Returns how long the gateway kept the connection open
/// (zero if it could not connect).
async fn slow_client(addr: SocketAddr, path: String, body: bool, give_up: Duration) -> Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else {
        return Duration::ZERO;
    };
    // From the connection's establishment: a connect queued in a full accept backlog is
    // not time the gateway spent with it.
    let opened = Instant::now();
    let head = if body {
        format!(
            "POST {path} HTTP/1.1\r\nhost: slow\r\ncontent-type: application/json\r\n\
             content-length: 100000\r\nx-hub-signature-256: sha256=00\r\n\r\n{{"
        )
    } else {
        format!("POST {path} HTTP/1.1\r\nhost: slow\r\nx-slow: a")
    };
    if tcp.write_all(head.as_bytes()).await.is_err() {
        return opened.elapsed();
    }
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            read = tcp.read(&mut buf) => match read {
                // Closed, or an answer (a 408) that comes before the close: keep reading.
                Ok(0) | Err(_) => return opened.elapsed(),
                Ok(_) => continue,
            },
            _ = tokio::time::sleep(TRICKLE) => {
                if opened.elapsed() > give_up || tcp.write_all(b"a").await.is_err() {
                    return opened.elapsed();
                }
            }
        }
    }
}

/// Opens `slow` slow connections, spread over the first second, and waits until the
/// gateway has closed them all. Returns whether each trickled a body and how long it
/// stayed open, and the gateway's descriptors and resident memory one second in.
async fn slow_attack(
    addr: SocketAddr,
    path: &str,
    slow: usize,
    read_timeout: Duration,
    process: crate::cpu::Process,
) -> (Vec<(bool, Duration)>, (usize, u64)) {
    use crate::cpu::{open_fds, rss_kib};
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..slow {
        let path = path.to_string();
        let give_up = read_timeout * 3 + Duration::from_secs(5);
        let body = i % 2 == 1;
        tasks.spawn(async move { (body, slow_client(addr, path, body, give_up).await) });
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = (
        open_fds(process).unwrap_or(0),
        rss_kib(process).unwrap_or(0),
    );
    let mut open_for = Vec::with_capacity(slow);
    while let Some(result) = tasks.join_next().await {
        open_for.push(result.unwrap_or((false, Duration::ZERO)));
    }
    (open_for, during)
}

/// Runs the load on one gateway alone, then beside `slow` slow clients, `rounds` times
/// (the load runs during the first attack; later attacks run alone, to tell a leak from
/// memory the allocator keeps for reuse). Returns both reports; the loss check runs on
/// each.
pub async fn slow_clients(
    scenario: &Scenario,
    config: &LoadConfig,
    gateway: &Gateway,
    slow: usize,
    rounds: usize,
) -> Result<(Report, Report, SlowFigures)> {
    use crate::cpu::{open_fds, rss_kib, Process};
    let server = gateway.start("").await?;
    let process = Process::Pid(server.pid());
    let baseline = crate::scenario::run(scenario, config).await?;
    let mut fds = vec![open_fds(process)?];
    let mut rss = vec![rss_kib(process)?];
    let mut settled_s = Vec::with_capacity(rounds);
    let (head_timeout, body_timeout) = scenario.read_timeouts;
    let read_timeout = head_timeout.max(body_timeout);
    let path = scenario.mix.first_path();
    let attack = slow_attack(gateway.addr, path, slow, read_timeout, process);
    let (attack, (mut open_for, during)) = run_during(scenario, config, attack).await?;
    for round in 0..rounds.max(1) {
        let during = if round == 0 {
            during
        } else {
            let (more, during) = slow_attack(gateway.addr, path, slow, read_timeout, process).await;
            open_for.extend(more);
            during
        };
        // Until descriptors and memory are back, or SETTLE has passed.
        let over = Instant::now();
        let before = (fds[0], rss[0]);
        let mut now = (open_fds(process)?, rss_kib(process)?);
        while !SlowFigures::back(before, now) && over.elapsed() < SETTLE {
            tokio::time::sleep(Duration::from_millis(250)).await;
            now = (open_fds(process)?, rss_kib(process)?);
        }
        settled_s.push(over.elapsed().as_secs_f64());
        fds.extend([during.0, now.0]);
        rss.extend([during.1, now.1]);
    }
    server.stop()?;
    let limit = read_timeout + Duration::from_secs(1);
    let figures = SlowFigures {
        slow_connections: slow,
        rounds: rounds.max(1),
        closed_in_time: open_for.iter().filter(|(_, d)| *d <= limit).count(),
        longest_open_ms: longest(open_for.iter().map(|(_, d)| d)),
        longest_head_ms: longest(open_for.iter().filter(|(b, _)| !b).map(|(_, d)| d)),
        longest_body_ms: longest(open_for.iter().filter(|(b, _)| *b).map(|(_, d)| d)),
        read_timeout_ms: read_timeout.as_secs_f64() * 1000.0,
        baseline_p99_us: baseline.latency_us.as_ref().map(|l| l.p99),
        attack_p99_us: attack.latency_us.as_ref().map(|l| l.p99),
        fds,
        rss_kib: rss,
        settled_s,
    };
    Ok((baseline, attack, figures))
}

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
