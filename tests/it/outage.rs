//! Broker outages, on librdkafka's mock cluster: while the broker is down every request
//! gets a 503 with `Retry-After` within the ack timeout, never a 202; once it is back
//! requests succeed again; and every 202 given has its event on the topic.

use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;

use crate::support::{http, kafka, GatewayBuilder};

#[tokio::test(flavor = "multi_thread")]
async fn outage_answers_503_then_recovers_and_loses_nothing_acknowledged() {
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("outage", 1, 1).unwrap();
    let gw = GatewayBuilder::new()
        .brokers(&bootstrap)
        .hook("id = \"o\"\ntopic = \"outage\"\nack_timeout = \"1s\"\nauth = { scheme = \"none\" }")
        .start()
        .await;
    let url = gw.hook_url("/hooks/o");
    let post = |n: usize| {
        let url = url.clone();
        async move {
            http::post(&url)
                .json(&serde_json::json!({ "n": n }))
                .send()
                .await
                .unwrap()
        }
    };

    let mut acknowledged = Vec::new();
    for n in 0..5 {
        acknowledged.push(post(n).await.event_id());
    }

    cluster.broker_down(1).unwrap();
    for n in 5..10 {
        let started = Instant::now();
        let r = post(n).await;
        let took = started.elapsed();
        assert_eq!(r.status, 503, "request {n} during the outage: {:?}", r.body);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(
            took < Duration::from_millis(1800),
            "answered after {took:?}, ack timeout is 1s"
        );
    }

    cluster.broker_up(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 10;
    loop {
        let r = post(n).await;
        n += 1;
        if r.status == 202 {
            acknowledged.push(r.event_id());
            break;
        }
        assert_eq!(r.status, 503);
        assert!(
            Instant::now() < deadline,
            "no 202 within 30 s of the broker coming back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..5 {
        acknowledged.push(post(n).await.event_id());
        n += 1;
    }

    let sentinel = acknowledged.last().unwrap().clone();
    let on_topic = kafka::ids_until(&bootstrap, "outage", &sentinel);
    for id in &acknowledged {
        assert!(
            on_topic.contains(id),
            "acknowledged event {id} is not on the topic"
        );
    }
    gw.stop().await.unwrap();
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_producer_queue_is_shed_at_once() {
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("queue", 1, 1).unwrap();
    let gw = GatewayBuilder::new()
        .brokers(&bootstrap)
        .kafka("properties = { \"queue.buffering.max.messages\" = 2 }")
        .hook("id = \"q\"\ntopic = \"queue\"\nack_timeout = \"3s\"\nauth = { scheme = \"none\" }")
        .start()
        .await;
    cluster.broker_down(1).unwrap();
    let url = gw.hook_url("/hooks/q");
    // Two requests fill the queue and wait for their acks; the third finds it full.
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { http::post(&url).body("{}").send().await.unwrap() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let r = http::post(&url).body("{}").send().await.unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "shed took {:?}",
        started.elapsed()
    );
    for w in waiting {
        assert_eq!(w.await.unwrap().status, 503);
    }
    cluster.broker_up(1).unwrap();
    gw.stop().await.unwrap();
    drop(cluster);
}
