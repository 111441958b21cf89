//! Not reading from a connection while the gateway is full (see [`crate::in_flight`]):
//! a connection with no request in progress is left unpolled until a slot frees or the
//! pause runs out. A connection with a request in progress is always polled, so admitted
//! requests finish and their answers go out.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::in_flight::InFlight;

/// Requests of one connection that are being handled, and whether it has had any.
#[derive(Debug, Default)]
pub(super) struct InProgress {
    now: AtomicUsize,
    seen: AtomicBool,
}

/// One request of a connection being handled; counted out when dropped.
pub(super) struct Handling(Arc<InProgress>);

impl InProgress {
    pub(super) fn start(self: &Arc<Self>) -> Handling {
        self.now.fetch_add(1, Ordering::Relaxed);
        self.seen.store(true, Ordering::Relaxed);
        Handling(self.clone())
    }

    fn idle(&self) -> bool {
        self.now.load(Ordering::Relaxed) == 0
    }

    /// Whether a request of this connection has reached the handler.
    pub(super) fn seen_any(&self) -> bool {
        self.seen.load(Ordering::Relaxed)
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A connection's future, left unpolled while the gateway is full and the connection
    /// idle.
    pub(super) struct Paced<F> {
        #[pin]
        conn: F,
        in_flight: Option<Arc<InFlight>>,
        in_progress: Arc<InProgress>,
        pause: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    }
}

/// Drives `conn`, pausing it whenever `in_flight` is full and the connection is idle.
/// Without a limit (the admin listener) it is just `conn`.
pub(super) fn paced<F: Future>(
    conn: F,
    in_flight: Option<Arc<InFlight>>,
    in_progress: Arc<InProgress>,
) -> Paced<F> {
    Paced {
        conn,
        in_flight,
        in_progress,
        pause: None,
    }
}

impl<F: Future> Future for Paced<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if let Some(pause) = this.pause.as_mut() {
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // Resumed: read at least once, whatever the gateway's state now.
            *this.pause = None;
            return this.conn.poll(cx);
        }
        if let Some(in_flight) = this.in_flight {
            if in_flight.is_full() && this.in_progress.idle() {
                let mut pause: Pin<Box<dyn Future<Output = ()> + Send>> =
                    Box::pin(in_flight.pause());
                if pause.as_mut().poll(cx).is_pending() {
                    *this.pause = Some(pause);
                    return Poll::Pending;
                }
            }
        }
        this.conn.poll(cx)
    }
}
