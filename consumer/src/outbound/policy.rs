//! The outbound policy: which refused addresses an operator lifts, how many redirects to
//! follow and how much to read. [`OutboundConfig`] is the `[outbound]` config section;
//! [`OutboundConfig::build`] turns it into a [`Policy`], which the client consults for
//! every resolved address of every hop.

use std::net::IpAddr;
use std::time::Duration;

use hookgate_common::config::{ConfigDuration, Problems};
pub use hookgate_common::net::Cidr;
use serde::Deserialize;

use super::address::{canonical, classify, AddressClass};
use super::transport::Proxy;

/// Bodies above this are refused unless configured otherwise: 10 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 10 * 1024 * 1024;
/// How long one TCP connect may take unless configured otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an unused keep-alive connection is kept unless configured otherwise: below
/// the keep-alive of common servers, so the server rarely closes one as it is reused.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Unused connections kept per destination unless configured otherwise.
pub const DEFAULT_POOL_MAX_IDLE_PER_HOST: usize = 32;

// Upper bounds on the configurable limits, so that a typo cannot unbound them.
const MAX_REDIRECTS: u32 = 20;
const MAX_RESPONSE_BYTES: usize = 1024 * 1024 * 1024;
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
const MAX_POOL_IDLE_PER_HOST: usize = 256;

/// The `[outbound]` section: the SSRF guard of the `http` task and of pollers.
///
/// ```toml
/// [outbound]
/// allow = ["hooks.slack.com", "10.0.0.0/8", "127.0.0.1/32"]
/// follow_redirects = 0
/// max_response_bytes = 10485760
/// connect_timeout = "10s"
/// pool_idle_timeout = "15s"
/// pool_max_idle_per_host = 32
/// proxy = "http://proxy.corp.internal:3128"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundConfig {
    /// Destinations that may be reached although their address is loopback, private,
    /// link-local, metadata, CGNAT, multicast or reserved. Each entry is either an exact
    /// host name as written in URLs (`"internal-api.corp"`; no wildcards, no port), which
    /// lifts the refusal for whatever that name resolves to, or an address block
    /// (`"10.0.0.0/8"`, `"fd00::/8"`; a bare address is a /32 or /128), which lifts it for
    /// addresses inside, whatever name led there. Public addresses need no entry.
    #[serde(default)]
    pub allow: Vec<String>,
    /// How many redirects to follow. 0 (the default) returns a 3xx response as it is;
    /// every hop followed is checked like the first. At most 20.
    #[serde(default)]
    pub follow_redirects: u32,
    /// The largest response body read, in bytes; a larger one fails the request.
    /// Default 10 MiB, at most 1 GiB.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// How long one TCP connect may take, e.g. `"5s"`. Default `"10s"`, at most `"5m"`.
    /// The request's own timeout bounds the whole exchange on top of this.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: ConfigDuration,
    /// How long an unused keep-alive connection is kept. Default `"15s"`, at most `"10m"`.
    #[serde(default = "default_pool_idle_timeout")]
    pub pool_idle_timeout: ConfigDuration,
    /// Unused connections kept per destination; 0 opens a connection per request.
    /// Default 32, at most 256.
    #[serde(default = "default_pool_max_idle_per_host")]
    pub pool_max_idle_per_host: usize,
    /// An HTTP proxy every request goes through (`CONNECT` to the checked address), unless
    /// its connection says otherwise: `http://[user:password@]host:port`.
    pub proxy: Option<String>,
}

fn default_pool_idle_timeout() -> ConfigDuration {
    ConfigDuration(DEFAULT_POOL_IDLE_TIMEOUT)
}

fn default_pool_max_idle_per_host() -> usize {
    DEFAULT_POOL_MAX_IDLE_PER_HOST
}

fn default_max_response_bytes() -> usize {
    DEFAULT_MAX_RESPONSE_BYTES
}

fn default_connect_timeout() -> ConfigDuration {
    ConfigDuration(DEFAULT_CONNECT_TIMEOUT)
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            allow: Vec::new(),
            follow_redirects: 0,
            max_response_bytes: default_max_response_bytes(),
            connect_timeout: default_connect_timeout(),
            pool_idle_timeout: default_pool_idle_timeout(),
            pool_max_idle_per_host: default_pool_max_idle_per_host(),
            proxy: None,
        }
    }
}

