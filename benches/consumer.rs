//! The flow consumer's throughput against a real broker: how many events a second it gets
//! through when their conditions do not match, how many runs of a flow with one `log`
//! task, and — given a stand-in API — how many runs of a flow with one `http` task; with
//! the consumer's CPU time per event.
//!
//! ```text
//! # a fresh broker and the bare-hyper stand-in API, pinned away from the consumer:
//! taskset -c 0 tansu broker --listener-url tcp://127.0.0.1:19092 ... &
//! taskset -c 0 target/release/hookgate-loadtest baseline --listen 127.0.0.1:18080 &
//! TEST_KAFKA_BROKERS=127.0.0.1:19092 CONSUMER_BENCH_HTTP_URL=http://127.0.0.1:18080/orders \
//!   taskset -c 1 cargo bench -p hookgate-consumer --bench consumer
//! CONSUMER_BENCH_EVENTS=50000 ...                            # fewer events
//! CONSUMER_BENCH_PYTHON=1 ...     # and loadtest/peers/flow_consumer.py doing the http case
//! ```
//!
//! Tansu answers a fetch when `fetch.wait.max.ms` ends, not when data arrives, so the
//! consumer here waits 5 ms (librdkafka's default 500 ms would cap any consumer at about
//! 2,800 events/s per partition, 1 MiB per fetch); Apache Kafka answers at once.
//!
//! Each case gets its own topic (3 partitions) filled beforehand with gateway-shaped
//! events (structured CloudEvents, ~600 bytes), then a consumer in its own group reads
//! it from the start; the rate is events over the time from the consumer's start to its
//! last run, as the `hookgate_consumer_flows_total` counter shows it.

use std::time::{Duration, Instant};

// The allocator hookgate-consumer runs with (see consumer/src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use hookgate_common::config::{Environment, Source};
use hookgate_consumer::config::ConsumerConfig;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};

