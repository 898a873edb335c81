//! Admission control: concurrent calls and calls per second per carrier trunk and per tenant,
//! plus the global concurrent-session limit (`MaxConcurrentSessions`). Lock-free: a counter per
//! scope and a GCRA rate cell (one `AtomicU64`, equivalent to a token bucket) per scope.
//!
//! A rejected call gets 503 with Retry-After towards whoever sent it; Microsoft then fails over
//! to its next SBC, a carrier to its next route.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{RoutingTable, TenantId, TrunkId};

/// A concurrency rejection cannot know when a call will end; Microsoft itself uses 1 s.
const CONCURRENCY_RETRY_AFTER_SECS: u32 = 1;
const UNLIMITED: u32 = u32::MAX;
const MICROS_PER_SEC: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    Global,
    Trunk(TrunkId),
    Tenant(TenantId),
}

impl LimitScope {
    /// Bounded metric label.
    pub fn label(&self) -> &'static str {
        match self {
            LimitScope::Global => "global",
            LimitScope::Trunk(_) => "trunk",
            LimitScope::Tenant(_) => "tenant",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReason {
    Concurrent,
    CallsPerSecond,
}

impl LimitReason {
    pub fn label(&self) -> &'static str {
        match self {
            LimitReason::Concurrent => "concurrent",
            LimitReason::CallsPerSecond => "cps",
        }
    }
}

/// Answer 503 with `Retry-After: retry_after_secs` (never 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub scope: LimitScope,
    pub reason: LimitReason,
    pub retry_after_secs: u32,
}

/// Counters and limits of one scope. Shared (`Arc`) so guards of calls admitted under an older
/// configuration still release the right counter after a reload.
#[derive(Debug)]
struct Gate {
    active: AtomicU32,
    max_active: AtomicU32,
    /// GCRA: microseconds between calls at the sustained rate; 0 = no rate limit.
    interval_us: AtomicU64,
    /// GCRA burst tolerance: `(burst - 1) * interval`, burst = one second's worth of calls.
    tolerance_us: AtomicU64,
    /// GCRA theoretical arrival time, microseconds since the limiter's epoch.
    tat_us: AtomicU64,
}

impl Gate {
    fn new(max_active: Option<u32>, per_second: Option<u32>) -> Gate {
        let gate = Gate {
            active: AtomicU32::new(0),
            max_active: AtomicU32::new(UNLIMITED),
            interval_us: AtomicU64::new(0),
            tolerance_us: AtomicU64::new(0),
            tat_us: AtomicU64::new(0),
        };
        gate.set_limits(max_active, per_second);
        gate
    }

    fn set_limits(&self, max_active: Option<u32>, per_second: Option<u32>) {
        self.max_active
            .store(max_active.unwrap_or(UNLIMITED), Ordering::Relaxed);
        let (interval, tolerance) = match per_second.filter(|r| *r > 0) {
            Some(rate) => {
                let interval = MICROS_PER_SEC / u64::from(rate);
                (interval.max(1), interval.max(1) * u64::from(rate - 1))
            }
            None => (0, 0),
        };
        self.interval_us.store(interval, Ordering::Relaxed);
        self.tolerance_us.store(tolerance, Ordering::Relaxed);
    }

    fn enter(&self) -> bool {
        let max = self.max_active.load(Ordering::Relaxed);
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    fn leave(&self) {
        // Never below zero, even if limits were rebuilt oddly.
        let _ = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Take one call from the rate budget, or say how long until one is available.
    fn take(&self, now_us: u64) -> Result<(), Duration> {
        let interval = self.interval_us.load(Ordering::Relaxed);
        if interval == 0 {
            return Ok(());
        }
        let tolerance = self.tolerance_us.load(Ordering::Relaxed);
        let mut tat = self.tat_us.load(Ordering::Acquire);
        loop {
            let start = tat.max(now_us);
            let ahead = start - now_us;
            if ahead > tolerance {
                return Err(Duration::from_micros(ahead - tolerance));
            }
            match self.tat_us.compare_exchange_weak(
                tat,
                start + interval,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => tat = actual,
            }
        }
    }

    /// Give back a call taken by `take` when a later scope refused the call.
    fn untake(&self) {
        let interval = self.interval_us.load(Ordering::Relaxed);
        if interval != 0 {
            let _ = self
                .tat_us
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                    Some(t.saturating_sub(interval))
                });
        }
    }
}

