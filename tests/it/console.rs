//! The console in a real browser (headless Chromium through chromedriver), over a real
//! gateway, broker and flow consumer: an operator logs in, finds a delivery posted a
//! moment earlier, reads why a request was refused, follows a flow run to the channel id
//! one task handed the next, and redrives the run that failed from the dead-letter page.
//! A payload written to attack the page stays text, and the console refuses wrong
//! credentials and a form without its CSRF token. The pages it passes through are saved
//! as screenshots (docs/console/*.png when HOOKGATE_UPDATE_SCREENSHOTS=1).

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hookgate_common::config::{Environment, Secret, SecretSet, Source};
use serde_json::{json, Value};

use crate::flows::{apis_with, consumer_config};
use crate::support::{http, topic, GatewayBuilder, RunningConsumer};

const TOKEN: &str = "browser-test-token-4e81";
const CHANNEL_ID: &str = "C7702";

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let port = hookgate_testkit::free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; scripts/test installs it)");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http::get(&format!("{url}/status")).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Driver { child, url }
    }

    async fn browser(&self, profile: &std::path::Path) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Saves a screenshot of the page; checks it is a PNG.
async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name} is not a PNG");
    let dir = if std::env::var_os("HOOKGATE_UPDATE_SCREENSHOTS").is_some() {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/console")
    } else {
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
    };
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Opens `url` again until it shows an element `css` selects (the index lags the topics).
async fn open_until(browser: &Client, url: &str, css: &str) {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        browser.goto(url).await.unwrap();
        if browser.find(Locator::Css(css)).await.is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "no {css} on {url} within 45 s");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The text of the first element `css` selects, once the page has one.
