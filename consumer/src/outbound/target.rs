//! Where one hop goes: the URL checked for scheme and credentials, its host resolved by
//! us, and every resolved address checked against the policy. The addresses returned
//! are the only ones the client connects to, so a DNS answer that changes between check
//! and connect (rebinding) cannot slip through.

use std::net::{IpAddr, SocketAddr};

use url::Url;

use super::{OutboundError, Policy};

/// At most this many resolved addresses are kept (all are checked); more only add
/// connect attempts.
const MAX_ADDRESSES: usize = 16;

/// A parsed, syntactically acceptable destination.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub url: Url,
    /// The host as written in the Host header and errors: a name, `1.2.3.4` or `[::1]`.
    pub host: String,
    /// The host name, for the allowlist and TLS; `None` for an address literal.
    pub name: Option<String>,
    pub literal: Option<IpAddr>,
    pub port: u16,
    pub tls: bool,
}

impl Target {
    /// Parses with the WHATWG parser, which also canonicalizes numeric IPv4 forms
    /// (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1` are all `127.0.0.1`).
    pub fn parse(url: &str) -> Result<Target, OutboundError> {
        // The parse error never echoes the input, which may hold a token in its query.
        let url = Url::parse(url).map_err(|e| OutboundError::InvalidUrl(e.to_string()))?;
        Target::from_url(url)
    }

    pub fn from_url(url: Url) -> Result<Target, OutboundError> {
        let tls = match url.scheme() {
            "https" => true,
            "http" => false,
            other => {
                return Err(OutboundError::InvalidUrl(format!(
                    "scheme `{}` is not allowed; only http and https are",
                    truncate(other, 16)
                )))
            }
        };
        // Refused rather than stripped: `http://allowed.com@127.0.0.1/` reads as a
        // request to allowed.com, and credentials belong in a header, not a URL that ends
        // up in logs.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(OutboundError::InvalidUrl(
                "URL carries credentials (user:password@); send them in a header instead"
                    .to_owned(),
            ));
        }
        let (name, literal) = match url.host() {
            Some(url::Host::Domain(d)) => (Some(d.to_owned()), None),
            Some(url::Host::Ipv4(ip)) => (None, Some(IpAddr::V4(ip))),
            Some(url::Host::Ipv6(ip)) => (None, Some(IpAddr::V6(ip))),
            None => return Err(OutboundError::InvalidUrl("URL has no host".to_owned())),
        };
        let host = url.host_str().unwrap_or_default().to_owned();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| OutboundError::InvalidUrl("URL has no port".to_owned()))?;
        Ok(Target {
            url,
            host,
            name,
            literal,
            port,
            tls,
        })
    }

    /// Resolves the host and checks every address; all must pass or the hop is refused.
    pub async fn resolve(&self, policy: &Policy) -> Result<Vec<SocketAddr>, OutboundError> {
        let ips: Vec<IpAddr> = match (&self.literal, &self.name) {
            (Some(ip), _) => vec![*ip],
            (None, Some(name)) => tokio::net::lookup_host((name.as_str(), self.port))
                .await
                .map_err(|e| OutboundError::Resolve {
                    host: self.host.clone(),
                    reason: e.to_string(),
                })?
                .map(|sa| sa.ip())
                .collect(),
            (None, None) => Vec::new(),
        };
        self.check(policy, &ips)?;
        let mut addrs: Vec<SocketAddr> = Vec::with_capacity(ips.len().min(MAX_ADDRESSES));
        for ip in ips {
            let sa = SocketAddr::new(ip, self.port);
            if !addrs.contains(&sa) && addrs.len() < MAX_ADDRESSES {
                addrs.push(sa);
            }
        }
        Ok(addrs)
    }

    /// The policy verdict over the addresses the host resolved to.
    pub fn check(&self, policy: &Policy, ips: &[IpAddr]) -> Result<(), OutboundError> {
        if ips.is_empty() {
            return Err(OutboundError::Resolve {
                host: self.host.clone(),
                reason: "no addresses".to_owned(),
            });
        }
        for &ip in ips {
            policy
                .permits(self.name.as_deref(), ip)
                .map_err(|class| OutboundError::Refused {
                    host: self.host.clone(),
                    addr: ip,
                    class,
                })?;
        }
        Ok(())
    }

    /// The Host header: the host, and the port when it is not the scheme's default.
    pub fn authority(&self) -> String {
        match self.url.port() {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }

    /// The request target of an HTTP/1.1 request line: path and query, no fragment.
    pub fn path_and_query(&self) -> String {
        match self.url.query() {
            Some(q) => format!("{}?{q}", self.url.path()),
            None => self.url.path().to_owned(),
        }
    }

    /// Scheme, host and port: a redirect that changes it drops credentials.
    pub fn origin(&self) -> (bool, &str, u16) {
        (self.tls, &self.host, self.port)
    }
}

