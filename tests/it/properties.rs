//! Generated properties of the whole in-process pipeline, on the in-memory sink: every
//! request the gateway accepts becomes exactly one event that validates against the
//! webhook schema and reads back to the request (method, path, query, headers, body);
//! every request it refuses gets a 4xx and publishes nothing. Bodies of every content type
//! are generated, alone and gzip-compressed, and each normalizer's output is checked
//! against an oracle built from what the generator put in.
//!
//! `PROPTEST_CASES` sets the cases per property (256 by default; the full run uses 10⁵).

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine;
use bytes::Bytes;
use hookgate_common::config::{Environment, Source};
use hookgate_event::{EventData, REDACTED};
use hookgate_event::{REDACTED_HEADERS, REDACTED_QUERY};
use hookgate_gateway::config::Config;
use hookgate_gateway::pipeline::{Gateway, Limits, Live};
use hookgate_gateway::sink::{MemorySink, Sink, StoredRecord};
use http_body_util::Full;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Map, Value};

const HOOKS: &str = r#"
[kafka]
brokers = "unused:9092"
[[hooks]]
id = "s"
topic = "t.s"
methods = ["POST", "PUT", "PATCH", "GET"]
type = { header = "x-event" }
auth = { scheme = "none" }
[[hooks]]
id = "b"
topic = "t.b"
mode = "binary"
methods = ["POST", "PUT", "PATCH", "GET"]
type = { header = "x-event" }
auth = { scheme = "none" }
"#;

/// The gateway on a memory sink, and a runtime to drive it.
struct Harness {
    gateway: Gateway,
    runtime: tokio::runtime::Runtime,
    schema: jsonschema::Validator,
}

impl Harness {
    fn new() -> Harness {
        let env = Environment::default();
        let source = Source::Text {
            name: "properties".into(),
            toml: HOOKS.into(),
        };
        let settings = Config::load(&source, &env)
            .unwrap()
            .build(&env, "properties")
            .unwrap();
        let limits = Limits {
            max_in_flight: 16,
            body_read_timeout: std::time::Duration::from_secs(5),
            max_record_bytes: 4 << 20,
        };
        let gateway = Gateway::new(
            Live::new(settings.hooks, Default::default()),
            Sink::Memory(MemorySink::new()),
            limits,
        );
        let schema: Value = serde_json::from_str(hookgate_event::WEBHOOK_SCHEMA_JSON).unwrap();
        Harness {
            gateway,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            schema: jsonschema::validator_for(&schema).unwrap(),
        }
    }

    /// Sends `req` to hook `hook` and returns the status and what was published.
    fn send(&self, hook: &str, req: &Req) -> (u16, Vec<StoredRecord>) {
        let mut uri = format!("/hooks/{hook}");
        if let Some(q) = &req.query {
            uri.push('?');
            uri.push_str(q);
        }
        let mut builder = http::Request::builder().method(req.method).uri(uri);
        if let Some(ct) = &req.content_type {
            builder = builder.header("content-type", ct.as_str());
        }
        if req.gzip {
            builder = builder.header("content-encoding", "gzip");
        }
        for (name, value) in &req.headers {
            builder = builder.header(name.as_str(), value.as_slice());
        }
        let http_req = builder.body(Full::new(req.wire_body())).unwrap();
        let status = self
            .runtime
            .block_on(self.gateway.handle(http_req, None))
            .status();
        let Sink::Memory(memory) = self.gateway.sink() else {
            unreachable!()
        };
        (status.as_u16(), memory.take())
    }
}

/// One generated request.
#[derive(Debug, Clone)]
struct Req {
    method: &'static str,
    query: Option<String>,
    content_type: Option<String>,
    /// Sender headers besides content-type and content-encoding.
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    gzip: bool,
    /// What the body's normalizer must make of it, when the generator knows.
    expect: Expect,
}

