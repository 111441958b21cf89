//! `kafka`: produces one record: a topic, an optional key and a value (a text template,
//! or a table whose string leaves are templates, sent as JSON), awaited until the broker
//! acknowledges it.

use std::time::Duration;

use hookgate_common::config::Problems;
use rdkafka::producer::FutureRecord;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use super::{Deps, Prepared, TaskError};
use hookgate_expression::{Context, Engine, JsonTemplate, Template};

/// How long a produce may wait for its acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTaskConfig {
    pub id: String,
    pub topic: String,
    pub key: Option<String>,
    pub value: Json,
    #[serde(default)]
    pub retry: super::RetryConfig,
}

#[derive(Debug)]
enum Value {
    Text(Template),
    Json(JsonTemplate),
}

#[derive(Debug)]
pub struct KafkaTask {
    id: String,
    retry: super::RetryConfig,
    topic: Template,
    key: Option<Template>,
    value: Value,
}

impl KafkaTaskConfig {
    pub fn build(&self, at: &str, engine: &Engine, p: &mut Problems) -> Option<KafkaTask> {
        let before = p.len();
        let mut problem = |e: hookgate_expression::ExpressionError| e.report(p, "fix the template");
        let topic = Template::compile(engine, &format!("{at}.topic"), &self.topic)
            .map_err(&mut problem)
            .ok();
        let key = match &self.key {
            Some(k) => Template::compile(engine, &format!("{at}.key"), k)
                .map_err(&mut problem)
                .ok(),
            None => None,
        };
        let value = match &self.value {
            Json::String(s) => Template::compile(engine, &format!("{at}.value"), s)
                .map(Value::Text)
                .map_err(&mut problem)
                .ok(),
            other => JsonTemplate::compile(engine, &format!("{at}.value"), other)
                .map(Value::Json)
                .map_err(&mut problem)
                .ok(),
        };
        self.retry.validate(&format!("{at}.retry"), p);
        if p.len() > before {
            return None;
        }
        Some(KafkaTask {
            id: self.id.clone(),
            retry: self.retry,
            topic: topic?,
            key,
            value: value?,
        })
    }
}

impl KafkaTask {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn retry(&self) -> super::RetryConfig {
        self.retry
    }

    pub fn prepare(&self, ctx: &Context) -> Result<Prepared, String> {
        let render = |t: &Template| t.render(ctx).map_err(|e| e.to_string());
        let topic = render(&self.topic)?;
        let key = self.key.as_ref().map(render).transpose()?;
        let value = match &self.value {
            Value::Text(t) => render(t)?.into_bytes(),
            Value::Json(t) => serde_json::to_vec(&t.render(ctx).map_err(|e| e.to_string())?)
                .expect("JSON values serialize"),
        };
        Ok(Prepared::Kafka { topic, key, value })
    }
}

/// Produces one record and waits for the broker's acknowledgement.
pub(super) async fn send(
    topic: &str,
    key: Option<&str>,
    value: &[u8],
    deps: &Deps,
) -> Result<Json, TaskError> {
    let mut record = FutureRecord::to(topic).payload(value);
    if let Some(k) = key {
        record = record.key(k.as_bytes());
    }
    match deps.producer.send(record, ACK_TIMEOUT).await {
        Ok(d) => Ok(json!({ "topic": topic, "partition": d.partition, "offset": d.offset })),
        Err((e, _)) => Err(TaskError::transient(format!(
            "producing to `{topic}` failed: {e}"
        ))),
    }
}
