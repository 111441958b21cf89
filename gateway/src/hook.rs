//! A hook as the hot path sees it: built once from its config, with everything expensive
//! (secrets, path, redaction sets, the `Allow` header) done up front.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use http::{HeaderValue, Method};

use crate::auth::Auth;
use crate::client::CidrList;
use crate::handshake::{Handshake, SuccessResponse};
use crate::json::Pointer;
use crate::ratelimit::{ClientLimiter, HookLimiter, Rate};

/// Longest record key the gateway uses; a longer header or field leaves the record
/// unkeyed rather than rejecting the sender's event.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest event type taken from a request; a longer one falls back to the static type.
pub const MAX_TYPE_BYTES: usize = 256;
/// Bytes of attributes and envelope besides body, headers and key.
const ENVELOPE_BYTES: u64 = 2048;

/// Everything a hook is, ready for requests.
#[derive(Debug)]
pub struct Hook {
    /// Position in `[[hooks]]`, for messages.
    pub index: usize,
    pub id: String,
    /// The event `source`: `/hooks/{id}`.
    pub source: String,
    /// Normalized URL path.
    pub path: String,
    pub methods: Vec<Method>,
    /// The `Allow` header of a 405.
    pub allow: HeaderValue,
    pub topic: String,
    pub key: RecordKey,
    pub event_type: EventType,
    pub max_body: usize,
    pub ack_timeout: Duration,
    pub mode: Mode,
    pub redaction: Redaction,
    pub auth: Auth,
    pub handshake: Option<Handshake>,
    /// The answer sent instead of the 202, if configured.
    pub response: Option<SuccessResponse>,
    /// Rate limiters; kept across reloads that leave their settings alone.
    pub limits: Arc<HookLimits>,
    /// Source addresses allowed to post; empty: any.
    pub allow_sources: CidrList,
    /// Idempotency keys, when the hook reads them; kept across reloads that leave their
    /// settings alone.
    pub idempotency: Option<crate::idempotency::Idempotency>,
    /// The ingress filter, if any: requests it drops are answered 204, unpublished.
    pub filter: Option<crate::filter::Filter>,
    /// A synchronous hook's wait for its flow's answer (see [`crate::replies`]).
    pub respond: Option<Duration>,
    /// The JSON pointers the key and the type read from bodies, in one list so that a
    /// body is scanned once for all of them ([`Field::Pointer`] indexes into it).
    pub pointers: Vec<Pointer>,
    /// Metric handles, registered on first use (after the recorder is installed).
    pub metrics: HookMetricsCell,
}

/// A hook's metric handles, registered on first use.
#[derive(Debug, Default)]
pub struct HookMetricsCell(std::sync::OnceLock<crate::metrics::HookMetrics>);

/// Where a value is read from in a request, ready to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Header(HeaderName),
    /// A JSON pointer into the body: its place in [`Hook::pointers`], and its text.
    Pointer {
        at: usize,
        text: String,
    },
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Header(h) => write!(f, "header {h}"),
            Field::Pointer { text, .. } => write!(f, "body {text}"),
        }
    }
}

/// Where the record key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    /// No key: records spread over partitions.
    None,
    /// The hook id: all of a hook's events in one partition, in order.
    HookId,
    From(Field),
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordKey::None => f.write_str("none"),
            RecordKey::HookId => f.write_str("hook id"),
            RecordKey::From(field) => field.fmt(f),
        }
    }
}

/// Where the event type comes from, and the type used when that place is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventType {
    pub from: Option<Field>,
    pub default: String,
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.from {
            Some(field) => write!(f, "{field} (else {})", self.default),
            None => write!(f, "\"{}\"", self.default),
        }
    }
}

/// How an event is laid out on Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The whole event as JSON in the record value.
    Structured,
    /// The body as received in the record value, attributes in headers.
    Binary,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Structured => "structured",
            Mode::Binary => "binary",
        }
    }
}

/// A hook's rate limiters and the rates they were made from.
#[derive(Debug, Default)]
pub struct HookLimits {
    pub rate: Option<(Rate, HookLimiter)>,
    pub client: Option<(ClientRate, ClientLimiter)>,
    /// This replica's share of `rate` while the fleet's limit cannot be reached (the rate
    /// divided by the replicas last counted), made when first needed.
    share: std::sync::Mutex<Option<(u32, HookLimiter)>>,
    /// Cells of `rate` taken from the fleet's limit (with `[cluster] redis`).
    pub lease: crate::ratelimit::Lease,
}

/// A per-client limit: its rate, how clients are told apart, how many are tracked.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRate {
    pub rate: Rate,
    pub key: ClientKey,
    pub max_clients: usize,
}

