//! `media::forward_step`, the whole per-packet path, on arbitrary datagrams from arbitrary
//! sources in both directions. The first byte shapes the call (SRTP suite, carrier SRTP,
//! latching, ICE-lite on the Teams leg, in-band DTMF conversion, carrier RTCP mux); then each
//! record is one datagram whose control byte picks the ingress leg and socket, the source
//! address, the clock step, and whether the bytes are sent raw, as authentic SRTP or SRTCP
//! (protected with the peer's key, so the code behind authentication is reached), or as a
//! signed STUN Binding request for our ICE-lite responder.
//!
//! Checked: no panic; a forwarded packet leaves on the other leg, fits the buffer, and when
//! that leg is SRTP it authenticates with that leg's receiving key; a reply goes back to the
//! sender and is STUN.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use stun::attributes::{AttrType, ATTR_PRIORITY, ATTR_USERNAME, ATTR_USE_CANDIDATE};
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{Message, Setter, BINDING_REQUEST};
use teams_sbc::media::ice::{self, MAX_RESPONSE_LEN};
use teams_sbc::media::rtp::{self, PacketKind};
use teams_sbc::media::sys::PACKET_BUFFER_LEN;
use teams_sbc::media::{forward_step, Action, Ingress, LegSide, PacketTime, SocketRole};
use teams_sbc_fuzz::{
    keys, Records, Shape, SrtpStream, CARRIER_PEER, CARRIER_TO_SBC, LOCAL_PWD, LOCAL_UFRAG,
    REMOTE_UFRAG, SBC_TO_CARRIER, SBC_TO_TEAMS, TEAMS_PEER, TEAMS_TO_SBC,
};

fn source(leg: LegSide, choice: u8) -> SocketAddr {
    let peer = match leg {
        LegSide::Carrier => CARRIER_PEER,
        LegSide::Teams => TEAMS_PEER,
    };
    match choice {
        0 => peer,
        1 => SocketAddr::new(peer.ip(), peer.port() + 1),
        2 => SocketAddr::from(([203, 0, 113, 99], 40_000)),
        _ => SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 9], 40_002)),
    }
}

/// A Binding request signed with our ICE password; `body`'s first byte chooses the
/// USERNAME's remote part and USE-CANDIDATE, the rest become extra attributes.
fn binding_request(body: &[u8]) -> Vec<u8> {
    let flags = body.first().copied().unwrap_or(0);
    let mut m = Message::new();
    m.typ = BINDING_REQUEST;
    let mut id = [0u8; 12];
    for (slot, byte) in id.iter_mut().zip(body) {
        *slot = *byte;
    }
    m.transaction_id.0 = id;
    m.write_header();
    let remote = if flags & 1 == 0 {
        REMOTE_UFRAG
    } else {
        "fork2"
    };
    m.add(ATTR_USERNAME, format!("{LOCAL_UFRAG}:{remote}").as_bytes());
    m.add(ATTR_PRIORITY, &u32::from(flags).to_be_bytes());
    if flags & 2 != 0 {
        m.add(ATTR_USE_CANDIDATE, &[]);
    }
    let mut rest = body.get(12..).unwrap_or(&[]);
    while let [t0, t1, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (value, after) = tail.split_at(len);
        m.add(AttrType(u16::from_be_bytes([*t0, *t1])), value);
        rest = after;
    }
    if MessageIntegrity::new_short_term_integrity(LOCAL_PWD.into())
        .add_to(&mut m)
        .is_err()
        || FINGERPRINT.add_to(&mut m).is_err()
    {
        return Vec::new();
    }
    m.raw
}

