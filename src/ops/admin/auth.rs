//! Bearer-token authentication of the admin API, and its counters.
//!
//! Every request must carry `Authorization: Bearer <token>` with the token of
//! `admin.token_file` (none configured: loopback only, every request passes). A missing
//! token gets 401 with `WWW-Authenticate: Bearer`, a wrong one 401 with
//! `error="invalid_token"`; both are counted and logged with the client address at most once
//! per 10 s per address and kind, and the token a client sent is never logged. Tokens are
//! compared through their SHA-1 digests in constant time, so neither the content nor the
//! length of the configured token leaks through timing.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{IntCounterVec, Opts, Registry};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use super::{error, AdminContext};
use crate::ops::RateLimitedLog;

/// One line per client address and kind of refusal per 10 s (the table is bounded).
static REFUSED: RateLimitedLog<(IpAddr, &'static str)> =
    RateLimitedLog::new(Duration::from_secs(10));

/// `admin_http_requests_total{route,status}` and `admin_auth_failures_total{reason}`.
#[derive(Clone)]
pub struct AdminMetrics {
    requests: IntCounterVec,
    auth_failures: IntCounterVec,
}

impl AdminMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<AdminMetrics> {
        let requests = IntCounterVec::new(
            Opts::new(
                "admin_http_requests_total",
                "Requests to the admin API by route and status",
            ),
            &["route", "status"],
        )?;
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "admin_auth_failures_total",
                "Admin API requests refused for their token (missing, wrong)",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(auth_failures.clone()))?;
        Ok(AdminMetrics {
            requests,
            auth_failures,
        })
    }
}

/// Whether `presented` is `expected`, in time independent of both.
pub fn token_matches(presented: &[u8], expected: &[u8]) -> bool {
    Sha1::digest(presented)
        .as_slice()
        .ct_eq(Sha1::digest(expected).as_slice())
        .into()
}

/// The token of an `Authorization` value (`Bearer <token>`, scheme case-insensitive).
fn bearer(value: &HeaderValue) -> Option<&[u8]> {
    let value = value.as_bytes();
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    value.get(7..).map(|token| token.trim_ascii())
}

enum Refusal {
    Missing,
    Wrong,
}

pub(super) async fn require_token(
    State(context): State<Arc<AdminContext>>,
    request: Request,
    next: Next,
) -> Response {
    // The route template, never the raw path: what clients send must not become labels.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".to_string());
    let refusal = match &context.view.load().token {
        None => None,
        Some(expected) => match request.headers().get(header::AUTHORIZATION) {
            None => Some(Refusal::Missing),
            Some(value) => match bearer(value) {
                Some(token) if token_matches(token, expected.as_bytes()) => None,
                Some(_) => Some(Refusal::Wrong),
                None => Some(Refusal::Missing),
            },
        },
    };
    let response = match refusal {
        None => next.run(request).await,
        Some(refusal) => {
            let peer = request
                .extensions()
                .get::<crate::ops::web::Peer>()
                .map(|p| p.0);
            refuse(&context, refusal, peer)
        }
    };
    context
        .metrics
        .requests
        .with_label_values(&[&route, response.status().as_str()])
        .inc();
    response
}

fn refuse(
    context: &AdminContext,
    refusal: Refusal,
    peer: Option<std::net::SocketAddr>,
) -> Response {
    let (reason, challenge, message) = match refusal {
        Refusal::Missing => (
            "missing",
            "Bearer",
            "an Authorization: Bearer token is required",
        ),
        Refusal::Wrong => (
            "wrong",
            "Bearer error=\"invalid_token\"",
            "the token is not valid",
        ),
    };
    context
        .metrics
        .auth_failures
        .with_label_values(&[reason])
        .inc();
    // Unknown only if the request did not come through `web::serve`.
    let source = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.ip());
    if let Some(suppressed) = REFUSED.check(&(source, reason), Instant::now()) {
        tracing::warn!(
            reason,
            %source,
            suppressed,
            "admin API request refused for its token (more from this source suppressed for 10 s)"
        );
    }
    let mut response = error(StatusCode::UNAUTHORIZED, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_parsed_and_compared() {
        let value = HeaderValue::from_static("Bearer  s3cret-token-0123456 ");
        assert_eq!(bearer(&value), Some(&b"s3cret-token-0123456"[..]));
        let value = HeaderValue::from_static("bearer abc");
        assert_eq!(bearer(&value), Some(&b"abc"[..]));
        assert_eq!(bearer(&HeaderValue::from_static("Basic abc")), None);
        assert_eq!(bearer(&HeaderValue::from_static("Bear")), None);
        assert!(token_matches(b"abc", b"abc"));
        assert!(!token_matches(b"abd", b"abc"));
        assert!(!token_matches(b"abcd", b"abc"));
        assert!(!token_matches(b"", b"abc"));
    }
}
