//! How requests travel, against real local servers: keep-alive connections are reused
//! (the server counts its TCP connections), HTTP/2 multiplexes where the server offers
//! it, a connection's own CA and client certificate are used (mTLS, with `rcgen`
//! certificates), and an HTTP proxy is reached with `CONNECT` to the checked address only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hookgate_common::config::Problems;
use hookgate_consumer::outbound::transport::{Proxy, TlsFiles, Transport};
use hookgate_consumer::outbound::{
    AddressClass, Client, OutboundConfig, OutboundError, Policy, Request,
};
use hookgate_testkit::server::{delayed, Reply, TestServer};
use http::Method;
use http_body_util::Full;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn ok(body: &'static str) -> Reply {
    http::Response::new(Full::new(Bytes::from_static(body.as_bytes())))
}

fn get(url: impl Into<String>) -> Request {
    Request::new(Method::GET, url).timeout(Duration::from_secs(5))
}

fn loopback_policy() -> Policy {
    Policy::strict()
        .allow_host("localhost")
        .allow_cidr("127.0.0.1/32".parse().unwrap())
}

// ---------------------------------------------------------------------------------------
// Keep-alive

#[tokio::test]
async fn sequential_requests_reuse_one_connection() {
    let server = TestServer::start(|_| ok("pong")).await;
    let client = Client::new(loopback_policy());
    for i in 0..20 {
        let response = client.send(get(server.url(&format!("/ping/{i}")))).await;
        assert_eq!(response.unwrap().body, "pong");
    }
    assert_eq!(server.hits(), 20);
    assert_eq!(server.connections(), 1, "20 requests, one TCP connection");
    assert_eq!(client.connections_opened(), 1);
    assert!(server.seen().iter().all(|s| s.connection == 1));

    // A POST reuses it too, and the connection stays usable after it.
    let post = Request::new(Method::POST, server.url("/items")).body("{\"a\":1}");
    assert_eq!(client.send(post).await.unwrap().status, 200);
    assert_eq!(server.connections(), 1);

    // With keep-alive off, every request opens its own.
    let config = OutboundConfig {
        allow: vec!["127.0.0.1/32".into()],
        pool_max_idle_per_host: 0,
        ..OutboundConfig::default()
    };
    let no_pool = Client::new(config.build(&mut Problems::default()).unwrap());
    for _ in 0..5 {
        no_pool.send(get(server.url("/"))).await.unwrap();
    }
    assert_eq!(server.connections(), 1 + 5);
}

#[tokio::test]
async fn concurrent_requests_open_what_they_need_then_reuse_it() {
    let server = TestServer::start(|_| delayed(ok("slow"), Duration::from_millis(200))).await;
    let client = Client::new(loopback_policy());
    let burst = (0..8).map(|_| {
        let (client, url) = (client.clone(), server.url("/"));
        tokio::spawn(async move { client.send(get(url)).await })
    });
    for handle in burst.collect::<Vec<_>>() {
        assert_eq!(handle.await.unwrap().unwrap().status, 200);
    }
    assert_eq!(
        server.connections(),
        8,
        "eight at once need eight HTTP/1.1 connections"
    );
    for _ in 0..16 {
        client.send(get(server.url("/"))).await.unwrap();
    }
    assert_eq!(server.connections(), 8, "later requests ride the kept ones");
}

