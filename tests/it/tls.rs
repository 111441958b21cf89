//! TLS with rustls: HTTPS over HTTP/1.1 and HTTP/2 (ALPN), and a certificate swapped by a
//! reload for new connections.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::support::GatewayBuilder;

struct Cert {
    der: CertificateDer<'static>,
}

/// Writes a fresh self-signed certificate and key for 127.0.0.1 to `cert` and `key`.
fn write_cert(cert: &std::path::Path, key: &std::path::Path) -> Cert {
    let c =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    std::fs::write(cert, c.cert.pem()).unwrap();
    std::fs::write(key, c.signing_key.serialize_pem()).unwrap();
    Cert {
        der: c.cert.der().clone(),
    }
}

/// Connects over TLS trusting only `cert`, offering `alpn`; returns the stream and the
/// certificate the server presented.
async fn connect(
    addr: &str,
    cert: &Cert,
    alpn: &[&[u8]],
) -> (tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .expect("TLS handshake with the gateway");
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    (tls, presented)
}

fn request(addr: &str) -> ::http::Request<Full<Bytes>> {
    ::http::Request::post(format!("https://{addr}/hooks/s"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{\"tls\":true}")))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn https_over_http1_and_http2_and_a_reloaded_certificate() {
    let dir = std::env::temp_dir().join(format!("hookgate-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    let first = write_cert(&cert_path, &key_path);
    let gw = GatewayBuilder::new()
        .brokers("unused:9092")
        .null_sink()
        .server(&format!(
            "tls = {{ cert = \"{}\", key = \"{}\" }}",
            cert_path.display(),
            key_path.display()
        ))
        .admin("reload_token = { value = \"t\" }")
        .hook("id = \"s\"\ntopic = \"t\"\nauth = { scheme = \"none\" }")
        .start()
        .await;
    let addr = gw.url.trim_start_matches("http://").to_string();

    // HTTP/1.1 over TLS.
    let (tls, presented) = connect(&addr, &first, &[b"http/1.1"]).await;
    assert_eq!(presented, first.der.to_vec());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(request(&addr)).await.unwrap();
    assert_eq!(resp.status(), 202);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"{\"id\":"));

    // HTTP/2 negotiated by ALPN.
    let (tls, _) = connect(&addr, &first, &[b"h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(request(&addr)).await.unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.version(), ::http::Version::HTTP_2);

    // Plain HTTP is not served on a TLS listener.
    assert!(crate::support::http::post(&format!("{}/hooks/s", gw.url))
        .body("{}")
        .send()
        .await
        .is_err());

    // A new certificate, reloaded: new connections get it.
    let second = write_cert(&cert_path, &key_path);
    let r = crate::support::http::post(&format!("{}/reload", gw.admin_url))
        .header("authorization", "Bearer t")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let (_, presented) = connect(&addr, &second, &[b"http/1.1"]).await;
    assert_eq!(presented, second.der.to_vec());
    gw.stop().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
