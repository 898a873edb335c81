//! Row 52 end to end: media bypass with forking (doc 2.4 step 4, doc 3.7). A PSTN -> Teams
//! call through the SBC (in-process) on a media-bypass Teams trunk. The Microsoft stand-in
//! (SIPp over TCP on 127.0.0.3) answers the SBC's ICE-lite offer the way Microsoft does when
//! a user has two Teams clients: 180 and 183+SDP from fork A (ice-ufrag A, media at one of
//! the test's sockets), 183+SDP from fork B (ice-ufrag B, another socket), then - after a
//! pause in which the test plays both clients' ICE agents - the 200 from fork B.
//!
//! The test's UDP sockets are the two clients: each fork has the socket its SDP signals and
//! another its checks come from (a different candidate pair), and its own SDES key. The
//! carrier trunk relays early media (`early_media = "relay"`), and the carrier's media socket
//! is the test's too. Before the 200 the checks of both forks are answered, fork A nominates
//! (USE-CANDIDATE) and its early media, under its own key, reaches the carrier although fork
//! B's 183 came later. After the 200 (fork B) the carrier's RTP must reach fork B's
//! signalled address as SRTP under the SBC's key, never fork A's pair; fork A's checks are no
//! longer answered and its key no longer authenticates; once fork B nominates its pair, the
//! media goes there.
//!
//! Every wait is bounded in time and count; nothing asserts a duration.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

const ACME_DID: &str = "+4930123450";
const PSTN_CALLER: &str = "+4969111222";
const LONG: Duration = Duration::from_secs(45);
const A_UFRAG: &str = "forkAuf";
const B_UFRAG: &str = "forkBuf";
/// How long the stand-in waits between its 183s and its 200 (the test's ICE window).
const EARLY_PAUSE_MS: &str = "5000";
/// How long the carrier stays in the call after its ACK (the test's media window).
const HOLD_MS: &str = "10000";

/// A scenario from `tests/sipp/bypass_forks` with its `@NAME@` placeholders replaced.
fn bypass_forks_scenario(dir: &Path, file: &str, values: &[(&str, &str)]) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp/bypass_forks")
        .join(file);
    let mut text = std::fs::read_to_string(&source).unwrap();
    for (name, value) in values {
        text = text.replace(&format!("@{name}@"), value);
    }
    for placeholder in [
        "@CALLE",
        "@A_",
        "@B_",
        "@EARLY",
        "@HOLD_MS@",
        "@MEDIA_PORT@",
    ] {
        assert!(
            !text.contains(placeholder),
            "unfilled placeholder {placeholder} in {file}"
        );
    }
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

