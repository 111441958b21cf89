//! OAuth 2.0 access tokens for outbound requests (RFC 6749): the client credentials grant
//! (section 4.4), which most APIs use machine to machine, and the refresh token grant
//! (section 6).
//!
//! A request that carries a [`Grant`] gets `Authorization: Bearer <token>` from the
//! client at send time. Tokens are cached per grant (token URL, client, scope, audience
//! and parameters) for as long as the token endpoint says (`expires_in`, 5 minutes when it
//! says nothing), less a skew of a quarter of that, at most 30 s. Fetching is single
//! flight: any number of requests that find no valid token wait for one token request. A
//! `401` from the API drops the token it was sent with, and the request is sent once more
//! with a fresh one.
//!
//! A refresh token the endpoint rotates (returns a new one) replaces the old one for
//! later refreshes; when the grant names a file, the new one is written there atomically
//! (a temporary file in the same directory, then a rename), so a restart uses it.
//!
//! Access and refresh tokens never leave this module except in the `Authorization`
//! header: they are not in the rendered request (so not in execution records), nor in
//! logs, metrics or errors. Token endpoint errors name its host, status and the OAuth
//! `error` code only.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::Method;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{OutboundError, Request};

/// A token's lifetime when the endpoint gives none.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// The most a token is renewed before its expiry.
pub const MAX_SKEW: Duration = Duration::from_secs(30);

/// How the client proves itself to the token endpoint (RFC 6749 section 2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP basic with the form-encoded id and secret (the RFC's preference).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Body,
}

