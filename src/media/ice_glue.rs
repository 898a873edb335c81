//! Adapter between the forward step and the ICE-lite STUN responder in `ice`.

use std::net::SocketAddr;

use crate::media::leg::IceLiteCredentials;

/// What to do with a STUN packet received on an ICE-lite leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StunAnswer {
    /// The response is now in the buffer; `use_candidate` when the check nominated the pair.
    Respond {
        len: usize,
        use_candidate: bool,
    },
    Drop,
}

/// Answers a connectivity check in place (the request in `buf[..len]` is replaced by the
/// response).
pub fn answer_stun(
    _credentials: &IceLiteCredentials,
    _buf: &mut [u8],
    _len: usize,
    _from: SocketAddr,
) -> StunAnswer {
    // Wired to `ice::handle_binding_request` once that module lands.
    StunAnswer::Drop
}
