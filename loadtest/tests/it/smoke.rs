//! The harness end to end against a gateway and the real test broker: a short run of a
//! scenario that uses every authentication scheme, with its loss check.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hookgate_common::config::{Environment, Source};
use hookgate_gateway::config::Loaded;
use hookgate_gateway::{shutdown, Listeners, SinkKind};
use hookgate_loadtest::report::Report;
use hookgate_loadtest::scenario::{self, Scenario};
use hookgate_loadtest::spawn::http_ok;
use hookgate_testkit::{brokers, kafka, topic};
use tokio::net::TcpListener;

/// A gateway with one hook per authentication scheme, all publishing to `topics`.
fn gateway_toml(topics: &[String; 3]) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[kafka]
brokers = "{brokers}"
create_topics = true
replication_factor = 1
partitions = 2

[[hooks]]
id = "github"
topic = "{a}"
auth = {{ scheme = "hmac", preset = "github", secrets = [{{ value = "gh-secret" }}] }}
[[hooks]]
id = "stripe"
topic = "{a}"
key = {{ pointer = "/id" }}
auth = {{ scheme = "hmac", preset = "stripe", secrets = [{{ value = "whsec_stripe" }}] }}
[[hooks]]
id = "slack"
topic = "{b}"
auth = {{ scheme = "hmac", preset = "slack", secrets = [{{ value = "slack-secret" }}] }}
[[hooks]]
id = "svix"
topic = "{b}"
auth = {{ scheme = "hmac", preset = "standard_webhooks", secrets = [{{ value = "whsec_c3ZpeC1zZWNyZXQtZm9yLXRoZS1zbW9rZS10ZXN0" }}] }}
[[hooks]]
id = "ci"
topic = "{c}"
auth = {{ scheme = "basic", credentials = [{{ username = "ci", password = {{ env = "SMOKE_CI_PASSWORD" }} }}] }}
[[hooks]]
id = "inventory"
topic = "{c}"
auth = {{ scheme = "api_key", header = "x-api-key", secrets = [{{ value = "inventory-key" }}] }}
[[hooks]]
id = "alerts"
topic = "{c}"
auth = {{ scheme = "url_key", secrets = [{{ value = "alerts-url-key-0123456789abcdef" }}] }}
"#,
        brokers = brokers(),
        a = topics[0],
        b = topics[1],
        c = topics[2],
    )
}

const SCENARIO_HOOKS: &str = r#"
[[hooks]]
id = "github"
weight = 3
headers = { "x-github-event" = "push" }
body_bytes = [{ bytes = 1024, weight = 3 }, { bytes = 16384, weight = 1 }]
[[hooks]]
id = "stripe"
body_bytes = 2048
[[hooks]]
id = "slack"
content_type = "application/x-www-form-urlencoded"
body_bytes = 400
[[hooks]]
id = "svix"
[[hooks]]
id = "ci"
content_type = "application/xml"
[[hooks]]
id = "inventory"
body_bytes = 200
[[hooks]]
id = "alerts"
content_type = "text/plain"
body_bytes = 100
"#;

fn env() -> Environment {
    Environment::from_vars([("SMOKE_CI_PASSWORD", "ci-password")])
}

struct Gateway {
    url: String,
    trigger: shutdown::Trigger,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start_gateway(config: &Path, sink: SinkKind) -> Gateway {
    let loaded = Loaded::load(Source::File(config.to_path_buf()), env()).unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", http.local_addr().unwrap());
    let ready = format!("http://{}/readyz", admin.local_addr().unwrap());
    let (trigger, shutdown) = shutdown::channel();
    let task = tokio::spawn(hookgate_gateway::run(
        loaded,
        Listeners { http, admin },
        sink,
        shutdown,
    ));
    for _ in 0..600 {
        if http_ok(&ready).await {
            return Gateway { url, trigger, task };
        }
        assert!(!task.is_finished(), "the gateway stopped during startup");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway was not ready in 30 s");
}

impl Gateway {
    async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
    }
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(topic("hookgate-smoke"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes the gateway config; returns its path and where the scenario goes.
fn scenario_files(dir: &Path, topics: &[String; 3]) -> (PathBuf, PathBuf) {
    let gateway = dir.join("gateway.toml");
    std::fs::write(&gateway, gateway_toml(topics)).unwrap();
    (gateway, dir.join("smoke.toml"))
}

async fn run_scenario(scenario_path: &Path, target: &str, duration: &str) -> Report {
    std::fs::write(
        scenario_path,
        format!(
            "description = \"smoke\"\ngateway_config = \"gateway.toml\"\ntarget = \"{target}\"\n\
             rate = 400\nconnections = 16\nduration = \"{duration}\"\nwarmup = \"500ms\"\n{SCENARIO_HOOKS}"
        ),
    )
    .unwrap();
    let scenario = Scenario::load_with(scenario_path, &env()).unwrap();
    let mut config = scenario.load_config();
    config.server_pid = Some(std::process::id());
    scenario::run(&scenario, &config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_second_run_signs_every_scheme_and_loses_nothing() {
    let topics = [topic("lt-a"), topic("lt-b"), topic("lt-c")];
    let dir = temp_dir();
    let (gateway_path, scenario_path) = scenario_files(&dir, &topics);
    let gateway = start_gateway(&gateway_path, SinkKind::Kafka).await;

    let report = run_scenario(&scenario_path, &gateway.url, "2s").await;
    gateway.stop().await;
    let _ = std::fs::remove_dir_all(&dir);

    // Every request of every hook was signed as its hook expects and stored.
    let accepted = report.responses.get(&202).copied().unwrap_or(0);
    assert_eq!(report.responses.len(), 1, "{report}");
    assert!(accepted > 500, "{report}");
    let scenario = report.scenario.as_ref().unwrap();
    assert_eq!(scenario.hooks.len(), 7);
    for hook in &scenario.hooks {
        assert!(
            hook.responses.get(&202).copied().unwrap_or(0) > 0,
            "{}: {:?}",
            hook.hook,
            hook.responses
        );
    }
    // Acknowledged ⊆ consumed, warm-up included.
    let v = report.verification.as_ref().unwrap();
    assert!(v.passed(), "{report}");
    assert_eq!(v.missing, 0);
    assert_eq!(v.found, v.acknowledged);
    assert!(v.acknowledged >= accepted, "{report}");
    assert_eq!(v.unverifiable, 0);
    assert!(v.records_read >= v.acknowledged);
    assert!(report.server_cpu_us_per_request.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loss_check_finds_acknowledged_events_that_are_not_on_the_topic() {
    // The null sink answers 202 with an event id and stores nothing: every acknowledged
    // event must be reported missing.
    let topics = [topic("lt-a"), topic("lt-b"), topic("lt-c")];
    for t in &topics {
        kafka::create_topic(&brokers(), t, 1).await;
    }
    let dir = temp_dir();
    let (gateway_path, scenario_path) = scenario_files(&dir, &topics);
    let gateway = start_gateway(&gateway_path, SinkKind::Null).await;

    let report = run_scenario(&scenario_path, &gateway.url, "1s").await;
    gateway.stop().await;
    let _ = std::fs::remove_dir_all(&dir);

    let v = report.verification.as_ref().unwrap();
    assert!(v.acknowledged > 200, "{report}");
    assert_eq!(v.missing, v.acknowledged, "{report}");
    assert_eq!(v.found, 0);
    assert!(!v.passed());
    assert_eq!(v.missing_ids.len(), 10);
    assert!(report.to_string().contains("missing, e.g.:"));
}
