//! Answers from flows: synchronous hooks and the results callers poll for.
//!
//! A hook with `respond = { with = "flow", timeout = "10s" }` publishes its event as any
//! other (the broker's acknowledgement is still what makes it durable), marked with the
//! `respond` attribute, and then waits for the consumer's answer. The consumer publishes
//! the answering run's record, with its `reply`, to the executions topic at once; every
//! gateway replica reads that topic, all partitions from the end, and wakes the request
//! waiting for that event id. No flow ran: `204`. The timeout first: `202` with
//! `Location: /executions/{id}`, where the caller polls.
//!
//! Correlation costs each replica a read of every reply the fleet makes (only records
//! with a `reply` are parsed, and only those for requests this replica holds are kept).
//!
//! Results are kept per replica for `replies.keep`, at most `replies.max_bytes` of them,
//! and only for the requests this replica answered. A poll that lands on another replica
//! reads the executions topic back from the event's time (its id is a UUIDv7), and, to
//! tell a run still going from an unknown id, the synchronous hooks' topics; at most
//! [`MAX_READ_BACKS`] of those at once, each for at most [`READ_BACK_BUDGET`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body_util::Full;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use tokio::sync::watch;

use crate::shutdown::Shutdown;

/// Polls reading the topics back at once, per replica; past it, 503.
pub const MAX_READ_BACKS: usize = 4;
/// How long one read-back may read.
pub const READ_BACK_BUDGET: Duration = Duration::from_secs(3);
/// How often the reader looks for new partitions of the executions topic.
const PARTITION_CHECK: Duration = Duration::from_secs(10);

/// A flow's answer, as the consumer publishes it in the run's `reply`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
}

impl Reply {
    /// The HTTP answer: the flow's status, headers and body. Headers that belong to the
    /// connection, not the answer, are left out.
    pub fn response(&self) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(Bytes::from(self.body.clone())));
        *resp.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_GATEWAY);
        for (name, value) in &self.headers {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) else {
                continue;
            };
            if !matches!(
                name.as_str(),
                "content-length" | "transfer-encoding" | "connection" | "keep-alive" | "upgrade"
            ) {
                resp.headers_mut().insert(name, value);
            }
        }
        resp
    }
}

/// `202` with where to poll, for a run that has not answered yet.
pub fn pending_response(id: &str) -> Response<Full<Bytes>> {
    let location = format!("/executions/{id}");
    let body = serde_json::json!({ "id": id, "state": "RUNNING", "location": location });
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = StatusCode::ACCEPTED;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(LOCATION, v);
    }
    resp
}

/// The record fields a replica reads: the event it answers, and the reply.
#[derive(Debug, Deserialize)]
struct Record {
    event: RecordEvent,
    reply: Option<Reply>,
}

#[derive(Debug, Deserialize)]
struct RecordEvent {
    id: String,
    source: String,
}

/// What a replica knows of one synchronous request.
struct Entry {
    /// The hook that accepted it.
    hook: String,
    reply: watch::Sender<Option<Arc<Reply>>>,
    /// Bytes of the reply, once there is one.
    bytes: usize,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// Event ids by the time they were registered, oldest first: for expiry.
    order: VecDeque<(Instant, String)>,
    bytes: usize,
}

/// What a poll found.
pub enum Found {
    /// The run answered: the hook it came to, and the answer.
    Answered {
        hook: String,
        reply: Arc<Reply>,
    },
    /// The event exists and its run has not answered yet.
    Running {
        hook: String,
    },
    Unknown,
    /// Too many read-backs at once.
    Busy,
}

/// The replies of one gateway process.
pub struct Replies {
    topic: String,
    keep: Duration,
    max_bytes: usize,
    client: ClientConfig,
    state: Mutex<State>,
    reader: std::sync::OnceLock<()>,
    read_backs: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Replies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replies")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// `[replies]`, validated.
#[derive(Debug, Clone)]
pub struct RepliesSettings {
    pub topic: String,
    pub keep: Duration,
    pub max_bytes: usize,
}

impl Replies {
    /// Replies read from `settings.topic` through a client built on `client` (the
    /// gateway's brokers and properties). Nothing is read before [`Replies::start`].
    pub fn new(settings: &RepliesSettings, client: ClientConfig) -> Replies {
        Replies {
            topic: settings.topic.clone(),
            keep: settings.keep,
            max_bytes: settings.max_bytes,
            client,
            state: Mutex::new(State::default()),
            reader: std::sync::OnceLock::new(),
            read_backs: tokio::sync::Semaphore::new(MAX_READ_BACKS),
        }
    }

