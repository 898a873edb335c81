//! Hostile input against the whole SBC started in-process (`teams_sbc::app::start`): malformed
//! and over-size SIP over UDP, TCP and TLS, floods, scanner sweeps, slow-loris, half-open TLS,
//! connection floods from one IP. After each class: the SBC still answers a normal OPTIONS with
//! 200 and X-MS-SBC, malformed-but-answerable input got `400 <reason>` (or the RFC status),
//! unanswerable input got nothing, `sip_parse_errors_total{reason}` went up, floods were
//! limited, memory stayed bounded and warnings were rate-limited.
//!
//! Each test uses its own client address in 127.0.0.0/8 so the captured warn lines and the
//! per-IP limits of parallel tests do not mix. Sources in 127.0.0.0/9 are the configured
//! Microsoft range; 127.200.0.0/16 is a stranger (scanners). Every loop and wait is bounded;
//! nothing asserts a duration.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use teams_sbc::app::Running;

const BASE: &str = "sbc.example.test";
const SBC_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const WAIT: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------------
// Captured warn lines (one global subscriber for the whole test binary).

static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_log_capture() {
    let buffer = LOG.get_or_init(|| Arc::new(Mutex::new(Vec::new()))).clone();
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || Capture(buffer.clone()))
        .try_init();
}

/// Warn lines that mention `needle` (e.g. a client IP).
fn warn_lines_with(needle: &str) -> usize {
    let Some(buffer) = LOG.get() else { return 0 };
    let text = String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned();
    text.lines()
        .filter(|l| l.contains("WARN") && l.contains(needle))
        .count()
}

// ---------------------------------------------------------------------------------------------
// The SBC under test.

struct Sbc {
    dir: tempfile::TempDir,
    udp: u16,
    tcp: u16,
    tls: u16,
    running: Option<Running>,
    runtime: tokio::runtime::Runtime,
}

