//! The dispatcher's side of call detail records: a call's [`CallLife`] is opened with the
//! call (`admit.rs`), shown the call's messages where its trace records them, each hop
//! where its INVITE is sent and each hop failure where the transaction fails, and turned into
//! a record in `finish` with what the trace kept (Call-IDs, Microsoft's values) and the end
//! the call reported ([`CallOutcome`], the same one the trace logs).

use std::time::Instant;

use super::table::{CallKey, Slot};
use super::trace::{CallOutcome, EndedTrace};
use super::Dispatcher;
use crate::call::{LegId, Target};
use crate::cdr::{CallDetailRecord, CallLife, EndFacts, Ending};
use crate::sip::Message;

impl Dispatcher {
    /// The call sends its INVITE to a new hop: a Microsoft proxy or a carrier next hop.
    pub(super) fn note_hop(&mut self, key: CallKey, leg: LegId, target: &Target) {
        let Some(slot) = self.table.get_mut(key) else {
            return;
        };
        let Some(life) = slot.life.as_mut() else {
            return;
        };
        match target {
            Target::TeamsProxy(index) => {
                let destination = slot
                    .proxies
                    .get(*index)
                    .and_then(|id| slot.routing.proxy(*id))
                    .map(|p| format!("{}:{}", p.host, p.port))
                    .unwrap_or_default();
                life.on_hop(leg, None, destination, None);
            }
            Target::Carrier(index) => {
                let Some(hop) = slot.carrier_targets.get(*index) else {
                    return;
                };
                let trunk = slot
                    .carrier_target_trunks
                    .get(*index)
                    .and_then(|id| slot.routing.trunk(*id))
                    .map(|t| t.name.to_string());
                life.on_hop(
                    leg,
                    trunk.as_deref(),
                    format!("{}:{}", hop.host, hop.port),
                    Some((&hop.numbers.caller, &hop.numbers.callee)),
                );
            }
            Target::Dialog { .. } => {}
        }
    }

    /// The current hop's INVITE got no final response (`failure`: why), if `leg` is the
    /// called side's.
    pub(super) fn note_hop_failure(
        &mut self,
        key: CallKey,
        leg: LegId,
        failure: Option<&'static str>,
    ) {
        let (Some(failure), Some(slot)) = (failure, self.table.get_mut(key)) else {
            return;
        };
        let called = match slot.call.direction() {
            crate::call::Direction::Inbound => LegId::Teams,
            crate::call::Direction::Outbound => LegId::Carrier,
        };
        if leg != called {
            return;
        }
        if let Some(life) = slot.life.as_mut() {
            life.on_hop_failure(failure);
        }
    }
}

/// Show `life` a message we sent, parsing only those it reads: a 2xx to an INVITE with SDP
/// (the leg's codec and SRTP suite), and a final error, BYE or CANCEL with a `Reason` (the
/// Q.850 cause). We built these messages, so their header names are in our own spelling; the
/// rest (most of what a call sends) costs two substring searches at most.
pub(super) fn observe_sent(
    life: &mut CallLife,
    leg: LegId,
    raw: &[u8],
    limits: &crate::sip::Limits,
    now: Instant,
) {
    let has = |needle: &[u8]| memchr::memmem::find(raw, needle).is_some();
    let wanted = if raw.starts_with(b"SIP/2.0 2") {
        has(b" INVITE\r\n") && has(b"application/sdp")
    } else if raw.starts_with(b"SIP/2.0 1") {
        false
    } else if raw.starts_with(b"SIP/2.0 ")
        || raw.starts_with(b"BYE ")
        || raw.starts_with(b"CANCEL ")
    {
        has(b"\r\nReason:")
    } else {
        false
    };
    if !wanted {
        return;
    }
    if let Ok(msg) = Message::parse(bytes::Bytes::copy_from_slice(raw), limits) {
        life.on_message(leg, true, &msg, now);
    }
}

/// The record of the call in `slot`, ended at `now`.
pub(super) fn record(
    key: CallKey,
    slot: &Slot,
    life: &CallLife,
    ended: Option<EndedTrace>,
    now: Instant,
) -> CallDetailRecord {
    let ended = ended.unwrap_or_default();
    let lossy = |id: &bytes::Bytes| String::from_utf8_lossy(id).into_owned();
    let carrier_call_id = lossy(&slot.call_ids[0]);
    let teams_call_id = lossy(&slot.call_ids[1]);
    let later_call_ids = ended
        .call_ids
        .iter()
        .filter(|id| **id != carrier_call_id && **id != teams_call_id)
        .cloned()
        .collect();
    let code = ended.microsoft.code().map(|c| c.0);
    let facts = EndFacts {
        call: key.0,
        tenant: slot.labels.tenant().to_string(),
        trunk: slot.labels.trunk().to_string(),
        carrier_call_id,
        teams_call_id,
        later_call_ids,
        microsoft: crate::cdr::record::MicrosoftReport {
            reasons: ended.microsoft.reasons,
            diagnostics: ended.microsoft.diagnostics,
            code,
        },
    };
    let ending = match slot.outcome {
        Some(CallOutcome::Failed { status, reason }) => Ending {
            status: Some(status),
            reason: Some(reason),
            answered: false,
        },
        Some(CallOutcome::Ended { reason }) => Ending {
            status: Some(200),
            reason: Some(reason),
            answered: true,
        },
        None => Ending {
            status: None,
            reason: None,
            answered: false,
        },
    };
    life.finish(facts, ending, now)
}
