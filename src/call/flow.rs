//! The life of a call: setup towards the called leg with failover, provisional and final
//! responses carried across, CANCEL, answer and ACK, in-dialog requests, and teardown.
//!
//! The caller leg is where the first INVITE came from (carrier on PSTN -> Teams calls, Teams
//! on Teams -> PSTN calls), the callee leg the one the SBC originates.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::codes::{failover_code, is_transient, map_final_status};
use super::dialog::Dialog;
use super::profile::{CarrierProfile, LegPolicy};
use super::sdp_glue::Negotiation;
use super::{
    CallRecord, CallSetup, Direction, EndReason, Input, LegId, MediaCommand, Output, RequestToken,
    StatusClass, Target, TimerKind, TxFailure,
};
use crate::media::MediaEvent;
use crate::sip::{HeaderName, Limits, Message, Method};
use crate::transaction::{cancel_for, new_tag, TxId};

/// How long an ending call waits for the last responses (64*T1).
const TEARDOWN_GUARD: Duration = Duration::from_secs(32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// INVITE towards the callee in progress, caller not answered.
    Calling,
    /// 2xx sent to the caller, its ACK not yet seen.
    Answered,
    Confirmed,
    /// BYE/CANCEL sent or the caller rejected; waiting for the last responses.
    Ending,
    Finished,
}

/// A request the call sent, by token.
#[derive(Debug, Clone)]
enum Sent {
    Invite {
        index: usize,
        invite: Bytes,
        cseq: u32,
        responded: bool,
        cancel_sent: bool,
    },
    Cancel,
    Bye,
}

pub(crate) struct State {
    setup: CallSetup,
    direction: Direction,
    start: Instant,
    caller: LegId,
    callee: LegId,
    phase: Phase,
    dialogs: [Dialog; 2],
    caller_invite: Message,
    caller_tx: TxId,
    caller_final_sent: bool,
    /// Token of the INVITE attempt that counts (older attempts were abandoned).
    current_invite: Option<u64>,
    targets_total: usize,
    /// A 18x went to the caller.
    progressed: bool,
    sent: HashMap<u64, Sent>,
    txs: HashMap<TxId, u64>,
    next_token: u64,
    timers: HashMap<TimerKind, Instant>,
    neg: Negotiation,
    /// SDP we offer the callee (the same for every attempt).
    callee_offer: Bytes,
    answered_at: Option<Instant>,
    cancel_requested: bool,
    /// Tokens of requests an ending call still waits for.
    awaiting: HashSet<u64>,
}

fn idx(leg: LegId) -> usize {
    match leg {
        LegId::Carrier => 0,
        LegId::Teams => 1,
    }
}

impl State {
    pub fn new(
        now: Instant,
        setup: CallSetup,
        direction: Direction,
        invite: &Message,
        server_tx: TxId,
    ) -> State {
        let (caller, callee) = match direction {
            Direction::Inbound => (LegId::Carrier, LegId::Teams),
            Direction::Outbound => (LegId::Teams, LegId::Carrier),
        };
        let teams_policy = LegPolicy::Teams {
            fqdn: setup.teams.tenant_fqdn.clone(),
            port: setup.teams.sip_port,
            profile: setup.teams_profile.clone(),
        };
        let carrier_policy = LegPolicy::Carrier(CarrierProfile {
            host: setup.carrier.local_host.clone(),
            port: setup.carrier.local_port,
            transport: setup.carrier.transport,
        });
        let policy_of = |leg: LegId| match leg {
            LegId::Carrier => carrier_policy.clone(),
            LegId::Teams => teams_policy.clone(),
        };
        let caller_dialog = Dialog::from_invite(invite, new_tag(), policy_of(caller));
        let callee_policy = policy_of(callee);
        let caller_number = callee_policy.number(&setup.numbers.caller);
        let from = format!(
            "<sip:{caller_number}@{}{}>",
            callee_policy.local_host(),
            callee_policy.number_uri_params()
        );
        let mut callee_dialog = Dialog::originate(from, String::new(), callee_policy);
        callee_dialog.contact_user = Some(caller_number);
        let dialogs = match caller {
            LegId::Carrier => [caller_dialog, callee_dialog],
            LegId::Teams => [callee_dialog, caller_dialog],
        };
        let targets_total = match callee {
            LegId::Teams => setup.teams.proxies.len(),
            LegId::Carrier => setup.carrier.targets.len(),
        };
        let neg = Negotiation::new(&setup);
        State {
            setup,
            direction,
            start: now,
            caller,
            callee,
            phase: Phase::Calling,
            dialogs,
            caller_invite: invite.clone(),
            caller_tx: server_tx,
            caller_final_sent: false,
            current_invite: None,
            targets_total,
            progressed: false,
            sent: HashMap::new(),
            txs: HashMap::new(),
            next_token: 1,
            timers: HashMap::new(),
            neg,
            callee_offer: Bytes::new(),
            answered_at: None,
            cancel_requested: false,
            awaiting: HashSet::new(),
        }
    }

