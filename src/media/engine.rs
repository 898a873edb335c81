//! The media engine's control API. Every call returns at once: sockets are bound here (so
//! the caller gets its addresses or an error synchronously), everything else is a command
//! queued to the worker that owns the session.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use dashmap::DashMap;
use ipnet::IpNet;

use crate::media::cipher::{SrtpKeys, SrtpStream};
use crate::media::dtmf_convert::InbandDtmfPlan;
use crate::media::faults::{
    event_queue, least_loaded_alive, FaultMetrics, MediaEvents, EVENT_QUEUE,
};
use crate::media::ice::IceCredentials;
use crate::media::inactivity::InactivityPolicy;
use crate::media::leg::{LegPair, LegSide, LegState};
use crate::media::metrics::MediaMetrics;
use crate::media::playout::{ComfortNoisePlan, Ringback};
use crate::media::ports::PortPool;
use crate::media::rtp::{PayloadMap, PayloadMapping};
use crate::media::settings::{LatchingMode, MediaSettings};
use crate::media::stats::{LegCounters, LegStats};
use crate::media::sys::EventFd;
use crate::media::worker::{Command, SessionSetup, Worker, WorkerConfig};
use crate::ops::liveness::{Heartbeat, STALE_AFTER};

/// Identifies a media session (a pair of legs) for its whole life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// Direction of a payload type mapping: packets arriving on `from` leave on the other leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapDirection {
    CarrierToTeams,
    TeamsToCarrier,
}

impl MapDirection {
    fn ingress(self) -> LegSide {
        match self {
            MapDirection::CarrierToTeams => LegSide::Carrier,
            MapDirection::TeamsToCarrier => LegSide::Teams,
        }
    }
}

/// What the engine tells the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    /// No RTP or RTCP on the leg for the inactivity timeout (once per silent period).
    Inactive { session: SessionId, leg: LegSide },
    /// Media is flowing again on a leg previously reported inactive.
    Active { session: SessionId, leg: LegSide },
    /// Symmetric RTP (or, on an ICE leg, the first media source) moved the remote address.
    Latched {
        session: SessionId,
        leg: LegSide,
        remote: SocketAddr,
    },
    /// A USE-CANDIDATE check nominated a new remote address on an ICE-lite leg.
    IceNominated {
        session: SessionId,
        leg: LegSide,
        remote: SocketAddr,
    },
}

/// Local addresses of one leg, as they go into SDP (advertised IP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegAddresses {
    pub rtp: SocketAddr,
    /// Separate RTCP address (RTP port + 1) on the carrier leg; equal to `rtp` when the
    /// leg muxes RTCP (Teams leg).
    pub rtcp: SocketAddr,
}

/// A newly created session and where its legs listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionAllocation {
    pub id: SessionId,
    pub carrier: LegAddresses,
    pub teams: LegAddresses,
}

/// RTP addresses of one leg: ours (as advertised in SDP) and the peer's (from its SDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegMediaAddresses {
    pub local: SocketAddr,
    pub remote: Option<SocketAddr>,
}

/// Counters of both legs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionStats {
    pub carrier: LegStats,
    pub teams: LegStats,
}

