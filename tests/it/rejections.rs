//! Refused requests as records on the rejections topic, against the real broker: one per
//! refusal with its exact reason and the request, no secret in any of them, each valid
//! against `urn:hookgate:rejection:v1`; and a flood of forged requests that cannot make
//! more records than the bucket allows, the rest counted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{brokers, hmac_sha256_hex, http, kafka, metric, topic, GatewayBuilder};

const SECRETS: [&str; 4] = [
    "planted-url-key-5c1d",
    "planted-hmac-secret-5c1d",
    "planted-basic-password-5c1d",
    "planted-api-key-5c1d",
];

/// The records on `topic`, read until `n` arrived (or 20 s).
fn records(topic: &str, n: usize) -> Vec<Value> {
    kafka::read_until(&brokers(), topic, Duration::from_secs(20), |r| r.len() >= n)
        .iter()
        .map(|r| {
            let text = String::from_utf8_lossy(&r.value);
            for secret in SECRETS {
                assert!(
                    !text.contains(secret),
                    "`{secret}` in a rejection record: {text}"
                );
            }
            assert_eq!(
                r.header_str("content-type"),
                Some(hookgate_event::STRUCTURED_CONTENT_TYPE)
            );
            serde_json::from_slice(&r.value).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_refusal_is_one_record_with_its_exact_reason_and_no_secret() {
    let (events, rejected) = (topic("refused-events"), topic("rejections"));
    let [url_key, hmac, password, api_key] = SECRETS;
    let gw = GatewayBuilder::tansu()
        .rejections(&format!("topic = \"{rejected}\""))
        .hook(&format!("id = \"u\"\ntopic = \"{events}\"\nauth = {{ scheme = \"url_key\", secrets = [{{ value = \"{url_key}\" }}, {{ value = \"retired-url-key\", expires = \"2020-01-01T00:00:00Z\" }}] }}"))
        .hook(&format!("id = \"h\"\ntopic = \"{events}\"\nauth = {{ scheme = \"hmac\", preset = \"github\", secrets = [{{ value = \"{hmac}\" }}] }}"))
        .hook(&format!("id = \"b\"\ntopic = \"{events}\"\nauth = {{ scheme = \"basic\", credentials = [{{ username = \"ci\", password = {{ value = \"{password}\" }} }}] }}"))
        .hook(&format!("id = \"a\"\ntopic = \"{events}\"\nauth = {{ scheme = \"api_key\", header = \"x-api-key\", query = \"api_key\", secrets = [{{ value = \"{api_key}\" }}] }}"))
        .hook(&format!("id = \"o\"\ntopic = \"{events}\"\nmax_body = \"1KiB\"\nauth = {{ scheme = \"none\" }}"))
        .hook(&format!("id = \"lan\"\ntopic = \"{events}\"\nallow_sources = [\"10.0.0.0/8\"]\nauth = {{ scheme = \"none\" }}"))
        .hook(&format!("id = \"slow\"\ntopic = \"{events}\"\nrate_limit = {{ per_second = 0.01, burst = 1 }}\nauth = {{ scheme = \"none\" }}"))
        .start()
        .await;
    let url = |path: &str| gw.hook_url(path);
    let post = |path: &str| http::post(&url(path));
    let signed = |body: &[u8]| format!("sha256={}", hmac_sha256_hex(hmac, body));
    let cases: Vec<(&str, u16, http::Reply)> = vec![
        (
            "not_found",
            404,
            post("/hooks/nowhere/some-key")
                .body("{}")
                .send()
                .await
                .unwrap(),
        ),
        (
            "mismatch",
            404,
            post("/hooks/u/wrong-key").body("{}").send().await.unwrap(),
        ),
        (
            "expired",
            404,
            post("/hooks/u/retired-url-key")
                .body("{}")
                .send()
                .await
                .unwrap(),
        ),
        (
            "missing",
            401,
            post("/hooks/b").body("{}").send().await.unwrap(),
        ),
        (
            "malformed",
            401,
            post("/hooks/h")
                .header("x-hub-signature-256", "sha256=zz")
                .body("{}")
                .send()
                .await
                .unwrap(),
        ),
        (
            "mismatch",
            401,
            post("/hooks/a?api_key=wrong-key")
                .header("authorization", &format!("Bearer {password}"))
                .body("{}")
                .send()
                .await
                .unwrap(),
        ),
        (
            "method_not_allowed",
            405,
            http::get(&url("/hooks/o")).await.unwrap(),
        ),
        (
            "too_large",
            413,
            post("/hooks/o")
                .body(vec![b'x'; 4096])
                .send()
                .await
                .unwrap(),
        ),
        (
            "source_not_allowed",
            403,
            post("/hooks/lan").body("{}").send().await.unwrap(),
        ),
        (
            "unsupported_encoding",
            415,
            post("/hooks/o")
                .header("content-encoding", "br")
                .body("{}")
                .send()
                .await
                .unwrap(),
        ),
        (
            "bad_body",
            400,
            post("/hooks/o")
                .content_type("application/json")
                .body("{\"n\": 1, \"oops\": }")
                .send()
                .await
                .unwrap(),
        ),
    ];
    // The rate-limited request: the first takes the only token.
    assert_eq!(
        post("/hooks/slow").body("{}").send().await.unwrap().status,
        202
    );
    let limited = post("/hooks/slow").body("{}").send().await.unwrap();
    assert_eq!(limited.status, 429);
    // A signed request refused for its timestamp is not possible with GitHub's recipe;
    // an accepted one makes no record.
    let body = br#"{"ok":true}"#;
    let ok = post("/hooks/h")
        .header("x-hub-signature-256", &signed(body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status, 202);
    for (reason, status, reply) in &cases {
        assert_eq!(reply.status, *status, "{reason}");
    }

    let expected = cases.len() + 1;
    let got = records(&rejected, expected);
    assert_eq!(got.len(), expected, "one record per refusal: {got:#?}");
    let schema: Value = serde_json::from_str(hookgate_event::REJECTION_SCHEMA_JSON).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for record in &got {
        let errors: Vec<String> = validator
            .iter_errors(record)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}: {record:#}");
        assert_eq!(record["type"], "hookgate.rejection");
    }
    // By (hook, reason), what each record says.
    let by: BTreeMap<(String, String), &Value> = got
        .iter()
        .map(|r| {
            (
                (
                    r["hook"].as_str().unwrap().to_string(),
                    r["data"]["reason"].as_str().unwrap().to_string(),
                ),
                r,
            )
        })
        .collect();
    let get = |hook: &str, reason: &str| {
        *by.get(&(hook.to_string(), reason.to_string()))
            .unwrap_or_else(|| panic!("no record for {hook} {reason}: {got:#?}"))
    };
    let unknown = get("(none)", "not_found");
    assert_eq!(unknown["source"], "/hooks");
    assert_eq!(unknown["data"]["path"], "/hooks/nowhere/[redacted]");
    let wrong_key = get("u", "mismatch");
    assert_eq!(wrong_key["data"]["status"], 404);
    assert_eq!(wrong_key["data"]["path"], "/hooks/u/[redacted]");
    assert_eq!(wrong_key["data"]["detail"], "URL key mismatch");
    assert_eq!(
        get("u", "expired")["data"]["detail"],
        "URL key matches only an expired secret"
    );
    assert_eq!(get("b", "missing")["data"]["detail"], "missing credential");
    let malformed = get("h", "malformed");
    assert_eq!(malformed["data"]["detail"], "malformed signature");
    assert_eq!(malformed["data"]["bodysample"], "{}");
    assert_eq!(malformed["data"]["bodysampleencoding"], "utf8");
    assert_eq!(malformed["authscheme"], "hmac");
    let api = get("a", "mismatch");
    assert_eq!(api["data"]["query"]["api_key"], json!(["[redacted]"]));
    assert_eq!(
        api["data"]["headers"]["authorization"],
        json!(["[redacted]"])
    );
    assert_eq!(api["data"]["client"], "127.0.0.1");
    assert_eq!(get("o", "method_not_allowed")["data"]["method"], "GET");
    let large = get("o", "too_large");
    assert_eq!(large["data"]["bodysize"], 4096);
    assert_eq!(
        large["data"]["bodysample"],
        Value::Null,
        "refused before its body was read"
    );
    assert_eq!(get("lan", "source_not_allowed")["data"]["status"], 403);
    assert_eq!(get("o", "unsupported_encoding")["data"]["status"], 415);
    let bad = get("o", "bad_body");
    assert!(
        bad["data"]["detail"].as_str().unwrap().contains("at byte"),
        "{bad:#}"
    );
    assert_eq!(get("slow", "rate_limited")["data"]["status"], 429);
    let metrics = crate::support::http::get(&format!("{}/metrics", gw.admin_url))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("hookgate_rejection_records_total{hook=\"u\",reason=\"expired\"} 1"),
        "{text}"
    );
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_forged_requests_makes_no_more_records_than_the_bucket_allows() {
    let (events, rejected) = (topic("flood-events"), topic("flood-rejections"));
    let gw = GatewayBuilder::tansu()
        .rejections(&format!("topic = \"{rejected}\"\nper_second = 5"))
        .hook(&format!("id = \"h\"\ntopic = \"{events}\"\nauth = {{ scheme = \"hmac\", preset = \"github\", secrets = [{{ value = \"flood-secret\" }}] }}"))
        .start()
        .await;
    let url = gw.hook_url("/hooks/h");
    let started = Instant::now();
    let senders: Vec<_> = (0..16)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                for i in 0..625 {
                    let body = format!("{{\"n\":{i}}}");
                    let r = http::post(&url)
                        .header("x-hub-signature-256", &format!("sha256={}", "0".repeat(64)))
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status, 401);
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    // A bucket of 5 a second holds 5 and gains 5 a second.
    let cap = (5.0 + 5.0 * seconds).ceil() as usize;
    let got = kafka::read_until(&brokers(), &rejected, Duration::from_secs(5), |r| {
        r.len() > cap
    });
    assert!(
        !got.is_empty() && got.len() <= cap,
        "{} records for 10,000 forged requests in {seconds:.1} s (at most {cap})",
        got.len()
    );
    let dropped = metric(
        &gw.admin_url,
        "hookgate_rejection_records_dropped_total{cause=\"rate_limited\"}",
    )
    .await
    .unwrap_or(0.0);
    assert_eq!(
        dropped as usize + got.len(),
        10_000,
        "every refusal is a record or counted"
    );
    gw.stop().await.unwrap();
}