fn free_tcp_port() -> u16 {
    TcpListener::bind((SBC_IP, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind((SBC_IP, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Sbc {
    /// `sip_extra`: lines added to `[sip]` (limits and timeouts under test).
    fn start(sip_extra: &str) -> Sbc {
        init_log_capture();
        let dir = tempfile::tempdir().unwrap();
        teams_sbc::devcerts::generate(&dir.path().join("certs"), BASE).unwrap();
        let (udp, tcp, tls, metrics) = (
            free_udp_port(),
            free_tcp_port(),
            free_tcp_port(),
            free_tcp_port(),
        );
        let config = format!(
            r#"
[sbc]
base_fqdn = "{BASE}"
sip_signaling_port = {tls}
vendor = "TestVendor"
model = "TestModel"

[sip]
t1_ms = 100
{sip_extra}

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
proxies = [{{ address = "127.0.0.4:9", transport = "tcp" }}]
options_interval_seconds = 180
allowed_source_cidrs = ["127.0.0.0/9"]

[[carrier_trunk]]
name = "pstn"
address = "127.0.0.2:9"
allowed_source_cidrs = ["127.0.0.2/32"]
options_ping = false

[[tenant]]
name = "acme"
fqdn = "acme.{BASE}"
numbers = ["+4930123400-+4930123499"]
carrier_trunk = "pstn"

[media.carrier]
bind = "{SBC_IP}"
port_min = 44400
port_max = 44409

[media.teams]
bind = "{SBC_IP}"
port_min = 44410
port_max = 44419

[ops]
metrics_listen = "{SBC_IP}:{metrics}"
"#
        );
        let path = dir.path().join("sbc.toml");
        std::fs::write(&path, config).unwrap();
        let loaded = teams_sbc::config::load(&path)
            .unwrap_or_else(|e| panic!("test config does not load: {e}"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let running = runtime
            .block_on(teams_sbc::app::start(&loaded))
            .unwrap_or_else(|e| panic!("SBC does not start: {e}"));
        Sbc {
            dir,
            udp,
            tcp,
            tls,
            running: Some(running),
            runtime,
        }
    }

    fn udp_addr(&self) -> SocketAddr {
        (SBC_IP, self.udp).into()
    }
    fn tcp_addr(&self) -> SocketAddr {
        (SBC_IP, self.tcp).into()
    }
    fn tls_addr(&self) -> SocketAddr {
        (SBC_IP, self.tls).into()
    }
    fn certs(&self) -> std::path::PathBuf {
        self.dir.path().join("certs")
    }

    /// Sum of the samples of `name` whose labels include every pair in `labels`.
    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let running = self.running.as_ref().unwrap();
        running
            .registry
            .gather()
            .iter()
            .filter(|family| family.name() == name)
            .flat_map(|family| {
                let kind = family.get_field_type();
                family.get_metric().iter().map(move |m| (kind, m))
            })
            .filter(|(_, m)| {
                labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                })
            })
            .map(|(kind, m)| match kind {
                prometheus::proto::MetricType::COUNTER => m.get_counter().get_value(),
                prometheus::proto::MetricType::GAUGE => m.get_gauge().get_value(),
                _ => 0.0,
            })
            .sum()
    }

    fn parse_errors(&self, reason: &str) -> f64 {
        self.metric("sip_parse_errors_total", &[("reason", reason)])
    }

    /// Poll `check` every 20 ms for at most `limit`.
    fn wait_for(&self, what: &str, limit: Duration, mut check: impl FnMut(&Sbc) -> bool) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if check(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("gave up waiting for {what}");
    }

    /// A normal OPTIONS still gets 200 with X-MS-SBC over UDP, TCP and TLS.
    fn assert_alive(&self, client: Ipv4Addr) {
        let socket = UdpSocket::bind((client, 0)).unwrap();
        let local = socket.local_addr().unwrap();
        let reply = udp_ask(
            &socket,
            self.udp_addr(),
            &options("UDP", local, "alive-udp"),
        )
        .expect("no answer to a normal OPTIONS over UDP");
        assert_ok_with_identity(&reply);

        let mut tcp = tcp_from(client, self.tcp_addr());
        let local = tcp.local_addr().unwrap();
        tcp.write_all(options("TCP", local, "alive-tcp").as_bytes())
            .unwrap();
        let reply = read_responses(&mut tcp, 1, WAIT);
        assert_eq!(reply.len(), 1, "no answer to a normal OPTIONS over TCP");
        assert_ok_with_identity(&reply[0]);

        let reply = self.runtime.block_on(async {
            let mut tls = tls_connect(&self.certs(), client, self.tls_addr()).await;
            let local = tls.get_ref().0.local_addr().unwrap();
            tls_ask(&mut tls, options("TLS", local, "alive-tls").as_bytes(), 1).await
        });
        assert_eq!(reply.len(), 1, "no answer to a normal OPTIONS over TLS");
        assert_ok_with_identity(&reply[0]);
    }
}

impl Drop for Sbc {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            self.runtime.block_on(running.shutdown());
        }
    }
}

fn assert_ok_with_identity(reply: &str) {
    assert!(
        reply.starts_with("SIP/2.0 200"),
        "expected 200, got:\n{reply}"
    );
    assert!(
        reply.to_ascii_lowercase().contains("\r\nx-ms-sbc:"),
        "200 without X-MS-SBC:\n{reply}"
    );
}

// ---------------------------------------------------------------------------------------------
// Messages and I/O helpers.

fn options_with(transport: &str, local: SocketAddr, call_id: &str, extra: &str) -> String {
    format!(
        "OPTIONS sip:{BASE} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:tester@example.net>;tag=hostile\r\n\
         To: <sip:{BASE}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

fn options(transport: &str, local: SocketAddr, call_id: &str) -> String {
    options_with(transport, local, call_id, "")
}

/// Send one datagram and wait for one answer.
fn udp_ask(socket: &UdpSocket, to: SocketAddr, msg: &str) -> Option<String> {
    udp_ask_bytes(socket, to, msg.as_bytes())
}

fn udp_ask_bytes(socket: &UdpSocket, to: SocketAddr, msg: &[u8]) -> Option<String> {
    socket.send_to(msg, to).unwrap();
    udp_recv(socket, WAIT)
}

fn udp_recv(socket: &UdpSocket, limit: Duration) -> Option<String> {
    socket.set_read_timeout(Some(limit)).unwrap();
    let mut buf = vec![0u8; 70_000];
    match socket.recv_from(&mut buf) {
        Ok((n, _)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(_) => None,
    }
}

/// A short wait: used where the right outcome is silence.
fn udp_silence(socket: &UdpSocket) -> Option<String> {
    udp_recv(socket, Duration::from_millis(700))
}

fn tcp_from(client: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((client, 0)).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    TcpStream::from(socket)
}

/// Read SIP responses (cut by Content-Length) until `count` arrived, the peer closed, or
/// `limit` passed.
fn read_responses(stream: &mut TcpStream, count: usize, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while out.len() < count && Instant::now() < deadline {
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
        out.extend(cut_messages(&mut buf));
    }
    out
}

/// Whole messages at the front of `buf` (keep-alive CRLFs skipped).
fn cut_messages(buf: &mut Vec<u8>) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        while buf.starts_with(b"\r\n") {
            buf.drain(..2);
        }
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return out;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let body = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("content-length:")
                    .or_else(|| l.strip_prefix("l:"))
            })
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let total = end + 4 + body;
        if buf.len() < total {
            return out;
        }
        out.push(String::from_utf8_lossy(&buf[..total]).into_owned());
        buf.drain(..total);
    }
}

/// Whether the peer closed the connection within `limit` (reads until EOF or error).
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

fn tls_client_config(certs: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(certs.join("ca.pem")).unwrap();
    for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain = std::fs::read(certs.join("teams.pem")).unwrap();
    let chain: Vec<_> = rustls_pemfile::certs(&mut chain.as_slice())
        .map(Result::unwrap)
        .collect();
    let key = std::fs::read(certs.join("teams.key")).unwrap();
    let key = rustls_pemfile::private_key(&mut key.as_slice())
        .unwrap()
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap(),
    )
}

