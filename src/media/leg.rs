//! Worker-owned state of a media leg and of a session's pair of legs.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

use crate::media::cipher::SrtpStream;
use crate::media::dtmf_convert::DtmfConverter;
use crate::media::ice::{IceCredentials, UfragId};
use crate::media::inactivity::InactivityTracker;
use crate::media::metrics::Direction;
use crate::media::playout::{ComfortNoisePlan, Playout};
use crate::media::rtcp::LegReports;
use crate::media::rtp::PayloadMap;
use crate::media::settings::LatchingMode;
use crate::media::stats::{LegCounters, ReceiveStats, SentStream};

/// The two legs of a media session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegSide {
    /// Towards the carrier / PSTN trunk: plain RTP, separate RTCP port unless muxed.
    Carrier,
    /// Towards Microsoft: SRTP, rtcp-mux, optionally ICE-lite.
    Teams,
}

impl LegSide {
    pub fn other(self) -> Self {
        match self {
            LegSide::Carrier => LegSide::Teams,
            LegSide::Teams => LegSide::Carrier,
        }
    }

    /// Direction of packets that arrive on this leg.
    pub fn inbound_direction(self) -> Direction {
        match self {
            LegSide::Carrier => Direction::CarrierToTeams,
            LegSide::Teams => Direction::TeamsToCarrier,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            LegSide::Carrier => "carrier",
            LegSide::Teams => "teams",
        }
    }
}

/// Which local socket of a leg a packet came in on or goes out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketRole {
    Rtp,
    /// The separate RTCP socket (RTP port + 1), carrier leg only.
    Rtcp,
}

/// Nominations remembered per remote agent while several agents may check one leg.
const MAX_AGENT_NOMINATIONS: usize = 4;
/// Inbound SRTP keys of earlier forks kept while the answering fork is not known.
const MAX_EARLY_INBOUND_KEYS: usize = 3;
/// A peer's restarted SRTP stream takes over only after the stream it replaces has been
/// silent this long, so replayed packets cannot take over a stream that is still flowing.
pub const RESTART_QUIET_MILLIS: u64 = 500;

/// ICE-lite state of a leg.
#[derive(Debug)]
pub struct IceLeg {
    pub credentials: IceCredentials,
    /// The pair the controlling agent nominated (USE-CANDIDATE); media goes there.
    pub nominated: Option<SocketAddr>,
    /// The remote agent (ufrag) whose check nominated `nominated`.
    pub nominated_by: Option<UfragId>,
    /// The latest pair each remote agent nominated, oldest first. With forking (row 52) every
    /// Teams client that got our offer checks and nominates before the 200, and the one whose
    /// 200 wins does not nominate again (regular nomination happens once).
    agent_nominations: [Option<(UfragId, SocketAddr)>; MAX_AGENT_NOMINATIONS],
    /// Highest PRIORITY among answered checks before nomination: media goes to that source
    /// until nomination (or until authentic media arrives from somewhere).
    pub best_check_priority: Option<u32>,
    /// Before nomination media follows the first source that streams authentic media.
    pub media_latched: bool,
    /// Teams' SDP came in a 18x: forked clients may each stream early media under their
    /// own keys until the 200 (row 52). Not the same as an unknown remote ufrag: a final
    /// answer or offer without ICE names no agent either, yet its predecessors' keys must
    /// stop authenticating at once.
    pub forks_open: bool,
}

impl IceLeg {
    pub fn new(credentials: IceCredentials) -> Self {
        Self {
            credentials,
            nominated: None,
            nominated_by: None,
            agent_nominations: [None; MAX_AGENT_NOMINATIONS],
            best_check_priority: None,
            media_latched: false,
            forks_open: false,
        }
    }

    /// Agent `by` nominated `pair`. Returns true when media moves to a new pair.
    pub fn nominate(&mut self, pair: SocketAddr, by: UfragId) -> bool {
        let slot = self
            .agent_nominations
            .iter()
            .position(|n| n.is_none_or(|(agent, _)| agent == by))
            .unwrap_or_else(|| {
                self.agent_nominations.rotate_left(1);
                MAX_AGENT_NOMINATIONS - 1
            });
        self.agent_nominations[slot] = Some((by, pair));
        self.nominated_by = Some(by);
        let moved = self.nominated != Some(pair);
        self.nominated = Some(pair);
        moved
    }

    /// The pair agent `agent` nominated last, if it did.
    fn nomination_of(&self, agent: UfragId) -> Option<SocketAddr> {
        self.agent_nominations
            .iter()
            .flatten()
            .find(|(by, _)| *by == agent)
            .map(|&(_, pair)| pair)
    }
}

/// A strict latch window that sees this many packets without latching closes: media is
/// then accepted only from the remote address as it stands.
pub const LATCH_WINDOW_PACKETS: u32 = 50;
/// ... and so does one this long after its first packet.
pub const LATCH_WINDOW_MILLIS: u64 = 2_000;

