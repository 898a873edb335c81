//! Transfer by REFER from Microsoft (rows 36-38, RFC 3515 / RFC 5589 §6): 202, a new INVITE
//! back to Microsoft with the Refer-To URI as Request-URI and Referred-By copied byte for byte,
//! NOTIFY progress on the REFER's dialog, and the Teams leg swapped when the new leg answers.
//! The carrier leg and the media session's ports never change; the new leg gets new SRTP keys.
//! Row 38: the carrier's dialog is confirmed and gets no new 18x, so while the target rings
//! without early media (an 18x without SDP) the carrier hears the SBC's ringback, until the
//! target answers, sends early media or the transfer ends.

use super::*;
use crate::media::Ringback;

/// One transfer in progress.
pub(super) struct Transfer {
    /// The new Teams leg (we are UAC), confirmed by its 2xx.
    new_leg: Dialog,
    invite_token: u64,
    invite_cseq: u32,
    invite: Bytes,
    /// Our SDP offer and Microsoft's Referred-By, for an attempt at the next proxy.
    offer: Bytes,
    referred_by: Option<String>,
    /// Index into `CallSetup::teams.proxies` of the current attempt.
    proxy: usize,
    /// Provisional status last reported in a NOTIFY (each status once).
    notified: u16,
    responded: bool,
    cancel_sent: bool,
    /// An 18x with SDP put the new leg's early media on the carrier's path.
    early_media: bool,
}

/// NOTIFYs of refer subscriptions, one at a time: the next waits for the final response (or
/// failure) of the one before, so a subscriber never sees `200` overtake `180` on a stream
/// transport or gets two NOTIFY transactions crossing in one dialog (RFC 6665 notifier
/// behaviour). Each is built only when it is sent, so CSeqs go out in order.
#[derive(Default)]
pub(super) struct ReferNotifier {
    in_flight: Option<u64>,
    queued: VecDeque<PendingNotify>,
}

struct PendingNotify {
    /// The Teams dialog the REFER came in (it may have been replaced by the time we send).
    call_id: Bytes,
    status: u16,
    state: &'static str,
}

/// A subscriber that never answers does not grow the queue: the statuses reported per
/// transfer are few (100, a provisional or two, one final), so older provisionals give way.
const MAX_QUEUED_NOTIFIES: usize = 4;

impl ReferNotifier {
    fn push(&mut self, pending: PendingNotify) {
        if self.queued.len() >= MAX_QUEUED_NOTIFIES {
            let provisional = self.queued.iter().position(|n| n.status < 200);
            match provisional {
                Some(i) => {
                    self.queued.remove(i);
                }
                None => {
                    self.queued.pop_front();
                }
            }
        }
        self.queued.push_back(pending);
    }

    /// True when `token` was the NOTIFY in flight (the next may go now).
    fn finished(&mut self, token: u64) -> bool {
        if self.in_flight == Some(token) {
            self.in_flight = None;
            return true;
        }
        false
    }
}

/// `Subscription-State` of the implicit refer subscription (RFC 3515 §2.4.5).
const ACTIVE: &str = "active;expires=60";
const TERMINATED: &str = "terminated;reason=noresource";

/// The URI of a Refer-To value, exactly as sent: the text inside `<>` of a name-addr, else
/// the whole (trimmed) addr-spec. `None` unless it is a SIP(S) URI.
fn refer_target(value: &[u8]) -> Option<&[u8]> {
    let start = value.iter().position(|b| !b.is_ascii_whitespace())?;
    let end = value.iter().rposition(|b| !b.is_ascii_whitespace())? + 1;
    let value = &value[start..end];
    let uri = match memchr::memchr(b'<', value) {
        Some(open) => {
            let close = open + 1 + memchr::memchr(b'>', &value[open + 1..])?;
            &value[open + 1..close]
        }
        None => value,
    };
    let lower = uri
        .get(..5)
        .map(|p| p.to_ascii_lowercase())
        .unwrap_or_default();
    let is_sip = lower.starts_with(b"sip:") || lower.starts_with(b"sips:");
    let clean = !uri.iter().any(|b| b.is_ascii_control() || *b == b' ');
    (is_sip && clean && uri.len() > 4).then_some(uri)
}

