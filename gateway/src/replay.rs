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
//!   shrinks). A failed delivery keeps its place in that count until it expires.
//!
//! This protects one gateway replica: each replica remembers what it accepted. With
//! `[cluster] redis` the fleet shares its claims instead ([`crate::cluster::claim`]), and
//! this guard decides only while Redis cannot; without it, a retry reaching another
//! replica is published again, and consumers that must be exactly-once deduplicate on
//! `deliveryid` downstream. Not every provider signs its delivery id (GitHub's is a plain
//! header), so the id is a key against honest retries and replays of a signed body, not
//! proof of origin.

mod index;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use index::Index;

/// What the remembered delivery's first attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    InFlight,
    Accepted(uuid::Uuid),
    Failed,
}

/// 128 bits of the SHA-256 of a delivery id: a fixed-size key for an id of any length.
/// Two words rather than a `u128`, so that a ring entry is aligned to 8 bytes, not 16,
/// and takes 40 bytes rather than 48.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key([u64; 2]);

impl Key {
    /// The key's first word with its top bit set, so that no key's tag is the empty
    /// slot's 0.
    fn tag(&self) -> u64 {
        self.0[0] | (1 << 63)
    }
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.0[0]);
    }
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

    fn write_u64(&mut self, word: u64) {
        self.0 = word;
    }
}

type Hashed<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<DigestHasher>>;

/// A remembered delivery, 48 bytes.
struct Entry {
    key: Key,
    /// What the first request carried, for idempotency keys: 64 bits of the SHA-256 of
    /// its body (0 for delivery ids, where the body is not compared).
    fingerprint: u64,
    /// The event id once the delivery was accepted; nil while its first attempt is
    /// publishing (event ids are UUIDv7, never nil).
    event: uuid::Uuid,
    /// When the entry was created, in nanoseconds since the guard's `origin`; it lives
    /// until `created + window`.
    created: u64,
}

/// Entries live in a ring in creation order, which is also the order they expire and
/// are evicted in, and an [`Index`] finds them by key. A lookup compares the whole
/// digest against the ring, so two ids sharing a first word can only cost a longer
/// probe, never be taken for each other.
struct Inner {
    origin: Instant,
    window: u64,
    capacity: usize,
    ring: VecDeque<Entry>,
    /// The sequence number of the ring's front.
    first: u64,
    index: Index,
    /// The deliveries in flight that a duplicate waits on: few (at most the requests in
    /// flight), and none at all without duplicates, so the common case costs no
    /// allocation and no wake-up.
    waiting: Hashed<Key, watch::Sender<Outcome>>,
}

/// The remembered deliveries of one hook. Cloning shares them.
#[derive(Clone)]
pub struct ReplayGuard {
    inner: Arc<Mutex<Inner>>,
    /// Random, hashed before each id: the ids a sender chooses cannot be made to share
    /// index slots and turn lookups into long scans.
    salt: [u8; 16],
}

impl std::fmt::Debug for ReplayGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.lock().expect("replay lock");
        write!(
            f,
            "ReplayGuard(window {:?}, {}/{})",
            Duration::from_nanos(inner.window),
            inner.index.len(),
            inner.capacity
        )
    }
}

/// The verdict on a delivery; `T` is the claim a fresh one holds.
pub enum Admission<T> {
    /// First time: go ahead, and report the outcome through the claim.
    Fresh(T),
    /// Already accepted: answer with this event id and publish nothing.
    Duplicate(uuid::Uuid),
    /// Already accepted with another fingerprint: the key was reused for another request.
    Conflict,
}

impl<T> Admission<T> {
    /// The same verdict with the claim turned into another.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Admission<U> {
        match self {
            Admission::Fresh(t) => Admission::Fresh(f(t)),
            Admission::Duplicate(id) => Admission::Duplicate(id),
            Admission::Conflict => Admission::Conflict,
        }
    }
}

/// The right to publish a delivery. Dropping it without [`Ticket::accepted`] records a
/// failure, which frees the id for a retry.
pub struct Ticket<'a> {
    guard: &'a ReplayGuard,
    key: Key,
    /// Where its entry is in the ring, so that settling it needs no index lookup.
    seq: u64,
    done: bool,
}

