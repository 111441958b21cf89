//! How a request reaches its server beyond the policy: which certificate authorities it
//! trusts, which client certificate it shows (mTLS), and whether it goes through an HTTP
//! proxy. The rustls configs (the client's default and a connection's own) are made here. The client has a default (the public roots, `[outbound] proxy`); a named
//! connection may bring its own:
//!
//! ```toml
//! [connections.ledger]
//! base_url = "https://ledger.corp.internal"
//! tls = { ca_file = "/etc/hookgate/corp-ca.pem", cert_file = "/run/secrets/ledger.crt", key_file = "/run/secrets/ledger.key" }
//! proxy = "http://proxy.corp.internal:3128"   # or "direct" to bypass [outbound] proxy
//! ```
//!
//! A proxy is reached with `CONNECT` to the address the policy checked, never to a name,
//! so the proxy cannot be steered somewhere the policy would refuse. The proxy's own
//! address is trusted because an operator wrote it down: it needs no `outbound.allow`
//! entry, and a template can never choose it.

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hookgate_common::config::Problems;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::OutboundError;

/// A `CONNECT` answer's head may not exceed this.
const MAX_PROXY_HEAD: usize = 8 * 1024;

/// The Mozilla root store (webpki-roots).
pub(crate) fn public_roots() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// The rustls client config: the given roots, a client certificate if given, ring, TLS
/// 1.2 and 1.3, ALPN offering HTTP/2 then HTTP/1.1.
pub(crate) fn tls_config(
    roots: rustls::RootCertStore,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `tls = { ca_file, cert_file, key_file }`: PEM files read when the config loads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate authorities trusted instead of the public roots.
    pub ca_file: Option<PathBuf>,
    /// The client certificate chain shown to the server (mTLS), with `key_file`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// An HTTP proxy, parsed from `http://[user:password@]host:port`. Credentials are sent as
/// `Proxy-Authorization: Basic` and never printed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Proxy {
    host: String,
    port: u16,
    authorization: Option<String>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Proxy({}:{}", self.host, self.port)?;
        if self.authorization.is_some() {
            f.write_str(", with credentials")?;
        }
        f.write_str(")")
    }
}

impl Proxy {
    /// Parses a proxy URL; the error never repeats the URL, which may hold a password.
    pub fn parse(text: &str) -> Result<Proxy, String> {
        let url = url::Url::parse(text.trim())
            .map_err(|e| format!("is not a URL ({e}); write it as http://host:port"))?;
        if url.scheme() != "http" {
            return Err(format!(
                "scheme `{}` is not supported; the proxy is spoken to in plain HTTP (http://host:port), and TLS to the API goes through its tunnel",
                url.scheme()
            ));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err("has a path or query; write http://host:port only".into());
        }
        let host = url
            .host_str()
            .ok_or("has no host")?
            .trim_matches(['[', ']'])
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let authorization = (!url.username().is_empty()).then(|| {
            let user = percent_decode(url.username());
            let pass = percent_decode(url.password().unwrap_or(""));
            let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            format!("Basic {pair}")
        });
        Ok(Proxy {
            host,
            port,
            authorization,
        })
    }

    /// Opens a tunnel through the proxy to `target` (a checked address), bounded by
    /// `limit` for the connect and the proxy's answer together.
    pub(crate) async fn tunnel(
        &self,
        target: SocketAddr,
        limit: Duration,
    ) -> Result<TcpStream, OutboundError> {
        match tokio::time::timeout(limit, self.open(target)).await {
            Ok(result) => result,
            Err(_) => Err(OutboundError::Connect(format!(
                "proxy {}:{}: no tunnel within {limit:?}",
                self.host, self.port
            ))),
        }
    }

