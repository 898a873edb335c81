//! The admin API over real HTTP against a running SBC (driven by `app::supervise` as
//! `teams-sbc run` drives it), with SIPp as the carrier and, behind the mutual-TLS stand-in,
//! as Microsoft; and `teams-sbc ctl` run as a process against it.
//!
//! Every route is called, with a missing and a wrong token too; a call is listed while up
//! and gone after `DELETE` with a BYE carrying the operator's Reason on both legs; its SIP
//! is read after the end; reload with a good and a broken file; the log level; the drain.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const ACME_DID: &str = "+4930123450";
const PSTN_CALLER: &str = "+4969111222";
const TOKEN: &str = "admin-token-0123456789abcdef";
const LONG: Duration = Duration::from_secs(45);
const OPERATOR_REASON: &str = r"Reason: Q\.850;cause=16";

struct Answer {
    status: u16,
    head: String,
    json: Value,
}

/// One request to the admin API; `token` goes into `Authorization: Bearer`.
fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let mut stream = TcpStream::connect(addr).expect("admin listener reachable");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("a whole response");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    Answer {
        status,
        head: head.to_string(),
        json: serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
    }
}

fn get(addr: SocketAddr, path: &str) -> Answer {
    api(addr, "GET", path, Some(TOKEN), None)
}

