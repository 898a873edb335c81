//! Session timers (RFC 4028, row 42), run per leg: the B2BUA's two dialogs each have their own
//! session interval and refresher, negotiated with that leg's peer only.
//!
//! * As UAS (the caller's INVITE, any re-INVITE we answer): a `Session-Expires` below our
//!   Min-SE (90 s) is refused with 422 and `Min-SE: 90` (§8.1, §9); otherwise the interval is
//!   honoured as sent (capped at [`MAX_SE`]) and copied into our 2xx with the refresher the
//!   peer asked for. When it did not say, the peer refreshes if it supports timers (Microsoft
//!   always does on non-bypass calls), else we do (§9). The 2xx carries `Require: timer`
//!   whenever the peer supports timers (always when it is the refresher, §9).
//! * As UAC (our INVITE to the called leg): `Supported: timer`, `Session-Expires: <ours>`
//!   (config, at least 1800 s) and `Min-SE: 90`. A 422 with a larger Min-SE is retried on the
//!   same target with the interval raised to it (new CSeq, same Call-ID and tag; at most
//!   [`MAX_422_RETRIES`] times), so the caller never sees it unless the peer keeps asking. The
//!   2xx says who refreshes; a 2xx without `Session-Expires` means no timer on that leg (§7.2):
//!   carriers that ignore timers are fine.
//! * Refresher = us: at half the interval a re-INVITE with our last SDP unchanged (same o=
//!   version, a pure refresh, §10; never UPDATE: Microsoft does not list it, row 23), ACKed on
//!   its 2xx, whose `Session-Expires` starts the next interval (its SDP changes media only if
//!   it differs from the peer's last one). 491 -> retry after RFC 3261
//!   §14.1's random delay; 422 -> retry with the interval raised; 408/481/no response -> BYE
//!   on both legs (§10); another failure -> retry while the session lasts.
//! * Refresher = peer: any accepted re-INVITE on the leg is a refresh; without one by
//!   `interval - min(32 s, interval / 3)` (§10) the call ends with BYE on both legs.
//!
//! Bypass calls: Microsoft never offers timers on them and its 2xx to our INVITE carries no
//! `Session-Expires`, so nothing runs; our INVITE still offers timers (harmless, §7.2).
//! A transfer (row 37) replaces the Teams dialog: a timer of the replaced dialog is dropped
//! when it fires (it is keyed by the dialog's Call-ID); the new dialog runs none.
//!
//! Hooks for the rest of the flow (the re-INVITE code calls these too):
//! * [`State::session_screen_reinvite`] before answering a re-INVITE (422 / 491 glare);
//! * [`State::on_refresh_received`] on the 2xx we send to a re-INVITE (restarts the leg's
//!   timer, adds `Session-Expires`);
//! * [`State::session_request_headers`] on any re-INVITE we send, and
//!   [`State::on_reinvite_answered`] with its 2xx (any successful re-INVITE is a refresh);
//! * [`State::session_refresh_in_flight`] before starting another re-INVITE on a leg.

use rand::Rng;

use super::*;
use crate::call::CallTimers;

/// Our Min-SE: the smallest session interval we accept (RFC 4028 §4's floor).
pub(crate) const MIN_SE: u32 = 90;
/// Longest interval we run; larger ones are answered with this (a UAS may reduce, §9).
pub(crate) const MAX_SE: u32 = 86_400;
/// How often one INVITE is retried after 422 before the failure goes to the caller.
pub(crate) const MAX_422_RETRIES: u8 = 2;
/// A failed refresh (not 408/481/491/422) is retried while at least this much is left.
const LAST_RETRY_MARGIN: Duration = Duration::from_secs(8);
/// A refresh due while another re-INVITE is open on the leg waits this long and looks again.
const REFRESH_DEFER: Duration = Duration::from_secs(2);

/// The `refresher` parameter of `Session-Expires`, relative to the transaction that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Uac,
    Uas,
}

/// A parsed `Session-Expires` value: `delta-seconds *(;se-params)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionExpires {
    pub interval: u32,
    pub refresher: Option<Role>,
}

impl SessionExpires {
    /// `None` unless the value starts with a decimal number (extra parameters are ignored).
    pub(crate) fn parse(value: &[u8]) -> Option<SessionExpires> {
        let text = std::str::from_utf8(value).ok()?;
        let mut parts = text.split(';');
        let interval = delta_seconds(parts.next()?)?;
        let mut refresher = None;
        for param in parts {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            if name.trim().eq_ignore_ascii_case("refresher") {
                refresher = match value.trim().to_ascii_lowercase().as_str() {
                    "uac" => Some(Role::Uac),
                    "uas" => Some(Role::Uas),
                    _ => None,
                };
            }
        }
        Some(SessionExpires {
            interval,
            refresher,
        })
    }