    pub fn call_id(&self, leg: LegId) -> &Bytes {
        &self.dialogs[idx(leg)].call_id
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }

    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    fn dialog(&mut self, leg: LegId) -> &mut Dialog {
        &mut self.dialogs[idx(leg)]
    }

    /// Records the attempt, builds the offer and sends the first INVITE.
    pub fn start(&mut self, now: Instant, invite: Message, out: &mut VecDeque<Output>) {
        out.push_back(Output::Record(CallRecord::Attempted {
            direction: self.direction,
        }));
        let body = invite.body();
        let has_sdp = !body.is_empty() && is_sdp(&invite);
        match self
            .neg
            .offer_from_caller(self.caller, has_sdp.then_some(&body[..]))
        {
            Ok(offer) => self.callee_offer = offer,
            Err(e) => {
                self.reject_caller(now, e.sip_status(), EndReason::BadMedia, out);
                return;
            }
        }
        if self.targets_total == 0 {
            self.reject_caller(now, 503, EndReason::AllTargetsFailed, out);
            return;
        }
        self.set_timer(TimerKind::NoAnswer, now + self.setup.timers.no_answer, out);
        if self.callee == LegId::Carrier {
            self.set_timer(
                TimerKind::ProgressDeadline,
                now + self.setup.timers.progress_deadline,
                out,
            );
        }
        self.send_invite(now, 0, out);
    }

    /// INVITE attempt `index` towards the callee: a new client transaction each time (new
    /// branch, CSeq + 1), same Call-ID and From tag.
    fn send_invite(&mut self, now: Instant, index: usize, out: &mut VecDeque<Output>) {
        let callee = self.callee;
        let (uri, to, target) = match callee {
            LegId::Teams => {
                let proxy = &self.setup.teams.proxies[index];
                let policy = &self.dialogs[idx(callee)].policy;
                let number = policy.number(&self.setup.numbers.callee);
                (
                    // Row 19: sip:+E164@<proxy FQDN>:<port>;user=phone.
                    format!("sip:{number}@{}:{};user=phone", proxy.fqdn, proxy.port),
                    format!("<sip:{number}@{};user=phone>", proxy.fqdn),
                    Target::TeamsProxy(index),
                )
            }
            LegId::Carrier => {
                let hop = self.setup.carrier.targets[index].clone();
                if let LegPolicy::Carrier(c) = &mut self.dialog(callee).policy {
                    c.transport = hop.transport;
                }
                let number = super::profile::sanitize_user(&self.setup.numbers.callee);
                let transport = match hop.transport {
                    crate::transport::TransportKind::Udp => String::new(),
                    other => format!(";transport={}", other.label()),
                };
                (
                    format!("sip:{number}@{}:{}{transport}", hop.host, hop.port),
                    format!("<sip:{number}@{}>", hop.host),
                    Target::Carrier(index),
                )
            }
        };
        let identity = self.identity_headers();
        let offer = self.callee_offer.clone();
        let dialog = self.dialog(callee);
        dialog.remote_target = Some(Bytes::from(uri));
        dialog.remote = Bytes::from(to);
        let mut invite = dialog.request(Method::Invite, Some(&offer));
        let cseq = dialog.local_cseq;
        if !identity.is_empty() {
            invite = add_headers(&invite, &identity);
        }
        let token = self.send_request(
            callee,
            target,
            invite.clone(),
            Sent::Invite {
                index,
                invite,
                cseq,
                responded: false,
                cancel_sent: false,
            },
            out,
        );
        self.current_invite = Some(token);
        out.push_back(Output::Record(CallRecord::TargetAttempt {
            leg: callee,
            index,
        }));
        self.set_timer(
            TimerKind::HopTimeout,
            now + self.setup.timers.hop_timeout,
            out,
        );
    }

