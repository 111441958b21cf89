//! Named connections: an API's base URL, authentication, default headers and query, and
//! timeout, declared once and used by every task and poller that names it (Workato's
//! connections, elastic.io's credentials).
//!
//! ```toml
//! [connections.tickets]
//! base_url = "{{ secret('TICKETS_BASE_URL') }}"
//! auth = { basic = { username = "{{ secret('TICKETS_USER') }}", password = "{{ secret('TICKETS_PASSWORD') }}" } }
//! headers = { accept = "application/json" }
//! timeout = "15s"
//! test = { path = "/api/now/table/incident?sysparm_limit=1" }
//! tls = { ca_file = "/etc/hookgate/corp-ca.pem" }    # and cert_file + key_file for mTLS
//! proxy = "http://proxy.corp.internal:3128"          # or "direct"; default [outbound] proxy
//! allow = ["10.20.0.0/16"]                           # private addresses for this API only
//!
//! [[flows.tasks]]
//! id = "ticket"
//! type = "http"
//! connection = "tickets"
//! method = "POST"
//! uri = "/api/now/table/incident"
//! ```
//!
//! A task's `uri` is then a path under `base_url`; its own `headers` and `query` are
//! added to the connection's (its own win), its `auth` replaces the connection's, and
//! its `timeout` wins unless it is the default. The result is an ordinary request: the
//! outbound policy (SSRF) applies to the address it resolves to, and secrets are masked
//! wherever it is shown. `hookgate-consumer test-connection NAME` sends the connection's
//! `test` request (a `GET` of `base_url` unless it says otherwise) and reports the answer.

use std::collections::BTreeMap;
use std::sync::Arc;

use hookgate_common::config::{ConfigDuration, Problems};
use serde::{Deserialize, Serialize};

use crate::outbound::transport::{TlsFiles, Transport};
use crate::request::{AuthConfig, RequestConfig};

/// A `[connections.NAME]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// The API's root: an http(s) URL, or a template (`{{ secret('…') }}`).
    pub base_url: String,
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// One attempt's time limit for requests that do not set their own.
    pub timeout: Option<ConfigDuration>,
    /// What `test-connection` sends.
    #[serde(default)]
    pub test: TestRequest,
    /// The CAs trusted instead of the public roots, and a client certificate (mTLS).
    pub tls: Option<TlsFiles>,
    /// `http://host:port` to go through that proxy, `"direct"` to bypass
    /// `[outbound] proxy`.
    pub proxy: Option<String>,
    /// Host names or address blocks this connection may reach although the outbound
    /// policy refuses them (a private API), as `[outbound] allow` but for its requests
    /// only.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// `test = { method = "GET", path = "" }`: a request under `base_url`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    #[serde(default = "get")]
    pub method: String,
    #[serde(default)]
    pub path: String,
}

impl Default for TestRequest {
    fn default() -> Self {
        TestRequest {
            method: get(),
            path: String::new(),
        }
    }
}

fn get() -> String {
    "GET".into()
}

/// Whether a connection name is usable: letters, digits, `-`, `_` and `.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn join(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let path = path.trim_start_matches('/');
    if path.is_empty() {
        base.to_string()
    } else {
        format!("{base}/{path}")
    }
}

impl ConnectionConfig {
    /// The connection's transport, its files read; problems go to `p` under `at`
    /// (`connections.NAME`).
    pub fn transport(&self, at: &str, p: &mut Problems) -> Option<Arc<Transport>> {
        Transport::build(self.tls.as_ref(), self.proxy.as_deref(), &self.allow, at, p)
    }

    /// `request` made whole with this connection (whose built transport is
    /// `transport`); problems go to `p` under `at`.
    pub fn apply(
        &self,
        request: &RequestConfig,
        transport: Option<Arc<Transport>>,
        at: &str,
        p: &mut Problems,
    ) -> RequestConfig {
        if request.uri.starts_with("http://") || request.uri.starts_with("https://") {
            p.push(
                format!("{at}.uri"),
                "with a `connection`, `uri` is a path under the connection's base_url, not a whole URL",
                "write the path only, like \"/api/now/table/incident\", or drop `connection`",
            );
        }
        let mut headers = self.headers.clone();
        headers.extend(request.headers.clone());
        let mut query = self.query.clone();
        query.extend(request.query.clone());
        let default_timeout = RequestConfig::DEFAULT_TIMEOUT;
        let timeout = match self.timeout {
            Some(t) if request.timeout.get() == default_timeout => t,
            _ => request.timeout,
        };
        RequestConfig {
            method: request.method.clone(),
            uri: join(&self.base_url, &request.uri),
            headers,
            query,
            body: request.body.clone(),
            form: request.form.clone(),
            auth: request.auth.clone().or_else(|| self.auth.clone()),
            timeout,
            connection: None,
            transport,
        }
    }

    /// The request `test-connection` sends.
    pub fn test_request(&self, transport: Option<Arc<Transport>>) -> RequestConfig {
        let bare = RequestConfig {
            method: self.test.method.clone(),
            uri: self.test.path.clone(),
            headers: BTreeMap::new(),
            query: BTreeMap::new(),
            body: None,
            form: None,
            auth: None,
            timeout: ConfigDuration(RequestConfig::DEFAULT_TIMEOUT),
            connection: None,
            transport: None,
        };
        self.apply(&bare, transport, "test", &mut Problems::default())
    }
}

