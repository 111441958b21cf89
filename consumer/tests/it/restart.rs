//! At least once, for real: `kill -9` of the consumer while a flow is mid-task, a
//! restart, and the flow completes; the restarted consumer's logs carry no secret.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookgate_testkit::kafka::{self, create_topic, Producer};
use hookgate_testkit::server::{delayed, TestServer};
use hookgate_testkit::{brokers, topic};
use serde_json::{json, Value};

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the consumer with debug logs; `logs` pipes them to the test (which must then
/// read them: a full pipe would stall the consumer), otherwise they are dropped.
fn start(config: &std::path::Path, logs: bool) -> Guard {
    Guard(
        Command::new(env!("CARGO_BIN_EXE_hookgate-consumer"))
            .args(["run", "--config"])
            .arg(config)
            .env("PLANTED_SECRET", "planted-consumer-secret-42")
            .env("HOOKGATE_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(if logs { Stdio::piped() } else { Stdio::null() })
            .spawn()
            .unwrap(),
    )
}

fn spawn(config: &std::path::Path) -> Guard {
    start(config, true)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flow_interrupted_by_kill_9_completes_after_a_restart() {
    let (events, dead, executions) = (
        topic("restart"),
        topic("restart-dlq"),
        topic("restart-exec"),
    );
    for t in [&events, &dead, &executions] {
        create_topic(&brokers(), t, 1).await;
    }
    // The first call hangs (the consumer is killed during it); later ones answer at once.
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let server = TestServer::start(move |_| {
        let reply = http::Response::builder()
            .status(200)
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
            .unwrap();
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            delayed(reply, Duration::from_secs(8))
        } else {
            reply
        }
    })
    .await;
    let dir = std::env::temp_dir().join(format!(
        "hookgate-restart-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("consumer.toml");
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(
        &config,
        format!(
            // No group settings: the consumer's defaults are what a restart meets.
            "[kafka]\nbrokers = \"{}\"\ngroup = \"{}\"\ntopics = [\"{events}\"]\ndead_letter_topic = \"{dead}\"\nexecutions_topic = \"{executions}\"\n\
             [admin]\nlisten = \"{admin}\"\n[outbound]\nallow = [\"127.0.0.1/32\"]\n[secrets]\nTOKEN = {{ env = \"PLANTED_SECRET\" }}\n\
             [[flows]]\nid = \"call\"\ntrigger = {{ hooks = [\"h\"] }}\n[[flows.tasks]]\nid = \"call\"\ntype = \"http\"\nmethod = \"POST\"\nuri = \"{}\"\n\
             headers = {{ authorization = \"Bearer {{{{ secret('TOKEN') }}}}\" }}\ntimeout = \"20s\"\nbody = {{ n = \"{{{{ trigger.body.n }}}}\" }}\n",
            brokers(),
            topic("group"),
            server.url("/work")
        ),
    )
    .unwrap();

    let first = spawn(&config);
    let id = Producer::new(&brokers()).event(&events, Some("k"), "h", "t", &json!({"n": 7}));
    let deadline = Instant::now() + Duration::from_secs(30);
    while calls.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the flow never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Mid-task: kill -9, no chance to commit.
    let pid = first.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap()
        .success());
    drop(first);

    let restarted = Instant::now();
    let mut second = spawn(&config);
    let records = kafka::read_until(&brokers(), &executions, Duration::from_secs(60), |r| {
        r.iter().any(|x| {
            serde_json::from_slice::<Value>(&x.value)
                .map(|v| v["state"] == "SUCCESS")
                .unwrap_or(false)
        })
    });
    let done: Vec<Value> = records
        .iter()
        .map(|r| serde_json::from_slice(&r.value).unwrap())
        .collect();
    let success = done
        .iter()
        .find(|v| v["state"] == "SUCCESS")
        .expect("the flow completed after the restart");
    assert_eq!(success["event"]["id"], json!(id));
    // The group gives the dead member's partition away after the session timeout: 10 s by
    // default here, where librdkafka's own 45 s would hold the flow back that long.
    let took = restarted.elapsed();
    eprintln!("the flow completed {took:?} after the restart");
    assert!(
        took < Duration::from_secs(25),
        "the restarted consumer took {took:?} to complete the flow"
    );
    assert!(
        calls.load(Ordering::SeqCst) >= 2,
        "the call was made again after the restart: {} calls, records {done:#?}",
        calls.load(Ordering::SeqCst)
    );
    assert!(server
        .seen()
        .iter()
        .all(|s| s.header("authorization") == Some("Bearer planted-consumer-secret-42")));

    // SIGTERM: a clean stop; its logs hold no secret.
    let pid = second.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let _ = second.0.wait();
    let mut logs = String::new();
    second
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(
        logs.contains("flow finished"),
        "debug logs were captured:\n{logs}"
    );
    assert!(
        !logs.contains("planted-consumer-secret-42"),
        "the secret is in the logs"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A scale knob for the full run (docs/reliability.md); the suite uses the default.
fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `n` of a request body `{"n": …}` (the template keeps the number a number).
fn called_n(seen: &hookgate_testkit::server::Seen) -> Option<u64> {
    let v: Value = serde_json::from_slice(&seen.body).ok()?;
    v["n"].as_u64()
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_kill_9_under_load_leaves_no_flow_unfinished() {
    // HOOKGATE_CHAOS_EVENTS=2000 HOOKGATE_CHAOS_KILLS=20 for the full run.
    let (n, kills) = (
        knob("HOOKGATE_CHAOS_EVENTS", 300),
        knob("HOOKGATE_CHAOS_KILLS", 3),
    );
    let (events, dead, executions) = (topic("kills"), topic("kills-dlq"), topic("kills-exec"));
    create_topic(&brokers(), &events, 4).await;
    for t in [&dead, &executions] {
        create_topic(&brokers(), t, 1).await;
    }
    // Each call takes 20 ms, so that kills land in the middle of flows.
    let server = TestServer::start(|_| {
        let reply = http::Response::builder()
            .status(200)
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
            .unwrap();
        delayed(reply, Duration::from_millis(20))
    })
    .await;
    let dir =
        std::env::temp_dir().join(format!("hookgate-kills-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("consumer.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{}\"\ngroup = \"{}\"\ntopics = [\"{events}\"]\ndead_letter_topic = \"{dead}\"\nexecutions_topic = \"{executions}\"\n\
             consumer_properties = {{ \"session.timeout.ms\" = 6000, \"max.poll.interval.ms\" = 10000 }}\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n[outbound]\nallow = [\"127.0.0.1/32\"]\n[secrets]\nTOKEN = {{ env = \"PLANTED_SECRET\" }}\n\
             [[flows]]\nid = \"call\"\ntrigger = {{ hooks = [\"h\"] }}\n[[flows.tasks]]\nid = \"call\"\ntype = \"http\"\nmethod = \"POST\"\nuri = \"{}\"\n\
             body = {{ n = \"{{{{ trigger.body.n }}}}\" }}\n",
            brokers(),
            topic("group"),
            server.url("/work")
        ),
    )
    .unwrap();
    let producer = Producer::new(&brokers());
    let ids: Vec<String> = (0..n)
        .map(|i| {
            producer.event(
                &events,
                Some(&format!("k{i}")),
                "h",
                "t",
                &json!({ "n": i }),
            )
        })
        .collect();

    let mut consumer = start(&config, false);
    let started = Instant::now();
    for k in 0..kills {
        // Wait until it is making calls, then a little more, then kill.
        let before = server.hits();
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.hits() == before && server.hits() < n {
            assert!(Instant::now() < deadline, "no call after restart {k}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200 + 97 * (k as u64 % 5))).await;
        let pid = consumer.0.id().to_string();
        assert!(Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success());
        drop(consumer);
        consumer = start(&config, false);
    }
    // Every event's flow completes at least once.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let called: std::collections::BTreeSet<u64> =
            server.seen().iter().filter_map(called_n).collect();
        if called.len() == n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} flows ran after {kills} kills",
            called.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let records = kafka::read_until(&brokers(), &executions, Duration::from_secs(60), |r| {
        let done: std::collections::BTreeSet<String> = r
            .iter()
            .filter_map(|x| serde_json::from_slice::<Value>(&x.value).ok())
            .filter(|v| v["state"] == "SUCCESS")
            .filter_map(|v| v["event"]["id"].as_str().map(str::to_string))
            .collect();
        done.len() == n
    });
    drop(consumer);
    let successes: Vec<String> = records
        .iter()
        .filter_map(|x| serde_json::from_slice::<Value>(&x.value).ok())
        .filter(|v| v["state"] == "SUCCESS")
        .filter_map(|v| v["event"]["id"].as_str().map(str::to_string))
        .collect();
    let distinct: std::collections::BTreeSet<&String> = successes.iter().collect();
    let missing: Vec<&String> = ids.iter().filter(|id| !distinct.contains(id)).collect();
    let states: std::collections::BTreeMap<String, usize> = records
        .iter()
        .filter_map(|x| serde_json::from_slice::<Value>(&x.value).ok())
        .fold(Default::default(), |mut m, v| {
            *m.entry(v["state"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
            m
        });
    assert!(
        missing.is_empty(),
        "{} of {n} events have no successful execution (e.g. {:?}); execution records by state: {states:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    eprintln!(
        "consumer kills: {kills} kills, {n} events, {} calls ({} repeated), {} successful executions ({} repeated), {:.1} s",
        server.hits(),
        server.hits() - n,
        successes.len(),
        successes.len() - n,
        started.elapsed().as_secs_f64()
    );
    std::fs::remove_dir_all(dir).unwrap();
}
