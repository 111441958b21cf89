//! The request pipeline: one webhook request in, one answer out, in the order of
//! DESIGN.md's data path:
//!
//! route (404) → `url_key` check (404) → method (405) → Content-Length against the hook's
//! limit (413) → Content-Encoding (415) → global in-flight limit (503) → read the body
//! under a hard cap and a deadline (413, 408) → decompress (413) → normalize (400) →
//! encode the event → produce → await the broker's acknowledgement → 202 with the event
//! id; queue full, delivery failure or ack timeout → 503 with `Retry-After`.
//!
//! The handler is generic over the body type so tests and benches can drive it without a
//! socket.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use bytes::Bytes;
use hookgate_event::{
    binary, structured, Attributes, Fields, WebhookRequest, REDACTED, WEBHOOK_SCHEMA,
};
use http::header::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};

use crate::client::{client_ip, CidrList};
use crate::error::Rejection;
use crate::handshake::Outcome as HandshakeOutcome;
use crate::hook::{ClientKey, Field, Hook, Mode, RecordKey, MAX_KEY_BYTES, MAX_TYPE_BYTES};
use crate::in_flight::InFlight;
use crate::metrics;
use crate::normalize::{self, ContentCoding};
use crate::replay::Admission;
use crate::router::Router;
use crate::sink::{Record, RecordHeaders, Sink};

/// How much longer than the first attempt's ack timeout a duplicate waits for it.
const REPLAY_WAIT_SLACK: Duration = Duration::from_secs(1);

/// The gateway's request handler and the state it shares across connections.
pub struct Gateway {
    live: ArcSwap<Live>,
    sink: Sink,
    in_flight: Arc<InFlight>,
    limits: Limits,
}

/// What a reload replaces: the hooks and the trusted proxies.
#[derive(Debug)]
pub struct Live {
    pub router: Router,
    pub trusted_proxies: CidrList,
}

impl Live {
    pub fn new(hooks: Vec<Hook>, trusted_proxies: CidrList) -> Live {
        Live {
            router: Router::new(hooks.into_iter().map(Arc::new)),
            trusted_proxies,
        }
    }
}

/// Gateway-wide limits the pipeline enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests handled at once at most; past it, 503.
    pub max_in_flight: usize,
    /// Time to receive a body once the headers are in.
    pub body_read_timeout: Duration,
    /// The producer's `message.max.bytes`: a record over it is the sender's 413, caught
    /// before the producer would refuse it.
    pub max_record_bytes: usize,
}

/// An authenticated, admitted request on its way to becoming an event.
struct Admitted {
    parts: http::request::Parts,
    raw: Bytes,
    coding: ContentCoding,
    verified: crate::auth::Verified,
    now: SystemTime,
    /// The path ends in a `url_key` (left out of the event).
    keyed_path: bool,
}

/// What the pipeline tells the sender on success.
pub enum Accepted {
    /// The event is stored: `202 {"id": …}`, or the hook's configured answer.
    Stored { id: uuid::Uuid },
    /// A provider handshake's answer.
    Handshake(Response<Full<Bytes>>),
}

impl Gateway {
    pub fn new(live: Live, sink: Sink, limits: Limits) -> Gateway {
        Gateway {
            live: ArcSwap::from_pointee(live),
            sink,
            in_flight: Arc::new(InFlight::new(limits.max_in_flight)),
            limits,
        }
    }

    /// The in-flight limit, which the listener consults before reading new requests.
    pub fn in_flight(&self) -> Arc<InFlight> {
        self.in_flight.clone()
    }

    pub fn sink(&self) -> &Sink {
        &self.sink
    }

    /// The hooks and proxies in use now.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// Swaps in reloaded hooks. Requests already running finish with the hooks they
    /// started with.
    pub fn replace(&self, live: Live) {
        self.live.store(Arc::new(live));
    }

