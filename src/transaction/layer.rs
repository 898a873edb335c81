//! The transaction table: matching, creation, timers and the output queue.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;

use super::build::{overloaded, trying};
use super::key::{client_key_for_request, client_key_for_response, server_key, TxKey};
use super::state::{Ctx, Flow, TimerEntry, Transaction};
use super::{
    is_unreliable, status_of, Output, OwnResponseHeaders, Payer, TransactionMetrics,
    TransactionSettings, TuEvent, TxError, TxId, TxKind,
};
use crate::sip::{Message, Method};

/// All transactions of one SIP stack, generic over the route token `T` of the transport.
pub struct TransactionLayer<T> {
    settings: TransactionSettings,
    metrics: TransactionMetrics,
    next_id: u64,
    transactions: HashMap<TxId, Transaction<T>>,
    index: HashMap<TxKey, TxId>,
    /// INVITE server transactions in Accepted whose 2xx is not ACKed yet, by (Call-ID, CSeq
    /// number): the ACK for a 2xx has a new branch, so it is matched by dialog instead.
    awaiting_ack: HashMap<(Bytes, u32), TxId>,
    timers: BinaryHeap<TimerEntry>,
    generation: u64,
    outputs: VecDeque<Output<T>>,
    /// Who pays for each server transaction started by [`Self::on_incoming_paid`].
    paid_by: HashMap<TxId, [Payer; 2]>,
    /// Live server transactions per payer (entries removed at zero).
    live_per_payer: HashMap<Payer, usize>,
    own_headers: OwnResponseHeaders<T>,
}

impl<T: Clone> TransactionLayer<T> {
    pub fn new(settings: TransactionSettings, metrics: TransactionMetrics) -> Self {
        TransactionLayer {
            settings,
            metrics,
            next_id: 0,
            transactions: HashMap::new(),
            index: HashMap::new(),
            awaiting_ack: HashMap::new(),
            timers: BinaryHeap::new(),
            generation: 0,
            outputs: VecDeque::new(),
            paid_by: HashMap::new(),
            live_per_payer: HashMap::new(),
            own_headers: Box::new(|_| Vec::new()),
        }
    }

    /// Headers for the responses the layer makes itself, by route (see
    /// [`OwnResponseHeaders`]).
    pub fn with_own_response_headers(mut self, headers: OwnResponseHeaders<T>) -> Self {
        self.own_headers = headers;
        self
    }

    /// A reloaded configuration: timers and limits apply to what happens from now on
    /// (armed timers keep their deadlines), and the layer's own responses change headers.
    pub fn reconfigure(&mut self, settings: TransactionSettings, headers: OwnResponseHeaders<T>) {
        self.settings = settings;
        self.own_headers = headers;
    }

    pub fn settings(&self) -> &TransactionSettings {
        &self.settings
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.transactions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.transactions.is_empty()
    }

    /// The original request of a live transaction (e.g. to build a CANCEL for a client INVITE).
    pub fn request(&self, tx: TxId) -> Option<&Message> {
        self.transactions.get(&tx).map(|t| &t.request)
    }

    /// Where a live transaction's messages go: the destination of a client transaction, the
    /// source of a server transaction's request (its responses go back there).
    pub fn peer(&self, tx: TxId) -> Option<&T> {
        self.transactions.get(&tx).map(|t| &t.peer)
    }

    /// Kind of a live transaction.
    pub fn kind(&self, tx: TxId) -> Option<TxKind> {
        self.transactions.get(&tx).map(|t| t.kind)
    }

    /// A message parsed from the transport. Requests matching a server transaction are
    /// absorbed there (retransmissions, hop-by-hop ACK); new ones create one and go to the TU.
    /// Responses go to their client transaction; strays are dropped.
    pub fn on_incoming(&mut self, now: Instant, msg: Message, source: T) {
        if msg.is_request() {
            self.incoming_request(now, msg, source, None);
        } else {
            self.incoming_response(now, msg, source);
        }
    }