    fn of(msg: &Message) -> Option<SessionExpires> {
        SessionExpires::parse(&msg.header(&HeaderName::SessionExpires)?)
    }
}

/// Decimal seconds, saturating at `u32::MAX` (huge values are capped later anyway).
fn delta_seconds(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = text.trim_start_matches('0');
    if digits.len() > 10 {
        return Some(u32::MAX);
    }
    Some(digits.parse::<u64>().unwrap_or(0).min(u64::from(u32::MAX)) as u32)
}

/// The `Min-SE` value of a message (a 422 or a request).
fn min_se_of(msg: &Message) -> Option<u32> {
    let value = msg.header(&HeaderName::MinSe)?;
    let text = std::str::from_utf8(&value).ok()?;
    delta_seconds(text.split(';').next()?)
}

fn supports_timer(msg: &Message) -> bool {
    msg.has_token(&HeaderName::Supported, "timer") || msg.has_token(&HeaderName::Require, "timer")
}

/// Who sends the refreshes on a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refresher {
    Us,
    Peer,
}

/// The running session timer of one leg.
#[derive(Debug, Clone)]
struct LegTimer {
    interval: u32,
    refresher: Refresher,
    /// The dialog it belongs to (a transfer replaces the Teams dialog).
    call_id: Bytes,
    /// Start of the current interval (the last accepted refresh).
    refreshed_at: Instant,
    /// Our refresh re-INVITE in flight, by token.
    in_flight: Option<u64>,
    /// 422 retries of the current refresh.
    retries_422: u8,
    /// Min-SE we put in refreshes (raised by a 422).
    min_se: u32,
}

/// Session-timer state of a call (both legs).
#[derive(Debug, Clone)]
pub(super) struct SessionTimers {
    legs: [Option<LegTimer>; 2],
    /// `Session-Expires` / `Min-SE` of our INVITEs to the called leg (raised by a 422).
    offer: u32,
    offer_min_se: u32,
    invite_422_retries: u8,
}

impl SessionTimers {
    pub(super) fn new(timers: &CallTimers) -> SessionTimers {
        let offer = timers
            .session_expires
            .as_secs()
            .clamp(u64::from(MIN_SE), u64::from(MAX_SE)) as u32;
        SessionTimers {
            legs: [None, None],
            offer,
            offer_min_se: MIN_SE,
            invite_422_retries: 0,
        }
    }

    /// Headers of our INVITE to the called leg (RFC 4028 §7.1): no refresher parameter, the
    /// answerer picks.
    pub(super) fn offer_headers(&self) -> Vec<(HeaderName, String)> {
        vec![
            (HeaderName::Supported, "timer".to_owned()),
            (HeaderName::SessionExpires, self.offer.to_string()),
            (HeaderName::MinSe, self.offer_min_se.to_string()),
        ]
    }
}

/// What we answer a request with as UAS: `None` = no session timer on the leg. `current` is
/// the leg's running interval and refresher (a re-INVITE without `Session-Expires` keeps it).
fn negotiate_as_uas(
    request: &Message,
    current: Option<(u32, Refresher)>,
) -> Option<(u32, Refresher)> {
    let supports = supports_timer(request);
    match SessionExpires::of(request) {
        Some(se) => {
            let refresher = match se.refresher {
                Some(Role::Uac) => Refresher::Peer,
                Some(Role::Uas) => Refresher::Us,
                // Left to us: the peer refreshes when it can (Microsoft does), else we must.
                None if supports => Refresher::Peer,
                None => Refresher::Us,
            };
            Some((se.interval.clamp(MIN_SE, MAX_SE), refresher))
        }
        None => {
            let (interval, refresher) = current?;
            Some((interval, if supports { refresher } else { Refresher::Us }))
        }
    }
}

/// `Session-Expires` (and `Require: timer`) of our 2xx as UAS.
fn uas_headers(interval: u32, refresher: Refresher, supports: bool) -> Vec<(HeaderName, String)> {
    let role = match refresher {
        Refresher::Peer => "uac",
        Refresher::Us => "uas",
    };
    let mut headers = vec![(
        HeaderName::SessionExpires,
        format!("{interval};refresher={role}"),
    )];
    if supports || refresher == Refresher::Peer {
        headers.push((HeaderName::Require, "timer".to_owned()));
    }
    headers
}

