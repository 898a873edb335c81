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
mod reload;
mod requests;
mod responses;
mod sip_core;

pub use self::reload::ReloadError;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use prometheus::Registry;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::health::{HealthMetrics, PeerBoard};
use crate::ops::admin::{AdminContext, AdminServer, AdminView, ControlRequest, CoreRequest};
use crate::ops::systemd;
use tokio::task::JoinHandle;

use self::answers::IdentityTemplate;
use self::pingers::start_pingers;
use self::requests::{request_failures, RequestSender};
use self::responses::{answer_failures, spawn_response_sender};
use self::sip_core::{AppMetrics, Command, SipCore};
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
    #[error("admin API on {addr}: {reason}")]
    Admin { addr: SocketAddr, reason: String },
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
    /// The admin API's listener (`[admin]`), if configured.
    pub admin_addr: Option<SocketAddr>,
    /// The call detail record sinks (flushed at shutdown).
    pub cdr: Arc<crate::cdr::Cdr>,
    ops: OpsServer,
    admin: Option<AdminServer>,
    /// Reload and drain requests of the admin API, taken by [`supervise`].
    control: Option<mpsc::Receiver<ControlRequest>>,
    /// What the pingers learned of each peer (the admin API shows it).
    peers: Arc<PeerBoard>,
    /// The SIP core task, watched by [`run`].
    core: JoinHandle<()>,
    /// The pingers (aborted when a drain starts: no more OPTIONS to Microsoft).
    tasks: Vec<JoinHandle<()>>,
    commands: mpsc::Sender<Command>,
    drain_timeout: std::time::Duration,
    /// The configuration in force (what a reload is compared with).
    loaded: Loaded,
    health_metrics: HealthMetrics,
    config_metrics: self::reload::ConfigMetrics,
}

impl Running {
    /// Start a graceful drain: `/readyz` fails, Microsoft's OPTIONS and new INVITEs get 503
    /// (Microsoft fails over), our OPTIONS pings stop; calls in progress go on until they end
    /// or `drain_timeout` passes, then each gets BYE on both legs with a Reason. The receiver
    /// resolves once no call is left.
    pub async fn drain(&mut self) -> Result<oneshot::Receiver<()>, AppError> {
        self.readiness.set_draining(true);
        for task in self.tasks.drain(..) {
            task.abort();
        }
        let (drained, done) = oneshot::channel();
        let deadline = std::time::Instant::now() + self.drain_timeout;
        self.commands
            .send(Command::Drain { deadline, drained })
            .await
            .map_err(|_| AppError::CoreEnded(": it no longer takes commands".into()))?;
        Ok(done)
    }

    /// The SHA-1 digest (12 hex digits) of the configuration in force.
    pub fn config_digest(&self) -> &str {
        &self.loaded.digest
    }

    /// The drain timeout of the configuration this SBC runs.
    pub fn drain_timeout(&self) -> std::time::Duration {
        self.drain_timeout
    }

    pub async fn shutdown(self) {
        self.transport.shutdown();
        self.core.abort();
        for task in &self.tasks {
            task.abort();
        }
        self.ops.stop().await;
        if let Some(admin) = self.admin {
            admin.stop().await;
        }
        self.media.shutdown();
        // The calls' last records (a drain's included) reach their sinks before the exit.
        self.cdr.flush(Duration::from_secs(5)).await;
    }
}

/// Run until stopped. SIGHUP (or `POST /admin/reload`) reloads the configuration file.
/// SIGTERM or SIGINT (or `POST /admin/drain`) starts a graceful drain (see
/// [`Running::drain`]) and the process ends once no call is left; a second stop signal ends
/// it at once. Returns an error (the process then exits with a failure status, for its
/// supervisor to restart it) when the SIP core task ends by itself: without it no message
/// is handled. Under systemd (`Type=notify`) it reports READY, RELOADING and STOPPING,
/// extends the stop timeout while draining, and sends watchdog keep-alives only while
/// `/healthz` is healthy.
pub async fn run(loaded: Loaded) -> Result<(), AppError> {
    let signals = Signals::install()?;
    let running = start(&loaded).await?;
    tracing::info!(
        listeners = ?running.transport.local_addrs(),
        ops = %running.ops_addr,
        admin = ?running.admin_addr,
        tenants = loaded.config.tenants.len(),
        trunks = loaded.config.carrier_trunks.len(),
        "teams-sbc running"
    );
    supervise(running, Some(signals)).await
}

