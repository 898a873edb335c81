//! The transport end to end on loopback: UDP, TCP and TLS in and out, framing, keep-alive,
//! limits, SAN checks and certificate reload.
//!
//! Checklist rows (teams-direct-routing.md §6): 4 (client certificate when we connect), 6
//! (reload closes TLS connections, new handshakes show the new certificate), 7 (required SAN
//! `sip.pstnhub.microsoft.com`), 12/13 (requests on connections the peer opened are answered
//! on those connections), 14 (CRLF keep-alive both ways).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use bytes::Bytes;
use teams_sbc::devcerts::{self, DevCerts};
use teams_sbc::sip::{Message, ResponseBuilder};
use teams_sbc::transport::{
    Destination, Inbound, ListenerSpec, RootStoreSource, TlsSettings, Transport, TransportError,
    TransportHandle, TransportKind, TransportSettings,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;

const SBC_FQDN: &str = "sbc.example.test";
const WAIT: Duration = Duration::from_secs(10);

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

fn tls_settings(certs: &DevCerts, teams_identity: bool, required_sans: &[&str]) -> TlsSettings {
    let (chain, key) = if teams_identity {
        (&certs.teams_chain_pem, &certs.teams_key_pem)
    } else {
        (&certs.sbc_chain_pem, &certs.sbc_key_pem)
    };
    TlsSettings {
        cert_chain_pem: chain.clone(),
        key_pem: key.clone(),
        roots: RootStoreSource::PemFile(certs.ca_pem.clone()),
        require_client_cert: true,
        required_peer_sans: required_sans.iter().map(|s| s.to_string()).collect(),
    }
}

fn listen(kind: TransportKind, addr: &str) -> ListenerSpec {
    ListenerSpec {
        kind,
        bind: addr.parse().unwrap(),
    }
}

async fn start(
    settings: TransportSettings,
) -> (TransportHandle, Receiver<Inbound>, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let (handle, rx) = Transport::start(settings, &registry).await.unwrap();
    (handle, rx, registry)
}

async fn next_inbound(rx: &mut Receiver<Inbound>) -> Inbound {
    timeout(WAIT, rx.recv())
        .await
        .expect("no message delivered in time")
        .expect("transport queue closed")
}

fn options(transport: &str, sent_by: &str, call_id: &str) -> String {
    format!(
        "OPTIONS sip:{SBC_FQDN} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {sent_by};branch=z9hG4bK-{call_id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:peer@example.net>;tag=f-{call_id}\r\n\
         To: <sip:{SBC_FQDN}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn ok_for(inbound: &Inbound) -> Bytes {
    ResponseBuilder::new(&inbound.message, 200, "OK")
        .to_tag("sbc-tag")
        .build()
}

fn call_id(message: &Message) -> String {
    String::from_utf8_lossy(&message.call_id().unwrap()).into_owned()
}

/// Read from a stream until `needle` has been seen (bounded), returning everything read.
async fn read_until<S: AsyncRead + Unpin>(stream: &mut S, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    let reading = async {
        while !String::from_utf8_lossy(&seen).contains(needle) {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    };
    timeout(WAIT, reading).await.expect("stream read timed out");
    String::from_utf8_lossy(&seen).into_owned()
}

/// True when the peer closed the stream (EOF or reset) within the wait.
async fn closed_by_peer<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut chunk = [0u8; 1024];
    let reading = async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    };
    timeout(WAIT, reading).await.unwrap_or(false)
}

fn tls_client_config(certs: &DevCerts) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(&certs.ca_pem).unwrap();
    for cert in CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain = std::fs::read(&certs.teams_chain_pem).unwrap();
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&chain)
        .map(Result::unwrap)
        .collect();
    let key = std::fs::read(&certs.teams_key_pem).unwrap();
    let key = PrivateKeyDer::from_pem_slice(&key).unwrap();
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

