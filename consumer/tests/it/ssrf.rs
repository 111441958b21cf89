//! SSRF bypass attempts against the two ways the consumer makes requests from
//! configuration and payload data: the `http` task and a poller. A canary listener on
//! every local address counts connections; every payload must fail without reaching it,
//! while an allowlisted target still answers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hookgate_common::config::Problems;
use hookgate_consumer::outbound::{Client, OutboundConfig};
use hookgate_consumer::poller::PollerConfig;
use hookgate_consumer::task::{Deps, TaskConfig};
use hookgate_expression::{Context, Engine, Secrets};
use hookgate_testkit::server::{Reply, Seen, TestServer};
use tokio::net::TcpListener;

use crate::support::json_reply;

/// Accepts on every local address (IPv4 and IPv6) at one port and counts connections.
async fn canary() -> (u16, Arc<AtomicUsize>) {
    let listener = match TcpListener::bind("[::]:0").await {
        Ok(l) => l,
        Err(_) => TcpListener::bind("0.0.0.0:0").await.unwrap(),
    };
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let count = hits.clone();
    tokio::spawn(async move {
        while let Ok((_tcp, peer)) = listener.accept().await {
            eprintln!("canary reached from {peer}");
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, hits)
}

/// URLs that all lead to this machine (or to metadata and private ranges) in some
/// disguise. `P` is the canary's port.
fn payloads(p: u16) -> Vec<String> {
    let hosts = [
        // Loopback, written every way a URL parser or resolver may accept.
        "127.0.0.1",
        "127.1",
        "127.0.1",
        "127.000.000.001",
        "127.0.0.2",
        "127.255.255.254",
        "2130706433",
        "0x7f000001",
        "0x7f.0.0.1",
        "0x7f.1",
        "0177.0.0.1",
        "0177.1",
        "017700000001",
        "localhost",
        "LOCALHOST",
        "localhost.",
        "ip6-localhost",
        "[::1]",
        "[0:0:0:0:0:0:0:1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "[::127.0.0.1]",
        "[64:ff9b::127.0.0.1]",
        // "This host".
        "0.0.0.0",
        "0",
        "0x0",
        "[::]",
        "[::ffff:0.0.0.0]",
        // Cloud metadata.
        "169.254.169.254",
        "2852039166",
        "0xa9fea9fe",
        "0251.0376.0251.0376",
        "[::ffff:169.254.169.254]",
        "[::ffff:a9fe:a9fe]",
        "[fd00:ec2::254]",
        "100.100.100.200",
        // Private, shared, link-local, multicast, broadcast and reserved ranges.
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "198.18.0.1",
        "224.0.0.1",
        "255.255.255.255",
        "240.0.0.1",
        "[fe80::1]",
        "[fc00::1]",
        "[ff02::1]",
    ];
    let mut urls: Vec<String> = hosts
        .iter()
        .map(|h| format!("http://{h}:{p}/latest/meta-data/"))
        .collect();
    // Userinfo and parser-confusion tricks.
    urls.extend([
        format!("http://evil.example@127.0.0.1:{p}/"),
        format!("http://user:pass@127.0.0.1:{p}/"),
        format!("http://127.0.0.1:{p}#@evil.example/"),
        format!("http://127.0.0.1:{p}?@evil.example/"),
        format!("http://evil.example%40127.0.0.1:{p}/"),
        format!("http://127.0.0.1%09:{p}/"),
        format!("https://127.0.0.1:{p}/"),
        format!("http://[::1%25lo]:{p}/"),
        format!("http://127.0.0.1:{p}\\@evil.example/"),
        format!("HTTP://127.0.0.1:{p}/"),
    ]);
    urls
}

/// Redirect targets a permitted server may send the client to.
fn redirect_targets(p: u16) -> Vec<String> {
    [
        "127.0.0.2",
        "[::1]",
        "2130706434",
        "0x7f.0.0.3",
        "0.0.0.0",
        "[::ffff:127.0.0.5]",
        "169.254.169.254",
    ]
    .iter()
    .map(|h| format!("http://{h}:{p}/"))
    .collect()
}

fn client(allow: &[&str], follow_redirects: u32) -> Client {
    let config = OutboundConfig {
        allow: allow.iter().map(|s| s.to_string()).collect(),
        follow_redirects,
        ..OutboundConfig::default()
    };
    Client::new(config.build(&mut Problems::default()).unwrap())
}

fn deps(http: Client) -> Deps {
    Deps {
        http,
        // Never used: the tasks here make HTTP requests only.
        producer: rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9")
            .create()
            .unwrap(),
        engine: Engine::new(Secrets::default()),
    }
}

/// The `http` task's answer for `url`: `Err(message)` when it failed.
async fn via_task(deps: &Deps, url: &str) -> Result<u64, String> {
    let toml = format!(
        "id = \"fetch\"\ntype = \"http\"\nuri = \"{}\"\ntimeout = \"2s\"",
        url.replace('\\', "\\\\")
    );
    let config: TaskConfig = toml::from_str(&toml).map_err(|e| e.to_string())?;
    let engine = Engine::new(Secrets::default());
    let mut p = Problems::default();
    let Some(task) = config.build("t", &engine, &mut p) else {
        return Err(format!("refused at load: {}", p.into_error("t")));
    };
    let prepared = task
        .prepare(&Context::builder().build(), &engine)
        .map_err(|e| e.message)?;
    let out = task.send(&prepared, deps).await.map_err(|e| e.message)?;
    Ok(out["status"].as_u64().unwrap_or(0))
}

/// A poller's answer for `url`.
async fn via_poller(deps: &Deps, url: &str) -> Result<u16, String> {
    let toml = format!(
        "id = \"probe\"\nuri = \"{}\"\ninterval = \"1m\"\ntimeout = \"2s\"\ntopic = \"t\"",
        url.replace('\\', "\\\\")
    );
    let config: PollerConfig = toml::from_str(&toml).map_err(|e| e.to_string())?;
    let mut p = Problems::default();
    let Some(poller) = config.build("p", &deps.engine, &mut p) else {
        return Err(format!("refused at load: {}", p.into_error("p")));
    };
    poller
        .poll(&deps.http, &deps.engine)
        .await
        .map(|polled| polled.response.expect("a request poller answers").status)
}

#[tokio::test(flavor = "multi_thread")]
async fn bypass_payloads_never_reach_the_canary_and_the_allowlist_still_works() {
    let (port, hits) = canary().await;
    let strict = deps(client(&[], 0));
    let urls = payloads(port);
    assert!(urls.len() >= 50, "{} payloads", urls.len());
    for url in &urls {
        let task = via_task(&strict, url).await;
        assert!(task.is_err(), "the http task reached {url}: {task:?}");
        let poll = via_poller(&strict, url).await;
        assert!(poll.is_err(), "a poller reached {url}: {poll:?}");
    }

    // A permitted server that redirects to local addresses: every hop is checked.
    let targets = redirect_targets(port);
    let location = Arc::new(std::sync::Mutex::new(String::new()));
    let to = location.clone();
    let redirector = TestServer::start(move |_: &Seen| -> Reply {
        http::Response::builder()
            .status(302)
            .header("location", to.lock().unwrap().clone())
            .body(Default::default())
            .unwrap()
    })
    .await;
    let following = deps(client(&["127.0.0.1/32"], 5));
    for target in &targets {
        *location.lock().unwrap() = target.clone();
        let task = via_task(&following, &redirector.url("/go")).await;
        assert!(
            task.is_err(),
            "a redirect to {target} was followed: {task:?}"
        );
        let poll = via_poller(&following, &redirector.url("/go")).await;
        assert!(poll.is_err(), "a poller followed a redirect to {target}");
    }
    assert_eq!(
        redirector.hits(),
        2 * targets.len(),
        "the permitted redirector was asked each time"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "{} of {} payloads reached the canary",
        hits.load(Ordering::SeqCst),
        urls.len() + targets.len()
    );

    // What is allowlisted still works, through both.
    let api = TestServer::start(|_: &Seen| json_reply(200, serde_json::json!({"ok": true}))).await;
    let allowed = deps(client(&[&format!("{}/32", api.addr.ip())], 0));
    assert_eq!(via_task(&allowed, &api.url("/ok")).await, Ok(200));
    assert_eq!(via_poller(&allowed, &api.url("/ok")).await, Ok(200));
}
