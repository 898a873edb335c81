//! Call metrics per tenant and per carrier trunk. Label values are names from the
//! configuration (or "unknown"), never text from the network, so series stay bounded.
//! ASR and NER are Prometheus recording rules over these counters
//! (`configs/prometheus-rules.yml`).

use std::sync::Arc;
use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::limits::Rejection;

const UNKNOWN: &str = "unknown";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallDirection {
    /// PSTN → Teams.
    Inbound,
    /// Teams → PSTN.
    Outbound,
}

impl CallDirection {
    pub fn label(self) -> &'static str {
        match self {
            CallDirection::Inbound => "inbound",
            CallDirection::Outbound => "outbound",
        }
    }
}

/// How a call attempt ended without being answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallFailure {
    /// A final non-2xx response.
    Status(u16),
    /// No final response in time.
    Timeout,
}

impl CallFailure {
    /// `class` label: "4xx", "5xx", "6xx", "timeout", or "other" (3xx and anything odd).
    pub fn class(self) -> &'static str {
        match self {
            CallFailure::Timeout => "timeout",
            CallFailure::Status(code) => match code {
                400..=499 => "4xx",
                500..=599 => "5xx",
                600..=699 => "6xx",
                _ => "other",
            },
        }
    }

    /// Failures that still count as effective in Microsoft's NER (doc §5.1: answered + user
    /// busy + ring-no-answer + terminal reject): the call reached the user.
    /// busy: 486 Busy Here, 600 Busy Everywhere; no_answer: 480 Temporarily Unavailable
    /// (rang out), 487 Request Terminated (caller gave up while it rang);
    /// rejected: 603 Decline, 607 Unwanted.
    pub fn user_cause(self) -> Option<&'static str> {
        match self {
            CallFailure::Status(486 | 600) => Some("busy"),
            CallFailure::Status(480 | 487) => Some("no_answer"),
            CallFailure::Status(603 | 607) => Some("rejected"),
            _ => None,
        }
    }
}

/// Label values of one call; build with `RoutingTable::call_labels`.
#[derive(Debug, Clone)]
pub struct CallLabels {
    tenant: Option<Arc<str>>,
    trunk: Option<Arc<str>>,
    direction: CallDirection,
}

impl CallLabels {
    pub(crate) fn new(
        tenant: Option<Arc<str>>,
        trunk: Option<Arc<str>>,
        direction: CallDirection,
    ) -> CallLabels {
        CallLabels {
            tenant,
            trunk,
            direction,
        }
    }

    /// Labels for a call no table could place (tenant and trunk "unknown").
    pub fn unknown(direction: CallDirection) -> CallLabels {
        CallLabels::new(None, None, direction)
    }

    /// The tenant's name, or "unknown".
    pub fn tenant(&self) -> &str {
        self.tenant.as_deref().unwrap_or(UNKNOWN)
    }
    /// The trunk's name, or "unknown".
    pub fn trunk(&self) -> &str {
        self.trunk.as_deref().unwrap_or(UNKNOWN)
    }
    pub fn direction(&self) -> CallDirection {
        self.direction
    }
}

#[derive(Debug, Clone)]
pub struct RoutingMetrics {
    attempted: IntCounterVec,
    answered: IntCounterVec,
    failed: IntCounterVec,
    failed_user: IntCounterVec,
    active: IntGaugeVec,
    setup_seconds: HistogramVec,
    rejected: IntCounterVec,
}

impl RoutingMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let call = &["tenant", "trunk", "direction"];
        let m = RoutingMetrics {
            attempted: IntCounterVec::new(
                Opts::new("calls_attempted_total", "Call attempts routed"),
                call,
            )?,
            answered: IntCounterVec::new(
                Opts::new("calls_answered_total", "Calls answered (2xx)"),
                call,
            )?,
            failed: IntCounterVec::new(
                Opts::new(
                    "calls_failed_total",
                    "Calls that ended without answer, by class 4xx/5xx/6xx/timeout/other",
                ),
                &["tenant", "trunk", "direction", "class"],
            )?,
            failed_user: IntCounterVec::new(
                Opts::new(
                    "calls_failed_user_total",
                    "Unanswered calls that reached the user (busy, no_answer, rejected); \
                     effective in Microsoft's NER",
                ),
                &["tenant", "trunk", "direction", "cause"],
            )?,
            active: IntGaugeVec::new(
                Opts::new(
                    "calls_active",
                    "Calls in progress (attempted, not yet ended)",
                ),
                &["tenant", "trunk"],
            )?,
            setup_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "call_setup_seconds",
                    "Time from the initial INVITE to the answer",
                )
                .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0]),
                &["direction"],
            )?,
            rejected: IntCounterVec::new(
                Opts::new(
                    "calls_rejected_total",
                    "Calls refused by admission limits (503 + Retry-After)",
                ),
                &["scope", "reason"],
            )?,
        };
        registry.register(Box::new(m.attempted.clone()))?;
        registry.register(Box::new(m.answered.clone()))?;
        registry.register(Box::new(m.failed.clone()))?;
        registry.register(Box::new(m.failed_user.clone()))?;
        registry.register(Box::new(m.active.clone()))?;
        registry.register(Box::new(m.setup_seconds.clone()))?;
        registry.register(Box::new(m.rejected.clone()))?;
        Ok(m)
    }

    /// A routed call attempt starts; pair with exactly one `ended` when it is over.
    pub fn attempt(&self, labels: &CallLabels) {
        let direction = labels.direction.label();
        self.attempted
            .with_label_values(&[labels.tenant(), labels.trunk(), direction])
            .inc();
        self.active
            .with_label_values(&[labels.tenant(), labels.trunk()])
            .inc();
    }

    pub fn answered(&self, labels: &CallLabels, setup: Duration) {
        let direction = labels.direction.label();
        self.answered
            .with_label_values(&[labels.tenant(), labels.trunk(), direction])
            .inc();
        self.setup_seconds
            .with_label_values(&[direction])
            .observe(setup.as_secs_f64());
    }

    pub fn failed(&self, labels: &CallLabels, failure: CallFailure) {
        let direction = labels.direction.label();
        self.failed
            .with_label_values(&[labels.tenant(), labels.trunk(), direction, failure.class()])
            .inc();
        if let Some(cause) = failure.user_cause() {
            self.failed_user
                .with_label_values(&[labels.tenant(), labels.trunk(), direction, cause])
                .inc();
        }
    }

    /// The call is over (answered and hung up, or failed).
    pub fn ended(&self, labels: &CallLabels) {
        self.active
            .with_label_values(&[labels.tenant(), labels.trunk()])
            .dec();
    }

    pub fn rejected(&self, rejection: &Rejection) {
        self.rejected
            .with_label_values(&[rejection.scope.label(), rejection.reason.label()])
            .inc();
    }
}
