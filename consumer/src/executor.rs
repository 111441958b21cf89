//! Running one flow for one event: variables, conditions, then the tasks in order, each
//! retried with backoff as its `retry` says and its outputs made visible to the next.
//! Every run yields an [`Execution`] record (CREATED → RUNNING → SUCCESS | FAILED, or
//! CREATED → SKIPPED), masked of secrets, which the runtime publishes and logs: the run
//! log.

use std::time::{Instant, SystemTime};

use base64::Engine as _;
use hookgate_event::{Event, EventData};
use serde::Serialize;
use serde_json::{json, Value as Json};

use crate::flow::Flow;
use crate::task::{Deps, Task, TaskError};
use hookgate_common::telemetry::{self, KeyValue, SpanKind, TraceParent};
use hookgate_expression::Context;

/// Where the event was read from.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A flow run's state.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Created,
    Running,
    Success,
    Failed,
    Skipped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Success => "success",
            State::Failed => "failed",
            State::Skipped => "skipped",
        }
    }
}

/// The execution record of one flow run.
#[derive(Debug, Clone, Serialize)]
pub struct Execution {
    pub id: String,
    pub flow: String,
    pub namespace: String,
    /// The flow's [revision](crate::flow::Flow::revision) that ran.
    pub revision: String,
    pub event: EventRef,
    pub state: State,
    /// When the run began (RFC 3339).
    pub started: String,
    pub states: Vec<StateChange>,
    pub tasks: Vec<TaskRun>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
    /// Set when an operator asked for this run (`hookgate-consumer redrive`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redrive: Option<Redrive>,
    /// The answer for the caller of a synchronous hook, when this run is the one that
    /// answers it (see [`crate::reply`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<crate::reply::Reply>,
}

/// The triggering event.
#[derive(Debug, Clone, Serialize)]
pub struct EventRef {
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The sender's delivery id, when the hook reads one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliveryid: Option<String>,
    #[serde(flatten)]
    pub origin: Origin,
}

/// Why a run was asked for again, and which run it repeats.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Redrive {
    /// `dead-letter` or `event`: where the redriven event was taken from.
    pub origin: String,
    /// The execution id of the run being repeated, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub of: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StateChange {
    pub state: State,
    pub at: String,
}

/// One task's run.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRun {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub state: State,
    pub attempts: u32,
    pub duration_ms: u64,
    /// What the task sent (see [`Prepared::describe`](crate::task::Prepared::describe)); absent when it could not be
    /// rendered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<Json>,
    /// An HTTP task's last response status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The first bytes of an HTTP task's last response body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TaskRun {
    fn new(task: &Task, request: Option<Json>) -> TaskRun {
        TaskRun {
            id: task.id().to_string(),
            kind: task.kind(),
            state: State::Created,
            attempts: 0,
            duration_ms: 0,
            request,
            status: None,
            response: None,
            outputs: None,
            error: None,
        }
    }
}

fn now_text() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

impl Execution {
    fn change(&mut self, state: State) {
        self.state = state;
        self.states.push(StateChange {
            state,
            at: now_text(),
        });
    }

    /// The record as JSON, every secret value masked.
    pub fn to_json(&self, deps: &Deps) -> Json {
        let mut v = serde_json::to_value(self).expect("records serialize");
        deps.engine.mask_json(&mut v);
        v
    }
}

