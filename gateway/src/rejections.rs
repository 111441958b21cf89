//! Refused requests as records: for each request refused with 400, 401, 403, 404, 405,
//! 408, 413, 415 or 429, a CloudEvent (`urn:hookgate:rejection:v1`) on the rejections
//! topic, with why it was refused and the request (secrets redacted, the first 4 KiB of a
//! body that was read). So a partner's "we sent it and got a 401" has an answer.
//!
//! - Never awaited: the sender already has its answer; a record the producer cannot take
//!   is dropped and counted.
//! - A flood cannot amplify: records of one hook and reason pass a token bucket
//!   (`rejections.per_second`), and paths that match no hook share one
//!   (`rejections.unknown_per_second`); what the buckets hold back is counted, never
//!   encoded.

use std::net::IpAddr;
use std::time::SystemTime;

use governor::clock::DefaultClock;
use governor::state::keyed::HashMapStateStore;
use governor::{DefaultDirectRateLimiter, RateLimiter};
use hookgate_event::{
    structured, Attributes, Fields, RefusedRequest, REDACTED, REJECTION_SAMPLE_BYTES,
    REJECTION_SCHEMA, REJECTION_TYPE,
};
use http::header::CONTENT_LENGTH;
use http::request::Parts;

use crate::envelope::{self, header_str};
use crate::error::Rejection;
use crate::hook::{Hook, Redaction};
use crate::metrics;
use crate::ratelimit::Rate;
use crate::sink::{Pending, Record, RecordHeaders, Sink};

/// Where rejection records go and how many may be made.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectionSettings {
    pub topic: String,
    /// Records of one hook and reason.
    pub per_hook: Rate,
    /// Records of paths that match no hook, all together.
    pub unknown: Rate,
}

/// The rejections publisher.
pub struct Rejections {
    topic: String,
    per_hook:
        RateLimiter<(usize, &'static str), HashMapStateStore<(usize, &'static str)>, DefaultClock>,
    unknown: DefaultDirectRateLimiter,
    /// What a path that matches no hook has redacted: the built-in names.
    builtin: Redaction,
}

impl std::fmt::Debug for Rejections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rejections({})", self.topic)
    }
}

/// One refused request, as the pipeline had it when it refused.
pub struct Refusal<'a> {
    /// `None` for a path that matched no hook.
    pub hook: Option<&'a Hook>,
    pub rejection: &'a Rejection,
    pub parts: &'a Parts,
    pub client: Option<IpAddr>,
    /// The body as received, when it was read.
    pub body: Option<&'a [u8]>,
    /// The path ends in a `url_key`.
    pub keyed_path: bool,
    pub now: SystemTime,
}

impl Rejections {
    pub fn new(settings: &RejectionSettings) -> Rejections {
        Rejections {
            topic: settings.topic.clone(),
            per_hook: RateLimiter::hashmap(settings.per_hook.quota()),
            unknown: RateLimiter::direct(settings.unknown.quota()),
            builtin: Redaction::builtin(),
        }
    }

    /// Publishes the record of `refusal` if its bucket has room; never waits.
    pub fn publish(&self, sink: &Sink, refusal: &Refusal<'_>) {
        let label = refusal.rejection.label();
        let room = match refusal.hook {
            Some(hook) => self.per_hook.check_key(&(hook.index, label)).is_ok(),
            None => self.unknown.check().is_ok(),
        };
        if !room {
            metrics::rejection_record_dropped("rate_limited");
            return;
        }
        let value = self.encode(refusal, label);
        let hook_id = refusal.hook.map(|h| h.id.as_str());
        let mut headers = RecordHeaders::with_capacity(1);
        headers.push(
            "content-type",
            hookgate_event::STRUCTURED_CONTENT_TYPE.as_bytes(),
        );
        let record = Record {
            topic: &self.topic,
            key: hook_id.map(str::as_bytes),
            value: &value,
            headers,
        };
        match sink.enqueue(record) {
            // The producer refused it at once (its queue is full): dropped.
            Pending::Done(Err(_)) => metrics::rejection_record_dropped("queue_full"),
            // The outcome is not awaited: the sender already has its answer.
            _ => metrics::rejection_record(hook_id.unwrap_or("(none)"), label),
        }
    }

    /// The record's value: a structured-mode CloudEvent.
    fn encode(&self, refusal: &Refusal<'_>, label: &str) -> Vec<u8> {
        let parts = refusal.parts;
        let (redaction, source, hook, authscheme, signed) = match refusal.hook {
            Some(h) => (
                &h.redaction,
                h.source.as_str(),
                h.id.as_str(),
                h.auth.scheme(),
                h.auth.needs_body(),
            ),
            None => (&self.builtin, "/hooks", "(none)", "none", false),
        };
        let path = match refusal.hook {
            Some(h) => envelope::event_path(h, parts.uri.path(), refusal.keyed_path),
            None => unmatched_path(parts.uri.path()).into(),
        };
        let query = envelope::redacted_query(redaction, parts.uri.query());
        let headers: Fields<'_> = envelope::redacted_headers(redaction, &parts.headers);
        let client = refusal.client.map(|ip| ip.to_string());
        let detail = refusal.rejection.detail(signed);
        let body_size = match refusal.body {
            Some(b) => Some(b.len() as u64),
            None => header_str(&parts.headers, CONTENT_LENGTH).and_then(|v| v.trim().parse().ok()),
        };
        let refused = RefusedRequest {
            status: refusal.rejection.status().as_u16(),
            reason: label,
            detail: &detail,
            method: parts.method.as_str(),
            path: &path,
            query: &query,
            headers: &headers,
            client: client.as_deref(),
            body_size,
            body_sample: refusal
                .body
                .map(|b| &b[..b.len().min(REJECTION_SAMPLE_BYTES)]),
        };
        let id = envelope::event_id(refusal.now);
        let mut id_buf = uuid::Uuid::encode_buffer();
        let mut time_buf = [0u8; 32];
        let attrs = Attributes {
            id: id.hyphenated().encode_lower(&mut id_buf),
            source,
            event_type: REJECTION_TYPE,
            time: envelope::rfc3339_micros(refusal.now, &mut time_buf),
            dataschema: REJECTION_SCHEMA,
            hook,
            authscheme,
            signed: None,
            deliveryid: None,
            traceparent: envelope::traceparent(&parts.headers),
            respond: None,
        };
        let mut out = Vec::with_capacity(1024);
        structured::encode_rejection(&attrs, &refused, &mut out);
        out
    }
}

/// The path of a request that matched no hook, as its rejection record shows it: the
/// first two segments (`/hooks/{id}`), and every later one redacted, since a mistyped hook
/// path may still end in a URL key.
fn unmatched_path(path: &str) -> String {
    let mut out = String::new();
    for (i, segment) in path.split('/').filter(|s| !s.is_empty()).enumerate() {
        out.push('/');
        out.push_str(if i < 2 { segment } else { REDACTED });
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_match_no_hook_keep_two_segments() {
        assert_eq!(
            unmatched_path("/hooks/alert/k3y-s3cret"),
            "/hooks/alert/[redacted]"
        );
        assert_eq!(unmatched_path("/hooks/nope"), "/hooks/nope");
        assert_eq!(unmatched_path("//x"), "/x");
        assert_eq!(unmatched_path("/"), "/");
    }
}
