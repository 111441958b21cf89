//! Configuration: loaded once, strictly, and validated before any port is bound.
//!
//! Three layers, each over the one before: the embedded defaults (config/defaults.toml),
//! the TOML file, and `HOOKGATE_<TABLE>__<KEY>` environment variables (tables only;
//! `[[hooks]]` live in the file). Unknown keys are errors. Parsing stops at the first
//! error; [`Config::build`] then reports every semantic problem at once, each with its
//! TOML path and a fix, and turns the serde data into the runtime types the hot path uses.

mod cluster;
mod hook;
mod kafka;
mod rejections;
mod server;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use cluster::{ClusterConfig, ClusterSettings};
pub use hook::{
    normalize_path, ClientKeyConfig, ClientLimitConfig, EnvelopeMode, HookConfig, KeySource,
    Lookup, TypeSource, DEFAULT_ACK_TIMEOUT,
};
use hookgate_common::config::{
    ByteSize, ConfigDuration, ConfigError, Environment, Layers, Problems, SecretRef, Source,
};
use hookgate_common::telemetry::{TelemetryConfig, TelemetrySettings};
pub use kafka::{KafkaConfig, RESERVED_PROPERTIES};
pub use rejections::RejectionsConfig;
pub use server::{AdminConfig, ServerConfig, TlsConfig};

use crate::hook::Hook;
use crate::sink::kafka::KafkaSettings;

/// The built-in defaults, the first layer.
pub const DEFAULTS: &str = include_str!("../../config/defaults.toml");
/// Where the gateway looks for its config when `--config` is not given.
pub const DEFAULT_PATH: &str = "hookgate.toml";
/// How the gateway's config is layered.
const LAYERS: Layers<'static> = Layers {
    defaults: DEFAULTS,
    env_prefix: "HOOKGATE_",
    env_ignore: &["HOOKGATE_CONSUMER_", "HOOKGATE_CONSOLE_"],
    env_tables: &[
        "server",
        "admin",
        "kafka",
        "rejections",
        "replies",
        "cluster",
        "telemetry",
    ],
    missing_file_fix:
        "pass an existing file with --config, or run `hookgate local` to try it without one",
};

/// The gateway's configuration as written: serde data whose doc comments are the user
/// documentation (docs/configuration.md follows them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub kafka: KafkaConfig,
    /// Records of refused requests.
    pub rejections: RejectionsConfig,
    /// Where synchronous hooks' answers are read, and how long they are kept.
    pub replies: RepliesConfig,
    /// State shared by the replicas, on Redis.
    pub cluster: ClusterConfig,
    /// Traces over OTLP.
    pub telemetry: TelemetryConfig,
    /// The hooks, one `[[hooks]]` table each.
    #[serde(default)]
    pub hooks: Vec<HookConfig>,
}

/// The configuration after validation: what the gateway runs on.
#[derive(Debug)]
pub struct Settings {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub kafka: KafkaSettings,
    /// Where records of refused requests go; `None`: they are not made.
    pub rejections: Option<crate::rejections::RejectionSettings>,
    /// `[replies]`, validated.
    pub replies: crate::replies::RepliesSettings,
    /// `[cluster]`, validated; `None`: each replica keeps its own state.
    pub cluster: Option<ClusterSettings>,
    /// `[telemetry]`, validated; `None`: no spans are exported.
    pub telemetry: Option<TelemetrySettings>,
    pub hooks: Vec<Hook>,
    /// `server.trusted_proxies`, parsed.
    pub trusted_proxies: crate::client::CidrList,
}

impl Settings {
    /// The topic of rejection records, when they are made.
    pub fn rejections_topic(&self) -> Option<&str> {
        self.rejections.as_ref().map(|r| r.topic.as_str())
    }

    /// Every topic the gateway writes: the hooks' and the rejections topic.
    pub fn topics(&self) -> Vec<String> {
        let mut topics = crate::topics::hook_topics(&self.hooks);
        topics.extend(self.rejections_topic().map(str::to_string));
        topics
    }
}

impl Config {
    /// Reads the layers and deserializes them. Stops at the first parse error.
    pub fn load(source: &Source, env: &Environment) -> Result<Config, ConfigError> {
        LAYERS.load(source, env)
    }