    /// [`on_incoming`](Self::on_incoming) for a message from an identified sender: a server
    /// transaction it starts is charged to `payers`, and a payer at its quota
    /// ([`TransactionSettings::max_transactions_per_source`] / `_per_peer`) gets a stateless
    /// 503 instead.
    pub fn on_incoming_paid(&mut self, now: Instant, msg: Message, source: T, payers: [Payer; 2]) {
        if msg.is_request() {
            self.incoming_request(now, msg, source, Some(payers));
        } else {
            self.incoming_response(now, msg, source);
        }
    }

    /// Live server transactions charged to `payer`.
    pub fn live_for(&self, payer: &Payer) -> usize {
        self.live_per_payer.get(payer).copied().unwrap_or(0)
    }

    fn quota(&self, payer: &Payer) -> usize {
        match payer {
            Payer::Source(_) => self.settings.max_transactions_per_source,
            Payer::Peer(_) => self.settings.max_transactions_per_peer,
        }
    }

    fn incoming_response(&mut self, now: Instant, msg: Message, source: T) {
        let id = client_key_for_response(&msg).and_then(|key| self.index.get(&key).copied());
        match id {
            Some(id) => self.with_tx(now, id, |tx, ctx| tx.on_response(ctx, msg, source)),
            None => self.metrics.stray.inc(),
        }
    }

    fn incoming_request(
        &mut self,
        now: Instant,
        msg: Message,
        source: T,
        payers: Option<[Payer; 2]>,
    ) {
        let owner = payers.iter().flatten().find_map(|payer| match payer {
            Payer::Peer(peer) => Some(peer.clone()),
            Payer::Source(_) => None,
        });
        let Some(key) = server_key(&msg).map(|key| key.owned_by(owner)) else {
            self.metrics.stray.inc();
            return;
        };
        if let Some(&id) = self.index.get(&key) {
            let is_server = self
                .transactions
                .get(&id)
                .is_some_and(|t| matches!(t.kind, TxKind::ServerInvite | TxKind::ServerNonInvite));
            if is_server {
                if msg.method() == Some(&Method::Ack) {
                    self.forget_ack_wait(id);
                }
                self.with_tx(now, id, |tx, ctx| tx.on_request(ctx, msg, source));
                return;
            }
        }
        let Some(method) = msg.method().cloned() else {
            return;
        };
        if method == Method::Ack {
            self.ack_without_transaction(msg, source);
            return;
        }
        if self.transactions.len() >= self.settings.max_transactions {
            self.metrics.rejected.inc();
            let bytes = overloaded(&msg, &(self.own_headers)(&source));
            self.outputs.push_back(Output::Transmit {
                tx: None,
                dest: source,
                bytes,
            });
            return;
        }
        let over_quota = payers
            .iter()
            .flatten()
            .find(|payer| self.live_for(payer) >= self.quota(payer));
        if let Some(payer) = over_quota {
            self.metrics
                .quota_rejected
                .with_label_values(&[payer.label()])
                .inc();
            let bytes = overloaded(&msg, &(self.own_headers)(&source));
            self.outputs.push_back(Output::Transmit {
                tx: None,
                dest: source,
                bytes,
            });
            return;
        }
        let reliable = match msg.top_via() {
            Ok(via) => !is_unreliable(&via.transport),
            Err(_) => return,
        };
        let cancels = match method {
            Method::Cancel => key
                .with_method(Method::Invite)
                .and_then(|invite_key| self.index.get(&invite_key).copied())
                .filter(|id| self.kind(*id) == Some(TxKind::ServerInvite)),
            _ => None,
        };
        let kind = match method {
            Method::Invite => TxKind::ServerInvite,
            _ => TxKind::ServerNonInvite,
        };
        let id = self.allocate_id();
        let mut tx = Transaction::new(id, kind, reliable, source.clone(), key.clone(), msg.clone());
        if kind == TxKind::ServerInvite {
            let bytes = trying(&msg, &(self.own_headers)(&source));
            let mut ctx = self.ctx(now);
            tx.start_server_invite(&mut ctx, bytes);
        } else {
            let mut ctx = self.ctx(now);
            tx.start_server_non_invite(&mut ctx);
        }
        self.insert(tx, key);
        if let Some(payers) = payers {
            for payer in payers.iter().cloned() {
                *self.live_per_payer.entry(payer).or_insert(0) += 1;
            }
            self.paid_by.insert(id, payers);
        }
        self.outputs.push_back(Output::Deliver(TuEvent::Request {
            tx: id,
            msg,
            source,
            cancels,
        }));
    }

