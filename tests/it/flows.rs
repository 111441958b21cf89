//! The three shipped flows end to end: a webhook into the gateway, its event through the
//! real broker, the flow consumer, and the calls a local server (standing in for the
//! messaging, BI, ticketing, chat and paging APIs) receives, in order, with the outputs
//! of one call in the next.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookgate_common::config::Environment;
use hookgate_common::config::Source;
use hookgate_consumer::config::{ConsumerConfig, FlowsFile};
use hookgate_testkit::server::{Reply, Seen, TestServer};
use serde_json::{json, Value};

use crate::support::{brokers, http, topic, GatewayBuilder, RunningConsumer};

fn reply(status: u16, body: Value) -> Reply {
    ::http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap()
}

fn text_reply(status: u16, text: &str) -> Reply {
    ::http::Response::builder()
        .status(status)
        .header("content-type", "text/html")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            text.to_string(),
        )))
        .unwrap()
}

/// The APIs, answering in the vendors' shapes what the flows chain on: Slack incoming
/// webhooks, Tableau's sign-in and tags, ServiceNow's OAuth token endpoint and Table API,
/// Slack's Web API and PagerDuty's Events API v2.
async fn apis() -> TestServer {
    apis_with(Arc::new(AtomicBool::new(false))).await
}

/// [`apis`], with PagerDuty refusing every event (its 400) while `pager_refuses` is set.
pub(crate) async fn apis_with(pager_refuses: Arc<AtomicBool>) -> TestServer {
    TestServer::start(move |seen: &Seen| api_reply(seen, &pager_refuses)).await
}

/// The access token ServiceNow's stand-in token endpoint hands out.
pub(crate) const TICKETS_ACCESS_TOKEN: &str = "sn-access-5d1f0c";

/// The calls a stand-in received other than token requests: the ones flows made.
pub(crate) fn api_calls(server: &TestServer) -> Vec<Seen> {
    server
        .seen()
        .into_iter()
        .filter(|s| !s.target.ends_with("/oauth_token.do"))
        .collect()
}

/// What the stand-in APIs of [`apis_with`] answer to `seen`.
pub(crate) fn api_reply(seen: &Seen, pager_refuses: &AtomicBool) -> Reply {
    {
        let path = seen.target.split('?').next().unwrap_or("");
        if path.ends_with("/oauth_token.do") {
            // The client credentials grant, client authenticated in the body.
            let form: Vec<(String, String)> =
                form_urlencoded::parse(&seen.body).into_owned().collect();
            let has = |k: &str, v: &str| form.iter().any(|(a, b)| a == k && b == v);
            if has("grant_type", "client_credentials")
                && has("client_id", "dev-client")
                && has("client_secret", "dev-client-secret")
            {
                reply(
                    200,
                    json!({"access_token": TICKETS_ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 1799, "scope": "useraccount"}),
                )
            } else {
                reply(
                    401,
                    json!({"error": "access_denied", "error_description": "access_denied"}),
                )
            }
        } else if path.ends_with("/api/now/table/incident")
            && seen.header("authorization") != Some(&*format!("Bearer {TICKETS_ACCESS_TOKEN}"))
        {
            reply(
                401,
                json!({"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"}, "status": "failure"}),
            )
        } else if path.ends_with("/api/stock/m8-bolts") {
            reply(
                200,
                json!({"product": "M8 bolts", "warehouse": "east", "stock_value": 4}),
            )
        } else if path.ends_with("/api/workbooks/wb-42/usage") {
            reply(
                200,
                json!({"workbook_id": "wb-42", "workbook_name": "Q3 churn", "hits_last_14_days": 3}),
            )
        } else if path.ends_with("/api/metrics/cpu") {
            reply(200, json!({"host": "web-1", "cpu": 0.93}))
        } else if path.ends_with("/webhook") {
            text_reply(200, "ok")
        } else if path.ends_with("/auth/signin") {
            reply(
                200,
                json!({"credentials": {
                    "site": {"id": "site-9", "contentUrl": ""},
                    "user": {"id": "user-3"},
                    "token": "session-7f3a",
                    "estimatedTimeToExpiration": "361:59:59"
                }}),
            )
        } else if path.ends_with("/tags") {
            reply(200, json!({"tags": {"tag": [{"label": "archived"}]}}))
        } else if path.ends_with("/api/now/table/incident") {
            reply(
                201,
                json!({"result": {"number": "INC0012042", "sys_id": "9d385017c611228701d22104cc95c371", "state": "1"}}),
            )
        } else if path.ends_with("/api/conversations.create")
            || path.ends_with("/api/conversations.invite")
        {
            reply(
                200,
                json!({"ok": true, "channel": {"id": "C7702", "name": "inc0012042"}}),
            )
        } else if path.ends_with("/v2/enqueue") && pager_refuses.load(Ordering::SeqCst) {
            reply(
                400,
                json!({"status": "invalid event", "message": "Event object is invalid", "errors": ["routing key is not enabled"]}),
            )
        } else if path.ends_with("/v2/enqueue") {
            reply(
                202,
                json!({"status": "success", "message": "Event processed", "dedup_key": "INC0012042"}),
            )
        } else {
            reply(404, json!({"error": "no such API"}))
        }
    }
}

