//! Row 48 end to end: RFC 4733 telephone-event DTMF through the SBC (started in-process on
//! loopback) when the legs number telephone-event differently, in both directions, before
//! the answer (early media after a 183 with SDP) and after it.
//!
//! SIPp carries the signalling (scenarios in `tests/sipp/dtmf`). PSTN -> Teams: the carrier
//! (SIPp UAC over UDP, 127.0.0.2) offers PCMU/0 and telephone-event/101; the Microsoft proxy
//! stand-in (SIPp UAS over TCP, 127.0.0.3) answers telephone-event/96 in a 183, then in the
//! 200 after a pause, and hangs up after another. Teams -> PSTN: the stand-in (SIPp UAC over
//! TCP) offers telephone-event/127, the carrier (SIPp UAS over UDP) answers 101 in a 183, then
//! the 200. All SDPs point at this test's own UDP sockets, so the test sends and receives the
//! media itself: plain RTP on the carrier leg, SRTP on the Teams leg (webrtc-srtp with the
//! keys from the SDP: the test chose the Teams key, the SBC's key is read from what the Teams
//! SIPp logged).
//!
//! Each digit ('5', then '#') is sent as a real RFC 4733 event: a start packet with the
//! marker bit, continuation packets with growing duration, and the end packet (E bit) three
//! times, all with the event's timestamp. The other leg must receive every one of them, in
//! order and exactly once, with that leg's payload type and otherwise byte for byte the same
//! header and payload (after SRTP on the Teams leg). Whether a phase ran before or after the
//! answer is checked on the SBC's own call metrics, not on timings; every wait is bounded.

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
const PSTN_CALLEE: &str = "+4969555000";
const LONG: Duration = Duration::from_secs(45);
/// What the carrier calls telephone-event and what Teams calls it: 96 when Teams answers a
/// PSTN call, 127 when it offers a call to the PSTN.
const CARRIER_TE: u8 = 101;
const TEAMS_TE: u8 = 96;
const TEAMS_OFFER_TE: u8 = 127;
/// How long the Teams stand-in stays in early media, then answered: each DTMF phase takes a
/// fraction of that on loopback, and the test checks the call state around each phase.
const EARLY_MS: &str = "5000";
const HOLD_MS: &str = "5000";

/// RFC 4733 event codes.
const DIGIT_5: u8 = 5;
const DIGIT_POUND: u8 = 11;
const DIGIT_STAR: u8 = 10;

/// A scenario from `tests/sipp/dtmf` with its `@NAME@` placeholders replaced, written to `dir`.
fn dtmf_scenario(dir: &Path, file: &str, values: &[(&str, &str)]) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp/dtmf")
        .join(file);
    let mut text = std::fs::read_to_string(&source).unwrap();
    for (name, value) in values {
        text = text.replace(&format!("@{name}@"), value);
    }
    for name in [
        "CALLER",
        "MEDIA_IP",
        "MEDIA_PORT",
        "CRYPTO",
        "EARLY_MS",
        "HOLD_MS",
    ] {
        assert!(
            !text.contains(&format!("@{name}@")),
            "unfilled @{name}@ in {file}"
        );
    }
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

fn teams_uas(lab: &Lab, port: u16, media: SocketAddr, key: &str) -> Peer {
    let dir = lab.path().join(format!("teams-{port}"));
    let path = dtmf_scenario(
        &dir,
        "teams_uas.xml",
        &[
            ("MEDIA_IP", &media.ip().to_string()),
            ("MEDIA_PORT", &media.port().to_string()),
            ("CRYPTO", key),
            ("EARLY_MS", EARLY_MS),
            ("HOLD_MS", HOLD_MS),
        ],
    );
    let sipp_media = free_port_pair(TEAMS_IP);
    let peer = sipp(
        "Teams SIPp UAS (dtmf)",
        &dir,
        &path,
        &[
            "-t".into(),
            "t1".into(),
            "-i".into(),
            TEAMS_IP.to_string(),
            "-p".into(),
            port.to_string(),
            "-mi".into(),
            TEAMS_IP.to_string(),
            "-mp".into(),
            sipp_media.to_string(),
        ],
    );
    wait_listening_tcp((TEAMS_IP, port).into());
    peer
}

