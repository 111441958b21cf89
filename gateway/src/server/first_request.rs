//! The deadline from accept to a connection's first complete request head.
//!
//! hyper's `header_read_timeout` starts only once HTTP/1.1 has been chosen, and the
//! protocol detection before it (is this `POST …` or the HTTP/2 preface?) waits for bytes
//! with no deadline; HTTP/2 has no header deadline at all. Without this, a connection that
//! sends nothing, one byte, or only the preface would hold a connection slot forever, and
//! `server.max_connections` of them would lock every sender out. So every connection gets
//! `server.header_read_timeout` from accept (TLS handshake included) until its first
//! request reaches the handler: for HTTP/1.1 that is a complete head, for HTTP/2 the
//! preface, the client's SETTINGS and a complete HEADERS frame. After the first request,
//! hyper's own timers take over (the head read and keep-alive timeouts of HTTP/1.1, the
//! keep-alive pings of HTTP/2).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

use super::pacing::InProgress;

pin_project_lite::pin_project! {
    /// A connection's future that ends (dropping, and so closing, the connection) if no
    /// request has reached the handler by the deadline.
    pub(super) struct FirstRequest<F> {
        #[pin]
        conn: F,
        #[pin]
        deadline: Option<Sleep>,
        requests: Arc<InProgress>,
    }
}

/// Drives `conn` with a deadline for its first request; `requests` is the connection's
/// request count, which the service raises.
pub(super) fn deadline<F>(conn: F, at: Instant, requests: Arc<InProgress>) -> FirstRequest<F> {
    FirstRequest {
        conn,
        deadline: Some(tokio::time::sleep_until(at)),
        requests,
    }
}

/// Why a connection was closed before its first request.
#[derive(Debug, thiserror::Error)]
#[error("no complete request head within server.header_read_timeout")]
pub(super) struct NoRequestInTime;

impl<F, E> Future for FirstRequest<F>
where
    F: Future<Output = Result<(), E>>,
    E: From<NoRequestInTime>,
{
    type Output = Result<(), E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(deadline) = this.deadline.as_mut().as_pin_mut() {
            if this.requests.seen_any() {
                this.deadline.set(None);
            } else if deadline.poll(cx).is_ready() {
                return Poll::Ready(Err(NoRequestInTime.into()));
            }
        }
        this.conn.poll(cx)
    }
}
