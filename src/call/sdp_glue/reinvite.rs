//! Offer/answer for re-INVITEs (rows 39-41, 53): decide whether a peer's new offer needs the
//! other leg at all, rewrite it for the other leg, and turn the answers into SDP for the
//! offerer and media commands.
//!
//! Our media address and port on each leg never change: every SDP we send is built with the
//! same `local` address (row 41) and never carries `c=0.0.0.0` (row 40); towards Teams any
//! hold is `a=inactive` (row 39). The one exception is Microsoft's own word under Local Media
//! Optimization (row 61): its re-INVITE naming the user's location moves our Teams-side
//! address (same port, same socket) in the answer to it.
//!
//! SRTP keys: a new outbound context (rollover counter and index back to 0) is only ever
//! built for a new key of ours, announced in our SDP, so no keystream is used twice
//! (RFC 3711 §9.1). Each offer we relay to Teams carries a fresh key of ours, taken into use
//! when Teams answers it: whether or not Teams re-keys in its answer, both directions then
//! run under keys their contexts started with. When Teams re-keys in an offer we answer with
//! a fresh key of ours too. Where our SDP is sent again unchanged (a re-INVITE without SDP,
//! a session refresh) our key stays, and so does its context in the media core, which keeps
//! the context of any key it already has. `SetSrtp` goes out only when a key changed.
//!
//! ICE restart (bypass legs, RFC 8445 §9 / RFC 5245 §9.1.1.1): new `ice-ufrag`/`ice-pwd` from
//! Teams -> new local credentials in our answer and `EnableIceLite` with them; the candidate
//! (our address and port) stays.

use bytes::Bytes;

use super::{leg_index, Negotiation};
use crate::call::{LegId, MediaCommand};
use crate::sdp::{self, IceCredentials, PayloadInfo, RemoteMedia, SdesKey, Sdp, SdpError};

/// What to do with a re-INVITE.
pub(crate) enum ReinvitePlan {
    /// Answer the re-INVITE here with `answer` (a refresh, a re-INVITE without SDP, or a
    /// change the other leg does not see: new address, keys or ICE credentials).
    Local {
        answer: Bytes,
        commands: Vec<MediaCommand>,
    },
    /// Send `offer` to the other leg; hand `pending` back with its answer.
    Relay { offer: Bytes, pending: PendingOffer },
}

/// A peer's offer relayed to the other leg, until that leg answers.
pub(crate) struct PendingOffer {
    from: LegId,
    offer: Sdp,
    /// What we offered the other leg, stamped with `origin`.
    sent: Sdp,
    origin: sdp::LegOrigin,
    /// The fresh key of ours in an offer to Teams, ours once Teams accepts the offer.
    teams_key: Option<SdesKey>,
}

impl PendingOffer {
    pub fn from(&self) -> LegId {
        self.from
    }
}

/// Whether the other leg must hear of `offer`, given the peer's previous SDP `before`: a
/// hold/resume or another direction, the voice codec in use no longer offered, or DTMF
/// (telephone-event) appearing or going away. A new address, SRTP key, ICE credentials or a
/// longer codec list (Teams offers all its codecs where it answered one) stay on the peer's
/// own leg and are answered by the SBC.
fn other_leg_sees_change(before: &RemoteMedia, offer: &RemoteMedia) -> bool {
    let is_voice = |p: &&PayloadInfo| {
        !p.encoding.eq_ignore_ascii_case("telephone-event")
            && !p.encoding.eq_ignore_ascii_case("CN")
    };
    let same_codec = |a: &PayloadInfo, b: &PayloadInfo| {
        a.encoding.eq_ignore_ascii_case(&b.encoding)
            && a.clock_rate == b.clock_rate
            && a.channels == b.channels
    };
    let in_use_dropped = before
        .payloads
        .iter()
        .find(is_voice)
        .is_some_and(|used| !offer.payloads.iter().any(|p| same_codec(used, p)));
    before.on_hold != offer.on_hold
        || before.direction != offer.direction
        || in_use_dropped
        || before.telephone_event_pt.is_some() != offer.telephone_event_pt.is_some()
}

/// Same `o=` session id and version and the same lines otherwise: a refresh (RFC 3264 §8).
fn unchanged(previous: &Sdp, offer: &Sdp) -> bool {
    let version = |s: &Sdp| s.origin().map(|o| (o.session_id, o.session_version));
    let lines = |s: &'_ Sdp| {
        s.lines()
            .filter(|l| l.kind() != b'o')
            .map(|l| (l.kind(), l.value_bytes().to_vec()))
            .collect::<Vec<_>>()
    };
    version(previous) == version(offer) && lines(previous) == lines(offer)
}

fn key_of(remote: &RemoteMedia) -> Option<[u8; sdp::SDES_KEY_SALT_LEN]> {
    remote.crypto.as_ref().map(|c| c.key_salt)
}