fn main() {
    if let Ok(listen) = std::env::var("CONSUMER_BENCH_SINK") {
        return sink(&listen);
    }
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let Ok(brokers) = std::env::var("TEST_KAFKA_BROKERS") else {
        eprintln!("consumer bench: set TEST_KAFKA_BROKERS to a broker (a fresh Tansu)");
        return;
    };
    let events: usize = std::env::var("CONSUMER_BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    hookgate_consumer::metrics::install();
    let mut cases = vec![
        (
            "conditions that do not match",
            "nomatch",
            "condition = \"trigger.body.n < 0\"\n[[flows.tasks]]\nid = \"note\"\ntype = \"log\"\nmessage = \"{{ trigger.id }}\"".to_string(),
            "skipped",
        ),
        (
            "one log task",
            "log",
            "[[flows.tasks]]\nid = \"note\"\ntype = \"log\"\nmessage = \"{{ trigger.id }}\"".to_string(),
            "success",
        ),
    ];
    match std::env::var("CONSUMER_BENCH_HTTP_URL") {
        Ok(url) => cases.push((
            "one http task",
            "http",
            format!(
                "[[flows.tasks]]\nid = \"call\"\ntype = \"http\"\nmethod = \"POST\"\nuri = \"{url}\"\n\
                 body = {{ order = \"{{{{ trigger.body.order_id }}}}\", total = \"{{{{ trigger.body.total }}}}\" }}\n\
                 expect = [200, 202]"
            ),
            "success",
        )),
        Err(_) => eprintln!("consumer bench: set CONSUMER_BENCH_HTTP_URL to a stand-in API (hookgate-loadtest baseline) to measure http tasks"),
    }
    // The floor: how fast a bare librdkafka consumer with the same fetch settings reads
    // such a topic from this broker, doing nothing with the records.
    {
        let topic = format!("bench-consumer-raw-{}", uuid::Uuid::new_v4().simple());
        runtime.block_on(fill(&brokers, &topic, events));
        let (n, secs, cpu) = raw_read(&brokers, &topic, events);
        println!(
            "consumer/bare librdkafka read: {n} events in {secs:.2} s = {:.0} events/s, {:.1} µs CPU per event",
            n as f64 / secs,
            cpu * 1e6 / n as f64
        );
    }
    for (case, short, flow, state) in cases {
        let topic = format!("bench-consumer-{}", uuid::Uuid::new_v4().simple());
        let filled = Instant::now();
        runtime.block_on(fill(&brokers, &topic, events));
        let fill_secs = filled.elapsed().as_secs_f64();
        eprintln!("consumer/{case}: {events} events written in {fill_secs:.1} s");
        let name = format!("bench.{short}");
        let settings = settings(&brokers, &topic, short, &flow);
        let series = format!("hookgate_consumer_flows_total{{flow=\"{name}\",state=\"{state}\"}}");
        let took = runtime.block_on(async {
            let started = Instant::now();
            let running = hookgate_consumer::runtime::Running::start(settings);
            let deadline = started + Duration::from_secs(600);
            let mut last = (0usize, started, 0.0);
            let mut first: Option<(usize, Instant, f64)> = None;
            let mut told = Instant::now();
            while last.0 < events && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let done = count(&series);
                if told.elapsed() >= Duration::from_secs(5) {
                    told = Instant::now();
                    eprintln!(
                        "consumer/{case}: {done} of {events} after {:.0} s",
                        started.elapsed().as_secs_f64()
                    );
                }
                if done > last.0 {
                    last = (done, Instant::now(), cpu_seconds());
                    first.get_or_insert(last);
                }
            }
            running.stop().await.unwrap();
            assert!(
                last.0 >= events,
                "{case}: {} of {events} events in 10 minutes",
                last.0
            );
            let first = first.expect("some progress");
            // From the first runs seen (the group join and first fetch left out) to the last.
            (
                last.0 - first.0,
                last.1 - first.1,
                last.1 - started,
                last.2 - first.2,
            )
        });
        let (counted, steady, total, cpu) = took;
        println!(
            "consumer/{case}: {counted} events in {:.2} s = {:.0} events/s, {:.1} µs CPU per event ({events} in {:.2} s from the consumer's start; filling the topic took {fill_secs:.1} s)",
            steady.as_secs_f64(),
            counted as f64 / steady.as_secs_f64(),
            cpu * 1e6 / counted as f64,
            total.as_secs_f64(),
        );
    }
    if let Ok(rate) = std::env::var("CONSUMER_BENCH_LATENCY_RATE") {
        let rate: u64 = rate
            .parse()
            .expect("CONSUMER_BENCH_LATENCY_RATE is events per second");
        latency(&runtime, &brokers, rate, 10);
    }
    if let (Ok(url), Ok(_)) = (
        std::env::var("CONSUMER_BENCH_HTTP_URL"),
        std::env::var("CONSUMER_BENCH_PYTHON"),
    ) {
        python_peer(&runtime, &brokers, &url, events);
    }
}

