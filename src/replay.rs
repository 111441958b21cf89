//! Replay protection: a delivery id is remembered once its event was acknowledged by the
//! broker, so a second delivery of it is answered 2xx with the original event id and
//! publishes nothing.
//!
//! - A delivery still in flight makes a concurrent duplicate wait for its outcome: on
//!   success the duplicate gets the same answer, on failure it goes ahead itself.
//! - A delivery that failed (503) is forgotten, so the sender's retry is accepted.
//! - Ids are remembered for the hook's window (the signature tolerance, or
//!   `dedupe_window`), at most `capacity` of them; past the capacity the oldest is
//!   forgotten first, so memory stays bounded under any load (the effective window then
//!   shrinks).
//!
//! This protects one gateway replica: each replica remembers what it accepted. Behind a
//! load balancer that spreads a provider's retries over replicas, a retry reaching another
//! replica is published again; consumers that must be exactly-once deduplicate on
//! `deliveryid` downstream. Not every provider signs its delivery id (GitHub's is a plain
//! header), so the id is a key against honest retries and replays of a signed body, not
//! proof of origin.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// What the remembered delivery's first attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    InFlight,
    Accepted(uuid::Uuid),
    Failed,
}

/// A remembered delivery. Once accepted it shrinks to the event id, so that a full guard
/// costs about 100 bytes per delivery.
enum Slot {
    /// The first attempt is publishing; the channel exists only once a duplicate waits
    /// on it, so the common case costs no allocation and no wake-up.
    InFlight(Option<watch::Sender<Outcome>>),
    Accepted(uuid::Uuid),
}

/// Keys are already uniformly distributed (they are SHA-256 digests): hashing them again
/// would only cost time.
#[derive(Default, Clone, Copy)]
struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }

    fn write_u128(&mut self, key: u128) {
        self.0 = key as u64;
    }
}

type Entries = HashMap<u128, Entry, std::hash::BuildHasherDefault<DigestHasher>>;

struct Entry {
    slot: Slot,
    /// When the entry was created; it lives until `created + window`.
    created: Instant,
}

struct Inner {
    window: Duration,
    capacity: usize,
    entries: Entries,
    /// Keys in creation order, for eviction; may hold keys already removed.
    order: VecDeque<(u128, Instant)>,
}

/// The remembered deliveries of one hook. Cloning shares them.
#[derive(Clone)]
pub struct ReplayGuard {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for ReplayGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.lock().expect("replay lock");
        write!(
            f,
            "ReplayGuard(window {:?}, {}/{})",
            inner.window,
            inner.entries.len(),
            inner.capacity
        )
    }
}

/// The verdict on a delivery.
pub enum Admission {
    /// First time: go ahead, and report the outcome through the ticket.
    Fresh(Ticket),
    /// Already accepted: answer with this event id and publish nothing.
    Duplicate(String),
}

/// The right to publish a delivery. Dropping it without [`Ticket::accepted`] records a
/// failure, which frees the id for a retry.
pub struct Ticket {
    guard: ReplayGuard,
    key: u128,
    done: bool,
}

impl ReplayGuard {
    pub fn new(window: Duration, capacity: usize) -> ReplayGuard {
        ReplayGuard {
            inner: Arc::new(Mutex::new(Inner {
                window,
                capacity: capacity.max(1),
                entries: Entries::default(),
                order: VecDeque::new(),
            })),
        }
    }

    /// Deliveries remembered now.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("replay lock").entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Admits a delivery, or says it is a duplicate; waits while a first attempt of the
    /// same id is in flight (at most `wait`, then it is treated as failed).
    pub async fn admit(&self, delivery_id: &str, wait: Duration) -> Admission {
        let key = digest(delivery_id);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mut rx = {
                let mut inner = self.inner.lock().expect("replay lock");
                let now = Instant::now();
                inner.expire(now);
                match inner.entries.get(&key) {
                    None => {
                        inner.insert(key, now);
                        return Admission::Fresh(Ticket {
                            guard: self.clone(),
                            key,
                            done: false,
                        });
                    }
                    Some(Entry {
                        slot: Slot::Accepted(id),
                        ..
                    }) => return Admission::Duplicate(id.hyphenated().to_string()),
                    Some(_) => {
                        let Some(Entry {
                            slot: Slot::InFlight(state),
                            ..
                        }) = inner.entries.get_mut(&key)
                        else {
                            unreachable!("the entry was just found in flight");
                        };
                        state
                            .get_or_insert_with(|| watch::channel(Outcome::InFlight).0)
                            .subscribe()
                    }
                }
            };
            // Wait for the first attempt to settle, then look again.
            let settled = rx.wait_for(|o| *o != Outcome::InFlight);
            if tokio::time::timeout_at(deadline, settled).await.is_err() {
                // The first attempt is bounded by its ack timeout; this only guards
                // against a bug leaving the entry in flight.
                return Admission::Fresh(Ticket {
                    guard: self.clone(),
                    key,
                    done: true,
                });
            }
        }
    }
}

