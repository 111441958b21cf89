//! The listener: accepts connections up to `server.max_connections` (past it, it stops
//! accepting until one closes), serves HTTP/1.1 and HTTP/2 with hyper, and on shutdown
//! stops accepting and gives in-flight requests `server.shutdown_timeout` to finish.
//! Connections run on the shared runtime, or with `server.threads = N` on N serving
//! threads that each accept on the listener. After a burst of connections, the memory it
//! freed goes back to the system ([`reclaim`]).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

mod first_request;
mod pacing;
mod reclaim;
use tokio_rustls::TlsAcceptor;

use crate::config::ServerConfig;
use crate::in_flight::InFlight;
use crate::shutdown::Shutdown;

/// HTTP/2 streams a client may reset before the server answers, per connection, before
/// the connection is closed (the rapid-reset defence).
const H2_MAX_PENDING_RESETS: usize = 20;
/// HTTP/2 streams the server may reset for protocol errors before closing the connection.
const H2_MAX_LOCAL_ERROR_RESETS: usize = 256;

/// The hyper connection builder for `cfg`.
pub fn builder(cfg: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout.get())
        // The answers are small: copied after the head into one buffer and sent with one
        // plain write, they cost less than a vectored write of head and body (null sink:
        // 3.7 % less CPU per request, docs/performance.md).
        .writev(false)
        .max_headers(cfg.max_headers)
        .max_buf_size(cfg.max_header_bytes.bytes());
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(cfg.http2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(cfg.max_header_bytes.0).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(cfg.header_read_timeout.get());
    if cfg.http2 {
        b
    } else {
        b.http1_only()
    }
}

/// A TLS config that a reload can swap; new connections take the current one.
pub type TlsSlot = Arc<ArcSwap<rustls::ServerConfig>>;

/// Serves `handler` on `listener` until `shutdown`, then drains.
pub async fn serve<H, F>(
    listener: TcpListener,
    cfg: ServerConfig,
    tls: Option<TlsSlot>,
    in_flight: Option<Arc<InFlight>>,
    handler: H,
    shutdown: Shutdown,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let builder = Arc::new(builder(&cfg));
    let slots = Arc::new(Semaphore::new(cfg.max_connections));
    let connections = Arc::new(reclaim::Connections::new(
        slots.clone(),
        cfg.max_connections,
    ));
    tokio::spawn(reclaim::run(connections.clone(), shutdown.clone()));
    let shared = Shared {
        builder,
        slots,
        connections,
        cfg,
        tls,
        in_flight,
        handler,
        shutdown,
    };
    match shared.cfg.threads {
        0 => accept_loop(listener, shared).await,
        threads => serve_on_threads(listener, shared, threads).await,
    }
}

/// `server.threads` > 0: that many threads, each with its own single-threaded runtime,
/// accept from the same socket and run their connections to the end. A connection's
/// tasks never move between threads, and no thread wakes another.
async fn serve_on_threads<H, F>(listener: TcpListener, shared: Shared<H>, threads: usize)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = listener
        .into_std()
        .expect("a bound listener converts to a std one");
    let mut finished = Vec::with_capacity(threads);
    for i in 0..threads {
        let listener = listener
            .try_clone()
            .expect("the listening socket can be duplicated");
        let shared = shared.clone();
        let (done, finish) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("hookgate-serve-{i}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a serving thread's runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener)
                        .expect("the duplicated listener registers with the runtime");
                    accept_loop(listener, shared).await;
                });
                let _ = done.send(());
            })
            .expect("a serving thread starts");
        finished.push(finish);
    }
    for finish in finished {
        let _ = finish.await;
    }
}

/// What every accept loop of one listener shares.
#[derive(Clone)]
struct Shared<H> {
    builder: Arc<auto::Builder<TokioExecutor>>,
    slots: Arc<Semaphore>,
    connections: Arc<reclaim::Connections>,
    cfg: ServerConfig,
    tls: Option<TlsSlot>,
    /// The in-flight limit that pauses idle connections, for the webhook listener.
    in_flight: Option<Arc<InFlight>>,
    handler: H,
    shutdown: Shutdown,
}

/// Accepts and serves connections until shutdown, then drains them.
async fn accept_loop<H, F>(listener: TcpListener, shared: Shared<H>)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let head_timeout = shared.cfg.header_read_timeout.get();
    loop {
        let permit = tokio::select! {
            p = shared.slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = shared.shutdown.wait() => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shared.shutdown.wait() => break,
        };
        shared.connections.opened();
        // From accept: the TLS handshake, protocol detection and the first request head
        // all count against it.
        let first_request_by = tokio::time::Instant::now() + head_timeout;
        let _ = stream.set_nodelay(true);
        let handler = shared.handler.clone();
        let in_progress = Arc::new(pacing::InProgress::default());
        let counted = in_progress.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let handling = counted.start();
            let fut = handler(req, remote);
            async move {
                let resp = fut.await;
                drop(handling);
                Ok::<_, Infallible>(resp)
            }
        });
        let in_flight = shared.in_flight.clone();
        let builder = shared.builder.clone();
        let watcher = graceful.watcher();
        let tls = shared.tls.as_ref().map(|t| t.load_full());
        tokio::spawn(async move {
            let seen = in_progress.clone();
            let result = match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let paced =
                        pacing::paced(watcher.watch(conn.into_owned()), in_flight, in_progress);
                    first_request::deadline(paced, first_request_by, seen).await
                }
                Some(tls) => {
                    let accept = TlsAcceptor::from(tls).accept(stream);
                    match tokio::time::timeout_at(first_request_by, accept).await {
                        Ok(Ok(stream)) => {
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            let watched = watcher.watch(conn.into_owned());
                            let paced = pacing::paced(watched, in_flight, in_progress);
                            first_request::deadline(paced, first_request_by, seen).await
                        }
                        Ok(Err(e)) => Err(e.into()),
                        Err(_) => Err("TLS handshake timed out".into()),
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(shared.cfg.shutdown_timeout.get()) => {
            tracing::warn!("shutdown timeout passed; abandoning open connections")
        }
    }
}