/// The template context of an event: `trigger.*`.
pub fn context(event: &Event, flow: &Flow, execution_id: &str) -> Context {
    let (body, headers, parameters) = match &event.data {
        // A schedule's tick: `trigger.body` is the tick (`scheduled`, `cron`, `timezone`).
        EventData::Json(data)
            if event.dataschema.as_deref() == Some(hookgate_event::SCHEDULE_SCHEMA) =>
        {
            (data.clone(), json!({}), json!({}))
        }
        EventData::Json(data) => (
            data.get("body").cloned().unwrap_or(Json::Null),
            data.get("headers").cloned().unwrap_or_else(|| json!({})),
            data.get("query").cloned().unwrap_or_else(|| json!({})),
        ),
        EventData::Binary { body, headers } => {
            let is_json = event
                .datacontenttype
                .as_deref()
                .is_some_and(|ct| ct.contains("json"));
            let body = if is_json {
                serde_json::from_slice(body).unwrap_or(Json::Null)
            } else {
                match std::str::from_utf8(body) {
                    Ok(text) => Json::String(text.to_string()),
                    Err(_) => Json::String(base64::engine::general_purpose::STANDARD.encode(body)),
                }
            };
            let mut h = serde_json::Map::new();
            for (name, values) in headers.iter() {
                h.insert(
                    name.to_string(),
                    Json::Array(values.iter().map(|v| Json::String(v.to_string())).collect()),
                );
            }
            let query = event
                .extension("httpquery")
                .map(|q| {
                    let mut m = serde_json::Map::new();
                    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
                        let entry = m
                            .entry(k.into_owned())
                            .or_insert_with(|| Json::Array(Vec::new()));
                        if let Json::Array(a) = entry {
                            a.push(Json::String(v.into_owned()));
                        }
                    }
                    Json::Object(m)
                })
                .unwrap_or_else(|| json!({}));
            (body, Json::Object(h), query)
        }
    };
    let mut builder = Context::builder();
    // A poller's event: `trigger.status` and `trigger.uri` too.
    if let EventData::Json(data) = &event.data {
        for field in ["status", "uri"] {
            if let Some(value) = data.get(field) {
                builder = builder.trigger_field(field, value.clone());
            }
        }
    }
    builder
        .body(body)
        .headers(headers)
        .parameters(parameters)
        .hook(event.extension("hook").unwrap_or(""))
        .id(&event.id)
        .event_type(&event.event_type)
        .source(&event.source)
        .time(event.time.as_deref().unwrap_or(""))
        .deliveryid(event.extension("deliveryid"))
        .flow(&flow.id, &flow.namespace)
        .execution(execution_id)
        .build()
}

/// Variables, then conditions: whether the run goes on (`Ok(false)`: skipped).
/// Variables come first, so conditions may use them; but a condition that is false skips
/// the run even when a variable could not be rendered (it read a field this event does
/// not have).
pub(crate) fn admit(flow: &Flow, ctx: &mut Context) -> Result<bool, String> {
    let vars = flow.vars.render_into(ctx);
    let mut verdict: Result<bool, String> = Ok(true);
    for c in flow.conditions() {
        match c.eval(ctx, SystemTime::now()) {
            Ok(true) => {}
            Ok(false) => {
                verdict = Ok(false);
                break;
            }
            Err(e) => {
                verdict = Err(format!("condition: {e}"));
                break;
            }
        }
    }
    match (verdict, vars) {
        (Ok(true), Err(e)) => Err(format!("variables: {e}")),
        (verdict, _) => verdict,
    }
}

/// Runs `flow` for `event`; `redrive` says when an operator asked for it.
pub async fn execute(
    flow: &Flow,
    event: &Event,
    origin: &Origin,
    redrive: Option<Redrive>,
    deps: &Deps,
) -> Execution {
    run(flow, event, origin, redrive, deps, false).await
}

/// [`execute`], and when the flow runs (its conditions hold), the reply for a
/// synchronous hook's caller in [`Execution::reply`].
pub async fn execute_replying(
    flow: &Flow,
    event: &Event,
    origin: &Origin,
    deps: &Deps,
) -> Execution {
    run(flow, event, origin, None, deps, true).await
}

