//! Hex digits, both ways: signatures (HMAC), `\u` escapes in JSON strings and `%XX`
//! escapes in multipart filenames read them; signatures are written with them.

/// The value of a hex digit, in either case.
pub fn digit(b: u8) -> Option<u8> {
    let value = VALUES[usize::from(b)];
    (value < 16).then_some(value)
}

/// Decodes pairs of digits into `out`; the bytes written, or `None` if `hex` has an odd
/// length, more pairs than `out` has room for, or anything but digits. Every digit is
/// read whatever the others are, and checked once at the end.
pub fn decode(hex: &[u8], out: &mut [u8]) -> Option<usize> {
    let len = hex.len() / 2;
    if hex.len() % 2 != 0 || len > out.len() {
        return None;
    }
    // A byte that is not a digit looks up as 0xFF: one high bit in `invalid` is enough.
    let mut invalid = 0u8;
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (high, low) = (VALUES[usize::from(pair[0])], VALUES[usize::from(pair[1])]);
        invalid |= high | low;
        *byte = high << 4 | low;
    }
    (invalid < 16).then_some(len)
}

/// `bytes` as lowercase hex.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(2 * bytes.len());
    for &b in bytes {
        hex.push(char::from(DIGITS[usize::from(b >> 4)]));
        hex.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    hex
}

/// The value of each hex digit, in either case; 0xFF for every other byte.
static VALUES: [u8; 256] = {
    let mut table = [0xFF; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_read_in_either_case_and_nothing_else_is() {
        for b in 0..=255u8 {
            let expected = char::from(b).to_digit(16).map(|v| v as u8);
            assert_eq!(digit(b), expected.filter(|_| b.is_ascii()), "{b:#04x}");
        }
        let mut out = [0u8; 1];
        for b in 0..=255u8 {
            for pair in [[b'7', b], [b, b'7']] {
                let expected = digit(pair[0]).zip(digit(pair[1])).map(|(h, l)| h << 4 | l);
                let decoded = decode(&pair, &mut out).map(|len| {
                    assert_eq!(len, 1);
                    out[0]
                });
                assert_eq!(decoded, expected, "{pair:?}");
            }
        }
    }

    #[test]
    fn decoding_takes_either_case_and_inverts_encoding() {
        let bytes: Vec<u8> = (0..=255).collect();
        let lower = encode(&bytes);
        assert_eq!(&lower[..8], "00010203");
        assert_eq!(&lower[lower.len() - 4..], "feff");
        let (mut a, mut b) = ([0u8; 256], [0u8; 256]);
        assert_eq!(decode(lower.as_bytes(), &mut a), Some(256));
        assert_eq!(
            decode(lower.to_ascii_uppercase().as_bytes(), &mut b),
            Some(256)
        );
        assert_eq!(a.as_slice(), bytes.as_slice());
        assert_eq!(b.as_slice(), bytes.as_slice());
    }

    #[test]
    fn odd_lengths_and_overflows_are_refused() {
        let mut out = [0u8; 2];
        assert_eq!(decode(b"abc", &mut out), None);
        assert_eq!(decode(b"aabbcc", &mut out), None);
        assert_eq!(decode(b"", &mut out), Some(0));
        assert_eq!(decode(b"+a", &mut out), None);
    }
}
