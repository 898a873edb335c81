//! The one HTTP server of the SBC (axum on hyper), shared by the ops listener (`/metrics`,
//! `/healthz`, `/readyz`) and the admin API. Each listener gets its own router; this module
//! puts the same limits around both so a scraper or an attacker cannot tie the process up:
//! a cap on open connections (over it a connection is closed at once), a bounded request
//! head read within a timeout, one request per connection, a request body cap, a cap on
//! requests handled at once and a timeout per request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// Bytes of a request head (request line and headers) hyper buffers; its minimum.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Headers of one request.
const MAX_HEADERS: usize = 64;
/// Bytes of a request body (the admin API takes small JSON documents only).
pub const MAX_REQUEST_BODY: usize = 64 * 1024;
/// Time to read a whole request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a request may take to be answered (a reload of a large configuration included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Time a connection may stay open altogether (beyond the request timeout: slow readers).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// Connections open at once per listener; more are closed at once (clients retry).
const MAX_CONNECTIONS: usize = 64;
/// Requests handled at once per listener; more wait (within the request timeout).
const MAX_CONCURRENT_REQUESTS: usize = 16;

/// Wrap `router` in the per-request limits: body cap, concurrency cap, timeout.
pub fn with_limits(router: Router) -> Router {
    router
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            MAX_CONCURRENT_REQUESTS,
        ))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_REQUEST_BODY,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
}

/// A running listener. Dropping it does not stop it; call [`WebServer::stop`].
pub struct WebServer {
    pub local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl WebServer {
    /// Serve `router` (already wrapped by [`with_limits`]) on `listener`.
    pub fn start(
        listener: TcpListener,
        router: Router,
        name: &'static str,
    ) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, router, name, rx));
        Ok(WebServer {
            local_addr,
            shutdown,
            task,
        })
    }

    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

async fn serve(
    listener: TcpListener,
    router: Router,
    name: &'static str,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => {
                if *shutdown.borrow() { return; }
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, listener = name, "http accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Over the cap: close at once; clients retry.
            drop(stream);
            continue;
        };
        let router = router.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ =
                tokio::time::timeout(CONNECTION_LIFETIME, connection(stream, peer, router)).await;
        });
    }
}

/// The address a request came from, in its extensions (handlers log it, never trust it).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// One request on one connection, then a lingering close.
async fn connection(stream: TcpStream, peer: SocketAddr, router: Router) -> std::io::Result<()> {
    // hyper closes its end as soon as it has answered, even when it answered an oversized
    // head it did not read to the end; closing with unread input makes the kernel send RST,
    // which can destroy the response before the client reads it. A second handle on the
    // socket keeps it open past hyper so a bounded amount of input can be drained first.
    let std_stream = stream.into_std()?;
    let lingering = TcpStream::from_std(std_stream.try_clone()?)?;
    let stream = TcpStream::from_std(std_stream)?;
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(MAX_REQUEST_HEAD)
        .max_headers(MAX_HEADERS)
        .serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.map_request(
                move |mut request: axum::http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(Peer(peer));
                    request
                },
            )),
        )
        .await;
    if let Err(error) = served {
        tracing::debug!(%error, "http connection ended with an error");
    }
    linger(lingering).await;
    Ok(())
}

async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut buf = [0u8; 4096];
    let mut drained = 0usize;
    while drained < 64 * 1024 {
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
}
