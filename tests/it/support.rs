//! Builders and helpers shared by the integration tests.

pub mod http;

pub use hookgate_testkit::{brokers, kafka, topic, wait_until};

use std::time::Duration;

use hookgate_common::config::{Environment, Source};
use hookgate_gateway::config::Loaded;
use hookgate_gateway::shutdown::{self, Trigger};
use hookgate_gateway::{Listeners, SinkKind};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A gateway config under construction: server and Kafka defaults for tests, plus hooks
/// given as TOML tables.
pub struct GatewayBuilder {
    brokers: String,
    kafka: Vec<String>,
    server: Vec<String>,
    admin: Vec<String>,
    rejections: Vec<String>,
    replies: Vec<String>,
    hooks: Vec<String>,
    /// Whole tables more, e.g. `[telemetry]` with its keys.
    tables: Vec<String>,
    env: Vec<(String, String)>,
    sink: SinkKind,
}

impl GatewayBuilder {
    pub fn new() -> Self {
        GatewayBuilder {
            brokers: String::new(),
            kafka: vec![
                "create_topics = true".into(),
                "replication_factor = 1".into(),
            ],
            server: Vec::new(),
            admin: Vec::new(),
            rejections: Vec::new(),
            replies: Vec::new(),
            hooks: Vec::new(),
            tables: Vec::new(),
            env: Vec::new(),
            sink: SinkKind::Kafka,
        }
    }

    /// A whole table more, header included (`"[telemetry]\notlp_endpoint = …"`).
    pub fn table(mut self, toml: &str) -> Self {
        self.tables.push(toml.to_string());
        self
    }

    /// Against the suite's broker.
    pub fn tansu() -> Self {
        Self::new().brokers(&brokers())
    }

    pub fn brokers(mut self, brokers: &str) -> Self {
        self.brokers = brokers.to_string();
        self
    }

    /// Adds a `[[hooks]]` table, given as its TOML body.
    pub fn hook(mut self, toml: &str) -> Self {
        self.hooks.push(toml.to_string());
        self
    }

    /// Adds a line to `[kafka]`.
    pub fn kafka(mut self, line: &str) -> Self {
        self.kafka.push(line.to_string());
        self
    }

    /// Adds a line to `[server]`.
    pub fn server(mut self, line: &str) -> Self {
        self.server.push(line.to_string());
        self
    }

    /// Adds a line to `[admin]`.
    pub fn admin(mut self, line: &str) -> Self {
        self.admin.push(line.to_string());
        self
    }

    /// Adds a line to `[rejections]`.
    pub fn rejections(mut self, line: &str) -> Self {
        self.rejections.push(line.to_string());
        self
    }

    /// Adds a line to `[replies]`.
    pub fn replies(mut self, line: &str) -> Self {
        self.replies.push(line.to_string());
        self
    }

