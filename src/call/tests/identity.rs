//! Caller identity and privacy towards the carrier (row 57), the carrier's PAI towards Teams
//! (row 20) under privacy, and Diversion from Microsoft's History-Info (doc 2.9).

use super::*;

const TEAMS_FROM: &str =
    "From: <sip:+14255550100@sip.pstnhub.microsoft.com:5061;user=phone>;tag=t1";
const ANONYMOUS_TEAMS_FROM: &str = "From: <sip:anonymous@anonymous.invalid>;tag=t1";
const HOST: &str = "192.0.2.10";

/// A Teams -> PSTN INVITE with `extra` header lines, its From replaced by `from` when given.
fn invite(from: Option<&str>, extra: &str) -> Message {
    let text = String::from_utf8_lossy(teams_invite(extra, &teams_sdp()).bytes()).into_owned();
    let text = match from {
        Some(from) => text.replacen(TEAMS_FROM, from, 1),
        None => text,
    };
    parse(text.as_bytes())
}

fn carrier_setup(trusted: bool, diversion: bool) -> CallSetup {
    let mut s = setup();
    every_trunk(&mut s, |t| {
        t.trusted = trusted;
        t.diversion_from_history_info = diversion;
    });
    s
}

/// The caller's number as routing translated it for every hop's trunk.
fn routed_caller(s: &mut CallSetup, caller: &str) {
    s.numbers.caller = caller.into();
    for hop in &mut s.carrier.targets {
        hop.numbers.caller = caller.into();
    }
}

/// The INVITE the carrier gets for `invite`.
fn to_carrier(s: CallSetup, invite: Message) -> Message {
    let h = Harness::outbound(s, invite);
    let sent = h.request(Method::Invite);
    assert_eq!(sent.leg, LegId::Carrier);
    sent.msg
}

fn text(m: &Message) -> String {
    String::from_utf8_lossy(m.bytes()).into_owned()
}

fn from_user(m: &Message) -> String {
    let from = m.from().unwrap();
    let user = from.uri.as_sip().unwrap().user.clone().unwrap_or_default();
    String::from_utf8_lossy(&user).into_owned()
}

fn contact_user(m: &Message) -> Option<String> {
    let contact = m.contacts().unwrap().into_iter().next().unwrap();
    let user = contact.uri.as_sip().unwrap().user.clone();
    user.map(|u| String::from_utf8_lossy(&u).into_owned())
}

