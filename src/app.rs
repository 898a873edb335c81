//! Wiring of transports, transactions, health and ops into a running SBC.
//!
//! One task (the SIP core) owns the [`TransactionLayer`]: it is driven by received messages,
//! by OPTIONS pings the pingers ask it to send, and by the layer's own `poll_timeout`. Sends
//! happen outside it: responses go through one ordered queue, new requests each in their own
//! task (a TLS connect must not stall everything else), and failures come back as commands.
//!
//! Until the call layer exists, requests other than OPTIONS get a clear final answer: INVITE
//! 503, in-dialog requests 481, recognised but unsupported methods 405, unknown methods 501.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use prometheus::Registry;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{mapping, Config, Loaded, SourceAcl};
use crate::health::{
    self, DnsResolver, HealthMetrics, OptionsPinger, OptionsSender, PeerHealth, PeerTarget,
    PingOutcome, SbcIdentity, SipTransport,
};
use crate::ops::{OpsServer, ProcessMetrics, RateLimitedLog, Readiness};
use crate::sip::{self, HeaderName, Message, Method, ResponseBuilder};
use crate::transaction::{new_tag, Output, TransactionLayer, TransactionMetrics, TuEvent, TxId};
use crate::transport::{Destination, Inbound, Source, Transport, TransportHandle, TransportKind};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("metrics registration: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("ops endpoint on {addr}: {source}")]
    Ops {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("transport: {0}")]
    Transport(#[from] crate::transport::TransportError),
    #[error("DNS resolver: {0}")]
    Dns(String),
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
}

/// A started SBC. Dropping it does not stop it; call [`Running::shutdown`].
pub struct Running {
    pub registry: Registry,
    pub readiness: Arc<Readiness>,
    pub ops_addr: SocketAddr,
    pub transport: TransportHandle,
    ops: OpsServer,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    pub async fn shutdown(self) {
        self.transport.shutdown();
        for task in &self.tasks {
            task.abort();
        }
        self.ops.stop().await;
    }
}

/// Run until SIGTERM or SIGINT; SIGHUP reloads the TLS certificate and key.
pub async fn run(loaded: Loaded) -> Result<(), AppError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).map_err(AppError::Signal)?;
    let mut term = signal(SignalKind::terminate()).map_err(AppError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(AppError::Signal)?;
    let running = start(&loaded).await?;
    tracing::info!(
        listeners = ?running.transport.local_addrs(),
        ops = %running.ops_addr,
        tenants = loaded.config.tenants.len(),
        trunks = loaded.config.carrier_trunks.len(),
        "teams-sbc running"
    );
    loop {
        tokio::select! {
            _ = hup.recv() => match running.transport.reload_tls() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                Err(e) => tracing::error!(error = %e, "SIGHUP: TLS reload failed; old certificate kept"),
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down");
    running.readiness.set_listeners_bound(false);
    running.shutdown().await;
    Ok(())
}

/// Start ops, transport, the SIP core and the pingers.
pub async fn start(loaded: &Loaded) -> Result<Running, AppError> {
    let config = &loaded.config;
    let registry = Registry::new();
    ProcessMetrics::register(&registry)?;
    let readiness = Arc::new(Readiness::new());
    let ops = OpsServer::start(
        config.ops.metrics_listen,
        registry.clone(),
        readiness.clone(),
    )
    .await
    .map_err(|source| AppError::Ops {
        addr: config.ops.metrics_listen,
        source,
    })?;
    let (transport, inbound) =
        match Transport::start(mapping::transport_settings(config), &registry).await {
            Ok(started) => started,
            Err(e) => {
                ops.stop().await;
                return Err(e.into());
            }
        };
    readiness.set_listeners_bound(true);

    let identity = IdentityTemplate::new(loaded, &transport);
    let (commands_tx, commands_rx) = mpsc::channel(1024);
    let core = SipCore {
        layer: TransactionLayer::new(
            mapping::transaction_settings(config),
            TransactionMetrics::register(&registry)?,
        ),
        transport: transport.clone(),
        identity: identity.clone(),
        pending_pings: HashMap::new(),
        responses: spawn_response_sender(transport.clone(), commands_tx.clone()),
        commands_tx: commands_tx.clone(),
    };
    let filter = SourceFilter {
        acl: SourceAcl::new(config),
        rejected: AppMetrics::register(&registry)?.rejected_requests,
    };
    let mut tasks = vec![tokio::spawn(core.run(inbound, commands_rx, filter))];
    tasks.extend(start_pingers(
        config,
        &identity,
        &registry,
        &readiness,
        commands_tx,
    )?);
    Ok(Running {
        registry,
        readiness,
        ops_addr: ops.local_addr,
        transport,
        ops,
        tasks,
    })
}

/// Where a transaction's messages go: back along the path a request came, or to a peer.
#[derive(Debug, Clone)]
enum Route {
    Back(Source),
    To(Destination),
}

enum Command {
    SendOptions {
        dest: Destination,
        request: Box<Message>,
        reply: oneshot::Sender<PingOutcome>,
    },
    SendFailed(TxId),
}

/// What goes into Contact / X-MS-SBC of our answers, per listener.
#[derive(Clone)]
struct IdentityTemplate {
    base_fqdn: String,
    tenant_fqdns: Vec<String>,
    vendor: String,
    model: String,
    signaling_port: u16,
    /// First listener port of each transport, for Contact of pings sent over it.
    ports: Vec<(TransportKind, u16)>,
}

impl IdentityTemplate {
    fn new(loaded: &Loaded, transport: &TransportHandle) -> IdentityTemplate {
        let mut ports = Vec::new();
        for (kind, addr) in transport.local_addrs() {
            if !ports.iter().any(|(k, _)| *k == kind) {
                ports.push((kind, addr.port()));
            }
        }
        IdentityTemplate {
            base_fqdn: loaded.config.sbc.base_fqdn.clone(),
            tenant_fqdns: loaded
                .config
                .tenants
                .iter()
                .map(|t| t.fqdn.clone())
                .collect(),
            vendor: loaded.config.sbc.vendor.clone(),
            model: loaded.config.sbc.model.clone(),
            signaling_port: loaded.config.sbc.sip_signaling_port,
            ports,
        }
    }

    fn make(&self, fqdn: &str, port: u16, transport: SipTransport) -> SbcIdentity {
        SbcIdentity {
            fqdn: fqdn.to_string(),
            port,
            transport,
            vendor: self.vendor.clone(),
            model: self.model.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// Identity for answering `request` that arrived at `source`: the tenant FQDN when the
    /// Request-URI names one (keeps a derived trunk's FQDN stable, doc 4.3), else the base.
    fn for_request(&self, request: &Message, source: &Source) -> SbcIdentity {
        let host = request
            .request_uri()
            .and_then(|uri| uri.as_sip())
            .map(|sip| String::from_utf8_lossy(&sip.host).to_string());
        let fqdn = host
            .and_then(|h| {
                self.tenant_fqdns
                    .iter()
                    .find(|t| t.eq_ignore_ascii_case(&h))
                    .cloned()
            })
            .unwrap_or_else(|| self.base_fqdn.clone());
        self.make(&fqdn, source.local.port(), sip_transport(source.kind))
    }

    /// Identity for pings sent over `kind`: TLS uses the SipSignalingPort Teams knows.
    fn for_ping(&self, kind: TransportKind) -> SbcIdentity {
        let port = if kind == TransportKind::Tls {
            self.signaling_port
        } else {
            self.ports
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, p)| *p)
                .unwrap_or(kind.default_port())
        };
        self.make(&self.base_fqdn, port, sip_transport(kind))
    }
}

fn sip_transport(kind: TransportKind) -> SipTransport {
    match kind {
        TransportKind::Udp => SipTransport::Udp,
        TransportKind::Tcp => SipTransport::Tcp,
        TransportKind::Tls => SipTransport::Tls,
    }
}

fn transport_of(kind: SipTransport) -> TransportKind {
    match kind {
        SipTransport::Udp => TransportKind::Udp,
        SipTransport::Tcp => TransportKind::Tcp,
        SipTransport::Tls => TransportKind::Tls,
    }
}

#[derive(Clone)]
struct AppMetrics {
    /// `sip_requests_rejected_total{reason}`.
    rejected_requests: prometheus::IntCounterVec,
}

impl AppMetrics {
    fn register(registry: &Registry) -> prometheus::Result<AppMetrics> {
        let rejected_requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "sip_requests_rejected_total",
                "Requests dropped before the transaction layer, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(rejected_requests.clone()))?;
        Ok(AppMetrics { rejected_requests })
    }
}

static REJECTED_SOURCE_LOG: RateLimitedLog =
    RateLimitedLog::new(std::time::Duration::from_secs(60));

/// Requests only from Microsoft's ranges or a configured carrier trunk (row 11); anything
/// else (scanners, strangers) is dropped without an answer.
struct SourceFilter {
    acl: SourceAcl,
    rejected: prometheus::IntCounterVec,
}

impl SourceFilter {
    fn admits(&self, message: &Message, source: &Source) -> bool {
        if !message.is_request() || self.acl.classify(source.remote.ip()).is_some() {
            return true;
        }
        self.rejected
            .with_label_values(&["source_not_allowed"])
            .inc();
        let key = source.remote.ip().to_string();
        if let Some(suppressed) = REJECTED_SOURCE_LOG.check(&key, Instant::now()) {
            tracing::warn!(
                source = %source.remote,
                suppressed,
                "request from a source that is neither Microsoft nor a carrier trunk dropped"
            );
        }
        false
    }
}

/// Responses leave in the order they were made (a 100 must not overtake its 200).
fn spawn_response_sender(
    transport: TransportHandle,
    commands: mpsc::Sender<Command>,
) -> mpsc::UnboundedSender<(Option<TxId>, Source, Bytes)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Option<TxId>, Source, Bytes)>();
    tokio::spawn(async move {
        while let Some((id, source, bytes)) = rx.recv().await {
            if let Err(error) = transport.send_response(&source, bytes).await {
                tracing::debug!(%error, remote = %source.remote, "response not sent");
                if let Some(id) = id {
                    let _ = commands.send(Command::SendFailed(id)).await;
                }
            }
        }
    });
    tx
}

