//! `multipart/mixed` bodies (RFC 2046 §5.1, RFC 5621 for SIP): Microsoft sends an emergency
//! call's location as `application/pidf+xml` next to the SDP (RFC 6442, doc 2.12, row 56).
//!
//! Parsing borrows from the body (`Bytes` slices, no copies); building writes a new body.

use bytes::Bytes;

/// Parts in one body, at most: a SIP body carries SDP and a location or two, not hundreds.
pub const MAX_PARTS: usize = 16;
/// RFC 2046 §5.1.1: a boundary is 1-70 characters.
const MAX_BOUNDARY: usize = 70;

/// Why a multipart body was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultipartError {
    /// `Content-Type` is multipart without a usable `boundary` parameter.
    NoBoundary,
    /// The first delimiter or the closing one is missing, or a part has broken headers.
    Malformed,
    /// More than [`MAX_PARTS`] parts.
    TooManyParts,
}

impl MultipartError {
    /// For a `400` reason phrase.
    pub fn reason(self) -> &'static str {
        match self {
            MultipartError::NoBoundary => "Multipart Body Without Boundary",
            MultipartError::Malformed => "Malformed Multipart Body",
            MultipartError::TooManyParts => "Too Many Body Parts",
        }
    }
}

/// One body part: its `Content-Type` (lower-cased media type without parameters, `text/plain`
/// when absent, RFC 2046 §5.1), its full header block as sent, and its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyPart {
    pub media_type: String,
    pub headers: Bytes,
    pub content: Bytes,
}

/// The lower-cased media type of a `Content-Type` value, parameters dropped.
pub fn media_type(content_type: &[u8]) -> String {
    let end = content_type
        .iter()
        .position(|&b| b == b';')
        .unwrap_or(content_type.len());
    String::from_utf8_lossy(&content_type[..end])
        .trim()
        .to_ascii_lowercase()
}

/// True for a `multipart/*` media type.
pub fn is_multipart(content_type: &[u8]) -> bool {
    media_type(content_type).starts_with("multipart/")
}

/// The `boundary` parameter of a multipart `Content-Type` value (quoted or not).
pub fn boundary(content_type: &[u8]) -> Result<Bytes, MultipartError> {
    let text = std::str::from_utf8(content_type).map_err(|_| MultipartError::NoBoundary)?;
    for param in text.split(';').skip(1) {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("boundary") {
            continue;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        if value.is_empty() || value.len() > MAX_BOUNDARY || value.contains(['\r', '\n']) {
            return Err(MultipartError::NoBoundary);
        }
        return Ok(Bytes::copy_from_slice(value.as_bytes()));
    }
    Err(MultipartError::NoBoundary)
}

/// The parts of `body` delimited by `boundary`. The preamble and epilogue are ignored; the
/// closing delimiter is required (a truncated body is not guessed at).
pub fn parse(body: &Bytes, boundary: &[u8]) -> Result<Vec<BodyPart>, MultipartError> {
    let mut delimiter = Vec::with_capacity(boundary.len() + 4);
    delimiter.extend_from_slice(b"\r\n--");
    delimiter.extend_from_slice(boundary);
    // The first delimiter may open the body, without the CRLF in front of it.
    let first = if body.starts_with(&delimiter[2..]) {
        0
    } else {
        memchr::memmem::find(body, &delimiter).ok_or(MultipartError::Malformed)? + 2
    };
    let mut at = first + delimiter.len() - 2;
    let mut parts = Vec::new();
    loop {
        let rest = body.get(at..).ok_or(MultipartError::Malformed)?;
        if rest.starts_with(b"--") {
            return Ok(parts); // close delimiter
        }
        // Transport padding (RFC 2046 §5.1.1) then the CRLF ending the delimiter line.
        let line_end = memchr::memmem::find(rest, b"\r\n").ok_or(MultipartError::Malformed)?;
        if rest[..line_end].iter().any(|&b| b != b' ' && b != b'\t') {
            return Err(MultipartError::Malformed);
        }
        let start = at + line_end + 2;
        let tail = body.get(start..).ok_or(MultipartError::Malformed)?;
        let len = memchr::memmem::find(tail, &delimiter).ok_or(MultipartError::Malformed)?;
        if parts.len() == MAX_PARTS {
            return Err(MultipartError::TooManyParts);
        }
        parts.push(part(body.slice(start..start + len))?);
        at = start + len + delimiter.len();
    }
}

fn part(raw: Bytes) -> Result<BodyPart, MultipartError> {
    let (headers, content) = if raw.starts_with(b"\r\n") {
        (Bytes::new(), raw.slice(2..))
    } else {
        let end = memchr::memmem::find(&raw, b"\r\n\r\n").ok_or(MultipartError::Malformed)?;
        (raw.slice(..end + 2), raw.slice(end + 4..))
    };
    let mut media = String::from("text/plain");
    for line in headers.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(MultipartError::Malformed)?;
        let name = String::from_utf8_lossy(&line[..colon]);
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-type") || name.eq_ignore_ascii_case("c") {
            media = media_type(&line[colon + 1..]);
        }
    }
    Ok(BodyPart {
        media_type: media,
        headers,
        content,
    })
}

