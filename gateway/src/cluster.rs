//! State the gateway's replicas share, on Redis (`[cluster] redis`): the replay guard's
//! and idempotency keys' claims ([`claim`]) and per-hook rate limits ([`limit`]). Without
//! it every replica keeps its own, as [`crate::replay`] and [`crate::ratelimit`] do.
//!
//! Redis is a help, never a dependency of the data path. Each call has `cluster.timeout`;
//! a failed call marks the cluster down, and until the next heartbeat succeeds (one a
//! second) every request is decided by its replica alone:
//! - rate limits: a local limit of the hook's rate divided by the replicas last seen;
//! - replay guard and idempotency keys: this replica's own memory (fail open: a
//!   duplicate reaching another replica is published again), each such request counted;
//! - `/readyz` stays green and requests keep their answers; `hookgate_cluster_degraded`
//!   is 1.
//!
//! The heartbeat also keeps the fleet's shared salt (a random value every replica reads
//! from Redis, so that the same delivery id gives the same key on every replica while
//! the ids themselves are never stored) and counts the live replicas.

pub mod claim;
pub mod limit;
mod outbox;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::ClusterSettings;
use crate::metrics;
use crate::shutdown::Shutdown;

pub use claim::{admit, Claim, Scope};

/// How often a replica reports itself and checks Redis.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A replica not heard from for this long is no longer counted.
const REPLICA_TTL: Duration = Duration::from_secs(5);

/// Reports this replica, reads (or sets) the fleet's salt, and counts the live replicas.
/// KEYS: the replicas' sorted set, the salt. ARGV: this replica, a salt to set when there
/// is none, the replica TTL in ms.
const HEARTBEAT_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
local salt = redis.call('GET', KEYS[2])
if not salt then
  redis.call('SET', KEYS[2], ARGV[2])
  salt = ARGV[2]
end
return {redis.call('ZCARD', KEYS[1]), salt}
";

/// The fleet's shared state on Redis, and whether it can be used now.
pub struct Cluster {
    conn: ConnectionManager,
    address: String,
    prefix: String,
    /// This replica, in the replicas' set.
    replica: String,
    /// The fleet's salt once read from Redis.
    salt: ArcSwapOption<[u8; 32]>,
    up: AtomicBool,
    /// Whether Redis has been reached or its failure logged once.
    reported: AtomicBool,
    /// Live replicas at the last heartbeat (at least 1).
    replicas: AtomicU32,
    /// Claims and event ids on their way to Redis.
    outbox: outbox::Outbox,
    heartbeat: redis::Script,
    gcra: redis::Script,
    release: redis::Script,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cluster({}, up: {})", self.address, self.is_up())
    }
}

/// Redis cannot be used for this call: decide locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Down;

