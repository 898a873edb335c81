//! The whole per-packet forward step, without sockets: demultiplex, authenticate/decrypt,
//! latch, account, rewrite, encrypt, and decide where the packet goes. Workers call it for
//! every received datagram; `benches/media.rs` calls it directly to measure the in-memory
//! cost of forwarding one packet.
//!
//! It never allocates and never locks: the buffer is transformed in place and the legs
//! are borrowed mutably from the worker's own table.

use std::net::SocketAddr;

use crate::media::cipher::CipherError;
use crate::media::dtmf_convert::{Converted, ToCarrier};
use crate::media::ice_glue::{answer_stun, StunAnswer};
use crate::media::leg::{LatchVerdict, LegNotice, LegPair, LegSide, LegState, SocketRole};
use crate::media::metrics::DropReason;
use crate::media::playout::{G711Target, CLOCK_RATE, FRAME_SAMPLES};
use crate::media::rtcp::{self as reports, RelayView};
use crate::media::rtp::{self, PacketKind};
use crate::media::sys::MAX_DATAGRAM_LEN;

/// Arrival time of a packet on the worker's monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketTime {
    pub millis: u64,
    pub micros: u64,
}

impl PacketTime {
    pub fn from_micros(micros: u64) -> Self {
        Self {
            millis: micros / 1000,
            micros,
        }
    }
}

/// Where a received datagram came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingress {
    pub leg: LegSide,
    pub socket: SocketRole,
    pub from: SocketAddr,
}

/// What to do with the datagram now in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send `len` bytes of the buffer out of `leg`'s `socket` to `to`.
    Forward {
        leg: LegSide,
        socket: SocketRole,
        to: SocketAddr,
        len: usize,
    },
    /// Send `len` bytes (a STUN response now in the buffer) back out of the ingress socket.
    Reply {
        to: SocketAddr,
        len: usize,
    },
    Drop(DropReason),
}

/// Forwards one datagram of `len` bytes held in `buf` (whose tail must leave room for an
/// SRTP tag: use a buffer of `sys::PACKET_BUFFER_LEN`). On `Forward`/`Reply` the first
/// `len` bytes of `buf` are the packet to send.
///
/// Only valid RTP/RTCP (authenticated when SRTP is on, from an accepted source) counts as
/// activity for inactivity detection; STUN, garbage and rejected packets do not.
pub fn forward_step(
    pair: &mut LegPair,
    ingress: Ingress,
    buf: &mut [u8],
    len: usize,
    now: PacketTime,
) -> Action {
    let (inbound, outbound) = pair.split(ingress.leg);
    inbound.counters.on_receive(len, now.millis);
    let action = step(inbound, outbound, ingress, buf, len, now);
    match action {
        Action::Forward { len, .. } => {
            inbound.inactivity.on_activity(now.millis);
            outbound.counters.on_send(len);
        }
        // Authentic media that could not go on still proves the peer is alive.
        Action::Drop(
            DropReason::NoRemote
            | DropReason::SrtpProtect
            | DropReason::SendError
            | DropReason::UnnegotiatedPayload
            | DropReason::DtmfRedundant
            | DropReason::RingbackPlaying,
        ) => {
            inbound.inactivity.on_activity(now.millis);
            inbound.counters.on_drop();
        }
        Action::Reply { len, .. } => {
            inbound.counters.on_stun_answered();
            inbound.counters.on_send(len);
        }
        Action::Drop(reason) => {
            inbound.counters.on_drop();
            if reason == DropReason::SrtpAuth {
                inbound.counters.on_auth_failure();
            }
        }
    }
    action
}

fn step(
    inbound: &mut LegState,
    outbound: &mut LegState,
    ingress: Ingress,
    buf: &mut [u8],
    len: usize,
    now: PacketTime,
) -> Action {
    if len > MAX_DATAGRAM_LEN || len > buf.len() {
        return Action::Drop(DropReason::Malformed);
    }
    match rtp::classify(&buf[..len]) {
        PacketKind::Stun => stun(inbound, ingress, buf, len),
        PacketKind::Rtcp => rtcp(inbound, outbound, ingress, buf, len, now),
        PacketKind::Rtp if ingress.socket == SocketRole::Rtp => {
            rtp_packet(inbound, outbound, ingress, buf, len, now)
        }
        // RTP on the RTCP port is nonsense; so is anything else.
        _ => Action::Drop(DropReason::Malformed),
    }
}

fn stun(inbound: &mut LegState, ingress: Ingress, buf: &mut [u8], len: usize) -> Action {
    let Some(ice) = inbound.ice.as_mut() else {
        return Action::Drop(DropReason::Stun);
    };
    match answer_stun(&ice.credentials, buf, len, ingress.from) {
        StunAnswer::Respond {
            len,
            nominate,
            priority,
            remote_ufrag,
        } => {
            if let Some(agent) = remote_ufrag.filter(|_| nominate) {
                if ice.nominate(ingress.from, agent) {
                    inbound.remote_rtp = Some(ingress.from);
                    inbound.notice = Some(LegNotice::IceNominated(ingress.from));
                }
            } else if ice.nominated.is_none() && !ice.media_latched {
                // Before nomination and before any media: the best pair checked so far.
                if let Some(priority) = priority {
                    if ice.best_check_priority.is_none_or(|best| priority > best) {
                        ice.best_check_priority = Some(priority);
                        inbound.remote_rtp = Some(ingress.from);
                    }
                }
            }
            Action::Reply {
                to: ingress.from,
                len,
            }
        }
        StunAnswer::Drop => Action::Drop(DropReason::Stun),
    }
}

fn rtp_packet(
    inbound: &mut LegState,
    outbound: &mut LegState,
    ingress: Ingress,
    buf: &mut [u8],
    mut len: usize,
    now: PacketTime,
) -> Action {
    if !inbound.source_allowed(ingress.from) {
        return Action::Drop(DropReason::UnknownSource);
    }
    if let Some(srtp) = inbound.srtp_in.as_mut() {
        len = match srtp.unprotect_rtp(buf, len) {
            Ok(n) => n,
            Err(CipherError::Auth) => match inbound
                .unprotect_early_rtp(buf, len)
                .or_else(|| inbound.unprotect_restarted_rtp(buf, len, now.millis))
            {
                Some(n) => n,
                None => return Action::Drop(DropReason::SrtpAuth),
            },
            Err(CipherError::Malformed) => return Action::Drop(DropReason::Malformed),
        };
    } else if inbound.requires_srtp() {
        return Action::Drop(DropReason::NotSrtp);
    }
    let Some(header) = rtp::read_rtp_header(&buf[..len]) else {
        return Action::Drop(DropReason::Malformed);
    };
    if !accept_media_source(inbound, ingress.from, now.millis) {
        return Action::Drop(DropReason::Latching);
    }
    let payloads = &inbound.inbound_payloads;
    let mut clock_rate = payloads.clock_rate(header.payload_type);
    inbound.receive_stats.on_rtp(
        header.ssrc,
        header.sequence,
        header.timestamp,
        clock_rate,
        now.micros,
    );
    inbound
        .counters
        .publish_receive_stats(&inbound.receive_stats);
    if outbound.playout.ringback_playing() {
        // Row 38: the carrier hears the SBC's ringback, not the Teams leg that is leaving.
        return left_out(outbound, header.ssrc, DropReason::RingbackPlaying);
    }
    let comfort_noise = outbound
        .comfort_noise
        .filter(|plan| plan.is_cn(header.payload_type));
    let converted = if let Some(plan) = comfort_noise {
        // Row 49: CN the receiving leg did not negotiate becomes noise it can play, or
        // nothing.
        let Some(target) = plan.noise else {
            return left_out(outbound, header.ssrc, DropReason::UnnegotiatedPayload);
        };
        let Some(new_len) = comfort_noise_frame(outbound, target, buf, len, now) else {
            return Action::Drop(DropReason::Malformed);
        };
        clock_rate = CLOCK_RATE;
        Converted::Rewritten { len: new_len }
    } else {
        match outbound.inband_dtmf.as_mut() {
            // Teams' DTMF to a carrier that only knows in-band tones: played as G.711.
            Some(to_carrier) if to_carrier.plan().is_teams_event(header.payload_type) => {
                match to_carrier.event_to_tone(&header, buf, len) {
                    ToCarrier::Tone { len } => Converted::Rewritten { len },
                    ToCarrier::Redundant => {
                        return left_out(outbound, header.ssrc, DropReason::DtmfRedundant)
                    }
                    ToCarrier::Drop => {
                        return left_out(outbound, header.ssrc, DropReason::UnnegotiatedPayload)
                    }
                }
            }
            _ => match inbound.inband_dtmf.as_mut() {
                Some(from_carrier) => from_carrier.process(&header, buf, len),
                None => Converted::Audio,
            },
        }
    };
    match converted {
        // Already under the receiving leg's payload type.
        Converted::Rewritten { len: new_len } => len = new_len,
        Converted::Audio => {
            let mapped = payloads.rewrite(header.payload_type);
            if mapped != header.payload_type {
                rtp::write_payload_type(buf, mapped);
            }
        }
    }
    let Some(to) = outbound.remote_rtp else {
        return Action::Drop(DropReason::NoRemote);
    };
    if outbound.srtp_out.is_none() && outbound.requires_srtp() {
        // Never in the clear towards Teams, not even between a new remote and its keys.
        return Action::Drop(DropReason::SrtpProtect);
    }
    let Some(packet) = buf.get_mut(..len) else {
        return Action::Drop(DropReason::Malformed);
    };
    outbound.sent.on_relayed(packet, clock_rate, now.micros);
    outbound.playout.on_relayed(comfort_noise.is_some());
    if let Some(srtp) = outbound.srtp_out.as_mut() {
        len = match srtp.protect_rtp(buf, len) {
            Ok(n) => n,
            Err(_) => return Action::Drop(DropReason::SrtpProtect),
        };
    }
    Action::Forward {
        leg: outbound.side,
        socket: SocketRole::Rtp,
        to,
        len,
    }
}

