//! What `/healthz` reports: whether the SIP core task and every media worker thread are still
//! turning. Each loop writes a [`Heartbeat`] (one relaxed store of a millisecond tick per
//! iteration, nothing else on its path); a loop whose heartbeat is older than the stale
//! threshold is stuck, one whose heartbeat was stopped (its [`StopOnDrop`] guard dropped when
//! the thread unwound or the task ended) is dead. Either makes `/healthz` answer 503 naming
//! it. The same check keeps dead media workers out of session placement.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A loop that has not beaten for this long is reported stuck. The loops beat at least every
/// [`BEAT_EVERY`] (media workers at every epoll wake, which is bounded by their inactivity
/// tick of at most 250 ms), so this is many missed beats: only a wedged loop stays silent
/// that long, not a busy one.
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// How often an idle loop must still beat (the SIP core's periodic tick).
pub const BEAT_EVERY: Duration = Duration::from_secs(1);

/// Tick value of a heartbeat whose loop has ended.
const STOPPED: u64 = u64::MAX;

/// The last time (milliseconds after `epoch`) a loop came round, shared with its watchers.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    inner: Arc<Beat>,
}

#[derive(Debug)]
struct Beat {
    epoch: Instant,
    last_millis: AtomicU64,
}

/// A heartbeat as seen by a watcher at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulse {
    Alive,
    /// No beat for `silent` (at least the stale threshold): the loop is stuck.
    Stale {
        silent: Duration,
    },
    /// The loop ended (a panic unwound it, or it returned).
    Stopped,
}

impl Pulse {
    pub fn is_alive(self) -> bool {
        self == Pulse::Alive
    }
}

impl Heartbeat {
    /// A heartbeat on the clock `epoch` (a media worker's own packet clock, say), beating now.
    pub fn new(epoch: Instant) -> Heartbeat {
        let heartbeat = Heartbeat {
            inner: Arc::new(Beat {
                epoch,
                last_millis: AtomicU64::new(0),
            }),
        };
        heartbeat.beat();
        heartbeat
    }

    /// Record a beat at `millis` after the epoch: for loops that already read that clock.
    #[inline]
    pub fn beat_at(&self, millis: u64) {
        // Only the loop itself beats, and its guard stops the heartbeat after its last beat,
        // so a plain store cannot revive a stopped loop.
        self.inner
            .last_millis
            .store(millis.min(STOPPED - 1), Ordering::Relaxed);
    }

    /// Record a beat now.
    pub fn beat(&self) {
        self.beat_at(self.inner.epoch.elapsed().as_millis() as u64);
    }

    /// Declare the loop ended; it reads as [`Pulse::Stopped`] from now on.
    pub fn stop(&self) {
        self.inner.last_millis.store(STOPPED, Ordering::Relaxed);
    }

    /// A guard that stops this heartbeat when dropped: held by the loop itself, so a panic
    /// unwinding the thread (or the task being dropped) marks it dead at once, without
    /// waiting for staleness.
    pub fn stop_on_drop(&self) -> StopOnDrop {
        StopOnDrop(self.clone())
    }

    /// The state at `now`, with loops silent for `stale_after` or more counted as stuck.
    pub fn pulse(&self, now: Instant, stale_after: Duration) -> Pulse {
        let last = self.inner.last_millis.load(Ordering::Relaxed);
        if last == STOPPED {
            return Pulse::Stopped;
        }
        let beat_at = self.inner.epoch + Duration::from_millis(last);
        let silent = now.saturating_duration_since(beat_at);
        if silent >= stale_after {
            Pulse::Stale { silent }
        } else {
            Pulse::Alive
        }
    }
}

/// Stops its heartbeat when dropped (see [`Heartbeat::stop_on_drop`]).
#[must_use = "the heartbeat stops when the guard is dropped"]
pub struct StopOnDrop(Heartbeat);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// The named heartbeats `/healthz` checks.
pub struct Liveness {
    stale_after: Duration,
    parts: Mutex<Vec<(String, Heartbeat)>>,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness::new(STALE_AFTER)
    }
}

impl Liveness {
    pub fn new(stale_after: Duration) -> Liveness {
        Liveness {
            stale_after,
            parts: Mutex::new(Vec::new()),
        }
    }

    /// Watch `heartbeat` under `name` (e.g. `sip_core`, `media_worker_0`).
    pub fn watch(&self, name: &str, heartbeat: Heartbeat) {
        let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        parts.push((name.to_string(), heartbeat));
    }

