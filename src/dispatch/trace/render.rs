//! The text a trace keeps of one message, and a whole trace as log text.
//!
//! A message keeps its start line and headers (LF line ends) and the first
//! [`BODY_SHOWN`] bytes of its body, whole lines only, with SRTP master keys (`a=crypto`
//! `inline:` key-params) and ICE passwords (`a=ice-pwd`) replaced by `[redacted]`: a log or
//! an API answer must never hand out the keys of a call.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{CallTrace, TraceDirection, TracedMessage};

/// Body bytes kept of each message.
pub const BODY_SHOWN: usize = 1024;

const REDACTED: &str = "[redacted]";

/// `(text, body bytes not kept)` of a raw message, its text at most `limit` bytes.
pub(super) fn message_text(raw: &[u8], limit: usize) -> (String, usize) {
    let (head, body) = split_head(raw);
    let mut text = String::with_capacity(head.len() + body.len().min(BODY_SHOWN) + 1);
    for line in String::from_utf8_lossy(head).lines() {
        text.push_str(line);
        text.push('\n');
    }
    let shown = shown_body(body);
    if !shown.is_empty() {
        text.push('\n');
        for line in String::from_utf8_lossy(shown).lines() {
            text.push_str(&redact_line(line));
            text.push('\n');
        }
    }
    let mut omitted = body.len() - shown.len();
    if text.len() > limit {
        let mut cut = limit;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        // What is cut off the end counts as not kept (the header block may lose lines too).
        omitted = omitted.max(1);
    }
    (text, omitted)
}

fn split_head(raw: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memmem::find(raw, b"\r\n\r\n") {
        Some(at) => (&raw[..at], &raw[at + 4..]),
        None => match memchr::memmem::find(raw, b"\n\n") {
            Some(at) => (&raw[..at], &raw[at + 2..]),
            None => (raw, &[]),
        },
    }
}

/// The first [`BODY_SHOWN`] bytes of `body`, ending at a line end when one is there.
fn shown_body(body: &[u8]) -> &[u8] {
    if body.len() <= BODY_SHOWN {
        return body;
    }
    let head = &body[..BODY_SHOWN];
    match memchr::memrchr(b'\n', head) {
        Some(end) => &head[..=end],
        None => head,
    }
}

fn redact_line(line: &str) -> String {
    let trimmed = line.trim_start();
    if trimmed.starts_with("a=ice-pwd:") {
        return format!("a=ice-pwd:{REDACTED}");
    }
    if trimmed.starts_with("a=crypto:") {
        // `a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:<key||salt>|2^31|1:1 [session params]`
        let mut out = String::with_capacity(line.len());
        let mut rest = line;
        while let Some(at) = rest.find("inline:") {
            let (before, after) = rest.split_at(at + "inline:".len());
            out.push_str(before);
            out.push_str(REDACTED);
            let end = after.find(['|', ' ', ';']).unwrap_or(after.len());
            rest = &after[end..];
        }
        out.push_str(rest);
        return out;
    }
    line.to_string()
}

/// `2024-05-01T10:00:00.123Z`.
pub(super) fn rfc3339(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        day_secs / 3600,
        day_secs % 3600 / 60,
        day_secs % 60,
        since.subsec_millis()
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl fmt::Display for TracedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let arrow = match self.direction {
            TraceDirection::Received => "<-",
            TraceDirection::Sent => "->",
        };
        write!(
            f,
            "{} +{:.3}s {} {arrow} {}",
            rfc3339(self.at),
            self.offset.as_secs_f64(),
            self.leg.label(),
            self.transport.label(),
        )?;
        if let Some(peer) = self.peer {
            write!(f, " {peer}")?;
        }
        writeln!(f)?;
        f.write_str(&self.text)?;
        if self.body_omitted > 0 {
            writeln!(f, "[{} more bytes not kept]", self.body_omitted)?;
        }
        Ok(())
    }
}

impl fmt::Display for CallTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "call {} ({}, tenant {}, trunk {}), started {}, Call-IDs {}: {} messages kept, {} dropped",
            self.key.0,
            self.direction,
            self.tenant,
            self.trunk,
            rfc3339(self.started),
            self.call_ids.join(" "),
            self.messages.len(),
            self.dropped
        )?;
        for message in &self.messages {
            writeln!(f, "--")?;
            write!(f, "{message}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn row60_keys_are_redacted_and_long_bodies_cut_at_a_line() {
        let sdp = "v=0\r\na=ice-pwd:secretpassword1234567890\r\n\
                   a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3|2^31|1:1\r\n\
                   a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:WllYV1ZVVFNSUVBPTk1MS0pJSEdGRUREQ0JBMTIz\r\n";
        let raw = format!(
            "INVITE sip:a@b SIP/2.0\r\nVia: x\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        let (text, omitted) = message_text(raw.as_bytes(), 65536);
        assert_eq!(omitted, 0);
        assert!(
            text.starts_with("INVITE sip:a@b SIP/2.0\nVia: x\n"),
            "{text}"
        );
        assert!(
            !text.contains("secretpassword") && !text.contains("QUJDR") && !text.contains("WllY"),
            "{text}"
        );
        assert!(text.contains("a=ice-pwd:[redacted]\n"), "{text}");
        assert!(text.contains("inline:[redacted]|2^31|1:1\n"), "{text}");
        assert!(
            text.contains("AES_CM_128_HMAC_SHA1_32 inline:[redacted]\n"),
            "{text}"
        );

        let body: String = (0..200).map(|i| format!("a=x-line:{i:04}\r\n")).collect();
        let raw = format!("SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\n\r\n{body}");
        let (text, omitted) = message_text(raw.as_bytes(), 65536);
        let kept = text.split_once("\n\n").unwrap().1;
        assert!(
            kept.ends_with('\n') && kept.len() <= BODY_SHOWN,
            "{}",
            kept.len()
        );
        assert_eq!(omitted, body.len() - kept.len() - kept.lines().count());
        let (text, omitted) = message_text(raw.as_bytes(), 20);
        assert_eq!(text, "SIP/2.0 200 OK\nCSeq:");
        assert!(omitted > 0);
    }

    #[test]
    fn wall_clock_times_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let at = UNIX_EPOCH + Duration::from_millis(1_709_251_199_123); // 2024-02-29 23:59:59.123
        assert_eq!(rfc3339(at), "2024-02-29T23:59:59.123Z");
        let at = UNIX_EPOCH + Duration::from_secs(951_868_800); // 2000-03-01
        assert_eq!(rfc3339(at), "2000-03-01T00:00:00.000Z");
    }
}
