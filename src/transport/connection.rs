//! One stream connection (TCP or TLS, either direction): framing, keep-alive, timeouts.
//!
//! The timing rules live in [`Liveness`], a plain state machine fed with the current time;
//! [`drive`] is the thin tokio driver around it and the socket.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};
use tokio::time::{timeout, Instant};

use super::handle::{ConnEntry, ConnKey, Inner};
use super::{ConnectionId, Source, TransportKind};
use crate::sip::{FrameEvent, StreamFramer};

const READ_CHUNK: usize = 16 * 1024;
const PING: &[u8] = b"\r\n\r\n";
const PONG: &[u8] = b"\r\n";
/// Queued messages written together at most (one write each loop turn would let a pipelined
/// storm of requests, cut dozens per read, overflow the queue with their answers).
const WRITE_BATCH_MESSAGES: usize = 256;
/// Before closing on bad input, answers to the messages delivered earlier on this connection
/// may still be coming from the SIP core: send what arrives until the queue is quiet this
/// long, for at most [`LINGER_MAX`].
const LINGER_QUIET: Duration = Duration::from_secs(1);
const LINGER_MAX: Duration = Duration::from_secs(3);

/// A slot in the inbound connection limits, released when the connection ends.
pub(crate) struct Permit {
    inner: Arc<Inner>,
    ip: IpAddr,
}

impl Permit {
    pub(crate) fn acquire(inner: &Arc<Inner>, ip: IpAddr) -> Option<Permit> {
        let mut limiter = inner.limiter.lock().ok()?;
        limiter.try_acquire(ip).then(|| Permit {
            inner: inner.clone(),
            ip,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Ok(mut limiter) = self.inner.limiter.lock() {
            limiter.release(self.ip);
        }
    }
}

pub(crate) struct ConnectionSetup {
    pub(crate) kind: TransportKind,
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    /// Set for connections we opened: the reuse key.
    pub(crate) outbound_key: Option<ConnKey>,
    pub(crate) permit: Option<Permit>,
    /// TLS: the end-entity certificate the peer presented, if any.
    pub(crate) peer_cert: Option<CertificateDer<'static>>,
    /// Who is on the other end, decided before the connection is spawned.
    pub(crate) peer: Option<super::Peer>,
}

/// Register the connection and start its task.
pub(crate) fn spawn<S>(inner: Arc<Inner>, stream: S, setup: ConnectionSetup) -> ConnectionId
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let id = inner.next_connection_id();
    let (queue, rx) = mpsc::channel(inner.settings.connection_queue.max(1));
    let close = Arc::new(Notify::new());
    inner.connections.insert(
        id,
        ConnEntry {
            kind: setup.kind,
            local: setup.local,
            remote: setup.remote,
            outbound_key: setup.outbound_key.clone(),
            queue,
            close: close.clone(),
            peer_cert: setup.peer_cert.clone(),
        },
    );
    if let Some(key) = &setup.outbound_key {
        inner.outbound.insert(key.clone(), id);
    }
    inner
        .metrics
        .connections_open
        .with_label_values(&[setup.kind.label()])
        .inc();
    tokio::spawn(drive(inner, stream, id, setup, rx, close));
    id
}

/// The end-entity certificate a TLS peer presented.
pub(crate) fn peer_end_entity<D>(
    connection: &rustls::ConnectionCommon<D>,
) -> Option<CertificateDer<'static>> {
    connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.clone().into_owned())
}

/// What [`Liveness::poll`] asks the driver to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    Nothing,
    /// Send a CRLF keep-alive ping.
    Ping,
    /// Stop offering this connection for new requests.
    Retire,
    Close(&'static str),
}

/// Timing rules of one connection.
#[derive(Debug)]
pub(crate) struct Liveness {
    idle_timeout: Duration,
    message_timeout: Duration,
    keepalive: Option<Duration>,
    last_activity: Instant,
    next_ping: Option<Instant>,
    partial_since: Option<Instant>,
    retire_at: Option<Instant>,
}

