//! The ops listener's routes: `/metrics` (Prometheus text), `/healthz` (every watched loop
//! beats) and `/readyz` (listeners bound, a Teams proxy up, not draining). Unauthenticated,
//! GET and HEAD only; served by [`super::web`] with its limits.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};

use super::{Liveness, Readiness};

/// Counters of the ops endpoint itself.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
}

impl HttpMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<HttpMetrics> {
        let requests = IntCounterVec::new(
            Opts::new(
                "ops_http_requests_total",
                "Requests to the ops HTTP endpoint by path and status",
            ),
            &["path", "status"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        Ok(HttpMetrics { requests })
    }
}

pub struct OpsState {
    pub registry: Registry,
    pub liveness: Arc<Liveness>,
    pub readiness: Arc<Readiness>,
    pub metrics: HttpMetrics,
}

/// The ops routes, with every request counted by path (`other` for unknown ones) and status.
pub fn router(state: Arc<OpsState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(axum::middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

async fn count(State(state): State<Arc<OpsState>>, request: Request, next: Next) -> Response {
    // The route template, never the raw path: a scanner's paths must not become labels.
    let label = match request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str())
    {
        Some("/metrics") => "/metrics",
        Some("/healthz") => "/healthz",
        Some("/readyz") => "/readyz",
        _ => "other",
    };
    let response = next.run(request).await;
    state
        .metrics
        .requests
        .with_label_values(&[label, response.status().as_str()])
        .inc();
    response
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn metrics(State(state): State<Arc<OpsState>>) -> Response {
    let mut body = Vec::new();
    match TextEncoder::new().encode(&state.registry.gather(), &mut body) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics failed: {e}\n"),
        ),
    }
}

async fn healthz(State(state): State<Arc<OpsState>>) -> Response {
    let (healthy, body) = state.liveness.status(std::time::Instant::now());
    text(status_of(healthy), body)
}

async fn readyz(State(state): State<Arc<OpsState>>) -> Response {
    let (ready, body) = state.readiness.status();
    text(status_of(ready), body)
}

fn status_of(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}
