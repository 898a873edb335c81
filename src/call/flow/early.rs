//! Forked early dialogs of the callee INVITE (rows 26, 27).
//!
//! Microsoft answers one INVITE with a 180 per ringing endpoint, each with its own To-tag and
//! so its own early dialog, at most one 183 with SDP (several with media bypass, one per
//! client), and a 200 that may come from a fork other than the one that sent the 183 (doc
//! 2.4). The SBC keeps every early dialog by To-tag until the INVITE ends:
//! * media follows each early SDP as the carrier's policy allows, and finally the 200's SDP
//!   (`on_answer`: remote address, SRTP keys, payload maps all from the answering fork);
//! * the 200 is ACKed on the answering fork's dialog; a 2xx of any other fork is ACKed and
//!   released with BYE (`on_stray_answer`);
//! * early dialogs that never answered end with the INVITE transaction (RFC 3261 §13.2.2.4:
//!   no BYE); nothing of them is left behind but their tags, and a request on a dialog that
//!   did not win (or on an early dialog of a failed INVITE) is answered 481.
//!
//! Towards the carrier the B2BUA shows one dialog, and the trunk's [`EarlyMediaPolicy`]
//! decides which 18x it sees (row 27). The policy applies to PSTN -> Teams calls only: on
//! Teams -> PSTN calls the 18x go to Microsoft, which handles every one of them.

use super::*;

/// Forks remembered per INVITE; a peer inventing more tags than this gets its 18x handled by
/// the policy all the same, only not remembered (a 200 from it still works, see `on_answer`).
const MAX_FORKS: usize = 16;

/// Which 18x a carrier trunk receives on PSTN -> Teams calls (row 27; config
/// `carrier_trunk.early_media`). Some carriers stop their local ringback when a 183 with SDP
/// arrives; Microsoft's media processor sends no ringback of its own, so the caller would hear
/// silence until the answer. Microsoft recommends forwarding only the first 18x or turning
/// 183-with-SDP into 180 for such carriers (doc 2.4, 5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EarlyMediaPolicy {
    /// Forward the first 18x (as it is, with its SDP if any) and no later one from any fork.
    /// The default: the carrier always hears ringing (its own ringback on the first 180),
    /// never a silent early-media session opened by a later 183, and gets exactly one
    /// provisional per call however many Teams endpoints ring.
    #[default]
    FirstOnly,
    /// Every 183 goes to the carrier as 180 without SDP (other 18x as they are, without SDP):
    /// the carrier plays local ringback until the 200 and receives no media before it.
    Convert183To180,
    /// Forward every 18x with its SDP when present; a new early SDP (media bypass forks)
    /// moves the media. For carriers that handle early media themselves.
    Relay,
}

