//! The bare-hyper server: the floor hookgate is measured against.
//!
//! It does the least a webhook endpoint must do — read the whole body and
//! answer `202` with a tiny JSON body — over HTTP/1.1 and HTTP/2 with the same
//! hyper stack hookgate uses, so the difference in CPU per request between the
//! two is what hookgate's own work costs.

use std::convert::Infallible;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

const RESPONSE_BODY: &[u8] = br#"{"id":"0"}"#;

/// Accepts connections on `listener` and serves them until the task is
/// dropped or aborted.
pub async fn serve(listener: TcpListener) -> Result<()> {
    // `auto` sniffs the HTTP/2 preface, so h2c with prior knowledge and
    // HTTP/1.1 share the port as they do on hookgate.
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Writes as hookgate's listener does: head and body flattened into one write.
    builder.http1().writev(false);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Running out of file descriptors is transient under load;
                // ending the server would end the benchmark instead.
                eprintln!("baseline: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Small responses would otherwise wait on Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        tokio::spawn(async move {
            let io = TokioIo::new(stream);
            // A client hanging up mid-request is routine in a load test.
            let _ = builder.serve_connection(io, service_fn(handle)).await;
        });
    }
}

async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // hookgate must buffer the whole body to verify signatures, so the floor
    // buffers it too.
    let status = match request.into_body().collect().await {
        Ok(_) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::BAD_REQUEST,
    };
    let mut response = Response::new(Full::new(Bytes::from_static(RESPONSE_BODY)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
