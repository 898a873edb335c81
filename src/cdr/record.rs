//! One call detail record (schema `docs/cdr-schema.json`, version [`SCHEMA_VERSION`]) and
//! [`CallLife`], which gathers it while the call goes on: the dispatcher shows it the call's
//! SIP messages (the ones the call trace sees), its target attempts, failures and media
//! counters, and [`CallLife::finish`] turns that into the record when the call ends.
//!
//! What counts as what (the README's "Call detail records" lists every field):
//! * the called side is the leg the SBC originated (Teams on inbound calls, the carrier on
//!   outbound ones); its responses to our INVITEs set the first-18x and answer times and each
//!   hop's status;
//! * a leg's codec and the SRTP suite come from the last 2xx to an INVITE with SDP on that
//!   leg, sent or received (an answer names one codec first, and one crypto suite);
//! * the Q.850 cause is the first `Reason: Q.850;cause=N` on a BYE, CANCEL or final error
//!   response of either leg, sent or received (what ended the call); without one it is derived
//!   from the final status ([`q850_of_status`]).

use std::time::{Instant, SystemTime};

use serde::Serialize;

use super::mos;
use super::time::rfc3339;
use crate::call::{Direction, EndReason, LegId};
use crate::media::{LegStats, SessionStats};
use crate::sdp::Sdp;
use crate::sip::{HeaderName, Message, Method, ReasonValue};

/// The `version` field of every record; bumped when a field changes meaning or goes away
/// (new fields may appear within a version).
pub const SCHEMA_VERSION: u32 = 1;

/// Hops kept per call (a failover list is short; this bounds a misbehaving one).
const MAX_HOPS: usize = 16;
/// Characters kept of a number or Call-ID taken from a message.
const MAX_TEXT: usize = 128;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallDetailRecord {
    pub version: u32,
    /// Random, unique per record (UUID v4 form).
    pub id: String,
    /// The SBC's own call number (the `call` span id of its log lines), unique per process.
    pub call: u64,
    /// `inbound` (carrier -> Teams) or `outbound` (Teams -> carrier).
    pub direction: &'static str,
    pub tenant: String,
    /// The carrier trunk that carried the call: the calling trunk, or the last hop's.
    pub trunk: String,
    /// Every carrier trunk tried, in order (one for inbound calls).
    pub trunks_tried: Vec<String>,
    pub call_ids: CallIds,
    pub numbers: Numbers,
    pub times: Times,
    /// INVITE to the first 18x (or to the final response when none came), ms.
    pub post_dial_delay_ms: Option<u64>,
    /// Answer to end, ms; 0 when not answered.
    pub duration_ms: u64,
    /// `answered`, `busy`, `no_answer`, `cancelled` or `failed`.
    pub outcome: &'static str,
    /// The final status the caller got (200 for an answered call).
    pub final_status: u16,
    /// Why the call ended (`bye_carrier`, `cancelled`, `drained`, ...: `EndReason::label`).
    pub end_reason: &'static str,
    /// `carrier`, `teams`, `sbc`, `operator` or `drained` (`EndReason::ended_by`).
    pub ended_by: &'static str,
    pub q850_cause: Option<u16>,
    /// `reason` (a Reason header said it) or `status` (derived from `final_status`).
    pub q850_cause_from: Option<&'static str>,
    pub microsoft: MicrosoftReport,
    pub hops: Vec<Hop>,
    pub media: Media,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallIds {
    pub carrier: String,
    pub teams: String,
    /// Call-IDs the call took on later (a transfer's or Replaces' new Teams dialog).
    pub later: Vec<String>,
}

/// Numbers as received from the caller and as sent to the called side (after translation).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct Numbers {
    pub calling_received: String,
    pub called_received: String,
    pub calling_sent: String,
    pub called_sent: String,
}

/// RFC 3339 UTC with milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Times {
    pub invite: String,
    pub first_provisional: Option<String>,
    pub answer: Option<String>,
    pub end: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct MicrosoftReport {
    /// Microsoft's `Reason` values on this call, most recent last.
    pub reasons: Vec<String>,
    /// Its `X-MS-Diagnostics` / `ms-diagnostics` values.
    pub diagnostics: Vec<String>,
    /// The Microsoft response code of the last diagnostics value that has one.
    pub code: Option<u32>,
}

