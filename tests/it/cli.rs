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

/// The body of a GET, on a runtime of its own (these tests are synchronous).
fn runtime_get(url: &str) -> String {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let reply = runtime.block_on(crate::support::http::get(url)).unwrap();
    String::from_utf8_lossy(&reply.body).into_owned()
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
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Its logs, kept to explain a failure (a port already taken, say).
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log_sink = logs.clone();
    let stderr = child.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            log_sink.lock().unwrap().push(line);
        }
    });
    // Everything it prints, collected as it comes (the echo endpoint prints after start).
    let printed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = printed.clone();
    let stdout = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let wait_for = |pred: &dyn Fn(&str) -> bool, what: &str, secs: u64| -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(l) = printed.lock().unwrap().iter().find(|l| pred(l)) {
                return l.clone();
            }
            let last_logs = || {
                let logs = logs.lock().unwrap();
                logs[logs.len().saturating_sub(20)..].join("\n")
            };
            assert!(
                std::time::Instant::now() < deadline,
                "never printed {what}: {:#?}\nlast logs:\n{}",
                printed.lock().unwrap(),
                last_logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(&|l| l == "try:", "the examples", 60);
    let value = |prefix: &str| {
        printed
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| l.strip_prefix(prefix).map(str::to_string))
    };
    assert_eq!(
        value("http: ").as_deref(),
        Some("127.0.0.1:8080"),
        "the HTTP address, on its own line"
    );
    let kafka_addr = value("kafka: ").expect("the Kafka bootstrap address, on its own line");
    assert!(
        kafka_addr.parse::<std::net::SocketAddr>().is_ok(),
        "{kafka_addr} is host:port"
    );
    let alerts_key = value("dev secret for hook `alerts`: ").expect("a generated dev secret");

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
    for (hook, topic) in [
        ("orders", "hookgate.orders"),
        ("raw", "hookgate.raw"),
        ("alerts", "hookgate.alerts"),
        ("inventory", "hookgate.inventory"),
        ("bi-usage", "hookgate.bi"),
    ] {
        let expected = curls
            .iter()
            .filter(|c| c.contains(&format!("/hooks/{hook}")))
            .count();
        let reads = kafka::read_until(&kafka_addr, topic, Duration::from_secs(10), |r| {
            r.len() >= expected
        });
        on_topics.extend(reads.iter().map(|r| r.event().id));
    }
    for id in &ids {
        assert!(
            on_topics.contains(id),
            "event {id} not readable from {kafka_addr}"
        );
    }

    // The flows ran: their calls reached the echo endpoint.
    for call in [
        "POST /messaging/webhook {\"text\":\"Low stock: only 4 left of M8 bolts in east\"}",
        "POST /bi/api/3.22/auth/signin",
        "PUT /bi/api/3.22/sites/9a8b7c6d-5e4f-4a2b-8c0d-9e8f7a6b5c4d/workbooks/wb-42/tags",
        "POST /tickets/api/now/table/incident",
        "POST /chat/api/conversations.create is_private=false&name=inc0010001",
        "POST /chat/api/conversations.invite channel=C0DEV01&users=U0DEV1%2CU0DEV2",
        "POST /pager/v2/enqueue",
    ] {
        wait_for(&|l| l.starts_with(&format!("echo <- {call}")), call, 60);
    }

    // The console shows them to a newcomer: every README request among the deliveries,
    // and the runs of the flows they started.
    let console = value("console: ").expect("the console's address, on its own line");
    let (base, token) = console
        .strip_suffix(')')
        .and_then(|c| c.split_once(" (development login token: "))
        .expect("the console's address and its development token");
    let base = base.trim_end_matches('/');
    let console_get = |path: &str, token: &str| -> serde_json::Value {
        let out = Command::new("curl")
            .args(["-s", "-H", &format!("Authorization: Bearer {token}")])
            .arg(format!("{base}{path}"))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    assert!(
        console_get("/api/deliveries", "not-the-token")["error"]
            .as_str()
            .is_some_and(|e| e.contains("log in")),
        "the console answers without its login"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let shown: Vec<String> = console_get("/api/deliveries", token)["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["event_id"].as_str().map(str::to_string))
            .collect();
        let runs = console_get("/api/executions?state=success", token);
        let flows: std::collections::BTreeSet<&str> = runs["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["flow"].as_str())
            .collect();
        if ids.iter().all(|id| shown.contains(id))
            && [
                "warehouse.stock-alert",
                "bi.archive-unused-workbook",
                "ops.incident-war-room",
            ]
            .iter()
            .all(|f| flows.contains(f))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the console does not show the README's requests and their runs: {shown:?} {flows:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // One metrics page for both: the consumer's run durations are a histogram with its
    // buckets, as when the consumer runs alone, and nothing is left in flight.
    let admin = value("admin: ").expect("the admin address, on its own line");
    let metrics = runtime_get(&format!("http://{admin}/metrics"));
    assert!(
        metrics.contains("# TYPE hookgate_consumer_flow_duration_seconds histogram"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hookgate_consumer_flow_duration_seconds_bucket{flow=\"warehouse.stock-alert\",le=\"0.005\"}"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == "hookgate_in_flight_requests 0"),
        "{metrics}"
    );

    // The shipped pollers poll the echo endpoint, fire as their thresholds are crossed,
    // and their events are on hookgate.polls.
    let polls = kafka::read_until(
        &kafka_addr,
        "hookgate.polls",
        Duration::from_secs(60),
        |r| {
            let sources: std::collections::BTreeSet<String> =
                r.iter().map(|x| x.event().source).collect();
            sources.len() >= 3
        },
    );
    let mut sources: Vec<String> = polls.iter().map(|r| r.event().source).collect();
    sources.sort();
    sources.dedup();
    assert_eq!(
        sources,
        [
            "/pollers/cpu-load",
            "/pollers/stock-level",
            "/pollers/workbook-usage"
        ]
    );
    wait_for(
        &|l| l.starts_with("echo <- GET /monitoring/api/metrics/cpu"),
        "the CPU poll",
        5,
    );

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

#[test]
fn listening_is_announced_only_once_serving() {
    let dir =
        std::env::temp_dir().join(format!("hookgate-start-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gw.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[kafka]\nbrokers = \"{}\"\ncreate_topics = false\n\
             [[hooks]]\nid = \"m\"\ntopic = \"{}\"\nauth = {{ scheme = \"none\" }}\n",
            crate::support::brokers(),
            crate::support::topic("never-created")
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["run", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a missing topic stops the start");
    assert!(
        logs.contains("never-created"),
        "the missing topic is named:\n{logs}"
    );
    assert!(
        !logs.contains("hookgate listening"),
        "listening announced by a gateway that then exited:\n{logs}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn secrets_never_reach_the_logs_events_metrics_or_answers() {
    let dir = std::env::temp_dir().join(format!("hookgate-logs-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = hookgate_testkit::free_port();
    let admin = hookgate_testkit::free_port();
    let topic = crate::support::topic("logs");
    let file = dir.join("gw.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[kafka]\nbrokers = \"{}\"\ncreate_topics = true\nreplication_factor = 1\n\
             [[hooks]]\nid = \"k\"\ntopic = \"{topic}\"\nauth = {{ scheme = \"url_key\", secrets = [{{ env = \"PLANTED_URL_KEY\" }}] }}\n\
             [[hooks]]\nid = \"b\"\ntopic = \"{topic}\"\nauth = {{ scheme = \"basic\", credentials = [{{ username = \"u\", password = {{ env = \"PLANTED_PASSWORD\" }} }}] }}\n\
             [[hooks]]\nid = \"h\"\ntopic = \"{topic}\"\nauth = {{ scheme = \"hmac\", preset = \"github\", secrets = [{{ env = \"PLANTED_HMAC\" }}] }}\n\
             [[hooks]]\nid = \"a\"\ntopic = \"{topic}\"\nauth = {{ scheme = \"api_key\", header = \"x-api-key\", query = \"api_key\", secrets = [{{ env = \"PLANTED_API_KEY\" }}] }}\n\
             [[hooks]]\nid = \"t\"\ntopic = \"{topic}\"\nauth = {{ scheme = \"token\", header = \"x-gitlab-token\", secrets = [{{ env = \"PLANTED_TOKEN\" }}] }}\n",
            crate::support::brokers()
        ),
    )
    .unwrap();
    let planted = [
        ("PLANTED_URL_KEY", "plantedurlkey0123456789"),
        ("PLANTED_PASSWORD", "planted-password-0123456789"),
        ("PLANTED_HMAC", "planted-hmac-0123456789"),
        ("PLANTED_API_KEY", "planted-api-key-0123456789"),
        ("PLANTED_TOKEN", "planted-token-0123456789"),
    ];
    let child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["run", "--config"])
        .arg(&file)
        .envs(planted)
        .env("HOOKGATE_LOG", "trace")
        .env("HOOKGATE_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while crate::support::http::get(&format!("http://127.0.0.1:{admin}/readyz"))
            .await
            .map(|r| r.status)
            .ok()
            != Some(200)
        {
            assert!(std::time::Instant::now() < deadline, "gateway not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let basic = format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                "u:planted-password-0123456789"
            )
        );
        let requests = [
            crate::support::http::post(&format!("{base}/hooks/k/plantedurlkey0123456789"))
                .body("{}"),
            crate::support::http::post(&format!("{base}/hooks/k/wrong")).body("{}"),
            crate::support::http::post(&format!("{base}/hooks/b"))
                .header("authorization", &basic)
                .body("{}"),
            crate::support::http::post(&format!("{base}/hooks/b"))
                .header("authorization", "Basic d3Jvbmc6d3Jvbmc=")
                .body("{}"),
            crate::support::http::post(&format!("{base}/hooks/h"))
                .header("x-hub-signature-256", "sha256=00")
                .body("{}"),
            crate::support::http::post(&format!("{base}/hooks/h"))
                .header(
                    "x-hub-signature-256",
                    &format!(
                        "sha256={}",
                        crate::support::hmac_sha256_hex("planted-hmac-0123456789", b"{}")
                    ),
                )
                .header("x-github-delivery", "d-1")
                .body("{}"),
            crate::support::http::post(&format!("{base}/hooks/a"))
                .header("x-api-key", "planted-api-key-0123456789")
                .body("{}"),
            crate::support::http::post(&format!(
                "{base}/hooks/a?api_key=planted-api-key-0123456789"
            ))
            .body("{}"),
            crate::support::http::post(&format!("{base}/hooks/a"))
                .header("x-api-key", "wrong")
                .body("{}"),
            crate::support::http::post(&format!("{base}/hooks/t"))
                .header("x-gitlab-token", "planted-token-0123456789")
                .body("{}"),
        ];
        let mut accepted = 0;
        for r in requests {
            let reply = r.send().await.unwrap();
            accepted += usize::from(reply.status == 202);
            assert!(!String::from_utf8_lossy(&reply.body).contains("planted"));
        }
        assert_eq!(
            accepted, 6,
            "every request with the right secret was accepted"
        );
        let metrics = crate::support::http::get(&format!("http://127.0.0.1:{admin}/metrics"))
            .await
            .unwrap();
        let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
        assert!(metrics.contains("hookgate_requests_total"), "{metrics}");
        assert!(!metrics.contains("planted"), "a secret in the metrics");
    });
    // The events, structured and with the senders' headers and query, carry none.
    let events = kafka::read_until(
        &crate::support::brokers(),
        &topic,
        Duration::from_secs(20),
        |r| r.len() >= 6,
    );
    assert_eq!(events.len(), 6);
    for e in &events {
        let text = String::from_utf8_lossy(&e.value);
        assert!(!text.contains("planted"), "a secret in an event: {text}");
    }
    // SIGTERM: a graceful stop that flushes and exits 0.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit after SIGTERM: {:?}", out.status);
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        logs.contains("hookgate listening"),
        "trace logs were captured:\n{logs}"
    );
    for (_, secret) in planted {
        assert!(!logs.contains(secret), "`{secret}` appears in the logs");
    }
    assert!(
        !logs.contains("plantedurlkey"),
        "the URL key appears in the logs"
    );
    // JSON lines, fields at the top level, each refusal with its exact reason.
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.iter().all(|l| l.get("fields").is_none()));
    let refusals: Vec<(String, String)> = lines
        .iter()
        .filter(|l| l["message"] == "refused")
        .map(|l| {
            (
                l["hook"].as_str().unwrap().to_string(),
                l["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (hook, reason) in [
        ("k", "mismatch"),
        ("b", "mismatch"),
        ("h", "mismatch"),
        ("a", "mismatch"),
    ] {
        assert!(
            refusals.contains(&(hook.to_string(), reason.to_string())),
            "no refusal of hook {hook} logged with reason {reason}: {refusals:?}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sighup_reloads_the_config_file() {
    let dir = std::env::temp_dir().join(format!("hookgate-hup-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (port, admin) = (hookgate_testkit::free_port(), hookgate_testkit::free_port());
    let file = dir.join("gw.toml");
    let base = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[kafka]\nbrokers = \"unused:9092\"\n[[hooks]]\nid = \"a\"\ntopic = \"t\"\nauth = {{ scheme = \"none\" }}\n"
    );
    std::fs::write(&file, &base).unwrap();
    let child = Guard(
        Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(["run", "--null-sink", "--config"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = |path: &'static str| {
        let url = format!("http://127.0.0.1:{port}{path}");
        runtime.block_on(async move {
            match crate::support::http::post(&url).body("{}").send().await {
                Ok(r) => r.status,
                Err(_) => 0,
            }
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while status("/hooks/a") != 202 {
        assert!(
            std::time::Instant::now() < deadline,
            "gateway did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status("/hooks/b"), 404);
    std::fs::write(
        &file,
        format!("{base}[[hooks]]\nid = \"b\"\ntopic = \"t\"\nauth = {{ scheme = \"none\" }}\n"),
    )
    .unwrap();
    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while status("/hooks/b") != 202 {
        assert!(
            std::time::Instant::now() < deadline,
            "hook b not served after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status("/hooks/a"), 202);
    drop(child);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn schema_prints_the_json_schema_of_each_kind_of_event() {
    for (args, id, text) in [
        (
            &["schema"][..],
            "urn:hookgate:webhook:v1",
            hookgate_event::WEBHOOK_SCHEMA_JSON,
        ),
        (
            &["schema", "poll"][..],
            "urn:hookgate:poll:v1",
            hookgate_event::POLL_SCHEMA_JSON,
        ),
        (
            &["schema", "rejection"][..],
            "urn:hookgate:rejection:v1",
            hookgate_event::REJECTION_SCHEMA_JSON,
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8(out.stdout.clone()).unwrap(), text);
        let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(schema["$id"], id);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["schema", "webhooks"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("poll"));
}
