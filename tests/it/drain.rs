//! Shutdown that a load balancer understands: two gateway processes behind HAProxy
//! (Debian's `haproxy`, round robin, health checks on `/readyz`), 500 requests a second
//! through it, and one replica is sent SIGTERM mid-run. Its `/readyz` turns 503 at once,
//! HAProxy takes it out while it still serves (`server.drain_delay`), and only then does
//! it stop accepting: no request fails, and every one is on the topic.

use std::process::Command;
use std::time::{Duration, Instant};

use hookgate_testkit::free_port;

use crate::support::{brokers, gateway_process, haproxy, http, kafka, topic, Process};

/// A gateway process on `port` (admin on `admin`) with hook `orders` on `topic`.
fn gateway(dir: &std::path::Path, name: &str, port: u16, admin: u16, topic: &str) -> Process {
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ndrain_delay = \"3s\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
         [kafka]\nbrokers = \"{}\"\ncreate_topics = true\nreplication_factor = 1\npartitions = 1\n\
         [rejections]\ntopic = \"\"\n\
         [[hooks]]\nid = \"orders\"\ntopic = \"{topic}\"\nauth = {{ scheme = \"none\" }}\n",
        brokers()
    );
    gateway_process(dir, name, &toml, &[])
}

async fn ready(admin: u16) -> bool {
    http::get(&format!("http://127.0.0.1:{admin}/readyz"))
        .await
        .is_ok_and(|r| r.status == 200)
}

/// The value of an unlabeled counter on an admin listener's `/metrics`.
async fn counter(admin: u16, name: &str) -> f64 {
    let page = http::get(&format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .unwrap();
    String::from_utf8_lossy(&page.body)
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_leaves_haproxy_without_failing_a_request() {
    let events = topic("drain");
    let dir =
        std::env::temp_dir().join(format!("hookgate-drain-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a_port, a_admin, b_port, b_admin, front) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let mut a = gateway(&dir, "a", a_port, a_admin, &events);
    let _b = gateway(&dir, "b", b_port, b_admin, &events);
    let _haproxy = haproxy(
        &dir,
        front,
        &format!(
            "  option httpchk GET /readyz\n  http-check expect status 200\n\
             \x20 default-server inter 500ms fall 2 rise 2\n\
             \x20 server a 127.0.0.1:{a_port} check port {a_admin}\n\
             \x20 server b 127.0.0.1:{b_port} check port {b_admin}\n"
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(ready(a_admin).await && ready(b_admin).await) {
        assert!(
            Instant::now() < deadline,
            "the replicas did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Both replicas take traffic through HAProxy once its checks have passed.
    let url = format!("http://127.0.0.1:{front}/hooks/orders");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let _ = http::post(&url)
            .json(&serde_json::json!({"warm": true}))
            .send()
            .await;
        if counter(a_admin, "hookgate_requests_total").await > 0.0
            && counter(b_admin, "hookgate_requests_total").await > 0.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "HAProxy never sent to both replicas"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let warmup = counter(a_admin, "hookgate_requests_total").await
        + counter(b_admin, "hookgate_requests_total").await;

    // 500 requests a second for 8 s; SIGTERM to replica a after 2 s.
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    let mut termed_at = None;
    for i in 0..4000 {
        tick.tick().await;
        if termed_at.is_none() && started.elapsed() >= Duration::from_secs(2) {
            assert!(Command::new("kill")
                .args(["-TERM", &a.0.id().to_string()])
                .status()
                .unwrap()
                .success());
            termed_at = Some(Instant::now());
        }
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            http::post(&url)
                .json(&serde_json::json!({"order": i}))
                .send()
                .await
                .map(|r| r.status)
                .map_err(|e| e.to_string())
        }));
    }
    let mut failed = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(202) => {}
            other => failed.push((i, other)),
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 4000 requests failed, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    // Replica a drained and exited cleanly within its delay and timeout.
    let termed_at = termed_at.unwrap();
    let status = loop {
        if let Some(s) = a.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            termed_at.elapsed() < Duration::from_secs(40),
            "replica a did not exit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "replica a exited with {status}");
    assert!(
        termed_at.elapsed() >= Duration::from_secs(3),
        "replica a left before its drain delay"
    );
    // Every acknowledged request is on the topic.
    let expected = 4000 + warmup as usize;
    let records = kafka::read_until(&brokers(), &events, Duration::from_secs(30), |r| {
        r.len() >= expected
    });
    assert_eq!(records.len(), expected);
    let _ = std::fs::remove_dir_all(dir);
}