impl Liveness {
    pub(crate) fn new(
        now: Instant,
        idle_timeout: Duration,
        message_timeout: Duration,
        keepalive: Option<Duration>,
        max_age: Option<Duration>,
    ) -> Liveness {
        Liveness {
            idle_timeout,
            message_timeout,
            keepalive,
            last_activity: now,
            next_ping: keepalive.map(|k| now + k),
            partial_since: None,
            retire_at: max_age.map(|a| now + a),
        }
    }

    /// Bytes arrived; `buffered` is what the framer holds after cutting whole messages.
    pub(crate) fn on_received(&mut self, now: Instant, buffered: usize, completed_message: bool) {
        self.last_activity = now;
        if buffered == 0 {
            self.partial_since = None;
        } else if completed_message || self.partial_since.is_none() {
            self.partial_since = Some(now);
        }
    }

    /// We sent a SIP message (not a ping).
    pub(crate) fn on_sent_message(&mut self, now: Instant) {
        self.last_activity = now;
    }

    pub(crate) fn deadline(&self) -> Instant {
        let mut at = self.last_activity + self.idle_timeout;
        for candidate in [
            self.partial_since.map(|p| p + self.message_timeout),
            self.next_ping,
            self.retire_at,
        ]
        .into_iter()
        .flatten()
        {
            at = at.min(candidate);
        }
        at
    }

    pub(crate) fn poll(&mut self, now: Instant) -> Due {
        if now >= self.last_activity + self.idle_timeout {
            return Due::Close("idle timeout");
        }
        if self
            .partial_since
            .is_some_and(|p| now >= p + self.message_timeout)
        {
            return Due::Close("incomplete message timeout");
        }
        if self.retire_at.is_some_and(|r| now >= r) {
            self.retire_at = None;
            // A retired connection stops pinging, so it closes at its idle timeout once
            // the responses still due on it have arrived.
            self.next_ping = None;
            return Due::Retire;
        }
        if let (Some(at), Some(every)) = (self.next_ping, self.keepalive) {
            if now >= at {
                self.next_ping = Some(now + every);
                return Due::Ping;
            }
        }
        Due::Nothing
    }
}

async fn drive<S>(
    inner: Arc<Inner>,
    mut stream: S,
    id: ConnectionId,
    setup: ConnectionSetup,
    mut queue: mpsc::Receiver<Bytes>,
    close: Arc<Notify>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let settings = &inner.settings;
    let outbound = setup.outbound_key.is_some();
    let mut live = Liveness::new(
        Instant::now(),
        settings.idle_timeout,
        settings.message_timeout,
        if outbound {
            settings.keepalive_interval
        } else {
            None
        },
        if outbound {
            settings.max_connection_age
        } else {
            None
        },
    );
    let source = Source {
        kind: setup.kind,
        local: setup.local,
        remote: setup.remote,
        connection: Some(id),
        peer: setup.peer,
    };
    let mut framer = StreamFramer::new(settings.limits);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut shutdown = inner.shutdown.subscribe();
    let write_timeout = settings.message_timeout;
    let mut delivered_any = false;
    let queue_capacity = settings.connection_queue.max(1);

    let reason: &'static str = loop {
        let deadline = live.deadline();
        tokio::select! {
            // Backpressure: a peer that pipelines requests faster than it reads our answers
            // is not read from while its answer queue is half full, so answers are not lost
            // to a full queue.
            read = stream.read(&mut buf), if queue_room(&queue, queue_capacity) => match read {
                Ok(0) => break "closed by peer",
                Err(_) => break "read error",
                Ok(n) => {
                    framer.push(&buf[..n]);
                    match process_frames(&inner, &mut framer, &mut stream, &source, write_timeout, &mut delivered_any).await {
                        Ok(completed) => live.on_received(Instant::now(), framer.buffered(), completed),
                        Err(why) => {
                            if delivered_any && matches!(why, UNFRAMEABLE | TOO_LARGE) {
                                send_in_flight(&mut stream, &mut queue, write_timeout).await;
                            }
                            break why;
                        }
                    }
                }
            },
            msg = queue.recv() => match msg {
                Some(msg) => {
                    if write_batch(&mut stream, msg, &mut queue, write_timeout).await.is_err() {
                        break "write failed";
                    }
                    live.on_sent_message(Instant::now());
                }
                None => break "queue closed",
            },
            _ = close.notified() => break "closed locally",
            _ = super::wait_shutdown(&mut shutdown) => break "transport shut down",
            _ = tokio::time::sleep_until(deadline) => match live.poll(Instant::now()) {
                Due::Nothing => {}
                Due::Ping => {
                    if write(&mut stream, PING, write_timeout).await.is_err() {
                        break "write failed";
                    }
                }
                Due::Retire => {
                    if let Some(key) = &setup.outbound_key {
                        inner.outbound.remove_if(key, |_, v| *v == id);
                    }
                    inner
                        .metrics
                        .connections_retired
                        .with_label_values(&[setup.kind.label()])
                        .inc();
                }
                Due::Close(why) => break why,
            },
        }
    };

    inner.connections.remove(&id);
    if let Some(key) = &setup.outbound_key {
        inner.outbound.remove_if(key, |_, v| *v == id);
    }
    inner
        .metrics
        .connections_open
        .with_label_values(&[setup.kind.label()])
        .dec();
    tracing::debug!(connection = id.0, remote = %setup.remote, reason, "connection closed");
    // Best effort: TLS close_notify and FIN, bounded so a stuck peer cannot hold the task.
    let _ = timeout(Duration::from_secs(1), stream.shutdown()).await;
    drop(setup.permit);
}

