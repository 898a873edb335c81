//! In-band DTMF from the PSTN to RFC 4733 events towards Teams (row 48: Microsoft's media
//! stack ignores tones in the audio, so a carrier leg without `telephone-event` would lose
//! every IVR digit).
//!
//! The converter sits in the carrier -> Teams forward step. It watches the carrier's G.711
//! audio with a [`ToneDetector`]; while a digit sounds, each audio packet is replaced *in
//! place* by an event packet with the same SSRC and sequence number (so SRTP indexes and the
//! receiver's loss accounting stay exact, and no packet is ever created or buffered): the
//! event's start timestamp, a growing duration, the marker on the first one (RFC 4733
//! §2.5.1). When the digit stops, the next three packets carry the end bit with the final
//! duration (the three copies RFC 4733 §2.5.1.4 asks for), then audio flows again. The tone's
//! first ~50 ms (detection time) go through as audio, which Teams plays and ignores.
//!
//! The other way, Teams' RFC 4733 events become G.711 tones for the carrier: each event
//! packet that advances the event's duration is replaced in place by an audio packet holding
//! the newly covered samples of the digit's two frequencies (at the event's volume), under
//! the G.711 payload type the carrier uses; retransmissions and the repeated end packets add
//! nothing and are dropped.

use crate::media::inband_dtmf::{dbm0_amplitude, encode, frequencies, sine, ToneDetector, G711};
use crate::media::rtp::{payload_range, RtpHeader, RTP_HEADER_LEN};

/// What the call layer negotiated for one call: the carrier sends G.711 under these payload
/// types and no `telephone-event`; Teams expects events under `event_pt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InbandDtmfPlan {
    pub event_pt: u8,
    pub pcmu_pt: Option<u8>,
    pub pcma_pt: Option<u8>,
    /// Teams' own events arrive under this number (the one in the SDP we sent it); the
    /// carrier cannot take them.
    pub teams_event_pt: Option<u8>,
}

impl InbandDtmfPlan {
    /// An event packet from Teams: under the number we gave it, or under its own number
    /// (senders that assume symmetric payload types, see `sdp::ptmap`).
    pub fn is_teams_event(&self, payload_type: u8) -> bool {
        self.teams_event_pt == Some(payload_type) || self.event_pt == payload_type
    }
}

/// RFC 4733 volume field: -10 dBm0, a typical tone level (power of the detected tone is not
/// measured; receivers use the field only to regenerate tones).
const VOLUME: u8 = 10;
/// End packets sent per event (RFC 4733 §2.5.1.4 recommends three).
const END_COPIES: u8 = 3;
/// Event payload: event, E/R/volume, duration (RFC 4733 §2.3).
const EVENT_PAYLOAD_LEN: usize = 4;

#[derive(Debug, Clone, Copy)]
struct Event {
    code: u8,
    start_ts: u32,
    duration: u16,
    /// End packets still to send; 0 while the digit sounds.
    ends_left: u8,
}

/// Per-call converter state (kept on the carrier leg); fixed size, no allocation.
#[derive(Debug, Clone)]
pub struct DtmfConverter {
    plan: InbandDtmfPlan,
    detector: ToneDetector,
    law: Option<G711>,
    event: Option<Event>,
    ssrc: Option<u32>,
    /// Teams' event being played to the carrier: its timestamp and the samples played.
    playing: Option<(u32, u16)>,
}

/// What happens to an event packet from Teams on its way to an in-band carrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToCarrier {
    /// Now a G.711 packet of `len` bytes under the carrier's payload type.
    Tone { len: usize },
    /// Adds no new samples: a retransmission or a copy of the end packet.
    Redundant,
    /// Cannot be played: not a DTMF digit, no G.711 on the carrier leg, truncated.
    Drop,
}

/// Most samples one event packet turns into (60 ms): an event packet normally advances by
/// 20 ms; after a loss the tone resumes rather than filling the gap.
const MAX_TONE_SAMPLES: u16 = 480;

/// What the forward step does with the packet after [`DtmfConverter::process`] (or a tone
/// from [`DtmfConverter::event_to_tone`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Converted {
    /// Not touched: forward as usual (payload type mapping applies).
    Audio,
    /// Rewritten in place, `len` bytes, already under the receiving leg's payload type (an
    /// event packet towards Teams, a tone packet towards the carrier).
    Rewritten { len: usize },
}

