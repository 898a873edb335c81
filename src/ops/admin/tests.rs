//! The router alone, with a SIP core that never answers and no supervisor: what a stuck
//! core, a missing or wrong token and an oversized body get. (Every route against a
//! running SBC: tests/admin_api.rs.)

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::media::{InterfaceSettings, MediaEngine, MediaSettings};

const TOKEN: &str = "unit-test-token-0123456789";

struct Stuck {
    router: Router,
    /// Held, never read: the core and the supervisor take requests but never answer.
    _core: mpsc::Receiver<CoreRequest>,
    _control: mpsc::Receiver<ControlRequest>,
    _media: MediaHandle,
}

fn stuck(token: Option<&str>) -> Stuck {
    let registry = prometheus::Registry::new();
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let media_settings = MediaSettings {
        interfaces: vec![
            InterfaceSettings::new("carrier", lo, 47300, 47309),
            InterfaceSettings::new("teams", lo, 47310, 47319),
        ],
        workers: 1,
        ..MediaSettings::default()
    };
    let (media, _events) = MediaEngine::start(media_settings, &registry).unwrap();
    let loaded = crate::config::parse_str(
        include_str!("../../../configs/dev.toml"),
        "dev.toml",
        Path::new("/"),
        false,
    )
    .unwrap();
    let (core, core_rx) = mpsc::channel(4);
    let (control, control_rx) = mpsc::channel(4);
    let context = AdminContext {
        core,
        control,
        traces: Arc::new(
            CallTraces::new(crate::dispatch::TraceSettings::default(), &registry).unwrap(),
        ),
        media: media.clone(),
        peers: Arc::new(PeerBoard::default()),
        view: ArcSwap::from_pointee(AdminView {
            loaded,
            token: token.map(str::to_string),
        }),
        metrics: auth::AdminMetrics::register(&registry).unwrap(),
    };
    Stuck {
        router: router(Arc::new(context)),
        _core: core_rx,
        _control: control_rx,
        _media: media,
    }
}

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, String) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn get(path: &str, token: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    request.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn a_stuck_core_answers_503_in_bounded_time() {
    let api = stuck(Some(TOKEN));
    let started = Instant::now();
    let (status, body) = send(&api.router, get("/admin/calls", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("did not answer in time"), "{body}");
    assert!(started.elapsed() < CORE_TIMEOUT + Duration::from_secs(2));
    // What needs no core still answers.
    let (status, body) = send(&api.router, get("/admin/teams", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = send(&api.router, get("/admin/calls/1/sip", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tokens_are_required_when_configured_and_bodies_are_capped() {
    let api = stuck(Some(TOKEN));
    let (status, _) = send(&api.router, get("/admin/openapi.json", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(&api.router, get("/admin/openapi.json", Some("x"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = send(&api.router, get("/admin/openapi.json", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, openapi::DOCUMENT);
    let huge = format!("{{\"level\":\"{}\"}}", "x".repeat(web::MAX_REQUEST_BODY));
    let request = Request::put("/admin/log-level")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, huge.len())
        .body(Body::from(huge))
        .unwrap();
    let (status, _) = send(&api.router, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = send(
        &api.router,
        Request::post("/admin/calls")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn without_a_configured_token_requests_pass() {
    let api = stuck(None);
    let (status, _) = send(&api.router, get("/admin/teams", None)).await;
    assert_eq!(status, StatusCode::OK);
}
