//! The `hookgate-consumer` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hookgate_common::config::{Environment, Source};
use hookgate_consumer::config::{self, DEFAULT_PATH};

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
