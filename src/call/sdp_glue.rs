//! Offer/answer across the legs and the media commands that follow from it. The Teams leg
//! always gets SRTP (SDES `_80`, rtcp-mux); the carrier leg plain RTP. Our key on the Teams
//! leg is our outbound key; the key in Teams' SDP is our inbound key. Every offer of ours
//! with new content and every answer to a re-keying Teams carries a fresh key of ours (see
//! `reinvite`); the media core never builds a second context for a key it already has.

use std::net::SocketAddr;

use bytes::Bytes;

use super::{CallSetup, CarrierTrunkSettings, LegId, MediaCommand};
use crate::media::inband_dtmf::G711;
use crate::media::srtp::{KeyMaterial, Mki, SrtpSuite as MediaSuite};
use crate::media::{
    ComfortNoisePlan, G711Target, InbandDtmfPlan, LegSide, MapDirection, PayloadMapping, SrtpKeys,
};
use crate::sdp::{
    self, CallPtMaps, CarrierSide, CodecList, IceCredentials, LegOrigin, PtMap, RemoteMedia,
    SdesKey, Sdp, SdpError, SelectedCrypto, SrtpSuite, TeamsSide,
};
use crate::transport::TransportKind;

mod reinvite;

pub(crate) use reinvite::{PendingOffer, ReinvitePlan};

/// The SDP state of a call: what each leg sent us and what we sent each leg.
pub(crate) struct Negotiation {
    teams_local: SocketAddr,
    carrier_local: SocketAddr,
    teams_codecs: CodecList,
    carrier_codecs: CodecList,
    ice: Option<IceCredentials>,
    offer_rtcp_mux: bool,
    strip_vendor: bool,
    /// Convert the carrier's in-band DTMF when it has no telephone-event (row 48).
    inband_dtmf: bool,
    /// Make comfort noise for a carrier without CN (row 49).
    comfort_noise: bool,
    teams_origin: LegOrigin,
    carrier_origin: LegOrigin,
    /// Our SRTP sending key towards Teams.
    teams_key: SdesKey,
    /// Last SDP received from / sent to each leg, indexed by [`leg_index`].
    received: [Option<Sdp>; 2],
    sent: [Option<Sdp>; 2],
    /// The carrier sent no SDP in its INVITE: we offered to Teams ourselves and owe the
    /// carrier an offer in our 200 (its answer comes in the ACK).
    pub delayed_offer: bool,
    /// A transfer's new Teams leg: our offer to it, not yet in use.
    transfer_offer: Option<TeamsLegState>,
    /// The Teams leg as it was before the transfer's media took over (to go back to if the
    /// new leg fails).
    before_transfer: Option<TeamsLegState>,
    /// Our Teams-side address moved (row 61) since the SDP we last sent there: the next
    /// answer to Teams is built afresh, never our last SDP again.
    teams_moved: bool,
}

/// What the Teams side of the negotiation holds for one Teams dialog.
#[derive(Clone)]
struct TeamsLegState {
    key: SdesKey,
    origin: LegOrigin,
    sent: Option<Sdp>,
    received: Option<Sdp>,
}

fn leg_index(leg: LegId) -> usize {
    match leg {
        LegId::Carrier => 0,
        LegId::Teams => 1,
    }
}

impl Negotiation {
    pub fn new(setup: &CallSetup) -> Negotiation {
        let teams_local = setup.media.teams.rtp;
        let carrier_local = setup.media.carrier.rtp;
        Negotiation {
            teams_local,
            carrier_local,
            teams_codecs: setup.teams.codecs.clone(),
            carrier_codecs: setup.carrier.trunk.codecs.clone(),
            ice: setup.teams.ice.clone(),
            offer_rtcp_mux: setup.carrier.offer_rtcp_mux,
            strip_vendor: strips_vendor_attributes(setup.carrier.transport),
            inband_dtmf: setup.carrier.trunk.inband_dtmf,
            comfort_noise: setup.carrier.trunk.comfort_noise,
            teams_origin: LegOrigin::random(teams_local.ip()),
            carrier_origin: LegOrigin::random(carrier_local.ip()),
            teams_key: SdesKey::generate(),
            received: [None, None],
            sent: [None, None],
            delayed_offer: false,
            transfer_offer: None,
            before_transfer: None,
            teams_moved: false,
        }
    }

