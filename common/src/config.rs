//! Layered, strict configuration: the embedded defaults, then the TOML file, then
//! `HOOKGATE_<TABLE>__<KEY>` environment variables (tables only). Unknown keys are
//! errors. Reading reports every wrong key and value it can get past (see [`reading`]);
//! validation afterwards collects every semantic problem in [`Problems`], each with its
//! TOML path and a fix.

mod duration;
mod property;
mod reading;
mod secret;
mod size;

use std::fmt;
use std::path::PathBuf;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::DeserializeOwned;

pub use duration::ConfigDuration;
pub use property::PropertyValue;
pub use secret::{Environment, Match, Secret, SecretError, SecretRef, SecretSet};
pub use size::ByteSize;

/// Where a config file comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file on disk.
    File(PathBuf),
    /// TOML text with a name for messages (tests, embedded profiles).
    Text { name: String, toml: String },
}

impl Source {
    /// The name messages use for it.
    pub fn name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Text { name, .. } => name.clone(),
        }
    }
}

/// How to load one kind of config.
pub struct Layers<'a> {
    /// The embedded defaults, TOML.
    pub defaults: &'a str,
    /// Prefix of the variables that override the file: `HOOKGATE_` for the gateway
    /// (`HOOKGATE_<TABLE>__<KEY>`).
    pub env_prefix: &'a str,
    /// Prefixes under `env_prefix` that belong to another program sharing the
    /// environment (the consumer's `HOOKGATE_CONSUMER_`), ignored here.
    pub env_ignore: &'a [&'a str],
    /// The tables environment variables may set.
    pub env_tables: &'a [&'a str],
    /// What to tell a user whose config file cannot be read.
    pub missing_file_fix: &'a str,
}

impl Layers<'_> {
    /// Reads the layers and deserializes them, or reports every problem reading found.
    pub fn load<T: DeserializeOwned>(
        &self,
        source: &Source,
        env: &Environment,
    ) -> Result<T, ConfigError> {
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
                        self.missing_file_fix,
                    )
                })?;
                Toml::string(&text)
            }
            Source::Text { toml, .. } => Toml::string(toml),
        };
        let env_layer = EnvLayer::new(env, self).map_err(|(var, message)| {
            fail(
                &var,
                message,
                &format!(
                    "set only {}<TABLE>__<KEY> for the tables {}",
                    self.env_prefix,
                    self.env_tables.join(", ")
                ),
            )
        })?;
        let figment = Figment::new()
            .merge(Toml::string(self.defaults))
            .merge(file)
            .merge(env_layer);
        figment.extract::<T>().map_err(|e| ConfigError {
            source: source.name(),
            problems: reading::problems::<T>(&figment, e, self.env_prefix),
        })
    }
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

    /// Records a secret reference at `path` that cannot be used.
    pub fn secret(&mut self, path: impl Into<String>, e: SecretError) {
        let mut path = path.into();
        if let Some(key) = e.key {
            path = format!("{path}.{key}");
        }
        self.0.push(Problem {
            path,
            message: e.message,
            fix: e.fix,
        });
    }

    /// Records a problem at `path` if `duration` is zero; `example` is a duration to
    /// suggest, like `"10s"`.
    pub fn nonzero(&mut self, path: impl Into<String>, duration: ConfigDuration, example: &str) {
        if duration.get().is_zero() {
            self.push(
                path,
                "must be longer than zero",
                &format!("give a duration like \"{example}\""),
            );
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems, for an error.
    pub fn into_error(self, source: impl Into<String>) -> ConfigError {
        ConfigError {
            source: source.into(),
            problems: self.0,
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
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
        write!(
            f,
            "invalid configuration in {} ({n} problem{}):",
            self.source,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

const ENV_LAYER_NAME: &str = "environment variable";

fn env_var_name(prefix: &str, keys: &[&str]) -> String {
    let upper: Vec<String> = keys.iter().map(|k| k.to_uppercase()).collect();
    format!("{prefix}{}", upper.join("__"))
}

/// The environment layer: `HOOKGATE_SERVER__LISTEN=…` sets `server.listen`. Values are
/// read as TOML-like scalars (`8`, `true`, `"text"`).
struct EnvLayer {
    dict: Dict,
    prefix: String,
}

impl EnvLayer {
    fn new(env: &Environment, layers: &Layers<'_>) -> Result<EnvLayer, (String, String)> {
        let (prefix, tables) = (layers.env_prefix, layers.env_tables);
        let mut dict = Dict::new();
        let mut vars: Vec<(&str, &str)> = env
            .iter()
            .filter(|(k, _)| {
                k.starts_with(prefix)
                    && k.contains("__")
                    && !layers.env_ignore.iter().any(|other| k.starts_with(other))
            })
            .collect();
        vars.sort();
        for (name, value) in vars {
            let keys: Vec<String> = name[prefix.len()..]
                .split("__")
                .map(str::to_lowercase)
                .collect();
            if keys.len() < 2 || keys.iter().any(String::is_empty) {
                return Err((
                    name.to_string(),
                    format!("is not of the form {prefix}<TABLE>__<KEY>"),
                ));
            }
            if !tables.contains(&keys[0].as_str()) {
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
        Ok(EnvLayer {
            dict,
            prefix: prefix.to_string(),
        })
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
        let prefix = self.prefix.clone();
        Metadata::named(ENV_LAYER_NAME).interpolater(move |_, keys| env_var_name(&prefix, keys))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}
