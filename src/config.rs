//! Configuration: loaded once, strictly, and validated before any port is bound.
//!
//! Three layers, each over the one before: the embedded defaults (config/defaults.toml),
//! the TOML file, and `HOOKGATE_<TABLE>__<KEY>` environment variables (tables only;
//! `[[hooks]]` live in the file). Unknown keys are errors. Parsing stops at the first
//! error; [`Config::build`] then reports every semantic problem at once, each with its
//! TOML path and a fix, and turns the serde data into the runtime types the hot path uses.

mod duration;
mod hook;
mod kafka;
mod secret;
mod server;
mod size;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::Deserialize;

pub use duration::ConfigDuration;
pub use hook::{
    normalize_path, ClientKeyConfig, ClientLimitConfig, EnvelopeMode, HookConfig, KeySource,
    Lookup, TypeSource, DEFAULT_ACK_TIMEOUT,
};
pub use kafka::{KafkaConfig, PropertyValue, ResolvedProperties, RESERVED_PROPERTIES};
pub use secret::{Environment, Secret, SecretRef, SecretSet};
pub use server::{AdminConfig, ServerConfig, TlsConfig};
pub use size::ByteSize;

use crate::hook::Hook;

/// The built-in defaults, the first layer.
pub const DEFAULTS: &str = include_str!("../config/defaults.toml");
/// Where the gateway looks for its config when `--config` is not given.
pub const DEFAULT_PATH: &str = "hookgate.toml";
/// Prefix of the environment variables that override the file.
const ENV_PREFIX: &str = "HOOKGATE_";
/// The tables environment variables may set.
const ENV_TABLES: &[&str] = &["server", "admin", "kafka"];

/// The gateway's configuration as written: serde data whose doc comments are the user
/// documentation (docs/configuration.md follows them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub kafka: KafkaConfig,
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
    pub hooks: Vec<Hook>,
    /// `server.trusted_proxies`, parsed.
    pub trusted_proxies: crate::client::CidrList,
}

/// `[kafka]`, resolved.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub create_topics: bool,
    pub partitions: i32,
    pub replication_factor: i32,
    pub connect_timeout: Duration,
    pub properties: ResolvedProperties,
}

/// Where the config file comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file on disk.
    File(PathBuf),
    /// TOML text with a name for messages (tests, the embedded local profile).
    Text { name: String, toml: String },
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: a TOML path such as `hooks[2].topic`, or an environment variable.
    pub path: String,
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)?;
        if !self.fix.is_empty() {
            write!(f, " (fix: {})", self.fix)?;
        }
        Ok(())
    }
}

/// Problems found while validating, collected so that all are reported at once.
#[derive(Debug, Default)]
pub struct Problems(Vec<Problem>);

impl Problems {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>, fix: &str) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
            fix: fix.to_string(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// A configuration that cannot be used, with every problem found.
#[derive(Debug)]
pub struct ConfigError {
    /// The file or source the problems are in.
    pub source: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "invalid configuration in {} ({n} problem{}):",
            self.source,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Source {
    fn name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Text { name, .. } => name.clone(),
        }
    }
}

impl Config {
    /// Reads the layers and deserializes them. Stops at the first parse error.
    pub fn load(source: &Source, env: &Environment) -> Result<Config, ConfigError> {
        let fail = |path: &str, message: String, fix: &str| ConfigError {
            source: source.name(),
            problems: vec![Problem {
                path: path.to_string(),
                message,
                fix: fix.to_string(),
            }],
        };
        let file = match source {
            Source::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    fail(
                        "(file)",
                        format!("cannot read `{}`: {e}", path.display()),
                        "pass an existing file with --config, or run `hookgate local` to try it without one",
                    )
                })?;
                Toml::string(&text)
            }
            Source::Text { toml, .. } => Toml::string(toml),
        };
        let env_layer = EnvLayer::new(env).map_err(|(var, message)| {
            fail(
                &var,
                message,
                "set only HOOKGATE_<TABLE>__<KEY> for the tables server, admin and kafka",
            )
        })?;
        Figment::new()
            .merge(Toml::string(DEFAULTS))
            .merge(file)
            .merge(env_layer)
            .extract::<Config>()
            .map_err(|e| ConfigError {
                source: source.name(),
                // Deserialization stops at its first error; report that one.
                problems: e.into_iter().take(1).map(problem_from_figment).collect(),
            })
    }

    /// Validates everything and builds the runtime types, reporting every problem.
    pub fn build(&self, env: &Environment, source_name: &str) -> Result<Settings, ConfigError> {
        let mut p = Problems::default();
        self.server.validate(&mut p);
        self.admin.validate(env, &mut p);
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
        if let Err(e) = crate::sink::kafka::check_properties(&self.kafka.brokers, &properties) {
            p.push(
                "kafka.properties",
                e,
                "use a property librdkafka knows, with a valid value (see librdkafka's CONFIGURATION.md)",
            );
        }
        if !p.is_empty() {
            return Err(ConfigError {
                source: source_name.to_string(),
                problems: p.0,
            });
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
            hooks,
            trusted_proxies: crate::client::CidrList::parse(&self.server.trusted_proxies)
                .unwrap_or_default(),
        })
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