impl OutboundConfig {
    /// Makes the policy; every problem goes to `p` with its key.
    pub fn build(&self, p: &mut Problems) -> Option<Policy> {
        let before = p.len();
        let mut policy = Policy::strict();
        for (i, entry) in self.allow.iter().enumerate() {
            match policy.clone().allow(entry) {
                Ok(next) => policy = next,
                Err(e) => p.push(
                    format!("outbound.allow[{i}]"),
                    e,
                    "write a host name as in URLs, or an address block like \"10.0.0.0/8\"",
                ),
            }
        }
        if self.follow_redirects > MAX_REDIRECTS {
            p.push(
                "outbound.follow_redirects",
                format!(
                    "{} is more than the {MAX_REDIRECTS} allowed",
                    self.follow_redirects
                ),
                "lower it",
            );
        }
        if self.max_response_bytes == 0 || self.max_response_bytes > MAX_RESPONSE_BYTES {
            p.push(
                "outbound.max_response_bytes",
                format!(
                    "{} is not between 1 and {MAX_RESPONSE_BYTES}",
                    self.max_response_bytes
                ),
                "choose a size in that range",
            );
        }
        let timeout = self.connect_timeout.get();
        if timeout.is_zero() || timeout > MAX_CONNECT_TIMEOUT {
            p.push(
                "outbound.connect_timeout",
                format!("{} is not between 1ms and 5m", self.connect_timeout),
                "choose a duration in that range",
            );
        }
        let idle = self.pool_idle_timeout.get();
        if idle.is_zero() || idle > MAX_POOL_IDLE_TIMEOUT {
            p.push(
                "outbound.pool_idle_timeout",
                format!("{} is not between 1ms and 10m", self.pool_idle_timeout),
                "choose a duration in that range",
            );
        }
        if self.pool_max_idle_per_host > MAX_POOL_IDLE_PER_HOST {
            p.push(
                "outbound.pool_max_idle_per_host",
                format!(
                    "{} is more than the {MAX_POOL_IDLE_PER_HOST} allowed",
                    self.pool_max_idle_per_host
                ),
                "lower it (0 turns keep-alive off)",
            );
        }
        let proxy = match self.proxy.as_deref().map(Proxy::parse).transpose() {
            Ok(proxy) => proxy,
            Err(why) => {
                p.push(
                    "outbound.proxy",
                    why,
                    "write http://host:port (credentials as http://user:password@host:port)",
                );
                None
            }
        };
        (p.len() == before).then(|| {
            let mut policy = policy
                .connect_timeout(timeout)
                .max_redirects(self.follow_redirects)
                .max_response_bytes(self.max_response_bytes)
                .pool(idle, self.pool_max_idle_per_host);
            policy.proxy = proxy;
            policy
        })
    }
}

/// What the client may reach and how much it reads. Start from [`Policy::strict`] and
/// lift refusals one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    hosts: Vec<String>,
    cidrs: Vec<Cidr>,
    max_redirects: u32,
    max_response_bytes: usize,
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
    proxy: Option<Proxy>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::strict()
    }
}

impl Policy {
    /// Nothing but public addresses, no redirects followed, 10 MiB bodies, 10 s connects.
    pub fn strict() -> Policy {
        Policy {
            hosts: Vec::new(),
            cidrs: Vec::new(),
            max_redirects: 0,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            pool_max_idle_per_host: DEFAULT_POOL_MAX_IDLE_PER_HOST,
            proxy: None,
        }
    }

    /// Lifts the refusal for one host name as it appears in URLs, whatever it resolves
    /// to. Compared exactly, case-insensitively, ignoring a final dot. An address given
    /// here is taken as a single-address block.
    pub fn allow_host(mut self, name: &str) -> Policy {
        if let Ok(ip) = name.trim_matches(['[', ']']).parse::<IpAddr>() {
            return self.allow_cidr(Cidr::single(ip));
        }
        self.hosts.push(normalize_name(name));
        self
    }

    /// Lifts the refusal for addresses inside `cidr`, whatever name led to them.
    pub fn allow_cidr(mut self, cidr: Cidr) -> Policy {
        self.cidrs.push(cidr);
        self
    }

