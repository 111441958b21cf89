//! OAuth2 against a local token endpoint that checks the client's credentials and issues
//! short-lived tokens, and a local API that accepts only live ones: one token request
//! for a hundred concurrent calls, a new token when the old one expires, one refresh and
//! one retry after a 401, a rotated refresh token kept on disk and used next, and a
//! refused client reported without its secret.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookgate_consumer::outbound::oauth2::{ClientAuth, Grant};
use hookgate_consumer::outbound::{Client, OutboundError, Policy, Request};
use hookgate_testkit::server::{json_reply, Seen, TestServer};
use http::Method;
use serde_json::json;

const CLIENT_ID: &str = "hookgate-war-room";
const CLIENT_SECRET: &str = "cs-5f2a9c";

/// The authorization server and the API it protects.
struct Servers {
    auth: TestServer,
    api: TestServer,
    /// Token requests answered with a token.
    issued: Arc<AtomicUsize>,
    /// Tokens the API accepts now.
    live: Arc<Mutex<HashSet<String>>>,
    /// The refresh token the endpoint accepts now (it rotates it on every use).
    refresh: Arc<Mutex<String>>,
}

fn form(seen: &Seen) -> Vec<(String, String)> {
    form_urlencoded::parse(&seen.body).into_owned().collect()
}

async fn servers(expires_in: u64) -> Servers {
    let issued = Arc::new(AtomicUsize::new(0));
    let live: Arc<Mutex<HashSet<String>>> = Arc::default();
    let refresh = Arc::new(Mutex::new("r-1".to_string()));
    let (n, tokens, current_refresh) = (issued.clone(), live.clone(), refresh.clone());
    let auth = TestServer::start(move |seen| {
        let basic = format!(
            "Basic {}",
            base64_encode(&format!("{CLIENT_ID}:{CLIENT_SECRET}"))
        );
        if seen.header("authorization") != Some(basic.as_str()) {
            return json_reply(
                401,
                &json!({"error": "invalid_client", "error_description": "bad secret"}),
            );
        }
        let form = form(seen);
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let mut answer = json!({"token_type": "Bearer", "expires_in": expires_in});
        match get("grant_type") {
            Some("client_credentials") if get("scope") == Some("incident.write") => {}
            Some("refresh_token") => {
                let mut current = current_refresh.lock().unwrap();
                if get("refresh_token") != Some(current.as_str()) {
                    return json_reply(400, &json!({"error": "invalid_grant"}));
                }
                let next = format!("r-{}", current[2..].parse::<u32>().unwrap() + 1);
                answer["refresh_token"] = json!(next);
                *current = next;
            }
            _ => return json_reply(400, &json!({"error": "unsupported_grant_type"})),
        }
        let token = format!("at-{}", n.fetch_add(1, Ordering::SeqCst) + 1);
        tokens.lock().unwrap().insert(token.clone());
        answer["access_token"] = json!(token);
        json_reply(200, &answer)
    })
    .await;
    let accepted = live.clone();
    let api = TestServer::start(move |seen| {
        let token = seen
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or_default();
        if accepted.lock().unwrap().contains(token) {
            json_reply(201, &json!({"result": {"number": "INC0012042"}}))
        } else {
            json_reply(401, &json!({"error": "token expired or revoked"}))
        }
    })
    .await;
    Servers {
        auth,
        api,
        issued,
        live,
        refresh,
    }
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn client() -> Client {
    Client::new(Policy::strict().allow("127.0.0.1/32").unwrap())
}

fn grant(s: &Servers) -> Arc<Grant> {
    Arc::new(Grant {
        token_url: s.auth.url("/oauth_token.do"),
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        scope: Some("incident.write".into()),
        audience: None,
        params: Vec::new(),
        client_auth: ClientAuth::Basic,
        refresh_token: None,
        refresh_file: None,
        timeout: Duration::from_secs(5),
    })
}

fn call(s: &Servers, grant: &Arc<Grant>) -> Request {
    Request::new(Method::POST, s.api.url("/api/now/table/incident"))
        .header("content-type", "application/json")
        .body("{}")
        .oauth2(grant.clone())
}

#[tokio::test]
async fn a_hundred_concurrent_calls_cause_one_token_request_and_expiry_another() {
    let s = servers(2).await;
    let (client, grant) = (client(), grant(&s));
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let (client, req) = (client.clone(), call(&s, &grant));
            tokio::spawn(async move { client.send(req).await.unwrap().status })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 201);
    }
    assert_eq!(s.issued.load(Ordering::SeqCst), 1, "one token for all");
    assert_eq!(s.auth.hits(), 1);
    assert_eq!(s.api.hits(), 100);

    // The token lives 2 s and is renewed a quarter early: after 1.6 s a new one.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(client.send(call(&s, &grant)).await.unwrap().status, 201);
    assert_eq!(
        s.issued.load(Ordering::SeqCst),
        2,
        "expiry fetched a new token"
    );
    let api_tokens: HashSet<String> = s
        .api
        .seen()
        .iter()
        .filter_map(|r| r.header("authorization").map(str::to_string))
        .collect();
    assert_eq!(api_tokens.len(), 2);
}

#[tokio::test]
async fn a_401_refreshes_once_and_retries_once() {
    let s = servers(3600).await;
    let (client, grant) = (client(), grant(&s));
    assert_eq!(client.send(call(&s, &grant)).await.unwrap().status, 201);
    // The API revokes every token it knows.
    s.live.lock().unwrap().clear();
    assert_eq!(client.send(call(&s, &grant)).await.unwrap().status, 201);
    assert_eq!(s.issued.load(Ordering::SeqCst), 2, "one refresh");
    assert_eq!(s.api.hits(), 3, "one retry");
}

