//! The table of calls in progress and its indexes: by the Call-ID of each leg, by client and
//! server transaction, and by media session.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::call::{Call, CarrierTarget, LegId};
use crate::media::SessionId;
use crate::routing::TrunkId;
use crate::routing::{AdmitGuard, CallLabels, ProxyId, RoutingTable};
use crate::transaction::TxId;
use crate::transport::{Peer, Source, TransportKind};

/// Identifies one call for its whole life; never reused, so a late DNS answer or timer for a
/// finished call finds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey(pub u64);

/// One call and what the driver keeps beside it.
pub struct Slot {
    pub call: Call,
    pub call_ids: [Bytes; 2],
    pub session: Option<SessionId>,
    /// Released (dropped) when the call is finished.
    pub guard: Option<AdmitGuard>,
    pub labels: CallLabels,
    /// The table the call was routed with (a reload never changes a call's route).
    pub routing: Arc<RoutingTable>,
    /// Microsoft's proxies in the order this call tries them (`CallSetup::teams.proxies[i]`
    /// is `proxies[i]` of `routing` on PSTN -> Teams calls).
    pub proxies: Vec<ProxyId>,
    /// Index into `proxies` of the proxy our in-dialog requests to Microsoft go to: the one
    /// that answered our INVITE, the next one after a connection to it failed.
    pub teams_proxy: usize,
    /// Where the last request each leg's peer sent and the call accepted came from:
    /// in-dialog requests to a peer that opened its own connection go back on it.
    pub flows: [Option<Source>; 2],
    /// The peer each leg belongs to: only it may send requests in that leg's dialogs
    /// (Microsoft for the Teams leg; the trunk of the current hop for the carrier leg).
    pub owners: [Peer; 2],
    /// The transport our requests on each leg actually used (a Microsoft stand-in may be
    /// configured for TCP while the Teams profile says TLS): in-dialog requests use it too.
    pub sent_kinds: [Option<TransportKind>; 2],
    /// `CallSetup::carrier.targets` (Teams -> PSTN).
    pub carrier_targets: Vec<CarrierTarget>,
    /// The trunk of each of `carrier_targets`.
    pub carrier_target_trunks: Vec<TrunkId>,
    pub transactions: Vec<TxId>,
    /// `calls_attempted_total`/`calls_active` counted (paired with `ended` at the end).
    pub attempted: bool,
    /// How the call ended, from its records (for its trace, row 60).
    pub outcome: Option<super::trace::CallOutcome>,
    /// The call already asked to remove its media session.
    pub media_removed: bool,
    /// What the call's detail record is built from (`None` when no CDR sink runs).
    pub life: Option<Box<crate::cdr::CallLife>>,
}

fn leg_index(leg: LegId) -> usize {
    match leg {
        LegId::Carrier => 0,
        LegId::Teams => 1,
    }
}

impl Slot {
    pub fn flow(&self, leg: LegId) -> Option<&Source> {
        self.flows[leg_index(leg)].as_ref()
    }

    pub fn set_flow(&mut self, leg: LegId, source: Source) {
        self.flows[leg_index(leg)] = Some(source);
    }

    pub fn owner(&self, leg: LegId) -> Peer {
        self.owners[leg_index(leg)].clone()
    }

    pub fn set_owner(&mut self, leg: LegId, peer: Peer) {
        self.owners[leg_index(leg)] = peer;
    }

    pub fn sent_kind(&self, leg: LegId) -> Option<TransportKind> {
        self.sent_kinds[leg_index(leg)]
    }

    pub fn set_sent_kind(&mut self, leg: LegId, kind: TransportKind) {
        self.sent_kinds[leg_index(leg)] = Some(kind);
    }
}

/// A transaction of a call: which leg, and whether it is one we started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxEntry {
    pub call: CallKey,
    pub leg: LegId,
    pub client: bool,
    /// A response arrived on it (a later transport failure is not a connect failure).
    pub responded: bool,
    /// `Some(i)`: an INVITE to `CallSetup::teams.proxies[i]`.
    pub proxy: Option<usize>,
}

#[derive(Default)]
pub struct CallTable {
    slots: HashMap<CallKey, Slot>,
    by_call_id: HashMap<Bytes, (CallKey, LegId)>,
    by_tx: HashMap<TxId, TxEntry>,
    by_session: HashMap<SessionId, CallKey>,
    /// Call-IDs a call took on after it started (a transfer's new Teams dialog).
    later_call_ids: HashMap<CallKey, Vec<Bytes>>,
    /// Where the request of a server transaction came from: it becomes its leg's flow only
    /// once the call accepts the request (a 2xx), so a request it refuses redirects nothing.
    flow_candidates: HashMap<TxId, Source>,
    next_key: u64,
}

