//! SDP behaviour tests, named after the rows of the checklist in
//! docs/teams-direct-routing.md §6 where a test proves one.

use std::net::{IpAddr, SocketAddr};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

const TEAMS_OFFER: &[u8] = include_bytes!("testdata/teams_bypass_offer.sdp");
const CARRIER_OFFER: &[u8] = include_bytes!("testdata/carrier_offer.sdp");

fn crlf(text: &str) -> Vec<u8> {
    text.replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}

fn sdp(text: &str) -> Sdp {
    Sdp::parse(&crlf(text)).unwrap()
}

fn text(s: &Sdp) -> String {
    String::from_utf8(s.to_bytes()).unwrap()
}

fn line_values(s: &Sdp, kind: u8) -> Vec<String> {
    s.lines()
        .filter(|l| l.kind() == kind)
        .map(|l| l.value().to_owned())
        .collect()
}

struct Fixture {
    key: SdesKey,
    ice: IceCredentials,
    teams_codecs: CodecList,
    carrier_codecs: CodecList,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            key: SdesKey::generate_with(&mut StdRng::seed_from_u64(7)),
            ice: IceCredentials::new("sbcU", "sbcpassword0123456789abcd").unwrap(),
            teams_codecs: CodecList::teams_default(),
            carrier_codecs: CodecList::carrier_default(),
        }
    }

    fn teams(&self, bypass: bool) -> TeamsSide<'_> {
        TeamsSide {
            local: "203.0.113.10:40000".parse().unwrap(),
            key: &self.key,
            ice: bypass.then_some(&self.ice),
            codecs: &self.teams_codecs,
            inband_dtmf: false,
            comfort_noise: false,
        }
    }

    fn carrier(&self, mux: bool) -> CarrierSide<'_> {
        CarrierSide {
            local: "10.1.1.1:30000".parse().unwrap(),
            codecs: &self.carrier_codecs,
            offer_rtcp_mux: mux,
            strip_vendor_attributes: true,
        }
    }
}

fn teams_origin() -> LegOrigin {
    LegOrigin::new(4001, "203.0.113.10".parse().unwrap())
}

fn carrier_origin() -> LegOrigin {
    LegOrigin::new(9000, "10.1.1.1".parse().unwrap())
}

fn carrier_offer_with(extra_media_lines: &str) -> Sdp {
    sdp(&format!(
        "v=0\n\
         o=pstn 55 55 IN IP4 198.51.100.20\n\
         s=-\n\
         c=IN IP4 198.51.100.20\n\
         t=0 0\n\
         m=audio 16384 RTP/AVP 0 8 101\n\
         a=rtpmap:101 telephone-event/8000\n\
         a=fmtp:101 0-15\n\
         {extra_media_lines}"
    ))
}

fn to_teams(offer: &Sdp, bypass: bool) -> Sdp {
    let f = Fixture::new();
    offer_towards_teams(offer, &f.teams(bypass), &mut teams_origin()).unwrap()
}

// ---- row 39: hold towards Teams only as a=inactive ----

#[test]
fn row39_sendonly_becomes_inactive_towards_teams() {
    for dir in ["sendonly", "recvonly", "inactive"] {
        let out = to_teams(&carrier_offer_with(&format!("a={dir}\n")), false);
        let media = &out.media()[0];
        assert_eq!(media.direction(), Some(Direction::Inactive), "{dir}");
        let dirs: Vec<_> = out
            .lines()
            .filter_map(|l| l.attribute())
            .filter(|(n, v)| v.is_none() && Direction::from_attribute(n).is_some())
            .collect();
        assert_eq!(
            dirs,
            vec![("inactive", None)],
            "{dir}: exactly one direction"
        );
    }
}

#[test]
fn row39_direction_with_trailing_blanks_is_still_converted() {
    let out = to_teams(&carrier_offer_with("a=sendonly \na=rtcp-mux\t\n"), false);
    let t = text(&out);
    assert!(!t.contains("sendonly"), "{t}");
    assert_eq!(out.media()[0].direction(), Some(Direction::Inactive));
    assert_eq!(t.matches("rtcp-mux").count(), 1, "{t}");
}

#[test]
fn row39_session_level_sendonly_becomes_media_level_inactive() {
    let offer = sdp(
        "v=0\no=- 1 1 IN IP4 198.51.100.20\ns=-\nc=IN IP4 198.51.100.20\nt=0 0\n\
         a=sendonly\nm=audio 16384 RTP/AVP 0\n",
    );
    let out = to_teams(&offer, false);
    assert_eq!(out.session_direction(), None);
    assert_eq!(out.media()[0].direction(), Some(Direction::Inactive));
}

#[test]
fn row39_active_call_is_explicit_sendrecv() {
    let out = to_teams(&carrier_offer_with(""), false);
    assert_eq!(out.media()[0].direction(), Some(Direction::SendRecv));
}

// ---- row 40: never c=0.0.0.0 ----

#[test]
fn row40_zero_address_hold_keeps_our_address_and_goes_inactive() {
    let offer = sdp(
        "v=0\no=- 1 2 IN IP4 198.51.100.20\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\n\
         m=audio 16384 RTP/AVP 0 8\na=sendrecv\n",
    );
    let out = to_teams(&offer, false);
    assert_eq!(line_values(&out, b'c'), vec!["IN IP4 203.0.113.10"]);
    assert!(!text(&out).contains("0.0.0.0"));
    assert_eq!(out.media()[0].direction(), Some(Direction::Inactive));
    // Media-level zero address as well.
    let offer = carrier_offer_with("c=IN IP4 0.0.0.0\n");
    let out = to_teams(&offer, false);
    assert!(!text(&out).contains("0.0.0.0"));
    assert_eq!(out.media()[0].direction(), Some(Direction::Inactive));
}

// ---- row 41: stable media address/port; version only moves with content ----

#[test]
fn row41_reoffer_keeps_address_port_and_bumps_version_only_on_change() {
    let f = Fixture::new();
    let mut origin = teams_origin();
    let first = offer_towards_teams(&carrier_offer_with(""), &f.teams(false), &mut origin).unwrap();
    let refresh =
        offer_towards_teams(&carrier_offer_with(""), &f.teams(false), &mut origin).unwrap();
    let hold = offer_towards_teams(
        &carrier_offer_with("a=sendonly\n"),
        &f.teams(false),
        &mut origin,
    )
    .unwrap();
    for s in [&first, &refresh, &hold] {
        assert_eq!(line_values(s, b'c'), vec!["IN IP4 203.0.113.10"]);
        assert_eq!(s.media()[0].port(), 40000);
        assert_eq!(s.media()[0].profile(), "RTP/SAVP");
        assert_eq!(s.origin().unwrap().session_id, 4001);
    }
    assert_eq!(first.origin().unwrap().session_version, 4001);
    assert_eq!(refresh.origin().unwrap().session_version, 4001);
    assert_eq!(hold.origin().unwrap().session_version, 4002);
    // The carrier's origin never reaches Teams.
    assert!(!text(&first).contains("198.51.100.20"));
}

// ---- row 43: SDES AES_CM_128_HMAC_SHA1_80 with |2^31; pick _80 ----

