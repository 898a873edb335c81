//! End-to-end SDP flows through the public `teams_sbc::sdp` API, as the call layer will drive
//! them: inbound (carrier -> Teams) and outbound (Teams -> carrier) offer/answer, then a hold
//! re-INVITE. Row numbers refer to docs/teams-direct-routing.md §6.

use std::net::SocketAddr;

use teams_sbc::sdp::{
    answer_towards_carrier, answer_towards_teams, offer_towards_carrier, offer_towards_teams,
    CallPtMaps, CarrierSide, CodecList, Direction, IceCredentials, LegOrigin, RemoteMedia, SdesKey,
    Sdp, SrtpSuite, TeamsSide,
};

const TEAMS_LOCAL: &str = "203.0.113.10:41000";
const CARRIER_LOCAL: &str = "10.20.0.5:32000";

fn crlf(text: &str) -> Vec<u8> {
    text.replace('\n', "\r\n").into_bytes()
}

fn teams_answer_to(our_offer: &Sdp, direction: &str) -> Sdp {
    // What Teams would answer: its own address, the tag we offered, rtcp-mux, PT 101 for DTMF.
    let tag = our_offer.media()[0].crypto().next().unwrap().tag;
    Sdp::parse(&crlf(&format!(
        "v=0\no=- 0 1 IN IP4 52.114.7.24\ns=session\nc=IN IP4 52.114.7.24\nb=CT:10000000\nt=0 0\n\
         m=audio 52890 RTP/SAVP 0 101\nc=IN IP4 52.114.7.24\na=rtcp:52890\n\
         a=ice-ufrag:Ab12\na=ice-pwd:abcdefghijklmnopqrstuv\n\
         a=candidate:1 1 UDP 2130706431 52.114.7.24 52890 typ relay\n\
         a=crypto:{tag} AES_CM_128_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd|2^31\n\
         a=rtcp-mux\na=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-16\n\
         a=ptime:20\na={direction}\n"
    )))
    .unwrap()
}

#[test]
fn inbound_call_offer_answer_and_hold() {
    let key = SdesKey::generate();
    let ice = IceCredentials::generate();
    let teams_codecs = CodecList::teams_default();
    let carrier_codecs = CodecList::carrier_default();
    let teams_side = TeamsSide {
        local: TEAMS_LOCAL.parse().unwrap(),
        key: &key,
        ice: Some(&ice),
        codecs: &teams_codecs,
        inband_dtmf: false,
        comfort_noise: false,
    };
    let carrier_side = CarrierSide {
        local: CARRIER_LOCAL.parse().unwrap(),
        codecs: &carrier_codecs,
        offer_rtcp_mux: false,
        strip_vendor_attributes: true,
    };
    let mut teams_origin = LegOrigin::random("203.0.113.10".parse().unwrap());
    let mut carrier_origin = LegOrigin::random("10.20.0.5".parse().unwrap());

    // LF-only carrier offer with c= after t= and a codec Teams does not take.
    let carrier_offer = Sdp::parse(
        b"v=0\no=gw 1 1 IN IP4 198.51.100.20\ns=-\nt=0 0\nc=IN IP4 198.51.100.20\n\
          m=audio 16384 RTP/AVP 0 8 96 101\na=rtpmap:96 opus/48000/2\n\
          a=rtpmap:101 telephone-event/8000\na=fmtp:101 0-16\n",
    )
    .unwrap();
    let to_teams = offer_towards_teams(&carrier_offer, &teams_side, &mut teams_origin).unwrap();
    let wire = String::from_utf8(to_teams.to_bytes()).unwrap();
    assert!(
        !wire.contains("opus") && !wire.contains("198.51.100.20"),
        "{wire}"
    );
    assert!(
        wire.contains("m=audio 41000 RTP/SAVP 0 8 101\r\n"),
        "{wire}"
    );
    assert!(
        wire.contains("a=ice-lite\r\n") && wire.contains("a=rtcp-mux\r\n"),
        "{wire}"
    );

    let teams_answer = teams_answer_to(&to_teams, "sendrecv");
    let teams_remote = RemoteMedia::from_sdp(&teams_answer).unwrap();
    assert_eq!(
        teams_remote.rtp,
        "52.114.7.24:52890".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        teams_remote.crypto.as_ref().unwrap().suite,
        SrtpSuite::AesCm128HmacSha1_80
    );
    assert_eq!(teams_remote.ice.as_ref().unwrap().candidates.len(), 1);

    let to_carrier = answer_towards_carrier(
        &teams_answer,
        &carrier_offer,
        &carrier_side,
        &mut carrier_origin,
    )
    .unwrap();
    let wire = String::from_utf8(to_carrier.to_bytes()).unwrap();
    assert!(wire.contains("m=audio 32000 RTP/AVP 0 101\r\n"), "{wire}");
    for gone in ["crypto", "ice", "candidate", "52.114", "rtcp-mux"] {
        assert!(!wire.contains(gone), "{gone}: {wire}");
    }

    let maps = CallPtMaps::compute(&to_carrier, &carrier_offer, &to_teams, &teams_answer).unwrap();
    assert_eq!(maps.carrier_to_teams.map(101), Some(101));
    assert_eq!(maps.teams_to_carrier.map(0), Some(0));

    // Hold from the carrier with the RFC 2543 zero address (rows 39, 40, 41).
    let hold = Sdp::parse(&crlf(
        "v=0\no=gw 1 2 IN IP4 198.51.100.20\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\n\
         m=audio 16384 RTP/AVP 0 8 101\na=rtpmap:101 telephone-event/8000\na=sendonly\n",
    ))
    .unwrap();
    let hold_to_teams = offer_towards_teams(&hold, &teams_side, &mut teams_origin).unwrap();
    assert_eq!(
        hold_to_teams.media()[0].direction(),
        Some(Direction::Inactive)
    );
    assert_eq!(hold_to_teams.connection_of(0), to_teams.connection_of(0));
    assert_eq!(hold_to_teams.media()[0].port(), to_teams.media()[0].port());
    let (first, second) = (to_teams.origin().unwrap(), hold_to_teams.origin().unwrap());
    assert_eq!(second.session_id, first.session_id);
    assert_eq!(second.session_version, first.session_version + 1);
}

