//! Transaction matching keys (RFC 3261 §17.1.3 for client, §17.2.3 for server transactions).

use bytes::{BufMut, Bytes, BytesMut};

use crate::sip::{Message, Method, Via};
use crate::transport::Peer;

/// The key a transaction is found by. ACK is folded into INVITE for server keys so a
/// hop-by-hop ACK finds the INVITE server transaction; CANCEL keeps its own method, so it
/// gets its own transaction and finds its INVITE through [`with_method`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum TxKey {
    /// Branch of our own Via plus the CSeq method.
    Client { branch: Bytes, method: Method },
    /// RFC 3261 peers: branch, sent-by and method; and the peer that sent it, so a request
    /// copying another peer's branch and sent-by is not taken for its retransmission.
    Server {
        branch: Bytes,
        sent_by: Bytes,
        method: Method,
        owner: Option<Peer>,
    },
    /// RFC 2543 peers (no magic cookie): Request-URI, From tag, Call-ID, CSeq number and
    /// method, top Via. The To tag is left out so an ACK (which carries our tag) matches.
    Server2543 {
        request_uri: Bytes,
        from_tag: Option<Bytes>,
        call_id: Bytes,
        cseq: u32,
        method: Method,
        via: Bytes,
        owner: Option<Peer>,
    },
}

impl TxKey {
    /// The same key for a different method (CANCEL looking for its INVITE).
    pub(crate) fn with_method(&self, method: Method) -> Option<TxKey> {
        match self {
            TxKey::Client { .. } => None,
            TxKey::Server {
                branch,
                sent_by,
                owner,
                ..
            } => Some(TxKey::Server {
                branch: branch.clone(),
                sent_by: sent_by.clone(),
                method,
                owner: owner.clone(),
            }),
            TxKey::Server2543 {
                request_uri,
                from_tag,
                call_id,
                cseq,
                via,
                owner,
                ..
            } => Some(TxKey::Server2543 {
                request_uri: request_uri.clone(),
                from_tag: from_tag.clone(),
                call_id: call_id.clone(),
                cseq: *cseq,
                method,
                via: via.clone(),
                owner: owner.clone(),
            }),
        }
    }

    /// The key of a server transaction started by `owner` (client keys are ours).
    pub(crate) fn owned_by(self, owner: Option<Peer>) -> TxKey {
        match self {
            TxKey::Server {
                branch,
                sent_by,
                method,
                ..
            } => TxKey::Server {
                branch,
                sent_by,
                method,
                owner,
            },
            TxKey::Server2543 {
                request_uri,
                from_tag,
                call_id,
                cseq,
                method,
                via,
                ..
            } => TxKey::Server2543 {
                request_uri,
                from_tag,
                call_id,
                cseq,
                method,
                via,
                owner,
            },
            client => client,
        }
    }
}

fn key_method(method: &Method) -> Method {
    match method {
        Method::Ack => Method::Invite,
        other => other.clone(),
    }
}

fn sent_by(via: &Via) -> Bytes {
    let mut out = BytesMut::with_capacity(via.host.len() + 6);
    out.extend(via.host.iter().map(u8::to_ascii_lowercase));
    if let Some(port) = via.port {
        out.put_u8(b':');
        out.extend_from_slice(port.to_string().as_bytes());
    }
    out.freeze()
}

/// Key of the client transaction a request creates. Our own requests always carry an
/// RFC 3261 branch; `None` when they do not.
pub(crate) fn client_key_for_request(msg: &Message) -> Option<TxKey> {
    let via = msg.top_via().ok()?;
    if !via.has_rfc3261_branch() {
        return None;
    }
    Some(TxKey::Client {
        branch: via.branch?,
        method: msg.method()?.clone(),
    })
}

/// Key of the client transaction a response belongs to (branch + CSeq method).
pub(crate) fn client_key_for_response(msg: &Message) -> Option<TxKey> {
    let via = msg.top_via().ok()?;
    let cseq = msg.cseq().ok()?;
    Some(TxKey::Client {
        branch: via.branch?,
        method: cseq.method,
    })
}

/// Key of the server transaction an incoming request belongs to, with ACK mapped to INVITE.
pub(crate) fn server_key(msg: &Message) -> Option<TxKey> {
    let method = key_method(msg.method()?);
    let via = msg.top_via().ok()?;
    if via.has_rfc3261_branch() {
        return Some(TxKey::Server {
            sent_by: sent_by(&via),
            branch: via.branch?,
            method,
            owner: None,
        });
    }
    let cseq = msg.cseq().ok()?;
    let mut via_key = BytesMut::new();
    via_key.extend(via.transport.iter().map(u8::to_ascii_uppercase));
    via_key.put_u8(b' ');
    via_key.extend_from_slice(&sent_by(&via));
    if let Some(branch) = &via.branch {
        via_key.put_u8(b';');
        via_key.extend_from_slice(branch);
    }
    Some(TxKey::Server2543 {
        request_uri: msg.request_uri()?.raw().clone(),
        from_tag: msg.from().ok()?.tag,
        call_id: msg.call_id()?,
        cseq: cseq.seq,
        method,
        via: via_key.freeze(),
        owner: None,
    })
}
