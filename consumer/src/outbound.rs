//! The SSRF-safe outbound HTTP client of the `http` task and of pollers: every request a
//! flow makes to the outside world goes through [`Client::send`].
//!
//! A flow's URL is templated from webhook data, so it is attacker-influenced. The client
//! therefore resolves the host itself, checks every resolved address against the
//! [`Policy`] (loopback, private, link-local, cloud metadata, CGNAT, multicast and
//! reserved ranges are refused unless allowlisted; see [`address`]) and connects to a
//! checked address directly, so DNS rebinding between check and connect cannot work.
//! Redirects are off by default; each one followed is checked like the first hop.
//! Everything is bounded: one timeout over DNS, connect, TLS, request and body; the body
//! size; the response head.
//!
//! Connections are kept alive and reused (HTTP/1.1, or HTTP/2 where the server offers it
//! over TLS), pooled by the address the policy checked, so reuse never skips a check.
//!
//! Layout: [`address`] classifies IPs; [`policy`] holds the allowlist and limits and the
//! `[outbound]` config; `target` parses a URL and resolves and checks its host;
//! `redirect` builds the next hop; [`transport`] makes the TLS configs and holds a
//! connection's own CA, client certificate and proxy; `pool` keeps connections; `connect`
//! does one exchange.

pub mod address;
mod connect;
pub mod oauth2;
pub mod policy;
mod pool;
mod redirect;
mod target;
pub mod transport;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, HOST, LOCATION, USER_AGENT};
use http::{HeaderName, HeaderValue, Method};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio_rustls::TlsConnector;

pub use address::AddressClass;

/// Why a URL could never be requested, whatever it resolves to (a constant URI is checked
/// with this when the config is loaded, so `check` refuses what a run would).
pub fn check_url(url: &str) -> Result<(), String> {
    target::Target::parse(url).map(drop).map_err(|e| match e {
        OutboundError::InvalidUrl(why) => why,
        other => other.to_string(),
    })
}
pub use policy::{Cidr, OutboundConfig, Policy};

use redirect::Hop;
use target::{truncate, Target};

/// A request's total time unless it says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers the client sets itself: the framing is its business, and a caller-chosen
/// `Host` would make the request say one destination while going to another.
pub const RESERVED_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
];

/// Why a request failed. Messages name the host and the reason, never a URL's path,
/// query or credentials, nor a header value: those may carry secrets.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The SSRF policy: the host resolved to an address of a refused class.
    #[error("refused to connect to `{host}` ({addr}): {class} address; add it to outbound.allow if this is intended")]
    Refused {
        host: String,
        addr: IpAddr,
        class: AddressClass,
    },
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error("invalid header name `{0}`")]
    HeaderName(String),
    /// CR, LF, NUL or another control character: header injection from a template.
    #[error("header `{name}` has a value with CR, LF or another control character")]
    HeaderValue { name: String },
    #[error("header `{0}` is set by the client and may not be given")]
    ReservedHeader(String),
    #[error("no response within {after:?}")]
    Timeout { after: Duration },
    #[error("cannot resolve `{host}`: {reason}")]
    Resolve { host: String, reason: String },
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("response body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("more than {limit} redirects")]
    Redirects { limit: u32 },
    #[error("HTTP: {0}")]
    Http(String),
    /// No access token: the token endpoint refused or answered something unusable.
    #[error("OAuth2: {message}")]
    OAuth2 { message: String, transient: bool },
}

impl OutboundError {
    /// Whether trying again later may succeed: network trouble, not a refusal or a
    /// mistake in the flow.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            OutboundError::Timeout { .. }
                | OutboundError::Resolve { .. }
                | OutboundError::Connect(_)
                | OutboundError::Http(_)
                | OutboundError::OAuth2 {
                    transient: true,
                    ..
                }
        )
    }
}

/// One outbound request, as a flow's `http` task renders it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub url: String,
    /// Sent in order; `Host`, `Content-Length` and other framing headers are refused.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// The whole exchange: DNS, connect, TLS, request, redirects and reading the body.
    pub timeout: Duration,
    /// An OAuth2 grant: the client adds `Authorization: Bearer` with its token (see
    /// [`oauth2`]).
    pub oauth2: Option<Arc<oauth2::Grant>>,
    /// A connection's own TLS settings and proxy; the client's defaults otherwise.
    pub transport: Option<Arc<transport::Transport>>,
}

