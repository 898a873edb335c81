//! Payload type mapping between the legs, for codecs and telephone-event that carry different
//! dynamic numbers on each side (row 48).
//!
//! A sender uses the numbers of the SDP it *received*: the carrier sends with the numbers of
//! the SDP the SBC sent to the carrier, Teams with those the SBC sent to Teams. So packets
//! from the carrier map from "SDP sent to carrier" to "SDP received from Teams", and packets
//! from Teams map from "SDP sent to Teams" to "SDP received from the carrier".
//!
//! RFC 3264 only says an answer SHOULD reuse the offer's numbers, and many endpoints send
//! with the numbers of their *own* SDP (they assume payload types are symmetric). A Teams
//! answer of `telephone-event/96` to our offer of 101 then produces DTMF with PT 96, not 101.
//! Such numbers are mapped as well ("aliases"), unless the sender was told that number means
//! something else: the RFC reading always wins a conflict.

use smallvec::SmallVec;

use super::attr::matching_pt;
use super::model::{MediaSection, Sdp};

/// Payload type translation for one direction of one call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PtMap {
    /// (incoming payload type, outgoing payload type), one entry per incoming type, from the
    /// SDP the sender received (RFC 3264).
    pairs: SmallVec<[(u8, u8); 16]>,
    /// The same, for numbers only the sender's own SDP declared (never one of `pairs`).
    aliases: SmallVec<[(u8, u8); 8]>,
    /// RTP clock rate of each incoming type: `pairs` first, then `aliases`, in order.
    clock_rates: SmallVec<[u32; 16]>,
}

impl PtMap {
    /// Maps each payload type of `sender_uses` to the payload type of `receiver_expects` with
    /// the same encoding, clock rate and channels (preferring the same number).
    pub fn between(sender_uses: &MediaSection, receiver_expects: &MediaSection) -> PtMap {
        let expected = receiver_expects.codecs();
        let mut map = PtMap::default();
        for codec in sender_uses.codecs().iter() {
            if let Some(out) = matching_pt(&expected, codec) {
                map.pairs.push((codec.pt, out));
                map.clock_rates.push(codec.clock_rate);
            }
        }
        map
    }

    /// Adds the numbers of the sender's own SDP (`sender_declared`) that it was not given a
    /// meaning for, mapped like the codec they declare (see the module docs).
    pub fn with_sender_numbers(
        mut self,
        sender_declared: &MediaSection,
        receiver_expects: &MediaSection,
    ) -> PtMap {
        let expected = receiver_expects.codecs();
        for codec in sender_declared.codecs().iter() {
            if self.map(codec.pt).is_some() {
                continue;
            }
            if let Some(out) = matching_pt(&expected, codec) {
                self.aliases.push((codec.pt, out));
                self.clock_rates.push(codec.clock_rate);
            }
        }
        self
    }

    /// Outgoing payload type for `pt`, `None` when the receiver did not negotiate that codec.
    pub fn map(&self, pt: u8) -> Option<u8> {
        self.pairs
            .iter()
            .chain(self.aliases.iter())
            .find(|(i, _)| *i == pt)
            .map(|(_, o)| *o)
    }

    /// True when every mapped type keeps its number (the media plane can skip rewriting).
    pub fn is_identity(&self) -> bool {
        self.pairs
            .iter()
            .chain(self.aliases.iter())
            .all(|(i, o)| i == o)
    }

    /// The RFC 3264 pairs (numbers from the SDP the sender received), without aliases.
    pub fn pairs(&self) -> &[(u8, u8)] {
        &self.pairs
    }

    /// Alias pairs (numbers from the sender's own SDP only).
    pub fn aliases(&self) -> &[(u8, u8)] {
        &self.aliases
    }