/// A relayed packet of stream `ssrc` the SBC leaves out on purpose: the stream towards
/// `outbound` closes the gap so its receiver counts no loss for it.
fn left_out(outbound: &mut LegState, ssrc: u32, reason: DropReason) -> Action {
    outbound.sent.on_left_out(ssrc);
    Action::Drop(reason)
}

/// Row 49: turns the CN packet in `buf` into a 20 ms G.711 noise frame for `outbound` at
/// the level the packet announces (RFC 3389 §3.1; an empty payload is silence) and arms the
/// fill of the silence after it. Returns the new length; `None` for a truncated header.
fn comfort_noise_frame(
    outbound: &mut LegState,
    target: G711Target,
    buf: &mut [u8],
    len: usize,
    now: PacketTime,
) -> Option<usize> {
    let (start, end) = buf.get(..len).and_then(rtp::payload_range)?;
    let level = if start < end {
        buf.get(start).map_or(127, |level| level & 0x7f)
    } else {
        127
    };
    let end = start + FRAME_SAMPLES;
    outbound
        .playout
        .noise_frame(level, target.law, buf.get_mut(start..end)?);
    // The padding of the CN packet is gone with its payload.
    *buf.first_mut()? &= !0x20;
    rtp::write_payload_type(buf, target.payload_type);
    outbound.playout.arm_noise(level, target, now.micros);
    Some(end)
}

/// Latching (carrier leg) and pre-nomination media following (ICE leg) for a packet that
/// has passed authentication. Returns false when the latch rejects the source.
fn accept_media_source(inbound: &mut LegState, from: SocketAddr, now_millis: u64) -> bool {
    if let Some(ice) = inbound.ice.as_mut() {
        // RFC 8445 / Teams bypass: before nomination media goes back to the first endpoint
        // that streams media; after nomination only USE-CANDIDATE moves it.
        if ice.nominated.is_none() && !ice.media_latched {
            ice.media_latched = true;
            if inbound.remote_rtp != Some(from) {
                inbound.remote_rtp = Some(from);
                inbound.notice = Some(LegNotice::Latched(from));
            }
        }
        return true;
    }
    match inbound.latch.observe(from, now_millis, inbound.remote_rtp) {
        LatchVerdict::Accept => true,
        LatchVerdict::Moved(source) => {
            if inbound.remote_rtp != Some(source) {
                inbound.remote_rtp = Some(source);
                inbound.notice = Some(LegNotice::Latched(source));
            }
            true
        }
        LatchVerdict::Reject => false,
    }
}

