//! Behaviour of [`SrtpContext`] on its own: reference vectors, round trips, refusals.

use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::context::MAX_STREAMS;
use super::kdf::SessionKeys;
use super::*;

const SUITES: [SrtpSuite; 2] = [
    SrtpSuite::AesCm128HmacSha1_80,
    SrtpSuite::AesCm128HmacSha1_32,
];

fn hex(text: &str) -> Vec<u8> {
    let clean: String = text.split_whitespace().collect();
    (0..clean.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
        .collect()
}

/// The master key and salt of RFC 3711 Appendix B.3, also used by libsrtp's test driver.
fn reference_key() -> KeyMaterial {
    KeyMaterial::new(
        hex("E1F97A0D3E018BE0D64FA32C06DE4139").try_into().unwrap(),
        hex("0EC675AD498AFEEBB6960B3AABE6").try_into().unwrap(),
    )
}

fn rtp_packet(seq: u16, ssrc: u32, payload_len: usize) -> Vec<u8> {
    let mut packet = vec![0x80, 0x00];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend((0..payload_len).map(|i| (i as u8) ^ (seq as u8)));
    packet
}

/// A receiver report with one report block.
fn rtcp_packet(ssrc: u32) -> Vec<u8> {
    let mut packet = vec![0x81, 201, 0x00, 0x07];
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend((0..24).map(|i| i as u8));
    packet
}

fn protect_rtp(ctx: &mut SrtpContext, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = packet.to_vec();
    buf.resize(packet.len() + ctx.rtp_overhead(), 0);
    let len = ctx.protect_rtp(&mut buf, packet.len())?;
    buf.truncate(len);
    Ok(buf)
}

fn unprotect_rtp(ctx: &mut SrtpContext, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = packet.to_vec();
    let len = ctx.unprotect_rtp(&mut buf)?;
    buf.truncate(len);
    Ok(buf)
}

fn protect_rtcp(ctx: &mut SrtpContext, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = packet.to_vec();
    buf.resize(packet.len() + ctx.rtcp_overhead(), 0);
    let len = ctx.protect_rtcp(&mut buf, packet.len())?;
    buf.truncate(len);
    Ok(buf)
}

fn unprotect_rtcp(ctx: &mut SrtpContext, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = packet.to_vec();
    let len = ctx.unprotect_rtcp(&mut buf)?;
    buf.truncate(len);
    Ok(buf)
}

/// libsrtp's srtp_driver reference packet (AES_CM_128_HMAC_SHA1_80, RFC 3711 B.3 keys).
#[test]
fn libsrtp_reference_rtp_vector() {
    let plain = hex("800f1234decafbad cafebabe abababababababababababababababab");
    let expected =
        hex("800f1234decafbad cafebabe 4e55dc4ce79978d88ca4d215949d2402 b78d6acc99ea179b8dbb");
    let mut sender = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &reference_key());
    assert_eq!(protect_rtp(&mut sender, &plain).unwrap(), expected);
    let mut receiver = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &reference_key());
    assert_eq!(unprotect_rtp(&mut receiver, &expected).unwrap(), plain);
}

/// libsrtp's reference SRTCP packet carries SRTCP index 1 with the E flag.
#[test]
fn libsrtp_reference_rtcp_vector() {
    let plain = hex("81c8000bcafebabe abababababababab abababababababab");
    let expected =
        hex("81c8000bcafebabe 7128035be487b9bdbef89041f977a5a8 80000001 993e08cd54d6c1230798");
    let mut sender = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &reference_key());
    let first = protect_rtcp(&mut sender, &plain).unwrap();
    assert_eq!(&first[first.len() - 14..first.len() - 10], &[0x80, 0, 0, 0]);
    assert_eq!(protect_rtcp(&mut sender, &plain).unwrap(), expected);
    let mut receiver = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &reference_key());
    assert_eq!(unprotect_rtcp(&mut receiver, &expected).unwrap(), plain);
}

