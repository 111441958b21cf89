//! Command line of hookgate's load-test harness; the work is in the library.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use hookgate_loadtest::baseline;
use hookgate_loadtest::load::{self, json_body, parse_duration, parse_header, LoadConfig};
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
}

#[derive(Args)]
struct RunArgs {
    /// Target, e.g. http://127.0.0.1:8080/hooks/github
    #[arg(long)]
    url: String,
    /// Concurrent requests: HTTP/1.1 connections, or HTTP/2 streams.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured time, e.g. 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unrecorded load before the measured time.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Requests per second on a fixed timetable (open loop); without it, each
    /// connection sends as fast as it is answered (closed loop).
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value = "POST")]
    method: Method,
    /// `Name: value`; repeatable.
    #[arg(long = "header", short = 'H', value_parser = parse_header)]
    headers: Vec<(HeaderName, HeaderValue)>,
    /// File whose contents are the request body.
    #[arg(long, conflicts_with = "body_size")]
    body_file: Option<PathBuf>,
    /// Body of this many bytes: a JSON object {"pad":"…"}.
    #[arg(long)]
    body_size: Option<usize>,
    /// Content-Type of a non-empty body.
    #[arg(long, default_value = "application/json")]
    content_type: HeaderValue,
    /// HTTP/2 with prior knowledge (h2c).
    #[arg(long)]
    http2: bool,
    /// HTTP/2 connections to spread the workers over [default: one per 16].
    #[arg(long, requires = "http2")]
    h2_connections: Option<usize>,
    /// Per request; a request not answered in time counts as a timeout error.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
    /// Server process to charge CPU time and peak RSS to.
    #[arg(long)]
    pid: Option<u32>,
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
    };
    result.unwrap_or_else(|e| {
        eprintln!("hookgate-loadtest: {e:#}");
        ExitCode::FAILURE
    })
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let body = match (&args.body_file, args.body_size) {
        (Some(path), _) => {
            Bytes::from(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        (None, Some(size)) => json_body(size)?,
        (None, None) => Bytes::new(),
    };
    let config = LoadConfig {
        url: args.url,
        connections: args.connections,
        duration: args.duration,
        warmup: args.warmup,
        rate: args.rate,
        method: args.method,
        headers: args.headers,
        body,
        content_type: args.content_type,
        http2: args.http2,
        h2_connections: args.h2_connections,
        timeout: args.timeout,
        server_pid: args.pid,
    };
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
    eprintln!(
        "hookgate-loadtest: {} for {:?} after {:?} warm-up",
        config.url, config.duration, config.warmup
    );
    let report = runtime.block_on(load::run(&config))?;
    print!("{report}");
    if let Some(path) = &args.json {
        std::fs::write(path, report.to_json() + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        eprintln!("hookgate-loadtest: no request succeeded");
        ExitCode::FAILURE
    })
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