fn ice_of(remote: &RemoteMedia) -> Option<(&str, &str)> {
    remote
        .ice
        .as_ref()
        .map(|i| (i.ufrag.as_str(), i.pwd.as_str()))
}

impl Negotiation {
    /// A re-INVITE from `from` with `body` (`None`: no SDP, we offer our last SDP again and
    /// the answer comes in the ACK).
    pub fn reinvite_offer(
        &mut self,
        from: LegId,
        body: Option<&[u8]>,
    ) -> Result<ReinvitePlan, SdpError> {
        let last_sent = self.sent[leg_index(from)]
            .as_ref()
            .ok_or(SdpError::NoAudio)?;
        let last_sent = Bytes::from(last_sent.to_bytes());
        // Our Teams-side address moved (row 61): what we send Teams now is new SDP.
        let moved = from == LegId::Teams && self.teams_moved;
        let Some(body) = body.filter(|b| !b.is_empty()) else {
            if moved {
                // Our offer in the 2xx, at the new address, from what Teams last sent.
                let last = self.received[leg_index(from)]
                    .clone()
                    .ok_or(SdpError::NoAudio)?;
                let offer = self.answer_to(from, &last)?;
                return Ok(ReinvitePlan::Local {
                    answer: self.record_sent(from, offer),
                    commands: Vec::new(),
                });
            }
            return Ok(ReinvitePlan::Local {
                answer: last_sent,
                commands: Vec::new(),
            });
        };
        let offer = Sdp::parse(body)?;
        let remote = RemoteMedia::from_sdp(&offer)?;
        if from == LegId::Teams && remote.crypto.is_none() {
            return Err(SdpError::NoUsableCrypto);
        }
        let previous = self.received[leg_index(from)].as_ref();
        if !moved && previous.is_some_and(|p| unchanged(p, &offer)) {
            // A session refresh: our last SDP, same o= version; nothing to re-apply.
            return Ok(ReinvitePlan::Local {
                answer: last_sent,
                commands: vec![MediaCommand::SetHold {
                    leg: from.media_side(),
                    on_hold: remote.on_hold,
                }],
            });
        }
        let before = previous.map(RemoteMedia::from_sdp).transpose()?;
        let other = from.other();
        let other_sees_change = before
            .as_ref()
            .is_none_or(|b| other_leg_sees_change(b, &remote));
        if other_sees_change || self.received[leg_index(other)].is_none() {
            let (sent, origin, teams_key) = match other {
                LegId::Teams => {
                    let key = SdesKey::generate();
                    let mut origin = self.teams_origin.clone();
                    let side = self.teams_side_with(&key);
                    let sent = sdp::offer_towards_teams(&offer, &side, &mut origin)?;
                    (sent, origin, Some(key))
                }
                LegId::Carrier => {
                    let mut origin = self.carrier_origin.clone();
                    let sent =
                        sdp::offer_towards_carrier(&offer, &self.carrier_side(), &mut origin)?;
                    (sent, origin, None)
                }
            };
            return Ok(ReinvitePlan::Relay {
                offer: Bytes::from(sent.to_bytes()),
                pending: PendingOffer {
                    from,
                    offer,
                    sent,
                    origin,
                    teams_key,
                },
            });
        }
        // Only this leg's transport changed: answer from the other leg's current SDP.
        let rekeyed = self.take_offer_keys(from, before.as_ref(), &remote);
        let answer = self.answer_to(from, &offer)?;
        self.received[leg_index(from)] = Some(offer);
        let answer = self.record_sent(from, answer);
        let commands = self.reinvite_commands(&[from], rekeyed)?;
        Ok(ReinvitePlan::Local { answer, commands })
    }

    /// The other leg answered our relayed offer with 2xx and `body`: the answer for the
    /// offerer and the media commands of both legs. The other leg's new state is kept even if
    /// the offerer's answer cannot be built (that leg did accept our offer).
    pub fn reinvite_answered(
        &mut self,
        pending: PendingOffer,
        body: &[u8],
    ) -> Result<(Bytes, Vec<MediaCommand>), SdpError> {
        let answer = Sdp::parse(body)?;
        let answer_remote = RemoteMedia::from_sdp(&answer)?;
        let from = pending.from;
        let other = from.other();
        if other == LegId::Teams && answer_remote.crypto.is_none() {
            return Err(SdpError::NoUsableCrypto);
        }
        let before_other = self.received[leg_index(other)]
            .as_ref()
            .map(RemoteMedia::from_sdp)
            .transpose()?;
        let mut rekeyed = other == LegId::Teams
            && before_other.as_ref().and_then(key_of) != key_of(&answer_remote);
        match other {
            LegId::Teams => self.teams_origin = pending.origin,
            LegId::Carrier => self.carrier_origin = pending.origin,
        }
        if let Some(key) = pending.teams_key {
            self.teams_key = key;
            rekeyed = true;
        }
        self.sent[leg_index(other)] = Some(pending.sent);
        self.received[leg_index(other)] = Some(answer);

        let offer_remote = RemoteMedia::from_sdp(&pending.offer)?;
        let before_from = self.received[leg_index(from)]
            .as_ref()
            .map(RemoteMedia::from_sdp)
            .transpose()?;
        rekeyed |= self.take_offer_keys(from, before_from.as_ref(), &offer_remote);
        let out = self.answer_to(from, &pending.offer)?;
        self.received[leg_index(from)] = Some(pending.offer);
        let bytes = self.record_sent(from, out);
        let commands = self.reinvite_commands(&[LegId::Carrier, LegId::Teams], rekeyed)?;
        Ok((bytes, commands))
    }

