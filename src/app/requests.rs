//! Sending the SIP core's requests to peers (`Route::To`): one ordered lane (see
//! [`lanes`](super::lanes)) per destination. Requests to one destination leave in the order
//! the core made them; a connect to a peer that does not answer delays only that peer's
//! requests. At most [`MAX_DESTINATIONS`] lanes run at once, each holding at most
//! [`REQUESTS_PER_DESTINATION`] requests; beyond that a request is dropped, counted
//! (`sip_requests_dropped_total{reason}`) and reported to its transaction as a failed send,
//! which is also what a send that fails in the transport does (`Command::SendFailed`).

use bytes::Bytes;
use tokio::sync::mpsc;

use super::lanes::{LaneQueue, Lanes, Push, SendFailures};
use super::sip_core::Command;
use crate::transaction::TxId;
use crate::transport::{Destination, TransportError, TransportHandle};

/// Destinations with requests in flight at once (Microsoft's proxies, carrier next hops,
/// in-dialog Contacts).
pub(super) const MAX_DESTINATIONS: usize = 256;
/// Requests queued for one destination, e.g. behind the TLS connect to a Teams proxy.
pub(super) const REQUESTS_PER_DESTINATION: usize = 128;

/// A request and its client transaction (to report a failed send).
type Request = (Option<TxId>, Bytes);

/// `sip_requests_dropped_total{reason}` (queue_full, destination_limit) and the failure path.
pub(super) fn request_failures(
    registry: &prometheus::Registry,
    commands: mpsc::Sender<Command>,
) -> prometheus::Result<SendFailures> {
    SendFailures::register(
        registry,
        "request",
        "sip_requests_dropped_total",
        "Requests to peers dropped before the transport, by reason \
         (queue_full, destination_limit)",
        commands,
    )
}

/// Owned by the SIP core; never blocks it.
pub(super) struct RequestSender {
    lanes: Lanes<Destination, Request>,
    transport: TransportHandle,
    failures: SendFailures,
}

impl RequestSender {
    pub(super) fn new(transport: TransportHandle, failures: SendFailures) -> RequestSender {
        RequestSender::with_limits(
            transport,
            failures,
            MAX_DESTINATIONS,
            REQUESTS_PER_DESTINATION,
        )
    }

    fn with_limits(
        transport: TransportHandle,
        failures: SendFailures,
        destinations: usize,
        depth: usize,
    ) -> RequestSender {
        RequestSender {
            lanes: Lanes::new(destinations, depth),
            transport,
            failures,
        }
    }

    /// Queue `bytes` for `dest` behind the requests already queued for it.
    pub(super) fn push(&mut self, dest: Destination, id: Option<TxId>, bytes: Bytes) {
        let first = match self.lanes.push(&dest, (id, bytes)) {
            Push::Queued => return,
            Push::Full((id, _)) => {
                self.failures.drop_message("queue_full", id, dest.addr);
                return;
            }
            Push::NoLane(first) | Push::Finishing(first) => first,
        };
        let addr = dest.addr;
        let transport = self.transport.clone();
        let failures = self.failures.clone();
        let lane_dest = dest.clone();
        let opened = self.lanes.open(dest, move |queue| {
            send_in_order(transport, failures, lane_dest, first, queue)
        });
        if !opened {
            self.failures.drop_message("destination_limit", id, addr);
        }
    }
}

async fn send_in_order(
    transport: TransportHandle,
    failures: SendFailures,
    dest: Destination,
    first: Request,
    mut queue: LaneQueue<Request>,
) {
    let mut next = Some(first);
    while let Some((id, bytes)) = next {
        if let Err(error) = transport.send(dest.clone(), bytes).await {
            tracing::debug!(%error, addr = %dest.addr, "request not sent");
            failures.report_failure(id);
            if is_connect_failure(&error) {
                // What queued up meanwhile was waiting for this very connection: fail it now
                // (as the parallel sends it replaces would have) so calls fail over at once.
                while let Some((id, _)) = queue.queued() {
                    failures.report_failure(id);
                }
            }
        }
        next = queue.next();
    }
}

