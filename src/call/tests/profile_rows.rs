//! Golden-message tests of the Teams profile: every message the SBC sends to Microsoft in
//! whole call flows, checked against the rows of docs/teams-direct-routing.md §6.

use super::*;

const MS_CONTACT: (&str, &str) = (
    "Contact",
    "<sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>",
);

/// Every message (request, ACK, response) sent on the Teams leg so far.
fn to_teams(h: &Harness) -> Vec<Message> {
    h.all
        .iter()
        .filter_map(|o| match o {
            Output::SendRequest {
                leg: LegId::Teams,
                msg,
                ..
            }
            | Output::SendResponse {
                leg: LegId::Teams,
                msg,
                ..
            }
            | Output::SendAck {
                leg: LegId::Teams,
                msg,
                ..
            } => Some(parse(msg)),
            _ => None,
        })
        .collect()
}

/// PSTN -> Teams: INVITE, 180, 200, ACK, Teams re-INVITE answered, carrier BYE.
fn inbound_flow(s: CallSetup, invite: Message) -> Harness {
    let mut h = Harness::inbound(s, invite);
    let invite = h.request(Method::Invite);
    h.respond(&invite, 180, "ms1", &[], None);
    h.respond(&invite, 200, "ms1", &[MS_CONTACT], Some(&teams_sdp()));
    let ack = carrier_ack(&h);
    h.input(Input::Ack {
        leg: LegId::Carrier,
        msg: ack,
    });
    let reinvite = with_body(
        &format!(
            "INVITE sip:x@acme.sbc1.example.net:5068;transport=tls SIP/2.0\r\n\
             Via: SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKre1\r\nMax-Forwards: 70\r\n\
             From: <sip:+14255550100@sip.pstnhub.microsoft.com;user=phone>;tag=ms1\r\n\
             To: {}\r\nCall-ID: {}\r\nCSeq: 5 INVITE\r\n{}: {}\r\n",
            header(&invite.msg, HeaderName::From),
            header(&invite.msg, HeaderName::CallId),
            MS_CONTACT.0,
            MS_CONTACT.1,
        ),
        Some(&teams_sdp()),
    );
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(5000),
        msg: reinvite,
    });
    h.input(Input::Media(crate::media::MediaEvent::Inactive {
        session: SessionId(7),
        leg: LegSide::Teams,
    }));
    h
}

/// Teams -> PSTN: INVITE, 180, 183 with SDP, 200, Teams BYE.
fn outbound_flow(s: CallSetup, extra: &str) -> Harness {
    let mut h = Harness::outbound(s, teams_invite(extra, &teams_sdp()));
    let invite = h.request(Method::Invite);
    h.respond(&invite, 180, "p1", &[], None);
    h.respond(&invite, 183, "p1", &[], Some(&carrier_sdp()));
    h.respond(
        &invite,
        200,
        "p1",
        &[("Contact", "<sip:x@10.0.0.1>")],
        Some(&carrier_sdp()),
    );
    let ok = h.response(200).2;
    let bye = peer_in_dialog_request(
        "BYE",
        2,
        "teams-call-1",
        "<sip:+14255550100@sip.pstnhub.microsoft.com:5061;user=phone>;tag=t1",
        &header(&ok, HeaderName::To),
        "SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKtbye",
    );
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(3000),
        msg: bye,
    });
    h
}

/// A cancelled PSTN -> Teams call (INVITE, 180, CANCEL, 487).
fn cancelled_flow() -> Harness {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite);
    h.respond(&invite, 180, "ms1", &[], None);
    let cancel = with_body(
        "CANCEL sip:+14255550100@192.0.2.10:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKcarrier1\r\nMax-Forwards: 70\r\n\
         From: <sip:2065550123@10.0.0.1>;tag=c1\r\nTo: <sip:+14255550100@192.0.2.10>\r\n\
         Call-ID: carrier-call-1@10.0.0.1\r\nCSeq: 1 CANCEL\r\n",
        None,
    );
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(1001),
        msg: cancel,
    });
    h
}

fn all_teams_messages() -> Vec<Message> {
    let mut all = to_teams(&inbound_flow(setup(), carrier_invite(Some(&carrier_sdp()))));
    all.extend(to_teams(&outbound_flow(setup(), "")));
    all.extend(to_teams(&cancelled_flow()));
    assert!(all.len() >= 10, "flows produced {} messages", all.len());
    all
}

