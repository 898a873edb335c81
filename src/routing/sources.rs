//! Which carrier trunk a source address belongs to: the most specific configured CIDR wins,
//! ties go to the trunk configured first. Unknown sources are `None`, never a guess.

use std::net::IpAddr;

use ipnet::IpNet;

use super::TrunkId;

#[derive(Debug, Default)]
pub struct SourceIndex {
    /// Sorted by prefix length, longest first; stable, so config order breaks ties.
    nets: Vec<(IpNet, TrunkId)>,
}

impl SourceIndex {
    pub fn build(entries: impl IntoIterator<Item = (IpNet, TrunkId)>) -> SourceIndex {
        let mut nets: Vec<(IpNet, TrunkId)> = entries
            .into_iter()
            .map(|(net, trunk)| (net.trunc(), trunk))
            .collect();
        nets.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        SourceIndex { nets }
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<TrunkId> {
        // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.nets
            .iter()
            .find(|(net, _)| net.contains(&ip))
            .map(|(_, trunk)| *trunk)
    }
}

/// The source nets of a trunk when `allowed_source_cidrs` is empty: the IP of its `address`.
pub fn address_as_net(address: &str) -> Option<IpNet> {
    let (host, _) = address.rsplit_once(':')?;
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    Some(IpNet::from(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(entries: &[(&str, u16)]) -> SourceIndex {
        SourceIndex::build(
            entries
                .iter()
                .map(|(n, t)| (n.parse::<IpNet>().unwrap(), TrunkId(*t))),
        )
    }

    fn at(index: &SourceIndex, ip: &str) -> Option<u16> {
        index.lookup(ip.parse().unwrap()).map(|t| t.0)
    }

    #[test]
    fn longest_prefix_then_first_configured() {
        let i = idx(&[
            ("198.51.100.0/24", 0),
            ("198.51.100.16/28", 1),
            ("198.51.100.16/28", 2),
            ("203.0.113.7/32", 3),
        ]);
        assert_eq!(at(&i, "198.51.100.1"), Some(0));
        assert_eq!(at(&i, "198.51.100.16"), Some(1));
        assert_eq!(at(&i, "198.51.100.31"), Some(1));
        assert_eq!(at(&i, "198.51.100.32"), Some(0));
        assert_eq!(at(&i, "198.51.100.255"), Some(0));
        assert_eq!(at(&i, "198.51.101.0"), None);
        assert_eq!(at(&i, "203.0.113.7"), Some(3));
        assert_eq!(at(&i, "203.0.113.8"), None);
    }

    #[test]
    fn ipv6_and_v4_mapped_sources() {
        let i = idx(&[
            ("2001:db8:10::/48", 0),
            ("192.0.2.0/24", 1),
            ("2001:db8:10:5::/64", 2),
        ]);
        assert_eq!(at(&i, "2001:db8:10::1"), Some(0));
        assert_eq!(at(&i, "2001:db8:10:5::99"), Some(2));
        assert_eq!(at(&i, "2001:db8:11::1"), None);
        assert_eq!(at(&i, "::ffff:192.0.2.9"), Some(1));
        assert_eq!(at(&i, "::1"), None);
    }

    #[test]
    fn host_bits_in_config_do_not_widen_or_break_matching() {
        let i = idx(&[("192.0.2.77/24", 0)]);
        assert_eq!(at(&i, "192.0.2.1"), Some(0));
    }

    #[test]
    fn address_literal_as_source() {
        assert_eq!(
            address_as_net("192.0.2.5:5060"),
            Some("192.0.2.5/32".parse().unwrap())
        );
        assert_eq!(
            address_as_net("[2001:db8::5]:5060"),
            Some("2001:db8::5/128".parse().unwrap())
        );
        assert_eq!(address_as_net("pstn.example:5060"), None);
    }
}
