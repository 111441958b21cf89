//! hookgate's wire contract: the one place where an event's shape is defined.
//!
//! Every request the gateway accepts becomes one CloudEvents 1.0 event on Kafka, in one of
//! two modes of the CloudEvents Kafka protocol binding:
//!
//! - **structured** (default): the record value is the whole event as JSON and the record
//!   header `content-type` is [`STRUCTURED_CONTENT_TYPE`];
//! - **binary**: the record value is the request body exactly as received, the attributes
//!   travel as `ce_*` record headers and the sender's headers as `http-*` record headers.
//!
//! The gateway encodes with [`structured`] and [`binary`]; consumers (the flow consumer,
//! `hookgate tail`, downstream Rust services) decode with [`decode`]. docs/events.md is the
//! user-facing description and schema/ holds the JSON Schema of each `dataschema`.
//!
//! # Layout
//! - [`fields`]: the ordered name → values multimap used for query and headers;
//! - [`structured`]: writes a structured-mode record value in one pass, splicing the body;
//! - [`binary`]: lists the record headers of a binary-mode record;
//! - [`decode`]: reads either mode back into an [`Event`];
//! - `kafka` (feature `rdkafka`): `decode_message`, [`decode`] for a record read with
//!   rdkafka.

pub mod binary;
pub mod decode;
pub mod fields;
#[cfg(feature = "rdkafka")]
pub mod kafka;
pub mod structured;

pub use decode::{decode, DecodeError, Event, EventData, Record};
pub use fields::Fields;
#[cfg(feature = "rdkafka")]
pub use kafka::decode_message;

/// The CloudEvents version hookgate speaks.
pub const SPEC_VERSION: &str = "1.0";
/// `dataschema` of events made from webhook requests. Bumped only for breaking changes.
pub const WEBHOOK_SCHEMA: &str = "urn:hookgate:webhook:v1";
/// `dataschema` of events made by pollers.
pub const POLL_SCHEMA: &str = "urn:hookgate:poll:v1";
/// `dataschema` of the events that start flows on their cron schedule.
pub const SCHEDULE_SCHEMA: &str = "urn:hookgate:schedule:v1";
/// The `type` of a schedule's event.
pub const SCHEDULE_TYPE: &str = "hookgate.schedule";
/// `dataschema` of the records of refused requests (the rejections topic).
pub const REJECTION_SCHEMA: &str = "urn:hookgate:rejection:v1";
/// The `type` of a rejection record.
pub const REJECTION_TYPE: &str = "hookgate.rejection";
/// Bytes of a refused request's body kept in its rejection record at most.
pub const REJECTION_SAMPLE_BYTES: usize = 4096;
/// Record `content-type` of a structured-mode event.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json; charset=UTF-8";
/// `datacontenttype` of a structured-mode event: `data` is always a JSON object.
pub const DATA_CONTENT_TYPE: &str = "application/json";
/// The `type` of an event whose hook names no other.
pub const DEFAULT_TYPE: &str = "hookgate.webhook";
/// What stands in for a secret wherever one was removed.
pub const REDACTED: &str = "[redacted]";
/// The extension attribute of an event whose sender waits for a flow's answer (a
/// synchronous hook): its value is `flow`.
pub const RESPOND: &str = "respond";
/// Header names always redacted in events, records and run logs: credentials and
/// session tokens.
pub const REDACTED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "www-authenticate",
    "x-api-key",
    "api-key",
    "x-auth-token",
    "x-access-token",
    "x-gitlab-token",
    "st2-api-key",
];

/// Query parameter names always redacted in events.
pub const REDACTED_QUERY: &[&str] = &[
    "api_key",
    "apikey",
    "api-key",
    "access_token",
    "token",
    "key",
    "secret",
    "password",
    "st2-api-key",
];

/// Prefix of the record headers that carry the sender's HTTP headers in binary mode.
pub const HTTP_HEADER_PREFIX: &str = "http-";
/// Prefix of the record headers that carry CloudEvents attributes in binary mode.
pub const CE_HEADER_PREFIX: &str = "ce_";

/// The JSON Schema (draft 2020-12) of a structured-mode webhook event, `$id`
/// [`WEBHOOK_SCHEMA`].
pub const WEBHOOK_SCHEMA_JSON: &str = include_str!("../schema/webhook-v1.json");

/// The JSON Schema (draft 2020-12) of a poller's event, `$id` [`POLL_SCHEMA`].
pub const POLL_SCHEMA_JSON: &str = include_str!("../schema/poll-v1.json");

/// The JSON Schema (draft 2020-12) of a schedule's event, `$id` [`SCHEDULE_SCHEMA`].
pub const SCHEDULE_SCHEMA_JSON: &str = include_str!("../schema/schedule-v1.json");

/// The JSON Schema (draft 2020-12) of a rejection record, `$id` [`REJECTION_SCHEMA`].
pub const REJECTION_SCHEMA_JSON: &str = include_str!("../schema/rejection-v1.json");

/// How `data.body` was made from the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyEncoding {
    /// The body was JSON and is embedded as received.
    Json,
    /// `application/x-www-form-urlencoded`: an object whose values are arrays of strings.
    Form,
    /// `multipart/form-data`: fields as in `Form`, files as `{filename, contenttype, base64}`.
    Multipart,
    /// XML in hookgate's JSON shape (see docs/events.md).
    Xml,
    /// Text, transcoded to a JSON string.
    Text,
    /// Anything else: a base64 string of the bytes.
    Base64,
    /// No body: `body` is `null`.
    Empty,
}

