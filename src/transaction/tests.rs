//! Transaction layer tests with a simulated clock: `t0` plus offsets advanced by hand.
//! Every test asserts which outputs appear after which advance, never wall-clock time.

use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus::Registry;

use super::*;
use crate::sip::{Limits, Message};

type Layer = TransactionLayer<&'static str>;

const PEER: &str = "peer";

/// A request as a test writes it.
#[derive(Clone)]
struct Req {
    method: &'static str,
    cseq_method: &'static str,
    cseq: u32,
    transport: &'static str,
    sent_by: &'static str,
    /// `None`: RFC 2543 Via without a branch.
    branch: Option<&'static str>,
    call_id: &'static str,
    to_tag: Option<&'static str>,
}

impl Req {
    fn new(method: &'static str, transport: &'static str) -> Req {
        Req {
            method,
            cseq_method: method,
            cseq: 1,
            transport,
            sent_by: "client.example.net:5060",
            branch: Some("z9hG4bKtest1"),
            call_id: "call-1@client.example.net",
            to_tag: None,
        }
    }
    fn branch(mut self, branch: Option<&'static str>) -> Req {
        self.branch = branch;
        self
    }
    fn method(mut self, method: &'static str) -> Req {
        self.method = method;
        self.cseq_method = method;
        self
    }
    fn with_to_tag(mut self, tag: &'static str) -> Req {
        self.to_tag = Some(tag);
        self
    }

    fn via(&self) -> String {
        match self.branch {
            Some(branch) => format!(
                "SIP/2.0/{} {};branch={}",
                self.transport, self.sent_by, branch
            ),
            None => format!("SIP/2.0/{} {}", self.transport, self.sent_by),
        }
    }
    fn to(&self, tag: Option<&str>) -> String {
        match tag {
            Some(tag) => format!("<sip:+14255550100@sbc.example.net>;tag={tag}"),
            None => "<sip:+14255550100@sbc.example.net>".to_string(),
        }
    }

    fn text(&self) -> String {
        format!(
            "{} sip:+14255550100@sbc.example.net SIP/2.0\r\n\
             Via: {}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:+12065550123@client.example.net>;tag=from1\r\n\
             To: {}\r\n\
             Call-ID: {}\r\n\
             CSeq: {} {}\r\n\
             Content-Length: 0\r\n\r\n",
            self.method,
            self.via(),
            self.to(self.to_tag),
            self.call_id,
            self.cseq,
            self.cseq_method
        )
    }

    fn msg(&self) -> Message {
        parse(self.text())
    }

    /// A response to this request as the far end (or our TU) would write it.
    fn response_text(&self, status: u16, to_tag: Option<&str>) -> String {
        format!(
            "SIP/2.0 {status} Reason\r\n\
             Via: {}\r\n\
             From: <sip:+12065550123@client.example.net>;tag=from1\r\n\
             To: {}\r\n\
             Call-ID: {}\r\n\
             CSeq: {} {}\r\n\
             Content-Length: 0\r\n\r\n",
            self.via(),
            self.to(to_tag.or(self.to_tag)),
            self.call_id,
            self.cseq,
            self.cseq_method
        )
    }

    fn response(&self, status: u16) -> Message {
        parse(self.response_text(status, Some("uas1")))
    }

    fn response_bytes(&self, status: u16) -> Bytes {
        Bytes::from(self.response_text(status, Some("uas1")))
    }
}

fn parse(text: String) -> Message {
    Message::parse(Bytes::from(text), &Limits::default()).unwrap()
}

struct Harness {
    layer: Layer,
    t0: Instant,
    metrics: TransactionMetrics,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_settings(TransactionSettings::default())
    }
    fn with_settings(settings: TransactionSettings) -> Harness {
        let metrics = TransactionMetrics::register(&Registry::new()).unwrap();
        Harness {
            layer: TransactionLayer::new(settings, metrics.clone()),
            t0: Instant::now(),
            metrics,
        }
    }
    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }
    fn drain(&mut self) -> Vec<Output<&'static str>> {
        let mut out = Vec::new();
        for _ in 0..1000 {
            match self.layer.poll_output() {
                Some(o) => out.push(o),
                None => return out,
            }
        }
        panic!("output queue did not drain");
    }
    /// Fire timers due at `ms` and return what came out.
    fn advance(&mut self, ms: u64) -> Vec<Output<&'static str>> {
        let now = self.at(ms);
        self.layer.handle_timeout(now);
        self.drain()
    }
    /// Offset (ms from t0) of the next timer.
    fn next_timeout_ms(&mut self) -> Option<u64> {
        self.layer
            .poll_timeout()
            .map(|at| u64::try_from(at.duration_since(self.t0).as_millis()).unwrap())
    }
    fn incoming(&mut self, ms: u64, msg: Message) -> Vec<Output<&'static str>> {
        let now = self.at(ms);
        self.layer.on_incoming(now, msg, PEER);
        self.drain()
    }
}

/// First lines of transmitted messages, in order.
fn sent(outputs: &[Output<&'static str>]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Transmit { bytes, .. } => Some(first_line(bytes)),
            Output::Deliver(_) => None,
        })
        .collect()
}

fn first_line(bytes: &Bytes) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines().next().unwrap_or_default().to_string()
}

fn events(outputs: &[Output<&'static str>]) -> Vec<TuEvent<&'static str>> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Deliver(e) => Some(e.clone()),
            Output::Transmit { .. } => None,
        })
        .collect()
}

fn transmitted(outputs: &[Output<&'static str>]) -> Vec<Message> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Transmit { bytes, .. } => {
                Some(Message::parse(bytes.clone(), &Limits::default()).unwrap())
            }
            Output::Deliver(_) => None,
        })
        .collect()
}

