//! From figment's errors to problems a person can act on, and past the first one.
//!
//! Deserialization stops at its first error. So that one run reports what it can, the
//! merged layers are read again with that error's value set aside: an unknown key is
//! dropped, a value of the wrong type or form is replaced by a stand-in of the expected
//! type, a missing key gets one. What reading finds then is the next problem, and so on,
//! up to [`MAX_PROBLEMS`]. Where no stand-in fits (a TOML syntax error, a table whose
//! kind is unknown), reading stops, since anything found past it could be a consequence.
//! The stand-ins only ever serve this search: a config with problems is never used.

use figment::error::{Actual, Kind};
use figment::providers::Serialized;
use figment::value::{Dict, Value};
use figment::{Figment, Profile, Provider};
use serde::de::DeserializeOwned;

use super::{env_var_name, Problem, ENV_LAYER_NAME};

/// Most problems reported from one read.
const MAX_PROBLEMS: usize = 25;

/// Every problem found reading `figment` as a `T`, `first` being the first error.
pub(super) fn problems<T: DeserializeOwned>(
    figment: &Figment,
    first: figment::Error,
    env_prefix: &str,
) -> Vec<Problem> {
    let first = first.into_iter().next().expect("an error has one");
    let mut found = vec![problem(&first, env_prefix)];
    let Ok(data) = figment.data() else {
        return found;
    };
    let Some(mut dict) = data.get(&Profile::Default).cloned() else {
        return found;
    };
    let mut error = first;
    while found.len() < MAX_PROBLEMS {
        let Some(next) = next_error::<T>(&mut dict, &error) else {
            break;
        };
        let p = problem(&next, env_prefix);
        if found.contains(&p) {
            break;
        }
        found.push(p);
        error = next;
    }
    found
}

/// Sets `error`'s value aside in `dict` and reads it again: the next error, if any.
fn next_error<T: DeserializeOwned>(
    dict: &mut Dict,
    error: &figment::Error,
) -> Option<figment::Error> {
    let path: Vec<&str> = error.path.iter().map(String::as_str).collect();
    let stand_ins: Vec<Value> = match &error.kind {
        Kind::UnknownField(name, _) => {
            // The path ends with the unknown key itself.
            let parent = match path.split_last() {
                Some((last, parent)) if last == name => parent,
                _ => &path[..],
            };
            remove(dict, parent, name)?;
            return read::<T>(dict);
        }
        Kind::MissingField(name) => {
            dict_at(dict, &path)?;
            let key = name.to_string();
            return try_stand_ins::<T>(
                dict,
                error,
                |d, v| {
                    if let Some(parent) = dict_at(d, &path) {
                        parent.insert(key.clone(), v);
                    }
                },
                any_type(),
            );
        }
        Kind::UnknownVariant(_, expected) => {
            // A plain choice (`mode = "compact"`): the first allowed one. A table whose
            // kind is unknown (`auth = { scheme = "magic", … }`) is not read past.
            if !matches!(value_at(dict, &path)?, Value::String(..)) {
                return None;
            }
            vec![Value::from(expected.first()?.to_string())]
        }
        Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) => {
            if matches!(value_at(dict, &path)?, Value::Dict(..)) && !expects_table(expected) {
                // The error is somewhere inside a table whose position serde lost.
                return None;
            }
            stand_ins_for(expected)
        }
        Kind::Message(m) => {
            // A table that checks its own keys says `unknown key `name` (allowed …)`.
            if let Some(name) = m
                .strip_prefix("unknown key `")
                .and_then(|rest| rest.split('`').next())
            {
                remove(dict, &path, name)?;
                return read::<T>(dict);
            }
            if path.is_empty() || matches!(value_at(dict, &path)?, Value::Dict(..)) {
                return None;
            }
            any_type()
        }
        _ => return None,
    };
    let (leaf, parent_path) = path.split_last()?;
    let leaf = leaf.to_string();
    let parent_path = parent_path.to_vec();
    try_stand_ins::<T>(
        dict,
        error,
        |d, v| set(d, &parent_path, &leaf, v),
        stand_ins,
    )
}

/// Tries each stand-in in turn (applied with `apply`); keeps the first after which the
/// same error is gone and returns the next error. `None` when none helps or nothing is
/// left to find.
fn try_stand_ins<T: DeserializeOwned>(
    dict: &mut Dict,
    error: &figment::Error,
    apply: impl Fn(&mut Dict, Value),
    stand_ins: Vec<Value>,
) -> Option<figment::Error> {
    for v in stand_ins {
        let mut attempt = dict.clone();
        apply(&mut attempt, v);
        match read::<T>(&attempt) {
            None => {
                *dict = attempt;
                return None;
            }
            Some(next) if next.path == error.path && next.kind == error.kind => continue,
            Some(next) if next.path == error.path && same_kind(&next.kind, &error.kind) => continue,
            Some(next) => {
                *dict = attempt;
                return Some(next);
            }
        }
    }
    None
}

