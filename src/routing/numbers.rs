//! Number handling: cleaning what arrives in a Request-URI or From user part, the E.164 check,
//! and the called-number → tenant index (exact DIDs, then ranges, then longest prefix).
//!
//! Numbers are keyed as (digit count, value) pairs: E.164 has at most 15 digits, which fits a
//! `u64`, so a lookup parses the digits once and never allocates.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::config::NumberBlock;

use super::TenantId;

/// E.164: at most 15 digits after the `+`.
pub const MAX_E164_DIGITS: usize = 15;

/// Strips what is not part of the number itself: user parameters (`;npdi;rn=...`,
/// `;phone-context=...`) and RFC 3966 visual separators (`-`, `.`, `(`, `)`, blanks).
/// Borrowed when there was nothing to strip, which is the common case.
pub fn clean_number(raw: &str) -> Cow<'_, str> {
    let number = raw.split(';').next().unwrap_or("").trim();
    let is_separator = |c: char| matches!(c, '-' | '.' | '(' | ')' | ' ');
    if number.contains(is_separator) {
        Cow::Owned(number.chars().filter(|c| !is_separator(*c)).collect())
    } else {
        Cow::Borrowed(number)
    }
}

/// `+` followed by 1..=15 digits, the first not `0` (no country code starts with 0).
pub fn is_e164(number: &str) -> bool {
    match number.strip_prefix('+') {
        Some(digits) => {
            !digits.is_empty()
                && digits.len() <= MAX_E164_DIGITS
                && !digits.starts_with('0')
                && digits.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// A run of 0..=15 digits as (count, value); `"0049"` and `"49"` are different keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct NumberKey {
    len: u8,
    value: u64,
}

impl NumberKey {
    fn parse(digits: &str) -> Option<NumberKey> {
        if digits.len() > MAX_E164_DIGITS {
            return None;
        }
        let mut value = 0u64;
        for b in digits.bytes() {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u64::from(b - b'0');
        }
        Some(NumberKey {
            len: digits.len() as u8,
            value,
        })
    }

    /// The first `len` digits of this number (`len <= self.len`).
    fn truncated(self, len: u8) -> NumberKey {
        // At most 15 digits dropped, so 10^dropped fits a u64; `checked_pow` keeps that a
        // fact of the code rather than of the callers.
        let dropped = u32::from(self.len.saturating_sub(len));
        NumberKey {
            len,
            value: 10u64
                .checked_pow(dropped)
                .map_or(0, |scale| self.value / scale),
        }
    }
}

/// How a called number matched its tenant (useful in logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberMatch {
    Exact,
    Range,
    Prefix,
}

#[derive(Debug, Clone, Copy)]
struct RangeEntry {
    len: u8,
    first: u64,
    last: u64,
    tenant: TenantId,
}

/// Two tenants claim the same number (config validation normally rejects this first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberConflict {
    pub block: String,
    pub tenants: (TenantId, TenantId),
}

/// Immutable called-number → tenant index.
#[derive(Debug, Default)]
pub struct NumberIndex {
    exact: HashMap<NumberKey, TenantId>,
    /// Sorted by (len, first); never overlapping (overlaps of one tenant are merged).
    ranges: Vec<RangeEntry>,
    prefixes: HashMap<NumberKey, TenantId>,
    /// Distinct prefix lengths, longest first: a lookup probes each once.
    prefix_lengths: Vec<u8>,
}

impl NumberIndex {
    pub fn build<'a>(
        blocks: impl IntoIterator<Item = (TenantId, &'a NumberBlock)>,
    ) -> Result<NumberIndex, NumberConflict> {
        let mut index = NumberIndex::default();
        let mut ranges = Vec::new();
        for (tenant, block) in blocks {
            let conflict = |other: TenantId| NumberConflict {
                block: block.to_string(),
                tenants: (other, tenant),
            };
            match block {
                NumberBlock::Single(digits) => {
                    let key = NumberKey::parse(digits).ok_or_else(|| conflict(tenant))?;
                    if let Some(other) = index.exact.insert(key, tenant) {
                        if other != tenant {
                            return Err(conflict(other));
                        }
                    }
                }
                NumberBlock::Range { first, last } => {
                    let (Some(a), Some(b)) = (NumberKey::parse(first), NumberKey::parse(last))
                    else {
                        return Err(conflict(tenant));
                    };
                    if a.len != b.len || a.value > b.value {
                        return Err(conflict(tenant));
                    }
                    ranges.push(RangeEntry {
                        len: a.len,
                        first: a.value,
                        last: b.value,
                        tenant,
                    });
                }
                NumberBlock::Prefix(digits) => {
                    let key = NumberKey::parse(digits).ok_or_else(|| conflict(tenant))?;
                    if let Some(other) = index.prefixes.insert(key, tenant) {
                        if other != tenant {
                            return Err(conflict(other));
                        }
                    }
                    if !index.prefix_lengths.contains(&key.len) {
                        index.prefix_lengths.push(key.len);
                    }
                }
            }
        }
        index
            .prefix_lengths
            .sort_unstable_by_key(|len| std::cmp::Reverse(*len));
        ranges.sort_unstable_by_key(|r| (r.len, r.first, r.last));
        for r in ranges {
            match index.ranges.last_mut() {
                Some(prev) if prev.len == r.len && r.first <= prev.last => {
                    if prev.tenant != r.tenant {
                        return Err(NumberConflict {
                            block: format!("+{:0width$}-...", r.first, width = usize::from(r.len)),
                            tenants: (prev.tenant, r.tenant),
                        });
                    }
                    prev.last = prev.last.max(r.last);
                }
                _ => index.ranges.push(r),
            }
        }
        index.check_cross_kind()?;
        Ok(index)
    }

