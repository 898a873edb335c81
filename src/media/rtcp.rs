//! RTCP of the SBC's own (row 46): Microsoft's call quality dashboard computes jitter, loss
//! and latency between its media processor and the SBC from RTCP (brief §3.2), so a leg
//! whose far side sends none (a carrier that never sends RTCP) still gets reports: a sender
//! report for the stream the SBC sends it, with a report block for the stream it sends the
//! SBC, computed from the relay's own counters (`media::stats`) every ~5 s (RFC 3550 §6.2),
//! then an SDES chunk with a CNAME (every compound packet carries one, §6.1). The worker
//! encrypts them as SRTCP on the Teams leg.
//!
//! Reports the far side does send are relayed; [`rewrite_relayed`] keeps them true to what
//! the SBC actually sent, since the relay changes streams on the way (in-band DTMF turned
//! into events and back, comfort noise and ringback added, repeats left out): a sender
//! report's packet and octet counts become the relay's own for that stream, and a report
//! block about a stream the SBC renumbered gets its extended sequence number back in the
//! numbering its sender knows.
//!
//! Everything here works in place on caller buffers: nothing allocates.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::media::stats::{ReceiveStats, SentStream};

/// RTCP packet types (RFC 3550 §12.1).
pub const SENDER_REPORT: u8 = 200;
pub const RECEIVER_REPORT: u8 = 201;
pub const SOURCE_DESCRIPTION: u8 = 202;
/// SDES item type of the canonical name.
const CNAME: u8 = 1;

const HEADER_LEN: usize = 8;
const SENDER_INFO_LEN: usize = 20;
const BLOCK_LEN: usize = 24;

/// RFC 3550 §6.2: the minimum reporting interval, which is what a two-party audio session's
/// share of 5 % of the session bandwidth comes to.
pub const MIN_INTERVAL_MILLIS: u64 = 5_000;
/// §6.2: the first report goes after half the minimum.
const INITIAL_INTERVAL_MILLIS: u64 = MIN_INTERVAL_MILLIS / 2;
/// Seconds from the NTP epoch (1900) to the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// The next report's delay: the interval times a random factor in [0.5, 1.5), divided by
/// e - 3/2 to compensate for the timer reconsideration algorithm converging below the
/// average (RFC 3550 §6.3.1, A.7). `random` is any uniformly random number.
pub fn report_delay_millis(random: u32, first: bool) -> u64 {
    let base = if first {
        INITIAL_INTERVAL_MILLIS
    } else {
        MIN_INTERVAL_MILLIS
    };
    let factor_per_mille = 500 + u64::from(random % 1000);
    // 1 / (e - 3/2) = 0.820829...
    base * factor_per_mille * 820_829 / 1_000_000_000
}

/// NTP timestamp of `time`: seconds since 1900 in the high 32 bits, the fraction in the low.
pub fn ntp_timestamp(time: SystemTime) -> u64 {
    let since_unix = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_unix.as_secs().wrapping_add(NTP_UNIX_OFFSET);
    let fraction = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

/// The middle 32 bits of an NTP timestamp: a report block's LSR field (RFC 3550 §6.4.1).
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Microseconds as the 1/65536-second units of a report block's DLSR field.
pub fn dlsr_units(micros: u64) -> u32 {
    u32::try_from((u128::from(micros) << 16) / 1_000_000).unwrap_or(u32::MAX)
}

/// The sender information of a sender report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    pub ntp: u64,
    pub rtp_timestamp: u32,
    pub packets: u32,
    pub octets: u32,
}

/// One report block: what the reporter received of stream `ssrc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    /// Signed, 24 bits.
    pub cumulative_lost: i32,
    pub highest_sequence: u32,
    pub jitter: u32,
    pub last_sr: u32,
    pub delay_since_last_sr: u32,
}

/// A compound report to write: SR when `sender` is set, else RR; at most one block (the
/// relay receives one stream per leg); then SDES with `cname`.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    pub ssrc: u32,
    pub sender: Option<SenderInfo>,
    pub block: Option<ReportBlock>,
    pub cname: &'a [u8],
}