/// One attempt towards the called side: a Microsoft proxy (inbound) or a carrier trunk's
/// next hop (outbound).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Hop {
    /// `teams` or `carrier`.
    pub leg: &'static str,
    /// The carrier trunk (outbound hops); `null` for Microsoft proxies.
    pub trunk: Option<String>,
    /// `host:port` tried.
    pub destination: String,
    /// The final status it answered, if any.
    pub status: Option<u16>,
    /// `answered`, `rejected`, `cancelled`, `timeout`, `unreachable` or `no_final`.
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Media {
    /// Media bypass (ICE-lite on the Teams leg).
    pub bypass: bool,
    /// The Teams leg's SDES suite (`AES_CM_128_HMAC_SHA1_80`, ...).
    pub srtp_suite: Option<String>,
    pub carrier: LegMedia,
    pub teams: LegMedia,
}

/// What the SBC counted on one leg: `rx_*` received from that leg's peer (RTP, RTCP and
/// STUN), `tx_*` sent to it; loss and jitter of the RTP received (RFC 3550).
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct LegMedia {
    pub codec: Option<String>,
    pub clock_rate: Option<u32>,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub lost: u64,
    pub loss_percent: f64,
    pub jitter_ms: f64,
    /// E-model estimate (`cdr::mos`); `null` when nothing was received.
    pub mos: Option<f64>,
}

/// How a call ended, as the dispatcher knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending {
    /// The status the caller got; 200 when answered. `None` when unknown.
    pub status: Option<u16>,
    pub reason: Option<EndReason>,
    pub answered: bool,
}

/// What the record takes from the call's trace and table entry at its end.
#[derive(Debug, Clone, Default)]
pub struct EndFacts {
    pub call: u64,
    pub tenant: String,
    pub trunk: String,
    pub carrier_call_id: String,
    pub teams_call_id: String,
    pub later_call_ids: Vec<String>,
    pub microsoft: MicrosoftReport,
}

#[derive(Debug, Clone)]
struct HopState {
    hop: Hop,
    failure: Option<&'static str>,
}

#[derive(Debug, Clone, Copy)]
struct Stamp {
    wall: SystemTime,
    at: Instant,
}

impl Stamp {
    fn now(at: Instant) -> Stamp {
        Stamp {
            wall: SystemTime::now(),
            at,
        }
    }
}

/// What a call has shown so far, for its record. Lives beside the call in the SIP core.
#[derive(Debug, Clone)]
pub struct CallLife {
    direction: Direction,
    invite: Stamp,
    first_provisional: Option<Stamp>,
    answer: Option<Stamp>,
    numbers: Numbers,
    trunks_tried: Vec<String>,
    hops: Vec<HopState>,
    q850: Option<u16>,
    codecs: [Option<(String, u32)>; 2],
    srtp_suite: Option<String>,
    bypass: bool,
    stats: Option<SessionStats>,
}

fn leg_index(leg: LegId) -> usize {
    match leg {
        LegId::Carrier => 0,
        LegId::Teams => 1,
    }
}

fn bounded(text: &str) -> String {
    text.chars().take(MAX_TEXT).collect()
}

impl CallLife {
    /// A call whose INVITE arrived at `now`.
    pub fn new(direction: Direction, now: Instant, numbers: Numbers, bypass: bool) -> CallLife {
        let numbers = Numbers {
            calling_received: bounded(&numbers.calling_received),
            called_received: bounded(&numbers.called_received),
            calling_sent: bounded(&numbers.calling_sent),
            called_sent: bounded(&numbers.called_sent),
        };
        CallLife {
            direction,
            invite: Stamp::now(now),
            first_provisional: None,
            answer: None,
            numbers,
            trunks_tried: Vec::new(),
            hops: Vec::new(),
            q850: None,
            codecs: [None, None],
            srtp_suite: None,
            bypass,
            stats: None,
        }
    }

    /// The leg the SBC originated.
    fn called_leg(&self) -> LegId {
        match self.direction {
            Direction::Inbound => LegId::Teams,
            Direction::Outbound => LegId::Carrier,
        }
    }

    /// The call tries a new hop towards the called side. `numbers_sent`: the hop's own
    /// numbers (carrier hops translate for their trunk).
    pub fn on_hop(
        &mut self,
        leg: LegId,
        trunk: Option<&str>,
        destination: String,
        numbers_sent: Option<(&str, &str)>,
    ) {
        if let Some(trunk) = trunk {
            if self.trunks_tried.last().map(String::as_str) != Some(trunk) {
                self.trunks_tried.push(trunk.to_string());
            }
        }
        if let Some((calling, called)) = numbers_sent {
            self.numbers.calling_sent = bounded(calling);
            self.numbers.called_sent = bounded(called);
        }
        if self.hops.len() == MAX_HOPS {
            return;
        }
        self.hops.push(HopState {
            hop: Hop {
                leg: leg.label(),
                trunk: trunk.map(str::to_string),
                destination,
                status: None,
                outcome: "no_final",
            },
            failure: None,
        });
    }

