//! Tenant number blocks: single E.164 numbers, ranges of equal length, and prefixes.
//! Parsed once at load so overlaps between tenants are found before any call is routed.

use std::fmt;

/// E.164 allows at most 15 digits after the `+`.
const MAX_DIGITS: usize = 15;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumberBlock {
    /// One number, digits without `+`.
    Single(String),
    /// Every number of the same length between `first` and `last` inclusive (digits, no `+`).
    Range { first: String, last: String },
    /// Every number (of any valid length) starting with these digits.
    Prefix(String),
}

impl NumberBlock {
    pub fn parse(text: &str) -> Result<NumberBlock, String> {
        let text = text.trim();
        if let Some(prefix) = text.strip_suffix('*') {
            let digits = e164_digits(prefix, true)?;
            return Ok(NumberBlock::Prefix(digits));
        }
        if let Some((first, last)) = text.split_once('-') {
            let first = e164_digits(first.trim(), false)?;
            let last = e164_digits(last.trim(), false)?;
            if first.len() != last.len() {
                return Err(format!(
                    "range ends have different lengths ({} and {} digits)",
                    first.len(),
                    last.len()
                ));
            }
            if first > last {
                return Err("range start is greater than its end".to_string());
            }
            return Ok(NumberBlock::Range { first, last });
        }
        Ok(NumberBlock::Single(e164_digits(text, false)?))
    }

    /// Does `number` (`+` optional) belong to this block?
    pub fn contains(&self, number: &str) -> bool {
        let digits = number.strip_prefix('+').unwrap_or(number);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        match self {
            NumberBlock::Single(n) => n == digits,
            NumberBlock::Range { first, last } => {
                digits.len() == first.len() && digits >= first.as_str() && digits <= last.as_str()
            }
            NumberBlock::Prefix(p) => digits.starts_with(p.as_str()),
        }
    }

    /// Numbers as (length, lowest, highest) intervals, comparable as equal-length digit strings.
    fn intervals(&self) -> Vec<(usize, u64, u64)> {
        match self {
            NumberBlock::Single(n) => value(n).map(|v| vec![(n.len(), v, v)]).unwrap_or_default(),
            NumberBlock::Range { first, last } => match (value(first), value(last)) {
                (Some(a), Some(b)) => vec![(first.len(), a, b)],
                _ => Vec::new(),
            },
            NumberBlock::Prefix(p) => (p.len().max(1)..=MAX_DIGITS)
                .filter_map(|len| {
                    let pad = len - p.len();
                    let low = format!("{p}{}", "0".repeat(pad));
                    let high = format!("{p}{}", "9".repeat(pad));
                    Some((len, value(&low)?, value(&high)?))
                })
                .collect(),
        }
    }

    #[cfg(test)]
    pub fn overlaps(&self, other: &NumberBlock) -> bool {
        let mine = self.intervals();
        let theirs = other.intervals();
        mine.iter().any(|(len_a, lo_a, hi_a)| {
            theirs
                .iter()
                .any(|(len_b, lo_b, hi_b)| len_a == len_b && lo_a <= hi_b && lo_b <= hi_a)
        })
    }
}