/// Writes `report` at the start of `buf`; its length, or `None` when `buf` is too short or
/// the CNAME longer than an SDES item holds.
pub fn write_report(report: &Report<'_>, buf: &mut [u8]) -> Option<usize> {
    let cname_len = u8::try_from(report.cname.len()).ok()?;
    let blocks = usize::from(report.block.is_some());
    let info = if report.sender.is_some() {
        SENDER_INFO_LEN
    } else {
        0
    };
    let report_len = HEADER_LEN + info + blocks * BLOCK_LEN;
    // SSRC, CNAME item (type, length, text), at least one END octet, padded to 32 bits.
    let chunk_len = (4 + 2 + usize::from(cname_len) + 1).next_multiple_of(4);
    let sdes_len = 4 + chunk_len;
    let total = report_len + sdes_len;
    let out = buf.get_mut(..total)?;
    out.fill(0);

    let (first, rest) = out.split_at_mut(report_len);
    let packet_type = if report.sender.is_some() {
        SENDER_REPORT
    } else {
        RECEIVER_REPORT
    };
    write_header(first, blocks as u8, packet_type)?;
    put_u32(first, 4, report.ssrc)?;
    let mut at = HEADER_LEN;
    if let Some(sender) = report.sender {
        put_u32(first, at, (sender.ntp >> 32) as u32)?;
        put_u32(first, at + 4, sender.ntp as u32)?;
        put_u32(first, at + 8, sender.rtp_timestamp)?;
        put_u32(first, at + 12, sender.packets)?;
        put_u32(first, at + 16, sender.octets)?;
        at += SENDER_INFO_LEN;
    }
    if let Some(block) = report.block {
        put_u32(first, at, block.ssrc)?;
        let lost = (block.cumulative_lost.clamp(-(1 << 23), (1 << 23) - 1) as u32) & 0x00ff_ffff;
        put_u32(first, at + 4, (u32::from(block.fraction_lost) << 24) | lost)?;
        put_u32(first, at + 8, block.highest_sequence)?;
        put_u32(first, at + 12, block.jitter)?;
        put_u32(first, at + 16, block.last_sr)?;
        put_u32(first, at + 20, block.delay_since_last_sr)?;
    }

    write_header(rest, 1, SOURCE_DESCRIPTION)?;
    put_u32(rest, 4, report.ssrc)?;
    *rest.get_mut(8)? = CNAME;
    *rest.get_mut(9)? = cname_len;
    rest.get_mut(10..10 + report.cname.len())?
        .copy_from_slice(report.cname);
    // The zero fill above is the END item and the padding.
    Some(total)
}

/// Version 2, no padding, `count`, `packet_type` and the length word of a packet that is
/// exactly `packet`.
fn write_header(packet: &mut [u8], count: u8, packet_type: u8) -> Option<()> {
    let words = u16::try_from(packet.len() / 4 - 1).ok()?;
    let [l0, l1] = words.to_be_bytes();
    packet
        .get_mut(..4)?
        .copy_from_slice(&[0x80 | (count & 0x1f), packet_type, l0, l1]);
    Some(())
}

fn put_u32(buf: &mut [u8], at: usize, value: u32) -> Option<()> {
    buf.get_mut(at..at + 4)?
        .copy_from_slice(&value.to_be_bytes());
    Some(())
}

fn get_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// One packet of a compound: where it starts and ends, its count field and type.
#[derive(Debug, Clone, Copy)]
struct Part {
    start: usize,
    end: usize,
    count: usize,
    packet_type: u8,
}

/// The packets of a compound in order; stops at the first malformed header (not version 2,
/// a length running past the end). Each step moves on by at least 4 bytes.
fn parts(compound: &[u8]) -> impl Iterator<Item = Part> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let &[first, packet_type, l0, l1] = compound.get(at..at + 4)? else {
            return None;
        };
        if first >> 6 != 2 {
            return None;
        }
        let len = (usize::from(u16::from_be_bytes([l0, l1])) + 1) * 4;
        let end = at.checked_add(len).filter(|&end| end <= compound.len())?;
        let part = Part {
            start: at,
            end,
            count: usize::from(first & 0x1f),
            packet_type,
        };
        at = end;
        Some(part)
    })
}

