//! Who is speaking. Every datagram and every stream connection is tied to one configured peer
//! by transport, certificate and source address together, before a byte of it is parsed;
//! anything that matches no peer is dropped without an answer.
//!
//! * **Microsoft** only over TLS, with a certificate that chained to our roots during the
//!   handshake and is valid for one of Microsoft's names (`sip.pstnhub.microsoft.com` ...;
//!   wildcards match one label, RFC 6125), from Microsoft's address ranges (row 11). Plain
//!   TCP from those ranges counts as Microsoft only with the explicit lab setting
//!   ([`MicrosoftRule::plain_tcp_lab`]) that SIPp stand-ins need. UDP never does.
//! * **A carrier trunk** by the transports it may use and its source networks (most specific
//!   network first, then configuration order), and for TLS optionally by a certificate name.
//!
//! On UDP Microsoft never speaks; on plain TCP (labs only) the more specific network wins
//! and a carrier wins a tie, so a lab with overlapping loopback ranges still tells the two
//! apart.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use rustls::pki_types::{CertificateDer, ServerName};

use super::TransportKind;

/// A carrier trunk by its configured name: what identifies it across configuration
/// reloads (a trunk keeps its name, not its position in the file), so a call in progress
/// keeps recognising its peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrunkName(Arc<str>);

impl TrunkName {
    pub fn new(name: &str) -> TrunkName {
        TrunkName(Arc::from(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<Arc<str>> for TrunkName {
    fn from(name: Arc<str>) -> TrunkName {
        TrunkName(name)
    }
}

impl std::fmt::Display for TrunkName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A sender identified by [`PeerRules`]: the only senders the SBC talks to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Peer {
    /// Microsoft's Direct Routing proxies.
    Microsoft,
    /// A carrier trunk.
    Carrier(TrunkName),
}

impl Peer {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Peer::Microsoft => "microsoft",
            Peer::Carrier(_) => "carrier",
        }
    }
}

/// How Microsoft is recognised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MicrosoftRule {
    /// Microsoft's published signalling ranges.
    pub networks: Vec<IpNet>,
    /// Microsoft's certificate must be valid for at least one of these names.
    pub certificate_names: Vec<String>,
    /// Lab only: plain TCP from `networks` counts as Microsoft (SIPp stand-ins cannot speak
    /// TLS). Never set in production: anyone on the path could then speak for Microsoft.
    pub plain_tcp_lab: bool,
}

/// How one carrier trunk is recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkRule {
    pub name: TrunkName,
    /// Source networks (its `allowed_source_cidrs` and the IP of its address).
    pub networks: Vec<IpNet>,
    /// Transports it may send over.
    pub transports: Vec<TransportKind>,
    /// TLS only: a name its certificate must be valid for.
    pub certificate_name: Option<String>,
}

/// Every peer the SBC accepts traffic from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerRules {
    microsoft: MicrosoftRule,
    trunks: Vec<TrunkRule>,
    /// (network, index into `trunks`) sorted by prefix length, longest first; stable, so
    /// configuration order breaks ties.
    trunk_networks: Vec<(IpNet, usize)>,
}

/// A dual-stack socket reports IPv4 peers as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Whether `cert` is valid for `name` (RFC 6125; the chain was verified in the handshake).
pub(crate) fn certificate_valid_for(cert: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(parsed) = rustls::server::ParsedCertificate::try_from(cert) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(name) else {
        return false;
    };
    rustls::client::verify_server_name(&parsed, &name).is_ok()
}

impl PeerRules {
    pub fn new(microsoft: MicrosoftRule, trunks: Vec<TrunkRule>) -> PeerRules {
        let mut trunk_networks: Vec<(IpNet, usize)> = trunks
            .iter()
            .enumerate()
            .flat_map(|(index, rule)| rule.networks.iter().map(move |net| (net.trunc(), index)))
            .collect();
        trunk_networks.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        PeerRules {
            microsoft,
            trunks,
            trunk_networks,
        }
    }

    /// Every network some peer may send from.
    pub fn networks(&self) -> impl Iterator<Item = &IpNet> {
        self.microsoft
            .networks
            .iter()
            .chain(self.trunks.iter().flat_map(|t| t.networks.iter()))
    }

    pub fn microsoft(&self) -> &MicrosoftRule {
        &self.microsoft
    }

    /// These rules, plus the trunks of `previous` named in `keep` that these rules no
    /// longer have: a reload removing a trunk keeps hearing it for the calls it still has
    /// (they end as they started), and the routing table refuses it anything new.
    pub fn retaining(self, previous: &PeerRules, keep: &[TrunkName]) -> PeerRules {
        let mut trunks = self.trunks;
        for rule in &previous.trunks {
            if keep.contains(&rule.name) && !trunks.iter().any(|t| t.name == rule.name) {
                trunks.push(rule.clone());
            }
        }
        PeerRules::new(self.microsoft, trunks)
    }

    fn is_microsoft_address(&self, ip: IpAddr) -> bool {
        self.microsoft.networks.iter().any(|net| net.contains(&ip))
    }

