//! `url_key`: the secret is the last segment of the URL, `/hooks/{id}/{key}`, as Kestra's
//! webhook trigger does it. Checked first, right after routing; every failure (wrong or
//! missing key, whatever the method or size) is answered 404 like an unknown hook.

use std::time::SystemTime;

use serde::Deserialize;

use crate::config::{Environment, Problems, SecretRef, SecretSet};

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
        if self.secrets.is_empty() {
            p.push(
                format!("{at}.secrets"),
                "url_key needs at least one key",
                "add one, like secrets = [{ env = \"MY_HOOK_KEY\" }]",
            );
            return None;
        }
        let mut secrets = Vec::new();
        for (i, r) in self.secrets.iter().enumerate() {
            match r.resolve(env) {
                Ok(s) => {
                    let ok = s.expose().len() <= MAX_KEY_LEN
                        && s.expose().iter().all(|b| {
                            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
                        });
                    if ok {
                        secrets.push(s);
                    } else {
                        p.push(
                            format!("{at}.secrets[{i}]"),
                            "a URL key must be 1 to 256 URL-safe characters (letters, digits, '-', '_', '.', '~')",
                            "generate one with `openssl rand -hex 32`",
                        );
                    }
                }
                Err(e) => p.push(format!("{at}.secrets[{i}]"), e, "fix the secret reference"),
            }
        }
        let now = std::time::SystemTime::now();
        if !secrets.is_empty() && secrets.iter().all(|s| !s.is_active(now)) {
            p.push(
                format!("{at}.secrets"),
                "every key has expired, so the hook would answer 404 to everyone",
                "add a current key, or remove `expires` from one",
            );
            return None;
        }
        (secrets.len() == self.secrets.len()).then(|| UrlKey {
            keys: SecretSet::new(&secrets),
        })
    }
}

impl UrlKey {
    /// Whether `presented` (the raw last path segment) is an active key.
    pub fn verify(&self, presented: &str, now: SystemTime) -> bool {
        // Over-long input is refused without hashing it; the length of a guess is the
        // guesser's own knowledge, so this leaks nothing.
        presented.len() <= MAX_KEY_LEN && self.keys.matches(presented.as_bytes(), now)
    }
}
