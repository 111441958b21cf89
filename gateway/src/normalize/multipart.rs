//! Normalizer for `multipart/form-data` bodies (RFC 7578, with the RFC 2046
//! delimiter syntax).
//!
//! In the gateway's data path, once a request body has been read in full and
//! authenticated, the normalizer chosen by the request's content type turns
//! it into the event's `data.body`. This one splits a form-data body into its
//! parts and maps every field name to an array of values: a plain field is a
//! string, a file (or a field whose bytes are not UTF-8) is an object
//! `{"filename", "contenttype", "base64"}` that carries its bytes losslessly.
//!
//! The body is already fully in memory (its signature had to be checked
//! first), so parsing is a plain synchronous scan over the slice.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use encoding_rs::Encoding;
use memchr::memmem;
use serde_json::{Map, Value};

use super::NormalizeError;

/// RFC 2046 caps boundaries at 70 characters.
const MAX_BOUNDARY_LEN: usize = 70;
/// Bounds the work and the size of the event for a body made of tiny parts.
const MAX_PARTS: usize = 1000;

/// Converts a `multipart/form-data` body delimited by `boundary` to
/// `{"field": [value, ...], ...}`.
///
/// The preamble before the first delimiter and the epilogue after the closing
/// one are ignored. A body that closes without any part yields `{}`.
pub fn to_json(body: &[u8], boundary: &str) -> Result<Vec<u8>, NormalizeError> {
    if boundary.is_empty() {
        return Err(invalid("boundary is empty"));
    }
    if boundary.len() > MAX_BOUNDARY_LEN {
        return Err(invalid("boundary is longer than 70 characters"));
    }
    let dash_boundary = format!("--{boundary}").into_bytes();
    let delimiter_bytes = format!("\r\n--{boundary}").into_bytes();
    // One searcher for the whole body: linear in the body whatever the boundary.
    let delimiter = memmem::Finder::new(&delimiter_bytes);

    // The first delimiter may open the body; every later one, and the first
    // one after a preamble, sits at the start of a line.
    let opening = match after_boundary(body, dash_boundary.len()) {
        Some(next) if body.starts_with(&dash_boundary) => next,
        _ => {
            find_delimiter(body, 0, &delimiter)
                .ok_or_else(|| invalid("no opening boundary delimiter"))?
                .1
        }
    };

    let mut fields = Map::new();
    let mut next = opening;
    let mut count = 0;
    while let Next::Part(start) = next {
        count += 1;
        if count > MAX_PARTS {
            return Err(invalid(format!("more than {MAX_PARTS} parts")));
        }
        let (end, following) = find_delimiter(body, start, &delimiter)
            .ok_or_else(|| invalid("missing closing boundary delimiter"))?;
        let (name, value) = part_to_json(&body[start..end])
            .map_err(|reason| invalid(format!("{reason} (part {count})")))?;
        let values = fields
            .entry(name)
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = values {
            values.push(value);
        }
        next = following;
    }
    Ok(Value::Object(fields).to_string().into_bytes())
}

/// What a delimiter leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// Another part, whose headers start at this offset.
    Part(usize),
    /// The closing delimiter: the rest of the body is epilogue.
    Close,
}

/// Finds the next real delimiter at or after `from`, returning where it
/// starts (the end of the preceding part) and what follows it.
fn find_delimiter(
    body: &[u8],
    mut from: usize,
    delimiter: &memmem::Finder<'_>,
) -> Option<(usize, Next)> {
    loop {
        let at = from + delimiter.find(body.get(from..)?)?;
        match after_boundary(body, at + delimiter.needle().len()) {
            Some(next) => return Some((at, next)),
            // Content that merely starts like a delimiter (`--boundaryX`).
            None => from = at + 1,
        }
    }
}

/// Classifies the bytes right after a `--boundary` match ending at `at`:
/// `--` closes, optional transport padding then CRLF opens a part, anything
/// else means the match was not a delimiter.
fn after_boundary(body: &[u8], at: usize) -> Option<Next> {
    let rest = body.get(at..)?;
    if rest.starts_with(b"--") {
        return Some(Next::Close);
    }
    let padding = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    rest[padding..]
        .starts_with(b"\r\n")
        .then_some(Next::Part(at + padding + 2))
}