    /// An ACK with no transaction: the ACK for a 2xx. Stop that 2xx's retransmission if it is
    /// ours, and hand the ACK to the TU either way.
    fn ack_without_transaction(&mut self, msg: Message, source: T) {
        let acked = match (msg.call_id(), msg.cseq()) {
            (Some(call_id), Ok(cseq)) => self.awaiting_ack.remove(&(call_id, cseq.seq)),
            _ => None,
        };
        if let Some(tx) = acked.and_then(|id| self.transactions.get_mut(&id)) {
            tx.mark_acked();
        }
        self.outputs.push_back(Output::Deliver(TuEvent::Ack {
            tx: acked,
            msg,
            source,
        }));
    }

    fn forget_ack_wait(&mut self, id: TxId) {
        let key = self
            .transactions
            .get_mut(&id)
            .and_then(|t| t.ack_key.take());
        if let Some(key) = key {
            if self.awaiting_ack.get(&key) == Some(&id) {
                self.awaiting_ack.remove(&key);
            }
        }
    }

    /// Start a client transaction for `request` (not ACK) and send it to `dest`. The request
    /// must carry its final top Via with an RFC 3261 branch (see [`super::new_branch`]).
    pub fn send_request(
        &mut self,
        now: Instant,
        request: Message,
        dest: T,
    ) -> Result<TxId, TxError> {
        let kind = match request.method() {
            Some(Method::Invite) => TxKind::ClientInvite,
            Some(Method::Ack) | None => return Err(TxError::NotARequest),
            Some(_) => TxKind::ClientNonInvite,
        };
        let key = client_key_for_request(&request).ok_or(TxError::BadVia)?;
        let reliable = match request.top_via() {
            Ok(via) => !is_unreliable(&via.transport),
            Err(_) => return Err(TxError::BadVia),
        };
        if request.cseq().is_err() {
            return Err(TxError::BadCSeq);
        }
        if self.index.contains_key(&key) {
            return Err(TxError::Duplicate);
        }
        if self.transactions.len() >= self.settings.max_transactions {
            return Err(TxError::Full);
        }
        let id = self.allocate_id();
        let mut tx = Transaction::new(id, kind, reliable, dest, key.clone(), request);
        let mut ctx = self.ctx(now);
        tx.start_client(&mut ctx);
        self.insert(tx, key);
        Ok(id)
    }

    /// Send a response (wire bytes, e.g. from `sip::ResponseBuilder`) on server transaction `tx`.
    pub fn send_response(
        &mut self,
        now: Instant,
        tx: TxId,
        response: Bytes,
    ) -> Result<(), TxError> {
        let status = status_of(&response).ok_or(TxError::BadResponse)?;
        let Some(transaction) = self.transactions.get_mut(&tx) else {
            return Err(TxError::UnknownTransaction);
        };
        if !matches!(
            transaction.kind,
            TxKind::ServerInvite | TxKind::ServerNonInvite
        ) {
            return Err(TxError::UnknownTransaction);
        }
        let mut ctx = Ctx {
            now,
            settings: &self.settings,
            metrics: &self.metrics,
            outputs: &mut self.outputs,
            timers: &mut self.timers,
            generation: &mut self.generation,
            own_headers: &self.own_headers,
        };
        let result = transaction.send_response(&mut ctx, status, response);
        let awaiting_ack = result.is_ok()
            && transaction.kind == TxKind::ServerInvite
            && (200..300).contains(&status)
            && !transaction.acked;
        let ack_key = awaiting_ack
            .then(|| {
                let call_id = transaction.request.call_id()?;
                let seq = transaction.request.cseq().ok()?.seq;
                Some((call_id, seq))
            })
            .flatten();
        if ack_key.is_some() {
            transaction.ack_key.clone_from(&ack_key);
        }
        match result {
            Err(()) => Err(TxError::AlreadyFinal),
            Ok(flow) => {
                if let Some(ack_key) = ack_key {
                    self.awaiting_ack.insert(ack_key, tx);
                }
                if flow == Flow::Terminate {
                    self.remove(tx);
                }
                Ok(())
            }
        }
    }

