//! The call driver: owns the table of B2BUA calls inside the SIP core task and connects each
//! sans-I/O [`Call`] to the transaction layer, the transport, the media engine, routing and
//! admission control.
//!
//! ```text
//! let (mut calls, mut events) = dispatch::start(&config, &registry, transport.local_addrs())?;
//! // in the task that owns the TransactionLayer<Route>:
//! Output::Deliver(event) => if let Some(event) = calls.on_tu_event(now, &mut layer, event) {
//!     /* not a call's: OPTIONS, unknown methods, pings */ }
//! Some(event) = events.recv() => calls.on_event(now, &mut layer, event),   // media, DNS
//! sleep_until(min(layer.poll_timeout(), calls.poll_timeout())) => calls.handle_timeout(now, &mut layer),
//! ```
//!
//! New INVITEs: from Microsoft's source ranges they are Teams -> PSTN calls (tenant by
//! Request-URI host, row 31; unknown host 404; calling number not the tenant's 403); from a
//! carrier trunk's sources PSTN -> Teams (tenant by called number, unknown 404); from anyone
//! else 403. Admission limits refuse with 503 + Retry-After. Requests, ACKs and CANCELs are
//! matched to a call by the Call-ID of either leg; an unknown dialog gets 481.
//!
//! Targets: a Microsoft proxy is resolved by its FQDN for every attempt (row 8, never pinned);
//! carrier next hops come from the trunk's address; in-dialog requests go to the peer's
//! Contact, or back on the connection the peer opened when it opened one. Timers live in one
//! ordered map here (no task per call).

mod admit;
mod cdr_glue;
mod paths;
mod replaces;
mod settings;
mod snapshot;
mod table;
mod timers;
pub mod trace;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use prometheus::Registry;
use tokio::sync::mpsc;

use crate::call::{
    CallRecord, Input, LegId, MediaCommand, Output, RequestToken, Target, TxFailure,
};
use crate::config::Config;
use crate::health::DnsResolver;
use crate::media::{MediaEngine, MediaError, MediaEvent, MediaEvents, MediaHandle, SessionId};
use crate::routing::{
    CallFailure, CallLimiter, ProxyMemory, ProxyOutcome, RoutingError, RoutingMetrics, RoutingTable,
};
use crate::sip::{HeaderName, Message, Method, ResponseBuilder};
use crate::transaction::{new_tag, Timer, TransactionLayer, TuEvent, TxId};
use crate::transport::{Destination, Peer, Source, TransportKind};

pub use settings::DispatchSettings;
pub use snapshot::CallSnapshot;
pub use table::CallKey;
pub use trace::{CallOutcome, CallTrace, CallTraces, TraceSettings, TracedMessage};

use paths::Path;
use table::{CallTable, TxEntry};
use timers::CallTimers;
use trace::{Recorded, TraceDirection};

/// Where a transaction's messages go: back along the path a request came, or to a peer.
#[derive(Debug, Clone)]
pub enum Route {
    Back(Source),
    To(Destination),
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("routing table: {0}")]
    Routing(#[from] RoutingError),
    #[error("media engine: {0}")]
    Media(#[from] MediaError),
    #[error("metrics registration: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("DNS resolver: {0}")]
    Dns(String),
    #[error("call detail records: {0}")]
    Cdr(#[from] crate::cdr::CdrError),
}

/// Something that happened outside the SIP core that a call must hear about.
#[derive(Debug)]
pub enum DispatchEvent {
    Media(MediaEvent),
    Resolved(Resolved),
}

/// The answer of a DNS lookup started for a call's message.
#[derive(Debug)]
pub struct Resolved {
    call: CallKey,
    leg: LegId,
    pending: Pending,
    dest: Option<Destination>,
}

#[derive(Debug)]
enum Pending {
    Request {
        token: RequestToken,
        msg: Bytes,
        proxy: Option<usize>,
    },
    Ack {
        msg: Bytes,
    },
}

/// DNS lookups running or answered but not yet taken by the SIP core. Each lookup holds a
/// slot of the answer channel from its start, so its answer can never be dropped and no
/// more than this many run at once; beyond it a target fails like one that does not resolve.
pub const MAX_RESOLVING: usize = 256;

/// Media events (the engine's bounded queue, see `media::EVENT_QUEUE`) and DNS answers, for
/// the SIP core's `select!`.
pub struct DispatchEvents {
    media: MediaEvents,
    resolved: mpsc::Receiver<Resolved>,
}

impl DispatchEvents {
    pub async fn recv(&mut self) -> Option<DispatchEvent> {
        tokio::select! {
            Some(event) = self.media.recv() => Some(DispatchEvent::Media(event)),
            Some(resolved) = self.resolved.recv() => Some(DispatchEvent::Resolved(resolved)),
            else => None,
        }
    }
}

/// Start the media engine and build the dispatcher for `config`. Needs a tokio runtime.
pub fn start(
    config: &Config,
    registry: &Registry,
    local: Vec<(TransportKind, SocketAddr)>,
) -> Result<(Dispatcher, DispatchEvents), DispatchError> {
    let routing = Arc::new(RoutingTable::from_config(config)?);
    let (media, media_events) =
        MediaEngine::start(crate::config::mapping::media_settings(config), registry)?;
    let resolver = DnsResolver::for_servers(&config.sbc.dns_servers)
        .map_err(|e| DispatchError::Dns(e.to_string()))?;
    let metrics = RoutingMetrics::register(registry)?;
    let (resolved_tx, resolved_rx) = mpsc::channel(MAX_RESOLVING);
    let resolve_refused = prometheus::IntCounter::new(
        "dns_lookups_refused_total",
        "Targets not looked up because MAX_RESOLVING lookups were already running",
    )?;
    registry.register(Box::new(resolve_refused.clone()))?;
    let settings = DispatchSettings::from_config(config, &routing);
    let traces = Arc::new(CallTraces::new(settings.trace, registry)?);
    let cdr = crate::cdr::Cdr::start(&crate::config::mapping::cdr_settings(config), registry)?;
    let lmo_metrics = LmoMetrics::register(registry)?;
    let now = Instant::now();
    let dispatcher = Dispatcher {
        settings,
        traces,
        cdr,
        lmo_metrics,
        limiter: CallLimiter::new(&routing, now),
        proxy_memory: Arc::new(routing.proxy_memory(now)),
        routing,
        metrics,
        media,
        resolver: Arc::new(resolver),
        resolved: resolved_tx,
        resolve_refused,
        table: CallTable::default(),
        timers: CallTimers::default(),
        draining: false,
        local,
    };
    Ok((
        dispatcher,
        DispatchEvents {
            media: media_events,
            resolved: resolved_rx,
        },
    ))
}

/// Local Media Optimization (row 61) counters.
struct LmoMetrics {
    /// `lmo_media_address_total{location}`: Teams-leg media addresses chosen for internal or
    /// external users (at call start and on Microsoft's re-INVITEs).
    location: prometheus::IntCounterVec,
    /// `lmo_media_path_not_through_sbc_total`: Microsoft's INVITEs whose X-MS-MediaPath
    /// starts at another SBC (media is anchored here anyway).
    path_not_through_sbc: prometheus::IntCounter,
}

impl LmoMetrics {
    fn register(registry: &Registry) -> prometheus::Result<LmoMetrics> {
        let location = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "lmo_media_address_total",
                "Teams-leg media addresses chosen by the user's location (Local Media Optimization)",
            ),
            &["location"],
        )?;
        let path_not_through_sbc = prometheus::IntCounter::new(
            "lmo_media_path_not_through_sbc_total",
            "Microsoft INVITEs whose X-MS-MediaPath starts at another SBC; media is anchored here",
        )?;
        registry.register(Box::new(location.clone()))?;
        registry.register(Box::new(path_not_through_sbc.clone()))?;
        Ok(LmoMetrics {
            location,
            path_not_through_sbc,
        })
    }
}

