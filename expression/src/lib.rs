//! The one expression language of flows: conditions, task fields and JSON bodies.
//!
//! The consumer evaluates every flow's conditions on each event and renders the fields of
//! each task it runs (URI, headers, body, form data, Kafka key and value, log message).
//! All of them speak one Jinja dialect, close to what Kestra and StackStorm users write:
//! `{{ trigger.body.stock_value <= 10 }}`, `{{ trigger.headers['x-github-event'][0] }}`,
//! `{{ outputs.signin.body.token }}`, `{{ json(trigger.body.payload).id }}`,
//! `{{ secret('SLACK_TOKEN') }}`.
//!
//! # Life cycle
//! One [`Engine`] is built per consumer configuration, from the resolved [`Secrets`].
//! Loading a flow compiles each of its strings once ([`Template::compile`],
//! [`JsonTemplate::compile`], [`Condition::expression`], [`Condition::criteria`],
//! [`Vars::compile`]); a syntax error is an [`ExpressionError`] naming the TOML path the
//! caller gave. At run time each event becomes a [`Context`], and the compiled objects are
//! rendered against it as often as needed. Payload values enter templates as values and
//! are never parsed as template text, so a sender cannot inject `{{ secret('X') }}`.
//!
//! # Missing values
//! Both conditions and templates run with minijinja's `SemiStrict` undefined behaviour:
//! - testing a missing value for truth (`{% if trigger.body.note %}`, `not x`, `x is
//!   defined`) is allowed and false;
//! - printing it, iterating it, or reaching into it is an error. In a template that is a
//!   render error naming the field's path: a request with an empty field where a value
//!   was meant is worse than a failed task that says why. Use `| default(...)` or
//!   `is defined` where absence is expected.
//! - in a [`Condition`], any use of a missing value other than a truth test makes the
//!   whole condition *not match* (`Ok(false)`), like Kestra users expect. The looser
//!   modes would be wrong here: minijinja orders undefined before every number, so with
//!   them `trigger.body.missing <= 10` would be *true* and fire the alert.
//!
//! Printing `none` (JSON `null`) writes nothing, and booleans print as `true`/`false`,
//! which is what URLs, headers and JSON-ish text around a value expect.
//!
//! # Comparisons
//! Numbers compare numerically (`0.95 >= 0.8`). Values of different kinds compare by
//! kind, as minijinja defines it, not by content: `null <= 10` and `'5' > 9` are both
//! true. Convert text sent as numbers explicitly (`trigger.body.n | float <= 10`), or use
//! criteria, whose numeric operators read numeric strings.
//!
//! # Layout
//! - [`secrets`]: the secret table and the masking of secret values;
//! - `functions`: `json()`, `secret()` and the filters `xml`, `form`, `urlencode`,
//!   `b64encode`;
//! - [`context`]: the values templates see;
//! - [`template`]: string templates, JSON templates and flow variables;
//! - [`condition`] and [`criteria`]: conditions, as an expression or as a StackStorm-style
//!   criteria table.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};

pub mod condition;
pub mod context;
pub mod criteria;
mod functions;
pub mod secrets;
pub mod template;

pub use condition::Condition;
pub use context::{Context, ContextBuilder};
pub use criteria::Criterion;
pub use secrets::Secrets;
pub use template::{JsonTemplate, Template, Vars};

/// Why an expression or template could not be compiled or rendered.
///
/// Messages never carry a secret value: render errors are masked with the engine's
/// secrets before they are built, and payload text is not quoted.
#[derive(Debug, thiserror::Error)]
pub enum ExpressionError {
    /// The template or expression does not parse.
    #[error("{path}: invalid template or expression: {message}")]
    Syntax { path: String, message: String },
    /// A `matchregex` criterion's pattern is not a valid regular expression.
    #[error("{path}: invalid regular expression for `matchregex`: {source}")]
    Regex {
        path: String,
        #[source]
        source: regex::Error,
    },
    /// A criteria entry is malformed (bad path or operand).
    #[error("{path}: {message}")]
    Criterion { path: String, message: String },
    /// Rendering failed at run time (missing value, bad conversion, unknown secret...).
    #[error("{path}: rendering failed: {message}")]
    Render { path: String, message: String },
}