/// Where symmetric RTP may still move the leg's remote address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LatchWindow {
    /// Opened by a new offer/answer (`set_remote`): `packets` seen so far, the first at
    /// `since_millis`.
    Open {
        packets: u32,
        since_millis: Option<u64>,
    },
    /// Strict from here until the next offer/answer.
    Closed,
}

/// Symmetric RTP and RTCP state of a leg whose peer may sit behind NAT (the carrier leg).
/// Only sources the leg allows reach it (see [`LegState::source_allowed`]).
#[derive(Debug, Clone, Copy)]
pub struct Latch {
    pub mode: LatchingMode,
    candidate: Option<SocketAddr>,
    candidate_count: u32,
    pub latched: Option<SocketAddr>,
    window: LatchWindow,
    /// The RTCP source taken in strict mode since the last offer/answer.
    rtcp_latched: Option<SocketAddr>,
}

/// Outcome of presenting a valid packet's source to the latch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatchVerdict {
    Accept,
    /// Accept, and the leg's remote address is now this source.
    Moved(SocketAddr),
    Reject,
}

impl Latch {
    pub fn new(mode: LatchingMode) -> Self {
        Self {
            mode,
            candidate: None,
            candidate_count: 0,
            latched: None,
            window: LatchWindow::Open {
                packets: 0,
                since_millis: None,
            },
            rtcp_latched: None,
        }
    }

    /// A new offer/answer: forget the latch and open a new window.
    pub fn reset(&mut self) {
        *self = Self::new(self.mode);
    }

    /// Presents the source of an RTP packet that passed validation (and SRTP
    /// authentication) at `now_millis`; `remote` is where the leg sends media now.
    pub fn observe(
        &mut self,
        from: SocketAddr,
        now_millis: u64,
        remote: Option<SocketAddr>,
    ) -> LatchVerdict {
        let (after, strict) = match self.mode {
            LatchingMode::Off => return LatchVerdict::Accept,
            LatchingMode::Learn { after_packets } => (after_packets.max(1), false),
            LatchingMode::Strict { after_packets } => (after_packets.max(1), true),
        };
        if self.latched == Some(from) {
            self.candidate = None;
            self.candidate_count = 0;
            return LatchVerdict::Accept;
        }
        if strict {
            let LatchWindow::Open {
                packets,
                since_millis,
            } = &mut self.window
            else {
                return self.strict_verdict(from, remote);
            };
            *packets += 1;
            let since = *since_millis.get_or_insert(now_millis);
            if *packets >= LATCH_WINDOW_PACKETS
                || now_millis.saturating_sub(since) >= LATCH_WINDOW_MILLIS
            {
                // Closed without a latch from this source: strict to what we have.
                self.window = LatchWindow::Closed;
                return self.strict_verdict(from, remote);
            }
        }
        if self.candidate == Some(from) {
            self.candidate_count += 1;
        } else {
            self.candidate = Some(from);
            self.candidate_count = 1;
        }
        if self.candidate_count >= after {
            self.latched = Some(from);
            self.candidate = None;
            self.candidate_count = 0;
            if strict {
                self.window = LatchWindow::Closed;
            }
            return LatchVerdict::Moved(from);
        }
        LatchVerdict::Accept
    }

    /// Once the strict window has closed only the latched source (or, without a latch, the
    /// remote address) is accepted.
    fn strict_verdict(&self, from: SocketAddr, remote: Option<SocketAddr>) -> LatchVerdict {
        if self.latched.or(remote) == Some(from) {
            LatchVerdict::Accept
        } else {
            LatchVerdict::Reject
        }
    }

    /// Presents the source of an RTCP packet; `rtp_remote` is where the leg sends RTP now.
    /// `Moved` means RTCP is answered there from now on (symmetric RTCP).
    /// * `Off`: accepted, RTCP goes where SDP says.
    /// * `Learn`: accepted, and every packet moves the RTCP destination.
    /// * `Strict`: the first RTCP packet after an offer/answer from the host media is
    ///   exchanged with is taken and moves the RTCP destination; from then on only that
    ///   source is accepted, until the next offer/answer.
    pub fn observe_rtcp(
        &mut self,
        from: SocketAddr,
        rtp_remote: Option<SocketAddr>,
    ) -> LatchVerdict {
        match self.mode {
            LatchingMode::Off => LatchVerdict::Accept,
            LatchingMode::Learn { .. } => LatchVerdict::Moved(from),
            LatchingMode::Strict { .. } => match self.rtcp_latched {
                Some(latched) if latched == from => LatchVerdict::Accept,
                Some(_) => LatchVerdict::Reject,
                None => {
                    let media_host = self.latched.or(rtp_remote).map(|a| a.ip());
                    if media_host.is_some_and(|host| same_host(host, from.ip())) {
                        self.rtcp_latched = Some(from);
                        LatchVerdict::Moved(from)
                    } else {
                        LatchVerdict::Reject
                    }
                }
            },
        }
    }
}

/// The same host, also when a dual-stack socket reports an IPv4 peer as `::ffff:a.b.c.d`.
fn same_host(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// The context in `slot` when it was built from `next`'s keys.
fn take_if_keys(slot: &mut Option<Box<SrtpStream>>, next: &SrtpStream) -> Option<Box<SrtpStream>> {
    slot.take_if(|stream| stream.keys() == next.keys())
}

/// Something the control plane should hear about, left by the forward step for the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegNotice {
    Latched(SocketAddr),
    IceNominated(SocketAddr),
}

