//! The fuzz targets: each takes arbitrary bytes, drives one of hookgate's parsers with
//! them, and panics only on a bug (a crash, or a broken property noted on the target).
//!
//! The libFuzzer binaries in `fuzz_targets/` call these (`cargo +nightly fuzz run
//! normalize --features libfuzzer`); `tests/corpus.rs` replays every committed input of
//! `corpus/<target>/` through them on stable, so the suite keeps whatever the fuzzer
//! found. See README.md in this folder.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hookgate_common::config::{Environment, Source};
use hookgate_consumer::outbound::address::{canonical, classify};
use hookgate_expression::{Condition, Context, Engine, Secrets, Template};
use hookgate_gateway::auth::Auth;
use hookgate_gateway::hook::Hook;
use hookgate_gateway::json::Pointer;
use hookgate_gateway::normalize::{self as norm, ContentCoding};

/// A fuzz target: bytes in, a panic on a bug.
pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus folder and binary.
pub const TARGETS: [(&str, Target); 5] = [
    ("signature", signature),
    ("normalize", normalize),
    ("config", config),
    ("expression", expression),
    ("address", address),
];

/// One hook per HMAC preset, and two generic recipes (a `k=v` list with a timestamp
/// field, a versioned list with header sources and a base64 secret).
const SIGNED_HOOKS: &str = r#"
[kafka]
brokers = "127.0.0.1:9"
[[hooks]]
id = "github"
topic = "t"
auth = { scheme = "hmac", preset = "github", secrets = [{ value = "s" }] }
[[hooks]]
id = "stripe"
topic = "t"
auth = { scheme = "hmac", preset = "stripe", secrets = [{ value = "whsec_s" }] }
[[hooks]]
id = "slack"
topic = "t"
auth = { scheme = "hmac", preset = "slack", secrets = [{ value = "s" }] }
[[hooks]]
id = "shopify"
topic = "t"
auth = { scheme = "hmac", preset = "shopify", secrets = [{ value = "s" }] }
[[hooks]]
id = "svix"
topic = "t"
auth = { scheme = "hmac", preset = "standard_webhooks", secrets = [{ value = "whsec_c2VjcmV0" }] }
[[hooks]]
id = "twilio"
topic = "t"
auth = { scheme = "hmac", preset = "twilio", public_url = "https://hooks.example.com", secrets = [{ value = "s" }] }
[[hooks]]
id = "zoom"
topic = "t"
auth = { scheme = "hmac", preset = "zoom", secrets = [{ value = "s" }] }
[[hooks]]
id = "fields"
topic = "t"
auth = { scheme = "hmac", secrets = [{ value = "s" }], signature = { header = "sig", field = "s" }, timestamp = { field = "t" }, id = { pointer = "/id" }, content = "{timestamp}.{method}.{id}.{body}", algorithm = "sha512", encoding = "base64url" }
[[hooks]]
id = "versioned"
topic = "t"
auth = { scheme = "hmac", secrets = [{ value = "c2VjcmV0" }], secret_encoding = "base64", signature = { header = "x-sig", version = "v1" }, timestamp = { header = "x-ts" }, id = { header = "x-id" }, content = "{id}.{timestamp}.{url}.{body}", public_url = "https://hooks.example.com", encoding = "base64" }
"#;

fn signed_hooks() -> &'static [Hook] {
    static HOOKS: OnceLock<Vec<Hook>> = OnceLock::new();
    HOOKS.get_or_init(|| {
        let source = Source::Text {
            name: "fuzz".into(),
            toml: SIGNED_HOOKS.into(),
        };
        hookgate_gateway::config::load(&source, &Environment::default())
            .unwrap_or_else(|e| panic!("{e}"))
            .hooks
    })
}

/// Splits `data` at newlines into at most `n` pieces.
fn pieces(data: &[u8], n: usize) -> Vec<&[u8]> {
    data.splitn(n, |b| *b == b'\n').collect()
}

/// The signature header, timestamp and id as a sender would put them (any bytes a
/// header value may hold), and a body, checked by every recipe. The first byte picks
/// the hook; then `signature\ntimestamp\nid\nbody`.
pub fn signature(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let hooks = signed_hooks();
    let hook = &hooks[usize::from(pick) % hooks.len()];
    let Auth::Hmac(hmac) = &hook.auth else {
        unreachable!("every hook here signs");
    };
    let parts = pieces(rest, 4);
    let mut request = http::Request::builder()
        .method("POST")
        .uri("/hooks/x?b=2&a=1")
        .header("content-type", "application/x-www-form-urlencoded");
    let names = [
        Some(hmac.signature_header()),
        hmac.timestamp_header(),
        hmac.id_header(),
    ];
    for (name, value) in names.iter().zip(&parts) {
        if let (Some(name), Ok(value)) = (name, http::HeaderValue::from_bytes(value)) {
            request = request.header(*name, value);
        }
    }
    let Ok(request) = request.body(()) else {
        return;
    };
    let (head, ()) = request.into_parts();
    let body = parts.get(3).copied().unwrap_or_default();
    // A fixed clock, so that a timestamp the fuzzer writes can fall inside the tolerance.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
    let _ = hook.auth.verify_body(&head, body, now);
}

