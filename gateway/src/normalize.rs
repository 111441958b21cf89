//! Normalization: one request body → the event's `data.body` and `data.bodyencoding`.
//!
//! Runs after authentication (HMAC has already checked the bytes as received) and after
//! decompression. The content type picks the normalizer, in this precedence:
//!
//! | Request | `bodyencoding` | `body` |
//! |---|---|---|
//! | empty body (any type) | `empty` | `null` |
//! | `application/json`, `*/*+json` | `json` | the JSON as received (400 if invalid) |
//! | `application/xml`, `text/xml`, `*/*+xml` | `xml` | hookgate's XML shape (400 if invalid) |
//! | `application/x-www-form-urlencoded` | `form` | `{name: [values]}` |
//! | `multipart/form-data` | `multipart` | form fields; files as `{filename, contenttype, base64}` |
//! | other `text/*` | `text` | a string, transcoded from its charset |
//! | no `Content-Type` | `json` if it parses, else `base64` | |
//! | anything else | `base64` | a base64 string |
//!
//! Text that does not decode cleanly in its charset, and any normalized body that would be
//! more than twice the size of the input, fall back to `base64`: lossless, and it bounds an
//! event's size so the gateway can promise it fits the broker's `message.max.bytes`.

mod form;
mod gzip;
mod multipart;
mod text;
mod xml;

use std::borrow::Cow;

use base64::Engine;
use bytes::Bytes;
use hookgate_event::BodyEncoding;

use crate::json::{self, JsonError, Pointer};

pub use gzip::{decode_content, ContentCoding, DecompressError};

/// How deep XML elements may nest. Each element adds two levels to the JSON shape (an
/// array and an object), and the event two more, so this keeps events within the 128
/// levels common JSON parsers accept.
pub const MAX_DEPTH: usize = 60;
/// Bytes a normalized body may exceed twice its input by before it falls back to base64.
pub const GROWTH_SLACK: usize = 64;

/// Why a body cannot be normalized: the sender's fault, answered 400 with the reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NormalizeError {
    #[error("invalid JSON body: {0}")]
    Json(String),
    #[error("invalid XML body: {0}")]
    Xml(String),
    #[error("invalid multipart body: {0}")]
    Multipart(String),
    #[error("body nests deeper than {0} levels")]
    TooDeep(usize),
}

impl From<JsonError> for NormalizeError {
    fn from(e: JsonError) -> NormalizeError {
        match e {
            JsonError::Invalid(what) => NormalizeError::Json(what),
            JsonError::TooDeep(n) => NormalizeError::TooDeep(n),
        }
    }
}

/// A normalized body: JSON text ready to splice into the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    pub encoding: BodyEncoding,
    /// One JSON value (for `json`, the received bytes themselves).
    pub json: Bytes,
}

/// A parsed `Content-Type`: the lowercase media type and its raw parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType<'a> {
    /// `type/subtype`, lowercase (borrowed when the sender already wrote it so).
    pub essence: Cow<'a, str>,
    params: &'a str,
}

impl<'a> MediaType<'a> {
    pub fn parse(value: &'a str) -> MediaType<'a> {
        let (essence, params) = value.split_once(';').unwrap_or((value, ""));
        let essence = essence.trim();
        let essence = if essence.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(essence.to_ascii_lowercase())
        } else {
            Cow::Borrowed(essence)
        };
        MediaType { essence, params }
    }

    /// A parameter's value, unquoted (names compared case-blind).
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params.split(';').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().trim_matches('"'))
        })
    }

    fn is_json(&self) -> bool {
        self.essence == "application/json" || self.essence.ends_with("+json")
    }

    fn is_xml(&self) -> bool {
        matches!(&*self.essence, "application/xml" | "text/xml") || self.essence.ends_with("+xml")
    }
}

/// Normalizes a (decompressed) body by its `Content-Type`, and reads the scalar at each
/// of `pointers` from the normalized body (for a JSON body, in the same pass that
/// validates it).
pub fn normalize(
    content_type: Option<&str>,
    body: &Bytes,
    pointers: &[&Pointer],
) -> Result<(Normalized, Vec<Option<String>>), NormalizeError> {
    let none = || vec![None; pointers.len()];
    if body.is_empty() {
        let empty = Normalized {
            encoding: BodyEncoding::Empty,
            json: Bytes::from_static(b"null"),
        };
        return Ok((empty, none()));
    }
    let Some(ct) = content_type else {
        return Ok(match json::scan(body, pointers) {
            Ok(found) => (json_as_is(body), found),
            Err(_) => (base64(body), none()),
        });
    };
    let media = MediaType::parse(ct);
    let (encoding, made) = if media.is_json() {
        let found = json::scan(body, pointers)?;
        return Ok((json_as_is(body), found));
    } else if media.is_xml() {
        (BodyEncoding::Xml, xml::to_json(body)?)
    } else if media.essence == "application/x-www-form-urlencoded" {
        (BodyEncoding::Form, form::to_json(body))
    } else if media.essence == "multipart/form-data" {
        let boundary = media.param("boundary").ok_or_else(|| {
            NormalizeError::Multipart("the Content-Type has no boundary parameter".into())
        })?;
        (BodyEncoding::Multipart, multipart::to_json(body, boundary)?)
    } else if media.essence.starts_with("text/") {
        match text::to_json(body, media.param("charset")) {
            Some(json) => (BodyEncoding::Text, json),
            None => return Ok((base64(body), none())),
        }
    } else {
        return Ok((base64(body), none()));
    };
    if made.len() > 2 * body.len() + GROWTH_SLACK {
        return Ok((base64(body), none()));
    }
    let found = if pointers.is_empty() {
        none()
    } else {
        json::scan(&made, pointers).unwrap_or_else(|_| none())
    };
    let normalized = Normalized {
        encoding,
        json: Bytes::from(made),
    };
    Ok((normalized, found))
}

