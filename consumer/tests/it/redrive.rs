//! The run log, redrive and dry-run, through the `hookgate-consumer` command as an
//! operator runs them, against the real broker and local servers: a flow that failed is
//! redriven from the dead-letter topic once its API is fixed, alone, and its new run links
//! the failed one; an event is redriven by id for one flow; a dry run renders the requests
//! with secrets masked and sends nothing.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hookgate_common::config::{Environment, Source};
use hookgate_consumer::config::ConsumerConfig;
use hookgate_testkit::kafka::{self, create_topic, Producer, Read};
use hookgate_testkit::server::TestServer;
use hookgate_testkit::{brokers, topic, wait_until};
use serde_json::{json, Value};

use crate::support::{json_reply, Running};

const TOKEN: &str = "redrive-token-5be1c0";

/// The consumer's config file: two flows on hook `orders`, `fragile` calling `/a` and
/// `steady` calling `/b` on `server`, both with the bearer token from the environment.
fn config(events: &str, dead: &str, executions: &str, server: &TestServer) -> String {
    format!(
        r#"[kafka]
brokers = "{brokers}"
group = "{group}"
topics = ["{events}"]
dead_letter_topic = "{dead}"
executions_topic = "{executions}"
consumer_properties = {{ "session.timeout.ms" = 6000, "max.poll.interval.ms" = 10000 }}

[outbound]
allow = ["127.0.0.1/32"]

[secrets]
TOKEN = {{ env = "REDRIVE_TOKEN" }}

[[flows]]
id = "fragile"
namespace = "shop"
trigger = {{ hooks = ["orders"] }}

[[flows.tasks]]
id = "book"
type = "http"
method = "POST"
uri = "{a}?api_key={{{{ secret('TOKEN') }}}}&order={{{{ trigger.body.order }}}}"
auth = {{ bearer = "{{{{ secret('TOKEN') }}}}" }}
body = {{ order = "{{{{ trigger.body.order }}}}", note = "token {{{{ secret('TOKEN') }}}}" }}
retry = {{ max_attempts = 1 }}

[[flows]]
id = "steady"
namespace = "shop"
trigger = {{ hooks = ["orders"] }}

[[flows.tasks]]
id = "record"
type = "http"
method = "POST"
uri = "{b}"
body = {{ order = "{{{{ trigger.body.order }}}}" }}
"#,
        brokers = brokers(),
        group = topic("group"),
        a = server.url("/a"),
        b = server.url("/b"),
    )
}

