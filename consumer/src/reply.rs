//! Answers for synchronous hooks: what a flow tells the caller that is waiting at the
//! gateway (a hook with `respond = { with = "flow" }`).
//!
//! A flow declares its answer in `[flows.response]`, with templates over `trigger`,
//! `vars` and `outputs`, and optionally its answer to a failed run in
//! `[flows.response.error]` (which also sees `vars.error`, the failure's message, and
//! `vars.failed_task`):
//!
//! ```toml
//! [flows.response]
//! status = "201"
//! headers = { "x-ticket" = "{{ outputs.ticket.body.result.number }}" }
//! body = { ticket = "{{ outputs.ticket.body.result.number }}", channel = "{{ outputs.channel.body.channel.id }}" }
//!
//! [flows.response.error]
//! status = "503"
//! body = "could not open the incident, try again"
//! ```
//!
//! Without them the answer is `200 {"id", "flow", "state": "SUCCESS", "outputs"}`, and a
//! failed run `502 {"id", "flow", "state": "FAILED", "task", "error"}`. A body that renders
//! to a string is sent as text (`text/plain; charset=utf-8`); any other value as JSON. A
//! `content-type` header in the templates wins. Replies ride in the run's execution
//! record (`reply`), so every secret value in them is masked like the rest of it.
//!
//! Which flow answers: the first flow in configuration order that declares
//! `[flows.response]` and whose conditions hold; failing that, the first flow that
//! runs at all. Two flows declaring `[flows.response]` for the same hook are refused at
//! load. When no flow runs, the consumer publishes a "no flow matched" record and the
//! caller gets `204`.

use std::collections::BTreeMap;

use hookgate_common::config::Problems;
use hookgate_expression::{Context, Engine, JsonTemplate, Template};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

/// Bytes of a reply's body at most: the gateway holds replies in memory while callers
/// poll for them.
pub const MAX_REPLY_BODY: usize = 256 * 1024;

/// `[flows.response]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseConfig {
    /// A template giving a status code (100 to 599); default 200.
    pub status: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A template (sent as text when it renders to a string) or a table (sent as JSON);
    /// default the run's outputs.
    pub body: Option<Json>,
    /// `[flows.response.error]`: the answer to a failed run.
    pub error: Option<AnswerConfig>,
}

/// One answer: status, headers and body, each a template.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerConfig {
    /// A template giving a status code (100 to 599).
    pub status: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A template (sent as text when it renders to a string) or a table (sent as JSON).
    pub body: Option<Json>,
}

/// A compiled `[flows.response]`.
#[derive(Debug, Clone)]
pub struct Response {
    success: Answer,
    error: Option<Answer>,
}

#[derive(Debug, Clone)]
struct Answer {
    status: Option<Template>,
    headers: Vec<(String, Template)>,
    body: Option<JsonTemplate>,
}

/// What the caller of a synchronous hook is answered.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl ResponseConfig {
    pub fn build(&self, at: &str, engine: &Engine, p: &mut Problems) -> Option<Response> {
        let before = p.len();
        let success = AnswerConfig {
            status: self.status.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
        }
        .build(at, engine, p);
        let error = self
            .error
            .as_ref()
            .map(|e| e.build(&format!("{at}.error"), engine, p));
        (p.len() == before).then_some(Response { success, error })
    }
}

impl AnswerConfig {
    fn build(&self, at: &str, engine: &Engine, p: &mut Problems) -> Answer {
        let mut template = |path: String, source: &str| {
            Template::compile(engine, &path, source)
                .map_err(|e| e.report(p, "fix the template"))
                .ok()
        };
        let status = self
            .status
            .as_deref()
            .and_then(|s| template(format!("{at}.status"), s));
        let headers = self
            .headers
            .iter()
            .filter_map(|(name, value)| {
                Some((
                    name.to_ascii_lowercase(),
                    template(format!("{at}.headers.{name}"), value)?,
                ))
            })
            .collect();
        for name in self.headers.keys() {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                p.push(
                    format!("{at}.headers"),
                    format!("`{name}` is not a header name"),
                    "use letters, digits and '-'",
                );
            }
        }
        let body = self.body.as_ref().and_then(|b| {
            JsonTemplate::compile(engine, &format!("{at}.body"), b)
                .map_err(|e| e.report(p, "fix the template"))
                .ok()
        });
        Answer {
            status,
            headers,
            body,
        }
    }
}

