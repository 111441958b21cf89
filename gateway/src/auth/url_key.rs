//! `url_key`: the secret is the last segment of the URL, `/hooks/{id}/{key}`, as Kestra's
//! webhook trigger does it. Checked first, right after routing; every failure (wrong or
//! missing key, whatever the method or size) is answered 404 like an unknown hook.

use std::time::SystemTime;

use serde::Deserialize;

use super::Failure;
use hookgate_common::config::{Environment, Problems, SecretRef, SecretSet};

/// The longest key accepted, as Kestra allows.
pub const MAX_KEY_LEN: usize = 256;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlKeyConfig {
    /// Accepted keys; several during a rotation, each with an optional `expires`.
    pub secrets: Vec<SecretRef>,
}

/// The built checker.
#[derive(Debug)]
pub struct UrlKey {
    keys: SecretSet,
}

impl UrlKeyConfig {
    pub fn build(&self, at: &str, env: &Environment, p: &mut Problems) -> Option<UrlKey> {
        let secrets = super::resolve_secrets(&self.secrets, at, env, p)?;
        let mut ok = true;
        for (i, s) in secrets.iter().enumerate() {
            let key = s.expose();
            if key.len() > MAX_KEY_LEN
                || !key
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(b))
            {
                ok = false;
                p.push(
                    format!("{at}.secrets[{i}]"),
                    "a URL key must be 1 to 256 URL-safe characters (letters, digits, '-', '_', '.', '~')",
                    "generate one with `openssl rand -hex 32`",
                );
            }
        }
        ok.then(|| UrlKey {
            keys: SecretSet::new(&secrets),
        })
    }
}

impl UrlKey {
    /// The key a sender puts in the URL now.
    pub fn sign(&self, now: SystemTime) -> Option<String> {
        Some(String::from_utf8_lossy(self.keys.first_active(now)?.expose()).into_owned())
    }

    /// Checks `presented` (the raw last path segment; `None` when the path has none)
    /// against the active keys.
    pub fn verify(&self, presented: Option<&str>, now: SystemTime) -> Result<(), Failure> {
        let presented = presented.ok_or(Failure::Missing)?;
        // Over-long input is refused without hashing it; the length of a guess is the
        // guesser's own knowledge, so this leaks nothing.
        if presented.len() > MAX_KEY_LEN {
            return Err(Failure::Mismatch);
        }
        super::verdict(self.keys.check(presented.as_bytes(), now))
    }
}
