//! What the media plane needs from a peer's SDP (offer or answer), as owned values.

use std::net::SocketAddr;

use super::attr::Direction;
use super::crypto::{select_crypto, SelectedCrypto};
use super::model::Sdp;
use super::SdpError;

/// One payload type of the peer's `m=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadInfo {
    pub pt: u8,
    /// Encoding name from `a=rtpmap` or the static table; empty when unknown.
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: u8,
    pub fmtp: Option<String>,
}

/// A peer ICE candidate with an IP address (name-based candidates are skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCandidate {
    pub foundation: String,
    pub component: u16,
    pub transport: String,
    pub priority: u32,
    pub addr: SocketAddr,
    /// `host`, `srflx`, `relay`, ...
    pub kind: String,
}

/// The peer's ICE parameters (Teams is full ICE and controlling on bypass calls).
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteIce {
    pub ufrag: String,
    pub pwd: String,
    /// The peer declared `a=ice-lite`.
    pub lite: bool,
    pub candidates: Vec<RemoteCandidate>,
}

impl std::fmt::Debug for RemoteIce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteIce")
            .field("ufrag", &self.ufrag)
            .field("lite", &self.lite)
            .field("candidates", &self.candidates)
            .finish_non_exhaustive()
    }
}

/// The anchored audio stream of a peer's SDP, as the call layer hands it to the media API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMedia {
    /// Index of the `m=` section (the first active audio stream).
    pub media_index: usize,
    /// Where to send RTP. The IP is `0.0.0.0` when the peer holds with a zero address: send
    /// nothing there.
    pub rtp: SocketAddr,
    /// Where to send RTCP: `rtp` with rtcp-mux, else `a=rtcp` or port + 1.
    pub rtcp: SocketAddr,
    pub rtcp_mux: bool,
    /// Transport profile as written (`RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVP`, ...).
    pub profile: String,
    /// The peer's SRTP key: chosen line (`_80` first, then without MKI; rows 43, 44).
    pub crypto: Option<SelectedCrypto>,
    pub ice: Option<RemoteIce>,
    /// Payload types in the peer's order of preference.
    pub payloads: Vec<PayloadInfo>,
    /// Payload type of `telephone-event/8000`, if offered (RFC 4733 DTMF).
    pub telephone_event_pt: Option<u8>,
    /// Effective direction (`sendrecv` when unspecified).
    pub direction: Direction,
    /// The peer holds: direction other than sendrecv, or a zero connection address.
    pub on_hold: bool,
    pub ptime: Option<u32>,
    pub maxptime: Option<u32>,
}

impl RemoteMedia {
    /// Extracts the first active audio stream. Errors: [`SdpError::NoAudio`],
    /// [`SdpError::MissingConnection`].
    pub fn from_sdp(sdp: &Sdp) -> Result<RemoteMedia, SdpError> {
        let index = sdp.primary_audio_index().ok_or(SdpError::NoAudio)?;
        let section = sdp.media().get(index).ok_or(SdpError::NoAudio)?;
        let connection = sdp
            .connection_of(index)
            .ok_or(SdpError::MissingConnection)?;
        let rtp = SocketAddr::new(connection.addr, section.port());
        let rtcp_mux = section.rtcp_mux();
        let rtcp = match (rtcp_mux, section.rtcp()) {
            (true, _) => rtp,
            (false, Some(attr)) => SocketAddr::new(
                attr.connection.map_or(connection.addr, |c| c.addr),
                attr.port,
            ),
            (false, None) => SocketAddr::new(connection.addr, rtp.port().saturating_add(1)),
        };
        let ice = match (sdp.ice_ufrag_of(index), sdp.ice_pwd_of(index)) {
            (Some(ufrag), Some(pwd)) => Some(RemoteIce {
                ufrag: ufrag.trim().to_owned(),
                pwd: pwd.trim().to_owned(),
                lite: sdp.is_ice_lite(),
                candidates: section
                    .candidates()
                    .filter_map(|c| {
                        Some(RemoteCandidate {
                            foundation: c.foundation.to_owned(),
                            component: c.component,
                            transport: c.transport.to_owned(),
                            priority: c.priority,
                            addr: SocketAddr::new(c.ip()?, c.port),
                            kind: c.kind.to_owned(),
                        })
                    })
                    .collect(),
            }),
            _ => None,
        };
        let payloads: Vec<PayloadInfo> = section
            .payloads()
            .map(|(pt, codec, fmtp)| PayloadInfo {
                pt,
                encoding: codec.map_or_else(String::new, |c| c.encoding.to_owned()),
                clock_rate: codec.map_or(0, |c| c.clock_rate),
                channels: codec.map_or(1, |c| c.channels),
                fmtp: fmtp.map(str::to_owned),
            })
            .collect();
        let telephone_event_pt = payloads
            .iter()
            .find(|p| p.encoding.eq_ignore_ascii_case("telephone-event") && p.clock_rate == 8000)
            .map(|p| p.pt);
        let direction = sdp.direction_of(index).unwrap_or(Direction::SendRecv);
        Ok(RemoteMedia {
            media_index: index,
            rtp,
            rtcp,
            rtcp_mux,
            profile: section.profile().to_owned(),
            crypto: select_crypto(section.crypto()),
            ice,
            payloads,
            telephone_event_pt,
            direction,
            on_hold: direction != Direction::SendRecv || connection.is_hold_address(),
            ptime: section.ptime(),
            maxptime: section.maxptime(),
        })
    }
}
