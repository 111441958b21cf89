//! Who the client is: the peer address, or the address a trusted proxy reports in
//! `X-Forwarded-For`; and CIDR lists for source allowlists and trusted proxies.

use std::net::IpAddr;

use hookgate_common::net::Cidr;
use http::HeaderMap;

/// `::ffff:a.b.c.d` → `a.b.c.d`.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A list of blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrList(Vec<Cidr>);

impl CidrList {
    /// Parses each entry; problems are reported with their index.
    pub fn parse(entries: &[String]) -> Result<CidrList, Vec<(usize, String)>> {
        let mut list = Vec::new();
        let mut errors = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            match e.parse() {
                Ok(c) => list.push(c),
                Err(msg) => errors.push((i, msg)),
            }
        }
        if errors.is_empty() {
            Ok(CidrList(list))
        } else {
            Err(errors)
        }
    }

    /// Whether a block holds `ip`; IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|c| c.contains(ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the rightmost
/// address in `X-Forwarded-For` that is not itself a trusted proxy. Entries a client
/// wrote itself sit further left and are never believed.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &CidrList) -> IpAddr {
    let peer = canonical(peer);
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = canonical(ip);
        if !trusted.contains(client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn mapped_addresses_count_as_ipv4() {
        let list = CidrList::parse(&["192.30.252.0/22".to_string()]).unwrap();
        assert!(list.contains(ip("192.30.253.1")));
        assert!(list.contains(ip("::ffff:192.30.253.1")));
        assert!(!list.contains(ip("192.30.251.255")));
        let errors = CidrList::parse(&["10.0.0.0/8".into(), "nope".into()]).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, 1);
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = CidrList::parse(&["10.0.0.0/8".to_string()]).unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.9, 10.0.0.2".parse().unwrap(),
        );
        // From the proxy: the rightmost untrusted hop.
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("203.0.113.9"));
        // From anyone else: the header is ignored.
        assert_eq!(
            client_ip(ip("198.51.100.7"), &h, &trusted),
            ip("198.51.100.7")
        );
        // No trusted proxies: always the peer.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &CidrList::default()),
            ip("10.0.0.1")
        );
    }
}
