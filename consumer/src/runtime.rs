//! The consumer's main loop: reads the event topics in a consumer group, runs the flows
//! each event triggers, and commits at least once.
//!
//! - **Commits**: the offset stored for a partition is the lowest one not yet finished
//!   (flows done, or the event dead-lettered); a crash replays everything from there.
//! - **Order and concurrency**: events with the same record key run one at a time, in
//!   order; up to `limits.max_in_flight_per_partition` events of a partition run at once.
//!   At the cap the partition is paused, so polling never stops long enough for the group
//!   to evict the consumer.
//! - **Dead letters**: a record that is not an event, and an event whose flow still fails
//!   after its retries, are republished to the dead-letter topic with the reason in their
//!   headers; they never stop the partition.
//! - **Pollers**: run beside the event loop, once per cluster (see
//!   [`poller::cluster`](crate::poller::cluster)).
//! - **Shutdown**: stop fetching and polling, give running flows `limits.shutdown_timeout`, store the
//!   offsets of what finished, commit, exit.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::config::Settings;
use crate::executor::{self, Origin, State};
use crate::flow::Flow;
use crate::outbound::Client;
use crate::subscription::{self, Subscription};
use crate::task::Deps;

/// How long a dead letter or an execution record may wait for its acknowledgement.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);

/// Turns librdkafka's statistics into the lag gauge, and tells the loop about
/// rebalances: revoked partitions are forgotten, an assignment makes the consumer ready.
pub struct RuntimeContext {
    revoked: Arc<std::sync::Mutex<Vec<(String, i32)>>>,
    ready: crate::admin::Ready,
}

impl ClientContext for RuntimeContext {
    fn stats(&self, stats: Statistics) {
        let lag: i64 = stats
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
            .map(|p| p.consumer_lag)
            .sum();
        crate::metrics::consumer_lag(lag);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(%error, "kafka client error: {reason}");
    }
}

impl ConsumerContext for RuntimeContext {
    fn pre_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        if let rdkafka::consumer::Rebalance::Revoke(tpl) = rebalance {
            let mut revoked = self.revoked.lock().expect("revoked lock");
            revoked.extend(
                tpl.elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition())),
            );
        }
    }

    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        if let rdkafka::consumer::Rebalance::Assign(tpl) = rebalance {
            self.ready.set(tpl.count() > 0);
            tracing::info!(partitions = tpl.count(), "partitions assigned");
        }
    }
}

/// Everything a record's processing needs, shared by the tasks that process records.
struct Shared {
    flows: Vec<Flow>,
    deps: Deps,
    dead_letter_topic: String,
    executions_topic: Option<String>,
    /// Sends the records synchronous callers wait for without lingering; present with
    /// an executions topic.
    replies: Option<rdkafka::producer::FutureProducer>,
}

/// What a finished record reports back to the loop.
struct Done {
    /// The partition state it belongs to; a revoked and reassigned partition starts a new
    /// one, and reports from the old one are ignored.
    epoch: u64,
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
}

/// Records of a partition fetched and not started, at most, before it is paused. Large on
/// purpose: pausing drops what the client had prefetched for the partition and resuming
/// fetches it again, so a partition paused every few thousand records spends its time
/// refetching (at 2,048 the consumer managed 7,000 events/s; see docs/performance.md).
/// The bytes bound is what keeps memory in check.
const READ_AHEAD: usize = 65_536;
/// Their payload bytes at most.
const READ_AHEAD_BYTES: usize = 32 * 1024 * 1024;

/// A partition's records between fetch and commit.
#[derive(Default)]
struct PartitionState {
    /// Fetched, not started, in offset order.
    waiting: VecDeque<OwnedMessage>,
    /// Started, not finished.
    running: BTreeSet<i64>,
    /// Keys with a record running.
    busy_keys: HashSet<Vec<u8>>,
    /// Payload bytes of `waiting`.
    waiting_bytes: usize,
    /// One past the highest offset fetched.
    next: Option<i64>,
    paused: bool,
    epoch: u64,
}

impl PartitionState {
    /// Whether enough is fetched and not started that fetching should pause. The
    /// read-ahead is deliberately far above the running cap: pausing a partition drops
    /// what the client had prefetched for it, and each resume costs a fetch round trip
    /// (the broker's whole `fetch.wait.max.ms` on some), so pausing at the cap would
    /// cost one round trip per `cap` records.
    fn backlogged(&self) -> bool {
        self.waiting.len() >= READ_AHEAD || self.waiting_bytes >= READ_AHEAD_BYTES
    }