    /// Local Media Optimization (row 61): our Teams-side media address becomes `ip` (same
    /// port, same socket) in every SDP we send Teams from now on. Returns whether it moved.
    pub fn relocate_teams(&mut self, ip: std::net::IpAddr) -> bool {
        if self.teams_local.ip() == ip {
            return false;
        }
        self.teams_local.set_ip(ip);
        self.teams_moved = true;
        true
    }

    fn teams_side(&self) -> TeamsSide<'_> {
        self.teams_side_with(&self.teams_key)
    }

    /// Our Teams side with `key` as our SRTP key.
    fn teams_side_with<'a>(&'a self, key: &'a SdesKey) -> TeamsSide<'a> {
        TeamsSide {
            local: self.teams_local,
            key,
            ice: self.ice.as_ref(),
            codecs: &self.teams_codecs,
            inband_dtmf: self.inband_dtmf,
            comfort_noise: self.comfort_noise,
        }
    }

    fn carrier_side(&self) -> CarrierSide<'_> {
        CarrierSide {
            local: self.carrier_local,
            codecs: &self.carrier_codecs,
            offer_rtcp_mux: self.offer_rtcp_mux,
            strip_vendor_attributes: self.strip_vendor,
        }
    }

    /// The SDP we last sent on `leg` (offer or answer), byte for byte: a session refresh
    /// re-offers it unchanged, same o= version (RFC 4028 §10, RFC 3264 §8).
    pub fn last_sent(&self, leg: LegId) -> Option<Bytes> {
        self.sent[leg_index(leg)]
            .as_ref()
            .map(|sdp| Bytes::from(sdp.to_bytes()))
    }

    /// The peer's answer to our session refresh (RFC 4028; our last SDP re-offered): nothing
    /// to do when it is what the peer last sent, else taken like any answer to our offer.
    pub fn refresh_answered(
        &mut self,
        leg: LegId,
        body: &[u8],
    ) -> Result<Vec<MediaCommand>, SdpError> {
        let answer = Sdp::parse(body)?;
        let same = self.received[leg_index(leg)]
            .as_ref()
            .is_some_and(|last| last.to_bytes() == answer.to_bytes());
        if same {
            return Ok(Vec::new());
        }
        self.reinvite_ack_answer(leg, body)
    }

    fn record_sent(&mut self, leg: LegId, sdp: Sdp) -> Bytes {
        if leg == LegId::Teams {
            self.teams_moved = false;
        }
        let bytes = Bytes::from(sdp.to_bytes());
        self.sent[leg_index(leg)] = Some(sdp);
        bytes
    }

    /// The carrier's INVITE body (`None`: delayed offer) -> our offer to Teams.
    pub fn offer_from_carrier(&mut self, body: Option<&[u8]>) -> Result<Bytes, SdpError> {
        let offer = match body {
            Some(body) => Sdp::parse(body)?,
            None => {
                // Row 21: Teams takes early offer only, so the SBC offers from the trunk's
                // codecs.
                self.delayed_offer = true;
                Sdp::parse(synthetic_offer(self.carrier_local, &self.carrier_codecs).as_bytes())?
            }
        };
        let mut origin = self.teams_origin.clone();
        let out = sdp::offer_towards_teams(&offer, &self.teams_side(), &mut origin)?;
        self.teams_origin = origin;
        if !self.delayed_offer {
            self.received[0] = Some(offer);
        }
        Ok(self.record_sent(LegId::Teams, out))
    }

    /// Microsoft's INVITE body (Teams -> PSTN): kept for the offers to the carrier hops. It
    /// must anchor an audio stream with an SDES line we can use (rows 43, 44): otherwise no
    /// carrier is called at all and Teams gets the error (488 without a usable key).
    pub fn take_teams_offer(&mut self, body: Option<&[u8]>) -> Result<(), SdpError> {
        // Microsoft always sends an offer; without one there is nothing to anchor.
        let offer = Sdp::parse(body.ok_or(SdpError::NoAudio)?)?;
        if RemoteMedia::from_sdp(&offer)?.crypto.is_none() {
            return Err(SdpError::NoUsableCrypto);
        }
        self.received[1] = Some(offer);
        Ok(())
    }

    /// Teams -> PSTN: our offer to the carrier hop on `transport` whose trunk is `trunk`, from
    /// Teams' offer, with that trunk's codecs, in-band DTMF and comfort-noise rules. Once built, the carrier
    /// side of the negotiation is that trunk's (a new session for a new peer: fresh origin);
    /// on an error (the trunk takes none of Teams' codecs) nothing changes.
    pub fn offer_for_carrier_hop(
        &mut self,
        trunk: &CarrierTrunkSettings,
        transport: TransportKind,
    ) -> Result<Bytes, SdpError> {
        let teams_offer = self.received[1].as_ref().ok_or(SdpError::NoAudio)?;
        let side = CarrierSide {
            local: self.carrier_local,
            codecs: &trunk.codecs,
            offer_rtcp_mux: self.offer_rtcp_mux,
            strip_vendor_attributes: strips_vendor_attributes(transport),
        };
        let mut origin = LegOrigin::random(self.carrier_local.ip());
        let out = sdp::offer_towards_carrier(teams_offer, &side, &mut origin)?;
        self.carrier_codecs = trunk.codecs.clone();
        self.strip_vendor = side.strip_vendor_attributes;
        self.inband_dtmf = trunk.inband_dtmf;
        self.comfort_noise = trunk.comfort_noise;
        self.carrier_origin = origin;
        Ok(self.record_sent(LegId::Carrier, out))
    }

    /// The called leg's answer (in a 18x or the 200) -> the SDP for the caller (an answer, or
    /// in the delayed-offer case our offer to the carrier) and the media commands.
    pub fn answer_from_callee(
        &mut self,
        callee: LegId,
        body: &[u8],
    ) -> Result<(Bytes, Vec<MediaCommand>), SdpError> {
        let answer = Sdp::parse(body)?;
        let caller = callee.other();
        let out = match (callee, self.delayed_offer) {
            (LegId::Teams, true) => {
                let mut origin = self.carrier_origin.clone();
                let out = sdp::offer_towards_carrier(&answer, &self.carrier_side(), &mut origin)?;
                self.carrier_origin = origin;
                out
            }
            (LegId::Teams, false) => {
                let offer = self.received[0].as_ref().ok_or(SdpError::NoAudio)?;
                let mut origin = self.carrier_origin.clone();
                let out =
                    sdp::answer_towards_carrier(&answer, offer, &self.carrier_side(), &mut origin)?;
                self.carrier_origin = origin;
                out
            }
            (LegId::Carrier, _) => {
                let offer = self.received[1].as_ref().ok_or(SdpError::NoAudio)?;
                let mut origin = self.teams_origin.clone();
                let out =
                    sdp::answer_towards_teams(&answer, offer, &self.teams_side(), &mut origin)?;
                self.teams_origin = origin;
                out
            }
        };
        self.received[leg_index(callee)] = Some(answer);
        let bytes = self.record_sent(caller, out);
        let mut commands = self.leg_commands(callee)?;
        if !self.delayed_offer {
            commands.extend(self.leg_commands(caller)?);
            commands.extend(self.payload_maps());
        }
        Ok((bytes, commands))
    }

    /// An early answer of the called leg that the caller does not get (the carrier trunk's
    /// early-media policy withheld it, row 27): the called leg's media only (address, keys,
    /// ICE-lite). The caller leg gets no remote and no payload map before the 200, so the relay
    /// sends the caller nothing it never negotiated.
    pub fn early_answer_withheld(
        &mut self,
        callee: LegId,
        body: &[u8],
    ) -> Result<Vec<MediaCommand>, SdpError> {
        let answer = Sdp::parse(body)?;
        let previous = self.received[leg_index(callee)].replace(answer);
        let commands = self.leg_commands(callee);
        if commands.is_err() {
            self.received[leg_index(callee)] = previous;
        }
        commands
    }

    /// Delayed offer: the carrier's answer arrived in its ACK.
    pub fn answer_in_ack(&mut self, body: &[u8]) -> Result<Vec<MediaCommand>, SdpError> {
        let answer = Sdp::parse(body)?;
        self.received[0] = Some(answer);
        let mut commands = self.leg_commands(LegId::Carrier)?;
        commands.extend(self.payload_maps());
        Ok(commands)
    }

    /// Transfer (row 37): an offer for a new Teams leg from the carrier's current media, with
    /// a fresh SRTP key and origin; our Teams-side address stays the same.
    pub fn offer_for_transfer(&mut self) -> Result<Bytes, SdpError> {
        let carrier = self.received[0].as_ref().ok_or(SdpError::NoAudio)?;
        let key = SdesKey::generate();
        let mut origin = LegOrigin::random(self.teams_local.ip());
        let offer = sdp::offer_towards_teams(carrier, &self.teams_side_with(&key), &mut origin)?;
        let bytes = Bytes::from(offer.to_bytes());
        self.transfer_offer = Some(TeamsLegState {
            key,
            origin,
            sent: Some(offer),
            received: None,
        });
        Ok(bytes)
    }

    /// The new Teams leg's SDP (18x or 200): its media takes over the Teams side of the
    /// session (same local port, new remote and keys). Again for each new SDP of that leg.
    pub fn use_transfer_answer(&mut self, body: &[u8]) -> Result<Vec<MediaCommand>, SdpError> {
        let answer = Sdp::parse(body)?;
        RemoteMedia::from_sdp(&answer)?;
        let Some(mut pending) = self.transfer_offer.clone() else {
            return Err(SdpError::NoAudio);
        };
        pending.received = Some(answer);
        let current = self.swap_teams(pending);
        if self.before_transfer.is_none() {
            self.before_transfer = Some(current);
        }
        match self.teams_commands() {
            Ok(commands) => Ok(commands),
            Err(e) => {
                if let Some(before) = self.before_transfer.take() {
                    self.swap_teams(before);
                }
                Err(e)
            }
        }
    }

    /// The transfer failed: the original Teams leg's media again (if the new leg's had taken
    /// over), else nothing.
    pub fn abandon_transfer(&mut self) -> Vec<MediaCommand> {
        self.transfer_offer = None;
        match self.before_transfer.take() {
            Some(before) => {
                self.swap_teams(before);
                self.teams_commands().unwrap_or_default()
            }
            None => Vec::new(),
        }
    }

    /// The new Teams leg answered: it is the Teams leg from now on.
    pub fn complete_transfer(&mut self) {
        self.transfer_offer = None;
        self.before_transfer = None;
    }

    /// INVITE with Replaces from Microsoft (row 22): answer the new Teams dialog's `offer`
    /// from the carrier leg's current media with a fresh SRTP key and origin on the same
    /// Teams-side address (rows 41, 43); its media then takes over the Teams side. The carrier
    /// keeps its codec: an offer without it fails with `NoCommonCodec` (488) and nothing
    /// changes. `carrier_offered`: the carrier made the offer on its leg (our answer to it
    /// then holds the codec in use).
    pub fn answer_for_replacement(
        &mut self,
        offer: &[u8],
        carrier_offered: bool,
    ) -> Result<(Bytes, Vec<MediaCommand>), SdpError> {
        let offer = Sdp::parse(offer)?;
        let remote = RemoteMedia::from_sdp(&offer)?;
        let carrier_answer = match carrier_offered {
            true => self.sent[0].as_ref(),
            false => self.received[0].as_ref(),
        }
        .ok_or(SdpError::NoAudio)?;
        let key = SdesKey::generate();
        let mut origin = LegOrigin::random(self.teams_local.ip());
        let side = self.teams_side_with(&key);
        let answer = sdp::answer_towards_teams(carrier_answer, &offer, &side, &mut origin)?;
        // The first codec of the anchored stream that carries voice (not DTMF or noise).
        fn voice_codec(sdp: &Sdp) -> Option<(String, u32, u8)> {
            let section = sdp.media().get(sdp.primary_audio_index()?)?;
            let codecs = section.codecs();
            let codec = codecs.iter().find(|c| {
                !c.encoding.eq_ignore_ascii_case("telephone-event")
                    && !c.encoding.eq_ignore_ascii_case("CN")
            })?;
            let encoding = codec.encoding.to_ascii_uppercase();
            Some((encoding, codec.clock_rate, codec.channels))
        }
        let in_use = voice_codec(carrier_answer);
        if in_use.is_none() || voice_codec(&answer) != in_use {
            return Err(SdpError::NoCommonCodec);
        }
        let bytes = Bytes::from(answer.to_bytes());
        let previous = self.swap_teams(TeamsLegState {
            key,
            origin,
            sent: Some(answer),
            received: Some(offer),
        });
        match self.teams_commands() {
            Ok(mut commands) => {
                if !remote.on_hold {
                    // The replaced dialog may have been on hold; the new one is not.
                    commands.push(MediaCommand::SetHold {
                        leg: LegId::Teams.media_side(),
                        on_hold: false,
                    });
                }
                Ok((bytes, commands))
            }
            Err(e) => {
                self.swap_teams(previous);
                Err(e)
            }
        }
    }

    /// INVITE with Replaces for an early dialog of our INVITE to Microsoft (row 22, PSTN ->
    /// Teams): Microsoft's `offer` answers the carrier's offer (our answer to the carrier,
    /// second), and is itself answered from that answer like any replacement (first), with
    /// the media of both legs set up. Nothing changes on an error.
    pub fn answer_early_replacement(
        &mut self,
        offer: &[u8],
    ) -> Result<(Bytes, Bytes, Vec<MediaCommand>), SdpError> {
        let teams_offer = Sdp::parse(offer)?;
        let carrier_offer = self.received[0].as_ref().ok_or(SdpError::NoAudio)?;
        let mut origin = self.carrier_origin.clone();
        let to_carrier = sdp::answer_towards_carrier(
            &teams_offer,
            carrier_offer,
            &self.carrier_side(),
            &mut origin,
        )?;
        let carrier_commands = self.leg_commands(LegId::Carrier)?;
        let earlier = self.sent[0].replace(to_carrier);
        match self.answer_for_replacement(offer, true) {
            Ok((answer, commands)) => {
                self.carrier_origin = origin;
                let to_carrier = self.last_sent(LegId::Carrier).unwrap_or_default();
                Ok((answer, to_carrier, [carrier_commands, commands].concat()))
            }
            Err(e) => {
                self.sent[0] = earlier;
                Err(e)
            }
        }
    }

    fn swap_teams(&mut self, state: TeamsLegState) -> TeamsLegState {
        let previous = TeamsLegState {
            key: self.teams_key.clone(),
            origin: self.teams_origin.clone(),
            sent: self.sent[1].take(),
            received: self.received[1].take(),
        };
        self.teams_key = state.key;
        self.teams_origin = state.origin;
        self.sent[1] = state.sent;
        self.received[1] = state.received;
        previous
    }

    fn teams_commands(&self) -> Result<Vec<MediaCommand>, SdpError> {
        let mut commands = self.leg_commands(LegId::Teams)?;
        commands.extend(self.payload_maps());
        Ok(commands)
    }

    fn leg_commands(&self, leg: LegId) -> Result<Vec<MediaCommand>, SdpError> {
        let sdp = self.received[leg_index(leg)]
            .as_ref()
            .ok_or(SdpError::NoAudio)?;
        let remote = RemoteMedia::from_sdp(sdp)?;
        if leg == LegId::Teams && remote.crypto.is_none() {
            return Err(SdpError::NoUsableCrypto);
        }
        let mut commands = self.commands_for(leg, &remote);
        if remote.on_hold {
            commands.push(MediaCommand::SetHold {
                leg: leg.media_side(),
                on_hold: true,
            });
        }
        Ok(commands)
    }

    fn commands_for(&self, leg: LegId, remote: &RemoteMedia) -> Vec<MediaCommand> {
        let side = leg.media_side();
        let mut commands = vec![MediaCommand::SetRemote {
            leg: side,
            rtp: remote.rtp,
            rtcp: (!remote.rtcp_mux).then_some(remote.rtcp),
            rtcp_mux: remote.rtcp_mux,
        }];
        if leg == LegId::Teams {
            if let Some(crypto) = &remote.crypto {
                commands.push(MediaCommand::SetSrtp {
                    leg: side,
                    inbound: Some(srtp_keys(crypto)),
                    outbound: Some(SrtpKeys::new(
                        media_suite(crypto.suite),
                        key_material(self.teams_key.key_salt()),
                    )),
                });
            }
            if let Some(ice) = &self.ice {
                commands.push(MediaCommand::EnableIceLite {
                    leg: side,
                    local_ufrag: ice.ufrag().to_owned(),
                    local_pwd: ice.pwd().to_owned(),
                    remote_ufrag: remote.ice.as_ref().map(|i| i.ufrag.clone()),
                    forks_open: false,
                });
            }
        }
        commands
    }

    fn payload_maps(&self) -> Vec<MediaCommand> {
        let (Some(sc), Some(rc), Some(st), Some(rt)) = (
            self.sent[0].as_ref(),
            self.received[0].as_ref(),
            self.sent[1].as_ref(),
            self.received[1].as_ref(),
        ) else {
            return Vec::new();
        };
        let Some(maps) = CallPtMaps::compute(sc, rc, st, rt) else {
            return Vec::new();
        };
        let inband = MediaCommand::SetInbandDtmf {
            plan: self.inband_plan(sc, rc, st, rt),
        };
        let (to_carrier, to_teams) = self.comfort_noise_plans(sc, rc, st, rt);
        vec![
            inband,
            MediaCommand::SetComfortNoise {
                leg: LegSide::Carrier,
                plan: to_carrier,
            },
            MediaCommand::SetComfortNoise {
                leg: LegSide::Teams,
                plan: to_teams,
            },
            MediaCommand::SetPayloadMap {
                direction: MapDirection::CarrierToTeams,
                mappings: mappings(&maps.carrier_to_teams),
            },
            MediaCommand::SetPayloadMap {
                direction: MapDirection::TeamsToCarrier,
                mappings: mappings(&maps.teams_to_carrier),
            },
        ]
    }
}

