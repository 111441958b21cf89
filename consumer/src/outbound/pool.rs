//! Keep-alive connections, kept by destination. A connection is pooled under the
//! address the policy checked when it was opened (with the TLS server name and the
//! transport), and a request takes one only from the addresses its own resolution just
//! checked: the pool never hands a request a socket that leads anywhere its policy check
//! did not allow.
//!
//! HTTP/1.1 connections serve one request at a time: taken out, put back once the
//! response body has been read whole (a response abandoned half-way closes its
//! connection). An HTTP/2 connection stays in the pool while in use and carries every
//! concurrent request to its destination as a stream.
//!
//! Bounded: idle connections expire after `idle_timeout`; at most `max_idle_per_host`
//! per destination and [`MAX_IDLE`] in all are kept, whatever URLs templates produce.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HOST;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use tokio::task::JoinHandle;

/// Idle connections kept in all, across destinations.
pub const MAX_IDLE: usize = 512;

/// Where a pooled connection leads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub tls: bool,
    /// The host as the URL names it: the TLS server name, and the `:authority`.
    pub host: String,
    pub port: u16,
    /// The checked address the socket is connected to (through a proxy or not).
    pub addr: SocketAddr,
    /// The connection's transport ([`super::transport::Transport`]); 0 for the default.
    pub transport: u64,
}

/// The task driving one connection; aborted when the last holder lets go, so no socket
/// outlives both the pool and the request using it.
pub(crate) struct Driver(JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Driver {
    pub fn spawn<F>(conn: F) -> Arc<Driver>
    where
        F: std::future::Future<Output = Result<(), hyper::Error>> + Send + 'static,
    {
        Arc::new(Driver(tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "outbound connection ended with an error");
            }
        })))
    }
}

pub(crate) enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// The request was not sent: its connection was already closing.
pub(crate) struct NotSent;

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    /// Sends `request`; `Err(Ok(NotSent))` when it never left.
    pub async fn send(
        &mut self,
        key: &Key,
        mut request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<Incoming>, Result<NotSent, hyper::Error>> {
        let result = match self {
            Sender::H1(s) => {
                if s.ready().await.is_err() {
                    return Err(Ok(NotSent));
                }
                s.try_send_request(request).await
            }
            Sender::H2(s) => {
                // HTTP/2 names the destination in `:scheme` and `:authority`, taken from
                // an absolute URI; a `Host` header beside them is redundant.
                let scheme = if key.tls { "https" } else { "http" };
                let host = request
                    .headers_mut()
                    .remove(HOST)
                    .and_then(|h| h.to_str().ok().map(str::to_owned))
                    .unwrap_or_else(|| format!("{}:{}", key.host, key.port));
                let path = request
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned();
                *request.uri_mut() = format!("{scheme}://{host}{path}")
                    .parse()
                    .expect("host and path came from a valid URI");
                if s.ready().await.is_err() {
                    return Err(Ok(NotSent));
                }
                s.try_send_request(request).await
            }
        };
        result.map_err(|mut e| match e.take_message() {
            Some(_) => Ok(NotSent),
            None => Err(e.into_error()),
        })
    }
}

/// A connection in use. [`Pool::put_back`] returns an HTTP/1.1 one for the next request;
/// dropping it instead closes it.
pub(crate) struct Lease {
    pub key: Key,
    pub sender: Sender,
    pub driver: Arc<Driver>,
}

struct Idle {
    sender: Sender,
    driver: Arc<Driver>,
    since: Instant,
}

/// One origin's (scheme, host, port, transport) connect turn. A server that may speak
/// HTTP/2 is connected to one request at a time, so a burst opens one connection and
/// multiplexes on it instead of opening one per request; once the origin is known to
/// answer in HTTP/1.1, requests connect without waiting their turn.
#[derive(Default)]
pub(crate) struct Origin {
    pub turn: tokio::sync::Mutex<()>,
    pub http1: AtomicBool,
}

