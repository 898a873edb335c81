//! The forwarding path's view of SRTP: the `srtp` module's in-place context, with its
//! errors folded into the two outcomes the forward step distinguishes.

use crate::media::srtp::{KeyMaterial, Mki, SrtpContext, SrtpError, SrtpSuite};

/// Why a transform failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherError {
    /// Authentication, replay or MKI check failed: drop and count as an auth failure.
    Auth,
    /// Too short, not version 2, no room for the tag, index exhausted.
    Malformed,
}

impl From<SrtpError> for CipherError {
    fn from(e: SrtpError) -> Self {
        match e {
            SrtpError::AuthFailed
            | SrtpError::Replayed
            | SrtpError::TooOld
            | SrtpError::MkiMismatch => CipherError::Auth,
            SrtpError::TooShort
            | SrtpError::BadVersion
            | SrtpError::NoRoom
            | SrtpError::IndexExhausted => CipherError::Malformed,
        }
    }
}

/// Keys of one direction of one leg, as negotiated by SDES.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    pub suite: SrtpSuite,
    pub key: KeyMaterial,
    pub mki: Option<Mki>,
}

impl SrtpKeys {
    pub fn new(suite: SrtpSuite, key: KeyMaterial) -> Self {
        Self {
            suite,
            key,
            mki: None,
        }
    }
}

/// One direction's SRTP+SRTCP context. Always built fresh from keys, so a re-key restarts
/// rollover counters and SRTCP indexes at 0 (rtpengine issue #1443).
pub struct SrtpStream {
    context: SrtpContext,
}

impl SrtpStream {
    pub fn new(keys: &SrtpKeys) -> Self {
        Self {
            context: SrtpContext::with_mki(keys.suite, &keys.key, keys.mki),
        }
    }

    /// Rollover counter of a stream this context has seen (for tests and diagnostics).
    pub fn rollover_counter(&self, ssrc: u32) -> Option<u32> {
        self.context.rollover_counter(ssrc)
    }

    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, CipherError> {
        Ok(self.context.protect_rtp(buf, len)?)
    }

    pub fn unprotect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, CipherError> {
        let packet = buf.get_mut(..len).ok_or(CipherError::Malformed)?;
        Ok(self.context.unprotect_rtp(packet)?)
    }

    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, CipherError> {
        Ok(self.context.protect_rtcp(buf, len)?)
    }

    pub fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, CipherError> {
        let packet = buf.get_mut(..len).ok_or(CipherError::Malformed)?;
        Ok(self.context.unprotect_rtcp(packet)?)
    }
}
