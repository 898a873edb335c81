//! Prometheus metrics of the media engine. Workers count into plain integers of their own
//! ([`WorkerTally`]) per packet and flush those into the Prometheus counters (atomics) once
//! per batch, so the per-packet path never touches a shared cache line or a lock.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Why a packet was not forwarded (label values are fixed here, never from the network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not RTP, RTCP or (on an ICE leg) STUN.
    Malformed,
    /// The other leg has no remote address yet.
    NoRemote,
    /// SRTP/SRTCP authentication or replay check failed.
    SrtpAuth,
    /// Encryption towards the other leg failed (no room, missing context).
    SrtpProtect,
    /// Latching: a packet from a source the latch does not take (another source than the
    /// latched one once the window after an offer/answer closed, in strict mode).
    Latching,
    /// STUN on a leg without ICE, or a check with bad credentials.
    Stun,
    /// The socket refused the send.
    SendError,
    /// A payload type the receiving leg never negotiated (Teams' DTMF events towards a
    /// carrier without telephone-event, row 48).
    UnnegotiatedPayload,
    /// An RFC 4733 repeat (retransmission, end copy) that adds no tone for an in-band carrier.
    DtmfRedundant,
    /// Carrier leg: a source that is neither a host the peer's SDP names nor in the trunk's
    /// networks (RTP Bleed, injection).
    UnknownSource,
    /// Plain RTP/RTCP on the SRTP (Teams) leg, which has no keys yet.
    NotSrtp,
    /// Relayed audio towards a leg that hears the SBC's ringback instead (row 38: the old
    /// Teams leg of a transfer while the new target rings).
    RingbackPlaying,
}

impl DropReason {
    pub const ALL: [DropReason; 12] = [
        DropReason::Malformed,
        DropReason::NoRemote,
        DropReason::SrtpAuth,
        DropReason::SrtpProtect,
        DropReason::Latching,
        DropReason::Stun,
        DropReason::SendError,
        DropReason::UnnegotiatedPayload,
        DropReason::DtmfRedundant,
        DropReason::UnknownSource,
        DropReason::NotSrtp,
        DropReason::RingbackPlaying,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::NoRemote => "no_remote",
            DropReason::SrtpAuth => "srtp_auth",
            DropReason::SrtpProtect => "srtp_protect",
            DropReason::Latching => "latching",
            DropReason::Stun => "stun",
            DropReason::SendError => "send_error",
            DropReason::UnnegotiatedPayload => "unnegotiated_payload",
            DropReason::DtmfRedundant => "dtmf_redundant",
            DropReason::UnknownSource => "unknown_source",
            DropReason::NotSrtp => "not_srtp",
            DropReason::RingbackPlaying => "ringback_playing",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Packets the SBC makes itself (not relayed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generated {
    /// Sender/receiver reports on a leg whose far side sends none (row 46).
    RtcpReport = 0,
    /// Comfort noise towards a leg without CN (row 49).
    ComfortNoise = 1,
    /// Ringback towards the carrier during a transfer (row 38).
    Ringback = 2,
}

impl Generated {
    pub const ALL: [Generated; 3] = [
        Generated::RtcpReport,
        Generated::ComfortNoise,
        Generated::Ringback,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Generated::RtcpReport => "rtcp_report",
            Generated::ComfortNoise => "comfort_noise",
            Generated::Ringback => "ringback",
        }
    }
}

/// Direction of a forwarded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    CarrierToTeams = 0,
    TeamsToCarrier = 1,
}

impl Direction {
    pub fn label(self) -> &'static str {
        match self {
            Direction::CarrierToTeams => "carrier_to_teams",
            Direction::TeamsToCarrier => "teams_to_carrier",
        }
    }
}

/// The engine's Prometheus metrics.
#[derive(Clone)]
pub struct MediaMetrics {
    packets: [IntCounter; 2],
    bytes: [IntCounter; 2],
    dropped: Vec<IntCounter>,
    generated: Vec<IntCounter>,
    pub sessions_active: IntGauge,
    pub legs_active: IntGauge,
    pub srtp_auth_failures: IntCounter,
    pub ice_checks_answered: IntCounter,
}

