//! Admission bookkeeping, free of I/O: connection counts per source IP and in total.

use std::collections::HashMap;
use std::net::IpAddr;

/// Counts inbound connections per source IP and in total.
#[derive(Debug)]
pub(crate) struct ConnectionLimiter {
    max_per_ip: usize,
    max_total: usize,
    per_ip: HashMap<IpAddr, usize>,
    total: usize,
}

impl ConnectionLimiter {
    pub(crate) fn new(max_per_ip: usize, max_total: usize) -> ConnectionLimiter {
        ConnectionLimiter {
            max_per_ip,
            max_total,
            per_ip: HashMap::new(),
            total: 0,
        }
    }

    /// Admit one more connection from `ip`, or refuse it when a limit is reached.
    pub(crate) fn try_acquire(&mut self, ip: IpAddr) -> bool {
        if self.total >= self.max_total {
            return false;
        }
        let count = self.per_ip.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            return false;
        }
        *count += 1;
        self.total += 1;
        true
    }

    pub(crate) fn release(&mut self, ip: IpAddr) {
        if let Some(count) = self.per_ip.get_mut(&ip) {
            *count -= 1;
            self.total = self.total.saturating_sub(1);
            if *count == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    #[cfg(test)]
    fn total(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_ip_limit_refuses_extra_and_frees_on_release() {
        let mut l = ConnectionLimiter::new(2, 10);
        assert!(l.try_acquire(ip("192.0.2.1")));
        assert!(l.try_acquire(ip("192.0.2.1")));
        assert!(!l.try_acquire(ip("192.0.2.1")));
        assert!(l.try_acquire(ip("192.0.2.2")), "other sources unaffected");
        l.release(ip("192.0.2.1"));
        assert!(l.try_acquire(ip("192.0.2.1")));
        assert_eq!(l.total(), 3);
    }

    #[test]
    fn total_limit_refuses_everyone() {
        let mut l = ConnectionLimiter::new(5, 2);
        assert!(l.try_acquire(ip("192.0.2.1")));
        assert!(l.try_acquire(ip("192.0.2.2")));
        assert!(!l.try_acquire(ip("192.0.2.3")));
        l.release(ip("192.0.2.2"));
        assert!(l.try_acquire(ip("192.0.2.3")));
    }

    #[test]
    fn release_of_unknown_ip_is_harmless() {
        let mut l = ConnectionLimiter::new(1, 1);
        l.release(ip("192.0.2.9"));
        assert_eq!(l.total(), 0);
        assert!(l.try_acquire(ip("192.0.2.9")));
    }
}
