//! The systemd service protocol (`Type=notify`, sd_notify(3)): READY once listening,
//! RELOADING around a reload, STOPPING with timeout extensions during a graceful drain, and
//! watchdog keep-alives only while every heartbeat behind `/healthz` is fresh, so a stuck
//! SBC is restarted by its supervisor. Outside systemd (no `NOTIFY_SOCKET`) every call is a
//! no-op.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(false, states) {
        tracing::debug!(%error, "sd_notify failed");
    }
}

pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// Between `reloading()` and the next `ready()` systemd knows a reload is under way.
pub fn reloading() {
    send(&[NotifyState::Reloading]);
}

pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

/// A graceful drain started: systemd waits, as long as we keep extending.
pub fn stopping(extend_by: Duration) {
    send(&[
        NotifyState::Stopping,
        NotifyState::ExtendTimeoutUsec(usec(extend_by)),
    ]);
}

pub fn extend_timeout(by: Duration) {
    send(&[NotifyState::ExtendTimeoutUsec(usec(by))]);
}

/// How often to send watchdog keep-alives (half the unit's `WatchdogSec`), if enabled.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0u64;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}

pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

fn usec(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}