/// A `multipart/mixed` body of `parts`, each `(header block, content)`; the header block is
/// complete lines (each ending in CRLF), as [`BodyPart::headers`] keeps them.
pub fn build(boundary: &str, parts: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (headers, content) in parts {
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(headers);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(content);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 52.112.1.1\r\ns=-\r\nc=IN IP4 52.112.1.1\r\nt=0 0\r\nm=audio 49152 RTP/SAVP 0\r\n";
    const PIDF: &str = "<?xml version=\"1.0\"?>\r\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"pres:alice@contoso.com\"/>";

    /// Microsoft's emergency INVITE body (doc 2.12): SDP then PIDF-LO.
    fn emergency_body() -> Bytes {
        Bytes::from(format!(
            "--boundary1\r\nContent-Type: application/sdp\r\n\r\n{SDP}\r\n\
             --boundary1\r\nContent-Type: application/pidf+xml\r\nContent-ID: <loc@contoso.com>\r\n\r\n{PIDF}\r\n\
             --boundary1--\r\n"
        ))
    }

    #[test]
    fn row56_sdp_and_pidf_lo_parts_are_found_byte_exact() {
        let parts = parse(&emergency_body(), b"boundary1").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].media_type, "application/sdp");
        assert_eq!(parts[0].content, SDP.as_bytes());
        assert_eq!(parts[1].media_type, "application/pidf+xml");
        assert_eq!(parts[1].content, PIDF.as_bytes());
        assert_eq!(
            parts[1].headers,
            &b"Content-Type: application/pidf+xml\r\nContent-ID: <loc@contoso.com>\r\n"[..]
        );
    }

    #[test]
    fn boundary_parameter_quoted_or_not_in_any_case() {
        for ct in [
            &b"multipart/mixed;boundary=boundary1"[..],
            b"multipart/mixed; BOUNDARY=\"boundary1\"",
            b"Multipart/Mixed; charset=x; boundary = boundary1",
        ] {
            assert!(is_multipart(ct));
            assert_eq!(boundary(ct).unwrap(), &b"boundary1"[..]);
        }
        assert_eq!(
            boundary(b"multipart/mixed"),
            Err(MultipartError::NoBoundary)
        );
        assert_eq!(
            boundary(b"multipart/mixed;boundary=\"\""),
            Err(MultipartError::NoBoundary)
        );
        assert!(!is_multipart(b"application/sdp"));
    }

    #[test]
    fn preamble_epilogue_padding_and_headerless_parts() {
        let body = Bytes::from(format!(
            "preamble\r\n--b  \r\n\r\n{SDP}\r\n--b\r\ncontent-type:Application/SDP\r\n\r\nx\r\n--b--\r\nepilogue"
        ));
        let parts = parse(&body, b"b").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].media_type, "text/plain");
        assert_eq!(parts[0].content, SDP.as_bytes());
        assert_eq!(parts[1].media_type, "application/sdp");
        assert_eq!(parts[1].content, &b"x"[..]);
    }

    #[test]
    fn truncated_or_broken_bodies_are_errors() {
        let full = emergency_body();
        for cut in [0, 5, 20, full.len() / 2, full.len() - 4] {
            assert!(
                parse(&full.slice(..cut), b"boundary1").is_err(),
                "cut at {cut}"
            );
        }
        assert_eq!(parse(&full, b"other"), Err(MultipartError::Malformed));
        let bad_header = Bytes::from("--b\r\nno colon here\r\n\r\nx\r\n--b--\r\n");
        assert_eq!(parse(&bad_header, b"b"), Err(MultipartError::Malformed));
        let junk_after_delimiter = Bytes::from("--bX\r\n\r\nx\r\n--b--\r\n");
        assert_eq!(
            parse(&junk_after_delimiter, b"b"),
            Err(MultipartError::Malformed)
        );
    }

    #[test]
    fn part_count_is_bounded() {
        let mut text = String::new();
        for _ in 0..=MAX_PARTS {
            text.push_str("--b\r\n\r\nx\r\n");
        }
        text.push_str("--b--\r\n");
        assert_eq!(
            parse(&Bytes::from(text), b"b"),
            Err(MultipartError::TooManyParts)
        );
    }

    #[test]
    fn built_body_parses_back_to_the_same_parts() {
        let body = build(
            "sbc-b1",
            &[
                (b"Content-Type: application/sdp\r\n", SDP.as_bytes()),
                (
                    b"Content-Type: application/pidf+xml\r\nContent-ID: <loc@contoso.com>\r\n",
                    PIDF.as_bytes(),
                ),
            ],
        );
        let parts = parse(&Bytes::from(body), b"sbc-b1").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].content, SDP.as_bytes());
        assert_eq!(parts[1].content, PIDF.as_bytes());
        assert_eq!(parts[1].media_type, "application/pidf+xml");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x1234_5678_u32;
        for _ in 0..2000 {
            let len = (seed % 96) as usize;
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                v.push(b"-b\r\n:xC"[(seed >> 16) as usize % 7]);
            }
            let _ = parse(&Bytes::from(v), b"b");
        }
    }
}
