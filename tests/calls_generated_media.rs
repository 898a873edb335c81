//! Rows 46 and 49 end to end: media the SBC makes itself, through the SBC (in-process on
//! loopback), with real SIPp signalling and Microsoft reached over the mutual-TLS stand-in.
//!
//! SIPp carries the signalling (scenarios in `tests/sipp/generated`): the carrier (SIPp UAC
//! over UDP, 127.0.0.2) calls a Teams DID; the Microsoft stand-in (SIPp UAS behind the TLS
//! stand-in, 127.0.0.3) answers. Both SDPs point at this test's own UDP sockets, so the test
//! is the media of both ends: plain RTP on the carrier leg (and the carrier's RTCP port next
//! to it), SRTP on the Teams leg with webrtc-srtp as the independent implementation (the test
//! chose the Teams key; the SBC's key is read from what the Teams SIPp logged). RTCP is read
//! with the webrtc-rs `rtcp` crate, an independent RFC 3550 parser.
//!
//! * Row 46: neither end sends RTCP (like a carrier that never does): Teams gets SRTCP sender
//!   reports for the stream the SBC sends it, with the exact packet and octet counts it
//!   received and a report block on the stream it sends (its loss, its highest sequence
//!   number), and the carrier gets the same in plain RTCP; once Teams sends a report of its
//!   own, the carrier gets that one, with the counts of what the carrier received.
//! * Row 49: the carrier offers no CN; Teams is offered CN/8000 anyway and answers with it.
//!   Teams' CN packet and the silence after it reach the carrier as PCMU noise at the level
//!   the CN announced, one frame every 20 ms, and when Teams speaks again its packets follow
//!   without a gap in the sequence numbers; the carrier never sees payload type 13.
//!
//! Every wait is on a condition and bounded; nothing here asserts a timing.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use rtcp::packet::Packet;
use rtcp::receiver_report::ReceiverReport;
use rtcp::sender_report::SenderReport;
use rtcp::source_description::{SdesType, SourceDescription};
use teams_sbc::media::inband_dtmf::{decode, G711};
use webrtc_srtp::context::Context;

const ACME_DID: &str = "+4930123450";
const PSTN_CALLER: &str = "+4969111222";
const LONG: Duration = Duration::from_secs(45);
const CARRIER_SSRC: u32 = 0xca44_1e46;
const TEAMS_SSRC: u32 = 0x7ea3_5046;

/// What differs between the calls of this file.
struct CallSpec {
    media_base: u16,
    carrier_formats: &'static str,
    carrier_rtpmaps: &'static [&'static str],
    teams_formats: &'static str,
    teams_rtpmaps: &'static [&'static str],
    /// Regular expressions the SBC's offer to Teams must match, its answer to the carrier
    /// must match and must not match.
    offer_check: &'static str,
    answer_check: &'static str,
    answer_not: &'static str,
    /// How long the carrier stays on the call before hanging up.
    hold_ms: u32,
}

/// One answered PSTN -> Teams call whose media ends are the test's sockets.
struct Call {
    lab: Lab,
    teams_sipp: Peer,
    carrier_sipp: Peer,
    carrier: UdpSocket,
    carrier_rtcp: UdpSocket,
    teams: UdpSocket,
    sbc_carrier: SocketAddr,
    sbc_teams: SocketAddr,
    /// Encrypts what "Teams" sends (the key of its SDP).
    teams_encrypt: Context,
    /// Decrypts what the SBC sends to "Teams" (the key of the SBC's offer).
    teams_decrypt: Context,
}

/// An RTP port and the RTCP port after it on `ip`, both bound; read timeouts short, so
/// reading a socket that has nothing paces the loops below.
fn socket_pair(ip: std::net::Ipv4Addr) -> (UdpSocket, UdpSocket) {
    for _ in 0..100 {
        let rtp = UdpSocket::bind((ip, 0)).unwrap();
        let port = rtp.local_addr().unwrap().port();
        if let Ok(rtcp) = UdpSocket::bind((ip, port + 1)) {
            for s in [&rtp, &rtcp] {
                s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
            }
            return (rtp, rtcp);
        }
    }
    panic!("no free RTP/RTCP port pair on {ip}");
}

fn sdp_lines(rtpmaps: &[&str]) -> String {
    rtpmaps.join("\n      ")
}

