//! Templates of task fields: strings ([`Template`]), JSON bodies written as TOML tables
//! ([`JsonTemplate`]), and a flow's variables ([`Vars`]).
//!
//! A JSON body is never rendered as text and parsed back. Its string leaves are
//! templates rendered one by one into JSON strings, and a leaf that is a single
//! `"{{ expr }}"` takes the expression's value (a number stays a number, an object an
//! object). Payload text therefore lands inside a JSON string and cannot close it.

use std::fmt;

use serde_json::{Map, Value as Json};

use super::{strip_braces, Compiled, Context, Engine, ExpressionError, ValueExpr};

/// A string field rendered against a [`Context`]: a URI, a header value, a log message.
#[derive(Clone)]
pub struct Template {
    inner: TemplateInner,
}

#[derive(Clone)]
enum TemplateInner {
    /// No template syntax at all: rendering returns the text.
    Constant(String),
    Compiled(Compiled),
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            TemplateInner::Constant(text) => f.debug_tuple("Template").field(text).finish(),
            TemplateInner::Compiled(compiled) => {
                f.debug_tuple("Template").field(&compiled.source).finish()
            }
        }
    }
}

impl Template {
    /// Compiles `source`; `path` (e.g. `flows[0].tasks[1].uri`) names it in errors.
    pub fn compile(engine: &Engine, path: &str, source: &str) -> Result<Template, ExpressionError> {
        let inner = if has_template_syntax(source) {
            TemplateInner::Compiled(engine.compile(path, source)?)
        } else {
            TemplateInner::Constant(source.to_owned())
        };
        Ok(Template { inner })
    }

    /// Renders to text.
    pub fn render(&self, ctx: &Context) -> Result<String, ExpressionError> {
        match &self.inner {
            TemplateInner::Constant(text) => Ok(text.clone()),
            TemplateInner::Compiled(compiled) => compiled.render(ctx),
        }
    }

    /// Whether the template renders to the same text whatever the context: the caller
    /// can then check it once at load time (a URI's host, for instance).
    pub fn is_constant(&self) -> bool {
        matches!(self.inner, TemplateInner::Constant(_))
    }

    /// The text of a constant template.
    pub fn as_constant(&self) -> Option<&str> {
        match &self.inner {
            TemplateInner::Constant(text) => Some(text),
            TemplateInner::Compiled(_) => None,
        }
    }
}

/// Whether `text` contains anything minijinja would interpret.
fn has_template_syntax(text: &str) -> bool {
    ["{{", "{%", "{#"].iter().any(|open| text.contains(open))
}

/// A JSON value whose string leaves are templates: a request body written as a TOML
/// table or array, or a flow variable.
#[derive(Debug, Clone)]
pub struct JsonTemplate {
    root: Node,
}

#[derive(Debug, Clone)]
enum Node {
    /// A subtree without any template: copied as it is.
    Constant(Json),
    /// A string leaf with template text around or between expressions.
    Text(Template),
    /// A string leaf that is exactly one `{{ expr }}`: replaced by the value.
    Value(ValueExpr),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl JsonTemplate {
    /// Compiles every string leaf of `value`; leaves are named `path.key` / `path[i]` in
    /// errors. Object keys are kept literally.
    pub fn compile(
        engine: &Engine,
        path: &str,
        value: &Json,
    ) -> Result<JsonTemplate, ExpressionError> {
        Ok(JsonTemplate {
            root: compile_node(engine, path, value)?,
        })
    }

    pub fn render(&self, ctx: &Context) -> Result<Json, ExpressionError> {
        render_node(&self.root, ctx)
    }

    /// Whether the value contains no template at all.
    pub fn is_constant(&self) -> bool {
        matches!(self.root, Node::Constant(_))
    }
}

fn compile_node(engine: &Engine, path: &str, value: &Json) -> Result<Node, ExpressionError> {
    let node = match value {
        Json::String(text) if has_template_syntax(text) => match strip_braces(text) {
            // Only a valid lone expression is taken by value: `{{ a }} and {{ b }}`
            // strips to `a }} and {{ b`, which is no expression, and is text.
            Some(expr) if is_expression(engine, expr) => {
                Node::Value(engine.compile_expression(path, expr)?)
            }
            _ => Node::Text(Template::compile(engine, path, text)?),
        },
        Json::Array(items) => {
            let nodes = items
                .iter()
                .enumerate()
                .map(|(i, item)| compile_node(engine, &format!("{path}[{i}]"), item))
                .collect::<Result<Vec<_>, _>>()?;
            if nodes.iter().all(|n| matches!(n, Node::Constant(_))) {
                Node::Constant(value.clone())
            } else {
                Node::Array(nodes)
            }
        }
        Json::Object(map) => {
            let entries = map
                .iter()
                .map(|(key, item)| {
                    let child = compile_node(engine, &format!("{path}.{}", toml_key(key)), item)?;
                    Ok((key.clone(), child))
                })
                .collect::<Result<Vec<_>, ExpressionError>>()?;
            if entries.iter().all(|(_, n)| matches!(n, Node::Constant(_))) {
                Node::Constant(value.clone())
            } else {
                Node::Object(entries)
            }
        }
        other => Node::Constant(other.clone()),
    };
    Ok(node)
}

fn is_expression(engine: &Engine, expr: &str) -> bool {
    engine.check_expression(expr).is_ok()
}

/// A key as it would be written in a TOML path: bare when it can be, quoted otherwise.
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_owned()
    } else {
        Json::from(key).to_string()
    }
}