fn diversions(m: &Message) -> Vec<String> {
    m.header_values(&HeaderName::from_wire(b"Diversion"))
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

fn assert_anonymous(m: &Message) {
    assert_eq!(
        header(m, HeaderName::From).split(";tag=").next().unwrap(),
        "\"Anonymous\" <sip:anonymous@anonymous.invalid>",
        "{}",
        text(m)
    );
    assert_eq!(contact_user(m), None, "{}", text(m));
}

#[test]
fn row57_pai_privacy_id_anonymous_from_towards_untrusted_carrier_hides_everything() {
    // (The setup's callee is +14255550100; this caller is +14255550111.)
    let extra = "P-Asserted-Identity: <tel:+14255550111>\r\n\
                 P-Asserted-Identity: <sip:+14255550111@contoso.com;user=phone>\r\nPrivacy: id\r\n";
    let sent = to_carrier(
        carrier_setup(false, false),
        invite(Some(ANONYMOUS_TEAMS_FROM), extra),
    );
    assert_anonymous(&sent);
    assert!(!sent.has_header(&HeaderName::PAssertedIdentity));
    assert!(!sent.has_header(&HeaderName::Privacy), "no Privacy leak");
    let all = text(&sent);
    // Neither the asserted number nor the routed caller number appears anywhere.
    assert!(!all.contains("14255550111"), "{all}");
    assert!(!all.contains("12065550123"), "{all}");
}

#[test]
fn row57_trusted_carrier_gets_routed_pai_number_and_privacy_id() {
    let extra = "P-Asserted-Identity: <tel:+14255550100>\r\nPrivacy: id\r\n";
    let mut s = carrier_setup(true, false);
    // Routing took the PAI number and translated it (national format for this trunk).
    routed_caller(&mut s, "04255550100");
    let sent = to_carrier(s, invite(Some(ANONYMOUS_TEAMS_FROM), extra));
    assert_anonymous(&sent);
    assert_eq!(
        header(&sent, HeaderName::PAssertedIdentity),
        format!("<sip:04255550100@{HOST}>")
    );
    assert_eq!(header(&sent, HeaderName::Privacy), "id");
}

#[test]
fn row57_pai_tel_uri_is_used_when_routing_has_no_number() {
    let extra =
        "P-Asserted-Identity: \"Alice\" <tel:+14255550100;phone-context=+1>\r\nPrivacy: id\r\n";
    let mut s = carrier_setup(true, false);
    routed_caller(&mut s, "anonymous");
    let sent = to_carrier(s, invite(Some(ANONYMOUS_TEAMS_FROM), extra));
    assert_anonymous(&sent);
    assert_eq!(
        header(&sent, HeaderName::PAssertedIdentity),
        format!("<sip:+14255550100@{HOST}>")
    );
    // Untrusted: nothing.
    let mut s = carrier_setup(false, false);
    routed_caller(&mut s, "anonymous");
    let sent = to_carrier(s, invite(Some(ANONYMOUS_TEAMS_FROM), extra));
    assert_anonymous(&sent);
    assert!(!sent.has_header(&HeaderName::PAssertedIdentity));
}

/// Every Privacy value, combinations, case and several lines, towards both kinds of trunk.
#[test]
fn row57_privacy_values_table() {
    // (Privacy lines, From anonymous?, Contact without number?, Privacy passed to trusted)
    let table: &[(&str, bool, bool, Option<&str>)] = &[
        ("Privacy: id\r\n", true, true, Some("id")),
        ("Privacy: user\r\n", true, true, Some("user")),
        ("Privacy: header\r\n", false, true, Some("header")),
        ("Privacy: none\r\n", false, false, Some("none")),
        ("Privacy: session\r\n", false, false, Some("session")),
        ("Privacy: ID\r\n", true, true, Some("id")),
        ("Privacy: id;header\r\n", true, true, Some("header;id")),
        (
            "Privacy: Header ; User\r\n",
            true,
            true,
            Some("header;user"),
        ),
        ("Privacy: id, critical\r\n", true, true, Some("id;critical")),
        (
            "Privacy: header\r\nPrivacy: id\r\n",
            true,
            true,
            Some("header;id"),
        ),
        ("Privacy: bogus\r\n", false, false, None),
        ("", false, false, None),
    ];
    for (privacy, anonymous, no_contact_number, passed) in table {
        let extra = format!("P-Asserted-Identity: <tel:+14255550100>\r\n{privacy}");
        for trusted in [false, true] {
            let sent = to_carrier(carrier_setup(trusted, false), invite(None, &extra));
            let case = format!("{privacy:?} trusted={trusted}\n{}", text(&sent));
            if *anonymous {
                assert_anonymous(&sent);
            } else {
                assert_eq!(from_user(&sent), "+12065550123", "{case}");
            }
            assert_eq!(contact_user(&sent).is_none(), *no_contact_number, "{case}");
            if trusted {
                assert_eq!(
                    header(&sent, HeaderName::PAssertedIdentity),
                    format!("<sip:+12065550123@{HOST}>"),
                    "{case}"
                );
                let privacy = sent
                    .header(&HeaderName::Privacy)
                    .map(|v| String::from_utf8_lossy(&v).into_owned());
                assert_eq!(privacy.as_deref(), *passed, "{case}");
            } else {
                assert!(!sent.has_header(&HeaderName::PAssertedIdentity), "{case}");
                assert!(!sent.has_header(&HeaderName::Privacy), "{case}");
            }
        }
    }
}

#[test]
fn row57_anonymous_from_without_privacy_is_kept_anonymous() {
    for from in [
        ANONYMOUS_TEAMS_FROM,
        "From: \"Anonymous\" <sip:+14255550100@sip.pstnhub.microsoft.com>;tag=t1",
        "From: <sip:ANONYMOUS@sip.pstnhub.microsoft.com;user=phone>;tag=t1",
    ] {
        let extra = "P-Asserted-Identity: <sip:+14255550100@contoso.com>\r\n";
        let sent = to_carrier(carrier_setup(false, false), invite(Some(from), extra));
        assert_anonymous(&sent);
        assert!(!sent.has_header(&HeaderName::PAssertedIdentity));
        // Trusted: PAI (Teams asserted an identity), no Privacy (none was asked for).
        let sent = to_carrier(carrier_setup(true, false), invite(Some(from), extra));
        assert_anonymous(&sent);
        assert_eq!(
            header(&sent, HeaderName::PAssertedIdentity),
            format!("<sip:+12065550123@{HOST}>")
        );
        assert!(!sent.has_header(&HeaderName::Privacy));
    }
}

#[test]
fn no_pai_and_no_privacy_gives_the_number_and_no_pai_even_when_trusted() {
    for trusted in [false, true] {
        let sent = to_carrier(carrier_setup(trusted, false), invite(None, ""));
        assert_eq!(from_user(&sent), "+12065550123");
        assert_eq!(contact_user(&sent).as_deref(), Some("+12065550123"));
        assert!(!sent.has_header(&HeaderName::PAssertedIdentity));
        assert!(!sent.has_header(&HeaderName::Privacy));
    }
    // Routing found no number at all: the anonymous From, not "anonymous@our-address".
    let mut s = setup();
    routed_caller(&mut s, "anonymous");
    assert_anonymous(&to_carrier(s, invite(Some(ANONYMOUS_TEAMS_FROM), "")));
}

#[test]
fn row57_identity_is_the_same_on_every_trunk_failover_attempt() {
    let extra = "P-Asserted-Identity: <tel:+14255550100>\r\nPrivacy: id\r\n";
    let mut h = Harness::outbound(
        carrier_setup(true, false),
        invite(Some(ANONYMOUS_TEAMS_FROM), extra),
    );
    let first = h.request(Method::Invite);
    h.respond(&first, 503, "p1", &[], None);
    let second = h.request(Method::Invite);
    assert_eq!(second.target, Target::Carrier(1));
    for m in [&first.msg, &second.msg] {
        assert_anonymous(m);
        assert_eq!(header(m, HeaderName::Privacy), "id");
    }
}

/// Row 57 across trunk failover: trust is the trunk's, so a trusted first trunk gets PAI
/// and `Privacy: id`, and the untrusted failover trunk the same call moves to gets neither.
#[test]
fn row57_failover_to_an_untrusted_trunk_hides_the_identity_the_trusted_one_got() {
    let extra = "P-Asserted-Identity: <tel:+14255550100>\r\nPrivacy: id\r\n";
    let mut s = setup();
    s.carrier.targets[0].trunk.trusted = true;
    s.carrier.targets[1].trunk.trusted = false;
    let mut h = Harness::outbound(s, invite(Some(ANONYMOUS_TEAMS_FROM), extra));
    let first = h.request(Method::Invite);
    assert!(first.msg.has_header(&HeaderName::PAssertedIdentity));
    assert_eq!(header(&first.msg, HeaderName::Privacy), "id");
    h.respond(&first, 503, "p1", &[], None);
    let second = h.request(Method::Invite);
    assert_eq!(second.target, Target::Carrier(1));
    assert_anonymous(&second.msg);
    assert!(!second.msg.has_header(&HeaderName::PAssertedIdentity));
    assert!(!second.msg.has_header(&HeaderName::Privacy));
}

const HISTORY_302: &str = "<sip:+14255550199@sip.pstnhub.microsoft.com:5061;user=phone?Reason=SIP%3Bcause%3D302%3Btext%3D%22Moved%20temporarily%22>;index=1";
const HISTORY_486: &str = "<sip:+14255550188@sip.pstnhub.microsoft.com:5061;user=phone?Reason=SIP%3Bcause%3D486%3Btext%3D%22Busy%20Here%22>;index=1.1";

#[test]
fn history_info_is_never_relayed_and_diversion_is_off_by_default() {
    let extra =
        format!("History-Info: {HISTORY_302}, {HISTORY_486}\r\nX-MS-UserLocation: internal\r\n");
    for trusted in [false, true] {
        let sent = to_carrier(carrier_setup(trusted, false), invite(None, &extra));
        let all = text(&sent);
        assert!(
            !sent.has_header(&HeaderName::from_wire(b"History-Info")),
            "{all}"
        );
        assert!(diversions(&sent).is_empty(), "{all}");
        assert!(!all.to_ascii_lowercase().contains("x-ms-"), "{all}");
        assert!(!all.contains("pstnhub"), "{all}");
    }
}

#[test]
fn diversion_from_two_history_entries_most_recent_first() {
    let expected = vec![
        format!("<sip:+14255550188@{HOST}>;reason=user-busy;counter=1"),
        format!("<sip:+14255550199@{HOST}>;reason=unconditional;counter=1"),
    ];
    // Comma-separated on one line, and as two lines.
    for extra in [
        format!("History-Info: {HISTORY_302}, {HISTORY_486}\r\n"),
        format!("History-Info: {HISTORY_302}\r\nHistory-Info: {HISTORY_486}\r\n"),
    ] {
        for trusted in [false, true] {
            let sent = to_carrier(carrier_setup(trusted, true), invite(None, &extra));
            assert_eq!(diversions(&sent), expected, "{}", text(&sent));
            assert!(!sent.has_header(&HeaderName::from_wire(b"History-Info")));
            assert!(!text(&sent).contains("pstnhub"));
        }
    }
}

/// Doc 2.9: Diversion numbers are numbers of the calling side and go through the trunk's
/// `from_teams` calling-number rules like the caller's own: Microsoft writes `+E.164`, a
/// trunk that wants `00` international format gets it in Diversion too. Each failover hop
/// uses its own trunk's rules: trunk A has none, trunk B rewrites.
#[test]
fn row57_diversion_numbers_go_through_each_hops_calling_number_rules() {
    let extra = format!("History-Info: {HISTORY_302}, {HISTORY_486}\r\n");
    let mut s = carrier_setup(false, true);
    s.carrier.targets[1].trunk.calling_number_rules = calling_rules(r"\+(\d+)", "00$1");
    let mut h = Harness::outbound(s, invite(None, &extra));
    let first = h.request(Method::Invite);
    assert_eq!(
        diversions(&first.msg),
        vec![
            format!("<sip:+14255550188@{HOST}>;reason=user-busy;counter=1"),
            format!("<sip:+14255550199@{HOST}>;reason=unconditional;counter=1"),
        ]
    );
    h.respond(&first, 503, "p1", &[], None);
    let second = h.request(Method::Invite);
    assert_eq!(
        diversions(&second.msg),
        vec![
            format!("<sip:0014255550188@{HOST}>;reason=user-busy;counter=1"),
            format!("<sip:0014255550199@{HOST}>;reason=unconditional;counter=1"),
        ]
    );
}

#[test]
fn diversion_reasons_from_sip_causes_and_rfc4458_cause_parameters() {
    let entry = |number: &str, cause: u16| {
        format!("<sip:{number}@sip.pstnhub.microsoft.com;user=phone?Reason=SIP%3Bcause%3D{cause}>")
    };
    for (cause, reason) in [
        (302, "unconditional"),
        (301, "unconditional"),
        (486, "user-busy"),
        (600, "user-busy"),
        (408, "no-answer"),
        (480, "no-answer"),
        (487, "no-answer"),
        (603, "deflection"),
        (503, "unavailable"),
        (404, "unknown"),
    ] {
        let extra = format!("History-Info: {};index=1\r\n", entry("+111", cause));
        let sent = to_carrier(carrier_setup(false, true), invite(None, &extra));
        assert_eq!(
            diversions(&sent),
            vec![format!("<sip:+111@{HOST}>;reason={reason};counter=1")],
            "cause {cause}"
        );
    }
    // RFC 7544 style: the new target's RFC 4458 `cause` names the reason of the entry before.
    for (cause, reason) in [
        (302, "unconditional"),
        (486, "user-busy"),
        (408, "no-answer"),
        (480, "deflection"),
        (487, "deflection"),
        (503, "unavailable"),
        (404, "unknown"),
    ] {
        let extra = format!(
            "History-Info: <sip:+111@ms.example>;index=1, <sip:+222@ms.example;cause={cause}>;index=1.1;rc\r\n"
        );
        let sent = to_carrier(carrier_setup(false, true), invite(None, &extra));
        assert_eq!(
            diversions(&sent),
            vec![format!("<sip:+111@{HOST}>;reason={reason};counter=1")],
            "cause {cause}"
        );
    }
    // tel: entries count too.
    let extra = "History-Info: <tel:+333>;index=1, <tel:+444;cause=302>;index=1.1\r\n";
    let sent = to_carrier(carrier_setup(false, true), invite(None, extra));
    assert_eq!(
        diversions(&sent),
        vec![format!("<sip:+333@{HOST}>;reason=unconditional;counter=1")]
    );
}

#[test]
fn private_history_entries_follow_the_privacy_rules() {
    let private = "<sip:+14255550177@sip.pstnhub.microsoft.com;user=phone?Privacy=history&Reason=SIP%3Bcause%3D408>;index=1";
    let extra = format!("History-Info: {private}, {HISTORY_486}\r\n");
    let sent = to_carrier(carrier_setup(false, true), invite(None, &extra));
    assert_eq!(
        diversions(&sent),
        vec![format!(
            "<sip:+14255550188@{HOST}>;reason=user-busy;counter=1"
        )]
    );
    assert!(!text(&sent).contains("14255550177"));
    let sent = to_carrier(carrier_setup(true, true), invite(None, &extra));
    assert_eq!(
        diversions(&sent),
        vec![
            format!("<sip:+14255550188@{HOST}>;reason=user-busy;counter=1"),
            format!("<sip:+14255550177@{HOST}>;reason=no-answer;counter=1;privacy=full"),
        ]
    );
    // Privacy: history (or header) on the request makes every entry private.
    for privacy in ["history", "header", "HISTORY"] {
        let extra = format!("History-Info: {HISTORY_302}, {HISTORY_486}\r\nPrivacy: {privacy}\r\n");
        let sent = to_carrier(carrier_setup(false, true), invite(None, &extra));
        assert!(diversions(&sent).is_empty(), "{privacy}");
        let sent = to_carrier(carrier_setup(true, true), invite(None, &extra));
        assert_eq!(diversions(&sent).len(), 2, "{privacy}");
        assert!(diversions(&sent)
            .iter()
            .all(|d| d.ends_with(";privacy=full")));
    }
}

#[test]
fn history_entries_without_a_diversion_give_none() {
    for history in [
        // The np (no-op) tag is not privacy and not a retarget.
        "<sip:+111@ms.example>;index=1;np",
        // No Reason, no cause on the next entry.
        "<sip:+111@ms.example>;index=1, <sip:+222@ms.example>;index=1.1",
        // A Q.850 Reason is not a redirecting reason.
        "<sip:+111@ms.example?Reason=Q.850%3Bcause%3D16>;index=1",
        // A user without a telephone number cannot be a Diversion number.
        "<sip:alice@contoso.com?Reason=SIP%3Bcause%3D302>;index=1",
    ] {
        let extra = format!("History-Info: {history}\r\n");
        let sent = to_carrier(carrier_setup(true, true), invite(None, &extra));
        assert!(
            diversions(&sent).is_empty(),
            "{history}: {:?}",
            diversions(&sent)
        );
    }
}

#[test]
fn garbage_history_info_gives_no_diversion_and_no_panic() {
    let garbage = [
        "<<<",
        ",,,",
        "<",
        ">",
        "\"unterminated <sip:+1@x?Reason=SIP%3Bcause%3D302>",
        "<sip:+1@x?Reason=SIP%3Bcause%3D99999>",
        "<sip:+1@x?Reason=SIP%3Bcause%3D>",
        "<sip:+1@x?Reason=%>",
        "<sip:+1@x?Reason=%Z>",
        "<sip:+1@x?Reason>",
        "<sip:+1@x?=&&=>",
        "<sip:%ZZ@x?Reason=SIP%3Bcause%3D302>",
        "<tel:>;index=1",
        "<sip:+1@x;cause=>",
        "<sip:+1@x;cause=3020>",
    ];
    for g in garbage {
        let extra = format!("History-Info: {g}\r\n");
        let sent = to_carrier(carrier_setup(true, true), invite(None, &extra));
        assert!(diversions(&sent).is_empty(), "{g}: {:?}", diversions(&sent));
    }
    // Far too many entries: a bounded number of Diversions.
    let many: Vec<String> = (0..200)
        .map(|i| format!("<sip:+1{i:04}@x?Reason=SIP%3Bcause%3D302>;index=1.{i}"))
        .collect();
    let extra: String = many
        .chunks(50)
        .map(|c| format!("History-Info: {}\r\n", c.join(", ")))
        .collect();
    let sent = to_carrier(carrier_setup(true, true), invite(None, &extra));
    assert_eq!(diversions(&sent).len(), 8);
}

#[test]
fn diversion_entries_hide_microsoft_hosts_and_parameters() {
    let extra = format!("History-Info: {HISTORY_302}\r\n");
    let sent = to_carrier(carrier_setup(false, true), invite(None, &extra));
    let d = diversions(&sent);
    assert_eq!(d.len(), 1);
    assert!(!d[0].contains("pstnhub") && !d[0].contains("user=phone") && !d[0].contains("index"));
}

/// Row 20 with privacy: `forward_pai` never turns a private PSTN caller into a visible one.
#[test]
fn row20_forward_pai_does_not_undo_carrier_privacy() {
    let private = String::from_utf8_lossy(carrier_invite(Some(&carrier_sdp())).bytes()).replacen(
        "Record-Route:",
        "Privacy: id\r\nRecord-Route:",
        1,
    );
    let mut s = setup();
    s.teams.forward_pai = true;
    let h = Harness::inbound(s.clone(), parse(private.as_bytes()));
    let sent = h.request(Method::Invite).msg;
    assert!(!text(&sent).contains("12065559999"), "{}", text(&sent));
    let anonymous = String::from_utf8_lossy(carrier_invite(Some(&carrier_sdp())).bytes()).replacen(
        "From: <sip:2065550123@10.0.0.1>",
        "From: <sip:anonymous@anonymous.invalid>",
        1,
    );
    let h = Harness::inbound(s.clone(), parse(anonymous.as_bytes()));
    assert!(!text(&h.request(Method::Invite).msg).contains("12065559999"));
    // Without privacy the PAI number is used (row 20).
    let h = Harness::inbound(s, carrier_invite(Some(&carrier_sdp())));
    assert_eq!(from_user(&h.request(Method::Invite).msg), "+12065559999");
}