/// The first sender report of a compound: its SSRC and NTP timestamp (for the LSR and DLSR
/// of our reports back to that sender).
pub fn sender_report_of(compound: &[u8]) -> Option<(u32, u64)> {
    let part = parts(compound).find(|p| p.packet_type == SENDER_REPORT)?;
    let packet = compound.get(part.start..part.end)?;
    let ssrc = get_u32(packet, 4)?;
    let ntp = (u64::from(get_u32(packet, 8)?) << 32) | u64::from(get_u32(packet, 12)?);
    Some((ssrc, ntp))
}

/// The relay's view of the streams a relayed compound reports on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayView {
    /// The stream the SBC sends on the leg the compound goes to, with the packets and
    /// payload octets it sent: a sender report for that SSRC carries these counts.
    pub forwarded: Option<(u32, u32, u32)>,
    /// The stream the SBC sends the reporter and the sequence offset it applies to it:
    /// blocks about it get the extended sequence number the original sender knows.
    pub renumbered: Option<(u32, u32)>,
    /// The LSR of the last sender report the SBC made up towards the reporter: a block
    /// quoting it answers a report the compound's receiver never sent, so it gets LSR and
    /// DLSR 0 ("no SR received").
    pub own_lsr: Option<u32>,
}

/// Rewrites a relayed (plain) compound in place as `view` says; packets of other types and
/// anything past a malformed header stay as they are.
pub fn rewrite_relayed(compound: &mut [u8], view: &RelayView) {
    let mut at = 0;
    loop {
        let next = parts(compound.get(at..).unwrap_or_default()).next();
        let Some(part) = next else {
            return;
        };
        let (start, end) = (at + part.start, at + part.end);
        at = end;
        let Some(packet) = compound.get_mut(start..end) else {
            return;
        };
        let blocks_at = match part.packet_type {
            SENDER_REPORT => {
                if let Some((ssrc, packets, octets)) = view.forwarded {
                    if get_u32(packet, 4) == Some(ssrc) {
                        let _ = put_u32(packet, 20, packets);
                        let _ = put_u32(packet, 24, octets);
                    }
                }
                HEADER_LEN + SENDER_INFO_LEN
            }
            RECEIVER_REPORT => HEADER_LEN,
            _ => continue,
        };
        for n in 0..part.count {
            let block = blocks_at + n * BLOCK_LEN;
            let Some(ssrc) = get_u32(packet, block) else {
                break;
            };
            if let Some((renumbered, offset)) = view.renumbered {
                if ssrc == renumbered && offset != 0 {
                    if let Some(highest) = get_u32(packet, block + 8) {
                        let _ = put_u32(packet, block + 8, highest.wrapping_sub(offset));
                    }
                }
            }
            if view.own_lsr.is_some() && get_u32(packet, block + 16) == view.own_lsr {
                let _ = put_u32(packet, block + 16, 0);
                let _ = put_u32(packet, block + 20, 0);
            }
        }
    }
}

/// RTCP the far side sent counts as flowing for this long after it was last relayed: three
/// minimum intervals, so one late or lost report does not start ours.
pub const RELAYED_FRESH_MILLIS: u64 = 3 * MIN_INTERVAL_MILLIS;
/// A leg that sent RTP within this long reports as a sender (RFC 3550 §6.4: sent data since
/// the report before last).
const SENDER_WINDOW_MICROS: u64 = 2 * MIN_INTERVAL_MILLIS * 1000;
/// Our CNAME on a leg: 16 random hex digits (RFC 7022: random per session is fine).
pub const CNAME_LEN: usize = 16;

