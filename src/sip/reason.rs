//! One value of a `Reason` header (RFC 3326): `protocol ;cause=N ;text="..."`, e.g.
//! `Q.850;cause=22;text="c586066f-...;IceConnectivityChecksFailed"` from Microsoft or
//! `SIP;cause=200;text="Call completed elsewhere"`. Parameters are split at `;` outside
//! quoted strings, so a `;` inside `text` stays in the text.

/// A parsed `Reason` value. Borrowed from the header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonValue<'a> {
    /// `Q.850`, `SIP`, ... as written (compare without case).
    pub protocol: &'a str,
    /// `cause=`: one to three digits, else `None`.
    pub cause: Option<u16>,
    /// `text=` without its quotes.
    pub text: Option<&'a str>,
}

impl<'a> ReasonValue<'a> {
    /// `None` when `value` is not UTF-8 or names no protocol.
    pub fn parse(value: &'a [u8]) -> Option<ReasonValue<'a>> {
        let text = std::str::from_utf8(value).ok()?;
        let mut params = split_params(text);
        let protocol = params.next()?.trim();
        if protocol.is_empty() {
            return None;
        }
        let mut reason = ReasonValue {
            protocol,
            cause: None,
            text: None,
        };
        for param in params {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("cause") {
                let digits = !value.is_empty()
                    && value.len() <= 3
                    && value.bytes().all(|b| b.is_ascii_digit());
                reason.cause = digits.then(|| value.parse().ok()).flatten();
            } else if name.eq_ignore_ascii_case("text") {
                let unquoted = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                reason.text = Some(unquoted);
            }
        }
        Some(reason)
    }

    pub fn is_q850(&self) -> bool {
        self.protocol.eq_ignore_ascii_case("Q.850")
    }

    pub fn is_sip(&self) -> bool {
        self.protocol.eq_ignore_ascii_case("SIP")
    }

    /// Normal clearing: Q.850 cause 16 (ITU-T Q.850 "normal call clearing") or SIP cause 200.
    /// A value without a cause says nothing either way and is not abnormal.
    pub fn is_abnormal(&self) -> bool {
        match self.cause {
            Some(16) if self.is_q850() => false,
            Some(200) if self.is_sip() => false,
            Some(_) => true,
            None => false,
        }
    }
}

/// `;`-separated parts of `text`, not splitting inside a quoted string (RFC 3261 §25.1
/// quoted-pair escapes included).
fn split_params(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        let mut quoted = false;
        let mut escaped = false;
        for (i, c) in current.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                ';' if !quoted => {
                    rest = Some(&current[i + 1..]);
                    return Some(&current[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(current)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microsofts_reason_keeps_the_semicolon_inside_its_text() {
        let r = ReasonValue::parse(
            b"Q.850;cause=22;text=\"c586066f-ceb5;IceConnectivityChecksFailed\"",
        )
        .unwrap();
        assert!(r.is_q850());
        assert_eq!(r.cause, Some(22));
        assert_eq!(r.text, Some("c586066f-ceb5;IceConnectivityChecksFailed"));
        assert!(r.is_abnormal());
    }

    #[test]
    fn protocol_cause_and_text_in_any_order_and_case() {
        let r =
            ReasonValue::parse(b" sip ; TEXT=\"Call completed elsewhere\" ; Cause = 200 ").unwrap();
        assert!(r.is_sip());
        assert_eq!(r.cause, Some(200));
        assert_eq!(r.text, Some("Call completed elsewhere"));
        assert!(!r.is_abnormal());
        let r = ReasonValue::parse(b"Q.850;cause=16;text=\"a\\\";b\"").unwrap();
        assert_eq!(
            r.text,
            Some("a\\\";b"),
            "an escaped quote does not end the text"
        );
        assert!(!r.is_abnormal());
    }

    #[test]
    fn bad_causes_are_none_and_garbage_is_no_reason() {
        for value in [&b"Q.850;cause="[..], b"Q.850;cause=0034", b"Q.850;cause=-1"] {
            let r = ReasonValue::parse(value).unwrap();
            assert_eq!(r.cause, None, "{}", String::from_utf8_lossy(value));
            assert!(!r.is_abnormal());
        }
        assert_eq!(ReasonValue::parse(b""), None);
        assert_eq!(ReasonValue::parse(b" ;cause=16"), None);
        assert_eq!(ReasonValue::parse(b"\xff\xfe"), None);
        assert!(ReasonValue::parse(b"Q.850;cause=41").unwrap().is_abnormal());
    }
}