/// Turns one part (headers, blank line, content) into its field name and
/// JSON value. Errors are short reasons without any body bytes.
fn part_to_json(part: &[u8]) -> Result<(String, Value), &'static str> {
    let headers = PartHeaders::parse(part)?;
    let disposition = headers
        .disposition
        .ok_or("part has no Content-Disposition header")?;
    let disposition = Disposition::parse(&disposition)?;
    let name = disposition
        .name
        .ok_or("part has no Content-Disposition name")?;
    let content = headers.content;

    if disposition.filename.is_none() {
        if let Ok(text) = std::str::from_utf8(content) {
            return Ok((name, Value::String(text.to_owned())));
        }
    }
    // A file, or a field whose bytes are not text: keep them exactly.
    let mut file = Map::new();
    file.insert(
        "filename".to_owned(),
        disposition.filename.map_or(Value::Null, Value::String),
    );
    file.insert(
        "contenttype".to_owned(),
        headers.content_type.map_or(Value::Null, Value::String),
    );
    file.insert("base64".to_owned(), Value::String(STANDARD.encode(content)));
    Ok((name, Value::Object(file)))
}

/// The headers this normalizer needs, plus the content after them.
struct PartHeaders<'a> {
    disposition: Option<String>,
    content_type: Option<String>,
    content: &'a [u8],
}

impl<'a> PartHeaders<'a> {
    fn parse(part: &'a [u8]) -> Result<Self, &'static str> {
        let mut headers = PartHeaders {
            disposition: None,
            content_type: None,
            content: &[],
        };
        // Both header lines and the blank line may lose their final CRLF to
        // the next delimiter, so an empty part is a part without headers.
        if part.is_empty() {
            return Ok(headers);
        }
        let mut last: Option<&'static str> = None;
        let mut pos = 0;
        loop {
            let eol = memmem::find(&part[pos..], b"\r\n")
                .map(|at| pos + at)
                .ok_or("part headers are not terminated")?;
            let line = &part[pos..eol];
            pos = eol + 2;
            if line.is_empty() {
                headers.content = &part[pos..];
                return Ok(headers);
            }
            // Obsolete line folding (RFC 5322): continues the previous header.
            if line[0] == b' ' || line[0] == b'\t' {
                let value = String::from_utf8_lossy(line.trim_ascii());
                let target = match last {
                    Some("content-disposition") => headers.disposition.as_mut(),
                    Some("content-type") => headers.content_type.as_mut(),
                    Some(_) => None,
                    None => return Err("malformed part header"),
                };
                if let Some(target) = target {
                    target.push(' ');
                    target.push_str(&value);
                }
                continue;
            }
            let colon = line
                .iter()
                .position(|&b| b == b':')
                .ok_or("malformed part header")?;
            let name = line[..colon].trim_ascii();
            if name.is_empty() {
                return Err("malformed part header");
            }
            // Filenames are often raw UTF-8 and sometimes another charset;
            // a lossy name is better than dropping the file.
            let value = String::from_utf8_lossy(line[colon + 1..].trim_ascii()).into_owned();
            // The first occurrence wins; a repeated header is ignored.
            last = Some(if name.eq_ignore_ascii_case(b"content-disposition") {
                headers.disposition.get_or_insert(value);
                "content-disposition"
            } else if name.eq_ignore_ascii_case(b"content-type") {
                headers.content_type.get_or_insert(value);
                "content-type"
            } else {
                "other"
            });
        }
    }
}

/// The `Content-Disposition` parameters this normalizer needs.
#[derive(Debug, Default, PartialEq, Eq)]
struct Disposition {
    name: Option<String>,
    filename: Option<String>,
}

impl Disposition {
    /// Parses `form-data; name="x"; filename="a.txt"`. The disposition type
    /// itself is not checked: the name is what matters for a form field.
    fn parse(value: &str) -> Result<Self, &'static str> {
        let mut disposition = Disposition::default();
        let mut extended_filename = None;
        let mut rest = value.split_once(';').map_or("", |(_, params)| params);
        loop {
            rest = rest.trim_start_matches(|c: char| c == ';' || c.is_ascii_whitespace());
            if rest.is_empty() {
                break;
            }
            let name_end = rest.find(['=', ';']).unwrap_or(rest.len());
            let param = rest[..name_end].trim().to_ascii_lowercase();
            rest = &rest[name_end..];
            let Some(after_eq) = rest.strip_prefix('=') else {
                // A parameter without a value carries nothing we use.
                continue;
            };
            let after_eq = after_eq.trim_start();
            let param_value = if let Some(quoted) = after_eq.strip_prefix('"') {
                let (unquoted, consumed) = unquote(quoted)?;
                rest = &quoted[consumed..];
                unquoted
            } else {
                let end = after_eq.find(';').unwrap_or(after_eq.len());
                rest = &after_eq[end..];
                after_eq[..end].trim_end().to_owned()
            };
            match param.as_str() {
                "name" if disposition.name.is_none() => disposition.name = Some(param_value),
                "filename" if disposition.filename.is_none() => {
                    disposition.filename = Some(param_value);
                }
                "filename*" if extended_filename.is_none() => {
                    extended_filename = decode_extended(&param_value);
                }
                _ => {}
            }
        }
        // RFC 6266: the extended form is the precise one when both are sent.
        if extended_filename.is_some() {
            disposition.filename = extended_filename;
        }
        Ok(disposition)
    }
}

