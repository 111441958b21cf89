//! Client connections: one HTTP/1.1 connection per worker, or HTTP/2
//! connections shared by several workers.
//!
//! hyper's low-level `client::conn` API is used instead of a pooled client so
//! that the harness controls exactly how many connections exist and a pool's
//! bookkeeping stays out of the measured path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::timeout;

type Body = Full<Bytes>;

/// How one request attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A complete response; `id` is the event id of a 2xx answer `{"id":"…"}`, when asked
    /// for and present.
    Response {
        status: u16,
        id: Option<Box<str>>,
    },
    Timeout,
    Io,
}

/// The connection task is aborted with its owner, so that a connection
/// abandoned mid-request (after a timeout) does not linger in the runtime.
pub(crate) struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn tcp(addr: SocketAddr, limit: Duration) -> Option<TcpStream> {
    let stream = timeout(limit, TcpStream::connect(addr)).await.ok()?.ok()?;
    // Requests and responses are small; Nagle would add up to 40 ms.
    stream.set_nodelay(true).ok()?;
    Some(stream)
}

pub(crate) struct H1 {
    sender: http1::SendRequest<Body>,
    _task: AbortOnDrop,
}

async fn connect_h1(addr: SocketAddr, limit: Duration) -> Option<H1> {
    let stream = tcp(addr, limit).await?;
    let (sender, conn) = timeout(limit, http1::handshake(TokioIo::new(stream)))
        .await
        .ok()?
        .ok()?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(H1 {
        sender,
        _task: AbortOnDrop(task),
    })
}

/// One HTTP/2 connection shared by several workers.
///
/// Workers keep their own clone of the sender, so the lock is taken only to
/// (re)connect, never per request.
pub(crate) struct H2Slot {
    addr: SocketAddr,
    state: Mutex<H2State>,
}

#[derive(Default)]
struct H2State {
    generation: u64,
    conn: Option<(http2::SendRequest<Body>, Arc<AbortOnDrop>)>,
}

pub(crate) type H2Handle = (u64, http2::SendRequest<Body>, Arc<AbortOnDrop>);

impl H2Slot {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            state: Mutex::new(H2State::default()),
        }
    }

    /// The slot's live connection, replacing it if it is closed or is the
    /// generation the caller found broken. Comparing generations means that
    /// when many workers see the same connection die, only the first
    /// reconnects and the rest pick up its new connection.
    async fn get(&self, broken: Option<u64>, limit: Duration) -> Option<H2Handle> {
        let mut state = self.state.lock().await;
        if let Some((sender, task)) = &state.conn {
            if broken != Some(state.generation) && !sender.is_closed() {
                return Some((state.generation, sender.clone(), task.clone()));
            }
        }
        state.conn = None;
        let stream = tcp(self.addr, limit).await?;
        let (sender, conn) = timeout(
            limit,
            http2::handshake(TokioExecutor::new(), TokioIo::new(stream)),
        )
        .await
        .ok()?
        .ok()?;
        let task = Arc::new(AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        })));
        state.generation += 1;
        state.conn = Some((sender.clone(), task.clone()));
        Some((state.generation, sender, task))
    }
}

/// A worker's route to the server.
pub(crate) enum Link {
    H1 {
        addr: SocketAddr,
        conn: Option<H1>,
    },
    H2 {
        slot: Arc<H2Slot>,
        conn: Option<H2Handle>,
    },
}

impl Link {
    pub(crate) fn h1(addr: SocketAddr) -> Self {
        Link::H1 { addr, conn: None }
    }

    pub(crate) fn h2(slot: Arc<H2Slot>) -> Self {
        Link::H2 { slot, conn: None }
    }

    /// Makes sure a request can be sent now, (re)connecting if need be.
    /// `false` means the connection could not be made within `limit`.
    pub(crate) async fn ready(&mut self, limit: Duration) -> bool {
        match self {
            Link::H1 { addr, conn } => {
                if let Some(c) = conn {
                    // A server may close an idle keep-alive connection; that
                    // is not an error of the next request, which was never
                    // sent on it.
                    if matches!(timeout(limit, c.sender.ready()).await, Ok(Ok(()))) {
                        return true;
                    }
                    *conn = None;
                }
                *conn = connect_h1(*addr, limit).await;
                match conn {
                    Some(c) => matches!(timeout(limit, c.sender.ready()).await, Ok(Ok(()))),
                    None => false,
                }
            }
            Link::H2 { slot, conn } => {
                let broken = match conn {
                    Some((_, sender, _)) if !sender.is_closed() => return true,
                    Some((generation, ..)) => Some(*generation),
                    None => None,
                };
                *conn = slot.get(broken, limit).await;
                conn.is_some()
            }
        }
    }

    /// Sends `request` and reads the whole response. Call only after
    /// [`Link::ready`] returned `true`.
    /// With `want_id`, a 2xx body is read for the event id it names.
    pub(crate) async fn exchange(
        &mut self,
        request: Request<Body>,
        limit: Duration,
        want_id: bool,
    ) -> Outcome {
        match self {
            Link::H1 { conn, .. } => {
                let Some(c) = conn else {
                    return Outcome::Io;
                };
                let response = respond(c.sender.send_request(request), want_id);
                let outcome = match timeout(limit, response).await {
                    Ok(Ok(outcome)) => return outcome,
                    Ok(Err(_)) => Outcome::Io,
                    Err(_) => Outcome::Timeout,
                };
                // HTTP/1.1 cannot abandon a response and reuse the
                // connection, so any failure costs the connection.
                *conn = None;
                outcome
            }
            Link::H2 { conn, .. } => {
                let Some((_, sender, _)) = conn else {
                    return Outcome::Io;
                };
                // Dropping a timed-out stream resets only that stream; the
                // connection is replaced by `ready` only if it closed.
                match timeout(limit, respond(sender.send_request(request), want_id)).await {
                    Ok(Ok(outcome)) => outcome,
                    Ok(Err(_)) => Outcome::Io,
                    Err(_) => Outcome::Timeout,
                }
            }
        }
    }
}

async fn respond(
    response: impl std::future::Future<Output = hyper::Result<http::Response<Incoming>>>,
    want_id: bool,
) -> hyper::Result<Outcome> {
    let response = response.await?;
    let status = response.status().as_u16();
    let keep = want_id && response.status().is_success();
    let mut body = response.into_body();
    // The client must consume the body to reuse the connection; it keeps it only to read
    // an event id, and then only a gateway's short answer.
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            if keep && kept.len() < MAX_KEPT_BODY {
                kept.extend_from_slice(data);
            }
        }
    }
    let id = keep.then(|| crate::verify::event_id(&kept)).flatten();
    Ok(Outcome::Response { status, id })
}

/// Longest answer read for an event id.
const MAX_KEPT_BODY: usize = 4096;