impl Request {
    /// A request without headers or body and the default 30 s timeout.
    pub fn new(method: Method, url: impl Into<String>) -> Request {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Bytes::new(),
            timeout: DEFAULT_TIMEOUT,
            oauth2: None,
            transport: None,
        }
    }

    /// Sends the request over `transport` (see [`transport`]).
    pub fn transport(mut self, transport: Option<Arc<transport::Transport>>) -> Request {
        self.transport = transport;
        self
    }

    /// Authenticates the request with an access token of `grant`.
    pub fn oauth2(mut self, grant: Arc<oauth2::Grant>) -> Request {
        self.oauth2 = Some(grant);
        self
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Request {
        self.body = body.into();
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = timeout;
        self
    }
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Lowercase names; values of one name together, in the order received. Non-UTF-8
    /// bytes are replaced.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// The URL that answered: the request's, or the last redirect's.
    pub url: String,
}

impl Response {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The headers as JSON, name → array of values, the shape of `trigger.headers`.
    pub fn headers_json(&self) -> serde_json::Value {
        let mut headers = serde_json::Map::new();
        for (name, value) in &self.headers {
            let entry = headers
                .entry(name.clone())
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if let serde_json::Value::Array(values) = entry {
                values.push(serde_json::Value::String(value.clone()));
            }
        }
        serde_json::Value::Object(headers)
    }
}

