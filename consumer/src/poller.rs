//! Pollers: pull triggers for systems that do not push webhooks (Kestra's HTTP trigger).
//! A poller requests a URL on an interval (or on a cron [`schedule`]), evaluates a condition over the response in the
//! flow expression language, and when it holds publishes an event to its topic, which
//! triggers flows as a webhook's event does.
//!
//! ```toml
//! [[pollers]]
//! id = "stock-level"
//! uri = "https://erp.example/api/stock/M8"
//! headers = { authorization = "Bearer {{ secret('ERP_TOKEN') }}" }
//! interval = "2m"
//! condition = "{{ json(response.body).stock_value <= 10 }}"
//! mode = "edge"          # fire when the condition becomes true; "every" fires each time
//! cooldown = "1h"        # and at most once an hour
//! topic = "hookgate.polls"
//! ```
//!
//! - **Condition context**: `response.status`, `response.headers` (name → [values]) and
//!   `response.body` (text; `json(response.body)` parses it). No condition: always true.
//! - **Failures** (no response, a 408, 429 or 5xx, a template or condition error) back off:
//!   the next poll waits `interval × 2^failures`, at most `max_backoff`.
//! - **The event**: `source` `/pollers/{id}`, `dataschema` `urn:hookgate:poll:v1`, `data`
//!   `{uri, status, headers, body, bodyencoding}`; secrets masked in the URI, the headers
//!   and the body, credential headers redacted.
//! - **Once per cluster**: see [`cluster`].
//! - **Scheduled flows** run here too: a flow with `trigger.schedule` becomes a poller
//!   without a request ([`Poller::for_flow`]) that fires at every tick, its event
//!   `urn:hookgate:schedule:v1` on `kafka.schedules_topic` (see [`schedule`]).
//!
//! Layout: this file holds the configuration and one poll; [`state`] decides whether a
//! poll fires (modes, cooldown); [`schedule`] when a scheduled one polls; [`cluster`]
//! runs each poller on exactly one replica.

pub mod cluster;
pub mod schedule;
pub mod state;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hookgate_common::config::{ConfigDuration, Problems};
use hookgate_event::{Attributes, BodyEncoding, Fields, PollResponse};
use serde::Deserialize;
use serde_json::{json, Value as Json};

use crate::outbound::{Client, Response};
use crate::request::{RequestConfig, RequestTemplate};
use hookgate_expression::{Condition, Context, Criterion, Engine};

pub use cluster::Cluster;
pub use state::{Mode, PollState};

/// The `type` of a poller's events unless it names one.
pub const DEFAULT_TYPE: &str = "hookgate.poll";
/// The `authscheme` attribute of a poller's events.
pub const AUTH_SCHEME: &str = "poll";

/// A `[[pollers]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "PollerTable")]
pub struct PollerConfig {
    /// Letters, digits, `-`, `_` and `.`; unique. Events' `source` is `/pollers/{id}`.
    pub id: String,
    pub description: Option<String>,
    /// Time between polls (with a `schedule`: the first wait after a failed poll).
    pub interval: ConfigDuration,
    /// A cron schedule instead of an interval (see [`schedule`]).
    pub schedule: Option<schedule::ScheduleConfig>,
    /// An expression over `response`, Kestra-style: `"{{ response.status == 200 }}"`.
    pub condition: Option<String>,
    /// StackStorm-style criteria over `response`, all of which must hold.
    pub criteria: BTreeMap<String, Criterion>,
    /// `every` (default): fire on each poll where the condition holds; `edge`: only
    /// when it becomes true.
    pub mode: Mode,
    /// The shortest time between two firings.
    pub cooldown: Option<ConfigDuration>,
    /// Where the events go.
    pub topic: String,
    /// The events' `type`; default `hookgate.poll`.
    pub event_type: Option<String>,
    /// The longest wait after failures; default 10 minutes, never below the interval.
    pub max_backoff: Option<ConfigDuration>,
    /// The request: `uri`, `method`, `headers`, `query`, `body`, `form`, `auth`,
    /// `timeout`.
    pub request: RequestConfig,
}