type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn tls_connect(certs: &Path, client: Ipv4Addr, to: SocketAddr) -> TlsStream {
    let connector = tokio_rustls::TlsConnector::from(tls_client_config(certs));
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((client, 0).into()).unwrap();
    let tcp = socket.connect(to).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(BASE).unwrap();
    tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
        .expect("TLS handshake failed")
}

/// Write `bytes`, then read up to `count` responses (bounded by [`WAIT`]).
async fn tls_ask(tls: &mut TlsStream, bytes: &[u8], count: usize) -> Vec<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(bytes).await.unwrap();
    tls.flush().await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while out.len() < count {
        match tokio::time::timeout_at(deadline, tls.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
        out.extend(cut_messages(&mut buf));
    }
    out
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// The first line of a response (status and reason).
fn status_line(reply: &str) -> &str {
    reply.lines().next().unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Corpus of malformed messages.

/// What must come back for one malformed input.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A response whose status line starts with this (e.g. "400 Bad Via", "505").
    Status(&'static str),
    /// Nothing (the input cannot be answered).
    Silence,
}

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    expect: Expect,
    /// `sip_parse_errors_total{reason}` that must go up (None: input parses).
    reason: Option<&'static str>,
}

/// A request with `via` (the `Via:` line's value is built from the client's address) and the
/// header block `headers` (CRLF-terminated lines) and `body`.
fn request(start: &str, transport: &str, local: SocketAddr, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "{start}\r\nVia: SIP/2.0/{transport} {local};branch=z9hG4bK-h{n}\r\n{headers}\r\n{body}",
        n = headers.len()
    )
    .into_bytes()
}

const FROM_TO: &str =
    "From: <sip:tester@example.net>;tag=hostile\r\nTo: <sip:sbc.example.test>\r\n";

