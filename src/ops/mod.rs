//! Operations: Prometheus metrics over HTTP (`/metrics`, `/healthz`, `/readyz`), the admin
//! API ([`admin`]), structured logs, and a rate-limited logging helper other modules may use.
//!
//! Every module registers its own metrics on the shared [`prometheus::Registry`]; this module
//! only serves it.

pub mod admin;
pub mod http;
pub mod liveness;
pub mod logging;
pub mod ratelimit;
pub mod readiness;
pub mod systemd;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus::{IntGauge, IntGaugeVec, Opts, Registry};
use tokio::net::TcpListener;

pub use http::{HttpMetrics, OpsState};
pub use liveness::{Heartbeat, Liveness, Pulse};
pub use logging::{init_logging, LogFormat};
pub use ratelimit::RateLimitedLog;
pub use readiness::Readiness;

/// Process-level gauges: build version and start time.
pub struct ProcessMetrics {
    pub build_info: IntGaugeVec,
    pub start_time_seconds: IntGauge,
}

impl ProcessMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<ProcessMetrics> {
        let build_info = IntGaugeVec::new(
            Opts::new(
                "sbc_build_info",
                "Always 1; the version label names the build",
            ),
            &["version"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let start_time_seconds = IntGauge::new(
            "sbc_start_time_seconds",
            "Unix time at which the process started",
        )?;
        registry.register(Box::new(start_time_seconds.clone()))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        start_time_seconds.set(now);
        Ok(ProcessMetrics {
            build_info,
            start_time_seconds,
        })
    }
}

/// A running ops endpoint.
pub struct OpsServer {
    pub local_addr: SocketAddr,
    server: web::WebServer,
}

impl OpsServer {
    /// Bind `addr` (port 0 for an ephemeral port) and serve `registry` (`/metrics`),
    /// `liveness` (`/healthz`) and `readiness` (`/readyz`).
    pub async fn start(
        addr: SocketAddr,
        registry: Registry,
        liveness: Arc<Liveness>,
        readiness: Arc<Readiness>,
    ) -> std::io::Result<OpsServer> {
        let listener = TcpListener::bind(addr).await?;
        let metrics = HttpMetrics::register(&registry).map_err(std::io::Error::other)?;
        let state = Arc::new(OpsState {
            registry,
            liveness,
            readiness,
            metrics,
        });
        let server = web::WebServer::start(listener, web::with_limits(http::router(state)), "ops")?;
        Ok(OpsServer {
            local_addr: server.local_addr,
            server,
        })
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}
