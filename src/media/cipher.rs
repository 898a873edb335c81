//! The forwarding path's view of SRTP: the `srtp` module's in-place context with the keys it
//! was built from, its errors folded into the two outcomes the forward step distinguishes,
//! and the detection of a stream its sender restarted.

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

/// Consecutive packets of a restarted stream (each authenticating as the start of a fresh
/// stream) before its replay window starts again there.
pub const RESTART_PACKETS: u8 = 3;

/// A stream the peer seems to have restarted: the next sequence number expected and how
/// many packets in a row have authenticated as its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RestartProbe {
    ssrc: u32,
    next_sequence: u16,
    packets: u8,
}

/// One direction's SRTP+SRTCP context, with the keys it was built from. Built fresh for
/// each new key (rollover counters start at 0, as SDES requires); the leg never builds a
/// second one for the same key (see `LegState::set_srtp`).
pub struct SrtpStream {
    keys: SrtpKeys,
    context: SrtpContext,
    restart: Option<RestartProbe>,
}

impl SrtpStream {
    pub fn new(keys: &SrtpKeys) -> Self {
        Self {
            keys: keys.clone(),
            context: SrtpContext::with_mki(keys.suite, &keys.key, keys.mki),
            restart: None,
        }
    }

    pub fn keys(&self) -> &SrtpKeys {
        &self.keys
    }

    /// Rollover counter of a stream this context has seen (for tests and diagnostics).
    pub fn rollover_counter(&self, ssrc: u32) -> Option<u32> {
        self.context.rollover_counter(ssrc)
    }

    /// Index the next SRTCP packet this context protects will carry.
    pub fn next_srtcp_index(&self) -> u32 {
        self.context.next_srtcp_index()
    }

    /// Continues after `previous` (the outbound context this one replaces): SRTCP indexes
    /// keep rising instead of starting again at 0 (RFC 3711 §3.3.2: never reset by a re-key).
    pub fn continue_srtcp_index_of(&mut self, previous: &SrtpStream) {
        self.context
            .raise_srtcp_index(previous.context.next_srtcp_index());
    }

    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, CipherError> {
        Ok(self.context.protect_rtp(buf, len)?)
    }

    pub fn unprotect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, CipherError> {
        let packet = buf.get_mut(..len).ok_or(CipherError::Malformed)?;
        Ok(self.context.unprotect_rtp(packet)?)
    }

    /// A packet `unprotect_rtp` refused may belong to a stream the peer restarted under the
    /// same key (same SSRC, a new sender context: rollover counter 0, sequence numbers from
    /// elsewhere), which the replay window would otherwise refuse for up to 65,536 packets.
    /// Once [`RESTART_PACKETS`] consecutive packets authenticate as the start of such a
    /// stream while `quiet` (the stream the window knows has gone silent), the window starts
    /// again there and the packet is decrypted. A replay of old packets while the genuine
    /// stream flows is never quiet, so it never restarts anything.
    pub fn unprotect_restarted_rtp(
        &mut self,
        buf: &mut [u8],
        len: usize,
        quiet: bool,
    ) -> Option<usize> {
        let packet = buf.get_mut(..len)?;
        let ssrc = self.context.restart_candidate(packet)?;
        self.context.verify_as_restart(packet).ok()?;
        let sequence = u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]);
        let packets = match self.restart {
            Some(probe) if probe.ssrc == ssrc && probe.next_sequence == sequence => {
                probe.packets.saturating_add(1)
            }
            _ => 1,
        };
        if packets < RESTART_PACKETS || !quiet {
            self.restart = Some(RestartProbe {
                ssrc,
                next_sequence: sequence.wrapping_add(1),
                packets,
            });
            return None;
        }
        self.restart = None;
        self.context.restart_stream(packet).ok()
    }

    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, CipherError> {
        Ok(self.context.protect_rtcp(buf, len)?)
    }

    pub fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, CipherError> {
        let packet = buf.get_mut(..len).ok_or(CipherError::Malformed)?;
        Ok(self.context.unprotect_rtcp(packet)?)
    }
}
