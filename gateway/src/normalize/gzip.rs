//! `Content-Encoding`: gzip and deflate bodies are decoded after authentication (a
//! signature covers the bytes as sent) and before normalization, under a hard cap on the
//! decoded size, so a small bomb cannot inflate into memory.

use std::io::Read;

use bytes::Bytes;

/// The codings the gateway decodes; anything else is answered 415 before the body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentCoding {
    Identity,
    Gzip,
    Deflate,
}

impl ContentCoding {
    /// Parses a `Content-Encoding` value; `None` for codings the gateway does not decode.
    pub fn parse(value: Option<&str>) -> Option<ContentCoding> {
        let Some(v) = value else {
            return Some(ContentCoding::Identity);
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Some(ContentCoding::Identity),
            "gzip" | "x-gzip" => Some(ContentCoding::Gzip),
            "deflate" => Some(ContentCoding::Deflate),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecompressError {
    #[error("decoded body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("body is not valid {0}")]
    Corrupt(&'static str),
}

/// Decodes `body` with `coding`, refusing output over `limit` bytes.
pub fn decode_content(
    coding: ContentCoding,
    body: Bytes,
    limit: usize,
) -> Result<Bytes, DecompressError> {
    match coding {
        ContentCoding::Identity => Ok(body),
        ContentCoding::Gzip => {
            read_capped(flate2::read::MultiGzDecoder::new(&body[..]), limit, "gzip")
        }
        ContentCoding::Deflate => {
            read_capped(flate2::read::ZlibDecoder::new(&body[..]), limit, "deflate")
        }
    }
}

fn read_capped(
    reader: impl Read,
    limit: usize,
    name: &'static str,
) -> Result<Bytes, DecompressError> {
    let mut out = Vec::new();
    // One byte past the limit tells "exactly at the limit" from "over it".
    let read = reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| DecompressError::Corrupt(name))?;
    if read > limit {
        return Err(DecompressError::TooLarge(limit));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        Bytes::from(enc.finish().unwrap())
    }

    #[test]
    fn decodes_within_the_limit() {
        let out = decode_content(ContentCoding::Gzip, gzip(b"hello"), 5).unwrap();
        assert_eq!(&out[..], b"hello");
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let bomb = gzip(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 20_000);
        assert_eq!(
            decode_content(ContentCoding::Gzip, bomb, 1 << 20),
            Err(DecompressError::TooLarge(1 << 20))
        );
    }

    #[test]
    fn corrupt_input_is_an_error() {
        assert_eq!(
            decode_content(ContentCoding::Gzip, Bytes::from_static(b"nope"), 100),
            Err(DecompressError::Corrupt("gzip"))
        );
    }

    #[test]
    fn parses_codings() {
        assert_eq!(ContentCoding::parse(None), Some(ContentCoding::Identity));
        assert_eq!(
            ContentCoding::parse(Some("GZIP")),
            Some(ContentCoding::Gzip)
        );
        assert_eq!(ContentCoding::parse(Some("br")), None);
    }
}