fn is_connect_failure(error: &TransportError) -> bool {
    matches!(
        error,
        TransportError::Connect { .. }
            | TransportError::ConnectTimeout(_)
            | TransportError::Handshake { .. }
            | TransportError::HandshakeTimeout(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::lanes::tests::blackhole;
    use crate::transport::{ListenerSpec, Transport, TransportKind, TransportSettings};
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;

    fn request(n: usize) -> Bytes {
        Bytes::from(format!(
            "OPTIONS sip:peer.example SIP/2.0\r\nCall-ID: r{n}\r\nContent-Length: 0\r\n\r\n"
        ))
    }

    fn tcp(addr: SocketAddr) -> Destination {
        Destination {
            kind: TransportKind::Tcp,
            addr,
            server_name: None,
        }
    }

    /// The transport and its inbound queue (the transport stops when that is dropped).
    async fn transport(
        connect_timeout: Duration,
    ) -> (TransportHandle, mpsc::Receiver<crate::transport::Inbound>) {
        let settings = TransportSettings {
            listeners: vec![ListenerSpec {
                kind: TransportKind::Udp,
                bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            }],
            connect_timeout,
            ..TransportSettings::default()
        };
        Transport::start(settings, &prometheus::Registry::new())
            .await
            .unwrap()
    }

    async fn next_failure(commands: &mut mpsc::Receiver<Command>) -> TxId {
        let command = tokio::time::timeout(Duration::from_secs(10), commands.recv())
            .await
            .expect("a failure report")
            .expect("commands open");
        match command {
            Command::SendFailed(id) => id,
            _ => panic!("unexpected command"),
        }
    }

    #[tokio::test]
    async fn a_dead_destination_holds_up_only_its_own_requests_and_its_queue_is_bounded() {
        let registry = prometheus::Registry::new();
        let (transport, _inbound) = transport(Duration::from_secs(60)).await;
        let (commands, mut reports) = mpsc::channel(1024);
        let failures = request_failures(&registry, commands).unwrap();
        let depth = 4;
        let mut sender = RequestSender::with_limits(transport.clone(), failures.clone(), 2, depth);
        let (_trap, _fill, trap_addr) = blackhole();

        // The first request hangs in its connect; `depth` more wait behind it, one too many
        // is dropped and its transaction told.
        for n in 0..=depth + 1 {
            sender.push(tcp(trap_addr), Some(TxId(n as u64)), request(n));
        }
        assert_eq!(next_failure(&mut reports).await, TxId(depth as u64 + 1));
        assert_eq!(failures.dropped.with_label_values(&["queue_full"]).get(), 1);

        // Meanwhile requests to a live peer go out at once, in order.
        let peer = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let udp = Destination {
            kind: TransportKind::Udp,
            addr: peer.local_addr().unwrap(),
            server_name: None,
        };
        // (The first request of a lane is held by its task, `depth` more fit in its queue.)
        let live = 100..100 + depth as u64 + 1;
        for n in live.clone() {
            sender.push(udp.clone(), Some(TxId(n)), request(n as usize));
        }
        let mut buf = vec![0u8; 2048];
        for n in live {
            let len = tokio::time::timeout(Duration::from_secs(10), peer.recv(&mut buf))
                .await
                .expect("the live peer's request waited behind the dead one")
                .unwrap();
            let text = String::from_utf8_lossy(&buf[..len]).to_string();
            assert!(text.contains(&format!("Call-ID: r{n}\r\n")), "{text}");
        }

        // Its lane ends once idle. With the dead destination's lane still connecting and the
        // live one's reopened (its task has not run yet), a third destination finds no lane.
        for _ in 0..1000 {
            if sender.lanes.running() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(sender.lanes.running(), 1);
        sender.push(udp.clone(), Some(TxId(201)), request(201));
        let (_trap2, _fill2, trap2) = blackhole();
        sender.push(tcp(trap2), Some(TxId(202)), request(202));
        assert_eq!(next_failure(&mut reports).await, TxId(202));
        assert_eq!(
            failures
                .dropped
                .with_label_values(&["destination_limit"])
                .get(),
            1
        );
        let len = tokio::time::timeout(Duration::from_secs(10), peer.recv(&mut buf))
            .await
            .expect("a live destination gets a lane again")
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..len]).contains("Call-ID: r201\r\n"));
        transport.shutdown();
    }

    #[tokio::test]
    async fn a_failed_connect_fails_the_requests_queued_behind_it() {
        let registry = prometheus::Registry::new();
        let (transport, _inbound) = transport(Duration::from_millis(200)).await;
        let (commands, mut reports) = mpsc::channel(1024);
        let failures = request_failures(&registry, commands).unwrap();
        let mut sender = RequestSender::new(transport.clone(), failures);
        let (_trap, _fill, trap_addr) = blackhole();
        for n in 0..5 {
            sender.push(tcp(trap_addr), Some(TxId(n)), request(n as usize));
        }
        let mut failed = Vec::new();
        for _ in 0..5 {
            failed.push(next_failure(&mut reports).await);
        }
        failed.sort();
        assert_eq!(failed, (0..5).map(TxId).collect::<Vec<_>>());
        transport.shutdown();
    }
}
