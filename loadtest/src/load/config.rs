//! What a run is: the target, the load's shape (closed or open loop, connections,
//! duration, rate), the request to send or the [`Requests`] that make them; and the
//! command line's parsers for it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Result};
use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::Full;

use crate::report::{Mode, Setup};

pub use hookgate_common::time::parse_duration;

/// Default number of workers sharing one HTTP/2 connection: enough
/// multiplexing to matter, few enough that one connection's single task is
/// not the bottleneck.
pub const WORKERS_PER_H2_CONNECTION: usize = 16;

/// Everything a run needs. [`LoadConfig::new`] gives the command line's
/// defaults.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub url: String,
    /// Concurrent requests: HTTP/1.1 connections, or HTTP/2 streams.
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Requests per second for an open loop; `None` for a closed loop.
    pub rate: Option<f64>,
    pub method: Method,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// Sent with a non-empty body unless `headers` has its own.
    pub content_type: HeaderValue,
    pub http2: bool,
    /// HTTP/2 connections to spread the workers over; `None` for one per
    /// [`WORKERS_PER_H2_CONNECTION`] workers.
    pub h2_connections: Option<usize>,
    /// Per request, and per connection attempt.
    pub timeout: Duration,
    /// Server process whose CPU time and peak RSS to report.
    pub server_pid: Option<u32>,
    /// Makes each request instead of `method`, `headers`, `body` and the URL's path (a
    /// scenario's mix of hooks); `None` sends the same request every time.
    pub requests: Option<Arc<dyn Requests>>,
    /// Keep the event id of every 2xx answer, for the loss check.
    pub collect_ids: bool,
}

/// Makes the requests of a run, one at a time, from any worker.
pub trait Requests: Send + Sync + std::fmt::Debug {
    /// Request number `seq` (numbered across the whole run, warm-up included), and the
    /// index of the group it belongs to (a scenario's hook), reported with its answer.
    fn request(&self, seq: u64, to: &Destination) -> (Request<Full<Bytes>>, u16);
}

/// The server's address in the form each protocol wants it.
#[derive(Debug, Clone)]
pub struct Destination {
    pub(super) http2: bool,
    /// HTTP/2's `:authority`, and HTTP/1.1's `Host`.
    pub(super) authority: http::uri::Authority,
    pub(super) host: HeaderValue,
}

impl Destination {
    /// HTTP/1.1 requests to `authority` (`host:port`).
    pub fn http1(authority: &str) -> Result<Self> {
        Ok(Self {
            http2: false,
            authority: authority.parse()?,
            host: HeaderValue::from_str(authority)?,
        })
    }

    /// A request to `path_and_query` on the server: HTTP/1.1 gets the origin form and a
    /// `Host` header (unless `headers` has one), HTTP/2 the absolute form.
    pub fn request(
        &self,
        method: Method,
        path_and_query: &str,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>> {
        let uri = if self.http2 {
            Uri::builder()
                .scheme("http")
                .authority(self.authority.clone())
                .path_and_query(path_and_query)
                .build()?
        } else {
            if !headers.contains_key(HOST) {
                headers.insert(HOST, self.host.clone());
            }
            path_and_query.parse()?
        };
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        Ok(request)
    }
}

impl LoadConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            connections: 64,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            rate: None,
            method: Method::POST,
            headers: Vec::new(),
            body: Bytes::new(),
            content_type: HeaderValue::from_static("application/json"),
            http2: false,
            h2_connections: None,
            timeout: Duration::from_secs(5),
            server_pid: None,
            requests: None,
            collect_ids: false,
        }
    }

    pub fn mode(&self) -> Mode {
        if self.rate.is_some() {
            Mode::Open
        } else {
            Mode::Closed
        }
    }

    pub(super) fn h2_connection_count(&self) -> usize {
        if !self.http2 {
            return 0;
        }
        self.h2_connections
            .unwrap_or_else(|| self.connections.div_ceil(WORKERS_PER_H2_CONNECTION))
            .clamp(1, self.connections.max(1))
    }

    pub(super) fn validate(&self) -> Result<()> {
        ensure!(self.connections > 0, "--connections must be at least 1");
        ensure!(!self.duration.is_zero(), "--duration must be more than 0");
        ensure!(!self.timeout.is_zero(), "--timeout must be more than 0");
        if let Some(rate) = self.rate {
            ensure!(
                rate.is_finite() && rate > 0.0,
                "--rate must be a positive number of requests per second"
            );
        }
        ensure!(
            self.h2_connections != Some(0),
            "--h2-connections must be at least 1"
        );
        Ok(())
    }

    pub fn setup(&self) -> Setup {
        Setup {
            url: self.url.clone(),
            mode: self.mode(),
            http2: self.http2,
            connections: self.connections,
            h2_connections: self.h2_connection_count(),
            rate: self.rate,
            method: self.method.to_string(),
            body_bytes: self.body.len(),
            warmup_s: self.warmup.as_secs_f64(),
            timeout_s: self.timeout.as_secs_f64(),
        }
    }
}

/// Parses `Name: value`.
pub fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not `Name: value`"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|e| format!("bad header name in `{text}`: {e}"))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|e| format!("bad header value in `{text}`: {e}"))?;
    Ok((name, value))
}
