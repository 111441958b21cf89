//! The short versions of the chaos scenarios (docs/reliability.md has the full ones): the
//! `hookgate` binary under load while its broker goes away, while the broker fails and
//! slows produce requests, beside slow clients, and while the gateway is killed and
//! restarted, each ending in the loss check.

use std::path::{Path, PathBuf};
use std::process::Command;

use hookgate_testkit::{brokers, topic};
use serde_json::Value;

/// The `hookgate` binary, built beside this package's by the workspace build.
fn hookgate_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_hookgate-loadtest")).with_file_name("hookgate");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace (scripts/test does)",
        bin.display()
    );
    bin
}

/// The hook's HMAC secret: it must never show in the gateway's output or its events.
const SECRET: &str = "chaos-planted-secret-5f1c";

/// A gateway config and a scenario for it in a fresh directory; returns the directory,
/// the scenario path, the gateway's readiness URL and the topic.
fn files(brokers: &str, create_topics: bool) -> (PathBuf, PathBuf, String, String) {
    let dir = std::env::temp_dir().join(topic("hookgate-chaos"));
    std::fs::create_dir_all(&dir).unwrap();
    let (http, admin) = (hookgate_testkit::free_port(), hookgate_testkit::free_port());
    let events = topic("chaos");
    std::fs::write(
        dir.join("gateway.toml"),
        format!(
            r#"
[server]
listen = "127.0.0.1:{http}"
header_read_timeout = "2s"
body_read_timeout = "2s"
[admin]
listen = "127.0.0.1:{admin}"
[kafka]
brokers = "{brokers}"
create_topics = {create_topics}
partitions = 2
replication_factor = 1
properties = {{ "reconnect.backoff.max.ms" = 500 }}
[[hooks]]
id = "github"
topic = "{events}"
ack_timeout = "1s"
auth = {{ scheme = "hmac", preset = "github", secrets = [{{ value = "{SECRET}" }}] }}
"#
        ),
    )
    .unwrap();
    let scenario = dir.join("chaos.toml");
    std::fs::write(
        &scenario,
        "description = \"chaos\"\ngateway_config = \"gateway.toml\"\nwarmup = \"500ms\"\ntimeout = \"3s\"\n\
         [[hooks]]\nid = \"github\"\nheaders = { \"x-github-event\" = \"push\" }\nbody_bytes = 512\n",
    )
    .unwrap();
    (
        dir.clone(),
        scenario,
        format!("http://127.0.0.1:{admin}/readyz"),
        events,
    )
}

