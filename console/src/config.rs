//! The console's configuration (`hookgate-console.toml`, defaults in
//! config/console-defaults.toml) and what it reads from the gateway's and the consumer's.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hookgate_common::config::{
    ByteSize, ConfigDuration, ConfigError, Environment, Layers, Problems, SecretRef, SecretSet,
    Source,
};
use serde::{Deserialize, Serialize};

use crate::index::Retention;
use crate::ingest::{Kind, Topics};

/// The built-in defaults.
pub const DEFAULTS: &str = include_str!("../../config/console-defaults.toml");
/// Where the console looks for its config when `--config` is not given.
pub const DEFAULT_PATH: &str = "hookgate-console.toml";

const LAYERS: Layers<'static> = Layers {
    defaults: DEFAULTS,
    env_prefix: "HOOKGATE_CONSOLE_",
    env_ignore: &[],
    env_tables: &["server", "sources", "index"],
    missing_file_fix: "pass an existing file with --config",
};

/// The configuration as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    pub server: ServerConfig,
    pub sources: SourcesConfig,
    pub index: IndexConfig,
    pub login: LoginConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    pub gateway_config: Option<PathBuf>,
    pub consumer_config: PathBuf,
    pub group: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexConfig {
    pub path: PathBuf,
    pub body_limit: ByteSize,
    pub max_age: ConfigDuration,
    pub max_events: u64,
}

/// `[login]`: a token, basic credentials, or both.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    pub token: Option<SecretRef>,
    pub username: Option<String>,
    pub password: Option<SecretRef>,
}

/// Who may use the console, resolved: secrets as digests, compared in constant time.
#[derive(Debug, Clone)]
pub struct Login {
    pub token: Option<SecretSet>,
    pub basic: Option<(String, SecretSet)>,
}

/// A hook as the Hooks page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HookView {
    pub id: String,
    pub path: String,
    pub scheme: &'static str,
    pub topic: String,
    /// `200/s, burst 400`, or none.
    pub rate_limit: Option<String>,
    pub max_body: Option<u64>,
}

/// Index settings, resolved.
#[derive(Debug, Clone)]
pub struct IndexSettings {
    pub path: PathBuf,
    pub body_limit: usize,
    pub retention: Retention,
}

/// Everything the console runs on.
#[derive(Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub group: String,
    pub index: IndexSettings,
    pub login: Login,
    pub hooks: Vec<HookView>,
    pub rejections_topic: Option<String>,
    /// The consumer's settings: brokers, topics, flows.
    pub consumer: Arc<hookgate_consumer::config::Settings>,
}

impl Settings {
    /// The topics the console reads, and what each carries.
    pub fn topics(&self) -> Topics {
        let kafka = &self.consumer.kafka;
        let mut topics: Vec<(String, Kind)> = Vec::new();
        let mut add = |t: &str, k: Kind| {
            if !t.is_empty() && !topics.iter().any(|(x, _)| x == t) {
                topics.push((t.to_string(), k));
            }
        };
        for h in &self.hooks {
            add(&h.topic, Kind::Events);
        }
        for t in &kafka.topics {
            add(t, Kind::Events);
        }
        for p in &self.consumer.pollers {
            add(&p.topic, Kind::Events);
        }
        if let Some(t) = &self.rejections_topic {
            add(t, Kind::Rejections);
        }
        if let Some(t) = &kafka.executions_topic {
            add(t, Kind::Executions);
        }
        add(&kafka.dead_letter_topic, Kind::DeadLetters);
        add(&kafka.control_topic, Kind::Pollers);
        Topics(topics)
    }

    /// The Kafka client config of the index reader.
    pub fn kafka_config(&self) -> rdkafka::ClientConfig {
        let mut c = self.consumer.kafka.consumer_config();
        c.set("group.id", &self.group);
        c.set("enable.auto.commit", "false");
        c.set("enable.auto.offset.store", "false");
        c.set("enable.partition.eof", "false");
        c
    }
}

impl ConsoleConfig {
    pub fn load(source: &Source, env: &Environment) -> Result<ConsoleConfig, ConfigError> {
        LAYERS.load(source, env)
    }