/// How a run ended, for its reply.
pub struct Outcome<'a> {
    pub event_id: &'a str,
    pub flow: &'a str,
    /// Each task's outputs so far, by task id.
    pub outputs: Json,
    /// The failure, for a failed run: (the failing task, if a task failed; the message).
    pub failure: Option<(Option<&'a str>, &'a str)>,
}

/// The reply to a run: the flow's declared answer, or the default one.
pub fn render(response: Option<&Response>, ctx: &Context, outcome: &Outcome<'_>) -> Reply {
    let declared = match outcome.failure {
        None => response.map(|r| &r.success),
        Some(_) => response.and_then(|r| r.error.as_ref()),
    };
    let reply = match declared {
        Some(answer) => {
            let mut ctx = ctx.clone();
            if let Some((task, error)) = outcome.failure {
                ctx.set_var("error", Json::from(error));
                ctx.set_var("failed_task", task.map_or(Json::Null, Json::from));
            }
            answer.render(&ctx, outcome)
        }
        None => Ok(default_reply(outcome)),
    };
    match reply {
        Ok(reply) if reply.body.len() <= MAX_REPLY_BODY => reply,
        Ok(reply) => failure_reply(
            outcome,
            &format!(
                "the flow's response body is {} bytes, more than {MAX_REPLY_BODY}",
                reply.body.len()
            ),
        ),
        Err(why) => failure_reply(outcome, &why),
    }
}

impl Answer {
    fn render(&self, ctx: &Context, outcome: &Outcome<'_>) -> Result<Reply, String> {
        let default = default_reply(outcome);
        let status = match &self.status {
            None => default.status,
            Some(t) => {
                let text = t.render(ctx).map_err(|e| e.to_string())?;
                text.trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|s| (100..=599).contains(s))
                    .ok_or_else(|| {
                        format!("response status `{}` is not a status code", text.trim())
                    })?
            }
        };
        let mut headers = BTreeMap::new();
        let body = match &self.body {
            None => {
                headers.extend(default.headers);
                default.body
            }
            Some(t) => match t.render(ctx).map_err(|e| e.to_string())? {
                Json::String(text) => {
                    headers.insert("content-type".into(), "text/plain; charset=utf-8".into());
                    text
                }
                value => {
                    headers.insert("content-type".into(), "application/json".into());
                    value.to_string()
                }
            },
        };
        for (name, t) in &self.headers {
            let value = t.render(ctx).map_err(|e| e.to_string())?;
            if http::HeaderValue::from_str(&value).is_err() {
                return Err(format!(
                    "response header `{name}` renders to an invalid value"
                ));
            }
            headers.insert(name.clone(), value);
        }
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}

fn json_reply(status: u16, body: Json) -> Reply {
    Reply {
        status,
        headers: BTreeMap::from([("content-type".into(), "application/json".into())]),
        body: body.to_string(),
    }
}

fn default_reply(outcome: &Outcome<'_>) -> Reply {
    match outcome.failure {
        None => json_reply(
            200,
            json!({
                "id": outcome.event_id,
                "flow": outcome.flow,
                "state": "SUCCESS",
                "outputs": outcome.outputs,
            }),
        ),
        Some((task, error)) => json_reply(
            502,
            json!({
                "id": outcome.event_id,
                "flow": outcome.flow,
                "state": "FAILED",
                "task": task,
                "error": error,
            }),
        ),
    }
}

/// The answer when the flow's own answer cannot be made.
fn failure_reply(outcome: &Outcome<'_>, why: &str) -> Reply {
    json_reply(
        502,
        json!({
            "id": outcome.event_id,
            "flow": outcome.flow,
            "state": if outcome.failure.is_some() { "FAILED" } else { "SUCCESS" },
            "error": format!("the flow's response could not be made: {why}"),
        }),
    )
}

