//! The life of a call: setup towards the called leg with failover, provisional and final
//! responses carried across, CANCEL, answer and ACK, in-dialog requests, and teardown.
//!
//! The caller leg is where the first INVITE came from (carrier on PSTN -> Teams calls, Teams
//! on Teams -> PSTN calls), the callee leg the one the SBC originates.

mod callee;
mod early;
mod ending;
mod identity;
mod location;
mod peer;
mod reinvite;
pub(super) mod replaces;
mod session_timer;
mod transfer;

pub use early::EarlyMediaPolicy;
pub use replaces::ReplacesHeader;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::codes::{failover_code, is_transient};
use super::dialog::Dialog;
use super::profile::{CarrierProfile, LegPolicy};
use super::sdp_glue::Negotiation;
use super::{
    CallRecord, CallSetup, Direction, EndReason, Input, LegId, LmoHeaders, MediaCommand, Output,
    RequestToken, StatusClass, Target, TimerKind, TxFailure, UserLocation,
};
use crate::media::MediaEvent;
use crate::sip::{HeaderName, Limits, Message, Method};
use crate::transaction::{cancel_for, new_tag, TxId};
use location::sdp_of;

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
    /// The INVITE of a transfer's new Teams leg (row 37).
    TransferInvite,
    /// A NOTIFY with transfer progress on the Teams dialog the REFER came in.
    Notify,
    /// A re-INVITE relayed to `leg` (see `reinvite.rs`).
    Reinvite {
        leg: LegId,
        cseq: u32,
    },
    /// Our session refresh re-INVITE on `leg` (RFC 4028, row 42; `session_timer.rs`).
    SessionRefresh {
        leg: LegId,
        cseq: u32,
    },
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
    /// SDP we offer the callee: the same for every Teams proxy; built for each carrier hop
    /// from Teams' offer with that hop's trunk settings.
    callee_offer: Bytes,
    /// The carrier hop whose trunk settings the call uses (Teams -> PSTN).
    carrier_hop: Option<usize>,
    answered_at: Option<Instant>,
    cancel_requested: bool,
    /// Tokens of requests an ending call still waits for.
    awaiting: HashSet<u64>,
    /// A transfer in progress (REFER from Teams, row 37).
    transfer: Option<transfer::Transfer>,
    /// Teams dialogs a transfer replaced, until Microsoft ends them with BYE.
    replaced_teams: Vec<Dialog>,
    /// Transfer progress NOTIFYs, sent one at a time (`transfer.rs`).
    notifier: transfer::ReferNotifier,
    /// The carrier hears our ringback while a transfer's target rings (row 38).
    ringback_playing: bool,
    /// Re-INVITEs relayed or answered, until their answer / ACK (`reinvite.rs`).
    reinvites: reinvite::Reinvites,
    /// The callee's final error response being handled (its Reason may cross, row 58).
    callee_final: Option<Message>,
    /// Extra lines of the BYEs a peer's BYE causes (Teams' Q.850 Reason, `identity.rs`).
    bye_headers: Vec<(HeaderName, String)>,
    /// The Reason of an `Input::Terminate`, on every BYE and CANCEL-time answer that follows.
    terminate_reason: Option<(HeaderName, String)>,
    /// Forked early dialogs of the callee INVITE and the caller's 18x policy (rows 26, 27).
    early: early::EarlyDialogs,
    /// Session timers of both legs (RFC 4028, row 42; `session_timer.rs`).
    session: session_timer::SessionTimers,
    /// Our 200 to an INVITE with Replaces from Microsoft, until its ACK (row 22).
    replacement: Option<replaces::Replacement>,
    /// Microsoft's emergency location for the carrier INVITE (row 56, `location.rs`).
    location: location::CallerLocation,
    /// Local Media Optimization (row 61): where the Teams user is as far as our Teams-leg
    /// media address goes; `None` without LMO.
    teams_location: Option<UserLocation>,
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
        let mut setup = setup;
        let teams_location = setup.teams.local_media.map(|media| {
            let location = match caller {
                // Without a location Microsoft sent no LMO headers: the public address.
                LegId::Teams => LmoHeaders::of(invite)
                    .location
                    .unwrap_or(UserLocation::External),
                LegId::Carrier => media.inbound_guess,
            };
            // The session's first address, its o= line's too (that stays for the session).
            let ip = media.address(location);
            setup.media.teams.rtp.set_ip(ip);
            setup.media.teams.rtcp.set_ip(ip);
            location
        });
        let neg = Negotiation::new(&setup);
        let early = early::EarlyDialogs::new(match caller {
            LegId::Carrier => setup.carrier.trunk.early_media,
            LegId::Teams => early::EarlyMediaPolicy::Relay,
        });
        let session = session_timer::SessionTimers::new(&setup.timers);
        let location = match callee {
            LegId::Carrier => location::CallerLocation::of(invite),
            LegId::Teams => location::CallerLocation::default(),
        };
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
            carrier_hop: None,
            answered_at: None,
            cancel_requested: false,
            awaiting: HashSet::new(),
            transfer: None,
            replaced_teams: Vec::new(),
            notifier: transfer::ReferNotifier::default(),
            ringback_playing: false,
            reinvites: reinvite::Reinvites::default(),
            callee_final: None,
            bye_headers: Vec::new(),
            terminate_reason: None,
            early,
            session,
            replacement: None,
            location,
            teams_location,
        }
    }

    /// A request from Microsoft naming the user's location (`X-MS-UserLocation`, row 61):
    /// our Teams-leg media address follows it in the SDP we send next.
    fn follow_user_location(&mut self, msg: &Message, out: &mut VecDeque<Output>) {
        let Some(media) = self.setup.teams.local_media else {
            return;
        };
        let Some(location) = LmoHeaders::of(msg).location else {
            return;
        };
        if self.teams_location == Some(location) {
            return;
        }
        self.teams_location = Some(location);
        self.neg.relocate_teams(media.address(location));
        out.push_back(Output::Record(CallRecord::MediaLocation { location }));
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

    pub fn summary(&self) -> super::CallSummary {
        super::CallSummary {
            state: match self.phase {
                Phase::Calling if self.progressed => "ringing",
                Phase::Calling => "calling",
                Phase::Answered => "answered",
                Phase::Confirmed => "confirmed",
                Phase::Ending => "ending",
                Phase::Finished => "finished",
            },
            caller: self.setup.numbers.caller.clone(),
            callee: self.setup.numbers.callee.clone(),
            started: self.start,
            answered: self.answered_at,
        }
    }

    fn dialog(&mut self, leg: LegId) -> &mut Dialog {
        &mut self.dialogs[idx(leg)]
    }

    /// Records the attempt, builds the offer and sends the first INVITE.
    pub fn start(&mut self, now: Instant, invite: Message, out: &mut VecDeque<Output>) {
        out.push_back(Output::Record(CallRecord::Attempted {
            direction: self.direction,
        }));
        if let Some(location) = self.teams_location {
            out.push_back(Output::Record(CallRecord::MediaLocation { location }));
        }
        let unsupported: Vec<String> = invite
            .tokens(&HeaderName::Require)
            .iter()
            .map(|t| String::from_utf8_lossy(t).trim().to_ascii_lowercase())
            // Session timers are supported (session_timer.rs, RFC 4028).
            .filter(|t| !t.is_empty() && t != "timer")
            .collect();
        if !unsupported.is_empty() {
            let response = self.dialogs[idx(self.caller)].response(&invite, 420, None);
            let unsupported_header = HeaderName::Other(Bytes::from_static(b"Unsupported"));
            let response = add_headers(&response, &[(unsupported_header, unsupported.join(", "))]);
            out.push_back(Output::SendResponse {
                leg: self.caller,
                tx: self.caller_tx,
                msg: response,
            });
            self.caller_final_sent = true;
            out.push_back(Output::Record(CallRecord::Failed {
                status: 420,
                class: StatusClass::of(420),
                reason: EndReason::Rejected,
            }));
            self.reject_caller(now, 420, EndReason::Rejected, out);
            return;
        }
        if self.session_reject_small_interval(now, &invite, out) {
            return;
        }
        match invite.max_forwards() {
            Some(0) => {
                self.reject_caller(now, 483, EndReason::Rejected, out);
                return;
            }
            Some(hops) => self.dialog(self.callee).max_forwards = (hops - 1).min(70),
            None => {}
        }
        let sdp = match location::sdp_body(&invite) {
            Ok(sdp) => sdp,
            Err(_) => {
                // A multipart body we cannot take apart (row 56): say so, never guess.
                self.reject_caller(now, 400, EndReason::Rejected, out);
                return;
            }
        };
        let offer = match self.caller {
            LegId::Carrier => self.neg.offer_from_carrier(sdp.as_deref()),
            // Each carrier hop gets its own offer (`try_target`).
            LegId::Teams => self
                .neg
                .take_teams_offer(sdp.as_deref())
                .map(|()| Bytes::new()),
        };
        match offer {
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
        if let Err(e) = self.try_target(now, 0, out) {
            self.reject_caller(now, e.sip_status(), EndReason::BadMedia, out);
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
    }

    /// The first attempt from target `index` on: a Teams proxy, or the first carrier hop whose
    /// trunk can take Teams' offer (its codecs), with that hop's settings. The error of the
    /// last hop when none can.
    fn try_target(
        &mut self,
        now: Instant,
        index: usize,
        out: &mut VecDeque<Output>,
    ) -> Result<(), crate::sdp::SdpError> {
        let index = match self.callee {
            LegId::Teams => index,
            LegId::Carrier => self.enter_carrier_hop(index)?,
        };
        self.send_invite(now, index, out);
        Ok(())
    }

    /// Teams -> PSTN: the carrier leg takes over the trunk of hop `index` (or of the first
    /// later hop that can take Teams' offer): its transport and our address for it, its trunk
    /// settings (codecs, in-band DTMF, early media, identity, Diversion, response rules), its
    /// numbers, and an offer built for it. The hop in use stays as it is.
    fn enter_carrier_hop(&mut self, index: usize) -> Result<usize, crate::sdp::SdpError> {
        if self.carrier_hop == Some(index) {
            return Ok(index);
        }
        let mut failure = crate::sdp::SdpError::NoAudio;
        for i in index..self.setup.carrier.targets.len() {
            let Some(hop) = self.setup.carrier.targets.get(i).cloned() else {
                break;
            };
            let offer = match self.neg.offer_for_carrier_hop(&hop.trunk, hop.transport) {
                Ok(offer) => offer,
                Err(e) => {
                    failure = e;
                    continue;
                }
            };
            if let LegPolicy::Carrier(c) = &mut self.dialogs[idx(LegId::Carrier)].policy {
                c.host.clone_from(&hop.local_host);
                c.port = hop.local_port;
                c.transport = hop.transport;
            }
            let carrier = &mut self.setup.carrier;
            carrier.local_host = hop.local_host;
            carrier.local_port = hop.local_port;
            carrier.transport = hop.transport;
            carrier.trunk = hop.trunk;
            self.setup.numbers = hop.numbers;
            self.callee_offer = offer;
            self.carrier_hop = Some(i);
            return Ok(i);
        }
        Err(failure)
    }

    /// INVITE attempt `index` towards the callee: a new client transaction each time (new
    /// branch, CSeq + 1), same Call-ID and From tag. A carrier hop's settings are in use
    /// already (`try_target`).
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
                let hop = &self.setup.carrier.targets[index];
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
        let with_location = self.location_body(index, &offer);
        let dialog = self.dialog(callee);
        dialog.remote_target = Some(Bytes::from(uri));
        dialog.remote = Bytes::from(to);
        let carries_location = with_location.is_some();
        let mut invite = match with_location {
            Some(located) => dialog.request_with(
                Method::Invite,
                &located.headers,
                &located.content_type,
                &located.body,
            ),
            None => dialog.request(Method::Invite, Some(&offer)),
        };
        let cseq = dialog.local_cseq;
        if !identity.is_empty() {
            invite = add_headers(&invite, &identity);
        }
        invite = add_headers(&invite, &self.session.offer_headers());
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
        if carries_location {
            self.location_sent(token);
        }
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
                leg,
                tx,
            } => {
                if !self.replacement_ack_timeout(now, tx, out)
                    && !self.reinvite_ack_timeout(now, leg, tx, out)
                {
                    self.ack_missing(now, out);
                }
            }
            Input::TxFailed { tx, .. } if tx == self.caller_tx => self.caller_lost(now, out),
            Input::TxFailed { tx, reason, .. } => {
                if let Some(&token) = self.txs.get(&tx) {
                    self.request_failed(now, token, reason, out);
                }
            }
            Input::Request { leg, tx, msg } => self.on_request(now, leg, tx, msg, out),
            Input::Ack { leg, msg } => self.on_ack(now, leg, msg, out),
            Input::Media(event) => self.on_media(now, event, out),
            Input::Terminate { reason } => self.terminate(now, reason, out),
            Input::Timer(kind) => match self.timers.get(&kind) {
                Some(at) if *at <= now => {
                    self.timers.remove(&kind);
                    self.on_timer(now, kind, out);
                }
                _ => {}
            },
        }
    }

    // ----- timers -----

    pub(super) fn set_timer(&mut self, kind: TimerKind, at: Instant, out: &mut VecDeque<Output>) {
        self.timers.insert(kind, at);
        out.push_back(Output::SetTimer { kind, at });
    }

    pub(super) fn cancel_timer(&mut self, kind: TimerKind, out: &mut VecDeque<Output>) {
        if self.timers.remove(&kind).is_some() {
            out.push_back(Output::CancelTimer { kind });
        }
    }
}

/// The user part of a `sip:` URI or the number of a `tel:` URI.
fn number_of(uri: &crate::sip::Uri) -> Option<Bytes> {
    match uri {
        crate::sip::Uri::Sip(sip) => sip.user.clone(),
        crate::sip::Uri::Opaque(raw) => {
            let rest = raw
                .get(..4)?
                .eq_ignore_ascii_case(b"tel:")
                .then(|| raw.slice(4..))?;
            let end = memchr::memchr(b';', &rest).unwrap_or(rest.len());
            (end > 0).then(|| rest.slice(..end))
        }
    }
}

/// Inserts header lines before the blank line of a built message.
pub(super) fn add_headers(msg: &Bytes, headers: &[(HeaderName, String)]) -> Bytes {
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
