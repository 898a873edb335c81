//! The calls' timers, all in one ordered map inside the SIP core task (no task per call).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use crate::call::TimerKind;

use super::table::CallKey;

/// At most one timer per (call, kind); setting it again replaces the old deadline.
#[derive(Debug, Default)]
pub struct CallTimers {
    due: BTreeMap<(Instant, u64), (CallKey, TimerKind)>,
    armed: HashMap<(CallKey, TimerKind), (Instant, u64)>,
    sequence: u64,
}

impl CallTimers {
    pub fn set(&mut self, call: CallKey, kind: TimerKind, at: Instant) {
        self.cancel(call, kind);
        self.sequence = self.sequence.wrapping_add(1);
        self.due.insert((at, self.sequence), (call, kind));
        self.armed.insert((call, kind), (at, self.sequence));
    }

    pub fn cancel(&mut self, call: CallKey, kind: TimerKind) {
        if let Some(slot) = self.armed.remove(&(call, kind)) {
            self.due.remove(&slot);
        }
    }

    pub fn cancel_all(&mut self, call: CallKey) {
        for kind in [
            TimerKind::HopTimeout,
            TimerKind::NoAnswer,
            TimerKind::AckWait,
            TimerKind::SessionRefresh(crate::call::LegId::Carrier),
            TimerKind::SessionRefresh(crate::call::LegId::Teams),
            TimerKind::SessionExpiry(crate::call::LegId::Carrier),
            TimerKind::SessionExpiry(crate::call::LegId::Teams),
        ] {
            self.cancel(call, kind);
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.due.keys().next().map(|(at, _)| *at)
    }

    /// Remove and return one timer due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(CallKey, TimerKind)> {
        let (&key, _) = self.due.iter().next().filter(|((at, _), _)| *at <= now)?;
        let (call, kind) = self.due.remove(&key)?;
        self.armed.remove(&(call, kind));
        Some((call, kind))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.due.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timers_fire_in_order_and_replace_per_kind() {
        let mut timers = CallTimers::default();
        let t0 = Instant::now();
        let a = CallKey(1);
        let b = CallKey(2);
        timers.set(a, TimerKind::NoAnswer, t0 + Duration::from_secs(5));
        timers.set(b, TimerKind::HopTimeout, t0 + Duration::from_secs(2));
        timers.set(a, TimerKind::NoAnswer, t0 + Duration::from_secs(1));
        assert_eq!(timers.len(), 2);
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(timers.pop_due(t0), None);
        assert_eq!(
            timers.pop_due(t0 + Duration::from_secs(3)),
            Some((a, TimerKind::NoAnswer))
        );
        assert_eq!(
            timers.pop_due(t0 + Duration::from_secs(3)),
            Some((b, TimerKind::HopTimeout))
        );
        assert!(timers.is_empty());
    }

    #[test]
    fn cancel_all_removes_every_timer_of_a_call() {
        let mut timers = CallTimers::default();
        let t0 = Instant::now();
        timers.set(CallKey(7), TimerKind::AckWait, t0);
        timers.set(CallKey(7), TimerKind::NoAnswer, t0);
        // Session timers, one per leg (row 42).
        for leg in [crate::call::LegId::Carrier, crate::call::LegId::Teams] {
            timers.set(CallKey(7), TimerKind::SessionRefresh(leg), t0);
            timers.set(CallKey(7), TimerKind::SessionExpiry(leg), t0);
        }
        timers.set(CallKey(8), TimerKind::NoAnswer, t0);
        timers.cancel_all(CallKey(7));
        assert_eq!(timers.pop_due(t0), Some((CallKey(8), TimerKind::NoAnswer)));
        assert_eq!(timers.pop_due(t0), None);
    }
}