/// A "Microsoft" TLS client opening its own connection to our listener.
async fn tls_connect(
    certs: &DevCerts,
    addr: SocketAddr,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(tls_client_config(certs));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(SBC_FQDN).unwrap();
    timeout(WAIT, connector.connect(name, tcp))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn udp_request_delivered_and_response_follows_rport() {
    let (sbc, mut rx, _) = start(TransportSettings {
        listeners: vec![listen(TransportKind::Udp, "127.0.0.1:0")],
        ..TransportSettings::default()
    })
    .await;
    let sbc_addr = sbc.local_addr(TransportKind::Udp).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Sent-by names a port nobody listens on; rport makes the answer go to the source port.
    client
        .send_to(options("UDP", "127.0.0.1:9", "udp-1").as_bytes(), sbc_addr)
        .await
        .unwrap();
    let inbound = next_inbound(&mut rx).await;
    assert_eq!(inbound.source.kind, TransportKind::Udp);
    assert_eq!(inbound.source.remote, client.local_addr().unwrap());
    assert_eq!(inbound.source.connection, None);
    sbc.send_response(&inbound.source, ok_for(&inbound))
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let (n, from) = timeout(WAIT, client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        from, sbc_addr,
        "answered from the socket the request arrived on"
    );
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
    assert!(text.contains("Call-ID: udp-1"));
}

#[tokio::test]
async fn udp_garbage_gets_400_when_readable_nothing_otherwise_and_service_continues() {
    let (sbc, mut rx, registry) = start(TransportSettings {
        listeners: vec![listen(TransportKind::Udp, "127.0.0.1:0")],
        ..TransportSettings::default()
    })
    .await;
    let sbc_addr = sbc.local_addr(TransportKind::Udp).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = client.local_addr().unwrap().to_string();
    let mut buf = [0u8; 4096];

    // Readable headers, bad Max-Forwards: a 400 with the parser's reason comes back.
    let bad = options("UDP", &me, "bad-1").replace("Max-Forwards: 70", "Max-Forwards: lots");
    client.send_to(bad.as_bytes(), sbc_addr).await.unwrap();
    let (n, _) = timeout(WAIT, client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("SIP/2.0 400 "), "{text}");
    assert!(text.contains("Call-ID: bad-1"), "{text}");

    // Unreadable noise: dropped silently. The next datagram we get back must be the answer
    // to the good request sent after it.
    client
        .send_to(b"\x16\x03\x01 definitely not SIP\r\n\r\n", sbc_addr)
        .await
        .unwrap();
    client
        .send_to(options("UDP", &me, "good-after-noise").as_bytes(), sbc_addr)
        .await
        .unwrap();
    let inbound = next_inbound(&mut rx).await;
    assert_eq!(call_id(&inbound.message), "good-after-noise");
    sbc.send_response(&inbound.source, ok_for(&inbound))
        .await
        .unwrap();
    let (n, _) = timeout(WAIT, client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(
        text.starts_with("SIP/2.0 200 OK"),
        "nothing for the noise: {text}"
    );

    let errors: f64 = registry
        .gather()
        .iter()
        .filter(|f| f.name() == "sip_parse_errors_total")
        .flat_map(|f| f.get_metric().iter().map(|m| m.get_counter().get_value()))
        .sum();
    assert_eq!(errors, 2.0, "both bad datagrams counted");
}

#[tokio::test]
async fn tcp_response_goes_back_on_the_request_connection() {
    let (sbc, mut rx, _) = start(TransportSettings {
        listeners: vec![listen(TransportKind::Tcp, "127.0.0.1:0")],
        ..TransportSettings::default()
    })
    .await;
    let addr = sbc.local_addr(TransportKind::Tcp).unwrap();
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(options("TCP", "127.0.0.1:9", "tcp-1").as_bytes())
        .await
        .unwrap();
    let inbound = next_inbound(&mut rx).await;
    assert_eq!(inbound.source.kind, TransportKind::Tcp);
    assert!(inbound.source.connection.is_some());
    let sent = sbc
        .send_response(&inbound.source, ok_for(&inbound))
        .await
        .unwrap();
    assert_eq!(sent.connection, inbound.source.connection);
    let text = read_until(&mut client, "Content-Length: 0\r\n\r\n").await;
    assert_eq!(
        sbc.peer_certificate_matches(inbound.source.connection.unwrap(), "x.example"),
        None,
        "no certificate on plain TCP"
    );
    assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
    assert_eq!(sbc.connection_count(), 1);
}

#[tokio::test]
async fn tcp_response_opens_new_connection_to_sent_by_when_request_connection_closed() {
    let (sbc, mut rx, _) = start(TransportSettings {
        listeners: vec![listen(TransportKind::Tcp, "127.0.0.1:0")],
        ..TransportSettings::default()
    })
    .await;
    let addr = sbc.local_addr(TransportKind::Tcp).unwrap();
    let peer_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sent_by = peer_listener.local_addr().unwrap().to_string();
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(options("TCP", &sent_by, "tcp-fallback").as_bytes())
        .await
        .unwrap();
    let inbound = next_inbound(&mut rx).await;
    drop(client);
    // Wait (bounded) until the transport noticed the close.
    for _ in 0..200 {
        if sbc.connection_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sbc.connection_count(), 0);
    sbc.send_response(&inbound.source, ok_for(&inbound))
        .await
        .unwrap();
    let (mut fresh, _) = timeout(WAIT, peer_listener.accept())
        .await
        .unwrap()
        .unwrap();
    let text = read_until(&mut fresh, "Content-Length: 0\r\n\r\n").await;
    assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
    assert!(text.contains("Call-ID: tcp-fallback"));
}

#[tokio::test]
async fn tcp_pipelined_and_split_messages_are_framed() {
    let (sbc, mut rx, _) = start(TransportSettings {
        listeners: vec![listen(TransportKind::Tcp, "127.0.0.1:0")],
        ..TransportSettings::default()
    })
    .await;
    let addr = sbc.local_addr(TransportKind::Tcp).unwrap();
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.set_nodelay(true).unwrap();

    let two = format!(
        "{}{}",
        options("TCP", "127.0.0.1:9", "pipe-1"),
        options("TCP", "127.0.0.1:9", "pipe-2")
    );
    client.write_all(two.as_bytes()).await.unwrap();
    assert_eq!(call_id(&next_inbound(&mut rx).await.message), "pipe-1");
    assert_eq!(call_id(&next_inbound(&mut rx).await.message), "pipe-2");

    let one = options("TCP", "127.0.0.1:9", "split-1");
    let bytes = one.as_bytes();
    let (a, rest) = bytes.split_at(20);
    let (b, c) = rest.split_at(rest.len() - 10);
    for chunk in [a, b, c] {
        client.write_all(chunk).await.unwrap();
        client.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let inbound = next_inbound(&mut rx).await;
    assert_eq!(call_id(&inbound.message), "split-1");
    // The whole message arrived as one: the only difference from what was written is the
    // top Via stamped with received/rport (RFC 3581), so it ends exactly like the original.
    let delivered = inbound.message.bytes();
    let tail = &bytes[bytes.len() - 60..];
    assert!(delivered.ends_with(tail), "{delivered:?}");
    let via = inbound.message.top_via().unwrap();
    assert_eq!(via.rport, Some(Some(client.local_addr().unwrap().port())));
}

#[tokio::test]
async fn row14_crlf_ping_gets_pong_and_connection_keeps_working() {
    let (sbc, mut rx, _) = start(TransportSettings {
        listeners: vec![listen(TransportKind::Tcp, "127.0.0.1:0")],
        ..TransportSettings::default()
    })
    .await;
    let addr = sbc.local_addr(TransportKind::Tcp).unwrap();
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(b"\r\n\r\n").await.unwrap();
    let mut pong = [0u8; 2];
    timeout(WAIT, client.read_exact(&mut pong))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&pong, b"\r\n");
    client
        .write_all(options("TCP", "127.0.0.1:9", "after-ping").as_bytes())
        .await
        .unwrap();
    assert_eq!(call_id(&next_inbound(&mut rx).await.message), "after-ping");
}

#[tokio::test]
async fn row14_we_send_crlf_keepalives_on_connections_we_opened() {
    let (sbc, _rx, _) = start(TransportSettings {
        keepalive_interval: Some(Duration::from_millis(100)),
        ..TransportSettings::default()
    })
    .await;
    let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dest = Destination {
        kind: TransportKind::Tcp,
        addr: peer.local_addr().unwrap(),
        server_name: None,
    };
    let request = options("TCP", "127.0.0.1:9", "ka-1");
    sbc.send(dest, Bytes::from(request.clone())).await.unwrap();
    let (mut conn, _) = timeout(WAIT, peer.accept()).await.unwrap().unwrap();
    let text = read_until(&mut conn, "Content-Length: 0\r\n\r\n\r\n\r\n").await;
    assert!(text.starts_with(&request), "{text:?}");
    assert!(text[request.len()..].starts_with("\r\n\r\n"), "{text:?}");
}

#[tokio::test]
async fn idle_inbound_connection_is_closed() {
    let (sbc, _rx, _) = start(TransportSettings {
        listeners: vec![listen(TransportKind::Tcp, "127.0.0.1:0")],
        idle_timeout: Duration::from_millis(200),
        ..TransportSettings::default()
    })
    .await;
    let mut client = TcpStream::connect(sbc.local_addr(TransportKind::Tcp).unwrap())
        .await
        .unwrap();
    assert!(closed_by_peer(&mut client).await);
}

#[tokio::test]
async fn oversized_stream_message_closes_only_that_connection() {
    let (sbc, mut rx, _) = start(TransportSettings {
        listeners: vec![listen(TransportKind::Tcp, "127.0.0.1:0")],
        ..TransportSettings::default()
    })
    .await;
    let addr = sbc.local_addr(TransportKind::Tcp).unwrap();
    let mut good = TcpStream::connect(addr).await.unwrap();
    let mut bad = TcpStream::connect(addr).await.unwrap();
    // A header block that never ends, larger than the 64 KiB message limit.
    let mut flood = b"OPTIONS sip:x SIP/2.0\r\n".to_vec();
    while flood.len() < 70 * 1024 {
        flood.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let _ = bad.write_all(&flood).await;
    assert!(closed_by_peer(&mut bad).await);
    good.write_all(options("TCP", "127.0.0.1:9", "still-served").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        call_id(&next_inbound(&mut rx).await.message),
        "still-served"
    );
}

#[tokio::test]
async fn per_ip_connection_limit_refuses_the_extra_connection() {
    let (sbc, mut rx, _) = start(TransportSettings {
        listeners: vec![listen(TransportKind::Tcp, "127.0.0.1:0")],
        max_connections_per_ip: 2,
        ..TransportSettings::default()
    })
    .await;
    let addr = sbc.local_addr(TransportKind::Tcp).unwrap();
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    // Make sure both are accepted before the third arrives.
    for (i, conn) in [&mut first, &mut second].into_iter().enumerate() {
        conn.write_all(options("TCP", "127.0.0.1:9", &format!("limit-{i}")).as_bytes())
            .await
            .unwrap();
        next_inbound(&mut rx).await;
    }
    let mut third = TcpStream::connect(addr).await.unwrap();
    assert!(closed_by_peer(&mut third).await, "third connection refused");
    first
        .write_all(options("TCP", "127.0.0.1:9", "limit-ok").as_bytes())
        .await
        .unwrap();
    assert_eq!(call_id(&next_inbound(&mut rx).await.message), "limit-ok");
}

#[tokio::test]
async fn ipv6_udp_and_tcp_listeners() {
    let (sbc, mut rx, _) = start(TransportSettings {
        listeners: vec![
            listen(TransportKind::Udp, "[::1]:0"),
            listen(TransportKind::Tcp, "[::1]:0"),
        ],
        ..TransportSettings::default()
    })
    .await;
    let udp = UdpSocket::bind("[::1]:0").await.unwrap();
    let me = udp.local_addr().unwrap().to_string();
    udp.send_to(
        options("UDP", &me, "v6-udp").as_bytes(),
        sbc.local_addr(TransportKind::Udp).unwrap(),
    )
    .await
    .unwrap();
    let inbound = next_inbound(&mut rx).await;
    assert!(inbound.source.remote.is_ipv6());
    sbc.send_response(&inbound.source, ok_for(&inbound))
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = timeout(WAIT, udp.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"SIP/2.0 200 OK"));

    let mut tcp = TcpStream::connect(sbc.local_addr(TransportKind::Tcp).unwrap())
        .await
        .unwrap();
    tcp.write_all(options("TCP", "[::1]:9", "v6-tcp").as_bytes())
        .await
        .unwrap();
    let inbound = next_inbound(&mut rx).await;
    assert_eq!(call_id(&inbound.message), "v6-tcp");
    sbc.send_response(&inbound.source, ok_for(&inbound))
        .await
        .unwrap();
    let text = read_until(&mut tcp, "Content-Length: 0\r\n\r\n").await;
    assert!(text.starts_with("SIP/2.0 200 OK"));
}

/// Rows 12/13: "Microsoft" opens its own TLS connection to our listener; its request is
/// delivered and the response returns on that inbound connection.
#[tokio::test]
async fn row13_request_on_inbound_tls_connection_answered_on_it() {
    let certs = certs();
    let (sbc, mut rx, _) = start(TransportSettings {
        listeners: vec![listen(TransportKind::Tls, "127.0.0.1:0")],
        tls: Some(tls_settings(certs, false, &[])),
        ..TransportSettings::default()
    })
    .await;
    let mut ms = tls_connect(certs, sbc.local_addr(TransportKind::Tls).unwrap()).await;
    ms.write_all(options("TLS", "sip.pstnhub.microsoft.com:5061", "ms-bye-1").as_bytes())
        .await
        .unwrap();
    let inbound = next_inbound(&mut rx).await;
    assert_eq!(inbound.source.kind, TransportKind::Tls);
    assert_eq!(call_id(&inbound.message), "ms-bye-1");
    // Row 7 on inbound connections: the application can check Microsoft's client certificate.
    let conn = inbound.source.connection.unwrap();
    assert_eq!(
        sbc.peer_certificate_matches(conn, "sip.pstnhub.microsoft.com"),
        Some(true)
    );
    assert_eq!(
        sbc.peer_certificate_matches(conn, "sip.evil.example"),
        Some(false)
    );
    let sent = sbc
        .send_response(&inbound.source, ok_for(&inbound))
        .await
        .unwrap();
    assert_eq!(sent.connection, inbound.source.connection);
    let text = read_until(&mut ms, "Content-Length: 0\r\n\r\n").await;
    assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
}

/// Rows 4 and 13 between two transports: our client certificate is accepted by a server
/// that requires one, responses come back on our outgoing connection, and a second request
/// to the same destination reuses it.
#[tokio::test]
async fn row4_outgoing_tls_with_client_cert_reuses_the_connection() {
    let certs = certs();
    let (teams, mut teams_rx, _) = start(TransportSettings {
        listeners: vec![listen(TransportKind::Tls, "127.0.0.1:0")],
        tls: Some(tls_settings(certs, true, &[])),
        ..TransportSettings::default()
    })
    .await;
    let (sbc, mut sbc_rx, _) = start(TransportSettings {
        tls: Some(tls_settings(certs, false, &["sip.pstnhub.microsoft.com"])),
        ..TransportSettings::default()
    })
    .await;
    let dest = Destination {
        kind: TransportKind::Tls,
        addr: teams.local_addr(TransportKind::Tls).unwrap(),
        server_name: Some("sip2.pstnhub.microsoft.com".into()),
    };
    let first = sbc
        .send(
            dest.clone(),
            Bytes::from(options("TLS", "sbc.example.test:5061", "out-1")),
        )
        .await
        .unwrap();
    let at_teams = next_inbound(&mut teams_rx).await;
    teams
        .send_response(&at_teams.source, ok_for(&at_teams))
        .await
        .unwrap();
    let response = next_inbound(&mut sbc_rx).await;
    assert_eq!(response.message.status(), Some(200));
    assert_eq!(response.source.connection, first.connection);
    assert_eq!(
        sbc.peer_certificate_matches(first.connection.unwrap(), "sip.pstnhub.microsoft.com"),
        Some(true)
    );

    let second = sbc
        .send(
            dest,
            Bytes::from(options("TLS", "sbc.example.test:5061", "out-2")),
        )
        .await
        .unwrap();
    assert_eq!(second.connection, first.connection, "connection reused");
    let at_teams_2 = next_inbound(&mut teams_rx).await;
    assert_eq!(at_teams_2.source.connection, at_teams.source.connection);
    assert_eq!(sbc.connection_count(), 1);
    assert_eq!(teams.connection_count(), 1);
}

#[tokio::test]
async fn tcp_outgoing_connection_is_reused() {
    let (sbc, _rx, _) = start(TransportSettings::default()).await;
    let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dest = Destination {
        kind: TransportKind::Tcp,
        addr: peer.local_addr().unwrap(),
        server_name: None,
    };
    let a = sbc
        .send(
            dest.clone(),
            Bytes::from(options("TCP", "127.0.0.1:9", "reuse-1")),
        )
        .await
        .unwrap();
    let b = sbc
        .send(dest, Bytes::from(options("TCP", "127.0.0.1:9", "reuse-2")))
        .await
        .unwrap();
    assert_eq!(a.connection, b.connection);
    let (mut conn, _) = timeout(WAIT, peer.accept()).await.unwrap().unwrap();
    let text = read_until(&mut conn, "Call-ID: reuse-2").await;
    assert!(text.contains("Call-ID: reuse-1"));
}

/// `[sbc] bind_address`: connections we open leave from that address (peers' ACLs see it),
/// and a destination of the other IP family still connects from the OS's choice.
#[tokio::test]
async fn outgoing_connections_leave_from_the_configured_bind_address() {
    let (sbc, _rx, _) = start(TransportSettings {
        outbound_bind: Some("127.0.0.7".parse().unwrap()),
        ..TransportSettings::default()
    })
    .await;
    let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dest = Destination {
        kind: TransportKind::Tcp,
        addr: peer.local_addr().unwrap(),
        server_name: None,
    };
    sbc.send(dest, Bytes::from(options("TCP", "127.0.0.1:9", "bind-1")))
        .await
        .unwrap();
    let (mut conn, from) = timeout(WAIT, peer.accept()).await.unwrap().unwrap();
    assert_eq!(from.ip().to_string(), "127.0.0.7");
    read_until(&mut conn, "Call-ID: bind-1").await;

    let Ok(peer6) = TcpListener::bind("[::1]:0").await else {
        return; // no IPv6 loopback on this machine: the IPv4 half above is the test
    };
    let dest6 = Destination {
        kind: TransportKind::Tcp,
        addr: peer6.local_addr().unwrap(),
        server_name: None,
    };
    sbc.send(dest6, Bytes::from(options("TCP", "[::1]:9", "bind-2")))
        .await
        .unwrap();
    let (mut conn6, from6) = timeout(WAIT, peer6.accept()).await.unwrap().unwrap();
    assert!(from6.ip().is_loopback() && from6.is_ipv6());
    read_until(&mut conn6, "Call-ID: bind-2").await;
}

#[tokio::test]
async fn connect_failure_is_reported_so_the_caller_can_fail_over() {
    let (sbc, _rx, _) = start(TransportSettings::default()).await;
    // Bind then drop to get a loopback port with (almost certainly) nobody listening.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let err = sbc
        .send(
            Destination {
                kind: TransportKind::Tcp,
                addr: port,
                server_name: None,
            },
            Bytes::from(options("TCP", "127.0.0.1:9", "nobody")),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Connect { .. }), "{err}");
}

/// Row 7: a server whose certificate lacks the required SAN is refused, even though it is
/// valid for the name we connected to. The requirement covers the required name's siblings
/// (for `sip.pstnhub.microsoft.com`: `sip2.pstnhub.microsoft.com`, ...); here the same rule
/// with `required.example.test`, since the dev CA only issues the SBC and Teams certificates.
/// Destinations outside that domain (a carrier TLS trunk) are verified by their own name.
#[tokio::test]
async fn row7_server_without_required_san_is_refused_carriers_unaffected() {
    let certs = certs();
    let (other, mut other_rx, _) = start(TransportSettings {
        listeners: vec![listen(TransportKind::Tls, "127.0.0.1:0")],
        tls: Some(tls_settings(certs, false, &[])),
        ..TransportSettings::default()
    })
    .await;
    let (sbc, _rx, registry) = start(TransportSettings {
        tls: Some(tls_settings(certs, false, &["required.example.test"])),
        ..TransportSettings::default()
    })
    .await;
    let addr = other.local_addr(TransportKind::Tls).unwrap();
    let err = sbc
        .send(
            Destination {
                kind: TransportKind::Tls,
                addr,
                // The certificate is valid for this name, but not for the required SAN.
                server_name: Some(SBC_FQDN.into()),
            },
            Bytes::from(options("TLS", "sbc.example.test:5061", "san-1")),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Handshake { .. }), "{err}");
    assert!(err.to_string().contains("NotValidForName"), "{err}");
    assert_eq!(sbc.connection_count(), 0);
    let failed: f64 = registry
        .gather()
        .iter()
        .filter(|f| f.name() == "tls_handshakes_total")
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| m.get_label().iter().any(|l| l.value() == "error"))
        .map(|m| m.get_counter().get_value())
        .sum();
    assert_eq!(failed, 1.0);

    // A name outside the required SAN's domain: standard verification only.
    sbc.send(
        Destination {
            kind: TransportKind::Tls,
            addr,
            server_name: Some("carrier.sbc.example.test".into()),
        },
        Bytes::from(options("TLS", "sbc.example.test:5061", "san-2")),
    )
    .await
    .unwrap();
    assert_eq!(call_id(&next_inbound(&mut other_rx).await.message), "san-2");
}

