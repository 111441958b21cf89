//! The console's HTTP side: a hyper server, the login, and one route table for the
//! pages and the JSON API beside each (`/deliveries` and `/api/deliveries`).
//!
//! Every answer carries a strict Content-Security-Policy (no script at all, styles
//! from the console only), `nosniff`, no framing, no referrer and no caching. Payload
//! text reaches pages only through the templates' HTML escaping.
//!
//! Layout: [`auth`] checks who is asking; [`pages`] answers each route; templates/ and
//! static/ are compiled in.

pub mod auth;
pub mod pages;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value as Json;

use crate::Console;
use auth::Caller;

/// Bytes of a request body the console reads at most (forms and API calls).
const MAX_BODY: usize = 64 * 1024;

/// The policy on every answer.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub type Body = Full<Bytes>;

/// Serves `console` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    console: Arc<Console>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "console accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let console = console.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let console = console.clone();
                async move { Ok::<_, Infallible>(handle(&console, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A request as the handlers see it: method, path, query, the caller and the body.
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub caller: Option<Caller>,
    pub cookie: Option<String>,
    pub body: Bytes,
}

impl Call {
    /// Name → value pairs of the query string.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.query.as_bytes())
            .into_owned()
            .collect()
    }

    /// Name → value pairs of a form body.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }

    /// Whether the answer should be JSON.
    pub fn api(&self) -> bool {
        self.path.starts_with("/api/")
    }
}

async fn handle(console: &Arc<Console>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let header = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let authorization = header(header::AUTHORIZATION);
    let cookie = header(header::COOKIE);
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                parts.uri.path().starts_with("/api/"),
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than 64 KiB",
            )
        }
    };
    let call = Call {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        caller: console
            .gate
            .caller(authorization.as_deref(), cookie.as_deref()),
        cookie,
        body,
    };
    let mut response = pages::route(console, call).await;
    secure(response.headers_mut());
    response
}

fn secure(headers: &mut http::HeaderMap) {
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// An HTML answer.
pub fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// A JSON answer.
pub fn json(status: StatusCode, value: &Json) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec_pretty(value).expect("JSON serializes"),
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A redirect after a form (303: the browser follows with GET).
pub fn see_other(location: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// An error: `{"error": …}` for the API, a short page otherwise.
pub fn error(api: bool, status: StatusCode, message: &str) -> Response<Body> {
    if api {
        return json(status, &serde_json::json!({ "error": message }));
    }
    let text = format!(
        "<!doctype html><meta charset=utf-8><title>{status}</title><link rel=stylesheet href=/static/console.css><main><h1>{status}</h1><p class=error>{}</p><p><a href=/hooks>Back to the console</a></p></main>",
        minijinja::HtmlEscape(message)
    );
    html(status, text)
}