impl SessionStats {
    pub fn leg(&self, leg: LegSide) -> &LegStats {
        match leg {
            LegSide::Carrier => &self.carrier,
            LegSide::Teams => &self.teams,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("no media interface named {0:?}")]
    UnknownInterface(String),
    #[error("no such media session")]
    UnknownSession,
    #[error("media port range of interface {0:?} exhausted")]
    PortsExhausted(String),
    #[error("media settings: {0}")]
    Settings(String),
    #[error("media engine stopped")]
    Stopped,
    #[error("no media worker is alive")]
    NoLiveWorker,
    #[error("media worker not taking commands (stuck)")]
    WorkerBusy,
    #[error("media I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("media metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

struct Interface {
    name: String,
    advertised: std::net::IpAddr,
    pool: Mutex<PortPool>,
}

/// Commands waiting for one worker. A live worker drains its queue at every wake, within
/// milliseconds; only a stuck one fills it, and then commands are refused (and counted)
/// instead of piling up.
pub const COMMAND_QUEUE: usize = 4096;

struct WorkerLink {
    commands: SyncSender<Command>,
    waker: Arc<EventFd>,
    sessions: AtomicUsize,
    heartbeat: Heartbeat,
    /// Placement has seen this worker dead or stuck (logged and counted once per failure).
    failed: AtomicBool,
}

struct SessionRecord {
    worker: usize,
    /// (interface index, port) of every socket, released on removal.
    ports: Vec<(usize, u16)>,
    counters: [Arc<LegCounters>; 2],
    /// RTP addresses of each leg (carrier, Teams) for the admin API: ours as advertised,
    /// the peer's from its SDP.
    local: [SocketAddr; 2],
    remote: [Option<SocketAddr>; 2],
}

struct Shared {
    interfaces: Vec<Interface>,
    workers: Vec<WorkerLink>,
    sessions: DashMap<SessionId, SessionRecord>,
    next_id: AtomicU64,
    latching: LatchingMode,
    epoch: Instant,
    metrics: MediaMetrics,
    faults: FaultMetrics,
    /// Session creation found no live worker (logged once per outage).
    none_alive: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The command senders drop with `self`; wake the workers so they notice at once.
        for w in &self.workers {
            w.waker.signal();
        }
    }
}

/// Starts the media engine.
pub struct MediaEngine;

impl MediaEngine {
    /// Spawns the forwarding workers and returns the control handle and the event stream.
    pub fn start(
        settings: MediaSettings,
        registry: &prometheus::Registry,
    ) -> Result<(MediaHandle, MediaEvents), MediaError> {
        settings.validate().map_err(MediaError::Settings)?;
        let metrics = MediaMetrics::register(registry)?;
        let faults = FaultMetrics::register(registry)?;
        let epoch = Instant::now();
        let policy = InactivityPolicy {
            timeout_millis: settings.inactivity_timeout.as_millis().max(1) as u64,
            hold_counts_as_activity: settings.hold_counts_as_activity,
        };
        let (events_tx, events_rx) = event_queue(EVENT_QUEUE, faults.clone());
        let mut workers = Vec::new();
        let mut threads = Vec::new();
        for n in 0..settings.worker_count() {
            let (commands_tx, commands_rx) = mpsc::sync_channel(COMMAND_QUEUE);
            let waker = Arc::new(EventFd::new()?);
            let heartbeat = Heartbeat::new(epoch);
            let worker = Worker::new(WorkerConfig {
                waker: waker.clone(),
                heartbeat: heartbeat.clone(),
                commands: commands_rx,
                events: events_tx.clone(),
                metrics: metrics.clone(),
                policy,
                epoch,
                batched_io: settings.batch_io,
                rtcp_reports: settings.rtcp_reports,
            })?;
            let thread = std::thread::Builder::new()
                .name(format!("media-{n}"))
                .spawn(move || worker.run())?;
            threads.push(thread);
            workers.push(WorkerLink {
                commands: commands_tx,
                waker,
                sessions: AtomicUsize::new(0),
                heartbeat,
                failed: AtomicBool::new(false),
            });
        }
        let interfaces = settings
            .interfaces
            .iter()
            .map(|i| Interface {
                name: i.name.clone(),
                advertised: i.advertised(),
                pool: Mutex::new(PortPool::new(i.bind_ip, i.port_min, i.port_max)),
            })
            .collect();
        let shared = Arc::new(Shared {
            interfaces,
            workers,
            sessions: DashMap::new(),
            next_id: AtomicU64::new(1),
            latching: settings.latching,
            epoch,
            metrics,
            faults,
            none_alive: AtomicBool::new(false),
            threads: Mutex::new(threads),
        });
        Ok((MediaHandle { shared }, events_rx))
    }
}

/// Cheap, cloneable, thread-safe control handle.
#[derive(Clone)]
pub struct MediaHandle {
    shared: Arc<Shared>,
}

impl MediaHandle {
    fn interface(&self, name: &str) -> Result<usize, MediaError> {
        self.shared
            .interfaces
            .iter()
            .position(|i| i.name == name)
            .ok_or_else(|| MediaError::UnknownInterface(name.to_string()))
    }

    fn release_ports(&self, ports: &[(usize, u16)]) {
        for &(iface, port) in ports {
            if let Some(i) = self.shared.interfaces.get(iface) {
                if let Ok(mut pool) = i.pool.lock() {
                    pool.release(port);
                }
            }
        }
    }

