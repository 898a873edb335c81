//! In-band DTMF detection for PSTN legs: Teams Direct Routing does not accept DTMF as audio
//! tones (Teams Direct Routing checklist, row 48), so digits a carrier sends in-band have to be
//! recognised here and re-sent as RFC 4733 telephone-events.
//!
//! The detector follows ITU-T Q.23 (the 4 x 4 frequency grid) and Q.24 (acceptance limits) and
//! is built for the media hot path: it is stored per media leg, holds only fixed-size state,
//! never allocates or locks, and costs O(samples) per packet (one table look-up and eight
//! Goertzel multiply-adds per sample, one classification per 205-sample block).
//!
//! Shape:
//! * G.711 bytes are decoded through 256-entry tables built at compile time.
//! * Eight Goertzel filters, tuned to the exact DTMF frequencies, run over blocks of
//!   `BLOCK` = 205 samples (25.6 ms). 205 is the classic choice: it separates the rows,
//!   which are only 73..89 Hz apart, while staying short enough for two blocks to fit in a
//!   digit of Q.24 length. Packets may split blocks anywhere; the filter state carries over.
//! * Each block is classified on its own (see [`ToneDetector`] for the tests applied), then a
//!   debouncer turns the per-block verdicts into confirmed digits.

/// Which G.711 law the samples are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum G711 {
    Ulaw,
    Alaw,
}

/// Samples per analysis block: 25.6 ms at 8 kHz, bin spacing 39 Hz.
const BLOCK: u16 = 205;
/// The first `HALF` samples of a block form its first half for the coverage test.
const HALF: u16 = BLOCK / 2;
const BLOCK_F: f32 = BLOCK as f32;

/// `2 cos(2 pi f / 8000)` for 697, 770, 852, 941 Hz (rows) then 1209, 1336, 1477, 1633 Hz
/// (columns). Literal rather than computed because `cos` is not `const`; a unit test checks
/// them against the formula.
const COEFFS: [f32; 8] = [
    1.707_737_8,
    1.645_281_1,
    1.568_687,
    1.478_204_6,
    1.164_104,
    0.996_370_2,
    0.798_618_4,
    0.568_532_7,
];

/// RFC 4733 event codes by [row][column] (0-9 digits, 10 `*`, 11 `#`, 12-15 A-D).
const KEYPAD: [[u8; 4]; 4] = [[1, 2, 3, 12], [4, 5, 6, 13], [7, 8, 9, 14], [10, 0, 11, 15]];

/// Q.23 row frequencies (Hz), the rows of [`KEYPAD`].
const ROW_HZ: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// Q.23 column frequencies (Hz), the columns of [`KEYPAD`].
const COLUMN_HZ: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];

/// Row and column frequencies (Hz) of an RFC 4733 DTMF event code (0-15); `None` for the
/// other events (flash, tones).
pub fn frequencies(code: u8) -> Option<(f32, f32)> {
    KEYPAD.iter().enumerate().find_map(|(row, keys)| {
        let column = keys.iter().position(|&k| k == code)?;
        Some((*ROW_HZ.get(row)?, *COLUMN_HZ.get(column)?))
    })
}

