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