#[test]
fn row43_offer_has_one_fresh_80_key_with_lifetime() {
    let f = Fixture::new();
    let out = offer_towards_teams(
        &Sdp::parse(CARRIER_OFFER).unwrap(),
        &f.teams(false),
        &mut teams_origin(),
    )
    .unwrap();
    let crypto: Vec<_> = out.media()[0].crypto().collect();
    assert_eq!(crypto.len(), 1);
    let c = crypto[0];
    assert_eq!(c.tag, 1);
    assert_eq!(c.suite_name, "AES_CM_128_HMAC_SHA1_80");
    assert_eq!(c.key_base64.len(), 40);
    assert_eq!(c.lifetime, Some("2^31"));
    assert_eq!(c.mki, None);
    assert_eq!(&c.key_salt().unwrap(), f.key.key_salt());
    assert!(text(&out).contains(&format!(
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}|2^31\r\n",
        f.key.to_base64()
    )));
}

#[test]
fn row43_carrier_crypto_lines_are_replaced_by_ours() {
    let offer = carrier_offer_with(
        "a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\n",
    );
    let out = to_teams(&offer, false);
    let crypto: Vec<_> = out.media()[0].crypto().collect();
    assert_eq!(crypto.len(), 1);
    assert_eq!(crypto[0].suite_name, "AES_CM_128_HMAC_SHA1_80");
    assert!(!text(&out).contains("WVNfX19z"));
}

#[test]
fn row43_answer_to_teams_echoes_tag_of_the_80_line() {
    let f = Fixture::new();
    let teams_offer = Sdp::parse(TEAMS_OFFER).unwrap();
    let carrier_answer = Sdp::parse(CARRIER_OFFER).unwrap();
    let answer = answer_towards_teams(
        &carrier_answer,
        &teams_offer,
        &f.teams(true),
        &mut teams_origin(),
    )
    .unwrap();
    let crypto: Vec<_> = answer.media()[0].crypto().collect();
    assert_eq!(crypto.len(), 1);
    // Tag 3 is the _80 line without MKI (tag 2 has MKI 1:1, tag 4 is _32).
    assert_eq!(
        (crypto[0].tag, crypto[0].suite_name),
        (3, "AES_CM_128_HMAC_SHA1_80")
    );
    assert_eq!(&crypto[0].key_salt().unwrap(), f.key.key_salt());
}

#[test]
fn row43_remote_key_from_teams_is_the_80_line() {
    let teams = Sdp::parse(TEAMS_OFFER).unwrap();
    let remote = RemoteMedia::from_sdp(&teams).unwrap();
    let chosen = remote.crypto.unwrap();
    let line3 = teams.media()[0].crypto().find(|c| c.tag == 3).unwrap();
    assert_eq!(chosen.tag, 3);
    assert_eq!(chosen.suite, SrtpSuite::AesCm128HmacSha1_80);
    assert_eq!(chosen.key_base64, line3.key_base64);
    assert_eq!(chosen.key_salt, line3.key_salt().unwrap());
    assert_eq!(chosen.lifetime, Some(1 << 31));
    assert_eq!(chosen.mki, None);
}

// ---- row 44: MKI and several crypto lines ----

#[test]
fn row44_mki_line_tolerated_and_non_mki_preferred() {
    let k = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
    let base = "v=0\no=- 1 1 IN IP4 52.114.7.24\ns=-\nc=IN IP4 52.114.7.24\nt=0 0\n\
                m=audio 52884 RTP/SAVP 0\n";
    // Only an MKI line: it is used, MKI reported.
    let only_mki = sdp(&format!(
        "{base}a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^31|1:1\n"
    ));
    let c = RemoteMedia::from_sdp(&only_mki).unwrap().crypto.unwrap();
    assert_eq!(
        (c.tag, c.mki),
        (
            1,
            Some(Mki {
                value: 1,
                length: 1
            })
        )
    );
    // MKI line first, plain line second: the plain one wins.
    let both = sdp(&format!(
        "{base}a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^31|1:1\n\
         a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^31\n"
    ));
    let c = RemoteMedia::from_sdp(&both).unwrap().crypto.unwrap();
    assert_eq!((c.tag, c.mki), (2, None));
    // A malformed line among good ones is skipped; a _32 line loses against _80 with MKI.
    let mixed = sdp(&format!(
        "{base}a=crypto:0 AES_CM_128_HMAC_SHA1_32 inline:{k}|2^31\n\
         a=crypto:garbage\n\
         a=crypto:5 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^31|4:2\n"
    ));
    let c = RemoteMedia::from_sdp(&mixed).unwrap().crypto.unwrap();
    assert_eq!((c.tag, c.suite), (5, SrtpSuite::AesCm128HmacSha1_80));
    assert_eq!(mixed.media()[0].crypto().count(), 2);
}

#[test]
fn row44_teams_answer_with_two_crypto_lines_is_read() {
    let k1 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd";
    let k2 = "HRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgEA";
    let answer = sdp(&format!(
        "v=0\no=- 0 1 IN IP4 52.114.7.24\ns=session\nc=IN IP4 52.114.7.24\nt=0 0\n\
         m=audio 52890 RTP/SAVP 0 101\na=rtcp:52890\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{k1}|2^31|1:1\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{k2}|2^31\n\
         a=rtcp-mux\na=rtpmap:101 telephone-event/8000\n"
    ));
    let remote = RemoteMedia::from_sdp(&answer).unwrap();
    assert_eq!(remote.crypto.unwrap().key_base64, k2);
    assert_eq!(remote.rtp, "52.114.7.24:52890".parse().unwrap());
}

#[test]
fn offer_without_usable_crypto_is_refused_with_488() {
    let f = Fixture::new();
    let teams_offer = sdp(
        "v=0\no=- 1 1 IN IP4 52.114.7.24\ns=-\nc=IN IP4 52.114.7.24\nt=0 0\n\
         m=audio 52884 RTP/SAVP 0\na=crypto:1 F8_128_HMAC_SHA1_80 inline:abcd\n",
    );
    let err = answer_towards_teams(
        &carrier_offer_with(""),
        &teams_offer,
        &f.teams(false),
        &mut teams_origin(),
    )
    .unwrap_err();
    assert_eq!(err, SdpError::NoUsableCrypto);
    assert_eq!(err.sip_status(), 488);
}