/// Peak amplitude, on the 16-bit linear scale of [`decode`], of a per-tone level of about
/// -34 dBm0 (0 dBm0 is a sine of peak ~22,700). The floor sits well under the -25 dBm0 that
/// must still be detected because a tone off-frequency by 1.5 % loses up to ~8 dB in the
/// 1633 Hz filter, and a partially covered first block loses a few dB more; anything quieter
/// than this is line noise, never signalling.
const FLOOR_AMPLITUDE: f32 = 450.0;
/// Goertzel power of an on-frequency sine of [`FLOOR_AMPLITUDE`] filling a block:
/// `(A N / 2)^2`.
const ENERGY_FLOOR: f32 = (FLOOR_AMPLITUDE * BLOCK_F / 2.0) * (FLOOR_AMPLITUDE * BLOCK_F / 2.0);
/// Normal twist (row louder than column) of at most 8 dB, as a power ratio. Lines attenuate
/// high frequencies, hence the wider allowance in this direction (Q.24).
const NORMAL_TWIST: f32 = 6.31;
/// Reverse twist (column louder than row) of at most 4 dB, as a power ratio.
const REVERSE_TWIST: f32 = 2.51;
/// Each peak must beat every other filter of its group by 10 dB. Real DTMF, even 1.5 % + 2 Hz
/// off-frequency, keeps its nearest neighbour more than 12 dB down; speech and music rarely
/// put a single clean line in one group.
const GROUP_MARGIN: f32 = 10.0;
/// Minimum share of the block's energy found in the two peaks: `2 (R + C) / (N E)`, which is
/// 1.0 for a clean on-frequency dual tone and falls with the square-ish of the frequency
/// error. Off by 1.5 % (+2 Hz) the worst digit still scores ~0.35; off by 3.5 % (Q.24's
/// must-reject limit) the best scores ~0.13; broadband noise and speech score far less.
const MIN_SHARE: f32 = 0.2;
/// The quieter half of a block must hold at least this fraction of the louder half's energy,
/// i.e. the tone covers at least ~62 % of the block. This is what keeps short bursts out:
/// a burst straddling a block boundary would otherwise pass in both blocks and confirm.
/// With it, nothing under ~32 ms can confirm, and anything from ~60 ms on always does,
/// whatever its alignment with the blocks.
const HALF_BALANCE: f32 = 0.25;
/// Consecutive agreeing blocks that confirm a digit (2 blocks = 51 ms; Q.24's shortest
/// digit is 40 ms).
const CONFIRM_BLOCKS: u8 = 2;
/// Consecutive blocks without the digit that end it. 2 rather than 1 so a single damaged
/// block (a lost packet, a burst of noise) does not split one key press into two.
const END_BLOCKS: u8 = 2;

/// In-band DTMF detector for one direction of one media leg.
///
/// A block is accepted as a digit when all of these hold:
/// * the strongest row and strongest column each exceed an absolute floor (~-34 dBm0),
///   so silence and low noise never detect;
/// * twist is within Q.24 limits: the column at most 8 dB below the row, at most 4 dB above;
/// * each peak is 10 dB above the other frequencies of its group;
/// * the two peaks hold at least 20 % of the block energy (against `N * sum of squares`),
///   which rejects speech, music, noise and tones too far off-frequency;
/// * the energy is spread over both halves of the block (coverage test, see
///   `HALF_BALANCE`), so a short burst cannot fill two blocks' worth of verdicts.
///
/// A digit is confirmed after `CONFIRM_BLOCKS` (2) consecutive agreeing blocks and ends after
/// `END_BLOCKS` (2) consecutive blocks without it; a different digit taking over directly needs
/// its own confirming blocks.
#[derive(Debug, Clone)]
pub struct ToneDetector {
    law: G711,
    /// Goertzel state `s[n-1]` and `s[n-2]` per frequency, carried across payloads.
    s1: [f32; 8],
    s2: [f32; 8],
    /// Sum of squares of the current block, and of its first half.
    energy: f32,
    first_half_energy: f32,
    /// Samples of the current block consumed so far.
    filled: u16,
    /// Verdict of the previous block and how many blocks in a row gave it.
    last_verdict: Option<u8>,
    run: u8,
    /// Digit currently reported, and blocks in a row that did not contain it.
    confirmed: Option<u8>,
    misses: u8,
}

impl ToneDetector {
    pub fn new(law: G711) -> Self {
        Self {
            law,
            s1: [0.0; 8],
            s2: [0.0; 8],
            energy: 0.0,
            first_half_energy: 0.0,
            filled: 0,
            last_verdict: None,
            run: 0,
            confirmed: None,
            misses: 0,
        }
    }

