//! A local HTTP(S) server for tests: records every request it receives and answers
//! with a closure, standing in for the external APIs flows call.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// One request as the test server received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// The TLS server name the client sent, for HTTPS servers.
    pub sni: Option<String>,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// The subject of the certificate the client showed (mTLS), as its DER bytes.
    pub client_cert: Option<Vec<u8>>,
    /// Which TCP connection it came on: 1 for the server's first, and so on.
    pub connection: usize,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Holds a reply back this long before sending it (see [`delayed`]).
#[derive(Debug, Clone, Copy)]
struct Delay(std::time::Duration);

/// `reply`, sent only after `delay`; the server keeps serving other requests meanwhile.
pub fn delayed(mut reply: Reply, delay: std::time::Duration) -> Reply {
    reply.extensions_mut().insert(Delay(delay));
    reply
}

pub type Reply = http::Response<Full<Bytes>>;

/// A reply with a JSON body.
pub fn json_reply(status: u16, body: &serde_json::Value) -> Reply {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid reply")
}
pub type Responder = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// A hyper server on 127.0.0.1:0 that records every request and answers with a closure.
pub struct TestServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl TestServer {
    pub async fn start(respond: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> TestServer {
        TestServer::serve(None, Arc::new(respond)).await
    }

    pub async fn start_tls(
        config: Arc<rustls::ServerConfig>,
        respond: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> TestServer {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        TestServer::serve(Some(acceptor), Arc::new(respond)).await
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>, respond: Responder) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (log, count) = (seen.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let number = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                let (log, respond, tls) = (log.clone(), respond.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => serve_one(tcp, Peer::plain(number), log, respond).await,
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let session = stream.get_ref().1;
                            let peer = Peer {
                                sni: session.server_name().map(str::to_owned),
                                client_cert: session
                                    .peer_certificates()
                                    .and_then(|c| c.first())
                                    .map(|c| c.to_vec()),
                                connection: number,
                            };
                            serve_one(stream, peer, log, respond).await
                        }
                    }
                });
            }
        });
        TestServer {
            addr,
            seen,
            connections,
        }
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port())
    }

    /// `http://localhost:PORT{path}`.
    pub fn localhost_url(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.port())
    }

    pub fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// What the server knows of a connection.
#[derive(Clone)]
struct Peer {
    sni: Option<String>,
    client_cert: Option<Vec<u8>>,
    connection: usize,
}

impl Peer {
    fn plain(connection: usize) -> Peer {
        Peer {
            sni: None,
            client_cert: None,
            connection,
        }
    }
}

/// Serves HTTP/1.1, or HTTP/2 when the client starts with its preface (after ALPN `h2`).
async fn serve_one<S>(io: S, peer: Peer, log: Arc<Mutex<Vec<Seen>>>, respond: Responder)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let (log, respond, peer) = (log.clone(), respond.clone(), peer.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let seen = Seen {
                method: parts.method.to_string(),
                target: parts
                    .uri
                    .path_and_query()
                    .map_or_else(|| parts.uri.to_string(), |p| p.to_string()),
                headers: parts
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_owned()))
                    .collect(),
                body,
                sni: peer.sni,
                version: format!("{:?}", parts.version),
                client_cert: peer.client_cert,
                connection: peer.connection,
            };
            // Recorded on arrival, so a test sees a request the server is still holding.
            log.lock().unwrap().push(seen.clone());
            let reply = respond(&seen);
            if let Some(Delay(d)) = reply.extensions().get::<Delay>().copied() {
                tokio::time::sleep(d).await;
            }
            Ok::<_, Infallible>(reply)
        }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await;
}
