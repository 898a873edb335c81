//! A stand-in for Microsoft's Direct Routing proxy that speaks real mutual TLS to the SBC and
//! plain TCP to SIPp (which has no TLS), behaving on the wire as the brief says Microsoft does
//! (teams-direct-routing.md §1.7):
//!
//! * the SBC connects to [`MicrosoftStandIn::proxy_addr`] over TLS; the stand-in presents the
//!   dev `sip.pstnhub.microsoft.com` certificate and demands the SBC's client certificate
//!   (signed by the dev CA);
//! * Microsoft's own requests (from a SIPp playing Teams, connected to
//!   [`MicrosoftStandIn::entry_addr`]) go to the SBC on TLS connections the stand-in opens
//!   itself, from two Microsoft source addresses in turn, presenting that certificate;
//! * it is a proxy, not a pipe: each request from the SBC is routed by its Request-URI (an
//!   `ip:port` in 127.0.0.0/8 is a SIPp; a Microsoft name goes to the default SIPp), each
//!   response back along the path of its request (by the top Via branch), and OPTIONS pings
//!   are answered 200 like Microsoft does;
//! * a request the SBC sends on one of Microsoft's connections is a protocol violation
//!   (Microsoft's connections carry Microsoft's requests only): it is counted in
//!   [`MicrosoftStandIn::violations`] and still routed, so the test reports it instead of
//!   hanging.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;

use super::tls::take_message;

type Writer = mpsc::UnboundedSender<Vec<u8>>;

/// Where a message came from, which decides where it may go.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    /// A TLS connection the SBC opened to the proxy: the `n`th (from 1).
    SbcOpened(usize),
    /// A TLS connection the stand-in (Microsoft) opened to the SBC.
    MicrosoftOpened,
    /// A TCP connection to or from a SIPp playing Teams.
    Sipp,
}

struct State {
    default_target: Mutex<Option<SocketAddr>>,
    /// The stand-in's own TLS address: a Request-URI naming it means "Microsoft".
    own: Mutex<Option<SocketAddr>>,
    sbc_tls: Mutex<Option<SocketAddr>>,
    server_name: String,
    client: Arc<rustls::ClientConfig>,
    sources: [Ipv4Addr; 2],
    next_source: AtomicUsize,
    /// Top Via branch of a request → the connection its responses go back on.
    returns: Mutex<HashMap<String, Writer>>,
    /// Connections the stand-in opened to each SIPp.
    to_sipp: Mutex<HashMap<SocketAddr, Writer>>,
    /// Call-ID of a dialog Microsoft (a SIPp) started → the connection it came from: the
    /// SBC's requests in that dialog go back to that client, as Microsoft's proxy does.
    dialogs: Mutex<HashMap<String, Writer>>,
    /// Microsoft's own connections to the SBC, by source address.
    to_sbc: Mutex<HashMap<Ipv4Addr, Writer>>,
    violations: AtomicUsize,
    sbc_connections: AtomicUsize,
    microsoft_connections: AtomicUsize,
    /// Start line of every request from the SBC, with the number of the SBC's connection it
    /// came on (0: one Microsoft opened).
    requests_from_sbc: Mutex<Vec<(usize, String)>>,
}

pub struct MicrosoftStandIn {
    runtime: tokio::runtime::Runtime,
    state: Arc<State>,
    pub proxy_addr: SocketAddr,
    pub entry_addr: SocketAddr,
}

fn certificates(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn configs(certs: &Path) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(&certs.join("ca.pem")) {
        roots.add(cert).unwrap();
    }
    let roots = Arc::new(roots);
    let chain = certificates(&certs.join("teams.pem"));
    let key = || PrivateKeyDer::from_pem_file(certs.join("teams.key")).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key())
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key())
        .unwrap();
    (Arc::new(server), Arc::new(client))
}

impl MicrosoftStandIn {
    /// Listen on `ip` (a Microsoft address of the lab) with the dev certificates in `certs`;
    /// Microsoft's own connections leave from `sources` in turn. `server_name`: the SBC name
    /// the stand-in checks in the SBC's certificate.
    pub fn start(certs: &Path, ip: Ipv4Addr, sources: [Ipv4Addr; 2], server_name: &str) -> Self {
        Self::start_at(certs, (ip, 0).into(), sources, server_name)
    }

