//! Just enough of RTP/RTCP headers to demultiplex, account and rewrite packets in place.

/// Minimum RTP header (no CSRC, no extension).
pub const RTP_HEADER_LEN: usize = 12;
/// Minimum RTCP header plus sender SSRC.
pub const RTCP_HEADER_LEN: usize = 8;

/// What a datagram on a media port is (RFC 7983 first-byte demultiplexing, RFC 5761 for
/// RTP versus RTCP on one port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    Stun,
    Rtp,
    Rtcp,
    Unknown,
}

pub fn classify(packet: &[u8]) -> PacketKind {
    let Some(&first) = packet.first() else {
        return PacketKind::Unknown;
    };
    match first {
        0..=3 => PacketKind::Stun,
        128..=191 => {
            let Some(&second) = packet.get(1) else {
                return PacketKind::Unknown;
            };
            // RFC 5761 section 4: RTCP packet types 192-223 overlap RTP payload types 64-95
            // with the marker bit set, which is why those RTP payload types are never used.
            if (192..=223).contains(&second) {
                if packet.len() >= RTCP_HEADER_LEN {
                    PacketKind::Rtcp
                } else {
                    PacketKind::Unknown
                }
            } else if packet.len() >= RTP_HEADER_LEN {
                PacketKind::Rtp
            } else {
                PacketKind::Unknown
            }
        }
        _ => PacketKind::Unknown,
    }
}

/// Fields of an RTP header read without copying; callers have checked the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

pub fn read_rtp_header(packet: &[u8]) -> Option<RtpHeader> {
    let (&[first, second, s0, s1, t0, t1, t2, t3, c0, c1, c2, c3], _) =
        packet.split_first_chunk::<RTP_HEADER_LEN>()?;
    if first >> 6 != 2 {
        return None;
    }
    Some(RtpHeader {
        payload_type: second & 0x7f,
        sequence: u16::from_be_bytes([s0, s1]),
        timestamp: u32::from_be_bytes([t0, t1, t2, t3]),
        ssrc: u32::from_be_bytes([c0, c1, c2, c3]),
    })
}

/// Where the payload of an RTP packet starts (after CSRCs and a header extension) and ends
/// (before any padding); `None` for a packet too short for what its header announces.
pub fn payload_range(packet: &[u8]) -> Option<(usize, usize)> {
    let (&[first, ..], _) = packet.split_first_chunk::<RTP_HEADER_LEN>()?;
    let csrc_count = usize::from(first & 0x0f);
    let mut start = RTP_HEADER_LEN + 4 * csrc_count;
    if first & 0x10 != 0 {
        let &[high, low] = packet.get(start + 2..start + 4)? else {
            return None;
        };
        start += 4 + 4 * usize::from(u16::from_be_bytes([high, low]));
    }
    let padding = if first & 0x20 != 0 {
        usize::from(*packet.last()?)
    } else {
        0
    };
    let end = packet.len().checked_sub(padding)?;
    (start <= end).then_some((start, end))
}

/// Replaces the payload type, keeping the marker bit.
pub fn write_payload_type(packet: &mut [u8], payload_type: u8) {
    if let Some(byte) = packet.get_mut(1) {
        *byte = (*byte & 0x80) | (payload_type & 0x7f);
    }
}

/// Per-direction payload type rewrite plus the clock rate of each incoming payload type
/// (needed for jitter). Fixed arrays: a lookup per packet, no allocation.
#[derive(Debug, Clone)]
pub struct PayloadMap {
    rewrite: [u8; 128],
    clock_rate: [u32; 128],
}

/// Clock rate assumed for a payload type nobody told us about (G.711, telephone-event/8000).
pub const DEFAULT_CLOCK_RATE: u32 = 8000;

impl Default for PayloadMap {
    fn default() -> Self {
        let mut rewrite = [0u8; 128];
        for (pt, slot) in rewrite.iter_mut().enumerate() {
            *slot = pt as u8;
        }
        Self {
            rewrite,
            clock_rate: [DEFAULT_CLOCK_RATE; 128],
        }
    }
}

/// One payload type mapping across the legs: packets arriving with `from_pt` leave with
/// `to_pt`; `clock_rate` is the RTP clock of that payload (jitter is computed with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadMapping {
    pub from_pt: u8,
    pub to_pt: u8,
    pub clock_rate: u32,
}

impl PayloadMapping {
    pub fn new(from_pt: u8, to_pt: u8) -> Self {
        Self {
            from_pt,
            to_pt,
            clock_rate: DEFAULT_CLOCK_RATE,
        }
    }

    pub fn with_clock_rate(mut self, clock_rate: u32) -> Self {
        self.clock_rate = clock_rate;
        self
    }
}