fn is_terminated(events: &[TuEvent<&'static str>], id: TxId) -> bool {
    events
        .iter()
        .any(|e| matches!(e, TuEvent::Terminated { tx } if *tx == id))
}

/// Walk the timer schedule: each step must be the next timer, and fire exactly `expect_sent`.
fn expect_retransmits(h: &mut Harness, times_ms: &[u64], first_line: &str) {
    for &ms in times_ms {
        assert_eq!(
            h.next_timeout_ms(),
            Some(ms),
            "next timer should be at {ms} ms"
        );
        assert!(h.advance(ms - 1).is_empty(), "nothing before {ms} ms");
        let out = h.advance(ms);
        assert_eq!(
            sent(&out),
            vec![first_line.to_string()],
            "retransmit at {ms} ms"
        );
        assert!(events(&out).is_empty());
    }
}

// ---- client INVITE -------------------------------------------------------------------------

#[test]
fn client_invite_timer_a_doubles_without_cap_and_timer_b_times_out() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "UDP");
    let tx = h.layer.send_request(h.at(0), invite.msg(), PEER).unwrap();
    let out = h.drain();
    assert_eq!(
        sent(&out),
        vec!["INVITE sip:+14255550100@sbc.example.net SIP/2.0"]
    );
    // A: T1, 2T1, 4T1, 8T1, 16T1, 32T1 after each previous send (no T2 cap for INVITE).
    expect_retransmits(
        &mut h,
        &[500, 1500, 3500, 7500, 15500, 31500],
        "INVITE sip:+14255550100@sbc.example.net SIP/2.0",
    );
    assert_eq!(h.next_timeout_ms(), Some(32_000), "Timer B = 64*T1");
    let out = h.advance(32_000);
    assert!(sent(&out).is_empty());
    let ev = events(&out);
    assert!(matches!(ev[0], TuEvent::Timeout { tx: t, timer: Timer::B } if t == tx));
    assert!(is_terminated(&ev, tx));
    assert_eq!(h.metrics.retransmissions.get(), 6);
    assert_eq!(h.metrics.timeouts.with_label_values(&["B"]).get(), 1);
    assert!(h.layer.is_empty());
    assert_eq!(h.layer.poll_timeout(), None);
}

#[test]
fn client_invite_reliable_has_no_timer_a_but_timer_b() {
    let mut h = Harness::new();
    let tx = h
        .layer
        .send_request(h.at(0), Req::new("INVITE", "TLS").msg(), PEER)
        .unwrap();
    assert_eq!(sent(&h.drain()).len(), 1);
    assert_eq!(h.next_timeout_ms(), Some(32_000));
    let out = h.advance(32_000);
    assert!(
        sent(&out).is_empty(),
        "no retransmission on a reliable transport"
    );
    assert!(matches!(events(&out)[0], TuEvent::Timeout { tx: t, timer: Timer::B } if t == tx));
}

#[test]
fn client_invite_provisional_stops_retransmission_and_timer_b() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "UDP");
    let tx = h.layer.send_request(h.at(0), invite.msg(), PEER).unwrap();
    h.drain();
    let out = h.incoming(100, invite.response(180));
    assert!(
        matches!(&events(&out)[0], TuEvent::Response { tx: t, msg, .. } if *t == tx && msg.status() == Some(180))
    );
    assert_eq!(
        h.next_timeout_ms(),
        Some(100 + 300_000),
        "no A, no B; only the Timer C guard"
    );
    assert!(h.advance(60_000).is_empty());
    // Each provisional restarts C.
    h.incoming(60_000, invite.response(183));
    assert_eq!(h.next_timeout_ms(), Some(360_000));
    assert!(h.advance(359_999).is_empty());
    let ev = events(&h.advance(360_000));
    assert!(matches!(ev[0], TuEvent::Timeout { tx: t, timer: Timer::C } if t == tx));
    assert!(is_terminated(&ev, tx));
}

#[test]
fn client_invite_non_2xx_is_acked_by_the_transaction_and_timer_d_cleans_up() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "UDP");
    let tx = h.layer.send_request(h.at(0), invite.msg(), PEER).unwrap();
    h.drain();
    let out = h.incoming(200, invite.response(486));
    let acks = transmitted(&out);
    assert_eq!(acks.len(), 1);
    let ack = &acks[0];
    assert_eq!(ack.method(), Some(&crate::sip::Method::Ack));
    assert_eq!(
        ack.request_uri().unwrap().raw().as_ref(),
        b"sip:+14255550100@sbc.example.net"
    );
    assert_eq!(
        ack.top_via().unwrap().branch.as_deref(),
        Some(&b"z9hG4bKtest1"[..])
    );
    assert_eq!(ack.vias().unwrap().len(), 1);
    assert_eq!(
        ack.to().unwrap().tag.as_deref(),
        Some(&b"uas1"[..]),
        "To from the response"
    );
    assert_eq!(ack.from().unwrap().tag.as_deref(), Some(&b"from1"[..]));
    let cseq = ack.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (1, crate::sip::Method::Ack));
    assert_eq!(
        ack.call_id().as_deref(),
        Some(&b"call-1@client.example.net"[..])
    );
    assert!(
        matches!(&events(&out)[0], TuEvent::Response { tx: t, msg, .. } if *t == tx && msg.status() == Some(486))
    );

    // The 486 again: our ACK was lost. Re-ACK, do not bother the TU.
    let out = h.incoming(1_000, invite.response(486));
    assert_eq!(
        sent(&out),
        vec!["ACK sip:+14255550100@sbc.example.net SIP/2.0"]
    );
    assert!(events(&out).is_empty());

    assert_eq!(
        h.next_timeout_ms(),
        Some(200 + 32_000),
        "Timer D = 32 s on UDP"
    );
    assert!(h.advance(32_199).is_empty());
    let out = h.advance(32_200);
    assert_eq!(events(&out).len(), 1);
    assert!(is_terminated(&events(&out), tx));
}