    /// Feeds one RTP packet's payload (any length, normally 160 bytes = 20 ms; payloads may
    /// split analysis blocks anywhere — the running Goertzel state is kept across calls).
    /// Returns the RFC 4733 event code (0-9 for digits '0'-'9', 10 for '*', 11 for '#', 12-15
    /// for A-D) of the digit that is sounding as of the end of this payload once it is
    /// confirmed, or None when no digit is (confirmed) present.
    pub fn feed(&mut self, payload: &[u8]) -> Option<u8> {
        let table = table(self.law);
        let mut rest = payload;
        while !rest.is_empty() {
            // Runs that stay inside one half of a block go through a branch-free inner loop
            // over local copies of the filter state (the per-sample cost of the hot path).
            let boundary = if self.filled < HALF { HALF } else { BLOCK };
            let take = usize::from(boundary - self.filled).min(rest.len());
            let (run, tail) = rest.split_at(take);
            rest = tail;
            let (mut s1, mut s2) = (self.s1, self.s2);
            let mut energy = 0.0f32;
            for &byte in run {
                let x = f32::from(table[usize::from(byte)]);
                for i in 0..8 {
                    goertzel_step(x, COEFFS[i], &mut s1[i], &mut s2[i]);
                }
                energy += x * x;
            }
            (self.s1, self.s2) = (s1, s2);
            if self.filled < HALF {
                self.first_half_energy += energy;
            }
            self.energy += energy;
            // `take` is at most BLOCK (205), so it fits.
            self.filled += take as u16;
            if self.filled == BLOCK {
                let verdict = self.classify();
                self.clear_block();
                self.debounce(verdict);
            }
        }
        self.confirmed
    }

    /// Forget everything (new stream / codec change). The law is kept.
    pub fn reset(&mut self) {
        *self = Self::new(self.law);
    }

    fn clear_block(&mut self) {
        self.s1 = [0.0; 8];
        self.s2 = [0.0; 8];
        self.energy = 0.0;
        self.first_half_energy = 0.0;
        self.filled = 0;
    }

    /// The digit the just-completed block holds, if it passes every test.
    fn classify(&self) -> Option<u8> {
        let mut power = [0.0f32; 8];
        for (((p, c), s1), s2) in power.iter_mut().zip(COEFFS).zip(self.s1).zip(self.s2) {
            *p = goertzel_power(c, s1, s2);
        }
        let (rows, cols) = power.split_at(4);
        let (row, row_power) = peak(rows)?;
        let (col, col_power) = peak(cols)?;

        if row_power < ENERGY_FLOOR || col_power < ENERGY_FLOOR {
            return None;
        }
        if row_power > col_power * NORMAL_TWIST || col_power > row_power * REVERSE_TWIST {
            return None;
        }
        if !dominates(rows, row) || !dominates(cols, col) {
            return None;
        }
        // For a clean dual tone each Goertzel power is (A N / 2)^2 and the energy is
        // N A^2 / 2 per tone, so this share is 1.0; factor 2 makes it a fraction.
        if 2.0 * (row_power + col_power) < MIN_SHARE * BLOCK_F * self.energy {
            return None;
        }
        let second_half_energy = self.energy - self.first_half_energy;
        let (quiet, loud) = if self.first_half_energy < second_half_energy {
            (self.first_half_energy, second_half_energy)
        } else {
            (second_half_energy, self.first_half_energy)
        };
        if quiet < HALF_BALANCE * loud {
            return None;
        }
        KEYPAD.get(row)?.get(col).copied()
    }

    fn debounce(&mut self, verdict: Option<u8>) {
        if verdict.is_some() && verdict == self.last_verdict {
            self.run = self.run.saturating_add(1);
        } else {
            self.last_verdict = verdict;
            self.run = u8::from(verdict.is_some());
        }
        match verdict {
            Some(_) if verdict == self.confirmed => self.misses = 0,
            Some(_) if self.run >= CONFIRM_BLOCKS => {
                self.confirmed = verdict;
                self.misses = 0;
            }
            _ => {
                if self.confirmed.is_some() {
                    self.misses = self.misses.saturating_add(1);
                    if self.misses >= END_BLOCKS {
                        self.confirmed = None;
                        self.misses = 0;
                    }
                }
            }
        }
    }
}

