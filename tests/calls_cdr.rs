//! Call detail records end to end (issue 11 item 3): calls through the SBC (in-process) with
//! SIPp as the carrier and, behind the mutual-TLS stand-in, as Microsoft; each call's record
//! is read back from the JSON-lines file the SBC writes and checked against the published
//! schema (`docs/cdr-schema.json`) and for what the call did: answered, busy, no answer,
//! failed over, cancelled, drained. The webhook sink is checked against a real HTTP server
//! (hyper) started here, which refuses the first POST with 500: the batch comes again. The
//! file rotates by size over real calls; a reload that changes `[cdr]` is refused.
//!
//! Every wait is on a condition (a metric, a file line, a POST received), bounded; nothing
//! asserts a duration.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;

const ACME_DID: &str = "+4930123450";
const PSTN_CALLER: &str = "+4969111222";
const PSTN_CALLEE: &str = "+4969555000";
const LONG: Duration = Duration::from_secs(45);

/// Records are synced per batch in these tests (the default is once a second).
const CDR_FILE: &str = "[cdr.file]\nfsync = \"batch\"\n";

fn schema() -> jsonschema::Validator {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cdr-schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// Panics with every schema error of `record`.
fn assert_schema(record: &Value) {
    let validator = schema();
    let errors: Vec<String> = validator
        .iter_errors(record)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{record:#}");
}

fn cdr_path(lab: &Lab) -> PathBuf {
    lab.path().join("cdr").join("calls.jsonl")
}

/// The records of the file once it holds `count`, each checked against the schema.
fn records(lab: &Lab, count: usize) -> Vec<Value> {
    lab.wait_for(
        &format!("{count} call detail record(s) in the file"),
        LONG,
        |lab| lab.metric("cdr_records_total", &[("sink", "file")]) >= count as f64,
    );
    let text = std::fs::read_to_string(cdr_path(lab)).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records.len(), count, "{text}");
    for record in &records {
        assert_schema(record);
    }
    records
}

fn lab(media_base: u16, ops_extra: &str) -> (Lab, u16) {
    let mut spec = LabSpec::new(media_base);
    spec.ops_extra = format!("{ops_extra}\n{CDR_FILE}");
    lab_with_one_proxy_and(spec)
}

fn teams_answers(lab: &Lab, port: u16, file: &str, extra: &[(&str, &str)]) -> Peer {
    let tenant = regex_escape(&format!("acme.{BASE}"));
    let mut values = vec![
        ("CALLED", ACME_DID.trim_start_matches('+')),
        ("TENANT_RE", tenant.as_str()),
    ];
    values.extend_from_slice(extra);
    teams_uas(lab.path(), file, port, &values)
}

/// What every inbound record of these labs says.
fn assert_inbound(record: &Value) {
    assert_eq!(record["version"], 1);
    assert_eq!(record["direction"], "inbound");
    assert_eq!(record["tenant"], "acme");
    assert_eq!(record["trunk"], "pstn");
    assert_eq!(record["trunks_tried"], serde_json::json!(["pstn"]));
    assert_eq!(record["numbers"]["called_received"], ACME_DID);
    assert_eq!(record["numbers"]["calling_received"], PSTN_CALLER);
    assert_eq!(record["numbers"]["called_sent"], ACME_DID);
    assert_eq!(record["numbers"]["calling_sent"], PSTN_CALLER);
    assert_ne!(record["call_ids"]["carrier"], record["call_ids"]["teams"]);
}

#[test]
fn an_answered_call_has_its_times_codecs_srtp_and_media_per_leg() {
    let (lab, port) = lab(47000, "");
    let mut teams = teams_answers(&lab, port, "teams_uas.xml", &[]);
    let mut carrier = carrier_uac(
        &lab,
        "carrier_uac.xml",
        ACME_DID,
        &[("CALLER", PSTN_CALLER), ("HOLD_MS", "2000")],
    );
    carrier.expect_success(LONG);
    teams.expect_success(LONG);
    let record = &records(&lab, 1)[0];
    assert_inbound(record);
    assert_eq!(record["outcome"], "answered");
    assert_eq!(record["final_status"], 200);
    assert_eq!(record["end_reason"], "bye_carrier");
    assert_eq!(record["ended_by"], "carrier");
    assert_eq!(record["q850_cause"], 16);
    assert!(record["times"]["answer"].is_string(), "{record:#}");
    assert!(record["duration_ms"].as_u64().unwrap() > 0, "{record:#}");
    assert!(record["post_dial_delay_ms"].is_u64(), "{record:#}");
    let hops = record["hops"].as_array().unwrap();
    assert_eq!(hops.len(), 1, "{record:#}");
    assert_eq!(hops[0]["leg"], "teams");
    assert_eq!(hops[0]["outcome"], "answered");
    let media = &record["media"];
    assert_eq!(media["bypass"], false);
    assert_eq!(media["srtp_suite"], "AES_CM_128_HMAC_SHA1_80");
    assert_eq!(media["carrier"]["codec"], "PCMU");
    assert_eq!(media["teams"]["codec"], "PCMU");
    // The carrier's pcap reached the SBC and Teams' echo came back on the Teams leg.
    for leg in ["carrier", "teams"] {
        assert!(
            media[leg]["rx_packets"].as_u64().unwrap() > 0,
            "{leg}: {media:#}"
        );
        let mos = media[leg]["mos"].as_f64().unwrap();
        assert!((1.0..=4.5).contains(&mos), "{leg}: {media:#}");
    }
    lab.wait_idle();
}

/// A PSTN -> Teams call the Teams user refuses with 486 (Q.850 cause 17 and Microsoft's
/// diagnostics), both SIPps run to their end.
fn busy_call(lab: &Lab, port: u16) {
    let mut teams = teams_uas(
        lab.path(),
        "teams_uas_final.xml",
        port,
        &[
            ("STATUS", "486"),
            ("STATUS_TEXT", "Busy Here"),
            ("CAUSE", "17"),
            ("DIAGNOSTICS", "10026;reason=\"User is busy\""),
        ],
    );
    let mut carrier = carrier_uac(
        lab,
        "carrier_uac_final.xml",
        ACME_DID,
        &[("CALLER", PSTN_CALLER), ("STATUS", "486")],
    );
    carrier.expect_success(LONG);
    teams.expect_success(LONG);
}

#[test]
fn a_busy_teams_user_gives_486_with_microsofts_cause_and_diagnostics() {
    let (lab, port) = lab(47200, "");
    busy_call(&lab, port);
    let record = &records(&lab, 1)[0];
    assert_inbound(record);
    assert_eq!(record["outcome"], "busy");
    assert_eq!(record["final_status"], 486);
    assert_eq!(record["end_reason"], "rejected");
    assert_eq!(record["ended_by"], "teams");
    assert_eq!(record["q850_cause"], 17);
    assert_eq!(record["q850_cause_from"], "reason");
    assert_eq!(record["duration_ms"], 0);
    assert!(record["times"]["answer"].is_null());
    assert_eq!(record["microsoft"]["code"], 10026);
    assert!(
        record["microsoft"]["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("Q.850;cause=17"),
        "{record:#}"
    );
    assert_eq!(record["hops"][0]["status"], 486);
    assert_eq!(record["hops"][0]["outcome"], "rejected");
    lab.wait_idle();
}

#[test]
fn a_call_teams_rings_but_nobody_takes_is_no_answer() {
    let (lab, port) = lab(47400, "");
    let mut teams = teams_uas(
        lab.path(),
        "teams_uas_final.xml",
        port,
        &[
            ("STATUS", "480"),
            ("STATUS_TEXT", "Temporarily Unavailable"),
            ("CAUSE", "19"),
            ("DIAGNOSTICS", "10037;reason=\"Call not answered\""),
        ],
    );
    let mut carrier = carrier_uac(
        &lab,
        "carrier_uac_final.xml",
        ACME_DID,
        &[("CALLER", PSTN_CALLER), ("STATUS", "480")],
    );
    carrier.expect_success(LONG);
    teams.expect_success(LONG);
    let record = &records(&lab, 1)[0];
    assert_inbound(record);
    assert_eq!(record["outcome"], "no_answer");
    assert_eq!(record["final_status"], 480);
    assert_eq!(record["q850_cause"], 19);
    assert!(
        record["times"]["first_provisional"].is_string(),
        "{record:#}"
    );
    assert!(record["times"]["answer"].is_null());
    lab.wait_idle();
}

#[test]
fn a_call_the_caller_cancels_while_teams_rings_is_cancelled_by_the_carrier() {
    let (lab, port) = lab(47600, "");
    let mut teams = teams_uas(lab.path(), "teams_uas_cancel.xml", port, &[]);
    let mut carrier = carrier_uac(
        &lab,
        "carrier_uac_cancel.xml",
        ACME_DID,
        &[("CALLER", PSTN_CALLER)],
    );
    carrier.expect_success(LONG);
    teams.expect_success(LONG);
    let record = &records(&lab, 1)[0];
    assert_inbound(record);
    assert_eq!(record["outcome"], "cancelled");
    assert_eq!(record["final_status"], 487);
    assert_eq!(record["end_reason"], "cancelled");
    assert_eq!(record["ended_by"], "carrier");
    assert!(
        record["times"]["first_provisional"].is_string(),
        "{record:#}"
    );
    assert_eq!(record["hops"][0]["outcome"], "cancelled");
    lab.wait_idle();
}

/// The first Microsoft proxy answers 503: the call fails over to the second, which answers.
#[test]
fn a_failed_over_call_lists_each_proxy_tried_with_its_outcome() {
    let busy = free_tcp_port(TEAMS_IP);
    let good = free_tcp_port(TEAMS_IP);
    let mut spec = LabSpec::new(47800);
    spec.tls_stand_in = false;
    spec.ops_extra = CDR_FILE.into();
    spec.proxies = vec![
        LabSpec::tcp_proxy(&TEAMS_IP.to_string(), busy),
        LabSpec::tcp_proxy(&TEAMS_IP.to_string(), good),
    ];
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[format!("{TEAMS_IP}:{busy}"), format!("{TEAMS_IP}:{good}")]);
    let mut busy_proxy = teams_uas(lab.path(), "teams_uas_503.xml", busy, &[]);
    let mut teams = teams_answers(&lab, good, "teams_uas.xml", &[]);
    let mut carrier = carrier_uac(
        &lab,
        "carrier_uac.xml",
        ACME_DID,
        &[("CALLER", PSTN_CALLER), ("HOLD_MS", "500")],
    );
    carrier.expect_success(LONG);
    busy_proxy.expect_success(LONG);
    teams.expect_success(LONG);
    let record = &records(&lab, 1)[0];
    assert_inbound(record);
    assert_eq!(record["outcome"], "answered");
    let hops: Vec<(String, Value, Value)> = record["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["destination"].as_str().unwrap().to_string(),
                h["status"].clone(),
                h["outcome"].clone(),
            )
        })
        .collect();
    assert_eq!(
        hops,
        [
            (format!("{TEAMS_IP}:{busy}"), 503.into(), "rejected".into()),
            (format!("{TEAMS_IP}:{good}"), 200.into(), "answered".into()),
        ],
        "{record:#}"
    );
    lab.wait_idle();
}

