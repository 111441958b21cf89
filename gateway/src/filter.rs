//! Ingress filters: a hook may drop requests it has no use for before they are published.
//!
//! A filter is a condition in the flows' expression language ([`hookgate_expression`]),
//! over the request as its event would carry it: `trigger.body` (the normalized body),
//! `trigger.headers` and `trigger.parameters` (name → array of values, redacted as in the
//! event) and `trigger.hook`. The same condition written on a flow would match the same
//! events, so a filter can move between a flow and its hook unchanged.
//!
//! ```toml
//! [[hooks]]
//! id = "github"
//! topic = "github"
//! auth = { scheme = "hmac", preset = "github", secrets = [{ env = "GITHUB_SECRET" }] }
//! filter = "trigger.headers['x-github-event'][0] in ['push', 'pull_request']"
//! # or a criteria table, as in flows:
//! # filter = { criteria = { "trigger.body.action" = { equals = "opened" } } }
//! ```
//!
//! A request the filter does not match is answered `204 No Content` once it is
//! authenticated and its body normalized, and nothing is published; it counts as
//! outcome `filtered` in `hookgate_requests_total`. Evaluation is bounded: its input by
//! the hook's `max_body`, and the instructions it may run by a fuel limit ([`FUEL`]). Payload text is a value, never template text: a body of
//! `{{ 7*7 }}` is a string of eight characters to the filter.
//!
//! A filter that fails to evaluate (it ran out of fuel, or converted a value that does
//! not convert) lets the request through: a filter saves the consumers work, and a bug
//! in one must not lose deliveries. The failure is logged and counted in
//! `hookgate_filter_errors_total`. A filter is not an access control: authentication is.

use std::collections::BTreeMap;
use std::time::SystemTime;

use hookgate_common::config::Problems;
use hookgate_event::Fields;
use hookgate_expression::{Condition, Context, Criterion, Engine, Secrets};
use serde::Deserialize;
use serde_json::{Map, Value as Json};

/// Instructions one evaluation may run: plenty for comparisons and a loop over a few
/// thousand items, far below what would hold a core for a millisecond.
pub const FUEL: u64 = 50_000;

/// `filter` in a hook: an expression, or a table with an expression and/or criteria.
#[derive(Debug, Clone)]
pub enum FilterConfig {
    Expression(String),
    Table(FilterTable),
}

impl<'de> Deserialize<'de> for FilterConfig {
    // By hand rather than untagged, so that a mistake inside the table is reported as
    // itself (an unknown operator, a misspelt key), not as "matched no variant".
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = FilterConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an expression, or a table with `condition` and/or `criteria`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FilterConfig, E> {
                Ok(FilterConfig::Expression(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<FilterConfig, A::Error> {
                FilterTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(FilterConfig::Table)
            }
        }
        d.deserialize_any(V)
    }
}

/// `filter = { condition = "…", criteria = { … } }`: both must hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterTable {
    pub condition: Option<String>,
    #[serde(default)]
    pub criteria: BTreeMap<String, Criterion>,
}

impl FilterConfig {
    /// Compiles the filter; problems go to `p` under `at`.
    pub fn build(&self, at: &str, p: &mut Problems) -> Option<Filter> {
        let engine = Engine::bounded(Secrets::default(), FUEL);
        let before = p.len();
        let conditions = match self {
            FilterConfig::Expression(source) => match Condition::expression(&engine, at, source) {
                Ok(c) => vec![c],
                Err(e) => {
                    e.report(p, "fix the expression");
                    Vec::new()
                }
            },
            FilterConfig::Table(table) => {
                if table.condition.is_none() && table.criteria.is_empty() {
                    p.push(
                        at.to_owned(),
                        "is empty",
                        "give a `condition`, `criteria`, or both",
                    );
                }
                Condition::build_all(&engine, at, table.condition.as_deref(), &table.criteria, p)
            }
        };
        for (path, name) in engine.secret_uses(at) {
            p.push(
                path,
                format!("reads secret `{name}`; filters cannot read secrets"),
                "compare with a value written in the filter, or check it in a flow",
            );
        }
        (p.len() == before).then_some(Filter { conditions })
    }
}

/// A compiled filter.
#[derive(Debug, Clone)]
pub struct Filter {
    conditions: Vec<Condition>,
}

/// What a filter made of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Publish it.
    Pass,
    /// Answer 204 and publish nothing.
    Drop,
    /// The filter could not be evaluated (the message says why, without payload text);
    /// the request is published.
    Failed(String),
}

