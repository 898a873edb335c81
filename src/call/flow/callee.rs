//! Responses from the called leg: provisional relay, answer and ACK, failover between
//! targets, and requests the call sent that failed.

use super::*;

impl State {
    // ----- responses to our requests -----

    pub(super) fn on_response(
        &mut self,
        now: Instant,
        token: u64,
        msg: Message,
        out: &mut VecDeque<Output>,
    ) {
        let Some(status) = msg.status() else { return };
        match self.sent.get(&token).cloned() {
            Some(Sent::Invite { .. }) => self.on_invite_response(now, token, status, msg, out),
            Some(Sent::TransferInvite) => self.on_transfer_response(now, token, status, msg, out),
            Some(Sent::Reinvite { .. }) => self.on_reinvite_response(now, token, status, msg, out),
            Some(Sent::SessionRefresh { leg, cseq }) => {
                self.on_session_refresh_response(now, token, leg, cseq, status, msg, out)
            }
            Some(Sent::Cancel) | None => {}
            Some(Sent::Bye) => {
                if status >= 200 {
                    self.request_done(token, out);
                }
            }
            Some(Sent::Notify) => {
                if status >= 200 {
                    self.request_done(token, out);
                    self.notify_done(token, out);
                }
            }
        }
    }

    pub(super) fn on_invite_response(
        &mut self,
        now: Instant,
        token: u64,
        status: u16,
        msg: Message,
        out: &mut VecDeque<Output>,
    ) {
        let current = self.current_invite == Some(token);
        if (200..300).contains(&status) {
            if current && self.phase == Phase::Calling && !self.cancel_requested {
                self.on_answer(now, token, msg, out);
            } else {
                self.early_dialogs_end(token);
                self.on_stray_answer(token, &msg, out);
            }
            return;
        }
        if let Some(Sent::Invite { responded, .. }) = self.sent.get_mut(&token) {
            *responded = true;
        }
        if status >= 200 {
            self.request_done(token, out);
            self.early_dialogs_end(token);
        }
        if !current {
            // An abandoned attempt woke up: stop it ringing in parallel with the current one.
            if status < 200 {
                self.send_cancel(token, out);
            }
            return;
        }
        if self.cancel_requested || self.phase != Phase::Calling {
            if status < 200 {
                self.send_cancel(token, out);
            }
            return;
        }
        self.cancel_timer(TimerKind::HopTimeout, out);
        if status < 200 {
            if status > 100 {
                self.on_callee_provisional(token, status, &msg, out);
            }
            return;
        }
        if status == 422 && self.session_retry_after_422(now, token, &msg, out) {
            return;
        }
        if status == 415 && self.location_refused(now, token, out) {
            return;
        }
        let retry_after = msg.has_header(&HeaderName::RetryAfter);
        self.callee_final = Some(msg);
        self.attempt_failed(now, Some(status), retry_after, None, out);
    }

    /// A 2xx from the current attempt: ACK it at once (row 28), answer the caller.
    pub(super) fn on_answer(
        &mut self,
        now: Instant,
        token: u64,
        msg: Message,
        out: &mut VecDeque<Output>,
    ) {
        let Some(Sent::Invite { cseq, .. }) = self.sent.get(&token).cloned() else {
            return;
        };
        for kind in [
            TimerKind::HopTimeout,
            TimerKind::NoAnswer,
            TimerKind::ProgressDeadline,
        ] {
            self.cancel_timer(kind, out);
        }
        let callee = self.callee;
        let dialog = self.dialog(callee);
        dialog.confirm_from_response(&msg);
        let ack = dialog.ack(cseq, None);
        let target = dialog.next_hop();
        out.push_back(Output::SendAck {
            leg: callee,
            target,
            msg: ack,
        });
        self.request_done(token, out);
        let body = self.early_dialogs_answered(token, &msg);
        let answer = if body.is_empty() {
            Err(crate::sdp::SdpError::NoAudio)
        } else {
            self.neg.answer_from_callee(callee, &body)
        };
        match answer {
            Ok((sdp, commands)) => {
                out.extend(commands.into_iter().map(Output::Media));
                let response =
                    self.dialogs[idx(self.caller)].response(&self.caller_invite, 200, Some(&sdp));
                let response = self.session_answer_caller(now, response, out);
                self.session_start_as_uac(now, callee, &msg, out);
                out.push_back(Output::SendResponse {
                    leg: self.caller,
                    tx: self.caller_tx,
                    msg: response,
                });
                self.caller_final_sent = true;
                self.phase = Phase::Answered;
                self.answered_at = Some(now);
                out.push_back(Output::Record(CallRecord::Answered {
                    setup_time: now.saturating_duration_since(self.start),
                }));
                self.set_timer(TimerKind::AckWait, now + self.setup.timers.ack_wait, out);
            }
            Err(e) => {
                self.send_bye(callee, out);
                self.reject_caller(now, e.sip_status(), EndReason::BadMedia, out);
            }
        }
    }