#[derive(Debug, Clone)]
enum Expect {
    /// Anything the precedence table allows; checked by the general oracle only.
    Any,
    /// `bodyencoding` and `body`, exactly.
    Exactly(&'static str, Value),
}

impl Req {
    fn wire_body(&self) -> Bytes {
        if !self.gzip {
            return Bytes::from(self.body.clone());
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&self.body).unwrap();
        Bytes::from(gz.finish().unwrap())
    }

    /// The request's headers as the event must show them: `{name: [values]}`, names
    /// lowercase, values as UTF-8 (invalid bytes replaced).
    fn event_headers(&self) -> Value {
        let mut all: Vec<(String, String)> = Vec::new();
        if let Some(ct) = &self.content_type {
            all.push(("content-type".into(), ct.clone()));
        }
        if self.gzip {
            all.push(("content-encoding".into(), "gzip".into()));
        }
        for (name, value) in &self.headers {
            let value = if REDACTED_HEADERS.contains(&name.as_str()) {
                REDACTED.to_string()
            } else {
                String::from_utf8_lossy(value).into_owned()
            };
            all.push((name.clone(), value));
        }
        grouped(all)
    }

    fn event_query(&self) -> Value {
        let query = self.query.as_deref().unwrap_or("");
        grouped(form_urlencoded::parse(query.as_bytes()).map(|(k, v)| {
            let secret = REDACTED_QUERY.iter().any(|q| q.eq_ignore_ascii_case(&k));
            (k.into(), if secret { REDACTED.into() } else { v.into() })
        }))
    }
}

/// `{name: [values in order]}`.
fn grouped(pairs: impl IntoIterator<Item = (String, String)>) -> Value {
    let mut map: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (k, v) in pairs {
        map.entry(k).or_default().push(Value::String(v));
    }
    json!(map)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// ---- Generators ----------------------------------------------------------------------

/// Text without control characters (which make a text body fall back to base64), with
/// JSON's and XML's special characters and some non-ASCII.
fn plain_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            8 => prop::char::range('a', 'z'),
            2 => prop::sample::select(vec![' ', '\t', '\n', '"', '\\', '&', '<', '>', '\'', '=', '%', '+', '/', ';']),
            2 => prop::sample::select(vec!['é', 'ü', '€', 'ß', '日', '本', '😀', '\u{a0}', '\u{2028}']),
        ],
        0..max,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        // Eighths print and parse back exactly (serde_json's default float parsing is
        // not correctly rounded for every literal).
        any::<i32>().prop_map(|n| Value::from(f64::from(n) / 8.0)),
        plain_text(12).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(plain_text(8), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_body() -> impl Strategy<Value = (Option<String>, Vec<u8>, Expect)> {
    (
        json_value(),
        prop::sample::select(vec![
            "application/json",
            "application/vnd.api+json; charset=utf-8",
        ]),
    )
        .prop_map(|(v, ct)| {
            let body = serde_json::to_vec(&v).unwrap();
            (Some(ct.to_string()), body, Expect::Exactly("json", v))
        })
}

fn form_body() -> impl Strategy<Value = (Option<String>, Vec<u8>, Expect)> {
    prop::collection::vec((plain_text(8), plain_text(16)), 1..8).prop_map(|pairs| {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &pairs {
            ser.append_pair(k, v);
        }
        let body = ser.finish().into_bytes();
        let expect = form_expectation(&body, grouped(pairs));
        (
            Some("application/x-www-form-urlencoded".into()),
            body,
            expect,
        )
    })
}

/// A form's normalized body, unless it grew past the bound that makes it fall back to
/// base64 (a body of many tiny fields).
fn form_expectation(body: &[u8], fields: Value) -> Expect {
    let made = serde_json::to_vec(&fields).unwrap().len();
    if made > 2 * body.len() + hookgate_gateway::normalize::GROWTH_SLACK {
        Expect::Exactly("base64", Value::String(b64(body)))
    } else {
        Expect::Exactly("form", fields)
    }
}

fn text_body() -> impl Strategy<Value = (Option<String>, Vec<u8>, Expect)> {
    (
        plain_text(200).prop_filter("not empty", |s| !s.is_empty()),
        prop::sample::select(vec![
            "utf-8",
            "iso-8859-1",
            "windows-1252",
            "utf-16le",
            "shift_jis",
            "koi8-r",
        ]),
        prop::sample::select(vec!["text/plain", "text/csv", "text/markdown"]),
    )
        .prop_map(|(text, charset, essence)| {
            let ct = Some(format!("{essence}; charset={charset}"));
            if charset == "utf-16le" {
                // encoding_rs encodes no UTF-16 (the web never sends it); by hand.
                let bytes = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
                return (ct, bytes, Expect::Exactly("text", Value::String(text)));
            }
            let encoding = encoding_rs::Encoding::for_label(charset.as_bytes()).unwrap();
            let (bytes, _, unmappable) = encoding.encode(&text);
            let bytes = bytes.into_owned();
            // Where the charset lacks a character, encoding_rs wrote a numeric reference:
            // the bytes still decode, to that text.
            let text = if unmappable {
                encoding.decode_without_bom_handling(&bytes).0.into_owned()
            } else {
                text
            };
            (ct, bytes, Expect::Exactly("text", Value::String(text)))
        })
}

/// An XML element: name, attributes, and children (elements or text runs).
#[derive(Debug, Clone)]
enum Node {
    Element(String, BTreeMap<String, String>, Vec<Node>),
    Text(String),
}

fn xml_name() -> impl Strategy<Value = String> {
    "(ns:)?[a-zA-Z_][a-zA-Z0-9._-]{0,6}"
}

fn xml_element() -> impl Strategy<Value = Node> {
    let leaf = (
        xml_name(),
        prop::collection::btree_map("[a-z]{1,4}", plain_text(10), 0..3),
    )
        .prop_map(|(n, a)| Node::Element(n, a, Vec::new()));
    leaf.prop_recursive(4, 40, 5, |inner| {
        (
            xml_name(),
            prop::collection::btree_map("[a-z]{1,4}", plain_text(10), 0..3),
            prop::collection::vec(
                prop_oneof![inner, plain_text(12).prop_map(Node::Text)],
                0..5,
            ),
        )
            .prop_map(|(n, a, c)| Node::Element(n, a, c))
    })
}

fn xml_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            // Attribute values are normalized by XML: keep their whitespace literal.
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            c => out.push(c),
        }
    }
}

