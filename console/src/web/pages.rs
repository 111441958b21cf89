//! The routes: each page, and the same data as JSON under `/api`.

use std::sync::Arc;

use base64::Engine as _;
use http::{header, HeaderValue, Method, StatusCode};
use serde_json::{json, Map, Value as Json};

use super::auth::{cleared_cookie, csrf_ok, session_cookie, Caller};
use super::{error, html, json, see_other, Body, Call};
use crate::index::{millis, DeliveryFilter, ExecutionFilter, PAGE};
use crate::Console;

const CSS: &str = include_str!("static/console.css");

/// What a page shows: a template and the data (the API's answer).
struct View {
    template: &'static str,
    data: Json,
}

type Outcome = Result<View, (StatusCode, String)>;

fn bad(message: impl Into<String>) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, message.into())
}

fn not_found(what: &str) -> (StatusCode, String) {
    (
        StatusCode::NOT_FOUND,
        format!("no {what} with that id in the index"),
    )
}

fn internal(e: anyhow::Error) -> (StatusCode, String) {
    tracing::warn!(error = %e, "console request failed");
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// Answers one call.
pub async fn route(console: &Arc<Console>, call: Call) -> http::Response<Body> {
    let api = call.api();
    match (&call.method, call.path.as_str()) {
        (&Method::GET, "/static/console.css") => {
            let mut r = html(StatusCode::OK, CSS.to_string());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            );
            return r;
        }
        (&Method::GET, "/login") => return login_page(console, StatusCode::OK, None),
        // For probes: says only that the console answers.
        (&Method::GET, "/healthz") => return html(StatusCode::OK, "ok\n".to_string()),
        (&Method::POST, "/login") => return login(console, &call).await,
        _ => {}
    }
    let Some(caller) = call.caller.clone() else {
        return if api {
            error(
                true,
                StatusCode::UNAUTHORIZED,
                "log in: send Authorization: Bearer <token>, or basic credentials",
            )
        } else {
            see_other("/login")
        };
    };
    if call.method == Method::POST {
        if let Caller::Session { csrf } = &caller {
            let form = call.form();
            let presented = form
                .iter()
                .find(|(k, _)| k == "csrf")
                .map(|(_, v)| v.as_str());
            if !csrf_ok(csrf, presented) {
                return error(
                    api,
                    StatusCode::FORBIDDEN,
                    "missing or wrong CSRF token: send the form from a console page",
                );
            }
        }
    }
    if call.method == Method::POST && call.path == "/logout" {
        console.gate.close(call.cookie.as_deref());
        let mut r = see_other("/login");
        if let Ok(v) = HeaderValue::from_str(&cleared_cookie()) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        return r;
    }
    let page = call
        .path
        .strip_prefix("/api")
        .unwrap_or(&call.path)
        .to_string();
    let outcome = dispatch(console, &call, &page).await;
    match outcome {
        Ok(view) if api => json(StatusCode::OK, &view.data),
        Ok(view) => {
            let csrf = match &caller {
                Caller::Session { csrf } => csrf.clone(),
                Caller::Header => String::new(),
            };
            render(console, view, &csrf)
        }
        Err((status, message)) => error(api, status, &message),
    }
}