fn start_call(spec: CallSpec) -> Call {
    let proxy_port = free_tcp_port(TEAMS_IP);
    let mut lab_spec = LabSpec::new(spec.media_base);
    lab_spec.proxies = vec![LabSpec::tcp_proxy(&TEAMS_IP.to_string(), proxy_port)];
    let lab = Lab::start(lab_spec);
    lab.wait_first_pings(&[format!("{TEAMS_IP}:{proxy_port}")]);

    let (carrier, carrier_rtcp) = socket_pair(CARRIER_IP);
    let (teams, _teams_unused_rtcp) = socket_pair(TEAMS_IP);
    let teams_key = new_inline_key();

    let teams_dir = lab.path().join("teams");
    let teams_media = teams.local_addr().unwrap();
    let teams_path = scenario_in(
        "generated",
        &teams_dir,
        "teams_uas.xml",
        &[
            ("MEDIA_IP", &teams_media.ip().to_string()),
            ("MEDIA_PORT", &teams_media.port().to_string()),
            ("CRYPTO", &teams_key),
            ("FORMATS", spec.teams_formats),
            ("RTPMAPS", &sdp_lines(spec.teams_rtpmaps)),
            ("OFFER_CHECK", spec.offer_check),
        ],
    );
    let teams_sipp = sipp(
        "Teams SIPp UAS (generated media)",
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
            free_port_pair(TEAMS_IP).to_string(),
        ],
    );
    wait_listening_tcp((TEAMS_IP, proxy_port).into());

    let carrier_port = free_udp_port(CARRIER_IP);
    let carrier_dir = lab.path().join("carrier");
    let carrier_media = carrier.local_addr().unwrap();
    let carrier_path = scenario_in(
        "generated",
        &carrier_dir,
        "carrier_uac.xml",
        &[
            ("CALLER", PSTN_CALLER),
            ("MEDIA_IP", &carrier_media.ip().to_string()),
            ("MEDIA_PORT", &carrier_media.port().to_string()),
            ("FORMATS", spec.carrier_formats),
            ("RTPMAPS", &sdp_lines(spec.carrier_rtpmaps)),
            ("ANSWER_CHECK", spec.answer_check),
            ("ANSWER_NOT", spec.answer_not),
            ("HOLD_MS", &spec.hold_ms.to_string()),
        ],
    );
    let carrier_sipp = sipp(
        "carrier SIPp UAC (generated media)",
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
            free_port_pair(CARRIER_IP).to_string(),
        ],
    );

    let (sbc_teams, sbc_key) = wait_logged(&teams_dir, "SBC-OFFER ");
    assert_ne!(sbc_key, teams_key, "the SBC announces its own key");
    let (sbc_carrier, profile) = wait_logged(&carrier_dir, "SBC-ANSWER ");
    assert_eq!(profile, "RTP/AVP", "plain RTP towards the carrier");
    Call {
        lab,
        teams_sipp,
        carrier_sipp,
        carrier,
        carrier_rtcp,
        teams,
        sbc_carrier,
        sbc_teams,
        teams_encrypt: srtp_context(&teams_key),
        teams_decrypt: srtp_context(&sbc_key),
    }
}

/// One RTP stream as its sender numbers it.
struct Stream {
    ssrc: u32,
    seq: u16,
    timestamp: u32,
}

impl Stream {
    fn new(ssrc: u32) -> Stream {
        Stream {
            ssrc,
            seq: rand::random::<u16>() & 0x3fff,
            timestamp: rand::random::<u32>() & 0x3fff_ffff,
        }
    }

    /// The next packet: `pt`, `payload`, a frame of `samples` later than the last.
    fn packet(&mut self, pt: u8, marker: bool, payload: &[u8], samples: u32) -> Vec<u8> {
        let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&self.timestamp.to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(samples);
        p
    }
}

fn seq_of(packet: &[u8]) -> u16 {
    u16::from_be_bytes([packet[2], packet[3]])
}

fn ssrc_of(packet: &[u8]) -> u32 {
    u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]])
}

fn ts_of(packet: &[u8]) -> u32 {
    u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]])
}

fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 8 && (192..=223).contains(&packet[1])
}

fn rtcp_packets(compound: &[u8]) -> Vec<Box<dyn Packet + Send + Sync>> {
    rtcp::packet::unmarshal(&mut Bytes::copy_from_slice(compound))
        .unwrap_or_else(|e| panic!("the SBC's RTCP does not parse ({e}): {compound:02x?}"))
}