fn write_xml(node: &Node, out: &mut String) {
    match node {
        Node::Text(t) => xml_escape(t, out),
        Node::Element(name, attrs, children) => {
            out.push('<');
            out.push_str(name);
            for (k, v) in attrs {
                out.push(' ');
                out.push_str(k);
                out.push_str("=\"");
                xml_escape(v, out);
                out.push('"');
            }
            out.push('>');
            for child in children {
                write_xml(child, out);
            }
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
    }
}

fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// hookgate's XML shape of `node` (see `src/normalize/xml.rs`).
fn xml_shape(node: &Node) -> Value {
    let Node::Element(_, attrs, children) = node else {
        unreachable!("only elements have a shape")
    };
    let mut obj = Map::new();
    for (k, v) in attrs {
        obj.insert(format!("@{k}"), Value::String(v.clone()));
    }
    let mut text = String::new();
    let mut texts: Vec<String> = Vec::new();
    for child in children {
        match child {
            Node::Text(t) => text.push_str(t),
            Node::Element(name, ..) => {
                texts.push(std::mem::take(&mut text));
                let entry = obj
                    .entry(name.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                entry.as_array_mut().unwrap().push(xml_shape(child));
            }
        }
    }
    texts.push(text);
    // Adjacent text runs are one run; a run of whitespace alone between tags is dropped.
    let joined: String = texts
        .iter()
        .filter(|t| !t.chars().all(is_xml_space))
        .map(String::as_str)
        .collect();
    let trimmed = joined.trim_matches(is_xml_space);
    if !trimmed.is_empty() {
        obj.insert("#text".into(), Value::String(trimmed.into()));
    }
    Value::Object(obj)
}

fn xml_body() -> impl Strategy<Value = (Option<String>, Vec<u8>, Expect)> {
    (
        xml_element(),
        prop::sample::select(vec!["application/xml", "text/xml", "application/atom+xml"]),
        any::<bool>(),
    )
        .prop_map(|(root, ct, declaration)| {
            let mut doc = String::new();
            if declaration {
                doc.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
            }
            write_xml(&root, &mut doc);
            let Node::Element(name, ..) = &root else {
                unreachable!()
            };
            let shape = json!({ name.clone(): xml_shape(&root) });
            let body = doc.into_bytes();
            let made = serde_json::to_vec(&shape).unwrap().len();
            let expect = if made > 2 * body.len() + hookgate_gateway::normalize::GROWTH_SLACK {
                Expect::Exactly("base64", Value::String(b64(&body)))
            } else {
                Expect::Exactly("xml", shape)
            };
            (Some(ct.to_string()), body, expect)
        })
}

/// A multipart part: a text field, or a file with bytes and maybe a content type.
#[derive(Debug, Clone)]
enum Part {
    Field(String, String),
    File(String, String, Option<String>, Vec<u8>),
}

fn multipart_body() -> impl Strategy<Value = (Option<String>, Vec<u8>, Expect)> {
    let part = prop_oneof![
        ("[a-z]{1,6}", plain_text(40)).prop_map(|(n, v)| Part::Field(n, v)),
        (
            "[a-z]{1,6}",
            "[a-z]{1,8}\\.(bin|png|txt)",
            prop::option::of(prop::sample::select(vec![
                "application/octet-stream".to_string(),
                "image/png".to_string(),
            ])),
            prop::collection::vec(any::<u8>(), 0..200),
        )
            .prop_map(|(n, f, ct, b)| Part::File(n, f, ct, b)),
    ];
    (
        prop::collection::vec(part, 0..6),
        "[A-Za-z0-9]{24,40}",
    )
        .prop_map(|(parts, boundary)| {
            let mut body = Vec::new();
            let mut fields: BTreeMap<String, Vec<Value>> = BTreeMap::new();
            for part in &parts {
                body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
                match part {
                    Part::Field(name, value) => {
                        body.extend_from_slice(
                            format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                                .as_bytes(),
                        );
                        body.extend_from_slice(value.as_bytes());
                        fields
                            .entry(name.clone())
                            .or_default()
                            .push(Value::String(value.clone()));
                    }
                    Part::File(name, filename, ct, bytes) => {
                        body.extend_from_slice(
                            format!(
                                "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
                            )
                            .as_bytes(),
                        );
                        if let Some(ct) = ct {
                            body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
                        }
                        body.extend_from_slice(b"\r\n");
                        body.extend_from_slice(bytes);
                        fields.entry(name.clone()).or_default().push(json!({
                            "filename": filename,
                            "contenttype": ct,
                            "base64": b64(bytes),
                        }));
                    }
                }
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
            let shape = json!(fields);
            let made = serde_json::to_vec(&shape).unwrap().len();
            let expect = if made > 2 * body.len() + hookgate_gateway::normalize::GROWTH_SLACK {
                Expect::Exactly("base64", Value::String(b64(&body)))
            } else {
                Expect::Exactly("multipart", shape)
            };
            let ct = format!("multipart/form-data; boundary={boundary}");
            (Some(ct), body, expect)
        })
}

/// Bytes of any kind under any (or no) content type: what a confused or hostile sender
/// posts. The gateway may refuse them (400), but never publishes a bad event.
fn any_body() -> impl Strategy<Value = (Option<String>, Vec<u8>, Expect)> {
    (
        prop::option::of(prop::sample::select(vec![
            "application/json".to_string(),
            "application/xml".to_string(),
            "application/x-www-form-urlencoded".to_string(),
            "multipart/form-data; boundary=x".to_string(),
            "multipart/form-data".to_string(),
            "text/plain; charset=utf-8".to_string(),
            "text/plain; charset=nonsense".to_string(),
            "application/octet-stream".to_string(),
            "image/png".to_string(),
            ";;=".to_string(),
        ])),
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            plain_text(100).prop_map(String::into_bytes),
        ],
    )
        .prop_map(|(ct, body)| {
            let expect = match ct.as_deref() {
                Some("application/octet-stream" | "image/png") if !body.is_empty() => {
                    Expect::Exactly("base64", Value::String(b64(&body)))
                }
                _ if body.is_empty() => Expect::Exactly("empty", Value::Null),
                _ => Expect::Any,
            };
            (ct, body, expect)
        })
}

/// Header values HTTP allows: visible ASCII, spaces, tabs and obs-text bytes.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    let allowed: Vec<u8> = (0x20..=0x7e).chain(0x80..=0xff).chain([b'\t']).collect();
    prop::collection::vec(prop::sample::select(allowed), 0..40)
}

/// Query strings: encoded pairs, or raw text with stray `%`, `+`, `&` and `=`.
fn query() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        prop::collection::vec((plain_text(8), plain_text(12)), 0..5).prop_map(|pairs| {
            let mut ser = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &pairs {
                ser.append_pair(k, v);
            }
            ser.finish()
        }),
        "[a-zA-Z0-9%&=+._~!$'()*,;:@/?-]{0,40}",
    ])
}

