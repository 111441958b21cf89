//! `api_key` and `token`: a shared secret presented as is, in a header and/or a query
//! parameter (`api_key`, e.g. StackStorm's `St2-Api-Key` header or `st2-api-key`
//! parameter) or in one header (`token`, e.g. GitLab's `X-Gitlab-Token`). Checked from
//! the request head, before the body is read.

use std::time::{Duration, SystemTime};

use http::request::Parts;
use serde::Deserialize;

use super::Failure;
use hookgate_common::config::{Environment, Problems, SecretRef, SecretSet};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Header that carries the key.
    pub header: Option<String>,
    /// Query parameter that carries the key (checked when the header is absent).
    pub query: Option<String>,
    /// Accepted keys.
    pub secrets: Vec<SecretRef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// A provider preset: `gitlab` (header `X-Gitlab-Token`).
    pub preset: Option<TokenPreset>,
    /// Header that carries the token (set by the preset, or required).
    pub header: Option<String>,
    /// Accepted tokens.
    pub secrets: Vec<SecretRef>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TokenPreset {
    Gitlab,
}

/// The built checker, shared by both schemes.
#[derive(Debug)]
pub struct ApiKey {
    scheme: &'static str,
    preset: Option<&'static str>,
    header: Option<String>,
    query: Option<String>,
    keys: SecretSet,
}

impl ApiKeyConfig {
    pub fn build(&self, at: &str, env: &Environment, p: &mut Problems) -> Option<ApiKey> {
        if self.header.is_none() && self.query.is_none() {
            p.push(
                at,
                "api_key needs a `header`, a `query` parameter, or both",
                "add e.g. header = \"x-api-key\"",
            );
        }
        let header = check_header(self.header.as_deref(), &format!("{at}.header"), p);
        if self.query.as_deref().is_some_and(str::is_empty) {
            p.push(
                format!("{at}.query"),
                "is empty",
                "name the query parameter",
            );
        }
        let keys = super::secret_set(&self.secrets, at, env, p)?;
        Some(ApiKey {
            scheme: "api_key",
            preset: None,
            header,
            query: self.query.clone(),
            keys,
        })
    }
}

impl TokenConfig {
    pub fn default_ack_timeout(&self) -> Option<Duration> {
        // GitLab waits 10 s for an answer.
        self.preset
            .map(|TokenPreset::Gitlab| Duration::from_secs(8))
    }

    pub fn build(&self, at: &str, env: &Environment, p: &mut Problems) -> Option<ApiKey> {
        let preset_header = self.preset.map(|TokenPreset::Gitlab| "x-gitlab-token");
        let header = self.header.as_deref().or(preset_header);
        if header.is_none() {
            p.push(
                at,
                "token needs a `header` (or a `preset`)",
                "add header = \"x-gitlab-token\" or preset = \"gitlab\"",
            );
        }
        let header = check_header(header, &format!("{at}.header"), p);
        let keys = super::secret_set(&self.secrets, at, env, p)?;
        Some(ApiKey {
            scheme: "token",
            preset: self.preset.map(|TokenPreset::Gitlab| "gitlab"),
            header,
            query: None,
            keys,
        })
    }
}

fn check_header(name: Option<&str>, at: &str, p: &mut Problems) -> Option<String> {
    let name = name?;
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        p.push(
            at,
            format!("`{name}` is not a header name"),
            "use letters, digits and '-'",
        );
    }
    Some(name.to_ascii_lowercase())
}

impl ApiKey {
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    pub fn preset(&self) -> Option<&'static str> {
        self.preset
    }

    pub fn header_name(&self) -> Option<String> {
        self.header.clone()
    }

    pub fn query_name(&self) -> Option<String> {
        self.query.clone()
    }

    /// Where and what a sender presents now: the header (or else the query parameter)
    /// and the key.
    pub fn sign(&self, now: SystemTime) -> Option<super::Credentials> {
        let key = String::from_utf8_lossy(self.keys.first_active(now)?.expose()).into_owned();
        let mut c = super::Credentials::default();
        match (&self.header, &self.query) {
            (Some(h), _) => c.headers.push((h.clone(), key)),
            (None, Some(q)) => c.query = Some((q.clone(), key)),
            (None, None) => return None,
        }
        Some(c)
    }

    pub fn verify(&self, parts: &Parts, now: SystemTime) -> Result<(), Failure> {
        let from_header = self
            .header
            .as_deref()
            .and_then(|h| parts.headers.get(h))
            .map(|v| std::borrow::Cow::Borrowed(v.as_bytes()));
        let presented = match from_header {
            Some(v) => v,
            None => self
                .query
                .as_deref()
                .and_then(|q| query_value(parts.uri.query()?, q))
                .ok_or(Failure::Missing)?,
        };
        let presented = presented.trim_ascii();
        if presented.is_empty() {
            return Err(Failure::Missing);
        }
        super::verdict(self.keys.check(presented, now))
    }
}

/// The first value of `name` in a query string, percent-decoded.
fn query_value<'a>(query: &'a str, name: &str) -> Option<std::borrow::Cow<'a, [u8]>> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| match v {
            std::borrow::Cow::Borrowed(s) => std::borrow::Cow::Borrowed(s.as_bytes()),
            std::borrow::Cow::Owned(s) => std::borrow::Cow::Owned(s.into_bytes()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::post(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn api_key() -> ApiKey {
        let cfg: ApiKeyConfig = toml::from_str(
            "header = \"St2-Api-Key\"\nquery = \"st2-api-key\"\nsecrets = [{ value = \"k1\" }, { value = \"k2\" }]",
        )
        .unwrap();
        cfg.build("auth", &Environment::default(), &mut Problems::default())
            .unwrap()
    }

    #[test]
    fn header_or_query_any_active_key() {
        let k = api_key();
        let now = SystemTime::now();
        assert_eq!(
            k.verify(&parts("/h", &[("st2-api-key", "k1")]), now),
            Ok(())
        );
        assert_eq!(k.verify(&parts("/h?st2-api-key=k2", &[]), now), Ok(()));
        assert_eq!(
            k.verify(&parts("/h?st2-api-key=k3", &[]), now),
            Err(Failure::Mismatch)
        );
        assert_eq!(k.verify(&parts("/h", &[]), now), Err(Failure::Missing));
        assert_eq!(
            k.verify(&parts("/h?other=k1", &[]), now),
            Err(Failure::Missing)
        );
        assert_eq!(k.scheme(), "api_key");
    }

    #[test]
    fn gitlab_token_preset() {
        let cfg: TokenConfig =
            toml::from_str("preset = \"gitlab\"\nsecrets = [{ value = \"t0k\" }]").unwrap();
        let t = cfg
            .build("auth", &Environment::default(), &mut Problems::default())
            .unwrap();
        let now = SystemTime::now();
        assert_eq!(
            t.verify(&parts("/h", &[("x-gitlab-token", "t0k")]), now),
            Ok(())
        );
        assert_eq!(
            t.verify(&parts("/h", &[("x-gitlab-token", "nope")]), now),
            Err(Failure::Mismatch)
        );
        assert_eq!(t.scheme(), "token");
        assert_eq!(t.header_name().as_deref(), Some("x-gitlab-token"));
    }
}
