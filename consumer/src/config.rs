//! The consumer's configuration: one TOML file, layered like the gateway's (embedded
//! defaults → file → `HOOKGATE_CONSUMER_<TABLE>__<KEY>` for the tables `kafka`, `admin`, `limits`
//! and `outbound`), strict, and validated as a whole before anything connects: every
//! template and expression is compiled at load time and every problem is reported with
//! its TOML path.

use std::collections::BTreeMap;

use hookgate_common::config::{
    ConfigDuration, ConfigError, Environment, Layers, Problems, PropertyValue, SecretRef, Source,
};
use hookgate_common::telemetry::{TelemetryConfig, TelemetrySettings};
use serde::Deserialize;

use crate::flow::{Flow, FlowConfig};
use crate::outbound::{OutboundConfig, Policy};
use crate::poller::{Poller, PollerConfig};
use hookgate_expression::{Engine, Secrets};

/// The built-in defaults, the first layer.
pub const DEFAULTS: &str = include_str!("../../config/consumer-defaults.toml");
/// Where the consumer looks for its config when `--config` is not given.
pub const DEFAULT_PATH: &str = "hookgate-consumer.toml";

const LAYERS: Layers<'static> = Layers {
    defaults: DEFAULTS,
    env_prefix: "HOOKGATE_CONSUMER_",
    env_ignore: &[],
    env_tables: &["kafka", "admin", "limits", "outbound", "telemetry"],
    missing_file_fix: "pass an existing file with --config",
};

/// The configuration as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    pub kafka: KafkaConfig,
    pub admin: AdminConfig,
    pub limits: LimitsConfig,
    pub outbound: OutboundConfig,
    /// Traces over OTLP: a span for each flow run and each of its tasks.
    pub telemetry: TelemetryConfig,
    /// Secrets templates may use with `secret('NAME')`: `NAME = { env = "…" }` or
    /// `{ file = "…" }`.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretRef>,
    /// Named connections tasks and pollers use: `[connections.NAME]` (see
    /// [`crate::connection`]).
    #[serde(default)]
    pub connections: BTreeMap<String, crate::connection::ConnectionConfig>,
    /// The flows, one `[[flows]]` table each.
    #[serde(default)]
    pub flows: Vec<FlowConfig>,
    /// The pollers, one `[[pollers]]` table each.
    #[serde(default)]
    pub pollers: Vec<PollerConfig>,
    /// More files of `[[flows]]` and `[[pollers]]` tables, read after this one (relative
    /// paths from the working directory).
    #[serde(default)]
    pub flow_files: Vec<std::path::PathBuf>,
}

/// A file of flows: `[[flows]]` and `[[pollers]]` tables and nothing else.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowsFile {
    #[serde(default)]
    pub flows: Vec<FlowConfig>,
    #[serde(default)]
    pub pollers: Vec<PollerConfig>,
}

impl FlowsFile {
    /// Parses a file of flows; `name` labels the problem.
    pub fn parse(text: &str, name: &str) -> Result<FlowsFile, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let mut p = Problems::default();
            p.push(name, e.message().to_string(), "correct the flows file");
            p.into_error(name)
        })
    }
}

/// `[kafka]`: where events come from and where records go.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub brokers: String,
    /// The consumer group; replicas with the same group share the partitions.
    pub group: String,
    /// Event topics to read. With none listed, the topics of the flows' hooks are not
    /// known, so at least one topic (or `topic_pattern`) is required.
    pub topics: Vec<String>,
    /// A regular expression of topics to read, e.g. `"^webhooks\\..*"`.
    pub topic_pattern: Option<String>,
    /// Where records that cannot be decoded, and events whose flow failed after its
    /// retries, are republished with the reason in their headers.
    pub dead_letter_topic: String,
    /// Where execution records go; empty to only log them.
    pub executions_topic: String,
    /// librdkafka properties for the consumer and producer (security, SASL).
    pub properties: BTreeMap<String, PropertyValue>,
    /// librdkafka properties for the consumers only (`session.timeout.ms`, …).
    pub consumer_properties: BTreeMap<String, PropertyValue>,
    /// librdkafka properties for the producer only (`linger.ms`, `compression.type`, …).
    pub producer_properties: BTreeMap<String, PropertyValue>,
    /// The compacted topic whose partitions decide which replica runs each poller, and
    /// which keeps the pollers' state. Created when missing.
    pub control_topic: String,
    /// Partitions of the control topic when it is created: the most replicas that can
    /// share the pollers.
    pub control_partitions: i32,
    /// Where scheduled flows' ticks go, and are read from when a flow has
    /// `trigger.schedule`. Created when missing.
    pub schedules_topic: String,
}

