//! Named connections: a flow's task that names one calls a path under its base URL with
//! its authentication and default headers; `hookgate-consumer test-connection` reports
//! what the server answered with the credentials masked; a connection's own CA and
//! proxy carry its requests; the outbound policy still decides which addresses a
//! connection may reach.

use std::process::Command;
use std::time::Duration;

use hookgate_common::config::{Environment, Source};
use hookgate_consumer::config::ConsumerConfig;
use hookgate_testkit::kafka::{create_topic, Producer};
use hookgate_testkit::server::{json_reply, TestServer};
use hookgate_testkit::{brokers, topic, wait_until};
use serde_json::{json, Value};

use crate::support::Running;

const TOKEN: &str = "connection-token-51c9";

/// A config with connection `orders-api` at `base` and a flow calling it.
fn config(base: &str, events: &str, allow_loopback: bool) -> String {
    let allow = if allow_loopback {
        "[outbound]\nallow = [\"127.0.0.1/32\"]\n"
    } else {
        ""
    };
    format!(
        r#"[kafka]
brokers = "{brokers}"
group = "{group}"
topics = ["{events}"]
dead_letter_topic = "{dead}"
consumer_properties = {{ "session.timeout.ms" = 6000, "max.poll.interval.ms" = 10000 }}

{allow}
[secrets]
TOKEN = {{ env = "CONNECTION_TOKEN" }}

[connections.orders-api]
base_url = "{base}/v1/"
auth = {{ bearer = "{{{{ secret('TOKEN') }}}}" }}
headers = {{ accept = "application/json", "x-team" = "shop" }}
test = {{ path = "/health" }}

[[flows]]
id = "book"
namespace = "shop"
trigger = {{ hooks = ["orders"] }}

[[flows.tasks]]
id = "create"
type = "http"
connection = "orders-api"
method = "POST"
uri = "/orders"
headers = {{ "x-team" = "checkout" }}
body = {{ order = "{{{{ trigger.body.order }}}}" }}
"#,
        brokers = brokers(),
        group = topic("group"),
        dead = topic("dead"),
    )
}

fn env() -> Environment {
    Environment::from_vars([("CONNECTION_TOKEN".to_string(), TOKEN.to_string())])
}

