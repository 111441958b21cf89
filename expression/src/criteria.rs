//! StackStorm-style criteria: a table of dotted context paths, each with one operator.
//!
//! ```toml
//! [flows.criteria]
//! "trigger.headers.x-github-event.0" = { equals = "pull_request" }
//! "trigger.body.action" = { inside = ["opened", "reopened"] }
//! "trigger.body.pull_request.title" = { matchregex = '^\[deploy\]' }
//! "trigger.body.stock_value" = { lte = 10 }
//! ```
//!
//! Every entry must hold. A path is split on `.`; a segment indexes an array when it is a
//! number and names a key otherwise (keys may contain `-`; a key containing `.` needs an
//! expression condition instead). The first segment is one of the context's roots.
//!
//! A path that leads nowhere, or to `null`, is *missing*: `exists` is false, `nexists`,
//! `nequals` and `ncontains` are true, and every other operator is false. An operator
//! meeting a value of the wrong type (`startswith` on a number, `gt` on a word) is false.

use std::collections::BTreeMap;
use std::time::SystemTime;

use hookgate_common::time::{parse_duration, parse_rfc3339, unix_seconds};

use minijinja::value::ValueKind;
use minijinja::Value;
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::ExpressionError;

/// The roots a criteria path may start with (the [`Context`](super::Context)'s keys).
const ROOTS: [&str; 6] = [
    "trigger",
    "vars",
    "outputs",
    "flow",
    "execution",
    "response",
];

/// One operator and its operand, as written in configuration: `{ equals = "opened" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    /// Equal to the operand; a number also equals a numeric string (`5` and `"5"`).
    Equals(Json),
    /// Equal ignoring case (strings).
    Iequals(String),
    /// Not [`Equals`](Self::Equals); true when the value is missing.
    Nequals(Json),
    /// A string containing the operand, an array with an element equal to it, or an
    /// object with it as a key.
    Contains(Json),
    /// [`Contains`](Self::Contains) ignoring case, for strings and arrays of strings.
    Icontains(String),
    /// Not [`Contains`](Self::Contains); true when the value is missing.
    Ncontains(Json),
    Startswith(String),
    Endswith(String),
    /// The regular expression matches somewhere in the string (anchor it with `^…$` to
    /// match the whole); `.` matches newlines too, as in StackStorm.
    Matchregex(String),
    /// Numeric comparisons; numbers and numeric strings on both sides.
    Gt(Json),
    Gte(Json),
    Lt(Json),
    Lte(Json),
    /// The value is present and not null. Written `exists = true`.
    Exists(bool),
    /// The value is missing or null. Written `nexists = true`.
    Nexists(bool),
    /// The value is an element of the operand array, a substring of the operand string,
    /// or a key of the operand object.
    Inside(Json),
    /// The time in the value (RFC 3339, or Unix seconds) is less than the operand ago.
    /// The operand is seconds or a duration: `"5m"`, `"PT5M"`.
    TimediffLt(Json),
    /// The time in the value is more than the operand ago.
    TimediffGt(Json),
}

/// A compiled criteria table.
#[derive(Debug, Clone)]
pub(super) struct Criteria {
    entries: Vec<(FieldPath, Op)>,
}

impl Criteria {
    pub(super) fn compile(
        path: &str,
        table: &BTreeMap<String, Criterion>,
    ) -> Result<Criteria, ExpressionError> {
        let entries = table
            .iter()
            .map(|(key, criterion)| {
                let entry_path = format!("{path}.{}", Json::from(key.as_str()));
                let field =
                    FieldPath::parse(key).map_err(|message| ExpressionError::Criterion {
                        path: entry_path.clone(),
                        message,
                    })?;
                Ok((field, Op::compile(&entry_path, criterion)?))
            })
            .collect::<Result<_, ExpressionError>>()?;
        Ok(Criteria { entries })
    }

    pub(super) fn eval(&self, root: &Value, now: SystemTime) -> bool {
        self.entries
            .iter()
            .all(|(field, op)| op.holds(field.resolve(root).as_ref(), now))
    }
}

