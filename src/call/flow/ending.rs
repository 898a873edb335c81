//! Ending a call: final error to the caller, BYE on both legs, media removal, Finished.

use super::*;

impl State {
    // ----- ending -----

    /// Final error to the caller, then end (waiting for anything still in flight).
    pub(super) fn reject_caller(
        &mut self,
        now: Instant,
        status: u16,
        reason: EndReason,
        out: &mut VecDeque<Output>,
    ) {
        self.reject_caller_with(now, status, reason, &[], out);
    }

    /// [`State::reject_caller`] with extra header lines (a Reason that crosses, row 58).
    pub(super) fn reject_caller_with(
        &mut self,
        now: Instant,
        status: u16,
        reason: EndReason,
        headers: &[(HeaderName, String)],
        out: &mut VecDeque<Output>,
    ) {
        if !self.caller_final_sent {
            let response =
                self.dialogs[idx(self.caller)].response(&self.caller_invite, status, None);
            let response = add_headers(&response, headers);
            out.push_back(Output::SendResponse {
                leg: self.caller,
                tx: self.caller_tx,
                msg: response,
            });
            self.caller_final_sent = true;
            out.push_back(Output::Record(CallRecord::Failed {
                status,
                class: StatusClass::of(status),
                reason,
            }));
        }
        self.begin_ending(now, out);
    }

    /// Ended from outside (`Input::Terminate`). The Reason tells both peers why (RFC 3326):
    /// Q.850 16 (normal clearing) for an operator, 41 (temporary failure) when a drain ran
    /// out of time, so a carrier may retry elsewhere.
    pub(super) fn terminate(
        &mut self,
        now: Instant,
        reason: EndReason,
        out: &mut VecDeque<Output>,
    ) {
        let (cause, text, status) = match reason {
            EndReason::Drained => (41, "SBC shutting down", 503),
            _ => (16, "Ended by the operator", 480),
        };
        let value = format!("Q.850;cause={cause};text=\"{text}\"");
        self.terminate_reason = Some((HeaderName::Reason, value.clone()));
        match self.phase {
            Phase::Calling => {
                self.stop_callee_invite(out);
                let headers = [(HeaderName::Reason, value)];
                self.reject_caller_with(now, status, reason, &headers, out);
            }
            Phase::Answered | Phase::Confirmed => self.end_call(now, reason, None, out),
            Phase::Ending | Phase::Finished => {}
        }
    }

    /// A response to the caller's INVITE could not be delivered (its connection is gone):
    /// stop the callee side, or end an answered call.
    pub(super) fn caller_lost(&mut self, now: Instant, out: &mut VecDeque<Output>) {
        match self.phase {
            Phase::Calling => {
                self.stop_callee_invite(out);
                if !self.caller_final_sent {
                    self.caller_final_sent = true;
                    out.push_back(Output::Record(CallRecord::Failed {
                        status: 503,
                        class: StatusClass::of(503),
                        reason: EndReason::TransportLost,
                    }));
                }
                self.begin_ending(now, out);
            }
            Phase::Answered | Phase::Confirmed => {
                self.end_call(now, EndReason::TransportLost, None, out)
            }
            Phase::Ending | Phase::Finished => {}
        }
    }

    /// BYE on every confirmed leg except `skip`, then wait for the answers.
    pub(super) fn end_call(
        &mut self,
        now: Instant,
        reason: EndReason,
        skip: Option<LegId>,
        out: &mut VecDeque<Output>,
    ) {
        self.stop_transfer(out);
        self.stop_reinvite(out);
        for leg in [LegId::Carrier, LegId::Teams] {
            if Some(leg) != skip {
                self.send_bye(leg, out);
            }
        }
        let duration = self
            .answered_at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        out.push_back(Output::Record(CallRecord::Ended { reason, duration }));
        self.begin_ending(now, out);
    }

    pub(super) fn send_bye(&mut self, leg: LegId, out: &mut VecDeque<Output>) {
        let is_callee = leg == self.callee;
        let dialog = self.dialog(leg);
        if dialog.remote_target.is_none() || (dialog.remote_tag.is_none() && is_callee) {
            return;
        }
        let bye = dialog.request(Method::Bye, None);
        let target = dialog.next_hop();
        let bye = match &self.terminate_reason {
            Some(reason) => add_headers(&bye, std::slice::from_ref(reason)),
            None => add_headers(&bye, self.bye_headers_for(leg)),
        };
        let token = self.send_request(leg, target, bye, Sent::Bye, out);
        self.awaiting.insert(token);
    }

    pub(super) fn begin_ending(&mut self, now: Instant, out: &mut VecDeque<Output>) {
        if matches!(self.phase, Phase::Ending | Phase::Finished) {
            return;
        }
        self.phase = Phase::Ending;
        for kind in [
            TimerKind::HopTimeout,
            TimerKind::NoAnswer,
            TimerKind::ProgressDeadline,
            TimerKind::AckWait,
        ] {
            self.cancel_timer(kind, out);
        }
        out.push_back(Output::Media(MediaCommand::Remove));
        if self.awaiting.is_empty() {
            self.finish(out);
        } else {
            self.set_timer(TimerKind::Teardown, now + TEARDOWN_GUARD, out);
        }
    }

    pub(super) fn finish(&mut self, out: &mut VecDeque<Output>) {
        if self.phase == Phase::Finished {
            return;
        }
        if self.phase != Phase::Ending {
            out.push_back(Output::Media(MediaCommand::Remove));
        }
        let kinds: Vec<TimerKind> = self.timers.keys().copied().collect();
        for kind in kinds {
            self.cancel_timer(kind, out);
        }
        self.phase = Phase::Finished;
        out.push_back(Output::Finished);
    }
}