    /// [`MicrosoftStandIn::start`] with its TLS proxy listening on `proxy` (port 0: any free
    /// port), e.g. the same port on two addresses that one FQDN may resolve to.
    pub fn start_at(
        certs: &Path,
        proxy: SocketAddr,
        sources: [Ipv4Addr; 2],
        server_name: &str,
    ) -> Self {
        let ip = proxy.ip();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (server, client) = configs(certs);
        let state = Arc::new(State {
            default_target: Mutex::new(None),
            own: Mutex::new(None),
            sbc_tls: Mutex::new(None),
            server_name: server_name.to_string(),
            client,
            sources,
            next_source: AtomicUsize::new(0),
            returns: Mutex::new(HashMap::new()),
            to_sipp: Mutex::new(HashMap::new()),
            dialogs: Mutex::new(HashMap::new()),
            to_sbc: Mutex::new(HashMap::new()),
            violations: AtomicUsize::new(0),
            sbc_connections: AtomicUsize::new(0),
            microsoft_connections: AtomicUsize::new(0),
            requests_from_sbc: Mutex::new(Vec::new()),
        });
        let (proxy, entry) = runtime.block_on(async {
            (
                TcpListener::bind(proxy).await.unwrap(),
                TcpListener::bind((ip, 0)).await.unwrap(),
            )
        });
        let proxy_addr = proxy.local_addr().unwrap();
        *state.own.lock().unwrap() = Some(proxy_addr);
        let entry_addr = entry.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let s = state.clone();
        runtime.spawn(async move {
            while let Ok((tcp, _)) = proxy.accept().await {
                let (acceptor, s) = (acceptor.clone(), s.clone());
                tokio::spawn(async move {
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    {
                        let n = s.sbc_connections.fetch_add(1, Ordering::SeqCst) + 1;
                        serve(s, tls, Side::SbcOpened(n)).await;
                    }
                });
            }
        });
        let s = state.clone();
        runtime.spawn(async move {
            while let Ok((tcp, _)) = entry.accept().await {
                tokio::spawn(serve(s.clone(), tcp, Side::Sipp));
            }
        });
        MicrosoftStandIn {
            runtime,
            state,
            proxy_addr,
            entry_addr,
        }
    }

    /// Where requests for Microsoft names (a new call's INVITE) go: the SIPp playing Teams.
    pub fn route_default_to(&self, sipp: SocketAddr) {
        *self.state.default_target.lock().unwrap() = Some(sipp);
    }

    /// The SBC's TLS listener, where Microsoft's own requests go.
    pub fn send_to_sbc(&self, sbc_tls: SocketAddr) {
        *self.state.sbc_tls.lock().unwrap() = Some(sbc_tls);
    }

    /// Requests the SBC sent on connections Microsoft opened (must stay 0).
    pub fn violations(&self) -> usize {
        self.state.violations.load(Ordering::SeqCst)
    }

    /// TLS connections the SBC opened to the stand-in so far.
    pub fn sbc_connections(&self) -> usize {
        self.state.sbc_connections.load(Ordering::SeqCst)
    }

    /// TLS connections the stand-in opened to the SBC so far.
    pub fn microsoft_connections(&self) -> usize {
        self.state.microsoft_connections.load(Ordering::SeqCst)
    }

    /// Start lines of every request the SBC sent (OPTIONS included), in order.
    pub fn requests_from_sbc(&self) -> Vec<String> {
        self.requests_from_sbc_by_connection()
            .into_iter()
            .map(|(_, line)| line)
            .collect()
    }

    /// [`MicrosoftStandIn::requests_from_sbc`] with the number of the SBC's connection each
    /// came on (1 for the first the SBC opened; 0 for one Microsoft opened, a violation).
    pub fn requests_from_sbc_by_connection(&self) -> Vec<(usize, String)> {
        self.state.requests_from_sbc.lock().unwrap().clone()
    }

    /// Close every connection Microsoft opened to the SBC, as Microsoft does when idle.
    pub fn close_microsoft_connections(&self) {
        self.state.to_sbc.lock().unwrap().clear();
    }
}

fn start_line(message: &str) -> &str {
    message.lines().next().unwrap_or_default()
}

fn header<'a>(message: &'a str, names: &[&str]) -> Option<&'a str> {
    let head = &message[..message.find("\r\n\r\n").unwrap_or(message.len())];
    head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        names
            .iter()
            .any(|n| name.trim().eq_ignore_ascii_case(n))
            .then(|| value.trim())
    })
}

fn branch(message: &str) -> Option<String> {
    header(message, &["via", "v"])?
        .split(';')
        .find_map(|p| p.trim().strip_prefix("branch="))
        .map(|b| b.split(',').next().unwrap_or(b).trim().to_string())
}

/// `ip:port` of a request's URI when it names a lab address.
fn uri_target(message: &str) -> Option<SocketAddr> {
    let uri = start_line(message).split(' ').nth(1)?;
    let rest = uri.strip_prefix("sip:")?;
    let host_port = rest.rsplit('@').next()?.split([';', '>']).next()?;
    let addr: SocketAddr = host_port.parse().ok()?;
    match addr {
        SocketAddr::V4(v4) if v4.ip().octets()[0] == 127 => Some(addr),
        _ => None,
    }
}

