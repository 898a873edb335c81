//! Differential tests against webrtc-srtp, the oracle the architecture note keeps for our
//! in-place implementation: each side protects, the other unprotects, for RTP and RTCP,
//! both tag lengths, across a sequence-number wrap (row 43).

use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

use super::*;

const SUITES: [SrtpSuite; 2] = [
    SrtpSuite::AesCm128HmacSha1_80,
    SrtpSuite::AesCm128HmacSha1_32,
];
const SSRC: u32 = 0x5EED_0001;

fn profile(suite: SrtpSuite) -> ProtectionProfile {
    match suite {
        SrtpSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
    }
}

fn oracle(suite: SrtpSuite, key: &KeyMaterial) -> Context {
    Context::new(
        key.master_key(),
        key.master_salt(),
        profile(suite),
        None,
        None,
    )
    .unwrap()
}

fn rtp_packet(seq: u16, payload_len: usize) -> Vec<u8> {
    let mut packet = vec![0x80, 0x08];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq).wrapping_mul(160)).to_be_bytes());
    packet.extend_from_slice(&SSRC.to_be_bytes());
    packet.extend((0..payload_len).map(|i| (i as u8).wrapping_mul(31) ^ (seq >> 3) as u8));
    packet
}

fn sender_report(sequence: u32) -> Vec<u8> {
    let mut packet = vec![0x80, 200, 0x00, 0x06];
    packet.extend_from_slice(&SSRC.to_be_bytes());
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend((0..20).map(|i| i as u8));
    packet
}

/// Sequence numbers that cross the 16-bit wrap, so the rollover counter becomes 1.
fn wrapping_sequence() -> impl Iterator<Item = u16> {
    (0..40u16).map(|step| 65_516u16.wrapping_add(step))
}

#[test]
fn row43_ours_protect_oracle_unprotect_rtp_across_wrap() {
    for suite in SUITES {
        let key = KeyMaterial::generate();
        let mut ours = SrtpContext::new(suite, &key);
        let mut theirs = oracle(suite, &key);
        for seq in wrapping_sequence() {
            let plain = rtp_packet(seq, 160);
            let mut buf = plain.clone();
            buf.resize(plain.len() + ours.rtp_overhead(), 0);
            let len = ours.protect_rtp(&mut buf, plain.len()).unwrap();
            let decrypted = theirs.decrypt_rtp(&buf[..len]).unwrap();
            assert_eq!(&decrypted[..], &plain[..], "{suite} seq {seq}");
        }
        assert_eq!(ours.rollover_counter(SSRC), Some(1));
    }
}

#[test]
fn row43_oracle_protect_ours_unprotect_rtp_across_wrap() {
    for suite in SUITES {
        let key = KeyMaterial::generate();
        let mut ours = SrtpContext::new(suite, &key);
        let mut theirs = oracle(suite, &key);
        for seq in wrapping_sequence() {
            let plain = rtp_packet(seq, 160);
            let mut protected = theirs.encrypt_rtp(&plain).unwrap().to_vec();
            assert_eq!(protected.len(), plain.len() + suite.rtp_tag_len());
            let len = ours.unprotect_rtp(&mut protected).unwrap();
            assert_eq!(&protected[..len], &plain[..], "{suite} seq {seq}");
        }
        assert_eq!(ours.rollover_counter(SSRC), Some(1));
    }
}

#[test]
fn ours_and_oracle_produce_identical_srtp_bytes() {
    for suite in SUITES {
        let key = KeyMaterial::generate();
        let mut ours = SrtpContext::new(suite, &key);
        let mut theirs = oracle(suite, &key);
        for seq in wrapping_sequence() {
            let plain = rtp_packet(seq, 33);
            let mut buf = plain.clone();
            buf.resize(plain.len() + ours.rtp_overhead(), 0);
            let len = ours.protect_rtp(&mut buf, plain.len()).unwrap();
            assert_eq!(&buf[..len], &theirs.encrypt_rtp(&plain).unwrap()[..]);
        }
    }
}

#[test]
fn row43_ours_protect_oracle_unprotect_rtcp() {
    for suite in SUITES {
        let key = KeyMaterial::generate();
        let mut ours = SrtpContext::new(suite, &key);
        let mut theirs = oracle(suite, &key);
        for report in 0..5 {
            let plain = sender_report(report);
            let mut buf = plain.clone();
            buf.resize(plain.len() + ours.rtcp_overhead(), 0);
            let len = ours.protect_rtcp(&mut buf, plain.len()).unwrap();
            assert_eq!(len, plain.len() + 14, "SRTCP tag is 80 bits for {suite}");
            let decrypted = theirs.decrypt_rtcp(&buf[..len]).unwrap();
            assert_eq!(&decrypted[..], &plain[..], "{suite} report {report}");
        }
    }
}

#[test]
fn row43_oracle_protect_ours_unprotect_rtcp() {
    for suite in SUITES {
        let key = KeyMaterial::generate();
        let mut ours = SrtpContext::new(suite, &key);
        let mut theirs = oracle(suite, &key);
        for report in 0..5 {
            let plain = sender_report(report);
            let mut protected = theirs.encrypt_rtcp(&plain).unwrap().to_vec();
            let len = ours.unprotect_rtcp(&mut protected).unwrap();
            assert_eq!(&protected[..len], &plain[..], "{suite} report {report}");
        }
    }
}

#[test]
fn oracle_rejects_our_packets_under_another_key() {
    let mut ours = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &KeyMaterial::generate());
    let mut theirs = oracle(SrtpSuite::AesCm128HmacSha1_80, &KeyMaterial::generate());
    let plain = rtp_packet(1, 160);
    let mut buf = plain.clone();
    buf.resize(plain.len() + ours.rtp_overhead(), 0);
    let len = ours.protect_rtp(&mut buf, plain.len()).unwrap();
    assert!(theirs.decrypt_rtp(&buf[..len]).is_err());
}
