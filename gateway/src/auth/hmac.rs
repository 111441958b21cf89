//! `hmac`: a signature over the body bytes as received (and, as the recipe says, a
//! timestamp, a delivery id, the method or the public URL), checked before the body is
//! parsed.
//!
//! One generic recipe covers the providers: where the signature is and how its header is
//! laid out, what was signed (a template over `{body}`, `{timestamp}`, `{id}`,
//! `{method}`, `{url}` and `{form}`), where the timestamp and id come from, the algorithm,
//! the encodings, and the tolerance for the timestamp. Presets ([`presets`]) fill the
//! recipe for GitHub, Stripe, Slack, Shopify, Standard Webhooks (Svix), Twilio and Zoom; any
//! field set beside a preset overrides it.

pub mod presets;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::hmac::{KeyInit, Mac};
use base64::Engine;
use hookgate_common::config::Match;
use http::request::Parts;
use serde::Deserialize;
use subtle::{Choice, ConstantTimeEq};

use super::{Failure, Verified};
use crate::normalize::Pointer;
use hookgate_common::config::{ConfigDuration, Environment, Problems, SecretRef};

pub use presets::Preset;

/// Signatures a header may carry at most; more are ignored, bounding the work an
/// attacker can ask for.
const MAX_SIGNATURES: usize = 16;
/// The tolerance unless the preset or the hook sets one.
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

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
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Hex,
    Base64,
    Base64url,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SecretEncoding {
    Literal,
    Base64,
    Whsec,
}

/// How the signature header is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Format {
    Raw,
    Prefixed(String),
    Fields(String),
    List(String),
}

/// One piece of the signed content.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Body,
    Timestamp,
    Id,
    Method,
    Url,
    Form,
}

/// Where a value comes from, built.
#[derive(Debug, Clone)]
enum Source {
    Header(http::HeaderName),
    Field(String),
    Pointer(Pointer),
}

/// A signing key, held as the MAC already keyed with it (HMAC's inner and outer key
/// blocks hashed once at load, not once per request). `Debug` prints `[redacted]`.
struct Key {
    keyed: MacState,
    expires: Option<SystemTime>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(hookgate_event::REDACTED)
    }
}

/// The built verifier.
#[derive(Debug)]
pub struct Hmac {
    preset: Option<&'static str>,
    keys: Vec<Key>,
    header: http::HeaderName,
    format: Format,
    content: Vec<Part>,
    timestamp: Option<Source>,
    id: Option<Source>,
    encoding: Encoding,
    tolerance: Duration,
    public_url: Option<String>,
    /// Which parts the signature covers, for the event's `signed`.
    signed: Arc<str>,
    /// Replay protection, when the recipe yields a delivery id.
    replay: Option<crate::replay::ReplayGuard>,
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
        let secrets = super::resolve_secrets(&self.secrets, at, env, p);
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

/// A running MAC of any of the algorithms.
#[derive(Clone)]
enum MacState {
    Sha1(::hmac::Hmac<sha1::Sha1>),
    Sha256(::hmac::Hmac<sha2::Sha256>),
    Sha512(::hmac::Hmac<sha2::Sha512>),
}

/// A finished tag, or a signature a request offers, on the stack.
struct Tag {
    bytes: [u8; 64],
    /// Above 64 for an offered signature longer than any tag: it matches nothing.
    len: usize,
}

impl Tag {
    const EMPTY: Tag = Tag {
        bytes: [0; 64],
        len: 0,
    };

    /// Whether this offered signature is `tag`, in time independent of their bytes.
    fn matches(&self, tag: &Tag) -> Choice {
        match self.bytes.get(..self.len) {
            Some(offered) => tag.bytes[..tag.len].ct_eq(offered),
            None => Choice::from(0),
        }
    }
}

/// The signatures a request offers, decoded.
struct Offered {
    tags: [Tag; MAX_SIGNATURES],
    count: usize,
}

impl MacState {
    fn new(algorithm: Algorithm, key: &[u8]) -> MacState {
        // HMAC takes keys of any length.
        match algorithm {
            Algorithm::Sha1 => {
                MacState::Sha1(KeyInit::new_from_slice(key).expect("any key length"))
            }
            Algorithm::Sha256 => {
                MacState::Sha256(KeyInit::new_from_slice(key).expect("any key length"))
            }
            Algorithm::Sha512 => {
                MacState::Sha512(KeyInit::new_from_slice(key).expect("any key length"))
            }
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            MacState::Sha1(m) => m.update(data),
            MacState::Sha256(m) => m.update(data),
            MacState::Sha512(m) => m.update(data),
        }
    }

