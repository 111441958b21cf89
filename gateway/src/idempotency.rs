//! Idempotency keys at ingress (the IETF `Idempotency-Key` draft): a hook may name a
//! header whose value identifies one operation of the sender's. The first request with
//! a key publishes; a repeat with the same key and the same body (SHA-256) is answered
//! as the first was, with its event id, and publishes nothing; the same key with another
//! body is refused with 422 and a problem+json body. A repeat that arrives while the
//! first is still publishing waits for it. Keys are remembered for `window`, at most
//! `capacity` of them, with the replay guard's machinery ([`crate::replay`]): salted
//! digests, never the keys themselves.
//!
//! ```toml
//! [[hooks]]
//! id = "payments"
//! topic = "payments"
//! auth = { scheme = "api_key", header = "x-api-key", secrets = [{ env = "PAYMENTS_KEY" }] }
//! idempotency = { header = "Idempotency-Key", window = "24h", required = true }
//! ```

use std::time::Duration;

use hookgate_common::config::{ConfigDuration, Problems};
use http::HeaderName;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::replay::ReplayGuard;

/// Keys remembered per hook unless the hook says otherwise.
pub const DEFAULT_CAPACITY: usize = 100_000;
/// Bytes of a key at most.
pub const MAX_KEY_BYTES: usize = 255;

/// `idempotency` in a hook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdempotencyConfig {
    /// The header carrying the key; default `Idempotency-Key`.
    #[serde(default = "default_header")]
    pub header: String,
    /// How long a key is remembered; default `24h`.
    #[serde(default = "default_window")]
    pub window: ConfigDuration,
    /// Keys remembered at most; default 100,000 (the oldest are forgotten first).
    #[serde(default = "default_capacity")]
    pub capacity: usize,
    /// Whether a request without the header is refused (400); default `false`.
    #[serde(default)]
    pub required: bool,
}

fn default_header() -> String {
    "Idempotency-Key".into()
}

fn default_window() -> ConfigDuration {
    ConfigDuration::from_secs(24 * 3600)
}

fn default_capacity() -> usize {
    DEFAULT_CAPACITY
}

/// A hook's idempotency keys, built.
#[derive(Debug)]
pub struct Idempotency {
    pub header: HeaderName,
    pub required: bool,
    pub guard: ReplayGuard,
}

/// What is wrong with a request's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyProblem {
    Missing,
    Invalid,
}

impl IdempotencyConfig {
    /// The built keys, or the problems under `at`.
    pub fn build(&self, at: &str, p: &mut Problems) -> Option<Idempotency> {
        let before = p.len();
        let header = HeaderName::from_bytes(self.header.as_bytes());
        if header.is_err() {
            p.push(
                format!("{at}.header"),
                format!("`{}` is not a header name", self.header),
                "write a header name such as \"Idempotency-Key\"",
            );
        }
        p.nonzero(format!("{at}.window"), self.window, "\"24h\"");
        if !(1..=10_000_000).contains(&self.capacity) {
            p.push(
                format!("{at}.capacity"),
                format!("{} is out of range", self.capacity),
                "remember between 1 and 10000000 keys",
            );
        }
        if p.len() > before {
            return None;
        }
        Some(Idempotency {
            header: header.expect("checked"),
            required: self.required,
            guard: ReplayGuard::new(self.window.get(), self.capacity),
        })
    }
}

impl Idempotency {
    /// The request's key, if it has one that can be used.
    pub fn key<'h>(&self, headers: &'h http::HeaderMap) -> Result<Option<&'h str>, KeyProblem> {
        let Some(value) = headers.get(&self.header) else {
            return if self.required {
                Err(KeyProblem::Missing)
            } else {
                Ok(None)
            };
        };
        let text = value.to_str().map_err(|_| KeyProblem::Invalid)?;
        // The draft's keys are structured-header strings: quotes around them are allowed.
        let text = text.trim().trim_matches('"');
        if text.is_empty() || text.len() > MAX_KEY_BYTES {
            return Err(KeyProblem::Invalid);
        }
        Ok(Some(text))
    }

    /// Takes over `prev`'s remembered keys when a reload left the settings as they were.
    pub fn keep(&mut self, prev: &Idempotency) -> bool {
        if self.guard.same_settings(&prev.guard) {
            self.guard = prev.guard.clone();
            true
        } else {
            false
        }
    }
}

/// 64 bits of the SHA-256 of a body: what a repeat must carry again.
pub fn fingerprint(body: &[u8]) -> u64 {
    let digest = Sha256::digest(body);
    // Never 0, which stands for "not compared".
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")) | 1
}

/// How long a repeat waits for its first request at most, beyond the ack timeout.
pub const WAIT_SLACK: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    fn built(toml_text: &str) -> Result<Idempotency, String> {
        let cfg: IdempotencyConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        let mut p = Problems::default();
        cfg.build("hooks[0].idempotency", &mut p).ok_or_else(|| {
            p.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    #[test]
    fn keys_are_read_checked_and_required_when_asked() {
        let i = built("").unwrap();
        assert_eq!(i.header.as_str(), "idempotency-key");
        let mut h = http::HeaderMap::new();
        assert_eq!(i.key(&h), Ok(None));
        h.insert("idempotency-key", "\"8e03978e-40d5\"".parse().unwrap());
        assert_eq!(i.key(&h), Ok(Some("8e03978e-40d5")));
        h.insert("idempotency-key", "x".repeat(256).parse().unwrap());
        assert_eq!(i.key(&h), Err(KeyProblem::Invalid));
        let required = built("header = \"X-Request-Id\"\nrequired = true").unwrap();
        assert_eq!(required.key(&h), Err(KeyProblem::Missing));
    }

    #[test]
    fn bad_settings_name_the_key() {
        let e = built("header = \"a b\"\ncapacity = 0\nwindow = \"0s\"").unwrap_err();
        assert!(e.contains("hooks[0].idempotency.header"), "{e}");
        assert!(e.contains("hooks[0].idempotency.capacity"), "{e}");
        assert!(e.contains("hooks[0].idempotency.window"), "{e}");
    }

    #[test]
    fn fingerprints_tell_bodies_apart_and_are_never_zero() {
        assert_eq!(fingerprint(b"{\"a\":1}"), fingerprint(b"{\"a\":1}"));
        assert_ne!(fingerprint(b"{\"a\":1}"), fingerprint(b"{\"a\":2}"));
        assert_ne!(fingerprint(b""), 0);
    }
}
