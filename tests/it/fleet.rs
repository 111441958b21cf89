//! A fleet sharing its state on Redis: three gateway processes with `[cluster] redis`
//! on Debian's `redis-server`, HAProxy (round robin) in front of them for the limit.
//! - Every delivery sent twice, to two different replicas: one record each, the same
//!   event id for both answers, and no delivery id in Redis in the clear.
//! - A limit of 300/s over the three, driven at 900/s: 300/s accepted, ± 5%.
//! - Redis killed mid-run: every request still gets 202 or 429, each replica limits to
//!   its third, duplicates on other replicas publish again (fail open), the degraded mode
//!   shows in the metrics; Redis back: the shared limit and guard hold again.
//! - Without Redis, HAProxy hashing on the delivery-id header sends a redelivery to the
//!   replica that saw the first: one record per delivery, the first event id for both.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookgate_testkit::{free_port, wait_until};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::support::{
    brokers, gateway_process, haproxy, hmac_sha256_hex, kafka, metric, topic, Process,
};

const SECRET: &str = "fleet-secret";

/// Keep-alive HTTP/1.1 connections: thousands of requests without thousands of sockets.
type Pool = Client<HttpConnector, Full<Bytes>>;

fn pool() -> Pool {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http()
}

/// Posts `body`, GitHub-signed with `delivery` when given; the status and the event id
/// of a 202.
async fn post(pool: &Pool, url: &str, delivery: Option<&str>, body: &[u8]) -> (u16, String) {
    try_post(pool, url, delivery, body)
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

async fn try_post(
    pool: &Pool,
    url: &str,
    delivery: Option<&str>,
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    let mut req = http::Request::post(url).header("content-type", "application/json");
    if let Some(d) = delivery {
        req = req.header("x-github-delivery", d).header(
            "x-hub-signature-256",
            format!("sha256={}", hmac_sha256_hex(SECRET, body)),
        );
    }
    let resp = pool
        .request(req.body(Full::new(Bytes::copy_from_slice(body)))?)
        .await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    let id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_string))
        .unwrap_or_default();
    Ok((status, id))
}

