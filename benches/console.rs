//! The console's index at scale: how fast records become rows, and how fast pages answer
//! over an index of a million deliveries.
//!
//! ```text
//! cargo bench -p hookgate-console --bench console            # 1,000,000 deliveries
//! CONSOLE_BENCH_EVENTS=100000 cargo bench -p hookgate-console --bench console
//! ```
//!
//! 1. **Indexing**: gateway-shaped records (structured CloudEvents, ~600 bytes, a mix
//!    of hooks, one in five a rejection) go through the same `classify` and `write` as
//!    the console's reader, in its batches; the rate is records per second, Kafka left
//!    out (the integration test reads 100,000 from Tansu and prints that rate too).
//! 2. **Pages**: the console serves that index over HTTP; each page (HTML, as a browser
//!    gets it) is asked for 200 times in turn, and its median and 99th percentile are
//!    printed.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hookgate_common::config::{Environment, Secret, SecretSet, Source};
use hookgate_console::config::{IndexSettings, Login};
use hookgate_console::index::{Entry, Index, Retention};
use hookgate_console::ingest::{classify, Kind};
use http_body_util::BodyExt;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};
use serde_json::json;

const TOKEN: &str = "bench-token";
const HOOKS: [&str; 8] = [
    "github", "stripe", "slack", "shopify", "orders", "alerts", "billing", "ci",
];
const REASONS: [&str; 4] = ["mismatch", "missing", "expired", "rate_limited"];

fn record(i: usize, now_ms: i64) -> (Kind, OwnedMessage) {
    let hook = HOOKS[i % HOOKS.len()];
    let rejected = i % 5 == 0;
    // Spread over the last six days, newest last.
    let ms = now_ms - 6 * 86_400_000 + (i as i64 * 500) % (6 * 86_400_000);
    let time =
        humantime::format_rfc3339_micros(std::time::UNIX_EPOCH + Duration::from_millis(ms as u64))
            .to_string();
    let id = format!("01a2{i:08x}-0000-7000-8000-{i:012x}");
    let data = if rejected {
        json!({"status": 401, "reason": REASONS[i % REASONS.len()], "detail": "signature mismatch",
               "method": "POST", "path": format!("/hooks/{hook}"), "query": {},
               "headers": {"content-type": ["application/json"], "user-agent": ["GitHub-Hookshot/044aadd"]},
               "client": "203.0.113.7", "bodysize": 180, "bodysample": "{\"action\":\"opened\"}", "bodysampleencoding": "utf8"})
    } else {
        json!({"method": "POST", "path": format!("/hooks/{hook}"), "query": {},
               "headers": {"content-type": ["application/json"], "user-agent": ["GitHub-Hookshot/044aadd"],
                           "x-github-delivery": [format!("d-{i}")]},
               "body": {"action": "opened", "number": i, "repository": {"full_name": "acme/widgets"},
                        "sender": {"login": "octocat"}, "note": "x".repeat(120)},
               "bodyencoding": "json"})
    };
    let value = json!({
        "specversion": "1.0", "id": id, "source": format!("/hooks/{hook}"),
        "type": if rejected { "hookgate.rejection" } else { "pull_request" },
        "time": time, "datacontenttype": "application/json",
        "dataschema": if rejected { "urn:hookgate:rejection:v1" } else { "urn:hookgate:webhook:v1" },
        "hook": hook, "authscheme": "hmac", "deliveryid": format!("d-{i}"), "data": data,
    });
    let headers = OwnedHeaders::new().insert(Header {
        key: "content-type",
        value: Some(hookgate_event::STRUCTURED_CONTENT_TYPE),
    });
    let kind = if rejected {
        Kind::Rejections
    } else {
        Kind::Events
    };
    let topic = if rejected {
        "hookgate.rejections"
    } else {
        "hookgate.events"
    };
    (
        kind,
        OwnedMessage::new(
            Some(value.to_string().into_bytes()),
            None,
            topic.into(),
            Timestamp::CreateTime(ms),
            0,
            i as i64,
            Some(headers),
        ),
    )
}

