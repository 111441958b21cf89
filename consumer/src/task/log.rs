//! `log`: writes one line to the consumer's log, secrets masked.

use hookgate_common::config::Problems;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use super::Prepared;
use hookgate_expression::{Context, Engine, Template};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub id: String,
    pub message: String,
    /// `debug`, `info` (default), `warn` or `error`.
    #[serde(default)]
    pub level: Level,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

#[derive(Debug)]
pub struct LogTask {
    id: String,
    message: Template,
    level: Level,
}

impl LogConfig {
    pub fn build(&self, at: &str, engine: &Engine, p: &mut Problems) -> Option<LogTask> {
        let message = Template::compile(engine, &format!("{at}.message"), &self.message)
            .map_err(|e| e.report(p, "fix the template"))
            .ok()?;
        Some(LogTask {
            id: self.id.clone(),
            message,
            level: self.level,
        })
    }
}

impl LogTask {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The line, secrets masked.
    pub fn prepare(&self, ctx: &Context, engine: &Engine) -> Result<Prepared, String> {
        let text = self.message.render(ctx).map_err(|e| e.to_string())?;
        Ok(Prepared::Log {
            message: engine.mask(&text).into_owned(),
        })
    }

    pub fn send(&self, text: &str) -> Json {
        match self.level {
            Level::Debug => tracing::debug!(task = %self.id, "{text}"),
            Level::Info => tracing::info!(task = %self.id, "{text}"),
            Level::Warn => tracing::warn!(task = %self.id, "{text}"),
            Level::Error => tracing::error!(task = %self.id, "{text}"),
        }
        json!({ "message": text })
    }
}
