//! The B2BUA call: two legs (carrier and Teams), each its own dialog, with offer/answer carried
//! across and the media core driven from the SDP. Sans-I/O: a [`Call`] is fed with
//! [`Input`]s and the current time, and drained with [`Call::poll`]; the driver in `app` owns
//! sockets, the transaction layer, timers and the table of calls.
//!
//! ```text
//! let alloc = media.create_session(..)?;                         // driver, before the call
//! let mut call = Call::new_from_carrier(now, setup, invite, server_tx);   // PSTN -> Teams
//! let mut call = Call::new_from_teams(now, setup, invite, server_tx);     // Teams -> PSTN
//! call.handle(now, Input::Response { leg, tx, msg });            // and the other inputs
//! while let Some(out) = call.poll() { .. }                       // see `Output`
//! ```
//!
//! Driver duties, per output:
//! * [`Output::SendRequest`]: parse `msg`, start a client transaction
//!   (`TransactionLayer::send_request`) towards `target`, then report the result at once with
//!   [`Call::on_sent`] (`Some(tx)` or `None` when it could not be sent). Responses and failures
//!   of that transaction come back as [`Input::Response`] / [`Input::TxFailed`] with that `tx`.
//!   The message is complete: it carries our own top Via (fresh branch; sent-by = the tenant
//!   FQDN and TLS port on the Teams leg, our listening address on the carrier leg), Max-Forwards,
//!   Contact and everything else; the driver adds nothing.
//! * [`Output::SendResponse`]: `TransactionLayer::send_response(tx, msg)`.
//! * [`Output::SendAck`]: the ACK for a 2xx lives outside transactions:
//!   `TransactionLayer::send_stateless(dest_of(target), msg)`.
//! * [`Output::Media`]: apply the [`MediaCommand`] on the `MediaHandle`.
//! * [`Output::SetTimer`] / [`Output::CancelTimer`]: one timer per [`TimerKind`] per call; a new
//!   `SetTimer` replaces the old one. When it fires, `handle(now, Input::Timer(kind))`. A stale
//!   timer is harmless: the call checks its own deadline.
//! * [`Output::Record`]: metrics and call logs.
//! * [`Output::Finished`]: drop the call; free its media session (already told via
//!   `MediaCommand::Remove`), limiter slot and table entries. Nothing more comes out.
//!
//! Routing inputs to a call: server transactions and ACKs by [`Call::call_id`] of each leg
//! (the caller leg keeps the caller's Call-ID, the leg the SBC originates gets a fresh random
//! one); client transactions by the `TxId` given to [`Call::on_sent`]. A CANCEL arrives as
//! [`Input::Request`] (its own server transaction) on the leg of the INVITE it cancels.
//! A transfer (REFER from Teams, rows 36-38) gives the Teams leg a new dialog: once it is
//! answered, `call_id(LegId::Teams)` returns the new Call-ID; keep routing the old one to the
//! call too (Microsoft ends the old dialog with its own BYE, which releases only that dialog).
//! An INVITE with Replaces from Microsoft (row 22) is a new Teams dialog for an existing call:
//! feed it as [`Input::Request`] on `LegId::Teams` of the call whose Teams Call-ID its
//! [`ReplacesHeader`] names and route its own Call-ID there too (dispatch does both); the
//! call answers it, BYEs the replaced dialog and `call_id(LegId::Teams)` becomes the new one.
//! Transaction layer events map as: `TuEvent::Response` -> [`Input::Response`];
//! `Timeout` on a client tx -> `TxFailed { reason: Timeout }`; `TransportError` -> `TxFailed
//! { reason: Transport }` (a connect/TLS failure may use `ConnectFailed`; both fail over);
//! `AckTimeout` -> `TxFailed { reason: AckTimeout }`; a `TransportError` on the caller's INVITE
//! server transaction (the `server_tx` given at creation) -> `TxFailed { tx: server_tx, .. }`,
//! which ends the call (the caller is unreachable).
//!
//! Targets: a CANCEL carries the target of the INVITE it cancels (`TeamsProxy(i)` /
//! `Carrier(i)`); send it to the same address/connection that INVITE used (RFC 3261 §9.1).
//! ACKs and BYEs for 2xx use [`Target::Dialog`].
//!
//! Messages are complete wire messages, built from scratch for each leg: nothing of one
//! side's topology (Call-ID, tags, CSeq, Via, Record-Route, Contact, unknown headers) reaches
//! the other; only numbers (as routing decided) and SDP (rewritten) cross. The header policy of
//! each leg lives in `profile.rs` (Teams rules: rows 15-23, 32, 36, 59). Deliberate exceptions,
//! all towards the carrier and rebuilt rather than copied: caller identity and privacy
//! (P-Asserted-Identity/Privacy to trusted trunks only, row 57) and Diversion from
//! History-Info in `identity.rs`; Teams' Q.850 cause in `Reason` on final errors and BYE
//! (row 58, `codes.rs`).