async fn dispatch(console: &Arc<Console>, call: &Call, page: &str) -> Outcome {
    let segments: Vec<&str> = page.trim_matches('/').split('/').collect();
    let blocking = |f: Box<dyn FnOnce(&Console) -> Outcome + Send>| {
        let console = console.clone();
        async move {
            tokio::task::spawn_blocking(move || f(&console))
                .await
                .map_err(|e| internal(anyhow::anyhow!("{e}")))?
        }
    };
    let query = call.query_pairs();
    match (&call.method, segments.as_slice()) {
        (&Method::GET, [""]) if !call.api() => Ok(View {
            template: "redirect",
            data: json!("/hooks"),
        }),
        (&Method::GET, ["hooks"]) => blocking(Box::new(hooks)).await,
        (&Method::GET, ["status"]) => {
            blocking(Box::new(|c| {
                let mut s = c.reader.status().map_err(internal)?;
                s["indexed"] = c
                    .progress
                    .indexed
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .into();
                Ok(View {
                    template: "status",
                    data: s,
                })
            }))
            .await
        }
        (&Method::GET, ["deliveries"]) => {
            let filter: DeliveryFilter = from_pairs(&query)?;
            blocking(Box::new(move |c| deliveries(c, filter))).await
        }
        (&Method::GET, ["deliveries", seq]) => {
            let seq = number(seq)?;
            blocking(Box::new(move |c| delivery(c, seq))).await
        }
        (&Method::GET, ["executions"]) => {
            let filter: ExecutionFilter = from_pairs(&query)?;
            blocking(Box::new(move |c| executions(c, filter))).await
        }
        (&Method::GET, ["executions", id]) => {
            let id = id.to_string();
            blocking(Box::new(move |c| execution(c, &id))).await
        }
        (&Method::GET, ["dead-letters"]) => {
            let flow = pair(&query, "flow");
            let before = pair(&query, "before").map(|b| number(&b)).transpose()?;
            blocking(Box::new(move |c| {
                let rows = c
                    .reader
                    .dead_letters(flow.as_deref(), before)
                    .map_err(internal)?;
                let next = next_before(&rows);
                Ok(View {
                    template: "dead_letters.html",
                    data: json!({ "flow": flow, "rows": rows, "next_before": next }),
                })
            }))
            .await
        }
        (&Method::GET, ["dead-letters", seq]) => {
            let seq = number(seq)?;
            blocking(Box::new(move |c| {
                let row = c.reader.dead_letter(seq).map_err(internal)?;
                let mut row = row.ok_or_else(|| not_found("dead letter"))?;
                row["body"] = body_view(&row["event"]);
                Ok(View {
                    template: "dead_letter.html",
                    data: row,
                })
            }))
            .await
        }
        (&Method::POST, ["dead-letters", "redrive"]) => {
            let seqs = redrive_selection(call)?;
            let results = crate::actions::redrive(console, &seqs).await;
            Ok(View {
                template: "redriven.html",
                data: json!({ "results": results }),
            })
        }
        (&Method::GET, ["pollers"]) => {
            blocking(Box::new(|c| {
                let rows = c.reader.pollers().map_err(internal)?;
                let configured: Vec<Json> = c
                    .settings
                    .consumer
                    .pollers
                    .iter()
                    .map(|p| json!({ "id": p.id, "topic": p.topic }))
                    .collect();
                Ok(View {
                    template: "pollers.html",
                    data: json!({ "rows": rows, "configured": configured }),
                })
            }))
            .await
        }
        (&Method::GET, ["dry-run"]) => {
            let delivery = pair(&query, "delivery")
                .ok_or_else(|| bad("name the captured event: ?delivery=<seq>"))
                .and_then(|d| number(&d))?;
            let flow = pair(&query, "flow");
            blocking(Box::new(move |c| dry_run(c, delivery, flow.as_deref()))).await
        }
        _ => Err((
            StatusCode::NOT_FOUND,
            format!("no page {} {}", call.method, call.path),
        )),
    }
}

fn pair(query: &[(String, String)], name: &str) -> Option<String> {
    query
        .iter()
        .find(|(k, v)| k == name && !v.trim().is_empty())
        .map(|(_, v)| v.trim().to_string())
}

fn number(text: &str) -> Result<i64, (StatusCode, String)> {
    text.parse()
        .map_err(|_| bad(format!("`{text}` is not a row number")))
}

/// A filter from query pairs (empty values left out).
fn from_pairs<T: serde::de::DeserializeOwned>(
    pairs: &[(String, String)],
) -> Result<T, (StatusCode, String)> {
    let mut map = Map::new();
    for (k, v) in pairs {
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        let value = match v.parse::<i64>() {
            Ok(n) if k == "status" || k == "before" => Json::from(n),
            _ => Json::from(v),
        };
        map.insert(k.clone(), value);
    }
    serde_json::from_value(Json::Object(map)).map_err(|e| bad(format!("filter: {e}")))
}

fn next_before(rows: &[Json]) -> Option<i64> {
    (rows.len() as i64 == PAGE)
        .then(|| rows.last().and_then(|r| r["seq"].as_i64()))
        .flatten()
}

