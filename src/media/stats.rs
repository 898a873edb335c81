//! Per-leg statistics: loss from sequence gaps (RFC 3550 A.1, simplified) and interarrival
//! jitter (RFC 3550 A.8), computed by the worker and published through atomics.

use std::sync::atomic::{AtomicU64, Ordering};

const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;

/// Receive-side state of one leg, owned by its worker (never shared).
#[derive(Debug, Clone, Default)]
pub struct ReceiveStats {
    source: Option<u32>,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    received: u64,
    last_transit: Option<i64>,
    last_clock_rate: u32,
    /// Jitter in timestamp units, scaled by 16 (the integer form of RFC 3550 A.8).
    jitter_x16: u64,
}

impl ReceiveStats {
    /// Accounts one RTP packet. `arrival_micros` is the arrival time on any monotonic clock.
    pub fn on_rtp(
        &mut self,
        ssrc: u32,
        sequence: u16,
        timestamp: u32,
        clock_rate: u32,
        arrival_micros: u64,
    ) {
        if self.source != Some(ssrc) {
            *self = Self {
                source: Some(ssrc),
                base_seq: sequence as u32,
                max_seq: sequence,
                ..Self::default()
            };
        } else {
            let delta = sequence.wrapping_sub(self.max_seq);
            if delta != 0 && delta < MAX_DROPOUT {
                if sequence < self.max_seq {
                    self.cycles += 1;
                }
                self.max_seq = sequence;
            } else if delta != 0 && delta <= u16::MAX - MAX_MISORDER {
                // A large jump: the sender restarted its sequence; start counting afresh.
                self.base_seq = sequence as u32;
                self.max_seq = sequence;
                self.cycles = 0;
                self.received = 0;
            }
            // Otherwise a duplicate or a late packet: counted as received, max unchanged.
        }
        self.received += 1;
        self.update_jitter(timestamp, clock_rate, arrival_micros);
    }

    fn update_jitter(&mut self, timestamp: u32, clock_rate: u32, arrival_micros: u64) {
        if clock_rate == 0 {
            return;
        }
        let arrival_units = (arrival_micros as u128 * clock_rate as u128 / 1_000_000) as u64;
        // Transit modulo 2^32 keeps the arithmetic meaningful across timestamp wrap.
        let transit = arrival_units.wrapping_sub(timestamp as u64) as u32 as i32 as i64;
        if self.last_clock_rate == clock_rate {
            if let Some(previous) = self.last_transit {
                let d = (transit - previous).unsigned_abs();
                // J += (|D| - J) / 16, kept as 16*J in integers.
                self.jitter_x16 = self.jitter_x16 + d - ((self.jitter_x16 + 8) >> 4);
            }
        }
        self.last_transit = Some(transit);
        self.last_clock_rate = clock_rate;
    }

    pub fn expected(&self) -> u64 {
        if self.source.is_none() {
            return 0;
        }
        let extended_max = ((self.cycles as u64) << 16) | self.max_seq as u64;
        (extended_max + 1).saturating_sub(self.base_seq as u64)
    }

    /// Packets expected but not received (duplicates can make received exceed expected).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u64 {
        self.jitter_x16 >> 4
    }
}