/// The client: the policy, the TLS config and the connection pool, shared; cloning is
/// cheap and clones share the pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    policy: Policy,
    tls: TlsConnector,
    pool: pool::Pool,
    /// OAuth2 access tokens, by grant.
    tokens: oauth2::Tokens,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client trusting the Mozilla root store (webpki-roots).
    pub fn new(policy: Policy) -> Client {
        Client::with_root_certificates(policy, transport::public_roots())
    }

    /// A client trusting `roots` instead: a private CA, or a test's self-signed cert.
    pub fn with_root_certificates(policy: Policy, roots: rustls::RootCertStore) -> Client {
        let tls = transport::tls_config(roots, None).expect("no client certificate to refuse");
        let pool = pool::Pool::new(policy.pool_idle_timeout(), policy.pool_max_idle_per_host());
        Client {
            inner: Arc::new(Inner {
                policy,
                tls: TlsConnector::from(tls),
                pool,
                tokens: oauth2::Tokens::default(),
            }),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// TCP connections this client has opened (reused ones count once).
    pub fn connections_opened(&self) -> u64 {
        self.inner.pool.opened()
    }

    /// Sends `req`, following redirects as the policy allows. The URL and headers are
    /// validated before any I/O; the timeout covers everything after. A request with an
    /// OAuth2 grant gets its access token first, and a `401` is tried once more with a
    /// fresh one.
    pub async fn send(&self, req: Request) -> Result<Response, OutboundError> {
        let Some(grant) = req.oauth2.clone() else {
            return self.send_once(req).await;
        };
        let tokens = &self.inner.tokens;
        // The token endpoint is reached the way the API is (its CA, its proxy).
        let via = req.transport.clone();
        let token_request = |r: Request| self.send_once(r.transport(via.clone()));
        let token = tokens.token(&grant, None, token_request).await?;
        let first = req
            .clone()
            .header("authorization", format!("Bearer {token}"));
        let resp = self.send_once(first).await?;
        if resp.status != 401 {
            return Ok(resp);
        }
        let fresh = tokens.token(&grant, Some(&token), token_request).await?;
        self.send_once(req.header("authorization", format!("Bearer {fresh}")))
            .await
    }

    async fn send_once(&self, req: Request) -> Result<Response, OutboundError> {
        let after = req.timeout;
        let hop = Hop {
            target: Target::parse(&req.url)?,
            headers: validate_headers(&req.headers)?,
            method: req.method,
            body: req.body,
        };
        let transport = req.transport.as_deref();
        match tokio::time::timeout(after, self.follow(hop, transport)).await {
            Ok(result) => result,
            Err(_) => Err(OutboundError::Timeout { after }),
        }
    }

    async fn follow(
        &self,
        mut hop: Hop,
        transport: Option<&transport::Transport>,
    ) -> Result<Response, OutboundError> {
        // A connection's own `allow` entries widen the policy for its requests only.
        let widened = transport::Transport::widen(transport, &self.inner.policy);
        let policy = widened.as_ref().unwrap_or(&self.inner.policy);
        let dial = connect::Dial {
            pool: &self.inner.pool,
            tls: &self.inner.tls,
            proxy: policy.proxy(),
            transport,
            connect_timeout: policy.connect_limit(),
        };
        let mut redirects = 0;
        loop {
            let addrs = hop.target.resolve(policy).await.inspect_err(|e| {
                if let OutboundError::Refused { host, addr, class } = e {
                    tracing::debug!(%host, %addr, %class, "outbound request refused");
                }
            })?;
            let request = build_request(&hop)?;
            // The lease keeps the connection until the body has been read; it goes back
            // to the pool then, or closes if the body is not read (a redirect, an error).
            let (response, lease) = connect::exchange(&dial, &hop.target, &addrs, request).await?;
            let status = response.status();
            let location = response.headers().get(LOCATION).cloned();
            if let (true, Some(location)) = (redirect::is_followed(status), location) {
                if policy.redirect_limit() > 0 {
                    if redirects == policy.redirect_limit() {
                        return Err(OutboundError::Redirects {
                            limit: policy.redirect_limit(),
                        });
                    }
                    redirects += 1;
                    tracing::debug!(host = %hop.target.host, status = status.as_u16(), "following a redirect");
                    hop = redirect::next(hop, status, &location)?;
                    continue;
                }
            }
            let response = read_response(hop.target.url, response, policy.response_limit()).await?;
            self.inner.pool.put_back(lease);
            tracing::debug!(host = %hop.target.host, status = response.status, bytes = response.body.len(), redirects, "outbound request done");
            return Ok(response);
        }
    }
}

/// Parses the caller's headers; refuses the ones the client owns and any value that
/// could split the header block.
fn validate_headers(
    headers: &[(String, String)],
) -> Result<Vec<(HeaderName, HeaderValue)>, OutboundError> {
    headers
        .iter()
        .map(|(name, value)| {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| OutboundError::HeaderName(truncate(name, 64)))?;
            if RESERVED_HEADERS.contains(&name.as_str()) {
                return Err(OutboundError::ReservedHeader(name.to_string()));
            }
            // `HeaderValue` refuses CR, LF, NUL and the other control characters but tab.
            let mut value =
                HeaderValue::from_str(value).map_err(|_| OutboundError::HeaderValue {
                    name: name.to_string(),
                })?;
            if name == http::header::AUTHORIZATION || name == http::header::COOKIE {
                value.set_sensitive(true);
            }
            Ok((name, value))
        })
        .collect()
}

fn build_request(hop: &Hop) -> Result<http::Request<Full<Bytes>>, OutboundError> {
    let mut builder = http::Request::builder()
        .method(hop.method.clone())
        .uri(hop.target.path_and_query())
        .header(HOST, hop.target.authority());
    let mut has_agent = false;
    for (name, value) in &hop.headers {
        has_agent |= name == USER_AGENT;
        builder = builder.header(name, value);
    }
    if !has_agent {
        builder = builder.header(USER_AGENT, concat!("hookgate/", env!("CARGO_PKG_VERSION")));
    }
    // Methods that carry a body say so even when it is empty; some servers insist.
    let body_method = matches!(hop.method, Method::POST | Method::PUT | Method::PATCH);
    if !hop.body.is_empty() || body_method {
        builder = builder.header(CONTENT_LENGTH, hop.body.len());
    }
    builder
        .body(Full::new(hop.body.clone()))
        .map_err(|e| OutboundError::InvalidUrl(e.to_string()))
}