/// Whether the answer queue is less than half full.
fn queue_room(queue: &mpsc::Receiver<Bytes>, capacity: usize) -> bool {
    queue.len() < capacity.div_ceil(2)
}

/// Write `first` and whatever else is queued already (bounded) in one go.
async fn write_batch<S: AsyncWrite + Unpin>(
    stream: &mut S,
    first: Bytes,
    queue: &mut mpsc::Receiver<Bytes>,
    limit: Duration,
) -> Result<(), ()> {
    let mut more = Vec::new();
    while more.len() < WRITE_BATCH_MESSAGES {
        match queue.try_recv() {
            Ok(msg) => more.push(msg),
            Err(_) => break,
        }
    }
    if more.is_empty() {
        return write(stream, &first, limit).await;
    }
    let mut batch = Vec::with_capacity(first.len() + more.iter().map(Bytes::len).sum::<usize>());
    batch.extend_from_slice(&first);
    for msg in &more {
        batch.extend_from_slice(msg);
    }
    write(stream, &batch, limit).await
}

/// Send the answers still arriving for messages delivered earlier, until the queue is quiet
/// for [`LINGER_QUIET`] or [`LINGER_MAX`] has passed.
async fn send_in_flight<S: AsyncWrite + Unpin>(
    stream: &mut S,
    queue: &mut mpsc::Receiver<Bytes>,
    limit: Duration,
) {
    let give_up = Instant::now() + LINGER_MAX;
    loop {
        let quiet = (Instant::now() + LINGER_QUIET).min(give_up);
        match tokio::time::timeout_at(quiet, queue.recv()).await {
            Ok(Some(msg)) => {
                if write_batch(stream, msg, queue, limit).await.is_err() {
                    return;
                }
            }
            Ok(None) | Err(_) => return,
        }
    }
}