impl Inner {
    fn insert(&mut self, key: u128, now: Instant) {
        while self.entries.len() >= self.capacity {
            match self.order.pop_front() {
                Some((old, _)) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
        self.entries.insert(
            key,
            Entry {
                slot: Slot::InFlight(None),
                created: now,
            },
        );
        self.order.push_back((key, now));
    }

    /// Forgets entries older than the window (and stale order records).
    fn expire(&mut self, now: Instant) {
        while let Some(&(key, created)) = self.order.front() {
            // The oldest record is within the window: so is everything after it, and the
            // map need not be looked at.
            if now.duration_since(created) < self.window {
                break;
            }
            let live = self.entries.get(&key).is_some_and(|e| e.created == created);
            self.order.pop_front();
            if live {
                self.entries.remove(&key);
            }
        }
    }
}

impl Ticket {
    /// The delivery's event was acknowledged: remember it with its event id.
    pub fn accepted(mut self, event_id: &str) {
        self.done = true;
        let Ok(id) = uuid::Uuid::parse_str(event_id) else {
            return;
        };
        let mut inner = self.guard.inner.lock().expect("replay lock");
        if let Some(entry) = inner.entries.get_mut(&self.key) {
            if let Slot::InFlight(Some(state)) =
                std::mem::replace(&mut entry.slot, Slot::Accepted(id))
            {
                state.send_replace(Outcome::Accepted(id));
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut inner = self.guard.inner.lock().expect("replay lock");
        if let Some(Entry {
            slot: Slot::InFlight(Some(state)),
            ..
        }) = inner.entries.remove(&self.key)
        {
            state.send_replace(Outcome::Failed);
        }
    }
}

/// A fixed-size key for an id of any length: 128 bits of SHA-256.
fn digest(id: &str) -> u128 {
    let d = Sha256::digest(id.as_bytes());
    u128::from_le_bytes(d[..16].try_into().expect("32-byte digest"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(a: Admission) -> Ticket {
        match a {
            Admission::Fresh(t) => t,
            Admission::Duplicate(id) => panic!("unexpected duplicate of {id}"),
        }
    }

    const WAIT: Duration = Duration::from_secs(5);
    const E1: &str = "01a2164e-81c9-7316-8b63-71e3912ce201";

    #[tokio::test]
    async fn an_accepted_delivery_is_a_duplicate_afterwards() {
        let g = ReplayGuard::new(Duration::from_secs(60), 10);
        fresh(g.admit("d1", WAIT).await).accepted(E1);
        match g.admit("d1", WAIT).await {
            Admission::Duplicate(id) => assert_eq!(id, E1),
            Admission::Fresh(_) => panic!("second delivery admitted"),
        }
        let _other = fresh(g.admit("d2", WAIT).await);
    }

    #[tokio::test]
    async fn a_failed_delivery_can_be_retried() {
        let g = ReplayGuard::new(Duration::from_secs(60), 10);
        drop(fresh(g.admit("d1", WAIT).await));
        fresh(g.admit("d1", WAIT).await).accepted(E1);
        assert_eq!(g.len(), 1);
    }

    #[tokio::test]
    async fn a_concurrent_duplicate_waits_for_the_first_outcome() {
        let g = ReplayGuard::new(Duration::from_secs(60), 10);
        let first = fresh(g.admit("d", WAIT).await);
        let g2 = g.clone();
        let waiter = tokio::spawn(async move {
            match g2.admit("d", WAIT).await {
                Admission::Duplicate(id) => id,
                Admission::Fresh(_) => "fresh".to_string(),
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "the duplicate waits while the first is in flight"
        );
        first.accepted(E1);
        assert_eq!(waiter.await.unwrap(), E1);

        // When the first fails, the waiter goes ahead itself.
        let first = fresh(g.admit("e", WAIT).await);
        let g3 = g.clone();
        let waiter =
            tokio::spawn(async move { matches!(g3.admit("e", WAIT).await, Admission::Fresh(_)) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(first);
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn memory_is_bounded_oldest_first() {
        let g = ReplayGuard::new(Duration::from_secs(3600), 100);
        for i in 0..100_000 {
            fresh(g.admit(&format!("id-{i}"), WAIT).await).accepted(E1);
        }
        assert_eq!(g.len(), 100);
        // The newest are remembered, the oldest forgotten.
        assert!(matches!(
            g.admit("id-99999", WAIT).await,
            Admission::Duplicate(_)
        ));
        assert!(matches!(g.admit("id-0", WAIT).await, Admission::Fresh(_)));
    }

    #[tokio::test]
    async fn ids_are_forgotten_after_the_window() {
        let g = ReplayGuard::new(Duration::from_millis(50), 10);
        fresh(g.admit("d", WAIT).await).accepted(E1);
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(matches!(g.admit("d", WAIT).await, Admission::Fresh(_)));
    }
}
