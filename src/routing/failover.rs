//! Failover state for one call: over the tenant's carrier trunks (Teams → PSTN) and over the
//! Microsoft proxies (PSTN → Teams). Both are plain state machines fed with outcomes; the call
//! layer owns timers and sockets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use super::{ProxyId, TrunkId};

/// How one attempt on a carrier trunk failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkFailure {
    /// A final non-2xx response (300..=699).
    Response(u16),
    /// No final response in time (transaction timeout or our own setup timer).
    Timeout,
    /// TCP/TLS connect failure, ICMP unreachable, or the send itself failed.
    ConnectFailed,
}

/// What the call layer does next after a trunk failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkStep {
    /// Send the INVITE (a new client transaction) to this trunk.
    TryNext(TrunkId),
    /// A final answer from the callee's side: relay it to Teams, no failover (row 58: 4xx other
    /// than 408 and 6xx are the user's answer, retrying would ring or annoy again).
    Relay(u16),
    /// Every trunk failed transiently: answer Teams with this code, one of 408/503/504, so
    /// Microsoft may try its next SBC (row 30; `FailoverResponseCodes` default).
    Exhausted(u16),
}

/// Retrying elsewhere makes sense only for failures of the network or of the trunk itself.
pub fn is_trunk_failover_trigger(failure: TrunkFailure) -> bool {
    match failure {
        TrunkFailure::Timeout | TrunkFailure::ConnectFailed => true,
        TrunkFailure::Response(code) => code == 408 || (500..=599).contains(&code),
    }
}

/// The tenant's carrier trunks in order, consumed as attempts fail.
#[derive(Debug, Clone)]
pub struct TrunkFailover {
    trunks: SmallVec<[TrunkId; 4]>,
    current: usize,
    progressed: bool,
}

impl TrunkFailover {
    pub fn new(trunks: &[TrunkId]) -> TrunkFailover {
        TrunkFailover {
            trunks: trunks.iter().copied().collect(),
            current: 0,
            progressed: false,
        }
    }

    /// The trunk of the attempt in progress (the primary before any failure).
    pub fn current(&self) -> Option<TrunkId> {
        self.trunks.get(self.current).copied()
    }

    /// All trunks in failover order.
    pub fn trunks(&self) -> &[TrunkId] {
        &self.trunks
    }

    /// The current trunk sent a provisional response other than 100 (the far end is ringing or
    /// playing early media): from now on its failures are the callee's answer and are relayed,
    /// so the callee is never rung twice through two carriers.
    pub fn progressed(&mut self) {
        self.progressed = true;
    }

    pub fn on_failure(&mut self, failure: TrunkFailure) -> TrunkStep {
        if self.progressed || !is_trunk_failover_trigger(failure) {
            return TrunkStep::Relay(match failure {
                TrunkFailure::Response(code) => code,
                TrunkFailure::Timeout => 408,
                TrunkFailure::ConnectFailed => 503,
            });
        }
        self.current = self.current.saturating_add(1).min(self.trunks.len());
        match self.current() {
            Some(next) => TrunkStep::TryNext(next),
            None => TrunkStep::Exhausted(match failure {
                TrunkFailure::Timeout | TrunkFailure::Response(408) => 408,
                TrunkFailure::Response(504) => 504,
                _ => 503,
            }),
        }
    }
}