/// Everything the forward step needs about one leg. Owned by exactly one worker.
pub struct LegState {
    pub side: LegSide,
    pub remote_rtp: Option<SocketAddr>,
    /// The RTP address the peer's SDP names; `remote_rtp` may differ (latching, ICE).
    signalled_rtp: Option<SocketAddr>,
    /// The peer's `a=rtcp` address, when its SDP names one.
    signalled_rtcp: Option<SocketAddr>,
    /// Networks the peer may send media from besides the hosts its SDP names: the carrier
    /// trunk's source networks. Only the carrier leg checks sources; media from anywhere
    /// else is dropped before it costs anything (RTP Bleed).
    allowed_sources: Box<[IpNet]>,
    /// Where RTCP goes when the remote does not mux; `None` means RTP port + 1.
    pub remote_rtcp: Option<SocketAddr>,
    pub rtcp_mux: bool,
    /// The leg has its own local RTCP socket (carrier leg).
    pub has_rtcp_socket: bool,
    pub latch: Latch,
    /// Decrypts what arrives on this leg.
    pub srtp_in: Option<SrtpStream>,
    /// Inbound keys `srtp_in` replaced while the peer's ICE agent was open (forked Teams
    /// clients before the 200, each with its own SDES key), newest last: early media of an
    /// earlier fork still authenticates (row 52). Emptied once the answer names the agent.
    /// Boxed: a context is large and this is empty on almost every leg.
    early_srtp_in: [Option<Box<SrtpStream>>; MAX_EARLY_INBOUND_KEYS],
    /// The inbound context `srtp_in` replaced last (outside forking), brought back if its
    /// keys come back (a transfer that failed): never a second context for the same key.
    retired_srtp_in: Option<Box<SrtpStream>>,
    /// Encrypts what leaves on this leg.
    pub srtp_out: Option<SrtpStream>,
    /// The outbound context `srtp_out` replaced last, likewise: a key is never used by a
    /// second context, whose rollover counter and SRTCP index would start again at 0.
    retired_srtp_out: Option<Box<SrtpStream>>,
    pub ice: Option<IceLeg>,
    /// Payload rewrite and clock rates for packets arriving on this leg.
    pub inbound_payloads: PayloadMap,
    /// Carrier leg without telephone-event: its G.711 tones become RFC 4733 events (row 48).
    pub inband_dtmf: Option<DtmfConverter>,
    pub receive_stats: ReceiveStats,
    /// The stream the SBC sends on this leg: SR counts and renumbering (rows 46, 49).
    pub sent: SentStream,
    /// The SBC's own RTCP on this leg (row 46).
    pub reports: LegReports,
    /// Audio the SBC generates towards this leg: ringback, comfort noise (rows 38, 49).
    pub playout: Playout,
    /// Comfort noise from the other leg that this leg did not negotiate (row 49).
    pub comfort_noise: Option<ComfortNoisePlan>,
    pub inactivity: InactivityTracker,
    pub on_hold: bool,
    pub counters: Arc<LegCounters>,
    pub notice: Option<LegNotice>,
}

impl LegState {
    pub fn new(
        side: LegSide,
        latching: LatchingMode,
        has_rtcp_socket: bool,
        counters: Arc<LegCounters>,
        now_millis: u64,
    ) -> Self {
        Self {
            side,
            remote_rtp: None,
            signalled_rtp: None,
            signalled_rtcp: None,
            allowed_sources: Box::default(),
            remote_rtcp: None,
            rtcp_mux: !has_rtcp_socket,
            has_rtcp_socket,
            latch: Latch::new(latching),
            srtp_in: None,
            early_srtp_in: Default::default(),
            retired_srtp_in: None,
            srtp_out: None,
            retired_srtp_out: None,
            ice: None,
            inbound_payloads: PayloadMap::default(),
            inband_dtmf: None,
            receive_stats: ReceiveStats::default(),
            sent: SentStream::default(),
            // Control path (session creation): a random seed per leg for its SSRC, CNAME,
            // report timing and noise.
            reports: LegReports::new(rand::random()),
            playout: Playout::new(rand::random()),
            comfort_noise: None,
            inactivity: InactivityTracker::new(now_millis),
            on_hold: false,
            counters,
            notice: None,
        }
    }

    /// Applies a signalled remote address. Each offer/answer restarts latching: the first
    /// packets after it may move the remote address (a NAT in front of the peer), then the
    /// latch is strict again (see [`Latch`]).
    /// On an ICE-lite leg a nominated pair outranks SDP: media stays on it (RFC 8445; the
    /// controlling agent's re-INVITE may still carry the default candidate).
    pub fn set_remote(&mut self, rtp: SocketAddr, rtcp: Option<SocketAddr>, rtcp_mux: bool) {
        self.latch.reset();
        let nominated = self.ice.as_ref().and_then(|ice| ice.nominated);
        self.signalled_rtp = Some(rtp);
        self.signalled_rtcp = rtcp;
        self.remote_rtp = Some(nominated.unwrap_or(rtp));
        self.remote_rtcp = rtcp;
        self.rtcp_mux = rtcp_mux;
    }

