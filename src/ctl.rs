//! `teams-sbc ctl`: the admin API from a shell. Prints aligned tables (or the JSON with
//! `--json`) and, for `sip ID`, a text ladder of the call's SIP.
//!
//! Where to connect: `--url`, else the `[admin] listen` of `--config`, else
//! `http://127.0.0.1:9091`. The token: `--token-file`, else the `[admin] token_file` of
//! `--config`, else none.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// The whole exchange with the SBC, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of an answer read at most (a long call trace fits many times over).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Base URL of the admin API, e.g. http://127.0.0.1:9091.
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// File holding the bearer token.
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// The SBC's configuration file, for the admin listener and token file.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub action: CtlAction,
}

#[derive(Debug, Subcommand)]
pub enum CtlAction {
    /// Calls in progress.
    Calls {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        trunk: Option<String>,
        /// A calling or called number (or part of one).
        #[arg(long)]
        number: Option<String>,
    },
    /// One call: its legs, media addresses and live media counters.
    Call { id: String },
    /// End a call: BYE on both legs with a Reason (CANCEL during setup).
    Hangup { id: String },
    /// A call's SIP as a ladder (in progress or recently ended).
    Sip {
        id: String,
        /// Print every message in full below the ladder.
        #[arg(long)]
        full: bool,
    },
    /// Carrier trunks: OPTIONS state, round-trip time, calls against the limit.
    Trunks,
    /// Microsoft's SIP proxies.
    Teams,
    /// Tenants and their calls.
    Tenants,
    /// Reload the configuration file (as SIGHUP).
    Reload,
    /// Start the graceful drain (as SIGTERM); the SBC exits once no call is left.
    Drain,
    /// Change the log level (a tracing filter such as `debug`).
    LogLevel { level: String },
}

/// Run one `ctl` command; prints its result and returns the exit status.
pub fn main(args: CtlArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ctl: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("ctl: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &CtlArgs) -> Result<String, String> {
    let (url, token) = target(args)?;
    let (method, path, body) = request_of(&args.action);
    let answer = call(&url, token.as_deref(), method, &path, body).await?;
    if args.json {
        return serde_json::to_string_pretty(&answer)
            .map(|mut text| {
                text.push('\n');
                text
            })
            .map_err(|e| e.to_string());
    }
    Ok(render(&args.action, &answer))
}

/// Base URL and token from the arguments and the configuration file.
fn target(args: &CtlArgs) -> Result<(String, Option<String>), String> {
    let admin = match &args.config {
        Some(path) => Some(admin_settings(path)?),
        None => None,
    };
    let url = match (&args.url, &admin) {
        (Some(url), _) => url.trim_end_matches('/').to_string(),
        (None, Some(admin)) => format!("http://{}", connectable(admin.listen)),
        (None, None) => format!("http://{}", crate::config::default_admin_listen()),
    };
    let token_file = args
        .token_file
        .clone()
        .or_else(|| admin.and_then(|a| a.token_file));
    let token = match token_file {
        Some(path) => Some(crate::config::read_admin_token(&path)?),
        None => None,
    };
    Ok((url, token))
}

/// The `[admin]` table of the configuration file. Only parsed and validated, not checked
/// against the file system: `ctl` may run where the certificates are not readable.
fn admin_settings(path: &std::path::Path) -> Result<crate::config::AdminSection, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let base_dir = path.parent().unwrap_or_else(|| std::path::Path::new("."));
    crate::config::parse_str(&text, &path.display().to_string(), base_dir, false)
        .map_err(|e| e.to_string())?
        .config
        .admin
        .ok_or_else(|| format!("{}: no [admin] table", path.display()))
}

/// A listen address one can connect to (a wildcard listener answers on loopback).
fn connectable(listen: std::net::SocketAddr) -> std::net::SocketAddr {
    match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            (std::net::Ipv4Addr::LOCALHOST, listen.port()).into()
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            (std::net::Ipv6Addr::LOCALHOST, listen.port()).into()
        }
        _ => listen,
    }
}

/// Characters kept as they are in a path segment or query value; the rest is %-encoded
/// (`+` too: a query decodes it as a space).
fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~@".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