impl Cluster {
    /// A cluster on `settings`; it connects in the background and is down until the
    /// first heartbeat succeeds.
    pub fn new(settings: &ClusterSettings) -> anyhow::Result<Arc<Cluster>> {
        let client = if settings.ca.is_some() || settings.client.is_some() {
            let certs = redis::TlsCertificates {
                client_tls: settings.client.clone().map(|(client_cert, client_key)| {
                    redis::ClientTlsConfig {
                        client_cert,
                        client_key,
                    }
                }),
                root_cert: settings.ca.clone(),
            };
            redis::Client::build_with_tls(settings.info.clone(), certs)
        } else {
            redis::Client::open(settings.info.clone())
        }
        .map_err(|e| anyhow::anyhow!("cluster.redis: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(settings.timeout))
            .set_connection_timeout(Some(settings.timeout.max(Duration::from_millis(500))))
            .set_number_of_retries(1)
            .set_max_delay(HEARTBEAT);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| anyhow::anyhow!("cluster.redis: {e}"))?;
        Ok(Arc::new(Cluster {
            conn,
            address: settings.address.clone(),
            prefix: settings.prefix.clone(),
            replica: uuid::Uuid::new_v4().simple().to_string(),
            salt: ArcSwapOption::empty(),
            up: AtomicBool::new(false),
            reported: AtomicBool::new(false),
            replicas: AtomicU32::new(1),
            outbox: outbox::Outbox::default(),
            heartbeat: redis::Script::new(HEARTBEAT_SCRIPT),
            gcra: redis::Script::new(limit::GCRA_SCRIPT),
            release: redis::Script::new(claim::RELEASE_SCRIPT),
        }))
    }

    /// Whether requests use Redis now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Live replicas as last counted (1 before the first heartbeat).
    pub fn replicas(&self) -> u32 {
        self.replicas.load(Ordering::Relaxed).max(1)
    }

    /// The fleet's salt, when Redis is up.
    fn salt(&self) -> Result<Arc<[u8; 32]>, Down> {
        if !self.is_up() {
            return Err(Down);
        }
        self.salt.load_full().ok_or(Down)
    }

    /// The connection and salt, when Redis is up.
    fn usable(&self) -> Result<(ConnectionManager, Arc<[u8; 32]>), Down> {
        Ok((self.conn.clone(), self.salt()?))
    }

    /// A call failed: the cluster is down until a heartbeat succeeds. Logged when it
    /// goes down, and when Redis was never reached.
    fn failed(&self, what: &str, e: &redis::RedisError) {
        let was_up = self.up.swap(false, Ordering::Relaxed);
        if was_up || !self.reported.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                redis = %self.address,
                error = %e,
                call = what,
                "Redis failed: deciding locally (rate limits split over replicas, replay guard per replica) until it answers again"
            );
            metrics::cluster_degraded(true);
        }
    }

    /// Starts the background work: the heartbeat, and the writer of claims and event ids
    /// ([`outbox`]).
    pub fn start(self: &Arc<Self>, shutdown: Shutdown) {
        self.spawn_outbox();
        self.spawn_heartbeat(shutdown);
    }

    /// Reports this replica every second until shutdown, bringing the cluster up when
    /// Redis answers; leaves the replicas' set at shutdown.
    fn spawn_heartbeat(self: &Arc<Self>, shutdown: Shutdown) {
        let cluster = self.clone();
        metrics::cluster_degraded(true);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => cluster.beat().await,
                    () = shutdown.wait() => break,
                }
            }
            let mut conn = cluster.conn.clone();
            let _: Result<i64, _> = redis::cmd("ZREM")
                .arg(cluster.key("replicas"))
                .arg(&cluster.replica)
                .query_async(&mut conn)
                .await;
        });
    }

    /// One heartbeat.
    async fn beat(&self) {
        let mut conn = self.conn.clone();
        let fresh: [u8; 32] = rand_bytes();
        let result: Result<(u32, Vec<u8>), _> = self
            .heartbeat
            .key(self.key("replicas"))
            .key(self.key("salt"))
            .arg(&self.replica)
            .arg(&fresh[..])
            .arg(REPLICA_TTL.as_millis() as u64)
            .invoke_async(&mut conn)
            .await;
        match result {
            Ok((replicas, salt)) => {
                let Ok(salt) = <[u8; 32]>::try_from(salt.as_slice()) else {
                    tracing::error!(
                        key = %self.key("salt"),
                        "the fleet's salt in Redis is not 32 bytes: delete the key to make a new one"
                    );
                    return;
                };
                if self.salt.load().as_deref() != Some(&salt) {
                    self.salt.store(Some(Arc::new(salt)));
                }
                self.replicas.store(replicas.max(1), Ordering::Relaxed);
                metrics::cluster_replicas(replicas);
                self.reported.store(true, Ordering::Relaxed);
                if !self.up.swap(true, Ordering::Relaxed) {
                    tracing::info!(redis = %self.address, replicas, "Redis answers: replicas share replay claims and rate limits");
                    metrics::cluster_degraded(false);
                }
            }
            Err(e) => self.failed("heartbeat", &e),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }
}

fn rand_bytes() -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    out[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    out
}
