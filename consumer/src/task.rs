//! Tasks: the steps of a flow. One file per kind, each with the same verbs: `build` from
//! config (compiling every template once), `prepare` against a context (rendering what
//! the task will do, which the run log and a dry run show), and `send`, one attempt at
//! doing it, returning the outputs the following tasks see as `outputs.<id>`.

mod http;
mod kafka;
mod log;

use std::time::Duration;

use hookgate_common::config::{ConfigDuration, Problems};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use hookgate_expression::{Context, Engine};

pub use http::{HttpConfig, HttpTask};
pub use kafka::{KafkaTask, KafkaTaskConfig};
pub use log::{LogConfig, LogTask};

/// A task as configured: `type = "http" | "kafka" | "log"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskConfig {
    /// An HTTP request through the SSRF-safe client.
    Http(Box<HttpConfig>),
    /// A record produced to a Kafka topic.
    Kafka(KafkaTaskConfig),
    /// A log line.
    Log(LogConfig),
}

/// A built task.
#[derive(Debug)]
pub enum Task {
    Http(Box<HttpTask>),
    Kafka(KafkaTask),
    Log(LogTask),
}

/// How a task's failures are retried: exponential backoff, bounded in attempts and in
/// total time.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all, the first included; 1 disables retries.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Wait before the first retry; doubled each time.
    #[serde(default = "default_backoff")]
    pub backoff: ConfigDuration,
    /// The longest wait between attempts.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: ConfigDuration,
    /// No retry starts after this long since the first attempt.
    #[serde(default = "default_max_elapsed")]
    pub max_elapsed: ConfigDuration,
}

fn default_attempts() -> u32 {
    3
}
fn default_backoff() -> ConfigDuration {
    ConfigDuration::from_millis(500)
}
fn default_max_backoff() -> ConfigDuration {
    ConfigDuration::from_secs(10)
}
fn default_max_elapsed() -> ConfigDuration {
    ConfigDuration::from_secs(60)
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: default_attempts(),
            backoff: default_backoff(),
            max_backoff: default_max_backoff(),
            max_elapsed: default_max_elapsed(),
        }
    }
}

impl RetryConfig {
    /// No retries.
    pub const NONE: RetryConfig = RetryConfig {
        max_attempts: 1,
        backoff: ConfigDuration::from_millis(0),
        max_backoff: ConfigDuration::from_millis(0),
        max_elapsed: ConfigDuration::from_millis(0),
    };

    pub(crate) fn validate(&self, at: &str, p: &mut Problems) {
        if self.max_attempts == 0 || self.max_attempts > 100 {
            p.push(
                format!("{at}.max_attempts"),
                "must be between 1 and 100",
                "choose a number in that range",
            );
        }
        if self.max_elapsed.get() > Duration::from_secs(3600) {
            p.push(
                format!("{at}.max_elapsed"),
                "must be at most 1h",
                "lower it",
            );
        }
    }

    /// The wait before attempt `attempt` (2 = the first retry).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(2));
        self.backoff
            .get()
            .saturating_mul(factor)
            .min(self.max_backoff.get())
    }
}

/// Why a task failed, whether another attempt may succeed, and what it produced anyway
/// (an HTTP task's unexpected response, for the execution record).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskError {
    pub message: String,
    pub retryable: bool,
    pub outputs: Option<Json>,
}

impl TaskError {
    pub fn permanent(message: impl Into<String>) -> Self {
        TaskError {
            message: message.into(),
            retryable: false,
            outputs: None,
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        TaskError {
            message: message.into(),
            retryable: true,
            outputs: None,
        }
    }
}

/// What tasks use to act.
pub struct Deps {
    pub http: crate::outbound::Client,
    pub producer: rdkafka::producer::FutureProducer,
    pub engine: Engine,
}

/// A task's action rendered for one event, not yet done: what each attempt sends.
#[derive(Debug, Clone)]
pub enum Prepared {
    Http(crate::outbound::Request),
    Kafka {
        topic: String,
        key: Option<String>,
        value: Vec<u8>,
    },
    Log {
        message: String,
    },
}

/// Bytes of a body kept in a run log: of a task's request, and of an HTTP response.
pub const EXCERPT_BYTES: usize = 4096;

impl Prepared {
    /// The run log's view of the action: credential headers and query parameters
    /// redacted, bodies cut at [`EXCERPT_BYTES`]. Secret values are masked with the
    /// rest of the record.
    pub fn describe(&self) -> Json {
        match self {
            Prepared::Http(req) => {
                let mut headers = serde_json::Map::new();
                for (name, value) in &req.headers {
                    let value = if hookgate_event::REDACTED_HEADERS.contains(&name.as_str()) {
                        hookgate_event::REDACTED
                    } else {
                        value.as_str()
                    };
                    let entry = headers
                        .entry(name.clone())
                        .or_insert_with(|| Json::Array(Vec::new()));
                    if let Json::Array(values) = entry {
                        values.push(value.into());
                    }
                }
                serde_json::json!({
                    "method": req.method.as_str(),
                    "url": redact_url(&req.url),
                    "headers": headers,
                    "body": excerpt(&req.body),
                    "bodysize": req.body.len(),
                })
            }
            Prepared::Kafka { topic, key, value } => serde_json::json!({
                "topic": topic,
                "key": key,
                "value": excerpt(value),
                "valuesize": value.len(),
            }),
            Prepared::Log { message } => serde_json::json!({ "message": message }),
        }
    }
}

/// The first [`EXCERPT_BYTES`] of `bytes` as text (a character cut at the end is left
/// out; bytes that are not UTF-8 show as U+FFFD).
pub fn excerpt(bytes: &[u8]) -> String {
    let mut end = bytes.len().min(EXCERPT_BYTES);
    if end < bytes.len() {
        // Back up to a character boundary: continuation bytes are 0b10xx_xxxx.
        while end > 0 && bytes[end] & 0xC0 == 0x80 {
            end -= 1;
        }
    }
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// `url` with the values of credential query parameters redacted.
fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_string();
    };
    let secret = |name: &str| {
        hookgate_event::REDACTED_QUERY
            .iter()
            .any(|q| q.eq_ignore_ascii_case(name))
    };
    if !parsed.query_pairs().any(|(k, _)| secret(&k)) {
        return url.to_string();
    }
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let v = if secret(&k) {
                hookgate_event::REDACTED.to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.into()
}

/// Task ids are referenced in templates as `outputs.<id>`.
fn valid_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

impl TaskConfig {
    pub fn id(&self) -> &str {
        match self {
            TaskConfig::Http(c) => &c.id,
            TaskConfig::Kafka(c) => &c.id,
            TaskConfig::Log(c) => &c.id,
        }
    }