/// Counters of one leg, written by its worker and read by `MediaHandle::stats`.
#[derive(Debug, Default)]
pub struct LegCounters {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub rtcp_rx_packets: AtomicU64,
    pub lost: AtomicU64,
    pub jitter: AtomicU64,
    pub dropped: AtomicU64,
    pub srtp_auth_failures: AtomicU64,
    pub stun_answered: AtomicU64,
    /// Milliseconds since the engine started; 0 = nothing received yet.
    pub last_rx_millis: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl LegCounters {
    pub fn on_receive(&self, bytes: usize, now_millis: u64) {
        bump(&self.rx_packets, 1);
        bump(&self.rx_bytes, bytes as u64);
        self.last_rx_millis
            .store(now_millis.max(1), Ordering::Relaxed);
    }

    pub fn on_send(&self, bytes: usize) {
        bump(&self.tx_packets, 1);
        bump(&self.tx_bytes, bytes as u64);
    }

    pub fn on_rtcp(&self) {
        bump(&self.rtcp_rx_packets, 1);
    }

    pub fn on_drop(&self) {
        bump(&self.dropped, 1);
    }

    pub fn on_auth_failure(&self) {
        bump(&self.srtp_auth_failures, 1);
    }

    pub fn on_stun_answered(&self) {
        bump(&self.stun_answered, 1);
    }

    pub fn publish_receive_stats(&self, stats: &ReceiveStats) {
        self.lost.store(stats.lost(), Ordering::Relaxed);
        self.jitter.store(stats.jitter(), Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> LegStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let last = load(&self.last_rx_millis);
        LegStats {
            rx_packets: load(&self.rx_packets),
            rx_bytes: load(&self.rx_bytes),
            tx_packets: load(&self.tx_packets),
            tx_bytes: load(&self.tx_bytes),
            rtcp_rx_packets: load(&self.rtcp_rx_packets),
            lost: load(&self.lost),
            jitter: load(&self.jitter),
            dropped: load(&self.dropped),
            srtp_auth_failures: load(&self.srtp_auth_failures),
            stun_answered: load(&self.stun_answered),
            last_rx_millis: (last > 0).then_some(last),
        }
    }
}

/// A consistent-enough copy of one leg's counters. `rx_*` are packets received on the leg
/// (RTP, RTCP and STUN), `tx_*` packets the SBC sent out of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LegStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rtcp_rx_packets: u64,
    pub lost: u64,
    /// RFC 3550 interarrival jitter, in timestamp units of the received payload.
    pub jitter: u64,
    pub dropped: u64,
    pub srtp_auth_failures: u64,
    pub stun_answered: u64,
    /// Milliseconds since the engine started at the last received packet.
    pub last_rx_millis: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_gaps_as_loss() {
        let mut s = ReceiveStats::default();
        for seq in [10u16, 11, 12, 15, 16] {
            s.on_rtp(1, seq, seq as u32 * 160, 8000, seq as u64 * 20_000);
        }
        assert_eq!(s.expected(), 7);
        assert_eq!(s.lost(), 2);
    }

    #[test]
    fn sequence_wrap_is_not_loss() {
        let mut s = ReceiveStats::default();
        for seq in [65534u16, 65535, 0, 1, 2] {
            s.on_rtp(7, seq, 0, 8000, 0);
        }
        assert_eq!(s.expected(), 5);
        assert_eq!(s.lost(), 0);
    }

    #[test]
    fn new_ssrc_restarts_counting() {
        let mut s = ReceiveStats::default();
        s.on_rtp(1, 100, 0, 8000, 0);
        s.on_rtp(1, 110, 0, 8000, 0);
        assert_eq!(s.lost(), 9);
        s.on_rtp(2, 5000, 0, 8000, 0);
        s.on_rtp(2, 5001, 0, 8000, 0);
        assert_eq!(s.lost(), 0);
    }

    #[test]
    fn late_and_duplicate_packets_do_not_go_negative() {
        let mut s = ReceiveStats::default();
        for seq in [1u16, 2, 4, 3, 3, 3] {
            s.on_rtp(1, seq, 0, 8000, 0);
        }
        assert_eq!(s.expected(), 4);
        assert_eq!(s.lost(), 0);
    }

    #[test]
    fn steady_stream_has_zero_jitter() {
        let mut s = ReceiveStats::default();
        for i in 0..100u64 {
            s.on_rtp(
                1,
                i as u16,
                1000 + i as u32 * 160,
                8000,
                5_000_000 + i * 20_000,
            );
        }
        assert_eq!(s.jitter(), 0);
    }

    #[test]
    fn alternating_delay_converges_to_rfc3550_value() {
        // Every other packet arrives 10 ms (80 timestamp units at 8 kHz) late, so |D| = 80
        // on every packet and J converges towards 80.
        let mut s = ReceiveStats::default();
        for i in 0..400u64 {
            let late = if i % 2 == 1 { 10_000 } else { 0 };
            s.on_rtp(1, i as u16, i as u32 * 160, 8000, i * 20_000 + late);
        }
        assert!((78..=80).contains(&s.jitter()), "jitter {}", s.jitter());
    }

    #[test]
    fn jitter_uses_the_payload_clock_rate() {
        let mut s = ReceiveStats::default();
        for i in 0..400u64 {
            let late = if i % 2 == 1 { 10_000 } else { 0 };
            s.on_rtp(1, i as u16, i as u32 * 320, 16000, i * 20_000 + late);
        }
        assert!((158..=160).contains(&s.jitter()), "jitter {}", s.jitter());
    }

    #[test]
    fn snapshot_reads_counters() {
        let c = LegCounters::default();
        assert_eq!(c.snapshot().last_rx_millis, None);
        c.on_receive(172, 42);
        c.on_send(182);
        let s = c.snapshot();
        assert_eq!(
            (s.rx_packets, s.rx_bytes, s.tx_packets, s.tx_bytes),
            (1, 172, 1, 182)
        );
        assert_eq!(s.last_rx_millis, Some(42));
    }
}
