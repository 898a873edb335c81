use std::io::Write;
use std::sync::Arc;

use super::*;
use crate::routing::CallDirection;

fn labels() -> CallLabels {
    CallLabels::new(
        Some(Arc::from("acme")),
        Some(Arc::from("pstn")),
        CallDirection::Inbound,
    )
}

fn traces(settings: TraceSettings) -> (CallTraces, Registry) {
    let registry = Registry::new();
    (CallTraces::new(settings, &registry).unwrap(), registry)
}

fn gauge(registry: &Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .map(|m| m.get_gauge().get_value() + m.get_counter().get_value())
        .sum()
}

fn evictions(registry: &Registry, what: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "call_trace_evictions_total")
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| m.get_label().iter().any(|l| l.value() == what))
        .map(|m| m.get_counter().get_value())
        .sum()
}

fn request(method: &str, extra: &str, body: &str) -> String {
    format!(
        "{method} sip:+4930123450@sip.pstnhub.microsoft.com SIP/2.0\r\n\
         Via: SIP/2.0/TLS acme.sbc.example.test:5061;branch=z9hG4bK{method}\r\n\
         From: <sip:+4969111222@acme.sbc.example.test>;tag=a\r\n\
         To: <sip:+4930123450@sip.pstnhub.microsoft.com>;tag=b\r\n\
         Call-ID: teams-1\r\nCSeq: 2 {method}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn response(status: &str, extra: &str) -> String {
    format!(
        "SIP/2.0 {status}\r\n\
         Via: SIP/2.0/TLS acme.sbc.example.test:5061;branch=z9hG4bKINVITE\r\n\
         From: <sip:+4969111222@acme.sbc.example.test>;tag=a\r\n\
         To: <sip:+4930123450@sip.pstnhub.microsoft.com>;tag=b\r\n\
         Call-ID: teams-1\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

fn parse(text: &str) -> Message {
    Message::parse(
        Bytes::from(text.to_string()),
        &crate::sip::Limits::default(),
    )
    .unwrap()
}

fn peer() -> Option<SocketAddr> {
    Some("127.0.0.3:5061".parse().unwrap())
}

/// Record `text` as received on `leg` (parsed, as the dispatcher has it).
fn received(traces: &CallTraces, key: CallKey, leg: LegId, text: &str, now: Instant) {
    let msg = parse(text);
    traces.record(
        key,
        now,
        Recorded {
            direction: TraceDirection::Received,
            leg,
            transport: TransportKind::Tls,
            peer: peer(),
            raw: msg.bytes(),
            parsed: Some(&msg),
        },
    );
}

fn sent(traces: &CallTraces, key: CallKey, leg: LegId, text: &str, now: Instant) {
    traces.record(
        key,
        now,
        Recorded {
            direction: TraceDirection::Sent,
            leg,
            transport: TransportKind::Udp,
            peer: Some("127.0.0.2:5060".parse().unwrap()),
            raw: text.as_bytes(),
            parsed: None,
        },
    );
}

fn begin(traces: &CallTraces, key: CallKey, now: Instant) {
    traces.begin(
        key,
        &labels(),
        &[
            Bytes::from_static(b"carrier-1"),
            Bytes::from_static(b"teams-1"),
        ],
        now,
    );
}

#[test]
fn row60_both_legs_in_order_with_direction_leg_peer_and_offsets() {
    let (traces, registry) = traces(TraceSettings::default());
    let t0 = Instant::now();
    let key = CallKey(7);
    begin(&traces, key, t0);
    received(&traces, key, LegId::Carrier, &request("INVITE", "", ""), t0);
    sent(
        &traces,
        key,
        LegId::Teams,
        &request("INVITE", "", "v=0\r\n"),
        t0 + Duration::from_millis(3),
    );
    received(
        &traces,
        key,
        LegId::Teams,
        &response("180 Ringing", ""),
        t0 + Duration::from_millis(250),
    );
    let trace = traces.get(key).unwrap();
    assert_eq!(trace.call_ids, ["carrier-1", "teams-1"]);
    assert_eq!(
        (trace.tenant.as_str(), trace.trunk.as_str()),
        ("acme", "pstn")
    );
    assert_eq!(trace.direction, "inbound");
    let summary: Vec<_> = trace
        .messages
        .iter()
        .map(|m| {
            (
                m.direction,
                m.leg,
                m.text.lines().next().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                TraceDirection::Received,
                LegId::Carrier,
                "INVITE sip:+4930123450@sip.pstnhub.microsoft.com SIP/2.0".to_string()
            ),
            (
                TraceDirection::Sent,
                LegId::Teams,
                "INVITE sip:+4930123450@sip.pstnhub.microsoft.com SIP/2.0".to_string()
            ),
            (
                TraceDirection::Received,
                LegId::Teams,
                "SIP/2.0 180 Ringing".to_string()
            ),
        ]
    );
    assert_eq!(trace.messages[2].offset, Duration::from_millis(250));
    assert_eq!(
        trace.messages[1].peer,
        Some("127.0.0.2:5060".parse().unwrap())
    );
    assert!(
        trace.messages[1].text.ends_with("\n\nv=0\n"),
        "{}",
        trace.messages[1].text
    );
    assert_eq!(gauge(&registry, "call_traces"), 1.0);
    assert_eq!(gauge(&registry, "call_trace_bytes"), trace.bytes() as f64);
    assert!(traces.find_by_call_id("teams-1").is_some());
    traces.add_call_id(key, b"transfer-2");
    assert_eq!(traces.find_by_call_id("transfer-2").unwrap().key, key);
    assert!(traces.find_by_call_id("nobody").is_none());
    assert_eq!(traces.keys(), [key]);
}

#[test]
fn row60_a_call_keeps_its_first_message_and_the_newest_within_its_budget() {
    let settings = TraceSettings {
        call_messages: 4,
        ..TraceSettings::default()
    };
    let (traces, registry) = traces(settings);
    let now = Instant::now();
    let key = CallKey(1);
    begin(&traces, key, now);
    received(
        &traces,
        key,
        LegId::Carrier,
        &request("INVITE", "", ""),
        now,
    );
    for n in 0..6 {
        received(
            &traces,
            key,
            LegId::Teams,
            &request("INFO", &format!("X-N: {n}\r\n"), ""),
            now,
        );
    }
    let trace = traces.get(key).unwrap();
    assert_eq!(trace.messages.len(), 4);
    assert!(trace.messages[0].text.starts_with("INVITE "));
    let kept: Vec<bool> = (3..6)
        .map(|n| {
            trace
                .messages
                .iter()
                .any(|m| m.text.contains(&format!("X-N: {n}\n")))
        })
        .collect();
    assert_eq!(kept, [true, true, true], "the three newest");
    assert_eq!(trace.dropped, 3);
    assert_eq!(evictions(&registry, "message"), 3.0);

    // Bytes: a budget of about two messages keeps the first and the newest.
    let one = request("INFO", "X-N: 0\r\n", "").len();
    let settings = TraceSettings {
        call_bytes: 2 * (one + MESSAGE_OVERHEAD) + 10,
        ..TraceSettings::default()
    };
    let (traces, _) = super::tests::traces(settings);
    begin(&traces, key, now);
    for n in 0..5 {
        received(
            &traces,
            key,
            LegId::Teams,
            &request("INFO", &format!("X-N: {n}\r\n"), ""),
            now,
        );
    }
    let trace = traces.get(key).unwrap();
    let numbers: Vec<&str> = trace
        .messages
        .iter()
        .filter_map(|m| m.text.lines().find(|l| l.starts_with("X-N: ")))
        .collect();
    assert_eq!(numbers, ["X-N: 0", "X-N: 4"]);
    assert!(trace.bytes() - TRACE_OVERHEAD <= settings.call_bytes);
}

#[test]
fn row60_a_message_larger_than_the_budget_is_cut_and_zero_keeps_none() {
    let settings = TraceSettings {
        call_bytes: 300,
        ..TraceSettings::default()
    };
    let (traces, _) = traces(settings);
    let now = Instant::now();
    begin(&traces, CallKey(1), now);
    let huge = request("INVITE", &"X-Big: yes\r\n".repeat(100), "");
    received(&traces, CallKey(1), LegId::Teams, &huge, now);
    let trace = traces.get(CallKey(1)).unwrap();
    assert_eq!(trace.messages.len(), 1);
    assert!(trace.messages[0].text.len() + MESSAGE_OVERHEAD <= 300);
    assert!(trace.messages[0].body_omitted > 0);

    // Nothing kept, but Microsoft's diagnostics still are.
    let settings = TraceSettings {
        call_bytes: 0,
        ..TraceSettings::default()
    };
    let (traces, _) = super::tests::traces(settings);
    begin(&traces, CallKey(1), now);
    received(
        &traces,
        CallKey(1),
        LegId::Teams,
        &response("403 Forbidden", "X-MS-Diagnostics: 510532;reason=\"x\"\r\n"),
        now,
    );
    let trace = traces.get(CallKey(1)).unwrap();
    assert!(trace.messages.is_empty());
    assert_eq!(trace.dropped, 1);
    assert_eq!(trace.microsoft.code(), Some(MicrosoftCode(510532)));
}

#[test]
fn row60_only_microsofts_messages_give_microsoft_diagnostics_and_bye_reasons_decide_failure() {
    let (traces, _) = traces(TraceSettings::default());
    let now = Instant::now();
    let key = CallKey(3);
    begin(&traces, key, now);
    // A carrier's Reason is not Microsoft's; neither is what we send to Microsoft.
    received(
        &traces,
        key,
        LegId::Carrier,
        &response("486 Busy Here", "Reason: Q.850;cause=17\r\n"),
        now,
    );
    sent(
        &traces,
        key,
        LegId::Teams,
        &response("486 Busy Here", "Reason: Q.850;cause=17\r\n"),
        now,
    );
    assert!(traces.get(key).unwrap().microsoft.is_empty());
    // A normal BYE from Teams: not a failure.
    received(
        &traces,
        key,
        LegId::Teams,
        &request("BYE", "Reason: Q.850;cause=16\r\n", ""),
        now,
    );
    let trace = traces.get(key).unwrap();
    assert_eq!(trace.microsoft.reasons, ["Q.850;cause=16"]);
    assert_eq!(trace.abnormal_bye, None);
    // Our own BYE towards the carrier with an abnormal cause is parsed from its bytes.
    sent(
        &traces,
        key,
        LegId::Carrier,
        &request("BYE", "Reason: Q.850;cause=41\r\n", ""),
        now,
    );
    assert_eq!(
        traces.get(key).unwrap().abnormal_bye.as_deref(),
        Some("Q.850;cause=41")
    );
}

#[test]
fn row60_what_counts_as_a_failed_call() {
    let (traces, _) = traces(TraceSettings::default());
    let now = Instant::now();
    let cases = [
        (
            Some(CallOutcome::Failed {
                status: 403,
                reason: EndReason::Rejected,
            }),
            true,
        ),
        (
            Some(CallOutcome::Failed {
                status: 503,
                reason: EndReason::AllTargetsFailed,
            }),
            true,
        ),
        (
            Some(CallOutcome::Failed {
                status: 487,
                reason: EndReason::CancelledByCaller,
            }),
            false,
        ),
        (
            Some(CallOutcome::Failed {
                status: 487,
                reason: EndReason::NoAnswer,
            }),
            true,
        ),
        (
            Some(CallOutcome::Ended {
                reason: EndReason::ByeFromTeams,
            }),
            false,
        ),
        (
            Some(CallOutcome::Ended {
                reason: EndReason::ByeFromCarrier,
            }),
            false,
        ),
        (
            Some(CallOutcome::Ended {
                reason: EndReason::MediaInactive,
            }),
            true,
        ),
        (
            Some(CallOutcome::Ended {
                reason: EndReason::SessionExpired,
            }),
            true,
        ),
        (
            Some(CallOutcome::Ended {
                reason: EndReason::Operator,
            }),
            false,
        ),
        (
            Some(CallOutcome::Failed {
                status: 480,
                reason: EndReason::Operator,
            }),
            false,
        ),
        (
            Some(CallOutcome::Ended {
                reason: EndReason::Drained,
            }),
            true,
        ),
        (None, false),
    ];
    for (n, (outcome, failed)) in cases.into_iter().enumerate() {
        let key = CallKey(n as u64);
        begin(&traces, key, now);
        traces.end(key, outcome, now);
        assert_eq!(traces.get(key).unwrap().failed(), failed, "{outcome:?}");
    }
    let key = CallKey(100);
    begin(&traces, key, now);
    received(
        &traces,
        key,
        LegId::Teams,
        &request(
            "BYE",
            "Reason: Q.850;cause=22;text=\"IceConnectivityChecksFailed\"\r\n",
            "",
        ),
        now,
    );
    traces.end(
        key,
        Some(CallOutcome::Ended {
            reason: EndReason::ByeFromTeams,
        }),
        now,
    );
    assert!(traces.get(key).unwrap().failed(), "an abnormal BYE Reason");
}

#[test]
fn row60_ended_traces_are_kept_for_the_keep_time_within_the_total_budget() {
    let settings = TraceSettings {
        keep: Duration::from_secs(60),
        kept_bytes: 3 * TRACE_OVERHEAD,
        ..TraceSettings::default()
    };
    let (traces, registry) = traces(settings);
    let t0 = Instant::now();
    for n in 1..=3 {
        begin(&traces, CallKey(n), t0);
        traces.end(CallKey(n), None, t0 + Duration::from_secs(n));
    }
    assert_eq!(traces.keys(), [CallKey(1), CallKey(2), CallKey(3)]);
    // A fourth ended trace is over the budget: the oldest gives way.
    begin(&traces, CallKey(4), t0);
    traces.end(CallKey(4), None, t0 + Duration::from_secs(4));
    assert_eq!(traces.keys(), [CallKey(2), CallKey(3), CallKey(4)]);
    assert_eq!(evictions(&registry, "trace"), 1.0);
    // Calls in progress are never expired; ended ones go after the keep time.
    begin(&traces, CallKey(5), t0);
    begin(&traces, CallKey(6), t0 + Duration::from_millis(62_500));
    assert_eq!(
        traces.keys(),
        [CallKey(3), CallKey(4), CallKey(5), CallKey(6)]
    );
    assert_eq!(
        evictions(&registry, "trace"),
        1.0,
        "expiry is not an eviction"
    );
    assert_eq!(gauge(&registry, "call_traces"), 4.0);
    assert_eq!(
        gauge(&registry, "call_trace_bytes"),
        (4 * TRACE_OVERHEAD) as f64
    );
    // Nothing is recorded into an ended trace.
    received(
        &traces,
        CallKey(4),
        LegId::Teams,
        &response("200 OK", ""),
        t0,
    );
    assert!(traces.get(CallKey(4)).unwrap().messages.is_empty());
}

/// Collects what a tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn json_lines(captured: &Captured) -> Vec<serde_json::Value> {
    let bytes = captured.0.lock().unwrap().clone();
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Row 60, the log format: a failed call gives one structured line (Call-IDs, tenant, trunk,
/// status, Microsoft's Reason and diagnostics with its code's origin and meaning) and the
/// trace as multi-line text; a tenant's second trace within the interval is not logged (its
/// failure line is), and a call that did not fail logs nothing.
#[test]
fn row60_failed_call_log_line_and_trace_rate_limited_per_tenant() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let (traces, _) = traces(TraceSettings {
        log_interval: Duration::from_secs(3600),
        ..TraceSettings::default()
    });
    let now = Instant::now();
    tracing::subscriber::with_default(subscriber, || {
        for n in 1..=2 {
            let key = CallKey(n);
            begin(&traces, key, now);
            sent(
                &traces,
                key,
                LegId::Teams,
                &request(
                    "INVITE",
                    "",
                    "v=0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3|2^31\r\n",
                ),
                now,
            );
            received(
                &traces,
                key,
                LegId::Teams,
                &response(
                    "403 Forbidden",
                    "Reason: Q.850;cause=21;text=\"x;NoTrunk\"\r\n\
                     X-MS-Diagnostics: 510532;reason=\"No trunk config was found\"\r\n",
                ),
                now,
            );
            traces.end(
                key,
                Some(CallOutcome::Failed {
                    status: 403,
                    reason: EndReason::Rejected,
                }),
                now,
            );
        }
        begin(&traces, CallKey(3), now);
        traces.end(
            CallKey(3),
            Some(CallOutcome::Ended {
                reason: EndReason::ByeFromCarrier,
            }),
            now,
        );
    });
    let lines = json_lines(&captured);
    let failures: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "call failed")
        .collect();
    assert_eq!(failures.len(), 2, "{lines:#?}");
    let first = failures[0];
    assert_eq!(first["call"], 1);
    assert_eq!(first["call_ids"], "carrier-1 teams-1");
    assert_eq!(first["tenant"], "acme");
    assert_eq!(first["trunk"], "pstn");
    assert_eq!(first["direction"], "inbound");
    assert_eq!(first["status"], 403);
    assert_eq!(first["end"], "rejected");
    assert_eq!(first["ms_reason"], "Q.850;cause=21;text=\"x;NoTrunk\"");
    assert_eq!(
        first["ms_diagnostics"],
        "510532;reason=\"No trunk config was found\""
    );
    assert_eq!(first["ms_code"], 510532);
    assert_eq!(first["ms_code_from"], "microsoft");
    assert!(first["ms_hint"].as_str().unwrap().contains("Contact FQDN"));

    let traced: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "call SIP trace")
        .collect();
    assert_eq!(
        traced.len(),
        1,
        "the second trace of acme waits: {lines:#?}"
    );
    assert_eq!(traced[0]["call"], 1);
    let text = traced[0]["trace"].as_str().unwrap();
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("call 1 (inbound, tenant acme, trunk pstn), started "),
        "{text}"
    );
    assert!(
        text.contains(" teams -> tls ") || text.contains(" teams -> udp "),
        "{text}"
    );
    assert!(
        text.contains(" teams <- tls 127.0.0.3:5061\nSIP/2.0 403 Forbidden\n"),
        "{text}"
    );
    assert!(text.contains("inline:[redacted]|2^31"), "{text}");
    assert!(!text.contains("QUJDR"), "no SRTP key in logs: {text}");
}
