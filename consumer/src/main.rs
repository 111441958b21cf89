//! The `hookgate-consumer` command.

use clap::Parser;
use hookgate_consumer::source::{self, SourceConfig};

#[derive(Parser)]
#[command(
    name = "hookgate-consumer",
    version,
    about = "Reads hookgate's event topics and logs each event"
)]
struct Cli {
    /// Bootstrap brokers.
    #[arg(long, default_value = "localhost:9092")]
    brokers: String,
    /// Consumer group id.
    #[arg(long, default_value = "hookgate-consumer")]
    group: String,
    /// Event topics to read, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    topics: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOOKGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = SourceConfig {
        brokers: cli.brokers,
        group: cli.group,
        topics: cli.topics,
    };
    source::run(config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