/// `[admin]`: health, readiness and metrics.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub listen: String,
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Events of one partition being processed at once at most (events with the same key
    /// always one at a time); past it the partition is paused.
    pub max_in_flight_per_partition: usize,
    /// On SIGTERM/SIGINT, time given to running flows before the consumer commits and
    /// exits; flows still running then are abandoned and replayed by whoever next owns
    /// their partition.
    pub shutdown_timeout: ConfigDuration,
}

/// The configuration after validation.
pub struct Settings {
    pub kafka: KafkaSettings,
    pub admin: AdminConfig,
    pub limits: LimitsConfig,
    pub policy: Policy,
    pub engine: Engine,
    pub flows: Vec<Flow>,
    pub pollers: Vec<Poller>,
    /// The named connections, as written (`test-connection` sends their test request).
    pub connections: BTreeMap<String, crate::connection::ConnectionConfig>,
    /// `[telemetry]`, validated; `None`: no spans are exported.
    pub telemetry: Option<TelemetrySettings>,
}

/// `[kafka]`, resolved.
#[derive(Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub group: String,
    pub topics: Vec<String>,
    pub topic_pattern: Option<String>,
    pub dead_letter_topic: String,
    pub executions_topic: Option<String>,
    pub control_topic: String,
    pub control_partitions: i32,
    pub schedules_topic: String,
    /// (name, value); values that came from secrets are never printed.
    pub properties: Vec<(String, String)>,
    pub consumer_properties: Vec<(String, String)>,
    pub producer_properties: Vec<(String, String)>,
}

/// The consumers' group settings unless `kafka.consumer_properties` (or `properties`)
/// set them: a replica that died is noticed after 10 s rather than librdkafka's 45 s, so
/// a restarted or remaining replica takes its partitions (and pollers) over that much
/// sooner. A flow runner polls continuously, so short heartbeats cost nothing.
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("session.timeout.ms", "10000"),
    ("heartbeat.interval.ms", "3000"),
];

impl KafkaSettings {
    /// What every client shares: the brokers and `kafka.properties`.
    pub fn client_config(&self) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// A consumer's config: the shared one, the group defaults, `kafka.consumer_properties`.
    pub fn consumer_config(&self) -> rdkafka::ClientConfig {
        let mut c = self.client_config();
        for (k, v) in CONSUMER_DEFAULTS {
            if !self.properties.iter().any(|(name, _)| name == k) {
                c.set(*k, *v);
            }
        }
        for (k, v) in &self.consumer_properties {
            c.set(k, v);
        }
        c
    }

    /// The producer's config: the shared one and `kafka.producer_properties`.
    /// The producer for dead letters, execution records, redrives and `kafka` tasks:
    /// idempotent, acknowledged by all replicas.
    pub fn producer(&self) -> anyhow::Result<rdkafka::producer::FutureProducer> {
        use anyhow::Context as _;
        let mut c = self.producer_config();
        c.set("enable.idempotence", "true").set("acks", "all");
        c.create().context("creating the Kafka producer")
    }

    /// A producer that sends each record at once (`linger.ms = 0`): for the replies a
    /// synchronous hook's caller is waiting for.
    pub fn prompt_producer(&self) -> anyhow::Result<rdkafka::producer::FutureProducer> {
        use anyhow::Context as _;
        let mut c = self.producer_config();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0");
        c.create()
            .context("creating the Kafka producer for replies")
    }