    /// Handles one request from `peer` (the connection's remote address; `None` for a
    /// request that did not come over a connection). Never fails: every outcome is an
    /// HTTP answer.
    pub async fn handle<B>(
        &self,
        req: Request<B>,
        peer: Option<SocketAddr>,
    ) -> Response<Full<Bytes>>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let mut hook_id: Option<Arc<Hook>> = None;
        let result = self.process(req, peer, &mut hook_id).await;
        let hook = hook_id.as_deref().map_or("", |h| h.id.as_str());
        let hook_metrics: &metrics::HookMetrics = match hook_id.as_deref() {
            Some(h) => h.metrics(),
            None => metrics::HookMetrics::unmatched(),
        };
        match result {
            Ok(Accepted::Stored { id }) => {
                hook_metrics.request("accepted", started.elapsed());
                let mut id_buf = uuid::Uuid::encode_buffer();
                let id = &*id.hyphenated().encode_lower(&mut id_buf);
                tracing::debug!(hook, event_id = %id, "accepted");
                match hook_id.as_deref().and_then(|h| h.response.as_ref()) {
                    Some(custom) => custom.respond(id),
                    None => accepted_response(id),
                }
            }
            Ok(Accepted::Handshake(resp)) => {
                hook_metrics.request("handshake", started.elapsed());
                tracing::info!(
                    hook,
                    status = resp.status().as_u16(),
                    "answered a provider handshake"
                );
                resp
            }
            Err(rejection) => {
                let outcome = rejection.outcome();
                hook_metrics.request(outcome, started.elapsed());
                match rejection.fault() {
                    crate::error::Fault::Sender => {
                        tracing::debug!(hook, outcome, reason = %rejection.reason(), "refused")
                    }
                    _ => {
                        if let Some(skipped) = rejection.warning_due(started) {
                            tracing::warn!(
                                hook,
                                outcome,
                                reason = %rejection.reason(),
                                skipped,
                                "not accepted"
                            )
                        }
                    }
                }
                rejection.into_response()
            }
        }
    }

    async fn process<B>(
        &self,
        req: Request<B>,
        peer: Option<SocketAddr>,
        matched: &mut Option<Arc<Hook>>,
    ) -> Result<Accepted, Rejection>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let live = self.live.load_full();
        let route = live
            .router
            .route(parts.uri.path())
            .ok_or(Rejection::NotFound)?;
        let now = SystemTime::now();
        let keyed_path = route.key.is_some();
        let hook: &Hook = matched.insert(route.hook.clone());
        if let crate::auth::Auth::UrlKey(check) = &hook.auth {
            // Checked before anything else about the request, so that a wrong key looks
            // exactly like an unknown hook, whatever the method or size. The operator's
            // metrics and logs still name the hook and the reason.
            check.verify(route.key, now).map_err(|f| {
                metrics::auth_failure(&hook.id, f.as_str());
                Rejection::WrongUrlKey(f)
            })?;
        }
        if let Some(hs) = &hook.handshake {
            if let HandshakeOutcome::Answer(resp) = hs.before_auth(&parts, now) {
                return Ok(Accepted::Handshake(resp));
            }
        }
        if !hook.allows(&parts.method) {
            return Err(Rejection::MethodNotAllowed(hook.allow.clone()));
        }
        if content_length(&parts.headers).is_some_and(|n| n > hook.max_body as u64) {
            return Err(Rejection::TooLarge(hook.max_body));
        }
        let client = peer.map(|peer| client_ip(peer.ip(), &parts.headers, &live.trusted_proxies));
        if !hook.allow_sources.is_empty()
            && !client.is_some_and(|ip| hook.allow_sources.contains(ip))
        {
            return Err(Rejection::Forbidden);
        }
        hook.auth
            .verify_head(&parts, now)
            .map_err(|f| self.unauthorized(hook, f))?;
        if let Some((client_rate, limiter)) = &hook.limits.client {
            let ip_text;
            let key: &[u8] = match &client_rate.key {
                ClientKey::Ip => {
                    ip_text = client.map(|ip| ip.to_string()).unwrap_or_default();
                    ip_text.as_bytes()
                }
                ClientKey::Header(h) => parts.headers.get(h).map_or(&b""[..], |v| v.as_bytes()),
            };
            limiter.check(key).map_err(|wait| {
                metrics::rate_limited(&hook.id, "client");
                Rejection::RateLimited(wait)
            })?;
        }
        let coding = ContentCoding::parse(header_str(&parts.headers, CONTENT_ENCODING))
            .ok_or(Rejection::UnsupportedEncoding)?;
        let content_type = header_str(&parts.headers, CONTENT_TYPE);
        if hook.mode == Mode::Binary && content_type.is_some_and(is_cloudevents) {
            // In binary mode the request's type becomes the record's, and this one would
            // make readers take the sender's body for a whole, structured event.
            return Err(Rejection::CloudEventsInBinaryMode);
        }
        let _slot = self.in_flight.try_admit().ok_or_else(|| {
            metrics::shed("in_flight");
            Rejection::Overloaded
        })?;
        let raw = self.read_body(body, hook.max_body).await?;
        hook.metrics().body_bytes(raw.len());
        // Over the bytes as received, before anything parses them.
        let verified = hook
            .auth
            .verify_body(&parts, &raw, now)
            .map_err(|f| self.unauthorized(hook, f))?;

        if let Some((_, limiter)) = &hook.limits.rate {
            // Charged only now that the request is authenticated: forged floods cannot
            // spend a real sender's quota.
            limiter.check().map_err(|wait| {
                metrics::rate_limited(&hook.id, "hook");
                Rejection::RateLimited(wait)
            })?;
        }
        let mut handshake_answer = None;
        if let Some(hs) = &hook.handshake {
            match hs.after_auth(&hook.auth, &raw, now) {
                HandshakeOutcome::Answer(resp) => return Ok(Accepted::Handshake(resp)),
                HandshakeOutcome::PublishThenAnswer(resp) => handshake_answer = Some(resp),
                HandshakeOutcome::Continue => {}
            }
        }
        let ticket = match (hook.auth.replay(), verified.delivery_id.as_deref()) {
            (Some(guard), Some(delivery)) => {
                match guard
                    .admit(delivery, hook.ack_timeout + REPLAY_WAIT_SLACK)
                    .await
                {
                    Admission::Duplicate(id) => {
                        // Already stored: the sender gets the same answer, nothing more
                        // is published.
                        metrics::auth_failure(&hook.id, crate::auth::Failure::Replay.as_str());
                        return Ok(Accepted::Stored { id });
                    }
                    Admission::Fresh(ticket) => Some(ticket),
                }
            }
            _ => None,
        };
        let delivered = Instant::now();
        let event_id = event_id(now);
        let pending = self.enqueue(
            hook,
            Admitted {
                parts,
                raw,
                coding,
                verified,
                now,
                keyed_path,
            },
            event_id,
        )?;
        // Nothing of the request is held from here on: its head and body (which share
        // the connection's read buffer) went with `Admitted`.
        let result = pending.wait(hook.ack_timeout).await;
        hook.metrics().delivery(delivered.elapsed(), result.is_ok());
        if matches!(result, Err(crate::sink::PublishError::QueueFull)) {
            metrics::shed("queue_full");
        }
        result?;
        if let Some(ticket) = ticket {
            ticket.accepted(event_id);
        }
        match handshake_answer {
            Some(answer) => Ok(Accepted::Handshake(answer)),
            None => Ok(Accepted::Stored { id: event_id }),
        }
    }

    /// Turns an admitted request into an event and hands it to the sink. Takes the
    /// request by value so that it is dropped before the caller awaits the broker.
    fn enqueue(
        &self,
        hook: &Hook,
        admitted: Admitted,
        event_id: uuid::Uuid,
    ) -> Result<crate::sink::Pending<'_>, Rejection> {
        let Admitted {
            parts,
            raw,
            coding,
            verified,
            now,
            keyed_path,
        } = admitted;
        let content_type = header_str(&parts.headers, CONTENT_TYPE);
        let pointers: Vec<&normalize::Pointer> = hook.pointers.iter().collect();
        let (normalized, found) = match hook.mode {
            Mode::Structured => {
                let decoded = normalize::decode_content(coding, raw.clone(), hook.max_body)
                    .map_err(Rejection::BadEncoding)?;
                let (n, found) = normalize::normalize(content_type, &decoded, &pointers)?;
                (Some(n), found)
            }
            // Binary mode publishes the bytes as received; its body only feeds the
            // pointers, and a body they cannot read leaves them empty.
            Mode::Binary if !pointers.is_empty() => {
                let found = normalize::decode_content(coding, raw.clone(), hook.max_body)
                    .ok()
                    .and_then(|d| normalize::normalize(content_type, &d, &pointers).ok())
                    .map_or_else(|| vec![None; pointers.len()], |(_, found)| found);
                (None, found)
            }
            Mode::Binary => (None, Vec::new()),
        };

        let key = record_key(hook, &parts.headers, &found);
        let event_type = event_type(hook, &parts.headers, &found);
        let mut id_buf = uuid::Uuid::encode_buffer();
        let id = &*event_id.hyphenated().encode_lower(&mut id_buf);
        let mut time_buf = [0u8; 32];
        let time = rfc3339_micros(now, &mut time_buf);
        let path = event_path(hook, parts.uri.path(), keyed_path);
        let query = query_fields(hook, parts.uri.query());
        let headers = header_fields(hook, &parts.headers);
        let attrs = Attributes {
            id,
            source: &hook.source,
            event_type: &event_type,
            time,
            dataschema: WEBHOOK_SCHEMA,
            hook: &hook.id,
            authscheme: hook.auth.scheme(),
            signed: verified.signed.as_deref(),
            deliveryid: verified.delivery_id.as_deref(),
            traceparent: traceparent(&parts.headers),
        };
        let request = WebhookRequest {
            method: parts.method.as_str(),
            path: &path,
            query: &query,
            headers: &headers,
        };

        EVENT_BUFFER.with_borrow_mut(|buf| {
            buf.clear();
            let (value, record_headers) = match (&hook.mode, &normalized) {
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
                    binary::webhook_headers(&attrs, &request, content_type, |k, v| h.push(k, v));
                    (&raw[..], h)
                }
            };
            let record_bytes =
                value.len() + record_headers.len() + key.as_ref().map_or(0, |k| k.len());
            if record_bytes > self.limits.max_record_bytes {
                return Err(Rejection::EventTooLarge);
            }
            let pending = self.sink.enqueue(Record {
                topic: &hook.topic,
                key: key.as_deref(),
                value,
                headers: record_headers,
            });
            // The sink has its copy. A buffer grown for a rare large event is let go.
            if buf.capacity() > EVENT_BUFFER_KEEP {
                *buf = Vec::new();
            }
            Ok(pending)
        })
    }

    fn unauthorized(&self, hook: &Hook, failure: crate::auth::Failure) -> Rejection {
        metrics::auth_failure(&hook.id, failure.as_str());
        Rejection::Unauthorized(failure, hook.auth.challenge())
    }

    async fn read_body<B>(&self, body: B, limit: usize) -> Result<Bytes, Rejection>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut collect = std::pin::pin!(Limited::new(body, limit).collect());
        // A body that came with its head, as most webhooks' do, is whole at the first
        // look: only a body still arriving gets a timer.
        let first = std::future::poll_fn(|cx| Poll::Ready(collect.as_mut().poll(cx))).await;
        let collected = match first {
            Poll::Ready(collected) => collected,
            Poll::Pending => tokio::time::timeout(self.limits.body_read_timeout, collect)
                .await
                .map_err(|_| Rejection::BodyTimeout)?,
        };
        match collected {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Rejection::TooLarge(limit)),
            Err(_) => Err(Rejection::BodyRead),
        }
    }
}

