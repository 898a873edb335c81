//! What a call detail record costs: on the SIP core, the messages of one answered call shown
//! to its `CallLife` and the record built at its end (`sip_core`); on the file sink's thread,
//! the record serialized to its JSON line (`serialize`). Run with `cargo bench --bench cdr`;
//! compare with the SIP core's time per call (`scripts/bench-calls.sh sbc sbc-nocdr`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use teams_sbc::call::{Direction, EndReason, LegId};
use teams_sbc::cdr::{CallLife, EndFacts, Ending, Numbers};
use teams_sbc::media::{LegStats, SessionStats};
use teams_sbc::sip::{Limits, Message};

fn message(text: &str) -> Message {
    let text = text.replace('\n', "\r\n");
    Message::parse(Bytes::from(text), &Limits::default()).expect("parses")
}

fn response(status: u16, method: &str, body: &str) -> Message {
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\n"
    };
    message(&format!(
        "SIP/2.0 {status} OK\nVia: SIP/2.0/TLS 10.0.0.1:5061;branch=z9hG4bK-1\n\
         From: <sip:+4969111222@acme.sbc.example>;tag=a\nTo: <sip:+4930123450@sip.pstnhub.microsoft.com>;tag=b\n\
         Call-ID: 1234567890abcdef@10.0.0.1\nCSeq: 1 {method}\n{content_type}Content-Length: {}\n\n{body}",
        body.len()
    ))
}

const ANSWER: &str = "v=0\no=- 1 1 IN IP4 52.112.0.10\ns=-\nc=IN IP4 52.112.0.10\nt=0 0\n\
m=audio 5000 RTP/SAVP 0 101\na=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\n";

fn one_call() -> teams_sbc::cdr::CallDetailRecord {
    let t0 = Instant::now();
    let numbers = Numbers {
        calling_received: "+4969111222".into(),
        called_received: "+4930123450".into(),
        calling_sent: "+4969111222".into(),
        called_sent: "+4930123450".into(),
    };
    let mut life = CallLife::new(Direction::Inbound, t0, numbers, false);
    life.on_hop(
        LegId::Teams,
        None,
        "sip.pstnhub.microsoft.com:5061".into(),
        None,
    );
    for msg in MESSAGES.with(|m| m.clone()) {
        life.on_message(LegId::Teams, false, &msg, t0);
    }
    life.on_media_stats(SessionStats {
        carrier: LegStats {
            rx_packets: 3000,
            rx_bytes: 516_000,
            ..LegStats::default()
        },
        teams: LegStats::default(),
    });
    let facts = EndFacts {
        call: 1,
        tenant: "acme".into(),
        trunk: "pstn".into(),
        carrier_call_id: "carrier-call-id@10.0.0.2".into(),
        teams_call_id: "teams-call-id@acme.sbc.example".into(),
        ..EndFacts::default()
    };
    let ending = Ending {
        status: Some(200),
        reason: Some(EndReason::ByeFromCarrier),
        answered: true,
    };
    life.finish(facts, ending, t0 + Duration::from_secs(60))
}

thread_local! {
    /// 100, 180, 200 with SDP, and the 200 to our BYE: what the called side answers.
    static MESSAGES: Vec<Message> = vec![
        response(100, "INVITE", ""),
        response(180, "INVITE", ""),
        response(200, "INVITE", ANSWER),
        response(200, "BYE", ""),
    ];
}

fn cdr(c: &mut Criterion) {
    c.bench_function("cdr/sip_core_per_call", |b| {
        b.iter(|| black_box(one_call()))
    });
    let record = one_call();
    c.bench_function("cdr/serialize_line", |b| {
        b.iter(|| serde_json::to_vec(black_box(&record)))
    });
}

criterion_group!(benches, cdr);
criterion_main!(benches);