fn hooks(c: &Console) -> Outcome {
    let now = millis(std::time::SystemTime::now());
    let counts = c.reader.hook_counts(now - 3_600_000).map_err(internal)?;
    let mut rows: Vec<Json> = c
        .settings
        .hooks
        .iter()
        .map(|h| {
            let mut v = serde_json::to_value(h).expect("hook view serializes");
            v["configured"] = true.into();
            v
        })
        .collect();
    for (hook, accepted, reason, n) in counts {
        let i = match rows.iter().position(|r| r["id"] == hook.as_str()) {
            Some(i) => i,
            None => {
                rows.push(json!({ "id": hook, "configured": false }));
                rows.len() - 1
            }
        };
        let row = &mut rows[i];
        let key = if accepted { "accepted" } else { "rejected" };
        row[key] = (row[key].as_i64().unwrap_or(0) + n).into();
        if !accepted {
            if !row["reasons"].is_array() {
                row["reasons"] = json!([]);
            }
            row["reasons"]
                .as_array_mut()
                .expect("array")
                .push(json!({ "reason": reason, "count": n }));
        }
    }
    for row in &mut rows {
        for key in ["accepted", "rejected"] {
            let n = row[key].as_i64().unwrap_or(0);
            row[key] = n.into();
            row[format!("{key}_per_minute")] = format!("{:.2}", n as f64 / 60.0).into();
        }
    }
    Ok(View {
        template: "hooks.html",
        data: json!({ "window": "1h", "hooks": rows }),
    })
}

fn deliveries(c: &Console, filter: DeliveryFilter) -> Outcome {
    let now = millis(std::time::SystemTime::now());
    let rows = c
        .reader
        .deliveries(&filter, now)
        .map_err(|e| bad(e.to_string()))?;
    let next = next_before(&rows);
    let hooks: Vec<&str> = c.settings.hooks.iter().map(|h| h.id.as_str()).collect();
    Ok(View {
        template: "deliveries.html",
        data: json!({ "filter": filter, "rows": rows, "next_before": next, "hooks": hooks }),
    })
}

fn delivery(c: &Console, seq: i64) -> Outcome {
    let mut row = c
        .reader
        .delivery(seq)
        .map_err(internal)?
        .ok_or_else(|| not_found("delivery"))?;
    let event = row["event"].clone();
    row["attributes"] = attributes(&event);
    let data = &event["data"];
    row["headers"] = fields(if data.is_object() {
        &data["headers"]
    } else {
        &event["httpheaders"]
    });
    row["query"] = fields(&data["query"]);
    row["body"] = if row["accepted"] == true {
        body_view(&event)
    } else {
        rejection_body(data)
    };
    if row["accepted"] == false {
        row["detail"] = data["detail"].clone();
        row["client"] = data["client"].clone();
    }
    if let Some(id) = row["event_id"].as_str() {
        let runs = c
            .reader
            .executions(&ExecutionFilter {
                event: Some(id.to_string()),
                ..Default::default()
            })
            .map_err(internal)?;
        row["executions"] = runs.into();
    }
    row["flows"] = flow_ids(c).into();
    Ok(View {
        template: "delivery.html",
        data: row,
    })
}

fn flow_ids(c: &Console) -> Vec<String> {
    c.settings
        .consumer
        .flows
        .iter()
        .map(|f| f.qualified_id())
        .collect()
}

fn executions(c: &Console, filter: ExecutionFilter) -> Outcome {
    let rows = c.reader.executions(&filter).map_err(internal)?;
    let next = next_before(&rows);
    Ok(View {
        template: "executions.html",
        data: json!({ "filter": filter, "rows": rows, "next_before": next, "flows": flow_ids(c) }),
    })
}

fn execution(c: &Console, id: &str) -> Outcome {
    let mut row = c
        .reader
        .execution(id)
        .map_err(internal)?
        .ok_or_else(|| not_found("execution"))?;
    // Pretty text of each task's request and outputs, for the page.
    if let Some(tasks) = row["record"]["tasks"].as_array() {
        let shown: Vec<Json> = tasks
            .iter()
            .map(|t| {
                let mut t = t.clone();
                let mut request = t["request"].clone();
                // A JSON body sent as text is shown as the JSON it is.
                if let Some(body) = request["body"].as_str() {
                    if let Ok(parsed) = serde_json::from_str::<Json>(body) {
                        request["body"] = parsed;
                    }
                }
                t["request_text"] = pretty(&request).into();
                t["outputs_text"] = pretty(&t["outputs"]).into();
                t
            })
            .collect();
        row["tasks"] = shown.into();
    }
    // The event, when indexed.
    if let Some(event) = row["event_id"].as_str() {
        let found = c
            .reader
            .deliveries(
                &DeliveryFilter {
                    event: Some(event.to_string()),
                    kind: Some("accepted".into()),
                    ..Default::default()
                },
                0,
            )
            .map_err(internal)?;
        row["delivery"] = found
            .first()
            .map(|d| d["seq"].clone())
            .unwrap_or(Json::Null);
    }
    Ok(View {
        template: "execution.html",
        data: row,
    })
}

