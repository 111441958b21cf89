//! The admin listener (127.0.0.1 by default): `/healthz` (the process is up), `/readyz`
//! (brokers reachable, topics present, no recent permanent produce error), `/metrics`
//! (Prometheus), and `POST /reload` when `admin.reload_token` is set.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::health::Health;
use crate::reload::{ReloadError, Reloader};
use hookgate_common::config::SecretSet;

/// The admin listener's state.
pub struct Admin {
    pub health: Arc<Health>,
    pub reloader: Option<Arc<Reloader>>,
    /// The token `POST /reload` requires; replaced by reloads.
    pub reload_token: Arc<ArcSwapOption<SecretSet>>,
}

impl Admin {
    /// Answers one admin request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>> {
        match (req.method(), req.uri().path()) {
            (&Method::POST, "/reload") => self.reload(&req).await,
            (&Method::GET | &Method::HEAD, "/healthz") => {
                json(StatusCode::OK, serde_json::json!({"status": "ok"}))
            }
            (&Method::GET | &Method::HEAD, "/readyz") => match self.health.readiness() {
                Ok(()) => json(StatusCode::OK, serde_json::json!({"ready": true})),
                Err(reasons) => json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    serde_json::json!({ "ready": false, "reasons": reasons }),
                ),
            },
            (&Method::GET | &Method::HEAD, "/metrics") => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                crate::metrics::render(),
            ),
            (_, "/healthz" | "/readyz" | "/metrics" | "/reload") => json(
                StatusCode::METHOD_NOT_ALLOWED,
                serde_json::json!({"error": "method not allowed"}),
            ),
            _ => json(
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": "not found"}),
            ),
        }
    }

    async fn reload<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let token = self.reload_token.load_full();
        let (Some(token), Some(reloader)) = (token, &self.reloader) else {
            return json(
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": "reload endpoint disabled: set admin.reload_token"}),
            );
        };
        let presented = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .unwrap_or_default();
        if !token.matches(presented, SystemTime::now()) {
            return json(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"error": "unauthorized"}),
            );
        }
        match reloader.reload().await {
            Ok(r) => json(
                StatusCode::OK,
                serde_json::json!({"reloaded": true, "hooks": r.hooks, "kept_limits": r.kept_limits, "kept_replay": r.kept_replay}),
            ),
            Err(e @ ReloadError::RestartNeeded(_)) => json(
                StatusCode::CONFLICT,
                serde_json::json!({"error": e.to_string()}),
            ),
            Err(e) => json(
                StatusCode::UNPROCESSABLE_ENTITY,
                serde_json::json!({"error": e.to_string()}),
            ),
        }
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    reply(status, "application/json", body.to_string())
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
