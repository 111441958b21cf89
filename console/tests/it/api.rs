//! The JSON API over what a gateway and a consumer wrote, and the login in front of it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hookgate_testkit::kafka::Producer;
use hookgate_testkit::server::{json_reply, TestServer};
use hookgate_testkit::{brokers, wait_until};
use serde_json::{json, Value};

use crate::support::{self, api, request, Topics, API_SECRET, PASSWORD, TOKEN};

/// A rejection record as the gateway writes one.
fn rejection(t: &Topics, reason: &str, detail: &str) -> String {
    let id = uuid::Uuid::now_v7().hyphenated().to_string();
    let value = json!({
        "specversion": "1.0", "id": id, "source": "/hooks/orders", "type": "hookgate.rejection",
        "time": humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
        "datacontenttype": "application/json", "dataschema": "urn:hookgate:rejection:v1",
        "hook": "orders", "authscheme": "hmac",
        "data": {"status": 401, "reason": reason, "detail": detail, "method": "POST",
                 "path": "/hooks/orders", "query": {}, "headers": {"x-hub-signature-256": ["[redacted]"]},
                 "client": "127.0.0.1", "bodysize": 12, "bodysample": "{\"order\":1}", "bodysampleencoding": "utf8"}
    });
    Producer::new(&brokers()).with_headers(
        &t.rejections,
        Some("orders"),
        value.to_string().as_bytes(),
        &[("content-type", hookgate_event::STRUCTURED_CONTENT_TYPE)],
    );
    id
}

