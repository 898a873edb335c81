//! How the media engine copes with its own faults: a full event queue and a dead or stuck
//! worker.
//!
//! * Events go to the control plane through one bounded queue of [`EVENT_QUEUE`] entries.
//!   A worker never blocks on it: when it is full, what a call does not depend on is dropped
//!   and counted (`Latched`, `IceNominated` and `Active` describe state the worker already
//!   applied; the call layer only logs them), while an `Inactive` report, which ends a call,
//!   is deferred: the worker takes the report back and makes it again on its next inactivity
//!   tick, so it arrives late rather than never. The first overflow is logged once; the
//!   counters tell the rest.
//! * Each worker has a heartbeat (see [`crate::ops::liveness`]); placement skips workers
//!   that are dead or stuck, counting and logging each failure once. Commands to a worker
//!   wait in a bounded queue (`COMMAND_QUEUE`); a stuck worker's full queue refuses more.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{self, Receiver, Sender};

use crate::media::engine::MediaEvent;

/// Events waiting for the control plane, from all workers together. A burst of inactivity
/// reports after a network outage can be one per leg of every session; beyond this many the
/// rest wait for the next tick.
pub const EVENT_QUEUE: usize = 4096;

/// The control plane's end of the media event queue.
pub type MediaEvents = Receiver<MediaEvent>;

/// Counters of the engine's own faults.
#[derive(Clone)]
pub struct FaultMetrics {
    events_dropped: IntCounterVec,
    events_deferred: IntCounter,
    pub(crate) worker_failures: IntCounter,
    pub(crate) sessions_refused: IntCounterVec,
    pub(crate) commands_refused: IntCounter,
    overflow_logged: Arc<AtomicBool>,
}

impl FaultMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<FaultMetrics> {
        let events_dropped = IntCounterVec::new(
            Opts::new(
                "media_events_dropped_total",
                "Media notices dropped because the event queue was full (state already applied)",
            ),
            &["event"],
        )?;
        let events_deferred = IntCounter::new(
            "media_events_deferred_total",
            "Inactivity reports the full event queue pushed back to the worker's next tick",
        )?;
        let worker_failures = IntCounter::new(
            "media_worker_failures_total",
            "Media workers found dead or stuck (each counted once when placement skips it)",
        )?;
        let sessions_refused = IntCounterVec::new(
            Opts::new(
                "media_sessions_refused_total",
                "Media sessions not created, by reason",
            ),
            &["reason"],
        )?;
        let commands_refused = IntCounter::new(
            "media_commands_refused_total",
            "Control commands refused because the worker's queue was full (worker stuck)",
        )?;
        registry.register(Box::new(events_dropped.clone()))?;
        registry.register(Box::new(commands_refused.clone()))?;
        registry.register(Box::new(events_deferred.clone()))?;
        registry.register(Box::new(worker_failures.clone()))?;
        registry.register(Box::new(sessions_refused.clone()))?;
        Ok(FaultMetrics {
            events_dropped,
            events_deferred,
            worker_failures,
            sessions_refused,
            commands_refused,
            overflow_logged: Arc::new(AtomicBool::new(false)),
        })
    }
}

/// A worker's end of the event queue.
#[derive(Clone)]
pub struct EventSink {
    queue: Sender<MediaEvent>,
    metrics: FaultMetrics,
}

/// The bounded event queue of an engine.
pub fn event_queue(capacity: usize, metrics: FaultMetrics) -> (EventSink, MediaEvents) {
    let (queue, events) = mpsc::channel(capacity);
    (EventSink { queue, metrics }, events)
}

impl EventSink {
    /// Queue `event` without blocking. `false` means an `Inactive` report did not fit: the
    /// caller must take it back and report it again later. Everything else always counts as
    /// delivered (dropped and counted when the queue is full, or nobody listens any more).
    pub fn send(&self, event: MediaEvent) -> bool {
        let event = match self.queue.try_send(event) {
            Ok(()) | Err(TrySendError::Closed(_)) => return true,
            Err(TrySendError::Full(event)) => event,
        };
        if !self.metrics.overflow_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                capacity = self.queue.max_capacity(),
                "media event queue full: notices dropped and inactivity reports retried \
                 (media_events_dropped_total, media_events_deferred_total); logged once"
            );
        }
        let label = match event {
            MediaEvent::Inactive { .. } => {
                self.metrics.events_deferred.inc();
                return false;
            }
            MediaEvent::Active { .. } => "active",
            MediaEvent::Latched { .. } => "latched",
            MediaEvent::IceNominated { .. } => "ice_nominated",
        };
        self.metrics
            .events_dropped
            .with_label_values(&[label])
            .inc();
        true
    }
}

/// The index of the least loaded worker among those alive, from `(sessions, alive)` per
/// worker; `None` when none is alive. Ties go to the lowest index.
pub fn least_loaded_alive(workers: impl Iterator<Item = (usize, bool)>) -> Option<usize> {
    workers
        .enumerate()
        .filter(|(_, (_, alive))| *alive)
        .min_by_key(|(_, (sessions, _))| *sessions)
        .map(|(index, _)| index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::engine::SessionId;
    use crate::media::leg::LegSide;

    fn inactive(n: u64) -> MediaEvent {
        MediaEvent::Inactive {
            session: SessionId(n),
            leg: LegSide::Carrier,
        }
    }

    fn latched(n: u64) -> MediaEvent {
        MediaEvent::Latched {
            session: SessionId(n),
            leg: LegSide::Carrier,
            remote: "127.0.0.2:4000".parse().unwrap(),
        }
    }

    #[test]
    fn a_full_queue_drops_notices_and_defers_inactivity_reports() {
        let registry = Registry::new();
        let metrics = FaultMetrics::register(&registry).unwrap();
        let (sink, mut events) = event_queue(2, metrics.clone());
        assert!(sink.send(latched(1)));
        assert!(sink.send(inactive(2)));
        // Full: the notice is gone (counted), the inactivity report is handed back.
        assert!(sink.send(latched(3)));
        assert!(!sink.send(inactive(4)));
        assert_eq!(
            metrics.events_dropped.with_label_values(&["latched"]).get(),
            1
        );
        assert_eq!(metrics.events_deferred.get(), 1);
        assert_eq!(events.try_recv().unwrap(), latched(1));
        assert_eq!(events.try_recv().unwrap(), inactive(2));
        assert!(events.try_recv().is_err());
        // Room again: the retried report goes through.
        assert!(sink.send(inactive(4)));
        assert_eq!(events.try_recv().unwrap(), inactive(4));
    }

    #[test]
    fn nobody_listening_is_not_a_deferral() {
        let metrics = FaultMetrics::register(&Registry::new()).unwrap();
        let (sink, events) = event_queue(1, metrics.clone());
        drop(events);
        assert!(sink.send(inactive(1)));
        assert_eq!(metrics.events_deferred.get(), 0);
    }

    #[test]
    fn placement_skips_workers_that_are_not_alive() {
        let pick = |w: &[(usize, bool)]| least_loaded_alive(w.iter().copied());
        assert_eq!(pick(&[(0, true), (0, true)]), Some(0));
        assert_eq!(pick(&[(3, true), (1, true)]), Some(1));
        // The least loaded worker is dead (it lost its sessions' traffic, not their count).
        assert_eq!(pick(&[(0, false), (5, true), (7, true)]), Some(1));
        assert_eq!(pick(&[(9, true), (0, false), (2, false)]), Some(0));
        assert_eq!(pick(&[(0, false), (0, false)]), None);
        assert_eq!(pick(&[]), None);
    }
}