/// The `http` case's latency at a steady `rate`: events produced as the gateway does
/// (time stamped when made, the producer lingering 3 ms) for `seconds`, each run POSTing
/// to a stand-in API in its own process (this binary as [`sink`], on core 0 beside the
/// broker when `taskset` is there) that measures from the event's `time` to the call.
fn latency(runtime: &tokio::runtime::Runtime, brokers: &str, rate: u64, seconds: u64) {
    let topic = format!("bench-consumer-latency-{}", uuid::Uuid::new_v4().simple());
    runtime.block_on(fill(brokers, &topic, 0));
    let calls = rate * seconds;
    let listen = "127.0.0.1:18091";
    let exe = std::env::current_exe().unwrap();
    let sink = std::process::Command::new("taskset")
        .args(["-c", "0"])
        .arg(&exe)
        .env("CONSUMER_BENCH_SINK", listen)
        .env("CONSUMER_BENCH_SINK_CALLS", (calls + 1).to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .or_else(|_| {
            std::process::Command::new(&exe)
                .env("CONSUMER_BENCH_SINK", listen)
                .env("CONSUMER_BENCH_SINK_CALLS", (calls + 1).to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
        })
        .expect("the stand-in API starts");
    std::thread::sleep(Duration::from_millis(300));
    let flow = format!(
        "[[flows.tasks]]\nid = \"call\"\ntype = \"http\"\nmethod = \"POST\"\nuri = \"http://{listen}/orders\"\n\
         headers = {{ \"x-event-time\" = \"{{{{ trigger.time }}}}\" }}\n\
         body = {{ order = \"{{{{ trigger.body.order_id }}}}\" }}\nexpect = [200]"
    );
    let settings = settings(brokers, &topic, "latency", &flow);
    runtime.block_on(async {
        let running = hookgate_consumer::runtime::Running::start(settings);
        let producer: rdkafka::producer::FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "3")
            .create()
            .unwrap();
        let send = |i: u64| {
            let body = serde_json::json!({"order_id": format!("L-{i}"), "total": 42.5});
            let (_, value) =
                hookgate_testkit::kafka::webhook_event("orders", "order.created", &body);
            let key = format!("L-{i}");
            let headers = hookgate_testkit::kafka::event_headers();
            let (producer, topic) = (producer.clone(), topic.clone());
            async move {
                let record = rdkafka::producer::FutureRecord::to(&topic)
                    .key(&key)
                    .payload(&value)
                    .headers(headers);
                let _ = producer.send(record, Duration::from_secs(5)).await;
            }
        };
        // One event first, so the group has joined before the measured ones.
        send(0).await;
        let series = "hookgate_consumer_flows_total{flow=\"bench.latency\",state=\"success\"}";
        while count(series) < 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        let mut sent = 0;
        while sent < calls {
            tick.tick().await;
            let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
            while sent < due.min(calls) {
                sent += 1;
                tokio::spawn(send(sent));
            }
        }
        while (count(series) as u64) < calls + 1
            && started.elapsed() < Duration::from_secs(seconds + 60)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        running.stop().await.unwrap();
    });
    let out = sink.wait_with_output().unwrap();
    println!(
        "consumer/one http task at {rate}/s for {seconds} s, event time to call: {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
}

/// The stand-in API of [`latency`]: answers every POST 200 and notes how long after the
/// `x-event-time` header's instant it arrived; after `CONSUMER_BENCH_SINK_CALLS` calls
/// (the first, the warm-up, not counted) prints the percentiles and exits.
fn sink(listen: &str) {
    use std::sync::{Arc, Mutex};
    let calls: usize = std::env::var("CONSUMER_BENCH_SINK_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (tcp, _) = accepted.unwrap();
                    let (seen, done_tx) = (seen.clone(), done_tx.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                            let (seen, done_tx) = (seen.clone(), done_tx.clone());
                            async move {
                                let micros = req
                                    .headers()
                                    .get("x-event-time")
                                    .and_then(|v| humantime::parse_rfc3339(v.to_str().ok()?).ok())
                                    .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
                                    .map_or(u64::MAX, |d| d.as_micros() as u64);
                                let _ = http_body_util::BodyExt::collect(req.into_body()).await;
                                let n = {
                                    let mut seen = seen.lock().unwrap();
                                    seen.push(micros);
                                    seen.len()
                                };
                                if n >= calls {
                                    let _ = done_tx.try_send(());
                                }
                                Ok::<_, std::convert::Infallible>(http::Response::new(
                                    http_body_util::Full::new(bytes::Bytes::from_static(b"{}")),
                                ))
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                            .await;
                    });
                }
                _ = done_rx.recv() => break,
            }
        }
    });
    let mut all = seen.lock().unwrap().split_off(1);
    all.sort_unstable();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)] as f64 / 1000.0;
    println!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} calls)",
        at(0.5),
        at(0.99),
        at(1.0),
        all.len()
    );
}

/// The consumer's settings for one case: flow `bench.{short}` (triggered by hook
/// `orders`, the rest of its table in `flow`) reading `topic`; the running cap and extra
/// consumer properties from the environment.
fn settings(
    brokers: &str,
    topic: &str,
    short: &str,
    flow: &str,
) -> hookgate_consumer::config::Settings {
    let cap: usize = std::env::var("CONSUMER_BENCH_CAP")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(16);
    // More consumer properties to try, e.g. `, "fetch.queue.backoff.ms" = 1`.
    let props = std::env::var("CONSUMER_BENCH_PROPERTIES").unwrap_or_default();
    let toml = format!(
        "[kafka]\nbrokers = \"{brokers}\"\ngroup = \"{topic}-group\"\ntopics = [\"{topic}\"]\n\
         dead_letter_topic = \"{topic}-dead\"\nexecutions_topic = \"{topic}-runs\"\ncontrol_topic = \"{topic}-control\"\n\
         consumer_properties = {{ \"fetch.wait.max.ms\" = 5{props} }}\n[limits]\nmax_in_flight_per_partition = {cap}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[outbound]\nallow = [\"127.0.0.1/32\"]\n\
         [[flows]]\nid = \"{short}\"\nnamespace = \"bench\"\ntrigger = {{ hooks = [\"orders\"] }}\n{flow}\n"
    );
    let source = Source::Text {
        name: "bench".into(),
        toml,
    };
    ConsumerConfig::load(&source, &Environment::default())
        .unwrap()
        .build(&Environment::default(), "bench")
        .unwrap()
}