/// The table as read: the poller's own keys, and the rest for [`RequestConfig`].
#[derive(Deserialize)]
struct PollerTable {
    id: String,
    description: Option<String>,
    interval: Option<ConfigDuration>,
    schedule: Option<schedule::ScheduleConfig>,
    condition: Option<String>,
    #[serde(default)]
    criteria: BTreeMap<String, Criterion>,
    #[serde(default)]
    mode: Mode,
    cooldown: Option<ConfigDuration>,
    topic: String,
    #[serde(rename = "type")]
    event_type: Option<String>,
    max_backoff: Option<ConfigDuration>,
    #[serde(flatten)]
    rest: serde_json::Map<String, Json>,
}

impl TryFrom<PollerTable> for PollerConfig {
    type Error = String;

    fn try_from(t: PollerTable) -> Result<PollerConfig, String> {
        Ok(PollerConfig {
            request: RequestConfig::from_rest(
                t.rest,
                &[
                    "id",
                    "description",
                    "interval",
                    "schedule",
                    "condition",
                    "criteria",
                    "mode",
                    "cooldown",
                    "topic",
                    "type",
                    "max_backoff",
                ],
            )?,
            id: t.id,
            description: t.description,
            interval: match (t.interval, &t.schedule) {
                (Some(_), Some(_)) => return Err("give `interval` or `schedule`, not both".into()),
                (None, None) => {
                    return Err(
                        "give `interval = \"5m\"` or a `schedule = { cron = \"…\" }`".into(),
                    )
                }
                (Some(i), None) => i,
                // Failed polls of a scheduled poller are retried after a minute (doubling).
                (None, Some(_)) => ConfigDuration::from_secs(60),
            },
            schedule: t.schedule,
            condition: t.condition,
            criteria: t.criteria,
            mode: t.mode,
            cooldown: t.cooldown,
            topic: t.topic,
            event_type: t.event_type,
            max_backoff: t.max_backoff,
        })
    }
}

/// A built poller.
#[derive(Debug)]
pub struct Poller {
    pub id: String,
    pub description: Option<String>,
    pub interval: Duration,
    /// Polls at these ticks instead of every `interval`.
    pub schedule: Option<schedule::Schedule>,
    pub mode: Mode,
    pub cooldown: Option<Duration>,
    pub topic: String,
    pub event_type: String,
    max_backoff: Duration,
    what: What,
}

/// What a poller does at its ticks.
#[derive(Debug)]
enum What {
    /// Sends the request and fires when the conditions hold.
    Request {
        request: Box<RequestTemplate>,
        conditions: Vec<Condition>,
    },
    /// Fires a scheduled flow's tick: no request, every tick fires.
    Tick,
}

impl PollerConfig {
    /// Validates the poller and compiles its templates; problems go to `p` under `at`
    /// (`pollers[0]`).
    pub fn build(&self, at: &str, engine: &Engine, p: &mut Problems) -> Option<Poller> {
        let before = p.len();
        if !crate::flow::valid_name(&self.id) {
            p.push(
                format!("{at}.id"),
                format!("`{}` is not a valid poller id", self.id),
                "use letters, digits, '-', '_' and '.'",
            );
        }
        let interval = self.interval.get();
        if interval < Duration::from_millis(10) {
            p.push(
                format!("{at}.interval"),
                "must be at least 10ms",
                "poll less often, e.g. \"1m\"",
            );
        }
        if self.topic.trim().is_empty() {
            p.push(
                format!("{at}.topic"),
                "is empty",
                "name the topic the events go to",
            );
        }
        let schedule = self.schedule.as_ref().and_then(|s| match s.build() {
            Ok(s) => Some(s),
            Err((key, message)) => {
                p.push(format!("{at}.schedule.{key}"), message, schedule::fix(key));
                None
            }
        });
        let request = self.request.build(at, engine, p);
        let conditions =
            Condition::build_all(engine, at, self.condition.as_deref(), &self.criteria, p);
        if p.len() > before {
            return None;
        }
        Some(Poller {
            id: self.id.clone(),
            description: self.description.clone(),
            interval,
            schedule,
            mode: self.mode,
            cooldown: self.cooldown.map(|c| c.get()),
            topic: self.topic.clone(),
            event_type: self
                .event_type
                .clone()
                .unwrap_or_else(|| DEFAULT_TYPE.to_string()),
            max_backoff: self
                .max_backoff
                .map_or(Duration::from_secs(600), |b| b.get())
                .max(interval),
            what: What::Request {
                request: Box::new(request?),
                conditions,
            },
        })
    }
}

