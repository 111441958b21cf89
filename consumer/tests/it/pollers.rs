//! Pollers against the real broker and a local HTTP server whose answer the test changes
//! over time: firing exactly when the condition holds, edge mode and the cooldown,
//! backoff on failures, one firing per cluster with two replicas, and secrets kept out
//! of events and logs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookgate_common::config::{Environment, Source};
use hookgate_consumer::config::{ConsumerConfig, Settings};
use hookgate_consumer::poller::cluster::{partition_of, Deps};
use hookgate_consumer::poller::Cluster;
use hookgate_testkit::kafka::{self, create_topic, Read};
use hookgate_testkit::server::{Seen, TestServer};
use hookgate_testkit::{brokers, topic};
use serde_json::json;

use crate::support::{json_reply, Running};

/// One answer of the API: the path, the stock answered (`None`: a failure), and when.
type Served = (String, Option<i64>, Instant);

/// What the API answers, set by the test; and what it answered, in order.
#[derive(Clone, Default)]
struct Api {
    /// `None`: 503; `Some(v)`: 200 with `{"stock": v}`.
    stock: Arc<Mutex<Option<i64>>>,
    /// (path, stock answered or None for a failure, when).
    served: Arc<Mutex<Vec<Served>>>,
}

impl Api {
    fn set(&self, stock: Option<i64>) {
        *self.stock.lock().unwrap() = stock;
    }

