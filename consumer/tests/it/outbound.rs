//! The outbound client against real local servers: what the SSRF policy lets through
//! reaches the server intact, what it refuses never reaches it at all, and every limit
//! ends the request with the error a flow's author would see.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookgate_consumer::outbound::{
    AddressClass, Client, OutboundConfig, OutboundError, Policy, Request,
};
use hookgate_testkit::server::{Reply, TestServer};
use http::Method;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------
// Support

fn reply(status: u16, body: impl Into<Bytes>) -> Reply {
    http::Response::builder()
        .status(status)
        .body(Full::new(body.into()))
        .unwrap()
}

fn redirect(status: u16, location: &str) -> Reply {
    http::Response::builder()
        .status(status)
        .header("location", location)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// A server that accepts connections and never answers; counts the connections.
async fn silent_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(tcp);
        }
    });
    (addr, accepted)
}

/// A server that reads a request head and writes `response` verbatim, then closes: for
/// responses hyper's server would never produce.
async fn raw_server(response: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let response = Arc::new(response);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tcp.write_all(&response).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    addr
}

/// A client built the way the consumer builds it: from the `[outbound]` section.
fn client(allow: &[&str], follow_redirects: u32) -> Client {
    let config = OutboundConfig {
        allow: allow.iter().map(|s| s.to_string()).collect(),
        follow_redirects,
        ..OutboundConfig::default()
    };
    Client::new(
        config
            .build(&mut hookgate_common::config::Problems::default())
            .unwrap(),
    )
}

fn get(url: impl Into<String>) -> Request {
    Request::new(Method::GET, url).timeout(Duration::from_secs(5))
}