fn carrier_uac(lab: &Lab, media: SocketAddr, scenario: &str) -> Peer {
    let port = free_udp_port(CARRIER_IP);
    let dir = lab.path().join(format!("carrier-{port}"));
    let path = dtmf_scenario(
        &dir,
        scenario,
        &[
            ("CALLER", PSTN_CALLER),
            ("MEDIA_IP", &media.ip().to_string()),
            ("MEDIA_PORT", &media.port().to_string()),
        ],
    );
    let sipp_media = free_port_pair(CARRIER_IP);
    sipp(
        "carrier SIPp UAC (dtmf)",
        &dir,
        &path,
        &[
            lab.udp_addr().to_string(),
            "-s".into(),
            ACME_DID.into(),
            "-t".into(),
            "u1".into(),
            "-i".into(),
            CARRIER_IP.to_string(),
            "-p".into(),
            port.to_string(),
            "-mi".into(),
            CARRIER_IP.to_string(),
            "-mp".into(),
            sipp_media.to_string(),
        ],
    )
}

/// The Microsoft stand-in placing a Teams -> PSTN call (SIPp UAC over TCP).
fn teams_uac(lab: &Lab, media: SocketAddr, key: &str) -> Peer {
    let port = free_tcp_port(TEAMS_IP);
    let dir = lab.path().join(format!("teams-uac-{port}"));
    let path = dtmf_scenario(
        &dir,
        "teams_uac.xml",
        &[
            ("CALLED", PSTN_CALLEE),
            ("CALLER", ACME_DID),
            ("TENANT", &format!("acme.{BASE}")),
            ("MEDIA_IP", &media.ip().to_string()),
            ("MEDIA_PORT", &media.port().to_string()),
            ("CRYPTO", key),
            ("HOLD_MS", HOLD_MS),
        ],
    );
    let sipp_media = free_port_pair(TEAMS_IP);
    sipp(
        "Teams SIPp UAC (dtmf)",
        &dir,
        &path,
        &[
            lab.teams_entry().to_string(),
            "-t".into(),
            "t1".into(),
            "-i".into(),
            TEAMS_IP.to_string(),
            "-p".into(),
            port.to_string(),
            "-mi".into(),
            TEAMS_IP.to_string(),
            "-mp".into(),
            sipp_media.to_string(),
        ],
    )
}

/// The carrier trunk answering a Teams -> PSTN call (SIPp UAS over UDP on the trunk address).
fn carrier_uas(lab: &Lab, media: SocketAddr) -> Peer {
    let dir = lab.path().join("carrier-uas");
    let path = dtmf_scenario(
        &dir,
        "carrier_uas.xml",
        &[
            ("MEDIA_IP", &media.ip().to_string()),
            ("MEDIA_PORT", &media.port().to_string()),
            ("EARLY_MS", EARLY_MS),
        ],
    );
    let sipp_media = free_port_pair(CARRIER_IP);
    let peer = sipp(
        "carrier SIPp UAS (dtmf)",
        &dir,
        &path,
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
            sipp_media.to_string(),
        ],
    );
    wait_bound_udp((CARRIER_IP, lab.carrier_port).into());
    peer
}

/// The fields after `tag` in the first line that has it in the SIPp logs of the peer running
/// in `<lab dir>/<dir_prefix>*`.
fn logged(lab: &Lab, dir_prefix: &str, tag: &str) -> Option<Vec<String>> {
    for dir in std::fs::read_dir(lab.path()).ok()?.flatten() {
        if !dir.file_name().to_string_lossy().starts_with(dir_prefix) {
            continue;
        }
        for entry in std::fs::read_dir(dir.path()).ok()?.flatten() {
            if !entry.file_name().to_string_lossy().ends_with("_logs.log") {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).ok()?;
            if let Some(line) = text.lines().find(|l| l.contains(tag)) {
                let rest = line.split(tag).nth(1)?;
                return Some(rest.split_whitespace().map(str::to_owned).collect());
            }
        }
    }
    None
}