fn request() -> impl Strategy<Value = Req> {
    (
        prop::sample::select(vec!["POST", "PUT", "PATCH", "GET"]),
        query(),
        prop::collection::vec(
            (
                prop_oneof![
                    "[a-z][a-z0-9-]{0,12}".prop_filter("content headers are set apart", |n| {
                        !n.starts_with("content-") && n != "traceparent"
                    }),
                    // The type's header, and credentials the event must not show.
                    prop::sample::select(vec!["x-event", "authorization", "x-api-key", "cookie"])
                        .prop_map(String::from),
                ],
                header_value(),
            ),
            0..8,
        ),
        prop_oneof![
            json_body(),
            form_body(),
            text_body(),
            xml_body(),
            multipart_body(),
            any_body()
        ],
        any::<bool>(),
    )
        .prop_map(
            |(method, query, headers, (content_type, body, expect), gzip)| Req {
                method,
                query,
                content_type,
                headers,
                body,
                gzip,
                expect,
            },
        )
}

// ---- Oracles -------------------------------------------------------------------------

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if cond {
        Ok(())
    } else {
        Err(TestCaseError::fail(what()))
    }
}

/// The first `x-event` header, trimmed, becomes the type when it is 1–256 bytes of
/// visible ASCII.
fn expected_type(req: &Req) -> String {
    req.headers
        .iter()
        .find(|(n, _)| n == "x-event")
        .and_then(|(_, v)| {
            v.iter()
                .all(|b| (0x20..0x7f).contains(b) || *b == b'\t')
                .then_some(v)
        })
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .unwrap_or(hookgate_event::DEFAULT_TYPE)
        .to_string()
}

