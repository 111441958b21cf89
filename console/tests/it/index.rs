//! The index: rebuilt from Kafka when its file is gone, and kept within its retention
//! however much the topics carry.

use std::time::{Duration, Instant};

use hookgate_testkit::kafka::Producer;
use hookgate_testkit::{brokers, wait_until};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use serde_json::json;

use crate::support::{self, api, Topics};

async fn event_ids(console: &hookgate_console::Running) -> Vec<String> {
    let mut ids: Vec<String> = api(console, "/api/deliveries").await["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_index_is_rebuilt_from_the_topics() {
    let t = Topics::create().await;
    let producer = Producer::new(&brokers());
    let mut sent: Vec<String> = (0..25)
        .map(|i| {
            producer.event(
                &t.events,
                None,
                "orders",
                "order.created",
                &json!({"order": i}),
            )
        })
        .collect();
    sent.sort();
    let dir = support::tempdir();
    let console = support::start(support::console_settings(&t, &dir, 1000)).await;
    wait_until("25 deliveries indexed", Duration::from_secs(30), || async {
        event_ids(&console).await.len() == 25
    })
    .await;
    assert_eq!(event_ids(&console).await, sent);
    console.stop().await.unwrap();

    // A restart goes on where it stopped: nothing twice.
    let console = support::start(support::console_settings(&t, &dir, 1000)).await;
    let one_more = producer.event(
        &t.events,
        None,
        "orders",
        "order.created",
        &json!({"order": 99}),
    );
    wait_until(
        "the new delivery indexed",
        Duration::from_secs(30),
        || async { event_ids(&console).await.contains(&one_more) },
    )
    .await;
    assert_eq!(event_ids(&console).await.len(), 26);
    console.stop().await.unwrap();

    // Without its file, the console reads the topics again from their start.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("index.db") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let console = support::start(support::console_settings(&t, &dir, 1000)).await;
    wait_until(
        "26 deliveries indexed again",
        Duration::from_secs(30),
        || async { event_ids(&console).await.len() == 26 },
    )
    .await;
    sent.push(one_more);
    sent.sort();
    assert_eq!(event_ids(&console).await, sent);
    console.stop().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_index_stays_within_its_retention_under_100000_events() {
    const EVENTS: usize = 100_000;
    const KEEP: u64 = 20_000;
    let t = Topics::create().await;
    // Small gateway-shaped events, produced in bulk.
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .unwrap();
    let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
        key: "content-type",
        value: Some(hookgate_event::STRUCTURED_CONTENT_TYPE),
    });
    let now = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    for i in 0..EVENTS {
        let value = json!({
            "specversion": "1.0", "id": format!("ev-{i:06}"), "source": "/hooks/orders", "type": "order.created",
            "time": now, "hook": "orders", "authscheme": "none",
            "data": {"method": "POST", "path": "/hooks/orders", "query": {}, "headers": {}, "body": {"order": i}, "bodyencoding": "json"}
        })
        .to_string();
        loop {
            match producer.send(
                BaseRecord::<[u8], [u8]>::to(&t.events)
                    .payload(value.as_bytes())
                    .headers(headers.clone()),
            ) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        if i % 10_000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();

    let dir = support::tempdir();
    let started = Instant::now();
    let console = support::start(support::console_settings(&t, &dir, KEEP)).await;
    wait_until("100,000 events read", Duration::from_secs(120), || async {
        api(&console, "/api/status").await["indexed"].as_u64() == Some(EVENTS as u64)
    })
    .await;
    let took = started.elapsed();
    eprintln!(
        "indexed {EVENTS} events from Tansu in {:.2} s ({:.0} events/s, debug build)",
        took.as_secs_f64(),
        EVENTS as f64 / took.as_secs_f64()
    );
    wait_until("retention applied", Duration::from_secs(30), || async {
        api(&console, "/api/status").await["deliveries"].as_u64() == Some(KEEP)
    })
    .await;
    let status = api(&console, "/api/status").await;
    // The newest are the ones kept, and the file is that of the rows kept, not of all.
    let newest = &api(&console, "/api/deliveries").await["rows"][0];
    assert_eq!(newest["event_id"], format!("ev-{:06}", EVENTS - 1));
    let bytes = status["file_bytes"].as_u64().unwrap();
    assert!(
        bytes < 64 * 1024 * 1024,
        "index file {bytes} bytes for {KEEP} rows"
    );
    console.stop().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
