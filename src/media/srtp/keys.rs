//! SRTP key material and its SDES (RFC 4568) text form.
//!
//! The SDP layer owns the `a=crypto` line as a whole; this module turns its suite name and
//! `inline:` key-params into typed values and back, so the media core never sees base64.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;

/// Length of an AES-128 master key in bytes.
pub const MASTER_KEY_LEN: usize = 16;
/// Length of an AES-CM master salt in bytes.
pub const MASTER_SALT_LEN: usize = 14;
/// Lifetime we append to the keys we offer: Microsoft's samples and community SBC configs
/// towards Teams always carry `|2^31` (docs/teams-direct-routing.md §3.1, row 43).
pub const OFFER_LIFETIME_EXPONENT: u32 = 31;
/// RFC 4568 allows an MKI of 1..=128 bytes.
const MAX_MKI_LEN: u8 = 128;

/// The SDES crypto suites we implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpSuite {
    /// `AES_CM_128_HMAC_SHA1_80`: 80-bit SRTP tag (mandatory towards Teams).
    AesCm128HmacSha1_80,
    /// `AES_CM_128_HMAC_SHA1_32`: 32-bit SRTP tag (SRTCP still uses 80 bits).
    AesCm128HmacSha1_32,
}

impl SrtpSuite {
    /// Parses the suite name of an `a=crypto` line; `None` for suites we do not implement.
    pub fn from_sdes_name(name: &str) -> Option<Self> {
        match name {
            "AES_CM_128_HMAC_SHA1_80" => Some(Self::AesCm128HmacSha1_80),
            "AES_CM_128_HMAC_SHA1_32" => Some(Self::AesCm128HmacSha1_32),
            _ => None,
        }
    }

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

    /// The 40-character base64 of key || salt, as written after `inline:`.
    pub fn to_base64(&self) -> String {
        let mut bytes = [0u8; MASTER_KEY_LEN + MASTER_SALT_LEN];
        bytes[..MASTER_KEY_LEN].copy_from_slice(&self.master_key);
        bytes[MASTER_KEY_LEN..].copy_from_slice(&self.master_salt);
        STANDARD.encode(bytes)
    }

    /// Decodes base64 of exactly 30 bytes (key || salt); padding is optional.
    pub fn from_base64(text: &str) -> Result<Self, SdesError> {
        let trimmed = text.trim_end_matches('=');
        // 30 bytes encode to exactly 40 characters without padding; anything else is wrong
        // before we even try to decode.
        if trimmed.len() != 40 {
            return Err(SdesError::KeyLength);
        }
        let mut bytes = [0u8; 32];
        let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode_slice(trimmed, &mut bytes)
            .map_err(|_| SdesError::Base64)?;
        if decoded != MASTER_KEY_LEN + MASTER_SALT_LEN {
            return Err(SdesError::KeyLength);
        }
        let (exact, _) = bytes
            .split_first_chunk::<{ MASTER_KEY_LEN + MASTER_SALT_LEN }>()
            .ok_or(SdesError::KeyLength)?;
        Ok(Self::from_concatenated(exact))
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

/// The key-params of one `a=crypto` line: `inline:<key||salt>[|lifetime][|mki:len]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesKeyParams {
    pub key: KeyMaterial,
    /// Maximum packets under this key (`2^31` is written as 2147483648), if stated.
    pub lifetime: Option<u64>,
    pub mki: Option<Mki>,
}

impl SdesKeyParams {
    /// What we put in our own offers and answers: fresh key, `|2^31`, no MKI.
    pub fn generate_for_offer() -> Self {
        Self::for_offer(KeyMaterial::generate())
    }

    /// `key` with the lifetime we always send (`|2^31`) and no MKI.
    pub fn for_offer(key: KeyMaterial) -> Self {
        Self {
            key,
            lifetime: Some(1u64 << OFFER_LIFETIME_EXPONENT),
            mki: None,
        }
    }

    /// True when the line carries an MKI; the SDP layer prefers a line without one.
    pub fn has_mki(&self) -> bool {
        self.mki.is_some()
    }

    /// Parses `inline:...` key-params. When several key-params are listed (separated by
    /// `;`, RFC 4568 §9.2) only the first is used.
    pub fn parse(text: &str) -> Result<Self, SdesError> {
        let first = text.split(';').next().unwrap_or("");
        let rest = first
            .trim()
            .strip_prefix("inline:")
            .ok_or(SdesError::NotInline)?;
        let mut fields = rest.split('|');
        let key = KeyMaterial::from_base64(fields.next().unwrap_or(""))?;
        let mut lifetime = None;
        let mut mki = None;
        for field in fields {
            if let Some((value, len)) = field.split_once(':') {
                if mki.is_some() {
                    return Err(SdesError::Mki);
                }
                mki = Some(parse_mki(value, len)?);
            } else {
                if lifetime.is_some() || mki.is_some() {
                    return Err(SdesError::Lifetime);
                }
                lifetime = Some(parse_lifetime(field)?);
            }
        }
        Ok(Self { key, lifetime, mki })
    }
}

impl fmt::Display for SdesKeyParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "inline:{}", self.key.to_base64())?;
        if let Some(lifetime) = self.lifetime {
            if lifetime.is_power_of_two() {
                write!(f, "|2^{}", lifetime.trailing_zeros())?;
            } else {
                write!(f, "|{lifetime}")?;
            }
        }
        if let Some(mki) = self.mki {
            write!(f, "|{}:{}", mki.value, mki.len)?;
        }
        Ok(())
    }
}

