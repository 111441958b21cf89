//! `http`: one request through the SSRF-safe client. Method, URI, headers, query, body
//! (a text template, or a JSON body written as a table whose leaves are templates) or
//! form data, and auth (basic, bearer, a header, a query key) are all templates. The
//! response's status, headers and body (parsed when it is JSON) become its outputs.
//!
//! A status outside `expect` (any 2xx by default) fails the attempt: retried when the
//! server may recover (408, 429, 5xx), not otherwise.

use std::collections::BTreeMap;

use base64::Engine as _;
use hookgate_common::config::{ConfigDuration, Problems};
use http::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value as Json};

use super::{Deps, RetryConfig, TaskError};
use crate::expression::{Context, Engine, JsonTemplate, Template};
use crate::outbound::Request;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub id: String,
    /// Default `GET`.
    #[serde(default = "default_method")]
    pub method: String,
    pub uri: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Query parameters added to the URI (encoded).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// A text template, or a table/array whose string leaves are templates (sent as
    /// JSON).
    pub body: Option<Json>,
    /// Form fields, sent as `application/x-www-form-urlencoded`.
    pub form: Option<BTreeMap<String, String>>,
    pub auth: Option<AuthConfig>,
    /// The whole exchange, connect to last byte. Default `10s`.
    #[serde(default = "default_timeout")]
    pub timeout: ConfigDuration,
    /// Statuses that count as success; default any 2xx.
    #[serde(default)]
    pub expect: Vec<u16>,
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_method() -> String {
    "GET".to_string()
}

fn default_timeout() -> ConfigDuration {
    ConfigDuration::from_secs(10)
}

/// `auth = { basic = { username, password } }`, `{ bearer = "…" }`,
/// `{ header = { name, value } }` or `{ query = { name, value } }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    Basic { username: String, password: String },
    Bearer(String),
    Header { name: String, value: String },
    Query { name: String, value: String },
}

#[derive(Debug)]
enum Auth {
    Basic(Template, Template),
    Bearer(Template),
    Header(String, Template),
    Query(String, Template),
}

#[derive(Debug)]
enum Body {
    None,
    Text(Template),
    Json(JsonTemplate),
    Form(Vec<(String, Template)>),
}

/// A built `http` task.
#[derive(Debug)]
pub struct HttpTask {
    id: String,
    method: Method,
    uri: Template,
    headers: Vec<(String, Template)>,
    query: Vec<(String, Template)>,
    body: Body,
    auth: Option<Auth>,
    timeout: std::time::Duration,
    expect: Vec<u16>,
    retry: RetryConfig,
}