mod codes;
mod dialog;
mod flow;
mod identity;
mod lmo;
mod profile;
mod sdp_glue;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::media::{
    ComfortNoisePlan, InbandDtmfPlan, LegSide, MapDirection, MediaEvent, PayloadMapping, Ringback,
    SessionAllocation, SrtpKeys, TonePlan,
};
use crate::routing::RuleList;
use crate::sdp::{CodecList, IceCredentials};
use crate::sip::Message;
use crate::transaction::TxId;
use crate::transport::TransportKind;

pub use codes::{
    map_final_status, map_final_status_with, BusyCause, ResponsePolicy, StatusClass, StatusRewrite,
};
pub use flow::EarlyMediaPolicy;
pub use flow::ReplacesHeader;
pub use lmo::{LmoHeaders, LocalMedia, UserLocation};
pub use profile::{CarrierProfile, TeamsProfile};

/// Which side of the call a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegId {
    /// Towards the carrier / PSTN trunk (plain SIP, RTP).
    Carrier,
    /// Towards Microsoft's Direct Routing proxies (SIP over TLS, SRTP).
    Teams,
}

impl LegId {
    pub fn other(self) -> LegId {
        match self {
            LegId::Carrier => LegId::Teams,
            LegId::Teams => LegId::Carrier,
        }
    }

    pub fn media_side(self) -> LegSide {
        match self {
            LegId::Carrier => LegSide::Carrier,
            LegId::Teams => LegSide::Teams,
        }
    }

    pub fn label(self) -> &'static str {
        self.media_side().label()
    }
}

/// Who started the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// PSTN -> Teams (the carrier sent the INVITE).
    Inbound,
    /// Teams -> PSTN (Microsoft sent the INVITE).
    Outbound,
}

/// Where a new request goes. The driver turns it into a transport destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `CallSetup::teams.proxies[index]`: resolve its FQDN now (never pin an IP, row 8) and
    /// send over TLS to its port.
    TeamsProxy(usize),
    /// `CallSetup::carrier.targets[index]`.
    Carrier(usize),
    /// In-dialog: the next hop is `uri` (top Route of the leg's route set, else the peer's
    /// Contact), over `transport`. The driver may instead reuse the flow the leg's peer uses.
    Dialog {
        uri: Bytes,
        transport: TransportKind,
    },
}

/// Opaque handle of one request the call asked to send, until its `TxId` is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestToken(pub u64);

/// The call's own timers. One of each per call at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// No response from the current Teams proxy / carrier target within the per-hop timeout:
    /// move to the next one (rows 9, 29).
    HopTimeout,
    /// The called side has not answered within `CallTimers::no_answer`.
    NoAnswer,
    /// We sent a 2xx and no ACK came.
    AckWait,
    /// Teams -> PSTN: the carrier has not progressed in time; answer Teams with a failover
    /// code while Microsoft can still try another SBC (row 29).
    ProgressDeadline,
    /// The call is ending: stop waiting for the last responses (BYE, CANCEL) and finish.
    Teardown,
    /// Session timer (RFC 4028, row 42): we are the refresher on this leg; send the refresh
    /// re-INVITE (half the session interval, or a retry after 491).
    SessionRefresh(LegId),
    /// Session timer: the peer is the refresher on this leg and no refresh came in time.
    SessionExpiry(LegId),
}

/// Why a client transaction (or our 2xx) failed without a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxFailure {
    /// Timer B/F/C: no final response.
    Timeout,
    /// Could not connect (TCP/TLS connect refused, TLS handshake failed, DNS failed).
    ConnectFailed,
    /// The connection broke or a send failed.
    Transport,
    /// No ACK for our 2xx (transaction layer Timer L).
    AckTimeout,
}

