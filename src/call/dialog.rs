//! One leg's dialog: identifiers, sequence numbers, remote target and route set, and the
//! builders for requests and responses on that leg (headers from the leg's [`LegPolicy`]).

use bytes::Bytes;

use super::profile::LegPolicy;
use super::Target;
use crate::sip::{HeaderName, Message, Method, RequestBuilder, ResponseBuilder};
use crate::transaction::new_branch;

/// Dialog state of one leg (RFC 3261 §12).
#[derive(Debug, Clone)]
pub(crate) struct Dialog {
    pub call_id: Bytes,
    /// Our From (UAC) or To (UAS) value, tag included.
    pub local: String,
    pub local_tag: String,
    /// The peer's From (UAS) or To (UAC) value, tag included once known.
    pub remote: Bytes,
    pub remote_tag: Option<Bytes>,
    pub local_cseq: u32,
    pub remote_cseq: Option<u32>,
    /// The peer's Contact URI.
    pub remote_target: Option<Bytes>,
    /// Route set as name-addr values, in the order to put into Route.
    pub route_set: Vec<Bytes>,
    /// User part for our Contact on this leg.
    pub contact_user: Option<String>,
    /// Max-Forwards of requests we start on this leg (the caller's value - 1 on the callee leg).
    pub max_forwards: u32,
    pub policy: LegPolicy,
}

impl Dialog {
    /// The leg where the peer sent us `invite` (we are UAS).
    pub fn from_invite(invite: &Message, local_tag: String, policy: LegPolicy) -> Dialog {
        let to = invite.header(&HeaderName::To).unwrap_or_default();
        let local = format!("{};tag={local_tag}", String::from_utf8_lossy(&to));
        let from = invite.from().ok();
        let contact_user = invite
            .request_uri()
            .and_then(|u| u.as_sip())
            .and_then(|u| u.user.as_ref())
            .map(|u| String::from_utf8_lossy(u).into_owned());
        Dialog {
            call_id: invite.call_id().unwrap_or_default(),
            local,
            local_tag,
            remote: invite.header(&HeaderName::From).unwrap_or_default(),
            remote_tag: from.and_then(|f| f.tag),
            local_cseq: 0,
            remote_cseq: invite.cseq().ok().map(|c| c.seq),
            remote_target: first_contact_uri(invite),
            route_set: invite
                .header_values(&HeaderName::RecordRoute)
                .into_iter()
                .collect(),
            contact_user,
            max_forwards: 70,
            policy,
        }
    }

    /// A leg we originate (we are UAC): fresh Call-ID and tag, `local`/`remote` as given.
    pub fn originate(local_value: String, remote_value: String, policy: LegPolicy) -> Dialog {
        let tag = crate::transaction::new_tag();
        let call_id = format!(
            "{}@{}",
            new_branch().trim_start_matches("z9hG4bK"),
            policy.local_host()
        );
        Dialog {
            call_id: Bytes::from(call_id),
            local: format!("{local_value};tag={tag}"),
            local_tag: tag,
            remote: Bytes::from(remote_value),
            remote_tag: None,
            local_cseq: 0,
            remote_cseq: None,
            remote_target: None,
            route_set: Vec::new(),
            contact_user: None,
            max_forwards: 70,
            policy,
        }
    }

    /// UAC side: the dialog is set up by a 2xx (or a tagged 18x): remote tag, target and
    /// route set (Record-Route in reverse, RFC 3261 §12.1.2).
    pub fn confirm_from_response(&mut self, response: &Message) {
        if let Some(to) = response.header(&HeaderName::To) {
            self.remote = to;
        }
        self.remote_tag = response.to().ok().and_then(|t| t.tag);
        if let Some(target) = first_contact_uri(response) {
            self.remote_target = Some(target);
        }
        let mut routes = response.header_values(&HeaderName::RecordRoute);
        routes.reverse();
        // Our own Record-Route (a proxy SBC's, row 61) comes back in the 2xx; the route to
        // the peer starts after it.
        if let Some(ours) = self.policy.record_route() {
            routes.retain(|r| r.as_ref() != ours.as_bytes());
        }
        self.route_set = routes;
    }

    /// Where in-dialog requests go: the first route, else the remote target.
    pub fn next_hop(&self) -> Target {
        let uri = self
            .route_set
            .first()
            .and_then(|r| crate::sip::NameAddr::parse(r).ok())
            .map(|n| n.uri.raw().clone())
            .or_else(|| self.remote_target.clone())
            .unwrap_or_default();
        Target::Dialog {
            uri,
            transport: self.policy.transport(),
        }
    }

    fn contact(&self) -> String {
        self.policy.contact(self.contact_user.as_deref())
    }