/// The table of calls and everything needed to drive them. Lives in the SIP core task.
pub struct Dispatcher {
    settings: DispatchSettings,
    /// The SIP of every call (row 60), shared with the ops API.
    traces: Arc<CallTraces>,
    /// The call detail record sinks (started with the dispatcher; a reload keeps them).
    cdr: Arc<crate::cdr::Cdr>,
    lmo_metrics: LmoMetrics,
    routing: Arc<RoutingTable>,
    limiter: CallLimiter,
    proxy_memory: Arc<ProxyMemory>,
    metrics: RoutingMetrics,
    media: MediaHandle,
    resolver: Arc<DnsResolver>,
    resolved: mpsc::Sender<Resolved>,
    resolve_refused: prometheus::IntCounter,
    table: CallTable,
    timers: CallTimers,
    /// New calls are refused (graceful drain).
    draining: bool,
    local: Vec<(TransportKind, SocketAddr)>,
}

type Layer = TransactionLayer<Route>;

impl Dispatcher {
    /// Calls in progress.
    pub fn call_count(&self) -> usize {
        self.table.len()
    }

    pub fn media(&self) -> &MediaHandle {
        &self.media
    }

    /// The calls' SIP traces (row 60): written here, read by the ops API.
    pub fn traces(&self) -> &Arc<CallTraces> {
        &self.traces
    }

    /// The call detail record sinks (the app flushes them at shutdown).
    pub fn cdr(&self) -> &Arc<crate::cdr::Cdr> {
        &self.cdr
    }

