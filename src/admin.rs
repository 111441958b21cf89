//! The admin listener (127.0.0.1 by default): `/healthz` (the process is up), `/readyz`
//! (brokers reachable, topics present, no recent permanent produce error) and `/metrics`
//! (Prometheus).

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::health::Health;

/// Answers one admin request.
pub fn handle<B>(req: &Request<B>, health: &Arc<Health>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "application/json",
            "{\"error\":\"method not allowed\"}".into(),
        );
    }
    match req.uri().path() {
        "/healthz" => reply(
            StatusCode::OK,
            "application/json",
            "{\"status\":\"ok\"}".into(),
        ),
        "/readyz" => match health.readiness() {
            Ok(()) => reply(
                StatusCode::OK,
                "application/json",
                "{\"ready\":true}".into(),
            ),
            Err(reasons) => {
                let body = serde_json::json!({ "ready": false, "reasons": reasons });
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "application/json",
                    body.to_string(),
                )
            }
        },
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            crate::metrics::render(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "application/json",
            "{\"error\":\"not found\"}".into(),
        ),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