impl State {
    fn leg_timer(&self, leg: LegId) -> Option<&LegTimer> {
        self.session.legs[idx(leg)].as_ref()
    }

    fn leg_timer_mut(&mut self, leg: LegId) -> Option<&mut LegTimer> {
        self.session.legs[idx(leg)].as_mut()
    }

    /// True while our refresh re-INVITE on `leg` waits for its final response (a re-INVITE
    /// of the peer meanwhile is glare: 491).
    pub(super) fn session_refresh_in_flight(&self, leg: LegId) -> bool {
        self.leg_timer(leg).is_some_and(|t| t.in_flight.is_some())
    }

    /// Start (or restart) the session timer of `leg` from `now`.
    fn start_leg_timer(
        &mut self,
        now: Instant,
        leg: LegId,
        interval: u32,
        refresher: Refresher,
        out: &mut VecDeque<Output>,
    ) {
        // Below 90 s only a peer ignoring our Min-SE: run at 90 s, never a refresh storm.
        let interval = interval.clamp(MIN_SE, MAX_SE);
        let previous = self.session.legs[idx(leg)].take();
        let min_se = previous
            .as_ref()
            .map_or(self.session.offer_min_se, |t| t.min_se);
        self.session.legs[idx(leg)] = Some(LegTimer {
            interval,
            refresher,
            call_id: self.dialogs[idx(leg)].call_id.clone(),
            refreshed_at: now,
            in_flight: None,
            retries_422: 0,
            min_se,
        });
        let seconds = Duration::from_secs(u64::from(interval));
        match refresher {
            Refresher::Us => {
                self.cancel_timer(TimerKind::SessionExpiry(leg), out);
                self.set_timer(TimerKind::SessionRefresh(leg), now + seconds / 2, out);
            }
            Refresher::Peer => {
                // RFC 4028 §10: BYE at expiry minus min(32 s, interval / 3).
                let margin = Duration::from_secs(32).min(seconds / 3);
                self.cancel_timer(TimerKind::SessionRefresh(leg), out);
                self.set_timer(TimerKind::SessionExpiry(leg), now + seconds - margin, out);
            }
        }
    }

    fn stop_leg_timer(&mut self, leg: LegId, out: &mut VecDeque<Output>) {
        self.session.legs[idx(leg)] = None;
        self.cancel_timer(TimerKind::SessionRefresh(leg), out);
        self.cancel_timer(TimerKind::SessionExpiry(leg), out);
    }

    /// The caller's INVITE asks for a session interval below our Min-SE: answer 422 with
    /// `Min-SE` (RFC 4028 §8.1, §9) before anything is sent. True when it did.
    pub(super) fn session_reject_small_interval(
        &mut self,
        now: Instant,
        invite: &Message,
        out: &mut VecDeque<Output>,
    ) -> bool {
        if SessionExpires::of(invite).is_none_or(|se| se.interval >= MIN_SE) {
            return false;
        }
        let response = self.dialogs[idx(self.caller)].response(invite, 422, None);
        let response = add_headers(&response, &[(HeaderName::MinSe, MIN_SE.to_string())]);
        out.push_back(Output::SendResponse {
            leg: self.caller,
            tx: self.caller_tx,
            msg: response,
        });
        self.caller_final_sent = true;
        out.push_back(Output::Record(CallRecord::Failed {
            status: 422,
            class: StatusClass::of(422),
            reason: EndReason::Rejected,
        }));
        self.reject_caller(now, 422, EndReason::Rejected, out);
        true
    }

    /// Before answering a re-INVITE on `leg`: 422 for an interval below our Min-SE, 491 while
    /// our own refresh is in flight there (RFC 3261 §14.2). True when it answered.
    pub(super) fn session_screen_reinvite(
        &mut self,
        leg: LegId,
        tx: TxId,
        request: &Message,
        out: &mut VecDeque<Output>,
    ) -> bool {
        if SessionExpires::of(request).is_some_and(|se| se.interval < MIN_SE) {
            let response = self.dialogs[idx(leg)].response(request, 422, None);
            let response = add_headers(&response, &[(HeaderName::MinSe, MIN_SE.to_string())]);
            out.push_back(Output::SendResponse {
                leg,
                tx,
                msg: response,
            });
            return true;
        }
        if self.session_refresh_in_flight(leg) {
            self.respond(leg, tx, request, 491, None, out);
            return true;
        }
        false
    }