impl Negotiation {
    /// In-band DTMF conversion (row 48) when the carrier's SDP has no telephone-event and
    /// Teams' has one: the carrier sends G.711 under the numbers we sent it, Teams expects
    /// events under its own number and sends them under ours (dropped towards the carrier).
    fn inband_plan(
        &self,
        sent_carrier: &Sdp,
        received_carrier: &Sdp,
        sent_teams: &Sdp,
        received_teams: &Sdp,
    ) -> Option<InbandDtmfPlan> {
        if !self.inband_dtmf {
            return None;
        }
        fn audio(sdp: &Sdp) -> Option<&sdp::MediaSection> {
            sdp.media().get(sdp.primary_audio_index()?)
        }
        fn pt_of(section: &sdp::MediaSection, name: &str) -> Option<u8> {
            section
                .codecs()
                .iter()
                .find(|c| c.clock_rate == 8000 && c.encoding.eq_ignore_ascii_case(name))
                .map(|c| c.pt)
        }
        let carrier_own = audio(received_carrier)?;
        let carrier_uses = audio(sent_carrier)?;
        if pt_of(carrier_own, "telephone-event").is_some() {
            return None;
        }
        let event_pt = pt_of(audio(received_teams)?, "telephone-event")?;
        let pcmu_pt = pt_of(carrier_uses, "PCMU");
        let pcma_pt = pt_of(carrier_uses, "PCMA");
        if pcmu_pt.is_none() && pcma_pt.is_none() {
            return None;
        }
        Some(InbandDtmfPlan {
            event_pt,
            pcmu_pt,
            pcma_pt,
            teams_event_pt: pt_of(audio(sent_teams)?, "telephone-event"),
        })
    }
}

