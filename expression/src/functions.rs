//! What the engine adds to minijinja's built-ins: the functions `json()` and `secret()`,
//! the filters `xml`, `form`, `urlencode` and `b64encode`, and how a value prints.
//!
//! (`tojson` is minijinja's own, from its `json` feature.)

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use minijinja::value::ValueKind;
use minijinja::{Environment, Error, ErrorKind, Output, State, Value};

use super::Secrets;

pub(super) fn register(env: &mut Environment<'static>, secrets: Arc<Secrets>) {
    env.add_function("json", json);
    env.add_function("secret", move |name: &str| secret(&secrets, name));
    env.add_filter("xml", xml);
    env.add_filter("form", form);
    env.add_filter("urlencode", urlencode);
    env.add_filter("b64encode", b64encode);
}

/// How `{{ value }}` prints: `none` as nothing and booleans as `true`/`false` (what JSON,
/// URLs and headers expect, where Jinja would write `none` and `True`); anything else as
/// minijinja prints it.
pub(super) fn format_value(out: &mut Output, _: &State, value: &Value) -> Result<(), Error> {
    out.write_str(&display(value)).map_err(Error::from)
}

/// The text of a value, as [`format_value`] prints it and the string filters read it.
fn display(value: &Value) -> Cow<'_, str> {
    match value.kind() {
        // The engine refuses to print undefined before it gets here; filters check too.
        ValueKind::Undefined | ValueKind::None => Cow::Borrowed(""),
        ValueKind::Bool if value.is_true() => Cow::Borrowed("true"),
        ValueKind::Bool => Cow::Borrowed("false"),
        _ => match value.as_str() {
            Some(text) => Cow::Borrowed(text),
            None => Cow::Owned(value.to_string()),
        },
    }
}

/// The text a string filter works on. A missing value is an error, as printing one is.
fn text_of(value: &Value) -> Result<Cow<'_, str>, Error> {
    if value.is_undefined() {
        return Err(Error::from(ErrorKind::UndefinedError));
    }
    Ok(display(value))
}

/// `json(x)`: parses a JSON string; any other value is returned as it is, so
/// `json(outputs.t.body).id` works whether the task already parsed the body or not.
fn json(value: Value) -> Result<Value, Error> {
    match value.as_str() {
        Some(text) => serde_json::from_str::<Value>(text).map_err(|err| {
            // serde_json's message gives the position, never the text (which may be a
            // payload or a secret).
            Error::new(
                ErrorKind::InvalidOperation,
                format!("json(): the string is not valid JSON: {err}"),
            )
        }),
        None => Ok(value),
    }
}

/// `secret('NAME')`: the value of a configured secret.
fn secret(secrets: &Secrets, name: &str) -> Result<Value, Error> {
    if let Some(value) = secrets.get(name) {
        return Ok(Value::from(value));
    }
    let known = if secrets.is_empty() {
        "no secrets are configured".to_owned()
    } else {
        format!(
            "the configured ones are: {}",
            secrets.names().collect::<Vec<_>>().join(", ")
        )
    };
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("unknown secret {name:?}; {known}"),
    ))
}