fn dry_run(c: &Console, seq: i64, flow: Option<&str>) -> Outcome {
    let row = c
        .reader
        .delivery(seq)
        .map_err(internal)?
        .ok_or_else(|| not_found("delivery"))?;
    let flows = flow_ids(c);
    let mut data =
        json!({ "delivery": seq, "event_id": row["event_id"], "flows": flows, "flow": flow });
    let Some(flow_id) = flow else {
        return Ok(View {
            template: "dry_run.html",
            data,
        });
    };
    if row["truncated"] == true {
        return Err(bad(
            "the index keeps this event cut at its body limit: dry-run it with `hookgate-consumer dry-run --event-id`",
        ));
    }
    let flow = hookgate_consumer::flow::find(&c.settings.consumer.flows, flow_id).map_err(bad)?;
    let text = serde_json::to_vec(&row["event"]).expect("JSON serializes");
    let event = hookgate_consumer::dry_run::event_json(&text).map_err(|e| bad(e.to_string()))?;
    let report = hookgate_consumer::dry_run::report(flow, &event, &c.settings.consumer.engine);
    data["report_text"] = pretty(&report).into();
    data["report"] = report;
    Ok(View {
        template: "dry_run.html",
        data,
    })
}

/// The selection of a redrive form (`seq` checkboxes, or one row's `one` button), or an
/// API call's `{"seqs": [...]}`.
fn redrive_selection(call: &Call) -> Result<Vec<i64>, (StatusCode, String)> {
    let seqs: Vec<i64> = if call.body.first() == Some(&b'{') {
        let v: Json = serde_json::from_slice(&call.body)
            .map_err(|e| bad(format!("the body is not JSON: {e}")))?;
        v["seqs"]
            .as_array()
            .ok_or_else(|| bad("send {\"seqs\": [<dead-letter seq>, …]}"))?
            .iter()
            .map(|s| s.as_i64().ok_or_else(|| bad("seqs are numbers")))
            .collect::<Result<_, _>>()?
    } else {
        let form = call.form();
        match form.iter().find(|(k, _)| k == "one") {
            Some((_, one)) => vec![number(one)?],
            None => form
                .iter()
                .filter(|(k, _)| k == "seq")
                .map(|(_, v)| number(v))
                .collect::<Result<_, _>>()?,
        }
    };
    if seqs.is_empty() {
        return Err(bad("select at least one dead letter"));
    }
    if seqs.len() > PAGE as usize {
        return Err(bad(format!("redrive at most {PAGE} at a time")));
    }
    Ok(seqs)
}

fn pretty(v: &Json) -> String {
    if v.is_null() {
        return String::new();
    }
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// The CloudEvents attributes of an event (everything but its data).
fn attributes(event: &Json) -> Json {
    let Some(obj) = event.as_object() else {
        return json!([]);
    };
    obj.iter()
        .filter(|(k, _)| !matches!(k.as_str(), "data" | "data_base64" | "httpheaders"))
        .map(|(k, v)| json!([k, v.as_str().map_or_else(|| v.to_string(), str::to_string)]))
        .collect()
}

/// A name → [values] object as rows of [name, value].
fn fields(v: &Json) -> Json {
    let Some(obj) = v.as_object() else {
        return json!([]);
    };
    let mut rows = Vec::new();
    for (name, values) in obj {
        match values.as_array() {
            Some(values) => {
                for value in values {
                    rows.push(json!([
                        name,
                        value
                            .as_str()
                            .map_or_else(|| value.to_string(), str::to_string)
                    ]));
                }
            }
            None => rows.push(json!([name, values.to_string()])),
        }
    }
    rows.into()
}

/// How a page shows an event's body: `{encoding, text, fields?, hex?}`.
pub fn body_view(event: &Json) -> Json {
    if let Some(excerpt) = event.as_str() {
        return json!({ "encoding": "excerpt (cut at the index's body limit)", "text": excerpt });
    }
    let data = &event["data"];
    if data.is_object() {
        let encoding = data["bodyencoding"].as_str().unwrap_or("json");
        let body = &data["body"];
        return match encoding {
            "text" => json!({ "encoding": "text", "text": body.as_str().unwrap_or_default() }),
            "base64" => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(body.as_str().unwrap_or_default())
                    .unwrap_or_default();
                json!({ "encoding": "base64", "text": body, "hex": hex_dump(&bytes) })
            }
            "empty" => json!({ "encoding": "empty", "text": "" }),
            "form" | "multipart" => {
                json!({ "encoding": encoding, "text": pretty(body), "fields": fields(body) })
            }
            other => json!({ "encoding": other, "text": pretty(body) }),
        };
    }
    // Binary mode: the body exactly as received.
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(event["data_base64"].as_str().unwrap_or_default())
        .unwrap_or_default();
    match std::str::from_utf8(&bytes) {
        Ok(text) => match serde_json::from_str::<Json>(text) {
            Ok(v) => json!({ "encoding": "binary mode, JSON", "text": pretty(&v) }),
            Err(_) => json!({ "encoding": "binary mode, text", "text": text }),
        },
        Err(_) => {
            json!({ "encoding": "binary mode, bytes", "text": event["data_base64"], "hex": hex_dump(&bytes) })
        }
    }
}

