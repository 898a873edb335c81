//! What the pingers last learned about each peer, for the admin API (`GET /admin/trunks`,
//! `GET /admin/teams`). Written by the pinger tasks, read by HTTP handlers; a short lock,
//! never held across an await.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::PeerHealth;

/// One pinged peer as last seen.
#[derive(Debug, Clone)]
pub struct PeerReport {
    /// A Microsoft proxy (else a carrier trunk, under its name).
    pub is_teams: bool,
    /// `host:port` pinged.
    pub target: String,
    pub transport: &'static str,
    pub health: PeerHealth,
    /// Time from sending the last OPTIONS to its final response.
    pub rtt: Option<Duration>,
}

#[derive(Default)]
pub struct PeerBoard {
    peers: Mutex<BTreeMap<String, PeerReport>>,
}

impl PeerBoard {
    fn peers(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, PeerReport>> {
        // A poisoned lock only means a writer panicked between two plain assignments.
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forget every peer (a reload starts the pingers afresh).
    pub fn clear(&self) {
        self.peers().clear();
    }

    pub fn add(&self, name: &str, report: PeerReport) {
        self.peers().insert(name.to_string(), report);
    }

    pub fn set_health(&self, name: &str, health: &PeerHealth) {
        if let Some(peer) = self.peers().get_mut(name) {
            peer.health = health.clone();
        }
    }

    pub fn set_rtt(&self, name: &str, rtt: Duration) {
        if let Some(peer) = self.peers().get_mut(name) {
            peer.rtt = Some(rtt);
        }
    }

    /// Every peer by name.
    pub fn snapshot(&self) -> Vec<(String, PeerReport)> {
        self.peers()
            .iter()
            .map(|(name, report)| (name.clone(), report.clone()))
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<PeerReport> {
        self.peers().get(name).cloned()
    }
}

/// Seconds since `at`, for reports.
pub fn seconds_since(at: Option<Instant>, now: Instant) -> Option<f64> {
    at.map(|at| now.saturating_duration_since(at).as_secs_f64())
}
