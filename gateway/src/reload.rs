//! Hot reload, on SIGHUP or `POST /reload` on the admin listener: the config is read and
//! validated again and, if it is usable, its hooks, secrets, limits, trusted proxies and
//! TLS certificate replace the running ones without dropping a connection.
//!
//! - Hooks whose limit settings did not change keep their limiter state.
//! - Hooks whose replay settings (window and capacity) did not change keep the deliveries
//!   they remember, and the ones in flight: a retried delivery is still a duplicate after
//!   a secret rotation.
//! - Changes that need a restart are refused with the reason: the listen addresses, the
//!   Kafka settings, `[rejections]`, `[cluster]`, `[telemetry]`, and the other listener settings (timeouts,
//!   connection limits, turning TLS on or off).
//! - An invalid config is refused with its problems; the old one keeps serving.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;

use crate::config::{Config, Settings};
use crate::pipeline::{Gateway, Live};
use crate::server::TlsSlot;
use crate::topics::Topics;
use hookgate_common::config::{ConfigError, Environment, SecretSet, Source};

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    #[error("these changes need a restart: {}", .0.join("; "))]
    RestartNeeded(Vec<String>),
    #[error("{0}")]
    Apply(String),
    #[error("the config was not loaded from a file, so there is nothing to reload")]
    NoSource,
}

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub hooks: usize,
    /// Hooks whose limiter state was carried over.
    pub kept_limits: usize,
    /// Hooks whose remembered deliveries were carried over.
    pub kept_replay: usize,
}

/// Reloads the gateway it was made for.
pub struct Reloader {
    source: Option<Source>,
    env: Environment,
    current: Mutex<Config>,
    gateway: Arc<Gateway>,
    tls: Option<TlsSlot>,
    reload_token: Arc<ArcSwapOption<SecretSet>>,
    /// One reload at a time.
    running: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(
        source: Option<Source>,
        env: Environment,
        current: Config,
        gateway: Arc<Gateway>,
        tls: Option<TlsSlot>,
        reload_token: Arc<ArcSwapOption<SecretSet>>,
    ) -> Reloader {
        Reloader {
            source,
            env,
            current: Mutex::new(current),
            gateway,
            tls,
            reload_token,
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Reads the config again and applies it, or says why not.
    pub async fn reload(&self) -> Result<Report, ReloadError> {
        let _one = self.running.lock().await;
        let result = self.try_reload().await;
        match &result {
            Ok(r) => {
                crate::metrics::reload("ok");
                tracing::info!(
                    hooks = r.hooks,
                    kept_limits = r.kept_limits,
                    kept_replay = r.kept_replay,
                    "configuration reloaded"
                );
            }
            Err(e) => {
                crate::metrics::reload("rejected");
                tracing::warn!(reason = %e, "configuration reload refused; the running config stays");
            }
        }
        result
    }

    async fn try_reload(&self) -> Result<Report, ReloadError> {
        let source = self.source.as_ref().ok_or(ReloadError::NoSource)?;
        let next = Config::load(source, &self.env)?;
        let restart = {
            let current = self.current.lock().expect("reload lock");
            needs_restart(&current, &next)
        };
        if !restart.is_empty() {
            return Err(ReloadError::RestartNeeded(restart));
        }
        let settings: Settings = next.build(&self.env, &source_name(source))?;
        if self.gateway.sink().is_kafka() {
            let topics =
                Topics::new(&settings.kafka).map_err(|e| ReloadError::Apply(e.to_string()))?;
            let wanted = crate::topics::hook_topics(&settings.hooks);
            topics
                .ensure(&settings.hooks, None, &wanted, &settings.kafka)
                .await
                .map_err(|e| ReloadError::Apply(e.to_string()))?;
        }
        let old = self.gateway.live();
        let mut hooks = settings.hooks;
        let (mut kept_limits, mut kept_replay) = (0, 0);
        for hook in &mut hooks {
            if let Some(prev) = old.router.hooks().find(|h| h.id == hook.id) {
                if prev.limits.same_settings(&hook.limits) {
                    hook.limits = prev.limits.clone();
                    kept_limits += 1;
                }
                if hook.auth.keep_replay(&prev.auth) {
                    kept_replay += 1;
                }
                if let (Some(next), Some(old)) = (&mut hook.idempotency, &prev.idempotency) {
                    next.keep(old);
                }
            }
        }
        let report = Report {
            hooks: hooks.len(),
            kept_limits,
            kept_replay,
        };
        if let (Some(slot), Some(tls)) = (&self.tls, &settings.server.tls) {
            let config = crate::tls::load(tls, settings.server.http2)
                .map_err(|e| ReloadError::Apply(format!("server.tls: {e}")))?;
            slot.store(config);
        }
        self.reload_token.store(
            settings
                .admin
                .reload_token
                .as_ref()
                .and_then(|r| r.resolve(&self.env).ok())
                .map(|s| Arc::new(SecretSet::new(&[s]))),
        );
        self.gateway
            .replace(Live::new(hooks, settings.trusted_proxies));
        *self.current.lock().expect("reload lock") = next;
        Ok(report)
    }
}

fn source_name(source: &Source) -> String {
    match source {
        Source::File(p) => p.display().to_string(),
        Source::Text { name, .. } => name.clone(),
    }
}

/// The differences between two configs that a running gateway cannot take on.
pub fn needs_restart(current: &Config, next: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if current.server.listen != next.server.listen {
        out.push(format!(
            "server.listen changed from {} to {}",
            current.server.listen, next.server.listen
        ));
    }
    if current.admin.listen != next.admin.listen {
        out.push(format!(
            "admin.listen changed from {} to {}",
            current.admin.listen, next.admin.listen
        ));
    }
    if current.rejections != next.rejections {
        out.push("[rejections] changed".to_string());
    }
    if current.cluster != next.cluster {
        out.push("[cluster] changed".to_string());
    }
    if current.telemetry != next.telemetry {
        out.push("[telemetry] changed".to_string());
    }
    if current.kafka.brokers != next.kafka.brokers {
        out.push("kafka.brokers changed".to_string());
    } else if current.kafka != next.kafka {
        out.push("kafka settings changed".to_string());
    }
    if current.server.tls.is_some() != next.server.tls.is_some() {
        out.push("server.tls was turned on or off".to_string());
    }
    // Everything else in [server] shapes the listener itself.
    let mut a = current.server.clone();
    let mut b = next.server.clone();
    for s in [&mut a, &mut b] {
        s.listen = String::new();
        s.trusted_proxies = Vec::new();
        s.tls = None;
    }
    if a != b {
        out.push("listener settings in [server] changed (timeouts, limits, http2)".to_string());
    }
    out
}