impl ExpressionError {
    /// Adds this error to `p` under its own path, with `fix`.
    pub fn report(&self, p: &mut hookgate_common::config::Problems, fix: &str) {
        let (path, message) = match self {
            ExpressionError::Syntax { path, message } => {
                (path, format!("invalid template or expression: {message}"))
            }
            ExpressionError::Regex { path, source } => (
                path,
                format!("invalid regular expression for `matchregex`: {source}"),
            ),
            ExpressionError::Criterion { path, message } => (path, message.clone()),
            ExpressionError::Render { path, message } => {
                (path, format!("rendering failed: {message}"))
            }
        };
        p.push(path.clone(), message, fix);
    }
}

/// The compiled-template store and the secrets of one consumer configuration.
///
/// Cheap to clone (an [`Arc`]); every compiled template holds a clone, which is what lets
/// [`Template::render`] take only a context.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    env: Environment<'static>,
    /// Sources waiting to be compiled, by template name. minijinja's loader compiles a
    /// name once on first use and keeps the result for the life of the environment; this
    /// is how a template compiled at load time can be kept without borrowing the engine.
    /// An engine lives as long as its configuration, so nothing here is ever removed
    /// (which also keeps every name unique: minijinja would serve a reused name's old
    /// template).
    sources: Arc<Mutex<HashMap<String, Arc<str>>>>,
    secrets: Arc<Secrets>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("secrets", &self.inner.secrets)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Builds the environment: functions, filters, output formatting and undefined
    /// handling (see the module documentation).
    pub fn new(secrets: Secrets) -> Engine {
        Engine::build(secrets, None)
    }

    /// An engine whose every evaluation may run at most `fuel` instructions; past that
    /// it fails with a render error saying the limit was reached. For expressions whose
    /// input comes from outside before anything else bounds it (the gateway's ingress
    /// filters): a loop over a large payload array stops instead of holding a thread.
    pub fn bounded(secrets: Secrets, fuel: u64) -> Engine {
        Engine::build(secrets, Some(fuel))
    }

    fn build(secrets: Secrets, fuel: Option<u64>) -> Engine {
        let secrets = Arc::new(secrets);
        let sources: Arc<Mutex<HashMap<String, Arc<str>>>> = Arc::default();

        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_fuel(fuel);
        // Debug info would copy the whole context (payloads) into every error.
        env.set_debug(false);
        // Templates produce URLs, JSON, XML and form bodies, never HTML; each has its own
        // explicit filter. Auto-escaping picked by a path's "extension" would surprise.
        env.set_auto_escape_callback(|_| AutoEscape::None);
        // A body template written as a TOML multi-line string keeps its final newline.
        env.set_keep_trailing_newline(true);
        env.set_formatter(functions::format_value);
        let loader_sources = Arc::clone(&sources);
        env.set_loader(move |name| {
            let sources = loader_sources
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Ok(sources.get(name).map(|source| source.to_string()))
        });
        functions::register(&mut env, Arc::clone(&secrets));

        Engine {
            inner: Arc::new(Inner {
                env,
                sources,
                secrets,
            }),
        }
    }

    /// Replaces every occurrence of every secret value in `text` with `[redacted]`.
    ///
    /// Use it on anything that leaves the process or outlives the run: log lines,
    /// execution records, rendered headers kept in task outputs. See
    /// [`Secrets::mask`] for what counts as an occurrence.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.inner.secrets.mask(text)
    }

    /// [`mask`](Self::mask) applied to every string (and object key) in a JSON value.
    pub fn mask_json(&self, value: &mut serde_json::Value) {
        self.inner.secrets.mask_json(value)
    }

    /// The `secret('NAME')` calls of the templates compiled so far at or under `prefix`
    /// (a flow's path, such as `flows[2]`), as (the template's path, the name), in path
    /// order: where each secret is used, for messages.
    pub fn secret_uses(&self, prefix: &str) -> Vec<(String, String)> {
        let call = regex::Regex::new(r#"secret\(\s*(?:'|")([^'"]+)(?:'|")\s*\)"#)
            .expect("a valid pattern");
        let sources = self
            .inner
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut uses: Vec<(String, String)> = sources
            .iter()
            .filter(|(name, _)| {
                name.strip_prefix(prefix)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[', '#']))
            })
            .flat_map(|(name, source)| {
                let path = name.split('#').next().unwrap_or(name).to_string();
                call.captures_iter(source)
                    .map(move |c| (path.clone(), c[1].to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        uses.sort();
        uses.dedup();
        uses
    }

    /// Compiles `source` as a template and keeps it, under a name derived from `path`.
    fn compile(&self, path: &str, source: &str) -> Result<Compiled, ExpressionError> {
        let source: Arc<str> = Arc::from(source);
        let name = {
            let mut sources = self
                .inner
                .sources
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // The name appears in nothing user-facing (errors carry `path`), but a
            // readable one helps when debugging; a counter keeps it unique when a path
            // is compiled twice.
            let mut name = path.to_owned();
            let mut n = 1;
            while sources.contains_key(&name) {
                n += 1;
                name = format!("{path}#{n}");
            }
            sources.insert(name.clone(), Arc::clone(&source));
            name
        };
        // First use: the loader hands the source over and minijinja compiles it.
        if let Err(err) = self.inner.env.get_template(&name) {
            self.inner
                .sources
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&name);
            return Err(ExpressionError::Syntax {
                path: path.to_owned(),
                message: describe(&err, &source),
            });
        }
        Ok(Compiled {
            engine: self.clone(),
            name,
            path: path.to_owned(),
            source,
        })
    }

    /// Checks that `expr` is one expression (not a template) and compiles it so that
    /// evaluating it yields its value.
    fn compile_expression(&self, path: &str, expr: &str) -> Result<ValueExpr, ExpressionError> {
        // Parse it alone first: this rejects a template such as `a }} {{ b` that would
        // otherwise be spliced into the wrapper below and change its meaning.
        self.check_expression(expr)
            .map_err(|message| ExpressionError::Syntax {
                path: path.to_owned(),
                message,
            })?;
        // minijinja's `Expression` borrows its environment; a one-statement template
        // that stores the value in a variable does not, and reads back the same value.
        let source = format!("{{% set {VALUE_VAR} = ({expr}) %}}");
        Ok(ValueExpr {
            compiled: self.compile(path, &source)?,
        })
    }

    /// Whether `expr` parses as one standalone expression; if not, why.
    fn check_expression(&self, expr: &str) -> Result<(), String> {
        if ends_variable_block(expr) {
            return Err(
                "expected one expression, found `}}` in it; combine several \
                        `{{ }}` blocks into one, e.g. `{{ a and b }}`"
                    .to_owned(),
            );
        }
        self.inner
            .env
            .compile_expression(expr)
            .map(drop)
            .map_err(|err| describe(&err, expr))
    }

    /// Builds the error of a failed render, masking any secret the message might quote.
    fn render_error(&self, path: &str, err: &minijinja::Error, source: &str) -> ExpressionError {
        ExpressionError::Render {
            path: path.to_owned(),
            message: self.mask(&describe(err, source)).into_owned(),
        }
    }
}

/// The variable a [`ValueExpr`] stores its result in.
const VALUE_VAR: &str = "__hookgate_value";

/// A template compiled into an engine, with the path it came from.
#[derive(Clone)]
struct Compiled {
    engine: Engine,
    name: String,
    path: String,
    /// Kept to point at the failing part in render errors.
    source: Arc<str>,
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compiled")
            .field("path", &self.path)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Compiled {
    fn render(&self, ctx: &Context) -> Result<String, ExpressionError> {
        self.engine
            .inner
            .env
            .get_template(&self.name)
            .and_then(|template| template.render(ctx.value()))
            .map_err(|err| self.error(&err))
    }

    /// Renders for the side effect of `{% set %}` and returns the variable's value.
    fn eval_var(&self, ctx: &Context, var: &str) -> Result<Value, minijinja::Error> {
        let template = self.engine.inner.env.get_template(&self.name)?;
        let captured = template.render_captured(ctx.value())?;
        Ok(captured.state().lookup(var).unwrap_or(Value::UNDEFINED))
    }

    fn error(&self, err: &minijinja::Error) -> ExpressionError {
        self.engine.render_error(&self.path, err, &self.source)
    }
}

/// One expression whose value (not its text) is wanted: conditions and the
/// `"{{ expr }}"` leaves of JSON templates.
#[derive(Debug, Clone)]
struct ValueExpr {
    compiled: Compiled,
}

impl ValueExpr {
    /// Evaluates to the expression's value. The error stays minijinja's so that a
    /// condition can tell a missing value from other failures; [`ValueExpr::error`]
    /// turns it into ours.
    fn eval(&self, ctx: &Context) -> Result<Value, minijinja::Error> {
        self.compiled.eval_var(ctx, VALUE_VAR)
    }

    fn error(&self, err: &minijinja::Error) -> ExpressionError {
        self.compiled.error(err)
    }

    fn path(&self) -> &str {
        &self.compiled.path
    }
}

/// Removes one outer `{{ … }}` (with optional whitespace-control marks) from `text`, if
/// the whole of it is one such block; returns the inner text.
fn strip_braces(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix(['-', '+']).unwrap_or(inner);
    let inner = inner.strip_suffix(['-', '+']).unwrap_or(inner);
    Some(inner.trim())
}

/// Whether `expr` holds a `}}` that minijinja's lexer would take as the end of a
/// `{{ }}` block: outside string literals and with brackets balanced, as the lexer
/// counts them.
///
/// minijinja 2.24 panics ("empty lexer stack") when a standalone expression has input
/// after such a marker, so text like that is never given to `compile_expression`.
fn ends_variable_block(expr: &str) -> bool {
    let bytes = expr.as_bytes();
    let mut balance: isize = 0;
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        match (quote, bytes[i]) {
            (Some(_), b'\\') => i += 1,
            (Some(q), b) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b @ (b'\'' | b'"')) => quote = Some(b),
            (None, b'}') if balance == 0 && bytes.get(i + 1) == Some(&b'}') => return true,
            (None, b'(' | b'[' | b'{') => balance += 1,
            (None, b')' | b']' | b'}') => balance -= 1,
            (None, _) => {}
        }
        i += 1;
    }
    false
}

/// A one-line, user-facing description of a minijinja error.
///
/// minijinja's own `Display` repeats the template name (our path is already in front of
/// the message) and its undefined error says nothing about which value.
fn describe(err: &minijinja::Error, source: &str) -> String {
    let mut message = match (err.kind(), err.detail()) {
        (ErrorKind::UndefinedError, _) => {
            let near = err
                .range()
                .and_then(|range| source.get(range))
                .filter(|snippet| !snippet.is_empty() && !snippet.contains(VALUE_VAR))
                .map(|snippet| format!(" near `{}`", snippet.trim()))
                .unwrap_or_default();
            format!(
                "a value it uses is missing{near}; guard it with `is defined` or \
                 `| default(...)` if it may be absent"
            )
        }
        (kind, Some(detail)) => format!("{kind}: {detail}"),
        (kind, None) => kind.to_string(),
    };
    // Sources are mostly one line; the line number only helps in multi-line bodies.
    if let Some(line) = err.line().filter(|_| source.contains('\n')) {
        message.push_str(&format!(" (line {line})"));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_objects_can_be_shared_across_tasks() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Engine>();
        assert_send_sync::<Template>();
        assert_send_sync::<JsonTemplate>();
        assert_send_sync::<Condition>();
        assert_send_sync::<Vars>();
        assert_send_sync::<Context>();
        assert_send_sync::<ExpressionError>();
    }

    #[test]
    fn strip_braces_accepts_one_outer_block_only() {
        assert_eq!(strip_braces("{{ a <= 10 }}"), Some("a <= 10"));
        assert_eq!(strip_braces("  {{- a -}}\n"), Some("a"));
        assert_eq!(strip_braces("a <= 10"), None);
        assert_eq!(strip_braces("{{ a }} and {{ b }}"), Some("a }} and {{ b"));
    }

    #[test]
    fn block_ends_are_found_outside_strings_and_brackets() {
        assert!(ends_variable_block("a }} and {{ b"));
        assert!(ends_variable_block("a -}}"));
        assert!(!ends_variable_block("a == '}}'"));
        assert!(!ends_variable_block(r#"a == "\"}}""#));
        assert!(!ends_variable_block("{'a': {'b': 1}}"));
        assert!(!ends_variable_block("a <= 10"));
    }

    #[test]
    fn expressions_that_would_crash_the_parser_are_refused() {
        let engine = Engine::new(Secrets::default());
        for text in ["a }} and {{ b", "a }} ", "x -}}y"] {
            let err = Condition::expression(&engine, "c", text).unwrap_err();
            assert!(err.to_string().contains("expected one expression"), "{err}");
        }
    }

    #[test]
    fn syntax_errors_name_the_path() {
        let engine = Engine::new(Secrets::default());
        let err =
            Template::compile(&engine, "flows[0].tasks[1].uri", "https://x/{{ a + }}").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("flows[0].tasks[1].uri: invalid template"),
            "{text}"
        );
        assert!(text.contains("syntax error"), "{text}");
    }

    #[test]
    fn the_same_path_can_be_compiled_twice() {
        let engine = Engine::new(Secrets::default());
        let a = Template::compile(&engine, "p", "a{{ 1 }}").unwrap();
        let b = Template::compile(&engine, "p", "b{{ 2 }}").unwrap();
        let ctx = Context::builder().build();
        assert_eq!(a.render(&ctx).unwrap(), "a1");
        assert_eq!(b.render(&ctx).unwrap(), "b2");
    }

    #[test]
    fn a_failed_compile_leaves_nothing_behind() {
        let engine = Engine::new(Secrets::default());
        assert!(Template::compile(&engine, "p", "{{ (").is_err());
        let ok = Template::compile(&engine, "p", "{{ 'fine' }}").unwrap();
        assert_eq!(ok.render(&Context::builder().build()).unwrap(), "fine");
    }

    #[test]
    fn render_errors_are_masked() {
        let secrets = Secrets::from_iter([("TOKEN".to_owned(), "s3cr3t-value".to_owned())]);
        let engine = Engine::new(secrets);
        // No minijinja message quotes a value today; this guards against one that would.
        let direct = engine.render_error(
            "p",
            &minijinja::Error::new(ErrorKind::InvalidOperation, "bad s3cr3t-value here"),
            "",
        );
        assert_eq!(
            direct.to_string(),
            "p: rendering failed: invalid operation: bad [redacted] here"
        );
    }

    #[test]
    fn engine_debug_shows_no_secret() {
        let engine = Engine::new(Secrets::from_iter([(
            "TOKEN".to_owned(),
            "s3cr3t-value".to_owned(),
        )]));
        let debug = format!("{engine:?}");
        assert!(
            debug.contains("TOKEN") && !debug.contains("s3cr3t-value"),
            "{debug}"
        );
    }
}