    /// The networks (besides the hosts its SDP names) the peer may send media from.
    pub fn set_allowed_sources(&mut self, networks: &[IpNet]) {
        self.allowed_sources = networks.into();
    }

    /// Whether media from `from` may reach this leg at all: on the carrier leg only from a
    /// host the peer's SDP names or from the trunk's networks; the Teams leg admits only what
    /// authenticates (SRTP, STUN checks), from wherever a Teams endpoint is.
    pub fn source_allowed(&self, from: SocketAddr) -> bool {
        if self.side == LegSide::Teams {
            return true;
        }
        let ip = from.ip();
        let named = |a: Option<SocketAddr>| a.is_some_and(|a| a.ip() == ip);
        if named(self.signalled_rtp) || named(self.signalled_rtcp) {
            return true;
        }
        let host = ip.to_canonical();
        let named = |a: Option<SocketAddr>| a.is_some_and(|a| a.ip().to_canonical() == host);
        named(self.signalled_rtp)
            || named(self.signalled_rtcp)
            || self.allowed_sources.iter().any(|net| net.contains(&host))
    }

    /// Installs SRTP contexts. A key never gets a second context (which would restart its
    /// rollover counter and SRTCP index at 0 and reuse keystream): a direction whose keys
    /// are those of its current context keeps that context, and one whose keys are those of
    /// the context it replaced gets that one back. A new outbound context continues the
    /// SRTCP index of the one it replaces. While forks are open (Teams' SDP came in a 18x and
    /// any forked client may stream early media, each under its own key) the inbound
    /// contexts replaced are kept for [`LegState::unprotect_early_rtp`]; otherwise they are
    /// dropped.
    pub fn set_srtp(&mut self, inbound: Option<SrtpStream>, outbound: Option<SrtpStream>) {
        self.set_srtp_in(inbound);
        self.set_srtp_out(outbound);
    }

    fn set_srtp_in(&mut self, inbound: Option<SrtpStream>) {
        let agent_open = self.ice.as_ref().is_some_and(|ice| ice.forks_open);
        if let (Some(current), Some(next)) = (&self.srtp_in, &inbound) {
            if current.keys() == next.keys() {
                if !agent_open {
                    self.early_srtp_in = Default::default();
                }
                return;
            }
        }
        let inbound = inbound.map(|next| {
            // Command handling, off the packet path: moving boxes around is fine here.
            let earlier = self
                .early_srtp_in
                .iter_mut()
                .find(|slot| slot.as_ref().is_some_and(|s| s.keys() == next.keys()))
                .and_then(Option::take)
                .or_else(|| take_if_keys(&mut self.retired_srtp_in, &next));
            earlier.map_or(next, |stream| *stream)
        });
        let replaced = std::mem::replace(&mut self.srtp_in, inbound);
        if agent_open {
            if let Some(earlier) = replaced {
                let slot = self
                    .early_srtp_in
                    .iter()
                    .position(Option::is_none)
                    .unwrap_or_else(|| {
                        self.early_srtp_in.rotate_left(1);
                        MAX_EARLY_INBOUND_KEYS - 1
                    });
                self.early_srtp_in[slot] = Some(Box::new(earlier));
            }
        } else {
            self.early_srtp_in = Default::default();
            if let Some(replaced) = replaced {
                self.retired_srtp_in = Some(Box::new(replaced));
            }
        }
    }

    fn set_srtp_out(&mut self, outbound: Option<SrtpStream>) {
        let Some(next) = outbound else {
            if let Some(replaced) = self.srtp_out.take() {
                self.retired_srtp_out = Some(Box::new(replaced));
            }
            return;
        };
        if self
            .srtp_out
            .as_ref()
            .is_some_and(|current| current.keys() == next.keys())
        {
            return;
        }
        let mut chosen = take_if_keys(&mut self.retired_srtp_out, &next).map_or(next, |s| *s);
        if let Some(replaced) = self.srtp_out.take() {
            chosen.continue_srtcp_index_of(&replaced);
            self.retired_srtp_out = Some(Box::new(replaced));
        }
        self.srtp_out = Some(chosen);
    }

    /// Authenticates and decrypts an SRTP packet `srtp_in` rejected with the inbound keys of
    /// earlier forks, newest first; `None` when none of them takes it. (A failed check
    /// leaves the buffer unchanged, so each key sees the packet as received.)
    pub fn unprotect_early_rtp(&mut self, buf: &mut [u8], len: usize) -> Option<usize> {
        self.early_srtp_in
            .iter_mut()
            .rev()
            .flatten()
            .find_map(|stream| stream.unprotect_rtp(buf, len).ok())
    }

    /// Only SRTP may arrive on or leave this leg (the Teams leg): before its keys are
    /// installed nothing passes, never plain RTP.
    pub fn requires_srtp(&self) -> bool {
        self.side == LegSide::Teams
    }