/// One input to [`Call::handle`].
// Message is large; inputs are consumed at once, boxing would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Input {
    /// A request on server transaction `tx` of `leg`: in-dialog BYE/re-INVITE/OPTIONS/INFO...,
    /// or a CANCEL for the leg's initial INVITE.
    Request { leg: LegId, tx: TxId, msg: Message },
    /// A response on client transaction `tx` (a 2xx to INVITE may come more than once).
    Response { leg: LegId, tx: TxId, msg: Message },
    /// An ACK for a 2xx we sent on `leg`.
    Ack { leg: LegId, msg: Message },
    /// Client transaction `tx` (or the 2xx we sent, for `AckTimeout`) failed.
    TxFailed {
        leg: LegId,
        tx: TxId,
        reason: TxFailure,
    },
    /// An event of the call's media session (others are ignored).
    Media(MediaEvent),
    /// A timer set with [`Output::SetTimer`] fired.
    Timer(TimerKind),
    /// End the call from outside (an operator, or the end of a drain): BYE with a `Reason`
    /// on every leg that has a dialog, or during setup CANCEL towards the callee and a final
    /// error to the caller.
    Terminate { reason: EndReason },
}

/// A control command for the media core (one `MediaHandle` call each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCommand {
    SetRemote {
        leg: LegSide,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
        rtcp_mux: bool,
    },
    /// Teams leg: `inbound` = the key Teams announced, `outbound` = the key we announced.
    SetSrtp {
        leg: LegSide,
        inbound: Option<SrtpKeys>,
        outbound: Option<SrtpKeys>,
    },
    SetPayloadMap {
        direction: MapDirection,
        mappings: Vec<PayloadMapping>,
    },
    /// Carrier G.711 tones become RFC 4733 events towards Teams (row 48); `None` stops it.
    SetInbandDtmf {
        plan: Option<InbandDtmfPlan>,
    },
    SetHold {
        leg: LegSide,
        on_hold: bool,
    },
    /// Comfort noise from the other leg that `leg` did not negotiate (row 49): made into
    /// G.711 noise or left out; `None` relays CN like any payload.
    SetComfortNoise {
        leg: LegSide,
        plan: Option<ComfortNoisePlan>,
    },
    /// Ringback towards the carrier during a transfer (row 38); `None` stops it.
    SetRingback {
        ringback: Option<Ringback>,
    },
    /// Media-bypass Teams leg: answer STUN checks as ICE-lite with our credentials.
    EnableIceLite {
        leg: LegSide,
        local_ufrag: String,
        local_pwd: String,
        /// The remote agent of the SDP, `None` when it names none (a 18x's forks, or a
        /// Teams endpoint whose SDP has no ICE).
        remote_ufrag: Option<String>,
        /// Only for a 18x (row 52): every forked client may still stream early media under
        /// its own key until the 200. Never for a final answer or offer, ICE or not, so a
        /// key replaced there stops authenticating at once.
        forks_open: bool,
    },
    /// Tear the session down (always just before [`Output::Finished`]).
    Remove,
}

/// Why a call ended (after it was answered) or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    ByeFromCarrier,
    ByeFromTeams,
    CancelledByCaller,
    NoAnswer,
    MediaInactive,
    AckTimeout,
    TransportLost,
    /// Setup failed with a final response (the status sent to the caller is in the record).
    Rejected,
    /// Every Teams proxy / carrier target failed without a usable final response.
    AllTargetsFailed,
    /// Unusable SDP or an internal mismatch.
    BadMedia,
    /// The peer was the session refresher on a leg and no refresh came (RFC 4028 §10).
    SessionExpired,
    /// Our session refresh failed (408, 481 or no response; RFC 4028 §10).
    SessionRefreshFailed,
    /// Ended by an operator (`Input::Terminate`).
    Operator,
    /// Still up when a graceful drain ran out of time (`Input::Terminate`).
    Drained,
}