#[test]
fn round_trip_both_suites_across_sequence_wrap() {
    for suite in SUITES {
        let key = KeyMaterial::generate();
        let mut sender = SrtpContext::new(suite, &key);
        let mut receiver = SrtpContext::new(suite, &key);
        for step in 0..20u16 {
            let seq = 65_526u16.wrapping_add(step);
            let plain = rtp_packet(seq, 0x1234_5678, 160);
            let protected = protect_rtp(&mut sender, &plain).unwrap();
            assert_eq!(protected.len(), plain.len() + suite.rtp_tag_len());
            assert_eq!(&protected[..12], &plain[..12], "header stays clear");
            assert_ne!(&protected[12..172], &plain[12..], "payload is encrypted");
            assert_eq!(unprotect_rtp(&mut receiver, &protected).unwrap(), plain);
        }
        assert_eq!(sender.rollover_counter(0x1234_5678), Some(1));
        assert_eq!(receiver.rollover_counter(0x1234_5678), Some(1));
    }
}

#[test]
fn rtcp_round_trip_both_suites_uses_80_bit_tag() {
    for suite in SUITES {
        let key = KeyMaterial::generate();
        let mut sender = SrtpContext::new(suite, &key);
        let mut receiver = SrtpContext::new(suite, &key);
        for _ in 0..3 {
            let plain = rtcp_packet(0xCAFE_0001);
            let protected = protect_rtcp(&mut sender, &plain).unwrap();
            assert_eq!(protected.len(), plain.len() + 4 + 10);
            assert_eq!(unprotect_rtcp(&mut receiver, &protected).unwrap(), plain);
        }
    }
}

#[test]
fn header_extension_and_csrcs_stay_clear() {
    let key = KeyMaterial::generate();
    let mut sender = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key);
    let mut receiver = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key);
    // V=2, X=1, CC=1: 12 + 4 (CSRC) + 4 (ext header) + 8 (two ext words) = 28-byte header.
    let mut plain = vec![0x91, 0x00, 0x00, 0x07, 0, 0, 0, 1, 0, 0, 0, 9];
    plain.extend_from_slice(&[0xAA; 4]);
    plain.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x02]);
    plain.extend_from_slice(&[0x55; 8]);
    plain.extend_from_slice(&[0x33; 40]);
    let protected = protect_rtp(&mut sender, &plain).unwrap();
    assert_eq!(&protected[..28], &plain[..28]);
    assert_ne!(&protected[28..68], &plain[28..]);
    assert_eq!(unprotect_rtp(&mut receiver, &protected).unwrap(), plain);
}

#[test]
fn tampered_packets_fail_authentication_without_state_change() {
    for suite in SUITES {
        let key = KeyMaterial::generate();
        let mut sender = SrtpContext::new(suite, &key);
        let mut receiver = SrtpContext::new(suite, &key);
        let protected = protect_rtp(&mut sender, &rtp_packet(7, 42, 160)).unwrap();
        for position in [1, 5, 11, 40, protected.len() - 1] {
            let mut bad = protected.clone();
            bad[position] ^= 0x01;
            assert_eq!(
                unprotect_rtp(&mut receiver, &bad),
                Err(SrtpError::AuthFailed),
                "{suite} byte {position}"
            );
        }
        assert_eq!(
            receiver.rollover_counter(42),
            None,
            "forgeries leave no state"
        );
        assert!(unprotect_rtp(&mut receiver, &protected).is_ok());

        let rtcp = protect_rtcp(&mut sender, &rtcp_packet(42)).unwrap();
        let mut bad = rtcp.clone();
        bad[10] ^= 0x80;
        assert_eq!(
            unprotect_rtcp(&mut receiver, &bad),
            Err(SrtpError::AuthFailed)
        );
        assert!(unprotect_rtcp(&mut receiver, &rtcp).is_ok());
    }
}

#[test]
fn wrong_key_fails_authentication() {
    let mut sender = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &KeyMaterial::generate());
    let mut receiver = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &KeyMaterial::generate());
    let protected = protect_rtp(&mut sender, &rtp_packet(1, 1, 160)).unwrap();
    assert_eq!(
        unprotect_rtp(&mut receiver, &protected),
        Err(SrtpError::AuthFailed)
    );
}

