//! An ordered multimap of names to string values: the shape of `data.query` and
//! `data.headers`, where every name maps to an array of strings.

use std::borrow::Cow;

/// Names in first-seen order, each with its values in arrival order.
///
/// Requests carry a few dozen names at most (the server bounds the header count), so a
/// linear scan beats hashing here and keeps the order stable for readers of the event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields<'a> {
    entries: Vec<(Cow<'a, str>, Values<'a>)>,
}

/// A name's values. Most names have one, kept inline, so that a request's headers cost
/// one allocation rather than one per header.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Values<'a> {
    One(Cow<'a, str>),
    Many(Vec<Cow<'a, str>>),
}

impl<'a> Values<'a> {
    fn push(&mut self, value: Cow<'a, str>) {
        match self {
            Values::One(first) => {
                let first = std::mem::take(first);
                *self = Values::Many(vec![first, value]);
            }
            Values::Many(values) => values.push(value),
        }
    }

    fn as_slice(&self) -> &[Cow<'a, str>] {
        match self {
            Values::One(value) => std::slice::from_ref(value),
            Values::Many(values) => values,
        }
    }
}

impl<'a> Fields<'a> {
    pub fn new() -> Self {
        Fields::default()
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Fields {
            entries: Vec::with_capacity(capacity),
        }
    }

    /// Adds one value under `name`, after any values it already has.
    pub fn push(&mut self, name: impl Into<Cow<'a, str>>, value: impl Into<Cow<'a, str>>) {
        let name = name.into();
        let value = value.into();
        match self.entries.iter_mut().rev().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value),
            None => self.entries.push((name, Values::One(value))),
        }
    }

    /// The values under `name`, if any.
    pub fn get(&self, name: &str) -> Option<&[Cow<'a, str>]> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[Cow<'a, str>])> {
        self.entries.iter().map(|(n, v)| (n.as_ref(), v.as_slice()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the JSON object `{"name":["value",…],…}` to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (name, values)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            crate::write_json_str(out, name);
            out.extend_from_slice(b":[");
            for (j, value) in values.as_slice().iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                crate::write_json_str(out, value);
            }
            out.push(b']');
        }
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_repeated_names_in_first_seen_order() {
        let mut f = Fields::new();
        f.push("b", "1");
        f.push("a", "2");
        f.push("b", "3");
        let mut out = Vec::new();
        f.write_json(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"b":["1","3"],"a":["2"]}"#
        );
        assert_eq!(f.get("b").unwrap().len(), 2);
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn escapes_names_and_values() {
        let mut f = Fields::new();
        f.push("x\"y", "a\\b\n");
        let mut out = Vec::new();
        f.write_json(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, serde_json::json!({"x\"y": ["a\\b\n"]}));
    }
}