fn rejection_body(data: &Json) -> Json {
    let sample = data["bodysample"].as_str().unwrap_or_default();
    let encoding = data["bodysampleencoding"].as_str().unwrap_or("utf8");
    let text = match serde_json::from_str::<Json>(sample) {
        Ok(v) if encoding == "utf8" => pretty(&v),
        _ => sample.to_string(),
    };
    json!({ "encoding": format!("sample ({encoding}), {} bytes received", data["bodysize"]), "text": text })
}

/// The first 512 bytes as hex and printable ASCII, 16 a line.
fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(16).take(32).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let text: String = chunk
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!("{:08x}  {:<48} {text}\n", i * 16, hex.join(" ")));
    }
    out
}

fn render(console: &Console, view: View, csrf: &str) -> http::Response<Body> {
    if view.template == "redirect" {
        return see_other(view.data.as_str().unwrap_or("/hooks"));
    }
    if view.template == "status" {
        return json(StatusCode::OK, &view.data);
    }
    let ctx =
        minijinja::context! { data => minijinja::Value::from_serialize(&view.data), csrf => csrf };
    match console
        .templates
        .get_template(view.template)
        .and_then(|t| t.render(ctx))
    {
        Ok(text) => html(StatusCode::OK, text),
        Err(e) => error(
            false,
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("page did not render: {e}"),
        ),
    }
}

fn login_page(
    console: &Console,
    status: StatusCode,
    message: Option<&str>,
) -> http::Response<Body> {
    let login = &console.settings.login;
    let ctx = minijinja::context! {
        token => login.token.is_some(),
        basic => login.basic.is_some(),
        message => message,
    };
    match console
        .templates
        .get_template("login.html")
        .and_then(|t| t.render(ctx))
    {
        Ok(text) => html(status, text),
        Err(e) => error(false, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn login(console: &Console, call: &Call) -> http::Response<Body> {
    let form = call.form();
    let get = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let ok = match (get("token"), get("username"), get("password")) {
        (Some(token), _, _) if !token.is_empty() => console.gate.token_ok(token),
        (_, Some(user), Some(password)) => console.gate.basic_ok(user, password),
        _ => false,
    };
    if !ok {
        // A failed login costs the guesser a quarter second.
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        return login_page(console, StatusCode::UNAUTHORIZED, Some("wrong credentials"));
    }
    let id = console.gate.open();
    let mut r = see_other("/hooks");
    if let Ok(v) = HeaderValue::from_str(&session_cookie(&id)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_shown_by_encoding() {
        let event = json!({"data": {"bodyencoding": "json", "body": {"a": 1}}});
        assert_eq!(body_view(&event)["text"], "{\n  \"a\": 1\n}");
        let form = json!({"data": {"bodyencoding": "form", "body": {"name": ["Ada"]}}});
        assert_eq!(body_view(&form)["fields"], json!([["name", "Ada"]]));
        let bytes = json!({"data": {"bodyencoding": "base64", "body": "AAEC/w=="}});
        assert!(body_view(&bytes)["hex"]
            .as_str()
            .unwrap()
            .starts_with("00000000  00 01 02 ff"));
        let binary = json!({"data_base64": "PHNjcmlwdD4="});
        assert_eq!(body_view(&binary)["text"], "<script>");
        let cut = json!("{\"id\":");
        assert_eq!(body_view(&cut)["text"], "{\"id\":");
    }
}
