//! SDP layer: a line-preserving reader and rewriter (no SIP, no sockets, no media plane).
//!
//! [`Sdp::parse`] keeps every line as received; only the lines the SBC changes (`c=`, `m=`,
//! `a=crypto`, `a=candidate`, `a=ice-*`, `a=rtcp*`, direction, `a=rtpmap`/`a=fmtp`/`a=rtcp-fb`
//! of dropped formats) are interpreted. Unknown lines pass through verbatim and in order;
//! output is always CRLF. Lenient where real equipment is (`c=` after `t=`, LF-only line ends,
//! blank lines), strict and bounded where it matters (size, line and media limits, typed errors,
//! never a panic).
//!
//! The four rewrites the call layer needs, one per direction and role:
//! - [`offer_towards_teams`]: carrier offer (RTP/AVP) -> Teams offer (RTP/SAVP + SDES, rtcp-mux,
//!   ICE-lite when bypass is on, hold as `a=inactive`).
//! - [`answer_towards_teams`]: carrier answer + Teams offer -> answer to Teams.
//! - [`offer_towards_carrier`]: Teams offer -> carrier offer (RTP/AVP, no ICE/crypto).
//! - [`answer_towards_carrier`]: Teams answer + carrier offer -> answer to the carrier.
//!
//! [`RemoteMedia::from_sdp`] extracts what the media plane needs from a peer's SDP (address,
//! SRTP key, ICE credentials, payload types) and [`PtMap`] maps payload types between legs.

mod attr;
mod crypto;
mod error;
mod model;
mod origin;
mod ptmap;
mod remote;
mod rewrite;

#[cfg(test)]
mod rows_tests;

pub use attr::{Candidate, Codec, Connection, Direction, Origin, RtcpAttr};
pub use crypto::{
    parse_crypto, select_crypto, CryptoAttr, Mki, SdesKey, SelectedCrypto, SrtpSuite,
    SDES_KEY_SALT_LEN, SDES_LIFETIME,
};
pub use error::SdpError;
pub use model::{Line, MediaSection, Sdp};
pub use origin::LegOrigin;
pub use ptmap::{CallPtMaps, PtMap};
pub use remote::{PayloadInfo, RemoteCandidate, RemoteIce, RemoteMedia};
pub use rewrite::{
    answer_towards_carrier, answer_towards_teams, offer_towards_carrier, offer_towards_teams,
    rejected_media_section, CarrierSide, CodecList, IceCredentials, TeamsSide,
};

/// Size limits applied while parsing; every value comes from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdpLimits {
    /// Whole body, bytes. Default 16 KiB (Teams SDP with ICE is 2-4 KiB).
    pub max_bytes: usize,
    /// Lines, counting blank ones. Default 256.
    pub max_lines: usize,
    /// `m=` sections. Default 8.
    pub max_media: usize,
    /// Formats on one `m=` line. Default 64. Bounds the per-format lookups of the rewrites.
    pub max_formats: usize,
}

impl Default for SdpLimits {
    fn default() -> Self {
        SdpLimits {
            max_bytes: 16 * 1024,
            max_lines: 256,
            max_media: 8,
            max_formats: 64,
        }
    }
}