fn test_connection(config_text: &str, name: &str) -> (bool, String, String) {
    let dir = std::env::temp_dir().join(format!("hookgate-conn-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("consumer.toml");
    std::fs::write(&path, config_text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate-consumer"))
        .args(["test-connection", "--config"])
        .arg(&path)
        .arg(name)
        .env("CONNECTION_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(dir);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_calls_a_path_under_its_connection_with_its_auth_and_headers() {
    let events = topic("orders");
    create_topic(&brokers(), &events, 1).await;
    let server = TestServer::start(|_| json_reply(201, &json!({"id": "o-1"}))).await;
    let text = config(&server.url(""), &events, true);
    let env = env();
    let settings = ConsumerConfig::load(
        &Source::Text {
            name: "test".into(),
            toml: text,
        },
        &env,
    )
    .and_then(|c| c.build(&env, "test"))
    .unwrap_or_else(|e| panic!("{e}"));
    let consumer = Running::start(settings);
    Producer::new(&brokers()).event(
        &events,
        None,
        "orders",
        "order.created",
        &json!({"order": "A-9"}),
    );
    wait_until("the call", Duration::from_secs(30), || async {
        server.hits() == 1
    })
    .await;
    let call = &server.seen()[0];
    assert_eq!(call.method, "POST");
    assert_eq!(call.target, "/v1/orders");
    assert_eq!(
        call.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(call.header("accept"), Some("application/json"));
    assert_eq!(
        call.header("x-team"),
        Some("checkout"),
        "the task's own header wins"
    );
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(body, json!({"order": "A-9"}));
    consumer.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn test_connection_reports_the_answer_with_credentials_masked() {
    let server = TestServer::start(|seen| {
        if seen.target == "/v1/health" {
            json_reply(200, &json!({"status": "green"}))
        } else {
            json_reply(404, &json!({"error": "no such path"}))
        }
    })
    .await;
    let text = config(&server.url(""), "unused", true);
    let (ok, stdout, stderr) = test_connection(&text, "orders-api");
    assert!(ok, "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["response"]["status"], 200);
    assert_eq!(report["response"]["body"], r#"{"status":"green"}"#);
    assert_eq!(
        report["request"]["headers"]["authorization"][0],
        "[redacted]"
    );
    assert!(
        !stdout.contains(TOKEN) && !stderr.contains(TOKEN),
        "the token shows"
    );
    let call = &server.seen()[0];
    assert_eq!(
        (call.method.as_str(), call.target.as_str()),
        ("GET", "/v1/health")
    );
    assert_eq!(
        call.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );

    // A connection whose test path is not there: the answer is shown, the command fails.
    let missing = text.replace(
        "test = { path = \"/health\" }",
        "test = { path = \"/nope\" }",
    );
    let (ok, stdout, stderr) = test_connection(&missing, "orders-api");
    assert!(!ok);
    assert!(stdout.contains("\"status\": 404"), "{stdout}");
    assert!(stderr.contains("answered 404"), "{stderr}");

    // An unknown name is named, with the ones declared.
    let (ok, _, stderr) = test_connection(&text, "jira");
    assert!(!ok);
    assert!(
        stderr.contains("no connection is named `jira`") && stderr.contains("orders-api"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_with_its_own_ca_and_proxy_is_tested_through_them() {
    let pki = crate::transport::Pki::new(false);
    let server = TestServer::start_tls(std::sync::Arc::new(pki.server.clone()), |_| {
        json_reply(200, &json!({"status": "green"}))
    })
    .await;
    let proxy = crate::transport::TestProxy::start(None).await;
    let base = server.localhost_url("").replace("http://", "https://");
    let ca = pki.file("ca.pem").display().to_string();
    let with = |tls: &str| {
        config(&base, "unused", true).replace(
            "test = { path = \"/health\" }",
            &format!(
                "test = {{ path = \"/health\" }}\n{tls}\nproxy = \"{}\"",
                proxy.url("")
            ),
        )
    };
    let (ok, stdout, stderr) = test_connection(
        &with(&format!("tls = {{ ca_file = \"{ca}\" }}")),
        "orders-api",
    );
    assert!(ok, "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["response"]["body"], r#"{"status":"green"}"#);
    let call = &server.seen()[0];
    assert_eq!(call.target, "/v1/health");
    assert_eq!(call.sni.as_deref(), Some("localhost"));
    assert!(
        proxy.heads()[0].starts_with(&format!("CONNECT 127.0.0.1:{} ", server.port())),
        "{:?}",
        proxy.heads()
    );

    // Without its CA the server's certificate is refused.
    let (ok, _, stderr) = test_connection(&with(""), "orders-api");
    assert!(!ok && stderr.contains("TLS"), "{stderr}");
    // A CA file that is not there is refused at load, by key.
    let (ok, _, stderr) = test_connection(
        &with("tls = { ca_file = \"/nonexistent/corp-ca.pem\" }"),
        "orders-api",
    );
    assert!(
        !ok && stderr.contains("connections.orders-api.tls.ca_file"),
        "{stderr}"
    );
    assert_eq!(server.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_outbound_policy_still_decides_where_a_connection_may_go() {
    let server = TestServer::start(|_| json_reply(200, &json!({}))).await;
    // No `allow` for loopback: the policy refuses the address the base URL resolves to.
    let text = config(&server.url(""), "unused", false);
    let (ok, _, stderr) = test_connection(&text, "orders-api");
    assert!(!ok);
    assert!(stderr.contains("no answer"), "{stderr}");
    assert!(!stderr.contains(TOKEN));
    assert_eq!(server.hits(), 0, "the request went out");
}
