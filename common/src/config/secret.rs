//! Secrets: referenced from config (`{ env = "NAME" }` or `{ file = "path" }`), resolved
//! once when the config is built, and never printed.
//!
//! `{ value = "…" }` inlines a secret for tests and throwaway setups; production configs
//! use references. Every comparison against a secret runs in constant time.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::time::parse_rfc3339;

/// Where a secret comes from, as written in config.
#[derive(Deserialize, Clone, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Name of an environment variable that holds the secret.
    pub env: Option<String>,
    /// Path of a file whose contents (trimmed) are the secret.
    pub file: Option<PathBuf>,
    /// The secret itself, inline. For tests and development only.
    pub value: Option<String>,
    /// RFC 3339 time after which this secret is no longer accepted (for rotation): a
    /// string, or a bare TOML date-time.
    #[serde(default, deserialize_with = "time_text")]
    pub expires: Option<String>,
}

/// A time written as a string or as a bare TOML date-time (which reaches serde as a table
/// with one private key), as its text.
fn time_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde::de::{self, MapAccess, Visitor};
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an RFC 3339 time like \"2027-01-31T00:00:00Z\"")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(Some(s.to_string()))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut text = None;
            while let Some((key, value)) = map.next_entry::<String, String>()? {
                if key == "$__toml_private_datetime" {
                    text = Some(value);
                }
            }
            text.map(Some)
                .ok_or_else(|| de::Error::invalid_type(de::Unexpected::Map, &self))
        }
    }
    d.deserialize_any(V)
}

/// Why a secret reference cannot be used: what is wrong and what to do, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretError {
    /// The key of the reference at fault, when it is not the reference as a whole.
    pub key: Option<&'static str>,
    pub message: String,
    pub fix: String,
}

impl SecretError {
    fn new(message: impl Into<String>, fix: impl Into<String>) -> SecretError {
        SecretError {
            key: None,
            message: message.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(key) = self.key {
            write!(f, "{key}: ")?;
        }
        write!(f, "{} (fix: {})", self.message, self.fix)
    }
}

impl std::error::Error for SecretError {}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretRef")
            .field("env", &self.env)
            .field("file", &self.file)
            .field("value", &self.value.as_ref().map(|_| Redacted))
            .field("expires", &self.expires)
            .finish()
    }
}

struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(hookgate_event::REDACTED)
    }
}

/// The process environment, read once at startup and handed to config loading, so that
/// tests and `hookgate local` can supply their own without touching the real one.
#[derive(Clone, Default)]
pub struct Environment {
    vars: HashMap<String, String>,
}

impl Environment {
    /// The real process environment.
    pub fn from_process() -> Self {
        Environment {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    pub fn from_vars<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Environment {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Adds or replaces a variable (used by `hookgate local` for its development secrets).
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(name.into(), value.into());
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Environment({} variables)", self.vars.len())
    }
}

/// A resolved secret. `Debug` prints `[redacted]`; there is no `Display`.
#[derive(Clone)]
pub struct Secret {
    bytes: Box<[u8]>,
    expires: Option<SystemTime>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Redacted.fmt(f)
    }
}

impl Secret {
    pub fn new(bytes: impl Into<Box<[u8]>>, expires: Option<SystemTime>) -> Self {
        Secret {
            bytes: bytes.into(),
            expires,
        }
    }

    /// The secret's bytes, for keying a MAC or for matching. Never log them.
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether the secret is still accepted at `now`.
    pub fn is_active(&self, now: SystemTime) -> bool {
        self.expires.is_none_or(|t| now < t)
    }

    pub fn expires(&self) -> Option<SystemTime> {
        self.expires
    }
}

impl SecretRef {
    /// Reads the secret. The error says what is wrong and how to fix it, without the value.
    pub fn resolve(&self, env: &Environment) -> Result<Secret, SecretError> {
        let sources = [
            self.env.is_some(),
            self.file.is_some(),
            self.value.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(SecretError::new(
                "a secret needs exactly one of env, file and value",
                "write one, like { env = \"NAME\" } or { file = \"/run/secrets/name\" }",
            ));
        }
        let expires = match &self.expires {
            Some(t) => Some(parse_rfc3339(t).ok_or_else(|| SecretError {
                key: Some("expires"),
                message: format!("\"{t}\" is not an RFC 3339 time"),
                fix: "write a time like \"2027-01-31T00:00:00Z\" or \"2027-01-31T02:00:00+02:00\"".into(),
            })?),
            None => None,
        };
        let raw = if let Some(name) = &self.env {
            env.var(name)
                .ok_or_else(|| {
                    SecretError::new(
                        format!("environment variable `{name}` is not set"),
                        "export it, or point the secret at a file",
                    )
                })?
                .to_string()
        } else if let Some(path) = &self.file {
            std::fs::read_to_string(path).map_err(|e| {
                SecretError::new(
                    format!("cannot read secret file `{}`: {e}", path.display()),
                    "check the path and that hookgate may read it",
                )
            })?
        } else {
            self.value.clone().unwrap_or_default()
        };
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(SecretError::new("the secret is empty", "give it a value"));
        }
        Ok(Secret::new(trimmed.as_bytes().to_vec(), expires))
    }
}