/// What one poll got: the response (none for a schedule's tick), and whether the
/// condition held.
pub struct Polled {
    pub response: Option<Response>,
    pub holds: bool,
}

impl Poller {
    /// The schedule of a flow with `trigger.schedule`, run like a poller (once per
    /// cluster, its last tick stored): each tick is an event on `topic`, `hook` and
    /// source naming the flow (`namespace.id`), which starts that flow only.
    pub fn for_flow(flow: &crate::flow::Flow, topic: &str) -> Option<Poller> {
        let schedule = flow.schedule.clone()?;
        Some(Poller {
            id: flow.qualified_id(),
            description: Some(format!("the schedule of flow {}", flow.qualified_id())),
            // A tick whose event could not be published is tried again after a minute.
            interval: Duration::from_secs(60),
            schedule: Some(schedule),
            mode: Mode::Every,
            cooldown: None,
            topic: topic.to_string(),
            event_type: hookgate_event::SCHEDULE_TYPE.to_string(),
            max_backoff: Duration::from_secs(600),
            what: What::Tick,
        })
    }

    /// Whether this is a scheduled flow's tick rather than a poller of its own.
    pub fn is_schedule(&self) -> bool {
        matches!(self.what, What::Tick)
    }

    /// `/pollers/{id}`, or `/schedules/{flow}` for a scheduled flow.
    pub fn source(&self) -> String {
        match self.what {
            What::Request { .. } => format!("/pollers/{}", self.id),
            What::Tick => format!("/schedules/{}", self.id),
        }
    }

