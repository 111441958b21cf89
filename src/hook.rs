//! A hook as the hot path sees it: built once from its config, with everything expensive
//! (secrets, path, redaction sets, the `Allow` header) done up front.

use std::time::Duration;

use http::{HeaderValue, Method};

use crate::auth::Auth;
use crate::config::{EnvelopeMode, KeySource, Lookup, TypeSource};
use crate::handshake::{Handshake, SuccessResponse};
use crate::normalize::Pointer;

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
    /// JSON pointers the hook reads from bodies, parsed once.
    pub pointers: Pointers,
}

/// The JSON pointers of a hook's key and type sources, in one list so a body is scanned
/// once for both.
#[derive(Debug, Default)]
pub struct Pointers {
    pub list: Vec<Pointer>,
    pub key: Option<usize>,
    pub event_type: Option<usize>,
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
        }
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