impl State {
    /// REFER from Microsoft in the Teams dialog (row 37).
    pub(super) fn on_refer(
        &mut self,
        leg: LegId,
        tx: TxId,
        msg: &Message,
        out: &mut VecDeque<Output>,
    ) {
        if self.phase != Phase::Confirmed || self.transfer.is_some() {
            self.respond(leg, tx, msg, 491, None, out);
            return;
        }
        let refer_to = msg.header(&HeaderName::ReferTo).unwrap_or_default();
        let Some(uri) = refer_target(&refer_to) else {
            self.respond(leg, tx, msg, 400, None, out);
            return;
        };
        let uri = Bytes::copy_from_slice(uri);
        let offer = match self.neg.offer_for_transfer() {
            Ok(offer) => offer,
            Err(e) => {
                self.respond(leg, tx, msg, e.sip_status(), None, out);
                return;
            }
        };
        self.respond(leg, tx, msg, 202, None, out);
        self.notify_progress(100, ACTIVE, out);

        // The PSTN party is who Microsoft's new call comes from.
        let pstn_number = match self.direction {
            Direction::Inbound => self.setup.numbers.caller.clone(),
            Direction::Outbound => self.setup.numbers.callee.clone(),
        };
        let policy = self.dialogs[idx(LegId::Teams)].policy.clone();
        let number = policy.number(&pstn_number);
        let from = format!(
            "<sip:{number}@{}{}>",
            policy.local_host(),
            policy.number_uri_params()
        );
        let to = format!("<{}>", String::from_utf8_lossy(&uri));
        let mut new_leg = Dialog::originate(from, to, policy);
        new_leg.contact_user = Some(number);
        new_leg.remote_target = Some(uri);
        let mut transfer = Transfer {
            new_leg,
            invite_token: 0,
            invite_cseq: 0,
            invite: Bytes::new(),
            offer,
            referred_by: msg
                .header(&HeaderName::ReferredBy)
                .map(|v| String::from_utf8_lossy(&v).into_owned()),
            proxy: 0,
            notified: 100,
            responded: false,
            cancel_sent: false,
            early_media: false,
        };
        self.send_transfer_invite(&mut transfer, out);
        self.transfer = Some(transfer);
    }

    /// The new leg's INVITE to `transfer.proxy` (a new transaction each attempt: CSeq + 1,
    /// same Call-ID and tag), like any INVITE towards Microsoft (rows 8-10).
    fn send_transfer_invite(&mut self, transfer: &mut Transfer, out: &mut VecDeque<Output>) {
        let mut invite = transfer
            .new_leg
            .request(Method::Invite, Some(&transfer.offer));
        if let Some(referred_by) = &transfer.referred_by {
            invite = add_headers(&invite, &[(HeaderName::ReferredBy, referred_by.clone())]);
        }
        // The new leg is a new session: it negotiates its own timer like our first INVITE.
        invite = add_headers(&invite, &self.session.offer_headers());
        transfer.invite_cseq = transfer.new_leg.local_cseq;
        transfer.invite = invite.clone();
        transfer.responded = false;
        transfer.invite_token = self.send_request(
            LegId::Teams,
            Target::TeamsProxy(transfer.proxy),
            invite,
            Sent::TransferInvite,
            out,
        );
    }

    /// NOTIFY with `SIP/2.0 <status> <reason>` on the Teams dialog the REFER came in, sent
    /// once the NOTIFY before it is answered.
    fn notify_progress(&mut self, status: u16, state: &'static str, out: &mut VecDeque<Output>) {
        let call_id = self.dialogs[idx(LegId::Teams)].call_id.clone();
        self.notifier.push(PendingNotify {
            call_id,
            status,
            state,
        });
        self.send_next_notify(out);
    }

    /// A NOTIFY's transaction ended (final response or failure): the next queued one goes.
    pub(super) fn notify_done(&mut self, token: u64, out: &mut VecDeque<Output>) {
        if self.notifier.finished(token) {
            self.send_next_notify(out);
        }
    }

    fn send_next_notify(&mut self, out: &mut VecDeque<Output>) {
        if self.notifier.in_flight.is_some() || self.phase == Phase::Finished {
            return;
        }
        while let Some(pending) = self.notifier.queued.pop_front() {
            let frag = format!(
                "SIP/2.0 {} {}\r\n",
                pending.status,
                super::super::codes::reason_phrase(pending.status)
            );
            let headers = [
                (HeaderName::Event, "refer".to_owned()),
                (
                    HeaderName::Other(Bytes::from_static(b"Subscription-State")),
                    pending.state.to_owned(),
                ),
            ];
            // The REFER's dialog is the current Teams leg or one a transfer replaced; one
            // Microsoft has already ended gets nothing more.
            let dialog = if self.dialogs[idx(LegId::Teams)].call_id == pending.call_id {
                &mut self.dialogs[idx(LegId::Teams)]
            } else {
                match self
                    .replaced_teams
                    .iter_mut()
                    .find(|d| d.call_id == pending.call_id)
                {
                    Some(dialog) => dialog,
                    None => continue,
                }
            };
            let notify = dialog.request_with(
                Method::Notify,
                &headers,
                "message/sipfrag;version=2.0",
                frag.as_bytes(),
            );
            let target = dialog.next_hop();
            let token = self.send_request(LegId::Teams, target, notify, Sent::Notify, out);
            self.notifier.in_flight = Some(token);
            return;
        }
    }

