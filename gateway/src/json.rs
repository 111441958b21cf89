//! JSON scanning: a body validated in one pass that also picks out the values read by
//! JSON pointer, without building a document tree. Normalization validates JSON bodies
//! with it (the body is then spliced into the event as received) and finds a hook's record
//! key and event type; signature recipes find a timestamp or delivery id in the body;
//! handshakes find a provider's challenge.

/// Why a body is not one JSON value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not JSON: what was wrong and at which byte.
    #[error("{0}")]
    Invalid(String),
    #[error("body nests deeper than {0} levels")]
    TooDeep(usize),
}

/// How deep arrays and objects may nest in a JSON body.
pub const JSON_MAX_DEPTH: usize = 100;

/// An RFC 6901 JSON pointer, split into unescaped reference tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    tokens: Vec<String>,
}

impl Pointer {
    /// Parses `""` (the whole document) or `/a/b~1c/0`. `None` if it does not start with `/`.
    pub fn parse(s: &str) -> Option<Pointer> {
        if s.is_empty() {
            return Some(Pointer { tokens: Vec::new() });
        }
        let rest = s.strip_prefix('/')?;
        Some(Pointer {
            tokens: rest
                .split('/')
                .map(|t| t.replace("~1", "/").replace("~0", "~"))
                .collect(),
        })
    }
}

/// Checks that `body` is exactly one JSON value.
pub fn validate(body: &[u8]) -> Result<(), JsonError> {
    scan(body, &[]).map(|_| ())
}

/// Validates `body` and returns, for each pointer, the scalar it points at: a string as
/// is, a number or boolean as its JSON text. Absent paths, `null`, objects and arrays give
/// `None`.
///
/// The grammar is RFC 8259's, as strict as serde_json (which the consumers and most JSON
/// libraries downstream agree with): UTF-8, no control characters in strings, no lone
/// surrogate escapes, no number beyond the range of an `f64`, and at most
/// [`JSON_MAX_DEPTH`] levels of arrays and objects.
pub fn scan(body: &[u8], pointers: &[&Pointer]) -> Result<Vec<Option<String>>, JsonError> {
    // JSON text is UTF-8 (RFC 8259). Checked once here, so the scanner below only has to
    // look at ASCII; the body is spliced into the event as is.
    std::str::from_utf8(body)
        .map_err(|e| JsonError::Invalid(format!("not UTF-8 at byte {}", e.valid_up_to())))?;
    let mut found = vec![None; pointers.len()];
    let active: Vec<usize> = (0..pointers.len()).collect();
    let mut scanner = Scanner {
        bytes: body,
        at: 0,
        pointers,
        found: &mut found,
    };
    scanner.whitespace();
    scanner.value(0, &active)?;
    scanner.whitespace();
    if scanner.at < body.len() {
        return Err(scanner.error("trailing characters after the JSON value"));
    }
    Ok(found)
}

/// A recursive-descent validator over the body's bytes. It builds nothing: strings are
/// checked in place, and only the values the pointers ask for are copied out.
struct Scanner<'b, 'p, 'f> {
    bytes: &'b [u8],
    at: usize,
    pointers: &'p [&'p Pointer],
    found: &'f mut [Option<String>],
}

