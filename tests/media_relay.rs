//! End-to-end media relay tests over loopback UDP: Rust endpoints send through the engine's
//! worker threads and real sockets. SRTP on the wire is checked with `webrtc-srtp` as an
//! independent oracle. Rows of docs/teams-direct-routing.md §6 are cited where proven.
//!
//! Each test binds the engine on its own loopback address (127.0.x.y) so parallel tests
//! never compete for ports. The Teams end of a session is always SRTP ([`TeamsPeer`]): the
//! Teams leg passes nothing else.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use teams_sbc::media::srtp::{KeyMaterial, SrtpSuite};
use teams_sbc::media::{
    InterfaceSettings, LatchingMode, LegSide, MapDirection, MediaEngine, MediaEvent, MediaEvents,
    MediaHandle, MediaSettings, PayloadMapping, SessionAllocation, SrtpKeys,
};
use webrtc_srtp::context::Context as OracleContext;
use webrtc_srtp::protection_profile::ProtectionProfile;

const WAIT: Duration = Duration::from_secs(5);

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 31, last))
}

fn settings(bind: IpAddr, latching: LatchingMode) -> MediaSettings {
    MediaSettings {
        interfaces: vec![
            InterfaceSettings::new("carrier", bind, 42000, 42999),
            InterfaceSettings::new("teams", bind, 43000, 43999),
        ],
        workers: 2,
        latching,
        ..MediaSettings::default()
    }
}

struct Relay {
    handle: MediaHandle,
    events: MediaEvents,
    registry: prometheus::Registry,
}

impl Relay {
    fn start(settings: MediaSettings) -> Self {
        let registry = prometheus::Registry::new();
        let (handle, events) = MediaEngine::start(settings, &registry).unwrap();
        Self {
            handle,
            events,
            registry,
        }
    }

    fn metrics_text(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap()
    }

