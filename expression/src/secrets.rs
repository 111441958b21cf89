//! The secrets templates may read with `secret('NAME')`, and the masking that keeps their
//! values out of logs and execution records.
//!
//! The table is built elsewhere, from `{ env = … }` / `{ file = … }` references in the
//! consumer configuration; this module only holds the resolved values.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;

/// What a masked secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Values shorter than this are not masked: a three-character secret would turn ordinary
/// words in every log line into `[redacted]` and make the logs useless.
pub const MASK_MIN_CHARS: usize = 4;

/// Resolved secrets, by name. `Debug` shows the names only.
#[derive(Clone, Default)]
pub struct Secrets {
    values: BTreeMap<String, String>,
    /// Every text to mask, longest first; rebuilt on each insert (a load-time event).
    masked: Vec<String>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.values.keys().map(|name| (name, Redacted)))
            .finish()
    }
}

struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl FromIterator<(String, String)> for Secrets {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        let mut secrets = Secrets::default();
        secrets.values.extend(iter);
        secrets.rebuild_masks();
        secrets
    }
}

impl From<BTreeMap<String, String>> for Secrets {
    fn from(values: BTreeMap<String, String>) -> Self {
        let mut secrets = Secrets {
            values,
            masked: Vec::new(),
        };
        secrets.rebuild_masks();
        secrets
    }
}

impl Secrets {
    /// Adds (or replaces) one secret.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.values.insert(name.into(), value.into());
        self.rebuild_masks();
    }

    /// The value of a secret.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// The names of all secrets, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Replaces every occurrence of every secret value in `text` with `[redacted]`.
    ///
    /// Besides the raw value, the forms a template's filters give it are masked too
    /// (JSON-escaped, percent- and form-encoded, base64), since a log line may quote a
    /// rendered body. Occurrences that overlap, including those of different secrets
    /// sharing a prefix, are merged into one `[redacted]`, so no tail of a longer secret
    /// survives next to a shorter one.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for needle in &self.masked {
            let mut from = 0;
            while let Some(offset) = text[from..].find(needle.as_str()) {
                let start = from + offset;
                spans.push((start, start + needle.len()));
                // Step one character, not the whole match, so overlapping occurrences
                // ("aaaa" twice in "aaaaa") are all found.
                from = start + text[start..].chars().next().map_or(1, char::len_utf8);
            }
        }
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        spans.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        let mut spans = spans.into_iter().peekable();
        while let Some((start, mut end)) = spans.next() {
            while let Some(&(next_start, next_end)) = spans.peek() {
                if next_start >= end {
                    break;
                }
                end = end.max(next_end);
                spans.next();
            }
            out.push_str(&text[copied..start]);
            out.push_str(REDACTED);
            copied = end;
        }
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }

    /// [`mask`](Self::mask) applied to every string and object key in a JSON value.
    pub fn mask_json(&self, value: &mut serde_json::Value) {
        if self.masked.is_empty() {
            return;
        }
        match value {
            serde_json::Value::String(s) => {
                if let Cow::Owned(masked) = self.mask(s) {
                    *s = masked;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.mask_json(v)),
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut item) in entries {
                    self.mask_json(&mut item);
                    map.insert(self.mask(&key).into_owned(), item);
                }
            }
            _ => {}
        }
    }

    fn rebuild_masks(&mut self) {
        let mut masked: Vec<String> = self
            .values
            .values()
            .flat_map(|value| encodings(value))
            .filter(|text| text.chars().count() >= MASK_MIN_CHARS)
            .collect();
        masked.sort_unstable_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        masked.dedup();
        self.masked = masked;
    }
}

/// The raw value and the encodings the template filters can give it.
fn encodings(value: &str) -> Vec<String> {
    if value.chars().count() < MASK_MIN_CHARS {
        return Vec::new();
    }
    let json = serde_json::Value::from(value).to_string();
    vec![
        value.to_owned(),
        // Without the surrounding quotes: the form inside a JSON document.
        json[1..json.len() - 1].to_owned(),
        super::functions::percent_encode(value),
        form_urlencoded::byte_serialize(value.as_bytes()).collect(),
        base64::engine::general_purpose::STANDARD.encode(value),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(pairs: &[(&str, &str)]) -> Secrets {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn debug_prints_names_not_values() {
        let s = secrets(&[("SLACK_TOKEN", "xoxb-123456")]);
        assert_eq!(format!("{s:?}"), r#"{"SLACK_TOKEN": [redacted]}"#);
    }

    #[test]
    fn masks_every_occurrence() {
        let s = secrets(&[("T", "abcd1234")]);
        assert_eq!(
            s.mask("token=abcd1234, again abcd1234."),
            "token=[redacted], again [redacted]."
        );
    }

    #[test]
    fn leaves_text_without_secrets_borrowed() {
        let s = secrets(&[("T", "abcd1234")]);
        assert!(matches!(
            s.mask("nothing here"),
            Cow::Borrowed("nothing here")
        ));
    }

    #[test]
    fn short_and_empty_values_are_not_masked() {
        let s = secrets(&[("E", ""), ("S", "abc")]);
        assert_eq!(s.mask("abc abc"), "abc abc");
    }

    #[test]
    fn overlapping_prefix_secrets_leave_no_tail() {
        let s = secrets(&[("SHORT", "hunter"), ("LONG", "hunter2-extended")]);
        assert_eq!(
            s.mask("a hunter2-extended b hunter c"),
            "a [redacted] b [redacted] c"
        );
        // Overlap between different secrets ("abcd" + "cdef" in "abcdef").
        let s = secrets(&[("A", "abcd"), ("B", "cdef")]);
        assert_eq!(s.mask("xabcdefx"), "x[redacted]x");
        // Overlap of one secret with itself.
        let s = secrets(&[("A", "aaaa")]);
        assert_eq!(s.mask("aaaaa"), "[redacted]");
    }

    #[test]
    fn masks_encoded_forms() {
        let s = secrets(&[("P", "p@ss w\"rd")]);
        assert_eq!(s.mask(r#"{"p":"p@ss w\"rd"}"#), r#"{"p":"[redacted]"}"#);
        assert_eq!(s.mask("p=p%40ss+w%22rd"), "p=[redacted]");
        assert_eq!(s.mask("/p%40ss%20w%22rd/"), "/[redacted]/");
        assert_eq!(s.mask("Basic cEBzcyB3InJk"), "Basic [redacted]");
    }

    #[test]
    fn masks_non_ascii_text() {
        let s = secrets(&[("U", "clé-secrète")]);
        assert_eq!(s.mask("é clé-secrète é"), "é [redacted] é");
    }

    #[test]
    fn mask_json_walks_values_and_keys() {
        let s = secrets(&[("T", "abcd1234")]);
        let mut v = serde_json::json!({
            "headers": {"authorization": ["Bearer abcd1234"]},
            "abcd1234": 1,
            "n": 5
        });
        s.mask_json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({
                "headers": {"authorization": ["Bearer [redacted]"]},
                "[redacted]": 1,
                "n": 5
            })
        );
    }
}