struct SipCore {
    layer: TransactionLayer<Route>,
    transport: TransportHandle,
    identity: IdentityTemplate,
    pending_pings: HashMap<TxId, oneshot::Sender<PingOutcome>>,
    responses: mpsc::UnboundedSender<(Option<TxId>, Source, Bytes)>,
    commands_tx: mpsc::Sender<Command>,
}

impl SipCore {
    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut commands: mpsc::Receiver<Command>,
        filter: SourceFilter,
    ) {
        loop {
            let deadline = self.layer.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = inbound.recv() => match received {
                    Some(Inbound { message, source }) => {
                        if filter.admits(&message, &source) {
                            self.layer.on_incoming(Instant::now(), message, Route::Back(source));
                        }
                    }
                    None => return,
                },
                Some(command) = commands.recv() => self.on_command(command),
                _ = sleep => self.layer.handle_timeout(Instant::now()),
            }
            self.drain();
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::SendOptions {
                dest,
                request,
                reply,
            } => match self
                .layer
                .send_request(Instant::now(), *request, Route::To(dest))
            {
                Ok(id) => {
                    self.pending_pings.insert(id, reply);
                }
                Err(error) => {
                    tracing::warn!(%error, "OPTIONS ping refused by the transaction layer");
                    let _ = reply.send(PingOutcome::TransportFailure);
                }
            },
            Command::SendFailed(id) => self.layer.on_transport_error(Instant::now(), id),
        }
    }

    fn drain(&mut self) {
        while let Some(output) = self.layer.poll_output() {
            match output {
                Output::Transmit { tx, dest, bytes } => self.transmit(tx, dest, bytes),
                Output::Deliver(event) => self.deliver(event),
            }
        }
    }

    fn transmit(&self, id: Option<TxId>, route: Route, bytes: Bytes) {
        match route {
            Route::Back(source) => {
                let _ = self.responses.send((id, source, bytes));
            }
            Route::To(dest) => {
                let transport = self.transport.clone();
                let commands = self.commands_tx.clone();
                tokio::spawn(async move {
                    if let Err(error) = transport.send(dest.clone(), bytes).await {
                        tracing::debug!(%error, addr = %dest.addr, "request not sent");
                        if let Some(id) = id {
                            let _ = commands.send(Command::SendFailed(id)).await;
                        }
                    }
                });
            }
        }
    }

    fn deliver(&mut self, event: TuEvent<Route>) {
        match event {
            TuEvent::Request {
                tx,
                msg,
                source,
                cancels,
            } => {
                let Route::Back(source) = source else { return };
                self.answer(tx, &msg, &source, cancels);
            }
            TuEvent::Response { tx, msg, .. } => {
                if let Some(status) = msg.status().filter(|s| *s >= 200) {
                    self.finish_ping(tx, PingOutcome::Response(status));
                }
            }
            TuEvent::Timeout { tx, .. } => self.finish_ping(tx, PingOutcome::Timeout),
            TuEvent::TransportError { tx } | TuEvent::Terminated { tx } => {
                self.finish_ping(tx, PingOutcome::TransportFailure)
            }
            TuEvent::Ack { .. } | TuEvent::AckTimeout { .. } => {}
        }
    }

    fn finish_ping(&mut self, tx: TxId, outcome: PingOutcome) {
        if let Some(reply) = self.pending_pings.remove(&tx) {
            let _ = reply.send(outcome);
        }
    }

    fn answer(&mut self, tx: TxId, request: &Message, source: &Source, cancels: Option<TxId>) {
        let identity = self.identity.for_request(request, source);
        let in_dialog = request
            .to()
            .ok()
            .is_some_and(|to| to.param("tag").is_some());
        let response = match request.method() {
            Some(Method::Options) => health::options_response(request, &identity),
            Some(Method::Cancel) => match cancels {
                Some(invite) => {
                    if let Some(invite_request) = self.layer.request(invite).cloned() {
                        let terminated =
                            final_response(&invite_request, 487, "Request Terminated", &identity);
                        let _ = self.layer.send_response(Instant::now(), invite, terminated);
                    }
                    final_response(request, 200, "OK", &identity)
                }
                None => final_response(request, 481, "Call/Transaction Does Not Exist", &identity),
            },
            _ if in_dialog => {
                final_response(request, 481, "Call/Transaction Does Not Exist", &identity)
            }
            Some(Method::Invite) => final_response(
                request,
                503,
                "Service Unavailable (call handling not enabled)",
                &identity,
            ),
            Some(Method::Other(_)) | None => with_allow(request, 501, "Not Implemented", &identity),
            Some(_) => with_allow(request, 405, "Method Not Allowed", &identity),
        };
        if let Err(error) = self.layer.send_response(Instant::now(), tx, response) {
            tracing::debug!(%error, "response not accepted by the transaction layer");
        }
    }
}