/// The record of a synchronous event no flow ran for: its caller gets 204.
pub fn no_match_record(event: &hookgate_event::Event) -> Json {
    json!({
        "event": { "id": event.id, "source": event.source, "type": event.event_type },
        "state": "NO_MATCH",
        "reply": { "status": 204, "headers": {}, "body": "" },
    })
}

#[cfg(test)]
mod tests {
    use hookgate_expression::Secrets;

    use super::*;

    fn response(toml_text: &str) -> Response {
        let config: ResponseConfig = toml::from_str(toml_text).unwrap();
        let mut p = Problems::default();
        config
            .build(
                "flows[0].response",
                &Engine::new(Secrets::default()),
                &mut p,
            )
            .unwrap()
    }

    fn ctx() -> Context {
        Context::builder()
            .body(json!({"service": "checkout"}))
            .output(
                "ticket",
                json!({"status": 201, "body": {"result": {"number": "INC0012"}}}),
            )
            .build()
    }

    fn ok() -> Outcome<'static> {
        Outcome {
            event_id: "e-1",
            flow: "ops.war-room",
            outputs: json!({"ticket": {"status": 201}}),
            failure: None,
        }
    }

    #[test]
    fn the_default_answers_carry_the_outputs_or_the_failure() {
        let reply = render(None, &ctx(), &ok());
        assert_eq!(reply.status, 200);
        let body: Json = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["state"], "SUCCESS");
        assert_eq!(body["outputs"]["ticket"]["status"], 201);
        let failed = Outcome {
            failure: Some((Some("ticket"), "HTTP 500")),
            ..ok()
        };
        let reply = render(None, &ctx(), &failed);
        assert_eq!(reply.status, 502);
        let body: Json = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(
            (body["task"].as_str(), body["error"].as_str()),
            (Some("ticket"), Some("HTTP 500"))
        );
    }

    #[test]
    fn a_declared_answer_is_rendered_from_the_run() {
        let r = response(
            r#"
            status = "201"
            headers = { "X-Ticket" = "{{ outputs.ticket.body.result.number }}" }
            body = { ticket = "{{ outputs.ticket.body.result.number }}", service = "{{ trigger.body.service }}" }
            [error]
            status = "503"
            body = "{{ vars.failed_task }} failed: {{ vars.error }}"
            "#,
        );
        let reply = render(Some(&r), &ctx(), &ok());
        assert_eq!(reply.status, 201);
        assert_eq!(reply.headers["x-ticket"], "INC0012");
        assert_eq!(reply.headers["content-type"], "application/json");
        assert_eq!(
            serde_json::from_str::<Json>(&reply.body).unwrap(),
            json!({"ticket": "INC0012", "service": "checkout"})
        );
        let failed = Outcome {
            failure: Some((Some("ticket"), "HTTP 500")),
            ..ok()
        };
        let reply = render(Some(&r), &ctx(), &failed);
        assert_eq!(reply.status, 503);
        assert_eq!(reply.body, "ticket failed: HTTP 500");
        assert_eq!(reply.headers["content-type"], "text/plain; charset=utf-8");
    }

    #[test]
    fn an_answer_that_cannot_be_made_is_a_502_saying_why() {
        let r = response(r#"status = "{{ trigger.body.service }}""#);
        let reply = render(Some(&r), &ctx(), &ok());
        assert_eq!(reply.status, 502);
        assert!(reply.body.contains("not a status code"), "{}", reply.body);
        let r = response(r#"body = "{{ trigger.body.text }}""#);
        let big = Context::builder()
            .body(json!({"text": "x".repeat(MAX_REPLY_BODY + 1)}))
            .build();
        let reply = render(Some(&r), &big, &ok());
        assert_eq!(reply.status, 502);
        assert!(reply.body.contains("more than"), "{}", reply.body);
    }
}
