//! Rate-limited logging: at most one line per key per interval, counting what was suppressed,
//! so a flood of bad packets cannot flood the log.
//!
//! ```ignore
//! static BAD_PACKET: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));
//! if let Some(suppressed) = BAD_PACKET.check("udp-parse", Instant::now()) {
//!     tracing::warn!(suppressed, "unparsable SIP datagram");
//! }
//! // keyed by what a peer sent: bounded, O(1) per call whatever the senders do
//! static PER_SOURCE: RateLimitedLog<(IpAddr, &'static str)> = RateLimitedLog::new(..);
//! ```

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys may come from what senders choose (their addresses): cap the table.
pub const MAX_KEYS: usize = 4096;

struct Entry {
    last_logged: Instant,
    suppressed: u64,
}

pub struct RateLimitedLog<K = &'static str> {
    interval: Duration,
    max_keys: usize,
    entries: Mutex<Option<HashMap<K, Entry>>>,
}

impl<K: Eq + Hash + Clone> RateLimitedLog<K> {
    /// `const` so it can be a `static`.
    pub const fn new(interval: Duration) -> RateLimitedLog<K> {
        RateLimitedLog::with_capacity(interval, MAX_KEYS)
    }

    pub const fn with_capacity(interval: Duration, max_keys: usize) -> RateLimitedLog<K> {
        RateLimitedLog {
            interval,
            max_keys,
            entries: Mutex::new(None),
        }
    }

    /// `Some(n)` when the caller should log now (`n` lines were suppressed since the last
    /// one); `None` when this line is to be suppressed. Constant time: a full table is
    /// forgotten at once (which at worst lets one more line per key through), never scanned.
    pub fn check(&self, key: &K, now: Instant) -> Option<u64> {
        // A poisoned lock only means another thread panicked mid-update of counters; the
        // data stays usable.
        let mut guard = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entries = guard.get_or_insert_with(HashMap::new);
        if let Some(entry) = entries.get_mut(key) {
            if now.saturating_duration_since(entry.last_logged) < self.interval {
                entry.suppressed += 1;
                return None;
            }
            let suppressed = entry.suppressed;
            entry.last_logged = now;
            entry.suppressed = 0;
            return Some(suppressed);
        }
        if entries.len() >= self.max_keys {
            entries.clear();
        }
        entries.insert(
            key.clone(),
            Entry {
                last_logged: now,
                suppressed: 0,
            },
        );
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_key_per_interval_with_suppressed_count() {
        let log: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(log.check(&"a", t0), Some(0));
        assert_eq!(log.check(&"a", t0 + Duration::from_secs(1)), None);
        assert_eq!(log.check(&"a", t0 + Duration::from_secs(9)), None);
        assert_eq!(log.check(&"b", t0 + Duration::from_secs(9)), Some(0));
        assert_eq!(log.check(&"a", t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(log.check(&"a", t0 + Duration::from_secs(11)), None);
        assert_eq!(log.check(&"a", t0 + Duration::from_secs(25)), Some(1));
    }

    #[test]
    fn key_table_is_bounded_and_a_full_table_starts_over() {
        let log: RateLimitedLog<u32> = RateLimitedLog::with_capacity(Duration::from_secs(10), 4);
        let t0 = Instant::now();
        for i in 0..4 {
            assert_eq!(log.check(&i, t0), Some(0));
        }
        assert_eq!(log.check(&0, t0), None, "still remembered");
        assert_eq!(log.check(&99, t0), Some(0), "a new key is never silenced");
        assert_eq!(log.check(&0, t0), Some(0), "the old table was forgotten");
        let size = log.entries.lock().unwrap().as_ref().map(HashMap::len);
        assert!(size <= Some(4));
    }
}