async fn read_response(
    url: url::Url,
    response: http::Response<Incoming>,
    limit: usize,
) -> Result<Response, OutboundError> {
    let (parts, mut body) = response.into_parts();
    // A declared length over the cap fails before reading anything; hyper knows a HEAD
    // response or a 204 has no body whatever its Content-Length says.
    if hyper::body::Body::size_hint(&body).lower() > limit as u64 {
        return Err(OutboundError::TooLarge { limit });
    }
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(connect::http_error)?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(OutboundError::TooLarge { limit });
            }
            buf.extend_from_slice(&data);
        }
    }
    let headers = parts
        .headers
        .iter()
        .take(connect::MAX_RESPONSE_HEADERS)
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    Ok(Response {
        status: parts.status.as_u16(),
        headers,
        body: buf.freeze(),
        url: url.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn header_injection_is_refused() {
        for value in [
            "a\r\nX-Injected: 1",
            "a\nb",
            "a\rb",
            "a\0b",
            "\r\n\r\nGET / HTTP/1.1",
        ] {
            let err = validate_headers(&headers(&[("X-Sig", value)])).unwrap_err();
            assert!(
                matches!(&err, OutboundError::HeaderValue { name } if name == "x-sig"),
                "{value:?}: {err}"
            );
            assert!(!err.to_string().contains("Injected"), "{err}");
        }
        assert!(validate_headers(&headers(&[("X-Ok", "tab\there, ünïcode")])).is_ok());
    }

    #[test]
    fn bad_and_reserved_names_are_refused() {
        for name in ["bad name", "x:y", "", "a\r\nb"] {
            assert!(
                matches!(
                    validate_headers(&headers(&[(name, "v")])),
                    Err(OutboundError::HeaderName(_))
                ),
                "{name:?}"
            );
        }
        let err = validate_headers(&headers(&[("a\r\nb", "v")]))
            .unwrap_err()
            .to_string();
        assert!(!err.contains('\n'), "{err}");
        for name in ["Host", "content-length", "Transfer-Encoding", "Connection"] {
            assert!(
                matches!(
                    validate_headers(&headers(&[(name, "v")])),
                    Err(OutboundError::ReservedHeader(_))
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn the_request_carries_host_length_and_agent() {
        let hop = Hop {
            method: Method::POST,
            target: Target::parse("http://api.example:8080/v1/items?x=1#f").unwrap(),
            headers: validate_headers(&headers(&[("X-A", "1"), ("x-a", "2")])).unwrap(),
            body: Bytes::from_static(b"hello"),
        };
        let req = build_request(&hop).unwrap();
        assert_eq!(req.uri(), "/v1/items?x=1");
        assert_eq!(req.headers()[HOST], "api.example:8080");
        assert_eq!(req.headers()[CONTENT_LENGTH], "5");
        assert!(req.headers()[USER_AGENT]
            .to_str()
            .unwrap()
            .starts_with("hookgate/"));
        let xa: Vec<_> = req.headers().get_all("x-a").iter().collect();
        assert_eq!(xa, ["1", "2"]);

        let get = Hop {
            method: Method::GET,
            body: Bytes::new(),
            ..hop
        };
        assert!(build_request(&get)
            .unwrap()
            .headers()
            .get(CONTENT_LENGTH)
            .is_none());
    }

    #[tokio::test]
    async fn invalid_requests_fail_before_any_io() {
        let client = Client::new(Policy::strict());
        // Unresolvable on purpose: reaching DNS would give a Resolve error instead.
        let url = "http://hookgate-test.invalid/";
        let err = client
            .send(Request::new(Method::GET, url).header("X-A", "a\r\nb"))
            .await
            .unwrap_err();
        assert!(matches!(err, OutboundError::HeaderValue { .. }), "{err}");
        let err = client
            .send(Request::new(
                Method::GET,
                "http://u:p@hookgate-test.invalid/",
            ))
            .await
            .unwrap_err();
        assert!(matches!(err, OutboundError::InvalidUrl(_)), "{err}");
        assert!(!err.to_string().contains("u:p"), "{err}");
    }

    #[test]
    fn transient_errors_are_the_network_ones() {
        assert!(OutboundError::Timeout {
            after: Duration::from_secs(1)
        }
        .is_transient());
        assert!(OutboundError::Connect("refused".into()).is_transient());
        assert!(!OutboundError::Refused {
            host: "x".into(),
            addr: "127.0.0.1".parse().unwrap(),
            class: AddressClass::Loopback
        }
        .is_transient());
        assert!(!OutboundError::TooLarge { limit: 1 }.is_transient());
    }
}
