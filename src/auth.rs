//! Authentication: one variant per scheme, each in its own file with the same verbs
//! (`build` from config, `verify` a request).
//!
//! Where each runs in the data path: `url_key` right after the route matches (every
//! failure is a 404, so a guess reveals nothing); header-only schemes before the body is
//! read; body schemes over the bytes as received, before any parsing. Every comparison
//! against a secret runs in constant time.

mod url_key;

use std::time::Duration;

use serde::Deserialize;

use crate::config::{Environment, Problems};

pub use url_key::{UrlKey, UrlKeyConfig};

/// `auth` in a hook's config: `{ scheme = "…", … }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "scheme", rename_all = "snake_case")]
pub enum AuthConfig {
    /// Anyone may post. Use only behind another gate.
    None(NoneConfig),
    /// The secret is the last path segment: `/hooks/{id}/{key}`.
    UrlKey(UrlKeyConfig),
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
}

impl AuthConfig {
    /// The ack timeout a scheme's provider preset implies, if any.
    pub fn default_ack_timeout(&self) -> Option<Duration> {
        match self {
            AuthConfig::None(_) | AuthConfig::UrlKey(_) => None,
        }
    }

    /// Builds the authenticator; `at` is the TOML path for messages.
    pub fn build(&self, at: &str, env: &Environment, p: &mut Problems) -> Option<Auth> {
        match self {
            AuthConfig::None(_) => Some(Auth::None),
            AuthConfig::UrlKey(c) => c.build(at, env, p).map(Auth::UrlKey),
        }
    }
}

impl Auth {
    /// The `authscheme` recorded in events.
    pub fn scheme(&self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::UrlKey(_) => "url_key",
        }
    }

    /// Whether the last path segment is the secret.
    pub fn key_in_path(&self) -> bool {
        matches!(self, Auth::UrlKey(_))
    }

    /// Header names that carry this scheme's secret, to redact in events.
    pub fn secret_headers(&self) -> Vec<String> {
        Vec::new()
    }

    /// Query parameters that carry this scheme's secret, to redact in events.
    pub fn secret_query_params(&self) -> Vec<String> {
        Vec::new()
    }
}
