//! In-place SRTP/SRTCP (RFC 3711) for the AES-CM-128 / HMAC-SHA1 suites.
//!
//! Per packet the work is one AES-CTR keystream over the payload (the AES key schedule is
//! expanded once per context) and one HMAC-SHA1 finish (the inner and outer padded key
//! states are hashed once per context and cloned per packet). Nothing allocates and the
//! packet never moves: the caller's buffer needs room after the packet for the trailer.

use aes::cipher::KeyInit;
use aes::Aes128;
use hmac::digest::generic_array::GenericArray;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::kdf::{apply_keystream, packet_iv, SessionKeys, SESSION_SALT_LEN};
use super::keys::{KeyMaterial, Mki, SrtpSuite};
use super::replay::ReplayWindow;
use super::SrtpError;

type HmacSha1 = Hmac<Sha1>;

/// SSRCs tracked per context. A leg normally has one; a few more cover SSRC changes on
/// transfer without allocating. The least recently used is forgotten first.
pub(super) const MAX_STREAMS: usize = 8;
const RTP_HEADER_LEN: usize = 12;
const RTCP_HEADER_LEN: usize = 8;
const SRTCP_INDEX_LEN: usize = 4;
const SRTCP_E_FLAG: u32 = 0x8000_0000;
const MAX_SRTCP_INDEX: u32 = 0x7FFF_FFFF;
const HMAC_SHA1_BLOCK_LEN: usize = 64;

/// Keys of one packet family (SRTP or SRTCP), expanded for per-packet use.
#[derive(Clone)]
struct PacketCrypto {
    cipher: Aes128,
    salt: [u8; SESSION_SALT_LEN],
    mac: HmacSha1,
}

impl PacketCrypto {
    fn new(keys: &SessionKeys) -> Self {
        // HMAC pads a key shorter than the block with zeros (RFC 2104 §2), so keying with
        // the zero-padded block is the same MAC and cannot fail on length.
        let mut padded = [0u8; HMAC_SHA1_BLOCK_LEN];
        padded[..keys.authentication.len()].copy_from_slice(&keys.authentication);
        Self {
            cipher: Aes128::new((&keys.encryption).into()),
            salt: keys.salt,
            mac: <HmacSha1 as KeyInit>::new(GenericArray::from_slice(&padded)),
        }
    }

    fn crypt(&self, ssrc: u32, index: u64, data: &mut [u8]) {
        apply_keystream(&self.cipher, &packet_iv(&self.salt, ssrc, index), data);
    }

    fn tag(&self, authenticated: &[u8], trailer: &[u8]) -> [u8; 20] {
        let mut mac = self.mac.clone();
        mac.update(authenticated);
        mac.update(trailer);
        mac.finalize().into_bytes().into()
    }

    /// Constant-time comparison of the leftmost tag bytes.
    fn verify(&self, authenticated: &[u8], trailer: &[u8], tag: &[u8]) -> Result<(), SrtpError> {
        let mut mac = self.mac.clone();
        mac.update(authenticated);
        mac.update(trailer);
        mac.verify_truncated_left(tag)
            .map_err(|_| SrtpError::AuthFailed)
    }
}

#[derive(Clone, Copy, Default)]
struct StreamState {
    ssrc: u32,
    in_use: bool,
    last_used: u64,
    rtp: ReplayWindow,
    rtcp: ReplayWindow,
    /// Protect side: added to the sender's sequence numbers since it restarted its stream,
    /// so the stream continues where it was instead of reusing indexes (and keystream).
    sequence_offset: u16,
    /// Protect side: the sequence number that confirms a restart when it is refused too.
    restart_confirmed_by: Option<u16>,
}

