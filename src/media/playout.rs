//! Audio the SBC makes itself towards a leg, one 20 ms G.711 frame at a time, paced by the
//! worker's timer (never by the packet path):
//!
//! * **Ringback** (row 38): during a REFER transfer the carrier's dialog is confirmed and gets
//!   no new 18x, so when the transfer target rings without early media (a 180 with no SDP) the
//!   carrier would hear silence; the SBC plays a ringing tone instead until the target answers
//!   or sends early media. While it plays, what the old Teams leg still sends is left out.
//! * **Comfort noise** (row 49, RFC 3389): Teams uses CN (PT 13) and silence suppression, and
//!   Microsoft expects the far network to support comfort noise (brief §3.5). Towards a
//!   carrier that negotiated no CN but takes G.711, each CN packet from Teams becomes a G.711
//!   noise frame at the level it announces, and the silence after it is filled with further
//!   frames every 20 ms until Teams' speech resumes, so a PSTN gateway that expects continuous
//!   media gets it. Towards a carrier without CN and without G.711, and towards a Teams leg
//!   that negotiated no CN, CN packets are left out.
//!
//! Generated frames continue the stream the leg receives (its SSRC, the next sequence
//! numbers, the timestamp running on; `stats::SentStream`), so the receiver sees one stream.

use crate::media::inband_dtmf::{dbm0_amplitude, encode, sine, G711};

/// Samples per generated frame (20 ms at 8 kHz, the usual G.711 packetisation; the brief
/// §3.5 asks for 20 ms).
pub const FRAME_SAMPLES: usize = 160;
/// Generated frames' clock (G.711).
pub const CLOCK_RATE: u32 = 8000;
pub const FRAME_MICROS: u64 = 20_000;
/// The first filler frame after a relayed packet waits this much longer than a frame, so a
/// CN or speech packet that is merely late is not doubled by noise.
const FILL_SLACK_MICROS: u64 = 10_000;
/// A worker that fell this far behind (a busy moment) resumes at the current frame instead
/// of sending the missed ones in a burst.
const MAX_LAG_MICROS: u64 = 3 * FRAME_MICROS;
/// RFC 3389 §3.1: 0 dBov is the overload point, a square wave at full scale (±8031 of μ-law's
/// 14 bits = ±32124 on the 16-bit scale of `inband_dtmf::decode`).
const OVERLOAD_RMS: f64 = 32_124.0;

/// Which G.711 payload the receiving leg takes generated audio in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct G711Target {
    pub payload_type: u8,
    pub law: G711,
}

/// A ringing tone: one or two frequencies (Hz), each at `dbm0`, on for `on_ms`, off for
/// `off_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TonePlan {
    pub frequencies: [Option<u16>; 2],
    pub dbm0: i8,
    pub on_ms: u32,
    pub off_ms: u32,
}

impl TonePlan {
    /// ITU-T E.180 ringing tone in the form most of Europe uses (CEPT/ETSI ES 201 970):
    /// 425 Hz, 1 s on, 4 s off, at -13 dBm0 (E.180's range is -10 to -20 dBm0).
    pub const ETSI: TonePlan = TonePlan {
        frequencies: [Some(425), None],
        dbm0: -13,
        on_ms: 1_000,
        off_ms: 4_000,
    };
    /// North American audible ringing (ANSI T1.401): 440 + 480 Hz, 2 s on, 4 s off, each
    /// tone at -19 dBm0.
    pub const US: TonePlan = TonePlan {
        frequencies: [Some(440), Some(480)],
        dbm0: -19,
        on_ms: 2_000,
        off_ms: 4_000,
    };

    /// Whether sample `n` of the cadence falls in an "on" period.
    fn sounding(&self, n: u64) -> bool {
        let samples_per_ms = u64::from(CLOCK_RATE) / 1000;
        let on = u64::from(self.on_ms) * samples_per_ms;
        let cycle = on + u64::from(self.off_ms) * samples_per_ms;
        cycle == 0 || n % cycle < on
    }

