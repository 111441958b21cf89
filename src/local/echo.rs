//! The loopback echo endpoint of `hookgate local`: stands in for the external APIs the
//! shipped flows call, prints each call so a newcomer sees the flows run, and answers
//! what the flows chain on (a sign-in token, a ticket id, a channel id). For the shipped
//! pollers it plays the polled sources: a stock level, a workbook's usage and a CPU
//! metric that move through a cycle, one step per request, crossing each threshold.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    let (status, reply) = if let Some(reply) = polled(&path) {
        (StatusCode::OK, reply)
    } else if path.ends_with("/api/auth/signin") {
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

/// The polled sources: each answer is the next step of a cycle that crosses the shipped
/// pollers' thresholds (stock ≤ 10, views ≤ 10, CPU ≥ 0.8).
fn polled(path: &str) -> Option<Value> {
    static STEPS: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];
    const STOCK: [u32; 6] = [24, 18, 12, 8, 4, 30];
    const VIEWS: [u32; 4] = [40, 25, 9, 52];
    const CPU: [f64; 5] = [0.42, 0.65, 0.91, 0.88, 0.3];
    let kind = if path.ends_with("/inventory/api/stock/m8-bolts") {
        0
    } else if path.ends_with("/bi/api/usage/workbooks/wb-42") {
        1
    } else if path.ends_with("/monitoring/api/metrics/cpu") {
        2
    } else {
        return None;
    };
    let n = STEPS[kind].fetch_add(1, Ordering::Relaxed);
    Some(match kind {
        0 => {
            json!({"product": "M8 bolts", "warehouse": "east", "stock_value": STOCK[n % STOCK.len()]})
        }
        1 => {
            json!({"workbook_id": "wb-42", "workbook_name": "Q3 churn", "hits_last_14_days": VIEWS[n % VIEWS.len()]})
        }
        _ => json!({"host": "web-1", "cpu": CPU[n % CPU.len()]}),
    })
}
