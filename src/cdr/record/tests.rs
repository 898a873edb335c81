use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::media::LegStats;

fn msg(text: &str) -> Message {
    let text = text.replace('\n', "\r\n");
    Message::parse(Bytes::from(text), &crate::sip::Limits::default()).unwrap()
}

fn response(status: u16, method: &str, extra: &str, body: &str) -> Message {
    msg(&format!(
        "SIP/2.0 {status} Whatever\nVia: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK1\n\
         From: <sip:a@x>;tag=1\nTo: <sip:b@y>;tag=2\nCall-ID: c1\nCSeq: 1 {method}\n\
         {extra}Content-Length: {}\n\n{body}",
        body.len()
    ))
}

fn bye(reason: &str) -> Message {
    msg(&format!(
        "BYE sip:a@x SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2;branch=z9hG4bK2\nFrom: <sip:a@x>;tag=1\n\
         To: <sip:b@y>;tag=2\nCall-ID: c1\nCSeq: 2 BYE\n{reason}Content-Length: 0\n\n"
    ))
}

const TEAMS_ANSWER: &str = "v=0\no=- 1 1 IN IP4 127.0.0.3\ns=-\nc=IN IP4 127.0.0.3\nt=0 0\n\
m=audio 5000 RTP/SAVP 0 101\na=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\n";

const CARRIER_ANSWER: &str = "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n\
m=audio 6000 RTP/AVP 8\na=rtpmap:8 PCMA/8000\n";

fn numbers() -> Numbers {
    Numbers {
        calling_received: "069111222".into(),
        called_received: "+4930123450".into(),
        calling_sent: "+4969111222".into(),
        called_sent: "+4930123450".into(),
    }
}

fn facts() -> EndFacts {
    EndFacts {
        call: 7,
        tenant: "acme".into(),
        trunk: "pstn".into(),
        carrier_call_id: "carrier-1".into(),
        teams_call_id: "teams-1".into(),
        later_call_ids: vec![],
        microsoft: MicrosoftReport::default(),
    }
}

/// An inbound call answered by Teams after a 180 and hung up by the carrier, with media.
pub(crate) fn sample_record() -> CallDetailRecord {
    let t0 = Instant::now();
    let mut life = CallLife::new(Direction::Inbound, t0, numbers(), false);
    life.on_hop(
        LegId::Teams,
        None,
        "sip.pstnhub.microsoft.com:5061".into(),
        None,
    );
    life.on_message(LegId::Teams, false, &response(100, "INVITE", "", ""), t0);
    let ring = t0 + Duration::from_millis(300);
    life.on_message(LegId::Teams, false, &response(180, "INVITE", "", ""), ring);
    let answer = t0 + Duration::from_millis(2300);
    let ok = response(
        200,
        "INVITE",
        "Content-Type: application/sdp\n",
        TEAMS_ANSWER,
    );
    life.on_message(LegId::Teams, false, &ok, answer);
    let ours = response(
        200,
        "INVITE",
        "Content-Type: application/sdp\n",
        CARRIER_ANSWER,
    );
    life.on_message(LegId::Carrier, true, &ours, answer);
    life.on_message(LegId::Carrier, false, &bye(""), answer);
    life.on_media_stats(SessionStats {
        carrier: LegStats {
            rx_packets: 950,
            rx_bytes: 163_400,
            tx_packets: 1000,
            tx_bytes: 172_000,
            lost: 50,
            jitter: 160,
            ..LegStats::default()
        },
        teams: LegStats::default(),
    });
    let ending = Ending {
        status: Some(200),
        reason: Some(EndReason::ByeFromCarrier),
        answered: true,
    };
    life.finish(facts(), ending, t0 + Duration::from_millis(12_300))
}