    /// Writes samples `first..first + out.len()` of the tone as G.711 `law`.
    pub fn render(&self, law: G711, first: u64, out: &mut [u8]) {
        let amplitude = dbm0_amplitude(f64::from(self.dbm0));
        for (i, byte) in out.iter_mut().enumerate() {
            let n = first + i as u64;
            let value = if self.sounding(n) {
                self.frequencies
                    .iter()
                    .flatten()
                    .map(|&f| amplitude * sine(f32::from(f), n as f64))
                    .sum()
            } else {
                0.0
            };
            *byte = encode(law, value as i16);
        }
    }
}

/// A ringback to play towards the carrier (row 38).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ringback {
    pub plan: TonePlan,
    pub target: G711Target,
}

/// Comfort noise towards a leg that did not negotiate CN (row 49): packets arriving from the
/// other leg under one of `cn_payload_types` become `noise` frames (filling the silence after
/// them) or, with no G.711 to make noise in, are left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComfortNoisePlan {
    pub cn_payload_types: [Option<u8>; 2],
    pub noise: Option<G711Target>,
}

impl ComfortNoisePlan {
    pub fn is_cn(&self, payload_type: u8) -> bool {
        self.cn_payload_types.contains(&Some(payload_type))
    }
}

/// Writes a frame of white noise at RFC 3389 `level` (-dBov, 0-127) as G.711 `law`.
/// Uniform samples (RMS = peak / sqrt 3): RFC 3389 §4 leaves the spectrum to the receiver
/// when none is sent, and flat noise is what its appendix falls back to.
pub fn render_noise(level: u8, law: G711, rng: &mut u64, out: &mut [u8]) {
    let rms = OVERLOAD_RMS * 10f64.powf(-f64::from(level & 0x7f) / 20.0);
    let peak = rms * 3f64.sqrt();
    for byte in out.iter_mut() {
        let unit = (next_random(rng) >> 11) as f64 / (1u64 << 53) as f64;
        let value = (2.0 * unit - 1.0) * peak;
        *byte = encode(law, value.clamp(-32_768.0, 32_767.0) as i16);
    }
}

/// xorshift64*: cheap, allocation-free, plenty for noise and report timing. `state` must not
/// be 0 (it stays 0).
pub fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[derive(Debug, Clone, Copy)]
struct RingbackPlayer {
    ringback: Ringback,
    /// Samples of the cadence played so far.
    played: u64,
    /// The next frame starts a talkspurt (RFC 3551 §4.1: marker bit).
    marker: bool,
}

#[derive(Debug, Clone, Copy)]
struct NoiseFill {
    level: u8,
    target: G711Target,
    /// When the last packet from the other leg was relayed to this one.
    last_input_micros: u64,
}

/// What a generated frame is, for accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Ringback,
    ComfortNoise,
}

/// A frame [`Playout::render`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    pub payload_type: u8,
    pub marker: bool,
}

/// Generated audio of one leg (see the module docs); owned by the worker.
#[derive(Debug, Clone)]
pub struct Playout {
    ringback: Option<RingbackPlayer>,
    noise: Option<NoiseFill>,
    next_frame_micros: u64,
    /// The worker has this leg in its list of legs to pace.
    pub scheduled: bool,
    rng: u64,
}

impl Playout {
    pub fn new(seed: u64) -> Self {
        Self {
            ringback: None,
            noise: None,
            next_frame_micros: 0,
            scheduled: false,
            rng: seed | 1,
        }
    }

    /// Starts (or keeps) `ringback`, its first frame due at once.
    pub fn start_ringback(&mut self, ringback: Ringback, now_micros: u64) {
        if self.ringback.is_some_and(|r| r.ringback == ringback) {
            return;
        }
        self.ringback = Some(RingbackPlayer {
            ringback,
            played: 0,
            marker: true,
        });
        self.next_frame_micros = now_micros;
    }