/// Debian's `redis-server` on `port`, without persistence, with `extra` arguments.
fn redis(port: u16, extra: &[&str]) -> Process {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (Debian's redis-server; scripts/test installs it)");
    Process(child)
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli (Debian's redis-tools, with redis-server)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One replica: ports for requests and admin, hooks `gh` (GitHub-signed, replay guard)
/// and `orders` (300/s over the fleet) on `topic`.
struct Replica {
    process: Process,
    port: u16,
    admin: String,
}

fn replica(dir: &Path, name: &str, redis_port: u16, topic: &str) -> Replica {
    let redis = format!("redis://127.0.0.1:{redis_port}/0");
    replica_with(dir, name, &redis, topic, "", &[])
}

/// [`replica`] on the Redis at `redis` with more `[cluster]` keys and environment variables; its log is
/// `NAME.log` in `dir`.
fn replica_with(
    dir: &Path,
    name: &str,
    redis: &str,
    topic: &str,
    cluster: &str,
    env: &[(&str, &str)],
) -> Replica {
    let (port, admin) = (free_port(), free_port());
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ndrain_delay = \"5s\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
         [kafka]\nbrokers = \"{}\"\ncreate_topics = true\nreplication_factor = 1\npartitions = 1\n\
         [rejections]\ntopic = \"\"\n\
         [cluster]\nredis = \"{redis}\"\nprefix = \"fleet\"\n{cluster}\n\
         [[hooks]]\nid = \"gh\"\ntopic = \"{topic}\"\n\
         auth = {{ scheme = \"hmac\", preset = \"github\", secrets = [{{ value = \"{SECRET}\" }}] }}\n\
         [[hooks]]\nid = \"orders\"\ntopic = \"{topic}\"\nauth = {{ scheme = \"none\" }}\n\
         rate_limit = {{ per_second = 300, burst = 30 }}\n\
         [[hooks]]\nid = \"pay\"\ntopic = \"{topic}\"\nauth = {{ scheme = \"none\" }}\n\
         idempotency = {{ header = \"Idempotency-Key\" }}\n",
        brokers());
    Replica {
        process: gateway_process(dir, name, &toml, env),
        port,
        admin: format!("http://127.0.0.1:{admin}"),
    }
}

impl Replica {
    fn url(&self, hook: &str) -> String {
        format!("http://127.0.0.1:{}/hooks/{hook}", self.port)
    }
}

/// Waits until every replica reports the cluster degraded (1) or not (0).
async fn degraded(replicas: &[Replica], wanted: f64) {
    for r in replicas {
        wait_until(
            &format!("hookgate_cluster_degraded {wanted} on {}", r.admin),
            Duration::from_secs(30),
            || async { metric(&r.admin, "hookgate_cluster_degraded").await == Some(wanted) },
        )
        .await;
    }
}

/// `rate` requests a second to `url` for `seconds`; the statuses, and the seconds from
/// the first request sent to the last.
async fn drive(pool: &Pool, url: &str, rate: u32, seconds: u32) -> (Vec<u16>, f64) {
    let per_tick = rate / 100;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..seconds * 100 {
        tick.tick().await;
        for _ in 0..per_tick {
            let (pool, url) = (pool.clone(), url.to_string());
            tasks.push(tokio::spawn(async move {
                post(&pool, &url, None, b"{\"order\":1}").await.0
            }));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut statuses = Vec::with_capacity(tasks.len());
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    (statuses, elapsed)
}

fn accepted_rate(statuses: &[u16], elapsed: f64, burst: f64) -> f64 {
    let accepted = statuses.iter().filter(|s| **s == 202).count() as f64;
    let rate = (accepted - burst).max(0.0) / elapsed;
    eprintln!(
        "{accepted} of {} accepted in {elapsed:.2} s: {rate:.1}/s",
        statuses.len()
    );
    rate
}

/// HAProxy on `front` over `replicas`, with `options` (backend lines, such as another
/// `balance`) before the servers.
fn balancer(dir: &Path, front: u16, replicas: &[Replica], options: &str) -> Process {
    let servers: String = replicas
        .iter()
        .enumerate()
        .map(|(i, r)| format!("  server r{i} 127.0.0.1:{}\n", r.port))
        .collect();
    haproxy(dir, front, &format!("{options}{servers}"))
}

/// Waits until every replica's `/readyz` answers 200.
async fn ready(replicas: &[Replica]) {
    for r in replicas {
        wait_until(
            &format!("{} ready", r.admin),
            Duration::from_secs(60),
            || async {
                crate::support::http::get(&format!("{}/readyz", r.admin))
                    .await
                    .is_ok_and(|x| x.status == 200)
            },
        )
        .await;
    }
}

async fn start(dir: &Path, redis_port: u16, events: &str) -> Vec<Replica> {
    let replicas: Vec<Replica> = ["a", "b", "c"]
        .iter()
        .map(|name| replica(dir, name, redis_port, events))
        .collect();
    ready(&replicas).await;
    degraded(&replicas, 0.0).await;
    for r in &replicas {
        wait_until("3 replicas counted", Duration::from_secs(10), || async {
            metric(&r.admin, "hookgate_cluster_replicas").await == Some(3.0)
        })
        .await;
    }
    replicas
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("hookgate-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_sent_twice_to_different_replicas_publish_once() {
    let events = topic("fleet-replay");
    let dir = temp_dir("fleet-replay");
    let redis_port = free_port();
    let _redis = redis(redis_port, &[]);
    let replicas = Arc::new(start(&dir, redis_port, &events).await);
    let pool = pool();

    // 10,000 deliveries, 32 at a time; each goes to replica k % 3 and then to the next
    // one; every tenth sends both at once, so that the second waits for the first.
    const DELIVERIES: usize = 10_000;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..32)
        .map(|_| {
            let (replicas, pool, next) = (replicas.clone(), pool.clone(), next.clone());
            tokio::spawn(async move {
                let mut mismatched = Vec::new();
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if k >= DELIVERIES {
                        return mismatched;
                    }
                    let delivery = format!("delivery-{k:05}");
                    let body = format!("{{\"n\":{k}}}");
                    let (first, second) =
                        (replicas[k % 3].url("gh"), replicas[(k + 1) % 3].url("gh"));
                    let (a, b) = if k % 10 == 0 {
                        tokio::join!(
                            post(&pool, &first, Some(&delivery), body.as_bytes()),
                            post(&pool, &second, Some(&delivery), body.as_bytes())
                        )
                    } else {
                        let a = post(&pool, &first, Some(&delivery), body.as_bytes()).await;
                        (
                            a,
                            post(&pool, &second, Some(&delivery), body.as_bytes()).await,
                        )
                    };
                    if a.0 != 202 || b.0 != 202 || a.1 != b.1 {
                        mismatched.push((k, a, b));
                    }
                }
            })
        })
        .collect();
    let mut mismatched = Vec::new();
    for w in workers {
        mismatched.extend(w.await.unwrap());
    }
    assert!(
        mismatched.is_empty(),
        "{} deliveries not answered 202 twice with one event id, e.g. {:?}",
        mismatched.len(),
        &mismatched[..mismatched.len().min(3)]
    );

    // A last delivery: every record of the ones before is on the topic ahead of it.
    let (status, sentinel) = post(&pool, &replicas[0].url("gh"), Some("sentinel"), b"{}").await;
    assert_eq!(status, 202);
    let records = kafka::read_until(&brokers(), &events, Duration::from_secs(60), |r| {
        r.last()
            .is_some_and(|x| x.json()["id"] == sentinel.as_str())
    });
    let mut ids: Vec<String> = records
        .iter()
        .filter_map(|r| r.json()["deliveryid"].as_str().map(str::to_string))
        .collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(
        total,
        DELIVERIES + 1,
        "records on the topic, sentinel included"
    );
    assert_eq!(ids.len(), DELIVERIES + 1, "each delivery once");

    // Redis holds salted digests: no delivery id in a key or a value.
    let keys = redis_cli(redis_port, &["--scan", "--pattern", "fleet:claim:*"]);
    let keys: Vec<&str> = keys.lines().collect();
    assert_eq!(keys.len(), DELIVERIES + 1, "one claim per delivery");
    assert!(
        keys.iter().all(|k| !k.contains("delivery")),
        "{:?}",
        &keys[..3]
    );
    let values = redis_cli(redis_port, &[&["MGET"][..], &keys[..100]].concat());
    assert!(
        values
            .lines()
            .all(|v| v.starts_with("a:") && !v.contains("delivery")),
        "{values}"
    );

    // Idempotency keys are shared the same way: the same request on another replica is
    // answered as the first, another body under the key is refused there too.
    let pay = |i: usize, body: &'static str| {
        let req = http::Request::post(replicas[i].url("pay"))
            .header("content-type", "application/json")
            .header("idempotency-key", "order-7781")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        let pool = pool.clone();
        async move {
            let resp = pool.request(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let first = pay(0, "{\"amount\":5}").await;
    assert_eq!(first.0, 202, "{first:?}");
    assert_eq!(pay(1, "{\"amount\":5}").await, first);
    assert_eq!(pay(2, "{\"amount\":6}").await.0, 422);

    // A replica draining after SIGTERM (it serves for `drain_delay`) still shares what it
    // accepts: a redelivery to another replica gets its event id at once, not when the
    // draining one has finished.
    let mut replicas = Arc::into_inner(replicas).expect("the workers are done");
    let draining = replicas.remove(0);
    assert!(Command::new("kill")
        .args(["-TERM", &draining.process.0.id().to_string()])
        .status()
        .unwrap()
        .success());
    wait_until("a draining", Duration::from_secs(5), || async {
        crate::support::http::get(&format!("{}/readyz", draining.admin))
            .await
            .is_ok_and(|x| x.status == 503)
    })
    .await;
    let body = b"{\"n\":\"drained\"}";
    let first = post(&pool, &draining.url("gh"), Some("drained-1"), body).await;
    assert_eq!(first.0, 202, "{first:?}");
    let asked = Instant::now();
    let again = post(&pool, &replicas[0].url("gh"), Some("drained-1"), body).await;
    assert_eq!(
        again, first,
        "the redelivery gets the draining replica's event id"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "the redelivery waited {:?} for the draining replica",
        asked.elapsed()
    );
    drop(draining);

    // The draining replica left the count when it stopped; one that dies (SIGKILL: it
    // cannot say goodbye) stops being counted within the heartbeat's TTL, so a fallback
    // would give the one left the whole limit.
    drop(replicas.pop());
    for r in &replicas {
        wait_until("1 replica counted", Duration::from_secs(15), || async {
            metric(&r.admin, "hookgate_cluster_replicas").await == Some(1.0)
        })
        .await;
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_global_limit_holds_over_haproxy_and_falls_back_while_redis_is_down() {
    let events = topic("fleet-limit");
    let dir = temp_dir("fleet-limit");
    let redis_port = free_port();
    let mut redis_server = redis(redis_port, &[]);
    let replicas = start(&dir, redis_port, &events).await;
    let front = free_port();
    let _haproxy = balancer(&dir, front, &replicas, "");
    let url = format!("http://127.0.0.1:{front}/hooks/orders");
    let pool = pool();
    wait_until("HAProxy forwards", Duration::from_secs(20), || async {
        try_post(&pool, &url, None, b"{}")
            .await
            .is_ok_and(|(status, _)| status == 202)
    })
    .await;
    // Let the warm-up's tokens come back.
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 900/s over the three replicas; 300/s accepted across them.
    let (statuses, elapsed) = drive(&pool, &url, 900, 10).await;
    assert!(
        statuses.iter().all(|s| *s == 202 || *s == 429),
        "{statuses:?}"
    );
    let rate = accepted_rate(&statuses, elapsed, 30.0);
    assert!(
        (285.0..=315.0).contains(&rate),
        "accepted {rate:.1}/s of 900/s offered, wanted 300/s ± 5%"
    );

    // Redis killed mid-run: every replica falls back to its third of the limit.
    let outage = {
        let pool = pool.clone();
        let url = url.clone();
        tokio::spawn(async move { drive(&pool, &url, 900, 8).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = redis_server.0.kill();
    let _ = redis_server.0.wait();
    degraded(&replicas, 1.0).await;
    let (statuses, _) = outage.await.unwrap();
    assert!(
        statuses.iter().all(|s| *s == 202 || *s == 429),
        "every request is answered while Redis is down: {:?}",
        statuses
            .iter()
            .filter(|s| **s != 202 && **s != 429)
            .collect::<Vec<_>>()
    );
    // Down for good now: the local thirds alone.
    let (statuses, elapsed) = drive(&pool, &url, 900, 6).await;
    assert!(
        statuses.iter().all(|s| *s == 202 || *s == 429),
        "{statuses:?}"
    );
    let rate = accepted_rate(&statuses, elapsed, 30.0);
    assert!(
        (270.0..=330.0).contains(&rate),
        "accepted {rate:.1}/s while Redis is down, wanted 3 × 100/s ± 10%"
    );
    for r in &replicas {
        let fallbacks = metric(
            &r.admin,
            "hookgate_cluster_fallbacks_total{feature=\"rate_limit\"}",
        )
        .await
        .unwrap_or(0.0);
        assert!(fallbacks > 0.0, "{} counted no fallback", r.admin);
    }
    // The replay guard fails open: a redelivery to another replica publishes again.
    let body = b"{\"outage\":true}";
    let (s1, first) = post(&pool, &replicas[0].url("gh"), Some("outage-1"), body).await;
    let (s2, second) = post(&pool, &replicas[1].url("gh"), Some("outage-1"), body).await;
    assert_eq!((s1, s2), (202, 202));
    assert_ne!(first, second, "no shared guard while Redis is down");
    assert_eq!(
        metric(
            &replicas[1].admin,
            "hookgate_cluster_fallbacks_total{feature=\"replay\"}"
        )
        .await,
        Some(1.0)
    );
    // …and this replica still remembers its own.
    let (_, again) = post(&pool, &replicas[1].url("gh"), Some("outage-1"), body).await;
    assert_eq!(again, second);

    // Redis back: shared again within a few heartbeats.
    let _redis_again = redis(redis_port, &[]);
    degraded(&replicas, 0.0).await;
    let (s1, first) = post(&pool, &replicas[2].url("gh"), Some("after-1"), body).await;
    let (s2, second) = post(&pool, &replicas[0].url("gh"), Some("after-1"), body).await;
    assert_eq!((s1, s2, &first), (202, 202, &second));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (statuses, elapsed) = drive(&pool, &url, 900, 6).await;
    let rate = accepted_rate(&statuses, elapsed, 30.0);
    assert!(
        (285.0..=315.0).contains(&rate),
        "accepted {rate:.1}/s after Redis came back, wanted 300/s ± 5%"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_with_a_password_is_used_and_a_wrong_one_only_degrades() {
    let events = topic("fleet-auth");
    let dir = temp_dir("fleet-auth");
    let redis_port = free_port();
    // The default user's password, and an ACL user of its own.
    let _redis = redis(
        redis_port,
        &[
            "--requirepass",
            "fleet-s3cret",
            "--user",
            "gateway",
            "on",
            ">acl-s3cret",
            "~*",
            "&*",
            "+@all",
        ],
    );
    let url = format!("redis://127.0.0.1:{redis_port}/0");
    let password = "password = { env = \"REDIS_PASSWORD\" }";
    let good = replica_with(
        &dir,
        "good",
        &url,
        &events,
        password,
        &[("REDIS_PASSWORD", "fleet-s3cret")],
    );
    let bad = replica_with(
        &dir,
        "bad",
        &url,
        &events,
        password,
        &[("REDIS_PASSWORD", "not-the-password")],
    );
    let user = replica_with(
        &dir,
        "user",
        &url,
        &events,
        &format!("username = \"gateway\"\n{password}"),
        &[("REDIS_PASSWORD", "acl-s3cret")],
    );
    let pool = pool();
    answering(&pool, &good).await;
    answering(&pool, &bad).await;
    answering(&pool, &user).await;
    degraded(std::slice::from_ref(&good), 0.0).await;
    degraded(std::slice::from_ref(&user), 0.0).await;
    degraded(std::slice::from_ref(&bad), 1.0).await;
    // The refused one still serves, deciding alone, and says why without the password.
    let (status, first) = post(&pool, &bad.url("gh"), Some("auth-1"), b"{}").await;
    assert_eq!(status, 202);
    assert_eq!(
        post(&pool, &bad.url("gh"), Some("auth-1"), b"{}").await.1,
        first
    );
    assert!(
        metric(
            &bad.admin,
            "hookgate_cluster_fallbacks_total{feature=\"replay\"}"
        )
        .await
            >= Some(2.0)
    );
    let log = logged(&dir.join("bad.log"), "Redis failed").await;
    assert!(
        !log.contains("not-the-password") && !log.contains("fleet-s3cret"),
        "{log}"
    );
    // The other shares: a delivery it took is a duplicate there, not on the degraded one.
    let (_, shared) = post(&pool, &good.url("gh"), Some("auth-2"), b"{}").await;
    let keys: u32 = redis_cli(
        redis_port,
        &["-a", "fleet-s3cret", "--no-auth-warning", "dbsize"],
    )
    .trim()
    .parse()
    .unwrap();
    assert!(
        keys >= 2,
        "the salt and the claim are in Redis: {keys} keys"
    );
    assert_ne!(
        post(&pool, &bad.url("gh"), Some("auth-2"), b"{}").await.1,
        shared
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Waits until the log at `path` has `text`; the log.
async fn logged(path: &Path, text: &str) -> String {
    wait_until(
        &format!("{text} in {}", path.display()),
        Duration::from_secs(10),
        || async { std::fs::read_to_string(path).is_ok_and(|l| l.contains(text)) },
    )
    .await;
    std::fs::read_to_string(path).unwrap()
}

/// Waits until `replica` answers a request to `orders`.
async fn answering(pool: &Pool, replica: &Replica) {
    wait_until(
        &format!("{} answers", replica.admin),
        Duration::from_secs(60),
        || async {
            try_post(pool, &replica.url("orders"), None, b"{}")
                .await
                .is_ok_and(|(status, _)| status == 202)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_over_tls_is_trusted_through_the_configured_ca_and_client_certificate_only() {
    let events = topic("fleet-tls");
    let dir = temp_dir("fleet-tls");
    // A private CA, Redis's certificate for `localhost`, and a client certificate.
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // Names of their own: OpenSSL (Redis) takes a leaf named like its CA for self-signed.
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "fleet test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let leaf = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let file = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    let ca_file = file("ca.pem", ca.pem());
    let (cert, key) = leaf("localhost");
    let (cert_file, key_file) = (file("redis.pem", cert), file("redis.key", key));
    let (cert, key) = leaf("hookgate");
    let client = format!(
        "ca_file = \"{ca_file}\"\ncert_file = \"{}\"\nkey_file = \"{}\"",
        file("client.pem", cert),
        file("client.key", key)
    );
    let port = free_port();
    let _redis = redis(
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &cert_file,
            "--tls-key-file",
            &key_file,
            "--tls-ca-cert-file",
            &ca_file,
            "--tls-auth-clients",
            "yes",
        ],
    );
    let url = format!("rediss://localhost:{port}/0");
    let trusted = replica_with(&dir, "trusted", &url, &events, &client, &[]);
    // Without the private CA (the system's roots do not know it), and with it but no
    // client certificate (Redis asks for one): each decides alone.
    let untrusted = replica_with(&dir, "untrusted", &url, &events, "", &[]);
    let anonymous = replica_with(
        &dir,
        "anonymous",
        &url,
        &events,
        &format!("ca_file = \"{ca_file}\""),
        &[],
    );
    let pool = pool();
    for r in [&trusted, &untrusted, &anonymous] {
        answering(&pool, r).await;
    }
    degraded(std::slice::from_ref(&trusted), 0.0).await;
    degraded(std::slice::from_ref(&untrusted), 1.0).await;
    degraded(std::slice::from_ref(&anonymous), 1.0).await;
    for r in [&trusted, &untrusted] {
        let (status, first) = post(&pool, &r.url("gh"), Some("tls-1"), b"{}").await;
        assert_eq!(status, 202);
        assert_eq!(
            post(&pool, &r.url("gh"), Some("tls-1"), b"{}").await.1,
            first
        );
    }
    let fallbacks = |r: &Replica| {
        let admin = r.admin.clone();
        async move {
            metric(
                &admin,
                "hookgate_cluster_fallbacks_total{feature=\"replay\"}",
            )
            .await
        }
    };
    assert_eq!(
        fallbacks(&trusted).await,
        None,
        "the trusted replica claims over TLS"
    );
    assert_eq!(fallbacks(&untrusted).await, Some(2.0));
    logged(&dir.join("untrusted.log"), "Redis failed").await;
    logged(&dir.join("anonymous.log"), "Redis failed").await;
    let _ = std::fs::remove_dir_all(dir);
}

/// docs/operations.md's Redis-free alternative: HAProxy hashing on the delivery-id header
/// (`balance hdr(X-GitHub-Delivery)`, `hash-type consistent`) sends a redelivery to the
/// replica that saw the first, whose own replay guard answers it with the first event id;
/// the deliveries still spread over both replicas.
#[tokio::test(flavor = "multi_thread")]
async fn without_redis_hashing_on_the_delivery_id_sends_a_redelivery_to_the_replica_that_saw_it() {
    let events = topic("fleet-hashed");
    let dir = temp_dir("fleet-hashed");
    let replicas: Vec<Replica> = ["a", "b"]
        .iter()
        .map(|name| replica_with(&dir, name, "", &events, "", &[]))
        .collect();
    ready(&replicas).await;
    let front = free_port();
    let _proxy = balancer(
        &dir,
        front,
        &replicas,
        "  balance hdr(X-GitHub-Delivery)\n  hash-type consistent\n",
    );
    let url = format!("http://127.0.0.1:{front}/hooks/gh");
    wait_until("HAProxy listening", Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", front))
            .await
            .is_ok()
    })
    .await;

    let pool = pool();
    const DELIVERIES: usize = 200;
    for k in 0..DELIVERIES {
        let delivery = format!("hashed-{k:03}");
        let body = format!("{{\"n\":{k}}}");
        let first = post(&pool, &url, Some(&delivery), body.as_bytes()).await;
        let again = post(&pool, &url, Some(&delivery), body.as_bytes()).await;
        assert_eq!(first.0, 202, "{delivery}: {first:?}");
        assert_eq!(
            again, first,
            "{delivery}: the redelivery gets the first event id"
        );
    }
    let accepted = r#"hookgate_requests_total{hook="gh",outcome="accepted"}"#;
    let mut seen = Vec::new();
    for r in &replicas {
        seen.push(metric(&r.admin, accepted).await.unwrap_or(0.0));
    }
    assert!(
        seen.iter().all(|n| *n >= 20.0),
        "the deliveries spread over both replicas: {seen:?}"
    );

    // One record per delivery: the sentinel, sent last to replica a, closes the reading.
    let (status, sentinel) = post(&pool, &replicas[0].url("gh"), Some("sentinel"), b"{}").await;
    assert_eq!(status, 202);
    let records = kafka::read_until(&brokers(), &events, Duration::from_secs(60), |r| {
        r.iter().any(|x| x.json()["id"] == sentinel.as_str()) && r.len() > DELIVERIES
    });
    let mut ids: Vec<String> = records
        .iter()
        .filter_map(|r| r.json()["deliveryid"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    let total = ids.len();
    ids.dedup();
    assert_eq!((total, ids.len()), (DELIVERIES + 1, DELIVERIES + 1));
    let _ = std::fs::remove_dir_all(dir);
}
