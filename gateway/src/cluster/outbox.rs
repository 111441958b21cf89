//! What the replay guard sends to Redis, in batches ([`super::claim`]). A claim goes out
//! at once, with everything else queued; an acknowledged claim's event id waits (at most
//! [`SETTLE_AFTER`]) to travel with the next claims. A few batches are in flight at a
//! time, so a lone claim leaves the moment it is made while under load the claims of many
//! requests share one pipeline: one message to the connection, one write, one reply.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::{oneshot, Notify};

use super::{Cluster, Down};

/// The longest an acknowledged claim's event id waits for a claim to travel with.
pub const SETTLE_AFTER: Duration = Duration::from_millis(2);
/// Batches sent and not yet answered, at most: the next one leaves while they are out.
const IN_FLIGHT: usize = 4;
/// Event ids waiting, at most (Redis slow to answer): past it one is dropped, counted as
/// a fallback, and its claim expires after its hold instead.
const MAX_SETTLED: usize = 65_536;

/// The queue, and the writer's wake-up.
#[derive(Default)]
pub(super) struct Outbox {
    queue: Mutex<Batch>,
    due: Notify,
}

#[derive(Default)]
struct Batch {
    claims: Vec<Ask>,
    settled: Vec<Settled>,
}

/// `SET key token NX GET PX hold`, and who waits for its answer.
struct Ask {
    key: String,
    token: String,
    hold_ms: u64,
    feature: &'static str,
    reply: oneshot::Sender<Result<Option<String>, Down>>,
}

/// An acknowledged claim's event id, to be written for the window.
pub(super) struct Settled {
    pub key: String,
    pub value: String,
    pub window_ms: u64,
    pub feature: &'static str,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Batch> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self) -> Batch {
        std::mem::take(&mut *self.lock())
    }
}

impl Cluster {
    /// Sets `key` to `token` unless it is set, expiring after `hold`: `None` when it was
    /// free (it is ours now), else the value it holds.
    pub(super) async fn ask(
        &self,
        key: &str,
        token: &str,
        hold: Duration,
        feature: &'static str,
    ) -> Result<Option<String>, Down> {
        let (reply, answer) = oneshot::channel();
        self.outbox.lock().claims.push(Ask {
            key: key.to_string(),
            token: token.to_string(),
            hold_ms: hold.as_millis() as u64,
            feature,
            reply,
        });
        self.outbox.due.notify_one();
        answer.await.unwrap_or(Err(Down))
    }

    /// Queues an event id for the next claims (or [`SETTLE_AFTER`], when none comes).
    pub(super) fn settle(&self, settled: Settled) {
        let mut queue = self.outbox.lock();
        if queue.settled.len() >= MAX_SETTLED {
            drop(queue);
            crate::metrics::cluster_fallback(settled.feature);
            return;
        }
        queue.settled.push(settled);
        if queue.settled.len() == 1 && queue.claims.is_empty() {
            self.outbox.due.notify_one();
        }
    }

    /// Sends what is queued now: at shutdown, once the last requests are answered.
    pub async fn flush_outbox(&self) {
        let batch = self.outbox.take();
        if !batch.claims.is_empty() || !batch.settled.is_empty() {
            self.send(batch).await;
        }
    }

    /// Sends the queue as it fills, for as long as the runtime runs (requests are still
    /// served while the gateway drains), with up to [`IN_FLIGHT`] batches at a time.
    pub(super) fn spawn_outbox(self: &Arc<Self>) {
        let cluster = self.clone();
        tokio::spawn(async move {
            let outbox = &cluster.outbox;
            let mut flying: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = Vec::new();
            loop {
                let (claims, settled) = {
                    let queue = outbox.lock();
                    (!queue.claims.is_empty(), !queue.settled.is_empty())
                };
                if claims && flying.len() < IN_FLIGHT {
                    flying.push(Box::pin(cluster.send(outbox.take())));
                    continue;
                }
                let landed = std::future::poll_fn(|cx| {
                    let before = flying.len();
                    flying.retain_mut(|f| f.as_mut().poll(cx).is_pending());
                    if flying.len() < before {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                });
                // Event ids alone wait for claims to travel with, at most SETTLE_AFTER.
                let mut alone = false;
                tokio::select! {
                    () = landed => {}
                    () = outbox.due.notified() => {}
                    () = tokio::time::sleep(SETTLE_AFTER), if settled && !claims => alone = true,
                }
                if alone {
                    flying.push(Box::pin(cluster.send(outbox.take())));
                }
            }
        });
    }

    /// One pipeline: the event ids (their replies ignored), then the claims, answered in
    /// order. When Redis fails every claim in it is decided locally and every event id
    /// is lost (its pending value expires; a duplicate after that publishes again).
    async fn send(&self, batch: Batch) {
        let result = match self.usable() {
            Ok((mut conn, _)) => {
                let mut pipe = redis::pipe();
                for s in &batch.settled {
                    pipe.cmd("SET")
                        .arg(&s.key)
                        .arg(&s.value)
                        .arg("PX")
                        .arg(s.window_ms)
                        .ignore();
                }
                for a in &batch.claims {
                    pipe.cmd("SET")
                        .arg(&a.key)
                        .arg(&a.token)
                        .arg("NX")
                        .arg("GET")
                        .arg("PX")
                        .arg(a.hold_ms);
                }
                let found: Result<Vec<Option<String>>, _> = pipe.query_async(&mut conn).await;
                found.map_err(|e| {
                    let feature = batch.claims.first().map_or("settle", |a| a.feature);
                    self.failed(feature, &e);
                })
            }
            Err(Down) => Err(()),
        };
        match result {
            Ok(found) if found.len() == batch.claims.len() => {
                for (ask, found) in batch.claims.into_iter().zip(found) {
                    let _ = ask.reply.send(Ok(found));
                }
            }
            _ => {
                for s in &batch.settled {
                    crate::metrics::cluster_fallback(s.feature);
                }
                for ask in batch.claims {
                    let _ = ask.reply.send(Err(Down));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn event_ids_waiting_for_redis_are_bounded() {
        let cluster = Cluster::new(&crate::config::ClusterSettings {
            info: "redis://127.0.0.1:1/0".parse().unwrap(),
            address: "redis://127.0.0.1:1".into(),
            timeout: Duration::from_millis(50),
            prefix: "test".into(),
            ca: None,
            client: None,
        })
        .unwrap();
        // No writer runs: nothing leaves the queue.
        for i in 0..MAX_SETTLED + 10 {
            cluster.settle(Settled {
                key: format!("test:claim:{i}"),
                value: "a:x:0".into(),
                window_ms: 1000,
                feature: "replay",
            });
        }
        let queue = cluster.outbox.lock();
        assert_eq!(queue.settled.len(), MAX_SETTLED);
        assert_eq!(
            queue.settled.last().unwrap().key,
            format!("test:claim:{}", MAX_SETTLED - 1)
        );
    }
}