fn body(seen: &Seen) -> Value {
    serde_json::from_slice(&seen.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&seen.body).into()))
}

/// Starts the flow consumer of [`consumer_settings`]. Returns the executions topic and
/// the consumer.
async fn start_consumer(
    server: &TestServer,
    topics: &[&str],
    file: &str,
    polls: Option<&str>,
) -> (String, RunningConsumer) {
    let (executions, settings) = consumer_settings(server, topics, file, polls).await;
    (executions, RunningConsumer::start(settings))
}

/// The flow consumer's settings on `topics` with the flows (and pollers) of `file`,
/// every secret pointing at `server`. Pollers get `polls` as their topic and poll every
/// 100 ms. Returns the executions topic too.
async fn consumer_settings(
    server: &TestServer,
    topics: &[&str],
    file: &str,
    polls: Option<&str>,
) -> (String, hookgate_consumer::config::Settings) {
    let (executions, config, env) = consumer_config(server, topics, file, polls).await;
    let settings = config
        .build(&env, "test consumer")
        .unwrap_or_else(|e| panic!("{e}"));
    (executions, settings)
}

/// The config of [`consumer_settings`], unbuilt, and the environment it reads.
pub(crate) async fn consumer_config(
    server: &TestServer,
    topics: &[&str],
    file: &str,
    polls: Option<&str>,
) -> (String, ConsumerConfig, Environment) {
    let base = format!("http://127.0.0.1:{}", server.port());
    let dead = topic("dead");
    let executions = topic("executions");
    for t in [&dead, &executions] {
        hookgate_testkit::kafka::create_topic(&brokers(), t, 1).await;
    }
    let topics: Vec<String> = topics.iter().map(|t| format!("\"{t}\"")).collect();
    let toml = format!(
        "[kafka]\nbrokers = \"{}\"\ngroup = \"{}\"\ntopics = [{}]\ndead_letter_topic = \"{dead}\"\nexecutions_topic = \"{executions}\"\n\
         control_topic = \"{}\"\n\
         consumer_properties = {{ \"session.timeout.ms\" = 6000, \"max.poll.interval.ms\" = 10000 }}\n[outbound]\nallow = [\"127.0.0.1/32\"]\n{}",
        brokers(),
        topic("group"),
        topics.join(", "),
        topic("control"),
        include_str!("../../config/local-consumer.toml").split("[secrets]").nth(1).map(|s| format!("[secrets]{s}")).unwrap()
    );
    let mut env = Environment::default();
    for (k, v) in hookgate::local::scenario_secrets(&base) {
        env.set(k, v);
    }
    let source = Source::Text {
        name: "test consumer".into(),
        toml,
    };
    let mut config = ConsumerConfig::load(&source, &env).unwrap_or_else(|e| panic!("{e}"));
    let file = FlowsFile::parse(file, "scenarios").unwrap();
    config.flows.extend(file.flows);
    config.pollers.extend(file.pollers.into_iter().map(|mut p| {
        p.interval = hookgate_common::config::ConfigDuration::from_millis(100);
        p.topic = polls.expect("a topic for the pollers").to_string();
        p
    }));
    (executions, config, env)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_three_scenarios_run_from_webhook_to_the_right_calls_in_order() {
    let (inventory, bi, alerts) = (topic("inventory"), topic("bi"), topic("alerts"));
    let gw = GatewayBuilder::tansu()
        .kafka("partitions = 1")
        .hook(&format!("id = \"inventory\"\ntopic = \"{inventory}\"\nauth = {{ scheme = \"none\" }}"))
        .hook(&format!("id = \"bi-usage\"\ntopic = \"{bi}\"\nauth = {{ scheme = \"none\" }}"))
        .hook(&format!("id = \"alerts\"\ntopic = \"{alerts}\"\nauth = {{ scheme = \"url_key\", secrets = [{{ value = \"k3y\" }}] }}"))
        .start()
        .await;
    let server = apis().await;
    let (executions, consumer) = start_consumer(
        &server,
        &[&inventory, &bi, &alerts],
        include_str!("../../config/flows/scenarios.toml"),
        None,
    )
    .await;

    // A low stock level, and one that is fine (no call for it).
    for (product, stock) in [("M8 bolts", 4), ("washers", 400)] {
        http::post(&gw.hook_url("/hooks/inventory"))
            .json(&json!({"product": product, "stock_value": stock, "warehouse": "east"}))
            .send()
            .await
            .unwrap()
            .event_id();
    }
    http::post(&gw.hook_url("/hooks/bi-usage"))
        .json(
            &json!({"workbook_id": "wb 42/x", "workbook_name": "Q3 churn", "hits_last_14_days": 3}),
        )
        .send()
        .await
        .unwrap()
        .event_id();
    http::post(&gw.hook_url("/hooks/alerts/k3y"))
        .content_type("application/x-www-form-urlencoded")
        .body("cpu=0.93&host=web-1")
        .send()
        .await
        .unwrap()
        .event_id();

    let deadline = Instant::now() + Duration::from_secs(40);
    while api_calls(&server).len() < 8 {
        assert!(
            Instant::now() < deadline,
            "calls so far: {:#?}",
            server.seen()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = api_calls(&server);
    let by_prefix = |prefix: &str| -> Vec<&Seen> {
        seen.iter()
            .filter(|s| s.target.starts_with(prefix))
            .collect()
    };

    // 1. Stock alert: one Slack incoming-webhook message, for the low stock only.
    let messages = by_prefix("/messaging/");
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].method, "POST");
    assert_eq!(
        body(messages[0]),
        json!({"text": "Low stock: only 4 left of M8 bolts in east"})
    );

    // 2. Dashboard governance, Tableau REST API: sign in → tag with the session token in
    //    X-Tableau-Auth and the site id from the sign-in → Slack note.
    let bi_calls: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.target.starts_with("/bi/") || s.target.starts_with("/slack/"))
        .collect();
    assert_eq!(bi_calls.len(), 3);
    assert_eq!(bi_calls[0].method, "POST");
    assert_eq!(bi_calls[0].target, "/bi/api/3.22/auth/signin");
    assert_eq!(bi_calls[0].header("accept"), Some("application/json"));
    assert_eq!(bi_calls[0].header("content-type"), Some("application/json"));
    assert_eq!(
        body(bi_calls[0]),
        json!({"credentials": {
            "personalAccessTokenName": "dev-pat",
            "personalAccessTokenSecret": "dev-pat-secret",
            "site": {"contentUrl": ""}
        }})
    );
    assert_eq!(bi_calls[1].method, "PUT");
    assert_eq!(
        bi_calls[1].target,
        "/bi/api/3.22/sites/site-9/workbooks/wb%2042%2Fx/tags"
    );
    assert_eq!(bi_calls[1].header("x-tableau-auth"), Some("session-7f3a"));
    assert_eq!(bi_calls[1].header("accept"), Some("application/json"));
    assert_eq!(
        body(bi_calls[1]),
        json!({"tags": {"tag": [{"label": "archived"}]}})
    );
    assert_eq!(bi_calls[2].target, "/slack/webhook");
    assert_eq!(
        body(bi_calls[2]),
        json!({"text": "Workbook Q3 churn had 3 views in two weeks and is now tagged archived."})
    );

    // 3. War room: ServiceNow incident (Table API, an OAuth2 client-credentials token
    //    fetched once) → Slack channel named after the incident number (form, bearer) →
    //    invite into the channel id → PagerDuty.
    let tokens: Vec<Seen> = server
        .seen()
        .into_iter()
        .filter(|s| s.target.ends_with("/oauth_token.do"))
        .collect();
    assert_eq!(tokens.len(), 1, "{tokens:#?}");
    assert_eq!(tokens[0].target, "/tickets/oauth_token.do");
    let war: Vec<&Seen> = seen
        .iter()
        .filter(|s| {
            ["/tickets/", "/chat/", "/pager/"]
                .iter()
                .any(|p| s.target.starts_with(p))
        })
        .collect();
    assert_eq!(war.len(), 4);
    assert_eq!(war[0].method, "POST");
    assert_eq!(war[0].target, "/tickets/api/now/table/incident");
    assert_eq!(
        war[0].header("authorization"),
        Some(&*format!("Bearer {TICKETS_ACCESS_TOKEN}"))
    );
    assert_eq!(war[0].header("accept"), Some("application/json"));
    assert_eq!(war[0].header("x-client-id"), None);
    assert_eq!(war[0].header("x-client-secret"), None);
    assert_eq!(
        body(war[0]),
        json!({
            "short_description": "CPU at 0.93 on web-1",
            "description": "The CPU of web-1 reached 0.93 (threshold 0.8).",
            "urgency": "1",
            "impact": "2"
        })
    );
    assert_eq!(war[1].target, "/chat/api/conversations.create");
    assert_eq!(war[1].header("authorization"), Some("Bearer dev-bot-token"));
    assert_eq!(
        war[1].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        String::from_utf8_lossy(&war[1].body),
        "is_private=false&name=inc0012042"
    );
    assert_eq!(war[2].target, "/chat/api/conversations.invite");
    assert_eq!(war[2].header("authorization"), Some("Bearer dev-bot-token"));
    assert_eq!(
        String::from_utf8_lossy(&war[2].body),
        "channel=C7702&users=U0DEV1%2CU0DEV2"
    );
    assert_eq!(war[3].method, "POST");
    assert_eq!(war[3].target, "/pager/v2/enqueue");
    assert_eq!(
        body(war[3]),
        json!({
            "routing_key": "dev-routing-key",
            "event_action": "trigger",
            "dedup_key": "INC0012042",
            "payload": {
                "summary": "CPU at 0.93 on web-1 (INC0012042)",
                "source": "web-1",
                "severity": "critical"
            }
        })
    );

    // Execution records: three successes, one skip, secrets masked.
    let records = hookgate_testkit::kafka::read_n(&brokers(), &executions, 4);
    let text: String = records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect();
    let states: Vec<String> = records
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.value).unwrap()["state"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        states.iter().filter(|s| *s == "SUCCESS").count(),
        3,
        "{states:?}"
    );
    assert_eq!(
        states.iter().filter(|s| *s == "SKIPPED").count(),
        1,
        "{states:?}"
    );
    for secret in [
        "dev-pat-secret",
        "dev-client-secret",
        TICKETS_ACCESS_TOKEN,
        "dev-bot-token",
        "dev-routing-key",
    ] {
        assert!(!text.contains(secret), "`{secret}` in an execution record");
    }
    consumer.stop().await.unwrap();
    gw.stop().await.unwrap();

    // A dry run of each flow on its event renders the requests the run sent: the same
    // bytes, with the answers of earlier calls (unknown without sending) standing as
    // ⟨outputs.…⟩, credentials redacted, secrets masked; and it sends nothing.
    let (_, settings) = consumer_settings(
        &server,
        &[&inventory, &bi, &alerts],
        include_str!("../../config/flows/scenarios.toml"),
        None,
    )
    .await;
    let hits = server.hits();
    for (flow, topic, calls) in [
        ("warehouse.stock-alert", &inventory, messages),
        ("bi.archive-unused-workbook", &bi, bi_calls),
        ("ops.incident-war-room", &alerts, war),
    ] {
        let event = hookgate_testkit::kafka::read_n(&brokers(), topic, 1)[0].event();
        let flow = hookgate_consumer::flow::find(&settings.flows, flow).unwrap();
        let report = hookgate_consumer::dry_run::report(flow, &event, &settings.engine);
        assert_eq!(report["runs"], true, "{report:#}");
        let tasks = report["tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), calls.len(), "{report:#}");
        for (task, call) in tasks.iter().zip(&calls) {
            let request = &task["request"];
            let at = format!("{}: {request:#}", task["id"]);
            assert_eq!(request["method"], call.method, "{at}");
            let url = request["url"].as_str().unwrap();
            let sent_url = format!("http://127.0.0.1:{}{}", server.port(), call.target);
            assert!(same_but_stand_ins(url, &sent_url), "{at}\nsent {sent_url}");
            let body = request["body"].as_str().unwrap();
            let sent = String::from_utf8_lossy(&call.body);
            assert!(same_but_stand_ins(body, &sent), "{at}\nsent {sent}");
            for (name, values) in request["headers"].as_object().unwrap() {
                let shown = values[0].as_str().unwrap();
                let real = call
                    .header(name)
                    .unwrap_or_else(|| panic!("{at}: {name} not sent"));
                if shown == "[redacted]" {
                    assert!(name == "authorization", "{at}");
                } else {
                    assert!(same_but_stand_ins(shown, real), "{at}: {name} was {real}");
                }
            }
        }
        let text = report.to_string();
        for secret in [
            "dev-pat-secret",
            "dev-client-secret",
            TICKETS_ACCESS_TOKEN,
            "dev-bot-token",
            "dev-routing-key",
        ] {
            assert!(!text.contains(secret), "`{secret}` in a dry run");
        }
    }
    assert_eq!(server.hits(), hits, "a dry run sends nothing");
}

/// Whether `sent` is `shown` with each `⟨…⟩` stand-in (an unknown output) and each
/// `[redacted]` (a masked secret) replaced by some text.
fn same_but_stand_ins(shown: &str, sent: &str) -> bool {
    let shown = shown.replace("[redacted]", "⟨secret⟩");
    let mut parts = shown
        .split('⟨')
        .map(|p| p.split_once('⟩').map_or(p, |(_, rest)| rest));
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = sent.strip_prefix(first) else {
        return false;
    };
    let literals: Vec<&str> = parts.collect();
    if literals.is_empty() {
        return rest.is_empty();
    }
    for (i, literal) in literals.iter().enumerate() {
        let last = i + 1 == literals.len();
        let found = if last {
            rest.ends_with(literal).then(|| rest.len() - literal.len())
        } else {
            rest.find(literal)
        };
        match found {
            // Each stand-in took the place of at least one character.
            Some(at) if at > 0 => rest = &rest[at + literal.len()..],
            _ => return false,
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread")]
async fn the_three_scenarios_in_polling_form_fire_once_each_and_make_the_same_calls() {
    let server = apis().await;
    let polls = topic("polls");
    hookgate_testkit::kafka::create_topic(&brokers(), &polls, 1).await;
    let (executions, consumer) = start_consumer(
        &server,
        &[&polls],
        include_str!("../../config/flows/scenarios-polling.toml"),
        Some(&polls),
    )
    .await;

    // Every source is past its threshold from the first poll, and stays there: edge
    // mode fires once per poller, however often it polls.
    let calls = |s: &TestServer| api_calls(s).iter().filter(|x| x.method != "GET").count();
    let deadline = Instant::now() + Duration::from_secs(40);
    while calls(&server) < 8 {
        assert!(
            Instant::now() < deadline,
            "calls so far: {:#?}",
            server.seen()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let polled = |path: &str| {
        server
            .seen()
            .iter()
            .filter(|x| x.target.starts_with(path))
            .count()
    };
    let before = polled("/inventory/");
    while polled("/inventory/") < before + 5 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    consumer.stop().await.unwrap();

    let seen = api_calls(&server);
    let gets: Vec<&Seen> = seen.iter().filter(|s| s.method == "GET").collect();
    let stock = gets
        .iter()
        .find(|s| s.target.starts_with("/inventory/api/stock/m8-bolts"))
        .unwrap();
    assert_eq!(
        stock.header("authorization"),
        Some("Bearer dev-inventory-token")
    );
    let usage = gets
        .iter()
        .find(|s| s.target.starts_with("/usage/api/workbooks/wb-42/usage"))
        .unwrap();
    assert_eq!(
        usage.header("authorization"),
        Some("Bearer dev-usage-token")
    );
    let cpu = gets
        .iter()
        .find(|s| s.target.starts_with("/monitoring/api/metrics/cpu"))
        .unwrap();
    assert_eq!(cpu.target, "/monitoring/api/metrics/cpu?host=web-1");
    assert_eq!(
        cpu.header("authorization"),
        Some("Bearer dev-monitoring-token")
    );

    let posts: Vec<&Seen> = seen.iter().filter(|s| s.method != "GET").collect();
    let targets: Vec<&str> = posts.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(posts.len(), 8, "{targets:?}");
    let message = posts
        .iter()
        .find(|s| s.target.starts_with("/messaging/"))
        .unwrap();
    assert_eq!(
        body(message),
        json!({"text": "Low stock: only 4 left of M8 bolts in east"})
    );
    let signin = posts
        .iter()
        .find(|s| s.target == "/bi/api/3.22/auth/signin")
        .unwrap();
    assert_eq!(
        body(signin)["credentials"]["personalAccessTokenSecret"],
        "dev-pat-secret"
    );
    let tag = posts.iter().find(|s| s.method == "PUT").unwrap();
    assert_eq!(tag.target, "/bi/api/3.22/sites/site-9/workbooks/wb-42/tags");
    assert_eq!(tag.header("x-tableau-auth"), Some("session-7f3a"));
    let ticket = posts
        .iter()
        .find(|s| s.target == "/tickets/api/now/table/incident")
        .unwrap();
    assert_eq!(body(ticket)["short_description"], "CPU at 0.93 on web-1");
    let channel = posts
        .iter()
        .find(|s| s.target == "/chat/api/conversations.create")
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&channel.body),
        "is_private=false&name=inc0012042"
    );
    let page = posts
        .iter()
        .find(|s| s.target == "/pager/v2/enqueue")
        .unwrap();
    assert_eq!(
        body(page)["payload"]["summary"],
        "CPU at 0.93 on web-1 (INC0012042)"
    );
    assert_eq!(body(page)["dedup_key"], "INC0012042");

    // One event per poller, and three successful executions.
    let events = hookgate_testkit::kafka::read_n(&brokers(), &polls, 3);
    let mut sources: Vec<String> = events.iter().map(|r| r.event().source).collect();
    sources.sort();
    assert_eq!(
        sources,
        [
            "/pollers/cpu-load",
            "/pollers/stock-level",
            "/pollers/workbook-usage"
        ]
    );
    let records = hookgate_testkit::kafka::read_n(&brokers(), &executions, 3);
    for r in &records {
        let v: Value = serde_json::from_slice(&r.value).unwrap();
        assert_eq!(v["state"], "SUCCESS", "{v}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_senders_trace_reaches_the_flows_calls_as_a_new_span() {
    let inventory = topic("inventory-trace");
    let gw = GatewayBuilder::tansu()
        .kafka("partitions = 1")
        .hook(&format!(
            "id = \"inventory\"\ntopic = \"{inventory}\"\nauth = {{ scheme = \"none\" }}"
        ))
        .start()
        .await;
    let server = apis().await;
    let (_, consumer) = start_consumer(
        &server,
        &[&inventory],
        include_str!("../../config/flows/scenarios.toml"),
        None,
    )
    .await;
    let sender = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    http::post(&gw.hook_url("/hooks/inventory"))
        .header("traceparent", sender)
        .json(&json!({"product": "M8 bolts", "stock_value": 4, "warehouse": "east"}))
        .send()
        .await
        .unwrap()
        .event_id();
    let deadline = Instant::now() + Duration::from_secs(40);
    while server.hits() < 1 {
        assert!(Instant::now() < deadline, "the flow made no call");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let call = &server.seen()[0];
    let traceparent = call
        .header("traceparent")
        .expect("a traceparent on the call");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(
        parts[1], "4bf92f3577b34da6a3ce929d0e0e4736",
        "the sender's trace"
    );
    assert_ne!(parts[2], "00f067aa0ba902b7", "a span of the consumer's own");
    assert_eq!(parts[3], "01");
    consumer.stop().await.unwrap();
    gw.stop().await.unwrap();
}