/// A final response with a To tag, X-MS-SBC and Server (row 59).
fn final_response(request: &Message, status: u16, reason: &str, id: &SbcIdentity) -> Bytes {
    response_builder(request, status, reason, id).build()
}

fn with_allow(request: &Message, status: u16, reason: &str, id: &SbcIdentity) -> Bytes {
    response_builder(request, status, reason, id)
        .header(&HeaderName::Allow, health::ALLOW_METHODS.as_bytes())
        .build()
}

fn response_builder(
    request: &Message,
    status: u16,
    reason: &str,
    id: &SbcIdentity,
) -> ResponseBuilder {
    let has_tag = request
        .to()
        .ok()
        .is_some_and(|to| to.param("tag").is_some());
    let mut builder = ResponseBuilder::new(request, status, reason);
    if !has_tag {
        builder = builder.to_tag(&new_tag());
    }
    builder
        .header(&HeaderName::XMsSbc, id.x_ms_sbc().as_bytes())
        .header(&HeaderName::Server, id.product().as_bytes())
}

/// [`OptionsSender`] that hands pings to the SIP core and waits for the transaction outcome.
struct CoreSender {
    commands: mpsc::Sender<Command>,
    limits: sip::Limits,
    /// Teams proxy name -> TLS name override (a stand-in at an IP address in labs/tests).
    tls_names: HashMap<String, String>,
}