#[test]
fn replayed_and_too_old_packets_are_refused() {
    let key = KeyMaterial::generate();
    let mut sender = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key);
    let mut receiver = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key);
    let packets: Vec<Vec<u8>> = (1000..1100u16)
        .map(|seq| protect_rtp(&mut sender, &rtp_packet(seq, 5, 20)).unwrap())
        .collect();
    // Deliver all but 1090, then the late one, then replays.
    for (offset, packet) in packets.iter().enumerate() {
        if offset != 90 {
            unprotect_rtp(&mut receiver, packet).unwrap();
        }
    }
    assert!(unprotect_rtp(&mut receiver, &packets[90]).is_ok());
    assert_eq!(
        unprotect_rtp(&mut receiver, &packets[90]),
        Err(SrtpError::Replayed)
    );
    assert_eq!(
        unprotect_rtp(&mut receiver, &packets[99]),
        Err(SrtpError::Replayed)
    );
    assert_eq!(
        unprotect_rtp(&mut receiver, &packets[10]),
        Err(SrtpError::TooOld)
    );

    let rtcp: Vec<Vec<u8>> = (0..3)
        .map(|_| protect_rtcp(&mut sender, &rtcp_packet(5)).unwrap())
        .collect();
    unprotect_rtcp(&mut receiver, &rtcp[1]).unwrap();
    unprotect_rtcp(&mut receiver, &rtcp[0]).unwrap();
    assert_eq!(
        unprotect_rtcp(&mut receiver, &rtcp[1]),
        Err(SrtpError::Replayed)
    );
}

#[test]
fn sender_refuses_to_reuse_an_index() {
    let mut sender = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &KeyMaterial::generate());
    protect_rtp(&mut sender, &rtp_packet(10, 5, 20)).unwrap();
    assert_eq!(
        protect_rtp(&mut sender, &rtp_packet(10, 5, 20)),
        Err(SrtpError::Replayed)
    );
}

#[test]
fn mki_is_written_and_checked() {
    let key = KeyMaterial::generate();
    let mki = Mki { value: 1, len: 1 };
    let mut sender = SrtpContext::with_mki(SrtpSuite::AesCm128HmacSha1_80, &key, Some(mki));
    let mut receiver = SrtpContext::with_mki(SrtpSuite::AesCm128HmacSha1_80, &key, Some(mki));
    assert_eq!(sender.rtp_overhead(), 11);
    assert_eq!(sender.rtcp_overhead(), 15);
    let plain = rtp_packet(3, 9, 160);
    let protected = protect_rtp(&mut sender, &plain).unwrap();
    assert_eq!(
        protected[plain.len()],
        1,
        "MKI sits between payload and tag"
    );
    assert_eq!(unprotect_rtp(&mut receiver, &protected).unwrap(), plain);

    let rtcp = protect_rtcp(&mut sender, &rtcp_packet(9)).unwrap();
    assert_eq!(rtcp[rtcp_packet(9).len() + 4], 1);
    assert_eq!(
        unprotect_rtcp(&mut receiver, &rtcp).unwrap(),
        rtcp_packet(9)
    );

    let other = Mki { value: 2, len: 1 };
    let mut stranger = SrtpContext::with_mki(SrtpSuite::AesCm128HmacSha1_80, &key, Some(other));
    let next = protect_rtp(&mut sender, &rtp_packet(4, 9, 160)).unwrap();
    assert_eq!(
        unprotect_rtp(&mut stranger, &next),
        Err(SrtpError::MkiMismatch)
    );
}

#[test]
fn srtcp_without_e_flag_is_authenticated_but_not_decrypted() {
    let key = KeyMaterial::generate();
    let keys = SessionKeys::derive_rtcp(&key);
    let plain = rtcp_packet(77);
    let mut packet = plain.clone();
    packet.extend_from_slice(&5u32.to_be_bytes()); // E = 0, index 5
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(&keys.authentication).unwrap();
    mac.update(&packet);
    packet.extend_from_slice(&mac.finalize().into_bytes()[..10]);

    let mut receiver = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key);
    assert_eq!(unprotect_rtcp(&mut receiver, &packet).unwrap(), plain);
}

#[test]
fn no_room_for_trailer_is_an_error() {
    let mut ctx = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &KeyMaterial::generate());
    let mut buf = rtp_packet(1, 1, 160);
    let len = buf.len();
    assert_eq!(ctx.protect_rtp(&mut buf, len), Err(SrtpError::NoRoom));
    assert_eq!(ctx.protect_rtp(&mut buf, len + 1), Err(SrtpError::NoRoom));
    let mut rtcp = rtcp_packet(1);
    let len = rtcp.len();
    assert_eq!(ctx.protect_rtcp(&mut rtcp, len), Err(SrtpError::NoRoom));
}