    /// An SRTP packet `srtp_in` refused may start a stream the peer restarted under the
    /// same key (see `SrtpStream::unprotect_restarted_rtp`); the stream it replaces counts as
    /// silent once nothing valid arrived on the leg for [`RESTART_QUIET_MILLIS`].
    pub fn unprotect_restarted_rtp(
        &mut self,
        buf: &mut [u8],
        len: usize,
        now_millis: u64,
    ) -> Option<usize> {
        let silent_for = now_millis.saturating_sub(self.inactivity.last_activity_millis());
        self.srtp_in
            .as_mut()?
            .unprotect_restarted_rtp(buf, len, silent_for >= RESTART_QUIET_MILLIS)
    }

    /// [`LegState::unprotect_early_rtp`] for SRTCP.
    pub fn unprotect_early_rtcp(&mut self, buf: &mut [u8], len: usize) -> Option<usize> {
        self.early_srtp_in
            .iter_mut()
            .rev()
            .flatten()
            .find_map(|stream| stream.unprotect_rtcp(buf, len).ok())
    }

    /// Turns ICE-lite on (or updates its credentials). A nomination belongs to the remote
    /// agent that made it and to our current credentials (rows 52, 53):
    /// * no remote ufrag (Teams' SDP came in a 18x: every forked client that got our offer
    ///   may check and nominate until the 200; or an SDP without ICE): every nomination is
    ///   kept;
    /// * the remote ufrag of the 200 (the fork that won) or of a later offer: only that
    ///   agent's own nomination is kept, another fork's pair no longer gets media;
    /// * a new local ufrag (our ICE restart) or a new remote one (the peer's): nothing is kept.
    ///
    /// Without a kept nomination media goes to the signalled address and the pre-nomination
    /// rules start over (best-priority check, first authentic media source).
    ///
    /// `forks_open` (a 18x only) keeps the inbound keys of earlier forks; otherwise they are
    /// dropped, whether or not the SDP names an agent.
    pub fn enable_ice(&mut self, credentials: IceCredentials, forks_open: bool) {
        let previous = self.ice.take();
        let remote_agent = credentials
            .remote_ufrag
            .as_deref()
            .map(|ufrag| UfragId::of(ufrag.as_bytes()));
        let mut next = IceLeg::new(credentials);
        next.forks_open = forks_open;
        let had_media_choice = previous.as_ref().is_some_and(|ice| {
            ice.nominated.is_some() || ice.media_latched || ice.best_check_priority.is_some()
        });
        let same_local = |ice: &IceLeg| ice.credentials.local_ufrag == next.credentials.local_ufrag;
        if let Some(previous) = previous.filter(same_local) {
            match remote_agent {
                None => {
                    next.nominated = previous.nominated;
                    next.nominated_by = previous.nominated_by;
                    next.agent_nominations = previous.agent_nominations;
                }
                Some(agent) => {
                    if let Some(pair) = previous.nomination_of(agent) {
                        next.nominate(pair, agent);
                    }
                }
            }
        }
        if !forks_open {
            // The answer (or a later offer) is in: other forks' keys no longer authenticate
            // anything.
            self.early_srtp_in = Default::default();
        }
        next.media_latched = next.nominated.is_some();
        if let Some(pair) = next.nominated {
            self.remote_rtp = Some(pair);
        } else if had_media_choice {
            if let Some(signalled) = self.signalled_rtp {
                self.remote_rtp = Some(signalled);
            }
        }
        self.ice = Some(next);
    }

    /// Where RTCP for this leg's remote goes, and from which local socket.
    pub fn rtcp_destination(&self) -> Option<(SocketRole, SocketAddr)> {
        let rtp = self.remote_rtp?;
        if self.rtcp_mux {
            return Some((SocketRole::Rtp, rtp));
        }
        let to = self.remote_rtcp.unwrap_or_else(|| {
            let mut a = rtp;
            a.set_port(rtp.port().wrapping_add(1));
            a
        });
        let role = if self.has_rtcp_socket {
            SocketRole::Rtcp
        } else {
            SocketRole::Rtp
        };
        Some((role, to))
    }
}

/// The two legs of a session, as the forward step sees them.
pub struct LegPair {
    pub carrier: LegState,
    pub teams: LegState,
}

impl LegPair {
    pub fn leg(&self, side: LegSide) -> &LegState {
        match side {
            LegSide::Carrier => &self.carrier,
            LegSide::Teams => &self.teams,
        }
    }

    pub fn leg_mut(&mut self, side: LegSide) -> &mut LegState {
        match side {
            LegSide::Carrier => &mut self.carrier,
            LegSide::Teams => &mut self.teams,
        }
    }