    async fn open(&self, target: SocketAddr) -> Result<TcpStream, OutboundError> {
        let at = format!("proxy {}:{}", self.host, self.port);
        let mut tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| OutboundError::Connect(format!("{at}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(auth) = &self.authorization {
            head.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
        }
        head.push_str("\r\n");
        tcp.write_all(head.as_bytes())
            .await
            .map_err(|e| OutboundError::Connect(format!("{at}: {e}")))?;
        // Read byte by byte up to the blank line: whatever follows belongs to the tunnel
        // (the TLS handshake), so nothing past the head may be consumed here.
        let mut answer = Vec::with_capacity(128);
        while !answer.ends_with(b"\r\n\r\n") {
            if answer.len() >= MAX_PROXY_HEAD {
                return Err(OutboundError::Connect(format!(
                    "{at}: answer head larger than {MAX_PROXY_HEAD} bytes"
                )));
            }
            let byte = tcp
                .read_u8()
                .await
                .map_err(|e| OutboundError::Connect(format!("{at}: {e}")))?;
            answer.push(byte);
        }
        let status_line = answer
            .split(|&b| b == b'\r')
            .next()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let status = status_line.split(' ').nth(1).unwrap_or("");
        if !status.starts_with('2') || status.len() != 3 {
            return Err(OutboundError::Connect(format!(
                "{at} refused the tunnel: {}",
                super::target::truncate(status_line.trim(), 80)
            )));
        }
        Ok(tcp)
    }
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// `proxy = "http://…"` or `"direct"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// Whatever the client's default is (`[outbound] proxy`, else direct).
    Default,
    Direct,
    Via(Proxy),
}

/// A connection's transport, built: an id for pooling (equal settings share
/// connections), its TLS connector if it has its own, and its route.
pub struct Transport {
    id: u64,
    tls: Option<TlsConnector>,
    route: Route,
    /// Refused addresses this connection may reach besides `[outbound] allow`.
    allow: Vec<String>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("own_tls", &self.tls.is_some())
            .field("route", &self.route)
            .field("allow", &self.allow)
            .finish()
    }
}

impl Transport {
    /// Builds a connection's transport; problems are pushed under `at`
    /// (`connections.NAME`). `None` when there are problems, or when the connection
    /// keeps the client's defaults (and so shares their pooled connections).
    pub fn build(
        tls: Option<&TlsFiles>,
        proxy: Option<&str>,
        allow: &[String],
        at: &str,
        p: &mut Problems,
    ) -> Option<Arc<Transport>> {
        let before = p.len();
        for (i, entry) in allow.iter().enumerate() {
            if let Err(e) = super::Policy::strict().allow(entry) {
                p.push(
                    format!("{at}.allow[{i}]"),
                    e,
                    "write a host name as in URLs, or an address block like \"10.0.0.0/8\"",
                );
            }
        }
        let route = match proxy.map(str::trim) {
            None => Route::Default,
            Some("direct") => Route::Direct,
            Some(url) => match Proxy::parse(url) {
                Ok(proxy) => Route::Via(proxy),
                Err(why) => {
                    p.push(
                        format!("{at}.proxy"),
                        why,
                        "write http://host:port (credentials as http://user:password@host:port), or \"direct\"",
                    );
                    Route::Default
                }
            },
        };
        let connector = tls.and_then(|files| tls_connector(files, &format!("{at}.tls"), p));
        if p.len() > before || (tls.is_none() && route == Route::Default && allow.is_empty()) {
            return None;
        }
        let mut hasher = DefaultHasher::new();
        tls.hash(&mut hasher);
        route.hash(&mut hasher);
        allow.hash(&mut hasher);
        Some(Arc::new(Transport {
            id: hasher.finish() | 1,
            tls: connector,
            route,
            allow: allow.to_vec(),
        }))
    }

    /// `policy` with this connection's `allow` entries lifted too, when it has any.
    pub(crate) fn widen(this: Option<&Transport>, policy: &super::Policy) -> Option<super::Policy> {
        let entries = &this?.allow;
        if entries.is_empty() {
            return None;
        }
        // Entries were checked when the transport was built.
        Some(
            entries
                .iter()
                .fold(policy.clone(), |p, e| p.clone().allow(e).unwrap_or(p)),
        )
    }

    /// Distinguishes pooled connections of different transports; 0 is the default.
    pub(crate) fn id(this: Option<&Transport>) -> u64 {
        this.map_or(0, |t| t.id)
    }

    pub(crate) fn tls(this: Option<&Transport>) -> Option<&TlsConnector> {
        this.and_then(|t| t.tls.as_ref())
    }

    /// The proxy to go through, given the client's default.
    pub(crate) fn proxy<'a>(
        this: Option<&'a Transport>,
        default: Option<&'a Proxy>,
    ) -> Option<&'a Proxy> {
        match this.map(|t| &t.route) {
            None | Some(Route::Default) => default,
            Some(Route::Direct) => None,
            Some(Route::Via(proxy)) => Some(proxy),
        }
    }
}