#[test]
fn short_and_garbage_packets_are_errors_not_panics() {
    let mut ctx = SrtpContext::with_mki(
        SrtpSuite::AesCm128HmacSha1_32,
        &KeyMaterial::generate(),
        Some(Mki { value: 3, len: 2 }),
    );
    let mut state: u32 = 0x1234_5678;
    let mut next_byte = || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state as u8
    };
    for len in 0..200 {
        for variant in 0..8 {
            let mut packet: Vec<u8> = (0..len).map(|_| next_byte()).collect();
            if let Some(first) = packet.first_mut() {
                // Half the cases look like RTP v2 with random CC/X bits.
                if variant % 2 == 0 {
                    *first = 0x80 | (*first & 0x3F);
                }
            }
            assert!(ctx.clone().unprotect_rtp(&mut packet.clone()).is_err());
            assert!(ctx.clone().unprotect_rtcp(&mut packet.clone()).is_err());
            let mut room = packet.clone();
            room.resize(len + 64, 0);
            // Protect may succeed on a well-formed header; it must simply not panic.
            let _ = ctx.protect_rtp(&mut room, len);
            let _ = ctx.protect_rtcp(&mut room, len);
        }
    }
    let mut empty: [u8; 0] = [];
    assert_eq!(ctx.unprotect_rtp(&mut empty), Err(SrtpError::TooShort));
    assert_eq!(ctx.protect_rtp(&mut [0u8; 4], 100), Err(SrtpError::NoRoom));
}

#[test]
fn unknown_ssrc_forgeries_do_not_evict_known_streams() {
    let key = KeyMaterial::generate();
    let mut sender = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key);
    let mut receiver = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key);
    for seq in 65_530..=65_535u16 {
        let packet = protect_rtp(&mut sender, &rtp_packet(seq, 1, 20)).unwrap();
        unprotect_rtp(&mut receiver, &packet).unwrap();
    }
    let packet = protect_rtp(&mut sender, &rtp_packet(0, 1, 20)).unwrap();
    unprotect_rtp(&mut receiver, &packet).unwrap();
    for ssrc in 100..200u32 {
        let mut forged = rtp_packet(1, ssrc, 20);
        forged.extend_from_slice(&[0; 10]);
        assert_eq!(
            unprotect_rtp(&mut receiver, &forged),
            Err(SrtpError::AuthFailed)
        );
    }
    assert_eq!(receiver.rollover_counter(1), Some(1));
    let packet = protect_rtp(&mut sender, &rtp_packet(1, 1, 20)).unwrap();
    assert!(unprotect_rtp(&mut receiver, &packet).is_ok());
}

#[test]
fn many_ssrcs_reuse_the_least_recently_used_slot() {
    let key = KeyMaterial::generate();
    let mut sender = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key);
    let mut receiver = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key);
    for ssrc in 1..=20u32 {
        for seq in 0..3u16 {
            let packet = protect_rtp(&mut sender, &rtp_packet(seq, ssrc, 20)).unwrap();
            assert!(unprotect_rtp(&mut receiver, &packet).is_ok());
        }
    }
    assert_eq!(receiver.rollover_counter(20), Some(0));
    assert_eq!(
        receiver.rollover_counter(1),
        None,
        "oldest stream forgotten"
    );
}

/// SRTCP indexes are one counter for the whole context: an SSRC forgotten and seen again
/// (or a new one) never gets an index another packet of this key had, and a context
/// continuing another starts above it.
#[test]
fn row43_keystream_reuse_srtcp_index_is_one_rising_counter() {
    let key = KeyMaterial::generate();
    let mut sender = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key);
    let index_of = |packet: &[u8]| {
        let at = packet.len() - 10 - 4;
        u32::from_be_bytes(packet[at..at + 4].try_into().unwrap()) & 0x7FFF_FFFF
    };
    let mut indexes = Vec::new();
    for ssrc in [1, 2, 1, 3] {
        indexes.push(index_of(
            &protect_rtcp(&mut sender, &rtcp_packet(ssrc)).unwrap(),
        ));
    }
    assert_eq!(indexes, vec![0, 1, 2, 3]);
    let mut successor = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key);
    successor.raise_srtcp_index(sender.next_srtcp_index());
    successor.raise_srtcp_index(1);
    assert_eq!(
        index_of(&protect_rtcp(&mut successor, &rtcp_packet(1)).unwrap()),
        4
    );
}