    /// Earliest call timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Fire every call timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, layer: &mut Layer) {
        while let Some((key, kind)) = self.timers.pop_due(now) {
            self.feed(now, layer, key, Input::Timer(kind));
        }
    }

    /// End every call's media (on shutdown).
    pub fn shutdown(&self) {
        self.media.shutdown();
    }

    /// A reloaded configuration: new calls route with `routing` and `config`'s settings;
    /// calls in progress keep the table they started with. Limits carry the counts of the
    /// calls in progress over to trunks and tenants that keep their name.
    pub fn reload(&mut self, routing: Arc<RoutingTable>, config: &Config) {
        let now = Instant::now();
        self.limiter = self.limiter.reconfigured(&routing);
        self.proxy_memory = Arc::new(routing.proxy_memory(now));
        self.settings = DispatchSettings::from_config(config, &routing);
        self.routing = routing;
    }

    /// The carrier trunks that own a leg of a call in progress (a reload removing one keeps
    /// hearing it until those calls end).
    pub fn trunks_in_use(&self) -> Vec<crate::transport::TrunkName> {
        let mut names: Vec<_> = self
            .table
            .keys()
            .into_iter()
            .filter_map(|key| match self.table.get(key)?.owner(LegId::Carrier) {
                Peer::Carrier(name) => Some(name),
                Peer::Microsoft => None,
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// While draining, new calls are refused with 503 and a Retry-After (their callers try
    /// another SBC); calls in progress go on.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    /// End one call from outside (`Input::Terminate`): BYE with a Reason on both legs, or
    /// CANCEL and a final error during setup. False when no such call exists.
    pub fn terminate(
        &mut self,
        now: Instant,
        layer: &mut Layer,
        key: CallKey,
        reason: crate::call::EndReason,
    ) -> bool {
        if self.table.get(key).is_none() {
            return false;
        }
        self.feed(now, layer, key, Input::Terminate { reason });
        true
    }

    /// [`terminate`](Self::terminate) every call.
    pub fn terminate_all(
        &mut self,
        now: Instant,
        layer: &mut Layer,
        reason: crate::call::EndReason,
    ) {
        for key in self.table.keys() {
            self.terminate(now, layer, key, reason);
        }
    }

    /// An event from outside the SIP core (media engine, DNS).
    pub fn on_event(&mut self, now: Instant, layer: &mut Layer, event: DispatchEvent) {
        match event {
            DispatchEvent::Media(event) => {
                if let Some(key) = self.table.by_session(session_of(&event)) {
                    self.feed(now, layer, key, Input::Media(event));
                }
            }
            DispatchEvent::Resolved(resolved) => self.on_resolved(now, layer, resolved),
        }
    }

    /// Take the transaction-layer events that belong to calls; give back the others.
    pub fn on_tu_event(
        &mut self,
        now: Instant,
        layer: &mut Layer,
        event: TuEvent<Route>,
    ) -> Option<TuEvent<Route>> {
        match event {
            TuEvent::Request {
                tx,
                msg,
                source,
                cancels,
            } => {
                let Route::Back(from) = &source else {
                    return Some(TuEvent::Request {
                        tx,
                        msg,
                        source,
                        cancels,
                    });
                };
                let from = from.clone();
                self.on_request(now, layer, tx, msg, from, source, cancels)
            }
            TuEvent::Ack { msg, source, .. } => {
                let known = msg.call_id().and_then(|id| self.table.by_call_id(&id));
                let Route::Back(from) = source else {
                    return None;
                };
                if let Some((key, leg)) = known {
                    // An ACK from anyone but the leg's peer is not for this dialog; an ACK
                    // gets no answer, so it is dropped. The owner's ACK confirms the dialog
                    // our 2xx set up: what follows goes back its way.
                    let slot = self.table.get_mut(key)?;
                    if Some(slot.owner(leg)) != from.peer {
                        return None;
                    }
                    self.trace_received(now, key, leg, &Route::Back(from.clone()), &msg);
                    let slot = self.table.get_mut(key)?;
                    slot.set_flow(leg, from);
                    self.feed(now, layer, key, Input::Ack { leg, msg });
                }
                None
            }
            TuEvent::Response { tx, msg, source } => {
                let Some(entry) = self.table.tx(tx) else {
                    return Some(TuEvent::Response { tx, msg, source });
                };
                self.table.mark_responded(tx);
                self.trace_received(now, entry.call, entry.leg, &source, &msg);
                if let (Some(index), Some(slot)) = (entry.proxy, self.table.get_mut(entry.call)) {
                    // The proxy that answered is the one the dialog's requests go to.
                    slot.teams_proxy = index;
                }
                if let Some(index) = entry.proxy {
                    let status = msg.status().unwrap_or(0);
                    let retry_after = msg
                        .header(&HeaderName::RetryAfter)
                        .and_then(|v| leading_number(&v));
                    self.note_proxy(
                        entry.call,
                        index,
                        ProxyOutcome::Responded {
                            status,
                            retry_after,
                        },
                        now,
                    );
                }
                self.feed(
                    now,
                    layer,
                    entry.call,
                    Input::Response {
                        leg: entry.leg,
                        tx,
                        msg,
                    },
                );
                None
            }
            TuEvent::Timeout { tx, timer } => {
                let Some(entry) = self.table.tx(tx) else {
                    return Some(TuEvent::Timeout { tx, timer });
                };
                if entry.client || timer == Timer::Unanswered {
                    self.fail_tx(now, layer, tx, entry, TxFailure::Timeout);
                }
                None
            }
            TuEvent::AckTimeout { tx } => {
                let Some(entry) = self.table.tx(tx) else {
                    return Some(TuEvent::AckTimeout { tx });
                };
                self.fail_tx(now, layer, tx, entry, TxFailure::AckTimeout);
                None
            }
            TuEvent::TransportError { tx } => {
                let Some(entry) = self.table.tx(tx) else {
                    return Some(TuEvent::TransportError { tx });
                };
                let reason = if entry.client && !entry.responded {
                    TxFailure::ConnectFailed
                } else {
                    TxFailure::Transport
                };
                if let (Some(index), TxFailure::ConnectFailed) = (entry.proxy, reason) {
                    self.note_proxy(entry.call, index, ProxyOutcome::ConnectFailed, now);
                }
                if entry.leg == LegId::Teams
                    && entry.proxy.is_none()
                    && reason == TxFailure::ConnectFailed
                {
                    // The leg's proxy cannot be reached: the dialog's next requests go to
                    // the next proxy in the call's order.
                    if let Some(slot) = self.table.get_mut(entry.call) {
                        let failed = slot.teams_proxy;
                        slot.teams_proxy = (failed + 1) % slot.proxies.len().max(1);
                        self.note_proxy(entry.call, failed, ProxyOutcome::ConnectFailed, now);
                    }
                }
                self.fail_tx(now, layer, tx, entry, reason);
                None
            }
            TuEvent::Terminated { tx } => {
                if self.table.tx(tx).is_none() {
                    return Some(TuEvent::Terminated { tx });
                }
                self.table.forget_tx(tx);
                None
            }
        }
    }

    fn fail_tx(
        &mut self,
        now: Instant,
        layer: &mut Layer,
        tx: TxId,
        entry: TxEntry,
        reason: TxFailure,
    ) {
        if entry.client {
            let failure = match reason {
                TxFailure::Timeout => Some("timeout"),
                TxFailure::ConnectFailed | TxFailure::Transport => Some("unreachable"),
                TxFailure::AckTimeout => None,
            };
            self.note_hop_failure(entry.call, entry.leg, failure);
        }
        self.feed(
            now,
            layer,
            entry.call,
            Input::TxFailed {
                leg: entry.leg,
                tx,
                reason,
            },
        );
    }

    fn note_proxy(&self, key: CallKey, index: usize, outcome: ProxyOutcome, now: Instant) {
        let Some(slot) = self.table.get(key) else {
            return;
        };
        let Some(&proxy) = slot.proxies.get(index) else {
            return;
        };
        // The memory belongs to the current table; a call routed by an older one keeps its
        // own ids, which only match when the table is the same.
        if !Arc::ptr_eq(&slot.routing, &self.routing) {
            return;
        }
        match outcome {
            ProxyOutcome::Responded {
                status: 503,
                retry_after: Some(_),
            }
            | ProxyOutcome::ConnectFailed
            | ProxyOutcome::NoResponse => self.proxy_memory.record(proxy, outcome, now),
            ProxyOutcome::Responded { .. } => self.proxy_memory.record_alive(proxy),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_request(
        &mut self,
        now: Instant,
        layer: &mut Layer,
        tx: TxId,
        msg: Message,
        from: Source,
        source: Route,
        cancels: Option<TxId>,
    ) -> Option<TuEvent<Route>> {
        let msg = self.route_replaces(now, layer, tx, msg, &from)?;
        let method = msg.method().cloned();
        let in_dialog = msg.to().ok().is_some_and(|to| to.tag.is_some());
        let known = msg.call_id().and_then(|id| self.table.by_call_id(&id));
        let peer = from.peer.clone();
        match (&method, known) {
            (Some(Method::Invite), Some(_)) if !in_dialog => {
                self.reply(now, layer, tx, &msg, 482, "Loop Detected", None, peer);
            }
            (_, Some((key, leg))) => {
                if !self.may_touch(key, leg, &from, method.as_ref(), cancels) {
                    self.reply(
                        now,
                        layer,
                        tx,
                        &msg,
                        481,
                        "Call/Transaction Does Not Exist",
                        None,
                        peer,
                    );
                    return None;
                }
                self.table.add_tx(
                    tx,
                    TxEntry {
                        call: key,
                        leg,
                        client: false,
                        responded: false,
                        proxy: None,
                    },
                );
                self.trace_received(now, key, leg, &source, &msg);
                self.table.add_flow_candidate(tx, from);
                self.feed(now, layer, key, Input::Request { leg, tx, msg });
            }
            (Some(Method::Invite), None) if in_dialog => {
                self.reply(
                    now,
                    layer,
                    tx,
                    &msg,
                    481,
                    "Call/Transaction Does Not Exist",
                    None,
                    peer,
                );
            }
            (Some(Method::Invite), None) => self.new_call(now, layer, tx, msg, from),
            (Some(Method::Bye | Method::Cancel), None) => {
                self.reply(
                    now,
                    layer,
                    tx,
                    &msg,
                    481,
                    "Call/Transaction Does Not Exist",
                    None,
                    peer,
                );
            }
            _ => {
                return Some(TuEvent::Request {
                    tx,
                    msg,
                    source,
                    cancels,
                })
            }
        }
        None
    }

    /// Whether a request from `from` may act on leg `leg` of call `key`: only the peer that
    /// owns the leg (RFC 3261 §12.2.2 dialogs are Call-ID and tags, which anyone on the path
    /// of a UDP leg can read), and a CANCEL only for the INVITE transaction of that call
    /// (RFC 3261 §9.2: matched by the INVITE's branch).
    fn may_touch(
        &self,
        key: CallKey,
        leg: LegId,
        from: &Source,
        method: Option<&Method>,
        cancels: Option<TxId>,
    ) -> bool {
        let Some(slot) = self.table.get(key) else {
            return false;
        };
        if from.peer != Some(slot.owner(leg)) {
            return false;
        }
        if method != Some(&Method::Cancel) {
            return true;
        }
        cancels
            .and_then(|invite| self.table.tx(invite))
            .is_some_and(|entry| entry.call == key && entry.leg == leg && !entry.client)
    }

    /// A final answer we make ourselves (no call): To tag and the product headers for the
    /// peer it goes to (row 59).
    #[allow(clippy::too_many_arguments)]
    fn reply(
        &self,
        now: Instant,
        layer: &mut Layer,
        tx: TxId,
        request: &Message,
        status: u16,
        reason: &str,
        retry_after: Option<u32>,
        to: Option<Peer>,
    ) {
        let has_tag = request.to().ok().is_some_and(|to| to.tag.is_some());
        let mut builder = ResponseBuilder::new(request, status, reason);
        if !has_tag {
            builder = builder.to_tag(&new_tag());
        }
        builder = self.settings.product_for(to).to_response(builder);
        if let Some(seconds) = retry_after {
            builder = builder.header(&HeaderName::RetryAfter, seconds.to_string().as_bytes());
        }
        if let Err(error) = layer.send_response(now, tx, builder.build()) {
            tracing::debug!(%error, status, "call-layer answer not accepted");
        }
    }

    fn feed(&mut self, now: Instant, layer: &mut Layer, key: CallKey, input: Input) {
        let Some(slot) = self.table.get_mut(key) else {
            return;
        };
        // Every line logged while the call works carries which call, tenant and trunk.
        let span = tracing::info_span!(
            "call",
            id = key.0,
            tenant = slot.labels.tenant(),
            trunk = slot.labels.trunk(),
        );
        let _entered = span.enter();
        slot.call.handle(now, input);
        self.drain(now, layer, key);
    }

    /// Carry out everything the call asked for, until it has nothing more to say.
    fn drain(&mut self, now: Instant, layer: &mut Layer, key: CallKey) {
        loop {
            let Some(slot) = self.table.get_mut(key) else {
                return;
            };
            let Some(output) = slot.call.poll() else {
                // A transfer gives the Teams leg a new dialog (row 37): route it here too.
                let teams_call_id = slot.call.call_id(LegId::Teams).clone();
                self.add_call_id(key, LegId::Teams, &teams_call_id);
                return;
            };
            self.execute(now, layer, key, output);
        }
    }

    fn execute(&mut self, now: Instant, layer: &mut Layer, key: CallKey, output: Output) {
        match output {
            Output::SendRequest {
                leg,
                token,
                target,
                msg,
            } => {
                let proxy = match target {
                    Target::TeamsProxy(index) => Some(index),
                    _ => None,
                };
                if msg.starts_with(b"INVITE ") {
                    self.note_hop(key, leg, &target);
                }
                if let (Target::Carrier(index), true) = (&target, msg.starts_with(b"INVITE ")) {
                    if !self.enter_carrier_hop(now, key, *index) {
                        self.note_hop_failure(key, leg, Some("skipped"));
                        // The hop's trunk is at its limits: to the call this hop is
                        // unreachable, so it moves on to the next one (or answers Teams).
                        if let Some(slot) = self.table.get_mut(key) {
                            slot.call.on_sent(now, token, None);
                        }
                        return;
                    }
                }
                let pending = Pending::Request { token, msg, proxy };
                match self.path(key, leg, &target) {
                    Path::Now(route) => self.send_pending(now, layer, key, leg, pending, route),
                    Path::Resolve {
                        host,
                        port,
                        kind,
                        server_name,
                    } => {
                        if let Err(pending) =
                            self.resolve(key, leg, pending, host, port, kind, server_name)
                        {
                            self.not_resolved(now, key, pending);
                        }
                    }
                    Path::Unroutable => {
                        tracing::warn!(?target, "request target cannot be routed");
                        if let Some(slot) = self.table.get_mut(key) {
                            slot.call.on_sent(now, token, None);
                        }
                    }
                }
            }
            Output::SendResponse { leg, tx, msg } => {
                if crate::transaction::status_of(&msg).is_some_and(|s| (200..300).contains(&s)) {
                    self.table.accept_flow(tx);
                }
                // Where the transaction's responses go (known before a final response ends it).
                let route = layer.peer(tx).cloned();
                match (layer.send_response(now, tx, msg.clone()), route) {
                    (Ok(()), Some(route)) => self.trace_sent(now, key, leg, &route, &msg),
                    (Ok(()), None) => {}
                    (Err(error), _) => {
                        tracing::debug!(%error, "call response not accepted by the transaction layer")
                    }
                }
            }
            Output::SendAck { leg, target, msg } => {
                let pending = Pending::Ack { msg };
                match self.path(key, leg, &target) {
                    Path::Now(route) => self.send_pending(now, layer, key, leg, pending, route),
                    Path::Resolve {
                        host,
                        port,
                        kind,
                        server_name,
                    } => {
                        if let Err(pending) =
                            self.resolve(key, leg, pending, host, port, kind, server_name)
                        {
                            self.not_resolved(now, key, pending);
                        }
                    }
                    Path::Unroutable => tracing::warn!(?target, "ACK target cannot be routed"),
                }
            }
            Output::Media(command) => self.apply_media(key, command),
            Output::SetTimer { kind, at } => self.timers.set(key, kind, at),
            Output::CancelTimer { kind } => self.timers.cancel(key, kind),
            Output::Record(record) => self.record(key, record),
            Output::Finished => self.finish(now, key),
        }
    }

    /// The call tries carrier hop `index`: the call's limiter slot moves to the hop's trunk
    /// (its `max_concurrent_calls` and `max_calls_per_second` apply, the previous trunk's slot
    /// is released), and the hop's trunk owns the carrier leg (only it may speak in the
    /// dialogs it answers). False when the trunk refuses the call by its limits.
    fn enter_carrier_hop(&mut self, now: Instant, key: CallKey, index: usize) -> bool {
        let Some(slot) = self.table.get_mut(key) else {
            return false;
        };
        let Some(&trunk) = slot.carrier_target_trunks.get(index) else {
            return true;
        };
        if let Some(guard) = slot.guard.as_mut().filter(|g| g.trunk() != Some(trunk)) {
            if let Err(rejection) = guard.move_to_trunk(&self.limiter, trunk, now) {
                tracing::info!(
                    scope = rejection.scope.label(),
                    reason = rejection.reason.label(),
                    index,
                    "failover trunk at its limits, not tried"
                );
                self.metrics.rejected(&rejection);
                return false;
            }
        }
        // The hop tried now owns the carrier leg: only its trunk may speak in the dialogs it
        // answers.
        let owner = slot.routing.carrier_peer(trunk);
        slot.set_owner(LegId::Carrier, owner);
        true
    }

    fn send_pending(
        &mut self,
        now: Instant,
        layer: &mut Layer,
        key: CallKey,
        leg: LegId,
        pending: Pending,
        route: Route,
    ) {
        match pending {
            Pending::Ack { msg } => {
                self.trace_sent(now, key, leg, &route, &msg);
                layer.send_stateless(route, msg);
            }
            Pending::Request { token, msg, proxy } => {
                if let (Route::To(dest), Some(slot)) = (&route, self.table.get_mut(key)) {
                    slot.set_sent_kind(leg, dest.kind);
                }
                let traced = route.clone();
                let sent = match Message::parse(msg.clone(), &self.settings.limits) {
                    Ok(request) => match layer.send_request(now, request, route) {
                        Ok(tx) => {
                            self.trace_sent(now, key, leg, &traced, &msg);
                            Some(tx)
                        }
                        Err(error) => {
                            tracing::warn!(%error, "call request refused by the transaction layer");
                            None
                        }
                    },
                    Err(error) => {
                        tracing::error!(%error, "a call built a request that does not parse");
                        None
                    }
                };
                if let Some(tx) = sent {
                    self.table.add_tx(
                        tx,
                        TxEntry {
                            call: key,
                            leg,
                            client: true,
                            responded: false,
                            proxy,
                        },
                    );
                }
                if let Some(slot) = self.table.get_mut(key) {
                    slot.call.on_sent(now, token, sent);
                }
            }
        }
    }

    /// Where a message for `target` goes, or which name to resolve first.
    fn on_resolved(&mut self, now: Instant, layer: &mut Layer, resolved: Resolved) {
        let Resolved {
            call,
            leg,
            pending,
            dest,
        } = resolved;
        if self.table.get(call).is_none() {
            return;
        }
        match dest {
            Some(dest) => self.send_pending(now, layer, call, leg, pending, Route::To(dest)),
            None => self.not_resolved(now, call, pending),
        }
        self.drain(now, layer, call);
    }

    /// A target name without an address (or not looked up: too many lookups running) fails
    /// the request as a failed connect would.
    fn not_resolved(&mut self, now: Instant, call: CallKey, pending: Pending) {
        match pending {
            Pending::Request { token, proxy, msg } => {
                if msg.starts_with(b"INVITE ") {
                    if let Some(life) = self.table.get_mut(call).and_then(|s| s.life.as_mut()) {
                        life.on_hop_failure("unreachable");
                    }
                }
                if let Some(index) = proxy {
                    self.note_proxy(call, index, ProxyOutcome::ConnectFailed, now);
                }
                if let Some(slot) = self.table.get_mut(call) {
                    slot.call.on_sent(now, token, None);
                }
            }
            Pending::Ack { .. } => tracing::warn!("ACK target did not resolve"),
        }
    }

    fn apply_media(&mut self, key: CallKey, command: MediaCommand) {
        let Some(session) = self.table.get(key).and_then(|s| s.session) else {
            return;
        };
        let result = match command {
            MediaCommand::SetRemote {
                leg,
                rtp,
                rtcp,
                rtcp_mux,
            } => self.media.set_remote(session, leg, rtp, rtcp, rtcp_mux),
            MediaCommand::SetSrtp {
                leg,
                inbound,
                outbound,
            } => self.media.set_srtp(session, leg, inbound, outbound),
            MediaCommand::SetPayloadMap {
                direction,
                mappings,
            } => self.media.set_payload_map(session, direction, &mappings),
            MediaCommand::SetInbandDtmf { plan } => self.media.set_inband_dtmf(session, plan),
            MediaCommand::SetHold { leg, on_hold } => self.media.set_hold(session, leg, on_hold),
            MediaCommand::SetComfortNoise { leg, plan } => {
                self.media.set_comfort_noise(session, leg, plan)
            }
            MediaCommand::SetRingback { ringback } => self.media.set_ringback(session, ringback),
            MediaCommand::EnableIceLite {
                leg,
                local_ufrag,
                local_pwd,
                remote_ufrag,
                forks_open,
            } => self.media.enable_ice_lite(
                session,
                leg,
                &local_ufrag,
                &local_pwd,
                remote_ufrag.as_deref(),
                forks_open,
            ),
            MediaCommand::Remove => {
                // The last counters, for the call's detail record (if one is kept).
                let keeps_record = self.table.get(key).is_some_and(|s| s.life.is_some());
                let stats = keeps_record.then(|| self.media.stats(session)).flatten();
                if let Some(slot) = self.table.get_mut(key) {
                    slot.media_removed = true;
                    if let (Some(life), Some(stats)) = (slot.life.as_mut(), stats) {
                        life.on_media_stats(stats);
                    }
                }
                self.media.remove_session(session)
            }
        };
        if let Err(error) = result {
            tracing::warn!(%error, session = session.0, "media command failed");
        }
    }

    fn record(&mut self, key: CallKey, record: CallRecord) {
        let Some(slot) = self.table.get_mut(key) else {
            return;
        };
        match record {
            CallRecord::Attempted { .. } => {
                if !slot.attempted {
                    slot.attempted = true;
                    self.metrics.attempt(&slot.labels);
                }
            }
            CallRecord::TargetAttempt { leg, index } => {
                tracing::debug!(leg = leg.label(), index, "call target attempt");
            }
            CallRecord::Answered { setup_time } => self.metrics.answered(&slot.labels, setup_time),
            CallRecord::MediaLocation { location } => self
                .lmo_metrics
                .location
                .with_label_values(&[location.label()])
                .inc(),
            CallRecord::Failed { status, reason, .. } => {
                // Logged with the call's SIP when it is finished (row 60).
                slot.outcome = Some(CallOutcome::Failed { status, reason });
                self.metrics
                    .failed(&slot.labels, CallFailure::Status(status));
            }
            CallRecord::Ended { reason, duration } => {
                slot.outcome = Some(CallOutcome::Ended { reason });
                tracing::info!(
                    reason = reason.label(),
                    seconds = duration.as_secs_f64(),
                    "call ended"
                );
            }
        }
    }

    /// Drop the call: timers, table entries, media session, limiter slot; its trace stays a
    /// while (and is logged if the call failed).
    fn finish(&mut self, now: Instant, key: CallKey) {
        self.timers.cancel_all(key);
        let Some(mut slot) = self.table.remove(key) else {
            return;
        };
        let ended = self.traces.end(key, slot.outcome, now);
        if let (Some(session), false) = (slot.session, slot.media_removed) {
            if let (Some(life), Some(stats)) = (slot.life.as_mut(), self.media.stats(session)) {
                life.on_media_stats(stats);
            }
            let _ = self.media.remove_session(session);
        }
        if let Some(life) = slot.life.take() {
            self.cdr
                .submit(cdr_glue::record(key, &slot, &life, ended, now));
        }
        if slot.attempted {
            self.metrics.ended(&slot.labels);
        }
        drop(slot.guard);
    }
}

impl Dispatcher {
    /// Route `call_id` to call `key` too, and name it in the call's trace.
    fn add_call_id(&mut self, key: CallKey, leg: LegId, call_id: &Bytes) {
        if self.table.add_call_id(key, leg, call_id) {
            self.traces.add_call_id(key, call_id);
        }
    }

    fn trace_received(
        &mut self,
        now: Instant,
        key: CallKey,
        leg: LegId,
        from: &Route,
        msg: &Message,
    ) {
        if let Some(life) = self.table.get_mut(key).and_then(|s| s.life.as_mut()) {
            life.on_message(leg, false, msg, now);
        }
        let (transport, peer) = route_peer(from);
        self.traces.record(
            key,
            now,
            Recorded {
                direction: TraceDirection::Received,
                leg,
                transport,
                peer,
                raw: msg.bytes(),
                parsed: Some(msg),
            },
        );
    }

    fn trace_sent(&mut self, now: Instant, key: CallKey, leg: LegId, to: &Route, raw: &[u8]) {
        if let Some(life) = self.table.get_mut(key).and_then(|s| s.life.as_mut()) {
            cdr_glue::observe_sent(life, leg, raw, &self.settings.limits, now);
        }
        let (transport, peer) = route_peer(to);
        self.traces.record(
            key,
            now,
            Recorded {
                direction: TraceDirection::Sent,
                leg,
                transport,
                peer,
                raw,
                parsed: None,
            },
        );
    }
}

/// Transport and remote address of a route.
fn route_peer(route: &Route) -> (TransportKind, Option<SocketAddr>) {
    match route {
        Route::Back(source) => (source.kind, Some(source.remote)),
        Route::To(dest) => (dest.kind, Some(dest.addr)),
    }
}

fn session_of(event: &MediaEvent) -> SessionId {
    match event {
        MediaEvent::Inactive { session, .. }
        | MediaEvent::Active { session, .. }
        | MediaEvent::Latched { session, .. }
        | MediaEvent::IceNominated { session, .. } => *session,
    }
}

/// `Retry-After: 1 (busy)` -> 1.
fn leading_number(value: &[u8]) -> Option<u32> {
    let digits: Vec<u8> = value
        .iter()
        .copied()
        .skip_while(|b| b.is_ascii_whitespace())
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::{Output as TxOutput, TransactionMetrics, TransactionSettings};

    #[test]
    fn retry_after_value_is_its_leading_number() {
        assert_eq!(leading_number(b"1"), Some(1));
        assert_eq!(leading_number(b" 30 (busy);duration=5"), Some(30));
        assert_eq!(leading_number(b"soon"), None);
    }

    const CONFIG: &str = r#"
[sbc]
base_fqdn = "sbc.example.test"
vendor = "V"
model = "M"

[tls]
cert_chain = "sbc.pem"
private_key = "sbc.key"

[[listen]]
transport = "udp"
address = "127.0.0.1:5060"

[[listen]]
transport = "tls"
address = "127.0.0.1:5061"

[teams]
proxies = [{ address = "127.0.0.3:5061", transport = "tcp" }]
allowed_source_cidrs = ["127.0.0.3/32"]
lab_plain_tcp = true

[[carrier_trunk]]
name = "pstn"
address = "127.0.0.2:5060"
allowed_source_cidrs = ["127.0.0.2/32"]

[[carrier_trunk]]
name = "other"
address = "127.0.0.5:5060"

[[tenant]]
name = "acme"
fqdn = "acme.sbc.example.test"
numbers = ["+4930123400-+4930123499"]
carrier_trunk = "pstn"
max_concurrent_calls = 1

[[tenant]]
name = "umbrella"
fqdn = "umbrella.sbc.example.test"
numbers = ["+4940*"]
carrier_trunk = "other"

[media.carrier]
bind = "127.0.0.1"
port_min = 41800
port_max = 41849

[media.teams]
bind = "127.0.0.1"
port_min = 41850
port_max = 41899
"#;

    struct Bench {
        calls: Dispatcher,
        _events: DispatchEvents,
        layer: Layer,
    }

    fn bench() -> Bench {
        bench_with(CONFIG)
    }

    fn bench_with(config: &str) -> Bench {
        let mut loaded =
            crate::config::parse_str(config, "test.toml", std::path::Path::new("."), false)
                .unwrap();
        // No call detail record file in the source tree (relative paths resolve against ".").
        loaded.config.cdr.enabled = false;
        let registry = Registry::new();
        let local = vec![(TransportKind::Udp, "127.0.0.1:5060".parse().unwrap())];
        let (calls, events) = start(&loaded.config, &registry, local).unwrap();
        let layer = TransactionLayer::new(
            TransactionSettings::default(),
            TransactionMetrics::register(&registry).unwrap(),
        );
        Bench {
            calls,
            _events: events,
            layer,
        }
    }

    /// A message from `ip` over `kind`, its peer identified by the test config's rules as
    /// the transport would.
    fn source(ip: [u8; 4], kind: TransportKind) -> Source {
        source_in(CONFIG, ip, kind)
    }

    /// [`source`] under the peer rules of `config`.
    fn source_in(config: &str, ip: [u8; 4], kind: TransportKind) -> Source {
        let loaded =
            crate::config::parse_str(config, "test.toml", std::path::Path::new("."), false)
                .unwrap();
        let remote = SocketAddr::from((ip, 5070));
        Source {
            kind,
            local: "127.0.0.1:5060".parse().unwrap(),
            remote,
            connection: None,
            peer: crate::config::mapping::peer_rules(&loaded.config)
                .classify_plain(kind, remote.ip()),
        }
    }

    fn request(text: &str) -> Message {
        Message::parse(
            Bytes::from(text.replace('\n', "\r\n")),
            &crate::sip::Limits::default(),
        )
        .unwrap()
    }

    fn invite(uri: &str, from_user: &str, call_id: &str, branch: &str) -> Message {
        request(&format!(
            "INVITE {uri} SIP/2.0\n\
             Via: SIP/2.0/UDP 127.0.0.9:5070;branch=z9hG4bK{branch}\n\
             Max-Forwards: 70\n\
             From: <sip:{from_user}@peer.example;user=phone>;tag=f1\n\
             To: <{uri}>\n\
             Call-ID: {call_id}\n\
             CSeq: 1 INVITE\n\
             Contact: <sip:{from_user}@127.0.0.9:5070>\n\
             Content-Type: application/sdp\n\
             Content-Length: 0\n\n"
        ))
    }

    /// Feed `msg` through the transaction layer (charged to its sender, as the SIP core
    /// does) and the dispatcher; the final responses sent.
    fn exchange(bench: &mut Bench, msg: Message, from: Source) -> Vec<String> {
        let now = Instant::now();
        match from.peer.clone() {
            Some(peer) => {
                let payers = [
                    crate::transaction::Payer::Source(from.remote.ip()),
                    crate::transaction::Payer::Peer(peer),
                ];
                bench
                    .layer
                    .on_incoming_paid(now, msg, Route::Back(from), payers);
            }
            None => bench.layer.on_incoming(now, msg, Route::Back(from)),
        }
        let mut sent = Vec::new();
        while let Some(output) = bench.layer.poll_output() {
            match output {
                TxOutput::Transmit { bytes, .. } => {
                    let text = String::from_utf8_lossy(&bytes).to_string();
                    if !text.starts_with("SIP/2.0 100") {
                        sent.push(text);
                    }
                }
                TxOutput::Deliver(event) => {
                    let rest = bench.calls.on_tu_event(now, &mut bench.layer, event);
                    assert!(rest.is_none(), "a call-layer event was handed back");
                }
            }
        }
        sent
    }

    #[tokio::test]
    async fn row31_teams_invite_to_an_unknown_subdomain_gets_404_with_x_ms_sbc() {
        let mut bench = bench();
        let sent = exchange(
            &mut bench,
            invite(
                "sip:+4969555000@initech.sbc.example.test",
                "+4930123450",
                "c1",
                "a1",
            ),
            source([127, 0, 0, 3], TransportKind::Tcp),
        );
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(sent[0].starts_with("SIP/2.0 404 "), "{}", sent[0]);
        assert!(sent[0].contains("X-MS-SBC: V/M/"), "{}", sent[0]);
        assert_eq!(bench.calls.call_count(), 0);
    }

    #[tokio::test]
    async fn teams_invite_from_a_number_the_tenant_does_not_own_gets_403() {
        let mut bench = bench();
        let sent = exchange(
            &mut bench,
            invite(
                "sip:+4969555000@acme.sbc.example.test",
                "+4940555123",
                "c2",
                "a2",
            ),
            source([127, 0, 0, 3], TransportKind::Tcp),
        );
        assert!(sent[0].starts_with("SIP/2.0 403 "), "{sent:?}");
    }

    #[tokio::test]
    async fn carrier_invite_to_nobodys_number_gets_404_and_stranger_gets_403() {
        let mut bench = bench();
        let sent = exchange(
            &mut bench,
            invite("sip:+4989000000@127.0.0.1", "+4969111222", "c3", "a3"),
            source([127, 0, 0, 2], TransportKind::Udp),
        );
        assert!(sent[0].starts_with("SIP/2.0 404 "), "{sent:?}");
        let sent = exchange(
            &mut bench,
            invite("sip:+4930123450@127.0.0.1", "+4969111222", "c4", "a4"),
            source([127, 0, 0, 99], TransportKind::Udp),
        );
        assert!(sent[0].starts_with("SIP/2.0 403 "), "{sent:?}");
    }

    fn in_call_request(method: &str, call_id: &str, branch: &str, to_tag: bool) -> Message {
        let to_tag = if to_tag { ";tag=sbc1" } else { "" };
        request(&format!(
            "{method} sip:+4930123450@127.0.0.1 SIP/2.0\n\
             Via: SIP/2.0/UDP 127.0.0.9:5070;branch=z9hG4bK{branch}\n\
             Max-Forwards: 70\n\
             From: <sip:+4969111222@peer.example;user=phone>;tag=f1\n\
             To: <sip:+4930123450@127.0.0.1>{to_tag}\n\
             Call-ID: {call_id}\n\
             CSeq: 1 {method}\n\
             Content-Length: 0\n\n"
        ))
    }

    fn starts(sent: &[String], status: &str) -> bool {
        sent.iter()
            .any(|m| m.starts_with(&format!("SIP/2.0 {status} ")))
    }

    /// A stolen Call-ID and branch are not enough: a CANCEL (or BYE) from another admitted
    /// trunk, or a CANCEL whose branch is not the INVITE's (RFC 3261 §9.2), gets 481 and the
    /// call goes on; only the calling trunk's CANCEL of that INVITE ends it.
    #[tokio::test]
    async fn cancel_or_bye_from_another_trunk_or_branch_gets_481_and_the_call_goes_on() {
        let mut bench = bench();
        let carrier = || source([127, 0, 0, 2], TransportKind::Udp);
        let intruder = || source([127, 0, 0, 5], TransportKind::Udp);
        assert!(
            intruder().peer.is_some(),
            "the intruder is an admitted trunk"
        );
        exchange(
            &mut bench,
            invite("sip:+4930123450@127.0.0.1", "+4969111222", "c7", "a7"),
            carrier(),
        );
        assert_eq!(bench.calls.call_count(), 1);

        let sent = exchange(
            &mut bench,
            in_call_request("CANCEL", "c7", "a7", false),
            intruder(),
        );
        assert!(starts(&sent, "481"), "{sent:?}");
        let sent = exchange(
            &mut bench,
            in_call_request("BYE", "c7", "b7", true),
            intruder(),
        );
        assert!(starts(&sent, "481"), "{sent:?}");
        let sent = exchange(
            &mut bench,
            in_call_request("CANCEL", "c7", "x7", false),
            carrier(),
        );
        assert!(starts(&sent, "481"), "{sent:?}");
        assert!(!starts(&sent, "487"), "{sent:?}");
        assert_eq!(bench.calls.call_count(), 1, "the call goes on");

        let sent = exchange(
            &mut bench,
            in_call_request("CANCEL", "c7", "a7", false),
            carrier(),
        );
        assert!(starts(&sent, "200"), "{sent:?}");
        assert!(starts(&sent, "487"), "the INVITE is terminated: {sent:?}");
        bench.calls.shutdown();
    }

    /// One trunk cannot place calls to another trunk's customers (looks like an unknown
    /// number), and our answers to carriers name no product or version.
    #[tokio::test]
    async fn a_trunk_reaches_only_its_own_tenants_and_hears_no_version() {
        let mut bench = bench();
        let sent = exchange(
            &mut bench,
            invite("sip:+4940111222@127.0.0.1", "+4969111222", "c8", "a8"),
            source([127, 0, 0, 2], TransportKind::Udp),
        );
        assert!(starts(&sent, "404"), "{sent:?}");
        assert!(!sent[0].contains("X-MS-SBC"), "{}", sent[0]);
        assert!(!sent[0].contains("Server:"), "{}", sent[0]);
        assert_eq!(bench.calls.call_count(), 0);
    }

    #[tokio::test]
    async fn bye_for_an_unknown_dialog_gets_481() {
        let mut bench = bench();
        let bye = request(
            "BYE sip:x@127.0.0.1 SIP/2.0\n\
             Via: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKb1\n\
             Max-Forwards: 70\n\
             From: <sip:a@b>;tag=1\n\
             To: <sip:c@d>;tag=2\n\
             Call-ID: nobody\n\
             CSeq: 2 BYE\n\
             Content-Length: 0\n\n",
        );
        let sent = exchange(&mut bench, bye, source([127, 0, 0, 2], TransportKind::Udp));
        assert!(sent[0].starts_with("SIP/2.0 481 "), "{sent:?}");
    }

    #[tokio::test]
    async fn a_call_is_admitted_then_the_tenant_limit_answers_503_with_retry_after() {
        let mut bench = bench();
        let sent = exchange(
            &mut bench,
            invite("sip:+4930123450@127.0.0.1", "+4969111222", "c5", "a5"),
            source([127, 0, 0, 2], TransportKind::Udp),
        );
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(
            sent[0].starts_with("INVITE sip:+4930123450@127.0.0.3:5061;user=phone SIP/2.0"),
            "the first call goes to the Teams proxy: {}",
            sent[0]
        );
        assert_eq!(bench.calls.call_count(), 1);
        let sent = exchange(
            &mut bench,
            invite("sip:+4930123451@127.0.0.1", "+4969111222", "c6", "a6"),
            source([127, 0, 0, 2], TransportKind::Udp),
        );
        assert!(sent[0].starts_with("SIP/2.0 503 "), "{sent:?}");
        assert!(sent[0].contains("\r\nRetry-After: 1\r\n"), "{}", sent[0]);
        assert_eq!(bench.calls.call_count(), 1);
        bench.calls.shutdown();
    }

    /// Trunk failover with limits: `a` first, then `b` (one call at most), then `c`.
    const FAILOVER_CONFIG: &str = r#"
[sbc]
base_fqdn = "sbc.example.test"
vendor = "V"
model = "M"

[tls]
cert_chain = "sbc.pem"
private_key = "sbc.key"

[[listen]]
transport = "udp"
address = "127.0.0.1:5060"

[[listen]]
transport = "tls"
address = "127.0.0.1:5061"

[teams]
proxies = [{ address = "127.0.0.3:5061", transport = "tcp" }]
allowed_source_cidrs = ["127.0.0.3/32"]
lab_plain_tcp = true

[[carrier_trunk]]
name = "a"
address = "127.0.0.2:5060"

[[carrier_trunk]]
name = "b"
address = "127.0.0.5:5060"
max_concurrent_calls = 1

[[carrier_trunk]]
name = "c"
address = "127.0.0.6:5060"

[[tenant]]
name = "acme"
fqdn = "acme.sbc.example.test"
numbers = ["+4930123400-+4930123499"]
carrier_trunk = "a"
failover_carrier_trunks = ["b", "c"]

[[tenant]]
name = "umbrella"
fqdn = "umbrella.sbc.example.test"
numbers = ["+4940*"]
carrier_trunk = "b"

[media.carrier]
bind = "127.0.0.1"
port_min = 43400
port_max = 43449

[media.teams]
bind = "127.0.0.1"
port_min = 43450
port_max = 43499
"#;

    /// Lines end in `\n` like the rest of what `request` takes.
    const TEAMS_OFFER: &str = "v=0\no=- 9 9 IN IP4 127.0.0.3\ns=-\nc=IN IP4 127.0.0.3\nt=0 0\n\
        m=audio 49152 RTP/SAVP 0\na=rtpmap:0 PCMU/8000\n\
        a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^31\n\
        a=rtcp-mux\na=sendrecv\n";

    /// A Teams -> PSTN INVITE from `caller` of the tenant at `fqdn`.
    fn teams_call(fqdn: &str, caller: &str, call_id: &str) -> Message {
        request(&format!(
            "INVITE sip:+4969555000@{fqdn} SIP/2.0\n\
             Via: SIP/2.0/TCP 127.0.0.3:5061;branch=z9hG4bK{call_id}\n\
             Max-Forwards: 70\n\
             From: <sip:{caller}@sip.pstnhub.microsoft.com;user=phone>;tag=t1\n\
             To: <sip:+4969555000@{fqdn}>\n\
             Call-ID: {call_id}\n\
             CSeq: 1 INVITE\n\
             Contact: <sip:127.0.0.3:5061;transport=tcp>\n\
             Content-Type: application/sdp\n\
             Content-Length: {}\n\n{TEAMS_OFFER}",
            TEAMS_OFFER.len() + TEAMS_OFFER.lines().count()
        ))
    }

    /// The INVITE in `sent` whose Request-URI is on `host`.
    fn invite_to<'a>(sent: &'a [String], host: &str) -> Option<&'a String> {
        sent.iter().find(|m| {
            m.starts_with("INVITE ") && m.lines().next().is_some_and(|l| l.contains(host))
        })
    }

    /// The carrier at `ip` answers `invite` (as sent) with `status`.
    fn carrier_answers(bench: &mut Bench, invite: &str, ip: [u8; 4], status: u16) -> Vec<String> {
        let invite = Message::parse(
            Bytes::from(invite.to_owned()),
            &crate::sip::Limits::default(),
        )
        .unwrap();
        let response = crate::sip::ResponseBuilder::new(&invite, status, "Carrier")
            .to_tag("c1")
            .build();
        let response = Message::parse(response, &crate::sip::Limits::default()).unwrap();
        exchange(
            bench,
            response,
            source_in(FAILOVER_CONFIG, ip, TransportKind::Udp),
        )
    }

    fn trunk(bench: &Bench, name: &str) -> crate::routing::TrunkId {
        bench.calls.routing.trunk_by_name(name).unwrap()
    }

    /// Trunk failover takes the call's limiter slot along: after `a`'s 503 the call counts
    /// on `b` (and no longer on `a`), so `b`'s own limit of one call refuses a second call
    /// placed on it; when the call ends, `b` is free again.
    #[tokio::test]
    async fn trunk_failover_moves_the_limiter_slot_to_the_hops_trunk() {
        let mut bench = bench_with(FAILOVER_CONFIG);
        let teams = || source_in(FAILOVER_CONFIG, [127, 0, 0, 3], TransportKind::Tcp);
        let (a, b) = (trunk(&bench, "a"), trunk(&bench, "b"));
        let sent = exchange(
            &mut bench,
            teams_call("acme.sbc.example.test", "+4930123450", "f1"),
            teams(),
        );
        let to_a = invite_to(&sent, "@127.0.0.2").expect("INVITE to a").clone();
        assert_eq!(bench.calls.limiter.active_on_trunk(a), 1);

        let sent = carrier_answers(&mut bench, &to_a, [127, 0, 0, 2], 503);
        let to_b = invite_to(&sent, "@127.0.0.5").expect("INVITE to b").clone();
        assert_eq!(bench.calls.limiter.active_on_trunk(a), 0);
        assert_eq!(bench.calls.limiter.active_on_trunk(b), 1);

        let sent = exchange(
            &mut bench,
            teams_call("umbrella.sbc.example.test", "+4940555123", "f2"),
            teams(),
        );
        assert!(starts(&sent, "503"), "b is full: {sent:?}");
        assert!(sent[0].contains("Retry-After: "), "{sent:?}");

        let sent = carrier_answers(&mut bench, &to_b, [127, 0, 0, 5], 486);
        assert!(starts(&sent, "486"), "{sent:?}");
        assert_eq!(bench.calls.call_count(), 0);
        assert_eq!(bench.calls.limiter.active_on_trunk(b), 0);
        assert_eq!(bench.calls.limiter.active_global(), 0);
        bench.calls.shutdown();
    }

    /// A failover trunk at its limit is not tried: after `a`'s 503 the call skips `b` (busy
    /// with another call) and goes to `c`, counted there.
    #[tokio::test]
    async fn a_failover_trunk_at_its_limit_is_skipped() {
        let mut bench = bench_with(FAILOVER_CONFIG);
        let teams = || source_in(FAILOVER_CONFIG, [127, 0, 0, 3], TransportKind::Tcp);
        let (a, b, c) = (trunk(&bench, "a"), trunk(&bench, "b"), trunk(&bench, "c"));
        let sent = exchange(
            &mut bench,
            teams_call("umbrella.sbc.example.test", "+4940555123", "s1"),
            teams(),
        );
        assert!(invite_to(&sent, "@127.0.0.5").is_some(), "{sent:?}");
        let sent = exchange(
            &mut bench,
            teams_call("acme.sbc.example.test", "+4930123450", "s2"),
            teams(),
        );
        let to_a = invite_to(&sent, "@127.0.0.2").expect("INVITE to a").clone();
        let sent = carrier_answers(&mut bench, &to_a, [127, 0, 0, 2], 503);
        assert!(invite_to(&sent, "@127.0.0.5").is_none(), "{sent:?}");
        assert!(invite_to(&sent, "@127.0.0.6").is_some(), "{sent:?}");
        assert_eq!(bench.calls.limiter.active_on_trunk(a), 0);
        assert_eq!(bench.calls.limiter.active_on_trunk(b), 1);
        assert_eq!(bench.calls.limiter.active_on_trunk(c), 1);
        bench.calls.shutdown();
    }
}
