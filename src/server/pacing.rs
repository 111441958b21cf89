//! Not reading from a connection while the gateway is full (see [`crate::in_flight`]):
//! a connection with no request in progress is left unpolled until a slot frees or the
//! pause runs out. A connection with a request in progress is always polled, so admitted
//! requests finish and their answers go out.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;

use crate::in_flight::InFlight;

/// Requests of one connection that are being handled.
#[derive(Debug, Default)]
pub(super) struct InProgress(AtomicUsize);

/// One request of a connection being handled; counted out when dropped.
pub(super) struct Handling(Arc<InProgress>);

impl InProgress {
    pub(super) fn start(self: &Arc<Self>) -> Handling {
        self.0.fetch_add(1, Ordering::Relaxed);
        Handling(self.clone())
    }

    fn idle(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Drives `conn`, pausing it whenever `in_flight` is full and the connection is idle.
/// Without a limit (the admin listener) it is just `conn`.
pub(super) async fn paced<F: Future>(
    conn: F,
    in_flight: Option<Arc<InFlight>>,
    in_progress: Arc<InProgress>,
) -> F::Output {
    let Some(in_flight) = in_flight else {
        return conn.await;
    };
    let mut conn = pin!(conn);
    let mut pause: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = None;
    std::future::poll_fn(move |cx| {
        if let Some(p) = pause.as_mut() {
            if p.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // Resumed: read at least once, whatever the gateway's state now.
            pause = None;
            return conn.as_mut().poll(cx);
        }
        if in_flight.is_full() && in_progress.idle() {
            let mut p: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(in_flight.pause());
            if p.as_mut().poll(cx).is_pending() {
                pause = Some(p);
                return Poll::Pending;
            }
        }
        conn.as_mut().poll(cx)
    })
    .await
}