impl DtmfConverter {
    pub fn new(plan: InbandDtmfPlan) -> Self {
        Self {
            plan,
            detector: ToneDetector::new(G711::Ulaw),
            law: None,
            event: None,
            ssrc: None,
            playing: None,
        }
    }

    pub fn plan(&self) -> InbandDtmfPlan {
        self.plan
    }

    fn law_of(&self, payload_type: u8) -> Option<G711> {
        if self.plan.pcmu_pt == Some(payload_type) {
            Some(G711::Ulaw)
        } else if self.plan.pcma_pt == Some(payload_type) {
            Some(G711::Alaw)
        } else {
            None
        }
    }

    /// Looks at one decrypted RTP packet of `len` bytes from the carrier (`header` already
    /// read from it) and rewrites it in place when it falls inside a digit. `buf` must have
    /// room for the event payload (it always does: an event is smaller than the audio).
    pub fn process(&mut self, header: &RtpHeader, buf: &mut [u8], len: usize) -> Converted {
        let Some(law) = self.law_of(header.payload_type) else {
            // Comfort noise, a codec we cannot listen to, or events the carrier sends itself.
            return Converted::Audio;
        };
        let Some((payload_at, payload_end)) = buf.get(..len).and_then(payload_bounds) else {
            return Converted::Audio;
        };
        let (ssrc, timestamp) = (header.ssrc, header.timestamp);
        if self.ssrc != Some(ssrc) || self.law != Some(law) {
            // A new stream or codec: old tone state means nothing for it.
            self.detector = ToneDetector::new(law);
            self.law = Some(law);
            self.ssrc = Some(ssrc);
            self.event = None;
        }
        let Some(samples) = buf.get(payload_at..payload_end) else {
            return Converted::Audio;
        };
        let sample_count = samples.len() as u32;
        let digit = self.detector.feed(samples);
        let Some(mut event) = self.event else {
            let Some(code) = digit else {
                return Converted::Audio;
            };
            let event = Event {
                code,
                start_ts: timestamp,
                duration: duration(timestamp, timestamp, sample_count),
                ends_left: 0,
            };
            self.event = Some(event);
            return self.write_event(buf, payload_at, &event, true, false);
        };
        if event.ends_left == 0 {
            if digit == Some(event.code) {
                event.duration = duration(event.start_ts, timestamp, sample_count);
            } else {
                // The end packets report the duration reached by the last packet of the tone.
                event.ends_left = END_COPIES;
            }
        }
        if event.ends_left > 0 {
            event.ends_left -= 1;
            self.event = (event.ends_left > 0).then_some(event);
            return self.write_event(buf, payload_at, &event, false, true);
        }
        self.event = Some(event);
        self.write_event(buf, payload_at, &event, false, false)
    }

    /// Turns one RFC 4733 packet from Teams (already decrypted, `len` bytes in `buf`,
    /// `header` read from it) into a G.711 packet with the tone it newly covers. `buf` must
    /// have room for the header and [`MAX_TONE_SAMPLES`] bytes.
    pub fn event_to_tone(&mut self, header: &RtpHeader, buf: &mut [u8], len: usize) -> ToCarrier {
        let law = match (self.law, self.plan.pcmu_pt, self.plan.pcma_pt) {
            // The law the carrier itself sends, else the one negotiated.
            (Some(law), _, _) => law,
            (None, Some(_), _) => G711::Ulaw,
            (None, None, Some(_)) => G711::Alaw,
            (None, None, None) => return ToCarrier::Drop,
        };
        let tone_pt = match law {
            G711::Ulaw => self.plan.pcmu_pt,
            G711::Alaw => self.plan.pcma_pt,
        };
        let Some(tone_pt) = tone_pt else {
            return ToCarrier::Drop;
        };
        let Some((at, _)) = buf.get(..len).and_then(payload_bounds) else {
            return ToCarrier::Drop;
        };
        let Some(&[code, e_r_volume, d0, d1]) = buf.get(at..at + EVENT_PAYLOAD_LEN) else {
            return ToCarrier::Drop;
        };
        let volume = e_r_volume & 0x3f;
        let duration = u16::from_be_bytes([d0, d1]);
        let start = header.timestamp;
        let Some((low, high)) = frequencies(code) else {
            return ToCarrier::Drop;
        };
        let played = match self.playing {
            Some((ts, played)) if ts == start => played,
            _ => 0,
        };
        if duration <= played {
            return ToCarrier::Redundant;
        }
        let samples = (duration - played).min(MAX_TONE_SAMPLES);
        let Some((header_part, tone)) = buf
            .split_at_mut_checked(at)
            .and_then(|(head, rest)| Some((head, rest.get_mut(..usize::from(samples))?)))
        else {
            return ToCarrier::Drop;
        };
        let first_sample = start.wrapping_add(u32::from(duration - samples));
        if rewrite_header(header_part, played == 0, tone_pt, first_sample).is_none() {
            return ToCarrier::Drop;
        }
        self.playing = Some((start, duration));
        // Each tone at the event's level (-volume dBm0), never above -3 dBm0 so the sum fits.
        let amplitude = dbm0_amplitude(-f64::from(volume.max(3)));
        for (i, byte) in tone.iter_mut().enumerate() {
            // Phase from the position in the event, so consecutive packets join seamlessly.
            let n = f64::from(duration - samples) + i as f64;
            let value = amplitude * (sine(low, n) + sine(high, n));
            *byte = encode(law, value as i16);
        }
        ToCarrier::Tone {
            len: at + usize::from(samples),
        }
    }

