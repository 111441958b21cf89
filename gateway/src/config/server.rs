//! `[server]` and `[admin]`: the webhook listener and the local admin listener.

use serde::Deserialize;

use super::{ByteSize, ConfigDuration, Problems, SecretRef};

/// Serving threads at most.
pub const MAX_THREADS: usize = 256;

/// The public listener that senders post webhooks to.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on, `ip:port`.
    pub listen: String,
    /// Open connections at most; past it the gateway stops accepting until one closes.
    pub max_connections: usize,
    /// Requests being handled at once at most, across all connections; past it requests
    /// are shed with 503 and `Retry-After`.
    pub max_in_flight: usize,
    /// Time a client has to send the request line and headers; also how long an idle
    /// keep-alive connection waits for its next request.
    pub header_read_timeout: ConfigDuration,
    /// Time a client has to send the whole body, counted from the end of the headers.
    pub body_read_timeout: ConfigDuration,
    /// Bytes of request line and headers at most (at least 8KiB); past it, 431.
    pub max_header_bytes: ByteSize,
    /// Header fields per request at most; past it, 431.
    pub max_headers: usize,
    /// Serve HTTP/2 (with prior knowledge) beside HTTP/1.1.
    pub http2: bool,
    /// HTTP/2 streams per connection at most.
    pub http2_max_concurrent_streams: u32,
    /// 0: connections run on the shared work-stealing runtime. N: N serving threads, each
    /// accepting on the listener and running its connections to the end on its own.
    pub threads: usize,
    /// On SIGTERM/SIGINT, how long the listener keeps serving after `/readyz` turned 503,
    /// so a load balancer's health checks move traffic away before it closes.
    pub drain_delay: ConfigDuration,
    /// On SIGTERM/SIGINT, time given to in-flight requests, once the listener stopped
    /// accepting, before the gateway exits.
    pub shutdown_timeout: ConfigDuration,
    /// Proxies whose `X-Forwarded-For` is believed, as address blocks
    /// (`["10.0.0.0/8"]`). Empty: the peer address is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Serve HTTPS with these PEM files: `{ cert = "…", key = "…" }`. Reloadable.
    pub tls: Option<TlsConfig>,
}

/// Certificate chain and private key, PEM.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// The admin listener: health, readiness and metrics. Keep it off the public network.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on; `127.0.0.1` by default so it is not reachable from outside.
    pub listen: String,
    /// Enables `POST /reload`, for callers presenting `Authorization: Bearer <token>`.
    pub reload_token: Option<SecretRef>,
}

impl ServerConfig {
    pub(super) fn validate(&self, p: &mut Problems) {
        check_addr(&self.listen, "server.listen", p);
        for (key, value) in [
            ("server.max_connections", self.max_connections),
            ("server.max_in_flight", self.max_in_flight),
            ("server.max_headers", self.max_headers),
        ] {
            if value == 0 {
                p.push(key, "must be at least 1", "raise it");
            }
        }
        if self.max_header_bytes.0 < 8192 {
            p.push(
                "server.max_header_bytes",
                format!("{} is below the minimum of 8KiB", self.max_header_bytes),
                "set at least \"8KiB\"",
            );
        }
        if self.threads > MAX_THREADS {
            p.push(
                "server.threads",
                format!("{} is more than {MAX_THREADS}", self.threads),
                "set about one per core, or 0 for the shared runtime",
            );
        }
        if self.http2_max_concurrent_streams == 0 {
            p.push(
                "server.http2_max_concurrent_streams",
                "must be at least 1",
                "raise it, or set `http2 = false`",
            );
        }
        if let Err(errors) = crate::client::CidrList::parse(&self.trusted_proxies) {
            for (i, e) in errors {
                p.push(
                    format!("server.trusted_proxies[{i}]"),
                    e,
                    "write an address block like \"10.0.0.0/8\"",
                );
            }
        }
        if let Some(tls) = &self.tls {
            if let Err(e) = crate::tls::load(tls, self.http2) {
                p.push(
                    "server.tls",
                    e,
                    "point cert and key at readable PEM files that belong together",
                );
            }
        }
        p.nonzero(
            "server.header_read_timeout",
            self.header_read_timeout,
            "10s",
        );
        p.nonzero("server.body_read_timeout", self.body_read_timeout, "10s");
    }
}

impl AdminConfig {
    pub(super) fn validate(&self, env: &super::Environment, p: &mut Problems) {
        check_addr(&self.listen, "admin.listen", p);
        if let Some(Err(e)) = self.reload_token.as_ref().map(|r| r.resolve(env)) {
            p.secret("admin.reload_token", e);
        }
    }
}

fn check_addr(addr: &str, key: &str, p: &mut Problems) {
    if addr.parse::<std::net::SocketAddr>().is_err() {
        p.push(
            key,
            format!("`{addr}` is not an address"),
            "write `ip:port`, like \"0.0.0.0:8080\"",
        );
    }
}