fn request_of(action: &CtlAction) -> (hyper::Method, String, Option<Value>) {
    use hyper::Method;
    match action {
        CtlAction::Calls {
            tenant,
            trunk,
            number,
        } => {
            let query: Vec<String> = [("tenant", tenant), ("trunk", trunk), ("number", number)]
                .into_iter()
                .filter_map(|(name, value)| Some(format!("{name}={}", encode(value.as_ref()?))))
                .collect();
            let path = if query.is_empty() {
                "/admin/calls".to_string()
            } else {
                format!("/admin/calls?{}", query.join("&"))
            };
            (Method::GET, path, None)
        }
        CtlAction::Call { id } => (Method::GET, format!("/admin/calls/{}", encode(id)), None),
        CtlAction::Hangup { id } => (Method::DELETE, format!("/admin/calls/{}", encode(id)), None),
        CtlAction::Sip { id, .. } => (
            Method::GET,
            format!("/admin/calls/{}/sip", encode(id)),
            None,
        ),
        CtlAction::Trunks => (Method::GET, "/admin/trunks".into(), None),
        CtlAction::Teams => (Method::GET, "/admin/teams".into(), None),
        CtlAction::Tenants => (Method::GET, "/admin/tenants".into(), None),
        CtlAction::Reload => (Method::POST, "/admin/reload".into(), None),
        CtlAction::Drain => (Method::POST, "/admin/drain".into(), None),
        CtlAction::LogLevel { level } => (
            Method::PUT,
            "/admin/log-level".into(),
            Some(serde_json::json!({ "level": level })),
        ),
    }
}

/// One request; the JSON answer of a 2xx, else the API's error text.
async fn call(
    base: &str,
    token: Option<&str>,
    method: hyper::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let uri: hyper::Uri = format!("{base}{path}")
        .parse()
        .map_err(|e| format!("URL {base}{path}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "{base}: only http:// URLs (the admin API listens on plain HTTP)"
        ));
    }
    let mut request = hyper::Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Some(value) => {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
            Bytes::from(value.to_string())
        }
        None => Bytes::new(),
    };
    let request = request
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("{base}: {e}"))?;
        let status = response.status();
        let limited = http_body_util::Limited::new(response.into_body(), MAX_ANSWER);
        let bytes = limited
            .collect()
            .await
            .map_err(|e| format!("{base}: reading the answer: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{base}: no answer within {REQUEST_TIMEOUT:?}"))??;
    let value: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).trim().to_string()));
    if status.is_success() {
        Ok(value)
    } else {
        let message = value
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        Err(format!("{status}: {message}"))
    }
}

/// A JSON value as table text: strings bare, null as `-`.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.1}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Rows under headers, each column as wide as its widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ");
            }
        }
        text.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn list<'a>(answer: &'a Value, key: &str) -> &'a [Value] {
    answer
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn render(action: &CtlAction, answer: &Value) -> String {
    match action {
        CtlAction::Calls { .. } => calls_table(list(answer, "calls")),
        CtlAction::Call { .. } => call_detail(answer),
        CtlAction::Sip { full, .. } => ladder(answer, *full),
        CtlAction::Trunks => trunks_table(list(answer, "trunks")),
        CtlAction::Teams => proxies_table(list(answer, "proxies")),
        CtlAction::Tenants => tenants_table(list(answer, "tenants")),
        CtlAction::Hangup { .. } => format!("call {} ending\n", cell(&answer["id"])),
        CtlAction::Reload => format!("reloaded: configuration {}\n", cell(&answer["digest"])),
        CtlAction::Drain => {
            if answer["started_now"].as_bool() == Some(false) {
                "already draining\n".to_string()
            } else {
                "draining: new calls are refused; the SBC exits once no call is left\n".to_string()
            }
        }
        CtlAction::LogLevel { .. } => format!("log level: {}\n", cell(&answer["level"])),
    }
}

fn seconds(value: &Value) -> String {
    match value.as_f64() {
        Some(s) => {
            let s = s as u64;
            format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
        }
        None => "-".to_string(),
    }
}

