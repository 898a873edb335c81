//! What Microsoft says about a failure (teams-direct-routing.md §5.1-5.3): its `Reason`
//! values (Q.850 or SIP cause, often with its own sub-reason in `text`) and its diagnostics
//! headers (`X-MS-Diagnostics`, `ms-diagnostics`: `<code>;reason="...";...`), with the meaning
//! of the Microsoft response code when we know it.
//!
//! Microsoft response codes are `5 X Y ZZZ`: `5` the PSTN hub, `X = 6` when the SBC produced
//! the final response (`560403`: we answered 403), anything else Microsoft's own; `ZZZ` is
//! often the SIP status. Some are shorter (`1106`, `0`).

use bytes::Bytes;

use crate::sip::{HeaderName, Message, ReasonValue};

/// Values kept per call, each bounded.
const MAX_VALUES: usize = 4;
const MAX_VALUE_CHARS: usize = 256;

pub(super) fn diagnostics_headers() -> [HeaderName; 2] {
    [
        HeaderName::Other(Bytes::from_static(b"X-MS-Diagnostics")),
        HeaderName::Other(Bytes::from_static(b"ms-diagnostics")),
    ]
}

/// Microsoft's `Reason` and diagnostics values seen on one call, most recent last, distinct,
/// at most [`MAX_VALUES`] of each (older ones give way).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MicrosoftDiagnostics {
    pub reasons: Vec<String>,
    pub diagnostics: Vec<String>,
}

