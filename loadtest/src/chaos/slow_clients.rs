//! `slow-clients`: connections that trickle a request head or a body beside the load.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use super::{longest, p99_within, Gateway};
use crate::load::LoadConfig;
use crate::report::Report;
use crate::scenario::{run_during, Scenario};

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