#[test]
fn client_invite_non_2xx_on_reliable_transport_terminates_at_once() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "TCP");
    let tx = h.layer.send_request(h.at(0), invite.msg(), PEER).unwrap();
    h.drain();
    let out = h.incoming(10, invite.response(503));
    assert_eq!(
        sent(&out),
        vec!["ACK sip:+14255550100@sbc.example.net SIP/2.0"]
    );
    let ev = events(&out);
    assert!(matches!(&ev[0], TuEvent::Response { .. }));
    assert!(
        is_terminated(&ev, tx),
        "Timer D is zero on reliable transports"
    );
}

#[test]
fn client_invite_2xx_and_its_retransmissions_go_to_the_tu_until_timer_m() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "UDP");
    let tx = h.layer.send_request(h.at(0), invite.msg(), PEER).unwrap();
    h.drain();
    let out = h.incoming(300, invite.response(200));
    assert!(
        sent(&out).is_empty(),
        "the TU ACKs a 2xx, not the transaction"
    );
    assert!(
        matches!(&events(&out)[0], TuEvent::Response { tx: t, msg, .. } if *t == tx && msg.status() == Some(200))
    );
    let out = h.incoming(800, invite.response(200));
    assert!(matches!(&events(&out)[0], TuEvent::Response { tx: t, .. } if *t == tx));
    assert_eq!(h.next_timeout_ms(), Some(300 + 32_000), "Timer M = 64*T1");
    let out = h.advance(32_300);
    let ev = events(&out);
    assert_eq!(ev.len(), 1, "no timeout event for M, only termination");
    assert!(is_terminated(&ev, tx));
    // After M a stray 2xx is dropped.
    assert!(h.incoming(40_000, invite.response(200)).is_empty());
    assert_eq!(h.metrics.stray.get(), 1);
}

#[test]
fn response_with_other_cseq_method_does_not_match_invite_transaction() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "UDP");
    h.layer.send_request(h.at(0), invite.msg(), PEER).unwrap();
    h.drain();
    let mut cancel = invite.clone();
    cancel.cseq_method = "CANCEL";
    assert!(h.incoming(100, cancel.response(200)).is_empty());
    assert_eq!(h.metrics.stray.get(), 1);
}

// ---- client non-INVITE ---------------------------------------------------------------------

#[test]
fn client_non_invite_timer_e_doubles_to_t2_and_timer_f_times_out() {
    let mut h = Harness::new();
    let options = Req::new("OPTIONS", "UDP");
    let tx = h.layer.send_request(h.at(0), options.msg(), PEER).unwrap();
    assert_eq!(sent(&h.drain()).len(), 1);
    expect_retransmits(
        &mut h,
        &[
            500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500,
        ],
        "OPTIONS sip:+14255550100@sbc.example.net SIP/2.0",
    );
    assert_eq!(h.next_timeout_ms(), Some(32_000), "Timer F = 64*T1");
    let out = h.advance(32_000);
    let ev = events(&out);
    assert!(matches!(ev[0], TuEvent::Timeout { tx: t, timer: Timer::F } if t == tx));
    assert!(is_terminated(&ev, tx));
    assert_eq!(h.metrics.timeouts.with_label_values(&["F"]).get(), 1);
}

#[test]
fn client_non_invite_in_proceeding_retransmits_every_t2() {
    let mut h = Harness::new();
    let bye = Req::new("BYE", "UDP");
    h.layer.send_request(h.at(0), bye.msg(), PEER).unwrap();
    h.drain();
    let out = h.incoming(100, bye.response(100));
    assert!(matches!(&events(&out)[0], TuEvent::Response { msg, .. } if msg.status() == Some(100)));
    expect_retransmits(
        &mut h,
        &[500, 4500, 8500],
        "BYE sip:+14255550100@sbc.example.net SIP/2.0",
    );
}

#[test]
fn client_non_invite_final_response_then_timer_k() {
    let mut h = Harness::new();
    let options = Req::new("OPTIONS", "UDP");
    let tx = h.layer.send_request(h.at(0), options.msg(), PEER).unwrap();
    h.drain();
    let out = h.incoming(100, options.response(200));
    assert!(matches!(&events(&out)[0], TuEvent::Response { tx: t, .. } if *t == tx));
    assert!(
        h.incoming(200, options.response(200)).is_empty(),
        "retransmitted final absorbed"
    );
    assert_eq!(
        h.next_timeout_ms(),
        Some(100 + 5_000),
        "Timer K = T4 on UDP"
    );
    let out = h.advance(5_100);
    assert!(is_terminated(&events(&out), tx));
}

#[test]
fn client_non_invite_reliable_no_timer_e_and_k_is_zero() {
    let mut h = Harness::new();
    let options = Req::new("OPTIONS", "TLS");
    let tx = h.layer.send_request(h.at(0), options.msg(), PEER).unwrap();
    h.drain();
    assert_eq!(h.next_timeout_ms(), Some(32_000), "only Timer F");
    let out = h.incoming(100, options.response(404));
    let ev = events(&out);
    assert!(matches!(&ev[0], TuEvent::Response { .. }));
    assert!(is_terminated(&ev, tx));
}