    pub fn stop_ringback(&mut self) {
        self.ringback = None;
    }

    /// While a ringback plays, relayed audio towards this leg is left out.
    pub fn ringback_playing(&self) -> bool {
        self.ringback.is_some()
    }

    /// A CN packet from the other leg became a noise frame (`level` from its payload) at
    /// `now_micros`: fill the silence after it.
    pub fn arm_noise(&mut self, level: u8, target: G711Target, now_micros: u64) {
        self.noise = Some(NoiseFill {
            level,
            target,
            last_input_micros: now_micros,
        });
        if self.ringback.is_none() {
            self.next_frame_micros = now_micros + FRAME_MICROS + FILL_SLACK_MICROS;
        }
    }

    /// A packet from the other leg was relayed to this one: speech ends the fill (a CN
    /// packet, already a noise frame, has moved it on with [`Playout::arm_noise`]).
    pub fn on_relayed(&mut self, noise_frame: bool) {
        if !noise_frame {
            self.noise = None;
        }
    }

    pub fn stop_noise(&mut self) {
        self.noise = None;
    }

    /// Renders the noise frame that replaces a CN packet in place: `out` gets the samples.
    pub fn noise_frame(&mut self, level: u8, law: G711, out: &mut [u8]) {
        render_noise(level, law, &mut self.rng, out);
    }

    /// Stops a fill whose source has sent nothing for `silence_limit_micros` (the peer has
    /// gone, or is on hold without saying so).
    pub fn expire(&mut self, now_micros: u64, silence_limit_micros: u64) {
        if self
            .noise
            .is_some_and(|n| now_micros.saturating_sub(n.last_input_micros) >= silence_limit_micros)
        {
            self.noise = None;
        }
    }

    pub fn is_active(&self) -> bool {
        self.ringback.is_some() || self.noise.is_some()
    }

    /// When the next frame is due, if anything plays.
    pub fn next_due_micros(&self) -> Option<u64> {
        self.is_active().then_some(self.next_frame_micros)
    }

    /// Writes the frame due at `now_micros` (if one is) into `out` (its first
    /// [`FRAME_SAMPLES`] bytes) and moves the schedule on by one frame.
    pub fn render(&mut self, now_micros: u64, out: &mut [u8]) -> Option<Frame> {
        if !self.is_active() || now_micros < self.next_frame_micros {
            return None;
        }
        let out = out.get_mut(..FRAME_SAMPLES)?;
        let frame = if let Some(player) = self.ringback.as_mut() {
            let target = player.ringback.target;
            player.ringback.plan.render(target.law, player.played, out);
            player.played += FRAME_SAMPLES as u64;
            let marker = std::mem::take(&mut player.marker);
            Frame {
                kind: FrameKind::Ringback,
                payload_type: target.payload_type,
                marker,
            }
        } else {
            let fill = self.noise?;
            render_noise(fill.level, fill.target.law, &mut self.rng, out);
            Frame {
                kind: FrameKind::ComfortNoise,
                payload_type: fill.target.payload_type,
                marker: false,
            }
        };
        self.advance_schedule(now_micros);
        Some(frame)
    }

    /// The frame due at `now_micros` has nowhere to go (no remote or keys yet): the cadence
    /// moves on as if it had played, and the talkspurt's marker waits for the first frame
    /// that is sent.
    pub fn skip(&mut self, now_micros: u64) {
        if !self.is_active() || now_micros < self.next_frame_micros {
            return;
        }
        if let Some(player) = self.ringback.as_mut() {
            player.played += FRAME_SAMPLES as u64;
        }
        self.advance_schedule(now_micros);
    }