    /// The current hop's INVITE failed without a final response (`timeout`, `unreachable`).
    pub fn on_hop_failure(&mut self, failure: &'static str) {
        if let Some(current) = self.hops.last_mut() {
            if current.hop.status.is_none() && current.failure.is_none() {
                current.failure = Some(failure);
            }
        }
    }

    /// A message of the call on `leg`, `sent` by us or received, at `now`.
    pub fn on_message(&mut self, leg: LegId, sent: bool, msg: &Message, now: Instant) {
        match msg.status() {
            Some(status) => self.on_response(leg, sent, status, msg, now),
            None => {
                if matches!(msg.method(), Some(Method::Bye | Method::Cancel)) {
                    self.note_reason(msg);
                }
            }
        }
    }

    fn on_response(&mut self, leg: LegId, sent: bool, status: u16, msg: &Message, now: Instant) {
        let to_invite = msg
            .cseq()
            .ok()
            .is_some_and(|cseq| cseq.method == Method::Invite);
        if !to_invite {
            return;
        }
        if status >= 300 {
            self.note_reason(msg);
        }
        if (200..300).contains(&status) {
            self.note_answer_sdp(leg, msg);
        }
        if sent || leg != self.called_leg() {
            return;
        }
        if (180..200).contains(&status) && self.first_provisional.is_none() {
            self.first_provisional = Some(Stamp::now(now));
        }
        if status >= 200 {
            if (200..300).contains(&status) && self.answer.is_none() {
                self.answer = Some(Stamp::now(now));
            }
            if let Some(current) = self.hops.last_mut() {
                if current.hop.status.is_none() {
                    current.hop.status = Some(status);
                }
            }
        }
    }

    fn note_reason(&mut self, msg: &Message) {
        if self.q850.is_some() {
            return;
        }
        self.q850 = msg
            .header_values(&HeaderName::Reason)
            .iter()
            .filter_map(|v| ReasonValue::parse(v))
            .find(|r| r.is_q850())
            .and_then(|r| r.cause);
    }

    fn note_answer_sdp(&mut self, leg: LegId, msg: &Message) {
        let body = msg.body();
        if body.is_empty() {
            return;
        }
        let Ok(sdp) = Sdp::parse(&body) else {
            return;
        };
        let Some((_, audio)) = sdp.primary_audio() else {
            return;
        };
        let codec = audio
            .codecs()
            .into_iter()
            .find(|c| !c.encoding.eq_ignore_ascii_case("telephone-event"))
            .map(|c| (bounded(c.encoding), c.clock_rate));
        if codec.is_some() {
            self.codecs[leg_index(leg)] = codec;
        }
        if leg == LegId::Teams {
            if let Some(crypto) = audio.crypto().next() {
                self.srtp_suite = Some(bounded(crypto.suite_name));
            }
        }
    }

    /// The media counters of the call's session, taken just before it is removed.
    pub fn on_media_stats(&mut self, stats: SessionStats) {
        self.stats = Some(stats);
    }

