//! The three shipped flows end to end: a webhook into the gateway, its event through the
//! real broker, the flow consumer, and the calls a local server (standing in for the
//! messaging, BI, ticketing, chat and paging APIs) receives, in order, with the outputs
//! of one call in the next.

use std::time::{Duration, Instant};

use hookgate::config::Environment;
use hookgate_common::config::Source;
use hookgate_consumer::config::{ConsumerConfig, FlowsFile};
use hookgate_testkit::server::{Reply, Seen, TestServer};
use serde_json::{json, Value};

use crate::support::{brokers, http, topic, GatewayBuilder};

fn reply(status: u16, body: Value) -> Reply {
    ::http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap()
}

/// The APIs, with the answers the flows chain on.
async fn apis() -> TestServer {
    TestServer::start(|seen: &Seen| {
        let path = seen.target.split('?').next().unwrap_or("");
        if path.ends_with("/api/auth/signin") {
            reply(
                200,
                json!({"credentials": {"token": "session-7f3a", "site": {"id": "site-9"}}}),
            )
        } else if path.ends_with("/api/incidents") {
            reply(201, json!({"id": "INC-2042"}))
        } else if path.ends_with("/api/conversations.create") {
            reply(200, json!({"ok": true, "channel": {"id": "C7702"}}))
        } else {
            reply(200, json!({"ok": true}))
        }
    })
    .await
}