/// A call still up when a graceful drain runs out of time gets BYE on both legs (Q.850 41);
/// its record says so, and is in the file by the time the drain reports.
#[test]
fn a_call_ended_by_a_drain_is_recorded_as_drained() {
    let (mut lab, port) = lab(48000, "drain_timeout_seconds = 2");
    let drain_reason = r"Reason: Q\.850;cause=41";
    let mut teams = teams_answers(
        &lab,
        port,
        "teams_uas.xml",
        &[("BYE_REASON_RE", drain_reason)],
    );
    let mut carrier = carrier_uac(
        &lab,
        "carrier_uac_wait_bye.xml",
        ACME_DID,
        &[("CALLER", PSTN_CALLER), ("BYE_REASON_RE", drain_reason)],
    );
    lab.wait_for("the call to be answered", LONG, |lab| {
        lab.metric("calls_answered_total", &[]) >= 1.0
    });
    let mut drained = lab.drain();
    carrier.expect_success(LONG);
    teams.expect_success(LONG);
    lab.wait_for("the drain to report", LONG, |_| drained.try_recv().is_ok());
    let record = &records(&lab, 1)[0];
    assert_inbound(record);
    assert_eq!(record["outcome"], "answered");
    assert_eq!(record["end_reason"], "drained");
    assert_eq!(record["ended_by"], "drained");
    assert_eq!(record["q850_cause"], 41);
    assert_eq!(record["q850_cause_from"], "reason");
    lab.wait_idle();
}

