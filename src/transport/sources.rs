//! Which source addresses the transport talks to at all (row 11: Microsoft's ranges and the
//! carrier trunks). Strangers get no `400` for malformed input and no stream connection, so
//! a scanner cannot tell an SBC is listening.

use std::net::IpAddr;

use ipnet::IpNet;

/// The networks peers may send from. An empty list admits nobody.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedSources {
    networks: Vec<IpNet>,
}

impl AllowedSources {
    pub fn new(networks: Vec<IpNet>) -> AllowedSources {
        AllowedSources { networks }
    }

    /// Whether `ip` is in one of the networks (an IPv4-mapped IPv6 address counts as its
    /// IPv4 address).
    pub fn admits(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.networks.iter().any(|net| net.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(nets: &[&str]) -> AllowedSources {
        AllowedSources::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    #[test]
    fn admits_addresses_inside_the_networks_only() {
        let sources = allowed(&["52.112.0.0/14", "192.0.2.10/32", "2001:db8::/32"]);
        assert!(sources.admits("52.114.1.1".parse().unwrap()));
        assert!(sources.admits("192.0.2.10".parse().unwrap()));
        assert!(sources.admits("2001:db8::5".parse().unwrap()));
        assert!(!sources.admits("192.0.2.11".parse().unwrap()));
        assert!(!sources.admits("52.116.0.1".parse().unwrap()));
        assert!(!sources.admits("2001:db9::5".parse().unwrap()));
    }

    #[test]
    fn ipv4_mapped_ipv6_is_judged_as_ipv4() {
        let sources = allowed(&["192.0.2.0/24"]);
        assert!(sources.admits("::ffff:192.0.2.7".parse().unwrap()));
        assert!(!sources.admits("::ffff:198.51.100.7".parse().unwrap()));
    }

    #[test]
    fn empty_list_admits_nobody() {
        assert!(!allowed(&[]).admits("127.0.0.1".parse().unwrap()));
    }
}
