//! Requests from either peer (CANCEL, BYE, re-INVITE, ...), ACKs, media events, timers.

use super::*;

impl State {
    // ----- requests from the peers -----

    pub(super) fn on_request(
        &mut self,
        now: Instant,
        leg: LegId,
        tx: TxId,
        msg: Message,
        out: &mut VecDeque<Output>,
    ) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        if leg == LegId::Teams && self.on_other_teams_dialog(tx, &msg, out) {
            return;
        }
        if self.request_on_ended_fork(leg, tx, &msg, out) {
            return;
        }
        if leg == LegId::Teams && self.on_new_teams_dialog(now, tx, &msg, out) {
            return;
        }
        if !self.in_leg_dialog(leg, &method, &msg) {
            // A Call-ID alone does not make a request ours: whoever read it off the wire
            // still cannot end, move or re-key the call.
            self.respond(leg, tx, &msg, 481, None, out);
            return;
        }
        if method != Method::Cancel {
            if let Ok(cseq) = msg.cseq() {
                let dialog = self.dialog(leg);
                if dialog.remote_cseq.is_some_and(|last| cseq.seq <= last)
                    && method == Method::Invite
                {
                    // RFC 3261 §12.2.2: an old or repeated CSeq is answered 500.
                    self.respond(leg, tx, &msg, 500, None, out);
                    return;
                }
                dialog.remote_cseq = Some(cseq.seq);
            }
        }
        match method {
            Method::Cancel => self.on_cancel(now, leg, tx, &msg, out),
            Method::Bye => self.on_bye(now, leg, tx, &msg, out),
            Method::Invite => self.on_reinvite(now, leg, tx, msg, out),
            Method::Options => self.respond(leg, tx, &msg, 200, None, out),
            Method::Refer if leg == LegId::Teams => self.on_refer(leg, tx, &msg, out),
            _ => self.respond(leg, tx, &msg, 501, None, out),
        }
    }

    /// RFC 3261 §12.2.2: a request within the leg's dialog carries our tag in To and the
    /// peer's in From. A CANCEL belongs to the INVITE it cancels: no To tag of ours yet (or
    /// ours), the caller's From tag.
    fn in_leg_dialog(&self, leg: LegId, method: &Method, msg: &Message) -> bool {
        let dialog = &self.dialogs[idx(leg)];
        let from_tag = msg.from().ok().and_then(|f| f.tag);
        let to_tag = msg.to().ok().and_then(|t| t.tag);
        let from_matches = dialog.remote_tag.is_none() || from_tag == dialog.remote_tag;
        let ours = to_tag.as_deref() == Some(dialog.local_tag.as_bytes());
        match method {
            Method::Cancel => from_matches && (to_tag.is_none() || ours),
            _ => from_matches && ours,
        }
    }

    pub(super) fn respond(
        &mut self,
        leg: LegId,
        tx: TxId,
        request: &Message,
        status: u16,
        body: Option<&[u8]>,
        out: &mut VecDeque<Output>,
    ) {
        let msg = self.dialogs[idx(leg)].response(request, status, body);
        out.push_back(Output::SendResponse { leg, tx, msg });
    }

    pub(super) fn on_cancel(
        &mut self,
        now: Instant,
        leg: LegId,
        tx: TxId,
        msg: &Message,
        out: &mut VecDeque<Output>,
    ) {
        self.respond(leg, tx, msg, 200, None, out);
        if leg != self.caller || self.caller_final_sent || self.phase != Phase::Calling {
            return;
        }
        self.cancel_requested = true;
        // Microsoft's Q.850 cause on its CANCEL reaches the carrier's CANCEL like a BYE's.
        self.note_bye_reason(leg, msg);
        let response = self.dialogs[idx(leg)].response(&self.caller_invite, 487, None);
        out.push_back(Output::SendResponse {
            leg,
            tx: self.caller_tx,
            msg: response,
        });
        self.caller_final_sent = true;
        out.push_back(Output::Record(CallRecord::Failed {
            status: 487,
            class: StatusClass::of(487),
            reason: EndReason::CancelledByCaller,
        }));
        self.stop_callee_invite(out);
        self.begin_ending(now, out);
    }

    /// Cancels the callee INVITE (now if it has a provisional, else on its first one) and
    /// waits for its final response.
    pub(super) fn stop_callee_invite(&mut self, out: &mut VecDeque<Output>) {
        self.cancel_requested = true;
        for kind in [
            TimerKind::HopTimeout,
            TimerKind::NoAnswer,
            TimerKind::ProgressDeadline,
        ] {
            self.cancel_timer(kind, out);
        }
        if let Some(token) = self.current_invite {
            self.awaiting.insert(token);
            if let Some(Sent::Invite {
                responded: true, ..
            }) = self.sent.get(&token)
            {
                self.send_cancel(token, out);
            }
        }
    }

    pub(super) fn send_cancel(&mut self, token: u64, out: &mut VecDeque<Output>) {
        let Some(Sent::Invite {
            invite,
            cancel_sent: false,
            index,
            ..
        }) = self.sent.get(&token).cloned()
        else {
            return;
        };
        if let Some(Sent::Invite { cancel_sent, .. }) = self.sent.get_mut(&token) {
            *cancel_sent = true;
        }
        let Ok(parsed) = Message::parse(invite, &Limits::default()) else {
            return;
        };
        let Some(cancel) = cancel_for(&parsed) else {
            return;
        };
        let mut headers = self.dialogs[idx(self.callee)].policy.extra_headers();
        headers.extend_from_slice(self.bye_headers_for(self.callee));
        let cancel = add_headers(&cancel, &headers);
        let target = match self.callee {
            LegId::Teams => Target::TeamsProxy(index),
            LegId::Carrier => Target::Carrier(index),
        };
        self.send_request(self.callee, target, cancel, Sent::Cancel, out);
    }

    pub(super) fn on_bye(
        &mut self,
        now: Instant,
        leg: LegId,
        tx: TxId,
        msg: &Message,
        out: &mut VecDeque<Output>,
    ) {
        match self.phase {
            Phase::Answered | Phase::Confirmed => {
                self.respond(leg, tx, msg, 200, None, out);
                let reason = match leg {
                    LegId::Carrier => EndReason::ByeFromCarrier,
                    LegId::Teams => EndReason::ByeFromTeams,
                };
                self.note_bye_reason(leg, msg);
                self.end_call(now, reason, Some(leg), out);
            }
            Phase::Ending => self.respond(leg, tx, msg, 200, None, out),
            _ => self.respond(leg, tx, msg, 481, None, out),
        }
    }

    pub(super) fn on_reinvite(
        &mut self,
        now: Instant,
        leg: LegId,
        tx: TxId,
        msg: Message,
        out: &mut VecDeque<Output>,
    ) {
        self.reinvite_received(now, leg, tx, msg, out);
    }

    pub(super) fn on_ack(
        &mut self,
        now: Instant,
        leg: LegId,
        msg: Message,
        out: &mut VecDeque<Output>,
    ) {
        if self.replacement_acked(leg, &msg) {
            return;
        }
        if !self.in_leg_dialog(leg, &Method::Ack, &msg) {
            return;
        }
        if self.reinvite_acked(now, leg, &msg, out) {
            return;
        }
        if leg != self.caller || self.phase != Phase::Answered {
            return;
        }
        self.cancel_timer(TimerKind::AckWait, out);
        self.phase = Phase::Confirmed;
        if self.neg.delayed_offer {
            let body = sdp_of(&msg).unwrap_or_default();
            match self.neg.answer_in_ack(&body) {
                Ok(commands) => out.extend(commands.into_iter().map(Output::Media)),
                Err(_) => self.end_call(now, EndReason::BadMedia, None, out),
            }
        }
    }

    pub(super) fn on_media(&mut self, now: Instant, event: MediaEvent, out: &mut VecDeque<Output>) {
        if let MediaEvent::Inactive { session, .. } = event {
            if session == self.setup.media.id
                && matches!(self.phase, Phase::Answered | Phase::Confirmed)
            {
                self.end_call(now, EndReason::MediaInactive, None, out);
            }
        }
    }

    pub(super) fn ack_missing(&mut self, now: Instant, out: &mut VecDeque<Output>) {
        if self.phase == Phase::Answered {
            self.end_call(now, EndReason::AckTimeout, None, out);
        }
    }

    pub(super) fn on_timer(&mut self, now: Instant, kind: TimerKind, out: &mut VecDeque<Output>) {
        match kind {
            TimerKind::HopTimeout => {
                if self.phase != Phase::Calling || self.cancel_requested {
                    return;
                }
                if let Some(token) = self.current_invite {
                    if let Some(Sent::Invite {
                        responded: false, ..
                    }) = self.sent.get(&token)
                    {
                        // Abandon it: no CANCEL is allowed before a provisional; a late 2xx is
                        // ACKed and released with BYE.
                        self.attempt_failed(now, None, false, Some(TxFailure::Timeout), out);
                    }
                }
            }
            TimerKind::NoAnswer => {
                if self.phase == Phase::Calling && !self.cancel_requested {
                    self.stop_callee_invite(out);
                    self.reject_caller(now, 480, EndReason::NoAnswer, out);
                }
            }
            TimerKind::ProgressDeadline => {
                if self.phase == Phase::Calling && !self.cancel_requested && !self.progressed {
                    let code = failover_code(&self.setup.teams.failover_response_codes);
                    self.stop_callee_invite(out);
                    self.reject_caller(now, code, EndReason::AllTargetsFailed, out);
                }
            }
            TimerKind::AckWait => self.ack_missing(now, out),
            TimerKind::Teardown => self.finish(out),
            TimerKind::SessionRefresh(_) | TimerKind::SessionExpiry(_) => {
                self.on_session_timer(now, kind, out)
            }
        }
    }
}
