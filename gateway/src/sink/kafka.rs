//! The Kafka sink: an idempotent, acks=all rdkafka producer, replaced by a fresh one when
//! it hits a fatal error or is fenced (for example after a broker lost the producer's
//! state), so the gateway serves again without a restart.
//!
//! - Warm: before the gateway reports ready, the producer has the metadata of every hook
//!   topic and its producer id, which librdkafka otherwise fetches on the first publish
//!   (half a second to a second that the first senders would wait).
//! - A record the broker refused because its producer was fenced was not stored: it is
//!   sent again, once, on the replacement producer within the same ack timeout, so the
//!   sender gets a 202 instead of a 503.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

mod settings;

pub use settings::{KafkaSettings, ResolvedProperties, DEFAULT_MESSAGE_MAX_BYTES};

use super::{Delivered, PublishError, Record};
use crate::health::Health;

/// Fastest a fatal producer is replaced again, so a broken cluster cannot make the gateway
/// spin building producers.
const REBUILD_INTERVAL: Duration = Duration::from_secs(1);
/// Time an abandoned producer gets to fail or deliver what it still holds.
const RETIRE_FLUSH: Duration = Duration::from_secs(5);

type Producer_ = FutureProducer<ProducerContext>;

pub struct KafkaSink {
    producer: ArcSwap<Producer_>,
    /// Whether the first producer has its producer id, for [`KafkaSink::warm`].
    first_assigned: Arc<AtomicBool>,
    config: ClientConfig,
    health: Arc<Health>,
    last_rebuild: Mutex<Option<Instant>>,
    generation: AtomicU64,
}

/// Sends librdkafka's log lines and errors to tracing.
#[derive(Clone, Default)]
pub struct LogContext;

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(facility = fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(facility = fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(facility = fac, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, "kafka client error: {reason}");
    }
}

/// A producer's context: logs as [`LogContext`] does, and follows the idempotent
/// producer's state through librdkafka's statistics.
#[derive(Clone, Default)]
pub struct ProducerContext {
    /// Whether the producer has its producer id (librdkafka's `idemp_state` `Assigned`).
    assigned: Arc<AtomicBool>,
}

impl ClientContext for ProducerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        LogContext.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        LogContext.error(error, reason);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        if let Some(state) = idempotence_state(statistics) {
            self.assigned.store(state == b"Assigned", Ordering::Relaxed);
        }
    }
}

/// The value of `"idemp_state"` in librdkafka's statistics JSON, read without parsing the
/// rest (it comes a few times a second).
fn idempotence_state(json: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"\"idemp_state\"";
    let at = json.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = &json[at..];
    let open = rest.iter().position(|b| *b == b'"')? + 1;
    let len = rest[open..].iter().position(|b| *b == b'"')?;
    Some(&rest[open..open + len])
}

/// How often librdkafka reports its statistics to the producer's context, unless
/// `kafka.properties` says otherwise: how soon the warm-up sees the producer id.
const STATISTICS_INTERVAL_MS: &str = "200";

/// The client config for `brokers` and the resolved properties, without the settings the
/// gateway enforces.
pub fn base_config(brokers: &str, properties: &ResolvedProperties) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v, _) in &properties.entries {
        c.set(k, v);
    }
    c.set_log_level(RDKafkaLogLevel::Warning);
    c
}

/// The producer config: the properties, then the settings a 202 depends on.
pub fn producer_config(brokers: &str, properties: &ResolvedProperties) -> ClientConfig {
    let mut c = base_config(brokers, properties);
    if properties.get("statistics.interval.ms").is_none() {
        c.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    }
    c.set("enable.idempotence", "true");
    c.set("acks", "all");
    c.set("allow.auto.create.topics", "false");
    c
}

/// Lets librdkafka check every property name and value, without connecting. The error
/// names the property as written (librdkafka's message may use another name for it) and,
/// for a property whose value came from a secret, leaves out librdkafka's message, which
/// may quote the value.
pub fn check_properties(
    brokers: &str,
    properties: &ResolvedProperties,
) -> Result<(), (Option<String>, String)> {
    producer_config(brokers, properties)
        .create_native_config()
        .map(|_| ())
        .map_err(|e| match e {
            KafkaError::ClientConfig(_, desc, key, _) => {
                let secret = properties
                    .entries
                    .iter()
                    .any(|(name, _, secret)| *secret && *name == key);
                let message = if secret {
                    "librdkafka refused the value (from a secret, not shown)".to_string()
                } else {
                    desc
                };
                (Some(key), message)
            }
            other => (None, other.to_string()),
        })
}