async fn write<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    limit: Duration,
) -> Result<(), ()> {
    match timeout(limit, async {
        stream.write_all(bytes).await?;
        stream.flush().await
    })
    .await
    {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

const UNFRAMEABLE: &str = "unframeable input";
const TOO_LARGE: &str = "message too large";

/// Cut and deliver every whole message in the framer. Returns whether a message completed,
/// or the reason the connection must close.
async fn process_frames<S: AsyncWrite + Unpin>(
    inner: &Inner,
    framer: &mut StreamFramer,
    stream: &mut S,
    source: &Source,
    write_timeout: Duration,
    delivered_any: &mut bool,
) -> Result<bool, &'static str> {
    let mut completed = false;
    loop {
        match framer.next_event() {
            Ok(None) => break,
            Ok(Some(FrameEvent::Message(raw))) => {
                completed = true;
                match inner.parse_received(raw, source) {
                    Ok(inbound) => {
                        if inner.inbound.send(inbound).await.is_err() {
                            return Err("consumer gone");
                        }
                        *delivered_any = true;
                    }
                    Err(Some(response)) => {
                        write(stream, &response, write_timeout)
                            .await
                            .map_err(|()| "write failed")?;
                    }
                    Err(None) => {}
                }
            }
            Ok(Some(FrameEvent::Ping)) => {
                write(stream, PONG, write_timeout)
                    .await
                    .map_err(|()| "write failed")?;
            }
            Ok(Some(FrameEvent::Pong)) => {}
            Err(error) => {
                let reason = error.kind.reason();
                inner
                    .metrics
                    .parse_errors
                    .with_label_values(&[reason])
                    .inc();
                inner.warn_limited(source.remote.ip(), reason, &error.to_string());
                // The header block was readable: say why before closing (400, 513).
                let pending = framer.pending();
                let readable =
                    &pending[..pending.len().min(inner.settings.limits.max_message_bytes)];
                let response = error
                    .can_respond
                    .then(|| {
                        crate::sip::ResponseBuilder::error_for_raw(
                            readable,
                            error.kind.status(),
                            reason,
                        )
                    })
                    .flatten();
                if let Some(response) = response {
                    inner.count_sent(source.kind, &response);
                    let _ = write(stream, &response, write_timeout).await;
                }
                return Err(UNFRAMEABLE);
            }
        }
    }
    if framer.buffered() > inner.settings.limits.max_message_bytes {
        let reason = crate::sip::ParseErrorKind::TooLarge.reason();
        inner
            .metrics
            .parse_errors
            .with_label_values(&[reason])
            .inc();
        inner.warn_limited(
            source.remote.ip(),
            reason,
            "stream message over the size limit",
        );
        return Err(TOO_LARGE);
    }
    Ok(completed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn live(now: Instant) -> Liveness {
        Liveness::new(now, 180 * S, 30 * S, Some(30 * S), Some(3600 * S))
    }

    #[test]
    fn pings_at_interval_and_activity_defers_idle() {
        let t0 = Instant::now();
        let mut l = live(t0);
        assert_eq!(l.deadline(), t0 + 30 * S);
        assert_eq!(l.poll(t0 + 29 * S), Due::Nothing);
        assert_eq!(l.poll(t0 + 30 * S), Due::Ping);
        assert_eq!(l.deadline(), t0 + 60 * S);
        l.on_received(t0 + 50 * S, 0, false); // the pong
        assert_eq!(l.poll(t0 + 200 * S), Due::Ping, "pong kept it alive");
    }

    #[test]
    fn idle_timeout_closes_when_peer_is_silent() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, 180 * S, 30 * S, None, None);
        assert_eq!(l.deadline(), t0 + 180 * S);
        assert_eq!(l.poll(t0 + 179 * S), Due::Nothing);
        l.on_sent_message(t0 + 100 * S);
        assert_eq!(l.poll(t0 + 200 * S), Due::Nothing);
        assert_eq!(l.poll(t0 + 280 * S), Due::Close("idle timeout"));
    }

    #[test]
    fn slow_loris_partial_message_times_out_despite_trickle() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, 180 * S, 30 * S, None, None);
        for second in 1..30 {
            l.on_received(t0 + second * S, 10 + second as usize, false);
            assert_eq!(l.poll(t0 + second * S), Due::Nothing);
        }
        assert_eq!(
            l.poll(t0 + 31 * S),
            Due::Close("incomplete message timeout")
        );
    }

    #[test]
    fn completed_messages_restart_the_partial_clock() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, 180 * S, 30 * S, None, None);
        l.on_received(t0 + S, 5, false);
        l.on_received(t0 + 25 * S, 7, true);
        assert_eq!(l.poll(t0 + 40 * S), Due::Nothing);
        l.on_received(t0 + 41 * S, 0, true);
        assert_eq!(l.poll(t0 + 100 * S), Due::Nothing);
    }

    #[test]
    fn retirement_stops_pings() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, 180 * S, 30 * S, Some(30 * S), Some(45 * S));
        assert_eq!(l.poll(t0 + 30 * S), Due::Ping);
        l.on_received(t0 + 31 * S, 0, false);
        assert_eq!(l.poll(t0 + 45 * S), Due::Retire);
        assert_eq!(l.deadline(), t0 + 211 * S);
        assert_eq!(l.poll(t0 + 100 * S), Due::Nothing);
        assert_eq!(l.poll(t0 + 211 * S), Due::Close("idle timeout"));
    }
}
