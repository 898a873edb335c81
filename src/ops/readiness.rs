//! What `/readyz` reports: listeners bound and at least one Teams proxy answering OPTIONS.
//! Written by the wiring (app) from transport and health events; read by the HTTP endpoint.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub struct Readiness {
    listeners_bound: AtomicBool,
    /// A graceful drain is under way: not ready, whatever else holds.
    draining: AtomicBool,
    /// Teams proxy name -> up. A BTreeMap keeps the /readyz body in a stable order.
    teams_proxies: Mutex<BTreeMap<String, bool>>,
}

impl Readiness {
    pub fn new() -> Readiness {
        Readiness::default()
    }

    pub fn set_listeners_bound(&self, bound: bool) {
        self.listeners_bound.store(bound, Ordering::Release);
    }

    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Forget every proxy (a reloaded configuration declares its own).
    pub fn clear_teams_proxies(&self) {
        let mut proxies = self.teams_proxies.lock().unwrap_or_else(|p| p.into_inner());
        proxies.clear();
    }

    /// Declare a proxy (initially down) so /readyz can list it before its first answer.
    pub fn add_teams_proxy(&self, name: &str) {
        let mut proxies = self.teams_proxies.lock().unwrap_or_else(|p| p.into_inner());
        proxies.entry(name.to_string()).or_insert(false);
    }

    pub fn set_teams_proxy_up(&self, name: &str, up: bool) {
        let mut proxies = self.teams_proxies.lock().unwrap_or_else(|p| p.into_inner());
        proxies.insert(name.to_string(), up);
    }

    /// `(ready, human-readable explanation)`.
    pub fn status(&self) -> (bool, String) {
        let bound = self.listeners_bound.load(Ordering::Acquire);
        let proxies = self.teams_proxies.lock().unwrap_or_else(|p| p.into_inner());
        let any_up = proxies.values().any(|up| *up);
        let mut body = format!("listeners_bound {bound}\n");
        for (name, up) in proxies.iter() {
            body.push_str(&format!(
                "teams_proxy {name} {}\n",
                if *up { "up" } else { "down" }
            ));
        }
        if !any_up {
            body.push_str("no Teams proxy is answering OPTIONS\n");
        }
        let draining = self.draining.load(Ordering::Acquire);
        if draining {
            body.push_str("draining: new calls are refused\n");
        }
        (bound && any_up && !draining, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_listeners_and_one_proxy_up() {
        let r = Readiness::new();
        r.add_teams_proxy("sip.pstnhub.microsoft.com:5061");
        r.add_teams_proxy("sip2.pstnhub.microsoft.com:5061");
        assert!(!r.status().0);
        r.set_listeners_bound(true);
        assert!(!r.status().0);
        r.set_teams_proxy_up("sip2.pstnhub.microsoft.com:5061", true);
        let (ready, body) = r.status();
        assert!(ready);
        assert!(body.contains("teams_proxy sip2.pstnhub.microsoft.com:5061 up"));
        assert!(body.contains("teams_proxy sip.pstnhub.microsoft.com:5061 down"));
        r.set_teams_proxy_up("sip2.pstnhub.microsoft.com:5061", false);
        assert!(!r.status().0);
    }

    #[test]
    fn a_draining_sbc_is_not_ready() {
        let r = Readiness::new();
        r.set_listeners_bound(true);
        r.add_teams_proxy("sip.pstnhub.microsoft.com:5061");
        r.set_teams_proxy_up("sip.pstnhub.microsoft.com:5061", true);
        assert!(r.status().0);
        r.set_draining(true);
        let (ready, body) = r.status();
        assert!(!ready);
        assert!(body.contains("draining"), "{body}");
    }
}