fn allow(m: &Message) -> String {
    m.header_values(&HeaderName::Allow)
        .iter()
        .map(|v| String::from_utf8_lossy(v).trim().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe(m: &Message) -> String {
    String::from_utf8_lossy(m.bytes()).into_owned()
}

#[test]
fn row15_contact_host_is_tenant_fqdn() {
    let mut contacts = 0;
    for m in all_teams_messages() {
        for c in m.contacts().unwrap() {
            let uri = c.uri.as_sip().expect("sip URI");
            assert_eq!(&uri.host[..], b"acme.sbc1.example.net", "{}", describe(&m));
            contacts += 1;
        }
        let is_invite_or_2xx = m.method() == Some(&Method::Invite)
            || (m.status().is_some_and(|s| (180..300).contains(&s))
                && m.cseq().unwrap().method == Method::Invite);
        if is_invite_or_2xx {
            assert!(m.has_header(&HeaderName::Contact), "{}", describe(&m));
        }
    }
    assert!(contacts >= 5);
}

#[test]
fn row16_contact_port_is_our_tls_port_with_transport_tls() {
    for m in all_teams_messages() {
        for c in m.contacts().unwrap() {
            let uri = c.uri.as_sip().unwrap();
            assert_eq!(uri.port, Some(5068));
            assert_eq!(
                uri.param("transport"),
                Some(Some(&Bytes::from_static(b"tls")))
            );
        }
    }
}

#[test]
fn row17_no_record_route_towards_teams() {
    // The carrier's INVITE carries a Record-Route; it must not leak.
    for m in all_teams_messages() {
        assert!(!m.has_header(&HeaderName::RecordRoute), "{}", describe(&m));
    }
}

#[test]
fn row18_only_sip_uris_towards_teams() {
    let mut invite =
        String::from_utf8_lossy(carrier_invite(Some(&carrier_sdp())).bytes()).into_owned();
    invite = invite.replace("From: <sip:", "From: <sips:");
    let h = inbound_flow(setup(), parse(invite.as_bytes()));
    for m in to_teams(&h).into_iter().chain(all_teams_messages()) {
        assert!(
            !describe(&m).to_ascii_lowercase().contains("sips:"),
            "{}",
            describe(&m)
        );
        if let Some(uri) = m.request_uri() {
            assert_eq!(uri.scheme(), b"sip");
        }
    }
}

#[test]
fn row19_request_uri_is_plus_e164_at_proxy_fqdn_5061_user_phone() {
    let mut s = setup();
    s.numbers.callee = "14255550100".into();
    let h = Harness::inbound(s, carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite);
    assert_eq!(
        invite.msg.request_uri().unwrap().raw(),
        &b"sip:+14255550100@sip.pstnhub.microsoft.com:5061;user=phone"[..]
    );
    assert_eq!(
        header(&invite.msg, HeaderName::To),
        "<sip:+14255550100@sip.pstnhub.microsoft.com;user=phone>"
    );
}

#[test]
fn row20_from_user_is_plus_e164() {
    let mut s = setup();
    s.numbers.caller = "12065550123".into();
    let h = Harness::inbound(s, carrier_invite(Some(&carrier_sdp())));
    let from = h.request(Method::Invite).msg.from().unwrap();
    let uri = from.uri.as_sip().unwrap();
    assert_eq!(uri.user.as_deref(), Some(&b"+12065550123"[..]));
    assert_eq!(&uri.host[..], b"acme.sbc1.example.net");
}

#[test]
fn row20_carrier_pai_is_copied_into_from_when_forward_pai() {
    let mut s = setup();
    s.teams.forward_pai = true;
    let h = Harness::inbound(s, carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite).msg;
    let from = invite.from().unwrap();
    assert_eq!(
        from.uri.as_sip().unwrap().user.as_deref(),
        Some(&b"+12065559999"[..])
    );
    assert!(from.tag.is_some());
    assert!(!invite.has_header(&HeaderName::PAssertedIdentity));
    // Without forward_pai the routing decision's number is used.
    let h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    let from = h.request(Method::Invite).msg.from().unwrap();
    assert_eq!(
        from.uri.as_sip().unwrap().user.as_deref(),
        Some(&b"+12065550123"[..])
    );
}

#[test]
fn row21_every_initial_invite_to_teams_carries_sdp() {
    for invite in [carrier_invite(Some(&carrier_sdp())), carrier_invite(None)] {
        let h = Harness::inbound(setup(), invite);
        let sent = h.request(Method::Invite).msg;
        assert_eq!(header(&sent, HeaderName::ContentType), "application/sdp");
        assert!(body(&sent).contains("m=audio"));
    }
}

#[test]
fn row22_row23_no_replaces_no_100rel_only_sdp_bodies() {
    let invite = with_body(
        "INVITE sip:+14255550100@192.0.2.10:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKcarrier1\r\nMax-Forwards: 70\r\n\
         From: <sip:2065550123@10.0.0.1>;tag=c1\r\nTo: <sip:+14255550100@192.0.2.10>\r\n\
         Call-ID: carrier-call-1@10.0.0.1\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:2065550123@10.0.0.1:5060>\r\n\
         Replaces: abc@10.0.0.1;to-tag=1;from-tag=2\r\nSupported: 100rel, timer\r\nRequire: timer\r\n",
        Some(&carrier_sdp()),
    );
    let h = inbound_flow(setup(), invite);
    for m in to_teams(&h).into_iter().chain(all_teams_messages()) {
        assert!(!m.has_header(&HeaderName::Replaces), "{}", describe(&m));
        assert!(!m.has_header(&HeaderName::Require), "{}", describe(&m));
        assert!(!m.has_token(&HeaderName::Supported, "100rel"));
        if !m.body().is_empty() {
            assert_eq!(header(&m, HeaderName::ContentType), "application/sdp");
        }
        if let Some(method) = m.method() {
            assert!(
                matches!(
                    method,
                    Method::Invite | Method::Ack | Method::Cancel | Method::Bye
                ),
                "row 23: {method} sent to Teams"
            );
        }
    }
}

#[test]
fn row24_teams_sdp_is_trimmed_for_udp_trunks() {
    let mut big = teams_sdp();
    big.push_str("a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n");
    for i in 0..12 {
        big.push_str(&format!(
            "a=candidate:{i} 1 UDP 2130706431 52.112.1.{i} {} typ host\r\n",
            50000 + i
        ));
        big.push_str(&format!(
            "a=x-ssrc-range:{i}-{}\r\na=x-source-streamid:{i}0000000000000\r\n",
            i + 100
        ));
    }
    let invite = teams_invite("", &big);
    assert!(invite.bytes().len() > 1500, "the test INVITE must be large");
    let h = Harness::outbound(setup(), invite);
    let sent = h.request(Method::Invite).msg;
    let sdp = body(&sent);
    assert!(!sdp.contains("a=candidate"), "{sdp}");
    assert!(!sdp.contains("a=ice-"));
    assert!(!sdp.contains("a=x-"));
    assert!(sent.bytes().len() < 1300, "{} bytes", sent.bytes().len());
}

#[test]
fn row25_hash_in_teams_request_uri_is_accepted_and_escaped_in_our_contact() {
    let invite = String::from_utf8_lossy(teams_invite("", &teams_sdp()).bytes()).replacen(
        "INVITE sip:+12065550123@",
        "INVITE sip:*123#@",
        1,
    );
    let mut h = Harness::outbound(setup(), parse(invite.as_bytes()));
    let carrier = h.request(Method::Invite);
    h.respond(&carrier, 180, "p1", &[], None);
    let (_, _, ringing) = h.response(180);
    assert_eq!(
        header(&ringing, HeaderName::Contact),
        "<sip:*123%23@acme.sbc1.example.net:5068;transport=tls>"
    );
}

#[test]
fn row28_teams_200_is_acked_before_the_carrier_hears_of_it() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite);
    h.respond(&invite, 200, "ms1", &[MS_CONTACT], Some(&teams_sdp()));
    let ack_at = h.out.iter().position(|o| {
        matches!(
            o,
            Output::SendAck {
                leg: LegId::Teams,
                ..
            }
        )
    });
    let ok_at = h.out.iter().position(|o| {
        matches!(
            o,
            Output::SendResponse {
                leg: LegId::Carrier,
                ..
            }
        )
    });
    assert!(ack_at.unwrap() < ok_at.unwrap());
}