impl Filter {
    /// Decides on one request. `body` is the normalized body's JSON text (`None` for a
    /// body that could not be normalized, which the filter sees as `null`).
    pub fn decide(
        &self,
        hook: &str,
        body: Option<&[u8]>,
        headers: &Fields<'_>,
        parameters: &Fields<'_>,
        now: SystemTime,
    ) -> Decision {
        let body = body
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Json::Null);
        let ctx = Context::builder()
            .body(body)
            .headers(fields_json(headers))
            .parameters(fields_json(parameters))
            .hook(hook)
            .build();
        for condition in &self.conditions {
            match condition.eval(&ctx, now) {
                Ok(true) => {}
                Ok(false) => return Decision::Drop,
                Err(e) => return Decision::Failed(e.to_string()),
            }
        }
        Decision::Pass
    }
}

/// `name → [values]`, as events carry headers and query parameters.
fn fields_json(fields: &Fields<'_>) -> Json {
    let mut map = Map::with_capacity(fields.len());
    for (name, values) in fields.iter() {
        map.insert(
            name.to_owned(),
            Json::Array(values.iter().map(|v| Json::from(v.as_ref())).collect()),
        );
    }
    Json::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(toml_value: &str) -> Result<Filter, String> {
        #[derive(Deserialize)]
        struct T {
            filter: FilterConfig,
        }
        let t: T = toml::from_str(&format!("filter = {toml_value}")).map_err(|e| e.to_string())?;
        let mut p = Problems::default();
        t.filter
            .build("hooks[0].filter", &mut p)
            .ok_or_else(|| p.into_error("test").to_string())
    }

    fn decide(f: &Filter, body: &str, event: &str) -> Decision {
        let mut headers = Fields::new();
        headers.push("x-github-event", event);
        let mut query = Fields::new();
        query.push("env", "prod");
        f.decide(
            "github",
            Some(body.as_bytes()),
            &headers,
            &query,
            SystemTime::now(),
        )
    }

    #[test]
    fn drops_what_does_not_match_and_passes_what_does() {
        let f = filter(
            r#""trigger.headers['x-github-event'][0] == 'pull_request' and trigger.body.action == 'opened' and trigger.parameters.env[0] == 'prod'""#,
        )
        .unwrap();
        assert_eq!(
            decide(&f, r#"{"action":"opened"}"#, "pull_request"),
            Decision::Pass
        );
        assert_eq!(
            decide(&f, r#"{"action":"closed"}"#, "pull_request"),
            Decision::Drop
        );
        assert_eq!(decide(&f, r#"{"action":"opened"}"#, "push"), Decision::Drop);
        // A missing field never matches.
        assert_eq!(decide(&f, "{}", "pull_request"), Decision::Drop);
    }

    #[test]
    fn criteria_tables_work_as_in_flows() {
        let f = filter(r#"{ criteria = { "trigger.body.amount" = { gt = 100 } } }"#).unwrap();
        assert_eq!(decide(&f, r#"{"amount":250}"#, "x"), Decision::Pass);
        assert_eq!(decide(&f, r#"{"amount":50}"#, "x"), Decision::Drop);
    }

    #[test]
    fn payload_text_is_never_evaluated() {
        let f = filter(r#""trigger.body.text == '49'""#).unwrap();
        assert_eq!(decide(&f, r#"{"text":"{{ 7*7 }}"}"#, "x"), Decision::Drop);
        let f = filter(r#""trigger.body.text == '{{ 7*7 }}'""#).unwrap();
        assert_eq!(decide(&f, r#"{"text":"{{ 7*7 }}"}"#, "x"), Decision::Pass);
    }

    #[test]
    fn an_evaluation_past_the_fuel_limit_is_stopped_and_lets_the_request_through() {
        // Each item of a list literal is one instruction.
        let items = vec!["trigger.body.n"; FUEL as usize + 1].join(", ");
        let f = filter(&format!("\"[{items}] | length > 0\"")).unwrap();
        match decide(&f, r#"{"n":1}"#, "x") {
            Decision::Failed(why) => assert!(why.contains("fuel"), "{why}"),
            other => panic!("expected the fuel limit, got {other:?}"),
        }
        let items = vec!["trigger.body.n"; 1000].join(", ");
        let f = filter(&format!("\"[{items}] | length > 0\"")).unwrap();
        assert_eq!(decide(&f, r#"{"n":1}"#, "x"), Decision::Pass);
    }

    #[test]
    fn bad_filters_are_refused_at_load_naming_the_key() {
        let err = filter(r#""trigger.body.a ==""#).unwrap_err();
        assert!(err.contains("hooks[0].filter"), "{err}");
        let err = filter(r#""secret('TOKEN') == trigger.body.token""#).unwrap_err();
        assert!(
            err.contains("hooks[0].filter") && err.contains("filters cannot read secrets"),
            "{err}"
        );
        let err = filter("{}").unwrap_err();
        assert!(err.contains("is empty"), "{err}");
        let err = filter(r#"{ criteria = { "trigger.body.a" = { nope = 1 } } }"#).unwrap_err();
        assert!(err.contains("nope"), "{err}");
        let err = filter(r#"{ condtion = "trigger.body.a" }"#).unwrap_err();
        assert!(err.contains("condtion"), "{err}");
    }
}