    /// Rewrites the packet into an event packet; left as audio only if `payload_at` were
    /// not where `payload_bounds` found room for an event payload.
    fn write_event(
        &self,
        buf: &mut [u8],
        payload_at: usize,
        event: &Event,
        first: bool,
        end: bool,
    ) -> Converted {
        let Some((header_part, payload)) = buf
            .split_at_mut_checked(payload_at)
            .and_then(|(head, rest)| Some((head, rest.get_mut(..EVENT_PAYLOAD_LEN)?)))
        else {
            return Converted::Audio;
        };
        // The marker starts an event (RFC 4733 §2.5.1.1).
        if rewrite_header(header_part, first, self.plan.event_pt, event.start_ts).is_none() {
            return Converted::Audio;
        }
        let [d0, d1] = event.duration.to_be_bytes();
        let e_r_volume = if end { 0x80 | VOLUME } else { VOLUME };
        payload.copy_from_slice(&[event.code, e_r_volume, d0, d1]);
        Converted::Rewritten {
            len: payload_at + EVENT_PAYLOAD_LEN,
        }
    }
}

/// Marker, payload type and timestamp of the RTP header at the start of `packet`, padding
/// bit cleared (the rewritten packet has none); `None` if shorter than an RTP header.
fn rewrite_header(packet: &mut [u8], marker: bool, payload_type: u8, timestamp: u32) -> Option<()> {
    let (header, _) = packet.split_first_chunk_mut::<RTP_HEADER_LEN>()?;
    let [first, second, _, _, t0, t1, t2, t3, ..] = header;
    *first &= !0x20;
    *second = (u8::from(marker) << 7) | (payload_type & 0x7f);
    [*t0, *t1, *t2, *t3] = timestamp.to_be_bytes();
    Some(())
}

/// Event duration in timestamp units up to the end of the current packet, saturating at the
/// 16-bit field (a digit held for more than 8 s just stops growing).
fn duration(start_ts: u32, packet_ts: u32, samples: u32) -> u16 {
    let elapsed = packet_ts.wrapping_sub(start_ts).wrapping_add(samples);
    u16::try_from(elapsed).unwrap_or(u16::MAX)
}

