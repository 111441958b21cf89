//! Broker outages, on librdkafka's mock cluster: while the broker is down every request
//! gets a 503 with `Retry-After` within the ack timeout, never a 202; once it is back
//! requests succeed again; and every 202 given has its event on the topic.

use std::time::{Duration, Instant};

use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::support::{
    http, kafka, metric_until, mock_cluster, Cluster, GatewayBuilder, RunningGateway,
};

/// A mock cluster with one topic and a gateway publishing to it through hook `h`.
async fn mock_gateway(topic: &str, ack_timeout: &str) -> (Cluster, RunningGateway) {
    mock_gateway_with(topic, ack_timeout, |b| b).await
}

/// [`mock_gateway`], with `more` adding to the gateway's config.
async fn mock_gateway_with(
    topic: &str,
    ack_timeout: &str,
    more: impl FnOnce(GatewayBuilder) -> GatewayBuilder,
) -> (Cluster, RunningGateway) {
    let cluster = mock_cluster(&[topic]);
    let builder = GatewayBuilder::new()
        .brokers(&cluster.bootstrap_servers())
        .hook(&format!(
            "id = \"h\"\ntopic = \"{topic}\"\nack_timeout = \"{ack_timeout}\"\nauth = {{ scheme = \"none\" }}"
        ));
    let gw = more(builder).start().await;
    (cluster, gw)
}

#[tokio::test(flavor = "multi_thread")]
async fn outage_answers_503_then_recovers_and_loses_nothing_acknowledged() {
    let (cluster, gw) = mock_gateway("outage", "1s").await;
    let bootstrap = cluster.bootstrap_servers();
    let url = gw.hook_url("/hooks/h");
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
            took < Duration::from_millis(2500),
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
    let (cluster, gw) = mock_gateway_with("queue", "3s", |b| {
        b.kafka("properties = { \"queue.buffering.max.messages\" = 2 }")
    })
    .await;
    cluster.broker_down(1).unwrap();
    let url = gw.hook_url("/hooks/h");
    // Two requests fill the queue and wait for their acks; the third finds it full.
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { http::post(&url).body("{}").send().await.unwrap() })
        })
        .collect();
    metric_until(
        &gw.admin_url,
        "hookgate_kafka_producer_queue_messages",
        |n| n >= 2.0,
    )
    .await;
    let started = Instant::now();
    let r = http::post(&url).body("{}").send().await.unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        started.elapsed() < Duration::from_millis(1000),
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