#[test]
fn an_answered_call_has_its_times_delays_codecs_and_media() {
    let r = sample_record();
    assert_eq!(r.version, SCHEMA_VERSION);
    assert_eq!(r.id.len(), 36);
    assert_eq!(&r.id[14..15], "4", "UUID v4 form: {}", r.id);
    assert_eq!(r.direction, "inbound");
    assert_eq!(r.outcome, "answered");
    assert_eq!(r.final_status, 200);
    assert_eq!((r.end_reason, r.ended_by), ("bye_carrier", "carrier"));
    assert_eq!(r.post_dial_delay_ms, Some(300));
    assert_eq!(r.duration_ms, 10_000);
    assert!(r.times.first_provisional.is_some() && r.times.answer.is_some());
    assert!(r.times.invite.ends_with('Z'));
    // Answered without a Reason: normal clearing derived from the status.
    assert_eq!(
        (r.q850_cause, r.q850_cause_from),
        (Some(16), Some("status"))
    );
    assert_eq!(r.trunks_tried, vec!["pstn".to_string()]);
    assert_eq!(r.hops.len(), 1);
    assert_eq!(r.hops[0].status, Some(200));
    assert_eq!(r.hops[0].outcome, "answered");
    assert_eq!(r.media.teams.codec.as_deref(), Some("PCMU"));
    assert_eq!(r.media.carrier.codec.as_deref(), Some("PCMA"));
    assert_eq!(
        r.media.srtp_suite.as_deref(),
        Some("AES_CM_128_HMAC_SHA1_80")
    );
    // 50 lost of 1000 expected, jitter 160 units at 8 kHz = 20 ms.
    assert_eq!(r.media.carrier.loss_percent, 5.0);
    assert_eq!(r.media.carrier.jitter_ms, 20.0);
    let mos = r.media.carrier.mos.unwrap();
    assert!((3.0..4.0).contains(&mos), "{mos}");
    assert_eq!(r.media.teams.mos, None, "nothing received on the Teams leg");
}

#[test]
fn a_failover_then_busy_keeps_each_hop_and_the_reasons_cause() {
    let t0 = Instant::now();
    let mut life = CallLife::new(Direction::Outbound, t0, numbers(), true);
    life.on_hop(
        LegId::Carrier,
        Some("pstn-a"),
        "127.0.0.2:5060".into(),
        Some(("+4930123450", "+4969555000")),
    );
    life.on_message(LegId::Carrier, false, &response(503, "INVITE", "", ""), t0);
    life.on_hop(
        LegId::Carrier,
        Some("pstn-b"),
        "127.0.0.6:5060".into(),
        Some(("004930123450", "069555000")),
    );
    life.on_hop_failure("timeout");
    life.on_hop(
        LegId::Carrier,
        Some("pstn-c"),
        "127.0.0.7:5060".into(),
        None,
    );
    let busy = response(486, "INVITE", "Reason: Q.850;cause=17;text=\"busy\"\n", "");
    life.on_message(LegId::Carrier, false, &busy, t0);
    // Our own 486 to Teams carries the same cause; the first one stays.
    let ours = response(486, "INVITE", "Reason: Q.850;cause=34\n", "");
    life.on_message(LegId::Teams, true, &ours, t0);
    let ending = Ending {
        status: Some(486),
        reason: Some(EndReason::Rejected),
        answered: false,
    };
    let r = life.finish(facts(), ending, t0 + Duration::from_millis(800));
    assert_eq!(r.outcome, "busy");
    assert_eq!(r.ended_by, "carrier", "the called side refused");
    assert_eq!(
        (r.q850_cause, r.q850_cause_from),
        (Some(17), Some("reason"))
    );
    assert_eq!(r.trunks_tried, ["pstn-a", "pstn-b", "pstn-c"]);
    assert_eq!(r.trunk, "pstn-c");
    let outcomes: Vec<_> = r.hops.iter().map(|h| (h.status, h.outcome)).collect();
    assert_eq!(
        outcomes,
        [
            (Some(503), "rejected"),
            (None, "timeout"),
            (Some(486), "rejected")
        ]
    );
    assert_eq!(r.numbers.called_sent, "069555000", "the last hop's numbers");
    assert!(r.media.bypass);
    assert_eq!(r.duration_ms, 0);
    assert_eq!(
        r.post_dial_delay_ms,
        Some(800),
        "no 18x: to the final answer"
    );
}