#[tokio::test]
async fn idle_connections_expire_and_closed_ones_are_not_reused() {
    let server = TestServer::start(|s| {
        if s.target == "/bye" {
            http::Response::builder()
                .header("connection", "close")
                .body(Full::new(Bytes::from_static(b"bye")))
                .unwrap()
        } else {
            ok("hi")
        }
    })
    .await;
    let policy = loopback_policy().pool(Duration::from_millis(300), 32);
    let client = Client::new(policy);
    client.send(get(server.url("/"))).await.unwrap();
    client.send(get(server.url("/"))).await.unwrap();
    assert_eq!(server.connections(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    client.send(get(server.url("/"))).await.unwrap();
    assert_eq!(server.connections(), 2, "the idle one expired after 300 ms");

    // A server that says `Connection: close` gets a new connection next time, and no
    // request fails for it.
    for _ in 0..3 {
        assert_eq!(
            client.send(get(server.url("/bye"))).await.unwrap().body,
            "bye"
        );
    }
    client.send(get(server.url("/"))).await.unwrap();
    assert_eq!(server.connections(), 2 + 3);
}

#[tokio::test]
async fn a_pooled_connection_never_carries_a_request_the_policy_refuses() {
    let server = TestServer::start(|_| ok("hi")).await;
    // Only the name is allowed: `localhost` reaches 127.0.0.1, the literal does not.
    let client = Client::new(Policy::strict().allow_host("localhost"));
    client
        .send(get(server.localhost_url("/")))
        .await
        .expect("localhost is allowed by name");
    let refused = client
        .send(get(server.url("/via-pooled-socket")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            OutboundError::Refused {
                class: AddressClass::Loopback,
                ..
            }
        ),
        "{refused}"
    );
    assert_eq!(
        server.hits(),
        1,
        "the refused request never reached the server"
    );
}

#[tokio::test]
async fn a_connection_may_reach_what_its_own_allow_lifts_and_nothing_else_does() {
    let server = TestServer::start(|_| ok("private api")).await;
    let client = Client::new(Policy::strict());
    let mut p = Problems::default();
    let private = Transport::build(
        None,
        None,
        &["127.0.0.1/32".to_string()],
        "connections.ledger",
        &mut p,
    );
    let response = client
        .send(get(server.url("/balance")).transport(private.clone()))
        .await
        .unwrap();
    assert_eq!(response.body, "private api");
    // The same URL without the connection: refused, never reached.
    let err = client.send(get(server.url("/balance"))).await.unwrap_err();
    assert!(matches!(err, OutboundError::Refused { .. }), "{err}");
    // The connection's entry lifts that block only.
    let err = client
        .send(get("http://127.0.0.2:9/").transport(private))
        .await
        .unwrap_err();
    assert!(matches!(err, OutboundError::Refused { .. }), "{err}");
    assert_eq!(server.hits(), 1);
    assert!(p.is_empty());
}

// ---------------------------------------------------------------------------------------
// TLS: HTTP/2, a private CA, client certificates

/// A CA, a server certificate for `localhost` and a client certificate, all from the CA,
/// written as PEM files into a fresh directory.
pub(crate) struct Pki {
    dir: PathBuf,
    pub server: rustls::ServerConfig,
    client_der: Vec<u8>,
}

impl Pki {
    pub fn new(require_client_cert: bool) -> Pki {
        let dir = std::env::temp_dir().join(format!("hookgate-pki-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf = |name: &str| {
            let key = KeyPair::generate().unwrap();
            let params = CertificateParams::new(vec![name.to_owned()]).unwrap();
            (params.signed_by(&key, &ca).unwrap(), key)
        };
        let (server_cert, server_key) = leaf("localhost");
        let (client_cert, client_key) = leaf("hookgate-consumer");
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("client.pem"), client_cert.pem()).unwrap();
        std::fs::write(dir.join("client.key"), client_key.serialize_pem()).unwrap();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if require_client_cert {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(server_key.serialize_der());
        let mut server = builder
            .with_single_cert(vec![server_cert.der().clone()], key.into())
            .unwrap();
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Pki {
            dir,
            server,
            client_der: client_cert.der().to_vec(),
        }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn transport(&self, ca: bool, client_cert: bool) -> Option<Arc<Transport>> {
        let files = TlsFiles {
            ca_file: ca.then(|| self.file("ca.pem")),
            cert_file: client_cert.then(|| self.file("client.pem")),
            key_file: client_cert.then(|| self.file("client.key")),
        };
        let mut p = Problems::default();
        let transport = Transport::build(Some(&files), None, &[], "connections.ledger", &mut p);
        assert!(p.is_empty(), "{p:?}");
        transport
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn http2_carries_concurrent_requests_on_one_connection() {
    let pki = Pki::new(false);
    let server = TestServer::start_tls(Arc::new(pki.server.clone()), |_| {
        delayed(ok("multiplexed"), Duration::from_secs(1))
    })
    .await;
    let client = Client::new(loopback_policy());
    let transport = pki.transport(true, false);
    let url = server.localhost_url("/h2").replace("http://", "https://");
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (client, url, transport) = (client.clone(), url.clone(), transport.clone());
            tokio::spawn(async move { client.send(get(url).transport(transport)).await })
        })
        .collect();
    // All twenty are at the server before the first answer (held 1 s) comes back: they
    // travel side by side, not one after another.
    while server.hits() < 20 {
        assert!(
            calls.iter().all(|c| !c.is_finished()),
            "an answer came back with only {} of 20 requests sent",
            server.hits()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for call in calls {
        let response = call.await.unwrap().unwrap();
        assert_eq!(
            (response.status, &response.body[..]),
            (200, &b"multiplexed"[..])
        );
    }
    let seen = server.seen();
    assert_eq!(seen.len(), 20);
    assert!(
        seen.iter().all(|s| s.version == "HTTP/2.0"),
        "{:?}",
        seen[0].version
    );
    assert!(seen
        .iter()
        .all(|s| s.target == "/h2" && s.sni.as_deref() == Some("localhost")));
    assert_eq!(
        server.connections(),
        1,
        "20 concurrent requests, one HTTP/2 connection"
    );
}

#[tokio::test]
async fn a_connection_trusts_its_own_ca_and_shows_its_client_certificate() {
    let pki = Pki::new(true);
    let server = TestServer::start_tls(Arc::new(pki.server.clone()), |_| ok("ledger")).await;
    let url = server
        .localhost_url("/balance")
        .replace("http://", "https://");
    let client = Client::new(loopback_policy());

    let response = client
        .send(get(&url).transport(pki.transport(true, true)))
        .await
        .unwrap();
    assert_eq!(response.body, "ledger");
    assert_eq!(
        server.seen()[0].client_cert.as_deref(),
        Some(&pki.client_der[..])
    );

    // The public roots do not know the private CA.
    let err = client.send(get(&url)).await.unwrap_err();
    assert!(
        matches!(&err, OutboundError::Tls(m) if m.contains("UnknownIssuer")),
        "{err}"
    );
    // The CA alone is not enough for a server that wants a client certificate.
    let err = client
        .send(get(&url).transport(pki.transport(true, false)))
        .await
        .unwrap_err();
    assert!(
        err.is_transient() || matches!(err, OutboundError::Tls(_)),
        "{err}"
    );
    assert_eq!(server.hits(), 1);
}

// ---------------------------------------------------------------------------------------
// Proxies

/// A `CONNECT` proxy on 127.0.0.2: records each request head, tunnels to the target, or
/// answers 407 when `password` is set and the request does not carry it.
pub(crate) struct TestProxy {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl TestProxy {
    pub async fn start(password: Option<&'static str>) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let log = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") {
                        match client.read_u8().await {
                            Ok(b) => head.push(b),
                            Err(_) => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    log.lock().unwrap().push(head.clone());
                    if let Some(password) = password {
                        use base64::Engine as _;
                        let want = base64::engine::general_purpose::STANDARD
                            .encode(format!("ops:{password}"));
                        if !head.contains(&format!("Proxy-Authorization: Basic {want}")) {
                            let _ = client
                                .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
                                .await;
                            return;
                        }
                    }
                    let target = head.split(' ').nth(1).unwrap_or_default().to_owned();
                    let Ok(mut upstream) = TcpStream::connect(&target).await else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                        return;
                    };
                    let _ = client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        TestProxy { addr, heads }
    }

    pub fn url(&self, credentials: &str) -> String {
        format!("http://{credentials}{}", self.addr)
    }

    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn requests_tunnel_through_the_proxy_to_the_checked_address() {
    let proxy = TestProxy::start(Some("pr0xy-pass")).await;
    let api = TestServer::start(|_| ok("through")).await;
    // The policy allows the API's address only; the proxy, on 127.0.0.2, is reached
    // because it is configured, not because the policy allows it.
    let policy = loopback_policy().via_proxy(Proxy::parse(&proxy.url("ops:pr0xy-pass@")).unwrap());
    let client = Client::new(policy);

    for _ in 0..3 {
        let response = client
            .send(get(api.localhost_url("/orders")))
            .await
            .unwrap();
        assert_eq!(response.body, "through");
    }
    let heads = proxy.heads();
    assert_eq!(heads.len(), 1, "one tunnel, kept alive: {heads:?}");
    assert!(
        heads[0].starts_with(&format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n", api.port())),
        "the tunnel goes to the address checked, never to a name: {:?}",
        heads[0]
    );
    assert_eq!(
        api.seen()[0].header("host"),
        Some(&*format!("localhost:{}", api.port()))
    );

    // A destination the policy refuses is refused before the proxy hears of it.
    let err = client.send(get("http://127.0.0.3:9/")).await.unwrap_err();
    assert!(matches!(err, OutboundError::Refused { .. }), "{err}");
    assert_eq!(proxy.heads().len(), 1);

    // A connection that goes direct bypasses the default proxy.
    let mut p = Problems::default();
    let direct = Transport::build(None, Some("direct"), &[], "connections.d", &mut p);
    client
        .send(get(api.url("/direct")).transport(direct))
        .await
        .unwrap();
    assert_eq!(proxy.heads().len(), 1);
    assert_eq!(api.hits(), 4);
}

#[tokio::test]
async fn tls_goes_through_the_tunnel_and_a_refusing_proxy_is_reported_without_secrets() {
    let pki = Pki::new(false);
    let api = TestServer::start_tls(Arc::new(pki.server.clone()), |_| ok("tls via proxy")).await;
    let proxy = TestProxy::start(Some("right-pass")).await;
    let url = api.localhost_url("/secure").replace("http://", "https://");
    let client = Client::new(loopback_policy());

    let files = TlsFiles {
        ca_file: Some(pki.file("ca.pem")),
        ..TlsFiles::default()
    };
    let mut p = Problems::default();
    let good = Transport::build(
        Some(&files),
        Some(&proxy.url("ops:right-pass@")),
        &[],
        "c",
        &mut p,
    );
    let response = client.send(get(&url).transport(good)).await.unwrap();
    assert_eq!(response.body, "tls via proxy");
    assert_eq!(api.seen()[0].sni.as_deref(), Some("localhost"));
    assert!(proxy.heads()[0].starts_with("CONNECT 127.0.0.1:"));

    let bad = Transport::build(
        Some(&files),
        Some(&proxy.url("ops:wrong-pass@")),
        &[],
        "c",
        &mut p,
    );
    let err = client.send(get(&url).transport(bad)).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("refused the tunnel") && text.contains("407"),
        "{text}"
    );
    assert!(!text.contains("wrong-pass"), "{text}");
    assert!(p.is_empty());
    assert_eq!(api.hits(), 1);
}

/// The files a connection names are read when the config loads; a missing one is named.
#[test]
fn a_connection_with_unreadable_tls_files_is_refused_by_key() {
    let missing: &Path = Path::new("/nonexistent/hookgate/ca.pem");
    let mut p = Problems::default();
    let files = TlsFiles {
        ca_file: Some(missing.to_owned()),
        ..TlsFiles::default()
    };
    assert!(Transport::build(Some(&files), None, &[], "connections.ledger", &mut p).is_none());
    let text = p.into_error("consumer.toml").to_string();
    assert!(text.contains("connections.ledger.tls.ca_file"), "{text}");
    assert!(text.contains("/nonexistent/hookgate/ca.pem"), "{text}");
}