    /// Identity headers for the callee's INVITE: the caller's PAI as From towards Teams when
    /// `forward_pai` (row 20, done in From); towards a trusted carrier PAI/Privacy (row 57).
    fn identity_headers(&mut self) -> Vec<(HeaderName, String)> {
        let invite = &self.caller_invite;
        match self.callee {
            LegId::Teams => {
                if self.setup.teams.forward_pai {
                    let pai_user = invite
                        .header(&HeaderName::PAssertedIdentity)
                        .and_then(|v| crate::sip::NameAddr::parse(&v).ok())
                        .and_then(|n| n.uri.as_sip().and_then(|u| u.user.clone()));
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
                Vec::new()
            }
            LegId::Carrier => {
                let privacy = invite.header_values(&HeaderName::Privacy).iter().any(|v| {
                    String::from_utf8_lossy(v)
                        .to_ascii_lowercase()
                        .contains("id")
                }) || invite
                    .from()
                    .ok()
                    .and_then(|f| f.uri.as_sip().and_then(|u| u.user.clone()))
                    .is_some_and(|u| u.eq_ignore_ascii_case(b"anonymous"));
                let trusted = self.setup.carrier.trusted;
                let dialog = &mut self.dialogs[idx(LegId::Carrier)];
                let host = dialog.policy.local_host().to_owned();
                let number = super::profile::sanitize_user(&self.setup.numbers.caller);
                let mut headers = Vec::new();
                if privacy {
                    dialog.local = format!(
                        "\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag={}",
                        dialog.local_tag
                    );
                    dialog.contact_user = None;
                    if trusted {
                        headers.push((
                            HeaderName::PAssertedIdentity,
                            format!("<sip:{number}@{host}>"),
                        ));
                        headers.push((HeaderName::Privacy, "id".to_owned()));
                    }
                }
                headers
            }
        }
    }

    fn send_request(
        &mut self,
        leg: LegId,
        target: Target,
        msg: Bytes,
        what: Sent,
        out: &mut VecDeque<Output>,
    ) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        self.sent.insert(token, what);
        out.push_back(Output::SendRequest {
            leg,
            token: RequestToken(token),
            target,
            msg,
        });
        token
    }

    pub fn on_sent(
        &mut self,
        now: Instant,
        token: RequestToken,
        tx: Option<TxId>,
        out: &mut VecDeque<Output>,
    ) {
        match tx {
            Some(tx) => {
                if self.sent.contains_key(&token.0) {
                    self.txs.insert(tx, token.0);
                }
            }
            None => self.request_failed(now, token.0, TxFailure::Transport, out),
        }
    }

    pub fn handle(&mut self, now: Instant, input: Input, out: &mut VecDeque<Output>) {
        if self.phase == Phase::Finished {
            return;
        }
        match input {
            Input::Response { tx, msg, .. } => {
                if let Some(&token) = self.txs.get(&tx) {
                    self.on_response(now, token, msg, out);
                }
            }
            Input::TxFailed {
                reason: TxFailure::AckTimeout,
                ..
            } => self.ack_missing(now, out),
            Input::TxFailed { tx, reason, .. } => {
                if let Some(&token) = self.txs.get(&tx) {
                    self.request_failed(now, token, reason, out);
                }
            }
            Input::Request { leg, tx, msg } => self.on_request(now, leg, tx, msg, out),
            Input::Ack { leg, msg } => self.on_ack(now, leg, msg, out),
            Input::Media(event) => self.on_media(now, event, out),
            Input::Timer(kind) => match self.timers.get(&kind) {
                Some(at) if *at <= now => {
                    self.timers.remove(&kind);
                    self.on_timer(now, kind, out);
                }
                _ => {}
            },
        }
    }

    // ----- responses to our requests -----

    fn on_response(&mut self, now: Instant, token: u64, msg: Message, out: &mut VecDeque<Output>) {
        let Some(status) = msg.status() else { return };
        match self.sent.get(&token).cloned() {
            Some(Sent::Invite { .. }) => self.on_invite_response(now, token, status, msg, out),
            Some(Sent::Cancel) | None => {}
            Some(Sent::Bye) => {
                if status >= 200 {
                    self.request_done(token, out);
                }
            }
        }
    }

