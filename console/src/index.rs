//! The console's rolling index: one SQLite file of what the topics carried, so that pages
//! answer from a local query instead of a scan of Kafka.
//!
//! Kafka stays the source of truth. The index keeps, per topic partition, the next offset
//! to read (written in the same transaction as the rows), so a console that restarts goes
//! on where it stopped, and one whose file is gone reads the topics again from their
//! start. Retention drops rows older than `max_age` and the oldest past `max_events` per
//! table; the counts behind the Hooks page are kept per minute so that page costs the
//! same over a thousand events or a million.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use serde::Serialize;
use serde_json::{json, Value as Json};

/// Where a row was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// An accepted request (an event on a hook or poller topic) or a refused one (a record
/// of the rejections topic).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub time_ms: i64,
    pub hook: String,
    pub accepted: bool,
    pub status: u16,
    pub reason: Option<String>,
    pub event_id: String,
    pub delivery_id: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    /// Bytes of the record as published.
    pub size: usize,
    /// Whether `event` was cut at the body limit.
    pub truncated: bool,
    /// The event as JSON (CloudEvents' JSON format), or its excerpt when truncated.
    pub event: String,
    pub origin: Origin,
}

/// One flow run's execution record.
#[derive(Debug, Clone)]
pub struct ExecutionRow {
    pub id: String,
    pub flow: String,
    pub state: String,
    pub event_id: String,
    pub time_ms: i64,
    pub duration_ms: i64,
    pub redrive_of: Option<String>,
    pub record: String,
    pub origin: Origin,
}

/// A dead letter: the event a flow failed on, with why.
#[derive(Debug, Clone)]
pub struct DeadLetterRow {
    pub time_ms: i64,
    pub flow: Option<String>,
    pub execution: Option<String>,
    pub event_id: String,
    pub reason: Option<String>,
    /// The topic the event came from.
    pub source_topic: Option<String>,
    pub truncated: bool,
    pub event: String,
    /// The failed run's log, when the dead letter carries it.
    pub run: Option<String>,
    pub origin: Origin,
}

/// One row to write.
#[derive(Debug, Clone)]
pub enum Entry {
    Delivery(Delivery),
    Execution(ExecutionRow),
    DeadLetter(DeadLetterRow),
    /// A poller's state from the control topic; `None` for a tombstone.
    Poller {
        id: String,
        state: Option<Json>,
        time_ms: i64,
    },
}

