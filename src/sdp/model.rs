//! The line-preserving SDP model: every line is kept as the bytes it arrived with (a cheap
//! `Bytes` slice of the received body); only the lines the SBC reads are interpreted, on demand.

use bytes::Bytes;
use smallvec::SmallVec;

use super::attr::{
    self, parse_candidate, parse_connection, parse_media_line, parse_origin, parse_rtcp,
    parse_rtpmap, split_attribute, static_codec, Candidate, Codec, Connection, Direction,
    MediaLine, Origin, RtcpAttr,
};
use super::crypto::{parse_crypto, CryptoAttr};
use super::{SdpError, SdpLimits};

/// One SDP line: its type letter and the value after `=`, without the line ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    kind: u8,
    /// The value is valid UTF-8 (checked once, when the line was made).
    is_text: bool,
    /// For `a=` lines, position of the first `:` in the value (`u32::MAX` when none).
    colon: u32,
    value: Bytes,
}

const NO_COLON: u32 = u32::MAX;

impl Line {
    /// A line the SBC writes: text by construction.
    pub(crate) fn new<T: AsRef<str> + Into<Bytes>>(kind: u8, value: T) -> Line {
        let colon = attribute_colon(kind, value.as_ref().as_bytes());
        Line {
            kind,
            is_text: true,
            colon,
            value: value.into(),
        }
    }

    /// A received line: checked for UTF-8 once here, so reading it later costs nothing.
    fn received(kind: u8, value: Bytes) -> Line {
        Line {
            kind,
            is_text: std::str::from_utf8(&value).is_ok(),
            colon: attribute_colon(kind, &value),
            value,
        }
    }

    /// The type letter (`b'a'`, `b'c'`, `b'm'`, ...).
    pub fn kind(&self) -> u8 {
        self.kind
    }

    /// The value after `=`, byte for byte.
    pub fn value_bytes(&self) -> &[u8] {
        &self.value
    }

    /// The value as text; empty when the line is not UTF-8 (such lines are only ever copied).
    pub fn value(&self) -> &str {
        if !self.is_text {
            return "";
        }
        // Validated again on every read instead of trusted: about 1.2 µs more per offer
        // rewrite (5.2 -> 6.4 µs, benches/media.rs `sdp`), once per call, off the media path.
        std::str::from_utf8(&self.value).unwrap_or("")
    }

    /// For `a=` lines: attribute name and optional value (`a=rtcp-mux` -> `("rtcp-mux", None)`).
    pub fn attribute(&self) -> Option<(&str, Option<&str>)> {
        if self.kind != b'a' {
            return None;
        }
        // Trailing blanks after a flag (`a=sendonly `) come from lenient peers; the name must
        // still be recognised, or a hold would slip through unconverted.
        let text = self.value();
        if self.colon == NO_COLON || !self.is_text {
            return Some((text.trim_end_matches([' ', '\t']), None));
        }
        // `colon` indexes an ASCII ':' inside `text`, so both slices fall on char boundaries.
        let colon = self.colon as usize;
        match (text.get(..colon), text.get(colon + 1..)) {
            (Some(name), Some(value)) => Some((name.trim_end_matches([' ', '\t']), Some(value))),
            _ => Some(split_attribute(text)),
        }
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        out.push(self.kind);
        out.push(b'=');
        out.extend_from_slice(&self.value);
        out.extend_from_slice(b"\r\n");
    }
}

/// One media description: the `m=` line and the lines that follow it up to the next `m=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    /// `lines[0]` is always the validated `m=` line.
    lines: Vec<Line>,
}

/// A parsed SDP body. Unknown lines are kept verbatim and in order; output is always CRLF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    session: Vec<Line>,
    media: Vec<MediaSection>,
}

impl Sdp {
    /// Parses with the default [`SdpLimits`].
    pub fn parse(input: &[u8]) -> Result<Sdp, SdpError> {
        Sdp::parse_with(input, &SdpLimits::default())
    }

    /// Parses a copy of `input` under `limits`.
    pub fn parse_with(input: &[u8], limits: &SdpLimits) -> Result<Sdp, SdpError> {
        if input.len() > limits.max_bytes {
            return Err(SdpError::TooLarge {
                size: input.len(),
                limit: limits.max_bytes,
            });
        }
        Sdp::parse_bytes(Bytes::copy_from_slice(input), limits)
    }

