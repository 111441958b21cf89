//! Flows on a cron schedule: each tick is one event on the schedules topic, made by the
//! replica that owns the schedule, and runs the flow once, however many replicas run.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hookgate_testkit::kafka::{self, create_topic};
use hookgate_testkit::server::TestServer;
use hookgate_testkit::{brokers, topic};
use serde_json::{json, Value};

use crate::pollers::settings;
use crate::support::{json_reply, Running};

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_flow_runs_once_per_tick_across_two_replicas() {
    let server = TestServer::start(|_| json_reply(200, json!({"ok": true}))).await;
    let (group, control, schedules) = (topic("group"), topic("control"), topic("schedules"));
    let events = topic("events");
    create_topic(&brokers(), &events, 1).await;
    let flow = format!(
        "[[flows]]\nid = \"heartbeat\"\nnamespace = \"ops\"\n\
         trigger = {{ schedule = {{ cron = \"* * * * * *\", timezone = \"Europe/Berlin\" }} }}\n\
         [[flows.tasks]]\nid = \"beat\"\ntype = \"http\"\nmethod = \"POST\"\nuri = \"{}\"\n\
         body = {{ scheduled = \"{{{{ trigger.body.scheduled }}}}\", cron = \"{{{{ trigger.body.cron }}}}\", \
         zone = \"{{{{ trigger.body.timezone }}}}\", source = \"{{{{ trigger.source }}}}\" }}\n",
        server.url("/beat")
    );
    let env = [(
        "HOOKGATE_CONSUMER_KAFKA__SCHEDULES_TOPIC",
        schedules.as_str(),
    )];
    let a = Running::start(settings(&group, &control, &events, &flow, &env));
    let b = Running::start(settings(&group, &control, &events, &flow, &env));

    let deadline = Instant::now() + Duration::from_secs(40);
    while server.hits() < 5 {
        assert!(Instant::now() < deadline, "{} beats in 40 s", server.hits());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.stop().await.unwrap();
    b.stop().await.unwrap();

    let beats: Vec<Value> = server
        .seen()
        .iter()
        .map(|s| serde_json::from_slice(&s.body).unwrap())
        .collect();
    let ticks: BTreeSet<&str> = beats
        .iter()
        .map(|b| b["scheduled"].as_str().unwrap())
        .collect();
    assert_eq!(ticks.len(), beats.len(), "a tick ran twice: {beats:#?}");
    for beat in &beats {
        assert_eq!(beat["cron"], "* * * * * *");
        assert_eq!(beat["zone"], "Europe/Berlin");
        assert_eq!(beat["source"], "/schedules/ops.heartbeat");
        let at = humantime::parse_rfc3339(beat["scheduled"].as_str().unwrap()).unwrap();
        let ms = at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        assert_eq!(ms % 1000, 0, "ticks are whole seconds: {beat}");
    }

    // One event per tick on the schedules topic, in the schedule contract.
    let records = kafka::read_until(&brokers(), &schedules, Duration::from_secs(3), |r| {
        r.len() > beats.len()
    });
    assert_eq!(records.len(), beats.len(), "one event per tick run");
    let event = records[0].event();
    assert_eq!(
        event.dataschema.as_deref(),
        Some(hookgate_event::SCHEDULE_SCHEMA)
    );
    assert_eq!(event.event_type, "hookgate.schedule");
    assert_eq!(event.extension("hook"), Some("ops.heartbeat"));
}

#[test]
fn check_lists_a_flows_schedule_and_refuses_a_poller_of_the_same_id() {
    let flow = "[[flows]]\nid = \"nightly\"\nnamespace = \"ops\"\n\
                trigger = { schedule = { cron = \"0 3 * * *\", timezone = \"Europe/Berlin\", missed = \"run_once\" } }\n\
                [[flows.tasks]]\nid = \"note\"\ntype = \"log\"\nmessage = \"tick {{ trigger.body.scheduled }}\"\n";
    let settings = settings("g", "control", "events", flow, &[]);
    let table = hookgate_consumer::config::flow_table(&settings);
    assert!(
        table.contains(
            "ops.nightly (flow)\tcron \"0 3 * * *\" Europe/Berlin, missed: run once\tevery\thookgate.schedules"
        ),
        "{table}"
    );
    assert!(settings
        .kafka
        .topics
        .contains(&"hookgate.schedules".to_string()));

    let clash = format!(
        "{flow}[[pollers]]\nid = \"ops.nightly\"\nuri = \"http://127.0.0.1:9/\"\ninterval = \"1m\"\ntopic = \"t\"\n"
    );
    let text = format!("[kafka]\nbrokers = \"b\"\ngroup = \"g\"\ntopics = [\"events\"]\n{clash}");
    let source = hookgate_common::config::Source::Text {
        name: "test".into(),
        toml: text,
    };
    let env = hookgate_common::config::Environment::default();
    let err = hookgate_consumer::config::ConsumerConfig::load(&source, &env)
        .and_then(|c| c.build(&env, "test"))
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("flows[0].trigger.schedule") && err.contains("pollers[0]"),
        "{err}"
    );
}