async fn rows(console: &hookgate_console::Running, path: &str) -> Vec<Value> {
    api(console, path).await["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_rejections_runs_and_a_redriven_dead_letter_show_in_the_api() {
    let t = Topics::create().await;
    let broken = Arc::new(AtomicBool::new(true));
    let flag = broken.clone();
    let server = TestServer::start(move |seen| {
        if seen.target.starts_with("/a") && flag.load(Ordering::SeqCst) {
            json_reply(500, &json!({"error": "booking service down"}))
        } else {
            json_reply(200, &json!({"booked": true}))
        }
    })
    .await;
    let consumer =
        hookgate_consumer::runtime::Running::start(support::consumer_settings(&t, &server));
    let dir = support::tempdir();
    let console = support::start(support::console_settings(&t, &dir, 100_000)).await;

    let event = Producer::new(&brokers()).event(
        &t.events,
        None,
        "orders",
        "order.created",
        &json!({"order": "A-7"}),
    );
    let refused = rejection(&t, "mismatch", "signature mismatch");

    // The accepted delivery and the refused one, each with what the sender would ask about.
    wait_until(
        "both deliveries indexed",
        Duration::from_secs(30),
        || async { rows(&console, "/api/deliveries?hook=orders").await.len() == 2 },
    )
    .await;
    let refusals = rows(&console, "/api/deliveries?kind=rejected&reason=mismatch").await;
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0]["event_id"], refused.as_str());
    assert_eq!(refusals[0]["status"], 401);
    let seq = refusals[0]["seq"].as_i64().unwrap();
    let detail = api(&console, &format!("/api/deliveries/{seq}")).await;
    assert_eq!(detail["event"]["data"]["detail"], "signature mismatch");
    let accepted = rows(&console, &format!("/api/deliveries?event={event}")).await;
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0]["accepted"], true);

    // The Hooks page counts them by reason, beside the hook's settings.
    let hooks = api(&console, "/api/hooks").await;
    let orders = &hooks["hooks"][0];
    assert_eq!(orders["id"], "orders");
    assert_eq!(
        (orders["scheme"].as_str(), orders["rate_limit"].as_str()),
        (Some("hmac"), Some("200/s, burst 400"))
    );
    assert_eq!(
        (orders["accepted"].as_i64(), orders["rejected"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(orders["reasons"][0]["reason"], "mismatch");

    // Both runs, the failed one with its rendered request, secrets masked.
    wait_until(
        "two runs and a dead letter indexed",
        Duration::from_secs(40),
        || async {
            rows(&console, "/api/executions").await.len() == 2
                && rows(&console, "/api/dead-letters").await.len() == 1
        },
    )
    .await;
    let failed = rows(&console, "/api/executions?flow=shop.fragile&state=failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    let failed_id = failed[0]["id"].as_str().unwrap().to_string();
    let run = api(&console, &format!("/api/executions/{failed_id}")).await;
    let task = &run["record"]["tasks"][0];
    assert_eq!(task["status"], 500);
    assert!(task["response"]
        .as_str()
        .unwrap()
        .contains("booking service down"));
    let shown = run.to_string();
    assert!(
        !shown.contains(API_SECRET),
        "a secret in the run log: {shown}"
    );
    assert!(shown.contains("[redacted]"));

    // Redrive the dead letter once the API is fixed: only the failed flow runs again,
    // and its run names the one it repeats.
    broken.store(false, Ordering::SeqCst);
    let dead = rows(&console, "/api/dead-letters").await;
    assert_eq!(dead[0]["flow"], "shop.fragile");
    let redriven = request(
        "POST",
        &format!("{}/api/dead-letters/redrive", console.url()),
        &[
            ("authorization", &format!("Bearer {TOKEN}")),
            ("content-type", "application/json"),
        ],
        &json!({ "seqs": [dead[0]["seq"]] }).to_string(),
    )
    .await;
    assert_eq!(redriven.status, 200, "{}", redriven.text());
    assert_eq!(
        redriven.json()["results"][0]["ok"],
        true,
        "{}",
        redriven.text()
    );
    wait_until(
        "the redriven run indexed",
        Duration::from_secs(40),
        || async {
            !rows(&console, "/api/executions?flow=shop.fragile&state=success")
                .await
                .is_empty()
        },
    )
    .await;
    let rerun = &rows(&console, "/api/executions?flow=shop.fragile&state=success").await[0];
    assert_eq!(rerun["redrive_of"], failed_id.as_str());
    assert_eq!(rerun["event_id"], event.as_str());
    assert_eq!(
        rows(&console, "/api/executions?flow=shop.steady")
            .await
            .len(),
        1,
        "the other flow ran again"
    );
    let original = api(&console, &format!("/api/executions/{failed_id}")).await;
    assert_eq!(original["redriven_by"][0]["id"], rerun["id"]);
    let dead = api(&console, &format!("/api/dead-letters/{}", dead[0]["seq"])).await;
    assert!(dead["redriven"].is_string());

    // A dry run of a flow on the captured event renders its request, secrets masked,
    // and sends nothing.
    let calls = server.hits();
    let seq = accepted[0]["seq"].as_i64().unwrap();
    let report = api(
        &console,
        &format!("/api/dry-run?delivery={seq}&flow=shop.fragile"),
    )
    .await;
    let report = &report["report"];
    assert_eq!(report["runs"], true, "{report}");
    let request = &report["tasks"][0]["request"];
    assert_eq!(request["method"], "POST");
    assert_eq!(request["body"], r#"{"order":"A-7"}"#, "{request}");
    assert!(
        request["url"]
            .as_str()
            .unwrap()
            .contains("api_key=%5Bredacted%5D")
            || request["url"].as_str().unwrap().contains("[redacted]"),
        "{request}"
    );
    assert!(
        !report.to_string().contains(API_SECRET),
        "a secret in the dry run: {report}"
    );
    assert_eq!(server.hits(), calls, "the dry run sent a request");

    console.stop().await.unwrap();
    consumer.stop().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_refuses_callers_without_a_login_and_forms_without_their_csrf_token() {
    let t = Topics::create().await;
    let dir = support::tempdir();
    let console = support::start(support::console_settings(&t, &dir, 1000)).await;
    let url = console.url();

    // Scripts: no credentials, a wrong token, wrong basic credentials.
    let basic = |user: &str, pass: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    };
    for auth in [
        None,
        Some(format!("Bearer {TOKEN}x")),
        Some(basic("ops", "guess")),
        Some(basic("root", PASSWORD)),
    ] {
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let a = request("GET", &format!("{url}/api/deliveries"), &headers, "").await;
        assert_eq!(a.status, 401, "{auth:?}");
        assert!(a.text().contains("log in"));
        assert!(!a.text().contains(TOKEN));
    }
    let ok = request(
        "GET",
        &format!("{url}/api/hooks"),
        &[("authorization", &basic("ops", PASSWORD))],
        "",
    )
    .await;
    assert_eq!(ok.status, 200);

    // Browsers: pages send them to the login; a wrong login is refused.
    let page = request("GET", &format!("{url}/deliveries"), &[], "").await;
    assert_eq!(
        (page.status, page.header("location")),
        (303, Some("/login"))
    );
    let wrong = request(
        "POST",
        &format!("{url}/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        "token=nope",
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());

    // A session: its cookie is HttpOnly and SameSite=Strict; its forms carry a token.
    let login = request(
        "POST",
        &format!("{url}/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        &format!("token={TOKEN}"),
    )
    .await;
    assert_eq!(login.status, 303);
    let cookie = login.header("set-cookie").unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let page = request(
        "GET",
        &format!("{url}/dead-letters"),
        &[("cookie", &session)],
        "",
    )
    .await;
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    let html = page.text();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a CSRF token in the page");

    // A POST from the session without the token, or with another, is refused; with it,
    // it is let through (and answered for what it asks).
    let form = [
        ("cookie", session.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    for body in ["seq=1".to_string(), "seq=1&csrf=forged".to_string()] {
        let a = request("POST", &format!("{url}/dead-letters/redrive"), &form, &body).await;
        assert_eq!(a.status, 403, "{body}");
        assert!(a.text().contains("CSRF"));
    }
    let a = request(
        "POST",
        &format!("{url}/dead-letters/redrive"),
        &form,
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(a.text().contains("select at least one dead letter"));

    // Logging out ends the session.
    let out = request(
        "POST",
        &format!("{url}/logout"),
        &form,
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(out.status, 303);
    let page = request(
        "GET",
        &format!("{url}/deliveries"),
        &[("cookie", &session)],
        "",
    )
    .await;
    assert_eq!(page.status, 303);

    console.stop().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