    /// Our 200 to the caller's INVITE: honour its `Session-Expires` (start the caller leg's
    /// timer) and return the response with `Session-Expires` / `Require: timer` added.
    pub(super) fn session_answer_caller(
        &mut self,
        now: Instant,
        response: Bytes,
        out: &mut VecDeque<Output>,
    ) -> Bytes {
        let invite = self.caller_invite.clone();
        self.session_answer(now, self.caller, &invite, None, response, out)
    }

    /// A 2xx we send to a re-INVITE on `leg` (a refresh, RFC 4028 §9/§10): restarts the leg's
    /// timer from `now` with the interval and refresher of `request` and returns `response`
    /// with `Session-Expires` added. A re-INVITE without `Session-Expires` on a leg with a
    /// running timer keeps its interval (and its refresher if the peer supports timers).
    pub(super) fn on_refresh_received(
        &mut self,
        now: Instant,
        leg: LegId,
        request: &Message,
        response: Bytes,
        out: &mut VecDeque<Output>,
    ) -> Bytes {
        let current = self
            .leg_timer(leg)
            .filter(|t| t.call_id == self.dialogs[idx(leg)].call_id)
            .map(|t| (t.interval, t.refresher));
        self.session_answer(now, leg, request, current, response, out)
    }

    /// Our 200 to an INVITE with Replaces from Microsoft, after it became the Teams dialog:
    /// the new session's timer comes from that INVITE alone.
    pub(super) fn session_answer_new_teams_dialog(
        &mut self,
        now: Instant,
        request: &Message,
        response: Bytes,
        out: &mut VecDeque<Output>,
    ) -> Bytes {
        self.session_answer(now, LegId::Teams, request, None, response, out)
    }

    fn session_answer(
        &mut self,
        now: Instant,
        leg: LegId,
        request: &Message,
        current: Option<(u32, Refresher)>,
        response: Bytes,
        out: &mut VecDeque<Output>,
    ) -> Bytes {
        let Some((interval, refresher)) = negotiate_as_uas(request, current) else {
            return response;
        };
        self.start_leg_timer(now, leg, interval, refresher, out);
        add_headers(
            &response,
            &uas_headers(interval, refresher, supports_timer(request)),
        )
    }

    /// Headers for a re-INVITE we send on `leg` (offer or refresh): the running interval, and
    /// who is to keep refreshing. Empty when the leg runs no timer.
    pub(super) fn session_request_headers(&self, leg: LegId) -> Vec<(HeaderName, String)> {
        let Some(timer) = self.leg_timer(leg) else {
            return Vec::new();
        };
        let role = match timer.refresher {
            Refresher::Us => "uac",
            Refresher::Peer => "uas",
        };
        vec![
            (HeaderName::Supported, "timer".to_owned()),
            (
                HeaderName::SessionExpires,
                format!("{};refresher={role}", timer.interval),
            ),
            (HeaderName::MinSe, timer.min_se.to_string()),
        ]
    }

    /// The 2xx to our INVITE on `leg` (the called leg's answer): its `Session-Expires` says
    /// who refreshes (`uac` = us); without one the leg runs no timer (RFC 4028 §7.2).
    pub(super) fn session_start_as_uac(
        &mut self,
        now: Instant,
        leg: LegId,
        response: &Message,
        out: &mut VecDeque<Output>,
    ) {
        match SessionExpires::of(response) {
            Some(se) => {
                let refresher = match se.refresher {
                    Some(Role::Uas) => Refresher::Peer,
                    // `uac`, or missing (the UAS must say; keeping the session alive is safe).
                    _ => Refresher::Us,
                };
                self.start_leg_timer(now, leg, se.interval, refresher, out);
            }
            None => self.stop_leg_timer(leg, out),
        }
    }

    /// The 2xx to a re-INVITE we sent on `leg` (not a refresh of ours): a refresh all the same.
    pub(super) fn on_reinvite_answered(
        &mut self,
        now: Instant,
        leg: LegId,
        response: &Message,
        out: &mut VecDeque<Output>,
    ) {
        if self.leg_timer(leg).is_some() {
            self.session_start_as_uac(now, leg, response, out);
        }
    }

