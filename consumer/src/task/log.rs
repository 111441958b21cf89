//! `log`: writes one line to the consumer's log, secrets masked.

use hookgate_common::config::Problems;
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::{Deps, TaskError};
use crate::expression::{Context, Engine, Template};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub id: String,
    pub message: String,
    /// `debug`, `info` (default), `warn` or `error`.
    #[serde(default)]
    pub level: Level,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
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

    pub fn run(&self, ctx: &Context, deps: &Deps) -> Result<Json, TaskError> {
        let text = self
            .message
            .render(ctx)
            .map_err(|e| TaskError::permanent(e.to_string()))?;
        let text = deps.engine.mask(&text).into_owned();
        match self.level {
            Level::Debug => tracing::debug!(task = %self.id, "{text}"),
            Level::Info => tracing::info!(task = %self.id, "{text}"),
            Level::Warn => tracing::warn!(task = %self.id, "{text}"),
            Level::Error => tracing::error!(task = %self.id, "{text}"),
        }
        Ok(json!({ "message": text }))
    }
}