    /// The wait before the next poll after `failures` failures in a row (0: the interval).
    pub fn delay_after(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.min(20)).unwrap_or(u32::MAX);
        self.interval
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff.max(self.interval))
    }

    /// The wait before the first poll on a replica that takes the poller over.
    pub fn first_wait(&self, state: &PollState, now_ms: u64) -> Duration {
        match &self.schedule {
            Some(s) => s.first_wait(state.polled_at, now_ms),
            None => state.first_wait(self.interval, now_ms),
        }
    }

    /// The wait after a poll that went through, started `elapsed` ago.
    pub fn next_wait(&self, elapsed: Duration, now_ms: u64) -> Duration {
        match &self.schedule {
            Some(s) => s.wait(now_ms),
            None => self.interval.saturating_sub(elapsed),
        }
    }

    /// The longest one poll can take: the request's timeout.
    pub fn timeout(&self) -> Duration {
        match &self.what {
            What::Request { request, .. } => request.timeout(),
            What::Tick => Duration::ZERO,
        }
    }

    /// Requests the URL and evaluates the condition. An error is a failed poll, its
    /// message free of secrets.
    pub async fn poll(&self, http: &Client, engine: &Engine) -> Result<Polled, String> {
        let What::Request {
            request,
            conditions,
        } = &self.what
        else {
            return Ok(Polled {
                response: None,
                holds: true,
            });
        };
        let mask = |m: String| engine.mask(&m).into_owned();
        let req = request.render(&Context::builder().build()).map_err(mask)?;
        let response = http.send(req).await.map_err(|e| mask(e.to_string()))?;
        if matches!(response.status, 408 | 429 | 500..=599) {
            return Err(format!("the server answered {}", response.status));
        }
        let ctx = Context::builder()
            .response(json!({
                "status": response.status,
                "headers": response.headers_json(),
                "body": String::from_utf8_lossy(&response.body),
            }))
            .build();
        let now = SystemTime::now();
        let mut holds = true;
        for condition in conditions {
            holds &= condition.eval(&ctx, now).map_err(|e| mask(e.to_string()))?;
        }
        Ok(Polled {
            response: Some(response),
            holds,
        })
    }

    /// The event for what a poll got: its id and its structured-mode record value. The
    /// URI, headers and body have every secret value masked. A schedule's event stands
    /// for the last tick at or before now.
    pub fn event(&self, polled: &Polled, engine: &Engine) -> (String, Vec<u8>) {
        let id = uuid::Uuid::now_v7().hyphenated().to_string();
        let now = SystemTime::now();
        let time = humantime::format_rfc3339_millis(now).to_string();
        let source = self.source();
        let mut attrs = Attributes {
            id: &id,
            source: &source,
            event_type: &self.event_type,
            time: &time,
            dataschema: hookgate_event::POLL_SCHEMA,
            hook: &self.id,
            authscheme: AUTH_SCHEME,
            signed: None,
            deliveryid: None,
            traceparent: None,
            respond: None,
        };
        let (Some(response), What::Request { .. }) = (&polled.response, &self.what) else {
            let schedule = self.schedule.as_ref().expect("a tick has a schedule");
            let now_ms = now
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let tick = schedule.last_tick(now_ms).unwrap_or(now_ms);
            let scheduled = humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + Duration::from_millis(tick),
            )
            .to_string();
            attrs.dataschema = hookgate_event::SCHEDULE_SCHEMA;
            attrs.authscheme = "schedule";
            let mut out = Vec::new();
            hookgate_event::structured::encode_schedule(
                &attrs,
                &hookgate_event::ScheduleTick {
                    scheduled: &scheduled,
                    cron: schedule.pattern(),
                    timezone: schedule.zone(),
                },
                &mut out,
            );
            return (id, out);
        };
        let mut headers = Fields::with_capacity(response.headers.len());
        for (name, value) in &response.headers {
            if hookgate_event::REDACTED_HEADERS.contains(&name.as_str()) {
                headers.push(name.as_str(), hookgate_event::REDACTED);
            } else {
                headers.push(name.as_str(), engine.mask(value).into_owned());
            }
        }
        let uri = engine.mask(&response.url);
        let (body, encoding) = body_json(response, engine);
        let mut out = Vec::new();
        hookgate_event::structured::encode_poll(
            &attrs,
            &PollResponse {
                uri: &uri,
                status: response.status,
                headers: &headers,
            },
            &body,
            encoding,
            &mut out,
        );
        (id, out)
    }
}

/// The body as JSON text and its encoding: embedded when the response says JSON and is,
/// a string when it is UTF-8 text, base64 otherwise; secrets masked.
fn body_json(response: &Response, engine: &Engine) -> (Vec<u8>, BodyEncoding) {
    if response.body.is_empty() {
        return (Vec::new(), BodyEncoding::Empty);
    }
    let says_json = response
        .header("content-type")
        .is_some_and(|ct| ct.contains("json"));
    if says_json {
        if let Ok(mut value) = serde_json::from_slice::<Json>(&response.body) {
            engine.mask_json(&mut value);
            return (
                serde_json::to_vec(&value).expect("JSON values serialize"),
                BodyEncoding::Json,
            );
        }
    }
    let (text, encoding) = match std::str::from_utf8(&response.body) {
        Ok(text) => (engine.mask(text).into_owned(), BodyEncoding::Text),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&response.body),
            BodyEncoding::Base64,
        ),
    };
    (
        serde_json::to_vec(&text).expect("strings serialize"),
        encoding,
    )
}