/// The event in `record`, as a consumer decodes it.
fn read_back(record: &StoredRecord) -> Result<hookgate_event::Event, TestCaseError> {
    let read = hookgate_testkit::kafka::Read {
        key: record.key.clone(),
        value: record.value.clone(),
        headers: record.headers.clone(),
    };
    read.try_event()
        .map_err(|e| TestCaseError::fail(format!("decode: {e}")))
}

fn structured_event(h: &Harness, req: &Req) -> Result<(), TestCaseError> {
    let (status, records) = h.send("s", req);
    if status != 202 {
        // Refused: a 4xx (the sender's fault: a bad body), and nothing published.
        check((400..500).contains(&status), || format!("status {status}"))?;
        check(records.is_empty(), || "a refused request published".into())?;
        // What the generator made well-formed is never refused.
        return check(matches!(req.expect, Expect::Any), || {
            format!("well-formed body refused with {status}")
        });
    }
    check(records.len() == 1, || format!("{} records", records.len()))?;
    let record = &records[0];
    let event: Value = serde_json::from_slice(&record.value)
        .map_err(|e| TestCaseError::fail(format!("value is not JSON: {e}")))?;
    let errors: Vec<String> = h
        .schema
        .iter_errors(&event)
        .map(|e| e.to_string())
        .collect();
    check(errors.is_empty(), || {
        format!("schema: {errors:?}\n{event:#}")
    })?;
    let decoded = read_back(record)?;
    check(decoded.event_type == expected_type(req), || {
        format!("type {}", decoded.event_type)
    })?;
    let EventData::Json(data) = decoded.data else {
        return Err(TestCaseError::fail("structured event without JSON data"));
    };
    prop_assert_eq!(&data["method"], req.method);
    prop_assert_eq!(&data["path"], "/hooks/s");
    prop_assert_eq!(&data["query"], &req.event_query());
    prop_assert_eq!(&data["headers"], &req.event_headers());
    let encoding = data["bodyencoding"].as_str().unwrap_or_default();
    if encoding == "base64" {
        // Lossless whatever the type: the bytes after decompression, exactly.
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data["body"].as_str().unwrap_or_default())
            .map_err(|e| TestCaseError::fail(format!("base64: {e}")))?;
        prop_assert_eq!(&bytes, &req.body);
    }
    if let Expect::Exactly(want_encoding, want_body) = &req.expect {
        prop_assert_eq!(encoding, *want_encoding);
        prop_assert_eq!(&data["body"], want_body);
    }
    Ok(())
}