    /// `(healthy, body)` at `now`: the body's first line is `ok` or `unhealthy`, then one
    /// line per watched loop with its state.
    pub fn status(&self, now: Instant) -> (bool, String) {
        let parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        let mut healthy = true;
        let mut lines = String::new();
        for (name, heartbeat) in parts.iter() {
            let line = match heartbeat.pulse(now, self.stale_after) {
                Pulse::Alive => format!("{name} ok\n"),
                Pulse::Stale { silent } => {
                    healthy = false;
                    format!(
                        "{name} stuck: no heartbeat for {:.1} s\n",
                        silent.as_secs_f64()
                    )
                }
                Pulse::Stopped => {
                    healthy = false;
                    format!("{name} dead: its loop has ended\n")
                }
            };
            lines.push_str(&line);
        }
        let head = if healthy { "ok\n" } else { "unhealthy\n" };
        (healthy, format!("{head}{lines}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALE: Duration = Duration::from_secs(5);

    #[test]
    fn a_heartbeat_goes_stale_after_the_threshold_and_recovers_with_a_beat() {
        let epoch = Instant::now();
        let heartbeat = Heartbeat::new(epoch);
        heartbeat.beat_at(1_000);
        let at = |millis| epoch + Duration::from_millis(millis);
        assert_eq!(heartbeat.pulse(at(1_000), STALE), Pulse::Alive);
        assert_eq!(heartbeat.pulse(at(5_999), STALE), Pulse::Alive);
        assert_eq!(
            heartbeat.pulse(at(6_000), STALE),
            Pulse::Stale {
                silent: Duration::from_secs(5)
            }
        );
        heartbeat.beat_at(6_500);
        assert_eq!(heartbeat.pulse(at(7_000), STALE), Pulse::Alive);
        // A watcher whose clock reads earlier than the last beat sees it alive.
        assert_eq!(heartbeat.pulse(at(0), STALE), Pulse::Alive);
    }

    #[test]
    fn dropping_the_guard_stops_the_heartbeat() {
        let heartbeat = Heartbeat::new(Instant::now());
        let guard = heartbeat.stop_on_drop();
        assert!(heartbeat.pulse(Instant::now(), STALE).is_alive());
        drop(guard);
        assert_eq!(heartbeat.pulse(Instant::now(), STALE), Pulse::Stopped);
    }

    #[test]
    fn a_panic_unwinding_the_loop_stops_its_heartbeat() {
        let heartbeat = Heartbeat::new(Instant::now());
        let watched = heartbeat.clone();
        let thread = std::thread::spawn(move || {
            let _alive = heartbeat.stop_on_drop();
            panic!("deliberate panic in a watched loop");
        });
        assert!(thread.join().is_err());
        assert_eq!(watched.pulse(Instant::now(), STALE), Pulse::Stopped);
    }

    #[test]
    fn status_names_every_loop_that_is_not_alive() {
        let epoch = Instant::now();
        let liveness = Liveness::new(STALE);
        let core = Heartbeat::new(epoch);
        let worker0 = Heartbeat::new(epoch);
        let worker1 = Heartbeat::new(epoch);
        liveness.watch("sip_core", core.clone());
        liveness.watch("media_worker_0", worker0.clone());
        liveness.watch("media_worker_1", worker1.clone());
        let (healthy, body) = liveness.status(epoch);
        assert!(healthy, "{body}");
        assert!(body.starts_with("ok\n"), "{body}");

        let later = epoch + Duration::from_secs(8);
        core.beat_at(7_500);
        worker1.beat_at(7_900);
        worker0.stop();
        let (healthy, body) = liveness.status(later);
        assert!(!healthy);
        assert!(body.starts_with("unhealthy\n"), "{body}");
        assert!(body.contains("sip_core ok"), "{body}");
        assert!(body.contains("media_worker_0 dead"), "{body}");
        assert!(body.contains("media_worker_1 ok"), "{body}");

        let (healthy, body) = liveness.status(epoch + Duration::from_secs(13));
        assert!(!healthy);
        assert!(
            body.contains("sip_core stuck: no heartbeat for 5.5 s"),
            "{body}"
        );
        assert!(body.contains("media_worker_1 stuck"), "{body}");
    }

    #[test]
    fn nothing_watched_is_healthy() {
        let (healthy, body) = Liveness::default().status(Instant::now());
        assert!(healthy);
        assert_eq!(body, "ok\n");
    }
}
