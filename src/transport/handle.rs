//! Shared transport state and the public [`TransportHandle`].

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use dashmap::DashMap;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::timeout;

use super::connection::{self, ConnectionSetup};
use super::limits::ConnectionLimiter;
use super::metrics::{self, TransportMetrics};
use super::peer::{Peer, PeerRules};
use super::tls::{self, TlsConfigs};
use super::{
    addressing, listener, udp, ConnectionId, Destination, Inbound, Sent, Source, TlsSettings,
    TransportError, TransportKind, TransportSettings,
};
use crate::sip::{self, Message};

/// Key under which a connection we opened is found for reuse.
pub(crate) type ConnKey = Destination;

/// What the rest of the transport knows about a live stream connection.
pub(crate) struct ConnEntry {
    pub(crate) kind: TransportKind,
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    pub(crate) outbound_key: Option<ConnKey>,
    pub(crate) queue: mpsc::Sender<Bytes>,
    pub(crate) close: Arc<Notify>,
    pub(crate) peer_cert: Option<rustls::pki_types::CertificateDer<'static>>,
}

/// A sender that matches no peer: dropped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stranger;

/// One warning per source and reason per interval, in constant time and bounded memory.
type SourceLog = crate::ops::RateLimitedLog<(IpAddr, &'static str)>;

pub(crate) struct Inner {
    pub(crate) settings: TransportSettings,
    pub(crate) metrics: TransportMetrics,
    pub(crate) inbound: mpsc::Sender<Inbound>,
    pub(crate) udp_sockets: Vec<Arc<UdpSocket>>,
    pub(crate) local_addrs: Vec<(TransportKind, SocketAddr)>,
    pub(crate) connections: DashMap<ConnectionId, ConnEntry>,
    pub(crate) outbound: DashMap<ConnKey, ConnectionId>,
    connect_locks: DashMap<ConnKey, Arc<tokio::sync::Mutex<()>>>,
    pub(crate) limiter: Mutex<ConnectionLimiter>,
    log_limiter: SourceLog,
    /// Who may speak to us (`None`: everyone, as an unidentified peer; bare transports).
    peers: ArcSwapOption<PeerRules>,
    /// Where the TLS configs come from (replaced by a configuration reload).
    tls_settings: ArcSwapOption<TlsSettings>,
    pub(crate) tls: ArcSwapOption<TlsConfigs>,
    next_id: AtomicU64,
    pub(crate) shutdown: watch::Sender<bool>,
}

impl Inner {
    pub(crate) fn next_connection_id(&self) -> ConnectionId {
        ConnectionId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn stranger(&self, kind: TransportKind, stage: &'static str) -> Stranger {
        self.metrics
            .unknown_source_dropped
            .with_label_values(&[kind.label(), stage])
            .inc();
        Stranger
    }

    /// The peer behind a datagram or plain TCP connection from `ip`, decided before anything
    /// is read; a stranger is counted under `stage`.
    pub(crate) fn identify_plain(
        &self,
        kind: TransportKind,
        ip: IpAddr,
        stage: &'static str,
    ) -> Result<Option<Peer>, Stranger> {
        match self.peers.load().as_deref() {
            None => Ok(None),
            Some(rules) => match rules.classify_plain(kind, ip) {
                Some(peer) => Ok(Some(peer)),
                None => Err(self.stranger(kind, stage)),
            },
        }
    }

    /// Whether a TLS handshake with `ip` is worth starting.
    pub(crate) fn may_be_tls_peer(&self, ip: IpAddr) -> bool {
        let admitted = self
            .peers
            .load()
            .as_deref()
            .is_none_or(|rules| rules.may_be_tls_peer(ip));
        if !admitted {
            self.stranger(TransportKind::Tls, "accept");
        }
        admitted
    }

    /// The peer behind a TLS connection once its certificate is known.
    pub(crate) fn identify_tls(
        &self,
        ip: IpAddr,
        cert: Option<&rustls::pki_types::CertificateDer<'_>>,
    ) -> Result<Option<Peer>, Stranger> {
        match self.peers.load().as_deref() {
            None => Ok(None),
            Some(rules) => match rules.classify_tls(ip, cert) {
                Some(peer) => Ok(Some(peer)),
                None => {
                    self.warn_limited(
                        ip,
                        "unrecognised TLS peer",
                        "certificate names no peer for this source address",
                    );
                    Err(self.stranger(TransportKind::Tls, "certificate"))
                }
            },
        }
    }

    /// Rate-limited warning about bad input from `source`.
    pub(crate) fn warn_limited(&self, source: IpAddr, reason: &'static str, detail: &str) {
        if let Some(suppressed) = self.log_limiter.check(&(source, reason), Instant::now()) {
            tracing::warn!(%source, reason, detail, suppressed, "rejected SIP input (further ones from this source and reason suppressed for a while)");
        }
    }

    /// Parse one framed message or datagram. `Ok` carries the delivery; `Err` the error
    /// response to send back, if one can be built.
    pub(crate) fn parse_received(
        &self,
        raw: Bytes,
        source: &Source,
    ) -> Result<Inbound, Option<Bytes>> {
        match Message::parse(raw.clone(), &self.settings.limits) {
            Ok(message) => {
                let message =
                    super::via_stamp::stamp_top_via(&message, source.remote, &self.settings.limits)
                        .unwrap_or(message);
                self.metrics
                    .messages_received
                    .with_label_values(&[source.kind.label(), metrics::message_kind(&message)])
                    .inc();
                Ok(Inbound {
                    message,
                    source: source.clone(),
                })
            }
            Err(error) => {
                let reason = error.kind.reason();
                self.metrics.parse_errors.with_label_values(&[reason]).inc();
                self.warn_limited(source.remote.ip(), reason, &error.to_string());
                let response = sip::ResponseBuilder::error_for_raw(
                    &raw,
                    error.kind.status(),
                    &error.response_reason(),
                );
                if let Some(response) = &response {
                    self.count_sent(source.kind, response);
                }
                Err(response)
            }
        }
    }

    pub(crate) fn count_sent(&self, kind: TransportKind, bytes: &[u8]) {
        self.metrics
            .messages_sent
            .with_label_values(&[kind.label(), metrics::wire_kind(bytes)])
            .inc();
    }

    fn udp_socket_for(
        &self,
        local: Option<SocketAddr>,
        peer: SocketAddr,
    ) -> Option<&Arc<UdpSocket>> {
        let same = |s: &&Arc<UdpSocket>| s.local_addr().ok() == local;
        let family =
            |s: &&Arc<UdpSocket>| s.local_addr().is_ok_and(|a| a.is_ipv4() == peer.is_ipv4());
        self.udp_sockets
            .iter()
            .find(same)
            .or_else(|| self.udp_sockets.iter().find(family))
    }

    async fn send_udp(
        &self,
        local: Option<SocketAddr>,
        peer: SocketAddr,
        msg: &Bytes,
    ) -> Result<Sent, TransportError> {
        let socket = self
            .udp_socket_for(local, peer)
            .ok_or(TransportError::NoSocket(TransportKind::Udp))?;
        socket
            .send_to(msg, peer)
            .await
            .map_err(|source| TransportError::Send { addr: peer, source })?;
        self.count_sent(TransportKind::Udp, msg);
        let local = socket
            .local_addr()
            .map_err(|source| TransportError::Send { addr: peer, source })?;
        Ok(Sent {
            local,
            remote: peer,
            connection: None,
        })
    }

    /// Queue `msg` on an open connection.
    fn enqueue(&self, id: ConnectionId, msg: &Bytes) -> Result<Sent, TransportError> {
        let entry = self
            .connections
            .get(&id)
            .ok_or(TransportError::ConnectionUnavailable)?;
        entry
            .queue
            .try_send(msg.clone())
            .map_err(|_| TransportError::ConnectionUnavailable)?;
        self.count_sent(entry.kind, msg);
        Ok(Sent {
            local: entry.local,
            remote: entry.remote,
            connection: Some(id),
        })
    }

    async fn send_stream(
        self: &Arc<Self>,
        dest: Destination,
        msg: Bytes,
    ) -> Result<Sent, TransportError> {
        if let Some(sent) = self.try_reuse(&dest, &msg) {
            return Ok(sent);
        }
        let lock = self
            .connect_locks
            .entry(dest.clone())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
            .clone();
        let result = {
            let _guard = lock.lock().await;
            // Another sender may have connected while we waited.
            match self.try_reuse(&dest, &msg) {
                Some(sent) => Ok(Err(sent)),
                None => self.connect(&dest).await.map(Ok),
            }
        };
        drop(lock);
        // Forget the lock once nobody else holds it, so the map does not grow with every
        // destination ever used.
        self.connect_locks
            .remove_if(&dest, |_, l| Arc::strong_count(l) == 1);
        match result? {
            Ok(id) => self.enqueue(id, &msg),
            Err(reused) => Ok(reused),
        }
    }

    fn try_reuse(&self, dest: &Destination, msg: &Bytes) -> Option<Sent> {
        let id = *self.outbound.get(dest)?;
        match self.enqueue(id, msg) {
            Ok(sent) => Some(sent),
            Err(_) => {
                self.outbound.remove_if(dest, |_, v| *v == id);
                None
            }
        }
    }

    /// A TCP connection to `addr`, from `outbound_bind` when it is of the same family.
    async fn open_tcp(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        let Some(local) = self
            .settings
            .outbound_bind
            .filter(|ip| ip.is_ipv4() == addr.is_ipv4())
        else {
            return TcpStream::connect(addr).await;
        };
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(local, 0))?;
        socket.connect(addr).await
    }

    /// Open a connection to `dest` and register it for reuse.
    async fn connect(self: &Arc<Self>, dest: &Destination) -> Result<ConnectionId, TransportError> {
        if *self.shutdown.borrow() {
            return Err(TransportError::Shutdown);
        }
        let addr = dest.addr;
        let tcp = match timeout(self.settings.connect_timeout, self.open_tcp(addr)).await {
            Err(_) => return Err(TransportError::ConnectTimeout(addr)),
            Ok(Err(source)) => return Err(TransportError::Connect { addr, source }),
            Ok(Ok(tcp)) => tcp,
        };
        let _ = tcp.set_nodelay(true);
        let local = tcp
            .local_addr()
            .map_err(|source| TransportError::Connect { addr, source })?;
        let mut setup = ConnectionSetup {
            kind: dest.kind,
            local,
            remote: addr,
            outbound_key: Some(dest.clone()),
            permit: None,
            peer_cert: None,
            peer: None,
        };
        match dest.kind {
            TransportKind::Tcp => {
                setup.peer = self
                    .identify_plain(TransportKind::Tcp, addr.ip(), "connect")
                    .map_err(|Stranger| TransportError::UnknownPeer(addr))?;
                Ok(connection::spawn(self.clone(), tcp, setup))
            }
            TransportKind::Tls => {
                let configs = self.tls.load_full().ok_or(TransportError::NoTlsConfig)?;
                let server_name =
                    match &dest.server_name {
                        Some(name) => rustls::pki_types::ServerName::try_from(name.clone())
                            .map_err(|_| TransportError::Handshake {
                                addr,
                                reason: format!("{name:?} is not a valid server name"),
                            })?,
                        None => rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
                    };
                let connector = tokio_rustls::TlsConnector::from(configs.client.clone());
                let handshake = timeout(
                    self.settings.tls_handshake_timeout,
                    connector.connect(server_name, tcp),
                )
                .await;
                let outcome = match &handshake {
                    Err(_) => "timeout",
                    Ok(Err(_)) => "error",
                    Ok(Ok(_)) => "ok",
                };
                self.metrics
                    .tls_handshakes
                    .with_label_values(&["outbound", outcome])
                    .inc();
                match handshake {
                    Err(_) => Err(TransportError::HandshakeTimeout(addr)),
                    Ok(Err(e)) => Err(TransportError::Handshake {
                        addr,
                        reason: e.to_string(),
                    }),
                    Ok(Ok(stream)) => {
                        setup.peer_cert = connection::peer_end_entity(stream.get_ref().1);
                        setup.peer = self
                            .identify_tls(addr.ip(), setup.peer_cert.as_ref())
                            .map_err(|Stranger| TransportError::UnknownPeer(addr))?;
                        Ok(connection::spawn(self.clone(), stream, setup))
                    }
                }
            }
            TransportKind::Udp => Err(TransportError::NoSocket(TransportKind::Udp)),
        }
    }
}

/// Why [`TransportHandle::send_response_without_connecting`] did not send.
#[derive(Debug)]
pub enum NotSentNow {
    /// A new stream connection is needed; hand this to
    /// [`TransportHandle::send_after_connect`].
    NeedsConnect(NeedsConnect),
    Failed(TransportError),
}

/// An answer waiting for a connection to the Via target of its request.
#[derive(Debug)]
pub struct NeedsConnect {
    dest: Destination,
    msg: Bytes,
}

impl NeedsConnect {
    /// Where the connection would go.
    pub fn destination(&self) -> &Destination {
        &self.dest
    }
}

/// Cheap to clone; every clone drives the same transport.
#[derive(Clone)]
pub struct TransportHandle {
    pub(crate) inner: Arc<Inner>,
}

impl TransportHandle {
    /// Send a response to a request received from `source` (RFC 3261 §18.2.2): UDP to the Via
    /// `received`/`rport`/sent-by target from the socket the request arrived on; TCP/TLS on the
    /// request's connection while it is open, else on a (new or reused) connection to the Via
    /// `received`/sent-by address. May wait up to the connect (and handshake) timeout.
    pub async fn send_response(&self, source: &Source, msg: Bytes) -> Result<Sent, TransportError> {
        match self.send_response_without_connecting(source, msg).await {
            Ok(sent) => Ok(sent),
            Err(NotSentNow::Failed(error)) => Err(error),
            Err(NotSentNow::NeedsConnect(pending)) => self.send_after_connect(pending).await,
        }
    }

    /// [`send_response`](Self::send_response) except that it never opens a connection: UDP,
    /// the request's still-open connection, or an already open connection to the Via target.
    /// When a new connection is needed the answer comes back as [`NotSentNow::NeedsConnect`]
    /// for [`send_after_connect`](Self::send_after_connect), so a caller sending answers in
    /// order is never held up by a connect to an address that does not reply.
    pub async fn send_response_without_connecting(
        &self,
        source: &Source,
        msg: Bytes,
    ) -> Result<Sent, NotSentNow> {
        self.check_size(&msg).map_err(NotSentNow::Failed)?;
        if source.kind.is_stream() {
            if let Some(id) = source.connection {
                if let Ok(sent) = self.inner.enqueue(id, &msg) {
                    return Ok(sent);
                }
            }
        }
        let via = Message::parse(msg.clone(), &self.inner.settings.limits)
            .and_then(|m| m.top_via())
            .map_err(|e| NotSentNow::Failed(TransportError::BadResponse(e.to_string())))?;
        match source.kind {
            TransportKind::Udp => {
                let target = addressing::udp_response_target(source.remote, &via);
                self.inner
                    .send_udp(Some(source.local), target, &msg)
                    .await
                    .map_err(NotSentNow::Failed)
            }
            kind => {
                let (addr, server_name) =
                    addressing::stream_fallback_target(kind, source.remote, &via);
                let dest = Destination {
                    kind,
                    addr,
                    server_name,
                };
                match self.inner.try_reuse(&dest, &msg) {
                    Some(sent) => Ok(sent),
                    None => Err(NotSentNow::NeedsConnect(NeedsConnect { dest, msg })),
                }
            }
        }
    }

    /// Send an answer [`send_response_without_connecting`](Self::send_response_without_connecting)
    /// could not: on a connection opened (or, if another sender was quicker, reused) to the
    /// Via target, within the connect and handshake timeouts.
    pub async fn send_after_connect(&self, pending: NeedsConnect) -> Result<Sent, TransportError> {
        self.inner.send_stream(pending.dest, pending.msg).await
    }

    /// Send a new message (request, or a response the caller addressed itself). Streams: an
    /// open connection we made to the same (kind, addr, server_name) is reused, else one is
    /// opened within the connect and handshake timeouts; an error lets the caller fail over.
    pub async fn send(&self, dest: Destination, msg: Bytes) -> Result<Sent, TransportError> {
        self.check_size(&msg)?;
        if *self.inner.shutdown.borrow() {
            return Err(TransportError::Shutdown);
        }
        match dest.kind {
            TransportKind::Udp => self.inner.send_udp(None, dest.addr, &msg).await,
            _ => self.inner.send_stream(dest, msg).await,
        }
    }

    fn check_size(&self, msg: &Bytes) -> Result<(), TransportError> {
        if msg.len() > self.inner.settings.limits.max_message_bytes {
            return Err(TransportError::TooLarge(msg.len()));
        }
        Ok(())
    }

    /// Bound listener addresses (with the real port when 0 was asked for).
    pub fn local_addrs(&self) -> Vec<(TransportKind, SocketAddr)> {
        self.inner.local_addrs.clone()
    }

    /// First bound address of a kind.
    pub fn local_addr(&self, kind: TransportKind) -> Option<SocketAddr> {
        self.inner
            .local_addrs
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, a)| *a)
    }

    /// Re-read the certificate, key and roots; on success swap the configs and close every
    /// TLS connection (both directions) so peers reconnect and see the new certificate. On
    /// error the old configuration stays in force.
    pub fn reload_tls(&self) -> Result<(), TransportError> {
        let settings = self
            .inner
            .tls_settings
            .load_full()
            .ok_or(TransportError::NoTlsConfig)?;
        let configs = tls::load(&settings)?;
        self.inner.tls.store(Some(Arc::new(configs)));
        self.close_tls_connections();
        Ok(())
    }

    /// The peer rules in force (`None` on a bare transport).
    pub fn peer_rules(&self) -> Option<Arc<PeerRules>> {
        self.inner.peers.load_full()
    }

    /// Apply a reloaded configuration's peer rules and TLS settings. Everything is loaded
    /// first, so an error changes nothing. When the certificate chain we present changed,
    /// every TLS connection is closed so peers see the new one (row 6); calls do not depend
    /// on connections (our requests to Microsoft open new ones), so none is cut. Returns
    /// whether the chain changed.
    pub fn reconfigure(
        &self,
        peers: Option<PeerRules>,
        tls_settings: Option<TlsSettings>,
    ) -> Result<bool, TransportError> {
        let configs = match &tls_settings {
            Some(settings) => Some(Arc::new(tls::load(settings)?)),
            None if self.local_addr(TransportKind::Tls).is_some() => {
                return Err(TransportError::NoTlsConfig)
            }
            None => None,
        };
        let changed = match (self.inner.tls.load().as_deref(), configs.as_deref()) {
            (Some(old), Some(new)) => old.chain != new.chain,
            (None, None) => false,
            _ => true,
        };
        self.inner.peers.store(peers.map(Arc::new));
        self.inner.tls_settings.store(tls_settings.map(Arc::new));
        self.inner.tls.store(configs);
        if changed {
            self.close_tls_connections();
        }
        Ok(changed)
    }

    fn close_tls_connections(&self) {
        let mut closed = 0usize;
        for entry in self.inner.connections.iter() {
            if entry.kind == TransportKind::Tls {
                if let Some(key) = &entry.outbound_key {
                    self.inner.outbound.remove_if(key, |_, v| v == entry.key());
                }
                entry.close.notify_one();
                closed += 1;
            }
        }
        tracing::info!(closed, "TLS configuration reloaded; TLS connections closed");
    }

    /// Whether the certificate the peer of a TLS connection presented (as server, or as client
    /// on an inbound connection) is valid for `name` (RFC 6125 matching, wildcards one label).
    /// The chain itself was verified during the handshake. `None`: no such connection, not
    /// TLS, no certificate presented, or `name` is not a DNS name. Lets the application require
    /// `sip.pstnhub.microsoft.com` on inbound connections from Microsoft's address ranges
    /// (teams-direct-routing.md §1.5, checklist row 7).
    pub fn peer_certificate_matches(&self, id: ConnectionId, name: &str) -> Option<bool> {
        let entry = self.inner.connections.get(&id)?;
        let cert = entry.peer_cert.as_ref()?;
        let parsed = rustls::server::ParsedCertificate::try_from(cert).ok()?;
        let name = rustls::pki_types::ServerName::try_from(name).ok()?;
        Some(rustls::client::verify_server_name(&parsed, &name).is_ok())
    }

    /// Open stream connections (both directions).
    pub fn connection_count(&self) -> usize {
        self.inner.connections.len()
    }

    /// Close one connection (e.g. after a peer misbehaved at the SIP level).
    pub fn close_connection(&self, id: ConnectionId) {
        if let Some(entry) = self.inner.connections.get(&id) {
            entry.close.notify_one();
        }
    }

    /// Stop listening and close every connection. Idempotent.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }
}

