//! The call flow's side of caller identity (rows 20, 57), Diversion (doc 2.9) and what crosses
//! with a failure (row 58): the rules themselves live in `call/identity.rs` and `call/codes.rs`.

use super::*;
use crate::call::codes::{map_final_status_with, q850_reason_to_carrier};
use crate::call::identity::{self, CarrierTrust, PrivacyRequest, ANONYMOUS_FROM};

impl State {
    /// Identity of the callee's INVITE: sets our From and Contact user on the callee leg and
    /// returns the extra header lines. Towards Teams: the carrier's PAI number in From when
    /// `forward_pai` (row 20) — unless the carrier asked for privacy, which is never undone.
    /// Towards the carrier: privacy, PAI for trusted trunks and Diversion (row 57, doc 2.9),
    /// by the trunk of the hop tried: each carrier hop has its own trunk's trust and rules.
    pub(super) fn identity_headers(&mut self) -> Vec<(HeaderName, String)> {
        match self.callee {
            LegId::Teams => {
                self.identity_towards_teams();
                Vec::new()
            }
            LegId::Carrier => self.identity_towards_carrier(),
        }
    }

    fn identity_towards_teams(&mut self) {
        if !self.setup.teams.forward_pai {
            return;
        }
        let invite = &self.caller_invite;
        let privacy = PrivacyRequest::of(invite);
        let anonymous = invite
            .from()
            .ok()
            .is_some_and(|f| identity::is_anonymous(&f));
        if privacy.id || privacy.user || anonymous {
            return;
        }
        let pai_user = invite
            .header(&HeaderName::PAssertedIdentity)
            .and_then(|v| crate::sip::NameAddr::parse(&v).ok())
            .and_then(|n| number_of(&n.uri));
        if let Some(user) = pai_user {
            let user = String::from_utf8_lossy(&user).into_owned();
            let dialog = &mut self.dialogs[idx(LegId::Teams)];
            let number = dialog.policy.number(&user);
            dialog.local = format!(
                "<sip:{number}@{};user=phone>;tag={}",
                dialog.policy.local_host(),
                dialog.local_tag
            );
            dialog.contact_user = Some(number);
        }
    }

    fn identity_towards_carrier(&mut self) -> Vec<(HeaderName, String)> {
        let host = self.dialogs[idx(LegId::Carrier)]
            .policy
            .local_host()
            .to_owned();
        // The hop's trunk is the one in use (`enter_carrier_hop`).
        let trunk = &self.setup.carrier.trunk;
        let decided = identity::towards_carrier(
            &self.caller_invite,
            &self.setup.numbers.caller,
            CarrierTrust {
                host: &host,
                trusted: trunk.trusted,
                diversion: trunk.diversion_from_history_info,
                calling_number_rules: &trunk.calling_number_rules,
            },
        );
        let dialog = &mut self.dialogs[idx(LegId::Carrier)];
        dialog.local = match &decided.from_user {
            Some(user) => format!("<sip:{user}@{host}>;tag={}", dialog.local_tag),
            None => format!("{ANONYMOUS_FROM};tag={}", dialog.local_tag),
        };
        dialog.contact_user = decided.contact_user;
        decided.headers
    }

    /// The caller's status for a final error `status` from the callee (or synthesised for a
    /// timeout), with the trunk's table of that direction (row 58) after the built-in rules
    /// and row 30's failover code towards Teams (see `map_final_status_with`).
    pub(super) fn status_to_caller(&self, status: u16) -> u16 {
        // On Teams -> PSTN calls the trunk in use is the hop's that answered (row 58).
        let policy = &self.setup.carrier.trunk.responses;
        let table = match self.caller {
            LegId::Carrier => &policy.to_carrier,
            LegId::Teams => &policy.to_teams,
        };
        map_final_status_with(
            status,
            self.caller == LegId::Teams,
            self.progressed,
            &self.setup.teams.failover_response_codes,
            table,
        )
    }

    /// Extra headers of the caller's final error when the callee's own final response
    /// `status` decided it: Teams' Q.850 Reason towards the carrier, after the 486 rule
    /// (row 58). Nothing crosses towards Teams, and nothing for timeouts.
    pub(super) fn failure_headers_to_caller(
        &mut self,
        status: Option<u16>,
    ) -> Vec<(HeaderName, String)> {
        let response = self.callee_final.take();
        let (Some(status), Some(response)) = (status, response) else {
            return Vec::new();
        };
        if self.caller != LegId::Carrier || response.status() != Some(status) {
            return Vec::new();
        }
        let reasons = response.header_values(&HeaderName::Reason);
        q850_reason_to_carrier(
            Some(status),
            &reasons,
            self.setup.carrier.trunk.responses.busy_cause,
        )
        .map(|value| vec![(HeaderName::Reason, value)])
        .unwrap_or_default()
    }

    /// Headers for the BYEs (or the CANCEL) this BYE or CANCEL from `leg` causes: Teams'
    /// Q.850 Reason crosses to the carrier (RFC 3326); nothing crosses to Teams.
    pub(super) fn note_bye_reason(&mut self, leg: LegId, bye: &Message) {
        self.bye_headers = match leg {
            LegId::Teams => {
                let reasons = bye.header_values(&HeaderName::Reason);
                q850_reason_to_carrier(
                    None,
                    &reasons,
                    self.setup.carrier.trunk.responses.busy_cause,
                )
                .map(|value| vec![(HeaderName::Reason, value)])
                .unwrap_or_default()
            }
            LegId::Carrier => Vec::new(),
        };
    }

    /// Extra headers of a BYE we send on `leg`.
    pub(super) fn bye_headers_for(&self, leg: LegId) -> &[(HeaderName, String)] {
        match leg {
            LegId::Carrier => &self.bye_headers,
            LegId::Teams => &[],
        }
    }
}
