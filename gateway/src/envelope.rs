//! The envelope: how an admitted request becomes a record. The record key, the event
//! type, the path (its URL key redacted), the query and the headers (their secrets
//! redacted), the trace context, the event's time and id; the CloudEvents encoding,
//! structured or binary, into a buffer each thread reuses; the record handed on.

use std::borrow::Cow;
use std::time::SystemTime;

use bytes::Bytes;
use hookgate_common::telemetry::TraceParent;
use hookgate_event::{
    binary, structured, Attributes, Fields, WebhookRequest, REDACTED, WEBHOOK_SCHEMA,
};
use http::header::HeaderMap;
use http::request::Parts;

use crate::auth::Verified;
use crate::error::Rejection;
use crate::hook::{Field, Hook, Mode, RecordKey, Redaction, MAX_KEY_BYTES, MAX_TYPE_BYTES};
use crate::normalize::Normalized;
use crate::sink::{Record, RecordHeaders};

/// One event as the pipeline has it once the request is normalized.
pub struct Event<'a> {
    pub hook: &'a Hook,
    pub parts: &'a Parts,
    pub content_type: Option<&'a str>,
    /// The body as received (binary mode's record value).
    pub raw: &'a Bytes,
    /// The body as `data.body` (structured mode).
    pub normalized: Option<&'a Normalized>,
    /// What the hook's JSON pointers found in the body.
    pub found: &'a [Option<String>],
    pub verified: &'a Verified,
    pub id: uuid::Uuid,
    pub now: SystemTime,
    /// The path ends in a `url_key`.
    pub keyed_path: bool,
    /// The request span's `traceparent` when traces are exported; otherwise the
    /// sender's is passed on.
    pub traceparent: Option<&'a str>,
}

impl Event<'_> {
    /// Encodes the event into this thread's buffer and hands its record to `produce`,
    /// which must copy what it keeps.
    pub fn write<T>(
        &self,
        produce: impl FnOnce(Record<'_>) -> Result<T, Rejection>,
    ) -> Result<T, Rejection> {
        let (hook, parts) = (self.hook, self.parts);
        let key = record_key(hook, &parts.headers, self.found);
        let event_type = event_type(hook, &parts.headers, self.found);
        let mut id_buf = uuid::Uuid::encode_buffer();
        let id = &*self.id.hyphenated().encode_lower(&mut id_buf);
        let mut time_buf = [0u8; 32];
        let time = rfc3339_micros(self.now, &mut time_buf);
        let path = event_path(hook, parts.uri.path(), self.keyed_path);
        let query = redacted_query(&hook.redaction, parts.uri.query());
        let headers = redacted_headers(&hook.redaction, &parts.headers);
        let attrs = Attributes {
            id,
            source: &hook.source,
            event_type: &event_type,
            time,
            dataschema: WEBHOOK_SCHEMA,
            hook: &hook.id,
            authscheme: hook.auth.scheme(),
            signed: self.verified.signed.as_deref(),
            deliveryid: self.verified.delivery_id.as_deref(),
            traceparent: self.traceparent.or_else(|| traceparent(&parts.headers)),
            respond: hook.respond.map(|_| "flow"),
        };
        let request = WebhookRequest {
            method: parts.method.as_str(),
            path: &path,
            query: &query,
            headers: &headers,
        };
        EVENT_BUFFER.with_borrow_mut(|buf| {
            buf.clear();
            let (value, record_headers) = match (hook.mode, self.normalized) {
                (Mode::Structured, Some(n)) => {
                    // Room for the whole event at once: the body, the sender's headers
                    // (plus their JSON punctuation) and the attributes.
                    let header_bytes: usize = parts
                        .headers
                        .iter()
                        .map(|(k, v)| k.as_str().len() + v.len() + 8)
                        .sum();
                    buf.reserve(n.json.len() + header_bytes + path.len() + 512);
                    structured::encode_webhook(&attrs, &request, &n.json, n.encoding, buf);
                    let mut h = RecordHeaders::with_capacity(1);
                    h.push(
                        "content-type",
                        hookgate_event::STRUCTURED_CONTENT_TYPE.as_bytes(),
                    );
                    (&buf[..], h)
                }
                _ => {
                    let mut h = RecordHeaders::with_capacity(16 + headers.len());
                    binary::webhook_headers(&attrs, &request, self.content_type, |k, v| {
                        h.push(k, v)
                    });
                    (&self.raw[..], h)
                }
            };
            let produced = produce(Record {
                topic: &hook.topic,
                key: key.as_deref(),
                value,
                headers: record_headers,
            });
            // The record was copied. A buffer grown for a rare large event is let go.
            if buf.capacity() > EVENT_BUFFER_KEEP {
                *buf = Vec::new();
            }
            produced
        })
    }
}

/// `now` as RFC 3339 in UTC with microseconds, written into `buf` (27 bytes are used).
pub fn rfc3339_micros(now: SystemTime, buf: &mut [u8; 32]) -> &str {
    use std::io::Write;
    let unused = {
        let mut rest = &mut buf[..];
        write!(rest, "{}", humantime::format_rfc3339_micros(now)).expect("a timestamp fits");
        rest.len()
    };
    let used = buf.len() - unused;
    std::str::from_utf8(&buf[..used]).expect("a timestamp is ASCII")
}

/// A UUIDv7 whose timestamp is `now`, the event's `time`, to the millisecond.
pub fn event_id(now: SystemTime) -> uuid::Uuid {
    use uuid::timestamp::context::{ContextV7, ThreadLocalContext};
    thread_local! {
        /// The counter behind the ids a thread makes: ordered within a millisecond on
        /// the thread, unique across threads by their random bits, and no lock.
        static CONTEXT: ContextV7 = const { ContextV7::new() };
    }
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
        ThreadLocalContext::new(&CONTEXT),
        since.as_secs(),
        since.subsec_nanos(),
    ))
}