/// Index and power of the strongest filter of a group.
fn peak(group: &[f32]) -> Option<(usize, f32)> {
    group
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// Whether filter `index` beats every other filter of its group by [`GROUP_MARGIN`].
fn dominates(group: &[f32], index: usize) -> bool {
    let Some(&top) = group.get(index) else {
        return false;
    };
    group
        .iter()
        .enumerate()
        .all(|(i, &p)| i == index || p * GROUP_MARGIN <= top)
}

/// Peak of a 0 dBm0 sine on the 16-bit linear scale of [`decode`] (μ-law +3.17 dBm0 = 8159
/// << 2).
const DBM0_PEAK: f64 = 22_700.0;

/// Peak amplitude, on the 16-bit linear scale of [`decode`], of a sine at `dbm0`.
pub fn dbm0_amplitude(dbm0: f64) -> f64 {
    DBM0_PEAK * 10f64.powf(dbm0 / 20.0)
}

/// Sample `n` (at 8 kHz) of a unit sine of `frequency_hz` starting at phase 0. Computed from
/// the sample index in f64 and reduced to one turn, so long tones stay exact and frames
/// written one by one join without a click.
pub fn sine(frequency_hz: f32, n: f64) -> f64 {
    let turns = (f64::from(frequency_hz) * n / 8000.0).fract();
    (std::f64::consts::TAU * turns).sin()
}

/// One Goertzel step of the filter with coefficient `coeff` (`2 cos(2 pi f / rate)`).
#[inline(always)]
fn goertzel_step(x: f32, coeff: f32, s1: &mut f32, s2: &mut f32) {
    let s = x + coeff * *s1 - *s2;
    *s2 = *s1;
    *s1 = s;
}

/// |X(f)|^2 of a block from the filter's final state, without the complex step.
fn goertzel_power(coeff: f32, s1: f32, s2: f32) -> f32 {
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// Share of a G.711 payload's energy found at `frequency_hz` by one Goertzel filter over the
/// whole payload: about 1.0 for a clean sine on that frequency (filling the payload), near 0
/// for silence, noise or other frequencies. For checks of generated tones (the DTMF detector
/// runs its own blocks).
pub fn tone_share(law: G711, payload: &[u8], frequency_hz: f32) -> f32 {
    let table = table(law);
    let coeff = 2.0 * (std::f32::consts::TAU * frequency_hz / 8000.0).cos();
    let (mut s1, mut s2, mut energy) = (0.0f32, 0.0f32, 0.0f32);
    for &byte in payload {
        let x = f32::from(linear(table, byte));
        goertzel_step(x, coeff, &mut s1, &mut s2);
        energy += x * x;
    }
    if energy <= 0.0 {
        return 0.0;
    }
    // A sine of amplitude A over N samples: power (A N / 2)^2, energy N A^2 / 2.
    2.0 * goertzel_power(coeff, s1, s2) / (payload.len() as f32 * energy)
}

/// G.711 decoding, public for tests elsewhere: one byte to a linear 16-bit sample.
pub fn decode(law: G711, byte: u8) -> i16 {
    linear(table(law), byte)
}

/// A table has an entry for every byte value, so the lookup always hits (and compiles to a
/// plain load).
fn linear(table: &[i16; 256], byte: u8) -> i16 {
    table.get(usize::from(byte)).copied().unwrap_or(0)
}

/// G.711 encoding of a linear sample (used by tests here and elsewhere to synthesize tones).
/// Truncating encoder as in the reference implementation (Sun `g711.c`).
pub fn encode(law: G711, sample: i16) -> u8 {
    match law {
        G711::Ulaw => ulaw_encode(sample),
        G711::Alaw => alaw_encode(sample),
    }
}

fn table(law: G711) -> &'static [i16; 256] {
    match law {
        G711::Ulaw => &ULAW_TABLE,
        G711::Alaw => &ALAW_TABLE,
    }
}

static ULAW_TABLE: [i16; 256] = build_table(G711::Ulaw);
static ALAW_TABLE: [i16; 256] = build_table(G711::Alaw);

const fn build_table(law: G711) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match law {
            G711::Ulaw => ulaw_decode(i as u8),
            G711::Alaw => alaw_decode(i as u8),
        };
        i += 1;
    }
    t
}

/// μ-law: all bits are transmitted inverted; the magnitude is `((mantissa << 3) + 0x84) <<
/// exponent` minus the 0x84 bias, which puts the decoded value mid-way in its step.
const fn ulaw_decode(byte: u8) -> i16 {
    let u = !byte;
    let exponent = (u >> 4) & 0x07;
    let magnitude = ((((u & 0x0F) as i32) << 3) + 0x84) << exponent;
    let value = if u & 0x80 != 0 {
        0x84 - magnitude
    } else {
        magnitude - 0x84
    };
    value as i16
}