fn parse_lifetime(text: &str) -> Result<u64, SdesError> {
    if let Some(exponent) = text.strip_prefix("2^") {
        let exponent: u32 = parse_digits(exponent).ok_or(SdesError::Lifetime)?;
        if exponent > 63 {
            return Err(SdesError::Lifetime);
        }
        Ok(1u64 << exponent)
    } else {
        parse_digits(text).ok_or(SdesError::Lifetime)
    }
}

fn parse_mki(value: &str, len: &str) -> Result<Mki, SdesError> {
    let value: u64 = parse_digits(value).ok_or(SdesError::Mki)?;
    let len: u8 = parse_digits(len).ok_or(SdesError::Mki)?;
    if len == 0 || len > MAX_MKI_LEN {
        return Err(SdesError::Mki);
    }
    if len < 8 && value >> (8 * u32::from(len)) != 0 {
        return Err(SdesError::Mki);
    }
    Ok(Mki { value, len })
}

/// Decimal digits only: `str::parse` would also take a leading `+`.
fn parse_digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// One parsed `a=crypto:` attribute value: `<tag> <suite> <key-params> [<session-params>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttribute {
    pub tag: u32,
    pub suite: SrtpSuite,
    pub key_params: SdesKeyParams,
}

impl CryptoAttribute {
    /// Parses the text after `a=crypto:`. Lines with a suite or session parameter we do not
    /// implement are errors, so the SDP layer can skip them and pick another line. `WSH=`
    /// (a window-size hint) is harmless and ignored.
    pub fn parse(value: &str) -> Result<Self, SdesError> {
        let mut parts = value.split_ascii_whitespace();
        let tag = parts
            .next()
            .and_then(parse_digits::<u32>)
            .ok_or(SdesError::Tag)?;
        let suite = parts
            .next()
            .and_then(SrtpSuite::from_sdes_name)
            .ok_or(SdesError::UnsupportedSuite)?;
        let key_params = SdesKeyParams::parse(parts.next().ok_or(SdesError::NotInline)?)?;
        if parts.any(|param| !param.starts_with("WSH=")) {
            return Err(SdesError::UnsupportedSessionParam);
        }
        Ok(Self {
            tag,
            suite,
            key_params,
        })
    }
}

impl fmt::Display for CryptoAttribute {
    /// The attribute value (without `a=crypto:`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.tag, self.suite, self.key_params)
    }
}