#[track_caller]
fn assert_refused(
    result: Result<hookgate_consumer::outbound::Response, OutboundError>,
    host: &str,
    want: AddressClass,
) {
    match result {
        Err(OutboundError::Refused { host: h, class, .. }) => {
            assert_eq!((h.as_str(), class), (host, want));
        }
        other => panic!("expected a refusal of {host} as {want}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// The SSRF policy

#[tokio::test]
async fn loopback_is_refused_by_default_and_never_reached() {
    let server = TestServer::start(|_| reply(200, "secret admin page")).await;
    let client = Client::new(Policy::strict());
    let port = server.port();

    assert_refused(
        client.send(get(server.url("/admin?token=s3cret"))).await,
        "127.0.0.1",
        AddressClass::Loopback,
    );
    for url in [
        format!("http://2130706433:{port}/"),
        format!("http://0x7f.1:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
    ] {
        let err = client.send(get(&url)).await.unwrap_err();
        assert!(
            matches!(
                err,
                OutboundError::Refused {
                    class: AddressClass::Loopback,
                    ..
                }
            ),
            "{url}: {err}"
        );
    }
    let message = client
        .send(get(server.url("/admin?token=s3cret")))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("127.0.0.1") && message.contains("loopback"),
        "{message}"
    );
    assert!(
        !message.contains("s3cret") && !message.contains("/admin"),
        "{message}"
    );
    assert_eq!(server.hits(), 0, "a refused request reached the server");
}

#[tokio::test]
async fn allowlisted_loopback_round_trips_headers_and_json() {
    let server = TestServer::start(|seen| {
        let received: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
        let echo = serde_json::json!({ "method": seen.method, "received": received });
        http::Response::builder()
            .status(201)
            .header("Content-Type", "application/json")
            .header("X-Request-Id", "abc-123")
            .header("Set-Cookie", "a=1")
            .header("Set-Cookie", "b=2")
            .body(Full::new(Bytes::from(echo.to_string())))
            .unwrap()
    })
    .await;
    let client = client(&["127.0.0.1/32"], 0);
    let body = serde_json::json!({ "sku": "A-1", "stock": 3, "note": "héllo" }).to_string();
    let url = server.url("/v1/items?dry_run=true&q=a%20b");

    let response = client
        .send(
            Request::new(Method::POST, &url)
                .header("Content-Type", "application/json")
                .header("Authorization", "Bearer t0ken")
                .header("X-Custom", "one")
                .header("x-custom", "two")
                .body(body.clone()),
        )
        .await
        .unwrap();

    assert_eq!(response.status, 201);
    assert_eq!(response.url, url);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.header("X-Request-ID"), Some("abc-123"));
    let cookies: Vec<_> = response
        .headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert!(response.headers.iter().all(|(n, _)| *n == n.to_lowercase()));
    let echoed: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["received"]["note"], "héllo");
    assert_eq!(echoed["received"]["stock"], 3);

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let seen = &seen[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.target, "/v1/items?dry_run=true&q=a%20b");
    assert_eq!(seen.body, body.as_bytes());
    assert_eq!(
        seen.header("host"),
        Some(format!("127.0.0.1:{}", server.port()).as_str())
    );
    assert_eq!(
        seen.header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(seen.header("authorization"), Some("Bearer t0ken"));
    assert_eq!(seen.header("content-type"), Some("application/json"));
    let custom: Vec<_> = seen
        .headers
        .iter()
        .filter(|(n, _)| n == "x-custom")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(custom, ["one", "two"]);
    assert!(seen.header("user-agent").unwrap().starts_with("hookgate/"));
}

#[tokio::test]
async fn localhost_is_refused_unless_allowed_by_name_or_block() {
    let server = TestServer::start(|_| reply(200, "ok")).await;
    let url = server.localhost_url("/");

    assert_refused(
        Client::new(Policy::strict()).send(get(&url)).await,
        "localhost",
        AddressClass::Loopback,
    );
    // An unrelated entry lifts nothing.
    assert_refused(
        client(&["hooks.slack.com", "10.0.0.0/8"], 0)
            .send(get(&url))
            .await,
        "localhost",
        AddressClass::Loopback,
    );
    assert_eq!(server.hits(), 0);

    let by_name = client(&["localhost"], 0).send(get(&url)).await.unwrap();
    assert_eq!(by_name.status, 200);
    // By block: localhost may also resolve to ::1, and every address must be allowed.
    let by_block = client(&["127.0.0.1/32", "::1/128"], 0)
        .send(get(&url))
        .await
        .unwrap();
    assert_eq!(by_block.status, 200);
    assert_eq!(server.hits(), 2);
    assert_eq!(
        server.seen()[0].header("host"),
        Some(format!("localhost:{}", server.port()).as_str())
    );
}

#[tokio::test]
async fn userinfo_is_refused_even_towards_an_allowed_host() {
    let server = TestServer::start(|_| reply(200, "ok")).await;
    let client = client(&["127.0.0.1/32", "localhost"], 0);
    for url in [
        format!("http://admin:s3cret@127.0.0.1:{}/", server.port()),
        format!("http://localhost@127.0.0.1:{}/", server.port()),
    ] {
        let err = client.send(get(&url)).await.unwrap_err();
        assert!(matches!(err, OutboundError::InvalidUrl(_)), "{url}: {err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
    assert_eq!(server.hits(), 0);
}

// ---------------------------------------------------------------------------------------
// Redirects

#[tokio::test]
async fn redirects_are_not_followed_by_default() {
    let server = TestServer::start(|_| redirect(302, "/elsewhere")).await;
    let response = client(&["127.0.0.1/32"], 0)
        .send(get(server.url("/start")))
        .await
        .unwrap();
    assert_eq!(response.status, 302);
    assert_eq!(response.header("location"), Some("/elsewhere"));
    assert_eq!(response.url, server.url("/start"));
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn a_redirect_to_an_unlisted_loopback_address_is_refused() {
    let inner = TestServer::start(|_| reply(200, "internal")).await;
    let to = inner.url("/");
    // The first hop is allowed by name; the redirect names an address literal that no
    // entry covers, so it gets the same verdict a first request to it would.
    let outer = TestServer::start(move |_| redirect(302, &to)).await;
    let result = client(&["localhost"], 5)
        .send(get(outer.localhost_url("/")))
        .await;
    assert_refused(result, "127.0.0.1", AddressClass::Loopback);
    assert_eq!(outer.hits(), 1);
    assert_eq!(inner.hits(), 0, "the redirect reached the refused server");

    let meta =
        TestServer::start(|_| redirect(301, "http://169.254.169.254/latest/meta-data/")).await;
    let result = client(&["localhost"], 5)
        .send(get(meta.localhost_url("/")))
        .await;
    assert_refused(result, "169.254.169.254", AddressClass::Metadata);
}

#[tokio::test]
async fn followed_redirects_drop_credentials_across_origins() {
    let landing = TestServer::start(|_| reply(200, "landed")).await;
    let to = landing.localhost_url("/landing");
    let start = TestServer::start(move |_| redirect(307, &to)).await;

    let response = client(&["localhost"], 5)
        .send(
            Request::new(Method::POST, start.localhost_url("/hook"))
                .header("Authorization", "Bearer t0ken")
                .header("Cookie", "session=1")
                .header("X-Auth-Token", "custom-credential")
                .header("Accept", "application/json")
                .body("payload"),
        )
        .await
        .unwrap();

    assert_eq!(response.status, 200);
    assert_eq!(response.body, "landed");
    assert_eq!(response.url, landing.localhost_url("/landing"));
    let first = &start.seen()[0];
    assert_eq!(first.header("authorization"), Some("Bearer t0ken"));
    let second = &landing.seen()[0];
    // 307 keeps method and body; another port is another origin.
    assert_eq!(
        (second.method.as_str(), &second.body[..]),
        ("POST", &b"payload"[..])
    );
    // Only a few plain headers follow to another origin: a custom header may be a
    // credential under another name.
    assert_eq!(second.header("accept"), Some("application/json"));
    assert_eq!(second.header("x-auth-token"), None);
    assert_eq!(second.header("authorization"), None);
    assert_eq!(second.header("cookie"), None);
    assert_eq!(
        second.header("host"),
        Some(format!("localhost:{}", landing.port()).as_str())
    );
}

#[tokio::test]
async fn see_other_turns_a_post_into_a_get_on_the_same_origin() {
    let server = TestServer::start(|seen| match seen.target.as_str() {
        "/form" => redirect(303, "/done"),
        _ => reply(200, "done"),
    })
    .await;
    let response = client(&["127.0.0.1/32"], 1)
        .send(
            Request::new(Method::POST, server.url("/form"))
                .header("Authorization", "Bearer t0ken")
                .header("Content-Type", "application/json")
                .body("{}"),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].method, "GET");
    assert_eq!(seen[1].target, "/done");
    assert!(seen[1].body.is_empty());
    assert_eq!(seen[1].header("content-type"), None);
    assert_eq!(seen[1].header("authorization"), Some("Bearer t0ken"));
}

#[tokio::test]
async fn a_redirect_loop_stops_at_the_limit() {
    let server = TestServer::start(|_| redirect(302, "/again")).await;
    let err = client(&["127.0.0.1/32"], 2)
        .send(get(server.url("/")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, OutboundError::Redirects { limit: 2 }),
        "{err}"
    );
    assert_eq!(server.hits(), 3);
}

// ---------------------------------------------------------------------------------------
// Limits

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let (addr, accepted) = silent_server().await;
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = client(&["127.0.0.1/32"], 0)
        .send(get(format!("http://{addr}/")).timeout(timeout))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, OutboundError::Timeout { .. }), "{err}");
    assert!(err.is_transient());
    assert!(took >= timeout, "gave up early, after {took:?}");
    assert!(took < timeout + Duration::from_millis(500), "took {took:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_over_the_cap_is_too_large() {
    let server = TestServer::start(|seen| match seen.target.as_str() {
        "/big" => reply(200, "x".repeat(1025)),
        _ => reply(200, "x".repeat(1024)),
    })
    .await;
    let policy = Policy::strict()
        .allow("127.0.0.1/32")
        .unwrap()
        .max_response_bytes(1024);
    let client = Client::new(policy.clone());

    let at_cap = client.send(get(server.url("/exact"))).await.unwrap();
    assert_eq!(at_cap.body.len(), 1024);
    let err = client.send(get(server.url("/big"))).await.unwrap_err();
    assert!(
        matches!(err, OutboundError::TooLarge { limit: 1024 }),
        "{err}"
    );

    // Without a Content-Length the cap applies while reading.
    let mut raw = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
    raw.extend(std::iter::repeat_n(b'y', 64 * 1024));
    let addr = raw_server(raw).await;
    let err = client
        .send(get(format!("http://{addr}/")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, OutboundError::TooLarge { limit: 1024 }),
        "{err}"
    );
}

#[tokio::test]
async fn a_response_head_with_too_many_headers_fails() {
    let mut raw = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n".to_vec();
    for i in 0..150 {
        raw.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\nok");
    let addr = raw_server(raw).await;
    let err = client(&["127.0.0.1/32"], 0)
        .send(get(format!("http://{addr}/")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, OutboundError::Http(ref m) if m.contains("too large")),
        "{err}"
    );
}

#[tokio::test]
async fn a_header_value_with_crlf_fails_before_connecting() {
    let server = TestServer::start(|_| reply(200, "ok")).await;
    let client = client(&["127.0.0.1/32"], 0);
    let err = client
        .send(get(server.url("/")).header("X-Signature", "abc\r\nX-Injected: 1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OutboundError::HeaderValue { name } if name == "x-signature"),
        "{err}"
    );
    assert!(!err.to_string().contains("Injected"), "{err}");
    let err = client
        .send(get(server.url("/")).header("Host", "internal.corp"))
        .await
        .unwrap_err();
    assert!(matches!(err, OutboundError::ReservedHeader(_)), "{err}");
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = client(&["127.0.0.1/32"], 0)
        .send(get(format!("http://{addr}/")))
        .await
        .unwrap_err();
    assert!(matches!(err, OutboundError::Connect(_)), "{err}");
    assert!(err.is_transient());
}

// ---------------------------------------------------------------------------------------
// TLS

fn self_signed_localhost() -> (Arc<rustls::ServerConfig>, rustls::RootCertStore) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key.into())
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    (Arc::new(config), roots)
}

#[tokio::test]
async fn https_verifies_the_certificate_and_sends_sni() {
    let (config, roots) = self_signed_localhost();
    let server = TestServer::start_tls(config, |_| reply(200, "over tls")).await;
    let url = format!("https://localhost:{}/secure", server.port());
    let policy = Policy::strict()
        .allow_host("localhost")
        .allow_cidr("127.0.0.1/32".parse().unwrap());

    let trusting = Client::with_root_certificates(policy.clone(), roots);
    let response = trusting.send(get(&url)).await.unwrap();
    assert_eq!(
        (response.status, &response.body[..]),
        (200, &b"over tls"[..])
    );
    assert_eq!(server.seen()[0].sni.as_deref(), Some("localhost"));

    // The public roots do not know the test CA.
    let err = Client::new(policy).send(get(&url)).await.unwrap_err();
    assert!(matches!(err, OutboundError::Tls(_)), "{err}");
    // Nor does the certificate name 127.0.0.1.
    let err = trusting
        .send(get(format!("https://127.0.0.1:{}/", server.port())))
        .await
        .unwrap_err();
    assert!(matches!(err, OutboundError::Tls(_)), "{err}");
    assert_eq!(server.hits(), 1);
}
