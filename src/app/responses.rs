//! Sending the SIP core's answers.
//!
//! Answers that can leave at once (UDP, the request's still-open connection, an open
//! connection to the Via target) go out from one task in the order they were made, so a 100
//! never overtakes its 200 on a stream. An answer whose request's connection is gone needs a
//! new connection to the Via address (RFC 3261 §18.2.2), which may take the whole connect
//! timeout when that address does not reply; such answers go to an ordered lane (see
//! [`lanes`](super::lanes)) per request connection, at most [`MAX_CONNECTING_ANSWERS`]
//! lanes at once, and later answers for that connection queue behind them. Beyond the
//! limits answers are dropped and counted rather than queued without bound.

use std::net::SocketAddr;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::lanes::{LaneQueue, Lanes, Push, SendFailures};
use super::sip_core::Command;
use crate::transaction::TxId;
use crate::transport::{
    ConnectionId, NeedsConnect, NotSentNow, Source, TransportHandle, TransportKind,
};

/// One answer: its server transaction (to report a failed send), where the request came
/// from, and the bytes.
pub(super) type Answer = (Option<TxId>, Source, Bytes);

/// Answers waiting for the ordered sender.
pub(super) const ANSWER_QUEUE: usize = 4096;
/// Answers waiting for a new connection, in all request connections together.
pub(super) const MAX_CONNECTING_ANSWERS: usize = 64;
/// Answers queued behind one pending connect (provisional and final answers of a few
/// transactions on the same connection).
const ANSWERS_PER_CONNECT: usize = 32;

/// `sip_responses_dropped_total{reason}` (queue_full, connect_limit) and the failure path.
pub(super) fn answer_failures(
    registry: &prometheus::Registry,
    commands: mpsc::Sender<Command>,
) -> prometheus::Result<SendFailures> {
    SendFailures::register(
        registry,
        "response",
        "sip_responses_dropped_total",
        "Responses dropped before the transport, by reason (queue_full, connect_limit)",
        commands,
    )
}

/// The queue the SIP core puts answers on (never blocks it: full means dropped).
#[derive(Clone)]
pub(super) struct AnswerQueue {
    queue: mpsc::Sender<Answer>,
    failures: SendFailures,
}

impl AnswerQueue {
    pub(super) fn push(&self, answer: Answer) {
        match self.queue.try_send(answer) {
            Ok(()) => {}
            Err(TrySendError::Full((id, source, _))) => {
                self.failures.drop_message("queue_full", id, source.remote)
            }
            // The sender task ended: the SBC is shutting down.
            Err(TrySendError::Closed(_)) => {}
        }
    }
}

/// Which request connection an answer belongs to (answers on one keep their order).
type ConnectKey = (TransportKind, SocketAddr, Option<ConnectionId>);

fn connect_key(source: &Source) -> ConnectKey {
    (source.kind, source.remote, source.connection)
}

pub(super) fn spawn_response_sender(
    transport: TransportHandle,
    failures: SendFailures,
) -> AnswerQueue {
    let (queue, mut answers) = mpsc::channel::<Answer>(ANSWER_QUEUE);
    let handle = AnswerQueue {
        queue,
        failures: failures.clone(),
    };
    tokio::spawn(async move {
        let mut connecting = Lanes::new(MAX_CONNECTING_ANSWERS, ANSWERS_PER_CONNECT);
        while let Some(answer) = answers.recv().await {
            // Behind an earlier answer still waiting for its connection: stay behind it.
            match connecting.push(&connect_key(&answer.1), answer) {
                Push::Queued => {}
                Push::Full((id, source, _)) => {
                    failures.drop_message("queue_full", id, source.remote)
                }
                Push::NoLane(answer) => {
                    send_ordered(&transport, &failures, &mut connecting, answer).await
                }
                Push::Finishing((id, source, bytes)) => open_lane(
                    &transport,
                    &failures,
                    &mut connecting,
                    (id, source),
                    FirstAnswer::Behind(bytes),
                ),
            }
        }
    });
    handle
}

async fn send_ordered(
    transport: &TransportHandle,
    failures: &SendFailures,
    connecting: &mut Lanes<ConnectKey, Answer>,
    (id, source, bytes): Answer,
) {
    match transport
        .send_response_without_connecting(&source, bytes)
        .await
    {
        Ok(_) => {}
        Err(NotSentNow::Failed(error)) => {
            tracing::debug!(%error, remote = %source.remote, "response not sent");
            failures.report_failure(id);
        }
        Err(NotSentNow::NeedsConnect(pending)) => open_lane(
            transport,
            failures,
            connecting,
            (id, source),
            FirstAnswer::NeedsConnect(pending),
        ),
    }
}