/// One SRTP cryptographic context: one master key, used for ONE direction (protect what
/// we send with our offered key, unprotect what we receive with the peer's key).
///
/// Create a fresh context on every new key: its rollover counters start at 0, as SDES
/// requires. Its SRTCP index is one counter for all SSRCs, so an SSRC forgotten and seen
/// again never gets an index twice; a context replacing another can continue its index
/// ([`SrtpContext::raise_srtcp_index`]).
#[derive(Clone)]
pub struct SrtpContext {
    suite: SrtpSuite,
    mki: Option<Mki>,
    rtp: PacketCrypto,
    rtcp: PacketCrypto,
    streams: [StreamState; MAX_STREAMS],
    clock: u64,
    /// SRTCP index of the next packet we protect, shared by every SSRC rather than kept per
    /// stream: a stream table entry can be forgotten (more than `MAX_STREAMS` SSRCs), and a
    /// per-stream counter would then restart at 0 for an SSRC that comes back, sending the
    /// same (SSRC, index) under the same key twice: a reused keystream, and a replay the
    /// receiver drops. A shared counter only ever grows, which receivers accept as gaps.
    next_srtcp_index: u32,
}

impl std::fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpContext")
            .field("suite", &self.suite)
            .field("mki", &self.mki)
            .finish_non_exhaustive()
    }
}

impl SrtpContext {
    pub fn new(suite: SrtpSuite, key: &KeyMaterial) -> Self {
        Self::with_mki(suite, key, None)
    }

    /// A context whose packets carry (and must carry) `mki` before the tag.
    pub fn with_mki(suite: SrtpSuite, key: &KeyMaterial, mki: Option<Mki>) -> Self {
        Self {
            suite,
            mki,
            rtp: PacketCrypto::new(&SessionKeys::derive_rtp(key)),
            rtcp: PacketCrypto::new(&SessionKeys::derive_rtcp(key)),
            streams: [StreamState::default(); MAX_STREAMS],
            next_srtcp_index: 0,
            clock: 0,
        }
    }

    pub fn suite(&self) -> SrtpSuite {
        self.suite
    }

    /// Bytes `protect_rtp` appends (MKI + tag).
    pub fn rtp_overhead(&self) -> usize {
        self.mki_len() + self.suite.rtp_tag_len()
    }

    /// Bytes `protect_rtcp` appends (E flag + index, MKI, tag).
    pub fn rtcp_overhead(&self) -> usize {
        SRTCP_INDEX_LEN + self.mki_len() + self.suite.rtcp_tag_len()
    }

    /// Rollover counter of `ssrc`'s highest packet so far, if the stream is known.
    pub fn rollover_counter(&self, ssrc: u32) -> Option<u32> {
        let slot = self.find(ssrc)?;
        self.streams[slot]
            .rtp
            .highest()
            .map(|index| (index >> 16) as u32)
    }

    /// Encrypts and authenticates the RTP packet in `buf[..len]` in place and returns the
    /// SRTP length (`len + rtp_overhead()`); `buf` must be that long. A packet whose index
    /// was already sent (or is older than the window) is refused, so a keystream is never
    /// used twice. When two consecutive packets of a stream are refused as too old, the
    /// sender has restarted its sequence numbers: from the second one on they are rewritten
    /// to continue the stream as sent so far (the first is dropped), so the receiver sees
    /// one unbroken stream and no index repeats.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let out_len = self.room_for(buf, len, self.rtp_overhead())?;
        let header_len = rtp_header_len(&buf[..len])?;
        let (sent_seq, ssrc) = rtp_seq_ssrc(buf);
        let slot = self.slot_for(ssrc);
        let mut window = self.streams[slot].rtp;
        let mut offset = self.streams[slot].sequence_offset;
        let mut seq = sent_seq.wrapping_add(offset);
        let index = match checked_index(&window, seq) {
            Ok(index) => index,
            Err(SrtpError::TooOld) => {
                let (continued, index) = self.continue_restarted_stream(slot, sent_seq)?;
                offset = continued.wrapping_sub(sent_seq);
                seq = continued;
                window = self.streams[slot].rtp;
                index
            }
            Err(error) => return Err(error),
        };
        if seq != sent_seq {
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
        }