    pub fn producer_config(&self) -> rdkafka::ClientConfig {
        let mut c = self.client_config();
        for (k, v) in &self.producer_properties {
            c.set(k, v);
        }
        c
    }
}

impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("group", &self.group)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl ConsumerConfig {
    /// Reads the layers. Stops at the first parse error.
    pub fn load(source: &Source, env: &Environment) -> Result<ConsumerConfig, ConfigError> {
        LAYERS.load(source, env)
    }

    /// Validates everything (compiling every template and expression) and builds the
    /// runtime types, reporting every problem.
    pub fn build(&self, env: &Environment, source_name: &str) -> Result<Settings, ConfigError> {
        let mut p = Problems::default();
        let kafka = self.kafka.resolve(env, &mut p);
        let telemetry = self.telemetry.build(&mut p);
        if self.admin.listen.parse::<std::net::SocketAddr>().is_err() {
            p.push(
                "admin.listen",
                format!("`{}` is not an address", self.admin.listen),
                "write `ip:port`, like \"127.0.0.1:9191\"",
            );
        }
        if self.limits.max_in_flight_per_partition == 0 {
            p.push(
                "limits.max_in_flight_per_partition",
                "must be at least 1",
                "raise it",
            );
        }
        let policy = self.outbound.build(&mut p);
        let mut secrets = Secrets::default();
        for (name, r) in &self.secrets {
            match r.resolve(env) {
                Ok(s) => secrets.insert(
                    name.clone(),
                    String::from_utf8_lossy(s.expose()).into_owned(),
                ),
                Err(e) => p.secret(format!("secrets.{name}"), e),
            }
        }
        let engine = Engine::new(secrets);
        let mut all: Vec<(String, FlowConfig)> = self
            .flows
            .iter()
            .enumerate()
            .map(|(i, f)| (format!("flows[{i}]"), f.clone()))
            .collect();
        let mut all_pollers: Vec<(String, PollerConfig)> = self
            .pollers
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("pollers[{i}]"), c.clone()))
            .collect();
        for (n, path) in self.flow_files.iter().enumerate() {
            let name = format!("flow_files[{n}] ({})", path.display());
            match std::fs::read_to_string(path) {
                Ok(text) => match FlowsFile::parse(&text, &name) {
                    Ok(file) => {
                        all.extend(
                            file.flows
                                .into_iter()
                                .enumerate()
                                .map(|(i, f)| (format!("{name}.flows[{i}]"), f)),
                        );
                        all_pollers.extend(
                            file.pollers
                                .into_iter()
                                .enumerate()
                                .map(|(i, c)| (format!("{name}.pollers[{i}]"), c)),
                        );
                    }
                    Err(e) => {
                        for problem in e.problems {
                            p.push(problem.path, problem.message, &problem.fix);
                        }
                    }
                },
                Err(e) => p.push(
                    format!("flow_files[{n}]"),
                    format!("cannot read `{}`: {e}", path.display()),
                    "point it at an existing file",
                ),
            }
        }
        let mut transports = BTreeMap::new();
        for (name, conn) in &self.connections {
            if !crate::connection::valid_name(name) {
                p.push(
                    format!("connections.\"{name}\""),
                    "is not a usable name",
                    "use letters, digits, `-`, `_` and `.` (at most 64)",
                );
            }
            if let Some(transport) = conn.transport(&format!("connections.{name}"), &mut p) {
                transports.insert(name.clone(), transport);
            }
        }
        for (at, f) in &mut all {
            for (i, task) in f.tasks.iter_mut().enumerate() {
                if let crate::task::TaskConfig::Http(http) = task {
                    let at = format!("{at}.tasks[{i}]");
                    crate::connection::resolve(
                        &mut http.request,
                        &self.connections,
                        &transports,
                        &at,
                        &mut p,
                    );
                }
            }
        }
        for (at, c) in &mut all_pollers {
            crate::connection::resolve(&mut c.request, &self.connections, &transports, at, &mut p);
        }
        let mut ids: BTreeMap<String, String> = BTreeMap::new();
        let mut flows = Vec::new();
        for (at, f) in &all {
            if let Some(first) = ids.insert(f.qualified_id(), at.clone()) {
                p.push(
                    format!("{at}.id"),
                    format!("`{}` is already the id of {first} in that namespace", f.id),
                    "give every flow its own id",
                );
            }
            if let Some(flow) = f.build(at, &engine, &self.secrets, &mut p) {
                flows.push(flow);
            }
        }
        let responders: Vec<&(String, FlowConfig)> =
            all.iter().filter(|(_, f)| f.response.is_some()).collect();
        for (i, (at, f)) in responders.iter().enumerate() {
            if let Some((first, _)) = responders[..i]
                .iter()
                .find(|(_, g)| g.trigger.shares_a_hook_with(&f.trigger))
            {
                p.push(
                    format!("{at}.response"),
                    format!(
                        "{first} already answers the callers of a hook this flow is triggered by"
                    ),
                    "keep [flows.response] in one flow per hook",
                );
            }
        }
        let mut poller_ids: BTreeMap<String, String> = BTreeMap::new();
        let mut pollers = Vec::new();
        for (at, c) in &all_pollers {
            if let Some(first) = poller_ids.insert(c.id.clone(), at.clone()) {
                p.push(
                    format!("{at}.id"),
                    format!("`{}` is already the id of {first}", c.id),
                    "give every poller its own id",
                );
            }
            if let Some(poller) = c.build(at, &engine, &mut p) {
                pollers.push(poller);
            }
        }
        let mut kafka = kafka;
        if let Some(kafka) = kafka.as_mut() {
            for (at, f) in &all {
                let Some(flow) = flows.iter().find(|g| g.qualified_id() == f.qualified_id()) else {
                    continue;
                };
                let Some(tick) = Poller::for_flow(flow, &kafka.schedules_topic) else {
                    continue;
                };
                if let Some(first) = poller_ids.get(&tick.id) {
                    p.push(
                        format!("{at}.trigger.schedule"),
                        format!("{first} is a poller with this flow's id, `{}`", tick.id),
                        "rename the poller or the flow",
                    );
                }
                pollers.push(tick);
                if !kafka.topics.contains(&kafka.schedules_topic) {
                    kafka.topics.push(kafka.schedules_topic.clone());
                }
            }
        }
        if !p.is_empty() {
            return Err(p.into_error(source_name));
        }
        Ok(Settings {
            kafka: kafka.expect("no problems, so resolved"),
            admin: self.admin.clone(),
            limits: self.limits.clone(),
            policy: policy.expect("no problems, so built"),
            engine,
            flows,
            pollers,
            connections: self.connections.clone(),
            telemetry,
        })
    }
}

