//! SRTP/SRTCP for the Teams leg (docs/teams-direct-routing.md §3.1, rows 43-45).
//!
//! * [`keys`]: suites, key material and MKI, as the call layer hands them over from the SDES
//!   line the SDP layer chose (`sdp::crypto` owns the text).
//! * [`SrtpContext`]: the production, allocation-free in-place implementation on RustCrypto
//!   primitives (AES-128-CM + HMAC-SHA1, RFC 3711), with index estimation, a 64-packet
//!   replay window and optional MKI. `webrtc-srtp` stays in the tree as its test oracle
//!   (see `oracle_tests`) and as the benchmark baseline (benches/media.rs).
//!
//! A context is one-directional: protect with the key we offered, unprotect with the key
//! the peer offered. Re-keying means a fresh context.

mod context;
mod kdf;
pub mod keys;
mod replay;

#[cfg(test)]
mod context_tests;
#[cfg(test)]
mod oracle_tests;

pub use context::SrtpContext;
pub use keys::{KeyMaterial, Mki, SrtpSuite};

/// Why a packet could not be protected or unprotected. The caller drops the packet and
/// counts the error (see [`SrtpError::label`]); nothing here panics on packet contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    #[error("packet too short")]
    TooShort,
    #[error("not an RTP/RTCP version 2 packet")]
    BadVersion,
    #[error("buffer has no room for the SRTP trailer")]
    NoRoom,
    #[error("authentication tag mismatch")]
    AuthFailed,
    #[error("packet index already seen")]
    Replayed,
    #[error("packet index older than the replay window")]
    TooOld,
    #[error("MKI does not match the context")]
    MkiMismatch,
    #[error("packet index space exhausted; re-key needed")]
    IndexExhausted,
}

impl SrtpError {
    /// A fixed, low-cardinality name for metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Self::TooShort => "too_short",
            Self::BadVersion => "bad_version",
            Self::NoRoom => "no_room",
            Self::AuthFailed => "auth_failed",
            Self::Replayed => "replayed",
            Self::TooOld => "too_old",
            Self::MkiMismatch => "mki_mismatch",
            Self::IndexExhausted => "index_exhausted",
        }
    }
}