impl MediaMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let packets = IntCounterVec::new(
            Opts::new(
                "media_packets_total",
                "Media packets forwarded between legs",
            ),
            &["direction"],
        )?;
        let bytes = IntCounterVec::new(
            Opts::new("media_bytes_total", "Media bytes received and forwarded"),
            &["direction"],
        )?;
        let dropped = IntCounterVec::new(
            Opts::new("media_packets_dropped_total", "Media packets not forwarded"),
            &["reason"],
        )?;
        let generated = IntCounterVec::new(
            Opts::new(
                "media_generated_packets_total",
                "Packets the SBC made itself: RTCP reports, comfort noise, ringback",
            ),
            &["kind"],
        )?;
        let sessions_active = IntGauge::new("media_sessions_active", "Media sessions open")?;
        let legs_active = IntGauge::new("media_legs_active", "Media legs open")?;
        let srtp_auth_failures = IntCounter::new(
            "media_srtp_auth_failures_total",
            "SRTP/SRTCP packets failing authentication",
        )?;
        let ice_checks_answered = IntCounter::new(
            "media_ice_checks_answered_total",
            "STUN connectivity checks answered (ICE-lite)",
        )?;
        registry.register(Box::new(packets.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(generated.clone()))?;
        registry.register(Box::new(sessions_active.clone()))?;
        registry.register(Box::new(legs_active.clone()))?;
        registry.register(Box::new(srtp_auth_failures.clone()))?;
        registry.register(Box::new(ice_checks_answered.clone()))?;
        let by_direction = |vec: &IntCounterVec| {
            [
                vec.with_label_values(&[Direction::CarrierToTeams.label()]),
                vec.with_label_values(&[Direction::TeamsToCarrier.label()]),
            ]
        };
        Ok(Self {
            packets: by_direction(&packets),
            bytes: by_direction(&bytes),
            dropped: DropReason::ALL
                .iter()
                .map(|r| dropped.with_label_values(&[r.label()]))
                .collect(),
            generated: Generated::ALL
                .iter()
                .map(|g| generated.with_label_values(&[g.label()]))
                .collect(),
            sessions_active,
            legs_active,
            srtp_auth_failures,
            ice_checks_answered,
        })
    }

    /// Adds a worker's batch tally and clears it.
    pub fn flush(&self, tally: &mut WorkerTally) {
        if tally.is_empty() {
            return;
        }
        for d in 0..2 {
            if tally.packets[d] > 0 {
                self.packets[d].inc_by(tally.packets[d]);
            }
            if tally.bytes[d] > 0 {
                self.bytes[d].inc_by(tally.bytes[d]);
            }
        }
        for (counter, &count) in self.dropped.iter().zip(tally.dropped.iter()) {
            if count > 0 {
                counter.inc_by(count);
            }
        }
        for (counter, &count) in self.generated.iter().zip(tally.generated.iter()) {
            if count > 0 {
                counter.inc_by(count);
            }
        }
        if tally.srtp_auth_failures > 0 {
            self.srtp_auth_failures.inc_by(tally.srtp_auth_failures);
        }
        if tally.ice_checks_answered > 0 {
            self.ice_checks_answered.inc_by(tally.ice_checks_answered);
        }
        *tally = WorkerTally::default();
    }
}

/// Plain counters a worker fills per packet.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WorkerTally {
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    pub dropped: [u64; DropReason::ALL.len()],
    pub generated: [u64; Generated::ALL.len()],
    pub srtp_auth_failures: u64,
    pub ice_checks_answered: u64,
}

impl WorkerTally {
    pub fn forwarded(&mut self, direction: Direction, bytes: usize) {
        self.packets[direction as usize] += 1;
        self.bytes[direction as usize] += bytes as u64;
    }

    pub fn dropped(&mut self, reason: DropReason) {
        self.dropped[reason.index()] += 1;
        if reason == DropReason::SrtpAuth {
            self.srtp_auth_failures += 1;
        }
    }

    pub fn generated(&mut self, kind: Generated) {
        self.generated[kind as usize] += 1;
    }

    fn is_empty(&self) -> bool {
        *self == WorkerTally::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_counter() {
        for (position, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), position, "{reason:?}");
        }
    }

    #[test]
    fn every_generated_kind_has_its_own_counter() {
        for (position, kind) in Generated::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, position, "{kind:?}");
        }
    }

    #[test]
    fn flush_moves_tally_into_counters() {
        let registry = Registry::new();
        let metrics = MediaMetrics::register(&registry).unwrap();
        let mut tally = WorkerTally::default();
        tally.forwarded(Direction::CarrierToTeams, 172);
        tally.forwarded(Direction::CarrierToTeams, 172);
        tally.forwarded(Direction::TeamsToCarrier, 100);
        tally.dropped(DropReason::SrtpAuth);
        tally.ice_checks_answered += 1;
        tally.generated(Generated::RtcpReport);
        metrics.flush(&mut tally);
        assert_eq!(tally, WorkerTally::default());
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(text.contains("media_packets_total{direction=\"carrier_to_teams\"} 2"));
        assert!(text.contains("media_bytes_total{direction=\"teams_to_carrier\"} 100"));
        assert!(text.contains("media_packets_dropped_total{reason=\"srtp_auth\"} 1"));
        assert!(text.contains("media_srtp_auth_failures_total 1"));
        assert!(text.contains("media_ice_checks_answered_total 1"));
        assert!(text.contains("media_generated_packets_total{kind=\"rtcp_report\"} 1"));
    }
}
