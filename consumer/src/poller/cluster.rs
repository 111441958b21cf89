//! Once per cluster: every replica of the consumer knows every poller, but each poller
//! runs on one replica only, chosen by Kafka's group protocol rather than a lock.
//!
//! - A **control topic** (`kafka.control_topic`, compacted) has a fixed number of
//!   partitions; a poller belongs to partition `fnv1a(id) % partitions`.
//! - The replicas join the group `{kafka.group}.pollers` on that topic. A replica runs
//!   the pollers of the partitions it is assigned, and a rebalance moves them.
//! - **Handover**: when a partition is revoked, its pollers finish the poll under way
//!   (with its event and its state record) before the rebalance completes, so the next
//!   owner never overlaps the last.
//! - **State** ([`PollState`]: whether the condition held, the last firing, the last
//!   poll) is written after each poll to the control topic, keyed by poller id, into the
//!   poller's partition. A new owner reads its partitions from the start before it
//!   starts their pollers, so edge mode and the cooldown hold across moves and restarts.
//!
//! Delivery is at least once: a replica that dies between publishing an event and
//! storing its state makes the next owner poll, and possibly fire, again.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::watch;

use super::state::{now_ms, PollState};
use super::Poller;
use crate::config::KafkaSettings;
use crate::outbound::Client;
use hookgate_expression::Engine;

/// How long a record (an event, a state) may wait for the broker's acknowledgement.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);
/// Reading the control topic's state at assignment gives up after this long.
const RECOVERY_LIMIT: Duration = Duration::from_secs(15);
/// After reaching the end of the control partitions, records still arriving within this
/// long are read too (a broker's high watermark may trail its last write).
const RECOVERY_QUIET: Duration = Duration::from_millis(300);

/// The pollers this replica runs, and the group membership that decides which.
pub struct Cluster {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    supervisor: Arc<Supervisor>,
}

/// What the pollers need to run.
pub struct Deps {
    pub http: Client,
    pub engine: Engine,
    pub producer: FutureProducer,
}

impl Cluster {
    /// Creates the control topic if it is missing, joins the group and starts the
    /// pollers of the partitions this replica gets. Returns at once; assignment follows.
    pub async fn start(
        pollers: Vec<Arc<Poller>>,
        kafka: &KafkaSettings,
        deps: Deps,
    ) -> anyhow::Result<Cluster> {
        let base = kafka.consumer_config();
        let partitions = ensure_topic(&base, kafka).await?;
        // The state reader assigns partitions itself; librdkafka wants a group id all
        // the same, which it never joins.
        let mut reader = base.clone();
        reader
            .set("group.id", format!("{}.pollers-state", kafka.group))
            .set("enable.auto.commit", "false");
        let supervisor = Arc::new(Supervisor {
            pollers,
            partitions,
            topic: kafka.control_topic.clone(),
            reader,
            deps,
            runtime: tokio::runtime::Handle::current(),
            running: Mutex::new(HashMap::new()),
            states: Mutex::new(HashMap::new()),
        });
        let mut config = base;
        config
            .set("group.id", format!("{}.pollers", kafka.group))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest");
        let consumer: BaseConsumer<ControlContext> = config
            .create_with_context(ControlContext {
                supervisor: supervisor.clone(),
            })
            .context("creating the pollers' group consumer")?;
        consumer
            .subscribe(&[&kafka.control_topic])
            .context("subscribing to the control topic")?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            let supervisor = supervisor.clone();
            std::thread::Builder::new()
                .name("hookgate-pollers".into())
                .spawn(move || {
                    // Polling drives the group protocol; rebalances run in this thread.
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
                            tracing::warn!(error = %e, "pollers' group consumer");
                        }
                    }
                    supervisor.stop_all();
                    drop(consumer);
                })
                .context("starting the pollers' thread")?
        };
        tracing::info!(
            pollers = supervisor.pollers.len(),
            topic = %kafka.control_topic,
            partitions,
            "pollers joined their group"
        );
        Ok(Cluster {
            stop,
            thread: Some(thread),
            supervisor,
        })
    }

    /// The ids of the pollers running on this replica.
    pub fn owned(&self) -> Vec<String> {
        let running = self.supervisor.running.lock().expect("running lock");
        let mut ids: Vec<String> = running.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Stops the pollers (each finishes the poll under way) and leaves the group.
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The partition of the control topic a poller belongs to: FNV-1a of its id, stable
/// across versions and platforms so that every replica agrees.
pub fn partition_of(id: &str, partitions: i32) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in id.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash % partitions.max(1) as u32) as i32
}