fn settings(path: &std::path::Path) -> hookgate_console::Settings {
    let env = Environment::default();
    let consumer = hookgate_consumer::config::ConsumerConfig::load(
        &Source::Text {
            name: "bench".into(),
            toml: "[kafka]\nbrokers = \"127.0.0.1:9\"\ngroup = \"bench\"\ntopics = [\"hookgate.events\"]\n"
                .into(),
        },
        &env,
    )
    .and_then(|c| c.build(&env, "bench"))
    .unwrap_or_else(|e| panic!("{e}"));
    hookgate_console::Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        group: "bench".into(),
        index: IndexSettings {
            path: path.to_path_buf(),
            body_limit: 64 * 1024,
            retention: Retention {
                max_age: Duration::from_secs(7 * 86_400),
                max_events: 2_000_000,
            },
        },
        login: Login {
            token: Some(SecretSet::new(&[Secret::new(
                TOKEN.as_bytes().to_vec(),
                None,
            )])),
            basic: None,
        },
        hooks: Vec::new(),
        rejections_topic: Some("hookgate.rejections".into()),
        consumer: Arc::new(consumer),
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn main() {
    // `cargo bench` passes `--bench`; test runners list and run bench targets too
    // (`--list`, or no argument): for them this is not a test, so it does nothing.
    if !std::env::args().any(|a| a == "--bench") || std::env::args().any(|a| a == "--list") {
        return;
    }
    let events: usize = std::env::var("CONSOLE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("console-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("index.db");
    let now_ms = hookgate_console::index::millis(SystemTime::now());

    // 1. Indexing, in the reader's batches.
    let mut index = Index::open(&path).unwrap();
    let mut spent = Duration::ZERO;
    let batch = 5000;
    for start in (0..events).step_by(batch) {
        let records: Vec<(Kind, OwnedMessage)> = (start..(start + batch).min(events))
            .map(|i| record(i, now_ms))
            .collect();
        let began = Instant::now();
        let entries: Vec<Entry> = records
            .iter()
            .filter_map(|(kind, m)| classify(*kind, m, 64 * 1024))
            .collect();
        index
            .write(
                &entries,
                &[("hookgate.events".into(), 0, (start + batch) as i64)],
            )
            .unwrap();
        spent += began.elapsed();
    }
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "indexing: {events} records in {:.2} s = {:.0} records/s (decode, classify, write); index file {:.0} MiB",
        spent.as_secs_f64(),
        events as f64 / spent.as_secs_f64(),
        size as f64 / 1048576.0
    );
    drop(index);

    // 2. Pages over that index, through the console's own server.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let console = Arc::new(hookgate_console::Console::new(settings(&path)).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(hookgate_console::web::serve(
            listener,
            console,
            std::future::pending(),
        ));
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let middle = events / 2;
        let pages = [
            "/hooks".to_string(),
            "/deliveries".into(),
            "/deliveries?hook=stripe".into(),
            "/deliveries?kind=rejected".into(),
            "/deliveries?kind=rejected&reason=expired".into(),
            "/deliveries?hook=slack&kind=rejected&status=401&since=1h".into(),
            format!("/deliveries?event=01a2{middle:08x}-0000-7000-8000-{middle:012x}"),
            format!("/deliveries?delivery=d-{}", middle + 1),
            format!("/deliveries?before={middle}"),
            format!("/deliveries/{middle}"),
            "/executions".into(),
            "/dead-letters".into(),
            "/api/deliveries?hook=ci&kind=accepted".into(),
        ];
        println!("page latency over {events} deliveries (200 requests each, one at a time):");
        let mut worst = Duration::ZERO;
        for page in &pages {
            let mut took = Vec::with_capacity(200);
            for _ in 0..200 {
                let req = http::Request::get(format!("{base}{page}"))
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .body(http_body_util::Empty::new())
                    .unwrap();
                let began = Instant::now();
                let res = client.request(req).await.unwrap();
                assert_eq!(res.status(), 200, "{page}");
                let _ = res.into_body().collect().await.unwrap();
                took.push(began.elapsed());
            }
            took.sort();
            let p99 = quantile(&took, 0.99);
            worst = worst.max(p99);
            println!(
                "  {page:<70} p50 {:>7.2} ms  p99 {:>7.2} ms",
                quantile(&took, 0.5).as_secs_f64() * 1000.0,
                p99.as_secs_f64() * 1000.0
            );
        }
        println!("slowest page p99: {:.2} ms", worst.as_secs_f64() * 1000.0);
    });
    let _ = std::fs::remove_dir_all(dir);
}
