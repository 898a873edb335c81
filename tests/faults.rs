//! Faults end to end, over real sockets: the SBC runs in-process (two media workers), one
//! media worker is made to panic (test hook, feature `test-hooks`), `/healthz` on the ops
//! listener turns 503 naming it, new sessions and a real call (SIPp carrier UAC over UDP,
//! SIPp Microsoft stand-in over TCP, media through the SBC) avoid it, and once no worker is
//! left a new call gets a clean 503.
//!
//! In a release build `panic = "abort"` would end the process instead; tests always unwind,
//! so here the panic ends that worker's thread only and the worker's heartbeat guard marks it
//! dead. Every wait is bounded; nothing asserts a duration.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const ACME_DID: &str = "+4930123450";
const PSTN_CALLER: &str = "+4969111222";
const LONG: Duration = Duration::from_secs(45);

/// Poll `/healthz` until `wanted` holds; its last body.
fn wait_healthz(lab: &Lab, what: &str, wanted: impl Fn(u16, &str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = http_get(lab.running().ops_addr, "/healthz");
        if wanted(status, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz never showed {what}; last {status}:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The Microsoft stand-in side of a PSTN -> Teams call: a SIPp UAS over TCP echoing media.
fn teams_uas(dir: &Path, port: u16) -> Peer {
    let dir = dir.join(format!("teams-{port}"));
    let path = scenario(
        &dir,
        "teams_uas.xml",
        &[
            ("CALLED", ACME_DID.trim_start_matches('+')),
            ("TENANT_RE", &format!("acme\\.{}", BASE.replace('.', "\\."))),
        ],
    );
    let media = free_port_pair(TEAMS_IP);
    let peer = sipp(
        "Teams SIPp UAS",
        &dir,
        &path,
        &[
            "-t".into(),
            "t1".into(),
            "-i".into(),
            TEAMS_IP.to_string(),
            "-p".into(),
            port.to_string(),
            "-mi".into(),
            TEAMS_IP.to_string(),
            "-mp".into(),
            media.to_string(),
            "-rtp_echo".into(),
        ],
    );
    wait_listening_tcp((TEAMS_IP, port).into());
    peer
}

#[test]
fn a_panicked_media_worker_turns_healthz_red_and_new_calls_avoid_it() {
    let proxy_port = free_tcp_port(TEAMS_IP);
    let mut spec = LabSpec::new(55200);
    spec.proxies = vec![LabSpec::tcp_proxy(&TEAMS_IP.to_string(), proxy_port)];
    spec.media_extra = "workers = 2".into();
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[format!("{TEAMS_IP}:{proxy_port}")]);
    let media = &lab.running().media;

    let body = wait_healthz(&lab, "every loop alive", |status, _| status == 200);
    for part in ["sip_core ok", "media_worker_0 ok", "media_worker_1 ok"] {
        assert!(body.contains(part), "{body}");
    }

    // Worker 0, the least loaded (both are idle, ties go to the first), dies.
    media.panic_worker(0).unwrap();
    let body = wait_healthz(&lab, "media worker 0 dead", |status, body| {
        status == 503 && body.contains("media_worker_0 dead")
    });
    assert!(body.starts_with("unhealthy\n"), "{body}");
    assert!(body.contains("sip_core ok"), "{body}");
    assert!(body.contains("media_worker_1 ok"), "{body}");

    // New sessions all go to the live worker.
    let sessions: Vec<_> = (0..4)
        .map(|_| media.create_session("carrier", "teams", &[]).unwrap())
        .collect();
    for session in &sessions {
        assert_eq!(media.worker_of(session.id), Some(1));
    }
    for session in sessions {
        media.remove_session(session.id).unwrap();
    }

    // And so does a real call: media flows both ways through the live worker.
    let mut teams = teams_uas(lab.path(), proxy_port);
    let mut carrier = carrier_uac(
        &lab,
        "carrier_uac.xml",
        ACME_DID,
        &[("CALLER", PSTN_CALLER), ("HOLD_MS", "2000")],
    );
    carrier.expect_success(LONG);
    teams.expect_success(LONG);
    for direction in ["carrier_to_teams", "teams_to_carrier"] {
        let packets = lab.metric("media_packets_total", &[("direction", direction)]);
        assert!(
            packets >= f64::from(PCAP_PACKETS) * 0.8,
            "{direction} packets: {packets}"
        );
    }
    lab.wait_idle();

    // With no worker left a new call is refused cleanly.
    media.panic_worker(1).unwrap();
    wait_healthz(&lab, "media worker 1 dead", |status, body| {
        status == 503 && body.contains("media_worker_1 dead")
    });
    let mut refused = carrier_uac(
        &lab,
        "carrier_uac_status.xml",
        "+4930123451",
        &[("CALLER", PSTN_CALLER), ("STATUS", "503"), ("CHECKS", "")],
    );
    refused.expect_success(LONG);
    assert_eq!(
        lab.metric(
            "media_sessions_refused_total",
            &[("reason", "no_live_worker")]
        ),
        1.0
    );
    assert_eq!(lab.metric("media_worker_failures_total", &[]), 2.0);
    lab.wait_idle();
}
