//! Authentication: one variant per scheme, each in its own file with the same verbs
//! (`build` from config, `verify` a request).
//!
//! Where each runs in the data path: `url_key` right after the route matches (every
//! failure is a 404, so a guess reveals nothing); header-only schemes (`basic`, `api_key`,
//! `token`) before the body is read; `hmac` over the body bytes as received, before any
//! parsing. Every comparison against a secret runs in constant time, against every
//! active secret, with no early exit.

mod api_key;
mod basic;
pub mod hmac;
mod url_key;

use std::time::{Duration, SystemTime};

use hookgate_common::config::Match;
use http::request::Parts;
use http::HeaderValue;
use serde::Deserialize;

use hookgate_common::config::{Environment, Problems, SecretRef, SecretSet};

pub use api_key::{ApiKey, ApiKeyConfig, TokenConfig};
pub use basic::{Basic, BasicConfig};
pub use hmac::{Hmac, HmacConfig};
pub use url_key::{UrlKey, UrlKeyConfig};

/// `auth` in a hook's config: `{ scheme = "…", … }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "scheme", rename_all = "snake_case")]
pub enum AuthConfig {
    /// Anyone may post. Use only behind another gate.
    None(NoneConfig),
    /// The secret is the last path segment: `/hooks/{id}/{key}`.
    UrlKey(UrlKeyConfig),
    /// HTTP basic authentication.
    Basic(BasicConfig),
    /// A key in a header and/or a query parameter.
    ApiKey(ApiKeyConfig),
    /// A header whose value is the shared secret (GitLab's `X-Gitlab-Token`).
    Token(TokenConfig),
    /// An HMAC signature over the body (and more), generic or from a provider preset.
    Hmac(Box<HmacConfig>),
}

/// `{ scheme = "none" }` takes no options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoneConfig {}

/// A built authenticator.
#[derive(Debug)]
pub enum Auth {
    None,
    UrlKey(UrlKey),
    Basic(Basic),
    /// `api_key` and `token` share their checker; the name is the scheme's.
    ApiKey(ApiKey),
    Hmac(Hmac),
}

/// Why a request was not authenticated: the label on the failure metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No credential where the scheme expects one.
    Missing,
    /// A credential that cannot be parsed.
    Malformed,
    /// A well-formed credential that matches no secret.
    Mismatch,
    /// A credential that matches only a secret past its `expires`.
    Expired,
    /// A signed timestamp outside the tolerance.
    Timestamp,
    /// A delivery already accepted.
    Replay,
}

impl Failure {
    /// In words, naming what was presented (`signature`, `credential`, `URL key`).
    pub fn describe(self, what: &str) -> String {
        match self {
            Failure::Missing => format!("missing {what}"),
            Failure::Malformed => format!("malformed {what}"),
            Failure::Mismatch => format!("{what} mismatch"),
            Failure::Expired => format!("{what} matches only an expired secret"),
            Failure::Timestamp => "signed timestamp outside the tolerance".to_string(),
            Failure::Replay => "delivery already accepted".to_string(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Malformed => "malformed",
            Failure::Mismatch => "mismatch",
            Failure::Expired => "expired",
            Failure::Timestamp => "timestamp",
            Failure::Replay => "replay",
        }
    }
}

/// A secret comparison's outcome as an authentication verdict.
pub fn verdict(m: Match) -> Result<(), Failure> {
    match m {
        Match::Active => Ok(()),
        Match::Expired => Err(Failure::Expired),
        Match::None => Err(Failure::Mismatch),
    }
}

/// What a sender presents to authenticate, as `hookgate sign` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// A path segment to append (`url_key`).
    pub path_segment: Option<String>,
    /// A query parameter to add.
    pub query: Option<(String, String)>,
    pub headers: Vec<(String, String)>,
}

/// What a body check established, for the event's `signed` and `deliveryid`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    /// Which parts the signature covered, e.g. `body,timestamp`.
    pub signed: Option<std::sync::Arc<str>>,
    /// The provider's delivery id, when the scheme knows where it is.
    pub delivery_id: Option<String>,
}

impl AuthConfig {
    /// The ack timeout a provider preset implies: below the provider's own deadline.
    pub fn default_ack_timeout(&self) -> Option<Duration> {
        match self {
            AuthConfig::Hmac(c) => c.default_ack_timeout(),
            AuthConfig::Token(c) => c.default_ack_timeout(),
            _ => None,
        }
    }

    /// Builds the authenticator; `at` is the TOML path for messages.
    pub fn build(&self, at: &str, env: &Environment, p: &mut Problems) -> Option<Auth> {
        match self {
            AuthConfig::None(_) => Some(Auth::None),
            AuthConfig::UrlKey(c) => c.build(at, env, p).map(Auth::UrlKey),
            AuthConfig::Basic(c) => c.build(at, env, p).map(Auth::Basic),
            AuthConfig::ApiKey(c) => c.build(at, env, p).map(Auth::ApiKey),
            AuthConfig::Token(c) => c.build(at, env, p).map(Auth::ApiKey),
            AuthConfig::Hmac(c) => c.build(at, env, p).map(Auth::Hmac),
        }
    }
}