    /// Queue a message that belongs to no transaction (the TU's ACK for a 2xx).
    pub fn send_stateless(&mut self, dest: T, bytes: Bytes) {
        self.outputs.push_back(Output::Transmit {
            tx: None,
            dest,
            bytes,
        });
    }

    /// The transport could not send a message of `tx` (connect/TLS failure, ICMP error, ...).
    pub fn on_transport_error(&mut self, now: Instant, tx: TxId) {
        self.with_tx(now, tx, |t, ctx| t.on_transport_error(ctx));
    }

    /// Drop a transaction at once (e.g. an INVITE client transaction still without a final
    /// response 64*T1 after its CANCEL, RFC 3261 §9.1). Emits `Terminated`.
    pub fn terminate(&mut self, tx: TxId) {
        if self.transactions.contains_key(&tx) {
            self.remove(tx);
        }
    }

    /// Fire every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, generation, id, slot))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let live = self
                .transactions
                .get(&id)
                .is_some_and(|t| t.is_armed(slot, generation));
            if live {
                self.with_tx(now, id, |tx, ctx| tx.on_timer(ctx, slot));
            }
        }
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, generation, id, slot))) = self.timers.peek().copied() {
            let live = self
                .transactions
                .get(&id)
                .is_some_and(|t| t.is_armed(slot, generation));
            if live {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }

    /// Next message to send or event for the TU.
    pub fn poll_output(&mut self) -> Option<Output<T>> {
        self.outputs.pop_front()
    }

    fn allocate_id(&mut self) -> TxId {
        self.next_id += 1;
        TxId(self.next_id)
    }

    fn ctx(&mut self, now: Instant) -> Ctx<'_, T> {
        Ctx {
            now,
            settings: &self.settings,
            metrics: &self.metrics,
            outputs: &mut self.outputs,
            timers: &mut self.timers,
            generation: &mut self.generation,
            own_headers: &self.own_headers,
        }
    }

    fn insert(&mut self, tx: Transaction<T>, key: TxKey) {
        self.metrics.on_created(tx.kind);
        self.index.insert(key, tx.id);
        self.transactions.insert(tx.id, tx);
        self.metrics
            .active
            .set(gauge_value(self.transactions.len()));
    }

    fn with_tx(
        &mut self,
        now: Instant,
        id: TxId,
        step: impl FnOnce(&mut Transaction<T>, &mut Ctx<'_, T>) -> Flow,
    ) {
        let Some(tx) = self.transactions.get_mut(&id) else {
            return;
        };
        let mut ctx = Ctx {
            now,
            settings: &self.settings,
            metrics: &self.metrics,
            outputs: &mut self.outputs,
            timers: &mut self.timers,
            generation: &mut self.generation,
            own_headers: &self.own_headers,
        };
        let flow = step(tx, &mut ctx);
        if flow == Flow::Terminate {
            self.remove(id);
        }
    }

    fn remove(&mut self, id: TxId) {
        self.forget_ack_wait(id);
        let Some(tx) = self.transactions.remove(&id) else {
            return;
        };
        if self.index.get(&tx.key) == Some(&id) {
            self.index.remove(&tx.key);
        }
        for payer in self.paid_by.remove(&id).into_iter().flatten() {
            if let Some(live) = self.live_per_payer.get_mut(&payer) {
                *live = live.saturating_sub(1);
                if *live == 0 {
                    self.live_per_payer.remove(&payer);
                }
            }
        }
        self.metrics
            .active
            .set(gauge_value(self.transactions.len()));
        self.outputs
            .push_back(Output::Deliver(TuEvent::Terminated { tx: id }));
    }
}

fn gauge_value(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}