#[test]
fn configured_t1_t2_t4_change_the_schedule() {
    let settings = TransactionSettings {
        t1: Duration::from_millis(100),
        t2: Duration::from_millis(300),
        t4: Duration::from_millis(700),
        ..TransactionSettings::default()
    };
    let mut h = Harness::with_settings(settings);
    let options = Req::new("OPTIONS", "UDP");
    let tx = h.layer.send_request(h.at(0), options.msg(), PEER).unwrap();
    h.drain();
    expect_retransmits(
        &mut h,
        &[100, 300, 600, 900],
        "OPTIONS sip:+14255550100@sbc.example.net SIP/2.0",
    );
    h.incoming(950, options.response(200));
    assert_eq!(h.next_timeout_ms(), Some(950 + 700), "K = T4");
    assert!(is_terminated(&events(&h.advance(1_650)), tx));
}

#[test]
fn transport_error_terminates_the_transaction_with_an_event() {
    let mut h = Harness::new();
    let tx = h
        .layer
        .send_request(h.at(0), Req::new("INVITE", "TLS").msg(), PEER)
        .unwrap();
    let out = h.drain();
    assert!(matches!(out[0], Output::Transmit { tx: Some(t), .. } if t == tx));
    h.layer.on_transport_error(h.at(5), tx);
    let ev = events(&h.drain());
    assert!(matches!(ev[0], TuEvent::TransportError { tx: t } if t == tx));
    assert!(is_terminated(&ev, tx));
    assert!(h.layer.is_empty());
    assert_eq!(h.layer.poll_timeout(), None);
}

#[test]
fn send_request_refuses_ack_missing_branch_and_duplicates() {
    let mut h = Harness::new();
    let now = h.at(0);
    assert_eq!(
        h.layer
            .send_request(now, Req::new("ACK", "UDP").msg(), PEER),
        Err(TxError::NotARequest)
    );
    assert_eq!(
        h.layer
            .send_request(now, Req::new("INVITE", "UDP").branch(None).msg(), PEER),
        Err(TxError::BadVia)
    );
    h.layer
        .send_request(now, Req::new("INVITE", "UDP").msg(), PEER)
        .unwrap();
    assert_eq!(
        h.layer
            .send_request(now, Req::new("INVITE", "UDP").msg(), PEER),
        Err(TxError::Duplicate)
    );
    // CANCEL reuses the INVITE's branch but is its own transaction.
    h.layer
        .send_request(now, Req::new("INVITE", "UDP").method("CANCEL").msg(), PEER)
        .unwrap();
}

// ---- server INVITE -------------------------------------------------------------------------

fn new_server_tx(h: &mut Harness, req: &Req) -> TxId {
    let out = h.incoming(0, req.msg());
    match events(&out).as_slice() {
        [TuEvent::Request { tx, .. }] => *tx,
        other => panic!("expected one new request, got {other:?}"),
    }
}

#[test]
fn server_invite_sends_100_trying_at_once_and_absorbs_retransmissions() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "UDP");
    let out = h.incoming(0, invite.msg());
    assert_eq!(sent(&out), vec!["SIP/2.0 100 Trying"]);
    let trying = &transmitted(&out)[0];
    assert_eq!(
        trying.top_via().unwrap().branch.as_deref(),
        Some(&b"z9hG4bKtest1"[..])
    );
    assert_eq!(
        trying.to().unwrap().tag,
        None,
        "100 Trying carries no To tag"
    );
    let tx = match &events(&out)[..] {
        [TuEvent::Request {
            tx,
            cancels: None,
            source,
            ..
        }] if *source == PEER => *tx,
        other => panic!("unexpected {other:?}"),
    };
    // Retransmission: 100 again, no second request for the TU.
    let out = h.incoming(500, invite.msg());
    assert_eq!(sent(&out), vec!["SIP/2.0 100 Trying"]);
    assert!(events(&out).is_empty());
    // The TU rings; a retransmission now repeats the 180.
    h.layer
        .send_response(h.at(600), tx, invite.response_bytes(180))
        .unwrap();
    assert_eq!(sent(&h.drain()), vec!["SIP/2.0 180 Reason"]);
    let out = h.incoming(1_500, invite.msg());
    assert_eq!(sent(&out), vec!["SIP/2.0 180 Reason"]);
    assert_eq!(h.metrics.retransmissions.get(), 2);
    assert_eq!(
        h.next_timeout_ms(),
        Some(300_000),
        "Proceeding waits for the TU, guarded"
    );
}

#[test]
fn server_invite_the_tu_never_answers_gets_408_after_timer_c() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "TLS");
    let tx = new_server_tx(&mut h, &invite);
    assert!(h.advance(299_999).is_empty());
    let out = h.advance(300_000);
    assert_eq!(sent(&out), vec!["SIP/2.0 408 Request Timeout"]);
    assert!(
        matches!(events(&out)[..], [TuEvent::Timeout { tx: t, timer: Timer::Unanswered }] if t == tx)
    );
    assert_eq!(
        h.layer
            .send_response(h.at(300_001), tx, invite.response_bytes(200)),
        Err(TxError::AlreadyFinal)
    );
    // Completed as after any non-2xx: the ACK ends it (reliable: Timer I = 0).
    let ack = invite.clone().method("ACK").with_to_tag("uas1");
    assert!(is_terminated(&events(&h.incoming(300_100, ack.msg())), tx));
}

#[test]
fn server_non_invite_the_tu_never_answers_is_dropped_after_64_t1() {
    let mut h = Harness::new();
    let tx = new_server_tx(&mut h, &Req::new("INFO", "UDP"));
    assert_eq!(h.next_timeout_ms(), Some(32_000));
    let out = h.advance(32_000);
    assert!(sent(&out).is_empty(), "no 408 for non-INVITE (RFC 4320)");
    let ev = events(&out);
    assert!(matches!(ev[0], TuEvent::Timeout { tx: t, timer: Timer::Unanswered } if t == tx));
    assert!(is_terminated(&ev, tx));
}