impl PayloadMap {
    /// Builds a map from mappings; payload types above 127 or a zero clock rate are ignored.
    pub fn from_mappings(mappings: &[PayloadMapping]) -> Self {
        let mut map = Self::default();
        for m in mappings.iter().filter(|m| m.to_pt < 128) {
            let from = usize::from(m.from_pt);
            if let Some(to_pt) = map.rewrite.get_mut(from) {
                *to_pt = m.to_pt;
            }
            if let Some(clock_rate) = map.clock_rate.get_mut(from).filter(|_| m.clock_rate > 0) {
                *clock_rate = m.clock_rate;
            }
        }
        map
    }

    // Both tables have 128 entries, so the masked lookups always hit (and compile to a
    // plain load); the fallbacks only keep that a fact of the code.
    pub fn rewrite(&self, payload_type: u8) -> u8 {
        self.rewrite
            .get(usize::from(payload_type & 0x7f))
            .copied()
            .unwrap_or(payload_type)
    }

    pub fn clock_rate(&self, payload_type: u8) -> u32 {
        self.clock_rate
            .get(usize::from(payload_type & 0x7f))
            .copied()
            .unwrap_or(DEFAULT_CLOCK_RATE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(pt: u8, marker: bool) -> [u8; 12] {
        let mut p = [0u8; 12];
        p[0] = 0x80;
        p[1] = pt | if marker { 0x80 } else { 0 };
        p[2..4].copy_from_slice(&1234u16.to_be_bytes());
        p[4..8].copy_from_slice(&5678u32.to_be_bytes());
        p[8..12].copy_from_slice(&0xdeadbeefu32.to_be_bytes());
        p
    }

    #[test]
    fn classifies_by_first_two_bytes() {
        assert_eq!(classify(&[0, 1, 0, 0]), PacketKind::Stun);
        assert_eq!(classify(&[1, 1, 0, 0]), PacketKind::Stun);
        assert_eq!(classify(&rtp(0, false)), PacketKind::Rtp);
        assert_eq!(classify(&rtp(101, true)), PacketKind::Rtp);
        let mut sr = [0u8; 28];
        sr[0] = 0x80;
        sr[1] = 200;
        assert_eq!(classify(&sr), PacketKind::Rtcp);
        sr[1] = 206;
        assert_eq!(classify(&sr), PacketKind::Rtcp);
        assert_eq!(classify(&[]), PacketKind::Unknown);
        assert_eq!(classify(&[0x80]), PacketKind::Unknown);
        assert_eq!(classify(&[0x80, 0, 0]), PacketKind::Unknown);
        assert_eq!(classify(&[0x17, 3, 3]), PacketKind::Unknown);
    }

    #[test]
    fn reads_header_and_rewrites_payload_type_keeping_marker() {
        let mut p = rtp(101, true);
        let h = read_rtp_header(&p).unwrap();
        assert_eq!(
            h,
            RtpHeader {
                payload_type: 101,
                sequence: 1234,
                timestamp: 5678,
                ssrc: 0xdeadbeef
            }
        );
        write_payload_type(&mut p, 96);
        assert_eq!(p[1], 0x80 | 96);
        assert!(read_rtp_header(&p[..11]).is_none());
    }

    #[test]
    fn payload_range_skips_csrcs_extension_and_padding() {
        let mut p = rtp(0, false).to_vec();
        p.extend_from_slice(&[7; 160]);
        assert_eq!(payload_range(&p), Some((12, 172)));
        // Two CSRCs, a one-word extension, three bytes of padding.
        let mut q = vec![0x80 | 0x20 | 0x10 | 2, 0];
        q.extend_from_slice(&[0; 10]);
        q.extend_from_slice(&[0; 8]);
        q.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]);
        q.extend_from_slice(&[9; 20]);
        q.extend_from_slice(&[0, 0, 3]);
        assert_eq!(payload_range(&q), Some((28, 48)));
        // Announced but missing: extension, padding longer than the packet.
        assert_eq!(payload_range(&q[..22]), None);
        let mut r = rtp(0, false).to_vec();
        r[0] |= 0x20;
        r.push(200);
        assert_eq!(payload_range(&r), None);
    }

    #[test]
    fn payload_map_defaults_to_identity() {
        let map = PayloadMap::from_mappings(&[
            PayloadMapping::new(101, 96),
            PayloadMapping::new(9, 9).with_clock_rate(8000),
            PayloadMapping::new(111, 112).with_clock_rate(16000),
            PayloadMapping::new(200, 1),
        ]);
        assert_eq!(map.rewrite(101), 96);
        assert_eq!(map.rewrite(0), 0);
        assert_eq!(map.rewrite(111), 112);
        assert_eq!(map.clock_rate(111), 16000);
        assert_eq!(map.clock_rate(0), DEFAULT_CLOCK_RATE);
    }
}