fn std_headers(call_id: &str, extra: &str, content_length: &str) -> String {
    format!(
        "Max-Forwards: 70\r\n{FROM_TO}Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\n{extra}Content-Length: {content_length}\r\n"
    )
}

const START: &str = "OPTIONS sip:sbc.example.test SIP/2.0";

fn corpus(transport: &str, local: SocketAddr) -> Vec<Case> {
    let req = |headers: &str, body: &str| request(START, transport, local, headers, body);
    let mut cases = vec![
        Case {
            name: "bad SIP version",
            bytes: request(
                "OPTIONS sip:sbc.example.test SIP/3.0",
                transport,
                local,
                &std_headers("c-version", "", "0"),
                "",
            ),
            expect: Expect::Status("505"),
            reason: Some("Bad SIP Version"),
        },
        Case {
            name: "negative Content-Length",
            bytes: req(&std_headers("c-neg", "", "-1"), ""),
            expect: Expect::Status("400 Bad Content-Length"),
            reason: Some("Bad Content-Length"),
        },
        Case {
            name: "overflowing Content-Length",
            bytes: req(&std_headers("c-ovf", "", "99999999999999999999999999"), ""),
            expect: Expect::Status("400 Bad Content-Length"),
            reason: Some("Bad Content-Length"),
        },
        Case {
            name: "negative CSeq",
            bytes: req(
                &format!("Max-Forwards: 70\r\n{FROM_TO}Call-ID: c-cseq\r\nCSeq: -1 OPTIONS\r\nContent-Length: 0\r\n"),
                "",
            ),
            expect: Expect::Status("400 Bad CSeq"),
            reason: Some("Bad CSeq"),
        },
        Case {
            name: "CSeq over 2^31",
            bytes: req(
                &format!("Max-Forwards: 70\r\n{FROM_TO}Call-ID: c-cseq2\r\nCSeq: 4294967296 OPTIONS\r\nContent-Length: 0\r\n"),
                "",
            ),
            expect: Expect::Status("400 Bad CSeq"),
            reason: Some("Bad CSeq"),
        },
        Case {
            name: "overflowing Max-Forwards",
            bytes: req(
                &format!("Max-Forwards: 999999999999999999999\r\n{FROM_TO}Call-ID: c-mf\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n"),
                "",
            ),
            expect: Expect::Status("400 Bad Max-Forwards"),
            reason: Some("Bad Max-Forwards"),
        },
        Case {
            name: "NUL byte in a header value",
            bytes: req(&std_headers("c-nul", "Subject: a\0b\r\n", "0"), ""),
            expect: Expect::Status("400 Bad Header Line"),
            reason: Some("Bad Header Line"),
        },
        Case {
            name: "unterminated quote in From",
            bytes: req(
                &format!("Max-Forwards: 70\r\nFrom: \"never closed <sip:a@example.net>;tag=1\r\nTo: <sip:{BASE}>\r\nCall-ID: c-quote\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n"),
                "",
            ),
            expect: Expect::Status("400"),
            reason: None,
        },
        Case {
            name: "nested angle brackets in To",
            bytes: req(
                &format!("Max-Forwards: 70\r\nFrom: <sip:a@example.net>;tag=1\r\nTo: {}sip:{BASE}{}\r\nCall-ID: c-angle\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n", "<".repeat(2000), ">".repeat(2000)),
                "",
            ),
            expect: Expect::Status("400"),
            reason: None,
        },
        Case {
            name: "thousands of escaped quotes in From",
            bytes: req(
                &format!("Max-Forwards: 70\r\nFrom: \"{}\" <sip:a@example.net>;tag=1\r\nTo: <sip:{BASE}>\r\nCall-ID: c-esc\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n", "\\\"".repeat(900)),
                "",
            ),
            // Well-formed quoted-string: it parses and is answered.
            expect: Expect::Status("200"),
            reason: None,
        },
        Case {
            name: "unterminated angle bracket in To",
            bytes: req(
                &format!("Max-Forwards: 70\r\nFrom: <sip:a@example.net>;tag=1\r\nTo: <sip:{BASE}\r\nCall-ID: c-open\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n"),
                "",
            ),
            expect: Expect::Status("400"),
            reason: None,
        },
        Case {
            name: "header line at the limit",
            bytes: req(
                &std_headers(
                    "c-at-limit",
                    &format!("X-Pad: {}\r\n", "a".repeat(2048 - "X-Pad: ".len())),
                    "0",
                ),
                "",
            ),
            expect: Expect::Status("200"),
            reason: None,
        },
        Case {
            name: "header line over the limit",
            bytes: req(
                &std_headers(
                    "c-over-limit",
                    &format!("X-Pad: {}\r\n", "a".repeat(2049 - "X-Pad: ".len())),
                    "0",
                ),
                "",
            ),
            expect: Expect::Status("400 Header Too Long"),
            reason: Some("Header Too Long"),
        },
        Case {
            name: "thousands of Via headers",
            bytes: req(
                &std_headers(
                    "c-vias",
                    &"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKv\r\n".repeat(300),
                    "0",
                ),
                "",
            ),
            expect: Expect::Status("400 Too Many Headers"),
            reason: Some("Too Many Headers"),
        },
        Case {
            name: "body longer than Content-Length (garbage after the message)",
            bytes: req(&std_headers("c-garbage", "", "0"), "GARBAGE\0\u{1}\u{2}"),
            // RFC 3261 §18.3: over UDP, bytes beyond Content-Length are discarded.
            expect: Expect::Status("200"),
            reason: None,
        },
        Case {
            name: "body shorter than Content-Length",
            bytes: req(&std_headers("c-short", "", "500"), "v=0\r\n"),
            expect: Expect::Status("400 Content-Length Mismatch"),
            reason: Some("Content-Length Mismatch"),
        },
        Case {
            name: "binary garbage",
            bytes: (0..1000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect(),
            expect: Expect::Silence,
            reason: None,
        },
        Case {
            name: "CR-only line ends",
            bytes: String::from_utf8(req(&std_headers("c-cr", "", "0"), ""))
                .unwrap()
                .replace("\r\n", "\r")
                .into_bytes(),
            expect: Expect::Silence,
            reason: None,
        },
        Case {
            name: "missing Call-ID",
            bytes: req(
                &format!("Max-Forwards: 70\r\n{FROM_TO}CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n"),
                "",
            ),
            expect: Expect::Silence,
            reason: Some("Missing Mandatory Header"),
        },
        Case {
            name: "non-UTF-8 in Subject",
            bytes: {
                let mut b = req(&std_headers("c-latin1", "Subject: caf\u{1}\r\n", "0"), "");
                let at = b.windows(4).position(|w| w == b"caf\x01").unwrap() + 3;
                b[at] = 0xe9;
                b
            },
            // Header values are opaque bytes; a stray Latin-1 byte is not worth a 400.
            expect: Expect::Status("200"),
            reason: None,
        },
        Case {
            name: "request line only",
            bytes: format!("{START}\r\n\r\n").into_bytes(),
            expect: Expect::Silence,
            reason: Some("Missing Mandatory Header"),
        },
    ];
    if transport != "UDP" {
        // On streams the framer cuts by Content-Length; these are stream-specific elsewhere.
        cases.retain(|c| {
            !matches!(
                c.name,
                "body longer than Content-Length (garbage after the message)"
                    | "body shorter than Content-Length"
                    | "binary garbage"
                    | "CR-only line ends"
                    | "negative Content-Length"
                    | "overflowing Content-Length"
                    | "request line only"
            )
        });
    }
    cases
}

/// Check one answer (or silence) against a case; returns a complaint.
fn judge(case: &Case, reply: Option<&str>) -> Option<String> {
    match (case.expect, reply) {
        (Expect::Silence, None) => None,
        (Expect::Silence, Some(r)) => Some(format!(
            "{}: expected silence, got `{}`",
            case.name,
            status_line(r)
        )),
        (Expect::Status(want), Some(r))
            if status_line(r).starts_with(&format!("SIP/2.0 {want}")) =>
        {
            None
        }
        (Expect::Status(want), r) => Some(format!(
            "{}: expected `{want}`, got `{}`",
            case.name,
            r.map(status_line).unwrap_or("nothing")
        )),
    }
}

fn hostile_limits() -> &'static str {
    "max_message_bytes = 16384\nmax_header_line_bytes = 2048\nmax_headers = 128\nmessage_timeout_seconds = 1\ntls_handshake_timeout_seconds = 1\nmax_connections_per_ip = 8"
}

