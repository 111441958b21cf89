//! `hookgate local`: the gateway on 127.0.0.1 with an embedded Kafka-protocol broker
//! (librdkafka's mock cluster) in the same process, on the profile in config/local.toml.
//! Development secrets are generated at start and printed, so it needs no environment.

use std::net::SocketAddr;

use anyhow::Context;
use rdkafka::mocking::MockCluster;

use hookgate_common::config::{Environment, Source};
use hookgate_gateway::config::Loaded;
use hookgate_gateway::shutdown::Shutdown;
use hookgate_gateway::{Listeners, SinkKind};

mod echo;

/// The embedded local profile.
pub const PROFILE: &str = include_str!("../config/local.toml");
/// The consumer side of the local profile.
pub const CONSUMER_PROFILE: &str = include_str!("../config/local-consumer.toml");
/// The shipped flows.
pub const SCENARIOS: &str = include_str!("../config/flows/scenarios.toml");
/// The shipped flows in their polling form, with their pollers.
pub const SCENARIOS_POLLING: &str = include_str!("../config/flows/scenarios-polling.toml");
/// How often the shipped pollers poll the echo endpoint here, in seconds.
const LOCAL_POLL_SECONDS: u64 = 5;

/// Secrets the profile references, generated at each start.
const DEV_SECRETS: &[(&str, &str)] = &[
    ("HOOKGATE_DEV_ALERTS_KEY", "alerts"),
    ("HOOKGATE_DEV_GITHUB_SECRET", "github"),
    ("HOOKGATE_DEV_SLACK_SECRET", "slack"),
    ("HOOKGATE_DEV_GITLAB_TOKEN", "gitlab"),
];

/// Where `hookgate local` listens, unless told otherwise.
pub struct Options {
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub console_listen: Option<SocketAddr>,
}

/// Where the console listens unless told otherwise.
const CONSOLE_LISTEN: &str = "127.0.0.1:9400";