/// Cuts caller-supplied text that goes into an error message, escaping control
/// characters so that it cannot forge log lines.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).flat_map(char::escape_debug).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::AddressClass::{self, *};
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Verdict {
        /// Passes the syntax checks and, for an address literal, the policy; a name is
        /// judged after resolution.
        Pass,
        Refused(AddressClass),
        Invalid,
    }

    /// The verdict on a URL before any DNS lookup.
    fn verdict(policy: &Policy, url: &str) -> Verdict {
        let target = match Target::parse(url) {
            Ok(t) => t,
            Err(OutboundError::InvalidUrl(_)) => return Verdict::Invalid,
            Err(e) => panic!("{url}: {e}"),
        };
        let Some(ip) = target.literal else {
            return Verdict::Pass;
        };
        match target.check(policy, &[ip]) {
            Ok(()) => Verdict::Pass,
            Err(OutboundError::Refused { class, .. }) => Verdict::Refused(class),
            Err(e) => panic!("{url}: {e}"),
        }
    }

    #[test]
    fn url_table_under_the_strict_policy() {
        use Verdict::*;
        let table: &[(&str, Verdict)] = &[
            // Ordinary destinations.
            ("https://hooks.slack.com/services/T0/B0/x", Pass),
            ("http://example.com/", Pass),
            ("http://93.184.215.14/", Pass),
            ("https://[2606:4700:4700::1111]/dns-query", Pass),
            ("http://8.8.8.8:8080/x?y=z", Pass),
            // Loopback, in every spelling the WHATWG parser folds to 127.0.0.1.
            ("http://127.0.0.1/", Refused(Loopback)),
            ("http://127.0.0.1:8080/admin", Refused(Loopback)),
            ("http://127.1/", Refused(Loopback)),
            ("http://2130706433/", Refused(Loopback)),
            ("http://0x7f.1/", Refused(Loopback)),
            ("http://0x7f000001/", Refused(Loopback)),
            ("http://0177.0.0.1/", Refused(Loopback)),
            ("http://017700000001/", Refused(Loopback)),
            ("http://127.0.0.1./", Refused(Loopback)),
            ("http://１２７.０.０.１/", Refused(Loopback)),
            ("http://127.0.0.1:80\\@example.com/", Refused(Loopback)),
            ("http://127.255.255.254/", Refused(Loopback)),
            ("http://[::1]/", Refused(Loopback)),
            ("http://[0:0:0:0:0:0:0:1]/", Refused(Loopback)),
            // IPv6 forms of an IPv4 address.
            ("http://[::ffff:127.0.0.1]/", Refused(Loopback)),
            ("http://[::ffff:7f00:1]/", Refused(Loopback)),
            ("http://[::127.0.0.1]/", Refused(Loopback)),
            ("http://[64:ff9b::7f00:1]/", Refused(Loopback)),
            ("http://[2002:7f00:1::]/", Refused(Loopback)),
            ("http://[::ffff:10.0.0.1]/", Refused(Private)),
            ("http://[::ffff:169.254.169.254]/", Refused(Metadata)),
            ("http://[64:ff9b::a9fe:a9fe]/", Refused(Metadata)),
            // Unspecified.
            ("http://0/", Refused(Unspecified)),
            ("http://0.0.0.0:9092/", Refused(Unspecified)),
            ("http://[::]/", Refused(Unspecified)),
            // Private, link-local, metadata, CGNAT.
            ("http://10.0.0.1/", Refused(Private)),
            ("http://172.16.0.1/", Refused(Private)),
            ("http://172.31.255.255/", Refused(Private)),
            ("http://192.168.1.1/", Refused(Private)),
            ("http://[fd12:3456::1]/", Refused(Private)),
            ("http://[fc00::1]/", Refused(Private)),
            (
                "http://169.254.169.254/latest/meta-data/",
                Refused(Metadata),
            ),
            (
                "http://[fd00:ec2::254]/latest/meta-data/",
                Refused(Metadata),
            ),
            ("http://169.254.1.1/", Refused(LinkLocal)),
            ("http://[fe80::1]/", Refused(LinkLocal)),
            ("http://100.64.0.1/", Refused(SharedAddressSpace)),
            // Multicast, broadcast, reserved, benchmarking, documentation.
            ("http://224.0.0.1/", Refused(Multicast)),
            ("http://[ff02::1]/", Refused(Multicast)),
            ("http://255.255.255.255/", Refused(Broadcast)),
            ("http://240.0.0.1/", Refused(Reserved)),
            ("http://198.18.0.1/", Refused(Benchmarking)),
            ("http://192.0.2.1/", Refused(Documentation)),
            ("http://[2001:db8::1]/", Refused(Documentation)),
            // Credentials in the URL, however disguised.
            ("http://user@example.com/", Invalid),
            ("http://user:pass@example.com/", Invalid),
            ("http://:pass@example.com/", Invalid),
            ("http://example.com@127.0.0.1/", Invalid),
            ("http://example.com:80@127.0.0.1/", Invalid),
            ("https://hooks.slack.com%40127.0.0.1/", Invalid),
            // Schemes and shapes other than http(s) with a host.
            ("ftp://x/", Invalid),
            ("file:///etc/passwd", Invalid),
            ("gopher://127.0.0.1:6379/_INFO", Invalid),
            ("dict://127.0.0.1:11211/stat", Invalid),
            ("javascript:alert(1)", Invalid),
            ("data:text/plain,hi", Invalid),
            ("/relative/path", Invalid),
            ("http://", Invalid),
            ("http://[::1/", Invalid),
            ("http://256.0.0.1/", Invalid),
            ("http://[fe80::1%25eth0]/", Invalid),
        ];
        assert!(table.len() >= 40);
        let policy = Policy::strict();
        let failures: Vec<String> = table
            .iter()
            .filter_map(|(url, want)| {
                let got = verdict(&policy, url);
                (got != *want).then(|| format!("{url}: want {want:?}, got {got:?}"))
            })
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn allowlisted_literals_pass_and_only_they() {
        let policy = Policy::strict()
            .allow("127.0.0.1/32")
            .unwrap()
            .allow("10.0.0.0/8")
            .unwrap();
        assert_eq!(verdict(&policy, "http://127.0.0.1:8080/"), Verdict::Pass);
        assert_eq!(verdict(&policy, "http://2130706433/"), Verdict::Pass);
        assert_eq!(
            verdict(&policy, "http://[::ffff:127.0.0.1]/"),
            Verdict::Pass
        );
        assert_eq!(verdict(&policy, "http://10.9.8.7/"), Verdict::Pass);
        assert_eq!(
            verdict(&policy, "http://127.0.0.2/"),
            Verdict::Refused(Loopback)
        );
        assert_eq!(
            verdict(&policy, "http://[::1]/"),
            Verdict::Refused(Loopback)
        );
        assert_eq!(
            verdict(&policy, "http://169.254.169.254/"),
            Verdict::Refused(Metadata)
        );
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn names_are_judged_by_every_address_they_resolve_to() {
        let strict = Policy::strict();
        let localhost = Target::parse("http://localhost:8080/").unwrap();
        let err = localhost
            .check(&strict, &ips(&["127.0.0.1"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`localhost`") && err.contains("loopback"),
            "{err}"
        );

        // One bad address among good ones refuses the lot.
        let mixed = Target::parse("https://rebind.example/").unwrap();
        assert!(matches!(
            mixed.check(&strict, &ips(&["93.184.215.14", "10.0.0.1"])),
            Err(OutboundError::Refused { class: Private, .. })
        ));
        let meta = Target::parse("http://metadata.google.internal/").unwrap();
        assert!(matches!(
            meta.check(&strict, &ips(&["169.254.169.254"])),
            Err(OutboundError::Refused {
                class: Metadata,
                ..
            })
        ));
        assert!(matches!(
            mixed.check(&strict, &[]),
            Err(OutboundError::Resolve { .. })
        ));

        // Allowed by name: whatever the name resolves to; by block: only inside it.
        let by_name = Policy::strict().allow_host("LocalHost");
        assert!(localhost
            .check(&by_name, &ips(&["127.0.0.1", "::1"]))
            .is_ok());
        let by_block = Policy::strict().allow("127.0.0.1/32").unwrap();
        assert!(localhost.check(&by_block, &ips(&["127.0.0.1"])).is_ok());
        assert!(matches!(
            localhost.check(&by_block, &ips(&["127.0.0.1", "::1"])),
            Err(OutboundError::Refused {
                class: Loopback,
                ..
            })
        ));
    }

    #[test]
    fn host_header_and_request_target() {
        let t = Target::parse("https://Example.COM:443/a%20b/c?q=1&r=2#frag").unwrap();
        assert_eq!(t.authority(), "example.com");
        assert_eq!(t.path_and_query(), "/a%20b/c?q=1&r=2");
        assert!(t.tls);
        let t = Target::parse("http://[::1]:8080").unwrap();
        assert_eq!(t.authority(), "[::1]:8080");
        assert_eq!(t.path_and_query(), "/");
        assert_eq!(t.port, 8080);
    }

    #[test]
    fn errors_never_echo_credentials_or_queries() {
        for url in [
            "http://admin:hunter2@10.0.0.1/",
            "ftp://admin:hunter2@x/",
            "http://[::1/?token=hunter2",
        ] {
            let err = Target::parse(url).unwrap_err().to_string();
            assert!(!err.contains("hunter2") && !err.contains("admin"), "{err}");
        }
        let t = Target::parse("http://127.0.0.1/?token=hunter2").unwrap();
        let err = t
            .check(&Policy::strict(), &ips(&["127.0.0.1"]))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