/// A dotted path into the context, split once at load time.
#[derive(Debug, Clone)]
struct FieldPath {
    segments: Vec<String>,
}

impl FieldPath {
    fn parse(key: &str) -> Result<FieldPath, String> {
        let segments: Vec<String> = key.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!(
                "the path {key:?} has an empty segment; write it as `trigger.body.field`"
            ));
        }
        if !ROOTS.contains(&segments[0].as_str()) {
            return Err(format!(
                "the path {key:?} must start with one of {}",
                ROOTS.join(", ")
            ));
        }
        Ok(FieldPath { segments })
    }

    /// The value at the path; `None` when it is missing or null.
    fn resolve(&self, root: &Value) -> Option<Value> {
        let mut current = root.clone();
        for segment in &self.segments {
            current = match current.kind() {
                ValueKind::Map => current.get_attr(segment).ok()?,
                ValueKind::Seq => current.get_item_by_index(segment.parse().ok()?).ok()?,
                _ => return None,
            };
            if current.is_undefined() {
                return None;
            }
        }
        (!current.is_none()).then_some(current)
    }
}

#[derive(Debug, Clone, Copy)]
enum Cmp {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Cmp {
    fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Cmp::Gt => left > right,
            Cmp::Gte => left >= right,
            Cmp::Lt => left < right,
            Cmp::Lte => left <= right,
        }
    }
}

/// A criterion with its operand converted, its regex compiled, its duration parsed.
#[derive(Debug, Clone)]
enum Op {
    Equals(Value),
    NotEquals(Value),
    /// Operand lowercased.
    IEquals(String),
    Contains(Value),
    NotContains(Value),
    /// Operand lowercased.
    IContains(String),
    StartsWith(String),
    EndsWith(String),
    Matches(Regex),
    Compare(Cmp, f64),
    Exists,
    NotExists,
    Inside(Value),
    /// Seconds elapsed since the value's time, compared with the operand in seconds.
    TimeDiff(Cmp, f64),
}

impl Op {
    fn compile(path: &str, criterion: &Criterion) -> Result<Op, ExpressionError> {
        let invalid = |message: String| ExpressionError::Criterion {
            path: path.to_owned(),
            message,
        };
        let number = |name: &str, operand: &Json| {
            json_number(operand)
                .ok_or_else(|| invalid(format!("`{name}` takes a number, not {operand}")))
        };
        let duration = |name: &str, operand: &Json| {
            json_seconds(operand).ok_or_else(|| {
                invalid(format!(
                    "`{name}` takes seconds or a duration such as \"5m\" or \"PT5M\", not {operand}"
                ))
            })
        };
        let presence = |name: &str, negated: &str, operand: bool| {
            if operand {
                Ok(())
            } else {
                Err(invalid(format!(
                    "write `{name} = true`; for the opposite, `{negated} = true`"
                )))
            }
        };
        Ok(match criterion {
            Criterion::Equals(x) => Op::Equals(Value::from_serialize(x)),
            Criterion::Nequals(x) => Op::NotEquals(Value::from_serialize(x)),
            Criterion::Iequals(s) => Op::IEquals(s.to_lowercase()),
            Criterion::Contains(x) => Op::Contains(Value::from_serialize(x)),
            Criterion::Ncontains(x) => Op::NotContains(Value::from_serialize(x)),
            Criterion::Icontains(s) => Op::IContains(s.to_lowercase()),
            Criterion::Startswith(s) => Op::StartsWith(s.clone()),
            Criterion::Endswith(s) => Op::EndsWith(s.clone()),
            Criterion::Matchregex(pattern) => Op::Matches(
                RegexBuilder::new(pattern)
                    .dot_matches_new_line(true)
                    .build()
                    .map_err(|source| ExpressionError::Regex {
                        path: path.to_owned(),
                        source,
                    })?,
            ),
            Criterion::Gt(x) => Op::Compare(Cmp::Gt, number("gt", x)?),
            Criterion::Gte(x) => Op::Compare(Cmp::Gte, number("gte", x)?),
            Criterion::Lt(x) => Op::Compare(Cmp::Lt, number("lt", x)?),
            Criterion::Lte(x) => Op::Compare(Cmp::Lte, number("lte", x)?),
            Criterion::Exists(yes) => {
                presence("exists", "nexists", *yes)?;
                Op::Exists
            }
            Criterion::Nexists(yes) => {
                presence("nexists", "exists", *yes)?;
                Op::NotExists
            }
            Criterion::Inside(x) => Op::Inside(Value::from_serialize(x)),
            Criterion::TimediffLt(x) => Op::TimeDiff(Cmp::Lt, duration("timediff_lt", x)?),
            Criterion::TimediffGt(x) => Op::TimeDiff(Cmp::Gt, duration("timediff_gt", x)?),
        })
    }