impl EndReason {
    pub fn label(self) -> &'static str {
        match self {
            EndReason::ByeFromCarrier => "bye_carrier",
            EndReason::ByeFromTeams => "bye_teams",
            EndReason::CancelledByCaller => "cancelled",
            EndReason::NoAnswer => "no_answer",
            EndReason::MediaInactive => "media_inactive",
            EndReason::AckTimeout => "ack_timeout",
            EndReason::TransportLost => "transport_lost",
            EndReason::Rejected => "rejected",
            EndReason::AllTargetsFailed => "all_targets_failed",
            EndReason::BadMedia => "bad_media",
            EndReason::SessionExpired => "session_expired",
            EndReason::SessionRefreshFailed => "session_refresh_failed",
            EndReason::Operator => "operator",
            EndReason::Drained => "drained",
        }
    }

    /// Who ended the call (its call detail record's `ended_by`): `carrier` or `teams` (a BYE,
    /// the caller's CANCEL, the called side's refusal), `sbc` (a timer or failure of ours),
    /// `operator`, or `drained` (still up when a graceful drain ran out of time).
    pub fn ended_by(self, direction: Direction) -> &'static str {
        let (caller, called) = match direction {
            Direction::Inbound => ("carrier", "teams"),
            Direction::Outbound => ("teams", "carrier"),
        };
        match self {
            EndReason::ByeFromCarrier => "carrier",
            EndReason::ByeFromTeams => "teams",
            EndReason::CancelledByCaller => caller,
            EndReason::Rejected => called,
            EndReason::Operator => "operator",
            EndReason::Drained => "drained",
            EndReason::NoAnswer
            | EndReason::MediaInactive
            | EndReason::AckTimeout
            | EndReason::TransportLost
            | EndReason::AllTargetsFailed
            | EndReason::BadMedia
            | EndReason::SessionExpired
            | EndReason::SessionRefreshFailed => "sbc",
        }
    }
}

/// Events for metrics and call logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallRecord {
    /// The call was created (exactly once).
    Attempted { direction: Direction },
    /// A new attempt towards a Teams proxy / carrier target (failover moves count here).
    TargetAttempt { leg: LegId, index: usize },
    /// The called side answered; `setup_time` = answer time - call start.
    Answered { setup_time: Duration },
    /// Setup failed; `status` is the final status sent to the caller.
    Failed {
        status: u16,
        class: StatusClass,
        reason: EndReason,
    },
    /// An answered call ended; `duration` counts from the answer.
    Ended {
        reason: EndReason,
        duration: Duration,
    },
    /// Local Media Optimization (row 61): the Teams leg's media address became the one for
    /// users at `location` (at the start, or on Microsoft's re-INVITE).
    MediaLocation { location: UserLocation },
}

/// One output of the call (see the module docs for what the driver does with each).
#[derive(Debug, Clone)]
pub enum Output {
    SendRequest {
        leg: LegId,
        token: RequestToken,
        target: Target,
        msg: Bytes,
    },
    SendResponse {
        leg: LegId,
        tx: TxId,
        msg: Bytes,
    },
    SendAck {
        leg: LegId,
        target: Target,
        msg: Bytes,
    },
    Media(MediaCommand),
    SetTimer {
        kind: TimerKind,
        at: Instant,
    },
    CancelTimer {
        kind: TimerKind,
    },
    Record(CallRecord),
    Finished,
}

/// One Microsoft proxy (`sip.pstnhub.microsoft.com`, `sip2..`, `sip3..`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTarget {
    pub fqdn: String,
    /// Default 5061.
    pub port: u16,
}

/// The settings of the carrier trunk the carrier leg uses: the calling trunk on PSTN -> Teams
/// calls; on Teams -> PSTN calls the trunk of the hop being tried, and from its answer on the
/// trunk that answered (each hop of a failover brings its own, see [`CarrierTarget`]).
#[derive(Debug, Clone)]
pub struct CarrierTrunkSettings {
    /// Encoding names this trunk may carry (row 47): the offer each hop gets is filtered to
    /// them.
    pub codecs: CodecList,
    /// Which of Microsoft's 18x reach the carrier (row 27). Only PSTN -> Teams calls relay
    /// Microsoft's 18x to a trunk; on Teams -> PSTN calls every 18x goes to Microsoft, which
    /// handles each one, whatever the trunk's policy.
    pub early_media: EarlyMediaPolicy,
    /// Final-status tables per direction and the Q.850 rule for Teams' 486 (row 58).
    pub responses: ResponsePolicy,
    /// The trunk negotiated no telephone-event: offer it to Teams anyway and turn the
    /// carrier's in-band G.711 tones into RFC 4733 events (row 48).
    pub inband_dtmf: bool,
    /// The trunk negotiated no CN: offer it to Teams anyway and turn Teams' CN into G.711
    /// noise for the trunk, filling the silence after it (row 49).
    pub comfort_noise: bool,
    /// The tone the carrier hears while a transfer's target rings without early media
    /// (row 38); `None`: silence.
    pub ringback: Option<TonePlan>,
    /// Trusted with identity (RFC 3325): P-Asserted-Identity and Teams' Privacy values cross.
    /// When false and Teams asked for privacy, no PAI is sent and From is anonymous (row 57).
    pub trusted: bool,
    /// Turn Microsoft's History-Info into Diversion headers (RFC 5806, doc 2.9; see
    /// `identity.rs`).
    pub diversion_from_history_info: bool,
    /// The trunk's `from_teams` rules for calling numbers: a Diversion number is a number of
    /// the calling side and goes through them like the caller's own (routing applied them to
    /// [`CallNumbers::caller`] already).
    pub calling_number_rules: RuleList,
}