/// Runs `hookgate-loadtest chaos …`; returns the JSON report and the output.
fn chaos(args: &[&str], scenario: &Path, ready: &str, dir: &Path) -> (bool, Value, String) {
    let json = dir.join("report.json");
    let gateway = format!(
        "{} run --config {}",
        hookgate_bin().display(),
        dir.join("gateway.toml").display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate-loadtest"))
        .arg("chaos")
        .args(args)
        .arg("--scenario")
        .arg(scenario)
        .args(["--gateway", &gateway, "--gateway-ready", ready])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = std::fs::read(&json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    // The gateway's logs are part of the output: no run may leak the hook's secret.
    assert!(
        !text.contains(SECRET),
        "the secret is in the output:\n{text}"
    );
    (out.status.success(), report, text)
}

/// Reads every record of `topic` that the loss check read and asserts that none carries
/// the hook's secret, in its value or its headers.
fn assert_events_hold_no_secret(report: &Value, topic: &str) {
    let n = report["verification"]["records_read"].as_u64().unwrap() as usize;
    let records = hookgate_testkit::kafka::read_until(
        &brokers(),
        topic,
        std::time::Duration::from_secs(30),
        |r| r.len() >= n,
    );
    assert!(records.len() >= n, "read {} of {n} records", records.len());
    let secret = SECRET.as_bytes();
    let holds = |bytes: &[u8]| bytes.windows(secret.len()).any(|w| w == secret);
    let leaks = records
        .iter()
        .filter(|r| holds(&r.value) || r.headers.iter().any(|(_, v)| holds(v)))
        .count();
    assert_eq!(
        leaks,
        0,
        "{leaks} of {} events hold the secret",
        records.len()
    );
}

#[test]
fn a_broker_outage_fails_fast_recovers_and_loses_nothing_acknowledged() {
    // The broker is the harness's mock cluster: the config's broker is replaced.
    let (dir, scenario, ready, _) = files("mock", false);
    let (ok, report, text) = chaos(
        &[
            "broker-outage",
            "--rate",
            "200",
            "--duration",
            "8s",
            "--down-at",
            "2s",
            "--down-for",
            "3s",
        ],
        &scenario,
        &ready,
        &dir,
    );
    assert!(ok, "{text}");
    let v = &report["verification"];
    assert_eq!(v["missing"], 0, "{text}");
    assert!(v["acknowledged"].as_u64().unwrap() > 500, "{text}");
    // The outage was seen: answers other than 202 (503 after the ack timeout, or shed).
    let failures: u64 = report["responses"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(status, _)| *status != "202")
        .map(|(_, n)| n.as_u64().unwrap())
        .sum();
    assert!(failures > 100, "{text}");
    assert!(
        report["responses"]["503"].as_u64().unwrap_or(0) > 0,
        "{text}"
    );
    let fault = &report["fault"];
    assert!(
        fault["slowest_failure_ms"].as_f64().unwrap() <= 2_000.0,
        "{text}"
    );
    assert!(
        fault["recovered_within_s"].as_f64().unwrap() <= 3.0,
        "{text}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn produce_errors_and_slow_round_trips_lose_nothing_and_do_not_wedge_the_producer() {
    let (dir, scenario, ready, _) = files("mock", false);
    let (ok, report, text) = chaos(
        &[
            "kafka-faults",
            "--rate",
            "200",
            "--duration",
            "10s",
            "--seed",
            "7",
        ],
        &scenario,
        &ready,
        &dir,
    );
    assert!(ok, "{text}");
    let v = &report["verification"];
    assert_eq!(v["missing"], 0, "{text}");
    assert!(v["acknowledged"].as_u64().unwrap() > 300, "{text}");
    let fault = &report["fault"];
    assert!(fault["errors_injected"].as_u64().unwrap() > 50, "{text}");
    assert!(
        fault["round_trips_ms"].as_array().unwrap().len() >= 6,
        "{text}"
    );
    // After the faults, 2xx answers at (at least half) the offered rate again.
    let after: Vec<u64> = fault["ok_per_s_after"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert!(after.iter().skip(1).all(|n| *n >= 100), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn slow_clients_are_cut_off_in_time_and_leave_no_descriptor_behind() {
    let (dir, scenario, ready, events) = files(&brokers(), true);
    let (ok, report, text) = chaos(
        &[
            "slow-clients",
            "--rate",
            "200",
            "--duration",
            "4s",
            "--slow",
            "200",
        ],
        &scenario,
        &ready,
        &dir,
    );
    assert!(ok, "{text}");
    assert_eq!(report["verification"]["missing"], 0, "{text}");
    let fault = &report["fault"];
    assert_eq!(fault["slow_connections"], 200, "{text}");
    assert_eq!(fault["closed_in_time"], 200, "{text}");
    assert!(
        fault["longest_open_ms"].as_f64().unwrap() <= 3_000.0,
        "{text}"
    );
    // The slow connections were there, then gone.
    let fds: Vec<u64> = fault["fds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert!(fds[1] >= fds[0] + 100, "{text}");
    assert!(fds[2] <= fds[0] + 16, "{text}");
    // Legitimate requests were all accepted meanwhile.
    assert_eq!(report["responses"].as_object().unwrap().len(), 1, "{text}");
    assert!(report["responses"]["202"].as_u64().unwrap() > 600, "{text}");
    assert_events_hold_no_secret(&report, &events);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn killing_the_gateway_loses_nothing_acknowledged() {
    let (dir, scenario, ready, events) = files(&brokers(), true);
    let (ok, report, text) = chaos(
        &[
            "gateway-kill",
            "--rate",
            "200",
            "--duration",
            "8s",
            "--kills",
            "3",
            "--seed",
            "42",
        ],
        &scenario,
        &ready,
        &dir,
    );
    assert!(ok, "{text}");
    let v = &report["verification"];
    assert_eq!(v["missing"], 0, "{text}");
    assert!(v["acknowledged"].as_u64().unwrap() > 500, "{text}");
    let fault = &report["fault"];
    assert_eq!(fault["kills"], 3, "{text}");
    assert_eq!(fault["restart_ms"].as_array().unwrap().len(), 3, "{text}");
    // The kills were felt: connections refused or reset while it was down.
    let errors = &report["errors"];
    let total: u64 = ["connect", "timeout", "io"]
        .iter()
        .map(|k| errors[k].as_u64().unwrap_or(0))
        .sum();
    assert!(total > 0, "{text}");
    assert_events_hold_no_secret(&report, &events);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn http2_abusers_are_cut_off_and_legitimate_requests_keep_flowing() {
    let (dir, scenario, ready, events) = files(&brokers(), true);
    let (ok, report, text) = chaos(
        &[
            "h2-abuse",
            "--rate",
            "200",
            "--duration",
            "3s",
            "--abusers",
            "4",
        ],
        &scenario,
        &ready,
        &dir,
    );
    assert!(ok, "{text}");
    assert_eq!(report["verification"]["missing"], 0, "{text}");
    let fault = &report["fault"];
    // Rapid reset: GOAWAY(ENHANCE_YOUR_CALM) within the first few batches, every time.
    let reset = &fault["rapid_reset"];
    assert!(reset["connections"].as_u64().unwrap() >= 2, "{text}");
    assert_eq!(reset["goaway_calm"], reset["connections"], "{text}");
    assert!(
        reset["most_sent_bytes"].as_u64().unwrap() < 8 << 20,
        "{text}"
    );
    // CONTINUATION flood: a GOAWAY once the header list passes max_header_bytes, far
    // short of the flood.
    let flood = &fault["continuation_flood"];
    assert!(flood["connections"].as_u64().unwrap() >= 2, "{text}");
    let goaways = flood["goaway_calm"].as_u64().unwrap() + flood["goaway_other"].as_u64().unwrap();
    assert_eq!(goaways, flood["connections"].as_u64().unwrap(), "{text}");
    assert!(
        flood["most_sent_bytes"].as_u64().unwrap() < 8 << 20,
        "{text}"
    );
    // Legitimate requests were all accepted meanwhile.
    assert_eq!(report["responses"].as_object().unwrap().len(), 1, "{text}");
    assert!(report["responses"]["202"].as_u64().unwrap() > 400, "{text}");
    assert_events_hold_no_secret(&report, &events);
    let _ = std::fs::remove_dir_all(dir);
}