    /// Whether the criterion holds for `value` (`None`: missing or null).
    fn holds(&self, value: Option<&Value>, now: SystemTime) -> bool {
        let Some(value) = value else {
            return matches!(self, Op::NotExists | Op::NotEquals(_) | Op::NotContains(_));
        };
        match self {
            Op::Equals(x) => loose_eq(value, x),
            Op::NotEquals(x) => !loose_eq(value, x),
            Op::IEquals(s) => value.as_str().is_some_and(|v| v.to_lowercase() == *s),
            Op::Contains(x) => contains(value, x),
            Op::NotContains(x) => !contains(value, x),
            Op::IContains(s) => match value.kind() {
                ValueKind::String => value.as_str().is_some_and(|v| v.to_lowercase().contains(s)),
                ValueKind::Seq => value.try_iter().is_ok_and(|mut items| {
                    items.any(|item| item.as_str().is_some_and(|v| v.to_lowercase() == *s))
                }),
                _ => false,
            },
            Op::StartsWith(s) => value.as_str().is_some_and(|v| v.starts_with(s.as_str())),
            Op::EndsWith(s) => value.as_str().is_some_and(|v| v.ends_with(s.as_str())),
            Op::Matches(regex) => value.as_str().is_some_and(|v| regex.is_match(v)),
            Op::Compare(cmp, operand) => number(value).is_some_and(|v| cmp.holds(v, *operand)),
            Op::Exists => true,
            Op::NotExists => false,
            Op::Inside(x) => contains(x, value),
            Op::TimeDiff(cmp, limit) => {
                timestamp(value).is_some_and(|then| cmp.holds(unix_seconds(now) - then, *limit))
            }
        }
    }
}

/// Equality, with a number equal to a numeric string (form bodies and headers carry
/// numbers as text).
fn loose_eq(a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    (a.is_number() || b.is_number())
        && matches!((number(a), number(b)), (Some(x), Some(y)) if x == y)
}

/// Whether `haystack` contains `needle`: substring, array element, or object key.
fn contains(haystack: &Value, needle: &Value) -> bool {
    match haystack.kind() {
        ValueKind::String => {
            let text = haystack.as_str().unwrap_or_default();
            match needle.kind() {
                ValueKind::String => text.contains(needle.as_str().unwrap_or_default()),
                ValueKind::Number => text.contains(&needle.to_string()),
                _ => false,
            }
        }
        ValueKind::Seq => haystack
            .try_iter()
            .is_ok_and(|mut items| items.any(|item| loose_eq(&item, needle))),
        ValueKind::Map => needle
            .as_str()
            .is_some_and(|key| haystack.get_attr(key).is_ok_and(|v| !v.is_undefined())),
        _ => false,
    }
}

/// A number, or a string holding one.
fn number(value: &Value) -> Option<f64> {
    let n = match value.kind() {
        ValueKind::Number => f64::try_from(value.clone()).ok()?,
        ValueKind::String => value.as_str()?.trim().parse().ok()?,
        _ => return None,
    };
    n.is_finite().then_some(n)
}

fn json_number(value: &Json) -> Option<f64> {
    number(&Value::from_serialize(value))
}

/// A duration operand in seconds: a number, or a duration with units or in ISO 8601.
fn json_seconds(value: &Json) -> Option<f64> {
    let seconds = match value {
        Json::String(text) => parse_duration(text)
            .ok()
            .map(|d| d.as_secs_f64())
            .or_else(|| text.trim().parse().ok())?,
        other => json_number(other)?,
    };
    (seconds >= 0.0 && seconds.is_finite()).then_some(seconds)
}