impl ReplayGuard {
    pub fn new(window: Duration, capacity: usize) -> ReplayGuard {
        ReplayGuard {
            inner: Arc::new(Mutex::new(Inner {
                origin: Instant::now(),
                window: u64::try_from(window.as_nanos()).unwrap_or(u64::MAX),
                capacity: capacity.max(1),
                ring: VecDeque::new(),
                first: 0,
                index: Index::default(),
                waiting: Hashed::default(),
            })),
            salt: uuid::Uuid::new_v4().into_bytes(),
        }
    }

    /// Whether `other` remembers for as long and as many as this guard: a reload keeps
    /// the running guard (its ids and its claims in flight) when they are the same.
    pub fn same_settings(&self, other: &ReplayGuard) -> bool {
        let (a, b) = (
            self.inner.lock().expect("replay lock"),
            other.inner.lock().expect("replay lock"),
        );
        (a.window, a.capacity) == (b.window, b.capacity)
    }

    /// How long an accepted delivery is remembered.
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.inner.lock().expect("replay lock").window)
    }

    /// Deliveries remembered now (in flight or accepted).
    pub fn len(&self) -> usize {
        self.inner.lock().expect("replay lock").index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn digest(&self, id: &str) -> Key {
        let d = Sha256::new()
            .chain_update(self.salt)
            .chain_update(id.as_bytes())
            .finalize();
        let word = |i: usize| u64::from_le_bytes(d[i..i + 8].try_into().expect("8 bytes"));
        Key([word(0), word(8)])
    }

    /// Admits a delivery, or says it is a duplicate; waits while a first attempt of the
    /// same id is in flight (at most `wait`, then it is treated as failed).
    pub async fn admit(&self, delivery_id: &str, wait: Duration) -> Admission<Ticket<'_>> {
        self.admit_with(delivery_id, 0, wait).await
    }

    /// [`admit`](Self::admit) for a key that must come with the same request each time
    /// (an idempotency key): a key already accepted with another `fingerprint` is a
    /// [`Admission::Conflict`].
    pub async fn admit_with(
        &self,
        delivery_id: &str,
        fingerprint: u64,
        wait: Duration,
    ) -> Admission<Ticket<'_>> {
        let key = self.digest(delivery_id);
        // Read off the clock only by a duplicate that has to wait.
        let mut deadline = None;
        loop {
            let mut rx = {
                let mut inner = self.inner.lock().expect("replay lock");
                let now = inner.clock();
                inner.expire(now);
                match inner.find(&key) {
                    None => {
                        let seq = inner.insert(key, fingerprint, now);
                        return Admission::Fresh(Ticket {
                            guard: self,
                            key,
                            seq,
                            done: false,
                        });
                    }
                    Some(entry) if !entry.event.is_nil() => {
                        return if entry.fingerprint == fingerprint {
                            Admission::Duplicate(entry.event)
                        } else {
                            Admission::Conflict
                        };
                    }
                    Some(_) => inner
                        .waiting
                        .entry(key)
                        .or_insert_with(|| watch::channel(Outcome::InFlight).0)
                        .subscribe(),
                }
            };
            // Wait for the first attempt to settle, then look again.
            let settled = rx.wait_for(|o| *o != Outcome::InFlight);
            let deadline = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + wait);
            if tokio::time::timeout_at(deadline, settled).await.is_err() {
                // The first attempt is bounded by its ack timeout; this only guards
                // against a bug leaving the entry in flight.
                return Admission::Fresh(Ticket {
                    guard: self,
                    key,
                    seq: u64::MAX,
                    done: true,
                });
            }
        }
    }
}