/// How long and how much the index keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age: Duration,
    /// Rows per table at most (deliveries, executions, dead letters).
    pub max_events: u64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deliveries (
  seq INTEGER PRIMARY KEY,
  time INTEGER NOT NULL,
  hook TEXT NOT NULL,
  accepted INTEGER NOT NULL,
  status INTEGER NOT NULL,
  reason TEXT,
  event_id TEXT NOT NULL,
  delivery_id TEXT,
  method TEXT,
  path TEXT,
  size INTEGER NOT NULL,
  truncated INTEGER NOT NULL,
  event TEXT NOT NULL,
  topic TEXT NOT NULL,
  partition INTEGER NOT NULL,
  offset INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_time ON deliveries(time);
CREATE INDEX IF NOT EXISTS deliveries_hook ON deliveries(hook, time);
CREATE INDEX IF NOT EXISTS deliveries_accepted ON deliveries(accepted, time);
CREATE INDEX IF NOT EXISTS deliveries_reason ON deliveries(reason, time) WHERE reason IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries(event_id);
CREATE INDEX IF NOT EXISTS deliveries_delivery ON deliveries(delivery_id) WHERE delivery_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS executions (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL,
  flow TEXT NOT NULL,
  state TEXT NOT NULL,
  event_id TEXT NOT NULL,
  time INTEGER NOT NULL,
  duration_ms INTEGER NOT NULL,
  redrive_of TEXT,
  record TEXT NOT NULL,
  topic TEXT NOT NULL,
  partition INTEGER NOT NULL,
  offset INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_time ON executions(time);
CREATE INDEX IF NOT EXISTS executions_flow ON executions(flow, time);
CREATE INDEX IF NOT EXISTS executions_state ON executions(state, time);
CREATE INDEX IF NOT EXISTS executions_id ON executions(id);
CREATE INDEX IF NOT EXISTS executions_event ON executions(event_id);
CREATE TABLE IF NOT EXISTS dead_letters (
  seq INTEGER PRIMARY KEY,
  time INTEGER NOT NULL,
  flow TEXT,
  execution TEXT,
  event_id TEXT NOT NULL,
  reason TEXT,
  source_topic TEXT,
  truncated INTEGER NOT NULL,
  event TEXT NOT NULL,
  run TEXT,
  redriven INTEGER,
  topic TEXT NOT NULL,
  partition INTEGER NOT NULL,
  offset INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_time ON dead_letters(time);
CREATE INDEX IF NOT EXISTS dead_letters_flow ON dead_letters(flow, time);
CREATE TABLE IF NOT EXISTS pollers (
  id TEXT PRIMARY KEY,
  state TEXT,
  time INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counts (
  minute INTEGER NOT NULL,
  hook TEXT NOT NULL,
  accepted INTEGER NOT NULL,
  reason TEXT NOT NULL,
  n INTEGER NOT NULL,
  PRIMARY KEY (minute, hook, accepted, reason)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS offsets (
  topic TEXT NOT NULL,
  partition INTEGER NOT NULL,
  next INTEGER NOT NULL,
  PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
";

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "journal_size_limit", 16 * 1024 * 1024)?;
    Ok(conn)
}

/// The writer: one per index file.
pub struct Index {
    conn: Connection,
}

impl Index {
    /// Opens the index at `path`, creating it (and its tables) when missing.
    pub fn open(path: &Path) -> anyhow::Result<Index> {
        let conn = connect(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot open the console index `{}`: {e} (fix: point `index` at a writable file)",
                path.display()
            )
        })?;
        // Pages freed by retention go back to the file system, so the file follows what
        // is kept (effective on a new file only).
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Index { conn })
    }

    /// Where to go on reading each topic partition: the offset after the last one indexed.
    pub fn offsets(&self) -> anyhow::Result<HashMap<(String, i32), i64>> {
        let mut stmt = self
            .conn
            .prepare("SELECT topic, partition, next FROM offsets")?;
        let rows = stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Writes `entries` and the offsets they advance to, in one transaction.
    pub fn write(
        &mut self,
        entries: &[Entry],
        offsets: &[(String, i32, i64)],
    ) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut delivery = tx.prepare_cached(
                "INSERT INTO deliveries (time, hook, accepted, status, reason, event_id, delivery_id, method, path, size, truncated, event, topic, partition, offset)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            )?;
            let mut count = tx.prepare_cached(
                "INSERT INTO counts (minute, hook, accepted, reason, n) VALUES (?1, ?2, ?3, ?4, 1)
                 ON CONFLICT (minute, hook, accepted, reason) DO UPDATE SET n = n + 1",
            )?;
            let mut execution = tx.prepare_cached(
                "INSERT INTO executions (id, flow, state, event_id, time, duration_ms, redrive_of, record, topic, partition, offset)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            let mut dead = tx.prepare_cached(
                "INSERT INTO dead_letters (time, flow, execution, event_id, reason, source_topic, truncated, event, run, topic, partition, offset)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            let mut poller = tx.prepare_cached(
                "INSERT INTO pollers (id, state, time) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state, time = excluded.time",
            )?;
            for entry in entries {
                match entry {
                    Entry::Delivery(d) => {
                        delivery.execute(params![
                            d.time_ms,
                            d.hook,
                            d.accepted,
                            d.status,
                            d.reason,
                            d.event_id,
                            d.delivery_id,
                            d.method,
                            d.path,
                            d.size as i64,
                            d.truncated,
                            d.event,
                            d.origin.topic,
                            d.origin.partition,
                            d.origin.offset,
                        ])?;
                        count.execute(params![
                            d.time_ms.div_euclid(60_000),
                            d.hook,
                            d.accepted,
                            d.reason.as_deref().unwrap_or("")
                        ])?;
                    }
                    Entry::Execution(e) => {
                        execution.execute(params![
                            e.id,
                            e.flow,
                            e.state,
                            e.event_id,
                            e.time_ms,
                            e.duration_ms,
                            e.redrive_of,
                            e.record,
                            e.origin.topic,
                            e.origin.partition,
                            e.origin.offset,
                        ])?;
                    }
                    Entry::DeadLetter(d) => {
                        dead.execute(params![
                            d.time_ms,
                            d.flow,
                            d.execution,
                            d.event_id,
                            d.reason,
                            d.source_topic,
                            d.truncated,
                            d.event,
                            d.run,
                            d.origin.topic,
                            d.origin.partition,
                            d.origin.offset,
                        ])?;
                    }
                    Entry::Poller { id, state, time_ms } => {
                        poller.execute(params![
                            id,
                            state.as_ref().map(Json::to_string),
                            time_ms
                        ])?;
                    }
                }
            }
            let mut offset = tx.prepare_cached(
                "INSERT INTO offsets (topic, partition, next) VALUES (?1, ?2, ?3)
                 ON CONFLICT (topic, partition) DO UPDATE SET next = excluded.next",
            )?;
            for (topic, partition, next) in offsets {
                offset.execute(params![topic, partition, next])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Drops what retention no longer keeps, as of `now_ms`; returns the rows dropped.
    pub fn retain(&mut self, retention: Retention, now_ms: i64) -> anyhow::Result<u64> {
        let oldest = now_ms.saturating_sub(retention.max_age.as_millis() as i64);
        let keep = retention.max_events.max(1) as i64;
        let tx = self.conn.transaction()?;
        let mut dropped = 0;
        for table in ["deliveries", "executions", "dead_letters"] {
            dropped += tx.execute(&format!("DELETE FROM {table} WHERE time < ?1"), [oldest])?;
            dropped += tx.execute(
                &format!(
                    "DELETE FROM {table} WHERE seq <= (SELECT seq FROM {table} ORDER BY seq DESC LIMIT 1 OFFSET ?1)"
                ),
                [keep],
            )?;
        }
        tx.execute(
            "DELETE FROM counts WHERE minute < ?1",
            [oldest.div_euclid(60_000)],
        )?;
        tx.commit()?;
        if dropped > 0 {
            self.conn.execute_batch("PRAGMA incremental_vacuum;")?;
        }
        Ok(dropped as u64)
    }

    /// Marks a dead letter as redriven at `now_ms`.
    pub fn mark_redriven(path: &Path, seq: i64, now_ms: i64) -> anyhow::Result<()> {
        let conn = connect(path)?;
        conn.execute(
            "UPDATE dead_letters SET redriven = ?1 WHERE seq = ?2",
            params![now_ms, seq],
        )?;
        Ok(())
    }
}

/// Filters of the Deliveries page and `/api/deliveries`.
#[derive(Debug, Clone, Default, serde::Deserialize, Serialize)]
#[serde(default)]
pub struct DeliveryFilter {
    pub hook: Option<String>,
    /// `accepted` or `rejected`.
    pub kind: Option<String>,
    pub status: Option<u16>,
    pub reason: Option<String>,
    pub event: Option<String>,
    pub delivery: Option<String>,
    /// RFC 3339 times or durations back from now (`1h`).
    pub since: Option<String>,
    pub until: Option<String>,
    /// Rows older than this `seq` (the next page).
    pub before: Option<i64>,
}

/// Filters of the Executions page.
#[derive(Debug, Clone, Default, serde::Deserialize, Serialize)]
#[serde(default)]
pub struct ExecutionFilter {
    pub flow: Option<String>,
    pub state: Option<String>,
    pub event: Option<String>,
    pub before: Option<i64>,
}

/// Rows a list answers at most.
pub const PAGE: i64 = 100;

/// A time filter as milliseconds: an RFC 3339 time or a duration back from `now_ms`.
pub fn time_filter(text: &str, now_ms: i64) -> Result<i64, String> {
    let text = text.trim();
    if let Some(t) = hookgate_common::time::parse_rfc3339(text) {
        return Ok(millis(t));
    }
    hookgate_common::time::parse_duration(text)
        .map(|d| now_ms - d.as_millis() as i64)
        .map_err(|_| format!("`{text}` is neither an RFC 3339 time nor a duration like 1h"))
}

/// Milliseconds since the Unix epoch.
pub fn millis(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// An RFC 3339 time (milliseconds, UTC) of `ms`.
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// The readers, shared by the web handlers: a few connections to the same file.
pub struct Reader {
    path: PathBuf,
    pool: Mutex<Vec<Connection>>,
}

impl Reader {
    pub fn new(path: &Path) -> Reader {
        Reader {
            path: path.to_path_buf(),
            pool: Mutex::new(Vec::new()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a pooled connection.
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> anyhow::Result<T> {
        let conn = self.pool.lock().expect("pool lock").pop();
        let conn = match conn {
            Some(c) => c,
            None => connect(&self.path)?,
        };
        let out = f(&conn);
        let mut pool = self.pool.lock().expect("pool lock");
        if pool.len() < 4 {
            pool.push(conn);
        }
        Ok(out?)
    }

    /// Accepted and rejected counts per hook (and reason) since `since_ms`.
    pub fn hook_counts(&self, since_ms: i64) -> anyhow::Result<Vec<(String, bool, String, i64)>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT hook, accepted, reason, sum(n) FROM counts WHERE minute >= ?1
                 GROUP BY hook, accepted, reason ORDER BY hook, accepted DESC, reason",
            )?;
            let rows = stmt.query_map([since_ms.div_euclid(60_000)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
            rows.collect()
        })
    }

    /// Deliveries matching `f`, newest first.
    pub fn deliveries(&self, f: &DeliveryFilter, now_ms: i64) -> anyhow::Result<Vec<Json>> {
        let mut clauses = Vec::new();
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut arg = |clause: &str, v: rusqlite::types::Value| {
            args.push(v);
            clauses.push(clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(h) = non_empty(&f.hook) {
            arg("hook = ?", h.into());
        }
        match non_empty(&f.kind).as_deref() {
            Some("accepted") => arg("accepted = ?", 1.into()),
            Some("rejected") => arg("accepted = ?", 0.into()),
            Some(other) => anyhow::bail!("kind `{other}`: use accepted or rejected"),
            None => {}
        }
        if let Some(s) = f.status {
            arg("status = ?", (s as i64).into());
        }
        if let Some(r) = non_empty(&f.reason) {
            arg("reason = ?", r.into());
        }
        if let Some(e) = non_empty(&f.event) {
            arg("event_id = ?", e.into());
        }
        if let Some(d) = non_empty(&f.delivery) {
            arg("delivery_id = ?", d.into());
        }
        if let Some(s) = non_empty(&f.since) {
            let ms = time_filter(&s, now_ms).map_err(|e| anyhow::anyhow!("since: {e}"))?;
            arg("time >= ?", ms.into());
        }
        if let Some(u) = non_empty(&f.until) {
            let ms = time_filter(&u, now_ms).map_err(|e| anyhow::anyhow!("until: {e}"))?;
            arg("time <= ?", ms.into());
        }
        if let Some(b) = f.before {
            arg(
                "(time, seq) < ((SELECT time FROM deliveries WHERE seq = ?), ?)",
                b.into(),
            );
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let sql = format!(
            "SELECT seq, time, hook, accepted, status, reason, event_id, delivery_id, method, path, size
             FROM deliveries {filter} ORDER BY time DESC, seq DESC LIMIT {PAGE}"
        );
        self.with(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(args), delivery_summary)?;
            rows.collect()
        })
    }

    /// One delivery with its event.
    pub fn delivery(&self, seq: i64) -> anyhow::Result<Option<Json>> {
        self.with(|c| {
            c.query_row(
                "SELECT seq, time, hook, accepted, status, reason, event_id, delivery_id, method, path, size, truncated, event, topic, partition, offset
                 FROM deliveries WHERE seq = ?1",
                [seq],
                |r| {
                    let mut out = delivery_summary(r)?;
                    out["truncated"] = r.get::<_, bool>(11)?.into();
                    out["event"] = stored_json(r.get(12)?, r.get(11)?);
                    out["origin"] = origin(r, 13)?;
                    Ok(out)
                },
            )
            .optional()
        })
    }

    /// Executions matching `f`, newest first.
    pub fn executions(&self, f: &ExecutionFilter) -> anyhow::Result<Vec<Json>> {
        let mut clauses = Vec::new();
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        for (clause, value) in [
            ("flow = ?", non_empty(&f.flow)),
            (
                "state = ?",
                non_empty(&f.state).map(|s| s.to_ascii_uppercase()),
            ),
            ("event_id = ?", non_empty(&f.event)),
        ] {
            if let Some(v) = value {
                args.push(v.into());
                clauses.push(clause.replace('?', &format!("?{}", args.len())));
            }
        }
        if let Some(b) = f.before {
            args.push(b.into());
            let n = args.len();
            clauses.push(format!(
                "(time, seq) < ((SELECT time FROM executions WHERE seq = ?{n}), ?{n})"
            ));
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let sql = format!(
            "SELECT seq, id, flow, state, event_id, time, duration_ms, redrive_of
             FROM executions {filter} ORDER BY time DESC, seq DESC LIMIT {PAGE}"
        );
        self.with(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(args), execution_summary)?;
            rows.collect()
        })
    }

    /// The latest record of execution `id`, and the runs that repeat it.
    pub fn execution(&self, id: &str) -> anyhow::Result<Option<Json>> {
        self.with(|c| {
            let found = c
                .query_row(
                    "SELECT seq, id, flow, state, event_id, time, duration_ms, redrive_of, record, topic, partition, offset
                     FROM executions WHERE id = ?1 ORDER BY seq DESC LIMIT 1",
                    [id],
                    |r| {
                        let mut out = execution_summary(r)?;
                        out["record"] = stored_json(r.get(8)?, false);
                        out["origin"] = origin(r, 9)?;
                        Ok(out)
                    },
                )
                .optional()?;
            let Some(mut out) = found else {
                return Ok(None);
            };
            let mut stmt = c.prepare_cached(
                "SELECT seq, id, flow, state, event_id, time, duration_ms, redrive_of
                 FROM executions WHERE redrive_of = ?1 ORDER BY seq DESC LIMIT 20",
            )?;
            let repeats: Vec<Json> = stmt
                .query_map([id], execution_summary)?
                .collect::<Result<_, _>>()?;
            out["redriven_by"] = repeats.into();
            Ok(Some(out))
        })
    }

    /// Dead letters, newest first.
    pub fn dead_letters(
        &self,
        flow: Option<&str>,
        before: Option<i64>,
    ) -> anyhow::Result<Vec<Json>> {
        let sql = format!(
            "SELECT seq, time, flow, execution, event_id, reason, source_topic, redriven
             FROM dead_letters WHERE (?1 IS NULL OR flow = ?1)
               AND (?2 IS NULL OR (time, seq) < ((SELECT time FROM dead_letters WHERE seq = ?2), ?2))
             ORDER BY time DESC, seq DESC LIMIT {PAGE}"
        );
        self.with(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![flow, before], dead_letter_summary)?;
            rows.collect()
        })
    }

    /// One dead letter with its event and failed run.
    pub fn dead_letter(&self, seq: i64) -> anyhow::Result<Option<Json>> {
        self.with(|c| {
            c.query_row(
                "SELECT seq, time, flow, execution, event_id, reason, source_topic, redriven, truncated, event, run, topic, partition, offset
                 FROM dead_letters WHERE seq = ?1",
                [seq],
                |r| {
                    let mut out = dead_letter_summary(r)?;
                    out["truncated"] = r.get::<_, bool>(8)?.into();
                    out["event"] = stored_json(r.get(9)?, r.get(8)?);
                    out["run"] = r
                        .get::<_, Option<String>>(10)?
                        .map(|s| stored_json(s, false))
                        .unwrap_or(Json::Null);
                    out["origin"] = origin(r, 11)?;
                    Ok(out)
                },
            )
            .optional()
        })
    }

    /// Every poller's last known state.
    pub fn pollers(&self) -> anyhow::Result<Vec<Json>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT id, state, time FROM pollers ORDER BY id")?;
            let rows = stmt.query_map([], |r| {
                let state: Option<String> = r.get(1)?;
                let state: Json = state
                    .and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or(Json::Null);
                let at = |key: &str| state.get(key).and_then(Json::as_i64).map(rfc3339);
                Ok(json!({
                    "id": r.get::<_, String>(0)?,
                    "active": state.get("active").and_then(Json::as_bool),
                    "polled_at": at("polled_at"),
                    "fired_at": at("fired_at"),
                    "updated": rfc3339(r.get(2)?),
                }))
            })?;
            rows.collect()
        })
    }

    /// Rows per table, and the file's size.
    pub fn status(&self) -> anyhow::Result<Json> {
        let size = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        self.with(|c| {
            let count = |table: &str| -> rusqlite::Result<i64> {
                c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            };
            Ok(json!({
                "deliveries": count("deliveries")?,
                "executions": count("executions")?,
                "dead_letters": count("dead_letters")?,
                "pollers": count("pollers")?,
                "file_bytes": size,
            }))
        })
    }
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A stored JSON text as a value; a truncated one (or one that does not parse) as text.
fn stored_json(text: String, truncated: bool) -> Json {
    if truncated {
        return Json::String(text);
    }
    serde_json::from_str(&text).unwrap_or(Json::String(text))
}

fn origin(r: &Row<'_>, first: usize) -> rusqlite::Result<Json> {
    Ok(json!({
        "topic": r.get::<_, String>(first)?,
        "partition": r.get::<_, i32>(first + 1)?,
        "offset": r.get::<_, i64>(first + 2)?,
    }))
}

fn delivery_summary(r: &Row<'_>) -> rusqlite::Result<Json> {
    Ok(json!({
        "seq": r.get::<_, i64>(0)?,
        "time": rfc3339(r.get(1)?),
        "hook": r.get::<_, String>(2)?,
        "accepted": r.get::<_, bool>(3)?,
        "status": r.get::<_, i64>(4)?,
        "reason": r.get::<_, Option<String>>(5)?,
        "event_id": r.get::<_, String>(6)?,
        "delivery_id": r.get::<_, Option<String>>(7)?,
        "method": r.get::<_, Option<String>>(8)?,
        "path": r.get::<_, Option<String>>(9)?,
        "size": r.get::<_, i64>(10)?,
    }))
}

fn execution_summary(r: &Row<'_>) -> rusqlite::Result<Json> {
    Ok(json!({
        "seq": r.get::<_, i64>(0)?,
        "id": r.get::<_, String>(1)?,
        "flow": r.get::<_, String>(2)?,
        "state": r.get::<_, String>(3)?,
        "event_id": r.get::<_, String>(4)?,
        "time": rfc3339(r.get(5)?),
        "duration_ms": r.get::<_, i64>(6)?,
        "redrive_of": r.get::<_, Option<String>>(7)?,
    }))
}

fn dead_letter_summary(r: &Row<'_>) -> rusqlite::Result<Json> {
    Ok(json!({
        "seq": r.get::<_, i64>(0)?,
        "time": rfc3339(r.get(1)?),
        "flow": r.get::<_, Option<String>>(2)?,
        "execution": r.get::<_, Option<String>>(3)?,
        "event_id": r.get::<_, String>(4)?,
        "reason": r.get::<_, Option<String>>(5)?,
        "source_topic": r.get::<_, Option<String>>(6)?,
        "redriven": r.get::<_, Option<i64>>(7)?.map(rfc3339),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(i: i64, time_ms: i64) -> Entry {
        Entry::Delivery(Delivery {
            time_ms,
            hook: if i % 2 == 0 { "orders" } else { "github" }.into(),
            accepted: i % 3 != 0,
            status: if i % 3 != 0 { 202 } else { 401 },
            reason: (i % 3 == 0).then(|| "signature mismatch".to_string()),
            event_id: format!("ev-{i}"),
            delivery_id: Some(format!("d-{i}")),
            method: Some("POST".into()),
            path: Some("/hooks/orders".into()),
            size: 100,
            truncated: false,
            event: json!({"id": format!("ev-{i}")}).to_string(),
            origin: Origin {
                topic: "t".into(),
                partition: 0,
                offset: i,
            },
        })
    }

    #[test]
    fn rows_are_filtered_counted_and_kept_within_retention() {
        let dir = std::env::temp_dir().join(format!("console-index-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("index.db");
        let mut index = Index::open(&path).unwrap();
        let now = 1_800_000_000_000i64;
        let entries: Vec<Entry> = (0..300).map(|i| delivery(i, now - 1000 + i)).collect();
        index.write(&entries, &[("t".into(), 0, 300)]).unwrap();
        assert_eq!(index.offsets().unwrap()[&("t".to_string(), 0)], 300);

        let reader = Reader::new(&path);
        let rejected = reader
            .deliveries(
                &DeliveryFilter {
                    kind: Some("rejected".into()),
                    hook: Some("orders".into()),
                    ..Default::default()
                },
                now,
            )
            .unwrap();
        // i in 0..300 with i % 2 == 0 and i % 3 == 0: 50 rows, newest first.
        assert_eq!(rejected.len(), 50);
        assert_eq!(rejected[0]["event_id"], "ev-294");
        assert_eq!(rejected[0]["reason"], "signature mismatch");
        let by_id = reader
            .deliveries(
                &DeliveryFilter {
                    delivery: Some("d-7".into()),
                    ..Default::default()
                },
                now,
            )
            .unwrap();
        assert_eq!(by_id.len(), 1);

        let counts = reader.hook_counts(now - 3_600_000).unwrap();
        let total: i64 = counts.iter().map(|c| c.3).sum();
        assert_eq!(total, 300);

        let dropped = index
            .retain(
                Retention {
                    max_age: Duration::from_secs(3600),
                    max_events: 120,
                },
                now,
            )
            .unwrap();
        assert_eq!(dropped, 180);
        assert_eq!(reader.status().unwrap()["deliveries"], 120);
        // The newest are kept.
        let kept = reader.deliveries(&DeliveryFilter::default(), now).unwrap();
        assert_eq!(kept[0]["event_id"], "ev-299");
        // Age: everything older than an hour goes.
        index
            .retain(
                Retention {
                    max_age: Duration::from_secs(1),
                    max_events: 1000,
                },
                now + 10_000,
            )
            .unwrap();
        assert_eq!(reader.status().unwrap()["deliveries"], 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn time_filters_read_times_and_durations() {
        let now = 1_800_000_000_000;
        assert_eq!(time_filter("1h", now), Ok(now - 3_600_000));
        assert_eq!(time_filter("1970-01-01T00:00:01Z", now), Ok(1000));
        assert_eq!(time_filter("1970-01-01T02:00:01+02:00", now), Ok(1000));
        assert!(time_filter("yesterday", now).is_err());
    }
}