async fn run(
    flow: &Flow,
    event: &Event,
    origin: &Origin,
    redrive: Option<Redrive>,
    deps: &Deps,
    respond: bool,
) -> Execution {
    let started = Instant::now();
    let id = uuid::Uuid::now_v7().hyphenated().to_string();
    let mut exec = Execution {
        id: id.clone(),
        flow: flow.id.clone(),
        namespace: flow.namespace.clone(),
        revision: flow.revision.clone(),
        event: EventRef {
            id: event.id.clone(),
            source: event.source.clone(),
            event_type: event.event_type.clone(),
            deliveryid: event.extension("deliveryid").map(str::to_string),
            origin: origin.clone(),
        },
        state: State::Created,
        started: now_text(),
        states: Vec::new(),
        tasks: Vec::new(),
        error: None,
        duration_ms: 0,
        redrive,
        reply: None,
    };
    exec.change(State::Created);
    // The flow's span continues the event's trace (the gateway's request span), or
    // starts one when traces are exported and the event carries none (a poll, a tick).
    let parent = event.extension("traceparent").and_then(TraceParent::parse);
    let span = match parent {
        Some(p) => Some(p.child()),
        None => telemetry::sample_ratio().map(TraceParent::root),
    };
    let span_start = SystemTime::now();
    let mut ctx = context(event, flow, &id);
    match admit(flow, &mut ctx) {
        Err(e) => {
            exec.error = Some(deps.engine.mask(&e).into_owned());
            exec.change(State::Failed);
        }
        Ok(false) => exec.change(State::Skipped),
        Ok(true) => {
            exec.change(State::Running);
            let mut failed = None;
            for task in &flow.tasks {
                let task_span = span.map(|s| s.child());
                let task_start = SystemTime::now();
                let run = run_task(&flow.qualified_id(), task, &ctx, task_span, deps).await;
                if let (Some(task_span), Some(flow_span)) = (task_span, span) {
                    record_task(&run, task_span, flow_span, task_start);
                }
                if let Some(outputs) = &run.outputs {
                    ctx.set_output(task.id(), outputs.clone());
                }
                let state = run.state;
                if state == State::Failed {
                    failed = Some(format!(
                        "task `{}` failed after {} attempt{}: {}",
                        run.id,
                        run.attempts,
                        if run.attempts == 1 { "" } else { "s" },
                        run.error.as_deref().unwrap_or("")
                    ));
                }
                exec.tasks.push(run);
                if state == State::Failed {
                    break;
                }
            }
            match failed {
                Some(e) => {
                    exec.error = Some(deps.engine.mask(&e).into_owned());
                    exec.change(State::Failed);
                }
                None => exec.change(State::Success),
            }
        }
    }
    if respond && exec.state != State::Skipped {
        let failed_task = exec
            .tasks
            .iter()
            .rfind(|t| t.state == State::Failed)
            .map(|t| t.id.as_str());
        let outputs: serde_json::Map<String, Json> = exec
            .tasks
            .iter()
            .filter_map(|t| Some((t.id.clone(), t.outputs.clone()?)))
            .collect();
        let qualified = flow.qualified_id();
        let outcome = crate::reply::Outcome {
            event_id: &event.id,
            flow: &qualified,
            outputs: Json::Object(outputs),
            failure: (exec.state == State::Failed)
                .then(|| (failed_task, exec.error.as_deref().unwrap_or_default())),
        };
        exec.reply = Some(crate::reply::render(flow.response.as_ref(), &ctx, &outcome));
    }
    exec.duration_ms = started.elapsed().as_millis() as u64;
    crate::metrics::flow_finished(&flow.qualified_id(), exec.state.as_str(), started.elapsed());
    if let Some(span) = span {
        telemetry::record(telemetry::Span {
            scope: "hookgate-consumer",
            name: "hookgate.flow",
            context: span,
            parent: parent.map(|p| p.span_id),
            remote_parent: parent.is_some(),
            kind: SpanKind::Consumer,
            start: span_start,
            end: SystemTime::now(),
            attributes: vec![
                KeyValue::new("hookgate.flow", flow.qualified_id()),
                KeyValue::new("hookgate.execution_id", exec.id.clone()),
                KeyValue::new("hookgate.event_id", exec.event.id.clone()),
                KeyValue::new("hookgate.state", exec.state.as_str()),
            ],
            error: exec.error.clone().filter(|_| exec.state == State::Failed),
        });
    }
    exec
}