impl Negotiation {
    /// Comfort noise (row 49) for each leg that did not negotiate CN while the other leg did
    /// (or may send the static 13 anyway): (towards the carrier, towards Teams). The carrier
    /// gets noise in its G.711 when `comfort_noise` is on, else nothing; Teams gets nothing
    /// (Microsoft's media stack makes its own noise in the gaps). A leg with CN on both of
    /// its SDPs relays CN under the payload map.
    fn comfort_noise_plans(
        &self,
        sent_carrier: &Sdp,
        received_carrier: &Sdp,
        sent_teams: &Sdp,
        received_teams: &Sdp,
    ) -> (Option<ComfortNoisePlan>, Option<ComfortNoisePlan>) {
        let carrier = (cn_pt(sent_carrier), cn_pt(received_carrier));
        let teams = (cn_pt(sent_teams), cn_pt(received_teams));
        // The numbers a leg sends CN under: those it was told, its own, else the static 13.
        let senders_numbers = |(told, own): (Option<u8>, Option<u8>)| {
            let first = told.or(own).unwrap_or(STATIC_CN);
            [Some(first), own.filter(|pt| *pt != first)]
        };
        let negotiated = |(told, own): (Option<u8>, Option<u8>)| told.is_some() && own.is_some();
        let to_carrier = (!negotiated(carrier)).then(|| ComfortNoisePlan {
            cn_payload_types: senders_numbers(teams),
            noise: self
                .comfort_noise
                .then(|| carrier_g711(sent_carrier, received_carrier))
                .flatten(),
        });
        let to_teams = (!negotiated(teams)).then(|| ComfortNoisePlan {
            cn_payload_types: senders_numbers(carrier),
            noise: None,
        });
        (to_carrier, to_teams)
    }