    /// The answer in the ACK of a re-INVITE we answered with an offer (the re-INVITE had no
    /// SDP). Our offer is already out, so our key stays even if the peer's changed.
    pub fn reinvite_ack_answer(
        &mut self,
        leg: LegId,
        body: &[u8],
    ) -> Result<Vec<MediaCommand>, SdpError> {
        let answer = Sdp::parse(body)?;
        let remote = RemoteMedia::from_sdp(&answer)?;
        if leg == LegId::Teams && remote.crypto.is_none() {
            return Err(SdpError::NoUsableCrypto);
        }
        let before = self.received[leg_index(leg)]
            .as_ref()
            .map(RemoteMedia::from_sdp)
            .transpose()?;
        let rekeyed = leg == LegId::Teams && before.as_ref().and_then(key_of) != key_of(&remote);
        self.received[leg_index(leg)] = Some(answer);
        self.reinvite_commands(&[leg], rekeyed)
    }

    /// Teams offered a new SRTP key or new ICE credentials: take a fresh key / fresh ICE-lite
    /// credentials of ours for the answer. Returns whether the keys changed.
    fn take_offer_keys(
        &mut self,
        from: LegId,
        before: Option<&RemoteMedia>,
        offer: &RemoteMedia,
    ) -> bool {
        if from != LegId::Teams {
            return false;
        }
        if let (Some(old), Some(new)) = (before.and_then(ice_of), ice_of(offer)) {
            if self.ice.is_some() && old != new {
                self.ice = Some(IceCredentials::generate());
            }
        }
        let rekeyed = before.and_then(key_of) != key_of(offer);
        if rekeyed {
            self.teams_key = SdesKey::generate();
        }
        rekeyed
    }

    /// Our answer to `offer` from `from`, built from the other leg's current SDP with our
    /// fixed address on `from`'s side.
    fn answer_to(&mut self, from: LegId, offer: &Sdp) -> Result<Sdp, SdpError> {
        let other_sdp = self.received[leg_index(from.other())]
            .as_ref()
            .ok_or(SdpError::NoAudio)?;
        match from {
            LegId::Teams => {
                let mut origin = self.teams_origin.clone();
                let out =
                    sdp::answer_towards_teams(other_sdp, offer, &self.teams_side(), &mut origin)?;
                self.teams_origin = origin;
                Ok(out)
            }
            LegId::Carrier => {
                let mut origin = self.carrier_origin.clone();
                let out = sdp::answer_towards_carrier(
                    other_sdp,
                    offer,
                    &self.carrier_side(),
                    &mut origin,
                )?;
                self.carrier_origin = origin;
                Ok(out)
            }
        }
    }

    /// Media commands after a re-INVITE for `legs`: remote address, hold state (both ways,
    /// so a resume clears it), ICE-lite credentials, SRTP only when `rekeyed`, payload maps.
    fn reinvite_commands(
        &self,
        legs: &[LegId],
        rekeyed: bool,
    ) -> Result<Vec<MediaCommand>, SdpError> {
        let mut commands = Vec::new();
        for &leg in legs {
            let sdp = self.received[leg_index(leg)]
                .as_ref()
                .ok_or(SdpError::NoAudio)?;
            let remote = RemoteMedia::from_sdp(sdp)?;
            for command in self.commands_for(leg, &remote) {
                if rekeyed || !matches!(command, MediaCommand::SetSrtp { .. }) {
                    commands.push(command);
                }
            }
            commands.push(MediaCommand::SetHold {
                leg: leg.media_side(),
                on_hold: remote.on_hold,
            });
        }
        commands.extend(self.payload_maps());
        Ok(commands)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_needs_same_version_and_lines() {
        let a = Sdp::parse(b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n").unwrap();
        let same = Sdp::parse(b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n").unwrap();
        let bumped = Sdp::parse(b"v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n").unwrap();
        let edited = Sdp::parse(b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4002 RTP/AVP 0\r\n").unwrap();
        assert!(unchanged(&a, &same));
        assert!(!unchanged(&a, &bumped));
        assert!(
            !unchanged(&a, &edited),
            "same version but new content is a change"
        );
    }
}