/// `x | xml`: escapes text for an XML element or attribute.
fn xml(value: Value) -> Result<String, Error> {
    let text = text_of(&value)?;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// `x | form`: application/x-www-form-urlencoded encoding. A string becomes one encoded
/// component (space as `+`); a map becomes a whole form body, `a=1&b=2`, an array value
/// repeating its key.
fn form(value: Value) -> Result<String, Error> {
    if value.kind() == ValueKind::Map {
        return encode_pairs(&value, |s| {
            form_urlencoded::byte_serialize(s.as_bytes()).collect()
        });
    }
    Ok(form_urlencoded::byte_serialize(text_of(&value)?.as_bytes()).collect())
}

/// `x | urlencode`: percent-encodes a path segment or query component (everything but
/// RFC 3986's unreserved characters, so `/`, `?`, `&` and space are encoded too). A map
/// becomes a query string, `a=1&b=2`.
fn urlencode(value: Value) -> Result<String, Error> {
    if value.kind() == ValueKind::Map {
        return encode_pairs(&value, percent_encode);
    }
    Ok(percent_encode(&text_of(&value)?))
}

/// `x | b64encode`: standard base64 (with padding) of a string's UTF-8 bytes, or of
/// bytes.
fn b64encode(value: Value) -> Result<String, Error> {
    let engine = base64::engine::general_purpose::STANDARD;
    match value.as_bytes() {
        Some(bytes) => Ok(engine.encode(bytes)),
        None => Ok(engine.encode(text_of(&value)?.as_bytes())),
    }
}

/// Encodes every byte except RFC 3986's unreserved characters.
pub(super) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// `key=value` pairs of a map joined with `&`, an array value giving one pair per item.
fn encode_pairs(map: &Value, encode: impl Fn(&str) -> String) -> Result<String, Error> {
    let mut pairs = Vec::new();
    for key in map.try_iter()? {
        let value = map.get_item(&key)?;
        let items: Vec<Value> = if value.kind() == ValueKind::Seq {
            value.try_iter()?.collect()
        } else {
            vec![value]
        };
        for item in items {
            pairs.push(format!(
                "{}={}",
                encode(&text_of(&key)?),
                encode(&text_of(&item)?)
            ));
        }
    }
    Ok(pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::super::{Context, Engine, Template};
    use super::*;

    fn render(engine: &Engine, source: &str, body: serde_json::Value) -> Result<String, String> {
        let template = Template::compile(engine, "t", source).map_err(|e| e.to_string())?;
        let ctx = Context::builder().body(body).build();
        template.render(&ctx).map_err(|e| e.to_string())
    }

    fn engine() -> Engine {
        Engine::new(Secrets::from_iter([(
            "SLACK_TOKEN".to_owned(),
            "xoxb-1234".to_owned(),
        )]))
    }

    #[test]
    fn json_parses_strings() {
        let body = serde_json::json!({"payload": "{\"id\": 7, \"tags\": [\"a\"]}"});
        let e = engine();
        assert_eq!(
            render(&e, "{{ json(trigger.body.payload).id + 1 }}", body.clone()),
            Ok("8".into())
        );
        assert_eq!(
            render(&e, "{{ json(trigger.body.payload).tags[0] }}", body),
            Ok("a".into())
        );
    }

    #[test]
    fn json_returns_non_strings_unchanged() {
        let body = serde_json::json!({"parsed": {"id": 7}, "n": 3, "list": [1, 2]});
        let e = engine();
        assert_eq!(
            render(&e, "{{ json(trigger.body.parsed).id }}", body.clone()),
            Ok("7".into())
        );
        assert_eq!(
            render(&e, "{{ json(trigger.body.n) }}", body.clone()),
            Ok("3".into())
        );
        assert_eq!(
            render(&e, "{{ json(trigger.body.list) | length }}", body),
            Ok("2".into())
        );
    }

    #[test]
    fn json_rejects_invalid_json_without_quoting_it() {
        let body = serde_json::json!({"payload": "{not json TOPSECRET"});
        let err = render(&engine(), "{{ json(trigger.body.payload) }}", body).unwrap_err();
        assert!(
            err.contains("json(): the string is not valid JSON"),
            "{err}"
        );
        assert!(!err.contains("TOPSECRET"), "{err}");
    }

    #[test]
    fn secret_returns_known_values() {
        assert_eq!(
            render(
                &engine(),
                "Bearer {{ secret('SLACK_TOKEN') }}",
                serde_json::Value::Null
            ),
            Ok("Bearer xoxb-1234".into())
        );
    }

    #[test]
    fn secret_names_unknown_ones_and_never_a_value() {
        let err = render(&engine(), "{{ secret('NOPE') }}", serde_json::Value::Null).unwrap_err();
        assert_eq!(
            err,
            "t: rendering failed: invalid operation: unknown secret \"NOPE\"; \
             the configured ones are: SLACK_TOKEN"
        );
        let none = Engine::new(Secrets::default());
        let err = render(&none, "{{ secret('NOPE') }}", serde_json::Value::Null).unwrap_err();
        assert!(err.ends_with("no secrets are configured"), "{err}");
    }

    #[test]
    fn xml_escapes_markup() {
        let body = serde_json::json!({"s": "<a href=\"x\">Tom & Jerry's</a>"});
        assert_eq!(
            render(&engine(), "{{ trigger.body.s | xml }}", body),
            Ok("&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&apos;s&lt;/a&gt;".into())
        );
    }

    #[test]
    fn form_encodes_components_and_maps() {
        let body =
            serde_json::json!({"s": "a b&c=d/é", "m": {"name": "war room", "users": ["U1", "U2"]}});
        let e = engine();
        assert_eq!(
            render(&e, "{{ trigger.body.s | form }}", body.clone()),
            Ok("a+b%26c%3Dd%2F%C3%A9".into())
        );
        assert_eq!(
            render(&e, "{{ trigger.body.m | form }}", body),
            Ok("name=war+room&users=U1&users=U2".into())
        );
    }

    #[test]
    fn urlencode_encodes_path_and_query_components() {
        let body = serde_json::json!({"s": "a b/c?d&e=f~g.h_i-j", "m": {"q": "x y"}});
        let e = engine();
        assert_eq!(
            render(&e, "/items/{{ trigger.body.s | urlencode }}", body.clone()),
            Ok("/items/a%20b%2Fc%3Fd%26e%3Df~g.h_i-j".into())
        );
        assert_eq!(
            render(&e, "?{{ trigger.body.m | urlencode }}", body),
            Ok("?q=x%20y".into())
        );
    }

    #[test]
    fn b64encode_encodes_utf8() {
        let body = serde_json::json!({"user": "ops", "pass": "pä55"});
        assert_eq!(
            render(
                &engine(),
                "{{ (trigger.body.user ~ ':' ~ trigger.body.pass) | b64encode }}",
                body
            ),
            Ok("b3BzOnDDpDU1".into())
        );
    }

    #[test]
    fn tojson_is_kept() {
        let body = serde_json::json!({"o": {"a": [1, "x"]}});
        assert_eq!(
            render(&engine(), "{{ trigger.body.o | tojson }}", body),
            Ok(r#"{"a":[1,"x"]}"#.into())
        );
    }

    #[test]
    fn filters_refuse_missing_values() {
        let err = render(
            &engine(),
            "{{ trigger.body.nope | urlencode }}",
            serde_json::json!({}),
        )
        .unwrap_err();
        assert!(err.contains("a value it uses is missing"), "{err}");
    }

    #[test]
    fn none_prints_empty_and_booleans_lowercase() {
        let body = serde_json::json!({"n": null, "t": true, "f": false, "x": 1.5});
        assert_eq!(
            render(&engine(), "[{{ trigger.body.n }}|{{ trigger.body.t }}|{{ trigger.body.f }}|{{ trigger.body.x }}]", body),
            Ok("[|true|false|1.5]".into())
        );
    }
}
