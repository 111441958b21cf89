//! The one place where a refused request becomes an HTTP answer: its status, whose fault
//! it was, and whether a retry helps. Bodies are terse JSON and never carry a secret or
//! the request's content; the log gets the detail.

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::normalize::{DecompressError, NormalizeError};
use crate::sink::PublishError;

mod throttle;
use throttle::Throttle;

/// Seconds a sender is asked to wait after a 503.
pub const RETRY_AFTER_SECS: u32 = 1;

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// No hook here.
    #[error("not found")]
    NotFound,
    /// A `url_key` hook and a wrong, expired or missing key: the sender gets the same
    /// answer as for a path with no hook.
    #[error("not found")]
    WrongUrlKey(crate::auth::Failure),
    #[error("method not allowed")]
    MethodNotAllowed(HeaderValue),
    /// The source address is not on the hook's allowlist.
    #[error("source not allowed")]
    Forbidden,
    /// Over a rate limit; the wait until a request would pass, and which limit
    /// (`hook` or `client`).
    #[error("rate limited")]
    RateLimited(std::time::Duration, &'static str),
    /// Authentication failed; the challenge is the scheme's `WWW-Authenticate`, if any.
    #[error("unauthorized")]
    Unauthorized(crate::auth::Failure, Option<HeaderValue>),
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    #[error("unsupported content encoding")]
    UnsupportedEncoding,
    #[error("application/cloudevents content cannot be carried by a binary-mode hook")]
    CloudEventsInBinaryMode,
    /// The event would exceed the broker's record limit (only possible with headers far
    /// beyond the usual).
    #[error("event too large for the broker")]
    EventTooLarge,
    #[error("{0}")]
    BadBody(#[from] NormalizeError),
    #[error("{0}")]
    BadEncoding(DecompressError),
    #[error("body not received in time")]
    BodyTimeout,
    #[error("body could not be read")]
    BodyRead,
    /// Too many requests in flight: shed.
    #[error("overloaded")]
    Overloaded,
    /// The hook's idempotency key is missing (when required) or unusable.
    #[error("{}", match .0 {
        crate::idempotency::KeyProblem::Missing => "idempotency key required",
        crate::idempotency::KeyProblem::Invalid => "idempotency key invalid: 1 to 255 visible characters",
    })]
    IdempotencyKey(crate::idempotency::KeyProblem),
    /// An idempotency key already used for a request with another body.
    #[error("idempotency key reused for a different request")]
    IdempotencyKeyReused,
    #[error("{0}")]
    Publish(#[from] PublishError),
}