    /// Parses a body already held in `Bytes` (e.g. a SIP message body) without copying it.
    pub fn parse_bytes(input: Bytes, limits: &SdpLimits) -> Result<Sdp, SdpError> {
        if input.len() > limits.max_bytes {
            return Err(SdpError::TooLarge {
                size: input.len(),
                limit: limits.max_bytes,
            });
        }
        let mut sdp = Sdp {
            session: Vec::with_capacity(12),
            media: Vec::with_capacity(2),
        };
        let mut start = 0usize;
        let mut line_no = 0usize;
        let mut seen_version = false;
        while let Some(rest) = input.get(start..).filter(|rest| !rest.is_empty()) {
            let with_cr = match memchr::memchr(b'\n', rest) {
                Some(newline) => rest.get(..newline).unwrap_or(rest),
                None => rest,
            };
            let raw = with_cr.strip_suffix(b"\r").unwrap_or(with_cr);
            let line_start = start;
            start += with_cr.len() + 1;
            line_no += 1;
            if line_no > limits.max_lines {
                return Err(SdpError::TooManyLines {
                    limit: limits.max_lines,
                });
            }
            if raw.iter().all(|b| *b == b' ' || *b == b'\t') {
                // Blank lines (often a trailing one) carry nothing; they are not SDP lines.
                continue;
            }
            let bad = |reason| SdpError::BadLine {
                line: line_no,
                reason,
            };
            let kind = match raw {
                [kind, b'=', ..] if kind.is_ascii_lowercase() => *kind,
                _ => return Err(bad("not <letter>=<value>")),
            };
            if raw.iter().any(|b| (*b < 0x20 && *b != b'\t') || *b == 0x7f) {
                return Err(bad("control character"));
            }
            // `raw` is `input[line_start..]` and at least two bytes long (matched above).
            let line = Line::received(kind, input.slice(line_start + 2..line_start + raw.len()));
            if !seen_version {
                if line.kind != b'v' || line.value_bytes() != b"0" {
                    return Err(SdpError::MissingVersion);
                }
                seen_version = true;
                sdp.session.push(line);
                continue;
            }
            let text = std::str::from_utf8(line.value_bytes()).ok();
            match line.kind {
                b'v' => return Err(bad("second v= line")),
                b'm' => {
                    let Some(media_line) = text.and_then(parse_media_line) else {
                        return Err(bad("malformed m= line"));
                    };
                    if media_line.formats.split_ascii_whitespace().count() > limits.max_formats {
                        return Err(SdpError::TooManyFormats {
                            limit: limits.max_formats,
                        });
                    }
                    if sdp.media.len() >= limits.max_media {
                        return Err(SdpError::TooManyMedia {
                            limit: limits.max_media,
                        });
                    }
                    sdp.media.push(MediaSection {
                        lines: Vec::with_capacity(16),
                    });
                }
                b'c' if text.and_then(parse_connection).is_none() => {
                    return Err(bad("malformed c= line"));
                }
                b'o' if sdp.media.is_empty() && text.and_then(parse_origin).is_none() => {
                    return Err(bad("malformed o= line"));
                }
                _ => {}
            }
            match sdp.media.last_mut() {
                Some(section) => section.lines.push(line),
                None => sdp.session.push(line),
            }
        }
        if !seen_version {
            return Err(SdpError::MissingVersion);
        }
        Ok(sdp)
    }

    pub(crate) fn from_parts(session: Vec<Line>, media: Vec<MediaSection>) -> Sdp {
        Sdp { session, media }
    }

