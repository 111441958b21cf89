//! The loopback echo endpoint of `hookgate local`: stands in for the services the
//! shipped flows call, prints each call so a newcomer sees the flows run, and answers in
//! each service's documented shape (status included) what the flows chain on:
//!
//! - a Slack incoming webhook (`…/webhook`): `200 ok`, as text;
//! - Tableau's `…/api/{version}/auth/signin`: the session token, site id and user id
//!   under `credentials`; `PUT …/sites/{site}/workbooks/{id}/tags`: the tags, but only
//!   with that token in `X-Tableau-Auth` and that site id (else Tableau's 401 or 404);
//! - ServiceNow's `…/oauth_token.do`: an access token for the client credentials grant
//!   (client id and secret in the form), else its `401 access_denied`;
//!   `…/api/now/table/incident`: `201` with the record under `result` (`number`
//!   INC0010001, a `sys_id`); without that token as a bearer, ServiceNow's 401;
//! - Slack's `…/api/conversations.create` and `.invite`: `{"ok": true, "channel": …}`,
//!   or Slack's `{"ok": false, "error": …}` for a missing bearer token, a channel name
//!   Slack would refuse, or an invite to a channel other than the one created;
//! - PagerDuty's `…/v2/enqueue`: `202` with the dedup key, or PagerDuty's 400 for an
//!   event it would refuse.
//!
//! For the shipped pollers it plays the polled sources: a stock level, a workbook's usage
//! and a CPU metric that move through a cycle, one step per request, crossing each
//! threshold.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// The Tableau session token and site id the sign-in hands out.
const TABLEAU_TOKEN: &str =
    "dev-session-token|0f3ac5e1b7d94c2a8e6b1d3f5a7c9e0b|9a8b7c6d-5e4f-4a2b-8c0d-9e8f7a6b5c4d";
const TABLEAU_SITE_ID: &str = "9a8b7c6d-5e4f-4a2b-8c0d-9e8f7a6b5c4d";
/// The OAuth2 access token ServiceNow's token endpoint hands out.
const SERVICENOW_TOKEN: &str = "dev-servicenow-access-token";
/// The incident the ticket call opens.
const INCIDENT_NUMBER: &str = "INC0010001";
const INCIDENT_SYS_ID: &str = "46d44a5e2f0c1110a1c3e8f2f699b6d3";
/// The Slack channel the create call makes, and the name it was last given.
const CHANNEL_ID: &str = "C0DEV01";
static CHANNEL_NAME: Mutex<String> = Mutex::new(String::new());

