//! RFC 3261 §17 transactions (client and server, INVITE and non-INVITE) as a sans-I/O state
//! machine, with the RFC 6026 "Accepted" state for INVITE 2xx.
//!
//! [`TransactionLayer`] owns every transaction. A driver feeds it with
//! [`TransactionLayer::on_incoming`], [`TransactionLayer::send_request`],
//! [`TransactionLayer::send_response`], [`TransactionLayer::on_transport_error`] and
//! [`TransactionLayer::handle_timeout`], then drains [`TransactionLayer::poll_output`] and sleeps
//! until [`TransactionLayer::poll_timeout`]. The layer is generic over an opaque route token `T`
//! (where a message came from / goes to), so it knows nothing of sockets. Whether a transport is
//! reliable is read from the top Via (`UDP` is unreliable, anything else reliable), since that is
//! the transport the request travels on.
//!
//! ```text
//! // one task (or shard) owns the layer; T is e.g. a connection id or SocketAddr
//! layer.on_incoming(now, parsed_msg, source_token);          // from the transport
//! let tx = layer.send_request(now, request_msg, dest_token)?; // TU -> network
//! layer.send_response(now, tx, response_bytes)?;              // TU answers a server tx
//! layer.send_stateless(dest_token, ack_for_2xx_bytes);        // TU's ACK for a 2xx
//! while let Some(out) = layer.poll_output() {
//!     match out {
//!         Output::Transmit { tx, dest, bytes } => // send; on failure
//!             // layer.on_transport_error(now, tx) when tx is Some
//!         Output::Deliver(event) => // to the TU (call, OPTIONS responder, pinger)
//!     }
//! }
//! sleep_until(layer.poll_timeout()); layer.handle_timeout(now);
//! ```
//!
//! What the layer does so the TU does not: 100 Trying for every INVITE at once; absorbing
//! request and response retransmissions; the ACK for non-2xx final responses; retransmitting
//! a 2xx to INVITE over UDP until its ACK arrives (stop: any ACK with the same Call-ID and
//! CSeq number); a 503 when the table is full; a 408 when the TU leaves an INVITE unanswered
//! for `timer_c`. What the TU still does: ACK every 2xx it receives (each one is delivered),
//! answer a CANCEL (200) and its INVITE (487), build CANCEL with [`cancel_for`].

mod build;
mod key;
mod layer;
mod metrics;
mod state;

#[cfg(test)]
mod tests;

use std::time::Duration;

use bytes::Bytes;

use crate::sip::Message;

pub use build::{ack_for_non_2xx, cancel_for, new_branch, new_tag};
pub use layer::TransactionLayer;
pub use metrics::TransactionMetrics;

/// Timer values (RFC 3261 §17.1.1.1 / Table 4) and resource limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionSettings {
    /// RTT estimate. Default 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses. Default 4 s.
    pub t2: Duration,
    /// Maximum time a message stays in the network. Default 5 s.
    pub t4: Duration,
    /// Live transactions (client + server). A new request beyond this gets a stateless 503;
    /// `send_request` beyond it fails with [`TxError::Full`].
    pub max_transactions: usize,
    /// Live server transactions one source address may hold ([`Payer::Source`]); beyond
    /// it, its new requests get a stateless 503 while everyone else is served.
    pub max_transactions_per_source: usize,
    /// Live server transactions one peer (Microsoft, or one carrier trunk) may hold.
    pub max_transactions_per_peer: usize,
    /// Timer D on unreliable transports (RFC 3261: at least 32 s).
    pub timer_d: Duration,
    /// Guard for INVITE transactions that never get a final response (RFC 3261 §16.6 Timer C:
    /// more than 3 min): a client INVITE in Proceeding times out this long after its last provisional;
    /// a server INVITE the TU has not answered by then is answered 408. Default 300 s.
    pub timer_c: Duration,
}

impl Default for TransactionSettings {
    fn default() -> Self {
        TransactionSettings {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            max_transactions: 100_000,
            max_transactions_per_source: 20_000,
            max_transactions_per_peer: 60_000,
            timer_d: Duration::from_secs(32),
            timer_c: Duration::from_secs(300),
        }
    }
}

impl TransactionSettings {
    /// 64*T1: Timers B, F, H, J (unreliable), L and M.
    pub fn timeout_64t1(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// Headers the layer adds to the responses it makes itself (100 Trying, a 408 for a request
/// the TU never answered, the stateless 503s) on a route: what the peer there expects of
/// every response (X-MS-SBC towards Microsoft, row 59).
pub type OwnResponseHeaders<T> =
    Box<dyn Fn(&T) -> Vec<(crate::sip::HeaderName, Bytes)> + Send + Sync>;

/// Who pays for the server transactions a request starts: its source address and the peer
/// the transport identified, each capped by its own quota, so one sender (or one trunk's many
/// addresses) cannot fill the table that every peer shares.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Payer {
    Source(std::net::IpAddr),
    Peer(crate::transport::Peer),
}

impl Payer {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Payer::Source(_) => "source",
            Payer::Peer(_) => "peer",
        }
    }
}

/// Identifies one transaction for its whole life. Never reused by a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub u64);

