//! Re-INVITEs from either peer (rows 39-41, 53).
//!
//! * A re-INVITE whose offer changes what the other leg sees (hold/resume, direction, the
//!   voice codec in use dropped, DTMF appearing or going; `sdp_glue/reinvite.rs`) is relayed: a re-INVITE on the other leg's dialog with the offer rewritten (our
//!   address and port on that leg unchanged, row 41; hold towards Teams as `a=inactive`,
//!   row 39; never `c=0.0.0.0`, row 40). Its 2xx is ACKed, the media core updated and the
//!   original answered 200 with the rewritten answer; a non-2xx answers the original with the
//!   same class and leaves media as it was.
//! * A re-INVITE without SDP (our last SDP is the offer in the 2xx, the answer comes in the
//!   ACK), a refresh (same `o=` version and lines, RFC 4028 session timers rely on this) or a
//!   change of the peer's own transport only (new address, new SRTP key, ICE restart, a longer
//!   codec list) is answered here, without bothering the other leg.
//! * While a transfer (REFER) swaps the Teams leg, any re-INVITE gets 491.
//! * Glare (RFC 3261 §14.2): while a relayed re-INVITE is pending, a re-INVITE from the other
//!   leg gets 491 and a second one from the same leg 500 with Retry-After. We never send a
//!   re-INVITE to a leg whose ACK for our last 2xx is outstanding (491 to the offerer).
//! * No answer to the relayed re-INVITE (timeout, transport failure): the original gets 500
//!   and the call goes on (a 408 would make the offerer end its dialog, RFC 3261 §12.2.1.2).
//!   A 481 means the other dialog is gone: the call ends.
//! * Our 2xx to a re-INVITE waits for its ACK (matched by CSeq); when the ACK never comes the
//!   call ends with BYE, as RFC 3261 §14.2 recommends ("If a UAS generates a 2xx response and
//!   never receives an ACK, it SHOULD generate a BYE to terminate the dialog").

use super::*;
use crate::call::sdp_glue::{PendingOffer, ReinvitePlan};

/// Re-INVITE state of a call.
#[derive(Default)]
pub(super) struct Reinvites {
    relay: Option<Relay>,
    /// Our 2xx to a peer's re-INVITE, per leg ([`idx`]), until its ACK.
    unacked: [Option<Unacked>; 2],
}

/// A peer's re-INVITE relayed to the other leg.
struct Relay {
    /// Server transaction and request of the original re-INVITE.
    tx: TxId,
    request: Message,
    /// Our re-INVITE on the other leg.
    token: u64,
    pending: PendingOffer,
}

struct Unacked {
    tx: TxId,
    cseq: u32,
    /// Our 2xx carried an offer (the re-INVITE had none): the answer comes in the ACK.
    offer_in_2xx: bool,
}

/// The status for the original re-INVITE when the other leg refused ours.
fn relayed_failure_status(status: u16) -> u16 {
    match status {
        // Glare on the other leg: the offerer retries after its own random wait.
        491 => 491,
        406 | 415 | 488 | 606 => 488,
        // Authentication, dialog, timeout and server problems are ours, not the offerer's.
        401 | 407 | 408 | 420 | 481 | 300..=399 | 500..=599 => 500,
        400..=499 => status,
        _ => 488,
    }
}

