//! A console over its own topics, with a flow consumer beside it.

use std::path::PathBuf;
use std::time::Duration;

use hookgate_common::config::{Environment, Source};
use hookgate_console::config::ConsoleConfig;
use hookgate_testkit::server::TestServer;
use hookgate_testkit::{brokers, kafka::create_topic, topic};
use serde_json::Value;

pub const TOKEN: &str = "console-test-token-7c1d";
pub const PASSWORD: &str = "console-test-password-2f9a";
/// The flows' secret: it must never show in the console.
pub const API_SECRET: &str = "flow-api-secret-91be";

/// The topics of one test.
pub struct Topics {
    pub events: String,
    pub rejections: String,
    pub dead: String,
    pub executions: String,
    pub control: String,
}

impl Topics {
    pub async fn create() -> Topics {
        let t = Topics {
            events: topic("orders"),
            rejections: topic("rejections"),
            dead: topic("dead"),
            executions: topic("executions"),
            control: topic("control"),
        };
        for name in [&t.events, &t.rejections, &t.dead, &t.executions, &t.control] {
            create_topic(&brokers(), name, 1).await;
        }
        t
    }
}

/// A directory of the test's own.
pub fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("console-it-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The consumer's config: flows `shop.fragile` (calls `/a`) and `shop.steady` (calls
/// `/b`) on hook `orders`, both with the secret in their requests.
pub fn consumer_toml(t: &Topics, server: Option<&TestServer>) -> String {
    let base = server.map_or("http://127.0.0.1:9".to_string(), |s| s.url(""));
    format!(
        r#"[kafka]
brokers = "{brokers}"
group = "{group}"
topics = ["{events}"]
dead_letter_topic = "{dead}"
executions_topic = "{executions}"
control_topic = "{control}"
consumer_properties = {{ "session.timeout.ms" = 6000, "max.poll.interval.ms" = 10000 }}

[outbound]
allow = ["127.0.0.1/32"]

[secrets]
API = {{ env = "CONSOLE_IT_API_SECRET" }}

[[flows]]
id = "fragile"
namespace = "shop"
trigger = {{ hooks = ["orders"] }}

[[flows.tasks]]
id = "book"
type = "http"
method = "POST"
uri = "{base}/a?api_key={{{{ secret('API') }}}}"
auth = {{ bearer = "{{{{ secret('API') }}}}" }}
body = {{ order = "{{{{ trigger.body.order }}}}" }}
retry = {{ max_attempts = 1 }}

[[flows]]
id = "steady"
namespace = "shop"
trigger = {{ hooks = ["orders"] }}

[[flows.tasks]]
id = "record"
type = "http"
method = "POST"
uri = "{base}/b"
body = {{ order = "{{{{ trigger.body.order }}}}" }}
"#,
        brokers = brokers(),
        group = topic("group"),
        events = t.events,
        dead = t.dead,
        executions = t.executions,
        control = t.control,
    )
}

pub fn env() -> Environment {
    Environment::from_vars([
        ("CONSOLE_IT_API_SECRET".to_string(), API_SECRET.to_string()),
        ("CONSOLE_IT_TOKEN".to_string(), TOKEN.to_string()),
        ("CONSOLE_IT_PASSWORD".to_string(), PASSWORD.to_string()),
    ])
}

/// The consumer's settings from [`consumer_toml`].
pub fn consumer_settings(t: &Topics, server: &TestServer) -> hookgate_consumer::config::Settings {
    let env = env();
    hookgate_consumer::config::ConsumerConfig::load(
        &Source::Text {
            name: "test consumer".into(),
            toml: consumer_toml(t, Some(server)),
        },
        &env,
    )
    .and_then(|c| c.build(&env, "test consumer"))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The console's settings as an operator writes them: a console config file naming the
/// gateway's and the consumer's, an index in `dir`.
pub fn console_settings(
    t: &Topics,
    dir: &std::path::Path,
    max_events: u64,
) -> hookgate_console::Settings {
    let consumer = dir.join("consumer.toml");
    std::fs::write(&consumer, consumer_toml(t, None)).unwrap();
    let gateway = dir.join("gateway.toml");
    std::fs::write(
        &gateway,
        format!(
            "[kafka]\nbrokers = \"{}\"\n[rejections]\ntopic = \"{}\"\n[[hooks]]\nid = \"orders\"\ntopic = \"{}\"\nauth = {{ scheme = \"hmac\", preset = \"github\", secrets = [{{ env = \"NOT_NEEDED_HERE\" }}] }}\nrate_limit = {{ per_second = 200, burst = 400 }}\n",
            brokers(),
            t.rejections,
            t.events
        ),
    )
    .unwrap();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[sources]\ngateway_config = \"{}\"\nconsumer_config = \"{}\"\ngroup = \"{}\"\n[index]\npath = \"{}\"\nmax_events = {max_events}\n[login]\ntoken = {{ env = \"CONSOLE_IT_TOKEN\" }}\nusername = \"ops\"\npassword = {{ env = \"CONSOLE_IT_PASSWORD\" }}\n",
        gateway.display(),
        consumer.display(),
        topic("console"),
        dir.join("index.db").display(),
    );
    let env = env();
    ConsoleConfig::load(
        &Source::Text {
            name: "test console".into(),
            toml,
        },
        &env,
    )
    .and_then(|c| c.build(&env, "test console"))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Starts a console.
pub async fn start(settings: hookgate_console::Settings) -> hookgate_console::Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    hookgate_console::Running::start(settings, listener).unwrap()
}

/// An HTTP answer: status, headers, body.
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends one request with hyper's client.
pub async fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("answer within 30 s")
        .expect("request");
    let (parts, body) = res.into_parts();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes().to_vec(),
    }
}

/// GETs an API path with the token.
pub async fn api(console: &hookgate_console::Running, path: &str) -> Value {
    let a = request(
        "GET",
        &format!("{}{path}", console.url()),
        &[("authorization", &format!("Bearer {TOKEN}"))],
        "",
    )
    .await;
    assert_eq!(a.status, 200, "{path}: {}", a.text());
    a.json()
}
