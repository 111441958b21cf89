//! The `hookgate` command: parses the command line, loads config, sets up logging and
//! hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hookgate_common::config::{Environment, Source};
use hookgate_gateway::config;
use hookgate_gateway::{shutdown, Listeners, SinkKind};
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(
    name = "hookgate",
    version,
    about = "Webhook ingress gateway: webhooks in, CloudEvents on Kafka out"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the hooks of a config file (the default command).
    Run {
        /// The config file.
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Drop events after normalization instead of publishing (benchmarks only).
        #[arg(long)]
        null_sink: bool,
    },
    /// Validate a config file, check the hook topics exist, and list the hooks.
    Check {
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Skip the broker check (validate the file only).
        #[arg(long)]
        offline: bool,
    },
    /// Run everything on this machine: gateway and an embedded Kafka-protocol broker.
    Local {
        /// Webhook listener address (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Admin listener address (default 127.0.0.1:9091).
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
        /// Web console address (default 127.0.0.1:9400).
        #[arg(long)]
        console_listen: Option<SocketAddr>,
    },
    /// Print what a sender would send for a hook: its auth headers, or a curl command.
    Sign {
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// The hook's id.
        #[arg(long)]
        hook: String,
        /// File holding the body to send.
        #[arg(long)]
        body: PathBuf,
        /// Content-Type to send (default: application/json when the body is JSON).
        #[arg(long)]
        content_type: Option<String>,
        /// The gateway's base URL (default: from server.listen).
        #[arg(long)]
        url: Option<String>,
        /// Print a ready curl command.
        #[arg(long)]
        curl: bool,
    },
    /// Print the JSON Schema of the events hookgate publishes (structured mode).
    Schema {
        /// `webhook` (urn:hookgate:webhook:v1), `poll` (urn:hookgate:poll:v1, pollers),
        /// `schedule` (urn:hookgate:schedule:v1, scheduled flows' ticks) or `rejection`
        /// (urn:hookgate:rejection:v1, records of refused requests).
        #[arg(default_value = "webhook", value_parser = ["webhook", "poll", "schedule", "rejection"])]
        kind: String,
    },
    /// Ask a running gateway's admin listener whether it is ready (`GET /readyz`): exit
    /// 0 if it answers 200, 1 otherwise. For container health checks, which have no curl.
    Healthcheck {
        /// The admin listener.
        #[arg(long, default_value = "127.0.0.1:9091")]
        admin: SocketAddr,
        /// The path to ask: `/readyz` (ready to accept webhooks) or `/healthz` (alive).
        #[arg(long, default_value = "/readyz")]
        path: String,
    },
    /// Print the events on a topic as they arrive, one JSON object per line.
    Tail {
        topic: String,
        /// Bootstrap brokers (default: kafka.brokers of --config, else localhost:9092).
        #[arg(long)]
        brokers: Option<String>,
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Start from the oldest event instead of the next one.
        #[arg(long)]
        from_beginning: bool,
        /// Stop after this many events.
        #[arg(long)]
        max: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    hookgate_common::logging::init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let command = cli.command.unwrap_or(Command::Run {
        config: PathBuf::from(config::DEFAULT_PATH),
        null_sink: false,
    });
    match runtime.block_on(dispatch(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    let env = Environment::from_process();
    match command {
        Command::Run { config, null_sink } => {
            let loaded = config::Loaded::load(Source::File(config), env)?;
            let http = bind(&loaded.settings.server.listen, "server.listen").await?;
            let admin = bind(&loaded.settings.admin.listen, "admin.listen").await?;
            let sink = if null_sink {
                SinkKind::Null
            } else {
                SinkKind::Kafka
            };
            hookgate_gateway::run(loaded, Listeners { http, admin }, sink, on_signal()).await
        }
        Command::Check { config, offline } => {
            let settings = config::load(&Source::File(config.clone()), &env)?;
            print!("{}", hookgate::check::hook_table(&settings));
            if !offline {
                hookgate::check::topics(&settings).await?;
            }
            println!("{}: ok ({} hooks)", config.display(), settings.hooks.len());
            Ok(())
        }
        Command::Local {
            listen,
            admin_listen,
            console_listen,
        } => {
            hookgate::local::run(
                hookgate::local::Options {
                    listen,
                    admin_listen,
                    console_listen,
                },
                on_signal(),
            )
            .await
        }
        Command::Sign {
            config,
            hook,
            body,
            content_type,
            url,
            curl,
        } => {
            let settings = config::load(&Source::File(config), &env)?;
            let bytes = std::fs::read(&body)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", body.display()))?;
            let body_path = body.display().to_string();
            let options = hookgate::sign::Options {
                hook: &hook,
                body: &bytes,
                body_path: &body_path,
                content_type: content_type.as_deref(),
                base_url: url.as_deref(),
                curl,
            };
            print!(
                "{}",
                hookgate::sign::render(&settings, &options, std::time::SystemTime::now())?
            );
            Ok(())
        }
        Command::Schema { kind } => {
            print!(
                "{}",
                match kind.as_str() {
                    "poll" => hookgate_event::POLL_SCHEMA_JSON,
                    "schedule" => hookgate_event::SCHEDULE_SCHEMA_JSON,
                    "rejection" => hookgate_event::REJECTION_SCHEMA_JSON,
                    _ => hookgate_event::WEBHOOK_SCHEMA_JSON,
                }
            );
            Ok(())
        }
        Command::Healthcheck { admin, path } => healthcheck(admin, &path),
        Command::Tail {
            topic,
            brokers,
            config,
            from_beginning,
            max,
        } => {
            // With --config, the cluster's security settings come along.
            let settings = match config {
                Some(path) => Some(config::load(&Source::File(path), &env)?),
                None => None,
            };
            let brokers = brokers
                .or_else(|| settings.as_ref().map(|s| s.kafka.brokers.clone()))
                .unwrap_or_else(|| "localhost:9092".to_string());
            let options = hookgate::tail::Options {
                brokers,
                properties: settings.map(|s| s.kafka.properties),
                topic,
                from_beginning,
                max,
            };
            hookgate::tail::run(options, on_signal()).await
        }
    }
}

/// `GET path` on the admin listener, answered 200 within two seconds, or an error.
fn healthcheck(admin: SocketAddr, path: &str) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&admin, timeout)
        .map_err(|e| anyhow::anyhow!("cannot reach the admin listener at {admin}: {e}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {admin}\r\nconnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.split_whitespace().nth(1).unwrap_or("");
    if status == "200" {
        Ok(())
    } else {
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").trim();
        anyhow::bail!("{path} answered {status}: {body}")
    }
}

/// A shutdown handle that triggers on SIGTERM or SIGINT.
fn on_signal() -> shutdown::Shutdown {
    let (trigger, handle) = shutdown::channel();
    tokio::spawn(async move {
        shutdown::signal().await;
        trigger.trigger();
    });
    handle
}

async fn bind(addr: &str, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("{key}: cannot listen on {addr}: {e}"))
}