/// A-law: the even bits are transmitted inverted (XOR 0x55); sign bit set means positive.
/// Decoded values are 13-bit steps scaled to 16 bits, mid-way in their step.
const fn alaw_decode(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let segment = (a >> 4) & 0x07;
    let mantissa = ((a & 0x0F) as i32) << 4;
    let magnitude = match segment {
        0 => mantissa + 8,
        1 => mantissa + 0x108,
        _ => (mantissa + 0x108) << (segment - 1),
    };
    let value = if a & 0x80 != 0 { magnitude } else { -magnitude };
    value as i16
}

fn ulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let mut x = i32::from(sample);
    let mask: u8 = if x < 0 {
        x = -x;
        0x7F
    } else {
        0xFF
    };
    x = x.min(CLIP) + BIAS;
    // Segment = how far the biased magnitude reaches above 0xFF, one bit per segment.
    let mut segment: u8 = 0;
    while segment < 7 && x >= (0x100 << segment) {
        segment += 1;
    }
    let mantissa = ((x >> (segment + 3)) & 0x0F) as u8;
    ((segment << 4) | mantissa) ^ mask
}

fn alaw_encode(sample: i16) -> u8 {
    // A-law works on 13 bits; negative values map to the magnitude one below so that
    // -8..-1 and 0..7 share the smallest codes symmetrically.
    let mut x = i32::from(sample) >> 3;
    let mask: u8 = if x >= 0 {
        0xD5
    } else {
        x = -x - 1;
        0x55
    };
    let mut segment: u8 = 0;
    while segment < 8 && x > (0x20 << segment) - 1 {
        segment += 1;
    }
    if segment >= 8 {
        return 0x7F ^ mask;
    }
    let shift = if segment < 2 { 1 } else { segment };
    let mantissa = ((x >> shift) & 0x0F) as u8;
    ((segment << 4) | mantissa) ^ mask
}

#[cfg(test)]
mod tests {
    //! Teams Direct Routing checklist row 48: in-band DTMF from the PSTN must be converted,
    //! because Teams does not detect tones in the audio.

    use super::*;

    const RATE: f64 = 8000.0;
    const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
    const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    const LAWS: [G711; 2] = [G711::Ulaw, G711::Alaw];

    fn amplitude(dbm0: f64) -> f64 {
        dbm0_amplitude(dbm0)
    }

    /// Row and column frequency of an RFC 4733 event code.
    fn freqs(code: u8) -> (f64, f64) {
        let (row, column) = frequencies(code).unwrap_or_else(|| panic!("no such code {code}"));
        (f64::from(row), f64::from(column))
    }

    /// Linear signal under construction; tones keep their phase from the absolute sample
    /// index so a dropout resumes the same sine.
    #[derive(Default)]
    struct Signal(Vec<f64>);

    impl Signal {
        fn tones(&mut self, parts: &[(f64, f64)], ms: u32) -> &mut Self {
            let start = self.0.len();
            for n in start..start + (ms * 8) as usize {
                let t = n as f64 / RATE;
                let v = parts
                    .iter()
                    .map(|&(f, a)| a * (2.0 * std::f64::consts::PI * f * t).sin())
                    .sum();
                self.0.push(v);
            }
            self
        }
        fn digit(&mut self, code: u8, dbm0: f64, ms: u32) -> &mut Self {
            let (r, c) = freqs(code);
            self.tones(&[(r, amplitude(dbm0)), (c, amplitude(dbm0))], ms)
        }
        fn silence(&mut self, ms: u32) -> &mut Self {
            self.0.extend(std::iter::repeat_n(0.0, (ms * 8) as usize));
            self
        }
        fn encode(&self, law: G711) -> Vec<u8> {
            self.0
                .iter()
                .map(|&v| encode(law, v.round().clamp(-32768.0, 32767.0) as i16))
                .collect()
        }
    }

    /// Feeds `bytes` in `chunk`-sized payloads; returns the digits in order of detection
    /// (a run of identical results counts once).
    fn runs(law: G711, bytes: &[u8], chunk: usize) -> Vec<u8> {
        let mut det = ToneDetector::new(law);
        let mut out = Vec::new();
        let mut previous = None;
        for payload in bytes.chunks(chunk) {
            let now = det.feed(payload);
            if let Some(d) = now {
                if previous != now {
                    out.push(d);
                }
            }
            previous = now;
        }
        out
    }

