//! Binding sockets and accepting stream connections.

use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::timeout;

use super::connection::{self, ConnectionSetup, Permit};
use super::handle::{Inner, Stranger};
use super::{TransportError, TransportKind};

fn socket(kind: TransportKind, addr: SocketAddr) -> Result<Socket, TransportError> {
    let bind_err = |source| TransportError::Bind { kind, addr, source };
    let (ty, proto) = match kind {
        TransportKind::Udp => (Type::DGRAM, Protocol::UDP),
        _ => (Type::STREAM, Protocol::TCP),
    };
    let socket = Socket::new(Domain::for_address(addr), ty, Some(proto)).map_err(bind_err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(bind_err)?;
    }
    if kind.is_stream() {
        socket.set_reuse_address(true).map_err(bind_err)?;
    }
    socket.set_nonblocking(true).map_err(bind_err)?;
    socket.bind(&addr.into()).map_err(bind_err)?;
    Ok(socket)
}

pub(crate) fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, TransportError> {
    let bind_err = |source| TransportError::Bind {
        kind: TransportKind::Udp,
        addr,
        source,
    };
    let socket = socket(TransportKind::Udp, addr)?;
    UdpSocket::from_std(socket.into()).map_err(bind_err)
}

pub(crate) fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, TransportError> {
    let bind_err = |source| TransportError::Bind {
        kind: TransportKind::Tcp,
        addr,
        source,
    };
    let socket = socket(TransportKind::Tcp, addr)?;
    socket.listen(1024).map_err(bind_err)?;
    TcpListener::from_std(socket.into()).map_err(bind_err)
}

pub(crate) async fn run_accept(inner: Arc<Inner>, kind: TransportKind, listener: TcpListener) {
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = super::wait_shutdown(&mut shutdown) => return,
        };
        let (tcp, remote) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let peer = match kind {
            TransportKind::Tls => match inner.may_be_tls_peer(remote.ip()) {
                true => Ok(None),
                false => Err(Stranger),
            },
            _ => inner.identify_plain(kind, remote.ip(), "accept"),
        };
        let Ok(peer) = peer else {
            inner
                .metrics
                .connections_refused
                .with_label_values(&[kind.label()])
                .inc();
            drop(tcp);
            continue;
        };
        let Some(permit) = Permit::acquire(&inner, remote.ip()) else {
            inner
                .metrics
                .connections_refused
                .with_label_values(&[kind.label()])
                .inc();
            inner.warn_limited(
                remote.ip(),
                "connection limit",
                "inbound connection refused",
            );
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let Ok(local) = tcp.local_addr() else {
            continue;
        };
        let setup = ConnectionSetup {
            kind,
            local,
            remote,
            outbound_key: None,
            permit: Some(permit),
            peer_cert: None,
            peer,
        };
        match kind {
            TransportKind::Tls => {
                tokio::spawn(accept_tls(inner.clone(), tcp, setup));
            }
            _ => {
                connection::spawn(inner.clone(), tcp, setup);
            }
        }
    }
}

async fn accept_tls(inner: Arc<Inner>, tcp: TcpStream, mut setup: ConnectionSetup) {
    let Some(configs) = inner.tls.load_full() else {
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(configs.server.clone());
    let handshake = timeout(inner.settings.tls_handshake_timeout, acceptor.accept(tcp)).await;
    let outcome = match &handshake {
        Err(_) => "timeout",
        Ok(Err(_)) => "error",
        Ok(Ok(_)) => "ok",
    };
    inner
        .metrics
        .tls_handshakes
        .with_label_values(&["inbound", outcome])
        .inc();
    match handshake {
        Ok(Ok(stream)) => {
            setup.peer_cert = connection::peer_end_entity(stream.get_ref().1);
            // The handshake proved the chain; the name and the address together say who it
            // is. Nobody recognisable gets the connection closed before a byte is read.
            match inner.identify_tls(setup.remote.ip(), setup.peer_cert.as_ref()) {
                Ok(peer) => {
                    setup.peer = peer;
                    connection::spawn(inner, stream, setup);
                }
                Err(Stranger) => drop(stream),
            }
        }
        Ok(Err(error)) => {
            inner.warn_limited(
                setup.remote.ip(),
                "tls handshake failed",
                &error.to_string(),
            );
        }
        Err(_) => {
            inner.warn_limited(setup.remote.ip(), "tls handshake timeout", "");
        }
    }
}