/// What a refusal is, for metrics and logs: a small closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The sender's request is wrong; retrying the same request will fail again.
    Sender,
    /// The gateway or the broker could not take it now; a retry may succeed.
    Unavailable,
    /// Misconfiguration on our side.
    Gateway,
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::NotFound | Rejection::WrongUrlKey(_) => StatusCode::NOT_FOUND,
            Rejection::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::Unauthorized(..) => StatusCode::UNAUTHORIZED,
            Rejection::Forbidden => StatusCode::FORBIDDEN,
            Rejection::RateLimited(..) => StatusCode::TOO_MANY_REQUESTS,
            Rejection::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::UnsupportedEncoding | Rejection::CloudEventsInBinaryMode => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Rejection::EventTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::BadBody(_) | Rejection::BodyRead => StatusCode::BAD_REQUEST,
            Rejection::BadEncoding(DecompressError::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::BadEncoding(DecompressError::Corrupt(_)) => StatusCode::BAD_REQUEST,
            Rejection::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Rejection::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::IdempotencyKey(_) => StatusCode::BAD_REQUEST,
            Rejection::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Rejection::Publish(p) => match p {
                PublishError::QueueFull | PublishError::Timeout(_) | PublishError::Transient(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                PublishError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                PublishError::Permanent(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    pub fn fault(&self) -> Fault {
        match self.status() {
            StatusCode::SERVICE_UNAVAILABLE => Fault::Unavailable,
            StatusCode::INTERNAL_SERVER_ERROR => Fault::Gateway,
            _ => Fault::Sender,
        }
    }

    /// The short label used in metrics and logs.
    pub fn outcome(&self) -> &'static str {
        match self {
            Rejection::NotFound | Rejection::WrongUrlKey(_) => "not_found",
            Rejection::MethodNotAllowed(_) => "method_not_allowed",
            Rejection::Unauthorized(..) => "unauthorized",
            Rejection::Forbidden => "forbidden",
            Rejection::RateLimited(..) => "rate_limited",
            Rejection::TooLarge(_) | Rejection::BadEncoding(DecompressError::TooLarge(_)) => {
                "too_large"
            }
            Rejection::UnsupportedEncoding => "unsupported_encoding",
            Rejection::CloudEventsInBinaryMode => "unsupported_media_type",
            Rejection::EventTooLarge => "too_large",
            Rejection::BadBody(_) | Rejection::BadEncoding(_) | Rejection::BodyRead => {
                "bad_request"
            }
            Rejection::BodyTimeout => "body_timeout",
            Rejection::Overloaded => "shed",
            Rejection::IdempotencyKey(_) => "bad_request",
            Rejection::IdempotencyKeyReused => "idempotency_conflict",
            Rejection::Publish(PublishError::QueueFull) => "queue_full",
            Rejection::Publish(PublishError::Timeout(_)) => "ack_timeout",
            Rejection::Publish(PublishError::Transient(_)) => "delivery_failed",
            Rejection::Publish(PublishError::TooLarge(_)) => "too_large",
            Rejection::Publish(PublishError::Permanent(_)) => "delivery_refused",
        }
    }

    /// Whether a warning about this refusal is due now (`Some(n)`: `n` like it were left
    /// out since the last), for the refusals that are not the sender's fault. These come
    /// once per request in an overload or an outage, so each kind is logged at most once
    /// a second.
    pub fn warning_due(&self, now: std::time::Instant) -> Option<u64> {
        static WARNINGS: [Throttle; 5] = [const { Throttle::new() }; 5];
        let kind = match self {
            Rejection::Overloaded => 0,
            Rejection::Publish(PublishError::QueueFull) => 1,
            Rejection::Publish(PublishError::Timeout(_)) => 2,
            Rejection::Publish(PublishError::Transient(_)) => 3,
            _ => 4,
        };
        WARNINGS[kind].admit(now)
    }

    /// Why the sender was refused, as a label of a closed set: the `reason` of logs and
    /// rejection records (an authentication failure's is the metrics' `reason` label).
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::NotFound => "not_found",
            Rejection::WrongUrlKey(f) | Rejection::Unauthorized(f, _) => f.as_str(),
            Rejection::MethodNotAllowed(_) => "method_not_allowed",
            Rejection::Forbidden => "source_not_allowed",
            Rejection::RateLimited(_, "client") => "client_rate_limited",
            Rejection::RateLimited(..) => "rate_limited",
            Rejection::TooLarge(_) | Rejection::BadEncoding(DecompressError::TooLarge(_)) => {
                "too_large"
            }
            Rejection::UnsupportedEncoding => "unsupported_encoding",
            Rejection::CloudEventsInBinaryMode => "unsupported_media_type",
            Rejection::EventTooLarge | Rejection::Publish(PublishError::TooLarge(_)) => {
                "event_too_large"
            }
            Rejection::BadBody(_) | Rejection::BadEncoding(_) => "bad_body",
            Rejection::BodyTimeout => "body_timeout",
            Rejection::BodyRead => "body_unreadable",
            Rejection::Overloaded => "shed",
            Rejection::IdempotencyKey(crate::idempotency::KeyProblem::Missing) => {
                "idempotency_key_missing"
            }
            Rejection::IdempotencyKey(_) => "idempotency_key_invalid",
            Rejection::IdempotencyKeyReused => "idempotency_key_reused",
            Rejection::Publish(PublishError::QueueFull) => "queue_full",
            Rejection::Publish(PublishError::Timeout(_)) => "ack_timeout",
            Rejection::Publish(PublishError::Transient(_)) => "delivery_failed",
            Rejection::Publish(PublishError::Permanent(_)) => "delivery_refused",
        }
    }

    /// Why, in words, for the operator (logs and rejection records; never the sender):
    /// `signature mismatch`, `expired secret`, `invalid JSON body: … at byte 12`. Never a
    /// secret. `signed` names the credential a signature, as for `hmac` hooks.
    pub fn detail(&self, signed: bool) -> std::borrow::Cow<'_, str> {
        let credential = if signed { "signature" } else { "credential" };
        match self {
            Rejection::Unauthorized(f, _) => f.describe(credential).into(),
            Rejection::WrongUrlKey(f) => f.describe("URL key").into(),
            Rejection::Forbidden => "source address not allowed".into(),
            Rejection::RateLimited(_, "client") => "over the client's rate limit".into(),
            Rejection::RateLimited(..) => "over the hook's rate limit".into(),
            other => other.to_string().into(),
        }
    }

    /// The text for the sender: what went wrong, in a few words, never internal detail.
    fn public_reason(&self) -> String {
        match self {
            Rejection::Publish(PublishError::QueueFull) | Rejection::Overloaded => {
                "overloaded, retry later".into()
            }
            Rejection::Publish(PublishError::Timeout(_) | PublishError::Transient(_)) => {
                "event not stored, retry later".into()
            }
            Rejection::Publish(PublishError::TooLarge(_)) => {
                "event too large for the broker".into()
            }
            Rejection::Publish(PublishError::Permanent(_)) => {
                "event not stored: gateway misconfigured".into()
            }
            other => other.to_string(),
        }
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let status = self.status();
        if let Rejection::IdempotencyKeyReused = self {
            return problem(
                status,
                "https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/",
                "Idempotency-Key is already used",
                "this idempotency key was used for a request with a different body; send a new key for a new request",
            );
        }
        let mut body = Vec::with_capacity(64);
        body.extend_from_slice(b"{\"error\":");
        serde_json::to_writer(&mut body, &self.public_reason()).expect("string serializes");
        body.push(b'}');
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        match self {
            Rejection::MethodNotAllowed(allow) => {
                headers.insert(ALLOW, allow);
            }
            Rejection::Unauthorized(_, Some(challenge)) => {
                headers.insert(WWW_AUTHENTICATE, challenge);
            }
            Rejection::RateLimited(wait, _) => {
                headers.insert(
                    RETRY_AFTER,
                    HeaderValue::from(crate::ratelimit::retry_after_secs(wait)),
                );
            }
            _ => {}
        }
        resp
    }
}

/// An RFC 9457 problem details answer.
fn problem(status: StatusCode, kind: &str, title: &str, detail: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "type": kind,
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_answers_invite_a_retry_and_others_do_not() {
        let r = Rejection::Publish(PublishError::Timeout(std::time::Duration::from_secs(1)))
            .into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[RETRY_AFTER], "1");
        let r = Rejection::Publish(PublishError::Permanent("TopicAuthorizationFailed".into()))
            .into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(r.headers().get(RETRY_AFTER).is_none());
    }

    #[test]
    fn method_not_allowed_lists_the_allowed() {
        let r = Rejection::MethodNotAllowed(HeaderValue::from_static("POST, PUT")).into_response();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[ALLOW], "POST, PUT");
    }

    #[test]
    fn internal_detail_stays_out_of_the_body() {
        let r = Rejection::Publish(PublishError::Transient("broker 10.0.0.7:9092 down".into()));
        assert_eq!(r.public_reason(), "event not stored, retry later");
    }
}