impl KafkaSink {
    pub fn new(settings: &KafkaSettings, health: Arc<Health>) -> Result<KafkaSink, KafkaError> {
        let config = producer_config(&settings.brokers, &settings.properties);
        let context = ProducerContext::default();
        let first_assigned = context.assigned.clone();
        let producer: Producer_ = config.create_with_context(context)?;
        Ok(KafkaSink {
            producer: ArcSwap::from_pointee(producer),
            first_assigned,
            config,
            health,
            last_rebuild: Mutex::new(None),
            generation: AtomicU64::new(0),
        })
    }

    /// Makes the producer ready to publish at once: fetches the metadata of `topics` and
    /// waits for its producer id, at most `timeout` in all. A producer that is not ready
    /// by then is used anyway (its first records wait for it); that is logged.
    pub async fn warm(&self, topics: &[String], timeout: Duration) {
        let started = Instant::now();
        let producer = self.producer.load_full();
        let topics = topics.to_vec();
        let fetched = {
            let producer = producer.clone();
            tokio::task::spawn_blocking(move || {
                topics.iter().try_for_each(|t| {
                    let left = timeout.saturating_sub(started.elapsed());
                    producer.client().fetch_metadata(Some(t), left).map(|_| ())
                })
            })
            .await
        };
        if let Ok(Err(e)) = fetched {
            tracing::warn!(error = %e, "the producer could not fetch the hook topics' metadata yet");
        }
        let assigned = &self.first_assigned;
        while !assigned.load(Ordering::Relaxed) && started.elapsed() < timeout {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if assigned.load(Ordering::Relaxed) {
            tracing::debug!(took = ?started.elapsed(), "kafka producer warmed up");
        } else {
            tracing::warn!(
                waited = ?started.elapsed(),
                "the kafka producer has no producer id yet; the first events will wait for it"
            );
        }
    }

    /// How many times the producer was replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Hands `record` to the producer, which copies it; the acknowledgement is awaited
    /// with [`Pending::wait`].
    pub(super) fn enqueue(&self, record: Record<'_>) -> Result<Pending<'_>, PublishError> {
        let producer = self.producer.load_full();
        let mut future_record = FutureRecord::to(record.topic)
            .payload(record.value)
            .headers(record.headers.into_kafka());
        if let Some(key) = record.key {
            future_record = future_record.key(key);
        }
        match producer.send_result(future_record) {
            Ok(delivery) => Ok(Pending {
                sink: self,
                producer,
                delivery,
            }),
            Err((e, _)) => Err(self.classify(&producer, e)),
        }
    }

    fn classify(&self, producer: &Arc<Producer_>, e: KafkaError) -> PublishError {
        use RDKafkaErrorCode as C;
        let code = e.rdkafka_error_code();
        let err = match code {
            Some(C::QueueFull) => PublishError::QueueFull,
            Some(C::MessageSizeTooLarge) => PublishError::TooLarge(e.to_string()),
            Some(
                C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::UnknownTopicOrPartition
                | C::UnknownTopic
                | C::UnknownPartition
                | C::InvalidTopic
                | C::PolicyViolation,
            ) => PublishError::Permanent(e.to_string()),
            _ => PublishError::Transient(e.to_string()),
        };
        if matches!(err, PublishError::TooLarge(_) | PublishError::Permanent(_)) {
            self.health.set_permanent_error(e.to_string());
        }
        if matches!(code, Some(C::ProducerFenced | C::InvalidProducerEpoch)) {
            // The broker has handed this producer's id to a newer one (a gateway that
            // restarted quickly can meet its predecessor's id this way) and will refuse
            // all it sends; librdkafka does not count that as fatal for an idempotent
            // producer, so it would be kept forever.
            self.replace(producer, &e.to_string());
        } else {
            self.replace_if_fatal(producer);
        }
        err
    }

    /// Replaces `failed` with a new producer if it has hit a fatal error.
    fn replace_if_fatal(&self, failed: &Arc<Producer_>) {
        if let Some((code, reason)) = failed.client().fatal_error() {
            self.replace(failed, &format!("{code:?}: {reason}"));
        }
    }

    /// Replaces `failed` with a new producer, unless somebody has replaced it already or
    /// the last replacement is under [`REBUILD_INTERVAL`] old. Events still queued in it
    /// fail and are answered 503.
    fn replace(&self, failed: &Arc<Producer_>, why: &str) {
        let Ok(mut last) = self.last_rebuild.try_lock() else {
            return; // another request is replacing it
        };
        if !Arc::ptr_eq(&self.producer.load(), failed)
            || last.is_some_and(|t| t.elapsed() < REBUILD_INTERVAL)
        {
            return;
        }
        tracing::error!(
            reason = why,
            "kafka producer can no longer publish; replacing it"
        );
        match self
            .config
            .create_with_context::<_, Producer_>(ProducerContext::default())
        {
            Ok(fresh) => {
                let old = self.producer.swap(Arc::new(fresh));
                self.generation.fetch_add(1, Ordering::Relaxed);
                crate::metrics::producer_replaced();
                // Flushing blocks; let a plain thread wait for the old producer to settle.
                std::thread::spawn(move || {
                    let _ = old.flush(RETIRE_FLUSH);
                });
            }
            Err(e) => tracing::error!(error = %e, "could not build a new kafka producer"),
        }
        *last = Some(Instant::now());
    }

    pub(super) fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.load().flush(timeout) {
            tracing::warn!(error = %e, "kafka producer did not flush before shutdown");
        }
    }

    /// Messages and requests the producer still holds.
    pub fn in_flight(&self) -> i32 {
        self.producer.load().in_flight_count()
    }
}

/// A record the producer holds, until the broker acknowledges it.
pub struct Pending<'a> {
    sink: &'a KafkaSink,
    producer: Arc<Producer_>,
    delivery: DeliveryFuture,
}

