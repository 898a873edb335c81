//! Prometheus metrics of the transaction layer. Label values come from code only.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::{Timer, TxKind};

#[derive(Clone, Debug)]
pub struct TransactionMetrics {
    /// `transactions_created_total{kind}`: client_invite, client_non_invite, server_invite,
    /// server_non_invite.
    pub created: IntCounterVec,
    /// `transactions_active`: live transactions of all kinds.
    pub active: IntGauge,
    /// `transactions_retransmissions_total`: requests and responses sent again (timer driven
    /// or in answer to a retransmitted request).
    pub retransmissions: IntCounter,
    /// `transactions_timeouts_total{timer}`: B, F, H and L.
    pub timeouts: IntCounterVec,
    /// `transactions_rejected_total`: new requests answered 503 because the table was full.
    pub rejected: IntCounter,
    /// `transactions_stray_total`: responses and ACK-less messages matching nothing, dropped.
    pub stray: IntCounter,
    /// `transactions_quota_rejected_total{payer}`: new requests answered 503 because their
    /// source address (`source`) or peer (`peer`) holds its quota of transactions.
    pub quota_rejected: IntCounterVec,
}

impl TransactionMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = TransactionMetrics {
            created: IntCounterVec::new(
                Opts::new(
                    "transactions_created_total",
                    "SIP transactions created, by kind",
                ),
                &["kind"],
            )?,
            active: IntGauge::new("transactions_active", "Live SIP transactions")?,
            retransmissions: IntCounter::new(
                "transactions_retransmissions_total",
                "SIP requests and responses retransmitted",
            )?,
            timeouts: IntCounterVec::new(
                Opts::new(
                    "transactions_timeouts_total",
                    "SIP transactions timed out, by RFC 3261/6026 timer",
                ),
                &["timer"],
            )?,
            rejected: IntCounter::new(
                "transactions_rejected_total",
                "New SIP requests answered 503 because the transaction table was full",
            )?,
            stray: IntCounter::new(
                "transactions_stray_total",
                "SIP responses matching no transaction, dropped",
            )?,
            quota_rejected: IntCounterVec::new(
                Opts::new(
                    "transactions_quota_rejected_total",
                    "New SIP requests answered 503 because their source address or peer holds its quota of transactions",
                ),
                &["payer"],
            )?,
        };
        registry.register(Box::new(metrics.created.clone()))?;
        registry.register(Box::new(metrics.active.clone()))?;
        registry.register(Box::new(metrics.retransmissions.clone()))?;
        registry.register(Box::new(metrics.timeouts.clone()))?;
        registry.register(Box::new(metrics.rejected.clone()))?;
        registry.register(Box::new(metrics.quota_rejected.clone()))?;
        registry.register(Box::new(metrics.stray.clone()))?;
        Ok(metrics)
    }

    pub(crate) fn on_created(&self, kind: TxKind) {
        self.created.with_label_values(&[kind.as_str()]).inc();
    }

    pub(crate) fn on_timeout(&self, timer: Timer) {
        self.timeouts.with_label_values(&[timer.as_str()]).inc();
    }
}
