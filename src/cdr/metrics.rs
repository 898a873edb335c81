//! CDR counters, per sink (`file`, `webhook`).

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct CdrMetrics {
    /// `cdr_records_total{sink}`: records written to the file / delivered to the webhook.
    pub records: IntCounterVec,
    /// `cdr_records_dropped_total{sink,reason}`: `queue_full` (the sink's queue was full when
    /// the call ended: never waited for), `buffer_full` (the webhook's retry buffer gave the
    /// oldest up), `gave_up` (a webhook batch failed `max_attempts` times), `write_failed`.
    pub dropped: IntCounterVec,
    /// `cdr_webhook_failures_total`: POSTs that failed (no answer, or not 2xx).
    pub webhook_failures: IntCounter,
    /// `cdr_webhook_retries_total`: POSTs repeated after a failure.
    pub webhook_retries: IntCounter,
    /// `cdr_file_rotations_total`.
    pub file_rotations: IntCounter,
}

impl CdrMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<CdrMetrics> {
        let records = IntCounterVec::new(
            Opts::new(
                "cdr_records_total",
                "Call detail records written (file) or delivered (webhook), by sink",
            ),
            &["sink"],
        )?;
        let dropped = IntCounterVec::new(
            Opts::new(
                "cdr_records_dropped_total",
                "Call detail records lost, by sink and reason (queue_full, buffer_full, \
                 gave_up, write_failed)",
            ),
            &["sink", "reason"],
        )?;
        let webhook_failures = IntCounter::new(
            "cdr_webhook_failures_total",
            "CDR webhook POSTs that failed (no answer or not 2xx)",
        )?;
        let webhook_retries = IntCounter::new(
            "cdr_webhook_retries_total",
            "CDR webhook POSTs repeated after a failure",
        )?;
        let file_rotations = IntCounter::new(
            "cdr_file_rotations_total",
            "CDR files rotated (by size or age)",
        )?;
        registry.register(Box::new(records.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(webhook_failures.clone()))?;
        registry.register(Box::new(webhook_retries.clone()))?;
        registry.register(Box::new(file_rotations.clone()))?;
        Ok(CdrMetrics {
            records,
            dropped,
            webhook_failures,
            webhook_retries,
            file_rotations,
        })
    }

    pub fn written(&self, sink: &str, count: u64) {
        self.records.with_label_values(&[sink]).inc_by(count);
    }

    pub fn dropped(&self, sink: &str, reason: &str, count: u64) {
        self.dropped
            .with_label_values(&[sink, reason])
            .inc_by(count);
    }
}
