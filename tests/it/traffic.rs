//! Traffic control through the real listener: per-hook and per-client rate limits with
//! `Retry-After`, forged floods that cannot spend a real sender's quota, source
//! allowlists behind trusted proxies, slow clients cut off while others are served, and
//! the metrics that show it.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{hmac_sha256_hex, http, GatewayBuilder};

fn null() -> GatewayBuilder {
    GatewayBuilder::new().brokers("unused:9092").null_sink()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hook_over_its_rate_gets_429_with_retry_after() {
    let gw = null()
        .hook("id = \"r\"\ntopic = \"t\"\nrate_limit = { per_second = 0.5, burst = 3 }\nauth = { scheme = \"none\" }")
        .start()
        .await;
    let url = gw.hook_url("/hooks/r");
    for _ in 0..3 {
        assert_eq!(
            http::post(&url).body("{}").send().await.unwrap().status,
            202
        );
    }
    let r = http::post(&url).body("{}").send().await.unwrap();
    assert_eq!(r.status, 429);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_requests_do_not_spend_the_real_senders_quota() {
    let gw = null()
        .hook("id = \"gh\"\ntopic = \"t\"\nrate_limit = { per_second = 0.1, burst = 5 }\nauth = { scheme = \"hmac\", preset = \"github\", secrets = [{ value = \"real\" }] }")
        .start()
        .await;
    let url = gw.hook_url("/hooks/gh");
    let forged = futures_util::future::join_all((0..200).map(|i| {
        let url = url.clone();
        async move {
            http::post(&url)
                .header(
                    "x-hub-signature-256",
                    &format!(
                        "sha256={}",
                        hmac_sha256_hex("guess", format!("{i}").as_bytes())
                    ),
                )
                .header("x-github-delivery", &format!("f-{i}"))
                .body(format!("{i}"))
                .send()
                .await
                .unwrap()
                .status
        }
    }))
    .await;
    assert!(
        forged.iter().all(|s| *s == 401),
        "forged requests are refused as unauthorized"
    );
    for i in 0..5 {
        let body = format!("{{\"n\":{i}}}");
        let r = http::post(&url)
            .header(
                "x-hub-signature-256",
                &format!("sha256={}", hmac_sha256_hex("real", body.as_bytes())),
            )
            .header("x-github-delivery", &format!("real-{i}"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status, 202, "the real sender still has its whole burst");
    }
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn each_client_has_its_own_limit_within_a_hook() {
    let gw = null()
        .hook("id = \"c\"\ntopic = \"t\"\nclient_limit = { per_second = 0.2, burst = 2, key = { header = \"x-client\" } }\nauth = { scheme = \"none\" }")
        .start()
        .await;
    let url = gw.hook_url("/hooks/c");
    let send = |client: &'static str| {
        let url = url.clone();
        async move {
            http::post(&url)
                .header("x-client", client)
                .body("{}")
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(send("a").await.status, 202);
    assert_eq!(send("a").await.status, 202);
    let r = send("a").await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    assert_eq!(
        send("b").await.status,
        202,
        "another client is not affected"
    );
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sources_outside_the_allowlist_get_403_and_proxies_are_trusted_only_when_listed() {
    let gw = null()
        .server("trusted_proxies = [\"127.0.0.1/32\"]")
        .hook("id = \"corp\"\ntopic = \"t\"\nallow_sources = [\"10.0.0.0/8\"]\nauth = { scheme = \"none\" }")
        .hook("id = \"local\"\ntopic = \"t\"\nallow_sources = [\"127.0.0.0/8\", \"::1\"]\nauth = { scheme = \"none\" }")
        .start()
        .await;
    let r = http::post(&gw.hook_url("/hooks/corp"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "source not allowed");
    // Through the trusted proxy (this test's own address), the forwarded client counts.
    let r = http::post(&gw.hook_url("/hooks/corp"))
        .header("x-forwarded-for", "203.0.113.5, 10.1.2.3")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 202);
    let r = http::post(&gw.hook_url("/hooks/corp"))
        .header("x-forwarded-for", "10.1.2.3, 203.0.113.5")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status, 403,
        "only the rightmost untrusted hop is believed"
    );
    assert_eq!(
        http::post(&gw.hook_url("/hooks/local"))
            .body("{}")
            .send()
            .await
            .unwrap()
            .status,
        202
    );
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off_while_others_are_served() {
    let gw = null()
        .server("header_read_timeout = \"500ms\"")
        .server("body_read_timeout = \"500ms\"")
        .hook("id = \"o\"\ntopic = \"t\"\nauth = { scheme = \"none\" }")
        .start()
        .await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    let mut slow = Vec::new();
    for i in 0..50 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        let partial: &[u8] = if i % 2 == 0 {
            b"POST /hooks/o HTTP/1.1\r\nhost: x\r\nx-slow: "
        } else {
            b"POST /hooks/o HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{"
        };
        s.write_all(partial).await.unwrap();
        slow.push(s);
    }
    // Normal traffic goes on meanwhile.
    for _ in 0..20 {
        let started = std::time::Instant::now();
        assert_eq!(
            http::post(&gw.hook_url("/hooks/o"))
                .body("{}")
                .send()
                .await
                .unwrap()
                .status,
            202
        );
        assert!(started.elapsed() < Duration::from_millis(1000));
    }
    // Every slow connection is closed (or answered 408) within its timeout + 1 s.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    for mut s in slow {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout_at(deadline, tokio::io::AsyncReadExt::read(&mut s, &mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    }
    gw.stop().await.unwrap();
}

/// How long after `started` the server closed `s`, reading (and dropping) whatever it
/// sends until then; `None` if it was still open after `give_up`.
async fn closed_after(
    mut s: tokio::net::tcp::OwnedReadHalf,
    started: std::time::Instant,
    give_up: Duration,
) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    let read_to_end = async {
        while let Ok(n) = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await {
            if n == 0 {
                break;
            }
        }
        started.elapsed()
    };
    tokio::time::timeout(give_up, read_to_end).await.ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_without_a_request_head_are_closed_at_the_header_timeout() {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
    let gw = null()
        .server("header_read_timeout = \"1s\"")
        .server("max_connections = 8")
        .hook("id = \"o\"\ntopic = \"t\"\nauth = { scheme = \"none\" }")
        .start()
        .await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    // What each connection sends, and the pause before each byte (none: all at once).
    let preface_and_settings = [PREFACE, SETTINGS].concat();
    let cases: Vec<(&str, Vec<u8>, Option<Duration>)> = vec![
        ("silent", Vec::new(), None),
        ("one byte", b"P".to_vec(), None),
        ("preface only", PREFACE.to_vec(), None),
        ("preface and settings", preface_and_settings, None),
        (
            "slow preface",
            PREFACE.to_vec(),
            Some(Duration::from_millis(300)),
        ),
        (
            "trickled head",
            b"POST /hooks/o HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
            Some(Duration::from_millis(400)),
        ),
    ];
    let mut waits = Vec::new();
    for (name, bytes, pause) in cases {
        let stream = TcpStream::connect(&addr).await.unwrap();
        let started = std::time::Instant::now();
        let (read, mut write) = stream.into_split();
        tokio::spawn(async move {
            match pause {
                None => {
                    let _ = write.write_all(&bytes).await;
                }
                Some(pause) => {
                    for b in bytes {
                        tokio::time::sleep(pause).await;
                        if write.write_all(&[b]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            // Keep the write half open: the server, not the client, must end it.
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(write);
        });
        waits.push((
            name,
            tokio::spawn(closed_after(read, started, Duration::from_secs(10))),
        ));
    }
    for (name, wait) in waits {
        let closed = wait.await.unwrap();
        let closed = closed.unwrap_or_else(|| panic!("{name}: still open after 10 s"));
        assert!(
            closed >= Duration::from_millis(900) && closed < Duration::from_millis(2500),
            "{name}: closed after {closed:?}, header_read_timeout is 1 s"
        );
    }
    // As many silent connections as the limit lock nobody out for longer than the timeout.
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    let started = std::time::Instant::now();
    let r = http::post(&gw.hook_url("/hooks/o"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 202);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "a sender waited {:?} behind silent connections",
        started.elapsed()
    );
    drop(silent);
    for _ in 0..8 {
        assert_eq!(
            http::post(&gw.hook_url("/hooks/o"))
                .body("{}")
                .send()
                .await
                .unwrap()
                .status,
            202
        );
    }
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_show_the_series_after_traffic() {
    let gw = null()
        .hook("id = \"m\"\ntopic = \"t\"\nrate_limit = { per_second = 0.1, burst = 1 }\nauth = { scheme = \"token\", header = \"x-token\", secrets = [{ value = \"tok\" }] }")
        .start()
        .await;
    let url = gw.hook_url("/hooks/m");
    http::post(&url)
        .header("x-token", "tok")
        .body("{\"a\":1}")
        .send()
        .await
        .unwrap();
    http::post(&url)
        .header("x-token", "tok")
        .body("{}")
        .send()
        .await
        .unwrap();
    http::post(&url)
        .header("x-token", "bad")
        .body("{}")
        .send()
        .await
        .unwrap();
    http::post(&gw.hook_url("/nope")).send().await.unwrap();
    let text = String::from_utf8_lossy(
        &http::get(&format!("{}/metrics", gw.admin_url))
            .await
            .unwrap()
            .body,
    )
    .to_string();
    for series in [
        "hookgate_requests_total{hook=\"m\",outcome=\"accepted\"} 1",
        "hookgate_requests_total{hook=\"m\",outcome=\"rate_limited\"} 1",
        "hookgate_requests_total{hook=\"m\",outcome=\"unauthorized\"} 1",
        "hookgate_requests_total{hook=\"(none)\",outcome=\"not_found\"} 1",
        "hookgate_request_duration_seconds_bucket{hook=\"m\"",
        "hookgate_request_body_bytes_bucket{hook=\"m\"",
        "hookgate_auth_failures_total{hook=\"m\",reason=\"mismatch\"} 1",
        "hookgate_rate_limited_total{hook=\"m\",limit=\"hook\"} 1",
        "hookgate_in_flight_requests",
    ] {
        assert!(text.contains(series), "{series} missing:\n{text}");
    }
    assert!(!text.contains("tok\""), "no secret in a label");
    // Every series is described, and the version and the process's own figures are there.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no # HELP:\n{text}"
        );
    }
    assert!(text.contains(&format!(
        "hookgate_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    for series in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(text.contains(series), "{series} missing:\n{text}");
    }
    gw.stop().await.unwrap();
}

/// The `hookgate_…` and `process_…` series named in `text` (histogram suffixes cut).
fn series_named(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("hookgate_").or_else(|| rest.find("process_")) {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        names.insert(base.to_string());
    }
    names
}

/// Fails unless every series of `names` is in a metrics table of docs/operations.md or
/// docs/consumer.md, so a renamed series cannot leave a panel empty or an alert silent
/// unnoticed.
fn assert_documented(source: &str, names: &std::collections::BTreeSet<String>) {
    let root = env!("CARGO_MANIFEST_DIR");
    let read = |p: &str| std::fs::read_to_string(format!("{root}/{p}")).unwrap();
    let documented = read("docs/operations.md") + &read("docs/consumer.md");
    assert!(names.len() >= 8, "{source}: {names:?}");
    for name in names {
        let family = name.strip_prefix("process_").map(|_| "process_");
        assert!(
            documented.contains(&format!("`{name}`"))
                || family.is_some_and(|f| documented.contains(f)),
            "{source} queries `{name}`, which no table documents"
        );
    }
}

/// The shipped Grafana dashboards, by path, parsed.
fn dashboards() -> Vec<(&'static str, serde_json::Value)> {
    let root = env!("CARGO_MANIFEST_DIR");
    [
        "config/grafana-dashboard.json",
        "config/grafana-consumer-dashboard.json",
    ]
    .into_iter()
    .map(|path| {
        let text = std::fs::read_to_string(format!("{root}/{path}")).unwrap();
        (path, serde_json::from_str(&text).unwrap())
    })
    .collect()
}

#[test]
fn the_dashboards_query_only_documented_series() {
    for (dashboard, json) in dashboards() {
        let mut exprs = String::new();
        for panel in json["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                exprs += target["expr"].as_str().unwrap();
                exprs.push('\n');
            }
        }
        assert_documented(dashboard, &series_named(&exprs));
    }
}

/// The shipped alert rules: Prometheus's own `promtool` checks them and runs their unit
/// tests (config/prometheus-alerts.test.yaml: each alert firing, with the labels and text
/// the on-call reads, and staying quiet where it should), every alert is tested firing,
/// and every series they query is documented.
#[test]
fn the_alert_rules_fire_as_their_tests_say() {
    let root = env!("CARGO_MANIFEST_DIR");
    let rules = format!("{root}/config/prometheus-alerts.yaml");
    let tests = format!("{root}/config/prometheus-alerts.test.yaml");
    for args in [["check", "rules", &rules], ["test", "rules", &tests]] {
        let out = std::process::Command::new("promtool")
            .args(args)
            .output()
            .expect("promtool (Debian's prometheus package; scripts/test installs it)");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rules = std::fs::read_to_string(rules).unwrap();
    let tests = std::fs::read_to_string(tests).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 8, "{alerts:?}");
    for alert in alerts {
        // Some `alertname: ALERT` of the tests expects it to fire (exp_labels follow).
        let fired = tests.split("alertname: ").skip(1).any(|case| {
            case.starts_with(&format!("{alert}\n"))
                && case
                    .split("- eval_time")
                    .next()
                    .unwrap()
                    .contains("exp_labels")
        });
        assert!(fired, "no test expects {alert} to fire");
    }
    assert_documented("config/prometheus-alerts.yaml", &series_named(&rules));
}

/// The shipped dashboards lay out as Grafana draws them: every panel has an id of its own
/// and a place no other panel covers, within the 24 columns.
#[test]
fn the_dashboards_panels_have_their_own_ids_and_places() {
    for (dashboard, json) in dashboards() {
        let panels = json["panels"].as_array().unwrap();
        let mut ids = std::collections::BTreeSet::new();
        let place = |p: &serde_json::Value| {
            let g = &p["gridPos"];
            let n = |k: &str| g[k].as_u64().unwrap_or_else(|| panic!("{dashboard}: {p}"));
            (n("x"), n("y"), n("w"), n("h"))
        };
        for (i, a) in panels.iter().enumerate() {
            assert!(
                ids.insert(a["id"].as_u64().unwrap()),
                "{dashboard}: id {} twice",
                a["id"]
            );
            let (x, y, w, h) = place(a);
            assert!(
                x + w <= 24 && w > 0 && h > 0,
                "{dashboard}: {} outside",
                a["title"]
            );
            for b in &panels[i + 1..] {
                let (bx, by, bw, bh) = place(b);
                let apart = x + w <= bx || bx + bw <= x || y + h <= by || by + bh <= y;
                assert!(
                    apart,
                    "{dashboard}: {} and {} overlap",
                    a["title"], b["title"]
                );
            }
        }
    }
}

/// Threads of this process named like the gateway's serving threads.
fn serving_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("hookgate-serve"))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn serving_threads_share_the_listener_and_exit_after_draining() {
    let gw = null()
        .server("threads = 2")
        .hook("id = \"t\"\ntopic = \"t\"\nauth = { scheme = \"none\" }")
        .start()
        .await;
    // The gateway answers once one thread accepts; the other may still be starting.
    assert_eq!(wait_for_serving_threads(2).await, 2);
    let url = gw.hook_url("/hooks/t");
    // A connection each: the two threads accept from the one socket.
    let sends: Vec<_> = (0..200)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { http::post(&url).body("{}").send().await.unwrap().status })
        })
        .collect();
    for send in sends {
        assert_eq!(send.await.unwrap(), 202);
    }
    gw.stop().await.unwrap();
    // Both threads drained and ended with the gateway.
    assert_eq!(wait_for_serving_threads(0).await, 0);
}

/// Serving threads once there are `n`, or after 5 s.
async fn wait_for_serving_threads(n: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while serving_threads() != n && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    serving_threads()
}
