//! The calls in progress as the admin API shows them (`GET /admin/calls`): a copy made in
//! the SIP core, so readers never touch the call table.

use super::{CallKey, Dispatcher};
use crate::call::{CallSummary, LegId};
use crate::media::SessionId;

/// One call in progress.
#[derive(Debug, Clone)]
pub struct CallSnapshot {
    pub key: CallKey,
    /// Call-ID of the carrier leg's dialog and of the Teams leg's.
    pub carrier_call_id: String,
    pub teams_call_id: String,
    pub tenant: String,
    pub trunk: String,
    /// `inbound` (PSTN -> Teams) or `outbound`.
    pub direction: &'static str,
    pub summary: CallSummary,
    /// Its media session (live counters and addresses are read from the media engine).
    pub session: Option<SessionId>,
}

impl Dispatcher {
    /// Every call in progress, oldest first.
    pub fn snapshot(&self) -> Vec<CallSnapshot> {
        let mut keys = self.table.keys();
        keys.sort();
        keys.into_iter()
            .filter_map(|key| {
                let slot = self.table.get(key)?;
                let call_id = |leg| String::from_utf8_lossy(slot.call.call_id(leg)).into_owned();
                Some(CallSnapshot {
                    key,
                    carrier_call_id: call_id(LegId::Carrier),
                    teams_call_id: call_id(LegId::Teams),
                    tenant: slot.labels.tenant().to_string(),
                    trunk: slot.labels.trunk().to_string(),
                    direction: slot.labels.direction().label(),
                    summary: slot.call.summary(),
                    session: slot.session,
                })
            })
            .collect()
    }
}