    /// Sets a variable in the environment the config sees (secrets).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn null_sink(mut self) -> Self {
        self.sink = SinkKind::Null;
        self
    }

    pub fn toml(&self) -> String {
        let mut t = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n# Tests stop at once: no load balancer to drain from.\ndrain_delay = \"0s\"\n{}\n[admin]\nlisten = \"127.0.0.1:0\"\n{}\n[kafka]\nbrokers = \"{}\"\n{}\n[rejections]\n{}\n[replies]\n{}\n",
            self.server.join("\n"),
            self.admin.join("\n"),
            self.brokers,
            self.kafka.join("\n"),
            self.rejections.join("\n"),
            self.replies.join("\n")
        );
        for table in &self.tables {
            t.push_str(table);
            t.push('\n');
        }
        for h in &self.hooks {
            t.push_str("\n[[hooks]]\n");
            t.push_str(h);
            t.push('\n');
        }
        t
    }

    /// Builds and starts the gateway; returns once it accepts requests. The config is
    /// written to a file ([`RunningGateway::config_path`]) so reloads can read it again.
    pub async fn start(self) -> RunningGateway {
        let env = Environment::from_vars(self.env.clone());
        let dir =
            std::env::temp_dir().join(format!("hookgate-it-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let config_path = dir.join("hookgate.toml");
        std::fs::write(&config_path, self.toml()).unwrap();
        let loaded =
            Loaded::load(Source::File(config_path.clone()), env).unwrap_or_else(|e| panic!("{e}"));
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", http.local_addr().unwrap());
        let admin_url = format!("http://{}", admin.local_addr().unwrap());
        let (trigger, shutdown) = shutdown::channel();
        let task = tokio::spawn(hookgate_gateway::run(
            loaded,
            Listeners { http, admin },
            self.sink,
            shutdown,
        ));
        let gw = RunningGateway {
            url,
            admin_url,
            config_path,
            trigger,
            task,
        };
        gw.wait_ready().await;
        gw
    }
}

/// A gateway serving in this process.
pub struct RunningGateway {
    pub url: String,
    pub admin_url: String,
    /// The config file the gateway was started from.
    pub config_path: std::path::PathBuf,
    trigger: Trigger,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningGateway {
    /// Waits until `/readyz` is green (topics created, broker reachable).
    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if self.task.is_finished() {
                panic!("the gateway stopped during startup");
            }
            if let Ok(r) = http::get(&format!("{}/readyz", self.admin_url)).await {
                if r.status == 200 {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gateway not ready in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn hook_url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Shuts down and waits for the gateway to drain and return.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.trigger.trigger();
        let result = self.task.await.expect("gateway task");
        if let Some(dir) = self.config_path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
        result
    }
}

/// HMAC-SHA256 of `data`, hex, computed independently of the gateway's verifier.
/// librdkafka's mock cluster, the stand-in for outage tests.
pub type Cluster =
    rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

/// A one-broker mock cluster holding `topics` and the gateway's default rejections
/// topic (a gateway does not start while a topic it writes is missing).
pub fn mock_cluster(topics: &[&str]) -> Cluster {
    let cluster = Cluster::new(1).unwrap();
    for topic in topics.iter().chain(&["hookgate.rejections"]) {
        cluster.create_topic(topic, 1, 1).unwrap();
    }
    cluster
}

pub fn hmac_sha256_hex(secret: &str, data: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(data);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Now, in Unix seconds, as providers send it.
pub fn unix_now() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string()
}

/// The flow consumer (flows and pollers) running in this process.
pub use hookgate_consumer::runtime::Running as RunningConsumer;

/// The value of the metric line `series` (name and labels, as `/metrics` writes them) on
/// the admin listener at `admin_url`; `None` while it is not shown.
pub async fn metric(admin_url: &str, series: &str) -> Option<f64> {
    let page = http::get(&format!("{admin_url}/metrics")).await.ok()?;
    String::from_utf8_lossy(&page.body).lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Waits (at most 10 s) until the metric `series` satisfies `wanted`.
pub async fn metric_until(admin_url: &str, series: &str, wanted: impl Fn(f64) -> bool) {
    wait_until(
        &format!("{series} as wanted"),
        Duration::from_secs(10),
        || async { metric(admin_url, series).await.is_some_and(&wanted) },
    )
    .await;
}

/// A child process (a gateway, a proxy, a server), killed when dropped.
pub struct Process(pub std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `hookgate run` process on the config `toml`, written to `dir/NAME.toml`; its log
/// goes to `dir/NAME.log`.
pub fn gateway_process(
    dir: &std::path::Path,
    name: &str,
    toml: &str,
    env: &[(&str, &str)],
) -> Process {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, toml).unwrap();
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    Process(
        std::process::Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(["run", "--config"])
            .arg(&config)
            .envs(env.iter().copied())
            .env("HOOKGATE_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// Debian's HAProxy on 127.0.0.1:`front`, round robin (unless `backend` has a `balance`
/// of its own) over the backend lines `backend` (`server …`, health-check options), with
/// its config in `dir/haproxy.cfg`.
pub fn haproxy(dir: &std::path::Path, front: u16, backend: &str) -> Process {
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 4096\n\
             defaults\n  mode http\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
             frontend hooks\n  bind 127.0.0.1:{front}\n  default_backend gateways\n\
             backend gateways\n  balance roundrobin\n{backend}"
        ),
    )
    .unwrap();
    Process(
        std::process::Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("haproxy (Debian's haproxy; scripts/test installs it)"),
    )
}