    /// Parses one `allow` entry, a host name or an address block, and lifts it.
    pub fn allow(self, entry: &str) -> Result<Policy, String> {
        let entry = entry.trim();
        if entry.contains('/') && !entry.contains("://") {
            return Ok(self.allow_cidr(entry.parse()?));
        }
        if let Ok(ip) = entry.trim_matches(['[', ']']).parse::<IpAddr>() {
            return Ok(self.allow_cidr(Cidr::single(ip)));
        }
        let hint = if entry.is_empty() {
            Some("is empty")
        } else if entry.contains("://") {
            Some("is a URL; write the host name alone, e.g. \"hooks.slack.com\"")
        } else if entry.contains('*') {
            Some("wildcards are not supported; list each host name")
        } else if entry.contains(':') {
            Some("has a port; write the host name alone (ports are not restricted)")
        } else {
            None
        };
        if let Some(hint) = hint {
            return Err(format!("`{entry}` {hint}"));
        }
        // The WHATWG host parser is the one URLs go through, so the entry is compared in
        // the same form: lowercase, IDNA to punycode, numeric IPv4 forms canonical.
        match url::Host::parse(entry) {
            Ok(url::Host::Domain(d)) => Ok(self.allow_host(&d)),
            Ok(url::Host::Ipv4(ip)) => Ok(self.allow_cidr(Cidr::single(ip.into()))),
            Ok(url::Host::Ipv6(ip)) => Ok(self.allow_cidr(Cidr::single(ip.into()))),
            Err(e) => Err(format!(
                "`{entry}` is not a host name or address block: {e}"
            )),
        }
    }

    /// Follow up to `n` redirects; 0 returns 3xx responses as they are.
    pub fn max_redirects(mut self, n: u32) -> Policy {
        self.max_redirects = n;
        self
    }

    /// Fail requests whose response body exceeds `n` bytes.
    pub fn max_response_bytes(mut self, n: usize) -> Policy {
        self.max_response_bytes = n;
        self
    }

    /// Bound each TCP connect attempt.
    pub fn connect_timeout(mut self, d: Duration) -> Policy {
        self.connect_timeout = d;
        self
    }

    /// Keep unused connections `idle` long, at most `max_idle_per_host` per destination
    /// (0: no keep-alive).
    pub fn pool(mut self, idle: Duration, max_idle_per_host: usize) -> Policy {
        self.pool_idle_timeout = idle;
        self.pool_max_idle_per_host = max_idle_per_host;
        self
    }

    /// Send every request through `proxy` unless its connection says otherwise.
    pub fn via_proxy(mut self, proxy: Proxy) -> Policy {
        self.proxy = Some(proxy);
        self
    }

    pub fn pool_idle_timeout(&self) -> Duration {
        self.pool_idle_timeout
    }

    pub fn pool_max_idle_per_host(&self) -> usize {
        self.pool_max_idle_per_host
    }

    pub fn proxy(&self) -> Option<&Proxy> {
        self.proxy.as_ref()
    }

    pub fn redirect_limit(&self) -> u32 {
        self.max_redirects
    }

    pub fn response_limit(&self) -> usize {
        self.max_response_bytes
    }

    pub fn connect_limit(&self) -> Duration {
        self.connect_timeout
    }

    /// Whether `ip`, one address that `name` (the URL's host name, `None` for an address
    /// literal) resolved to, may be connected to; if not, why.
    pub fn permits(&self, name: Option<&str>, ip: IpAddr) -> Result<(), AddressClass> {
        let Some(class) = classify(ip) else {
            return Ok(());
        };
        let by_name = name.is_some_and(|n| {
            let n = normalize_name(n);
            self.hosts.contains(&n)
        });
        let by_block = self
            .cidrs
            .iter()
            .any(|c| c.contains(ip) || c.contains(canonical(ip)));
        if by_name || by_block {
            Ok(())
        } else {
            Err(class)
        }
    }
}

