//! One HTTP/1.1 exchange on a fresh connection: TCP to an address the policy already
//! checked, TLS (rustls, SNI = the URL's host, ALPN `http/1.1`) for `https`, then hyper's
//! connection-level client. One connection per request keeps the SSRF reasoning simple
//! (no pool can hand a request a socket opened for another host) at the price of a
//! handshake each time, which flows calling an API a few times per event can afford.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use super::target::Target;
use super::OutboundError;

/// Response headers beyond this many fail the response (hyper's parser limit).
pub const MAX_RESPONSE_HEADERS: usize = 100;
/// The status line and headers together may not exceed this.
const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;

/// The rustls client config: the given roots, ring, TLS 1.2 and 1.3, HTTP/1.1 only.
pub(crate) fn tls_config(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// The connection task; aborted when the exchange is over or abandoned (a timeout), so
/// no socket outlives the request that opened it.
pub(crate) struct Connection(JoinHandle<()>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connects to the first of `addrs` that answers and sends `request`. The response body
/// is read through the returned [`Connection`], which must be kept until it is.
pub(crate) async fn exchange(
    tls: &TlsConnector,
    connect_timeout: Duration,
    target: &Target,
    addrs: &[SocketAddr],
    request: http::Request<Full<Bytes>>,
) -> Result<(http::Response<Incoming>, Connection), OutboundError> {
    let tcp = connect_any(addrs, connect_timeout).await?;
    if target.tls {
        let server_name = match (&target.name, target.literal) {
            (Some(name), _) => ServerName::try_from(name.clone())
                .map_err(|e| OutboundError::Tls(format!("`{}`: {e}", target.host)))?,
            (None, Some(ip)) => ServerName::IpAddress(ip.into()),
            (None, None) => return Err(OutboundError::InvalidUrl("URL has no host".to_owned())),
        };
        let stream = tls
            .connect(server_name, tcp)
            .await
            .map_err(|e| OutboundError::Tls(e.to_string()))?;
        send(stream, request).await
    } else {
        send(tcp, request).await
    }
}

/// Tries the checked addresses in order, each bounded by the connect timeout.
async fn connect_any(addrs: &[SocketAddr], limit: Duration) -> Result<TcpStream, OutboundError> {
    let mut last = String::from("no address to connect to");
    for addr in addrs {
        match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                // Requests are written whole; Nagle would only delay the last segment.
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: no answer within {limit:?}"),
        }
    }
    Err(OutboundError::Connect(last))
}

async fn send<S>(
    io: S,
    request: http::Request<Full<Bytes>>,
) -> Result<(http::Response<Incoming>, Connection), OutboundError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_headers(MAX_RESPONSE_HEADERS)
        .max_header_size(MAX_RESPONSE_HEAD_BYTES)
        .handshake(TokioIo::new(io))
        .await
        .map_err(http_error)?;
    let conn = Connection(tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "outbound connection ended with an error");
        }
    }));
    let response = sender.send_request(request).await.map_err(http_error)?;
    Ok((response, conn))
}

/// A hyper error, worded for the flow's author; hyper's own words lack the cause.
pub(crate) fn http_error(e: hyper::Error) -> OutboundError {
    if e.is_parse_too_large() {
        return OutboundError::Http(format!(
            "response head too large (more than {MAX_RESPONSE_HEADERS} headers or {MAX_RESPONSE_HEAD_BYTES} bytes)"
        ));
    }
    if e.is_incomplete_message() {
        return OutboundError::Http(
            "connection closed before the response was complete".to_owned(),
        );
    }
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    OutboundError::Http(message)
}
