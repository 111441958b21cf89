//! The contract from the consumers' side: events of every body encoding, in both modes,
//! published by the gateway to the real broker, then read back by the official
//! CloudEvents SDKs (Python with confluent-kafka, JavaScript with kafkajs) in the examples
//! under docs/examples, which compare attributes and data with what was sent and validate
//! structured events against the JSON Schema. A poller's event is among them.

use std::io::Write;
use std::process::Command;

use base64::Engine;
use serde_json::{json, Value};

use crate::support::{
    brokers, hmac_sha256_hex, http, kafka, topic, GatewayBuilder, RunningConsumer,
};

const SECRET: &str = "sdk-github-secret";

struct Sent {
    content_type: Option<&'static str>,
    content_encoding: Option<&'static str>,
    body: Vec<u8>,
    /// Structured mode: the expected `data.bodyencoding` and `data.body`.
    expected: Option<(&'static str, Value)>,
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn structured_cases() -> Vec<Sent> {
    let case = |ct: Option<&'static str>, body: &[u8], enc: &'static str, value: Value| Sent {
        content_type: ct,
        content_encoding: None,
        body: body.to_vec(),
        expected: Some((enc, value)),
    };
    vec![
        case(Some("application/json"), br#"{"a":[1,2],"s":"x"}"#, "json", json!({"a": [1, 2], "s": "x"})),
        case(Some("application/x-www-form-urlencoded"), b"a=1&a=2&b=x+y", "form", json!({"a": ["1", "2"], "b": ["x y"]})),
        case(
            Some("multipart/form-data; boundary=B"),
            b"--B\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nv\r\n--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n\x01\x02\r\n--B--\r\n",
            "multipart",
            json!({"f": ["v"], "file": [{"filename": "a.bin", "contenttype": "application/octet-stream", "base64": "AQI="}]}),
        ),
        case(Some("application/xml"), b"<r a=\"1\"><c>t</c></r>", "xml", json!({"r": {"@a": "1", "c": [{"#text": "t"}]}})),
        case(Some("text/plain; charset=iso-8859-1"), b"caf\xe9", "text", json!("café")),
        case(Some("application/octet-stream"), b"\x00\xff\x10", "base64", json!("AP8Q")),
        case(Some("application/json"), b"", "empty", Value::Null),
        Sent {
            content_type: Some("application/json"),
            content_encoding: Some("gzip"),
            body: gzip(br#"{"zipped":true}"#),
            expected: Some(("json", json!({"zipped": true}))),
        },
    ]
}

fn binary_cases() -> Vec<Sent> {
    let case = |ct: Option<&'static str>, body: Vec<u8>, ce: Option<&'static str>| Sent {
        content_type: ct,
        content_encoding: ce,
        body,
        expected: None,
    };
    vec![
        case(
            Some("application/json"),
            br#"{"action":"opened"}"#.to_vec(),
            None,
        ),
        case(
            Some("application/x-www-form-urlencoded"),
            b"payload=%7B%7D".to_vec(),
            None,
        ),
        case(
            Some("application/octet-stream"),
            (0u8..=255).collect(),
            None,
        ),
        case(None, b"\xc3\x28 not utf-8".to_vec(), None),
        case(
            Some("application/json"),
            gzip(br#"{"zipped":true}"#),
            Some("gzip"),
        ),
    ]
}

/// Runs a poller until it has fired once onto `events`; returns the event's id.
async fn poller_event(events: &str) -> String {
    use hookgate_common::config::{Environment, Source};
    let server = hookgate_testkit::server::TestServer::start(|_| {
        ::http::Response::builder()
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                br#"{"stock": 4, "sku": "m8-bolts"}"#,
            )))
            .unwrap()
    })
    .await;
    let toml = format!(
        "[kafka]\nbrokers = \"{}\"\ngroup = \"{}\"\ntopics = [\"{events}\"]\ncontrol_topic = \"{}\"\n\
         consumer_properties = {{ \"session.timeout.ms\" = 6000, \"max.poll.interval.ms\" = 10000 }}\n\
         [outbound]\nallow = [\"127.0.0.1/32\"]\n\
         [[pollers]]\nid = \"sdk-stock\"\nuri = \"{}\"\ninterval = \"100ms\"\nmode = \"edge\"\n\
         condition = \"{{{{ json(response.body).stock <= 10 }}}}\"\ntopic = \"{events}\"\ntype = \"inventory.stock.low\"\n",
        brokers(),
        topic("group"),
        topic("control"),
        server.url("/stock")
    );
    let env = Environment::default();
    let settings = hookgate_consumer::config::ConsumerConfig::load(
        &Source::Text {
            name: "sdk poller".into(),
            toml,
        },
        &env,
    )
    .and_then(|c| c.build(&env, "sdk poller"))
    .unwrap_or_else(|e| panic!("{e}"));
    let consumer = RunningConsumer::start(settings);
    let id = tokio::task::spawn_blocking({
        let events = events.to_string();
        move || {
            hookgate_testkit::kafka::read_n(&brokers(), &events, 1)[0]
                .event()
                .id
        }
    })
    .await
    .unwrap();
    consumer.stop().await.unwrap();
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_sdks_read_every_event_as_sent() {
    let (structured_topic, binary_topic) = (topic("sdk-structured"), topic("sdk-binary"));
    let rejections = topic("sdk-rejections");
    let gw = GatewayBuilder::tansu()
        .kafka("partitions = 1")
        .rejections(&format!("topic = \"{rejections}\""))
        .hook(&format!("id = \"sdk\"\ntopic = \"{structured_topic}\"\nauth = {{ scheme = \"none\" }}"))
        .hook(&format!(
            "id = \"sdk-gh\"\ntopic = \"{binary_topic}\"\nmode = \"binary\"\nauth = {{ scheme = \"hmac\", preset = \"github\", secrets = [{{ value = \"{SECRET}\" }}] }}"
        ))
        .start()
        .await;
    let mut expectations = Vec::new();
    for (i, sent) in structured_cases()
        .into_iter()
        .chain(binary_cases())
        .enumerate()
    {
        let binary = sent.expected.is_none();
        let (hook, t) = if binary {
            ("sdk-gh", &binary_topic)
        } else {
            ("sdk", &structured_topic)
        };
        let mut req = http::post(&gw.hook_url(&format!("/hooks/{hook}"))).body(sent.body.clone());
        if let Some(ct) = sent.content_type {
            req = req.content_type(ct);
        }
        if let Some(ce) = sent.content_encoding {
            req = req.header("content-encoding", ce);
        }
        let delivery = format!("delivery-{i}");
        if binary {
            req = req
                .header(
                    "x-hub-signature-256",
                    &format!("sha256={}", hmac_sha256_hex(SECRET, &sent.body)),
                )
                .header("x-github-delivery", &delivery);
        }
        let id = req.send().await.unwrap().event_id();
        let mut e = json!({
            "topic": t,
            "id": id,
            "mode": if binary { "binary" } else { "structured" },
            "type": "hookgate.webhook",
            "source": format!("/hooks/{hook}"),
            "dataschema": hookgate_event::WEBHOOK_SCHEMA,
            "hook": hook,
            "authscheme": if binary { "hmac" } else { "none" },
            "deliveryid": if binary { Value::from(delivery) } else { Value::Null },
            "signed": if binary { Value::from("body") } else { Value::Null },
            "bodyencoding": Value::Null,
            "body": Value::Null,
            "body_base64": Value::Null,
            "content_type": sent.content_type,
            "github_secret": if binary { Value::from(SECRET) } else { Value::Null },
        });
        match sent.expected {
            Some((enc, value)) => {
                e["bodyencoding"] = json!(enc);
                e["body"] = value;
            }
            None => {
                e["body_base64"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(&sent.body))
            }
        }
        expectations.push(e);
    }
    // A refused request: its rejection record, read back for its id.
    let refused = http::post(&gw.hook_url("/hooks/sdk-gh"))
        .header("x-hub-signature-256", "sha256=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status, 401);
    let record = kafka::read_n(&brokers(), &rejections, 1);
    expectations.push(json!({
        "topic": rejections,
        "id": record[0].json()["id"],
        "mode": "structured",
        "type": hookgate_event::REJECTION_TYPE,
        "source": "/hooks/sdk-gh",
        "dataschema": hookgate_event::REJECTION_SCHEMA,
        "hook": "sdk-gh",
        "authscheme": "hmac",
        "reason": "mismatch",
        "status": 401,
        "path": "/hooks/sdk-gh",
    }));
    let polls = topic("sdk-polls");
    hookgate_testkit::kafka::create_topic(&brokers(), &polls, 1).await;
    expectations.push(json!({
        "topic": polls,
        "id": poller_event(&polls).await,
        "mode": "structured",
        "type": "inventory.stock.low",
        "source": "/pollers/sdk-stock",
        "dataschema": hookgate_event::POLL_SCHEMA,
        "hook": "sdk-stock",
        "authscheme": "poll",
        "bodyencoding": "json",
        "body": {"stock": 4, "sku": "m8-bolts"},
    }));
    let dir = std::env::temp_dir().join(format!("hookgate-sdk-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let expect = dir.join("expect.json");
    std::fs::write(&expect, serde_json::to_vec_pretty(&expectations).unwrap()).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let schema = format!("{root}/event/schema/webhook-v1.json");
    let poll_schema = format!("{root}/event/schema/poll-v1.json");
    let rejection_schema = format!("{root}/event/schema/rejection-v1.json");
    let n = expectations.len();
    let verifiers = [
        ("python3", format!("{root}/docs/examples/python/verify.py")),
        ("node", format!("{root}/docs/examples/javascript/verify.js")),
    ];
    for (program, script) in verifiers {
        let out = Command::new(program)
            .arg(&script)
            .args(["--brokers", &brokers(), "--schema", &schema])
            .args(["--schema", &poll_schema, "--schema", &rejection_schema])
            .arg("--expect")
            .arg(&expect)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(&format!("{n} passed, 0 failed")),
            "{program} {script}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
    gw.stop().await.unwrap();
}