#[test]
fn udp_malformed_corpus_is_answered_or_dropped_and_counted() {
    let sbc = Sbc::start(hostile_limits());
    let client = Ipv4Addr::new(127, 0, 0, 11);
    let socket = UdpSocket::bind((client, 0)).unwrap();
    let local = socket.local_addr().unwrap();
    let mut complaints = Vec::new();
    for case in corpus("UDP", local) {
        let before = case.reason.map(|r| sbc.parse_errors(r));
        socket.send_to(&case.bytes, sbc.udp_addr()).unwrap();
        let reply = match case.expect {
            Expect::Silence => udp_silence(&socket),
            Expect::Status(_) => udp_recv(&socket, WAIT),
        };
        complaints.extend(judge(&case, reply.as_deref()));
        if let (Some(reason), Some(before)) = (case.reason, before) {
            if sbc.parse_errors(reason) <= before {
                complaints.push(format!(
                    "{}: sip_parse_errors_total{{reason=\"{reason}\"}} did not go up",
                    case.name
                ));
            }
        }
    }
    // Over the size limit: dropped unread (nothing to answer from), counted.
    let before = sbc.parse_errors("Message Too Large");
    let mut big = request(START, "UDP", local, &std_headers("c-big", "", "20000"), "");
    big.extend(std::iter::repeat_n(b'x', 20_000));
    socket.send_to(&big, sbc.udp_addr()).unwrap();
    if let Some(r) = udp_silence(&socket) {
        complaints.push(format!("over-size datagram answered: {}", status_line(&r)));
    }
    if sbc.parse_errors("Message Too Large") <= before {
        complaints.push("over-size datagram not counted".into());
    }
    assert!(complaints.is_empty(), "{}", complaints.join("\n"));
    sbc.assert_alive(client);
}

