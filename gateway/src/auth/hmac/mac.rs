//! The MAC of a recipe's algorithm, keyed once per secret, and the tags it makes and
//! compares: on the stack, in constant time.

use ::hmac::{KeyInit, Mac};
use base64::Engine;
use subtle::{Choice, ConstantTimeEq};

use serde::Deserialize;

use super::MAX_SIGNATURES;

/// The recipe's hash: `algorithm = "sha256"`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

/// How a signature is written: `encoding = "hex"`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Hex,
    Base64,
    Base64url,
}

/// A running MAC of any of the algorithms.
#[derive(Clone)]
pub(super) enum MacState {
    Sha1(::hmac::Hmac<sha1::Sha1>),
    Sha256(::hmac::Hmac<sha2::Sha256>),
    Sha512(::hmac::Hmac<sha2::Sha512>),
}

/// A finished tag, or a signature a request offers, on the stack.
pub(super) struct Tag {
    pub(super) bytes: [u8; 64],
    /// Above 64 for an offered signature longer than any tag: it matches nothing.
    pub(super) len: usize,
}

impl Tag {
    pub(super) const EMPTY: Tag = Tag {
        bytes: [0; 64],
        len: 0,
    };

    /// Whether this offered signature is `tag`, in time independent of their bytes.
    pub(super) fn matches(&self, tag: &Tag) -> Choice {
        match self.bytes.get(..self.len) {
            Some(offered) => tag.bytes[..tag.len].ct_eq(offered),
            None => Choice::from(0),
        }
    }
}

/// The signatures a request offers, decoded.
pub(super) struct Offered {
    pub(super) tags: [Tag; MAX_SIGNATURES],
    pub(super) count: usize,
}

impl MacState {
    pub(super) fn new(algorithm: Algorithm, key: &[u8]) -> MacState {
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

    pub(super) fn update(&mut self, data: &[u8]) {
        match self {
            MacState::Sha1(m) => m.update(data),
            MacState::Sha256(m) => m.update(data),
            MacState::Sha512(m) => m.update(data),
        }
    }

    pub(super) fn finish(self) -> Tag {
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

/// Decodes one offered signature; `None` when it is empty or not valid in `encoding`.
pub(super) fn decode_signature(encoding: Encoding, s: &str) -> Option<Tag> {
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

pub(super) fn encode(encoding: Encoding, bytes: &[u8]) -> String {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    match encoding {
        Encoding::Hex => crate::hex::encode(bytes),
        Encoding::Base64 => STANDARD.encode(bytes),
        Encoding::Base64url => URL_SAFE.encode(bytes),
    }
}