/// Rows 43, 45 and doc 3.1: an offer over `UDP/TLS/RTP/SAVP` carrying SDES beside DTLS (the
/// form Microsoft documents for offers with DTLS) gets an SDES answer that says so: profile
/// `RTP/SAVP` (`RTP/SAVPF` for `UDP/TLS/RTP/SAVPF`), our one crypto line under the offer's
/// tag, no fingerprint or setup, the offer's other lines answered as usual. A DTLS-only
/// offer has no key we can use: 488.
#[test]
fn row43_answer_to_a_udp_tls_rtp_savp_offer_is_sdes_over_rtp_savp() {
    let f = Fixture::new();
    for (offered, answered) in [
        ("UDP/TLS/RTP/SAVP", "RTP/SAVP"),
        ("UDP/TLS/RTP/SAVPF", "RTP/SAVPF"),
    ] {
        let teams_offer = sdp(&format!(
            "v=0\no=- 1 1 IN IP4 52.114.7.24\ns=-\nc=IN IP4 52.114.7.24\nt=0 0\n\
             a=fingerprint:sha-256 AE:24:07:15:5C:B7:45:1A:E4:45:60:C1:1E:68:0E:CC:8D:A6:78:3B:76:65:BB:B0:77:88:07:F8:98:18:62:34\n\
             m=audio 54056 {offered} 0 8 101\na=rtcp:54056\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:krXco0QRglwErMqtbMs2zSw29tBdmdgXpEYZhQmp|2^31\n\
             a=fingerprint:sha-256 AE:24:07:15:5C:B7:45:1A:E4:45:60:C1:1E:68:0E:CC:8D:A6:78:3B:76:65:BB:B0:77:88:07:F8:98:18:62:34\n\
             a=setup:actpass\na=rtcp-mux\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-16\n\
             m=video 54058 {offered} 96\na=rtpmap:96 H264/90000\n"
        ));
        let answer = answer_towards_teams(
            &carrier_offer_with(""),
            &teams_offer,
            &f.teams(false),
            &mut teams_origin(),
        )
        .unwrap();
        let t = text(&answer);
        let audio = &answer.media()[0];
        assert_eq!(audio.profile(), answered, "{t}");
        assert_eq!(
            audio.crypto().map(|c| c.tag).collect::<Vec<_>>(),
            vec![1],
            "{t}"
        );
        for gone in ["fingerprint", "setup:", "UDP/TLS/RTP/SAVP 0"] {
            assert!(!t.contains(gone), "{gone}:\n{t}");
        }
        assert_eq!(audio.format_list(), "0 8 101", "{t}");
        assert!(t.contains("a=rtcp-mux"), "{t}");
        // The video stream is refused as offered (port 0, its profile as it came).
        assert_eq!(
            answer.media()[1].lines()[0].value(),
            format!("video 0 {offered} 96")
        );
    }
    let dtls_only = sdp(
        "v=0\no=- 1 1 IN IP4 52.114.7.24\ns=-\nc=IN IP4 52.114.7.24\nt=0 0\n\
         m=audio 54056 UDP/TLS/RTP/SAVP 0\na=setup:actpass\n\
         a=fingerprint:sha-256 AE:24:07:15:5C:B7:45:1A:E4:45:60:C1:1E:68:0E:CC:8D:A6:78:3B:76:65:BB:B0:77:88:07:F8:98:18:62:34\n",
    );
    let err = answer_towards_teams(
        &carrier_offer_with(""),
        &dtls_only,
        &f.teams(false),
        &mut teams_origin(),
    )
    .unwrap_err();
    assert_eq!(err.sip_status(), 488);
}

/// Rows 43, 44 and the refusals of `sdp::crypto`: lines asking for what we do not implement
/// (an unknown suite, `UNENCRYPTED_SRTCP`, `UNAUTHENTICATED_SRTP`, a key derivation rate) are
/// refused by not being echoed; the answer carries exactly one line, under the tag of the
/// line we honour, and keeps everything else of a normal answer.
#[test]
fn row43_answer_refuses_crypto_lines_we_cannot_honour_and_keeps_the_rest() {
    let f = Fixture::new();
    let k = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
    let teams_offer = sdp(&format!(
        "v=0\no=- 1 1 IN IP4 52.114.7.24\ns=-\nc=IN IP4 52.114.7.24\nt=0 0\n\
         m=audio 52884 RTP/SAVP 0 8 101\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^31 UNENCRYPTED_SRTCP\n\
         a=crypto:2 AEAD_AES_256_GCM inline:{k}{k}|2^31\n\
         a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^31 UNAUTHENTICATED_SRTP KDR=20\n\
         a=crypto:4 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^31 WSH=64\n\
         a=rtcp:52884\na=rtcp-mux\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-16\n\
         a=ptime:20\na=sendrecv\n"
    ));
    let answer = answer_towards_teams(
        &carrier_offer_with(""),
        &teams_offer,
        &f.teams(false),
        &mut teams_origin(),
    )
    .unwrap();
    let t = text(&answer);
    let crypto: Vec<_> = answer.media()[0].crypto().collect();
    assert_eq!(crypto.len(), 1, "{t}");
    assert_eq!(
        (
            crypto[0].tag,
            crypto[0].suite_name,
            crypto[0].session_params
        ),
        (4, "AES_CM_128_HMAC_SHA1_80", ""),
        "{t}"
    );
    assert_eq!(&crypto[0].key_salt().unwrap(), f.key.key_salt());
    assert_eq!(answer.media()[0].format_list(), "0 8 101");
    for kept in ["a=rtcp-mux", "a=rtcp:40000", "a=sendrecv"] {
        assert!(t.contains(kept), "{kept}:\n{t}");
    }
    let remote = RemoteMedia::from_sdp(&teams_offer).unwrap();
    assert_eq!(remote.crypto.unwrap().tag, 4);
}

// ---- row 45: rtcp-mux ----

#[test]
fn row45_rtcp_mux_offered_with_rtcp_on_same_port() {
    let out = to_teams(&carrier_offer_with("a=rtcp:16385\n"), false);
    let m = &out.media()[0];
    assert!(m.rtcp_mux());
    assert_eq!(m.rtcp().unwrap().port, 40000);
    assert_eq!(m.attributes().filter(|(n, _)| *n == "rtcp").count(), 1);
}

#[test]
fn row45_rtcp_mux_accepted_from_teams() {
    let remote = RemoteMedia::from_sdp(&Sdp::parse(TEAMS_OFFER).unwrap()).unwrap();
    assert!(remote.rtcp_mux);
    assert_eq!(remote.rtcp, remote.rtp);
    // Without mux, RTCP goes to a=rtcp or port + 1.
    let plain = Sdp::parse(CARRIER_OFFER).unwrap();
    let remote = RemoteMedia::from_sdp(&plain).unwrap();
    assert!(!remote.rtcp_mux);
    assert_eq!(remote.rtcp, "198.51.100.20:16385".parse().unwrap());
}

#[test]
fn row45_carrier_side_mux_follows_carrier() {
    let f = Fixture::new();
    let teams_offer = Sdp::parse(TEAMS_OFFER).unwrap();
    let no_mux =
        offer_towards_carrier(&teams_offer, &f.carrier(false), &mut carrier_origin()).unwrap();
    assert!(!no_mux.media()[0].rtcp_mux());
    assert!(no_mux.media()[0].rtcp().is_none());
    let mux = offer_towards_carrier(&teams_offer, &f.carrier(true), &mut carrier_origin()).unwrap();
    assert!(mux.media()[0].rtcp_mux());
    // Answer to the carrier: rtcp-mux only if the carrier offered it.
    let teams_answer = to_teams(&Sdp::parse(CARRIER_OFFER).unwrap(), false);
    let plain_offer = Sdp::parse(CARRIER_OFFER).unwrap();
    let a = answer_towards_carrier(
        &teams_answer,
        &plain_offer,
        &f.carrier(true),
        &mut carrier_origin(),
    )
    .unwrap();
    assert!(!a.media()[0].rtcp_mux());
    let mux_offer = carrier_offer_with("a=rtcp-mux\n");
    let a = answer_towards_carrier(
        &teams_answer,
        &mux_offer,
        &f.carrier(false),
        &mut carrier_origin(),
    )
    .unwrap();
    assert!(a.media()[0].rtcp_mux());
}