    /// Serialises with CRLF line ends.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.write_to(&mut out);
        out
    }

    /// Appends the CRLF serialisation to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        for line in self.lines() {
            line.write_to(out);
        }
    }

    /// Exact length of [`Sdp::to_bytes`] (for Content-Length without serialising twice).
    pub fn encoded_len(&self) -> usize {
        self.lines().map(|l| l.value.len() + 4).sum()
    }

    /// All lines in order, session level first.
    pub fn lines(&self) -> impl Iterator<Item = &Line> {
        self.session
            .iter()
            .chain(self.media.iter().flat_map(|m| m.lines.iter()))
    }

    /// Session-level lines (from `v=` up to the first `m=`).
    pub fn session_lines(&self) -> &[Line] {
        &self.session
    }

    pub(crate) fn session_lines_mut(&mut self) -> &mut Vec<Line> {
        &mut self.session
    }

    /// Media sections in order.
    pub fn media(&self) -> &[MediaSection] {
        &self.media
    }

    /// The `o=` line, if present.
    pub fn origin(&self) -> Option<Origin<'_>> {
        self.session
            .iter()
            .find(|l| l.kind == b'o')
            .and_then(|l| parse_origin(l.value()))
    }

    /// Session-level `c=`.
    pub fn session_connection(&self) -> Option<Connection> {
        first_connection(&self.session)
    }

    /// Connection of media section `index`: media-level `c=` overrides session-level.
    pub fn connection_of(&self, index: usize) -> Option<Connection> {
        self.media
            .get(index)
            .and_then(MediaSection::connection)
            .or_else(|| self.session_connection())
    }

    /// Session-level attribute value by name (`Some("")` for a flag attribute).
    pub fn session_attribute(&self, name: &str) -> Option<&str> {
        attribute_value(&self.session, name)
    }

    /// `a=ice-lite` at session level.
    pub fn is_ice_lite(&self) -> bool {
        self.session_attribute("ice-lite").is_some()
    }

    /// Session-level direction attribute.
    pub fn session_direction(&self) -> Option<Direction> {
        direction_in(&self.session)
    }

    /// Direction of media section `index`: media-level overrides session-level; `None` if
    /// neither says (which means sendrecv).
    pub fn direction_of(&self, index: usize) -> Option<Direction> {
        self.media
            .get(index)
            .and_then(MediaSection::direction)
            .or_else(|| self.session_direction())
    }

    /// ICE ufrag of media section `index` (media level, else session level).
    pub fn ice_ufrag_of(&self, index: usize) -> Option<&str> {
        self.media
            .get(index)
            .and_then(|m| m.attribute("ice-ufrag"))
            .or_else(|| self.session_attribute("ice-ufrag"))
    }

    /// ICE password of media section `index` (media level, else session level).
    pub fn ice_pwd_of(&self, index: usize) -> Option<&str> {
        self.media
            .get(index)
            .and_then(|m| m.attribute("ice-pwd"))
            .or_else(|| self.session_attribute("ice-pwd"))
    }

    /// Index of the stream the SBC anchors: the first `m=audio` with a non-zero port.
    pub fn primary_audio_index(&self) -> Option<usize> {
        self.primary_audio().map(|(index, _)| index)
    }

    /// The stream the SBC anchors and its index (see [`Sdp::primary_audio_index`]).
    pub fn primary_audio(&self) -> Option<(usize, &MediaSection)> {
        self.media
            .iter()
            .enumerate()
            .find(|(_, m)| m.media_type().eq_ignore_ascii_case("audio") && m.port() != 0)
    }
}

impl MediaSection {
    pub(crate) fn from_lines(lines: Vec<Line>) -> MediaSection {
        MediaSection { lines }
    }