    /// Starts reading the topic, once; later calls do nothing.
    pub fn start(self: &Arc<Self>, shutdown: Shutdown) {
        self.reader.get_or_init(|| {
            let me = Arc::clone(self);
            tokio::spawn(async move { me.read(shutdown).await });
        });
    }

    /// Registers a request about to be published, before it is: its reply may come
    /// before the acknowledgement does.
    pub fn register(self: &Arc<Self>, event_id: &str, hook: &str) -> Waiter {
        let (tx, rx) = watch::channel(None);
        let mut state = self.lock();
        self.expire(&mut state);
        state.entries.insert(
            event_id.to_owned(),
            Entry {
                hook: hook.to_owned(),
                reply: tx,
                bytes: 0,
            },
        );
        state.order.push_back((Instant::now(), event_id.to_owned()));
        Waiter {
            replies: Arc::clone(self),
            id: event_id.to_owned(),
            rx,
            keep: false,
        }
    }

    /// The reply for `event_id` this replica holds, waiting at most `timeout` for it if
    /// it is known here and has not come yet; `None` for an id unknown here.
    pub async fn local(&self, event_id: &str, timeout: Duration) -> Option<Found> {
        let (hook, mut rx) = {
            let mut state = self.lock();
            self.expire(&mut state);
            let entry = state.entries.get(event_id)?;
            (entry.hook.clone(), entry.reply.subscribe())
        };
        let got = tokio::time::timeout(timeout, rx.wait_for(Option::is_some)).await;
        Some(match got {
            Ok(Ok(reply)) => Found::Answered {
                hook,
                reply: reply.clone().expect("waited for a reply"),
            },
            _ => Found::Running { hook },
        })
    }