    /// (ingress, egress) borrowed mutably at once.
    pub fn split(&mut self, ingress: LegSide) -> (&mut LegState, &mut LegState) {
        match ingress {
            LegSide::Carrier => (&mut self.carrier, &mut self.teams),
            LegSide::Teams => (&mut self.teams, &mut self.carrier),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn host(last: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, last], port))
    }

    /// `count` packets from `from` at `now_millis`, the verdict of each.
    fn packets(l: &mut Latch, from: SocketAddr, count: usize, now: u64) -> Vec<LatchVerdict> {
        (0..count).map(|_| l.observe(from, now, None)).collect()
    }

    #[test]
    fn learn_moves_after_n_packets_and_can_move_again() {
        let mut l = Latch::new(LatchingMode::Learn { after_packets: 3 });
        let remote = Some(addr(9));
        assert_eq!(l.observe(addr(1), 0, remote), LatchVerdict::Accept);
        assert_eq!(l.observe(addr(1), 0, remote), LatchVerdict::Accept);
        assert_eq!(l.observe(addr(1), 0, remote), LatchVerdict::Moved(addr(1)));
        assert_eq!(l.observe(addr(1), 0, remote), LatchVerdict::Accept);
        assert_eq!(l.observe(addr(2), 0, remote), LatchVerdict::Accept);
        assert_eq!(l.observe(addr(1), 0, remote), LatchVerdict::Accept);
        assert_eq!(l.observe(addr(2), 0, remote), LatchVerdict::Accept);
        assert_eq!(l.observe(addr(2), 0, remote), LatchVerdict::Accept);
        // Long after the offer/answer: learn still moves (its documented risk).
        assert_eq!(
            l.observe(addr(2), 3_600_000, remote),
            LatchVerdict::Moved(addr(2))
        );
        assert_eq!(
            l.observe_rtcp(addr(7), remote),
            LatchVerdict::Moved(addr(7))
        );
    }

    /// RTP Bleed: the first packets after an offer/answer latch (a NAT in front of the
    /// carrier), after that the latch never moves: three packets from another source later
    /// in the call are refused, not followed.
    #[test]
    fn rtp_bleed_strict_latch_moves_only_in_the_window_after_an_offer_answer() {
        let mut l = Latch::new(LatchingMode::Strict { after_packets: 2 });
        let signalled = Some(addr(5000));
        assert_eq!(l.observe(addr(2), 0, signalled), LatchVerdict::Accept);
        assert_eq!(l.observe(addr(1), 20, signalled), LatchVerdict::Accept);
        assert_eq!(
            l.observe(addr(1), 40, signalled),
            LatchVerdict::Moved(addr(1))
        );
        for now in [60, 80, 100, 120, 140] {
            assert_eq!(l.observe(addr(2), now, signalled), LatchVerdict::Reject);
        }
        assert_eq!(l.observe(addr(1), 160, signalled), LatchVerdict::Accept);
        // Not even the signalled address takes it back before the next offer/answer.
        assert_eq!(
            packets(&mut l, addr(5000), 3, 180),
            vec![LatchVerdict::Reject; 3]
        );
        l.reset();
        assert_eq!(l.observe(addr(2), 200, signalled), LatchVerdict::Accept);
        assert_eq!(
            l.observe(addr(2), 220, signalled),
            LatchVerdict::Moved(addr(2))
        );
    }

    /// Sources that never stream steadily enough to latch (an injector racing the carrier)
    /// close the window after a bounded number of packets: then only the remote address.
    #[test]
    fn rtp_bleed_strict_window_closes_after_bounded_packets_without_a_latch() {
        let mut l = Latch::new(LatchingMode::Strict { after_packets: 3 });
        let remote = Some(addr(5000));
        let mut verdicts = Vec::new();
        for n in 0..LATCH_WINDOW_PACKETS {
            let from = if n % 2 == 0 { addr(1) } else { addr(2) };
            verdicts.push(l.observe(from, u64::from(n), remote));
        }
        assert!(verdicts[..verdicts.len() - 1]
            .iter()
            .all(|v| *v == LatchVerdict::Accept));
        assert_eq!(verdicts.last(), Some(&LatchVerdict::Reject));
        assert_eq!(
            packets(&mut l, addr(1), 5, 100),
            vec![LatchVerdict::Reject; 5]
        );
        assert_eq!(l.observe(addr(5000), 100, remote), LatchVerdict::Accept);
    }

    #[test]
    fn rtp_bleed_strict_window_closes_after_its_time_without_a_latch() {
        let mut l = Latch::new(LatchingMode::Strict { after_packets: 3 });
        let remote = Some(addr(5000));
        assert_eq!(l.observe(addr(1), 10_000, remote), LatchVerdict::Accept);
        assert_eq!(
            l.observe(addr(1), 10_000 + LATCH_WINDOW_MILLIS, remote),
            LatchVerdict::Reject
        );
        assert_eq!(
            l.observe(addr(1), 10_000 + LATCH_WINDOW_MILLIS, remote),
            LatchVerdict::Reject
        );
        assert_eq!(
            l.observe(addr(5000), 10_000 + LATCH_WINDOW_MILLIS, remote),
            LatchVerdict::Accept
        );
    }

    /// One RTCP packet used to move RTCP at any time in the call. Strict: the first RTCP
    /// after an offer/answer from the media host is taken; nothing else until the next one.
    #[test]
    fn rtp_bleed_rtcp_latches_once_per_offer_answer_from_the_media_host() {
        let mut l = Latch::new(LatchingMode::Strict { after_packets: 2 });
        let signalled = Some(host(2, 5000));
        assert_eq!(
            l.observe_rtcp(host(66, 5001), signalled),
            LatchVerdict::Reject,
            "another host"
        );
        assert_eq!(
            l.observe_rtcp(host(2, 5001), signalled),
            LatchVerdict::Moved(host(2, 5001))
        );
        assert_eq!(
            l.observe_rtcp(host(2, 5001), signalled),
            LatchVerdict::Accept
        );
        assert_eq!(
            l.observe_rtcp(host(2, 7001), signalled),
            LatchVerdict::Reject,
            "same host, other port: not after the first"
        );
        // RTP latched behind a NAT: the next offer/answer lets RTCP follow that host.
        l.reset();
        for now in 0..2 {
            l.observe(host(9, 30000), now, signalled);
        }
        assert_eq!(l.latched, Some(host(9, 30000)));
        assert_eq!(
            l.observe_rtcp(host(9, 30001), signalled),
            LatchVerdict::Moved(host(9, 30001))
        );
        let mut off = Latch::new(LatchingMode::Off);
        assert_eq!(
            off.observe_rtcp(host(66, 1), signalled),
            LatchVerdict::Accept
        );
    }

    #[test]
    fn off_accepts_every_allowed_source() {
        let mut l = Latch::new(LatchingMode::Off);
        for p in 0..10 {
            assert_eq!(l.observe(addr(p), 0, Some(addr(1))), LatchVerdict::Accept);
        }
    }

    /// RTP Bleed: carrier media only from the hosts its SDP names or the trunk's networks
    /// (also as IPv4-mapped IPv6 from a dual-stack socket); the Teams leg leaves sources to
    /// SRTP authentication.
    #[test]
    fn rtp_bleed_carrier_media_only_from_signalled_hosts_or_trunk_networks() {
        let mut carrier = LegState::new(
            LegSide::Carrier,
            LatchingMode::Strict { after_packets: 3 },
            true,
            Arc::default(),
            0,
        );
        assert!(
            !carrier.source_allowed(host(2, 4000)),
            "nothing signalled yet"
        );
        carrier.set_allowed_sources(&["198.51.100.0/24".parse().unwrap()]);
        carrier.set_remote(host(2, 4000), Some(host(3, 4001)), false);
        for allowed in [
            host(2, 4000),
            host(2, 9999),
            host(3, 1),
            "198.51.100.77:5000".parse().unwrap(),
            "[::ffff:127.0.0.2]:4000".parse().unwrap(),
            "[::ffff:198.51.100.1]:4000".parse().unwrap(),
        ] {
            assert!(carrier.source_allowed(allowed), "{allowed}");
        }
        for foreign in [
            host(66, 4000),
            "198.51.101.1:5000".parse().unwrap(),
            "[::1]:4000".parse().unwrap(),
        ] {
            assert!(!carrier.source_allowed(foreign), "{foreign}");
        }
        let teams = LegState::new(LegSide::Teams, LatchingMode::Off, false, Arc::default(), 0);
        assert!(teams.source_allowed(host(66, 4000)));
    }

    #[test]
    fn nominated_pair_outranks_signalled_address() {
        let mut leg = LegState::new(LegSide::Teams, LatchingMode::Off, false, Arc::default(), 0);
        leg.set_remote(addr(1000), None, true);
        let mut ice = IceLeg::new(IceCredentials {
            local_ufrag: "u".into(),
            local_pwd: "p".into(),
            remote_ufrag: None,
        });
        ice.nominate(addr(2000), UfragId::of(b"teams"));
        leg.ice = Some(ice);
        leg.set_remote(addr(1000), None, true);
        assert_eq!(leg.remote_rtp, Some(addr(2000)));
        leg.ice = None;
        leg.set_remote(addr(1000), None, true);
        assert_eq!(leg.remote_rtp, Some(addr(1000)));
    }

    #[test]
    fn rtcp_destination_follows_mux_and_sockets() {
        let mut leg = LegState::new(LegSide::Carrier, LatchingMode::Off, true, Arc::default(), 0);
        assert_eq!(leg.rtcp_destination(), None);
        leg.set_remote(addr(5000), None, false);
        assert_eq!(leg.rtcp_destination(), Some((SocketRole::Rtcp, addr(5001))));
        leg.set_remote(addr(5000), Some(addr(6000)), false);
        assert_eq!(leg.rtcp_destination(), Some((SocketRole::Rtcp, addr(6000))));
        leg.set_remote(addr(5000), None, true);
        assert_eq!(leg.rtcp_destination(), Some((SocketRole::Rtp, addr(5000))));
        leg.has_rtcp_socket = false;
        leg.rtcp_mux = false;
        assert_eq!(leg.rtcp_destination(), Some((SocketRole::Rtp, addr(5001))));
    }

    mod srtp_install {
        //! Keystream reuse: what `set_srtp` does with keys it already has.

        use super::*;
        use crate::media::cipher::SrtpKeys;
        use crate::media::srtp::{KeyMaterial, SrtpSuite};

        fn keys(byte: u8) -> SrtpKeys {
            SrtpKeys::new(
                SrtpSuite::AesCm128HmacSha1_80,
                KeyMaterial::new([byte; 16], [byte ^ 0x5a; 14]),
            )
        }

        fn stream(byte: u8) -> Option<SrtpStream> {
            Some(SrtpStream::new(&keys(byte)))
        }

        fn teams_leg() -> LegState {
            LegState::new(LegSide::Teams, LatchingMode::Off, false, Arc::default(), 0)
        }

        /// Protects RTP `seq` (SSRC 1) on `leg`'s outbound context; its rollover counter.
        fn send_rtp(leg: &mut LegState, seq: u16) -> Option<u32> {
            let mut buf = [0u8; 64];
            buf[0] = 0x80;
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            buf[8..12].copy_from_slice(&1u32.to_be_bytes());
            let out = leg.srtp_out.as_mut().unwrap();
            out.protect_rtp(&mut buf, 20).unwrap();
            out.rollover_counter(1)
        }

        fn send_rtcp(leg: &mut LegState) -> u32 {
            let out = leg.srtp_out.as_mut().unwrap();
            let index = out.next_srtcp_index();
            let mut buf = [0u8; 64];
            buf[..8].copy_from_slice(&[0x80, 201, 0, 1, 0, 0, 0, 1]);
            out.protect_rtcp(&mut buf, 8).unwrap();
            index
        }

        /// The same outbound key again (a fork's 200, a second 18x) used to rebuild the
        /// context: rollover counter and SRTCP index back to 0 under the same key.
        #[test]
        fn row43_keystream_reuse_the_same_outbound_key_keeps_its_context() {
            let mut leg = teams_leg();
            leg.set_srtp(stream(1), stream(2));
            for seq in [65_534, 65_535, 0] {
                send_rtp(&mut leg, seq);
            }
            assert_eq!(send_rtcp(&mut leg), 0);
            leg.set_srtp(stream(3), stream(2));
            assert_eq!(send_rtp(&mut leg, 1), Some(1), "rollover counter goes on");
            assert_eq!(send_rtcp(&mut leg), 1, "SRTCP index goes on");
            assert_eq!(leg.srtp_in.as_ref().unwrap().keys(), &keys(3));
        }

        /// SRTCP indexes keep rising across a new outbound key (and never start at 0 again).
        #[test]
        fn row43_keystream_reuse_srtcp_index_is_monotonic_across_context_resets() {
            let mut leg = teams_leg();
            leg.set_srtp(stream(1), stream(2));
            let mut indexes = vec![send_rtcp(&mut leg), send_rtcp(&mut leg)];
            leg.set_srtp(stream(1), stream(4));
            indexes.push(send_rtcp(&mut leg));
            leg.set_srtp(stream(1), stream(5));
            indexes.push(send_rtcp(&mut leg));
            assert_eq!(indexes, vec![0, 1, 2, 3]);
        }

        /// A transfer that fails brings the old Teams leg's keys back: its contexts come
        /// back too instead of new ones for keys already used.
        #[test]
        fn row43_keystream_reuse_keys_coming_back_get_their_old_contexts() {
            let mut leg = teams_leg();
            leg.set_srtp(stream(1), stream(2));
            for seq in [65_535, 0, 1] {
                send_rtp(&mut leg, seq);
            }
            send_rtcp(&mut leg);
            leg.set_srtp(stream(7), stream(8));
            send_rtcp(&mut leg);
            leg.set_srtp(stream(1), stream(2));
            assert_eq!(send_rtp(&mut leg, 2), Some(1), "the old context, ROC 1");
            assert_eq!(send_rtcp(&mut leg), 2);
            assert_eq!(leg.srtp_in.as_ref().unwrap().keys(), &keys(1));
        }

        /// Forks (row 52): the 200 of the fork whose key was replaced by a later 183 gets
        /// that fork's context back, replay state and all.
        #[test]
        fn row52_answering_fork_gets_its_early_context_back() {
            let mut leg = teams_leg();
            leg.ice = Some(IceLeg::new(IceCredentials {
                local_ufrag: "u".into(),
                local_pwd: "p".into(),
                remote_ufrag: None,
            }));
            leg.set_srtp(stream(10), stream(2));
            let mut sender = SrtpStream::new(&keys(10));
            let mut buf = [0u8; 64];
            buf[0] = 0x80;
            buf[8..12].copy_from_slice(&5u32.to_be_bytes());
            let len = sender.protect_rtp(&mut buf, 20).unwrap();
            let replay = buf;
            leg.srtp_in
                .as_mut()
                .unwrap()
                .unprotect_rtp(&mut buf, len)
                .unwrap();
            leg.set_srtp(stream(20), stream(2));
            leg.set_srtp(stream(10), stream(2));
            let mut again = replay;
            assert!(
                leg.srtp_in
                    .as_mut()
                    .unwrap()
                    .unprotect_rtp(&mut again, len)
                    .is_err(),
                "a replay stays a replay"
            );
        }
    }
}