/// What a transaction is, also the `kind` label of `transactions_created_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxKind {
    ClientInvite,
    ClientNonInvite,
    ServerInvite,
    ServerNonInvite,
}

impl TxKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            TxKind::ClientInvite => "client_invite",
            TxKind::ClientNonInvite => "client_non_invite",
            TxKind::ServerInvite => "server_invite",
            TxKind::ServerNonInvite => "server_non_invite",
        }
    }
}

/// RFC 3261 timers A-K, RFC 6026 timers L and M, and the 2xx retransmission the UAS core
/// does for INVITE (RFC 3261 §13.3.1.4), which this layer performs in the Accepted state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    A,
    B,
    D,
    E,
    F,
    G,
    H,
    I,
    J,
    K,
    L,
    M,
    Retransmit2xx,
    /// Client INVITE still without a final response `timer_c` after its last provisional.
    C,
    /// The TU did not answer a server transaction: INVITE after `timer_c` (a 408 is sent),
    /// non-INVITE after 64*T1 (the client has given up by then; dropped without answer).
    Unanswered,
}

impl Timer {
    pub fn as_str(&self) -> &'static str {
        match self {
            Timer::A => "A",
            Timer::B => "B",
            Timer::D => "D",
            Timer::E => "E",
            Timer::F => "F",
            Timer::G => "G",
            Timer::H => "H",
            Timer::I => "I",
            Timer::J => "J",
            Timer::K => "K",
            Timer::L => "L",
            Timer::M => "M",
            Timer::Retransmit2xx => "2xx",
            Timer::C => "C",
            Timer::Unanswered => "unanswered",
        }
    }
}

/// Something for the transaction user (the B2BUA, the OPTIONS responder, ...).
#[derive(Debug, Clone)]
pub enum TuEvent<T> {
    /// A new request created server transaction `tx`; answer it with `send_response(tx, ..)`.
    /// For INVITE a 100 Trying has already been sent. For CANCEL, `cancels` is the INVITE
    /// server transaction it matches (RFC 3261 §9.2), `None` means answer 481.
    Request {
        tx: TxId,
        msg: Message,
        source: T,
        cancels: Option<TxId>,
    },
    /// An ACK for a 2xx (it has its own branch, RFC 3261 §17.1.1.3, so no transaction absorbs
    /// it). `tx` is the INVITE server transaction whose 2xx it acknowledges when known (same
    /// Call-ID and CSeq number, or an RFC 2543 ACK matching it); that transaction has already
    /// stopped retransmitting the 2xx.
    Ack {
        tx: Option<TxId>,
        msg: Message,
        source: T,
    },
    /// A response for client transaction `tx`. For INVITE every 2xx is passed up, also
    /// retransmitted ones and 2xx from other forks (the TU ACKs each 2xx itself); other
    /// retransmissions are absorbed.
    Response { tx: TxId, msg: Message, source: T },
    /// Timer B, F or C fired (no final response: treat as 408), Timer H fired (no ACK for our
    /// non-2xx final response), or `Unanswered`: the TU never answered a server transaction
    /// (for INVITE the layer has sent 408 itself).
    Timeout { tx: TxId, timer: Timer },
    /// Timer L fired in the Accepted state and no ACK for our 2xx arrived (RFC 3261 §13.3.1.4:
    /// the session should be ended with BYE).
    AckTimeout { tx: TxId },
    /// The transport reported a failure for a message of `tx`; the transaction is terminated.
    TransportError { tx: TxId },
    /// `tx` reached the Terminated state and was removed. Always the last event for a `tx`.
    Terminated { tx: TxId },
}

/// One output of the layer.
// Outputs are drained right after they are made; boxing the event would cost an allocation
// per message for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Output<T> {
    /// Send `bytes` to `dest` (for a server transaction: the token its request came from).
    /// `tx` is `None` for stateless answers (503 on overload); report a failure to send a
    /// message with `Some(tx)` through `on_transport_error`.
    Transmit {
        tx: Option<TxId>,
        dest: T,
        bytes: Bytes,
    },
    Deliver(TuEvent<T>),
}

/// Why the layer refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("transaction limit reached")]
    Full,
    #[error("request has no usable top Via with an RFC 3261 branch")]
    BadVia,
    #[error("message has no valid CSeq")]
    BadCSeq,
    #[error("not a request, or ACK (which has no client transaction)")]
    NotARequest,
    #[error("a client transaction with this branch and method exists")]
    Duplicate,
    #[error("no such transaction, or it is not a server transaction")]
    UnknownTransaction,
    #[error("response has no valid status line")]
    BadResponse,
    #[error("a final response was already sent")]
    AlreadyFinal,
}

/// True when `transport` (a Via transport token) is connection-less.
pub(crate) fn is_unreliable(transport: &[u8]) -> bool {
    transport.eq_ignore_ascii_case(b"UDP")
}

/// Status code from the start line of response wire bytes, without a full parse.
pub(crate) fn status_of(response: &[u8]) -> Option<u16> {
    let rest = response.strip_prefix(b"SIP/2.0 ")?;
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if rest.get(3).is_some_and(|b| *b != b' ') {
        return None;
    }
    let status = code
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    (100..=699).contains(&status).then_some(status)
}
