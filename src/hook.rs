//! A hook as the hot path sees it: built once from its config, with everything expensive
//! (secrets, path, redaction sets, the `Allow` header) done up front.

use std::time::Duration;

use std::sync::Arc;

use http::header::HeaderName;
use http::{HeaderValue, Method};

use crate::auth::Auth;
use crate::client::CidrList;
use crate::config::{
    ClientKeyConfig, ClientLimitConfig, EnvelopeMode, HookConfig, KeySource, Lookup, Problems,
    TypeSource,
};
use crate::handshake::{Handshake, SuccessResponse};
use crate::normalize::Pointer;
use crate::ratelimit::{ClientLimiter, HookLimiter, RateConfig};

/// Longest record key the gateway uses; a longer header or field leaves the record
/// unkeyed rather than rejecting the sender's event.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest event type taken from a request; a longer one falls back to the static type.
pub const MAX_TYPE_BYTES: usize = 256;
/// Bytes of attributes and envelope besides body, headers and key.
const ENVELOPE_BYTES: u64 = 2048;

/// Header names always redacted in events: credentials and session tokens.
pub const REDACTED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
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
    pub key: KeySource,
    pub event_type: TypeSource,
    pub max_body: usize,
    pub ack_timeout: Duration,
    pub mode: EnvelopeMode,
    pub redaction: Redaction,
    pub auth: Auth,
    pub handshake: Option<Handshake>,
    /// The answer sent instead of the 202, if configured.
    pub response: Option<SuccessResponse>,
    /// Rate limiters; kept across reloads that leave their settings alone.
    pub limits: Arc<HookLimits>,
    /// Source addresses allowed to post; empty: any.
    pub allow_sources: CidrList,
    /// JSON pointers the hook reads from bodies, parsed once.
    pub pointers: Pointers,
    /// Metric handles, registered on first use (after the recorder is installed).
    metrics: std::sync::OnceLock<crate::metrics::HookMetrics>,
}

/// A hook's rate limiters and the settings they were made from.
#[derive(Debug, Default)]
pub struct HookLimits {
    pub rate: Option<(RateConfig, HookLimiter)>,
    pub client: Option<(ClientLimitConfig, ClientKey, ClientLimiter)>,
}

/// How clients are told apart for a per-client limit.
#[derive(Debug, Clone)]
pub enum ClientKey {
    Ip,
    Header(HeaderName),
}

/// Clients a per-client limiter tracks unless the hook says otherwise.
pub const DEFAULT_MAX_CLIENTS: usize = 100_000;

impl HookLimits {
    /// Builds the limiters of `cfg`; problems are reported under `at`.
    pub fn build(cfg: &HookConfig, at: &str, p: &mut Problems) -> Option<HookLimits> {
        let before = p.len();
        let rate = cfg.rate_limit.and_then(|r| {
            r.quota(&format!("{at}.rate_limit"), p)
                .map(|q| (r, HookLimiter::new(q)))
        });
        let client = cfg.client_limit.as_ref().and_then(|c| {
            let rate = RateConfig {
                per_second: c.per_second,
                burst: c.burst,
            };
            let quota = rate.quota(&format!("{at}.client_limit"), p)?;
            let key = match &c.key {
                ClientKeyConfig::Ip => ClientKey::Ip,
                ClientKeyConfig::Header { header } => {
                    match HeaderName::from_bytes(header.as_bytes()) {
                        Ok(h) => ClientKey::Header(h),
                        Err(_) => {
                            p.push(
                                format!("{at}.client_limit.key.header"),
                                format!("`{header}` is not a header name"),
                                "use letters, digits and '-'",
                            );
                            return None;
                        }
                    }
                }
            };
            let limiter = ClientLimiter::new(
                c.per_second,
                quota.burst_size().get(),
                c.max_clients.unwrap_or(DEFAULT_MAX_CLIENTS),
            );
            Some((c.clone(), key, limiter))
        });
        (p.len() == before).then_some(HookLimits { rate, client })
    }

    /// Whether `other` was made from the same settings (so its state can be kept).
    pub fn same_settings(&self, other: &HookLimits) -> bool {
        self.rate.as_ref().map(|r| r.0) == other.rate.as_ref().map(|r| r.0)
            && self.client.as_ref().map(|c| &c.0) == other.client.as_ref().map(|c| &c.0)
    }
}