/// Bytes of event buffer a thread keeps between requests.
const EVENT_BUFFER_KEEP: usize = 64 * 1024;

thread_local! {
    /// Where this thread encodes events: the sink copies each one when it takes it, so
    /// one buffer serves every request the thread runs.
    static EVENT_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A header's value as text. Pass a `HeaderName` where one is at hand: a `&str` is parsed
/// on every lookup.
pub fn header_str(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A header's value as text, if it is usable as a key or a type.
fn lookup_header<'a>(headers: &'a HeaderMap, name: &http::HeaderName) -> Option<&'a str> {
    header_str(headers, name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn record_key<'a>(
    hook: &'a Hook,
    headers: &'a HeaderMap,
    found: &'a [Option<String>],
) -> Option<Cow<'a, [u8]>> {
    let key: &[u8] = match &hook.key {
        RecordKey::None => return None,
        RecordKey::HookId => hook.id.as_bytes(),
        RecordKey::From(field) => field_value(field, headers, found)?.as_bytes(),
    };
    (!key.is_empty() && key.len() <= MAX_KEY_BYTES).then_some(Cow::Borrowed(key))
}

/// What a request holds at `field`: a header's text, or what the body scan found.
fn field_value<'a>(
    field: &Field,
    headers: &'a HeaderMap,
    found: &'a [Option<String>],
) -> Option<&'a str> {
    match field {
        Field::Header(name) => lookup_header(headers, name),
        Field::Pointer { at, .. } => found.get(*at)?.as_deref(),
    }
}

fn event_type<'a>(
    hook: &'a Hook,
    headers: &'a HeaderMap,
    found: &'a [Option<String>],
) -> Cow<'a, str> {
    let from = hook
        .event_type
        .from
        .as_ref()
        .and_then(|field| field_value(field, headers, found));
    match from {
        Some(t) if !t.is_empty() && t.len() <= MAX_TYPE_BYTES => Cow::Borrowed(t),
        _ => Cow::Borrowed(hook.event_type.default.as_str()),
    }
}

/// The path as events show it: a URL key never leaves the gateway.
pub fn event_path<'a>(hook: &'a Hook, path: &'a str, has_key: bool) -> Cow<'a, str> {
    if has_key {
        Cow::Owned(format!("{}/{REDACTED}", hook.path))
    } else {
        Cow::Borrowed(path)
    }
}

/// The query's parameters, those `redaction` names replaced by [`REDACTED`].
pub fn redacted_query<'a>(redaction: &Redaction, query: Option<&'a str>) -> Fields<'a> {
    let mut fields = Fields::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let value = if redaction.query(&name) {
            Cow::Borrowed(REDACTED)
        } else {
            value
        };
        fields.push(name, value);
    }
    fields
}

/// The headers, those `redaction` names replaced by [`REDACTED`].
pub fn redacted_headers<'a>(redaction: &Redaction, headers: &'a HeaderMap) -> Fields<'a> {
    let mut fields = Fields::with_capacity(headers.keys_len());
    for (name, value) in headers {
        let name = name.as_str();
        let value = if redaction.header(name) {
            Cow::Borrowed(REDACTED)
        } else {
            // Header values are nearly always ASCII: the lossy path's per-chunk walk only for
            // those that are not UTF-8.
            std::str::from_utf8(value.as_bytes())
                .map_or_else(|_| String::from_utf8_lossy(value.as_bytes()), Cow::Borrowed)
        };
        fields.push(name, value);
    }
    fields
}

/// The request's W3C `traceparent`, if well formed (as [`TraceParent::parse`] reads it):
/// `version-traceid-parentid-flags`. Later versions may append fields; only the first
/// four, which every version shares, are kept.
pub fn traceparent(headers: &HeaderMap) -> Option<&str> {
    static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
    let v = header_str(headers, &TRACEPARENT)?.trim();
    TraceParent::parse(v)?;
    Some(&v[..TRACEPARENT_LEN])
}

/// Length of `version-traceid-parentid-flags`.
const TRACEPARENT_LEN: usize = 55;

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::Duration;

    #[test]
    fn event_time_is_rfc3339_utc_with_microseconds() {
        let mut buf = [0u8; 32];
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_795_000_000, 123_456_789);
        assert_eq!(rfc3339_micros(t, &mut buf), "2026-11-18T11:06:40.123456Z");
    }

    #[test]
    fn event_ids_carry_the_event_time_and_are_ordered() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_795_000_000, 123_456_789);
        let ids: Vec<uuid::Uuid> = (0..1000).map(|_| event_id(t)).collect();
        for id in &ids {
            assert_eq!(id.get_version_num(), 7);
            let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
            assert_eq!((secs, nanos), (1_795_000_000, 123_000_000));
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ordered and distinct");
        let later = event_id(t + Duration::from_millis(1));
        assert!(later > ids[999]);
    }

    #[test]
    fn traceparent_must_be_well_formed() {
        let mut h = HeaderMap::new();
        let good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        h.insert("traceparent", HeaderValue::from_static(good));
        assert_eq!(traceparent(&h), Some(good));
        let future = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra";
        h.insert("traceparent", HeaderValue::from_static(future));
        assert_eq!(traceparent(&h), Some(good.replace("00-", "01-").as_str()));
        for bad in [
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "garbage",
        ] {
            h.insert("traceparent", HeaderValue::from_static(bad));
            assert_eq!(traceparent(&h), None, "{bad}");
        }
    }
}
