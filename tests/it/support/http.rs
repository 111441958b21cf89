//! A small HTTP/1.1 client for tests: one connection per request, so every test sees
//! exactly what it sent.

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What came back.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {:?}", self.body))
    }

    /// The event id of a 202.
    pub fn event_id(&self) -> String {
        assert_eq!(
            self.status, 202,
            "expected 202, got {}: {:?}",
            self.status, self.body
        );
        self.json()["id"]
            .as_str()
            .expect("id in 202 body")
            .to_string()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A request under construction.
pub struct Req {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

pub fn post(url: &str) -> Req {
    Req {
        method: Method::POST,
        url: url.to_string(),
        headers: Vec::new(),
        body: Bytes::new(),
    }
}

pub async fn get(url: &str) -> anyhow::Result<Reply> {
    post(url).method(Method::GET).send().await
}

impl Req {
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn content_type(self, ct: &str) -> Self {
        self.header("content-type", ct)
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn json(self, v: &serde_json::Value) -> Self {
        self.content_type("application/json").body(v.to_string())
    }

    pub async fn send(self) -> anyhow::Result<Reply> {
        let uri: http::Uri = self.url.parse()?;
        let authority = uri.authority().expect("absolute URL").to_string();
        let stream = TcpStream::connect(&authority).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(self.method)
            .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header("host", authority);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let resp = sender.send_request(req.body(Full::new(self.body))?).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}