#[test]
fn row32_each_tenant_fqdn_stays_in_its_calls() {
    for tenant in ["acme.sbc1.example.net", "globex.sbc1.example.net"] {
        let mut s = setup();
        s.teams.tenant_fqdn = tenant.into();
        let h = inbound_flow(s.clone(), carrier_invite(Some(&carrier_sdp())));
        let msgs = to_teams(&h);
        for m in &msgs {
            for c in m.contacts().unwrap() {
                assert_eq!(&c.uri.as_sip().unwrap().host[..], tenant.as_bytes());
            }
            if m.is_request() {
                assert_eq!(&m.top_via().unwrap().host[..], tenant.as_bytes());
            }
        }
        // In-dialog requests (BYE) and responses (200 to the re-INVITE) keep it.
        assert!(msgs.iter().any(|m| m.method() == Some(&Method::Bye)));
        assert!(msgs
            .iter()
            .any(|m| m.status() == Some(200) && m.cseq().unwrap().seq == 5));
        let outbound = outbound_flow(s, "");
        for m in to_teams(&outbound) {
            for c in m.contacts().unwrap() {
                assert_eq!(&c.uri.as_sip().unwrap().host[..], tenant.as_bytes());
            }
        }
    }
}

#[test]
fn row36_allow_lists_refer_and_notify_in_invite_and_200() {
    let h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite).msg;
    assert_eq!(
        allow(&invite),
        "INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, REFER"
    );
    let h = outbound_flow(setup(), "");
    let ok = to_teams(&h)
        .into_iter()
        .find(|m| m.status() == Some(200) && m.cseq().unwrap().method == Method::Invite)
        .unwrap();
    assert!(allow(&ok).contains("REFER"));
    assert!(allow(&ok).contains("NOTIFY"));
}

