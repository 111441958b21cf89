//! The consumer's admin listener: `/healthz`, `/readyz` (subscribed to its topics) and
//! `/metrics`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Whether the consumer is subscribed and running.
#[derive(Debug, Default, Clone)]
pub struct Ready(Arc<AtomicBool>);

impl Ready {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Serves the admin endpoints until the task is dropped.
pub async fn serve(listener: TcpListener, ready: Ready) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let ready = ready.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let ready = ready.clone();
                async move { Ok::<_, Infallible>(answer(&req, &ready)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer<B>(req: &Request<B>, ready: &Ready) -> Response<Full<Bytes>> {
    let (status, body, ct) = match req.uri().path() {
        "/healthz" => (
            StatusCode::OK,
            "{\"status\":\"ok\"}".to_string(),
            "application/json",
        ),
        "/readyz" if ready.get() => (
            StatusCode::OK,
            "{\"ready\":true}".to_string(),
            "application/json",
        ),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"ready\":false}".to_string(),
            "application/json",
        ),
        "/metrics" => (
            StatusCode::OK,
            crate::metrics::render(),
            "text/plain; version=0.0.4",
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "{\"error\":\"not found\"}".to_string(),
            "application/json",
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ct),
    );
    resp
}