#[test]
fn udp_flood_of_10k_bad_datagrams_keeps_memory_bounded_and_logs_rate_limited() {
    let sbc = Sbc::start(hostile_limits());
    let client = Ipv4Addr::new(127, 0, 0, 12);
    let socket = UdpSocket::bind((client, 0)).unwrap();
    let local = socket.local_addr().unwrap();
    let bad_via = request(
        START,
        "UDP",
        local,
        &format!("Max-Forwards: 70\r\n{FROM_TO}Call-ID: flood\r\nCSeq: x OPTIONS\r\nContent-Length: 0\r\n"),
        "",
    );
    let garbage: Vec<u8> = (0..512u32).map(|i| (i * 37 + 11) as u8).collect();
    let rss_before = vm_rss_kib();
    let errors_before = sbc.parse_errors("Bad CSeq");
    for i in 0..10_000u32 {
        let datagram = if i % 2 == 0 { &bad_via } else { &garbage };
        // Loopback can still drop when the receive buffer is full; that is fine here.
        let _ = socket.send_to(datagram, sbc.udp_addr());
        if i % 500 == 0 {
            // Drain the 400s so our own receive buffer does not matter.
            socket.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 4096];
            while socket.recv_from(&mut buf).is_ok() {}
            socket.set_nonblocking(false).unwrap();
        }
    }
    sbc.wait_for("the flood's parse errors to be counted", WAIT * 3, |s| {
        s.parse_errors("Bad CSeq") >= errors_before + 100.0
    });
    sbc.assert_alive(client);
    let rss_after = vm_rss_kib();
    assert!(
        rss_after < rss_before + 200 * 1024,
        "VmRSS grew from {rss_before} KiB to {rss_after} KiB during a 10,000-datagram flood"
    );
    let warned = warn_lines_with("127.0.0.12");
    assert!(
        warned <= 5,
        "{warned} warn lines about 127.0.0.12 for a 10,000-datagram flood (rate limit broken)"
    );
}