    fn detect(law: G711, signal: &Signal) -> Vec<u8> {
        runs(law, &signal.encode(law), 160)
    }

    /// Lead-in silences (in samples) that walk a signal across every alignment with the
    /// 205-sample blocks, 8 samples apart.
    fn lead_ins() -> impl Iterator<Item = usize> {
        (0..usize::from(BLOCK)).step_by(8)
    }

    fn with_lead_in(samples: usize) -> Signal {
        Signal(vec![0.0; samples])
    }

    #[test]
    fn row48_coefficients_match_frequencies() {
        for (c, f) in COEFFS.iter().zip(ROWS.iter().chain(COLS.iter())) {
            let exact = 2.0 * (2.0 * std::f64::consts::PI * f / RATE).cos();
            assert!((f64::from(*c) - exact).abs() < 1e-6, "{f} Hz");
        }
    }

    #[test]
    fn row48_state_is_small_and_fixed() {
        assert!(std::mem::size_of::<ToneDetector>() <= 96);
    }

    #[test]
    fn row48_g711_known_values() {
        assert_eq!(decode(G711::Ulaw, 0xFF), 0);
        assert_eq!(decode(G711::Ulaw, 0x7F), 0);
        assert_eq!(decode(G711::Ulaw, 0x00), -32124);
        assert_eq!(decode(G711::Ulaw, 0x80), 32124);
        assert_eq!(decode(G711::Alaw, 0xD5), 8);
        assert_eq!(decode(G711::Alaw, 0x55), -8);
        assert_eq!(decode(G711::Alaw, 0xAA), 32256);
        assert_eq!(decode(G711::Alaw, 0x2A), -32256);
        assert_eq!(encode(G711::Ulaw, 0), 0xFF);
        assert_eq!(encode(G711::Ulaw, i16::MIN), 0x00);
        assert_eq!(encode(G711::Ulaw, i16::MAX), 0x80);
        assert_eq!(encode(G711::Alaw, 0), 0xD5);
        assert_eq!(encode(G711::Alaw, -1), 0x55);
        assert_eq!(encode(G711::Alaw, i16::MAX), 0xAA);
        assert_eq!(encode(G711::Alaw, i16::MIN), 0x2A);
    }

    #[test]
    fn row48_g711_round_trip_within_quantisation() {
        for law in LAWS {
            // Every code word survives decode then encode (μ-law's negative zero aside).
            for byte in 0..=255u8 {
                if law == G711::Ulaw && byte == 0x7F {
                    continue;
                }
                assert_eq!(encode(law, decode(law, byte)), byte, "{law:?} {byte:#04x}");
            }
            // Every sample inside μ-law's range comes back within half a quantisation step,
            // which is at most 1/32 of the magnitude (plus the fixed smallest steps).
            for x in -32124..=32124i32 {
                let sample = i16::try_from(x).unwrap();
                let back = i32::from(decode(law, encode(law, sample)));
                assert!(
                    (back - x).abs() <= x.abs() / 32 + 8,
                    "{law:?} {x} -> {back}"
                );
            }
        }
    }

    #[test]
    fn row48_all_16_digits_detected_in_both_laws() {
        let mut codes: Vec<u8> = (0..16).collect();
        // The same key twice must be two presses, not one long one.
        codes.extend([5, 5]);
        for law in LAWS {
            let mut s = Signal::default();
            for &code in &codes {
                s.digit(code, -7.0, 100).silence(100);
            }
            assert_eq!(detect(law, &s), codes, "{law:?}");
        }
    }

    #[test]
    fn row48_detection_ends_after_the_tone() {
        for law in LAWS {
            let mut s = Signal::default();
            s.digit(7, -7.0, 100);
            let mut det = ToneDetector::new(law);
            let bytes = s.encode(law);
            let last = bytes.chunks(160).map(|p| det.feed(p)).last().flatten();
            assert_eq!(last, Some(7));
            let silence = [encode(law, 0); 160];
            assert_eq!(det.feed(&silence), Some(7), "one missed block is tolerated");
            assert_eq!(det.feed(&silence), Some(7));
            assert_eq!(det.feed(&silence), None, "ended within ~60 ms of silence");
        }
    }