    /// Whether a paused partition has drained enough to fetch again.
    fn drained(&self) -> bool {
        self.waiting.len() <= READ_AHEAD / 2 && self.waiting_bytes <= READ_AHEAD_BYTES / 2
    }

    /// The offset to commit: the lowest one not finished.
    fn commit_position(&self) -> Option<i64> {
        let lowest_waiting = self.waiting.front().map(|m| m.offset());
        let lowest_running = self.running.first().copied();
        match (lowest_waiting, lowest_running) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (Some(a), None) | (None, Some(a)) => Some(a),
            (None, None) => self.next,
        }
    }
}

/// How often the stored positions are committed unless `kafka.properties` says otherwise.
const COMMIT_INTERVAL_MS: &str = "1000";

/// A whole consumer (the flows' loop and the pollers) running in this process: what
/// `hookgate local` and the tests start.
pub struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub fn start(settings: Settings) -> Running {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(run(settings, crate::admin::Ready::default(), async {
            let _ = stopped.await;
        }));
        Running { stop, task }
    }

    /// Stops it as SIGTERM would, and waits until it has committed and exited.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await?
    }

    /// Ends its loop at once, as a crash would: nothing more is committed, and the
    /// partitions go back to the group with the runs in progress uncommitted, to be run
    /// again by whoever takes them. (Runs already started in this process are not waited
    /// for; a crashed process would lose them, which is what a restart repeats.)
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Runs until `stop` resolves, then drains and commits.
pub async fn run(
    settings: Settings,
    ready: crate::admin::Ready,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // Describes the series to the process's recorder; `main` installs one (in
    // `hookgate local` the gateway's is used).
    crate::metrics::describe();
    if let Some(t) = &settings.telemetry {
        hookgate_common::telemetry::install(t, "hookgate-consumer");
    }
    let kafka = settings.kafka.clone();
    let mut config = kafka.consumer_config();
    if !kafka
        .properties
        .iter()
        .chain(&kafka.consumer_properties)
        .any(|(k, _)| k == "auto.commit.interval.ms")
    {
        // librdkafka's 5 s would have a crash replay five seconds of finished work.
        config.set("auto.commit.interval.ms", COMMIT_INTERVAL_MS);
    }
    config
        .set("group.id", &kafka.group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "5000");
    let revoked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let context = RuntimeContext {
        revoked: revoked.clone(),
        ready: ready.clone(),
    };
    let consumer: StreamConsumer<RuntimeContext> = config
        .create_with_context(context)
        .context("creating the Kafka consumer")?;
    if settings.pollers.iter().any(|p| p.is_schedule()) {
        crate::poller::cluster::ensure_schedules_topic(&kafka).await?;
    }
    let subscription = Subscription::new(&kafka);
    let own = subscription.own_matched();
    if !own.is_empty() {
        tracing::info!(
            topics = %hookgate_common::logging::List(&own),
            "kafka.topic_pattern also matches these topics of the consumer's own; they are not read"
        );
    }
    let lister: Arc<BaseConsumer> = Arc::new(
        kafka
            .client_config()
            .create()
            .context("creating the Kafka metadata client")?,
    );
    let initial = if subscription.follows_a_pattern() {
        subscription::resolve(&subscription, &lister)
            .await
            .unwrap_or_else(|| subscription.topics([]))
    } else {
        subscription.topics([])
    };
    subscribe(&consumer, &initial)?;
    let (topics_tx, mut topics_rx) = tokio::sync::watch::channel(initial.clone());
    if subscription.follows_a_pattern() {
        tokio::spawn(subscription::follow(subscription, lister, topics_tx));
    }
    let topics = initial;
    let cap = settings.limits.max_in_flight_per_partition;
    let shared = Arc::new(Shared {
        deps: Deps {
            http: Client::new(settings.policy.clone()),
            producer: kafka.producer()?,
            engine: settings.engine.clone(),
        },
        flows: settings.flows,
        dead_letter_topic: kafka.dead_letter_topic.clone(),
        executions_topic: kafka.executions_topic.clone(),
        replies: match &kafka.executions_topic {
            Some(_) => Some(kafka.prompt_producer()?),
            None => None,
        },
    });
    tracing::info!(topics = %hookgate_common::logging::List(&topics), group = %kafka.group, flows = shared.flows.len(), "consumer started");
    let pollers = if settings.pollers.is_empty() {
        None
    } else {
        let deps = crate::poller::cluster::Deps {
            http: shared.deps.http.clone(),
            engine: shared.deps.engine.clone(),
            producer: shared.deps.producer.clone(),
        };
        let pollers = settings.pollers.into_iter().map(Arc::new).collect();
        Some(crate::poller::Cluster::start(pollers, &kafka, deps).await?)
    };

    // Bounded by what can run at once: every partition's cap, in practice far less.
    let (done_tx, mut done_rx) = mpsc::channel::<Done>(4096);
    let mut partitions: BTreeMap<(String, i32), PartitionState> = BTreeMap::new();
    let mut epochs = 0u64;
    tokio::pin!(stop);
    loop {
        // Partitions taken away: their unstarted events belong to the new owner now.
        for key in std::mem::take(&mut *revoked.lock().expect("revoked lock")) {
            partitions.remove(&key);
        }
        tokio::select! {
            msg = consumer.recv() => match msg {
                Ok(m) => {
                    let m = m.detach();
                    let key = (m.topic().to_string(), m.partition());
                    let state = partitions.entry(key.clone()).or_insert_with(|| {
                        epochs += 1;
                        PartitionState {
                            epoch: epochs,
                            ..PartitionState::default()
                        }
                    });
                    state.next = Some(m.offset() + 1);
                    state.waiting_bytes += m.payload().map_or(0, <[u8]>::len);
                    state.waiting.push_back(m);
                    start_ready(state, &shared, &done_tx, cap);
                    if state.backlogged() && !state.paused {
                        set_paused(&consumer, &key, true);
                        state.paused = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "kafka consumer error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(done) = done_rx.recv() => {
                finish(&consumer, &mut partitions, done, &shared, &done_tx, cap);
            }
            Ok(()) = topics_rx.changed() => {
                let topics = topics_rx.borrow_and_update().clone();
                if let Err(e) = subscribe(&consumer, &topics) {
                    tracing::warn!(error = %e, "cannot change the subscription");
                }
            }
            _ = &mut stop => break,
        }
    }

    // Stop fetching and polling; let what runs finish, within the deadline.
    ready.set(false);
    if let Some(pollers) = pollers {
        pollers.stop().await;
    }
    tracing::info!("stopping: finishing running flows");
    consumer.unsubscribe();
    let deadline = tokio::time::Instant::now() + settings.limits.shutdown_timeout.get();
    while partitions.values().any(|p| !p.running.is_empty()) {
        match tokio::time::timeout_at(deadline, done_rx.recv()).await {
            Ok(Some(done)) => finish(&consumer, &mut partitions, done, &shared, &done_tx, 0),
            _ => {
                tracing::warn!("shutdown timeout passed; unfinished events will be replayed");
                break;
            }
        }
    }
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!(error = %e, "final commit");
    }
    // The last spans, off the runtime (the export blocks).
    let _ = tokio::task::spawn_blocking(|| {
        hookgate_common::telemetry::flush(std::time::Duration::from_secs(5))
    })
    .await;
    Ok(())
}

/// Subscribes to `topics` (or to nothing, when there are none yet).
fn subscribe(consumer: &StreamConsumer<RuntimeContext>, topics: &[String]) -> anyhow::Result<()> {
    if topics.is_empty() {
        consumer.unsubscribe();
        tracing::warn!("no topic to read yet: none is listed and none matches kafka.topic_pattern");
        return Ok(());
    }
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&names)
        .context("subscribing to the event topics")
}

