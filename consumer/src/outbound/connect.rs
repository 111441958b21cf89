//! One exchange: a pooled connection to a checked address if one is free, else a new
//! one — TCP to the checked address (or a tunnel to it through the transport's proxy),
//! TLS for `https` (rustls, SNI = the URL's host, ALPN `h2` then `http/1.1`), then hyper's
//! HTTP/1.1 or HTTP/2 client, as the server chose.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::pool::{Driver, Key, Lease, NotSent, Pool, Sender};
use super::target::Target;
use super::transport::{Proxy, Transport};
use super::OutboundError;

/// Response headers beyond this many fail the response (hyper's parser limit).
pub const MAX_RESPONSE_HEADERS: usize = 100;
/// The status line and headers together may not exceed this.
const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;

/// What an exchange needs besides the request: the pool, the client's TLS and proxy
/// defaults, the transport of the request's connection, the connect bound.
pub(crate) struct Dial<'a> {
    pub pool: &'a Pool,
    pub tls: &'a TlsConnector,
    pub proxy: Option<&'a Proxy>,
    pub transport: Option<&'a Transport>,
    pub connect_timeout: Duration,
}

/// Sends `request` to the first of `addrs` that takes it: over a pooled connection to
/// one of them, else a new one. The response body is read through the returned
/// [`Lease`], which goes back to the pool once it has been.
pub(crate) async fn exchange(
    dial: &Dial<'_>,
    target: &Target,
    addrs: &[SocketAddr],
    request: http::Request<Full<Bytes>>,
) -> Result<Answered, OutboundError> {
    let transport = Transport::id(dial.transport);
    let key = |addr: SocketAddr| Key {
        tls: target.tls,
        host: target.host.clone(),
        port: target.port,
        addr,
        transport,
    };
    let mut request = match pooled(dial.pool, &key, addrs, request).await? {
        Ok(answered) => return Ok(answered),
        Err(request) => request,
    };
    // Over TLS the server may choose HTTP/2: wait for the origin's connect turn, then
    // look again, since the request before may have opened a connection to share. The
    // turn is held while connecting only, never while a request is in flight.
    let origin = match addrs.first() {
        Some(addr) if target.tls => Some(dial.pool.origin(&key(*addr))),
        _ => None,
    };
    let mut turn = None;
    if let Some(origin) = origin.as_ref().filter(|o| !o.http1.load(Ordering::Relaxed)) {
        let mine = origin.turn.lock().await;
        if addrs.iter().any(|addr| dial.pool.has(&key(*addr))) {
            drop(mine);
            request = match pooled(dial.pool, &key, addrs, request).await? {
                Ok(answered) => return Ok(answered),
                Err(request) => request,
            };
        } else {
            turn = Some(mine);
        }
    }
    let proxy = Transport::proxy(dial.transport, dial.proxy);
    let (tcp, addr) = connect_any(addrs, proxy, dial.connect_timeout).await?;
    dial.pool.count_open();
    let key = key(addr);
    let mut lease = if target.tls {
        let server_name = match (&target.name, target.literal) {
            (Some(name), _) => ServerName::try_from(name.clone())
                .map_err(|e| OutboundError::Tls(format!("`{}`: {e}", target.host)))?,
            (None, Some(ip)) => ServerName::IpAddress(ip.into()),
            (None, None) => return Err(OutboundError::InvalidUrl("URL has no host".to_owned())),
        };
        let tls = Transport::tls(dial.transport).unwrap_or(dial.tls);
        let stream = tls
            .connect(server_name, tcp)
            .await
            .map_err(|e| OutboundError::Tls(e.to_string()))?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        if let Some(origin) = &origin {
            origin.http1.store(!h2, Ordering::Relaxed);
        }
        handshake(stream, h2, key).await?
    } else {
        handshake(tcp, false, key).await?
    };
    dial.pool.share(&lease);
    drop(turn);
    let key = lease.key.clone();
    match lease.sender.send(&key, request).await {
        Ok(response) => Ok((response, lease)),
        Err(Ok(NotSent)) => Err(OutboundError::Http(
            "connection closed before the request was sent".to_owned(),
        )),
        Err(Err(e)) => Err(http_error(e)),
    }
}

type Answered = (http::Response<Incoming>, Lease);

/// Sends `request` over a pooled connection to one of `addrs`, if there is one that
/// takes it; otherwise gives the request back.
async fn pooled(
    pool: &Pool,
    key: &impl Fn(SocketAddr) -> Key,
    addrs: &[SocketAddr],
    mut request: http::Request<Full<Bytes>>,
) -> Result<Result<Answered, http::Request<Full<Bytes>>>, OutboundError> {
    for addr in addrs {
        let key = key(*addr);
        while let Some(mut lease) = pool.take(&key) {
            let spare = copy(&request);
            match lease.sender.send(&key, request).await {
                Ok(response) => return Ok(Ok((response, lease))),
                Err(Ok(NotSent)) => request = spare,
                // The server may close an idle connection just as it is reused; a
                // request that can be repeated safely gets another connection.
                Err(Err(e)) if idempotent(spare.method()) && closed_under_us(&e) => {
                    tracing::debug!(error = %e, "pooled connection closed; sending again");
                    request = spare;
                }
                Err(Err(e)) => return Err(http_error(e)),
            }
        }
    }
    Ok(Err(request))
}

/// A copy of a request about to be sent, for sending it again elsewhere.
fn copy(request: &http::Request<Full<Bytes>>) -> http::Request<Full<Bytes>> {
    let mut copy = http::Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// Whether a reused connection failed because the server had closed it.
fn closed_under_us(e: &hyper::Error) -> bool {
    e.is_incomplete_message()
        || e.is_canceled()
        || e.is_closed()
        || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

/// Tries the checked addresses in order, each bounded by the connect timeout; through
/// the proxy when there is one.
async fn connect_any(
    addrs: &[SocketAddr],
    proxy: Option<&Proxy>,
    limit: Duration,
) -> Result<(TcpStream, SocketAddr), OutboundError> {
    let mut last = OutboundError::Connect("no address to connect to".to_owned());
    for addr in addrs {
        let tcp = match proxy {
            Some(proxy) => proxy.tunnel(*addr, limit).await,
            None => match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => Ok(tcp),
                Ok(Err(e)) => Err(OutboundError::Connect(format!("{addr}: {e}"))),
                Err(_) => Err(OutboundError::Connect(format!(
                    "{addr}: no answer within {limit:?}"
                ))),
            },
        };
        match tcp {
            Ok(tcp) => {
                // Requests are written whole; Nagle would only delay the last segment.
                let _ = tcp.set_nodelay(true);
                return Ok((tcp, *addr));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn handshake<S>(io: S, h2: bool, key: Key) -> Result<Lease, OutboundError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let (sender, driver) = if h2 {
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .max_header_list_size(MAX_RESPONSE_HEAD_BYTES as u32)
            .handshake(io)
            .await
            .map_err(http_error)?;
        (Sender::H2(sender), Driver::spawn(conn))
    } else {
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_headers(MAX_RESPONSE_HEADERS)
            .max_header_size(MAX_RESPONSE_HEAD_BYTES)
            .handshake(io)
            .await
            .map_err(http_error)?;
        (Sender::H1(sender), Driver::spawn(conn))
    };
    Ok(Lease {
        key,
        sender,
        driver,
    })
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