#[tokio::test]
async fn a_rotated_refresh_token_is_written_back_and_used_next() {
    let s = servers(1).await;
    let dir = std::env::temp_dir().join(format!("hookgate-oauth2-it-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("servicenow.refresh");
    std::fs::write(&file, "r-1").unwrap();
    let grant = Arc::new(Grant {
        scope: None,
        refresh_token: Some(std::fs::read_to_string(&file).unwrap()),
        refresh_file: Some(file.clone()),
        ..(*grant(&s)).clone()
    });
    let client = client();
    assert_eq!(client.send(call(&s, &grant)).await.unwrap().status, 201);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "r-2");
    // The token lives 1 s: the next call refreshes with the rotated token, which the
    // endpoint accepts only because it is the new one.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(client.send(call(&s, &grant)).await.unwrap().status, 201);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "r-3");
    assert_eq!(*s.refresh.lock().unwrap(), "r-3");
    assert_eq!(s.issued.load(Ordering::SeqCst), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_refused_client_is_reported_without_its_secret() {
    let s = servers(3600).await;
    let grant = Arc::new(Grant {
        client_secret: "wrong-secret-77".into(),
        ..(*grant(&s)).clone()
    });
    let err = client().send(call(&s, &grant)).await.unwrap_err();
    assert!(
        matches!(
            err,
            OutboundError::OAuth2 {
                transient: false,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("answered 401 (invalid_client)"),
        "{message}"
    );
    assert!(!message.contains("wrong-secret-77") && !message.contains("bad secret"));
    assert_eq!(s.api.hits(), 0, "no call without a token");
}

/// A GET over a fresh connection; the status.
async fn get_status(url: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = url::Url::parse(url).unwrap();
    let addr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    stream
        .write_all(
            format!("GET {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn authorize_completes_the_code_grant_with_pkce_and_refuses_a_wrong_state() {
    use tokio::io::AsyncBufReadExt;
    // The challenge the authorization URL carried, as the authorization server keeps it.
    let challenge: Arc<Mutex<String>> = Arc::default();
    let kept = challenge.clone();
    let auth = TestServer::start(move |seen| {
        let basic = format!(
            "Basic {}",
            base64_encode(&format!("{CLIENT_ID}:{CLIENT_SECRET}"))
        );
        if seen.header("authorization") != Some(basic.as_str()) {
            return json_reply(401, &json!({"error": "invalid_client"}));
        }
        let form = form(seen);
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let verifier = get("code_verifier").unwrap_or_default();
        let computed = {
            use base64::Engine as _;
            use sha2::Digest as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(verifier.as_bytes()))
        };
        if get("grant_type").as_deref() != Some("authorization_code")
            || get("code").as_deref() != Some("code-7f1e")
            || !get("redirect_uri")
                .unwrap_or_default()
                .starts_with("http://127.0.0.1:")
            || computed != *kept.lock().unwrap()
        {
            return json_reply(400, &json!({"error": "invalid_grant"}));
        }
        json_reply(
            200,
            &json!({"access_token": "at-1", "refresh_token": "r-first", "expires_in": 3600}),
        )
    })
    .await;
    let dir = std::env::temp_dir().join(format!("hookgate-authorize-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let refresh_file = dir.join("tickets.refresh");
    let config = dir.join("consumer.toml");
    std::fs::write(
        &config,
        format!(
            r#"[kafka]
topics = ["t"]
[outbound]
allow = ["127.0.0.1/32"]
[connections.tickets]
base_url = "https://tickets.example"
auth = {{ oauth2 = {{ token_url = "{token}", client_id = "{CLIENT_ID}", client_secret = "{CLIENT_SECRET}", scope = "useraccount", authorization_url = "https://tickets.example/oauth_auth.do", redirect_port = 0, refresh_token_file = "{file}" }} }}
"#,
            token = auth.url("/oauth_token.do"),
            file = refresh_file.display(),
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookgate-consumer"))
        .args([
            "oauth2",
            "authorize",
            "--connection",
            "tickets",
            "--wait",
            "30s",
            "--config",
        ])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("the URL is printed");
        if line.starts_with("https://") {
            break url::Url::parse(&line).unwrap();
        }
    };
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(url.path(), "/oauth_auth.do");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["scope"], "useraccount");
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["state"].len() >= 20, "a random state");
    *challenge.lock().unwrap() = q["code_challenge"].clone();
    let redirect = &q["redirect_uri"];

    // A redirect with another state (a forged one) is refused, and nothing is exchanged.
    let forged = format!("{redirect}?code=code-7f1e&state=forged-{}", q["state"]);
    assert_eq!(get_status(&forged).await, 400);
    assert_eq!(auth.hits(), 0);
    // The provider's redirect.
    let real = format!("{redirect}?code=code-7f1e&state={}", q["state"]);
    assert_eq!(get_status(&real).await, 200);

    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    let rest = {
        let mut out = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            out.push_str(&line);
        }
        out
    };
    assert!(status.success(), "{rest}");
    assert!(
        rest.contains("stored the refresh token of connection `tickets`"),
        "{rest}"
    );
    assert_eq!(std::fs::read_to_string(&refresh_file).unwrap(), "r-first");
    assert_eq!(auth.hits(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}