    /// A 422 to our INVITE `token` on the called leg: retry it on the same target with the
    /// interval raised to the 422's Min-SE (RFC 4028 §7.1). True when it did.
    pub(super) fn session_retry_after_422(
        &mut self,
        now: Instant,
        token: u64,
        response: &Message,
        out: &mut VecDeque<Output>,
    ) -> bool {
        let Some(Sent::Invite { index, .. }) = self.sent.get(&token) else {
            return false;
        };
        let index = *index;
        let Some(min_se) = min_se_of(response) else {
            return false;
        };
        let session = &mut self.session;
        if session.invite_422_retries >= MAX_422_RETRIES
            || min_se <= session.offer
            || min_se > MAX_SE
        {
            return false;
        }
        session.invite_422_retries += 1;
        session.offer = min_se;
        session.offer_min_se = min_se;
        self.send_invite(now, index, out);
        true
    }

    /// A session timer of `leg` fired.
    pub(super) fn on_session_timer(
        &mut self,
        now: Instant,
        kind: TimerKind,
        out: &mut VecDeque<Output>,
    ) {
        let (leg, expiry) = match kind {
            TimerKind::SessionRefresh(leg) => (leg, false),
            TimerKind::SessionExpiry(leg) => (leg, true),
            _ => return,
        };
        if !matches!(self.phase, Phase::Answered | Phase::Confirmed) {
            return;
        }
        let Some(timer) = self.leg_timer(leg) else {
            return;
        };
        if timer.call_id != self.dialogs[idx(leg)].call_id {
            // The dialog it belonged to was replaced by a transfer.
            self.session.legs[idx(leg)] = None;
            return;
        }
        match (expiry, timer.refresher) {
            (true, Refresher::Peer) => self.end_call(now, EndReason::SessionExpired, None, out),
            (false, Refresher::Us) if timer.in_flight.is_none() => {
                if self.reinvite_in_progress(leg) {
                    // RFC 3261 §14.1: no INVITE while another is open on the dialog. Its 2xx
                    // is a refresh too and restarts the timer; if it fails, try again soon.
                    self.set_timer(TimerKind::SessionRefresh(leg), now + REFRESH_DEFER, out);
                } else {
                    self.send_session_refresh(leg, out)
                }
            }
            _ => {}
        }
    }

    /// The refresh re-INVITE: our last SDP on the leg unchanged (same o= version), the
    /// running interval with `refresher=uac` (we keep refreshing).
    fn send_session_refresh(&mut self, leg: LegId, out: &mut VecDeque<Output>) {
        let Some(sdp) = self.neg.last_sent(leg) else {
            self.stop_leg_timer(leg, out);
            return;
        };
        let headers = self.session_request_headers(leg);
        let dialog = self.dialog(leg);
        let request = dialog.request(Method::Invite, Some(&sdp));
        let cseq = dialog.local_cseq;
        let target = dialog.next_hop();
        let request = add_headers(&request, &headers);
        let token = self.send_request(
            leg,
            target,
            request,
            Sent::SessionRefresh { leg, cseq },
            out,
        );
        if let Some(timer) = self.leg_timer_mut(leg) {
            timer.in_flight = Some(token);
        }
    }