/// Row 7 with the real name: the Teams stand-in presents sip/sip2/sip3.pstnhub.microsoft.com
/// and passes; the SBC certificate presented under a pstnhub name does not.
#[tokio::test]
async fn row7_teams_san_required_for_pstnhub_destinations() {
    let certs = certs();
    let (teams, mut teams_rx, _) = start(TransportSettings {
        listeners: vec![listen(TransportKind::Tls, "127.0.0.1:0")],
        tls: Some(tls_settings(certs, true, &[])),
        ..TransportSettings::default()
    })
    .await;
    let (impostor, _impostor_rx, _) = start(TransportSettings {
        listeners: vec![listen(TransportKind::Tls, "127.0.0.1:0")],
        tls: Some(tls_settings(certs, false, &[])),
        ..TransportSettings::default()
    })
    .await;
    let (sbc, _rx, _) = start(TransportSettings {
        tls: Some(tls_settings(certs, false, &["sip.pstnhub.microsoft.com"])),
        ..TransportSettings::default()
    })
    .await;
    let to = |addr| Destination {
        kind: TransportKind::Tls,
        addr,
        server_name: Some("sip3.pstnhub.microsoft.com".into()),
    };
    sbc.send(
        to(teams.local_addr(TransportKind::Tls).unwrap()),
        Bytes::from(options("TLS", "sbc.example.test:5061", "ms-ok")),
    )
    .await
    .unwrap();
    assert_eq!(call_id(&next_inbound(&mut teams_rx).await.message), "ms-ok");
    let err = sbc
        .send(
            to(impostor.local_addr(TransportKind::Tls).unwrap()),
            Bytes::from(options("TLS", "sbc.example.test:5061", "ms-bad")),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Handshake { .. }), "{err}");
}

