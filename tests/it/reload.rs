//! Hot reload through `POST /reload`: a secret is swapped without failing the request in
//! flight, unchanged hooks keep their limiter state, a bad config keeps the old one
//! serving, and changes that need a restart are refused with the reason.

use std::time::Duration;

use crate::support::{http, mock_cluster, GatewayBuilder};

async fn reload(gw: &crate::support::RunningGateway, token: &str) -> http::Reply {
    http::post(&format!("{}/reload", gw.admin_url))
        .header("authorization", &format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_swaps_secrets_keeps_limits_and_refuses_what_it_cannot_apply() {
    let cluster = mock_cluster(&["reload"]);
    let gw = GatewayBuilder::new()
        .brokers(&cluster.bootstrap_servers())
        .admin("reload_token = { value = \"admin-token\" }")
        .hook("id = \"t\"\ntopic = \"reload\"\nauth = { scheme = \"token\", header = \"x-token\", secrets = [{ value = \"old-secret\" }] }")
        .hook("id = \"r\"\ntopic = \"reload\"\nrate_limit = { per_second = 0.01, burst = 2 }\nauth = { scheme = \"none\" }")
        .start()
        .await;
    let t_url = gw.hook_url("/hooks/t");
    let r_url = gw.hook_url("/hooks/r");
    let with_token = |token: &'static str| {
        let url = t_url.clone();
        async move {
            http::post(&url)
                .header("x-token", token)
                .body("{}")
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(with_token("old-secret").await.status, 202);
    for _ in 0..2 {
        assert_eq!(
            http::post(&r_url).body("{}").send().await.unwrap().status,
            202
        );
    }
    assert_eq!(
        http::post(&r_url).body("{}").send().await.unwrap().status,
        429
    );

    // A request in flight (the broker takes 800 ms to acknowledge) while the secret changes.
    cluster
        .broker_round_trip_time(1, Duration::from_millis(800))
        .unwrap();
    let in_flight = tokio::spawn(with_token("old-secret"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    std::fs::write(&gw.config_path, text.replace("old-secret", "new-secret")).unwrap();
    assert_eq!(reload(&gw, "wrong").await.status, 401);
    let r = reload(&gw, "admin-token").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["kept_limits"], 2, "neither hook's limits changed");
    assert_eq!(
        in_flight.await.unwrap().status,
        202,
        "the request in flight is not failed"
    );
    cluster.broker_round_trip_time(1, Duration::ZERO).unwrap();
    assert_eq!(with_token("old-secret").await.status, 401);
    assert_eq!(with_token("new-secret").await.status, 202);
    assert_eq!(
        http::post(&r_url).body("{}").send().await.unwrap().status,
        429,
        "limiter state kept"
    );

    // An invalid config is refused with its problem; the running one stays.
    let good = std::fs::read_to_string(&gw.config_path).unwrap();
    std::fs::write(
        &gw.config_path,
        good.replace("topic = \"reload\"", "topic = \"bad topic\""),
    )
    .unwrap();
    let r = reload(&gw, "admin-token").await;
    assert_eq!(r.status, 422);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("hooks[0].topic"),
        "{:?}",
        r.body
    );
    assert_eq!(with_token("new-secret").await.status, 202);

    // A new listen address needs a restart.
    std::fs::write(
        &gw.config_path,
        good.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\""),
    )
    .unwrap();
    let r = reload(&gw, "admin-token").await;
    assert_eq!(r.status, 409);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("server.listen"),
        "{:?}",
        r.body
    );
    assert_eq!(with_token("new-secret").await.status, 202);

    let metrics = String::from_utf8_lossy(
        &http::get(&format!("{}/metrics", gw.admin_url))
            .await
            .unwrap()
            .body,
    )
    .to_string();
    assert!(
        metrics.contains("hookgate_config_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hookgate_config_reloads_total{result=\"rejected\"} 2"),
        "{metrics}"
    );
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reload_endpoint_is_off_without_a_token() {
    let gw = GatewayBuilder::new()
        .brokers("unused:9092")
        .null_sink()
        .hook("id = \"o\"\ntopic = \"t\"\nauth = { scheme = \"none\" }")
        .start()
        .await;
    let r = reload(&gw, "anything").await;
    assert_eq!(r.status, 404);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("admin.reload_token"));
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_rotation_keeps_replay_protection_and_claims_in_flight() {
    use crate::support::hmac_sha256_hex;
    let cluster = mock_cluster(&["rotate"]);
    let hook = |secrets: &str, window: &str| {
        format!("id = \"gh\"\ntopic = \"rotate\"\nauth = {{ scheme = \"hmac\", preset = \"github\", secrets = [{secrets}]{window} }}")
    };
    let gw = GatewayBuilder::new()
        .brokers(&cluster.bootstrap_servers())
        .admin("reload_token = { value = \"admin-token\" }")
        .hook(&hook("{ value = \"old\" }", ""))
        .start()
        .await;
    let url = gw.hook_url("/hooks/gh");
    let deliver = |secret: &'static str, delivery: &'static str| {
        let url = url.clone();
        async move {
            let body = format!("{{\"delivery\":\"{delivery}\"}}");
            http::post(&url)
                .content_type("application/json")
                .header("x-github-delivery", delivery)
                .header(
                    "x-hub-signature-256",
                    &format!("sha256={}", hmac_sha256_hex(secret, body.as_bytes())),
                )
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let first = deliver("old", "d-A").await;
    assert_eq!(first.status, 202);

    // A delivery still waiting for its ack while the secret rotates.
    cluster
        .broker_round_trip_time(1, Duration::from_millis(800))
        .unwrap();
    let in_flight = tokio::spawn(deliver("old", "d-B"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    let rotated = text.replace(
        "{ value = \"old\" }",
        "{ value = \"new\" }, { value = \"old\" }",
    );
    assert_ne!(rotated, text);
    std::fs::write(&gw.config_path, &rotated).unwrap();
    let r = reload(&gw, "admin-token").await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // The provider retries both deliveries, now signed with the new secret.
    let retried_b = deliver("new", "d-B").await;
    let b = in_flight.await.unwrap();
    assert_eq!(b.status, 202);
    assert_eq!(
        retried_b.event_id(),
        b.event_id(),
        "the retry waited for the claim made before the reload"
    );
    cluster.broker_round_trip_time(1, Duration::ZERO).unwrap();
    let again = deliver("new", "d-A").await;
    assert_eq!(again.status, 202);
    assert_eq!(
        again.event_id(),
        first.event_id(),
        "a delivery accepted before the reload is still a duplicate after it"
    );
    assert_eq!(r.json()["kept_replay"], 1);

    // A new replay window is a new guard: nothing to carry over.
    std::fs::write(
        &gw.config_path,
        rotated.replace(
            "{ value = \"old\" }] }",
            "{ value = \"old\" }], dedupe_window = \"2h\" }",
        ),
    )
    .unwrap();
    let r = reload(&gw, "admin-token").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["kept_replay"], 0);
    let fresh = deliver("new", "d-A").await;
    assert_eq!(fresh.status, 202);
    assert_ne!(fresh.event_id(), first.event_id());
    gw.stop().await.unwrap();
}