    /// Finds `event_id` for a poll: here first, then in the executions topic and the
    /// `hooks`' topics (the synchronous ones, as (hook id, topic)) from the event's time.
    pub async fn find(&self, event_id: &str, hooks: Vec<(String, String)>) -> Found {
        if let Some(found) = self.local(event_id, Duration::ZERO).await {
            return found;
        }
        let Some(time) = uuid_v7_millis(event_id) else {
            return Found::Unknown;
        };
        let age = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(Duration::from_millis(time));
        if age > self.keep + Duration::from_secs(60) {
            return Found::Unknown;
        }
        let Ok(_permit) = self.read_backs.try_acquire() else {
            return Found::Busy;
        };
        let (client, topic, id) = (self.client.clone(), self.topic.clone(), event_id.to_owned());
        // The permit is held until the read-back ends.
        tokio::task::spawn_blocking(move || read_back(&client, &topic, &id, time, &hooks))
            .await
            .unwrap_or(Found::Unknown)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets entries older than `keep`, and the oldest replies while over `max_bytes`.
    fn expire(&self, state: &mut State) {
        let now = Instant::now();
        while let Some((at, id)) = state.order.front() {
            let old = now.duration_since(*at) > self.keep;
            if !old && state.bytes <= self.max_bytes {
                break;
            }
            let id = id.clone();
            state.order.pop_front();
            if let Some(e) = state.entries.remove(&id) {
                state.bytes -= e.bytes;
            }
        }
    }

    /// Hands a reply read from the topic to the request waiting for it, if it is here.
    fn deliver(&self, event_id: &str, reply: Reply) {
        let mut state = self.lock();
        let bytes = reply.body.len() + 256;
        let Some(entry) = state.entries.get_mut(event_id) else {
            return;
        };
        if entry.reply.borrow().is_some() {
            // A run repeated (at least once): the first answer stands.
            return;
        }
        entry.bytes = bytes;
        entry.reply.send_replace(Some(Arc::new(reply)));
        state.bytes += bytes;
        self.expire(&mut state);
    }

    /// Reads every partition of the topic from its end, for as long as the gateway runs.
    async fn read(self: Arc<Self>, shutdown: Shutdown) {
        let consumer: Arc<StreamConsumer> = match self
            .client
            .clone()
            .set(
                "group.id",
                format!("hookgate-gateway-replies-{}", uuid::Uuid::new_v4()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "10")
            .create()
        {
            Ok(c) => Arc::new(c),
            Err(e) => {
                tracing::error!(error = %e, topic = %self.topic, "cannot read replies; synchronous hooks will answer 202");
                return;
            }
        };
        let mut assigned = 0usize;
        // Partitions there at the start are read from their end; a topic (or partitions)
        // that appear later are read from their beginning: everything in them is new.
        let mut first_look = true;
        let mut next_check = Instant::now();
        loop {
            if Instant::now() >= next_check {
                next_check = Instant::now() + PARTITION_CHECK;
                let count = partition_count(&consumer, &self.topic).await;
                if count > assigned {
                    let mut tpl = TopicPartitionList::new();
                    for p in 0..count {
                        let offset = if p < assigned || first_look {
                            Offset::End
                        } else {
                            Offset::Beginning
                        };
                        let _ = tpl.add_partition_offset(&self.topic, p as i32, offset);
                    }
                    if count > 0 {
                        match consumer.assign(&tpl) {
                            Ok(()) => {
                                tracing::debug!(topic = %self.topic, partitions = count, "reading replies");
                                assigned = count;
                            }
                            Err(e) => tracing::warn!(error = %e, "cannot assign the reply topic"),
                        }
                    }
                }
                first_look = false;
            }
            if assigned == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {
                        next_check = Instant::now();
                        continue;
                    }
                    _ = shutdown.wait() => return,
                }
            }
            let message = tokio::select! {
                m = consumer.recv() => m,
                _ = tokio::time::sleep(PARTITION_CHECK) => continue,
                _ = shutdown.wait() => return,
            };
            match message {
                Ok(m) => {
                    if let Some((id, reply)) = m.payload().and_then(parse_reply) {
                        self.deliver(&id, reply);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "reply topic read error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// A registered synchronous request. Dropped before [`Waiter::wait`] timed out (the
/// publish failed), it is forgotten; once it timed out it stays for polls.
pub struct Waiter {
    replies: Arc<Replies>,
    id: String,
    rx: watch::Receiver<Option<Arc<Reply>>>,
    keep: bool,
}

impl Waiter {
    /// The reply, or `None` when `timeout` passes first (the request stays known here
    /// for polls).
    pub async fn wait(mut self, timeout: Duration) -> Option<Arc<Reply>> {
        self.keep = true;
        match tokio::time::timeout(timeout, self.rx.wait_for(Option::is_some)).await {
            Ok(Ok(reply)) => reply.clone(),
            _ => None,
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if !self.keep {
            let mut state = self.replies.lock();
            if let Some(e) = state.entries.remove(&self.id) {
                state.bytes -= e.bytes;
            }
        }
    }
}

/// The event id and reply of a record that carries one. Records without are skipped
/// before parsing: most of the topic is other runs' logs.
fn parse_reply(payload: &[u8]) -> Option<(String, Reply)> {
    memchr::memmem::find(payload, b"\"reply\"")?;
    let record: Record = serde_json::from_slice(payload).ok()?;
    Some((record.event.id, record.reply?))
}

/// The milliseconds since the epoch a UUIDv7 carries.
fn uuid_v7_millis(id: &str) -> Option<u64> {
    let uuid = uuid::Uuid::parse_str(id).ok()?;
    if uuid.get_version_num() != 7 {
        return None;
    }
    let b = uuid.as_bytes();
    Some(
        b[..6]
            .iter()
            .fold(0u64, |n, byte| (n << 8) | u64::from(*byte)),
    )
}

async fn partition_count(consumer: &Arc<StreamConsumer>, topic: &str) -> usize {
    let (consumer, name) = (Arc::clone(consumer), topic.to_owned());
    let metadata = tokio::task::spawn_blocking(move || {
        consumer.fetch_metadata(Some(&name), Duration::from_secs(2))
    })
    .await;
    metadata
        .ok()
        .and_then(Result::ok)
        .and_then(|m| {
            m.topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map(|t| t.partitions().len())
        })
        .unwrap_or(0)
}

/// Reads the executions topic, then the hooks' topics, from a second before `time`,
/// looking for `id`: its reply, or at least its event.
fn read_back(
    client: &ClientConfig,
    topic: &str,
    id: &str,
    time: u64,
    hooks: &[(String, String)],
) -> Found {
    let deadline = Instant::now() + READ_BACK_BUDGET;
    let from = time.saturating_sub(1000) as i64;
    let matches_reply = |payload: &[u8]| -> Option<Found> {
        let record: Record = serde_json::from_slice(payload).ok()?;
        if record.event.id != id {
            return None;
        }
        let hook = record.event.source.strip_prefix("/hooks/")?.to_owned();
        Some(Found::Answered {
            hook,
            reply: Arc::new(record.reply?),
        })
    };
    if let Some(found) = scan(client, topic, from, deadline, |p| {
        memchr::memmem::find(p, id.as_bytes())?;
        matches_reply(p)
    }) {
        return found;
    }
    for (hook, topic) in hooks {
        let found = scan(client, topic, from, deadline, |payload| {
            memchr::memmem::find(payload, id.as_bytes())?;
            let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
            (v.get("id")?.as_str()? == id).then(|| Found::Running { hook: hook.clone() })
        });
        if let Some(found) = found {
            return found;
        }
    }
    Found::Unknown
}

/// Reads `topic` from `from` (milliseconds since the epoch) up to the end it had when the
/// scan began, or until `deadline`, returning the first record `check` accepts.
fn scan(
    client: &ClientConfig,
    topic: &str,
    from: i64,
    deadline: Instant,
    mut check: impl FnMut(&[u8]) -> Option<Found>,
) -> Option<Found> {
    let consumer: BaseConsumer = client
        .clone()
        .set(
            "group.id",
            format!("hookgate-gateway-lookup-{}", uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .create()
        .ok()?;
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let metadata = consumer.fetch_metadata(Some(topic), remaining()).ok()?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())?;
    let mut times = TopicPartitionList::new();
    for p in 0..partitions {
        times
            .add_partition_offset(topic, p as i32, Offset::Offset(from))
            .ok()?;
    }
    let starts = consumer.offsets_for_times(times, remaining()).ok()?;
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for e in starts.elements() {
        let (_, high) = consumer
            .fetch_watermarks(topic, e.partition(), remaining())
            .ok()?;
        let start = match e.offset() {
            Offset::Offset(o) => o,
            _ => high,
        };
        if start < high {
            ends.insert(e.partition(), high);
            tpl.add_partition_offset(topic, e.partition(), Offset::Offset(start))
                .ok()?;
        }
    }
    if ends.is_empty() {
        return None;
    }
    consumer.assign(&tpl).ok()?;
    while !ends.is_empty() && Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(remaining().min(Duration::from_millis(200))) else {
            continue;
        };
        if let Some(found) = m.payload().and_then(&mut check) {
            return Some(found);
        }
        if ends
            .get(&m.partition())
            .is_some_and(|end| m.offset() + 1 >= *end)
        {
            ends.remove(&m.partition());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_only_from_records_that_carry_one() {
        let record = br#"{"id":"x","event":{"id":"e-1","source":"/hooks/chat"},"state":"SUCCESS","reply":{"status":201,"headers":{"x-ticket":"INC1"},"body":"ok"}}"#;
        let (id, reply) = parse_reply(record).unwrap();
        assert_eq!(id, "e-1");
        assert_eq!(reply.status, 201);
        assert_eq!(reply.headers["x-ticket"], "INC1");
        assert!(parse_reply(
            br#"{"id":"x","event":{"id":"e-1","source":"/hooks/chat"},"state":"SUCCESS"}"#
        )
        .is_none());
    }

    #[test]
    fn a_reply_becomes_the_answer_without_connection_headers() {
        let reply = Reply {
            status: 201,
            headers: [
                ("x-ticket".to_string(), "INC1".to_string()),
                ("content-length".to_string(), "999".to_string()),
                ("connection".to_string(), "close".to_string()),
            ]
            .into(),
            body: "ok".into(),
        };
        let resp = reply.response();
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers()["x-ticket"], "INC1");
        assert!(resp.headers().get("content-length").is_none());
        assert!(resp.headers().get("connection").is_none());
    }

    #[test]
    fn the_time_of_an_event_id_is_read_from_it() {
        let id = crate::envelope::event_id(UNIX_EPOCH + Duration::from_millis(1_765_000_000_123));
        assert_eq!(uuid_v7_millis(&id.to_string()), Some(1_765_000_000_123));
        assert_eq!(uuid_v7_millis(&uuid::Uuid::new_v4().to_string()), None);
        assert_eq!(uuid_v7_millis("nope"), None);
    }
}
