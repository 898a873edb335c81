//! SIP transport: UDP, TCP and TLS listeners (IPv4 and IPv6), outgoing connections with
//! reuse, RFC 3261 §18.2.2 response addressing, CRLF keep-alive (RFC 5626 §3.5.1), idle
//! timeouts and connection limits. TLS is rustls 1.2/1.3 with mutual authentication.
//!
//! # Use
//!
//! ```text
//! let (handle, mut inbound) = Transport::start(settings, &registry).await?;
//! while let Some(Inbound { message, source }) = inbound.recv().await {
//!     // a request: answer on the same path
//!     handle.send_response(&source, response_bytes).await?;
//! }
//! // a new request of ours (reuses an open connection to the same kind/addr/server_name):
//! handle.send(Destination { kind: TransportKind::Tls, addr, server_name: Some(fqdn) }, bytes).await?;
//! handle.reload_tls()?; // on SIGHUP: re-read the PEM files, close every TLS connection
//! // inbound mTLS from Microsoft's ranges: is the client certificate Microsoft's?
//! handle.peer_certificate_matches(source.connection?, "sip.pstnhub.microsoft.com");
//! ```
//!
//! Other calls: `local_addrs()`/`local_addr(kind)` (bound ports, port 0 in tests),
//! `connection_count()`, `close_connection(id)`, `shutdown()`. Metrics
//! ([`TransportMetrics`]): `sip_messages_received_total{transport,kind}`,
//! `sip_messages_sent_total{transport,kind}`, `sip_parse_errors_total{reason}`,
//! `tls_handshakes_total{direction,result}`, `connections_open{transport}`,
//! `connections_refused_total{transport}`, `sip_inbound_dropped_total`.
//!
//! # TLS suites
//!
//! rustls (ring provider) offers TLS 1.3 and, in TLS 1.2, ECDHE with AES-GCM and
//! ChaCha20-Poly1305 for RSA and ECDSA keys. Of the four suites Microsoft lists
//! (teams-direct-routing.md §1.3) the two GCM ones are offered and tested against OpenSSL;
//! the two CBC ones (`TLS_ECDHE_RSA_WITH_AES_{256_CBC_SHA384,128_CBC_SHA256}`) exist in no
//! rustls provider. Microsoft needs any one of the four. TLS 1.0/1.1 are never negotiated.
//!
//! # Behaviour the rest of the SBC can rely on
//!
//! * Every received message that parses is delivered as an [`Inbound`] with its [`Source`];
//!   requests arriving on a connection the peer opened (Microsoft always opens its own,
//!   teams-direct-routing.md §1.7) carry that connection's id, and
//!   [`TransportHandle::send_response`] answers on it while it is open; otherwise it opens a
//!   new connection to the Via `received`/sent-by address ([`addressing`]).
//! * Malformed input: a `400 <reason>` (or the status the parser names) goes back when the
//!   parser could read enough to build one, else the input is dropped; either way the error is
//!   counted in `sip_parse_errors_total{reason}` and logged at most once per
//!   [`TransportSettings::log_interval`] per source and reason. From a source outside
//!   [`TransportSettings::allowed_sources`] nothing goes back and nothing is logged
//!   (`sip_unknown_source_dropped_total{transport,stage="malformed"}`), and its stream
//!   connections are refused at accept (`stage="accept"`). A stream that cannot be framed
//!   any more is closed; nothing else is affected.
//! * Keep-alive: a double-CRLF ping on a stream gets a CRLF pong; on connections we opened we
//!   send a ping every [`TransportSettings::keepalive_interval`]. Whitespace-only datagrams are
//!   ignored.
//! * Limits: per-connection read buffer capped at the message size limit; TLS handshake
//!   timeout; idle timeout (nothing received and no message sent); a message started on a
//!   stream must complete within [`TransportSettings::message_timeout`] (slow-loris);
//!   inbound connections are limited per source IP and in total.
//! * Connections we opened are retired after [`TransportSettings::max_connection_age`]: no
//!   new requests use them, pings stop, and they close at their idle timeout, so responses
//!   still due on them arrive (teams-direct-routing.md §1.7, renew at least hourly).
//! * `reload_tls()` swaps the rustls configs atomically and closes every TLS connection so
//!   peers see the new certificate (teams-direct-routing.md §1.4, checklist row 6).

