//! The address classifier: which IP addresses an outbound request may not reach unless
//! the policy allows them. Pure functions over `IpAddr`, called once per resolved address
//! by [`Policy::permits`](super::Policy::permits) before any connection is made.
//!
//! IPv6 forms that carry an IPv4 address (mapped, compatible, SIIT-translated, NAT64,
//! 6to4, Teredo) are judged by the IPv4 address they lead to: `::ffff:127.0.0.1`,
//! `64:ff9b::7f00:1` and `2002:7f00:1::` are all loopback. IPv6 outside global unicast
//! (`2000::/3`) is refused as reserved, so an unlisted range fails closed.
//!
//! Documentation ranges (192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32,
//! 3fff::/20) are refused too: nothing legitimate lives there, and lab networks do route
//! them internally.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused. Shown in errors as a short lowercase word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// 127/8, ::1.
    Loopback,
    /// 0/8 ("this network"), ::.
    Unspecified,
    /// 10/8, 172.16/12, 192.168/16, fc00::/7, fec0::/10, 64:ff9b:1::/48.
    Private,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// Cloud instance-metadata endpoints (169.254.169.254 and friends): the classic SSRF
    /// prize, named apart so that a refusal in the log is recognisable as an attack.
    Metadata,
    /// Carrier-grade NAT, 100.64/10.
    SharedAddressSpace,
    /// 224/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 198.18/15, 2001:2::/48.
    Benchmarking,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20.
    Documentation,
    /// 240/4, 192.0.0/24, 192.88.99/24, 100::/64 and IPv6 outside 2000::/3.
    Reserved,
}

impl AddressClass {
    /// The word used in errors and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::Loopback => "loopback",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Metadata => "metadata",
            AddressClass::SharedAddressSpace => "shared (CGNAT)",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Benchmarking => "benchmarking",
            AddressClass::Documentation => "documentation",
            AddressClass::Reserved => "reserved",
        }
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Instance-metadata endpoints of the big clouds. All but the Alibaba and Oracle ones lie
/// in ranges refused anyway; listing them gives the refusal its telling name.
const METADATA_V4: [Ipv4Addr; 5] = [
    Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure, OpenStack, DigitalOcean
    Ipv4Addr::new(169, 254, 170, 2),   // AWS ECS task credentials
    Ipv4Addr::new(169, 254, 170, 23),  // AWS EKS pod identity
    Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud
    Ipv4Addr::new(192, 0, 0, 192),     // Oracle Cloud
];
const METADATA_V6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254), // AWS IMDS over IPv6
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x23),  // AWS EKS pod identity
];

/// The class that makes `ip` off limits, or `None` for an ordinary public address.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// The address a packet to `ip` ends up at, as far as we can tell: the embedded IPv4
/// address of the IPv6 transition forms, else `ip` itself. Allowlisted blocks are
/// matched against this as well as the literal address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    let [a, b, c, _] = ip.octets();
    let class = if METADATA_V4.contains(&ip) {
        AddressClass::Metadata
    } else if a == 0 {
        AddressClass::Unspecified
    } else if a == 127 {
        AddressClass::Loopback
    } else if a == 10 || (a == 172 && b & 0xf0 == 16) || (a == 192 && b == 168) {
        AddressClass::Private
    } else if a == 169 && b == 254 {
        AddressClass::LinkLocal
    } else if a == 100 && b & 0xc0 == 64 {
        AddressClass::SharedAddressSpace
    } else if a == 198 && b & 0xfe == 18 {
        AddressClass::Benchmarking
    } else if (a, b, c) == (192, 0, 2) || (a, b, c) == (198, 51, 100) || (a, b, c) == (203, 0, 113)
    {
        AddressClass::Documentation
    } else if ip == Ipv4Addr::BROADCAST {
        AddressClass::Broadcast
    } else if a & 0xf0 == 224 {
        AddressClass::Multicast
    } else if a & 0xf0 == 240 || (a, b, c) == (192, 0, 0) || (a, b, c) == (192, 88, 99) {
        AddressClass::Reserved
    } else {
        return None;
    };
    Some(class)
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    // `::` and `::1` are also "IPv4-compatible" 0.0.0.0 and 0.0.0.1; name them properly.
    if ip.is_unspecified() {
        return Some(AddressClass::Unspecified);
    }
    if ip.is_loopback() {
        return Some(AddressClass::Loopback);
    }
    if METADATA_V6.contains(&ip) {
        return Some(AddressClass::Metadata);
    }
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let s = ip.segments();
    let class = if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 || s[..3] == [0x64, 0xff9b, 1]
    {
        // Unique local, the deprecated site-local, and the local-use NAT64 prefix (whose
        // embedded address cannot be located: its prefix length is a local choice).
        AddressClass::Private
    } else if s[0] & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if s[0] & 0xff00 == 0xff00 {
        AddressClass::Multicast
    } else if s[..3] == [0x2001, 0x2, 0] {
        AddressClass::Benchmarking
    } else if s[..2] == [0x2001, 0xdb8] || s[0] & 0xfff0 == 0x3ff0 {
        AddressClass::Documentation
    } else if s[0] & 0xe000 != 0x2000 || s[..4] == [0x100, 0, 0, 0] {
        // Outside global unicast nothing is assigned for the public Internet.
        AddressClass::Reserved
    } else {
        return None;
    };
    Some(class)
}

