//! A templated HTTP request: what the `http` task sends and what a poller polls. Method,
//! URI, headers, query, body (a text template, or a JSON body written as a table whose
//! leaves are templates) or form data, and auth (basic, bearer, a header, a query key) are
//! all templates, compiled once at load time and rendered against a [`Context`] into an
//! [`outbound::Request`](crate::outbound::Request).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use hookgate_common::config::{ConfigDuration, Problems};
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::outbound::Request;
use hookgate_expression::{Context, Engine, JsonTemplate, Template};

/// The request's keys, as written in a task or a poller table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
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
    /// A named connection ([`crate::connection`]): `uri` is then a path under its
    /// base URL. Resolved when the config is built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// The connection's own TLS settings and proxy, set when `connection` is resolved.
    #[serde(skip)]
    pub transport: Option<std::sync::Arc<crate::outbound::transport::Transport>>,
}

impl RequestConfig {
    /// The request keys of a table that has keys of its own (a task's `id`, a poller's
    /// `interval`): `rest` is what its own fields (`own`) left, and any key that is
    /// neither is refused here, with every key the table allows.
    pub fn from_rest(
        rest: serde_json::Map<String, Json>,
        own: &[&str],
    ) -> Result<RequestConfig, String> {
        if let Some(unknown) = rest.keys().find(|k| !REQUEST_KEYS.contains(&k.as_str())) {
            let allowed: Vec<&str> = own.iter().chain(REQUEST_KEYS).copied().collect();
            return Err(format!(
                "unknown key `{unknown}` (allowed here: {})",
                allowed.join(", ")
            ));
        }
        serde_json::from_value(Json::Object(rest)).map_err(|e| e.to_string())
    }
}

/// The keys of [`RequestConfig`].
pub const REQUEST_KEYS: &[&str] = &[
    "method",
    "uri",
    "headers",
    "query",
    "body",
    "form",
    "auth",
    "timeout",
    "connection",
];

fn default_method() -> String {
    "GET".to_string()
}

impl RequestConfig {
    /// A request's time limit unless it (or its connection) sets one.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
}

fn default_timeout() -> ConfigDuration {
    ConfigDuration(RequestConfig::DEFAULT_TIMEOUT)
}

/// `auth = { basic = { username, password } }`, `{ bearer = "…" }`,
/// `{ header = { name, value } }`, `{ query = { name, value } }` or
/// `{ oauth2 = { token_url, client_id, client_secret, … } }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    Basic {
        username: String,
        password: String,
    },
    Bearer(String),
    Header {
        name: String,
        value: String,
    },
    Query {
        name: String,
        value: String,
    },
    #[serde(rename = "oauth2")]
    OAuth2(OAuth2Config),
}

/// `auth = { oauth2 = { … } }`: an access token from the client credentials grant, or
/// from the refresh token grant when `refresh_token` is given (see
/// [`crate::outbound::oauth2`]). Every string is a template.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub scope: Option<String>,
    pub audience: Option<String>,
    /// Other parameters of the token request.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// `"basic"` (default) or `"body"`.
    #[serde(default)]
    pub client_auth: crate::outbound::oauth2::ClientAuth,
    /// The refresh token grant's token, usually `{{ secret('…') }}`.
    pub refresh_token: Option<String>,
    /// Where a rotated refresh token is written (the file the secret reads), and where
    /// `hookgate-consumer oauth2 authorize` stores the first one.
    pub refresh_token_file: Option<std::path::PathBuf>,
    /// The authorization endpoint, for `hookgate-consumer oauth2 authorize`.
    pub authorization_url: Option<String>,
    /// The loopback port of the redirect `authorize` serves
    /// (`http://127.0.0.1:PORT/callback`, as registered with the provider).
    pub redirect_port: Option<u16>,
}

#[derive(Debug)]
enum Auth {
    Basic(Template, Template),
    Bearer(Template),
    Header(String, Template),
    Query(String, Template),
    OAuth2(Box<OAuth2Template>),
}

#[derive(Debug)]
struct OAuth2Template {
    token_url: Template,
    client_id: Template,
    client_secret: Template,
    scope: Option<Template>,
    audience: Option<Template>,
    params: Vec<(String, Template)>,
    client_auth: crate::outbound::oauth2::ClientAuth,
    refresh_token: Option<Template>,
    refresh_token_file: Option<std::path::PathBuf>,
}

#[derive(Debug)]
enum Body {
    None,
    Text(Template),
    Json(JsonTemplate),
    Form(Vec<(String, Template)>),
}

/// A compiled request.
#[derive(Debug)]
pub struct RequestTemplate {
    method: Method,
    uri: Template,
    headers: Vec<(String, Template)>,
    query: Vec<(String, Template)>,
    body: Body,
    auth: Option<Auth>,
    timeout: Duration,
    transport: Option<std::sync::Arc<crate::outbound::transport::Transport>>,
}