// ---- row 47: codecs and payload type numbers ----

#[test]
fn row47_codec_filter_drops_unlisted_formats_and_their_lines() {
    let offer = sdp(
        "v=0\no=- 1 1 IN IP4 198.51.100.20\ns=-\nc=IN IP4 198.51.100.20\nt=0 0\n\
         m=audio 16384 RTP/AVP 96 0 97 8 3 101\n\
         a=rtpmap:96 opus/48000/2\na=fmtp:96 useinbandfec=1\na=rtcp-fb:96 nack\n\
         a=rtpmap:97 AMR-WB/16000\na=fmtp:97 octet-align=1\n\
         a=rtpmap:101 telephone-event/8000\na=fmtp:101 0-16\na=rtcp-fb:* trr-int 5\n",
    );
    let out = to_teams(&offer, false);
    let m = &out.media()[0];
    assert_eq!(m.format_list(), "0 8 101");
    let t = text(&out);
    for gone in ["opus", "AMR-WB", "fmtp:96", "fmtp:97", "rtcp-fb:96"] {
        assert!(!t.contains(gone), "{gone} should be dropped:\n{t}");
    }
    assert!(t.contains("a=fmtp:101 0-16\r\n"));
    assert!(t.contains("a=rtcp-fb:* trr-int 5\r\n"));
}

#[test]
fn row47_duplicate_payload_numbers_collapsed() {
    let offer = sdp(
        "v=0\no=- 1 1 IN IP4 198.51.100.20\ns=-\nc=IN IP4 198.51.100.20\nt=0 0\n\
         m=audio 16384 RTP/AVP 0 101 0 101\n\
         a=rtpmap:101 telephone-event/8000\na=rtpmap:101 SILK/16000\n\
         a=fmtp:101 0-16\na=fmtp:101 0-15\n",
    );
    let out = to_teams(&offer, false);
    assert_eq!(out.media()[0].format_list(), "0 101");
    assert_eq!(out.media()[0].rtpmaps().count(), 1);
    assert_eq!(
        out.media()[0].codec(101).unwrap().encoding,
        "telephone-event"
    );
    assert_eq!(out.media()[0].fmtp(101), Some("0-16"));
    assert_eq!(
        out.media()[0]
            .attributes()
            .filter(|(n, _)| *n == "fmtp")
            .count(),
        1
    );
}

#[test]
fn row47_no_common_codec_is_488() {
    let offer = sdp(
        "v=0\no=- 1 1 IN IP4 198.51.100.20\ns=-\nc=IN IP4 198.51.100.20\nt=0 0\n\
         m=audio 16384 RTP/AVP 96\na=rtpmap:96 opus/48000/2\n",
    );
    let f = Fixture::new();
    let err = offer_towards_teams(&offer, &f.teams(false), &mut teams_origin()).unwrap_err();
    assert_eq!(err, SdpError::NoCommonCodec);
    assert_eq!(err.sip_status(), 488);
}

#[test]
fn row47_answers_use_the_offer_payload_numbers() {
    let f = Fixture::new();
    // Teams offered telephone-event as 101; the carrier answers it as 96.
    let teams_offer = Sdp::parse(TEAMS_OFFER).unwrap();
    let carrier_answer = sdp(
        "v=0\no=pstn 1 1 IN IP4 198.51.100.20\ns=-\nc=IN IP4 198.51.100.20\n\
         t=0 0\nm=audio 16384 RTP/AVP 8 96\na=rtpmap:96 telephone-event/8000\na=fmtp:96 0-15\n",
    );
    let answer = answer_towards_teams(
        &carrier_answer,
        &teams_offer,
        &f.teams(false),
        &mut teams_origin(),
    )
    .unwrap();
    let m = &answer.media()[0];
    assert_eq!(m.format_list(), "8 101");
    assert_eq!(m.codec(101).unwrap().encoding, "telephone-event");
    assert_eq!(m.fmtp(101), Some("0-15"));
    assert!(m.rtpmaps().all(|c| c.pt != 96));
    // The media plane then maps 96 <-> 101 (row 48).
    let sent_to_carrier =
        offer_towards_carrier(&teams_offer, &f.carrier(false), &mut carrier_origin()).unwrap();
    let maps =
        CallPtMaps::compute(&sent_to_carrier, &carrier_answer, &answer, &teams_offer).unwrap();
    // Carrier sends with the numbers we offered it (101, from Teams) -> Teams expects 101.
    assert_eq!(maps.carrier_to_teams.map(101), Some(101));
    // Teams sends telephone-event as 101 (our answer) -> the carrier asked for 96.
    assert_eq!(maps.teams_to_carrier.map(101), Some(96));
    assert_eq!(maps.teams_to_carrier.map(8), Some(8));
    assert!(!maps.teams_to_carrier.is_identity());
    assert_eq!(maps.teams_to_carrier.lookup_table()[101], 96);
    assert_eq!(maps.teams_to_carrier.lookup_table()[104], 0xFF);
}

#[test]
fn row47_static_type_answered_under_dynamic_offer_number_gets_rtpmap() {
    let f = Fixture::new();
    let offer = sdp(
        "v=0\no=- 1 1 IN IP4 52.114.7.24\ns=-\nc=IN IP4 52.114.7.24\nt=0 0\n\
         m=audio 52884 RTP/SAVP 97\na=rtpmap:97 PCMU/8000\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd|2^31\n",
    );
    let answer = answer_towards_teams(
        &carrier_offer_with(""),
        &offer,
        &f.teams(false),
        &mut teams_origin(),
    )
    .unwrap();
    let m = &answer.media()[0];
    assert_eq!(m.format_list(), "97");
    assert_eq!(m.codec(97).unwrap().encoding, "PCMU");
}

// ---- row 50: ICE-lite for bypass ----

#[test]
fn row50_bypass_adds_ice_lite_and_exactly_one_ipv4_host_candidate() {
    let out = to_teams(&Sdp::parse(CARRIER_OFFER).unwrap(), true);
    assert!(out.is_ice_lite());
    let m = &out.media()[0];
    assert_eq!(m.ice_ufrag(), Some("sbcU"));
    assert_eq!(m.ice_pwd(), Some("sbcpassword0123456789abcd"));
    let candidates: Vec<_> = m.candidates().collect();
    assert_eq!(candidates.len(), 1);
    let c = candidates[0];
    assert_eq!((c.component, c.transport, c.kind), (1, "UDP", "host"));
    assert_eq!(c.ip(), Some("203.0.113.10".parse::<IpAddr>().unwrap()));
    assert_eq!(c.port, 40000);
    // ice-lite is at session level only.
    assert!(m.attribute("ice-lite").is_none());
}

