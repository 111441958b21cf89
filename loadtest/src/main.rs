//! Command line of hookgate's load-test harness; the work is in the library.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use hookgate_loadtest::load::{self, json_body, parse_duration, parse_header, LoadConfig};
use hookgate_loadtest::scenario::Scenario;
use hookgate_loadtest::spawn::{self, parse_cpus, Cpus, Server};
use hookgate_loadtest::{baseline, chart};
use http::{HeaderName, HeaderValue, Method};

#[derive(Parser)]
#[command(
    name = "hookgate-loadtest",
    version,
    about = "Load-test harness for hookgate"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send load to a server and report throughput, latency and server CPU.
    Run(Box<RunArgs>),
    /// Serve the bare-hyper baseline: read the body, answer 202.
    Baseline(BaselineArgs),
    /// Run a scenario while injecting a fault, then check that nothing acknowledged was
    /// lost.
    Chaos(Box<ChaosArgs>),
}

#[derive(Args)]
struct ChaosArgs {
    #[command(subcommand)]
    fault: Fault,
    /// The scenario file (its gateway config gives the hooks, the topics and the broker).
    #[arg(long, global = true)]
    scenario: Option<PathBuf>,
    /// Shell command that starts the gateway, e.g.
    /// 'target/release/hookgate run --config loadtest/scenarios/gateway.toml'.
    #[arg(long, global = true)]
    gateway: Option<String>,
    /// The gateway's readiness URL, e.g. http://127.0.0.1:9091/readyz.
    #[arg(long, global = true)]
    gateway_ready: Option<String>,
    /// CPUs to pin the gateway to.
    #[arg(long, global = true, value_parser = parse_cpus)]
    gateway_cpus: Option<Cpus>,
    /// Measured time [default: 60s].
    #[arg(long, global = true, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Open-loop rate, requests per second [default: 1000].
    #[arg(long, global = true)]
    rate: Option<f64>,
    /// Concurrent connections [default: rate × (ack timeout + 1 s), at least 64].
    #[arg(long, global = true)]
    connections: Option<usize>,
    /// Also write the report and the fault's figures as JSON to this file.
    #[arg(long, global = true, value_name = "OUT.json")]
    json: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Fault {
    /// The broker (a mock cluster in this process) is unreachable for a while.
    BrokerOutage {
        /// When it goes down, into the measured window [default: a quarter of it].
        #[arg(long, value_parser = parse_duration)]
        down_at: Option<Duration>,
        /// How long it stays down [default: half the window].
        #[arg(long, value_parser = parse_duration)]
        down_for: Option<Duration>,
    },
    /// The broker (a mock cluster in this process) fails produce requests and varies its
    /// round-trip time (0–2 s) for 80 % of the window.
    KafkaFaults {
        /// Seed of the faults [default: from the clock].
        #[arg(long)]
        seed: Option<u64>,
    },
    /// The load runs alone, then beside slow clients trickling request heads and bodies
    /// (each phase --duration long).
    SlowClients {
        #[arg(long, default_value_t = 1000)]
        slow: usize,
        /// Also fail when the legitimate p99 beside the slow clients exceeds this factor
        /// of the baseline's.
        #[arg(long)]
        p99_factor: Option<f64>,
        /// Attacks, one after another; the load runs during the first. A second attack
        /// tells a leak (memory grows again) from memory the allocator keeps for reuse.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
    },
    /// The load runs alone, then beside clients abusing HTTP/2 connections one after
    /// another (rapid reset, CONTINUATION flood), each phase --duration long.
    H2Abuse {
        /// Abusive clients at once.
        #[arg(long, default_value_t = 8)]
        abusers: usize,
        /// Also fail when the legitimate p99 beside the abuse exceeds this factor of the
        /// baseline's.
        #[arg(long)]
        p99_factor: Option<f64>,
    },
    /// The gateway is killed with SIGKILL at random moments and restarted each time.
    GatewayKill {
        #[arg(long, default_value_t = 20)]
        kills: usize,
        /// Seed of the kill moments [default: from the clock].
        #[arg(long)]
        seed: Option<u64>,
    },
}

#[derive(Args)]
struct RunArgs {
    /// A scenario file (loadtest/scenarios/*.toml): hooks, mix, bodies and load, signed
    /// for the gateway config it names. Options given here override its settings.
    #[arg(long, conflicts_with_all = ["url", "body_file", "body_size", "method", "headers", "content_type"])]
    scenario: Option<PathBuf>,
    /// Target, e.g. http://127.0.0.1:8080/hooks/github (without --scenario).
    #[arg(long, required_unless_present = "scenario")]
    url: Option<String>,
    /// Concurrent requests: HTTP/1.1 connections, or HTTP/2 streams [default: 64].
    #[arg(long)]
    connections: Option<usize>,
    /// Measured time, e.g. 10s, 500ms, 2m [default: 10s].
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Unrecorded load before the measured time [default: 2s].
    #[arg(long, value_parser = parse_duration)]
    warmup: Option<Duration>,
    /// Requests per second on a fixed timetable (open loop); without it, each
    /// connection sends as fast as it is answered (closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Closed loop even if the scenario sets a rate.
    #[arg(long, conflicts_with = "rate")]
    closed: bool,
    #[arg(long)]
    method: Option<Method>,
    /// `Name: value`; repeatable.
    #[arg(long = "header", short = 'H', value_parser = parse_header)]
    headers: Vec<(HeaderName, HeaderValue)>,
    /// File whose contents are the request body.
    #[arg(long, conflicts_with = "body_size")]
    body_file: Option<PathBuf>,
    /// Body of this many bytes: a JSON object {"pad":"…"}.
    #[arg(long)]
    body_size: Option<usize>,
    /// Content-Type of a non-empty body [default: application/json].
    #[arg(long)]
    content_type: Option<HeaderValue>,
    /// HTTP/2 with prior knowledge (h2c).
    #[arg(long)]
    http2: bool,
    /// HTTP/2 connections to spread the workers over [default: one per 16].
    #[arg(long)]
    h2_connections: Option<usize>,
    /// Per request; a request not answered in time counts as a timeout error [default: 5s].
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Skip the scenario's loss check.
    #[arg(long, requires = "scenario")]
    no_verify: bool,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
    /// Also draw the report (latency by percentile, requests per second) as SVG.
    #[arg(long, value_name = "OUT.svg")]
    chart: Option<PathBuf>,
    /// Server process to charge CPU time and peak RSS to.
    #[arg(long, conflicts_with = "spawn")]
    pid: Option<u32>,
    /// Start the server with this shell command, charge its CPU to the report, and stop
    /// it after the run, e.g. 'target/release/hookgate run --config gw.toml'.
    #[arg(long, value_name = "COMMAND")]
    spawn: Option<String>,
    /// CPUs to pin the started server to, e.g. 0 or 0-1.
    #[arg(long, requires = "spawn", value_parser = parse_cpus)]
    spawn_cpus: Option<Cpus>,
    /// URL that answers 200 once the started server is ready (e.g. the gateway's
    /// /readyz); without it, the first accepted connection.
    #[arg(long, requires = "spawn")]
    spawn_ready: Option<String>,
    /// CPUs to pin the harness itself to.
    #[arg(long, value_parser = parse_cpus)]
    cpus: Option<Cpus>,
    /// Client runtime threads; 1 keeps the harness on one core for `taskset`.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Args)]
struct BaselineArgs {
    /// Address to listen on; port 0 picks a free port, printed on stdout.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Run(args) => run(*args),
        Command::Baseline(args) => serve_baseline(args).map(|()| ExitCode::SUCCESS),
        Command::Chaos(args) => chaos(*args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("hookgate-loadtest: {e:#}");
        ExitCode::FAILURE
    })
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let scenario = args.scenario.as_deref().map(Scenario::load).transpose()?;
    let mut config = match &scenario {
        Some(scenario) => scenario.load_config(),
        None => fixed_config(&args)?,
    };
    if let Some(n) = args.connections {
        config.connections = n;
    }
    if let Some(d) = args.duration {
        config.duration = d;
    }
    if let Some(d) = args.warmup {
        config.warmup = d;
    }
    if args.rate.is_some() || args.closed {
        config.rate = args.rate;
    }
    if let Some(d) = args.timeout {
        config.timeout = d;
    }
    config.http2 |= args.http2;
    config.h2_connections = args.h2_connections.or(config.h2_connections);
    config.server_pid = args.pid;
    if args.no_verify {
        config.collect_ids = false;
    }
    if let Some(cpus) = &args.cpus {
        spawn::pin_self(&cpus.0)?;
    }

