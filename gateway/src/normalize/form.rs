//! Normalizer for `application/x-www-form-urlencoded` bodies.
//!
//! In the gateway's data path, once a request body has been read in full and
//! authenticated, the normalizer chosen by the request's content type turns
//! it into the event's `data.body`. This one decodes a form body into a JSON
//! object whose values are always arrays of strings.

use std::collections::BTreeMap;

use serde_json::Value;

/// Decodes a form body into `{"name": ["value", ...], ...}`.
///
/// Every name maps to an array, even when it occurs once, so consumers see
/// the same shape whether a sender repeated a field or not. Decoding is the
/// WHATWG one (`+` is a space, invalid percent escapes are kept literally,
/// invalid UTF-8 is replaced), so it cannot fail: a form body was already
/// authenticated byte for byte, and rejecting it here for a stray `%` would
/// lose a delivery the sender considers successful.
pub fn to_json(body: &[u8]) -> Vec<u8> {
    let mut fields: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(body) {
        fields
            .entry(name.into_owned())
            .or_default()
            .push(Value::String(value.into_owned()));
    }
    let object = fields
        .into_iter()
        .map(|(name, values)| (name, Value::Array(values)))
        .collect();
    Value::Object(object).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::to_json;
    use serde_json::{json, Value};

    fn parse(body: &[u8]) -> Value {
        let out = to_json(body);
        serde_json::from_slice(&out).expect("normalizer output is valid JSON")
    }

    #[test]
    fn empty_body_is_empty_object() {
        assert_eq!(to_json(b""), b"{}");
    }

    #[test]
    fn single_fields_are_arrays() {
        assert_eq!(
            parse(b"event=push&id=42"),
            json!({"event": ["push"], "id": ["42"]})
        );
    }

    #[test]
    fn repeated_names_append_in_order() {
        assert_eq!(
            parse(b"tag=b&other=x&tag=a&tag=c"),
            json!({"tag": ["b", "a", "c"], "other": ["x"]})
        );
    }

    #[test]
    fn percent_and_plus_decoding() {
        assert_eq!(
            parse(b"msg=hello+world%21&caf%C3%A9=%E2%82%AC+5&sum=1%2B1"),
            json!({"msg": ["hello world!"], "café": ["€ 5"], "sum": ["1+1"]})
        );
    }

    #[test]
    fn missing_values_and_empty_pairs() {
        assert_eq!(
            parse(b"flag&&empty=&=orphan"),
            json!({"flag": [""], "empty": [""], "": ["orphan"]})
        );
    }

    #[test]
    fn malformed_input_is_decoded_leniently() {
        // A bad escape stays literal and invalid UTF-8 becomes U+FFFD.
        assert_eq!(
            parse(b"a=%zz%4&b=%FF"),
            json!({"a": ["%zz%4"], "b": ["\u{FFFD}"]})
        );
    }

    #[test]
    fn output_is_compact() {
        assert_eq!(to_json(b"a=1&a=2"), br#"{"a":["1","2"]}"#);
    }
}
