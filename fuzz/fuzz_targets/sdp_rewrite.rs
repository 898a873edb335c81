//! Parse + every SDP rewrite on arbitrary bytes: none may panic, and every rewrite output must
//! parse again and serialise to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use teams_sbc::sdp::{
    answer_towards_carrier, answer_towards_teams, offer_towards_carrier, offer_towards_teams,
    CallPtMaps, CarrierSide, CodecList, IceCredentials, LegOrigin, RemoteMedia, SdesKey, Sdp,
    TeamsSide,
};

fn check_output(out: &Sdp) {
    let bytes = out.to_bytes();
    assert_eq!(bytes.len(), out.encoded_len());
    let again = Sdp::parse(&bytes).expect("rewrite output must parse");
    assert_eq!(again.to_bytes(), bytes);
}

fn exercise_accessors(sdp: &Sdp) {
    let _ = sdp.origin();
    let _ = sdp.is_ice_lite();
    for (i, m) in sdp.media().iter().enumerate() {
        let _ = (
            m.media_type(),
            m.port(),
            m.port_count(),
            m.profile(),
            m.connection(),
        );
        let _ = (
            sdp.connection_of(i),
            sdp.direction_of(i),
            sdp.ice_ufrag_of(i),
            sdp.ice_pwd_of(i),
        );
        let _ = m.payloads().count();
        let _ = m.crypto().map(|c| c.to_selected()).count();
        let _ = m.candidates().count();
        let _ = (m.rtcp(), m.rtcp_mux(), m.ptime(), m.maxptime());
    }
    let _ = RemoteMedia::from_sdp(sdp);
}

fuzz_target!(|data: &[u8]| {
    // First byte picks options; the rest is split into two SDPs at the first 0xFF byte.
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (first, second) = match rest.iter().position(|b| *b == 0xFF) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, rest),
    };
    let Ok(a) = Sdp::parse(first) else {
        let _ = Sdp::parse(second);
        return;
    };
    assert_eq!(Sdp::parse(&a.to_bytes()).as_ref(), Ok(&a));
    exercise_accessors(&a);
    let b = Sdp::parse(second).ok();

    let key = SdesKey::from_bytes([7; 30]);
    let ice = IceCredentials::new("fuzz", "fuzzpassword0123456789").expect("valid");
    let teams_codecs = CodecList::teams_default();
    let carrier_codecs = CodecList::carrier_default();
    let local = if flags & 1 == 0 {
        "203.0.113.10:40000".parse().expect("addr")
    } else {
        "[2001:db8::1]:40000".parse().expect("addr")
    };
    let teams = TeamsSide {
        local,
        key: &key,
        ice: (flags & 2 != 0).then_some(&ice),
        codecs: &teams_codecs,
        inband_dtmf: flags & 16 != 0,
        comfort_noise: flags & 32 != 0,
    };
    let carrier = CarrierSide {
        local,
        codecs: &carrier_codecs,
        offer_rtcp_mux: flags & 4 != 0,
        strip_vendor_attributes: flags & 8 != 0,
    };
    let mut origin = LegOrigin::new(1, local.ip());
    if let Ok(out) = offer_towards_teams(&a, &teams, &mut origin) {
        check_output(&out);
    }
    if let Ok(out) = offer_towards_carrier(&a, &carrier, &mut origin) {
        check_output(&out);
    }
    if let Some(b) = b {
        exercise_accessors(&b);
        if let Ok(out) = answer_towards_teams(&a, &b, &teams, &mut origin) {
            check_output(&out);
        }
        if let Ok(out) = answer_towards_carrier(&a, &b, &carrier, &mut origin) {
            check_output(&out);
        }
        let _ = CallPtMaps::compute(&a, &b, &b, &a).map(|m| m.carrier_to_teams.lookup_table());
    }
});