impl CallTable {
    pub fn next_key(&mut self) -> CallKey {
        self.next_key += 1;
        CallKey(self.next_key)
    }

    pub fn insert(&mut self, key: CallKey, slot: Slot) {
        self.by_call_id
            .insert(slot.call_ids[0].clone(), (key, LegId::Carrier));
        self.by_call_id
            .insert(slot.call_ids[1].clone(), (key, LegId::Teams));
        if let Some(session) = slot.session {
            self.by_session.insert(session, key);
        }
        self.slots.insert(key, slot);
    }

    /// Routes requests with `call_id` to `key` on `leg` as well (the old Call-ID keeps
    /// working: Microsoft ends a transferred dialog with its own BYE).
    /// Returns whether `call_id` was new.
    pub fn add_call_id(&mut self, key: CallKey, leg: LegId, call_id: &Bytes) -> bool {
        if self.by_call_id.contains_key(call_id) || !self.slots.contains_key(&key) {
            return false;
        }
        self.by_call_id.insert(call_id.clone(), (key, leg));
        self.later_call_ids
            .entry(key)
            .or_default()
            .push(call_id.clone());
        true
    }

    pub fn remove(&mut self, key: CallKey) -> Option<Slot> {
        let slot = self.slots.remove(&key)?;
        let later = self.later_call_ids.remove(&key).unwrap_or_default();
        for id in slot.call_ids.iter().chain(later.iter()) {
            if self.by_call_id.get(id).is_some_and(|(k, _)| *k == key) {
                self.by_call_id.remove(id);
            }
        }
        for tx in &slot.transactions {
            self.by_tx.remove(tx);
            self.flow_candidates.remove(tx);
        }
        if let Some(session) = slot.session {
            self.by_session.remove(&session);
        }
        Some(slot)
    }

    pub fn get(&self, key: CallKey) -> Option<&Slot> {
        self.slots.get(&key)
    }

    pub fn get_mut(&mut self, key: CallKey) -> Option<&mut Slot> {
        self.slots.get_mut(&key)
    }

    pub fn by_call_id(&self, call_id: &[u8]) -> Option<(CallKey, LegId)> {
        self.by_call_id.get(call_id).copied()
    }

    pub fn by_session(&self, session: SessionId) -> Option<CallKey> {
        self.by_session.get(&session).copied()
    }

    pub fn tx(&self, tx: TxId) -> Option<TxEntry> {
        self.by_tx.get(&tx).copied()
    }

    pub fn mark_responded(&mut self, tx: TxId) {
        if let Some(entry) = self.by_tx.get_mut(&tx) {
            entry.responded = true;
        }
    }

    pub fn add_tx(&mut self, tx: TxId, entry: TxEntry) {
        if let Some(slot) = self.slots.get_mut(&entry.call) {
            slot.transactions.push(tx);
            self.by_tx.insert(tx, entry);
        }
    }

    /// Remember where the request of server transaction `tx` came from.
    pub fn add_flow_candidate(&mut self, tx: TxId, source: Source) {
        if self.by_tx.contains_key(&tx) {
            self.flow_candidates.insert(tx, source);
        }
    }

    /// The call accepted the request of `tx`: its sender is now the leg's flow.
    pub fn accept_flow(&mut self, tx: TxId) {
        let Some(source) = self.flow_candidates.remove(&tx) else {
            return;
        };
        let Some(entry) = self.by_tx.get(&tx) else {
            return;
        };
        if let Some(slot) = self.slots.get_mut(&entry.call) {
            slot.set_flow(entry.leg, source);
        }
    }

    /// A transaction ended (its `Terminated` event).
    pub fn forget_tx(&mut self, tx: TxId) {
        self.flow_candidates.remove(&tx);
        if let Some(entry) = self.by_tx.remove(&tx) {
            if let Some(slot) = self.slots.get_mut(&entry.call) {
                slot.transactions.retain(|t| *t != tx);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Every call, in the order they started.
    pub fn keys(&self) -> Vec<CallKey> {
        let mut keys: Vec<CallKey> = self.slots.keys().copied().collect();
        keys.sort();
        keys
    }
}