impl State {
    pub(super) fn reinvite_received(
        &mut self,
        now: Instant,
        leg: LegId,
        tx: TxId,
        msg: Message,
        out: &mut VecDeque<Output>,
    ) {
        if !matches!(self.phase, Phase::Answered | Phase::Confirmed) {
            self.respond(leg, tx, &msg, 491, None, out);
            return;
        }
        // Session timers (RFC 4028, row 42): 422 below our Min-SE, 491 while our refresh is open.
        if self.session_screen_reinvite(leg, tx, &msg, out) {
            return;
        }
        if self.transfer.is_some() {
            // A transfer is swapping the Teams leg's media: one offer/answer at a time.
            self.respond(leg, tx, &msg, 491, None, out);
            return;
        }
        if let Some(relay) = &self.reinvites.relay {
            if relay.pending.from() == leg {
                // RFC 3261 §14.2: an INVITE while the previous one from the same side is open.
                let response = self.dialogs[idx(leg)].response(&msg, 500, None);
                let response = add_headers(&response, &[(HeaderName::RetryAfter, "1".into())]);
                out.push_back(Output::SendResponse {
                    leg,
                    tx,
                    msg: response,
                });
            } else {
                self.respond(leg, tx, &msg, 491, None, out);
            }
            return;
        }
        if let Some(target) = msg.contacts().ok().and_then(|c| c.into_iter().next()) {
            self.dialog(leg).remote_target = Some(target.uri.raw().clone());
        }
        if leg == LegId::Teams {
            self.follow_user_location(&msg, out);
        }
        let sdp = sdp_of(&msg);
        let plan = match self.neg.reinvite_offer(leg, sdp.as_deref()) {
            Ok(plan) => plan,
            Err(e) => {
                self.respond(leg, tx, &msg, e.sip_status(), None, out);
                return;
            }
        };
        match plan {
            ReinvitePlan::Local { answer, commands } => {
                out.extend(commands.into_iter().map(Output::Media));
                self.answer_reinvite(now, leg, tx, &msg, &answer, sdp.is_none(), out);
            }
            ReinvitePlan::Relay { offer, pending } => {
                let other = leg.other();
                let other_unconfirmed = other == self.caller && self.phase == Phase::Answered;
                if other_unconfirmed
                    || self.reinvites.unacked[idx(other)].is_some()
                    || self.session_refresh_in_flight(other)
                {
                    // An INVITE transaction is still open on the other leg (RFC 3261 §14.1).
                    self.respond(leg, tx, &msg, 491, None, out);
                    return;
                }
                let dialog = self.dialog(other);
                let reinvite = dialog.request(Method::Invite, Some(&offer));
                let cseq = dialog.local_cseq;
                let target = dialog.next_hop();
                let reinvite = add_headers(&reinvite, &self.session_request_headers(other));
                let token = self.send_request(
                    other,
                    target,
                    reinvite,
                    Sent::Reinvite { leg: other, cseq },
                    out,
                );
                self.reinvites.relay = Some(Relay {
                    tx,
                    request: msg,
                    token,
                    pending,
                });
            }
        }
    }

    /// 200 with `sdp` to a peer's re-INVITE; its ACK is expected next. Any accepted
    /// re-INVITE refreshes the leg's session timer (`session_timer.rs`).
    #[allow(clippy::too_many_arguments)]
    fn answer_reinvite(
        &mut self,
        now: Instant,
        leg: LegId,
        tx: TxId,
        request: &Message,
        sdp: &[u8],
        offer_in_2xx: bool,
        out: &mut VecDeque<Output>,
    ) {
        let response = self.dialogs[idx(leg)].response(request, 200, Some(sdp));
        let response = self.on_refresh_received(now, leg, request, response, out);
        out.push_back(Output::SendResponse {
            leg,
            tx,
            msg: response,
        });
        let cseq = request.cseq().map(|c| c.seq).unwrap_or_default();
        self.reinvites.unacked[idx(leg)] = Some(Unacked {
            tx,
            cseq,
            offer_in_2xx,
        });
    }

    /// A response to a re-INVITE we sent on `leg`.
    pub(super) fn on_reinvite_response(
        &mut self,
        now: Instant,
        token: u64,
        status: u16,
        msg: Message,
        out: &mut VecDeque<Output>,
    ) {
        let Some(Sent::Reinvite { leg, cseq }) = self.sent.get(&token).cloned() else {
            return;
        };
        if status < 200 {
            return;
        }
        let relay = match &self.reinvites.relay {
            Some(r) if r.token == token => self.reinvites.relay.take(),
            _ => None,
        };
        if status >= 300 {
            self.request_done(token, out);
            if let Some(relay) = relay {
                let from = relay.pending.from();
                let to_offerer = relayed_failure_status(status);
                self.respond(from, relay.tx, &relay.request, to_offerer, None, out);
                if status == 481 && matches!(self.phase, Phase::Answered | Phase::Confirmed) {
                    // The other leg's dialog no longer exists (RFC 3261 §12.2.1.2).
                    self.end_call(now, EndReason::TransportLost, Some(leg), out);
                }
            }
            return;
        }
        // 2xx (again for each retransmission): ACK it; only the first one carries on.
        let dialog = self.dialog(leg);
        if let Some(target) = msg.contacts().ok().and_then(|c| c.into_iter().next()) {
            dialog.remote_target = Some(target.uri.raw().clone());
        }
        let ack = dialog.ack(cseq, None);
        let target = dialog.next_hop();
        out.push_back(Output::SendAck {
            leg,
            target,
            msg: ack,
        });
        self.request_done(token, out);
        let Some(relay) = relay else {
            return;
        };
        self.on_reinvite_answered(now, leg, &msg, out);
        let from = relay.pending.from();
        let answered = match sdp_of(&msg) {
            None => Err(crate::sdp::SdpError::NoAudio),
            Some(body) => self.neg.reinvite_answered(relay.pending, &body),
        };
        match answered {
            Ok((sdp, commands)) => {
                out.extend(commands.into_iter().map(Output::Media));
                self.answer_reinvite(now, from, relay.tx, &relay.request, &sdp, false, out);
            }
            Err(e) => self.respond(from, relay.tx, &relay.request, e.sip_status(), None, out),
        }
    }