/// The reporting state of one leg (owned by the worker).
#[derive(Debug, Clone)]
pub struct LegReports {
    /// The SBC's SSRC on this leg when it reports as a receiver only (it sends nothing of
    /// its own there).
    pub own_ssrc: u32,
    cname: [u8; CNAME_LEN],
    next_due_millis: Option<u64>,
    /// When the far side's RTCP last left on this leg.
    relayed_millis: Option<u64>,
    /// The peer's last sender report: its SSRC, LSR form of its NTP time, arrival.
    peer_sr: Option<(u32, u32, u64)>,
    /// LSR form of the last sender report the SBC made up on this leg.
    pub own_lsr: Option<u32>,
    rng: u64,
}

impl LegReports {
    pub fn new(seed: u64) -> Self {
        let mut rng = seed | 1;
        let own_ssrc = crate::media::playout::next_random(&mut rng) as u32;
        let mut cname = [0u8; CNAME_LEN];
        let digits = crate::media::playout::next_random(&mut rng);
        for (i, c) in cname.iter_mut().enumerate() {
            *c = b"0123456789abcdef"[((digits >> (4 * i)) & 0xf) as usize];
        }
        Self {
            own_ssrc,
            cname,
            next_due_millis: None,
            relayed_millis: None,
            peer_sr: None,
            own_lsr: None,
            rng,
        }
    }

    /// Whether a report is due at `now_millis`; the first call only starts the schedule
    /// (first report after half an interval), each due report schedules the next.
    pub fn due(&mut self, now_millis: u64) -> bool {
        let random = crate::media::playout::next_random(&mut self.rng) as u32;
        match self.next_due_millis {
            None => {
                self.next_due_millis = Some(now_millis + report_delay_millis(random, true));
                false
            }
            Some(due) if now_millis >= due => {
                self.next_due_millis = Some(now_millis + report_delay_millis(random, false));
                true
            }
            Some(_) => false,
        }
    }

    /// The far side's RTCP left on this leg at `now_millis`.
    pub fn on_relayed(&mut self, now_millis: u64) {
        self.relayed_millis = Some(now_millis);
    }

    /// Whether the far side's own reports reach this leg (then ours are not needed).
    pub fn far_side_reports(&self, now_millis: u64) -> bool {
        self.relayed_millis
            .is_some_and(|at| now_millis.saturating_sub(at) < RELAYED_FRESH_MILLIS)
    }

    /// Notes the sender report in a compound the peer of this leg sent (plain), for the
    /// LSR/DLSR of our reports back to it.
    pub fn note_peer_compound(&mut self, compound: &[u8], now_micros: u64) {
        if let Some((ssrc, ntp)) = sender_report_of(compound) {
            self.peer_sr = Some((ssrc, ntp_middle(ntp), now_micros));
        }
    }

