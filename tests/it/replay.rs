//! Replay protection against the real broker: a second delivery of an id is answered with
//! the original event id and publishes nothing; concurrent duplicates wait for the first;
//! a delivery whose first attempt failed is accepted on retry.

use std::time::Duration;

use serde_json::json;

use crate::support::{brokers, hmac_sha256_hex, http, kafka, mock_cluster, topic, GatewayBuilder};

const SECRET: &str = "replay-test-secret";

fn sign(body: &[u8]) -> String {
    format!("sha256={}", hmac_sha256_hex(SECRET, body))
}

fn github_hook(topic: &str, extra: &str) -> String {
    format!(
        "id = \"gh\"\ntopic = \"{topic}\"\n{extra}\nauth = {{ scheme = \"hmac\", preset = \"github\", secrets = [{{ value = \"{SECRET}\" }}] }}"
    )
}

async fn deliver(url: &str, delivery: &str, body: &[u8]) -> http::Reply {
    http::post(url)
        .content_type("application/json")
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", &sign(body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_delivery_publishes_no_second_event() {
    let t = topic("replay");
    let gw = GatewayBuilder::tansu()
        .kafka("partitions = 1")
        .hook(&github_hook(&t, ""))
        .start()
        .await;
    let url = gw.hook_url("/hooks/gh");
    let body = br#"{"action":"opened","n":1}"#;
    let first = deliver(&url, "d-1", body).await.event_id();
    let again = deliver(&url, "d-1", body).await;
    assert_eq!(again.status, 202);
    assert_eq!(
        again.event_id(),
        first,
        "the replay gets the original event id"
    );

    // Concurrent duplicates of a new delivery: one event, one id for all.
    let body2 = br#"{"action":"closed","n":2}"#;
    let replies = futures_util::future::join_all((0..5).map(|_| deliver(&url, "d-2", body2))).await;
    let ids: Vec<String> = replies.iter().map(|r| r.event_id()).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");

    let sentinel = deliver(&url, "d-sentinel", br#"{"sentinel":true}"#)
        .await
        .event_id();
    let on_topic = kafka::ids_until(&brokers(), &t, &sentinel);
    assert_eq!(on_topic.len(), 3, "one event per delivery: {on_topic:?}");
    assert!(on_topic.contains(&first) && on_topic.contains(&ids[0]));

    let metrics = http::get(&format!("{}/metrics", gw.admin_url))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("hookgate_auth_failures_total{hook=\"gh\",reason=\"replay\"} 5"),
        "{text}"
    );
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_that_got_503_is_accepted_on_retry() {
    let cluster = mock_cluster(&["retry"]);
    let bootstrap = cluster.bootstrap_servers();
    let gw = GatewayBuilder::new()
        .brokers(&bootstrap)
        .hook(&github_hook("retry", "ack_timeout = \"1s\""))
        .start()
        .await;
    let url = gw.hook_url("/hooks/gh");
    let body = br#"{"retry":true}"#;
    cluster.broker_down(1).unwrap();
    assert_eq!(deliver(&url, "d-r", body).await.status, 503);
    // The failed attempt's record has timed out of the producer: it is gone for good.
    crate::support::metric_until(
        &gw.admin_url,
        "hookgate_kafka_producer_queue_messages",
        |n| n == 0.0,
    )
    .await;
    cluster.broker_up(1).unwrap();
    let mut accepted = None;
    for _ in 0..50 {
        let r = deliver(&url, "d-r", body).await;
        if r.status == 202 {
            accepted = Some(r.event_id());
            break;
        }
        assert_eq!(r.status, 503);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let id = accepted.expect("the retry is accepted once the broker is back");
    let on_topic = kafka::ids_until(&bootstrap, "retry", &id);
    assert_eq!(on_topic, vec![id.clone()]);
    let record = kafka::read_n(&bootstrap, "retry", 1);
    assert_eq!(record[0].json()["deliveryid"], json!("d-r"));
    gw.stop().await.unwrap();
}