fn binary_event(h: &Harness, req: &Req) -> Result<(), TestCaseError> {
    let (status, records) = h.send("b", req);
    // Binary mode does not parse the body: whatever its type, it is published as sent.
    prop_assert_eq!(status, 202);
    check(records.len() == 1, || format!("{} records", records.len()))?;
    let record = &records[0];
    prop_assert_eq!(&record.value[..], &req.wire_body()[..]);
    let decoded = read_back(record)?;
    prop_assert_eq!(&decoded.event_type, &expected_type(req));
    prop_assert_eq!(decoded.extension("httpmethod"), Some(req.method));
    prop_assert_eq!(decoded.extension("httppath"), Some("/hooks/b"));
    let query = decoded.extension("httpquery").unwrap_or("");
    let query =
        grouped(form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into(), v.into())));
    prop_assert_eq!(query, req.event_query());
    let EventData::Binary { body, headers } = decoded.data else {
        return Err(TestCaseError::fail("binary event without binary data"));
    };
    prop_assert_eq!(&body[..], &req.wire_body()[..]);
    let headers = grouped(
        headers
            .iter()
            .flat_map(|(n, vs)| vs.iter().map(move |v| (n.to_string(), v.to_string()))),
    );
    prop_assert_eq!(headers, req.event_headers());
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256)
}

thread_local! {
    static HARNESS: Harness = Harness::new();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Every accepted request is one event that validates against webhook-v1 and reads
    /// back to the request; every generated well-formed body is accepted and normalized
    /// as its normalizer documents; refused requests publish nothing.
    #[test]
    fn every_structured_event_validates_and_reads_back(req in request()) {
        HARNESS.with(|h| structured_event(h, &req))?;
    }

    /// Binary mode publishes the body byte for byte and carries method, path, query and
    /// headers in record headers that read back to the request.
    #[test]
    fn every_binary_event_reads_back_byte_for_byte(req in request()) {
        HARNESS.with(|h| binary_event(h, &req))?;
    }
}
