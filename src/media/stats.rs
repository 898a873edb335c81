//! Per-leg statistics: loss from sequence gaps (RFC 3550 A.1, simplified) and interarrival
//! jitter (RFC 3550 A.8) of what a leg receives, the sender's view of what it sends
//! ([`SentStream`]), computed by the worker and published through atomics; both feed the
//! RTCP reports the SBC makes itself (row 46, `media::rtcp`).

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
    /// `expected()` and `received` when the last report was built (RFC 3550 A.3).
    expected_prior: u64,
    received_prior: u64,
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
                self.expected_prior = 0;
                self.received_prior = 0;
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

    /// SSRC of the stream being counted.
    pub fn source(&self) -> Option<u32> {
        self.source
    }

    /// Extended highest sequence number received: cycles in the high 16 bits.
    pub fn extended_highest(&self) -> u32 {
        (self.cycles << 16) | u32::from(self.max_seq)
    }

    /// Cumulative number of packets lost as a report block carries it: signed (duplicates
    /// can make it negative) and clamped to 24 bits (RFC 3550 §6.4.1).
    pub fn cumulative_lost(&self) -> i32 {
        let lost = self.expected() as i64 - self.received as i64;
        lost.clamp(-(1 << 23), (1 << 23) - 1) as i32
    }

    /// Whether packets arrived since the last [`ReceiveStats::take_fraction_lost`].
    pub fn received_since_report(&self) -> bool {
        self.source.is_some() && self.received != self.received_prior
    }

    /// Fraction of the packets expected since the previous call that were lost, as the
    /// 8-bit fixed-point number of a report block (0 when more arrived than expected);
    /// remembers the counts for the next interval (RFC 3550 A.3).
    pub fn take_fraction_lost(&mut self) -> u8 {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        if expected_interval == 0 || lost_interval == 0 {
            return 0;
        }
        ((lost_interval << 8) / expected_interval).min(255) as u8
    }
}

/// The sender's side of the RTP stream a leg sends: the SSRC, packet and payload-octet
/// counts an RTCP sender report carries (RFC 3550 §6.4.1, counted since that SSRC started),
/// and the renumbering that keeps the stream's sequence numbers gapless when the SBC adds
/// packets of its own (comfort noise, ringback) or leaves relayed ones out on purpose
/// (repeated DTMF end packets, comfort noise a leg did not negotiate). Owned by the worker.
#[derive(Debug, Clone, Default)]
pub struct SentStream {
    ssrc: Option<u32>,
    packets: u32,
    octets: u32,
    /// Added to the sequence number of every relayed packet (modulo 2^16): packets the SBC
    /// generated into the stream minus relayed ones it left out. Kept in 32 bits so a
    /// receiver's extended sequence number can be taken back to the sender's numbering.
    seq_offset: u32,
    last_sequence: u16,
    last_timestamp: u32,
    last_sent_micros: u64,
    clock_rate: u32,
}

/// RTP header fields of a packet the SBC generates into a leg's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratedHeader {
    pub ssrc: u32,
    pub sequence: u16,
    pub timestamp: u32,
}

impl SentStream {
    /// Counts start again for `ssrc` unless it is the stream already being sent.
    fn adopt(&mut self, ssrc: u32) {
        if self.ssrc != Some(ssrc) {
            *self = Self {
                ssrc: Some(ssrc),
                ..Self::default()
            };
        }
    }

