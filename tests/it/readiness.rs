//! `/readyz`: green with the brokers and topics in place, red with the reason when a hook
//! topic disappears; `/healthz` stays green.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

use crate::support::{brokers, http, topic, GatewayBuilder};

#[tokio::test(flavor = "multi_thread")]
async fn readiness_turns_red_when_a_topic_disappears() {
    let topic = topic("ready");
    let gw = GatewayBuilder::tansu()
        .hook(&format!(
            "id = \"r\"\ntopic = \"{topic}\"\nauth = {{ scheme = \"none\" }}"
        ))
        .start()
        .await;
    let readyz = format!("{}/readyz", gw.admin_url);
    assert_eq!(http::get(&readyz).await.unwrap().json()["ready"], true);

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let deleted = admin
        .delete_topics(&[&topic], &AdminOptions::new())
        .await
        .unwrap();
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = http::get(&readyz).await.unwrap();
        if r.status == 503 {
            let reasons = r.json()["reasons"].to_string();
            assert!(reasons.contains(&topic), "{reasons}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed green without the topic"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        http::get(&format!("{}/healthz", gw.admin_url))
            .await
            .unwrap()
            .status,
        200
    );
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn once_ready_the_first_publish_does_not_wait_for_the_producer() {
    // A fresh producer fetches the topic's metadata and its producer id on its first
    // publish (about half a second on this broker) unless it was warmed before readiness.
    let t = topic("warm");
    let gw = GatewayBuilder::tansu()
        .hook(&format!(
            "id = \"w\"\ntopic = \"{t}\"\nauth = {{ scheme = \"none\" }}"
        ))
        .start()
        .await;
    let started = Instant::now();
    let r = http::post(&gw.hook_url("/hooks/w"))
        .body("{}")
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(r.status, 202);
    assert!(
        took < Duration::from_millis(300),
        "the first request took {took:?}"
    );
    gw.stop().await.unwrap();
}
