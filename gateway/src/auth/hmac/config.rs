//! The `hmac` scheme as written in a hook's `auth` table, and how it is built into a
//! verifier: a preset's recipe with the table's overrides, each key checked, the secrets
//! decoded and keyed once.

use std::time::Duration;

use base64::Engine;
use hookgate_common::config::{ConfigDuration, Environment, Problems, SecretRef};
use serde::Deserialize;

use super::mac::{Algorithm, Encoding, MacState};
use super::presets::{self, Preset};
use super::{Format, Hmac, Key, Part, Source};
use crate::json::Pointer;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacConfig {
    /// `github`, `stripe`, `slack`, `shopify`, `standard_webhooks`, `twilio` or `zoom`.
    pub preset: Option<Preset>,
    /// Signing secrets; several during a rotation, each with an optional `expires`.
    pub secrets: Vec<SecretRef>,
    /// Where the signature is: `{ header = "…" }`, plus `prefix = "sha256="`, or
    /// `field = "v1"` for `k=v,…` lists, or `version = "v1"` for space-separated `v1,sig`
    /// lists.
    pub signature: Option<SignatureConfig>,
    /// What was signed, e.g. `"{timestamp}.{body}"`. Default `"{body}"`.
    pub content: Option<String>,
    /// Where the timestamp is: `{ header = "…" }`, `{ field = "t" }` or `{ pointer = "/…" }`.
    pub timestamp: Option<ValueSource>,
    /// Where the delivery id is (same forms as `timestamp`).
    pub id: Option<ValueSource>,
    pub algorithm: Option<Algorithm>,
    /// How the signature is written: `hex`, `base64` or `base64url`.
    pub encoding: Option<Encoding>,
    /// How the secret is written: `literal`, `base64`, or `whsec` (`whsec_` + base64).
    pub secret_encoding: Option<SecretEncoding>,
    /// How far the timestamp may be from now, either way. Default 5 minutes.
    pub tolerance: Option<ConfigDuration>,
    /// The URL senders use, scheme and host (`https://hooks.example.com`), for recipes that
    /// sign `{url}` behind TLS termination.
    pub public_url: Option<String>,
    /// How long delivery ids are remembered to refuse replays, for recipes without a
    /// timestamp (with one, the tolerance is the window). Default 1 hour.
    pub dedupe_window: Option<ConfigDuration>,
    /// Delivery ids remembered at most; past it the oldest are forgotten. Default 50000.
    pub dedupe_capacity: Option<usize>,
}

/// How long ids are remembered when the recipe has no timestamp.
pub const DEFAULT_DEDUPE_WINDOW: Duration = Duration::from_secs(3600);
/// Ids remembered per hook at most, unless the hook sets `dedupe_capacity`.
pub const DEFAULT_DEDUPE_CAPACITY: usize = 50_000;
/// The most delivery ids a hook may be set to remember: about 1 GiB at ~100 bytes each.
pub const MAX_DEDUPE_CAPACITY: usize = 10_000_000;

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SignatureConfig {
    pub header: String,
    /// The signature follows this prefix: `sha256=…`.
    pub prefix: Option<String>,
    /// The header is a `k=v,k=v` list; signatures are the values of this key.
    pub field: Option<String>,
    /// The header is a space-separated list of `version,signature`; signatures are those of
    /// this version.
    pub version: Option<String>,
}

/// Where a value comes from.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum ValueSource {
    /// A request header.
    Header(String),
    /// A key of the signature header's `k=v` list (Stripe's `t`).
    Field(String),
    /// A JSON pointer into the body.
    Pointer(String),
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SecretEncoding {
    Literal,
    Base64,
    Whsec,
}

impl HmacConfig {
    pub fn default_ack_timeout(&self) -> Option<Duration> {
        self.preset.map(|p| p.recipe().ack_timeout)
    }

    /// The recipe after the preset's defaults and this config's overrides.
    fn merged(&self) -> presets::Recipe {
        let mut r = self.preset.map(Preset::recipe).unwrap_or_default();
        if let Some(s) = &self.signature {
            r.signature = s.clone();
        }
        if let Some(c) = &self.content {
            r.content = c.clone();
        }
        if self.timestamp.is_some() {
            r.timestamp = self.timestamp.clone();
        }
        if self.id.is_some() {
            r.id = self.id.clone();
        }
        r.algorithm = self.algorithm.unwrap_or(r.algorithm);
        r.encoding = self.encoding.unwrap_or(r.encoding);
        r.secret_encoding = self.secret_encoding.unwrap_or(r.secret_encoding);
        r.tolerance = self.tolerance.map_or(r.tolerance, ConfigDuration::get);
        r
    }