/// [`payload_range`] of a packet whose payload can hold an event (4 bytes); `None` leaves
/// the packet alone.
fn payload_bounds(packet: &[u8]) -> Option<(usize, usize)> {
    let (start, end) = payload_range(packet)?;
    (start + EVENT_PAYLOAD_LEN <= end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::inband_dtmf::encode;

    const PLAN: InbandDtmfPlan = InbandDtmfPlan {
        event_pt: 101,
        pcmu_pt: Some(0),
        pcma_pt: Some(8),
        teams_event_pt: Some(101),
    };

    /// The forward step's call: the header read first, as `forward::rtp_packet` does.
    fn convert(converter: &mut DtmfConverter, buf: &mut [u8], len: usize) -> Converted {
        match crate::media::rtp::read_rtp_header(&buf[..len]) {
            Some(header) => converter.process(&header, buf, len),
            None => Converted::Audio,
        }
    }

    fn to_tone(converter: &mut DtmfConverter, buf: &mut [u8], len: usize) -> ToCarrier {
        match crate::media::rtp::read_rtp_header(&buf[..len]) {
            Some(header) => converter.event_to_tone(&header, buf, len),
            None => ToCarrier::Drop,
        }
    }

    /// 20 ms RTP packets of G.711 `law`: `tone` (a digit code, or silence) starting at `seq`.
    struct Stream {
        law: G711,
        pt: u8,
        ssrc: u32,
        seq: u16,
        sample: u64,
    }

    impl Stream {
        fn new(law: G711, pt: u8) -> Self {
            Self {
                law,
                pt,
                ssrc: 0x0102_0304,
                seq: 1000,
                sample: 8000,
            }
        }

        fn packet(&mut self, tone: Option<u8>) -> (Vec<u8>, usize) {
            let mut buf = vec![0u8; 512];
            buf[0] = 0x80;
            buf[1] = self.pt;
            buf[2..4].copy_from_slice(&self.seq.to_be_bytes());
            buf[4..8].copy_from_slice(&(self.sample as u32).to_be_bytes());
            buf[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
            for i in 0..160 {
                let t = (self.sample + i) as f64 / 8000.0;
                let value = match tone {
                    Some(code) => {
                        let (low, high) = frequencies(code).unwrap_or_default();
                        let wave = |f: f32| (2.0 * std::f64::consts::PI * f64::from(f) * t).sin();
                        6000.0 * (wave(low) + wave(high))
                    }
                    None => 0.0,
                };
                buf[12 + i as usize] = encode(self.law, value as i16);
            }
            self.seq = self.seq.wrapping_add(1);
            self.sample += 160;
            (buf, 172)
        }
    }

    #[derive(Debug, PartialEq)]
    struct EventPacket {
        marker: bool,
        seq: u16,
        ts: u32,
        code: u8,
        end: bool,
        duration: u16,
    }

    fn event_of(buf: &[u8], len: usize) -> EventPacket {
        assert_eq!(len, 16);
        assert_eq!(buf[1] & 0x7f, 101);
        EventPacket {
            marker: buf[1] & 0x80 != 0,
            seq: u16::from_be_bytes([buf[2], buf[3]]),
            ts: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            code: buf[12],
            end: buf[13] & 0x80 != 0,
            duration: u16::from_be_bytes([buf[14], buf[15]]),
        }
    }

    /// Runs `tones` (one entry per 20 ms packet) and returns per packet `None` (left as audio)
    /// or the event it became.
    fn run(law: G711, pt: u8, tones: &[Option<u8>]) -> Vec<Option<EventPacket>> {
        let mut converter = DtmfConverter::new(PLAN);
        let mut stream = Stream::new(law, pt);
        tones
            .iter()
            .map(|tone| {
                let (mut buf, len) = stream.packet(*tone);
                let before = buf.clone();
                match convert(&mut converter, &mut buf, len) {
                    Converted::Audio => {
                        assert_eq!(buf, before, "audio is left untouched");
                        None
                    }
                    Converted::Rewritten { len } => {
                        assert_eq!(&buf[2..4], &before[2..4], "sequence number kept");
                        assert_eq!(&buf[8..12], &before[8..12], "SSRC kept");
                        Some(event_of(&buf, len))
                    }
                }
            })
            .collect()
    }

    fn digit_then_silence(
        code: u8,
        tone_packets: usize,
        silence_packets: usize,
    ) -> Vec<Option<u8>> {
        let mut tones = vec![Some(code); tone_packets];
        tones.extend(vec![None; silence_packets]);
        tones
    }

    #[test]
    fn row48_a_pstn_tone_becomes_one_rfc4733_event_with_three_end_packets() {
        for (law, pt) in [(G711::Ulaw, 0), (G711::Alaw, 8)] {
            let out = run(law, pt, &digit_then_silence(5, 10, 10));
            let events: Vec<&EventPacket> = out.iter().flatten().collect();
            assert!(!events.is_empty(), "{law:?}: no event");
            let first = out.iter().position(Option::is_some).unwrap_or_default();
            assert!(first <= 4, "{law:?}: detected after {first} packets");
            // One event: marker on the first packet only, one start timestamp, code 5.
            assert!(events[0].marker);
            assert!(events[1..].iter().all(|e| !e.marker));
            assert!(events.iter().all(|e| e.code == 5 && e.ts == events[0].ts));
            // Duration grows by 160 per packet while the tone lasts.
            let sounding: Vec<&&EventPacket> = events.iter().filter(|e| !e.end).collect();
            for pair in sounding.windows(2) {
                assert_eq!(pair[1].duration, pair[0].duration + 160);
            }
            // Three end packets, the final duration, then audio again.
            let ends: Vec<&&EventPacket> = events.iter().filter(|e| e.end).collect();
            assert_eq!(ends.len(), 3, "{law:?}");
            assert!(ends
                .iter()
                .all(|e| e.duration == sounding[sounding.len() - 1].duration));
            let last_event = out.iter().rposition(Option::is_some).unwrap_or_default();
            assert!(out[last_event + 1..].iter().all(Option::is_none));
            assert!(events
                .windows(2)
                .all(|w| w[1].seq == w[0].seq.wrapping_add(1)));
            // The event covers the tone heard after detection (to within the debounce).
            let covered = u32::from(ends[0].duration);
            assert!((160 * 5..=160 * 10).contains(&covered), "{covered}");
        }
    }

    #[test]
    fn row48_two_digits_in_a_row_are_two_events_in_order() {
        let mut tones = digit_then_silence(1, 6, 5);
        tones.extend(digit_then_silence(11, 6, 6));
        let out = run(G711::Ulaw, 0, &tones);
        let starts: Vec<(u8, u32)> = out
            .iter()
            .flatten()
            .filter(|e| e.marker)
            .map(|e| (e.code, e.ts))
            .collect();
        assert_eq!(starts.len(), 2, "{out:?}");
        assert_eq!((starts[0].0, starts[1].0), (1, 11));
        assert!(starts[1].1 > starts[0].1);
    }

    #[test]
    fn row48_silence_other_codecs_and_the_carriers_own_events_are_left_alone() {
        assert!(run(G711::Ulaw, 0, &[None; 20]).iter().all(Option::is_none));
        // G.729 (18) cannot be listened to; PT 96 is not G.711 in this call.
        assert!(run(G711::Ulaw, 18, &[Some(5); 12])
            .iter()
            .all(Option::is_none));
        assert!(run(G711::Ulaw, 96, &[Some(5); 12])
            .iter()
            .all(Option::is_none));
    }

    #[test]
    fn row48_a_new_ssrc_starts_over_without_ending_into_the_new_stream() {
        let mut converter = DtmfConverter::new(PLAN);
        let mut stream = Stream::new(G711::Ulaw, 0);
        let mut converted = 0;
        for _ in 0..8 {
            let (mut buf, len) = stream.packet(Some(3));
            if matches!(
                convert(&mut converter, &mut buf, len),
                Converted::Rewritten { .. }
            ) {
                converted += 1;
            }
        }
        assert!(converted > 0);
        stream.ssrc = 0x0a0b_0c0d;
        let (mut buf, len) = stream.packet(None);
        assert_eq!(convert(&mut converter, &mut buf, len), Converted::Audio);
    }

    #[test]
    fn row48_padding_and_extensions_are_handled_and_short_packets_ignored() {
        let mut stream = Stream::new(G711::Ulaw, 0);
        let mut converter = DtmfConverter::new(PLAN);
        let mut last = Converted::Audio;
        for _ in 0..8 {
            let (mut buf, _) = stream.packet(Some(7));
            // Padding bit with 4 bytes of padding after the 160 samples.
            buf[0] |= 0x20;
            buf[172..176].copy_from_slice(&[0, 0, 0, 4]);
            last = convert(&mut converter, &mut buf, 176);
            if let Converted::Rewritten { len } = last {
                assert_eq!(buf[0] & 0x20, 0, "padding bit cleared");
                assert_eq!(event_of(&buf, len).code, 7);
            }
        }
        assert!(matches!(last, Converted::Rewritten { .. }));
        // A header that claims more than the packet holds is not touched.
        let mut short = [0x8fu8, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff];
        assert_eq!(convert(&mut converter, &mut short, 14), Converted::Audio);
        let mut truncated = [0x80u8, 0, 0, 1];
        assert_eq!(convert(&mut converter, &mut truncated, 4), Converted::Audio);
    }

    #[test]
    fn durations_saturate_instead_of_wrapping() {
        assert_eq!(duration(100, 100, 160), 160);
        assert_eq!(duration(u32::MAX - 10, 5, 160), 176);
        assert_eq!(duration(0, 70_000, 160), u16::MAX);
    }

    /// An RFC 4733 packet from Teams: event `code`, `duration`, end bit.
    fn teams_event(seq: u16, ts: u32, code: u8, duration: u16, end: bool) -> Vec<u8> {
        let mut buf = vec![0u8; 2048];
        buf[0] = 0x80;
        buf[1] = 101;
        buf[2..4].copy_from_slice(&seq.to_be_bytes());
        buf[4..8].copy_from_slice(&ts.to_be_bytes());
        buf[8..12].copy_from_slice(&0x7ea3_0001u32.to_be_bytes());
        buf[12] = code;
        buf[13] = if end { 0x80 | 10 } else { 10 };
        buf[14..16].copy_from_slice(&duration.to_be_bytes());
        buf
    }

    #[test]
    fn row48_teams_events_become_a_g711_tone_the_detector_recognises() {
        for (law, pt, plan) in [
            (G711::Ulaw, 0, PLAN),
            (
                G711::Alaw,
                8,
                InbandDtmfPlan {
                    pcmu_pt: None,
                    ..PLAN
                },
            ),
        ] {
            let mut converter = DtmfConverter::new(plan);
            let mut detector = ToneDetector::new(law);
            let start = 90_000u32;
            let mut tones = Vec::new();
            let mut durations: Vec<(u16, bool)> = (1..=6).map(|i| (160 * i, false)).collect();
            durations.extend([(1040, true), (1040, true), (1040, true)]);
            for (i, (duration, end)) in durations.into_iter().enumerate() {
                let mut buf = teams_event(500 + i as u16, start, 9, duration, end);
                match to_tone(&mut converter, &mut buf, 16) {
                    ToCarrier::Tone { len } => tones.push(buf[..len].to_vec()),
                    other => {
                        assert_eq!(other, ToCarrier::Redundant);
                        assert!(end && i > 6, "packet {i} dropped");
                    }
                }
            }
            // 6 growing packets and the first end packet carry new samples; 2 end copies not.
            assert_eq!(tones.len(), 7, "{law:?}");
            let mut heard = Vec::new();
            for (i, tone) in tones.iter().enumerate() {
                assert_eq!(tone[1] & 0x7f, pt);
                assert_eq!(tone[1] & 0x80 != 0, i == 0, "marker starts the tone");
                let ts = u32::from_be_bytes([tone[4], tone[5], tone[6], tone[7]]);
                assert_eq!(ts, start + 160 * i as u32, "timestamps follow the samples");
                let samples = &tone[12..];
                assert_eq!(samples.len(), if i < 6 { 160 } else { 80 });
                heard.push(detector.feed(samples));
            }
            // Silence after it ends the digit.
            heard.push(detector.feed(&[encode(law, 0); 160]));
            heard.push(detector.feed(&[encode(law, 0); 160]));
            heard.push(detector.feed(&[encode(law, 0); 160]));
            assert!(heard.contains(&Some(9)), "{law:?}: {heard:?}");
            assert!(heard.iter().flatten().all(|d| *d == 9));
        }
    }

    #[test]
    fn row48_a_lost_event_packet_resumes_the_tone_without_filling_the_gap() {
        let mut converter = DtmfConverter::new(PLAN);
        let mut first = teams_event(1, 8000, 1, 160, false);
        assert_eq!(
            to_tone(&mut converter, &mut first, 16),
            ToCarrier::Tone { len: 172 }
        );
        let mut jump = teams_event(5, 8000, 1, 1600, false);
        assert_eq!(
            to_tone(&mut converter, &mut jump, 16),
            ToCarrier::Tone { len: 12 + 480 }
        );
        let ts = u32::from_be_bytes([jump[4], jump[5], jump[6], jump[7]]);
        assert_eq!(ts, 8000 + 1600 - 480);
        assert_eq!(jump[1] & 0x80, 0, "no marker inside one event");
        // A new event (new timestamp) starts over, with the marker.
        let mut next = teams_event(6, 20_000, 2, 160, false);
        assert_eq!(
            to_tone(&mut converter, &mut next, 16),
            ToCarrier::Tone { len: 172 }
        );
        assert_eq!(next[1], 0x80);
    }

    #[test]
    fn row48_unplayable_events_are_dropped() {
        // Not a DTMF digit (event 16+: flash, tones of other RFC 4733 registries).
        let mut converter = DtmfConverter::new(PLAN);
        let mut flash = teams_event(1, 8000, 16, 160, false);
        assert_eq!(to_tone(&mut converter, &mut flash, 16), ToCarrier::Drop);
        // A carrier without G.711 cannot be given tones.
        let mut g729 = DtmfConverter::new(InbandDtmfPlan {
            pcmu_pt: None,
            pcma_pt: None,
            ..PLAN
        });
        let mut digit = teams_event(1, 8000, 3, 160, false);
        assert_eq!(to_tone(&mut g729, &mut digit, 16), ToCarrier::Drop);
        // A truncated event.
        let mut short = teams_event(1, 8000, 3, 160, false);
        assert_eq!(to_tone(&mut converter, &mut short, 14), ToCarrier::Drop);
    }
}