/// Creates the control topic unless it exists; returns its partition count.
async fn ensure_topic(base: &ClientConfig, kafka: &KafkaSettings) -> anyhow::Result<i32> {
    let control = Topic {
        name: &kafka.control_topic,
        key: "kafka.control_topic",
        what: "control topic",
        partitions: kafka.control_partitions,
        compact: true,
    };
    ensure(base, &control).await
}

/// Creates the topic scheduled flows' ticks go to unless it exists (before the flow
/// consumer subscribes, so the first tick is read without waiting for a metadata
/// refresh). Its partitions are the control topic's: as many replicas can run ticks.
pub async fn ensure_schedules_topic(kafka: &KafkaSettings) -> anyhow::Result<i32> {
    let schedules = Topic {
        name: &kafka.schedules_topic,
        key: "kafka.schedules_topic",
        what: "schedules topic",
        partitions: kafka.control_partitions,
        compact: false,
    };
    ensure(&kafka.consumer_config(), &schedules).await
}

/// A topic the consumer creates when it is missing.
struct Topic<'a> {
    name: &'a str,
    /// Its config key and what it is, for errors.
    key: &'a str,
    what: &'a str,
    partitions: i32,
    compact: bool,
}

/// Creates `topic` unless it exists; returns its partition count.
async fn ensure(base: &ClientConfig, topic: &Topic<'_>) -> anyhow::Result<i32> {
    let Topic {
        name, key, what, ..
    } = *topic;
    if let Some(count) = partition_count(base, name, Duration::ZERO).await? {
        return Ok(count);
    }
    let admin: AdminClient<DefaultClientContext> =
        base.create().context("creating the admin client")?;
    let mut new = NewTopic::new(name, topic.partitions, TopicReplication::Fixed(-1));
    if topic.compact {
        new = new.set("cleanup.policy", "compact");
    }
    let results = admin
        .create_topics(
            &[new],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .with_context(|| format!("creating the {what} `{name}`"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => anyhow::bail!("creating the {what} `{name}` ({key}): {code}"),
        }
    }
    partition_count(base, name, Duration::from_secs(10))
        .await?
        .with_context(|| format!("the {what} `{name}` ({key}) has no partitions"))
}

/// The topic's partition count once metadata shows it, asking until `patience` has
/// passed; `None` if it does not exist.
async fn partition_count(
    base: &ClientConfig,
    topic: &str,
    patience: Duration,
) -> anyhow::Result<Option<i32>> {
    let mut config = base.clone();
    config.set("allow.auto.create.topics", "false");
    let probe: BaseConsumer = config.create().context("creating a metadata client")?;
    let topic = topic.to_string();
    let count = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + patience;
        loop {
            let count = probe
                .fetch_metadata(Some(&topic), Duration::from_secs(5))
                .ok()
                .and_then(|m| m.topics().first().map(|t| t.partitions().len()))
                .unwrap_or(0);
            if count > 0 || Instant::now() >= deadline {
                return count;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await?;
    Ok((count > 0).then_some(count as i32))
}

/// Starts and stops pollers as partitions come and go.
struct Supervisor {
    pollers: Vec<Arc<Poller>>,
    partitions: i32,
    topic: String,
    reader: ClientConfig,
    deps: Deps,
    runtime: tokio::runtime::Handle,
    running: Mutex<HashMap<String, Running>>,
    /// The last state of every poller this replica ran: a partition that comes back
    /// starts from the newer of this and the topic's.
    states: Mutex<HashMap<String, PollState>>,
}

struct Running {
    stop: watch::Sender<bool>,
    /// Disconnected when the poller's task ends.
    done: mpsc::Receiver<()>,
}

impl Supervisor {
    fn mine<'a>(&'a self, partitions: &'a BTreeSet<i32>) -> impl Iterator<Item = &'a Arc<Poller>> {
        self.pollers
            .iter()
            .filter(move |p| partitions.contains(&partition_of(&p.id, self.partitions)))
    }

    /// Starts the pollers of newly assigned partitions, from their recovered state.
    fn assign(self: &Arc<Self>, partitions: BTreeSet<i32>) {
        let starting: Vec<Arc<Poller>> = {
            let running = self.running.lock().expect("running lock");
            self.mine(&partitions)
                .filter(|p| !running.contains_key(&p.id))
                .cloned()
                .collect()
        };
        if starting.is_empty() {
            return;
        }
        let recovered = self.recover(&partitions);
        let mut running = self.running.lock().expect("running lock");
        for poller in starting {
            let local = self
                .states
                .lock()
                .expect("states lock")
                .get(&poller.id)
                .copied()
                .unwrap_or_default();
            let state = recovered
                .get(&poller.id)
                .copied()
                .unwrap_or_default()
                .newer(local);
            let (stop, stop_rx) = watch::channel(false);
            let (done_tx, done) = mpsc::channel();
            let partition = partition_of(&poller.id, self.partitions);
            tracing::info!(poller = %poller.id, partition, "poller starting on this replica");
            self.runtime.spawn(poll_loop(
                self.clone(),
                poller.clone(),
                state,
                partition,
                stop_rx,
                done_tx,
            ));
            running.insert(poller.id.clone(), Running { stop, done });
        }
        crate::metrics::pollers_owned(running.len());
    }

    /// Stops the pollers of revoked partitions and waits until each has finished the
    /// poll under way.
    fn revoke(&self, partitions: BTreeSet<i32>) {
        let ids: Vec<String> = self.mine(&partitions).map(|p| p.id.clone()).collect();
        self.stop_pollers(&ids);
    }

    fn stop_all(&self) {
        let ids: Vec<String> = self.pollers.iter().map(|p| p.id.clone()).collect();
        self.stop_pollers(&ids);
    }

    fn stop_pollers(&self, ids: &[String]) {
        let stopping: Vec<(String, Running)> = {
            let mut running = self.running.lock().expect("running lock");
            let taken = ids
                .iter()
                .filter_map(|id| running.remove(id).map(|r| (id.clone(), r)))
                .collect();
            crate::metrics::pollers_owned(running.len());
            taken
        };
        for (_, r) in &stopping {
            let _ = r.stop.send(true);
        }
        for (id, r) in stopping {
            let limit = self
                .pollers
                .iter()
                .find(|p| p.id == id)
                .map_or(Duration::ZERO, |p| p.timeout())
                + 2 * PRODUCE_TIMEOUT;
            if let Err(mpsc::RecvTimeoutError::Timeout) = r.done.recv_timeout(limit) {
                tracing::warn!(poller = %id, "poller did not stop in time; handing it over anyway");
            } else {
                tracing::info!(poller = %id, "poller stopped on this replica");
            }
        }
    }

    /// Reads the latest state of every poller in `partitions` from the control topic.
    fn recover(&self, partitions: &BTreeSet<i32>) -> HashMap<String, PollState> {
        let mut states = HashMap::new();
        let reader: BaseConsumer = match self.reader.create() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read pollers' state; starting from scratch");
                return states;
            }
        };
        let mut ends: HashMap<i32, i64> = HashMap::new();
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            match reader.fetch_watermarks(&self.topic, p, Duration::from_secs(5)) {
                Ok((low, high)) if high > low => {
                    let _ = tpl.add_partition_offset(&self.topic, p, Offset::Beginning);
                    ends.insert(p, high);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, partition = p, "cannot read pollers' state")
                }
            }
        }
        if ends.is_empty() {
            return states;
        }
        if let Err(e) = reader.assign(&tpl) {
            tracing::warn!(error = %e, "cannot read pollers' state");
            return states;
        }
        let started = Instant::now();
        let mut caught_up: Option<Instant> = None;
        while started.elapsed() < RECOVERY_LIMIT {
            match reader.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    let id = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
                    let state = m
                        .payload()
                        .and_then(|v| serde_json::from_slice::<PollState>(v).ok());
                    if let (Some(id), Some(state)) = (id, state) {
                        let entry = states.entry(id).or_insert(state);
                        *entry = entry.newer(state);
                    }
                    if ends
                        .get(&m.partition())
                        .is_some_and(|end| m.offset() + 1 >= *end)
                    {
                        ends.remove(&m.partition());
                    }
                    if caught_up.is_some() {
                        caught_up = Some(Instant::now());
                    }
                }
                Some(Err(e)) => tracing::debug!(error = %e, "reading pollers' state"),
                None => {}
            }
            match caught_up {
                None if ends.is_empty() => caught_up = Some(Instant::now()),
                Some(at) if at.elapsed() >= RECOVERY_QUIET => break,
                _ => {}
            }
        }
        if !ends.is_empty() {
            tracing::warn!("pollers' state not read to the end in time; some may fire again");
        }
        states
    }

    /// Publishes a poller's event; `Err` keeps the poll from counting as fired.
    async fn publish(&self, poller: &Poller, value: &[u8]) -> Result<(), String> {
        let headers = OwnedHeaders::new().insert(Header {
            key: hookgate_event::binary::CONTENT_TYPE_HEADER,
            value: Some(hookgate_event::STRUCTURED_CONTENT_TYPE),
        });
        let record = FutureRecord::to(&poller.topic)
            .key(&poller.id)
            .payload(value)
            .headers(headers);
        self.deps
            .producer
            .send(record, PRODUCE_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(e, _)| e.to_string())
    }

    /// Remembers a poller's state, here and in its partition of the control topic.
    async fn store(&self, poller: &Poller, partition: i32, state: PollState) {
        self.states
            .lock()
            .expect("states lock")
            .insert(poller.id.clone(), state);
        let value = serde_json::to_vec(&state).expect("state serializes");
        let record = FutureRecord::to(&self.topic)
            .partition(partition)
            .key(&poller.id)
            .payload(&value);
        if let Err((e, _)) = self.deps.producer.send(record, PRODUCE_TIMEOUT).await {
            tracing::warn!(poller = %poller.id, error = %e, "poller state not stored; another replica may fire again");
        }
    }
}