/// Runs the local profile until `shutdown`.
pub async fn run(options: Options, shutdown: Shutdown) -> anyhow::Result<()> {
    // The mock cluster lives as long as this function: the broker goes away with it.
    let cluster = MockCluster::new(1).context("starting the embedded broker")?;
    let bootstrap = cluster.bootstrap_servers();

    let mut env = Environment::from_process();
    let mut secrets = Vec::new();
    for (var, hook) in DEV_SECRETS {
        let value = uuid::Uuid::new_v4().simple().to_string();
        env.set(*var, value.clone());
        secrets.push((*hook, value));
    }
    env.set("HOOKGATE_KAFKA__BROKERS", bootstrap.clone());
    if let Some(addr) = options.listen {
        env.set("HOOKGATE_SERVER__LISTEN", addr.to_string());
    }
    if let Some(addr) = options.admin_listen {
        env.set("HOOKGATE_ADMIN__LISTEN", addr.to_string());
    }
    let source = Source::Text {
        name: "local profile".into(),
        toml: PROFILE.into(),
    };
    let loaded = Loaded::load(source, env)?;
    let settings = &loaded.settings;
    let echo = echo::start().await.context("starting the echo endpoint")?;
    let consumer = consumer_settings(&bootstrap, echo)?;
    let gateway_topics = settings.topics();
    let mut topics: Vec<&str> = gateway_topics.iter().map(String::as_str).collect();
    topics.extend(consumer.kafka.topics.iter().map(String::as_str));
    topics.push(&consumer.kafka.dead_letter_topic);
    if let Some(t) = &consumer.kafka.executions_topic {
        topics.push(t);
    }
    topics.sort();
    topics.dedup();
    for topic in topics {
        cluster
            .create_topic(topic, settings.kafka.partitions, 1)
            .with_context(|| format!("creating topic {topic}"))?;
    }
    cluster
        .create_topic(
            &consumer.kafka.control_topic,
            consumer.kafka.control_partitions,
            1,
        )
        .context("creating the pollers' control topic")?;
    let http = tokio::net::TcpListener::bind(&settings.server.listen)
        .await
        .with_context(|| {
            format!(
                "binding {} (pass --listen to use another address)",
                settings.server.listen
            )
        })?;
    let admin = tokio::net::TcpListener::bind(&settings.admin.listen)
        .await
        .with_context(|| {
            format!(
                "binding {} (pass --admin-listen to use another address)",
                settings.admin.listen
            )
        })?;
    let console_addr = options
        .console_listen
        .unwrap_or_else(|| CONSOLE_LISTEN.parse().expect("a socket address"));
    let console_listener = tokio::net::TcpListener::bind(console_addr)
        .await
        .with_context(|| {
            format!("binding {console_addr} (pass --console-listen to use another address)")
        })?;
    let http_addr = http.local_addr()?;
    let admin_addr = admin.local_addr()?;
    let console_addr = console_listener.local_addr()?;
    let console_token = uuid::Uuid::new_v4().simple().to_string();
    let console_index = tempfile_path("console.db");
    remove_index(&console_index);
    let console = console_settings(
        &loaded.config,
        consumer_settings(&bootstrap, echo)?,
        &console_token,
        &console_index,
    );

    println!("hookgate local: gateway and embedded broker on this machine only");
    println!("http: {http_addr}");
    println!("kafka: {bootstrap}");
    println!("admin: {admin_addr}");
    println!("echo: {echo}");
    println!("console: http://{console_addr}/ (development login token: {console_token})");
    let flows: Vec<String> = consumer.flows.iter().map(|f| f.qualified_id()).collect();
    println!(
        "flows: {} (their calls go to the echo endpoint)",
        flows.join(", ")
    );
    let pollers: Vec<&str> = consumer.pollers.iter().map(|p| p.id.as_str()).collect();
    println!(
        "pollers: {} (every {LOCAL_POLL_SECONDS} s, against the echo endpoint; events on hookgate.polls)",
        pollers.join(", ")
    );
    for (hook, value) in &secrets {
        println!("dev secret for hook `{hook}`: {value}");
    }
    println!();
    println!("try:");
    println!("  curl -si http://{http_addr}/hooks/orders -H 'content-type: application/json' -d '{{\"order_id\":\"A-1\",\"type\":\"order.created\",\"total\":42}}'");
    if let Some((_, key)) = secrets.iter().find(|(h, _)| *h == "alerts") {
        println!("  curl -si http://{http_addr}/hooks/alerts/{key} -d 'cpu=0.93&host=web-1'");
    }
    let sample = br#"{"action":"opened","number":1}"#;
    let github = crate::sign::render(
        settings,
        &crate::sign::Options {
            hook: "github",
            body: sample,
            body_path: "-",
            content_type: None,
            base_url: Some(&format!("http://{http_addr}")),
            curl: true,
        },
        std::time::SystemTime::now(),
    );
    if let Ok(cmd) = github {
        // The body goes on stdin so the command is self-contained.
        let cmd = cmd
            .trim_end()
            .replace("--data-binary '@-'", "--data-binary @-");
        println!(
            "  printf '%s' '{}' | {cmd}",
            String::from_utf8_lossy(sample)
        );
    }
    println!("  curl -si http://{http_addr}/hooks/inventory -H 'content-type: application/json' -d '{{\"product\":\"M8 bolts\",\"stock_value\":4,\"warehouse\":\"east\"}}'");
    println!("  curl -si http://{http_addr}/hooks/bi-usage -H 'content-type: application/json' -d '{{\"workbook_id\":\"wb-42\",\"workbook_name\":\"Q3 churn\",\"hits_last_14_days\":3}}'");
    println!("  hookgate tail hookgate.orders --brokers {bootstrap} --from-beginning");
    println!();

    // The gateway's recorder renders the one metrics page: installed before the flow
    // consumer describes its series to it.
    hookgate_gateway::metrics::install();
    let console_stop = shutdown.clone();
    let console = tokio::spawn(hookgate_console::run(
        console,
        console_listener,
        async move { console_stop.wait().await },
    ));
    let flows_stop = shutdown.clone();
    let flows = tokio::spawn(hookgate_consumer::runtime::run(
        consumer,
        hookgate_consumer::admin::Ready::default(),
        async move { flows_stop.wait().await },
    ));
    let result =
        hookgate_gateway::run(loaded, Listeners { http, admin }, SinkKind::Kafka, shutdown).await;
    match flows.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "the flow consumer stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "the flow consumer failed"),
        Ok(Ok(())) => {}
    }
    match console.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "the console stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "the console failed"),
        Ok(Ok(())) => {}
    }
    remove_index(&console_index);
    drop(cluster);
    result
}

/// Removes an index file and SQLite's companions of it.
fn remove_index(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// A file name of this process's own in the temporary directory.
fn tempfile_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("hookgate-local-{}-{name}", std::process::id()))
}

