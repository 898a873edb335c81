//! The admin API: JSON over HTTP on its own listener (`[admin]`), behind a bearer token
//! ([`auth`]). It lists and ends calls, shows a call's SIP, the tenants, trunks and Microsoft
//! proxies, reloads the configuration, drains and changes the log level. The OpenAPI
//! document (`docs/admin-openapi.json`, served at `GET /admin/openapi.json`) lists every
//! route; a test keeps the two in step.
//!
//! The handlers own nothing: they ask the SIP core (which owns the calls) through
//! [`CoreRequest`]s and the process supervisor (which owns reload and drain, like SIGHUP and
//! SIGTERM) through [`ControlRequest`]s, each with a oneshot reply and a time limit, so a
//! stuck core answers 503 rather than hanging the API.

pub mod auth;
mod calls;
mod control;
pub mod openapi;
mod peers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::web::{self, WebServer};
use crate::config::Loaded;
use crate::dispatch::{CallKey, CallSnapshot, CallTraces};
use crate::health::PeerBoard;
use crate::media::MediaHandle;

/// How long a handler waits for the SIP core or the supervisor before answering 503.
const CORE_TIMEOUT: Duration = Duration::from_secs(3);
/// A reload validates and swaps a whole configuration: allow it more.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(15);

/// What the admin API asks of the SIP core.
pub enum CoreRequest {
    /// Every call in progress.
    Calls(oneshot::Sender<Vec<CallSnapshot>>),
    /// End one call (BYE with a Reason on both legs, or CANCEL during setup); false when no
    /// such call exists.
    Hangup {
        call: CallKey,
        reply: oneshot::Sender<bool>,
    },
}

/// What the admin API asks of the process supervisor (`app::run`).
pub enum ControlRequest {
    /// Reload the configuration file (as SIGHUP): the new digest, or why nothing changed.
    Reload(oneshot::Sender<Result<String, String>>),
    /// Start the graceful drain (as SIGTERM); false when one was already under way.
    Drain(oneshot::Sender<bool>),
}

/// What the handlers read of the configuration in force (replaced on reload).
pub struct AdminView {
    pub loaded: Loaded,
    /// `None`: no token configured (loopback only, see `[admin]`).
    pub token: Option<String>,
}

impl AdminView {
    /// The view of `loaded`, reading its token file. Err: the file cannot be used.
    pub fn of(loaded: &Loaded) -> Result<AdminView, String> {
        let token = match loaded
            .config
            .admin
            .as_ref()
            .and_then(|a| a.token_file.as_ref())
        {
            Some(path) => Some(crate::config::read_admin_token(path)?),
            None => None,
        };
        Ok(AdminView {
            loaded: loaded.clone(),
            token,
        })
    }
}

/// Everything the handlers use.
pub struct AdminContext {
    pub core: mpsc::Sender<CoreRequest>,
    pub control: mpsc::Sender<ControlRequest>,
    pub traces: Arc<CallTraces>,
    pub media: MediaHandle,
    pub peers: Arc<PeerBoard>,
    pub view: ArcSwap<AdminView>,
    pub metrics: auth::AdminMetrics,
}

type Context = Arc<AdminContext>;

/// A route of the API: method and path template, as in the OpenAPI document.
pub type RouteSpec = (&'static str, &'static str);

/// The methods the API uses.
#[derive(Clone, Copy)]
enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

impl Verb {
    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Put => MethodFilter::PUT,
            Verb::Delete => MethodFilter::DELETE,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Delete => "DELETE",
        }
    }
}

/// Builds the router and the list of its routes together, so the list cannot miss one.
struct Routes {
    router: Router<Context>,
    listed: Vec<RouteSpec>,
}

