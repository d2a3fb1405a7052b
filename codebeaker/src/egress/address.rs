//! Which IP addresses are public, and the operator's exceptions ([`Cidr`]).
//!
//! Anything that is not plainly a public unicast address is refused unless the operator
//! lists it in `net.allowed-private`: loopback, private, link-local, cloud metadata,
//! carrier-grade NAT, unspecified, multicast, broadcast, documentation and
//! reserved ranges, and IPv6 forms that embed such an IPv4 address (IPv4-mapped, NAT64, 6to4).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AddressClass {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16, fc00::/7 (and the deprecated fec0::/10).
    Private,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// A cloud provider's instance metadata service (169.254.169.254, fd00:ec2::254,
    /// 100.100.100.200).
    Metadata,
    /// Carrier-grade NAT, 100.64/10.
    SharedCgnat,
    /// 0.0.0.0/8, ::.
    Unspecified,
    /// 224/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// Documentation ranges: 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32.
    /// Nothing public lives there, so a network that routes them routes something of its
    /// own (this project's build machines reach the package registries through them).
    Documentation,
    /// Every other range that is not public unicast (240/4, benchmarking 198.18/15, IETF
    /// assignments, Teredo, anything outside 2000::/3…).
    Reserved,
    /// One of the host's own interface addresses.
    HostAddress,
    /// An address on a network directly attached to the host (interface address and
    /// netmask).
    HostNetwork,
}

impl AddressClass {
    /// The class in words (`loopback address`, `cloud metadata address`…).
    pub fn label(self) -> &'static str {
        match self {
            AddressClass::Loopback => "loopback address",
            AddressClass::Private => "private address",
            AddressClass::LinkLocal => "link-local address",
            AddressClass::Metadata => "cloud metadata address",
            AddressClass::SharedCgnat => "carrier-grade NAT address",
            AddressClass::Unspecified => "unspecified address",
            AddressClass::Multicast => "multicast address",
            AddressClass::Broadcast => "broadcast address",
            AddressClass::Documentation => "documentation address",
            AddressClass::Reserved => "reserved address",
            AddressClass::HostAddress => "address of this host",
            AddressClass::HostNetwork => "address on a network attached to this host",
        }
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// `None` for a public unicast address, else why it is not public.
///
/// Judged by the address alone: the host's own addresses and attached networks
/// ([`AddressClass::HostAddress`], [`AddressClass::HostNetwork`]) are found by
/// [`EgressRules`](super::EgressRules) from the host's interfaces. Documentation ranges
/// are not public: where a network routes them (this project's own build machines reach
/// the package registries through 203.0.113/24), the operator lists them in
/// `net.allowed-private`.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, network: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(network)) & mask
}

fn in_v6(ip: Ipv6Addr, network: [u16; 8], prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(network)) & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    use AddressClass::*;
    const RANGES: &[([u8; 4], u32, AddressClass)] = &[
        // Metadata first: these also lie in link-local or CGNAT space.
        ([169, 254, 169, 254], 32, Metadata),
        ([100, 100, 100, 200], 32, Metadata),
        ([0, 0, 0, 0], 8, Unspecified),
        ([127, 0, 0, 0], 8, Loopback),
        ([10, 0, 0, 0], 8, Private),
        ([172, 16, 0, 0], 12, Private),
        ([192, 168, 0, 0], 16, Private),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([100, 64, 0, 0], 10, SharedCgnat),
        ([255, 255, 255, 255], 32, Broadcast),
        ([224, 0, 0, 0], 4, Multicast),
        ([240, 0, 0, 0], 4, Reserved),
        ([192, 0, 0, 0], 24, Reserved),
        ([192, 88, 99, 0], 24, Reserved),
        ([198, 18, 0, 0], 15, Reserved),
        ([192, 0, 2, 0], 24, Documentation),
        ([198, 51, 100, 0], 24, Documentation),
        ([203, 0, 113, 0], 24, Documentation),
    ];
    RANGES.iter().find(|(network, prefix, _)| in_v4(ip, *network, *prefix)).map(|(_, _, class)| *class)
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    use AddressClass::*;
    let bits = u128::from(ip);
    // Forms that carry an IPv4 address are judged by that address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return classify_v4(Ipv4Addr::from(bits as u32));
    }
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        return classify_v4(Ipv4Addr::from((bits >> 80) as u32));
    }
    const RANGES: &[([u16; 8], u32, AddressClass)] = &[
        ([0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254], 128, Metadata),
        ([0, 0, 0, 0, 0, 0, 0, 0], 128, Unspecified),
        ([0, 0, 0, 0, 0, 0, 0, 1], 128, Loopback),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, Private),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, Private),
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, Private),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, LinkLocal),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, Multicast),
        ([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32, Documentation),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, Reserved),
        ([0x2001, 0x0010, 0, 0, 0, 0, 0, 0], 28, Reserved),
        ([0x2001, 0x0020, 0, 0, 0, 0, 0, 0], 28, Reserved),
    ];
    if let Some((_, _, class)) = RANGES.iter().find(|(network, prefix, _)| in_v6(ip, *network, *prefix)) {
        return Some(*class);
    }
    // Only 2000::/3 is global unicast; everything else is unassigned or special.
    (!in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3)).then_some(Reserved)
}

