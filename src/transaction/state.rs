//! The four RFC 3261 §17 state machines (with RFC 6026's Accepted state), one struct.
//!
//! Each transition writes its effects into a [`Ctx`] (messages to send, events for the TU,
//! timers to arm) and says whether the transaction is over; the layer does the bookkeeping.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::build::ack_for_non_2xx;
use super::key::TxKey;
use super::{Output, Timer, TransactionMetrics, TransactionSettings, TuEvent, TxId, TxKind};
use crate::sip::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Calling,
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
}

/// A transaction has at most one timer of each role armed at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Slot {
    /// A, E, G, 2xx retransmission.
    Retransmit = 0,
    /// B, F, H, L, M.
    Timeout = 1,
    /// D, I, J, K: how long a finished transaction lingers to absorb retransmissions.
    Linger = 2,
}

impl Slot {
    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Copy)]
struct Armed {
    timer: Timer,
    generation: u64,
}

/// Heap entry: deadline, arming generation (unique), transaction, slot.
pub(crate) type TimerEntry = Reverse<(Instant, u64, TxId, Slot)>;

/// Whether a transaction lives on after a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Terminate,
}

pub(crate) struct Ctx<'a, T> {
    pub now: Instant,
    pub settings: &'a TransactionSettings,
    pub metrics: &'a TransactionMetrics,
    pub outputs: &'a mut VecDeque<Output<T>>,
    pub timers: &'a mut BinaryHeap<TimerEntry>,
    pub generation: &'a mut u64,
    pub own_headers: &'a super::OwnResponseHeaders<T>,
}

pub(crate) struct Transaction<T> {
    pub id: TxId,
    pub kind: TxKind,
    pub state: State,
    pub reliable: bool,
    /// Client: where requests go. Server: where the request came from (responses go there).
    pub peer: T,
    pub key: TxKey,
    pub request: Message,
    /// Server: the last response sent (re-sent on a retransmitted request).
    pub last_response: Option<Bytes>,
    /// Client INVITE: the ACK sent for a non-2xx final response.
    pub ack: Option<Bytes>,
    /// Server INVITE in Accepted: an ACK for the 2xx arrived.
    pub acked: bool,
    /// Server INVITE in Accepted: (Call-ID, CSeq number) under which it waits for its ACK.
    pub ack_key: Option<(Bytes, u32)>,
    /// Current retransmission interval.
    interval: Duration,
    slots: [Option<Armed>; 3],
}

impl<T: Clone> Transaction<T> {
    pub fn new(
        id: TxId,
        kind: TxKind,
        reliable: bool,
        peer: T,
        key: TxKey,
        request: Message,
    ) -> Self {
        let state = match kind {
            TxKind::ClientInvite => State::Calling,
            TxKind::ClientNonInvite | TxKind::ServerNonInvite => State::Trying,
            TxKind::ServerInvite => State::Proceeding,
        };
        Transaction {
            id,
            kind,
            state,
            reliable,
            peer,
            key,
            request,
            last_response: None,
            ack: None,
            acked: false,
            ack_key: None,
            interval: Duration::ZERO,
            slots: [None; 3],
        }
    }

    /// True when `generation` is the arming currently held by `slot`.
    pub fn is_armed(&self, slot: Slot, generation: u64) -> bool {
        self.slots[slot.index()].is_some_and(|armed| armed.generation == generation)
    }

    fn arm(&mut self, ctx: &mut Ctx<'_, T>, slot: Slot, timer: Timer, after: Duration) {
        *ctx.generation += 1;
        let generation = *ctx.generation;
        self.slots[slot.index()] = Some(Armed { timer, generation });
        ctx.timers
            .push(Reverse((ctx.now + after, generation, self.id, slot)));
    }

    fn disarm(&mut self, slot: Slot) {
        self.slots[slot.index()] = None;
    }

    fn disarm_all(&mut self) {
        self.slots = [None; 3];
    }