/// Pairs of `blocks` (each `(owner, block)`, in configuration order) of different owners that
/// share a number, as `(later, earlier)` positions in order. One sort and one sweep per number
/// length (100,000 ranges take milliseconds) instead of comparing every pair: the sweep keeps
/// the interval reaching furthest and the one reaching furthest among the other owners, which
/// is enough to find, for each interval, an overlapping one of another owner if any starts
/// before it. So whenever blocks of two owners overlap, at least one such pair is reported
/// (every block in conflict is in a pair or overlaps one that is); fixing those and checking
/// again finds the rest.
pub fn overlaps_between_owners(blocks: &[(usize, &NumberBlock)]) -> Vec<(usize, usize)> {
    let mut intervals: Vec<(usize, u64, u64, usize)> = blocks
        .iter()
        .enumerate()
        .flat_map(|(pos, (_, block))| {
            block
                .intervals()
                .into_iter()
                .map(move |(len, lo, hi)| (len, lo, hi, pos))
        })
        .collect();
    intervals.sort_unstable();
    let owner = |pos: usize| blocks.get(pos).map(|(owner, _)| *owner);
    let mut found: Vec<(usize, usize)> = Vec::new();
    // (hi, pos) of the interval reaching furthest, and of the one reaching furthest among the
    // owners other than that one's, in the current length.
    let mut furthest: Option<(u64, usize)> = None;
    let mut furthest_other: Option<(u64, usize)> = None;
    let mut current_len = None;
    for (len, lo, hi, pos) in intervals {
        if current_len != Some(len) {
            current_len = Some(len);
            furthest = None;
            furthest_other = None;
        }
        let me = owner(pos);
        let overlapping = match furthest {
            Some((reach, other)) if owner(other) != me && reach >= lo => Some(other),
            _ => furthest_other
                .filter(|(reach, _)| *reach >= lo)
                .map(|(_, other)| other),
        };
        if let Some(other) = overlapping {
            found.push((pos.max(other), pos.min(other)));
        }
        match furthest {
            Some((reach, best)) if hi <= reach => {
                if owner(best) != me && furthest_other.is_none_or(|(r, _)| hi > r) {
                    furthest_other = Some((hi, pos));
                }
            }
            Some((_, best)) => {
                if owner(best) != me {
                    furthest_other = furthest;
                }
                furthest = Some((hi, pos));
            }
            None => furthest = Some((hi, pos)),
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

impl fmt::Display for NumberBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NumberBlock::Single(n) => write!(f, "+{n}"),
            NumberBlock::Range { first, last } => write!(f, "+{first}-+{last}"),
            NumberBlock::Prefix(p) => write!(f, "+{p}*"),
        }
    }
}

fn value(digits: &str) -> Option<u64> {
    digits.parse().ok()
}