/// Row 6: after a certificate renewal, reload closes every TLS connection (inbound and
/// outbound) and new handshakes present the new certificate.
#[tokio::test]
async fn row6_reload_tls_closes_connections_and_presents_new_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let old = devcerts::generate(dir.path(), SBC_FQDN).unwrap();
    let (peer, mut peer_rx, _) = start(TransportSettings {
        listeners: vec![listen(TransportKind::Tls, "127.0.0.1:0")],
        tls: Some(tls_settings(&old, true, &[])),
        ..TransportSettings::default()
    })
    .await;
    let (sbc, mut sbc_rx, _) = start(TransportSettings {
        listeners: vec![listen(TransportKind::Tls, "127.0.0.1:0")],
        tls: Some(tls_settings(&old, false, &[])),
        ..TransportSettings::default()
    })
    .await;
    let sbc_addr = sbc.local_addr(TransportKind::Tls).unwrap();

    let mut inbound_conn = tls_connect(&old, sbc_addr).await;
    let old_leaf = inbound_conn.get_ref().1.peer_certificates().unwrap()[0].clone();
    inbound_conn
        .write_all(options("TLS", "sip.pstnhub.microsoft.com:5061", "pre-reload").as_bytes())
        .await
        .unwrap();
    next_inbound(&mut sbc_rx).await;
    let dest = Destination {
        kind: TransportKind::Tls,
        addr: peer.local_addr(TransportKind::Tls).unwrap(),
        server_name: Some("sip.pstnhub.microsoft.com".into()),
    };
    let before = sbc
        .send(
            dest.clone(),
            Bytes::from(options("TLS", "sbc.example.test:5061", "out-pre")),
        )
        .await
        .unwrap();
    next_inbound(&mut peer_rx).await;
    assert_eq!(sbc.connection_count(), 2);

    // Renewal: new CA, keys and serials in the same files. The peer gets the new CA too.
    let new = devcerts::generate(dir.path(), SBC_FQDN).unwrap();
    peer.reload_tls().unwrap();
    sbc.reload_tls().unwrap();
    assert!(
        closed_by_peer(&mut inbound_conn).await,
        "old inbound TLS connection closed"
    );
    for _ in 0..200 {
        if sbc.connection_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        sbc.connection_count(),
        0,
        "outbound TLS connection closed too"
    );

    let fresh = tls_connect(&new, sbc_addr).await;
    let new_leaf = fresh.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_ne!(old_leaf, new_leaf);
    let pem = std::fs::read(&new.sbc_chain_pem).unwrap();
    let expected = CertificateDer::pem_slice_iter(&pem)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        new_leaf, expected,
        "new handshakes present the renewed certificate"
    );

    let after = sbc
        .send(
            dest,
            Bytes::from(options("TLS", "sbc.example.test:5061", "out-post")),
        )
        .await
        .unwrap();
    assert_ne!(
        after.connection, before.connection,
        "a new outbound connection"
    );
    assert_eq!(
        call_id(&next_inbound(&mut peer_rx).await.message),
        "out-post"
    );
}