fn render_node(node: &Node, ctx: &Context) -> Result<Json, ExpressionError> {
    Ok(match node {
        Node::Constant(value) => value.clone(),
        Node::Text(template) => Json::String(template.render(ctx)?),
        Node::Value(expr) => {
            let value = expr.eval(ctx).map_err(|err| expr.error(&err))?;
            if value.is_undefined() {
                // As printing a missing value is an error, so is sending one.
                return Err(ExpressionError::Render {
                    path: expr.path().to_owned(),
                    message: "the value is missing; use `| default(...)` if it may be absent"
                        .to_owned(),
                });
            }
            serde_json::to_value(&value).map_err(|err| ExpressionError::Render {
                path: expr.path().to_owned(),
                message: format!("the value cannot be written as JSON: {err}"),
            })?
        }
        Node::Array(items) => Json::Array(
            items
                .iter()
                .map(|item| render_node(item, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Node::Object(entries) => {
            let mut map = Map::with_capacity(entries.len());
            for (key, item) in entries {
                map.insert(key.clone(), render_node(item, ctx)?);
            }
            Json::Object(map)
        }
    })
}

/// A flow's variables: JSON templates rendered in order into `vars`, each seeing the
/// ones before it.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    entries: Vec<(String, JsonTemplate)>,
}

impl Vars {
    /// Compiles the variables in the order given (which is the order they render in);
    /// each is named `path.name` in errors.
    pub fn compile<'a>(
        engine: &Engine,
        path: &str,
        vars: impl IntoIterator<Item = (&'a str, &'a Json)>,
    ) -> Result<Vars, ExpressionError> {
        let entries = vars
            .into_iter()
            .map(|(name, value)| {
                let template =
                    JsonTemplate::compile(engine, &format!("{path}.{}", toml_key(name)), value)?;
                Ok((name.to_owned(), template))
            })
            .collect::<Result<_, ExpressionError>>()?;
        Ok(Vars { entries })
    }

    /// Renders every variable into `ctx.vars`, in order.
    pub fn render_into(&self, ctx: &mut Context) -> Result<(), ExpressionError> {
        for (name, template) in &self.entries {
            let value = template.render(ctx)?;
            ctx.set_var(name, value);
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::super::Secrets;
    use super::*;

    fn engine() -> Engine {
        Engine::new(Secrets::from_iter([(
            "X".to_owned(),
            "the-real-secret".to_owned(),
        )]))
    }

    fn ctx(body: Json) -> Context {
        Context::builder().body(body).build()
    }

    #[test]
    fn constant_templates_are_detected() {
        let e = engine();
        let constant = Template::compile(&e, "t", "https://example.com/a?b=c").unwrap();
        assert!(constant.is_constant());
        assert_eq!(constant.as_constant(), Some("https://example.com/a?b=c"));
        assert_eq!(
            constant.render(&ctx(Json::Null)).unwrap(),
            "https://example.com/a?b=c"
        );
        let dynamic =
            Template::compile(&e, "t", "https://example.com/{{ trigger.body.id }}").unwrap();
        assert!(!dynamic.is_constant());
        assert_eq!(
            dynamic.render(&ctx(json!({"id": 7}))).unwrap(),
            "https://example.com/7"
        );
    }

    #[test]
    fn missing_values_are_render_errors_with_the_path() {
        let t = Template::compile(
            &engine(),
            "flows[0].tasks[0].uri",
            "/x/{{ trigger.body.id }}",
        )
        .unwrap();
        let err = t.render(&ctx(json!({}))).unwrap_err().to_string();
        assert!(
            err.starts_with("flows[0].tasks[0].uri: rendering failed: a value it uses is missing"),
            "{err}"
        );
        let guarded = Template::compile(
            &engine(),
            "t",
            "{{ trigger.body.id | default('none') }}{% if trigger.body.id is defined %}!{% endif %}",
        )
        .unwrap();
        assert_eq!(guarded.render(&ctx(json!({}))).unwrap(), "none");
    }

    #[test]
    fn trailing_newlines_are_kept() {
        let t = Template::compile(&engine(), "t", "line {{ 1 }}\n").unwrap();
        assert_eq!(t.render(&ctx(Json::Null)).unwrap(), "line 1\n");
    }

    /// Text a hostile sender might put in a payload field.
    const HOSTILE: &str = "{{ secret('X') }} {% raw %}{{ 7 * 7 }}{% endraw %} {# c #} \
                           \"}, \"admin\": true, \"x\": {\" \\ ' </tag> &amp;";

    #[test]
    fn payload_text_is_never_evaluated_in_templates() {
        let t = Template::compile(&engine(), "t", "msg: {{ trigger.body.s }}").unwrap();
        let out = t.render(&ctx(json!({ "s": HOSTILE }))).unwrap();
        assert_eq!(out, format!("msg: {HOSTILE}"));
        assert!(!out.contains("the-real-secret"));
    }

    #[test]
    fn payload_text_is_never_evaluated_in_json_templates() {
        let body =
            json!({"text": "{{ trigger.body.s }}", "note": "said: {{ trigger.body.s }}", "n": 1});
        let t = JsonTemplate::compile(&engine(), "body", &body).unwrap();
        let out = t.render(&ctx(json!({ "s": HOSTILE }))).unwrap();
        assert_eq!(
            out,
            json!({"text": HOSTILE, "note": format!("said: {HOSTILE}"), "n": 1})
        );
        // Serialized, the payload stays inside its string: no `admin` key appears.
        let wire: Json = serde_json::from_str(&out.to_string()).unwrap();
        assert_eq!(wire.as_object().unwrap().len(), 3);
        assert!(wire.get("admin").is_none());
    }

    #[test]
    fn single_expressions_keep_their_type() {
        let body = json!({
            "count": "{{ trigger.body.n }}",
            "spaced": "  {{- trigger.body.n -}}  ",
            "obj": "{{ trigger.body.o }}",
            "list": ["{{ trigger.body.o.tags }}", "fixed", 3],
            "flag": "{{ trigger.body.n > 2 }}",
            "text": "{{ trigger.body.o.name }}",
            "null": "{{ trigger.body.nothing }}",
            "two": "{{ trigger.body.n }}{{ trigger.body.n }}",
            "both": "{{ trigger.body.n }} and {{ trigger.body.n }}",
            "constant": {"a": [1, true, null]}
        });
        let t = JsonTemplate::compile(&engine(), "body", &body).unwrap();
        assert!(!t.is_constant());
        let out = t
            .render(&ctx(
                json!({"n": 3, "o": {"name": "wb", "tags": ["a"]}, "nothing": null}),
            ))
            .unwrap();
        assert_eq!(
            out,
            json!({
                "count": 3,
                "spaced": 3,
                "obj": {"name": "wb", "tags": ["a"]},
                "list": [["a"], "fixed", 3],
                "flag": true,
                "text": "wb",
                "null": null,
                "two": "33",
                "both": "3 and 3",
                "constant": {"a": [1, true, null]}
            })
        );
    }

    #[test]
    fn json_templates_without_templates_are_constant() {
        let body = json!({"a": [1, "two", {"b": null}]});
        let t = JsonTemplate::compile(&engine(), "body", &body).unwrap();
        assert!(t.is_constant());
        assert_eq!(t.render(&ctx(Json::Null)).unwrap(), body);
    }

    #[test]
    fn json_template_errors_name_the_leaf() {
        let body = json!({"a": {"my key": ["ok", "{{ trigger.body. }}"]}});
        let err = JsonTemplate::compile(&engine(), "flows[0].tasks[1].body", &body).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(r#"flows[0].tasks[1].body.a."my key"[1]: invalid"#),
            "{err}"
        );
        let body = json!({"a": "{{ trigger.body.missing }}"});
        let t = JsonTemplate::compile(&engine(), "body", &body).unwrap();
        let err = t.render(&ctx(json!({}))).unwrap_err().to_string();
        assert!(
            err.starts_with("body.a: rendering failed: the value is missing"),
            "{err}"
        );
    }

    #[test]
    fn vars_see_earlier_vars() {
        let e = engine();
        let workbook = json!(6345964502u64);
        let url = json!("https://bi.example.com/workbooks/{{ vars.workbook }}");
        let note = json!({"text": "Workbook {{ vars.workbook }} archived: {{ vars.url }}", "id": "{{ vars.workbook }}"});
        let vars = Vars::compile(
            &e,
            "flows[0].vars",
            [("workbook", &workbook), ("url", &url), ("note", &note)],
        )
        .unwrap();
        let mut c = ctx(Json::Null);
        vars.render_into(&mut c).unwrap();
        let t =
            Template::compile(&e, "t", "{{ vars.note.text }} ({{ vars.note.id + 1 }})").unwrap();
        assert_eq!(
            t.render(&c).unwrap(),
            "Workbook 6345964502 archived: https://bi.example.com/workbooks/6345964502 (6345964503)"
        );
    }

    #[test]
    fn a_var_cannot_see_a_later_one() {
        let e = engine();
        let first = json!("{{ vars.second }}");
        let second = json!("2");
        let vars = Vars::compile(&e, "vars", [("first", &first), ("second", &second)]).unwrap();
        let err = vars.render_into(&mut ctx(Json::Null)).unwrap_err();
        assert!(
            err.to_string().starts_with("vars.first: rendering failed"),
            "{err}"
        );
    }

    #[test]
    fn outputs_chain_into_later_tasks() {
        let e = engine();
        let header = Template::compile(
            &e,
            "tasks[1].headers.X-Tableau-Auth",
            "{{ outputs.signin.body.token }}",
        )
        .unwrap();
        let form = JsonTemplate::compile(
            &e,
            "tasks[2].form",
            &json!({"channel": "{{ json(outputs.create.body).channel.id }}", "users": "W1,U2"}),
        )
        .unwrap();
        let mut c = ctx(Json::Null);
        c.set_output(
            "signin",
            json!({"status": 200, "headers": {}, "body": {"token": "tok-1"}}),
        );
        c.set_output(
            "create",
            json!({"status": 200, "headers": {}, "body": "{\"channel\": {\"id\": \"C42\"}}"}),
        );
        assert_eq!(header.render(&c).unwrap(), "tok-1");
        assert_eq!(
            form.render(&c).unwrap(),
            json!({"channel": "C42", "users": "W1,U2"})
        );
    }

    proptest! {
        #[test]
        fn any_payload_string_renders_verbatim(s in any::<String>()) {
            let e = engine();
            let t = JsonTemplate::compile(&e, "body", &json!({"text": "{{ trigger.body.s }}"})).unwrap();
            let out = t.render(&ctx(json!({ "s": s.clone() }))).unwrap();
            prop_assert_eq!(out, json!({ "text": s }));
        }

        /// Loading a flow must never crash the consumer, whatever the configuration says.
        #[test]
        fn compiling_never_panics(s in "[{}%#'\"()\\[\\]\\\\ a-z.+-]{0,30}", t in any::<String>()) {
            let e = engine();
            for text in [&s, &t] {
                let _ = Template::compile(&e, "t", text);
                let _ = JsonTemplate::compile(&e, "t", &json!({ "a": text }));
                let _ = super::super::Condition::expression(&e, "c", text);
            }
        }

        #[test]
        fn any_payload_string_renders_verbatim_inside_text(s in "[{}%#\"'\\\\a-z ]{0,40}") {
            let e = engine();
            let t = Template::compile(&e, "t", "<{{ trigger.body.s }}>").unwrap();
            let out = t.render(&ctx(json!({ "s": s.clone() }))).unwrap();
            prop_assert_eq!(out, format!("<{s}>"));
        }
    }
}
