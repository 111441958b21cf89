//! JSON bodies: validated in one pass that also picks out the values the hook reads by
//! JSON pointer (record key, event type), without building a document tree. The body is
//! then spliced into the event as received.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::NormalizeError;

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
pub fn validate(body: &[u8]) -> Result<(), NormalizeError> {
    scan(body, &[]).map(|_| ())
}

/// Validates `body` and returns, for each pointer, the scalar it points at: a string as
/// is, a number or boolean as its JSON text. Absent paths, `null`, objects and arrays give
/// `None`.
pub fn scan(body: &[u8], pointers: &[&Pointer]) -> Result<Vec<Option<String>>, NormalizeError> {
    // JSON text is UTF-8 (RFC 8259). Checked once here, because skipping a value does not
    // look inside its strings and the body is spliced into the event as is.
    let text = std::str::from_utf8(body)
        .map_err(|e| NormalizeError::Json(format!("not UTF-8 at byte {}", e.valid_up_to())))?;
    if !nesting_within(body, JSON_MAX_DEPTH) {
        return Err(NormalizeError::TooDeep(JSON_MAX_DEPTH));
    }
    let mut found = vec![None; pointers.len()];
    let active: Vec<usize> = (0..pointers.len()).collect();
    let mut de = serde_json::Deserializer::from_str(text);
    Walker {
        pointers,
        active: &active,
        depth: 0,
        found: &mut found,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end())
    .map_err(|e| NormalizeError::Json(e.to_string()))?;
    Ok(found)
}

/// Whether no array or object in `text` nests deeper than `max`. Skipping a value does not
/// count levels, so this bounds what consumers must parse: the event adds two levels
/// around the body, and common JSON parsers stop at 128.
fn nesting_within(text: &[u8], max: usize) -> bool {
    // Deeper nesting needs more than `max` bytes.
    if text.len() <= max {
        return true;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Walks one value, following the pointers still `active` at this depth and validating
/// everything else.
struct Walker<'p, 'f> {
    pointers: &'p [&'p Pointer],
    active: &'p [usize],
    depth: usize,
    found: &'f mut [Option<String>],
}

impl Walker<'_, '_> {
    /// Pointers that continue below the child named `token`.
    fn descend(&self, token: &str) -> Vec<usize> {
        self.active
            .iter()
            .copied()
            .filter(|&i| {
                self.pointers[i]
                    .tokens
                    .get(self.depth)
                    .is_some_and(|t| t == token)
            })
            .collect()
    }

    fn record(&mut self, value: impl FnOnce() -> String) {
        let mut make = Some(value);
        let mut text: Option<String> = None;
        for &i in self.active {
            if self.pointers[i].tokens.len() == self.depth {
                if let Some(make) = make.take() {
                    text = Some(make());
                }
                self.found[i] = text.clone();
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walker<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        // Every value is parsed, not skipped: skipping would let through what JSON parsers
        // downstream refuse (lone surrogate escapes, numbers out of range).
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walker<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<(), E> {
        self.record(|| v.to_string());
        Ok(())
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<(), E> {
        self.record(|| v.to_string());
        Ok(())
    }

    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<(), E> {
        self.record(|| v.to_string());
        Ok(())
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<(), E> {
        self.record(|| v.to_string());
        Ok(())
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        self.record(|| v.to_string());
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<KeyText>()? {
            let next = self.descend(&key.0);
            map.next_value_seed(Walker {
                pointers: self.pointers,
                active: &next,
                depth: self.depth + 1,
                found: &mut *self.found,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        loop {
            let next = if self.active.is_empty() {
                Vec::new()
            } else {
                self.descend(&index.to_string())
            };
            let more = seq.next_element_seed(Walker {
                pointers: self.pointers,
                active: &next,
                depth: self.depth + 1,
                found: &mut *self.found,
            })?;
            if more.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct KeyText<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for KeyText<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyText<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<KeyText<'de>, E> {
                Ok(KeyText(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText<'de>, E> {
                Ok(KeyText(v.to_string().into()))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ptr(s: &str) -> Pointer {
        Pointer::parse(s).unwrap()
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
            Err(NormalizeError::Json(_))
        ));
        assert!(matches!(scan(b"{} {}", &[]), Err(NormalizeError::Json(_))));
        assert!(matches!(
            scan(b"\"\xff\"", &[]),
            Err(NormalizeError::Json(_))
        ));
        // What serde_json-based consumers refuse, the gateway refuses too.
        assert!(matches!(
            scan(br#"["\ud800"]"#, &[]),
            Err(NormalizeError::Json(_))
        ));
        assert!(matches!(
            scan(b"{\"n\":1e400}", &[]),
            Err(NormalizeError::Json(_))
        ));
        let deep = "[".repeat(101) + &"]".repeat(101);
        assert_eq!(
            validate(deep.as_bytes()),
            Err(NormalizeError::TooDeep(JSON_MAX_DEPTH))
        );
        let ok = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(validate(ok.as_bytes()), Ok(()));
        // Brackets inside strings do not count.
        let quoted = format!("[\"{}\\\"{}\"]", "[".repeat(300), "{".repeat(300));
        assert_eq!(validate(quoted.as_bytes()), Ok(()));
    }

    #[test]
    fn pointer_syntax() {
        assert!(Pointer::parse("a").is_none());
        assert_eq!(ptr("/a~1b~0").tokens, vec!["a/b~".to_string()]);
    }
}
