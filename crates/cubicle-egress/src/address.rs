//! IP address checks, applied to every address a name resolves to and to IP
//! literals alike. Anything that is not a public unicast address — loopback,
//! private, link-local, CGNAT, multicast, documentation, reserved, cloud
//! metadata, and IPv6 forms that embed such an IPv4 address — is refused
//! unless an [`AddressRule`] names it. Cloud metadata endpoints are refused
//! even inside an allowed range unless a rule names exactly that address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::config::AddressRule;
use crate::error::ConfigError;

/// What kind of address an IP is, for the purpose of egress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressClass {
    /// A public unicast address: reachable when the domain is allowed.
    Public,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16, fc00::/7, fec0::/10.
    Private,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// 100.64/10 (carrier-grade NAT).
    SharedCgnat,
    /// 224/4, ff00::/8.
    Multicast,
    /// 0.0.0.0, ::.
    Unspecified,
    /// 255.255.255.255.
    Broadcast,
    /// 0/8 ("this network").
    ThisNetwork,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32.
    Documentation,
    /// 198.18/15.
    Benchmarking,
    /// 240/4, 192.0.0/24, 100::/64 and other special-purpose blocks.
    Reserved,
    /// A cloud provider's instance metadata service (169.254.169.254,
    /// fd00:ec2::254, 100.100.100.200, 168.63.129.16, 192.0.0.192).
    CloudMetadata,
}

impl AddressClass {
    /// How a denial names this class, e.g. "a private address".
    pub fn describe(self) -> &'static str {
        match self {
            AddressClass::Public => "a public address",
            AddressClass::Loopback => "a loopback address (this computer)",
            AddressClass::Private => "a private address",
            AddressClass::LinkLocal => "a link-local address",
            AddressClass::SharedCgnat => "a carrier-grade NAT address",
            AddressClass::Multicast => "a multicast address",
            AddressClass::Unspecified => "the unspecified address",
            AddressClass::Broadcast => "the broadcast address",
            AddressClass::ThisNetwork => "a 'this network' address",
            AddressClass::Documentation => "a documentation-only address",
            AddressClass::Benchmarking => "a benchmarking-only address",
            AddressClass::Reserved => "a reserved address",
            AddressClass::CloudMetadata => "a cloud metadata address",
        }
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

const METADATA_V4: [Ipv4Addr; 4] = [
    Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure IMDS, OpenStack
    Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud
    Ipv4Addr::new(168, 63, 129, 16),   // Azure WireServer: a public address, so named here
    Ipv4Addr::new(192, 0, 0, 192),     // Oracle Cloud
];

const METADATA_V6: [Ipv6Addr; 1] = [Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)];

/// Classifies an address. IPv6 addresses that carry an IPv4 address
/// (IPv4-mapped, IPv4-compatible, NAT64, 6to4) are classified by that address.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    if METADATA_V4.contains(&ip) {
        AddressClass::CloudMetadata
    } else if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if a == 0 {
        AddressClass::ThisNetwork
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_private() {
        AddressClass::Private
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if a == 100 && (b & 0xc0) == 64 {
        AddressClass::SharedCgnat
    } else if ip.is_multicast() {
        AddressClass::Multicast
    } else if ip.is_broadcast() {
        AddressClass::Broadcast
    } else if ip.is_documentation() {
        AddressClass::Documentation
    } else if a == 198 && (b & 0xfe) == 18 {
        AddressClass::Benchmarking
    } else if a >= 240 || (a == 192 && b == 0 && c == 0) {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let seg = ip.segments();
    if METADATA_V6.contains(&ip) {
        AddressClass::CloudMetadata
    } else if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if (seg[0] & 0xfe00) == 0xfc00 || (seg[0] & 0xffc0) == 0xfec0 {
        AddressClass::Private
    } else if (seg[0] & 0xffc0) == 0xfe80 {
        AddressClass::LinkLocal
    } else if ip.is_multicast() {
        AddressClass::Multicast
    } else if seg[0] == 0x2001 && seg[1] == 0x0db8 {
        AddressClass::Documentation
    } else if seg[0] == 0x0100 && seg[1..4] == [0, 0, 0] {
        // 100::/64, the discard prefix.
        AddressClass::Reserved
    } else if (seg[0] & 0xe000) != 0x2000 {
        // Everything outside 2000::/3 is unassigned or special-purpose.
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

/// The IPv4 address an IPv6 address carries in a form that routes to it.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let seg = ip.segments();
    let low = || {
        Ipv4Addr::new(
            (seg[6] >> 8) as u8,
            seg[6] as u8,
            (seg[7] >> 8) as u8,
            seg[7] as u8,
        )
    };
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    // IPv4-compatible (::a.b.c.d, deprecated but still parsed by stacks); `::`
    // and `::1` are left to the IPv6 checks.
    if seg[..6] == [0; 6] && (seg[6] != 0 || seg[7] > 1) {
        return Some(low());
    }
    // NAT64 well-known prefix 64:ff9b::/96 and local-use 64:ff9b:1::/48.
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1)
    {
        return Some(low());
    }
    // 6to4 2002:AABB:CCDD::/48.
    if seg[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (seg[1] >> 8) as u8,
            seg[1] as u8,
            (seg[2] >> 8) as u8,
            seg[2] as u8,
        ));
    }
    None
}