    /// A response to our refresh re-INVITE `token` (CSeq `cseq`) on `leg`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_session_refresh_response(
        &mut self,
        now: Instant,
        token: u64,
        leg: LegId,
        cseq: u32,
        status: u16,
        response: Message,
        out: &mut VecDeque<Output>,
    ) {
        if (200..300).contains(&status) {
            // Every 2xx (retransmissions too) is ACKed, so the peer stops resending it.
            let dialog = self.dialog(leg);
            if let Some(contact) = response.contacts().ok().and_then(|c| c.into_iter().next()) {
                dialog.remote_target = Some(contact.uri.raw().clone());
            }
            let ack = dialog.ack(cseq, None);
            let target = dialog.next_hop();
            out.push_back(Output::SendAck {
                leg,
                target,
                msg: ack,
            });
        }
        if status < 200 {
            return;
        }
        self.request_done(token, out);
        let current = self
            .leg_timer(leg)
            .is_some_and(|t| t.in_flight == Some(token));
        if !current {
            return;
        }
        if let Some(timer) = self.leg_timer_mut(leg) {
            timer.in_flight = None;
        }
        if !matches!(self.phase, Phase::Answered | Phase::Confirmed) {
            return;
        }
        match status {
            200..=299 => {
                if let Some(body) = sdp_of(&response) {
                    // An unusable answer leaves the media as it was; the session goes on.
                    if let Ok(commands) = self.neg.refresh_answered(leg, &body) {
                        out.extend(commands.into_iter().map(Output::Media));
                    }
                }
                self.session_start_as_uac(now, leg, &response, out)
            }
            422 => {
                let raised = min_se_of(&response);
                let retry = match (self.leg_timer_mut(leg), raised) {
                    (Some(timer), Some(min_se))
                        if timer.retries_422 < MAX_422_RETRIES
                            && min_se > timer.interval
                            && min_se <= MAX_SE =>
                    {
                        timer.retries_422 += 1;
                        timer.interval = min_se;
                        timer.min_se = min_se;
                        true
                    }
                    _ => false,
                };
                if retry {
                    self.send_session_refresh(leg, out);
                } else {
                    self.refresh_later_or_end(now, leg, out);
                }
            }
            491 => {
                let at = now + self.glare_delay(leg);
                self.set_timer(TimerKind::SessionRefresh(leg), at, out);
            }
            408 | 481 => self.end_call(now, EndReason::SessionRefreshFailed, None, out),
            _ => self.refresh_later_or_end(now, leg, out),
        }
    }

    /// Our refresh re-INVITE got no response or could not be sent: the dialog is gone
    /// (RFC 4028 §10), BYE on both legs.
    pub(super) fn session_refresh_failed(
        &mut self,
        now: Instant,
        token: u64,
        leg: LegId,
        out: &mut VecDeque<Output>,
    ) {
        self.request_done(token, out);
        let current = self
            .leg_timer(leg)
            .is_some_and(|t| t.in_flight == Some(token));
        if !current {
            return;
        }
        if let Some(timer) = self.leg_timer_mut(leg) {
            timer.in_flight = None;
        }
        if matches!(self.phase, Phase::Answered | Phase::Confirmed) {
            self.end_call(now, EndReason::SessionRefreshFailed, None, out);
        }
    }

    /// A refresh was refused for another reason: the session is unchanged and lasts until
    /// the interval runs out; try again half-way to that, or give up close to it.
    fn refresh_later_or_end(&mut self, now: Instant, leg: LegId, out: &mut VecDeque<Output>) {
        let Some(timer) = self.leg_timer(leg) else {
            return;
        };
        let expires = timer.refreshed_at + Duration::from_secs(u64::from(timer.interval));
        let left = expires.saturating_duration_since(now);
        if left > LAST_RETRY_MARGIN {
            self.set_timer(TimerKind::SessionRefresh(leg), now + left / 2, out);
        } else {
            self.end_call(now, EndReason::SessionRefreshFailed, None, out);
        }
    }

    /// RFC 3261 §14.1: after 491, 2.1-4 s when we own the dialog's Call-ID (the leg we
    /// originated), else 0-2 s.
    fn glare_delay(&self, leg: LegId) -> Duration {
        let millis = if leg == self.callee {
            rand::thread_rng().gen_range(2100..=4000)
        } else {
            rand::thread_rng().gen_range(0..=2000)
        };
        Duration::from_millis(millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_expires_values_parse() {
        assert_eq!(
            SessionExpires::parse(b"1800"),
            Some(SessionExpires {
                interval: 1800,
                refresher: None
            })
        );
        assert_eq!(
            SessionExpires::parse(b" 90 ; Refresher = UAS ;x=y"),
            Some(SessionExpires {
                interval: 90,
                refresher: Some(Role::Uas)
            })
        );
        assert_eq!(
            SessionExpires::parse(b"600;refresher=uac").map(|s| s.refresher),
            Some(Some(Role::Uac))
        );
        assert_eq!(
            SessionExpires::parse(b"99999999999999999999").map(|s| s.interval),
            Some(u32::MAX)
        );
        assert_eq!(SessionExpires::parse(b"abc"), None);
        assert_eq!(SessionExpires::parse(b""), None);
        assert_eq!(SessionExpires::parse(b"-5"), None);
    }

    #[test]
    fn uas_headers_require_timer_when_the_peer_refreshes_or_supports_it() {
        let h = uas_headers(90, Refresher::Us, false);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].1, "90;refresher=uas");
        let h = uas_headers(1800, Refresher::Peer, false);
        assert_eq!(h[0].1, "1800;refresher=uac");
        assert!(h
            .iter()
            .any(|(n, v)| *n == HeaderName::Require && v == "timer"));
        assert!(uas_headers(90, Refresher::Us, true)
            .iter()
            .any(|(n, _)| *n == HeaderName::Require));
    }
}
