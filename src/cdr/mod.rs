//! Call detail records: one JSON record per call ([`record`], schema in
//! `docs/cdr-schema.json`), built by the dispatcher when the call ends and handed to each sink
//! on a bounded queue of its own that the SIP core never waits on (a full queue drops the
//! record, counted in `cdr_records_dropped_total{sink,reason="queue_full"}`).
//!
//! Sinks: a rotating JSON-lines file ([`file`], the default) written by its own thread, and an
//! HTTP webhook ([`webhook`]) with batching and retries, a tokio task. Counters in
//! [`metrics`].

pub mod file;
mod metrics;
pub mod mos;
pub mod record;
pub mod time;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;

pub use file::{FileSinkSettings, FsyncPolicy};
pub use metrics::CdrMetrics;
pub use record::{CallDetailRecord, CallLife, EndFacts, Ending, Numbers, SCHEMA_VERSION};
pub use webhook::WebhookSettings;

/// `[cdr]`: which sinks run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CdrSettings {
    pub file: Option<FileSinkSettings>,
    pub webhook: Option<WebhookSettings>,
}

impl CdrSettings {
    pub fn enabled(&self) -> bool {
        self.file.is_some() || self.webhook.is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CdrError {
    #[error("CDR file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("CDR webhook: {0}")]
    Webhook(String),
    #[error("metrics registration: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The running sinks. Shared by the SIP core (which submits) and the app (which flushes at
/// shutdown).
pub struct Cdr {
    file: Option<file::FileSink>,
    webhook: Option<webhook::WebhookSink>,
    metrics: CdrMetrics,
}

impl Cdr {
    /// Open the file and start the sinks `settings` names (the webhook needs a tokio runtime).
    /// Counters are registered whether or not a sink runs.
    pub fn start(settings: &CdrSettings, registry: &Registry) -> Result<Arc<Cdr>, CdrError> {
        let metrics = CdrMetrics::register(registry)?;
        let file = match &settings.file {
            Some(s) => Some(file::FileSink::start(s.clone(), metrics.clone()).map_err(
                |source| CdrError::File {
                    path: s.path.display().to_string(),
                    source,
                },
            )?),
            None => None,
        };
        let webhook = match &settings.webhook {
            Some(s) => Some(
                webhook::WebhookSink::start(s.clone(), metrics.clone())
                    .map_err(CdrError::Webhook)?,
            ),
            None => None,
        };
        Ok(Arc::new(Cdr {
            file,
            webhook,
            metrics,
        }))
    }

    /// Whether any sink runs (the dispatcher gathers nothing for records otherwise).
    pub fn enabled(&self) -> bool {
        self.file.is_some() || self.webhook.is_some()
    }

    /// Queue `record` for every sink; never blocks.
    pub fn submit(&self, record: CallDetailRecord) {
        let record = Arc::new(record);
        if let Some(file) = &self.file {
            if !file.submit(record.clone()) {
                self.metrics.dropped("file", "queue_full", 1);
            }
        }
        if let Some(webhook) = &self.webhook {
            if !webhook.submit(record) {
                self.metrics.dropped("webhook", "queue_full", 1);
            }
        }
    }

    /// At shutdown: wait (at most `limit` per sink) until what was queued is written and
    /// synced (file) and has had a delivery attempt (webhook).
    pub async fn flush(&self, limit: Duration) {
        if let Some(file) = &self.file {
            if !file.flush(limit).await {
                tracing::warn!("CDR file not flushed in time at shutdown");
            }
        }
        if let Some(webhook) = &self.webhook {
            if !webhook.flush(limit).await {
                tracing::warn!("CDR webhook not flushed in time at shutdown");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink whose writer does not keep up: the call path never waits, the record is
    /// dropped and counted.
    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let registry = Registry::new();
        let metrics = CdrMetrics::register(&registry).unwrap();
        // A queue of one that nobody reads (a stalled writer).
        let (queue, _stalled) = std::sync::mpsc::sync_channel(1);
        let cdr = Cdr {
            file: Some(file::FileSink::with_queue(queue)),
            webhook: None,
            metrics: metrics.clone(),
        };
        assert!(cdr.enabled());
        for _ in 0..3 {
            cdr.submit(record::tests::sample_record());
        }
        let dropped = metrics.dropped.with_label_values(&["file", "queue_full"]);
        assert_eq!(dropped.get(), 2);
    }

    /// A file that cannot be opened stops the start with its path (the SBC does not run
    /// without the records it was told to keep).
    #[test]
    fn an_unopenable_file_fails_the_start_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("plain");
        std::fs::write(&not_a_dir, b"").unwrap();
        let settings = CdrSettings {
            file: Some(FileSinkSettings {
                path: not_a_dir.join("calls.jsonl"),
                rotate_bytes: 0,
                rotate_after: None,
                keep_files: 0,
                fsync: FsyncPolicy::Never,
                batch_records: 1,
                queue_records: 1,
            }),
            webhook: None,
        };
        let error = match Cdr::start(&settings, &Registry::new()) {
            Ok(_) => panic!("started with an unopenable file"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains("plain/calls.jsonl"), "{error}");
    }
}
