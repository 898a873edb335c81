//! Wiring of transports, transactions, health and ops into a running SBC.
//!
//! One task (the SIP core) owns the [`TransactionLayer`]: it is driven by received messages,
//! by OPTIONS pings the pingers ask it to send, and by the layer's own `poll_timeout`. Sends
//! happen outside it: responses go through one ordered queue (those needing a new
//! connection in their own bounded lanes, see [`responses`]), new requests through one
//! ordered lane per destination (a TLS connect to one peer must not stall the others, see
//! [`requests`]), and failures come back as commands.
//!
//! Faults: the SIP core and every media worker beat a heartbeat that `/healthz` checks
//! ([`crate::ops::liveness`]); [`run`] ends the process with an error when the SIP core task
//! ends on its own, and a release build aborts on any panic (`panic = "abort"`), so a
//! supervisor (packaging/teams-sbc.service) restarts it rather than leaving a zombie.
//!
//! Until the call layer exists, requests other than OPTIONS get a clear final answer: INVITE
//! 503, in-dialog requests 481, recognised but unsupported methods 405, unknown methods 501.

mod answers;
mod lanes;
mod pingers;
mod requests;
mod responses;
mod sip_core;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use prometheus::Registry;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use self::answers::IdentityTemplate;
use self::pingers::start_pingers;
use self::requests::{request_failures, RequestSender};
use self::responses::{answer_failures, spawn_response_sender};
use self::sip_core::{AppMetrics, SipCore};
use crate::dispatch::Route;

use crate::config::{mapping, Loaded};
use crate::ops::{Heartbeat, Liveness, OpsServer, ProcessMetrics, Readiness};
use crate::transaction::{TransactionLayer, TransactionMetrics};
use crate::transport::{Transport, TransportHandle};

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
    #[error("calls: {0}")]
    Calls(#[from] crate::dispatch::DispatchError),
    #[error("the SIP core task ended unexpectedly{0}")]
    CoreEnded(String),
}

/// A started SBC. Dropping it does not stop it; call [`Running::shutdown`].
pub struct Running {
    pub registry: Registry,
    pub readiness: Arc<Readiness>,
    /// What `/healthz` checks: the SIP core's and every media worker's heartbeat.
    pub liveness: Arc<Liveness>,
    pub ops_addr: SocketAddr,
    pub transport: TransportHandle,
    /// The media engine of the calls (its sessions' counters are in `registry`).
    pub media: crate::media::MediaHandle,
    /// Every call's SIP (row 60), in progress or recently ended, for the ops API.
    pub call_traces: Arc<crate::dispatch::CallTraces>,
    ops: OpsServer,
    /// The SIP core task, watched by [`run`].
    core: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    pub async fn shutdown(self) {
        self.transport.shutdown();
        self.core.abort();
        for task in &self.tasks {
            task.abort();
        }
        self.ops.stop().await;
        self.media.shutdown();
    }
}

/// Run until SIGTERM or SIGINT; SIGHUP reloads the TLS certificate and key. Returns an error
/// (the process then exits with a failure status, for its supervisor to restart it) when the
/// SIP core task ends by itself: without it no message is handled.
pub async fn run(loaded: Loaded) -> Result<(), AppError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).map_err(AppError::Signal)?;
    let mut term = signal(SignalKind::terminate()).map_err(AppError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(AppError::Signal)?;
    let mut running = start(&loaded).await?;
    tracing::info!(
        listeners = ?running.transport.local_addrs(),
        ops = %running.ops_addr,
        tenants = loaded.config.tenants.len(),
        trunks = loaded.config.carrier_trunks.len(),
        "teams-sbc running"
    );
    let outcome = loop {
        tokio::select! {
            _ = hup.recv() => match running.transport.reload_tls() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                Err(e) => tracing::error!(error = %e, "SIGHUP: TLS reload failed; old certificate kept"),
            },
            _ = term.recv() => break Ok(()),
            _ = int.recv() => break Ok(()),
            ended = &mut running.core => {
                let why = match ended {
                    Err(e) if e.is_panic() => ": it panicked".to_string(),
                    Err(e) => format!(": {e}"),
                    Ok(()) => String::new(),
                };
                tracing::error!(
                    "the SIP core task ended{why}; stopping for the supervisor to restart us"
                );
                break Err(AppError::CoreEnded(why));
            }
        }
    };
    tracing::info!("shutting down");
    running.readiness.set_listeners_bound(false);
    running.shutdown().await;
    outcome
}

/// The product headers of the responses the transaction layer makes itself (100 Trying,
/// 408, 503): X-MS-SBC towards Microsoft (row 59: every response), the configured text (if
/// any) towards carriers.
fn own_response_headers(loaded: &Loaded) -> crate::transaction::OwnResponseHeaders<Route> {
    let microsoft = loaded.microsoft_product().response_headers();
    let carrier = loaded.carrier_product().response_headers();
    Box::new(move |route| match route {
        Route::Back(source) if source.peer == Some(crate::transport::Peer::Microsoft) => {
            microsoft.clone()
        }
        _ => carrier.clone(),
    })
}

/// Start ops, transport, the SIP core and the pingers.
pub async fn start(loaded: &Loaded) -> Result<Running, AppError> {
    let config = &loaded.config;
    let registry = Registry::new();
    ProcessMetrics::register(&registry)?;
    let readiness = Arc::new(Readiness::new());
    let liveness = Arc::new(Liveness::default());
    let ops = OpsServer::start(
        config.ops.metrics_listen,
        registry.clone(),
        liveness.clone(),
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

    let (calls, call_events) =
        match crate::dispatch::start(config, &registry, transport.local_addrs()) {
            Ok(started) => started,
            Err(e) => {
                transport.shutdown();
                ops.stop().await;
                return Err(e.into());
            }
        };
    let media = calls.media().clone();
    let call_traces = calls.traces().clone();
    let heartbeat = Heartbeat::new(std::time::Instant::now());
    liveness.watch("sip_core", heartbeat.clone());
    for (n, worker) in media.heartbeats().into_iter().enumerate() {
        liveness.watch(&format!("media_worker_{n}"), worker);
    }
    let identity = IdentityTemplate::new(loaded, &transport);
    let (commands_tx, commands_rx) = mpsc::channel(1024);
    let core = SipCore {
        layer: TransactionLayer::new(
            mapping::transaction_settings(config),
            TransactionMetrics::register(&registry)?,
        )
        .with_own_response_headers(own_response_headers(loaded)),
        identity: identity.clone(),
        pending_pings: HashMap::new(),
        responses: spawn_response_sender(
            transport.clone(),
            answer_failures(&registry, commands_tx.clone())?,
        ),
        requests: RequestSender::new(
            transport.clone(),
            request_failures(&registry, commands_tx.clone())?,
        ),
        heartbeat,
        calls,
        metrics: AppMetrics::register(&registry)?,
    };
    let core = tokio::spawn(core.run(inbound, commands_rx, call_events));
    let tasks = match start_pingers(config, &identity, &registry, &readiness, commands_tx) {
        Ok(tasks) => tasks,
        Err(e) => {
            core.abort();
            return Err(e);
        }
    };
    Ok(Running {
        registry,
        readiness,
        liveness,
        ops_addr: ops.local_addr,
        transport,
        media,
        call_traces,
        ops,
        core,
        tasks,
    })
}
