//! `GET /admin/calls`, `GET|DELETE /admin/calls/{id}`, `GET /admin/calls/{id}/sip`.
//!
//! A call's id is the SBC's own number for it (`id` in the list) or the Call-ID of either
//! of its legs.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{ask_core, error, AdminContext, CoreRequest};
use crate::call::LegId;
use crate::dispatch::trace::TraceDirection;
use crate::dispatch::{CallKey, CallOutcome, CallSnapshot, CallTrace};
use crate::media::{LegMediaAddresses, SessionStats};

#[derive(Debug, Default, Deserialize)]
pub(super) struct CallFilter {
    tenant: Option<String>,
    trunk: Option<String>,
    /// A calling or called number (or a part of one).
    number: Option<String>,
}

impl CallFilter {
    fn admits(&self, call: &CallSnapshot) -> bool {
        self.tenant.as_ref().is_none_or(|t| *t == call.tenant)
            && self.trunk.as_ref().is_none_or(|t| *t == call.trunk)
            && self.number.as_ref().is_none_or(|n| {
                call.summary.caller.contains(n.as_str()) || call.summary.callee.contains(n.as_str())
            })
    }
}

#[derive(Debug, Serialize)]
pub(super) struct CallView {
    id: u64,
    tenant: String,
    trunk: String,
    direction: &'static str,
    state: &'static str,
    caller: String,
    callee: String,
    duration_seconds: f64,
    /// Since the answer; `None` before it.
    talk_seconds: Option<f64>,
    legs: Vec<LegView>,
}

#[derive(Debug, Serialize)]
struct LegView {
    leg: &'static str,
    call_id: String,
    media: Option<MediaView>,
}

#[derive(Debug, Serialize)]
struct MediaView {
    local: String,
    remote: Option<String>,
    rx_packets: u64,
    rx_bytes: u64,
    tx_packets: u64,
    tx_bytes: u64,
    lost: u64,
    /// Interarrival jitter in RTP timestamp units (RFC 3550).
    jitter: u64,
    dropped: u64,
    srtp_auth_failures: u64,
}

fn media_view(
    addresses: Option<&LegMediaAddresses>,
    stats: Option<&crate::media::LegStats>,
) -> Option<MediaView> {
    let addresses = addresses?;
    let stats = stats.copied().unwrap_or_default();
    Some(MediaView {
        local: addresses.local.to_string(),
        remote: addresses.remote.map(|r| r.to_string()),
        rx_packets: stats.rx_packets,
        rx_bytes: stats.rx_bytes,
        tx_packets: stats.tx_packets,
        tx_bytes: stats.tx_bytes,
        lost: stats.lost,
        jitter: stats.jitter,
        dropped: stats.dropped,
        srtp_auth_failures: stats.srtp_auth_failures,
    })
}

fn view(context: &AdminContext, call: CallSnapshot, now: Instant) -> CallView {
    let addresses = call.session.and_then(|s| context.media.addresses(s));
    let stats: Option<SessionStats> = call.session.and_then(|s| context.media.stats(s));
    let leg = |leg: LegId, call_id: String, index: usize| LegView {
        leg: leg.label(),
        call_id,
        media: media_view(
            addresses.as_ref().and_then(|a| a.get(index)),
            stats.as_ref().map(|s| match leg {
                LegId::Carrier => &s.carrier,
                LegId::Teams => &s.teams,
            }),
        ),
    };
    CallView {
        id: call.key.0,
        tenant: call.tenant,
        trunk: call.trunk,
        direction: call.direction,
        state: call.summary.state,
        caller: call.summary.caller,
        callee: call.summary.callee,
        duration_seconds: now
            .saturating_duration_since(call.summary.started)
            .as_secs_f64(),
        talk_seconds: call
            .summary
            .answered
            .map(|at| now.saturating_duration_since(at).as_secs_f64()),
        legs: vec![
            leg(LegId::Carrier, call.carrier_call_id, 0),
            leg(LegId::Teams, call.teams_call_id, 1),
        ],
    }
}

async fn snapshot(context: &AdminContext) -> Result<Vec<CallSnapshot>, Response> {
    ask_core(context, CoreRequest::Calls).await
}

/// The call named `id` (its number or a leg's Call-ID) among `calls`.
fn find(calls: Vec<CallSnapshot>, id: &str) -> Option<CallSnapshot> {
    let key = id.parse::<u64>().ok();
    calls
        .into_iter()
        .find(|c| Some(c.key.0) == key || c.carrier_call_id == id || c.teams_call_id == id)
}