#[test]
fn scanner_sweep_from_a_stranger_gets_no_answer() {
    let sbc = Sbc::start(hostile_limits());
    let stranger = Ipv4Addr::new(127, 200, 0, 1);
    let socket = UdpSocket::bind((stranger, 0)).unwrap();
    let local = socket.local_addr().unwrap();
    let before = sbc.metric("sip_requests_rejected_total", &[]);
    let mut answers = Vec::new();
    for (i, method) in ["OPTIONS", "REGISTER", "INVITE"].iter().enumerate() {
        for user in ["100", "1000", "admin"] {
            let msg = format!(
                "{method} sip:{user}@127.0.0.1 SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {local};branch=z9hG4bK-{i}-{user};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: \"sipvicious\" <sip:{user}@1.1.1.1>;tag=6636{i}\r\n\
                 To: \"sipvicious\" <sip:{user}@1.1.1.1>\r\n\
                 Call-ID: scan-{i}-{user}\r\n\
                 CSeq: 1 {method}\r\n\
                 Contact: <sip:{user}@{local}>\r\n\
                 User-Agent: friendly-scanner\r\n\
                 Accept: application/sdp\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            socket.send_to(msg.as_bytes(), sbc.udp_addr()).unwrap();
        }
    }
    while let Some(reply) = udp_silence(&socket) {
        answers.push(status_line(&reply).to_string());
        if answers.len() > 20 {
            break;
        }
    }
    assert!(answers.is_empty(), "the scanner got answers: {answers:?}");
    sbc.wait_for("the sweep to be counted as rejected", WAIT, |s| {
        s.metric("sip_requests_rejected_total", &[]) >= before + 9.0
    });
    // The same sweep over TCP: no answer either, and the connection stays harmless.
    let mut tcp = tcp_from(stranger, sbc.tcp_addr());
    let local = tcp.local_addr().unwrap();
    tcp.write_all(
        options_with("TCP", local, "scan-tcp", "User-Agent: friendly-scanner\r\n").as_bytes(),
    )
    .unwrap();
    let replies = read_responses(&mut tcp, 1, Duration::from_millis(700));
    assert!(replies.is_empty(), "the TCP scanner got {replies:?}");
    sbc.assert_alive(Ipv4Addr::new(127, 0, 0, 13));
}

#[test]
fn udp_response_goes_to_the_packet_source_not_a_client_supplied_received() {
    let sbc = Sbc::start(hostile_limits());
    let client = Ipv4Addr::new(127, 0, 0, 14);
    let socket = UdpSocket::bind((client, 0)).unwrap();
    let local = socket.local_addr().unwrap();
    // A third party the client would like us to hit.
    let victim = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 15), 0)).unwrap();
    let victim_addr = victim.local_addr().unwrap();
    let msg = format!(
        "OPTIONS sip:{BASE} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {victim_addr};received={};rport={};branch=z9hG4bK-reflect\r\n\
         Max-Forwards: 70\r\n{FROM_TO}Call-ID: reflect\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        victim_addr.ip(),
        victim_addr.port()
    );
    socket.send_to(msg.as_bytes(), sbc.udp_addr()).unwrap();
    let at_victim = udp_silence(&victim);
    assert!(
        at_victim.is_none(),
        "a client-supplied received/rport reflected our answer to {victim_addr}: {:?}",
        at_victim.as_deref().map(status_line)
    );
    // RFC 3261 §18.2.1 / RFC 3581 §4: received and rport are what we saw (the packet's
    // source), so the answer comes back to the client's own socket.
    let at_client = udp_recv(&socket, WAIT).expect("no answer at the packet source");
    assert_ok_with_identity(&at_client);
    assert_eq!(socket.local_addr().unwrap(), local);
}