    // One thread needs no work-stealing machinery and stays on the core
    // `taskset` gives it.
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(args.threads);
        builder
    }
    .enable_all()
    .build()?;
    let report = runtime.block_on(async {
        let server = match &args.spawn {
            Some(command) => {
                let mut server =
                    Server::start(command, args.spawn_cpus.as_ref().map(|c| c.0.as_slice()))?;
                let addr = spawn::target_addr(&config.url).await?;
                server
                    .wait_ready(addr, args.spawn_ready.as_deref(), spawn::READY_TIMEOUT)
                    .await?;
                config.server_pid = Some(server.pid());
                Some(server)
            }
            None => None,
        };
        eprintln!(
            "hookgate-loadtest: {} for {:?} after {:?} warm-up",
            scenario.as_ref().map_or(&config.url, |s| &s.name),
            config.duration,
            config.warmup
        );
        let report = match &scenario {
            Some(scenario) => hookgate_loadtest::scenario::run(scenario, &config).await,
            None => load::run(&config).await,
        };
        if let Some(server) = server {
            let status = server.stop()?;
            eprintln!("hookgate-loadtest: the server stopped ({status})");
        }
        report
    })?;
    print!("{report}");
    if let Some(path) = &args.json {
        std::fs::write(path, report.to_json() + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.chart {
        std::fs::write(path, chart::svg(&report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if !report.succeeded() {
        eprintln!("hookgate-loadtest: no request succeeded");
        return Ok(ExitCode::FAILURE);
    }
    if let Some(v) = &report.verification {
        if !v.passed() {
            eprintln!(
                "hookgate-loadtest: loss check failed: {} of {} acknowledged events missing",
                v.missing, v.acknowledged
            );
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The load of the command line without a scenario: one request, sent again and again.
fn fixed_config(args: &RunArgs) -> Result<LoadConfig> {
    let url = args
        .url
        .clone()
        .context("--url or --scenario is required")?;
    let mut config = LoadConfig::new(url);
    config.body = match (&args.body_file, args.body_size) {
        (Some(path), _) => {
            Bytes::from(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        (None, Some(size)) => json_body(size)?,
        (None, None) => Bytes::new(),
    };
    if let Some(method) = &args.method {
        config.method = method.clone();
    }
    config.headers = args.headers.clone();
    if let Some(content_type) = &args.content_type {
        config.content_type = content_type.clone();
    }
    Ok(config)
}

/// An answer may take this much longer than the ack timeout: the time to write it.
const ANSWER_MARGIN: Duration = Duration::from_secs(1);

fn chaos(args: ChaosArgs) -> Result<ExitCode> {
    let path = args.scenario.context("--scenario is required")?;
    let command = args.gateway.context("--gateway is required")?;
    let mut scenario = Scenario::load(&path)?;
    let mut config = scenario.load_config();
    config.duration = args.duration.unwrap_or(Duration::from_secs(60));
    config.rate = Some(args.rate.unwrap_or(1000.0));
    // Enough connections that no request waits behind answers that take up to the ack
    // timeout: latencies are measured from the timetable, so a queue in the harness
    // would look like a slow gateway.
    let busy = config.rate.unwrap_or_default()
        * (scenario.mix.longest_ack_timeout() + ANSWER_MARGIN).as_secs_f64();
    config.connections = args.connections.unwrap_or((busy.ceil() as usize).max(64));
    config.collect_ids = true;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let gateway = hookgate_loadtest::chaos::Gateway {
            command,
            cpus: args.gateway_cpus.map(|c| c.0),
            addr: spawn::target_addr(&config.url).await?,
            ready: args.gateway_ready,
        };
        let window = config.duration;
        let (report, figures, passed) = match args.fault {
            Fault::BrokerOutage { down_at, down_for } => {
                let down_at = down_at.unwrap_or(window / 4);
                let down_for = down_for.unwrap_or(window / 2);
                let (report, figures) = hookgate_loadtest::chaos::broker_outage(
                    &mut scenario,
                    &config,
                    &gateway,
                    down_at,
                    down_for,
                )
                .await?;
                let passed = figures.passed(ANSWER_MARGIN);
                eprintln!("hookgate-loadtest: {figures:?}");
                (report, serde_json::to_value(&figures)?, passed)
            }
            Fault::KafkaFaults { seed } => {
                let seed = seed.unwrap_or_else(clock_seed);
                let (report, figures) =
                    hookgate_loadtest::chaos::kafka_faults(&mut scenario, &config, &gateway, seed)
                        .await?;
                // One second to settle after the faults stop.
                let passed = figures.recovered(config.rate.unwrap_or_default(), 1);
                eprintln!("hookgate-loadtest: seed {seed}, {figures:?}");
                (report, serde_json::to_value(&figures)?, passed)
            }
            Fault::SlowClients {
                slow,
                p99_factor,
                rounds,
            } => {
                let (baseline, report, figures) = hookgate_loadtest::chaos::slow_clients(
                    &scenario, &config, &gateway, slow, rounds,
                )
                .await?;
                eprintln!("hookgate-loadtest: baseline (no slow clients):");
                eprint!("{baseline}");
                let lossless = baseline.verification.as_ref().is_some_and(|v| v.passed());
                let passed = lossless && figures.passed(p99_factor);
                eprintln!("hookgate-loadtest: {figures:?}");
                (report, serde_json::to_value(&figures)?, passed)
            }
            Fault::H2Abuse {
                abusers,
                p99_factor,
            } => {
                let (baseline, report, figures) =
                    hookgate_loadtest::chaos::h2_abuse(&scenario, &config, &gateway, abusers)
                        .await?;
                eprintln!("hookgate-loadtest: baseline (no abuse):");
                eprint!("{baseline}");
                let lossless = baseline.verification.as_ref().is_some_and(|v| v.passed());
                // An abusive connection is cut off within its first megabytes.
                let passed = lossless && figures.passed(8 << 20, p99_factor);
                eprintln!("hookgate-loadtest: {figures:?}");
                (report, serde_json::to_value(&figures)?, passed)
            }
            Fault::GatewayKill { kills, seed } => {
                let seed = seed.unwrap_or_else(clock_seed);
                let (report, figures) = hookgate_loadtest::chaos::gateway_kill(
                    &scenario, &config, &gateway, kills, seed,
                )
                .await?;
                eprintln!("hookgate-loadtest: seed {seed}, {figures:?}");
                (report, serde_json::to_value(&figures)?, true)
            }
        };
        print!("{report}");
        println!("  fault                 {figures}");
        if let Some(path) = &args.json {
            let mut json: serde_json::Value = serde_json::from_str(&report.to_json())?;
            json["fault"] = figures;
            std::fs::write(path, json.to_string() + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
        }
        let lossless = report.verification.as_ref().is_some_and(|v| v.passed());
        if !lossless {
            eprintln!("hookgate-loadtest: loss check failed");
        }
        if !passed {
            eprintln!("hookgate-loadtest: the gateway did not fail fast or did not recover");
        }
        Ok(if lossless && passed {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

/// A seed for random faults when none is given.
fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

fn serve_baseline(args: BaselineArgs) -> Result<()> {
    // A multi-threaded runtime even for one thread, so `--threads N` varies
    // only the worker count, as hookgate's own setting does.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {}", listener.local_addr()?)?;
        stdout.flush()?;
        drop(stdout);
        // Spawned so that the accept loop runs on a worker thread, not on
        // the thread blocked here.
        tokio::spawn(baseline::serve(listener)).await?
    })
}