    fn send(&self, ctx: &mut Ctx<'_, T>, bytes: Bytes) {
        ctx.outputs.push_back(Output::Transmit {
            tx: Some(self.id),
            dest: self.peer.clone(),
            bytes,
        });
    }

    fn resend(&self, ctx: &mut Ctx<'_, T>, bytes: Option<Bytes>) {
        if let Some(bytes) = bytes {
            ctx.metrics.retransmissions.inc();
            self.send(ctx, bytes);
        }
    }

    fn deliver(ctx: &mut Ctx<'_, T>, event: TuEvent<T>) {
        ctx.outputs.push_back(Output::Deliver(event));
    }

    /// Enter a lingering state: wait `unreliable_wait` on UDP, end at once on reliable transports.
    fn linger(&mut self, ctx: &mut Ctx<'_, T>, timer: Timer, unreliable_wait: Duration) -> Flow {
        if self.reliable {
            return Flow::Terminate;
        }
        self.arm(ctx, Slot::Linger, timer, unreliable_wait);
        Flow::Continue
    }

    /// Client: send the request and arm A/E (unreliable only) and B/F.
    pub fn start_client(&mut self, ctx: &mut Ctx<'_, T>) {
        self.send(ctx, self.request.bytes().clone());
        let (retransmit, timeout) = match self.kind {
            TxKind::ClientInvite => (Timer::A, Timer::B),
            _ => (Timer::E, Timer::F),
        };
        if !self.reliable {
            self.interval = ctx.settings.t1;
            self.arm(ctx, Slot::Retransmit, retransmit, ctx.settings.t1);
        }
        self.arm(ctx, Slot::Timeout, timeout, ctx.settings.timeout_64t1());
    }

    /// Server INVITE: answer 100 Trying at once (RFC 3261 §17.2.1; the SBC always does).
    pub fn start_server_invite(&mut self, ctx: &mut Ctx<'_, T>, trying: Bytes) {
        self.last_response = Some(trying.clone());
        self.send(ctx, trying);
        let guard = ctx.settings.timer_c;
        self.arm(ctx, Slot::Timeout, Timer::Unanswered, guard);
    }

    /// Server non-INVITE: only the guard against a TU that never answers.
    pub fn start_server_non_invite(&mut self, ctx: &mut Ctx<'_, T>) {
        let guard = ctx.settings.timeout_64t1();
        self.arm(ctx, Slot::Timeout, Timer::Unanswered, guard);
    }

    /// A response matched this client transaction.
    pub fn on_response(&mut self, ctx: &mut Ctx<'_, T>, msg: Message, source: T) -> Flow {
        let Some(status) = msg.status() else {
            return Flow::Continue;
        };
        match self.kind {
            TxKind::ClientInvite => self.client_invite_response(ctx, status, msg, source),
            _ => self.client_non_invite_response(ctx, status, msg, source),
        }
    }

    fn client_invite_response(
        &mut self,
        ctx: &mut Ctx<'_, T>,
        status: u16,
        msg: Message,
        source: T,
    ) -> Flow {
        let live = matches!(self.state, State::Calling | State::Proceeding);
        match status {
            100..=199 if live => {
                self.state = State::Proceeding;
                self.disarm(Slot::Retransmit);
                // B only runs in Calling; C guards Proceeding, restarted by each provisional.
                let guard = ctx.settings.timer_c;
                self.arm(ctx, Slot::Timeout, Timer::C, guard);
                let tx = self.id;
                Self::deliver(ctx, TuEvent::Response { tx, msg, source });
                Flow::Continue
            }
            200..=299 if live || self.state == State::Accepted => {
                if live {
                    self.state = State::Accepted;
                    self.disarm(Slot::Retransmit);
                    self.arm(ctx, Slot::Timeout, Timer::M, ctx.settings.timeout_64t1());
                }
                let tx = self.id;
                Self::deliver(ctx, TuEvent::Response { tx, msg, source });
                Flow::Continue
            }
            300..=699 if live => {
                self.state = State::Completed;
                self.disarm(Slot::Retransmit);
                self.disarm(Slot::Timeout);
                self.ack = ack_for_non_2xx(&self.request, &msg);
                if let Some(ack) = self.ack.clone() {
                    self.send(ctx, ack);
                }
                let tx = self.id;
                Self::deliver(ctx, TuEvent::Response { tx, msg, source });
                let wait = ctx.settings.timer_d;
                self.linger(ctx, Timer::D, wait)
            }
            300..=699 if self.state == State::Completed => {
                // A retransmitted final response: our ACK was lost, send it again.
                self.resend(ctx, self.ack.clone());
                Flow::Continue
            }
            _ => Flow::Continue,
        }
    }