/// The Unix time of a value: a number (or numeric string) of seconds, or RFC 3339 text.
fn timestamp(value: &Value) -> Option<f64> {
    number(value).or_else(|| rfc3339_seconds(value.as_str()?))
}

/// RFC 3339 (`Z` or a `±HH:MM` offset; without either, UTC) to Unix seconds.
fn rfc3339_seconds(text: &str) -> Option<f64> {
    parse_rfc3339(text).map(unix_seconds)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::Context;
    use super::*;

    /// 2024-04-11T17:00:00Z
    const NOW: u64 = 1_712_854_800;

    fn at(unix: u64) -> SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix)
    }

    fn ctx() -> Context {
        Context::builder()
            .body(json!({
                "action": "Opened",
                "title": "[deploy] api\nsecond line",
                "stock": 7,
                "stock_text": "7",
                "ratio": 0.85,
                "labels": ["bug", "urgent"],
                "ids": [1, 2, 3],
                "meta": {"owner": "ops"},
                "nothing": null,
                "created": "2024-04-11T16:58:00Z",
                "created_paris": "2024-04-11T18:58:00+02:00",
                "epoch": NOW - 3_600,
            }))
            .headers(json!({"x-github-event": ["pull_request"]}))
            .build()
    }

    fn check(key: &str, criterion: Json) -> Result<bool, String> {
        let criterion: Criterion = serde_json::from_value(criterion).map_err(|e| e.to_string())?;
        let table = BTreeMap::from([(key.to_owned(), criterion)]);
        let criteria = Criteria::compile("flows[0].criteria", &table).map_err(|e| e.to_string())?;
        Ok(criteria.eval(ctx().value(), at(NOW)))
    }

    #[test]
    fn every_operator_both_ways() {
        let cases: &[(&str, Json, bool)] = &[
            ("trigger.body.action", json!({"equals": "Opened"}), true),
            ("trigger.body.action", json!({"equals": "opened"}), false),
            ("trigger.body.stock", json!({"equals": 7}), true),
            ("trigger.body.stock", json!({"equals": "7"}), true),
            ("trigger.body.stock_text", json!({"equals": 7}), true),
            ("trigger.body.stock_text", json!({"equals": "7.0"}), false),
            ("trigger.body.action", json!({"iequals": "OPENED"}), true),
            ("trigger.body.action", json!({"iequals": "closed"}), false),
            ("trigger.body.action", json!({"nequals": "closed"}), true),
            ("trigger.body.action", json!({"nequals": "Opened"}), false),
            ("trigger.body.title", json!({"contains": "deploy"}), true),
            ("trigger.body.title", json!({"contains": "Deploy"}), false),
            ("trigger.body.labels", json!({"contains": "urgent"}), true),
            ("trigger.body.labels", json!({"contains": "wontfix"}), false),
            ("trigger.body.ids", json!({"contains": "2"}), true),
            ("trigger.body.meta", json!({"contains": "owner"}), true),
            ("trigger.body.meta", json!({"contains": "ops"}), false),
            ("trigger.body.title", json!({"icontains": "DEPLOY"}), true),
            (
                "trigger.body.title",
                json!({"icontains": "rollback"}),
                false,
            ),
            ("trigger.body.labels", json!({"icontains": "URGENT"}), true),
            ("trigger.body.labels", json!({"icontains": "URG"}), false),
            ("trigger.body.title", json!({"ncontains": "rollback"}), true),
            ("trigger.body.title", json!({"ncontains": "deploy"}), false),
            (
                "trigger.body.title",
                json!({"startswith": "[deploy]"}),
                true,
            ),
            ("trigger.body.title", json!({"startswith": "deploy"}), false),
            ("trigger.body.title", json!({"endswith": "line"}), true),
            ("trigger.body.title", json!({"endswith": "api"}), false),
            (
                "trigger.body.title",
                json!({"matchregex": r"^\[deploy\] \w+.second"}),
                true,
            ),
            ("trigger.body.title", json!({"matchregex": r"^api"}), false),
            ("trigger.body.stock", json!({"gt": 5}), true),
            ("trigger.body.stock", json!({"gt": 7}), false),
            ("trigger.body.stock", json!({"gte": 7}), true),
            ("trigger.body.stock", json!({"gte": 7.5}), false),
            ("trigger.body.stock", json!({"lt": "10"}), true),
            ("trigger.body.stock", json!({"lt": 7}), false),
            ("trigger.body.stock", json!({"lte": 7}), true),
            ("trigger.body.stock", json!({"lte": 6.99}), false),
            ("trigger.body.ratio", json!({"gte": 0.8}), true),
            ("trigger.body.ratio", json!({"gte": 0.9}), false),
            ("trigger.body.action", json!({"exists": true}), true),
            ("trigger.body.absent", json!({"exists": true}), false),
            ("trigger.body.nothing", json!({"exists": true}), false),
            ("trigger.body.absent", json!({"nexists": true}), true),
            ("trigger.body.nothing", json!({"nexists": true}), true),
            ("trigger.body.action", json!({"nexists": true}), false),
            (
                "trigger.body.action",
                json!({"inside": ["Opened", "Reopened"]}),
                true,
            ),
            ("trigger.body.action", json!({"inside": ["Closed"]}), false),
            ("trigger.body.stock", json!({"inside": [5, 6, 7]}), true),
            (
                "trigger.body.action",
                json!({"inside": "Opened,Reopened"}),
                true,
            ),
            ("trigger.body.action", json!({"inside": "Closed"}), false),
            ("trigger.body.created", json!({"timediff_lt": "5m"}), true),
            ("trigger.body.created", json!({"timediff_lt": 60}), false),
            (
                "trigger.body.created_paris",
                json!({"timediff_lt": "PT3M"}),
                true,
            ),
            (
                "trigger.body.created_paris",
                json!({"timediff_lt": "PT1M"}),
                false,
            ),
            ("trigger.body.epoch", json!({"timediff_gt": "30m"}), true),
            ("trigger.body.epoch", json!({"timediff_gt": "2h"}), false),
            (
                "trigger.headers.x-github-event.0",
                json!({"equals": "pull_request"}),
                true,
            ),
            (
                "trigger.headers.x-github-event.1",
                json!({"exists": true}),
                false,
            ),
        ];
        for (key, criterion, expected) in cases {
            assert_eq!(
                check(key, criterion.clone()),
                Ok(*expected),
                "{key} {criterion}"
            );
        }
    }

    #[test]
    fn missing_values_match_only_the_negations() {
        for (criterion, expected) in [
            (json!({"equals": "x"}), false),
            (json!({"nequals": "x"}), true),
            (json!({"contains": "x"}), false),
            (json!({"ncontains": "x"}), true),
            (json!({"lte": 10}), false),
            (json!({"gt": 10}), false),
            (json!({"inside": ["x"]}), false),
            (json!({"timediff_lt": 60}), false),
        ] {
            assert_eq!(
                check("trigger.body.absent.deeper", criterion.clone()),
                Ok(expected),
                "{criterion}"
            );
        }
    }

    #[test]
    fn numbers_compare_numerically_and_words_never() {
        // Lexically "10" < "9"; numerically it is not.
        let table = |value: Json| Context::builder().body(json!({ "v": value })).build();
        let criteria = Criteria::compile(
            "c",
            &BTreeMap::from([("trigger.body.v".to_owned(), Criterion::Gt(json!("9")))]),
        )
        .unwrap();
        assert!(criteria.eval(table(json!("10")).value(), at(NOW)));
        assert!(criteria.eval(table(json!(10)).value(), at(NOW)));
        assert!(!criteria.eval(table(json!("8")).value(), at(NOW)));
        assert!(!criteria.eval(table(json!("ten")).value(), at(NOW)));
        assert!(!criteria.eval(table(json!([10])).value(), at(NOW)));
    }

    #[test]
    fn all_criteria_must_hold() {
        let table = BTreeMap::from([
            (
                "trigger.body.action".to_owned(),
                Criterion::Equals(json!("Opened")),
            ),
            ("trigger.body.stock".to_owned(), Criterion::Lte(json!(10))),
        ]);
        let criteria = Criteria::compile("c", &table).unwrap();
        assert!(criteria.eval(ctx().value(), at(NOW)));
        let table = BTreeMap::from([
            (
                "trigger.body.action".to_owned(),
                Criterion::Equals(json!("Opened")),
            ),
            ("trigger.body.stock".to_owned(), Criterion::Lte(json!(5))),
        ]);
        let criteria = Criteria::compile("c", &table).unwrap();
        assert!(!criteria.eval(ctx().value(), at(NOW)));
    }

    #[test]
    fn regexes_are_compiled_at_load_time() {
        let table = BTreeMap::from([(
            "trigger.body.title".to_owned(),
            Criterion::Matchregex("^\\[deploy".to_owned()),
        )]);
        let criteria = Criteria::compile("c", &table).unwrap();
        assert!(matches!(criteria.entries[0].1, Op::Matches(_)));
        let bad = BTreeMap::from([(
            "trigger.body.title".to_owned(),
            Criterion::Matchregex("([unclosed".to_owned()),
        )]);
        let err = Criteria::compile("flows[2].criteria", &bad)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                r#"flows[2].criteria."trigger.body.title": invalid regular expression"#
            ),
            "{err}"
        );
    }

    #[test]
    fn bad_operands_and_paths_are_load_errors() {
        for (key, criterion, expected) in [
            (
                "trigger.body.x",
                json!({"gt": "ten"}),
                "`gt` takes a number",
            ),
            (
                "trigger.body.x",
                json!({"timediff_lt": "soon"}),
                "`timediff_lt` takes seconds",
            ),
            (
                "trigger.body.x",
                json!({"exists": false}),
                "for the opposite, `nexists = true`",
            ),
            (
                "body.x",
                json!({"exists": true}),
                "must start with one of trigger, vars",
            ),
            ("trigger..x", json!({"exists": true}), "empty segment"),
        ] {
            let err = check(key, criterion).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
        let err = check("trigger.body.x", json!({"eq": 1})).unwrap_err();
        assert!(err.contains("unknown variant `eq`"), "{err}");
    }

    #[test]
    fn criteria_read_naturally_in_toml() {
        #[derive(Deserialize)]
        struct Flow {
            criteria: BTreeMap<String, Criterion>,
        }
        let flow: Flow = toml::from_str(
            r#"
            [criteria]
            "trigger.headers.x-github-event.0" = { equals = "pull_request" }
            "trigger.body.created" = { timediff_lt = "5m" }
            "trigger.body.action" = { exists = true }
            "#,
        )
        .unwrap();
        assert_eq!(
            flow.criteria["trigger.headers.x-github-event.0"],
            Criterion::Equals(json!("pull_request"))
        );
        let criteria = Criteria::compile("c", &flow.criteria).unwrap();
        assert!(criteria.eval(ctx().value(), at(NOW)));
    }

    #[test]
    fn durations_and_times_parse() {
        assert_eq!(json_seconds(&json!("PT2M")), Some(120.0));
        assert_eq!(json_seconds(&json!("P1DT1H0.5S")), Some(90_000.5));
        assert_eq!(json_seconds(&json!("PT")), None);
        assert_eq!(json_seconds(&json!("PT1S2M")), None);
        assert_eq!(json_seconds(&json!("90")), Some(90.0));
        assert_eq!(json_seconds(&json!("250ms")), Some(0.25));
        assert_eq!(json_seconds(&json!(-1)), None);
        assert_eq!(rfc3339_seconds("2024-04-11T17:00:00Z"), Some(NOW as f64));
        assert_eq!(
            rfc3339_seconds("2024-04-11T19:00:00+02:00"),
            Some(NOW as f64)
        );
        assert_eq!(
            rfc3339_seconds("2024-04-11T12:30:00-04:30"),
            Some(NOW as f64)
        );
        assert_eq!(
            rfc3339_seconds("2024-04-11T17:00:00.5Z"),
            Some(NOW as f64 + 0.5)
        );
        assert_eq!(rfc3339_seconds("yesterday"), None);
    }
}
