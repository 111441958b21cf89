//! Bad configuration: every problem is reported with its TOML path and a fix, before any
//! port is bound, and `hookgate check` exits non-zero.

use std::process::Command;

use hookgate_common::config::{Environment, Source};
use hookgate_gateway::config::{self, Config};

use crate::support::{brokers, topic};

const BASE: &str = "[server]\nlisten = \"127.0.0.1:0\"\n[kafka]\nbrokers = \"localhost:9092\"\n";

fn problems(toml: &str, env: &[(&str, &str)]) -> Vec<String> {
    let env = Environment::from_vars(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let source = Source::Text {
        name: "test".into(),
        toml: toml.into(),
    };
    match config::load(&source, &env) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

fn one_problem(toml: &str) -> String {
    let p = problems(toml, &[]);
    assert_eq!(p.len(), 1, "expected one problem, got {p:?}");
    p[0].clone()
}

const HOOK: &str = "[[hooks]]\nid = \"a\"\ntopic = \"t\"\nauth = { scheme = \"none\" }\n";

#[test]
fn a_valid_config_loads() {
    assert!(problems(&format!("{BASE}{HOOK}"), &[]).is_empty());
}

#[test]
fn unknown_keys_are_named_with_the_allowed_ones() {
    let p = one_problem(&format!("{BASE}{HOOK}topik = \"x\"\n"));
    assert!(p.starts_with("hooks[0]"), "{p}");
    assert!(p.contains("topik") && p.contains("allowed here"), "{p}");
    let p = one_problem(&format!("{BASE}[sever]\nlisten = \"x\"\n{HOOK}"));
    assert!(p.contains("sever"), "{p}");
    let p = one_problem(
        &format!("{BASE}{HOOK}auth = {{ scheme = \"none\", key = \"x\" }}\n")
            .replace("auth = { scheme = \"none\" }\nauth", "auth"),
    );
    assert!(p.contains("key"), "{p}");
}

#[test]
fn bad_values_name_the_key_and_the_fix() {
    let p = one_problem(&format!("{BASE}{HOOK}max_body = \"lots\"\n"));
    assert!(p.starts_with("hooks[0].max_body"), "{p}");
    let p = one_problem(&format!("{BASE}{HOOK}ack_timeout = \"5\"\n"));
    assert!(
        p.starts_with("hooks[0].ack_timeout") && p.contains("with a unit"),
        "{p}"
    );
    let p = one_problem(&format!("{BASE}{HOOK}mode = \"compact\"\n"));
    assert!(
        p.contains("hooks[0].mode") && p.contains("structured"),
        "{p}"
    );
    let p = one_problem(&format!("{BASE}{HOOK}").replace("\"none\"", "\"magic\""));
    assert!(p.contains("hooks[0].auth") && p.contains("url_key"), "{p}");
    let p = one_problem(&format!("{BASE}{HOOK}").replace(
        "listen = \"127.0.0.1:0\"\n",
        "listen = \"127.0.0.1:0\"\nbody_read_timeout = \"0s\"\n",
    ));
    assert_eq!(
        p,
        "server.body_read_timeout: must be longer than zero (fix: give a duration like \"10s\")"
    );
    let p = one_problem(&format!("{BASE}{HOOK}").replace(
        "auth = { scheme = \"none\" }",
        "auth = { scheme = \"hmac\", preset = \"github\", secrets = [{ value = \"s\" }], dedupe_capacity = 0 }",
    ));
    assert!(
        p.starts_with("hooks[0].auth.dedupe_capacity: 0 is out of range") && p.contains("10000000"),
        "{p}"
    );
}

#[test]
fn every_semantic_problem_is_reported_at_once() {
    let toml = format!(
        "{BASE}[[hooks]]\nid = \"dup\"\ntopic = \"bad topic\"\nmethods = [\"DELETE\"]\nauth = {{ scheme = \"url_key\", secrets = [{{ env = \"NOPE\" }}] }}\n\
         [[hooks]]\nid = \"dup\"\ntopic = \"t\"\nkey = {{ pointer = \"id\" }}\nauth = {{ scheme = \"none\" }}\n"
    );
    let p = problems(&toml, &[]);
    let has =
        |prefix: &str, text: &str| p.iter().any(|x| x.starts_with(prefix) && x.contains(text));
    assert!(has("hooks[0].topic", "not a valid Kafka topic"), "{p:#?}");
    assert!(has("hooks[0].methods", "DELETE"), "{p:#?}");
    assert!(
        has("hooks[0].auth.secrets[0]", "`NOPE` is not set"),
        "{p:#?}"
    );
    assert!(has("hooks[1].id", "already the id of hooks[0]"), "{p:#?}");
    assert!(has("hooks[1].key", "not a JSON pointer"), "{p:#?}");
    assert!(p.iter().all(|x| x.contains("(fix: ")), "{p:#?}");
}

#[test]
fn reserved_kafka_properties_are_refused_with_the_reason() {
    let p = one_problem(
        &format!("{BASE}properties = {{ acks = \"1\" }}\n{HOOK}").replace(
            "brokers = \"localhost:9092\"\n",
            "brokers = \"localhost:9092\"\n",
        ),
    );
    assert!(
        p.starts_with("kafka.properties.\"acks\"") && p.contains("acks=all"),
        "{p}"
    );
    let p = one_problem(&format!(
        "{BASE}properties = {{ \"enable.idempotence\" = false }}\n{HOOK}"
    ));
    assert!(p.contains("enable.idempotence"), "{p}");
    let p = one_problem(&format!(
        "{BASE}properties = {{ \"message.timeout.ms\" = 100 }}\n{HOOK}"
    ));
    assert!(
        p.contains("message.timeout.ms") && p.contains("ack_timeout"),
        "{p}"
    );
    let p = one_problem(&format!(
        "{BASE}properties = {{ \"lingr.ms\" = 5 }}\n{HOOK}"
    ));
    assert!(
        p.starts_with("kafka.properties.\"lingr.ms\"") && p.contains("librdkafka"),
        "{p}"
    );
    // librdkafka calls linger.ms queue.buffering.max.ms; the problem names the key written.
    let p = one_problem(&format!(
        "{BASE}properties = {{ \"linger.ms\" = \"soon\" }}\n{HOOK}"
    ));
    assert!(p.starts_with("kafka.properties.\"linger.ms\""), "{p}");
    // A refused value that came from a secret is not repeated.
    let p = problems(
        &format!("{BASE}properties = {{ \"linger.ms\" = {{ env = \"LINGER\" }} }}\n{HOOK}"),
        &[("LINGER", "hunter2-not-a-number")],
    )
    .join("\n");
    assert!(p.starts_with("kafka.properties.\"linger.ms\""), "{p}");
    assert!(!p.contains("hunter2"), "{p}");
}

#[test]
fn a_body_limit_that_cannot_fit_the_broker_is_refused() {
    let p = one_problem(&format!("{BASE}{HOOK}max_body = \"1MiB\"\n"));
    assert!(
        p.starts_with("hooks[0].max_body") && p.contains("message.max.bytes"),
        "{p}"
    );
    // Raising the producer's limit makes it fit.
    let ok = format!(
        "{BASE}properties = {{ \"message.max.bytes\" = 4000000 }}\n{HOOK}max_body = \"1MiB\"\n"
    );
    assert!(problems(&ok, &[]).is_empty());
}

#[test]
fn environment_variables_override_tables_and_are_named_when_wrong() {
    let env = [("HOOKGATE_SERVER__MAX_CONNECTIONS", "ten")];
    let p = problems(&format!("{BASE}{HOOK}"), &env);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("HOOKGATE_SERVER__MAX_CONNECTIONS"),
        "{p:?}"
    );
    let env = [("HOOKGATE_HOOKS__0__ID", "x")];
    let p = problems(&format!("{BASE}{HOOK}"), &env);
    assert!(p[0].contains("cannot be set from the environment"), "{p:?}");
    // A valid override applies.
    let env = Environment::from_vars([("HOOKGATE_KAFKA__BROKERS", "b1:9092,b2:9092")]);
    let source = Source::Text {
        name: "test".into(),
        toml: format!("{BASE}{HOOK}"),
    };
    let c = Config::load(&source, &env).unwrap();
    assert_eq!(c.kafka.brokers, "b1:9092,b2:9092");
}

#[test]
fn check_refuses_a_missing_topic_and_names_it() {
    let dir = std::env::temp_dir().join(format!("hookgate-it-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = topic("missing");
    let file = dir.join("hookgate.toml");
    std::fs::write(
        &file,
        format!(
            "[kafka]\nbrokers = \"{}\"\n[[hooks]]\nid = \"m\"\ntopic = \"{missing}\"\nauth = {{ scheme = \"none\" }}\n",
            brokers()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&missing) && stderr.contains("hooks[0].topic"),
        "{stderr}"
    );
    // A config that does not parse: non-zero, with the problem and no listing.
    std::fs::write(&file, "[[hooks]]\nid = \n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["check", "--offline", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid configuration"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_shipped_example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/hookgate.example.toml");
    let text = std::fs::read_to_string(path).unwrap();
    // Every variable the example references, as its header comment lists them.
    let vars: Vec<(String, String)> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| {
            w.len() > 3
                && w.chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
        })
        .map(|w| (w.to_string(), "value-for-tests".to_string()))
        .collect();
    let mut env = Environment::from_vars(vars);
    env.set("SVIX_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let settings = config::load(&Source::File(path.into()), &env).unwrap_or_else(|e| panic!("{e}"));
    let schemes: std::collections::BTreeSet<&str> =
        settings.hooks.iter().map(|h| h.auth.scheme()).collect();
    for scheme in ["none", "url_key", "basic", "api_key", "token", "hmac"] {
        assert!(schemes.contains(scheme), "the example shows {scheme}");
    }
    let presets: std::collections::BTreeSet<&str> = settings
        .hooks
        .iter()
        .filter_map(|h| h.auth.preset())
        .collect();
    for preset in [
        "github",
        "stripe",
        "slack",
        "shopify",
        "standard_webhooks",
        "twilio",
        "gitlab",
    ] {
        assert!(
            presets.contains(preset),
            "the example shows the {preset} preset"
        );
    }
}

#[test]
fn too_many_serving_threads_are_refused() {
    let p = one_problem(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nthreads = 1000\n[kafka]\nbrokers = \"localhost:9092\"\n{HOOK}"
    ));
    assert!(
        p.starts_with("server.threads") && p.contains("more than 256"),
        "{p}"
    );
}

#[test]
fn one_run_reports_every_wrong_key_and_value_in_plain_words() {
    let toml = "[server]\nlisten = \"127.0.0.1:0\"\nmax_connections = \"many\"\nhttp2 = \"yes\"\n[kafka]\nbrokers = \"localhost:9092\"\n\
         [[hooks]]\nid = \"a\"\ntopic = \"t\"\nmax_body = -5\ntopik = \"x\"\nauth = { scheme = \"none\" }\n\
         [[hooks]]\nid = \"b\"\ntopic = \"t\"\nmode = \"compact\"\nauth = { scheme = \"none\" }\n";
    let p = problems(toml, &[]);
    for (path, words) in [
        (
            "server.max_connections",
            "expected a whole number, 0 or more, found the string \"many\"",
        ),
        ("server.http2", "expected true or false"),
        ("hooks[0].max_body", "a size cannot be negative"),
        ("hooks[0].topik", "unknown key"),
        ("hooks[1].mode", "`compact` is not one of the choices"),
    ] {
        assert!(
            p.iter().any(|x| x.starts_with(path) && x.contains(words)),
            "{path}: {words} not among {p:#?}"
        );
    }
    for line in &p {
        assert!(!line.contains("`one of `"), "nested backticks: {line}");
        for rust in ["usize", "u64", "u32", "i64", "f64"] {
            assert!(!line.contains(rust), "a Rust type name: {line}");
        }
        assert!(!line.contains("fix the secret reference"), "{line}");
    }
}

#[test]
fn secret_problems_say_what_to_do_and_expires_takes_a_toml_date_time() {
    let with = |secret: &str| {
        format!("{BASE}[[hooks]]\nid = \"a\"\ntopic = \"t\"\nauth = {{ scheme = \"url_key\", secrets = [{secret}] }}\n")
    };
    // A bare TOML date-time and an offset are both times.
    assert!(problems(
        &with("{ value = \"k\", expires = 2099-01-31T00:00:00Z }"),
        &[]
    )
    .is_empty());
    assert!(problems(
        &with("{ value = \"k\", expires = \"2099-01-31T02:00:00+02:00\" }"),
        &[]
    )
    .is_empty());
    assert_eq!(
        one_problem(&with("{ value = \"k\", expires = \"tomorrow\" }")),
        "hooks[0].auth.secrets[0].expires: \"tomorrow\" is not an RFC 3339 time (fix: write a time like \"2027-01-31T00:00:00Z\" or \"2027-01-31T02:00:00+02:00\")"
    );
    assert_eq!(
        one_problem(&with("{ env = \"NOT_SET_ANYWHERE\" }")),
        "hooks[0].auth.secrets[0]: environment variable `NOT_SET_ANYWHERE` is not set (fix: export it, or point the secret at a file)"
    );
    let p = one_problem(&with("{ env = \"A\", value = \"b\" }"));
    assert!(
        p.contains("exactly one of env, file and value") && p.contains("{ env = \"NAME\" }"),
        "{p}"
    );
}

#[test]
fn synchronous_hooks_filters_and_replies_are_checked_with_the_key_and_the_fix() {
    let p = one_problem(&format!("{BASE}{HOOK}respond = {{ with = \"script\" }}\n"));
    assert_eq!(
        p,
        "hooks[0].respond.with: `script` cannot answer a hook (fix: write with = \"flow\")"
    );
    let p = one_problem(&format!(
        "{BASE}{HOOK}respond = {{ with = \"flow\", timeout = \"5m\" }}\n"
    ));
    assert!(
        p.starts_with("hooks[0].respond.timeout") && p.contains("at most 120s"),
        "{p}"
    );
    let p = one_problem(&format!(
        "{BASE}{HOOK}respond = {{ with = \"flow\" }}\nresponse = {{ status = 200 }}\n"
    ));
    assert!(
        p.starts_with("hooks[0].respond") && p.contains("either with `response`"),
        "{p}"
    );
    let p = one_problem(&format!("{BASE}{HOOK}filter = \"trigger.body.n <\"\n"));
    assert!(
        p.starts_with("hooks[0].filter: invalid template or expression"),
        "{p}"
    );
    let p = one_problem(&format!("{BASE}[replies]\nkeep = \"0s\"\n{HOOK}"));
    assert!(
        p.starts_with("replies.keep: must be longer than zero"),
        "{p}"
    );
    let p = one_problem(&format!("{BASE}[replies]\ntopic = \"no way\"\n{HOOK}"));
    assert!(
        p.starts_with("replies.topic") && p.contains("executions_topic"),
        "{p}"
    );
}

#[test]
fn a_cluster_redis_is_checked_and_its_password_never_echoed() {
    let cluster = |body: &str| problems(&format!("{BASE}[cluster]\n{body}\n{HOOK}"), &[]);
    let p = cluster("redis = \"http://cache:6379\"");
    assert!(
        p.len() == 1 && p[0].starts_with("cluster.redis") && p[0].contains("rediss://"),
        "{p:?}"
    );
    let p = cluster("redis = \"redis://:hunter2@cache:6379/0\"");
    assert!(
        p.len() == 1 && p[0].contains("cluster.password") && !p[0].contains("hunter2"),
        "{p:?}"
    );
    let p = cluster("redis = \"redis://cache:6379\"\ntimeout = \"10s\"\nprefix = \"a b\"");
    assert!(p.iter().any(|x| x.starts_with("cluster.timeout")), "{p:?}");
    assert!(p.iter().any(|x| x.starts_with("cluster.prefix")), "{p:?}");
    let p =
        cluster("redis = \"redis://cache:6379\"\npassword = { env = \"NO_SUCH_REDIS_PASSWORD\" }");
    assert!(
        p.len() == 1
            && p[0].starts_with("cluster.password")
            && p[0].contains("NO_SUCH_REDIS_PASSWORD"),
        "{p:?}"
    );
    assert!(cluster("redis = \"rediss://cache:6380/2\"\nusername = \"gw\"").is_empty());
    let p = cluster("redis = \"redis://cache:6379\"\nca_file = \"/no/such/ca.pem\"\ncert_file = \"/no/such/c.pem\"");
    for (key, words) in [
        ("cluster.ca_file", "cannot read `/no/such/ca.pem`"),
        ("cluster.ca_file", "the URL is redis://"),
        ("cluster.cert_file", "needs its key"),
    ] {
        assert!(
            p.iter().any(|x| x.starts_with(key) && x.contains(words)),
            "{key}: {words} not in {p:?}"
        );
    }
    // From the environment like any table (nothing is dialled while loading).
    let env = Environment::from_vars([(
        "HOOKGATE_CLUSTER__REDIS".to_string(),
        "redis://cache:6379/1".to_string(),
    )]);
    let source = Source::Text {
        name: "test".into(),
        toml: format!("{BASE}{HOOK}"),
    };
    let settings = config::load(&source, &env).unwrap();
    assert_eq!(
        settings.cluster.map(|c| c.address).as_deref(),
        Some("redis://cache:6379")
    );
}
