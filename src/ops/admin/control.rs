//! `POST /admin/reload` (what SIGHUP does), `POST /admin/drain` (what SIGTERM does first)
//! and `PUT /admin/log-level`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{ask_control, error, AdminContext, ControlRequest};

pub(super) async fn reload(State(context): State<Arc<AdminContext>>) -> Response {
    match ask_control(&context, ControlRequest::Reload).await {
        Ok(Ok(digest)) => {
            Json(serde_json::json!({ "reloaded": true, "digest": digest })).into_response()
        }
        // Nothing changed; the text names every problem (file, line, field).
        Ok(Err(reason)) => error(StatusCode::UNPROCESSABLE_ENTITY, reason),
        Err(response) => response,
    }
}

pub(super) async fn drain(State(context): State<Arc<AdminContext>>) -> Response {
    match ask_control(&context, ControlRequest::Drain).await {
        Ok(started) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "draining": true, "started_now": started })),
        )
            .into_response(),
        Err(response) => response,
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct LogLevel {
    /// A `tracing` filter directive: `debug`, `info,teams_sbc::dispatch=debug`, ...
    level: String,
}

pub(super) async fn log_level(Json(body): Json<LogLevel>) -> Response {
    match crate::ops::logging::set_level(&body.level) {
        Ok(()) => {
            tracing::warn!(level = %body.level, "log level changed through the admin API");
            Json(serde_json::json!({ "level": body.level })).into_response()
        }
        Err(reason) => error(StatusCode::BAD_REQUEST, reason),
    }
}
