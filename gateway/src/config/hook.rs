//! `[[hooks]]`: one table per webhook endpoint, and its checks.

use std::fmt;
use std::time::Duration;

use http::header::HeaderName;
use http::Method;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use hookgate_common::config::{ByteSize, ConfigDuration, Environment, Problems};

use crate::auth::AuthConfig;
use crate::handshake::{HandshakeConfig, ResponseConfig};
use crate::hook::{
    allow_header, ClientKey, ClientRate, EventType, Field, Hook, HookLimits, Mode, RecordKey,
    Redaction,
};
use crate::json::Pointer;
use crate::ratelimit::Rate;

/// A hook's `max_body` unless it sets one.
pub const DEFAULT_MAX_BODY: ByteSize = ByteSize::kib(256);
/// A hook's `ack_timeout` unless it or its auth preset sets one.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest `max_body` the gateway accepts: bodies are held in memory while in flight.
pub const MAX_BODY_LIMIT: ByteSize = ByteSize::mib(64);
/// The methods a hook may enable.
pub const ALLOWED_METHODS: &[&str] = &["POST", "PUT", "PATCH", "GET"];
/// Clients a per-client limiter tracks unless the hook says otherwise.
pub const DEFAULT_MAX_CLIENTS: usize = 100_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// Unique id: letters, digits, `-`, `_` and `.`. It names the hook in events, logs and
    /// metrics.
    pub id: String,
    /// URL path; default `/hooks/{id}`. Leading and trailing slashes are normalized.
    pub path: Option<String>,
    /// Accepted methods; default `["POST"]`. `GET`, `PUT` and `PATCH` can be enabled.
    #[serde(default = "default_methods")]
    pub methods: Vec<String>,
    /// Kafka topic the hook's events go to.
    pub topic: String,
    /// Record key: `{ header = "x-github-delivery" }`, `{ pointer = "/id" }`,
    /// `"hook_id"`, or `"none"` (the default).
    #[serde(default)]
    pub key: KeySource,
    /// Event type: a fixed string, or `{ header = "…" }` / `{ pointer = "/…" }` with an
    /// optional `default`. Default `hookgate.webhook`.
    #[serde(default, rename = "type")]
    pub event_type: TypeSource,
    /// Largest accepted body, before and after decompression; default `256KiB`.
    pub max_body: Option<ByteSize>,
    /// How long to wait for the broker's acknowledgement before answering 503; default
    /// `5s`, or the auth preset's.
    pub ack_timeout: Option<ConfigDuration>,
    /// `structured` (default) or `binary`.
    #[serde(default)]
    pub mode: EnvelopeMode,
    /// Header names redacted in events, beyond the built-in ones.
    #[serde(default)]
    pub redact_headers: Vec<String>,
    /// Query parameter names redacted in events, beyond the built-in ones.
    #[serde(default)]
    pub redact_query: Vec<String>,
    /// How senders authenticate; required, so that an open hook is a decision:
    /// `{ scheme = "none" }`, `{ scheme = "url_key", secrets = [...] }`, `basic`,
    /// `api_key`, `token`, `hmac` (with a `preset` or a recipe).
    pub auth: AuthConfig,
    /// A provider handshake to answer: `{ provider = "slack" }`, `"meta"` (with
    /// `verify_token`), `"microsoft_graph"` or `"zoom"`.
    pub handshake: Option<HandshakeConfig>,
    /// A fixed answer instead of `202 {"id": …}` once the event is stored.
    pub response: Option<ResponseConfig>,
    /// The hook's rate: `{ per_second = 200, burst = 400 }`, charged after
    /// authentication; past it, 429.
    pub rate_limit: Option<RateConfig>,
    /// A rate per client within the hook, checked before the body is read:
    /// `{ per_second = 5, burst = 10, key = "ip" }` (or `key = { header = "…" }`).
    pub client_limit: Option<ClientLimitConfig>,
    /// Source addresses allowed to post, as address blocks; others get 403. Empty: any.
    #[serde(default)]
    pub allow_sources: Vec<String>,
    /// Idempotency keys: `{ header = "Idempotency-Key", window = "24h" }` (see
    /// [`crate::idempotency`]).
    pub idempotency: Option<crate::idempotency::IdempotencyConfig>,
    /// An ingress filter: a condition over `trigger.body`, `trigger.headers` and
    /// `trigger.parameters`; requests it does not match are answered 204 and not
    /// published (see [`crate::filter`]).
    pub filter: Option<crate::filter::FilterConfig>,
    /// A synchronous hook: `{ with = "flow", timeout = "10s" }` answers the sender with
    /// a flow's answer, waiting at most `timeout` after the broker's acknowledgement
    /// (see [`crate::replies`]).
    pub respond: Option<RespondConfig>,
}