/// The receiving peer's view of a packet we sent on an SRTP leg: it must authenticate.
/// SRTCP carries its index, so any packet checks with a fresh context. For SRTP the
/// receiver guesses the rollover counter; a fresh context guesses 0, so only packets our
/// outbound context sent with rollover counter 0 are checked (others need the receiver's
/// history, which arbitrary sequence jumps make ambiguous by design of RFC 3711).
fn check_authentic(packet: &mut [u8], direction: u8, shape: &Shape, ours: &SrtpStream) {
    let mut receiver = SrtpStream::new(&keys(direction, shape.suite));
    let len = packet.len();
    match rtp::classify(packet) {
        PacketKind::Rtcp => {
            let result = receiver.unprotect_rtcp(packet, len);
            assert!(
                result.is_ok(),
                "our SRTCP does not authenticate: {result:?}"
            );
        }
        PacketKind::Rtp => {
            let ssrc = packet
                .get(8..12)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            if ssrc.and_then(|ssrc| ours.rollover_counter(ssrc)) == Some(0) {
                let result = receiver.unprotect_rtp(packet, len);
                assert!(result.is_ok(), "our SRTP does not authenticate: {result:?}");
            }
        }
        kind => panic!("forwarded a packet that is neither RTP nor RTCP: {kind:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&shape_byte, data)) = data.split_first() else {
        return;
    };
    let shape = Shape::from_byte(shape_byte);
    let mut pair = shape.leg_pair();
    // The peers' own sending contexts, kept across packets like real endpoints.
    let mut teams_sender = SrtpStream::new(&keys(TEAMS_TO_SBC, shape.suite));
    let mut carrier_sender = SrtpStream::new(&keys(CARRIER_TO_SBC, shape.suite));
    let mut micros = 0u64;

    for (control, bytes) in Records::new(data) {
        let leg = if control & 1 == 0 {
            LegSide::Carrier
        } else {
            LegSide::Teams
        };
        // The Teams leg has one socket (rtcp-mux); the carrier leg an RTP and an RTCP one.
        let socket = if leg == LegSide::Carrier && control & 2 != 0 {
            SocketRole::Rtcp
        } else {
            SocketRole::Rtp
        };
        let from = source(leg, (control >> 2) & 3);
        micros += if control & 0x40 == 0 {
            20_000
        } else {
            5_000_000
        };

        let mut buf = [0u8; PACKET_BUFFER_LEN];
        let body = bytes.get(..PACKET_BUFFER_LEN - 64).unwrap_or(bytes);
        let mut len = body.len();
        buf[..len].copy_from_slice(body);
        let sender = match leg {
            LegSide::Teams => Some(&mut teams_sender),
            LegSide::Carrier if shape.carrier_srtp => Some(&mut carrier_sender),
            LegSide::Carrier => None,
        };
        match ((control >> 4) & 3, sender) {
            (1, Some(sender)) => match sender.protect_rtp(&mut buf, len) {
                Ok(n) => len = n,
                Err(_) => continue,
            },
            (2, Some(sender)) => match sender.protect_rtcp(&mut buf, len) {
                Ok(n) => len = n,
                Err(_) => continue,
            },
            (3, _) => {
                let request = binding_request(body);
                let Some(slot) = buf.get_mut(..request.len()) else {
                    continue;
                };
                slot.copy_from_slice(&request);
                len = request.len();
            }
            _ => {}
        }

        let ingress = Ingress { leg, socket, from };
        match forward_step(
            &mut pair,
            ingress,
            &mut buf,
            len,
            PacketTime::from_micros(micros),
        ) {
            Action::Forward {
                leg: out_leg,
                len: out_len,
                ..
            } => {
                assert_ne!(out_leg, leg, "forwarded back out of the ingress leg");
                assert!(out_len <= PACKET_BUFFER_LEN);
                let packet = &mut buf[..out_len];
                match out_leg {
                    LegSide::Teams => {
                        if let Some(ours) = pair.teams.srtp_out.as_ref() {
                            check_authentic(packet, SBC_TO_TEAMS, &shape, ours);
                        }
                    }
                    LegSide::Carrier => match pair.carrier.srtp_out.as_ref() {
                        Some(ours) => check_authentic(packet, SBC_TO_CARRIER, &shape, ours),
                        None => assert!(matches!(
                            rtp::classify(packet),
                            PacketKind::Rtp | PacketKind::Rtcp
                        )),
                    },
                }
            }
            Action::Reply { to, len } => {
                assert_eq!(to, from, "a STUN answer goes back to its sender");
                assert!(len <= MAX_RESPONSE_LEN);
                assert!(ice::is_stun(&buf[..len]));
            }
            Action::Drop(_) => {}
        }
    }
});
