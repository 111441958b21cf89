//! Flows: what runs when an event arrives. A flow names the hooks (and event types) that
//! trigger it, the conditions that must hold, its variables, and its tasks, run in order,
//! each seeing the outputs of those before it. A flow may instead run on a cron schedule
//! (`trigger = { schedule = { cron = "0 6 * * MON-FRI", timezone = "Europe/Berlin" } }`):
//! each tick is an event (see [`crate::poller::schedule`]), made once per cluster.
//!
//! ```toml
//! [[flows]]
//! id = "stock-alert"
//! namespace = "warehouse"
//! trigger = { hooks = ["inventory"] }
//! condition = "{{ trigger.body.stock_value <= 10 }}"
//! vars = [{ name = "product", value = "{{ trigger.body.product }}" }]
//!
//! [[flows.tasks]]
//! id = "notify"
//! type = "http"
//! method = "POST"
//! uri = "{{ secret('MESSAGING_WEBHOOK_URL') }}"
//! body = { text = "Only {{ trigger.body.stock_value }} left of {{ vars.product }}" }
//! ```

use std::collections::{BTreeMap, BTreeSet};

use hookgate_common::config::{Problems, SecretRef};
use hookgate_event::Event;
use serde::{Deserialize, Serialize};

use crate::task::{Task, TaskConfig};
use hookgate_expression::{Condition, Criterion, Engine, Vars};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// Letters, digits, `-`, `_` and `.`; unique within its namespace.
    pub id: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub description: Option<String>,
    /// Which events start the flow; empty lists match any.
    #[serde(default)]
    pub trigger: TriggerConfig,
    /// An expression that must be true, Kestra-style: `"{{ trigger.body.n <= 10 }}"`.
    pub condition: Option<String>,
    /// StackStorm-style criteria that must all hold:
    /// `{ "trigger.body.action" = { equals = "opened" } }`.
    #[serde(default)]
    pub criteria: BTreeMap<String, Criterion>,
    /// Variables, rendered in order (each sees those before it) into `vars`.
    #[serde(default)]
    pub vars: Vec<VarConfig>,
    pub tasks: Vec<TaskConfig>,
    /// What a synchronous hook's caller is answered when this flow runs for it (see
    /// [`crate::reply`]).
    pub response: Option<crate::reply::ResponseConfig>,
}

fn default_namespace() -> String {
    "default".to_string()
}

/// `trigger`: the events that start a flow.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// Hook ids (the event's `hook`); empty: any hook.
    #[serde(default)]
    pub hooks: Vec<String>,
    /// Poller ids; empty with hooks set: no poller.
    #[serde(default)]
    pub pollers: Vec<String>,
    /// Event types; `prefix.*` matches a prefix; empty: any type.
    #[serde(default)]
    pub types: Vec<String>,
    /// A cron schedule: the flow runs at its ticks, and on nothing else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<crate::poller::schedule::ScheduleConfig>,
}