    /// Validates everything and builds the runtime types, reporting every problem.
    pub fn build(&self, env: &Environment, source_name: &str) -> Result<Settings, ConfigError> {
        let mut p = Problems::default();
        self.server.validate(&mut p);
        self.admin.validate(env, &mut p);
        let rejections = self.rejections.build(&mut p);
        let replies = self.replies.build(&mut p);
        let cluster = self.cluster.build(env, &mut p);
        let telemetry = self.telemetry.build(&mut p);
        let mut hooks = Vec::with_capacity(self.hooks.len());
        if self.hooks.is_empty() {
            p.push(
                "hooks",
                "no hooks are configured",
                "add a [[hooks]] table with at least `id`, `topic` and `auth`",
            );
        }
        let mut ids: HashMap<&str, usize> = HashMap::new();
        for (i, h) in self.hooks.iter().enumerate() {
            if let Some(first) = ids.insert(h.id.as_str(), i) {
                p.push(
                    format!("hooks[{i}].id"),
                    format!("`{}` is already the id of hooks[{first}]", h.id),
                    "give every hook its own id",
                );
            }
            if let Some(hook) = h.build(i, env, &mut p) {
                hooks.push(hook);
            }
        }
        check_paths(&hooks, &mut p);
        let max_ack = hooks
            .iter()
            .map(|h| h.ack_timeout)
            .max()
            .unwrap_or(hook::DEFAULT_ACK_TIMEOUT);
        let properties = self.kafka.resolve(env, max_ack, &mut p);
        let message_max = properties.message_max_bytes();
        for (i, h) in hooks.iter().enumerate() {
            let worst = h.worst_case_record_bytes(self.server.max_header_bytes.0);
            if worst > message_max {
                p.push(
                    format!("hooks[{i}].max_body"),
                    format!(
                        "hook `{}` accepts {} bodies, whose events can reach {worst} bytes in {} mode, above message.max.bytes ({message_max})",
                        h.id,
                        ByteSize(h.max_body as u64),
                        h.mode.as_str(),
                    ),
                    "lower max_body, or raise kafka.properties.\"message.max.bytes\" (and the broker's limit) to match",
                );
            }
        }
        if let Err((name, e)) =
            crate::sink::kafka::check_properties(&self.kafka.brokers, &properties)
        {
            p.push(
                name.map_or_else(
                    || "kafka.properties".to_string(),
                    |n| format!("kafka.properties.\"{n}\""),
                ),
                e,
                "use a property librdkafka knows, with a valid value (see librdkafka's CONFIGURATION.md)",
            );
        }
        if !p.is_empty() {
            return Err(p.into_error(source_name));
        }
        Ok(Settings {
            server: self.server.clone(),
            admin: self.admin.clone(),
            kafka: KafkaSettings {
                brokers: self.kafka.brokers.clone(),
                create_topics: self.kafka.create_topics,
                partitions: self.kafka.partitions,
                replication_factor: self.kafka.replication_factor,
                connect_timeout: self.kafka.connect_timeout.get(),
                properties,
            },
            rejections,
            replies,
            cluster,
            telemetry,
            hooks,
            trusted_proxies: crate::client::CidrList::parse(&self.server.trusted_proxies)
                .unwrap_or_default(),
        })
    }
}

/// `[replies]`: the topic synchronous hooks' answers come on (the consumer's
/// `kafka.executions_topic`) and how long each replica keeps them for polls.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RepliesConfig {
    pub topic: String,
    /// How long an answer (or a request still waiting for one) is kept for
    /// `GET /executions/{id}`.
    pub keep: ConfigDuration,
    /// Bytes of answers kept at most; the oldest go first.
    pub max_bytes: ByteSize,
}

impl RepliesConfig {
    fn build(&self, p: &mut Problems) -> crate::replies::RepliesSettings {
        if !hook::valid_topic(&self.topic) {
            p.push(
                "replies.topic",
                format!("`{}` is not a valid Kafka topic name", self.topic),
                "name the consumer's kafka.executions_topic",
            );
        }
        p.nonzero("replies.keep", self.keep, "\"10m\"");
        crate::replies::RepliesSettings {
            topic: self.topic.clone(),
            keep: self.keep.get(),
            max_bytes: self.max_bytes.bytes(),
        }
    }
}

/// Loads and builds in one step.
pub fn load(source: &Source, env: &Environment) -> Result<Settings, ConfigError> {
    Config::load(source, env)?.build(env, &source.name())
}

/// A loaded configuration with what is needed to load it again (for reloads).
#[derive(Debug)]
pub struct Loaded {
    pub source: Source,
    pub env: Environment,
    pub config: Config,
    pub settings: Settings,
}

impl Loaded {
    pub fn load(source: Source, env: Environment) -> Result<Loaded, ConfigError> {
        let config = Config::load(&source, &env)?;
        let settings = config.build(&env, &source.name())?;
        Ok(Loaded {
            source,
            env,
            config,
            settings,
        })
    }
}

/// Two hooks may not serve the same path, and a `url_key` hook owns the path segment
/// below its own path.
fn check_paths(hooks: &[Hook], p: &mut Problems) {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for h in hooks {
        if let Some(other) = seen.insert(h.path.as_str(), h.id.as_str()) {
            p.push(
                format!("hooks[id={}].path", h.id),
                format!("`{}` is also the path of hook `{other}`", h.path),
                "give each hook its own path",
            );
        }
    }
    for h in hooks.iter().filter(|h| h.auth.key_in_path()) {
        for other in hooks {
            let Some(rest) = other.path.strip_prefix(h.path.as_str()) else {
                continue;
            };
            if rest.starts_with('/') && !rest[1..].contains('/') {
                p.push(
                    format!("hooks[id={}].path", other.id),
                    format!(
                        "`{}` lies where hook `{}` expects its URL key",
                        other.path, h.id
                    ),
                    "move one of the two hooks to another path",
                );
            }
        }
    }
}

/// The default config path, if it exists, for commands run without `--config`.
pub fn default_source(path: Option<&Path>) -> Source {
    Source::File(path.map_or_else(|| PathBuf::from(DEFAULT_PATH), Path::to_path_buf))
}
