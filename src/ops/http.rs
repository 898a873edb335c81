//! A deliberately small HTTP/1.1 server for /metrics, /healthz and /readyz. One request per
//! connection (`Connection: close`), bounded request head, read/write timeouts and a cap on
//! concurrent connections, so a scraper (or an attacker) cannot tie the process up.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::{Liveness, Readiness};

const MAX_REQUEST_HEAD: usize = 8 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: usize = 64;

/// Counters of the ops endpoint itself.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
}

impl HttpMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<HttpMetrics> {
        let requests = IntCounterVec::new(
            Opts::new(
                "ops_http_requests_total",
                "Requests to the ops HTTP endpoint by path and status",
            ),
            &["path", "status"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        Ok(HttpMetrics { requests })
    }
}

pub struct OpsState {
    pub registry: Registry,
    pub liveness: Arc<Liveness>,
    pub readiness: Arc<Readiness>,
    pub metrics: HttpMetrics,
}

/// A complete HTTP response.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    fn text(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    pub fn to_bytes(&self, include_body: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            413 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Unknown",
        };
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            reason,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if include_body {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// Answer one request head (everything up to and including the blank line). Pure: no I/O.
/// Returns the response and whether the body should be sent (not for HEAD).
pub fn respond(head: &[u8], state: &OpsState) -> (Response, bool) {
    let Some(request_line) = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .and_then(|end| head.get(..end))
    else {
        return (Response::text(400, "bad request\n"), true);
    };
    let line = String::from_utf8_lossy(request_line);
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return (Response::text(400, "bad request line\n"), true);
    };
    if !version.starts_with("HTTP/1.") {
        return (Response::text(400, "HTTP/1.x only\n"), true);
    }
    let include_body = method != "HEAD";
    if method != "GET" && method != "HEAD" {
        return (Response::text(405, "GET or HEAD only\n"), true);
    }
    let path = target.split('?').next().unwrap_or(target);
    let (label, response) = match path {
        "/metrics" => ("/metrics", metrics(&state.registry)),
        "/healthz" => {
            let (healthy, body) = state.liveness.status(std::time::Instant::now());
            (
                "/healthz",
                Response::text(if healthy { 200 } else { 503 }, body),
            )
        }
        "/readyz" => {
            let (ready, body) = state.readiness.status();
            (
                "/readyz",
                Response::text(if ready { 200 } else { 503 }, body),
            )
        }
        _ => ("other", Response::text(404, "not found\n")),
    };
    state
        .metrics
        .requests
        .with_label_values(&[label, &response.status.to_string()])
        .inc();
    (response, include_body)
}

fn metrics(registry: &Registry) -> Response {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&registry.gather(), &mut body) {
        Ok(()) => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body,
        },
        Err(e) => Response::text(500, format!("encoding metrics failed: {e}\n")),
    }
}

/// Serve until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    state: Arc<OpsState>,
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
        let (stream, _peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "ops http accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Over the cap: close at once; scrapers retry.
            drop(stream);
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(IO_TIMEOUT * 2, handle(stream, &state)).await;
        });
    }
}

async fn handle(mut stream: TcpStream, state: &OpsState) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = loop {
        let n = match tokio::time::timeout(IO_TIMEOUT, stream.read(&mut buf)).await {
            Ok(read) => read?,
            Err(_) => return Ok(()),
        };
        let Some(read) = buf.get(..n).filter(|read| !read.is_empty()) else {
            break false;
        };
        head.extend_from_slice(read);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break true;
        }
        if head.len() > MAX_REQUEST_HEAD {
            break false;
        }
    };
    let (response, include_body) = if complete {
        respond(&head, state)
    } else if head.len() > MAX_REQUEST_HEAD {
        (Response::text(413, "request head too large\n"), true)
    } else {
        return Ok(());
    };
    tokio::time::timeout(
        IO_TIMEOUT,
        stream.write_all(&response.to_bytes(include_body)),
    )
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let _ = stream.shutdown().await;
    // Lingering close: closing with unread input makes the kernel send RST, which can destroy
    // the response before the client reads it. Drain a bounded amount first.
    let mut drained = 0usize;
    while drained < 64 * 1024 {
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> OpsState {
        let registry = Registry::new();
        let metrics = HttpMetrics::register(&registry).unwrap();
        OpsState {
            registry,
            liveness: Arc::new(Liveness::default()),
            readiness: Arc::new(Readiness::new()),
            metrics,
        }
    }

    #[test]
    fn routes() {
        let s = state();
        let get = |path: &str| {
            respond(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
                &s,
            )
            .0
        };
        assert_eq!(get("/healthz").status, 200);
        let worker = crate::ops::Heartbeat::new(std::time::Instant::now());
        s.liveness.watch("media_worker_0", worker.clone());
        assert_eq!(get("/healthz").status, 200);
        worker.stop();
        let health = get("/healthz");
        assert_eq!(health.status, 503);
        assert!(String::from_utf8(health.body)
            .unwrap()
            .contains("media_worker_0 dead"));
        assert_eq!(get("/readyz").status, 503);
        s.readiness.set_listeners_bound(true);
        s.readiness.set_teams_proxy_up("p", true);
        assert_eq!(get("/readyz").status, 200);
        assert_eq!(get("/nope").status, 404);
        let m = get("/metrics?x=1");
        assert_eq!(m.status, 200);
        let body = String::from_utf8(m.body).unwrap();
        assert!(body.contains("ops_http_requests_total{path=\"/healthz\",status=\"200\"} 2"));
        assert!(body.contains("ops_http_requests_total{path=\"/healthz\",status=\"503\"} 1"));
    }

    #[test]
    fn rejects_bad_requests() {
        let s = state();
        assert_eq!(respond(b"POST /metrics HTTP/1.1\r\n\r\n", &s).0.status, 405);
        assert_eq!(respond(b"GET /metrics\r\n\r\n", &s).0.status, 400);
        assert_eq!(respond(b"GET /metrics SIP/2.0\r\n\r\n", &s).0.status, 400);
        assert_eq!(respond(b"garbage", &s).0.status, 400);
        let (head, include_body) = respond(b"HEAD /healthz HTTP/1.0\r\n\r\n", &s);
        assert_eq!(head.status, 200);
        assert!(!include_body);
        assert!(!String::from_utf8(head.to_bytes(false))
            .unwrap()
            .ends_with("ok\n"));
    }
}