fn consumer_cmd(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate-consumer"))
        .args(args)
        .env("REDRIVE_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn records(reads: &[Read]) -> Vec<Value> {
    reads
        .iter()
        .map(|r| serde_json::from_slice(&r.value).unwrap())
        .collect()
}

fn hits(server: &TestServer, path: &str) -> usize {
    server
        .seen()
        .iter()
        .filter(|s| s.target.starts_with(path))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_flow_is_redriven_alone_from_its_dead_letter_and_links_the_failed_run() {
    let (events, dead, executions) = (topic("orders"), topic("orders-dlq"), topic("orders-exec"));
    for t in [&events, &dead, &executions] {
        create_topic(&brokers(), t, 1).await;
    }
    let broken = Arc::new(AtomicBool::new(true));
    let flag = broken.clone();
    let server = TestServer::start(move |seen| {
        if seen.target.starts_with("/a") && flag.load(Ordering::SeqCst) {
            json_reply(
                500,
                json!({"error": "booking service down for maintenance"}),
            )
        } else {
            json_reply(200, json!({"booked": true, "ref": "R-17"}))
        }
    })
    .await;
    let text = config(&events, &dead, &executions, &server);
    let dir = tempdir();
    let path = dir.join("consumer.toml");
    std::fs::write(&path, &text).unwrap();
    let path = path.to_str().unwrap();
    let env = Environment::from_vars([("REDRIVE_TOKEN".to_string(), TOKEN.to_string())]);
    let settings = ConsumerConfig::load(
        &Source::Text {
            name: "test".into(),
            toml: text.clone(),
        },
        &env,
    )
    .and_then(|c| c.build(&env, "test"))
    .unwrap();
    let consumer = Running::start(settings);

    let id = Producer::new(&brokers()).event(
        &events,
        Some("o-1"),
        "orders",
        "order.created",
        &json!({"order": "o-1"}),
    );
    let first = records(&kafka::read_n(&brokers(), &executions, 2));
    let failed = first.iter().find(|r| r["flow"] == "fragile").unwrap();
    let steady = first.iter().find(|r| r["flow"] == "steady").unwrap();
    assert_eq!(steady["state"], "SUCCESS");

    // The run log: revision, event, state, start and duration, and per task the request
    // as sent (credentials redacted, secrets masked), the status, the response, the
    // attempts and the error.
    assert_eq!(failed["state"], "FAILED");
    assert_eq!(failed["event"]["id"], id.as_str());
    let revision = failed["revision"].as_str().unwrap();
    assert!(
        revision.len() == 12 && revision.bytes().all(|b| b.is_ascii_hexdigit()),
        "{revision}"
    );
    assert_ne!(
        failed["revision"], steady["revision"],
        "each flow has its own revision"
    );
    assert!(failed["started"].as_str().unwrap().starts_with("20"));
    assert!(failed["duration_ms"].is_u64());
    let task = &failed["tasks"][0];
    assert_eq!(task["request"]["method"], "POST");
    let url = task["request"]["url"].as_str().unwrap();
    assert!(url.starts_with(&server.url("/a?")), "{url}");
    assert!(
        url.contains("api_key=%5Bredacted%5D") && url.contains("order=o-1"),
        "{url}"
    );
    assert_eq!(
        task["request"]["headers"]["authorization"],
        json!(["[redacted]"])
    );
    assert_eq!(
        serde_json::from_str::<Value>(task["request"]["body"].as_str().unwrap()).unwrap(),
        json!({"order": "o-1", "note": "token [redacted]"})
    );
    assert_eq!(task["status"], 500);
    assert!(task["response"]
        .as_str()
        .unwrap()
        .contains("down for maintenance"));
    assert_eq!(task["attempts"], 1);
    assert!(task["error"].as_str().unwrap().contains("500"));
    let sent = server.seen();
    let real = sent.iter().find(|s| s.target.starts_with("/a")).unwrap();
    assert_eq!(
        real.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str()),
        "the real call had the token"
    );

    // The dead letter carries the same run log.
    let letters = kafka::read_n(&brokers(), &dead, 1);
    let run: Value =
        serde_json::from_str(letters[0].header_str("hookgate-dead-letter-run").unwrap()).unwrap();
    assert_eq!(run["id"], failed["id"]);
    assert_eq!(run["tasks"][0]["status"], 500);
    for r in first.iter().map(Value::to_string).chain([run.to_string()]) {
        assert!(!r.contains(TOKEN), "the token in a record: {r}");
    }

    // Fixed; redriven from the dead letters: only `fragile` runs again.
    broken.store(false, Ordering::SeqCst);
    let (ok, out, err) = consumer_cmd(&[
        "redrive",
        "--config",
        path,
        "--flow",
        "shop.fragile",
        "--from-dead-letter",
        "--since",
        "1h",
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains(&format!("event {id}"))
            && out.contains("1 event redriven for flow shop.fragile"),
        "{out}"
    );
    wait_until("the redriven run", Duration::from_secs(20), || async {
        hits(&server, "/a") == 2
    })
    .await;
    let all = records(&kafka::read_n(&brokers(), &executions, 3));
    let again = &all[2];
    assert_eq!(again["flow"], "fragile");
    assert_eq!(again["state"], "SUCCESS");
    assert_eq!(again["event"]["id"], id.as_str(), "the same event");
    assert_eq!(
        again["redrive"],
        json!({"origin": "dead-letter", "of": failed["id"]})
    );
    assert_eq!(again["tasks"][0]["status"], 200);
    // Give a wrongly run second flow time to show.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        hits(&server, "/b"),
        1,
        "the other flow on the hook did not run again"
    );

    // By event id, for the other flow alone.
    let (ok, out, err) = consumer_cmd(&[
        "redrive", "--config", path, "--flow", "steady", "--event", &id,
    ]);
    assert!(ok, "{out}\n{err}");
    wait_until("the second redrive", Duration::from_secs(20), || async {
        hits(&server, "/b") == 2
    })
    .await;
    let all = records(&kafka::read_n(&brokers(), &executions, 4));
    assert_eq!(all[3]["flow"], "steady");
    assert_eq!(all[3]["redrive"], json!({"origin": "event"}));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        hits(&server, "/a"),
        2,
        "fragile did not run for steady's redrive"
    );

    // Mistakes are named.
    let (ok, _, err) = consumer_cmd(&[
        "redrive",
        "--config",
        path,
        "--flow",
        "nope",
        "--from-dead-letter",
    ]);
    assert!(
        !ok && err.contains("--flow: no flow `nope` (the flows: shop.fragile, shop.steady)"),
        "{err}"
    );
    let (ok, _, err) = consumer_cmd(&[
        "redrive",
        "--config",
        path,
        "--flow",
        "steady",
        "--event",
        "no-such-id",
        "--since",
        "10m",
    ]);
    assert!(
        !ok && err.contains("no event with id `no-such-id`"),
        "{err}"
    );

    // A dry run of the fixed flow on the same event, found by id: the request rendered as
    // a run sends it, the token masked, nothing sent.
    let before = server.hits();
    let (ok, out, err) = consumer_cmd(&[
        "dry-run",
        "--config",
        path,
        "--flow",
        "shop.fragile",
        "--event-id",
        &id,
    ]);
    assert!(ok, "{out}\n{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["runs"], true);
    assert_eq!(report["tasks"][0]["request"]["url"], task["request"]["url"]);
    assert_eq!(
        report["tasks"][0]["request"]["body"],
        task["request"]["body"]
    );
    assert!(!out.contains(TOKEN));
    assert_eq!(server.hits(), before, "a dry run sends nothing");
    consumer.stop().await.unwrap();
}

/// A fresh directory under the system's temporary one.
fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "hookgate-redrive-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
