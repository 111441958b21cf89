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

//!
//! This file is the verifier as the hot path uses it; `config` builds it from the
//! recipe, `mac` holds the MAC and the tags it is compared against, and [`presets`] the
//! providers' recipes.

mod config;
mod mac;
pub mod presets;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hookgate_common::config::Match;
use http::request::Parts;
use subtle::Choice;

use super::{Failure, Verified};
use crate::json::Pointer;
use mac::{decode_signature, encode, MacState, Offered, Tag};

pub use config::{
    HmacConfig, SecretEncoding, SignatureConfig, ValueSource, DEFAULT_DEDUPE_CAPACITY,
    DEFAULT_DEDUPE_WINDOW, MAX_DEDUPE_CAPACITY,
};
pub use mac::{Algorithm, Encoding};
pub use presets::Preset;

/// Signatures a header may carry at most; more are ignored, bounding the work an
/// attacker can ask for.
const MAX_SIGNATURES: usize = 16;
/// The tolerance unless the preset or the hook sets one.
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

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
            Some(Source::Pointer(p)) => crate::json::scan(body, &[p]).ok()?.pop()?,
            Some(_) => Some(ts),
            None => None,
        };
        let id = match &self.id {
            // As when verifying: a body without the member (or not JSON at all, like
            // Slack's slash commands) simply has no delivery id.
            Some(Source::Pointer(p)) => crate::json::scan(body, &[p])
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
            Source::Pointer(p) => crate::json::scan(body, &[p]).ok()?.pop()??,
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
