//! The TOML schema: plain serde structs with defaults. Words follow what a Teams admin sees in
//! `New-CsOnlinePSTNGateway` (SipSignalingPort, FailoverTimeSeconds, ForwardPai, ...).
//! Every table rejects unknown keys so a typo is an error, not a silently ignored setting.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub sbc: SbcSection,
    #[serde(default)]
    pub sip: SipSection,
    #[serde(default)]
    pub tls: TlsSection,
    #[serde(default)]
    pub listen: Vec<ListenEntry>,
    #[serde(default)]
    pub teams: TeamsSection,
    #[serde(default, rename = "carrier_trunk")]
    pub carrier_trunks: Vec<CarrierTrunk>,
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<Tenant>,
    #[serde(default)]
    pub media: MediaSection,
    #[serde(default)]
    pub ops: OpsSection,
    /// The admin API (`teams-sbc ctl`); absent: no admin listener.
    #[serde(default)]
    pub admin: Option<AdminSection>,
    #[serde(default)]
    pub cdr: CdrSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SbcSection {
    /// Carrier trunk FQDN registered with `New-CsOnlinePSTNGateway`; tenants are subdomains of it.
    pub base_fqdn: String,
    /// The TLS port Teams connects to (`-SipSignalingPort`).
    #[serde(default = "default_sip_signaling_port")]
    pub sip_signaling_port: u16,
    /// First part of `X-MS-SBC: vendor/model/version`.
    #[serde(default = "default_vendor")]
    pub vendor: String,
    /// Second part of `X-MS-SBC`.
    #[serde(default = "default_model")]
    pub model: String,
    /// `Server` / `User-Agent` text towards carrier trunks; unset: none, so nothing on the
    /// carrier side tells the product or its version (Microsoft gets `X-MS-SBC` only).
    #[serde(default)]
    pub carrier_user_agent: Option<String>,
    /// The public address the FQDNs resolve to (the SBC may sit behind NAT).
    #[serde(default)]
    pub public_address: Option<IpAddr>,
    /// Local address of the TCP/TLS connections the SBC opens (to Microsoft's proxies and
    /// TCP/TLS trunks), for destinations of its IP family; the OS chooses when unset. UDP
    /// leaves from the `[[listen]]` socket it belongs to.
    #[serde(default)]
    pub bind_address: Option<IpAddr>,
    /// DNS servers (`ip:port`) asked for Microsoft's proxy FQDNs and trunk host names, over
    /// UDP (TCP for long answers); empty: the system's (`/etc/resolv.conf`, `/etc/hosts`).
    /// Every attempt resolves afresh, honouring the answer's TTL (row 8).
    #[serde(default)]
    pub dns_servers: Vec<SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipSection {
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    #[serde(default = "default_max_header_line_bytes")]
    pub max_header_line_bytes: usize,
    /// RFC 3261 T1 (RTT estimate), milliseconds.
    #[serde(default = "default_t1_ms")]
    pub t1_ms: u64,
    /// RFC 3261 T2 (maximum retransmit interval for non-INVITE), milliseconds.
    #[serde(default = "default_t2_ms")]
    pub t2_ms: u64,
    /// RFC 3261 T4 (maximum time a message stays in the network), milliseconds.
    #[serde(default = "default_t4_ms")]
    pub t4_ms: u64,
    /// Upper bound of concurrent transactions; new requests beyond it get 503.
    #[serde(default = "default_max_transactions")]
    pub max_transactions: usize,
    /// Live server transactions one source address may hold; beyond it its new requests get
    /// 503 while other senders are served.
    #[serde(default = "default_max_transactions_per_source")]
    pub max_transactions_per_source: usize,
    /// Live server transactions one peer (Microsoft, or one carrier trunk over all its
    /// addresses) may hold.
    #[serde(default = "default_max_transactions_per_peer")]
    pub max_transactions_per_peer: usize,
    /// Inbound TCP/TLS connections accepted from one source IP.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Inbound TCP/TLS connections in total.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection with no traffic for this long is closed (Microsoft's own idle timeout
    /// is 2 minutes, so keep this above 120).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: u64,
    /// CRLF keep-alive ping interval on connections we opened (row 14); 0 disables.
    #[serde(default = "default_keepalive")]
    pub keepalive_interval_seconds: u64,
    /// A message whose first byte arrived must be complete within this time (slow-loris).
    #[serde(default = "default_message_timeout")]
    pub message_timeout_seconds: u64,
    #[serde(default = "default_handshake_timeout")]
    pub tls_handshake_timeout_seconds: u64,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: u64,
    /// Connections we opened are renewed after this age (row 14: at least hourly); 0 = never.
    #[serde(default = "default_max_connection_age")]
    pub max_connection_age_seconds: u64,
}

impl Default for SipSection {
    fn default() -> Self {
        SipSection {
            max_message_bytes: default_max_message_bytes(),
            max_headers: default_max_headers(),
            max_header_line_bytes: default_max_header_line_bytes(),
            t1_ms: default_t1_ms(),
            t2_ms: default_t2_ms(),
            t4_ms: default_t4_ms(),
            max_transactions: default_max_transactions(),
            max_transactions_per_source: default_max_transactions_per_source(),
            max_transactions_per_peer: default_max_transactions_per_peer(),
            max_connections_per_ip: default_max_connections_per_ip(),
            max_connections: default_max_connections(),
            idle_timeout_seconds: default_idle_timeout(),
            keepalive_interval_seconds: default_keepalive(),
            message_timeout_seconds: default_message_timeout(),
            tls_handshake_timeout_seconds: default_handshake_timeout(),
            connect_timeout_seconds: default_connect_timeout(),
            max_connection_age_seconds: default_max_connection_age(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM file: leaf certificate followed by intermediates (row 3: full chain).
    #[serde(default)]
    pub cert_chain: Option<PathBuf>,
    /// PEM file: private key of the leaf (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub private_key: Option<PathBuf>,
    /// Trust anchors for every TLS peer: "microsoft" (the roots Microsoft names for Direct
    /// Routing, built in), "webpki" (Mozilla's roots) or a PEM file path.
    #[serde(default = "default_roots")]
    pub roots: String,
    /// Demand a client certificate from peers connecting to our TLS listener (mutual TLS).
    #[serde(default = "default_true")]
    pub require_client_cert: bool,
    /// Names one of which Microsoft's certificate must be valid for, on the connections it
    /// opens and on ours (row 7); a string or a list.
    #[serde(
        default = "default_teams_peer_san",
        deserialize_with = "one_or_many_names"
    )]
    pub teams_peer_san: Vec<String>,
}

/// `"name"` or `["name", ...]`.
fn one_or_many_names<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(name) => vec![name],
        OneOrMany::Many(names) => names,
    })
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            cert_chain: None,
            private_key: None,
            roots: default_roots(),
            require_client_cert: true,
            teams_peer_san: default_teams_peer_san(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    Udp,
    Tcp,
    Tls,
}