/// What happened to the INVITE sent to one Microsoft proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyOutcome {
    /// TCP/TLS connect or handshake failed, or DNS gave no address.
    ConnectFailed,
    /// Nothing at all (not even 100 Trying) within the per-hop time.
    NoResponse,
    /// Any response; `retry_after` is the Retry-After value in seconds, if present.
    Responded {
        status: u16,
        retry_after: Option<u32>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyStep {
    /// The proxy is alive: carry on with this transaction (relay the response if final).
    Proceed,
    /// Abandon this proxy and send the INVITE (new transaction) to the next one.
    TryNext(ProxyId),
    /// No proxy left; answer the carrier with 503 (or relay the last 503).
    Exhausted,
}

/// Rows 9 and 10: next proxy on connect failure, on silence within the per-hop time, and on
/// 503 with Retry-After (Microsoft: datacenter busy). Any other response ends the search.
pub fn is_proxy_failover_trigger(outcome: ProxyOutcome) -> bool {
    match outcome {
        ProxyOutcome::ConnectFailed | ProxyOutcome::NoResponse => true,
        ProxyOutcome::Responded {
            status: 503,
            retry_after: Some(_),
        } => true,
        ProxyOutcome::Responded { .. } => false,
    }
}

/// Microsoft proxies (by FQDN, in order) for one INVITE towards Teams.
#[derive(Debug, Clone)]
pub struct ProxyFailover {
    order: SmallVec<[ProxyId; 4]>,
    current: usize,
}

impl ProxyFailover {
    /// `proxy_count` proxies in configured order, those `memory` marks as recently failed
    /// moved to the end (still tried, as Microsoft demotes rather than drops unhealthy SBCs).
    pub fn new(proxy_count: usize, memory: Option<&ProxyMemory>, now: Instant) -> ProxyFailover {
        let all = (0..proxy_count.min(usize::from(u8::MAX))).map(|i| ProxyId(i as u8));
        let mut order: SmallVec<[ProxyId; 4]> = all.collect();
        if let Some(memory) = memory {
            order.sort_by_key(|p| memory.is_failed(*p, now));
        }
        ProxyFailover { order, current: 0 }
    }

    pub fn current(&self) -> Option<ProxyId> {
        self.order.get(self.current).copied()
    }

    pub fn order(&self) -> &[ProxyId] {
        &self.order
    }

    pub fn on_outcome(&mut self, outcome: ProxyOutcome) -> ProxyStep {
        if !is_proxy_failover_trigger(outcome) {
            return ProxyStep::Proceed;
        }
        self.current = self.current.saturating_add(1).min(self.order.len());
        match self.current() {
            Some(next) => ProxyStep::TryNext(next),
            None => ProxyStep::Exhausted,
        }
    }
}

/// "Recently failed" marks per proxy, shared by all calls (atomics, no lock). A mark expires
/// after the Retry-After time for a 503, else after `hold`. Rebuild it when the proxy list
/// changes on reload (indices would no longer match).
#[derive(Debug)]
pub struct ProxyMemory {
    epoch: Instant,
    hold: Duration,
    /// Milliseconds since `epoch` until which each proxy counts as failed; 0 = healthy.
    failed_until_ms: Vec<AtomicU64>,
}

impl ProxyMemory {
    pub fn new(proxy_count: usize, hold: Duration, epoch: Instant) -> ProxyMemory {
        ProxyMemory {
            epoch,
            hold,
            failed_until_ms: (0..proxy_count).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Record an outcome; only failover triggers leave a mark.
    pub fn record(&self, proxy: ProxyId, outcome: ProxyOutcome, now: Instant) {
        if !is_proxy_failover_trigger(outcome) {
            return;
        }
        let hold = match outcome {
            ProxyOutcome::Responded {
                retry_after: Some(secs),
                ..
            } => Duration::from_secs(u64::from(secs)),
            _ => self.hold,
        };
        if let Some(slot) = self.failed_until_ms.get(usize::from(proxy.0)) {
            let until = self.millis(now).saturating_add(hold.as_millis() as u64);
            slot.fetch_max(until.max(1), Ordering::Relaxed);
        }
    }

    /// A response proves the proxy alive again.
    pub fn record_alive(&self, proxy: ProxyId) {
        if let Some(slot) = self.failed_until_ms.get(usize::from(proxy.0)) {
            slot.store(0, Ordering::Relaxed);
        }
    }

    pub fn is_failed(&self, proxy: ProxyId, now: Instant) -> bool {
        self.failed_until_ms
            .get(usize::from(proxy.0))
            .is_some_and(|slot| slot.load(Ordering::Relaxed) > self.millis(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trunks(n: u16) -> Vec<TrunkId> {
        (0..n).map(TrunkId).collect()
    }

    #[test]
    fn trunk_failover_advances_on_408_5xx_timeout_and_connect_failure() {
        for failure in [
            TrunkFailure::Response(408),
            TrunkFailure::Response(500),
            TrunkFailure::Response(503),
            TrunkFailure::Response(599),
            TrunkFailure::Timeout,
            TrunkFailure::ConnectFailed,
        ] {
            let mut f = TrunkFailover::new(&trunks(2));
            assert_eq!(f.current(), Some(TrunkId(0)));
            assert_eq!(
                f.on_failure(failure),
                TrunkStep::TryNext(TrunkId(1)),
                "{failure:?}"
            );
            assert_eq!(f.current(), Some(TrunkId(1)));
        }
    }

    #[test]
    fn row58_trunk_failover_never_on_other_4xx_3xx_or_6xx() {
        for code in [
            300, 302, 400, 403, 404, 480, 486, 487, 488, 600, 603, 604, 606,
        ] {
            let mut f = TrunkFailover::new(&trunks(3));
            assert_eq!(
                f.on_failure(TrunkFailure::Response(code)),
                TrunkStep::Relay(code)
            );
            assert_eq!(f.current(), Some(TrunkId(0)), "{code} moved on");
        }
    }

    #[test]
    fn row30_exhausted_trunks_answer_teams_with_a_failover_code() {
        let mut f = TrunkFailover::new(&trunks(2));
        assert_eq!(
            f.on_failure(TrunkFailure::ConnectFailed),
            TrunkStep::TryNext(TrunkId(1))
        );
        assert_eq!(
            f.on_failure(TrunkFailure::Response(500)),
            TrunkStep::Exhausted(503)
        );
        let mut f = TrunkFailover::new(&trunks(1));
        assert_eq!(
            f.on_failure(TrunkFailure::Timeout),
            TrunkStep::Exhausted(408)
        );
        let mut f = TrunkFailover::new(&trunks(1));
        assert_eq!(
            f.on_failure(TrunkFailure::Response(504)),
            TrunkStep::Exhausted(504)
        );
        let mut f = TrunkFailover::new(&trunks(1));
        assert_eq!(
            f.on_failure(TrunkFailure::Response(408)),
            TrunkStep::Exhausted(408)
        );
        // Further failures after exhaustion stay exhausted (no index overflow).
        assert_eq!(
            f.on_failure(TrunkFailure::Timeout),
            TrunkStep::Exhausted(408)
        );
        assert_eq!(f.current(), None);
        let mut empty = TrunkFailover::new(&[]);
        assert_eq!(empty.current(), None);
        assert_eq!(
            empty.on_failure(TrunkFailure::ConnectFailed),
            TrunkStep::Exhausted(503)
        );
    }

    #[test]
    fn no_failover_once_the_trunk_progressed() {
        let mut f = TrunkFailover::new(&trunks(2));
        f.progressed();
        assert_eq!(
            f.on_failure(TrunkFailure::Response(503)),
            TrunkStep::Relay(503)
        );
        assert_eq!(f.on_failure(TrunkFailure::Timeout), TrunkStep::Relay(408));
    }

    fn responded(status: u16, retry_after: Option<u32>) -> ProxyOutcome {
        ProxyOutcome::Responded {
            status,
            retry_after,
        }
    }

    #[test]
    fn row9_proxy_failover_on_connect_failure_and_silence_in_order() {
        let now = Instant::now();
        let mut f = ProxyFailover::new(3, None, now);
        assert_eq!(f.order(), &[ProxyId(0), ProxyId(1), ProxyId(2)]);
        assert_eq!(f.current(), Some(ProxyId(0)));
        assert_eq!(
            f.on_outcome(ProxyOutcome::ConnectFailed),
            ProxyStep::TryNext(ProxyId(1))
        );
        assert_eq!(
            f.on_outcome(ProxyOutcome::NoResponse),
            ProxyStep::TryNext(ProxyId(2))
        );
        assert_eq!(f.on_outcome(ProxyOutcome::NoResponse), ProxyStep::Exhausted);
        assert_eq!(f.on_outcome(ProxyOutcome::NoResponse), ProxyStep::Exhausted);
    }

    #[test]
    fn row10_proxy_failover_on_503_with_retry_after_only() {
        let now = Instant::now();
        let mut f = ProxyFailover::new(3, None, now);
        assert_eq!(
            f.on_outcome(responded(503, Some(1))),
            ProxyStep::TryNext(ProxyId(1))
        );
        for (status, retry_after) in [
            (100, None),
            (180, None),
            (200, None),
            (503, None),
            (500, None),
            (504, None),
            (408, None),
            (404, None),
            (486, Some(5)),
            (603, None),
        ] {
            assert_eq!(
                f.on_outcome(responded(status, retry_after)),
                ProxyStep::Proceed,
                "{status}"
            );
            assert_eq!(f.current(), Some(ProxyId(1)));
        }
    }

    #[test]
    fn recently_failed_proxy_is_tried_last_until_its_mark_expires() {
        let epoch = Instant::now();
        let memory = ProxyMemory::new(3, Duration::from_secs(60), epoch);
        memory.record(ProxyId(0), ProxyOutcome::ConnectFailed, epoch);
        memory.record(ProxyId(1), responded(503, Some(5)), epoch);
        memory.record(ProxyId(2), responded(486, None), epoch);
        let at = |s: u64| epoch + Duration::from_secs(s);
        assert_eq!(
            ProxyFailover::new(3, Some(&memory), at(1)).order(),
            &[ProxyId(2), ProxyId(0), ProxyId(1)]
        );
        // The 503's Retry-After (5 s) has passed; the connect failure (60 s) has not.
        assert_eq!(
            ProxyFailover::new(3, Some(&memory), at(5)).order(),
            &[ProxyId(1), ProxyId(2), ProxyId(0)]
        );
        assert_eq!(
            ProxyFailover::new(3, Some(&memory), at(60)).order(),
            &[ProxyId(0), ProxyId(1), ProxyId(2)]
        );
        memory.record(ProxyId(0), ProxyOutcome::NoResponse, at(100));
        memory.record_alive(ProxyId(0));
        assert!(!memory.is_failed(ProxyId(0), at(100)));
        // Out-of-range ids are ignored.
        memory.record(ProxyId(9), ProxyOutcome::NoResponse, at(100));
        assert!(!memory.is_failed(ProxyId(9), at(100)));
    }
}