    /// The tenant owning an E.164 number (`+` optional); `None` for anything not digits.
    pub fn lookup(&self, number: &str) -> Option<(TenantId, NumberMatch)> {
        let digits = number.strip_prefix('+').unwrap_or(number);
        if digits.is_empty() {
            return None;
        }
        let key = NumberKey::parse(digits)?;
        if let Some(tenant) = self.exact.get(&key) {
            return Some((*tenant, NumberMatch::Exact));
        }
        if let Some(tenant) = self.in_range(key) {
            return Some((tenant, NumberMatch::Range));
        }
        self.by_prefix(key)
            .map(|tenant| (tenant, NumberMatch::Prefix))
    }

    fn in_range(&self, key: NumberKey) -> Option<TenantId> {
        let after = self
            .ranges
            .partition_point(|r| (r.len, r.first) <= (key.len, key.value));
        let r = self.ranges.get(after.checked_sub(1)?)?;
        (r.len == key.len && key.value <= r.last).then_some(r.tenant)
    }

    fn by_prefix(&self, key: NumberKey) -> Option<TenantId> {
        self.prefix_lengths
            .iter()
            .filter(|len| **len <= key.len)
            .find_map(|len| self.prefixes.get(&key.truncated(*len)))
            .copied()
    }

    /// Cross-kind claims by two tenants: a single number inside another tenant's range or
    /// prefix, a range end under another tenant's prefix. (Config validation checks every
    /// overlap; this cheap re-check keeps a table built from unvalidated data unambiguous
    /// where it matters most. A lookup is well defined regardless: exact, range, prefix.)
    fn check_cross_kind(&self) -> Result<(), NumberConflict> {
        let clash = |key: NumberKey, owner: TenantId, other: Option<TenantId>| match other {
            Some(other) if other != owner => Err(NumberConflict {
                block: format!("+{:0width$}", key.value, width = usize::from(key.len)),
                tenants: (other, owner),
            }),
            _ => Ok(()),
        };
        for (key, owner) in &self.exact {
            clash(*key, *owner, self.in_range(*key))?;
            clash(*key, *owner, self.by_prefix(*key))?;
        }
        for r in &self.ranges {
            for value in [r.first, r.last] {
                let key = NumberKey { len: r.len, value };
                clash(key, r.tenant, self.by_prefix(key))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(blocks: &[(u16, &str)]) -> Result<NumberIndex, NumberConflict> {
        let parsed: Vec<(TenantId, NumberBlock)> = blocks
            .iter()
            .map(|(t, b)| (TenantId(*t), NumberBlock::parse(b).unwrap()))
            .collect();
        NumberIndex::build(parsed.iter().map(|(t, b)| (*t, b)))
    }

    fn owner(index: &NumberIndex, number: &str) -> Option<(u16, NumberMatch)> {
        index.lookup(number).map(|(t, m)| (t.0, m))
    }

    #[test]
    fn clean_number_strips_separators_and_user_params() {
        assert_eq!(clean_number("+49 (30) 123-45.67"), "+49301234567");
        assert_eq!(clean_number("+4930123;npdi;rn=+4930999"), "+4930123");
        assert!(matches!(clean_number("+4930123"), Cow::Borrowed(_)));
        assert_eq!(clean_number(""), "");
    }

    #[test]
    fn e164_check() {
        assert!(is_e164("+4930123456"));
        assert!(is_e164("+1"));
        assert!(is_e164("+123456789012345"));
        for bad in [
            "4930123",
            "+",
            "+0301",
            "+1234567890123456",
            "+49a",
            "+49 30",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }

    #[test]
    fn exact_did_lookup() {
        let idx = index(&[(0, "+4930987650"), (1, "+4930987651")]).unwrap();
        assert_eq!(owner(&idx, "+4930987650"), Some((0, NumberMatch::Exact)));
        assert_eq!(owner(&idx, "4930987651"), Some((1, NumberMatch::Exact)));
        assert_eq!(owner(&idx, "+4930987652"), None);
        assert_eq!(
            owner(&idx, "+493098765"),
            None,
            "shorter number is another number"
        );
    }

    #[test]
    fn range_boundaries_are_inclusive_and_length_exact() {
        let idx = index(&[
            (0, "+4930123400-+4930123499"),
            (1, "+4930123500-+4930123599"),
            (2, "+44201234000-+44201234999"),
        ])
        .unwrap();
        assert_eq!(owner(&idx, "+4930123400"), Some((0, NumberMatch::Range)));
        assert_eq!(owner(&idx, "+4930123499"), Some((0, NumberMatch::Range)));
        assert_eq!(owner(&idx, "+4930123500"), Some((1, NumberMatch::Range)));
        assert_eq!(owner(&idx, "+4930123599"), Some((1, NumberMatch::Range)));
        assert_eq!(owner(&idx, "+4930123399"), None);
        assert_eq!(owner(&idx, "+4930123600"), None);
        // Same leading digits, one digit more or less: not in the range.
        assert_eq!(owner(&idx, "+49301234000"), None);
        assert_eq!(owner(&idx, "+493012340"), None);
        assert_eq!(owner(&idx, "+44201234567"), Some((2, NumberMatch::Range)));
        assert_eq!(owner(&idx, "+44201235000"), None);
    }

    #[test]
    fn overlapping_ranges_of_one_tenant_are_merged() {
        let idx = index(&[
            (0, "+4930100-+4930150"),
            (0, "+4930120-+4930199"),
            (0, "+4930110-+4930115"),
        ])
        .unwrap();
        for n in ["+4930100", "+4930116", "+4930151", "+4930199"] {
            assert_eq!(owner(&idx, n), Some((0, NumberMatch::Range)), "{n}");
        }
        assert_eq!(owner(&idx, "+4930200"), None);
    }

    #[test]
    fn conflicts_between_tenants_are_refused() {
        assert!(index(&[(0, "+4930100-+4930150"), (1, "+4930150-+4930160")]).is_err());
        assert!(index(&[(0, "+4930100"), (1, "+4930100")]).is_err());
        assert!(index(&[(0, "+4930*"), (1, "+4930*")]).is_err());
        assert!(index(&[(0, "+4930100"), (0, "+4930100")]).is_ok());
        assert!(index(&[(0, "+4930100-+4930150"), (1, "+4930120")]).is_err());
        assert!(index(&[(0, "+4930*"), (1, "+4930120")]).is_err());
        assert!(index(&[(0, "+4930*"), (1, "+4930100-+4930150")]).is_err());
        assert!(index(&[(0, "+4930*"), (0, "+4930120"), (0, "+4930100-+4930150")]).is_ok());
    }

    #[test]
    fn exact_then_range_then_prefix() {
        let idx = index(&[
            (0, "+49*"),
            (0, "+4930123456"),
            (0, "+4930124000-+4930124999"),
        ])
        .unwrap();
        assert_eq!(owner(&idx, "+4930123456"), Some((0, NumberMatch::Exact)));
        assert_eq!(owner(&idx, "+4930124500"), Some((0, NumberMatch::Range)));
        assert_eq!(owner(&idx, "+4930123457"), Some((0, NumberMatch::Prefix)));
    }

    #[test]
    fn longest_prefix_wins() {
        // Nested prefixes of different tenants: config validation refuses them, the index
        // still resolves them to the longest.
        let idx = index(&[(0, "+49*"), (1, "+4930*"), (2, "+493012*")]).unwrap();
        assert_eq!(owner(&idx, "+4930123457"), Some((2, NumberMatch::Prefix)));
        assert_eq!(owner(&idx, "+4930999"), Some((1, NumberMatch::Prefix)));
        assert_eq!(owner(&idx, "+4940999"), Some((0, NumberMatch::Prefix)));
        assert_eq!(
            owner(&idx, "+493012"),
            Some((2, NumberMatch::Prefix)),
            "prefix itself"
        );
        assert_eq!(owner(&idx, "+49301"), Some((1, NumberMatch::Prefix)));
        assert_eq!(owner(&idx, "+4412345"), None);
    }

    #[test]
    fn catch_all_prefix_matches_every_number() {
        let idx = index(&[(0, "+*"), (1, "+4930*")]).unwrap();
        assert_eq!(owner(&idx, "+4930555"), Some((1, NumberMatch::Prefix)));
        assert_eq!(owner(&idx, "+15551234"), Some((0, NumberMatch::Prefix)));
    }

    #[test]
    fn garbage_never_matches_and_never_panics() {
        let idx = index(&[(0, "+*")]).unwrap();
        for bad in [
            "",
            "+",
            "anonymous",
            "+49x",
            "+1234567890123456789",
            "++49",
            "\u{0663}",
        ] {
            assert_eq!(owner(&idx, bad), None, "{bad:?}");
        }
    }
}
