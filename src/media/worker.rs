//! A forwarding worker: one OS thread owning an epoll set, the sockets of its sessions and
//! a flat slot table. The control plane reaches it only through a command channel that the
//! worker drains between batches (woken by an eventfd), so no lock is ever shared with the
//! packet path.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

use crate::media::cipher::SrtpStream;
use crate::media::dtmf_convert::{DtmfConverter, InbandDtmfPlan};
use crate::media::engine::{MediaEvent, SessionId};
use crate::media::faults::EventSink;
use crate::media::forward::{forward_step, Action, Ingress, PacketTime};
use crate::media::ice::IceCredentials;
use crate::media::inactivity::{InactivityChange, InactivityPolicy};
use crate::media::leg::{LegNotice, LegPair, LegSide, SocketRole};
use crate::media::metrics::{DropReason, MediaMetrics, WorkerTally};
use crate::media::rtp::PayloadMap;
use crate::media::sys::{from_sockaddr, to_sockaddr, Epoll, EventFd, PacketBatch};
use crate::ops::liveness::Heartbeat;

/// Packets received per recvmmsg call.
pub const BATCH: usize = 32;
/// Receive rounds per ready socket before giving the others a turn.
const ROUNDS_PER_SOCKET: usize = 4;
const WAKE_TOKEN: u64 = u64::MAX;

/// Socket positions of a session: carrier RTP, carrier RTCP, Teams RTP (rtcp-mux).
const CARRIER_RTP: usize = 0;
const CARRIER_RTCP: usize = 1;
const TEAMS_RTP: usize = 2;
const SOCKETS_PER_SESSION: usize = 3;

fn socket_position(leg: LegSide, role: SocketRole) -> usize {
    match (leg, role) {
        (LegSide::Carrier, SocketRole::Rtp) => CARRIER_RTP,
        (LegSide::Carrier, SocketRole::Rtcp) => CARRIER_RTCP,
        (LegSide::Teams, _) => TEAMS_RTP,
    }
}

fn ingress_of(position: usize) -> (LegSide, SocketRole) {
    match position {
        CARRIER_RTP => (LegSide::Carrier, SocketRole::Rtp),
        CARRIER_RTCP => (LegSide::Carrier, SocketRole::Rtcp),
        _ => (LegSide::Teams, SocketRole::Rtp),
    }
}

/// A session as handed to its worker.
pub struct SessionSetup {
    pub id: SessionId,
    pub sockets: [Option<UdpSocket>; SOCKETS_PER_SESSION],
    pub pair: LegPair,
}

/// Control-plane changes, applied between batches.
pub enum Command {
    Add(Box<SessionSetup>),
    SetRemote {
        id: SessionId,
        leg: LegSide,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
        rtcp_mux: bool,
    },
    SetSrtp {
        id: SessionId,
        leg: LegSide,
        inbound: Option<Box<SrtpStream>>,
        outbound: Option<Box<SrtpStream>>,
    },
    EnableIce {
        id: SessionId,
        leg: LegSide,
        credentials: IceCredentials,
        forks_open: bool,
    },
    SetPayloadMap {
        id: SessionId,
        ingress: LegSide,
        map: Box<PayloadMap>,
    },
    SetInbandDtmf {
        id: SessionId,
        plan: Option<InbandDtmfPlan>,
    },
    SetHold {
        id: SessionId,
        leg: LegSide,
        on_hold: bool,
    },
    Remove {
        id: SessionId,
    },
    /// Close everything and end the thread.
    Stop,
    /// Test hook: panic, as a bug in the worker would.
    #[cfg(any(test, feature = "test-hooks"))]
    Panic,
}

struct Session {
    id: SessionId,
    pair: LegPair,
    sockets: [Option<UdpSocket>; SOCKETS_PER_SESSION],
}

/// Where an outgoing packet of the batch leaves from (`None`: dropped).
type OutFd = Option<i32>;

