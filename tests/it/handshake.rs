//! Provider handshakes answer as each provider expects, publish nothing unless told to,
//! and a hook's configured success answer replaces the 202.

use serde_json::json;

use crate::support::{brokers, hmac_sha256_hex, http, kafka, topic, unix_now, GatewayBuilder};

const SLACK: &str = "slack-signing-secret";
const ZOOM: &str = "zoom-secret-token";

fn slack_headers(body: &[u8]) -> (String, String) {
    let ts = unix_now();
    let mut signed = format!("v0:{ts}:").into_bytes();
    signed.extend_from_slice(body);
    (ts, format!("v0={}", hmac_sha256_hex(SLACK, &signed)))
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_url_verification_is_echoed_after_the_signature_check_and_not_published() {
    let t = topic("slack");
    let gw = GatewayBuilder::tansu()
        .kafka("partitions = 1")
        .hook(&format!(
            "id = \"slack\"\ntopic = \"{t}\"\nhandshake = {{ provider = \"slack\" }}\nauth = {{ scheme = \"hmac\", preset = \"slack\", secrets = [{{ value = \"{SLACK}\" }}] }}"
        ))
        .start()
        .await;
    let url = gw.hook_url("/hooks/slack");
    let body = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    // Unsigned: refused like any other request.
    let r = http::post(&url)
        .content_type("application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let (ts, sig) = slack_headers(body);
    let r = http::post(&url)
        .content_type("application/json")
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", &sig)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    );

    // A real event afterwards is the only thing on the topic.
    let event = br#"{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}"#;
    let (ts, sig) = slack_headers(event);
    let id = http::post(&url)
        .content_type("application/json")
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", &sig)
        .body(event.to_vec())
        .send()
        .await
        .unwrap()
        .event_id();
    let ids = kafka::ids_until(&brokers(), &t, &id);
    assert_eq!(ids, vec![id], "the handshake published nothing");
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn meta_graph_and_zoom_handshakes_answer_as_their_providers_expect() {
    let gw = GatewayBuilder::new()
        .brokers("unused:9092")
        .null_sink()
        .env("META_TOKEN", "meta-verify-token")
        .hook("id = \"meta\"\ntopic = \"t\"\nhandshake = { provider = \"meta\", verify_token = { env = \"META_TOKEN\" } }\nauth = { scheme = \"hmac\", preset = \"github\", secrets = [{ value = \"app-secret\" }] }")
        .hook("id = \"graph\"\ntopic = \"t\"\nhandshake = { provider = \"microsoft_graph\" }\nauth = { scheme = \"none\" }")
        .hook(&format!("id = \"zoom\"\ntopic = \"t\"\nhandshake = {{ provider = \"zoom\" }}\nauth = {{ scheme = \"hmac\", preset = \"zoom\", secrets = [{{ value = \"{ZOOM}\" }}] }}"))
        .start()
        .await;

    // Meta: GET with the verify token echoes the challenge; a wrong token is 403.
    let r = http::get(&gw.hook_url("/hooks/meta?hub.mode=subscribe&hub.verify_token=meta-verify-token&hub.challenge=1158201444")).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"1158201444");
    let r = http::get(
        &gw.hook_url("/hooks/meta?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403);
    // Other GETs are still not allowed on this POST hook.
    assert_eq!(
        http::get(&gw.hook_url("/hooks/meta")).await.unwrap().status,
        405
    );

    // Microsoft Graph: the decoded validation token, as plain text.
    let r = http::post(
        &gw.hook_url("/hooks/graph?validationToken=Validation%3A%20Testing%20client%20application"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"Validation: Testing client application");
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));

    // Zoom: plainToken and its HMAC-SHA256 under the secret token, hex.
    let body = br#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
    let ts = unix_now();
    let mut signed = format!("v0:{ts}:").into_bytes();
    signed.extend_from_slice(body);
    let r = http::post(&gw.hook_url("/hooks/zoom"))
        .content_type("application/json")
        .header("x-zm-request-timestamp", &ts)
        .header(
            "x-zm-signature",
            &format!("v0={}", hmac_sha256_hex(ZOOM, &signed)),
        )
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({
            "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
            "encryptedToken": hmac_sha256_hex(ZOOM, b"qgg8vlvZRS6UYooatFL8Aw")
        })
    );
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_answer_replaces_the_202_and_a_published_handshake_is_stored() {
    let t = topic("twiml");
    let gw = GatewayBuilder::tansu()
        .kafka("partitions = 1")
        .hook(&format!(
            "id = \"sms\"\ntopic = \"{t}\"\nauth = {{ scheme = \"none\" }}\nresponse = {{ status = 200, headers = {{ \"content-type\" = \"text/xml\" }}, body = \"<Response></Response>\" }}"
        ))
        .hook(&format!(
            "id = \"slack\"\ntopic = \"{t}\"\nhandshake = {{ provider = \"slack\", publish = true }}\nauth = {{ scheme = \"hmac\", preset = \"slack\", secrets = [{{ value = \"{SLACK}\" }}] }}"
        ))
        .start()
        .await;
    let r = http::post(&gw.hook_url("/hooks/sms"))
        .content_type("application/x-www-form-urlencoded")
        .body("From=%2B15551234567&Body=hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"<Response></Response>");
    assert_eq!(r.header("content-type"), Some("text/xml"));
    let sms_id = r
        .header("hookgate-event-id")
        .expect("the event id header")
        .to_string();

    let body = br#"{"challenge":"c-1","type":"url_verification"}"#;
    let (ts, sig) = slack_headers(body);
    let r = http::post(&gw.hook_url("/hooks/slack"))
        .content_type("application/json")
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", &sig)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.json(), json!({"challenge": "c-1"}));
    let records = kafka::read_n(&brokers(), &t, 2);
    assert_eq!(records[0].json()["id"], json!(sms_id));
    assert_eq!(
        records[1].json()["data"]["body"]["type"],
        "url_verification"
    );
    gw.stop().await.unwrap();
}