fn tls_connector(files: &TlsFiles, at: &str, p: &mut Problems) -> Option<TlsConnector> {
    let before = p.len();
    let roots = match &files.ca_file {
        None => public_roots(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(path, &format!("{at}.ca_file"), p) {
                if let Err(e) = roots.add(cert) {
                    p.push(
                        format!("{at}.ca_file"),
                        format!(
                            "`{}` holds a certificate rustls refuses: {e}",
                            path.display()
                        ),
                        "give a PEM file of CA certificates",
                    );
                }
            }
            roots
        }
    };
    let identity = match (&files.cert_file, &files.key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert, &format!("{at}.cert_file"), p);
            let key = match PrivateKeyDer::from_pem_file(key) {
                Ok(key) => Some(key),
                Err(e) => {
                    p.push(
                        format!("{at}.key_file"),
                        format!(
                            "cannot read a PEM private key from `{}`: {e}",
                            key.display()
                        ),
                        "give the client certificate's key as PEM (PKCS#8, PKCS#1 or SEC1)",
                    );
                    None
                }
            };
            key.map(|key| (chain, key))
        }
        (Some(_), None) | (None, Some(_)) => {
            p.push(
                format!("{at}.cert_file"),
                "a client certificate needs both cert_file and key_file",
                "give both, or neither",
            );
            None
        }
    };
    if p.len() > before {
        return None;
    }
    match tls_config(roots, identity) {
        Ok(config) => Some(TlsConnector::from(config)),
        Err(e) => {
            p.push(
                format!("{at}.key_file"),
                format!("the key does not suit the certificate: {e}"),
                "give the key that belongs to cert_file",
            );
            None
        }
    }
}

fn read_certs(path: &Path, at: &str, p: &mut Problems) -> Vec<CertificateDer<'static>> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path).and_then(|i| i.collect());
    match certs {
        Ok(certs) if !certs.is_empty() => certs,
        Ok(_) => {
            p.push(
                at,
                format!("`{}` holds no PEM certificate", path.display()),
                "give a file with -----BEGIN CERTIFICATE----- blocks",
            );
            Vec::new()
        }
        Err(e) => {
            p.push(
                at,
                format!("cannot read `{}`: {e}", path.display()),
                "point it at a readable PEM file",
            );
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse_and_never_print_credentials() {
        let proxy = Proxy::parse("http://ops:s%40cret@proxy.corp:3128").unwrap();
        assert_eq!((proxy.host.as_str(), proxy.port), ("proxy.corp", 3128));
        let expected = base64::engine::general_purpose::STANDARD.encode("ops:s@cret");
        assert_eq!(
            proxy.authorization.as_deref(),
            Some(format!("Basic {expected}").as_str())
        );
        let shown = format!("{proxy:?}");
        assert!(
            !shown.contains("s@cret") && !shown.contains(&expected),
            "{shown}"
        );
        assert_eq!(Proxy::parse("http://[::1]").unwrap().port, 80);

        for bad in [
            "https://proxy:443",
            "socks5://proxy:1080",
            "http://proxy:3128/path",
            "proxy:3128",
        ] {
            let err = Proxy::parse(bad).unwrap_err();
            assert!(!err.contains("s@cret"), "{err}");
        }
        let err = Proxy::parse("http://u:hunter2@proxy:3128/x").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn transports_with_equal_settings_share_an_id() {
        let mut p = Problems::default();
        let a = Transport::build(None, Some("http://proxy:3128"), &[], "c.a", &mut p).unwrap();
        let b = Transport::build(None, Some("http://proxy:3128"), &[], "c.b", &mut p).unwrap();
        let c = Transport::build(None, Some("direct"), &[], "c.c", &mut p).unwrap();
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert_ne!(Transport::id(Some(&c)), Transport::id(None));
        assert!(p.is_empty());
    }

    #[test]
    fn bad_files_are_named_by_key() {
        let mut p = Problems::default();
        let files = TlsFiles {
            ca_file: Some("/nonexistent/ca.pem".into()),
            cert_file: Some("/nonexistent/c.pem".into()),
            key_file: None,
        };
        assert!(Transport::build(
            Some(&files),
            Some("ftp://x"),
            &["*.corp".to_string()],
            "connections.x",
            &mut p
        )
        .is_none());
        let text = p.into_error("consumer.toml").to_string();
        for key in [
            "connections.x.proxy",
            "connections.x.tls.ca_file",
            "connections.x.tls.cert_file",
            "connections.x.allow[0]",
        ] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
    }
}
