//! Address blocks (`10.0.0.0/8`, `2001:db8::/32`), as the gateway's source allowlists and
//! trusted proxies and the consumer's outbound policy write them.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address block; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The block holding exactly `ip`.
    pub fn single(ip: IpAddr) -> Cidr {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        Cidr {
            network: ip,
            prefix,
        }
    }

    /// Whether `ip` lies in the block. An IPv4 block never contains an IPv6 address:
    /// callers that treat IPv4-mapped addresses as IPv4 unwrap them first.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = mask32(self.prefix);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = mask128(self.prefix);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = String;

    /// Refuses a block with bits set past its prefix (`10.0.0.1/8`): that is usually a
    /// typo for something narrower or wider, and the message says which block it names.
    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let bad = || format!("`{s}` is not an address block; write e.g. \"192.30.252.0/22\"");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        let masked = match network {
            IpAddr::V4(n) => IpAddr::V4((u32::from(n) & mask32(prefix)).into()),
            IpAddr::V6(n) => IpAddr::V6((u128::from(n) & mask128(prefix)).into()),
        };
        if masked != network {
            return Err(format!(
                "`{s}` has bits set past the prefix; did you mean \"{masked}/{prefix}\"?"
            ));
        }
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_contain_their_addresses() {
        let c: Cidr = "192.30.252.0/22".parse().unwrap();
        assert!(c.contains(ip("192.30.255.255")));
        assert!(!c.contains(ip("192.30.251.255")));
        assert!(!c.contains(ip("::ffff:192.30.253.1")), "families never mix");
        let v6: Cidr = "2a0a:a440::/29".parse().unwrap();
        assert!(v6.contains(ip("2a0a:a447:ffff::1")));
        assert!(!v6.contains(ip("2a0a:a448::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        let one: Cidr = "10.1.2.3".parse().unwrap();
        assert!(one.contains(ip("10.1.2.3")) && !one.contains(ip("10.1.2.4")));
        assert_eq!(Cidr::single(ip("fd00::1")).to_string(), "fd00::1/128");
    }

    #[test]
    fn bad_blocks_are_refused_with_the_reason() {
        for bad in ["10.0.0.0/33", "nope", "::/129", "1.2.3/8", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert_eq!(
            "10.0.0.1/8".parse::<Cidr>().unwrap_err(),
            "`10.0.0.1/8` has bits set past the prefix; did you mean \"10.0.0.0/8\"?"
        );
    }
}
