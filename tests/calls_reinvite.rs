//! End-to-end re-INVITEs through the SBC (in-process) with real SIPp peers (rows 39-41): the
//! carrier over UDP (127.0.0.2) calls a Teams DID; the Microsoft proxy stand-in (SIPp over
//! TCP on 127.0.0.3) answers. The carrier holds (a=sendonly) and resumes; each is relayed to
//! the Teams side, which checks with `ereg check_it` that hold arrives as a=inactive (never
//! sendonly/recvonly, row 39), still SRTP, never 0.0.0.0 (row 40). Then the Teams side re-keys
//! (a new SDES key); the SBC answers it itself with a new key of its own, and the carrier
//! dialog sees nothing of it; then Teams holds (a=inactive), which reaches the carrier as a
//! re-INVITE with a=inactive on the SBC's same carrier-side address. The test then reads both
//! SIPp message logs (-trace_msg) and checks that every SDP the SBC sent to each peer carries
//! the same c= address and m= port (row 41). Two Teams -> PSTN calls check the media plane
//! from the test's own socket: a re-key (webrtc-srtp: fresh contexts on both sides after the
//! sequence wrap) and an ICE restart on a bypass trunk (STUN checks with the old and the new
//! credentials, row 53). Every check is a SIPp exit code, a message or packet assertion or an
//! SBC metric; every wait is bounded.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

const ACME_DID: &str = "+4930123450";
const PSTN_CALLER: &str = "+4969111222";
const PSTN_CALLEE: &str = "+4969555000";
const LONG: Duration = Duration::from_secs(45);
/// Teams' new SDES key (30 bytes of key and salt, base64) in its re-key re-INVITE.
const NEW_TEAMS_KEY: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIz";

/// A scenario from `tests/sipp/reinvite` with its `@NAME@` placeholders replaced.
fn reinvite_scenario(dir: &Path, file: &str, values: &[(&str, &str)]) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp/reinvite")
        .join(file);
    let mut text = std::fs::read_to_string(&source).unwrap();
    for (name, value) in values {
        text = text.replace(&format!("@{name}@"), value);
    }
    let unfilled = [
        "@CALLE",
        "@TENANT",
        "@QUIET_MS@",
        "@NEW_KEY@",
        "@MEDIA_",
        "@CRYPTO",
        "@REKEY_AFTER_MS@",
        "@HOLD_MS@",
        "@UFRAG",
        "@PWD",
        "@HOLD_AFTER_MS@",
    ];
    assert!(
        !unfilled.iter().any(|p| text.contains(p)),
        "unfilled placeholder in {file}"
    );
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

/// (first line, c= line, m= port, crypto key if any) of each received message with SDP.
fn sdp_summaries(messages: &[String]) -> Vec<(String, String, String, Option<String>)> {
    messages
        .iter()
        .filter_map(|m| {
            let c = sdp_line(m, "c=")?.to_owned();
            let port = sdp_line(m, "m=audio ")?.split(' ').nth(1)?.to_owned();
            let key = sdp_line(m, "a=crypto:").and_then(|l| {
                let start = l.find("inline:")? + "inline:".len();
                l[start..].split('|').next().map(str::to_owned)
            });
            Some((m.lines().next()?.trim().to_owned(), c, port, key))
        })
        .collect()
}