fn calls_table(calls: &[Value]) -> String {
    let rows: Vec<Vec<String>> = calls
        .iter()
        .map(|c| {
            vec![
                cell(&c["id"]),
                cell(&c["tenant"]),
                cell(&c["trunk"]),
                cell(&c["direction"]),
                cell(&c["state"]),
                cell(&c["caller"]),
                cell(&c["callee"]),
                seconds(&c["duration_seconds"]),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ID",
            "TENANT",
            "TRUNK",
            "DIRECTION",
            "STATE",
            "CALLER",
            "CALLEE",
            "DURATION",
        ],
        &rows,
    );
    let _ = writeln!(out, "{} call(s)", rows.len());
    out
}

fn call_detail(call: &Value) -> String {
    let mut out = String::new();
    for (label, key) in [
        ("id", "id"),
        ("tenant", "tenant"),
        ("trunk", "trunk"),
        ("direction", "direction"),
        ("state", "state"),
        ("caller", "caller"),
        ("callee", "callee"),
    ] {
        let _ = writeln!(out, "{label:<10} {}", cell(&call[key]));
    }
    let _ = writeln!(
        out,
        "{:<10} {}",
        "duration",
        seconds(&call["duration_seconds"])
    );
    let _ = writeln!(out, "{:<10} {}", "talk", seconds(&call["talk_seconds"]));
    out.push('\n');
    let rows: Vec<Vec<String>> = list(call, "legs")
        .iter()
        .map(|leg| {
            let media = &leg["media"];
            vec![
                cell(&leg["leg"]),
                cell(&leg["call_id"]),
                cell(&media["local"]),
                cell(&media["remote"]),
                format!(
                    "{}/{}",
                    cell(&media["rx_packets"]),
                    cell(&media["tx_packets"])
                ),
                cell(&media["lost"]),
                cell(&media["jitter"]),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "LEG",
            "CALL-ID",
            "LOCAL RTP",
            "REMOTE RTP",
            "RX/TX PKTS",
            "LOST",
            "JITTER",
        ],
        &rows,
    ));
    out
}

fn options_cells(options: &Value) -> Vec<String> {
    if options.is_null() {
        return vec!["not pinged".into(), "-".into(), "-".into()];
    }
    let rtt = match options["rtt_ms"].as_f64() {
        Some(ms) => format!("{ms:.1} ms"),
        None => "-".into(),
    };
    vec![cell(&options["state"]), cell(&options["last_status"]), rtt]
}

fn trunks_table(trunks: &[Value]) -> String {
    let rows: Vec<Vec<String>> = trunks
        .iter()
        .map(|t| {
            let mut row = vec![
                cell(&t["name"]),
                format!("{} ({})", cell(&t["address"]), cell(&t["transport"])),
            ];
            row.extend(options_cells(&t["options"]));
            row.push(format!(
                "{}/{}",
                cell(&t["active_calls"]),
                match t["max_concurrent_calls"] {
                    Value::Null => "∞".to_string(),
                    ref limit => cell(limit),
                }
            ));
            row
        })
        .collect();
    table(
        &["TRUNK", "ADDRESS", "OPTIONS", "LAST", "RTT", "CALLS/LIMIT"],
        &rows,
    )
}

fn proxies_table(proxies: &[Value]) -> String {
    let rows: Vec<Vec<String>> = proxies
        .iter()
        .map(|p| {
            let mut row = vec![cell(&p["name"]), cell(&p["transport"])];
            row.extend(options_cells(p));
            row.push(cell(&p["consecutive_failures"]));
            row
        })
        .collect();
    table(
        &["PROXY", "TRANSPORT", "STATE", "LAST", "RTT", "FAILURES"],
        &rows,
    )
}

fn tenants_table(tenants: &[Value]) -> String {
    let rows: Vec<Vec<String>> = tenants
        .iter()
        .map(|t| {
            vec![
                cell(&t["name"]),
                cell(&t["fqdn"]),
                cell(&t["carrier_trunk"]),
                format!(
                    "{}/{}",
                    cell(&t["active_calls"]),
                    match t["max_concurrent_calls"] {
                        Value::Null => "∞".to_string(),
                        ref limit => cell(limit),
                    }
                ),
                list(t, "numbers")
                    .iter()
                    .map(cell)
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    table(
        &["TENANT", "FQDN", "TRUNK", "CALLS/LIMIT", "NUMBERS"],
        &rows,
    )
}

/// The call's messages as a ladder: time since the call started, who sent to whom, and
/// the first line of each message.
fn ladder(trace: &Value, full: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "call {}  tenant {}  trunk {}  {}  Call-IDs {}",
        cell(&trace["id"]),
        cell(&trace["tenant"]),
        cell(&trace["trunk"]),
        cell(&trace["direction"]),
        list(trace, "call_ids")
            .iter()
            .map(cell)
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(dropped) = trace["dropped"].as_u64().filter(|d| *d > 0) {
        let _ = writeln!(out, "({dropped} older message(s) not kept)");
    }
    let _ = writeln!(
        out,
        "{:>9}  carrier             SBC             teams",
        "time"
    );
    let messages = list(trace, "messages");
    for message in messages {
        let offset = message["offset_ms"].as_u64().unwrap_or(0);
        let time = format!("+{}.{:03}", offset / 1000, offset % 1000);
        let arrow = match (message["leg"].as_str(), message["direction"].as_str()) {
            (Some("carrier"), Some("received")) => "   ────────────────▶|                 ",
            (Some("carrier"), _) => "   ◀────────────────|                 ",
            (_, Some("received")) => "                    |◀────────────────",
            _ => "                    |────────────────▶",
        };
        let _ = writeln!(out, "{time:>9}  {arrow}  {}", cell(&message["first_line"]));
    }
    if let Some(ended) = trace["outcome"].as_str() {
        let _ = writeln!(out, "ended: {ended}");
    }
    if full {
        for message in messages {
            let _ = writeln!(
                out,
                "\n--- +{} ms {} {} {} ---\n{}",
                cell(&message["offset_ms"]),
                cell(&message["direction"]),
                cell(&message["leg"]),
                cell(&message["peer"]),
                cell(&message["text"]).trim_end()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let text = table(
            &["ID", "NAME"],
            &[
                vec!["1".into(), "acme".into()],
                vec!["1234".into(), "b".into()],
            ],
        );
        assert_eq!(text, "ID    NAME\n1     acme\n1234  b\n");
    }

    #[test]
    fn the_ladder_shows_who_sent_what_to_whom() {
        let trace = serde_json::json!({
            "id": 7, "tenant": "acme", "trunk": "pstn", "direction": "inbound",
            "call_ids": ["a", "b"], "dropped": 0, "outcome": null,
            "messages": [
                {"offset_ms": 0, "leg": "carrier", "direction": "received", "first_line": "INVITE sip:1@x SIP/2.0"},
                {"offset_ms": 12, "leg": "teams", "direction": "sent", "first_line": "INVITE sip:1@y SIP/2.0"},
                {"offset_ms": 1250, "leg": "teams", "direction": "received", "first_line": "SIP/2.0 200 OK"},
                {"offset_ms": 1251, "leg": "carrier", "direction": "sent", "first_line": "SIP/2.0 200 OK"}
            ]
        });
        let text = ladder(&trace, false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[2].starts_with("   +0.000     ────"), "{text}");
        assert!(
            lines[2].ends_with("▶|                   INVITE sip:1@x SIP/2.0"),
            "{text}"
        );
        assert!(
            lines[3].contains("|────────────────▶  INVITE sip:1@y"),
            "{text}"
        );
        assert!(lines[4].starts_with("   +1.250"), "{text}");
        assert!(lines[4].contains("|◀────"), "{text}");
        assert!(lines[5].contains("◀────────────────|"), "{text}");
    }

    #[test]
    fn path_segments_and_query_values_are_encoded() {
        assert_eq!(encode("abc-1.2_3~"), "abc-1.2_3~");
        assert_eq!(encode("a/b c?&"), "a%2Fb%20c%3F%26");
        assert_eq!(encode("+4930@host"), "%2B4930@host");
    }
}
