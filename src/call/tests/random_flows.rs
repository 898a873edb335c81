//! Seeded random input sequences: the call never panics, answers the caller's INVITE with at
//! most one final response, removes media once, and says nothing after `Finished`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::media::MediaEvent;

const STATUSES: &[u16] = &[100, 180, 183, 200, 404, 408, 486, 487, 500, 503, 603];
const TIMERS: &[TimerKind] = &[
    TimerKind::HopTimeout,
    TimerKind::NoAnswer,
    TimerKind::AckWait,
    TimerKind::ProgressDeadline,
    TimerKind::Teardown,
];

fn random_step(h: &mut Harness, rng: &mut StdRng, sent: &[SentReq], caller: LegId) {
    match rng.gen_range(0..8) {
        0..=2 if !sent.is_empty() => {
            let req = &sent[rng.gen_range(0..sent.len())];
            let status = STATUSES[rng.gen_range(0..STATUSES.len())];
            let body = (status != 100 && rng.gen_bool(0.6)).then(|| match req.leg {
                LegId::Teams => teams_sdp(),
                LegId::Carrier => carrier_sdp(),
            });
            let tag = if rng.gen_bool(0.8) { "f1" } else { "f2" };
            let retry = [("Retry-After", "1"), MS_CONTACT];
            let extra: &[(&str, &str)] = if rng.gen_bool(0.5) {
                &retry
            } else {
                &retry[1..]
            };
            h.respond(req, status, tag, extra, body.as_deref());
        }
        3 if !sent.is_empty() => {
            let req = &sent[rng.gen_range(0..sent.len())];
            let reason = [
                TxFailure::Timeout,
                TxFailure::ConnectFailed,
                TxFailure::Transport,
            ][rng.gen_range(0..3)];
            h.input(Input::TxFailed {
                leg: req.leg,
                tx: req.tx,
                reason,
            });
        }
        4 => {
            let method = ["CANCEL", "BYE", "OPTIONS", "INFO"][rng.gen_range(0..4)];
            let leg = if rng.gen_bool(0.5) {
                caller
            } else {
                caller.other()
            };
            let msg = peer_in_dialog_request(
                method,
                rng.gen_range(1..10),
                "x",
                "<sip:a@h>;tag=p",
                "<sip:b@h>",
                "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKr",
            );
            h.input(Input::Request {
                leg,
                tx: TxId(9000 + rng.gen_range(0..100)),
                msg,
            });
        }
        5 => {
            let ack = peer_in_dialog_request(
                "ACK",
                1,
                "x",
                "<sip:a@h>;tag=p",
                "<sip:b@h>",
                "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa",
            );
            h.input(Input::Ack {
                leg: caller,
                msg: ack,
            });
        }
        6 => {
            h.input(Input::Media(MediaEvent::Inactive {
                session: SessionId(7),
                leg: LegSide::Carrier,
            }));
        }
        _ => {
            h.advance(Duration::from_secs(rng.gen_range(0..40)));
            h.input(Input::Timer(TIMERS[rng.gen_range(0..TIMERS.len())]));
        }
    }
}

const MS_CONTACT: (&str, &str) = (
    "Contact",
    "<sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>",
);

#[test]
fn random_input_sequences_keep_the_call_invariants() {
    let mut established = 0;
    for seed in 0..300u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let outbound = rng.gen_bool(0.5);
        let mut h = if outbound {
            Harness::outbound(setup(), teams_invite("", &teams_sdp()))
        } else {
            let offer = rng.gen_bool(0.7).then(carrier_sdp);
            Harness::inbound(setup(), carrier_invite(offer.as_deref()))
        };
        let caller = if outbound {
            LegId::Teams
        } else {
            LegId::Carrier
        };
        let mut sent = h.requests();
        for _ in 0..40 {
            random_step(&mut h, &mut rng, &sent, caller);
            sent.extend(h.requests());
        }
        // Let every timer run out: the call must end.
        for _ in 0..10 {
            for kind in TIMERS {
                h.advance(Duration::from_secs(200));
                h.input(Input::Timer(*kind));
            }
        }
        let finals_to_caller = h
            .all
            .iter()
            .filter(|o| matches!(o, Output::SendResponse { tx: TxId(1000), msg, .. } if parse(msg).status().is_some_and(|s| s >= 200)))
            .count();
        assert!(
            finals_to_caller <= 1,
            "seed {seed}: {finals_to_caller} final responses"
        );
        let removes = h
            .all
            .iter()
            .filter(|o| matches!(o, Output::Media(MediaCommand::Remove)))
            .count();
        let finished_at = h.all.iter().position(|o| matches!(o, Output::Finished));
        if let Some(at) = finished_at {
            assert_eq!(at, h.all.len() - 1, "seed {seed}: output after Finished");
            assert_eq!(removes, 1, "seed {seed}");
        } else {
            // Only an established call may outlive every timer (it lasts until BYE).
            let answered = h
                .all
                .iter()
                .any(|o| matches!(o, Output::Record(CallRecord::Answered { .. })));
            let ended = h.all.iter().any(|o| {
                matches!(
                    o,
                    Output::Record(CallRecord::Ended { .. } | CallRecord::Failed { .. })
                )
            });
            assert!(
                answered && !ended,
                "seed {seed}: neither finished nor established"
            );
            established += 1;
        }
    }
    assert!(established < 300, "some sequences must end the call");
}
