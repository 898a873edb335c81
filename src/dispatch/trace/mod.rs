//! The SIP of every call (row 60): each message sent or received on either leg, decrypted
//! (as parsed or as handed to the transport), kept in a bounded per-call ring, logged at the
//! end of a failed call with what Microsoft said about it, and kept a while after the call
//! ended for the ops API ([`CallTraces::get`]).
//!
//! Bounds: a call keeps at most `call_trace_messages` messages and `call_trace_bytes` bytes of
//! text (start line and headers, bodies cut at [`render::BODY_SHOWN`] bytes, SRTP keys and
//! ICE passwords redacted); beyond them the oldest messages but the first (the INVITE that
//! opened the call) give way. Ended traces are kept `call_trace_keep_seconds`, within
//! `call_trace_kept_bytes` altogether (the oldest go first). Recording costs the SIP core one
//! copy of the header block and a short uncontended lock; it never waits on I/O.
//!
//! A call failed when it ended with a final 4xx-6xx (not the 487 of a caller's own CANCEL),
//! ended for a reason of ours other than a BYE (media inactivity, missing ACK, lost
//! transport, session expiry), or either side's BYE carried a `Reason` other than normal
//! clearing (Q.850 cause 16, SIP cause 200); a call an operator ended (admin API) did not
//! fail. Then one line is logged with the call's Call-IDs, tenant, trunk, status and
//! Microsoft's `Reason` and diagnostics values (with the meaning of its response code, see
//! [`diagnostics`]), followed by the trace itself as
//! multi-line text, at most one trace per tenant per `call_trace_log_interval_seconds`.

pub mod diagnostics;
pub mod render;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use super::table::CallKey;
use crate::call::{EndReason, LegId};
use crate::ops::RateLimitedLog;
use crate::routing::CallLabels;
use crate::sip::{Message, Method};
use crate::transport::TransportKind;

pub use diagnostics::{MicrosoftCode, MicrosoftDiagnostics};

/// Bytes a message costs beyond its text, and a trace beyond its messages.
const MESSAGE_OVERHEAD: usize = 96;
const TRACE_OVERHEAD: usize = 512;
/// Tenants whose trace logs are limited separately; beyond it the table starts over.
const MAX_LOG_KEYS: usize = 4096;

/// `[ops] call_trace_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceSettings {
    /// Text kept per call; 0 keeps no message (the failure line is still logged).
    pub call_bytes: usize,
    pub call_messages: usize,
    /// How long an ended call's trace stays readable.
    pub keep: Duration,
    /// Bytes of ended traces kept altogether.
    pub kept_bytes: usize,
    /// At most one trace logged per tenant per this interval.
    pub log_interval: Duration,
}

