//! `hookgate sign`: for every scheme and preset, the curl command it prints, run as
//! printed, is accepted by a gateway running the same config.

use std::process::Command;

use crate::support::GatewayBuilder;

const HOOKS: &[(&str, &str)] = &[
    ("open", "auth = { scheme = \"none\" }"),
    ("keyed", "auth = { scheme = \"url_key\", secrets = [{ value = \"k3y\" }] }"),
    ("basic", "auth = { scheme = \"basic\", credentials = [{ username = \"ci\", password = { value = \"pw\" } }] }"),
    ("apikey", "auth = { scheme = \"api_key\", query = \"api-key\", secrets = [{ value = \"ak\" }] }"),
    ("gitlab", "auth = { scheme = \"token\", preset = \"gitlab\", secrets = [{ value = \"gl\" }] }"),
    ("github", "auth = { scheme = \"hmac\", preset = \"github\", secrets = [{ value = \"gh\" }] }"),
    ("stripe", "auth = { scheme = \"hmac\", preset = \"stripe\", secrets = [{ value = \"whsec_abc\" }] }"),
    ("slack", "auth = { scheme = \"hmac\", preset = \"slack\", secrets = [{ value = \"sl\" }] }"),
    ("shopify", "auth = { scheme = \"hmac\", preset = \"shopify\", secrets = [{ value = \"sh\" }] }"),
    ("svix", "auth = { scheme = \"hmac\", preset = \"standard_webhooks\", secrets = [{ value = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }] }"),
    ("zoom", "auth = { scheme = \"hmac\", preset = \"zoom\", secrets = [{ value = \"zm\" }] }"),
    ("twilio", "auth = { scheme = \"hmac\", preset = \"twilio\", public_url = \"https://hooks.example.com\", secrets = [{ value = \"tw\" }] }"),
];

#[tokio::test(flavor = "multi_thread")]
async fn the_printed_curl_command_is_accepted_for_every_scheme() {
    let mut builder = GatewayBuilder::new().brokers("unused:9092").null_sink();
    for (id, auth) in HOOKS {
        builder = builder.hook(&format!("id = \"{id}\"\ntopic = \"t\"\n{auth}"));
    }
    let config_text = builder.toml();
    let gw = builder.start().await;
    let dir = std::env::temp_dir().join(format!("hookgate-sign-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("hookgate.toml");
    std::fs::write(&config, config_text).unwrap();
    let json_body = dir.join("body.json");
    std::fs::write(
        &json_body,
        r#"{"id":"evt_1","event_id":"Ev1","type":"test"}"#,
    )
    .unwrap();
    let form_body = dir.join("body.form");
    std::fs::write(&form_body, "From=%2B15551234567&Body=hello+there").unwrap();

    for (id, _) in HOOKS {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookgate"));
        cmd.args(["sign", "--curl", "--hook", id, "--url", &gw.url, "--config"])
            .arg(&config);
        if *id == "twilio" {
            cmd.args([
                "--content-type",
                "application/x-www-form-urlencoded",
                "--body",
            ])
            .arg(&form_body);
        } else {
            cmd.arg("--body").arg(&json_body);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let curl = String::from_utf8(out.stdout).unwrap();
        assert!(curl.starts_with("curl "), "{curl}");
        let reply = Command::new("sh").arg("-c").arg(&curl).output().unwrap();
        let text = String::from_utf8_lossy(&reply.stdout);
        assert!(text.starts_with("HTTP/1.1 202"), "{id}: {curl}\n{text}");
    }

    // Without --curl: the request line and the headers.
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["sign", "--hook", "github", "--config"])
        .arg(&config)
        .arg("--body")
        .arg(&json_body)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("POST http://127.0.0.1:0/hooks/github"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("x-hub-signature-256: sha256=")),
        "{text}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["sign", "--hook", "nope", "--config"])
        .arg(&config)
        .arg("--body")
        .arg(&json_body)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no hook `nope`"));
    std::fs::remove_dir_all(dir).unwrap();
    gw.stop().await.unwrap();
}
