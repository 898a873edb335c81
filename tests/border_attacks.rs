//! The border, attacked from outside over real loopback sockets (issue: "the border holds").
//! Each test is named after the attack it repels:
//!
//! * speaking for Microsoft without being Microsoft: UDP or plain TCP from Microsoft's
//!   ranges, TLS with a certificate from another CA or with a name that is not Microsoft's;
//!   the genuine mutual-TLS path still places the call;
//! * strangers probing every port and transport: not a byte comes back;
//! * scanners fingerprinting the product: no version on the carrier side unless configured;
//! * stealing a dialog: BYE, re-INVITE and CANCEL with a known Call-ID from another admitted
//!   trunk, with wrong tags or a wrong branch: 481 and the call (and its media) goes on;
//! * flooding: one source at its transaction quota gets 503 while another trunk's calls
//!   complete.
//!
//! Loopback plan as in `tests/common`: SBC 127.0.0.1, carrier trunk 127.0.0.2, Microsoft's
//! range 127.0.0.3/32, a second admitted trunk 127.0.0.5, a stranger 127.0.0.66.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::tls::{tcp_from, TlsPeer};
use common::*;

const ACME_DID: &str = "+4930123450";
const ACME_CALLER: &str = "+4930123499";
const PSTN_CALLER: &str = "+4969111222";
const INTRUDER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
const STRANGER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 66);
const WAIT: Duration = Duration::from_secs(10);
const LONG: Duration = Duration::from_secs(45);
/// RFC 4568's example key: any well-formed SDES key will do for an offer.
const SDES_KEY: &str = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";

/// A second trunk at 127.0.0.5 with its own tenant: admitted, but owning none of the
/// first trunk's calls or customers.
const SECOND_TRUNK: &str = r#"
[[carrier_trunk]]
name = "other"
address = "127.0.0.5:5060"
transport = "udp"
options_ping = false

[[tenant]]
name = "initech"
fqdn = "initech.sbc.example.test"
numbers = ["+4989777*"]
carrier_trunk = "other"
"#;

fn udp_from(ip: Ipv4Addr) -> UdpSocket {
    let socket = UdpSocket::bind((ip, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    socket
}

/// Datagrams arriving on `socket` within `limit`, stopping early once `done` holds.
fn received(socket: &UdpSocket, limit: Duration, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut messages = Vec::new();
    let mut buf = vec![0u8; 65_535];
    while Instant::now() < deadline && !done(&messages) {
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
    }
    messages
}

/// Nothing arrives on `socket` during a short look after the event that would have caused
/// an answer was already counted by the SBC.
fn silent(socket: &UdpSocket) -> bool {
    received(socket, Duration::from_millis(300), |m| !m.is_empty()).is_empty()
}

fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn tag_of(value: &str) -> Option<String> {
    value
        .split(';')
        .find_map(|p| p.trim().strip_prefix("tag="))
        .map(|t| t.trim_end_matches('>').to_string())
}

fn teams_sdp() -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\n\
         m=audio 40000 RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{SDES_KEY}\r\na=sendrecv\r\n"
    )
}

fn carrier_sdp(media: SocketAddr) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        ip = media.ip(),
        port = media.port()
    )
}

/// A Teams -> PSTN INVITE as Microsoft sends it (to a tenant FQDN, From a tenant number).
fn teams_invite(lab: &Lab, transport: &str, local: SocketAddr, call_id: &str) -> String {
    let sdp = teams_sdp();
    format!(
        "INVITE sip:+4969555000@acme.{BASE}:{port};user=phone SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{ACME_CALLER}@sip.pstnhub.microsoft.com;user=phone>;tag=ms-{call_id}\r\n\
         To: <sip:+4969555000@acme.{BASE};user=phone>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:sip-du-a-eu.pstnhub.microsoft.com:5061;transport=tls>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {len}\r\n\r\n{sdp}",
        port = lab.tls,
        len = sdp.len()
    )
}