#[test]
fn row57_teams_privacy_is_kept_towards_an_untrusted_carrier() {
    let extra = "P-Asserted-Identity: <tel:+14255550100>\r\nPrivacy: id\r\n";
    let anonymous = |s: &str| {
        s.replace(
            "From: <sip:+14255550100@sip.pstnhub.microsoft.com:5061;user=phone>;tag=t1",
            "From: <sip:anonymous@anonymous.invalid>;tag=t1",
        )
    };
    let invite = anonymous(&String::from_utf8_lossy(
        teams_invite(extra, &teams_sdp()).bytes(),
    ));
    let h = Harness::outbound(setup(), parse(invite.as_bytes()));
    let sent = h.request(Method::Invite).msg;
    assert!(!sent.has_header(&HeaderName::PAssertedIdentity));
    assert!(
        !describe(&sent).contains("12065550123@192.0.2.10>;tag"),
        "caller hidden"
    );
    assert_eq!(
        sent.from().unwrap().uri.as_sip().unwrap().user.as_deref(),
        Some(&b"anonymous"[..])
    );
    // A trusted carrier gets the identity in PAI with Privacy: id.
    let mut s = setup();
    every_trunk(&mut s, |t| t.trusted = true);
    let h = Harness::outbound(s, parse(invite.as_bytes()));
    let sent = h.request(Method::Invite).msg;
    assert_eq!(
        header(&sent, HeaderName::PAssertedIdentity),
        "<sip:+12065550123@192.0.2.10>"
    );
    assert_eq!(header(&sent, HeaderName::Privacy), "id");
    assert_eq!(
        sent.from().unwrap().uri.as_sip().unwrap().user.as_deref(),
        Some(&b"anonymous"[..])
    );
}

#[test]
fn row59_x_ms_sbc_on_every_request_and_response_to_teams() {
    let all = all_teams_messages();
    let mut kinds = std::collections::HashSet::new();
    for m in &all {
        assert_eq!(
            header(m, HeaderName::XMsSbc),
            "ExampleCorp/RustSBC/0.1.0",
            "{}",
            describe(m)
        );
        kinds.insert(match (m.method(), m.status()) {
            (Some(method), _) => method.to_string(),
            (_, Some(status)) => status.to_string(),
            _ => unreachable!(),
        });
    }
    for k in ["INVITE", "ACK", "CANCEL", "BYE", "180", "183", "200"] {
        assert!(kinds.contains(k), "{k} not covered: {kinds:?}");
    }
}

#[test]
fn carrier_profile_has_no_microsoft_headers() {
    let h = outbound_flow(setup(), "");
    let to_carrier: Vec<Message> = h
        .all
        .iter()
        .filter_map(|o| match o {
            Output::SendRequest {
                leg: LegId::Carrier,
                msg,
                ..
            }
            | Output::SendResponse {
                leg: LegId::Carrier,
                msg,
                ..
            }
            | Output::SendAck {
                leg: LegId::Carrier,
                msg,
                ..
            } => Some(parse(msg)),
            _ => None,
        })
        .collect();
    assert!(to_carrier.len() >= 3);
    for m in to_carrier {
        assert!(!m.has_header(&HeaderName::XMsSbc));
        assert!(!describe(&m).contains("pstnhub"), "{}", describe(&m));
        assert!(!describe(&m).contains("acme.sbc1"), "{}", describe(&m));
    }
}
