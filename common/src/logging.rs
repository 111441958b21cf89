//! Logging for both binaries: to stderr, filtered by `HOOKGATE_LOG` (`tracing` env-filter
//! syntax, default `info`), as text or, with `HOOKGATE_LOG_FORMAT=json`, one JSON object
//! per line.
//!
//! A JSON line has the keys `timestamp` (RFC 3339, UTC), `level`, `target`, `message`
//! and then each field of the event as a key of its own, never nested. Numbers and
//! booleans stay JSON numbers and booleans. A list is logged as [`List`] and becomes a JSON
//! array; anything else is its text.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Installs the process's logger from `HOOKGATE_LOG` and `HOOKGATE_LOG_FORMAT`.
pub fn init() {
    let filter = EnvFilter::try_from_env("HOOKGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("HOOKGATE_LOG_FORMAT").is_ok_and(|v| v == "json") {
        builder.event_format(JsonLines).init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

/// A list of values for a log field: `topics = %List(&missing)`. Text logs show
/// `[a, b]`; JSON logs an array of strings.
pub struct List<'a, T>(pub &'a [T]);

/// Marks a [`List`]'s text so the JSON formatter can tell it from any other text: a
/// control character that `Display` of a log value does not otherwise start with.
const LIST_MARK: char = '\u{1e}';

impl<T: fmt::Display> fmt::Display for List<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // With the alternate flag (set by the JSON formatter only), a marked JSON array.
        if f.alternate() {
            let items: Vec<Value> = self
                .0
                .iter()
                .map(|v| Value::String(v.to_string()))
                .collect();
            return write!(f, "{LIST_MARK}{}", Value::Array(items));
        }
        f.write_str("[")?;
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{v}")?;
        }
        f.write_str("]")
    }
}

impl<T: fmt::Display> fmt::Debug for List<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The JSON line format.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            humantime::format_rfc3339_micros(std::time::SystemTime::now())
                .to_string()
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        event.record(&mut Fields(&mut line));
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Records an event's fields as top-level keys.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.insert(field.name().to_string(), value);
    }
}

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(
            field,
            serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number),
        );
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%value` and `?value` both arrive here. Asked for its alternate form, a `List`
        // writes its marked JSON array; anything else is kept as its usual text.
        let alternate = format!("{value:#?}");
        if let Some(array) = alternate.strip_prefix(LIST_MARK) {
            if let Ok(v) = serde_json::from_str::<Value>(array) {
                self.put(field, v);
                return;
            }
        }
        self.put(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn json_lines(log: impl FnOnce()) -> Vec<Value> {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn fields_are_top_level_keys_and_lists_are_arrays() {
        let topics = vec!["webhooks.a".to_string(), "webhooks.\"b\"".to_string()];
        let lines = json_lines(|| {
            tracing::warn!(
                hook = "gh",
                status = 401u64,
                retried = false,
                reason = %"mismatch",
                topics = %List(&topics),
                wait = ?std::time::Duration::from_millis(250),
                "refused"
            );
        });
        let line = &lines[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "refused");
        assert_eq!(line["hook"], "gh");
        assert_eq!(line["status"], 401);
        assert_eq!(line["retried"], false);
        assert_eq!(line["reason"], "mismatch");
        assert_eq!(
            line["topics"],
            serde_json::json!(["webhooks.a", "webhooks.\"b\""])
        );
        assert_eq!(line["wait"], "250ms");
        assert!(line.get("fields").is_none());
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn lists_read_as_lists_in_text() {
        assert_eq!(List(&["a", "b"]).to_string(), "[a, b]");
        assert_eq!(List::<&str>(&[]).to_string(), "[]");
    }
}
