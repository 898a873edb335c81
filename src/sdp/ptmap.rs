//! Payload type mapping between the legs, for codecs and telephone-event that carry different
//! dynamic numbers on each side (row 48).
//!
//! A sender uses the numbers of the SDP it *received*: the carrier sends with the numbers of
//! the SDP the SBC sent to the carrier, Teams with those the SBC sent to Teams. So packets
//! from the carrier map from "SDP sent to carrier" to "SDP received from Teams", and packets
//! from Teams map from "SDP sent to Teams" to "SDP received from the carrier".

use smallvec::SmallVec;

use super::attr::matching_pt;
use super::model::{MediaSection, Sdp};

/// Payload type translation for one direction of one call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PtMap {
    /// (incoming payload type, outgoing payload type), one entry per incoming type.
    pairs: SmallVec<[(u8, u8); 16]>,
}

impl PtMap {
    /// Maps each payload type of `sender_uses` to the payload type of `receiver_expects` with
    /// the same encoding, clock rate and channels (preferring the same number).
    pub fn between(sender_uses: &MediaSection, receiver_expects: &MediaSection) -> PtMap {
        let expected = receiver_expects.codecs();
        let pairs = sender_uses
            .codecs()
            .iter()
            .filter_map(|c| Some((c.pt, matching_pt(&expected, c)?)))
            .collect();
        PtMap { pairs }
    }

    /// Outgoing payload type for `pt`, `None` when the receiver did not negotiate that codec.
    pub fn map(&self, pt: u8) -> Option<u8> {
        self.pairs.iter().find(|(i, _)| *i == pt).map(|(_, o)| *o)
    }

    /// True when every mapped type keeps its number (the media plane can skip rewriting).
    pub fn is_identity(&self) -> bool {
        self.pairs.iter().all(|(i, o)| i == o)
    }

    pub fn pairs(&self) -> &[(u8, u8)] {
        &self.pairs
    }

    /// Flat table for the media hot path: index by the 7-bit payload type; `0xFF` = drop.
    pub fn lookup_table(&self) -> [u8; 128] {
        let mut table = [0xFFu8; 128];
        for (i, o) in &self.pairs {
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
    /// From the four SDPs of a completed offer/answer (each side's anchored audio stream).
    /// `None` when one of them has no active audio stream.
    pub fn compute(
        sent_to_carrier: &Sdp,
        received_from_carrier: &Sdp,
        sent_to_teams: &Sdp,
        received_from_teams: &Sdp,
    ) -> Option<CallPtMaps> {
        Some(CallPtMaps {
            carrier_to_teams: PtMap::between(audio(sent_to_carrier)?, audio(received_from_teams)?),
            teams_to_carrier: PtMap::between(audio(sent_to_teams)?, audio(received_from_carrier)?),
        })
    }
}
