//! Traces over OTLP: a request carrying the sender's `traceparent` is followed through the
//! gateway (`hookgate.request` with `auth`, `produce` and `ack wait`), the event, the
//! consumer (`hookgate.flow` and its `hookgate.task`) and into the flow's outbound call,
//! all under the sender's trace id. The collector is a local server that decodes the
//! OTLP/HTTP protobuf it is sent.

use std::collections::HashMap;
use std::time::Duration;

use hookgate_testkit::server::{json_reply, TestServer};
use hookgate_testkit::wait_until;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;

use crate::support::{http, topic, GatewayBuilder, RunningConsumer};

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct Received {
    scope: String,
    name: String,
    trace: String,
    span: String,
    parent: String,
    kind: i32,
    attributes: HashMap<String, String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every span the collector was sent, decoded.
fn received(collector: &TestServer) -> Vec<Received> {
    let mut out = Vec::new();
    for request in collector.seen() {
        assert_eq!(request.target, "/v1/traces");
        assert_eq!(
            request.header("content-type"),
            Some("application/x-protobuf")
        );
        let export = ExportTraceServiceRequest::decode(request.body.as_ref())
            .expect("an OTLP ExportTraceServiceRequest");
        for resource in export.resource_spans {
            for scope in resource.scope_spans {
                let name = scope.scope.map(|s| s.name).unwrap_or_default();
                for span in scope.spans {
                    out.push(Received {
                        scope: name.clone(),
                        name: span.name,
                        trace: hex(&span.trace_id),
                        span: hex(&span.span_id),
                        parent: hex(&span.parent_span_id),
                        kind: span.kind,
                        attributes: span
                            .attributes
                            .into_iter()
                            .map(|kv| {
                                let value = kv
                                    .value
                                    .and_then(|v| v.value)
                                    .map(|v| format!("{v:?}"))
                                    .unwrap_or_default();
                                (kv.key, value)
                            })
                            .collect(),
                    });
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn one_trace_runs_from_the_sender_through_the_gateway_and_the_flow_to_the_api() {
    let collector = TestServer::start(|_| json_reply(200, &serde_json::json!({}))).await;
    let api = TestServer::start(|_| json_reply(201, &serde_json::json!({"ok": true}))).await;
    let events = topic("traced");
    let telemetry = format!(
        "[telemetry]\notlp_endpoint = \"http://127.0.0.1:{}\"",
        collector.port()
    );
    let gw = GatewayBuilder::tansu()
        .table(&telemetry)
        .hook(&format!(
            "id = \"orders\"\ntopic = \"{events}\"\nauth = {{ scheme = \"none\" }}"
        ))
        .start()
        .await;
    let flows = format!(
        "[[flows]]\nid = \"forward\"\nnamespace = \"shop\"\ntrigger = {{ hooks = [\"orders\"] }}\n\
         [[flows.tasks]]\nid = \"call\"\ntype = \"http\"\nmethod = \"POST\"\nuri = \"{}\"\n\
         body = {{ order = \"{{{{ trigger.body.order }}}}\" }}\n",
        api.url("/orders")
    );
    let (_, mut config, env) = crate::flows::consumer_config(&api, &[&events], &flows, None).await;
    config.telemetry.otlp_endpoint = format!("http://127.0.0.1:{}", collector.port());
    let consumer = RunningConsumer::start(config.build(&env, "traced consumer").unwrap());

    let sender_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let sender_span = "00f067aa0ba902b7";
    let reply = http::post(&gw.hook_url("/hooks/orders"))
        .header(
            "traceparent",
            &format!("00-{sender_trace}-{sender_span}-01"),
        )
        .json(&serde_json::json!({"order": 7}))
        .send()
        .await
        .unwrap();
    let event_id = reply.event_id();

    wait_until("the API call", Duration::from_secs(30), || async {
        api.hits() >= 1
    })
    .await;
    // Batches leave every half second.
    wait_until("the spans", Duration::from_secs(15), || async {
        let spans = received(&collector);
        [
            "hookgate.request",
            "auth",
            "produce",
            "ack wait",
            "hookgate.flow",
            "hookgate.task",
        ]
        .iter()
        .all(|n| spans.iter().any(|s| s.name == *n))
    })
    .await;
    let spans = received(&collector);
    let by_name = |name: &str| {
        let found: Vec<&Received> = spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one {name} span: {spans:#?}");
        found[0].clone()
    };
    for s in &spans {
        assert_eq!(
            s.trace, sender_trace,
            "every span is in the sender's trace: {s:?}"
        );
    }
    let request = by_name("hookgate.request");
    assert_eq!(request.scope, "hookgate-gateway");
    assert_eq!(
        request.parent, sender_span,
        "the sender's span is the parent"
    );
    assert_eq!(request.kind, SpanKind::Server as i32);
    assert!(request.attributes["hookgate.hook"].contains("orders"));
    assert!(request.attributes["hookgate.event_id"].contains(&event_id));
    assert!(request.attributes["http.response.status_code"].contains("202"));
    for phase in ["auth", "produce", "ack wait"] {
        assert_eq!(
            by_name(phase).parent,
            request.span,
            "{phase} is the request's"
        );
    }
    let flow = by_name("hookgate.flow");
    assert_eq!(flow.scope, "hookgate-consumer");
    assert_eq!(
        flow.parent, request.span,
        "the flow continues the gateway's span"
    );
    assert_eq!(flow.kind, SpanKind::Consumer as i32);
    assert!(flow.attributes["hookgate.flow"].contains("shop.forward"));
    assert!(flow.attributes["hookgate.state"].contains("success"));
    let task = by_name("hookgate.task");
    assert_eq!(task.parent, flow.span);
    assert_eq!(task.kind, SpanKind::Client as i32);
    assert!(task.attributes["http.response.status_code"].contains("201"));

    // The API saw the task's span as its parent, in the sender's trace.
    let called = &api.seen()[0];
    assert_eq!(
        called.header("traceparent"),
        Some(format!("00-{sender_trace}-{}-01", task.span).as_str())
    );

    // A trace the sender did not sample is passed on (the event and the API call carry
    // it) but not exported; a request without a `traceparent` starts a trace (the
    // ratio is 1) that the flow continues.
    let unsampled = "11112222333344445555666677778888";
    http::post(&gw.hook_url("/hooks/orders"))
        .header("traceparent", &format!("00-{unsampled}-{sender_span}-00"))
        .json(&serde_json::json!({"order": 8}))
        .send()
        .await
        .unwrap()
        .event_id();
    http::post(&gw.hook_url("/hooks/orders"))
        .json(&serde_json::json!({"order": 9}))
        .send()
        .await
        .unwrap()
        .event_id();
    wait_until("three API calls", Duration::from_secs(30), || async {
        api.hits() >= 3
    })
    .await;
    wait_until("the new trace's spans", Duration::from_secs(15), || async {
        received(&collector)
            .iter()
            .filter(|s| s.trace != sender_trace)
            .any(|s| s.name == "hookgate.task")
    })
    .await;
    let spans = received(&collector);
    assert!(
        spans.iter().all(|s| s.trace != unsampled),
        "an unsampled trace is not exported: {spans:#?}"
    );
    let by_api = |order: &str| {
        api.seen()
            .into_iter()
            .find(|c| {
                let body: serde_json::Value = serde_json::from_slice(&c.body).unwrap_or_default();
                body["order"].to_string().trim_matches('"') == order
            })
            .and_then(|c| c.header("traceparent").map(str::to_string))
            .unwrap_or_default()
    };
    let passed_on = by_api("8");
    assert!(
        passed_on.starts_with(&format!("00-{unsampled}-")) && passed_on.ends_with("-00"),
        "{passed_on}"
    );
    let new: Vec<&Received> = spans.iter().filter(|s| s.trace != sender_trace).collect();
    let root = new
        .iter()
        .find(|s| s.name == "hookgate.request")
        .expect("the new trace's request span");
    assert_eq!(root.parent, "", "a request without a traceparent is a root");
    let flow = new.iter().find(|s| s.name == "hookgate.flow").unwrap();
    assert_eq!(flow.parent, root.span, "the flow continues the new trace");
    assert!(by_api("9").starts_with(&format!("00-{}-", root.trace)));
    consumer.stop().await.unwrap();
    gw.stop().await.unwrap();
}