    /// Our relayed re-INVITE got no response: the offerer gets 500, the call goes on with the
    /// media it had.
    pub(super) fn reinvite_failed(&mut self, token: u64, out: &mut VecDeque<Output>) {
        let Some(relay) = self.reinvites.relay.take_if(|r| r.token == token) else {
            return;
        };
        let from = relay.pending.from();
        self.respond(from, relay.tx, &relay.request, 500, None, out);
    }

    /// An ACK on `leg`: true when it acknowledges our 2xx to a re-INVITE (consumed here).
    pub(super) fn reinvite_acked(
        &mut self,
        now: Instant,
        leg: LegId,
        msg: &Message,
        out: &mut VecDeque<Output>,
    ) -> bool {
        let cseq = msg.cseq().ok().map(|c| c.seq);
        let Some(unacked) = self.reinvites.unacked[idx(leg)].take_if(|u| Some(u.cseq) == cseq)
        else {
            return false;
        };
        if let Some(body) = sdp_of(msg).filter(|_| unacked.offer_in_2xx) {
            match self.neg.reinvite_ack_answer(leg, &body) {
                Ok(commands) => out.extend(commands.into_iter().map(Output::Media)),
                Err(_) => self.end_call(now, EndReason::BadMedia, None, out),
            }
        }
        true
    }

    /// The transaction layer gave up waiting for the ACK of a 2xx. True when it was our 2xx
    /// to a re-INVITE: the call ends with BYE (RFC 3261 §14.2).
    pub(super) fn reinvite_ack_timeout(
        &mut self,
        now: Instant,
        leg: LegId,
        tx: TxId,
        out: &mut VecDeque<Output>,
    ) -> bool {
        if self.reinvites.unacked[idx(leg)]
            .take_if(|u| u.tx == tx)
            .is_none()
        {
            return false;
        }
        if matches!(self.phase, Phase::Answered | Phase::Confirmed) {
            self.end_call(now, EndReason::AckTimeout, None, out);
        }
        true
    }

    /// True while a re-INVITE transaction is open on `leg`: our relayed re-INVITE waits for
    /// its answer there, the peer's relayed one waits for the other leg, or our 2xx waits for
    /// its ACK. No other re-INVITE may start on `leg` then (RFC 3261 §14.1); for the session
    /// refresher.
    pub(super) fn reinvite_in_progress(&self, leg: LegId) -> bool {
        self.reinvites.relay.is_some() || self.reinvites.unacked[idx(leg)].is_some()
    }

    /// The call is ending: a relayed re-INVITE still open gets 487 (RFC 3261 §15.1.2); the
    /// answer to ours is still awaited so a late 2xx is ACKed.
    pub(super) fn stop_reinvite(&mut self, out: &mut VecDeque<Output>) {
        let Some(relay) = self.reinvites.relay.take() else {
            return;
        };
        self.awaiting.insert(relay.token);
        let from = relay.pending.from();
        self.respond(from, relay.tx, &relay.request, 487, None, out);
    }
}

#[cfg(test)]
mod tests {
    use super::relayed_failure_status;

    #[test]
    fn failures_of_the_other_leg_map_to_the_offerer() {
        assert_eq!(relayed_failure_status(491), 491);
        assert_eq!(relayed_failure_status(488), 488);
        assert_eq!(relayed_failure_status(606), 488);
        assert_eq!(relayed_failure_status(408), 500);
        assert_eq!(relayed_failure_status(481), 500);
        assert_eq!(relayed_failure_status(503), 500);
        assert_eq!(relayed_failure_status(403), 403);
        assert_eq!(relayed_failure_status(603), 488);
    }
}