    /// The G.711 payload the carrier takes generated audio in (ringback, row 38): the first
    /// PCMU/PCMA of what we told the carrier that the carrier's own SDP lists too.
    pub fn carrier_g711(&self) -> Option<G711Target> {
        carrier_g711(self.sent[0].as_ref()?, self.received[0].as_ref()?)
    }
}

/// RTP/AVP's static number for CN (RFC 3551).
const STATIC_CN: u8 = 13;

fn audio_section(sdp: &Sdp) -> Option<&sdp::MediaSection> {
    sdp.media().get(sdp.primary_audio_index()?)
}

/// The `CN/8000` number of an SDP's anchored audio stream.
fn cn_pt(sdp: &Sdp) -> Option<u8> {
    audio_section(sdp)?
        .codecs()
        .iter()
        .find(|c| c.clock_rate == 8000 && c.encoding.eq_ignore_ascii_case("CN"))
        .map(|c| c.pt)
}

/// See [`Negotiation::carrier_g711`].
fn carrier_g711(sent_carrier: &Sdp, received_carrier: &Sdp) -> Option<G711Target> {
    let own = audio_section(received_carrier)?.codecs();
    audio_section(sent_carrier)?
        .codecs()
        .iter()
        .filter(|c| c.clock_rate == 8000)
        .find_map(|c| {
            let law = if c.encoding.eq_ignore_ascii_case("PCMU") {
                G711::Ulaw
            } else if c.encoding.eq_ignore_ascii_case("PCMA") {
                G711::Alaw
            } else {
                return None;
            };
            own.iter()
                .any(|o| o.clock_rate == 8000 && o.encoding.eq_ignore_ascii_case(c.encoding))
                .then_some(G711Target {
                    payload_type: c.pt,
                    law,
                })
        })
}

