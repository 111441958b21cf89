//! Synchronous hooks end to end: a request into the gateway, its event through the real
//! broker, the flow consumer and the local stand-in APIs, and the flow's answer back to
//! the caller through the executions topic. The war-room scenario answers with the
//! ticket number and the channel id; no matching flow is 204; a failed task is the
//! flow's error answer; a timeout is 202 with where to poll; two replicas are each
//! woken by what they read from Kafka; a consumer that was down answers once it runs,
//! and one that crashes mid-run is replaced by one that runs the flow again.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::flows::{api_calls, api_reply, apis_with, consumer_config};
use crate::support::{
    brokers, http, metric, topic, GatewayBuilder, RunningConsumer, RunningGateway,
};

const SCENARIOS: &str = include_str!("../../config/flows/scenarios.toml");

async fn alert(gw: &RunningGateway, cpu: &str) -> http::Reply {
    http::post(&gw.hook_url("/hooks/alerts/k3y"))
        .content_type("application/x-www-form-urlencoded")
        .body(format!("cpu={cpu}&host=web-1"))
        .send()
        .await
        .unwrap()
}

/// A gateway whose `alerts` hook is synchronous, reading answers from `executions`.
async fn gateway(alerts: &str, executions: &str, timeout: &str) -> RunningGateway {
    gateway_with(alerts, executions, timeout, "").await
}

/// [`gateway`], with more lines in the hook's table.
async fn gateway_with(alerts: &str, executions: &str, timeout: &str, more: &str) -> RunningGateway {
    GatewayBuilder::tansu()
        .kafka("partitions = 1")
        .replies(&format!("topic = \"{executions}\""))
        .hook(&format!(
            "id = \"alerts\"\ntopic = \"{alerts}\"\n\
             auth = {{ scheme = \"url_key\", secrets = [{{ value = \"k3y\" }}] }}\n\
             respond = {{ with = \"flow\", timeout = \"{timeout}\" }}\n{more}"
        ))
        .start()
        .await
}

