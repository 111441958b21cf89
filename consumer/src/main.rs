//! The `hookgate-consumer` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hookgate_common::config::{Environment, Source};
use hookgate_consumer::config::{self, DEFAULT_PATH};
use hookgate_consumer::redrive;

// mimalloc rather than the system allocator: a run allocates the event, its template
// context and its record, and with glibc's malloc allocation was a third of the
// consumer's CPU (docs/performance.md, "The flow consumer").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "hookgate-consumer",
    version,
    about = "Runs flows on hookgate's event topics"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read the event topics and run the flows.
    Run {
        #[arg(long, short, default_value = DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Validate a config (every template and expression) and list its flows.
    Check {
        #[arg(long, short, default_value = DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Run one flow again, and only that flow, for one event or for its dead letters: the
    /// events go back on their topics, marked for that flow.
    Redrive {
        #[command(flatten)]
        target: FlowArgs,
        /// The event with this id (looked for on the topics the consumer reads).
        #[arg(
            long,
            conflicts_with = "from_dead_letter",
            required_unless_present = "from_dead_letter"
        )]
        event: Option<String>,
        /// Every event whose run of the flow was dead-lettered.
        #[arg(long)]
        from_dead_letter: bool,
    },
    /// Send a connection's test request (GET of its base URL unless it says otherwise)
    /// and show what the server answered, credentials masked.
    TestConnection {
        #[arg(long, short, default_value = DEFAULT_PATH)]
        config: PathBuf,
        /// The connection's name (`[connections.NAME]`).
        name: String,
    },
    /// OAuth2 for a connection.
    #[command(subcommand)]
    Oauth2(Oauth2Command),
    /// Show what a flow would do for an event (conditions, variables, every task's
    /// rendered request, secrets masked) without sending anything.
    DryRun {
        #[command(flatten)]
        target: FlowArgs,
        /// A file holding the event as JSON (as `hookgate tail` prints it).
        #[arg(
            long,
            conflicts_with = "event_id",
            required_unless_present = "event_id"
        )]
        event: Option<PathBuf>,
        /// The id of an event on the topics the consumer reads.
        #[arg(long)]
        event_id: Option<String>,
    },
}

#[derive(Subcommand)]
enum Oauth2Command {
    /// Obtain a connection's refresh token with the authorization code grant (PKCE):
    /// prints the URL to open, serves the redirect on loopback, exchanges the code and
    /// writes the refresh token to the connection's `refresh_token_file`.
    Authorize {
        #[arg(long, short, default_value = DEFAULT_PATH)]
        config: PathBuf,
        /// The connection's name (`[connections.NAME]`).
        #[arg(long)]
        connection: String,
        /// How long to wait for the redirect, e.g. `5m`.
        #[arg(long, default_value = "5m", value_parser = parse_since)]
        wait: std::time::Duration,
    },
}

/// The config, one of its flows, and how far back events are looked for.
#[derive(clap::Args)]
struct FlowArgs {
    #[arg(long, short, default_value = DEFAULT_PATH)]
    config: PathBuf,
    /// The flow: `namespace.id`, or its id alone when no other namespace has it.
    #[arg(long)]
    flow: String,
    /// How far back to look for events, e.g. `1h`, `7d`.
    #[arg(long, default_value = "24h", value_parser = parse_since)]
    since: std::time::Duration,
}

impl FlowArgs {
    /// The settings, and the index of the flow among them.
    fn load(&self, env: &Environment) -> anyhow::Result<(config::Settings, usize)> {
        let settings = config::load(&Source::File(self.config.clone()), env)?;
        let flow = hookgate_consumer::flow::find(&settings.flows, &self.flow)
            .map_err(|e| anyhow::anyhow!("--flow: {e}"))?;
        let at = settings
            .flows
            .iter()
            .position(|f| std::ptr::eq(f, flow))
            .expect("found among them");
        Ok((settings, at))
    }
}

