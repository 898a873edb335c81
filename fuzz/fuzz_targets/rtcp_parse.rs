//! RTCP as the relay sees it: `rtp::classify` and the header reads on arbitrary bytes, then
//! the RTCP path of `forward_step` from the carrier's RTCP port (plain in, SRTCP out to Teams,
//! with the output checked against the Teams receiving key) and from Teams (authentic SRTCP
//! made from the fuzzer's bytes, plain RTCP out to the carrier's RTCP port).
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use teams_sbc::media::rtp::{self, PacketKind};
use teams_sbc::media::sys::PACKET_BUFFER_LEN;
use teams_sbc::media::{forward_step, Action, Ingress, LegSide, PacketTime, SocketRole};
use teams_sbc_fuzz::{
    keys, Records, Shape, SrtpStream, CARRIER_PEER, SBC_TO_TEAMS, TEAMS_PEER, TEAMS_TO_SBC,
};

fuzz_target!(|data: &[u8]| {
    // Plain carrier, SRTP (80-bit) Teams leg, latching off, no ICE, no DTMF conversion.
    let shape = Shape::from_byte(0);
    let mut pair = shape.leg_pair();
    let mut teams_sender = SrtpStream::new(&keys(TEAMS_TO_SBC, shape.suite));
    let carrier_rtcp = SocketAddr::new(CARRIER_PEER.ip(), CARRIER_PEER.port() + 1);

    for (control, bytes) in Records::new(data) {
        let kind = rtp::classify(bytes);
        let _ = (rtp::read_rtp_header(bytes), kind);

        let mut buf = [0u8; PACKET_BUFFER_LEN];
        let body = bytes.get(..PACKET_BUFFER_LEN - 64).unwrap_or(bytes);
        buf[..body.len()].copy_from_slice(body);
        let mut len = body.len();
        let from_teams = control & 1 != 0;
        let ingress = if from_teams {
            match teams_sender.protect_rtcp(&mut buf, len) {
                Ok(n) => len = n,
                Err(_) => continue,
            }
            Ingress {
                leg: LegSide::Teams,
                socket: SocketRole::Rtp,
                from: TEAMS_PEER,
            }
        } else {
            Ingress {
                leg: LegSide::Carrier,
                socket: SocketRole::Rtcp,
                from: carrier_rtcp,
            }
        };
        let action = forward_step(
            &mut pair,
            ingress,
            &mut buf,
            len,
            PacketTime::from_micros(0),
        );
        if let Action::Forward {
            leg,
            socket,
            to,
            len,
        } = action
        {
            let packet = &mut buf[..len];
            if from_teams {
                assert_eq!(
                    (leg, socket, to),
                    (LegSide::Carrier, SocketRole::Rtcp, carrier_rtcp)
                );
                assert_eq!(rtp::classify(packet), PacketKind::Rtcp);
            } else {
                assert_eq!((leg, to), (LegSide::Teams, TEAMS_PEER));
                let mut receiver = SrtpStream::new(&keys(SBC_TO_TEAMS, shape.suite));
                let result = receiver.unprotect_rtcp(packet, len);
                assert!(
                    result.is_ok(),
                    "SRTCP to Teams does not authenticate: {result:?}"
                );
            }
        }
    }
});