#[test]
fn server_invite_non_2xx_timer_g_doubles_to_t2_and_timer_h_times_out() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "UDP");
    let tx = new_server_tx(&mut h, &invite);
    h.layer
        .send_response(h.at(0), tx, invite.response_bytes(486))
        .unwrap();
    assert_eq!(sent(&h.drain()), vec!["SIP/2.0 486 Reason"]);
    expect_retransmits(
        &mut h,
        &[
            500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500,
        ],
        "SIP/2.0 486 Reason",
    );
    let out = h.advance(32_000);
    let ev = events(&out);
    assert!(matches!(ev[0], TuEvent::Timeout { tx: t, timer: Timer::H } if t == tx));
    assert!(is_terminated(&ev, tx));
}

#[test]
fn server_invite_ack_matches_and_timer_i_cleans_up() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "UDP");
    let tx = new_server_tx(&mut h, &invite);
    h.layer
        .send_response(h.at(0), tx, invite.response_bytes(486))
        .unwrap();
    h.drain();
    // An INVITE retransmission in Completed repeats the final response.
    assert_eq!(
        sent(&h.incoming(200, invite.msg())),
        vec!["SIP/2.0 486 Reason"]
    );
    // The hop-by-hop ACK has the INVITE's branch: absorbed by the transaction.
    let ack = invite.clone().method("ACK").with_to_tag("uas1");
    let out = h.incoming(300, ack.msg());
    assert!(
        out.is_empty(),
        "ACK for non-2xx is not passed to the TU: {out:?}"
    );
    assert_eq!(
        h.next_timeout_ms(),
        Some(300 + 5_000),
        "G and H stop, Timer I = T4"
    );
    assert!(
        h.incoming(400, ack.msg()).is_empty(),
        "ACK retransmission absorbed"
    );
    assert!(is_terminated(&events(&h.advance(5_300)), tx));
}

#[test]
fn server_invite_reliable_no_timer_g_and_ack_terminates_at_once() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "TCP");
    let tx = new_server_tx(&mut h, &invite);
    h.layer
        .send_response(h.at(0), tx, invite.response_bytes(404))
        .unwrap();
    h.drain();
    assert_eq!(h.next_timeout_ms(), Some(32_000), "only Timer H");
    let out = h.incoming(100, invite.clone().method("ACK").with_to_tag("uas1").msg());
    assert!(
        is_terminated(&events(&out), tx),
        "Timer I is zero on reliable transports"
    );
}

#[test]
fn server_invite_2xx_is_retransmitted_until_the_ack_arrives() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "UDP");
    let tx = new_server_tx(&mut h, &invite);
    h.layer
        .send_response(h.at(0), tx, invite.response_bytes(200))
        .unwrap();
    assert_eq!(sent(&h.drain()), vec!["SIP/2.0 200 Reason"]);
    expect_retransmits(&mut h, &[500, 1500], "SIP/2.0 200 Reason");
    // An INVITE retransmission in Accepted is absorbed (RFC 6026).
    assert!(h.incoming(1_600, invite.msg()).is_empty());
    // The ACK for a 2xx has a new branch; it reaches the TU and stops the retransmission.
    let ack = invite
        .clone()
        .method("ACK")
        .branch(Some("z9hG4bKack2"))
        .with_to_tag("uas1");
    let out = h.incoming(2_000, ack.msg());
    assert!(matches!(&events(&out)[..], [TuEvent::Ack { tx: Some(t), .. }] if *t == tx));
    assert_eq!(h.next_timeout_ms(), Some(32_000), "only Timer L left");
    let out = h.advance(32_000);
    let ev = events(&out);
    assert_eq!(ev.len(), 1, "no AckTimeout after an ACK: {ev:?}");
    assert!(is_terminated(&ev, tx));
}

#[test]
fn server_invite_2xx_without_ack_reports_ack_timeout_at_timer_l() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "TLS");
    let tx = new_server_tx(&mut h, &invite);
    h.layer
        .send_response(h.at(0), tx, invite.response_bytes(200))
        .unwrap();
    h.drain();
    assert_eq!(
        h.next_timeout_ms(),
        Some(32_000),
        "no 2xx retransmission on TLS, only L"
    );
    let ev = events(&h.advance(32_000));
    assert!(matches!(ev[0], TuEvent::AckTimeout { tx: t } if t == tx));
    assert!(is_terminated(&ev, tx));
    assert_eq!(h.metrics.timeouts.with_label_values(&["L"]).get(), 1);
}

#[test]
fn ack_without_any_transaction_goes_to_the_tu() {
    let mut h = Harness::new();
    let ack = Req::new("ACK", "UDP").with_to_tag("x");
    let out = h.incoming(0, ack.msg());
    assert!(matches!(&events(&out)[..], [TuEvent::Ack { tx: None, .. }]));
    assert!(h.layer.is_empty(), "ACK never creates a transaction");
}

#[test]
fn send_response_after_a_final_response_is_refused() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "UDP");
    let tx = new_server_tx(&mut h, &invite);
    h.layer
        .send_response(h.at(0), tx, invite.response_bytes(486))
        .unwrap();
    assert_eq!(
        h.layer
            .send_response(h.at(1), tx, invite.response_bytes(200)),
        Err(TxError::AlreadyFinal)
    );
    assert_eq!(
        h.layer
            .send_response(h.at(1), TxId(999), invite.response_bytes(200)),
        Err(TxError::UnknownTransaction)
    );
    assert_eq!(
        h.layer
            .send_response(h.at(1), tx, Bytes::from_static(b"garbage")),
        Err(TxError::BadResponse)
    );
}

// ---- server non-INVITE ---------------------------------------------------------------------

