//! Dry runs: what a flow would do for an event, with nothing sent (`hookgate-consumer
//! dry-run`, and the console's "try this flow"). The conditions are evaluated and every
//! task's request rendered as a run would render it, secrets masked.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use hookgate_event::{Event, EventData, Fields};
use serde_json::{json, Value as Json};

use crate::config::KafkaSettings;
use crate::executor;
use crate::flow::Flow;
use hookgate_expression::Engine;

/// What a run of `flow` for `event` would do, with nothing sent: whether the
/// conditions admit it, the variables, and each task's rendered request. A task's
/// outputs are unknown without sending it, so a later task's reference to them renders
/// as `⟨outputs.<id>.…⟩`. Secrets are masked.
pub fn report(flow: &Flow, event: &Event, engine: &Engine) -> Json {
    let mut ctx = executor::context(event, flow, "dry-run");
    let admitted = executor::admit(flow, &mut ctx);
    let mut tasks = Vec::new();
    if admitted == Ok(true) {
        for task in &flow.tasks {
            let rendered = task.prepare(&ctx, engine);
            tasks.push(match rendered {
                Ok(p) => {
                    let mut request = p.describe();
                    unmark_stand_ins(&mut request);
                    json!({ "id": task.id(), "type": task.kind(), "request": request })
                }
                Err(e) => json!({ "id": task.id(), "type": task.kind(), "error": e.message }),
            });
            ctx.set_unsent_output(task.id());
        }
    }
    let (runs, reason) = match &admitted {
        Ok(true) => (true, None),
        Ok(false) => (false, Some("a condition is false".to_string())),
        Err(e) => (false, Some(e.clone())),
    };
    let mut out = json!({
        "flow": flow.qualified_id(),
        "revision": flow.revision,
        "event": { "id": event.id, "source": event.source, "type": event.event_type },
        "runs": runs,
        "reason": reason,
        "vars": ctx.vars_json(),
        "tasks": tasks,
    });
    engine.mask_json(&mut out);
    out
}

/// Shows the stand-ins for unknown outputs as written where a URL or a form encoded
/// their brackets.
fn unmark_stand_ins(value: &mut Json) {
    match value {
        Json::String(s) if s.contains("%E2%9F%A") => {
            *s = s.replace("%E2%9F%A8", "⟨").replace("%E2%9F%A9", "⟩");
        }
        Json::Array(items) => items.iter_mut().for_each(unmark_stand_ins),
        Json::Object(map) => map.values_mut().for_each(unmark_stand_ins),
        _ => {}
    }
}

/// Reads an event from a JSON file: a structured CloudEvent, or the form `hookgate tail`
/// prints for a binary-mode one (`data_base64` and `httpheaders`).
pub fn event_file(path: &Path) -> anyhow::Result<Event> {
    let text =
        std::fs::read(path).with_context(|| format!("--event: cannot read {}", path.display()))?;
    event_json(&text).with_context(|| format!("--event: {} is not an event", path.display()))
}

/// Parses an event from its JSON form (see [`event_file`]).
pub fn event_json(text: &[u8]) -> anyhow::Result<Event> {
    let mut value: Json = serde_json::from_slice(text).context("not JSON")?;
    let binary = value
        .as_object_mut()
        .and_then(|o| Some((o.remove("data_base64")?, o.remove("httpheaders"))));
    let headers = [("content-type", &b"application/cloudevents+json"[..])];
    let value_bytes = serde_json::to_vec(&value).expect("JSON serializes");
    let mut event = hookgate_event::decode(hookgate_event::Record {
        headers: &headers,
        value: Some(&value_bytes),
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some((data, http_headers)) = binary {
        let Some(data) = data.as_str() else {
            bail!("data_base64 is not a string");
        };
        let body = base64::engine::general_purpose::STANDARD
            .decode(data)
            .context("data_base64 is not base64")?;
        let mut headers = Fields::new();
        if let Some(Json::Object(map)) = http_headers {
            for (name, values) in map {
                for v in values.as_array().into_iter().flatten() {
                    headers.push(name.clone(), v.as_str().unwrap_or_default().to_string());
                }
            }
        }
        event.data = EventData::Binary { body, headers };
    }
    Ok(event)
}

/// Finds the event with `id` on the topics the consumer reads, within `since`.
pub async fn event_by_id(
    kafka: &KafkaSettings,
    id: &str,
    since: Duration,
) -> anyhow::Result<Event> {
    let topics = crate::subscription::current_topics(kafka).await?;
    let wanted = id.to_string();
    let found = crate::scan::scan(kafka, &topics, since, move |m| {
        hookgate_event::decode_message(m).is_ok_and(|e| e.id == wanted)
    })
    .await?;
    match found.records.last() {
        Some(m) => hookgate_event::decode_message(m).map_err(|e| anyhow::anyhow!("{e}")),
        None => bail!(
            "--event-id: no event with id `{id}` on {} in the last {} (fix: widen --since, or check the id)",
            topics.join(", "),
            humantime::format_duration(since)
        ),
    }
}