/// Compiled address allowances.
#[derive(Debug, Clone, Default)]
pub(crate) struct AddressRules {
    rules: Vec<(IpNet, AddressRule)>,
}

/// Why an address may not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Blocked {
    /// The address, in canonical form.
    pub(crate) ip: IpAddr,
    /// Its class.
    pub(crate) class: AddressClass,
}

impl AddressRules {
    /// Compiles the rules, failing on the first that is neither an address nor a range.
    pub(crate) fn new(rules: &[AddressRule]) -> Result<Self, ConfigError> {
        let rules = rules
            .iter()
            .map(|r| {
                let p = r.pattern.trim();
                let p = p
                    .strip_prefix('[')
                    .and_then(|x| x.strip_suffix(']'))
                    .unwrap_or(p);
                let net = p
                    .parse::<IpNet>()
                    .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| ConfigError::BadAddressPattern {
                        pattern: r.pattern.clone(),
                    })?;
                Ok((canonical_net(net), r.clone()))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Ok(Self { rules })
    }

    /// The rule naming this exact non-public address or a range holding it.
    pub(crate) fn naming(&self, ip: IpAddr) -> Option<&AddressRule> {
        let ip = ip.to_canonical();
        let exact_only = classify(ip) == AddressClass::CloudMetadata;
        self.rules
            .iter()
            .find(|(net, _)| {
                net.contains(&ip) && (!exact_only || net.prefix_len() == net.max_prefix_len())
            })
            .map(|(_, r)| r)
    }

    /// Ok with the rule that allowed a non-public address (`None` for a public
    /// one), or why the address is blocked.
    pub(crate) fn check(&self, ip: IpAddr) -> Result<Option<&AddressRule>, Blocked> {
        let ip = ip.to_canonical();
        match classify(ip) {
            AddressClass::Public => Ok(None),
            class => self.naming(ip).map(Some).ok_or(Blocked { ip, class }),
        }
    }
}

/// Rules written as IPv4-mapped IPv6 match the IPv4 address they carry.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
            Some(v4) if v6.prefix_len() >= 96 => {
                ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4)
            }
            _ => net,
        },
        IpNet::V4(_) => net,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;

    fn class(s: &str) -> AddressClass {
        classify(s.parse().unwrap())
    }

    #[test]
    fn classes() {
        let cases = [
            ("8.8.8.8", AddressClass::Public),
            ("93.184.216.34", AddressClass::Public),
            ("2606:4700::1111", AddressClass::Public),
            ("127.0.0.1", AddressClass::Loopback),
            ("127.255.255.254", AddressClass::Loopback),
            ("::1", AddressClass::Loopback),
            ("10.0.0.5", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("172.31.255.255", AddressClass::Private),
            ("172.32.0.1", AddressClass::Public),
            ("192.168.1.1", AddressClass::Private),
            ("fc00::1", AddressClass::Private),
            ("fd12:3456::1", AddressClass::Private),
            ("fec0::1", AddressClass::Private),
            ("169.254.1.1", AddressClass::LinkLocal),
            ("fe80::1", AddressClass::LinkLocal),
            ("100.64.0.1", AddressClass::SharedCgnat),
            ("100.127.255.255", AddressClass::SharedCgnat),
            ("100.128.0.1", AddressClass::Public),
            ("224.0.0.1", AddressClass::Multicast),
            ("ff02::1", AddressClass::Multicast),
            ("0.0.0.0", AddressClass::Unspecified),
            ("::", AddressClass::Unspecified),
            ("0.1.2.3", AddressClass::ThisNetwork),
            ("255.255.255.255", AddressClass::Broadcast),
            ("240.0.0.1", AddressClass::Reserved),
            ("192.0.0.8", AddressClass::Reserved),
            ("192.0.2.1", AddressClass::Documentation),
            ("2001:db8::1", AddressClass::Documentation),
            ("198.18.0.1", AddressClass::Benchmarking),
            ("169.254.169.254", AddressClass::CloudMetadata),
            ("fd00:ec2::254", AddressClass::CloudMetadata),
            ("168.63.129.16", AddressClass::CloudMetadata),
            ("100.100.100.200", AddressClass::CloudMetadata),
            ("192.0.0.192", AddressClass::CloudMetadata),
            // IPv6 spellings of IPv4 addresses are judged by the IPv4 address.
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::ffff:10.0.0.1", AddressClass::Private),
            ("::ffff:169.254.169.254", AddressClass::CloudMetadata),
            ("::127.0.0.1", AddressClass::Loopback),
            ("64:ff9b::10.0.0.1", AddressClass::Private),
            ("64:ff9b::8.8.8.8", AddressClass::Public),
            ("2002:0a00:0001::1", AddressClass::Private),
            ("2002:0808:0808::1", AddressClass::Public),
            ("100::1", AddressClass::Reserved),
            ("4000::1", AddressClass::Reserved),
        ];
        for (ip, want) in cases {
            assert_eq!(class(ip), want, "{ip}");
        }
    }

    fn rules(patterns: &[&str]) -> AddressRules {
        let v: Vec<_> = patterns
            .iter()
            .map(|p| AddressRule::new(*p, "test"))
            .collect();
        AddressRules::new(&v).unwrap()
    }

    #[test]
    fn public_addresses_need_no_rule() {
        assert_eq!(rules(&[]).check("8.8.8.8".parse().unwrap()), Ok(None));
    }

    #[test]
    fn non_public_addresses_need_a_rule() {
        let none = rules(&[]);
        let blocked = none.check("10.0.0.5".parse().unwrap()).unwrap_err();
        assert_eq!(blocked.class, AddressClass::Private);
        let some = rules(&["10.0.0.0/8", "::1", "[fe80::1]"]);
        assert!(some.check("10.0.0.5".parse().unwrap()).unwrap().is_some());
        assert!(
            some.check("::ffff:10.0.0.5".parse().unwrap())
                .unwrap()
                .is_some()
        );
        assert!(some.check("::1".parse().unwrap()).unwrap().is_some());
        assert!(some.check("fe80::1".parse().unwrap()).unwrap().is_some());
        assert!(some.check("127.0.0.1".parse().unwrap()).is_err());
    }

    #[test]
    fn metadata_needs_an_exact_rule() {
        let broad = rules(&["169.254.0.0/16", "0.0.0.0/0"]);
        assert!(broad.check("169.254.1.1".parse().unwrap()).is_ok());
        let blocked = broad.check("169.254.169.254".parse().unwrap()).unwrap_err();
        assert_eq!(blocked.class, AddressClass::CloudMetadata);
        let exact = rules(&["169.254.169.254"]);
        assert!(exact.check("169.254.169.254".parse().unwrap()).is_ok());
    }

    #[test]
    fn mapped_rules_match_ipv4() {
        let r = rules(&["::ffff:127.0.0.1"]);
        assert!(r.check("127.0.0.1".parse().unwrap()).is_ok());
    }

    #[test]
    fn bad_rules_are_config_errors() {
        for bad in ["localhost", "10.0.0.0/33", "", "1.2.3"] {
            assert!(
                AddressRules::new(&[AddressRule::new(bad, "t")]).is_err(),
                "{bad}"
            );
        }
    }
}