/// A rendered OAuth2 grant: everything needed to ask for a token.
#[derive(Clone)]
pub struct Grant {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub scope: Option<String>,
    pub audience: Option<String>,
    /// Other form parameters of the token request.
    pub params: Vec<(String, String)>,
    pub client_auth: ClientAuth,
    /// For the refresh token grant: the refresh token, and the file to keep a rotated
    /// one in. Without it the grant is client credentials.
    pub refresh_token: Option<String>,
    pub refresh_file: Option<PathBuf>,
    pub timeout: Duration,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Grant {
    /// What identifies the grant's tokens: requests with the same key share them. A
    /// digest, so the cache holds no secret in its keys.
    fn key(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [
            self.token_url.as_str(),
            &self.client_id,
            &self.client_secret,
            self.scope.as_deref().unwrap_or(""),
            self.audience.as_deref().unwrap_or(""),
            self.refresh_token
                .as_deref()
                .map_or("client_credentials", |_| "refresh_token"),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        for (k, v) in &self.params {
            h.update((k.len() as u64).to_be_bytes());
            h.update(k.as_bytes());
            h.update((v.len() as u64).to_be_bytes());
            h.update(v.as_bytes());
        }
        h.finalize().into()
    }

    /// The token request of the client credentials or refresh token grant.
    fn token_request(&self, refresh_token: Option<&str>) -> Request {
        match refresh_token {
            Some(token) => {
                self.request_token(&[("grant_type", "refresh_token"), ("refresh_token", token)])
            }
            None => self.request_token(&[("grant_type", "client_credentials")]),
        }
    }

    /// A form POST to the token URL: `grant` (the grant type and its parameters), the
    /// scope, audience and other parameters, and the client's authentication.
    pub fn request_token(&self, grant: &[(&str, &str)]) -> Request {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in grant {
            form.append_pair(k, v);
        }
        if let Some(scope) = &self.scope {
            form.append_pair("scope", scope);
        }
        if let Some(audience) = &self.audience {
            form.append_pair("audience", audience);
        }
        for (k, v) in &self.params {
            form.append_pair(k, v);
        }
        let mut req = Request::new(Method::POST, &self.token_url)
            .timeout(self.timeout)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json");
        match self.client_auth {
            ClientAuth::Basic => {
                let encode =
                    |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let pair = format!(
                    "{}:{}",
                    encode(&self.client_id),
                    encode(&self.client_secret)
                );
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                req = req.header("authorization", format!("Basic {encoded}"));
            }
            ClientAuth::Body => {
                form.append_pair("client_id", &self.client_id);
                form.append_pair("client_secret", &self.client_secret);
            }
        }
        req.body(form.finish())
    }
}

/// An access token and when to stop using it.
#[derive(Clone)]
struct Token {
    access: Arc<str>,
    renew_at: Instant,
}

/// One grant's state.
#[derive(Default)]
struct Slot {
    /// Held while a token is fetched: the single flight.
    fetching: tokio::sync::Mutex<()>,
    token: Mutex<Option<Token>>,
    /// A refresh token the endpoint rotated, newer than the configured one.
    rotated: Mutex<Option<String>>,
}

/// The tokens of every grant a client has used.
#[derive(Default)]
pub struct Tokens {
    slots: Mutex<HashMap<[u8; 32], Arc<Slot>>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
}

impl Tokens {
    fn slot(&self, grant: &Grant) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(slots.entry(grant.key()).or_default())
    }

    /// A valid access token for `grant`, other than `stale` (one an API just refused).
    /// `send` sends the token request (the outbound client, with its policy).
    pub async fn token<F, Fut>(
        &self,
        grant: &Grant,
        stale: Option<&str>,
        send: F,
    ) -> Result<Arc<str>, OutboundError>
    where
        F: FnOnce(Request) -> Fut,
        Fut: std::future::Future<Output = Result<super::Response, OutboundError>>,
    {
        let slot = self.slot(grant);
        let usable = |slot: &Slot| -> Option<Arc<str>> {
            let token = slot.token.lock().unwrap_or_else(PoisonError::into_inner);
            token
                .as_ref()
                .filter(|t| Instant::now() < t.renew_at && Some(&*t.access) != stale)
                .map(|t| Arc::clone(&t.access))
        };
        if let Some(token) = usable(&slot) {
            return Ok(token);
        }
        let _flight = slot.fetching.lock().await;
        // Another request may have fetched one while this one waited.
        if let Some(token) = usable(&slot) {
            return Ok(token);
        }
        let refresh = grant.refresh_token.as_ref().map(|configured| {
            slot.rotated
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .unwrap_or_else(|| configured.clone())
        });
        let started = Instant::now();
        let resp = send(grant.token_request(refresh.as_deref())).await?;
        let host = url::Url::parse(&resp.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        if !(200..300).contains(&resp.status) {
            let code = serde_json::from_slice::<ErrorResponse>(&resp.body)
                .map(|e| format!(" ({})", e.error.chars().take(64).collect::<String>()))
                .unwrap_or_default();
            return Err(OutboundError::OAuth2 {
                message: format!("token endpoint `{host}` answered {}{code}", resp.status),
                transient: matches!(resp.status, 408 | 429 | 500..=599),
            });
        }
        let parsed: TokenResponse =
            serde_json::from_slice(&resp.body).map_err(|_| OutboundError::OAuth2 {
                message: format!("token endpoint `{host}` answered without an access_token"),
                transient: false,
            })?;
        let lifetime = parsed
            .expires_in
            .as_ref()
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .map_or(DEFAULT_LIFETIME, Duration::from_secs);
        let skew = (lifetime / 4).min(MAX_SKEW);
        let access: Arc<str> = Arc::from(parsed.access_token);
        *slot.token.lock().unwrap_or_else(PoisonError::into_inner) = Some(Token {
            access: Arc::clone(&access),
            renew_at: started + lifetime - skew,
        });
        if let (Some(new), Some(old)) = (parsed.refresh_token, refresh) {
            if new != old {
                if let Some(path) = &grant.refresh_file {
                    if let Err(e) = write_atomically(path, new.as_bytes()) {
                        tracing::warn!(file = %path.display(), error = %e, "the rotated refresh token could not be written; it is kept in memory");
                    }
                }
                *slot.rotated.lock().unwrap_or_else(PoisonError::into_inner) = Some(new);
            }
        }
        tracing::debug!(%host, lifetime_s = lifetime.as_secs(), "fetched an OAuth2 access token");
        Ok(access)
    }
}

/// Replaces `path` with `bytes` at once: a reader sees the old file or the new one.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = dir {
        // The rename itself made durable.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            token_url: "https://auth.example/token".into(),
            client_id: "svc id".into(),
            client_secret: "s3cr:t".into(),
            scope: Some("incident.write".into()),
            audience: None,
            params: vec![("resource".into(), "tickets".into())],
            client_auth: ClientAuth::Basic,
            refresh_token: None,
            refresh_file: None,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn the_token_request_follows_rfc_6749() {
        let req = grant().token_request(None);
        assert_eq!(req.method, Method::POST);
        let body = String::from_utf8(req.body.to_vec()).unwrap();
        assert_eq!(
            body,
            "grant_type=client_credentials&scope=incident.write&resource=tickets"
        );
        let auth = req
            .headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap();
        // Form-encoded, then base64: `svc+id:s3cr%3At`.
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.1.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(decoded, b"svc+id:s3cr%3At");

        let body_auth = Grant {
            client_auth: ClientAuth::Body,
            ..grant()
        }
        .token_request(Some("r-1"));
        let body = String::from_utf8(body_auth.body.to_vec()).unwrap();
        assert!(body.starts_with("grant_type=refresh_token&refresh_token=r-1&"));
        assert!(body.ends_with("client_id=svc+id&client_secret=s3cr%3At"));
        assert!(!body_auth.headers.iter().any(|(n, _)| n == "authorization"));
    }

    #[test]
    fn grants_that_differ_do_not_share_tokens() {
        assert_eq!(grant().key(), grant().key());
        let other_scope = Grant {
            scope: Some("incident.read".into()),
            ..grant()
        };
        assert_ne!(grant().key(), other_scope.key());
    }

    #[test]
    fn a_rotated_refresh_token_replaces_the_file_at_once() {
        let dir = std::env::temp_dir().join(format!("hookgate-oauth2-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("refresh");
        std::fs::write(&file, "old").unwrap();
        write_atomically(&file, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "new");
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