    /// The record of the call, ended at `now`.
    pub fn finish(&self, facts: EndFacts, ending: Ending, now: Instant) -> CallDetailRecord {
        let end = Stamp::now(now);
        let ms =
            |from: Stamp, to: Stamp| to.at.saturating_duration_since(from.at).as_millis() as u64;
        let final_status = match (ending.answered, ending.status) {
            (true, _) => 200,
            (false, Some(status)) => status,
            (false, None) => 0,
        };
        let (q850_cause, q850_cause_from) = match self.q850 {
            Some(cause) => (Some(cause), Some("reason")),
            None => match q850_of_status(final_status) {
                Some(cause) => (Some(cause), Some("status")),
                None => (None, None),
            },
        };
        let reason = ending.reason;
        let outcome = self.outcome(ending, final_status, self.q850);
        let hops = self
            .hops
            .iter()
            .map(|h| {
                let mut hop = h.hop.clone();
                hop.outcome = match (hop.status, h.failure) {
                    (Some(s), _) if (200..300).contains(&s) => "answered",
                    (Some(487), _) => "cancelled",
                    (Some(_), _) => "rejected",
                    (None, Some(failure)) => failure,
                    (None, None) => "no_final",
                };
                hop
            })
            .collect();
        let trunks_tried = if self.trunks_tried.is_empty() {
            vec![facts.trunk.clone()]
        } else {
            self.trunks_tried.clone()
        };
        let trunk = trunks_tried.last().cloned().unwrap_or(facts.trunk);
        let stats = self.stats.unwrap_or_default();
        let first_or_final = self.first_provisional.or(self.answer);
        CallDetailRecord {
            version: SCHEMA_VERSION,
            id: new_record_id(),
            call: facts.call,
            direction: match self.direction {
                Direction::Inbound => "inbound",
                Direction::Outbound => "outbound",
            },
            tenant: facts.tenant,
            trunk,
            trunks_tried,
            call_ids: CallIds {
                carrier: bounded(&facts.carrier_call_id),
                teams: bounded(&facts.teams_call_id),
                later: facts.later_call_ids.iter().map(|id| bounded(id)).collect(),
            },
            numbers: self.numbers.clone(),
            times: Times {
                invite: rfc3339(self.invite.wall),
                first_provisional: self.first_provisional.map(|s| rfc3339(s.wall)),
                answer: self.answer.map(|s| rfc3339(s.wall)),
                end: rfc3339(end.wall),
            },
            post_dial_delay_ms: match first_or_final {
                Some(stamp) => Some(ms(self.invite, stamp)),
                // Refused without any 18x: the delay to the final answer, which is the end.
                None if final_status >= 300 => Some(ms(self.invite, end)),
                None => None,
            },
            duration_ms: self.answer.map_or(0, |answer| ms(answer, end)),
            outcome,
            final_status,
            end_reason: reason.map_or("unknown", EndReason::label),
            ended_by: reason.map_or("sbc", |r| r.ended_by(self.direction)),
            q850_cause,
            q850_cause_from,
            microsoft: facts.microsoft,
            hops,
            media: Media {
                bypass: self.bypass,
                srtp_suite: self.srtp_suite.clone(),
                carrier: leg_media(&stats.carrier, self.codecs[0].as_ref()),
                teams: leg_media(&stats.teams, self.codecs[1].as_ref()),
            },
        }
    }

    /// `q850`: the cause a Reason header named (not one derived from the status).
    fn outcome(&self, ending: Ending, final_status: u16, q850: Option<u16>) -> &'static str {
        if ending.answered {
            return "answered";
        }
        match ending.reason {
            Some(EndReason::CancelledByCaller) => return "cancelled",
            Some(EndReason::NoAnswer) => return "no_answer",
            _ => {}
        }
        if matches!(final_status, 486 | 600) || q850 == Some(17) {
            "busy"
        } else if matches!(q850, Some(18 | 19))
            || (final_status == 480 && self.first_provisional.is_some())
        {
            "no_answer"
        } else {
            "failed"
        }
    }
}

fn leg_media(stats: &LegStats, codec: Option<&(String, u32)>) -> LegMedia {
    let clock_rate = codec.map(|(_, rate)| *rate).filter(|r| *r > 0);
    let expected = stats.rx_packets + stats.lost;
    let loss_percent = if expected == 0 {
        0.0
    } else {
        round2(stats.lost as f64 * 100.0 / expected as f64)
    };
    // RFC 3550 jitter is in timestamp units of the received payload.
    let jitter_ms = round2(stats.jitter as f64 * 1000.0 / f64::from(clock_rate.unwrap_or(8000)));
    let name = codec.map(|(name, _)| name.clone());
    LegMedia {
        mos: (stats.rx_packets > 0)
            .then(|| mos::mos(name.as_deref().unwrap_or("PCMU"), loss_percent, jitter_ms)),
        codec: name,
        clock_rate,
        rx_packets: stats.rx_packets,
        rx_bytes: stats.rx_bytes,
        tx_packets: stats.tx_packets,
        tx_bytes: stats.tx_bytes,
        lost: stats.lost,
        loss_percent,
        jitter_ms,
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// The Q.850 cause of a final status when no `Reason` named one (RFC 3398 §8.2.6.1 read
/// backwards, with ITU-T Q.1912.5's choices where several causes map to one status).
pub fn q850_of_status(status: u16) -> Option<u16> {
    Some(match status {
        200..=299 => 16,
        403 | 603 => 21,
        404 | 604 => 1,
        408 | 504 => 102,
        410 => 22,
        480 => 18,
        484 => 28,
        486 | 600 => 17,
        487 => 16,
        488 | 606 => 65,
        500 => 41,
        502 => 38,
        503 => 41,
        _ => return None,
    })
}

/// A random id in UUID v4 form.
fn new_record_id() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
pub(crate) mod tests;