/// `now` as RFC 3339 in UTC with microseconds, written into `buf` (27 bytes are used).
fn rfc3339_micros(now: SystemTime, buf: &mut [u8; 32]) -> &str {
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
fn event_id(now: SystemTime) -> uuid::Uuid {
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

fn accepted_response(id: &str) -> Response<Full<Bytes>> {
    // Exactly the length: a vector with spare room would cost `Bytes` a second allocation.
    let mut body = Vec::with_capacity(id.len() + 10);
    body.extend_from_slice(b"{\"id\":\"");
    body.extend_from_slice(id.as_bytes());
    body.extend_from_slice(b"\"}");
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::ACCEPTED;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A header's value as text. Pass a `HeaderName` where one is at hand: a `&str` is parsed
/// on every lookup.
fn header_str(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, CONTENT_LENGTH)?.trim().parse().ok()
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
fn event_path<'a>(hook: &'a Hook, path: &'a str, has_key: bool) -> Cow<'a, str> {
    if has_key {
        Cow::Owned(format!("{}/{REDACTED}", hook.path))
    } else {
        Cow::Borrowed(path)
    }
}

fn query_fields<'a>(hook: &Hook, query: Option<&'a str>) -> Fields<'a> {
    let mut fields = Fields::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let value = if hook.redaction.query(&name) {
            Cow::Borrowed(REDACTED)
        } else {
            value
        };
        fields.push(name, value);
    }
    fields
}

