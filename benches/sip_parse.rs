//! `Message::parse` against rsip 0.4 on the same Teams-style INVITE (1258 bytes, of which a
//! 525-byte SDP with SDES crypto lines), in one criterion run: group `parse_invite`,
//! functions `teams-sbc` and `rsip`. Run with `cargo bench --bench sip_parse`.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use teams_sbc::sip::{Limits, Message, StreamFramer};

/// What Microsoft's SIP proxy sends towards an SBC (upper-case header names as it writes
/// them), with an SRTP offer.
const TEAMS_INVITE: &str = include_str!("../tests/data/teams_invite.sip");

fn parse_invite(c: &mut Criterion) {
    let wire = Bytes::copy_from_slice(TEAMS_INVITE.as_bytes());
    let limits = Limits::default();
    // The bench only means something if both parsers accept the message.
    let ours = Message::parse(wire.clone(), &limits).expect("teams-sbc parses the INVITE");
    assert_eq!(ours.body().len(), 525);
    assert!(rsip::SipMessage::try_from(TEAMS_INVITE.as_bytes()).is_ok());

    let mut group = c.benchmark_group("parse_invite");
    group.bench_function("teams-sbc", |b| {
        b.iter(|| Message::parse(black_box(wire.clone()), &limits))
    });
    group.bench_function("rsip", |b| {
        b.iter(|| rsip::SipMessage::try_from(black_box(&wire[..])))
    });
    group.finish();
}

/// The typed accessors the transaction and call layers use on every INVITE.
fn typed_access(c: &mut Criterion) {
    let message = Message::parse(
        Bytes::copy_from_slice(TEAMS_INVITE.as_bytes()),
        &Limits::default(),
    )
    .expect("parses");
    c.bench_function("typed_access/via_from_to_cseq_contact", |b| {
        b.iter(|| {
            let m = black_box(&message);
            (m.top_via(), m.from(), m.to(), m.cseq(), m.contacts())
        })
    });
}

/// Framing a TCP/TLS stream of pipelined INVITEs read in 1400-byte segments.
fn stream_framing(c: &mut Criterion) {
    let stream: Vec<u8> = TEAMS_INVITE.repeat(16).into_bytes();
    c.bench_function("stream_framer/16_invites_1400b_reads", |b| {
        b.iter(|| {
            let mut framer = StreamFramer::new(Limits::default());
            let mut frames = 0;
            for segment in stream.chunks(1400) {
                framer.push(segment);
                while let Ok(Some(_)) = framer.next_event() {
                    frames += 1;
                }
            }
            assert_eq!(frames, 16);
        })
    });
}

criterion_group!(benches, parse_invite, typed_access, stream_framing);
criterion_main!(benches);