impl Default for CarrierTrunkSettings {
    /// A trunk with nothing configured (the config defaults).
    fn default() -> Self {
        CarrierTrunkSettings {
            codecs: CodecList::carrier_default(),
            early_media: EarlyMediaPolicy::default(),
            responses: ResponsePolicy::default(),
            inband_dtmf: true,
            comfort_noise: true,
            ringback: Some(TonePlan::ETSI),
            trusted: false,
            diversion_from_history_info: false,
            calling_number_rules: RuleList::default(),
        }
    }
}

/// One carrier next hop (a trunk's address), as routing decided, with everything of its trunk:
/// a failover hop is tried with its own trunk's settings, never the first trunk's.
#[derive(Debug, Clone)]
pub struct CarrierTarget {
    /// Host name or IP literal (IPv6 in brackets), used in the Request-URI.
    pub host: String,
    pub port: u16,
    pub transport: TransportKind,
    /// Our SIP address for this hop's transport (Contact and Via sent-by).
    pub local_host: String,
    pub local_port: u16,
    /// The hop's trunk: its codecs, in-band DTMF, identity, Diversion and response rules.
    pub trunk: CarrierTrunkSettings,
    /// The numbers as this hop's trunk wants them (its `from_teams` translation rules).
    pub numbers: CallNumbers,
}

/// The Teams leg of one call.
#[derive(Debug, Clone)]
pub struct TeamsLegSetup {
    /// The tenant's FQDN (customer subdomain): Contact host of every message to Microsoft on
    /// this call and the Via sent-by host (rows 15, 32).
    pub tenant_fqdn: String,
    /// Our TLS listening port (Contact port, row 16).
    pub sip_port: u16,
    /// Proxies in the order to try (PSTN -> Teams); unused on Teams -> PSTN calls.
    pub proxies: Vec<ProxyTarget>,
    pub codecs: CodecList,
    /// `Some` on a media-bypass trunk (ICE-lite answers on the Teams leg).
    pub ice: Option<IceCredentials>,
    /// Final codes that let Microsoft try another SBC (row 30); default `[408, 503, 504]`.
    pub failover_response_codes: Vec<u16>,
    /// Copy the carrier's P-Asserted-Identity into From towards Teams (row 20).
    pub forward_pai: bool,
    /// Local Media Optimization (row 61): our Teams-leg media address follows where
    /// Microsoft says the user is. `None`: always the allocation's address.
    pub local_media: Option<LocalMedia>,
}

/// The carrier leg of one call.
#[derive(Debug, Clone)]
pub struct CarrierLegSetup {
    /// Our SIP address towards the carrier (Contact and Via sent-by): host and port.
    pub local_host: String,
    pub local_port: u16,
    pub transport: TransportKind,
    /// Next hops in the order to try (Teams -> PSTN); unused on PSTN -> Teams calls. Each
    /// attempt takes over its hop's transport, local address, trunk settings and numbers.
    pub targets: Vec<CarrierTarget>,
    /// The calling trunk's settings (PSTN -> Teams), or the first hop's (Teams -> PSTN).
    pub trunk: CarrierTrunkSettings,
    pub offer_rtcp_mux: bool,
}

/// Numbers as routing decided them (translation already applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallNumbers {
    /// Caller, as it goes into From on the outgoing leg (`+E164` towards Teams, row 20).
    pub caller: String,
    /// Callee, as it goes into the Request-URI/To on the outgoing leg (`+E164` towards Teams).
    pub callee: String,
}