/// The console's settings: the local profile's hooks and flows, an index that lives as
/// long as the embedded broker, and a development token.
fn console_settings(
    gateway: &hookgate_gateway::config::Config,
    consumer: hookgate_consumer::config::Settings,
    token: &str,
    index: &std::path::Path,
) -> hookgate_console::Settings {
    use hookgate_common::config::{Secret, SecretSet};
    use hookgate_console::config::{IndexSettings, Login};
    let (hooks, rejections_topic) = hookgate_console::config::hook_views(gateway);
    hookgate_console::Settings {
        listen: "127.0.0.1:0".parse().expect("a socket address"),
        group: "hookgate-local-console".into(),
        index: IndexSettings {
            path: index.to_path_buf(),
            body_limit: 64 * 1024,
            retention: hookgate_console::index::Retention {
                max_age: std::time::Duration::from_secs(24 * 3600),
                max_events: 100_000,
            },
        },
        login: Login {
            token: Some(SecretSet::new(&[Secret::new(
                token.as_bytes().to_vec(),
                None,
            )])),
            basic: None,
        },
        hooks,
        rejections_topic,
        consumer: std::sync::Arc::new(consumer),
    }
}

/// The local profile's hooks, for `hookgate check` style listings and tests.
pub fn profile_source() -> hookgate_common::config::Source {
    Source::Text {
        name: "local profile".into(),
        toml: PROFILE.into(),
    }
}

/// The secrets of the shipped flows and pollers (`config/local-consumer.toml` lists their
/// names) for a stand-in of their APIs at `base`: every URL under `base`, every credential
/// a development value. `hookgate local` points them at its echo endpoint; the tests, at
/// their stand-in server.
pub fn scenario_secrets(base: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MESSAGING_WEBHOOK_URL", format!("{base}/messaging/webhook")),
        ("SLACK_WEBHOOK_URL", format!("{base}/slack/webhook")),
        ("BI_BASE_URL", format!("{base}/bi")),
        ("BI_API_VERSION", "3.22".to_string()),
        ("BI_PAT_NAME", "dev-pat".to_string()),
        ("BI_PAT_SECRET", "dev-pat-secret".to_string()),
        ("TICKETS_BASE_URL", format!("{base}/tickets")),
        ("TICKETS_CLIENT_ID", "dev-client".to_string()),
        ("TICKETS_CLIENT_SECRET", "dev-client-secret".to_string()),
        ("CHAT_BASE_URL", format!("{base}/chat")),
        ("CHAT_BOT_TOKEN", "dev-bot-token".to_string()),
        ("ONCALL_USERS", "U0DEV1,U0DEV2".to_string()),
        ("PAGER_BASE_URL", format!("{base}/pager")),
        ("PAGER_ROUTING_KEY", "dev-routing-key".to_string()),
        ("INVENTORY_API_URL", format!("{base}/inventory")),
        ("INVENTORY_API_TOKEN", "dev-inventory-token".to_string()),
        ("USAGE_API_URL", format!("{base}/usage")),
        ("USAGE_API_TOKEN", "dev-usage-token".to_string()),
        ("MONITORING_API_URL", format!("{base}/monitoring")),
        ("MONITORING_API_TOKEN", "dev-monitoring-token".to_string()),
    ]
}

/// The flow consumer's settings: the local consumer profile with the shipped flows, every
/// secret pointing at the echo endpoint or a development value.
fn consumer_settings(
    bootstrap: &str,
    echo: std::net::SocketAddr,
) -> anyhow::Result<hookgate_consumer::config::Settings> {
    use hookgate_consumer::config::{ConsumerConfig, FlowsFile};
    let base = format!("http://{echo}");
    let mut env = Environment::default();
    for (name, value) in scenario_secrets(&base) {
        env.set(name, value);
    }
    env.set("HOOKGATE_CONSUMER_KAFKA__BROKERS", bootstrap);
    let source = Source::Text {
        name: "local consumer profile".into(),
        toml: CONSUMER_PROFILE.into(),
    };
    let mut config = ConsumerConfig::load(&source, &env)?;
    config
        .flows
        .extend(FlowsFile::parse(SCENARIOS, "config/flows/scenarios.toml")?.flows);
    let polling = FlowsFile::parse(SCENARIOS_POLLING, "config/flows/scenarios-polling.toml")?;
    config.flows.extend(polling.flows);
    let interval = hookgate_common::config::ConfigDuration::from_secs(LOCAL_POLL_SECONDS);
    config
        .pollers
        .extend(polling.pollers.into_iter().map(|mut p| {
            p.interval = interval;
            p
        }));
    Ok(config.build(&env, "local consumer profile")?)
}