pub mod addressing;
mod connection;
mod handle;
mod limits;
mod listener;
pub mod metrics;
mod peer;
mod tls;
mod udp;
mod via_stamp;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub use handle::{NeedsConnect, NotSentNow, TransportHandle};
pub use metrics::TransportMetrics;
pub use peer::{MicrosoftRule, Peer, PeerRules, TrunkName, TrunkRule};
pub use tls::{missing_microsoft_roots, MICROSOFT_ROOTS};

use crate::sip;

/// A SIP transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    Udp,
    Tcp,
    Tls,
}

impl TransportKind {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            TransportKind::Udp => "udp",
            TransportKind::Tcp => "tcp",
            TransportKind::Tls => "tls",
        }
    }
    /// Token used in Via and `;transport=`.
    pub fn via_token(&self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
            TransportKind::Tls => "TLS",
        }
    }
    /// RFC 3261 §18.1: 5060 for UDP/TCP, 5061 for TLS.
    pub fn default_port(&self) -> u16 {
        match self {
            TransportKind::Tls => 5061,
            _ => 5060,
        }
    }
    pub fn is_stream(&self) -> bool {
        !matches!(self, TransportKind::Udp)
    }
}

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub kind: TransportKind,
    /// IPv4 or IPv6 (IPv6 sockets are v6-only, so `0.0.0.0:p` and `[::]:p` can both bind).
    pub bind: SocketAddr,
}

/// Trust anchors for verifying peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootStoreSource {
    /// The roots Microsoft names for Direct Routing, built in ([`MICROSOFT_ROOTS`]).
    Microsoft,
    /// Mozilla's set from `webpki-roots` (includes DigiCert Global Root G2).
    WebPki,
    /// Roots from a PEM file (for Microsoft's published list, or a test CA).
    PemFile(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Leaf first, then intermediates (sent whole, teams-direct-routing.md §1.4 / row 3).
    pub cert_chain_pem: PathBuf,
    pub key_pem: PathBuf,
    pub roots: RootStoreSource,
    /// Refuse inbound TLS clients that present no (valid) certificate. When false, a
    /// certificate is still requested and, if offered, verified.
    pub require_client_cert: bool,
    /// Extra names a server we connect to must prove (teams-direct-routing.md §1.5: check
    /// for `sip.pstnhub.microsoft.com`). When the destination's server name is one of these
    /// or a sibling of one (`sip2.pstnhub.microsoft.com`), the certificate must be valid for
    /// at least one of them in addition to the server name. Other destinations (carrier TLS
    /// trunks) are verified against their own server name only.
    pub required_peer_sans: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct TransportSettings {
    pub listeners: Vec<ListenerSpec>,
    /// Needed for TLS listeners and for outgoing TLS.
    pub tls: Option<TlsSettings>,
    pub limits: sip::Limits,
    /// Inbound stream connections from one source IP.
    pub max_connections_per_ip: usize,
    /// Inbound stream connections in total.
    pub max_connections: usize,
    /// A stream connection on which nothing was received and no message sent for this long
    /// is closed.
    pub idle_timeout: Duration,
    /// CRLF ping interval on connections we opened; `None` disables pings.
    pub keepalive_interval: Option<Duration>,
    /// A message whose first byte arrived must be complete within this time.
    pub message_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub connect_timeout: Duration,
    /// Connections we opened stop taking new requests after this age; `None`: never.
    pub max_connection_age: Option<Duration>,
    /// Capacity of the queue of received messages handed to the application.
    pub inbound_queue: usize,
    /// Capacity of each connection's outgoing queue.
    pub connection_queue: usize,
    /// At most one warning per source IP and reason per interval.
    pub log_interval: Duration,
    /// Who may speak to us (row 11 and the certificate rules of rows 4 and 7): datagrams
    /// and connections matching no peer are dropped before parsing, without an answer.
    /// `None`: everyone is heard, as an unidentified peer (a bare transport, tests).
    pub peers: Option<PeerRules>,
    /// Local address of the TCP/TLS connections we open (`[sbc] bind_address`), so they leave
    /// from the address the peers allow (their ACLs, Microsoft's view of the SBC). Used for
    /// destinations of the same IP family; `None`: the OS picks.
    pub outbound_bind: Option<IpAddr>,
}

impl Default for TransportSettings {
    fn default() -> Self {
        TransportSettings {
            listeners: Vec::new(),
            tls: None,
            limits: sip::Limits::default(),
            max_connections_per_ip: 64,
            max_connections: 10_000,
            // Microsoft closes its idle connections after 2 minutes (§1.7); outlive that.
            idle_timeout: Duration::from_secs(180),
            keepalive_interval: Some(Duration::from_secs(30)),
            message_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_connection_age: Some(Duration::from_secs(3600)),
            inbound_queue: 4096,
            connection_queue: 1024,
            log_interval: Duration::from_secs(60),
            peers: None,
            outbound_bind: None,
        }
    }
}

/// Identifies one stream connection for the life of the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// Where a received message came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub kind: TransportKind,
    /// Our address the message arrived on.
    pub local: SocketAddr,
    /// The peer address (for UDP, the datagram's source).
    pub remote: SocketAddr,
    /// The stream connection, for TCP/TLS.
    pub connection: Option<ConnectionId>,
    /// Who sent it, decided by transport, certificate and address before parsing; `None`
    /// only on a transport run without peer rules.
    pub peer: Option<Peer>,
}

