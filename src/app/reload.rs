//! Live reload of the whole configuration (SIGHUP): the new file is validated completely
//! first (the same errors as `check-config`), then swapped in all at once. New calls use it;
//! calls in progress keep the routing table and settings they started with. A configuration
//! that fails validation, or changes what needs new sockets or threads (listeners, the
//! ops listener, media interfaces and workers, transport limits), changes nothing: the
//! reason is logged, counted and returned.

use std::sync::Arc;

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::sync::oneshot;

use super::answers::IdentityTemplate;
use super::pingers::start_pingers;
use super::sip_core::{Command, CoreUpdate};
use super::{own_response_headers, Running};
use crate::config::{mapping, Config, Loaded};
use crate::routing::RoutingTable;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Invalid(String),
    #[error("needs a restart (new sockets or threads), so nothing was changed: {0}")]
    NeedsRestart(String),
    #[error("TLS: {0}")]
    Tls(#[from] crate::transport::TransportError),
    #[error("the SIP core no longer takes commands")]
    CoreGone,
}

/// `config_reloads_total`, `config_reload_failures_total{reason}`, `config_info{digest}`
/// (1 for the configuration in force) and `config_reload_duration_seconds` (from reading the
/// file to the new configuration in force, for reloads put in force).
#[derive(Clone)]
pub(super) struct ConfigMetrics {
    reloads: prometheus::IntCounter,
    failures: IntCounterVec,
    info: IntGaugeVec,
    duration: Histogram,
}

impl ConfigMetrics {
    pub(super) fn register(registry: &Registry) -> prometheus::Result<ConfigMetrics> {
        let reloads = prometheus::IntCounter::new(
            "config_reloads_total",
            "Configuration reloads put in force",
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "config_reload_failures_total",
                "Configuration reloads refused, by reason (invalid, needs_restart, failed)",
            ),
            &["reason"],
        )?;
        let info = IntGaugeVec::new(
            Opts::new(
                "config_info",
                "The configuration in force (1), by the SHA-1 digest of its file",
            ),
            &["digest"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "config_reload_duration_seconds",
                "Time from reading the configuration file to the new configuration in force",
            )
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0]),
        )?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(info.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(ConfigMetrics {
            reloads,
            failures,
            info,
            duration,
        })
    }

    pub(super) fn in_force(&self, old: Option<&str>, new: &str) {
        if let Some(old) = old.filter(|old| *old != new) {
            let _ = self.info.remove_label_values(&[old]);
        }
        self.info.with_label_values(&[new]).set(1);
    }

    fn failed(&self, reason: &str) {
        self.failures.with_label_values(&[reason]).inc();
    }
}

/// What `new` changes that only a restart can apply.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let same =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") == format!("{b:?}");
    if !same(&old.listen, &new.listen) {
        changed.push("[[listen]]");
    }
    if old.ops.metrics_listen != new.ops.metrics_listen {
        changed.push("ops.metrics_listen");
    }
    let admin_listen = |c: &Config| c.admin.as_ref().map(|a| a.listen);
    if admin_listen(old) != admin_listen(new) {
        changed.push("[admin] (its listener)");
    }
    if !same(&old.media, &new.media) {
        changed.push("[media]");
    }
    // The CDR sinks own a file, a thread and a task: a restart applies their changes.
    if !same(&old.cdr, &new.cdr) {
        changed.push("[cdr]");
    }
    let transport_limits = |c: &Config| {
        let s = &c.sip;
        (
            s.max_message_bytes,
            s.max_headers,
            s.max_header_line_bytes,
            s.max_connections_per_ip,
            s.max_connections,
            s.idle_timeout_seconds,
            s.keepalive_interval_seconds,
            s.message_timeout_seconds,
            s.tls_handshake_timeout_seconds,
            s.connect_timeout_seconds,
            s.max_connection_age_seconds,
        )
    };
    if transport_limits(old) != transport_limits(new)
        || old.sbc.bind_address != new.sbc.bind_address
    {
        changed.push("transport limits in [sip] or sbc.bind_address");
    }
    changed
}

/// Read and validate the file at `path` and build its routing table.
fn prepare_reload(path: &std::path::Path) -> Result<(Loaded, Arc<RoutingTable>), ReloadError> {
    let new =
        crate::config::load(path).map_err(|errors| ReloadError::Invalid(errors.to_string()))?;
    let routing = RoutingTable::from_config(&new.config)
        .map(Arc::new)
        .map_err(|e| ReloadError::Invalid(e.to_string()))?;
    Ok((new, routing))
}