pub struct Worker {
    epoll: Epoll,
    waker: Arc<EventFd>,
    commands: Receiver<Command>,
    events: EventSink,
    heartbeat: Heartbeat,
    metrics: MediaMetrics,
    policy: InactivityPolicy,
    epoch: Instant,
    batched_io: bool,
    slots: Vec<Option<Session>>,
    free_slots: Vec<usize>,
    index: HashMap<SessionId, usize>,
    batch: PacketBatch,
    out_fds: Vec<OutFd>,
    tally: WorkerTally,
    tick_millis: u64,
}

pub struct WorkerConfig {
    pub waker: Arc<EventFd>,
    /// Beaten once per epoll wake (on the engine's `epoch` clock); stopped when the thread
    /// ends, by return or by a panic unwinding it.
    pub heartbeat: Heartbeat,
    pub commands: Receiver<Command>,
    pub events: EventSink,
    pub metrics: MediaMetrics,
    pub policy: InactivityPolicy,
    pub epoch: Instant,
    pub batched_io: bool,
}

impl Worker {
    pub fn new(config: WorkerConfig) -> std::io::Result<Self> {
        let epoll = Epoll::new()?;
        epoll.add(config.waker.raw(), WAKE_TOKEN)?;
        // Check inactivity often enough to report within a quarter of the timeout.
        let tick_millis = (config.policy.timeout_millis / 4).clamp(5, 250);
        Ok(Self {
            epoll,
            waker: config.waker,
            commands: config.commands,
            events: config.events,
            heartbeat: config.heartbeat,
            metrics: config.metrics,
            policy: config.policy,
            epoch: config.epoch,
            batched_io: config.batched_io,
            slots: Vec::new(),
            free_slots: Vec::new(),
            index: HashMap::new(),
            batch: PacketBatch::new(BATCH),
            out_fds: vec![None; BATCH],
            tally: WorkerTally::default(),
            tick_millis,
        })
    }