    /// Every mapping the media plane needs: (incoming, outgoing, clock rate of the incoming
    /// type), pairs first, then aliases.
    pub fn entries(&self) -> impl Iterator<Item = (u8, u8, u32)> + '_ {
        self.pairs
            .iter()
            .chain(self.aliases.iter())
            .zip(self.clock_rates.iter())
            .map(|((i, o), rate)| (*i, *o, *rate))
    }

    /// Flat table for the media hot path: index by the 7-bit payload type; `0xFF` = drop.
    pub fn lookup_table(&self) -> [u8; 128] {
        let mut table = [0xFFu8; 128];
        for (i, o) in self.pairs.iter().chain(self.aliases.iter()) {
            if let Some(slot) = table.get_mut(usize::from(*i)) {
                *slot = *o;
            }
        }
        table
    }
}

fn audio(sdp: &Sdp) -> Option<&MediaSection> {
    sdp.primary_audio_index().and_then(|i| sdp.media().get(i))
}

/// Both directions of a call's payload type translation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallPtMaps {
    pub carrier_to_teams: PtMap,
    pub teams_to_carrier: PtMap,
}

impl CallPtMaps {
    /// From the four SDPs of a completed (or early, 18x) offer/answer (each side's anchored
    /// audio stream). `None` when one of them has no active audio stream.
    pub fn compute(
        sent_to_carrier: &Sdp,
        received_from_carrier: &Sdp,
        sent_to_teams: &Sdp,
        received_from_teams: &Sdp,
    ) -> Option<CallPtMaps> {
        let (sent_c, recv_c) = (audio(sent_to_carrier)?, audio(received_from_carrier)?);
        let (sent_t, recv_t) = (audio(sent_to_teams)?, audio(received_from_teams)?);
        Some(CallPtMaps {
            carrier_to_teams: PtMap::between(sent_c, recv_t).with_sender_numbers(recv_c, recv_t),
            teams_to_carrier: PtMap::between(sent_t, recv_c).with_sender_numbers(recv_t, recv_c),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An audio SDP with `formats` on the `m=` line and `a=rtpmap` lines `maps`
    /// (`"101 telephone-event/8000"`, ...).
    fn audio_sdp(formats: &str, maps: &[&str]) -> Sdp {
        let mut text = format!(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP {formats}\r\n"
        );
        for map in maps {
            text.push_str(&format!("a=rtpmap:{map}\r\n"));
        }
        Sdp::parse(text.as_bytes()).unwrap()
    }

    const TE101: &str = "101 telephone-event/8000";

    /// Row 48, PSTN -> Teams: the carrier offers telephone-event/101 (we offer Teams the same
    /// numbers and answer the carrier with them), Teams answers it as 96.
    fn carrier_offers_101_teams_answers_96() -> CallPtMaps {
        let carrier_offer = audio_sdp("0 101", &["0 PCMU/8000", TE101]);
        let offer_to_teams = audio_sdp("0 101", &["0 PCMU/8000", TE101]);
        let teams_answer = audio_sdp("0 96", &["0 PCMU/8000", "96 telephone-event/8000"]);
        let answer_to_carrier = audio_sdp("0 101", &["0 PCMU/8000", TE101]);
        CallPtMaps::compute(
            &answer_to_carrier,
            &carrier_offer,
            &offer_to_teams,
            &teams_answer,
        )
        .unwrap()
    }

    #[test]
    fn row48_carrier_101_reaches_teams_as_96() {
        let maps = carrier_offers_101_teams_answers_96();
        assert_eq!(maps.carrier_to_teams.map(101), Some(96));
        assert_eq!(maps.carrier_to_teams.map(0), Some(0));
        assert!(maps.carrier_to_teams.aliases().is_empty());
        assert!(!maps.carrier_to_teams.is_identity());
        assert_eq!(maps.carrier_to_teams.lookup_table()[101], 96);
    }

    #[test]
    fn row48_teams_dtmf_reaches_the_carrier_as_101_under_either_number() {
        let maps = carrier_offers_101_teams_answers_96();
        // RFC 3264: Teams sends with the numbers of our offer.
        assert_eq!(maps.teams_to_carrier.map(101), Some(101));
        // Teams sending with the number of its own answer (symmetric payload types).
        assert_eq!(maps.teams_to_carrier.map(96), Some(101));
        assert_eq!(maps.teams_to_carrier.aliases(), &[(96, 101)]);
        assert_eq!(maps.teams_to_carrier.pairs(), &[(0, 0), (101, 101)]);
        let entries: Vec<_> = maps.teams_to_carrier.entries().collect();
        assert_eq!(
            entries,
            vec![(0, 0, 8000), (101, 101, 8000), (96, 101, 8000)]
        );
        assert_eq!(maps.teams_to_carrier.lookup_table()[96], 101);
    }

    /// Row 48, Teams -> PSTN: Teams offers telephone-event/127 (passed to the carrier as 127),
    /// the carrier answers it as 101 (our answer to Teams keeps 127).
    #[test]
    fn row48_teams_127_and_carrier_101_map_both_ways() {
        let teams_offer = audio_sdp("0 127", &["0 PCMU/8000", "127 telephone-event/8000"]);
        let offer_to_carrier = teams_offer.clone();
        let carrier_answer = audio_sdp("0 101", &["0 PCMU/8000", TE101]);
        let answer_to_teams = teams_offer.clone();
        let maps = CallPtMaps::compute(
            &offer_to_carrier,
            &carrier_answer,
            &answer_to_teams,
            &teams_offer,
        )
        .unwrap();
        assert_eq!(maps.teams_to_carrier.map(127), Some(101));
        assert_eq!(maps.carrier_to_teams.map(127), Some(127));
        assert_eq!(maps.carrier_to_teams.map(101), Some(127));
        assert_eq!(maps.carrier_to_teams.aliases(), &[(101, 127)]);
    }

    /// The sender's own number means something else in what it was told: the RFC 3264
    /// meaning wins, no alias.
    #[test]
    fn an_alias_never_overrides_a_negotiated_number() {
        // We told the carrier 96 = telephone-event, 101 = CN/8000 (both Teams' numbers).
        let offer_to_carrier = audio_sdp("0 96 101", &["96 telephone-event/8000", "101 CN/8000"]);
        let teams_offer = offer_to_carrier.clone();
        // The carrier's answer calls telephone-event 101.
        let carrier_answer = audio_sdp("0 101", &[TE101]);
        let maps = CallPtMaps::compute(
            &offer_to_carrier,
            &carrier_answer,
            &teams_offer,
            &teams_offer,
        )
        .unwrap();
        assert_eq!(maps.carrier_to_teams.map(101), Some(101), "CN stays CN");
        assert_eq!(maps.carrier_to_teams.map(96), Some(96));
        assert!(maps.carrier_to_teams.aliases().is_empty());
    }

    #[test]
    fn no_alias_for_a_codec_the_receiver_did_not_negotiate() {
        let offer_to_carrier = audio_sdp("0", &[]);
        let carrier_answer = audio_sdp("0 98", &["98 opus/48000/2"]);
        let teams = audio_sdp("0", &[]);
        let maps = CallPtMaps::compute(&offer_to_carrier, &carrier_answer, &teams, &teams).unwrap();
        assert_eq!(maps.carrier_to_teams.map(98), None);
        assert_eq!(maps.carrier_to_teams.lookup_table()[98], 0xFF);
        assert!(maps.carrier_to_teams.is_identity());
    }

    #[test]
    fn entries_carry_the_incoming_clock_rate() {
        let sender = audio_sdp("9 97", &["9 G722/8000", "97 telephone-event/16000"]);
        let receiver = audio_sdp("9 100", &["9 G722/8000", "100 telephone-event/16000"]);
        let map = PtMap::between(
            sender.media().first().unwrap(),
            receiver.media().first().unwrap(),
        );
        let entries: Vec<_> = map.entries().collect();
        assert_eq!(entries, vec![(9, 9, 8000), (97, 100, 16000)]);
        // telephone-event/8000 is a different codec from telephone-event/16000.
        let narrow = audio_sdp("101", &[TE101]);
        let map = PtMap::between(
            narrow.media().first().unwrap(),
            receiver.media().first().unwrap(),
        );
        assert_eq!(map.map(101), None);
    }
}