    /// A new in-dialog request (not ACK): next CSeq, our Via with a fresh branch.
    pub fn request(&mut self, method: Method, body: Option<&[u8]>) -> Bytes {
        self.local_cseq += 1;
        let cseq = self.local_cseq;
        self.build_request(method, cseq, &new_branch(), body)
    }

    /// The ACK for a 2xx to our INVITE with CSeq `invite_cseq` (RFC 3261 §13.2.2.4).
    pub fn ack(&self, invite_cseq: u32, body: Option<&[u8]>) -> Bytes {
        self.build_request(Method::Ack, invite_cseq, &new_branch(), body)
    }

    /// A new in-dialog request with extra headers and a body of any type (NOTIFY with a
    /// sipfrag, RFC 3515); carries our Contact like a dialog-creating request (RFC 6665 §8.2).
    pub fn request_with(
        &mut self,
        method: Method,
        headers: &[(HeaderName, String)],
        content_type: &str,
        body: &[u8],
    ) -> Bytes {
        self.local_cseq += 1;
        let mut b = self.request_head(&method, self.local_cseq, &new_branch());
        b = b.header(&HeaderName::Contact, self.contact().as_bytes());
        for (name, value) in headers {
            b = b.header(name, value.as_bytes());
        }
        b.body(Some(content_type), body)
    }

    fn build_request(&self, method: Method, cseq: u32, branch: &str, body: Option<&[u8]>) -> Bytes {
        let mut b = self.request_head(&method, cseq, branch);
        if matches!(method, Method::Invite) {
            b = b.header(&HeaderName::Contact, self.contact().as_bytes());
            if let (None, Some(route)) = (&self.remote_tag, self.policy.record_route()) {
                b = b.header(&HeaderName::RecordRoute, route.as_bytes());
            }
        }
        match body {
            Some(sdp) => b.body(Some("application/sdp"), sdp),
            None => b.build(),
        }
    }

    /// Request line and the headers every request on this leg carries.
    fn request_head(&self, method: &Method, cseq: u32, branch: &str) -> RequestBuilder {
        let target = self.remote_target.clone().unwrap_or_default();
        let mut b = RequestBuilder::new(method, &target)
            .header(&HeaderName::Via, self.policy.via(branch).as_bytes())
            .header(
                &HeaderName::MaxForwards,
                self.max_forwards.to_string().as_bytes(),
            )
            .header(&HeaderName::From, self.local.as_bytes())
            .header(&HeaderName::To, &self.remote)
            .header(&HeaderName::CallId, &self.call_id)
            .header(&HeaderName::CSeq, format!("{cseq} {}", method).as_bytes());
        for route in &self.route_set {
            b = b.header(&HeaderName::Route, route);
        }
        for (name, value) in self.policy.extra_headers() {
            b = b.header(&name, value.as_bytes());
        }
        b
    }

    /// A response on this leg to `request` (the peer's), with our tag and Contact (for
    /// dialog-creating responses) and the policy's headers.
    pub fn response(&self, request: &Message, status: u16, body: Option<&[u8]>) -> Bytes {
        let mut b = ResponseBuilder::new(request, status, super::codes::reason_phrase(status));
        if status > 100 {
            b = b.to_tag(&self.local_tag);
        }
        let is_invite = request.method() == Some(&Method::Invite);
        if is_invite && (101..300).contains(&status) {
            b = b.header(&HeaderName::Contact, self.contact().as_bytes());
            let dialog_creating = request.to().is_ok_and(|to| to.tag.is_none());
            // Microsoft routes in-dialog requests by our Contact and takes a Record-Route in
            // our messages as one we inserted (row 17), so only the carrier's come back.
            let echo_routes = matches!(self.policy, LegPolicy::Carrier(_));
            if dialog_creating && echo_routes {
                // RFC 3261 §12.1.1: every Record-Route of the request, in order, so the
                // carrier's proxies that record-routed stay on the path of ACK, BYE, re-INVITE.
                for route in request.header_values(&HeaderName::RecordRoute) {
                    b = b.header(&HeaderName::RecordRoute, &route);
                }
            }
            if let (true, Some(route)) = (dialog_creating, self.policy.record_route()) {
                b = b.header(&HeaderName::RecordRoute, route.as_bytes());
            }
        }
        for (name, value) in self.policy.extra_headers() {
            b = b.header(&name, value.as_bytes());
        }
        match body {
            Some(sdp) => b.body(Some("application/sdp"), sdp),
            None => b.build(),
        }
    }
}

fn first_contact_uri(msg: &Message) -> Option<Bytes> {
    msg.contacts()
        .ok()
        .and_then(|c| c.into_iter().next())
        .map(|c| c.uri.raw().clone())
}