    pub(super) fn on_transfer_response(
        &mut self,
        now: Instant,
        token: u64,
        status: u16,
        msg: Message,
        out: &mut VecDeque<Output>,
    ) {
        let current = self
            .transfer
            .as_ref()
            .is_some_and(|t| t.invite_token == token);
        if !current {
            return;
        }
        let live = self.phase == Phase::Confirmed;
        if let Some(t) = self.transfer.as_mut() {
            t.responded = true;
        }
        if status < 200 {
            if !live {
                self.cancel_transfer_invite(out);
                return;
            }
            let new_status = self
                .transfer
                .as_ref()
                .is_some_and(|t| status > 100 && t.notified != status);
            if new_status {
                if let Some(t) = self.transfer.as_mut() {
                    t.notified = status;
                }
                self.notify_progress(status, ACTIVE, out);
            }
            match sdp_of(&msg) {
                Some(body) => {
                    // Row 38: the new leg's early media (ringback) reaches the carrier on the
                    // existing media path; the confirmed carrier dialog gets no new 18x.
                    if let Ok(commands) = self.neg.use_transfer_answer(&body) {
                        self.set_ringback(false, out);
                        if let Some(t) = self.transfer.as_mut() {
                            t.early_media = true;
                        }
                        out.extend(commands.into_iter().map(Output::Media));
                    }
                }
                None => {
                    let early_media = self.transfer.as_ref().is_some_and(|t| t.early_media);
                    if status > 100 && !early_media {
                        self.set_ringback(true, out);
                    }
                }
            }
            return;
        }
        self.set_ringback(false, out);
        if status >= 300 {
            self.request_done(token, out);
            self.transfer = None;
            if live {
                out.extend(self.neg.abandon_transfer().into_iter().map(Output::Media));
                self.notify_progress(status, TERMINATED, out);
            }
            return;
        }
        self.on_transfer_answer(now, token, msg, live, out);
    }

    /// 2xx from the new leg: ACK, its media takes over, NOTIFY 200, and it becomes the Teams
    /// leg. The old Teams dialog stays until Microsoft sends BYE on it.
    fn on_transfer_answer(
        &mut self,
        now: Instant,
        token: u64,
        msg: Message,
        live: bool,
        out: &mut VecDeque<Output>,
    ) {
        let Some(mut transfer) = self.transfer.take() else {
            return;
        };
        transfer.new_leg.confirm_from_response(&msg);
        let target = transfer.new_leg.next_hop();
        out.push_back(Output::SendAck {
            leg: LegId::Teams,
            target: target.clone(),
            msg: transfer.new_leg.ack(transfer.invite_cseq, None),
        });
        self.request_done(token, out);
        let media = match sdp_of(&msg) {
            // The answer came in a reliable 18x already, or never: the latter fails below.
            None if transfer.notified > 100 => Ok(Vec::new()),
            None => Err(crate::sdp::SdpError::NoAudio),
            Some(body) => self.neg.use_transfer_answer(&body),
        };
        let answered = live && media.is_ok();
        if !answered {
            let bye = transfer.new_leg.request(Method::Bye, None);
            let bye_token = self.send_request(LegId::Teams, target, bye, Sent::Bye, out);
            if self.phase == Phase::Ending {
                self.awaiting.insert(bye_token);
            }
            if live {
                out.extend(self.neg.abandon_transfer().into_iter().map(Output::Media));
                self.notify_progress(488, TERMINATED, out);
            }
            return;
        }
        if let Ok(commands) = media {
            out.extend(commands.into_iter().map(Output::Media));
        }
        self.neg.complete_transfer();
        self.notify_progress(200, TERMINATED, out);
        let old = std::mem::replace(&mut self.dialogs[idx(LegId::Teams)], transfer.new_leg);
        self.replaced_teams.push(old);
        // The old dialog's timer ends with it; the new one runs as its 2xx says (row 42).
        self.session_start_as_uac(now, LegId::Teams, &msg, out);
    }

    /// The new leg's INVITE failed without a response.
    pub(super) fn transfer_failed(
        &mut self,
        token: u64,
        reason: TxFailure,
        out: &mut VecDeque<Output>,
    ) {
        if self
            .transfer
            .as_ref()
            .is_none_or(|t| t.invite_token != token)
        {
            return;
        }
        let Some(mut transfer) = self.transfer.take() else {
            return;
        };
        self.set_ringback(false, out);
        if self.phase != Phase::Confirmed {
            return;
        }
        if !transfer.responded && transfer.proxy + 1 < self.setup.teams.proxies.len() {
            // No answer at all from this proxy (connect failure, timeout): the next one.
            transfer.proxy += 1;
            self.send_transfer_invite(&mut transfer, out);
            self.transfer = Some(transfer);
            return;
        }
        let status = match reason {
            TxFailure::Timeout => 408,
            _ => 503,
        };
        out.extend(self.neg.abandon_transfer().into_iter().map(Output::Media));
        self.notify_progress(status, TERMINATED, out);
    }