/// The IPv4 address an IPv6 transition form leads to.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if ip.is_unspecified() || ip.is_loopback() {
        return None;
    }
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible, deprecated; `::` and `::1` are
        // themselves, not 0.0.0.0 and 0.0.0.1), ::ffff:0:a.b.c.d (SIIT translated).
        [0, 0, 0, 0, 0, 0xffff, _, _]
        | [0, 0, 0, 0, 0, 0, _, _]
        | [0, 0, 0, 0, 0xffff, 0, _, _] => Some(low),
        // 64:ff9b::/96, the well-known NAT64 prefix.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        // 2002:aabb:ccdd::/48, 6to4.
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        // 2001:0::/32, Teredo: the client's address is the last 32 bits inverted.
        [0x2001, 0, ..] => Some(Ipv4Addr::from(!u32::from(low))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> Option<AddressClass> {
        classify(s.parse().unwrap())
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.1.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(class(ip), None, "{ip}");
        }
    }

    #[test]
    fn every_refused_range_is_named() {
        use AddressClass::*;
        for (ip, want) in [
            ("0.0.0.0", Unspecified),
            ("0.255.255.255", Unspecified),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("10.0.0.1", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.0.1", Private),
            ("169.254.0.1", LinkLocal),
            ("169.254.169.254", Metadata),
            ("169.254.170.2", Metadata),
            ("100.100.100.200", Metadata),
            ("192.0.0.192", Metadata),
            ("100.64.0.1", SharedAddressSpace),
            ("100.127.255.255", SharedAddressSpace),
            ("198.18.0.1", Benchmarking),
            ("198.19.255.255", Benchmarking),
            ("192.0.2.1", Documentation),
            ("198.51.100.1", Documentation),
            ("203.0.113.1", Documentation),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("240.0.0.1", Reserved),
            ("255.255.255.255", Broadcast),
            ("192.0.0.8", Reserved),
            ("192.88.99.1", Reserved),
            ("::", Unspecified),
            ("::1", Loopback),
            ("fc00::1", Private),
            ("fd12:3456::1", Private),
            ("fec0::1", Private),
            ("64:ff9b:1::a00:1", Private),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fd00:ec2::254", Metadata),
            ("ff02::1", Multicast),
            ("2001:2::1", Benchmarking),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("100::1", Reserved),
            ("4000::1", Reserved),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:169.254.169.254", Metadata),
            ("::127.0.0.1", Loopback),
            ("::ffff:0:10.0.0.1", Private),
            ("64:ff9b::7f00:1", Loopback),
            ("64:ff9b::a9fe:a9fe", Metadata),
            ("2002:7f00:1::", Loopback),
            ("2002:a9fe:a9fe::1", Metadata),
            ("2002:c0a8:1::", Private),
            // Teredo with client 127.0.0.1: 0x7f000001 inverted is 0x80fffffe.
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", Loopback),
        ] {
            assert_eq!(class(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn canonical_unwraps_transition_forms_only() {
        let c = |s: &str| canonical(s.parse().unwrap()).to_string();
        assert_eq!(c("::ffff:7f00:1"), "127.0.0.1");
        assert_eq!(c("64:ff9b::a00:1"), "10.0.0.1");
        assert_eq!(c("2002:a00:1::"), "10.0.0.1");
        assert_eq!(c("2606:4700::1"), "2606:4700::1");
        assert_eq!(c("10.0.0.1"), "10.0.0.1");
        assert_eq!(c("::1"), "::1");
    }
}