/// Reads `events` records of `topic` with a bare `BaseConsumer` (fetch wait 5 ms, as the
/// consumer's config here); returns the records, the seconds from the first to the last,
/// and the CPU seconds over that time.
fn raw_read(brokers: &str, topic: &str, events: usize) -> (usize, f64, f64) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-raw"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut n = 0;
    let mut first: Option<(Instant, f64)> = None;
    let mut last = Instant::now();
    while n < events && Instant::now() < deadline {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            n += 1;
            last = Instant::now();
            first.get_or_insert_with(|| (last, cpu_seconds()));
        }
    }
    let (start, cpu) = first.expect("some records");
    (n - 1, (last - start).as_secs_f64(), cpu_seconds() - cpu)
}

/// The hand-written Python consumer (loadtest/peers/flow_consumer.py) doing the `http`
/// case on a topic filled the same way; it runs on this process's CPUs.
fn python_peer(runtime: &tokio::runtime::Runtime, brokers: &str, url: &str, events: usize) {
    let topic = format!("bench-consumer-py-{}", uuid::Uuid::new_v4().simple());
    runtime.block_on(fill(brokers, &topic, events));
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../loadtest/peers/flow_consumer.py"
    );
    let out = std::process::Command::new("python3")
        .arg(script)
        .env("PEER_BROKERS", brokers)
        .env("PEER_TOPIC", &topic)
        .env("PEER_URL", url)
        .env("PEER_EVENTS", events.to_string())
        .output()
        .expect("python3 runs");
    let line = String::from_utf8_lossy(&out.stdout);
    let Ok(report) = serde_json::from_str::<serde_json::Value>(line.trim()) else {
        eprintln!(
            "python/one http task: no report ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    };
    let n = report["events"].as_f64().unwrap_or(0.0);
    let secs = report["seconds"].as_f64().unwrap_or(f64::NAN);
    let cpu = report["cpu_seconds"].as_f64().unwrap_or(f64::NAN);
    println!(
        "python/one http task: {n} events in {secs:.2} s = {:.0} events/s, {:.1} µs CPU per event ({} failed)",
        n / secs,
        cpu * 1e6 / n,
        report["failed"]
    );
}

/// This process's CPU time (user + system) so far, from /proc/self/stat; 0 elsewhere.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// The value of a counter line in the consumer's metrics page.
fn count(series: &str) -> usize {
    hookgate_consumer::metrics::render()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as usize
}

/// Writes `n` gateway-shaped events of hook `orders` to a new 3-partition topic.
async fn fill(brokers: &str, topic: &str, n: usize) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    admin
        .create_topics(
            &[NewTopic::new(topic, 3, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    for i in 0..n {
        let body = serde_json::json!({
            "n": i, "order_id": format!("A-{i}"), "total": 42.5, "currency": "EUR",
            "customer": {"id": i % 977, "email": "buyer@example.com"},
            "items": [{"sku": "M8-BOLT", "qty": 4}, {"sku": "WASHER", "qty": 8}],
        });
        let (_, value) = hookgate_testkit::kafka::webhook_event("orders", "order.created", &body);
        let key = format!("A-{i}");
        loop {
            let record = BaseRecord::to(topic).key(&key).payload(&value).headers(
                rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
                    key: "content-type",
                    value: Some(hookgate_event::STRUCTURED_CONTENT_TYPE),
                }),
            );
            match producer.send(record) {
                Ok(()) => break,
                Err(_) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        if i % 1000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
}