    pub fn build(&self, at: &str, env: &Environment, p: &mut Problems) -> Option<Hmac> {
        let r = self.merged();
        let before = p.len();
        let sig = &r.signature;
        if sig.header.is_empty() {
            p.push(
                format!("{at}.signature"),
                "the signature header is not set",
                "set signature = { header = \"x-signature\" }, or choose a preset",
            );
        } else if http::HeaderName::from_bytes(sig.header.as_bytes()).is_err() {
            p.push(
                format!("{at}.signature.header"),
                format!("`{}` is not a header name", sig.header),
                "use letters, digits and '-'",
            );
        }
        let format = match (&sig.prefix, &sig.field, &sig.version) {
            (None, None, None) => Format::Raw,
            (Some(prefix), None, None) => Format::Prefixed(prefix.clone()),
            (None, Some(field), None) => Format::Fields(field.clone()),
            (None, None, Some(version)) => Format::List(version.clone()),
            _ => {
                p.push(
                    format!("{at}.signature"),
                    "`prefix`, `field` and `version` describe different layouts",
                    "keep at most one of them",
                );
                Format::Raw
            }
        };
        let content = parse_template(&r.content).unwrap_or_else(|e| {
            p.push(
                format!("{at}.content"),
                e,
                "use the placeholders {body}, {timestamp}, {id}, {method}, {url} and {form}",
            );
            Vec::new()
        });
        let needs = |part: &Part| content.contains(part);
        if needs(&Part::Timestamp) && r.timestamp.is_none() {
            p.push(
                format!("{at}.timestamp"),
                "the content signs {timestamp} but no timestamp source is set",
                "set timestamp = { header = \"…\" } (or { field = \"t\" }, { pointer = \"/…\" })",
            );
        }
        if needs(&Part::Id) && r.id.is_none() {
            p.push(
                format!("{at}.id"),
                "the content signs {id} but no id source is set",
                "set id = { header = \"…\" }",
            );
        }
        let public_url = self
            .public_url
            .as_deref()
            .map(|u| u.trim_end_matches('/').to_string());
        if needs(&Part::Url) {
            match &public_url {
                None => p.push(
                    format!("{at}.public_url"),
                    "the content signs {url}, the URL senders use, which the gateway cannot know behind a proxy",
                    "set public_url = \"https://your.public.host\"",
                ),
                Some(u) if !(u.starts_with("https://") || u.starts_with("http://")) => p.push(
                    format!("{at}.public_url"),
                    format!("`{u}` is not an http(s) URL"),
                    "write scheme and host, like \"https://hooks.example.com\"",
                ),
                Some(_) => {}
            }
        }
        for (key, duration) in [
            ("tolerance", self.tolerance),
            ("dedupe_window", self.dedupe_window),
        ] {
            if let Some(duration) = duration {
                p.nonzero(format!("{at}.{key}"), duration, "5m");
            }
        }
        if let Some(n) = self
            .dedupe_capacity
            .filter(|n| !(1..=MAX_DEDUPE_CAPACITY).contains(n))
        {
            p.push(
                format!("{at}.dedupe_capacity"),
                format!("{n} is out of range"),
                &format!(
                    "choose between 1 and {MAX_DEDUPE_CAPACITY}; each id remembered takes about 100 bytes"
                ),
            );
        }
        let mut source = |s: &Option<ValueSource>, key: &str| -> Option<Source> {
            match s.as_ref()? {
                ValueSource::Header(h) => match http::HeaderName::from_bytes(h.as_bytes()) {
                    Ok(name) => Some(Source::Header(name)),
                    Err(_) => {
                        p.push(
                            format!("{at}.{key}.header"),
                            format!("`{h}` is not a header name"),
                            "use letters, digits and '-'",
                        );
                        None
                    }
                },
                ValueSource::Field(f) => {
                    if !matches!(format, Format::Fields(_)) {
                        p.push(
                            format!("{at}.{key}"),
                            "a `field` source needs a `k=v` signature header",
                            "set signature.field, or take the value from a header",
                        );
                    }
                    Some(Source::Field(f.clone()))
                }
                ValueSource::Pointer(ptr) => match Pointer::parse(ptr) {
                    Some(ptr) => Some(Source::Pointer(ptr)),
                    None => {
                        p.push(
                            format!("{at}.{key}"),
                            format!("`{ptr}` is not a JSON pointer"),
                            "start it with '/'",
                        );
                        None
                    }
                },
            }
        };
        let timestamp = source(&r.timestamp, "timestamp");
        let id = source(&r.id, "id");
        let secrets = crate::auth::resolve_secrets(&self.secrets, at, env, p);
        let mut keys = Vec::new();
        for (i, s) in secrets.iter().flatten().enumerate() {
            match decode_secret(s.expose(), r.secret_encoding) {
                Some(bytes) => keys.push(Key {
                    keyed: MacState::new(r.algorithm, &bytes),
                    expires: s.expires(),
                }),
                None => p.push(
                    format!("{at}.secrets[{i}]"),
                    format!(
                        "the secret is not valid for secret_encoding {:?}",
                        r.secret_encoding
                    ),
                    "check the secret, or the secret_encoding",
                ),
            }
        }
        if secrets.is_none() || p.len() > before {
            return None;
        }
        // Checked above.
        let header = http::HeaderName::from_bytes(sig.header.as_bytes()).ok()?;
        let signed = signed_parts(&content);
        // With a timestamp, a replay older than the tolerance is refused anyway; within
        // it, ids must be remembered for as long.
        let window = match (&timestamp, self.dedupe_window) {
            (_, Some(w)) => w.get(),
            (Some(_), None) => r.tolerance,
            (None, None) => DEFAULT_DEDUPE_WINDOW,
        };
        let replay = id.is_some().then(|| {
            crate::replay::ReplayGuard::new(
                window,
                self.dedupe_capacity.unwrap_or(DEFAULT_DEDUPE_CAPACITY),
            )
        });
        Some(Hmac {
            preset: self.preset.map(Preset::name),
            keys,
            header,
            format,
            content,
            timestamp,
            id,
            encoding: r.encoding,
            tolerance: r.tolerance,
            public_url,
            signed: signed.into(),
            replay,
        })
    }
}