fn rtcp(
    inbound: &mut LegState,
    outbound: &mut LegState,
    ingress: Ingress,
    buf: &mut [u8],
    mut len: usize,
    now: PacketTime,
) -> Action {
    if !inbound.source_allowed(ingress.from) {
        return Action::Drop(DropReason::UnknownSource);
    }
    if let Some(srtp) = inbound.srtp_in.as_mut() {
        len = match srtp.unprotect_rtcp(buf, len) {
            Ok(n) => n,
            Err(CipherError::Auth) => match inbound.unprotect_early_rtcp(buf, len) {
                Some(n) => n,
                None => return Action::Drop(DropReason::SrtpAuth),
            },
            Err(CipherError::Malformed) => return Action::Drop(DropReason::Malformed),
        };
    } else if inbound.requires_srtp() {
        return Action::Drop(DropReason::NotSrtp);
    }
    if inbound.ice.is_none() {
        match inbound.latch.observe_rtcp(ingress.from, inbound.remote_rtp) {
            LatchVerdict::Accept => {}
            // Symmetric RTCP: answer where it comes from.
            LatchVerdict::Moved(source) => {
                if ingress.socket == SocketRole::Rtcp {
                    inbound.remote_rtcp = Some(source);
                }
            }
            LatchVerdict::Reject => return Action::Drop(DropReason::Latching),
        }
    }
    inbound.counters.on_rtcp();
    let Some((socket, to)) = outbound.rtcp_destination() else {
        return Action::Drop(DropReason::NoRemote);
    };
    let Some(compound) = buf.get_mut(..len) else {
        return Action::Drop(DropReason::Malformed);
    };
    // Row 46: the reports stay true to what the SBC sent each side (see `media::rtcp`).
    inbound.reports.note_peer_compound(compound, now.micros);
    let (packets, octets) = outbound.sent.counts();
    let view = RelayView {
        forwarded: outbound.sent.ssrc().map(|ssrc| (ssrc, packets, octets)),
        renumbered: inbound
            .sent
            .ssrc()
            .map(|ssrc| (ssrc, inbound.sent.seq_offset())),
        own_lsr: inbound.reports.own_lsr,
    };
    reports::rewrite_relayed(compound, &view);
    if let Some(srtp) = outbound.srtp_out.as_mut() {
        len = match srtp.protect_rtcp(buf, len) {
            Ok(n) => n,
            Err(_) => return Action::Drop(DropReason::SrtpProtect),
        };
    } else if outbound.requires_srtp() {
        return Action::Drop(DropReason::SrtpProtect);
    }
    outbound.reports.on_relayed(now.millis);
    Action::Forward {
        leg: outbound.side,
        socket,
        to,
        len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::cipher::{SrtpKeys, SrtpStream};
    use crate::media::leg::RESTART_QUIET_MILLIS;
    use crate::media::rtp::{PayloadMap, PayloadMapping};
    use crate::media::settings::LatchingMode;
    use crate::media::srtp::{KeyMaterial, SrtpSuite};
    use crate::media::sys::PACKET_BUFFER_LEN;
    use std::sync::Arc;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    const CARRIER_PEER: u16 = 7000;
    const TEAMS_PEER: u16 = 9000;
    /// The key Teams sends under, and the key we send Teams under, in [`pair`].
    const TEAMS_KEY: u8 = 50;
    const SBC_KEY: u8 = 51;

    /// A carrier leg and a Teams leg with SRTP keys installed (the Teams leg passes nothing
    /// else).
    fn pair(latching: LatchingMode) -> LegPair {
        let mut carrier = LegState::new(LegSide::Carrier, latching, true, Arc::default(), 0);
        let mut teams = LegState::new(LegSide::Teams, LatchingMode::Off, false, Arc::default(), 0);
        carrier.set_remote(addr(CARRIER_PEER), None, false);
        teams.set_remote(addr(TEAMS_PEER), None, true);
        teams.set_srtp(
            Some(SrtpStream::new(&keys(TEAMS_KEY))),
            Some(SrtpStream::new(&keys(SBC_KEY))),
        );
        LegPair { carrier, teams }
    }

    thread_local! {
        static NEXT_SEQUENCE: std::cell::Cell<u16> = const { std::cell::Cell::new(1) };
    }

    /// A sequence number no packet of this test used yet (SRTP refuses an index twice).
    fn next_seq() -> u16 {
        NEXT_SEQUENCE.with(|next| {
            let seq = next.get();
            next.set(seq.wrapping_add(1));
            seq
        })
    }

    /// An RTP packet as Teams sends it: SRTP under `TEAMS_KEY`.
    fn teams_rtp(seq: u16, payload: &[u8]) -> ([u8; PACKET_BUFFER_LEN], usize) {
        let (mut buf, len) = rtp_packet(0, seq, payload);
        let len = SrtpStream::new(&keys(TEAMS_KEY))
            .protect_rtp(&mut buf, len)
            .unwrap();
        (buf, len)
    }

    /// What we sent Teams, decrypted as Teams would.
    fn as_teams_receives(buf: &mut [u8], len: usize) -> usize {
        SrtpStream::new(&keys(SBC_KEY))
            .unprotect_rtp(buf, len)
            .expect("SRTP under our key")
    }

    fn from_teams(from: SocketAddr) -> Ingress {
        Ingress {
            leg: LegSide::Teams,
            socket: SocketRole::Rtp,
            from,
        }
    }

    fn keys(byte: u8) -> SrtpKeys {
        SrtpKeys::new(
            SrtpSuite::AesCm128HmacSha1_80,
            KeyMaterial::new([byte; 16], [byte.wrapping_add(1); 14]),
        )
    }

    fn rtp_packet(pt: u8, seq: u16, payload: &[u8]) -> ([u8; PACKET_BUFFER_LEN], usize) {
        let mut buf = [0u8; PACKET_BUFFER_LEN];
        buf[0] = 0x80;
        buf[1] = pt;
        buf[2..4].copy_from_slice(&seq.to_be_bytes());
        buf[4..8].copy_from_slice(&(seq as u32 * 160).to_be_bytes());
        buf[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        buf[12..12 + payload.len()].copy_from_slice(payload);
        (buf, 12 + payload.len())
    }

    fn rtcp_rr() -> ([u8; PACKET_BUFFER_LEN], usize) {
        let mut buf = [0u8; PACKET_BUFFER_LEN];
        // RR with no report blocks: V=2, PT=201, length=1 (8 bytes).
        buf[..8].copy_from_slice(&[0x80, 201, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd]);
        (buf, 8)
    }

    fn from_carrier(port: u16) -> Ingress {
        Ingress {
            leg: LegSide::Carrier,
            socket: SocketRole::Rtp,
            from: addr(port),
        }
    }

    fn t(ms: u64) -> PacketTime {
        PacketTime::from_micros(ms * 1000)
    }

    #[test]
    fn carrier_rtp_is_forwarded_as_srtp_with_payload_type_mapped() {
        let mut p = pair(LatchingMode::Off);
        p.carrier.inbound_payloads = PayloadMap::from_mappings(&[PayloadMapping::new(101, 96)]);
        let (mut buf, len) = rtp_packet(101 | 0x80, 1, b"digit");
        let action = forward_step(&mut p, from_carrier(CARRIER_PEER), &mut buf, len, t(20));
        assert_eq!(
            action,
            Action::Forward {
                leg: LegSide::Teams,
                socket: SocketRole::Rtp,
                to: addr(TEAMS_PEER),
                len: len + 10
            }
        );
        assert_eq!(as_teams_receives(&mut buf, len + 10), len);
        assert_eq!(buf[1], 0x80 | 96, "marker kept, PT mapped");
        assert_eq!(&buf[12..len], b"digit");
        let carrier = p.carrier.counters.snapshot();
        assert_eq!((carrier.rx_packets, carrier.rx_bytes), (1, len as u64));
        assert_eq!(carrier.last_rx_millis, Some(20));
        assert_eq!(p.teams.counters.snapshot().tx_packets, 1);
    }

    #[test]
    fn srtp_out_and_back_in_round_trips() {
        let mut a = pair(LatchingMode::Off);
        a.teams.srtp_out = Some(SrtpStream::new(&keys(7)));
        let mut b = pair(LatchingMode::Off);
        b.teams.srtp_in = Some(SrtpStream::new(&keys(7)));
        for seq in 0..5u16 {
            let (mut buf, len) = rtp_packet(0, seq, &[seq as u8; 160]);
            let Action::Forward { len: srtp_len, .. } =
                forward_step(&mut a, from_carrier(CARRIER_PEER), &mut buf, len, t(0))
            else {
                panic!("not forwarded");
            };
            assert_eq!(srtp_len, len + 10);
            assert_ne!(&buf[12..len], &[seq as u8; 160][..], "payload encrypted");
            let ingress = Ingress {
                leg: LegSide::Teams,
                socket: SocketRole::Rtp,
                from: addr(TEAMS_PEER),
            };
            let action = forward_step(&mut b, ingress, &mut buf, srtp_len, t(0));
            assert_eq!(
                action,
                Action::Forward {
                    leg: LegSide::Carrier,
                    socket: SocketRole::Rtp,
                    to: addr(CARRIER_PEER),
                    len
                }
            );
            assert_eq!(&buf[12..len], &[seq as u8; 160][..]);
        }
    }

    #[test]
    fn bad_auth_tag_is_dropped_and_counted() {
        let mut sender = SrtpStream::new(&keys(3));
        let mut p = pair(LatchingMode::Off);
        p.teams.srtp_in = Some(SrtpStream::new(&keys(3)));
        let (mut buf, len) = rtp_packet(0, 1, &[1; 160]);
        let len = sender.protect_rtp(&mut buf, len).unwrap();
        buf[len - 1] ^= 1;
        let ingress = Ingress {
            leg: LegSide::Teams,
            socket: SocketRole::Rtp,
            from: addr(TEAMS_PEER),
        };
        let action = forward_step(&mut p, ingress, &mut buf, len, t(0));
        assert_eq!(action, Action::Drop(DropReason::SrtpAuth));
        let stats = p.teams.counters.snapshot();
        assert_eq!((stats.srtp_auth_failures, stats.dropped), (1, 1));
    }

    #[test]
    fn rtcp_from_carrier_port_goes_muxed_and_encrypted_to_teams() {
        let mut p = pair(LatchingMode::Off);
        p.teams.srtp_out = Some(SrtpStream::new(&keys(9)));
        let (mut buf, len) = rtcp_rr();
        let ingress = Ingress {
            leg: LegSide::Carrier,
            socket: SocketRole::Rtcp,
            from: addr(CARRIER_PEER + 1),
        };
        let Action::Forward {
            leg,
            socket,
            to,
            len: out_len,
        } = forward_step(&mut p, ingress, &mut buf, len, t(0))
        else {
            panic!("not forwarded");
        };
        assert_eq!(
            (leg, socket, to),
            (LegSide::Teams, SocketRole::Rtp, addr(TEAMS_PEER))
        );
        assert_eq!(out_len, len + 4 + 10, "SRTCP index and 80-bit tag");
        let mut receiver = SrtpStream::new(&keys(9));
        assert_eq!(receiver.unprotect_rtcp(&mut buf, out_len), Ok(len));
        assert_eq!(&buf[..8], &[0x80, 201, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn rtcp_from_teams_goes_to_carrier_rtcp_port() {
        let mut p = pair(LatchingMode::Off);
        let (mut buf, len) = rtcp_rr();
        let srtcp_len = SrtpStream::new(&keys(TEAMS_KEY))
            .protect_rtcp(&mut buf, len)
            .unwrap();
        let ingress = Ingress {
            leg: LegSide::Teams,
            socket: SocketRole::Rtp,
            from: addr(TEAMS_PEER),
        };
        let action = forward_step(&mut p, ingress, &mut buf, srtcp_len, t(0));
        assert_eq!(
            action,
            Action::Forward {
                leg: LegSide::Carrier,
                socket: SocketRole::Rtcp,
                to: addr(CARRIER_PEER + 1),
                len
            }
        );
        assert_eq!(p.teams.counters.snapshot().rtcp_rx_packets, 1);
    }

    #[test]
    fn learn_latching_moves_remote_after_n_packets() {
        let mut p = pair(LatchingMode::Learn { after_packets: 2 });
        p.teams.set_remote(addr(TEAMS_PEER), None, true);
        // Media from the Teams side goes to the signalled carrier address until latching.
        let send_from_teams = |p: &mut LegPair| {
            let (mut buf, len) = teams_rtp(next_seq(), &[0; 20]);
            match forward_step(p, from_teams(addr(TEAMS_PEER)), &mut buf, len, t(0)) {
                Action::Forward { to, .. } => to,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(send_from_teams(&mut p), addr(CARRIER_PEER));
        for _ in 0..2 {
            let (mut buf, len) = rtp_packet(0, next_seq(), &[0; 20]);
            forward_step(&mut p, from_carrier(7100), &mut buf, len, t(0));
        }
        assert_eq!(
            p.carrier.notice.take(),
            Some(LegNotice::Latched(addr(7100)))
        );
        assert_eq!(send_from_teams(&mut p), addr(7100));
    }

    #[test]
    fn strict_latching_drops_other_sources() {
        let mut p = pair(LatchingMode::Strict { after_packets: 1 });
        let (mut buf, len) = rtp_packet(0, 1, &[0; 20]);
        assert!(matches!(
            forward_step(&mut p, from_carrier(CARRIER_PEER), &mut buf, len, t(0)),
            Action::Forward { .. }
        ));
        let (mut buf, len) = rtp_packet(0, 2, &[0; 20]);
        assert_eq!(
            forward_step(&mut p, from_carrier(6666), &mut buf, len, t(0)),
            Action::Drop(DropReason::Latching)
        );
    }

    #[test]
    fn garbage_and_unexpected_stun_are_dropped() {
        let mut p = pair(LatchingMode::Off);
        let mut buf = [0u8; PACKET_BUFFER_LEN];
        buf[..4].copy_from_slice(&[0x17, 3, 3, 0]);
        assert_eq!(
            forward_step(&mut p, from_carrier(1), &mut buf, 4, t(0)),
            Action::Drop(DropReason::Malformed)
        );
        buf[..20].copy_from_slice(&[
            0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        assert_eq!(
            forward_step(&mut p, from_carrier(1), &mut buf, 20, t(0)),
            Action::Drop(DropReason::Stun)
        );
        assert_eq!(
            forward_step(&mut p, from_carrier(1), &mut buf, PACKET_BUFFER_LEN, t(0)),
            Action::Drop(DropReason::Malformed)
        );
        assert_eq!(p.carrier.counters.snapshot().dropped, 3);
    }

    #[test]
    fn only_valid_media_counts_as_activity() {
        let mut p = pair(LatchingMode::Strict { after_packets: 1 });
        let (mut buf, len) = rtp_packet(0, 1, &[0; 20]);
        forward_step(&mut p, from_carrier(CARRIER_PEER), &mut buf, len, t(1_000));
        let (mut buf, len) = rtp_packet(0, 2, &[0; 20]);
        // Rejected by the latch, and garbage: neither refreshes the clock.
        forward_step(&mut p, from_carrier(6666), &mut buf, len, t(50_000));
        forward_step(
            &mut p,
            from_carrier(CARRIER_PEER),
            &mut [0x17u8; 64],
            64,
            t(50_000),
        );
        let policy = crate::media::inactivity::InactivityPolicy {
            timeout_millis: 30_000,
            hold_counts_as_activity: true,
        };
        assert_eq!(
            p.carrier.inactivity.poll(50_000, false, policy),
            crate::media::inactivity::InactivityChange::BecameInactive
        );
    }

    #[test]
    fn no_remote_yet_drops() {
        let mut p = pair(LatchingMode::Off);
        p.teams.remote_rtp = None;
        let (mut buf, len) = rtp_packet(0, 1, &[0; 20]);
        assert_eq!(
            forward_step(&mut p, from_carrier(CARRIER_PEER), &mut buf, len, t(0)),
            Action::Drop(DropReason::NoRemote)
        );
    }

    #[test]
    fn loss_and_jitter_are_published() {
        let mut p = pair(LatchingMode::Off);
        for seq in [1u16, 2, 3, 6, 7] {
            let (mut buf, len) = rtp_packet(0, seq, &[0; 160]);
            forward_step(
                &mut p,
                from_carrier(CARRIER_PEER),
                &mut buf,
                len,
                t(seq as u64 * 20),
            );
        }
        let s = p.carrier.counters.snapshot();
        assert_eq!(s.lost, 2);
        assert_eq!(s.jitter, 0);
    }

    fn host(last: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, last], port))
    }

    /// Carrier RTP from `from`, a fresh sequence number each time.
    fn carrier_rtp_from(p: &mut LegPair, from: SocketAddr, now: u64) -> Action {
        let (mut buf, len) = rtp_packet(0, next_seq(), &[7; 20]);
        let ingress = Ingress {
            leg: LegSide::Carrier,
            socket: SocketRole::Rtp,
            from,
        };
        forward_step(p, ingress, &mut buf, len, t(now))
    }

    fn forwarded(action: Action) -> bool {
        matches!(action, Action::Forward { .. })
    }

    /// RTP Bleed: mid-call RTP from an address that is neither the signalled host nor in
    /// the trunk's networks used to reach Teams; it is dropped, counted, and not activity.
    #[test]
    fn rtp_bleed_injection_from_a_foreign_source_is_dropped_and_counted() {
        let mut p = pair(LatchingMode::Learn { after_packets: 3 });
        p.carrier
            .set_allowed_sources(&["192.0.2.0/24".parse().unwrap()]);
        for now in 0..5 {
            assert!(forwarded(carrier_rtp_from(&mut p, addr(CARRIER_PEER), now)));
        }
        for now in 5..15 {
            assert_eq!(
                carrier_rtp_from(&mut p, host(66, 40000), now),
                Action::Drop(DropReason::UnknownSource)
            );
        }
        assert_eq!(
            p.carrier.remote_rtp,
            Some(addr(CARRIER_PEER)),
            "never latched"
        );
        let (mut buf, len) = rtcp_rr();
        let rtcp = Ingress {
            leg: LegSide::Carrier,
            socket: SocketRole::Rtcp,
            from: host(66, 40001),
        };
        assert_eq!(
            forward_step(&mut p, rtcp, &mut buf, len, t(16)),
            Action::Drop(DropReason::UnknownSource)
        );
        assert_eq!(p.carrier.remote_rtcp, None, "RTCP destination unmoved");
        let stats = p.carrier.counters.snapshot();
        assert_eq!((stats.dropped, stats.rx_packets), (11, 16));
        assert_eq!(p.teams.counters.snapshot().tx_packets, 5);
        assert_eq!(p.carrier.inactivity.last_activity_millis(), 4);
    }

    /// A NAT'd carrier whose media comes from a trunk host other than its SDP's latches in
    /// the window after the answer; later, neither another trunk host nor the signalled
    /// address moves it, however many packets they send; a new offer/answer opens a new
    /// window.
    #[test]
    fn rtp_bleed_trunk_source_latches_in_the_window_then_the_latch_holds() {
        let mut p = pair(LatchingMode::Strict { after_packets: 3 });
        p.carrier
            .set_allowed_sources(&["127.0.0.0/24".parse().unwrap()]);
        let nat = host(20, 31000);
        for now in [0, 20, 40, 60] {
            assert!(forwarded(carrier_rtp_from(&mut p, nat, now)));
        }
        assert_eq!(p.carrier.notice.take(), Some(LegNotice::Latched(nat)));
        for now in 100..130 {
            assert_eq!(
                carrier_rtp_from(&mut p, host(21, 31000), now),
                Action::Drop(DropReason::Latching)
            );
            assert_eq!(
                carrier_rtp_from(&mut p, addr(CARRIER_PEER), now),
                Action::Drop(DropReason::Latching)
            );
        }
        assert!(forwarded(carrier_rtp_from(&mut p, nat, 140)));
        assert_eq!(p.carrier.remote_rtp, Some(nat));
        // Re-INVITE: a new window; the carrier's new source latches.
        p.carrier.set_remote(addr(CARRIER_PEER), None, false);
        let moved = host(21, 32000);
        for now in [200, 220, 240] {
            assert!(forwarded(carrier_rtp_from(&mut p, moved, now)));
        }
        assert_eq!(p.carrier.remote_rtp, Some(moved));
        assert_eq!(
            carrier_rtp_from(&mut p, nat, 260),
            Action::Drop(DropReason::Latching)
        );
    }

    /// Plain RTP arriving on the Teams leg before keys are installed used to be forwarded to
    /// the carrier; so did plain RTCP. Both are dropped as `not_srtp`; and carrier media is
    /// not sent to Teams in the clear meanwhile.
    #[test]
    fn row43_plain_rtp_on_the_teams_leg_before_keys_is_dropped_and_counted() {
        let mut p = pair(LatchingMode::Off);
        p.teams.set_srtp(None, None);
        let (mut buf, len) = rtp_packet(0, 1, b"plain");
        assert_eq!(
            forward_step(&mut p, from_teams(addr(TEAMS_PEER)), &mut buf, len, t(0)),
            Action::Drop(DropReason::NotSrtp)
        );
        let (mut buf, len) = rtcp_rr();
        assert_eq!(
            forward_step(&mut p, from_teams(addr(TEAMS_PEER)), &mut buf, len, t(0)),
            Action::Drop(DropReason::NotSrtp)
        );
        assert_eq!(
            carrier_rtp_from(&mut p, addr(CARRIER_PEER), 0),
            Action::Drop(DropReason::SrtpProtect)
        );
        let (mut buf, len) = rtcp_rr();
        let rtcp = Ingress {
            leg: LegSide::Carrier,
            socket: SocketRole::Rtcp,
            from: addr(CARRIER_PEER + 1),
        };
        assert_eq!(
            forward_step(&mut p, rtcp, &mut buf, len, t(0)),
            Action::Drop(DropReason::SrtpProtect)
        );
        assert_eq!(p.teams.counters.snapshot().dropped, 2);
        assert_eq!(p.carrier.counters.snapshot().tx_packets, 0);
    }

    /// A Teams endpoint restarting its stream under the same key (same SSRC, a new sender
    /// context: rollover counter 0, sequence from elsewhere) used to be black-holed by the
    /// replay window. Once the old stream has been silent long enough, the restarted one
    /// flows; also when the old one had wrapped (rollover counter 1).
    #[test]
    fn row43_teams_stream_restart_under_the_same_key_is_not_black_holed() {
        for first in [30_000u16, 65_530] {
            let mut p = pair(LatchingMode::Off);
            let mut old = SrtpStream::new(&keys(TEAMS_KEY));
            let mut now = 0;
            for step in 0..20u16 {
                let (mut buf, len) = rtp_packet(0, first.wrapping_add(step), &[1; 20]);
                let len = old.protect_rtp(&mut buf, len).unwrap();
                now += 20;
                assert!(forwarded(forward_step(
                    &mut p,
                    from_teams(addr(TEAMS_PEER)),
                    &mut buf,
                    len,
                    t(now)
                )));
            }
            let silent_since = now;
            let mut restarted = SrtpStream::new(&keys(TEAMS_KEY));
            let mut flowing_from = None;
            for seq in 100..200u16 {
                let (mut buf, len) = rtp_packet(0, seq, &[2; 20]);
                let len = restarted.protect_rtp(&mut buf, len).unwrap();
                now += 20;
                let action =
                    forward_step(&mut p, from_teams(addr(TEAMS_PEER)), &mut buf, len, t(now));
                match (action, flowing_from) {
                    (Action::Forward { .. }, None) => flowing_from = Some(now),
                    (Action::Forward { .. }, Some(_)) => {}
                    (other, Some(_)) => panic!("{first}: dropped once flowing: {other:?}"),
                    (other, None) => assert_eq!(other, Action::Drop(DropReason::SrtpAuth)),
                }
            }
            let flowing_from = flowing_from.expect("the restarted stream flows");
            assert!(
                flowing_from - silent_since >= RESTART_QUIET_MILLIS,
                "{first}"
            );
            assert!(
                flowing_from - silent_since <= RESTART_QUIET_MILLIS + 20,
                "{first}"
            );
        }
    }

    /// The restart rule is no replay hole: old packets replayed while the genuine stream
    /// flows are all refused, however many in a row.
    #[test]
    fn row43_replayed_teams_packets_never_restart_a_flowing_stream() {
        let mut p = pair(LatchingMode::Off);
        let mut sender = SrtpStream::new(&keys(TEAMS_KEY));
        let mut recorded = Vec::new();
        let mut seq = 1000u16;
        let mut now = 0;
        let mut send = |p: &mut LegPair, now: u64, seq: u16| {
            let (mut buf, len) = rtp_packet(0, seq, &[3; 20]);
            let len = sender.protect_rtp(&mut buf, len).unwrap();
            let copy = (buf, len);
            let action = forward_step(p, from_teams(addr(TEAMS_PEER)), &mut buf, len, t(now));
            (action, copy)
        };
        for _ in 0..100 {
            let (action, copy) = send(&mut p, now, seq);
            assert!(forwarded(action));
            recorded.push(copy);
            seq += 1;
            now += 20;
        }
        for burst in recorded.chunks(5) {
            // Consecutive old packets, as a restarted stream would look, then the genuine
            // stream's next packet.
            for (buf, len) in burst {
                let mut replay = *buf;
                assert_eq!(
                    forward_step(&mut p, from_teams(host(66, 9)), &mut replay, *len, t(now)),
                    Action::Drop(DropReason::SrtpAuth)
                );
            }
            let (action, _) = send(&mut p, now, seq);
            assert!(forwarded(action));
            seq += 1;
            now += 20;
        }
    }

    /// A Teams endpoint changing its SSRC starts a fresh stream at once.
    #[test]
    fn row43_teams_ssrc_change_gets_a_fresh_stream_at_once() {
        let mut p = pair(LatchingMode::Off);
        let mut sender = SrtpStream::new(&keys(TEAMS_KEY));
        for (seq, ssrc) in [(40_000u16, 1u32), (40_001, 1), (7, 2), (8, 2), (40_002, 1)] {
            let (mut buf, len) = rtp_packet(0, seq, &[4; 20]);
            buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
            let len = sender.protect_rtp(&mut buf, len).unwrap();
            let action = forward_step(&mut p, from_teams(addr(TEAMS_PEER)), &mut buf, len, t(0));
            assert!(forwarded(action), "{seq}/{ssrc}: {action:?}");
        }
    }

    /// A carrier restarting its sequence numbers used to be black-holed towards Teams (our
    /// outbound context refused every index as used). One packet is lost, then Teams gets
    /// the stream continuing where it was.
    #[test]
    fn row43_carrier_sequence_restart_continues_towards_teams() {
        let mut p = pair(LatchingMode::Off);
        let mut teams_receiver = SrtpStream::new(&keys(SBC_KEY));
        let mut received = Vec::new();
        for seq in (2000..2010u16).chain(3..13) {
            let (mut buf, len) = rtp_packet(0, seq, &[5; 20]);
            match forward_step(&mut p, from_carrier(CARRIER_PEER), &mut buf, len, t(0)) {
                Action::Forward { len, .. } => {
                    let len = teams_receiver.unprotect_rtp(&mut buf, len).unwrap();
                    assert_eq!(&buf[12..len], &[5; 20]);
                    received.push(u16::from_be_bytes([buf[2], buf[3]]));
                }
                other => assert_eq!((seq, other), (3, Action::Drop(DropReason::SrtpProtect))),
            }
        }
        assert_eq!(received, (2000..2019).collect::<Vec<_>>());
    }

    /// Row 52 harness: the Teams leg of a PSTN -> Teams bypass call and its forked clients.
    mod forks {
        use super::*;
        use crate::media::ice::IceCredentials;
        use stun::attributes::ATTR_USE_CANDIDATE;
        use stun::attributes::{ATTR_ICE_CONTROLLING, ATTR_PRIORITY, ATTR_USERNAME};
        use stun::fingerprint::FINGERPRINT;
        use stun::integrity::MessageIntegrity;
        use stun::message::{Message, Setter, BINDING_REQUEST};
        use stun::textattrs::TextAttribute;

        const SBC_UFRAG: &str = "sbcU";
        const SBC_PWD: &str = "sbcPasswordOf22Chars00";

        /// A forked Teams client: its ufrag, the address its SDP signals, the address its
        /// checks and media come from.
        struct Fork {
            ufrag: &'static str,
            signalled: SocketAddr,
            source: SocketAddr,
        }

        const A: Fork = Fork {
            ufrag: "forkA",
            signalled: SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9000),
            source: SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9001),
        };
        const B: Fork = Fork {
            ufrag: "forkB",
            signalled: SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9500),
            source: SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9501),
        };

        fn creds(local: &str, remote: Option<&str>) -> IceCredentials {
            IceCredentials {
                local_ufrag: local.into(),
                local_pwd: SBC_PWD.into(),
                remote_ufrag: remote.map(String::from),
            }
        }

        /// What the call layer sends for a Teams SDP: SetRemote, then EnableIce.
        fn apply_sdp(p: &mut LegPair, fork: &Fork, remote_ufrag: Option<&str>, forks_open: bool) {
            p.teams.set_remote(fork.signalled, None, true);
            p.teams
                .enable_ice(creds(SBC_UFRAG, remote_ufrag), forks_open);
        }

        /// Early SDP (18x) of `fork`: any forked client may check until the 200.
        fn early(p: &mut LegPair, fork: &Fork) {
            apply_sdp(p, fork, None, true);
        }

        /// The 200 of `fork`.
        fn answer(p: &mut LegPair, fork: &Fork) {
            apply_sdp(p, fork, Some(fork.ufrag), false);
        }

        /// A check as the fork's full, controlling ICE agent sends it to our leg.
        fn check(p: &mut LegPair, fork: &Fork, from: SocketAddr, nominate: bool) -> Action {
            let mut m = Message::new();
            m.typ = BINDING_REQUEST;
            m.new_transaction_id().unwrap();
            m.write_header();
            TextAttribute::new(ATTR_USERNAME, format!("{SBC_UFRAG}:{}", fork.ufrag))
                .add_to(&mut m)
                .unwrap();
            m.add(ATTR_PRIORITY, &0x6E00_1EFFu32.to_be_bytes());
            m.add(ATTR_ICE_CONTROLLING, &[7; 8]);
            if nominate {
                m.add(ATTR_USE_CANDIDATE, &[]);
            }
            MessageIntegrity::new_short_term_integrity(SBC_PWD.into())
                .add_to(&mut m)
                .unwrap();
            FINGERPRINT.add_to(&mut m).unwrap();
            let mut buf = [0u8; PACKET_BUFFER_LEN];
            buf[..m.raw.len()].copy_from_slice(&m.raw);
            let ingress = Ingress {
                leg: LegSide::Teams,
                socket: SocketRole::Rtp,
                from,
            };
            forward_step(p, ingress, &mut buf, m.raw.len(), t(0))
        }

        fn answered(action: Action, to: SocketAddr) -> bool {
            matches!(action, Action::Reply { to: t, .. } if t == to)
        }

        /// Where carrier media goes now.
        fn carrier_media_to(p: &mut LegPair) -> SocketAddr {
            let (mut buf, len) = rtp_packet(0, next_seq(), &[0; 20]);
            match forward_step(p, from_carrier(CARRIER_PEER), &mut buf, len, t(0)) {
                Action::Forward {
                    leg: LegSide::Teams,
                    to,
                    ..
                } => to,
                other => panic!("carrier media not forwarded to Teams: {other:?}"),
            }
        }

        fn media_from(p: &mut LegPair, from: SocketAddr) -> Action {
            let (mut buf, len) = teams_rtp(next_seq(), &[0; 20]);
            forward_step(p, from_teams(from), &mut buf, len, t(0))
        }

        fn forked_call() -> LegPair {
            let mut p = pair(LatchingMode::Off);
            early(&mut p, &A);
            early(&mut p, &B);
            p
        }

        /// SRTP of `fork` (its own key, `sender`) from its source to our Teams leg.
        fn srtp_from(p: &mut LegPair, fork: &Fork, sender: &mut SrtpStream, seq: u16) -> Action {
            let (mut buf, len) = rtp_packet(0, seq, &[seq as u8; 160]);
            let len = sender.protect_rtp(&mut buf, len).unwrap();
            let ingress = Ingress {
                leg: LegSide::Teams,
                socket: SocketRole::Rtp,
                from: fork.source,
            };
            forward_step(p, ingress, &mut buf, len, t(0))
        }

        /// How the call layer describes a Teams SDP's ICE agent to the media leg.
        #[derive(Clone, Copy)]
        enum Agent {
            /// A 18x: forks open, any remote ufrag.
            EarlyFork,
            /// A final answer or offer naming its agent.
            Named(&'static str),
            /// A final answer or offer without ICE (a Teams endpoint that does none).
            NoIce,
        }

        /// What the call layer sends for a Teams SDP with its SDES key: SetRemote, SetSrtp,
        /// EnableIce.
        fn apply_keyed_sdp(p: &mut LegPair, fork: &Fork, key: u8, agent: Agent) {
            p.teams.set_remote(fork.signalled, None, true);
            p.teams.set_srtp(
                Some(SrtpStream::new(&keys(key))),
                Some(SrtpStream::new(&keys(99))),
            );
            let (remote_ufrag, forks_open) = match agent {
                Agent::EarlyFork => (None, true),
                Agent::Named(ufrag) => (Some(ufrag), false),
                Agent::NoIce => (None, false),
            };
            p.teams
                .enable_ice(creds(SBC_UFRAG, remote_ufrag), forks_open);
        }

        /// Each fork's 183 carries its own key: until the 200, early media of the first fork
        /// still authenticates after a later fork's 183 and is the one followed; the 200 of
        /// the other fork leaves only the winner's key.
        #[test]
        fn row52_early_media_of_an_earlier_fork_authenticates_until_the_200() {
            const KEY_A: u8 = 10;
            const KEY_B: u8 = 20;
            let mut p = pair(LatchingMode::Off);
            let mut sender_a = SrtpStream::new(&keys(KEY_A));
            let mut sender_b = SrtpStream::new(&keys(KEY_B));
            apply_keyed_sdp(&mut p, &A, KEY_A, Agent::EarlyFork);
            apply_keyed_sdp(&mut p, &B, KEY_B, Agent::EarlyFork);

            assert!(matches!(
                srtp_from(&mut p, &A, &mut sender_a, 1),
                Action::Forward { .. }
            ));
            assert_eq!(p.teams.notice.take(), Some(LegNotice::Latched(A.source)));
            assert!(matches!(
                srtp_from(&mut p, &B, &mut sender_b, 1),
                Action::Forward { .. }
            ));
            assert_eq!(carrier_media_to(&mut p), A.source, "first source kept");
            assert!(matches!(
                srtp_from(&mut p, &A, &mut sender_a, 2),
                Action::Forward { .. }
            ));

            apply_keyed_sdp(&mut p, &B, KEY_B, Agent::Named(B.ufrag));
            assert_eq!(
                srtp_from(&mut p, &A, &mut sender_a, 3),
                Action::Drop(DropReason::SrtpAuth)
            );
            assert!(matches!(
                srtp_from(&mut p, &B, &mut sender_b, 2),
                Action::Forward { .. }
            ));
            assert_eq!(p.teams.notice.take(), Some(LegNotice::Latched(B.source)));
            assert_eq!(carrier_media_to(&mut p), B.source);
        }

        /// Without forking (the agent known, or no ICE) a new key replaces the old one.
        #[test]
        fn rekey_of_a_known_agent_drops_the_old_key() {
            let mut p = pair(LatchingMode::Off);
            let mut old_sender = SrtpStream::new(&keys(10));
            apply_keyed_sdp(&mut p, &A, 10, Agent::Named(A.ufrag));
            assert!(matches!(
                srtp_from(&mut p, &A, &mut old_sender, 1),
                Action::Forward { .. }
            ));
            apply_keyed_sdp(&mut p, &A, 11, Agent::Named(A.ufrag));
            assert_eq!(
                srtp_from(&mut p, &A, &mut old_sender, 2),
                Action::Drop(DropReason::SrtpAuth)
            );

            let mut p = pair(LatchingMode::Off);
            p.teams.set_srtp(Some(SrtpStream::new(&keys(10))), None);
            assert!(matches!(
                srtp_from(&mut p, &A, &mut SrtpStream::new(&keys(10)), 1),
                Action::Forward { .. }
            ));
            p.teams.set_srtp(Some(SrtpStream::new(&keys(11))), None);
            assert_eq!(
                srtp_from(&mut p, &A, &mut SrtpStream::new(&keys(10)), 2),
                Action::Drop(DropReason::SrtpAuth)
            );
        }

        /// A bypass Teams endpoint that does no ICE (its SDP names no agent), then a new one
        /// with a new key in a final answer or offer (a transfer's target, a media processor
        /// joining without ICE; found by scripts/interop.sh with baresip): the old endpoint's
        /// key stops authenticating at once, so its media, still arriving until it hangs up,
        /// neither reaches the carrier nor takes the Teams media over from the new one.
        #[test]
        fn new_key_of_a_teams_endpoint_without_ice_drops_the_old_key() {
            let mut p = pair(LatchingMode::Off);
            let mut old_endpoint = SrtpStream::new(&keys(10));
            let mut new_endpoint = SrtpStream::new(&keys(11));
            apply_keyed_sdp(&mut p, &A, 10, Agent::NoIce);
            assert!(matches!(
                srtp_from(&mut p, &A, &mut old_endpoint, 1),
                Action::Forward { .. }
            ));

            apply_keyed_sdp(&mut p, &B, 11, Agent::NoIce);
            assert_eq!(
                srtp_from(&mut p, &A, &mut old_endpoint, 2),
                Action::Drop(DropReason::SrtpAuth),
                "the replaced key no longer authenticates"
            );
            assert!(matches!(
                srtp_from(&mut p, &B, &mut new_endpoint, 1),
                Action::Forward { .. }
            ));
            assert_eq!(p.teams.notice.take(), Some(LegNotice::Latched(B.source)));
            assert_eq!(
                srtp_from(&mut p, &A, &mut old_endpoint, 3),
                Action::Drop(DropReason::SrtpAuth)
            );
            assert_eq!(
                carrier_media_to(&mut p),
                B.source,
                "Teams media stays on the new one"
            );
        }

        #[test]
        fn row52_checks_of_every_fork_are_answered_before_the_200() {
            let mut p = forked_call();
            assert!(answered(check(&mut p, &A, A.source, false), A.source));
            assert!(answered(check(&mut p, &B, B.source, false), B.source));
            // A later 183 of the first fork does not shut the other one out either.
            early(&mut p, &A);
            assert!(answered(check(&mut p, &B, B.source, false), B.source));
            assert!(answered(check(&mut p, &A, A.source, false), A.source));
        }

        /// Fork A nominates early, the 200 comes from fork B: A's pair loses the media, which
        /// goes to B's signalled address, then to B's nominated pair; A is no longer answered.
        #[test]
        fn row52_200_of_another_fork_drops_the_early_nomination() {
            let mut p = forked_call();
            assert!(answered(check(&mut p, &B, B.source, false), B.source));
            assert!(answered(check(&mut p, &A, A.source, true), A.source));
            assert_eq!(
                p.teams.notice.take(),
                Some(LegNotice::IceNominated(A.source))
            );
            assert_eq!(carrier_media_to(&mut p), A.source);

            answer(&mut p, &B);
            assert_eq!(carrier_media_to(&mut p), B.signalled);
            assert_eq!(p.teams.ice.as_ref().unwrap().nominated, None);

            assert_eq!(
                check(&mut p, &A, A.source, true),
                Action::Drop(DropReason::Stun)
            );
            assert_eq!(carrier_media_to(&mut p), B.signalled);

            // Pre-nomination rules again for the winner: its best check, then its nomination.
            assert!(answered(check(&mut p, &B, B.source, false), B.source));
            assert_eq!(carrier_media_to(&mut p), B.source);
            let b_relay = SocketAddr::from(([127, 0, 0, 1], 9502));
            assert!(answered(check(&mut p, &B, b_relay, true), b_relay));
            assert_eq!(
                p.teams.notice.take(),
                Some(LegNotice::IceNominated(b_relay))
            );
            assert_eq!(carrier_media_to(&mut p), b_relay);
            assert_eq!(
                check(&mut p, &A, A.source, false),
                Action::Drop(DropReason::Stun)
            );
            assert_eq!(carrier_media_to(&mut p), b_relay);
        }

        #[test]
        fn row52_200_of_the_nominating_fork_keeps_its_pair() {
            let mut p = forked_call();
            assert!(answered(check(&mut p, &A, A.source, true), A.source));
            answer(&mut p, &A);
            assert_eq!(carrier_media_to(&mut p), A.source);
            assert_eq!(p.teams.ice.as_ref().unwrap().nominated, Some(A.source));
            assert_eq!(
                check(&mut p, &B, B.source, true),
                Action::Drop(DropReason::Stun)
            );
            assert_eq!(carrier_media_to(&mut p), A.source);
            // A re-INVITE of the same agent (a=remote-candidate) keeps it too.
            answer(&mut p, &A);
            assert_eq!(carrier_media_to(&mut p), A.source);
        }

        /// Both forks nominate before the 200 (each completes ICE with us); the winner's own
        /// nomination comes back, though another fork nominated after it.
        #[test]
        fn row52_winner_gets_its_own_nomination_back() {
            let mut p = forked_call();
            assert!(answered(check(&mut p, &A, A.source, true), A.source));
            assert!(answered(check(&mut p, &B, B.source, true), B.source));
            assert_eq!(carrier_media_to(&mut p), B.source);
            answer(&mut p, &A);
            assert_eq!(carrier_media_to(&mut p), A.source);
            let ice = p.teams.ice.as_ref().unwrap();
            assert_eq!(ice.nominated, Some(A.source));
            assert!(ice.media_latched);
        }

        #[test]
        fn row52_row53_ice_restart_drops_the_nomination() {
            // The peer's restart: same agent, new ufrag.
            let mut p = forked_call();
            assert!(answered(check(&mut p, &A, A.source, true), A.source));
            answer(&mut p, &A);
            let restarted = Fork {
                ufrag: "forkA2",
                signalled: A.signalled,
                source: A.source,
            };
            answer(&mut p, &restarted);
            assert_eq!(carrier_media_to(&mut p), A.signalled);
            assert_eq!(p.teams.ice.as_ref().unwrap().nominated, None);
            assert_eq!(
                check(&mut p, &A, A.source, true),
                Action::Drop(DropReason::Stun)
            );

            // Ours: new local ufrag, same remote agent.
            let mut p = forked_call();
            assert!(answered(check(&mut p, &A, A.source, true), A.source));
            p.teams.set_remote(A.signalled, None, true);
            p.teams.enable_ice(creds("sbcU2", Some(A.ufrag)), false);
            assert_eq!(carrier_media_to(&mut p), A.signalled);
            assert_eq!(p.teams.ice.as_ref().unwrap().nominated, None);
        }

        /// Before nomination media follows the first fork that streams; the 200 of another
        /// fork starts that over so the winner's media is followed.
        #[test]
        fn row52_early_media_latch_restarts_at_the_200_of_another_fork() {
            let mut p = forked_call();
            assert!(matches!(
                media_from(&mut p, A.source),
                Action::Forward { .. }
            ));
            assert_eq!(p.teams.notice.take(), Some(LegNotice::Latched(A.source)));
            assert_eq!(carrier_media_to(&mut p), A.source);
            // First source wins: a check or media of another fork does not move it.
            assert!(answered(check(&mut p, &B, B.source, false), B.source));
            assert!(matches!(
                media_from(&mut p, B.source),
                Action::Forward { .. }
            ));
            assert_eq!(carrier_media_to(&mut p), A.source);

            answer(&mut p, &B);
            assert_eq!(carrier_media_to(&mut p), B.signalled);
            assert!(matches!(
                media_from(&mut p, B.source),
                Action::Forward { .. }
            ));
            assert_eq!(p.teams.notice.take(), Some(LegNotice::Latched(B.source)));
            assert_eq!(carrier_media_to(&mut p), B.source);
        }
    }

    /// Media the SBC generates or leaves out on the way (rows 38, 46, 49).
    mod generated {
        use super::*;
        use crate::media::dtmf_convert::{DtmfConverter, InbandDtmfPlan};
        use crate::media::inband_dtmf::{decode, G711};
        use crate::media::playout::{ComfortNoisePlan, G711Target, Ringback, TonePlan};
        use crate::media::rtcp::{write_report, Report, ReportBlock, SenderInfo};
        use bytes::Bytes;
        use rtcp::receiver_report::ReceiverReport;
        use rtcp::sender_report::SenderReport;

        const PCMU: G711Target = G711Target {
            payload_type: 0,
            law: G711::Ulaw,
        };
        /// Teams' stream (the SSRC of `rtp_packet`).
        const TEAMS_SSRC: u32 = 0x1234_5678;

        /// Teams sends `pt`/`seq`/`payload`; what the carrier gets (plain), or the drop.
        fn teams_to_carrier(
            p: &mut LegPair,
            pt: u8,
            seq: u16,
            payload: &[u8],
            ms: u64,
        ) -> Result<Vec<u8>, DropReason> {
            let (mut buf, len) = rtp_packet(pt, seq, payload);
            let len = SrtpStream::new(&keys(TEAMS_KEY))
                .protect_rtp(&mut buf, len)
                .unwrap();
            match forward_step(p, from_teams(addr(TEAMS_PEER)), &mut buf, len, t(ms)) {
                Action::Forward { len, .. } => Ok(buf[..len].to_vec()),
                Action::Drop(reason) => Err(reason),
                other => panic!("{other:?}"),
            }
        }

        /// The carrier sends `pt`/`seq`/`payload`; what Teams gets (decrypted), or the drop.
        fn carrier_to_teams(
            p: &mut LegPair,
            pt: u8,
            seq: u16,
            payload: &[u8],
            ms: u64,
        ) -> Result<Vec<u8>, DropReason> {
            let (mut buf, len) = rtp_packet(pt, seq, payload);
            match forward_step(p, from_carrier(CARRIER_PEER), &mut buf, len, t(ms)) {
                Action::Forward { len, .. } => {
                    let len = as_teams_receives(&mut buf, len);
                    Ok(buf[..len].to_vec())
                }
                Action::Drop(reason) => Err(reason),
                other => panic!("{other:?}"),
            }
        }

        fn seq(packet: &[u8]) -> u16 {
            u16::from_be_bytes([packet[2], packet[3]])
        }

        fn rms(law: G711, payload: &[u8]) -> f64 {
            let sum: f64 = payload
                .iter()
                .map(|&b| f64::from(decode(law, b)).powi(2))
                .sum();
            (sum / payload.len() as f64).sqrt()
        }

        /// Row 49: Teams' CN towards a carrier that has none becomes a PCMU noise frame at
        /// the level it announces, in place (same sequence number), and arms the fill of the
        /// silence after it; Teams' speech ends the fill.
        #[test]
        fn row49_teams_cn_becomes_noise_for_a_carrier_without_cn() {
            let mut p = pair(LatchingMode::Off);
            p.carrier.comfort_noise = Some(ComfortNoisePlan {
                cn_payload_types: [Some(13), None],
                noise: Some(PCMU),
            });
            let speech = teams_to_carrier(&mut p, 0, 10, &[0x10; 160], 0).unwrap();
            assert_eq!((seq(&speech), speech.len()), (10, 172));
            assert_eq!(p.carrier.playout.next_due_micros(), None);
            // CN at -40 dBov with two spectral coefficients.
            let noise = teams_to_carrier(&mut p, 13, 11, &[40, 3, 7], 20).unwrap();
            assert_eq!(noise.len(), 12 + 160);
            assert_eq!((noise[1], seq(&noise)), (0, 11), "PCMU, same number");
            assert_eq!(noise[8..12], TEAMS_SSRC.to_be_bytes(), "same stream");
            let dbov = 20.0 * (rms(G711::Ulaw, &noise[12..]) / 32_124.0).log10();
            assert!((-44.0..=-36.0).contains(&dbov), "{dbov} dBov");
            assert_eq!(p.carrier.playout.next_due_micros(), Some(50_000));
            let speech = teams_to_carrier(&mut p, 0, 12, &[0x10; 160], 200).unwrap();
            assert_eq!(seq(&speech), 12);
            assert_eq!(
                p.carrier.playout.next_due_micros(),
                None,
                "speech ends the fill"
            );
            assert_eq!(p.carrier.sent.counts(), (3, 480));
        }

        /// Row 49: CN towards a leg that negotiated none and cannot get noise (Teams; a
        /// carrier without G.711) is left out, and the next packet closes the gap.
        #[test]
        fn row49_cn_towards_a_leg_without_it_is_left_out_without_a_gap() {
            let mut p = pair(LatchingMode::Off);
            p.teams.comfort_noise = Some(ComfortNoisePlan {
                cn_payload_types: [Some(13), Some(118)],
                noise: None,
            });
            assert_eq!(
                seq(&carrier_to_teams(&mut p, 0, 100, &[1; 160], 0).unwrap()),
                100
            );
            for (cn_seq, pt) in [(101, 13), (102, 118)] {
                assert_eq!(
                    carrier_to_teams(&mut p, pt, cn_seq, &[50], 20),
                    Err(DropReason::UnnegotiatedPayload)
                );
            }
            assert_eq!(
                seq(&carrier_to_teams(&mut p, 0, 103, &[1; 160], 60).unwrap()),
                101
            );
            assert_eq!(
                p.carrier.inactivity.last_activity_millis(),
                60,
                "CN still proves the carrier alive"
            );
            p.carrier.comfort_noise = Some(ComfortNoisePlan {
                cn_payload_types: [Some(13), None],
                noise: None,
            });
            assert_eq!(
                teams_to_carrier(&mut p, 13, 5, &[50], 80),
                Err(DropReason::UnnegotiatedPayload)
            );
        }

        /// Row 49: with CN on both legs it is relayed like any payload.
        #[test]
        fn row49_cn_negotiated_on_both_legs_is_relayed() {
            let mut p = pair(LatchingMode::Off);
            let cn = teams_to_carrier(&mut p, 13, 1, &[62, 1, 2], 0).unwrap();
            assert_eq!((cn[1], &cn[12..]), (13, &[62, 1, 2][..]));
        }

        /// Row 38: while the carrier hears the ringback, the old Teams leg's audio is left
        /// out (still proof that Teams is there); after it, numbering continues without a
        /// gap.
        #[test]
        fn row38_ringback_leaves_the_teams_audio_out() {
            let mut p = pair(LatchingMode::Off);
            assert_eq!(
                seq(&teams_to_carrier(&mut p, 0, 500, &[1; 160], 0).unwrap()),
                500
            );
            p.carrier.playout.start_ringback(
                Ringback {
                    plan: TonePlan::ETSI,
                    target: PCMU,
                },
                0,
            );
            for (i, s) in (501..504).enumerate() {
                assert_eq!(
                    teams_to_carrier(&mut p, 0, s, &[1; 160], 20 * (i as u64 + 1)),
                    Err(DropReason::RingbackPlaying)
                );
            }
            assert_eq!(p.teams.inactivity.last_activity_millis(), 60);
            p.carrier.playout.stop_ringback();
            assert_eq!(
                seq(&teams_to_carrier(&mut p, 0, 504, &[1; 160], 80).unwrap()),
                501
            );
        }

        /// Row 46: reports relayed across a conversion tell each side what the SBC sent it.
        /// Teams' DTMF event becomes five tone packets for an in-band carrier (its two
        /// repeated end packets add nothing and are left out): Teams' SR reaches the carrier
        /// with the packets and octets the carrier got, and the carrier's RR about that
        /// stream reaches Teams in Teams' numbering.
        #[test]
        fn row46_relayed_reports_match_what_was_sent_across_dtmf_conversion() {
            let mut p = pair(LatchingMode::Off);
            p.carrier.inband_dtmf = Some(DtmfConverter::new(InbandDtmfPlan {
                event_pt: 101,
                pcmu_pt: Some(0),
                pcma_pt: None,
                teams_event_pt: Some(101),
            }));
            let mut received = Vec::new();
            for s in 1..=3u16 {
                received.push(teams_to_carrier(&mut p, 0, s, &[0xff; 160], 0).unwrap());
            }
            let durations = [160u16, 320, 480, 640, 800, 800, 800];
            for (i, duration) in durations.iter().enumerate() {
                let end = if i >= 4 { 0x80 } else { 0 };
                let [d0, d1] = duration.to_be_bytes();
                let (mut buf, len) = rtp_packet(101, 4 + i as u16, &[5, end | 10, d0, d1]);
                // Every packet of an event carries its start timestamp (RFC 4733 §2.5.1).
                buf[4..8].copy_from_slice(&640u32.to_be_bytes());
                let len = SrtpStream::new(&keys(TEAMS_KEY))
                    .protect_rtp(&mut buf, len)
                    .unwrap();
                let action =
                    forward_step(&mut p, from_teams(addr(TEAMS_PEER)), &mut buf, len, t(0));
                match action {
                    Action::Forward { len, .. } => received.push(buf[..len].to_vec()),
                    other => assert_eq!(other, Action::Drop(DropReason::DtmfRedundant)),
                }
            }
            received.push(teams_to_carrier(&mut p, 0, 11, &[0xff; 160], 0).unwrap());
            let numbers: Vec<u16> = received.iter().map(|p| seq(p)).collect();
            assert_eq!(
                numbers,
                (1..=9).collect::<Vec<_>>(),
                "no gap at the carrier"
            );
            let octets: usize = received.iter().map(|p| p.len() - 12).sum();

            // Teams' SR (it sent 11 packets) as the carrier gets it.
            let mut buf = [0u8; PACKET_BUFFER_LEN];
            let sr = Report {
                ssrc: TEAMS_SSRC,
                sender: Some(SenderInfo {
                    ntp: 1 << 32,
                    rtp_timestamp: 1_760,
                    packets: 11,
                    octets: 11 * 160 - 7 * 156,
                }),
                block: None,
                cname: b"teams",
            };
            let len = write_report(&sr, &mut buf).unwrap();
            let len = SrtpStream::new(&keys(TEAMS_KEY))
                .protect_rtcp(&mut buf, len)
                .unwrap();
            let Action::Forward { len, .. } =
                forward_step(&mut p, from_teams(addr(TEAMS_PEER)), &mut buf, len, t(0))
            else {
                panic!("Teams' SR not relayed");
            };
            let packets =
                rtcp::packet::unmarshal(&mut Bytes::copy_from_slice(&buf[..len])).unwrap();
            let sr = packets[0].as_any().downcast_ref::<SenderReport>().unwrap();
            assert_eq!(
                (sr.packet_count, sr.octet_count),
                (received.len() as u32, octets as u32)
            );

            // The carrier's RR about that stream as Teams gets it.
            let rr = Report {
                ssrc: 0xca44_1e40,
                sender: None,
                block: Some(ReportBlock {
                    ssrc: TEAMS_SSRC,
                    fraction_lost: 0,
                    cumulative_lost: 0,
                    highest_sequence: 9,
                    jitter: 2,
                    last_sr: 0,
                    delay_since_last_sr: 0,
                }),
                cname: b"pstn",
            };
            let len = write_report(&rr, &mut buf).unwrap();
            let rtcp_port = Ingress {
                leg: LegSide::Carrier,
                socket: SocketRole::Rtcp,
                from: addr(CARRIER_PEER + 1),
            };
            let Action::Forward { len, .. } = forward_step(&mut p, rtcp_port, &mut buf, len, t(0))
            else {
                panic!("the carrier's RR not relayed");
            };
            let len = SrtpStream::new(&keys(SBC_KEY))
                .unprotect_rtcp(&mut buf, len)
                .unwrap();
            let packets =
                rtcp::packet::unmarshal(&mut Bytes::copy_from_slice(&buf[..len])).unwrap();
            let rr = packets[0]
                .as_any()
                .downcast_ref::<ReceiverReport>()
                .unwrap();
            assert_eq!(
                rr.reports[0].last_sequence_number, 11,
                "Teams' own numbering"
            );
            assert!(p.teams.reports.far_side_reports(0));
            assert!(p.carrier.reports.far_side_reports(0));
        }
    }
}