    /// All lines of the section, `m=` first.
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    fn media_line(&self) -> Option<MediaLine<'_>> {
        self.lines.first().and_then(|l| parse_media_line(l.value()))
    }

    /// `audio`, `video`, `image`, `application`, ...
    pub fn media_type(&self) -> &str {
        self.media_line().map_or("", |m| m.media)
    }

    pub fn port(&self) -> u16 {
        self.media_line().map_or(0, |m| m.port)
    }

    /// `m=audio 49170/2 ...` -> `Some(2)`.
    pub fn port_count(&self) -> Option<u16> {
        self.media_line().and_then(|m| m.port_count)
    }

    /// Transport profile as written: `RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVP`, ...
    pub fn profile(&self) -> &str {
        self.media_line().map_or("", |m| m.proto)
    }

    /// True for the SRTP profiles (`RTP/SAVP`, `RTP/SAVPF`, `UDP/TLS/RTP/SAVP[F]`).
    pub fn is_secure_profile(&self) -> bool {
        self.profile().contains("SAVP")
    }

    /// The format list of the `m=` line as written (for RTP: payload type numbers).
    pub fn format_list(&self) -> &str {
        self.media_line().map_or("", |m| m.formats)
    }

    /// Format tokens in order.
    pub fn formats(&self) -> impl Iterator<Item = &str> {
        self.format_list().split_ascii_whitespace()
    }

    /// Numeric RTP payload types of the `m=` line, in order (non-numeric formats skipped).
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats().filter_map(attr::parse_pt)
    }

    /// Media-level `c=`.
    pub fn connection(&self) -> Option<Connection> {
        first_connection(&self.lines)
    }

    /// Attribute lines of this section as `(name, value)`.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.lines.iter().filter_map(Line::attribute)
    }

    /// First attribute with this name: `Some("")` for a flag, `Some(value)` otherwise.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        attribute_value(&self.lines, name)
    }

    /// All `a=rtpmap` entries that parse.
    pub fn rtpmaps(&self) -> impl Iterator<Item = Codec<'_>> {
        self.attributes()
            .filter(|(n, _)| *n == "rtpmap")
            .filter_map(|(_, v)| v.and_then(parse_rtpmap))
    }

    /// Codec of payload type `pt`: its first `a=rtpmap`, else the static RFC 3551 entry.
    pub fn codec(&self, pt: u8) -> Option<Codec<'_>> {
        self.rtpmaps()
            .find(|c| c.pt == pt)
            .or_else(|| static_codec(pt))
    }

    /// Format parameters (`a=fmtp:<pt> <params>`) of payload type `pt`.
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.attributes()
            .filter(|(n, _)| *n == "fmtp")
            .filter_map(|(_, v)| v.and_then(attr::leading_pt))
            .find(|(p, _)| *p == pt)
            .map(|(_, params)| params.trim_end())
    }

    /// Payload types of the `m=` line with their codec (when known) and fmtp, in order.
    pub fn payloads(&self) -> impl Iterator<Item = (u8, Option<Codec<'_>>, Option<&str>)> {
        // One pass over the attributes instead of one per payload type.
        let mut rtpmaps: SmallVec<[Codec<'_>; 16]> = SmallVec::new();
        let mut fmtps: SmallVec<[(u8, &str); 16]> = SmallVec::new();
        for (name, value) in self.attributes() {
            match (name, value) {
                ("rtpmap", Some(v)) => rtpmaps.extend(parse_rtpmap(v)),
                ("fmtp", Some(v)) => fmtps.extend(attr::leading_pt(v)),
                _ => {}
            }
        }
        self.payload_types().map(move |pt| {
            let codec = rtpmaps
                .iter()
                .find(|c| c.pt == pt)
                .copied()
                .or_else(|| static_codec(pt));
            let fmtp = fmtps
                .iter()
                .find(|(p, _)| *p == pt)
                .map(|(_, f)| f.trim_end());
            (pt, codec, fmtp)
        })
    }

    /// Codecs of the `m=` line in order, each payload type once, unknown ones left out.
    pub fn codecs(&self) -> SmallVec<[Codec<'_>; 16]> {
        let mut rtpmaps: SmallVec<[Codec<'_>; 16]> = SmallVec::new();
        for (name, value) in self.attributes() {
            if let ("rtpmap", Some(v)) = (name, value) {
                rtpmaps.extend(parse_rtpmap(v));
            }
        }
        let mut out: SmallVec<[Codec<'_>; 16]> = SmallVec::new();
        for pt in self.payload_types() {
            if out.iter().any(|c| c.pt == pt) {
                continue;
            }
            let codec = rtpmaps
                .iter()
                .find(|c| c.pt == pt)
                .copied()
                .or_else(|| static_codec(pt));
            out.extend(codec);
        }
        out
    }

    /// Well-formed `a=crypto` lines in order (malformed ones are skipped).
    pub fn crypto(&self) -> impl Iterator<Item = CryptoAttr<'_>> {
        self.attributes()
            .filter(|(n, _)| *n == "crypto")
            .filter_map(|(_, v)| v.and_then(parse_crypto))
    }

    /// Media-level ICE ufrag (see [`Sdp::ice_ufrag_of`] for the session fallback).
    pub fn ice_ufrag(&self) -> Option<&str> {
        self.attribute("ice-ufrag")
    }

    /// Media-level ICE password.
    pub fn ice_pwd(&self) -> Option<&str> {
        self.attribute("ice-pwd")
    }

    /// Well-formed `a=candidate` lines.
    pub fn candidates(&self) -> impl Iterator<Item = Candidate<'_>> {
        self.attributes()
            .filter(|(n, _)| *n == "candidate")
            .filter_map(|(_, v)| v.and_then(parse_candidate))
    }

    /// `a=rtcp-mux` present.
    pub fn rtcp_mux(&self) -> bool {
        self.attribute("rtcp-mux").is_some()
    }

    /// `a=rtcp:<port> [IN IP4 <addr>]`.
    pub fn rtcp(&self) -> Option<RtcpAttr> {
        self.attribute("rtcp").and_then(parse_rtcp)
    }

    /// Media-level direction attribute (see [`Sdp::direction_of`] for the session fallback).
    pub fn direction(&self) -> Option<Direction> {
        direction_in(&self.lines)
    }

    /// `a=ptime` in milliseconds.
    pub fn ptime(&self) -> Option<u32> {
        self.attribute("ptime").and_then(|v| v.trim().parse().ok())
    }

    /// `a=maxptime` in milliseconds.
    pub fn maxptime(&self) -> Option<u32> {
        self.attribute("maxptime")
            .and_then(|v| v.trim().parse().ok())
    }
}

fn attribute_colon(kind: u8, value: &[u8]) -> u32 {
    if kind != b'a' {
        return NO_COLON;
    }
    memchr::memchr(b':', value)
        .and_then(|i| u32::try_from(i).ok())
        .unwrap_or(NO_COLON)
}

fn first_connection(lines: &[Line]) -> Option<Connection> {
    lines
        .iter()
        .find(|l| l.kind == b'c')
        .and_then(|l| parse_connection(l.value()))
}

fn attribute_value<'a>(lines: &'a [Line], name: &str) -> Option<&'a str> {
    lines
        .iter()
        .filter_map(Line::attribute)
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.unwrap_or(""))
}

fn direction_in(lines: &[Line]) -> Option<Direction> {
    lines
        .iter()
        .filter_map(Line::attribute)
        .find_map(|(n, v)| v.is_none().then(|| Direction::from_attribute(n)).flatten())
}