/// A carrier that restarts its sequence numbers (same SSRC) used to be black-holed towards
/// Teams: every packet's index had been used. The first refused packet is dropped, then the
/// stream goes on where it was: indexes keep rising, a receiver that knows the stream
/// authenticates every packet.
#[test]
fn row43_sender_restart_continues_the_sequence_instead_of_reusing_indexes() {
    let key = KeyMaterial::generate();
    let mut sender = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key);
    let mut receiver = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key);
    for seq in 5000..5100u16 {
        let packet = protect_rtp(&mut sender, &rtp_packet(seq, 9, 20)).unwrap();
        unprotect_rtp(&mut receiver, &packet).unwrap();
    }
    assert_eq!(
        protect_rtp(&mut sender, &rtp_packet(7, 9, 20)),
        Err(SrtpError::TooOld),
        "the first packet of the restarted stream"
    );
    let mut seen = Vec::new();
    for seq in 8..20u16 {
        let packet = protect_rtp(&mut sender, &rtp_packet(seq, 9, 20)).unwrap();
        let plain = unprotect_rtp(&mut receiver, &packet).expect("receiver takes it");
        seen.push(u16::from_be_bytes([plain[2], plain[3]]));
        assert_eq!(&plain[12..], &rtp_packet(seq, 9, 20)[12..]);
    }
    assert_eq!(seen, (5100..5112).collect::<Vec<_>>());
    // A duplicate is still a duplicate, never a restart.
    assert_eq!(
        protect_rtp(&mut sender, &rtp_packet(19, 9, 20)),
        Err(SrtpError::Replayed)
    );
}

/// A restart is taken only from a packet that authenticates as the start of a fresh stream
/// of a known SSRC; anything else changes nothing.
#[test]
fn row43_a_receiver_restarts_a_stream_only_from_an_authentic_packet() {
    let key = KeyMaterial::generate();
    let mut sender = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key);
    let mut receiver = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key);
    let mut recorded = Vec::new();
    for seq in 30_000..30_010u16 {
        let packet = protect_rtp(&mut sender, &rtp_packet(seq, 4, 20)).unwrap();
        unprotect_rtp(&mut receiver, &packet).unwrap();
        recorded.push(packet);
    }
    let mut restarted = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key);
    let first = protect_rtp(&mut restarted, &rtp_packet(100, 4, 20)).unwrap();
    assert_eq!(unprotect_rtp(&mut receiver, &first), Err(SrtpError::TooOld));
    assert_eq!(receiver.restart_candidate(&first), Some(4));
    let mut forged = first.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(
        receiver.verify_as_restart(&forged),
        Err(SrtpError::AuthFailed)
    );
    assert_eq!(
        receiver.restart_stream(&mut forged.clone()),
        Err(SrtpError::AuthFailed)
    );
    assert_eq!(
        unprotect_rtp(&mut receiver, &recorded[5]),
        Err(SrtpError::Replayed),
        "the window is where it was"
    );
    let unknown = protect_rtp(&mut restarted, &rtp_packet(101, 77, 20)).unwrap();
    assert_eq!(receiver.restart_candidate(&unknown), None, "unknown SSRC");

    let mut buf = first.clone();
    assert_eq!(receiver.restart_stream(&mut buf), Ok(first.len() - 10));
    assert_eq!(&buf[..first.len() - 10], &rtp_packet(100, 4, 20)[..]);
    let next = protect_rtp(&mut restarted, &rtp_packet(102, 4, 20)).unwrap();
    assert!(unprotect_rtp(&mut receiver, &next).is_ok(), "window moved");
    assert_eq!(
        unprotect_rtp(&mut receiver, &first),
        Err(SrtpError::Replayed)
    );
}

