//! The values a flow's conditions and templates see while one event runs through it.
//!
//! ```text
//! trigger    body, headers (name → [values]), parameters (query name → [values]),
//!            hook, id, type, source, time, deliveryid
//! vars       the flow's variables, rendered in order
//! outputs    <task_id> → what the task produced; for HTTP tasks {status, headers, body}
//! flow       id, namespace
//! execution  id
//! response   a poller's condition only: status, headers (name → [values]), body (text)
//! ```
//!
//! The executor builds one [`Context`] per event with [`Context::builder`], renders the
//! flow's [`Vars`](super::Vars) into it, and adds each task's output as the task ends, so
//! that later tasks can read `outputs.<task_id>`.

use std::collections::BTreeMap;

use minijinja::Value;
use serde_json::{Map, Value as Json};

/// The template context of one flow execution.
#[derive(Debug, Clone)]
pub struct Context {
    trigger: Value,
    flow: Value,
    execution: Value,
    vars: BTreeMap<String, Value>,
    outputs: BTreeMap<String, Value>,
    /// A poller's response; absent in flows.
    response: Option<Value>,
    /// The whole context as one value, rebuilt on every change. Changes happen a few
    /// times per execution, renders many times; each render then shares this value.
    root: Value,
}

impl Context {
    pub fn builder() -> ContextBuilder {
        ContextBuilder::default()
    }

    /// The context as templates see it.
    pub fn value(&self) -> &Value {
        &self.root
    }

    /// Sets `vars.<name>`.
    pub fn set_var(&mut self, name: &str, value: Json) {
        self.vars
            .insert(name.to_owned(), Value::from_serialize(&value));
        self.rebuild();
    }

    /// Sets `outputs.<task_id>`; for an HTTP task, `{status, headers, body}`.
    pub fn set_output(&mut self, task_id: &str, output: Json) {
        self.outputs
            .insert(task_id.to_owned(), Value::from_serialize(&output));
        self.rebuild();
    }

    /// The variables rendered so far, as JSON.
    pub fn vars_json(&self) -> Json {
        serde_json::to_value(&self.vars).unwrap_or(Json::Null)
    }

    /// Sets `outputs.<task_id>` to a stand-in for a task a dry run did not send: any
    /// field of it renders as its own path, `⟨outputs.<task_id>.body.id⟩`.
    pub fn set_unsent_output(&mut self, task_id: &str) {
        self.outputs.insert(
            task_id.to_owned(),
            Value::from_object(Unsent(format!("outputs.{task_id}"))),
        );
        self.rebuild();
    }

    fn rebuild(&mut self) {
        let mut root = vec![
            ("trigger", self.trigger.clone()),
            ("vars", Value::from(self.vars.clone())),
            ("outputs", Value::from(self.outputs.clone())),
            ("flow", self.flow.clone()),
            ("execution", self.execution.clone()),
        ];
        if let Some(response) = &self.response {
            root.push(("response", response.clone()));
        }
        self.root = Value::from_iter(root);
    }
}

/// The output of a task that was not sent: every field is another stand-in, and each
/// renders (and serializes) as `⟨path⟩`.
#[derive(Debug)]
struct Unsent(String);

impl minijinja::value::Object for Unsent {
    fn repr(self: &std::sync::Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Plain
    }

    fn get_value(self: &std::sync::Arc<Self>, key: &Value) -> Option<Value> {
        let path = match key.as_str() {
            Some(name) => format!("{}.{name}", self.0),
            None => format!("{}[{key}]", self.0),
        };
        Some(Value::from_object(Unsent(path)))
    }

    fn render(self: &std::sync::Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "⟨{}⟩", self.0)
    }
}

/// Builds a [`Context`] from JSON values.
///
/// `trigger.body` defaults to `null`, `trigger.headers` and `trigger.parameters` to `{}`;
/// the other fields are absent until set.
#[derive(Debug, Clone, Default)]
pub struct ContextBuilder {
    trigger: Map<String, Json>,
    flow: Map<String, Json>,
    execution: Map<String, Json>,
    vars: Vec<(String, Json)>,
    outputs: Vec<(String, Json)>,
    response: Option<Json>,
}

impl ContextBuilder {
    /// `trigger.body`: the event's body (its JSON, form fields, text...).
    pub fn body(self, body: Json) -> Self {
        self.trigger_field("body", body)
    }

    /// `trigger.headers`: lowercase header name → array of values.
    pub fn headers(self, headers: Json) -> Self {
        self.trigger_field("headers", headers)
    }

    /// `trigger.parameters`: query parameter name → array of values.
    pub fn parameters(self, parameters: Json) -> Self {
        self.trigger_field("parameters", parameters)
    }

    /// `trigger.hook`: the hook (or poller) id.
    pub fn hook(self, hook: &str) -> Self {
        self.trigger_field("hook", hook)
    }

    /// `trigger.id`: the event id.
    pub fn id(self, id: &str) -> Self {
        self.trigger_field("id", id)
    }

    /// `trigger.type`: the event type.
    pub fn event_type(self, event_type: &str) -> Self {
        self.trigger_field("type", event_type)
    }

    /// `trigger.source`: `/hooks/{id}` or `/pollers/{id}`.
    pub fn source(self, source: &str) -> Self {
        self.trigger_field("source", source)
    }

    /// `trigger.time`: the receive time, RFC 3339.
    pub fn time(self, time: &str) -> Self {
        self.trigger_field("time", time)
    }