impl MicrosoftDiagnostics {
    /// Take the values of a message Microsoft sent.
    pub(super) fn note(&mut self, msg: &Message) {
        for value in msg.header_values(&HeaderName::Reason) {
            push_bounded(&mut self.reasons, &value);
        }
        for name in diagnostics_headers() {
            for line in msg.header_values(&name) {
                push_bounded(&mut self.diagnostics, &line);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.reasons.is_empty() && self.diagnostics.is_empty()
    }

    /// The Microsoft response code of the most recent diagnostics value that has one.
    pub fn code(&self) -> Option<MicrosoftCode> {
        self.diagnostics
            .iter()
            .rev()
            .find_map(|v| MicrosoftCode::parse(v))
    }
}

fn push_bounded(values: &mut Vec<String>, raw: &[u8]) {
    let text = String::from_utf8_lossy(raw);
    let text: String = text.trim().chars().take(MAX_VALUE_CHARS).collect();
    if text.is_empty() {
        return;
    }
    values.retain(|v| *v != text);
    if values.len() == MAX_VALUES {
        values.remove(0);
    }
    values.push(text);
}

/// The first abnormal `Reason` value of `msg` (anything but normal clearing), as written.
pub(super) fn abnormal_reason(msg: &Message) -> Option<String> {
    msg.header_values(&HeaderName::Reason)
        .into_iter()
        .find(|v| ReasonValue::parse(v).is_some_and(|r| r.is_abnormal()))
        .map(|v| {
            String::from_utf8_lossy(&v)
                .trim()
                .chars()
                .take(MAX_VALUE_CHARS)
                .collect()
        })
}

/// A Microsoft response code from a diagnostics value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MicrosoftCode(pub u32);

impl MicrosoftCode {
    /// The leading number of a diagnostics value (`560403;reason="..."` -> 560403).
    pub fn parse(value: &str) -> Option<MicrosoftCode> {
        let digits: &str = value
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?;
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        digits.parse().ok().map(MicrosoftCode)
    }

    /// Who produced the final response: `"sbc"` for `56YZZZ` (us), else `"microsoft"`.
    pub fn origin(self) -> &'static str {
        if (560_000..570_000).contains(&self.0) {
            "sbc"
        } else {
            "microsoft"
        }
    }

    /// What the code means and what to look at, for the codes the brief lists (§5.3).
    pub fn hint(self) -> Option<&'static str> {
        let hint = match self.0 {
            540400 => "Microsoft found our message malformed or unsupported: check its syntax",
            510532 => {
                "no trunk configuration: the Contact FQDN is registered in no tenant (domain \
                 not verified or activated, or the wrong tenant)"
            }
            510534 => "the caller's number is on the tenant's block list",
            510559 => "no voice route of the tenant matches the number",
            510560 | 510562 | 510563 => {
                "the user is not enabled for PSTN calls of this kind (tenant configuration)"
            }
            511404 => "the number is unknown to Microsoft: not E.164 or not assigned",
            500001 => "we did not answer Microsoft's INVITE within FailoverTimeSeconds",
            1106 => "Microsoft got no ACK for its 200: check the ACK path and TLS connections",
            0 => "media was not established within 90 s: network, ICE or firewall",
            531000 => "no common codec, no SRTP or unparsable SDP in our offer or answer",
            531004 => "ICE connectivity checks failed (media bypass): candidates, firewall",
            531005 => "the media path broke: firewall or NAT between Microsoft and us",
            531027 => "media bypass without ICE candidates in our SDP",
            531052 => "our SDP put c=0.0.0.0 (hold must be a=inactive)",
            540415 => "a body Microsoft does not take (SDP only towards Microsoft)",
            540420 => "we required an extension Microsoft lacks (100rel)",
            560420 => "we lacked an extension Microsoft needed (Replaces)",
            540422 => "our session interval was too small",
            560484 => "we refused the number's format",
            560503 => "we answered 503: overload or maintenance on our side",
            510482 => "Microsoft detected a forwarding loop",
            510544 => "no outbound trunk configuration at Microsoft",
            549002 | 569002 => {
                "Microsoft could not reach us (TLS not connected, refused or timed out) or \
                 refused our certificate's usage (EKU)"
            }
            569003 | 569009 => "Microsoft does not trust our certificate chain",
            569008 => "our certificate has expired",
            569015 | 569016 => "our FQDN is not in DNS (no A/AAAA record)",
            549018 | 569018 => "a start line of ours was invalid (SIP/2.0 syntax)",
            _ => return None,
        };
        Some(hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(headers: &str) -> Message {
        let text = format!(
            "SIP/2.0 403 Forbidden\r\nVia: SIP/2.0/TLS a.example:5061;branch=z9hG4bK1\r\n\
             From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\
             {headers}Content-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(text), &crate::sip::Limits::default()).unwrap()
    }

    #[test]
    fn row60_microsoft_codes_say_who_answered_and_what_it_means() {
        let code = MicrosoftCode::parse("560403;reason=\"SBC answered\"").unwrap();
        assert_eq!(code, MicrosoftCode(560403));
        assert_eq!(code.origin(), "sbc");
        let code = MicrosoftCode::parse(" 510532;reason=\"No trunk config was found\"").unwrap();
        assert_eq!(code.origin(), "microsoft");
        assert!(code.hint().unwrap().contains("Contact FQDN"));
        assert_eq!(
            MicrosoftCode::parse("1106")
                .unwrap()
                .hint()
                .map(|h| &h[..9]),
            Some("Microsoft")
        );
        assert_eq!(MicrosoftCode::parse("reason=\"x\""), None);
        assert_eq!(MicrosoftCode::parse("1234567890"), None);
        assert_eq!(MicrosoftCode(123).hint(), None);
    }

    #[test]
    fn row60_reasons_and_diagnostics_are_kept_distinct_and_bounded() {
        let mut seen = MicrosoftDiagnostics::default();
        assert!(seen.is_empty());
        seen.note(&message(
            "Reason: Q.850;cause=21;text=\"a;b\", SIP;cause=403\r\n\
             X-MS-Diagnostics: 510532;reason=\"No trunk config\"\r\n",
        ));
        seen.note(&message(
            "ms-diagnostics: 560403;reason=\"x\"\r\nReason: SIP;cause=403\r\n",
        ));
        assert_eq!(
            seen.reasons,
            ["Q.850;cause=21;text=\"a;b\"", "SIP;cause=403"]
        );
        assert_eq!(
            seen.diagnostics,
            ["510532;reason=\"No trunk config\"", "560403;reason=\"x\""]
        );
        assert_eq!(
            seen.code(),
            Some(MicrosoftCode(560403)),
            "the most recent one"
        );
        for n in 0..10 {
            seen.note(&message(&format!("Reason: Q.850;cause={n}\r\n")));
        }
        assert_eq!(seen.reasons.len(), MAX_VALUES);
        assert_eq!(seen.reasons.last().unwrap(), "Q.850;cause=9");
        let long = "x".repeat(1000);
        seen.note(&message(&format!(
            "X-MS-Diagnostics: 1;reason=\"{long}\"\r\n"
        )));
        assert!(seen
            .diagnostics
            .iter()
            .all(|d| d.chars().count() <= MAX_VALUE_CHARS));
    }

    #[test]
    fn row60_abnormal_reason_is_anything_but_normal_clearing() {
        assert_eq!(
            abnormal_reason(&message("Reason: Q.850;cause=16\r\n")),
            None
        );
        assert_eq!(abnormal_reason(&message("")), None);
        assert_eq!(
            abnormal_reason(&message(
                "Reason: SIP;cause=200, Q.850;cause=22;text=\"IceConnectivityChecksFailed\"\r\n"
            ))
            .as_deref(),
            Some("Q.850;cause=22;text=\"IceConnectivityChecksFailed\"")
        );
    }
}