#[tokio::test]
async fn reload_with_broken_files_keeps_the_old_config() {
    let dir = tempfile::tempdir().unwrap();
    let certs = devcerts::generate(dir.path(), SBC_FQDN).unwrap();
    let (sbc, mut rx, _) = start(TransportSettings {
        listeners: vec![listen(TransportKind::Tls, "127.0.0.1:0")],
        tls: Some(tls_settings(&certs, false, &[])),
        ..TransportSettings::default()
    })
    .await;
    let original_key = std::fs::read(&certs.sbc_key_pem).unwrap();
    std::fs::write(&certs.sbc_key_pem, b"not a key").unwrap();
    assert!(matches!(sbc.reload_tls(), Err(TransportError::Tls(_))));
    std::fs::write(&certs.sbc_key_pem, original_key).unwrap();
    let mut conn = tls_connect(&certs, sbc.local_addr(TransportKind::Tls).unwrap()).await;
    conn.write_all(options("TLS", "sip.pstnhub.microsoft.com:5061", "still-tls").as_bytes())
        .await
        .unwrap();
    assert_eq!(call_id(&next_inbound(&mut rx).await.message), "still-tls");
}

#[tokio::test]
async fn shutdown_closes_connections_and_refuses_sends() {
    let (sbc, _rx, _) = start(TransportSettings {
        listeners: vec![listen(TransportKind::Tcp, "127.0.0.1:0")],
        ..TransportSettings::default()
    })
    .await;
    let mut client = TcpStream::connect(sbc.local_addr(TransportKind::Tcp).unwrap())
        .await
        .unwrap();
    client.write_all(b"\r\n\r\n").await.unwrap();
    let mut pong = [0u8; 2];
    timeout(WAIT, client.read_exact(&mut pong))
        .await
        .unwrap()
        .unwrap();
    sbc.shutdown();
    assert!(closed_by_peer(&mut client).await);
    let err = sbc
        .send(
            Destination {
                kind: TransportKind::Tcp,
                addr: "127.0.0.1:9".parse().unwrap(),
                server_name: None,
            },
            Bytes::from_static(b"OPTIONS sip:x SIP/2.0\r\n\r\n"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Shutdown));
}