    /// The call is ending with a transfer still ringing: cancel it (its answer, if any, is
    /// ACKed and released when it comes).
    pub(super) fn stop_transfer(&mut self, out: &mut VecDeque<Output>) {
        self.set_ringback(false, out);
        let Some(token) = self.transfer.as_ref().map(|t| t.invite_token) else {
            return;
        };
        self.awaiting.insert(token);
        self.cancel_transfer_invite(out);
    }

    fn cancel_transfer_invite(&mut self, out: &mut VecDeque<Output>) {
        let Some(transfer) = self.transfer.as_mut() else {
            return;
        };
        if !transfer.responded || transfer.cancel_sent {
            return;
        }
        transfer.cancel_sent = true;
        let Ok(parsed) = Message::parse(transfer.invite.clone(), &Limits::default()) else {
            return;
        };
        let Some(cancel) = cancel_for(&parsed) else {
            return;
        };
        let cancel = add_headers(&cancel, &transfer.new_leg.policy.extra_headers());
        self.send_request(
            LegId::Teams,
            Target::TeamsProxy(0),
            cancel,
            Sent::Cancel,
            out,
        );
    }

    /// Starts or stops the carrier's ringback (row 38), once per change. Nothing plays when
    /// the trunk wants none or the carrier negotiated no G.711 to play it in.
    fn set_ringback(&mut self, on: bool, out: &mut VecDeque<Output>) {
        if on == self.ringback_playing {
            return;
        }
        let ringback = match (
            on,
            self.setup.carrier.trunk.ringback,
            self.neg.carrier_g711(),
        ) {
            (true, Some(plan), Some(target)) => Some(Ringback { plan, target }),
            (true, _, _) => return,
            (false, _, _) => None,
        };
        self.ringback_playing = on;
        out.push_back(Output::Media(MediaCommand::SetRingback { ringback }));
    }

    /// A request on a Teams dialog other than the current one: a dialog a transfer replaced
    /// (Microsoft's BYE releases only it, the call goes on) or a transfer leg not yet
    /// answered. Returns false for the current dialog.
    pub(super) fn on_other_teams_dialog(
        &mut self,
        tx: TxId,
        msg: &Message,
        out: &mut VecDeque<Output>,
    ) -> bool {
        let Some(call_id) = msg.call_id() else {
            return false;
        };
        if call_id == self.dialogs[idx(LegId::Teams)].call_id {
            return false;
        }
        let Some(position) = self
            .replaced_teams
            .iter()
            .position(|d| d.call_id == call_id)
        else {
            let Some(transfer) = &self.transfer else {
                return false;
            };
            if transfer.new_leg.call_id != call_id {
                return false;
            }
            let response = transfer.new_leg.response(msg, 481, None);
            out.push_back(Output::SendResponse {
                leg: LegId::Teams,
                tx,
                msg: response,
            });
            return true;
        };
        let method = msg.method().cloned();
        let status = match method {
            Some(Method::Bye) | Some(Method::Options) => 200,
            Some(Method::Ack) => return true,
            _ => 481,
        };
        let response = self.replaced_teams[position].response(msg, status, None);
        out.push_back(Output::SendResponse {
            leg: LegId::Teams,
            tx,
            msg: response,
        });
        if method == Some(Method::Bye) {
            self.replaced_teams.remove(position);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(status: u16) -> PendingNotify {
        PendingNotify {
            call_id: Bytes::from_static(b"c"),
            status,
            state: ACTIVE,
        }
    }

    #[test]
    fn a_silent_subscriber_keeps_the_queue_bounded_and_finals_win_over_provisionals() {
        let mut notifier = ReferNotifier::default();
        for status in [180, 181, 182, 183, 486, 487] {
            notifier.push(pending(status));
        }
        let statuses: Vec<u16> = notifier.queued.iter().map(|n| n.status).collect();
        assert_eq!(statuses, vec![182, 183, 486, 487]);
        for status in [200, 603] {
            notifier.push(pending(status));
        }
        let statuses: Vec<u16> = notifier.queued.iter().map(|n| n.status).collect();
        assert_eq!(statuses, vec![486, 487, 200, 603]);
        notifier.push(pending(202));
        let statuses: Vec<u16> = notifier.queued.iter().map(|n| n.status).collect();
        assert_eq!(statuses, vec![487, 200, 603, 202]);
    }

    #[test]
    fn only_the_notify_in_flight_releases_the_next() {
        let mut notifier = ReferNotifier {
            in_flight: Some(7),
            ..Default::default()
        };
        assert!(!notifier.finished(6));
        assert!(notifier.finished(7));
        assert!(!notifier.finished(7));
    }
}
