//! Unit tests of the SIP message layer (parser, URIs, framing, builders, editor).

use bytes::Bytes;

use super::*;

const INVITE: &str =
    "INVITE sip:+14255550100@sbc1.customer.example.com:5061;user=phone;transport=tls SIP/2.0\r\n\
Via: SIP/2.0/TLS 52.114.148.0:5061;branch=z9hG4bKac1;rport\r\n\
Max-Forwards: 69\r\n\
From: \"Doe, <Jane>\" <sip:+14255550199@sip.pstnhub.microsoft.com:5061;user=phone>;tag=abc\r\n\
To: <sip:+14255550100@sbc1.customer.example.com;user=phone>\r\n\
Call-ID: 7f1e2d@10.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:api-du-b.pstnhub.microsoft.com:443;x-i=abc;transport=tls>\r\n\
X-Custom:   keep   me   exactly \r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

fn limits() -> Limits {
    Limits::default()
}

fn parse(s: &str) -> Result<Message, ParseError> {
    Message::parse(Bytes::copy_from_slice(s.as_bytes()), &limits())
}

fn ok(s: &str) -> Message {
    parse(s).unwrap_or_else(|e| panic!("must parse: {e:?}\n{s}"))
}

fn err(s: &str) -> ParseError {
    match parse(s) {
        Ok(_) => panic!("must be rejected:\n{s}"),
        Err(e) => e,
    }
}