    /// Writes our compound report for this leg into `buf`: an SR for `sent` when it carried
    /// RTP lately (else an RR under our own SSRC), a block for the stream `received` counts
    /// when packets came in since the last report, and our CNAME. `ntp` is the wall clock
    /// at `now_micros`. Returns the length.
    pub fn write(
        &mut self,
        sent: &SentStream,
        received: &mut ReceiveStats,
        now_micros: u64,
        ntp: u64,
        buf: &mut [u8],
    ) -> Option<usize> {
        let sending = sent
            .last_sent_micros()
            .is_some_and(|at| now_micros.saturating_sub(at) < SENDER_WINDOW_MICROS);
        let sender = match sent.ssrc() {
            Some(ssrc) if sending => {
                let (packets, octets) = sent.counts();
                Some((
                    ssrc,
                    SenderInfo {
                        ntp,
                        rtp_timestamp: sent.timestamp_at(now_micros),
                        packets,
                        octets,
                    },
                ))
            }
            _ => None,
        };
        let block = match received.source() {
            Some(source) if received.received_since_report() => {
                let (last_sr, delay_since_last_sr) = match self.peer_sr {
                    Some((ssrc, lsr, at)) if ssrc == source => {
                        (lsr, dlsr_units(now_micros.saturating_sub(at)))
                    }
                    _ => (0, 0),
                };
                Some(ReportBlock {
                    ssrc: source,
                    fraction_lost: received.take_fraction_lost(),
                    cumulative_lost: received.cumulative_lost(),
                    highest_sequence: received.extended_highest(),
                    jitter: u32::try_from(received.jitter()).unwrap_or(u32::MAX),
                    last_sr,
                    delay_since_last_sr,
                })
            }
            _ => None,
        };
        let report = Report {
            ssrc: sender.map_or(self.own_ssrc, |(ssrc, _)| ssrc),
            sender: sender.map(|(_, info)| info),
            block,
            cname: &self.cname,
        };
        let len = write_report(&report, buf)?;
        if report.sender.is_some() {
            self.own_lsr = Some(ntp_middle(ntp));
        }
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    //! Formats checked against the webrtc-rs `rtcp` crate, an independent RFC 3550
    //! implementation, as the oracle.

    use super::*;
    use bytes::Bytes;
    use rtcp::packet::Packet;
    use rtcp::receiver_report::ReceiverReport;
    use rtcp::sender_report::SenderReport;
    use rtcp::source_description::{SdesType, SourceDescription};

    fn oracle(bytes: &[u8]) -> Vec<Box<dyn Packet + Send + Sync>> {
        let mut raw = Bytes::copy_from_slice(bytes);
        rtcp::packet::unmarshal(&mut raw).expect("the oracle parses our compound")
    }

    fn block() -> ReportBlock {
        ReportBlock {
            ssrc: 0x7ea3_5000,
            fraction_lost: 64,
            cumulative_lost: 5,
            highest_sequence: 0x0001_0004,
            jitter: 37,
            last_sr: 0x1234_5678,
            delay_since_last_sr: 0x0001_8000,
        }
    }

    fn cname_of(packet: &(dyn Packet + Send + Sync)) -> (u32, Vec<u8>) {
        let sdes = packet
            .as_any()
            .downcast_ref::<SourceDescription>()
            .expect("SDES second");
        assert_eq!(sdes.chunks.len(), 1);
        let chunk = &sdes.chunks[0];
        assert_eq!(chunk.items.len(), 1);
        assert_eq!(chunk.items[0].sdes_type, SdesType::SdesCname);
        (chunk.source, chunk.items[0].text.to_vec())
    }

    #[test]
    fn row46_sender_report_with_a_block_and_cname_as_the_oracle_reads_it() {
        let mut buf = [0u8; 256];
        let report = Report {
            ssrc: 0xca44_1e40,
            sender: Some(SenderInfo {
                ntp: 0xe9e1_2345_8000_0000,
                rtp_timestamp: 160_000,
                packets: 250,
                octets: 40_000,
            }),
            block: Some(block()),
            cname: b"sbc-3f9a2c",
        };
        let len = write_report(&report, &mut buf).unwrap();
        assert_eq!(len % 4, 0);
        let packets = oracle(&buf[..len]);
        assert_eq!(packets.len(), 2);
        let sr = packets[0]
            .as_any()
            .downcast_ref::<SenderReport>()
            .expect("SR first");
        assert_eq!(sr.ssrc, 0xca44_1e40);
        assert_eq!(sr.ntp_time, 0xe9e1_2345_8000_0000);
        assert_eq!(sr.rtp_time, 160_000);
        assert_eq!((sr.packet_count, sr.octet_count), (250, 40_000));
        assert_eq!(sr.reports.len(), 1);
        let b = &sr.reports[0];
        assert_eq!(b.ssrc, 0x7ea3_5000);
        assert_eq!(b.fraction_lost, 64);
        assert_eq!(b.total_lost, 5);
        assert_eq!(b.last_sequence_number, 0x0001_0004);
        assert_eq!(b.jitter, 37);
        assert_eq!((b.last_sender_report, b.delay), (0x1234_5678, 0x0001_8000));
        assert_eq!(
            cname_of(packets[1].as_ref()),
            (0xca44_1e40, b"sbc-3f9a2c".to_vec())
        );
    }

    #[test]
    fn row46_receiver_report_with_and_without_a_block() {
        for with_block in [true, false] {
            let mut buf = [0u8; 256];
            let report = Report {
                ssrc: 0x5bc0_0001,
                sender: None,
                block: with_block.then(block),
                cname: b"0123456789abcdef",
            };
            let len = write_report(&report, &mut buf).unwrap();
            let packets = oracle(&buf[..len]);
            let rr = packets[0]
                .as_any()
                .downcast_ref::<ReceiverReport>()
                .expect("RR first");
            assert_eq!(rr.ssrc, 0x5bc0_0001);
            assert_eq!(rr.reports.len(), usize::from(with_block));
            // CNAME lengths that fill the chunk exactly still get their END octet.
            assert_eq!(cname_of(packets[1].as_ref()).1, b"0123456789abcdef");
        }
    }

    #[test]
    fn row46_negative_and_huge_cumulative_loss_fit_24_bits() {
        let mut buf = [0u8; 256];
        for (lost, expected) in [(-3, -3), (1 << 26, (1 << 23) - 1)] {
            let report = Report {
                ssrc: 1,
                sender: None,
                block: Some(ReportBlock {
                    cumulative_lost: lost,
                    ..block()
                }),
                cname: b"x",
            };
            let len = write_report(&report, &mut buf).unwrap();
            let word = get_u32(&buf[..len], 12).unwrap();
            let field = ((word << 8) as i32) >> 8;
            assert_eq!(field, expected);
        }
    }

    #[test]
    fn a_short_buffer_or_long_cname_writes_nothing() {
        let report = Report {
            ssrc: 1,
            sender: None,
            block: None,
            cname: b"abc",
        };
        assert_eq!(write_report(&report, &mut [0u8; 10]), None);
        let long = [b'a'; 256];
        let report = Report {
            cname: &long,
            ..report
        };
        assert_eq!(write_report(&report, &mut [0u8; 512]), None);
    }

    #[test]
    fn ntp_and_dlsr_units() {
        let time = UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 500_000_000);
        let ntp = ntp_timestamp(time);
        assert_eq!(ntp >> 32, 1_700_000_000 + NTP_UNIX_OFFSET);
        assert_eq!(ntp as u32, 1 << 31);
        assert_eq!(ntp_middle(ntp), ((ntp >> 16) & 0xffff_ffff) as u32);
        assert_eq!(dlsr_units(1_500_000), 0x0001_8000);
    }