    fn client_non_invite_response(
        &mut self,
        ctx: &mut Ctx<'_, T>,
        status: u16,
        msg: Message,
        source: T,
    ) -> Flow {
        if !matches!(self.state, State::Trying | State::Proceeding) {
            return Flow::Continue;
        }
        let tx = self.id;
        if status < 200 {
            self.state = State::Proceeding;
            Self::deliver(ctx, TuEvent::Response { tx, msg, source });
            return Flow::Continue;
        }
        self.state = State::Completed;
        self.disarm(Slot::Retransmit);
        self.disarm(Slot::Timeout);
        Self::deliver(ctx, TuEvent::Response { tx, msg, source });
        let wait = ctx.settings.t4;
        self.linger(ctx, Timer::K, wait)
    }

    /// A request matched this server transaction (a retransmission, or the ACK of an INVITE).
    pub fn on_request(&mut self, ctx: &mut Ctx<'_, T>, msg: Message, source: T) -> Flow {
        self.peer = source.clone();
        let is_ack = msg.method() == Some(&crate::sip::Method::Ack);
        if !is_ack {
            match self.state {
                // Non-INVITE Trying has no response yet to repeat; Accepted leaves INVITE
                // retransmissions to the 2xx retransmission (RFC 6026 §7.1); Confirmed absorbs.
                State::Proceeding | State::Completed => {
                    self.resend(ctx, self.last_response.clone());
                }
                _ => {}
            }
            return Flow::Continue;
        }
        if self.kind != TxKind::ServerInvite {
            return Flow::Continue;
        }
        match self.state {
            State::Completed => {
                self.state = State::Confirmed;
                self.disarm(Slot::Retransmit);
                self.disarm(Slot::Timeout);
                let wait = ctx.settings.t4;
                self.linger(ctx, Timer::I, wait)
            }
            State::Accepted => {
                self.mark_acked();
                let tx = Some(self.id);
                Self::deliver(ctx, TuEvent::Ack { tx, msg, source });
                Flow::Continue
            }
            _ => Flow::Continue,
        }
    }

    /// The ACK for our 2xx arrived: stop retransmitting it.
    pub fn mark_acked(&mut self) {
        self.acked = true;
        self.ack_key = None;
        self.disarm(Slot::Retransmit);
    }