pub(crate) async fn start(
    settings: TransportSettings,
    registry: &prometheus::Registry,
) -> Result<(TransportHandle, mpsc::Receiver<Inbound>), TransportError> {
    let metrics = TransportMetrics::register(registry)?;
    let tls = match &settings.tls {
        Some(tls_settings) => Some(Arc::new(tls::load(tls_settings)?)),
        None => None,
    };
    if tls.is_none()
        && settings
            .listeners
            .iter()
            .any(|l| l.kind == TransportKind::Tls)
    {
        return Err(TransportError::NoTlsConfig);
    }
    let mut udp_sockets = Vec::new();
    let mut stream_listeners = Vec::new();
    let mut local_addrs = Vec::new();
    for spec in &settings.listeners {
        match spec.kind {
            TransportKind::Udp => {
                let socket = listener::bind_udp(spec.bind)?;
                let addr = socket.local_addr().map_err(|source| TransportError::Bind {
                    kind: spec.kind,
                    addr: spec.bind,
                    source,
                })?;
                local_addrs.push((spec.kind, addr));
                udp_sockets.push(Arc::new(socket));
            }
            kind => {
                let tcp = listener::bind_tcp(spec.bind)?;
                let addr = tcp.local_addr().map_err(|source| TransportError::Bind {
                    kind,
                    addr: spec.bind,
                    source,
                })?;
                local_addrs.push((kind, addr));
                stream_listeners.push((kind, tcp));
            }
        }
    }
    let (inbound, inbound_rx) = mpsc::channel(settings.inbound_queue.max(1));
    let (shutdown, _) = watch::channel(false);
    let inner = Arc::new(Inner {
        limiter: Mutex::new(ConnectionLimiter::new(
            settings.max_connections_per_ip,
            settings.max_connections,
        )),
        log_limiter: SourceLog::new(settings.log_interval),
        peers: ArcSwapOption::new(settings.peers.clone().map(Arc::new)),
        tls_settings: ArcSwapOption::new(settings.tls.clone().map(Arc::new)),
        settings,
        metrics,
        inbound,
        udp_sockets,
        local_addrs,
        connections: DashMap::new(),
        outbound: DashMap::new(),
        connect_locks: DashMap::new(),
        tls: ArcSwapOption::new(tls),
        next_id: AtomicU64::new(1),
        shutdown,
    });
    for socket in &inner.udp_sockets {
        tokio::spawn(udp::run(inner.clone(), socket.clone()));
    }
    for (kind, tcp) in stream_listeners {
        tokio::spawn(listener::run_accept(inner.clone(), kind, tcp));
    }
    Ok((TransportHandle { inner }, inbound_rx))
}