        self.rtp.crypt(ssrc, index, &mut buf[header_len..len]);
        let tag_at = self.write_mki(buf, len);
        let roc = ((index >> 16) as u32).to_be_bytes();
        let tag = self.rtp.tag(&buf[..len], &roc);
        buf[tag_at..out_len].copy_from_slice(&tag[..out_len - tag_at]);

        window.accept(index);
        let stream = &mut self.streams[slot];
        stream.rtp = window;
        stream.sequence_offset = offset;
        stream.restart_confirmed_by = None;
        Ok(out_len)
    }

    /// A packet of the stream in `slot` was refused as too old: the second such packet in a
    /// row (`sent_seq` following the first) confirms that its sender restarted, and gets the
    /// sequence number (and index) after the highest sent; the first is refused.
    #[cold]
    fn continue_restarted_stream(
        &mut self,
        slot: usize,
        sent_seq: u16,
    ) -> Result<(u16, u64), SrtpError> {
        let stream = &mut self.streams[slot];
        if stream.restart_confirmed_by != Some(sent_seq) {
            stream.restart_confirmed_by = Some(sent_seq.wrapping_add(1));
            return Err(SrtpError::TooOld);
        }
        let highest = stream.rtp.highest().ok_or(SrtpError::TooOld)?;
        let continued = (highest as u16).wrapping_add(1);
        Ok((continued, checked_index(&stream.rtp, continued)?))
    }

    /// Authenticates and decrypts the SRTP packet filling `buf` in place and returns the
    /// RTP length. State changes only when the packet authenticates.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let body_end = buf
            .len()
            .checked_sub(self.rtp_overhead())
            .ok_or(SrtpError::TooShort)?;
        let header_len = rtp_header_len(&buf[..body_end])?;
        let tag_at = self.check_mki(buf, body_end)?;
        let (seq, ssrc) = rtp_seq_ssrc(buf);
        let known = self.find(ssrc);
        let mut window = known.map(|slot| self.streams[slot].rtp).unwrap_or_default();
        let index = window.estimate_rtp_index(seq)?;
        window.check(index)?;

        let roc = ((index >> 16) as u32).to_be_bytes();
        self.rtp.verify(&buf[..body_end], &roc, &buf[tag_at..])?;
        self.rtp.crypt(ssrc, index, &mut buf[header_len..body_end]);

        window.accept(index);
        let slot = known.unwrap_or_else(|| self.claim_slot(ssrc));
        self.streams[slot].rtp = window;
        Ok(body_end)
    }

    /// The SSRC of `packet` when it could be the start of a stream its sender restarted
    /// under this key with a new sender context (rollover counter 0): the SSRC is known, and
    /// the index the replay window estimates is refused as too old or is not the one a new
    /// sender would use. `None` for anything else, including a packet the normal path had
    /// every chance to authenticate.
    pub fn restart_candidate(&self, packet: &[u8]) -> Option<u32> {
        let body_end = packet.len().checked_sub(self.rtp_overhead())?;
        rtp_header_len(&packet[..body_end]).ok()?;
        let (seq, ssrc) = rtp_seq_ssrc(packet);
        let window = self.streams[self.find(ssrc)?].rtp;
        let candidate = match window.estimate_rtp_index(seq) {
            Ok(index) => index != u64::from(seq) || window.check(index) == Err(SrtpError::TooOld),
            Err(error) => error == SrtpError::TooOld,
        };
        candidate.then_some(ssrc)
    }

    /// Authenticates `packet` as the first of a fresh stream (index = sequence number,
    /// rollover counter 0) without changing any state.
    pub fn verify_as_restart(&self, packet: &[u8]) -> Result<(), SrtpError> {
        let body_end = packet
            .len()
            .checked_sub(self.rtp_overhead())
            .ok_or(SrtpError::TooShort)?;
        rtp_header_len(&packet[..body_end])?;
        let tag_at = self.check_mki(packet, body_end)?;
        self.rtp
            .verify(&packet[..body_end], &0u32.to_be_bytes(), &packet[tag_at..])
    }

    /// Takes `buf` (filled by one SRTP packet) as the first packet of a restarted stream:
    /// authenticates it as [`SrtpContext::verify_as_restart`] does, decrypts it in place and
    /// starts its SSRC's replay window again at its index; returns the RTP length. Nothing
    /// changes when it does not authenticate.
    pub fn restart_stream(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        self.verify_as_restart(buf)?;
        let body_end = buf.len() - self.rtp_overhead();
        let header_len = rtp_header_len(&buf[..body_end])?;
        let (seq, ssrc) = rtp_seq_ssrc(buf);
        let index = u64::from(seq);
        self.rtp.crypt(ssrc, index, &mut buf[header_len..body_end]);
        let slot = self.slot_for(ssrc);
        let mut window = ReplayWindow::default();
        window.accept(index);
        self.streams[slot].rtp = window;
        Ok(body_end)
    }

    /// Index the next SRTCP packet protected by this context will carry.
    pub fn next_srtcp_index(&self) -> u32 {
        self.next_srtcp_index
    }

    /// Makes the next SRTCP index at least `index` (a context continuing another's).
    pub fn raise_srtcp_index(&mut self, index: u32) {
        self.next_srtcp_index = self.next_srtcp_index.max(index);
    }

    /// Encrypts and authenticates the RTCP packet (compound or single) in `buf[..len]` in
    /// place, appending E flag + SRTCP index, MKI and tag; returns the SRTCP length.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let out_len = self.room_for(buf, len, self.rtcp_overhead())?;
        check_rtcp_header(&buf[..len])?;
        let ssrc = rtcp_ssrc(buf);
        let index = self.next_srtcp_index;
        if index > MAX_SRTCP_INDEX {
            return Err(SrtpError::IndexExhausted);
        }

        self.rtcp
            .crypt(ssrc, u64::from(index), &mut buf[RTCP_HEADER_LEN..len]);
        let index_end = len + SRTCP_INDEX_LEN;
        buf[len..index_end].copy_from_slice(&(SRTCP_E_FLAG | index).to_be_bytes());
        let tag_at = self.write_mki(buf, index_end);
        let tag = self.rtcp.tag(&buf[..index_end], &[]);
        buf[tag_at..out_len].copy_from_slice(&tag[..out_len - tag_at]);

        self.next_srtcp_index = index + 1;
        Ok(out_len)
    }

    /// Authenticates and (when the E flag is set) decrypts the SRTCP packet filling `buf`
    /// in place; returns the RTCP length. State changes only when the packet authenticates.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let body_end = buf
            .len()
            .checked_sub(self.rtcp_overhead())
            .ok_or(SrtpError::TooShort)?;
        check_rtcp_header(&buf[..body_end])?;
        let index_end = body_end + SRTCP_INDEX_LEN;
        let tag_at = self.check_mki(buf, index_end)?;
        let e_and_index = u32::from_be_bytes([
            buf[body_end],
            buf[body_end + 1],
            buf[body_end + 2],
            buf[body_end + 3],
        ]);
        let index = u64::from(e_and_index & MAX_SRTCP_INDEX);
        let ssrc = rtcp_ssrc(buf);
        let known = self.find(ssrc);
        let mut window = known
            .map(|slot| self.streams[slot].rtcp)
            .unwrap_or_default();
        window.check(index)?;

        self.rtcp.verify(&buf[..index_end], &[], &buf[tag_at..])?;
        if e_and_index & SRTCP_E_FLAG != 0 {
            self.rtcp
                .crypt(ssrc, index, &mut buf[RTCP_HEADER_LEN..body_end]);
        }

        window.accept(index);
        let slot = known.unwrap_or_else(|| self.claim_slot(ssrc));
        self.streams[slot].rtcp = window;
        Ok(body_end)
    }

    fn mki_len(&self) -> usize {
        self.mki.map_or(0, |mki| usize::from(mki.len))
    }

    fn room_for(&self, buf: &[u8], len: usize, overhead: usize) -> Result<usize, SrtpError> {
        match len.checked_add(overhead) {
            Some(out_len) if out_len <= buf.len() => Ok(out_len),
            _ => Err(SrtpError::NoRoom),
        }
    }

    /// Writes the MKI (if any) at `at`; returns where the tag goes.
    fn write_mki(&self, buf: &mut [u8], at: usize) -> usize {
        let Some(mki) = self.mki else { return at };
        let len = usize::from(mki.len);
        for (position, byte) in buf[at..at + len].iter_mut().enumerate() {
            *byte = mki.wire_byte(position);
        }
        at + len
    }

    /// Checks the MKI (if any) at `at`; returns where the tag starts.
    fn check_mki(&self, buf: &[u8], at: usize) -> Result<usize, SrtpError> {
        let Some(mki) = self.mki else { return Ok(at) };
        let len = usize::from(mki.len);
        let matches = buf[at..at + len]
            .iter()
            .enumerate()
            .all(|(position, byte)| *byte == mki.wire_byte(position));
        if matches {
            Ok(at + len)
        } else {
            Err(SrtpError::MkiMismatch)
        }
    }

    fn find(&self, ssrc: u32) -> Option<usize> {
        self.streams
            .iter()
            .position(|stream| stream.in_use && stream.ssrc == ssrc)
    }

    /// The slot of `ssrc`, claimed if new; marks it most recently used.
    fn slot_for(&mut self, ssrc: u32) -> usize {
        match self.find(ssrc) {
            Some(slot) => {
                self.clock += 1;
                self.streams[slot].last_used = self.clock;
                slot
            }
            None => self.claim_slot(ssrc),
        }
    }

    /// Takes a free slot, or forgets the least recently used stream.
    fn claim_slot(&mut self, ssrc: u32) -> usize {
        let mut slot = 0;
        for (candidate, stream) in self.streams.iter().enumerate() {
            if !stream.in_use {
                slot = candidate;
                break;
            }
            if stream.last_used < self.streams[slot].last_used {
                slot = candidate;
            }
        }
        self.clock += 1;
        self.streams[slot] = StreamState {
            ssrc,
            in_use: true,
            last_used: self.clock,
            ..StreamState::default()
        };
        slot
    }
}

