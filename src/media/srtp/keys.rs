//! SRTP key material as the media core uses it: suites, master key and salt, MKI. The
//! `a=crypto` text (suite names, `inline:` key-params, lifetime, MKI, session parameters) is
//! read and written by the SDP layer alone (`sdp::crypto`); the call layer turns what it chose
//! into these values, so the media core never sees base64.

use std::fmt;

use rand::RngCore;

/// Length of an AES-128 master key in bytes.
pub const MASTER_KEY_LEN: usize = 16;
/// Length of an AES-CM master salt in bytes.
pub const MASTER_SALT_LEN: usize = 14;

/// The SDES crypto suites we implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpSuite {
    /// `AES_CM_128_HMAC_SHA1_80`: 80-bit SRTP tag (mandatory towards Teams).
    AesCm128HmacSha1_80,
    /// `AES_CM_128_HMAC_SHA1_32`: 32-bit SRTP tag (SRTCP still uses 80 bits).
    AesCm128HmacSha1_32,
}

impl SrtpSuite {
    /// The suite name as written in an `a=crypto` line.
    pub fn sdes_name(self) -> &'static str {
        match self {
            Self::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Self::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// Bytes of authentication tag appended to each SRTP packet.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            Self::AesCm128HmacSha1_80 => 10,
            Self::AesCm128HmacSha1_32 => 4,
        }
    }

    /// Bytes of authentication tag appended to each SRTCP packet: 80 bits for both suites
    /// (RFC 4568 §6.2.2).
    pub fn rtcp_tag_len(self) -> usize {
        10
    }
}

impl fmt::Display for SrtpSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sdes_name())
    }
}

/// A master key and master salt. `Debug` never prints the secret bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMaterial {
    master_key: [u8; MASTER_KEY_LEN],
    master_salt: [u8; MASTER_SALT_LEN],
}

impl KeyMaterial {
    pub fn new(master_key: [u8; MASTER_KEY_LEN], master_salt: [u8; MASTER_SALT_LEN]) -> Self {
        Self {
            master_key,
            master_salt,
        }
    }

    /// Fresh random key material for an offer or answer (thread-local CSPRNG, seeded from
    /// the OS). Every re-key must use fresh material: a key is never reused with a new
    /// context, because the rollover counter restarts at 0.
    pub fn generate() -> Self {
        let mut bytes = [0u8; MASTER_KEY_LEN + MASTER_SALT_LEN];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self::from_concatenated(&bytes)
    }

    fn from_concatenated(bytes: &[u8; MASTER_KEY_LEN + MASTER_SALT_LEN]) -> Self {
        let mut master_key = [0u8; MASTER_KEY_LEN];
        let mut master_salt = [0u8; MASTER_SALT_LEN];
        master_key.copy_from_slice(&bytes[..MASTER_KEY_LEN]);
        master_salt.copy_from_slice(&bytes[MASTER_KEY_LEN..]);
        Self::new(master_key, master_salt)
    }

    pub fn master_key(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.master_key
    }

    pub fn master_salt(&self) -> &[u8; MASTER_SALT_LEN] {
        &self.master_salt
    }

    /// The 40-character base64 of key || salt, as an SDP carries it (to compare with SDP in
    /// tests).
    #[cfg(test)]
    pub fn to_base64(&self) -> String {
        use base64::Engine as _;
        let mut bytes = [0u8; MASTER_KEY_LEN + MASTER_SALT_LEN];
        bytes[..MASTER_KEY_LEN].copy_from_slice(&self.master_key);
        bytes[MASTER_KEY_LEN..].copy_from_slice(&self.master_salt);
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaterial(<redacted>)")
    }
}

/// A master key identifier carried in every SRTP/SRTCP packet when the chosen crypto line
/// has `|value:length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mki {
    pub value: u64,
    /// Length on the wire in bytes (1..=128).
    pub len: u8,
}

impl Mki {
    /// Byte `position` (0 = first on the wire) of the big-endian MKI field; bytes beyond
    /// the 8 a `u64` holds are leading zeros.
    pub(crate) fn wire_byte(&self, position: usize) -> u8 {
        let from_end = usize::from(self.len) - 1 - position;
        if from_end < 8 {
            (self.value >> (8 * from_end)) as u8
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_tag_lengths() {
        assert_eq!(SrtpSuite::AesCm128HmacSha1_80.rtp_tag_len(), 10);
        assert_eq!(SrtpSuite::AesCm128HmacSha1_32.rtp_tag_len(), 4);
        assert_eq!(SrtpSuite::AesCm128HmacSha1_32.rtcp_tag_len(), 10);
        assert_eq!(
            SrtpSuite::AesCm128HmacSha1_32.to_string(),
            "AES_CM_128_HMAC_SHA1_32"
        );
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(KeyMaterial::generate(), KeyMaterial::generate());
    }

    #[test]
    fn debug_does_not_print_key_bytes() {
        let key = KeyMaterial::new([0xAB; 16], [0xCD; 14]);
        let shown = format!("{key:?}");
        assert!(!shown.contains("171") && !shown.to_lowercase().contains("ab"));
    }

    #[test]
    fn mki_wire_bytes_are_big_endian_with_leading_zeros() {
        let mki = Mki {
            value: 0x0102,
            len: 3,
        };
        let bytes: Vec<u8> = (0..3).map(|i| mki.wire_byte(i)).collect();
        assert_eq!(bytes, [0x00, 0x01, 0x02]);
        let long = Mki {
            value: u64::MAX,
            len: 10,
        };
        assert_eq!(long.wire_byte(0), 0);
        assert_eq!(long.wire_byte(1), 0);
        assert_eq!(long.wire_byte(2), 0xFF);
    }
}
