//! Provider handshakes and custom success answers: what some providers need before they
//! will deliver to a hook at all, and what others expect in place of hookgate's `202`.
//!
//! - `meta`: Meta's `GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`; the
//!   challenge is echoed when the verify token matches (constant time), else 403.
//! - `microsoft_graph`: Graph's `POST ?validationToken=…`; the token is echoed as text.
//! - `slack`: the Events API `url_verification`; its `challenge` is echoed, after the
//!   signature check.
//! - `zoom`: `endpoint.url_validation`; answered with the `plainToken` and its HMAC under
//!   the hook's secret, after the signature check.
//!
//! Meta's and Graph's handshakes carry no signature, so they are answered before
//! authentication and never publish. Slack's and Zoom's are authenticated and publish an
//! event only when `publish = true`.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::auth::Auth;
use crate::json::Pointer;
use hookgate_common::config::{Environment, Problems, SecretRef, SecretSet};

/// Longest challenge or token echoed back.
const MAX_ECHO: usize = 1024;
/// Largest body inspected for a handshake; handshakes are small.
const MAX_HANDSHAKE_BODY: usize = 16 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandshakeConfig {
    /// `slack`, `meta`, `microsoft_graph` or `zoom`.
    pub provider: Provider,
    /// Meta's verify token, the one entered in the app dashboard.
    pub verify_token: Option<SecretRef>,
    /// Also publish the (authenticated) handshake request as an event.
    #[serde(default)]
    pub publish: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Slack,
    Meta,
    MicrosoftGraph,
    Zoom,
}

/// A fixed answer to send instead of `202 {"id": …}` once an event is stored, e.g. TwiML
/// for Twilio. The event id travels in the `hookgate-event-id` header.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseConfig {
    /// A 2xx status; default 200.
    #[serde(default = "default_status")]
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
}

fn default_status() -> u16 {
    200
}

/// A built handshake.
#[derive(Debug)]
pub struct Handshake {
    provider: Provider,
    verify_token: Option<SecretSet>,
    publish: bool,
}

/// A built success answer.
#[derive(Debug, Clone)]
pub struct SuccessResponse {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

/// What a handshake check decided.
pub enum Outcome {
    /// Not a handshake: carry on.
    Continue,
    /// Answer this and stop.
    Answer(Response<Full<Bytes>>),
    /// Publish the event as usual, then answer this instead of the 202.
    PublishThenAnswer(Response<Full<Bytes>>),
}

impl HandshakeConfig {
    pub fn build(
        &self,
        at: &str,
        auth: &crate::auth::AuthConfig,
        env: &Environment,
        p: &mut Problems,
    ) -> Option<Handshake> {
        let verify_token = match (self.provider, &self.verify_token) {
            (Provider::Meta, Some(r)) => match r.resolve(env) {
                Ok(s) => Some(SecretSet::new(&[s])),
                Err(e) => {
                    p.secret(format!("{at}.verify_token"), e);
                    return None;
                }
            },
            (Provider::Meta, None) => {
                p.push(
                    format!("{at}.verify_token"),
                    "Meta's handshake needs the verify token",
                    "add verify_token = { env = \"META_VERIFY_TOKEN\" }",
                );
                return None;
            }
            (_, Some(_)) => {
                p.push(
                    format!("{at}.verify_token"),
                    "only the meta handshake takes a verify token",
                    "remove it",
                );
                return None;
            }
            (_, None) => None,
        };
        // Read from the config, so that a hook whose secrets are missing is not also told
        // that its auth is not hmac.
        let signed = matches!(auth, crate::auth::AuthConfig::Hmac(_));
        match self.provider {
            Provider::Slack | Provider::Zoom if !signed => {
                p.push(
                    at,
                    "this handshake is answered after the signature check, but the hook's auth is not hmac",
                    "use auth = { scheme = \"hmac\", preset = \"slack\" } (or \"zoom\")",
                );
                return None;
            }
            Provider::Meta | Provider::MicrosoftGraph if self.publish => {
                p.push(
                    format!("{at}.publish"),
                    "this provider's handshake is unsigned, so it is never published",
                    "remove publish",
                );
                return None;
            }
            _ => {}
        }
        Some(Handshake {
            provider: self.provider,
            verify_token,
            publish: self.publish,
        })
    }
}

impl ResponseConfig {
    pub fn build(&self, at: &str, p: &mut Problems) -> Option<SuccessResponse> {
        let status = StatusCode::from_u16(self.status)
            .ok()
            .filter(StatusCode::is_success);
        if status.is_none() {
            p.push(
                format!("{at}.status"),
                format!("{} is not a 2xx status", self.status),
                "use a success status such as 200",
            );
        }
        let mut headers = Vec::new();
        for (k, v) in &self.headers {
            match (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                (Ok(k), Ok(v)) => headers.push((k, v)),
                _ => p.push(
                    format!("{at}.headers.\"{k}\""),
                    "is not a valid header",
                    "use a header name and printable text",
                ),
            }
        }
        Some(SuccessResponse {
            status: status?,
            headers,
            body: Bytes::from(self.body.clone()),
        })
    }
}

impl SuccessResponse {
    /// The configured answer, with the event id in a header.
    pub fn respond(&self, event_id: &str) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(self.body.clone()));
        *resp.status_mut() = self.status;
        for (k, v) in &self.headers {
            resp.headers_mut().insert(k.clone(), v.clone());
        }
        if let Ok(v) = HeaderValue::from_str(event_id) {
            resp.headers_mut()
                .insert(HeaderName::from_static("hookgate-event-id"), v);
        }
        resp
    }
}

