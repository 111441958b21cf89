//! Conditions: whether a flow runs for an event (or a poller publishes one).
//!
//! Written either as one expression, Kestra-style (`"{{ trigger.body.stock_value <= 10
//! }}"`, the braces optional), true when its value is truthy as Jinja defines it; or as
//! a StackStorm-style criteria table (see [`criteria`](super::criteria)), true when every
//! criterion holds.

use std::collections::BTreeMap;
use std::time::SystemTime;

use minijinja::ErrorKind;

use super::criteria::{Criteria, Criterion};
use super::{strip_braces, Context, Engine, ExpressionError, ValueExpr};

/// A compiled condition.
#[derive(Debug, Clone)]
pub struct Condition {
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    Expression(ValueExpr),
    Criteria(Criteria),
}

impl Condition {
    /// Compiles an expression, given bare (`trigger.body.n <= 10`) or in one `{{ }}`.
    pub fn expression(
        engine: &Engine,
        path: &str,
        source: &str,
    ) -> Result<Condition, ExpressionError> {
        let expr = strip_braces(source).unwrap_or(source.trim());
        Ok(Condition {
            inner: Inner::Expression(engine.compile_expression(path, expr)?),
        })
    }

    /// Compiles a criteria table: dotted path into the context → `{ operator = operand }`.
    /// Needs no engine: criteria are plain comparisons, not templates.
    pub fn criteria(
        path: &str,
        criteria: &BTreeMap<String, Criterion>,
    ) -> Result<Condition, ExpressionError> {
        Ok(Condition {
            inner: Inner::Criteria(Criteria::compile(path, criteria)?),
        })
    }

    /// Compiles a table's `condition` (an expression) and `criteria`, whichever are
    /// given; problems go to `p` under `{at}.condition` and `{at}.criteria`.
    pub fn build_all(
        engine: &Engine,
        at: &str,
        condition: Option<&str>,
        criteria: &BTreeMap<String, Criterion>,
        p: &mut hookgate_common::config::Problems,
    ) -> Vec<Condition> {
        let mut all = Vec::new();
        if let Some(source) = condition {
            match Condition::expression(engine, &format!("{at}.condition"), source) {
                Ok(c) => all.push(c),
                Err(e) => e.report(p, "fix the expression"),
            }
        }
        if !criteria.is_empty() {
            match Condition::criteria(&format!("{at}.criteria"), criteria) {
                Ok(c) => all.push(c),
                Err(e) => e.report(p, "fix the criterion"),
            }
        }
        all
    }