    #[test]
    fn row46_intervals_are_randomised_around_rfc3550_minimum() {
        let delays: Vec<u64> = (0..1000).map(|r| report_delay_millis(r, false)).collect();
        let (min, max) = (delays[0], delays[999]);
        assert_eq!(min, 2052, "0.5 x 5 s / (e - 3/2)");
        assert_eq!(max, 6152, "1.499 x 5 s / (e - 3/2)");
        let mean = delays.iter().sum::<u64>() / 1000;
        assert!((4090..=4120).contains(&mean), "{mean}");
        assert_eq!(
            report_delay_millis(0, true),
            1026,
            "the first one after half"
        );
    }

    /// A relayed SR and RR from a peer, rewritten to the relay's own view, as the oracle
    /// reads them.
    #[test]
    fn row46_relayed_reports_get_the_relays_counts_and_the_senders_numbering() {
        let mut buf = [0u8; 512];
        let sr = Report {
            ssrc: 0x0a0a_0a0a,
            sender: Some(SenderInfo {
                ntp: 1,
                rtp_timestamp: 2,
                packets: 100,
                octets: 16_000,
            }),
            block: Some(ReportBlock {
                ssrc: 0x0b0b_0b0b,
                highest_sequence: 1_000,
                last_sr: 0x4444_0000,
                ..block()
            }),
            cname: b"peer",
        };
        let first = write_report(&sr, &mut buf).unwrap();
        let rr = Report {
            ssrc: 0x0a0a_0a0a,
            sender: None,
            block: Some(ReportBlock {
                ssrc: 0x0c0c_0c0c,
                last_sr: 0x5555_0000,
                ..block()
            }),
            cname: b"peer",
        };
        let len = first + write_report(&rr, &mut buf[first..]).unwrap();
        assert_eq!(sender_report_of(&buf[..len]), Some((0x0a0a_0a0a, 1)));

        let view = RelayView {
            forwarded: Some((0x0a0a_0a0a, 97, 15_520)),
            renumbered: Some((0x0b0b_0b0b, 3)),
            own_lsr: Some(0x4444_0000),
        };
        rewrite_relayed(&mut buf[..len], &view);
        let packets = oracle(&buf[..len]);
        let sr = packets[0].as_any().downcast_ref::<SenderReport>().unwrap();
        assert_eq!((sr.packet_count, sr.octet_count), (97, 15_520));
        assert_eq!(sr.reports[0].last_sequence_number, 997);
        assert_eq!(
            (sr.reports[0].last_sender_report, sr.reports[0].delay),
            (0, 0),
            "our own SR's LSR is not the receiver's"
        );
        let rr = packets[2]
            .as_any()
            .downcast_ref::<ReceiverReport>()
            .unwrap();
        assert_eq!(
            rr.reports[0].last_sequence_number, 0x0001_0004,
            "other SSRC"
        );
        assert_eq!(rr.reports[0].last_sender_report, 0x5555_0000);

        // Another stream's SR keeps its counts.
        let mut again = [0u8; 256];
        let len = write_report(&sr_for(0x0d0d_0d0d), &mut again).unwrap();
        rewrite_relayed(&mut again[..len], &view);
        let packets = oracle(&again[..len]);
        let sr = packets[0].as_any().downcast_ref::<SenderReport>().unwrap();
        assert_eq!((sr.packet_count, sr.octet_count), (100, 16_000));
    }