    fn finish(self) -> Tag {
        let mut tag = Tag {
            bytes: [0; 64],
            len: 0,
        };
        let mut put = |b: &[u8]| {
            tag.bytes[..b.len()].copy_from_slice(b);
            tag.len = b.len();
        };
        match self {
            MacState::Sha1(m) => put(&m.finalize().into_bytes()),
            MacState::Sha256(m) => put(&m.finalize().into_bytes()),
            MacState::Sha512(m) => put(&m.finalize().into_bytes()),
        }
        tag
    }
}

/// The values a request supplies to the recipe.
struct Inputs<'a> {
    timestamp: Option<String>,
    id: Option<String>,
    method: &'a str,
    url: Option<String>,
    form: Option<Vec<u8>>,
    body: &'a [u8],
}

impl Hmac {
    pub fn preset(&self) -> Option<&'static str> {
        self.preset
    }

    /// The delivery ids this hook remembers, if its recipe has ids.
    pub fn replay(&self) -> Option<&crate::replay::ReplayGuard> {
        self.replay.as_ref()
    }

    /// Takes over `prev`'s remembered deliveries when both remember ids the same way;
    /// says whether it did.
    pub fn keep_replay(&mut self, prev: &Hmac) -> bool {
        match (&mut self.replay, &prev.replay) {
            (Some(next), Some(old)) if next.same_settings(old) => {
                *next = old.clone();
                true
            }
            _ => false,
        }
    }

    /// Verifies the request's signature at `now`.
    pub fn verify(&self, parts: &Parts, body: &[u8], now: SystemTime) -> Result<Verified, Failure> {
        let header = parts.headers.get(&self.header).ok_or(Failure::Missing)?;
        let header = header.to_str().map_err(|_| Failure::Malformed)?;
        let signatures = self.signatures(header)?;
        let timestamp = match &self.timestamp {
            Some(s) => {
                let raw = self.read(s, parts, header, body).ok_or(Failure::Missing)?;
                let ts = parse_unix_seconds(&raw).ok_or(Failure::Malformed)?;
                if !within(ts, now, self.tolerance) {
                    return Err(Failure::Timestamp);
                }
                Some(raw)
            }
            None => None,
        };
        let id = self
            .id
            .as_ref()
            .and_then(|s| self.read(s, parts, header, body));
        if id.is_none() && self.content.contains(&Part::Id) {
            return Err(Failure::Missing);
        }
        let inputs = Inputs {
            timestamp,
            url: self.public_url.as_ref().map(|base| {
                let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                format!("{base}{pq}")
            }),
            form: self
                .content
                .contains(&Part::Form)
                .then(|| sorted_form(body)),
            method: parts.method.as_str(),
            id,
            body,
        };
        let (mut active_found, mut expired_found) = (Choice::from(0), Choice::from(0));
        for key in &self.keys {
            let tag = self.tag(key, &inputs);
            let active = Choice::from(u8::from(key.expires.is_none_or(|t| now < t)));
            for offered in &signatures.tags[..signatures.count] {
                let equal = offered.matches(&tag);
                active_found |= equal & active;
                expired_found |= equal & !active;
            }
        }
        super::verdict(Match::of(active_found.into(), expired_found.into()))?;
        Ok(Verified {
            signed: Some(self.signed.clone()),
            delivery_id: inputs.id,
        })
    }

    /// Signs `body` as a sender would, for `hookgate sign` and tests: the signature header
    /// value for the given timestamp and id.
    pub fn sign(
        &self,
        key_index: usize,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        timestamp: Option<&str>,
        id: Option<&str>,
    ) -> Option<String> {
        let key = self.keys.get(key_index)?;
        let inputs = Inputs {
            timestamp: timestamp.map(str::to_string),
            id: id.map(str::to_string),
            method,
            url: self
                .public_url
                .as_ref()
                .map(|b| format!("{b}{path_and_query}")),
            form: self
                .content
                .contains(&Part::Form)
                .then(|| sorted_form(body)),
            body,
        };
        let tag = self.tag(key, &inputs);
        let encoded = encode(self.encoding, &tag.bytes[..tag.len]);
        Some(match &self.format {
            Format::Raw => encoded,
            Format::Prefixed(p) => format!("{p}{encoded}"),
            Format::Fields(f) => match (&self.timestamp, timestamp) {
                (Some(Source::Field(t)), Some(ts)) => format!("{t}={ts},{f}={encoded}"),
                _ => format!("{f}={encoded}"),
            },
            Format::List(v) => format!("{v},{encoded}"),
        })
    }

    /// The headers a sender sets for `body` now: the signature, and the timestamp and
    /// delivery id where the recipe reads them from headers.
    pub fn sign_now(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now: SystemTime,
    ) -> Option<Vec<(String, String)>> {
        let index = self
            .keys
            .iter()
            .position(|k| k.expires.is_none_or(|t| now < t))?;
        let ts = now.duration_since(UNIX_EPOCH).ok()?.as_secs().to_string();
        let timestamp = match &self.timestamp {
            Some(Source::Pointer(p)) => crate::normalize::json::scan(body, &[p]).ok()?.pop()?,
            Some(_) => Some(ts),
            None => None,
        };
        let id = match &self.id {
            // As when verifying: a body without the member (or not JSON at all, like
            // Slack's slash commands) simply has no delivery id.
            Some(Source::Pointer(p)) => crate::normalize::json::scan(body, &[p])
                .ok()
                .and_then(|mut found| found.pop().flatten()),
            Some(_) => Some(uuid::Uuid::new_v4().to_string()),
            None => None,
        };
        let signature = self.sign(
            index,
            method,
            path_and_query,
            body,
            timestamp.as_deref(),
            id.as_deref(),
        )?;
        let mut headers = vec![(self.header.as_str().to_string(), signature)];
        if let (Some(Source::Header(h)), Some(t)) = (&self.timestamp, &timestamp) {
            headers.push((h.as_str().to_string(), t.clone()));
        }
        if let (Some(Source::Header(h)), Some(i)) = (&self.id, &id) {
            headers.push((h.as_str().to_string(), i.clone()));
        }
        Some(headers)
    }

    /// The MAC of `data` under the first secret active at `now`, in hex (Zoom's
    /// `encryptedToken`).
    pub fn hex_digest(&self, data: &[u8], now: SystemTime) -> Option<String> {
        let key = self
            .keys
            .iter()
            .find(|k| k.expires.is_none_or(|t| now < t))?;
        let mut mac = key.keyed.clone();
        mac.update(data);
        let tag = mac.finish();
        Some(encode(Encoding::Hex, &tag.bytes[..tag.len]))
    }

    /// The header that carries the signature.
    pub fn signature_header(&self) -> &str {
        self.header.as_str()
    }

    /// Headers a sender sets besides the signature, with where their values come from.
    pub fn timestamp_header(&self) -> Option<&str> {
        match &self.timestamp {
            Some(Source::Header(h)) => Some(h.as_str()),
            _ => None,
        }
    }

    pub fn id_header(&self) -> Option<&str> {
        match &self.id {
            Some(Source::Header(h)) => Some(h.as_str()),
            _ => None,
        }
    }

    fn tag(&self, key: &Key, inputs: &Inputs<'_>) -> Tag {
        let mut mac = key.keyed.clone();
        for part in &self.content {
            match part {
                Part::Literal(s) => mac.update(s.as_bytes()),
                Part::Body => mac.update(inputs.body),
                Part::Timestamp => mac.update(inputs.timestamp.as_deref().unwrap_or("").as_bytes()),
                Part::Id => mac.update(inputs.id.as_deref().unwrap_or("").as_bytes()),
                Part::Method => mac.update(inputs.method.as_bytes()),
                Part::Url => mac.update(inputs.url.as_deref().unwrap_or("").as_bytes()),
                Part::Form => mac.update(inputs.form.as_deref().unwrap_or_default()),
            }
        }
        mac.finish()
    }

    /// The decoded signatures the header offers (at most [`MAX_SIGNATURES`]).
    fn signatures(&self, header: &str) -> Result<Offered, Failure> {
        let header = header.trim();
        let mut offered = Offered {
            tags: [Tag::EMPTY; MAX_SIGNATURES],
            count: 0,
        };
        let mut add = |s: &str| {
            if let Some(tag) = decode_signature(self.encoding, s.trim()) {
                offered.tags[offered.count] = tag;
                offered.count += 1;
            }
        };
        match &self.format {
            Format::Raw => add(header),
            Format::Prefixed(prefix) => add(header
                .get(..prefix.len())
                .filter(|p| p.eq_ignore_ascii_case(prefix))
                .map(|_| &header[prefix.len()..])
                .ok_or(Failure::Malformed)?),
            Format::Fields(key) => fields(header)
                .filter(|(k, _)| k == key)
                .take(MAX_SIGNATURES)
                .for_each(|(_, v)| add(v)),
            Format::List(version) => header
                .split_ascii_whitespace()
                .filter_map(|entry| entry.split_once(','))
                .filter(|(v, _)| v == version)
                .take(MAX_SIGNATURES)
                .for_each(|(_, s)| add(s)),
        }
        if offered.count == 0 {
            return Err(Failure::Malformed);
        }
        Ok(offered)
    }

    /// Reads a value from where `source` says.
    fn read(
        &self,
        source: &Source,
        parts: &Parts,
        sig_header: &str,
        body: &[u8],
    ) -> Option<String> {
        let v = match source {
            Source::Header(h) => parts.headers.get(h)?.to_str().ok()?.trim().to_string(),
            Source::Field(f) => fields(sig_header).find(|(k, _)| k == f)?.1.to_string(),
            Source::Pointer(p) => crate::normalize::json::scan(body, &[p]).ok()?.pop()??,
        };
        (!v.is_empty()).then_some(v)
    }
}