    /// Allocates and binds the sockets of a new session: an even/odd RTP/RTCP pair on the
    /// carrier interface and one rtcp-mux port on the Teams interface, each drawn at random
    /// from its range. `carrier_sources`: the networks the carrier may send media from
    /// besides the hosts its SDP names (the trunk's source networks); media from anywhere
    /// else is dropped.
    pub fn create_session(
        &self,
        carrier_interface: &str,
        teams_interface: &str,
        carrier_sources: &[IpNet],
    ) -> Result<SessionAllocation, MediaError> {
        let carrier_if = self.interface(carrier_interface)?;
        let teams_if = self.interface(teams_interface)?;
        let worker = self.live_worker()?;
        let (carrier_port, carrier_rtp, carrier_rtcp) = {
            let iface = &self.shared.interfaces[carrier_if];
            let mut pool = iface.pool.lock().map_err(|_| MediaError::Stopped)?;
            pool.allocate_pair()
                .map_err(|_| MediaError::PortsExhausted(iface.name.clone()))?
        };
        let teams = {
            let iface = &self.shared.interfaces[teams_if];
            let mut pool = iface.pool.lock().map_err(|_| MediaError::Stopped)?;
            pool.allocate_single()
                .map_err(|_| MediaError::PortsExhausted(iface.name.clone()))
        };
        let (teams_port, teams_rtp) = match teams {
            Ok(t) => t,
            Err(e) => {
                self.release_ports(&[(carrier_if, carrier_port), (carrier_if, carrier_port + 1)]);
                return Err(e);
            }
        };
        let ports = vec![
            (carrier_if, carrier_port),
            (carrier_if, carrier_port + 1),
            (teams_if, teams_port),
        ];
        let id = SessionId(self.shared.next_id.fetch_add(1, Ordering::Relaxed));
        let counters = [
            Arc::new(LegCounters::default()),
            Arc::new(LegCounters::default()),
        ];
        let now = self.shared.epoch.elapsed().as_millis() as u64;
        let mut pair = LegPair {
            carrier: LegState::new(
                LegSide::Carrier,
                self.shared.latching,
                true,
                counters[0].clone(),
                now,
            ),
            teams: LegState::new(
                LegSide::Teams,
                LatchingMode::Off,
                false,
                counters[1].clone(),
                now,
            ),
        };
        pair.carrier.set_allowed_sources(carrier_sources);
        let setup = SessionSetup {
            id,
            sockets: [Some(carrier_rtp), Some(carrier_rtcp), Some(teams_rtp)],
            pair,
        };
        // The worker gets the session before anyone can name it: a Remove (from
        // `shutdown`, say) therefore always queues behind its Add.
        if self.send(worker, Command::Add(Box::new(setup))).is_err() {
            self.release_ports(&ports);
            return Err(MediaError::Stopped);
        }
        self.shared.workers[worker]
            .sessions
            .fetch_add(1, Ordering::Relaxed);
        self.shared.metrics.sessions_active.inc();
        self.shared.metrics.legs_active.add(2);
        let carrier_ip = self.shared.interfaces[carrier_if].advertised;
        let teams_ip = self.shared.interfaces[teams_if].advertised;
        self.shared.sessions.insert(
            id,
            SessionRecord {
                worker,
                ports,
                counters,
                local: [
                    SocketAddr::new(carrier_ip, carrier_port),
                    SocketAddr::new(teams_ip, teams_port),
                ],
                remote: [None, None],
            },
        );
        Ok(SessionAllocation {
            id,
            carrier: LegAddresses {
                rtp: SocketAddr::new(carrier_ip, carrier_port),
                rtcp: SocketAddr::new(carrier_ip, carrier_port + 1),
            },
            teams: LegAddresses {
                rtp: SocketAddr::new(teams_ip, teams_port),
                rtcp: SocketAddr::new(teams_ip, teams_port),
            },
        })
    }