/// Rows 39, 40, 41: hold and resume from the carrier relayed to Teams (hold as a=inactive,
/// no 0.0.0.0), a Teams re-key answered by the SBC with a fresh key and never shown to the
/// carrier, a Teams hold relayed to the carrier, and one media address and port per leg in
/// every SDP the SBC sent.
#[test]
fn row39_40_41_hold_resume_rekey_and_teams_hold_keep_our_media_address() {
    let proxy_port = free_tcp_port(TEAMS_IP);
    let mut spec = LabSpec::new(57600);
    spec.proxies = vec![LabSpec::tcp_proxy(&TEAMS_IP.to_string(), proxy_port)];
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[format!("{TEAMS_IP}:{proxy_port}")]);

    let teams_dir = lab.path().join("teams-reinvite");
    let teams_path = reinvite_scenario(
        &teams_dir,
        "teams_uas.xml",
        &[
            ("CALLED", ACME_DID.trim_start_matches('+')),
            ("TENANT_RE", &regex_escape(&format!("acme.{BASE}"))),
            ("NEW_KEY", NEW_TEAMS_KEY),
        ],
    );
    let teams_media = free_port_pair(TEAMS_IP);
    let mut teams = sipp_traced(
        "Teams SIPp UAS (re-INVITE)",
        &teams_dir,
        &teams_path,
        &[
            "-t".into(),
            "t1".into(),
            "-i".into(),
            TEAMS_IP.to_string(),
            "-p".into(),
            proxy_port.to_string(),
            "-mi".into(),
            TEAMS_IP.to_string(),
            "-mp".into(),
            teams_media.to_string(),
            "-rtp_echo".into(),
        ],
    );
    wait_listening_tcp((TEAMS_IP, proxy_port).into());

    let carrier_port = free_udp_port(CARRIER_IP);
    let carrier_dir = lab.path().join(format!("carrier-{carrier_port}"));
    let carrier_path = reinvite_scenario(
        &carrier_dir,
        "carrier_uac.xml",
        &[("CALLER", PSTN_CALLER), ("QUIET_MS", "10000")],
    );
    write_pcmu_pcap(&carrier_dir.join("pcmu.pcap"), PCAP_PACKETS);
    let carrier_media = free_port_pair(CARRIER_IP);
    let mut carrier = sipp_traced(
        "carrier SIPp UAC (hold/resume)",
        &carrier_dir,
        &carrier_path,
        &[
            lab.udp_addr().to_string(),
            "-s".into(),
            ACME_DID.into(),
            "-t".into(),
            "u1".into(),
            "-i".into(),
            CARRIER_IP.to_string(),
            "-p".into(),
            carrier_port.to_string(),
            "-mi".into(),
            CARRIER_IP.to_string(),
            "-mp".into(),
            carrier_media.to_string(),
        ],
    );

    let carrier_status = carrier.wait(LONG);
    let teams_status = teams.wait(LONG);
    assert!(
        carrier_status.is_some_and(|s| s.success()) && teams_status.is_some_and(|s| s.success()),
        "carrier SIPp: {carrier_status:?}, Teams SIPp: {teams_status:?}\ncarrier errors:\n{}\nTeams errors:\n{}",
        carrier.errors(),
        teams.errors()
    );

    // Row 41 towards Teams: the INVITE, the hold and resume re-INVITEs and the 200s to the
    // re-key and to Teams' hold all carry one c= and one m= port. Every offer and the answer
    // to the re-key carry a fresh key of ours; the answer to Teams' hold (same key from
    // Teams) keeps the key of the re-key answer.
    let teams_sdps = sdp_summaries(&received_messages(&teams_dir));
    let firsts: Vec<&str> = teams_sdps.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(teams_sdps.len(), 5, "SDPs received by Teams: {firsts:?}");
    assert!(firsts[..3].iter().all(|l| l.starts_with("INVITE ")));
    assert!(firsts[3..].iter().all(|l| l.starts_with("SIP/2.0 200")));
    for (first, c, port, _) in &teams_sdps {
        assert_eq!(c, &teams_sdps[0].1, "row 41: c= changed in {first}");
        assert_eq!(port, &teams_sdps[0].2, "row 41: m= port changed in {first}");
        assert!(!c.contains("0.0.0.0"), "row 40");
    }
    let keys: Vec<String> = teams_sdps
        .iter()
        .map(|s| s.3.clone().expect("SRTP key in every SDP to Teams"))
        .collect();
    let mut fresh = keys[..4].to_vec();
    fresh.sort();
    fresh.dedup();
    assert_eq!(
        fresh.len(),
        4,
        "INVITE, hold, resume, re-key answer: each a fresh key of ours"
    );
    let rekey_answer = keys[3].clone();
    assert_ne!(rekey_answer, NEW_TEAMS_KEY, "never Teams' own key echoed");
    assert_eq!(
        teams_sdps[4].3.as_ref(),
        Some(&rekey_answer),
        "Teams' hold (same key from Teams) keeps our key"
    );

    // Row 41 towards the carrier: the 200s to the INVITE, the hold and the resume, and the
    // relayed Teams hold; the only request from the SBC on the carrier dialog is that hold
    // (the re-key stayed on the Teams leg).
    let carrier_messages = received_messages(&carrier_dir);
    let carrier_sdps = sdp_summaries(&carrier_messages);
    let firsts: Vec<&str> = carrier_sdps.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        carrier_sdps.len(),
        4,
        "SDPs received by the carrier: {firsts:?}"
    );
    assert!(firsts[..3].iter().all(|l| l.starts_with("SIP/2.0 200")));
    assert!(firsts[3].starts_with("INVITE "));
    for (first, c, port, key) in &carrier_sdps {
        assert_eq!(c, &carrier_sdps[0].1, "row 41: c= changed in {first}");
        assert_eq!(
            port, &carrier_sdps[0].2,
            "row 41: m= port changed in {first}"
        );
        assert!(key.is_none(), "no SRTP towards the carrier");
    }
    let requests: Vec<&String> = carrier_messages
        .iter()
        .filter(|m| !m.starts_with("SIP/2.0"))
        .collect();
    assert!(
        requests.len() == 2
            && requests[0].starts_with("INVITE ")
            && requests[1].starts_with("ACK "),
        "only the relayed Teams hold and the ACK of its 200: {requests:?}"
    );

    assert_eq!(
        lab.metric(
            "calls_answered_total",
            &[("tenant", "acme"), ("direction", "inbound")]
        ),
        1.0
    );
    assert!(lab.metric("media_packets_total", &[("direction", "carrier_to_teams")]) > 0.0);
    lab.wait_idle();
}