impl OptionsSender for CoreSender {
    async fn send_options(
        &self,
        peer: &PeerTarget,
        dest: SocketAddr,
        request: Bytes,
    ) -> PingOutcome {
        let request = match Message::parse(request, &self.limits) {
            Ok(m) => m,
            Err(error) => {
                tracing::error!(%error, peer = %peer.name, "our own OPTIONS does not parse");
                return PingOutcome::TransportFailure;
            }
        };
        let kind = transport_of(peer.transport);
        let server_name = match self.tls_names.get(&peer.name) {
            Some(name) => Some(name.clone()),
            None if kind == TransportKind::Tls
                && peer
                    .host
                    .trim_matches(['[', ']'])
                    .parse::<IpAddr>()
                    .is_err() =>
            {
                Some(peer.host.clone())
            }
            None => None,
        };
        let (reply, outcome) = oneshot::channel();
        let command = Command::SendOptions {
            dest: Destination {
                kind,
                addr: dest,
                server_name,
            },
            request: Box::new(request),
            reply,
        };
        if self.commands.send(command).await.is_err() {
            return PingOutcome::TransportFailure;
        }
        outcome.await.unwrap_or(PingOutcome::TransportFailure)
    }
}

/// One pinger per Teams proxy and per carrier trunk with `options_ping`; Teams proxies feed
/// `/readyz`.
fn start_pingers(
    config: &Config,
    identity: &IdentityTemplate,
    registry: &Registry,
    readiness: &Arc<Readiness>,
    commands: mpsc::Sender<Command>,
) -> Result<Vec<JoinHandle<()>>, AppError> {
    let metrics = HealthMetrics::register(registry)?;
    let resolver = Arc::new(DnsResolver::from_system().map_err(|e| AppError::Dns(e.to_string()))?);
    let peers = mapping::ping_peers(config);
    let tls_names = peers
        .iter()
        .filter_map(|p| Some((p.target.name.clone(), p.tls_name.clone()?)))
        .collect();
    let sender = Arc::new(CoreSender {
        commands,
        limits: mapping::sip_limits(config),
        tls_names,
    });
    let mut tasks = Vec::new();
    for peer in peers {
        let local = identity.for_ping(transport_of(peer.target.transport));
        let name = peer.target.name.clone();
        if peer.is_teams {
            readiness.add_teams_proxy(&name);
        }
        let pinger = OptionsPinger::new(
            peer.target,
            local,
            peer.settings,
            metrics.clone(),
            Instant::now(),
        );
        let (status_tx, status_rx) = watch::channel(pinger.health().clone());
        tasks.push(tokio::spawn(health::run_pinger(
            pinger,
            sender.clone(),
            resolver.clone(),
            status_tx,
        )));
        if peer.is_teams {
            tasks.push(tokio::spawn(follow_teams_proxy(
                name,
                status_rx,
                readiness.clone(),
            )));
        }
    }
    Ok(tasks)
}

async fn follow_teams_proxy(
    name: String,
    mut status: watch::Receiver<PeerHealth>,
    readiness: Arc<Readiness>,
) {
    loop {
        let up = status.borrow_and_update().is_up();
        readiness.set_teams_proxy_up(&name, up);
        if status.changed().await.is_err() {
            readiness.set_teams_proxy_up(&name, false);
            return;
        }
    }
}