/// Sends connection `name`'s test request and reports what was sent and what the server
/// answered, secrets masked and credential headers redacted. `Err` when the connection
/// does not exist, its request cannot be made, or nothing answered.
pub async fn test(
    connections: &BTreeMap<String, ConnectionConfig>,
    engine: &hookgate_expression::Engine,
    policy: &crate::outbound::Policy,
    name: &str,
) -> anyhow::Result<serde_json::Value> {
    let Some(conn) = connections.get(name) else {
        let known: Vec<&str> = connections.keys().map(String::as_str).collect();
        anyhow::bail!(
            "no connection is named `{name}` (declared: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    let mut p = Problems::default();
    let transport = conn.transport(&format!("connections.{name}"), &mut p);
    let template = conn
        .test_request(transport)
        .build(&format!("connections.{name}.test"), engine, &mut p)
        .ok_or_else(|| anyhow::anyhow!("{}", p.into_error("the connection")))?;
    let request = template
        .render(&hookgate_expression::Context::builder().build())
        .map_err(|e| anyhow::anyhow!("{}", engine.mask(&e)))?;
    let sent = crate::task::Prepared::Http(request.clone()).describe();
    let client = crate::outbound::Client::new(policy.clone());
    let started = std::time::Instant::now();
    let response = client
        .send(request)
        .await
        .map_err(|e| anyhow::anyhow!("no answer: {}", engine.mask(&e.to_string())))?;
    let mut headers = response.headers_json();
    if let Some(map) = headers.as_object_mut() {
        for (name, values) in map.iter_mut() {
            if hookgate_event::REDACTED_HEADERS.contains(&name.as_str()) {
                *values = serde_json::json!([hookgate_event::REDACTED]);
            }
        }
    }
    let mut report = serde_json::json!({
        "connection": name,
        "ok": (200..300).contains(&response.status),
        "request": sent,
        "response": {
            "status": response.status,
            "headers": headers,
            "body": crate::task::excerpt(&response.body),
            "ms": started.elapsed().as_millis() as u64,
        },
    });
    engine.mask_json(&mut report);
    Ok(report)
}

/// Resolves `request`'s `connection`, if it names one, among `connections` (whose
/// transports, built once, are in `transports`).
pub fn resolve(
    request: &mut RequestConfig,
    connections: &BTreeMap<String, ConnectionConfig>,
    transports: &BTreeMap<String, Arc<Transport>>,
    at: &str,
    p: &mut Problems,
) {
    let Some(name) = request.connection.clone() else {
        return;
    };
    match connections.get(&name) {
        Some(conn) => {
            let transport = transports.get(&name).cloned();
            *request = conn.apply(request, transport, at, p)
        }
        None => {
            let known: Vec<&str> = connections.keys().map(String::as_str).collect();
            p.push(
                format!("{at}.connection"),
                format!("no connection is named `{name}`"),
                &if known.is_empty() {
                    "declare it under [connections.NAME], or drop `connection`".to_string()
                } else {
                    format!("use one of: {}", known.join(", "))
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> ConnectionConfig {
        toml::from_str(
            r#"
base_url = "https://tickets.example/"
auth = { bearer = "{{ secret('T') }}" }
headers = { accept = "application/json", "x-team" = "ops" }
timeout = "15s"
"#,
        )
        .unwrap()
    }

    fn request(toml_text: &str) -> RequestConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn a_task_is_made_whole_with_its_connection() {
        let mut p = Problems::default();
        let r = conn().apply(
            &request(
                "uri = \"/api/incident\"\nheaders = { \"x-team\" = \"sre\" }\nconnection = \"t\"",
            ),
            None,
            "flows[0].tasks[0]",
            &mut p,
        );
        assert!(p.is_empty());
        assert_eq!(r.uri, "https://tickets.example/api/incident");
        assert_eq!(r.headers["accept"], "application/json");
        assert_eq!(r.headers["x-team"], "sre", "the task's own header wins");
        assert!(matches!(r.auth, Some(AuthConfig::Bearer(_))));
        assert_eq!(r.timeout.get(), std::time::Duration::from_secs(15));
        assert_eq!(r.connection, None);
        let own = conn().apply(&request("uri = \"x\"\ntimeout = \"2s\""), None, "t", &mut p);
        assert_eq!(own.timeout.get(), std::time::Duration::from_secs(2));
        assert_eq!(conn().test_request(None).uri, "https://tickets.example");
    }

    #[test]
    fn a_whole_url_or_an_unknown_name_is_refused_with_the_key() {
        let mut p = Problems::default();
        conn().apply(
            &request("uri = \"https://other.example/x\""),
            None,
            "flows[0].tasks[1]",
            &mut p,
        );
        let mut r = request("uri = \"/x\"\nconnection = \"jira\"");
        let mut connections = BTreeMap::new();
        connections.insert("tickets".to_string(), conn());
        resolve(&mut r, &connections, &BTreeMap::new(), "pollers[0]", &mut p);
        let text: Vec<String> = p.iter().map(|x| x.to_string()).collect();
        assert!(text[0].contains("flows[0].tasks[1].uri"), "{text:?}");
        assert!(
            text[1].contains("pollers[0].connection") && text[1].contains("tickets"),
            "{text:?}"
        );
    }
}
