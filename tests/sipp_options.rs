//! End to end with the real binary and real peers: SIPp (package `sip-tester`) sends OPTIONS
//! over UDP and TCP and checks our 200 (FQDN Contact, X-MS-SBC); malformed input gets 400 or
//! nothing and the SBC keeps answering; our OPTIONS pinger reaches a TLS stand-in for
//! sip.pstnhub.microsoft.com that demands a client certificate, and `options_peer_up` in
//! /metrics follows the stand-in going away and coming back.
//!
//! Every wait is a bounded poll; nothing asserts a duration.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_teams-sbc");
const BASE_FQDN: &str = "sbc.example.test";

fn sipp_binary() -> &'static str {
    let found = Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "sipp not found: install it with `apt-get install -y sip-tester`"
    );
    "sipp"
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Ports {
    udp: u16,
    tcp: u16,
    tls: u16,
    metrics: u16,
}

impl Ports {
    fn pick() -> Ports {
        Ports {
            udp: free_udp_port(),
            tcp: free_tcp_port(),
            tls: free_tcp_port(),
            metrics: free_tcp_port(),
        }
    }
}

/// The SBC binary as a child process, killed when dropped.
struct Sbc {
    child: Child,
    metrics: u16,
    log: PathBuf,
}

impl Drop for Sbc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sbc {
    fn start(dir: &Path, ports: &Ports, teams_proxies: &str) -> Sbc {
        let certs = dir.join("certs");
        if !certs.join("sbc.pem").exists() {
            let out = Command::new(BIN)
                .args(["dev-certs", "--out"])
                .arg(&certs)
                .args(["--base-fqdn", BASE_FQDN])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let config = format!(
            r#"
[sbc]
base_fqdn = "{BASE_FQDN}"
sip_signaling_port = {tls}
vendor = "TestVendor"
model = "TestModel"

[sip]
t1_ms = 100

[tls]
cert_chain = "certs/sbc.pem"
private_key = "certs/sbc.key"
roots = "certs/ca.pem"

[[listen]]
transport = "udp"
address = "127.0.0.1:{udp}"

[[listen]]
transport = "tcp"
address = "127.0.0.1:{tcp}"

[[listen]]
transport = "tls"
address = "127.0.0.1:{tls}"

[teams]
proxies = [{teams_proxies}]
options_interval_seconds = 1
allowed_source_cidrs = ["127.0.0.1/32"]
lab_plain_tcp = {lab_plain_tcp}

[[carrier_trunk]]
name = "pstn"
address = "127.0.0.1:9"
options_ping = false

[[tenant]]
name = "acme"
fqdn = "acme.{BASE_FQDN}"
numbers = ["+4930123400-+4930123499"]
carrier_trunk = "pstn"

[media.carrier]
bind = "127.0.0.1"
port_min = 20000
port_max = 20099

[media.teams]
bind = "127.0.0.1"
port_min = 30000
port_max = 30099

[ops]
metrics_listen = "127.0.0.1:{metrics}"
log_format = "json"
log_level = "info,teams_sbc=debug"
"#,
            // A SIPp stand-in for Microsoft speaks plain TCP: a lab setting.
            lab_plain_tcp = teams_proxies.contains(r#"transport = "tcp""#),
            udp = ports.udp,
            tcp = ports.tcp,
            tls = ports.tls,
            metrics = ports.metrics,
        );
        let path = dir.join("sbc.toml");
        std::fs::write(&path, config).unwrap();
        let log = dir.join("sbc.log");
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&path)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut sbc = Sbc {
            child,
            metrics: ports.metrics,
            log,
        };
        sbc.wait_until("/healthz answers 200", |s| {
            http_get(s.metrics, "/healthz").is_some_and(|(status, _)| status == 200)
        });
        sbc
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Poll `check` every 100 ms for at most 30 s; panic with the SBC log otherwise.
    fn wait_until(&mut self, what: &str, mut check: impl FnMut(&Sbc) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "SBC exited ({status}) waiting for {what}:\n{}",
                    self.log_text()
                );
            }
            if check(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("gave up waiting for {what}; SBC log:\n{}", self.log_text());
    }

    fn metrics_text(&self) -> String {
        http_get(self.metrics, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// Run one SIPp client scenario against the SBC; true when every call succeeded.
fn run_sipp_uac(dir: &Path, scenario: &str, transport: &str, target: SocketAddr) -> (bool, String) {
    let scenario_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(scenario);
    let local_port = if transport == "u1" {
        free_udp_port()
    } else {
        free_tcp_port()
    };
    let out = Command::new(sipp_binary())
        .arg(target.to_string())
        .arg("-sf")
        .arg(&scenario_path)
        .args(["-t", transport, "-i", "127.0.0.1", "-p"])
        .arg(local_port.to_string())
        .args([
            "-m",
            "1",
            "-timeout",
            "20s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    let errors = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with("_errors.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    (out.status.success(), errors)
}

fn udp_exchange(target: u16, payload: &[u8]) -> Option<String> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket.send_to(payload, ("127.0.0.1", target)).unwrap();
    let mut buf = [0u8; 65536];
    socket
        .recv(&mut buf)
        .ok()
        .map(|n| String::from_utf8_lossy(&buf[..n]).to_string())
}

fn bad_cseq_options(transport: &str, local: SocketAddr) -> String {
    format!(
        "OPTIONS sip:{BASE_FQDN} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch=z9hG4bK-bad-{}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@127.0.0.1>;tag=p1\r\n\
         To: <sip:{BASE_FQDN}>\r\n\
         Call-ID: bad-cseq-{transport}\r\n\
         CSeq: notanumber OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        local.port()
    )
}

#[test]
fn row34_sipp_options_over_udp_and_tcp_survive_malformed_input() {
    sipp_binary();
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::pick();
    // Nobody listens on this Teams proxy; these tests are about answering.
    let unused = free_tcp_port();
    let mut sbc = Sbc::start(
        dir.path(),
        &ports,
        &format!(r#"{{ address = "127.0.0.1:{unused}", tls_name = "sip.pstnhub.microsoft.com" }}"#),
    );
    let udp: SocketAddr = ([127, 0, 0, 1], ports.udp).into();
    let tcp: SocketAddr = ([127, 0, 0, 1], ports.tcp).into();

    for (transport, target) in [("u1", udp), ("t1", tcp)] {
        let (ok, errors) = run_sipp_uac(dir.path(), "options_uac.xml", transport, target);
        assert!(
            ok,
            "OPTIONS over {transport}: 200 with FQDN Contact and no X-MS-SBC expected\n{errors}"
        );
        let (ok, errors) = run_sipp_uac(dir.path(), "invite_refused_404.xml", transport, target);
        assert!(
            ok,
            "INVITE over {transport}: 404 (unknown number) without product headers expected\n{errors}"
        );
    }

    // Garbage over UDP: no parseable request, so nothing comes back (or a 400).
    let reply = udp_exchange(ports.udp, b"\x00\x01garbage that is not SIP\r\n\r\n");
    assert!(
        reply
            .as_deref()
            .is_none_or(|r| r.starts_with("SIP/2.0 400")),
        "garbage answered with {reply:?}"
    );
    // A request with a broken CSeq gets a 400 with a reason.
    let socket_addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let reply = udp_exchange(ports.udp, bad_cseq_options("UDP", socket_addr).as_bytes())
        .expect("a 400 for a malformed request");
    assert!(reply.starts_with("SIP/2.0 400 "), "{reply}");

    // The same over TCP; the connection may close afterwards, the listener must not.
    let mut stream = TcpStream::connect(tcp).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let local = stream.local_addr().unwrap();
    stream
        .write_all(bad_cseq_options("TCP", local).as_bytes())
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).unwrap_or(0);
    let reply = String::from_utf8_lossy(&buf[..n]);
    assert!(reply.starts_with("SIP/2.0 400 "), "{reply}");
    let mut garbage = TcpStream::connect(tcp).unwrap();
    let _ = garbage.write_all(b"\x16\x03\x01 definitely not SIP\r\n\r\n");
    drop(garbage);

    // Row 11: a request from a source that is neither Microsoft nor a trunk is dropped
    // before it is even parsed.
    let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
    stranger
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let request = bad_cseq_options("UDP", stranger.local_addr().unwrap())
        .replace("CSeq: notanumber", "CSeq: 1");
    stranger
        .send_to(request.as_bytes(), ("127.0.0.1", ports.udp))
        .unwrap();
    let mut buf = [0u8; 4096];
    assert!(stranger.recv(&mut buf).is_err(), "a stranger got an answer");
    sbc.wait_until("the dropped request to be counted", |s| {
        s.metrics_text().lines().any(|line| {
            line.starts_with("sip_unknown_source_dropped_total{")
                && line.contains(r#"stage="datagram""#)
                && line.contains(r#"transport="udp""#)
                && line.ends_with(" 1")
        })
    });

    // Still answering afterwards, on both transports.
    for (transport, target) in [("u1", udp), ("t1", tcp)] {
        let (ok, errors) = run_sipp_uac(dir.path(), "options_uac.xml", transport, target);
        assert!(
            ok,
            "OPTIONS over {transport} after malformed input\n{errors}"
        );
    }
}

#[test]
fn row33_pings_teams_proxy_over_tcp_checked_by_sipp() {
    let sipp = sipp_binary();
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::pick();
    let sipp_port = free_tcp_port();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/options_uas.xml");
    let mut uas = Command::new(sipp)
        .arg("-sf")
        .arg(&scenario)
        .args(["-t", "t1", "-i", "127.0.0.1", "-p"])
        .arg(sipp_port.to_string())
        .args([
            "-m",
            "1",
            "-timeout",
            "60s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until SIPp listens, so the first ping is not refused.
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", sipp_port)).is_err() {
        assert!(Instant::now() < deadline, "SIPp did not start listening");
        std::thread::sleep(Duration::from_millis(100));
    }
    let peer = format!("127.0.0.1:{sipp_port}");
    let mut sbc = Sbc::start(
        dir.path(),
        &ports,
        &format!(r#"{{ address = "{peer}", transport = "tcp" }}"#),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = uas.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = uas.kill();
            panic!("SIPp got no OPTIONS; SBC log:\n{}", sbc.log_text());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let errors: String = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with("_errors.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(status.success(), "SIPp rejected our OPTIONS: {errors}");
    let up_line = format!("options_peer_up{{peer=\"{peer}\"}} 1");
    sbc.wait_until("the SIPp proxy to be up in /metrics", |s| {
        s.metrics_text().contains(&up_line)
    });
}

/// What the TLS stand-in saw.
#[derive(Default)]
struct StandInLog {
    requests: Vec<String>,
}

/// A TLS stand-in for sip.pstnhub.microsoft.com (dev "teams" certificate) that demands a
/// client certificate signed by the dev CA and answers every OPTIONS with 200.
fn stand_in_config(certs: &Path) -> Arc<rustls::ServerConfig> {
    let pem = |name: &str| std::fs::read(certs.join(name)).unwrap();
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&pem("teams.pem"))
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(&pem("teams.key")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&pem("ca.pem")) {
        roots.add(ca.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

/// Serve on `listener` until the task is aborted (which drops every connection).
async fn stand_in(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    log: Arc<Mutex<StandInLog>>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let log = log.clone();
        connections.spawn(async move {
            // A client without a valid certificate fails here (row 4).
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let Ok(n) = tls.read(&mut chunk).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buffer.extend_from_slice(&chunk[..n]);
                while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    let message = String::from_utf8_lossy(&buffer[..end + 4]).to_string();
                    buffer.drain(..end + 4);
                    if !message.starts_with("OPTIONS ") {
                        continue; // CRLF keep-alives and the like
                    }
                    let response = answer_200(&message);
                    log.lock().unwrap().requests.push(message);
                    if tls.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}

fn answer_200(request: &str) -> String {
    let mut response = String::from("SIP/2.0 200 OK\r\n");
    for line in request.split("\r\n") {
        let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
        if ["via", "from", "call-id", "cseq"].contains(&name.as_str()) {
            response.push_str(line);
            response.push_str("\r\n");
        } else if name == "to" {
            response.push_str(line);
            response.push_str(";tag=standin\r\n");
        }
    }
    response.push_str("Content-Length: 0\r\n\r\n");
    response
}

#[test]
fn row4_row33_pinger_follows_tls_stand_in_down_and_up() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::pick();
    let proxy_port = free_tcp_port();
    let peer = format!("127.0.0.1:{proxy_port}");
    // The stand-in needs the certificates before the SBC starts (Sbc::start keeps them).
    let certs = dir.path().join("certs");
    let out = Command::new(BIN)
        .args(["dev-certs", "--out"])
        .arg(&certs)
        .args(["--base-fqdn", BASE_FQDN])
        .output()
        .unwrap();
    assert!(out.status.success());
    let config = stand_in_config(&certs);
    let log = Arc::new(Mutex::new(StandInLog::default()));
    let start_stand_in = |config: Arc<rustls::ServerConfig>, log: Arc<Mutex<StandInLog>>| {
        let listener = runtime.block_on(async {
            // The port was free a moment ago; retry briefly in case the old socket lingers.
            let deadline = Instant::now() + Duration::from_secs(10);
            let listener = loop {
                match tokio::net::TcpListener::bind(("127.0.0.1", proxy_port)).await {
                    Ok(l) => break l,
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("stand-in cannot bind {proxy_port}: {e}"),
                }
            };
            listener
        });
        runtime.spawn(stand_in(listener, config, log))
    };
    let server = start_stand_in(config.clone(), log.clone());

    let mut sbc = Sbc::start(
        dir.path(),
        &ports,
        &format!(r#"{{ address = "{peer}", tls_name = "sip.pstnhub.microsoft.com" }}"#),
    );
    let up = format!("options_peer_up{{peer=\"{peer}\"}} 1");
    let down = format!("options_peer_up{{peer=\"{peer}\"}} 0");
    let ready = |s: &Sbc| http_get(s.metrics, "/readyz").map(|(status, _)| status);

    sbc.wait_until("peer up after pings over mutual TLS", |s| {
        s.metrics_text().contains(&up)
    });
    assert_eq!(ready(&sbc), Some(200), "/readyz with a Teams proxy up");
    {
        let seen = log.lock().unwrap();
        let first = seen
            .requests
            .first()
            .expect("the stand-in logged an OPTIONS");
        assert!(first.starts_with("OPTIONS sip:"), "request line: {first}");
        let contact = format!("Contact: <sip:{BASE_FQDN}:{};transport=tls>", ports.tls);
        assert!(
            first.contains(&contact),
            "row 33 Contact missing in:\n{first}"
        );
        assert!(
            first.contains("X-MS-SBC: TestVendor/TestModel/"),
            "row 59:\n{first}"
        );
    }

    server.abort();
    sbc.wait_until("peer down after the stand-in stopped", |s| {
        s.metrics_text().contains(&down)
    });
    assert_eq!(ready(&sbc), Some(503), "/readyz with no Teams proxy up");

    let count_before = log.lock().unwrap().requests.len();
    let server = start_stand_in(config, log.clone());
    sbc.wait_until("peer up again after the stand-in restarted", |s| {
        s.metrics_text().contains(&up)
    });
    assert!(log.lock().unwrap().requests.len() > count_before);
    assert_eq!(ready(&sbc), Some(200));
    server.abort();
}

#[test]
fn stand_in_refuses_a_client_without_certificate() {
    // Guards the test above: the stand-in really demands a client certificate, so "up" there
    // proves our pinger presented one (row 4).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let out = Command::new(BIN)
        .args(["dev-certs", "--out"])
        .arg(&certs)
        .output()
        .unwrap();
    assert!(out.status.success());
    let log = Arc::new(Mutex::new(StandInLog::default()));
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(stand_in(listener, stand_in_config(&certs), log.clone()));
        let mut roots = rustls::RootCertStore::empty();
        let ca = std::fs::read(certs.join("ca.pem")).unwrap();
        for c in CertificateDer::pem_slice_iter(&ca) {
            roots.add(c.unwrap()).unwrap();
        }
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("sip.pstnhub.microsoft.com").unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
            let mut tls = connector.connect(name, tcp).await?;
            tls.write_all(b"OPTIONS sip:x SIP/2.0\r\n\r\n").await?;
            let mut buf = [0u8; 64];
            tls.read(&mut buf).await
        })
        .await
        .expect("stand-in decided within 10 s");
        assert!(
            !matches!(outcome, Ok(n) if n > 0),
            "a client without certificate got an answer"
        );
        server.abort();
    });
    assert!(log.lock().unwrap().requests.is_empty());
}

/// TLS handshake with the SBC's listener, trusting only `certs/ca.pem` and presenting
/// `certs/sbc.pem` as client certificate. Ok when the server's chain is signed by that CA.
fn handshake_with_current_ca(
    runtime: &tokio::runtime::Runtime,
    certs: &Path,
    port: u16,
) -> Result<(), String> {
    let pem = |name: &str| std::fs::read(certs.join(name)).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&pem("ca.pem")) {
        roots.add(ca.unwrap()).unwrap();
    }
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&pem("sbc.pem"))
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(&pem("sbc.key")).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::try_from(BASE_FQDN).unwrap();
        match tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("handshake timed out".to_string()),
        }
    })
}

fn signal(sbc: &Sbc, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(sbc.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} failed");
}

#[test]
fn row6_sighup_reloads_certificate_and_sigterm_exits_cleanly() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::pick();
    let unused = free_tcp_port();
    let mut sbc = Sbc::start(
        dir.path(),
        &ports,
        &format!(r#"{{ address = "127.0.0.1:{unused}", tls_name = "sip.pstnhub.microsoft.com" }}"#),
    );
    let certs = dir.path().join("certs");
    handshake_with_current_ca(&runtime, &certs, ports.tls).expect("handshake with the first CA");

    // A renewed certificate from a new CA: refused until the SBC reloads.
    let out = Command::new(BIN)
        .args(["dev-certs", "--out"])
        .arg(&certs)
        .args(["--base-fqdn", BASE_FQDN])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        handshake_with_current_ca(&runtime, &certs, ports.tls).is_err(),
        "the old certificate must not verify against the new CA"
    );
    signal(&sbc, "HUP");
    // SIGHUP reloads the whole configuration; the new certificate is part of it.
    sbc.wait_until("the reload to be logged", |s| {
        let log = s.log_text();
        log.contains("\"message\":\"configuration reloaded\"")
            && log.contains("\"certificate_changed\":true")
    });
    handshake_with_current_ca(&runtime, &certs, ports.tls).expect("handshake after SIGHUP");

    signal(&sbc, "TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = sbc.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "no exit after SIGTERM:\n{}",
            sbc.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        sbc.log_text()
    );
    let log = sbc.log_text();
    assert!(log.contains("shutting down"));
    // log_format = "json": one JSON object per line.
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.starts_with('{') && line.ends_with('}') && line.contains("\"level\":"),
            "not a JSON log line: {line}"
        );
    }
}

fn request(method: &str, to_tag: Option<&str>, local: SocketAddr, call: &str) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} sip:{BASE_FQDN} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-{call}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@127.0.0.1>;tag=p1\r\n\
         To: <sip:{BASE_FQDN}>{to_tag}\r\n\
         Call-ID: {call}\r\n\
         CSeq: 7 {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn requests_other_than_options_get_clear_final_answers() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::pick();
    let unused = free_tcp_port();
    let _sbc = Sbc::start(
        dir.path(),
        &ports,
        &format!(r#"{{ address = "127.0.0.1:{unused}", tls_name = "sip.pstnhub.microsoft.com" }}"#),
    );
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let local = socket.local_addr().unwrap();
    for (method, to_tag, expected) in [
        ("CANCEL", None, "481 "),
        ("BYE", Some("x1"), "481 "),
        ("INFO", Some("x1"), "481 "),
        ("SUBSCRIBE", None, "405 "),
        ("FROBNICATE", None, "501 "),
    ] {
        let call = format!("clear-{}", method.to_ascii_lowercase());
        socket
            .send_to(
                request(method, to_tag, local, &call).as_bytes(),
                ("127.0.0.1", ports.udp),
            )
            .unwrap();
        let mut buf = [0u8; 8192];
        let n = socket.recv(&mut buf).expect("an answer within 5 s");
        let reply = String::from_utf8_lossy(&buf[..n]);
        assert!(
            reply.starts_with(&format!("SIP/2.0 {expected}")),
            "{method}: {reply}"
        );
        // The sender is the carrier trunk: no product or version (X-MS-SBC is for Microsoft).
        assert!(!reply.contains("X-MS-SBC"), "{reply}");
        assert!(!reply.contains("Server:"), "{reply}");
        assert!(reply.contains(&format!("Call-ID: {call}")), "{reply}");
        if expected != "481 " {
            assert!(reply.contains("Allow: "), "{method} without Allow: {reply}");
        }
    }
}