#[test]
fn error_labels_are_distinct() {
    let all = [
        SrtpError::TooShort,
        SrtpError::BadVersion,
        SrtpError::NoRoom,
        SrtpError::AuthFailed,
        SrtpError::Replayed,
        SrtpError::TooOld,
        SrtpError::MkiMismatch,
        SrtpError::IndexExhausted,
    ];
    let labels: std::collections::HashSet<_> = all.iter().map(|e| e.label()).collect();
    assert_eq!(labels.len(), all.len());
}

/// Found by `fuzz/fuzz_targets/srtp_unprotect.rs`: once more SSRCs than the stream table
/// holds had passed, an SSRC that came back got SRTCP index 0 again, so the same (SSRC,
/// index) left under one key twice (a reused keystream) and the receiver dropped it as a
/// replay. SRTCP indexes now come from one counter per context.
#[test]
fn srtcp_index_is_never_reused_for_an_ssrc_that_comes_back() {
    let key = reference_key();
    let mut sender = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key);
    let mut receiver = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key);
    let srtcp_index = |packet: &[u8]| {
        let at = packet.len() - 10 - 4;
        u32::from_be_bytes(packet[at..at + 4].try_into().unwrap()) & 0x7fff_ffff
    };
    let mut sent_for_first = Vec::new();
    for ssrc in (1..=MAX_STREAMS as u32 + 1).chain([1]) {
        let packet = protect_rtcp(&mut sender, &rtcp_packet(ssrc)).unwrap();
        if ssrc == 1 {
            sent_for_first.push(srtcp_index(&packet));
        }
        assert_eq!(
            unprotect_rtcp(&mut receiver, &packet).as_deref(),
            Ok(&rtcp_packet(ssrc)[..]),
            "SSRC {ssrc}"
        );
    }
    assert_eq!(sent_for_first.len(), 2);
    assert_ne!(sent_for_first[0], sent_for_first[1]);
}

/// The fuzzer's minimised input for the bug above, replayed as the target does: byte 0
/// picks suite and MKI, then records of (control, length, bytes); control bit 0 = RTCP,
/// bit 1 = protect with the sender first (which must then unprotect).
#[test]
fn fuzz_srtp_unprotect_crash_b4f2f769() {
    let input = hex(
        "00030a818100030a8181810000030a81818100183f99840041030a8181814181813fc300410308\
         9981813f00840041030a818181193f030a810118030a81814000941800410000030a818100030a\
         8181810000030a81818100183f00ffffffff0180418181980000000309840081000000000000030a\
         81818100183f9984",
    );
    let (shape, mut rest) = input.split_first().unwrap();
    let suite = SUITES[usize::from(shape & 1)];
    let mki = (shape & 2 != 0).then_some(Mki {
        value: 0x0102_0304,
        len: 1 + (shape >> 2) % 8,
    });
    let key = KeyMaterial::new([0x11; 16], [0x22; 14]);
    let mut sender = SrtpContext::with_mki(suite, &key, mki);
    let mut receiver = SrtpContext::with_mki(suite, &key, mki);
    while let [control, len, tail @ ..] = rest {
        let len = if control & 0x80 != 0 {
            usize::from(*len) * 8
        } else {
            usize::from(*len)
        };
        let (body, after) = tail.split_at(len.min(tail.len()));
        rest = after;
        let rtcp = control & 1 != 0;
        let mut buf = vec![0u8; body.len() + 256];
        buf[..body.len()].copy_from_slice(body);
        let mut len = body.len();
        if control & 2 != 0 {
            let protected = if rtcp {
                sender.protect_rtcp(&mut buf, len)
            } else {
                sender.protect_rtp(&mut buf, len)
            };
            let Ok(n) = protected else { continue };
            len = n;
            let result = if rtcp {
                receiver.unprotect_rtcp(&mut buf[..len])
            } else {
                receiver.unprotect_rtp(&mut buf[..len])
            };
            assert!(
                !matches!(result, Err(SrtpError::Replayed | SrtpError::TooOld)),
                "a fresh packet of our sender refused: {result:?}"
            );
        } else {
            let _ = if rtcp {
                receiver.unprotect_rtcp(&mut buf[..len])
            } else {
                receiver.unprotect_rtp(&mut buf[..len])
            };
        }
    }
}