impl BodyEncoding {
    /// Every encoding, in the order docs/events.md lists them.
    pub const ALL: [BodyEncoding; 7] = [
        BodyEncoding::Json,
        BodyEncoding::Form,
        BodyEncoding::Multipart,
        BodyEncoding::Xml,
        BodyEncoding::Text,
        BodyEncoding::Base64,
        BodyEncoding::Empty,
    ];

    /// The value of `data.bodyencoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            BodyEncoding::Json => "json",
            BodyEncoding::Form => "form",
            BodyEncoding::Multipart => "multipart",
            BodyEncoding::Xml => "xml",
            BodyEncoding::Text => "text",
            BodyEncoding::Base64 => "base64",
            BodyEncoding::Empty => "empty",
        }
    }

    /// Parses a `data.bodyencoding` value.
    pub fn parse(s: &str) -> Option<BodyEncoding> {
        BodyEncoding::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// The context attributes of one event, borrowed from the request being encoded.
///
/// Optional extensions are left out of the event when `None`, as CloudEvents asks.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    /// UUIDv7, also returned to the sender.
    pub id: &'a str,
    /// `/hooks/{hook_id}` or `/pollers/{poller_id}`.
    pub source: &'a str,
    pub event_type: &'a str,
    /// Receive time, RFC 3339.
    pub time: &'a str,
    /// [`WEBHOOK_SCHEMA`] or [`POLL_SCHEMA`].
    pub dataschema: &'a str,
    /// The hook (or poller) id.
    pub hook: &'a str,
    /// The authentication scheme that admitted the request (`none`, `url_key`, `hmac`, …).
    pub authscheme: &'a str,
    /// Which parts a signature covered, e.g. `body,timestamp`.
    pub signed: Option<&'a str>,
    /// The provider's delivery id.
    pub deliveryid: Option<&'a str>,
    /// W3C trace context of the request.
    pub traceparent: Option<&'a str>,
    /// `flow` when the sender waits for a flow's answer ([`RESPOND`]).
    pub respond: Option<&'a str>,
}

/// The HTTP request an event was made from, as the contract exposes it.
#[derive(Debug, Clone)]
pub struct WebhookRequest<'a> {
    pub method: &'a str,
    /// The request path, with a URL key replaced by [`REDACTED`].
    pub path: &'a str,
    /// Query parameters, secrets already redacted.
    pub query: &'a Fields<'a>,
    /// Lowercased header names, secrets already redacted.
    pub headers: &'a Fields<'a>,
}

/// The response a poller's event was made from, as the contract exposes it.
#[derive(Debug, Clone)]
pub struct PollResponse<'a> {
    /// The URL polled, secrets masked.
    pub uri: &'a str,
    pub status: u16,
    /// Lowercased response header names, secrets already redacted.
    pub headers: &'a Fields<'a>,
}

/// The tick a schedule's event stands for.
#[derive(Debug, Clone)]
pub struct ScheduleTick<'a> {
    /// The tick, RFC 3339 in UTC.
    pub scheduled: &'a str,
    /// The pattern as configured.
    pub cron: &'a str,
    /// The IANA time zone the pattern is read in.
    pub timezone: &'a str,
}

/// A request the gateway refused, as its rejection record shows it. Secrets are already
/// redacted from path, query and headers; the body is a sample of its first bytes.
#[derive(Debug, Clone)]
pub struct RefusedRequest<'a> {
    /// The status the sender got.
    pub status: u16,
    /// Why, as a short label of a closed set (`mismatch`, `expired`, `rate_limited`, …).
    pub reason: &'a str,
    /// Why, in words (`signature mismatch`, `invalid JSON body: … at byte 12`).
    pub detail: &'a str,
    pub method: &'a str,
    /// The request path, with a URL key replaced by [`REDACTED`].
    pub path: &'a str,
    pub query: &'a Fields<'a>,
    pub headers: &'a Fields<'a>,
    /// The client's address (the peer, or what a trusted proxy reported).
    pub client: Option<&'a str>,
    /// The body's size: as received when it was read, else as `Content-Length` announced.
    pub body_size: Option<u64>,
    /// The body's first bytes (at most [`REJECTION_SAMPLE_BYTES`]) when it was read.
    pub body_sample: Option<&'a [u8]>,
}

/// Appends `s` to `out` as a JSON string literal.
pub(crate) fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // Most strings (header values, paths, ids) need no escape: one pass that the compiler
    // vectorizes tells, then a single copy.
    let needs_escape = s.bytes().fold(false, |acc, b| {
        acc | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if needs_escape {
        // Writing to a Vec cannot fail, and a &str always serializes.
        serde_json::to_writer(&mut *out, s).expect("a string serializes to JSON");
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::write_json_str;

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let mut all_bytes = String::new();
        for c in (0u8..0x80)
            .map(char::from)
            .chain(['é', '€', '\u{2028}', '😀'])
        {
            all_bytes.push(c);
        }
        for s in [
            "",
            "plain ascii header value",
            "quote \" inside",
            "back\\slash",
            "tab\there, newline\n, nul\0",
            "ünïcödé € 😀 \u{7f}",
            &all_bytes,
        ] {
            let mut out = Vec::new();
            write_json_str(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, s);
        }
    }
}