/// Polls `GET /executions/{id}/k3y` until it is no longer 202.
async fn poll(gw: &RunningGateway, id: &str) -> http::Reply {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = http::get(&gw.hook_url(&format!("/executions/{id}/k3y")))
            .await
            .unwrap();
        if reply.status != 202 || Instant::now() > deadline {
            return reply;
        }
        assert_eq!(
            reply.header("location"),
            Some(&*format!("/executions/{id}"))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_synchronous_hook_answers_with_the_flows_outputs_204_or_its_error() {
    let alerts = topic("alerts-sync");
    let pager_refuses = Arc::new(AtomicBool::new(false));
    let server = apis_with(pager_refuses.clone()).await;
    let (executions, config, env) = consumer_config(&server, &[&alerts], SCENARIOS, None).await;
    // The gateway first: it creates the hook's topic the consumer subscribes to.
    let gw = gateway(&alerts, &executions, "20s").await;
    let consumer = RunningConsumer::start(config.build(&env, "test consumer").unwrap());

    let started = Instant::now();
    let answer = alert(&gw, "0.93").await;
    let took = started.elapsed();
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(
        answer.json(),
        json!({"ticket": "INC0012042", "channel": "C7702", "host": "web-1"})
    );
    assert_eq!(answer.header("content-type"), Some("application/json"));
    eprintln!("synchronous war room answered in {took:?}");

    // Below the threshold no flow runs: 204, as Kestra answers.
    let quiet = alert(&gw, "0.2").await;
    assert_eq!(quiet.status, 204, "{:?}", quiet.body);
    assert!(quiet.body.is_empty());

    // PagerDuty refuses: the flow's error answer, naming the task.
    pager_refuses.store(true, std::sync::atomic::Ordering::SeqCst);
    let failed = alert(&gw, "0.95").await;
    assert_eq!(failed.status, 502, "{:?}", failed.body);
    assert_eq!(
        failed.json(),
        json!({"error": "the war room could not be opened", "task": "page"})
    );

    consumer.stop().await.unwrap();
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_answers_202_with_where_to_poll_and_the_poll_gives_the_answer() {
    let alerts = topic("alerts-poll");
    let server = apis_with(Arc::new(AtomicBool::new(false))).await;
    let (executions, config, env) = consumer_config(&server, &[&alerts], SCENARIOS, None).await;
    let settings = config.build(&env, "test consumer").unwrap();
    // The consumer is down when the request comes: no answer can come in time.
    let gw = gateway(&alerts, &executions, "300ms").await;
    let pending = alert(&gw, "0.91").await;
    assert_eq!(pending.status, 202, "{:?}", pending.body);
    let id = pending.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        pending.header("location"),
        Some(&*format!("/executions/{id}"))
    );
    assert_eq!(pending.json()["state"], "RUNNING");

    // Still running: 202 again. The wrong key, an unknown id: 404.
    let again = http::get(&gw.hook_url(&format!("/executions/{id}/k3y")))
        .await
        .unwrap();
    assert_eq!(again.status, 202);
    let wrong = http::get(&gw.hook_url(&format!("/executions/{id}/nope")))
        .await
        .unwrap();
    assert_eq!(wrong.status, 404);
    let unknown = http::get(&gw.hook_url(&format!("/executions/{}/k3y", uuid::Uuid::now_v7())))
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);

    // The consumer starts and runs the flow at least once; the poll finds the answer.
    let consumer = RunningConsumer::start(settings);
    let done = poll(&gw, &id).await;
    assert_eq!(done.status, 201, "{:?}", done.body);
    assert_eq!(done.json()["ticket"], "INC0012042");

    consumer.stop().await.unwrap();
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_are_each_answered_from_kafka_and_either_answers_a_poll() {
    let alerts = topic("alerts-fleet");
    let server = apis_with(Arc::new(AtomicBool::new(false))).await;
    let (executions, config, env) = consumer_config(&server, &[&alerts], SCENARIOS, None).await;
    let a = gateway(&alerts, &executions, "20s").await;
    let b = gateway(&alerts, &executions, "20s").await;
    let consumer = RunningConsumer::start(config.build(&env, "test consumer").unwrap());

    for gw in [&a, &b, &a, &b] {
        let answer = alert(gw, "0.97").await;
        assert_eq!(answer.status, 201, "{:?}", answer.body);
        assert_eq!(answer.json()["channel"], "C7702");
    }
    // Replica `b` never saw this request: it reads the answer back from the executions
    // topic.
    let first = alert(&a, "0.99").await;
    assert_eq!(first.status, 201);
    let events = hookgate_testkit::kafka::read_n(&brokers(), &alerts, 5);
    let id = events[4].event().id;
    let elsewhere = poll(&b, &id).await;
    assert_eq!(elsewhere.status, 201, "{:?}", elsewhere.body);
    assert_eq!(elsewhere.json(), first.json());

    consumer.stop().await.unwrap();
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_synchronous_request_gets_the_first_answer_and_publishes_nothing() {
    let alerts = topic("alerts-idem");
    let server = apis_with(Arc::new(AtomicBool::new(false))).await;
    let (executions, config, env) = consumer_config(&server, &[&alerts], SCENARIOS, None).await;
    let gw = gateway_with(
        &alerts,
        &executions,
        "20s",
        "idempotency = { header = \"Idempotency-Key\", window = \"1h\" }",
    )
    .await;
    let consumer = RunningConsumer::start(config.build(&env, "test consumer").unwrap());
    let send = |key: &'static str| {
        http::post(&gw.hook_url("/hooks/alerts/k3y"))
            .content_type("application/x-www-form-urlencoded")
            .header("idempotency-key", key)
            .body("cpu=0.93&host=web-1")
            .send()
    };
    let first = send("incident-77").await.unwrap();
    assert_eq!(first.status, 201, "{:?}", first.body);
    let calls = api_calls(&server).len();
    let again = send("incident-77").await.unwrap();
    assert_eq!(again.status, 201);
    assert_eq!(again.json(), first.json());
    // Another key runs the flow again; the repeat did not.
    let other = send("incident-78").await.unwrap();
    assert_eq!(other.status, 201);
    let events =
        hookgate_testkit::kafka::read_until(&brokers(), &alerts, Duration::from_secs(3), |read| {
            read.len() > 2
        });
    assert_eq!(events.len(), 2, "the repeat published nothing");
    assert_eq!(
        api_calls(&server).len(),
        calls * 2,
        "the repeat made no calls"
    );

    consumer.stop().await.unwrap();
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_that_crashes_mid_run_is_replaced_and_the_poll_finds_the_answer() {
    let alerts = topic("alerts-crash");
    // The first ticket request hangs far longer than the test: only a run started by
    // the replacement consumer can answer in time.
    let first_ticket = Arc::new(AtomicBool::new(true));
    let hang = first_ticket.clone();
    let server = hookgate_testkit::server::TestServer::start(move |seen| {
        let reply = api_reply(seen, &AtomicBool::new(false));
        if seen.target.ends_with("/api/now/table/incident")
            && hang.swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return hookgate_testkit::server::delayed(reply, Duration::from_secs(120));
        }
        reply
    })
    .await;
    let (executions, config, env) = consumer_config(&server, &[&alerts], SCENARIOS, None).await;
    let gw = gateway(&alerts, &executions, "300ms").await;
    let first = RunningConsumer::start(config.build(&env, "test consumer").unwrap());

    let pending = alert(&gw, "0.92").await;
    assert_eq!(pending.status, 202, "{:?}", pending.body);
    let id = pending.json()["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let ticket_sent = || {
        server
            .seen()
            .iter()
            .any(|s| s.target.ends_with("/api/now/table/incident"))
    };
    while !ticket_sent() {
        assert!(
            Instant::now() < deadline,
            "the run never reached the ticket API"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Mid-run: the ticket request is out. The consumer dies.
    first.abort().await;
    let second = RunningConsumer::start(config.build(&env, "test consumer").unwrap());

    let done = poll(&gw, &id).await;
    assert_eq!(done.status, 201, "{:?}", done.body);
    assert_eq!(done.json()["ticket"], "INC0012042");
    assert!(!first_ticket.load(std::sync::atomic::Ordering::SeqCst));

    second.stop().await.unwrap();
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn polls_are_charged_to_the_hooks_rate_limit_and_counted() {
    // No consumer: the request is answered 202 and stays running.
    // A hook id of its own: counters are per process when tests share one.
    let gw = GatewayBuilder::tansu()
        .kafka("partitions = 1")
        .replies(&format!("topic = \"{}\"", topic("executions-polls")))
        .hook(&format!(
            "id = \"polled\"\ntopic = \"{}\"\nauth = {{ scheme = \"url_key\", secrets = [{{ value = \"k3y\" }}] }}\n\
             respond = {{ with = \"flow\", timeout = \"200ms\" }}\n\
             rate_limit = {{ per_second = 0.1, burst = 3 }}",
            topic("alerts-polls")
        ))
        .start()
        .await;
    let pending = http::post(&gw.hook_url("/hooks/polled/k3y"))
        .content_type("application/x-www-form-urlencoded")
        .body("cpu=0.9&host=web-1")
        .send()
        .await
        .unwrap();
    assert_eq!(pending.status, 202);
    assert_eq!(pending.header("retry-after"), Some("1"));
    let id = pending.json()["id"].as_str().unwrap().to_string();
    let url = gw.hook_url(&format!("/executions/{id}/k3y"));
    for _ in 0..2 {
        let poll = http::get(&url).await.unwrap();
        assert_eq!(poll.status, 202);
        assert_eq!(poll.header("retry-after"), Some("1"));
    }
    // The request and two polls spent the burst of 3.
    let limited = http::get(&url).await.unwrap();
    assert_eq!(limited.status, 429);
    assert!(limited.header("retry-after").is_some());
    // A poll is not a webhook: POST is refused.
    let wrong_method = http::post(&url).send().await.unwrap();
    assert_eq!(wrong_method.status, 405);
    let polled = metric(
        &gw.admin_url,
        "hookgate_requests_total{hook=\"polled\",outcome=\"polled\"}",
    )
    .await;
    assert_eq!(polled, Some(2.0));
    gw.stop().await.unwrap();
}
