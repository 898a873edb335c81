//! SRTP and SRTCP unprotect (`media::srtp::SrtpContext`) on arbitrary packets, with and
//! without an MKI, for both suites; half the packets are first protected by a sender with
//! the same keys so authentication passes and decryption and the replay window are reached.
//!
//! Checked: no panic; whatever authenticates is never longer than what came in; a packet
//! our sender protected unprotects to exactly the original bytes when accepted (with the
//! sequence number the sender gave it when it continued a restarted stream), and an
//! SRTCP packet of our sender is always accepted (the fuzzer picks sequence numbers and
//! SSRCs, so replays, rollovers, unknown and forgotten streams all occur).
#![no_main]

use libfuzzer_sys::fuzz_target;
use teams_sbc::media::srtp::{KeyMaterial, Mki, SrtpContext, SrtpError, SrtpSuite};
use teams_sbc::media::sys::PACKET_BUFFER_LEN;
use teams_sbc_fuzz::Records;

fuzz_target!(|data: &[u8]| {
    let Some((&shape, data)) = data.split_first() else {
        return;
    };
    let suite = if shape & 1 == 0 {
        SrtpSuite::AesCm128HmacSha1_80
    } else {
        SrtpSuite::AesCm128HmacSha1_32
    };
    let mki = (shape & 2 != 0).then_some(Mki {
        value: 0x0102_0304,
        len: 1 + (shape >> 2) % 8,
    });
    let key = KeyMaterial::new([0x11; 16], [0x22; 14]);
    let mut sender = SrtpContext::with_mki(suite, &key, mki);
    let mut receiver = SrtpContext::with_mki(suite, &key, mki);

    for (control, bytes) in Records::new(data) {
        let rtcp = control & 1 != 0;
        let protect_first = control & 2 != 0;
        let mut buf = [0u8; PACKET_BUFFER_LEN];
        let body = bytes.get(..PACKET_BUFFER_LEN - 256).unwrap_or(bytes);
        buf[..body.len()].copy_from_slice(body);
        let mut len = body.len();
        // What the receiver must give back: the body, with the sequence number the sender
        // wrote when it continued a restarted stream (SRTP only; the header is in clear).
        let mut expected = body.to_vec();
        if protect_first {
            let protected = if rtcp {
                sender.protect_rtcp(&mut buf, len)
            } else {
                sender.protect_rtp(&mut buf, len)
            };
            match protected {
                Ok(n) => len = n,
                Err(_) => continue,
            }
            if !rtcp {
                if let (Some(sent), Some(seq)) = (expected.get_mut(2..4), buf.get(2..4)) {
                    sent.copy_from_slice(seq);
                }
            }
        }
        let unprotected = if rtcp {
            receiver.unprotect_rtcp(&mut buf[..len])
        } else {
            receiver.unprotect_rtp(&mut buf[..len])
        };
        match unprotected {
            Ok(n) => {
                assert!(n <= len);
                if protect_first {
                    assert_eq!(&buf[..n], &expected[..], "round trip changed the packet");
                }
            }
            // SRTP receivers estimate the packet index (rollover counter) from the sequence
            // number; the fuzzer's jumps of more than 2^15 make that estimate differ from
            // the sender's by design (RFC 3711 §3.3.1), and an SSRC the sender's 8-entry
            // table forgot restarts its estimate (open), so a refused SRTP packet of ours
            // proves nothing. SRTCP carries its index: any refusal there is a bug.
            Err(SrtpError::AuthFailed | SrtpError::Replayed | SrtpError::TooOld)
                if protect_first && !rtcp => {}
            Err(e) if protect_first => panic!("our own packet failed: {e:?}"),
            Err(_) => {}
        }
    }
});