/// What the server answered to each POST, and its body.
type Posts = Arc<Mutex<Vec<(u16, Vec<u8>)>>>;

/// A real HTTP server (hyper) that answers 500 to its first POST and 200 to the next ones,
/// keeping each body it answered 200 to.
struct WebhookServer {
    addr: SocketAddr,
    posts: Posts,
    _runtime: tokio::runtime::Runtime,
}

impl WebhookServer {
    fn start() -> WebhookServer {
        use http_body_util::{BodyExt, Full};
        use hyper::service::service_fn;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind((SBC_IP, 0)))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let posts: Posts = Arc::default();
        let seen = posts.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let ok = request.method() == hyper::Method::POST
                            && request.uri().path() == "/cdr"
                            && request
                                .headers()
                                .get(hyper::header::CONTENT_TYPE)
                                .is_some_and(|v| v == "application/json");
                        let body = request.into_body().collect().await?.to_bytes().to_vec();
                        let status = {
                            let mut posts = seen.lock().unwrap();
                            let status = if posts.is_empty() || !ok { 500 } else { 200 };
                            posts.push((status, body));
                            status
                        };
                        let response = hyper::Response::builder()
                            .status(status)
                            .body(Full::new(bytes::Bytes::from_static(b"")))
                            .unwrap();
                        Ok::<_, hyper::Error>(response)
                    }
                });
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        WebhookServer {
            addr,
            posts,
            _runtime: runtime,
        }
    }

    fn posts(&self) -> Vec<(u16, Vec<u8>)> {
        self.posts.lock().unwrap().clone()
    }
}

