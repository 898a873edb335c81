//! The ops endpoint over a real loopback socket: /metrics, /healthz, /readyz, 404, oversize.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, Registry};
use teams_sbc::ops::{Heartbeat, Liveness, OpsServer, Readiness};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn request(addr: std::net::SocketAddr, raw: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("response within 10 s")
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
    )
    .await
}

#[tokio::test]
async fn serves_metrics_health_and_readiness() {
    let registry = Registry::new();
    let calls = IntCounter::new("test_calls_total", "calls seen by the test").unwrap();
    registry.register(Box::new(calls.clone())).unwrap();
    calls.inc_by(3);
    let readiness = Arc::new(Readiness::new());
    readiness.add_teams_proxy("sip.pstnhub.microsoft.com:5061");
    let liveness = Arc::new(Liveness::default());
    let server = OpsServer::start(
        "127.0.0.1:0".parse().unwrap(),
        registry,
        liveness.clone(),
        readiness.clone(),
    )
    .await
    .unwrap();
    let addr = server.local_addr;

    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("# TYPE test_calls_total counter"), "{body}");
    assert!(body.contains("test_calls_total 3"), "{body}");

    assert_eq!(get(addr, "/healthz").await.0, 200);
    let core = Heartbeat::new(std::time::Instant::now());
    let worker = Heartbeat::new(std::time::Instant::now());
    liveness.watch("sip_core", core.clone());
    liveness.watch("media_worker_0", worker.clone());
    let (status, body) = get(addr, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("ok\n"), "{body}");
    // A loop that ended turns /healthz red and is named.
    drop(worker.stop_on_drop());
    let (status, body) = get(addr, "/healthz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("unhealthy\n"), "{body}");
    assert!(body.contains("media_worker_0 dead"), "{body}");
    assert!(body.contains("sip_core ok"), "{body}");

    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("listeners_bound false"), "{body}");
    readiness.set_listeners_bound(true);
    assert_eq!(get(addr, "/readyz").await.0, 503, "no proxy up yet");
    readiness.set_teams_proxy_up("sip.pstnhub.microsoft.com:5061", true);
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");

    assert_eq!(get(addr, "/admin").await.0, 404);
    assert_eq!(
        request(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").await.0,
        405
    );

    let (_, body) = get(addr, "/metrics").await;
    assert!(
        body.contains("ops_http_requests_total{path=\"/readyz\",status=\"503\"} 2"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn oversized_request_head_is_refused() {
    let server = OpsServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Registry::new(),
        Arc::new(Liveness::default()),
        Arc::new(Readiness::new()),
    )
    .await
    .unwrap();
    let mut raw = b"GET /metrics HTTP/1.1\r\n".to_vec();
    for i in 0..400 {
        raw.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "a".repeat(20)).as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    let (status, _) = request(server.local_addr, &raw).await;
    // 431 Request Header Fields Too Large (RFC 6585): the head, not a body, is too large.
    assert_eq!(status, 431);
    // The server still answers afterwards.
    assert_eq!(get(server.local_addr, "/healthz").await.0, 200);
    server.stop().await;
}