/// What a presented credential matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// A secret active now.
    Active,
    /// Only a secret whose `expires` has passed.
    Expired,
    /// No secret.
    None,
}

impl Match {
    /// From whether an active and whether an expired secret matched.
    pub fn of(active: bool, expired: bool) -> Match {
        match (active, expired) {
            (true, _) => Match::Active,
            (false, true) => Match::Expired,
            (false, false) => Match::None,
        }
    }
}

/// A set of accepted values, matched in constant time: every candidate is compared, no
/// early exit, and only SHA-256 digests are compared, so neither the position of the first
/// differing byte nor the length of a secret shows in the timing.
#[derive(Clone)]
pub struct SecretSet {
    digests: Vec<([u8; 32], Option<SystemTime>)>,
    /// The secrets themselves, for signing test requests (`hookgate sign`).
    secrets: Vec<Secret>,
}

impl fmt::Debug for SecretSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SecretSet({} × {})",
            self.digests.len(),
            hookgate_event::REDACTED
        )
    }
}

impl SecretSet {
    pub fn new(secrets: &[Secret]) -> Self {
        SecretSet {
            digests: secrets
                .iter()
                .map(|s| (Sha256::digest(s.expose()).into(), s.expires))
                .collect(),
            secrets: secrets.to_vec(),
        }
    }

    /// The first secret still active at `now`: what a sender would present.
    pub fn first_active(&self, now: SystemTime) -> Option<&Secret> {
        self.secrets.iter().find(|s| s.is_active(now))
    }

    /// Whether `candidate` equals one of the secrets still active at `now`.
    pub fn matches(&self, candidate: &[u8], now: SystemTime) -> bool {
        self.check(candidate, now) == Match::Active
    }

    /// Which kind of secret `candidate` equals, if any: one active at `now`, or only one
    /// past its `expires`. Every secret is compared either way.
    pub fn check(&self, candidate: &[u8], now: SystemTime) -> Match {
        let digest: [u8; 32] = Sha256::digest(candidate).into();
        let mut active_found = subtle::Choice::from(0);
        let mut expired_found = subtle::Choice::from(0);
        for (d, expires) in &self.digests {
            let active = subtle::Choice::from(u8::from(expires.is_none_or(|t| now < t)));
            let equal = d.ct_eq(&digest);
            active_found |= equal & active;
            expired_found |= equal & !active;
        }
        Match::of(active_found.into(), expired_found.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn inline(v: &str) -> SecretRef {
        SecretRef {
            value: Some(v.into()),
            ..SecretRef::default()
        }
    }

    #[test]
    fn resolves_from_env_file_and_inline_trimmed() {
        let env = Environment::from_vars([("K", "  s3cret\n")]);
        let from_env = SecretRef {
            env: Some("K".into()),
            ..SecretRef::default()
        };
        assert_eq!(from_env.resolve(&env).unwrap().expose(), b"s3cret");
        let dir = std::env::temp_dir().join(format!("hookgate-secret-{}", std::process::id()));
        std::fs::write(&dir, "filesecret\n").unwrap();
        let from_file = SecretRef {
            file: Some(dir.clone()),
            ..SecretRef::default()
        };
        assert_eq!(from_file.resolve(&env).unwrap().expose(), b"filesecret");
        std::fs::remove_file(dir).unwrap();
        assert_eq!(inline(" x ").resolve(&env).unwrap().expose(), b"x");
    }

    #[test]
    fn errors_name_the_problem_not_the_value() {
        let env = Environment::default();
        let missing = SecretRef {
            env: Some("NOPE".into()),
            ..SecretRef::default()
        };
        assert!(missing
            .resolve(&env)
            .unwrap_err()
            .message
            .contains("`NOPE` is not set"));
        assert!(SecretRef::default()
            .resolve(&env)
            .unwrap_err()
            .message
            .contains("exactly one"));
        assert!(inline("   ")
            .resolve(&env)
            .unwrap_err()
            .message
            .contains("empty"));
    }

    #[test]
    fn debug_never_shows_the_value() {
        let env = Environment::default();
        let secret = inline("hunter2").resolve(&env).unwrap();
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert!(!format!("{:?}", inline("hunter2")).contains("hunter2"));
        assert!(!format!("{:?}", SecretSet::new(&[secret])).contains("hunter2"));
    }

    #[test]
    fn set_matches_any_active_secret() {
        let now = SystemTime::now();
        let old = Secret::new(b"old".to_vec(), Some(now + Duration::from_secs(60)));
        let new = Secret::new(b"new".to_vec(), None);
        let set = SecretSet::new(&[old, new]);
        assert!(set.matches(b"old", now));
        assert!(set.matches(b"new", now));
        assert!(!set.matches(b"ol", now));
        assert!(!set.matches(b"", now));
        // After the old secret expires only the new one is accepted.
        let later = now + Duration::from_secs(61);
        assert!(!set.matches(b"old", later));
        assert!(set.matches(b"new", later));
    }
}