fn set_paused(consumer: &StreamConsumer<RuntimeContext>, key: &(String, i32), pause: bool) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&key.0, key.1);
    let result = if pause {
        consumer.pause(&tpl)
    } else {
        consumer.resume(&tpl)
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, topic = %key.0, partition = key.1, "pause/resume");
    }
}

/// Starts every waiting record whose key is free, up to the cap.
fn start_ready(
    state: &mut PartitionState,
    shared: &Arc<Shared>,
    done: &mpsc::Sender<Done>,
    cap: usize,
) {
    let mut i = 0;
    while i < state.waiting.len() && state.running.len() < cap {
        let free = match state.waiting[i].key() {
            Some(k) => !state.busy_keys.contains(k),
            None => true,
        };
        if !free {
            i += 1;
            continue;
        }
        let m = state.waiting.remove(i).expect("index in range");
        state.waiting_bytes -= m.payload().map_or(0, <[u8]>::len);
        let epoch = state.epoch;
        if let Some(k) = m.key() {
            state.busy_keys.insert(k.to_vec());
        }
        state.running.insert(m.offset());
        let shared = shared.clone();
        let done = done.clone();
        tokio::spawn(async move {
            process(&m, &shared).await;
            let _ = done
                .send(Done {
                    epoch,
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                })
                .await;
        });
    }
}