/// A Teams -> PSTN call's record reaches the webhook: the first POST is answered 500 and the
/// same batch comes again after the backoff; the record POSTed is the one in the file.
#[test]
fn the_webhook_gets_the_record_again_after_a_500() {
    let server = WebhookServer::start();
    let mut spec = LabSpec::new(48200);
    spec.ops_extra = format!(
        "{CDR_FILE}[cdr.webhook]\nurl = \"http://{}/cdr\"\nbatch_records = 10\n\
         batch_delay_ms = 50\nretry_initial_ms = 100\nmax_attempts = 5\n",
        server.addr
    );
    let (lab, _) = lab_with_one_proxy_and(spec);
    let media_sink = UdpSocket::bind((TEAMS_IP, 0)).unwrap();
    let media_port = media_sink.local_addr().unwrap().port().to_string();
    let globex = format!("globex.{BASE}");
    let mut pstn = carrier_uas(
        &lab,
        "carrier_uas.xml",
        &[("CALLED", PSTN_CALLEE.trim_start_matches('+'))],
    );
    let mut teams = teams_uac(
        &lab,
        "globex-out",
        "teams_uac.xml",
        &[
            ("CALLED", PSTN_CALLEE),
            ("CALLER", "+4940555777"),
            ("TENANT", &globex),
            ("TENANT_RE", &regex_escape(&globex)),
            ("MEDIA_IP", &TEAMS_IP.to_string()),
            ("MEDIA_PORT", &media_port),
            ("CRYPTO", &new_inline_key()),
            ("HOLD_MS", "500"),
        ],
    );
    teams.expect_success(LONG);
    pstn.expect_success(LONG);
    lab.wait_for("the webhook to take a batch", LONG, |lab| {
        lab.metric("cdr_records_total", &[("sink", "webhook")]) >= 1.0
    });
    let posts = server.posts();
    assert_eq!(posts[0].0, 500, "the first POST was refused");
    let (status, body) = posts.iter().find(|(status, _)| *status == 200).unwrap();
    assert_eq!(*status, 200);
    assert_eq!(posts[0].1, *body, "the same batch came again");
    let batch: Vec<Value> = serde_json::from_slice(body).unwrap();
    assert_eq!(batch.len(), 1);
    assert_schema(&batch[0]);
    assert_eq!(batch[0]["direction"], "outbound");
    assert_eq!(batch[0]["tenant"], "globex");
    assert_eq!(batch[0]["numbers"]["called_received"], PSTN_CALLEE);
    assert_eq!(batch[0]["hops"][0]["leg"], "carrier");
    assert_eq!(batch[0]["hops"][0]["trunk"], "pstn");
    assert!(lab.metric("cdr_webhook_failures_total", &[]) >= 1.0);
    assert!(lab.metric("cdr_webhook_retries_total", &[]) >= 1.0);
    assert_eq!(
        lab.metric("cdr_records_dropped_total", &[("sink", "webhook")]),
        0.0
    );
    let in_file = &records(&lab, 1)[0];
    assert_eq!(in_file["id"], batch[0]["id"]);
    lab.wait_idle();
}