/// Where a run of string text that starts at `from` ends: the index of the first byte a
/// JSON string cannot hold as it is (a quote, a backslash or a control character), or
/// `bytes.len()` if there is none.
fn plain_run_end(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Most strings in a JSON document are short (keys, ids, small values): a byte at a
    // time while that is cheaper than setting up the wide steps.
    let short_end = bytes.len().min(from.saturating_add(8));
    let mut i = from;
    while i < short_end {
        if STOPS[usize::from(bytes[i])] {
            return i;
        }
        i += 1;
    }
    // The high bit of each zero byte of `word`, exact up to the first zero byte (a borrow
    // only sets bits above one). Read little-endian, the first byte in memory is lowest.
    let zeros = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS;
    // Then eight bytes at a time while there are eight.
    while let Some(chunk) = bytes.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        // A byte is a control character (below 0x20) when its top three bits are clear.
        let stops = zeros(word & u64::from_ne_bytes([0xe0; 8]))
            | zeros(word ^ u64::from_ne_bytes([b'"'; 8]))
            | zeros(word ^ u64::from_ne_bytes([b'\\'; 8]));
        if stops != 0 {
            return i + (stops.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < bytes.len() && !STOPS[usize::from(bytes[i])] {
        i += 1;
    }
    i
}

/// The bytes [`plain_run_end`] stops at, by value: a string's closing quote, an escape,
/// or a control character (which JSON does not allow unescaped).
static STOPS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

impl<'b> Scanner<'b, '_, '_> {
    fn error(&self, what: &str) -> JsonError {
        JsonError::Invalid(format!("{what} at byte {}", self.at))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// One value, at nesting `depth`, following the pointers still `active` there.
    fn value(&mut self, depth: usize, active: &[usize]) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'{') => self.object(depth, active),
            Some(b'[') => self.array(depth, active),
            Some(b'"') => {
                let raw = self.string()?;
                self.record(depth, active, || unescape(raw));
                Ok(())
            }
            Some(b'-' | b'0'..=b'9') => {
                let raw = self.number()?;
                self.record(depth, active, || number_text(raw));
                Ok(())
            }
            Some(b't') => self.literal(b"true", depth, active),
            Some(b'f') => self.literal(b"false", depth, active),
            Some(b'n') => self.literal(b"null", depth, active),
            Some(_) => Err(self.error("expected a JSON value")),
            None => Err(self.error("unexpected end of the body")),
        }
    }

    fn literal(&mut self, word: &[u8], depth: usize, active: &[usize]) -> Result<(), JsonError> {
        if !self.bytes[self.at..].starts_with(word) {
            return Err(self.error("expected a JSON value"));
        }
        self.at += word.len();
        if word != b"null" {
            self.record(depth, active, || String::from_utf8_lossy(word).into_owned());
        }
        Ok(())
    }

    /// Stores the value for the active pointers that end here.
    fn record(&mut self, depth: usize, active: &[usize], value: impl FnOnce() -> String) {
        let mut make = Some(value);
        let mut text: Option<String> = None;
        for &i in active {
            if self.pointers[i].tokens.len() == depth {
                if let Some(make) = make.take() {
                    text = Some(make());
                }
                self.found[i] = text.clone();
            }
        }
    }

    /// The active pointers that continue below the child named `token`.
    fn descend(&self, depth: usize, active: &[usize], token: &[u8]) -> Vec<usize> {
        active
            .iter()
            .copied()
            .filter(|&i| {
                self.pointers[i]
                    .tokens
                    .get(depth)
                    .is_some_and(|t| t.as_bytes() == token)
            })
            .collect()
    }

    fn enter(&mut self, depth: usize) -> Result<(), JsonError> {
        // Bounds what consumers must parse: the event adds two levels around the body, and
        // common JSON parsers stop at 128.
        if depth >= JSON_MAX_DEPTH {
            return Err(JsonError::TooDeep(JSON_MAX_DEPTH));
        }
        self.at += 1;
        self.whitespace();
        Ok(())
    }

    fn object(&mut self, depth: usize, active: &[usize]) -> Result<(), JsonError> {
        self.enter(depth)?;
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.error("expected an object key"));
            }
            let key = self.string()?;
            let next = if active.is_empty() {
                Vec::new()
            } else if key.contains(&b'\\') {
                self.descend(depth, active, unescape(key).as_bytes())
            } else {
                self.descend(depth, active, key)
            };
            self.whitespace();
            if self.peek() != Some(b':') {
                return Err(self.error("expected `:` after an object key"));
            }
            self.at += 1;
            self.whitespace();
            self.value(depth + 1, &next)?;
            self.whitespace();
            match self.peek() {
                Some(b',') => {
                    self.at += 1;
                    self.whitespace();
                }
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected `,` or `}` in an object")),
            }
        }
    }

    fn array(&mut self, depth: usize, active: &[usize]) -> Result<(), JsonError> {
        self.enter(depth)?;
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(());
        }
        let mut index = 0usize;
        loop {
            let next = if active.is_empty() {
                Vec::new()
            } else {
                self.descend(depth, active, index.to_string().as_bytes())
            };
            self.value(depth + 1, &next)?;
            self.whitespace();
            match self.peek() {
                Some(b',') => {
                    self.at += 1;
                    self.whitespace();
                    index += 1;
                }
                Some(b']') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected `,` or `]` in an array")),
            }
        }
    }

    /// A string; returns its raw text between the quotes, escapes left as they are.
    fn string(&mut self) -> Result<&'b [u8], JsonError> {
        let start = self.at + 1;
        let mut i = start;
        let bytes = self.bytes;
        loop {
            i = plain_run_end(bytes, i);
            match bytes.get(i) {
                Some(b'"') => {
                    self.at = i + 1;
                    return Ok(&bytes[start..i]);
                }
                Some(b'\\') => {
                    self.at = i;
                    i = self.escape(i + 1)?;
                }
                Some(_) => {
                    self.at = i;
                    return Err(self.error("control character in a string"));
                }
                None => {
                    self.at = i;
                    return Err(self.error("unterminated string"));
                }
            }
        }
    }

    /// The escape whose letter is at `i`; returns where the string goes on.
    fn escape(&mut self, i: usize) -> Result<usize, JsonError> {
        match self.bytes.get(i) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 1),
            Some(b'u') => {
                let unit = self.hex4(i + 1)?;
                match unit {
                    0xDC00..=0xDFFF => Err(self.error("lone low surrogate escape")),
                    0xD800..=0xDBFF => {
                        // A high surrogate must be followed by an escaped low one.
                        let j = i + 5;
                        if self.bytes.get(j..j + 2) != Some(b"\\u") {
                            return Err(self.error("lone high surrogate escape"));
                        }
                        match self.hex4(j + 2)? {
                            0xDC00..=0xDFFF => Ok(j + 6),
                            _ => Err(self.error("lone high surrogate escape")),
                        }
                    }
                    _ => Ok(i + 5),
                }
            }
            _ => Err(self.error("invalid escape in a string")),
        }
    }

    fn hex4(&self, i: usize) -> Result<u16, JsonError> {
        let digits = self
            .bytes
            .get(i..i + 4)
            .ok_or_else(|| self.error("unterminated \\u escape"))?;
        let mut unit = 0u16;
        for &d in digits {
            let v = crate::hex::digit(d).ok_or_else(|| self.error("invalid \\u escape"))?;
            unit = unit << 4 | u16::from(v);
        }
        Ok(unit)
    }

    /// A number; returns its text.
    fn number(&mut self) -> Result<&'b [u8], JsonError> {
        let bytes = self.bytes;
        let start = self.at;
        let mut i = start;
        let digits = |mut i: usize| {
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        if bytes.get(i) == Some(&b'-') {
            i += 1;
        }
        let int_start = i;
        match bytes.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits(i),
            _ => {
                self.at = i;
                return Err(self.error("invalid number"));
            }
        }
        let int_digits = i - int_start;
        if bytes.get(i) == Some(&b'.') {
            let frac = i + 1;
            i = digits(frac);
            if i == frac {
                self.at = i;
                return Err(self.error("invalid number: no digits after `.`"));
            }
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = bytes.get(i) {
            exponent = true;
            i += 1;
            if let Some(b'+' | b'-') = bytes.get(i) {
                i += 1;
            }
            let exp = i;
            i = digits(exp);
            if i == exp {
                self.at = i;
                return Err(self.error("invalid number: no digits in the exponent"));
            }
        }
        self.at = i;
        let text = &bytes[start..i];
        // Only an exponent or more than 300 integer digits can leave the range of an f64,
        // which serde_json and most parsers downstream refuse.
        if exponent || int_digits > 300 {
            let value: f64 = std::str::from_utf8(text)
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(f64::INFINITY);
            if !value.is_finite() {
                return Err(self.error("number out of range"));
            }
        }
        Ok(text)
    }
}