/// Vendor SDP attributes (Microsoft's are large) are dropped towards UDP trunks (row 24).
fn strips_vendor_attributes(transport: TransportKind) -> bool {
    transport == TransportKind::Udp
}

/// Payload mappings (row 48: telephone-event too, under each leg's own number) with the
/// clock rate of the codec as the sender uses it.
fn mappings(map: &PtMap) -> Vec<PayloadMapping> {
    map.entries()
        .map(|(from, to, rate)| PayloadMapping::new(from, to).with_clock_rate(rate))
        .collect()
}

fn media_suite(suite: SrtpSuite) -> MediaSuite {
    match suite {
        SrtpSuite::AesCm128HmacSha1_80 => MediaSuite::AesCm128HmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_32 => MediaSuite::AesCm128HmacSha1_32,
    }
}

fn key_material(key_salt: &[u8; sdp::SDES_KEY_SALT_LEN]) -> KeyMaterial {
    let mut key = [0u8; 16];
    let mut salt = [0u8; 14];
    key.copy_from_slice(&key_salt[..16]);
    salt.copy_from_slice(&key_salt[16..]);
    KeyMaterial::new(key, salt)
}

fn srtp_keys(crypto: &SelectedCrypto) -> SrtpKeys {
    SrtpKeys {
        suite: media_suite(crypto.suite),
        key: key_material(&crypto.key_salt),
        mki: crypto.mki.map(|m| Mki {
            value: m.value,
            len: m.length,
        }),
    }
}

