//! Request bodies: a fixed JSON body for the command line, and templates with a
//! per-request id for scenarios.

use anyhow::{bail, Result};
use bytes::Bytes;

const PREFIX: &[u8] = br#"{"pad":""#;
const SUFFIX: &[u8] = br#""}"#;

/// The smallest body [`json_body`] can make: `{"pad":""}`.
pub const MIN_JSON_BODY: usize = PREFIX.len() + SUFFIX.len();

/// Length of the id a [`BodyTemplate`] carries.
pub const ID_LEN: usize = 24;

/// A JSON object `{"pad":"…"}` of exactly `size` bytes.
pub fn json_body(size: usize) -> Result<Bytes> {
    if size < MIN_JSON_BODY {
        bail!(
            "a JSON body needs at least {MIN_JSON_BODY} bytes ({{\"pad\":\"\"}}); \
             omit the size for an empty body"
        );
    }
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(PREFIX);
    body.extend(padding(size - MIN_JSON_BODY));
    body.extend_from_slice(SUFFIX);
    Ok(Bytes::from(body))
}

/// `n` pseudo-random alphanumerics. Not a repeated byte, so that a server or proxy
/// compressing bodies cannot make the size meaningless; the seed is fixed so runs stay
/// comparable.
fn padding(n: usize) -> impl Iterator<Item = u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n).map(move |_| {
        // xorshift64*: plenty for padding and needs no dependency.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ALPHABET[(r >> 58) as usize % ALPHABET.len()]
    })
}

/// The shape of a generated body, from its content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// `{"id":"…","pad":"…"}`
    Json,
    /// `id=…&pad=…`
    Form,
    /// `<event><id>…</id><pad>…</pad></event>`
    Xml,
    /// `… …`: the id, a space, padding.
    Text,
}

impl BodyKind {
    /// `application/json` and `+json` types are JSON, `application/x-www-form-urlencoded`
    /// is a form, `xml` types are XML, anything else is text.
    pub fn for_content_type(content_type: &str) -> Self {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if essence == "application/json" || essence.ends_with("+json") {
            BodyKind::Json
        } else if essence == "application/x-www-form-urlencoded" {
            BodyKind::Form
        } else if essence.ends_with("/xml") || essence.ends_with("+xml") {
            BodyKind::Xml
        } else {
            BodyKind::Text
        }
    }

    fn parts(self) -> (&'static [u8], &'static [u8], &'static [u8]) {
        // (before the id, between id and padding, after the padding)
        match self {
            BodyKind::Json => (br#"{"id":""#, br#"","pad":""#, br#""}"#),
            BodyKind::Form => (b"id=", b"&pad=", b""),
            BodyKind::Xml => (b"<event><id>", b"</id><pad>", b"</pad></event>"),
            BodyKind::Text => (b"", b" ", b""),
        }
    }

    /// The smallest body of this kind.
    pub fn min_size(self) -> usize {
        let (a, b, c) = self.parts();
        a.len() + ID_LEN + b.len() + c.len()
    }
}

/// A body of an exact size with a slot for an id, so that every request of a scenario
/// carries a distinct body (providers that take the delivery id from the body, like
/// Stripe, would otherwise see replays) at the cost of one copy.
#[derive(Clone, Debug)]
pub struct BodyTemplate {
    bytes: Vec<u8>,
    id_at: usize,
}

impl BodyTemplate {
    pub fn new(kind: BodyKind, size: usize) -> Result<Self> {
        let min = kind.min_size();
        if size < min {
            bail!("a {kind:?} body with its id needs at least {min} bytes, not {size}");
        }
        let (a, b, c) = kind.parts();
        let mut bytes = Vec::with_capacity(size);
        bytes.extend_from_slice(a);
        let id_at = bytes.len();
        bytes.extend(std::iter::repeat_n(b'0', ID_LEN));
        bytes.extend_from_slice(b);
        bytes.extend(padding(size - min));
        bytes.extend_from_slice(c);
        Ok(Self { bytes, id_at })
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The body with `id` in its slot.
    pub fn with_id(&self, id: &[u8; ID_LEN]) -> Bytes {
        let mut body = self.bytes.clone();
        body[self.id_at..self.id_at + ID_LEN].copy_from_slice(id);
        Bytes::from(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_exact_size_and_is_a_json_object() {
        for size in [MIN_JSON_BODY, 11, 64, 1000, 4096, 65_536] {
            let body = json_body(size).unwrap();
            assert_eq!(body.len(), size);
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let pad = value["pad"].as_str().unwrap();
            assert_eq!(pad.len(), size - MIN_JSON_BODY);
            assert_eq!(value.as_object().unwrap().len(), 1);
        }
    }

    #[test]
    fn padding_is_not_a_single_repeated_byte() {
        let body = json_body(200).unwrap();
        let pad = &body[PREFIX.len()..body.len() - SUFFIX.len()];
        assert!(pad.iter().any(|&b| b != pad[0]));
    }

    #[test]
    fn too_small_a_body_is_refused() {
        assert!(json_body(MIN_JSON_BODY - 1).is_err());
        assert!(json_body(0).is_err());
        for kind in [
            BodyKind::Json,
            BodyKind::Form,
            BodyKind::Xml,
            BodyKind::Text,
        ] {
            assert!(BodyTemplate::new(kind, kind.min_size() - 1).is_err());
            assert!(BodyTemplate::new(kind, kind.min_size()).is_ok());
        }
    }

    const ID: &[u8; ID_LEN] = b"0123456789abcdef01234567";

    #[test]
    fn templates_have_the_size_and_shape_of_their_kind() {
        for size in [100, 1024, 5000] {
            let json = BodyTemplate::new(BodyKind::Json, size).unwrap().with_id(ID);
            assert_eq!(json.len(), size);
            let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
            assert_eq!(value["id"], "0123456789abcdef01234567");

            let form = BodyTemplate::new(BodyKind::Form, size).unwrap().with_id(ID);
            assert_eq!(form.len(), size);
            let pairs: Vec<(String, String)> = form_pairs(&form);
            assert_eq!(pairs[0], ("id".into(), "0123456789abcdef01234567".into()));
            assert_eq!(pairs[1].0, "pad");

            let xml = BodyTemplate::new(BodyKind::Xml, size).unwrap().with_id(ID);
            assert_eq!(xml.len(), size);
            let text = std::str::from_utf8(&xml).unwrap();
            assert!(text.starts_with("<event><id>0123456789abcdef01234567</id><pad>"));
            assert!(text.ends_with("</pad></event>"));

            let plain = BodyTemplate::new(BodyKind::Text, size).unwrap().with_id(ID);
            assert_eq!(plain.len(), size);
            assert!(plain.starts_with(b"0123456789abcdef01234567 "));
        }
    }

    fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
        std::str::from_utf8(body)
            .unwrap()
            .split('&')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    #[test]
    fn kinds_follow_the_content_type() {
        assert_eq!(
            BodyKind::for_content_type("application/json; charset=utf-8"),
            BodyKind::Json
        );
        assert_eq!(
            BodyKind::for_content_type("application/vnd.api+json"),
            BodyKind::Json
        );
        assert_eq!(
            BodyKind::for_content_type("application/x-www-form-urlencoded"),
            BodyKind::Form
        );
        assert_eq!(BodyKind::for_content_type("text/xml"), BodyKind::Xml);
        assert_eq!(
            BodyKind::for_content_type("application/atom+xml"),
            BodyKind::Xml
        );
        assert_eq!(BodyKind::for_content_type("text/plain"), BodyKind::Text);
    }
}