/// `k=v` pairs of a comma-separated header.
fn fields(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header.split(',').filter_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        Some((k.trim(), v.trim()))
    })
}

/// The body's form parameters as Twilio's libraries sign them: sorted by name, the values
/// of a repeated name sorted too and each distinct value taken once, every value written
/// after its name (twilio-node's `getExpectedTwilioSignature`, twilio-python's
/// `compute_signature`).
fn sorted_form(body: &[u8]) -> Vec<u8> {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut out = Vec::with_capacity(body.len());
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Decodes one offered signature; `None` when it is empty or not valid in `encoding`.
fn decode_signature(encoding: Encoding, s: &str) -> Option<Tag> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    let mut buf = [0u8; 128];
    let len = match encoding {
        Encoding::Hex => crate::hex::decode(s.as_bytes(), &mut buf),
        Encoding::Base64 => decode_base64(&STANDARD, s, &mut buf),
        Encoding::Base64url => decode_base64(&URL_SAFE, s, &mut buf)
            .or_else(|| decode_base64(&URL_SAFE_NO_PAD, s, &mut buf)),
    }?;
    if len == 0 {
        return None;
    }
    let mut tag = Tag::EMPTY;
    let kept = len.min(tag.bytes.len());
    tag.bytes[..kept].copy_from_slice(&buf[..kept]);
    tag.len = len;
    Some(tag)
}

