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
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (log, respond, tls) = (log.clone(), respond.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => serve_one(tcp, None, log, respond).await,
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let sni = stream.get_ref().1.server_name().map(str::to_owned);
                            serve_one(stream, sni, log, respond).await
                        }
                    }
                });
            }
        });
        TestServer { addr, seen }
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

async fn serve_one<S>(io: S, sni: Option<String>, log: Arc<Mutex<Vec<Seen>>>, respond: Responder)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let (log, respond, sni) = (log.clone(), respond.clone(), sni.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let seen = Seen {
                method: parts.method.to_string(),
                target: parts.uri.to_string(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_owned()))
                    .collect(),
                body,
                sni,
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
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}
