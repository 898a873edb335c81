//! Messages the transaction layer writes itself, plus helpers a TU needs around transactions.

use bytes::Bytes;
use rand::Rng;

use crate::sip::{HeaderName, Message, Method, RequestBuilder, ResponseBuilder};

fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// A fresh RFC 3261 branch (`z9hG4bK` + 20 random characters, ~103 bits).
pub fn new_branch() -> String {
    format!("z9hG4bK{}", random_token(20))
}

/// A fresh From/To tag (12 random characters).
pub fn new_tag() -> String {
    random_token(12)
}

/// ACK for a non-2xx final response (RFC 3261 §17.1.1.3): Request-URI, Call-ID, From, CSeq
/// number and Route from the INVITE, only its top Via, To from the response.
pub fn ack_for_non_2xx(invite: &Message, response: &Message) -> Option<Bytes> {
    let uri = invite.request_uri()?.raw().clone();
    let via = invite.top_via().ok()?;
    let cseq = invite.cseq().ok()?;
    let to = response.header(&HeaderName::To)?;
    let mut builder = RequestBuilder::new(&Method::Ack, &uri)
        .header(&HeaderName::Via, &via.raw)
        .header(&HeaderName::MaxForwards, b"70")
        .copy_header(invite, &HeaderName::From)
        .header(&HeaderName::To, &to)
        .copy_header(invite, &HeaderName::CallId)
        .header(&HeaderName::CSeq, format!("{} ACK", cseq.seq).as_bytes());
    if invite.header(&HeaderName::Route).is_some() {
        builder = builder.copy_header(invite, &HeaderName::Route);
    }
    Some(builder.build())
}

/// CANCEL for a sent INVITE (RFC 3261 §9.1): same Request-URI, top Via (same branch), From,
/// To, Call-ID, CSeq number and Route. Send it with `send_request`; it has its own client
/// transaction.
pub fn cancel_for(invite: &Message) -> Option<Bytes> {
    let uri = invite.request_uri()?.raw().clone();
    let via = invite.top_via().ok()?;
    let cseq = invite.cseq().ok()?;
    let mut builder = RequestBuilder::new(&Method::Cancel, &uri)
        .header(&HeaderName::Via, &via.raw)
        .header(&HeaderName::MaxForwards, b"70")
        .copy_header(invite, &HeaderName::From)
        .copy_header(invite, &HeaderName::To)
        .copy_header(invite, &HeaderName::CallId)
        .header(&HeaderName::CSeq, format!("{} CANCEL", cseq.seq).as_bytes());
    if invite.header(&HeaderName::Route).is_some() {
        builder = builder.copy_header(invite, &HeaderName::Route);
    }
    Some(builder.build())
}

fn with_headers(mut builder: ResponseBuilder, extra: &[(HeaderName, Bytes)]) -> Bytes {
    for (name, value) in extra {
        builder = builder.header(name, value);
    }
    builder.build()
}

pub(crate) fn trying(request: &Message, extra: &[(HeaderName, Bytes)]) -> Bytes {
    with_headers(ResponseBuilder::new(request, 100, "Trying"), extra)
}

pub(crate) fn request_timeout(request: &Message, extra: &[(HeaderName, Bytes)]) -> Bytes {
    with_headers(
        ResponseBuilder::new(request, 408, "Request Timeout").to_tag(&new_tag()),
        extra,
    )
}

pub(crate) fn overloaded(request: &Message, extra: &[(HeaderName, Bytes)]) -> Bytes {
    with_headers(
        ResponseBuilder::new(request, 503, "Service Unavailable")
            .to_tag(&new_tag())
            .header(&HeaderName::RetryAfter, b"5"),
        extra,
    )
}
