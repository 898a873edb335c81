//! Adapter between the forward step and the ICE-lite STUN responder in `ice`.

use std::net::SocketAddr;

use crate::media::ice::{handle_packet, IceCredentials, IceOutcome, UfragId, MAX_RESPONSE_LEN};

/// What to do with a STUN packet received on an ICE-lite leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StunAnswer {
    /// The response is now in the buffer. `nominate` when the check carried USE-CANDIDATE;
    /// `priority` is the check's PRIORITY (for choosing a pair before nomination);
    /// `remote_ufrag` tells which remote agent checked (`None` for a 420 answer, which
    /// neither nominates nor ranks a pair).
    Respond {
        len: usize,
        nominate: bool,
        priority: Option<u32>,
        remote_ufrag: Option<UfragId>,
    },
    Drop,
}

/// Answers a connectivity check, replacing the request in `buf[..len]` by the response.
pub fn answer_stun(
    credentials: &IceCredentials,
    buf: &mut [u8],
    len: usize,
    from: SocketAddr,
) -> StunAnswer {
    let mut response = [0u8; MAX_RESPONSE_LEN];
    let Some(request) = buf.get(..len) else {
        return StunAnswer::Drop;
    };
    let (response_len, nominate, priority, remote_ufrag) =
        match handle_packet(request, from, credentials, &mut response) {
            IceOutcome::Respond {
                response_len,
                use_candidate,
                priority,
                remote_ufrag,
                ..
            } => (response_len, use_candidate, priority, Some(remote_ufrag)),
            IceOutcome::RespondUnknownAttributes { response_len, .. } => {
                (response_len, false, None, None)
            }
            IceOutcome::NotStun | IceOutcome::Drop(_) => return StunAnswer::Drop,
        };
    match (buf.get_mut(..response_len), response.get(..response_len)) {
        (Some(dst), Some(src)) => {
            dst.copy_from_slice(src);
            StunAnswer::Respond {
                len: response_len,
                nominate,
                priority,
                remote_ufrag,
            }
        }
        _ => StunAnswer::Drop,
    }
}
