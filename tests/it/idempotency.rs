//! Idempotency keys at ingress, against the real broker: a repeat of a request (same
//! key, same body) gets the first answer and publishes nothing, the same key with another
//! body is refused with a problem+json 422, concurrent repeats publish once, a key is
//! forgotten after its window, and a hook can require one.

use std::time::Duration;

use crate::support::{brokers, http, kafka, topic, GatewayBuilder};

const HOOK: &str =
    "auth = { scheme = \"none\" }\nidempotency = { header = \"Idempotency-Key\", window = \"2s\" }";

async fn post(url: &str, key: Option<&str>, body: &str) -> http::Reply {
    let mut req = http::post(url)
        .content_type("application/json")
        .body(body.to_string());
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeat_gets_the_first_answer_and_a_reused_key_gets_422() {
    let events = topic("idempotent");
    let gw = GatewayBuilder::tansu()
        .kafka("partitions = 1")
        .hook(&format!("id = \"payments\"\ntopic = \"{events}\"\n{HOOK}"))
        .start()
        .await;
    let url = gw.hook_url("/hooks/payments");

    let first = post(&url, Some("pay-7f3a"), r#"{"amount":42}"#)
        .await
        .event_id();
    // The sender retries: same key, same body.
    let again = post(&url, Some("pay-7f3a"), r#"{"amount":42}"#)
        .await
        .event_id();
    assert_eq!(again, first);
    // Quoted as a structured-header string, it is the same key.
    let quoted = post(&url, Some("\"pay-7f3a\""), r#"{"amount":42}"#)
        .await
        .event_id();
    assert_eq!(quoted, first);

    // The same key for another request.
    let reused = post(&url, Some("pay-7f3a"), r#"{"amount":43}"#).await;
    assert_eq!(reused.status, 422);
    assert_eq!(
        reused.header("content-type"),
        Some("application/problem+json")
    );
    let problem = reused.json();
    assert_eq!(problem["status"], 422);
    assert_eq!(problem["title"], "Idempotency-Key is already used");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("different body"));

    // Another key, and a request without one, publish.
    let other = post(&url, Some("pay-9c21"), r#"{"amount":43}"#)
        .await
        .event_id();
    assert_ne!(other, first);
    let keyless = post(&url, None, r#"{"amount":1}"#).await.event_id();
    let ids = kafka::ids_until(&brokers(), &events, &keyless);
    assert_eq!(ids, vec![first.clone(), other, keyless]);

    // Past its window the key is forgotten: the same request publishes again.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let later = post(&url, Some("pay-7f3a"), r#"{"amount":42}"#)
        .await
        .event_id();
    assert_ne!(later, first);
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_repeats_publish_once() {
    let events = topic("idempotent-race");
    let gw = GatewayBuilder::tansu()
        .kafka("partitions = 1")
        .hook(&format!("id = \"orders\"\ntopic = \"{events}\"\n{HOOK}"))
        .start()
        .await;
    let url = gw.hook_url("/hooks/orders");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { post(&url, Some("order-A-1"), r#"{"order":"A-1"}"#).await })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap().event_id());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "different answers: {ids:?}");
    let sentinel = post(&url, None, "{}").await.event_id();
    let on_topic = kafka::ids_until(&brokers(), &events, &sentinel);
    assert_eq!(on_topic, vec![ids[0].clone(), sentinel]);
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hook_can_require_a_key_and_refuses_unusable_ones() {
    let gw = GatewayBuilder::tansu()
        .kafka("partitions = 1")
        .hook(&format!(
            "id = \"strict\"\ntopic = \"{}\"\nauth = {{ scheme = \"none\" }}\nidempotency = {{ header = \"X-Request-Id\", required = true }}",
            topic("strict")
        ))
        .start()
        .await;
    let url = gw.hook_url("/hooks/strict");
    let missing = http::post(&url).body("{}").send().await.unwrap();
    assert_eq!(missing.status, 400);
    assert_eq!(missing.json()["error"], "idempotency key required");
    let long = http::post(&url)
        .header("x-request-id", &"k".repeat(256))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(long.status, 400);
    assert!(long.json()["error"].as_str().unwrap().contains("invalid"));
    let ok = http::post(&url)
        .header("x-request-id", "req-1")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status, 202);
    gw.stop().await.unwrap();
}
