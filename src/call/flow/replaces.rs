//! INVITE with `Replaces` from Microsoft (row 22, RFC 3891; doc section 2.8): Microsoft opens
//! a new dialog that takes over the Teams leg of a call (call queues, some transfers, and
//! picking up a ringing call). The SBC answers it 200 (same Teams-side address and port, a
//! fresh SRTP key: rows 41, 43) and the carrier keeps its leg:
//!
//! * A confirmed Teams dialog: the answer comes from the carrier's current media, the
//!   replaced dialog is released with BYE (RFC 3891 §3: the UAS ends the replaced dialog),
//!   the carrier hears nothing; an offer without the carrier's codec is answered 488 and the
//!   call stays as it was.
//! * An early dialog of our INVITE to Microsoft (PSTN -> Teams, ringing): RFC 3891 §3 lets a
//!   UA replace an early dialog it initiated, and these are the only early dialogs on our
//!   Teams leg that we initiated. The new dialog answers the call: Microsoft's offer is
//!   answered from the carrier's offer and the carrier gets the matching answer in its 200;
//!   our INVITE is cancelled (the replaced early dialog ends with CANCEL). A carrier that
//!   made no offer (delayed offer, row 21) would need ours in its 200 before Microsoft's
//!   answer could be built from it: 488.
//!
//! Matching (RFC 3891 §3): the header's Call-ID is the current Teams dialog's, `to-tag` is
//! our tag in it and `from-tag` Microsoft's (a confirmed dialog's, or the To tag of a 18x of
//! our ringing INVITE); anything else is 481, and so is every early Teams dialog of a Teams ->
//! PSTN call (Microsoft created it, RFC 3891 §3). A confirmed dialog with `early-only` is 486;
//! a call that is ending 603; while a transfer, another replacement, a re-INVITE or our
//! session refresh is in progress, or our 2xx to the caller is not yet ACKed, 491.
//!
//! The ACK of our 200 arrives on the new Call-ID. If it never comes (the transaction layer's
//! `AckTimeout` on the INVITE's server transaction) the whole call ends with BYE on both legs
//! (RFC 3261 §13.3.1.4): the replaced dialog is already released, so the carrier would
//! otherwise be left talking to nobody.
//!
//! The SBC itself never sends Replaces (row 22): every message towards Microsoft is built
//! from scratch by the leg's dialog and profile.

use super::*;

/// A parsed `Replaces` header value (RFC 3891 §6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacesHeader {
    pub call_id: Bytes,
    /// Compared with the replaced dialog's local tag (ours).
    pub to_tag: Bytes,
    /// Compared with the replaced dialog's remote tag (Microsoft's).
    pub from_tag: Bytes,
    /// Replace only an early dialog.
    pub early_only: bool,
}

impl ReplacesHeader {
    /// `callid *( SEMI replaces-param )`; exactly one `to-tag` and one `from-tag`.
    pub fn parse(value: &[u8]) -> Result<ReplacesHeader, &'static str> {
        let text = std::str::from_utf8(value).map_err(|_| "Replaces is not UTF-8")?;
        let mut parts = text.split(';');
        let call_id = parts.next().unwrap_or("").trim();
        let call_id_ok = !call_id.is_empty()
            && call_id
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'<' | b'>'));
        if !call_id_ok {
            return Err("Replaces without a valid Call-ID");
        }
        let (mut to_tag, mut from_tag, mut early_only) = (None, None, false);
        for param in parts {
            let (name, value) = match param.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (param.trim(), None),
            };
            let slot = if name.eq_ignore_ascii_case("to-tag") {
                &mut to_tag
            } else if name.eq_ignore_ascii_case("from-tag") {
                &mut from_tag
            } else {
                if name.eq_ignore_ascii_case("early-only") {
                    early_only = true;
                }
                continue;
            };
            let tag = value.filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic()));
            match (slot.is_some(), tag) {
                (false, Some(tag)) => *slot = Some(Bytes::copy_from_slice(tag.as_bytes())),
                (true, _) => return Err("Replaces with a repeated tag parameter"),
                (false, None) => return Err("Replaces with an empty tag parameter"),
            }
        }
        match (to_tag, from_tag) {
            (Some(to_tag), Some(from_tag)) => Ok(ReplacesHeader {
                call_id: Bytes::copy_from_slice(call_id.as_bytes()),
                to_tag,
                from_tag,
                early_only,
            }),
            _ => Err("Replaces without to-tag and from-tag"),
        }
    }

    /// The one `Replaces` header of `msg`: `Ok(None)` when there is none, an error when it
    /// does not parse or there are several (RFC 3891 §3: 400).
    pub fn of(msg: &Message) -> Result<Option<ReplacesHeader>, &'static str> {
        let values = msg.header_lines(&HeaderName::Replaces);
        match values.len() {
            0 => Ok(None),
            1 => {
                let value = msg.header(&HeaderName::Replaces).unwrap_or_default();
                ReplacesHeader::parse(&value).map(Some)
            }
            _ => Err("more than one Replaces header"),
        }
    }
}