/// Bodies of every content type (the first byte picks it; its top bit gzips first),
/// normalized with a key pointer. Property: what normalization makes is one JSON value.
pub fn normalize(data: &[u8]) {
    const TYPES: [Option<&str>; 10] = [
        None,
        Some("application/json"),
        Some("application/vnd.api+json; charset=utf-8"),
        Some("application/xml"),
        Some("text/xml; charset=iso-8859-1"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=XyZ"),
        Some("text/plain; charset=utf-8"),
        Some("text/plain; charset=windows-1252"),
        Some("application/octet-stream"),
    ];
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let content_type = TYPES[usize::from(pick & 0x7f) % TYPES.len()];
    let mut body = Bytes::copy_from_slice(body);
    if pick & 0x80 != 0 {
        match norm::decode_content(ContentCoding::Gzip, body, 1 << 20) {
            Ok(decoded) => body = decoded,
            Err(_) => return,
        }
    }
    let pointer = Pointer::parse("/id").expect("a valid pointer");
    if let Ok((normalized, _)) = norm::normalize(content_type, &body, &[&pointer]) {
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&normalized.json) {
            panic!(
                "{content_type:?} normalized to invalid JSON ({e}): {:?}",
                String::from_utf8_lossy(&normalized.json)
            );
        }
    }
}

/// Arbitrary text as the gateway's and the consumer's config: errors, never panics.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = Environment::default();
    let source = Source::Text {
        name: "fuzz".into(),
        toml: text.into(),
    };
    let _ = hookgate_gateway::config::load(&source, &env);
    let _ = hookgate_consumer::config::ConsumerConfig::load(&source, &env)
        .and_then(|c| c.build(&env, "fuzz"));
}

/// A template or condition (before the first NUL) rendered against a payload (after
/// it), as a flow would. Property: payload text is data, never a template: a payload
/// made of template syntax renders as itself.
pub fn expression(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (source, payload) = text.split_once('\0').unwrap_or((&text, ""));
    // A fresh engine: one keeps every template it compiled, as config loading wants.
    let engine = &engine();
    let body = serde_json::from_str(payload)
        .unwrap_or_else(|_| serde_json::Value::String(payload.to_string()));
    let ctx = Context::builder().body(body).build();
    if let Ok(template) = Template::compile(engine, "fuzz", source) {
        let _ = template.render(&ctx);
    }
    if let Ok(condition) = Condition::expression(engine, "fuzz", source) {
        let _ = condition.eval(&ctx, SystemTime::UNIX_EPOCH);
    }
    let echo = Template::compile(engine, "fuzz", "{{ trigger.body }}").expect("valid");
    let ctx = Context::builder()
        .body(serde_json::Value::String(payload.to_string()))
        .build();
    // minijinja's auto-escaping is off for this engine: the text comes back unchanged.
    assert_eq!(echo.render(&ctx).ok().as_deref(), Some(payload));
}

fn engine() -> Engine {
    let mut secrets = Secrets::default();
    secrets.insert("TOKEN", "fuzz-secret");
    Engine::new(secrets)
}

/// Addresses for the SSRF classifier, 4 or 16 bytes at a time. Property: an address is
/// refused (or not) however it is written: as itself, in its canonical form, and an
/// IPv4 address mapped into IPv6; and canonical() undoes the mapping.
pub fn address(data: &[u8]) {
    for chunk in data.chunks(16) {
        let ip = match chunk.len() {
            16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(chunk).expect("16"))),
            n if n >= 4 => IpAddr::V4(Ipv4Addr::new(chunk[0], chunk[1], chunk[2], chunk[3])),
            _ => continue,
        };
        let class = classify(ip);
        let canon = canonical(ip);
        assert_eq!(
            classify(canon).is_some(),
            class.is_some(),
            "{ip} ({class:?}) and its canonical form {canon}"
        );
        if let IpAddr::V4(v4) = ip {
            let mapped = IpAddr::V6(v4.to_ipv6_mapped());
            assert_eq!(
                classify(mapped).is_some(),
                class.is_some(),
                "{v4} ({class:?}) mapped as {mapped}"
            );
            assert_eq!(canonical(mapped), ip);
        }
    }
}
