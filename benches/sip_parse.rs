//! `Message::parse` against rsip 0.4 on the same Teams-style INVITE (1258 bytes, of which a
//! 525-byte SDP with SDES crypto lines), in one criterion run: group `parse_invite`,
//! functions `teams-sbc` and `rsip`. Run with `cargo bench --bench sip_parse`.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use teams_sbc::sip::{Limits, Message, StreamFramer};

/// What Microsoft's SIP proxy sends towards an SBC (upper-case header names as it writes
/// them), with an SRTP offer.
const TEAMS_INVITE: &str = concat!(
    "INVITE sip:+14255550100@sbc1.customer.example.com:5061;user=phone;transport=tls SIP/2.0\r\n",
    "FROM: <sip:+14255550199@sip.pstnhub.microsoft.com:5061;user=phone>;tag=a3e2b0fc1b2d4a4f\r\n",
    "TO: <sip:+14255550100@sbc1.customer.example.com:5061;user=phone>\r\n",
    "CSEQ: 1 INVITE\r\n",
    "CALL-ID: 5b3a9f0e2c1d4e6fa7b8c9d0e1f2a3b4\r\n",
    "MAX-FORWARDS: 70\r\n",
    "VIA: SIP/2.0/TLS 52.114.148.0:5061;branch=z9hG4bKc4d6f2a1\r\n",
    "RECORD-ROUTE: <sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls;lr>\r\n",
    "CONTACT: <sip:api-du-a-usea.pstnhub.microsoft.com:443;x-i=5c1f0a3e7d2b4c8e>\r\n",
    "CONTENT-LENGTH: 525\r\n",
    "SUPPORTED: timer\r\n",
    "USER-AGENT: Microsoft.PSTNHub.SIPProxy v.2024.10.1.2\r\n",
    "CONTENT-TYPE: application/sdp\r\n",
    "SESSION-EXPIRES: 3600\r\n",
    "ALLOW: INVITE, ACK, OPTIONS, CANCEL, BYE, NOTIFY\r\n",
    "\r\n",
    "v=0\r\n",
    "o=- 75839 0 IN IP4 52.114.148.10\r\n",
    "s=session\r\n",
    "c=IN IP4 52.114.148.10\r\n",
    "b=CT:10000000\r\n",
    "t=0 0\r\n",
    "m=audio 49152 RTP/SAVP 0 8 9 103 104 101\r\n",
    "a=rtcp:49153\r\n",
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WbN8m3nLq2vX9kZ7yR4tP1sQ6uA0cD5eF8gH2jK3|2^31|1:1\r\n",
    "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:Zq3xY7wV1uT5sR9pO2nM6lK0jI4hG8fE3dC7bA1z|2^31\r\n",
    "a=rtpmap:0 PCMU/8000\r\n",
    "a=rtpmap:8 PCMA/8000\r\n",
    "a=rtpmap:9 G722/8000\r\n",
    "a=rtpmap:103 SILK/8000\r\n",
    "a=rtpmap:104 SILK/16000\r\n",
    "a=rtpmap:101 telephone-event/8000\r\n",
    "a=fmtp:101 0-16\r\n",
    "a=ptime:20\r\n",
    "a=sendrecv\r\n",
);

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