impl HttpConfig {
    pub fn build(&self, at: &str, engine: &Engine, p: &mut Problems) -> Option<HttpTask> {
        let before = p.len();
        for name in self.headers.keys() {
            let lower = name.to_ascii_lowercase();
            if http::HeaderName::from_bytes(lower.as_bytes()).is_err()
                || crate::outbound::RESERVED_HEADERS.contains(&lower.as_str())
            {
                p.push(
                    format!("{at}.headers.\"{name}\""),
                    "is not a header a task may set (invalid, or owned by the HTTP client: host, content-length, connection, …)",
                    "remove it",
                );
            }
        }
        let mut template = |key: &str, source: &str| -> Option<Template> {
            Template::compile(engine, &format!("{at}.{key}"), source)
                .map_err(|e| e.report(p, "fix the template"))
                .ok()
        };
        let method = Method::from_bytes(self.method.to_ascii_uppercase().as_bytes()).ok();
        let uri = template("uri", &self.uri);
        let headers: Vec<_> = self
            .headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.to_ascii_lowercase(),
                    template(&format!("headers.\"{k}\""), v)?,
                ))
            })
            .collect();
        let query: Vec<_> = self
            .query
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), template(&format!("query.\"{k}\""), v)?)))
            .collect();
        let auth = self.auth.as_ref().and_then(|a| match a {
            AuthConfig::Basic { username, password } => Some(Auth::Basic(
                template("auth.basic.username", username)?,
                template("auth.basic.password", password)?,
            )),
            AuthConfig::Bearer(t) => Some(Auth::Bearer(template("auth.bearer", t)?)),
            AuthConfig::Header { name, value } => Some(Auth::Header(
                name.to_ascii_lowercase(),
                template("auth.header.value", value)?,
            )),
            AuthConfig::Query { name, value } => Some(Auth::Query(
                name.clone(),
                template("auth.query.value", value)?,
            )),
        });
        let form: Option<Vec<_>> = self.form.as_ref().map(|f| {
            f.iter()
                .filter_map(|(k, v)| Some((k.clone(), template(&format!("form.\"{k}\""), v)?)))
                .collect()
        });
        let body = match (&self.body, form) {
            (Some(_), Some(_)) => {
                p.push(
                    format!("{at}.form"),
                    "a request has either a body or form data",
                    "keep one of them",
                );
                Body::None
            }
            (None, Some(form)) => Body::Form(form),
            (Some(Json::String(s)), None) => {
                match Template::compile(engine, &format!("{at}.body"), s) {
                    Ok(t) => Body::Text(t),
                    Err(e) => {
                        e.report(p, "fix the template");
                        Body::None
                    }
                }
            }
            (Some(value), None) => {
                match JsonTemplate::compile(engine, &format!("{at}.body"), value) {
                    Ok(t) => Body::Json(t),
                    Err(e) => {
                        e.report(p, "fix the template");
                        Body::None
                    }
                }
            }
            (None, None) => Body::None,
        };
        if method.is_none() {
            p.push(
                format!("{at}.method"),
                format!("`{}` is not a method", self.method),
                "use GET, POST, PUT, PATCH or DELETE",
            );
        }
        if let Some(constant) = uri.as_ref().and_then(Template::as_constant) {
            if !(constant.starts_with("http://") || constant.starts_with("https://")) {
                p.push(
                    format!("{at}.uri"),
                    format!("`{constant}` is not an http(s) URL"),
                    "write a full URL",
                );
            }
        }
        for code in &self.expect {
            if !(100..=599).contains(code) {
                p.push(
                    format!("{at}.expect"),
                    format!("{code} is not an HTTP status"),
                    "list statuses like [200, 201]",
                );
            }
        }
        if self.timeout.get().is_zero() || self.timeout.get() > std::time::Duration::from_secs(600)
        {
            p.push(
                format!("{at}.timeout"),
                "must be between 1ms and 10m",
                "choose a duration in that range",
            );
        }
        self.retry.validate(&format!("{at}.retry"), p);
        if p.len() > before {
            return None;
        }
        Some(HttpTask {
            id: self.id.clone(),
            method: method?,
            uri: uri?,
            headers,
            query,
            body,
            auth,
            timeout: self.timeout.get(),
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

    fn render(&self, t: &Template, ctx: &Context) -> Result<String, TaskError> {
        t.render(ctx)
            .map_err(|e| TaskError::permanent(e.to_string()))
    }

    pub async fn run(&self, ctx: &Context, deps: &Deps) -> Result<Json, TaskError> {
        let mut url = url::Url::parse(&self.render(&self.uri, ctx)?)
            .map_err(|e| TaskError::permanent(format!("the rendered uri is not a URL: {e}")))?;
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &self.query {
                pairs.append_pair(k, &self.render(v, ctx)?);
            }
            if let Some(Auth::Query(name, value)) = &self.auth {
                pairs.append_pair(name, &self.render(value, ctx)?);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let mut req = Request::new(self.method.clone(), url.as_str()).timeout(self.timeout);
        let mut has_content_type = false;
        for (name, value) in &self.headers {
            has_content_type |= name == "content-type";
            req = req.header(name.clone(), self.render(value, ctx)?);
        }
        match &self.auth {
            Some(Auth::Basic(user, pass)) => {
                let pair = format!("{}:{}", self.render(user, ctx)?, self.render(pass, ctx)?);
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                req = req.header("authorization", format!("Basic {encoded}"));
            }
            Some(Auth::Bearer(token)) => {
                req = req.header(
                    "authorization",
                    format!("Bearer {}", self.render(token, ctx)?),
                );
            }
            Some(Auth::Header(name, value)) => {
                req = req.header(name.clone(), self.render(value, ctx)?);
            }
            Some(Auth::Query(..)) | None => {}
        }
        let (body, content_type) = match &self.body {
            Body::None => (Vec::new(), None),
            Body::Text(t) => (
                self.render(t, ctx)?.into_bytes(),
                Some("text/plain; charset=utf-8"),
            ),
            Body::Json(t) => {
                let value = t
                    .render(ctx)
                    .map_err(|e| TaskError::permanent(e.to_string()))?;
                (
                    serde_json::to_vec(&value).expect("JSON values serialize"),
                    Some("application/json"),
                )
            }
            Body::Form(fields) => {
                let mut form = form_urlencoded::Serializer::new(String::new());
                for (k, v) in fields {
                    form.append_pair(k, &self.render(v, ctx)?);
                }
                (
                    form.finish().into_bytes(),
                    Some("application/x-www-form-urlencoded"),
                )
            }
        };
        if let (Some(ct), false) = (content_type, has_content_type) {
            req = req.header("content-type", ct);
        }
        let resp = deps
            .http
            .send(req.body(body))
            .await
            .map_err(|e| TaskError {
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
    let mut headers = Map::new();
    for (name, value) in &resp.headers {
        let entry = headers
            .entry(name.clone())
            .or_insert_with(|| Json::Array(Vec::new()));
        if let Json::Array(values) = entry {
            values.push(Json::String(value.clone()));
        }
    }
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
        "headers": headers,
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