/// Reads a quoted-string body (after the opening quote), resolving backslash
/// escapes. Returns the text and how many bytes of `quoted` it spanned,
/// including the closing quote.
fn unquote(quoted: &str) -> Result<(String, usize), &'static str> {
    let mut text = String::new();
    let mut chars = quoted.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((text, at + 1)),
            '\\' => match chars.next() {
                Some((_, escaped)) => text.push(escaped),
                None => break,
            },
            _ => text.push(c),
        }
    }
    Err("unterminated quoted parameter in Content-Disposition")
}

/// Decodes an RFC 8187 extended value, `charset'language'percent-encoded`.
/// Returns `None` when it is malformed or the charset is unknown, so that the
/// plain `filename` is used instead.
fn decode_extended(value: &str) -> Option<String> {
    let (charset, rest) = value.split_once('\'')?;
    let (_language, encoded) = rest.split_once('\'')?;
    let encoding = Encoding::for_label(charset.trim().as_bytes())?;
    // RFC 3986 escapes (no `+` for space); an invalid escape is kept as written.
    let bytes: Vec<u8> = percent_encoding::percent_decode(encoded.as_bytes()).collect();
    // A lossy filename is still the best name available for the file.
    let (text, _had_errors) = encoding.decode_without_bom_handling(&bytes);
    Some(text.into_owned())
}

fn invalid(reason: impl Into<String>) -> NormalizeError {
    NormalizeError::Multipart(reason.into())
}

#[cfg(test)]
mod tests {
    use super::{to_json, NormalizeError};
    use serde_json::{json, Value};

    const B: &str = "XyZ123";

    fn parse(body: &[u8]) -> Value {
        let out = to_json(body, B).expect("body normalizes");
        serde_json::from_slice(&out).expect("normalizer output is valid JSON")
    }

    fn error(body: &[u8], boundary: &str) -> String {
        match to_json(body, boundary) {
            Err(NormalizeError::Multipart(reason)) => reason,
            other => panic!("expected a multipart error, got {other:?}"),
        }
    }

    /// Builds a body from (headers, content) pairs with CRLF line ends.
    fn body(parts: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (headers, content) in parts {
            out.extend_from_slice(format!("--{B}\r\n{headers}\r\n\r\n").as_bytes());
            out.extend_from_slice(content);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{B}--\r\n").as_bytes());
        out
    }

    #[test]
    fn field_and_file_parts() {
        let input = body(&[
            (
                "Content-Disposition: form-data; name=\"event\"",
                b"push".as_slice(),
            ),
            (
                "Content-Disposition: form-data; name=\"upload\"; filename=\"a.txt\"\r\nContent-Type: text/plain",
                b"line1\r\nline2\r\n".as_slice(),
            ),
        ]);
        assert_eq!(
            parse(&input),
            json!({
                "event": ["push"],
                "upload": [{
                    "filename": "a.txt",
                    "contenttype": "text/plain",
                    "base64": "bGluZTENCmxpbmUyDQo="
                }]
            })
        );
    }

    /// Content built to look like the delimiter almost everywhere: the longest boundary
    /// allowed, and a megabyte of lines that match all of it but its last character.
    /// The search is linear in the body (`memchr::memmem`), and only the real delimiters
    /// count.
    #[test]
    fn a_body_of_near_delimiters_is_read_right() {
        let boundary = format!("{}Z", "a".repeat(69));
        let near = format!("\r\n--{}Y", "a".repeat(69));
        let content = near.repeat((1 << 20) / near.len());
        let mut input = format!("--{boundary}\r\nContent-Disposition: form-data; name=big\r\n\r\n")
            .into_bytes();
        input.extend_from_slice(content.as_bytes());
        input.extend_from_slice(
            format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=small\r\n\r\nx\r\n--{boundary}--\r\n")
                .as_bytes(),
        );
        let out = to_json(&input, &boundary).expect("body normalizes");
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["big"][0].as_str().unwrap().len(), content.len());
        assert_eq!(v["small"], json!(["x"]));
    }