    fn now(&self) -> PacketTime {
        PacketTime::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    /// Runs until every control handle is gone.
    pub fn run(mut self) {
        let _alive = self.heartbeat.stop_on_drop();
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut last_tick = 0u64;
        loop {
            let ready = match self.epoll.wait(&mut events, self.tick_millis as i32) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "media worker epoll failed; stopping");
                    return;
                }
            };
            // Commands first: a command queued before a packet was sent (a re-key, a new
            // remote) then always applies to that packet.
            if !self.apply_commands() {
                return;
            }
            for event in &events[..ready] {
                let token = event.u64;
                if token == WAKE_TOKEN {
                    self.waker.drain();
                } else {
                    self.service_socket(token);
                }
            }
            let now = self.now().millis;
            // The epoll wait above is bounded by the tick, so an idle worker beats too.
            self.heartbeat.beat_at(now);
            if now.saturating_sub(last_tick) >= self.tick_millis {
                last_tick = now;
                self.check_inactivity(now);
            }
            self.metrics.flush(&mut self.tally);
        }
    }

    fn service_socket(&mut self, token: u64) {
        let slot = (token >> 2) as usize;
        let position = (token & 3) as usize;
        let (leg, role) = ingress_of(position);
        for _ in 0..ROUNDS_PER_SOCKET {
            let Some(Some(session)) = self.slots.get_mut(slot) else {
                return;
            };
            let Some(fd) = session.sockets[position].as_ref().map(|s| s.as_raw_fd()) else {
                return;
            };
            let received = if self.batched_io {
                self.batch.receive(fd)
            } else {
                self.batch.receive_one(fd)
            };
            let count = match received {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let now = PacketTime::from_micros(self.epoch.elapsed().as_micros() as u64);
            for i in 0..count {
                self.out_fds[i] = None;
                let Some(from) = from_sockaddr(&self.batch.addrs[i]) else {
                    self.tally.dropped(DropReason::Malformed);
                    continue;
                };
                let ingress = Ingress {
                    leg,
                    socket: role,
                    from,
                };
                let len = self.batch.lens[i];
                let action = forward_step(
                    &mut session.pair,
                    ingress,
                    &mut self.batch.buffers[i],
                    len,
                    now,
                );
                match action {
                    Action::Forward {
                        leg: out_leg,
                        socket,
                        to,
                        len,
                    } => {
                        let out = socket_position(out_leg, socket);
                        self.out_fds[i] = session.sockets[out].as_ref().map(|s| s.as_raw_fd());
                        self.batch.lens[i] = len;
                        to_sockaddr(&to, &mut self.batch.addrs[i]);
                        self.tally.forwarded(leg.inbound_direction(), len);
                    }
                    Action::Reply { to, len } => {
                        self.out_fds[i] = Some(fd);
                        self.batch.lens[i] = len;
                        to_sockaddr(&to, &mut self.batch.addrs[i]);
                        self.tally.ice_checks_answered += 1;
                    }
                    Action::Drop(reason) => self.tally.dropped(reason),
                }
                if let Some(notice) = session.pair.leg_mut(leg).notice.take() {
                    let event = match notice {
                        LegNotice::Latched(remote) => MediaEvent::Latched {
                            session: session.id,
                            leg,
                            remote,
                        },
                        LegNotice::IceNominated(remote) => MediaEvent::IceNominated {
                            session: session.id,
                            leg,
                            remote,
                        },
                    };
                    // A notice the full queue drops is state this leg already holds.
                    self.events.send(event);
                }
            }
            self.send_batch(count);
            if count < self.batch.capacity() {
                return;
            }
        }
    }

    /// Sends the forwarded entries of the batch, one sendmmsg per run of equal sockets.
    fn send_batch(&mut self, count: usize) {
        let mut start = 0;
        while start < count {
            let Some(fd) = self.out_fds[start] else {
                start += 1;
                continue;
            };
            let mut end = start + 1;
            while end < count && self.out_fds[end] == Some(fd) {
                end += 1;
            }
            let sent = self.batch.send(fd, start, end, self.batched_io);
            for _ in sent..(end - start) {
                self.tally.dropped(DropReason::SendError);
            }
            start = end;
        }
    }

    /// Returns false when the control side is gone and the worker should stop.
    fn apply_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Stop) => return false,
                Ok(command) => self.apply(command),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn session_mut(&mut self, id: SessionId) -> Option<&mut Session> {
        let slot = *self.index.get(&id)?;
        self.slots.get_mut(slot)?.as_mut()
    }

    fn apply(&mut self, command: Command) {
        let now = self.now().millis;
        match command {
            Command::Stop => {}
            #[cfg(any(test, feature = "test-hooks"))]
            Command::Panic => panic!("media worker made to panic (test hook)"),
            Command::Add(setup) => self.add(*setup),
            Command::Remove { id } => self.remove(id),
            Command::SetRemote {
                id,
                leg,
                rtp,
                rtcp,
                rtcp_mux,
            } => {
                if let Some(s) = self.session_mut(id) {
                    s.pair.leg_mut(leg).set_remote(rtp, rtcp, rtcp_mux);
                }
            }
            Command::SetSrtp {
                id,
                leg,
                inbound,
                outbound,
            } => {
                if let Some(s) = self.session_mut(id) {
                    s.pair
                        .leg_mut(leg)
                        .set_srtp(inbound.map(|b| *b), outbound.map(|b| *b));
                }
            }
            Command::EnableIce {
                id,
                leg,
                credentials,
                forks_open,
            } => {
                if let Some(s) = self.session_mut(id) {
                    s.pair.leg_mut(leg).enable_ice(credentials, forks_open);
                }
            }
            Command::SetPayloadMap { id, ingress, map } => {
                if let Some(s) = self.session_mut(id) {
                    s.pair.leg_mut(ingress).inbound_payloads = *map;
                }
            }
            Command::SetInbandDtmf { id, plan } => {
                if let Some(s) = self.session_mut(id) {
                    let carrier = s.pair.leg_mut(LegSide::Carrier);
                    let current = carrier.inband_dtmf.as_ref().map(|c| c.plan());
                    if current != plan {
                        carrier.inband_dtmf = plan.map(DtmfConverter::new);
                    }
                }
            }
            Command::SetHold { id, leg, on_hold } => {
                if let Some(s) = self.session_mut(id) {
                    let state = s.pair.leg_mut(leg);
                    if state.on_hold && !on_hold {
                        state.inactivity.restart(now);
                    }
                    state.on_hold = on_hold;
                }
            }
        }
    }

    fn add(&mut self, setup: SessionSetup) {
        let slot = match self.free_slots.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        for (position, socket) in setup.sockets.iter().enumerate() {
            if let Some(socket) = socket {
                let token = ((slot as u64) << 2) | position as u64;
                if let Err(e) = self.epoll.add(socket.as_raw_fd(), token) {
                    tracing::error!(error = %e, session = setup.id.0, "cannot poll media socket");
                }
            }
        }
        self.index.insert(setup.id, slot);
        self.slots[slot] = Some(Session {
            id: setup.id,
            pair: setup.pair,
            sockets: setup.sockets,
        });
    }

    fn remove(&mut self, id: SessionId) {
        let Some(slot) = self.index.remove(&id) else {
            return;
        };
        if let Some(session) = self.slots.get_mut(slot).and_then(Option::take) {
            for socket in session.sockets.iter().flatten() {
                let _ = self.epoll.delete(socket.as_raw_fd());
            }
            // Sockets close here, when `session` drops.
        }
        self.free_slots.push(slot);
    }

    fn check_inactivity(&mut self, now: u64) {
        for session in self.slots.iter_mut().flatten() {
            for leg in [LegSide::Carrier, LegSide::Teams] {
                let state = session.pair.leg_mut(leg);
                let change = state.inactivity.poll(now, state.on_hold, self.policy);
                let event = match change {
                    InactivityChange::None => continue,
                    InactivityChange::BecameInactive => MediaEvent::Inactive {
                        session: session.id,
                        leg,
                    },
                    InactivityChange::BecameActive => MediaEvent::Active {
                        session: session.id,
                        leg,
                    },
                };
                if !self.events.send(event) {
                    // The queue is full: the next tick reports it again.
                    state.inactivity.retract_report();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::faults::{event_queue, FaultMetrics};
    use crate::media::leg::LegState;
    use crate::media::settings::LatchingMode;
    use crate::media::stats::LegCounters;

    fn silent_session(id: u64) -> SessionSetup {
        let leg = |side, has_rtcp_socket| {
            LegState::new(
                side,
                LatchingMode::Off,
                has_rtcp_socket,
                Arc::new(LegCounters::default()),
                0,
            )
        };
        SessionSetup {
            id: SessionId(id),
            sockets: [None, None, None],
            pair: LegPair {
                carrier: leg(LegSide::Carrier, true),
                teams: leg(LegSide::Teams, false),
            },
        }
    }

    #[test]
    fn an_inactivity_report_the_full_queue_refused_comes_on_a_later_tick() {
        let registry = prometheus::Registry::new();
        let (sink, mut events) = event_queue(1, FaultMetrics::register(&registry).unwrap());
        let (_commands, commands_rx) = std::sync::mpsc::sync_channel(1);
        let epoch = Instant::now();
        let mut worker = Worker::new(WorkerConfig {
            waker: Arc::new(EventFd::new().unwrap()),
            heartbeat: Heartbeat::new(epoch),
            commands: commands_rx,
            events: sink,
            metrics: MediaMetrics::register(&registry).unwrap(),
            policy: InactivityPolicy {
                timeout_millis: 1_000,
                hold_counts_as_activity: true,
            },
            epoch,
            batched_io: false,
        })
        .unwrap();
        worker.add(silent_session(1));
        worker.add(silent_session(2));

        // Four legs fall silent at once; the queue holds one report per tick here.
        let mut reported = Vec::new();
        for tick in 0..8u64 {
            worker.check_inactivity(1_000 + tick * 250);
            while let Ok(event) = events.try_recv() {
                reported.push(event);
            }
        }
        let inactive = |session, leg| MediaEvent::Inactive {
            session: SessionId(session),
            leg,
        };
        reported.sort_by_key(|e| match e {
            MediaEvent::Inactive { session, leg } => (session.0, *leg == LegSide::Teams),
            _ => (u64::MAX, true),
        });
        assert_eq!(
            reported,
            vec![
                inactive(1, LegSide::Carrier),
                inactive(1, LegSide::Teams),
                inactive(2, LegSide::Carrier),
                inactive(2, LegSide::Teams),
            ],
            "every report exactly once"
        );
    }
}