/// How clients are told apart for a per-client limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKey {
    Ip,
    Header(HeaderName),
}

impl HookLimits {
    /// Limiters for `rate` and `client`.
    pub fn new(rate: Option<Rate>, client: Option<ClientRate>) -> HookLimits {
        HookLimits {
            rate: rate.map(|r| (r, HookLimiter::new(r.quota()))),
            client: client.map(|c| {
                let limiter =
                    ClientLimiter::new(c.rate.per_second, c.rate.burst.get(), c.max_clients);
                (c, limiter)
            }),
            share: std::sync::Mutex::default(),
            lease: crate::ratelimit::Lease::default(),
        }
    }

    /// Charges one request to this replica's share of the hook's rate over `replicas`
    /// (a fleet whose shared limit cannot be reached now).
    pub fn check_share(&self, replicas: u32) -> Result<(), std::time::Duration> {
        let Some((rate, _)) = &self.rate else {
            return Ok(());
        };
        let mut share = self.share.lock().expect("share lock");
        if share.as_ref().is_none_or(|(n, _)| *n != replicas) {
            let n = f64::from(replicas.max(1));
            let burst = (rate.burst.get() / replicas.max(1)).max(1);
            let part = Rate::new(rate.per_second / n, Some(burst)).unwrap_or(*rate);
            *share = Some((replicas, HookLimiter::new(part.quota())));
        }
        share.as_ref().expect("made above").1.check()
    }

    /// Whether `other` was made from the same rates (so its state can be kept).
    pub fn same_settings(&self, other: &HookLimits) -> bool {
        self.rate.as_ref().map(|r| r.0) == other.rate.as_ref().map(|r| r.0)
            && self.client.as_ref().map(|c| &c.0) == other.client.as_ref().map(|c| &c.0)
    }
}

impl Hook {
    /// The hook's metric handles.
    pub fn metrics(&self) -> &crate::metrics::HookMetrics {
        self.metrics
            .0
            .get_or_init(|| crate::metrics::HookMetrics::new(&self.id))
    }

    pub fn allows(&self, method: &Method) -> bool {
        self.methods.contains(method)
    }

    /// The largest record this hook can produce, for checking against the producer's
    /// `message.max.bytes`.
    ///
    /// Structured mode: normalization never more than doubles a body (past that it falls
    /// back to base64). In both modes the request line and header text can triple: JSON
    /// escapes, invalid UTF-8 replaced by U+FFFD, the query percent-encoded again.
    pub fn worst_case_record_bytes(&self, max_header_bytes: u64) -> u64 {
        let body = self.max_body as u64;
        let key = MAX_KEY_BYTES as u64;
        match self.mode {
            Mode::Structured => {
                2 * body
                    + crate::normalize::GROWTH_SLACK as u64
                    + 3 * max_header_bytes
                    + key
                    + ENVELOPE_BYTES
            }
            Mode::Binary => body + 3 * max_header_bytes + key + ENVELOPE_BYTES,
        }
    }
}

/// The `Allow` header of a 405 for `methods`.
pub fn allow_header(methods: &[Method]) -> HeaderValue {
    let text = methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    HeaderValue::from_str(&text).expect("method names are valid header text")
}

/// Names whose values are replaced by `[redacted]` in events.
#[derive(Debug, Clone, Default)]
pub struct Redaction {
    headers: Vec<String>,
    query: Vec<String>,
}

impl Redaction {
    /// The built-in names alone (for a request that matched no hook).
    pub fn builtin() -> Redaction {
        Redaction {
            headers: hookgate_event::REDACTED_HEADERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            query: hookgate_event::REDACTED_QUERY
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    /// The built-in names, the auth scheme's own and the hook's extras.
    pub fn new(extra_headers: &[String], extra_query: &[String], auth: &Auth) -> Redaction {
        let mut headers: Vec<String> = hookgate_event::REDACTED_HEADERS
            .iter()
            .map(|s| s.to_string())
            .collect();
        headers.extend(auth.secret_headers());
        headers.extend(extra_headers.iter().cloned());
        let mut query: Vec<String> = hookgate_event::REDACTED_QUERY
            .iter()
            .map(|s| s.to_string())
            .collect();
        query.extend(auth.secret_query_params());
        query.extend(extra_query.iter().cloned());
        headers.sort();
        headers.dedup();
        query.sort();
        query.dedup();
        Redaction { headers, query }
    }

    /// Whether a (lowercase) header's value is a secret.
    pub fn header(&self, name: &str) -> bool {
        self.headers.iter().any(|h| h == name)
    }

    /// Whether a query parameter's value is a secret (names compared case-blind).
    pub fn query(&self, name: &str) -> bool {
        self.query.iter().any(|q| q.eq_ignore_ascii_case(name))
    }
}