    /// A relayed RTP packet (plain, `packet` exactly its bytes) about to leave: renumbered
    /// into the outbound sequence and counted. Packets too short for their header change
    /// nothing.
    pub fn on_relayed(&mut self, packet: &mut [u8], clock_rate: u32, now_micros: u64) {
        let payload = crate::media::rtp::payload_range(packet).map(|(start, end)| end - start);
        let Some((header, _)) =
            packet.split_first_chunk_mut::<{ crate::media::rtp::RTP_HEADER_LEN }>()
        else {
            return;
        };
        let [_, _, s0, s1, t0, t1, t2, t3, c0, c1, c2, c3] = header;
        self.adopt(u32::from_be_bytes([*c0, *c1, *c2, *c3]));
        let sequence = u16::from_be_bytes([*s0, *s1]).wrapping_add(self.seq_offset as u16);
        if self.seq_offset as u16 != 0 {
            [*s0, *s1] = sequence.to_be_bytes();
        }
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload.unwrap_or_default() as u32);
        self.last_sequence = sequence;
        self.last_timestamp = u32::from_be_bytes([*t0, *t1, *t2, *t3]);
        self.last_sent_micros = now_micros;
        self.clock_rate = clock_rate;
    }

    /// A relayed packet of stream `ssrc` the SBC leaves out on purpose: the next ones close
    /// the gap, so the receiver counts no loss the sender did not cause. A packet of another
    /// stream than the one being sent changes nothing (that stream starts afresh when it is
    /// relayed).
    pub fn on_left_out(&mut self, ssrc: u32) {
        if self.ssrc.is_none() {
            self.adopt(ssrc);
        }
        if self.ssrc == Some(ssrc) {
            self.seq_offset = self.seq_offset.wrapping_sub(1);
        }
    }

    /// The header of a packet the SBC adds to the stream now: the next sequence number and
    /// the timestamp `samples` on from the last packet sent, or further when the stream has
    /// been quiet longer than that (the timestamp runs on through silence, RFC 3550 §5.1).
    /// `fallback_ssrc` names the stream when nothing was relayed on this leg yet.
    pub fn next_generated(
        &mut self,
        fallback_ssrc: u32,
        samples: u32,
        clock_rate: u32,
        now_micros: u64,
    ) -> GeneratedHeader {
        let ssrc = match self.ssrc {
            Some(ssrc) => ssrc,
            None => {
                self.ssrc = Some(fallback_ssrc);
                // A new stream's numbers start at random (RFC 3550 §5.1).
                self.last_sequence = fallback_ssrc as u16;
                self.last_timestamp = fallback_ssrc.rotate_left(16);
                self.last_sent_micros = now_micros;
                self.clock_rate = clock_rate;
                fallback_ssrc
            }
        };
        let quiet = now_micros.saturating_sub(self.last_sent_micros);
        let elapsed = (quiet as u128 * u128::from(clock_rate) / 1_000_000) as u32;
        // Whole frames only, so a frame boundary stays a frame boundary.
        let step = if elapsed > 2 * samples && samples > 0 {
            elapsed - elapsed % samples
        } else {
            samples
        };
        self.last_sequence = self.last_sequence.wrapping_add(1);
        self.last_timestamp = self.last_timestamp.wrapping_add(step);
        self.seq_offset = self.seq_offset.wrapping_add(1);
        GeneratedHeader {
            ssrc,
            sequence: self.last_sequence,
            timestamp: self.last_timestamp,
        }
    }

    /// The packet of [`SentStream::next_generated`] left with `payload_len` octets of payload.
    pub fn on_generated(&mut self, payload_len: usize, clock_rate: u32, now_micros: u64) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
        self.last_sent_micros = now_micros;
        self.clock_rate = clock_rate;
    }

    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// Packets and payload octets sent of the current stream (the SR's counts).
    pub fn counts(&self) -> (u32, u32) {
        (self.packets, self.octets)
    }

    /// What relayed sequence numbers are shifted by (see the field).
    pub fn seq_offset(&self) -> u32 {
        self.seq_offset
    }

    /// When the last packet left, on the worker's clock; `None` before any.
    pub fn last_sent_micros(&self) -> Option<u64> {
        self.ssrc.map(|_| self.last_sent_micros)
    }

    /// The stream's RTP timestamp at `now_micros`: the last one sent, run on at the clock
    /// rate since (the SR's RTP timestamp, RFC 3550 §6.4.1).
    pub fn timestamp_at(&self, now_micros: u64) -> u32 {
        let since = now_micros.saturating_sub(self.last_sent_micros);
        let units = (since as u128 * u128::from(self.clock_rate) / 1_000_000) as u32;
        self.last_timestamp.wrapping_add(units)
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

    /// Row 46: the fraction lost of a report block covers the interval since the previous
    /// report only (RFC 3550 A.3); cumulative loss and the extended sequence go on.
    #[test]
    fn row46_fraction_lost_is_per_interval_and_cumulative_loss_is_signed() {
        let mut s = ReceiveStats::default();
        assert!(!s.received_since_report());
        for seq in [65_530u16, 65_531, 65_533, 65_534] {
            s.on_rtp(9, seq, 0, 8000, 0);
        }
        assert!(s.received_since_report());
        // 5 expected, 4 received: 1/5 lost = 51/256.
        assert_eq!(s.take_fraction_lost(), 51);
        assert!(!s.received_since_report());
        for seq in [65_535u16, 0, 1, 2] {
            s.on_rtp(9, seq, 0, 8000, 0);
        }
        assert_eq!(s.take_fraction_lost(), 0);
        assert_eq!(s.extended_highest(), (1 << 16) | 2);
        assert_eq!(s.cumulative_lost(), 1);
        // Duplicates: more received than expected.
        for _ in 0..3 {
            s.on_rtp(9, 2, 0, 8000, 0);
        }
        assert_eq!(s.take_fraction_lost(), 0);
        assert_eq!(s.cumulative_lost(), -2);
        assert_eq!(s.source(), Some(9));
    }

    fn packet(seq: u16, ts: u32, ssrc: u32, payload: usize) -> Vec<u8> {
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.resize(12 + payload, 0xff);
        p
    }

    fn seq_of(p: &[u8]) -> u16 {
        u16::from_be_bytes([p[2], p[3]])
    }

    /// Rows 38, 46, 49: packets the SBC adds continue the relayed stream (same SSRC, next
    /// numbers, timestamp on by a frame or by the silence), packets it leaves out close
    /// their gap, and the SR counts are what left.
    #[test]
    fn row46_sent_stream_renumbers_around_generated_and_left_out_packets() {
        let mut sent = SentStream::default();
        let mut p = packet(1000, 8000, 0xabc, 160);
        sent.on_relayed(&mut p, 8000, 0);
        assert_eq!(seq_of(&p), 1000);
        // Two frames of our own 20 ms apart...
        let first = sent.next_generated(0x999, 160, 8000, 20_000);
        sent.on_generated(160, 8000, 20_000);
        let second = sent.next_generated(0x999, 160, 8000, 40_000);
        sent.on_generated(160, 8000, 40_000);
        assert_eq!(
            (first, second),
            (
                GeneratedHeader {
                    ssrc: 0xabc,
                    sequence: 1001,
                    timestamp: 8160
                },
                GeneratedHeader {
                    ssrc: 0xabc,
                    sequence: 1002,
                    timestamp: 8320
                }
            )
        );
        // ...the sender's next packet follows them; one left out closes its gap.
        let mut p = packet(1001, 8480, 0xabc, 160);
        sent.on_relayed(&mut p, 8000, 60_000);
        assert_eq!(seq_of(&p), 1003);
        sent.on_left_out(0xabc);
        let mut p = packet(1003, 8800, 0xabc, 4);
        sent.on_relayed(&mut p, 8000, 100_000);
        assert_eq!(seq_of(&p), 1004);
        assert_eq!(sent.seq_offset(), 1);
        assert_eq!(sent.counts(), (5, 160 * 4 + 4));
        // Another stream's left-out packet does not touch this one.
        sent.on_left_out(0xdef);
        assert_eq!(sent.ssrc(), Some(0xabc));
        assert_eq!(sent.seq_offset(), 1);
        // The SR's timestamp runs on from the last packet at the clock rate.
        assert_eq!(sent.timestamp_at(150_000), 8800 + 400);
        // After 1 s of silence a generated frame's timestamp jumps by the silence.
        let later = sent.next_generated(0x999, 160, 8000, 1_100_000);
        assert_eq!(later.timestamp, 8800 + 8000);
        // A new SSRC is a new stream: counts and numbering start over.
        let mut p = packet(7, 70, 0x123, 160);
        sent.on_relayed(&mut p, 8000, 1_200_000);
        assert_eq!(seq_of(&p), 7);
        assert_eq!(sent.counts(), (1, 160));
        assert_eq!(sent.seq_offset(), 0);
    }

    /// Nothing relayed yet: generated frames start a stream of their own under the fallback
    /// SSRC.
    #[test]
    fn row38_generated_frames_without_a_relayed_stream_use_the_fallback_ssrc() {
        let mut sent = SentStream::default();
        assert_eq!(sent.last_sent_micros(), None);
        let a = sent.next_generated(0x5bc0_0001, 160, 8000, 0);
        sent.on_generated(160, 8000, 0);
        let b = sent.next_generated(0x5bc0_0001, 160, 8000, 20_000);
        assert_eq!(a.ssrc, 0x5bc0_0001);
        assert_eq!(b.sequence, a.sequence.wrapping_add(1));
        assert_eq!(b.timestamp, a.timestamp.wrapping_add(160));
        let mut short = [0x80u8, 0, 0];
        sent.on_relayed(&mut short, 8000, 0);
        assert_eq!(sent.ssrc(), Some(0x5bc0_0001), "a runt changes nothing");
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