/// The Teams dialog an accepted INVITE with Replaces takes over.
enum Replaced {
    /// The Teams leg of an answered call.
    Confirmed,
    /// An early dialog of our INVITE `invite` (its token) to Microsoft.
    Early { invite: u64 },
}

/// Our 200 to an accepted INVITE with Replaces, until its ACK.
pub(super) struct Replacement {
    tx: TxId,
    call_id: Bytes,
}

impl State {
    /// A Teams request on a Call-ID the call does not know as a dialog yet: an INVITE with
    /// Replaces (row 22) is handled here; anything else on such a Call-ID gets 481 (its ACK is
    /// absorbed). Returns false for requests on a dialog the call knows.
    pub(super) fn on_new_teams_dialog(
        &mut self,
        now: Instant,
        tx: TxId,
        msg: &Message,
        out: &mut VecDeque<Output>,
    ) -> bool {
        let Some(call_id) = msg.call_id() else {
            return false;
        };
        // Runs after `on_other_teams_dialog`, which took the replaced and transfer dialogs.
        let known = call_id == self.dialogs[idx(LegId::Teams)].call_id
            || self.replaced_teams.iter().any(|d| d.call_id == call_id);
        if known {
            return false;
        }
        let initial = msg.to().ok().is_some_and(|to| to.tag.is_none());
        match msg.method() {
            Some(Method::Ack) => {}
            Some(Method::Invite) if initial => self.on_replaces_invite(now, tx, msg, out),
            _ => self.answer_new_dialog(tx, msg, 481, out),
        }
        true
    }

    fn on_replaces_invite(
        &mut self,
        now: Instant,
        tx: TxId,
        msg: &Message,
        out: &mut VecDeque<Output>,
    ) {
        let replaces = match ReplacesHeader::of(msg) {
            Ok(Some(replaces)) => replaces,
            // A new INVITE without Replaces is a new call, never this call's business.
            Ok(None) => return self.answer_new_dialog(tx, msg, 481, out),
            Err(_) => return self.answer_new_dialog(tx, msg, 400, out),
        };
        let replaced = match self.replaces_decision(&replaces) {
            Ok(replaced) => replaced,
            Err(status) => return self.answer_new_dialog(tx, msg, status, out),
        };
        let Some(body) = sdp_of(msg) else {
            // Microsoft always offers; an offerless INVITE would need our offer in the 200.
            return self.answer_new_dialog(tx, msg, 488, out);
        };
        match replaced {
            Replaced::Confirmed => self.replace_confirmed_dialog(now, tx, msg, &body, out),
            Replaced::Early { invite } => {
                self.replace_early_dialog(now, tx, msg, &body, invite, out)
            }
        }
    }

    /// The confirmed Teams dialog is replaced: the new one gets our answer from the carrier's
    /// current media, the old one our BYE; the carrier hears nothing.
    fn replace_confirmed_dialog(
        &mut self,
        now: Instant,
        tx: TxId,
        msg: &Message,
        body: &[u8],
        out: &mut VecDeque<Output>,
    ) {
        let carrier_offered = self.direction == Direction::Inbound && !self.neg.delayed_offer;
        self.follow_user_location(msg, out);
        let (answer, commands) = match self.neg.answer_for_replacement(body, carrier_offered) {
            Ok(answered) => answered,
            Err(e) => return self.answer_new_dialog(tx, msg, e.sip_status(), out),
        };
        out.extend(commands.into_iter().map(Output::Media));
        let mut old = self.answer_replacing_dialog(now, tx, msg, &answer, out);
        let bye = old.request(Method::Bye, None);
        let target = old.next_hop();
        self.send_request(LegId::Teams, target, bye, Sent::Bye, out);
        // Kept to answer what crosses our BYE on the old dialog (a BYE 200, others 481).
        self.replaced_teams.push(old);
    }

