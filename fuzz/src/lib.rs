//! Shared set-up for the media fuzz targets: fixed keys, a leg pair shaped like a real call,
//! and a reader that cuts the fuzzer's bytes into packets with a control byte each.

use std::net::SocketAddr;
use std::sync::Arc;

use teams_sbc::media::ice::IceCredentials;
use teams_sbc::media::leg::{LegPair, LegSide, LegState};
use teams_sbc::media::srtp::{KeyMaterial, SrtpSuite};
use teams_sbc::media::{InbandDtmfPlan, LatchingMode, SrtpKeys};

pub use teams_sbc::media::cipher::SrtpStream;

/// Where the carrier sends from (RTP; RTCP is the next port) and where Teams sends from.
pub const CARRIER_PEER: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7)),
    20_000,
);
pub const TEAMS_PEER: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(52, 112, 0, 5)),
    50_000,
);

/// Our ICE-lite credentials on the Teams leg and the remote agent's ufrag.
pub const LOCAL_UFRAG: &str = "sbcu";
pub const LOCAL_PWD: &str = "sbcPasswordOf22Chars00";
pub const REMOTE_UFRAG: &str = "teams";

/// One direction's keys: each direction of each leg has its own, as in a real call.
pub fn keys(direction: u8, suite: SrtpSuite) -> SrtpKeys {
    SrtpKeys::new(
        suite,
        KeyMaterial::new([direction; 16], [direction.wrapping_add(0x40); 14]),
    )
}
pub const TEAMS_TO_SBC: u8 = 1;
pub const SBC_TO_TEAMS: u8 = 2;
pub const CARRIER_TO_SBC: u8 = 3;
pub const SBC_TO_CARRIER: u8 = 4;

/// The call shape the first input byte selects.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub suite: SrtpSuite,
    /// SRTP on the carrier leg too (some carriers do SDES).
    pub carrier_srtp: bool,
    pub latching: LatchingMode,
    /// ICE-lite on the Teams leg (media bypass), with or without the remote ufrag known.
    pub ice: Option<bool>,
    /// The carrier has no telephone-event: in-band DTMF conversion both ways.
    pub inband_dtmf: bool,
    /// The carrier muxes RTCP on its RTP port.
    pub carrier_rtcp_mux: bool,
}

impl Shape {
    pub fn from_byte(byte: u8) -> Self {
        Shape {
            suite: if byte & 1 == 0 {
                SrtpSuite::AesCm128HmacSha1_80
            } else {
                SrtpSuite::AesCm128HmacSha1_32
            },
            carrier_srtp: byte & 2 != 0,
            latching: match (byte >> 2) & 3 {
                0 => LatchingMode::Off,
                1 => LatchingMode::Learn { after_packets: 2 },
                _ => LatchingMode::Strict { after_packets: 1 },
            },
            ice: match (byte >> 4) & 3 {
                0 | 1 => None,
                2 => Some(false),
                _ => Some(true),
            },
            inband_dtmf: byte & 0x40 != 0,
            carrier_rtcp_mux: byte & 0x80 != 0,
        }
    }

    /// A carrier leg and a Teams leg as the engine sets them up after an answer.
    pub fn leg_pair(&self) -> LegPair {
        let mut carrier = LegState::new(LegSide::Carrier, self.latching, true, Arc::default(), 0);
        carrier.set_remote(
            CARRIER_PEER,
            Some(SocketAddr::new(CARRIER_PEER.ip(), CARRIER_PEER.port() + 1)),
            self.carrier_rtcp_mux,
        );
        if self.carrier_srtp {
            carrier.set_srtp(
                Some(SrtpStream::new(&keys(CARRIER_TO_SBC, self.suite))),
                Some(SrtpStream::new(&keys(SBC_TO_CARRIER, self.suite))),
            );
        }
        if self.inband_dtmf {
            carrier.inband_dtmf = Some(teams_sbc::media::dtmf_convert::DtmfConverter::new(
                InbandDtmfPlan {
                    event_pt: 101,
                    pcmu_pt: Some(0),
                    pcma_pt: Some(8),
                    teams_event_pt: Some(101),
                },
            ));
        }
        let mut teams = LegState::new(LegSide::Teams, self.latching, false, Arc::default(), 0);
        if let Some(remote_known) = self.ice {
            teams.enable_ice(
                IceCredentials {
                    local_ufrag: LOCAL_UFRAG.into(),
                    local_pwd: LOCAL_PWD.into(),
                    remote_ufrag: remote_known.then(|| REMOTE_UFRAG.to_string()),
                },
                !remote_known,
            );
        }
        teams.set_remote(TEAMS_PEER, None, true);
        teams.set_srtp(
            Some(SrtpStream::new(&keys(TEAMS_TO_SBC, self.suite))),
            Some(SrtpStream::new(&keys(SBC_TO_TEAMS, self.suite))),
        );
        LegPair { carrier, teams }
    }
}

/// Cuts input into records: a control byte, a length byte (x8, so packets up to ~2 KB are
/// reachable with short inputs when the high bit of the control byte is set), then the bytes.
pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Records<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Records { rest: data }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (&control, rest) = self.rest.split_first()?;
        let (&len, rest) = rest.split_first()?;
        let len = if control & 0x80 != 0 {
            usize::from(len) * 8
        } else {
            usize::from(len)
        };
        let (packet, rest) = rest.split_at(len.min(rest.len()));
        self.rest = rest;
        Some((control, packet))
    }
}