/// The process signals [`supervise`] acts on.
pub struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> Result<Signals, AppError> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            hup: signal(SignalKind::hangup()).map_err(AppError::Signal)?,
            term: signal(SignalKind::terminate()).map_err(AppError::Signal)?,
            int: signal(SignalKind::interrupt()).map_err(AppError::Signal)?,
        })
    }
}

/// Drive a started SBC until it stops (what [`run`] does after [`start`]): reload on SIGHUP
/// and `POST /admin/reload`, drain on a stop signal and `POST /admin/drain`, systemd
/// notifications, and the watch on the SIP core. `signals`: `None` serves the admin API's
/// requests only (tests run several SBCs in one process).
pub async fn supervise(mut running: Running, signals: Option<Signals>) -> Result<(), AppError> {
    let mut control = running.control.take();
    let (mut hup, mut stop) = match signals {
        Some(Signals { hup, term, int }) => (Some(hup), Some((term, int))),
        None => (None, None),
    };
    systemd::ready();
    let watchdog_every = systemd::watchdog_interval();
    let mut watchdog = tokio::time::interval(watchdog_every.unwrap_or(Duration::from_secs(3600)));
    // Resolves once a drain has no call left; until a drain starts, never (its sender is
    // kept alive here).
    let (_not_draining, mut drained) = oneshot::channel::<()>();
    let mut draining = false;
    let mut stop_signals = 0u32;
    // While draining: the stop timeout is extended in steps, up to the drain timeout plus
    // the time the calls' BYEs may take.
    let mut extend = tokio::time::interval(Duration::from_secs(10));
    let outcome = loop {
        tokio::select! {
            _ = next_hangup(&mut hup) => {
                // Logged and counted inside; the configuration in force stays on error.
                let _ = reload(&mut running).await;
            }
            _ = next_stop(&mut stop) => {
                stop_signals += 1;
                if stop_signals > 1 {
                    tracing::warn!("second stop signal: ending at once");
                    break Ok(());
                }
                if draining {
                    // Drained through the admin API first: `systemctl stop` waits for the
                    // same drain rather than cutting the calls it spares.
                    tracing::info!("stop signal: already draining (a second one ends at once)");
                    systemd::stopping(DRAIN_EXTEND);
                    continue;
                }
                drained = begin_drain(&mut running, "stop signal").await?;
                draining = true;
            }
            request = next_control(&mut control) => match request {
                ControlRequest::Reload(reply) => {
                    let _ = reply.send(reload(&mut running).await);
                }
                ControlRequest::Drain(reply) => {
                    let _ = reply.send(!draining);
                    if !draining {
                        drained = begin_drain(&mut running, "admin API").await?;
                        draining = true;
                    }
                }
            },
            _ = &mut drained, if draining => {
                tracing::info!("drained: no call left");
                break Ok(());
            }
            _ = extend.tick(), if draining => systemd::extend_timeout(DRAIN_EXTEND),
            _ = watchdog.tick(), if watchdog_every.is_some() => {
                if running.liveness.status(std::time::Instant::now()).0 {
                    systemd::watchdog();
                }
            }
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

/// Reload the configuration file, telling systemd; the new digest, or why nothing changed.
async fn reload(running: &mut Running) -> Result<String, String> {
    systemd::reloading();
    // Logged and counted inside.
    let result = running.reload_from_file().await;
    systemd::ready();
    result
        .map(|()| running.config_digest().to_string())
        .map_err(|e| e.to_string())
}

/// The first stage of a stop: drain, telling systemd.
async fn begin_drain(
    running: &mut Running,
    cause: &'static str,
) -> Result<oneshot::Receiver<()>, AppError> {
    tracing::info!(
        cause,
        timeout_seconds = running.drain_timeout().as_secs(),
        "draining (a second stop signal ends at once)"
    );
    systemd::stopping(DRAIN_EXTEND);
    systemd::status("draining");
    running.drain().await
}

async fn next_hangup(hup: &mut Option<tokio::signal::unix::Signal>) {
    match hup {
        Some(hup) => {
            hup.recv().await;
        }
        None => std::future::pending().await,
    }
}

async fn next_stop(stop: &mut Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>) {
    match stop {
        Some((term, int)) => tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        },
        None => std::future::pending().await,
    }
}

/// The admin API's next reload or drain; never without an admin API.
async fn next_control(control: &mut Option<mpsc::Receiver<ControlRequest>>) -> ControlRequest {
    match control {
        Some(requests) => match requests.recv().await {
            Some(request) => request,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// How much each STOPPING/EXTEND_TIMEOUT message buys while draining (renewed every 10 s).
const DRAIN_EXTEND: Duration = Duration::from_secs(30);

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
    let cdr = calls.cdr().clone();
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
        draining: None,
    };
    let core = tokio::spawn(core.run(inbound, commands_rx, call_events));
    let health_metrics = HealthMetrics::register(&registry)?;
    let config_metrics = self::reload::ConfigMetrics::register(&registry)?;
    config_metrics.in_force(None, &loaded.digest);
    let peers = Arc::new(PeerBoard::default());
    let tasks = match start_pingers(
        config,
        &identity,
        &health_metrics,
        &readiness,
        &peers,
        commands_tx.clone(),
    ) {
        Ok(tasks) => tasks,
        Err(e) => {
            core.abort();
            return Err(e);
        }
    };
    let (control_tx, control) = mpsc::channel(8);
    let admin = match start_admin(
        loaded,
        &registry,
        &commands_tx,
        control_tx,
        &call_traces,
        &media,
        &peers,
    )
    .await
    {
        Ok(admin) => admin,
        Err(e) => {
            core.abort();
            for task in &tasks {
                task.abort();
            }
            transport.shutdown();
            ops.stop().await;
            media.shutdown();
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
        admin_addr: admin.as_ref().map(|server| server.local_addr),
        cdr,
        ops,
        admin,
        control: Some(control),
        peers,
        core,
        tasks,
        commands: commands_tx,
        drain_timeout: std::time::Duration::from_secs(config.ops.drain_timeout_seconds),
        loaded: loaded.clone(),
        health_metrics,
        config_metrics,
    })
}

/// The admin API, when `[admin]` is configured: its listener, and the task that hands its
/// questions to the SIP core.
async fn start_admin(
    loaded: &Loaded,
    registry: &Registry,
    commands: &mpsc::Sender<Command>,
    control: mpsc::Sender<ControlRequest>,
    call_traces: &Arc<crate::dispatch::CallTraces>,
    media: &crate::media::MediaHandle,
    peers: &Arc<PeerBoard>,
) -> Result<Option<AdminServer>, AppError> {
    let Some(settings) = &loaded.config.admin else {
        return Ok(None);
    };
    let addr = settings.listen;
    let failed = |reason: String| AppError::Admin { addr, reason };
    let view = AdminView::of(loaded).map_err(failed)?;
    // The forwarder ends with the admin API (its senders) or the SIP core. Bounded: a
    // stuck core fills it and the handlers answer 503 after their timeout.
    let (core_tx, mut core_rx) = mpsc::channel::<CoreRequest>(16);
    let context = AdminContext {
        core: core_tx,
        control,
        traces: call_traces.clone(),
        media: media.clone(),
        peers: peers.clone(),
        view: arc_swap::ArcSwap::from_pointee(view),
        metrics: crate::ops::admin::auth::AdminMetrics::register(registry)?,
    };
    let server = AdminServer::start(addr, context)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let commands = commands.clone();
    tokio::spawn(async move {
        while let Some(request) = core_rx.recv().await {
            if commands.send(Command::Admin(request)).await.is_err() {
                return;
            }
        }
    });
    Ok(Some(server))
}