#[test]
fn server_non_invite_absorbs_retransmissions_and_timer_j_cleans_up() {
    let mut h = Harness::new();
    let options = Req::new("OPTIONS", "UDP");
    let out = h.incoming(0, options.msg());
    assert!(sent(&out).is_empty(), "no 100 for non-INVITE");
    let tx = match &events(&out)[..] {
        [TuEvent::Request { tx, .. }] => *tx,
        other => panic!("unexpected {other:?}"),
    };
    assert!(
        h.incoming(100, options.msg()).is_empty(),
        "Trying: retransmission dropped"
    );
    h.layer
        .send_response(h.at(200), tx, options.response_bytes(200))
        .unwrap();
    assert_eq!(sent(&h.drain()), vec!["SIP/2.0 200 Reason"]);
    assert_eq!(
        sent(&h.incoming(700, options.msg())),
        vec!["SIP/2.0 200 Reason"]
    );
    assert_eq!(
        h.next_timeout_ms(),
        Some(200 + 32_000),
        "Timer J = 64*T1 on UDP"
    );
    assert!(h.advance(32_199).is_empty());
    assert!(is_terminated(&events(&h.advance(32_200)), tx));
    // After J the same request is new again.
    let out = h.incoming(40_000, options.msg());
    assert!(matches!(&events(&out)[..], [TuEvent::Request { .. }]));
}

#[test]
fn server_non_invite_provisional_is_repeated_and_reliable_j_is_zero() {
    let mut h = Harness::new();
    let bye = Req::new("BYE", "TCP");
    let tx = new_server_tx(&mut h, &bye);
    h.layer
        .send_response(h.at(10), tx, bye.response_bytes(100))
        .unwrap();
    h.drain();
    assert_eq!(sent(&h.incoming(20, bye.msg())), vec!["SIP/2.0 100 Reason"]);
    h.layer
        .send_response(h.at(30), tx, bye.response_bytes(200))
        .unwrap();
    let out = h.drain();
    assert_eq!(sent(&out), vec!["SIP/2.0 200 Reason"]);
    assert!(is_terminated(&events(&out), tx));
}

// ---- matching ------------------------------------------------------------------------------

#[test]
fn cancel_gets_its_own_transaction_and_names_the_invite_it_cancels() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "UDP");
    let invite_tx = new_server_tx(&mut h, &invite);
    let cancel = invite.clone().method("CANCEL");
    let out = h.incoming(100, cancel.msg());
    assert!(
        sent(&out).is_empty(),
        "CANCEL is not answered by the INVITE transaction"
    );
    let cancel_tx = match &events(&out)[..] {
        [TuEvent::Request {
            tx,
            cancels: Some(target),
            msg,
            ..
        }] => {
            assert_eq!(*target, invite_tx);
            assert_eq!(msg.method(), Some(&crate::sip::Method::Cancel));
            *tx
        }
        other => panic!("unexpected {other:?}"),
    };
    assert_ne!(cancel_tx, invite_tx);
    // A CANCEL for an unknown INVITE (other branch): the TU answers 481.
    let stray = invite.clone().method("CANCEL").branch(Some("z9hG4bKother"));
    assert!(matches!(
        &events(&h.incoming(200, stray.msg()))[..],
        [TuEvent::Request { cancels: None, .. }]
    ));
}

#[test]
fn same_branch_from_another_sent_by_is_another_transaction() {
    let mut h = Harness::new();
    let a = Req::new("INVITE", "UDP");
    let mut b = a.clone();
    b.sent_by = "other.example.net:5060";
    new_server_tx(&mut h, &a);
    let out = h.incoming(10, b.msg());
    assert!(
        matches!(&events(&out)[..], [TuEvent::Request { .. }]),
        "RFC 3261 §17.2.3 sent-by"
    );
    assert_eq!(h.layer.len(), 2);
}

#[test]
fn rfc2543_requests_without_magic_cookie_match_by_dialog_fields() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "UDP").branch(None);
    let tx = new_server_tx(&mut h, &invite);
    // Retransmission matched by Request-URI, From tag, Call-ID, CSeq and Via.
    let out = h.incoming(500, invite.msg());
    assert_eq!(sent(&out), vec!["SIP/2.0 100 Trying"]);
    assert!(events(&out).is_empty());
    // Same fields, other CSeq: a new transaction.
    let mut next = invite.clone();
    next.cseq = 2;
    assert!(matches!(
        &events(&h.incoming(600, next.msg()))[..],
        [TuEvent::Request { .. }]
    ));
    // CANCEL finds its INVITE.
    let cancel = invite.clone().method("CANCEL");
    assert!(matches!(
        &events(&h.incoming(700, cancel.msg()))[..],
        [TuEvent::Request { cancels: Some(t), .. }] if *t == tx
    ));
    // ACK (carrying our To tag) matches the INVITE transaction after a non-2xx.
    h.layer
        .send_response(h.at(800), tx, invite.response_bytes(487))
        .unwrap();
    h.drain();
    let ack = invite.clone().method("ACK").with_to_tag("uas1");
    assert!(h.incoming(900, ack.msg()).is_empty(), "2543 ACK absorbed");
    assert_eq!(h.next_timeout_ms().map(|ms| ms >= 900 + 5_000), Some(true));
}

// ---- limits and metrics --------------------------------------------------------------------