fn json_as_is(body: &Bytes) -> Normalized {
    Normalized {
        encoding: BodyEncoding::Json,
        json: body.clone(),
    }
}

fn base64(body: &[u8]) -> Normalized {
    let engine = &base64::engine::general_purpose::STANDARD;
    let mut out = Vec::with_capacity(body.len().div_ceil(3) * 4 + 2);
    out.push(b'"');
    let start = out.len();
    out.resize(
        start + base64::encoded_len(body.len(), true).unwrap_or(0),
        0,
    );
    let written = engine
        .encode_slice(body, &mut out[start..])
        .expect("buffer sized by encoded_len");
    out.truncate(start + written);
    out.push(b'"');
    Normalized {
        encoding: BodyEncoding::Base64,
        json: Bytes::from(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn norm(ct: Option<&str>, body: &[u8]) -> (BodyEncoding, Value) {
        let (n, _) = normalize(ct, &Bytes::copy_from_slice(body), &[]).unwrap();
        (n.encoding, serde_json::from_slice(&n.json).unwrap())
    }

    #[test]
    fn follows_the_precedence_table() {
        assert_eq!(
            norm(Some("application/json"), b"{\"a\":1}"),
            (BodyEncoding::Json, json!({"a": 1}))
        );
        assert_eq!(
            norm(Some("application/vnd.x+json; charset=utf-8"), b"[1]"),
            (BodyEncoding::Json, json!([1]))
        );
        assert_eq!(
            norm(Some("application/xml"), b"<a>1</a>").0,
            BodyEncoding::Xml
        );
        assert_eq!(
            norm(Some("application/atom+xml"), b"<a/>").0,
            BodyEncoding::Xml
        );
        assert_eq!(
            norm(Some("application/x-www-form-urlencoded"), b"a=1&a=2"),
            (BodyEncoding::Form, json!({"a": ["1", "2"]}))
        );
        assert_eq!(
            norm(Some("text/plain; charset=utf-8"), b"hi"),
            (BodyEncoding::Text, json!("hi"))
        );
        assert_eq!(
            norm(Some("application/octet-stream"), b"\x00\x01"),
            (BodyEncoding::Base64, json!("AAE="))
        );
        assert_eq!(
            norm(None, b"{\"x\":true}"),
            (BodyEncoding::Json, json!({"x": true}))
        );
        assert_eq!(
            norm(None, b"not json"),
            (BodyEncoding::Base64, json!("bm90IGpzb24="))
        );
        assert_eq!(
            norm(Some("application/json"), b""),
            (BodyEncoding::Empty, Value::Null)
        );
    }

    #[test]
    fn json_is_spliced_without_copying() {
        let body = Bytes::from_static(b"{\"a\": 1.0}");
        let (n, _) = normalize(Some("application/json"), &body, &[]).unwrap();
        assert_eq!(n.json.as_ptr(), body.as_ptr());
    }

    #[test]
    fn invalid_json_and_xml_are_errors() {
        assert!(matches!(
            normalize(Some("application/json"), &Bytes::from_static(b"{"), &[]),
            Err(NormalizeError::Json(_))
        ));
        assert!(matches!(
            normalize(Some("text/xml"), &Bytes::from_static(b"<a>"), &[]),
            Err(NormalizeError::Xml(_))
        ));
        assert!(matches!(
            normalize(Some("multipart/form-data"), &Bytes::from_static(b"x"), &[]),
            Err(NormalizeError::Multipart(_))
        ));
    }

    #[test]
    fn bodies_that_would_more_than_double_fall_back_to_base64() {
        // `12&` becomes `"12":[""],`: more than three times the input.
        let body: String = (0..200).map(|i| format!("{i}&")).collect();
        let (enc, _) = norm(Some("application/x-www-form-urlencoded"), body.as_bytes());
        assert_eq!(enc, BodyEncoding::Base64);
    }

    #[test]
    fn pointers_read_the_normalized_body() {
        let p = Pointer::parse("/a/0").unwrap();
        let body = Bytes::from_static(b"a=x&a=y");
        let (_, found) =
            normalize(Some("application/x-www-form-urlencoded"), &body, &[&p]).unwrap();
        assert_eq!(found, vec![Some("x".to_string())]);
        let body = Bytes::from_static(br#"{"a":["j"]}"#);
        let (_, found) = normalize(None, &body, &[&p]).unwrap();
        assert_eq!(found, vec![Some("j".to_string())]);
    }

    #[test]
    fn media_type_parameters() {
        let m = MediaType::parse("Multipart/Form-Data; charset=x; boundary=\"abc\"");
        assert_eq!(m.essence, "multipart/form-data");
        assert_eq!(m.param("BOUNDARY"), Some("abc"));
        assert_eq!(m.param("missing"), None);
    }
}
