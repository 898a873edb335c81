//! The whole per-packet forward step, without sockets: demultiplex, authenticate/decrypt,
//! latch, account, rewrite, encrypt, and decide where the packet goes. Workers call it for
//! every received datagram; `benches/media.rs` calls it directly to measure the in-memory
//! cost of forwarding one packet.
//!
//! It never allocates and never locks: the buffer is transformed in place and the legs
//! are borrowed mutably from the worker's own table.

use std::net::SocketAddr;

use crate::media::cipher::CipherError;
use crate::media::ice_glue::{answer_stun, StunAnswer};
use crate::media::leg::{LatchVerdict, LegNotice, LegPair, LegSide, LegState, SocketRole};
use crate::media::metrics::DropReason;
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
pub fn forward_step(
    pair: &mut LegPair,
    ingress: Ingress,
    buf: &mut [u8],
    len: usize,
    now: PacketTime,
) -> Action {
    let (inbound, outbound) = pair.split(ingress.leg);
    inbound.counters.on_receive(len, now.millis);
    inbound.inactivity.on_activity(now.millis);
    let action = step(inbound, outbound, ingress, buf, len, now);
    match action {
        Action::Forward { len, .. } => outbound.counters.on_send(len),
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
        PacketKind::Rtcp => rtcp(inbound, outbound, ingress, buf, len),
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
        } => {
            if nominate {
                if ice.nominated != Some(ingress.from) {
                    ice.nominated = Some(ingress.from);
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
    if let Some(srtp) = inbound.srtp_in.as_mut() {
        len = match srtp.unprotect_rtp(buf, len) {
            Ok(n) => n,
            Err(CipherError::Auth) => return Action::Drop(DropReason::SrtpAuth),
            Err(CipherError::Malformed) => return Action::Drop(DropReason::Malformed),
        };
    }
    let Some(header) = rtp::read_rtp_header(&buf[..len]) else {
        return Action::Drop(DropReason::Malformed);
    };
    if !accept_media_source(inbound, ingress.from) {
        return Action::Drop(DropReason::Latching);
    }
    let payloads = &inbound.inbound_payloads;
    inbound.receive_stats.on_rtp(
        header.ssrc,
        header.sequence,
        header.timestamp,
        payloads.clock_rate(header.payload_type),
        now.micros,
    );
    inbound
        .counters
        .publish_receive_stats(&inbound.receive_stats);
    let mapped = payloads.rewrite(header.payload_type);
    if mapped != header.payload_type {
        rtp::write_payload_type(buf, mapped);
    }
    let Some(to) = outbound.remote_rtp else {
        return Action::Drop(DropReason::NoRemote);
    };
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

/// Latching (carrier leg) and pre-nomination media following (ICE leg) for a packet that
/// has passed authentication. Returns false when strict latching rejects the source.
fn accept_media_source(inbound: &mut LegState, from: SocketAddr) -> bool {
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
    match inbound.latch.observe(from) {
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
) -> Action {
    if let Some(srtp) = inbound.srtp_in.as_mut() {
        len = match srtp.unprotect_rtcp(buf, len) {
            Ok(n) => n,
            Err(CipherError::Auth) => return Action::Drop(DropReason::SrtpAuth),
            Err(CipherError::Malformed) => return Action::Drop(DropReason::Malformed),
        };
    }
    if inbound.ice.is_none() {
        if !inbound.latch.allows_rtcp_from(ingress.from) {
            return Action::Drop(DropReason::Latching);
        }
        // Symmetric RTCP: answer where it comes from once latching is on.
        if ingress.socket == SocketRole::Rtcp
            && inbound.latch.mode != crate::media::settings::LatchingMode::Off
        {
            inbound.remote_rtcp = Some(ingress.from);
        }
    }
    inbound.counters.on_rtcp();
    let Some((socket, to)) = outbound.rtcp_destination() else {
        return Action::Drop(DropReason::NoRemote);
    };
    if let Some(srtp) = outbound.srtp_out.as_mut() {
        len = match srtp.protect_rtcp(buf, len) {
            Ok(n) => n,
            Err(_) => return Action::Drop(DropReason::SrtpProtect),
        };
    }
    Action::Forward {
        leg: outbound.side,
        socket,
        to,
        len,
    }
}