/// Why an SDES crypto attribute or its key-params were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SdesError {
    #[error("crypto tag is not a decimal number")]
    Tag,
    #[error("crypto suite not supported")]
    UnsupportedSuite,
    #[error("key-params do not start with inline:")]
    NotInline,
    #[error("key is not valid base64")]
    Base64,
    #[error("key||salt is not 30 bytes")]
    KeyLength,
    #[error("bad lifetime")]
    Lifetime,
    #[error("bad MKI")]
    Mki,
    #[error("session parameter not supported")]
    UnsupportedSessionParam,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE_KEY: &str = "WnD7c1ksDGs+dIefCEo8omPg4uO8DYIinNGL5yxQ";

    #[test]
    fn suite_names_round_trip() {
        for suite in [
            SrtpSuite::AesCm128HmacSha1_80,
            SrtpSuite::AesCm128HmacSha1_32,
        ] {
            assert_eq!(SrtpSuite::from_sdes_name(suite.sdes_name()), Some(suite));
        }
        assert_eq!(SrtpSuite::from_sdes_name("AEAD_AES_128_GCM"), None);
        assert_eq!(SrtpSuite::AesCm128HmacSha1_32.rtp_tag_len(), 4);
        assert_eq!(SrtpSuite::AesCm128HmacSha1_32.rtcp_tag_len(), 10);
    }

    /// Row 43: `inline:` key with the `|2^31` lifetime suffix, 40 base64 characters.
    #[test]
    fn row43_offer_key_params_carry_lifetime_2_31() {
        let params = SdesKeyParams::generate_for_offer();
        let text = params.to_string();
        let (inline, lifetime) = text.split_once('|').unwrap();
        assert_eq!(inline.len(), "inline:".len() + 40);
        assert_eq!(lifetime, "2^31");
        assert_eq!(SdesKeyParams::parse(&text).unwrap(), params);
        assert!(!params.has_mki());
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(KeyMaterial::generate(), KeyMaterial::generate());
    }

    #[test]
    fn parses_key_without_lifetime_or_mki() {
        let params = SdesKeyParams::parse(&format!("inline:{SAMPLE_KEY}")).unwrap();
        assert_eq!(params.lifetime, None);
        assert_eq!(params.mki, None);
        assert_eq!(params.key.to_base64(), SAMPLE_KEY);
    }

    /// Row 44: Microsoft's sample lines carry `|2^31|1:1`; MKI is parsed and reported.
    #[test]
    fn row44_parses_lifetime_and_mki() {
        let params = SdesKeyParams::parse(&format!("inline:{SAMPLE_KEY}|2^31|1:1")).unwrap();
        assert_eq!(params.lifetime, Some(1 << 31));
        assert_eq!(params.mki, Some(Mki { value: 1, len: 1 }));
        assert!(params.has_mki());
        assert_eq!(params.to_string(), format!("inline:{SAMPLE_KEY}|2^31|1:1"));

        let mki_only = SdesKeyParams::parse(&format!("inline:{SAMPLE_KEY}|7:2")).unwrap();
        assert_eq!(mki_only.lifetime, None);
        assert_eq!(mki_only.mki, Some(Mki { value: 7, len: 2 }));

        let decimal = SdesKeyParams::parse(&format!("inline:{SAMPLE_KEY}|1048576")).unwrap();
        assert_eq!(decimal.lifetime, Some(1_048_576));
    }

    #[test]
    fn first_of_several_key_params_is_used() {
        let other = KeyMaterial::generate().to_base64();
        let params = SdesKeyParams::parse(&format!(
            "inline:{SAMPLE_KEY}|2^20|1:4;inline:{other}|2^20|2:4"
        ))
        .unwrap();
        assert_eq!(params.key.to_base64(), SAMPLE_KEY);
        assert_eq!(params.mki, Some(Mki { value: 1, len: 4 }));
    }

    #[test]
    fn rejects_bad_key_params() {
        let cases = [
            String::new(),
            "inline:".into(),
            format!("inlin:{SAMPLE_KEY}"),
            format!("inline:{}", &SAMPLE_KEY[..39]),
            format!("inline:{SAMPLE_KEY}AAAA"),
            format!("inline:{}!", &SAMPLE_KEY[..39]),
            format!("inline:{SAMPLE_KEY}|2^"),
            format!("inline:{SAMPLE_KEY}|2^64"),
            format!("inline:{SAMPLE_KEY}|+5"),
            format!("inline:{SAMPLE_KEY}|1:0"),
            format!("inline:{SAMPLE_KEY}|256:1"),
            format!("inline:{SAMPLE_KEY}|1:129"),
            format!("inline:{SAMPLE_KEY}|1:1|2^31"),
            format!("inline:{SAMPLE_KEY}|2^31|2^31"),
            format!("inline:{SAMPLE_KEY}|1:1|2:1"),
            "inline:\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}".into(),
        ];
        for case in cases {
            assert!(SdesKeyParams::parse(&case).is_err(), "accepted {case:?}");
        }
    }

    #[test]
    fn crypto_attribute_parses_microsoft_style_lines() {
        let line = format!("2 AES_CM_128_HMAC_SHA1_80 inline:{SAMPLE_KEY}|2^31|1:1");
        let attr = CryptoAttribute::parse(&line).unwrap();
        assert_eq!(attr.tag, 2);
        assert_eq!(attr.suite, SrtpSuite::AesCm128HmacSha1_80);
        assert!(attr.key_params.has_mki());
        assert_eq!(attr.to_string(), line);

        let short = CryptoAttribute::parse(&format!(
            "1 AES_CM_128_HMAC_SHA1_32 inline:{SAMPLE_KEY}|2^31 WSH=64"
        ))
        .unwrap();
        assert_eq!(short.suite, SrtpSuite::AesCm128HmacSha1_32);
    }

    #[test]
    fn crypto_attribute_rejects_unsupported_lines() {
        assert_eq!(
            CryptoAttribute::parse(&format!("1 AEAD_AES_256_GCM inline:{SAMPLE_KEY}")),
            Err(SdesError::UnsupportedSuite)
        );
        assert_eq!(
            CryptoAttribute::parse(&format!(
                "1 AES_CM_128_HMAC_SHA1_80 inline:{SAMPLE_KEY} UNENCRYPTED_SRTP"
            )),
            Err(SdesError::UnsupportedSessionParam)
        );
        assert_eq!(
            CryptoAttribute::parse(&format!("x AES_CM_128_HMAC_SHA1_80 inline:{SAMPLE_KEY}")),
            Err(SdesError::Tag)
        );
        assert_eq!(
            CryptoAttribute::parse("1 AES_CM_128_HMAC_SHA1_80"),
            Err(SdesError::NotInline)
        );
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
