//! Session key derivation (RFC 3711 §4.3) with key derivation rate 0, and the AES-CM
//! keystream (RFC 3711 §4.1.1) it shares with packet encryption.

use aes::cipher::{InnerIvInit, KeyInit, StreamCipher};
use aes::Aes128;

use super::keys::{KeyMaterial, MASTER_SALT_LEN};

pub(crate) const SESSION_KEY_LEN: usize = 16;
pub(crate) const SESSION_AUTH_KEY_LEN: usize = 20;
pub(crate) const SESSION_SALT_LEN: usize = MASTER_SALT_LEN;

/// RFC 3711 §4.3.2 labels.
#[derive(Clone, Copy)]
enum Label {
    RtpEncryption = 0,
    RtpAuthentication = 1,
    RtpSalt = 2,
    RtcpEncryption = 3,
    RtcpAuthentication = 4,
    RtcpSalt = 5,
}

/// The three session keys of one direction of packets (SRTP or SRTCP).
#[derive(Clone)]
pub(crate) struct SessionKeys {
    pub encryption: [u8; SESSION_KEY_LEN],
    pub authentication: [u8; SESSION_AUTH_KEY_LEN],
    pub salt: [u8; SESSION_SALT_LEN],
}

impl SessionKeys {
    pub fn derive_rtp(master: &KeyMaterial) -> Self {
        Self::derive(
            master,
            Label::RtpEncryption,
            Label::RtpAuthentication,
            Label::RtpSalt,
        )
    }

    pub fn derive_rtcp(master: &KeyMaterial) -> Self {
        Self::derive(
            master,
            Label::RtcpEncryption,
            Label::RtcpAuthentication,
            Label::RtcpSalt,
        )
    }

    fn derive(master: &KeyMaterial, enc: Label, auth: Label, salt: Label) -> Self {
        let prf = Aes128::new(master.master_key().into());
        let mut keys = Self {
            encryption: [0; SESSION_KEY_LEN],
            authentication: [0; SESSION_AUTH_KEY_LEN],
            salt: [0; SESSION_SALT_LEN],
        };
        derive_into(&prf, master.master_salt(), enc, &mut keys.encryption);
        derive_into(&prf, master.master_salt(), auth, &mut keys.authentication);
        derive_into(&prf, master.master_salt(), salt, &mut keys.salt);
        keys
    }
}

/// With KDR 0 the index term `r` is zero, so `key_id = label || 0^48` and
/// `x = key_id XOR master_salt` only changes the salt byte that lines up with the label.
fn derive_into(prf: &Aes128, master_salt: &[u8; MASTER_SALT_LEN], label: Label, out: &mut [u8]) {
    let mut x = *master_salt;
    x[7] ^= label as u8;
    out.fill(0);
    apply_keystream(prf, &counter_block(&x), out);
}

/// `x * 2^16`: the 112-bit value in the top of a 128-bit counter block.
pub(crate) fn counter_block(x: &[u8; SESSION_SALT_LEN]) -> [u8; 16] {
    let mut block = [0u8; 16];
    block[..SESSION_SALT_LEN].copy_from_slice(x);
    block
}

/// Packet IV (RFC 3711 §4.1.1): `(salt * 2^16) XOR (SSRC * 2^64) XOR (index * 2^16)`.
/// For SRTCP the index is the 31-bit SRTCP index.
pub(crate) fn packet_iv(salt: &[u8; SESSION_SALT_LEN], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = counter_block(salt);
    for (slot, byte) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *slot ^= byte;
    }
    for (slot, byte) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
        *slot ^= byte;
    }
    iv
}

/// XORs AES-128 counter-mode keystream starting at `iv` into `data`. The expanded key is
/// borrowed, so no key schedule runs per packet.
pub(crate) fn apply_keystream(cipher: &Aes128, iv: &[u8; 16], data: &mut [u8]) {
    let core = ctr::CtrCore::<&Aes128, ctr::flavors::Ctr128BE>::inner_iv_init(cipher, iv.into());
    ctr::Ctr128BE::from_core(core).apply_keystream(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::KeyIvInit;

    fn keystream_with_key(key: &[u8; 16], iv: &[u8; 16], len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        let mut ctr = ctr::Ctr128BE::<Aes128>::new(key.into(), iv.into());
        ctr.apply_keystream(&mut out);
        out
    }

    fn hex(text: &str) -> Vec<u8> {
        let clean: String = text.split_whitespace().collect();
        (0..clean.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
            .collect()
    }

    fn array<const N: usize>(text: &str) -> [u8; N] {
        hex(text).try_into().unwrap()
    }

    /// RFC 3711 Appendix B.2: AES-CM keystream for session key 2B7E..., salt F0F1...FD,
    /// SSRC 0, index 0; blocks at counter 0, 1, 2, 0xFEFF, 0xFF00, 0xFF01.
    #[test]
    fn rfc3711_b2_aes_cm_keystream() {
        let key: [u8; 16] = array("2B7E151628AED2A6ABF7158809CF4F3C");
        let salt: [u8; 14] = array("F0F1F2F3F4F5F6F7F8F9FAFBFCFD");
        let iv = packet_iv(&salt, 0, 0);
        assert_eq!(iv.to_vec(), hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000"));

        let cipher = Aes128::new((&key).into());
        let mut stream = vec![0u8; 0xFF02 * 16];
        apply_keystream(&cipher, &iv, &mut stream);
        let block = |n: usize| stream[n * 16..(n + 1) * 16].to_vec();
        assert_eq!(block(0), hex("E03EAD0935C95E80E166B16DD92B4EB4"));
        assert_eq!(block(1), hex("D23513162B02D0F72A43A2FE4A5F97AB"));
        assert_eq!(block(2), hex("41E95B3BB0A2E8DD477901E4FCA894C0"));
        assert_eq!(block(0xFEFF), hex("EC8CDF7398607CB0F2D21675EA9EA1E4"));
        assert_eq!(block(0xFF00), hex("362B7C3C6773516318A077D7FC5073AE"));
        assert_eq!(block(0xFF01), hex("6A2CC3787889374FBEB4C81B17BA6C44"));

        // The borrowed-key path and a freshly keyed CTR agree.
        assert_eq!(keystream_with_key(&key, &iv, 48), stream[..48].to_vec());
    }

    /// RFC 3711 Appendix B.3: session keys from master key E1F9..., master salt 0EC6...
    #[test]
    fn rfc3711_b3_key_derivation() {
        let master = KeyMaterial::new(
            array("E1F97A0D3E018BE0D64FA32C06DE4139"),
            array("0EC675AD498AFEEBB6960B3AABE6"),
        );
        let keys = SessionKeys::derive_rtp(&master);
        assert_eq!(
            keys.encryption.to_vec(),
            hex("C61E7A93744F39EE10734AFE3FF7A087")
        );
        assert_eq!(keys.salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        assert_eq!(
            keys.authentication.to_vec(),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );
    }

    #[test]
    fn packet_iv_places_ssrc_and_index() {
        let salt = [0u8; 14];
        let iv = packet_iv(&salt, 0xA1B2C3D4, 0x0000_1122_3344_5566);
        assert_eq!(iv.to_vec(), hex("00000000 A1B2C3D4 112233445566 0000"));
    }
}
