//! The event contract, read back from the real broker: one request per content type, and
//! the event each one became, field by field, validated against the JSON Schema.

use std::io::Write;

use bytes::Bytes;
use hookgate_event::EventData;
use serde_json::{json, Value};

use crate::support::{brokers, http, kafka, topic, GatewayBuilder};

fn schema() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(hookgate_event::WEBHOOK_SCHEMA_JSON).unwrap();
    jsonschema::validator_for(&schema).expect("the schema compiles")
}

fn assert_valid(validator: &jsonschema::Validator, event: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(event)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "event violates the schema: {errors:?}\n{event:#}"
    );
}

struct Case {
    name: &'static str,
    content_type: Option<&'static str>,
    body: Bytes,
    encoding: &'static str,
    expected: Value,
    event_type: &'static str,
}

fn multipart_body() -> Bytes {
    Bytes::from_static(
        b"--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nQ3 report\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"doc\"; filename=\"r.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\x02\r\n\
--XyZ--\r\n",
    )
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "json",
            content_type: Some("application/json"),
            body: Bytes::from_static(
                br#"{"kind":"order.created","total":42.50,"items":[{"sku":"a"}]}"#,
            ),
            encoding: "json",
            expected: json!({"kind": "order.created", "total": 42.50, "items": [{"sku": "a"}]}),
            event_type: "order.created",
        },
        Case {
            name: "suffix json",
            content_type: Some("application/vnd.api+json"),
            body: Bytes::from_static(b"[1,2,3]"),
            encoding: "json",
            expected: json!([1, 2, 3]),
            event_type: "test.default",
        },
        Case {
            name: "xml",
            content_type: Some("application/xml"),
            body: Bytes::from_static(
                br#"<order id="7"><item sku="a">2</item><item sku="b"/></order>"#,
            ),
            encoding: "xml",
            expected: json!({"order": {"@id": "7", "item": [{"@sku": "a", "#text": "2"}, {"@sku": "b"}]}}),
            event_type: "test.default",
        },
        Case {
            name: "text xml",
            content_type: Some("text/xml; charset=utf-8"),
            body: Bytes::from_static(b"<a>x</a>"),
            encoding: "xml",
            expected: json!({"a": {"#text": "x"}}),
            event_type: "test.default",
        },
        Case {
            name: "form",
            content_type: Some("application/x-www-form-urlencoded"),
            body: Bytes::from_static(b"a=1&a=2&b=x+y&kind=form.posted"),
            encoding: "form",
            expected: json!({"a": ["1", "2"], "b": ["x y"], "kind": ["form.posted"]}),
            event_type: "test.default",
        },
        Case {
            name: "multipart",
            content_type: Some("multipart/form-data; boundary=XyZ"),
            body: multipart_body(),
            encoding: "multipart",
            expected: json!({
                "title": ["Q3 report"],
                "doc": [{"filename": "r.bin", "contenttype": "application/octet-stream", "base64": "AAEC"}]
            }),
            event_type: "test.default",
        },
        Case {
            name: "latin-1 text",
            content_type: Some("text/plain; charset=iso-8859-1"),
            body: Bytes::from_static(b"caf\xe9 \"quoted\""),
            encoding: "text",
            expected: json!("café \"quoted\""),
            event_type: "test.default",
        },
        Case {
            name: "binary",
            content_type: Some("application/octet-stream"),
            body: Bytes::from_static(b"\x00\x01\x02\xff"),
            encoding: "base64",
            expected: json!("AAEC/w=="),
            event_type: "test.default",
        },
        Case {
            name: "empty",
            content_type: Some("application/json"),
            body: Bytes::new(),
            encoding: "empty",
            expected: Value::Null,
            event_type: "test.default",
        },
        Case {
            name: "no content type, JSON",
            content_type: None,
            body: Bytes::from_static(br#"{"kind":"sniffed"}"#),
            encoding: "json",
            expected: json!({"kind": "sniffed"}),
            event_type: "sniffed",
        },
        Case {
            name: "no content type, not JSON",
            content_type: None,
            body: Bytes::from_static(b"hello"),
            encoding: "base64",
            expected: json!("aGVsbG8="),
            event_type: "test.default",
        },
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_content_type_becomes_the_documented_event() {
    let topic = topic("contract");
    let gw = GatewayBuilder::tansu()
        .hook(&format!(
            r#"id = "contract"
topic = "{topic}"
key = {{ header = "x-delivery" }}
type = {{ pointer = "/kind", default = "test.default" }}
redact_headers = ["x-private"]
auth = {{ scheme = "none" }}"#
        ))
        .start()
        .await;
    let validator = schema();
    let cases = cases();
    let mut sent = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let mut req = http::post(&gw.hook_url("/hooks/contract?token=t0k3n&x=1&x=2"))
            .header("x-delivery", &format!("delivery-{i}"))
            .header("authorization", "Bearer very-secret")
            .header("cookie", "session=abc")
            .header("x-private", "also-secret")
            .header("x-hub-signature-256", "sha256=00ff")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .body(case.body.clone());
        if let Some(ct) = case.content_type {
            req = req.content_type(ct);
        }
        let reply = req.send().await.unwrap();
        assert_eq!(reply.status, 202, "{}: {:?}", case.name, reply.body);
        sent.push(reply.event_id());
    }
    let records = kafka::read_n(&brokers(), &topic, cases.len());
    for (i, (case, id)) in cases.iter().zip(&sent).enumerate() {
        let name = case.name;
        let record = records
            .iter()
            .find(|r| r.json()["id"] == json!(id))
            .unwrap_or_else(|| panic!("{name}: event {id} not on the topic"));
        assert_eq!(
            record.header_str("content-type"),
            Some(hookgate_event::STRUCTURED_CONTENT_TYPE),
            "{name}"
        );
        let event = record.json();
        assert_valid(&validator, &event);
        assert_eq!(event["id"], json!(id), "{name}");
        assert_eq!(event["type"], json!(case.event_type), "{name}");
        assert_eq!(event["source"], "/hooks/contract");
        assert_eq!(event["hook"], "contract");
        assert_eq!(event["authscheme"], "none");
        assert_eq!(
            event["traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        let data = &event["data"];
        assert_eq!(data["bodyencoding"], json!(case.encoding), "{name}");
        assert_eq!(data["body"], case.expected, "{name}");
        assert_eq!(data["method"], "POST");
        assert_eq!(data["path"], "/hooks/contract");
        assert_eq!(
            data["query"],
            json!({"token": ["[redacted]"], "x": ["1", "2"]}),
            "{name}"
        );
        let headers = &data["headers"];
        assert_eq!(headers["authorization"], json!(["[redacted]"]));
        assert_eq!(headers["cookie"], json!(["[redacted]"]));
        assert_eq!(headers["x-private"], json!(["[redacted]"]));
        assert_eq!(
            headers["x-hub-signature-256"],
            json!(["sha256=00ff"]),
            "signatures are kept"
        );
        let key = format!("delivery-{i}");
        assert_eq!(record.key.as_deref(), Some(key.as_bytes()), "{name}");
        let text = String::from_utf8_lossy(&record.value);
        for secret in ["very-secret", "also-secret", "t0k3n", "session=abc"] {
            assert!(
                !text.contains(secret),
                "{name}: `{secret}` leaked into the event"
            );
        }
    }
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_bodies_are_decoded_before_normalization() {
    let topic = topic("gzip");
    let gw = GatewayBuilder::tansu()
        .hook(&format!(
            "id = \"gz\"\ntopic = \"{topic}\"\nauth = {{ scheme = \"none\" }}"
        ))
        .start()
        .await;
    let id = http::post(&gw.hook_url("/hooks/gz"))
        .content_type("application/json")
        .header("content-encoding", "gzip")
        .body(gzip(br#"{"zipped":true}"#))
        .send()
        .await
        .unwrap()
        .event_id();
    let event = kafka::read_n(&brokers(), &topic, 1)[0].json();
    assert_eq!(event["id"], json!(id));
    assert_eq!(event["data"]["body"], json!({"zipped": true}));
    assert_eq!(event["data"]["bodyencoding"], "json");
    assert_valid(&schema(), &event);
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_mode_carries_the_exact_bytes_and_ce_headers() {
    let topic = topic("binary");
    let gw = GatewayBuilder::tansu()
        .hook(&format!(
            r#"id = "bin"
topic = "{topic}"
mode = "binary"
key = "hook_id"
type = "vendor.blob"
auth = {{ scheme = "none" }}"#
        ))
        .start()
        .await;
    let body = gzip(b"\x00raw bytes, \xff not text");
    let id = http::post(&gw.hook_url("/hooks/bin?q=1"))
        .content_type("application/octet-stream")
        .header("content-encoding", "gzip")
        .header("x-signature", "v1=abc")
        .header("authorization", "Basic c2VjcmV0")
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .event_id();
    let record = &kafka::read_n(&brokers(), &topic, 1)[0];
    assert_eq!(
        record.value, body,
        "binary mode keeps the body exactly as received"
    );
    assert_eq!(record.key.as_deref(), Some(&b"bin"[..]));
    assert_eq!(record.header_str("ce_specversion"), Some("1.0"));
    assert_eq!(record.header_str("ce_id"), Some(id.as_str()));
    assert_eq!(record.header_str("ce_type"), Some("vendor.blob"));
    assert_eq!(record.header_str("ce_source"), Some("/hooks/bin"));
    assert_eq!(
        record.header_str("ce_dataschema"),
        Some(hookgate_event::WEBHOOK_SCHEMA)
    );
    assert_eq!(record.header_str("ce_httpmethod"), Some("POST"));
    assert_eq!(record.header_str("ce_httppath"), Some("/hooks/bin"));
    assert_eq!(record.header_str("ce_httpquery"), Some("q=1"));
    assert_eq!(
        record.header_str("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(record.header_str("http-content-encoding"), Some("gzip"));
    assert_eq!(record.header_str("http-x-signature"), Some("v1=abc"));
    assert_eq!(record.header_str("http-authorization"), Some("[redacted]"));
    let event = record.event();
    assert_eq!(event.id, id);
    assert_eq!(event.extension("hook"), Some("bin"));
    let EventData::Binary { body: decoded, .. } = event.data else {
        panic!("binary data")
    };
    assert_eq!(decoded, body);
    gw.stop().await.unwrap();
}