/// A minimal valid OPTIONS with `extra` header lines inserted before Content-Length.
fn options_with(extra: &str) -> String {
    format!(
        "OPTIONS sip:a@b.example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
From: <sip:x@y>;tag=1\r\nTo: <sip:a@b.example.com>\r\nCall-ID: c1\r\nCSeq: 2 OPTIONS\r\n\
{extra}Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn parses_a_teams_invite() {
    let m = ok(INVITE);
    assert!(m.is_request());
    assert_eq!(m.method(), Some(&Method::Invite));
    let uri = m.request_uri().unwrap().as_sip().unwrap();
    assert_eq!(uri.user.as_deref(), Some(&b"+14255550100"[..]));
    assert_eq!(uri.port, Some(5061));
    assert_eq!(
        uri.param("user").flatten().map(|v| &v[..]),
        Some(&b"phone"[..])
    );
    assert_eq!(
        uri.param("TRANSPORT").flatten().map(|v| &v[..]),
        Some(&b"tls"[..])
    );
    let via = m.top_via().unwrap();
    assert_eq!(&via.transport[..], b"TLS");
    assert_eq!(via.port, Some(5061));
    assert_eq!(via.rport, Some(None));
    assert!(via.has_rfc3261_branch());
    assert_eq!(m.max_forwards(), Some(69));
    assert_eq!(
        m.cseq().unwrap(),
        CSeq {
            seq: 1,
            method: Method::Invite
        }
    );
    assert_eq!(m.content_length(), Some(4));
    assert_eq!(&m.body()[..], b"v=0\n");
    assert_eq!(
        m.header(&HeaderName::from_wire(b"x-custom")).as_deref(),
        Some(&b"keep   me   exactly"[..])
    );
}

#[test]
fn compact_header_names_map_to_long_forms() {
    let cases: [(&str, HeaderName); 15] = [
        ("i", HeaderName::CallId),
        ("m", HeaderName::Contact),
        ("e", HeaderName::ContentEncoding),
        ("l", HeaderName::ContentLength),
        ("c", HeaderName::ContentType),
        ("f", HeaderName::From),
        ("s", HeaderName::Subject),
        ("k", HeaderName::Supported),
        ("t", HeaderName::To),
        ("v", HeaderName::Via),
        ("r", HeaderName::ReferTo),
        ("b", HeaderName::ReferredBy),
        ("o", HeaderName::Event),
        ("u", HeaderName::AllowEvents),
        ("x", HeaderName::SessionExpires),
    ];
    for (short, long) in cases {
        assert_eq!(HeaderName::from_wire(short.as_bytes()), long, "{short}");
        assert_eq!(HeaderName::from_wire(short.to_uppercase().as_bytes()), long);
        assert_eq!(HeaderName::from_wire(long.as_str().as_bytes()), long);
        assert_eq!(
            HeaderName::from_wire(long.as_str().to_lowercase().as_bytes()),
            long
        );
    }
    assert_eq!(HeaderName::from_wire(b"X-MS-SBC"), HeaderName::XMsSbc);
    assert_eq!(HeaderName::from_wire(b"min-se"), HeaderName::MinSe);
    assert_eq!(
        HeaderName::from_wire(b"X-Unknown"),
        HeaderName::Other(Bytes::from_static(b"X-Unknown"))
    );
    assert!(HeaderName::from_wire(b"x-unknown").matches(&HeaderName::from_wire(b"X-UNKNOWN")));

    let m = ok("INVITE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nf: <sip:x@y>;tag=1\r\n\
t: sip:a@b\r\ni: cid\r\nCSeq: 1 INVITE\r\nm: <sip:c@d>\r\nk: timer, 100rel\r\nc: application/sdp\r\nl: 0\r\n\r\n");
    assert_eq!(m.call_id().as_deref(), Some(&b"cid"[..]));
    assert_eq!(m.contacts().unwrap().len(), 1);
    assert!(m.has_token(&HeaderName::Supported, "100rel"));
    assert_eq!(m.content_type().as_deref(), Some(&b"application/sdp"[..]));
    assert_eq!(m.content_length(), Some(0));
}

#[test]
fn folded_lines_are_one_header() {
    let m = ok(&options_with(
        "Subject: first\r\n  second\r\n\tthird\r\nX-After: yes\r\n",
    ));
    assert_eq!(
        m.header(&HeaderName::Subject).as_deref(),
        Some(&b"first\r\n  second\r\n\tthird"[..])
    );
    assert_eq!(
        m.header(&HeaderName::from_wire(b"X-After")).as_deref(),
        Some(&b"yes"[..])
    );
    // A folded Via is still one readable Via.
    let m = ok(
        "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP\r\n 192.0.2.1\r\n ;branch=z9hG4bKf\r\n\
From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n",
    );
    assert_eq!(
        m.top_via().unwrap().branch.as_deref(),
        Some(&b"z9hG4bKf"[..])
    );
}

#[test]
fn a_header_block_cannot_start_with_a_continuation() {
    let e = err("OPTIONS sip:a@b SIP/2.0\r\n folded: x\r\n\r\n");
    assert_eq!(e.kind, ParseErrorKind::BadHeaderLine);
}

#[test]
fn multiple_values_per_line_and_across_lines() {
    let m = ok("INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h1;branch=z9hG4bK1, SIP/2.0/TCP h2:5070;branch=z9hG4bK2\r\n\
Via: SIP/2.0/TLS h3;branch=z9hG4bK3\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
Contact: \"Smith, John\" <sip:j,x@h;a=1>;q=0.5, <sip:k@h>\r\nAllow: INVITE, ACK,BYE\r\nAllow: OPTIONS\r\n\
Record-Route: <sip:p1;lr>, <sip:p2;lr>\r\nRoute: <sip:r1;lr>\r\nRoute: <sip:r2;lr>\r\nContent-Length: 0\r\n\r\n");
    let hosts: Vec<Bytes> = m.vias().unwrap().into_iter().map(|v| v.host).collect();
    assert_eq!(hosts, ["h1", "h2", "h3"].map(Bytes::from));
    assert_eq!(m.vias().unwrap()[1].port, Some(5070));
    assert_eq!(m.top_via().unwrap().host, Bytes::from("h1"));
    let contacts = m.contacts().unwrap();
    assert_eq!(contacts.len(), 2);
    assert_eq!(
        contacts[0].display_name.as_deref(),
        Some(&b"Smith, John"[..])
    );
    assert_eq!(
        contacts[0].param("q").flatten().map(|v| &v[..]),
        Some(&b"0.5"[..])
    );
    assert_eq!(
        m.tokens(&HeaderName::Allow),
        ["INVITE", "ACK", "BYE", "OPTIONS"]
            .map(Bytes::from)
            .to_vec()
    );
    assert_eq!(m.record_routes().unwrap().len(), 2);
    assert_eq!(m.routes().unwrap().len(), 2);
    assert_eq!(
        m.header(&HeaderName::Allow).as_deref(),
        Some(&b"INVITE"[..])
    );
}

#[test]
fn whitespace_around_the_colon_is_accepted() {
    let m = ok("OPTIONS sip:a@b SIP/2.0\r\nVia   :SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom\t: <sip:x@y>;tag=1\r\n\
To:<sip:a@b>\r\nCall-ID :   c1   \r\nCSeq:2 OPTIONS\r\nContent-Length\t:\t0\r\n\r\n");
    assert_eq!(m.call_id().as_deref(), Some(&b"c1"[..]));
    assert_eq!(m.cseq().unwrap().seq, 2);
    let entry = &m.header_entries()[0];
    assert_eq!(&m.bytes()[entry.name_range.clone()], b"Via");
}

#[test]
fn unescaped_hash_in_user_part_row_25() {
    let uri = Uri::parse(&Bytes::from_static(
        b"sip:+1425555#123@sbc.example.com;user=phone",
    ))
    .unwrap();
    assert_eq!(
        uri.as_sip().unwrap().user.as_deref(),
        Some(&b"+1425555#123"[..])
    );
    let m = ok("INVITE sip:*72#1234@sbc.example.com SIP/2.0\r\nVia: SIP/2.0/TLS h;branch=z9hG4bK1\r\n\
From: <sip:#31#@x.example.com>;tag=1\r\nTo: <sip:*72#1234@sbc.example.com>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n");
    let from = m.from().unwrap();
    assert_eq!(
        from.uri.as_sip().unwrap().user.as_deref(),
        Some(&b"#31#"[..])
    );
}

#[test]
fn sips_is_parsed_and_flagged_secure_row_18() {
    let uri = Uri::parse(&Bytes::from_static(
        b"sips:sbc.example.com:5061;transport=tls",
    ))
    .unwrap();
    let sip = uri.as_sip().unwrap();
    assert!(sip.secure);
    assert_eq!(sip.user, None);
    assert_eq!(sip.port, Some(5061));
    let plain = Uri::parse(&Bytes::from_static(b"SIP:sbc.example.com")).unwrap();
    assert!(!plain.as_sip().unwrap().secure);
}

#[test]
fn tel_and_unknown_schemes_stay_opaque() {
    for raw in [
        "tel:+14255550100;phone-context=example.com",
        "urn:service:sos",
        "http://x/y",
    ] {
        let uri = Uri::parse(&Bytes::copy_from_slice(raw.as_bytes())).unwrap();
        assert_eq!(uri, Uri::Opaque(Bytes::copy_from_slice(raw.as_bytes())));
        assert_eq!(&uri.raw()[..], raw.as_bytes());
    }
    let to = NameAddr::parse(&Bytes::from_static(b"<tel:+14255550100>;tag=9")).unwrap();
    assert_eq!(to.uri, Uri::Opaque(Bytes::from_static(b"tel:+14255550100")));
    assert_eq!(to.tag.as_deref(), Some(&b"9"[..]));
    for bad in [
        "",
        ":x",
        "1sip:a",
        "tel:",
        "sip:",
        "sip:@h",
        "sip:a@",
        "sip:h:99999",
        "sip:h;",
        "sip:h:5060x",
        "sip:a b@h",
        "sip:[zz]",
    ] {
        assert!(
            Uri::parse(&Bytes::copy_from_slice(bad.as_bytes())).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn ipv6_hosts_in_uri_and_via() {
    let uri = Uri::parse(&Bytes::from_static(
        b"sip:alice@[2001:db8::10]:5070;transport=tcp",
    ))
    .unwrap();
    let sip = uri.as_sip().unwrap();
    assert_eq!(&sip.host[..], b"[2001:db8::10]");
    assert_eq!(sip.host_unbracketed(), b"2001:db8::10");
    assert_eq!(sip.port, Some(5070));
    let m = ok("OPTIONS sip:[2001:db8::1] SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::9]:5060;branch=z9hG4bK1;received=2001:db8::99;rport=5062\r\n\
From: <sip:x@[::1]>;tag=1\r\nTo: <sip:[2001:db8::1]>\r\nCall-ID: c\r\nCSeq: 2 OPTIONS\r\n\r\n");
    let via = m.top_via().unwrap();
    assert_eq!(&via.host[..], b"[2001:db8::9]");
    assert_eq!(via.port, Some(5060));
    assert_eq!(via.received.as_deref(), Some(&b"2001:db8::99"[..]));
    assert_eq!(via.rport, Some(Some(5062)));
    assert_eq!(&m.from().unwrap().uri.as_sip().unwrap().host[..], b"[::1]");
}

#[test]
fn name_addr_with_quoted_display_names() {
    let na = NameAddr::parse(&Bytes::from_static(
        br#""Doe, John <CEO> \"the boss\"" <sip:jd@example.com;transport=tls>;tag=x1;foo=bar"#,
    ))
    .unwrap();
    assert_eq!(
        na.display_name.as_deref(),
        Some(&br#"Doe, John <CEO> \"the boss\""#[..])
    );
    assert_eq!(na.tag.as_deref(), Some(&b"x1"[..]));
    assert_eq!(na.params.len(), 2);
    assert_eq!(na.param("foo").flatten().map(|v| &v[..]), Some(&b"bar"[..]));
    assert_eq!(
        na.uri
            .as_sip()
            .unwrap()
            .param("transport")
            .flatten()
            .map(|v| &v[..]),
        Some(&b"tls"[..])
    );
    // addr-spec form: parameters after the URI belong to the header.
    let na = NameAddr::parse(&Bytes::from_static(b"sip:a@b;tag=5")).unwrap();
    assert_eq!(na.tag.as_deref(), Some(&b"5"[..]));
    assert!(na.uri.as_sip().unwrap().params.is_empty());
    // Unquoted multi-token display name.
    let na = NameAddr::parse(&Bytes::from_static(b"John Q Public <sip:a@b>")).unwrap();
    assert_eq!(na.display_name.as_deref(), Some(&b"John Q Public"[..]));
    for bad in [
        r#""unterminated <sip:a@b>"#,
        "<sip:a@b",
        "Bell, A <sip:a@b>",
        "< sip:a@b>",
        "<sip:a@b>;",
        "<sip:a@b>;=x",
        "sip:a@b?x=y",
    ] {
        assert!(
            NameAddr::parse(&Bytes::copy_from_slice(bad.as_bytes())).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn mandatory_headers_and_cseq_rules() {
    for missing in ["Via", "From", "To", "Call-ID", "CSeq"] {
        let msg: String = options_with("")
            .lines()
            .filter(|l| !l.starts_with(&format!("{missing}:")))
            .map(|l| format!("{l}\r\n"))
            .collect();
        assert_eq!(err(&msg).kind, ParseErrorKind::MissingHeader, "{missing}");
    }
    let e = err(&options_with("").replace("CSeq: 2 OPTIONS", "CSeq: 2 INVITE"));
    assert_eq!(e.kind, ParseErrorKind::CSeqMethodMismatch);
    assert!(e.can_respond);
    assert_eq!(
        err(&options_with("").replace("CSeq: 2", "CSeq: x")).kind,
        ParseErrorKind::BadCSeq
    );
    assert_eq!(
        err(&options_with("Max-Forwards: 256\r\n")).kind,
        ParseErrorKind::BadMaxForwards
    );
    assert_eq!(
        ok(&options_with("Max-Forwards: 0\r\n")).max_forwards(),
        Some(0)
    );
    assert_eq!(
        err(&options_with("Call-ID: again\r\n")).kind,
        ParseErrorKind::BadCallId
    );
    assert_eq!(
        err(&options_with("").replace("Call-ID: c1", "Call-ID: c 1")).kind,
        ParseErrorKind::BadCallId
    );
    // Max-Forwards is optional to accept.
    assert_eq!(ok(&options_with("")).max_forwards(), None);
}

#[test]
fn version_and_status_line_rules() {
    let e = err(&options_with("").replace("SIP/2.0\r\nVia", "SIP/3.0\r\nVia"));
    assert_eq!(e.kind, ParseErrorKind::BadVersion);
    assert_eq!(e.kind.status(), 505);
    assert!(e.can_respond);
    let resp = |line: &str| {
        format!("{line}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
    };
    assert_eq!(ok(&resp("SIP/2.0 180 Ringing")).status(), Some(180));
    assert_eq!(ok(&resp("SIP/2.0 699 Whatever")).status(), Some(699));
    assert_eq!(ok(&resp("sip/2.0 200 OK")).status(), Some(200));
    for bad in [
        "SIP/2.0 099 Low",
        "SIP/2.0 700 High",
        "SIP/2.0 20 Short",
        "SIP/2.0 2000 Long",
        "SIP/2.0 2x0 X",
    ] {
        let e = err(&resp(bad));
        assert_eq!(e.kind, ParseErrorKind::BadStatusCode, "{bad}");
        assert!(!e.can_respond, "a response is never answered");
    }
    assert_eq!(
        err(&resp("SIP/1.0 200 OK")).kind,
        ParseErrorKind::BadVersion
    );
    assert_eq!(
        err(&options_with("").replace("OPTIONS sip", "OPT<IONS sip")).kind,
        ParseErrorKind::BadMethod
    );
    assert_eq!(err("garbage\r\n\r\n").kind, ParseErrorKind::BadStartLine);
}

#[test]
fn datagram_body_rules() {
    // No Content-Length: the body runs to the end of the datagram.
    let m = ok(&(options_with("").replace("Content-Length: 0\r\n", "") + "hello"));
    assert_eq!(&m.body()[..], b"hello");
    // Bytes beyond Content-Length are discarded (RFC 3261 §18.3).
    let m = ok(&(options_with("").replace("Content-Length: 0", "Content-Length: 2") + "hello"));
    assert_eq!(&m.body()[..], b"he");
    assert_eq!(m.bytes().len(), options_with("").len() + 2);
    // Content-Length larger than what arrived.
    let e = err(&(options_with("").replace("Content-Length: 0", "Content-Length: 9") + "hello"));
    assert_eq!(e.kind, ParseErrorKind::BodyLengthMismatch);
    assert!(e.can_respond);
    for bad in ["-1", "1x", "", "99999999999"] {
        let e =
            err(&options_with("").replace("Content-Length: 0", &format!("Content-Length: {bad}")));
        assert_eq!(e.kind, ParseErrorKind::BadContentLength, "{bad}");
    }
    // A message without the blank line is incomplete and never answered.
    let e = err("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n");
    assert_eq!(e.kind, ParseErrorKind::Incomplete);
    assert!(!e.can_respond);
}

#[test]
fn limit_on_message_size() {
    let small = Limits {
        max_message_bytes: 200,
        ..limits()
    };
    let big = options_with(&format!("X-Pad: {}\r\n", "a".repeat(300)));
    let e = Message::parse(Bytes::from(big.clone()), &small).unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::TooLarge);
    assert_eq!(e.kind.status(), 513);
    assert!(Message::parse(Bytes::from(big), &limits()).is_ok());
}

#[test]
fn limit_on_header_count() {
    let few = Limits {
        max_headers: 6,
        ..limits()
    };
    let msg = options_with("");
    assert!(
        Message::parse(Bytes::from(msg.clone()), &few).is_ok(),
        "6 headers fit"
    );
    let more = options_with("X-One: 1\r\n");
    let e = Message::parse(Bytes::from(more), &few).unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::TooManyHeaders);
    assert!(e.can_respond);
}

#[test]
fn limit_on_header_line_length() {
    let short = Limits {
        max_header_line_bytes: 64,
        ..limits()
    };
    let ok_line = options_with(&format!("X-Pad: {}\r\n", "a".repeat(64 - 7)));
    assert!(Message::parse(Bytes::from(ok_line), &short).is_ok());
    let long = options_with(&format!("X-Pad: {}\r\n", "a".repeat(64 - 6)));
    let e = Message::parse(Bytes::from(long), &short).unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::HeaderLineTooLong);
    // Folding does not get around the limit: the unfolded line counts.
    let folded = options_with(&format!(
        "X-Pad: {}\r\n {}\r\n",
        "a".repeat(40),
        "b".repeat(40)
    ));
    let e = Message::parse(Bytes::from(folded), &short).unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::HeaderLineTooLong);
    // The start line is bounded too.
    let long_uri = format!("OPTIONS sip:{}@b SIP/2.0\r\n\r\n", "u".repeat(100));
    let e = Message::parse(Bytes::from(long_uri), &short).unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::HeaderLineTooLong);
}

#[test]
fn untouched_headers_are_resent_byte_for_byte() {
    let m = ok(INVITE);
    let out = m
        .edit()
        .request_uri(b"sip:+14255550100@10.1.1.1:5060")
        .prepend(
            &HeaderName::Via,
            b"SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKnew",
        )
        .set(&HeaderName::MaxForwards, b"68")
        .remove(&HeaderName::Contact)
        .finish();
    let text = std::str::from_utf8(&out).unwrap();
    assert!(text.starts_with("INVITE sip:+14255550100@10.1.1.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKnew\r\n"));
    for untouched in [
        "Via: SIP/2.0/TLS 52.114.148.0:5061;branch=z9hG4bKac1;rport\r\n",
        "From: \"Doe, <Jane>\" <sip:+14255550199@sip.pstnhub.microsoft.com:5061;user=phone>;tag=abc\r\n",
        "X-Custom:   keep   me   exactly \r\n",
        "Call-ID: 7f1e2d@10.0.0.1\r\n",
    ] {
        assert!(text.contains(untouched), "{untouched}");
    }
    assert!(text.contains("Max-Forwards: 68\r\n") && !text.contains("Max-Forwards: 69"));
    assert!(!text.contains("Contact:"));
    assert!(text.ends_with("Content-Length: 4\r\n\r\nv=0\n"));
    let again = Message::parse(out, &limits()).unwrap();
    assert_eq!(again.vias().unwrap().len(), 2);

    // Folded and compact lines survive unchanged too.
    let odd = ok(&options_with("s :  folded\r\n   subject\r\n"));
    let out = odd.edit().body(Some("text/plain"), b"hi").finish();
    let text = std::str::from_utf8(&out).unwrap();
    assert!(text.contains("s :  folded\r\n   subject\r\n"));
    assert!(text.ends_with("Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"));

    let copied = RequestBuilder::new(&Method::Bye, b"sip:x@y")
        .copy_header(&m, &HeaderName::from_wire(b"x-custom"))
        .build();
    assert!(std::str::from_utf8(&copied)
        .unwrap()
        .contains("\r\nX-Custom:   keep   me   exactly \r\n"));
}

#[test]
fn response_builder_copies_and_tags() {
    let m = ok("INVITE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h1;branch=z9hG4bK1\r\nVia: SIP/2.0/TCP h2;branch=z9hG4bK2\r\n\
From: A <sip:x@y>;tag=1\r\nTo:  <sip:a@b>  \r\nCall-ID: c\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n");
    let r = ResponseBuilder::new(&m, 180, "Ringing")
        .to_tag("t9")
        .header(&HeaderName::Contact, b"<sip:sbc@10.0.0.1>")
        .build();
    let text = std::str::from_utf8(&r).unwrap();
    assert_eq!(
        text,
        "SIP/2.0 180 Ringing\r\nv: SIP/2.0/UDP h1;branch=z9hG4bK1\r\nVia: SIP/2.0/TCP h2;branch=z9hG4bK2\r\n\
From: A <sip:x@y>;tag=1\r\nTo:  <sip:a@b>;tag=t9\r\nCall-ID: c\r\nCSeq: 7 INVITE\r\nContact: <sip:sbc@10.0.0.1>\r\nContent-Length: 0\r\n\r\n"
    );
    let parsed = Message::parse(r, &limits()).unwrap();
    assert_eq!(parsed.to().unwrap().tag.as_deref(), Some(&b"t9"[..]));

    // An existing To tag is kept and not doubled.
    let tagged = ok(&options_with("").replace(
        "To: <sip:a@b.example.com>",
        "To: <sip:a@b.example.com>;tag=old",
    ));
    let r = ResponseBuilder::new(&tagged, 200, "OK")
        .to_tag("new")
        .body(Some("application/sdp"), b"v=0\r\n");
    let parsed = Message::parse(r, &limits()).unwrap();
    assert_eq!(parsed.to().unwrap().tag.as_deref(), Some(&b"old"[..]));
    assert_eq!(
        parsed.content_type().as_deref(),
        Some(&b"application/sdp"[..])
    );
    assert_eq!(&parsed.body()[..], b"v=0\r\n");
}

#[test]
fn builders_refuse_header_injection() {
    let r = RequestBuilder::new(&Method::Options, b"sip:a@b\r\nX: y")
        .header(&HeaderName::Subject, b"hi\r\nInjected: yes")
        .build();
    let text = std::str::from_utf8(&r).unwrap();
    assert!(!text.contains("\r\nInjected"));
    assert!(!text.contains("\r\nX: y"));
}

#[test]
fn request_builder_writes_canonical_names_and_length() {
    let r = RequestBuilder::new(
        &Method::Options,
        b"sip:sip.pstnhub.microsoft.com:5061;transport=tls",
    )
    .header(
        &HeaderName::Via,
        b"SIP/2.0/TLS sbc.example.com:5061;branch=z9hG4bKo1",
    )
    .header(&HeaderName::MaxForwards, b"70")
    .header(&HeaderName::From, b"<sip:sbc.example.com>;tag=f")
    .header(&HeaderName::To, b"<sip:sip.pstnhub.microsoft.com>")
    .header(&HeaderName::CallId, b"opt1")
    .header(&HeaderName::CSeq, b"1 OPTIONS")
    .header(&HeaderName::XMsSbc, b"teams-sbc/0.1")
    .body(Some("text/plain"), b"ping");
    let text = std::str::from_utf8(&r).unwrap();
    assert!(text.contains("\r\nCall-ID: opt1\r\n"));
    assert!(text.contains("\r\nX-MS-SBC: teams-sbc/0.1\r\n"));
    assert!(text.ends_with("Content-Type: text/plain\r\nContent-Length: 4\r\n\r\nping"));
    let m = Message::parse(r, &limits()).unwrap();
    assert_eq!(m.method(), Some(&Method::Options));
}

#[test]
fn error_answers_from_raw_bytes() {
    let bad = options_with("").replace("CSeq: 2 OPTIONS", "CSeq: 2 INVITE");
    let r = ResponseBuilder::error_for_raw(bad.as_bytes(), 400, "CSeq Method Mismatch").unwrap();
    let m = Message::parse(r, &limits()).unwrap();
    assert_eq!(m.status(), Some(400));
    assert!(m.to().unwrap().tag.is_some(), "a To tag is added");
    assert_eq!(m.call_id().as_deref(), Some(&b"c1"[..]));
    // Never answer a response or an ACK, nor a message missing what a response copies.
    let response = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
    assert!(ResponseBuilder::error_for_raw(response.as_bytes(), 400, "x").is_none());
    let ack = options_with("")
        .replace("OPTIONS sip", "ACK sip")
        .replace("2 OPTIONS", "2 ACK");
    assert!(ResponseBuilder::error_for_raw(ack.as_bytes(), 400, "x").is_none());
    let bad_ack = ack.replace("CSeq: 2 ACK", "CSeq: 2 INVITE");
    let e = err(&bad_ack);
    assert!(!e.can_respond, "an ACK is never answered");
    let no_call_id = options_with("").replace("Call-ID: c1\r\n", "");
    assert!(ResponseBuilder::error_for_raw(no_call_id.as_bytes(), 400, "x").is_none());
    assert!(ResponseBuilder::error_for_raw(b"", 400, "x").is_none());
    assert!(ResponseBuilder::error_for_raw(b"\xff\xfe garbage", 400, "x").is_none());
}

#[test]
fn framer_cuts_pipelined_messages() {
    let one = options_with("");
    let two = ok(INVITE).bytes().clone();
    let mut stream = one.clone().into_bytes();
    stream.extend_from_slice(&two);
    stream.extend_from_slice(one.as_bytes());
    let mut framer = StreamFramer::new(limits());
    framer.push(&stream);
    let mut frames = Vec::new();
    while let Some(event) = framer.next_event().unwrap() {
        frames.push(event);
    }
    assert_eq!(
        frames,
        vec![
            FrameEvent::Message(Bytes::from(one.clone())),
            FrameEvent::Message(two.clone()),
            FrameEvent::Message(Bytes::from(one)),
        ]
    );
    assert_eq!(framer.buffered(), 0);
}

#[test]
fn framer_handles_messages_split_across_many_pushes() {
    let msg = ok(INVITE).bytes().clone();
    let mut stream = msg.to_vec();
    stream.extend_from_slice(&msg);
    for chunk in [1, 2, 3, 7, 64, 500] {
        let mut framer = StreamFramer::new(limits());
        let mut frames = Vec::new();
        for piece in stream.chunks(chunk) {
            framer.push(piece);
            while let Some(event) = framer.next_event().unwrap() {
                frames.push(event);
            }
        }
        assert_eq!(
            frames,
            vec![
                FrameEvent::Message(msg.clone()),
                FrameEvent::Message(msg.clone())
            ],
            "chunk size {chunk}"
        );
        assert_eq!(framer.buffered(), 0);
    }
}

#[test]
fn framer_reports_keepalives_between_messages() {
    let msg = options_with("");
    let mut framer = StreamFramer::new(limits());
    framer.push(b"\r\n\r\n");
    assert_eq!(framer.next_event().unwrap(), Some(FrameEvent::Ping));
    framer.push(b"\r\n");
    assert_eq!(framer.next_event().unwrap(), Some(FrameEvent::Pong));
    framer.push(format!("\r\n\r\n{msg}\r\n{msg}").as_bytes());
    assert_eq!(framer.next_event().unwrap(), Some(FrameEvent::Ping));
    assert_eq!(
        framer.next_event().unwrap(),
        Some(FrameEvent::Message(Bytes::from(msg.clone())))
    );
    assert_eq!(framer.next_event().unwrap(), Some(FrameEvent::Pong));
    assert_eq!(
        framer.next_event().unwrap(),
        Some(FrameEvent::Message(Bytes::from(msg)))
    );
    assert_eq!(framer.next_event().unwrap(), None);
    // A ping split after its first CR waits for the rest.
    framer.push(b"\r\n\r");
    assert_eq!(framer.next_event().unwrap(), None);
    framer.push(b"\n");
    assert_eq!(framer.next_event().unwrap(), Some(FrameEvent::Ping));
}

#[test]
fn framer_requires_content_length_on_streams() {
    let msg = options_with("").replace("Content-Length: 0\r\n", "");
    let mut framer = StreamFramer::new(limits());
    framer.push(msg.as_bytes());
    let e = framer.next_event().unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::MissingHeader);
    assert!(e.can_respond);
    let mut framer = StreamFramer::new(limits());
    framer.push(options_with("Content-Length: 3\r\n").as_bytes());
    assert_eq!(
        framer.next_event().unwrap_err().kind,
        ParseErrorKind::BadContentLength
    );
}

#[test]
fn framer_limits_buffering_of_one_message() {
    let small = Limits {
        max_message_bytes: 300,
        ..limits()
    };
    // A header block that never ends.
    let mut framer = StreamFramer::new(small);
    framer.push(b"OPTIONS sip:a@b SIP/2.0\r\n");
    let mut failed = None;
    for _ in 0..100 {
        framer.push(b"X-Pad: aaaaaaaaaaaaaaaaaaaa\r\n");
        if let Err(e) = framer.next_event() {
            failed = Some(e);
            break;
        }
    }
    assert_eq!(failed.map(|e| e.kind), Some(ParseErrorKind::TooLarge));
    assert!(framer.buffered() <= 2 * 300);
    // A Content-Length promising more than the limit is refused before the body arrives.
    let mut framer = StreamFramer::new(small);
    framer.push(
        options_with("")
            .replace("Content-Length: 0", "Content-Length: 1000")
            .as_bytes(),
    );
    assert_eq!(
        framer.next_event().unwrap_err().kind,
        ParseErrorKind::TooLarge
    );
    // Pushing without draining is capped.
    let mut framer = StreamFramer::new(small);
    assert!(framer.try_push(&[b'a'; 600]).is_ok());
    assert_eq!(
        framer.try_push(b"a").unwrap_err().kind,
        ParseErrorKind::TooLarge
    );
    framer.push(b"more");
    assert_eq!(framer.buffered(), 600);
    assert_eq!(
        framer.next_event().unwrap_err().kind,
        ParseErrorKind::TooLarge
    );
}

#[test]
fn no_panic_on_truncations_of_a_valid_message() {
    let full = ok(INVITE).bytes().clone();
    for cut in 0..full.len() {
        let _ = Message::parse(full.slice(..cut), &limits());
        let mut framer = StreamFramer::new(limits());
        framer.push(&full[..cut]);
        assert!(!matches!(
            framer.next_event(),
            Ok(Some(FrameEvent::Message(_)))
        ));
        let _ = ResponseBuilder::error_for_raw(&full[..cut], 400, "x");
    }
}

#[test]
fn metric_labels_are_bounded() {
    assert_eq!(Method::from_token(b"FOO").metric_label(), "OTHER");
    assert_eq!(Method::from_token(b"INVITE").metric_label(), "INVITE");
    assert_eq!(
        Method::from_token(b"invite"),
        Method::Other(Bytes::from_static(b"invite"))
    );
}

#[test]
fn lower_vias_and_contact_are_checked_when_read() {
    let m = ok(&options_with("Via: garbage\r\nContact: <sip:a@b;;>\r\n"));
    assert!(
        m.top_via().is_ok(),
        "the top Via was validated at parse time"
    );
    assert!(m.vias().is_err());
    assert!(m.contacts().is_err());
    // The top Via itself is always checked.
    let e = err(&options_with("").replace(
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1",
        "Via: SIP/2.0/UDP",
    ));
    assert_eq!(e.kind, ParseErrorKind::BadVia);
}

#[test]
fn contact_wildcard_is_not_a_contact_list() {
    let m = ok(&options_with("Contact: *\r\n"));
    assert!(m.contact_is_wildcard());
    assert_eq!(m.contacts().unwrap(), vec![]);
}

/// `options_with("")` with its From line's value replaced.
fn options_from(from: &[u8]) -> Vec<u8> {
    let base = options_with("");
    let (head, tail) = base.split_once("From: <sip:x@y>;tag=1").unwrap();
    [head.as_bytes(), b"From: ", from, tail.as_bytes()].concat()
}

fn parse_bytes(b: &[u8]) -> Result<Message, ParseError> {
    Message::parse(Bytes::copy_from_slice(b), &limits())
}

fn err_bytes(b: &[u8]) -> ParseError {
    match parse_bytes(b) {
        Ok(_) => panic!("must be rejected: {:?}", String::from_utf8_lossy(b)),
        Err(e) => e,
    }
}

/// Extension header line `X-Probe: <value>` inserted into a valid OPTIONS.
fn with_probe(value: &[u8]) -> Vec<u8> {
    let line = [b"X-Probe: ", value, b"\r\n"].concat();
    let base = options_with("@@");
    let (head, tail) = base.split_once("@@").unwrap();
    [head.as_bytes(), &line, tail.as_bytes()].concat()
}

#[test]
fn control_octets_in_header_values_are_refused_and_named() {
    let subject = |v: &[u8]| [b"Subject: ", v].concat();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (subject(b"a\x07b"), "Subject"),
        (subject(b"a\x1bb"), "Subject"),
        (subject(b"a\x7fb"), "Subject"),
        (subject(b"a\x00b"), "Subject"),
        (subject(b"a\x0bb"), "Subject"),
        // NEL (U+0085), a C1 control, in UTF-8.
        (subject(b"a\xc2\x85b"), "Subject"),
        // A bare CR inside a value could be read as a line break by the next hop.
        (subject(b"a\rInjected: b"), "Subject"),
        (b"s: compact\x01".to_vec(), "Subject"),
        (b"X-Ext: \x02".to_vec(), "X-Ext"),
        (b"User-Agent: phone (\x08)".to_vec(), "User-Agent"),
    ];
    for (line, header) in cases {
        let inserted = options_with("@@");
        let (head, tail) = inserted.split_once("@@").unwrap();
        let msg = [head.as_bytes(), &line, b"\r\n", tail.as_bytes()].concat();
        let e = err_bytes(&msg);
        let shown = String::from_utf8_lossy(&line);
        assert_eq!(e.kind, ParseErrorKind::ControlCharacter, "{shown:?}");
        assert_eq!(e.kind.status(), 400);
        assert_eq!(e.header.as_ref().map(HeaderName::as_str), Some(header));
        assert_eq!(
            e.response_reason(),
            format!("Bad Request (control character in {header})"),
            "{shown:?}"
        );
        assert!(e.can_respond, "{shown:?}: the copied headers are clean");
        let answer = ResponseBuilder::error_for_raw(&msg, 400, &e.response_reason()).unwrap();
        assert!(answer.starts_with(
            format!("SIP/2.0 400 Bad Request (control character in {header})\r\n").as_bytes()
        ));
    }
}

#[test]
fn invalid_utf8_in_header_values_is_refused() {
    for value in [
        &b"caf\xe9"[..],     // Latin-1
        b"\xc0\xaf",         // overlong '/'
        b"\xe0\x80\xaf",     // overlong
        b"\xed\xa0\x80",     // UTF-16 surrogate
        b"\xf4\x90\x80\x80", // beyond U+10FFFF
        b"\x80 lone continuation",
        b"truncated \xe2\x98",
        b"\xfe\xff",
    ] {
        let e = err_bytes(&with_probe(value));
        assert_eq!(e.kind, ParseErrorKind::InvalidUtf8, "{value:?}");
        assert_eq!(
            e.response_reason(),
            "Bad Request (invalid UTF-8 in X-Probe)",
            "{value:?}"
        );
        assert!(e.can_respond);
    }
    // In a display name, which a 400 copies back as it came.
    let e = err_bytes(&options_from(b"\"M\xfcller\" <sip:x@y>;tag=1"));
    assert_eq!(e.kind, ParseErrorKind::InvalidUtf8);
    assert_eq!(e.response_reason(), "Bad Request (invalid UTF-8 in From)");
    assert!(e.can_respond);
    // UTF-8 text stays accepted wherever RFC 3261 has TEXT-UTF8 (BOM included).
    let m = ok(&options_with(
        "Subject: Gr\u{fc}\u{df}e \u{2603} \u{1f600}\r\nX-Bom: \u{feff}\u{5927}\r\n",
    ));
    assert_eq!(
        m.header(&HeaderName::Subject).as_deref(),
        Some("Gr\u{fc}\u{df}e \u{2603} \u{1f600}".as_bytes())
    );
    let m = parse_bytes(&options_from(
        "\"J\u{fc}rgen \u{2603}\" <sip:x@y>;tag=1".as_bytes(),
    ))
    .unwrap();
    assert_eq!(
        m.from().unwrap().display_name.as_deref(),
        Some("J\u{fc}rgen \u{2603}".as_bytes())
    );
}

#[test]
fn whitespace_tabs_and_folding_stay_accepted() {
    assert!(parse(&options_with("Subject: a\tb\r\n")).is_ok());
    assert!(parse(&options_with("X-Fold: a\r\n b\r\n\tc\r\n")).is_ok());
    assert!(parse(&options_with("X-Lf: a\n")).is_ok());
    assert!(parse(&options_with("X-Lf-Fold: a\n b\r\n")).is_ok());
}

/// RFC 3261 §25.1 allows any control but CR and LF as a quoted-pair inside a quoted string
/// (RFC 4475 §3.1.1.2 has BEL and DEL in a display name); nowhere else.
#[test]
fn controls_are_accepted_only_as_quoted_pairs_inside_quotes() {
    let m = parse_bytes(&options_from(b"\"BEL:\\\x07 DEL:\\\x7f\" <sip:x@y>;tag=1")).unwrap();
    assert_eq!(
        m.from().unwrap().display_name.as_deref(),
        Some(&b"BEL:\\\x07 DEL:\\\x7f"[..])
    );
    assert!(parse_bytes(&with_probe(b"text=\"a\\\x07b\"")).is_ok());
    for (bad, at_header) in [
        (with_probe(b"a\\\x07b"), "X-Probe"),
        (with_probe(b"\"a\\\\\x07b\""), "X-Probe"),
        (with_probe(b"\"a\" \\\x07"), "X-Probe"),
        // Subject is TEXT-UTF8-TRIM: quotes are plain characters there.
        (
            options_with("Subject: \"a\\\x07b\"\r\n").into_bytes(),
            "Subject",
        ),
        // Unescaped control inside quotes.
        (options_from(b"\"a\x07b\" <sip:x@y>;tag=1"), "From"),
    ] {
        let e = err_bytes(&bad);
        assert_eq!(e.kind, ParseErrorKind::ControlCharacter, "{bad:?}");
        assert_eq!(e.header.as_ref().map(HeaderName::as_str), Some(at_header));
    }
    // A NUL is refused even as a quoted-pair, and never copied into an answer.
    let e = err_bytes(&options_from(b"\"a\\\x00b\" <sip:x@y>;tag=1"));
    assert_eq!(e.kind, ParseErrorKind::ControlCharacter);
    assert!(!e.can_respond);
}

#[test]
fn a_bad_octet_in_a_copied_header_is_echoed_only_when_safe() {
    // A BEL in the From display name: the 400 copies From as it came (the client needs it
    // to match the answer).
    let msg = options_from(b"\"a\x07b\" <sip:x@y>;tag=1");
    let e = err_bytes(&msg);
    assert!(e.can_respond);
    let answer = ResponseBuilder::error_for_raw(&msg, 400, &e.response_reason()).unwrap();
    assert!(answer
        .windows(b"From: \"a\x07b\"".len())
        .any(|w| w == b"From: \"a\x07b\""));
    // A NUL or a bare CR in a line the answer would copy: dropped.
    for bad in [
        options_from(b"\"a\x00b\" <sip:x@y>;tag=1"),
        options_from(b"<sip:x@y>;tag=1\rX-Injected: yes"),
        options_with("")
            .replace("Call-ID: c1", "Call-ID: c1\0")
            .into_bytes(),
    ] {
        let e = err_bytes(&bad);
        assert_eq!(e.kind, ParseErrorKind::ControlCharacter, "{bad:?}");
        assert!(!e.can_respond, "{bad:?}");
        assert!(ResponseBuilder::error_for_raw(&bad, 400, "x").is_none());
    }
    // Anywhere else they do not stop the answer, wherever the line is.
    let early = options_with("")
        .replace("Via:", "Subject: a\0b\r\nX-Cr: a\rb\r\nVia:")
        .into_bytes();
    let e = err_bytes(&early);
    assert_eq!(e.kind, ParseErrorKind::ControlCharacter);
    assert_eq!(e.header, Some(HeaderName::Subject));
    assert!(e.can_respond);
}

#[test]
fn a_bad_octet_in_a_truncated_datagram_is_not_answered() {
    let whole = options_with("Subject: a\x07b\r\n");
    let cut = &whole[..whole.len() - 2];
    let e = err(cut);
    assert_eq!(e.kind, ParseErrorKind::Incomplete);
    assert!(!e.can_respond);
}

#[test]
fn call_id_is_a_word_with_at_most_one_at() {
    for good in [
        "c1",
        "a@b",
        "7f1e2d@10.0.0.1",
        "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
        "{3f2504e0-4f89-11d3-9a0c-0305e82c3301}",
        // Not RFC 3261 words, but seen from real equipment and harmless in this header.
        "YWJjZGVm==@10.0.0.1",
        "a#b&c$d",
    ] {
        assert!(
            parse(&options_with("").replace("Call-ID: c1", &format!("Call-ID: {good}"))).is_ok(),
            "{good}"
        );
    }
    for bad in ["a@b@c", "@b", "a@", "a;b", "a,b", "a b", "caf\u{e9}"] {
        let e = err(&options_with("").replace("Call-ID: c1", &format!("Call-ID: {bad}")));
        assert_eq!(e.kind, ParseErrorKind::BadCallId, "{bad}");
        assert_eq!(e.response_reason(), "Bad Call-ID");
        assert!(e.can_respond);
    }
}

#[test]
fn via_branch_and_tags_are_tokens() {
    let via =
        |branch: &str| options_with("").replace("branch=z9hG4bK1", &format!("branch={branch}"));
    assert!(parse(&via("z9hG4bK-.!%66*_+`'~")).is_ok());
    assert!(
        parse(&via("1234")).is_ok(),
        "RFC 2543 branches stay accepted"
    );
    // RFC 4475 §3.2.1 (badbranch): the cookie alone, any case.
    for bad in [
        "z9hG4bK",
        "Z9HG4BK",
        "\"z9hG4bK1\"",
        "z9hG4bK[1]",
        "z9hG4bK:1",
        "z9hG4bK/1",
    ] {
        let e = err(&via(bad));
        assert_eq!(e.kind, ParseErrorKind::BadVia, "{bad}");
        assert!(e.can_respond, "{bad}");
    }
    assert!(
        err(&options_with("").replace(";branch=z9hG4bK1", ";branch")).kind
            == ParseErrorKind::BadVia
    );
    // Lower Vias are checked when read.
    let m = ok(&options_with("Via: SIP/2.0/UDP h;branch=\"x\"\r\n"));
    assert!(m.vias().is_err());

    for bad in ["tag=\"q\"", "tag=a:b", "tag=[1]", "tag"] {
        let e = err_bytes(&options_from(format!("<sip:x@y>;{bad}").as_bytes()));
        assert_eq!(e.kind, ParseErrorKind::BadFromTo, "{bad}");
        let to = options_with("").replace(
            "To: <sip:a@b.example.com>",
            &format!("To: <sip:a@b.example.com>;{bad}"),
        );
        assert_eq!(err(&to).kind, ParseErrorKind::BadFromTo, "{bad}");
    }
    let m = parse_bytes(&options_from(b"<sip:x@y>;tag=_token~1'+`*%!-.")).unwrap();
    assert_eq!(
        m.from().unwrap().tag.as_deref(),
        Some(&b"_token~1'+`*%!-."[..])
    );
}

#[test]
fn responses_with_bad_octets_are_refused_and_never_answered() {
    let resp = |reason: &[u8], extra: &[u8]| {
        [
            b"SIP/2.0 200 ".as_slice(),
            reason,
            b"\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n",
            extra,
            b"Content-Length: 0\r\n\r\n",
        ]
        .concat()
    };
    assert!(parse_bytes(&resp("OK \u{2713}".as_bytes(), b"")).is_ok());
    for (bad, kind) in [
        (
            resp(b"OK", b"Subject: \x07\r\n"),
            ParseErrorKind::ControlCharacter,
        ),
        (resp(b"OK", b"X-Ext: \xe9\r\n"), ParseErrorKind::InvalidUtf8),
        (resp(b"O\x07K", b""), ParseErrorKind::ControlCharacter),
        (resp(b"O\xc2\x9bK", b""), ParseErrorKind::ControlCharacter),
        (resp(b"caf\xe9", b""), ParseErrorKind::InvalidUtf8),
        (
            String::from_utf8(resp(b"OK", b""))
                .unwrap()
                .replace("branch=z9hG4bK1", "branch=z9hG4bK")
                .into_bytes(),
            ParseErrorKind::BadVia,
        ),
    ] {
        let e = err_bytes(&bad);
        assert_eq!(e.kind, kind, "{:?}", String::from_utf8_lossy(&bad));
        assert!(!e.can_respond, "a response is never answered");
    }
}

#[test]
fn non_ascii_in_an_opaque_request_uri_is_refused() {
    for uri in ["tel:+1425\u{e9}", "urn:x\u{2603}"] {
        let msg = INVITE.replacen(
            "sip:+14255550100@sbc1.customer.example.com:5061;user=phone;transport=tls",
            uri,
            1,
        );
        assert_eq!(err(&msg).kind, ParseErrorKind::BadRequestUri, "{uri}");
    }
}

#[test]
fn the_framer_cuts_messages_with_bad_octets_so_the_stream_goes_on() {
    let bad = options_with("Subject: a\0b\x07\r\n");
    let good = options_with("");
    let mut framer = StreamFramer::new(limits());
    framer.push(format!("{bad}{good}").as_bytes());
    let Ok(Some(FrameEvent::Message(first))) = framer.next_event() else {
        panic!("the bad message is framed");
    };
    let e = Message::parse(first, &limits()).unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::ControlCharacter);
    assert!(e.can_respond);
    let Ok(Some(FrameEvent::Message(second))) = framer.next_event() else {
        panic!("the next message is framed");
    };
    assert!(Message::parse(second, &limits()).is_ok());
}

#[test]
fn framer_error_leaves_the_bytes_to_answer_from() {
    let mut framer = StreamFramer::new(limits());
    let bad = options_with("").replace("Content-Length: 0", "Content-Length: -1");
    framer.push(bad.as_bytes());
    let e = framer.next_event().unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::BadContentLength);
    assert!(e.can_respond);
    let r = ResponseBuilder::error_for_raw(framer.pending(), 400, e.kind.reason()).unwrap();
    assert!(r.starts_with(b"SIP/2.0 400 Bad Content-Length\r\n"));
}

#[test]
fn whitespace_or_controls_anywhere_in_the_request_uri_are_rejected() {
    let uris = [
        "sip:+1425\t5550100@sbc1.example.com",
        "sip:+14255550100@sbc1.exa\tmple.com",
        "sip:a@b;user=ph\tone",
        "sip:a@b?x=\ty",
        "tel:+1425\t5550100",
        "urn:x\x01y",
    ];
    for uri in uris {
        let msg = INVITE.replacen(
            "sip:+14255550100@sbc1.customer.example.com:5061;user=phone;transport=tls",
            uri,
            1,
        );
        assert_eq!(err(&msg).kind, ParseErrorKind::BadRequestUri, "{uri:?}");
    }
}

#[test]
fn contact_shape_is_checked_at_parse_time() {
    for good in [
        "Contact: *\r\n",
        "Contact: <sip:a@b>, \"B\" <sip:c@d>;expires=60\r\nm: sip:e@f;q=0.5\r\n",
        "Contact: <sip:a@b;;>\r\n",
    ] {
        assert!(parse(&options_with(good)).is_ok(), "{good}");
    }
    for bad in [
        "Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E\r\n",
        "Contact: \"unterminated <sip:a@b>\r\n",
        "Contact: <sip:a@b>\r\nContact: <sip:a@b\r\n",
        "Contact: <sip:a@b>;tag=\"q\"\r\n",
    ] {
        let e = err(&options_with(bad));
        assert_eq!(e.kind, ParseErrorKind::BadContact, "{bad}");
        assert_eq!(e.response_reason(), "Bad Contact");
        assert!(e.can_respond);
    }
}

#[test]
fn date_is_an_rfc1123_date_in_gmt() {
    let m = ok(&options_with("Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n"));
    assert_eq!(
        m.header(&HeaderName::from_wire(b"date")).as_deref(),
        Some(&b"Sat, 13 Nov 2010 23:29:00 GMT"[..])
    );
    for bad in [
        "Date: Fri, 01 Jan 2010 16:00:00 EST\r\n",
        "Date: Fri, 1 Jan 2010 16:00:00 GMT\r\n",
        "Date: Fri 01 Jan 2010 16:00:00 GMT\r\n",
        "Date: Fry, 01 Jan 2010 16:00:00 GMT\r\n",
        "Date: Fri, 01 Jan 2010 16:00 GMT\r\n",
        "Date: 2010-01-01T16:00:00Z\r\n",
        "Date: Fri, 01 Jan 2010 16:00:00 GMT\r\nDate: Fri, 01 Jan 2010 16:00:00 GMT\r\n",
    ] {
        let e = err(&options_with(bad));
        assert_eq!(e.kind, ParseErrorKind::BadDate, "{bad}");
        assert!(e.can_respond);
    }
}