/// The answer that opens a lane for its request connection.
enum FirstAnswer {
    /// It needs a new connection to the Via target.
    NeedsConnect(NeedsConnect),
    /// The connection's previous lane is still sending: it goes after those.
    Behind(Bytes),
}

fn open_lane(
    transport: &TransportHandle,
    failures: &SendFailures,
    connecting: &mut Lanes<ConnectKey, Answer>,
    (id, source): (Option<TxId>, Source),
    first: FirstAnswer,
) {
    let key = connect_key(&source);
    let remote = source.remote;
    let transport = transport.clone();
    let lane_failures = failures.clone();
    let opened = connecting.open(key, move |more| async move {
        let sent = match first {
            FirstAnswer::NeedsConnect(pending) => transport.send_after_connect(pending).await,
            FirstAnswer::Behind(bytes) => transport.send_response(&source, bytes).await,
        };
        if let Err(error) = sent {
            tracing::debug!(%error, %remote, "response not sent");
            lane_failures.report_failure(id);
        }
        send_rest_in_order(&transport, &lane_failures, more).await;
    });
    if !opened {
        failures.drop_message("connect_limit", id, remote);
    }
}

/// The answers that queued up behind the first one; the connection it opened is reused.
async fn send_rest_in_order(
    transport: &TransportHandle,
    failures: &SendFailures,
    mut more: LaneQueue<Answer>,
) {
    while let Some((id, source, bytes)) = more.next() {
        if let Err(error) = transport.send_response(&source, bytes).await {
            tracing::debug!(%error, remote = %source.remote, "response not sent");
            failures.report_failure(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::lanes::tests::blackhole;
    use crate::transport::{ListenerSpec, Transport, TransportSettings};
    use std::net::Ipv4Addr;
    use std::time::Duration;

    fn response(transport: &str, via: SocketAddr, branch: &str) -> Bytes {
        Bytes::from(format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/{transport} {via};branch=z9hG4bK-{branch}\r\n\
             From: <sip:a@example.net>;tag=1\r\nTo: <sip:b@example.net>;tag=2\r\n\
             Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ))
    }

    #[tokio::test]
    async fn answers_waiting_for_connects_are_limited_and_never_hold_up_udp() {
        let registry = prometheus::Registry::new();
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let settings = TransportSettings {
            listeners: vec![ListenerSpec {
                kind: TransportKind::Udp,
                bind: any,
            }],
            connect_timeout: Duration::from_secs(60),
            ..TransportSettings::default()
        };
        let (transport, _inbound) = Transport::start(settings, &registry).await.unwrap();
        let udp_local = transport.local_addr(TransportKind::Udp).unwrap();
        let (commands, _commands_rx) = mpsc::channel(1024);
        let failures = answer_failures(&registry, commands).unwrap();
        let queue = spawn_response_sender(transport.clone(), failures.clone());
        let (_trap, _fill, trap_addr) = blackhole();

        // One more request connection than the limit, each gone, each answer aimed at the
        // blackholed Via port.
        for i in 0..=MAX_CONNECTING_ANSWERS {
            let source = Source {
                kind: TransportKind::Tcp,
                local: udp_local,
                remote: SocketAddr::from((Ipv4Addr::LOCALHOST, 20_000 + i as u16)),
                connection: None,
                peer: None,
            };
            queue.push((None, source, response("TCP", trap_addr, &format!("t{i}"))));
        }
        let limited = || failures.dropped.with_label_values(&["connect_limit"]).get();
        for _ in 0..500 {
            if limited() >= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(limited(), 1, "exactly the answer over the limit is dropped");

        let client = tokio::net::UdpSocket::bind(any).await.unwrap();
        let client_addr = client.local_addr().unwrap();
        let source = Source {
            kind: TransportKind::Udp,
            local: udp_local,
            remote: client_addr,
            connection: None,
            peer: None,
        };
        queue.push((None, source, response("UDP", client_addr, "udp")));
        let mut buf = vec![0u8; 4096];
        let received = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
            .await
            .expect("the UDP answer waited behind the pending connects")
            .unwrap();
        assert!(buf[..received].starts_with(b"SIP/2.0 200 OK"));
        transport.shutdown();
    }
}