#[tokio::test(flavor = "multi_thread")]
async fn a_fatal_producer_error_is_survived_with_a_new_producer() {
    let (cluster, gw) = mock_gateway("fatal", "2s").await;
    let url = gw.hook_url("/hooks/h");
    let mut acknowledged = vec![http::post(&url).body("{}").send().await.unwrap().event_id()];
    // An out-of-order sequence is fatal for an idempotent producer: librdkafka refuses
    // every later message from it.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
    );
    let r = http::post(&url).body("{}").send().await.unwrap();
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.header("retry-after"), Some("1"));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = http::post(&url).body("{}").send().await.unwrap();
        if r.status == 202 {
            acknowledged.push(r.event_id());
            break;
        }
        assert_eq!(r.status, 503);
        assert!(
            Instant::now() < deadline,
            "the gateway did not recover from the fatal error"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = http::get(&format!("{}/metrics", gw.admin_url))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.lines()
            .any(|l| l.starts_with("hookgate_kafka_producer_replaced_total") && !l.ends_with(" 0")),
        "the producer was replaced:\n{text}"
    );
    let on_topic = kafka::ids_until(
        &cluster.bootstrap_servers(),
        "fatal",
        acknowledged.last().unwrap(),
    );
    for id in &acknowledged {
        assert!(
            on_topic.contains(id),
            "{id} acknowledged but not on the topic"
        );
    }
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fenced_producer_is_replaced_and_its_refused_record_sent_again() {
    let (cluster, gw) = mock_gateway("fenced", "2s").await;
    let url = gw.hook_url("/hooks/h");
    assert_eq!(
        http::post(&url).body("{}").send().await.unwrap().status,
        202
    );
    // Replacements counted so far (by any gateway of this test process).
    let replaced = || async {
        let metrics = http::get(&format!("{}/metrics", gw.admin_url))
            .await
            .unwrap();
        String::from_utf8_lossy(&metrics.body)
            .lines()
            .find_map(|l| l.strip_prefix("hookgate_kafka_producer_replaced_total "))
            .map_or(0, |n| n.trim().parse::<u64>().unwrap())
    };
    let before = replaced().await;
    // The broker gave this producer's id to a newer producer: it refuses everything the
    // old one sends, and librdkafka does not treat that as fatal.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED],
    );
    // The refused record was not stored: it goes again on the new producer, and the
    // sender gets its 202 within the ack timeout rather than a 503.
    let r = http::post(&url)
        .body("{\"fenced\":true}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 202, "{:?}", r.body);
    let fenced = r.event_id();
    assert!(
        replaced().await > before,
        "the fenced producer was replaced"
    );
    let r = http::post(&url).body("{}").send().await.unwrap();
    assert_eq!(r.status, 202, "the new producer publishes: {:?}", r.body);
    let on_topic = kafka::ids_until(&cluster.bootstrap_servers(), "fenced", &r.event_id());
    assert_eq!(
        on_topic.iter().filter(|id| **id == fenced).count(),
        1,
        "the resent record is stored once: {on_topic:?}"
    );
    gw.stop().await.unwrap();
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_broker_refusals_are_not_retryable_and_turn_readiness_red() {
    let (cluster, gw) = mock_gateway("refused", "2s").await;
    let url = gw.hook_url("/hooks/h");
    let readyz = format!("{}/readyz", gw.admin_url);
    assert_eq!(http::get(&readyz).await.unwrap().status, 200);

    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    let r = http::post(&url).body("{}").send().await.unwrap();
    assert_eq!(r.status, 500, "{:?}", r.body);
    assert!(r.header("retry-after").is_none(), "no invitation to retry");
    assert!(
        !String::from_utf8_lossy(&r.body).contains("AUTHORIZATION"),
        "terse body"
    );
    let ready = http::get(&readyz).await.unwrap();
    assert_eq!(ready.status, 503);
    assert!(ready.json()["reasons"][0]
        .as_str()
        .unwrap()
        .contains("permanent"));
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_the_broker_finds_too_large_is_413() {
    let (cluster, gw) = mock_gateway("large", "2s").await;
    let url = gw.hook_url("/hooks/h");
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let r = http::post(&url).body("{}").send().await.unwrap();
    assert_eq!(r.status, 413, "{:?}", r.body);
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_drains_in_flight_requests_then_stops_accepting() {
    let (cluster, gw) = mock_gateway("drain", "20s").await;
    // Every request to the broker takes 400 ms more: the produce is still in flight when
    // shutdown begins.
    cluster
        .broker_round_trip_time(1, Duration::from_millis(400))
        .unwrap();
    let url = gw.hook_url("/hooks/h");
    let in_flight = tokio::spawn({
        let url = url.clone();
        async move {
            http::post(&url)
                .body("{\"late\":true}")
                .send()
                .await
                .unwrap()
        }
    });
    metric_until(&gw.admin_url, "hookgate_in_flight_requests", |n| n == 1.0).await;
    let base = gw.url.clone();
    let stopped = tokio::spawn(gw.stop());
    let reply = in_flight.await.unwrap();
    assert_eq!(
        reply.status, 202,
        "the in-flight request completes during shutdown"
    );
    stopped.await.unwrap().unwrap();
    assert!(
        http::post(&format!("{base}/hooks/h")).send().await.is_err(),
        "no longer accepting"
    );
    let id = reply.event_id();
    cluster.broker_round_trip_time(1, Duration::ZERO).unwrap();
    let on_topic = kafka::ids_until(&cluster.bootstrap_servers(), "drain", &id);
    assert!(on_topic.contains(&id));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_awaiting_its_acknowledgement_holds_none_of_its_body() {
    use bytes::Bytes;
    use hookgate_common::config::{Environment, Source};
    use hookgate_gateway::config::Config;
    use hookgate_gateway::pipeline::{Gateway, Limits, Live};
    use hookgate_gateway::sink::{KafkaSink, Sink};
    use http_body_util::Full;

    let cluster = mock_cluster(&["held"]);
    let env = Environment::default();
    let source = Source::Text {
        name: "held".into(),
        toml: format!(
            "[kafka]\nbrokers = \"{}\"\n[[hooks]]\nid = \"h\"\ntopic = \"held\"\nack_timeout = \"20s\"\nauth = {{ scheme = \"none\" }}",
            cluster.bootstrap_servers()
        ),
    };
    let settings = Config::load(&source, &env)
        .unwrap()
        .build(&env, "held")
        .unwrap();
    let sink = KafkaSink::new(&settings.kafka, std::sync::Arc::new(Default::default())).unwrap();
    let limits = Limits {
        max_in_flight: 16,
        body_read_timeout: Duration::from_secs(5),
        max_record_bytes: 1 << 20,
    };
    let gateway = std::sync::Arc::new(Gateway::new(
        Live::new(settings.hooks, Default::default()),
        Sink::Kafka(sink),
        limits,
    ));

    cluster.broker_down(1).unwrap();
    let body = Bytes::from(format!("{{\"pad\":\"{}\"}}", "x".repeat(4096)));
    let mine = body.clone();
    let request = ::http::Request::post("/hooks/h")
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap();
    let handling = tokio::spawn({
        let gateway = gateway.clone();
        async move { gateway.handle(request, None).await.status() }
    });
    // The event is with the producer, waiting for a broker that is down.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !mine.is_unique() {
        assert!(
            Instant::now() < deadline,
            "the request still holds its body while it awaits the broker"
        );
        assert!(
            !handling.is_finished(),
            "answered before the broker came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!handling.is_finished());
    cluster.broker_up(1).unwrap();
    assert_eq!(handling.await.unwrap(), 202);
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_in_flight_limit_a_request_is_shed_with_503_and_the_admitted_one_goes_on() {
    let (cluster, gw) = mock_gateway_with("full", "20s", |b| b.server("max_in_flight = 1")).await;
    let bootstrap = cluster.bootstrap_servers();
    let url = gw.hook_url("/hooks/h");
    cluster.broker_down(1).unwrap();
    // Takes the only slot and waits for a broker that is down.
    let admitted = tokio::spawn({
        let url = url.clone();
        async move { http::post(&url).body("{\"n\":1}").send().await.unwrap() }
    });
    metric_until(&gw.admin_url, "hookgate_in_flight_requests", |n| n == 1.0).await;
    // A connection that sends nothing is left unread while the gateway is full, and
    // shows on the gauge.
    let idle = tokio::net::TcpStream::connect(
        url.trim_start_matches("http://").split('/').next().unwrap(),
    )
    .await
    .unwrap();
    metric_until(&gw.admin_url, "hookgate_paused_connections", |n| n >= 1.0).await;
    let started = Instant::now();
    let shed = http::post(&url).body("{\"n\":2}").send().await.unwrap();
    assert_eq!(shed.status, 503, "{:?}", shed.body);
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shed after {:?}",
        started.elapsed()
    );
    assert!(
        !admitted.is_finished(),
        "the admitted request was answered early"
    );
    cluster.broker_up(1).unwrap();
    let admitted = admitted.await.unwrap();
    assert_eq!(admitted.status, 202, "{:?}", admitted.body);
    // With a slot free again, nothing is paused.
    metric_until(&gw.admin_url, "hookgate_paused_connections", |n| n == 0.0).await;
    drop(idle);
    let id = admitted.event_id();
    assert!(kafka::ids_until(&bootstrap, "full", &id).contains(&id));
    gw.stop().await.unwrap();
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_default_settings_202s_return_soon_after_a_long_outage() {
    // The hook and gateway as a user would write them: no producer properties set.
    let (cluster, gw) = mock_gateway("recovery", "2s").await;
    let url = gw.hook_url("/hooks/h");
    assert_eq!(
        http::post(&url).body("{}").send().await.unwrap().status,
        202
    );
    cluster.broker_down(1).unwrap();
    // Long enough for librdkafka's reconnect backoff to grow to its maximum.
    let outage_end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < outage_end {
        let r = http::post(&url).body("{}").send().await.unwrap();
        assert_eq!(r.status, 503);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    cluster.broker_up(1).unwrap();
    let back = Instant::now();
    let recovered = loop {
        let r = http::post(&url).body("{}").send().await.unwrap();
        if r.status == 202 {
            break back.elapsed();
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "no 202 within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("first 202 {recovered:?} after the broker came back");
    // docs/reliability.md: 2xx again within about a second of the broker's return.
    assert!(
        recovered < Duration::from_millis(2500),
        "first 202 only {recovered:?} after the broker came back"
    );
    gw.stop().await.unwrap();
    drop(cluster);
}