    /// A 2xx from an abandoned attempt or a second fork: ACK and BYE it.
    pub(super) fn on_stray_answer(
        &mut self,
        token: u64,
        msg: &Message,
        out: &mut VecDeque<Output>,
    ) {
        let Some(Sent::Invite { cseq, index, .. }) = self.sent.get(&token).cloned() else {
            return;
        };
        let callee = self.callee;
        let answered_tag = self.dialogs[idx(callee)].remote_tag.clone();
        let tag = msg.to().ok().and_then(|t| t.tag);
        let same_dialog =
            self.current_invite == Some(token) && answered_tag.is_some() && tag == answered_tag;
        // Our INVITE's dialog, or (its early dialog was replaced, row 22) the one kept for it.
        let call_id = msg.call_id();
        let mut stray = self
            .replaced_teams
            .iter()
            .find(|d| callee == LegId::Teams && Some(&d.call_id) == call_id.as_ref())
            .unwrap_or(&self.dialogs[idx(callee)])
            .clone();
        // An abandoned carrier hop is released over its own transport, from our address for
        // it, whatever hop the call has moved on to.
        if let (LegPolicy::Carrier(ours), LegId::Carrier, Some(hop)) = (
            &mut stray.policy,
            callee,
            self.setup.carrier.targets.get(index),
        ) {
            ours.host.clone_from(&hop.local_host);
            ours.port = hop.local_port;
            ours.transport = hop.transport;
        }
        stray.confirm_from_response(msg);
        let target = stray.next_hop();
        out.push_back(Output::SendAck {
            leg: callee,
            target: target.clone(),
            msg: stray.ack(cseq, None),
        });
        if same_dialog {
            // A retransmitted 2xx of the answered dialog: the ACK is all it needs.
            return;
        }
        stray.local_cseq = cseq;
        let bye = stray.request(Method::Bye, None);
        let bye_token = self.send_request(callee, target, bye, Sent::Bye, out);
        if self.phase == Phase::Ending {
            self.awaiting.insert(bye_token);
        }
        self.request_done(token, out);
    }

    pub(super) fn relay_provisional(
        &mut self,
        status: u16,
        msg: &Message,
        out: &mut VecDeque<Output>,
    ) {
        self.progressed = true;
        self.cancel_timer(TimerKind::ProgressDeadline, out);
        let mut sdp = None;
        if let Some(body) = sdp_of(msg).filter(|_| !self.neg.delayed_offer) {
            if let Ok((answer, commands)) = self.neg.answer_from_callee(self.callee, &body) {
                out.extend(self.any_fork_may_check(commands));
                sdp = Some(answer);
            }
        }
        let response =
            self.dialogs[idx(self.caller)].response(&self.caller_invite, status, sdp.as_deref());
        out.push_back(Output::SendResponse {
            leg: self.caller,
            tx: self.caller_tx,
            msg: response,
        });
    }

    /// The current attempt failed: try the next target when the failure allows it, else
    /// answer the caller.
    pub(super) fn attempt_failed(
        &mut self,
        now: Instant,
        status: Option<u16>,
        retry_after: bool,
        failure: Option<TxFailure>,
        out: &mut VecDeque<Output>,
    ) {
        let index = match self.current_invite.and_then(|t| self.sent.get(&t)) {
            Some(Sent::Invite { index, .. }) => *index,
            _ => return,
        };
        let failover = match self.callee {
            // Rows 9, 10: connect failure or no response (before anyone rang: a new INVITE
            // after a 18x would ring the user again), or 503 with Retry-After.
            LegId::Teams => {
                (failure.is_some() && !self.progressed) || (status == Some(503) && retry_after)
            }
            // Trunk failover on 408/5xx/timeout before any 18x.
            LegId::Carrier => {
                !self.progressed && (failure.is_some() || status.is_some_and(is_transient))
            }
        };
        if failover
            && index + 1 < self.targets_total
            && self.try_target(now, index + 1, out).is_ok()
        {
            return;
        }
        let extra = self.failure_headers_to_caller(status);
        let status = status.unwrap_or(match failure {
            Some(TxFailure::Timeout) if self.callee == LegId::Carrier => 408,
            _ => 503,
        });
        let to_caller = self.status_to_caller(status);
        let reason = if failover {
            EndReason::AllTargetsFailed
        } else {
            EndReason::Rejected
        };
        self.current_invite = None;
        self.reject_caller_with(now, to_caller, reason, &extra, out);
    }

    pub(super) fn request_failed(
        &mut self,
        now: Instant,
        token: u64,
        reason: TxFailure,
        out: &mut VecDeque<Output>,
    ) {
        match self.sent.get(&token) {
            Some(Sent::Invite { .. }) => {
                self.request_done(token, out);
                if self.current_invite == Some(token)
                    && self.phase == Phase::Calling
                    && !self.cancel_requested
                {
                    self.cancel_timer(TimerKind::HopTimeout, out);
                    self.attempt_failed(now, None, false, Some(reason), out);
                }
            }
            Some(Sent::TransferInvite) => {
                self.request_done(token, out);
                self.transfer_failed(token, reason, out);
            }
            Some(Sent::Reinvite { .. }) => {
                self.request_done(token, out);
                self.reinvite_failed(token, out);
            }
            Some(&Sent::SessionRefresh { leg, .. }) => {
                self.session_refresh_failed(now, token, leg, out)
            }
            Some(Sent::Notify) => {
                self.request_done(token, out);
                self.notify_done(token, out);
            }
            Some(_) => self.request_done(token, out),
            None => {}
        }
    }

    /// `token` needs nothing more; an ending call may now finish.
    pub(super) fn request_done(&mut self, token: u64, out: &mut VecDeque<Output>) {
        self.awaiting.remove(&token);
        if self.phase == Phase::Ending && self.awaiting.is_empty() {
            self.finish(out);
        }
    }
}
