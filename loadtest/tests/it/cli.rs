//! The `hookgate-loadtest` command line: starting the server itself, the JSON report and
//! the chart, and errors that name what to fix.

use std::process::Command;

const EXE: &str = env!("CARGO_BIN_EXE_hookgate-loadtest");

fn out_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(hookgate_testkit::topic("hookgate-loadtest-cli"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn spawns_pins_and_stops_the_server_and_charges_its_cpu() {
    let port = hookgate_testkit::free_port();
    let dir = out_dir();
    let (json, chart) = (dir.join("report.json"), dir.join("report.svg"));
    let output = Command::new(EXE)
        .args(["run", "--url", &format!("http://127.0.0.1:{port}/hooks/x")])
        .args([
            "--connections",
            "4",
            "--duration",
            "700ms",
            "--warmup",
            "0s",
        ])
        .args(["--body-size", "512"])
        .arg("--spawn")
        .arg(format!("{EXE} baseline --listen 127.0.0.1:{port}"))
        .args(["--spawn-cpus", "0"])
        .arg("--json")
        .arg(&json)
        .arg("--chart")
        .arg(&chart)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // The baseline's own "listening on" line went to stderr, not into the report.
    assert!(stderr.contains("listening on"), "{stderr}");
    assert!(!stdout.contains("listening on"), "{stdout}");
    assert!(stderr.contains("the server stopped"), "{stderr}");

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let pid = report["server_pid"].as_u64().unwrap();
    assert!(report["responses"]["202"].as_u64().unwrap() > 0);
    assert!(report["server_cpu_us_per_request"].as_f64().unwrap() > 0.0);
    assert!(report["server_peak_rss_kib"].as_u64().unwrap() > 0);
    // Stopped (and reaped) after the run.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_scenario_naming_a_missing_hook_is_refused_with_the_key() {
    let dir = out_dir();
    std::fs::write(
        dir.join("gateway.toml"),
        "[kafka]\nbrokers = \"127.0.0.1:9\"\n[[hooks]]\nid = \"a\"\ntopic = \"t\"\nauth = { scheme = \"none\" }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("s.toml"),
        "gateway_config = \"gateway.toml\"\n[[hooks]]\nid = \"b\"\n",
    )
    .unwrap();
    let output = Command::new(EXE)
        .args(["run", "--scenario"])
        .arg(dir.join("s.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("hooks[0].id: the gateway config has no hook `b` (its hooks: a)"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn url_or_scenario_is_required_and_they_exclude_each_other() {
    let none = Command::new(EXE).arg("run").output().unwrap();
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("--url"));
    let both = Command::new(EXE)
        .args([
            "run",
            "--scenario",
            "x.toml",
            "--url",
            "http://127.0.0.1:1/",
        ])
        .output()
        .unwrap();
    assert!(!both.status.success());
    assert!(String::from_utf8_lossy(&both.stderr).contains("cannot be used with"));
}