    #[test]
    fn output_is_compact() {
        let input = body(&[("Content-Disposition: form-data; name=a", b"1".as_slice())]);
        assert_eq!(to_json(&input, B).unwrap(), br#"{"a":["1"]}"#);
    }

    #[test]
    fn repeated_names_append_in_order() {
        let input = body(&[
            ("Content-Disposition: form-data; name=tag", b"b".as_slice()),
            (
                "Content-Disposition: form-data; name=other",
                b"x".as_slice(),
            ),
            ("Content-Disposition: form-data; name=tag", b"a".as_slice()),
            (
                "Content-Disposition: form-data; name=tag; filename=t.bin",
                b"\x00\x01".as_slice(),
            ),
        ]);
        assert_eq!(
            parse(&input),
            json!({
                "tag": ["b", "a", {"filename": "t.bin", "contenttype": null, "base64": "AAE="}],
                "other": ["x"]
            })
        );
    }

    #[test]
    fn quoted_escaped_and_bare_parameters() {
        let input = body(&[
            (
                r#"content-disposition:form-data;NAME="say \"hi\"; now";filename="C\\dir\"x.txt""#,
                b"data".as_slice(),
            ),
            (
                "CONTENT-DISPOSITION: form-data ;  name = bare ; junk ; other=\"\"",
                b"v".as_slice(),
            ),
        ]);
        assert_eq!(
            parse(&input),
            json!({
                "say \"hi\"; now": [{"filename": "C\\dir\"x.txt", "contenttype": null, "base64": "ZGF0YQ=="}],
                "bare": ["v"]
            })
        );
    }

    #[test]
    fn extended_filename() {
        let input = body(&[
            (
                "Content-Disposition: form-data; name=\"f\"; filename=\"fallback.txt\"; filename*=UTF-8''%E2%82%AC%20rates+2024.txt",
                b"x".as_slice(),
            ),
            (
                "Content-Disposition: form-data; name=\"g\"; filename*=iso-8859-1'en'caf%E9.txt",
                b"y".as_slice(),
            ),
            (
                "Content-Disposition: form-data; name=\"h\"; filename=\"kept.txt\"; filename*=klingon''x",
                b"z".as_slice(),
            ),
        ]);
        assert_eq!(
            parse(&input),
            json!({
                "f": [{"filename": "€ rates+2024.txt", "contenttype": null, "base64": "eA=="}],
                "g": [{"filename": "café.txt", "contenttype": null, "base64": "eQ=="}],
                "h": [{"filename": "kept.txt", "contenttype": null, "base64": "eg=="}]
            })
        );
    }

    #[test]
    fn non_utf8_field_is_kept_as_bytes() {
        let input = body(&[(
            "Content-Disposition: form-data; name=\"raw\"\r\nContent-Type: application/octet-stream",
            b"\xFF\xFE".as_slice(),
        )]);
        assert_eq!(
            parse(&input),
            json!({"raw": [{"filename": null, "contenttype": "application/octet-stream", "base64": "//4="}]})
        );
    }

    #[test]
    fn empty_file_input_and_empty_values() {
        let input = body(&[
            (
                "Content-Disposition: form-data; name=\"file\"; filename=\"\"\r\nContent-Type: application/octet-stream",
                b"".as_slice(),
            ),
            ("Content-Disposition: form-data; name=\"empty\"", b"".as_slice()),
        ]);
        assert_eq!(
            parse(&input),
            json!({
                "file": [{"filename": "", "contenttype": "application/octet-stream", "base64": ""}],
                "empty": [""]
            })
        );
    }

    #[test]
    fn preamble_epilogue_padding_and_lookalike_lines() {
        let input = format!(
            "This is the preamble.\r\n--{B}  \t\r\n\
             Content-Disposition: form-data; name=\"a\"\r\n\
             X-Other: ignored\r\n\
             \r\n\
             one\r\n--{B}X is not a delimiter\r\n-- {B}\r\n--{B}\r\n\
             Content-Disposition: form-data;\r\n name=\"b\"\r\n\
             \r\n\
             two\r\n--{B}--\r\nepilogue --{B}\r\n"
        );
        assert_eq!(
            parse(input.as_bytes()),
            json!({"a": [format!("one\r\n--{B}X is not a delimiter\r\n-- {B}")], "b": ["two"]})
        );
    }

    #[test]
    fn no_parts_is_empty_object() {
        assert_eq!(parse(format!("--{B}--").as_bytes()), json!({}));
        assert_eq!(
            parse(format!("preamble\r\n--{B}--\r\n").as_bytes()),
            json!({})
        );
    }

    #[test]
    fn boundary_errors() {
        assert!(error(b"--\r\n", "").contains("boundary is empty"));
        let long = "b".repeat(71);
        assert!(error(b"", &long).contains("longer than 70"));
        let max = "b".repeat(70);
        let input =
            format!("--{max}\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--{max}--");
        assert!(to_json(input.as_bytes(), &max).is_ok());
    }

    #[test]
    fn structural_errors() {
        assert!(error(b"", B).contains("no opening boundary delimiter"));
        assert!(error(b"no delimiters at all", B).contains("no opening"));
        assert!(error(format!("--{B}X\r\n").as_bytes(), B).contains("no opening"));
        let unclosed = format!("--{B}\r\nContent-Disposition: form-data; name=a\r\n\r\nsecret");
        let reason = error(unclosed.as_bytes(), B);
        assert!(
            reason.contains("missing closing boundary delimiter"),
            "{reason}"
        );
        assert!(!reason.contains("secret"), "{reason}");
        let truncated_close =
            format!("--{B}\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--{B}");
        assert!(error(truncated_close.as_bytes(), B).contains("missing closing"));
    }

    #[test]
    fn part_errors() {
        let no_name = body(&[(
            "Content-Disposition: form-data; filename=\"a\"",
            b"x".as_slice(),
        )]);
        assert_eq!(
            error(&no_name, B),
            "part has no Content-Disposition name (part 1)"
        );
        let no_disposition = body(&[
            ("Content-Disposition: form-data; name=ok", b"x".as_slice()),
            ("Content-Type: text/plain", b"x".as_slice()),
        ]);
        assert_eq!(
            error(&no_disposition, B),
            "part has no Content-Disposition header (part 2)"
        );
        let unterminated = format!("--{B}\r\nContent-Disposition: form-data; name=a\r\n--{B}--");
        assert!(error(unterminated.as_bytes(), B).contains("headers are not terminated"));
        let no_colon = body(&[("Content-Disposition form-data", b"x".as_slice())]);
        assert!(error(&no_colon, B).contains("malformed part header"));
        let open_quote = body(&[(
            "Content-Disposition: form-data; name=\"abc",
            b"x".as_slice(),
        )]);
        assert!(error(&open_quote, B).contains("unterminated quoted parameter"));
        let headerless = format!("--{B}\r\n\r\n--{B}--");
        assert!(error(headerless.as_bytes(), B).contains("no Content-Disposition header"));
    }

    #[test]
    fn part_limit() {
        let part: (&str, &[u8]) = ("Content-Disposition: form-data; name=p", b"v");
        let at_limit = body(&vec![part; 1000]);
        assert!(to_json(&at_limit, B).is_ok());
        let over = body(&vec![part; 1001]);
        assert_eq!(error(&over, B), "more than 1000 parts");
    }

    #[test]
    fn garbage_does_not_panic() {
        let inputs: [&[u8]; 10] = [
            b"--XyZ123",
            b"--XyZ123-",
            b"--XyZ123\r",
            b"--XyZ123\r\n",
            b"--XyZ123\r\n\r",
            b"--XyZ123\r\nContent-Disposition: form-data; name=\"\\",
            b"\r\n--XyZ123\r\n\r\n\r\n--XyZ123",
            b"--XyZ123\r\n: x\r\n\r\n\r\n--XyZ123--",
            b"--XyZ123\r\n x\r\n\r\n\r\n--XyZ123--",
            b"--XyZ123\r\nContent-Disposition: \xFF; name=\xFF\r\n\r\n\xFF\r\n--XyZ123--",
        ];
        for input in inputs {
            let _ = to_json(input, B);
        }
        // Only the last one is well formed: a lossy name, binary content.
        assert_eq!(
            parse(inputs[9]),
            json!({"\u{FFFD}": [{"filename": null, "contenttype": null, "base64": "/w=="}]})
        );
    }

    #[test]
    fn large_body_is_linear() {
        // Many near-delimiters would make a naive rescan quadratic.
        let filler = format!("\r\n--{}", &B[..B.len() - 1]).repeat(200_000);
        let input = body(&[(
            "Content-Disposition: form-data; name=big",
            filler.as_bytes(),
        )]);
        let out = parse(&input);
        assert_eq!(out["big"][0].as_str().map(str::len), Some(filler.len()));
    }
}