#[tokio::test]
async fn silent_tls_client_is_dropped_at_handshake_timeout() {
    let (sbc, _rx, _) = start(TransportSettings {
        listeners: vec![listen(TransportKind::Tls, "127.0.0.1:0")],
        tls: Some(tls_settings(certs(), false, &[])),
        tls_handshake_timeout: Duration::from_millis(200),
        ..TransportSettings::default()
    })
    .await;
    let mut raw = TcpStream::connect(sbc.local_addr(TransportKind::Tls).unwrap())
        .await
        .unwrap();
    assert!(closed_by_peer(&mut raw).await);
}

#[tokio::test]
async fn slow_loris_partial_message_is_closed_although_bytes_keep_trickling() {
    let (sbc, _rx, _) = start(TransportSettings {
        listeners: vec![listen(TransportKind::Tcp, "127.0.0.1:0")],
        message_timeout: Duration::from_millis(300),
        ..TransportSettings::default()
    })
    .await;
    let mut client = TcpStream::connect(sbc.local_addr(TransportKind::Tcp).unwrap())
        .await
        .unwrap();
    let message = options("TCP", "127.0.0.1:9", "loris");
    // One byte every 50 ms: idle never fires, but the message never completes in time.
    let mut closed = false;
    for byte in message.as_bytes().iter().take(200) {
        if client.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut probe = [0u8; 16];
        match timeout(Duration::from_millis(50), client.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(closed, "trickled message must be cut off");
}

#[tokio::test]
async fn tcp_unparsable_but_framed_message_gets_400_and_connection_stays_open() {
    let (sbc, mut rx, registry) = start(TransportSettings {
        listeners: vec![listen(TransportKind::Tcp, "127.0.0.1:0")],
        ..TransportSettings::default()
    })
    .await;
    let mut client = TcpStream::connect(sbc.local_addr(TransportKind::Tcp).unwrap())
        .await
        .unwrap();
    let bad =
        options("TCP", "127.0.0.1:9", "tcp-bad").replace("Max-Forwards: 70", "Max-Forwards: lots");
    client.write_all(bad.as_bytes()).await.unwrap();
    let text = read_until(&mut client, "\r\n\r\n").await;
    assert!(text.starts_with("SIP/2.0 400 "), "{text}");
    assert!(text.contains("Call-ID: tcp-bad"), "{text}");
    client
        .write_all(options("TCP", "127.0.0.1:9", "tcp-good").as_bytes())
        .await
        .unwrap();
    let inbound = next_inbound(&mut rx).await;
    assert_eq!(call_id(&inbound.message), "tcp-good");

    let count = |name: &str, label: &str| -> f64 {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric().iter())
            .filter(|m| m.get_label().iter().any(|l| l.value() == label))
            .map(|m| m.get_counter().get_value())
            .sum()
    };
    assert_eq!(count("sip_messages_received_total", "OPTIONS"), 1.0);
    assert_eq!(count("sip_messages_sent_total", "4xx"), 1.0);
    assert_eq!(count("sip_parse_errors_total", "Bad Max-Forwards"), 1.0);
}