fn wait_logged(peer: &Peer, dir_prefix: &str, lab: &Lab, tag: &str) -> Vec<String> {
    let deadline = Instant::now() + LONG;
    loop {
        if let Some(fields) = logged(lab, dir_prefix, tag) {
            return fields;
        }
        assert!(
            Instant::now() < deadline,
            "{} never logged {tag}; SIPp errors:\n{}",
            peer.name,
            peer.errors()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A random SDES inline key (16-byte key + 14-byte salt, base64).
fn new_inline_key() -> String {
    let raw: [u8; 30] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(raw)
}

fn srtp_context(inline: &str) -> Context {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(inline)
        .expect("SDES inline key is base64");
    assert_eq!(raw.len(), 30, "AES_CM_128 key + salt");
    // No replay protection: a duplicate forwarded by the SBC must show up, not be hidden.
    Context::new(
        &raw[..16],
        &raw[16..],
        ProtectionProfile::Aes128CmHmacSha1_80,
        None,
        None,
    )
    .unwrap()
}

/// One RTP stream as a sender sees it.
struct Stream {
    ssrc: u32,
    seq: u16,
    /// RTP clock (8 kHz) of the next event or audio frame.
    timestamp: u32,
}

impl Stream {
    fn new(ssrc: u32) -> Stream {
        Stream {
            ssrc,
            seq: rand::random::<u16>() & 0x7fff,
            timestamp: rand::random::<u32>() & 0x7fff_ffff,
        }
    }

    fn packet(&mut self, pt: u8, marker: bool, timestamp: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&timestamp.to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        p
    }

    /// One 20 ms PCMU frame of a DTMF tone (`Some(code)`, both frequencies at about -10 dBm0
    /// each, as a PSTN phone sends them) or of silence, continuing the stream's sample clock.
    fn tone(&mut self, code: Option<u8>) -> Vec<u8> {
        use teams_sbc::media::inband_dtmf::{encode, frequencies, G711};
        let ts = self.timestamp;
        let samples: Vec<u8> = (0..160u32)
            .map(|i| {
                let t = f64::from(ts.wrapping_add(i)) / 8000.0;
                let value = code.map_or(0.0, |code| {
                    let (low, high) = frequencies(code).unwrap_or_default();
                    let wave = |f: f32| (2.0 * std::f64::consts::PI * f64::from(f) * t).sin();
                    7000.0 * (wave(low) + wave(high))
                });
                encode(G711::Ulaw, value as i16)
            })
            .collect();
        self.timestamp = self.timestamp.wrapping_add(160);
        self.packet(0, false, ts, &samples)
    }

    /// One 20 ms PCMU frame.
    fn audio(&mut self) -> Vec<u8> {
        let ts = self.timestamp;
        self.timestamp = self.timestamp.wrapping_add(160);
        self.packet(0, false, ts, &[0xff; 160])
    }

    /// RFC 4733 §2.5: a DTMF event as its sender emits it. Every packet carries the event's
    /// start timestamp; the first has the marker bit; the duration grows; the final packet
    /// (E bit) goes out three times (§2.5.1.4), each with its own sequence number, or with
    /// one sequence number for all three as some older senders do (`Repeats::SameSequence`).
    fn dtmf(&mut self, pt: u8, event: u8, repeats: Repeats) -> Vec<Vec<u8>> {
        const VOLUME: u8 = 10;
        let ts = self.timestamp;
        let mut out = Vec::new();
        for (i, duration) in [160u16, 320, 480, 640].into_iter().enumerate() {
            let [hi, lo] = duration.to_be_bytes();
            out.push(self.packet(pt, i == 0, ts, &[event, VOLUME, hi, lo]));
        }
        let [hi, lo] = 800u16.to_be_bytes();
        let end = self.packet(pt, false, ts, &[event, 0x80 | VOLUME, hi, lo]);
        out.push(end.clone());
        for _ in 0..2 {
            out.push(match repeats {
                Repeats::NewSequence => self.packet(pt, false, ts, &[event, 0x80 | VOLUME, hi, lo]),
                Repeats::SameSequence => end.clone(),
            });
        }
        self.timestamp = self.timestamp.wrapping_add(800 + 400);
        out
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Repeats {
    NewSequence,
    SameSequence,
}

/// `packet` with its payload type replaced (the marker bit kept).
fn with_pt(packet: &[u8], pt: u8) -> Vec<u8> {
    let mut p = packet.to_vec();
    p[1] = (p[1] & 0x80) | pt;
    p
}

/// The test's two media ends and what it knows of the SBC's.
struct Media {
    carrier: UdpSocket,
    teams: UdpSocket,
    sbc_carrier: SocketAddr,
    sbc_teams: SocketAddr,
    /// Encrypts what "Teams" sends (the key of its SDP).
    teams_encrypt: Context,
    /// Decrypts what the SBC sends to "Teams" (the key of the SBC's offer).
    teams_decrypt: Context,
    carrier_stream: Stream,
    teams_stream: Stream,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Towards {
    Teams,
    Carrier,
}

impl Media {
    fn send(&mut self, towards: Towards, packet: &[u8]) {
        match towards {
            Towards::Teams => {
                self.carrier.send_to(packet, self.sbc_carrier).unwrap();
            }
            Towards::Carrier => {
                let protected = self.teams_encrypt.encrypt_rtp(packet).unwrap();
                self.teams.send_to(&protected, self.sbc_teams).unwrap();
            }
        }
    }

    /// The next RTP packet that reaches the receiving end, plain (SRTP removed on the Teams
    /// side), or `None` after `limit`.
    fn receive(&mut self, towards: Towards, limit: Duration) -> Option<Vec<u8>> {
        let socket = match towards {
            Towards::Teams => &self.teams,
            Towards::Carrier => &self.carrier,
        };
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            let Ok((n, _)) = socket.recv_from(&mut buf) else {
                continue;
            };
            // RTCP (payload types 192-223 with the marker bit) is not what this test checks.
            if n < 12 || (192..=223).contains(&buf[1]) {
                continue;
            }
            return Some(match towards {
                Towards::Teams => self
                    .teams_decrypt
                    .decrypt_rtp(&buf[..n])
                    .unwrap_or_else(|e| panic!("SRTP from the SBC does not decrypt: {e}"))
                    .to_vec(),
                Towards::Carrier => buf[..n].to_vec(),
            });
        }
        None
    }

    /// Audio until one frame crosses (the SBC has the leg's remote, keys and map): then the
    /// path is known good (later frames of this loop are skipped by `dtmf_with`).
    fn prime(&mut self, towards: Towards) {
        for _ in 0..20 {
            let frame = match towards {
                Towards::Teams => self.carrier_stream.audio(),
                Towards::Carrier => self.teams_stream.audio(),
            };
            self.send(towards, &frame);
            if self
                .receive(towards, Duration::from_millis(500))
                .is_some_and(|p| p[1] & 0x7f == 0)
            {
                return;
            }
        }
        panic!("no audio crossed the SBC towards {towards:?}");
    }

    /// Sends `digits` as RFC 4733 events with `sent_pt` and checks the other end gets every
    /// packet, in order, exactly once, with `expected_pt` and nothing else changed.
    fn dtmf(&mut self, towards: Towards, digits: &[u8], sent_pt: u8, expected_pt: u8) {
        self.dtmf_with(towards, digits, sent_pt, expected_pt, Repeats::NewSequence);
    }

    fn dtmf_with(
        &mut self,
        towards: Towards,
        digits: &[u8],
        sent_pt: u8,
        expected_pt: u8,
        repeats: Repeats,
    ) {
        self.prime(towards);
        for &digit in digits {
            let packets = match towards {
                Towards::Teams => self.carrier_stream.dtmf(sent_pt, digit, repeats),
                Towards::Carrier => self.teams_stream.dtmf(sent_pt, digit, repeats),
            };
            for p in &packets {
                self.send(towards, p);
            }
            // An audio frame after the event marks its end: what arrives before it is all the
            // SBC forwarded of the event (nothing missing, nothing duplicated or made up).
            let sentinel = match towards {
                Towards::Teams => self.carrier_stream.audio(),
                Towards::Carrier => self.teams_stream.audio(),
            };
            self.send(towards, &sentinel);
            let mut received = Vec::new();
            for _ in 0..100 {
                let Some(p) = self.receive(towards, Duration::from_secs(3)) else {
                    panic!("digit {digit} towards {towards:?}: the frame after it never came");
                };
                if p[1] & 0x7f != 0 {
                    received.push(p);
                } else if p[2..4] == sentinel[2..4] {
                    break;
                }
                // Other audio: a priming frame that crossed late.
            }
            // SRTP is on one side of every path here: a sequence number (SRTP index) is never
            // encrypted twice by the SBC nor accepted twice from Teams (RFC 3711 §3.3.2), so a
            // repeat under the same number arrives once.
            let mut expected: Vec<Vec<u8>> = Vec::new();
            for p in &packets {
                if !expected.iter().any(|e| e[2..4] == p[2..4]) {
                    expected.push(with_pt(p, expected_pt));
                }
            }
            assert_eq!(
                received.len(),
                expected.len(),
                "digit {digit} towards {towards:?}: {} of {} packets arrived",
                received.len(),
                expected.len()
            );
            for (i, (got, want)) in received.iter().zip(&expected).enumerate() {
                assert_eq!(
                    got, want,
                    "digit {digit} towards {towards:?}, packet {i}: header or payload differs"
                );
            }
            // Spelled out what the byte comparison above already covers.
            assert_eq!(received[0][1], 0x80 | expected_pt, "marker on the first");
            let ends = received.iter().filter(|p| p[13] & 0x80 != 0).count();
            let sent_ends = match repeats {
                Repeats::NewSequence => 3,
                Repeats::SameSequence => 1,
            };
            assert_eq!(ends, sent_ends, "every end packet (E bit)");
            let first_ts = &received[0][4..8];
            assert!(received.iter().all(|p| &p[4..8] == first_ts));
        }
    }
}

fn calls_answered(lab: &Lab) -> f64 {
    lab.metric("calls_answered_total", &[])
}

fn calls_active(lab: &Lab) -> f64 {
    lab.metric("calls_active", &[])
}

/// A PSTN -> Teams call (SBC media ports from `media_base`) placed by the carrier SIPp running
/// `carrier_scenario` and answered by `teams_uas.xml` with a 183, up to the point where the
/// test's own sockets know both of the SBC's media addresses and keys. The streams the test
/// sends use the SSRCs `(carrier, teams)`.
fn pstn_to_teams_until_183(
    media_base: u16,
    carrier_scenario: &str,
    (carrier_ssrc, teams_ssrc): (u32, u32),
) -> (Lab, Peer, Peer, Media) {
    let proxy_port = free_tcp_port(TEAMS_IP);
    let mut spec = LabSpec::new(media_base);
    spec.proxies = vec![LabSpec::tcp_proxy(&TEAMS_IP.to_string(), proxy_port)];
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[format!("{TEAMS_IP}:{proxy_port}")]);

    let (carrier_socket, teams_socket) = sockets();
    let teams_key = new_inline_key();
    let teams = teams_uas(
        &lab,
        proxy_port,
        teams_socket.local_addr().unwrap(),
        &teams_key,
    );
    let carrier = carrier_uac(&lab, carrier_socket.local_addr().unwrap(), carrier_scenario);

    // The SBC's Teams-side address and key (its offer), then its carrier side (the 183).
    let offer = wait_logged(&teams, "teams-", &lab, "SBC-OFFER ");
    let early = wait_logged(&carrier, "carrier-", &lab, "SBC-EARLY ");
    assert_eq!(offer.len(), 3, "{offer:?}");
    assert_ne!(offer[2], teams_key, "the SBC announces its own key");
    let media = Media {
        carrier: carrier_socket,
        teams: teams_socket,
        sbc_carrier: format!("{}:{}", early[0], early[1]).parse().unwrap(),
        sbc_teams: format!("{}:{}", offer[0], offer[1]).parse().unwrap(),
        teams_encrypt: srtp_context(&teams_key),
        teams_decrypt: srtp_context(&offer[2]),
        carrier_stream: Stream::new(carrier_ssrc),
        teams_stream: Stream::new(teams_ssrc),
    };
    (lab, teams, carrier, media)
}

/// Row 48: PSTN -> Teams call, carrier telephone-event 101, Teams 96. Before the answer
/// (183 early media) and after it, '5' and '#' cross in both directions: the carrier's 101
/// reaches Teams as 96 (SRTP), Teams' 96 reaches the carrier as 101, with marker bit,
/// timestamp, event payload and all three end packets intact.
#[test]
fn row48_pstn_to_teams_dtmf_101_96_both_directions_before_and_after_answer() {
    let (lab, mut teams, mut carrier, mut media) =
        pstn_to_teams_until_183(56400, "carrier_uac.xml", (0xca44_1e40, 0x7ea3_5000));

    // Before answer: early media after the 183.
    assert_eq!(calls_answered(&lab), 0.0);
    let digits = [DIGIT_5, DIGIT_POUND];
    media.dtmf(Towards::Teams, &digits, CARRIER_TE, TEAMS_TE);
    media.dtmf(Towards::Carrier, &digits, TEAMS_TE, CARRIER_TE);
    assert_eq!(
        calls_answered(&lab),
        0.0,
        "the early DTMF phase ran past the 200 (EARLY_MS too short for this machine)"
    );

    // After answer.
    lab.wait_for("the call to be answered", LONG, |lab| {
        calls_answered(lab) >= 1.0
    });
    wait_logged(&carrier, "carrier-", &lab, "SBC-ANSWER ");
    media.dtmf(Towards::Teams, &digits, CARRIER_TE, TEAMS_TE);
    media.dtmf(Towards::Carrier, &digits, TEAMS_TE, CARRIER_TE);
    // A sender repeating the end packet under one sequence number (RTP wants a new number per
    // packet; some old gateways do it anyway): the relay itself drops nothing, but SRTP never
    // encrypts one index twice towards Teams nor accepts one twice from Teams (it would be a
    // replay there too), so one end packet arrives, intact, after the rest of the event.
    let star = [DIGIT_STAR];
    media.dtmf_with(
        Towards::Teams,
        &star,
        CARRIER_TE,
        TEAMS_TE,
        Repeats::SameSequence,
    );
    media.dtmf_with(
        Towards::Carrier,
        &star,
        TEAMS_TE,
        CARRIER_TE,
        Repeats::SameSequence,
    );
    assert_eq!(
        calls_active(&lab),
        1.0,
        "the answered DTMF phase ran past the BYE (HOLD_MS too short for this machine)"
    );

    teams.expect_success(LONG);
    carrier.expect_success(LONG);
    // The only drops: the two repeated end packets of '*' each way (a replay from Teams is
    // counted with the authentication failures).
    let dropped = |reason| lab.metric("media_packets_dropped_total", &[("reason", reason)]);
    assert_eq!(dropped("srtp_protect"), 2.0);
    assert_eq!(dropped("srtp_auth"), 2.0);
    lab.wait_idle();
}

fn sockets() -> (UdpSocket, UdpSocket) {
    let carrier = UdpSocket::bind((CARRIER_IP, 0)).unwrap();
    let teams = UdpSocket::bind((TEAMS_IP, 0)).unwrap();
    for s in [&carrier, &teams] {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    }
    (carrier, teams)
}

/// Row 48, the other call direction: Teams -> PSTN, Teams offers telephone-event 127, the
/// carrier answers 101 (183 then 200). Teams' 127 reaches the carrier as 101; the carrier's
/// DTMF sent under its own 101 (it assumes symmetric payload types) reaches Teams as 127;
/// before and after the answer, every packet intact.
#[test]
fn row48_teams_to_pstn_dtmf_127_101_both_directions_before_and_after_answer() {
    let proxy_port = free_tcp_port(TEAMS_IP);
    let mut spec = LabSpec::new(56600);
    spec.proxies = vec![LabSpec::tcp_proxy(&TEAMS_IP.to_string(), proxy_port)];
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[format!("{TEAMS_IP}:{proxy_port}")]);

    let (carrier_socket, teams_socket) = sockets();
    let teams_key = new_inline_key();
    let mut carrier = carrier_uas(&lab, carrier_socket.local_addr().unwrap());
    let mut teams = teams_uac(&lab, teams_socket.local_addr().unwrap(), &teams_key);

    let offer = wait_logged(&carrier, "carrier-uas", &lab, "SBC-OFFER ");
    let early = wait_logged(&teams, "teams-uac-", &lab, "SBC-EARLY ");
    assert_eq!(early.len(), 3, "{early:?}");
    assert_ne!(early[2], teams_key, "the SBC announces its own key");
    let mut media = Media {
        carrier: carrier_socket,
        teams: teams_socket,
        sbc_carrier: format!("{}:{}", offer[0], offer[1]).parse().unwrap(),
        sbc_teams: format!("{}:{}", early[0], early[1]).parse().unwrap(),
        teams_encrypt: srtp_context(&teams_key),
        teams_decrypt: srtp_context(&early[2]),
        carrier_stream: Stream::new(0x0c44_1e41),
        teams_stream: Stream::new(0x7ea3_5001),
    };

    assert_eq!(calls_answered(&lab), 0.0);
    let digits = [DIGIT_5, DIGIT_POUND];
    media.dtmf(Towards::Carrier, &digits, TEAMS_OFFER_TE, CARRIER_TE);
    media.dtmf(Towards::Teams, &digits, CARRIER_TE, TEAMS_OFFER_TE);
    assert_eq!(
        calls_answered(&lab),
        0.0,
        "the early DTMF phase ran past the 200 (EARLY_MS too short for this machine)"
    );

    lab.wait_for("the call to be answered", LONG, |lab| {
        calls_answered(lab) >= 1.0
    });
    wait_logged(&teams, "teams-uac-", &lab, "SBC-ANSWER ");
    media.dtmf(Towards::Carrier, &digits, TEAMS_OFFER_TE, CARRIER_TE);
    media.dtmf(Towards::Teams, &digits, CARRIER_TE, TEAMS_OFFER_TE);
    assert_eq!(
        calls_active(&lab),
        1.0,
        "the answered DTMF phase ran past the BYE (HOLD_MS too short for this machine)"
    );

    teams.expect_success(LONG);
    carrier.expect_success(LONG);
    assert_eq!(
        lab.metric("media_packets_dropped_total", &[("reason", "srtp_auth")]),
        0.0
    );
    lab.wait_idle();
}

impl Media {
    /// Sends `digit` as a 240 ms PCMU tone and 200 ms of silence from the carrier and checks
    /// what Teams gets: the same number of packets with the same sequence numbers (each audio
    /// packet kept or replaced in place), the tone's start as audio until it is recognised,
    /// then one RFC 4733 event under `teams_pt` (marker first, one timestamp, growing
    /// duration, three end packets), then audio again.
    fn inband_digit(&mut self, digit: u8, teams_pt: u8) {
        let mut sent = Vec::new();
        for frame in 0..22 {
            let packet = self.carrier_stream.tone((frame < 12).then_some(digit));
            self.send(Towards::Teams, &packet);
            sent.push(packet);
        }
        let last_seq = &sent[sent.len() - 1][2..4];
        let mut received = Vec::new();
        loop {
            let Some(p) = self.receive(Towards::Teams, Duration::from_secs(3)) else {
                panic!("in-band digit {digit}: the last frame never came ({received:?})");
            };
            let done = &p[2..4] == last_seq;
            // Priming frames that crossed late are not part of this digit.
            if sent.iter().any(|s| s[2..4] == p[2..4]) {
                received.push(p);
            }
            if done {
                break;
            }
        }
        let sequence = |p: &Vec<u8>| u16::from_be_bytes([p[2], p[3]]);
        assert_eq!(
            received.iter().map(sequence).collect::<Vec<_>>(),
            sent.iter().map(sequence).collect::<Vec<_>>(),
            "digit {digit}: one packet out per packet in, in order"
        );
        let events: Vec<&Vec<u8>> = received
            .iter()
            .filter(|p| p[1] & 0x7f == teams_pt)
            .collect();
        let first = received
            .iter()
            .position(|p| p[1] & 0x7f == teams_pt)
            .unwrap_or_else(|| panic!("digit {digit}: no event reached Teams"));
        assert!(
            (1..=5).contains(&first),
            "digit {digit}: recognised after {first} frames"
        );
        assert!(received[..first].iter().all(|p| p[1] & 0x7f == 0));
        let last = first + events.len();
        assert!(
            received[first..last]
                .iter()
                .all(|p| p[1] & 0x7f == teams_pt),
            "digit {digit}: one unbroken event"
        );
        assert!(
            received[last..].iter().all(|p| p[1] & 0x7f == 0),
            "audio after it"
        );
        assert!(last < received.len(), "digit {digit}: audio resumes");
        for (i, p) in events.iter().enumerate() {
            assert_eq!(p.len(), 16, "event payload only");
            assert_eq!(p[12], digit, "event code");
            assert_eq!(p[1] & 0x80 != 0, i == 0, "marker on the first packet only");
            assert_eq!(p[4..8], events[0][4..8], "the event's timestamp throughout");
        }
        let duration = |p: &&Vec<u8>| u16::from_be_bytes([p[14], p[15]]);
        let ends: Vec<&&Vec<u8>> = events.iter().filter(|p| p[13] & 0x80 != 0).collect();
        assert_eq!(ends.len(), 3, "three end packets");
        assert!(events[events.len() - 3..].iter().all(|p| p[13] & 0x80 != 0));
        assert!(ends.iter().all(|p| duration(p) == duration(ends[0])));
        assert!(events
            .windows(2)
            .all(|w| duration(&w[1]) >= duration(&w[0])));
        let heard = u32::from(duration(ends[0]));
        assert!(
            (160 * 7..=160 * 16).contains(&heard),
            "digit {digit}: event lasts {heard} samples of a 1920-sample tone"
        );
    }
}

impl Media {
    /// Teams sends `digit` as RFC 4733 events under `pt` (4 growing packets, 3 end packets),
    /// then an audio frame; the carrier must get, before that frame, G.711 tone packets only
    /// (5: each packet that adds samples) in which a DTMF detector hears `digit`.
    fn event_to_inband_tone(&mut self, pt: u8, digit: u8) {
        use teams_sbc::media::inband_dtmf::{ToneDetector, G711};
        let packets = self.teams_stream.dtmf(pt, digit, Repeats::NewSequence);
        let sentinel = self.teams_stream.audio();
        for p in packets.iter().chain(std::iter::once(&sentinel)) {
            self.send(Towards::Carrier, p);
        }
        // By RTP timestamp: the relay renumbers the stream around the event packets it drops
        // (repeats, end copies), so sequence numbers do not tell the packets apart.
        let timestamp = |p: &[u8]| u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        let (event_start, sentinel_at) = (timestamp(&packets[0]), timestamp(&sentinel));
        let mut tones = Vec::new();
        loop {
            let Some(p) = self.receive(Towards::Carrier, Duration::from_secs(3)) else {
                panic!("digit {digit} under {pt}: the frame after it never came");
            };
            if timestamp(&p) == sentinel_at {
                break;
            }
            if timestamp(&p).wrapping_sub(event_start) < sentinel_at.wrapping_sub(event_start) {
                tones.push(p);
            }
        }
        assert_eq!(
            tones.len(),
            5,
            "digit {digit} under {pt}: {} tone packets",
            tones.len()
        );
        assert!(
            tones.iter().all(|p| p[1] & 0x7f == 0),
            "PCMU towards the carrier"
        );
        assert_ne!(tones[0][1] & 0x80, 0, "the tone starts with the marker");
        let mut detector = ToneDetector::new(G711::Ulaw);
        let mut heard: Vec<Option<u8>> = tones.iter().map(|p| detector.feed(&p[12..])).collect();
        heard.push(detector.feed(&[0xff; 160]));
        assert!(
            heard.contains(&Some(digit)) && heard.iter().flatten().all(|d| *d == digit),
            "digit {digit} under {pt}: the carrier heard {heard:?}"
        );
    }
}

/// Row 48, in-band half: a PSTN -> Teams call from a trunk whose DTMF is in-band only (PCMU,
/// no telephone-event; real SIPp signalling, scenarios `tests/sipp/dtmf/carrier_uac_inband.xml`
/// and `teams_uas.xml`). The SBC offers Teams telephone-event anyway, gives the carrier none,
/// and the carrier's tones reach Teams as RFC 4733 events under Teams' number, before and
/// after the answer; Teams' own events reach the carrier as G.711 tones of the same digits.
#[test]
fn row48_inband_pstn_tones_reach_teams_as_rfc4733_events_before_and_after_answer() {
    // teams_uas.xml checks the offer carries telephone-event/101 (the carrier offered none);
    // carrier_uac_inband.xml checks the carrier is never offered one.
    let (lab, mut teams, mut carrier, mut media) =
        pstn_to_teams_until_183(56800, "carrier_uac_inband.xml", (0xca44_1e42, 0x7ea3_5002));

    assert_eq!(calls_answered(&lab), 0.0);
    media.prime(Towards::Teams);
    media.inband_digit(DIGIT_5, TEAMS_TE);
    media.inband_digit(DIGIT_POUND, TEAMS_TE);
    assert_eq!(
        calls_answered(&lab),
        0.0,
        "the early DTMF phase ran past the 200 (EARLY_MS too short for this machine)"
    );

    lab.wait_for("the call to be answered", LONG, |lab| {
        calls_answered(lab) >= 1.0
    });
    wait_logged(&carrier, "carrier-", &lab, "SBC-ANSWER ");
    media.prime(Towards::Teams);
    for digit in [1, 0, DIGIT_STAR, 15] {
        media.inband_digit(digit, TEAMS_TE);
    }

    // Teams' events (under its own 96 or under our 101) reach the in-band carrier as PCMU
    // tones of the same digit, one packet per event packet that adds samples.
    media.prime(Towards::Carrier);
    for (pt, digit) in [(TEAMS_TE, DIGIT_5), (CARRIER_TE, DIGIT_POUND)] {
        media.event_to_inband_tone(pt, digit);
    }
    assert_eq!(
        calls_active(&lab),
        1.0,
        "the answered DTMF phase ran past the BYE (HOLD_MS too short for this machine)"
    );

    teams.expect_success(LONG);
    carrier.expect_success(LONG);
    let dropped = |reason| lab.metric("media_packets_dropped_total", &[("reason", reason)]);
    // The two repeated end packets of each of Teams' two digits add no tone.
    assert_eq!(dropped("dtmf_redundant"), 4.0);
    assert_eq!(dropped("unnegotiated_payload"), 0.0);
    assert_eq!(dropped("srtp_auth"), 0.0);
    lab.wait_idle();
}
