//! Normalizer for textual bodies (`text/*` and other content types the
//! gateway treats as plain text).
//!
//! In the gateway's data path, once a request body has been read in full and
//! authenticated, the normalizer chosen by the request's content type turns
//! it into the event's `data.body`. This one decodes the body with its
//! declared charset into a JSON string, or declines so that the caller falls
//! back to base64, which never loses a byte.

use std::borrow::Cow;

use encoding_rs::{Encoding, UTF_8};
use serde_json::Value;

/// Decodes `body` as text in `charset` (UTF-8 when absent) and returns it as
/// a JSON string literal.
///
/// Returns `None` whenever the text form would not faithfully represent the
/// body: an unknown charset label, bytes that are malformed in that charset
/// (no replacement characters are ever substituted), or control characters
/// other than tab, line feed and carriage return, which mark a binary body
/// mislabelled as text.
pub fn to_json(body: &[u8], charset: Option<&str>) -> Option<Vec<u8>> {
    let declared = match charset {
        // `charset="utf-8"` is a legal quoted parameter; the quotes are not
        // part of the label.
        Some(label) => Encoding::for_label(label.trim().trim_matches('"').as_bytes())?,
        None => UTF_8,
    };
    // As in the WHATWG decode algorithm, a byte order mark is more reliable
    // than the header: senders relabel bodies far more often than they
    // rewrite their first bytes.
    let (encoding, bytes) = match Encoding::for_bom(body) {
        Some((bom_encoding, bom_len)) => (bom_encoding, &body[bom_len..]),
        None => (declared, body),
    };
    let text: Cow<'_, str> = encoding.decode_without_bom_handling_and_without_replacement(bytes)?;
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return None;
    }
    Some(Value::String(text.into_owned()).to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::to_json;
    use serde_json::{json, Value};

    fn parse(out: Option<Vec<u8>>) -> Value {
        let out = out.expect("body decodes as text");
        serde_json::from_slice(&out).expect("normalizer output is valid JSON")
    }

    #[test]
    fn utf8_by_default() {
        assert_eq!(
            parse(to_json("héllo \"wörld\"\r\n\tok".as_bytes(), None)),
            json!("héllo \"wörld\"\r\n\tok")
        );
    }

    #[test]
    fn empty_body_is_empty_string() {
        assert_eq!(to_json(b"", None), Some(b"\"\"".to_vec()));
    }

    #[test]
    fn output_is_a_compact_string_literal() {
        assert_eq!(
            to_json(b"a\"b\\c\n", Some("utf-8")),
            Some(br#""a\"b\\c\n""#.to_vec())
        );
    }

    #[test]
    fn utf8_bom_is_stripped() {
        assert_eq!(
            parse(to_json(b"\xEF\xBB\xBFhi", Some("utf-8"))),
            json!("hi")
        );
        assert_eq!(parse(to_json(b"\xEF\xBB\xBFhi", None)), json!("hi"));
    }

    #[test]
    fn latin1_charset() {
        assert_eq!(
            parse(to_json(b"caf\xE9 \xA35", Some("ISO-8859-1"))),
            json!("café £5")
        );
        assert_eq!(
            parse(to_json(b"caf\xE9", Some("\"latin1\""))),
            json!("café")
        );
    }

    #[test]
    fn utf16_charsets() {
        let le: Vec<u8> = "hé€".encode_utf16().flat_map(u16::to_le_bytes).collect();
        let be: Vec<u8> = "hé€".encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(parse(to_json(&le, Some("UTF-16LE"))), json!("hé€"));
        assert_eq!(parse(to_json(&be, Some("utf-16be"))), json!("hé€"));
        // Without a BOM, the bare "utf-16" label means little-endian.
        assert_eq!(parse(to_json(&le, Some("utf-16"))), json!("hé€"));
    }

    #[test]
    fn utf16_bom_overrides_label() {
        let mut be = vec![0xFE, 0xFF];
        be.extend("ok".encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(parse(to_json(&be, Some("utf-16le"))), json!("ok"));
        assert_eq!(parse(to_json(&be, None)), json!("ok"));
    }

    #[test]
    fn unknown_charset_declines() {
        assert_eq!(to_json(b"hello", Some("klingon-8")), None);
        assert_eq!(to_json(b"hello", Some("")), None);
    }

    #[test]
    fn malformed_utf8_declines() {
        assert_eq!(to_json(b"caf\xE9", None), None);
        assert_eq!(to_json(b"truncated \xE2\x82", Some("utf-8")), None);
    }

    #[test]
    fn malformed_utf16_declines() {
        // A lone high surrogate, then an odd trailing byte.
        assert_eq!(to_json(&[0x00, 0xD8, 0x41, 0x00], Some("utf-16le")), None);
        assert_eq!(to_json(&[0x41, 0x00, 0x42], Some("utf-16le")), None);
    }

    #[test]
    fn control_characters_decline() {
        assert_eq!(to_json(b"a\x00b", None), None);
        assert_eq!(to_json(b"bell\x07", None), None);
        assert_eq!(to_json(b"del\x7F", None), None);
        assert_eq!(to_json("c1\u{85}".as_bytes(), None), None);
        assert_eq!(to_json(b"PK\x03\x04", Some("utf-8")), None);
    }

    #[test]
    fn replacement_encoding_declines() {
        // Labels such as iso-2022-kr map to the "replacement" encoding, which
        // turns any input into an error; that must not become text.
        assert_eq!(to_json(b"hello", Some("iso-2022-kr")), None);
    }
}