/// Turns a figment error into a problem with a TOML path (`hooks[0].auth.scheme`) or the
/// environment variable that caused it.
fn problem_from_figment(e: figment::Error) -> Problem {
    let mut path = String::new();
    for (i, seg) in e.path.iter().enumerate() {
        if seg.parse::<usize>().is_ok() {
            path.push_str(&format!("[{seg}]"));
        } else {
            if i > 0 {
                path.push('.');
            }
            if seg.contains('.') {
                path.push_str(&format!("\"{seg}\""));
            } else {
                path.push_str(seg);
            }
        }
    }
    let from_env = e
        .metadata
        .as_ref()
        .is_some_and(|m| m.name == ENV_LAYER_NAME);
    let location = if from_env {
        let keys: Vec<&str> = e.path.iter().map(String::as_str).collect();
        format!("{} (environment)", env_var_name(&keys))
    } else if path.is_empty() {
        "(file)".to_string()
    } else {
        path
    };
    let fix = match &e.kind {
        figment::error::Kind::UnknownField(_, expected) => format!(
            "remove it or correct its spelling; allowed here: {}",
            expected.join(", ")
        ),
        figment::error::Kind::MissingField(_) => "add it".to_string(),
        figment::error::Kind::UnknownVariant(_, expected) => {
            format!("use one of: {}", expected.join(", "))
        }
        figment::error::Kind::Message(_) if location == "(file)" => {
            "correct the TOML syntax at the position given".to_string()
        }
        _ => "correct the value".to_string(),
    };
    Problem {
        path: location,
        message: e.kind.to_string(),
        fix,
    }
}

const ENV_LAYER_NAME: &str = "environment variable";

fn env_var_name(keys: &[&str]) -> String {
    let upper: Vec<String> = keys.iter().map(|k| k.to_uppercase()).collect();
    format!("{ENV_PREFIX}{}", upper.join("__"))
}

/// The environment layer: `HOOKGATE_SERVER__LISTEN=…` sets `server.listen`. Values are
/// read as TOML-like scalars (`8`, `true`, `"text"`).
struct EnvLayer {
    dict: Dict,
}

impl EnvLayer {
    fn new(env: &Environment) -> Result<EnvLayer, (String, String)> {
        let mut dict = Dict::new();
        let mut vars: Vec<(&str, &str)> = env
            .iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"))
            .collect();
        vars.sort();
        for (name, value) in vars {
            let keys: Vec<String> = name[ENV_PREFIX.len()..]
                .split("__")
                .map(str::to_lowercase)
                .collect();
            if keys.len() < 2 || keys.iter().any(String::is_empty) {
                return Err((
                    name.to_string(),
                    "is not of the form HOOKGATE_<TABLE>__<KEY>".into(),
                ));
            }
            if !ENV_TABLES.contains(&keys[0].as_str()) {
                return Err((
                    name.to_string(),
                    format!(
                        "names the table `{}`, which cannot be set from the environment",
                        keys[0]
                    ),
                ));
            }
            insert_path(
                &mut dict,
                &keys,
                value.parse::<Value>().unwrap_or_else(|e| match e {}),
            );
        }
        Ok(EnvLayer { dict })
    }
}

fn insert_path(dict: &mut Dict, keys: &[String], value: Value) {
    let (last, parents) = keys.split_last().expect("at least two keys");
    let mut current = dict;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| Value::from(Dict::new()));
        if entry.as_dict().is_none() {
            *entry = Value::from(Dict::new());
        }
        current = match entry {
            Value::Dict(_, d) => d,
            _ => unreachable!("replaced by a dict above"),
        };
    }
    current.insert(last.clone(), value);
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_LAYER_NAME).interpolater(|_, keys| env_var_name(keys))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// The default config path, if it exists, for commands run without `--config`.
pub fn default_source(path: Option<&Path>) -> Source {
    Source::File(path.map_or_else(|| PathBuf::from(DEFAULT_PATH), Path::to_path_buf))
}