/// Admission control for the calls of one routing table (same trunk/tenant ids).
#[derive(Debug)]
pub struct CallLimiter {
    epoch: Instant,
    global: Arc<Gate>,
    trunks: Vec<(Arc<str>, Arc<Gate>)>,
    tenants: Vec<(Arc<str>, Arc<Gate>)>,
}

impl CallLimiter {
    /// `epoch` is any instant not later than the `now` values passed to `try_admit`.
    pub fn new(table: &RoutingTable, epoch: Instant) -> CallLimiter {
        CallLimiter {
            epoch,
            global: Arc::new(Gate::new(table.max_concurrent_sessions(), None)),
            trunks: table
                .trunks()
                .iter()
                .map(|t| {
                    let gate = Gate::new(t.max_concurrent_calls, t.max_calls_per_second);
                    (t.name.clone(), Arc::new(gate))
                })
                .collect(),
            tenants: table
                .tenants()
                .iter()
                .map(|t| {
                    let gate = Gate::new(t.max_concurrent_calls, t.max_calls_per_second);
                    (t.name.clone(), Arc::new(gate))
                })
                .collect(),
        }
    }

    /// The limiter for a reloaded table: trunks and tenants that keep their name keep their
    /// counters (calls in progress still count) and take the new limits; others start at zero.
    pub fn reconfigured(&self, table: &RoutingTable) -> CallLimiter {
        let carry =
            |old: &[(Arc<str>, Arc<Gate>)], name: &Arc<str>, max: Option<u32>, cps: Option<u32>| {
                match old.iter().find(|(n, _)| n == name) {
                    Some((_, gate)) => {
                        gate.set_limits(max, cps);
                        gate.clone()
                    }
                    None => Arc::new(Gate::new(max, cps)),
                }
            };
        self.global
            .set_limits(table.max_concurrent_sessions(), None);
        CallLimiter {
            epoch: self.epoch,
            global: self.global.clone(),
            trunks: table
                .trunks()
                .iter()
                .map(|t| {
                    let gate = carry(
                        &self.trunks,
                        &t.name,
                        t.max_concurrent_calls,
                        t.max_calls_per_second,
                    );
                    (t.name.clone(), gate)
                })
                .collect(),
            tenants: table
                .tenants()
                .iter()
                .map(|t| {
                    let gate = carry(
                        &self.tenants,
                        &t.name,
                        t.max_concurrent_calls,
                        t.max_calls_per_second,
                    );
                    (t.name.clone(), gate)
                })
                .collect(),
        }
    }

