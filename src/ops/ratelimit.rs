//! Rate-limited logging: at most one line per key per interval, counting what was suppressed,
//! so a flood of bad packets cannot flood the log.
//!
//! ```ignore
//! static BAD_PACKET: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));
//! if let Some(suppressed) = BAD_PACKET.check("udp-parse", Instant::now()) {
//!     tracing::warn!(suppressed, "unparsable SIP datagram");
//! }
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys come from code, but a caller might build them from data; cap the table anyway.
const MAX_KEYS: usize = 4096;

struct Entry {
    last_logged: Instant,
    suppressed: u64,
}

pub struct RateLimitedLog {
    interval: Duration,
    entries: Mutex<Option<HashMap<String, Entry>>>,
}

impl RateLimitedLog {
    /// `const` so it can be a `static`.
    pub const fn new(interval: Duration) -> RateLimitedLog {
        RateLimitedLog {
            interval,
            entries: Mutex::new(None),
        }
    }

    /// `Some(n)` when the caller should log now (`n` lines were suppressed since the last
    /// one); `None` when this line is to be suppressed.
    pub fn check(&self, key: &str, now: Instant) -> Option<u64> {
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
        if entries.len() >= MAX_KEYS {
            let interval = self.interval;
            entries.retain(|_, e| now.saturating_duration_since(e.last_logged) < interval);
            if entries.len() >= MAX_KEYS {
                return None;
            }
        }
        entries.insert(
            key.to_string(),
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
        let log = RateLimitedLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(log.check("a", t0), Some(0));
        assert_eq!(log.check("a", t0 + Duration::from_secs(1)), None);
        assert_eq!(log.check("a", t0 + Duration::from_secs(9)), None);
        assert_eq!(log.check("b", t0 + Duration::from_secs(9)), Some(0));
        assert_eq!(log.check("a", t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(log.check("a", t0 + Duration::from_secs(11)), None);
        assert_eq!(log.check("a", t0 + Duration::from_secs(25)), Some(1));
    }

    #[test]
    fn key_table_is_bounded() {
        let log = RateLimitedLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..MAX_KEYS {
            assert_eq!(log.check(&i.to_string(), t0), Some(0));
        }
        assert_eq!(log.check("overflow", t0), None);
        // Once old entries expire they are evicted and new keys log again.
        assert_eq!(log.check("overflow", t0 + Duration::from_secs(11)), Some(0));
    }
}