impl Running {
    /// Read, validate and swap in the configuration file the SBC was started with (what
    /// SIGHUP does). Err: nothing changed; the reason (every validation error, with file,
    /// line and field) is logged and counted.
    pub async fn reload_from_file(&mut self) -> Result<(), ReloadError> {
        let started = std::time::Instant::now();
        let path = self.loaded.path.clone();
        // Parsing, validation and the routing table (100,000 number ranges take over 100 ms)
        // run off the runtime's workers, so the SIP core and the media events keep theirs.
        let prepared = tokio::task::spawn_blocking(move || {
            // Below every call-handling thread (SCHED_IDLE): a reload never takes CPU the
            // calls want. The pool thread goes back to the normal policy after.
            let lowered = crate::media::sys::current_thread_idle_priority().is_ok();
            let prepared = prepare_reload(&path);
            if lowered {
                let _ = crate::media::sys::current_thread_normal_priority();
            }
            prepared
        })
        .await
        .unwrap_or_else(|e| {
            Err(ReloadError::Invalid(format!(
                "reading the file failed: {e}"
            )))
        });
        let result = match prepared {
            Ok((new, routing)) => {
                for warning in &new.warnings {
                    tracing::warn!(%warning, "configuration warning");
                }
                self.apply(new, routing).await
            }
            Err(error) => Err(error),
        };
        if result.is_ok() {
            self.config_metrics
                .duration
                .observe(started.elapsed().as_secs_f64());
        }
        match &result {
            Ok(()) => self.config_metrics.reloads.inc(),
            Err(error) => {
                let reason = match error {
                    ReloadError::Invalid(_) => "invalid",
                    ReloadError::NeedsRestart(_) => "needs_restart",
                    _ => "failed",
                };
                self.config_metrics.failed(reason);
                tracing::error!(%error, "configuration reload refused; the one in force is unchanged");
            }
        }
        result
    }

    async fn apply(&mut self, new: Loaded, routing: Arc<RoutingTable>) -> Result<(), ReloadError> {
        let restart = needs_restart(&self.loaded.config, &new.config);
        if !restart.is_empty() {
            return Err(ReloadError::NeedsRestart(restart.join(", ")));
        }
        // Everything that can fail is done before anything changes; from here on the swap
        // cannot fail half-way.
        let (reply, in_use) = oneshot::channel();
        self.commands
            .send(Command::TrunksInUse { reply })
            .await
            .map_err(|_| ReloadError::CoreGone)?;
        let in_use = in_use.await.map_err(|_| ReloadError::CoreGone)?;
        let transport = mapping::transport_settings(&new.config);
        // A trunk the new file removes is still heard for the calls it has.
        let peers = match (transport.peers, self.transport.peer_rules()) {
            (Some(new_rules), Some(current)) => Some(new_rules.retaining(&current, &in_use)),
            (new_rules, _) => new_rules,
        };
        let chain_changed = self.transport.reconfigure(peers, transport.tls)?;
        let identity = IdentityTemplate::new(&new, &self.transport);
        let (applied, done) = oneshot::channel();
        let update = CoreUpdate {
            routing,
            config: new.config.clone(),
            transaction: mapping::transaction_settings(&new.config),
            own_headers: own_response_headers(&new),
            identity: identity.clone(),
        };
        self.commands
            .send(Command::Reload {
                update: Box::new(update),
                applied,
            })
            .await
            .map_err(|_| ReloadError::CoreGone)?;
        done.await.map_err(|_| ReloadError::CoreGone)?;
        if !self.readiness.is_draining() {
            for task in self.tasks.drain(..) {
                task.abort();
            }
            self.readiness.clear_teams_proxies();
            match start_pingers(
                &new.config,
                &identity,
                &self.health_metrics,
                &self.readiness,
                &self.peers,
                self.commands.clone(),
            ) {
                Ok(tasks) => self.tasks = tasks,
                Err(error) => tracing::error!(%error, "OPTIONS pingers not restarted"),
            }
        }
        self.drain_timeout = std::time::Duration::from_secs(new.config.ops.drain_timeout_seconds);
        self.config_metrics
            .in_force(Some(&self.loaded.digest), &new.digest);
        if let Some(admin) = &self.admin {
            admin.reloaded(&new);
        }
        tracing::info!(
            digest = %new.digest,
            tenants = new.config.tenants.len(),
            trunks = new.config.carrier_trunks.len(),
            certificate_changed = chain_changed,
            "configuration reloaded"
        );
        self.loaded = new;
        Ok(())
    }
}