/// The SR first in a compound (`None` for an RR), checking the CNAME chunk after it
/// (RFC 3550 §6.1).
fn sender_report(packets: &[Box<dyn Packet + Send + Sync>]) -> Option<SenderReport> {
    let first = packets.first().expect("a report");
    let ssrc = match first.as_any().downcast_ref::<ReceiverReport>() {
        Some(rr) => rr.ssrc,
        None => {
            first
                .as_any()
                .downcast_ref::<SenderReport>()
                .expect("SR or RR first")
                .ssrc
        }
    };
    let sdes = packets
        .get(1)
        .and_then(|p| p.as_any().downcast_ref::<SourceDescription>())
        .expect("an SDES after the SR");
    assert_eq!(sdes.chunks[0].source, ssrc);
    assert_eq!(sdes.chunks[0].items[0].sdes_type, SdesType::SdesCname);
    first.as_any().downcast_ref::<SenderReport>().cloned()
}

/// NTP seconds of the wall clock now.
fn ntp_seconds_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2_208_988_800
}

/// Row 46: a carrier that sends no RTCP (and a Teams that sends none either, at first):
/// the SBC's own reports reach both, SRTCP towards Teams (decrypted by webrtc-srtp), built
/// from what it sent and received; then Teams' own SR reaches the carrier with the counts
/// of what the carrier got.
#[test]
fn row46_teams_gets_srtcp_reports_when_the_carrier_sends_no_rtcp() {
    let mut call = start_call(CallSpec {
        media_base: 53400,
        carrier_formats: "0",
        carrier_rtpmaps: &["a=rtpmap:0 PCMU/8000"],
        teams_formats: "0",
        teams_rtpmaps: &["a=rtpmap:0 PCMU/8000"],
        offer_check: "m=audio [0-9]+ RTP/SAVP 0",
        answer_check: "m=audio [0-9]+ RTP/AVP 0",
        answer_not: "a=crypto",
        hold_ms: 25_000,
    });
    let mut from_carrier = Stream::new(CARRIER_SSRC);
    let mut from_teams = Stream::new(TEAMS_SSRC);
    let first_teams_seq = from_teams.seq;
    let mut teams_seqs = Vec::new();
    // What each end got of the RTP, and the reports with the RTP count at their arrival.
    let (mut rtp_at_teams, mut rtp_at_carrier) = (0u32, 0u32);
    let mut teams_reports: Vec<(SenderReport, u32)> = Vec::new();
    let mut carrier_reports: Vec<(SenderReport, u32)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut frame = 0u32;
    while teams_reports.len() < 2 || carrier_reports.is_empty() {
        assert!(
            Instant::now() < deadline,
            "reports so far: {} to Teams, {} to the carrier",
            teams_reports.len(),
            carrier_reports.len()
        );
        let packet = from_carrier.packet(0, false, &[0x55; 160], 160);
        call.carrier.send_to(&packet, call.sbc_carrier).unwrap();
        if frame == 10 {
            // Two packets of Teams' stream never arrive: its loss.
            from_teams.seq = from_teams.seq.wrapping_add(2);
        }
        teams_seqs.push(from_teams.seq);
        let packet = from_teams.packet(0, false, &[0x2a; 160], 160);
        let protected = call.teams_encrypt.encrypt_rtp(&packet).unwrap();
        call.teams.send_to(&protected, call.sbc_teams).unwrap();
        frame += 1;

        for datagram in drain(&call.teams) {
            if is_rtcp(&datagram) {
                let plain = call
                    .teams_decrypt
                    .decrypt_rtcp(&datagram)
                    .expect("SRTCP from the SBC under its key");
                match sender_report(&rtcp_packets(&plain)) {
                    Some(sr) => teams_reports.push((sr, rtp_at_teams)),
                    // A receiver report only while the SBC had sent Teams nothing.
                    None => assert_eq!(rtp_at_teams, 0, "an RR while sending"),
                }
            } else {
                call.teams_decrypt
                    .decrypt_rtp(&datagram)
                    .expect("SRTP from the SBC under its key");
                rtp_at_teams += 1;
            }
        }
        rtp_at_carrier += drain(&call.carrier).iter().filter(|p| !is_rtcp(p)).count() as u32;
        for datagram in drain(&call.carrier_rtcp) {
            match sender_report(&rtcp_packets(&datagram)) {
                Some(sr) => carrier_reports.push((sr, rtp_at_carrier)),
                None => assert_eq!(rtp_at_carrier, 0, "an RR while sending"),
            }
        }
    }

    for (sr, rtp) in &teams_reports {
        assert_eq!(sr.ssrc, CARRIER_SSRC, "the stream the SBC sends Teams");
        assert_eq!(
            (sr.packet_count, sr.octet_count),
            (*rtp, 160 * rtp),
            "exactly what reached Teams before it"
        );
        let (seconds, now) = (sr.ntp_time >> 32, ntp_seconds_now());
        assert!(
            seconds <= now && seconds + 60 >= now,
            "NTP time is the wall clock"
        );
        let block = &sr.reports[0];
        assert_eq!(block.ssrc, TEAMS_SSRC, "a block on Teams' stream");
        assert_eq!(block.total_lost, 2);
        let highest = block.last_sequence_number as u16;
        assert!(teams_seqs.contains(&highest), "{highest} was sent");
        assert!(highest.wrapping_sub(first_teams_seq) < 0x8000);
        assert_eq!(block.last_sender_report, 0, "Teams sent no SR");
    }
    let (sr, rtp) = &carrier_reports[0];
    assert_eq!(sr.ssrc, TEAMS_SSRC);
    assert_eq!((sr.packet_count, sr.octet_count), (*rtp, 160 * rtp));
    assert_eq!(sr.reports[0].ssrc, CARRIER_SSRC);
    assert_eq!(sr.reports[0].total_lost, 0);

    // Teams' own report from now on: relayed, with the counts of what the carrier got.
    let teams_sr = SenderReport {
        ssrc: TEAMS_SSRC,
        ntp_time: 0x0123_4567_89ab_cdef,
        rtp_time: from_teams.timestamp,
        packet_count: 999,
        octet_count: 999_999,
        ..Default::default()
    };
    let compound =
        rtcp::packet::marshal(&[Box::new(teams_sr) as Box<dyn Packet + Send + Sync>]).unwrap();
    let protected = call.teams_encrypt.encrypt_rtcp(&compound).unwrap();
    call.teams.send_to(&protected, call.sbc_teams).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let relayed = loop {
        assert!(
            Instant::now() < deadline,
            "Teams' SR never reached the carrier"
        );
        rtp_at_carrier += drain(&call.carrier).iter().filter(|p| !is_rtcp(p)).count() as u32;
        let found = drain(&call.carrier_rtcp).into_iter().find_map(|datagram| {
            let packets = rtcp_packets(&datagram);
            let sr = packets
                .first()?
                .as_any()
                .downcast_ref::<SenderReport>()?
                .clone();
            (sr.ntp_time == 0x0123_4567_89ab_cdef).then_some(sr)
        });
        if let Some(sr) = found {
            break sr;
        }
    };
    assert_eq!(relayed.ssrc, TEAMS_SSRC);
    assert_eq!(
        (relayed.packet_count, relayed.octet_count),
        (rtp_at_carrier, 160 * rtp_at_carrier),
        "what the carrier received, not what Teams claims"
    );

    call.carrier_sipp.expect_success(LONG);
    call.teams_sipp.expect_success(LONG);
    assert!(
        call.lab
            .metric("media_generated_packets_total", &[("kind", "rtcp_report")])
            >= 3.0
    );
    call.lab.wait_idle();
}