impl Default for TraceSettings {
    fn default() -> Self {
        TraceSettings {
            call_bytes: 16 * 1024,
            call_messages: 64,
            keep: Duration::from_secs(600),
            kept_bytes: 64 * 1024 * 1024,
            log_interval: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceDirection {
    Received,
    Sent,
}

/// One message of a call, as kept.
#[derive(Debug, Clone)]
pub struct TracedMessage {
    /// Wall-clock time it was received or handed to the transport.
    pub at: SystemTime,
    /// Since the call started.
    pub offset: Duration,
    pub direction: TraceDirection,
    pub leg: LegId,
    pub transport: TransportKind,
    /// The remote address: the sender of a received message, the destination of a sent one.
    pub peer: Option<SocketAddr>,
    /// Start line and headers, LF line ends, then the kept part of the body (redacted).
    pub text: String,
    /// Bytes of the message not kept (the rest of the body).
    pub body_omitted: usize,
}

/// How a call ended, from its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// Not answered; `status` is the final status the caller got.
    Failed { status: u16, reason: EndReason },
    /// Answered, then ended.
    Ended { reason: EndReason },
}

/// The SIP of one call.
#[derive(Debug, Clone)]
pub struct CallTrace {
    pub key: CallKey,
    /// Every Call-ID of the call (carrier leg, Teams leg, a transfer's new Teams dialog).
    pub call_ids: Vec<String>,
    pub tenant: String,
    pub trunk: String,
    /// `inbound` (PSTN -> Teams) or `outbound`.
    pub direction: &'static str,
    pub started: SystemTime,
    pub ended: Option<SystemTime>,
    pub outcome: Option<CallOutcome>,
    pub messages: VecDeque<TracedMessage>,
    /// Messages that gave way to newer ones (or were not kept at all).
    pub dropped: usize,
    /// What Microsoft's messages on this call said (kept whatever the ring drops).
    pub microsoft: MicrosoftDiagnostics,
    /// The first `Reason` other than normal clearing on a BYE of either side.
    pub abnormal_bye: Option<String>,
    started_at: Instant,
    ended_at: Option<Instant>,
    bytes: usize,
}

impl CallTrace {
    /// Bytes this trace holds (its accounting, overheads included).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the call failed (see the module docs).
    pub fn failed(&self) -> bool {
        let by_outcome = match self.outcome {
            // An operator ending a call (admin API) chose to: no failure to explain.
            Some(CallOutcome::Failed { status, reason }) => {
                status >= 400
                    && !matches!(reason, EndReason::CancelledByCaller | EndReason::Operator)
            }
            Some(CallOutcome::Ended { reason }) => !matches!(
                reason,
                EndReason::ByeFromCarrier | EndReason::ByeFromTeams | EndReason::Operator
            ),
            None => false,
        };
        by_outcome || self.abnormal_bye.is_some()
    }
}

/// What an ended call's trace hands its detail record.
#[derive(Debug, Clone, Default)]
pub struct EndedTrace {
    /// Every Call-ID of the call, the carrier leg's and the Teams leg's first.
    pub call_ids: Vec<String>,
    pub microsoft: MicrosoftDiagnostics,
}

/// A message to record.
pub struct Recorded<'a> {
    pub direction: TraceDirection,
    pub leg: LegId,
    pub transport: TransportKind,
    pub peer: Option<SocketAddr>,
    pub raw: &'a [u8],
    /// The parsed message when the caller has it (received ones); sent BYEs are parsed here.
    pub parsed: Option<&'a Message>,
}

#[derive(Default)]
struct Store {
    traces: HashMap<CallKey, CallTrace>,
    /// Ended calls, oldest first.
    ended: VecDeque<CallKey>,
    ended_bytes: usize,
    bytes: usize,
}

struct TraceMetrics {
    traces: IntGauge,
    bytes: IntGauge,
    evictions: IntCounterVec,
}

/// Every call's trace, shared by the SIP core (which writes) and the ops API (which reads).
pub struct CallTraces {
    settings: TraceSettings,
    store: Mutex<Store>,
    log_limit: RateLimitedLog<String>,
    metrics: TraceMetrics,
}

impl CallTraces {
    pub fn new(settings: TraceSettings, registry: &Registry) -> prometheus::Result<CallTraces> {
        let traces = IntGauge::new(
            "call_traces",
            "Call SIP traces held (calls in progress and ended ones kept for the ops API)",
        )?;
        let bytes = IntGauge::new("call_trace_bytes", "Bytes held by call SIP traces")?;
        let evictions = IntCounterVec::new(
            Opts::new(
                "call_trace_evictions_total",
                "Call SIP trace entries dropped for space: a call's oldest messages over its \
                 budget (message), an ended call's whole trace over the total budget (trace)",
            ),
            &["what"],
        )?;
        registry.register(Box::new(traces.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        registry.register(Box::new(evictions.clone()))?;
        Ok(CallTraces {
            settings,
            store: Mutex::new(Store::default()),
            log_limit: RateLimitedLog::with_capacity(settings.log_interval, MAX_LOG_KEYS),
            metrics: TraceMetrics {
                traces,
                bytes,
                evictions,
            },
        })
    }

    pub fn settings(&self) -> &TraceSettings {
        &self.settings
    }

    /// A poisoned lock only means a panic elsewhere mid-update of plain data.
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open the trace of a new call.
    pub fn begin(&self, key: CallKey, labels: &CallLabels, call_ids: &[Bytes], now: Instant) {
        let trace = CallTrace {
            key,
            call_ids: call_ids
                .iter()
                .map(|id| String::from_utf8_lossy(id).into_owned())
                .collect(),
            tenant: labels.tenant().to_string(),
            trunk: labels.trunk().to_string(),
            direction: labels.direction().label(),
            started: SystemTime::now(),
            ended: None,
            outcome: None,
            messages: VecDeque::new(),
            dropped: 0,
            microsoft: MicrosoftDiagnostics::default(),
            abnormal_bye: None,
            started_at: now,
            ended_at: None,
            bytes: TRACE_OVERHEAD,
        };
        let mut store = self.lock();
        self.expire(&mut store, now);
        store.bytes += trace.bytes;
        if let Some(old) = store.traces.insert(key, trace) {
            store.bytes -= old.bytes;
        }
        self.publish(&store);
    }

    /// A Call-ID the call took on later (a transfer's new Teams dialog).
    pub fn add_call_id(&self, key: CallKey, call_id: &[u8]) {
        let id = String::from_utf8_lossy(call_id);
        let mut store = self.lock();
        if let Some(trace) = store.traces.get_mut(&key) {
            if !trace.call_ids.iter().any(|known| *known == id) {
                trace.call_ids.push(id.into_owned());
            }
        }
    }

    /// Record one message of call `key`.
    pub fn record(&self, key: CallKey, now: Instant, message: Recorded<'_>) {
        let is_bye = message.raw.starts_with(b"BYE ");
        let parsed_bye;
        let parsed = match message.parsed {
            Some(msg) => Some(msg),
            None if is_bye => {
                parsed_bye = Message::parse(
                    Bytes::copy_from_slice(message.raw),
                    &crate::sip::Limits::default(),
                )
                .ok();
                parsed_bye.as_ref()
            }
            None => None,
        };
        let abnormal = parsed
            .filter(|m| m.method() == Some(&Method::Bye))
            .and_then(diagnostics::abnormal_reason);
        let from_microsoft =
            message.leg == LegId::Teams && message.direction == TraceDirection::Received;
        let (text, body_omitted) = if self.settings.call_bytes > 0 {
            render::message_text(message.raw, self.settings.call_bytes)
        } else {
            (String::new(), 0)
        };
        let mut store = self.lock();
        let Some(trace) = store.traces.get_mut(&key).filter(|t| t.ended_at.is_none()) else {
            return;
        };
        if let (true, Some(msg)) = (from_microsoft, parsed) {
            trace.microsoft.note(msg);
        }
        if trace.abnormal_bye.is_none() {
            trace.abnormal_bye = abnormal;
        }
        let before = trace.bytes;
        let dropped_before = trace.dropped;
        if self.settings.call_bytes == 0 || self.settings.call_messages == 0 {
            trace.dropped += 1;
        } else {
            let traced = TracedMessage {
                at: SystemTime::now(),
                offset: now.saturating_duration_since(trace.started_at),
                direction: message.direction,
                leg: message.leg,
                transport: message.transport,
                peer: message.peer,
                text,
                body_omitted,
            };
            push_bounded(trace, traced, &self.settings);
        }
        let (after, evicted) = (trace.bytes, trace.dropped - dropped_before);
        store.bytes = store.bytes + after - before;
        if evicted > 0 {
            self.metrics
                .evictions
                .with_label_values(&["message"])
                .inc_by(evicted as u64);
        }
        self.publish(&store);
    }

    /// The call ended: keep its trace for `keep`, and log it when the call failed. Returns
    /// what the call's detail record takes from the trace.
    pub fn end(
        &self,
        key: CallKey,
        outcome: Option<CallOutcome>,
        now: Instant,
    ) -> Option<EndedTrace> {
        let (failed, ended) = {
            let mut store = self.lock();
            let trace = store.traces.get_mut(&key)?;
            if trace.ended_at.is_some() {
                return None;
            }
            trace.outcome = outcome;
            trace.ended = Some(SystemTime::now());
            trace.ended_at = Some(now);
            let failed = trace.failed().then(|| trace.clone());
            let ended = EndedTrace {
                call_ids: trace.call_ids.clone(),
                microsoft: trace.microsoft.clone(),
            };
            let bytes = trace.bytes;
            store.ended.push_back(key);
            store.ended_bytes += bytes;
            self.expire(&mut store, now);
            self.publish(&store);
            (failed, ended)
        };
        if let Some(trace) = failed {
            self.log_failure(&trace, now);
        }
        Some(ended)
    }

    /// The trace of call `key`, in progress or ended within the keep time.
    pub fn get(&self, key: CallKey) -> Option<CallTrace> {
        let store = self.lock();
        store
            .traces
            .get(&key)
            .filter(|t| !self.is_expired(t, Instant::now()))
            .cloned()
    }

    /// The trace of the call one of whose Call-IDs is `call_id`.
    pub fn find_by_call_id(&self, call_id: &str) -> Option<CallTrace> {
        let store = self.lock();
        let now = Instant::now();
        store
            .traces
            .values()
            .filter(|t| !self.is_expired(t, now))
            .find(|t| t.call_ids.iter().any(|id| id == call_id))
            .cloned()
    }

    /// Keys of every trace held, oldest call first.
    pub fn keys(&self) -> Vec<CallKey> {
        let store = self.lock();
        let mut keys: Vec<CallKey> = store.traces.keys().copied().collect();
        keys.sort();
        keys
    }

    fn is_expired(&self, trace: &CallTrace, now: Instant) -> bool {
        trace
            .ended_at
            .is_some_and(|at| now.saturating_duration_since(at) >= self.settings.keep)
    }

    /// Drop ended traces past their keep time, then the oldest ones over the total budget.
    fn expire(&self, store: &mut Store, now: Instant) {
        while let Some(&oldest) = store.ended.front() {
            let Some(trace) = store.traces.get(&oldest) else {
                store.ended.pop_front();
                continue;
            };
            let expired = self.is_expired(trace, now);
            let over_budget = store.ended_bytes > self.settings.kept_bytes;
            if !expired && !over_budget {
                break;
            }
            if over_budget && !expired {
                self.metrics.evictions.with_label_values(&["trace"]).inc();
            }
            store.ended.pop_front();
            if let Some(trace) = store.traces.remove(&oldest) {
                store.ended_bytes -= trace.bytes;
                store.bytes -= trace.bytes;
            }
        }
    }

    fn publish(&self, store: &Store) {
        self.metrics.traces.set(store.traces.len() as i64);
        self.metrics.bytes.set(store.bytes as i64);
    }

    fn log_failure(&self, trace: &CallTrace, now: Instant) {
        let (status, end) = match trace.outcome {
            Some(CallOutcome::Failed { status, reason }) => (status, reason.label()),
            Some(CallOutcome::Ended { reason }) => (0, reason.label()),
            None => (0, "unknown"),
        };
        let code = trace.microsoft.code();
        tracing::info!(
            call = trace.key.0,
            call_ids = %trace.call_ids.join(" "),
            tenant = %trace.tenant,
            trunk = %trace.trunk,
            direction = trace.direction,
            status,
            end,
            bye_reason = trace.abnormal_bye.as_deref().unwrap_or(""),
            ms_reason = %trace.microsoft.reasons.join(", "),
            ms_diagnostics = %trace.microsoft.diagnostics.join(", "),
            ms_code = code.map_or(0, |c| c.0),
            ms_code_from = code.map_or("", MicrosoftCode::origin),
            ms_hint = code.and_then(MicrosoftCode::hint).unwrap_or(""),
            "call failed"
        );
        if let Some(suppressed) = self.log_limit.check(&trace.tenant, now) {
            tracing::info!(
                call = trace.key.0,
                tenant = %trace.tenant,
                suppressed_traces = suppressed,
                trace = %trace,
                "call SIP trace"
            );
        }
    }
}

/// Add `message` to the ring of `trace`: the oldest messages but the first give way to it
/// (then the first too), and a message larger than the whole budget is cut to it.
fn push_bounded(trace: &mut CallTrace, mut message: TracedMessage, settings: &TraceSettings) {
    let budget = settings.call_bytes;
    if message.text.len() + MESSAGE_OVERHEAD > budget {
        let mut cut = budget.saturating_sub(MESSAGE_OVERHEAD);
        while !message.text.is_char_boundary(cut) {
            cut -= 1;
        }
        message.text.truncate(cut);
        message.body_omitted = message.body_omitted.max(1);
    }
    let cost = message.text.len() + MESSAGE_OVERHEAD;
    let held = |t: &CallTrace| t.bytes - TRACE_OVERHEAD;
    while !trace.messages.is_empty()
        && (trace.messages.len() >= settings.call_messages || held(trace) + cost > budget)
    {
        let at = if trace.messages.len() > 1 { 1 } else { 0 };
        if let Some(old) = trace.messages.remove(at) {
            trace.bytes -= old.text.len() + MESSAGE_OVERHEAD;
            trace.dropped += 1;
        }
    }
    trace.bytes += cost;
    trace.messages.push_back(message);
}

#[cfg(test)]
mod tests;