impl Pending<'_> {
    /// Waits at most `ack_timeout` for the acknowledgement.
    pub(super) async fn wait(self, ack_timeout: Duration) -> Result<Delivered, PublishError> {
        let deadline = tokio::time::Instant::now() + ack_timeout;
        let Pending {
            sink,
            mut producer,
            mut delivery,
        } = self;
        let mut resent = false;
        loop {
            match tokio::time::timeout_at(deadline, delivery).await {
                Err(_) => {
                    sink.replace_if_fatal(&producer);
                    return Err(PublishError::Timeout(ack_timeout));
                }
                Ok(Err(_canceled)) => {
                    return Err(PublishError::Transient("the producer was replaced".into()))
                }
                Ok(Ok(Ok(d))) => {
                    return Ok(Delivered {
                        partition: d.partition,
                        offset: d.offset,
                    })
                }
                Ok(Ok(Err((e, record)))) => {
                    let refused_as_fenced = is_fenced(&e);
                    let err = sink.classify(&producer, e);
                    if !refused_as_fenced || resent {
                        return Err(err);
                    }
                    // The broker refused the record outright: not stored, so sending it
                    // again cannot duplicate it.
                    resent = true;
                    (producer, delivery) = match sink.resend(&record) {
                        Ok(sent) => sent,
                        Err(_) => return Err(err),
                    };
                    tracing::info!("a record refused to a fenced producer was sent again");
                }
            }
        }
    }
}

/// Whether the broker refused a produce because another producer took this one's id: the
/// record was not written.
fn is_fenced(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::ProducerFenced | C::InvalidProducerEpoch)
    )
}

impl KafkaSink {
    /// Hands a record the broker refused back to the current producer.
    fn resend(&self, record: &OwnedMessage) -> Result<(Arc<Producer_>, DeliveryFuture), ()> {
        let producer = self.producer.load_full();
        let mut again =
            FutureRecord::<[u8], [u8]>::to(record.topic()).partition(record.partition());
        if let Some(payload) = record.payload() {
            again = again.payload(payload);
        }
        if let Some(key) = record.key() {
            again = again.key(key);
        }
        if let Some(headers) = record.headers() {
            let mut copy = OwnedHeaders::new_with_capacity(headers.count());
            for h in headers.iter() {
                copy = copy.insert(rdkafka::message::Header {
                    key: h.key,
                    value: h.value,
                });
            }
            again = again.headers(copy);
        }
        producer
            .send_result(again)
            .map(|delivery| (producer.clone(), delivery))
            .map_err(|_| ())
    }
}