    /// The TU answers this server transaction. `Err(())` when a final response was already sent.
    pub fn send_response(
        &mut self,
        ctx: &mut Ctx<'_, T>,
        status: u16,
        bytes: Bytes,
    ) -> Result<Flow, ()> {
        let open = match self.kind {
            TxKind::ServerInvite => {
                self.state == State::Proceeding
                    || (self.state == State::Accepted && (200..300).contains(&status))
            }
            _ => matches!(self.state, State::Trying | State::Proceeding),
        };
        if !open {
            return Err(());
        }
        self.send(ctx, bytes.clone());
        self.last_response = Some(bytes);
        if status < 200 {
            self.state = State::Proceeding;
            return Ok(Flow::Continue);
        }
        let unreliable = !self.reliable;
        let t1 = ctx.settings.t1;
        let long = ctx.settings.timeout_64t1();
        match self.kind {
            TxKind::ServerInvite if status < 300 => {
                if self.state != State::Accepted {
                    self.state = State::Accepted;
                    self.arm(ctx, Slot::Timeout, Timer::L, long);
                }
                if unreliable && !self.acked {
                    self.interval = t1;
                    self.arm(ctx, Slot::Retransmit, Timer::Retransmit2xx, t1);
                }
                Ok(Flow::Continue)
            }
            TxKind::ServerInvite => {
                self.state = State::Completed;
                if unreliable {
                    self.interval = t1;
                    self.arm(ctx, Slot::Retransmit, Timer::G, t1);
                }
                self.arm(ctx, Slot::Timeout, Timer::H, long);
                Ok(Flow::Continue)
            }
            _ => {
                self.state = State::Completed;
                self.disarm(Slot::Timeout);
                Ok(self.linger(ctx, Timer::J, long))
            }
        }
    }

    /// The armed timer in `slot` fired.
    pub fn on_timer(&mut self, ctx: &mut Ctx<'_, T>, slot: Slot) -> Flow {
        let Some(armed) = self.slots[slot.index()].take() else {
            return Flow::Continue;
        };
        let t2 = ctx.settings.t2;
        match armed.timer {
            Timer::A => {
                // RFC 3261 §17.1.1.2: A doubles with no T2 cap.
                self.resend(ctx, Some(self.request.bytes().clone()));
                self.interval = self.interval.saturating_mul(2);
                let next = self.interval;
                self.arm(ctx, Slot::Retransmit, Timer::A, next);
                Flow::Continue
            }
            Timer::E => {
                self.resend(ctx, Some(self.request.bytes().clone()));
                self.interval = if self.state == State::Proceeding {
                    t2
                } else {
                    self.interval.saturating_mul(2).min(t2)
                };
                let next = self.interval;
                self.arm(ctx, Slot::Retransmit, Timer::E, next);
                Flow::Continue
            }
            Timer::G | Timer::Retransmit2xx => {
                self.resend(ctx, self.last_response.clone());
                self.interval = self.interval.saturating_mul(2).min(t2);
                let next = self.interval;
                self.arm(ctx, Slot::Retransmit, armed.timer, next);
                Flow::Continue
            }
            Timer::Unanswered if self.kind == TxKind::ServerInvite => {
                ctx.metrics.on_timeout(Timer::Unanswered);
                let tx = self.id;
                Self::deliver(
                    ctx,
                    TuEvent::Timeout {
                        tx,
                        timer: Timer::Unanswered,
                    },
                );
                let timeout =
                    super::build::request_timeout(&self.request, &(ctx.own_headers)(&self.peer));
                // Proceeding is open for a final response, so this cannot be refused.
                match self.send_response(ctx, 408, timeout) {
                    Ok(flow) => flow,
                    Err(()) => Flow::Terminate,
                }
            }
            Timer::B | Timer::F | Timer::H | Timer::C | Timer::Unanswered => {
                ctx.metrics.on_timeout(armed.timer);
                let tx = self.id;
                Self::deliver(
                    ctx,
                    TuEvent::Timeout {
                        tx,
                        timer: armed.timer,
                    },
                );
                Flow::Terminate
            }
            Timer::L => {
                if !self.acked {
                    ctx.metrics.on_timeout(Timer::L);
                    let tx = self.id;
                    Self::deliver(ctx, TuEvent::AckTimeout { tx });
                }
                Flow::Terminate
            }
            Timer::D | Timer::I | Timer::J | Timer::K | Timer::M => Flow::Terminate,
        }
    }

    /// The transport failed to send one of our messages.
    pub fn on_transport_error(&mut self, ctx: &mut Ctx<'_, T>) -> Flow {
        self.disarm_all();
        let tx = self.id;
        Self::deliver(ctx, TuEvent::TransportError { tx });
        Flow::Terminate
    }
}