    #[test]
    fn row48_levels() {
        for law in LAWS {
            for code in 0..16 {
                let mut loud = Signal::default();
                loud.digit(code, -3.0, 100).silence(100);
                assert_eq!(detect(law, &loud), [code], "{law:?} -3 dBm0 {code}");
                let mut low = Signal::default();
                low.digit(code, -25.0, 100).silence(100);
                assert_eq!(detect(law, &low), [code], "{law:?} -25 dBm0 {code}");
                let mut faint = Signal::default();
                faint.digit(code, -40.0, 100).silence(100);
                assert!(detect(law, &faint).is_empty(), "{law:?} -40 dBm0 {code}");
            }
            let silence = vec![encode(law, 0); 8000];
            assert!(runs(law, &silence, 160).is_empty());
        }
    }

    #[test]
    fn row48_short_bursts_not_confirmed_60ms_is() {
        for law in LAWS {
            for code in 0..16 {
                for lead in lead_ins() {
                    for ms in [20, 30] {
                        let mut s = with_lead_in(lead);
                        s.digit(code, -7.0, ms).silence(100);
                        assert!(detect(law, &s).is_empty(), "{law:?} {code} {ms} ms +{lead}");
                    }
                    let mut s = with_lead_in(lead);
                    s.digit(code, -7.0, 60).silence(100);
                    assert_eq!(detect(law, &s), [code], "{law:?} {code} 60 ms +{lead}");
                }
            }
        }
    }

    #[test]
    fn row48_single_frequency_never_detects() {
        for law in LAWS {
            for f in ROWS.iter().chain(COLS.iter()).chain([&1000.0, &1004.0]) {
                for dbm0 in [-20.0, -7.0, 0.0, 3.0] {
                    let mut s = Signal::default();
                    s.tones(&[(*f, amplitude(dbm0))], 500);
                    assert!(detect(law, &s).is_empty(), "{law:?} {f} Hz {dbm0} dBm0");
                }
            }
        }
    }

    #[test]
    fn row48_noise_and_speech_like_mix_never_detect() {
        for law in LAWS {
            for peak in [1000.0, 8000.0, 30000.0] {
                let mut state: u32 = 12345;
                let noise: Vec<f64> = (0..16000)
                    .map(|_| {
                        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        (f64::from(state >> 16) / 32768.0 - 1.0) * peak
                    })
                    .collect();
                assert!(
                    detect(law, &Signal(noise)).is_empty(),
                    "{law:?} noise {peak}"
                );
            }
            for dbm0 in [-20.0, -10.0] {
                let a = amplitude(dbm0);
                let mut s = Signal::default();
                s.tones(&[(300.0, a), (500.0, a), (1100.0, a), (2300.0, a)], 2000);
                assert!(detect(law, &s).is_empty(), "{law:?} mix {dbm0} dBm0");
            }
        }
    }

    #[test]
    fn row48_twist_limits() {
        let pair = |code: u8, row_db: f64, col_db: f64| {
            let (r, c) = freqs(code);
            let mut s = Signal::default();
            s.tones(&[(r, amplitude(row_db)), (c, amplitude(col_db))], 100)
                .silence(100);
            s
        };
        for law in LAWS {
            for code in 0..16 {
                assert_eq!(
                    detect(law, &pair(code, -10.0, -10.0)),
                    [code],
                    "{law:?} equal"
                );
                assert_eq!(
                    detect(law, &pair(code, -7.0, -13.0)),
                    [code],
                    "{law:?} normal 6 dB"
                );
                assert_eq!(
                    detect(law, &pair(code, -11.0, -8.0)),
                    [code],
                    "{law:?} reverse 3 dB"
                );
                assert!(
                    detect(law, &pair(code, -5.0, -15.0)).is_empty(),
                    "{law:?} normal 10 dB"
                );
                assert!(
                    detect(law, &pair(code, -13.0, -7.0)).is_empty(),
                    "{law:?} reverse 6 dB"
                );
            }
        }
    }

