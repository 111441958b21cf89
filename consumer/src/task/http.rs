//! `http`: one request through the SSRF-safe client, rendered from a
//! [`RequestTemplate`]. The response's status, headers and body (parsed when it is JSON)
//! become its outputs.
//!
//! A status outside `expect` (any 2xx by default) fails the attempt: retried when the
//! server may recover (408, 429, 5xx), not otherwise.

use hookgate_common::config::Problems;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use super::{Deps, Prepared, RetryConfig, TaskError};
use crate::outbound::Request;
use crate::request::{RequestConfig, RequestTemplate};
use hookgate_expression::{Context, Engine};

/// An `http` task as written: its id, the request's keys (see [`RequestConfig`]), the
/// statuses that count as success, and retries.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "HttpTable")]
pub struct HttpConfig {
    pub id: String,
    /// Statuses that count as success; default any 2xx.
    pub expect: Vec<u16>,
    pub retry: RetryConfig,
    pub request: RequestConfig,
}

/// The table as read: the task's own keys, and the rest for [`RequestConfig`].
#[derive(Deserialize)]
struct HttpTable {
    id: String,
    #[serde(default)]
    expect: Vec<u16>,
    #[serde(default)]
    retry: RetryConfig,
    #[serde(flatten)]
    rest: serde_json::Map<String, Json>,
}

impl TryFrom<HttpTable> for HttpConfig {
    type Error = String;

    fn try_from(t: HttpTable) -> Result<HttpConfig, String> {
        Ok(HttpConfig {
            id: t.id,
            expect: t.expect,
            retry: t.retry,
            request: RequestConfig::from_rest(t.rest, &["id", "type", "expect", "retry"])?,
        })
    }
}

/// A built `http` task.
#[derive(Debug)]
pub struct HttpTask {
    id: String,
    request: RequestTemplate,
    expect: Vec<u16>,
    retry: RetryConfig,
}

impl HttpConfig {
    pub fn build(&self, at: &str, engine: &Engine, p: &mut Problems) -> Option<HttpTask> {
        let before = p.len();
        let request = self.request.build(at, engine, p);
        for code in &self.expect {
            if !(100..=599).contains(code) {
                p.push(
                    format!("{at}.expect"),
                    format!("{code} is not an HTTP status"),
                    "list statuses like [200, 201]",
                );
            }
        }
        self.retry.validate(&format!("{at}.retry"), p);
        if p.len() > before {
            return None;
        }
        Some(HttpTask {
            id: self.id.clone(),
            request: request?,
            expect: self.expect.clone(),
            retry: self.retry,
        })
    }
}

impl HttpTask {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn retry(&self) -> RetryConfig {
        self.retry
    }

    pub fn prepare(&self, ctx: &Context) -> Result<Prepared, String> {
        self.request.render(ctx).map(Prepared::Http)
    }

    pub async fn send(&self, req: Request, deps: &Deps) -> Result<Json, TaskError> {
        let resp = deps.http.send(req).await.map_err(|e| TaskError {
            message: e.to_string(),
            retryable: e.is_transient(),
            outputs: None,
        })?;
        let ok = if self.expect.is_empty() {
            (200..300).contains(&resp.status)
        } else {
            self.expect.contains(&resp.status)
        };
        let outputs = outputs(&resp, deps);
        if !ok {
            return Err(TaskError {
                message: format!("{} answered {}", resp.url_host(), resp.status),
                retryable: matches!(resp.status, 408 | 429 | 500..=599),
                outputs: Some(outputs),
            });
        }
        Ok(outputs)
    }
}

/// `{status, headers, body, uri}`: headers as name → array of values like
/// `trigger.headers`; the body parsed when it is JSON, else text.
fn outputs(resp: &crate::outbound::Response, deps: &Deps) -> Json {
    let is_json = resp
        .header("content-type")
        .is_some_and(|ct| ct.contains("json"));
    let body = if is_json {
        serde_json::from_slice(&resp.body)
            .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&resp.body).into_owned()))
    } else {
        Json::String(String::from_utf8_lossy(&resp.body).into_owned())
    };
    let mut out = json!({
        "status": resp.status,
        "headers": resp.headers_json(),
        "body": body,
        "uri": resp.url,
    });
    // The URI may carry a secret (a webhook URL): outputs end up in execution records.
    if let Some(uri) = out.get_mut("uri") {
        deps.engine.mask_json(uri);
    }
    out
}

trait UrlHost {
    fn url_host(&self) -> String;
}

impl UrlHost for crate::outbound::Response {
    /// The host of the final URL, for messages that must not carry the path or query.
    fn url_host(&self) -> String {
        url::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| "the server".to_string())
    }
}