/// `respond` in a hook.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RespondConfig {
    /// What answers: `"flow"`.
    pub with: String,
    /// How long to wait for the flow's answer before answering 202 with where to poll;
    /// default `10s`, at most `120s`.
    pub timeout: Option<ConfigDuration>,
}

/// A synchronous hook's wait for its flow's answer unless it says otherwise.
pub const DEFAULT_RESPOND_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait a synchronous hook may set.
pub const MAX_RESPOND_TIMEOUT: Duration = Duration::from_secs(120);

/// `rate_limit` in a hook: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Requests per second, sustained (may be fractional, e.g. 0.5).
    pub per_second: f64,
    /// Requests allowed at once above the sustained rate; default: one second's worth.
    pub burst: Option<u32>,
}

/// The rate of a `rate_limit` or `client_limit`, or its problem under `at`.
fn rate(per_second: f64, burst: Option<u32>, at: &str, p: &mut Problems) -> Option<Rate> {
    let rate = Rate::new(per_second, burst);
    if rate.is_none() {
        if Rate::new(per_second, Some(1)).is_none() {
            p.push(
                format!("{at}.per_second"),
                format!("{per_second} is not a usable rate"),
                "give a rate above 0 and at most 1000000",
            );
        } else {
            p.push(format!("{at}.burst"), "must be at least 1", "raise it");
        }
    }
    rate
}

/// `client_limit`: a rate per client, and how clients are told apart.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientLimitConfig {
    pub per_second: f64,
    pub burst: Option<u32>,
    /// `"ip"` (the client address, see `server.trusted_proxies`) or `{ header = "…" }`.
    #[serde(default)]
    pub key: ClientKeyConfig,
    /// Clients tracked at most; default 100000.
    pub max_clients: Option<usize>,
}

/// What identifies a client for `client_limit`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", untagged)]
pub enum ClientKeyConfig {
    #[default]
    #[serde(with = "ip_literal")]
    Ip,
    Header {
        header: String,
    },
}

/// Deserializes the literal string `"ip"`.
mod ip_literal {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
        let s = String::deserialize(d)?;
        if s == "ip" {
            Ok(())
        } else {
            Err(serde::de::Error::custom(
                "expected \"ip\" or { header = \"…\" }",
            ))
        }
    }
}

fn default_methods() -> Vec<String> {
    vec!["POST".to_string()]
}

/// How an event is laid out on Kafka: `structured` or `binary`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EnvelopeMode {
    /// The whole event as JSON in the record value.
    #[default]
    Structured,
    /// The body as received in the record value, attributes in headers.
    Binary,
}

/// Where a value is read from in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A request header (lowercase name).
    Header(String),
    /// An RFC 6901 JSON pointer into the body.
    Pointer(String),
}

/// Where the record key comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KeySource {
    /// No key: records spread over partitions.
    #[default]
    None,
    /// The hook id: all of a hook's events in one partition, in order.
    HookId,
    From(Lookup),
}

/// Where the event type comes from, and the type used when that place is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeSource {
    pub from: Option<Lookup>,
    pub default: String,
}

