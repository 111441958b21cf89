//! What senders see on the refusal paths: 404, 405, 408, 413, 415, 400, 431 and 503 shed,
//! each with its status and a short reason, and `url_key` guesses that reveal nothing.

use std::io::Write;
use std::time::Duration;

use ::http::Method;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{brokers, http, kafka, topic, GatewayBuilder, RunningGateway};

const KEY: &str = "k3y-0123456789abcdef";

/// A gateway with an open hook, a url_key hook and a small body limit, on the null sink:
/// these paths never reach the broker.
async fn gateway() -> RunningGateway {
    GatewayBuilder::new()
        .brokers("unused:9092")
        .null_sink()
        .hook(
            r#"id = "open"
topic = "t.open"
methods = ["POST", "PUT"]
max_body = "1KiB"
auth = { scheme = "none" }"#,
        )
        .hook(
            r#"id = "keyed"
topic = "t.keyed"
max_body = "1KiB"
auth = { scheme = "url_key", secrets = [{ env = "KEYED_KEY" }] }"#,
        )
        .env("KEYED_KEY", KEY)
        .server("body_read_timeout = \"500ms\"")
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_hooks_are_404() {
    let gw = gateway().await;
    for path in ["/hooks/nope", "/", "/hooks", "/hooks/open/extra"] {
        let r = http::post(&gw.hook_url(path))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.json()["error"], "not found");
    }
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn paths_are_normalized() {
    let gw = gateway().await;
    for path in ["/hooks/open/", "//hooks//open"] {
        let r = http::post(&gw.hook_url(path))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status, 202, "{path}");
    }
    let r = http::post(&gw.hook_url(&format!("/hooks/keyed/{KEY}/")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 202);
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn url_key_guesses_all_look_like_unknown_hooks() {
    let gw = gateway().await;
    let unknown = http::post(&gw.hook_url("/hooks/nope"))
        .send()
        .await
        .unwrap();
    let guesses = [
        (Method::POST, "/hooks/keyed/wrong".to_string(), Bytes::new()),
        (Method::POST, "/hooks/keyed".to_string(), Bytes::new()),
        (Method::POST, "/hooks/keyed/".to_string(), Bytes::new()),
        (Method::GET, "/hooks/keyed/wrong".to_string(), Bytes::new()),
        (
            Method::DELETE,
            "/hooks/keyed/wrong".to_string(),
            Bytes::new(),
        ),
        (
            Method::POST,
            "/hooks/keyed/wrong".to_string(),
            Bytes::from(vec![b'x'; 10_000]),
        ),
        (
            Method::POST,
            format!("/hooks/keyed/{}", &KEY[..KEY.len() - 1]),
            Bytes::new(),
        ),
        (Method::POST, format!("/hooks/keyed/{KEY}x"), Bytes::new()),
        (
            Method::POST,
            format!("/hooks/keyed/{}", "a".repeat(300)),
            Bytes::new(),
        ),
    ];
    for (method, path, body) in guesses {
        let r = http::post(&gw.hook_url(&path))
            .method(method.clone())
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status, 404, "{method} {path}");
        assert_eq!(
            r.body, unknown.body,
            "{method} {path}: same body as an unknown hook"
        );
        assert!(r.header("allow").is_none());
    }
    // The right key with the wrong method is a 405: the key holder may know the hook.
    let r = http::post(&gw.hook_url(&format!("/hooks/keyed/{KEY}")))
        .method(Method::PUT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 405);
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_methods_are_405_with_allow() {
    let gw = gateway().await;
    for method in [Method::GET, Method::DELETE, Method::PATCH, Method::OPTIONS] {
        let r = http::post(&gw.hook_url("/hooks/open"))
            .method(method.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("POST, PUT"));
    }
    let r = http::post(&gw.hook_url("/hooks/open"))
        .method(Method::PUT)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 202);
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_are_413() {
    let gw = gateway().await;
    // Declared too large: refused from the headers alone.
    let r = http::post(&gw.hook_url("/hooks/open"))
        .body(vec![b'a'; 1025])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 413);
    // At the limit: accepted.
    let r = http::post(&gw.hook_url("/hooks/open"))
        .body(vec![b'a'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 202);
    // Chunked, with no Content-Length: refused once the cap is passed.
    let addr = gw.url.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let mut req =
        b"POST /hooks/open HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..10 {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b'b'; 0x200]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&req).await.unwrap();
    let reply = read_reply(&mut s).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    // A gzip bomb: small on the wire, past the limit once decoded.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![b'{'; 512 << 10]).unwrap();
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 1024);
    let r = http::post(&gw.hook_url("/hooks/open"))
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 413);
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_content_encodings_are_415() {
    let gw = gateway().await;
    let r = http::post(&gw.hook_url("/hooks/open"))
        .header("content-encoding", "br")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 415);
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_bodies_are_400_with_a_reason() {
    let gw = gateway().await;
    let cases = [
        ("application/json", &b"{\"a\":"[..], "invalid JSON body"),
        ("application/json", &b"\"\xff\""[..], "invalid JSON body"),
        ("application/xml", &b"<a><b></a>"[..], "invalid XML body"),
        ("multipart/form-data", &b"x"[..], "invalid multipart body"),
        ("application/json", &b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]"[..], "nests deeper"),
    ];
    for (ct, body, reason) in cases {
        let r = http::post(&gw.hook_url("/hooks/open"))
            .content_type(ct)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{ct} {body:?}");
        let error = r.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(reason), "{error}");
    }
    let r = http::post(&gw.hook_url("/hooks/open"))
        .header("content-encoding", "gzip")
        .body("not gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_headers_are_431() {
    let gw = gateway().await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let big = "v".repeat(20 * 1024);
    let req = format!(
        "POST /hooks/open HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\ncontent-length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let reply = read_reply(&mut s).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_headers_are_431() {
    let gw = gateway().await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let headers: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let req = format!("POST /hooks/open HTTP/1.1\r\nhost: x\r\n{headers}content-length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let reply = read_reply(&mut s).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_never_arrives_is_408() {
    let gw = gateway().await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /hooks/open HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"a\"")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let reply = read_reply(&mut s).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(3));
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn url_key_hook_publishes_with_the_key_redacted() {
    let topic = topic("urlkey");
    let gw = GatewayBuilder::tansu()
        .hook(&format!(
            "id = \"k\"\ntopic = \"{topic}\"\nauth = {{ scheme = \"url_key\", secrets = [{{ value = \"{KEY}\" }}] }}"
        ))
        .start()
        .await;
    let id = http::post(&gw.hook_url(&format!("/hooks/k/{KEY}")))
        .json(&serde_json::json!({"ok": 1}))
        .send()
        .await
        .unwrap()
        .event_id();
    let record = &kafka::read_n(&brokers(), &topic, 1)[0];
    let event = record.json();
    assert_eq!(event["id"], serde_json::json!(id));
    assert_eq!(event["authscheme"], "url_key");
    assert_eq!(event["data"]["path"], "/hooks/k/[redacted]");
    assert!(!String::from_utf8_lossy(&record.value).contains(KEY));
    gw.stop().await.unwrap();
}

/// Reads one HTTP/1.1 reply head (and whatever body came with it).
async fn read_reply(s: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("a reply in time")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_connection_limit_new_connections_wait_and_established_ones_are_served() {
    let gw = GatewayBuilder::new()
        .brokers("unused:9092")
        .null_sink()
        .server("max_connections = 2")
        .hook("id = \"open\"\ntopic = \"t\"\nauth = { scheme = \"none\" }")
        .start()
        .await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    let request = b"POST /hooks/open HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}";
    // wait_ready's admin connections are on the other listener; these two fill the limit.
    let mut first = TcpStream::connect(&addr).await.unwrap();
    let mut second = TcpStream::connect(&addr).await.unwrap();
    for s in [&mut first, &mut second] {
        s.write_all(request).await.unwrap();
        assert!(read_reply(s).await.starts_with("HTTP/1.1 202"));
    }
    let mut third = TcpStream::connect(&addr).await.unwrap();
    third.write_all(request).await.unwrap();
    let mut buf = [0u8; 64];
    let waited = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(
        waited.is_err(),
        "the third connection is not served while two are open"
    );
    // Established connections keep being served.
    first.write_all(request).await.unwrap();
    assert!(read_reply(&mut first).await.starts_with("HTTP/1.1 202"));
    // Closing one lets the waiting connection in.
    drop(second);
    assert!(read_reply(&mut third).await.starts_with("HTTP/1.1 202"));
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_are_cut_off_after_the_header_read_timeout() {
    let gw = GatewayBuilder::new()
        .brokers("unused:9092")
        .null_sink()
        .server("header_read_timeout = \"300ms\"")
        .hook("id = \"open\"\ntopic = \"t\"\nauth = { scheme = \"none\" }")
        .start()
        .await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /hooks/open HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("the server acts within the timeout")
        .unwrap_or(0);
    let reply = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(n == 0 || reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_with_prior_knowledge_is_served() {
    let gw = gateway().await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    let stream = TcpStream::connect(&addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = ::http::Request::post(format!("{}/hooks/open", gw.url))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from_static(
            b"{\"h2\":true}",
        )))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.version(), ::http::Version::HTTP_2);
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_hooks_refuse_cloudevents_bodies_and_publish_any_other_bytes() {
    let gw = GatewayBuilder::new()
        .brokers("unused:9092")
        .null_sink()
        .hook("id = \"bin\"\ntopic = \"t\"\nmode = \"binary\"\nkey = { pointer = \"/id\" }\nauth = { scheme = \"none\" }")
        .start()
        .await;
    let url = gw.hook_url("/hooks/bin");
    // Carried as the record's content-type, this would pass the body off as a whole event.
    for ct in [
        "application/cloudevents+json",
        "Application/CloudEvents-Batch+JSON; charset=utf-8",
    ] {
        let r = http::post(&url)
            .content_type(ct)
            .body("{\"id\":\"x\"}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status, 415, "{ct}");
    }
    // Bytes the key pointer cannot read are still published as received.
    let r = http::post(&url)
        .content_type("application/json")
        .header("content-encoding", "gzip")
        .body("not gzip at all")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 202);
    gw.stop().await.unwrap();
}
