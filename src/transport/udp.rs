//! The UDP receive loop: one datagram is one message (RFC 3261 §18.3 framing does not apply).

use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::error::TrySendError;

use super::handle::Inner;
use super::{Source, TransportKind};

/// Largest UDP payload; datagrams longer than the message limit are dropped unread.
const MAX_DATAGRAM: usize = 65_535;

pub(crate) async fn run(inner: Arc<Inner>, socket: Arc<UdpSocket>) {
    let Ok(local) = socket.local_addr() else {
        return;
    };
    let limit = inner.settings.limits.max_message_bytes;
    // One byte more than allowed, so an over-size datagram is detected rather than truncated.
    let mut buf = vec![0u8; (limit + 1).min(MAX_DATAGRAM)];
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buf) => received,
            _ = super::wait_shutdown(&mut shutdown) => return,
        };
        let (len, remote) = match received {
            Ok(pair) => pair,
            // ICMP port unreachable from an earlier send shows up here on Linux; keep going.
            Err(_) => continue,
        };
        // Strangers cost one lookup: nothing is parsed, answered or logged for them.
        let Ok(peer) = inner.identify_plain(TransportKind::Udp, remote.ip(), "datagram") else {
            continue;
        };
        let Some(datagram) = buf.get(..len) else {
            continue;
        };
        if datagram.iter().all(u8::is_ascii_whitespace) {
            // CRLF keep-alives some UAs send over UDP: nothing to answer.
            continue;
        }
        if len > limit {
            let reason = crate::sip::ParseErrorKind::TooLarge.reason();
            inner
                .metrics
                .parse_errors
                .with_label_values(&[reason])
                .inc();
            inner.warn_limited(remote.ip(), reason, "datagram over the size limit");
            continue;
        }
        let source = Source {
            kind: TransportKind::Udp,
            local,
            remote,
            connection: None,
            peer,
        };
        match inner.parse_received(Bytes::copy_from_slice(datagram), &source) {
            Ok(inbound) => match inner.inbound.try_send(inbound) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => inner.metrics.inbound_dropped.inc(),
                Err(TrySendError::Closed(_)) => return,
            },
            // The error response goes back to where the datagram came from (not to a Via
            // address we could not validate), so bad input cannot be reflected elsewhere.
            Err(Some(response)) => {
                let _ = socket.send_to(&response, remote).await;
            }
            Err(None) => {}
        }
    }
}