/// Starts the endpoint on 127.0.0.1; returns its address.
pub async fn start() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(answer(req).await)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// What the endpoint answers with.
enum Reply {
    Json(Value),
    Text(&'static str),
}

async fn answer(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let shown: String = text.chars().take(240).collect();
    println!("echo <- {method} {path} {shown}");
    let (status, reply) = match polled(&path) {
        Some(reply) => (StatusCode::OK, Reply::Json(reply)),
        None => vendor(&method, &path, &headers, &body),
    };
    let (bytes, content_type) = match reply {
        Reply::Json(v) => (Bytes::from(v.to_string()), "application/json"),
        Reply::Text(t) => (
            Bytes::from_static(t.as_bytes()),
            "text/plain; charset=utf-8",
        ),
    };
    let mut resp = Response::new(Full::new(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    resp
}

/// The answer of the service `path` stands for, in that service's shape.
fn vendor(method: &str, path: &str, headers: &HeaderMap, body: &[u8]) -> (StatusCode, Reply) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let json_body = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    let bearer = header("authorization")
        .strip_prefix("Bearer ")
        .is_some_and(|t| !t.is_empty());
    if method == "POST" && path.ends_with("/webhook") {
        // A Slack incoming webhook.
        return match json_body["text"].as_str() {
            Some(t) if !t.is_empty() => (StatusCode::OK, Reply::Text("ok")),
            _ => (StatusCode::BAD_REQUEST, Reply::Text("no_text")),
        };
    }
    if method == "POST" && path.ends_with("/auth/signin") {
        let credentials = &json_body["credentials"];
        let named = |k: &str| credentials[k].as_str().is_some_and(|v| !v.is_empty());
        if !named("personalAccessTokenName") || !named("personalAccessTokenSecret") {
            return tableau_error(StatusCode::UNAUTHORIZED, "Signin Error", "401001");
        }
        let content_url = credentials["site"]["contentUrl"].as_str().unwrap_or("");
        return (
            StatusCode::OK,
            Reply::Json(json!({"credentials": {
                "site": {"id": TABLEAU_SITE_ID, "contentUrl": content_url},
                "user": {"id": "5de011f8-4aa9-4d5b-b991-f9c8e2a8b5fd"},
                "token": TABLEAU_TOKEN,
                "estimatedTimeToExpiration": "361:59:59"
            }})),
        );
    }
    if let Some((site, _workbook)) = tableau_tags(path).filter(|_| method == "PUT") {
        if header("x-tableau-auth") != TABLEAU_TOKEN {
            return tableau_error(StatusCode::UNAUTHORIZED, "Signin Error", "401002");
        }
        if site != TABLEAU_SITE_ID {
            return tableau_error(StatusCode::NOT_FOUND, "Resource Not Found", "404000");
        }
        let tags = json_body["tags"].clone();
        return (StatusCode::OK, Reply::Json(json!({ "tags": tags })));
    }
    if method == "POST" && path.ends_with("/oauth_token.do") {
        let granted = field("grant_type") == "client_credentials"
            && !field("client_id").is_empty()
            && !field("client_secret").is_empty();
        return if granted {
            (
                StatusCode::OK,
                Reply::Json(json!({
                    "access_token": SERVICENOW_TOKEN,
                    "scope": "useraccount",
                    "token_type": "Bearer",
                    "expires_in": 1799
                })),
            )
        } else {
            (
                StatusCode::UNAUTHORIZED,
                Reply::Json(
                    json!({"error": "access_denied", "error_description": "access_denied"}),
                ),
            )
        };
    }
    if method == "POST" && path.ends_with("/api/now/table/incident") {
        if header("authorization").strip_prefix("Bearer ") != Some(SERVICENOW_TOKEN) {
            return (
                StatusCode::UNAUTHORIZED,
                Reply::Json(json!({
                    "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
                    "status": "failure"
                })),
            );
        }
        let mut record = match json_body {
            Value::Object(fields) => fields,
            _ => serde_json::Map::new(),
        };
        for (k, v) in [
            ("number", INCIDENT_NUMBER),
            ("sys_id", INCIDENT_SYS_ID),
            ("state", "1"),
            ("sys_class_name", "incident"),
        ] {
            record.insert(k.into(), v.into());
        }
        return (
            StatusCode::CREATED,
            Reply::Json(json!({ "result": record })),
        );
    }
    if method == "POST" && path.ends_with("/api/conversations.create") {
        let name = field("name");
        let error = if !bearer {
            Some("not_authed")
        } else if name.is_empty() {
            Some("invalid_name_required")
        } else if name.chars().count() > 80 {
            Some("invalid_name_maxlength")
        } else if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            Some("invalid_name_specials")
        } else {
            None
        };
        if let Some(error) = error {
            return slack_error(error);
        }
        *CHANNEL_NAME.lock().unwrap_or_else(|e| e.into_inner()) = name.to_string();
        let private = field("is_private") == "true";
        return (
            StatusCode::OK,
            Reply::Json(json!({"ok": true, "channel": {
                "id": CHANNEL_ID, "name": name, "is_channel": true, "is_private": private
            }})),
        );
    }
    if method == "POST" && path.ends_with("/api/conversations.invite") {
        if !bearer {
            return slack_error("not_authed");
        }
        if field("channel") != CHANNEL_ID {
            return slack_error("channel_not_found");
        }
        if field("users").is_empty() {
            return slack_error("no_user");
        }
        let name = CHANNEL_NAME
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        return (
            StatusCode::OK,
            Reply::Json(
                json!({"ok": true, "channel": {"id": CHANNEL_ID, "name": name, "is_channel": true}}),
            ),
        );
    }
    if method == "POST" && path.ends_with("/v2/enqueue") {
        return pagerduty(&json_body);
    }
    let received = serde_json::from_slice::<Value>(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
    (
        StatusCode::OK,
        Reply::Json(
            json!({"ok": true, "received": {"method": method, "path": path, "body": received}}),
        ),
    )
}

/// The site and workbook of a Tableau "add tags to workbook" path,
/// `…/api/{version}/sites/{site}/workbooks/{workbook}/tags`.
fn tableau_tags(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_suffix("/tags")?;
    let (rest, workbook) = rest.rsplit_once("/workbooks/")?;
    let (_, site) = rest.rsplit_once("/sites/")?;
    (!site.contains('/') && !workbook.contains('/')).then_some((site, workbook))
}

/// Tableau's error body.
fn tableau_error(status: StatusCode, summary: &str, code: &str) -> (StatusCode, Reply) {
    (
        status,
        Reply::Json(json!({"error": {"summary": summary, "detail": summary, "code": code}})),
    )
}

/// Slack's Web API refusal: still a 200.
fn slack_error(error: &str) -> (StatusCode, Reply) {
    (
        StatusCode::OK,
        Reply::Json(json!({"ok": false, "error": error})),
    )
}

/// PagerDuty's Events API v2: 202 for an event it accepts, 400 with its errors otherwise.
fn pagerduty(event: &Value) -> (StatusCode, Reply) {
    let text = |v: &Value| v.as_str().is_some_and(|s| !s.is_empty());
    let mut errors = Vec::new();
    if !text(&event["routing_key"]) {
        errors.push("'routing_key' is missing or blank");
    }
    let action = event["event_action"].as_str().unwrap_or_default();
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        errors.push("'event_action' is missing or invalid");
    }
    if action == "trigger" {
        let payload = &event["payload"];
        if !text(&payload["summary"]) || !text(&payload["source"]) {
            errors.push("'payload.summary' and 'payload.source' are required");
        }
        let severity = payload["severity"].as_str().unwrap_or_default();
        if !["critical", "error", "warning", "info"].contains(&severity) {
            errors.push("'payload.severity' is missing or invalid");
        }
    } else if !text(&event["dedup_key"]) {
        errors.push("'dedup_key' is required for acknowledge and resolve");
    }
    if !errors.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            Reply::Json(
                json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}),
            ),
        );
    }
    let dedup_key = event["dedup_key"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    (
        StatusCode::ACCEPTED,
        Reply::Json(
            json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key}),
        ),
    )
}
/// The polled sources: each answer is the next step of a cycle that crosses the shipped
/// pollers' thresholds (stock ≤ 10, views ≤ 10, CPU ≥ 0.8).
fn polled(path: &str) -> Option<Value> {
    static STEPS: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];
    const STOCK: [u32; 6] = [24, 18, 12, 8, 4, 30];
    const VIEWS: [u32; 4] = [40, 25, 9, 52];
    const CPU: [f64; 5] = [0.42, 0.65, 0.91, 0.88, 0.3];
    let kind = if path.ends_with("/inventory/api/stock/m8-bolts") {
        0
    } else if path.ends_with("/usage/api/workbooks/wb-42/usage") {
        1
    } else if path.ends_with("/monitoring/api/metrics/cpu") {
        2
    } else {
        return None;
    };
    let n = STEPS[kind].fetch_add(1, Ordering::Relaxed);
    Some(match kind {
        0 => {
            json!({"product": "M8 bolts", "warehouse": "east", "stock_value": STOCK[n % STOCK.len()]})
        }
        1 => {
            json!({"workbook_id": "wb-42", "workbook_name": "Q3 churn", "hits_last_14_days": VIEWS[n % VIEWS.len()]})
        }
        _ => json!({"host": "web-1", "cpu": CPU[n % CPU.len()]}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let (status, reply) = vendor(method, path, &map, body.as_bytes());
        let value = match reply {
            Reply::Json(v) => v,
            Reply::Text(t) => Value::String(t.into()),
        };
        (status.as_u16(), value)
    }

    #[test]
    fn tableau_sign_in_then_tags_with_its_token_and_site() {
        let (status, signin) = call(
            "POST",
            "/bi/api/3.22/auth/signin",
            &[],
            r#"{"credentials":{"personalAccessTokenName":"n","personalAccessTokenSecret":"s","site":{"contentUrl":""}}}"#,
        );
        assert_eq!(status, 200);
        let token = signin["credentials"]["token"].as_str().unwrap();
        let site = signin["credentials"]["site"]["id"].as_str().unwrap();
        let tags = format!("/bi/api/3.22/sites/{site}/workbooks/wb-42/tags");
        let body = r#"{"tags":{"tag":[{"label":"archived"}]}}"#;
        let (status, reply) = call("PUT", &tags, &[("x-tableau-auth", token)], body);
        assert_eq!(status, 200);
        assert_eq!(reply["tags"]["tag"][0]["label"], "archived");
        assert_eq!(call("PUT", &tags, &[], body).0, 401);
        let other = "/bi/api/3.22/sites/other/workbooks/wb-42/tags";
        assert_eq!(
            call("PUT", other, &[("x-tableau-auth", token)], body).0,
            404
        );
        assert_eq!(
            call(
                "POST",
                "/bi/api/3.22/auth/signin",
                &[],
                r#"{"credentials":{}}"#
            )
            .0,
            401
        );
    }

    #[test]
    fn servicenow_slack_and_pagerduty_answer_in_their_shapes() {
        let (status, token) = call(
            "POST",
            "/tickets/oauth_token.do",
            &[],
            "grant_type=client_credentials&client_id=c&client_secret=s",
        );
        assert_eq!(status, 200);
        let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
        assert_eq!(
            call(
                "POST",
                "/tickets/oauth_token.do",
                &[],
                "grant_type=client_credentials"
            )
            .0,
            401
        );
        let (status, ticket) = call(
            "POST",
            "/tickets/api/now/table/incident",
            &[("authorization", &bearer)],
            r#"{"short_description":"CPU at 0.93 on web-1"}"#,
        );
        assert_eq!(status, 201);
        assert_eq!(ticket["result"]["number"], INCIDENT_NUMBER);
        assert_eq!(ticket["result"]["sys_id"].as_str().unwrap().len(), 32);
        assert_eq!(
            ticket["result"]["short_description"],
            "CPU at 0.93 on web-1"
        );
        assert_eq!(
            call("POST", "/tickets/api/now/table/incident", &[], "{}").0,
            401
        );
        let basic = [("authorization", "Basic dTpw")];
        assert_eq!(
            call("POST", "/tickets/api/now/table/incident", &basic, "{}").0,
            401
        );

        let bearer = [("authorization", "Bearer xoxb-1")];
        let (status, channel) = call(
            "POST",
            "/chat/api/conversations.create",
            &bearer,
            "is_private=false&name=inc0010001",
        );
        assert_eq!(status, 200);
        assert_eq!(channel["ok"], true);
        assert_eq!(channel["channel"]["name"], "inc0010001");
        let id = channel["channel"]["id"].as_str().unwrap();
        let (_, invite) = call(
            "POST",
            "/chat/api/conversations.invite",
            &bearer,
            &format!("channel={id}&users=U1%2CU2"),
        );
        assert_eq!(invite["ok"], true);
        assert_eq!(invite["channel"]["id"], id);
        for (path, body, error) in [
            ("create", "name=INC0010001", "invalid_name_specials"),
            ("invite", "channel=C999&users=U1", "channel_not_found"),
        ] {
            let (_, reply) = call(
                "POST",
                &format!("/chat/api/conversations.{path}"),
                &bearer,
                body,
            );
            assert_eq!(reply, json!({"ok": false, "error": error}));
        }
        let (_, reply) = call(
            "POST",
            "/chat/api/conversations.create",
            &[],
            "name=inc0010001",
        );
        assert_eq!(reply["error"], "not_authed");

        let event = r#"{"routing_key":"k","event_action":"trigger","dedup_key":"INC0010001","payload":{"summary":"s","source":"web-1","severity":"critical"}}"#;
        let (status, page) = call("POST", "/pager/v2/enqueue", &[], event);
        assert_eq!(status, 202);
        assert_eq!(
            page,
            json!({"status": "success", "message": "Event processed", "dedup_key": "INC0010001"})
        );
        let (status, page) = call(
            "POST",
            "/pager/v2/enqueue",
            &[],
            r#"{"event_action":"trigger","payload":{}}"#,
        );
        assert_eq!(status, 400);
        assert_eq!(page["status"], "invalid event");

        assert_eq!(
            call("POST", "/slack/webhook", &[], r#"{"text":"hi"}"#),
            (200, json!("ok"))
        );
        assert_eq!(call("POST", "/slack/webhook", &[], "{}").0, 400);
    }
}