impl Inner {
    /// Now, as entries record it.
    fn clock(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn find(&self, key: &Key) -> Option<&Entry> {
        let seq = self
            .index
            .find(key.tag(), |seq| self.entry(seq, key).is_some())?;
        self.entry(seq, key)
    }

    /// Where the entry numbered `seq` is in the ring, if it is still there.
    fn position(&self, seq: u64) -> Option<usize> {
        usize::try_from(seq.checked_sub(self.first)?)
            .ok()
            .filter(|&i| i < self.ring.len())
    }

    /// The entry numbered `seq`, if it is still in the ring and still `key`'s.
    fn entry(&self, seq: u64, key: &Key) -> Option<&Entry> {
        self.ring.get(self.position(seq)?).filter(|e| e.key == *key)
    }

    fn entry_mut(&mut self, seq: u64, key: &Key) -> Option<&mut Entry> {
        let i = self.position(seq)?;
        self.ring.get_mut(i).filter(|e| e.key == *key)
    }

    /// Remembers `key` as in flight; its sequence number.
    fn insert(&mut self, key: Key, fingerprint: u64, now: u64) -> u64 {
        while self.ring.len() >= self.capacity {
            self.pop_front();
        }
        let seq = self.first + self.ring.len() as u64;
        self.ring.push_back(Entry {
            key,
            fingerprint,
            event: uuid::Uuid::nil(),
            created: now,
        });
        self.index.insert(key.tag(), seq);
        seq
    }

    /// Forgets the oldest entry.
    fn pop_front(&mut self) {
        let Some(entry) = self.ring.pop_front() else {
            return;
        };
        // Unless it is no longer indexed (its delivery failed).
        self.index.remove(entry.key.tag(), self.first);
        self.first += 1;
    }

    /// Forgets entries older than the window.
    fn expire(&mut self, now: u64) {
        while self
            .ring
            .front()
            .is_some_and(|e| now.saturating_sub(e.created) >= self.window)
        {
            self.pop_front();
        }
    }

    /// Tells a waiting duplicate, if there is one, how the first attempt ended.
    fn settle(&mut self, key: &Key, outcome: Outcome) {
        if self.waiting.is_empty() {
            return;
        }
        if let Some(state) = self.waiting.remove(key) {
            state.send_replace(outcome);
        }
    }
}

impl Ticket<'_> {
    /// The delivery's event was acknowledged: remember it with its event id.
    pub fn accepted(mut self, event: uuid::Uuid) {
        self.done = true;
        let mut inner = self.guard.inner.lock().expect("replay lock");
        if let Some(entry) = inner.entry_mut(self.seq, &self.key) {
            entry.event = event;
        }
        inner.settle(&self.key, Outcome::Accepted(event));
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut inner = self.guard.inner.lock().expect("replay lock");
        // Forgotten: its place in the ring stays until it expires, but no lookup finds it.
        let seq = self.seq;
        if inner
            .entry(seq, &self.key)
            .is_some_and(|e| e.event.is_nil())
        {
            inner.index.remove(self.key.tag(), seq);
        }
        inner.settle(&self.key, Outcome::Failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(a: Admission<Ticket>) -> Ticket {
        match a {
            Admission::Fresh(t) => t,
            Admission::Duplicate(id) => panic!("unexpected duplicate of {id}"),
            Admission::Conflict => panic!("unexpected conflict"),
        }
    }

    const WAIT: Duration = Duration::from_secs(5);
    const E1: &str = "01a2164e-81c9-7316-8b63-71e3912ce201";

    fn e1() -> uuid::Uuid {
        uuid::Uuid::parse_str(E1).unwrap()
    }

    #[tokio::test]
    async fn an_accepted_delivery_is_a_duplicate_afterwards() {
        let g = ReplayGuard::new(Duration::from_secs(60), 10);
        fresh(g.admit("d1", WAIT).await).accepted(e1());
        match g.admit("d1", WAIT).await {
            Admission::Duplicate(id) => assert_eq!(id, e1()),
            Admission::Fresh(_) | Admission::Conflict => panic!("second delivery admitted"),
        }
        let _other = fresh(g.admit("d2", WAIT).await);
    }

    #[tokio::test]
    async fn a_key_accepted_with_one_fingerprint_conflicts_with_another() {
        let g = ReplayGuard::new(Duration::from_secs(60), 10);
        fresh(g.admit_with("k", 7, WAIT).await).accepted(e1());
        assert!(matches!(g.admit_with("k", 7, WAIT).await, Admission::Duplicate(id) if id == e1()));
        assert!(matches!(
            g.admit_with("k", 8, WAIT).await,
            Admission::Conflict
        ));
    }

    #[tokio::test]
    async fn a_failed_delivery_can_be_retried() {
        let g = ReplayGuard::new(Duration::from_secs(60), 10);
        drop(fresh(g.admit("d1", WAIT).await));
        fresh(g.admit("d1", WAIT).await).accepted(e1());
        assert_eq!(g.len(), 1);
    }

    #[tokio::test]
    async fn a_concurrent_duplicate_waits_for_the_first_outcome() {
        let g = ReplayGuard::new(Duration::from_secs(60), 10);
        let first = fresh(g.admit("d", WAIT).await);
        let g2 = g.clone();
        let waiter = tokio::spawn(async move {
            match g2.admit("d", WAIT).await {
                Admission::Duplicate(id) => id.to_string(),
                Admission::Fresh(_) | Admission::Conflict => "fresh".to_string(),
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "the duplicate waits while the first is in flight"
        );
        first.accepted(e1());
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
            fresh(g.admit(&format!("id-{i}"), WAIT).await).accepted(e1());
        }
        assert_eq!(g.len(), 100);
        // The newest are remembered, the oldest forgotten.
        assert!(matches!(
            g.admit("id-99999", WAIT).await,
            Admission::Duplicate(_)
        ));
        assert!(matches!(g.admit("id-0", WAIT).await, Admission::Fresh(_)));
    }

    #[test]
    fn ids_sharing_a_first_word_are_never_taken_for_each_other() {
        let g = ReplayGuard::new(Duration::from_secs(60), 10);
        let mut inner = g.inner.lock().unwrap();
        let (a, b) = (Key([1, 2]), Key([1, 3]));
        inner.insert(a, 0, 0);
        assert!(inner.find(&a).is_some());
        assert!(inner.find(&b).is_none(), "b was never seen");
        inner.insert(b, 0, 0);
        assert_eq!(inner.find(&b).map(|e| e.key), Some(b));
        assert_eq!(
            inner.find(&a).map(|e| e.key),
            Some(a),
            "both are remembered"
        );
    }

    /// Ids a sender picked so that their plain SHA-256 digests all share one index slot
    /// (250 of them, in a table of 512) spread out like any others.
    #[tokio::test]
    async fn ids_chosen_to_collide_do_not_pile_up() {
        let g = ReplayGuard::new(Duration::from_secs(60), 1000);
        let crafted = (0u64..)
            .map(|i| format!("crafted-{i}"))
            .filter(|id| {
                let d = Sha256::digest(id.as_bytes());
                d[0] == 0 && d[1] & 0x03 == 0
            })
            .take(250);
        for id in crafted {
            fresh(g.admit(&id, WAIT).await).accepted(e1());
        }
        let inner = g.inner.lock().unwrap();
        assert_eq!(inner.index.size(), 512);
        let run = inner.index.longest_run();
        assert!(run < 150, "a run of {run} taken slots");
    }

    #[tokio::test]
    async fn a_retried_delivery_outlives_its_failed_first_attempt() {
        // Capacity 3: the failed attempt's place is the oldest and is evicted first; the
        // retry, accepted, must still be found afterwards.
        let g = ReplayGuard::new(Duration::from_secs(60), 3);
        drop(fresh(g.admit("d", WAIT).await));
        fresh(g.admit("d", WAIT).await).accepted(e1());
        fresh(g.admit("x", WAIT).await).accepted(e1());
        fresh(g.admit("y", WAIT).await).accepted(e1());
        assert!(matches!(g.admit("d", WAIT).await, Admission::Duplicate(_)));
    }

    #[tokio::test]
    async fn ids_are_forgotten_after_the_window() {
        let g = ReplayGuard::new(Duration::from_millis(50), 10);
        fresh(g.admit("d", WAIT).await).accepted(e1());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(matches!(g.admit("d", WAIT).await, Admission::Fresh(_)));
    }
}