fn parse_since(text: &str) -> Result<std::time::Duration, String> {
    hookgate_common::time::parse_duration(text)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    hookgate_common::logging::init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(dispatch(cli.command)) {
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
        Command::Run { config } => {
            let settings = config::load(&Source::File(config), &env)?;
            hookgate_consumer::metrics::install();
            let listener = tokio::net::TcpListener::bind(&settings.admin.listen)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "admin.listen: cannot listen on {}: {e}",
                        settings.admin.listen
                    )
                })?;
            let ready = hookgate_consumer::admin::Ready::default();
            tokio::spawn(hookgate_consumer::admin::serve(listener, ready.clone()));
            hookgate_consumer::runtime::run(settings, ready, shutdown()).await
        }
        Command::Check { config } => {
            let settings = config::load(&Source::File(config.clone()), &env)?;
            print!("{}", hookgate_consumer::config::flow_table(&settings));
            let subscription = hookgate_consumer::subscription::Subscription::new(&settings.kafka);
            let own = subscription.own_matched();
            if !own.is_empty() {
                println!(
                    "note: kafka.topic_pattern also matches {}, this consumer's own topics: they are not read",
                    own.join(", ")
                );
            }
            println!(
                "{}: ok ({} flows, {} pollers)",
                config.display(),
                settings.flows.len(),
                settings.pollers.len()
            );
            Ok(())
        }
        Command::Redrive {
            target,
            event,
            from_dead_letter: _,
        } => {
            let (settings, at) = target.load(&env)?;
            let flow = &settings.flows[at];
            let source = match event {
                Some(id) => redrive::Source::Event(id),
                None => redrive::Source::DeadLetters,
            };
            let done = redrive::redrive(&settings, flow, &source, target.since).await?;
            for r in &done {
                println!(
                    "redriven: event {} to {} [{}] at offset {}{}",
                    r.event_id,
                    r.topic,
                    r.partition,
                    r.offset,
                    r.of.as_deref()
                        .map(|of| format!(" (repeats execution {of})"))
                        .unwrap_or_default()
                );
            }
            println!(
                "{} event{} redriven for flow {}",
                done.len(),
                if done.len() == 1 { "" } else { "s" },
                flow.qualified_id()
            );
            Ok(())
        }
        Command::TestConnection { config, name } => {
            let settings = config::load(&Source::File(config), &env)?;
            let report = hookgate_consumer::connection::test(
                &settings.connections,
                &settings.engine,
                &settings.policy,
                &name,
            )
            .await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("JSON serializes")
            );
            if report["ok"] != true {
                anyhow::bail!(
                    "connection `{name}`: the server answered {}",
                    report["response"]["status"]
                );
            }
            Ok(())
        }
        Command::Oauth2(Oauth2Command::Authorize {
            config,
            connection,
            wait,
        }) => {
            let settings = config::load(&Source::File(config), &env)?;
            let file = hookgate_consumer::authorize::authorize(
                &settings.connections,
                &settings.engine,
                &settings.policy,
                &connection,
                wait,
                |url| {
                    println!("open this URL to authorize connection `{connection}`:\n{url}");
                    use std::io::Write as _;
                    let _ = std::io::stdout().flush();
                },
            )
            .await?;
            println!(
                "stored the refresh token of connection `{connection}` in {}",
                file.display()
            );
            Ok(())
        }
        Command::DryRun {
            target,
            event,
            event_id,
        } => {
            let (settings, at) = target.load(&env)?;
            let flow = &settings.flows[at];
            let event = match (event, event_id) {
                (Some(path), _) => hookgate_consumer::dry_run::event_file(&path)?,
                (None, Some(id)) => {
                    hookgate_consumer::dry_run::event_by_id(&settings.kafka, &id, target.since)
                        .await?
                }
                (None, None) => unreachable!("clap requires one"),
            };
            let report = hookgate_consumer::dry_run::report(flow, &event, &settings.engine);
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("JSON serializes")
            );
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
}
