//! SDES `a=crypto` lines (RFC 4568): parsing, choosing the line to use, and fresh keys. The
//! one place the SBC reads or writes SDES text; the media core gets typed keys from the call
//! layer.
//!
//! `a=crypto:<tag> <suite> inline:<base64 key||salt>[|<lifetime>][|<MKI>:<length>][;inline:...]
//! [<session params>]`. The SBC only uses the AES-CM-128 suites (30 bytes of key and salt)
//! with the default transforms of RFC 3711. What it does with the rest of what a peer may
//! write (rows 43, 44; doc 3.1):
//!
//! * Lifetime (`|2^31`, decimal): read and kept, not enforced. Microsoft and we always state
//!   2^31 packets, far beyond any call; a re-key comes with a new offer/answer anyway.
//! * MKI (`|1:1`): taken (1..=128 bytes, the value must fit its length); a line without one
//!   is preferred, and the media core writes and checks the MKI of a line chosen with one.
//! * Session parameters: `WSH=` (a window hint) and `KDR=0` (the default: no re-keying by
//!   the key derivation rate) are harmless. Every other one (`UNENCRYPTED_SRTP`,
//!   `UNENCRYPTED_SRTCP`, `UNAUTHENTICATED_SRTP`, `KDR=n` with n > 0, `FEC_ORDER`, `FEC_KEY`,
//!   anything unknown) asks for something the media core does not do, so that line is never
//!   chosen: the answer carries our line under the tag of a line we can honour, and a peer
//!   with none gets 488.
//! * RFC 4771 (the integrity transform carrying the ROC, which Microsoft lists): not
//!   implemented. Its transform and ROC rate are negotiated out of band (MIKEY, RFC 4771
//!   §5); RFC 4568 registers no SDES suite or parameter for it, so an SDES peer cannot ask
//!   for it, and anything a peer might write for it on a crypto line is a suite or parameter
//!   we do not know: that line is refused as above and the call goes on with another one.

use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rand::RngCore;

/// Key plus salt length of the AES_CM_128 suites.
pub const SDES_KEY_SALT_LEN: usize = 30;

/// Lifetime suffix the SBC appends to every key it sends (Microsoft and CUBE practice, row 43).
pub const SDES_LIFETIME: &str = "2^31";

/// SRTP crypto suites the SBC can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpSuite {
    /// `AES_CM_128_HMAC_SHA1_80`: mandatory for Teams.
    AesCm128HmacSha1_80,
    /// `AES_CM_128_HMAC_SHA1_32`: accepted when it is all a peer offers.
    AesCm128HmacSha1_32,
}

impl SrtpSuite {
    pub fn from_name(name: &str) -> Option<SrtpSuite> {
        match name {
            "AES_CM_128_HMAC_SHA1_80" => Some(SrtpSuite::AesCm128HmacSha1_80),
            "AES_CM_128_HMAC_SHA1_32" => Some(SrtpSuite::AesCm128HmacSha1_32),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// Preference when several lines are offered: _80 first.
    fn rank(&self) -> u8 {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => 0,
            SrtpSuite::AesCm128HmacSha1_32 => 1,
        }
    }
}

/// Master key identifier of a key-param: value and its length in bytes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mki {
    pub value: u64,
    pub length: u8,
}

/// One well-formed `a=crypto` line, borrowed from the SDP. Only its first key-param is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CryptoAttr<'a> {
    pub tag: u32,
    /// Suite name as written.
    pub suite_name: &'a str,
    /// The base64 key||salt after `inline:`.
    pub key_base64: &'a str,
    /// Lifetime as written (`2^31`, `1048576`), if present.
    pub lifetime: Option<&'a str>,
    pub mki: Option<Mki>,
    /// Session parameters (`KDR=1`, `UNENCRYPTED_SRTCP`, ...) as written, space-separated.
    pub session_params: &'a str,
}

