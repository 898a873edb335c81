//! A forwarding worker: one OS thread owning an epoll set, the sockets of its sessions and
//! a flat slot table. The control plane reaches it only through a command channel that the
//! worker drains between batches (woken by an eventfd), so no lock is ever shared with the
//! packet path.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::media::cipher::SrtpStream;
use crate::media::dtmf_convert::{DtmfConverter, InbandDtmfPlan};
use crate::media::engine::{MediaEvent, SessionId};
use crate::media::faults::EventSink;
use crate::media::forward::{forward_step, Action, Ingress, PacketTime};
use crate::media::ice::IceCredentials;
use crate::media::inactivity::{InactivityChange, InactivityPolicy};
use crate::media::leg::{LegNotice, LegPair, LegSide, SocketRole};
use crate::media::metrics::{DropReason, Generated, MediaMetrics, WorkerTally};
use crate::media::playout::{ComfortNoisePlan, FrameKind, Ringback, CLOCK_RATE, FRAME_SAMPLES};
use crate::media::rtcp::ntp_timestamp;
use crate::media::rtp::{PayloadMap, RTP_HEADER_LEN};
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
    /// Row 49: CN from the other leg that `leg` did not negotiate.
    SetComfortNoise {
        id: SessionId,
        leg: LegSide,
        plan: Option<ComfortNoisePlan>,
    },
    /// Row 38: ringback towards the carrier leg (`None` stops it).
    SetRingback {
        id: SessionId,
        ringback: Option<Ringback>,
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
    /// Slots of sessions with a leg whose playout is active (ringback, noise fill), paced
    /// at 20 ms by the loop. Capacity follows the slot table, so a push never allocates.
    playing: Vec<usize>,
    /// Make RTCP reports on legs whose far side sends none (row 46).
    rtcp_reports: bool,
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
    pub rtcp_reports: bool,
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
            playing: Vec::new(),
            rtcp_reports: config.rtcp_reports,
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
            let wait = self.wait_millis(last_tick);
            let ready = match self.epoll.wait(&mut events, wait) {
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
            let now = self.now();
            // The epoll wait above is bounded by the tick, so an idle worker beats too.
            self.heartbeat.beat_at(now.millis);
            if !self.playing.is_empty() {
                self.run_playouts(now);
            }
            if now.millis.saturating_sub(last_tick) >= self.tick_millis {
                last_tick = now.millis;
                self.check_inactivity(now.millis);
                if self.rtcp_reports {
                    self.send_reports(now);
                }
            }
            self.metrics.flush(&mut self.tally);
        }
    }

    /// How long the loop may sleep: until the next tick, or the next generated frame due.
    fn wait_millis(&self, last_tick: u64) -> i32 {
        let now = self.now();
        let tick_due = last_tick + self.tick_millis;
        let mut wait = tick_due.saturating_sub(now.millis).min(self.tick_millis);
        for &slot in &self.playing {
            let Some(Some(session)) = self.slots.get(slot) else {
                continue;
            };
            for leg in [&session.pair.carrier, &session.pair.teams] {
                if let Some(due) = leg.playout.next_due_micros() {
                    // Rounded up: a frame is never sent early.
                    let until = due.saturating_sub(now.micros).div_ceil(1000);
                    wait = wait.min(until);
                }
            }
        }
        wait as i32
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
                // A CN packet may have started a noise fill towards the other leg.
                let towards = session.pair.leg_mut(leg.other());
                if towards.playout.is_active() && !towards.playout.scheduled {
                    towards.playout.scheduled = true;
                    self.playing.push(slot);
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
            Command::SetComfortNoise { id, leg, plan } => {
                if let Some(s) = self.session_mut(id) {
                    let state = s.pair.leg_mut(leg);
                    state.comfort_noise = plan;
                    if plan.is_none_or(|p| p.noise.is_none()) {
                        state.playout.stop_noise();
                    }
                }
            }
            Command::SetRingback { id, ringback } => {
                let micros = self.now().micros;
                let Some(&slot) = self.index.get(&id) else {
                    return;
                };
                if let Some(Some(s)) = self.slots.get_mut(slot) {
                    let carrier = s.pair.leg_mut(LegSide::Carrier);
                    match ringback {
                        Some(ringback) => carrier.playout.start_ringback(ringback, micros),
                        None => carrier.playout.stop_ringback(),
                    }
                    if carrier.playout.is_active() && !carrier.playout.scheduled {
                        carrier.playout.scheduled = true;
                        self.playing.push(slot);
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
        // Every slot fits in the playout list, so the packet path never grows it.
        self.playing
            .reserve(self.slots.len().saturating_sub(self.playing.len()));
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
        // A slot comes back for another session: it must not inherit a place in the list.
        self.playing.retain(|&playing| playing != slot);
        self.free_slots.push(slot);
    }

    /// Sends the generated frames now due (rows 38, 49), one batch at a time, and drops from
    /// the list the sessions that have nothing left to play.
    fn run_playouts(&mut self, now: PacketTime) {
        let silence_limit = self.policy.timeout_millis.saturating_mul(1000);
        let mut count = 0;
        let mut i = 0;
        while i < self.playing.len() {
            let slot = self.playing[i];
            let mut active = false;
            for leg in [LegSide::Carrier, LegSide::Teams] {
                if count == self.batch.capacity() {
                    self.send_batch(count);
                    count = 0;
                }
                let Some(Some(session)) = self.slots.get_mut(slot) else {
                    break;
                };
                let on_hold = session.pair.carrier.on_hold || session.pair.teams.on_hold;
                let state = session.pair.leg_mut(leg);
                if on_hold {
                    // A held call expects no media: no noise to fill its silence.
                    state.playout.stop_noise();
                }
                state.playout.expire(now.micros, silence_limit);
                // One frame per leg and pass: each waits for its turn (a late loop resumes
                // at the current frame, see `Playout::render`).
                let buffer = &mut self.batch.buffers[count];
                if let Some((len, to, kind)) = generate_frame(state, buffer, now) {
                    let position = socket_position(leg, SocketRole::Rtp);
                    self.out_fds[count] = session.sockets[position].as_ref().map(|s| s.as_raw_fd());
                    self.batch.lens[count] = len;
                    to_sockaddr(&to, &mut self.batch.addrs[count]);
                    state.counters.on_send(len);
                    self.tally.generated(kind);
                    count += 1;
                }
                if state.playout.is_active() {
                    active = true;
                } else {
                    state.playout.scheduled = false;
                }
            }
            if active {
                i += 1;
            } else {
                self.playing.swap_remove(i);
            }
        }
        self.send_batch(count);
    }

    /// Our own RTCP (row 46): on each leg whose report is due and whose far side's reports
    /// do not reach it, an SR/RR from the relay's counters, SRTCP on an SRTP leg.
    fn send_reports(&mut self, now: PacketTime) {
        let mut ntp = None;
        let mut count = 0;
        for slot in 0..self.slots.len() {
            for leg in [LegSide::Carrier, LegSide::Teams] {
                if count == self.batch.capacity() {
                    self.send_batch(count);
                    count = 0;
                }
                let Some(Some(session)) = self.slots.get_mut(slot) else {
                    break;
                };
                let state = session.pair.leg_mut(leg);
                // The schedule starts once the leg can be reported to at all.
                let Some((role, to)) = state.rtcp_destination() else {
                    continue;
                };
                if state.requires_srtp() && state.srtp_out.is_none() {
                    continue;
                }
                // A leg that has carried no RTP either way (a fork's early-media address that
                // never got the call) has no stream to report on: it gets nothing.
                if state.sent.ssrc().is_none() && state.receive_stats.source().is_none() {
                    continue;
                }
                if !state.reports.due(now.millis) || state.reports.far_side_reports(now.millis) {
                    continue;
                }
                let buffer = &mut self.batch.buffers[count];
                let ntp = *ntp.get_or_insert_with(|| ntp_timestamp(SystemTime::now()));
                let Some(mut len) = state.reports.write(
                    &state.sent,
                    &mut state.receive_stats,
                    now.micros,
                    ntp,
                    buffer,
                ) else {
                    continue;
                };
                if let Some(srtp) = state.srtp_out.as_mut() {
                    len = match srtp.protect_rtcp(buffer, len) {
                        Ok(n) => n,
                        Err(_) => continue,
                    };
                }
                let position = socket_position(leg, role);
                self.out_fds[count] = session.sockets[position].as_ref().map(|s| s.as_raw_fd());
                self.batch.lens[count] = len;
                to_sockaddr(&to, &mut self.batch.addrs[count]);
                state.counters.on_send(len);
                self.tally.generated(Generated::RtcpReport);
                count += 1;
            }
        }
        self.send_batch(count);
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

/// Renders `leg`'s frame due at `now` (if any) into `buffer` as a packet of the stream the
/// leg receives (`stats::SentStream`), SRTP-protected on an SRTP leg; its length, where it
/// goes and what it is. A frame with nowhere to go is skipped, so the cadence keeps time.
fn generate_frame(
    leg: &mut crate::media::leg::LegState,
    buffer: &mut [u8],
    now: PacketTime,
) -> Option<(usize, SocketAddr, Generated)> {
    if leg.playout.next_due_micros()? > now.micros {
        return None;
    }
    let sendable = !leg.requires_srtp() || leg.srtp_out.is_some();
    let Some(to) = leg.remote_rtp.filter(|_| sendable) else {
        leg.playout.skip(now.micros);
        return None;
    };
    let payload = buffer.get_mut(RTP_HEADER_LEN..)?;
    let frame = leg.playout.render(now.micros, payload)?;
    let header = leg.sent.next_generated(
        leg.reports.own_ssrc,
        FRAME_SAMPLES as u32,
        CLOCK_RATE,
        now.micros,
    );
    let [s0, s1] = header.sequence.to_be_bytes();
    let [t0, t1, t2, t3] = header.timestamp.to_be_bytes();
    let [c0, c1, c2, c3] = header.ssrc.to_be_bytes();
    let marker = u8::from(frame.marker) << 7;
    buffer.get_mut(..RTP_HEADER_LEN)?.copy_from_slice(&[
        0x80,
        marker | (frame.payload_type & 0x7f),
        s0,
        s1,
        t0,
        t1,
        t2,
        t3,
        c0,
        c1,
        c2,
        c3,
    ]);
    leg.sent.on_generated(FRAME_SAMPLES, CLOCK_RATE, now.micros);
    let mut len = RTP_HEADER_LEN + FRAME_SAMPLES;
    if let Some(srtp) = leg.srtp_out.as_mut() {
        len = srtp.protect_rtp(buffer, len).ok()?;
    }
    let kind = match frame.kind {
        FrameKind::Ringback => Generated::Ringback,
        FrameKind::ComfortNoise => Generated::ComfortNoise,
    };
    Some((len, to, kind))
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

    /// Rows 38, 49: generated frames go to the leg's remote as packets of the stream it
    /// receives (same SSRC, next numbers, a frame of timestamp each, marker on the first
    /// ringback frame), SRTP-protected on an SRTP leg; a frame with nowhere to go is
    /// consumed and nothing is sent.
    #[test]
    fn row38_generated_frames_continue_the_legs_stream() {
        use crate::media::cipher::{SrtpKeys, SrtpStream};
        use crate::media::inband_dtmf::{tone_share, G711};
        use crate::media::playout::{G711Target, TonePlan};
        use crate::media::srtp::{KeyMaterial, SrtpSuite};

        let mut carrier = LegState::new(
            LegSide::Carrier,
            LatchingMode::Off,
            true,
            Arc::new(LegCounters::default()),
            0,
        );
        let ringback = Ringback {
            plan: TonePlan::ETSI,
            target: G711Target {
                payload_type: 8,
                law: G711::Alaw,
            },
        };
        let mut buffer = [0u8; crate::media::sys::PACKET_BUFFER_LEN];
        carrier.playout.start_ringback(ringback, 0);
        assert_eq!(
            generate_frame(&mut carrier, &mut buffer, PacketTime::from_micros(0)),
            None,
            "no remote yet"
        );
        assert_eq!(carrier.sent.ssrc(), None, "nothing was sent");
        let remote: SocketAddr = "127.0.0.2:7000".parse().unwrap();
        carrier.set_remote(remote, None, false);
        let mut relayed = vec![0x80, 8, 0x12, 0x34, 0, 0, 0x10, 0, 0xaa, 0xbb, 0xcc, 0xdd];
        relayed.resize(172, 0xd5);
        carrier.sent.on_relayed(&mut relayed, 8000, 10_000);
        let mut headers = Vec::new();
        for n in 1..=3u64 {
            let now = PacketTime::from_micros(10_000 + n * 20_000);
            let (len, to, kind) = generate_frame(&mut carrier, &mut buffer, now).unwrap();
            assert_eq!((len, to, kind), (172, remote, Generated::Ringback));
            assert!(tone_share(G711::Alaw, &buffer[12..172], 425.0) > 0.9);
            headers.push(buffer[..12].to_vec());
            assert_eq!(
                generate_frame(&mut carrier, &mut buffer, now),
                None,
                "one per turn"
            );
        }
        let expect = |marker: u8, seq: u16, ts: u32| {
            let mut h = vec![0x80, marker | 8];
            h.extend_from_slice(&seq.to_be_bytes());
            h.extend_from_slice(&ts.to_be_bytes());
            h.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
            h
        };
        assert_eq!(
            headers,
            vec![
                expect(0x80, 0x1235, 0x1000 + 160),
                expect(0, 0x1236, 0x1000 + 320),
                expect(0, 0x1237, 0x1000 + 480),
            ]
        );

        // On the SRTP leg, under its outbound key.
        let key = SrtpKeys::new(
            SrtpSuite::AesCm128HmacSha1_80,
            KeyMaterial::new([3; 16], [4; 14]),
        );
        let mut teams = LegState::new(
            LegSide::Teams,
            LatchingMode::Off,
            false,
            Arc::new(LegCounters::default()),
            0,
        );
        teams.set_remote("127.0.0.3:9000".parse().unwrap(), None, true);
        teams.playout.start_ringback(ringback, 0);
        assert_eq!(
            generate_frame(&mut teams, &mut buffer, PacketTime::from_micros(0)),
            None,
            "never in the clear towards Teams"
        );
        teams.set_srtp(None, Some(SrtpStream::new(&key)));
        let (len, _, _) =
            generate_frame(&mut teams, &mut buffer, PacketTime::from_micros(20_000)).unwrap();
        let plain = SrtpStream::new(&key)
            .unprotect_rtp(&mut buffer, len)
            .unwrap();
        assert_eq!(plain, 172);
        assert_eq!(
            u32::from_be_bytes(buffer[8..12].try_into().unwrap()),
            teams.reports.own_ssrc
        );
    }

    fn worker(timeout_millis: u64) -> (Worker, crate::media::faults::MediaEvents) {
        let registry = prometheus::Registry::new();
        let (sink, events) = event_queue(1, FaultMetrics::register(&registry).unwrap());
        let (_commands, commands_rx) = std::sync::mpsc::sync_channel(1);
        let epoch = Instant::now();
        let worker = Worker::new(WorkerConfig {
            waker: Arc::new(EventFd::new().unwrap()),
            heartbeat: Heartbeat::new(epoch),
            commands: commands_rx,
            events: sink,
            metrics: MediaMetrics::register(&registry).unwrap(),
            policy: InactivityPolicy {
                timeout_millis,
                hold_counts_as_activity: true,
            },
            epoch,
            batched_io: false,
            rtcp_reports: true,
        })
        .unwrap();
        (worker, events)
    }

    /// Row 38: a session that plays is paced by the loop until it stops or goes; its slot,
    /// reused, does not inherit the place, and the list never outgrows the slot table.
    #[test]
    fn row38_playing_sessions_are_listed_once_and_leave_with_their_session() {
        use crate::media::inband_dtmf::G711;
        use crate::media::playout::{G711Target, TonePlan};
        let (mut worker, _events) = worker(60_000);
        let ringback = Some(Ringback {
            plan: TonePlan::ETSI,
            target: G711Target {
                payload_type: 0,
                law: G711::Ulaw,
            },
        });
        worker.add(silent_session(1));
        for _ in 0..3 {
            worker.apply(Command::SetRingback {
                id: SessionId(1),
                ringback,
            });
        }
        assert_eq!(worker.playing, vec![0]);
        assert_eq!(worker.wait_millis(0), 0, "a frame is due at once");
        worker.remove(SessionId(1));
        assert!(worker.playing.is_empty());
        worker.add(silent_session(2));
        worker.apply(Command::SetRingback {
            id: SessionId(2),
            ringback,
        });
        assert_eq!(worker.playing, vec![0]);
        worker.apply(Command::SetRingback {
            id: SessionId(2),
            ringback: None,
        });
        worker.run_playouts(worker.now());
        assert!(worker.playing.is_empty(), "nothing left to play");
        assert!(worker.playing.capacity() >= worker.slots.len());
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
            rtcp_reports: true,
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
