//! SDES on Teams -> PSTN calls end to end through the call (rows 43, 44; doc 3.1): what
//! Microsoft may offer besides a plain `_80` line, and what the call does with it.

use super::*;

const USABLE_KEY: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIz";

/// Microsoft's offer over `profile` with `crypto` lines, PCMU/PCMA and events.
fn teams_offer(profile: &str, crypto: &str) -> String {
    format!(
        "v=0\r\no=- 9 9 IN IP4 52.112.1.1\r\ns=-\r\nc=IN IP4 52.112.1.1\r\nt=0 0\r\n\
         m=audio 49152 {profile} 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n{crypto}\
         a=rtcp-mux\r\na=sendrecv\r\n"
    )
}

/// Rows 43, 44: Microsoft offers over `UDP/TLS/RTP/SAVP` (DTLS beside SDES), with a first
/// crypto line asking for unencrypted SRTCP (which the media core does not do) and a second
/// usable one. The carrier is called with plain RTP; Teams' answer is SDES over `RTP/SAVP`
/// with one crypto line under tag 2, no fingerprint or setup; the media core decrypts under
/// the tag-2 key: the call connects on the remaining line.
#[test]
fn row43_udp_tls_offer_with_a_refused_line_connects_on_the_usable_one() {
    let crypto = format!(
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{TEAMS_KEY_B64}|2^31 UNENCRYPTED_SRTCP\r\n\
         a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{USABLE_KEY}|2^31\r\n\
         a=fingerprint:sha-256 AE:24:07:15:5C:B7:45:1A:E4:45:60:C1:1E:68:0E:CC:8D:A6:78:3B:76:65:BB:B0:77:88:07:F8:98:18:62:34\r\n\
         a=setup:actpass\r\n"
    );
    let offer = teams_offer("UDP/TLS/RTP/SAVP", &crypto);
    let mut h = Harness::outbound(setup(), teams_invite("", &offer));
    let invite = h.request(Method::Invite);
    let to_carrier = body(&invite.msg);
    assert!(to_carrier.contains("RTP/AVP 0 8 101"), "{to_carrier}");
    for gone in ["crypto", "fingerprint", "setup", "SAVP"] {
        assert!(!to_carrier.contains(gone), "{gone}: {to_carrier}");
    }
    h.respond(&invite, 200, "c1", &[], Some(&carrier_sdp()));
    let (_, _, ok) = h.response(200);
    let answer = body(&ok);
    assert!(
        answer.contains("m=audio 30000 RTP/SAVP 0 8 101\r\n"),
        "{answer}"
    );
    assert_eq!(answer.matches("a=crypto:").count(), 1, "{answer}");
    assert!(
        answer.contains("a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{answer}"
    );
    for gone in ["fingerprint", "setup", "UDP/TLS", "UNENCRYPTED"] {
        assert!(!answer.contains(gone), "{gone}: {answer}");
    }
    let inbound = h
        .media()
        .into_iter()
        .find_map(|c| match c {
            MediaCommand::SetSrtp {
                inbound: Some(inbound),
                ..
            } => Some(inbound),
            _ => None,
        })
        .expect("SRTP keys");
    assert_eq!(inbound.key.to_base64(), USABLE_KEY);
}

/// Rows 43, 44: an offer whose every crypto line asks for what we do not implement, or a
/// DTLS-only offer, is answered 488 at once: no carrier is called for a call Teams could
/// never hear.
#[test]
fn row43_teams_offer_without_a_usable_key_gets_488_and_no_carrier_is_called() {
    for crypto in [
        format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{TEAMS_KEY_B64}|2^31 UNAUTHENTICATED_SRTP\r\n"),
        format!("a=crypto:1 AEAD_AES_256_GCM inline:{TEAMS_KEY_B64}{TEAMS_KEY_B64}\r\n"),
        "a=setup:actpass\r\na=fingerprint:sha-256 AE:24:07:15\r\n".to_owned(),
    ] {
        let h = Harness::outbound(setup(), teams_invite("", &teams_offer("UDP/TLS/RTP/SAVP", &crypto)));
        assert!(h.requests().is_empty(), "{crypto}");
        let (leg, _, _) = h.response(488);
        assert_eq!(leg, LegId::Teams);
        assert!(h.finished());
    }
}