    /// RFC 3891 §3: an early dialog of our ringing INVITE to Microsoft (PSTN -> Teams) is
    /// replaced: the new dialog answers the call. Microsoft's offer in it is answered from the
    /// carrier's offer (the carrier gets the matching answer in its 200, the call is
    /// answered), our INVITE is cancelled (RFC 3891: the replaced early dialog ends with
    /// CANCEL), and what it still brings (its 487, or a 2xx crossing the CANCEL, ACKed and
    /// released with BYE) ends there.
    fn replace_early_dialog(
        &mut self,
        now: Instant,
        tx: TxId,
        msg: &Message,
        body: &[u8],
        invite: u64,
        out: &mut VecDeque<Output>,
    ) {
        let (answer, to_carrier, commands) = match self.neg.answer_early_replacement(body) {
            Ok(answered) => answered,
            Err(e) => return self.answer_new_dialog(tx, msg, e.sip_status(), out),
        };
        for kind in [
            TimerKind::HopTimeout,
            TimerKind::NoAnswer,
            TimerKind::ProgressDeadline,
        ] {
            self.cancel_timer(kind, out);
        }
        out.extend(commands.into_iter().map(Output::Media));
        let old = self.answer_replacing_dialog(now, tx, msg, &answer, out);
        self.replaced_teams.push(old);
        self.send_cancel(invite, out);
        self.current_invite = None;

        let response =
            self.dialogs[idx(self.caller)].response(&self.caller_invite, 200, Some(&to_carrier));
        let response = self.session_answer_caller(now, response, out);
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

    /// Our 200 with `answer` to Microsoft's INVITE with Replaces, whose dialog becomes the
    /// Teams leg; returns the dialog it replaced.
    fn answer_replacing_dialog(
        &mut self,
        now: Instant,
        tx: TxId,
        msg: &Message,
        answer: &[u8],
        out: &mut VecDeque<Output>,
    ) -> Dialog {
        let policy = self.dialogs[idx(LegId::Teams)].policy.clone();
        let mut new_leg = Dialog::from_invite(msg, new_tag(), policy);
        if new_leg.contact_user.is_none() {
            new_leg.contact_user = self.dialogs[idx(LegId::Teams)].contact_user.clone();
        }
        let response = new_leg.response(msg, 200, Some(answer));
        let call_id = new_leg.call_id.clone();
        let old = std::mem::replace(&mut self.dialogs[idx(LegId::Teams)], new_leg);
        // A new session: its timer is the one this INVITE asks for (row 42), not the old one's.
        let response = self.session_answer_new_teams_dialog(now, msg, response, out);
        out.push_back(Output::SendResponse {
            leg: LegId::Teams,
            tx,
            msg: response,
        });
        self.replacement = Some(Replacement { tx, call_id });
        old
    }

    /// What `replaces` may take over (RFC 3891 §3), or the status refusing it.
    fn replaces_decision(&self, replaces: &ReplacesHeader) -> Result<Replaced, u16> {
        let current = &self.dialogs[idx(LegId::Teams)];
        let ours =
            replaces.call_id == current.call_id && replaces.to_tag == current.local_tag.as_bytes();
        let confirmed = ours && current.remote_tag.as_ref() == Some(&replaces.from_tag);
        match self.phase {
            Phase::Calling => match self.early_dialog_we_created(replaces) {
                Some(_) if self.neg.delayed_offer => Err(488),
                Some(invite) => Ok(Replaced::Early { invite }),
                None => Err(481),
            },
            _ if !confirmed => Err(481),
            Phase::Answered => Err(491),
            Phase::Ending | Phase::Finished => Err(603),
            Phase::Confirmed if replaces.early_only => Err(486),
            Phase::Confirmed if self.offer_answer_busy() => Err(491),
            Phase::Confirmed => Ok(Replaced::Confirmed),
        }
    }

    /// The token of our INVITE to Microsoft when `replaces` names one of its early dialogs
    /// still early: our Call-ID and tag, Microsoft's To tag of a 18x. Only a PSTN -> Teams
    /// call has such dialogs on its Teams leg: on a Teams -> PSTN call Microsoft created the
    /// Teams dialog, which RFC 3891 §3 answers 481.
    fn early_dialog_we_created(&self, replaces: &ReplacesHeader) -> Option<u64> {
        let ours = &self.dialogs[idx(LegId::Teams)];
        let token = self.current_invite?;
        let named = replaces.call_id == ours.call_id
            && replaces.to_tag == ours.local_tag.as_bytes()
            && self.early.is_early(token, &replaces.from_tag);
        (self.callee == LegId::Teams && !self.cancel_requested && named).then_some(token)
    }

    /// Another offer/answer is open on the call: a transfer's new leg, a replacement not yet
    /// ACKed, a re-INVITE (relayed, or our 2xx to Teams awaiting its ACK) or our session
    /// refresh towards Teams. The new dialog's answer would race it (RFC 3261 §14.2).
    fn offer_answer_busy(&self) -> bool {
        self.transfer.is_some()
            || self.replacement.is_some()
            || self.reinvite_in_progress(LegId::Teams)
            || self.session_refresh_in_flight(LegId::Teams)
    }

    /// A final answer on a new dialog we do not take: its own To tag, the Teams headers.
    fn answer_new_dialog(
        &mut self,
        tx: TxId,
        msg: &Message,
        status: u16,
        out: &mut VecDeque<Output>,
    ) {
        let policy = self.dialogs[idx(LegId::Teams)].policy.clone();
        let stranger = Dialog::from_invite(msg, new_tag(), policy);
        out.push_back(Output::SendResponse {
            leg: LegId::Teams,
            tx,
            msg: stranger.response(msg, status, None),
        });
    }

    /// An ACK on `leg`: true when it acknowledges our 200 to an INVITE with Replaces.
    pub(super) fn replacement_acked(&mut self, leg: LegId, msg: &Message) -> bool {
        let call_id = msg.call_id();
        leg == LegId::Teams
            && self
                .replacement
                .take_if(|r| Some(&r.call_id) == call_id.as_ref())
                .is_some()
    }

    /// No ACK for our 200 to an INVITE with Replaces: the call ends (module docs). True when
    /// `tx` was that INVITE.
    pub(super) fn replacement_ack_timeout(
        &mut self,
        now: Instant,
        tx: TxId,
        out: &mut VecDeque<Output>,
    ) -> bool {
        if self.replacement.take_if(|r| r.tx == tx).is_none() {
            return false;
        }
        if matches!(self.phase, Phase::Answered | Phase::Confirmed) {
            self.end_call(now, EndReason::AckTimeout, None, out);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::ReplacesHeader;

    #[test]
    fn replaces_header_parses_tags_and_early_only_in_any_order_and_case() {
        let r = ReplacesHeader::parse(
            b" 98asjd8@pc33.example ; From-Tag=31415 ;early-only;to-tag=7743",
        )
        .unwrap();
        assert_eq!(&r.call_id[..], b"98asjd8@pc33.example");
        assert_eq!(&r.to_tag[..], b"7743");
        assert_eq!(&r.from_tag[..], b"31415");
        assert!(r.early_only);
        let r = ReplacesHeader::parse(b"abc;to-tag=1;from-tag=2;x=y").unwrap();
        assert!(!r.early_only);
    }

    #[test]
    fn replaces_header_without_both_tags_or_call_id_is_refused() {
        for bad in [
            &b"abc;to-tag=1"[..],
            b"abc;from-tag=2",
            b";to-tag=1;from-tag=2",
            b"abc;to-tag=;from-tag=2",
            b"abc;to-tag=1;to-tag=3;from-tag=2",
            b"a<b;to-tag=1;from-tag=2",
            b"\xff;to-tag=1;from-tag=2",
        ] {
            assert!(ReplacesHeader::parse(bad).is_err(), "{bad:?}");
        }
    }
}
