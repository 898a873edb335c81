//! Emergency location and multipart bodies (RFC 6442, RFC 5621; doc 2.12, row 56).
//!
//! With `PidfLoSupported` Microsoft's emergency INVITE is `multipart/mixed`: the SDP and a
//! PIDF-LO (`application/pidf+xml`) with the caller's location, named by a `Geolocation`
//! header. The SDP part is negotiated like any offer ([`sdp_body`]). Towards the carrier (the
//! way to the emergency routing provider) the location parts go on unchanged, next to our
//! SDP, with the `Geolocation*` headers copied, so `cid:` references still resolve. A carrier
//! that refuses the multipart body with 415 gets the same INVITE once more with SDP only
//! (RFC 5621 §9): the call goes through without the location rather than failing.
//!
//! Towards Microsoft only SDP ever goes (a PIDF-LO there is refused with 415, code 540415):
//! a carrier's location parts are read past and dropped.

use super::*;
use crate::sip::multipart::{self, BodyPart, MultipartError};

/// Headers of RFC 6442 that travel with the location parts.
const GEOLOCATION_HEADERS: [&str; 3] = ["Geolocation", "Geolocation-Routing", "Geolocation-Error"];

/// The SDP of `msg`: its body when that is `application/sdp` (or untyped), or the
/// `application/sdp` part of a multipart body. `Ok(None)`: no SDP (empty, or other types).
pub(super) fn sdp_body(msg: &Message) -> Result<Option<Bytes>, MultipartError> {
    let body = msg.body();
    if body.is_empty() {
        return Ok(None);
    }
    let Some(content_type) = msg.content_type() else {
        return Ok(Some(body));
    };
    if multipart::is_multipart(&content_type) {
        let boundary = multipart::boundary(&content_type)?;
        let parts = multipart::parse(&body, &boundary)?;
        return Ok(parts
            .into_iter()
            .find(|p| p.media_type == "application/sdp")
            .map(|p| p.content));
    }
    Ok((multipart::media_type(&content_type) == "application/sdp").then_some(body))
}

/// [`sdp_body`] where a broken multipart body counts as no SDP (responses, in-dialog
/// requests: the initial INVITE is where it gets its 400).
pub(super) fn sdp_of(msg: &Message) -> Option<Bytes> {
    sdp_body(msg).ok().flatten()
}

/// A carrier INVITE's body with the location: content type, body, extra headers.
pub(super) struct LocatedBody {
    pub content_type: String,
    pub body: Vec<u8>,
    pub headers: Vec<(HeaderName, String)>,
}

/// The caller's location, to go with the INVITE to the carrier.
#[derive(Debug, Default)]
pub(super) struct CallerLocation {
    /// Body parts other than SDP (PIDF-LO), headers and content as received.
    parts: Vec<BodyPart>,
    /// `Geolocation*` header lines as received.
    headers: Vec<(HeaderName, String)>,
    /// Carrier targets that refused the multipart INVITE (415): SDP only from then on.
    refused: Vec<usize>,
    /// The INVITE (token) that carried the location, for its 415.
    sent_in: Option<u64>,
}

impl CallerLocation {
    /// Microsoft's location in `invite`, if it carries one.
    pub(super) fn of(invite: &Message) -> CallerLocation {
        let parts = match invite.content_type() {
            Some(ct) if multipart::is_multipart(&ct) => multipart::boundary(&ct)
                .and_then(|b| multipart::parse(&invite.body(), &b))
                .map(|parts| {
                    parts
                        .into_iter()
                        .filter(|p| p.media_type != "application/sdp")
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let mut headers = Vec::new();
        if !parts.is_empty() {
            for name in GEOLOCATION_HEADERS {
                let name = HeaderName::from_wire(name.as_bytes());
                for value in invite.header_values(&name) {
                    headers.push((name.clone(), String::from_utf8_lossy(&value).into_owned()));
                }
            }
        }
        CallerLocation {
            parts,
            headers,
            refused: Vec::new(),
            sent_in: None,
        }
    }
}

impl State {
    /// The INVITE attempt `index` to the carrier with the caller's location next to `offer`
    /// or `None` for a plain SDP INVITE.
    pub(super) fn location_body(&self, index: usize, offer: &[u8]) -> Option<LocatedBody> {
        let location = &self.location;
        if self.callee != LegId::Carrier
            || location.parts.is_empty()
            || location.refused.contains(&index)
        {
            return None;
        }
        let boundary = format!("sbc-{}", new_tag());
        let mut parts: Vec<(&[u8], &[u8])> = vec![(b"Content-Type: application/sdp\r\n", offer)];
        for part in &location.parts {
            parts.push((&part.headers, &part.content));
        }
        Some(LocatedBody {
            content_type: format!("multipart/mixed;boundary={boundary}"),
            body: multipart::build(&boundary, &parts),
            headers: location.headers.clone(),
        })
    }

    /// INVITE `token` carried the location.
    pub(super) fn location_sent(&mut self, token: u64) {
        self.location.sent_in = Some(token);
    }

    /// A 415 to INVITE `token`: when it carried the location, the same target gets it again
    /// with SDP only (RFC 5621 §9). True when it did.
    pub(super) fn location_refused(
        &mut self,
        now: Instant,
        token: u64,
        out: &mut VecDeque<Output>,
    ) -> bool {
        if self.location.sent_in != Some(token) {
            return false;
        }
        let Some(Sent::Invite { index, .. }) = self.sent.get(&token) else {
            return false;
        };
        let index = *index;
        self.location.sent_in = None;
        self.location.refused.push(index);
        self.send_invite(now, index, out);
        true
    }
}