/// A network the operator allows although it is not public (`127.0.0.1/32`,
/// `10.0.0.0/8`, `fd00::/8`; a bare address means just that address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The network of `prefix` bits around `address` (a prefix longer than the address
    /// is cut to its length).
    pub(crate) fn new(address: IpAddr, prefix: u8) -> Cidr {
        let address = address.to_canonical();
        let max = if address.is_ipv4() { 32 } else { 128 };
        Cidr { network: address, prefix: prefix.min(max) }
    }

    /// Parses `ADDRESS[/PREFIX]`, naming what is wrong.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let network: IpAddr =
            address.parse().map_err(|_| format!("{text:?} is not an IP network (expected e.g. 10.0.0.0/8)"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?} has an invalid prefix length (0 to {max})"))?,
        };
        match (network, network.to_canonical()) {
            // `::ffff:10.0.0.0/104` is the IPv4 network 10.0.0.0/8.
            (IpAddr::V6(_), canonical @ IpAddr::V4(_)) => prefix
                .checked_sub(96)
                .map(|prefix| Cidr { network: canonical, prefix })
                .ok_or_else(|| format!("{text:?} is an IPv4-mapped network with a prefix below 96")),
            _ => Ok(Cidr { network, prefix }),
        }
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as its IPv4
    /// address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => in_v4(ip, network.octets(), u32::from(self.prefix)),
            (IpAddr::V6(network), IpAddr::V6(ip)) => in_v6(ip, network.segments(), u32::from(self.prefix)),
            _ => false,
        }
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

    fn class(text: &str) -> Option<AddressClass> {
        classify(text.parse().unwrap())
    }

    #[test]
    fn non_public_addresses_are_classified() {
        use AddressClass::*;
        for (address, expected) in [
            ("127.0.0.1", Loopback),
            ("127.255.0.9", Loopback),
            ("::1", Loopback),
            ("10.1.2.3", Private),
            ("172.31.255.255", Private),
            ("192.168.0.1", Private),
            ("fd12::1", Private),
            ("169.254.1.1", LinkLocal),
            ("fe80::1", LinkLocal),
            ("169.254.169.254", Metadata),
            ("fd00:ec2::254", Metadata),
            ("100.100.100.200", Metadata),
            ("100.64.0.1", SharedCgnat),
            ("0.0.0.0", Unspecified),
            ("::", Unspecified),
            ("224.0.0.1", Multicast),
            ("ff02::1", Multicast),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("2001::1", Reserved),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:169.254.169.254", Metadata),
            ("64:ff9b::10.0.0.1", Private),
            ("2002:7f00:1::", Loopback),
            ("4000::1", Reserved),
            ("198.18.0.1", Reserved),
            ("198.19.255.255", Reserved),
            ("192.0.2.2", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.80", Documentation),
            ("2001:db8::1", Documentation),
            ("::ffff:203.0.113.80", Documentation),
        ] {
            assert_eq!(class(address), Some(expected), "{address}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for address in [
            "1.1.1.1",
            "151.101.0.223",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "198.51.99.1",
            "203.0.114.1",
            "2001:db9::1",
        ] {
            assert_eq!(class(address), None, "{address}");
        }
    }

    #[test]
    fn cidrs_parse_and_contain() {
        let loopback = Cidr::parse("127.0.0.0/8").unwrap();
        assert!(loopback.contains("127.0.0.1".parse().unwrap()));
        assert!(loopback.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!loopback.contains("128.0.0.1".parse().unwrap()));
        assert!(!loopback.contains("::1".parse().unwrap()));
        let one = Cidr::parse("10.0.0.7").unwrap();
        assert!(one.contains("10.0.0.7".parse().unwrap()) && !one.contains("10.0.0.8".parse().unwrap()));
        assert!(Cidr::parse("fd00::/8").unwrap().contains("fd12::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "::/129", "example.org", "10.0.0.0/x"] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?}");
        }
    }
}