impl Auth {
    /// The `authscheme` recorded in events.
    pub fn scheme(&self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::UrlKey(_) => "url_key",
            Auth::Basic(_) => "basic",
            Auth::ApiKey(k) => k.scheme(),
            Auth::Hmac(_) => "hmac",
        }
    }

    /// A preset's name, for listings.
    pub fn preset(&self) -> Option<&'static str> {
        match self {
            Auth::Hmac(h) => h.preset(),
            Auth::ApiKey(k) => k.preset(),
            _ => None,
        }
    }

    /// Whether the last path segment is the secret.
    pub fn key_in_path(&self) -> bool {
        matches!(self, Auth::UrlKey(_))
    }

    /// Checks what the request head carries (header-only schemes); runs before the body
    /// is read.
    pub fn verify_head(&self, parts: &Parts, now: SystemTime) -> Result<(), Failure> {
        match self {
            Auth::Basic(b) => b.verify(parts, now),
            Auth::ApiKey(k) => k.verify(parts, now),
            Auth::None | Auth::UrlKey(_) | Auth::Hmac(_) => Ok(()),
        }
    }

    /// The remembered deliveries, for schemes that know a delivery id.
    pub fn replay(&self) -> Option<&crate::replay::ReplayGuard> {
        match self {
            Auth::Hmac(h) => h.replay(),
            _ => None,
        }
    }

    /// Takes over `prev`'s remembered deliveries (a reload that left the hook's replay
    /// settings alone); says whether it did.
    pub fn keep_replay(&mut self, prev: &Auth) -> bool {
        match (self, prev) {
            (Auth::Hmac(next), Auth::Hmac(old)) => next.keep_replay(old),
            _ => false,
        }
    }

    /// Whether the scheme needs the body (a signature over it).
    pub fn needs_body(&self) -> bool {
        matches!(self, Auth::Hmac(_))
    }

    /// Checks a signature over the body bytes as received.
    pub fn verify_body(
        &self,
        parts: &Parts,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, Failure> {
        match self {
            Auth::Hmac(h) => h.verify(parts, body, now),
            _ => Ok(Verified::default()),
        }
    }

    /// The credentials a sender would present now for this request. `None` when no
    /// secret is active.
    pub fn sign(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now: SystemTime,
    ) -> Option<Credentials> {
        let mut c = Credentials::default();
        match self {
            Auth::None => {}
            Auth::UrlKey(k) => c.path_segment = Some(k.sign(now)?),
            Auth::Basic(b) => c.headers.push(("authorization".into(), b.sign(now)?)),
            Auth::ApiKey(k) => return k.sign(now),
            Auth::Hmac(h) => c.headers = h.sign_now(method, path_and_query, body, now)?,
        }
        Some(c)
    }

    /// The `WWW-Authenticate` challenge sent with a 401, if the scheme has one.
    pub fn challenge(&self) -> Option<HeaderValue> {
        match self {
            Auth::Basic(b) => Some(b.challenge()),
            _ => None,
        }
    }

    /// Header names that carry this scheme's secret, to redact in events.
    pub fn secret_headers(&self) -> Vec<String> {
        match self {
            Auth::ApiKey(k) => k.header_name().into_iter().collect(),
            _ => Vec::new(),
        }
    }

    /// Query parameters that carry this scheme's secret, to redact in events.
    pub fn secret_query_params(&self) -> Vec<String> {
        match self {
            Auth::ApiKey(k) => k.query_name().into_iter().collect(),
            _ => Vec::new(),
        }
    }
}

/// Resolves a list of secret references, reporting each bad one under `at.secrets[i]`.
/// `None` if any failed or the list is empty.
fn resolve_secrets(
    refs: &[SecretRef],
    at: &str,
    env: &Environment,
    p: &mut Problems,
) -> Option<Vec<hookgate_common::config::Secret>> {
    if refs.is_empty() {
        p.push(
            format!("{at}.secrets"),
            "at least one secret is needed",
            "add one, like secrets = [{ env = \"MY_HOOK_SECRET\" }]",
        );
        return None;
    }
    let mut out = Vec::with_capacity(refs.len());
    for (i, r) in refs.iter().enumerate() {
        match r.resolve(env) {
            Ok(s) => out.push(s),
            Err(e) => p.secret(format!("{at}.secrets[{i}]"), e),
        }
    }
    if out.len() != refs.len() {
        return None;
    }
    let now = SystemTime::now();
    if out.iter().all(|s| !s.is_active(now)) {
        p.push(
            format!("{at}.secrets"),
            "every secret has expired, so no request could authenticate",
            "add a current secret, or remove `expires` from one",
        );
        return None;
    }
    Some(out)
}

/// A set of secrets for matching presented credentials in constant time.
fn secret_set(
    refs: &[SecretRef],
    at: &str,
    env: &Environment,
    p: &mut Problems,
) -> Option<SecretSet> {
    resolve_secrets(refs, at, env, p).map(|s| SecretSet::new(&s))
}