/// The text of SIPp's `*_logs.log` in `dir` (empty until it exists).
fn sipp_logs(dir: &Path) -> String {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("_logs.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

/// The fields after `tag` on the first log line of the SIPp in `dir` that has it.
fn wait_logged(dir: &Path, tag: &str) -> Vec<String> {
    let deadline = Instant::now() + LONG;
    loop {
        let logs = sipp_logs(dir);
        if let Some(line) = logs.lines().find(|l| l.contains(tag)) {
            return line
                .split(tag)
                .nth(1)
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "the SIPp in {} never logged {tag:?}; errors:\n{}",
            dir.display(),
            sipp_errors(dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn srtp_context(inline: &str) -> Context {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(inline)
        .expect("SDES inline key is base64");
    assert_eq!(raw.len(), 30, "AES_CM_128 key + salt");
    Context::new(
        &raw[..16],
        &raw[16..],
        ProtectionProfile::Aes128CmHmacSha1_80,
        None,
        None,
    )
    .unwrap()
}

/// A random SDES inline key (16-byte key + 14-byte salt, base64).
fn new_inline_key() -> String {
    let raw: [u8; 30] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(raw)
}

fn rtp_packet(seq: u16) -> Vec<u8> {
    let mut packet = vec![0x80, 0x00];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    packet.extend_from_slice(&0x0b1f_0052u32.to_be_bytes());
    packet.extend((0..160u16).map(|i| (i as u8) ^ (seq as u8)));
    packet
}

mod stun_check {
    //! Connectivity checks as a full, controlling Teams agent sends them (`stun` crate).

    use std::net::{SocketAddr, UdpSocket};
    use std::time::{Duration, Instant};

    use stun::attributes::ATTR_USE_CANDIDATE;
    use stun::attributes::{ATTR_ICE_CONTROLLING, ATTR_PRIORITY, ATTR_USERNAME};
    use stun::fingerprint::FINGERPRINT;
    use stun::integrity::MessageIntegrity;
    use stun::message::{Message, Setter, BINDING_REQUEST, BINDING_SUCCESS};
    use stun::textattrs::TextAttribute;

    pub fn request(username: &str, pwd: &str, nominate: bool) -> Message {
        let mut m = Message::new();
        m.typ = BINDING_REQUEST;
        m.new_transaction_id().unwrap();
        m.write_header();
        TextAttribute::new(ATTR_USERNAME, username.to_owned())
            .add_to(&mut m)
            .unwrap();
        m.add(ATTR_PRIORITY, &1_845_501_695u32.to_be_bytes());
        m.add(ATTR_ICE_CONTROLLING, &[5; 8]);
        if nominate {
            m.add(ATTR_USE_CANDIDATE, &[]);
        }
        MessageIntegrity::new_short_term_integrity(pwd.to_owned())
            .add_to(&mut m)
            .unwrap();
        FINGERPRINT.add_to(&mut m).unwrap();
        m
    }

    /// Sends `request` to `to` and waits at most `limit` for the success response to it,
    /// signed with `pwd` (other datagrams are skipped).
    pub fn exchange(
        socket: &UdpSocket,
        to: SocketAddr,
        request: &Message,
        pwd: &str,
        limit: Duration,
    ) -> bool {
        socket.send_to(&request.raw, to).unwrap();
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            let Ok((n, _)) = socket.recv_from(&mut buf) else {
                continue;
            };
            if n < 20 || buf[0] >> 6 != 0 || buf[4..8] != [0x21, 0x12, 0xa4, 0x42] {
                continue;
            }
            let mut response = Message::new();
            if response.unmarshal_binary(&buf[..n]).is_err()
                || response.transaction_id != request.transaction_id
            {
                continue;
            }
            assert_eq!(response.typ, BINDING_SUCCESS);
            MessageIntegrity::new_short_term_integrity(pwd.to_owned())
                .check(&mut response)
                .expect("signed with the SBC's ice-pwd");
            return true;
        }
        false
    }
}

/// One of the test's sockets standing in for a Teams client's candidate; counts the SBC's
/// SRTP that arrives on it.
struct Candidate {
    name: &'static str,
    socket: UdpSocket,
    rtp: usize,
}

impl Candidate {
    fn bind(name: &'static str) -> Candidate {
        let socket = UdpSocket::bind((TEAMS_IP, 0)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        Candidate {
            name,
            socket,
            rtp: 0,
        }
    }

    fn port(&self) -> u16 {
        self.socket.local_addr().unwrap().port()
    }

    /// Reads what has arrived (bounded); each RTP-shaped datagram must be the SBC's SRTP,
    /// each RTCP one (its own reports, row 46) its SRTCP.
    fn drain(&mut self, decrypt: &mut Context) {
        self.socket.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 2048];
        for _ in 0..1000 {
            let Ok((n, _)) = self.socket.recv_from(&mut buf) else {
                break;
            };
            if n >= 8 && buf[0] >> 6 == 2 && (192..=223).contains(&buf[1]) {
                decrypt.decrypt_rtcp(&buf[..n]).unwrap_or_else(|e| {
                    panic!("{}: RTCP that is not the SBC's SRTCP: {e}", self.name)
                });
            } else if n >= 12 && buf[0] >> 6 == 2 {
                let plain = decrypt.decrypt_rtp(&buf[..n]).unwrap_or_else(|e| {
                    panic!("{}: media that is not the SBC's SRTP: {e}", self.name)
                });
                let seq = u16::from_be_bytes([plain[2], plain[3]]);
                assert_eq!(&plain[12..], &rtp_packet(seq)[12..], "payload of {seq}");
                self.rtp += 1;
            }
        }
        self.socket.set_nonblocking(false).unwrap();
    }
}

/// The carrier's media, sent by the test from the carrier's signalled address.
struct CarrierMedia {
    socket: UdpSocket,
    sbc: SocketAddr,
    seq: u16,
}

impl CarrierMedia {
    fn send(&mut self) {
        self.socket
            .send_to(&rtp_packet(self.seq), self.sbc)
            .unwrap();
        self.seq = self.seq.wrapping_add(1);
    }
}

/// Teams media that reached the carrier's socket (plain RTP, as the test sent it) within
/// `limit`: the sequence numbers.
fn received_at_carrier(socket: &UdpSocket, limit: Duration) -> Vec<u16> {
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut seqs = Vec::new();
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        let Ok((n, _)) = socket.recv_from(&mut buf) else {
            continue;
        };
        if n >= 12 && buf[0] >> 6 == 2 {
            let seq = u16::from_be_bytes([buf[2], buf[3]]);
            assert_eq!(&buf[12..n], &rtp_packet(seq)[12..], "payload of {seq}");
            seqs.push(seq);
        }
    }
    seqs
}

/// Fork A's early media: SRTP under its own key from its nominated candidate.
fn send_fork_media(socket: &UdpSocket, sbc: SocketAddr, context: &mut Context, seqs: &[u16]) {
    for &seq in seqs {
        let packet = context.encrypt_rtp(&rtp_packet(seq)).unwrap();
        socket.send_to(&packet, sbc).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends carrier RTP (at most `max` packets) until `target` of `clients` has received
/// `wanted`; every client's socket is drained after each packet.
fn stream_until(
    carrier: &mut CarrierMedia,
    clients: &mut [Candidate],
    target: usize,
    wanted: usize,
    max: usize,
    decrypt: &mut Context,
) {
    for _ in 0..max {
        carrier.send();
        std::thread::sleep(Duration::from_millis(20));
        for client in clients.iter_mut() {
            client.drain(decrypt);
        }
        if clients[target].rtp >= wanted {
            return;
        }
    }
    let counts: Vec<_> = clients.iter().map(|c| (c.name, c.rtp)).collect();
    panic!(
        "{} never got {wanted} packets of carrier media: {counts:?}",
        clients[target].name
    );
}

/// Row 52: checks of both forks answered before the 200, fork A's early nomination dropped
/// at the 200 of fork B, media to fork B's signalled address, then to its nominated pair;
/// never to fork A.
#[test]
fn row52_bypass_forks_media_follows_the_200_of_fork_b_not_the_nomination_of_fork_a() {
    let proxy_port = free_tcp_port(TEAMS_IP);
    let mut spec = LabSpec::new(59400);
    spec.proxies = vec![LabSpec::tcp_proxy(&TEAMS_IP.to_string(), proxy_port)];
    spec.teams_extra = "media_bypass = true".into();
    spec.carrier_extra = "early_media = \"relay\"".into();
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[format!("{TEAMS_IP}:{proxy_port}")]);

    // Indexes into `clients`.
    const A_SIGNALLED: usize = 0;
    const A_CHECKS: usize = 1;
    const B_SIGNALLED: usize = 2;
    const B_NOMINATED: usize = 3;
    let mut clients = [
        Candidate::bind("fork A's signalled address"),
        Candidate::bind("fork A's checking (nominated) candidate"),
        Candidate::bind("fork B's signalled address"),
        Candidate::bind("fork B's checking (nominated) candidate"),
    ];

    let a_key = new_inline_key();
    let mut a_media = srtp_context(&a_key);
    let teams_dir = lab.path().join("teams-bypass-forks");
    let teams_path = bypass_forks_scenario(
        &teams_dir,
        "teams_uas_bypass_forks.xml",
        &[
            ("CALLED", ACME_DID.trim_start_matches('+')),
            ("A_PORT", &clients[A_SIGNALLED].port().to_string()),
            ("A_UFRAG", A_UFRAG),
            ("A_KEY", &a_key),
            ("B_PORT", &clients[B_SIGNALLED].port().to_string()),
            ("B_UFRAG", B_UFRAG),
            ("B_KEY", &new_inline_key()),
            ("EARLY_PAUSE_MS", EARLY_PAUSE_MS),
        ],
    );
    let teams_media = free_port_pair(TEAMS_IP);
    let mut teams = sipp(
        "Teams SIPp UAS (bypass forks)",
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
        ],
    );
    wait_listening_tcp((TEAMS_IP, proxy_port).into());

    let carrier_socket = UdpSocket::bind((CARRIER_IP, 0)).unwrap();
    let carrier_port = free_udp_port(CARRIER_IP);
    let carrier_dir = lab.path().join(format!("carrier-{carrier_port}"));
    let carrier_path = bypass_forks_scenario(
        &carrier_dir,
        "carrier_uac_bypass_forks.xml",
        &[
            ("CALLER", PSTN_CALLER),
            (
                "MEDIA_PORT",
                &carrier_socket.local_addr().unwrap().port().to_string(),
            ),
            ("HOLD_MS", HOLD_MS),
        ],
    );
    let carrier_media = free_port_pair(CARRIER_IP);
    let mut carrier = sipp(
        "carrier SIPp UAC (bypass forks)",
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

    let offer = wait_logged(&teams_dir, "SBC-ICE ");
    let [ip, port, sbc_ufrag, sbc_pwd, sbc_key] = &offer[..] else {
        panic!("SBC-ICE line: {offer:?}");
    };
    let sbc_teams: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    let user_a = format!("{sbc_ufrag}:{A_UFRAG}");
    let user_b = format!("{sbc_ufrag}:{B_UFRAG}");
    wait_logged(&teams_dir, "FORKS-EARLY");

    // Before the 200. Fork B's check first: once it is answered the SBC has applied both
    // 183s (they came in that order on one connection), so fork A's answers below prove the
    // later fork did not shut the earlier one out.
    let limit = Duration::from_millis(500);
    let b_answered = (0..10).any(|_| {
        let check = stun_check::request(&user_b, sbc_pwd, false);
        stun_check::exchange(
            &clients[B_NOMINATED].socket,
            sbc_teams,
            &check,
            sbc_pwd,
            limit,
        )
    });
    assert!(
        b_answered,
        "fork B's check before the 200 was never answered"
    );
    let check = stun_check::request(&user_a, sbc_pwd, false);
    assert!(
        stun_check::exchange(&clients[A_CHECKS].socket, sbc_teams, &check, sbc_pwd, LONG),
        "fork A's check after fork B's 183 was not answered"
    );
    let nomination = stun_check::request(&user_a, sbc_pwd, true);
    assert!(
        stun_check::exchange(
            &clients[A_CHECKS].socket,
            sbc_teams,
            &nomination,
            sbc_pwd,
            LONG
        ),
        "fork A's nomination before the 200 was not answered"
    );
    // Fork A streams early media under its own key: authenticated although fork B's 183
    // (fork B's key) came later, and relayed to the carrier.
    send_fork_media(
        &clients[A_CHECKS].socket,
        sbc_teams,
        &mut a_media,
        &(1..=10).collect::<Vec<u16>>(),
    );
    let early = received_at_carrier(&carrier_socket, Duration::from_secs(1));
    assert!(
        !early.is_empty(),
        "fork A's early media never reached the carrier (SRTP auth drops: {})",
        lab.metric("media_packets_dropped_total", &[("reason", "srtp_auth")])
    );
    assert_eq!(
        lab.metric("media_packets_dropped_total", &[("reason", "srtp_auth")]),
        0.0,
        "fork A's early media failed authentication"
    );
    assert!(
        !sipp_logs(&teams_dir).contains("ANSWERING"),
        "the stand-in answered before the checks were done (raise EARLY_PAUSE_MS)"
    );

    // The 200 from fork B reached the carrier: the SBC has switched the media by now.
    let answer = wait_logged(&carrier_dir, "SBC-CARRIER ");
    let [ip, port] = &answer[..] else {
        panic!("SBC-CARRIER line: {answer:?}");
    };
    let mut media = CarrierMedia {
        socket: carrier_socket,
        sbc: format!("{ip}:{port}").parse().unwrap(),
        seq: 100,
    };
    let mut decrypt = srtp_context(sbc_key);

    // No nomination of fork B yet: its signalled address.
    stream_until(&mut media, &mut clients, B_SIGNALLED, 5, 150, &mut decrypt);

    // Fork A lost: its checks (nominating or not) are no longer answered.
    for nominate in [true, false] {
        let check = stun_check::request(&user_a, sbc_pwd, nominate);
        assert!(
            !stun_check::exchange(
                &clients[A_CHECKS].socket,
                sbc_teams,
                &check,
                sbc_pwd,
                Duration::from_secs(1)
            ),
            "fork A's check (USE-CANDIDATE: {nominate}) was answered after fork B's 200"
        );
    }
    stream_until(&mut media, &mut clients, B_SIGNALLED, 10, 150, &mut decrypt);

    // Nor does fork A's key: its media is dropped, none reaches the carrier.
    send_fork_media(
        &clients[A_CHECKS].socket,
        sbc_teams,
        &mut a_media,
        &(11..=15).collect::<Vec<u16>>(),
    );
    lab.wait_for(
        "fork A's media after the 200 to fail authentication",
        Duration::from_secs(10),
        |lab| lab.metric("media_packets_dropped_total", &[("reason", "srtp_auth")]) >= 1.0,
    );
    let late = received_at_carrier(&media.socket, Duration::from_millis(500));
    assert!(
        late.iter().all(|seq| !(11..=15).contains(seq)),
        "fork A's media after fork B's 200 reached the carrier: {late:?}"
    );

    // Fork B nominates its pair: the media moves there and stays.
    let nomination = stun_check::request(&user_b, sbc_pwd, true);
    assert!(
        stun_check::exchange(
            &clients[B_NOMINATED].socket,
            sbc_teams,
            &nomination,
            sbc_pwd,
            LONG
        ),
        "fork B's nomination after its 200 was not answered"
    );
    let at_b_signalled = clients[B_SIGNALLED].rtp;
    stream_until(&mut media, &mut clients, B_NOMINATED, 10, 150, &mut decrypt);
    assert_eq!(
        clients[B_SIGNALLED].rtp, at_b_signalled,
        "media after fork B's nomination went to its signalled address"
    );
    assert!(
        !sipp_logs(&carrier_dir).contains("HANGING-UP"),
        "the carrier hung up before the media checks were done (raise HOLD_MS)"
    );

    assert_eq!(
        clients[A_SIGNALLED].rtp, 0,
        "media reached fork A's address"
    );
    assert_eq!(clients[A_CHECKS].rtp, 0, "media reached fork A's pair");

    carrier.expect_success(LONG);
    teams.expect_success(LONG);
    for client in clients.iter_mut() {
        client.drain(&mut decrypt);
    }
    assert_eq!(
        clients[A_SIGNALLED].rtp, 0,
        "media reached fork A's address"
    );
    assert_eq!(clients[A_CHECKS].rtp, 0, "media reached fork A's pair");
    assert_eq!(
        lab.metric(
            "calls_answered_total",
            &[("tenant", "acme"), ("direction", "inbound")]
        ),
        1.0
    );
    lab.wait_idle();
}