    pub fn build(&self, at: &str, engine: &Engine, p: &mut Problems) -> Option<Task> {
        if !valid_id(self.id()) {
            p.push(
                format!("{at}.id"),
                format!("`{}` is not a task id", self.id()),
                "use lowercase letters, digits and '_', starting with a letter or '_', so templates can say outputs.<id>",
            );
        }
        match self {
            TaskConfig::Http(c) => c.build(at, engine, p).map(|t| Task::Http(Box::new(t))),
            TaskConfig::Kafka(c) => c.build(at, engine, p).map(Task::Kafka),
            TaskConfig::Log(c) => c.build(at, engine, p).map(Task::Log),
        }
    }
}

impl Task {
    pub fn id(&self) -> &str {
        match self {
            Task::Http(t) => t.id(),
            Task::Kafka(t) => t.id(),
            Task::Log(t) => t.id(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Task::Http(_) => "http",
            Task::Kafka(_) => "kafka",
            Task::Log(_) => "log",
        }
    }

    pub fn retry(&self) -> RetryConfig {
        match self {
            Task::Http(t) => t.retry(),
            Task::Kafka(t) => t.retry(),
            Task::Log(_) => RetryConfig::NONE,
        }
    }

    /// Renders the action for `ctx`; an error is a template that failed, which no retry
    /// mends.
    pub fn prepare(&self, ctx: &Context, engine: &Engine) -> Result<Prepared, TaskError> {
        match self {
            Task::Http(t) => t.prepare(ctx),
            Task::Kafka(t) => t.prepare(ctx),
            Task::Log(t) => t.prepare(ctx, engine),
        }
        .map_err(TaskError::permanent)
    }

    /// One attempt at the prepared action; the outputs are what `outputs.<id>` shows.
    pub async fn send(&self, prepared: &Prepared, deps: &Deps) -> Result<Json, TaskError> {
        match (self, prepared) {
            (Task::Http(t), Prepared::Http(req)) => t.send(req.clone(), deps).await,
            (Task::Kafka(_), Prepared::Kafka { topic, key, value }) => {
                kafka::send(topic, key.as_deref(), value, deps).await
            }
            (Task::Log(t), Prepared::Log { message }) => Ok(t.send(message)),
            _ => unreachable!("a task sends what it prepared"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_can_be_referenced() {
        for ok in ["signin", "_x", "tag_2"] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in ["", "2fa", "Tag", "with-dash", "a.b"] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn the_run_log_view_redacts_credentials_and_cuts_long_bodies() {
        let body = format!("{}é", "x".repeat(EXCERPT_BYTES - 1));
        let req = crate::outbound::Request::new(
            ::http::Method::POST,
            "https://api.example/v1?token=t0k&page=2",
        )
        .header("authorization", "Bearer abc")
        .header("x-trace", "1")
        .body(body.clone());
        let shown = Prepared::Http(req).describe();
        assert_eq!(
            shown["url"],
            "https://api.example/v1?token=%5Bredacted%5D&page=2"
        );
        assert_eq!(
            shown["headers"]["authorization"],
            serde_json::json!(["[redacted]"])
        );
        assert_eq!(shown["headers"]["x-trace"], serde_json::json!(["1"]));
        // The two-byte character that straddles the cut is left out whole.
        assert_eq!(shown["body"].as_str().unwrap(), &body[..EXCERPT_BYTES - 1]);
        assert_eq!(shown["bodysize"], body.len());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let r = RetryConfig {
            max_attempts: 10,
            backoff: ConfigDuration::from_millis(100),
            max_backoff: ConfigDuration::from_millis(700),
            max_elapsed: ConfigDuration::from_secs(10),
        };
        assert_eq!(r.backoff(2), Duration::from_millis(100));
        assert_eq!(r.backoff(3), Duration::from_millis(200));
        assert_eq!(r.backoff(4), Duration::from_millis(400));
        assert_eq!(r.backoff(5), Duration::from_millis(700));
        assert_eq!(r.backoff(60), Duration::from_millis(700));
    }
}
