//! Request bodies.

use anyhow::{bail, Result};
use bytes::Bytes;

const PREFIX: &[u8] = br#"{"pad":""#;
const SUFFIX: &[u8] = br#""}"#;

/// The smallest body [`json_body`] can make: `{"pad":""}`.
pub const MIN_JSON_BODY: usize = PREFIX.len() + SUFFIX.len();

/// A JSON object `{"pad":"…"}` of exactly `size` bytes.
///
/// The padding is pseudo-random alphanumerics rather than a repeated byte so
/// that a server or proxy compressing bodies cannot make the size meaningless;
/// the seed is fixed so runs stay comparable.
pub fn json_body(size: usize) -> Result<Bytes> {
    if size < MIN_JSON_BODY {
        bail!(
            "a JSON body needs at least {MIN_JSON_BODY} bytes ({{\"pad\":\"\"}}); \
             omit the size for an empty body"
        );
    }
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(PREFIX);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..size - MIN_JSON_BODY {
        // xorshift64*: plenty for padding and needs no dependency.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        body.push(ALPHABET[(r >> 58) as usize % ALPHABET.len()]);
    }
    body.extend_from_slice(SUFFIX);
    Ok(Bytes::from(body))
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
    }
}