impl CryptoAttr<'_> {
    pub fn suite(&self) -> Option<SrtpSuite> {
        SrtpSuite::from_name(self.suite_name)
    }

    /// Lifetime in packets (`2^n` or decimal), if present.
    pub fn lifetime_packets(&self) -> Option<u64> {
        lifetime_packets(self.lifetime?)
    }

    /// Decoded key||salt when it has the length of the AES_CM_128 suites.
    pub fn key_salt(&self) -> Option<[u8; SDES_KEY_SALT_LEN]> {
        let mut out = [0u8; SDES_KEY_SALT_LEN + 3];
        let n = BASE64.decode_slice(self.key_base64, &mut out).ok()?;
        if n != SDES_KEY_SALT_LEN {
            return None;
        }
        let mut key = [0u8; SDES_KEY_SALT_LEN];
        key.copy_from_slice(&out[..SDES_KEY_SALT_LEN]);
        Some(key)
    }

    /// Session parameters the media plane does not implement; such a line is never chosen
    /// (module docs). The window size hint `WSH=` and `KDR=0` are harmless and allowed.
    fn has_unsupported_session_params(&self) -> bool {
        self.session_params
            .split_ascii_whitespace()
            .any(|p| !p.starts_with("WSH=") && p != "KDR=0")
    }

    /// The usable form of this line, or `None` if suite, key or session params rule it out.
    pub fn to_selected(&self) -> Option<SelectedCrypto> {
        if self.has_unsupported_session_params() {
            return None;
        }
        Some(SelectedCrypto {
            tag: self.tag,
            suite: self.suite()?,
            key_salt: self.key_salt()?,
            key_base64: self.key_base64.to_owned(),
            lifetime: self.lifetime_packets(),
            mki: self.mki,
        })
    }
}

/// Parses the value after `a=crypto:`. `None` for a malformed line.
pub fn parse_crypto(value: &str) -> Option<CryptoAttr<'_>> {
    let mut it = value.split_ascii_whitespace();
    let tag_text = it.next()?;
    if tag_text.len() > 9 || !tag_text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let tag = tag_text.parse().ok()?;
    let suite_name = it.next()?;
    let key_params = it.next()?;
    let first = key_params.split(';').next()?;
    let inline = first.strip_prefix("inline:")?;
    let mut parts = inline.split('|');
    let key_base64 = parts.next().filter(|k| !k.is_empty())?;
    let mut lifetime = None;
    let mut mki = None;
    for part in parts {
        match part.split_once(':') {
            Some((value, length)) if mki.is_none() => mki = Some(parse_mki(value, length)?),
            None if lifetime.is_none() && mki.is_none() && lifetime_packets(part).is_some() => {
                lifetime = Some(part)
            }
            _ => return None,
        }
    }
    // `key_params` is a sub-slice of `value`; its end is where the session params start.
    let params_start = key_params.as_ptr() as usize - value.as_ptr() as usize + key_params.len();
    let session_params = value.get(params_start..)?.trim();
    Some(CryptoAttr {
        tag,
        suite_name,
        key_base64,
        lifetime,
        mki,
        session_params,
    })
}

/// `2^n` (n <= 63) or a decimal packet count.
fn lifetime_packets(text: &str) -> Option<u64> {
    match text.strip_prefix("2^") {
        Some(exponent) => digits::<u32>(exponent)
            .filter(|e| *e < 64)
            .map(|e| 1u64 << e),
        None => digits(text),
    }
}

/// `<value>:<length>`: 1..=128 bytes, the value fitting in them.
fn parse_mki(value: &str, length: &str) -> Option<Mki> {
    let value: u64 = digits(value)?;
    let length: u8 = digits(length)?;
    let fits = length >= 8 || value >> (8 * u32::from(length)) == 0;
    ((1..=128).contains(&length) && fits).then_some(Mki { value, length })
}

/// Decimal digits only (`str::parse` would also take a sign).
fn digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// The crypto line chosen from a peer's SDP, owned, ready for the media API.
#[derive(Clone, PartialEq, Eq)]
pub struct SelectedCrypto {
    pub tag: u32,
    pub suite: SrtpSuite,
    /// Raw master key (16 bytes) followed by master salt (14 bytes).
    pub key_salt: [u8; SDES_KEY_SALT_LEN],
    /// The same key as the base64 text of the `inline:` parameter.
    pub key_base64: String,
    /// Key lifetime in packets, if the line said.
    pub lifetime: Option<u64>,
    pub mki: Option<Mki>,
}

