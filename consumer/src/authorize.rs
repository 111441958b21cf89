//! `hookgate-consumer oauth2 authorize --connection NAME`: the authorization code grant
//! with PKCE (RFC 6749 section 4.1, RFC 7636), run once on the command line to obtain the
//! refresh token a connection's `oauth2` auth then uses: Workato's "Connect" button.
//!
//! 1. It prints the authorization URL: `response_type=code`, the client id, the redirect
//!    URI `http://127.0.0.1:PORT/callback` (PORT is the connection's `redirect_port`),
//!    the scope, a random `state` and the S256 `code_challenge` of a random verifier.
//! 2. It serves that redirect on loopback. A redirect whose `state` is not the one sent is
//!    refused (400) and the command keeps waiting; an `error` from the provider ends it.
//! 3. It exchanges the code (with the verifier) at the token endpoint, through the
//!    outbound client and its policy, and writes the refresh token to the connection's
//!    `refresh_token_file`, atomically, mode 0600.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::connection::ConnectionConfig;
use crate::outbound::oauth2::{write_atomically, Grant};
use crate::request::{AuthConfig, OAuth2Config};
use hookgate_expression::{Context, Engine, Template};

/// The redirect port unless the connection names one.
pub const DEFAULT_REDIRECT_PORT: u16 = 8976;

/// What the redirect brought back.
type Outcome = Result<String, String>;

/// Runs the grant for connection `name`; `announce` gets the authorization URL to open.
/// Returns the file the refresh token was written to.
pub async fn authorize(
    connections: &BTreeMap<String, ConnectionConfig>,
    engine: &Engine,
    policy: &crate::outbound::Policy,
    name: &str,
    wait: Duration,
    announce: impl FnOnce(&str),
) -> anyhow::Result<PathBuf> {
    let at = format!("connections.{name}.auth.oauth2");
    let config = oauth2_of(connections, name)?;
    let render = |key: &str, source: &str| -> anyhow::Result<String> {
        Template::compile(engine, &format!("{at}.{key}"), source)
            .and_then(|t| t.render(&Context::builder().build()))
            .map_err(|e| anyhow::anyhow!("{}", engine.mask(&e.to_string())))
    };
    let Some(authorization_url) = &config.authorization_url else {
        bail!(
            "{at}.authorization_url is not set (fix: give the provider's authorization endpoint)"
        );
    };
    let Some(file) = config.refresh_token_file.clone() else {
        bail!("{at}.refresh_token_file is not set (fix: name the file the refresh_token secret reads)");
    };
    let optional = |key: &str, source: &Option<String>| -> anyhow::Result<Option<String>> {
        source.as_deref().map(|s| render(key, s)).transpose()
    };
    let grant = Grant {
        token_url: render("token_url", &config.token_url)?,
        client_id: render("client_id", &config.client_id)?,
        client_secret: render("client_secret", &config.client_secret)?,
        scope: optional("scope", &config.scope)?,
        audience: optional("audience", &config.audience)?,
        params: Vec::new(),
        client_auth: config.client_auth,
        refresh_token: None,
        refresh_file: None,
        timeout: Duration::from_secs(30),
    };
    let port = config.redirect_port.unwrap_or(DEFAULT_REDIRECT_PORT);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("{at}.redirect_port: cannot listen on 127.0.0.1:{port}"))?;
    let redirect_uri = format!(
        "http://127.0.0.1:{}/callback",
        listener.local_addr()?.port()
    );

    let verifier = random_text(32);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    let state = random_text(16);
    let mut url = url::Url::parse(&render("authorization_url", authorization_url)?)
        .with_context(|| format!("{at}.authorization_url is not a URL"))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &grant.client_id)
            .append_pair("redirect_uri", &redirect_uri);
        if let Some(scope) = &grant.scope {
            q.append_pair("scope", scope);
        }
        q.append_pair("state", &state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
    }
    announce(url.as_str());

    let code = tokio::time::timeout(wait, redirect(listener, state))
        .await
        .map_err(|_| anyhow::anyhow!("no redirect came back within {wait:?}"))?
        .map_err(|e| anyhow::anyhow!("the authorization was refused: {e}"))?;
    let client = crate::outbound::Client::new(policy.clone());
    let exchange = grant.request_token(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", &redirect_uri),
        ("code_verifier", &verifier),
    ]);
    let response = client
        .send(exchange)
        .await
        .map_err(|e| anyhow::anyhow!("token endpoint: {}", engine.mask(&e.to_string())))?;
    if !(200..300).contains(&response.status) {
        bail!(
            "the token endpoint answered {} to the code exchange",
            response.status
        );
    }
    let body: serde_json::Value = serde_json::from_slice(&response.body)
        .context("the token endpoint's answer is not JSON")?;
    let Some(refresh) = body.get("refresh_token").and_then(|v| v.as_str()) else {
        bail!("the token endpoint gave no refresh_token (ask for offline access in `scope` or `params`)");
    };
    write_atomically(&file, refresh.as_bytes())
        .with_context(|| format!("writing the refresh token to {}", file.display()))?;
    Ok(file)
}