    /// The least loaded worker whose heartbeat is alive. A worker that panicked (its
    /// heartbeat stopped as the thread unwound) or is stuck (no heartbeat for
    /// [`STALE_AFTER`]) gets no new session: its sockets would never be read.
    fn live_worker(&self) -> Result<usize, MediaError> {
        let now = Instant::now();
        let loads = self.shared.workers.iter().enumerate().map(|(index, w)| {
            (
                w.sessions.load(Ordering::Relaxed),
                self.worker_alive(index, w, now),
            )
        });
        match least_loaded_alive(loads) {
            Some(worker) => {
                self.shared.none_alive.store(false, Ordering::Relaxed);
                Ok(worker)
            }
            None => {
                self.shared
                    .faults
                    .sessions_refused
                    .with_label_values(&["no_live_worker"])
                    .inc();
                if !self.shared.none_alive.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        "no media worker is alive: new sessions are refused \
                         (media_sessions_refused_total); logged once"
                    );
                }
                Err(MediaError::NoLiveWorker)
            }
        }
    }

    /// Whether worker `index` beats; a change either way is logged (and a failure counted)
    /// once.
    fn worker_alive(&self, index: usize, worker: &WorkerLink, now: Instant) -> bool {
        let pulse = worker.heartbeat.pulse(now, STALE_AFTER);
        let alive = pulse.is_alive();
        if worker.failed.swap(!alive, Ordering::Relaxed) == alive {
            if alive {
                tracing::warn!(worker = index, "media worker alive again");
            } else {
                self.shared.faults.worker_failures.inc();
                tracing::error!(
                    worker = index,
                    state = ?pulse,
                    "media worker dead or stuck; no new sessions go to it"
                );
            }
        }
        alive
    }

    /// Every worker's heartbeat, in worker order, for `/healthz`.
    pub fn heartbeats(&self) -> Vec<Heartbeat> {
        self.shared
            .workers
            .iter()
            .map(|w| w.heartbeat.clone())
            .collect()
    }

    /// Test hook: make worker `worker` panic, as a bug in it would. In a release build
    /// (`panic = "abort"`) that ends the process; under test it unwinds that thread only.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn panic_worker(&self, worker: usize) -> Result<(), MediaError> {
        self.send(worker, Command::Panic)
    }

    /// Test hook: which worker owns session `id`.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn worker_of(&self, id: SessionId) -> Option<usize> {
        self.shared.sessions.get(&id).map(|r| r.worker)
    }

    fn send(&self, worker: usize, command: Command) -> Result<(), MediaError> {
        let link = self.shared.workers.get(worker).ok_or(MediaError::Stopped)?;
        match link.commands.try_send(command) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.shared.faults.commands_refused.inc();
                return Err(MediaError::WorkerBusy);
            }
            Err(TrySendError::Disconnected(_)) => return Err(MediaError::Stopped),
        }
        link.waker.signal();
        Ok(())
    }

    fn send_to_session(&self, id: SessionId, command: Command) -> Result<(), MediaError> {
        let worker = self
            .shared
            .sessions
            .get(&id)
            .map(|r| r.worker)
            .ok_or(MediaError::UnknownSession)?;
        self.send(worker, command)
    }

    /// Where a leg's peer receives media (from SDP). `rtcp` is its `a=rtcp` address when it
    /// does not mux; `None` then means RTP port + 1.
    pub fn set_remote(
        &self,
        id: SessionId,
        leg: LegSide,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
        rtcp_mux: bool,
    ) -> Result<(), MediaError> {
        if let Some(mut record) = self.shared.sessions.get_mut(&id) {
            let index = match leg {
                LegSide::Carrier => 0,
                LegSide::Teams => 1,
            };
            if let Some(remote) = record.remote.get_mut(index) {
                *remote = Some(rtp);
            }
        }
        self.send_to_session(
            id,
            Command::SetRemote {
                id,
                leg,
                rtp,
                rtcp,
                rtcp_mux,
            },
        )
    }

    /// Installs SRTP on a leg: `inbound` decrypts what the peer sends (the peer's key),
    /// `outbound` encrypts what we send (our key). A new key gets a fresh context (rollover
    /// counter 0); a key already in use keeps its context (counters and replay state go on),
    /// so the caller must announce a new key of ours whenever it wants a new outbound
    /// context. `None` means no SRTP in that direction (the Teams leg then passes nothing).
    /// While ICE-lite accepts any remote agent (forks before the 200) the inbound keys
    /// replaced still authenticate, until an `enable_ice_lite` names the agent.
    pub fn set_srtp(
        &self,
        id: SessionId,
        leg: LegSide,
        inbound: Option<SrtpKeys>,
        outbound: Option<SrtpKeys>,
    ) -> Result<(), MediaError> {
        let inbound = inbound.map(|k| Box::new(SrtpStream::new(&k)));
        let outbound = outbound.map(|k| Box::new(SrtpStream::new(&k)));
        self.send_to_session(
            id,
            Command::SetSrtp {
                id,
                leg,
                inbound,
                outbound,
            },
        )
    }

    /// Makes the leg answer STUN connectivity checks as an ICE-lite agent. `remote_ufrag`
    /// `None` accepts checks of any remote agent (Teams' SDP from a 18x: every forked client
    /// may check, row 52; or an SDP without ICE). `forks_open` (a 18x only) keeps the inbound
    /// keys a later fork's key replaces until the answer. Calling it again keeps a nomination
    /// only under the same local ufrag and only the named remote agent's own (see
    /// `LegState::enable_ice`); otherwise media goes back to the signalled address.
    pub fn enable_ice_lite(
        &self,
        id: SessionId,
        leg: LegSide,
        local_ufrag: &str,
        local_pwd: &str,
        remote_ufrag: Option<&str>,
        forks_open: bool,
    ) -> Result<(), MediaError> {
        let credentials = IceCredentials {
            local_ufrag: local_ufrag.to_string(),
            local_pwd: local_pwd.to_string(),
            remote_ufrag: remote_ufrag.map(str::to_string),
        };
        self.send_to_session(
            id,
            Command::EnableIce {
                id,
                leg,
                credentials,
                forks_open,
            },
        )
    }

    /// Payload type rewrite (and clock rates for jitter) for one direction; replaces any
    /// earlier map of that direction. Unlisted payload types pass unchanged at 8000 Hz.
    pub fn set_payload_map(
        &self,
        id: SessionId,
        direction: MapDirection,
        mappings: &[PayloadMapping],
    ) -> Result<(), MediaError> {
        self.send_to_session(
            id,
            Command::SetPayloadMap {
                id,
                ingress: direction.ingress(),
                map: Box::new(PayloadMap::from_mappings(mappings)),
            },
        )
    }

    /// In-band DTMF conversion on the carrier leg (row 48): `Some` when the carrier sends
    /// G.711 without telephone-event and Teams takes events; `None` stops it. The same plan
    /// again keeps a digit in progress.
    pub fn set_inband_dtmf(
        &self,
        id: SessionId,
        plan: Option<InbandDtmfPlan>,
    ) -> Result<(), MediaError> {
        self.send_to_session(id, Command::SetInbandDtmf { id, plan })
    }

    /// Comfort noise (row 49) arriving from the other leg that `leg` did not negotiate:
    /// turned into G.711 noise (filling the silence after it) or left out, as `plan` says;
    /// `None` relays CN as any other payload.
    pub fn set_comfort_noise(
        &self,
        id: SessionId,
        leg: LegSide,
        plan: Option<ComfortNoisePlan>,
    ) -> Result<(), MediaError> {
        self.send_to_session(id, Command::SetComfortNoise { id, leg, plan })
    }

    /// Ringback towards the carrier leg (row 38): `Some` starts it (what the Teams leg sends
    /// the carrier is left out meanwhile), `None` stops it. The same ringback again keeps
    /// its cadence.
    pub fn set_ringback(
        &self,
        id: SessionId,
        ringback: Option<Ringback>,
    ) -> Result<(), MediaError> {
        self.send_to_session(id, Command::SetRingback { id, ringback })
    }

    /// Marks a leg on hold (or off hold; leaving hold restarts its inactivity clock).
    pub fn set_hold(&self, id: SessionId, leg: LegSide, on_hold: bool) -> Result<(), MediaError> {
        self.send_to_session(id, Command::SetHold { id, leg, on_hold })
    }

    /// Tears a session down; its sockets close on the worker and its ports return to the pool.
    pub fn remove_session(&self, id: SessionId) -> Result<(), MediaError> {
        let (_, record) = self
            .shared
            .sessions
            .remove(&id)
            .ok_or(MediaError::UnknownSession)?;
        let result = self.send(record.worker, Command::Remove { id });
        if let Some(w) = self.shared.workers.get(record.worker) {
            w.sessions.fetch_sub(1, Ordering::Relaxed);
        }
        self.release_ports(&record.ports);
        self.shared.metrics.sessions_active.dec();
        self.shared.metrics.legs_active.sub(2);
        result
    }

    /// Current counters of both legs (atomics written by the worker).
    pub fn stats(&self, id: SessionId) -> Option<SessionStats> {
        let record = self.shared.sessions.get(&id)?;
        Some(SessionStats {
            carrier: record.counters[0].snapshot(),
            teams: record.counters[1].snapshot(),
        })
    }

    /// RTP addresses of both legs (carrier, Teams).
    pub fn addresses(&self, id: SessionId) -> Option<[LegMediaAddresses; 2]> {
        let record = self.shared.sessions.get(&id)?;
        Some([0, 1].map(|leg| LegMediaAddresses {
            local: record.local[leg],
            remote: record.remote[leg],
        }))
    }

    pub fn session_count(&self) -> usize {
        self.shared.sessions.len()
    }

    /// Milliseconds since the engine started (the clock of `LegStats::last_rx_millis`).
    pub fn now_millis(&self) -> u64 {
        self.shared.epoch.elapsed().as_millis() as u64
    }

    /// Stops all workers and waits for them; other handles then get `MediaError::Stopped`.
    pub fn shutdown(&self) {
        let ids: Vec<SessionId> = self.shared.sessions.iter().map(|r| *r.key()).collect();
        for id in ids {
            let _ = self.remove_session(id);
        }
        let threads: Vec<JoinHandle<()>> = match self.shared.threads.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(_) => return,
        };
        for w in &self.shared.workers {
            let _ = w.commands.try_send(Command::Stop);
            w.waker.signal();
        }
        for t in threads {
            let _ = t.join();
        }
    }
}