/// A task's span, under its flow's: a client span for an HTTP call (whose
/// `traceparent` named it), internal otherwise.
fn record_task(run: &TaskRun, span: TraceParent, flow: TraceParent, start: SystemTime) {
    let mut attributes = vec![
        KeyValue::new("hookgate.task", run.id.clone()),
        KeyValue::new("hookgate.task_type", run.kind),
        KeyValue::new("hookgate.state", run.state.as_str()),
        KeyValue::new("hookgate.attempts", i64::from(run.attempts)),
    ];
    if let Some(status) = run.status {
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
    telemetry::record(telemetry::Span {
        scope: "hookgate-consumer",
        name: "hookgate.task",
        context: span,
        parent: Some(flow.span_id),
        remote_parent: false,
        kind: if run.kind == "http" {
            SpanKind::Client
        } else {
            SpanKind::Internal
        },
        start,
        end: SystemTime::now(),
        attributes,
        error: run.error.clone().filter(|_| run.state == State::Failed),
    });
}

/// One task with its retries: rendered once, sent up to its attempts. An HTTP call
/// carries the task's span (`trace`, in the event's trace) as `traceparent`, unless the
/// task sets that header itself.
async fn run_task(
    flow: &str,
    task: &Task,
    ctx: &Context,
    trace: Option<TraceParent>,
    deps: &Deps,
) -> TaskRun {
    let retry = task.retry();
    let started = Instant::now();
    let prepared = match task.prepare(ctx, &deps.engine) {
        Ok(crate::task::Prepared::Http(mut req)) => {
            if let Some(trace) = trace {
                if !req
                    .headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("traceparent"))
                {
                    req.headers.push(("traceparent".into(), trace.header()));
                }
            }
            crate::task::Prepared::Http(req)
        }
        Ok(p) => p,
        Err(e) => {
            let mut run = TaskRun::new(task, None);
            run.state = State::Failed;
            run.attempts = 1;
            run.error = Some(deps.engine.mask(&e.message).into_owned());
            return run;
        }
    };
    let mut run = TaskRun::new(task, Some(prepared.describe()));
    let mut attempts = 0;
    let result: Result<Json, TaskError> = loop {
        attempts += 1;
        let result = task.send(&prepared, deps).await;
        match result {
            Err(e)
                if e.retryable
                    && attempts < retry.max_attempts
                    && started.elapsed() + retry.backoff(attempts + 1)
                        <= retry.max_elapsed.get() =>
            {
                crate::metrics::task_retry(flow, task.id());
                tracing::debug!(task = task.id(), attempt = attempts, error = %deps.engine.mask(&e.message), "retrying");
                tokio::time::sleep(retry.backoff(attempts + 1)).await;
            }
            other => break other,
        }
    };
    run.attempts = attempts;
    run.duration_ms = started.elapsed().as_millis() as u64;
    let outputs = match result {
        Ok(outputs) => {
            run.state = State::Success;
            Some(outputs)
        }
        Err(e) => {
            run.state = State::Failed;
            run.error = Some(deps.engine.mask(&e.message).into_owned());
            e.outputs
        }
    };
    if let (Task::Http(_), Some(out)) = (task, &outputs) {
        run.status = out
            .get("status")
            .and_then(Json::as_u64)
            .and_then(|s| u16::try_from(s).ok());
        run.response = out.get("body").map(|body| match body {
            Json::String(text) => crate::task::excerpt(text.as_bytes()),
            other => crate::task::excerpt(other.to_string().as_bytes()),
        });
    }
    run.outputs = outputs;
    run
}
