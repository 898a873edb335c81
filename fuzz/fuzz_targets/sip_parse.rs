//! Message::parse on arbitrary bytes and StreamFramer on arbitrary chunkings, checking
//! the invariants other modules rely on: no panic, a parsed message re-parses from its
//! own bytes to the same index, what parse-time validation promises holds, built answers
//! parse, and the framer never buffers beyond its cap nor frames beyond the size limit.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use teams_sbc::sip::{
    FrameEvent, HeaderName, Limits, Message, ParseErrorKind, ResponseBuilder, StreamFramer,
};

const LIMITS: Limits = Limits {
    max_message_bytes: 4096,
    max_headers: 32,
    max_header_line_bytes: 1024,
};

fuzz_target!(|data: &[u8]| {
    check_datagram(data);
    check_framing(data);
});

fn check_datagram(data: &[u8]) {
    match Message::parse(Bytes::copy_from_slice(data), &LIMITS) {
        Ok(m) => {
            // The kept bytes are the datagram up to the end of Content-Length.
            assert!(data.starts_with(m.bytes()));
            let again = Message::parse(m.bytes().clone(), &LIMITS).expect("re-parse");
            assert_eq!(again.header_entries(), m.header_entries());
            assert_eq!(again.body(), m.body());
            assert_eq!(again.start_line(), m.start_line());
            for e in m.header_entries() {
                assert!(e.line_range.end <= m.bytes().len());
                assert!(e.name_range.start == e.line_range.start);
                assert!(e.value_range.end <= e.line_range.end);
                // Header text is UTF-8 without NUL, and a CR only ends a line or a fold.
                let value = &m.bytes()[e.value_range.clone()];
                assert!(std::str::from_utf8(value).is_ok());
                assert!(!value.contains(&0));
                assert!(value
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b != b'\r' || value.get(i + 1) == Some(&b'\n')));
            }
            // Validated at parse time.
            assert!(m.top_via().is_ok());
            assert!(m.cseq().is_ok());
            assert!(m.call_id().is_some_and(|c| !c.is_empty()));
            // Read lazily: may fail, must not panic.
            let _ = (
                m.vias(),
                m.from(),
                m.to(),
                m.contacts(),
                m.routes(),
                m.record_routes(),
            );
            let _ = (
                m.max_forwards(),
                m.content_length(),
                m.header_values(&HeaderName::Allow),
            );
            if m.is_request() {
                let answer = ResponseBuilder::new(&m, 400, "Fuzz").to_tag("t1").build();
                let parsed = Message::parse(answer, &Limits::default()).expect("answer parses");
                assert_eq!(parsed.status(), Some(400));
                assert_eq!(parsed.call_id(), m.call_id());
            }
            let edited = m.edit().set(&HeaderName::MaxForwards, b"69").finish();
            let parsed = Message::parse(edited, &Limits::default()).expect("edited parses");
            assert_eq!(parsed.body(), m.body());
        }
        Err(e) => {
            let answer =
                ResponseBuilder::error_for_raw(data, e.kind.status(), &e.response_reason());
            // An incomplete message is never answered even when its headers are readable.
            if e.can_respond {
                assert!(answer.is_some());
            }
            if let Some(answer) = answer {
                assert!(answer.starts_with(b"SIP/2.0 "));
                // Lines with a NUL or a bare CR are never copied into an answer.
                assert!(!answer.contains(&0));
                assert!(answer
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b != b'\r' || answer.get(i + 1) == Some(&b'\n')));
            }
            assert!(e.kind != ParseErrorKind::Incomplete || !e.can_respond);
        }
    }
}

/// Frames `data` pushed in `chunk`-byte pieces; the messages framed (not the keep-alive
/// events, which legitimately depend on how CRLFs are split) must not depend on chunking.
fn frames(data: &[u8], chunk: usize) -> (Vec<Bytes>, bool) {
    let mut framer = StreamFramer::new(LIMITS);
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        framer.push(piece);
        loop {
            match framer.next_event() {
                Ok(Some(FrameEvent::Message(frame))) => {
                    assert!(frame.len() <= LIMITS.max_message_bytes);
                    let _ = Message::parse(frame.clone(), &LIMITS);
                    out.push(frame);
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
        assert!(framer.buffered() <= 2 * LIMITS.max_message_bytes);
    }
    (out, false)
}

fn check_framing(data: &[u8]) {
    let chunk = usize::from(data.first().copied().unwrap_or(0) % 13) + 1;
    let (whole, whole_failed) = frames(data, data.len().max(1));
    let (pieces, pieces_failed) = frames(data, chunk);
    if !whole_failed && !pieces_failed {
        // A lone CRLF seen at the end of one read is a pong; in the whole buffer it may be
        // half of a ping. Both are keep-alives, so the messages are the same either way.
        assert_eq!(whole, pieces);
    }
}