impl std::fmt::Debug for SelectedCrypto {
    // Keys never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelectedCrypto")
            .field("tag", &self.tag)
            .field("suite", &self.suite)
            .field("lifetime", &self.lifetime)
            .field("mki", &self.mki)
            .finish_non_exhaustive()
    }
}

/// Picks the crypto line to use from a peer's lines: suite `_80` over `_32`, a line without
/// MKI over one with MKI, then the first in order (rows 43, 44). Unusable lines are skipped.
pub fn select_crypto<'a>(lines: impl Iterator<Item = CryptoAttr<'a>>) -> Option<SelectedCrypto> {
    let mut best: Option<(u8, SelectedCrypto)> = None;
    for line in lines {
        let Some(selected) = line.to_selected() else {
            continue;
        };
        let rank = selected.suite.rank() * 2 + u8::from(selected.mki.is_some());
        if best.as_ref().is_none_or(|(r, _)| rank < *r) {
            best = Some((rank, selected));
        }
    }
    best.map(|(_, s)| s)
}

/// A master key and salt the SBC generates for its own SRTP sending direction.
#[derive(Clone, PartialEq, Eq)]
pub struct SdesKey([u8; SDES_KEY_SALT_LEN]);

impl SdesKey {
    /// Fresh key from the thread-local CSPRNG.
    pub fn generate() -> SdesKey {
        SdesKey::generate_with(&mut rand::thread_rng())
    }

    /// Fresh key from `rng` (tests pass a seeded RNG).
    pub fn generate_with(rng: &mut impl RngCore) -> SdesKey {
        let mut key = [0u8; SDES_KEY_SALT_LEN];
        rng.fill_bytes(&mut key);
        SdesKey(key)
    }

    pub fn from_bytes(key_salt: [u8; SDES_KEY_SALT_LEN]) -> SdesKey {
        SdesKey(key_salt)
    }

    /// Raw key (16 bytes) || salt (14 bytes).
    pub fn key_salt(&self) -> &[u8; SDES_KEY_SALT_LEN] {
        &self.0
    }

    /// 40 base64 characters, as in `inline:`.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    /// Value of an `a=crypto:` attribute carrying this key: `<tag> <suite> inline:<key>|2^31`.
    pub fn crypto_attribute(&self, tag: u32, suite: SrtpSuite) -> String {
        let mut s = String::with_capacity(80);
        let _ = write!(s, "{tag} {} inline:", suite.name());
        BASE64.encode_string(self.0, &mut s);
        s.push('|');
        s.push_str(SDES_LIFETIME);
        s
    }
}

