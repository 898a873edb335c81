//! Our TLS listener against a real peer nobody here wrote: `openssl s_client`.
//!
//! Checklist rows (teams-direct-routing.md §6): 1 (TLS 1.2 with an ECDHE-RSA suite, refuse
//! TLS 1.1), 3 (full chain sent), 4 (mutual TLS: client certificates), 12 (TLS server on the
//! configured port answers SIP).
//!
//! Needs the `openssl` binary: `apt-get install -y openssl`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use teams_sbc::devcerts::{self, DevCerts};
use teams_sbc::transport::{
    ListenerSpec, RootStoreSource, TlsSettings, Transport, TransportHandle, TransportKind,
    TransportSettings,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

const SBC_FQDN: &str = "sbc.example.test";
const PROCESS_LIMIT: Duration = Duration::from_secs(20);

fn certs() -> &'static DevCerts {
    static CERTS: OnceLock<(tempfile::TempDir, DevCerts)> = OnceLock::new();
    &CERTS
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let certs = devcerts::generate(dir.path(), SBC_FQDN).unwrap();
            (dir, certs)
        })
        .1
}

fn openssl() -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let path = Path::new(dir).join("openssl");
        if path.exists() {
            return path;
        }
    }
    panic!("the openssl binary is missing: install it with `apt-get install -y openssl`");
}

struct Server {
    handle: TransportHandle,
    inbound: tokio::sync::mpsc::Receiver<teams_sbc::transport::Inbound>,
    registry: prometheus::Registry,
    port: u16,
}

async fn server(require_client_cert: bool) -> Server {
    let certs = certs();
    let settings = TransportSettings {
        listeners: vec![ListenerSpec {
            kind: TransportKind::Tls,
            bind: "127.0.0.1:0".parse().unwrap(),
        }],
        tls: Some(TlsSettings {
            cert_chain_pem: certs.sbc_chain_pem.clone(),
            key_pem: certs.sbc_key_pem.clone(),
            roots: RootStoreSource::PemFile(certs.ca_pem.clone()),
            require_client_cert,
            required_peer_sans: vec![],
        }),
        ..TransportSettings::default()
    };
    let registry = prometheus::Registry::new();
    let (handle, inbound) = Transport::start(settings, &registry).await.unwrap();
    let port = handle.local_addr(TransportKind::Tls).unwrap().port();
    Server {
        handle,
        inbound,
        registry,
        port,
    }
}

fn handshakes(registry: &prometheus::Registry, result: &str) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "tls_handshakes_total")
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            let labels: Vec<_> = m
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            labels.contains(&("direction", "inbound")) && labels.contains(&("result", result))
        })
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