fn options_answer(request: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    let head = &request[..request.find("\r\n\r\n").unwrap_or(request.len())];
    for line in head.lines().skip(1) {
        let name = line.split(':').next().unwrap_or_default().trim();
        if ["via", "v", "from", "f", "call-id", "i", "cseq"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
        {
            out.push_str(line);
            out.push_str("\r\n");
        } else if name.eq_ignore_ascii_case("to") || name.eq_ignore_ascii_case("t") {
            out.push_str(line);
            out.push_str(";tag=ms-options\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// Read messages from one connection and route each; write what others route to it.
async fn serve<S>(state: Arc<State>, stream: S, side: Side)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        while let Some(message) = take_message(&mut buffer) {
            route(&state, &message, side, &tx).await;
        }
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn route(state: &Arc<State>, message: &str, side: Side, from: &Writer) {
    let is_request = !message.starts_with("SIP/2.0 ");
    let Some(branch) = branch(message) else {
        return;
    };
    if !is_request {
        let back = state.returns.lock().unwrap().get(&branch).cloned();
        if let Some(back) = back {
            let _ = back.send(message.as_bytes().to_vec());
        }
        return;
    }
    match side {
        Side::SbcOpened(_) | Side::MicrosoftOpened => {
            let connection = match side {
                Side::SbcOpened(n) => n,
                _ => {
                    state.violations.fetch_add(1, Ordering::SeqCst);
                    0
                }
            };
            state
                .requests_from_sbc
                .lock()
                .unwrap()
                .push((connection, start_line(message).to_string()));
            // Out-of-dialog OPTIONS are the SBC's health pings: Microsoft answers those.
            let in_dialog = header(message, &["to", "t"]).is_some_and(|to| to.contains(";tag="));
            if message.starts_with("OPTIONS ") && !in_dialog {
                let _ = from.send(options_answer(message).into_bytes());
                return;
            }
            state.returns.lock().unwrap().insert(branch, from.clone());
            let dialog = header(message, &["call-id", "i"])
                .and_then(|id| state.dialogs.lock().unwrap().get(id).cloned())
                .filter(|writer| !writer.is_closed());
            if let Some(client) = dialog {
                let _ = client.send(message.as_bytes().to_vec());
                return;
            }
            let own = *state.own.lock().unwrap();
            let target = uri_target(message)
                .filter(|t| Some(*t) != own)
                .or(*state.default_target.lock().unwrap());
            let Some(target) = target else { return };
            if let Some(to) = sipp_connection(state, target).await {
                let _ = to.send(message.as_bytes().to_vec());
            }
        }
        Side::Sipp => {
            state.returns.lock().unwrap().insert(branch, from.clone());
            let initial = header(message, &["to", "t"]).is_some_and(|to| !to.contains(";tag="));
            if let (true, Some(call_id)) = (initial, header(message, &["call-id", "i"])) {
                state
                    .dialogs
                    .lock()
                    .unwrap()
                    .insert(call_id.to_string(), from.clone());
            }
            if let Some(to) = microsoft_connection(state).await {
                let _ = to.send(message.as_bytes().to_vec());
            }
        }
    }
}

async fn sipp_connection(state: &Arc<State>, target: SocketAddr) -> Option<Writer> {
    if let Some(open) = state.to_sipp.lock().unwrap().get(&target) {
        if !open.is_closed() {
            return Some(open.clone());
        }
    }
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind((state.sources[0], 0).into()).ok()?;
    let tcp: TcpStream = socket.connect(target).await.ok()?;
    let tx = serve_opened(state.clone(), tcp, Side::Sipp, move |state| {
        state.to_sipp.lock().unwrap().remove(&target);
    });
    state.to_sipp.lock().unwrap().insert(target, tx.clone());
    Some(tx)
}

/// Microsoft's own TLS connection to the SBC from the next source address (opened when
/// none is open from it).
async fn microsoft_connection(state: &Arc<State>) -> Option<Writer> {
    let turn = state.next_source.fetch_add(1, Ordering::SeqCst);
    let source = state.sources[turn % state.sources.len()];
    if let Some(open) = state.to_sbc.lock().unwrap().get(&source) {
        if !open.is_closed() {
            return Some(open.clone());
        }
    }
    let sbc = (*state.sbc_tls.lock().unwrap())?;
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind((source, 0).into()).ok()?;
    let tcp = socket.connect(sbc).await.ok()?;
    let connector = tokio_rustls::TlsConnector::from(state.client.clone());
    let name = ServerName::try_from(state.server_name.clone()).ok()?;
    let tls = connector.connect(name, tcp).await.ok()?;
    state.microsoft_connections.fetch_add(1, Ordering::SeqCst);
    let tx = serve_opened(state.clone(), tls, Side::MicrosoftOpened, move |state| {
        state.to_sbc.lock().unwrap().remove(&source);
    });
    state.to_sbc.lock().unwrap().insert(source, tx.clone());
    Some(tx)
}

/// Serve a connection the stand-in opened and return its writer; the connection closes once
/// the stand-in forgets the writer.
/// `closed` runs when the peer closes it, so it is not used again.
fn serve_opened<S>(
    state: Arc<State>,
    stream: S,
    side: Side,
    closed: impl FnOnce(&State) + Send + 'static,
) -> Writer
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
        // Every sender gone (the stand-in forgot this connection): close it.
        let _ = writer.shutdown().await;
    });
    let from = tx.downgrade();
    tokio::spawn(async move {
        let mut buffer = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            while let Some(message) = take_message(&mut buffer) {
                let Some(from) = from.upgrade() else { return };
                route(&state, &message, side, &from).await;
            }
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    closed(&state);
                    return;
                }
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
    });
    tx
}