/// The index of sequence number `seq` in `window`, if the window takes it.
fn checked_index(window: &ReplayWindow, seq: u16) -> Result<u64, SrtpError> {
    let index = window.estimate_rtp_index(seq)?;
    window.check(index)?;
    Ok(index)
}

/// Length of the RTP header including CSRCs and the header extension.
fn rtp_header_len(packet: &[u8]) -> Result<usize, SrtpError> {
    if packet.len() < RTP_HEADER_LEN {
        return Err(SrtpError::TooShort);
    }
    if packet[0] >> 6 != 2 {
        return Err(SrtpError::BadVersion);
    }
    let mut len = RTP_HEADER_LEN + 4 * usize::from(packet[0] & 0x0F);
    if packet[0] & 0x10 != 0 {
        let Some(extension) = packet.get(len..len + 4) else {
            return Err(SrtpError::TooShort);
        };
        len += 4 + 4 * usize::from(u16::from_be_bytes([extension[2], extension[3]]));
    }
    if len > packet.len() {
        return Err(SrtpError::TooShort);
    }
    Ok(len)
}

/// Sequence number and SSRC of a packet already checked by `rtp_header_len`.
fn rtp_seq_ssrc(packet: &[u8]) -> (u16, u32) {
    (
        u16::from_be_bytes([packet[2], packet[3]]),
        u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
    )
}

fn check_rtcp_header(packet: &[u8]) -> Result<(), SrtpError> {
    if packet.len() < RTCP_HEADER_LEN {
        return Err(SrtpError::TooShort);
    }
    if packet[0] >> 6 != 2 {
        return Err(SrtpError::BadVersion);
    }
    Ok(())
}

fn rtcp_ssrc(packet: &[u8]) -> u32 {
    u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]])
}
