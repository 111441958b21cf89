//! `[cluster]`: state the gateway's replicas share on Redis (replay guard, idempotency
//! keys, per-hook rate limits). Without `redis` each replica keeps its own.

use std::path::PathBuf;
use std::time::Duration;

use hookgate_common::config::{ConfigDuration, Environment, Problems, SecretRef};
use serde::Deserialize;

/// The longest a Redis call may take before it counts as failed.
const MAX_TIMEOUT: Duration = Duration::from_secs(5);

/// `[cluster]` as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://host:6379/0`, or `rediss://` for TLS; `""` (the default): every replica
    /// keeps its own state.
    pub redis: String,
    /// The ACL user, when Redis has users.
    #[serde(default)]
    pub username: Option<String>,
    /// The password (`AUTH`), as a secret reference; never in the URL.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// How long one call may take; past it the call counts as failed and the feature
    /// falls back (docs/operations.md, "Running several replicas").
    pub timeout: ConfigDuration,
    /// Put before every key, so that several gateways (or other programs) can share a
    /// Redis.
    pub prefix: String,
    /// With `rediss://`: a PEM file of the CA that signed Redis's certificate, instead of
    /// the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// With `rediss://`: a PEM client certificate and its key, for a Redis that asks for
    /// one (`tls-auth-clients`).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// `[cluster]` once checked.
#[derive(Clone)]
pub struct ClusterSettings {
    pub info: redis::ConnectionInfo,
    /// The address, for logs: scheme, host and port, never a password.
    pub address: String,
    pub timeout: Duration,
    pub prefix: String,
    /// The CA and client certificate files' PEM, read at load.
    pub ca: Option<Vec<u8>>,
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("address", &self.address)
            .field("timeout", &self.timeout)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl ClusterConfig {
    /// The settings, `None` when no Redis is configured (or it is wrong: problems go
    /// to `p`).
    pub(super) fn build(&self, env: &Environment, p: &mut Problems) -> Option<ClusterSettings> {
        if self.redis.is_empty() {
            return None;
        }
        let before = p.len();
        let timeout = self.timeout.get();
        if timeout.is_zero() || timeout > MAX_TIMEOUT {
            p.push(
                "cluster.timeout",
                format!("{} is out of range", self.timeout),
                "give a timeout above 0 and at most 5s, like \"50ms\"",
            );
        }
        if self.prefix.is_empty()
            || self.prefix.len() > 64
            || self.prefix.contains(char::is_whitespace)
        {
            p.push(
                "cluster.prefix",
                format!("`{}` cannot prefix keys", self.prefix),
                "use 1 to 64 characters without spaces, like \"hookgate\"",
            );
        }
        let url = match redis::parse_redis_url(&self.redis) {
            Some(url) if matches!(url.scheme(), "redis" | "rediss") && url.has_host() => url,
            _ => {
                p.push(
                    "cluster.redis",
                    "not a Redis URL",
                    "write redis://HOST:6379/0, or rediss://HOST:6380/0 for TLS",
                );
                return None;
            }
        };
        if url.password().is_some() {
            // Never echo the URL: it holds the password.
            p.push(
                "cluster.redis",
                "the URL holds a password",
                "remove it from the URL and set cluster.password = { env = \"REDIS_PASSWORD\" }",
            );
            return None;
        }
        let info = match redis::IntoConnectionInfo::into_connection_info(url.clone()) {
            Ok(info) => info,
            Err(e) => {
                p.push("cluster.redis", e.to_string(), "write redis://HOST:6379/0");
                return None;
            }
        };
        let mut redis_info = info.redis_settings().clone();
        if let Some(user) = &self.username {
            redis_info = redis_info.set_username(user);
        }
        if let Some(secret) = &self.password {
            match secret.resolve(env) {
                Ok(s) => match std::str::from_utf8(s.expose()) {
                    Ok(text) => redis_info = redis_info.set_password(text),
                    Err(_) => p.push(
                        "cluster.password",
                        "the password is not UTF-8 text",
                        "store the password as text",
                    ),
                },
                Err(e) => p.secret("cluster.password", e),
            }
        }
        let read = |key: &str, path: &Option<PathBuf>, p: &mut Problems| {
            let path = path.as_ref()?;
            match std::fs::read(path) {
                Ok(pem) if pem.starts_with(b"-----BEGIN") => Some(pem),
                Ok(_) => {
                    p.push(
                        format!("cluster.{key}"),
                        format!("`{}` is not a PEM file", path.display()),
                        "give a PEM file (it starts with -----BEGIN)",
                    );
                    None
                }
                Err(e) => {
                    p.push(
                        format!("cluster.{key}"),
                        format!("cannot read `{}`: {e}", path.display()),
                        "check the path and that hookgate may read it",
                    );
                    None
                }
            }
        };
        let ca = read("ca_file", &self.ca_file, p);
        let cert = read("cert_file", &self.cert_file, p);
        let key = read("key_file", &self.key_file, p);
        let tls_files =
            self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some();
        if tls_files && url.scheme() != "rediss" {
            p.push(
                "cluster.ca_file",
                "certificate files are for TLS, and the URL is redis://",
                "write rediss://HOST:PORT/DB to reach Redis over TLS, or remove the files",
            );
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            p.push(
                "cluster.cert_file",
                "a client certificate needs its key, and a key its certificate",
                "set both cert_file and key_file, or neither",
            );
        }
        if p.len() > before {
            return None;
        }
        let address = format!(
            "{}://{}:{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port().unwrap_or(6379)
        );
        Some(ClusterSettings {
            info: info.set_redis_settings(redis_info),
            address,
            timeout,
            prefix: self.prefix.clone(),
            ca,
            client: cert.zip(key),
        })
    }
}