/// Base64 into `buf`; the decoded length, which may exceed the buffer's.
fn decode_base64(engine: &impl Engine, s: &str, buf: &mut [u8]) -> Option<usize> {
    match engine.decode_slice(s, buf) {
        Ok(len) => Some(len),
        // Longer than any tag, so it matches nothing: decoded in full only to tell a
        // valid signature (a mismatch) from an invalid one (malformed).
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
            engine.decode(s).ok().map(|v| v.len())
        }
        Err(base64::DecodeSliceError::DecodeError(_)) => None,
    }
}

fn encode(encoding: Encoding, bytes: &[u8]) -> String {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    match encoding {
        Encoding::Hex => crate::hex::encode(bytes),
        Encoding::Base64 => STANDARD.encode(bytes),
        Encoding::Base64url => URL_SAFE.encode(bytes),
    }
}

/// Parses a Unix timestamp in seconds: an optional sign and up to 19 digits.
fn parse_unix_seconds(s: &str) -> Option<i64> {
    let s = s.trim();
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Whether `ts` (Unix seconds) is within `tolerance` of `now`, in either direction.
fn within(ts: i64, now: SystemTime, tolerance: Duration) -> bool {
    let now = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i128::from(d.as_secs()),
        Err(e) => -i128::from(e.duration().as_secs()),
    };
    (i128::from(ts) - now).unsigned_abs() <= u128::from(tolerance.as_secs())
}

#[cfg(test)]
mod tests;