/// Row 53 (re-key half) and row 41 with media: a Teams -> PSTN call whose Teams media is
/// this test's socket (webrtc-srtp, an independent SRTP implementation). Before the re-key,
/// RTP under Teams' first key comes back under the SBC's first key. Teams then re-INVITEs with
/// a new key: the SBC answers (same address and port, a new key of its own, the carrier sees
/// nothing) and from then on RTP under Teams' new key, in fresh contexts (rollover counter 0
/// although the first keys had wrapped to 1), comes back under the SBC's new key and never
/// under the old one.
#[test]
fn row41_row53_teams_rekey_media_continues_under_fresh_keys() {
    let proxy_port = free_tcp_port(TEAMS_IP);
    let mut spec = LabSpec::new(57800);
    spec.proxies = vec![LabSpec::tcp_proxy(&TEAMS_IP.to_string(), proxy_port)];
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[format!("{TEAMS_IP}:{proxy_port}")]);

    let carrier_dir = lab.path().join("carrier-uas");
    let carrier_path = scenario(
        &carrier_dir,
        "carrier_uas.xml",
        &[("CALLED", PSTN_CALLEE.trim_start_matches('+'))],
    );
    let carrier_media = free_port_pair(CARRIER_IP);
    let mut carrier = sipp_traced(
        "carrier SIPp UAS (echo)",
        &carrier_dir,
        &carrier_path,
        &[
            "-t".into(),
            "u1".into(),
            "-i".into(),
            CARRIER_IP.to_string(),
            "-p".into(),
            lab.carrier_port.to_string(),
            "-mi".into(),
            CARRIER_IP.to_string(),
            "-mp".into(),
            carrier_media.to_string(),
            "-rtp_echo".into(),
        ],
    );
    wait_bound_udp((CARRIER_IP, lab.carrier_port).into());

    let socket = UdpSocket::bind((TEAMS_IP, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let first_key = new_inline_key();
    let second_key = new_inline_key();
    let acme = format!("acme.{BASE}");
    let teams_port = free_tcp_port(TEAMS_IP);
    let teams_dir = lab.path().join(format!("teams-rekey-{teams_port}"));
    let teams_path = reinvite_scenario(
        &teams_dir,
        "teams_uac_rekey.xml",
        &[
            ("CALLED", PSTN_CALLEE),
            ("CALLER", ACME_DID),
            ("TENANT", &acme),
            ("TENANT_RE", &regex_escape(&acme)),
            ("MEDIA_IP", &TEAMS_IP.to_string()),
            (
                "MEDIA_PORT",
                &socket.local_addr().unwrap().port().to_string(),
            ),
            ("CRYPTO", &first_key),
            ("CRYPTO2", &second_key),
            ("REKEY_AFTER_MS", "4000"),
            ("HOLD_MS", "8000"),
        ],
    );
    let teams_media = free_port_pair(TEAMS_IP);
    let mut teams = sipp_traced(
        "Teams SIPp UAC (re-key)",
        &teams_dir,
        &teams_path,
        &[
            lab.teams_entry().to_string(),
            "-t".into(),
            "t1".into(),
            "-i".into(),
            TEAMS_IP.to_string(),
            "-p".into(),
            teams_port.to_string(),
            "-mi".into(),
            TEAMS_IP.to_string(),
            "-mp".into(),
            teams_media.to_string(),
        ],
    );

    let (sbc_media, sbc_first_key) = wait_logged(&teams_dir, "SBC-MEDIA ");
    assert_ne!(sbc_first_key, first_key, "the SBC announces its own key");
    let mut old_decrypt = srtp_context(&sbc_first_key);
    // Across the sequence number wrap: the rollover counters become 1 under the first keys.
    let wrapping: Vec<u16> = (65526..=65535).chain(0..=9).collect();
    let (before, _) = echo_round(
        &socket,
        sbc_media,
        &wrapping,
        &mut srtp_context(&first_key),
        &mut old_decrypt,
        None,
    );
    assert!(
        before.len() >= 16,
        "before the re-key only {} of 20 came back",
        before.len()
    );

    let (rekey_media, sbc_second_key) = wait_logged(&teams_dir, "SBC-REKEY ");
    assert_eq!(rekey_media, sbc_media, "row 41: same address and port");
    assert_ne!(sbc_second_key, sbc_first_key, "a fresh key of ours");
    assert_ne!(sbc_second_key, second_key);
    // Fresh contexts on our side (rollover counter 0) continue the sequence numbers: the SBC
    // must have restarted its contexts too (RFC 3711 §3.3.1, rtpengine issue #1443).
    let continuing: Vec<u16> = (10..=49).collect();
    let (after, stale) = echo_round(
        &socket,
        sbc_media,
        &continuing,
        &mut srtp_context(&second_key),
        &mut srtp_context(&sbc_second_key),
        Some(&mut old_decrypt),
    );
    assert!(
        after.len() >= 32,
        "after the re-key only {} of 40 came back under the new keys",
        after.len()
    );
    assert_eq!(stale, 0, "nothing may come back under the old key");

    teams.expect_success(LONG);
    carrier.expect_success(LONG);
    let carrier_requests: Vec<String> = received_messages(&carrier_dir)
        .into_iter()
        .filter_map(|m| m.lines().next().map(str::to_owned))
        .filter(|l| l.starts_with("INVITE "))
        .collect();
    assert_eq!(
        carrier_requests.len(),
        1,
        "the re-key never reaches the carrier: {carrier_requests:?}"
    );
    assert_eq!(
        lab.metric(
            "calls_answered_total",
            &[("tenant", "acme"), ("direction", "outbound")]
        ),
        1.0
    );
    lab.wait_idle();
}

/// Keystream reuse, end to end: a Teams -> PSTN call whose Teams media is this test's socket
/// (webrtc-srtp) and whose carrier holds and resumes. Each hold/resume reaches Teams as an
/// offer of the SBC's, and Teams answers both with a new key of its own (it re-keys in an
/// answer). The SBC used to keep its key in those offers and rebuild its sending context
/// with it at rollover counter 0 (keystream reuse after the first keys had wrapped); now
/// each offer carries a fresh key of the SBC's, and after the resume RTP under Teams' new key
/// comes back under the SBC's newest key, never under the first one.
#[test]
fn row43_row53_keystream_reuse_teams_rekey_in_an_answer_gets_a_fresh_key_and_media_continues() {
    let proxy_port = free_tcp_port(TEAMS_IP);
    let mut spec = LabSpec::new(52400);
    spec.proxies = vec![LabSpec::tcp_proxy(&TEAMS_IP.to_string(), proxy_port)];
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[format!("{TEAMS_IP}:{proxy_port}")]);

    let carrier_dir = lab.path().join("carrier-uas-hold");
    let carrier_path = reinvite_scenario(
        &carrier_dir,
        "carrier_uas_hold.xml",
        &[("HOLD_AFTER_MS", "4000")],
    );
    let carrier_media = free_port_pair(CARRIER_IP);
    let mut carrier = sipp_traced(
        "carrier SIPp UAS (hold, resume, echo)",
        &carrier_dir,
        &carrier_path,
        &[
            "-t".into(),
            "u1".into(),
            "-i".into(),
            CARRIER_IP.to_string(),
            "-p".into(),
            lab.carrier_port.to_string(),
            "-mi".into(),
            CARRIER_IP.to_string(),
            "-mp".into(),
            carrier_media.to_string(),
            "-rtp_echo".into(),
        ],
    );
    wait_bound_udp((CARRIER_IP, lab.carrier_port).into());

    let socket = UdpSocket::bind((TEAMS_IP, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let first_key = new_inline_key();
    let answer_key = new_inline_key();
    let acme = format!("acme.{BASE}");
    let teams_port = free_tcp_port(TEAMS_IP);
    let teams_dir = lab.path().join(format!("teams-rekey-answer-{teams_port}"));
    let teams_path = reinvite_scenario(
        &teams_dir,
        "teams_uac_rekey_answer.xml",
        &[
            ("CALLED", PSTN_CALLEE),
            ("CALLER", ACME_DID),
            ("TENANT", &acme),
            ("TENANT_RE", &regex_escape(&acme)),
            ("MEDIA_IP", &TEAMS_IP.to_string()),
            (
                "MEDIA_PORT",
                &socket.local_addr().unwrap().port().to_string(),
            ),
            ("CRYPTO", &first_key),
            ("CRYPTO2", &answer_key),
            ("HOLD_MS", "8000"),
        ],
    );
    let teams_media = free_port_pair(TEAMS_IP);
    let mut teams = sipp_traced(
        "Teams SIPp UAC (re-key in answers)",
        &teams_dir,
        &teams_path,
        &[
            lab.teams_entry().to_string(),
            "-t".into(),
            "t1".into(),
            "-i".into(),
            TEAMS_IP.to_string(),
            "-p".into(),
            teams_port.to_string(),
            "-mi".into(),
            TEAMS_IP.to_string(),
            "-mp".into(),
            teams_media.to_string(),
        ],
    );

    let (sbc_media, sbc_first_key) = wait_logged(&teams_dir, "SBC-MEDIA ");
    let mut old_decrypt = srtp_context(&sbc_first_key);
    // Across the sequence number wrap: the rollover counters become 1 under the first keys.
    let wrapping: Vec<u16> = (65526..=65535).chain(0..=9).collect();
    let (before, _) = echo_round(
        &socket,
        sbc_media,
        &wrapping,
        &mut srtp_context(&first_key),
        &mut old_decrypt,
        None,
    );
    assert!(
        before.len() >= 16,
        "before the hold only {} of 20 came back",
        before.len()
    );

    let (hold_media, hold_key) = wait_logged(&teams_dir, "SBC-HOLD ");
    let (resume_media, resume_key) = wait_logged(&teams_dir, "SBC-RESUME ");
    assert_eq!((hold_media, resume_media), (sbc_media, sbc_media), "row 41");
    assert_ne!(
        hold_key, sbc_first_key,
        "the hold offer: a fresh key of ours"
    );
    assert_ne!(resume_key, hold_key, "the resume offer: a fresh key again");
    assert!(![&first_key, &answer_key].contains(&&resume_key));
    // Teams' answer key and the SBC's newest key, both in fresh contexts (rollover counter
    // 0) while the sequence numbers go on.
    let continuing: Vec<u16> = (10..=49).collect();
    let (after, stale) = echo_round(
        &socket,
        sbc_media,
        &continuing,
        &mut srtp_context(&answer_key),
        &mut srtp_context(&resume_key),
        Some(&mut old_decrypt),
    );
    assert!(
        after.len() >= 32,
        "after Teams re-keyed in its answers only {} of 40 came back",
        after.len()
    );
    assert_eq!(stale, 0, "nothing may come back under the first key");

    teams.expect_success(LONG);
    carrier.expect_success(LONG);
    lab.wait_idle();
}

/// What the Teams stand-in logged from an ICE-lite answer of the SBC (`SBC-ICE` lines).
#[derive(Debug, PartialEq, Eq)]
struct LoggedIce {
    media: SocketAddr,
    ufrag: String,
    pwd: String,
    candidate: SocketAddr,
}

fn wait_logged_ice(dir: &Path, tag: &str) -> LoggedIce {
    let deadline = Instant::now() + LONG;
    loop {
        let found = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with("_logs.log"))
            .find_map(|e| {
                let text = std::fs::read_to_string(e.path()).ok()?;
                let line = text.lines().find(|l| l.contains(tag))?.to_owned();
                let f: Vec<&str> = line.split(tag).nth(1)?.split_whitespace().collect();
                Some(LoggedIce {
                    media: format!("{}:{}", f.first()?, f.get(1)?).parse().ok()?,
                    ufrag: f.get(2)?.to_string(),
                    pwd: f.get(3)?.to_string(),
                    candidate: format!("{}:{}", f.get(4)?, f.get(5)?).parse().ok()?,
                })
            });
        if let Some(found) = found {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "the Teams stand-in never logged {tag}; SIPp errors:\n{}",
            sipp_errors(dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

mod stun_check {
    //! Connectivity checks as a full, controlling Teams agent sends them (`stun` crate).

    use std::net::{SocketAddr, UdpSocket};
    use std::time::{Duration, Instant};

    use stun::attributes::{ATTR_ICE_CONTROLLING, ATTR_PRIORITY, ATTR_USERNAME};
    use stun::fingerprint::FINGERPRINT;
    use stun::integrity::MessageIntegrity;
    use stun::message::{Message, Setter, BINDING_REQUEST, BINDING_SUCCESS};
    use stun::textattrs::TextAttribute;

    pub fn request(username: &str, pwd: &str) -> Message {
        let mut m = Message::new();
        m.typ = BINDING_REQUEST;
        m.new_transaction_id().unwrap();
        m.write_header();
        TextAttribute::new(ATTR_USERNAME, username.to_owned())
            .add_to(&mut m)
            .unwrap();
        m.add(ATTR_PRIORITY, &2_130_706_431u32.to_be_bytes());
        m.add(ATTR_ICE_CONTROLLING, &[7; 8]);
        MessageIntegrity::new_short_term_integrity(pwd.to_owned())
            .add_to(&mut m)
            .unwrap();
        FINGERPRINT.add_to(&mut m).unwrap();
        m
    }

    /// The next STUN message on `socket` within `limit` (RTP and other datagrams skipped).
    pub fn next_response(socket: &UdpSocket, limit: Duration) -> Option<Message> {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            let Ok((n, _)) = socket.recv_from(&mut buf) else {
                continue;
            };
            // STUN: first two bits 0 and the magic cookie.
            if n >= 20 && buf[0] >> 6 == 0 && buf[4..8] == [0x21, 0x12, 0xa4, 0x42] {
                let mut m = Message::new();
                if m.unmarshal_binary(&buf[..n]).is_ok() {
                    return Some(m);
                }
            }
        }
        None
    }

    /// Sends `request` to `to` and asserts a success response to it, signed with `pwd`.
    pub fn answered(socket: &UdpSocket, to: SocketAddr, request: &Message, pwd: &str) {
        socket.send_to(&request.raw, to).unwrap();
        let mut response =
            next_response(socket, Duration::from_secs(3)).expect("an answer to the check");
        assert_eq!(response.transaction_id, request.transaction_id);
        assert_eq!(response.typ, BINDING_SUCCESS);
        MessageIntegrity::new_short_term_integrity(pwd.to_owned())
            .check(&mut response)
            .expect("signed with the SBC's current ice-pwd");
    }
}

/// Row 53 (ICE restart) on a media-bypass trunk: a Teams -> PSTN call whose Teams media is
/// this test's socket. Checks with the SBC's first ICE-lite credentials are answered; Teams'
/// re-INVITE with new ice-ufrag/ice-pwd gets an answer with new credentials of the SBC and the
/// same address, port and host candidate (row 41); checks with the new credentials are
/// answered, signed with the new password, and checks with the old ones no longer are.
#[test]
fn row53_ice_restart_on_a_bypass_trunk_changes_our_credentials_not_our_candidate() {
    let proxy_port = free_tcp_port(TEAMS_IP);
    let mut spec = LabSpec::new(58000);
    spec.proxies = vec![LabSpec::tcp_proxy(&TEAMS_IP.to_string(), proxy_port)];
    spec.teams_extra = "media_bypass = true".into();
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[format!("{TEAMS_IP}:{proxy_port}")]);

    let carrier_dir = lab.path().join("carrier-uas");
    let carrier_path = scenario(
        &carrier_dir,
        "carrier_uas.xml",
        &[("CALLED", PSTN_CALLEE.trim_start_matches('+'))],
    );
    let carrier_media = free_port_pair(CARRIER_IP);
    let mut carrier = sipp_traced(
        "carrier SIPp UAS",
        &carrier_dir,
        &carrier_path,
        &[
            "-t".into(),
            "u1".into(),
            "-i".into(),
            CARRIER_IP.to_string(),
            "-p".into(),
            lab.carrier_port.to_string(),
            "-mi".into(),
            CARRIER_IP.to_string(),
            "-mp".into(),
            carrier_media.to_string(),
        ],
    );
    wait_bound_udp((CARRIER_IP, lab.carrier_port).into());

    let socket = UdpSocket::bind((TEAMS_IP, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let (teams_ufrag, teams_pwd) = ("TeamsUf1", "teamsIcePassword1234567890");
    let (teams_ufrag2, teams_pwd2) = ("TeamsUf2", "teamsIcePasswordRestarted0");
    let acme = format!("acme.{BASE}");
    let teams_port = free_tcp_port(TEAMS_IP);
    let teams_dir = lab.path().join(format!("teams-ice-{teams_port}"));
    let teams_path = reinvite_scenario(
        &teams_dir,
        "teams_uac_ice_restart.xml",
        &[
            ("CALLED", PSTN_CALLEE),
            ("CALLER", ACME_DID),
            ("TENANT", &acme),
            ("TENANT_RE", &regex_escape(&acme)),
            ("MEDIA_IP", &TEAMS_IP.to_string()),
            (
                "MEDIA_PORT",
                &socket.local_addr().unwrap().port().to_string(),
            ),
            ("CRYPTO", &new_inline_key()),
            ("UFRAG2", teams_ufrag2),
            ("PWD2", teams_pwd2),
            ("UFRAG", teams_ufrag),
            ("PWD", teams_pwd),
            ("REKEY_AFTER_MS", "3000"),
            ("HOLD_MS", "4000"),
        ],
    );
    let teams_media = free_port_pair(TEAMS_IP);
    let mut teams = sipp_traced(
        "Teams SIPp UAC (ICE restart)",
        &teams_dir,
        &teams_path,
        &[
            lab.teams_entry().to_string(),
            "-t".into(),
            "t1".into(),
            "-i".into(),
            TEAMS_IP.to_string(),
            "-p".into(),
            teams_port.to_string(),
            "-mi".into(),
            TEAMS_IP.to_string(),
            "-mp".into(),
            teams_media.to_string(),
        ],
    );

    let first = wait_logged_ice(&teams_dir, "SBC-ICE ");
    assert_eq!(
        first.candidate, first.media,
        "one host candidate on our media address"
    );
    let first_user = format!("{}:{teams_ufrag}", first.ufrag);
    stun_check::answered(
        &socket,
        first.media,
        &stun_check::request(&first_user, &first.pwd),
        &first.pwd,
    );

    let restarted = wait_logged_ice(&teams_dir, "SBC-ICE2 ");
    assert_eq!(
        restarted.media, first.media,
        "row 41: same address and port"
    );
    assert_eq!(restarted.candidate, first.candidate, "same candidate");
    assert_ne!(restarted.ufrag, first.ufrag, "RFC 8445 §9: new ufrag");
    assert_ne!(restarted.pwd, first.pwd, "RFC 8445 §9: new pwd");

    // The old credentials are gone: that check gets no answer, the next (new) one does.
    let stale = stun_check::request(&first_user, &first.pwd);
    socket.send_to(&stale.raw, first.media).unwrap();
    let fresh = stun_check::request(
        &format!("{}:{teams_ufrag2}", restarted.ufrag),
        &restarted.pwd,
    );
    stun_check::answered(&socket, restarted.media, &fresh, &restarted.pwd);
    assert!(
        stun_check::next_response(&socket, Duration::from_millis(500)).is_none(),
        "no late answer to the check with the old credentials"
    );

    teams.expect_success(LONG);
    carrier.expect_success(LONG);
    let carrier_invites = received_messages(&carrier_dir)
        .into_iter()
        .filter(|m| m.starts_with("INVITE "))
        .count();
    assert_eq!(
        carrier_invites, 1,
        "the ICE restart never reaches the carrier"
    );
    lab.wait_idle();
}