#[test]
fn outbound_call_with_video_from_teams() {
    let key = SdesKey::generate();
    let teams_codecs = CodecList::teams_default();
    let carrier_codecs = CodecList::carrier_default();
    let teams_side = TeamsSide {
        local: TEAMS_LOCAL.parse().unwrap(),
        key: &key,
        ice: None,
        codecs: &teams_codecs,
        inband_dtmf: false,
        comfort_noise: false,
    };
    let carrier_side = CarrierSide {
        local: CARRIER_LOCAL.parse().unwrap(),
        codecs: &carrier_codecs,
        offer_rtcp_mux: false,
        strip_vendor_attributes: true,
    };
    let teams_offer = Sdp::parse(&crlf(
        "v=0\no=- 0 0 IN IP4 52.114.7.24\ns=session\nc=IN IP4 52.114.7.24\nt=0 0\n\
         m=audio 52884 RTP/SAVP 104 9 0 8 13 101\na=rtcp:52884\na=rtcp-mux\n\
         a=crypto:0 AES_CM_128_HMAC_SHA1_32 inline:HRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgEA|2^31\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd|2^31\n\
         a=rtpmap:104 SILK/16000\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-16\n\
         a=x-ssrc-range:2-2\na=ptime:20\n\
         m=video 52886 RTP/SAVP 122\na=rtpmap:122 X-H264UC/90000\n",
    ))
    .unwrap();
    let mut carrier_origin = LegOrigin::random("10.20.0.5".parse().unwrap());
    let mut teams_origin = LegOrigin::random("203.0.113.10".parse().unwrap());

    let to_carrier =
        offer_towards_carrier(&teams_offer, &carrier_side, &mut carrier_origin).unwrap();
    assert_eq!(to_carrier.media().len(), 1);
    assert_eq!(to_carrier.media()[0].format_list(), "9 0 8 13 101");
    assert!(
        to_carrier.encoded_len() < 400,
        "row 24: {}",
        to_carrier.encoded_len()
    );

    let carrier_answer = Sdp::parse(&crlf(
        "v=0\no=gw 7 7 IN IP4 198.51.100.20\ns=-\nc=IN IP4 198.51.100.20\nt=0 0\n\
         m=audio 16390 RTP/AVP 8 101\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\n",
    ))
    .unwrap();
    let answer = answer_towards_teams(
        &carrier_answer,
        &teams_offer,
        &teams_side,
        &mut teams_origin,
    )
    .unwrap();
    let wire = String::from_utf8(answer.to_bytes()).unwrap();
    // Row 43: the _80 line (tag 1) is answered; row 54: video rejected with port 0.
    assert!(
        wire.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{wire}"
    );
    assert!(wire.contains("|2^31\r\n"), "{wire}");
    assert!(wire.contains("m=video 0 RTP/SAVP 122\r\n"), "{wire}");
    assert!(wire.contains("m=audio 41000 RTP/SAVP 8 101\r\n"), "{wire}");
    let remote = RemoteMedia::from_sdp(&teams_offer).unwrap();
    assert_eq!(remote.crypto.unwrap().tag, 1);
}
