//! The `hookgate` binary as a user runs it: `local` with the README's own curl commands,
//! `tail` against its embedded broker, and `check`'s listing.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::kafka;

/// Kills the child when dropped, so a failing test leaves no process behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The README's curl commands against the local profile.
fn readme_curls() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    readme
        .lines()
        .filter(|l| l.starts_with("curl ") && l.contains("127.0.0.1:8080"))
        .map(str::to_string)
        .collect()
}

#[test]
fn local_runs_the_readme_examples_end_to_end() {
    let curls = readme_curls();
    assert!(curls.len() >= 3, "the README shows the local curl examples");
    let mut child = Guard(
        Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .arg("local")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let (mut http, mut kafka_addr, mut alerts_key) = (None, None, None);
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(a) = line.strip_prefix("http: ") {
            http = Some(a.to_string());
        } else if let Some(a) = line.strip_prefix("kafka: ") {
            kafka_addr = Some(a.to_string());
        } else if let Some(k) = line.strip_prefix("dev secret for hook `alerts`: ") {
            alerts_key = Some(k.to_string());
        } else if line == "try:" {
            break;
        }
    }
    assert_eq!(
        http.as_deref(),
        Some("127.0.0.1:8080"),
        "the HTTP address, on its own line"
    );
    let kafka_addr = kafka_addr.expect("the Kafka bootstrap address, on its own line");
    assert!(
        kafka_addr.parse::<std::net::SocketAddr>().is_ok(),
        "{kafka_addr} is host:port"
    );
    let alerts_key = alerts_key.expect("a generated dev secret");

    // Run each README command as written, with the printed secret in its variable.
    let mut ids = Vec::new();
    for curl in &curls {
        let out = Command::new("sh")
            .arg("-c")
            .arg(curl)
            .env("ALERTS_KEY", &alerts_key)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(text.starts_with("HTTP/1.1 202"), "{curl}\n{text}");
        let body = text.rsplit("\r\n\r\n").next().unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }

    // A librdkafka client reads them from the printed address.
    let mut on_topics = Vec::new();
    for topic in ["hookgate.orders", "hookgate.raw", "hookgate.alerts"] {
        let reads = kafka::read_until(&kafka_addr, topic, Duration::from_secs(10), |r| {
            r.len() >= curls.iter().filter(|c| c.contains(&topic[9..])).count()
        });
        on_topics.extend(reads.iter().map(|r| r.event().id));
    }
    for id in &ids {
        assert!(
            on_topics.contains(id),
            "event {id} not readable from {kafka_addr}"
        );
    }

    // `hookgate tail` prints them too.
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args([
            "tail",
            "hookgate.orders",
            "--brokers",
            &kafka_addr,
            "--from-beginning",
            "--max",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["id"], serde_json::json!(ids[0]));
    assert_eq!(printed["data"]["body"]["order_id"], "A-1");
}

#[test]
fn check_lists_the_hooks() {
    let dir =
        std::env::temp_dir().join(format!("hookgate-check-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gw.toml");
    std::fs::write(
        &file,
        "[[hooks]]\nid = \"shop\"\ntopic = \"webhooks.shop\"\nmethods = [\"POST\", \"PUT\"]\nkey = { pointer = \"/order_id\" }\ntype = { header = \"x-topic\" }\nauth = { scheme = \"url_key\", secrets = [{ value = \"k\" }] }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["check", "--offline", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = stdout
        .lines()
        .find(|l| l.starts_with("shop"))
        .expect("a row for the hook");
    for cell in [
        "/hooks/shop/{key}",
        "POST,PUT",
        "url_key",
        "webhooks.shop",
        "body /order_id",
        "header x-topic",
    ] {
        assert!(row.contains(cell), "{cell} missing from: {row}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
