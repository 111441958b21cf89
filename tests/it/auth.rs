//! Authentication through the real listener: each scheme accepts the right credential,
//! answers 401 (with `WWW-Authenticate` for basic) otherwise, publishes nothing for a
//! refused request, records what it verified in the event, and counts failures by reason.

use base64::Engine;
use serde_json::json;

use crate::support::{brokers, hmac_sha256_hex, http, kafka, topic, GatewayBuilder};

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn github_signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_sha256_hex(secret, body))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_scheme_admits_the_right_credential_and_only_it() {
    let t = topic("auth");
    let gw = GatewayBuilder::tansu()
        .env("BASIC_PW", "pw-basic-secret")
        .env("API_KEY", "key-api-secret")
        .env("GL_TOKEN", "tok-gitlab-secret")
        .env("GH_SECRET", "gh-hmac-secret")
        .hook(&format!(
            "id = \"b\"\ntopic = \"{t}\"\nauth = {{ scheme = \"basic\", realm = \"ci\", credentials = [{{ username = \"ci\", password = {{ env = \"BASIC_PW\" }} }}] }}"
        ))
        .hook(&format!(
            "id = \"k\"\ntopic = \"{t}\"\nauth = {{ scheme = \"api_key\", header = \"St2-Api-Key\", query = \"st2-api-key\", secrets = [{{ env = \"API_KEY\" }}] }}"
        ))
        .hook(&format!(
            "id = \"g\"\ntopic = \"{t}\"\nauth = {{ scheme = \"token\", preset = \"gitlab\", secrets = [{{ env = \"GL_TOKEN\" }}] }}"
        ))
        .hook(&format!(
            "id = \"h\"\ntopic = \"{t}\"\nauth = {{ scheme = \"hmac\", preset = \"github\", secrets = [{{ env = \"GH_SECRET\" }}] }}"
        ))
        .start()
        .await;
    let url = |h: &str| gw.hook_url(&format!("/hooks/{h}"));
    let body = br#"{"action":"opened"}"#.to_vec();

    // Refused, each with its reason counted.
    let r = http::post(&url("b"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"ci\", charset=\"UTF-8\"")
    );
    let r = http::post(&url("b"))
        .header("authorization", &basic("ci", "wrong"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let r = http::post(&format!("{}?st2-api-key=nope", url("k")))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_none());
    let r = http::post(&url("g"))
        .header("x-gitlab-token", "nope")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let r = http::post(&url("h"))
        .header("x-hub-signature-256", "sha256=zz")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let forged = github_signature("gh-hmac-secret", b"other body");
    let r = http::post(&url("h"))
        .header("x-hub-signature-256", &forged)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), json!({"error": "unauthorized"}));

    // Admitted.
    let mut ids = Vec::new();
    let r = http::post(&url("b"))
        .header("authorization", &basic("ci", "pw-basic-secret"))
        .json(&json!({"s": "basic"}))
        .send()
        .await
        .unwrap();
    ids.push(("basic", r.event_id()));
    let r = http::post(&format!("{}?st2-api-key=key-api-secret&x=1", url("k")))
        .json(&json!({"s": "api_key"}))
        .send()
        .await
        .unwrap();
    ids.push(("api_key", r.event_id()));
    let r = http::post(&url("k"))
        .header("st2-api-key", "key-api-secret")
        .json(&json!({"s": "api_key"}))
        .send()
        .await
        .unwrap();
    ids.push(("api_key", r.event_id()));
    let r = http::post(&url("g"))
        .header("x-gitlab-token", "tok-gitlab-secret")
        .json(&json!({"s": "token"}))
        .send()
        .await
        .unwrap();
    ids.push(("token", r.event_id()));
    let r = http::post(&url("h"))
        .header(
            "x-hub-signature-256",
            &github_signature("gh-hmac-secret", &body),
        )
        .header("x-github-delivery", "delivery-42")
        .content_type("application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    ids.push(("hmac", r.event_id()));

    let records = kafka::read_n(&brokers(), &t, ids.len());
    assert_eq!(
        records.len(),
        ids.len(),
        "refused requests published nothing"
    );
    for (scheme, id) in &ids {
        let record = records
            .iter()
            .find(|r| r.json()["id"] == json!(id))
            .expect("event on the topic");
        let event = record.json();
        assert_eq!(event["authscheme"], json!(scheme));
        let text = String::from_utf8_lossy(&record.value);
        for secret in [
            "pw-basic-secret",
            "key-api-secret",
            "tok-gitlab-secret",
            "gh-hmac-secret",
        ] {
            assert!(
                !text.contains(secret),
                "{secret} leaked into a {scheme} event"
            );
        }
        if *scheme == "hmac" {
            assert_eq!(event["signed"], "body");
            assert_eq!(event["deliveryid"], "delivery-42");
            assert_eq!(event["data"]["body"], json!({"action": "opened"}));
            assert!(event["data"]["headers"]["x-hub-signature-256"][0]
                .as_str()
                .unwrap()
                .starts_with("sha256="));
        } else {
            assert!(event.get("signed").is_none());
        }
    }

    let metrics = http::get(&format!("{}/metrics", gw.admin_url))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    for (hook, reason) in [
        ("b", "missing"),
        ("b", "mismatch"),
        ("k", "mismatch"),
        ("g", "mismatch"),
        ("h", "malformed"),
        ("h", "mismatch"),
    ] {
        let series = format!("hookgate_auth_failures_total{{hook=\"{hook}\",reason=\"{reason}\"}}");
        assert!(text.contains(&series), "{series} missing from:\n{text}");
    }
    for secret in [
        "pw-basic-secret",
        "key-api-secret",
        "tok-gitlab-secret",
        "gh-hmac-secret",
    ] {
        assert!(!text.contains(secret));
    }
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_url_key_is_a_404_to_the_sender_and_an_exact_reason_to_the_operator() {
    let gw = GatewayBuilder::new()
        .brokers("unused:9092")
        .null_sink()
        .hook("id = \"u\"\ntopic = \"t\"\nauth = { scheme = \"url_key\", secrets = [{ value = \"current-key\" }, { value = \"retired-key\", expires = \"2020-01-01T00:00:00Z\" }] }")
        .start()
        .await;
    let post = |path: &str| http::post(&gw.hook_url(path)).body("{}").send();
    for (path, status) in [
        ("/hooks/u/current-key", 202),
        ("/hooks/u/wrong-key", 404),
        ("/hooks/u/retired-key", 404),
        ("/hooks/u", 404),
        ("/hooks/nothing-here", 404),
    ] {
        let r = post(path).await.unwrap();
        assert_eq!(r.status, status, "{path}");
        if status == 404 {
            assert_eq!(r.json(), json!({"error": "not found"}), "{path}");
        }
    }
    let text = String::from_utf8_lossy(
        &http::get(&format!("{}/metrics", gw.admin_url))
            .await
            .unwrap()
            .body,
    )
    .to_string();
    for line in [
        "hookgate_auth_failures_total{hook=\"u\",reason=\"mismatch\"} 1",
        "hookgate_auth_failures_total{hook=\"u\",reason=\"expired\"} 1",
        "hookgate_auth_failures_total{hook=\"u\",reason=\"missing\"} 1",
        "hookgate_requests_total{hook=\"u\",outcome=\"not_found\"} 3",
        // Nothing is in flight once every request is answered (the gauge is the test
        // process's; nextest runs each test in a process of its own).
        "hookgate_in_flight_requests 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from:\n{text}"
        );
    }
    assert!(!text.contains("current-key") && !text.contains("retired-key"));
    gw.stop().await.unwrap();
}