#[test]
fn beyond_max_transactions_new_requests_get_a_stateless_503() {
    let settings = TransactionSettings {
        max_transactions: 1,
        ..TransactionSettings::default()
    };
    let mut h = Harness::with_settings(settings);
    new_server_tx(&mut h, &Req::new("INVITE", "UDP"));
    let second = Req::new("INVITE", "UDP").branch(Some("z9hG4bKsecond"));
    let out = h.incoming(10, second.msg());
    assert!(events(&out).is_empty(), "the TU never sees it");
    assert!(matches!(
        out[0],
        Output::Transmit {
            tx: None,
            dest: PEER,
            ..
        }
    ));
    let resp = &transmitted(&out)[0];
    assert_eq!(resp.status(), Some(503));
    assert!(resp.to().unwrap().tag.is_some());
    assert_eq!(h.metrics.rejected.get(), 1);
    assert_eq!(
        h.layer
            .send_request(h.at(20), Req::new("OPTIONS", "UDP").msg(), PEER),
        Err(TxError::Full)
    );
    // An ACK is never answered, even when full.
    let ack = Req::new("ACK", "UDP")
        .branch(Some("z9hG4bKack9"))
        .with_to_tag("t");
    assert!(sent(&h.incoming(30, ack.msg())).is_empty());
}

/// One sender at its quota gets stateless 503s while another source of the same peer, and
/// other peers, are served; the quota frees as its transactions end.
#[test]
fn a_source_at_its_transaction_quota_gets_503_while_others_are_served() {
    use crate::transport::{Peer, TrunkName};
    let settings = TransactionSettings {
        max_transactions_per_source: 2,
        max_transactions_per_peer: 3,
        ..TransactionSettings::default()
    };
    let mut h = Harness::with_settings(settings);
    let flooder: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    let neighbour: std::net::IpAddr = "192.0.2.2".parse().unwrap();
    let trunk = Payer::Peer(Peer::Carrier(TrunkName::new("trunk0")));
    let offer = |h: &mut Harness, ip, branch: &'static str, peer: &Payer| {
        let req = Req::new("INVITE", "UDP").branch(Some(branch));
        h.layer
            .on_incoming_paid(h.at(0), req.msg(), PEER, [Payer::Source(ip), peer.clone()]);
        h.drain()
    };
    for branch in ["z9hG4bKf1", "z9hG4bKf2"] {
        assert_eq!(events(&offer(&mut h, flooder, branch, &trunk)).len(), 1);
    }
    let out = offer(&mut h, flooder, "z9hG4bKf3", &trunk);
    assert!(
        events(&out).is_empty(),
        "over the source quota: the TU never sees it"
    );
    assert_eq!(transmitted(&out)[0].status(), Some(503));
    assert_eq!(
        h.metrics
            .quota_rejected
            .with_label_values(&["source"])
            .get(),
        1
    );
    // Another address of the same trunk is served until the trunk's own quota.
    assert_eq!(
        events(&offer(&mut h, neighbour, "z9hG4bKn1", &trunk)).len(),
        1
    );
    let out = offer(&mut h, neighbour, "z9hG4bKn2", &trunk);
    assert_eq!(transmitted(&out)[0].status(), Some(503));
    assert_eq!(
        h.metrics.quota_rejected.with_label_values(&["peer"]).get(),
        1
    );
    // Microsoft is another peer: unaffected.
    let out = offer(
        &mut h,
        neighbour,
        "z9hG4bKm1",
        &Payer::Peer(Peer::Microsoft),
    );
    assert_eq!(events(&out).len(), 1);
    assert_eq!(h.layer.live_for(&Payer::Source(flooder)), 2);
    // Transactions that end give their quota back.
    let id = h.layer.live_for(&trunk);
    assert_eq!(id, 3);
    let txs: Vec<TxId> = (1..=6).map(TxId).collect();
    for tx in txs {
        h.layer.terminate(tx);
    }
    h.drain();
    assert_eq!(h.layer.live_for(&Payer::Source(flooder)), 0);
    assert_eq!(h.layer.live_for(&trunk), 0);
    assert_eq!(
        events(&offer(&mut h, flooder, "z9hG4bKf4", &trunk)).len(),
        1
    );
}

/// A transaction belongs to the peer that started it: another peer replaying its branch and
/// sent-by starts a transaction of its own instead of being absorbed as a retransmission
/// (which would answer it with the victim's response, or hand the victim the attacker's).
#[test]
fn a_request_replaying_another_peers_branch_is_its_own_transaction() {
    use crate::transport::{Peer, TrunkName};
    let mut h = Harness::new();
    let victim = Payer::Peer(Peer::Carrier(TrunkName::new("trunk0")));
    let intruder = Payer::Peer(Peer::Carrier(TrunkName::new("trunk1")));
    let source = Payer::Source("192.0.2.1".parse().unwrap());
    let cancel = Req::new("CANCEL", "UDP");
    h.layer.on_incoming_paid(
        h.at(0),
        cancel.msg(),
        PEER,
        [source.clone(), intruder.clone()],
    );
    let first = events(&h.drain());
    assert_eq!(first.len(), 1);
    h.layer.on_incoming_paid(
        h.at(10),
        cancel.msg(),
        PEER,
        [source.clone(), victim.clone()],
    );
    let second = events(&h.drain());
    assert_eq!(second.len(), 1, "the victim's request reaches the TU");
    // The same peer again is a retransmission.
    h.layer.on_incoming_paid(
        h.at(20),
        cancel.msg(),
        PEER,
        [source.clone(), victim.clone()],
    );
    assert!(events(&h.drain()).is_empty());
}

