//! hookgate-console: see every delivery, rejection, flow run, dead letter and poller,
//! and steer them (redrive, dry-run), in a browser or through the JSON API beside each
//! page.
//!
//! The console reads the topics the gateway and the consumer write, on its own,
//! into a rolling SQLite index, and serves pages from it. Kafka stays the source of
//! truth: the index is rebuilt from the topics when its file is missing, and a redrive
//! reads the dead letter back from Kafka whole.
//!
//! # Layout
//! - [`config`]: `hookgate-console.toml`, and what the console takes from the gateway's
//!   and the consumer's configs;
//! - [`ingest`]: the topics → index rows, on a thread of its own;
//! - [`index`]: the SQLite schema, writes, retention and the queries of the pages;
//! - [`web`]: the HTTP server, login, and the pages and API;
//! - [`actions`]: what the console changes (redrive).

pub mod actions;
pub mod config;
pub mod index;
pub mod ingest;
pub mod web;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use rdkafka::producer::FutureProducer;

pub use config::Settings;

/// The templates, compiled in.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("web/templates/base.html")),
    ("login.html", include_str!("web/templates/login.html")),
    ("hooks.html", include_str!("web/templates/hooks.html")),
    (
        "deliveries.html",
        include_str!("web/templates/deliveries.html"),
    ),
    ("delivery.html", include_str!("web/templates/delivery.html")),
    (
        "executions.html",
        include_str!("web/templates/executions.html"),
    ),
    (
        "execution.html",
        include_str!("web/templates/execution.html"),
    ),
    (
        "dead_letters.html",
        include_str!("web/templates/dead_letters.html"),
    ),
    (
        "dead_letter.html",
        include_str!("web/templates/dead_letter.html"),
    ),
    ("redriven.html", include_str!("web/templates/redriven.html")),
    ("pollers.html", include_str!("web/templates/pollers.html")),
    ("dry_run.html", include_str!("web/templates/dry_run.html")),
];

/// A running console's shared state.
pub struct Console {
    pub settings: Settings,
    pub reader: index::Reader,
    pub gate: web::auth::Gate,
    pub templates: minijinja::Environment<'static>,
    pub progress: Arc<ingest::Progress>,
    producer: OnceLock<FutureProducer>,
}

impl Console {
    /// The console over `settings`, its index opened (and created when missing).
    pub fn new(settings: Settings) -> anyhow::Result<Console> {
        index::Index::open(&settings.index.path)?;
        let mut templates = minijinja::Environment::new();
        // Every `.html` template escapes what it prints.
        templates.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        for (name, text) in TEMPLATES {
            templates.add_template(name, text)?;
        }
        Ok(Console {
            reader: index::Reader::new(&settings.index.path),
            gate: web::auth::Gate::new(settings.login.clone()),
            templates,
            progress: Arc::default(),
            producer: OnceLock::new(),
            settings,
        })
    }

    /// The producer of redrives, made at first use.
    pub fn producer(&self) -> anyhow::Result<&FutureProducer> {
        if let Some(p) = self.producer.get() {
            return Ok(p);
        }
        let p = self.settings.consumer.kafka.producer()?;
        Ok(self.producer.get_or_init(|| p))
    }
}

/// A console serving in this process (`hookgate local`, tests).
pub struct Running {
    pub addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Starts the console on `listener`.
    pub fn start(
        settings: Settings,
        listener: tokio::net::TcpListener,
    ) -> std::io::Result<Running> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(run(settings, listener, async {
            let _ = stopped.await;
        }));
        Ok(Running { addr, stop, task })
    }

    /// The console's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and indexing, and waits until both have.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await?
    }
}

/// Indexes the topics and serves the console on `listener` until `shutdown`.
pub async fn run(
    settings: Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let console = Arc::new(Console::new(settings)?);
    let stop = Arc::new(AtomicBool::new(false));
    let indexer = {
        let s = &console.settings;
        let index = index::Index::open(&s.index.path)?;
        let (config, topics, limit, retention) = (
            s.kafka_config(),
            s.topics(),
            s.index.body_limit,
            s.index.retention,
        );
        let (progress, stop) = (console.progress.clone(), stop.clone());
        std::thread::Builder::new()
            .name("console-index".into())
            .spawn(move || ingest::run(index, config, topics, limit, retention, progress, stop))?
    };
    web::serve(listener, console, shutdown).await;
    stop.store(true, Ordering::Relaxed);
    match tokio::task::spawn_blocking(move || indexer.join()).await {
        Ok(Ok(Err(e))) => Err(e.context("the console's index reader stopped")),
        _ => Ok(()),
    }
}