async fn text(browser: &Client, css: &str) -> String {
    browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// Clicks the first element `css` selects, once the page has one.
async fn click(browser: &Client, css: &str) {
    browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn path(browser: &Client) -> String {
    browser.current_url().await.unwrap().path().to_string()
}

/// Waits until the browser is on `wanted` (a click returns before its page loads).
async fn wait_path(browser: &Client, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while path(browser).await != wanted {
        assert!(
            Instant::now() < deadline,
            "still on {} instead of {wanted}",
            path(browser).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn log_in(browser: &Client, base: &str, token: &str) {
    browser.goto(&format!("{base}/login")).await.unwrap();
    browser
        .find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    click(browser, "#token-submit").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_finds_deliveries_runs_and_refusals_and_redrives_a_failed_run_in_a_browser() {
    let (orders, alerts, rejections) = (topic("orders"), topic("alerts"), topic("rejections"));
    let gw = GatewayBuilder::tansu()
        .kafka("partitions = 1")
        .rejections(&format!("topic = \"{rejections}\""))
        .hook(&format!(
            "id = \"orders\"\ntopic = \"{orders}\"\nauth = {{ scheme = \"none\" }}"
        ))
        .hook(&format!("id = \"alerts\"\ntopic = \"{alerts}\"\nauth = {{ scheme = \"url_key\", secrets = [{{ value = \"k3y\" }}] }}"))
        .start()
        .await;
    let pager_refuses = Arc::new(AtomicBool::new(true));
    let server = apis_with(pager_refuses.clone()).await;
    let (_, config, env) = consumer_config(
        &server,
        &[&orders, &alerts],
        include_str!("../../config/flows/scenarios.toml"),
        None,
    )
    .await;
    let consumer = RunningConsumer::start(config.build(&env, "test consumer").unwrap());

    let gateway_config = hookgate_gateway::config::Config::load(
        &Source::File(gw.config_path.clone()),
        &Environment::default(),
    )
    .unwrap();
    let (hooks, rejections_topic) = hookgate_console::config::hook_views(&gateway_config);
    let dir =
        std::env::temp_dir().join(format!("console-browser-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let settings = hookgate_console::Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        group: topic("console"),
        index: hookgate_console::config::IndexSettings {
            path: dir.join("index.db"),
            body_limit: 64 * 1024,
            retention: hookgate_console::index::Retention {
                max_age: Duration::from_secs(3600),
                max_events: 10_000,
            },
        },
        login: hookgate_console::config::Login {
            token: Some(SecretSet::new(&[Secret::new(
                TOKEN.as_bytes().to_vec(),
                None,
            )])),
            basic: None,
        },
        hooks,
        rejections_topic,
        consumer: Arc::new(config.build(&env, "test console").unwrap()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let console = hookgate_console::Running::start(settings, listener).unwrap();
    let base = console.url();

    let driver = Driver::start().await;
    let browser = driver.browser(&dir.join("profile")).await;

    // Without a login, a page sends the browser to the login; a wrong token stays there.
    browser.goto(&format!("{base}/deliveries")).await.unwrap();
    assert_eq!(path(&browser).await, "/login");
    log_in(&browser, &base, "not-the-token").await;
    browser
        .wait()
        .for_element(Locator::Id("login-error"))
        .await
        .unwrap();
    assert_eq!(path(&browser).await, "/login");
    assert_eq!(text(&browser, "#login-error").await, "wrong credentials");
    log_in(&browser, &base, TOKEN).await;
    wait_path(&browser, "/hooks").await;

    // A delivery whose payload is written to attack the page, a refused request, and
    // an alert that starts the war-room flow.
    let attack = "<script>window.__xss=1;alert('xss')</script>\"><img src=x onerror=\"window.__xss=2;alert(2)\">";
    let event = http::post(&gw.hook_url("/hooks/orders"))
        .json(&json!({"order_id": "A-1", "note": attack}))
        .send()
        .await
        .unwrap()
        .event_id();
    let refused = http::post(&gw.hook_url("/hooks/alerts/wrong-key"))
        .content_type("application/x-www-form-urlencoded")
        .body("cpu=0.5&host=web-9")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status, 404);
    http::post(&gw.hook_url("/hooks/alerts/k3y"))
        .content_type("application/x-www-form-urlencoded")
        .body("cpu=0.93&host=web-1")
        .send()
        .await
        .unwrap()
        .event_id();

    // The delivery, found by its event id; the attack renders as text and runs nothing.
    open_until(
        &browser,
        &format!("{base}/deliveries?event={event}"),
        "#deliveries tbody tr.accepted a",
    )
    .await;
    screenshot(&browser, "deliveries").await;
    click(&browser, "#deliveries tbody tr.accepted a").await;
    let body = text(&browser, "#body").await;
    assert!(
        body.contains("<script>window.__xss=1;alert('xss')</script>"),
        "{body}"
    );
    assert!(body.contains("<img src=x onerror="), "{body}");
    let ran = browser
        .execute(
            "return [typeof window.__xss, document.querySelectorAll('main img').length, document.scripts.length];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        ran,
        json!(["undefined", 0, 0]),
        "the payload ran or became markup"
    );
    assert!(browser.get_alert_text().await.is_err(), "an alert opened");
    screenshot(&browser, "delivery").await;

    // The refused request, and why.
    open_until(
        &browser,
        &format!("{base}/deliveries?kind=rejected&hook=alerts"),
        "#deliveries tbody tr.rejected a",
    )
    .await;
    click(&browser, "#deliveries tbody tr.rejected a").await;
    assert_eq!(text(&browser, "#status").await, "404");
    assert_eq!(text(&browser, "#reason").await, "mismatch");
    let page = browser.source().await.unwrap();
    assert!(!page.contains("wrong-key"), "the URL key shows in the page");

    // The war-room run: it failed at the pager, after the channel was made; the invite
    // carries the channel id the create call answered.
    open_until(
        &browser,
        &format!("{base}/executions?flow=ops.incident-war-room&state=FAILED"),
        "#executions tbody td a",
    )
    .await;
    screenshot(&browser, "executions").await;
    click(&browser, "#executions tbody td a").await;
    let failed_run = path(&browser).await;
    assert_eq!(text(&browser, "#state").await, "FAILED");
    text(&browser, "pre.request").await;
    let requests: Vec<String> = {
        let mut out = Vec::new();
        for e in browser.find_all(Locator::Css("pre.request")).await.unwrap() {
            out.push(e.text().await.unwrap());
        }
        out
    };
    assert!(
        requests.iter().skip(1).any(|r| r.contains(CHANNEL_ID)),
        "no later request carries the channel id {CHANNEL_ID}: {requests:?}"
    );
    screenshot(&browser, "execution").await;

    // The dead-letter page: a form without its CSRF token is refused.
    open_until(
        &browser,
        &format!("{base}/dead-letters"),
        "button.redrive-one",
    )
    .await;
    screenshot(&browser, "dead-letters").await;
    browser
        .execute(
            "document.querySelector('#redrive-form input[name=csrf]').remove();",
            vec![],
        )
        .await
        .unwrap();
    click(&browser, "button.redrive-one").await;
    wait_path(&browser, "/dead-letters/redrive").await;
    let refusal = text(&browser, "main").await;
    assert!(refusal.contains("CSRF"), "{refusal}");

    // With the pager fixed, the redrive from the page runs the flow again, and its run
    // names the failed one.
    pager_refuses.store(false, Ordering::SeqCst);
    browser.goto(&format!("{base}/dead-letters")).await.unwrap();
    click(&browser, "button.redrive-one").await;
    let redriven = text(&browser, "#redriven").await;
    assert!(redriven.contains("is back on"), "{redriven}");
    open_until(
        &browser,
        &format!("{base}/executions?flow=ops.incident-war-room&state=SUCCESS"),
        "#executions tbody td a",
    )
    .await;
    click(&browser, "#executions tbody td a").await;
    let redrive = text(&browser, "#redrive").await;
    let failed_id = failed_run.trim_start_matches("/executions/");
    assert!(redrive.contains(failed_id), "{redrive}");

    browser.goto(&format!("{base}/hooks")).await.unwrap();
    screenshot(&browser, "hooks").await;
    let hooks: Value = browser
        .execute("return document.querySelector('#hooks').innerText;", vec![])
        .await
        .unwrap();
    assert!(hooks.as_str().unwrap().contains("mismatch: 1"), "{hooks}");

    browser.close().await.unwrap();
    drop(driver);
    console.stop().await.unwrap();
    consumer.stop().await.unwrap();
    gw.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