/// Row 59: the responses the layer makes itself carry what the route's peer expects of
/// every response (X-MS-SBC towards Microsoft).
#[test]
fn row59_the_layers_own_100_and_503_carry_the_routes_headers() {
    let settings = TransactionSettings {
        max_transactions: 1,
        ..TransactionSettings::default()
    };
    let metrics = TransactionMetrics::register(&Registry::new()).unwrap();
    let mut h = Harness {
        layer: TransactionLayer::new(settings, metrics.clone()).with_own_response_headers(
            Box::new(|route: &&'static str| {
                if *route == PEER {
                    vec![(crate::sip::HeaderName::XMsSbc, Bytes::from_static(b"V/M/1"))]
                } else {
                    Vec::new()
                }
            }),
        ),
        t0: Instant::now(),
        metrics,
    };
    let out = h.incoming(0, Req::new("INVITE", "UDP").msg());
    let trying = &transmitted(&out)[0];
    assert_eq!(trying.status(), Some(100));
    assert_eq!(
        trying.header(&crate::sip::HeaderName::XMsSbc).as_deref(),
        Some(&b"V/M/1"[..])
    );
    let out = h.incoming(
        10,
        Req::new("INVITE", "UDP").branch(Some("z9hG4bKfull")).msg(),
    );
    let refused = &transmitted(&out)[0];
    assert_eq!(refused.status(), Some(503));
    assert_eq!(
        refused.header(&crate::sip::HeaderName::XMsSbc).as_deref(),
        Some(&b"V/M/1"[..])
    );
}

#[test]
fn metrics_count_created_and_active_transactions() {
    let mut h = Harness::new();
    new_server_tx(&mut h, &Req::new("INVITE", "UDP"));
    new_server_tx(&mut h, &Req::new("OPTIONS", "UDP").branch(Some("z9hG4bKo")));
    h.layer
        .send_request(
            h.at(0),
            Req::new("INVITE", "UDP").branch(Some("z9hG4bKc")).msg(),
            PEER,
        )
        .unwrap();
    h.layer
        .send_request(
            h.at(0),
            Req::new("BYE", "UDP").branch(Some("z9hG4bKb")).msg(),
            PEER,
        )
        .unwrap();
    for kind in [
        "server_invite",
        "server_non_invite",
        "client_invite",
        "client_non_invite",
    ] {
        assert_eq!(
            h.metrics.created.with_label_values(&[kind]).get(),
            1,
            "{kind}"
        );
    }
    assert_eq!(h.metrics.active.get(), 4);
    h.layer.terminate(TxId(1));
    assert_eq!(h.metrics.active.get(), 3);
}

#[test]
fn status_of_reads_only_valid_status_lines() {
    assert_eq!(status_of(b"SIP/2.0 200 OK\r\n"), Some(200));
    assert_eq!(status_of(b"SIP/2.0 100\r\n"), None);
    assert_eq!(status_of(b"SIP/2.0 1000 x"), None);
    assert_eq!(status_of(b"SIP/2.0 099 x"), None);
    assert_eq!(status_of(b"INVITE sip:a SIP/2.0"), None);
}

#[test]
fn new_branch_has_magic_cookie_and_is_fresh() {
    let a = new_branch();
    assert!(a.starts_with("z9hG4bK") && a.len() == 27);
    assert_ne!(a, new_branch());
    assert_ne!(new_tag(), new_tag());
}

/// Whatever the peers and the TU do (or fail to do), every transaction ends and the table
/// empties: each state has a timer that ends it. Seeded, so a failure replays exactly.
#[test]
fn random_traffic_never_leaks_transactions() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const BRANCHES: [&str; 8] = [
        "z9hG4bKr0",
        "z9hG4bKr1",
        "z9hG4bKr2",
        "z9hG4bKr3",
        "z9hG4bKr4",
        "z9hG4bKr5",
        "z9hG4bKr6",
        "z9hG4bKr7",
    ];
    const METHODS: [&str; 4] = ["INVITE", "OPTIONS", "BYE", "CANCEL"];
    const STATUSES: [u16; 6] = [100, 180, 200, 404, 486, 503];
    let mut rng = StdRng::seed_from_u64(0x5bc);
    let mut h = Harness::new();
    let mut server_txs = Vec::new();
    let mut ms = 0u64;
    for _ in 0..5_000 {
        ms += rng.gen_range(0..200);
        let transport = if rng.gen_bool(0.5) { "UDP" } else { "TCP" };
        let mut req = Req::new(METHODS[rng.gen_range(0..METHODS.len())], transport)
            .branch(Some(BRANCHES[rng.gen_range(0..BRANCHES.len())]));
        if rng.gen_bool(0.1) {
            req = req.branch(None);
        }
        match rng.gen_range(0..6) {
            0 => {
                let _ = h.layer.send_request(h.at(ms), req.msg(), PEER);
            }
            1 => {
                let status = STATUSES[rng.gen_range(0..STATUSES.len())];
                h.incoming(ms, req.response(status));
            }
            2 => {
                for event in events(&h.incoming(ms, req.msg())) {
                    if let TuEvent::Request { tx, .. } = event {
                        server_txs.push((tx, req.clone()));
                    }
                }
            }
            3 if !server_txs.is_empty() => {
                let (tx, req) = server_txs.swap_remove(rng.gen_range(0..server_txs.len()));
                let status = STATUSES[rng.gen_range(0..STATUSES.len())];
                let _ = h
                    .layer
                    .send_response(h.at(ms), tx, req.response_bytes(status));
            }
            4 => {
                h.incoming(ms, req.method("ACK").with_to_tag("uas1").msg());
            }
            _ => {
                h.advance(ms);
            }
        }
        h.drain();
    }
    assert!(
        !h.layer.is_empty(),
        "the run should leave live transactions to clean up"
    );
    // Run the clock out: at most one hour of simulated time, step by step.
    for _ in 0..100_000 {
        let Some(next) = h.next_timeout_ms() else {
            break;
        };
        h.advance(next);
    }
    assert!(h.layer.is_empty(), "{} transactions leaked", h.layer.len());
    assert_eq!(h.layer.poll_timeout(), None);
    assert_eq!(h.metrics.active.get(), 0);
}