/// Wait (bounded) until the server has counted `n` inbound handshakes with `result`.
async fn wait_handshakes(registry: &prometheus::Registry, result: &str, n: u64) -> u64 {
    for _ in 0..100 {
        let count = handshakes(registry, result);
        if count >= n {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handshakes(registry, result)
}

struct ClientRun {
    success: bool,
    output: String,
}

impl ClientRun {
    fn established(&self) -> bool {
        self.success && self.output.contains("CONNECTION ESTABLISHED")
    }
}

/// Run `openssl s_client` with stdin closed (handshake, then quit), bounded in time.
async fn s_client(port: u16, args: &[&str], client_cert: bool) -> ClientRun {
    let certs = certs();
    let mut cmd = Command::new(openssl());
    cmd.arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-servername")
        .arg(SBC_FQDN)
        .arg("-CAfile")
        .arg(&certs.ca_pem)
        .arg("-verify_return_error")
        .args(args);
    if !args.contains(&"-showcerts") {
        cmd.arg("-brief");
    }
    if client_cert {
        cmd.arg("-cert")
            .arg(&certs.teams_chain_pem)
            .arg("-key")
            .arg(&certs.teams_key_pem);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("spawn openssl");
    let output = tokio::time::timeout(PROCESS_LIMIT, child.wait_with_output())
        .await
        .expect("openssl s_client did not finish in time (killed)")
        .unwrap();
    ClientRun {
        success: output.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

#[tokio::test]
async fn row1_row4_tls12_ecdhe_rsa_aes256_gcm_with_client_certificate() {
    let server = server(true).await;
    let run = s_client(
        server.port,
        &["-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384"],
        true,
    )
    .await;
    assert!(run.established(), "handshake failed:\n{}", run.output);
    assert!(
        run.output.contains("Protocol version: TLSv1.2"),
        "{}",
        run.output
    );
    assert!(
        run.output
            .contains("Ciphersuite: ECDHE-RSA-AES256-GCM-SHA384"),
        "{}",
        run.output
    );
    assert!(run.output.contains("Verification: OK"), "{}", run.output);
    assert_eq!(wait_handshakes(&server.registry, "ok", 1).await, 1);
}

#[tokio::test]
async fn row1_tls12_ecdhe_rsa_aes128_gcm() {
    let server = server(true).await;
    let run = s_client(
        server.port,
        &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"],
        true,
    )
    .await;
    assert!(run.established(), "handshake failed:\n{}", run.output);
    assert!(
        run.output
            .contains("Ciphersuite: ECDHE-RSA-AES128-GCM-SHA256"),
        "{}",
        run.output
    );
}

/// Known gap: rustls implements no CBC suites, so a peer offering only the two CBC suites
/// of Microsoft's list cannot connect. Teams needs any one of the four; GCM is offered.
#[tokio::test]
async fn row1_cbc_only_client_is_refused_known_gap() {
    let server = server(false).await;
    let run = s_client(
        server.port,
        &[
            "-tls1_2",
            "-cipher",
            "ECDHE-RSA-AES256-SHA384:ECDHE-RSA-AES128-SHA256",
        ],
        true,
    )
    .await;
    assert!(
        !run.established(),
        "CBC suite unexpectedly negotiated:\n{}",
        run.output
    );
    assert_eq!(wait_handshakes(&server.registry, "error", 1).await, 1);
}

#[tokio::test]
async fn row1_tls11_is_refused_by_the_server() {
    let server = server(false).await;
    // SECLEVEL=0 lets the OpenSSL client really offer TLS 1.1, so the refusal is ours.
    let run = s_client(
        server.port,
        &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"],
        true,
    )
    .await;
    assert!(!run.established(), "TLS 1.1 accepted:\n{}", run.output);
    assert_eq!(
        wait_handshakes(&server.registry, "error", 1).await,
        1,
        "the server saw and refused the handshake:\n{}",
        run.output
    );
    assert_eq!(handshakes(&server.registry, "ok"), 0);
}

#[tokio::test]
async fn row1_tls13_works() {
    let server = server(true).await;
    let run = s_client(server.port, &["-tls1_3"], true).await;
    assert!(run.established(), "handshake failed:\n{}", run.output);
    assert!(
        run.output.contains("Protocol version: TLSv1.3"),
        "{}",
        run.output
    );
    assert_eq!(wait_handshakes(&server.registry, "ok", 1).await, 1);
}

#[tokio::test]
async fn row4_client_without_certificate_is_refused_when_mutual_tls_required() {
    let server = server(true).await;
    let run = s_client(
        server.port,
        &["-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384"],
        false,
    )
    .await;
    assert!(
        !run.established(),
        "accepted without certificate:\n{}",
        run.output
    );
    assert_eq!(wait_handshakes(&server.registry, "error", 1).await, 1);
    assert_eq!(handshakes(&server.registry, "ok"), 0);
}

#[tokio::test]
async fn row4_tls13_client_without_certificate_is_refused_when_mutual_tls_required() {
    let server = server(true).await;
    // In TLS 1.3 the client may believe the handshake finished before the server's alert
    // arrives, so the server's own count is the judge.
    let _ = s_client(server.port, &["-tls1_3"], false).await;
    assert_eq!(wait_handshakes(&server.registry, "error", 1).await, 1);
    assert_eq!(handshakes(&server.registry, "ok"), 0);
}

#[tokio::test]
async fn client_without_certificate_is_accepted_when_optional() {
    let server = server(false).await;
    let run = s_client(server.port, &["-tls1_2"], false).await;
    assert!(run.established(), "handshake failed:\n{}", run.output);
}

#[tokio::test]
async fn row3_full_chain_is_sent() {
    let server = server(false).await;
    let run = s_client(server.port, &["-showcerts"], false).await;
    assert!(run.success, "{}", run.output);
    assert!(
        run.output.contains("Verify return code: 0 (ok)"),
        "{}",
        run.output
    );
    let certs = run.output.matches("-----BEGIN CERTIFICATE-----").count();
    assert!(
        certs >= 2,
        "expected leaf + CA, saw {certs}:\n{}",
        run.output
    );
}

/// Row 12: a SIP request over an s_client connection reaches the application and the
/// response comes back on that same connection.
#[tokio::test]
async fn row12_sip_request_over_openssl_gets_response_on_same_connection() {
    let mut server = server(true).await;
    let certs = certs();
    let mut child = Command::new(openssl())
        .arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{}", server.port))
        .arg("-servername")
        .arg(SBC_FQDN)
        .arg("-CAfile")
        .arg(&certs.ca_pem)
        .arg("-verify_return_error")
        .arg("-quiet")
        .arg("-tls1_2")
        .arg("-cert")
        .arg(&certs.teams_chain_pem)
        .arg("-key")
        .arg(&certs.teams_key_pem)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn openssl");
    let request = "OPTIONS sip:sbc.example.test;transport=tls SIP/2.0\r\n\
        Via: SIP/2.0/TLS sip.pstnhub.microsoft.com:5061;branch=z9hG4bKopenssl1\r\n\
        Max-Forwards: 70\r\n\
        From: <sip:sip.pstnhub.microsoft.com>;tag=ms1\r\n\
        To: <sip:sbc.example.test>\r\n\
        Call-ID: openssl-options-1\r\n\
        CSeq: 1 OPTIONS\r\n\
        Content-Length: 0\r\n\r\n";
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(request.as_bytes()).await.unwrap();
    stdin.flush().await.unwrap();

    let inbound = tokio::time::timeout(PROCESS_LIMIT, server.inbound.recv())
        .await
        .expect("request not delivered in time")
        .expect("transport queue closed");
    assert_eq!(inbound.source.kind, TransportKind::Tls);
    assert!(inbound.source.connection.is_some());
    assert_eq!(
        inbound.message.call_id().as_deref(),
        Some(&b"openssl-options-1"[..])
    );

    let response = "SIP/2.0 200 OK\r\n\
        Via: SIP/2.0/TLS sip.pstnhub.microsoft.com:5061;branch=z9hG4bKopenssl1\r\n\
        From: <sip:sip.pstnhub.microsoft.com>;tag=ms1\r\n\
        To: <sip:sbc.example.test>;tag=sbc1\r\n\
        Call-ID: openssl-options-1\r\n\
        CSeq: 1 OPTIONS\r\n\
        Content-Length: 0\r\n\r\n";
    server
        .handle
        .send_response(&inbound.source, Bytes::from_static(response.as_bytes()))
        .await
        .unwrap();

    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    let read_all = async {
        while !String::from_utf8_lossy(&seen).contains("Content-Length: 0\r\n\r\n") {
            let n = stdout.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(PROCESS_LIMIT, read_all)
        .await
        .expect("response not received in time");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "got {text:?}");
    assert!(text.contains("Call-ID: openssl-options-1"));
    drop(stdin);
    let _ = child.kill().await;
}

/// Rows 1 and 4 in the other direction: we connect to a real OpenSSL server that demands a
/// client certificate, offers only ECDHE-RSA-AES256-GCM-SHA384 in TLS 1.2, and refuses a
/// wrong SNI; our request arrives intact.
#[tokio::test]
async fn row4_we_connect_to_openssl_server_requiring_client_cert_with_sni() {
    use teams_sbc::transport::Destination;
    use tokio::io::AsyncBufReadExt;

    let certs = certs();
    let mut child = Command::new(openssl())
        .arg("s_server")
        .arg("-accept")
        .arg("127.0.0.1:0")
        .arg("-naccept")
        .arg("1")
        // Not -brief: that mode buffers stdout, hiding the ACCEPT line from a pipe.
        .arg("-tls1_2")
        .arg("-cipher")
        .arg("ECDHE-RSA-AES256-GCM-SHA384")
        .arg("-cert")
        .arg(&certs.teams_chain_pem)
        .arg("-key")
        .arg(&certs.teams_key_pem)
        .arg("-servername")
        .arg("sip.pstnhub.microsoft.com")
        .arg("-servername_fatal")
        .arg("-cert2")
        .arg(&certs.teams_chain_pem)
        .arg("-key2")
        .arg(&certs.teams_key_pem)
        .arg("-Verify")
        .arg("2")
        .arg("-verify_return_error")
        .arg("-CAfile")
        .arg(&certs.ca_pem)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn openssl");
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let port = tokio::time::timeout(PROCESS_LIMIT, async {
        let mut line = String::new();
        loop {
            line.clear();
            if stdout.read_line(&mut line).await.unwrap() == 0 {
                panic!("s_server exited before listening");
            }
            if let Some(addr) = line.trim().strip_prefix("ACCEPT ") {
                let addr: std::net::SocketAddr = addr.parse().unwrap();
                return addr.port();
            }
        }
    })
    .await
    .expect("s_server did not start in time");

    let settings = TransportSettings {
        tls: Some(TlsSettings {
            cert_chain_pem: certs.sbc_chain_pem.clone(),
            key_pem: certs.sbc_key_pem.clone(),
            roots: RootStoreSource::PemFile(certs.ca_pem.clone()),
            require_client_cert: true,
            required_peer_sans: vec!["sip.pstnhub.microsoft.com".into()],
        }),
        ..TransportSettings::default()
    };
    let registry = prometheus::Registry::new();
    let (handle, _inbound) = Transport::start(settings, &registry).await.unwrap();
    let request = "OPTIONS sip:sip.pstnhub.microsoft.com:5061;transport=tls SIP/2.0\r\n\
        Via: SIP/2.0/TLS sbc.example.test:5061;branch=z9hG4bKtoopenssl\r\n\
        Max-Forwards: 70\r\n\
        From: <sip:sbc.example.test>;tag=sbc1\r\n\
        To: <sip:sip.pstnhub.microsoft.com>\r\n\
        Call-ID: to-openssl-1\r\n\
        CSeq: 1 OPTIONS\r\n\
        Content-Length: 0\r\n\r\n";
    handle
        .send(
            Destination {
                kind: TransportKind::Tls,
                addr: format!("127.0.0.1:{port}").parse().unwrap(),
                server_name: Some("sip.pstnhub.microsoft.com".into()),
            },
            Bytes::from_static(request.as_bytes()),
        )
        .await
        .expect("TLS connection to s_server");

    let mut seen = String::new();
    tokio::time::timeout(PROCESS_LIMIT, async {
        let mut line = String::new();
        while !seen.contains("Call-ID: to-openssl-1") {
            line.clear();
            if stdout.read_line(&mut line).await.unwrap() == 0 {
                break;
            }
            seen.push_str(&line);
        }
    })
    .await
    .expect("request not seen by s_server in time");
    assert!(
        seen.contains("CIPHER is ECDHE-RSA-AES256-GCM-SHA384"),
        "{seen}"
    );
    assert!(
        seen.contains("Hostname in TLS extension: \"sip.pstnhub.microsoft.com\""),
        "SNI is the FQDN we connect to: {seen}"
    );
    assert!(
        seen.contains("subject=CN = sbc.example.test"),
        "our certificate was presented as client certificate: {seen}"
    );
    assert!(seen.contains("OPTIONS sip:sip.pstnhub.microsoft.com:5061;transport=tls SIP/2.0"));
    let _ = child.kill().await;
}
