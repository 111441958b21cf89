//! The container image as its Dockerfile describes it: pinned base images, a small build
//! context, both listeners exposed, a health check that works, and a default command whose
//! config file is in the image. (No Docker engine runs here, so the file is read, and the
//! health check command is run against a real gateway.)

use std::process::Command;

use crate::support::GatewayBuilder;

fn root_file(name: &str) -> String {
    std::fs::read_to_string(format!("{}/{name}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The Dockerfile's instructions, continuation lines joined.
fn instructions() -> Vec<(String, String)> {
    let text = root_file("Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                let (op, rest) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((op.to_uppercase(), rest.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

#[test]
fn base_images_are_pinned_to_a_release() {
    let froms: Vec<String> = instructions()
        .into_iter()
        .filter(|(op, _)| op == "FROM")
        .map(|(_, rest)| rest.split_whitespace().next().unwrap().to_string())
        .collect();
    assert!(froms.len() >= 2, "a build and a runtime stage: {froms:?}");
    for image in froms {
        let (_, tag) = image
            .split_once(':')
            .unwrap_or_else(|| panic!("{image} has no tag"));
        let version = tag.split('-').next().unwrap();
        assert!(
            version.split('.').count() >= 2 && version.split('.').all(|p| p.parse::<u32>().is_ok()),
            "{image}: pin a release such as 1.95.0 or 12.12, not `{tag}`"
        );
    }
}

#[test]
fn the_build_context_leaves_out_build_output_and_history() {
    let ignored: Vec<String> = root_file(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    for needed in ["target/", ".git/"] {
        assert!(
            ignored.iter().any(|l| l == needed),
            "{needed} is not in .dockerignore"
        );
    }
}

#[test]
fn both_listeners_are_exposed_and_the_default_config_is_in_the_image() {
    let ins = instructions();
    let exposed: Vec<&str> = ins
        .iter()
        .filter(|(op, _)| op == "EXPOSE")
        .flat_map(|(_, rest)| rest.split_whitespace())
        .collect();
    // The ports of the defaults and of the config the image carries.
    let defaults = root_file("config/defaults.toml");
    let port = |text: &str, table: &str| -> String {
        let section = text.split(&format!("[{table}]")).nth(1).unwrap();
        let listen = section.lines().find(|l| l.starts_with("listen")).unwrap();
        listen
            .trim_end_matches('"')
            .rsplit(':')
            .next()
            .unwrap()
            .to_string()
    };
    for table in ["server", "admin"] {
        let p = port(&defaults, table);
        assert!(
            exposed.contains(&p.as_str()),
            "port {p} of [{table}] is not exposed: {exposed:?}"
        );
    }
    let cmd = &ins.iter().rfind(|(op, _)| op == "CMD").expect("a CMD").1;
    let args: Vec<String> = serde_json::from_str(cmd).expect("CMD in exec form");
    let config = &args[args.iter().position(|a| a == "--config").unwrap() + 1];
    let copied = ins.iter().any(|(op, rest)| {
        op == "COPY"
            && !rest.starts_with("--from")
            && rest.split_whitespace().last() == Some(config)
    });
    assert!(
        copied,
        "{config}, the CMD's config, is not copied into the image"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_health_check_command_tells_ready_from_not() {
    let ins = instructions();
    let check = &ins
        .iter()
        .find(|(op, _)| op == "HEALTHCHECK")
        .expect("a HEALTHCHECK")
        .1;
    let exec = check
        .split("CMD")
        .nth(1)
        .expect("HEALTHCHECK … CMD [...]")
        .trim();
    let args: Vec<String> = serde_json::from_str(exec).expect("exec form");
    assert_eq!(args[0], "/usr/local/bin/hookgate");
    assert_eq!(args[1], "healthcheck");

    let gw = GatewayBuilder::new()
        .brokers("unused:9092")
        .null_sink()
        .hook("id = \"o\"\ntopic = \"t\"\nauth = { scheme = \"none\" }")
        .start()
        .await;
    let admin = gw.admin_url.trim_start_matches("http://").to_string();
    let run = |admin: &str| {
        Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(["healthcheck", "--admin", admin])
            .output()
            .unwrap()
    };
    let ready = tokio::task::spawn_blocking({
        let admin = admin.clone();
        move || run(&admin)
    })
    .await
    .unwrap();
    assert!(
        ready.status.success(),
        "{}",
        String::from_utf8_lossy(&ready.stderr)
    );
    gw.stop().await.unwrap();
    let gone = tokio::task::spawn_blocking(move || run(&admin))
        .await
        .unwrap();
    assert!(!gone.status.success(), "a stopped gateway is not healthy");
    assert!(String::from_utf8_lossy(&gone.stderr).contains("cannot reach the admin listener"));
}
