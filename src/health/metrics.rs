//! Prometheus metrics of OPTIONS health. The `peer` label is the configured peer name.

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone, Debug)]
pub struct HealthMetrics {
    /// `options_peer_up{peer}`: 1 when the peer answered its last ping, else 0.
    pub peer_up: IntGaugeVec,
    /// `options_sent_total`: OPTIONS pings sent.
    pub sent: IntCounter,
    /// `options_failures_total{peer}`: pings that timed out or could not be sent.
    pub failures: IntCounterVec,
}

impl HealthMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = HealthMetrics {
            peer_up: IntGaugeVec::new(
                Opts::new(
                    "options_peer_up",
                    "1 when the peer answered the last SIP OPTIONS ping",
                ),
                &["peer"],
            )?,
            sent: IntCounter::new("options_sent_total", "SIP OPTIONS pings sent")?,
            failures: IntCounterVec::new(
                Opts::new(
                    "options_failures_total",
                    "SIP OPTIONS pings that timed out or failed to send, by peer",
                ),
                &["peer"],
            )?,
        };
        registry.register(Box::new(metrics.peer_up.clone()))?;
        registry.register(Box::new(metrics.sent.clone()))?;
        registry.register(Box::new(metrics.failures.clone()))?;
        Ok(metrics)
    }
}