impl EarlyMediaPolicy {
    /// The configuration names, in the order of the variants.
    pub const NAMES: [&'static str; 3] = ["first_only", "convert_183_to_180", "relay"];

    /// The policy named `name` in the configuration (`first_only`, `convert_183_to_180`,
    /// `relay`).
    pub fn from_name(name: &str) -> Option<EarlyMediaPolicy> {
        match name {
            "first_only" => Some(EarlyMediaPolicy::FirstOnly),
            "convert_183_to_180" => Some(EarlyMediaPolicy::Convert183To180),
            "relay" => Some(EarlyMediaPolicy::Relay),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            EarlyMediaPolicy::FirstOnly => "first_only",
            EarlyMediaPolicy::Convert183To180 => "convert_183_to_180",
            EarlyMediaPolicy::Relay => "relay",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ForkState {
    Early,
    /// Its 2xx answered the call.
    Answered,
    /// The INVITE ended for it (another fork answered, or a final error).
    Ended,
}

#[derive(Debug, Clone)]
struct Fork {
    tag: Bytes,
    state: ForkState,
    /// The last SDP this fork sent in a 18x, while it is early.
    early_sdp: Option<Bytes>,
}

/// The early dialogs of the callee INVITE.
#[derive(Debug, Clone)]
pub(super) struct EarlyDialogs {
    policy: EarlyMediaPolicy,
    /// Token of the INVITE attempt the forks belong to.
    invite: Option<u64>,
    forks: Vec<Fork>,
    /// 18x sent to the caller so far.
    relayed: usize,
}

/// What the caller gets for one 18x of the callee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Relay {
    /// `None`: nothing.
    status: Option<u16>,
    /// The SDP answer goes with it (else the callee's SDP sets up the callee side only).
    with_sdp: bool,
}

impl EarlyDialogs {
    /// `policy` is the carrier trunk's on PSTN -> Teams calls, [`EarlyMediaPolicy::Relay`]
    /// when the 18x go to Teams.
    pub fn new(policy: EarlyMediaPolicy) -> EarlyDialogs {
        EarlyDialogs {
            policy,
            invite: None,
            forks: Vec::new(),
            relayed: 0,
        }
    }

    fn fork_mut(&mut self, tag: &Bytes) -> Option<&mut Fork> {
        self.forks.iter_mut().find(|f| f.tag == *tag)
    }

    /// A 18x of INVITE `token` on the early dialog `tag`.
    fn record(&mut self, token: u64, tag: Option<Bytes>, sdp: Option<Bytes>) {
        if self.invite != Some(token) {
            self.invite = Some(token);
            self.forks.clear();
        }
        let Some(tag) = tag else { return };
        if let Some(fork) = self.fork_mut(&tag) {
            if fork.state == ForkState::Early && sdp.is_some() {
                fork.early_sdp = sdp;
            }
        } else if self.forks.len() < MAX_FORKS {
            self.forks.push(Fork {
                tag,
                state: ForkState::Early,
                early_sdp: sdp,
            });
        }
    }

    /// The fork `tag` answered INVITE `token`: every other early dialog ends.
    fn answered(&mut self, token: u64, tag: Option<&Bytes>) {
        if self.invite != Some(token) {
            self.invite = Some(token);
            self.forks.clear();
        }
        for fork in &mut self.forks {
            fork.state = if Some(&fork.tag) == tag {
                ForkState::Answered
            } else {
                ForkState::Ended
            };
            fork.early_sdp = None;
        }
        if let Some(tag) = tag {
            if self.fork_mut(tag).is_none() && self.forks.len() < MAX_FORKS {
                self.forks.push(Fork {
                    tag: tag.clone(),
                    state: ForkState::Answered,
                    early_sdp: None,
                });
            }
        }
    }

    /// INVITE `token` ended for every early dialog still early.
    fn ended(&mut self, token: u64) {
        if self.invite != Some(token) {
            return;
        }
        for fork in &mut self.forks {
            if fork.state == ForkState::Early {
                fork.state = ForkState::Ended;
            }
            fork.early_sdp = None;
        }
    }

    /// `tag` is an early dialog of INVITE `token` that is still early.
    pub(super) fn is_early(&self, token: u64, tag: &Bytes) -> bool {
        self.invite == Some(token)
            && self
                .forks
                .iter()
                .any(|f| f.tag == *tag && f.state == ForkState::Early)
    }

    /// The SDP fork `tag` sent early (for a 200 on the same fork that repeats none).
    fn early_sdp(&self, token: u64, tag: Option<&Bytes>) -> Option<Bytes> {
        if self.invite != Some(token) {
            return None;
        }
        let tag = tag?;
        self.forks
            .iter()
            .find(|f| f.tag == *tag && f.state == ForkState::Early)
            .and_then(|f| f.early_sdp.clone())
    }

    fn decide(&self, status: u16, has_sdp: bool) -> Relay {
        match self.policy {
            EarlyMediaPolicy::Relay => Relay {
                status: Some(status),
                with_sdp: has_sdp,
            },
            EarlyMediaPolicy::FirstOnly if self.relayed > 0 => Relay {
                status: None,
                with_sdp: false,
            },
            EarlyMediaPolicy::FirstOnly => Relay {
                status: Some(status),
                with_sdp: has_sdp,
            },
            EarlyMediaPolicy::Convert183To180 => Relay {
                status: Some(if status == 183 { 180 } else { status }),
                with_sdp: false,
            },
        }
    }

    /// Number of early dialogs still early.
    #[cfg(test)]
    pub fn early_count(&self) -> usize {
        self.forks
            .iter()
            .filter(|f| f.state == ForkState::Early)
            .count()
    }
}

fn to_tag(msg: &Message) -> Option<Bytes> {
    msg.to().ok().and_then(|t| t.tag)
}

impl State {
    /// A 18x (not 100) from the callee on the current INVITE: remember its early dialog and
    /// relay it to the caller as the policy says.
    pub(super) fn on_callee_provisional(
        &mut self,
        token: u64,
        status: u16,
        msg: &Message,
        out: &mut VecDeque<Output>,
    ) {
        let sdp = sdp_of(msg);
        self.early.record(token, to_tag(msg), sdp.clone());
        if self.early.policy == EarlyMediaPolicy::Relay {
            self.early.relayed += 1;
            self.relay_provisional(status, msg, out);
            return;
        }
        self.progressed = true;
        self.cancel_timer(TimerKind::ProgressDeadline, out);
        let relay = self.early.decide(status, sdp.is_some());
        let mut answer = None;
        // Delayed offer: the caller's SDP is our offer in the 200, nothing to do early.
        if let Some(sdp) = sdp.filter(|_| !self.neg.delayed_offer) {
            if relay.with_sdp {
                if let Ok((sdp, commands)) = self.neg.answer_from_callee(self.callee, &sdp) {
                    out.extend(self.any_fork_may_check(commands));
                    answer = Some(sdp);
                }
            } else if let Ok(commands) = self.neg.early_answer_withheld(self.callee, &sdp) {
                // The callee side is ready (keys, ICE-lite, its address); the caller side
                // gets no remote until the 200, so no early media reaches a caller that was
                // never given an answer.
                out.extend(self.any_fork_may_check(commands));
            }
        }
        let Some(status) = relay.status else { return };
        self.early.relayed += 1;
        let response =
            self.dialogs[idx(self.caller)].response(&self.caller_invite, status, answer.as_deref());
        out.push_back(Output::SendResponse {
            leg: self.caller,
            tx: self.caller_tx,
            msg: response,
        });
    }

    /// The media commands of an early (18x) answer. Row 52: with media bypass Teams' SDP in a
    /// 18x is one forked client's, and until the 200 every client that got our offer may
    /// check and nominate, so ICE-lite takes any remote ufrag (our password still
    /// authenticates each check). The 200's SDP names the winner and narrows it again.
    pub(super) fn any_fork_may_check(
        &self,
        commands: Vec<MediaCommand>,
    ) -> impl Iterator<Item = Output> {
        let callee_is_teams = self.callee == LegId::Teams;
        commands.into_iter().map(move |mut command| {
            // Only the Teams leg is ICE-lite.
            if let MediaCommand::EnableIceLite {
                remote_ufrag,
                forks_open,
                ..
            } = &mut command
            {
                if callee_is_teams {
                    *remote_ufrag = None;
                    *forks_open = true;
                }
            }
            Output::Media(command)
        })
    }

    /// The 2xx of INVITE `token` that answers the call: its fork wins, the other early
    /// dialogs end. Returns the SDP to use: the 2xx's own, else (a fork that sent its answer
    /// in a 18x and does not repeat it) the one that fork sent early.
    pub(super) fn early_dialogs_answered(&mut self, token: u64, msg: &Message) -> Bytes {
        let tag = to_tag(msg);
        let sdp = match sdp_of(msg) {
            Some(body) => body,
            None => self
                .early
                .early_sdp(token, tag.as_ref())
                .unwrap_or_default(),
        };
        self.early.answered(token, tag.as_ref());
        sdp
    }

    /// INVITE `token` got a final error, or a 2xx that does not answer the call (another fork
    /// answered, or the call is being cancelled): its early dialogs end with the transaction
    /// (the fork of that 2xx is released by `on_stray_answer`).
    pub(super) fn early_dialogs_end(&mut self, token: u64) {
        self.early.ended(token);
    }

    /// A request from the callee on a dialog of this call that is not the answered one (an
    /// early dialog that lost to another fork, or of an INVITE that failed): 481. Requests
    /// before the call is answered are left to the usual handling.
    pub(super) fn request_on_ended_fork(
        &mut self,
        leg: LegId,
        tx: TxId,
        msg: &Message,
        out: &mut VecDeque<Output>,
    ) -> bool {
        if leg != self.callee
            || self.phase == Phase::Calling
            || msg.method() == Some(&Method::Cancel)
        {
            return false;
        }
        let dialog = &self.dialogs[idx(leg)];
        if msg.call_id().as_ref() != Some(&dialog.call_id) {
            return false;
        }
        let tag = msg.from().ok().and_then(|f| f.tag);
        if tag == dialog.remote_tag {
            return false;
        }
        self.respond(leg, tx, msg, 481, None, out);
        true
    }

    /// Early dialogs of the callee INVITE still early (tests).
    #[cfg(test)]
    pub(crate) fn early_dialog_count(&self) -> usize {
        self.early.early_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_round_trip() {
        for name in EarlyMediaPolicy::NAMES {
            assert_eq!(EarlyMediaPolicy::from_name(name).unwrap().name(), name);
        }
        assert_eq!(EarlyMediaPolicy::from_name("Relay"), None);
        assert_eq!(EarlyMediaPolicy::default(), EarlyMediaPolicy::FirstOnly);
    }

    #[test]
    fn forks_are_bounded_and_end_with_the_invite() {
        let mut early = EarlyDialogs::new(EarlyMediaPolicy::FirstOnly);
        for i in 0..100 {
            early.record(1, Some(Bytes::from(format!("t{i}"))), None);
        }
        assert_eq!(early.early_count(), MAX_FORKS);
        early.ended(1);
        assert_eq!(early.early_count(), 0);
        // A new attempt starts afresh.
        early.record(
            2,
            Some(Bytes::from_static(b"a")),
            Some(Bytes::from_static(b"v=0")),
        );
        assert_eq!(early.early_count(), 1);
        assert_eq!(
            early.early_sdp(2, Some(&Bytes::from_static(b"a"))),
            Some(Bytes::from_static(b"v=0"))
        );
        early.answered(2, Some(&Bytes::from_static(b"b")));
        assert_eq!(early.early_count(), 0);
        assert_eq!(early.early_sdp(2, Some(&Bytes::from_static(b"a"))), None);
    }
}
