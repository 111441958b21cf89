//! The loopback echo endpoint of `hookgate local`: stands in for the external APIs the
//! shipped flows call, prints each call so a newcomer sees the flows run, and answers
//! what the flows chain on (a sign-in token, a ticket id, a channel id).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// Starts the endpoint on 127.0.0.1; returns its address.
pub async fn start() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(answer(req).await)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn answer(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let shown: String = text.chars().take(240).collect();
    println!("echo <- {method} {path} {shown}");
    let received =
        serde_json::from_slice::<Value>(&body).unwrap_or_else(|_| Value::String(text.to_string()));
    let (status, reply) = if path.ends_with("/api/auth/signin") {
        (
            StatusCode::OK,
            json!({"credentials": {"token": "dev-session-token", "site": {"id": "dev-site"}, "user": {"id": "dev-user"}}}),
        )
    } else if path.ends_with("/api/incidents") {
        (
            StatusCode::CREATED,
            json!({"id": "INC-1001", "status": "open"}),
        )
    } else if path.ends_with("/api/conversations.create") {
        (
            StatusCode::OK,
            json!({"ok": true, "channel": {"id": "C0DEV01"}}),
        )
    } else {
        (
            StatusCode::OK,
            json!({"ok": true, "received": {"method": method, "path": path, "body": received}}),
        )
    };
    let mut resp = Response::new(Full::new(Bytes::from(reply.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}