fn e164_digits(text: &str, is_prefix: bool) -> Result<String, String> {
    let digits = text
        .strip_prefix('+')
        .ok_or_else(|| format!("{text:?} is not E.164: it must start with '+'"))?;
    if digits.is_empty() && !is_prefix {
        return Err(format!("{text:?} has no digits"));
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?} is not E.164: only digits may follow '+'"));
    }
    if digits.starts_with('0') {
        return Err(format!(
            "{text:?} is not E.164: a country code never starts with 0"
        ));
    }
    if digits.len() > MAX_DIGITS {
        return Err(format!("{text:?} is not E.164: more than 15 digits"));
    }
    Ok(digits.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sweep finds a block of another owner sharing a number exactly when the pairwise
    /// check does, over random small tenants (singles, ranges and prefixes of few digits so
    /// that they collide often).
    #[test]
    fn overlaps_between_owners_agrees_with_the_pairwise_check() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..300 {
            let blocks: Vec<(usize, NumberBlock)> = (0..rng.gen_range(1..40))
                .map(|_| {
                    let owner = rng.gen_range(0..4);
                    let a: u32 = rng.gen_range(100..200);
                    let text = match rng.gen_range(0..3) {
                        0 => format!("+4930{a}"),
                        1 => format!("+4930{a}-+4930{}", a + rng.gen_range(0..20)),
                        _ => format!("+4930{}*", a / 10),
                    };
                    (owner, NumberBlock::parse(&text).unwrap())
                })
                .collect();
            let owned: Vec<(usize, &NumberBlock)> = blocks.iter().map(|(o, b)| (*o, b)).collect();
            let found = overlaps_between_owners(&owned);
            let clash = |a: usize, b: usize| {
                a != b && blocks[a].0 != blocks[b].0 && blocks[a].1.overlaps(&blocks[b].1)
            };
            let n = blocks.len();
            let any = (0..n).any(|a| (0..n).any(|b| clash(a, b)));
            assert_eq!(any, !found.is_empty(), "{blocks:?}: {found:?}");
            for (l, e) in &found {
                assert!(l > e && clash(*l, *e), "{blocks:?}: {found:?}");
            }
            // Each interval overlapped by one of another owner that sorts before it puts its
            // block in a pair.
            let in_pair = |a: usize| found.iter().any(|(l, e)| *l == a || *e == a);
            let intervals: Vec<(usize, u64, u64, usize)> = (0..n)
                .flat_map(|pos| {
                    blocks[pos]
                        .1
                        .intervals()
                        .into_iter()
                        .map(move |(len, lo, hi)| (len, lo, hi, pos))
                })
                .collect();
            for i in &intervals {
                let overlapped_from_before = intervals
                    .iter()
                    .any(|j| j < i && j.0 == i.0 && j.2 >= i.1 && blocks[j.3].0 != blocks[i.3].0);
                if overlapped_from_before {
                    assert!(in_pair(i.3), "{i:?} not reported: {blocks:?}: {found:?}");
                }
            }
        }
    }

    /// 100,000 ranges of 1,000 tenants: one sort and one sweep.
    #[test]
    fn a_hundred_thousand_ranges_are_checked_without_comparing_every_pair() {
        let blocks: Vec<(usize, NumberBlock)> = (0..100_000u32)
            .map(|n| {
                let (t, r) = (n / 100, n % 100);
                let text = format!("+4940{t:03}{r:02}000-+4940{t:03}{r:02}999");
                (t as usize, NumberBlock::parse(&text).unwrap())
            })
            .collect();
        let owned: Vec<(usize, &NumberBlock)> = blocks.iter().map(|(o, b)| (*o, b)).collect();
        assert!(overlaps_between_owners(&owned).is_empty());
        let mut clash = owned.clone();
        let extra = NumberBlock::parse("+494012345500").unwrap();
        clash.push((999, &extra));
        assert_eq!(overlaps_between_owners(&clash), vec![(100_000, 12_345)]);
    }

    #[test]
    fn parses_single_range_and_prefix() {
        assert_eq!(
            NumberBlock::parse("+4930123456").unwrap(),
            NumberBlock::Single("4930123456".into())
        );
        assert_eq!(
            NumberBlock::parse("+4930123400-+4930123499").unwrap(),
            NumberBlock::Range {
                first: "4930123400".into(),
                last: "4930123499".into()
            }
        );
        assert_eq!(
            NumberBlock::parse("+49301*").unwrap(),
            NumberBlock::Prefix("49301".into())
        );
    }

    #[test]
    fn rejects_non_e164() {
        for bad in [
            "4930123456",
            "+",
            "+49 30",
            "+0301234",
            "+1234567890123456",
            "+4930123499-+4930123400",
            "+49301234-+493012345",
            "+49a*",
        ] {
            assert!(NumberBlock::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn contains_follows_block_kind() {
        let range = NumberBlock::parse("+4930123400-+4930123499").unwrap();
        assert!(range.contains("+4930123450"));
        assert!(!range.contains("+4930123500"));
        assert!(!range.contains("+49301234500"));
        let prefix = NumberBlock::parse("+4930*").unwrap();
        assert!(prefix.contains("+4930999"));
        assert!(!prefix.contains("+4931999"));
        assert!(!prefix.contains("+49x0"));
    }

    #[test]
    fn overlap_detection() {
        let p = |s: &str| NumberBlock::parse(s).unwrap();
        assert!(p("+4930123400-+4930123499").overlaps(&p("+4930123450")));
        assert!(!p("+4930123400-+4930123499").overlaps(&p("+4930123500")));
        assert!(p("+4930123400-+4930123499").overlaps(&p("+4930123490-+4930123510")));
        assert!(p("+4930*").overlaps(&p("+4930123456")));
        assert!(p("+4930*").overlaps(&p("+493012*")));
        assert!(!p("+4930*").overlaps(&p("+4931*")));
        assert!(p("+4930*").overlaps(&p("+4930000000-+4930000009")));
        assert!(!p("+4931*").overlaps(&p("+4930000000-+4930999999")));
        assert!(!p("+4930123456").overlaps(&p("+49301234567")));
    }
}