#[test]
fn row50_no_ice_without_bypass_and_carrier_ice_removed() {
    let offer = carrier_offer_with(
        "a=ice-ufrag:abcd\na=ice-pwd:carrierpassword1234567890\n\
         a=candidate:1 1 UDP 2130706431 198.51.100.20 16384 typ host\na=end-of-candidates\n",
    );
    let out = to_teams(&offer, false);
    let t = text(&out);
    for gone in ["ice-", "candidate", "198.51.100.20"] {
        assert!(!t.contains(gone), "{gone}:\n{t}");
    }
}

#[test]
fn row50_bypass_with_ipv6_address_is_refused() {
    let f = Fixture::new();
    let mut side = f.teams(true);
    side.local = "[2001:db8::10]:40000".parse().unwrap();
    let err = offer_towards_teams(&carrier_offer_with(""), &side, &mut teams_origin()).unwrap_err();
    assert_eq!(err, SdpError::BypassNeedsIpv4);
}

#[test]
fn row50_teams_ice_parameters_extracted() {
    let remote = RemoteMedia::from_sdp(&Sdp::parse(TEAMS_OFFER).unwrap()).unwrap();
    let ice = remote.ice.unwrap();
    assert_eq!(ice.ufrag, "Hx8u");
    assert_eq!(ice.pwd, "Xl6iEV2xdqsBfvIcuBl8QV2R");
    assert!(!ice.lite);
    assert_eq!(ice.candidates.len(), 4);
    assert_eq!(
        ice.candidates[1].addr,
        "198.51.100.77:50010".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(ice.candidates[1].kind, "srflx");
}

// ---- row 53: ICE parameters stable between 183 and 200; restart ----

#[test]
fn row53_same_answer_for_183_and_200_keeps_ice_and_version() {
    let f = Fixture::new();
    let teams_offer = Sdp::parse(TEAMS_OFFER).unwrap();
    let carrier_answer = Sdp::parse(CARRIER_OFFER).unwrap();
    let mut origin = teams_origin();
    let early =
        answer_towards_teams(&carrier_answer, &teams_offer, &f.teams(true), &mut origin).unwrap();
    let fin =
        answer_towards_teams(&carrier_answer, &teams_offer, &f.teams(true), &mut origin).unwrap();
    assert_eq!(early.to_bytes(), fin.to_bytes());
    assert_eq!(fin.media()[0].ice_ufrag(), Some("sbcU"));
}

#[test]
fn row53_ice_restart_changes_credentials_and_version() {
    let f = Fixture::new();
    let mut origin = teams_origin();
    let offer = carrier_offer_with("");
    let before = offer_towards_teams(&offer, &f.teams(true), &mut origin).unwrap();
    let restarted = IceCredentials::generate();
    assert_ne!(restarted.ufrag(), f.ice.ufrag());
    assert!(restarted.ufrag().len() >= 4 && restarted.pwd().len() >= 22);
    let side = TeamsSide {
        ice: Some(&restarted),
        ..f.teams(true)
    };
    let after = offer_towards_teams(&offer, &side, &mut origin).unwrap();
    assert_eq!(after.media()[0].ice_ufrag(), Some(restarted.ufrag()));
    assert_eq!(
        after.origin().unwrap().session_version,
        before.origin().unwrap().session_version + 1
    );
    // Address and port stay (row 41).
    assert_eq!(after.media()[0].port(), before.media()[0].port());
}

// ---- row 54: non-audio m= lines get port 0 ----

#[test]
fn row54_video_from_teams_answered_with_port_0() {
    let f = Fixture::new();
    let mut with_video = String::from_utf8(TEAMS_OFFER.to_vec()).unwrap();
    with_video.push_str(
        "m=video 52886 RTP/SAVP 122 121\r\na=rtpmap:122 X-H264UC/90000\r\n\
         a=rtpmap:121 x-rtvc1/90000\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 \
         inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd|2^31\r\n",
    );
    let teams_offer = Sdp::parse(with_video.as_bytes()).unwrap();
    // The carrier only sees audio.
    let to_carrier =
        offer_towards_carrier(&teams_offer, &f.carrier(false), &mut carrier_origin()).unwrap();
    assert_eq!(to_carrier.media().len(), 1);
    let carrier_answer = Sdp::parse(CARRIER_OFFER).unwrap();
    let answer = answer_towards_teams(
        &carrier_answer,
        &teams_offer,
        &f.teams(true),
        &mut teams_origin(),
    )
    .unwrap();
    assert_eq!(answer.media().len(), 2);
    let video = &answer.media()[1];
    assert_eq!(video.lines().len(), 1);
    assert_eq!(video.lines()[0].value(), "video 0 RTP/SAVP 122 121");
    assert_eq!(answer.media()[0].port(), 40000);
    // The helper gives the same line.
    let rejected = rejected_media_section(&teams_offer.media()[1]);
    assert_eq!(rejected, *video);
}

#[test]
fn row54_video_in_carrier_offer_gets_port_0_towards_teams() {
    let offer = carrier_offer_with(
        "m=video 16390 RTP/AVP 99\na=rtpmap:99 H264/90000\na=fmtp:99 profile-level-id=42e01f\n",
    );
    let out = to_teams(&offer, false);
    assert_eq!(out.media().len(), 2);
    assert_eq!(out.media()[1].lines()[0].value(), "video 0 RTP/SAVP 99");
    assert_eq!(out.media()[1].lines().len(), 1);
}

// ---- row 24: small carrier-side messages ----

#[test]
fn row24_carrier_offer_strips_ice_crypto_vendor_and_silk() {
    let f = Fixture::new();
    let teams_offer = Sdp::parse(TEAMS_OFFER).unwrap();
    let out =
        offer_towards_carrier(&teams_offer, &f.carrier(false), &mut carrier_origin()).unwrap();
    let t = text(&out);
    for gone in [
        "crypto",
        "candidate",
        "ice-",
        "a=x-",
        "SILK",
        "52.114.7.24",
        "rtcp-mux",
        "a=rtcp:",
    ] {
        assert!(!t.contains(gone), "{gone}:\n{t}");
    }
    let m = &out.media()[0];
    assert_eq!(m.profile(), "RTP/AVP");
    // CN/16000 is still "CN": the codec list filters by encoding name.
    assert_eq!(m.format_list(), "9 0 8 13 118 101");
    assert_eq!(m.port(), 30000);
    assert_eq!(line_values(&out, b'c'), vec!["IN IP4 10.1.1.1"]);
    // Kept verbatim: label, ptime, rtcp-rsize, b=, direction.
    for kept in [
        "a=label:main-audio",
        "a=ptime:20",
        "a=rtcp-rsize",
        "b=CT:10000000",
        "a=sendrecv",
    ] {
        assert!(t.contains(kept), "{kept}:\n{t}");
    }
    assert!(
        out.encoded_len() * 2 < TEAMS_OFFER.len(),
        "{} vs {}",
        out.encoded_len(),
        TEAMS_OFFER.len()
    );
}

// ---- parsing leniency and limits ----

#[test]
fn c_line_after_t_line_is_accepted() {
    let s = sdp(
        "v=0\no=- 1 1 IN IP4 198.51.100.20\ns=-\nt=0 0\nc=IN IP4 198.51.100.20\n\
         m=audio 16384 RTP/AVP 0\n",
    );
    assert_eq!(
        s.connection_of(0).unwrap().addr,
        "198.51.100.20".parse::<IpAddr>().unwrap()
    );
    // Our output puts c= back before t=.
    let out = to_teams(&s, false);
    let kinds: Vec<u8> = out.session_lines().iter().map(Line::kind).collect();
    assert_eq!(kinds, b"vosct".to_vec());
}

#[test]
fn missing_s_and_t_lines_are_supplied() {
    let offer = sdp(
        "v=0\no=- 1 1 IN IP4 198.51.100.20\nc=IN IP4 198.51.100.20\na=tool:x\n\
         m=audio 16384 RTP/AVP 0\n",
    );
    let out = to_teams(&offer, true);
    let kinds: Vec<u8> = out.session_lines().iter().map(Line::kind).collect();
    assert_eq!(kinds, b"vosctaa".to_vec());
    assert_eq!(line_values(&out, b't'), vec!["0 0"]);
    assert_eq!(line_values(&out, b's'), vec!["-"]);
}

#[test]
fn lf_only_input_gives_crlf_output() {
    let input = b"v=0\no=- 1 1 IN IP4 198.51.100.20\ns=-\nc=IN IP4 198.51.100.20\nt=0 0\n\
                  m=audio 16384 RTP/AVP 0\na=x-unknown:1\n";
    let s = Sdp::parse(input).unwrap();
    let out = s.to_bytes();
    let expected = String::from_utf8(input.to_vec())
        .unwrap()
        .replace('\n', "\r\n");
    assert_eq!(String::from_utf8(out.clone()).unwrap(), expected);
    assert_eq!(out.len(), s.encoded_len());
    // Mixed endings and a missing final newline also parse.
    let mixed = Sdp::parse(b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\ns=-\r\nt=0 0").unwrap();
    assert_eq!(
        mixed.to_bytes(),
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n".to_vec()
    );
}

#[test]
fn crlf_input_round_trips_byte_for_byte() {
    assert_eq!(
        Sdp::parse(TEAMS_OFFER).unwrap().to_bytes(),
        TEAMS_OFFER.to_vec()
    );
    assert_eq!(
        Sdp::parse(CARRIER_OFFER).unwrap().to_bytes(),
        CARRIER_OFFER.to_vec()
    );
}

#[test]
fn unknown_lines_preserved_verbatim_and_in_order() {
    let offer = sdp(
        "v=0\no=- 1 1 IN IP4 198.51.100.20\ns=Call \u{e9}t\u{e9}\ni=info text\n\
         u=http://example.com/x\ne=ops@example.com\nc=IN IP4 198.51.100.20\nb=AS:64\nt=0 0\n\
         a=tool:gateway 1.2\na=X-vendor-session:zz\nm=audio 16384 RTP/AVP 0 8\ni=audio stream\n\
         b=TIAS:64000\na=x-weird:  spaces  kept \na=mid:1\na=ptime:30\na=maxptime:40\n\
         a=silenceSupp:off - - - -\na=label:1\n",
    );
    let out = to_teams(&offer, false);
    let t = text(&out);
    let expected_in_order = [
        "s=Call \u{e9}t\u{e9}\r\n",
        "i=info text\r\n",
        "u=http://example.com/x\r\n",
        "e=ops@example.com\r\n",
        "c=IN IP4 203.0.113.10\r\n",
        "b=AS:64\r\n",
        "t=0 0\r\n",
        "a=tool:gateway 1.2\r\n",
        "a=X-vendor-session:zz\r\n",
        "m=audio 40000 RTP/SAVP 0 8\r\n",
        "i=audio stream\r\n",
        "b=TIAS:64000\r\n",
        "a=x-weird:  spaces  kept \r\n",
        "a=mid:1\r\n",
        "a=ptime:30\r\n",
        "a=maxptime:40\r\n",
        "a=silenceSupp:off - - - -\r\n",
        "a=label:1\r\n",
        "a=rtcp:40000\r\n",
        "a=rtcp-mux\r\n",
    ];
    let mut from = 0;
    for piece in expected_in_order {
        let at = t[from..]
            .find(piece)
            .unwrap_or_else(|| panic!("{piece:?} missing or out of order in:\n{t}"));
        from += at + piece.len();
    }
    let m = &out.media()[0];
    assert_eq!((m.ptime(), m.maxptime()), (Some(30), Some(40)));
}

#[test]
fn non_utf8_unknown_line_is_copied() {
    let mut input = crlf("v=0\no=- 1 1 IN IP4 198.51.100.20\n");
    input.extend_from_slice(
        b"s=Caf\xe9\r\nc=IN IP4 198.51.100.20\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n",
    );
    let out = to_teams(&Sdp::parse(&input).unwrap(), false);
    assert!(out.to_bytes().windows(7).any(|w| w == b"s=Caf\xe9\r"));
}

#[test]
fn malformed_input_gives_typed_errors() {
    let cases: &[(&[u8], SdpError)] = &[
        (b"", SdpError::MissingVersion),
        (b"\r\n\r\n", SdpError::MissingVersion),
        (
            b"o=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\n",
            SdpError::MissingVersion,
        ),
        (b"v=1\r\n", SdpError::MissingVersion),
        (
            b"v=0\r\nv=0\r\n",
            SdpError::BadLine {
                line: 2,
                reason: "second v= line",
            },
        ),
        (
            b"v=0\r\nhello\r\n",
            SdpError::BadLine {
                line: 2,
                reason: "not <letter>=<value>",
            },
        ),
        (
            b"v=0\r\n=x\r\n",
            SdpError::BadLine {
                line: 2,
                reason: "not <letter>=<value>",
            },
        ),
        (
            b"v=0\r\nA=x\r\n",
            SdpError::BadLine {
                line: 2,
                reason: "not <letter>=<value>",
            },
        ),
        (
            b"v=0\r\ns=a\x00b\r\n",
            SdpError::BadLine {
                line: 2,
                reason: "control character",
            },
        ),
        (
            b"v=0\r\ns=a\rb\r\n",
            SdpError::BadLine {
                line: 2,
                reason: "control character",
            },
        ),
        (
            b"v=0\r\nc=IN IP4 999.1.1.1\r\n",
            SdpError::BadLine {
                line: 2,
                reason: "malformed c= line",
            },
        ),
        (
            b"v=0\r\no=- x 1 IN IP4 1.2.3.4\r\n",
            SdpError::BadLine {
                line: 2,
                reason: "malformed o= line",
            },
        ),
        (
            b"v=0\r\nm=audio 99999 RTP/AVP 0\r\n",
            SdpError::BadLine {
                line: 2,
                reason: "malformed m= line",
            },
        ),
        (
            b"v=0\r\nm=audio 1 RTP/AVP\r\n",
            SdpError::BadLine {
                line: 2,
                reason: "malformed m= line",
            },
        ),
        (
            b"v=0\r\nm=audio 1 RTP/AVP \xff\r\n",
            SdpError::BadLine {
                line: 2,
                reason: "malformed m= line",
            },
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(
            Sdp::parse(input).unwrap_err(),
            *expected,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    // Structurally valid, but nothing to anchor.
    let no_audio =
        sdp("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nt=0 0\nm=video 5 RTP/AVP 99\n");
    assert_eq!(
        RemoteMedia::from_sdp(&no_audio).unwrap_err(),
        SdpError::NoAudio
    );
    let no_conn = sdp("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0\nm=audio 5 RTP/AVP 0\n");
    assert_eq!(
        RemoteMedia::from_sdp(&no_conn).unwrap_err(),
        SdpError::MissingConnection
    );
}

#[test]
fn limits_are_enforced() {
    let limits = SdpLimits {
        max_bytes: 200,
        max_lines: 6,
        max_media: 1,
        max_formats: 3,
    };
    let big = vec![b'a'; 201];
    assert_eq!(
        Sdp::parse_with(&big, &limits).unwrap_err(),
        SdpError::TooLarge {
            size: 201,
            limit: 200
        }
    );
    let many = crlf("v=0\ns=-\nt=0 0\na=1\na=2\na=3\na=4\n");
    assert_eq!(
        Sdp::parse_with(&many, &limits).unwrap_err(),
        SdpError::TooManyLines { limit: 6 }
    );
    let media = crlf("v=0\nm=audio 1 RTP/AVP 0\nm=audio 2 RTP/AVP 0\n");
    assert_eq!(
        Sdp::parse_with(&media, &limits).unwrap_err(),
        SdpError::TooManyMedia { limit: 1 }
    );
    let formats = crlf("v=0\nm=audio 1 RTP/AVP 0 8 9 18\n");
    assert_eq!(
        Sdp::parse_with(&formats, &limits).unwrap_err(),
        SdpError::TooManyFormats { limit: 3 }
    );
    assert!(Sdp::parse_with(&crlf("v=0\nm=audio 1 RTP/AVP 0 8 9\n"), &limits).is_ok());
    assert_eq!(SdpError::TooLarge { size: 1, limit: 0 }.sip_status(), 413);
}

// ---- accessors on the Teams sample ----

#[test]
fn teams_sample_accessors() {
    let s = Sdp::parse(TEAMS_OFFER).unwrap();
    let m = &s.media()[0];
    assert_eq!(m.media_type(), "audio");
    assert_eq!(m.port(), 52884);
    assert_eq!(m.profile(), "RTP/SAVP");
    assert!(m.is_secure_profile());
    assert_eq!(
        m.payload_types().collect::<Vec<_>>(),
        vec![104, 103, 9, 0, 8, 13, 118, 101]
    );
    let silk = m.codec(104).unwrap();
    assert_eq!(
        (silk.encoding, silk.clock_rate, silk.channels),
        ("SILK", 16000, 1)
    );
    assert_eq!(m.fmtp(104), Some("useinbandfec=1; usedtx=0"));
    assert_eq!(m.ptime(), Some(20));
    assert_eq!(m.direction(), Some(Direction::SendRecv));
    assert_eq!(m.crypto().count(), 3);
    assert_eq!(s.origin().unwrap().address, "52.114.7.24");

    let remote = RemoteMedia::from_sdp(&s).unwrap();
    assert_eq!(remote.rtp, "52.114.7.24:52884".parse().unwrap());
    assert_eq!(remote.telephone_event_pt, Some(101));
    assert_eq!(remote.payloads.len(), 8);
    assert_eq!(remote.payloads[6].encoding, "CN");
    assert_eq!(remote.payloads[6].clock_rate, 16000);
    assert_eq!(remote.payloads[7].fmtp.as_deref(), Some("0-16"));
    assert!(!remote.on_hold);
    assert_eq!(remote.profile, "RTP/SAVP");
}

#[test]
fn inbound_call_round_trip_keeps_carrier_shape() {
    // Carrier offer -> Teams offer -> Teams answer -> carrier answer.
    let f = Fixture::new();
    let carrier_offer = carrier_offer_with("m=video 16390 RTP/AVP 99\na=rtpmap:99 H264/90000\n");
    let to_teams =
        offer_towards_teams(&carrier_offer, &f.teams(false), &mut teams_origin()).unwrap();
    assert_eq!(to_teams.media()[0].format_list(), "0 8 101");
    let teams_answer = sdp(
        "v=0\no=- 0 1 IN IP4 52.114.7.24\ns=session\nc=IN IP4 52.114.7.24\nt=0 0\n\
         m=audio 52890 RTP/SAVP 0 101\na=rtcp:52890\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd|2^31\n\
         a=rtcp-mux\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-16\na=x-ssrc-range:1-2\n\
         m=video 0 RTP/SAVP 99\n",
    );
    let answer = answer_towards_carrier(
        &teams_answer,
        &carrier_offer,
        &f.carrier(false),
        &mut carrier_origin(),
    )
    .unwrap();
    let t = text(&answer);
    assert_eq!(answer.media().len(), 2);
    assert_eq!(answer.media()[0].profile(), "RTP/AVP");
    assert_eq!(answer.media()[0].format_list(), "0 101");
    assert_eq!(answer.media()[1].lines()[0].value(), "video 0 RTP/AVP 99");
    for gone in ["crypto", "rtcp", "52.114", "x-ssrc"] {
        assert!(!t.contains(gone), "{gone}:\n{t}");
    }
    assert!(
        t.starts_with("v=0\r\no=- 9000 9000 IN IP4 10.1.1.1\r\ns=session\r\nc=IN IP4 10.1.1.1\r\n")
    );
}

// ---- property-style: many generated inputs through every rewrite ----

fn random_sdp(rng: &mut StdRng) -> String {
    const CODECS: &[&str] = &[
        "PCMU/8000",
        "PCMA/8000",
        "G722/8000",
        "G729/8000",
        "SILK/16000",
        "SILK/8000",
        "telephone-event/8000",
        "telephone-event/16000",
        "CN/8000",
        "CN/16000",
        "opus/48000/2",
        "AMR-WB/16000",
    ];
    const DIRS: &[&str] = &["sendrecv", "sendonly", "recvonly", "inactive"];
    let mut s = String::from("v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\n");
    let addr = if rng.gen_bool(0.2) {
        "0.0.0.0"
    } else {
        "198.51.100.1"
    };
    let c_after_t = rng.gen_bool(0.3);
    if !c_after_t {
        s.push_str(&format!("c=IN IP4 {addr}\r\n"));
    }
    s.push_str("t=0 0\r\n");
    if c_after_t {
        s.push_str(&format!("c=IN IP4 {addr}\r\n"));
    }
    if rng.gen_bool(0.2) {
        s.push_str(&format!("a={}\r\n", DIRS[rng.gen_range(0..4)]));
    }
    if rng.gen_bool(0.2) {
        s.push_str("a=ice-lite\r\n");
    }
    let sections = rng.gen_range(1..=3);
    for i in 0..sections {
        let kind = if i == 0 || rng.gen_bool(0.5) {
            "audio"
        } else {
            "video"
        };
        let port: u16 = if rng.gen_bool(0.1) {
            0
        } else {
            rng.gen_range(1000..60000)
        };
        let proto = ["RTP/AVP", "RTP/SAVP", "UDP/TLS/RTP/SAVP", "RTP/AVPF"][rng.gen_range(0..4)];
        let count = rng.gen_range(1..8);
        let pts: Vec<u8> = (0..count)
            .map(|_| [0u8, 8, 9, 13, 18, 96, 97, 101, 103, 104, 111, 127][rng.gen_range(0..12)])
            .collect();
        let list: Vec<String> = pts.iter().map(u8::to_string).collect();
        s.push_str(&format!("m={kind} {port} {proto} {}\r\n", list.join(" ")));
        if rng.gen_bool(0.3) {
            s.push_str(&format!("c=IN IP4 {addr}\r\n"));
        }
        for _ in 0..rng.gen_range(0..8) {
            let pt = pts[rng.gen_range(0..pts.len())];
            match rng.gen_range(0..10) {
                0..=3 => s.push_str(&format!("a=rtpmap:{pt} {}\r\n", CODECS[rng.gen_range(0..CODECS.len())])),
                4 => s.push_str(&format!("a=fmtp:{pt} x={}\r\n", rng.gen_range(0..9))),
                5 => s.push_str(&format!("a=rtcp-fb:{pt} nack\r\n")),
                6 => s.push_str(&format!("a={}\r\n", DIRS[rng.gen_range(0..4)])),
                7 => s.push_str("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd|2^31|1:1\r\n"),
                8 => s.push_str("a=rtcp-mux\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n"),
                _ => s.push_str("a=candidate:1 1 UDP 1 198.51.100.1 5000 typ host\r\n"),
            }
        }
    }
    s
}

fn assert_well_formed_output(out: &Sdp, towards_teams: bool, context: &str) {
    let reparsed = Sdp::parse(&out.to_bytes()).unwrap_or_else(|e| panic!("{e}: {context}"));
    assert_eq!(&reparsed, out, "{context}");
    let t = text(out);
    assert!(!t.contains("0.0.0.0"), "row 40: {context}\n{t}");
    assert_eq!(out.origin().map(|o| o.username), Some("-"), "{context}");
    for m in out.media() {
        let pts: Vec<&str> = m.formats().collect();
        for (i, pt) in pts.iter().enumerate() {
            assert!(
                !pts[..i].contains(pt),
                "row 47 duplicate PT {pt}: {context}\n{t}"
            );
        }
        let mut mapped: Vec<u8> = Vec::new();
        for c in m.rtpmaps() {
            assert!(
                !mapped.contains(&c.pt),
                "row 47 duplicate rtpmap {}: {context}\n{t}",
                c.pt
            );
            assert!(
                m.payload_types().any(|p| p == c.pt),
                "stray rtpmap: {context}\n{t}"
            );
            mapped.push(c.pt);
        }
        if m.port() == 0 {
            assert_eq!(m.lines().len(), 1, "{context}");
            continue;
        }
        for pt in m.payload_types() {
            assert!(
                m.codec(pt).is_some(),
                "PT {pt} without codec: {context}\n{t}"
            );
        }
        if towards_teams {
            assert_eq!(m.crypto().count(), 1, "{context}\n{t}");
            assert!(
                matches!(
                    m.direction(),
                    Some(Direction::SendRecv | Direction::Inactive)
                ),
                "row 39: {context}\n{t}"
            );
            assert!(m.candidates().count() <= 1, "row 50: {context}\n{t}");
        } else {
            assert_eq!(m.crypto().count(), 0, "{context}\n{t}");
            assert_eq!(m.candidates().count(), 0, "{context}\n{t}");
        }
    }
}

/// RFC 3264: an answer has the offer's m= lines, and answers only formats the offer carried,
/// under the offer's numbers.
fn assert_answer_within_offer(answer: &Sdp, offer: &Sdp, context: &str) {
    assert_eq!(answer.media().len(), offer.media().len(), "{context}");
    for (a, o) in answer.media().iter().zip(offer.media()) {
        assert_eq!(a.media_type(), o.media_type(), "{context}");
        if a.port() == 0 {
            continue;
        }
        for pt in a.payload_types() {
            let (ac, oc) = (a.codec(pt).unwrap(), o.codec(pt));
            assert!(
                o.payload_types().any(|p| p == pt) && oc.is_some_and(|oc| oc.same_codec(&ac)),
                "answered PT {pt} not offered as {}: {context}",
                ac.encoding
            );
        }
    }
}

#[test]
fn row47_no_duplicate_payload_type_in_any_output_property() {
    let f = Fixture::new();
    let mut rng = StdRng::seed_from_u64(0x5d9);
    let mut produced = 0;
    for case in 0..2000 {
        let a = random_sdp(&mut rng);
        let b = random_sdp(&mut rng);
        let (Ok(a_sdp), Ok(b_sdp)) = (Sdp::parse(a.as_bytes()), Sdp::parse(b.as_bytes())) else {
            panic!("generator produced invalid SDP:\n{a}\n{b}");
        };
        let context = format!("case {case}:\n{a}\n---\n{b}");
        let bypass = case % 2 == 0;
        let results = [
            (
                offer_towards_teams(&a_sdp, &f.teams(bypass), &mut teams_origin()),
                true,
            ),
            (
                answer_towards_teams(&a_sdp, &b_sdp, &f.teams(bypass), &mut teams_origin()),
                true,
            ),
            (
                offer_towards_carrier(&a_sdp, &f.carrier(bypass), &mut carrier_origin()),
                false,
            ),
            (
                answer_towards_carrier(&a_sdp, &b_sdp, &f.carrier(bypass), &mut carrier_origin()),
                false,
            ),
        ];
        for (i, (result, towards_teams)) in results.into_iter().enumerate() {
            match result {
                Ok(out) => {
                    produced += 1;
                    assert_well_formed_output(&out, towards_teams, &context);
                    if i % 2 == 1 {
                        assert_answer_within_offer(&out, &b_sdp, &context);
                    }
                }
                Err(e) => assert!(
                    matches!(
                        e,
                        SdpError::NoAudio | SdpError::NoCommonCodec | SdpError::NoUsableCrypto
                    ),
                    "{e}: {context}"
                ),
            }
        }
        if let Some(maps) = CallPtMaps::compute(&a_sdp, &b_sdp, &b_sdp, &a_sdp) {
            let audio = |s: &Sdp| {
                s.primary_audio_index()
                    .map(|i| s.media()[i].clone())
                    .unwrap()
            };
            let (a_audio, b_audio) = (audio(&a_sdp), audio(&b_sdp));
            for (from, to, map) in [
                (&a_audio, &a_audio, &maps.carrier_to_teams),
                (&b_audio, &b_audio, &maps.teams_to_carrier),
            ] {
                for (i, o) in map.pairs() {
                    assert!(
                        from.codec(*i).unwrap().same_codec(&to.codec(*o).unwrap()),
                        "{context}"
                    );
                    assert!(to.payload_types().any(|p| p == *o), "{context}");
                }
            }
        }
    }
    // The generator must exercise the success paths, not only the errors.
    assert!(produced > 2000, "only {produced} rewrites succeeded");
}
