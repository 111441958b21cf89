//! The in-flight limit, `server.max_in_flight`, shared by the pipeline and the listener.
//! The pipeline takes a slot for each request before reading its body and sheds the
//! request with 503 when none is free. While none is free, the listener stops reading new
//! requests from connections that have none in progress: such a request could only be
//! shed, and parsing and answering it takes the CPU the admitted requests need to finish.
//! A paused connection is read again when a slot frees (one connection per freed slot)
//! or after [`PAUSE_MAX`], so every sender still gets an answer, a 503 if the gateway is
//! still full.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, SemaphorePermit};

/// Longest a connection is left unread while the gateway is full.
pub const PAUSE_MAX: Duration = Duration::from_millis(100);

/// Slots for requests in flight, and the connections waiting for one.
#[derive(Debug)]
pub struct InFlight {
    slots: Semaphore,
    /// Connections paused until a slot frees.
    paused: AtomicUsize,
    freed: Notify,
}

/// One request's place in flight; freeing it lets a paused connection be read.
pub struct Slot<'a> {
    _permit: SemaphorePermit<'a>,
    in_flight: &'a InFlight,
}

impl InFlight {
    pub fn new(max: usize) -> InFlight {
        InFlight {
            slots: Semaphore::new(max),
            paused: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    /// A slot if one is free.
    pub fn try_admit(&self) -> Option<Slot<'_>> {
        let permit = self.slots.try_acquire().ok()?;
        crate::metrics::admitted();
        Some(Slot {
            _permit: permit,
            in_flight: self,
        })
    }

    pub fn is_full(&self) -> bool {
        self.slots.available_permits() == 0
    }

    /// Resolves when a slot frees (to one paused connection per slot) or after
    /// [`PAUSE_MAX`].
    pub fn pause(self: &Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        let in_flight = self.clone();
        async move {
            in_flight.paused.fetch_add(1, Ordering::Relaxed);
            crate::metrics::connection_paused();
            let _resumed = Resumed(&in_flight);
            let _ = tokio::time::timeout(PAUSE_MAX, in_flight.freed.notified()).await;
        }
    }
}

/// Counts a paused connection out when its pause ends, however it ends.
struct Resumed<'a>(&'a InFlight);

impl Drop for Resumed<'_> {
    fn drop(&mut self) {
        self.0.paused.fetch_sub(1, Ordering::Relaxed);
        crate::metrics::connection_resumed();
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        crate::metrics::released();
        if self.in_flight.paused.load(Ordering::Relaxed) > 0 {
            self.in_flight.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_paused_connection_resumes_when_a_slot_frees() {
        let in_flight = Arc::new(InFlight::new(1));
        let slot = in_flight.try_admit().unwrap();
        assert!(in_flight.is_full());
        assert!(in_flight.try_admit().is_none());
        let started = std::time::Instant::now();
        let pause = tokio::spawn(in_flight.pause());
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(slot);
        pause.await.unwrap();
        assert!(
            started.elapsed() < PAUSE_MAX,
            "resumed after {:?}",
            started.elapsed()
        );
        assert!(!in_flight.is_full());
    }

    #[tokio::test]
    async fn a_pause_ends_by_itself_while_the_gateway_stays_full() {
        let in_flight = Arc::new(InFlight::new(1));
        let _slot = in_flight.try_admit().unwrap();
        let started = std::time::Instant::now();
        in_flight.pause().await;
        assert!(started.elapsed() >= PAUSE_MAX);
        assert!(in_flight.is_full());
        assert_eq!(in_flight.paused.load(Ordering::Relaxed), 0);
    }
}