impl Handshake {
    /// Handshakes answered before authentication (unsigned ones).
    pub fn before_auth(&self, parts: &Parts, now: SystemTime) -> Outcome {
        let query = parts.uri.query().unwrap_or("");
        match self.provider {
            Provider::Meta if parts.method == Method::GET => {
                let mut mode = None;
                let mut token = None;
                let mut challenge = None;
                for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                    match k.as_ref() {
                        "hub.mode" => mode = Some(v),
                        "hub.verify_token" => token = Some(v),
                        "hub.challenge" => challenge = Some(v),
                        _ => {}
                    }
                }
                if mode.as_deref() != Some("subscribe") {
                    return Outcome::Continue;
                }
                let known = self.verify_token.as_ref().expect("built with a token");
                match (token, challenge) {
                    (Some(t), Some(c))
                        if known.matches(t.as_bytes(), now) && c.len() <= MAX_ECHO =>
                    {
                        Outcome::Answer(text(StatusCode::OK, c.into_owned()))
                    }
                    _ => {
                        Outcome::Answer(text(StatusCode::FORBIDDEN, "verify token mismatch".into()))
                    }
                }
            }
            Provider::MicrosoftGraph if parts.method == Method::POST => {
                match form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "validationToken")
                {
                    Some((_, token)) if token.len() <= MAX_ECHO => {
                        Outcome::Answer(text(StatusCode::OK, token.into_owned()))
                    }
                    Some(_) => Outcome::Answer(text(
                        StatusCode::BAD_REQUEST,
                        "validation token too long".into(),
                    )),
                    None => Outcome::Continue,
                }
            }
            _ => Outcome::Continue,
        }
    }

    /// Handshakes answered after the signature check.
    pub fn after_auth(&self, auth: &Auth, body: &[u8], now: SystemTime) -> Outcome {
        if body.len() > MAX_HANDSHAKE_BODY {
            return Outcome::Continue;
        }
        let answer = match self.provider {
            Provider::Slack => {
                let [kind, challenge] = scan(body, ["/type", "/challenge"]);
                match (kind.as_deref(), challenge) {
                    (Some("url_verification"), Some(c)) if c.len() <= MAX_ECHO => {
                        json(serde_json::json!({ "challenge": c }))
                    }
                    _ => return Outcome::Continue,
                }
            }
            Provider::Zoom => {
                let [event, plain] = scan(body, ["/event", "/payload/plainToken"]);
                match (event.as_deref(), plain, auth) {
                    (Some("endpoint.url_validation"), Some(plain), Auth::Hmac(h))
                        if plain.len() <= MAX_ECHO =>
                    {
                        let Some(encrypted) = h.hex_digest(plain.as_bytes(), now) else {
                            return Outcome::Continue;
                        };
                        json(
                            serde_json::json!({ "plainToken": plain, "encryptedToken": encrypted }),
                        )
                    }
                    _ => return Outcome::Continue,
                }
            }
            Provider::Meta | Provider::MicrosoftGraph => return Outcome::Continue,
        };
        if self.publish {
            Outcome::PublishThenAnswer(answer)
        } else {
            Outcome::Answer(answer)
        }
    }
}

fn scan<const N: usize>(body: &[u8], pointers: [&str; N]) -> [Option<String>; N] {
    let parsed: Vec<Pointer> = pointers.iter().filter_map(|p| Pointer::parse(p)).collect();
    let refs: Vec<&Pointer> = parsed.iter().collect();
    let found = crate::json::scan(body, &refs).unwrap_or_else(|_| vec![None; N]);
    std::array::from_fn(|i| found.get(i).cloned().flatten())
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    // The body echoes request text: never let a browser sniff it into markup.
    resp.headers_mut().insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    resp
}

fn json(v: serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(v.to_string())));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
