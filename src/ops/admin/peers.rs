//! `GET /admin/tenants`, `GET /admin/trunks` (OPTIONS state, last response, round-trip time,
//! calls in progress against the limit) and `GET /admin/teams` (each Microsoft proxy).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::{ask_core, AdminContext, CoreRequest};
use crate::health::{seconds_since, PeerReport, PeerState};

/// Calls in progress by a key of theirs (tenant or trunk).
async fn active_by(
    context: &AdminContext,
    key: impl Fn(&crate::dispatch::CallSnapshot) -> &str,
) -> Result<HashMap<String, u32>, Response> {
    let calls = ask_core(context, CoreRequest::Calls).await?;
    let mut counts = HashMap::new();
    for call in &calls {
        *counts.entry(key(call).to_string()).or_insert(0) += 1;
    }
    Ok(counts)
}

#[derive(Debug, Serialize)]
struct OptionsView {
    /// `unknown` (no ping completed yet), `up` or `down`.
    state: &'static str,
    target: String,
    transport: &'static str,
    last_status: Option<u16>,
    last_response_seconds_ago: Option<f64>,
    last_change_seconds_ago: Option<f64>,
    rtt_ms: Option<f64>,
    consecutive_failures: u32,
}

fn options_view(report: PeerReport, now: Instant) -> OptionsView {
    OptionsView {
        state: match report.health.state {
            PeerState::Unknown => "unknown",
            PeerState::Up => "up",
            PeerState::Down => "down",
        },
        target: report.target,
        transport: report.transport,
        last_status: report.health.last_status,
        last_response_seconds_ago: seconds_since(report.health.last_response, now),
        last_change_seconds_ago: seconds_since(report.health.last_change, now),
        rtt_ms: report.rtt.map(|rtt| rtt.as_secs_f64() * 1000.0),
        consecutive_failures: report.health.consecutive_failures,
    }
}

#[derive(Debug, Serialize)]
struct TrunkView {
    name: String,
    address: String,
    transport: String,
    active_calls: u32,
    max_concurrent_calls: Option<u32>,
    max_calls_per_second: Option<u32>,
    /// `None` when the trunk is not pinged (`options_ping = false`).
    options: Option<OptionsView>,
}

pub(super) async fn trunks(State(context): State<Arc<AdminContext>>) -> Response {
    let active = match active_by(&context, |c| &c.trunk).await {
        Ok(active) => active,
        Err(response) => return response,
    };
    let view = context.view.load();
    let now = Instant::now();
    let trunks: Vec<TrunkView> = view
        .loaded
        .config
        .carrier_trunks
        .iter()
        .map(|t| TrunkView {
            name: t.name.clone(),
            address: t.address.clone(),
            transport: t.transport.as_str().to_string(),
            active_calls: active.get(&t.name).copied().unwrap_or(0),
            max_concurrent_calls: t.max_concurrent_calls,
            max_calls_per_second: t.max_calls_per_second,
            options: context
                .peers
                .get(&t.name)
                .filter(|p| !p.is_teams)
                .map(|p| options_view(p, now)),
        })
        .collect();
    Json(serde_json::json!({ "trunks": trunks })).into_response()
}

#[derive(Debug, Serialize)]
struct TenantView {
    name: String,
    fqdn: String,
    numbers: Vec<String>,
    carrier_trunk: String,
    failover_carrier_trunks: Vec<String>,
    active_calls: u32,
    max_concurrent_calls: Option<u32>,
    max_calls_per_second: Option<u32>,
}

pub(super) async fn tenants(State(context): State<Arc<AdminContext>>) -> Response {
    let active = match active_by(&context, |c| &c.tenant).await {
        Ok(active) => active,
        Err(response) => return response,
    };
    let view = context.view.load();
    let tenants: Vec<TenantView> = view
        .loaded
        .config
        .tenants
        .iter()
        .map(|t| TenantView {
            name: t.name.clone(),
            fqdn: t.fqdn.clone(),
            numbers: t.numbers.clone(),
            carrier_trunk: t.carrier_trunk.clone(),
            failover_carrier_trunks: t.failover_carrier_trunks.clone(),
            active_calls: active.get(&t.name).copied().unwrap_or(0),
            max_concurrent_calls: t.max_concurrent_calls,
            max_calls_per_second: t.max_calls_per_second,
        })
        .collect();
    Json(serde_json::json!({ "tenants": tenants })).into_response()
}

#[derive(Debug, Serialize)]
struct ProxyView {
    name: String,
    #[serde(flatten)]
    options: OptionsView,
}

pub(super) async fn teams(State(context): State<Arc<AdminContext>>) -> Response {
    let now = Instant::now();
    let proxies: Vec<ProxyView> = context
        .peers
        .snapshot()
        .into_iter()
        .filter(|(_, p)| p.is_teams)
        .map(|(name, p)| ProxyView {
            name,
            options: options_view(p, now),
        })
        .collect();
    Json(serde_json::json!({ "proxies": proxies })).into_response()
}
