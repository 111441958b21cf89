//! `basic`: HTTP basic authentication (RFC 7617), checked from the headers before the body
//! is read. A failure is a 401 with a `WWW-Authenticate` challenge.

use std::time::SystemTime;

use base64::Engine;
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::HeaderValue;
use serde::Deserialize;

use super::Failure;
use hookgate_common::config::{Environment, Problems, Secret, SecretRef, SecretSet};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicConfig {
    /// The realm named in the challenge; default `hookgate`.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Accepted users; a user may appear twice during a password rotation.
    pub credentials: Vec<Credential>,
}

fn default_realm() -> String {
    "hookgate".to_string()
}

/// One accepted user name and password.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    pub username: String,
    /// The password, as a secret reference; its `expires` ends this credential.
    pub password: SecretRef,
}

/// The built checker: digests of `user:password`, matched in constant time.
#[derive(Debug)]
pub struct Basic {
    pairs: SecretSet,
    challenge: HeaderValue,
}

impl BasicConfig {
    pub fn build(&self, at: &str, env: &Environment, p: &mut Problems) -> Option<Basic> {
        if self.credentials.is_empty() {
            p.push(
                format!("{at}.credentials"),
                "basic needs at least one credential",
                "add one, like credentials = [{ username = \"ci\", password = { env = \"CI_PASSWORD\" } }]",
            );
            return None;
        }
        let challenge = HeaderValue::from_str(&format!(
            "Basic realm=\"{}\", charset=\"UTF-8\"",
            self.realm
        ));
        if self.realm.contains('"') || challenge.is_err() {
            p.push(
                format!("{at}.realm"),
                "the realm must be printable text without quotes",
                "choose a plain name",
            );
        }
        let mut pairs = Vec::new();
        for (i, c) in self.credentials.iter().enumerate() {
            if c.username.is_empty() || c.username.contains(':') {
                p.push(
                    format!("{at}.credentials[{i}].username"),
                    "a user name must be non-empty and contain no ':'",
                    "choose another name",
                );
                continue;
            }
            match c.password.resolve(env) {
                Ok(pw) => {
                    let mut pair = c.username.as_bytes().to_vec();
                    pair.push(b':');
                    pair.extend_from_slice(pw.expose());
                    pairs.push(Secret::new(pair, pw.expires()));
                }
                Err(e) => p.secret(format!("{at}.credentials[{i}].password"), e),
            }
        }
        if pairs.len() != self.credentials.len() {
            return None;
        }
        Some(Basic {
            pairs: SecretSet::new(&pairs),
            challenge: challenge.ok()?,
        })
    }
}

impl Basic {
    pub fn verify(&self, parts: &Parts, now: SystemTime) -> Result<(), Failure> {
        let header = parts.headers.get(AUTHORIZATION).ok_or(Failure::Missing)?;
        let value = header.as_bytes();
        let encoded = value
            .get(..6)
            .filter(|s| s.eq_ignore_ascii_case(b"basic "))
            .and_then(|_| value.get(6..))
            .ok_or(Failure::Malformed)?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(trim(encoded))
            .map_err(|_| Failure::Malformed)?;
        if !decoded.contains(&b':') {
            return Err(Failure::Malformed);
        }
        super::verdict(self.pairs.check(&decoded, now))
    }

    /// The `Authorization` value a sender presents now.
    pub fn sign(&self, now: SystemTime) -> Option<String> {
        let pair = self.pairs.first_active(now)?;
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair.expose())
        ))
    }

    pub fn challenge(&self) -> HeaderValue {
        self.challenge.clone()
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic() -> Basic {
        let cfg: BasicConfig = toml::from_str(
            "credentials = [{ username = \"ci\", password = { value = \"pw1\" } }, { username = \"ci\", password = { value = \"pw2\" } }]",
        )
        .unwrap();
        let mut p = Problems::default();
        cfg.build("auth", &Environment::default(), &mut p).unwrap()
    }

    fn parts(auth: Option<&str>) -> Parts {
        let mut b = http::Request::post("/");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn enc(s: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    }

    #[test]
    fn accepts_every_configured_password() {
        let b = basic();
        let now = SystemTime::now();
        assert_eq!(b.verify(&parts(Some(&enc("ci:pw1"))), now), Ok(()));
        assert_eq!(b.verify(&parts(Some(&enc("ci:pw2"))), now), Ok(()));
        assert_eq!(
            b.verify(&parts(Some(&enc("ci:pw3"))), now),
            Err(Failure::Mismatch)
        );
        assert_eq!(
            b.verify(&parts(Some(&enc("cx:pw1"))), now),
            Err(Failure::Mismatch)
        );
    }

    #[test]
    fn classifies_failures() {
        let b = basic();
        let now = SystemTime::now();
        assert_eq!(b.verify(&parts(None), now), Err(Failure::Missing));
        assert_eq!(
            b.verify(&parts(Some("Bearer x")), now),
            Err(Failure::Malformed)
        );
        assert_eq!(
            b.verify(&parts(Some("Basic !!!")), now),
            Err(Failure::Malformed)
        );
        assert_eq!(
            b.verify(&parts(Some(&enc("nocolon"))), now),
            Err(Failure::Malformed)
        );
        assert_eq!(
            b.challenge().to_str().unwrap(),
            "Basic realm=\"hookgate\", charset=\"UTF-8\""
        );
    }
}