/// One poller on this replica: poll, decide, publish, store, wait; until stopped.
async fn poll_loop(
    supervisor: Arc<Supervisor>,
    poller: Arc<Poller>,
    mut state: PollState,
    partition: i32,
    mut stop: watch::Receiver<bool>,
    _done: mpsc::Sender<()>,
) {
    let deps = &supervisor.deps;
    let mut wait = poller.first_wait(&state, now_ms());
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => break,
        }
        let started = Instant::now();
        match poller.poll(&deps.http, &deps.engine).await {
            Ok(polled) => {
                let mut next = state;
                let fires = next.decide(poller.mode, poller.cooldown, polled.holds, now_ms());
                let published = if fires {
                    let (event_id, value) = poller.event(&polled, &deps.engine);
                    match supervisor.publish(&poller, &value).await {
                        Ok(()) => {
                            let status = polled.response.as_ref().map(|r| r.status);
                            tracing::info!(poller = %poller.id, event_id = %event_id, status, "poller fired");
                            crate::metrics::poll(&poller.id, "fired");
                            true
                        }
                        Err(e) => {
                            tracing::warn!(poller = %poller.id, error = %e, "poller event not published; will poll again");
                            false
                        }
                    }
                } else {
                    crate::metrics::poll(&poller.id, "quiet");
                    true
                };
                if published {
                    failures = 0;
                    state = next;
                    supervisor.store(&poller, partition, state).await;
                    wait = poller.next_wait(started.elapsed(), now_ms());
                } else {
                    failures += 1;
                    crate::metrics::poll(&poller.id, "failed");
                    wait = poller.delay_after(failures);
                }
            }
            Err(reason) => {
                failures += 1;
                crate::metrics::poll(&poller.id, "failed");
                wait = poller.delay_after(failures);
                tracing::warn!(poller = %poller.id, failures, retry_in = ?wait, "poll failed: {reason}");
            }
        }
        if *stop.borrow() {
            break;
        }
    }
}

/// Relays the group's rebalances to the supervisor.
struct ControlContext {
    supervisor: Arc<Supervisor>,
}

impl ClientContext for ControlContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(%error, "pollers' group consumer: {reason}");
    }
}

impl ControlContext {
    fn partitions(&self, tpl: &TopicPartitionList) -> BTreeSet<i32> {
        tpl.elements()
            .iter()
            .filter(|e| e.topic() == self.supervisor.topic)
            .map(|e| e.partition())
            .collect()
    }
}

impl ConsumerContext for ControlContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.supervisor.revoke(self.partitions(tpl));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            // Membership is all this consumer is for: state is read separately.
            let _ = consumer.pause(tpl);
            self.supervisor.assign(self.partitions(tpl));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        // Fixed values: every replica, on every build, must agree.
        assert_eq!(
            partition_of("stock-level", 6),
            partition_of("stock-level", 6)
        );
        assert_eq!(partition_of("", 6), (0x811c_9dc5u32 % 6) as i32);
        let used: BTreeSet<i32> = (0..60)
            .map(|i| partition_of(&format!("poller-{i}"), 6))
            .collect();
        assert_eq!(used.len(), 6);
        assert_eq!(partition_of("x", 0), 0);
    }
}