    fn sr_for(ssrc: u32) -> Report<'static> {
        Report {
            ssrc,
            sender: Some(SenderInfo {
                ntp: 1,
                rtp_timestamp: 2,
                packets: 100,
                octets: 16_000,
            }),
            block: None,
            cname: b"peer",
        }
    }

    fn relayed(sent: &mut SentStream, seq: u16, at_micros: u64) {
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&0xca44_1e40u32.to_be_bytes());
        p.resize(12 + 160, 0xff);
        sent.on_relayed(&mut p, 8000, at_micros);
    }

    /// Row 46: a leg's report from the relay's own counters, as the oracle reads it: an SR
    /// for the stream sent there (SSRC, counts, RTP time run on to now), a block for the
    /// stream received (loss since the last report, cumulative loss, extended sequence,
    /// jitter, LSR/DLSR answering the peer's last SR), our CNAME; an RR under our own SSRC
    /// once nothing was sent lately, without a block when nothing came in.
    #[test]
    fn row46_leg_report_from_the_relays_counters() {
        let mut reports = LegReports::new(42);
        let mut sent = SentStream::default();
        let mut received = ReceiveStats::default();
        for seq in 0..50u16 {
            relayed(&mut sent, seq, u64::from(seq) * 20_000);
        }
        for seq in (100..110u16).filter(|s| *s != 104) {
            received.on_rtp(0x7ea3_5000, seq, u32::from(seq) * 160, 8000, 0);
        }
        // The peer's SR arrived 1.5 s before our report.
        let mut peer = [0u8; 128];
        let len = write_report(&sr_for(0x7ea3_5000), &mut peer).unwrap();
        peer[8..16].copy_from_slice(&0x0000_1111_2222_0000u64.to_be_bytes());
        reports.note_peer_compound(&peer[..len], 1_000_000);

        let now = 2_500_000;
        let ntp = 0xe9e1_0000_4000_0000;
        let mut buf = [0u8; 256];
        let len = reports
            .write(&sent, &mut received, now, ntp, &mut buf)
            .unwrap();
        let packets = oracle(&buf[..len]);
        let sr = packets[0]
            .as_any()
            .downcast_ref::<SenderReport>()
            .expect("an SR: RTP went out lately");
        assert_eq!(sr.ssrc, 0xca44_1e40, "the SSRC of the stream we send");
        assert_eq!((sr.packet_count, sr.octet_count), (50, 50 * 160));
        assert_eq!(sr.ntp_time, ntp);
        // Last packet (seq 49, ts 7840) at 0.98 s, report at 2.5 s: 1.52 s later.
        assert_eq!(sr.rtp_time, 49 * 160 + 12_160);
        let block = &sr.reports[0];
        assert_eq!(block.ssrc, 0x7ea3_5000);
        assert_eq!(block.fraction_lost, 25, "1 of 10 since the last report");
        assert_eq!(block.total_lost, 1);
        assert_eq!(block.last_sequence_number, 109);
        assert_eq!(block.last_sender_report, 0x1111_2222);
        assert_eq!(block.delay, 0x0001_8000, "1.5 s");
        assert_eq!(cname_of(packets[1].as_ref()).0, 0xca44_1e40);
        assert_eq!(reports.own_lsr, Some(ntp_middle(ntp)));

        // 20 s later nothing was sent or received: an RR under our own SSRC, no block.
        let len = reports
            .write(&sent, &mut received, 22_500_000, ntp, &mut buf)
            .unwrap();
        let packets = oracle(&buf[..len]);
        let rr = packets[0]
            .as_any()
            .downcast_ref::<ReceiverReport>()
            .expect("an RR");
        assert_eq!(rr.ssrc, reports.own_ssrc);
        assert!(rr.reports.is_empty());
        let (ssrc, cname) = cname_of(packets[1].as_ref());
        assert_eq!(ssrc, reports.own_ssrc);
        assert_eq!(cname.len(), CNAME_LEN);
        assert!(cname.iter().all(u8::is_ascii_hexdigit));
    }

    /// Row 46: reports start half an interval in and come every ~5 s; while the far side's
    /// own reports are relayed to the leg, ours are not needed.
    #[test]
    fn row46_report_schedule_and_far_side_reports() {
        let mut reports = LegReports::new(7);
        assert!(!reports.due(0), "the first call starts the schedule");
        let mut dues = Vec::new();
        for now in (0..60_000).step_by(250) {
            if reports.due(now) {
                dues.push(now);
            }
        }
        assert!((1_000..=3_250).contains(&dues[0]), "{dues:?}");
        assert!(dues
            .windows(2)
            .all(|w| (2_000..=6_500).contains(&(w[1] - w[0]))));
        assert!((10..=24).contains(&dues.len()), "{dues:?}");
        assert!(!reports.far_side_reports(0));
        reports.on_relayed(10_000);
        assert!(reports.far_side_reports(10_000 + RELAYED_FRESH_MILLIS - 1));
        assert!(!reports.far_side_reports(10_000 + RELAYED_FRESH_MILLIS));
    }

    #[test]
    fn malformed_compounds_are_left_alone_and_never_read_past_the_end() {
        let mut buf = [0u8; 64];
        let len = write_report(&sr_for(9), &mut buf).unwrap();
        let view = RelayView {
            forwarded: Some((9, 1, 1)),
            ..RelayView::default()
        };
        // A length word running past the end: nothing changes.
        let mut bad = buf;
        bad[3] = 200;
        rewrite_relayed(&mut bad[..len], &view);
        assert_eq!(bad[..len][20..28], buf[20..28]);
        // A report count larger than the packet holds: the blocks that are not there are
        // not read.
        let mut counted = buf;
        counted[0] = 0x80 | 31;
        rewrite_relayed(&mut counted[..len], &view);
        assert_eq!(get_u32(&counted, 20), Some(1));
        for cut in 0..len {
            let mut truncated = buf;
            rewrite_relayed(&mut truncated[..cut], &view);
            let _ = sender_report_of(&buf[..cut]);
        }
    }
}