/// The JSON pointers of a hook's key and type sources, in one list so a body is scanned
/// once for both; and their header names, parsed once rather than on every lookup.
#[derive(Debug, Default)]
pub struct Pointers {
    pub list: Vec<Pointer>,
    pub key: Option<usize>,
    pub event_type: Option<usize>,
    pub key_header: Option<http::HeaderName>,
    pub type_header: Option<http::HeaderName>,
}

impl Pointers {
    fn new(key: &KeySource, event_type: &TypeSource) -> Pointers {
        let mut p = Pointers::default();
        let mut add = |lookup: Option<&Lookup>| match lookup {
            Some(Lookup::Pointer(s)) => {
                p.list
                    .push(Pointer::parse(s).expect("validated when the config was built"));
                Some(p.list.len() - 1)
            }
            _ => None,
        };
        let key_at = add(match key {
            KeySource::From(l) => Some(l),
            _ => None,
        });
        let type_at = add(event_type.from.as_ref());
        p.key = key_at;
        p.event_type = type_at;
        let header = |lookup: Option<&Lookup>| match lookup {
            Some(Lookup::Header(h)) => http::HeaderName::from_bytes(h.as_bytes()).ok(),
            _ => None,
        };
        p.key_header = header(match key {
            KeySource::From(l) => Some(l),
            _ => None,
        });
        p.type_header = header(event_type.from.as_ref());
        p
    }
}

/// The parts a hook is built from (named, to keep construction readable).
pub struct HookParts {
    pub index: usize,
    pub id: String,
    pub path: String,
    pub methods: Vec<Method>,
    pub topic: String,
    pub key: KeySource,
    pub event_type: TypeSource,
    pub max_body: usize,
    pub ack_timeout: Duration,
    pub mode: EnvelopeMode,
    pub redaction: Redaction,
    pub auth: Auth,
    pub handshake: Option<Handshake>,
    pub response: Option<SuccessResponse>,
    pub limits: Arc<HookLimits>,
    pub allow_sources: CidrList,
}

impl Hook {
    pub fn new(parts: HookParts) -> Hook {
        let allow = parts
            .methods
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        Hook {
            metrics: std::sync::OnceLock::new(),
            pointers: Pointers::new(&parts.key, &parts.event_type),
            index: parts.index,
            source: format!("/hooks/{}", parts.id),
            allow: HeaderValue::from_str(&allow).expect("method names are valid header text"),
            id: parts.id,
            path: parts.path,
            methods: parts.methods,
            topic: parts.topic,
            key: parts.key,
            event_type: parts.event_type,
            max_body: parts.max_body,
            ack_timeout: parts.ack_timeout,
            mode: parts.mode,
            redaction: parts.redaction,
            auth: parts.auth,
            handshake: parts.handshake,
            response: parts.response,
            limits: parts.limits,
            allow_sources: parts.allow_sources,
        }
    }

    /// The hook's metric handles.
    pub fn metrics(&self) -> &crate::metrics::HookMetrics {
        self.metrics
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
            EnvelopeMode::Structured => {
                2 * body
                    + crate::normalize::GROWTH_SLACK as u64
                    + 3 * max_header_bytes
                    + key
                    + ENVELOPE_BYTES
            }
            EnvelopeMode::Binary => body + 3 * max_header_bytes + key + ENVELOPE_BYTES,
        }
    }
}

/// Names whose values are replaced by `[redacted]` in events.
#[derive(Debug, Clone, Default)]
pub struct Redaction {
    headers: Vec<String>,
    query: Vec<String>,
}

impl Redaction {
    /// The built-in names, the auth scheme's own and the hook's extras.
    pub fn new(extra_headers: &[String], extra_query: &[String], auth: &Auth) -> Redaction {
        let mut headers: Vec<String> = REDACTED_HEADERS.iter().map(|s| s.to_string()).collect();
        headers.extend(auth.secret_headers());
        headers.extend(extra_headers.iter().cloned());
        let mut query: Vec<String> = REDACTED_QUERY.iter().map(|s| s.to_string()).collect();
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