impl TriggerConfig {
    /// Whether a hook can start flows of both triggers.
    pub fn shares_a_hook_with(&self, other: &TriggerConfig) -> bool {
        if self.schedule.is_some() || other.schedule.is_some() {
            return false;
        }
        let any_hook = |t: &TriggerConfig| t.hooks.is_empty() && t.pollers.is_empty();
        if any_hook(self) {
            return !other.hooks.is_empty() || any_hook(other);
        }
        if any_hook(other) {
            return !self.hooks.is_empty();
        }
        self.hooks.iter().any(|h| other.hooks.contains(h))
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VarConfig {
    pub name: String,
    /// A template, or a table whose string leaves are templates.
    pub value: serde_json::Value,
}

/// A built flow.
#[derive(Debug)]
pub struct Flow {
    pub id: String,
    pub namespace: String,
    trigger: TriggerConfig,
    /// The expression and the criteria, when given: all must hold.
    conditions: Vec<Condition>,
    pub vars: Vars,
    pub tasks: Vec<Task>,
    /// Secret names the flow's templates may use (for `check`).
    pub secrets: BTreeSet<String>,
    /// A hash of the definition: runs of the same revision ran the same flow.
    pub revision: String,
    /// `[flows.response]`: this flow answers its hooks' synchronous callers.
    pub response: Option<crate::reply::Response>,
    /// `trigger.schedule`, parsed.
    pub schedule: Option<crate::poller::schedule::Schedule>,
}

/// Flow ids, namespaces and poller ids: letters, digits, `-`, `_` and `.`, at most 128.
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl FlowConfig {
    /// `namespace.id`.
    pub fn qualified_id(&self) -> String {
        format!("{}.{}", self.namespace, self.id)
    }

    /// Validates the flow and compiles its templates; problems go to `p` under `path`
    /// (`flows[2]`).
    pub fn build(
        &self,
        path: &str,
        engine: &Engine,
        secrets: &BTreeMap<String, SecretRef>,
        p: &mut Problems,
    ) -> Option<Flow> {
        let at = |key: &str| format!("{path}.{key}");
        let before = p.len();
        let name_ok = valid_name;
        if !name_ok(&self.id) {
            p.push(
                at("id"),
                format!("`{}` is not a valid flow id", self.id),
                "use letters, digits, '-', '_' and '.'",
            );
        }
        if !name_ok(&self.namespace) {
            p.push(
                at("namespace"),
                format!("`{}` is not a valid namespace", self.namespace),
                "use letters, digits, '-', '_' and '.'",
            );
        }
        let conditions =
            Condition::build_all(engine, path, self.condition.as_deref(), &self.criteria, p);
        let schedule = self.trigger.schedule.as_ref().and_then(|s| {
            let t = &self.trigger;
            if !(t.hooks.is_empty() && t.pollers.is_empty() && t.types.is_empty()) {
                p.push(
                    at("trigger.schedule"),
                    "a scheduled flow runs at its ticks only; it cannot also name hooks, pollers or types",
                    "keep `schedule` alone in `trigger`, or give the events' flow its own trigger",
                );
            }
            if self.response.is_some() {
                p.push(
                    at("response"),
                    "a scheduled flow has no caller to answer",
                    "remove [flows.response]",
                );
            }
            s.build()
                .map_err(|(key, message)| p.push(at(&format!("trigger.schedule.{key}")), message, crate::poller::schedule::fix(key)))
                .ok()
        });
        let mut names = BTreeSet::new();
        for (i, v) in self.vars.iter().enumerate() {
            if !names.insert(v.name.as_str()) {
                p.push(
                    at(&format!("vars[{i}].name")),
                    format!("`{}` is defined twice", v.name),
                    "give every variable its own name",
                );
            }
        }
        let vars = Vars::compile(
            engine,
            &at("vars"),
            self.vars.iter().map(|v| (v.name.as_str(), &v.value)),
        )
        .map_err(|e| e.report(p, "fix the template"))
        .unwrap_or_default();
        if self.tasks.is_empty() {
            p.push(
                at("tasks"),
                "a flow needs at least one task",
                "add a [[flows.tasks]] table",
            );
        }
        let mut task_ids = BTreeSet::new();
        let mut tasks = Vec::new();
        for (i, t) in self.tasks.iter().enumerate() {
            let task_at = at(&format!("tasks[{i}]"));
            if !task_ids.insert(t.id()) {
                p.push(
                    format!("{task_at}.id"),
                    format!(
                        "`{}` is already the id of another task of this flow",
                        t.id()
                    ),
                    "give every task its own id",
                );
            }
            if let Some(task) = t.build(&task_at, engine, p) {
                tasks.push(task);
            }
        }
        let response = self
            .response
            .as_ref()
            .and_then(|r| r.build(&at("response"), engine, p));
        let used = secret_names(self);
        // Reported where each use is: the template's own path.
        let uses = engine.secret_uses(path);
        for name in used.iter().filter(|n| !secrets.contains_key(*n)) {
            let mut places: Vec<&str> = uses
                .iter()
                .filter(|(_, n)| n == name)
                .map(|(at, _)| at.as_str())
                .collect();
            let fallback = at("tasks");
            if places.is_empty() {
                places.push(&fallback);
            }
            for place in places {
                p.push(
                    place,
                    format!("secret('{name}') is used but not defined"),
                    "add it to [secrets], like NAME = { env = \"NAME\" }",
                );
            }
        }
        (p.len() == before).then(|| Flow {
            id: self.id.clone(),
            namespace: self.namespace.clone(),
            trigger: self.trigger.clone(),
            conditions,
            vars,
            tasks,
            secrets: used,
            revision: revision(self),
            response,
            schedule,
        })
    }
}

/// The first 12 hex digits of the SHA-256 of the flow's definition (its keys in a fixed
/// order, defaults filled in): the same text gives the same revision on every replica.
fn revision(flow: &FlowConfig) -> String {
    use sha2::Digest as _;
    let text = serde_json::to_vec(flow).expect("a flow serializes");
    let digest = sha2::Sha256::digest(&text);
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// The names used in `secret('…')` calls anywhere in the flow's templates.
fn secret_names(flow: &FlowConfig) -> BTreeSet<String> {
    // Every template is a string somewhere in the flow; its debug text holds them all
    // (quotes escaped). The description is prose, not a template.
    let text = format!(
        "{:?}",
        FlowConfig {
            description: None,
            ..flow.clone()
        }
    );
    let call = regex::Regex::new(r#"secret\(\s*(?:'|\\")([^'"\\]+)(?:'|\\")\s*\)"#)
        .expect("a valid pattern");
    call.captures_iter(&text)
        .map(|c| c[1].to_string())
        .collect()
}

/// The flow `id` names: `namespace.id`, or a bare id that one flow alone has.
pub fn find<'a>(flows: &'a [Flow], id: &str) -> Result<&'a Flow, String> {
    if let Some(f) = flows.iter().find(|f| f.qualified_id() == id) {
        return Ok(f);
    }
    let bare: Vec<&Flow> = flows.iter().filter(|f| f.id == id).collect();
    match bare.as_slice() {
        [one] => Ok(one),
        [] => {
            let ids: Vec<String> = flows.iter().map(Flow::qualified_id).collect();
            Err(format!(
                "no flow `{id}` (the flows: {})",
                if ids.is_empty() {
                    "none".to_string()
                } else {
                    ids.join(", ")
                }
            ))
        }
        many => {
            let ids: Vec<String> = many.iter().map(|f| f.qualified_id()).collect();
            Err(format!(
                "`{id}` is the id of flows in several namespaces ({}); give namespace.id",
                ids.join(", ")
            ))
        }
    }
}

impl Flow {
    /// `namespace.id`.
    pub fn qualified_id(&self) -> String {
        format!("{}.{}", self.namespace, self.id)
    }

    /// The trigger: which hooks, pollers and types start the flow.
    pub fn trigger(&self) -> &TriggerConfig {
        &self.trigger
    }

    /// Whether `event` triggers this flow.
    pub fn triggered_by(&self, event: &Event) -> bool {
        let t = &self.trigger;
        let (kind, id) = match event.source.split_once('/').map(|(_, rest)| rest) {
            Some(rest) => rest.split_once('/').unwrap_or((rest, "")),
            None => ("", ""),
        };
        if t.schedule.is_some() || kind == "schedules" {
            // A schedule's ticks start its own flow and no other.
            return t.schedule.is_some() && kind == "schedules" && id == self.qualified_id();
        }
        let source_ok = match kind {
            "hooks" => {
                t.hooks.iter().any(|h| h == id) || (t.hooks.is_empty() && t.pollers.is_empty())
            }
            "pollers" => {
                t.pollers.iter().any(|p| p == id) || (t.hooks.is_empty() && t.pollers.is_empty())
            }
            _ => t.hooks.is_empty() && t.pollers.is_empty(),
        };
        let type_ok = t.types.is_empty()
            || t.types
                .iter()
                .any(|pattern| match pattern.strip_suffix('*') {
                    Some(prefix) => event.event_type.starts_with(prefix),
                    None => *pattern == event.event_type,
                });
        source_ok && type_ok
    }

    /// The flow's conditions, both of which must hold when given.
    pub fn conditions(&self) -> impl Iterator<Item = &Condition> {
        self.conditions.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_share_a_hook_when_their_triggers_overlap() {
        let t = |hooks: &[&str], pollers: &[&str]| TriggerConfig {
            hooks: hooks.iter().map(|s| s.to_string()).collect(),
            pollers: pollers.iter().map(|s| s.to_string()).collect(),
            types: vec![],
            schedule: None,
        };
        let shared = |a: TriggerConfig, b: TriggerConfig| a.shares_a_hook_with(&b);
        assert!(shared(t(&["a"], &[]), t(&["b", "a"], &[])));
        assert!(!shared(t(&["a"], &[]), t(&["b"], &[])));
        assert!(shared(t(&[], &[]), t(&["b"], &[])));
        assert!(shared(t(&[], &[]), t(&[], &[])));
        assert!(!shared(t(&[], &["p"]), t(&["b"], &[])));
    }

    #[test]
    fn secret_references_are_found_in_templates_only() {
        let flow: FlowConfig = toml::from_str(
            r#"
            id = "f"
            description = "uses secret('IN_PROSE') in its description"
            [[tasks]]
            id = "a"
            type = "http"
            uri = "{{ secret( 'SPACED' ) }}/x"
            headers = { authorization = "Bearer {{ secret(\"DOUBLE\") }}" }
            body = { k = "{{ secret('IN_BODY') }}" }
            "#,
        )
        .unwrap();
        let names: Vec<String> = secret_names(&flow).into_iter().collect();
        assert_eq!(names, ["DOUBLE", "IN_BODY", "SPACED"]);
    }

    fn built(toml_text: &str) -> Flow {
        let config: FlowConfig = toml::from_str(toml_text).unwrap();
        let engine = Engine::new(Default::default());
        let mut p = Problems::default();
        config
            .build("flows[0]", &engine, &BTreeMap::new(), &mut p)
            .unwrap_or_else(|| panic!("{}", p.into_error("t")))
    }

    #[test]
    fn the_revision_follows_the_definition_not_its_layout() {
        let a = built("id = \"f\"\n[[tasks]]\nid = \"t\"\ntype = \"log\"\nmessage = \"hi\"\n");
        let same = built(
            "# a comment\nid = \"f\"\n\n[[tasks]]\nmessage = \"hi\"\ntype = \"log\"\nid = \"t\"\nlevel = \"info\"\n",
        );
        let edited =
            built("id = \"f\"\n[[tasks]]\nid = \"t\"\ntype = \"log\"\nmessage = \"hi!\"\n");
        assert_eq!(a.revision.len(), 12);
        assert_eq!(
            a.revision, same.revision,
            "order, comments and defaults written out"
        );
        assert_ne!(a.revision, edited.revision);
    }

    #[test]
    fn a_flow_is_found_by_its_full_id_or_a_bare_one_that_is_unique() {
        let flows = [
            built("id = \"a\"\nnamespace = \"x\"\n[[tasks]]\nid = \"t\"\ntype = \"log\"\nmessage = \"m\"\n"),
            built("id = \"a\"\nnamespace = \"y\"\n[[tasks]]\nid = \"t\"\ntype = \"log\"\nmessage = \"m\"\n"),
            built("id = \"b\"\n[[tasks]]\nid = \"t\"\ntype = \"log\"\nmessage = \"m\"\n"),
        ];
        assert_eq!(find(&flows, "y.a").unwrap().namespace, "y");
        assert_eq!(find(&flows, "b").unwrap().qualified_id(), "default.b");
        assert_eq!(
            find(&flows, "a").unwrap_err(),
            "`a` is the id of flows in several namespaces (x.a, y.a); give namespace.id"
        );
        assert_eq!(
            find(&flows, "c").unwrap_err(),
            "no flow `c` (the flows: x.a, y.a, default.b)"
        );
    }

    fn event_from(source: &str) -> Event {
        let value = serde_json::json!({
            "specversion": "1.0", "id": "01a24b59-5f31-706a-83b9-6db3bccae00d",
            "source": source, "type": "hookgate.schedule", "time": "2026-12-06T12:34:38.001Z",
            "datacontenttype": "application/json", "dataschema": "urn:hookgate:schedule:v1",
            "hook": "x", "authscheme": "schedule", "data": {}
        })
        .to_string();
        let content_type = hookgate_event::STRUCTURED_CONTENT_TYPE.as_bytes();
        hookgate_event::decode(hookgate_event::Record {
            headers: &[("content-type", content_type)],
            value: Some(value.as_bytes()),
        })
        .unwrap()
    }

    #[test]
    fn a_schedule_starts_its_own_flow_and_nothing_else() {
        let tasks = "[[tasks]]\nid = \"t\"\ntype = \"log\"\nmessage = \"m\"\n";
        let scheduled = built(&format!(
            "id = \"beat\"\nnamespace = \"ops\"\ntrigger = {{ schedule = {{ cron = \"*/5 * * * *\" }} }}\n{tasks}"
        ));
        let any = built(&format!("id = \"all\"\n{tasks}"));
        assert!(scheduled.triggered_by(&event_from("/schedules/ops.beat")));
        for other in ["/schedules/ops.other", "/hooks/beat", "/pollers/ops.beat"] {
            assert!(!scheduled.triggered_by(&event_from(other)), "{other}");
        }
        assert!(any.triggered_by(&event_from("/hooks/orders")));
        assert!(!any.triggered_by(&event_from("/schedules/ops.beat")));
        assert!(!scheduled.trigger().shares_a_hook_with(any.trigger()));
    }

    #[test]
    fn a_schedule_with_events_a_bad_pattern_or_an_answer_is_refused_by_key() {
        let engine = Engine::new(Default::default());
        let problems = |text: &str| {
            let config: FlowConfig = toml::from_str(text).unwrap();
            let mut p = Problems::default();
            assert!(config
                .build("flows[0]", &engine, &BTreeMap::new(), &mut p)
                .is_none());
            p.into_error("t").to_string()
        };
        let tasks = "[[tasks]]\nid = \"t\"\ntype = \"log\"\nmessage = \"m\"\n";
        let mixed = problems(&format!(
            "id = \"f\"\ntrigger = {{ hooks = [\"a\"], schedule = {{ cron = \"@daily\" }} }}\n{tasks}"
        ));
        assert!(mixed.contains("flows[0].trigger.schedule"), "{mixed}");
        let bad = problems(&format!(
            "id = \"f\"\ntrigger = {{ schedule = {{ cron = \"61 * * * *\", timezone = \"Mars/Olympus\" }} }}\n{tasks}"
        ));
        assert!(bad.contains("flows[0].trigger.schedule.cron"), "{bad}");
        let answering = problems(&format!(
            "id = \"f\"\ntrigger = {{ schedule = {{ cron = \"@daily\" }} }}\n{tasks}[response]\nstatus = \"200\"\n"
        ));
        assert!(answering.contains("flows[0].response"), "{answering}");
    }
}