fn normalize_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn config_builds_the_documented_example() {
        let cfg: OutboundConfig = toml::from_str(
            r#"
            allow = ["hooks.slack.com", "10.0.0.0/8", "127.0.0.1/32", "Internal.Corp."]
            follow_redirects = 3
            max_response_bytes = 1024
            connect_timeout = "2s"
            "#,
        )
        .unwrap();
        let p = cfg.build(&mut Problems::default()).unwrap();
        assert_eq!(p.redirect_limit(), 3);
        assert_eq!(p.response_limit(), 1024);
        assert_eq!(p.connect_limit(), Duration::from_secs(2));
        assert_eq!(p.permits(None, ip("10.1.2.3")), Ok(()));
        assert_eq!(p.permits(None, ip("127.0.0.1")), Ok(()));
        assert_eq!(p.permits(None, ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(
            p.permits(None, ip("127.0.0.2")),
            Err(AddressClass::Loopback)
        );
        assert_eq!(p.permits(Some("internal.corp"), ip("192.168.1.1")), Ok(()));
        assert_eq!(p.permits(Some("INTERNAL.corp."), ip("192.168.1.1")), Ok(()));
        assert_eq!(
            p.permits(Some("other.corp"), ip("192.168.1.1")),
            Err(AddressClass::Private)
        );
    }

    #[test]
    fn defaults_are_strict() {
        let cfg: OutboundConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, OutboundConfig::default());
        assert_eq!(
            cfg.build(&mut Problems::default()).unwrap(),
            Policy::strict()
        );
        let p = Policy::strict();
        assert_eq!(p.redirect_limit(), 0);
        assert_eq!(p.response_limit(), 10 * 1024 * 1024);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<OutboundConfig>("allow_all = true").unwrap_err();
        assert!(err.to_string().contains("allow_all"), "{err}");
    }

    #[test]
    fn every_bad_entry_is_reported_with_its_key() {
        let cfg = OutboundConfig {
            allow: vec![
                "ok.example".into(),
                "https://hooks.slack.com".into(),
                "*.corp".into(),
                "10.0.0.1/8".into(),
                "10.0.0.0/33".into(),
                "host:8080".into(),
                "".into(),
            ],
            follow_redirects: 50,
            max_response_bytes: 0,
            connect_timeout: ConfigDuration::from_secs(600),
            pool_idle_timeout: ConfigDuration::from_secs(3600),
            pool_max_idle_per_host: 1000,
            proxy: Some("https://ops:hunter2@proxy.corp:3128".into()),
        };
        let mut problems = Problems::default();
        assert!(cfg.build(&mut problems).is_none());
        let err = problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        for want in [
            "outbound.allow[1]: `https://hooks.slack.com` is a URL",
            "outbound.allow[2]: `*.corp` wildcards",
            "outbound.allow[3]: `10.0.0.1/8` has bits set past the prefix; did you mean \"10.0.0.0/8\"?",
            "outbound.allow[4]: `10.0.0.0/33` is not an address block",
            "outbound.allow[5]: `host:8080` has a port",
            "outbound.allow[6]: `` is empty",
            "outbound.follow_redirects: 50",
            "outbound.max_response_bytes: 0",
            "outbound.connect_timeout: 10m is not between",
            "outbound.pool_idle_timeout: 1h is not between",
            "outbound.pool_max_idle_per_host: 1000 is more than the 256 allowed",
            "outbound.proxy: scheme `https` is not supported",
        ] {
            assert!(err.contains(want), "missing {want:?} in {err}");
        }
        assert!(!err.contains("allow[0]"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn allow_entries_take_the_url_host_form() {
        let p = Policy::strict()
            .allow("0x7f.1")
            .unwrap()
            .allow("[::1]")
            .unwrap()
            .allow("BÜCHER.example")
            .unwrap();
        assert_eq!(p.permits(None, ip("127.0.0.1")), Ok(()));
        assert_eq!(p.permits(None, ip("::1")), Ok(()));
        assert_eq!(
            p.permits(Some("xn--bcher-kva.example"), ip("10.0.0.1")),
            Ok(())
        );
    }

    #[test]
    fn a_block_matches_the_ipv4_behind_a_transition_address() {
        let p = Policy::strict().allow_cidr("10.0.0.0/8".parse().unwrap());
        assert_eq!(p.permits(None, ip("64:ff9b::a00:1")), Ok(()));
        assert_eq!(p.permits(None, ip("2002:a00:1::")), Ok(()));
        assert_eq!(
            p.permits(None, ip("64:ff9b::7f00:1")),
            Err(AddressClass::Loopback)
        );
    }

    #[test]
    fn public_addresses_need_no_entry() {
        let p = Policy::strict();
        assert_eq!(p.permits(Some("example.com"), ip("93.184.215.14")), Ok(()));
        assert_eq!(p.permits(None, ip("2606:4700:4700::1111")), Ok(()));
    }
}