/// RMS level of a PCMU payload in dBov (RFC 3389: against μ-law's overload point).
fn dbov(payload: &[u8]) -> f64 {
    let sum: f64 = payload
        .iter()
        .map(|&b| f64::from(decode(G711::Ulaw, b)).powi(2))
        .sum();
    20.0 * ((sum / payload.len() as f64).sqrt() / 32_124.0).log10()
}

/// Row 49: a carrier without CN. Teams is offered CN/8000 (the SBC makes the noise) and
/// answers with it; Teams' speech, its CN packet at -40 dBov and the silence after it (Teams
/// sends nothing, as with silence suppression), then its speech again reach the carrier as
/// one gapless PCMU stream: the CN packet as a noise frame in its place, the silence filled
/// with noise frames 20 ms apart, the speech after them.
#[test]
fn row49_teams_comfort_noise_reaches_a_carrier_without_cn_as_continuous_pcmu() {
    let mut call = start_call(CallSpec {
        media_base: 53600,
        carrier_formats: "0",
        carrier_rtpmaps: &["a=rtpmap:0 PCMU/8000"],
        teams_formats: "0 13",
        teams_rtpmaps: &["a=rtpmap:0 PCMU/8000", "a=rtpmap:13 CN/8000"],
        // Teams gets telephone-event (the carrier's DTMF is in-band, row 48) and CN.
        offer_check: "m=audio [0-9]+ RTP/SAVP 0 101 13[^ 0-9]",
        answer_check: "m=audio [0-9]+ RTP/AVP 0[^ 0-9]",
        answer_not: "CN/8000",
        hold_ms: 15_000,
    });
    const SPEECH: u8 = 0x1b;
    let mut from_teams = Stream::new(TEAMS_SSRC);
    let mut got: Vec<Vec<u8>> = Vec::new();
    let send = |call: &mut Call, packet: &[u8], got: &mut Vec<Vec<u8>>| {
        let protected = call.teams_encrypt.encrypt_rtp(packet).unwrap();
        call.teams.send_to(&protected, call.sbc_teams).unwrap();
        got.extend(drain(&call.carrier).into_iter().filter(|p| !is_rtcp(p)));
    };
    for _ in 0..25 {
        let packet = from_teams.packet(0, false, &[SPEECH; 160], 160);
        send(&mut call, &packet, &mut got);
    }
    // RFC 3389: one CN packet at the start of the silence, level -40 dBov.
    let cn = from_teams.packet(13, false, &[40], 160);
    let cn_seq = seq_of(&cn);
    send(&mut call, &cn, &mut got);
    let deadline = Instant::now() + Duration::from_secs(10);
    let after_cn = |got: &[Vec<u8>]| {
        got.iter()
            .filter(|p| seq_of(p).wrapping_sub(cn_seq) < 0x8000)
            .count()
    };
    while after_cn(&got) < 12 {
        assert!(
            Instant::now() < deadline,
            "the silence was not filled: {got:02x?}"
        );
        got.extend(drain(&call.carrier).into_iter().filter(|p| !is_rtcp(p)));
    }
    // Speech again after the silence (the sender's clock ran on through it).
    let silent_frames = after_cn(&got) as u32;
    from_teams.timestamp = from_teams.timestamp.wrapping_add(160 * silent_frames);
    for n in 0..10 {
        let packet = from_teams.packet(0, n == 0, &[SPEECH; 160], 160);
        send(&mut call, &packet, &mut got);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.iter().filter(|p| p[12..] == [SPEECH; 160]).count() < 35 {
        assert!(
            Instant::now() < deadline,
            "Teams' speech did not all arrive"
        );
        got.extend(drain(&call.carrier).into_iter().filter(|p| !is_rtcp(p)));
    }

    assert!(got.iter().all(|p| p[1] & 0x7f == 0), "PCMU only, never CN");
    assert!(got.iter().all(|p| ssrc_of(p) == TEAMS_SSRC), "one stream");
    for pair in got.windows(2) {
        assert_eq!(
            seq_of(&pair[1]),
            seq_of(&pair[0]).wrapping_add(1),
            "gapless sequence numbers"
        );
    }
    let noise_at = got.iter().position(|p| seq_of(p) == cn_seq).unwrap();
    let is_speech = |p: &Vec<u8>| p[12..] == [SPEECH; 160];
    let resumed_at = noise_at + got[noise_at..].iter().position(is_speech).unwrap();
    assert!(got[..noise_at].iter().all(is_speech));
    let noise = &got[noise_at..resumed_at];
    assert!(noise.len() >= 12, "{} noise frames", noise.len());
    for (i, frame) in noise.iter().enumerate() {
        assert_eq!(frame.len(), 12 + 160, "20 ms frames");
        let level = dbov(&frame[12..]);
        assert!((-44.0..=-36.0).contains(&level), "frame {i}: {level} dBov");
        if i > 0 {
            assert_eq!(
                ts_of(frame),
                ts_of(&noise[i - 1]).wrapping_add(160),
                "one frame of time each"
            );
        }
    }
    assert!(got[resumed_at..].iter().all(is_speech));
    assert_eq!(got[resumed_at][1], 0x80, "the talkspurt's marker kept");
    assert!(
        call.lab.metric(
            "media_generated_packets_total",
            &[("kind", "comfort_noise")]
        ) >= 11.0
    );

    call.carrier_sipp.expect_success(LONG);
    call.teams_sipp.expect_success(LONG);
    call.lab.wait_idle();
}
