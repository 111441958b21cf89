//! Delivery ids and idempotency keys claimed across the fleet, with the replay guard's
//! semantics ([`crate::replay`]): the first request publishes; a duplicate arriving while
//! it is in flight waits for it and then gets its event id (or goes ahead itself when it
//! failed); after the window the id publishes again.
//!
//! One key per id: `PREFIX:claim:` and 128 bits of SHA-256 over the fleet's salt, the
//! scope (hook and kind) and the id, so ids never reach Redis in the clear. Its value is
//! `p:TOKEN` while the first request publishes (`SET NX`, expiring after the longest the
//! request can take), then `a:EVENT-ID:FINGERPRINT` for the window. A failed request
//! deletes its own pending value only (a script compares the token).
//!
//! Claims and event ids go to Redis through the [`super::outbox`]: an event id is not
//! written the moment its event is acknowledged but travels with the next claims (at
//! most [`super::outbox::SETTLE_AFTER`] later), so that a request costs one round trip to
//! Redis, not two. A duplicate arriving in between finds the pending value and waits for
//! it, as for a first still in flight.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::outbox::Settled;
use super::{Cluster, Down};
use crate::replay::{Admission, ReplayGuard, Ticket};

/// KEYS: the claim. ARGV: the pending value that is ours. Deletes it if it is still ours.
pub(super) const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// What an id identifies, for its key and its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A provider's delivery id (the replay guard).
    Delivery,
    /// An `Idempotency-Key`.
    IdempotencyKey,
}

impl Scope {
    /// The feature, as `hookgate_cluster_fallbacks_total` names it.
    pub fn feature(self) -> &'static str {
        match self {
            Scope::Delivery => "replay",
            Scope::IdempotencyKey => "idempotency",
        }
    }
}

/// The right to publish a delivery, held on the fleet or on this replica. Settle it with
/// [`Claim::accepted`]; dropping it releases the id for a retry.
pub enum Claim<'a> {
    Local(Ticket<'a>),
    /// Boxed: the local case, the common one, stays small.
    Shared(Box<SharedClaim>),
}

impl Claim<'_> {
    /// The delivery's event was acknowledged: remember it with its event id. On the
    /// fleet this is written with the next claims (see the module's text): the sender's
    /// answer does not wait for it, and a duplicate arriving meanwhile waits for it as for
    /// a first in flight.
    pub fn accepted(self, event: uuid::Uuid) {
        match self {
            Claim::Local(ticket) => ticket.accepted(event),
            Claim::Shared(claim) => claim.accepted(event),
        }
    }
}

/// A claim held in Redis.
pub struct SharedClaim {
    cluster: Arc<Cluster>,
    /// `None` when nothing is held (a duplicate that gave up waiting goes ahead unheld).
    key: Option<String>,
    token: String,
    fingerprint: u64,
    window: Duration,
    feature: &'static str,
}

/// Admits a delivery id or idempotency key on the fleet when the cluster is up, else
/// (counted) on this replica's `guard`.
pub async fn admit<'a>(
    cluster: Option<&Arc<Cluster>>,
    scope: Scope,
    hook: &str,
    guard: &'a ReplayGuard,
    id: &str,
    fingerprint: u64,
    wait: Duration,
) -> Admission<Claim<'a>> {
    if let Some(cluster) = cluster {
        match cluster
            .claim(scope, hook, id, fingerprint, guard.window(), wait)
            .await
        {
            Ok(admission) => return admission.map(|c| Claim::Shared(Box::new(c))),
            Err(Down) => crate::metrics::cluster_fallback(scope.feature()),
        }
    }
    guard
        .admit_with(id, fingerprint, wait)
        .await
        .map(Claim::Local)
}

impl Cluster {
    /// Claims `id` on the fleet; `wait` bounds how long a duplicate waits for the first.
    async fn claim(
        self: &Arc<Self>,
        scope: Scope,
        hook: &str,
        id: &str,
        fingerprint: u64,
        window: Duration,
        wait: Duration,
    ) -> Result<Admission<SharedClaim>, Down> {
        let salt = self.salt()?;
        let key = self.claim_key(&salt, scope, hook, id);
        let token = format!("p:{}", uuid::Uuid::new_v4().simple());
        // Pending for as long as the first request may take, and a little more.
        let hold = wait + Duration::from_secs(1);
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(2);
        loop {
            let found = self.ask(&key, &token, hold, scope.feature()).await?;
            let claim = |key| SharedClaim {
                cluster: self.clone(),
                key,
                token: token.clone(),
                fingerprint,
                window,
                feature: scope.feature(),
            };
            match found.as_deref().map(parse) {
                None => return Ok(Admission::Fresh(claim(Some(key)))),
                Some(Stored::Accepted(event, fp)) if fp == fingerprint => {
                    return Ok(Admission::Duplicate(event))
                }
                Some(Stored::Accepted(..)) => return Ok(Admission::Conflict),
                // The first is in flight (or the value is not ours to read): wait.
                Some(Stored::Pending) => {}
            }
            if tokio::time::Instant::now() + pause > deadline {
                // The first attempt is bounded by its ack timeout; this only guards
                // against one that never settled.
                return Ok(Admission::Fresh(claim(None)));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    fn claim_key(&self, salt: &[u8; 32], scope: Scope, hook: &str, id: &str) -> String {
        let kind: &[u8] = match scope {
            Scope::Delivery => b"d",
            Scope::IdempotencyKey => b"i",
        };
        let digest = Sha256::new()
            .chain_update(salt)
            .chain_update(kind)
            .chain_update(hook.as_bytes())
            .chain_update([0])
            .chain_update(id.as_bytes())
            .finalize();
        let mut key = String::with_capacity(self.prefix.len() + 39);
        key.push_str(&self.prefix);
        key.push_str(":claim:");
        key.push_str(&crate::hex::encode(&digest[..16]));
        key
    }
}

/// A claim's value, read.
enum Stored {
    Pending,
    Accepted(uuid::Uuid, u64),
}

fn parse(value: &str) -> Stored {
    let accepted = value.strip_prefix("a:").and_then(|rest| {
        let (event, fp) = rest.split_once(':')?;
        Some(Stored::Accepted(
            uuid::Uuid::parse_str(event).ok()?,
            u64::from_str_radix(fp, 16).ok()?,
        ))
    });
    accepted.unwrap_or(Stored::Pending)
}

impl SharedClaim {
    fn accepted(mut self, event: uuid::Uuid) {
        let Some(key) = self.key.take() else {
            return;
        };
        let value = format!("a:{}:{:016x}", event.hyphenated(), self.fingerprint);
        self.cluster.settle(Settled {
            key,
            value,
            window_ms: self.window.as_millis().max(1) as u64,
            feature: self.feature,
        });
    }
}

impl Drop for SharedClaim {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let Ok((mut conn, _)) = self.cluster.usable() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (cluster, token) = (self.cluster.clone(), std::mem::take(&mut self.token));
        runtime.spawn(async move {
            let result: Result<i64, _> = cluster
                .release
                .key(key)
                .arg(token)
                .invoke_async(&mut conn)
                .await;
            if let Err(e) = result {
                cluster.failed("release", &e);
            }
        });
    }
}