/// Sockets (file descriptors) each session holds: carrier RTP + RTCP, Teams RTP.
pub const SOCKETS_PER_SESSION: usize = 3;

#[cfg(test)]
mod tests {
    use super::*;

    use crate::media::settings::InterfaceSettings;
    use crate::ops::Pulse;
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    #[test]
    fn handle_is_send_and_sync() {
        fn check<T: Send + Sync + Clone>() {}
        check::<MediaHandle>();
    }

    fn wait_stopped(media: &MediaHandle, worker: usize) {
        for _ in 0..1000 {
            if media.heartbeats()[worker].pulse(Instant::now(), STALE_AFTER) == Pulse::Stopped {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("media worker {worker} still beats after its panic");
    }

    #[test]
    fn sessions_avoid_a_worker_that_panicked_and_none_alive_refuses_cleanly() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let settings = MediaSettings {
            interfaces: vec![
                InterfaceSettings::new("carrier", lo, 47140, 47179),
                InterfaceSettings::new("teams", lo, 47180, 47199),
            ],
            workers: 2,
            ..MediaSettings::default()
        };
        let registry = prometheus::Registry::new();
        let (media, _events) = MediaEngine::start(settings, &registry).unwrap();
        assert!(media
            .heartbeats()
            .iter()
            .all(|h| h.pulse(Instant::now(), STALE_AFTER).is_alive()));

        // Worker 0 is the least loaded, and the one that dies.
        media.panic_worker(0).unwrap();
        wait_stopped(&media, 0);
        let mut sessions = Vec::new();
        for _ in 0..4 {
            let session = media.create_session("carrier", "teams", &[]).unwrap();
            assert_eq!(media.worker_of(session.id), Some(1));
            sessions.push(session.id);
        }
        assert_eq!(media.shared.faults.worker_failures.get(), 1, "counted once");

        media.panic_worker(1).unwrap();
        wait_stopped(&media, 1);
        assert!(matches!(
            media.create_session("carrier", "teams", &[]),
            Err(MediaError::NoLiveWorker)
        ));
        assert!(matches!(
            media.create_session("carrier", "teams", &[]),
            Err(MediaError::NoLiveWorker)
        ));
        let refused = &media.shared.faults.sessions_refused;
        assert_eq!(refused.with_label_values(&["no_live_worker"]).get(), 2);
        assert_eq!(media.shared.faults.worker_failures.get(), 2);
        // Sessions of dead workers can still be removed; their ports come back.
        for id in sessions {
            let _ = media.remove_session(id);
        }
        assert_eq!(media.session_count(), 0);
        media.shutdown();
    }
}