/// Static payload types of the codecs we can offer on behalf of a delayed-offer carrier:
/// (encoding, payload type, clock rate, fmtp).
const OFFERABLE: &[(&str, u8, u32, Option<&str>)] = &[
    ("PCMU", 0, 8000, None),
    ("PCMA", 8, 8000, None),
    ("G722", 9, 8000, None),
    ("G729", 18, 8000, Some("annexb=no")),
    ("telephone-event", 101, 8000, Some("0-16")),
    ("CN", 13, 8000, None),
];

/// A plain RTP offer from the carrier trunk's codec list, as if the carrier had sent it.
fn synthetic_offer(local: SocketAddr, codecs: &CodecList) -> String {
    let family = if local.is_ipv4() { "IP4" } else { "IP6" };
    let ip = local.ip();
    let chosen: Vec<_> = OFFERABLE.iter().filter(|c| codecs.allows(c.0)).collect();
    let pts: Vec<String> = chosen.iter().map(|c| c.1.to_string()).collect();
    let mut s = format!(
        "v=0\r\no=- 0 0 IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\nm=audio {} RTP/AVP {}\r\n",
        local.port(),
        pts.join(" ")
    );
    for (name, pt, rate, fmtp) in chosen {
        s.push_str(&format!("a=rtpmap:{pt} {name}/{rate}\r\n"));
        if let Some(f) = fmtp {
            s.push_str(&format!("a=fmtp:{pt} {f}\r\n"));
        }
    }
    s.push_str("a=ptime:20\r\na=sendrecv\r\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_offer_lists_trunk_codecs_only() {
        let local: SocketAddr = "192.0.2.1:20000".parse().unwrap();
        let text = synthetic_offer(local, &CodecList::new(["PCMA", "telephone-event"]));
        let sdp = Sdp::parse(text.as_bytes()).unwrap();
        let m = &sdp.media()[0];
        assert_eq!(m.payload_types().collect::<Vec<_>>(), vec![8, 101]);
        assert_eq!(m.port(), 20000);
    }
}