/// `{timestamp}.{body}` → [Timestamp, Literal("."), Body].
fn parse_template(t: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = t;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let end = rest
                    .find('}')
                    .ok_or_else(|| format!("`{t}` has an unclosed `{{`"))?;
                parts.push(match &rest[1..end] {
                    "body" => Part::Body,
                    "timestamp" => Part::Timestamp,
                    "id" => Part::Id,
                    "method" => Part::Method,
                    "url" => Part::Url,
                    "form" => Part::Form,
                    other => return Err(format!("`{{{other}}}` is not a placeholder")),
                });
                rest = &rest[end + 1..];
            }
            Some(i) => {
                parts.push(Part::Literal(rest[..i].to_string()));
                rest = &rest[i..];
            }
            None => {
                parts.push(Part::Literal(rest.to_string()));
                rest = "";
            }
        }
    }
    if !parts.iter().any(|p| matches!(p, Part::Body | Part::Form)) {
        return Err(format!(
            "`{t}` does not sign the body; include {{body}} (or {{form}})"
        ));
    }
    Ok(parts)
}

/// The `signed` value: the request parts the signature covers, in a fixed order.
fn signed_parts(content: &[Part]) -> String {
    let names = [
        (Part::Body, "body"),
        (Part::Form, "body"),
        (Part::Id, "id"),
        (Part::Method, "method"),
        (Part::Timestamp, "timestamp"),
        (Part::Url, "url"),
    ];
    let mut out: Vec<&str> = Vec::new();
    for (part, name) in names {
        if content.contains(&part) && !out.contains(&name) {
            out.push(name);
        }
    }
    out.join(",")
}

fn decode_secret(raw: &[u8], encoding: SecretEncoding) -> Option<Vec<u8>> {
    let b64 = &base64::engine::general_purpose::STANDARD;
    match encoding {
        SecretEncoding::Literal => Some(raw.to_vec()),
        SecretEncoding::Base64 => b64.decode(raw).ok(),
        SecretEncoding::Whsec => b64.decode(raw.strip_prefix(b"whsec_").unwrap_or(raw)).ok(),
    }
}