/// Timers of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallTimers {
    /// Per-hop INVITE timeout before trying the next Teams proxy / carrier target, when no
    /// response at all (not even 100) arrived. Default 4 s.
    pub hop_timeout: Duration,
    /// Give up ringing after this long (caller gets 480). Default 180 s.
    pub no_answer: Duration,
    /// Wait this long for the ACK to our 2xx before ending the call. Default 32 s.
    pub ack_wait: Duration,
    /// Teams -> PSTN: if the carrier has not progressed (18x) by then, stop waiting and
    /// answer Teams with a failover code so Microsoft can try another SBC in time (row 29).
    /// Default 8 s (below Microsoft's 10 s `FailoverTimeSeconds`).
    pub progress_deadline: Duration,
    /// Session interval we offer in our INVITEs (`Session-Expires`, RFC 4028; row 42).
    /// Default 1800 s; config keeps it at 1800 s or more.
    pub session_expires: Duration,
}

impl Default for CallTimers {
    fn default() -> Self {
        CallTimers {
            hop_timeout: Duration::from_secs(4),
            no_answer: Duration::from_secs(180),
            ack_wait: Duration::from_secs(32),
            progress_deadline: Duration::from_secs(8),
            session_expires: Duration::from_secs(1800),
        }
    }
}

/// Everything a call needs, decided before it starts (routing, media allocation, config).
#[derive(Debug, Clone)]
pub struct CallSetup {
    /// The media session the driver allocated for this call.
    pub media: SessionAllocation,
    pub teams: TeamsLegSetup,
    pub carrier: CarrierLegSetup,
    pub numbers: CallNumbers,
    /// Header policy towards Microsoft (X-MS-SBC value, Allow, ...).
    pub teams_profile: TeamsProfile,
    pub timers: CallTimers,
}

/// Where a call stands (the admin API's view of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSummary {
    /// `calling`, `ringing` (a 18x went to the caller), `answered` (2xx sent, no ACK yet),
    /// `confirmed`, `ending`, `finished`.
    pub state: &'static str,
    /// Numbers as they go out on the callee's leg (after translation).
    pub caller: String,
    pub callee: String,
    pub started: Instant,
    pub answered: Option<Instant>,
}

/// A B2BUA call. Create with [`Call::new_from_carrier`] or [`Call::new_from_teams`].
pub struct Call {
    state: flow::State,
    outputs: VecDeque<Output>,
}

impl Call {
    /// PSTN -> Teams: `invite` arrived from the carrier on server transaction `server_tx`
    /// (the transaction layer has already sent 100 Trying). Sends the INVITE (always with an
    /// SDP offer, row 21) to `setup.teams.proxies[0]`.
    pub fn new_from_carrier(
        now: Instant,
        setup: CallSetup,
        invite: Message,
        server_tx: TxId,
    ) -> Call {
        let mut call = Call {
            state: flow::State::new(now, setup, Direction::Inbound, &invite, server_tx),
            outputs: VecDeque::new(),
        };
        call.state.start(now, invite, &mut call.outputs);
        call
    }

    /// Teams -> PSTN: `invite` arrived from Microsoft on `server_tx` (100 already sent).
    /// Sends the INVITE to `setup.carrier.targets[0]`.
    pub fn new_from_teams(
        now: Instant,
        setup: CallSetup,
        invite: Message,
        server_tx: TxId,
    ) -> Call {
        let mut call = Call {
            state: flow::State::new(now, setup, Direction::Outbound, &invite, server_tx),
            outputs: VecDeque::new(),
        };
        call.state.start(now, invite, &mut call.outputs);
        call
    }

    /// Feed one input.
    pub fn handle(&mut self, now: Instant, input: Input) {
        self.state.handle(now, input, &mut self.outputs);
    }

    /// The driver's answer to an [`Output::SendRequest`]: the client transaction it started,
    /// or `None` when the request could not be sent (treated as a transport failure).
    pub fn on_sent(&mut self, now: Instant, token: RequestToken, tx: Option<TxId>) {
        self.state.on_sent(now, token, tx, &mut self.outputs);
    }

    /// Next output, `None` when drained.
    pub fn poll(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The Call-ID of `leg`'s dialog, for routing in-dialog requests and ACKs to this call.
    pub fn call_id(&self, leg: LegId) -> &Bytes {
        self.state.call_id(leg)
    }

    pub fn direction(&self) -> Direction {
        self.state.direction()
    }

    /// True once [`Output::Finished`] was emitted.
    pub fn is_finished(&self) -> bool {
        self.state.is_finished()
    }

    /// Where the call stands, for the admin API.
    pub fn summary(&self) -> CallSummary {
        self.state.summary()
    }
}