/// Records a finished record: frees its key, stores the new commit position, starts what
/// can start, and resumes the partition below the cap.
fn finish(
    consumer: &StreamConsumer<RuntimeContext>,
    partitions: &mut BTreeMap<(String, i32), PartitionState>,
    done: Done,
    shared: &Arc<Shared>,
    done_tx: &mpsc::Sender<Done>,
    cap: usize,
) {
    let key = (done.topic, done.partition);
    let Some(state) = partitions.get_mut(&key).filter(|s| s.epoch == done.epoch) else {
        return;
    };
    state.running.remove(&done.offset);
    if let Some(k) = &done.key {
        state.busy_keys.remove(k);
    }
    if let Some(position) = state.commit_position() {
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(&key.0, key.1, Offset::Offset(position))
            .is_ok()
        {
            // Fails harmlessly for a partition this consumer no longer owns.
            let _ = consumer.store_offsets(&tpl);
        }
    }
    if cap > 0 {
        start_ready(state, shared, done_tx, cap);
        if state.paused && state.drained() {
            set_paused(consumer, &key, false);
            state.paused = false;
        }
    }
}

/// Decodes one record and runs the flows it triggers; dead-letters what cannot be done.
async fn process(m: &OwnedMessage, shared: &Shared) {
    let origin = Origin {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
    };
    let event = match hookgate_event::decode_message(m) {
        Ok(e) => e,
        Err(e) => {
            crate::metrics::dead_letter("undecodable");
            tracing::warn!(topic = %origin.topic, partition = origin.partition, offset = origin.offset, reason = %e, "record is not an event; dead-lettering it");
            dead_letter(shared, m, &format!("undecodable: {e}"), None).await;
            return;
        }
    };
    // A redriven record runs the flow it names, alone; others, every flow it triggers.
    let redrive = crate::redrive::requested(m);
    let flows: Vec<&Flow> = match &redrive {
        Some((id, _)) => shared
            .flows
            .iter()
            .filter(|f| f.qualified_id() == *id)
            .collect(),
        None => shared
            .flows
            .iter()
            .filter(|f| f.triggered_by(&event))
            .collect(),
    };
    if let (Some((id, _)), true) = (&redrive, flows.is_empty()) {
        tracing::info!(flow = %id, event_id = %event.id, "redriven event for a flow this consumer does not have; skipped");
    }
    // A synchronous hook's caller waits for one run's reply: the flow that declares a
    // response runs first, and the first run whose conditions hold answers.
    let mut flows = flows;
    let mut awaiting_reply =
        redrive.is_none() && event.extension(hookgate_event::RESPOND) == Some("flow");
    if awaiting_reply {
        flows.sort_by_key(|f| f.response.is_none());
    }
    for flow in flows {
        let redrive = redrive.as_ref().map(|(_, r)| r.clone());
        let execution = if awaiting_reply {
            executor::execute_replying(flow, &event, &origin, &shared.deps).await
        } else {
            executor::execute(flow, &event, &origin, redrive, &shared.deps).await
        };
        let record = execution.to_json(&shared.deps);
        tracing::info!(
            flow = %flow.qualified_id(),
            execution = %execution.id,
            event_id = %event.id,
            state = execution.state.as_str(),
            duration_ms = execution.duration_ms,
            "flow finished"
        );
        if execution.reply.is_some() {
            awaiting_reply = false;
            publish_reply(shared, &execution.id, &record).await;
        } else if let Some(topic) = &shared.executions_topic {
            // A run log, not an event: the event's offset does not wait for it, and the
            // producer batches it with the others.
            let value = record.to_string();
            let rec = FutureRecord::to(topic).key(&execution.id).payload(&value);
            match shared.deps.producer.send_result(rec) {
                Ok(delivery) => {
                    let id = execution.id.clone();
                    tokio::spawn(async move {
                        if let Ok(Err((e, _))) = delivery.await {
                            tracing::warn!(error = %e, execution = %id, "execution record not published");
                        }
                    });
                }
                Err((e, _)) => {
                    tracing::warn!(error = %e, execution = %execution.id, "execution record not published")
                }
            }
        }
        if execution.state == State::Failed {
            crate::metrics::dead_letter("flow_failed");
            let reason = execution.error.clone().unwrap_or_default();
            dead_letter(
                shared,
                m,
                &reason,
                Some((&flow.qualified_id(), &execution.id, &record)),
            )
            .await;
        }
    }
    if awaiting_reply {
        tracing::info!(event_id = %event.id, hook = event.extension("hook").unwrap_or_default(), "no flow matched a synchronous event; its caller is answered 204");
        publish_reply(shared, &event.id, &crate::reply::no_match_record(&event)).await;
    }
}