    fn micros(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    fn trunk_gate(&self, trunk: TrunkId) -> Option<&Arc<Gate>> {
        self.trunks.get(trunk.index()).map(|(_, g)| g)
    }

    fn tenant_gate(&self, tenant: TenantId) -> Option<&Arc<Gate>> {
        self.tenants.get(tenant.index()).map(|(_, g)| g)
    }

    /// Admit a call on `trunk` for `tenant`, or say which limit refused it. The returned guard
    /// releases the concurrency slots when dropped (when the call ends). Ids unknown to this
    /// limiter (a table mix-up) are not limited rather than refused.
    pub fn try_admit(
        &self,
        trunk: TrunkId,
        tenant: TenantId,
        now: Instant,
    ) -> Result<AdmitGuard, Rejection> {
        let concurrent = |scope| Rejection {
            scope,
            reason: LimitReason::Concurrent,
            retry_after_secs: CONCURRENCY_RETRY_AFTER_SECS,
        };
        let mut guard = AdmitGuard {
            trunk: None,
            global: None,
            tenant: None,
        };
        if !self.global.enter() {
            return Err(concurrent(LimitScope::Global));
        }
        guard.global = Some(self.global.clone());
        if let Some(gate) = self.trunk_gate(trunk) {
            if !gate.enter() {
                return Err(concurrent(LimitScope::Trunk(trunk)));
            }
            guard.trunk = Some((trunk, gate.clone()));
        }
        if let Some(gate) = self.tenant_gate(tenant) {
            if !gate.enter() {
                return Err(concurrent(LimitScope::Tenant(tenant)));
            }
            guard.tenant = Some(gate.clone());
        }
        let now_us = self.micros(now);
        let rate_limited = |scope, wait: Duration| Rejection {
            scope,
            reason: LimitReason::CallsPerSecond,
            retry_after_secs: retry_after_secs(wait),
        };
        if let Some((_, gate)) = &guard.trunk {
            gate.take(now_us)
                .map_err(|wait| rate_limited(LimitScope::Trunk(trunk), wait))?;
        }
        if let Some(gate) = &guard.tenant {
            if let Err(wait) = gate.take(now_us) {
                if let Some((_, trunk_gate)) = &guard.trunk {
                    trunk_gate.untake();
                }
                return Err(rate_limited(LimitScope::Tenant(tenant), wait));
            }
        }
        Ok(guard)
    }
}

/// Seconds to put in Retry-After: the wait rounded up, at least 1.
fn retry_after_secs(wait: Duration) -> u32 {
    let secs = wait.as_micros().div_ceil(u128::from(MICROS_PER_SEC));
    u32::try_from(secs).unwrap_or(u32::MAX).max(1)
}

/// Concurrency slots held by one call; released on drop.
#[derive(Debug)]
pub struct AdmitGuard {
    trunk: Option<(TrunkId, Arc<Gate>)>,
    global: Option<Arc<Gate>>,
    tenant: Option<Arc<Gate>>,
}

impl AdmitGuard {
    pub fn trunk(&self) -> Option<TrunkId> {
        self.trunk.as_ref().map(|(id, _)| *id)
    }

    /// Trunk failover: take a slot (and a rate token) on `trunk` before releasing the old one.
    /// On rejection the guard keeps its old trunk slot.
    pub fn move_to_trunk(
        &mut self,
        limiter: &CallLimiter,
        trunk: TrunkId,
        now: Instant,
    ) -> Result<(), Rejection> {
        let Some(gate) = limiter.trunk_gate(trunk) else {
            if let Some((_, old)) = self.trunk.take() {
                old.leave();
            }
            return Ok(());
        };
        if !gate.enter() {
            return Err(Rejection {
                scope: LimitScope::Trunk(trunk),
                reason: LimitReason::Concurrent,
                retry_after_secs: CONCURRENCY_RETRY_AFTER_SECS,
            });
        }
        if let Err(wait) = gate.take(limiter.micros(now)) {
            gate.leave();
            return Err(Rejection {
                scope: LimitScope::Trunk(trunk),
                reason: LimitReason::CallsPerSecond,
                retry_after_secs: retry_after_secs(wait),
            });
        }
        if let Some((_, old)) = self.trunk.replace((trunk, gate.clone())) {
            old.leave();
        }
        Ok(())
    }
}

impl Drop for AdmitGuard {
    fn drop(&mut self) {
        if let Some((_, gate)) = self.trunk.take() {
            gate.leave();
        }
        if let Some(gate) = self.tenant.take() {
            gate.leave();
        }
        if let Some(gate) = self.global.take() {
            gate.leave();
        }
    }
}

/// Current number of admitted calls per scope, for tests and the metrics of the app.
impl CallLimiter {
    pub fn active_global(&self) -> u32 {
        self.global.active.load(Ordering::Relaxed)
    }
    pub fn active_on_trunk(&self, trunk: TrunkId) -> u32 {
        self.trunk_gate(trunk)
            .map_or(0, |g| g.active.load(Ordering::Relaxed))
    }
    pub fn active_for_tenant(&self, tenant: TenantId) -> u32 {
        self.tenant_gate(tenant)
            .map_or(0, |g| g.active.load(Ordering::Relaxed))
    }
}