    /// Resolves the login, reads the gateway's and the consumer's configs, and reports
    /// every problem found.
    pub fn build(&self, env: &Environment, source_name: &str) -> Result<Settings, ConfigError> {
        let mut p = Problems::default();
        let listen = self.server.listen.parse::<SocketAddr>();
        if listen.is_err() {
            p.push(
                "server.listen",
                format!("`{}` is not an address", self.server.listen),
                "write an IP address and a port, like \"127.0.0.1:9400\"",
            );
        }
        if self.index.max_events == 0 {
            p.push(
                "index.max_events",
                "0 would keep nothing",
                "keep at least 1 row, e.g. 1000000",
            );
        }
        p.nonzero("index.max_age", self.index.max_age, "\"7d\"");
        let login = self.login.resolve(env, &mut p);
        let (hooks, rejections_topic) = match &self.sources.gateway_config {
            Some(path) => match gateway_hooks(&Source::File(path.clone()), env) {
                Ok(found) => found,
                Err(e) => {
                    p.push(
                        "sources.gateway_config",
                        format!("cannot read `{}`: {e}", path.display()),
                        "point it at the gateway's config file, or leave it out",
                    );
                    (Vec::new(), None)
                }
            },
            None => (Vec::new(), None),
        };
        let consumer = match hookgate_consumer::config::load(
            &Source::File(self.sources.consumer_config.clone()),
            env,
        ) {
            Ok(s) => Some(s),
            Err(e) => {
                p.push(
                    "sources.consumer_config",
                    format!(
                        "the consumer's config `{}` does not load: {e}",
                        self.sources.consumer_config.display()
                    ),
                    "point it at the consumer's config file; the console needs its secrets too, for dry runs",
                );
                None
            }
        };
        if !p.is_empty() {
            return Err(p.into_error(source_name));
        }
        Ok(Settings {
            listen: listen.expect("checked"),
            group: self.sources.group.clone(),
            index: IndexSettings {
                path: self.index.path.clone(),
                body_limit: self.index.body_limit.bytes(),
                retention: Retention {
                    max_age: self.index.max_age.get(),
                    max_events: self.index.max_events,
                },
            },
            login: login.expect("checked"),
            hooks,
            rejections_topic,
            consumer: Arc::new(consumer.expect("checked")),
        })
    }
}

impl LoginConfig {
    /// The login, or its problems: at least one way in is required.
    pub fn resolve(&self, env: &Environment, p: &mut Problems) -> Option<Login> {
        let mut resolve = |at: &str, s: &SecretRef| match s.resolve(env) {
            Ok(secret) => Some(SecretSet::new(&[secret])),
            Err(e) => {
                p.secret(at, e);
                None
            }
        };
        let token = self.token.as_ref().map(|t| resolve("login.token", t));
        let basic = match (&self.username, &self.password) {
            (Some(u), Some(pw)) => Some(resolve("login.password", pw).map(|s| (u.clone(), s))),
            (None, None) => None,
            _ => {
                p.push(
                    "login",
                    "basic credentials need both `username` and `password`",
                    "write both, like username = \"ops\" and password = { env = \"CONSOLE_PASSWORD\" }",
                );
                return None;
            }
        };
        if token.is_none() && basic.is_none() {
            p.push(
                "login",
                "no way to log in: the console shows webhook bodies and always requires a login",
                "add token = { env = \"CONSOLE_TOKEN\" }, or username and password",
            );
            return None;
        }
        Some(Login {
            token: token.flatten(),
            basic: basic.flatten(),
        })
    }
}

/// The hooks and the rejections topic of a gateway config, read as written (its
/// secrets are not resolved).
pub fn gateway_hooks(
    source: &Source,
    env: &Environment,
) -> Result<(Vec<HookView>, Option<String>), ConfigError> {
    let config = hookgate_gateway::config::Config::load(source, env)?;
    Ok(hook_views(&config))
}

/// What the Hooks page shows of a gateway config.
pub fn hook_views(config: &hookgate_gateway::config::Config) -> (Vec<HookView>, Option<String>) {
    use hookgate_gateway::auth::AuthConfig;
    let hooks = config
        .hooks
        .iter()
        .map(|h| HookView {
            id: h.id.clone(),
            path: h.path.clone().unwrap_or_else(|| format!("/hooks/{}", h.id)),
            scheme: match &h.auth {
                AuthConfig::None(_) => "none",
                AuthConfig::UrlKey(_) => "url_key",
                AuthConfig::Basic(_) => "basic",
                AuthConfig::ApiKey(_) => "api_key",
                AuthConfig::Token(_) => "token",
                AuthConfig::Hmac(_) => "hmac",
            },
            topic: h.topic.clone(),
            rate_limit: h.rate_limit.map(|r| match r.burst {
                Some(b) => format!("{}/s, burst {b}", r.per_second),
                None => format!("{}/s", r.per_second),
            }),
            max_body: h.max_body.map(|b| b.0),
        })
        .collect();
    let rejections = Some(config.rejections.topic.clone()).filter(|t| !t.is_empty());
    (hooks, rejections)
}

/// Loads and builds the console's config from `path`.
pub fn load(path: &Path, env: &Environment) -> Result<Settings, ConfigError> {
    let source = Source::File(path.to_path_buf());
    ConsoleConfig::load(&source, env)?.build(env, &source.name())
}

/// How long a browser session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