#[test]
fn outcomes_follow_the_end_reason_status_and_cause() {
    let t0 = Instant::now();
    let end = |reason, status, ring: bool, cause: Option<&str>| {
        let mut life = CallLife::new(Direction::Inbound, t0, numbers(), false);
        life.on_hop(LegId::Teams, None, "sip:5061".into(), None);
        if ring {
            life.on_message(LegId::Teams, false, &response(180, "INVITE", "", ""), t0);
        }
        if let Some(cause) = cause {
            let extra = format!("Reason: Q.850;cause={cause}\n");
            life.on_message(
                LegId::Teams,
                false,
                &response(status, "INVITE", &extra, ""),
                t0,
            );
        }
        let ending = Ending {
            status: Some(status),
            reason: Some(reason),
            answered: false,
        };
        life.finish(facts(), ending, t0)
    };
    let cancelled = end(EndReason::CancelledByCaller, 487, true, None);
    assert_eq!(
        (cancelled.outcome, cancelled.ended_by),
        ("cancelled", "carrier")
    );
    assert_eq!(
        end(EndReason::NoAnswer, 480, true, None).outcome,
        "no_answer"
    );
    let unanswered = end(EndReason::Rejected, 480, true, Some("19"));
    assert_eq!(
        (unanswered.outcome, unanswered.ended_by),
        ("no_answer", "teams")
    );
    assert_eq!(end(EndReason::Rejected, 480, false, None).outcome, "failed");
    assert_eq!(end(EndReason::Rejected, 600, false, None).outcome, "busy");
    let drained = end(EndReason::Drained, 503, false, None);
    assert_eq!((drained.outcome, drained.ended_by), ("failed", "drained"));
    assert_eq!(drained.q850_cause, Some(41));
    assert_eq!(
        end(EndReason::AllTargetsFailed, 503, false, None).ended_by,
        "sbc"
    );
}

#[test]
fn numbers_and_ids_from_the_wire_are_bounded() {
    let long = "9".repeat(5000);
    let life = CallLife::new(
        Direction::Inbound,
        Instant::now(),
        Numbers {
            calling_received: long.clone(),
            ..numbers()
        },
        false,
    );
    let r = life.finish(
        EndFacts {
            carrier_call_id: long,
            ..facts()
        },
        Ending {
            status: None,
            reason: None,
            answered: false,
        },
        Instant::now(),
    );
    assert_eq!(r.numbers.calling_received.len(), MAX_TEXT);
    assert_eq!(r.call_ids.carrier.len(), MAX_TEXT);
    assert_eq!((r.final_status, r.end_reason), (0, "unknown"));
}

/// Every record built here satisfies the published schema (`docs/cdr-schema.json`), whose
/// `version` is this code's.
#[test]
fn records_match_the_published_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cdr-schema.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        schema["properties"]["version"]["const"],
        serde_json::json!(SCHEMA_VERSION)
    );
    let validator = jsonschema::validator_for(&schema).unwrap();
    let record = serde_json::to_value(sample_record()).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&record)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{record:#}");
    let mut wrong = record.clone();
    wrong["version"] = serde_json::json!(SCHEMA_VERSION + 1);
    assert!(!validator.is_valid(&wrong));
    let mut missing = record;
    missing.as_object_mut().unwrap().remove("ended_by");
    assert!(!validator.is_valid(&missing));
}

#[test]
fn who_ended_the_call_depends_on_the_direction_for_cancels_and_refusals() {
    use Direction::{Inbound, Outbound};
    let by = |reason: EndReason| (reason.ended_by(Inbound), reason.ended_by(Outbound));
    assert_eq!(by(EndReason::ByeFromTeams), ("teams", "teams"));
    assert_eq!(by(EndReason::CancelledByCaller), ("carrier", "teams"));
    assert_eq!(by(EndReason::Rejected), ("teams", "carrier"));
    assert_eq!(by(EndReason::Operator), ("operator", "operator"));
    assert_eq!(by(EndReason::Drained), ("drained", "drained"));
    assert_eq!(by(EndReason::MediaInactive), ("sbc", "sbc"));
    assert_eq!(by(EndReason::SessionExpired), ("sbc", "sbc"));
}
