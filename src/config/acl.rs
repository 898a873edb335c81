//! Which configured peer a source address belongs to: Microsoft (any address in the published
//! ranges, row 11 — not only the addresses the proxy FQDNs resolve to) or a carrier trunk.
//! Requests from anywhere else are not ours to answer.

use std::net::IpAddr;

use ipnet::IpNet;

use super::Config;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourcePeer {
    Teams,
    /// Index into `Config::carrier_trunks`.
    CarrierTrunk(usize),
}

#[derive(Debug, Clone)]
pub struct SourceAcl {
    teams: Vec<IpNet>,
    trunks: Vec<Vec<IpNet>>,
}

impl SourceAcl {
    pub fn new(config: &Config) -> SourceAcl {
        let trunks = config
            .carrier_trunks
            .iter()
            .map(|t| {
                if !t.allowed_source_cidrs.is_empty() {
                    return t.allowed_source_cidrs.clone();
                }
                // Validation guarantees the address is an IP literal in this case.
                t.address
                    .rsplit_once(':')
                    .and_then(|(host, _)| {
                        host.trim_start_matches('[')
                            .trim_end_matches(']')
                            .parse::<IpAddr>()
                            .ok()
                    })
                    .map(|ip| vec![IpNet::from(ip)])
                    .unwrap_or_default()
            })
            .collect();
        SourceAcl {
            teams: config.teams.allowed_source_cidrs.clone(),
            trunks,
        }
    }

    /// Every network a peer may send from (Microsoft's and every trunk's).
    pub fn networks(&self) -> Vec<IpNet> {
        self.teams
            .iter()
            .chain(self.trunks.iter().flatten())
            .copied()
            .collect()
    }

    /// Teams wins when a range is configured for both (a lab on loopback).
    pub fn classify(&self, ip: IpAddr) -> Option<SourcePeer> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if self.teams.iter().any(|net| net.contains(&ip)) {
            return Some(SourcePeer::Teams);
        }
        self.trunks
            .iter()
            .position(|nets| nets.iter().any(|net| net.contains(&ip)))
            .map(SourcePeer::CarrierTrunk)
    }
}
