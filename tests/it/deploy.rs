//! The deploy files as a linter and the programs themselves read them: every YAML
//! document of deploy/ parses, the configs the manifests mount are read by the
//! gateway's, consumer's and console's own loaders, the compose file mounts only files
//! that exist, and checkov (the Kubernetes and Dockerfile frameworks, the skips in
//! deploy/kubernetes/.checkov.yaml) fails no check, and every object matches Kubernetes'
//! API schemas (kubernetes-validate, strict). The Helm chart, linted and rendered
//! by Helm's own code, renders the same objects as the plain manifests, passes checkov,
//! and names what is missing or misspelt in its values.

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

/// The YAML files under `dir`, but a Helm chart's templates (YAML only once rendered).
fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir()
            && path.ends_with("templates")
            && path.with_file_name("Chart.yaml").exists()
        {
            continue;
        } else if path.is_dir() {
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

fn chart() -> PathBuf {
    root().join("deploy/helm/hookgate")
}

/// Helm's chart code on `chart()` (tests/it/support/helm.py): lint's report, or the
/// rendered documents, or `{"error": …}`.
fn helm(args: &[&str], values: &serde_json::Value) -> serde_json::Value {
    let out = Command::new(python())
        .arg(root().join("tests/it/support/helm.py"))
        .arg(args[0])
        .arg(chart())
        .arg(values.to_string())
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The rendered documents of the release `hookgate` in namespace `hookgate`.
fn render(values: &serde_json::Value) -> Vec<serde_json::Value> {
    let out = helm(&["render", "hookgate", "hookgate"], values);
    assert!(out["error"].is_null(), "{}", out["error"]);
    out["documents"].as_array().unwrap().clone()
}

/// The three configs of deploy/kubernetes/config, as `--set-file` gives them.
fn configs() -> serde_json::Value {
    let file = |name: &str| {
        std::fs::read_to_string(root().join("deploy/kubernetes/config").join(name)).unwrap()
    };
    serde_json::json!({"config": {
        "gateway": file("hookgate.toml"),
        "consumer": file("hookgate-consumer.toml"),
        "console": file("hookgate-console.toml"),
    }})
}

fn with(mut values: serde_json::Value, more: serde_json::Value) -> serde_json::Value {
    for (key, value) in more.as_object().unwrap() {
        values[key] = value.clone();
    }
    values
}

fn find<'a>(
    docs: &'a [serde_json::Value],
    kind: &str,
    name: &str,
) -> Option<&'a serde_json::Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

/// An object without what only one side has: labels and annotations (Helm's own, the
/// config checksum), the release's instance label in selectors.
fn comparable(doc: &serde_json::Value) -> serde_json::Value {
    fn strip(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                map.remove("app.kubernetes.io/instance");
                if let Some(meta) = map.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                    meta.remove("labels");
                    meta.remove("annotations");
                }
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut doc = doc.clone();
    strip(&mut doc);
    doc
}

#[test]
fn the_helm_chart_lints_clean_and_renders_what_the_plain_manifests_apply() {
    let report = helm(&["lint"], &configs());
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    // Strict: warnings fail; what is left is advice (severity 1: "icon is recommended").
    for message in report["messages"].as_array().unwrap() {
        assert!(message["severity"].as_i64().unwrap() < 2, "{message}");
    }

    let rendered = render(&configs());
    let mut plain = Vec::new();
    for file in ["gateway", "consumer", "console", "network-policy"] {
        plain.extend(documents(
            &root().join(format!("deploy/kubernetes/{file}.yaml")),
        ));
    }
    assert_eq!(rendered.len(), plain.len() + 1, "the ConfigMap besides");
    for doc in &plain {
        let (kind, name) = (
            doc["kind"].as_str().unwrap(),
            doc["metadata"]["name"].as_str().unwrap(),
        );
        let chart = find(&rendered, kind, name)
            .unwrap_or_else(|| panic!("the chart renders no {kind} {name}"));
        let mut doc = comparable(doc);
        // The autoscaler owns the gateway's count: the chart leaves `replicas` out.
        if kind == "Deployment" && chart["spec"]["replicas"].is_null() {
            assert!(
                find(&rendered, "HorizontalPodAutoscaler", name).is_some(),
                "{name}"
            );
            doc["spec"].as_object_mut().unwrap().remove("replicas");
        }
        assert_eq!(
            comparable(chart),
            doc,
            "{kind} {name}: the chart and deploy/kubernetes differ"
        );
    }
    // The ConfigMap holds the configs as given, and every pod rolls when they change.
    let config = find(&rendered, "ConfigMap", "hookgate-config").unwrap();
    for (key, value) in [
        ("hookgate.toml", "gateway"),
        ("hookgate-consumer.toml", "consumer"),
        ("hookgate-console.toml", "console"),
    ] {
        assert_eq!(config["data"][key], configs()["config"][value], "{key}");
    }
    let checksum = |values: &serde_json::Value| {
        render(values)
            .iter()
            .filter(|d| d["kind"] == "Deployment")
            .map(|d| d["spec"]["template"]["metadata"]["annotations"]["checksum/config"].clone())
            .collect::<Vec<_>>()
    };
    let before = checksum(&configs());
    let mut changed = configs();
    changed["config"]["consumer"] = format!(
        "{}\n# changed\n",
        changed["config"]["consumer"].as_str().unwrap()
    )
    .into();
    let after = checksum(&changed);
    assert_eq!(before.len(), 3);
    assert!(
        before.iter().all(|c| c.is_string() && *c == before[0]),
        "{before:?}"
    );
    assert!(after.iter().all(|c| *c != before[0]), "{after:?}");
}

/// The chart rendered with `configs()`, as one YAML file in a directory of its own
/// (removed when dropped).
struct RenderedChart(PathBuf);

impl RenderedChart {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("hookgate-helm-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let yaml: Vec<String> = render(&configs())
            .iter()
            .map(|doc| serde_json::to_string(doc).unwrap())
            .collect();
        // JSON is YAML: one document each.
        std::fs::write(dir.join("hookgate.yaml"), yaml.join("\n---\n")).unwrap();
        Self(dir)
    }

    fn file(&self) -> PathBuf {
        self.0.join("hookgate.yaml")
    }
}

impl Drop for RenderedChart {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn checkov_fails_no_check_of_the_rendered_helm_chart() {
    let rendered = RenderedChart::new();
    let out = run_checkov(&[
        "-d",
        rendered.0.to_str().unwrap(),
        "--framework",
        "kubernetes",
    ]);
    assert!(out.contains("Failed checks: 0"), "{out}");
    assert!(!out.contains("Passed checks: 0,"), "nothing checked: {out}");
}

#[test]
fn the_helm_chart_follows_its_values_and_names_what_is_wrong() {
    let error = |values: serde_json::Value| {
        let out = helm(&["render", "hookgate", "hookgate"], &values);
        out["error"]
            .as_str()
            .unwrap_or_else(|| panic!("rendered: {out}"))
            .to_owned()
    };
    // No config: the key and how to give it.
    let missing = error(serde_json::json!({}));
    assert!(
        missing.contains("config.gateway is required")
            && missing.contains("--set-file config.gateway=hookgate.toml"),
        "{missing}"
    );
    let no_console = error(with(
        configs(),
        serde_json::json!({"config": {"gateway": "x", "consumer": "y"}}),
    ));
    assert!(
        no_console.contains("config.console is required while console.enabled"),
        "{no_console}"
    );
    // values.schema.json: a wrong type, a misspelt key, an image digest that is not one.
    let wrong = error(with(
        configs(),
        serde_json::json!({"gateway": {"replicas": "two"}}),
    ));
    assert!(
        wrong.contains("/gateway/replicas") && wrong.contains("want integer"),
        "{wrong}"
    );
    let misspelt = error(with(
        configs(),
        serde_json::json!({"gatway": {"replicas": 3}}),
    ));
    assert!(misspelt.contains("'gatway' not allowed"), "{misspelt}");
    let digest = error(with(
        configs(),
        serde_json::json!({"image": {"repository": "r", "digest": "sha256:abc"}}),
    ));
    assert!(digest.contains("/image/digest"), "{digest}");

    // Another release, in another namespace, with the options turned.
    let digest = format!("sha256:{}", "ab".repeat(32));
    let values = with(
        configs(),
        serde_json::json!({
            "config": {"gateway": "# the gateway\n", "consumer": "# the consumer\n"},
            "image": {"repository": "registry.example/hookgate", "digest": digest},
            "gateway": {"replicas": 3, "autoscaling": {"enabled": false}, "service": {"type": "LoadBalancer", "port": 8443}},
            "console": {"enabled": false},
            "networkPolicy": {"enabled": true, "metricsPodLabels": {"team": "observability"}},
        }),
    );
    let out = helm(&["render", "payments", "edge"], &values);
    let docs = out["documents"]
        .as_array()
        .unwrap_or_else(|| panic!("{out}"));
    assert!(docs.iter().all(|d| d["metadata"]["namespace"] == "edge"));
    assert!(docs.iter().all(|d| d["metadata"]["name"]
        .as_str()
        .unwrap()
        .starts_with("payments-hookgate-")));
    assert!(
        !docs
            .iter()
            .any(|d| d["metadata"]["name"].as_str().unwrap().contains("console")),
        "console objects with console.enabled = false"
    );
    assert!(find(docs, "HorizontalPodAutoscaler", "payments-hookgate-gateway").is_none());
    let gateway = find(docs, "Deployment", "payments-hookgate-gateway").unwrap();
    assert_eq!(gateway["spec"]["replicas"], 3);
    let pod = &gateway["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["image"],
        format!("registry.example/hookgate@{digest}")
    );
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"],
        "payments-hookgate-config"
    );
    let selector = &gateway["spec"]["selector"]["matchLabels"];
    assert_eq!(selector["app.kubernetes.io/instance"], "payments");
    assert_eq!(pod.get("labels"), None);
    let service = find(docs, "Service", "payments-hookgate-gateway").unwrap();
    assert_eq!(service["spec"]["type"], "LoadBalancer");
    assert_eq!(service["spec"]["ports"][0]["port"], 8443);
    let config = find(docs, "ConfigMap", "payments-hookgate-config").unwrap();
    assert_eq!(
        config["data"],
        serde_json::json!({"hookgate.toml": "# the gateway\n", "hookgate-consumer.toml": "# the consumer\n"})
    );
    // The console's index outlives `helm uninstall`, on the storage class given.
    let stored = render(&with(
        configs(),
        serde_json::json!({"console": {"persistence": {"size": "20Gi", "storageClass": "fast"}}}),
    ));
    let index = find(&stored, "PersistentVolumeClaim", "hookgate-console-index").unwrap();
    assert_eq!(
        index["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    assert_eq!(index["spec"]["storageClassName"], "fast");
    assert_eq!(index["spec"]["resources"]["requests"]["storage"], "20Gi");

    // Every pod gets the scheduling and annotations given, beside the configs' checksum.
    let placed = with(
        configs(),
        serde_json::json!({
            "podAnnotations": {"team": "edge"},
            "nodeSelector": {"pool": "webhooks"},
            "tolerations": [{"key": "webhooks", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
        }),
    );
    let pods: Vec<serde_json::Value> = render(&placed)
        .into_iter()
        .filter(|d| d["kind"] == "Deployment")
        .map(|d| d["spec"]["template"].clone())
        .collect();
    assert_eq!(pods.len(), 3);
    for pod in &pods {
        assert_eq!(pod["metadata"]["annotations"]["team"], "edge");
        assert!(pod["metadata"]["annotations"]["checksum/config"].is_string());
        assert_eq!(
            pod["spec"]["nodeSelector"],
            serde_json::json!({"pool": "webhooks"})
        );
        assert_eq!(pod["spec"]["tolerations"][0]["key"], "webhooks");
        assert_eq!(pod["spec"]["affinity"], placed["affinity"]);
    }
    let policy = find(docs, "NetworkPolicy", "payments-hookgate-gateway").unwrap();
    assert_eq!(
        policy["spec"]["ingress"][1]["from"][0]["podSelector"]["matchLabels"],
        serde_json::json!({"team": "observability"})
    );
}

#[test]
fn the_manifests_and_the_rendered_chart_match_the_kubernetes_api_schemas() {
    let rendered = RenderedChart::new();
    let mut files: Vec<PathBuf> = [
        "namespace",
        "gateway",
        "consumer",
        "console",
        "network-policy",
    ]
    .iter()
    .map(|f| root().join(format!("deploy/kubernetes/{f}.yaml")))
    .collect();
    files.push(rendered.file());
    // The oldest version the chart accepts (Chart.yaml's kubeVersion) and the newest known.
    for version in ["1.30.0", "1.37.0"] {
        let out = Command::new(checkov().with_file_name("kubernetes-validate"))
            .args(["--strict", "--quiet", "--kubernetes-version", version])
            .args(&files)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "Kubernetes {version}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