/// The text of a validated string (without its quotes), escapes resolved.
fn unescape(raw: &[u8]) -> String {
    if !raw.contains(&b'\\') {
        // Validated UTF-8 by `scan`.
        return String::from_utf8_lossy(raw).into_owned();
    }
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice(&quoted).unwrap_or_default()
}

/// A validated number as the pointers report it: integers as written (normalized, as
/// `-0` is `0`), other numbers as the shortest text of their `f64`.
fn number_text(raw: &[u8]) -> String {
    let text = std::str::from_utf8(raw).unwrap_or_default();
    if let Ok(v) = text.parse::<u64>() {
        return v.to_string();
    }
    if let Ok(v) = text.parse::<i64>() {
        return v.to_string();
    }
    text.parse::<f64>()
        .map_or_else(|_| text.to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ptr(s: &str) -> Pointer {
        Pointer::parse(s).unwrap()
    }

    #[test]
    fn a_plain_run_ends_at_the_first_quote_backslash_or_control_character_wherever_it_is() {
        // Every byte value at every offset of runs shorter and longer than the byte-wise
        // start and the eight-byte steps, in text of bytes next to the stops (0x20, 0x21,
        // 0x5b, 0x5d) and high bytes.
        let filler = [0x20, 0x21, 0x5b, 0x5d, 0x7f, 0x80, 0xff, b'a'];
        for len in 0..30 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut bytes: Vec<u8> = (0..len).map(|i| filler[i % filler.len()]).collect();
                    bytes[at] = b;
                    let expected = bytes
                        .iter()
                        .position(|&c| c < 0x20 || c == b'"' || c == b'\\')
                        .unwrap_or(len);
                    assert_eq!(plain_run_end(&bytes, 0), expected, "{bytes:?}");
                    if expected < len {
                        assert_eq!(plain_run_end(&bytes, expected + 1), len, "{bytes:?}");
                    }
                }
            }
        }
        // Two stops in the same eight bytes: the first.
        assert_eq!(plain_run_end(b"12345678ab\"cdef\"gh", 0), 10);
        assert_eq!(plain_run_end(b"12345678ab\\c\ndefgh", 0), 10);
        assert_eq!(plain_run_end(b"12345678ab\x00\"defgh", 0), 10);
    }

    #[test]
    fn finds_scalars_by_pointer() {
        let body = br#"{"id":"evt_1","n":{"a/b":[10,{"x~y":true}]},"f":1.5,"z":null,"o":{}}"#;
        let ps = [
            ptr("/id"),
            ptr("/n/a~1b/0"),
            ptr("/n/a~1b/1/x~0y"),
            ptr("/f"),
            ptr("/z"),
            ptr("/o"),
            ptr("/missing"),
        ];
        let refs: Vec<&Pointer> = ps.iter().collect();
        let got = scan(body, &refs).unwrap();
        assert_eq!(
            got,
            vec![
                Some("evt_1".into()),
                Some("10".into()),
                Some("true".into()),
                Some("1.5".into()),
                None,
                None,
                None
            ]
        );
    }

    #[test]
    fn escaped_keys_match_too() {
        let body = br#"{"a\u0062":"yes"}"#;
        let p = ptr("/ab");
        assert_eq!(scan(body, &[&p]).unwrap(), vec![Some("yes".into())]);
    }

    #[test]
    fn the_whole_document_can_be_a_scalar() {
        let p = ptr("");
        assert_eq!(scan(b"\"k\"", &[&p]).unwrap(), vec![Some("k".into())]);
    }

    #[test]
    fn invalid_documents_are_errors_even_past_the_pointer() {
        let p = ptr("/a");
        assert!(matches!(
            scan(br#"{"a":"x","b":}"#, &[&p]),
            Err(JsonError::Invalid(_))
        ));
        assert!(matches!(scan(b"{} {}", &[]), Err(JsonError::Invalid(_))));
        assert!(matches!(scan(b"\"\xff\"", &[]), Err(JsonError::Invalid(_))));
        // What serde_json-based consumers refuse, the gateway refuses too.
        assert!(matches!(
            scan(br#"["\ud800"]"#, &[]),
            Err(JsonError::Invalid(_))
        ));
        assert!(matches!(
            scan(b"{\"n\":1e400}", &[]),
            Err(JsonError::Invalid(_))
        ));
        let deep = "[".repeat(101) + &"]".repeat(101);
        assert_eq!(
            validate(deep.as_bytes()),
            Err(JsonError::TooDeep(JSON_MAX_DEPTH))
        );
        let ok = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(validate(ok.as_bytes()), Ok(()));
        // Brackets inside strings do not count.
        let quoted = format!("[\"{}\\\"{}\"]", "[".repeat(300), "{".repeat(300));
        assert_eq!(validate(quoted.as_bytes()), Ok(()));
    }

    #[test]
    fn grammar_edges_agree_with_serde_json() {
        for (text, ok) in [
            ("0", true),
            ("-0", true),
            ("01", false),
            ("-", false),
            ("1.", false),
            (".5", false),
            ("1e", false),
            ("1e+", false),
            ("1E-7", true),
            ("1e308", true),
            ("1e309", false),
            ("-1e309", false),
            ("1e-400", true),
            ("\"\\u00e9\\ud83d\\ude00\"", true),
            ("\"\\udc00\"", false),
            ("\"\\ud83dx\"", false),
            ("\"\\ud83d\\u0041\"", false),
            ("\"\\x\"", false),
            ("\"\\u12\"", false),
            ("\"a\tb\"", false),
            ("\"\u{7f}\"", true),
            ("[1,]", false),
            ("{\"a\":1,}", false),
            ("{\"a\" : [ true , false , null ] }", true),
            ("{1:2}", false),
            ("tru", false),
            ("nul", false),
            (" \t\r\n[]\n", true),
            ("", false),
            ("[] x", false),
        ] {
            let reference = serde_json::from_str::<serde_json::Value>(text).is_ok();
            assert_eq!(reference, ok, "the table is wrong about {text:?}");
            assert_eq!(validate(text.as_bytes()).is_ok(), ok, "{text:?}");
        }
    }

    /// Any JSON value, a few levels deep.
    fn any_json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e300f64..1e300).prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z/~]{0,4}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Every path to a value of `v`, as JSON pointers.
    fn paths(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
        out.push(at.clone());
        match v {
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    paths(item, format!("{at}/{i}"), out);
                }
            }
            serde_json::Value::Object(map) => {
                for (k, item) in map {
                    let token = k.replace('~', "~0").replace('/', "~1");
                    paths(item, format!("{at}/{token}"), out);
                }
            }
            _ => {}
        }
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512)
        ))]

        /// Whatever serde_json accepts or refuses, the scanner does too, on valid documents
        /// and on every one-byte change of them.
        #[test]
        fn validity_matches_serde_json(
            v in any_json(),
            pretty in any::<bool>(),
            at in any::<prop::sample::Index>(),
            byte in prop::sample::select(b"{}[]\",:\\ 0123456789-+.eEtrufalsn\x01\xff".to_vec()),
            change in 0u8..3,
        ) {
            let text = if pretty {
                serde_json::to_vec_pretty(&v).unwrap()
            } else {
                serde_json::to_vec(&v).unwrap()
            };
            prop_assert_eq!(validate(&text), Ok(()));
            let mut changed = text.clone();
            let i = at.index(changed.len() + 1);
            match change {
                0 => changed.insert(i, byte),
                1 if i < changed.len() => changed[i] = byte,
                _ if i < changed.len() => { changed.remove(i); }
                _ => changed.push(byte),
            }
            let reference = serde_json::from_slice::<serde_json::Value>(&changed).is_ok();
            prop_assert_eq!(
                validate(&changed).is_ok(),
                reference,
                "{:?}",
                String::from_utf8_lossy(&changed)
            );
        }

        /// Every pointer finds what serde_json's own pointer lookup finds.
        #[test]
        fn pointers_find_what_serde_json_finds(v in any_json(), pick in any::<prop::sample::Index>()) {
            let text = serde_json::to_vec(&v).unwrap();
            let mut all = Vec::new();
            paths(&v, String::new(), &mut all);
            let path = &all[pick.index(all.len())];
            let p = Pointer::parse(path).unwrap();
            let expected = match v.pointer(path).unwrap() {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Bool(b) => Some(b.to_string()),
                serde_json::Value::Number(n) => Some(match (n.as_u64(), n.as_i64(), n.as_f64()) {
                    (Some(u), _, _) => u.to_string(),
                    (_, Some(i), _) => i.to_string(),
                    (_, _, Some(f)) => f.to_string(),
                    _ => unreachable!(),
                }),
                _ => None,
            };
            prop_assert_eq!(scan(&text, &[&p]).unwrap(), vec![expected]);
        }
    }

    #[test]
    fn pointer_syntax() {
        assert!(Pointer::parse("a").is_none());
        assert_eq!(ptr("/a~1b~0").tokens, vec!["a/b~".to_string()]);
    }
}