pub(super) async fn list(
    State(context): State<Arc<AdminContext>>,
    Query(filter): Query<CallFilter>,
) -> Response {
    let calls = match snapshot(&context).await {
        Ok(calls) => calls,
        Err(response) => return response,
    };
    let now = Instant::now();
    let views: Vec<CallView> = calls
        .into_iter()
        .filter(|c| filter.admits(c))
        .map(|c| view(&context, c, now))
        .collect();
    Json(serde_json::json!({ "calls": views })).into_response()
}

pub(super) async fn one(
    State(context): State<Arc<AdminContext>>,
    Path(id): Path<String>,
) -> Response {
    match snapshot(&context).await {
        Ok(calls) => match find(calls, &id) {
            Some(call) => Json(view(&context, call, Instant::now())).into_response(),
            None => error(StatusCode::NOT_FOUND, format!("no call {id} in progress")),
        },
        Err(response) => response,
    }
}

pub(super) async fn hangup(
    State(context): State<Arc<AdminContext>>,
    Path(id): Path<String>,
) -> Response {
    let call = match snapshot(&context).await {
        Ok(calls) => find(calls, &id),
        Err(response) => return response,
    };
    let Some(call) = call else {
        return error(StatusCode::NOT_FOUND, format!("no call {id} in progress"));
    };
    let key = call.key;
    match ask_core(&context, |reply| CoreRequest::Hangup { call: key, reply }).await {
        Ok(true) => {
            tracing::info!(call = key.0, tenant = %call.tenant, trunk = %call.trunk, "call ended by an operator (admin API)");
            Json(serde_json::json!({ "id": key.0, "ending": true })).into_response()
        }
        Ok(false) => error(StatusCode::NOT_FOUND, format!("call {id} already ended")),
        Err(response) => response,
    }
}

#[derive(Debug, Serialize)]
struct TraceView {
    id: u64,
    call_ids: Vec<String>,
    tenant: String,
    trunk: String,
    direction: &'static str,
    started_unix_ms: u64,
    ended_unix_ms: Option<u64>,
    /// `ended (<reason>)` once answered and ended, `failed <status> (<reason>)` when not
    /// answered; `None` while in progress.
    outcome: Option<String>,
    /// Messages that gave way to newer ones in the bounded trace.
    dropped: usize,
    messages: Vec<MessageView>,
}

#[derive(Debug, Serialize)]
struct MessageView {
    at_unix_ms: u64,
    offset_ms: u64,
    /// `received` or `sent`.
    direction: &'static str,
    leg: &'static str,
    transport: &'static str,
    peer: Option<String>,
    first_line: String,
    text: String,
    body_omitted: usize,
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn trace_view(trace: CallTrace) -> TraceView {
    TraceView {
        id: trace.key.0,
        call_ids: trace.call_ids,
        tenant: trace.tenant,
        trunk: trace.trunk,
        direction: trace.direction,
        started_unix_ms: unix_ms(trace.started),
        ended_unix_ms: trace.ended.map(unix_ms),
        outcome: trace.outcome.map(|outcome| match outcome {
            CallOutcome::Failed { status, reason } => {
                format!("failed {status} ({})", reason.label())
            }
            CallOutcome::Ended { reason } => format!("ended ({})", reason.label()),
        }),
        dropped: trace.dropped,
        messages: trace
            .messages
            .into_iter()
            .map(|m| MessageView {
                at_unix_ms: unix_ms(m.at),
                offset_ms: m.offset.as_millis() as u64,
                direction: match m.direction {
                    TraceDirection::Received => "received",
                    TraceDirection::Sent => "sent",
                },
                leg: m.leg.label(),
                transport: m.transport.label(),
                peer: m.peer.map(|p| p.to_string()),
                first_line: m.text.lines().next().unwrap_or_default().to_string(),
                text: m.text,
                body_omitted: m.body_omitted,
            })
            .collect(),
    }
}

pub(super) async fn sip(
    State(context): State<Arc<AdminContext>>,
    Path(id): Path<String>,
) -> Response {
    // Ended calls are only in the traces (kept `ops.call_trace_keep_seconds`).
    let trace = match id.parse::<u64>() {
        Ok(key) => context.traces.get(CallKey(key)),
        Err(_) => context.traces.find_by_call_id(&id),
    };
    match trace {
        Some(trace) => Json(trace_view(trace)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no SIP trace of call {id} (unknown, or ended too long ago)"),
        ),
    }
}
