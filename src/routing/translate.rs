//! Number translation rules, in the spirit of Teams number translation rules: an ordered list of
//! (pattern, replacement); the pattern must match the whole number; the first match wins;
//! no match leaves the number unchanged.

use std::borrow::Cow;

use regex::Regex;

use crate::config::{TranslationDirection, TranslationField, TranslationRule};

#[derive(Debug, Clone)]
struct CompiledRule {
    /// The configured pattern wrapped as `^(?:pattern)$` (whole-number match; group numbers
    /// are unchanged by a non-capturing wrapper).
    whole: Regex,
    replacement: String,
}

/// One ordered list of rules for one (direction, field) pair.
#[derive(Debug, Clone, Default)]
pub struct RuleList {
    rules: Vec<CompiledRule>,
}

impl RuleList {
    pub fn apply<'a>(&self, number: &'a str) -> Cow<'a, str> {
        for rule in &self.rules {
            if rule.whole.is_match(number) {
                return rule.whole.replace(number, rule.replacement.as_str());
            }
        }
        Cow::Borrowed(number)
    }
}

/// The four rule lists of a carrier trunk.
#[derive(Debug, Clone, Default)]
pub struct TrunkTranslation {
    pub to_teams_called: RuleList,
    pub to_teams_calling: RuleList,
    pub from_teams_called: RuleList,
    pub from_teams_calling: RuleList,
}

/// A pattern that does not compile (config validation normally rejects it first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPattern {
    pub index: usize,
    pub message: String,
}

impl TrunkTranslation {
    pub fn compile(rules: &[TranslationRule]) -> Result<TrunkTranslation, BadPattern> {
        let mut out = TrunkTranslation::default();
        for (index, rule) in rules.iter().enumerate() {
            let whole = Regex::new(&format!("^(?:{})$", rule.pattern)).map_err(|e| BadPattern {
                index,
                message: e.to_string(),
            })?;
            let compiled = CompiledRule {
                whole,
                replacement: rule.replacement.clone(),
            };
            let to_teams = matches!(
                rule.direction,
                TranslationDirection::ToTeams | TranslationDirection::Both
            );
            let from_teams = matches!(
                rule.direction,
                TranslationDirection::FromTeams | TranslationDirection::Both
            );
            let called = matches!(
                rule.field,
                TranslationField::Called | TranslationField::Both
            );
            let calling = matches!(
                rule.field,
                TranslationField::Calling | TranslationField::Both
            );
            let lists = [
                (to_teams && called, &mut out.to_teams_called),
                (to_teams && calling, &mut out.to_teams_calling),
                (from_teams && called, &mut out.from_teams_called),
                (from_teams && calling, &mut out.from_teams_calling),
            ];
            for (applies, list) in lists {
                if applies {
                    list.rules.push(compiled.clone());
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TranslationDirection as D;
    use TranslationField as F;

    fn rule(
        pattern: &str,
        replacement: &str,
        d: TranslationDirection,
        f: TranslationField,
    ) -> TranslationRule {
        TranslationRule {
            pattern: pattern.to_string(),
            replacement: replacement.to_string(),
            direction: d,
            field: f,
        }
    }

    #[test]
    fn row19_national_to_e164_first_match_wins() {
        let t = TrunkTranslation::compile(&[
            rule(r"^00(\d+)$", "+$1", D::ToTeams, F::Both),
            rule(r"^0(\d+)$", "+49$1", D::ToTeams, F::Both),
            rule(r"^(\d+)$", "+4930$1", D::ToTeams, F::Called),
        ])
        .unwrap();
        assert_eq!(t.to_teams_called.apply("0301234567"), "+49301234567");
        assert_eq!(t.to_teams_called.apply("00441234567"), "+441234567");
        assert_eq!(t.to_teams_called.apply("1234567"), "+49301234567");
        assert_eq!(
            t.to_teams_calling.apply("1234567"),
            "1234567",
            "called-only rule"
        );
        assert_eq!(t.to_teams_called.apply("+49301234567"), "+49301234567");
        assert_eq!(t.from_teams_called.apply("0301234567"), "0301234567");
    }

    #[test]
    fn patterns_match_the_whole_number_only() {
        // Unanchored pattern: must not rewrite a number that merely contains "0".
        let t = TrunkTranslation::compile(&[rule(r"0(\d+)", "+49$1", D::Both, F::Called)]).unwrap();
        assert_eq!(t.to_teams_called.apply("0301234"), "+49301234");
        assert_eq!(t.to_teams_called.apply("+490301234"), "+490301234");
        assert_eq!(t.from_teams_called.apply("0301234"), "+49301234");
    }

    #[test]
    fn direction_and_field_select_lists() {
        let t = TrunkTranslation::compile(&[
            rule(r"^\+49(\d+)$", "0$1", D::FromTeams, F::Called),
            rule(r"^\+(\d+)$", "00$1", D::FromTeams, F::Calling),
        ])
        .unwrap();
        assert_eq!(t.from_teams_called.apply("+4930123"), "030123");
        assert_eq!(t.from_teams_calling.apply("+4930123"), "004930123");
        assert_eq!(t.to_teams_called.apply("+4930123"), "+4930123");
    }

    #[test]
    fn named_groups_and_bad_pattern() {
        let t =
            TrunkTranslation::compile(&[rule(r"^0(?P<rest>\d+)$", "+49${rest}", D::Both, F::Both)])
                .unwrap();
        assert_eq!(t.to_teams_calling.apply("030"), "+4930");
        let err = TrunkTranslation::compile(&[
            rule(r"^\d$", "x", D::Both, F::Both),
            rule(r"^(\d+$", "x", D::Both, F::Both),
        ])
        .unwrap_err();
        assert_eq!(err.index, 1);
    }
}