fn same_kind(a: &Kind, b: &Kind) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

fn read<T: DeserializeOwned>(dict: &Dict) -> Option<figment::Error> {
    Figment::from(Serialized::defaults(dict))
        .extract::<T>()
        .err()
        .and_then(|e| e.into_iter().next())
}

/// Values of every kind, for a key whose type is not known.
fn any_type() -> Vec<Value> {
    vec![
        Value::from("1s"),
        Value::from(1u32),
        Value::from(1.0f64),
        Value::from(true),
        Value::from(Vec::<Value>::new()),
        Value::from(Dict::new()),
    ]
}

/// Stand-ins for what serde said it expected, most likely first.
fn stand_ins_for(expected: &str) -> Vec<Value> {
    let e = expected.to_ascii_lowercase();
    let mut first = Vec::new();
    if e.contains("duration") {
        first.push(Value::from("1s"));
    } else if e.contains("size") {
        first.push(Value::from(1024u32));
    } else if e.starts_with('u') || e.starts_with('i') || e.contains("integer") {
        first.push(Value::from(1u32));
    } else if e.starts_with('f') || e.contains("number") {
        first.push(Value::from(1.0f64));
    } else if e.contains("bool") {
        first.push(Value::from(true));
    } else if e.contains("sequence") || e.contains("array") {
        first.push(Value::from(Vec::<Value>::new()));
    } else if e.contains("string") || e.contains("address") || e.contains("char") {
        first.push(Value::from("x"));
    }
    first.extend(any_type());
    first
}

fn expects_table(expected: &str) -> bool {
    expected.contains("map") || expected.starts_with("struct") || expected.contains("table")
}

