//! The forwarding path's view of SRTP: one stream context per leg and direction, working
//! in place on a packet buffer that has tail room for the tag.

use crate::media::sys::PACKET_BUFFER_LEN;

/// Why a transform failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherError {
    /// Authentication tag or replay check failed: the packet must be dropped and counted.
    Auth,
    /// The packet is too short, or there is no room for the tag.
    Malformed,
}

/// Suite and master key+salt of one direction of one leg.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamKey {
    pub tag_80: bool,
    pub master_key: [u8; 16],
    pub master_salt: [u8; 14],
}

impl std::fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamKey")
            .field("tag_80", &self.tag_80)
            .finish_non_exhaustive()
    }
}

/// A fresh SRTP+SRTCP context for one direction (rollover counter and SRTCP index at 0).
pub struct SrtpStream {
    context: webrtc_srtp::context::Context,
}

impl SrtpStream {
    pub fn new(key: &StreamKey) -> Result<Self, CipherError> {
        let profile = if key.tag_80 {
            webrtc_srtp::protection_profile::ProtectionProfile::Aes128CmHmacSha1_80
        } else {
            webrtc_srtp::protection_profile::ProtectionProfile::Aes128CmHmacSha1_32
        };
        let context = webrtc_srtp::context::Context::new(
            &key.master_key,
            &key.master_salt,
            profile,
            None,
            None,
        )
        .map_err(|_| CipherError::Malformed)?;
        Ok(Self { context })
    }

    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, CipherError> {
        let out = self
            .context
            .encrypt_rtp(buf.get(..len).ok_or(CipherError::Malformed)?)
            .map_err(|_| CipherError::Malformed)?;
        copy_back(buf, &out)
    }

    pub fn unprotect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, CipherError> {
        let out = self
            .context
            .decrypt_rtp(buf.get(..len).ok_or(CipherError::Malformed)?)
            .map_err(|_| CipherError::Auth)?;
        copy_back(buf, &out)
    }

    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, CipherError> {
        let out = self
            .context
            .encrypt_rtcp(buf.get(..len).ok_or(CipherError::Malformed)?)
            .map_err(|_| CipherError::Malformed)?;
        copy_back(buf, &out)
    }

    pub fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, CipherError> {
        let out = self
            .context
            .decrypt_rtcp(buf.get(..len).ok_or(CipherError::Malformed)?)
            .map_err(|_| CipherError::Auth)?;
        copy_back(buf, &out)
    }
}

fn copy_back(buf: &mut [u8], out: &[u8]) -> Result<usize, CipherError> {
    if out.len() > buf.len().min(PACKET_BUFFER_LEN) {
        return Err(CipherError::Malformed);
    }
    buf[..out.len()].copy_from_slice(out);
    Ok(out.len())
}