impl RequestConfig {
    /// Compiles every template; problems go to `p` under `at` (`flows[0].tasks[1]`).
    pub fn build(&self, at: &str, engine: &Engine, p: &mut Problems) -> Option<RequestTemplate> {
        let before = p.len();
        for name in self.headers.keys() {
            let lower = name.to_ascii_lowercase();
            if http::HeaderName::from_bytes(lower.as_bytes()).is_err()
                || crate::outbound::RESERVED_HEADERS.contains(&lower.as_str())
            {
                p.push(
                    format!("{at}.headers.\"{name}\""),
                    "is not a header a request may set (invalid, or owned by the HTTP client: host, content-length, connection, …)",
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
            AuthConfig::OAuth2(o) => {
                // `None` when absent; a template that does not compile is reported and
                // leaves the whole auth out.
                let mut optional = |key: &str, source: &Option<String>| match source {
                    None => Some(None),
                    Some(source) => template(key, source).map(Some),
                };
                let scope = optional("auth.oauth2.scope", &o.scope);
                let audience = optional("auth.oauth2.audience", &o.audience);
                let refresh = optional("auth.oauth2.refresh_token", &o.refresh_token);
                let mut params = Vec::new();
                for (k, v) in &o.params {
                    params.push((
                        k.clone(),
                        template(&format!("auth.oauth2.params.\"{k}\""), v),
                    ));
                }
                let token_url = template("auth.oauth2.token_url", &o.token_url);
                let client_id = template("auth.oauth2.client_id", &o.client_id);
                let client_secret = template("auth.oauth2.client_secret", &o.client_secret);
                Some(Auth::OAuth2(Box::new(OAuth2Template {
                    token_url: token_url?,
                    client_id: client_id?,
                    client_secret: client_secret?,
                    scope: scope?,
                    audience: audience?,
                    params: params
                        .into_iter()
                        .map(|(k, v)| Some((k, v?)))
                        .collect::<Option<Vec<_>>>()?,
                    client_auth: o.client_auth,
                    refresh_token: refresh?,
                    refresh_token_file: o.refresh_token_file.clone(),
                })))
            }
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
            } else if let Err(why) = crate::outbound::check_url(constant) {
                // Not quoted: the URL may hold credentials.
                p.push(
                    format!("{at}.uri"),
                    format!("cannot be requested: {why}"),
                    "correct the URL; credentials go in `auth`, not in the URL",
                );
            }
        }
        if self.timeout.get().is_zero() || self.timeout.get() > Duration::from_secs(600) {
            p.push(
                format!("{at}.timeout"),
                "must be between 1ms and 10m",
                "choose a duration in that range",
            );
        }
        if p.len() > before {
            return None;
        }
        Some(RequestTemplate {
            method: method?,
            uri: uri?,
            headers,
            query,
            body,
            auth,
            timeout: self.timeout.get(),
            transport: self.transport.clone(),
        })
    }
}

impl RequestTemplate {
    /// The whole exchange's time limit.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Renders the request for `ctx`. An error is a template that failed or a URI that
    /// is not a URL: retrying would not help.
    pub fn render(&self, ctx: &Context) -> Result<Request, String> {
        let render = |t: &Template| t.render(ctx).map_err(|e| e.to_string());
        let mut url = url::Url::parse(&render(&self.uri)?)
            .map_err(|e| format!("the rendered uri is not a URL: {e}"))?;
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &self.query {
                pairs.append_pair(k, &render(v)?);
            }
            if let Some(Auth::Query(name, value)) = &self.auth {
                pairs.append_pair(name, &render(value)?);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let mut req = Request::new(self.method.clone(), url.as_str())
            .timeout(self.timeout)
            .transport(self.transport.clone());
        let mut has_content_type = false;
        for (name, value) in &self.headers {
            has_content_type |= name == "content-type";
            req = req.header(name.clone(), render(value)?);
        }
        match &self.auth {
            Some(Auth::Basic(user, pass)) => {
                let pair = format!("{}:{}", render(user)?, render(pass)?);
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                req = req.header("authorization", format!("Basic {encoded}"));
            }
            Some(Auth::Bearer(token)) => {
                req = req.header("authorization", format!("Bearer {}", render(token)?));
            }
            Some(Auth::Header(name, value)) => {
                req = req.header(name.clone(), render(value)?);
            }
            Some(Auth::OAuth2(o)) => {
                let optional = |t: &Option<Template>| t.as_ref().map(render).transpose();
                let mut params = Vec::with_capacity(o.params.len());
                for (k, v) in &o.params {
                    params.push((k.clone(), render(v)?));
                }
                req = req.oauth2(std::sync::Arc::new(crate::outbound::oauth2::Grant {
                    token_url: render(&o.token_url)?,
                    client_id: render(&o.client_id)?,
                    client_secret: render(&o.client_secret)?,
                    scope: optional(&o.scope)?,
                    audience: optional(&o.audience)?,
                    params,
                    client_auth: o.client_auth,
                    refresh_token: optional(&o.refresh_token)?,
                    refresh_file: o.refresh_token_file.clone(),
                    timeout: self.timeout,
                }));
            }
            Some(Auth::Query(..)) | None => {}
        }
        let (body, content_type) = match &self.body {
            Body::None => (Vec::new(), None),
            Body::Text(t) => (render(t)?.into_bytes(), Some("text/plain; charset=utf-8")),
            Body::Json(t) => {
                let value = t.render(ctx).map_err(|e| e.to_string())?;
                (
                    serde_json::to_vec(&value).expect("JSON values serialize"),
                    Some("application/json"),
                )
            }
            Body::Form(fields) => {
                let mut form = form_urlencoded::Serializer::new(String::new());
                for (k, v) in fields {
                    form.append_pair(k, &render(v)?);
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
        Ok(req.body(body))
    }
}