/// The value at `path` (segments are keys, or indexes into arrays).
fn value_at<'a>(dict: &'a Dict, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut v = dict.get(*first)?;
    for seg in rest {
        v = match v {
            Value::Dict(_, d) => d.get(*seg)?,
            Value::Array(_, a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// The value at `path` in `dict`, for changing it.
fn value_at_mut<'a>(dict: &'a mut Dict, path: &[&str]) -> Option<&'a mut Value> {
    let (first, rest) = path.split_first()?;
    let mut v = dict.get_mut(*first)?;
    for seg in rest {
        v = match v {
            Value::Dict(_, d) => d.get_mut(*seg)?,
            Value::Array(_, a) => a.get_mut(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// The table at `path`; the root for an empty path.
fn dict_at<'a>(dict: &'a mut Dict, path: &[&str]) -> Option<&'a mut Dict> {
    if path.is_empty() {
        return Some(dict);
    }
    match value_at_mut(dict, path)? {
        Value::Dict(_, d) => Some(d),
        _ => None,
    }
}

/// Removes `key` from the table at `parent`.
fn remove(dict: &mut Dict, parent: &[&str], key: &str) -> Option<Value> {
    dict_at(dict, parent)?.remove(key)
}

/// Sets `leaf` under `parent` (a table, or an array when `leaf` is an index) to `value`.
fn set(dict: &mut Dict, parent: &[&str], leaf: &str, value: Value) {
    if parent.is_empty() {
        dict.insert(leaf.to_string(), value);
        return;
    }
    match value_at_mut(dict, parent) {
        Some(Value::Dict(_, d)) => {
            d.insert(leaf.to_string(), value);
        }
        Some(Value::Array(_, a)) => {
            if let Some(slot) = leaf.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                *slot = value;
            }
        }
        _ => {}
    }
}

/// One figment error as a problem: where (a TOML path such as `hooks[0].auth.scheme`, or
/// the environment variable that set it), what is wrong in plain words, and the fix.
pub(super) fn problem(e: &figment::Error, env_prefix: &str) -> Problem {
    let mut path = String::new();
    for (i, seg) in e.path.iter().enumerate() {
        if seg.parse::<usize>().is_ok() {
            path.push_str(&format!("[{seg}]"));
        } else {
            if i > 0 {
                path.push('.');
            }
            if seg.contains('.') {
                path.push_str(&format!("\"{seg}\""));
            } else {
                path.push_str(seg);
            }
        }
    }
    let from_env = e
        .metadata
        .as_ref()
        .is_some_and(|m| m.name == ENV_LAYER_NAME);
    let location = if from_env {
        let keys: Vec<&str> = e.path.iter().map(String::as_str).collect();
        format!("{} (environment)", env_var_name(env_prefix, &keys))
    } else if path.is_empty() {
        "(file)".to_string()
    } else {
        path
    };
    let (message, fix) = match &e.kind {
        Kind::UnknownField(name, allowed) => (
            if e.path.last() == Some(name) {
                "unknown key".to_string()
            } else {
                format!("unknown key `{name}`")
            },
            format!(
                "remove it or correct its spelling; allowed here: {}",
                allowed.join(", ")
            ),
        ),
        Kind::MissingField(name) => (format!("`{name}` is missing"), "add it".to_string()),
        Kind::UnknownVariant(name, allowed) => (
            format!("`{name}` is not one of the choices"),
            format!("use one of: {}", allowed.join(", ")),
        ),
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => (
            format!("expected {}, found {}", words(expected), found(actual)),
            format!("write {}", words(expected)),
        ),
        Kind::InvalidLength(n, expected) => (
            format!("{n} items, expected {}", words(expected)),
            "correct the number of items".to_string(),
        ),
        Kind::DuplicateField(name) => (
            format!("`{name}` is given twice"),
            "keep one of them".to_string(),
        ),
        Kind::Message(m) if m.starts_with("unknown key `") => {
            (m.clone(), "remove it or correct its spelling".to_string())
        }
        Kind::Message(m) if location == "(file)" => (
            m.clone(),
            "correct the TOML syntax at the position given".to_string(),
        ),
        Kind::Message(m) => (m.clone(), "correct the value".to_string()),
        other => (other.to_string(), "correct the value".to_string()),
    };
    Problem {
        path: location,
        message,
        fix,
    }
}

/// What serde expected, in the words of a TOML file rather than of Rust's types.
fn words(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more".to_string(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".to_string(),
        "f32" | "f64" => "a number".to_string(),
        "a sequence" => "an array".to_string(),
        "a map" => "a table".to_string(),
        "a boolean" => "true or false".to_string(),
        e if e.starts_with("struct ") => "a table".to_string(),
        e => e.to_string(),
    }
}

/// What the file held, in the same words.
fn found(actual: &Actual) -> String {
    match actual {
        Actual::Bool(b) => format!("`{b}`"),
        Actual::Unsigned(n) => format!("the number {n}"),
        Actual::Signed(n) => format!("the number {n}"),
        Actual::Float(n) => format!("the number {n}"),
        Actual::Char(c) => format!("the string \"{c}\""),
        Actual::Str(s) => format!("the string {s:?}"),
        Actual::Seq => "an array".to_string(),
        Actual::Map => "a table".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Server {
        listen: String,
        threads: usize,
        http2: bool,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Hook {
        id: String,
        topic: String,
        #[serde(default)]
        mode: Mode,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        #[default]
        Structured,
        Binary,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Config {
        server: Server,
        hooks: Vec<Hook>,
    }

    fn read(toml: &str) -> Vec<String> {
        use figment::providers::Format;
        let figment = Figment::from(figment::providers::Toml::string(toml));
        match figment.extract::<Config>() {
            Ok(_) => Vec::new(),
            Err(e) => problems::<Config>(&figment, e, "HOOKGATE_")
                .iter()
                .map(ToString::to_string)
                .collect(),
        }
    }

    #[test]
    fn one_read_reports_every_wrong_key_and_value() {
        let p = read(
            "[server]\nlisten = 8080\nthreads = -1\nhttp2 = \"yes\"\nlisen = \"x\"\n\
             [[hooks]]\nid = \"a\"\ntopik = \"t\"\n\
             [[hooks]]\nid = \"b\"\ntopic = \"t\"\nmode = \"compact\"\n",
        );
        assert_eq!(
            p,
            [
                "hooks[0].topik: unknown key (fix: remove it or correct its spelling; allowed here: id, topic, mode)",
                "hooks[0]: `topic` is missing (fix: add it)",
                "hooks[1].mode: `compact` is not one of the choices (fix: use one of: structured, binary)",
                "server.http2: expected true or false, found the string \"yes\" (fix: write true or false)",
                "server.lisen: unknown key (fix: remove it or correct its spelling; allowed here: listen, threads, http2)",
                "server.listen: expected a string, found the number 8080 (fix: write a string)",
                "server.threads: expected a whole number, 0 or more, found the number -1 (fix: write a whole number, 0 or more)",
            ]
        );
    }

    #[test]
    fn a_syntax_error_is_reported_alone() {
        let p = read("[server\nlisten = 1\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("(file): "), "{p:?}");
    }

    #[test]
    fn no_message_nests_backticks_or_names_a_rust_type() {
        let p = read("[server]\nlisten = \"x\"\nthreads = \"two\"\nhttp2 = true\nport = 1\n[[hooks]]\nid = \"a\"\ntopic = \"t\"\n");
        for line in &p {
            assert!(!line.contains("`one of"), "{line}");
            for rust in ["usize", "u64", "i32", "f64", "a map", "a sequence"] {
                assert!(!line.contains(rust), "{line}");
            }
        }
        assert_eq!(p.len(), 2, "{p:?}");
    }
}