/// `teams-sbc ctl ARGS` against the lab's admin API: (success, stdout, stderr).
fn ctl(admin: SocketAddr, token_file: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_teams-sbc"))
        .arg("ctl")
        .arg("--url")
        .arg(format!("http://{admin}"))
        .arg("--token-file")
        .arg(token_file)
        .args(args)
        .output()
        .expect("teams-sbc ctl runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

fn calls(admin: SocketAddr, query: &str) -> Vec<Value> {
    let answer = get(admin, &format!("/admin/calls{query}"));
    assert_eq!(answer.status, 200, "{}", answer.json);
    answer.json["calls"].as_array().cloned().unwrap_or_default()
}

/// Wait until the admin API lists one confirmed call; that call.
fn wait_confirmed_call(admin: SocketAddr) -> Value {
    let deadline = Instant::now() + LONG;
    while Instant::now() < deadline {
        if let Some(call) = calls(admin, "")
            .into_iter()
            .find(|c| c["state"] == "confirmed")
        {
            return call;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no confirmed call listed within {LONG:?}");
}

/// A PSTN -> Teams call whose both ends wait for the SBC's BYE with the operator's Reason.
fn start_call(lab: &Lab, proxy_port: u16) -> (Peer, Peer) {
    let teams = teams_uas(
        lab.path(),
        "teams_uas.xml",
        proxy_port,
        &[
            ("CALLED", ACME_DID.trim_start_matches('+')),
            ("TENANT_RE", &regex_escape(&format!("acme.{BASE}"))),
            ("BYE_REASON_RE", OPERATOR_REASON),
        ],
    );
    let carrier = carrier_uac(
        lab,
        "carrier_uac_wait_bye.xml",
        ACME_DID,
        &[("CALLER", PSTN_CALLER), ("BYE_REASON_RE", OPERATOR_REASON)],
    );
    (teams, carrier)
}

#[test]
fn the_admin_api_and_ctl_operate_a_running_sbc() {
    // Logging installed the way `teams-sbc run` does, so the log level can change.
    let _ = teams_sbc::ops::init_logging(teams_sbc::ops::LogFormat::Text, "warn,teams_sbc=info");
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("admin.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let admin_port = free_tcp_port(SBC_IP);
    let mut spec = LabSpec::new(46600);
    spec.ops_extra = format!(
        "drain_timeout_seconds = 5\n\n[admin]\nlisten = \"{SBC_IP}:{admin_port}\"\ntoken_file = \"{}\"\n",
        token_file.display()
    );
    let (mut lab, proxy_port) = lab_with_one_proxy_and(spec);
    let admin = lab.running().admin_addr.expect("the admin API listens");
    assert_eq!(admin.port(), admin_port);
    lab.supervise();

    // Missing and wrong tokens: 401 with a Bearer challenge, counted.
    let missing = api(admin, "GET", "/admin/calls", None, None);
    assert_eq!(missing.status, 401);
    assert!(
        missing.head.contains("www-authenticate: Bearer"),
        "{}",
        missing.head
    );
    let wrong = api(
        admin,
        "GET",
        "/admin/trunks",
        Some("not-the-token-at-all"),
        None,
    );
    assert_eq!(wrong.status, 401);
    assert!(wrong.head.contains("invalid_token"), "{}", wrong.head);
    for (method, path) in [
        ("DELETE", "/admin/calls/1"),
        ("POST", "/admin/reload"),
        ("POST", "/admin/drain"),
        ("PUT", "/admin/log-level"),
        ("GET", "/admin/openapi.json"),
    ] {
        let refused = api(
            admin,
            method,
            path,
            Some("wrong-token-0000000000"),
            Some("{}"),
        );
        assert_eq!(refused.status, 401, "{method} {path}");
    }
    assert_eq!(
        lab.metric("admin_auth_failures_total", &[("reason", "missing")]),
        1.0
    );
    assert_eq!(
        lab.metric("admin_auth_failures_total", &[("reason", "wrong")]),
        6.0
    );
    let (_, metrics) = http_get(lab.ops_addr(), "/metrics");
    assert!(metrics.contains("admin_auth_failures_total"), "{metrics}");
    assert!(!metrics.contains(TOKEN));

    // The document, the peers and the tenants.
    let openapi = get(admin, "/admin/openapi.json");
    assert_eq!(openapi.status, 200);
    assert!(openapi.json["paths"]["/admin/calls/{id}/sip"]["get"].is_object());
    let teams = get(admin, "/admin/teams");
    assert_eq!(teams.status, 200);
    let proxies = teams.json["proxies"].as_array().unwrap();
    assert_eq!(proxies.len(), 1, "{}", teams.json);
    assert_eq!(proxies[0]["state"], "up", "{}", teams.json);
    assert_eq!(proxies[0]["last_status"], 200, "{}", teams.json);
    assert!(proxies[0]["rtt_ms"].as_f64().is_some(), "{}", teams.json);
    let tenants = get(admin, "/admin/tenants");
    assert_eq!(tenants.status, 200);
    let names: Vec<&str> = tenants.json["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["acme", "globex"]);
    assert_eq!(get(admin, "/admin/nope").status, 404);
    assert!(calls(admin, "").is_empty());

    // A call: listed with its legs and media, filtered, found by number or Call-ID.
    let (mut teams_peer, mut carrier) = start_call(&lab, proxy_port);
    let call = wait_confirmed_call(admin);
    let id = call["id"].as_u64().unwrap();
    assert_eq!(call["tenant"], "acme", "{call}");
    assert_eq!(call["trunk"], "pstn", "{call}");
    assert_eq!(call["direction"], "inbound", "{call}");
    assert_eq!(call["callee"], ACME_DID, "{call}");
    let legs = call["legs"].as_array().unwrap();
    assert_eq!(legs.len(), 2, "{call}");
    assert_eq!(legs[0]["leg"], "carrier");
    assert_eq!(legs[1]["leg"], "teams");
    let carrier_call_id = legs[0]["call_id"].as_str().unwrap().to_string();
    assert!(!carrier_call_id.is_empty());
    assert!(!legs[1]["call_id"].as_str().unwrap().is_empty());
    for leg in legs {
        let local: SocketAddr = leg["media"]["local"].as_str().unwrap().parse().unwrap();
        assert_eq!(local.ip(), SBC_IP, "{call}");
        assert!(leg["media"]["remote"].is_string(), "{call}");
        assert!(leg["media"]["rx_packets"].is_u64(), "{call}");
    }
    assert_eq!(calls(admin, "?tenant=acme&trunk=pstn").len(), 1);
    assert_eq!(calls(admin, "?tenant=globex").len(), 0);
    assert_eq!(calls(admin, "?number=4930123450").len(), 1);
    assert_eq!(calls(admin, "?number=%2B4969111222").len(), 1);
    assert_eq!(calls(admin, "?number=999").len(), 0);
    let one = get(admin, &format!("/admin/calls/{id}"));
    assert_eq!(one.status, 200);
    assert_eq!(one.json["id"], id);
    let by_call_id = get(admin, &format!("/admin/calls/{carrier_call_id}"));
    assert_eq!(by_call_id.json["id"], id, "{}", by_call_id.json);
    let trunks = get(admin, "/admin/trunks");
    assert_eq!(trunks.status, 200);
    assert_eq!(trunks.json["trunks"][0]["name"], "pstn");
    assert_eq!(
        trunks.json["trunks"][0]["active_calls"], 1,
        "{}",
        trunks.json
    );
    assert!(trunks.json["trunks"][0]["options"].is_null(), "not pinged");

    // ctl against the same SBC: the call, the trunks, its SIP so far.
    let (ok, out, err) = ctl(admin, &token_file, &["calls"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("ID "), "{out}");
    assert!(
        out.contains(&format!("{id} ")) && out.contains("acme") && out.contains("confirmed"),
        "{out}"
    );
    assert!(out.contains("1 call(s)"), "{out}");
    let (ok, out, err) = ctl(admin, &token_file, &["trunks"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("pstn") && out.contains("not pinged") && out.contains("1/"),
        "{out}"
    );
    let (ok, out, err) = ctl(admin, &token_file, &["call", &id.to_string()]);
    assert!(ok, "{err}");
    assert!(out.contains(&carrier_call_id), "{out}");
    let (ok, out, err) = ctl(admin, &token_file, &["teams"]);
    assert!(ok, "{err}");
    assert!(out.contains("up"), "{out}");
    let (ok, out, err) = ctl(admin, &token_file, &["--json", "tenants"]);
    assert!(ok, "{err}");
    assert!(serde_json::from_str::<Value>(&out).is_ok(), "{out}");
    let (ok, _, err) = ctl(admin, Path::new("/nonexistent/token"), &["calls"]);
    assert!(!ok && err.contains("/nonexistent/token"), "{err}");
    let (ok, _, err) = ctl(admin, &token_file, &["hangup", "987654"]);
    assert!(!ok && err.contains("404"), "{err}");

    // DELETE ends it: BYE with the operator's Reason on both legs (both SIPps check it).
    assert_eq!(
        api(admin, "DELETE", "/admin/calls/987654", Some(TOKEN), None).status,
        404
    );
    let ended = api(
        admin,
        "DELETE",
        &format!("/admin/calls/{id}"),
        Some(TOKEN),
        None,
    );
    assert_eq!(ended.status, 200, "{}", ended.json);
    carrier.expect_success(LONG);
    teams_peer.expect_success(LONG);
    lab.wait_for("the call to end", LONG, |lab| {
        lab.metric("calls_active", &[]) == 0.0
    });
    assert!(calls(admin, "").is_empty());
    assert_eq!(get(admin, &format!("/admin/calls/{id}")).status, 404);
    // Its call detail record says the operator ended it.
    lab.wait_for("the call's detail record", LONG, |lab| {
        lab.metric("cdr_records_total", &[("sink", "file")]) >= 1.0
    });
    let cdr = std::fs::read_to_string(lab.path().join("cdr").join("calls.jsonl")).unwrap();
    let record: Value = serde_json::from_str(cdr.lines().next().unwrap()).unwrap();
    assert_eq!(record["ended_by"], "operator", "{record}");

    // Its SIP stays readable after the end, both legs, in order.
    let sip = get(admin, &format!("/admin/calls/{id}/sip"));
    assert_eq!(sip.status, 200, "{}", sip.json);
    let messages = sip.json["messages"].as_array().unwrap();
    let first = &messages[0];
    assert_eq!(
        (first["leg"].as_str(), first["direction"].as_str()),
        (Some("carrier"), Some("received"))
    );
    assert!(
        first["first_line"].as_str().unwrap().starts_with("INVITE "),
        "{first}"
    );
    for leg in ["carrier", "teams"] {
        assert!(
            messages.iter().any(|m| m["leg"] == leg
                && m["direction"] == "sent"
                && m["first_line"].as_str().unwrap().starts_with("BYE ")
                && m["text"].as_str().unwrap().contains("cause=16")),
            "no BYE with a Reason sent on the {leg} leg: {}",
            sip.json
        );
    }
    assert_eq!(sip.json["outcome"], "ended (operator)", "{}", sip.json);
    let by_call_id = get(admin, &format!("/admin/calls/{carrier_call_id}/sip"));
    assert_eq!(by_call_id.json["id"], id);
    assert_eq!(get(admin, "/admin/calls/987654/sip").status, 404);
    let (ok, out, err) = ctl(admin, &token_file, &["sip", &id.to_string()]);
    assert!(ok, "{err}");
    let ladder: Vec<&str> = out.lines().collect();
    assert!(
        ladder[0].contains("tenant acme") && ladder[0].contains(&carrier_call_id),
        "{out}"
    );
    assert!(
        ladder
            .iter()
            .any(|l| l.contains("────────────────▶|") && l.contains("INVITE ")),
        "{out}"
    );
    assert!(
        ladder
            .iter()
            .any(|l| l.contains("|────────────────▶") && l.contains("BYE ")),
        "{out}"
    );
    assert!(
        ladder
            .iter()
            .any(|l| l.contains("◀────────────────|") && l.contains("BYE ")),
        "{out}"
    );

    // A second call, ended with `ctl hangup`.
    let (mut teams_peer, mut carrier) = start_call(&lab, proxy_port);
    let call = wait_confirmed_call(admin);
    let (ok, out, err) = ctl(admin, &token_file, &["hangup", &call["id"].to_string()]);
    assert!(ok, "{err}");
    assert!(out.contains("ending"), "{out}");
    carrier.expect_success(LONG);
    teams_peer.expect_success(LONG);
    lab.wait_for("the call to end", LONG, |lab| {
        lab.metric("calls_active", &[]) == 0.0
    });

    // The log level.
    let set = api(
        admin,
        "PUT",
        "/admin/log-level",
        Some(TOKEN),
        Some(r#"{"level":"debug"}"#),
    );
    assert_eq!(set.status, 200, "{}", set.json);
    assert_eq!(set.json["level"], "debug");
    let refused = api(
        admin,
        "PUT",
        "/admin/log-level",
        Some(TOKEN),
        Some(r#"{"level":"info,,=["}"#),
    );
    assert_eq!(refused.status, 400, "{}", refused.json);
    let (ok, out, err) = ctl(admin, &token_file, &["log-level", "warn,teams_sbc=info"]);
    assert!(ok, "{err}");
    assert!(out.contains("warn,teams_sbc=info"), "{out}");

    // Reload: a good file adds a tenant and answers its digest; a broken one changes
    // nothing and says why, with file and line.
    let config_path = lab.path().join("sbc.toml");
    let original = std::fs::read_to_string(&config_path).unwrap();
    let with_initech = original.replacen(
        "[[tenant]]",
        &format!(
            "[[tenant]]\nname = \"initech\"\nfqdn = \"initech.{BASE}\"\nnumbers = [\"+4989*\"]\ncarrier_trunk = \"pstn\"\n\n[[tenant]]"
        ),
        1,
    );
    std::fs::write(&config_path, &with_initech).unwrap();
    let reloaded = api(admin, "POST", "/admin/reload", Some(TOKEN), None);
    assert_eq!(reloaded.status, 200, "{}", reloaded.json);
    let digest = reloaded.json["digest"].as_str().unwrap().to_string();
    assert_eq!(digest.len(), 12);
    assert_eq!(lab.metric("config_info", &[("digest", &digest)]), 1.0);
    let tenants = get(admin, "/admin/tenants");
    assert!(
        tenants.json["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "initech"),
        "{}",
        tenants.json
    );
    std::fs::write(
        &config_path,
        with_initech.replace("carrier_trunk = \"pstn\"", "carrier_trunk = \"nowhere\""),
    )
    .unwrap();
    let broken = api(admin, "POST", "/admin/reload", Some(TOKEN), None);
    assert_eq!(broken.status, 422, "{}", broken.json);
    let reason = broken.json["error"].as_str().unwrap();
    assert!(
        reason.contains("sbc.toml:") && reason.contains("carrier_trunk"),
        "{reason}"
    );
    assert_eq!(
        lab.metric("config_info", &[("digest", &digest)]),
        1.0,
        "the good one stays"
    );
    std::fs::write(&config_path, &with_initech).unwrap();
    let (ok, out, err) = ctl(admin, &token_file, &["reload"]);
    assert!(ok, "{err}");
    assert!(out.contains(&digest), "{out}");
    // ctl finds the listener and the token in the configuration file.
    let output = Command::new(env!("CARGO_BIN_EXE_teams-sbc"))
        .args(["ctl", "--config"])
        .arg(&config_path)
        .arg("tenants")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(out.contains("initech"), "{out}");

    // The drain with a call up: /readyz turns 503, the call goes on; once it ends the SBC
    // stops by itself.
    let (mut teams_peer, mut carrier) = start_call(&lab, proxy_port);
    let call = wait_confirmed_call(admin);
    assert_eq!(http_get(lab.ops_addr(), "/readyz").0, 200);
    let drain = api(admin, "POST", "/admin/drain", Some(TOKEN), None);
    assert_eq!(drain.status, 202, "{}", drain.json);
    assert_eq!(drain.json["started_now"], true);
    let (status, body) = http_get(lab.ops_addr(), "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    let (ok, out, err) = ctl(admin, &token_file, &["drain"]);
    assert!(ok, "{err}");
    assert!(out.contains("already draining"), "{out}");
    assert_eq!(calls(admin, "").len(), 1, "the call goes on");
    let (ok, _, err) = ctl(admin, &token_file, &["hangup", &call["id"].to_string()]);
    assert!(ok, "{err}");
    carrier.expect_success(LONG);
    teams_peer.expect_success(LONG);
    lab.wait_stopped(LONG)
        .expect("the drained SBC stops cleanly");
    assert!(
        TcpStream::connect(admin).is_err(),
        "the admin listener is closed"
    );
}

/// `teams-sbc run` as a process: it refuses an admin API off loopback without a token,
/// serves `ctl` (trunks, teams, reload, log level), and `ctl drain` ends it with status 0.
#[test]
fn teams_sbc_run_serves_ctl_until_a_drain_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    teams_sbc::devcerts::generate(&certs, BASE).unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let (udp, tcp, tls) = (
        free_udp_port(SBC_IP),
        free_tcp_port(SBC_IP),
        free_tcp_port(SBC_IP),
    );
    let (metrics, admin_port) = (free_tcp_port(SBC_IP), free_tcp_port(SBC_IP));
    let nobody = free_tcp_port(TEAMS_IP);
    let config = |admin: &str| {
        format!(
            r#"
[sbc]
base_fqdn = "{BASE}"
sip_signaling_port = {tls}

[tls]
cert_chain = "certs/sbc.pem"
private_key = "certs/sbc.key"
roots = "certs/ca.pem"

[[listen]]
transport = "udp"
address = "{SBC_IP}:{udp}"

[[listen]]
transport = "tcp"
address = "{SBC_IP}:{tcp}"

[[listen]]
transport = "tls"
address = "{SBC_IP}:{tls}"

[teams]
proxies = [{{ address = "{TEAMS_IP}:{nobody}", transport = "tcp" }}]
lab_plain_tcp = true
allowed_source_cidrs = ["{TEAMS_IP}/32"]

[[carrier_trunk]]
name = "pstn"
address = "{CARRIER_IP}:5060"
options_ping = false

[[tenant]]
name = "acme"
fqdn = "acme.{BASE}"
numbers = ["+4930123400-+4930123499"]
carrier_trunk = "pstn"

[media.carrier]
bind = "{SBC_IP}"
port_min = 46900
port_max = 46949

[media.teams]
bind = "{SBC_IP}"
port_min = 46950
port_max = 46999

[ops]
metrics_listen = "{SBC_IP}:{metrics}"

{admin}
"#
        )
    };
    let path = dir.path().join("sbc.toml");
    let binary = env!("CARGO_BIN_EXE_teams-sbc");

    std::fs::write(&path, config("[admin]\nlisten = \"0.0.0.0:9\"")).unwrap();
    let refused = Command::new(binary)
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let errors = String::from_utf8_lossy(&refused.stderr);
    assert!(
        errors.contains("admin.listen") && errors.contains("token_file"),
        "{errors}"
    );

    std::fs::write(
        &path,
        config(&format!(
            "[admin]\nlisten = \"{SBC_IP}:{admin_port}\"\ntoken_file = \"admin.token\""
        )),
    )
    .unwrap();
    let log = dir.path().join("sbc.log");
    let child = Command::new(binary)
        .args(["run", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut sbc = Peer::from_child("teams-sbc run", child, dir.path());
    let admin = SocketAddr::from((SBC_IP, admin_port));
    wait_listening_tcp(admin);
    let ctl = |args: &[&str]| {
        let output = Command::new(binary)
            .arg("ctl")
            .arg("--config")
            .arg(&path)
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "ctl {args:?}: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert!(ctl(&["trunks"]).contains("pstn"));
    assert!(ctl(&["teams"]).contains(&format!("{TEAMS_IP}:{nobody}")));
    assert!(ctl(&["tenants"]).contains("acme"));
    assert!(ctl(&["calls"]).contains("0 call(s)"));
    assert!(ctl(&["log-level", "debug"]).contains("debug"));
    assert!(ctl(&["reload"]).contains("reloaded"));
    assert_eq!(api(admin, "GET", "/admin/calls", None, None).status, 401);
    assert!(ctl(&["drain"]).contains("draining"));
    let status = sbc.wait(LONG).expect("the drained SBC exits");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{status}: {text}");
    assert!(text.contains("configuration reloaded"), "{text}");
    assert!(text.contains("drained: no call left"), "{text}");
    assert!(!text.contains(TOKEN), "the token is never logged");
}