    fn on_invite_response(
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
                self.on_stray_answer(token, &msg, out);
            }
            return;
        }
        if let Some(Sent::Invite { responded, .. }) = self.sent.get_mut(&token) {
            *responded = true;
        }
        if status >= 200 {
            self.request_done(token, out);
        }
        if !current {
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
                self.relay_provisional(status, &msg, out);
            }
            return;
        }
        let retry_after = msg.has_header(&HeaderName::RetryAfter);
        self.attempt_failed(now, Some(status), retry_after, None, out);
    }

    /// A 2xx from the current attempt: ACK it at once (row 28), answer the caller.
    fn on_answer(&mut self, now: Instant, token: u64, msg: Message, out: &mut VecDeque<Output>) {
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
        let body = msg.body();
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
    fn on_stray_answer(&mut self, token: u64, msg: &Message, out: &mut VecDeque<Output>) {
        let Some(Sent::Invite { cseq, .. }) = self.sent.get(&token).cloned() else {
            return;
        };
        let callee = self.callee;
        let answered_tag = self.dialogs[idx(callee)].remote_tag.clone();
        let tag = msg.to().ok().and_then(|t| t.tag);
        let same_dialog =
            self.current_invite == Some(token) && answered_tag.is_some() && tag == answered_tag;
        let mut stray = self.dialogs[idx(callee)].clone();
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

    fn relay_provisional(&mut self, status: u16, msg: &Message, out: &mut VecDeque<Output>) {
        self.progressed = true;
        self.cancel_timer(TimerKind::ProgressDeadline, out);
        let body = msg.body();
        let mut sdp = None;
        if !body.is_empty() && is_sdp(msg) && !self.neg.delayed_offer {
            if let Ok((answer, commands)) = self.neg.answer_from_callee(self.callee, &body) {
                out.extend(commands.into_iter().map(Output::Media));
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
    fn attempt_failed(
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
            // Rows 9, 10: connect failure, no response, or 503 with Retry-After.
            LegId::Teams => failure.is_some() || (status == Some(503) && retry_after),
            // Trunk failover on 408/5xx/timeout before any 18x.
            LegId::Carrier => {
                !self.progressed && (failure.is_some() || status.is_some_and(is_transient))
            }
        };
        if failover && index + 1 < self.targets_total {
            self.send_invite(now, index + 1, out);
            return;
        }
        let status = status.unwrap_or(match failure {
            Some(TxFailure::Timeout) if self.callee == LegId::Carrier => 408,
            _ => 503,
        });
        let to_caller = map_final_status(
            status,
            self.caller == LegId::Teams,
            self.progressed,
            &self.setup.teams.failover_response_codes,
        );
        let reason = if failover {
            EndReason::AllTargetsFailed
        } else {
            EndReason::Rejected
        };
        self.current_invite = None;
        self.reject_caller(now, to_caller, reason, out);
    }

    fn request_failed(
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
            Some(_) => self.request_done(token, out),
            None => {}
        }
    }

    /// `token` needs nothing more; an ending call may now finish.
    fn request_done(&mut self, token: u64, out: &mut VecDeque<Output>) {
        self.awaiting.remove(&token);
        if self.phase == Phase::Ending && self.awaiting.is_empty() {
            self.finish(out);
        }
    }

    // ----- requests from the peers -----

    fn on_request(
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
            Method::Invite => self.on_reinvite(leg, tx, &msg, out),
            Method::Options => self.respond(leg, tx, &msg, 200, None, out),
            _ => self.respond(leg, tx, &msg, 501, None, out),
        }
    }

    fn respond(
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

    fn on_cancel(
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
    fn stop_callee_invite(&mut self, out: &mut VecDeque<Output>) {
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

    fn send_cancel(&mut self, token: u64, out: &mut VecDeque<Output>) {
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
        let cancel = add_headers(
            &cancel,
            &self.dialogs[idx(self.callee)].policy.extra_headers(),
        );
        let target = match self.callee {
            LegId::Teams => Target::TeamsProxy(index),
            LegId::Carrier => Target::Carrier(index),
        };
        self.send_request(self.callee, target, cancel, Sent::Cancel, out);
    }

    fn on_bye(
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
                self.end_call(now, reason, Some(leg), out);
            }
            Phase::Ending => self.respond(leg, tx, msg, 200, None, out),
            _ => self.respond(leg, tx, msg, 481, None, out),
        }
    }

    fn on_reinvite(&mut self, leg: LegId, tx: TxId, msg: &Message, out: &mut VecDeque<Output>) {
        if !matches!(self.phase, Phase::Answered | Phase::Confirmed) {
            self.respond(leg, tx, msg, 491, None, out);
            return;
        }
        if let Some(target) = msg.contacts().ok().and_then(|c| c.into_iter().next()) {
            self.dialog(leg).remote_target = Some(target.uri.raw().clone());
        }
        let body = msg.body();
        match self
            .neg
            .refresh_from(leg, (!body.is_empty()).then_some(&body[..]))
        {
            Ok((sdp, commands)) => {
                out.extend(commands.into_iter().map(Output::Media));
                self.respond(leg, tx, msg, 200, Some(&sdp), out);
            }
            Err(e) => self.respond(leg, tx, msg, e.sip_status(), None, out),
        }
    }

    fn on_ack(&mut self, now: Instant, leg: LegId, msg: Message, out: &mut VecDeque<Output>) {
        if leg != self.caller || self.phase != Phase::Answered {
            return;
        }
        self.cancel_timer(TimerKind::AckWait, out);
        self.phase = Phase::Confirmed;
        if self.neg.delayed_offer {
            let body = msg.body();
            match self.neg.answer_in_ack(&body) {
                Ok(commands) => out.extend(commands.into_iter().map(Output::Media)),
                Err(_) => self.end_call(now, EndReason::BadMedia, None, out),
            }
        }
    }

    fn on_media(&mut self, now: Instant, event: MediaEvent, out: &mut VecDeque<Output>) {
        if let MediaEvent::Inactive { session, .. } = event {
            if session == self.setup.media.id
                && matches!(self.phase, Phase::Answered | Phase::Confirmed)
            {
                self.end_call(now, EndReason::MediaInactive, None, out);
            }
        }
    }

    fn ack_missing(&mut self, now: Instant, out: &mut VecDeque<Output>) {
        if self.phase == Phase::Answered {
            self.end_call(now, EndReason::AckTimeout, None, out);
        }
    }

    fn on_timer(&mut self, now: Instant, kind: TimerKind, out: &mut VecDeque<Output>) {
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
        }
    }

    // ----- ending -----

    /// Final error to the caller, then end (waiting for anything still in flight).
    fn reject_caller(
        &mut self,
        now: Instant,
        status: u16,
        reason: EndReason,
        out: &mut VecDeque<Output>,
    ) {
        if !self.caller_final_sent {
            let response =
                self.dialogs[idx(self.caller)].response(&self.caller_invite, status, None);
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

    /// BYE on every confirmed leg except `skip`, then wait for the answers.
    fn end_call(
        &mut self,
        now: Instant,
        reason: EndReason,
        skip: Option<LegId>,
        out: &mut VecDeque<Output>,
    ) {
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

    fn send_bye(&mut self, leg: LegId, out: &mut VecDeque<Output>) {
        let is_callee = leg == self.callee;
        let dialog = self.dialog(leg);
        if dialog.remote_target.is_none() || (dialog.remote_tag.is_none() && is_callee) {
            return;
        }
        let bye = dialog.request(Method::Bye, None);
        let target = dialog.next_hop();
        let token = self.send_request(leg, target, bye, Sent::Bye, out);
        self.awaiting.insert(token);
    }

    fn begin_ending(&mut self, now: Instant, out: &mut VecDeque<Output>) {
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

    fn finish(&mut self, out: &mut VecDeque<Output>) {
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

    // ----- timers -----

    fn set_timer(&mut self, kind: TimerKind, at: Instant, out: &mut VecDeque<Output>) {
        self.timers.insert(kind, at);
        out.push_back(Output::SetTimer { kind, at });
    }

    fn cancel_timer(&mut self, kind: TimerKind, out: &mut VecDeque<Output>) {
        if self.timers.remove(&kind).is_some() {
            out.push_back(Output::CancelTimer { kind });
        }
    }
}

fn is_sdp(msg: &Message) -> bool {
    msg.content_type().is_none_or(|ct| {
        let ct = String::from_utf8_lossy(&ct).to_ascii_lowercase();
        ct.trim().starts_with("application/sdp")
    })
}

/// Inserts header lines before the blank line of a built message.
fn add_headers(msg: &Bytes, headers: &[(HeaderName, String)]) -> Bytes {
    let Some(end) = memchr::memmem::find(msg, b"\r\n\r\n") else {
        return msg.clone();
    };
    let mut out = Vec::with_capacity(msg.len() + 128);
    out.extend_from_slice(&msg[..end + 2]);
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend(
            value
                .bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&msg[end + 2..]);
    Bytes::from(out)
}