    /// Trunks whose networks hold `ip` and that accept `kind`, with the prefix length of
    /// the network that matched, most specific first.
    fn trunks_at(
        &self,
        kind: TransportKind,
        ip: IpAddr,
    ) -> impl Iterator<Item = (&TrunkRule, u8)> + '_ {
        self.trunk_networks
            .iter()
            .filter(move |(net, _)| net.contains(&ip))
            .filter_map(|(net, index)| Some((self.trunks.get(*index)?, net.prefix_len())))
            .filter(move |(rule, _)| rule.transports.contains(&kind))
    }

    /// The peer behind a UDP datagram or a plain TCP connection; `None`: a stranger.
    pub fn classify_plain(&self, kind: TransportKind, ip: IpAddr) -> Option<Peer> {
        let ip = canonical(ip);
        let trunk = self.trunks_at(kind, ip).next();
        let microsoft = (kind == TransportKind::Tcp && self.microsoft.plain_tcp_lab)
            .then(|| {
                self.microsoft
                    .networks
                    .iter()
                    .filter(|net| net.contains(&ip))
                    .map(IpNet::prefix_len)
                    .max()
            })
            .flatten();
        match (trunk, microsoft) {
            (Some((_, trunk_prefix)), Some(ms_prefix)) if ms_prefix > trunk_prefix => {
                Some(Peer::Microsoft)
            }
            (Some((trunk, _)), _) => Some(Peer::Carrier(trunk.name.clone())),
            (None, Some(_)) => Some(Peer::Microsoft),
            (None, None) => None,
        }
    }

    /// Whether a TLS connection from `ip` could belong to a peer (decided finally by
    /// [`classify_tls`](Self::classify_tls) once the handshake shows the certificate).
    pub fn may_be_tls_peer(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.is_microsoft_address(ip) || self.trunks_at(TransportKind::Tls, ip).next().is_some()
    }

    /// The peer behind a TLS connection whose handshake presented `cert` (already verified
    /// against our roots by rustls); `None`: refuse the connection.
    pub fn classify_tls(&self, ip: IpAddr, cert: Option<&CertificateDer<'_>>) -> Option<Peer> {
        let ip = canonical(ip);
        if let Some(cert) = cert {
            if self.is_microsoft_address(ip)
                && self
                    .microsoft
                    .certificate_names
                    .iter()
                    .any(|name| certificate_valid_for(cert, name))
            {
                return Some(Peer::Microsoft);
            }
        }
        self.trunks_at(TransportKind::Tls, ip)
            .map(|(rule, _)| rule)
            .find(|rule| match (rule.certificate_name.as_deref(), cert) {
                (None, _) => true,
                (Some(name), Some(cert)) => certificate_valid_for(cert, name),
                (Some(_), None) => false,
            })
            .map(|rule| Peer::Carrier(rule.name.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trunk(list: &[&str], transports: &[TransportKind]) -> TrunkRule {
        TrunkRule {
            name: TrunkName::new(&format!("t{}", list.join(","))),
            networks: nets(list),
            transports: transports.to_vec(),
            certificate_name: None,
        }
    }

    fn rules(plain_tcp_lab: bool) -> PeerRules {
        use TransportKind::*;
        PeerRules::new(
            MicrosoftRule {
                networks: nets(&["52.112.0.0/14", "52.120.0.0/14"]),
                certificate_names: vec!["sip.pstnhub.microsoft.com".into()],
                plain_tcp_lab,
            },
            vec![
                trunk(&["198.51.100.0/24"], &[Udp, Tcp]),
                trunk(&["198.51.100.16/28"], &[Udp]),
                trunk(&["203.0.113.5/32"], &[Tls]),
            ],
        )
    }

    #[test]
    fn row11_microsoft_ranges_on_udp_or_plain_tcp_are_strangers() {
        let r = rules(false);
        assert_eq!(r.classify_plain(TransportKind::Udp, ip("52.112.1.1")), None);
        assert_eq!(r.classify_plain(TransportKind::Tcp, ip("52.120.9.9")), None);
        assert!(r.may_be_tls_peer(ip("52.112.1.1")));
    }

    #[test]
    fn plain_tcp_from_microsoft_ranges_only_with_the_lab_setting() {
        let r = rules(true);
        assert_eq!(
            r.classify_plain(TransportKind::Tcp, ip("52.112.1.1")),
            Some(Peer::Microsoft)
        );
        assert_eq!(r.classify_plain(TransportKind::Udp, ip("52.112.1.1")), None);
    }

    #[test]
    fn lab_plain_tcp_goes_to_the_more_specific_of_microsoft_and_a_trunk() {
        let r = PeerRules::new(
            MicrosoftRule {
                networks: nets(&["127.0.1.0/24"]),
                certificate_names: Vec::new(),
                plain_tcp_lab: true,
            },
            vec![trunk(
                &["127.0.0.0/8"],
                &[TransportKind::Udp, TransportKind::Tcp],
            )],
        );
        assert_eq!(
            r.classify_plain(TransportKind::Tcp, ip("127.0.1.5")),
            Some(Peer::Microsoft)
        );
        assert_eq!(
            r.classify_plain(TransportKind::Udp, ip("127.0.1.5")),
            Some(Peer::Carrier(r.trunks[0].name.clone())),
            "never Microsoft over UDP"
        );
        assert_eq!(
            r.classify_plain(TransportKind::Tcp, ip("127.0.0.5")),
            Some(Peer::Carrier(r.trunks[0].name.clone()))
        );
    }

    #[test]
    fn a_removed_trunk_is_retained_only_while_named() {
        let old = rules(false);
        let gone = old.trunks[1].name.clone();
        let new = PeerRules::new(
            MicrosoftRule::default(),
            vec![old.trunks[0].clone(), old.trunks[2].clone()],
        );
        let kept = new.clone().retaining(&old, std::slice::from_ref(&gone));
        assert_eq!(
            kept.classify_plain(TransportKind::Udp, ip("198.51.100.17")),
            Some(Peer::Carrier(gone.clone())),
            "its calls still reach it"
        );
        let dropped = new.retaining(&old, &[]);
        assert_eq!(
            dropped.classify_plain(TransportKind::Udp, ip("198.51.100.17")),
            Some(Peer::Carrier(old.trunks[0].name.clone())),
            "no call left: the next most specific trunk"
        );
    }

    #[test]
    fn trunks_by_transport_and_most_specific_network() {
        let r = rules(false);
        let at = |kind, s| r.classify_plain(kind, ip(s));
        assert_eq!(
            at(TransportKind::Udp, "198.51.100.17"),
            Some(Peer::Carrier(r.trunks[1].name.clone()))
        );
        // The /28 trunk takes no TCP, so the /24 one is the TCP peer there.
        assert_eq!(
            at(TransportKind::Tcp, "198.51.100.17"),
            Some(Peer::Carrier(r.trunks[0].name.clone()))
        );
        assert_eq!(
            at(TransportKind::Udp, "198.51.100.200"),
            Some(Peer::Carrier(r.trunks[0].name.clone()))
        );
        assert_eq!(at(TransportKind::Udp, "198.51.101.1"), None);
        assert_eq!(
            at(TransportKind::Udp, "203.0.113.5"),
            None,
            "TLS-only trunk"
        );
        assert_eq!(
            at(TransportKind::Udp, "::ffff:198.51.100.3"),
            Some(Peer::Carrier(r.trunks[0].name.clone()))
        );
    }

    #[test]
    fn tls_without_a_microsoft_certificate_is_not_microsoft() {
        let r = rules(false);
        assert_eq!(r.classify_tls(ip("52.112.1.1"), None), None);
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        assert_eq!(r.classify_tls(ip("52.112.1.1"), Some(&garbage)), None);
        assert!(!r.may_be_tls_peer(ip("192.0.2.1")));
        assert_eq!(
            r.classify_tls(ip("203.0.113.5"), None),
            Some(Peer::Carrier(r.trunks[2].name.clone()))
        );
    }

    fn certificate_for(names: &[&str]) -> CertificateDer<'static> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        cert.der().clone()
    }

    #[test]
    fn row7_microsoft_by_san_and_range_together() {
        let r = rules(false);
        let microsoft = certificate_for(&["sip.pstnhub.microsoft.com"]);
        let wildcard = certificate_for(&["*.pstnhub.microsoft.com"]);
        let other = certificate_for(&["sbc.attacker.example"]);
        assert_eq!(
            r.classify_tls(ip("52.112.1.1"), Some(&microsoft)),
            Some(Peer::Microsoft)
        );
        assert_eq!(
            r.classify_tls(ip("52.121.0.9"), Some(&wildcard)),
            Some(Peer::Microsoft),
            "a wildcard covers sip.pstnhub.microsoft.com"
        );
        assert_eq!(r.classify_tls(ip("52.112.1.1"), Some(&other)), None);
        assert_eq!(
            r.classify_tls(ip("192.0.2.1"), Some(&microsoft)),
            None,
            "Microsoft's certificate from outside its ranges is nobody"
        );
    }

    #[test]
    fn a_trunk_naming_a_certificate_needs_one_valid_for_it() {
        let mut tls_trunk = trunk(&["203.0.113.5/32"], &[TransportKind::Tls]);
        tls_trunk.certificate_name = Some("pstn.carrier.example".into());
        let r = PeerRules::new(MicrosoftRule::default(), vec![tls_trunk]);
        assert_eq!(r.classify_tls(ip("203.0.113.5"), None), None);
        let garbage = CertificateDer::from(vec![0x30, 0x00]);
        assert_eq!(r.classify_tls(ip("203.0.113.5"), Some(&garbage)), None);
        let wrong = certificate_for(&["other.carrier.example"]);
        assert_eq!(r.classify_tls(ip("203.0.113.5"), Some(&wrong)), None);
        let right = certificate_for(&["pstn.carrier.example"]);
        assert_eq!(
            r.classify_tls(ip("203.0.113.5"), Some(&right)),
            Some(Peer::Carrier(r.trunks[0].name.clone()))
        );
    }
}