impl Default for TypeSource {
    fn default() -> Self {
        TypeSource {
            from: None,
            default: hookgate_event::DEFAULT_TYPE.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupTable {
    header: Option<String>,
    pointer: Option<String>,
    default: Option<String>,
}

impl LookupTable {
    fn lookup<E: de::Error>(self) -> Result<Lookup, E> {
        match (self.header, self.pointer) {
            (Some(h), None) => Ok(Lookup::Header(h)),
            (None, Some(p)) => Ok(Lookup::Pointer(p)),
            _ => Err(E::custom(
                "give exactly one of `header = \"name\"` or `pointer = \"/json/pointer\"`",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for KeySource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeySource;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"none\", \"hook_id\", { header = \"…\" } or { pointer = \"/…\" }")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<KeySource, E> {
                match s {
                    "none" => Ok(KeySource::None),
                    "hook_id" => Ok(KeySource::HookId),
                    other => Err(E::custom(format!(
                        "`{other}` is not a key source; write \"none\", \"hook_id\", {{ header = \"…\" }} or {{ pointer = \"/…\" }}"
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<KeySource, A::Error> {
                let t = LookupTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if t.default.is_some() {
                    return Err(de::Error::custom(
                        "a key source has no `default`: without the header or field the record has no key",
                    ));
                }
                t.lookup().map(KeySource::From)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for TypeSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TypeSource;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a type string, or { header = \"…\" } / { pointer = \"/…\" } with an optional default")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<TypeSource, E> {
                Ok(TypeSource {
                    from: None,
                    default: s.to_string(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TypeSource, A::Error> {
                let t = LookupTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let default = t
                    .default
                    .clone()
                    .unwrap_or_else(|| hookgate_event::DEFAULT_TYPE.to_string());
                Ok(TypeSource {
                    from: Some(t.lookup()?),
                    default,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Normalizes a path as StackStorm does: one leading slash, no trailing slash, no empty
/// segments.
pub fn normalize_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 1);
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Kafka's own rule for topic names.
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn valid_path_segment(seg: &str) -> bool {
    seg.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@%".contains(&b))
}

/// The runtime field of `lookup`, its pointer added to `pointers`; or its problem under
/// `key`.
fn field(
    lookup: &Lookup,
    key: &str,
    pointers: &mut Vec<Pointer>,
    p: &mut Problems,
) -> Option<Field> {
    match lookup {
        Lookup::Header(h) => match HeaderName::from_bytes(h.as_bytes()) {
            Ok(name) => Some(Field::Header(name)),
            Err(_) => {
                p.push(
                    key,
                    format!("`{h}` is not a header name"),
                    "use letters, digits and '-'",
                );
                None
            }
        },
        Lookup::Pointer(text) => match Pointer::parse(text) {
            Some(pointer) => {
                pointers.push(pointer);
                Some(Field::Pointer {
                    at: pointers.len() - 1,
                    text: text.clone(),
                })
            }
            None => {
                p.push(
                    key,
                    format!("`{text}` is not a JSON pointer"),
                    "start it with '/', like \"/repository/id\"",
                );
                None
            }
        },
    }
}

/// The limiters of `cfg`; problems are reported under `at`.
fn limits(cfg: &HookConfig, at: &str, p: &mut Problems) -> Option<HookLimits> {
    let before = p.len();
    let hook_rate = cfg
        .rate_limit
        .and_then(|r| rate(r.per_second, r.burst, &format!("{at}.rate_limit"), p));
    let client = cfg.client_limit.as_ref().and_then(|c| {
        let rate = rate(c.per_second, c.burst, &format!("{at}.client_limit"), p)?;
        let key = match &c.key {
            ClientKeyConfig::Ip => ClientKey::Ip,
            ClientKeyConfig::Header { header } => match HeaderName::from_bytes(header.as_bytes()) {
                Ok(h) => ClientKey::Header(h),
                Err(_) => {
                    p.push(
                        format!("{at}.client_limit.key.header"),
                        format!("`{header}` is not a header name"),
                        "use letters, digits and '-'",
                    );
                    return None;
                }
            },
        };
        Some(ClientRate {
            rate,
            key,
            max_clients: c.max_clients.unwrap_or(DEFAULT_MAX_CLIENTS),
        })
    });
    (p.len() == before).then(|| HookLimits::new(hook_rate, client))
}

impl HookConfig {
    /// Validates the hook and builds it; problems go to `p`, prefixed `hooks[index]`.
    pub(crate) fn build(&self, index: usize, env: &Environment, p: &mut Problems) -> Option<Hook> {
        let at = |key: &str| format!("hooks[{index}].{key}");
        let before = p.len();
        if !valid_id(&self.id) {
            p.push(
                at("id"),
                format!("`{}` is not a valid hook id", self.id),
                "use 1 to 64 letters, digits, '-', '_' or '.'",
            );
        }
        let path = normalize_path(
            self.path
                .as_deref()
                .unwrap_or(&format!("/hooks/{}", self.id)),
        );
        if path == "/" || !path.split('/').skip(1).all(valid_path_segment) {
            p.push(
                at("path"),
                format!("`{path}` is not a usable path"),
                "use a path like \"/hooks/github\" of URL-safe characters",
            );
        }
        let mut methods = Vec::new();
        if self.methods.is_empty() {
            p.push(
                at("methods"),
                "is empty",
                "list at least one method, like [\"POST\"]",
            );
        }
        for m in &self.methods {
            let upper = m.to_ascii_uppercase();
            if !ALLOWED_METHODS.contains(&upper.as_str()) {
                p.push(
                    at("methods"),
                    format!("`{m}` cannot be enabled"),
                    "choose among POST, PUT, PATCH and GET",
                );
            } else if let Ok(method) = Method::from_bytes(upper.as_bytes()) {
                if !methods.contains(&method) {
                    methods.push(method);
                }
            }
        }
        if !valid_topic(&self.topic) {
            p.push(
                at("topic"),
                format!("`{}` is not a valid Kafka topic name", self.topic),
                "use 1 to 249 letters, digits, '.', '_' or '-'",
            );
        }
        let mut pointers = Vec::new();
        let key = match &self.key {
            KeySource::None => RecordKey::None,
            KeySource::HookId => RecordKey::HookId,
            KeySource::From(l) => field(l, &at("key"), &mut pointers, p)
                .map(RecordKey::From)
                .unwrap_or(RecordKey::None),
        };
        let event_type = EventType {
            from: self
                .event_type
                .from
                .as_ref()
                .and_then(|l| field(l, &at("type"), &mut pointers, p)),
            default: self.event_type.default.clone(),
        };
        if event_type.default.is_empty() || event_type.default.len() > 256 {
            p.push(
                at("type"),
                "the event type must be 1 to 256 characters",
                "give a type like \"com.github.push\"",
            );
        }
        let max_body = self.max_body.unwrap_or(DEFAULT_MAX_BODY);
        if max_body.0 == 0 || max_body > MAX_BODY_LIMIT {
            p.push(
                at("max_body"),
                format!("{max_body} is out of range"),
                "choose between 1B and 64MiB",
            );
        }
        let ack_timeout = self
            .ack_timeout
            .map(ConfigDuration::get)
            .or_else(|| self.auth.default_ack_timeout())
            .unwrap_or(DEFAULT_ACK_TIMEOUT);
        if ack_timeout < Duration::from_millis(10) || ack_timeout > Duration::from_secs(300) {
            p.push(
                at("ack_timeout"),
                format!("{} is out of range", ConfigDuration(ack_timeout)),
                "choose between \"10ms\" and \"5m\"",
            );
        }
        let extra_headers: Vec<String> = self
            .redact_headers
            .iter()
            .map(|n| {
                if HeaderName::from_bytes(n.as_bytes()).is_err() {
                    p.push(
                        at("redact_headers"),
                        format!("`{n}` is not a header name"),
                        "remove it",
                    );
                }
                n.to_ascii_lowercase()
            })
            .collect();
        for n in &self.redact_query {
            if n.is_empty() || n.chars().any(char::is_control) {
                p.push(
                    at("redact_query"),
                    format!("`{n}` is not a parameter name"),
                    "remove it",
                );
            }
        }
        let extra_query = self.redact_query.clone();
        let auth = self.auth.build(&at("auth"), env, p);
        let handshake = self
            .handshake
            .as_ref()
            .and_then(|h| h.build(&at("handshake"), &self.auth, env, p));
        let response = self
            .response
            .as_ref()
            .and_then(|r| r.build(&at("response"), p));
        let limits = limits(self, &format!("hooks[{index}]"), p);
        let idempotency = self
            .idempotency
            .as_ref()
            .and_then(|i| i.build(&at("idempotency"), p));
        let filter = self.filter.as_ref().and_then(|f| f.build(&at("filter"), p));
        let respond = self.respond.as_ref().map(|r| {
            if r.with != "flow" {
                p.push(
                    at("respond.with"),
                    format!("`{}` cannot answer a hook", r.with),
                    "write with = \"flow\"",
                );
            }
            if self.response.is_some() {
                p.push(
                    at("respond"),
                    "a hook answers either with `response` (fixed) or with a flow (`respond`)",
                    "remove one of the two",
                );
            }
            let timeout = r.timeout.map_or(DEFAULT_RESPOND_TIMEOUT, |t| t.get());
            if timeout.is_zero() || timeout > MAX_RESPOND_TIMEOUT {
                p.push(
                    at("respond.timeout"),
                    format!("{timeout:?} is out of range"),
                    "choose a wait above 0 and at most 120s",
                );
            }
            timeout
        });
        let allow_sources = match crate::client::CidrList::parse(&self.allow_sources) {
            Ok(list) => list,
            Err(errors) => {
                for (i, e) in errors {
                    p.push(
                        at(&format!("allow_sources[{i}]")),
                        e,
                        "write an address block like \"192.30.252.0/22\"",
                    );
                }
                crate::client::CidrList::default()
            }
        };
        if p.len() > before {
            return None;
        }
        let auth = auth?;
        let redaction = Redaction::new(&extra_headers, &extra_query, &auth);
        Some(Hook {
            index,
            source: format!("/hooks/{}", self.id),
            id: self.id.clone(),
            path,
            allow: allow_header(&methods),
            methods,
            topic: self.topic.clone(),
            key,
            event_type,
            max_body: max_body.bytes(),
            ack_timeout,
            mode: match self.mode {
                EnvelopeMode::Structured => Mode::Structured,
                EnvelopeMode::Binary => Mode::Binary,
            },
            redaction,
            auth,
            handshake,
            response,
            limits: std::sync::Arc::new(limits?),
            allow_sources,
            idempotency,
            filter,
            respond,
            pointers,
            metrics: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_like_stackstorm() {
        assert_eq!(normalize_path("hooks/github/"), "/hooks/github");
        assert_eq!(normalize_path("//a//b//"), "/a/b");
        assert_eq!(normalize_path(""), "/");
    }

    #[test]
    fn topic_names_follow_kafka() {
        assert!(valid_topic("webhooks.github_v1-x"));
        assert!(!valid_topic(".."));
        assert!(!valid_topic("a b"));
        assert!(!valid_topic(&"x".repeat(250)));
    }
}