fn header_fields<'a>(hook: &Hook, headers: &'a HeaderMap) -> Fields<'a> {
    let mut fields = Fields::with_capacity(headers.keys_len());
    for (name, value) in headers {
        let name = name.as_str();
        let value = if hook.redaction.header(name) {
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

fn is_cloudevents(content_type: &str) -> bool {
    content_type
        .trim_start()
        .get(..23)
        .is_some_and(|p| p.eq_ignore_ascii_case("application/cloudevents"))
}

/// The request's W3C `traceparent`, if well formed: `version-traceid-parentid-flags`.
/// Later versions may append fields; only the first four, which every version shares,
/// are kept.
fn traceparent(headers: &HeaderMap) -> Option<&str> {
    static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
    let v = header_str(headers, &TRACEPARENT)?.trim();
    let parts: Vec<&str> = v.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    let well_formed = parts.len() >= 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && hex(parts[2], 16)
        && parts[2].bytes().any(|b| b != b'0')
        && hex(parts[3], 2)
        && (parts[0] != "00" || parts.len() == 4);
    well_formed.then(|| &v[..TRACEPARENT_LEN])
}

/// Length of `version-traceid-parentid-flags`.
const TRACEPARENT_LEN: usize = 55;

#[cfg(test)]
mod tests {
    use super::*;

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
