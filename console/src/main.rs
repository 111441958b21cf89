//! `hookgate-console`: the web console over hookgate's topics.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hookgate_common::config::Environment;
use hookgate_console::config::{self, DEFAULT_PATH};

#[derive(Parser)]
#[command(
    name = "hookgate-console",
    version,
    about = "See and steer hookgate's deliveries, runs and dead letters in a browser."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Index the topics and serve the console.
    Run {
        #[arg(long, short, default_value = DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Check the configuration (and the gateway's and consumer's it reads) and exit.
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
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookgate-console: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let env = Environment::from_process();
    match cli.command {
        Command::Check { config } => {
            let settings = config::load(&config, &env)?;
            println!("console config OK: listening on {}", settings.listen);
            for (topic, kind) in settings.topics().0 {
                println!("reads {topic} ({kind:?})");
            }
            Ok(())
        }
        Command::Run { config } => {
            let settings = config::load(&config, &env)?;
            let listener = tokio::net::TcpListener::bind(settings.listen).await?;
            println!(
                "hookgate-console listening on http://{}",
                listener.local_addr()?
            );
            hookgate_console::run(settings, listener, stop_signal()).await
        }
    }
}

/// SIGTERM or SIGINT.
async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