/// Publishes a record a synchronous caller waits for (a run with its reply, or "no flow
/// matched") to the executions topic, at once. Without an executions topic the caller
/// cannot be answered, which is said once per record.
async fn publish_reply(shared: &Shared, key: &str, record: &serde_json::Value) {
    let (Some(topic), Some(producer)) = (&shared.executions_topic, &shared.replies) else {
        tracing::warn!(key, "a synchronous caller waits, but kafka.executions_topic is empty: it will not be answered");
        return;
    };
    let value = record.to_string();
    let rec = FutureRecord::to(topic).key(key).payload(&value);
    if let Err((e, _)) = producer.send(rec, PRODUCE_TIMEOUT).await {
        tracing::warn!(error = %e, key, "reply not published; its caller will not be answered");
    }
}

/// Bytes of the run log a dead letter carries in its `hookgate-dead-letter-run` header at
/// most; a longer one leaves out the tasks' outputs, then their requests and responses.
const MAX_RUN_HEADER: usize = 64 * 1024;

/// The run log of a failed run as a dead-letter header, within [`MAX_RUN_HEADER`].
fn run_header(record: &serde_json::Value) -> String {
    let text = record.to_string();
    if text.len() <= MAX_RUN_HEADER {
        return text;
    }
    let mut slim = record.clone();
    for fields in [&["outputs"][..], &["request", "response"][..]] {
        if let Some(tasks) = slim.get_mut("tasks").and_then(|t| t.as_array_mut()) {
            for task in tasks.iter_mut().filter_map(|t| t.as_object_mut()) {
                for field in fields {
                    task.remove(*field);
                }
            }
        }
        let text = slim.to_string();
        if text.len() <= MAX_RUN_HEADER {
            return text;
        }
    }
    slim.as_object_mut().map(|o| o.remove("tasks"));
    slim.to_string()
}

/// Republishes the record as received, with the reason and its origin in headers (and,
/// for a failed run, the flow, the execution and its run log). Keeps trying until the
/// broker takes it: the offset is not committed before.
async fn dead_letter(
    shared: &Shared,
    m: &OwnedMessage,
    reason: &str,
    run: Option<(&str, &str, &serde_json::Value)>,
) {
    use crate::redrive::{DEAD_LETTER_EXECUTION, DEAD_LETTER_FLOW, DEAD_LETTER_TOPIC};
    let reason = shared.deps.engine.mask(reason).into_owned();
    let partition = m.partition().to_string();
    let offset = m.offset().to_string();
    let mut headers = m.headers().cloned().unwrap_or_else(OwnedHeaders::new);
    let log = run.map(|(_, _, record)| run_header(record));
    let mut added = vec![
        ("hookgate-dead-letter-reason", reason.as_str()),
        (DEAD_LETTER_TOPIC, m.topic()),
        ("hookgate-dead-letter-partition", partition.as_str()),
        ("hookgate-dead-letter-offset", offset.as_str()),
    ];
    if let (Some((flow, execution, _)), Some(log)) = (run, &log) {
        added.extend([
            (DEAD_LETTER_FLOW, flow),
            (DEAD_LETTER_EXECUTION, execution),
            ("hookgate-dead-letter-run", log.as_str()),
        ]);
    }
    // Without the run log too, for a record the broker finds too large with it.
    let mut without_log = headers.clone();
    for (k, v) in added {
        headers = headers.insert(Header {
            key: k,
            value: Some(v),
        });
        if k != "hookgate-dead-letter-run" {
            without_log = without_log.insert(Header {
                key: k,
                value: Some(v),
            });
        }
    }
    let mut with_log = log.is_some();
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut rec = FutureRecord::to(&shared.dead_letter_topic)
            .payload(m.payload().unwrap_or_default())
            .headers(headers.clone());
        if let Some(k) = m.key() {
            rec = rec.key(k);
        }
        match shared.deps.producer.send(rec, PRODUCE_TIMEOUT).await {
            Ok(_) => return,
            Err((e, _))
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge)
                    && with_log =>
            {
                tracing::warn!(topic = %shared.dead_letter_topic, "dead letter too large with its run log; storing it without");
                headers = without_log.clone();
                with_log = false;
            }
            Err((e, _)) => {
                tracing::error!(error = %e, topic = %shared.dead_letter_topic, "dead letter not stored; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