impl KafkaConfig {
    fn resolve(&self, env: &Environment, p: &mut Problems) -> Option<KafkaSettings> {
        let before = p.len();
        if self.brokers.trim().is_empty() {
            p.push("kafka.brokers", "is empty", "list the bootstrap brokers");
        }
        if self.group.trim().is_empty() {
            p.push("kafka.group", "is empty", "name the consumer group");
        }
        if self.topics.is_empty() && self.topic_pattern.is_none() {
            p.push(
                "kafka.topics",
                "no topics to read",
                "list the event topics, or set kafka.topic_pattern",
            );
        }
        if let Some(pattern) = &self.topic_pattern {
            if let Err(e) = regex::Regex::new(pattern) {
                p.push(
                    "kafka.topic_pattern",
                    format!("not a regular expression: {e}"),
                    "fix the pattern",
                );
            }
        }
        if self.control_topic.trim().is_empty() {
            p.push(
                "kafka.control_topic",
                "is empty",
                "name the topic that coordinates the pollers",
            );
        }
        if !(1..=1000).contains(&self.control_partitions) {
            p.push(
                "kafka.control_partitions",
                "must be between 1 and 1000",
                "choose at least as many as the replicas that should share the pollers",
            );
        }
        if self.schedules_topic.trim().is_empty() {
            p.push(
                "kafka.schedules_topic",
                "is empty",
                "name the topic scheduled flows' ticks go to",
            );
        }
        for (key, topic) in [
            ("kafka.dead_letter_topic", &self.dead_letter_topic),
            ("kafka.executions_topic", &self.executions_topic),
            ("kafka.control_topic", &self.control_topic),
        ] {
            if *topic == self.schedules_topic {
                p.push(
                    "kafka.schedules_topic",
                    format!("`{topic}` is also {key}"),
                    "give the ticks a topic of their own",
                );
            }
        }
        if self.dead_letter_topic.trim().is_empty() {
            p.push(
                "kafka.dead_letter_topic",
                "is empty",
                "name a topic: events are never dropped silently",
            );
        }
        let own = [
            (
                "kafka.dead_letter_topic",
                &self.dead_letter_topic,
                "failed events would run again and fail into it again, in a loop",
            ),
            (
                "kafka.executions_topic",
                &self.executions_topic,
                "execution records are not events: each would be dead-lettered",
            ),
            (
                "kafka.control_topic",
                &self.control_topic,
                "the pollers' state records are not events: each would be dead-lettered",
            ),
        ];
        for (i, topic) in self.topics.iter().enumerate() {
            if let Some((key, _, why)) = own.iter().find(|(_, t, _)| *t == topic) {
                p.push(
                    format!("kafka.topics[{i}]"),
                    format!("`{topic}` is this consumer's own topic ({key}): {why}"),
                    "remove it from kafka.topics",
                );
            }
        }
        let mut resolve = |key: &str, table: &BTreeMap<String, PropertyValue>| {
            let mut out = Vec::new();
            for (name, value) in table {
                match value.resolve(env) {
                    Ok((v, _)) => out.push((name.clone(), v)),
                    Err(e) => p.secret(format!("kafka.{key}.\"{name}\""), e),
                }
            }
            out
        };
        let properties = resolve("properties", &self.properties);
        let consumer_properties = resolve("consumer_properties", &self.consumer_properties);
        let producer_properties = resolve("producer_properties", &self.producer_properties);
        (p.len() == before).then(|| KafkaSettings {
            brokers: self.brokers.clone(),
            group: self.group.clone(),
            topics: self.topics.clone(),
            // librdkafka subscribes to a pattern when the name starts with `^`.
            topic_pattern: self.topic_pattern.as_ref().map(|t| {
                if t.starts_with('^') {
                    t.clone()
                } else {
                    format!("^{t}")
                }
            }),
            dead_letter_topic: self.dead_letter_topic.clone(),
            executions_topic: (!self.executions_topic.trim().is_empty())
                .then(|| self.executions_topic.clone()),
            control_topic: self.control_topic.clone(),
            control_partitions: self.control_partitions,
            schedules_topic: self.schedules_topic.clone(),
            properties,
            consumer_properties,
            producer_properties,
        })
    }
}

/// Loads and builds in one step.
pub fn load(source: &Source, env: &Environment) -> Result<Settings, ConfigError> {
    ConsumerConfig::load(source, env)?.build(env, &source.name())
}

/// The flows as a table: namespace, id, trigger, conditions and tasks.
pub fn flow_table(settings: &Settings) -> String {
    let mut out = String::from("FLOW\tTASKS\n");
    for f in &settings.flows {
        let tasks: Vec<String> = f
            .tasks
            .iter()
            .map(|t| format!("{}:{}", t.id(), t.kind()))
            .collect();
        out.push_str(&format!("{}\t{}\n", f.qualified_id(), tasks.join(" → ")));
    }
    if !settings.pollers.is_empty() {
        out.push('\n');
        out.push_str(&crate::poller::table(&settings.pollers));
    }
    out
}
