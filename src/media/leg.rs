//! Worker-owned state of a media leg and of a session's pair of legs.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::media::cipher::SrtpStream;
use crate::media::dtmf_convert::DtmfConverter;
use crate::media::ice::{IceCredentials, UfragId};
use crate::media::inactivity::InactivityTracker;
use crate::media::metrics::Direction;
use crate::media::rtp::PayloadMap;
use crate::media::settings::LatchingMode;
use crate::media::stats::{LegCounters, ReceiveStats};

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

/// Symmetric RTP state.
#[derive(Debug, Clone, Copy)]
pub struct Latch {
    pub mode: LatchingMode,
    candidate: Option<SocketAddr>,
    candidate_count: u32,
    pub latched: Option<SocketAddr>,
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
        }
    }

    pub fn reset(&mut self) {
        *self = Self::new(self.mode);
    }

    /// Presents the source of a packet that passed validation (and SRTP authentication).
    pub fn observe(&mut self, from: SocketAddr) -> LatchVerdict {
        let (after, strict) = match self.mode {
            LatchingMode::Off => return LatchVerdict::Accept,
            LatchingMode::Learn { after_packets } => (after_packets.max(1), false),
            LatchingMode::Strict { after_packets } => (after_packets.max(1), true),
        };
        match self.latched {
            Some(latched) if latched == from => {
                self.candidate = None;
                self.candidate_count = 0;
                return LatchVerdict::Accept;
            }
            Some(_) if strict => return LatchVerdict::Reject,
            _ => {}
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
            return LatchVerdict::Moved(from);
        }
        LatchVerdict::Accept
    }

    /// RTCP on the separate port is accepted only from the latched host in strict mode.
    pub fn allows_rtcp_from(&self, from: SocketAddr) -> bool {
        match (self.mode, self.latched) {
            (LatchingMode::Strict { .. }, Some(latched)) => latched.ip() == from.ip(),
            _ => true,
        }
    }
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
    /// Encrypts what leaves on this leg.
    pub srtp_out: Option<SrtpStream>,
    pub ice: Option<IceLeg>,
    /// Payload rewrite and clock rates for packets arriving on this leg.
    pub inbound_payloads: PayloadMap,
    /// Carrier leg without telephone-event: its G.711 tones become RFC 4733 events (row 48).
    pub inband_dtmf: Option<DtmfConverter>,
    pub receive_stats: ReceiveStats,
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
            remote_rtcp: None,
            rtcp_mux: !has_rtcp_socket,
            has_rtcp_socket,
            latch: Latch::new(latching),
            srtp_in: None,
            early_srtp_in: Default::default(),
            srtp_out: None,
            ice: None,
            inbound_payloads: PayloadMap::default(),
            inband_dtmf: None,
            receive_stats: ReceiveStats::default(),
            inactivity: InactivityTracker::new(now_millis),
            on_hold: false,
            counters,
            notice: None,
        }
    }

    /// Applies a signalled remote address; a changed address restarts latching.
    /// On an ICE-lite leg a nominated pair outranks SDP: media stays on it (RFC 8445; the
    /// controlling agent's re-INVITE may still carry the default candidate).
    pub fn set_remote(&mut self, rtp: SocketAddr, rtcp: Option<SocketAddr>, rtcp_mux: bool) {
        if self.remote_rtp != Some(rtp) {
            self.latch.reset();
        }
        let nominated = self.ice.as_ref().and_then(|ice| ice.nominated);
        self.signalled_rtp = Some(rtp);
        self.remote_rtp = Some(nominated.unwrap_or(rtp));
        self.remote_rtcp = rtcp;
        self.rtcp_mux = rtcp_mux;
    }

    /// Installs SRTP contexts (fresh ones: a re-key restarts rollover counters). While the
    /// peer's ICE agent is open (remote ufrag unknown: Teams' SDP came in a 18x and any
    /// forked client may stream early media, each under its own key) the inbound context
    /// replaced is kept for [`LegState::unprotect_early_rtp`]; otherwise it is dropped.
    pub fn set_srtp(&mut self, inbound: Option<SrtpStream>, outbound: Option<SrtpStream>) {
        let agent_open = self
            .ice
            .as_ref()
            .is_some_and(|ice| ice.credentials.remote_ufrag.is_none());
        let replaced = std::mem::replace(&mut self.srtp_in, inbound);
        match replaced {
            Some(earlier) if agent_open => {
                let slot = self
                    .early_srtp_in
                    .iter()
                    .position(Option::is_none)
                    .unwrap_or_else(|| {
                        self.early_srtp_in.rotate_left(1);
                        MAX_EARLY_INBOUND_KEYS - 1
                    });
                // Command handling, off the packet path: the allocation is fine here.
                self.early_srtp_in[slot] = Some(Box::new(earlier));
            }
            _ if !agent_open => self.early_srtp_in = Default::default(),
            _ => {}
        }
        self.srtp_out = outbound;
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
    ///   may check and nominate until the 200): every nomination is kept;
    /// * the remote ufrag of the 200 (the fork that won) or of a later offer: only that
    ///   agent's own nomination is kept, another fork's pair no longer gets media;
    /// * a new local ufrag (our ICE restart) or a new remote one (the peer's): nothing is kept.
    ///
    /// Without a kept nomination media goes to the signalled address and the pre-nomination
    /// rules start over (best-priority check, first authentic media source).
    pub fn enable_ice(&mut self, credentials: IceCredentials) {
        let previous = self.ice.take();
        let remote_agent = credentials
            .remote_ufrag
            .as_deref()
            .map(|ufrag| UfragId::of(ufrag.as_bytes()));
        let mut next = IceLeg::new(credentials);
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
        if next.credentials.remote_ufrag.is_some() {
            // The answer named the agent: other forks' keys no longer authenticate anything.
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

    #[test]
    fn learn_moves_after_n_packets_and_can_move_again() {
        let mut l = Latch::new(LatchingMode::Learn { after_packets: 3 });
        assert_eq!(l.observe(addr(1)), LatchVerdict::Accept);
        assert_eq!(l.observe(addr(1)), LatchVerdict::Accept);
        assert_eq!(l.observe(addr(1)), LatchVerdict::Moved(addr(1)));
        assert_eq!(l.observe(addr(1)), LatchVerdict::Accept);
        assert_eq!(l.observe(addr(2)), LatchVerdict::Accept);
        assert_eq!(l.observe(addr(1)), LatchVerdict::Accept);
        assert_eq!(l.observe(addr(2)), LatchVerdict::Accept);
        assert_eq!(l.observe(addr(2)), LatchVerdict::Accept);
        assert_eq!(l.observe(addr(2)), LatchVerdict::Moved(addr(2)));
    }

    #[test]
    fn strict_rejects_others_once_latched() {
        let mut l = Latch::new(LatchingMode::Strict { after_packets: 2 });
        assert_eq!(l.observe(addr(2)), LatchVerdict::Accept);
        assert_eq!(l.observe(addr(1)), LatchVerdict::Accept);
        assert_eq!(l.observe(addr(1)), LatchVerdict::Moved(addr(1)));
        for _ in 0..5 {
            assert_eq!(l.observe(addr(2)), LatchVerdict::Reject);
        }
        assert!(l.allows_rtcp_from(addr(9)));
        assert!(!l.allows_rtcp_from(SocketAddr::from(([127, 0, 0, 2], 1))));
    }

    #[test]
    fn off_accepts_everything() {
        let mut l = Latch::new(LatchingMode::Off);
        for p in 0..10 {
            assert_eq!(l.observe(addr(p)), LatchVerdict::Accept);
        }
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
}
