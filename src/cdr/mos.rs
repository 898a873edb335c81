//! A listening-quality estimate per media leg: the ITU-T G.107 E-model, simplified to what
//! the SBC measures (packet loss and interarrival jitter of what it received) and the codec.
//!
//! ```text
//! R      = 93.2 - Id - Ie_eff                         (G.107 default Ro - Is, no echo terms)
//! delay  = 2 * jitter_ms + 10 ms + codec frame delay  (a jitter buffer of twice the jitter)
//! Id     = 0.024 d + 0.11 (d - 177.3) H(d - 177.3)    (G.107 simplified, d = delay in ms)
//! Ie_eff = Ie + (95 - Ie) * Ppl / (Ppl + Bpl)         (G.107 eq. 7-29, random loss, Ppl in %)
//! MOS    = 1 + 0.035 R + 7e-6 R (R - 60) (100 - R)    for 0 < R < 100; 1 below, 4.5 above
//! ```
//!
//! `Ie` and `Bpl` per codec from ITU-T G.113 Appendix I (G.711 with packet loss concealment:
//! 0 / 25.1; G.729A: 11 / 19; G.722 and Opus/SILK, not in the narrowband tables, use G.711's
//! values, which slightly understates what a wideband codec is worth). Network delay is not
//! measured by the SBC (it sees no round trip on relayed RTP), so this is an estimate of what
//! loss and jitter alone cost: good for comparing calls and trunks, not an absolute score.

/// Equipment impairment `Ie` and packet-loss robustness `Bpl` of a codec (G.113 App. I),
/// and its frame delay in ms.
fn codec_factors(codec: &str) -> (f64, f64, f64) {
    match codec.to_ascii_uppercase().as_str() {
        "G729" | "G729A" => (11.0, 19.0, 25.0),
        "G722" | "OPUS" | "SILK" => (0.0, 25.1, 20.0),
        // PCMU, PCMA and anything unknown: G.711 with PLC.
        _ => (0.0, 25.1, 20.0),
    }
}

/// The E-model R factor for `loss_percent` (0-100) and `jitter_ms` on `codec`.
pub fn r_factor(codec: &str, loss_percent: f64, jitter_ms: f64) -> f64 {
    let (ie, bpl, frame) = codec_factors(codec);
    let ppl = loss_percent.clamp(0.0, 100.0);
    let delay = 2.0 * jitter_ms.max(0.0) + 10.0 + frame;
    let id = 0.024 * delay
        + if delay > 177.3 {
            0.11 * (delay - 177.3)
        } else {
            0.0
        };
    let ie_eff = ie + (95.0 - ie) * ppl / (ppl + bpl);
    93.2 - id - ie_eff
}

/// The mean opinion score (1.0-4.5) of an R factor (G.107 Annex B).
pub fn mos_of_r(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)
    }
}

/// The MOS estimate, rounded to two decimals.
pub fn mos(codec: &str, loss_percent: f64, jitter_ms: f64) -> f64 {
    (mos_of_r(r_factor(codec, loss_percent, jitter_ms)) * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_g711_leg_scores_what_the_emodel_gives_g711() {
        // R = 93.2 - 0.024 * 30 = 92.48 -> MOS 4.4 (G.711's well-known ceiling).
        let score = mos("PCMU", 0.0, 0.0);
        assert!((4.39..=4.42).contains(&score), "{score}");
    }

    #[test]
    fn loss_lowers_the_score_as_g107_eq_7_29_says() {
        // 5 % random loss on G.711 with PLC: Ie_eff = 95 * 5 / 30.1 = 15.78, R = 76.7.
        let r = r_factor("PCMA", 5.0, 0.0);
        assert!((r - 76.70).abs() < 0.05, "{r}");
        let score = mos("PCMA", 5.0, 0.0);
        assert!((3.85..=3.95).contains(&score), "{score}");
        assert!(mos("PCMA", 20.0, 0.0) < score);
    }

    #[test]
    fn jitter_beyond_the_delay_knee_costs_more() {
        let small = r_factor("PCMU", 0.0, 20.0);
        let large = r_factor("PCMU", 0.0, 100.0);
        // 2*100+30 = 230 ms is past 177.3 ms: the second Id term applies.
        assert!(small - large > 0.024 * 160.0, "{small} {large}");
    }

    #[test]
    fn g729_starts_lower_and_scores_stay_in_range() {
        assert!(mos("G729", 0.0, 0.0) < mos("PCMU", 0.0, 0.0));
        assert_eq!(mos("PCMU", 100.0, 10_000.0), 1.0);
        assert_eq!(mos_of_r(120.0), 4.5);
        assert!(mos("PCMU", f64::NAN.max(0.0), 0.0) > 4.0);
    }
}