impl Routes {
    fn add<H, T>(mut self, verb: Verb, path: &'static str, handler: H) -> Routes
    where
        H: axum::handler::Handler<T, Context>,
        T: 'static,
    {
        self.router = self.router.route(path, on(verb.filter(), handler));
        self.listed.push((verb.name(), path));
        self
    }
}

fn routes() -> Routes {
    use Verb::*;
    Routes {
        router: Router::new(),
        listed: Vec::new(),
    }
    .add(Get, "/admin/openapi.json", openapi::serve)
    .add(Get, "/admin/calls", calls::list)
    .add(Get, "/admin/calls/{id}", calls::one)
    .add(Delete, "/admin/calls/{id}", calls::hangup)
    .add(Get, "/admin/calls/{id}/sip", calls::sip)
    .add(Get, "/admin/tenants", peers::tenants)
    .add(Get, "/admin/trunks", peers::trunks)
    .add(Get, "/admin/teams", peers::teams)
    .add(Post, "/admin/reload", control::reload)
    .add(Post, "/admin/drain", control::drain)
    .add(Put, "/admin/log-level", control::log_level)
}

/// Every route the API serves.
pub fn route_list() -> Vec<RouteSpec> {
    routes().listed
}

/// The API with authentication, counting and the listener limits.
pub fn router(context: Context) -> Router {
    let router = routes()
        .router
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .layer(axum::middleware::from_fn_with_state(
            context.clone(),
            auth::require_token,
        ))
        .with_state(context);
    web::with_limits(router)
}

/// A running admin listener.
pub struct AdminServer {
    pub local_addr: SocketAddr,
    pub context: Context,
    server: WebServer,
}

impl AdminServer {
    pub async fn start(addr: SocketAddr, context: AdminContext) -> std::io::Result<AdminServer> {
        let listener = TcpListener::bind(addr).await?;
        let context = Arc::new(context);
        let server = WebServer::start(listener, router(context.clone()), "admin")?;
        Ok(AdminServer {
            local_addr: server.local_addr,
            context,
            server,
        })
    }

    /// A reloaded configuration: what the handlers show, and the token (a token file that
    /// cannot be read now keeps the token in force, logged).
    pub fn reloaded(&self, loaded: &Loaded) {
        match AdminView::of(loaded) {
            Ok(view) => self.context.view.store(Arc::new(view)),
            Err(error) => {
                tracing::error!(%error, "admin token not reloaded; the one in force stays");
                let token = self.context.view.load().token.clone();
                self.context.view.store(Arc::new(AdminView {
                    loaded: loaded.clone(),
                    token,
                }));
            }
        }
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// `{"error": message}` with `status`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// Ask the SIP core; 503 when it does not answer within [`CORE_TIMEOUT`].
async fn ask_core<T>(
    context: &AdminContext,
    request: impl FnOnce(oneshot::Sender<T>) -> CoreRequest,
) -> Result<T, Response> {
    let (reply, answer) = oneshot::channel();
    let asked = async {
        context.core.send(request(reply)).await.ok()?;
        answer.await.ok()
    };
    match tokio::time::timeout(CORE_TIMEOUT, asked).await {
        Ok(Some(answer)) => Ok(answer),
        Ok(None) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the SIP core no longer takes requests",
        )),
        Err(_) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the SIP core did not answer in time",
        )),
    }
}

/// Ask the supervisor; 503 when nobody serves it or it does not answer in time.
async fn ask_control<T>(
    context: &AdminContext,
    request: impl FnOnce(oneshot::Sender<T>) -> ControlRequest,
) -> Result<T, Response> {
    let (reply, answer) = oneshot::channel();
    let asked = async {
        context.control.send(request(reply)).await.ok()?;
        answer.await.ok()
    };
    match tokio::time::timeout(CONTROL_TIMEOUT, asked).await {
        Ok(Some(answer)) => Ok(answer),
        Ok(None) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "reload and drain are not served by this process",
        )),
        Err(_) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the supervisor did not answer in time",
        )),
    }
}

#[cfg(test)]
mod tests;