    /// `trigger.deliveryid`: the provider's delivery id; `null` when it sent none.
    pub fn deliveryid(self, deliveryid: Option<&str>) -> Self {
        self.trigger_field("deliveryid", deliveryid.map_or(Json::Null, Json::from))
    }

    /// Any other `trigger.<name>` (a poller's `uri` or `status`, for instance).
    pub fn trigger_field(mut self, name: &str, value: impl Into<Json>) -> Self {
        self.trigger.insert(name.to_owned(), value.into());
        self
    }

    /// `flow.id` and `flow.namespace`.
    pub fn flow(mut self, id: &str, namespace: &str) -> Self {
        self.flow.insert("id".to_owned(), id.into());
        self.flow.insert("namespace".to_owned(), namespace.into());
        self
    }

    /// `execution.id`.
    pub fn execution(mut self, id: &str) -> Self {
        self.execution.insert("id".to_owned(), id.into());
        self
    }

    /// A `vars.<name>` known up front (rendered variables go through
    /// [`Vars::render_into`](super::Vars::render_into)).
    pub fn var(mut self, name: &str, value: Json) -> Self {
        self.vars.push((name.to_owned(), value));
        self
    }

    /// An `outputs.<task_id>` known up front (a resumed execution, a test).
    pub fn output(mut self, task_id: &str, output: Json) -> Self {
        self.outputs.push((task_id.to_owned(), output));
        self
    }

    /// `response`: what a poller's request got back, `{status, headers, body}`.
    pub fn response(mut self, response: Json) -> Self {
        self.response = Some(response);
        self
    }

    pub fn build(mut self) -> Context {
        self.trigger.entry("body").or_insert(Json::Null);
        for field in ["headers", "parameters"] {
            self.trigger
                .entry(field)
                .or_insert_with(|| Json::Object(Map::new()));
        }
        let to_values = |pairs: Vec<(String, Json)>| -> BTreeMap<String, Value> {
            pairs
                .into_iter()
                .map(|(k, v)| (k, Value::from_serialize(&v)))
                .collect()
        };
        let mut ctx = Context {
            trigger: Value::from_serialize(&self.trigger),
            flow: Value::from_serialize(&self.flow),
            execution: Value::from_serialize(&self.execution),
            vars: to_values(self.vars),
            outputs: to_values(self.outputs),
            response: self.response.map(|r| Value::from_serialize(&r)),
            root: Value::UNDEFINED,
        };
        ctx.rebuild();
        ctx
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{Engine, Secrets, Template};
    use super::*;

    fn render(ctx: &Context, source: &str) -> String {
        let engine = Engine::new(Secrets::default());
        Template::compile(&engine, "t", source)
            .unwrap()
            .render(ctx)
            .unwrap()
    }

    #[test]
    fn an_unsent_output_renders_as_the_path_that_was_read() {
        let mut ctx = Context::builder().build();
        ctx.set_unsent_output("ticket");
        assert_eq!(
            render(&ctx, "name={{ outputs.ticket.body.result.number | lower }}"),
            "name=⟨outputs.ticket.body.result.number⟩"
        );
        assert_eq!(
            render(&ctx, "{{ outputs.ticket.body['items'][0].id }}"),
            "⟨outputs.ticket.body.items[0].id⟩"
        );
    }

    #[test]
    fn exposes_every_documented_field() {
        let ctx = Context::builder()
            .body(json!({"action": "opened"}))
            .headers(json!({"x-github-event": ["pull_request"]}))
            .parameters(json!({"page": ["2"]}))
            .hook("github")
            .id("0190-abc")
            .event_type("pull_request")
            .source("/hooks/github")
            .time("2024-04-11T17:00:00Z")
            .deliveryid(Some("d-1"))
            .flow("notify", "company.team")
            .execution("exec-1")
            .var("channel", json!("#alerts"))
            .output(
                "signin",
                json!({"status": 200, "headers": {}, "body": {"token": "t"}}),
            )
            .build();
        let out = render(
            &ctx,
            "{{ trigger.body.action }} {{ trigger.headers['x-github-event'][0] }} \
             {{ trigger.parameters.page[0] }} {{ trigger.hook }} {{ trigger.id }} \
             {{ trigger.type }} {{ trigger.source }} {{ trigger.time }} {{ trigger.deliveryid }} \
             {{ flow.id }} {{ flow.namespace }} {{ execution.id }} {{ vars.channel }} \
             {{ outputs.signin.status }} {{ outputs.signin.body.token }}",
        );
        assert_eq!(
            out,
            "opened pull_request 2 github 0190-abc pull_request /hooks/github \
             2024-04-11T17:00:00Z d-1 notify company.team exec-1 #alerts 200 t"
        );
    }

    #[test]
    fn defaults_make_body_headers_and_parameters_safe_to_test() {
        let ctx = Context::builder().build();
        assert_eq!(
            render(&ctx, "{{ trigger.body is none }} {{ trigger.headers | length }} {{ trigger.parameters | length }}"),
            "true 0 0"
        );
    }

    #[test]
    fn outputs_added_later_are_visible() {
        let mut ctx = Context::builder().build();
        ctx.set_output(
            "signin",
            json!({"status": 200, "headers": {}, "body": {"token": "abc"}}),
        );
        ctx.set_var("workbook", json!(6345964502u64));
        assert_eq!(
            render(&ctx, "{{ outputs.signin.body.token }}/{{ vars.workbook }}"),
            "abc/6345964502"
        );
    }
}