/// `[cdr]` needs a restart: a reload that changes it is refused with the reason and changes
/// nothing (counted); the same file without that change reloads.
#[test]
fn a_reload_changing_cdr_is_refused_and_changes_nothing() {
    let (mut lab, _) = lab(48400, "");
    let text = lab.config_text();
    let changed = text.replace("fsync = \"batch\"", "fsync = \"never\"");
    assert_ne!(changed, text);
    let refused = lab.reload_with(&changed).unwrap_err();
    assert!(
        refused.contains("needs a restart") && refused.contains("[cdr]"),
        "{refused}"
    );
    assert_eq!(
        lab.metric(
            "config_reload_failures_total",
            &[("reason", "needs_restart")]
        ),
        1.0
    );
    lab.reload_with(&text).unwrap();
    assert_eq!(lab.metric("config_reloads_total", &[]), 1.0);
}

/// The file rotates by size over real calls: every record is in `calls.jsonl` or a rotated
/// `calls.jsonl.N`, whole (a batch never straddles two files), and the rotation is counted.
#[test]
fn records_rotate_into_numbered_files_by_size() {
    let mut spec = LabSpec::new(48600);
    spec.ops_extra = format!("{CDR_FILE}rotate_bytes = 4096\nkeep_files = 5\n");
    let (lab, port) = lab_with_one_proxy_and(spec);
    const CALLS: usize = 4;
    for _ in 0..CALLS {
        busy_call(&lab, port);
    }
    lab.wait_for("every record written", LONG, |lab| {
        lab.metric("cdr_records_total", &[("sink", "file")]) >= CALLS as f64
    });
    assert!(lab.metric("cdr_file_rotations_total", &[]) >= 1.0);
    let current = cdr_path(&lab);
    let mut files = vec![current.clone()];
    for n in 1..=5 {
        let mut name = current.clone().into_os_string();
        name.push(format!(".{n}"));
        files.push(PathBuf::from(name));
    }
    let mut calls = Vec::new();
    for file in files.iter().filter(|f| f.exists()) {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            text.len() <= 4096 || text.lines().count() == 1,
            "{} holds {} bytes",
            file.display(),
            text.len()
        );
        for line in text.lines() {
            let record: Value = serde_json::from_str(line).unwrap();
            assert_schema(&record);
            calls.push(record["call"].as_u64().unwrap());
        }
    }
    calls.sort_unstable();
    assert_eq!(calls, [1, 2, 3, 4], "each call's record once, none lost");
    assert!(files[1].exists(), "calls.jsonl.1 exists");
    lab.wait_idle();
}