impl TransportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Udp => "udp",
            TransportKind::Tcp => "tcp",
            TransportKind::Tls => "tls",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenEntry {
    pub transport: TransportKind,
    /// `ip:port`; IPv6 as `[::1]:5061`.
    pub address: SocketAddr,
}

/// A Microsoft proxy: either `"host:port"` (TLS) or `{ address = "host:port", transport = "tcp" }`.
#[derive(Debug, Clone)]
pub enum TeamsProxy {
    Address(String),
    Detailed(TeamsProxyDetailed),
}

// Hand-written rather than `#[serde(untagged)]` so a typo inside the table is reported as
// "unknown field `adress`" instead of "did not match any variant".
impl<'de> Deserialize<'de> for TeamsProxy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ProxyVisitor;
        impl<'de> serde::de::Visitor<'de> for ProxyVisitor {
            type Value = TeamsProxy;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"host:port\" or { address = \"host:port\", transport = ... }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TeamsProxy, E> {
                Ok(TeamsProxy::Address(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<TeamsProxy, A::Error> {
                TeamsProxyDetailed::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(TeamsProxy::Detailed)
            }
        }
        deserializer.deserialize_any(ProxyVisitor)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamsProxyDetailed {
    pub address: String,
    /// Only for tests against plain-TCP tools such as SIPp; Teams itself speaks TLS only.
    #[serde(default = "default_tls")]
    pub transport: TransportKind,
    /// Name sent as SNI and checked in the proxy's certificate when `address` is an IP
    /// (a local stand-in); defaults to the host of `address`.
    #[serde(default)]
    pub tls_name: Option<String>,
}

impl TeamsProxy {
    pub fn address(&self) -> &str {
        match self {
            TeamsProxy::Address(a) => a,
            TeamsProxy::Detailed(d) => &d.address,
        }
    }
    pub fn transport(&self) -> TransportKind {
        match self {
            TeamsProxy::Address(_) => TransportKind::Tls,
            TeamsProxy::Detailed(d) => d.transport,
        }
    }
    pub fn tls_name(&self) -> Option<&str> {
        match self {
            TeamsProxy::Address(_) => None,
            TeamsProxy::Detailed(d) => d.tls_name.as_deref(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamsSection {
    /// Microsoft proxies in priority order, addressed by FQDN (row 8).
    #[serde(default = "default_teams_proxies")]
    pub proxies: Vec<TeamsProxy>,
    /// Seconds between our OPTIONS to each proxy; Microsoft expects 60..=180 (row 33).
    #[serde(default = "default_options_interval")]
    pub options_interval_seconds: u64,
    /// Mirrors the trunk's `FailoverTimeSeconds`: how long Microsoft waits for our answer.
    #[serde(default = "default_failover_time")]
    pub failover_time_seconds: u64,
    /// Mirrors `FailoverResponseCodes`: finals that let Microsoft try the next trunk (row 30).
    #[serde(default = "default_failover_codes")]
    pub failover_response_codes: Vec<u16>,
    /// Mirrors `MaxConcurrentSessions`; unset = unlimited.
    #[serde(default)]
    pub max_concurrent_sessions: Option<u32>,
    /// Mirrors `ForwardPai`: Microsoft sends P-Asserted-Identity + Privacy: id.
    #[serde(default)]
    pub forward_pai: bool,
    /// Mirrors `MediaBypass`.
    #[serde(default)]
    pub media_bypass: bool,
    /// Source ranges Microsoft may connect from (row 11).
    #[serde(default = "default_teams_cidrs")]
    pub allowed_source_cidrs: Vec<IpNet>,
    /// LAB ONLY, insecure: plain TCP from `allowed_source_cidrs` is taken as Microsoft, for
    /// stand-ins that cannot speak TLS (SIPp). Required by a proxy with `transport = "tcp"`.
    #[serde(default)]
    pub lab_plain_tcp: bool,
    /// Session interval (RFC 4028 `Session-Expires`) the SBC offers in its INVITEs, on both
    /// legs; at least 1800 s (row 42). Intervals the peers choose are honoured as sent.
    #[serde(default = "default_session_expires")]
    pub session_expires_seconds: u64,
}

impl Default for TeamsSection {
    fn default() -> Self {
        TeamsSection {
            proxies: default_teams_proxies(),
            options_interval_seconds: default_options_interval(),
            failover_time_seconds: default_failover_time(),
            failover_response_codes: default_failover_codes(),
            max_concurrent_sessions: None,
            forward_pai: false,
            media_bypass: false,
            allowed_source_cidrs: default_teams_cidrs(),
            lab_plain_tcp: false,
            session_expires_seconds: default_session_expires(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TranslationDirection {
    /// Applied to calls from the carrier towards Teams.
    ToTeams,
    /// Applied to calls from Teams towards the carrier.
    FromTeams,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TranslationField {
    Called,
    Calling,
    Both,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranslationRule {
    /// Regular expression (Rust `regex` syntax) matched against the whole number.
    pub pattern: String,
    /// Replacement, `$1` / `${name}` refer to capture groups.
    pub replacement: String,
    #[serde(default = "default_direction")]
    pub direction: TranslationDirection,
    #[serde(default = "default_field")]
    pub field: TranslationField,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarrierTrunk {
    /// Short name, used in logs and as a metric label.
    pub name: String,
    /// `host:port` of the carrier's SIP peer.
    pub address: String,
    #[serde(default = "default_udp")]
    pub transport: TransportKind,
    /// Sources accepted as this trunk, besides the IP of `address` when that is a literal
    /// (required when it is a host name).
    #[serde(default)]
    pub allowed_source_cidrs: Vec<IpNet>,
    /// Transports this trunk may send over; default: UDP and TCP for a `udp` or `tcp` trunk
    /// (RFC 3261 §18.1.1 moves large requests to TCP), TLS for a `tls` trunk.
    #[serde(default)]
    pub inbound_transports: Option<Vec<TransportKind>>,
    /// TLS trunks: a name the carrier's certificate must be valid for (as client and as
    /// server); unset: any certificate chaining to `tls.roots`, or none when
    /// `tls.require_client_cert` is false.
    #[serde(default)]
    pub tls_peer_name: Option<String>,
    #[serde(default)]
    pub max_concurrent_calls: Option<u32>,
    #[serde(default)]
    pub max_calls_per_second: Option<u32>,
    /// Codecs offered/accepted on this trunk, in preference order.
    #[serde(default = "default_codecs")]
    pub codecs: Vec<String>,
    #[serde(default)]
    pub number_translation: Vec<TranslationRule>,
    /// Trusted peers keep P-Asserted-Identity on private calls (RFC 3325); untrusted ones do not.
    #[serde(default)]
    pub trusted: bool,
    /// Send OPTIONS keep-alives to this trunk and mark it down when they fail.
    #[serde(default = "default_true")]
    pub options_ping: bool,
    #[serde(default = "default_options_interval")]
    pub options_interval_seconds: u64,
    /// PSTN -> Teams: which 18x reach this trunk: `first_only` (default), `convert_183_to_180`
    /// or `relay` (row 27).
    #[serde(default = "default_early_media")]
    pub early_media: String,
    /// Teams -> PSTN: turn Microsoft's History-Info into Diversion headers (RFC 5806).
    #[serde(default)]
    pub diversion_from_history_info: bool,
    /// Q.850 cause of a 486 from Teams towards this trunk: a cause number replacing
    /// Microsoft's 34 (default 17, RFC 4497), `"strip"` (no Q.850 Reason) or `"pass"` (row 58).
    #[serde(default)]
    pub q850_486_cause: Q850Cause,
    /// Final-status rewrites per direction: `to_carrier` (Teams' answers on PSTN -> Teams
    /// calls), `to_teams` (this trunk's answers on Teams -> PSTN calls).
    #[serde(default)]
    pub response_map: ResponseMap,
    /// When this trunk negotiates no telephone-event, detect its in-band G.711 DTMF tones and
    /// send them to Teams as RFC 4733 events, which Teams requires (row 48). Default on.
    #[serde(default = "default_true")]
    pub inband_dtmf: bool,
    /// When this trunk negotiates no comfort noise, still offer CN to Teams and turn Teams'
    /// CN into G.711 noise for the trunk, filling the silence until speech resumes (row 49).
    /// Default on.
    #[serde(default = "default_true")]
    pub comfort_noise: bool,
    /// The ringing tone the trunk hears while a transfer's target rings without early media
    /// (row 38): `etsi` (425 Hz, 1 s on / 4 s off; default), `us` (440 + 480 Hz, 2 s on / 4 s
    /// off) or `off`.
    #[serde(default)]
    pub ringback_tone: RingbackTone,
}

/// `ringback_tone` of a carrier trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RingbackTone {
    #[default]
    Etsi,
    Us,
    Off,
}

impl RingbackTone {
    pub fn plan(self) -> Option<crate::media::TonePlan> {
        match self {
            RingbackTone::Etsi => Some(crate::media::TonePlan::ETSI),
            RingbackTone::Us => Some(crate::media::TonePlan::US),
            RingbackTone::Off => None,
        }
    }
}

impl CarrierTrunk {
    /// The networks this trunk sends from, for signalling and media: its
    /// `allowed_source_cidrs` and the IP of its address when that is a literal.
    pub fn source_networks(&self) -> Vec<IpNet> {
        let mut networks = self.allowed_source_cidrs.clone();
        let literal = super::validate::check_host_port(&self.address)
            .ok()
            .and_then(|(host, _)| host.parse::<IpAddr>().ok());
        if let Some(ip) = literal {
            if !networks.iter().any(|n| n.contains(&ip)) {
                networks.push(IpNet::from(ip));
            }
        }
        networks
    }

    /// The transports this trunk's requests may arrive over.
    pub fn inbound_transports(&self) -> Vec<TransportKind> {
        match (&self.inbound_transports, self.transport) {
            (Some(list), _) => list.clone(),
            (None, TransportKind::Tls) => vec![TransportKind::Tls],
            (None, _) => vec![TransportKind::Udp, TransportKind::Tcp],
        }
    }
}

/// `q850_486_cause = 17` or `"strip"` / `"pass"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Q850Cause {
    Number(i64),
    Word(String),
}

impl Default for Q850Cause {
    fn default() -> Self {
        Q850Cause::Number(17)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseMap {
    #[serde(default)]
    pub to_carrier: Vec<StatusMapEntry>,
    #[serde(default)]
    pub to_teams: Vec<StatusMapEntry>,
}

/// `{ from = 480, to = 404 }`: the final status `from` the called side becomes `to`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusMapEntry {
    pub from: u16,
    pub to: u16,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    pub name: String,
    /// Derived-trunk FQDN: exactly one label under `sbc.base_fqdn` (doc 4.1).
    pub fqdn: String,
    /// E.164 numbers: `+4930123456`, ranges `+4930123400-+4930123499`, prefixes `+4930123*`.
    #[serde(default)]
    pub numbers: Vec<String>,
    /// Name of the `[[carrier_trunk]]` this tenant's PSTN calls use.
    pub carrier_trunk: String,
    /// Further trunks tried in order when the one before fails transiently (408, 5xx, timeout,
    /// connect failure) before the callee was alerted.
    #[serde(default)]
    pub failover_carrier_trunks: Vec<String>,
    #[serde(default)]
    pub max_concurrent_calls: Option<u32>,
    #[serde(default)]
    pub max_calls_per_second: Option<u32>,
    /// Local Media Optimization for this tenant's users (row 61; Microsoft's `BypassMode`).
    #[serde(default)]
    pub lmo: Option<Lmo>,
}

/// `[tenant.lmo]`: the SBC's part in Local Media Optimization (teams-direct-routing.md §3.8),
/// mirroring what the tenant set with `Set-CsOnlinePSTNGateway -BypassMode -ProxySBC`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lmo {
    /// `central`: Microsoft's SBC for the tenant (`-ProxySBC $null`), trunks behind it;
    /// `proxy`: also the proxy SBC of `downstream_sbcs` (their `-ProxySBC` is this FQDN),
    /// which Record-Routes with the same FQDN as its Contact.
    pub role: LmoRole,
    /// Where a PSTN -> Teams call's user is assumed to be until Microsoft tells: our offer
    /// carries the matching media address (Microsoft's own flows assume internal).
    #[serde(default = "default_lmo_inbound_location")]
    pub inbound_location: LmoLocation,
    /// Proxy role: the downstream SBCs registered with `-ProxySBC <this FQDN>`, each reached
    /// as a `[[carrier_trunk]]` (whose `allowed_source_cidrs` are its trusted addresses).
    /// Microsoft's INVITEs to `sip:...@<fqdn>` go to that trunk for this tenant.
    #[serde(default)]
    pub downstream_sbcs: Vec<DownstreamSbc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LmoRole {
    Central,
    Proxy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LmoLocation {
    Internal,
    External,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownstreamSbc {
    /// The downstream SBC's FQDN as paired in the tenant (Microsoft's Request-URI host).
    pub fqdn: String,
    /// The `[[carrier_trunk]]` that reaches it.
    pub carrier_trunk: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaInterface {
    /// Local address RTP sockets bind to.
    pub bind: IpAddr,
    /// Address written into SDP `c=`; defaults to `bind` (must not be unspecified then).
    #[serde(default)]
    pub advertised: Option<IpAddr>,
    pub port_min: u16,
    pub port_max: u16,
    /// `[media.teams]` only: the address offered to Teams users inside the corporate network
    /// on tenants with `[tenant.lmo]` (row 61); `advertised` is offered to the others. The
    /// Teams media sockets must receive on it (`bind` is it or unspecified).
    #[serde(default)]
    pub internal_address: Option<IpAddr>,
}

impl MediaInterface {
    /// Address for SDP `c=`: `advertised`, else `bind`, else (bind unspecified) the SBC's
    /// public address. `None` when nothing concrete is known (validation rejects that).
    pub fn advertised_address(&self, public_address: Option<IpAddr>) -> Option<IpAddr> {
        match self.advertised {
            Some(ip) => Some(ip),
            None if self.bind.is_unspecified() => public_address,
            None => Some(self.bind),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatchingMode {
    /// Send to the SDP address only (a carrier behind NAT gets no media back); media is
    /// taken from the SDP host and the trunk's networks, so a host there can inject.
    Off,
    /// Follow the source of the carrier's media at any time in the call (three packets in
    /// a row); any host in the trunk's networks can take the stream over mid-call.
    Learn,
    /// Follow the carrier's source only in the first packets after each offer/answer, then
    /// take media from that source alone (NAT friendly; the default).
    Strict,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSection {
    #[serde(default = "default_carrier_media")]
    pub carrier: MediaInterface,
    #[serde(default = "default_teams_media")]
    pub teams: MediaInterface,
    /// Forwarding worker threads; 0 = one per CPU.
    #[serde(default)]
    pub workers: usize,
    /// A call whose media has been silent this long is torn down.
    #[serde(default = "default_inactivity")]
    pub inactivity_timeout_seconds: u64,
    #[serde(default = "default_latching")]
    pub latching: LatchingMode,
    /// Send RTCP sender/receiver reports of our own on a leg whose far side sends none
    /// (row 46: Microsoft's call quality dashboard reads them). Default on.
    #[serde(default = "default_true")]
    pub rtcp_reports: bool,
}

impl Default for MediaSection {
    fn default() -> Self {
        MediaSection {
            carrier: default_carrier_media(),
            teams: default_teams_media(),
            workers: 0,
            inactivity_timeout_seconds: default_inactivity(),
            latching: default_latching(),
            rtcp_reports: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsSection {
    /// HTTP listener for /metrics, /healthz, /readyz.
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: SocketAddr,
    #[serde(default = "default_log_format")]
    pub log_format: LogFormat,
    /// `tracing` filter directive; `RUST_LOG` overrides it.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// On SIGTERM, calls in progress may go on this long before each gets BYE on both legs;
    /// new calls are refused meanwhile. Keep the supervisor's stop timeout above it.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout_seconds: u64,
    /// Text of a call's SIP kept in its trace (row 60): start lines and headers of every
    /// message of both legs, bodies cut at 1 KiB; the oldest messages but the first give
    /// way. 0 keeps no message (failed calls are still logged with Microsoft's diagnostics).
    #[serde(default = "default_call_trace_bytes")]
    pub call_trace_bytes: usize,
    /// Messages kept per call.
    #[serde(default = "default_call_trace_messages")]
    pub call_trace_messages: usize,
    /// How long an ended call's trace stays readable.
    #[serde(default = "default_call_trace_keep")]
    pub call_trace_keep_seconds: u64,
    /// Bytes of ended calls' traces kept altogether; the oldest go first beyond it.
    #[serde(default = "default_call_trace_kept_bytes")]
    pub call_trace_kept_bytes: usize,
    /// A failed call's trace is logged at most once per tenant per this interval (its
    /// failure line always is).
    #[serde(default = "default_call_trace_log_interval")]
    pub call_trace_log_interval_seconds: u64,
}

impl Default for OpsSection {
    fn default() -> Self {
        OpsSection {
            metrics_listen: default_metrics_listen(),
            log_format: default_log_format(),
            log_level: default_log_level(),
            drain_timeout_seconds: default_drain_timeout(),
            call_trace_bytes: default_call_trace_bytes(),
            call_trace_messages: default_call_trace_messages(),
            call_trace_keep_seconds: default_call_trace_keep(),
            call_trace_kept_bytes: default_call_trace_kept_bytes(),
            call_trace_log_interval_seconds: default_call_trace_log_interval(),
        }
    }
}

/// `[cdr]`: call detail records (one JSON record per call). On by default with the file sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdrSection {
    /// false: no record is built or written.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Records waiting for each sink; beyond it a call's record is dropped (counted), never
    /// waited for.
    #[serde(default = "default_cdr_queue_records")]
    pub queue_records: usize,
    #[serde(default)]
    pub file: CdrFile,
    /// Unset: no webhook.
    #[serde(default)]
    pub webhook: Option<CdrWebhook>,
}

impl Default for CdrSection {
    fn default() -> Self {
        CdrSection {
            enabled: true,
            queue_records: default_cdr_queue_records(),
            file: CdrFile::default(),
            webhook: None,
        }
    }
}

/// `[cdr.file]`: the rotating JSON-lines file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdrFile {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Relative to the configuration file's directory when relative.
    #[serde(default = "default_cdr_path")]
    pub path: PathBuf,
    /// Rotate before a batch takes the file past this size; 0: never by size.
    #[serde(default = "default_cdr_rotate_bytes")]
    pub rotate_bytes: u64,
    /// Rotate a file this old at its next record; 0: never by age.
    #[serde(default = "default_cdr_rotate_seconds")]
    pub rotate_seconds: u64,
    /// Rotated files kept (`path.1` newest ... `path.N`).
    #[serde(default = "default_cdr_keep_files")]
    pub keep_files: usize,
    #[serde(default = "default_cdr_fsync")]
    pub fsync: CdrFsync,
    /// `fsync = "interval"`: at most this long between a write and its fsync.
    #[serde(default = "default_cdr_fsync_interval_ms")]
    pub fsync_interval_ms: u64,
    /// Records written per batch at most.
    #[serde(default = "default_cdr_batch_records")]
    pub batch_records: usize,
}

impl Default for CdrFile {
    fn default() -> Self {
        CdrFile {
            enabled: true,
            path: default_cdr_path(),
            rotate_bytes: default_cdr_rotate_bytes(),
            rotate_seconds: default_cdr_rotate_seconds(),
            keep_files: default_cdr_keep_files(),
            fsync: default_cdr_fsync(),
            fsync_interval_ms: default_cdr_fsync_interval_ms(),
            batch_records: default_cdr_batch_records(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CdrFsync {
    /// After every batch written.
    Batch,
    /// At most `fsync_interval_ms` after a write.
    Interval,
    /// Left to the kernel.
    Never,
}

/// `[cdr.webhook]`: records POSTed as JSON arrays.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdrWebhook {
    /// `http://host[:port]/path` (plain HTTP only).
    pub url: String,
    #[serde(default = "default_webhook_batch_records")]
    pub batch_records: usize,
    /// A batch goes at the latest this long after its first record.
    #[serde(default = "default_webhook_batch_delay_ms")]
    pub batch_delay_ms: u64,
    /// Records held while POSTs fail; the oldest are dropped beyond it.
    #[serde(default = "default_webhook_buffer_records")]
    pub buffer_records: usize,
    /// POSTs of one batch at most (the first one included).
    #[serde(default = "default_webhook_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_webhook_retry_initial_ms")]
    pub retry_initial_ms: u64,
    #[serde(default = "default_webhook_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Connect and answer of one POST.
    #[serde(default = "default_webhook_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_cdr_queue_records() -> usize {
    10_000
}
fn default_cdr_path() -> PathBuf {
    PathBuf::from("cdr/calls.jsonl")
}
fn default_cdr_rotate_bytes() -> u64 {
    100 * 1024 * 1024
}
fn default_cdr_rotate_seconds() -> u64 {
    86_400
}
fn default_cdr_keep_files() -> usize {
    30
}
fn default_cdr_fsync() -> CdrFsync {
    CdrFsync::Interval
}
fn default_cdr_fsync_interval_ms() -> u64 {
    1000
}
fn default_cdr_batch_records() -> usize {
    256
}
fn default_webhook_batch_records() -> usize {
    100
}
fn default_webhook_batch_delay_ms() -> u64 {
    1000
}
fn default_webhook_buffer_records() -> usize {
    10_000
}
fn default_webhook_max_attempts() -> u32 {
    5
}
fn default_webhook_retry_initial_ms() -> u64 {
    500
}
fn default_webhook_retry_max_ms() -> u64 {
    30_000
}
fn default_webhook_timeout_ms() -> u64 {
    5000
}

fn default_drain_timeout() -> u64 {
    300
}

fn default_sip_signaling_port() -> u16 {
    5061
}
fn default_vendor() -> String {
    "teams-sbc".to_string()
}
fn default_model() -> String {
    "teams-sbc".to_string()
}
fn default_max_message_bytes() -> usize {
    65536
}
fn default_max_headers() -> usize {
    128
}
fn default_max_header_line_bytes() -> usize {
    8192
}
fn default_t1_ms() -> u64 {
    500
}
fn default_t2_ms() -> u64 {
    4000
}
fn default_t4_ms() -> u64 {
    5000
}
fn default_max_transactions_per_source() -> usize {
    crate::transaction::TransactionSettings::default().max_transactions_per_source
}
fn default_max_transactions_per_peer() -> usize {
    crate::transaction::TransactionSettings::default().max_transactions_per_peer
}
fn default_max_transactions() -> usize {
    100_000
}
fn default_max_connections_per_ip() -> usize {
    64
}
fn default_max_connections() -> usize {
    10_000
}
fn default_idle_timeout() -> u64 {
    180
}
fn default_keepalive() -> u64 {
    30
}
fn default_message_timeout() -> u64 {
    30
}
fn default_handshake_timeout() -> u64 {
    10
}
fn default_connect_timeout() -> u64 {
    5
}
fn default_max_connection_age() -> u64 {
    3600
}
fn default_roots() -> String {
    "microsoft".to_string()
}
fn default_true() -> bool {
    true
}
/// Microsoft's Direct Routing proxy names (commercial and GCC); GCC High and DoD configure
/// their own (`sip.pstnhub.gov.teams.microsoft.us`, `sip.pstnhub.dod.teams.microsoft.us`).
pub const MICROSOFT_PEER_NAMES: [&str; 4] = [
    "sip.pstnhub.microsoft.com",
    "sip2.pstnhub.microsoft.com",
    "sip3.pstnhub.microsoft.com",
    "sip-all.pstnhub.microsoft.com",
];

fn default_teams_peer_san() -> Vec<String> {
    MICROSOFT_PEER_NAMES.iter().map(|n| n.to_string()).collect()
}
fn default_tls() -> TransportKind {
    TransportKind::Tls
}
fn default_udp() -> TransportKind {
    TransportKind::Udp
}
fn default_early_media() -> String {
    "first_only".to_owned()
}
pub(crate) fn default_teams_proxies() -> Vec<TeamsProxy> {
    [
        "sip.pstnhub.microsoft.com:5061",
        "sip2.pstnhub.microsoft.com:5061",
        "sip3.pstnhub.microsoft.com:5061",
    ]
    .iter()
    .map(|a| TeamsProxy::Address(a.to_string()))
    .collect()
}
fn default_options_interval() -> u64 {
    60
}
fn default_session_expires() -> u64 {
    1800
}
fn default_failover_time() -> u64 {
    10
}
fn default_failover_codes() -> Vec<u16> {
    vec![408, 503, 504]
}
pub(crate) fn default_teams_cidrs() -> Vec<IpNet> {
    ["52.112.0.0/14", "52.120.0.0/14", "52.122.0.0/15"]
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect()
}
fn default_direction() -> TranslationDirection {
    TranslationDirection::Both
}
fn default_field() -> TranslationField {
    TranslationField::Called
}
fn default_codecs() -> Vec<String> {
    ["PCMA", "PCMU", "G722", "telephone-event"]
        .iter()
        .map(|c| c.to_string())
        .collect()
}
fn default_carrier_media() -> MediaInterface {
    MediaInterface {
        bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        advertised: None,
        port_min: 20000,
        port_max: 29999,
        internal_address: None,
    }
}
fn default_teams_media() -> MediaInterface {
    MediaInterface {
        bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        advertised: None,
        port_min: 30000,
        port_max: 39999,
        internal_address: None,
    }
}
fn default_lmo_inbound_location() -> LmoLocation {
    LmoLocation::Internal
}
fn default_inactivity() -> u64 {
    60
}
fn default_latching() -> LatchingMode {
    LatchingMode::Strict
}
/// `[admin]`: the admin API's own HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Loopback by default; any other address needs `token_file`.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// A file holding the bearer token every request must carry (`Authorization: Bearer
    /// <token>`); surrounding white space is ignored. Re-read on reload.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// The admin listener when `[admin]` gives none (and `teams-sbc ctl`'s default).
pub fn default_admin_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 9091))
}

fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 9090))
}
fn default_log_format() -> LogFormat {
    LogFormat::Text
}
fn default_log_level() -> String {
    "info".to_string()
}
fn default_call_trace_bytes() -> usize {
    crate::dispatch::TraceSettings::default().call_bytes
}
fn default_call_trace_messages() -> usize {
    crate::dispatch::TraceSettings::default().call_messages
}
fn default_call_trace_keep() -> u64 {
    crate::dispatch::TraceSettings::default().keep.as_secs()
}
fn default_call_trace_kept_bytes() -> usize {
    crate::dispatch::TraceSettings::default().kept_bytes
}
fn default_call_trace_log_interval() -> u64 {
    crate::dispatch::TraceSettings::default()
        .log_interval
        .as_secs()
}