fn oauth2_of<'a>(
    connections: &'a BTreeMap<String, ConnectionConfig>,
    name: &str,
) -> anyhow::Result<&'a OAuth2Config> {
    let Some(conn) = connections.get(name) else {
        let known: Vec<&str> = connections.keys().map(String::as_str).collect();
        bail!(
            "no connection is named `{name}` (declared: {})",
            known.join(", ")
        );
    };
    match &conn.auth {
        Some(AuthConfig::OAuth2(o)) => Ok(o),
        _ => bail!(
            "connections.{name}.auth is not oauth2 (fix: give it auth = {{ oauth2 = {{ … }} }})"
        ),
    }
}

/// `bytes` random bytes as base64url text (PKCE's unreserved characters).
fn random_text(bytes: usize) -> String {
    let mut raw = Vec::with_capacity(bytes + 16);
    while raw.len() < bytes {
        raw.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    raw.truncate(bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// Serves the redirect until one carries the expected `state`: its `code`, or the
/// provider's `error`.
async fn redirect(listener: tokio::net::TcpListener, state: String) -> Outcome {
    let (tx, rx) = oneshot::channel::<Outcome>();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let state = Arc::new(state);
    let server = async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (tx, state) = (tx.clone(), state.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (status, text) = answer(&req, &state, &tx);
                    async move {
                        let mut resp = http::Response::new(Full::new(Bytes::from(text)));
                        *resp.status_mut() = status;
                        resp.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("text/plain; charset=utf-8"),
                        );
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    };
    tokio::select! {
        outcome = rx => outcome.unwrap_or_else(|_| Err("the redirect listener stopped".into())),
        () = server => Err("the redirect listener stopped".into()),
    }
}

/// The answer to one request to the redirect listener; a request that settles the grant
/// sends its outcome.
fn answer(
    req: &http::Request<hyper::body::Incoming>,
    state: &str,
    tx: &Mutex<Option<oneshot::Sender<Outcome>>>,
) -> (http::StatusCode, &'static str) {
    if req.uri().path() != "/callback" {
        return (http::StatusCode::NOT_FOUND, "not found\n");
    }
    let params: BTreeMap<String, String> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let sent = params
        .get("state")
        .map(String::as_bytes)
        .unwrap_or_default();
    if !same(sent, state.as_bytes()) {
        return (
            http::StatusCode::BAD_REQUEST,
            "hookgate: this redirect's state is not the one sent; it is ignored\n",
        );
    }
    let outcome = match (params.get("code"), params.get("error")) {
        (_, Some(error)) => Err(format!(
            "the provider answered `{}`",
            error.chars().take(64).collect::<String>()
        )),
        (Some(code), None) => Ok(code.clone()),
        (None, None) => Err("the redirect carried no code".into()),
    };
    let ok = outcome.is_ok();
    if let Some(tx) = tx
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        let _ = tx.send(outcome);
    }
    if ok {
        (
            http::StatusCode::OK,
            "hookgate: authorized. You can close this window.\n",
        )
    } else {
        (
            http::StatusCode::BAD_REQUEST,
            "hookgate: the authorization was refused.\n",
        )
    }
}

/// Compares two byte strings in constant time.
fn same(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}