    fn served(&self, path: &str) -> Vec<(Option<i64>, Instant)> {
        self.served
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, s, t)| (*s, *t))
            .collect()
    }

    /// Waits until `path` has been polled `n` more times than `since`.
    async fn wait_polls(&self, path: &str, since: usize, n: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let count = self.served(path).len();
            if count >= since + n {
                return count;
            }
            assert!(
                Instant::now() < deadline,
                "{path}: {count} polls, wanted {}",
                since + n
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn start(&self) -> TestServer {
        let api = self.clone();
        TestServer::start(move |seen: &Seen| {
            let path = seen.target.split('?').next().unwrap_or("").to_string();
            let stock = *api.stock.lock().unwrap();
            api.served
                .lock()
                .unwrap()
                .push((path, stock, Instant::now()));
            match stock {
                Some(v) => json_reply(200, json!({ "stock": v })),
                None => json_reply(503, json!({ "error": "maintenance" })),
            }
        })
        .await
    }
}

/// An API answering `stock`, and a fresh events topic.
async fn setup(stock: Option<i64>) -> (Api, TestServer, String) {
    let api = Api::default();
    api.set(stock);
    let server = api.start().await;
    let events_topic = topic("polls");
    create_topic(&brokers(), &events_topic, 1).await;
    (api, server, events_topic)
}

/// A consumer config for pollers: a fresh group and control topic, the events topic,
/// and `rest` (pollers, secrets).
pub(crate) fn settings(
    group: &str,
    control: &str,
    events: &str,
    rest: &str,
    env: &[(&str, &str)],
) -> Settings {
    let toml = format!(
        "[kafka]\nbrokers = \"{}\"\ngroup = \"{group}\"\ntopics = [\"{events}\"]\n\
         control_topic = \"{control}\"\n\
         consumer_properties = {{ \"session.timeout.ms\" = 6000, \"max.poll.interval.ms\" = 10000 }}\n\
         [limits]\nshutdown_timeout = \"5s\"\n\
         [outbound]\nallow = [\"127.0.0.1/32\"]\n{rest}",
        brokers(),
    );
    let env = Environment::from_vars(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let source = Source::Text {
        name: "test".into(),
        toml,
    };
    ConsumerConfig::load(&source, &env)
        .and_then(|c| c.build(&env, "test"))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Reads the events on `topic`, waiting `quiet` after the last one for more.
fn events(topic: &str, at_least: usize, quiet: Duration) -> Vec<Read> {
    let first = kafka::read_until(&brokers(), topic, Duration::from_secs(20), |r| {
        r.len() >= at_least
    });
    let more = kafka::read_until(&brokers(), topic, quiet, |r| r.len() > first.len());
    if more.len() > first.len() {
        more
    } else {
        first
    }
}

fn poller(id: &str, url: &str, topic: &str, extra: &str) -> String {
    format!(
        "[[pollers]]\nid = \"{id}\"\nuri = \"{url}\"\ninterval = \"50ms\"\ntopic = \"{topic}\"\n\
         condition = \"{{{{ json(response.body).stock <= 10 }}}}\"\n{extra}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_mode_fires_on_each_poll_where_the_condition_holds_and_flows_see_the_event() {
    let (api, server, events_topic) = setup(Some(20)).await;
    let consumer = Running::start(settings(
        &topic("group"),
        &topic("control"),
        &events_topic,
        &poller(
            "stock",
            &server.url("/stock"),
            &events_topic,
            "type = \"inventory.stock\"",
        ),
        &[],
    ));

    let n = api.wait_polls("/stock", 0, 3).await;
    api.set(Some(5));
    let n = api.wait_polls("/stock", n, 3).await;
    api.set(Some(30));
    api.wait_polls("/stock", n, 3).await;
    consumer.stop().await.unwrap();

    let low = api
        .served("/stock")
        .iter()
        .filter(|(s, _)| *s == Some(5))
        .count();
    assert!(low >= 3);
    let got = events(&events_topic, low, Duration::from_secs(2));
    assert_eq!(got.len(), low, "one event per poll that answered 5");
    for r in &got {
        assert_eq!(r.key.as_deref(), Some(&b"stock"[..]));
        let e = r.event();
        assert_eq!(e.source, "/pollers/stock");
        assert_eq!(e.event_type, "inventory.stock");
        assert_eq!(e.dataschema.as_deref(), Some("urn:hookgate:poll:v1"));
        let v = r.json();
        assert_eq!(v["data"]["status"], 200);
        assert_eq!(v["data"]["body"], json!({ "stock": 5 }));
        assert_eq!(v["data"]["bodyencoding"], "json");
        assert_eq!(v["data"]["uri"], server.url("/stock"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn edge_mode_fires_once_per_transition_and_the_cooldown_holds() {
    let (api, server, events_topic) = setup(Some(20)).await;
    let pollers = format!(
        "{}{}",
        poller(
            "edge",
            &server.url("/edge"),
            &events_topic,
            "mode = \"edge\""
        ),
        poller(
            "cool",
            &server.url("/cool"),
            &events_topic,
            "mode = \"edge\"\ncooldown = \"1h\""
        )
    );
    let consumer = Running::start(settings(
        &topic("group"),
        &topic("control"),
        &events_topic,
        &pollers,
        &[],
    ));
    // 20 → 5 → 30 → 5: two transitions to true.
    for stock in [20, 5, 30, 5] {
        api.set(Some(stock));
        let (e, c) = (api.served("/edge").len(), api.served("/cool").len());
        api.wait_polls("/edge", e, 4).await;
        api.wait_polls("/cool", c, 4).await;
    }
    consumer.stop().await.unwrap();

    let got = events(&events_topic, 3, Duration::from_secs(2));
    let count = |id: &str| {
        got.iter()
            .filter(|r| r.event().source == format!("/pollers/{id}"))
            .count()
    };
    assert_eq!(count("edge"), 2, "one event per transition");
    assert_eq!(
        count("cool"),
        1,
        "the second transition falls in the cooldown"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_back_off_and_polling_resumes_when_the_api_recovers() {
    // Each test runs in its own process under nextest, so this recorder sees this test's
    // metrics only.
    hookgate_consumer::metrics::install();
    let (api, server, events_topic) = setup(None).await;
    let consumer = Running::start(settings(
        &topic("group"),
        &topic("control"),
        &events_topic,
        &poller(
            "flaky",
            &server.url("/flaky"),
            &events_topic,
            "interval = \"100ms\"\nmax_backoff = \"1s\"",
        )
        .replace("interval = \"50ms\"\n", ""),
        &[],
    ));
    // Five failed polls: 100 ms apart without backoff (0.4 s from first to last); with
    // it 0, +200, +400, +800, +1000 ms (capped at max_backoff).
    api.wait_polls("/flaky", 0, 5).await;
    let failed = api.served("/flaky");
    let gaps: Vec<Duration> = failed.windows(2).map(|w| w[1].1 - w[0].1).collect();
    let first_four: Duration = gaps.iter().take(4).sum();
    assert!(
        first_four >= Duration::from_millis(2000),
        "the failed polls came {gaps:?} apart: no backoff"
    );
    assert!(
        gaps.iter().all(|g| *g <= Duration::from_millis(1300)),
        "a wait past max_backoff (1 s): {gaps:?}"
    );
    assert!(
        gaps.windows(2)
            .all(|g| g[1] + Duration::from_millis(50) >= g[0]),
        "gaps shrink: {gaps:?}"
    );
    assert!(gaps[0] >= Duration::from_millis(180), "{gaps:?}");

    api.set(Some(3));
    let got = events(&events_topic, 1, Duration::from_millis(1));
    consumer.stop().await.unwrap();
    assert!(!got.is_empty(), "no event after the API recovered");
    assert_eq!(got[0].json()["data"]["body"]["stock"], 3);
    let metrics = hookgate_consumer::metrics::render();
    if !metrics.is_empty() {
        let count = |outcome: &str| -> usize {
            metrics
                .lines()
                .find(|l| {
                    l.starts_with("hookgate_consumer_polls_total")
                        && l.contains(&format!("outcome=\"{outcome}\""))
                        && l.contains("poller=\"flaky\"")
                })
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .unwrap_or(0)
        };
        let failures = count("failed");
        assert!(
            (failed.len()..=failed.len() + 1).contains(&failures),
            "{failures} failures counted for {} failed polls: {metrics}",
            failed.len()
        );
        assert!(count("fired") >= 1, "{metrics}");
    }
}

/// Poller ids whose control partitions (of 6) fall two in 0–2 and two in 3–5, so that
/// two replicas (range assignment) each get some.
fn spread_ids() -> Vec<String> {
    let mut low = Vec::new();
    let mut high = Vec::new();
    for i in 0.. {
        let id = format!("p{i}");
        let part = partition_of(&id, 6);
        if part < 3 && low.len() < 2 {
            low.push(id);
        } else if part >= 3 && high.len() < 2 {
            high.push(id);
        }
        if low.len() == 2 && high.len() == 2 {
            break;
        }
    }
    low.into_iter().chain(high).collect()
}

async fn replica(settings: Settings) -> Cluster {
    let deps = Deps {
        http: hookgate_consumer::outbound::Client::new(settings.policy.clone()),
        engine: settings.engine.clone(),
        producer: settings.kafka.producer().unwrap(),
    };
    let pollers = settings.pollers.into_iter().map(Arc::new).collect();
    Cluster::start(pollers, &settings.kafka, deps)
        .await
        .unwrap()
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(45);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_run_each_poller_once_and_edge_state_survives_the_move() {
    let (api, server, events_topic) = setup(Some(5)).await;
    let ids = spread_ids();
    let pollers: String = ids
        .iter()
        .map(|id| {
            poller(
                id,
                &server.url(&format!("/{id}")),
                &events_topic,
                "mode = \"edge\"",
            )
        })
        .collect();
    let (group, control) = (topic("group"), topic("control"));

    let a = replica(settings(&group, &control, &events_topic, &pollers, &[])).await;
    wait_for("replica A to run every poller", || a.owned().len() == 4).await;
    for id in &ids {
        api.wait_polls(&format!("/{id}"), 0, 2).await;
    }
    // Every poller has fired once on A. B joins: the pollers split between them.
    let b = replica(settings(&group, &control, &events_topic, &pollers, &[])).await;
    wait_for("the pollers to split between A and B", || {
        let (oa, ob) = (a.owned(), b.owned());
        !oa.is_empty() && !ob.is_empty() && oa.len() + ob.len() == 4
    })
    .await;
    let (oa, ob) = (a.owned(), b.owned());
    assert!(oa.iter().all(|id| !ob.contains(id)), "{oa:?} and {ob:?}");
    let counts: Vec<usize> = ids
        .iter()
        .map(|id| api.served(&format!("/{id}")).len())
        .collect();
    for (id, n) in ids.iter().zip(counts) {
        api.wait_polls(&format!("/{id}"), n, 3).await;
    }
    b.stop().await;
    a.stop().await;

    let got = events(&events_topic, 4, Duration::from_secs(2));
    let mut sources: Vec<String> = got.iter().map(|r| r.event().source).collect();
    sources.sort();
    let mut want: Vec<String> = ids.iter().map(|id| format!("/pollers/{id}")).collect();
    want.sort();
    assert_eq!(
        sources, want,
        "each poller fired exactly once across both replicas"
    );
}

/// Collects every log line of the process.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_stay_out_of_events_and_logs() {
    let logs = Logs::default();
    let writer = logs.clone();
    let installed = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .is_ok();

    const KEY: &str = "k3y-6a1d93f0e2";
    const TOKEN: &str = "t0ken-94b2c1d7aa";
    // The API echoes the credentials back, in its body and its headers.
    let server = TestServer::start(|seen: &Seen| {
        let auth = seen.header("authorization").unwrap_or("").to_string();
        http::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .header("x-echo", auth.clone())
            .header("set-cookie", format!("sid={TOKEN}"))
            .body(http_body_util::Full::new(bytes::Bytes::from(
                json!({ "stock": 2, "auth": auth, "target": seen.target }).to_string(),
            )))
            .unwrap()
    })
    .await;
    let events_topic = topic("polls");
    create_topic(&brokers(), &events_topic, 1).await;
    let rest = format!(
        "[secrets]\nAPI_KEY = {{ env = \"API_KEY\" }}\nTOKEN = {{ env = \"TOKEN\" }}\n\
         [[pollers]]\nid = \"secretive\"\nuri = \"{}?key={{{{ secret('API_KEY') }}}}\"\n\
         auth = {{ bearer = \"{{{{ secret('TOKEN') }}}}\" }}\ninterval = \"50ms\"\ntopic = \"{events_topic}\"\n\
         [[pollers]]\nid = \"unreachable\"\nuri = \"http://127.0.0.1:1/{{{{ secret('API_KEY') }}}}\"\n\
         headers = {{ \"x-token\" = \"{{{{ secret('TOKEN') }}}}\" }}\ninterval = \"50ms\"\ntopic = \"{events_topic}\"\n",
        server.url("/stock")
    );
    let consumer = Running::start(settings(
        &topic("group"),
        &topic("control"),
        &events_topic,
        &rest,
        &[("API_KEY", KEY), ("TOKEN", TOKEN)],
    ));
    let got = events(&events_topic, 2, Duration::from_millis(1));
    consumer.stop().await.unwrap();

    // The API did get the credentials.
    let seen = server.seen();
    assert!(seen[0].target.contains(KEY));
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    for r in &got {
        let text = String::from_utf8_lossy(&r.value);
        assert!(!text.contains(KEY) && !text.contains(TOKEN), "{text}");
        assert_eq!(r.json()["data"]["body"]["stock"], 2);
    }
    if installed {
        let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
        assert!(text.contains("poller fired"), "logs were not captured");
        assert!(
            text.contains("poll failed"),
            "the failing poller logged nothing"
        );
        assert!(!text.contains(KEY) && !text.contains(TOKEN), "{text}");
    }
}

/// Runs `hookgate-consumer check` on `toml`: (success, stdout, stderr).
fn check(toml: &str) -> (bool, String, String) {
    let path = std::env::temp_dir().join(format!(
        "hookgate-consumer-pollers-{}.toml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&path, toml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookgate-consumer"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_lists_pollers_and_names_what_is_wrong() {
    let (ok, stdout, stderr) = check(
        "[kafka]\ntopics = [\"hookgate.polls\"]\n[[pollers]]\nid = \"stock-level\"\nuri = \"https://erp.example/stock\"\n\
         interval = \"PT2M\"\ncondition = \"{{ json(response.body).stock <= 10 }}\"\nmode = \"edge\"\ncooldown = \"1h\"\ntopic = \"hookgate.polls\"\n",
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("stock-level\t2m\tedge (cooldown 1h)\thookgate.polls"),
        "{stdout}"
    );
    assert!(stdout.contains("1 pollers"), "{stdout}");

    // A scheduled poller is listed with its pattern and zone; a bad pattern or zone
    // names its key, and interval and schedule together are refused.
    let (ok, stdout, stderr) = check(
        "[kafka]\ntopics = [\"t\"]\n[[pollers]]\nid = \"report\"\nuri = \"https://erp.example/report\"\n\
         schedule = { cron = \"0 6 * * MON-FRI\", timezone = \"Europe/Berlin\", missed = \"run_once\" }\ntopic = \"t\"\n",
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout
            .contains("report\tcron \"0 6 * * MON-FRI\" Europe/Berlin, missed: run once\tevery\tt"),
        "{stdout}"
    );
    let (ok, _, stderr) = check(
        "[kafka]\ntopics = [\"t\"]\n[[pollers]]\nid = \"report\"\nuri = \"https://erp.example/report\"\n\
         schedule = { cron = \"0 25 * * *\", timezone = \"Europe/Atlantis\" }\ntopic = \"t\"\n",
    );
    assert!(!ok);
    assert!(stderr.contains("pollers[0].schedule.cron"), "{stderr}");
    let (ok, _, stderr) = check(
        "[kafka]\ntopics = [\"t\"]\n[[pollers]]\nid = \"report\"\nuri = \"https://erp.example/report\"\n\
         interval = \"1m\"\nschedule = { cron = \"0 6 * * *\" }\ntopic = \"t\"\n",
    );
    assert!(!ok);
    assert!(stderr.contains("not both"), "{stderr}");

    // A task's unknown key is a parse error, reported first and alone.
    let (ok, _, stderr) = check(
        "[kafka]\ntopics = [\"t\"]\n[[flows]]\nid = \"f\"\n[[flows.tasks]]\nid = \"t\"\ntype = \"http\"\nuri = \"https://x\"\ncolour = \"red\"\n",
    );
    assert!(!ok);
    assert!(stderr.contains("colour"), "{stderr}");

    let (ok, _, stderr) = check(
        "[kafka]\ntopics = [\"t\"]\n[[pollers]]\nid = \"bad id\"\nuri = \"ftp://x\"\ninterval = \"1ms\"\n\
         condition = \"{{ response.status == }}\"\ntopic = \"t\"\nshape = 1\n",
    );
    assert!(!ok);
    assert!(stderr.contains("shape"), "{stderr}");

    let (ok, _, stderr) = check(
        "[kafka]\ntopics = [\"t\"]\n[[pollers]]\nid = \"bad id\"\nuri = \"ftp://x\"\ninterval = \"1ms\"\n\
         condition = \"{{ response.status == }}\"\ntopic = \"t\"\n",
    );
    assert!(!ok);
    for want in [
        "pollers[0].id",
        "pollers[0].uri",
        "pollers[0].interval",
        "pollers[0].condition",
    ] {
        assert!(stderr.contains(want), "{want} missing from:\n{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_poller_polls_on_its_ticks_and_fires() {
    let (api, server, events_topic) = setup(Some(5)).await;
    let consumer = Running::start(settings(
        &topic("group"),
        &topic("control"),
        &events_topic,
        &format!(
            "[[pollers]]\nid = \"ticks\"\nuri = \"{}\"\ntopic = \"{events_topic}\"\n\
             schedule = {{ cron = \"* * * * * *\", timezone = \"Europe/Berlin\" }}\n\
             condition = \"{{{{ json(response.body).stock <= 10 }}}}\"\n",
            server.url("/stock")
        ),
        &[],
    ));
    api.wait_polls("/stock", 0, 3).await;
    consumer.stop().await.unwrap();
    // One poll per second, on the ticks: never two in one second, never a long gap.
    let times: Vec<Instant> = api.served("/stock").iter().map(|(_, t)| *t).collect();
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(500) && gap <= Duration::from_millis(2500),
            "polls {gap:?} apart"
        );
    }
    let got = events(&events_topic, 3, Duration::from_secs(1));
    assert!(got.len() >= 3);
    assert_eq!(got[0].event().source, "/pollers/ticks");
}