    /// Polls (bounded) until the metrics text contains `line`.
    fn wait_metric(&self, line: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.metrics_text();
            if text.contains(line) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "metric {line:?} never seen in:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_event(&mut self, wanted: impl Fn(&MediaEvent) -> bool) -> MediaEvent {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.events.try_recv() {
                Ok(event) if wanted(&event) => return event,
                Ok(_) => continue,
                Err(_) => {
                    assert!(Instant::now() < deadline, "event never arrived");
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

fn endpoint(bind: IpAddr) -> UdpSocket {
    let s = UdpSocket::bind(SocketAddr::new(bind, 0)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    let (n, from) = socket
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("nothing received on {:?}: {e}", socket.local_addr()));
    (buf[..n].to_vec(), from)
}

fn rtp(pt: u8, seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(seq as u32).wrapping_mul(160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn payload(seq: u16) -> Vec<u8> {
    (0..160).map(|i| (i as u16 ^ seq) as u8).collect()
}

fn key(byte: u8) -> KeyMaterial {
    KeyMaterial::new([byte; 16], [byte ^ 0x5a; 14])
}

fn srtp_keys(byte: u8) -> SrtpKeys {
    SrtpKeys::new(SrtpSuite::AesCm128HmacSha1_80, key(byte))
}

fn oracle(byte: u8) -> OracleContext {
    let k = key(byte);
    OracleContext::new(
        k.master_key(),
        k.master_salt(),
        ProtectionProfile::Aes128CmHmacSha1_80,
        None,
        None,
    )
    .unwrap()
}

/// Key the Teams end of [`connect`] sends under, and the key the relay sends it under.
const TEAMS_KEY: u8 = 60;
const SBC_KEY: u8 = 61;

/// The Teams end of a session: sends SRTP under `TEAMS_KEY`, decrypts what arrives under
/// `SBC_KEY` (webrtc-srtp, so the wire format is checked on every packet).
struct TeamsPeer {
    socket: UdpSocket,
    encrypt: OracleContext,
    decrypt: OracleContext,
}

impl TeamsPeer {
    fn new(bind: IpAddr) -> Self {
        Self {
            socket: endpoint(bind),
            encrypt: oracle(TEAMS_KEY),
            decrypt: oracle(SBC_KEY),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    fn send_rtp(&mut self, packet: &[u8], to: SocketAddr) {
        let srtp = self.encrypt.encrypt_rtp(packet).unwrap();
        self.socket.send_to(&srtp, to).unwrap();
    }

    /// The next packet, decrypted, and where it came from.
    fn recv_rtp(&mut self) -> (Vec<u8>, SocketAddr) {
        let (srtp, from) = recv(&self.socket);
        let plain = self
            .decrypt
            .decrypt_rtp(&srtp)
            .expect("SRTP from the relay authenticates");
        (plain.to_vec(), from)
    }
}

/// A session with both remotes set to the given endpoints (carrier not muxing) and the
/// Teams leg keyed for `TeamsPeer`.
fn connect(
    relay: &Relay,
    carrier: &UdpSocket,
    carrier_rtcp: Option<&UdpSocket>,
    teams: &TeamsPeer,
) -> SessionAllocation {
    connect_to(relay, carrier, carrier_rtcp, teams.addr(), &[])
}

/// [`connect`] with the Teams remote at `teams` and the carrier trunk's networks.
fn connect_to(
    relay: &Relay,
    carrier: &UdpSocket,
    carrier_rtcp: Option<&UdpSocket>,
    teams: SocketAddr,
    trunk_networks: &[IpNet],
) -> SessionAllocation {
    let s = relay
        .handle
        .create_session("carrier", "teams", trunk_networks)
        .unwrap();
    relay
        .handle
        .set_srtp(
            s.id,
            LegSide::Teams,
            Some(srtp_keys(TEAMS_KEY)),
            Some(srtp_keys(SBC_KEY)),
        )
        .unwrap();
    relay
        .handle
        .set_remote(
            s.id,
            LegSide::Carrier,
            carrier.local_addr().unwrap(),
            carrier_rtcp.map(|r| r.local_addr().unwrap()),
            false,
        )
        .unwrap();
    relay
        .handle
        .set_remote(s.id, LegSide::Teams, teams, None, true)
        .unwrap();
    s
}

fn exchange_both_ways(batch_io: bool, bind: IpAddr) {
    let mut settings = settings(bind, LatchingMode::Off);
    settings.batch_io = batch_io;
    let relay = Relay::start(settings);
    let carrier = endpoint(bind);
    let mut teams = TeamsPeer::new(bind);
    let s = connect(&relay, &carrier, None, &teams);
    assert_eq!(s.carrier.rtp.port() % 2, 0);
    assert_eq!(s.carrier.rtcp.port(), s.carrier.rtp.port() + 1);
    assert_eq!(s.teams.rtcp, s.teams.rtp, "Teams leg muxes RTCP");
    relay
        .handle
        .set_payload_map(
            s.id,
            MapDirection::CarrierToTeams,
            &[PayloadMapping::new(101, 96), PayloadMapping::new(0, 0)],
        )
        .unwrap();
    relay
        .handle
        .set_payload_map(
            s.id,
            MapDirection::TeamsToCarrier,
            &[PayloadMapping::new(96, 101)],
        )
        .unwrap();
    const N: u16 = 20;
    for seq in 0..N {
        let pt = if seq % 5 == 4 { 101 } else { 0 };
        carrier
            .send_to(&rtp(pt, seq, 1, &payload(seq)), s.carrier.rtp)
            .unwrap();
        let (got, from) = teams.recv_rtp();
        assert_eq!(from, s.teams.rtp, "sent from the Teams leg's own port");
        let expected_pt = if pt == 101 { 96 } else { 0 };
        assert_eq!(got, rtp(expected_pt, seq, 1, &payload(seq)));

        let pt = if seq % 5 == 4 { 96 } else { 8 };
        teams.send_rtp(&rtp(pt, seq, 2, &payload(seq)), s.teams.rtp);
        let (got, from) = recv(&carrier);
        assert_eq!(from, s.carrier.rtp);
        let expected_pt = if pt == 96 { 101 } else { 8 };
        assert_eq!(got, rtp(expected_pt, seq, 2, &payload(seq)));
    }
    let stats = relay.handle.stats(s.id).unwrap();
    let bytes = N as u64 * 172;
    let srtp_bytes = N as u64 * (172 + 10);
    assert_eq!(
        (stats.carrier.rx_packets, stats.carrier.rx_bytes),
        (N as u64, bytes)
    );
    assert_eq!(
        (stats.teams.tx_packets, stats.teams.tx_bytes),
        (N as u64, srtp_bytes)
    );
    assert_eq!(
        (stats.teams.rx_packets, stats.carrier.tx_packets),
        (N as u64, N as u64)
    );
    assert_eq!((stats.carrier.lost, stats.teams.lost), (0, 0));
    assert!(stats.carrier.last_rx_millis.is_some());
    relay.wait_metric("media_packets_total{direction=\"carrier_to_teams\"} 20");
    relay.wait_metric("media_packets_total{direction=\"teams_to_carrier\"} 20");
    relay.wait_metric(&format!(
        "media_bytes_total{{direction=\"carrier_to_teams\"}} {srtp_bytes}"
    ));
    relay.wait_metric("media_sessions_active 1");
    relay.wait_metric("media_legs_active 2");
    relay.handle.remove_session(s.id).unwrap();
    relay.wait_metric("media_sessions_active 0");
    assert!(relay.handle.stats(s.id).is_none());
}

#[test]
fn endpoints_exchange_media_both_ways_with_payload_types_mapped() {
    exchange_both_ways(true, ip(1));
}

#[test]
fn plain_recv_send_fallback_forwards_the_same() {
    exchange_both_ways(false, ip(2));
}

#[test]
fn loss_from_sequence_gaps_is_counted_per_leg() {
    let bind = ip(13);
    let relay = Relay::start(settings(bind, LatchingMode::Off));
    let carrier = endpoint(bind);
    let mut teams = TeamsPeer::new(bind);
    let s = connect(&relay, &carrier, None, &teams);
    let sent: Vec<u16> = (0..20).filter(|seq| ![3, 4, 11].contains(seq)).collect();
    for &seq in &sent {
        carrier
            .send_to(&rtp(0, seq, 77, &payload(seq)), s.carrier.rtp)
            .unwrap();
        assert_eq!(teams.recv_rtp().0, rtp(0, seq, 77, &payload(seq)));
    }
    let stats = relay.handle.stats(s.id).unwrap();
    assert_eq!(stats.carrier.rx_packets, sent.len() as u64);
    assert_eq!(stats.carrier.lost, 3);
    assert_eq!(stats.teams.lost, 0);
}

/// Rows 43/45: RTP in, SRTP (AES_CM_128_HMAC_SHA1_80) between two sessions' Teams legs,
/// RTP out; the wire format is checked with webrtc-srtp.
#[test]
fn rtp_to_srtp_and_back_through_two_sessions() {
    let bind = ip(3);
    let relay = Relay::start(settings(bind, LatchingMode::Off));
    let caller = endpoint(bind);
    let callee = endpoint(bind);
    let wire = endpoint(bind);
    let a = relay
        .handle
        .create_session("carrier", "teams", &[])
        .unwrap();
    let b = relay
        .handle
        .create_session("carrier", "teams", &[])
        .unwrap();
    let h = &relay.handle;
    h.set_remote(
        a.id,
        LegSide::Carrier,
        caller.local_addr().unwrap(),
        None,
        false,
    )
    .unwrap();
    h.set_remote(
        b.id,
        LegSide::Carrier,
        callee.local_addr().unwrap(),
        None,
        false,
    )
    .unwrap();
    // A's Teams leg sends to the wire tap, which passes packets on to B's Teams leg.
    h.set_remote(a.id, LegSide::Teams, wire.local_addr().unwrap(), None, true)
        .unwrap();
    h.set_remote(b.id, LegSide::Teams, wire.local_addr().unwrap(), None, true)
        .unwrap();
    h.set_srtp(a.id, LegSide::Teams, Some(srtp_keys(2)), Some(srtp_keys(1)))
        .unwrap();
    h.set_srtp(b.id, LegSide::Teams, Some(srtp_keys(1)), Some(srtp_keys(2)))
        .unwrap();
    let mut tap_a_to_b = oracle(1);
    let mut tap_b_to_a = oracle(2);
    for seq in 100..130u16 {
        let sent = rtp(0, seq, 0xabc, &payload(seq));
        caller.send_to(&sent, a.carrier.rtp).unwrap();
        let (srtp, from) = recv(&wire);
        assert_eq!(from, a.teams.rtp);
        assert_eq!(srtp.len(), sent.len() + 10, "80-bit tag");
        assert_ne!(&srtp[12..sent.len()], &sent[12..], "payload is encrypted");
        let plain = tap_a_to_b.decrypt_rtp(&srtp).expect("oracle authenticates");
        assert_eq!(&plain[..], &sent[..]);
        wire.send_to(&srtp, b.teams.rtp).unwrap();
        let (out, _) = recv(&callee);
        assert_eq!(out, sent, "payload out equals payload in");

        let back = rtp(8, seq, 0xdef, &payload(seq + 1));
        callee.send_to(&back, b.carrier.rtp).unwrap();
        let (srtp, _) = recv(&wire);
        assert_eq!(&tap_b_to_a.decrypt_rtp(&srtp).unwrap()[..], &back[..]);
        wire.send_to(&srtp, a.teams.rtp).unwrap();
        assert_eq!(recv(&caller).0, back);
    }
    let stats = h.stats(b.id).unwrap();
    assert_eq!(stats.teams.srtp_auth_failures, 0);
    assert_eq!(stats.teams.rx_packets, 30);
}

#[test]
fn srtp_packet_with_bad_tag_is_dropped_and_counted() {
    let bind = ip(4);
    let relay = Relay::start(settings(bind, LatchingMode::Off));
    let carrier = endpoint(bind);
    let teams = TeamsPeer::new(bind);
    let s = connect(&relay, &carrier, None, &teams);
    relay
        .handle
        .set_srtp(s.id, LegSide::Teams, Some(srtp_keys(7)), Some(srtp_keys(8)))
        .unwrap();
    let mut sender = oracle(7);
    let good1 = sender.encrypt_rtp(&rtp(0, 1, 5, &payload(1))).unwrap();
    let mut bad = sender
        .encrypt_rtp(&rtp(0, 2, 5, &payload(2)))
        .unwrap()
        .to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    let good3 = sender.encrypt_rtp(&rtp(0, 3, 5, &payload(3))).unwrap();
    for packet in [&good1[..], &bad[..], &good3[..]] {
        teams.socket.send_to(packet, s.teams.rtp).unwrap();
    }
    assert_eq!(recv(&carrier).0, rtp(0, 1, 5, &payload(1)));
    // The next packet to arrive is #3: #2 was dropped.
    assert_eq!(recv(&carrier).0, rtp(0, 3, 5, &payload(3)));
    let stats = relay.handle.stats(s.id).unwrap();
    assert_eq!(stats.teams.srtp_auth_failures, 1);
    assert_eq!(stats.teams.dropped, 1);
    assert_eq!(stats.carrier.tx_packets, 2);
    relay.wait_metric("media_srtp_auth_failures_total 1");
    relay.wait_metric("media_packets_dropped_total{reason=\"srtp_auth\"} 1");
}

/// rtpengine issue #1443: after a re-key the rollover counter must restart at 0. The relay
/// wraps the sequence number (ROC 1) under the first key; under the second key a fresh
/// receiver (ROC 0) must authenticate the very next packets.
#[test]
fn rekey_mid_stream_restarts_rollover_counter_and_media_continues() {
    let bind = ip(5);
    let relay = Relay::start(settings(bind, LatchingMode::Off));
    let carrier = endpoint(bind);
    let teams = TeamsPeer::new(bind);
    let s = connect(&relay, &carrier, None, &teams);
    let h = &relay.handle;
    h.set_srtp(
        s.id,
        LegSide::Teams,
        Some(srtp_keys(20)),
        Some(srtp_keys(21)),
    )
    .unwrap();
    let mut receiver = oracle(21);
    let mut sender = oracle(20);
    let seqs: Vec<u16> = (65530..=65535).chain(0..5).collect();
    for &seq in &seqs {
        let sent = rtp(0, seq, 9, &payload(seq));
        carrier.send_to(&sent, s.carrier.rtp).unwrap();
        let (srtp, _) = recv(&teams.socket);
        assert_eq!(&receiver.decrypt_rtp(&srtp).unwrap()[..], &sent[..]);
        // And the other way, so the inbound context wraps as well.
        let up = rtp(0, seq, 10, &payload(seq));
        teams
            .socket
            .send_to(&sender.encrypt_rtp(&up).unwrap(), s.teams.rtp)
            .unwrap();
        assert_eq!(recv(&carrier).0, up);
    }
    h.set_srtp(
        s.id,
        LegSide::Teams,
        Some(srtp_keys(30)),
        Some(srtp_keys(31)),
    )
    .unwrap();
    let mut fresh_receiver = oracle(31);
    let mut fresh_sender = oracle(30);
    for seq in 5..15u16 {
        let sent = rtp(0, seq, 9, &payload(seq));
        carrier.send_to(&sent, s.carrier.rtp).unwrap();
        let (srtp, _) = recv(&teams.socket);
        let plain = fresh_receiver
            .decrypt_rtp(&srtp)
            .expect("packet under the new key is protected with ROC 0");
        assert_eq!(&plain[..], &sent[..]);
        let up = rtp(0, seq, 10, &payload(seq));
        teams
            .socket
            .send_to(&fresh_sender.encrypt_rtp(&up).unwrap(), s.teams.rtp)
            .unwrap();
        assert_eq!(
            recv(&carrier).0,
            up,
            "inbound context restarted at ROC 0 too"
        );
    }
    assert_eq!(h.stats(s.id).unwrap().teams.srtp_auth_failures, 0);
}

#[test]
fn strict_latching_drops_packets_from_another_source() {
    let bind = ip(6);
    let mut relay = Relay::start(settings(bind, LatchingMode::Strict { after_packets: 2 }));
    let carrier = endpoint(bind);
    let intruder = endpoint(bind);
    let mut teams = TeamsPeer::new(bind);
    // The carrier's signalled address differs from where it really sends from (NAT).
    let signalled = endpoint(bind);
    let s = connect(&relay, &signalled, None, &teams);
    for seq in 0..3u16 {
        carrier
            .send_to(&rtp(0, seq, 1, &payload(seq)), s.carrier.rtp)
            .unwrap();
        assert_eq!(teams.recv_rtp().0, rtp(0, seq, 1, &payload(seq)));
    }
    let latched = relay.wait_event(|e| matches!(e, MediaEvent::Latched { .. }));
    assert_eq!(
        latched,
        MediaEvent::Latched {
            session: s.id,
            leg: LegSide::Carrier,
            remote: carrier.local_addr().unwrap()
        }
    );
    intruder
        .send_to(&rtp(0, 3, 1, b"intruder"), s.carrier.rtp)
        .unwrap();
    carrier
        .send_to(&rtp(0, 4, 1, &payload(4)), s.carrier.rtp)
        .unwrap();
    assert_eq!(
        teams.recv_rtp().0,
        rtp(0, 4, 1, &payload(4)),
        "intruder's packet dropped"
    );
    // Media back from Teams goes to the latched source, not the signalled address.
    teams.send_rtp(&rtp(0, 1, 2, b"back"), s.teams.rtp);
    assert_eq!(recv(&carrier).0, rtp(0, 1, 2, b"back"));
    assert_eq!(relay.handle.stats(s.id).unwrap().carrier.dropped, 1);
    relay.wait_metric("media_packets_dropped_total{reason=\"latching\"} 1");
}

/// RTP Bleed: mid-call, RTP and RTCP sent to the carrier leg's ports from a foreign address
/// (127.0.0.66: neither the signalled host nor in the trunk's networks) and from a trunk
/// host that is not the latched source are dropped and counted, and the genuine stream (from
/// another host of the trunk's networks than the one its SDP names: a NAT) reaches Teams
/// unchanged and in order, without a single injected packet in between.
#[test]
fn rtp_bleed_injection_into_the_carrier_leg_is_dropped_and_counted() {
    let bind = ip(14);
    let mut relay = Relay::start(settings(bind, LatchingMode::Strict { after_packets: 3 }));
    let signalled = endpoint(bind);
    let carrier = endpoint(ip(15));
    let trunk_neighbour = endpoint(ip(15));
    let foreign = endpoint(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 66)));
    let mut teams = TeamsPeer::new(bind);
    let trunk: IpNet = "127.0.31.14/31".parse().unwrap();
    let s = connect_to(&relay, &signalled, None, teams.addr(), &[trunk]);
    const GENUINE: u16 = 40;
    let mut injected = 0;
    for seq in 0..GENUINE {
        carrier
            .send_to(&rtp(0, seq, 0x5eed, &payload(seq)), s.carrier.rtp)
            .unwrap();
        assert_eq!(
            teams.recv_rtp().0,
            rtp(0, seq, 0x5eed, &payload(seq)),
            "genuine packet {seq}, and nothing injected before it"
        );
        if seq >= 5 {
            // Mid-call: the latch is on the carrier's source since packet 2.
            let forged = rtp(0, seq + 1, 0x5eed, b"injected audio");
            foreign.send_to(&forged, s.carrier.rtp).unwrap();
            trunk_neighbour.send_to(&forged, s.carrier.rtp).unwrap();
            injected += 1;
        }
    }
    let latched = relay.wait_event(|e| matches!(e, MediaEvent::Latched { .. }));
    assert_eq!(
        latched,
        MediaEvent::Latched {
            session: s.id,
            leg: LegSide::Carrier,
            remote: carrier.local_addr().unwrap()
        }
    );
    // RTCP to the carrier RTCP port from the foreign host: dropped as well.
    foreign
        .send_to(&[0x80, 201, 0, 1, 0, 0, 0x5e, 0xed], s.carrier.rtcp)
        .unwrap();
    relay.wait_metric(&format!(
        "media_packets_dropped_total{{reason=\"unknown_source\"}} {}",
        injected + 1
    ));
    relay.wait_metric(&format!(
        "media_packets_dropped_total{{reason=\"latching\"}} {injected}"
    ));
    relay.wait_metric(&format!(
        "media_packets_total{{direction=\"carrier_to_teams\"}} {GENUINE}"
    ));
    let stats = relay.handle.stats(s.id).unwrap();
    assert_eq!(stats.carrier.dropped, 2 * injected + 1);
    assert_eq!(stats.teams.tx_packets, u64::from(GENUINE));
    // And media back from Teams still goes to the genuine source.
    teams.send_rtp(&rtp(0, 1, 2, b"back"), s.teams.rtp);
    assert_eq!(recv(&carrier).0, rtp(0, 1, 2, b"back"));
}

/// Plain RTP (and RTCP) sent to a Teams leg is never forwarded: dropped and counted as
/// `not_srtp` while the leg has no keys yet (it used to go to the carrier as it was), and
/// as an authentication failure once it has; the carrier's media never leaves towards
/// Teams in the clear either. Only SRTP under Teams' key gets through.
#[test]
fn row43_plain_rtp_sent_to_a_teams_leg_is_dropped_and_counted() {
    let bind = ip(16);
    let relay = Relay::start(settings(bind, LatchingMode::Strict { after_packets: 3 }));
    let carrier = endpoint(bind);
    let mut teams = TeamsPeer::new(bind);
    let h = &relay.handle;
    let s = h.create_session("carrier", "teams", &[]).unwrap();
    h.set_remote(
        s.id,
        LegSide::Carrier,
        carrier.local_addr().unwrap(),
        None,
        false,
    )
    .unwrap();
    h.set_remote(s.id, LegSide::Teams, teams.addr(), None, true)
        .unwrap();
    for seq in 0..5u16 {
        teams
            .socket
            .send_to(&rtp(0, seq, 7, b"plain from teams"), s.teams.rtp)
            .unwrap();
    }
    teams
        .socket
        .send_to(&[0x80, 201, 0, 1, 0, 0, 0, 7], s.teams.rtp)
        .unwrap();
    carrier
        .send_to(&rtp(0, 1, 9, b"carrier audio"), s.carrier.rtp)
        .unwrap();
    relay.wait_metric("media_packets_dropped_total{reason=\"not_srtp\"} 6");
    relay.wait_metric("media_packets_dropped_total{reason=\"srtp_protect\"} 1");

    h.set_srtp(
        s.id,
        LegSide::Teams,
        Some(srtp_keys(TEAMS_KEY)),
        Some(srtp_keys(SBC_KEY)),
    )
    .unwrap();
    teams
        .socket
        .send_to(&rtp(0, 5, 7, b"plain after keys"), s.teams.rtp)
        .unwrap();
    teams.send_rtp(&rtp(0, 6, 7, b"srtp"), s.teams.rtp);
    assert_eq!(
        recv(&carrier).0,
        rtp(0, 6, 7, b"srtp"),
        "the first packet the carrier gets is the authenticated one"
    );
    carrier
        .send_to(&rtp(0, 2, 9, b"carrier audio"), s.carrier.rtp)
        .unwrap();
    assert_eq!(teams.recv_rtp().0, rtp(0, 2, 9, b"carrier audio"));
    relay.wait_metric("media_packets_dropped_total{reason=\"srtp_auth\"} 1");
    let stats = h.stats(s.id).unwrap();
    assert_eq!(stats.teams.dropped, 7);
    assert_eq!(stats.carrier.tx_packets, 1);
}

/// Row 45: the carrier sends RTCP on its own port; Teams gets it muxed on the RTP port as
/// SRTCP, and SRTCP from Teams reaches the carrier's RTCP port in the clear.
#[test]
fn carrier_rtcp_port_is_muxed_as_srtcp_towards_teams() {
    let bind = ip(7);
    let relay = Relay::start(settings(bind, LatchingMode::Off));
    let carrier = endpoint(bind);
    let carrier_rtcp = endpoint(bind);
    let teams = TeamsPeer::new(bind);
    let s = connect(&relay, &carrier, Some(&carrier_rtcp), &teams);
    relay
        .handle
        .set_srtp(
            s.id,
            LegSide::Teams,
            Some(srtp_keys(40)),
            Some(srtp_keys(41)),
        )
        .unwrap();
    // Sender report: header, SSRC, NTP, RTP ts, counts (28 bytes).
    let mut sr = vec![0x80, 200, 0, 6];
    sr.extend_from_slice(&0x1111_2222u32.to_be_bytes());
    sr.extend_from_slice(&[7u8; 20]);
    carrier_rtcp.send_to(&sr, s.carrier.rtcp).unwrap();
    let (srtcp, from) = recv(&teams.socket);
    assert_eq!(from, s.teams.rtp, "muxed on the Teams RTP port");
    assert_eq!(srtcp.len(), sr.len() + 4 + 10);
    let mut receiver = oracle(41);
    assert_eq!(&receiver.decrypt_rtcp(&srtcp).unwrap()[..], &sr[..]);

    let mut rr = vec![0x80, 201, 0, 1];
    rr.extend_from_slice(&0x3333_4444u32.to_be_bytes());
    let mut sender = oracle(40);
    teams
        .socket
        .send_to(&sender.encrypt_rtcp(&rr).unwrap(), s.teams.rtp)
        .unwrap();
    let (plain, from) = recv(&carrier_rtcp);
    assert_eq!(from, s.carrier.rtcp, "sent from the carrier RTCP port");
    assert_eq!(plain, rr);
    let stats = relay.handle.stats(s.id).unwrap();
    assert_eq!(
        (stats.carrier.rtcp_rx_packets, stats.teams.rtcp_rx_packets),
        (1, 1)
    );
}

#[test]
fn inactivity_is_reported_and_hold_suppresses_it() {
    let bind = ip(8);
    let mut settings = settings(bind, LatchingMode::Off);
    settings.inactivity_timeout = Duration::from_millis(150);
    let mut relay = Relay::start(settings);
    let carrier = endpoint(bind);
    let mut teams = TeamsPeer::new(bind);
    let s = connect(&relay, &carrier, None, &teams);
    relay.handle.set_hold(s.id, LegSide::Teams, true).unwrap();
    carrier
        .send_to(&rtp(0, 1, 1, &payload(1)), s.carrier.rtp)
        .unwrap();
    teams.recv_rtp();
    let event = relay.wait_event(|e| matches!(e, MediaEvent::Inactive { .. }));
    assert_eq!(
        event,
        MediaEvent::Inactive {
            session: s.id,
            leg: LegSide::Carrier
        }
    );
    // Both legs are polled in the same pass, carrier first: a Teams report would already
    // be queued.
    while let Ok(e) = relay.events.try_recv() {
        assert!(
            !matches!(
                e,
                MediaEvent::Inactive {
                    leg: LegSide::Teams,
                    ..
                }
            ),
            "held leg reported"
        );
    }
    // Media again: the carrier leg recovers.
    carrier
        .send_to(&rtp(0, 2, 1, &payload(2)), s.carrier.rtp)
        .unwrap();
    teams.recv_rtp();
    relay.wait_event(|e| {
        *e == MediaEvent::Active {
            session: s.id,
            leg: LegSide::Carrier,
        }
    });
    // Off hold with no media: the Teams leg is reported after a fresh timeout.
    relay.handle.set_hold(s.id, LegSide::Teams, false).unwrap();
    relay.wait_event(|e| {
        *e == MediaEvent::Inactive {
            session: s.id,
            leg: LegSide::Teams,
        }
    });
}

#[test]
fn sessions_get_distinct_ports_and_release_them() {
    let bind = ip(9);
    let mut s = settings(bind, LatchingMode::Off);
    s.interfaces[0].port_min = 44000;
    s.interfaces[0].port_max = 44009; // five pairs
    let relay = Relay::start(s);
    let sessions: Vec<_> = (0..5)
        .map(|_| {
            relay
                .handle
                .create_session("carrier", "teams", &[])
                .unwrap()
        })
        .collect();
    let mut ports: Vec<u16> = sessions
        .iter()
        .flat_map(|s| {
            [
                s.carrier.rtp.port(),
                s.carrier.rtcp.port(),
                s.teams.rtp.port(),
            ]
        })
        .collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 15);
    assert!(relay
        .handle
        .create_session("carrier", "teams", &[])
        .is_err());
    assert!(relay.handle.create_session("nope", "teams", &[]).is_err());
    relay.handle.remove_session(sessions[2].id).unwrap();
    // The freed pair is usable again once the worker has closed its sockets.
    let deadline = Instant::now() + WAIT;
    loop {
        match relay.handle.create_session("carrier", "teams", &[]) {
            Ok(again) => {
                assert_eq!(again.carrier.rtp.port(), sessions[2].carrier.rtp.port());
                break;
            }
            Err(_) => {
                assert!(Instant::now() < deadline, "port pair never came back");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    relay.wait_metric("media_sessions_active 5");
}

/// The load benchmark opens 5,000 sessions: 3 sockets each must fit a 20,000-fd limit.
#[test]
fn five_thousand_sessions_fit_the_fd_budget() {
    let bind = ip(10);
    let mut s = settings(bind, LatchingMode::Off);
    s.interfaces[0].port_min = 40000;
    s.interfaces[0].port_max = 50999;
    s.interfaces[1].port_min = 51000;
    s.interfaces[1].port_max = 59999;
    let relay = Relay::start(s);
    let ids: Vec<_> = (0..5000)
        .map(|n| {
            relay
                .handle
                .create_session("carrier", "teams", &[])
                .unwrap_or_else(|e| panic!("session {n}: {e}"))
                .id
        })
        .collect();
    assert_eq!(relay.handle.session_count(), 5000);
    relay.wait_metric("media_legs_active 10000");
    for id in ids {
        relay.handle.remove_session(id).unwrap();
    }
    relay.wait_metric("media_sessions_active 0");
}

mod ice_lite {
    //! Rows 50-52: ICE-lite through real sockets. Checks are built with the `stun` crate
    //! the way a full, controlling Teams agent sends them.

    use super::*;
    use stun::attributes::{
        ATTR_ICE_CONTROLLING, ATTR_PRIORITY, ATTR_USERNAME, ATTR_USE_CANDIDATE,
    };
    use stun::fingerprint::FINGERPRINT;
    use stun::integrity::MessageIntegrity;
    use stun::message::{Getter, Message, Setter, BINDING_REQUEST, BINDING_SUCCESS};
    use stun::textattrs::TextAttribute;
    use stun::xoraddr::XorMappedAddress;

    const UFRAG: &str = "sbcU";
    const PWD: &str = "sbcPasswordOf22Chars00";
    const TEAMS_UFRAG: &str = "teamsU";

    fn check(pwd: &str, priority: u32, use_candidate: bool) -> Message {
        let mut m = Message::new();
        m.typ = BINDING_REQUEST;
        m.new_transaction_id().unwrap();
        m.write_header();
        TextAttribute::new(ATTR_USERNAME, format!("{UFRAG}:{TEAMS_UFRAG}"))
            .add_to(&mut m)
            .unwrap();
        m.add(ATTR_PRIORITY, &priority.to_be_bytes());
        m.add(ATTR_ICE_CONTROLLING, &[9; 8]);
        // Microsoft vendor attributes (row 51): comprehension-optional, ignored.
        m.add(stun::attributes::AttrType(0x8070), &[0, 0, 0, 1]);
        if use_candidate {
            m.add(ATTR_USE_CANDIDATE, &[]);
        }
        MessageIntegrity::new_short_term_integrity(pwd.to_string())
            .add_to(&mut m)
            .unwrap();
        FINGERPRINT.add_to(&mut m).unwrap();
        m
    }

    /// Sends a check and returns the verified XOR-MAPPED-ADDRESS of the response.
    fn answered(agent: &UdpSocket, to: SocketAddr, request: &Message) -> SocketAddr {
        agent.send_to(&request.raw, to).unwrap();
        let (bytes, from) = recv(agent);
        assert_eq!(from, to, "answered from the checked address");
        let mut response = Message::new();
        response.unmarshal_binary(&bytes).unwrap();
        assert_eq!(response.typ, BINDING_SUCCESS);
        assert_eq!(response.transaction_id, request.transaction_id);
        MessageIntegrity::new_short_term_integrity(PWD.to_string())
            .check(&mut response)
            .expect("integrity with our ice-pwd");
        FINGERPRINT.check(&response).expect("fingerprint");
        let mut mapped = XorMappedAddress::default();
        mapped.get_from(&response).unwrap();
        SocketAddr::new(mapped.ip, mapped.port)
    }

    #[test]
    fn checks_from_forks_are_answered_and_use_candidate_moves_media() {
        let bind = ip(11);
        let mut relay = Relay::start(settings(bind, LatchingMode::Off));
        let carrier = endpoint(bind);
        let signalled = TeamsPeer::new(bind);
        let mut fork1 = TeamsPeer::new(bind);
        let mut fork2 = TeamsPeer::new(bind);
        let s = connect(&relay, &carrier, None, &signalled);
        relay
            .handle
            .enable_ice_lite(s.id, LegSide::Teams, UFRAG, PWD, Some(TEAMS_UFRAG), false)
            .unwrap();
        let teams_port = s.teams.rtp;
        assert_eq!(
            answered(&fork1.socket, teams_port, &check(PWD, 100, false)),
            fork1.addr()
        );
        assert_eq!(
            answered(&fork2.socket, teams_port, &check(PWD, 200, false)),
            fork2.addr()
        );
        // A check with the wrong password gets no answer: the next reply fork1 sees is
        // to its following, valid check.
        let wrong = check("wrongPasswordOf22Chars", 300, false);
        fork1.socket.send_to(&wrong.raw, teams_port).unwrap();
        let valid = check(PWD, 100, false);
        assert_eq!(answered(&fork1.socket, teams_port, &valid), fork1.addr());

        // Before nomination media goes to the highest-priority checked pair (fork2).
        carrier
            .send_to(&rtp(0, 1, 1, &payload(1)), s.carrier.rtp)
            .unwrap();
        assert_eq!(fork2.recv_rtp().0, rtp(0, 1, 1, &payload(1)));

        // fork1 nominates: media moves there.
        answered(&fork1.socket, teams_port, &check(PWD, 100, true));
        let event = relay.wait_event(|e| matches!(e, MediaEvent::IceNominated { .. }));
        assert_eq!(
            event,
            MediaEvent::IceNominated {
                session: s.id,
                leg: LegSide::Teams,
                remote: fork1.addr()
            }
        );
        carrier
            .send_to(&rtp(0, 2, 1, &payload(2)), s.carrier.rtp)
            .unwrap();
        assert_eq!(fork1.recv_rtp().0, rtp(0, 2, 1, &payload(2)));
        // Media from the other fork still reaches the carrier (early media, forking).
        fork2.send_rtp(&rtp(0, 7, 3, b"fork2"), teams_port);
        assert_eq!(recv(&carrier).0, rtp(0, 7, 3, b"fork2"));
        // ...but does not move our sending address away from the nominated pair, and
        // neither does a re-INVITE still carrying the default candidate.
        relay
            .handle
            .set_remote(s.id, LegSide::Teams, signalled.addr(), None, true)
            .unwrap();
        carrier
            .send_to(&rtp(0, 3, 1, &payload(3)), s.carrier.rtp)
            .unwrap();
        assert_eq!(fork1.recv_rtp().0, rtp(0, 3, 1, &payload(3)));
        let stats = relay.handle.stats(s.id).unwrap();
        assert_eq!(stats.teams.stun_answered, 4);
        relay.wait_metric("media_ice_checks_answered_total 4");
        relay.wait_metric("media_packets_dropped_total{reason=\"stun\"} 1");
    }

    #[test]
    fn stun_on_a_leg_without_ice_is_dropped() {
        let bind = ip(12);
        let relay = Relay::start(settings(bind, LatchingMode::Off));
        let carrier = endpoint(bind);
        let mut teams = TeamsPeer::new(bind);
        let s = connect(&relay, &carrier, None, &teams);
        teams
            .socket
            .send_to(&check(PWD, 1, true).raw, s.teams.rtp)
            .unwrap();
        teams.send_rtp(&rtp(0, 1, 1, b"after"), s.teams.rtp);
        assert_eq!(recv(&carrier).0, rtp(0, 1, 1, b"after"));
        let stats = relay.handle.stats(s.id).unwrap();
        assert_eq!((stats.teams.dropped, stats.teams.stun_answered), (1, 0));
    }
}