/// A received message that parsed.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub message: sip::Message,
    pub source: Source,
}

/// Target of a new outgoing message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    pub kind: TransportKind,
    pub addr: SocketAddr,
    /// TLS: SNI and the name the peer certificate must be valid for (e.g.
    /// `sip.pstnhub.microsoft.com`). `None`: no SNI, the certificate must cover the IP.
    pub server_name: Option<String>,
}

/// How a message left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub connection: Option<ConnectionId>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("binding {kind:?} on {addr}: {source}")]
    Bind {
        kind: TransportKind,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("TLS is not configured")]
    NoTlsConfig,
    #[error("no {0:?} socket for this address family")]
    NoSocket(TransportKind),
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0} is not a configured peer on this transport")]
    UnknownPeer(SocketAddr),
    #[error("connecting to {0}: timed out")]
    ConnectTimeout(SocketAddr),
    #[error("TLS handshake with {addr}: {reason}")]
    Handshake { addr: SocketAddr, reason: String },
    #[error("TLS handshake with {0}: timed out")]
    HandshakeTimeout(SocketAddr),
    #[error("sending to {addr}: {source}")]
    Send {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("connection queue full or closed")]
    ConnectionUnavailable,
    #[error("response cannot be addressed: {0}")]
    BadResponse(String),
    #[error("message of {0} bytes exceeds the size limit")]
    TooLarge(usize),
    #[error("transport is shut down")]
    Shutdown,
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Entry point.
pub struct Transport;

impl Transport {
    /// Bind every listener, start their tasks and return the handle and the queue of received
    /// messages. Must be called inside a tokio runtime.
    pub async fn start(
        settings: TransportSettings,
        registry: &prometheus::Registry,
    ) -> Result<(TransportHandle, tokio::sync::mpsc::Receiver<Inbound>), TransportError> {
        handle::start(settings, registry).await
    }
}

/// Resolves once the transport is shut down (the watch guard is dropped before returning, so
/// the future stays `Send`).
async fn wait_shutdown(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|down| *down).await;
}