fn body(seen: &Seen) -> Value {
    serde_json::from_slice(&seen.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&seen.body).into()))
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
    let base = format!("http://127.0.0.1:{}", server.port());
    let dead = topic("dead");
    let executions = topic("executions");
    for t in [&dead, &executions] {
        hookgate_testkit::kafka::create_topic(&brokers(), t, 1).await;
    }
    let toml = format!(
        "[kafka]\nbrokers = \"{}\"\ngroup = \"{}\"\ntopics = [\"{inventory}\", \"{bi}\", \"{alerts}\"]\ndead_letter_topic = \"{dead}\"\nexecutions_topic = \"{executions}\"\n\
         properties = {{ \"session.timeout.ms\" = 6000, \"max.poll.interval.ms\" = 10000 }}\n[outbound]\nallow = [\"127.0.0.1/32\"]\n{}",
        brokers(),
        topic("group"),
        include_str!("../../config/local-consumer.toml").split("[secrets]").nth(1).map(|s| format!("[secrets]{s}")).unwrap()
    );
    let mut env = Environment::default();
    for (k, v) in [
        ("MESSAGING_WEBHOOK_URL", format!("{base}/messaging/hook")),
        ("BI_BASE_URL", format!("{base}/bi")),
        ("BI_PAT_NAME", "pat-name".into()),
        ("BI_PAT_SECRET", "pat-secret-value".into()),
        ("SLACK_WEBHOOK_URL", format!("{base}/slack/hook")),
        ("TICKETS_BASE_URL", format!("{base}/tickets")),
        ("TICKETS_USER", "ops".into()),
        ("TICKETS_PASSWORD", "ops-password".into()),
        ("TICKETS_CLIENT_ID", "client-1".into()),
        ("TICKETS_CLIENT_SECRET", "client-secret-1".into()),
        ("CHAT_BASE_URL", format!("{base}/chat")),
        ("CHAT_BOT_TOKEN", "xoxb-bot-token".into()),
        ("ONCALL_USERS", "U1,U2".into()),
        ("PAGER_URL", format!("{base}/pager")),
        ("PAGER_ROUTING_KEY", "routing-1".into()),
    ] {
        env.set(k, v);
    }
    let source = Source::Text {
        name: "test consumer".into(),
        toml,
    };
    let mut config = ConsumerConfig::load(&source, &env).unwrap_or_else(|e| panic!("{e}"));
    config.flows.extend(
        FlowsFile::parse(
            include_str!("../../config/flows/scenarios.toml"),
            "scenarios",
        )
        .unwrap()
        .flows,
    );
    let settings = config
        .build(&env, "test consumer")
        .unwrap_or_else(|e| panic!("{e}"));
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let consumer = tokio::spawn(hookgate_consumer::runtime::run(
        settings,
        hookgate_consumer::admin::Ready::default(),
        async {
            let _ = rx.await;
        },
    ));

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
    while server.hits() < 8 {
        assert!(
            Instant::now() < deadline,
            "calls so far: {:#?}",
            server.seen()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = server.seen();
    let by_prefix = |prefix: &str| -> Vec<&Seen> {
        seen.iter()
            .filter(|s| s.target.starts_with(prefix))
            .collect()
    };

    // 1. Stock alert: one message, for the low stock only.
    let messages = by_prefix("/messaging/");
    assert_eq!(messages.len(), 1);
    assert_eq!(
        body(messages[0])["text"],
        "Low stock: only 4 left of M8 bolts in east"
    );
    assert_eq!(body(messages[0])["stock"], 4);

    // 2. Dashboard governance: sign in → tag with the token from the sign-in → note.
    let bi_calls: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.target.starts_with("/bi/") || s.target.starts_with("/slack/"))
        .collect();
    assert_eq!(bi_calls.len(), 3);
    assert_eq!(bi_calls[0].target, "/bi/api/auth/signin");
    assert_eq!(
        body(bi_calls[0])["credentials"]["personalAccessTokenSecret"],
        "pat-secret-value"
    );
    assert_eq!(bi_calls[1].method, "PUT");
    assert_eq!(
        bi_calls[1].target,
        "/bi/api/sites/site-9/workbooks/wb%2042%2Fx/tags"
    );
    assert_eq!(bi_calls[1].header("x-auth-token"), Some("session-7f3a"));
    assert_eq!(body(bi_calls[1])["tags"]["tag"][0]["label"], "archived");
    assert!(body(bi_calls[2])["text"]
        .as_str()
        .unwrap()
        .contains("Q3 churn"));

    // 3. War room: ticket (basic + client credentials) → channel (form, bearer) →
    //    invite with the channel id → page.
    let war: Vec<&Seen> = seen
        .iter()
        .filter(|s| {
            ["/tickets/", "/chat/", "/pager"]
                .iter()
                .any(|p| s.target.starts_with(p))
        })
        .collect();
    assert_eq!(war.len(), 4);
    assert_eq!(war[0].target, "/tickets/api/incidents");
    assert_eq!(
        war[0].header("authorization"),
        Some("Basic b3BzOm9wcy1wYXNzd29yZA==")
    );
    assert_eq!(war[0].header("x-client-id"), Some("client-1"));
    assert_eq!(body(war[0])["title"], "CPU at 0.93 on web-1");
    assert_eq!(war[1].target, "/chat/api/conversations.create");
    assert_eq!(
        war[1].header("authorization"),
        Some("Bearer xoxb-bot-token")
    );
    assert_eq!(
        war[1].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        String::from_utf8_lossy(&war[1].body),
        "is_private=false&name=inc-2042"
    );
    assert_eq!(war[2].target, "/chat/api/conversations.invite");
    assert_eq!(
        String::from_utf8_lossy(&war[2].body),
        "channel=C7702&users=U1%2CU2"
    );
    assert_eq!(war[3].target, "/pager");
    assert_eq!(
        body(war[3])["payload"]["summary"],
        "CPU at 0.93 on web-1 (INC-2042)"
    );
    assert_eq!(body(war[3])["routing_key"], "routing-1");

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
        "pat-secret-value",
        "ops-password",
        "client-secret-1",
        "xoxb-bot-token",
        "routing-1",
    ] {
        assert!(!text.contains(secret), "`{secret}` in an execution record");
    }
    let _ = stop.send(());
    consumer.await.unwrap().unwrap();
    gw.stop().await.unwrap();
}
