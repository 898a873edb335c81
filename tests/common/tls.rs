//! A blocking mutual-TLS SIP client for the tests that play Microsoft (or an impostor): it
//! connects from a chosen loopback address, presents a chosen certificate and trusts a chosen
//! CA, so the SBC's identity rules (transport, certificate and address together) can be
//! exercised from outside, one message at a time.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

pub struct TlsPeer {
    stream: StreamOwned<ClientConnection, TcpStream>,
    buffered: Vec<u8>,
}

/// A TCP connection to `to` from `from` (port chosen by the OS).
pub fn tcp_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((from, 0)).into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(stream)
}

impl TlsPeer {
    /// Connect from `from` to `to` presenting `chain`/`key` and trusting `ca` for the SBC's
    /// certificate (`server_name`). Fails when the handshake fails.
    pub fn connect(
        from: Ipv4Addr,
        to: SocketAddr,
        chain: &Path,
        key: &Path,
        ca: &Path,
        server_name: &str,
    ) -> Result<TlsPeer, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).map_err(|e| e.to_string())? {
            roots
                .add(cert.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(chain)
            .map_err(|e| e.to_string())?
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| e.to_string())?;
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
        let connection =
            ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
        let tcp = tcp_from(from, to).map_err(|e| e.to_string())?;
        let mut stream = StreamOwned::new(connection, tcp);
        let deadline = Instant::now() + Duration::from_secs(5);
        while stream.conn.is_handshaking() {
            if Instant::now() > deadline {
                return Err("handshake timed out".into());
            }
            match stream.conn.complete_io(&mut stream.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(TlsPeer {
            stream,
            buffered: Vec::new(),
        })
    }

    pub fn send(&mut self, message: &str) -> std::io::Result<()> {
        self.stream.write_all(message.as_bytes())?;
        self.stream.flush()
    }

    /// The next whole SIP message within `limit` (headers and a Content-Length body);
    /// `Err` when the SBC closed the connection or nothing came.
    pub fn recv(&mut self, limit: Duration) -> Result<String, String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(message) = take_message(&mut self.buffered) {
                return Ok(message);
            }
            if Instant::now() > deadline {
                return Err("no message in time".into());
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("connection closed by the SBC".into()),
                Ok(n) => self.buffered.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Receive messages until one starts with `prefix`.
    pub fn recv_starting(&mut self, prefix: &str, limit: Duration) -> Result<String, String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self.recv(left)?;
            if message.starts_with(prefix) {
                return Ok(message);
            }
        }
    }
}

/// Cut one whole message (CRLF keep-alives skipped) off the front of `buffer`.
pub fn take_message(buffer: &mut Vec<u8>) -> Option<String> {
    while buffer.starts_with(b"\r\n") {
        buffer.drain(..2);
    }
    let text = String::from_utf8_lossy(buffer).to_string();
    let end = text.find("\r\n\r\n")? + 4;
    let length = text[..end]
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            let name = name.trim();
            (name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l"))
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    if buffer.len() < end + length {
        return None;
    }
    let message: Vec<u8> = buffer.drain(..end + length).collect();
    Some(String::from_utf8_lossy(&message).to_string())
}