fn options(target: SocketAddr, transport: &str, local: SocketAddr, id: &str) -> String {
    format!(
        "OPTIONS sip:{target} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch=z9hG4bK-{id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{local}>;tag={id}\r\n\
         To: <sip:{target}>\r\n\
         Call-ID: {id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The SBC in secure mode: Microsoft is reached and recognised over TLS only (no lab
/// setting); the carrier trunk's address is a socket the test watches.
fn secure_lab(media_base: u16, sbc_extra: &str) -> Lab {
    let mut spec = LabSpec::new(media_base);
    // Nothing listens there: pings fail, which is all this lab needs of Microsoft.
    spec.proxies = vec![format!(
        r#"{{ address = "{TEAMS_IP}:{}", tls_name = "sip.pstnhub.microsoft.com" }}"#,
        free_tcp_port(TEAMS_IP)
    )];
    spec.sbc_extra = sbc_extra.to_string();
    spec.carrier_extra = SECOND_TRUNK.to_string();
    Lab::start(spec)
}

fn dropped(lab: &Lab, transport: &str, stage: &str) -> f64 {
    lab.metric(
        "sip_unknown_source_dropped_total",
        &[("transport", transport), ("stage", stage)],
    )
}

/// Rows 4, 7, 11: Microsoft is Microsoft only over mutual TLS, with a certificate chaining to
/// our roots and naming Microsoft, from Microsoft's ranges. A forged UDP INVITE (toll fraud
/// with one datagram) and a plain-TCP one from the same range reach no trunk and get no
/// answer; TLS with another CA's certificate fails the handshake; TLS with our CA's but
/// another name is closed unread. The genuine path still places the call.
#[test]
fn row4_row7_row11_forged_microsoft_over_udp_tcp_or_wrong_certificate_reaches_no_trunk() {
    let lab = secure_lab(44500, "");
    let certs = lab.path().join("certs");
    let carrier = UdpSocket::bind((CARRIER_IP, lab.carrier_port)).unwrap();
    carrier
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();

    // One datagram from Microsoft's range, a premium-rate number in the Request-URI.
    let forger = udp_from(TEAMS_IP);
    let local = forger.local_addr().unwrap();
    forger
        .send_to(
            teams_invite(&lab, "UDP", local, "fraud-udp").as_bytes(),
            lab.udp_addr(),
        )
        .unwrap();
    lab.wait_for("the forged datagram to be dropped", WAIT, |lab| {
        dropped(lab, "udp", "datagram") >= 1.0
    });
    assert!(silent(&forger), "a forged datagram gets no answer");

    // Plain TCP from Microsoft's range: refused at accept, nothing read, nothing answered.
    let mut tcp = tcp_from(TEAMS_IP, lab.tcp_addr()).unwrap();
    let local = tcp.local_addr().unwrap();
    let _ = std::io::Write::write_all(
        &mut tcp,
        teams_invite(&lab, "TCP", local, "fraud-tcp").as_bytes(),
    );
    lab.wait_for("the plain TCP connection to be refused", WAIT, |lab| {
        dropped(lab, "tcp", "accept") >= 1.0
    });
    let mut byte = [0u8; 1];
    assert!(
        matches!(std::io::Read::read(&mut tcp, &mut byte), Ok(0) | Err(_)),
        "no byte back on plain TCP"
    );

    // TLS with a certificate from a CA we do not trust: the handshake fails.
    let foreign = lab.path().join("foreign-certs");
    teams_sbc::devcerts::generate(&foreign, BASE).unwrap();
    let refused = TlsPeer::connect(
        TEAMS_IP,
        lab.tls_addr(),
        &foreign.join("teams.pem"),
        &foreign.join("teams.key"),
        &certs.join("ca.pem"),
        BASE,
    )
    .and_then(|mut peer| {
        // TLS 1.3 reports a refused client certificate only on the first read.
        let local = SocketAddr::from((TEAMS_IP, 5061));
        peer.send(&teams_invite(&lab, "TLS", local, "fraud-ca"))
            .map_err(|e| e.to_string())?;
        peer.recv(Duration::from_secs(2))
    });
    assert!(refused.is_err(), "untrusted CA accepted: {refused:?}");

    // TLS with our own CA's certificate, but a name that is not Microsoft's.
    let mut impostor = TlsPeer::connect(
        TEAMS_IP,
        lab.tls_addr(),
        &certs.join("sbc.pem"),
        &certs.join("sbc.key"),
        &certs.join("ca.pem"),
        BASE,
    )
    .expect("the chain itself is valid");
    let _ = impostor.send(&teams_invite(
        &lab,
        "TLS",
        SocketAddr::from((TEAMS_IP, 5061)),
        "fraud-san",
    ));
    lab.wait_for("the impostor to be refused", WAIT, |lab| {
        dropped(lab, "tls", "certificate") >= 1.0
    });
    assert!(
        impostor.recv(Duration::from_secs(1)).is_err(),
        "an impostor hears nothing"
    );

    // The genuine Microsoft: mutual TLS, its name, its range.
    let mut microsoft = TlsPeer::connect(
        TEAMS_IP,
        lab.tls_addr(),
        &certs.join("teams.pem"),
        &certs.join("teams.key"),
        &certs.join("ca.pem"),
        BASE,
    )
    .expect("Microsoft's handshake");
    microsoft
        .send(&teams_invite(
            &lab,
            "TLS",
            SocketAddr::from((TEAMS_IP, 5061)),
            "genuine",
        ))
        .unwrap();
    let trying = microsoft.recv(WAIT).expect("an answer to Microsoft");
    assert!(trying.starts_with("SIP/2.0 100 "), "{trying}");
    let invites = received(&carrier, WAIT, |m| {
        m.iter().any(|i| i.starts_with("INVITE "))
    });
    let invites: Vec<_> = invites
        .iter()
        .filter(|m| m.starts_with("INVITE "))
        .collect();
    assert_eq!(invites.len(), 1, "only the genuine call reaches the trunk");
    assert!(invites[0].contains("+4969555000"), "{}", invites[0]);
    assert_eq!(
        lab.metric("calls_attempted_total", &[("direction", "outbound")]),
        1.0
    );
}

/// Row 11: a source outside every ACL learns nothing: no datagram back on UDP, and TCP and
/// TLS connections are closed before a byte is read or written.
#[test]
fn row11_a_stranger_gets_no_byte_back_on_udp_tcp_or_tls() {
    let lab = secure_lab(44700, "");
    let stranger = udp_from(STRANGER_IP);
    let local = stranger.local_addr().unwrap();
    for (i, request) in [
        options(lab.udp_addr(), "UDP", local, "scan-1"),
        "INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.66:5060\r\n\r\n".into(),
        "garbage\r\n\r\n".into(),
    ]
    .iter()
    .enumerate()
    {
        stranger
            .send_to(request.as_bytes(), lab.udp_addr())
            .unwrap();
        lab.wait_for("the stranger's datagram to be dropped", WAIT, |lab| {
            dropped(lab, "udp", "datagram") >= (i + 1) as f64
        });
    }
    assert!(silent(&stranger), "no byte back on UDP");
    for (transport, addr) in [("tcp", lab.tcp_addr()), ("tls", lab.tls_addr())] {
        let mut tcp = tcp_from(STRANGER_IP, addr).unwrap();
        let local = tcp.local_addr().unwrap();
        let _ =
            std::io::Write::write_all(&mut tcp, options(addr, "TCP", local, "scan-2").as_bytes());
        lab.wait_for("the stranger's connection to be refused", WAIT, |lab| {
            dropped(lab, transport, "accept") >= 1.0
        });
        let mut buf = [0u8; 64];
        assert!(
            matches!(std::io::Read::read(&mut tcp, &mut buf), Ok(0) | Err(_)),
            "no byte back on {transport}"
        );
    }
}

/// Scanners (svmap and friends) fingerprint the product from Server / User-Agent: a carrier
/// hears no product or version unless the operator configured a string; Microsoft gets
/// X-MS-SBC with the version (row 59) and nothing else.
#[test]
fn row59_no_version_reaches_a_carrier_unless_configured() {
    let version = env!("CARGO_PKG_VERSION");
    let lab = secure_lab(44800, "");
    let carrier = udp_from(CARRIER_IP);
    let local = carrier.local_addr().unwrap();
    carrier
        .send_to(
            options(lab.udp_addr(), "UDP", local, "svmap-1").as_bytes(),
            lab.udp_addr(),
        )
        .unwrap();
    let answers = received(&carrier, WAIT, |m| !m.is_empty());
    let answer = answers.first().expect("a trunk's OPTIONS is answered");
    assert!(answer.starts_with("SIP/2.0 200 "), "{answer}");
    for name in ["Server", "User-Agent", "X-MS-SBC"] {
        assert_eq!(header(answer, name), None, "{name} in {answer}");
    }
    assert!(!answer.contains(version), "{answer}");
    // An INVITE the SBC refuses itself (no such number) says no more.
    let invite = format!(
        "INVITE sip:+4999000000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-svmap-2\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{PSTN_CALLER}@{local}>;tag=s2\r\nTo: <sip:+4999000000@127.0.0.1>\r\n\
         Call-ID: svmap-2\r\nCSeq: 1 INVITE\r\nContact: <sip:{PSTN_CALLER}@{local}>\r\nContent-Length: 0\r\n\r\n"
    );
    carrier.send_to(invite.as_bytes(), lab.udp_addr()).unwrap();
    let answers = received(&carrier, WAIT, |m| {
        m.iter().any(|a| a.starts_with("SIP/2.0 404"))
    });
    let refusal = answers
        .iter()
        .find(|a| a.starts_with("SIP/2.0 404"))
        .expect("404 for an unknown number");
    assert!(!refusal.contains(version), "{refusal}");
    assert_eq!(header(refusal, "Server"), None, "{refusal}");

    // Microsoft's OPTIONS over mutual TLS: X-MS-SBC with the version, no Server header.
    let certs = lab.path().join("certs");
    let mut microsoft = TlsPeer::connect(
        TEAMS_IP,
        lab.tls_addr(),
        &certs.join("teams.pem"),
        &certs.join("teams.key"),
        &certs.join("ca.pem"),
        BASE,
    )
    .unwrap();
    let target = SocketAddr::from((SBC_IP, lab.tls));
    microsoft
        .send(&options(
            target,
            "TLS",
            SocketAddr::from((TEAMS_IP, 5061)),
            "ms-1",
        ))
        .unwrap();
    let answer = microsoft.recv(WAIT).unwrap();
    assert!(answer.starts_with("SIP/2.0 200 "), "{answer}");
    assert_eq!(
        header(&answer, "X-MS-SBC"),
        Some(format!("TestVendor/TestModel/{version}").as_str())
    );
    assert_eq!(header(&answer, "Server"), None, "{answer}");
    drop(lab);

    // With a configured string, carriers hear that string and only it.
    let lab = secure_lab(44900, r#"carrier_user_agent = "Example Carrier SBC""#);
    carrier
        .send_to(
            options(lab.udp_addr(), "UDP", local, "svmap-3").as_bytes(),
            lab.udp_addr(),
        )
        .unwrap();
    let answers = received(&carrier, WAIT, |m| !m.is_empty());
    let answer = answers.first().expect("answered");
    assert_eq!(header(answer, "Server"), Some("Example Carrier SBC"));
    assert!(!answer.contains(version), "{answer}");
}

/// A carrier-side dialog driven by the test itself (so it knows the Call-ID and tags an
/// attacker on the path of the UDP leg would see).
struct CarrierDialog {
    sip: UdpSocket,
    media: UdpSocket,
    call_id: String,
    to_tag: String,
    sbc_media: SocketAddr,
    cseq: u32,
}

impl CarrierDialog {
    fn request(
        &self,
        method: &str,
        cseq: u32,
        branch: &str,
        (from_tag, to_tag): (&str, &str),
        from: SocketAddr,
        body: &str,
    ) -> String {
        let content_type = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".to_string()
        };
        format!(
            "{method} sip:{ACME_DID}@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {from};branch=z9hG4bK-{branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{PSTN_CALLER}@127.0.0.2>;tag={from_tag}\r\n\
             To: <sip:{ACME_DID}@127.0.0.1>;tag={to_tag}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:{PSTN_CALLER}@{from}>\r\n\
             {content_type}Content-Length: {len}\r\n\r\n{body}",
            call_id = self.call_id,
            len = body.len()
        )
    }

    fn status_of(socket: &UdpSocket, call_id: &str, method: &str) -> Option<String> {
        let answers = received(socket, WAIT, |m| {
            m.iter().any(|a| is_final(a, call_id, method))
        });
        answers.into_iter().find(|a| is_final(a, call_id, method))
    }
}

fn is_final(message: &str, call_id: &str, method: &str) -> bool {
    message.starts_with("SIP/2.0 ")
        && !message.starts_with("SIP/2.0 1")
        && header(message, "Call-ID") == Some(call_id)
        && header(message, "CSeq").is_some_and(|c| c.ends_with(method))
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut packet = vec![0x80, 0x00];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    packet.extend_from_slice(&[0xff; 160]);
    packet
}

/// Media still flows both ways through the SBC: RTP sent to the SBC comes back (echoed by
/// the Teams stand-in as SRTP, decrypted) to the address the carrier signalled.
fn media_flows(dialog: &CarrierDialog, first_seq: u16) -> bool {
    let mut buf = vec![0u8; 2048];
    for i in 0..50u16 {
        let _ = dialog.media.send_to(&rtp(first_seq + i), dialog.sbc_media);
        if let Ok((n, from)) = dialog.media.recv_from(&mut buf) {
            if from == dialog.sbc_media && n >= 12 {
                return true;
            }
        }
    }
    false
}

/// Rows 13, 17, RFC 3261 §12.2.2 / §9.2: a dialog belongs to its peer. The Call-ID and tags
/// of a UDP carrier leg are readable by anyone on its path; BYE and a redirecting re-INVITE
/// from another admitted trunk, a BYE or re-INVITE with wrong tags, and a CANCEL with a wrong
/// branch all get 481, and the call, with its media, goes on until the real BYE.
#[test]
fn row13_stolen_call_id_bye_reinvite_or_cancel_gets_481_and_the_call_goes_on() {
    let mut spec = LabSpec::new(45000);
    spec.carrier_extra = SECOND_TRUNK.to_string();
    let (lab, proxy_port) = lab_with_one_proxy_and(spec);
    let mut teams = teams_uas(
        lab.path(),
        "teams_uas.xml",
        proxy_port,
        &[
            ("CALLED", ACME_DID.trim_start_matches('+')),
            ("TENANT_RE", &regex_escape(&format!("acme.{BASE}"))),
        ],
    );
    let sip = UdpSocket::bind((CARRIER_IP, 0)).unwrap();
    sip.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let media = udp_from(CARRIER_IP);
    let local = sip.local_addr().unwrap();
    let mut dialog = CarrierDialog {
        media,
        call_id: "stolen-1".into(),
        to_tag: String::new(),
        sbc_media: SocketAddr::from((SBC_IP, 9)),
        cseq: 1,
        sip,
    };
    let offer = carrier_sdp(dialog.media.local_addr().unwrap());
    let invite = dialog
        .request("INVITE", 1, "inv1", ("carrier-1", ""), local, &offer)
        .replace(";tag=\r\n", "\r\n");
    dialog
        .sip
        .send_to(invite.as_bytes(), lab.udp_addr())
        .unwrap();
    let ok = CarrierDialog::status_of(&dialog.sip, "stolen-1", "INVITE").expect("a final answer");
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    dialog.to_tag = tag_of(header(&ok, "To").unwrap()).unwrap();
    let body = &ok[ok.find("\r\n\r\n").unwrap() + 4..];
    let ip = body
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .unwrap()
        .trim();
    let port = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|m| m.split(' ').next())
        .unwrap();
    dialog.sbc_media = format!("{ip}:{port}").parse().unwrap();
    let ack = dialog.request("ACK", 1, "ack1", ("carrier-1", &dialog.to_tag), local, "");
    dialog.sip.send_to(ack.as_bytes(), lab.udp_addr()).unwrap();
    assert!(media_flows(&dialog, 1), "media flows before the attacks");

    // Another admitted trunk replays the dialog's identifiers: a BYE and a re-INVITE that
    // would point our media (and our requests) at it.
    let intruder = udp_from(INTRUDER_IP);
    let intruder_addr = intruder.local_addr().unwrap();
    let to_tag = dialog.to_tag.clone();
    let bye = dialog.request(
        "BYE",
        2,
        "steal-bye",
        ("carrier-1", &to_tag),
        intruder_addr,
        "",
    );
    intruder.send_to(bye.as_bytes(), lab.udp_addr()).unwrap();
    let answer = CarrierDialog::status_of(&intruder, "stolen-1", "BYE").expect("answered");
    assert!(answer.starts_with("SIP/2.0 481 "), "{answer}");
    let redirect = carrier_sdp(intruder_addr);
    let reinvite = dialog.request(
        "INVITE",
        3,
        "steal-inv",
        ("carrier-1", &to_tag),
        intruder_addr,
        &redirect,
    );
    intruder
        .send_to(reinvite.as_bytes(), lab.udp_addr())
        .unwrap();
    let answer = CarrierDialog::status_of(&intruder, "stolen-1", "INVITE").expect("answered");
    assert!(answer.starts_with("SIP/2.0 481 "), "{answer}");
    let ack = dialog
        .request(
            "ACK",
            3,
            "steal-inv",
            ("carrier-1", &to_tag),
            intruder_addr,
            "",
        )
        .replace("Contact: ", "X-Contact: ");
    intruder.send_to(ack.as_bytes(), lab.udp_addr()).unwrap();

    // From the right address but with the wrong tags, or a CANCEL of no INVITE of ours.
    let bye = dialog.request(
        "BYE",
        4,
        "bad-tag-bye",
        ("carrier-1", "not-ours"),
        local,
        "",
    );
    dialog.sip.send_to(bye.as_bytes(), lab.udp_addr()).unwrap();
    let answer = CarrierDialog::status_of(&dialog.sip, "stolen-1", "BYE").expect("answered");
    assert!(answer.starts_with("SIP/2.0 481 "), "{answer}");
    let reinvite = dialog.request(
        "INVITE",
        5,
        "bad-tag-inv",
        ("someone", &to_tag),
        local,
        &offer,
    );
    dialog
        .sip
        .send_to(reinvite.as_bytes(), lab.udp_addr())
        .unwrap();
    let answer = CarrierDialog::status_of(&dialog.sip, "stolen-1", "INVITE").expect("answered");
    assert!(answer.starts_with("SIP/2.0 481 "), "{answer}");
    let cancel = dialog
        .request("CANCEL", 1, "not-the-invite", ("carrier-1", ""), local, "")
        .replace(";tag=\r\n", "\r\n");
    dialog
        .sip
        .send_to(cancel.as_bytes(), lab.udp_addr())
        .unwrap();
    let answer = CarrierDialog::status_of(&dialog.sip, "stolen-1", "CANCEL").expect("answered");
    assert!(answer.starts_with("SIP/2.0 481 "), "{answer}");

    // The call goes on: media still comes back to the carrier's own address, never to the
    // intruder, and the real BYE is the one that ends it.
    assert!(media_flows(&dialog, 100), "media flows after the attacks");
    let redirected: Vec<String> = received(&intruder, Duration::from_millis(500), |_| false)
        .into_iter()
        .filter(|m| !m.starts_with("SIP/2.0 481 "))
        .collect();
    assert!(
        redirected.is_empty(),
        "sent to the intruder: {redirected:?}"
    );
    dialog.cseq = 6;
    let bye = dialog.request("BYE", dialog.cseq, "bye", ("carrier-1", &to_tag), local, "");
    dialog.sip.send_to(bye.as_bytes(), lab.udp_addr()).unwrap();
    let answer = CarrierDialog::status_of(&dialog.sip, "stolen-1", "BYE").expect("answered");
    assert!(
        answer.starts_with("SIP/2.0 200 "),
        "the call was still up: {answer}"
    );
    teams.expect_success(LONG);
    lab.wait_idle();
}

/// One source flooding INVITEs (and OPTIONS) hits its transaction quota and gets 503, while
/// another trunk's call completes end to end.
#[test]
fn a_flooding_source_hits_its_quota_while_another_trunks_call_completes() {
    let mut spec = LabSpec::new(45200);
    spec.sip_extra = "max_transactions_per_source = 20".into();
    spec.carrier_extra = SECOND_TRUNK.to_string();
    // The second trunk serves acme too, so it can place the call that must get through.
    spec.tenants[0].extra = r#"failover_carrier_trunks = ["other"]"#.into();
    let (lab, proxy_port) = lab_with_one_proxy_and(spec);
    let mut teams = teams_uas(
        lab.path(),
        "teams_uas.xml",
        proxy_port,
        &[
            ("CALLED", ACME_DID.trim_start_matches('+')),
            ("TENANT_RE", &regex_escape(&format!("acme.{BASE}"))),
        ],
    );

    // The flood: INVITEs to a number nobody owns (each answered 404 and kept as a
    // transaction for 64*T1) and OPTIONS (answered without keeping anything).
    let flooder = udp_from(CARRIER_IP);
    let local = flooder.local_addr().unwrap();
    for i in 0..100 {
        let invite = format!(
            "INVITE sip:+4999000{i:03}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-flood-{i}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{PSTN_CALLER}@{local}>;tag=f{i}\r\nTo: <sip:+4999000{i:03}@127.0.0.1>\r\n\
             Call-ID: flood-{i}\r\nCSeq: 1 INVITE\r\nContact: <sip:{PSTN_CALLER}@{local}>\r\nContent-Length: 0\r\n\r\n"
        );
        flooder.send_to(invite.as_bytes(), lab.udp_addr()).unwrap();
        flooder
            .send_to(
                options(lab.udp_addr(), "UDP", local, &format!("flood-o{i}")).as_bytes(),
                lab.udp_addr(),
            )
            .unwrap();
    }
    lab.wait_for("the flooder to hit its quota", WAIT, |lab| {
        lab.metric("transactions_quota_rejected_total", &[("payer", "source")]) >= 1.0
    });
    let answers = received(&flooder, WAIT, |m| {
        m.iter().filter(|a| a.starts_with("SIP/2.0 503")).count() >= 50
    });
    let refused = answers
        .iter()
        .filter(|a| a.starts_with("SIP/2.0 503"))
        .count();
    let options_ok = answers
        .iter()
        .filter(|a| a.starts_with("SIP/2.0 200") && a.contains("OPTIONS"))
        .count();
    assert!(
        refused >= 50,
        "{refused} of 100 INVITEs refused over the quota of 20"
    );
    assert!(options_ok >= 1, "OPTIONS are still answered (statelessly)");

    // Meanwhile another trunk's call goes through.
    let mut caller = carrier_uac_from(
        &lab,
        INTRUDER_IP,
        "carrier_uac.xml",
        ACME_DID,
        &[("CALLER", PSTN_CALLER), ("HOLD_MS", "500")],
    );
    caller.expect_success(LONG);
    teams.expect_success(LONG);
    lab.wait_idle();
}