    #[test]
    fn row48_frequency_tolerance() {
        // Q.24: operate within 1.5 % + 2 Hz, never operate beyond 3.5 %.
        let detuned = |code: u8, factor: f64, offset: f64, lead: usize| {
            let (r, c) = freqs(code);
            let a = amplitude(-7.0);
            let mut s = with_lead_in(lead);
            s.tones(&[(r * factor + offset, a), (c * factor + offset, a)], 100)
                .silence(100);
            s
        };
        for law in LAWS {
            for code in 0..16 {
                for lead in lead_ins().step_by(4) {
                    for (factor, offset) in [(1.015, 2.0), (0.985, -2.0)] {
                        let s = detuned(code, factor, offset, lead);
                        assert_eq!(detect(law, &s), [code], "{law:?} {code} x{factor} +{lead}");
                    }
                    for factor in [1.035, 0.965, 1.04, 0.96, 1.06, 0.94] {
                        let s = detuned(code, factor, 0.0, lead);
                        assert!(
                            detect(law, &s).is_empty(),
                            "{law:?} {code} x{factor} +{lead}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn row48_short_dropout_is_one_detection() {
        for law in LAWS {
            for code in [1, 9, 10, 15] {
                for lead in lead_ins() {
                    for before in [40, 60, 80] {
                        let mut s = with_lead_in(lead);
                        s.digit(code, -7.0, before)
                            .silence(10)
                            .digit(code, -7.0, 80)
                            .silence(100);
                        assert_eq!(detect(law, &s), [code], "{law:?} {code} +{lead} {before}");
                    }
                }
            }
        }
    }

    #[test]
    fn row48_back_to_back_digits() {
        for law in LAWS {
            for (a, b) in [(1, 2), (5, 9), (11, 10), (15, 0), (4, 4)] {
                for lead in lead_ins() {
                    let mut s = with_lead_in(lead);
                    s.digit(a, -7.0, 80)
                        .silence(50)
                        .digit(b, -7.0, 80)
                        .silence(100);
                    assert_eq!(detect(law, &s), [a, b], "{law:?} {a} {b} gap +{lead}");
                    if a != b {
                        // A different digit directly replacing one is still reported.
                        let mut s = with_lead_in(lead);
                        s.digit(a, -7.0, 100).digit(b, -7.0, 100).silence(100);
                        assert_eq!(detect(law, &s), [a, b], "{law:?} {a} {b} direct +{lead}");
                    }
                }
            }
        }
    }

    #[test]
    fn row48_payload_size_does_not_matter() {
        let mut s = with_lead_in(77);
        s.digit(3, -7.0, 100)
            .silence(60)
            .digit(12, -12.0, 70)
            .silence(10)
            .digit(12, -12.0, 70)
            .digit(8, -7.0, 90)
            .silence(100);
        for law in LAWS {
            let bytes = s.encode(law);
            let expected = runs(law, &bytes, 160);
            assert_eq!(expected, [3, 12, 8]);
            for chunk in [80, 37, 1, 161] {
                assert_eq!(runs(law, &bytes, chunk), expected, "{law:?} {chunk}");
            }
            // Stronger: after any split point the answer is what one unsplit payload of the
            // same prefix gives.
            for chunk in [37, 80] {
                let mut det = ToneDetector::new(law);
                let mut end = 0;
                for payload in bytes.chunks(chunk) {
                    end += payload.len();
                    let got = det.feed(payload);
                    let whole = ToneDetector::new(law).feed(&bytes[..end]);
                    assert_eq!(got, whole, "{law:?} {chunk} at {end}");
                }
            }
        }
    }

    #[test]
    fn row48_reset_forgets_everything() {
        let law = G711::Alaw;
        let mut s = Signal::default();
        s.digit(6, -7.0, 100);
        let bytes = s.encode(law);
        let mut det = ToneDetector::new(law);
        assert_eq!(det.feed(&bytes), Some(6));
        // Leave a partial block behind, then reset: nothing of it may leak into the next.
        assert_eq!(det.feed(&bytes[..150]), Some(6));
        det.reset();
        let silence = [encode(law, 0); 160];
        assert_eq!(det.feed(&silence), None);
        let mut fresh = ToneDetector::new(law);
        fresh.feed(&silence);
        assert_eq!(format!("{det:?}"), format!("{fresh:?}"));
    }
}