    fn advance_schedule(&mut self, now_micros: u64) {
        self.next_frame_micros += FRAME_MICROS;
        if now_micros.saturating_sub(self.next_frame_micros) > MAX_LAG_MICROS {
            self.next_frame_micros = now_micros + FRAME_MICROS;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::inband_dtmf::{decode, tone_share};

    const PCMU: G711Target = G711Target {
        payload_type: 0,
        law: G711::Ulaw,
    };
    const PCMA: G711Target = G711Target {
        payload_type: 8,
        law: G711::Alaw,
    };

    fn rms(law: G711, payload: &[u8]) -> f64 {
        let sum: f64 = payload
            .iter()
            .map(|&b| f64::from(decode(law, b)).powi(2))
            .sum();
        (sum / payload.len() as f64).sqrt()
    }

    /// Frames of a ringback from its start, as the worker renders them 20 ms apart.
    fn frames(ringback: Ringback, count: usize) -> Vec<(Frame, Vec<u8>)> {
        let mut playout = Playout::new(7);
        playout.start_ringback(ringback, 0);
        (0..count as u64)
            .map(|i| {
                let mut out = [0u8; 200];
                let frame = playout.render(i * FRAME_MICROS, &mut out).unwrap();
                assert!(playout.render(i * FRAME_MICROS, &mut out).is_none());
                (frame, out[..FRAME_SAMPLES].to_vec())
            })
            .collect()
    }

    /// Row 38: the ETSI ringback is 425 Hz for 1 s (50 frames), then 4 s of silence, then
    /// again; a Goertzel filter finds the tone in every "on" frame and nothing elsewhere, in
    /// both laws, at about -13 dBm0.
    #[test]
    fn row38_etsi_ringback_is_425_hz_one_second_on_four_off_in_either_law() {
        for target in [PCMU, PCMA] {
            let played = frames(
                Ringback {
                    plan: TonePlan::ETSI,
                    target,
                },
                300,
            );
            for (i, (frame, payload)) in played.iter().enumerate() {
                assert_eq!(frame.kind, FrameKind::Ringback);
                assert_eq!(frame.payload_type, target.payload_type);
                assert_eq!(frame.marker, i == 0, "marker on the first frame only");
                let on = i % 250 < 50;
                let share = tone_share(target.law, payload, 425.0);
                if on {
                    assert!(share > 0.9, "frame {i}: 425 Hz share {share}");
                    assert!(tone_share(target.law, payload, 480.0) < 0.1);
                    let level = 20.0
                        * (rms(target.law, payload) * 2f64.sqrt() / dbm0_amplitude(0.0)).log10();
                    assert!((-13.5..=-12.5).contains(&level), "frame {i}: {level} dBm0");
                } else {
                    assert!(rms(target.law, payload) < 10.0, "frame {i} is silent");
                }
            }
        }
    }

    /// Row 38: the US ringback is 440 + 480 Hz, 2 s on, 4 s off.
    #[test]
    fn row38_us_ringback_is_440_plus_480_hz_two_seconds_on_four_off() {
        let played = frames(
            Ringback {
                plan: TonePlan::US,
                target: PCMU,
            },
            400,
        );
        for (i, (_, payload)) in played.iter().enumerate() {
            if i % 300 >= 100 {
                assert!(rms(G711::Ulaw, payload) < 10.0, "frame {i} is silent");
            }
        }
        // 200 ms windows (5 Hz resolution) of each "on" period: both tones, each with half
        // of the power, and nothing at 425 Hz.
        for start in [0, 40, 300, 380] {
            let window: Vec<u8> = played[start..start + 10]
                .iter()
                .flat_map(|(_, p)| p.iter().copied())
                .collect();
            let low = tone_share(G711::Ulaw, &window, 440.0);
            let high = tone_share(G711::Ulaw, &window, 480.0);
            assert!((0.4..=0.6).contains(&low), "frames {start}..: 440 Hz {low}");
            assert!(
                (0.4..=0.6).contains(&high),
                "frames {start}..: 480 Hz {high}"
            );
            assert!(tone_share(G711::Ulaw, &window, 425.0) < 0.05);
        }
    }

    /// Row 49: RFC 3389 levels become noise of that power (-dBov against the overload
    /// point), white enough that no tone stands out; level 127 is silence.
    #[test]
    fn row49_noise_follows_the_rfc3389_level_in_both_laws() {
        let mut rng = 0x1234_5678_9abc_def1;
        for law in [G711::Ulaw, G711::Alaw] {
            for level in [20u8, 40, 60] {
                let mut out = vec![0u8; 8000];
                render_noise(level, law, &mut rng, &mut out);
                let dbov = 20.0 * (rms(law, &out) / OVERLOAD_RMS).log10();
                assert!(
                    (dbov + f64::from(level)).abs() < 1.5,
                    "{law:?} level {level}: {dbov} dBov"
                );
                for f in [425.0, 1000.0, 2500.0] {
                    assert!(tone_share(law, &out[..160], f) < 0.25, "{f} Hz");
                }
            }
            let mut out = [0u8; 160];
            render_noise(127, law, &mut rng, &mut out);
            assert!(rms(law, &out) < 10.0);
        }
    }

    /// Row 49: after a CN packet the fill starts one frame plus slack later, then every
    /// 20 ms; a late CN update moves it on, speech stops it, and so does a silent source.
    #[test]
    fn row49_noise_fill_is_paced_and_stops_with_speech_or_silence() {
        let mut playout = Playout::new(3);
        let mut out = [0u8; 200];
        assert_eq!(playout.next_due_micros(), None);
        playout.arm_noise(50, PCMA, 1_000_000);
        assert_eq!(playout.next_due_micros(), Some(1_030_000));
        assert!(playout.render(1_029_999, &mut out).is_none());
        let frame = playout.render(1_030_000, &mut out).unwrap();
        assert_eq!(
            frame,
            Frame {
                kind: FrameKind::ComfortNoise,
                payload_type: 8,
                marker: false
            }
        );
        assert_eq!(playout.next_due_micros(), Some(1_050_000));
        // Another CN packet: the fill waits again behind it.
        playout.arm_noise(50, PCMA, 1_045_000);
        assert_eq!(playout.next_due_micros(), Some(1_075_000));
        playout.on_relayed(true);
        assert!(playout.is_active());
        // A worker that stalled does not burst the frames it missed.
        assert!(playout.render(1_500_000, &mut out).is_some());
        assert_eq!(playout.next_due_micros(), Some(1_520_000));
        playout.on_relayed(false);
        assert!(!playout.is_active(), "speech ends the fill");

        playout.arm_noise(50, PCMA, 2_000_000);
        playout.expire(2_500_000, 1_000_000);
        assert!(playout.is_active());
        playout.expire(3_000_000, 1_000_000);
        assert!(
            !playout.is_active(),
            "nothing from the source for the limit"
        );
    }

    /// Row 38 over row 49: a ringback takes precedence over a fill, and stopping it leaves
    /// nothing behind.
    #[test]
    fn row38_ringback_replaces_noise_fill_while_it_plays() {
        let mut playout = Playout::new(5);
        let mut out = [0u8; 200];
        playout.arm_noise(40, PCMU, 0);
        let ringback = Ringback {
            plan: TonePlan::ETSI,
            target: PCMU,
        };
        playout.start_ringback(ringback, 10_000);
        assert!(playout.ringback_playing());
        let frame = playout.render(10_000, &mut out).unwrap();
        assert_eq!(frame.kind, FrameKind::Ringback);
        // The same ringback again keeps its cadence.
        playout.start_ringback(ringback, 20_000);
        assert_eq!(
            playout.render(30_000, &mut out).map(|f| f.marker),
            Some(false)
        );
        playout.stop_ringback();
        playout.stop_noise();
        assert!(!playout.is_active());
        assert!(playout.render(1_000_000, &mut out).is_none());
    }
}