/// The pollers as a table, for `hookgate-consumer check`.
pub fn table(pollers: &[Poller]) -> String {
    let mut out = String::from("POLLER\tINTERVAL\tMODE\tTOPIC\n");
    for p in pollers {
        let mode = match (p.mode, p.cooldown) {
            (m, Some(c)) => format!(
                "{} (cooldown {})",
                m.as_str(),
                humantime::format_duration(c)
            ),
            (m, None) => m.as_str().to_string(),
        };
        let when = match &p.schedule {
            Some(s) => s.describe(),
            None => humantime::format_duration(p.interval).to_string(),
        };
        let id = match p.what {
            What::Request { .. } => p.id.clone(),
            What::Tick => format!("{} (flow)", p.id),
        };
        out.push_str(&format!("{id}\t{when}\t{mode}\t{}\n", p.topic));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookgate_expression::Secrets;

    fn poller(extra: &str) -> Result<Poller, String> {
        let toml = format!(
            "id = \"stock\"\nuri = \"https://api.example/stock\"\ninterval = \"1s\"\ntopic = \"t\"\n{extra}"
        );
        let config: PollerConfig = toml::from_str(&toml).map_err(|e| e.to_string())?;
        let mut secrets = Secrets::default();
        secrets.insert("TOKEN", "s3cr3t-token");
        let engine = Engine::new(secrets);
        let mut p = Problems::default();
        config
            .build("pollers[0]", &engine, &mut p)
            .ok_or_else(|| p.into_error("test").to_string())
    }

    #[test]
    fn unknown_keys_and_bad_values_are_reported_with_their_path() {
        let err = poller("colour = \"red\"").unwrap_err();
        assert!(err.contains("colour"), "{err}");
        let err = poller("condition = \"{{ response.status ==\"").unwrap_err();
        assert!(err.contains("pollers[0].condition"), "{err}");
        let err = poller("mode = \"sometimes\"").unwrap_err();
        assert!(err.contains("sometimes"), "{err}");
        let err = poller("method = \"FETCH ME\"").unwrap_err();
        assert!(err.contains("pollers[0].method"), "{err}");
    }

    #[test]
    fn failures_back_off_exponentially_up_to_the_cap() {
        let p = poller("max_backoff = \"10s\"").unwrap();
        let delays: Vec<u64> = (0..7).map(|n| p.delay_after(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10, 10]);
        assert_eq!(p.delay_after(u32::MAX), Duration::from_secs(10));
        // A cap below the interval is the interval.
        let p = poller("max_backoff = \"10ms\"").unwrap();
        assert_eq!(p.delay_after(3), Duration::from_secs(1));
    }

    #[test]
    fn the_event_masks_secrets_and_redacts_credential_headers() {
        let p = poller("").unwrap();
        let mut secrets = Secrets::default();
        secrets.insert("TOKEN", "s3cr3t-token");
        let engine = Engine::new(secrets);
        let response = Response {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("set-cookie".into(), "session=abc".into()),
                ("x-echo".into(), "token s3cr3t-token".into()),
            ],
            body: bytes::Bytes::from_static(br#"{"stock": 4, "echo": "s3cr3t-token"}"#),
            url: "https://api.example/stock?key=s3cr3t-token".into(),
        };
        let polled = Polled {
            response: Some(response),
            holds: true,
        };
        let (id, value) = p.event(&polled, &engine);
        let text = String::from_utf8(value.clone()).unwrap();
        assert!(!text.contains("s3cr3t-token"), "{text}");
        assert!(!text.contains("session=abc"), "{text}");
        let v: Json = serde_json::from_slice(&value).unwrap();
        assert_eq!(v["id"], id);
        assert_eq!(v["source"], "/pollers/stock");
        assert_eq!(v["type"], DEFAULT_TYPE);
        assert_eq!(v["dataschema"], "urn:hookgate:poll:v1");
        assert_eq!(v["data"]["status"], 200);
        assert_eq!(v["data"]["body"]["stock"], 4);
        assert_eq!(v["data"]["bodyencoding"], "json");
        assert_eq!(v["data"]["headers"]["set-cookie"][0], "[redacted]");
    }

    #[test]
    fn bodies_are_embedded_as_text_or_base64_when_not_json() {
        let engine = Engine::new(Secrets::default());
        let mut response = Response {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: bytes::Bytes::from_static(b"low stock"),
            url: "https://x/".into(),
        };
        assert_eq!(
            body_json(&response, &engine),
            (b"\"low stock\"".to_vec(), BodyEncoding::Text)
        );
        response.body = bytes::Bytes::from_static(&[0xff, 0x00]);
        assert_eq!(
            body_json(&response, &engine),
            (b"\"/wA=\"".to_vec(), BodyEncoding::Base64)
        );
        response.body = bytes::Bytes::new();
        assert_eq!(body_json(&response, &engine).1, BodyEncoding::Empty);
    }
}
