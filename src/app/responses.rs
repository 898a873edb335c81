//! Sending the SIP core's answers.
//!
//! Answers that can leave at once (UDP, the request's still-open connection, an open
//! connection to the Via target) go out from one task in the order they were made, so a 100
//! never overtakes its 200 on a stream. An answer whose request's connection is gone needs a
//! new connection to the Via address (RFC 3261 §18.2.2), which may take the whole connect
//! timeout when that address does not reply; such answers are sent from their own tasks,
//! one task per request connection (keeping their order), at most
//! [`MAX_CONNECTING_ANSWERS`] at once. Beyond the limits answers are dropped and counted
//! rather than queued without bound.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, Semaphore};

use super::sip_core::Command;
use crate::ops::RateLimitedLog;
use crate::transaction::TxId;
use crate::transport::{ConnectionId, NotSentNow, Source, TransportHandle, TransportKind};

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

static DROPPED_LOG: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(60));

/// `sip_responses_dropped_total{reason}` plus the failure path back to the SIP core.
#[derive(Clone)]
pub(super) struct AnswerFailures {
    pub(super) dropped: prometheus::IntCounterVec,
    pub(super) commands: mpsc::Sender<Command>,
}

impl AnswerFailures {
    pub(super) fn register(
        registry: &prometheus::Registry,
        commands: mpsc::Sender<Command>,
    ) -> prometheus::Result<AnswerFailures> {
        let dropped = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "sip_responses_dropped_total",
                "Responses dropped before the transport, by reason (queue_full, connect_limit)",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(dropped.clone()))?;
        Ok(AnswerFailures { dropped, commands })
    }

    /// Count and (rate-limited) log a dropped answer, and let its transaction know.
    pub(super) fn drop_answer(&self, reason: &'static str, id: Option<TxId>, remote: SocketAddr) {
        self.dropped.with_label_values(&[reason]).inc();
        if let Some(suppressed) = DROPPED_LOG.check(&reason, Instant::now()) {
            tracing::warn!(reason, %remote, suppressed, "SIP response dropped");
        }
        self.report_failure(id);
    }

    fn report_failure(&self, id: Option<TxId>) {
        if let Some(id) = id {
            let _ = self.commands.try_send(Command::SendFailed(id));
        }
    }
}

/// The queue the SIP core puts answers on (never blocks it: full means dropped).
#[derive(Clone)]
pub(super) struct AnswerQueue {
    queue: mpsc::Sender<Answer>,
    failures: AnswerFailures,
}

impl AnswerQueue {
    pub(super) fn push(&self, answer: Answer) {
        match self.queue.try_send(answer) {
            Ok(()) => {}
            Err(TrySendError::Full((id, source, _))) => {
                self.failures.drop_answer("queue_full", id, source.remote)
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
    failures: AnswerFailures,
) -> AnswerQueue {
    let (queue, mut answers) = mpsc::channel::<Answer>(ANSWER_QUEUE);
    let handle = AnswerQueue {
        queue,
        failures: failures.clone(),
    };
    tokio::spawn(async move {
        let connect_slots = Arc::new(Semaphore::new(MAX_CONNECTING_ANSWERS));
        let mut connecting: HashMap<ConnectKey, mpsc::Sender<Answer>> = HashMap::new();
        while let Some((id, source, bytes)) = answers.recv().await {
            let key = connect_key(&source);
            // Behind an earlier answer still waiting for its connection: stay behind it.
            if let Some(waiting) = connecting.get(&key) {
                match waiting.try_send((id, source, bytes)) {
                    Ok(()) => continue,
                    Err(TrySendError::Full((id, source, _))) => {
                        failures.drop_answer("queue_full", id, source.remote);
                        continue;
                    }
                    Err(TrySendError::Closed((i, s, b))) => {
                        connecting.remove(&key);
                        send_ordered(
                            &transport,
                            &failures,
                            &connect_slots,
                            &mut connecting,
                            (i, s, b),
                        )
                        .await;
                        continue;
                    }
                }
            }
            send_ordered(
                &transport,
                &failures,
                &connect_slots,
                &mut connecting,
                (id, source, bytes),
            )
            .await;
        }
    });
    handle
}

async fn send_ordered(
    transport: &TransportHandle,
    failures: &AnswerFailures,
    connect_slots: &Arc<Semaphore>,
    connecting: &mut HashMap<ConnectKey, mpsc::Sender<Answer>>,
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
        Err(NotSentNow::NeedsConnect(pending)) => {
            let Ok(slot) = connect_slots.clone().try_acquire_owned() else {
                failures.drop_answer("connect_limit", id, source.remote);
                return;
            };
            connecting.retain(|_, waiting| !waiting.is_closed());
            let (more_tx, more) = mpsc::channel(ANSWERS_PER_CONNECT);
            connecting.insert(connect_key(&source), more_tx);
            let transport = transport.clone();
            let failures = failures.clone();
            tokio::spawn(async move {
                if let Err(error) = transport.send_after_connect(pending).await {
                    tracing::debug!(%error, remote = %source.remote, "response not sent");
                    failures.report_failure(id);
                }
                send_rest_in_order(&transport, &failures, more).await;
                drop(slot);
            });
        }
    }
}

/// The answers that queued up behind the first one; the connection it opened is reused.
async fn send_rest_in_order(
    transport: &TransportHandle,
    failures: &AnswerFailures,
    mut more: mpsc::Receiver<Answer>,
) {
    loop {
        let (id, source, bytes) = match more.try_recv() {
            Ok(answer) => answer,
            Err(_) => {
                // Nothing waiting: refuse further answers (the ordered task will send them
                // itself), then send what slipped in before the close.
                more.close();
                match more.try_recv() {
                    Ok(answer) => answer,
                    Err(_) => return,
                }
            }
        };
        if let Err(error) = transport.send_response(&source, bytes).await {
            tracing::debug!(%error, remote = %source.remote, "response not sent");
            failures.report_failure(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{ListenerSpec, Transport, TransportSettings};
    use std::net::Ipv4Addr;

    fn response(transport: &str, via: SocketAddr, branch: &str) -> Bytes {
        Bytes::from(format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/{transport} {via};branch=z9hG4bK-{branch}\r\n\
             From: <sip:a@example.net>;tag=1\r\nTo: <sip:b@example.net>;tag=2\r\n\
             Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ))
    }

    /// A port whose accept queue is full: SYNs to it go unanswered, connects hang.
    fn blackhole() -> (socket2::Socket, Vec<socket2::Socket>, SocketAddr) {
        use socket2::{Domain, Socket, Type};
        let trap = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        trap.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
            .unwrap();
        trap.listen(0).unwrap();
        let addr = trap.local_addr().unwrap().as_socket().unwrap();
        let fill = (0..4)
            .map(|_| {
                let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
                s.set_nonblocking(true).unwrap();
                let _ = s.connect(&addr.into());
                s
            })
            .collect();
        (trap, fill, addr)
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
        let failures = AnswerFailures::register(&registry, commands).unwrap();
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
