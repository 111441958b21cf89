//! Hook topics: verified at startup and by `hookgate check`, created when
//! `kafka.create_topics` is on, and watched while the gateway runs so that `/readyz`
//! turns red when one disappears or the brokers stop answering.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use hookgate_common::logging::List;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;

use crate::health::Health;
use crate::hook::Hook;
use crate::shutdown::Shutdown;
use crate::sink::kafka::KafkaSettings;
use crate::sink::kafka::{base_config, LogContext};

/// Names each hook whose topic is missing, and the rejections topic if it is, with the fix.
pub fn missing_message(hooks: &[Hook], rejections: Option<&str>, missing: &[String]) -> String {
    let mut lines: Vec<String> = hooks
        .iter()
        .filter(|h| missing.contains(&h.topic))
        .map(|h| {
            format!(
                "hooks[{}].topic: topic `{}` of hook `{}` does not exist on the cluster",
                h.index, h.topic, h.id
            )
        })
        .collect();
    let mut fix = "create the topic, or set kafka.create_topics = true".to_string();
    if let Some(topic) = rejections.filter(|t| missing.iter().any(|m| m == t)) {
        lines.push(format!(
            "rejections.topic: topic `{topic}` for the records of refused requests does not exist on the cluster"
        ));
        fix.push_str(", or set rejections.topic = \"\" to make no rejection records");
    }
    format!("{} (fix: {fix})", lines.join("; "))
}

/// How often the watcher asks the brokers for metadata.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(5);

/// A metadata and admin client. Cloning is cheap.
#[derive(Clone)]
pub struct Topics {
    admin: Arc<AdminClient<LogContext>>,
    timeout: Duration,
}

impl Topics {
    pub fn new(settings: &KafkaSettings) -> anyhow::Result<Topics> {
        let mut config = base_config(&settings.brokers, &settings.properties);
        // Asking about a topic must never create it.
        config.set("allow.auto.create.topics", "false");
        Ok(Topics {
            admin: Arc::new(config.create_with_context(LogContext)?),
            timeout: settings.connect_timeout,
        })
    }

    /// The topics of `wanted` that the cluster does not have. Blocks up to the connect
    /// timeout; call from a blocking context.
    pub fn missing_blocking(&self, wanted: &[String]) -> Result<Vec<String>, String> {
        // Metadata for all topics: a request naming a topic could auto-create it.
        let metadata = self
            .admin
            .inner()
            .fetch_metadata(None, self.timeout)
            .map_err(|e| e.to_string())?;
        let present: BTreeSet<&str> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| t.name())
            .collect();
        let wanted: BTreeSet<&String> = wanted.iter().collect();
        Ok(wanted
            .into_iter()
            .filter(|t| !present.contains(t.as_str()))
            .cloned()
            .collect())
    }

    pub async fn missing(&self, wanted: &[String]) -> Result<Vec<String>, String> {
        let this = self.clone();
        let wanted = wanted.to_vec();
        tokio::task::spawn_blocking(move || this.missing_blocking(&wanted))
            .await
            .map_err(|e| e.to_string())?
    }

    /// Creates `topics`; a topic that appeared meanwhile is not an error.
    pub async fn create(
        &self,
        topics: &[String],
        partitions: i32,
        replication: i32,
    ) -> Result<(), String> {
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication)))
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(self.timeout));
        let results = self
            .admin
            .create_topics(&new, &opts)
            .await
            .map_err(|e| e.to_string())?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(format!("creating topic `{topic}`: {code}")),
            }
        }
        Ok(())
    }

    /// Makes sure every topic exists: creates the missing ones when `create` is on,
    /// otherwise fails naming them.
    pub async fn ensure(
        &self,
        hooks: &[Hook],
        rejections: Option<&str>,
        wanted: &[String],
        settings: &KafkaSettings,
    ) -> anyhow::Result<()> {
        let missing = self.missing(wanted).await.map_err(|e| {
            anyhow::anyhow!("kafka.brokers ({}) did not answer: {e}", settings.brokers)
        })?;
        if missing.is_empty() {
            return Ok(());
        }
        if !settings.create_topics {
            anyhow::bail!("{}", missing_message(hooks, rejections, &missing));
        }
        self.create(&missing, settings.partitions, settings.replication_factor)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // Creation is asynchronous on the brokers; wait until metadata shows the topics.
        let deadline = tokio::time::Instant::now() + settings.connect_timeout;
        loop {
            match self.missing(wanted).await {
                Ok(m) if m.is_empty() => {
                    tracing::info!(topics = %List(&missing), "created topics");
                    return Ok(());
                }
                Ok(m) if tokio::time::Instant::now() >= deadline => {
                    anyhow::bail!(
                        "created topics did not appear in metadata in time: {}",
                        m.join(", ")
                    )
                }
                Err(e) if tokio::time::Instant::now() >= deadline => anyhow::bail!("{e}"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Checks the topics every [`WATCH_INTERVAL`] and records the result in `health`.
    pub async fn watch(self, wanted: Vec<String>, health: Arc<Health>, shutdown: Shutdown) {
        loop {
            let result = self.missing(&wanted).await;
            if let Ok(missing) = &result {
                if !missing.is_empty() {
                    tracing::warn!(topics = %List(missing), "hook topics are missing");
                }
            }
            health.set_metadata(result);
            tokio::select! {
                _ = tokio::time::sleep(WATCH_INTERVAL) => {}
                _ = shutdown.wait() => return,
            }
        }
    }
}

/// The distinct topics of the configured hooks.
pub fn hook_topics(hooks: &[Hook]) -> Vec<String> {
    let mut topics: Vec<String> = hooks.iter().map(|h| h.topic.clone()).collect();
    topics.sort();
    topics.dedup();
    topics
}
