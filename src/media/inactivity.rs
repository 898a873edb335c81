//! Inactivity detection as a pure state machine over a millisecond clock supplied by the
//! caller (the worker passes its monotonic clock, tests a simulated one).

/// Policy shared by all legs of an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InactivityPolicy {
    pub timeout_millis: u64,
    /// When true a leg on hold is never reported inactive.
    pub hold_counts_as_activity: bool,
}

/// What a poll decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InactivityChange {
    None,
    /// No media for the timeout: report once.
    BecameInactive,
    /// Media arrived again after an inactivity report.
    BecameActive,
}

/// Inactivity state of one leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InactivityTracker {
    last_activity_millis: u64,
    reported_inactive: bool,
}

impl InactivityTracker {
    /// `now_millis` starts the clock: a leg that never receives anything is inactive one
    /// timeout after creation.
    pub fn new(now_millis: u64) -> Self {
        Self {
            last_activity_millis: now_millis,
            reported_inactive: false,
        }
    }

    /// A valid RTP or RTCP packet received on the leg.
    pub fn on_activity(&mut self, now_millis: u64) {
        self.last_activity_millis = self.last_activity_millis.max(now_millis);
    }

    /// When the leg last received valid media.
    pub fn last_activity_millis(&self) -> u64 {
        self.last_activity_millis
    }

    pub fn is_reported_inactive(&self) -> bool {
        self.reported_inactive
    }

    /// Decides whether an inactivity (or recovery) event is due at `now_millis`.
    pub fn poll(
        &mut self,
        now_millis: u64,
        on_hold: bool,
        policy: InactivityPolicy,
    ) -> InactivityChange {
        let silent_for = now_millis.saturating_sub(self.last_activity_millis);
        let silent = silent_for >= policy.timeout_millis;
        if self.reported_inactive {
            if !silent {
                self.reported_inactive = false;
                return InactivityChange::BecameActive;
            }
            return InactivityChange::None;
        }
        if !silent || (on_hold && policy.hold_counts_as_activity) {
            return InactivityChange::None;
        }
        self.reported_inactive = true;
        InactivityChange::BecameInactive
    }

    /// The inactivity report of the last poll could not be delivered: the next poll that
    /// still finds the leg silent makes it again.
    pub fn retract_report(&mut self) {
        self.reported_inactive = false;
    }

    /// Restarts the clock, e.g. when a leg leaves hold so it gets a full timeout.
    pub fn restart(&mut self, now_millis: u64) {
        self.last_activity_millis = now_millis;
        self.reported_inactive = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: InactivityPolicy = InactivityPolicy {
        timeout_millis: 30_000,
        hold_counts_as_activity: true,
    };

    #[test]
    fn a_retracted_report_is_made_again() {
        let mut t = InactivityTracker::new(0);
        assert_eq!(
            t.poll(30_000, false, POLICY),
            InactivityChange::BecameInactive
        );
        t.retract_report();
        assert_eq!(
            t.poll(30_250, false, POLICY),
            InactivityChange::BecameInactive
        );
        assert_eq!(t.poll(30_500, false, POLICY), InactivityChange::None);
    }

    #[test]
    fn reports_once_after_timeout_without_media() {
        let mut t = InactivityTracker::new(1_000);
        assert_eq!(t.poll(30_999, false, POLICY), InactivityChange::None);
        assert_eq!(
            t.poll(31_000, false, POLICY),
            InactivityChange::BecameInactive
        );
        assert_eq!(t.poll(45_000, false, POLICY), InactivityChange::None);
        assert_eq!(t.poll(900_000, false, POLICY), InactivityChange::None);
    }

    #[test]
    fn media_keeps_the_leg_active_and_recovers_it() {
        let mut t = InactivityTracker::new(0);
        for now in (0..100_000).step_by(20) {
            t.on_activity(now);
            assert_eq!(t.poll(now + 10, false, POLICY), InactivityChange::None);
        }
        assert_eq!(
            t.poll(130_000, false, POLICY),
            InactivityChange::BecameInactive
        );
        t.on_activity(130_020);
        assert_eq!(
            t.poll(130_040, false, POLICY),
            InactivityChange::BecameActive
        );
        assert_eq!(t.poll(160_019, false, POLICY), InactivityChange::None);
        assert_eq!(
            t.poll(160_020, false, POLICY),
            InactivityChange::BecameInactive
        );
    }

    #[test]
    fn hold_suppresses_report_when_configured() {
        let mut t = InactivityTracker::new(0);
        assert_eq!(t.poll(500_000, true, POLICY), InactivityChange::None);
        // Leaving hold: reported on the next poll because media is still absent.
        assert_eq!(
            t.poll(500_001, false, POLICY),
            InactivityChange::BecameInactive
        );
    }

    #[test]
    fn hold_is_reported_when_hold_does_not_count() {
        let policy = InactivityPolicy {
            hold_counts_as_activity: false,
            ..POLICY
        };
        let mut t = InactivityTracker::new(0);
        assert_eq!(
            t.poll(30_000, true, policy),
            InactivityChange::BecameInactive
        );
    }

    #[test]
    fn restart_gives_a_full_timeout() {
        let mut t = InactivityTracker::new(0);
        t.restart(100_000);
        assert_eq!(t.poll(129_999, false, POLICY), InactivityChange::None);
        assert_eq!(
            t.poll(130_000, false, POLICY),
            InactivityChange::BecameInactive
        );
    }

    #[test]
    fn clock_going_backwards_is_harmless() {
        let mut t = InactivityTracker::new(50_000);
        t.on_activity(10);
        assert_eq!(t.poll(20, false, POLICY), InactivityChange::None);
        assert_eq!(
            t.poll(80_000, false, POLICY),
            InactivityChange::BecameInactive
        );
    }
}