pub(crate) struct Pool {
    idle: Mutex<HashMap<Key, Vec<Idle>>>,
    origins: Mutex<HashMap<Key, Arc<Origin>>>,
    idle_timeout: Duration,
    max_idle_per_host: usize,
    /// TCP connections opened, for the metrics and tests.
    opened: AtomicU64,
}

impl Pool {
    /// `max_idle_per_host = 0` turns pooling off: every request opens a connection.
    pub fn new(idle_timeout: Duration, max_idle_per_host: usize) -> Pool {
        Pool {
            idle: Mutex::new(HashMap::new()),
            origins: Mutex::new(HashMap::new()),
            idle_timeout,
            max_idle_per_host,
            opened: AtomicU64::new(0),
        }
    }

    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    pub fn count_open(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::metrics::OUTBOUND_CONNECTIONS).increment(1);
    }

    /// The connect turn of `key`'s origin (its address is ignored).
    pub fn origin(&self, key: &Key) -> Arc<Origin> {
        let origin = Key {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            ..key.clone()
        };
        let mut origins = self.origins.lock().expect("pool lock");
        if origins.len() >= MAX_IDLE && !origins.contains_key(&origin) {
            // Only what was learned about protocols is lost.
            origins.retain(|_, o| Arc::strong_count(o) > 1);
        }
        origins.entry(origin).or_default().clone()
    }

    /// Whether a live connection to `key` is pooled.
    pub fn has(&self, key: &Key) -> bool {
        let idle = self.idle.lock().expect("pool lock");
        idle.get(key)
            .is_some_and(|list| list.iter().any(|c| !c.sender.is_closed()))
    }

    /// A live connection to `key`, if one is idle (HTTP/1.1) or multiplexing (HTTP/2).
    pub fn take(&self, key: &Key) -> Option<Lease> {
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.get_mut(key)?;
        let now = Instant::now();
        list.retain(|c| !c.sender.is_closed() && now - c.since < self.idle_timeout);
        let lease = match list.last_mut() {
            Some(Idle {
                sender: Sender::H2(s),
                driver,
                since,
            }) => {
                *since = now;
                Some(Lease {
                    key: key.clone(),
                    sender: Sender::H2(s.clone()),
                    driver: driver.clone(),
                })
            }
            Some(_) => list.pop().map(|c| Lease {
                key: key.clone(),
                sender: c.sender,
                driver: c.driver,
            }),
            None => None,
        };
        if list.is_empty() {
            idle.remove(key);
        }
        lease
    }

    /// Keeps a new HTTP/2 connection for the requests that follow, while it serves this
    /// one.
    pub fn share(&self, lease: &Lease) {
        if let Sender::H2(s) = &lease.sender {
            self.keep(
                lease.key.clone(),
                Idle {
                    sender: Sender::H2(s.clone()),
                    driver: lease.driver.clone(),
                    since: Instant::now(),
                },
            );
        }
    }

    /// Returns an HTTP/1.1 connection whose response was read whole.
    pub fn put_back(&self, lease: Lease) {
        if let Sender::H1(_) = lease.sender {
            if !lease.sender.is_closed() {
                self.keep(
                    lease.key,
                    Idle {
                        sender: lease.sender,
                        driver: lease.driver,
                        since: Instant::now(),
                    },
                );
            }
        }
    }

    fn keep(&self, key: Key, conn: Idle) {
        if self.max_idle_per_host == 0 {
            return;
        }
        let mut idle = self.idle.lock().expect("pool lock");
        let mut total: usize = idle.values().map(Vec::len).sum();
        if total >= MAX_IDLE {
            let now = Instant::now();
            idle.retain(|_, list| {
                list.retain(|c| !c.sender.is_closed() && now - c.since < self.idle_timeout);
                !list.is_empty()
            });
            total = idle.values().map(Vec::len).sum();
            if total >= MAX_IDLE {
                return;
            }
        }
        let list = idle.entry(key).or_default();
        if list.len() < self.max_idle_per_host {
            list.push(conn);
        }
    }
}
