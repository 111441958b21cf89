//! The deploy files as a linter and the programs themselves read them: every YAML
//! document of deploy/ parses, the configs the manifests mount are read by the
//! gateway's, consumer's and console's own loaders, the compose file mounts only files
//! that exist, and checkov (the Kubernetes and Dockerfile frameworks, the skips in
//! deploy/kubernetes/.checkov.yaml) fails no check.

use std::path::{Path, PathBuf};
use std::process::Command;

use hookgate_common::config::{Environment, Source};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// checkov from the virtualenv scripts/test makes (`HOOKGATE_CHECKOV`).
fn checkov() -> PathBuf {
    PathBuf::from(std::env::var("HOOKGATE_CHECKOV").expect(
        "HOOKGATE_CHECKOV is not set: run the suite with scripts/test, which installs checkov",
    ))
}

/// The Python of checkov's virtualenv, which has PyYAML.
fn python() -> PathBuf {
    checkov().with_file_name("python")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// Every document of `file`, as JSON.
fn documents(file: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(python())
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} does not parse: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_yaml_document_parses_and_every_manifest_is_namespaced() {
    let mut files = Vec::new();
    yaml_files(&root().join("deploy"), &mut files);
    assert!(files.len() >= 10, "{files:?}");
    for file in &files {
        let docs = documents(file);
        assert!(!docs.is_empty(), "{} is empty", file.display());
        if file.starts_with(root().join("deploy/kubernetes")) {
            // The manifests: every object but the namespace itself is in it.
            let objects = docs.iter().filter(|d| {
                d["apiVersion"].is_string()
                    && d["kind"] != "Namespace"
                    && d["kind"] != "Kustomization"
            });
            for doc in objects {
                assert_eq!(
                    doc["metadata"]["namespace"],
                    "hookgate",
                    "{} {}",
                    file.display(),
                    doc["metadata"]["name"]
                );
            }
        }
    }
}

#[test]
fn the_configs_the_manifests_mount_are_read_by_the_programs() {
    let env = Environment::default();
    for dir in ["deploy/kubernetes/config", "deploy/compose"] {
        let file = |name: &str| Source::File(root().join(dir).join(name));
        let gateway = hookgate_gateway::config::Config::load(&file("hookgate.toml"), &env)
            .unwrap_or_else(|e| panic!("{dir}/hookgate.toml: {e}"));
        assert!(!gateway.hooks.is_empty());
        hookgate_consumer::config::ConsumerConfig::load(&file("hookgate-consumer.toml"), &env)
            .unwrap_or_else(|e| panic!("{dir}/hookgate-consumer.toml: {e}"));
        hookgate_console::config::ConsoleConfig::load(&file("hookgate-console.toml"), &env)
            .unwrap_or_else(|e| panic!("{dir}/hookgate-console.toml: {e}"));
    }
    // The kustomization makes its ConfigMap from files that exist.
    let kustomization = documents(&root().join("deploy/kubernetes/kustomization.yaml"));
    for resource in kustomization[0]["resources"].as_array().unwrap() {
        let path = root()
            .join("deploy/kubernetes")
            .join(resource.as_str().unwrap());
        assert!(path.exists(), "{}", path.display());
    }
    for entry in kustomization[0]["configMapGenerator"][0]["files"]
        .as_array()
        .unwrap()
    {
        let (_, path) = entry.as_str().unwrap().split_once('=').unwrap();
        assert!(
            root().join("deploy/kubernetes").join(path).exists(),
            "{path}"
        );
    }
}

#[test]
fn the_compose_file_mounts_files_that_exist() {
    let compose = &documents(&root().join("deploy/compose/compose.yaml"))[0];
    let mut mounts = 0;
    for (name, service) in compose["services"].as_object().unwrap() {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            if source.starts_with('.') {
                let path = root().join("deploy/compose").join(source);
                assert!(
                    path.exists(),
                    "{name} mounts {}, which is missing",
                    path.display()
                );
                mounts += 1;
            }
        }
    }
    assert!(mounts >= 6, "{mounts} local mounts");
    let services: Vec<&String> = compose["services"].as_object().unwrap().keys().collect();
    for wanted in [
        "kafka",
        "redis",
        "gateway-a",
        "gateway-b",
        "haproxy",
        "consumer",
        "console",
        "prometheus",
        "grafana",
    ] {
        assert!(
            services.iter().any(|s| *s == wanted),
            "no {wanted} in {services:?}"
        );
    }
}

fn run_checkov(args: &[&str]) -> String {
    let out = Command::new(checkov())
        .current_dir(root())
        .args(args)
        .args([
            "--compact",
            "--skip-download",
            "--config-file",
            "deploy/kubernetes/.checkov.yaml",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "checkov {args:?} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn checkov_fails_no_check_of_the_manifests_or_the_dockerfile() {
    let k8s = run_checkov(&["-d", "deploy/kubernetes", "--framework", "kubernetes"]);
    assert!(k8s.contains("Failed checks: 0"), "{k8s}");
    assert!(!k8s.contains("Passed checks: 0,"), "nothing checked: {k8s}");
    let docker = run_checkov(&["-f", "Dockerfile", "--framework", "dockerfile"]);
    assert!(docker.contains("Failed checks: 0"), "{docker}");
    assert!(
        !docker.contains("Passed checks: 0,"),
        "nothing checked: {docker}"
    );
}