impl std::fmt::Debug for SdesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SdesKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    #[test]
    fn parses_full_line() {
        let v = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^31|1:1 KDR=1 WSH=64");
        let c = parse_crypto(&v).unwrap();
        assert_eq!(c.tag, 1);
        assert_eq!(c.suite(), Some(SrtpSuite::AesCm128HmacSha1_80));
        assert_eq!(c.key_base64, KEY);
        assert_eq!(c.lifetime, Some("2^31"));
        assert_eq!(c.lifetime_packets(), Some(1 << 31));
        assert_eq!(
            c.mki,
            Some(Mki {
                value: 1,
                length: 1
            })
        );
        assert_eq!(c.session_params, "KDR=1 WSH=64");
        assert_eq!(c.key_salt().unwrap().len(), 30);
        // A key derivation rate is not supported by the media plane: never selected.
        assert!(c.to_selected().is_none());
    }

    #[test]
    fn mki_without_lifetime_and_multiple_key_params() {
        let v = format!("2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}|7:2;inline:{KEY}|2^20|8:2");
        let c = parse_crypto(&v).unwrap();
        assert_eq!(c.lifetime, None);
        assert_eq!(
            c.mki,
            Some(Mki {
                value: 7,
                length: 2
            })
        );
        assert!(c.to_selected().is_some());
    }

    #[test]
    fn malformed_lines_rejected() {
        for v in [
            "",
            "x AES_CM_128_HMAC_SHA1_80 inline:abc",
            "1 AES_CM_128_HMAC_SHA1_80",
            "1 AES_CM_128_HMAC_SHA1_80 key:abc",
            "1 AES_CM_128_HMAC_SHA1_80 inline:",
            "1 AES_CM_128_HMAC_SHA1_80 inline:abc|2^31|2^31",
            "1 AES_CM_128_HMAC_SHA1_80 inline:abc|1:0",
            "1 AES_CM_128_HMAC_SHA1_80 inline:abc|1:1|2^31",
            "99999999999 AES_CM_128_HMAC_SHA1_80 inline:abc",
        ] {
            assert!(parse_crypto(v).is_none(), "{v}");
        }
        // Parses, but a short key or an unknown suite is never selectable.
        let short = parse_crypto("1 AES_CM_128_HMAC_SHA1_80 inline:abcd").unwrap();
        assert!(short.to_selected().is_none());
        let other_line = format!("1 F8_128_HMAC_SHA1_80 inline:{KEY}");
        let other = parse_crypto(&other_line).unwrap();
        assert!(other.to_selected().is_none());
    }

    /// Row 44: key-params as RFC 4568 writes them, nothing looser: digits only, one
    /// lifetime before one MKI, an MKI of 1..=128 bytes whose value fits.
    #[test]
    fn row44_lifetime_and_mki_are_strict() {
        for params in [
            "2^", "2^64", "+5", "1:0", "256:1", "1:129", "+1:1", "1:+1", "2^x",
        ] {
            let line = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|{params}");
            assert!(parse_crypto(&line).is_none(), "{line}");
        }
        for params in ["1:1|2^31", "2^31|2^31", "1:1|2:1"] {
            let line = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|{params}");
            assert!(parse_crypto(&line).is_none(), "{line}");
        }
        let decimal = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|1048576|255:1");
        let c = parse_crypto(&decimal).unwrap();
        assert_eq!(c.lifetime_packets(), Some(1_048_576));
        assert_eq!(
            c.mki,
            Some(Mki {
                value: 255,
                length: 1
            })
        );
        let long = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|18446744073709551615:10");
        assert_eq!(parse_crypto(&long).unwrap().mki.unwrap().length, 10);
    }

    /// Rows 43, 44 and the refusals of the module docs: lines with a session parameter the
    /// media core does not implement (RFC 4771 cannot even be asked for over SDES) are never
    /// chosen; the usable line is, whatever its position; `WSH=` and `KDR=0` are harmless.
    #[test]
    fn row43_lines_asking_for_what_we_do_not_implement_are_not_chosen() {
        for param in [
            "UNENCRYPTED_SRTP",
            "UNENCRYPTED_SRTCP",
            "UNAUTHENTICATED_SRTP",
            "UNAUTHENTICATED_SRTCP",
            "KDR=24",
            "FEC_ORDER=FEC_SRTP",
            "FEC_KEY=inline:x",
        ] {
            let refused = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^31 {param}");
            let usable = format!("2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}|2^31");
            let lines = [refused.as_str(), usable.as_str()];
            let chosen = select_crypto(lines.iter().filter_map(|l| parse_crypto(l))).unwrap();
            assert_eq!(chosen.tag, 2, "{param}");
            let only = [refused.as_str()];
            assert!(
                select_crypto(only.iter().filter_map(|l| parse_crypto(l))).is_none(),
                "{param}"
            );
        }
        for param in ["WSH=64", "KDR=0", "KDR=0 WSH=128"] {
            let line = format!("3 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^31 {param}");
            assert_eq!(parse_crypto(&line).unwrap().to_selected().unwrap().tag, 3);
        }
    }

    #[test]
    fn generated_key_round_trips() {
        let key = SdesKey::generate();
        let attr = key.crypto_attribute(1, SrtpSuite::AesCm128HmacSha1_80);
        let parsed = parse_crypto(&attr).unwrap();
        assert_eq!(parsed.key_base64.len(), 40);
        assert_eq!(parsed.lifetime, Some("2^31"));
        assert_eq!(&parsed.key_salt().unwrap(), key.key_salt());
        assert_ne!(SdesKey::generate().key_salt(), key.key_salt());
        assert_eq!(format!("{key:?}"), "SdesKey(..)");
    }
}