    /// Whether the condition holds for `ctx`. `now` is the clock `timediff_*` criteria
    /// compare with.
    ///
    /// An expression that uses a missing value for anything but a truth test is
    /// `Ok(false)`, not an error (see the [module documentation](super)); other failures
    /// (an unknown secret, `json()` on invalid JSON, adding a string to a number) are
    /// errors.
    pub fn eval(&self, ctx: &Context, now: SystemTime) -> Result<bool, ExpressionError> {
        match &self.inner {
            Inner::Expression(expr) => match expr.eval(ctx) {
                Ok(value) => Ok(value.is_true()),
                Err(err) if err.kind() == ErrorKind::UndefinedError => Ok(false),
                Err(err) => Err(expr.error(&err)),
            },
            Inner::Criteria(criteria) => Ok(criteria.eval(ctx.value(), now)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::Secrets;
    use super::*;

    fn holds(source: &str, body: serde_json::Value) -> Result<bool, String> {
        let engine = Engine::new(Secrets::default());
        let condition = Condition::expression(&engine, "flows[0].condition", source)
            .map_err(|e| e.to_string())?;
        let ctx = Context::builder()
            .body(body)
            .headers(json!({"x-github-event": ["pull_request"]}))
            .build();
        condition
            .eval(&ctx, SystemTime::now())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_stock_alert_condition() {
        let c = "{{ trigger.body.stock_value <= 10 }}";
        assert_eq!(holds(c, json!({"stock_value": 4})), Ok(true));
        assert_eq!(holds(c, json!({"stock_value": 10})), Ok(true));
        assert_eq!(holds(c, json!({"stock_value": 11})), Ok(false));
        assert_eq!(holds(c, json!({"stock_value": 9.5})), Ok(true));
    }

    #[test]
    fn braces_are_optional() {
        assert_eq!(
            holds("trigger.body.stock_value <= 10", json!({"stock_value": 4})),
            Ok(true)
        );
        assert_eq!(
            holds(
                "  {{- trigger.body.stock_value <= 10 -}} ",
                json!({"stock_value": 40})
            ),
            Ok(false)
        );
    }

    #[test]
    fn a_missing_value_never_matches() {
        // minijinja orders undefined below every number; this must not fire the alert.
        assert_eq!(
            holds("trigger.body.stock_value <= 10", json!({})),
            Ok(false)
        );
        assert_eq!(holds("trigger.body.a.b.c == 1", json!({})), Ok(false));
        assert_eq!(holds("trigger.body.hello == 'world'", json!({})), Ok(false));
        assert_eq!(holds("trigger.body.missing", json!({})), Ok(false));
        assert_eq!(holds("not trigger.body.missing", json!({})), Ok(true));
        assert_eq!(
            holds("trigger.body.missing is not defined", json!({})),
            Ok(true)
        );
    }

    #[test]
    fn truthiness_is_jinja_truthiness() {
        for (value, truthy) in [
            (json!(0), false),
            (json!(1), true),
            (json!(""), false),
            (json!("no"), true),
            (json!([]), false),
            (json!([0]), true),
            (json!({}), false),
            (json!(null), false),
        ] {
            assert_eq!(
                holds("trigger.body.v", json!({ "v": value })),
                Ok(truthy),
                "{value}"
            );
        }
    }

    #[test]
    fn numbers_compare_numerically_strings_lexically() {
        assert_eq!(holds("trigger.body.v >= 0.8", json!({"v": 0.95})), Ok(true));
        assert_eq!(holds("trigger.body.v >= 0.8", json!({"v": 0.5})), Ok(false));
        assert_eq!(holds("trigger.body.v > 9", json!({"v": 10})), Ok(true));
        assert_eq!(holds("trigger.body.v > '9'", json!({"v": "10"})), Ok(false));
        // Different kinds compare by kind, not content (see the module documentation).
        assert_eq!(holds("trigger.body.v <= 10", json!({"v": null})), Ok(true));
        // A number sent as a string is converted explicitly.
        assert_eq!(
            holds("trigger.body.v | float >= 0.8", json!({"v": "0.95"})),
            Ok(true)
        );
        assert_eq!(
            holds("trigger.body.v[0] | int <= 10", json!({"v": ["5"]})),
            Ok(true)
        );
    }

    #[test]
    fn headers_are_reachable_by_name_and_index() {
        assert_eq!(
            holds("trigger.headers['x-github-event'][0] == 'pull_request' and trigger.body.action == 'opened'", json!({"action": "opened"})),
            Ok(true)
        );
    }

    #[test]
    fn json_in_conditions() {
        let c = "{{ json(trigger.body).stock_value <= 10 }}";
        assert_eq!(holds(c, json!("{\"stock_value\": 3}")), Ok(true));
        assert_eq!(holds(c, json!({"stock_value": 30})), Ok(false));
        let err = holds(c, json!("{broken")).unwrap_err();
        assert!(
            err.starts_with("flows[0].condition: rendering failed: invalid operation: json()"),
            "{err}"
        );
    }

    #[test]
    fn other_failures_are_errors() {
        let err = holds("secret('NOPE') == 'x'", json!({})).unwrap_err();
        assert!(err.contains("unknown secret \"NOPE\""), "{err}");
        let err = holds("trigger.body.s + 1 > 0", json!({"s": "a"})).unwrap_err();
        assert!(
            err.starts_with("flows[0].condition: rendering failed"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_are_load_errors() {
        let err = holds("{{ trigger.body.x <= }}", json!({})).unwrap_err();
        assert!(
            err.starts_with("flows[0].condition: invalid template or expression: syntax error"),
            "{err}"
        );
        // Two blocks are not one expression.
        assert!(holds("{{ a }} and {{ b }}", json!({})).is_err());
    }

    #[test]
    fn string_literals_may_contain_block_markers() {
        assert_eq!(
            holds("trigger.body.s == '%} {{'", json!({"s": "%} {{"})),
            Ok(true)
        );
    }
}
