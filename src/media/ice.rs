//! ICE-lite STUN responder for bypass trunks (docs/teams-direct-routing.md §3.7, rows 50-53).
//!
//! [`handle_packet`] is a pure function of one datagram: no sockets, no clock, no state.
//! It answers valid Binding requests (connectivity checks) and never originates a check,
//! as an ICE-lite agent must. Nomination is reported, not tracked: with forking, checks and
//! USE-CANDIDATE can arrive from several Teams endpoints before or after the 200 OK (row 52),
//! so each answer names the checking agent ([`UfragId`] of its ufrag) and the media core
//! decides which remote address the leg sends to (`LegState::enable_ice`).
//!
//! Allocation: the `stun` crate copies the message and its attributes into `Vec`s. STUN
//! checks arrive a few times per second per leg, off the RTP fast path, so this is accepted
//! here; RTP/SRTP forwarding stays allocation-free.

use std::net::SocketAddr;

use stun::attributes::{
    AttrType, ATTR_FINGERPRINT, ATTR_MESSAGE_INTEGRITY, ATTR_PRIORITY, ATTR_USERNAME,
    ATTR_USE_CANDIDATE,
};
use stun::error_code::CODE_UNKNOWN_ATTRIBUTE;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{
    Message, MessageType, Setter, BINDING_ERROR, BINDING_SUCCESS, MAGIC_COOKIE, MESSAGE_HEADER_SIZE,
};
use stun::uattrs::UnknownAttributes;
use stun::xoraddr::XorMappedAddress;

/// Largest response [`handle_packet`] writes; a buffer this big never causes a drop.
pub const MAX_RESPONSE_LEN: usize = 128;
/// Unknown comprehension-required attributes listed in a 420 response, at most.
const MAX_UNKNOWN_LISTED: usize = 8;
const BINDING_REQUEST_TYPE: u16 = 0x0001;
const BINDING_INDICATION_TYPE: u16 = 0x0011;
const MESSAGE_INTEGRITY_LEN: usize = 20;

/// Comprehension-required attributes (0x0000-0x7FFF) we understand or may safely ignore in
/// a Binding request: RFC 5389/8489 and ICE (RFC 8445) ones.
const KNOWN_REQUIRED: [u16; 10] = [
    0x0001, // MAPPED-ADDRESS
    0x0006, // USERNAME
    0x0008, // MESSAGE-INTEGRITY
    0x0014, // REALM
    0x0015, // NONCE
    0x001C, // MESSAGE-INTEGRITY-SHA256 (we verify the SHA-1 one)
    0x001E, // USERHASH
    0x0020, // XOR-MAPPED-ADDRESS (and 0x8020, which the stun crate maps here)
    0x0024, // PRIORITY
    0x0025, // USE-CANDIDATE
];

/// Short-term credentials of one leg (our `a=ice-ufrag`/`a=ice-pwd`, and the peer's ufrag
/// once its SDP is known).
#[derive(Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub local_ufrag: String,
    pub local_pwd: String,
    /// When known, USERNAME must be exactly `<local>:<remote>`; otherwise any
    /// `<local>:<something>` is accepted (checks may precede the answer SDP).
    pub remote_ufrag: Option<String>,
}

impl std::fmt::Debug for IceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceCredentials")
            .field("local_ufrag", &self.local_ufrag)
            .field("local_pwd", &"<redacted>")
            .field("remote_ufrag", &self.remote_ufrag)
            .finish()
    }
}

/// What to do with one datagram received on a media socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceOutcome {
    /// Not STUN (RFC 7983 demultiplexing): RTP/RTCP, handle it as media.
    NotStun,
    /// STUN that gets no answer; drop silently and count the reason.
    Drop(IceDropReason),
    /// A valid connectivity check: send `out[..response_len]` (Binding success) to `from`.
    Respond {
        response_len: usize,
        /// The check carried USE-CANDIDATE: the controlling agent nominates `from`.
        use_candidate: bool,
        /// PRIORITY of the check, for choosing the best pair before nomination.
        priority: Option<u32>,
        /// Which remote agent sent the check (its ufrag, the USERNAME part after the colon):
        /// with forking several agents check one leg, and a nomination belongs to one of them.
        remote_ufrag: UfragId,
        from: SocketAddr,
    },
    /// An authenticated check with an unknown comprehension-required attribute: send the
    /// 420 error response in `out[..response_len]` to `from` (RFC 5389 §7.3.1).
    RespondUnknownAttributes {
        response_len: usize,
        from: SocketAddr,
    },
}

/// An allocation-free identity of an ICE ufrag: its 64-bit FNV-1a hash. Tells the agents
/// that check one leg apart (forked Teams clients, or one client before and after an ICE
/// restart) without keeping their ufrags as strings on the media path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UfragId(u64);

impl UfragId {
    pub fn of(ufrag: &[u8]) -> Self {
        const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        Self(ufrag.iter().fold(OFFSET_BASIS, |hash, &b| {
            (hash ^ u64::from(b)).wrapping_mul(PRIME)
        }))
    }
}

/// Why a STUN datagram was dropped. `label` gives a fixed metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceDropReason {
    /// Framing or attribute encoding is broken.
    Malformed,
    /// A Binding indication (keep-alive): no response by definition.
    Indication,
    /// Any message other than a Binding request (responses, other methods).
    NotBindingRequest,
    /// FINGERPRINT missing, not last, or wrong.
    Fingerprint,
    /// USERNAME missing or not ours.
    Username,
    /// MESSAGE-INTEGRITY missing, malformed or wrong.
    Integrity,
    /// The caller's output buffer cannot hold the response.
    BufferTooSmall,
}

impl IceDropReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Indication => "indication",
            Self::NotBindingRequest => "not_binding_request",
            Self::Fingerprint => "fingerprint",
            Self::Username => "username",
            Self::Integrity => "integrity",
            Self::BufferTooSmall => "buffer_too_small",
        }
    }
}

/// RFC 7983: a datagram whose first byte is 0-3 and that carries the magic cookie is STUN.
pub fn is_stun(packet: &[u8]) -> bool {
    packet.len() >= MESSAGE_HEADER_SIZE
        && packet[0] < 4
        && u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]) == MAGIC_COOKIE
}

/// Answers one datagram as an ICE-lite agent. On `Respond*` the response is in
/// `out[..response_len]`; `out` should be [`MAX_RESPONSE_LEN`] bytes.
pub fn handle_packet(
    packet: &[u8],
    from: SocketAddr,
    creds: &IceCredentials,
    out: &mut [u8],
) -> IceOutcome {
    if !is_stun(packet) {
        return IceOutcome::NotStun;
    }
    match answer_check(packet, from, creds, out) {
        Ok(outcome) => outcome,
        Err(reason) => IceOutcome::Drop(reason),
    }
}

fn answer_check(
    packet: &[u8],
    from: SocketAddr,
    creds: &IceCredentials,
    out: &mut [u8],
) -> Result<IceOutcome, IceDropReason> {
    let body_len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if body_len % 4 != 0 || packet.len() != MESSAGE_HEADER_SIZE + body_len {
        return Err(IceDropReason::Malformed);
    }
    match u16::from_be_bytes([packet[0], packet[1]]) {
        BINDING_REQUEST_TYPE => {}
        BINDING_INDICATION_TYPE => return Err(IceDropReason::Indication),
        _ => return Err(IceDropReason::NotBindingRequest),
    }

    let mut request = Message::new();
    request
        .unmarshal_binary(packet)
        .map_err(|_| IceDropReason::Malformed)?;
    let attributes = &request.attributes.0;

    // FINGERPRINT must be the last attribute; the stun crate checks the CRC over
    // everything before the final 8 bytes, which is only right when it is.
    if attributes.last().map(|a| a.typ) != Some(ATTR_FINGERPRINT) {
        return Err(IceDropReason::Fingerprint);
    }
    FINGERPRINT
        .check(&request)
        .map_err(|_| IceDropReason::Fingerprint)?;

    // Attributes after MESSAGE-INTEGRITY (other than FINGERPRINT) are unauthenticated and
    // ignored (RFC 5389 §15.4), so only the ones before it are read.
    let integrity_at = attributes
        .iter()
        .position(|a| a.typ == ATTR_MESSAGE_INTEGRITY)
        .ok_or(IceDropReason::Integrity)?;
    if attributes[integrity_at].value.len() != MESSAGE_INTEGRITY_LEN {
        return Err(IceDropReason::Integrity);
    }
    let authenticated = &attributes[..integrity_at];

    let username = authenticated
        .iter()
        .find(|a| a.typ == ATTR_USERNAME)
        .ok_or(IceDropReason::Username)?;
    let remote_ufrag = remote_ufrag_of(&username.value, creds).ok_or(IceDropReason::Username)?;
    let use_candidate = authenticated.iter().any(|a| a.typ == ATTR_USE_CANDIDATE);
    let priority = authenticated
        .iter()
        .find(|a| a.typ == ATTR_PRIORITY)
        .and_then(|a| <[u8; 4]>::try_from(a.value.as_slice()).ok())
        .map(u32::from_be_bytes);
    let unknown: Vec<AttrType> = authenticated
        .iter()
        .map(|a| a.typ)
        .filter(|t| t.required() && !KNOWN_REQUIRED.contains(&t.value()))
        .take(MAX_UNKNOWN_LISTED)
        .collect();

    MessageIntegrity::new_short_term_integrity(creds.local_pwd.clone())
        .check(&mut request)
        .map_err(|_| IceDropReason::Integrity)?;

    if !unknown.is_empty() {
        let response = build_response(&request, BINDING_ERROR, creds, |m| {
            CODE_UNKNOWN_ATTRIBUTE.add_to(m)?;
            UnknownAttributes(unknown).add_to(m)
        })?;
        let response_len = copy_out(&response, out)?;
        return Ok(IceOutcome::RespondUnknownAttributes { response_len, from });
    }

    let mapped = XorMappedAddress {
        // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; answer in their family.
        ip: from.ip().to_canonical(),
        port: from.port(),
    };
    let response = build_response(&request, BINDING_SUCCESS, creds, |m| mapped.add_to(m))?;
    let response_len = copy_out(&response, out)?;
    Ok(IceOutcome::Respond {
        response_len,
        use_candidate,
        priority,
        remote_ufrag,
        from,
    })
}

/// USERNAME is `<ufrag of the receiver>:<ufrag of the sender>` (RFC 8445 §7.2.2): the
/// sender's identity when the USERNAME is one we accept, else `None`.
fn remote_ufrag_of(value: &[u8], creds: &IceCredentials) -> Option<UfragId> {
    let remote = value
        .strip_prefix(creds.local_ufrag.as_bytes())
        .and_then(|rest| rest.strip_prefix(b":"))?;
    let accepted = match &creds.remote_ufrag {
        Some(expected) => remote == expected.as_bytes(),
        None => !remote.is_empty(),
    };
    accepted.then(|| UfragId::of(remote))
}

/// A response to `request` with the attributes `add_body` writes, then
/// MESSAGE-INTEGRITY (local password) and FINGERPRINT.
fn build_response(
    request: &Message,
    typ: MessageType,
    creds: &IceCredentials,
    add_body: impl FnOnce(&mut Message) -> Result<(), stun::Error>,
) -> Result<Message, IceDropReason> {
    let mut response = Message::new();
    response.transaction_id = request.transaction_id;
    response.typ = typ;
    response.write_header();
    add_body(&mut response).map_err(|_| IceDropReason::Malformed)?;
    MessageIntegrity::new_short_term_integrity(creds.local_pwd.clone())
        .add_to(&mut response)
        .map_err(|_| IceDropReason::Malformed)?;
    FINGERPRINT
        .add_to(&mut response)
        .map_err(|_| IceDropReason::Malformed)?;
    Ok(response)
}

fn copy_out(response: &Message, out: &mut [u8]) -> Result<usize, IceDropReason> {
    let len = response.raw.len();
    let dest = out.get_mut(..len).ok_or(IceDropReason::BufferTooSmall)?;
    dest.copy_from_slice(&response.raw);
    Ok(len)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use stun::attributes::{ATTR_ICE_CONTROLLING, ATTR_UNKNOWN_ATTRIBUTES};
    use stun::message::{Getter, BINDING_REQUEST};
    use stun::textattrs::TextAttribute;

    use super::*;

    const LOCAL_UFRAG: &str = "sbcU";
    const LOCAL_PWD: &str = "sbcPasswordOf22Chars00";
    const REMOTE_UFRAG: &str = "teamsU";

    fn creds(remote: Option<&str>) -> IceCredentials {
        IceCredentials {
            local_ufrag: LOCAL_UFRAG.into(),
            local_pwd: LOCAL_PWD.into(),
            remote_ufrag: remote.map(String::from),
        }
    }

    fn teams_client() -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)), 50_010)
    }

    /// A connectivity check as a full, controlling Teams agent sends it.
    struct Check {
        typ: MessageType,
        username: Option<String>,
        pwd: String,
        use_candidate: bool,
        extra: Vec<(u16, Vec<u8>)>,
        after_integrity: Vec<(u16, Vec<u8>)>,
        integrity: bool,
        fingerprint: bool,
    }

    impl Check {
        fn valid() -> Self {
            Self {
                typ: BINDING_REQUEST,
                username: Some(format!("{LOCAL_UFRAG}:{REMOTE_UFRAG}")),
                pwd: LOCAL_PWD.into(),
                use_candidate: false,
                extra: Vec::new(),
                after_integrity: Vec::new(),
                integrity: true,
                fingerprint: true,
            }
        }

        fn build(self) -> (Vec<u8>, Message) {
            let mut m = Message::new();
            m.typ = self.typ;
            m.new_transaction_id().unwrap();
            m.write_header();
            if let Some(username) = self.username {
                TextAttribute::new(ATTR_USERNAME, username)
                    .add_to(&mut m)
                    .unwrap();
            }
            m.add(ATTR_PRIORITY, &0x6E00_1EFFu32.to_be_bytes());
            m.add(ATTR_ICE_CONTROLLING, &[1, 2, 3, 4, 5, 6, 7, 8]);
            if self.use_candidate {
                m.add(ATTR_USE_CANDIDATE, &[]);
            }
            for (typ, value) in &self.extra {
                m.add(AttrType(*typ), value);
            }
            if self.integrity {
                MessageIntegrity::new_short_term_integrity(self.pwd)
                    .add_to(&mut m)
                    .unwrap();
            }
            for (typ, value) in &self.after_integrity {
                m.add(AttrType(*typ), value);
            }
            if self.fingerprint {
                FINGERPRINT.add_to(&mut m).unwrap();
            }
            (m.raw.clone(), m)
        }
    }

    fn answer(packet: &[u8], from: SocketAddr, creds: &IceCredentials) -> (IceOutcome, Vec<u8>) {
        let mut out = [0u8; MAX_RESPONSE_LEN];
        let outcome = handle_packet(packet, from, creds, &mut out);
        let len = match outcome {
            IceOutcome::Respond { response_len, .. }
            | IceOutcome::RespondUnknownAttributes { response_len, .. } => response_len,
            _ => 0,
        };
        (outcome, out[..len].to_vec())
    }

    /// Decodes a response with the stun crate and checks integrity and fingerprint.
    fn decode_response(bytes: &[u8], request: &Message) -> Message {
        let mut response = Message::new();
        response.unmarshal_binary(bytes).unwrap();
        assert_eq!(response.transaction_id, request.transaction_id);
        MessageIntegrity::new_short_term_integrity(LOCAL_PWD.into())
            .check(&mut response)
            .expect("response integrity uses the local password");
        FINGERPRINT.check(&response).expect("response fingerprint");
        assert!(MessageIntegrity::new_short_term_integrity("other".into())
            .check(&mut response)
            .is_err());
        response
    }

    fn mapped_address(response: &Message) -> SocketAddr {
        let mut mapped = XorMappedAddress::default();
        mapped.get_from(response).unwrap();
        SocketAddr::new(mapped.ip, mapped.port)
    }

    /// Row 50: a valid check gets a Binding success with XOR-MAPPED-ADDRESS, integrity
    /// and fingerprint.
    #[test]
    fn row50_valid_check_gets_binding_success() {
        for remote in [None, Some(REMOTE_UFRAG)] {
            let (packet, request) = Check::valid().build();
            let (outcome, bytes) = answer(&packet, teams_client(), &creds(remote));
            assert_eq!(
                outcome,
                IceOutcome::Respond {
                    response_len: bytes.len(),
                    use_candidate: false,
                    priority: Some(0x6E00_1EFF),
                    remote_ufrag: UfragId::of(REMOTE_UFRAG.as_bytes()),
                    from: teams_client(),
                }
            );
            let response = decode_response(&bytes, &request);
            assert_eq!(response.typ, BINDING_SUCCESS);
            assert_eq!(mapped_address(&response), teams_client());
            assert_eq!(
                response.attributes.0.last().map(|a| a.typ),
                Some(ATTR_FINGERPRINT)
            );
        }
    }

    #[test]
    fn row50_use_candidate_is_reported() {
        let mut check = Check::valid();
        check.use_candidate = true;
        let (packet, _) = check.build();
        let (outcome, _) = answer(&packet, teams_client(), &creds(Some(REMOTE_UFRAG)));
        assert!(matches!(
            outcome,
            IceOutcome::Respond {
                use_candidate: true,
                ..
            }
        ));
    }

    #[test]
    fn use_candidate_after_integrity_is_not_trusted() {
        let mut check = Check::valid();
        check.after_integrity.push((0x0025, Vec::new()));
        let (packet, _) = check.build();
        let (outcome, _) = answer(&packet, teams_client(), &creds(None));
        assert!(matches!(
            outcome,
            IceOutcome::Respond {
                use_candidate: false,
                ..
            }
        ));
    }

    /// Row 51: Microsoft's vendor attributes (comprehension-optional) are ignored.
    #[test]
    fn row51_unknown_optional_attributes_are_tolerated() {
        let mut check = Check::valid();
        check.extra = vec![
            (0x8070, vec![0, 0, 0, 6]),
            (0x8036, vec![1, 2, 3]),
            (0x8054, b"candidate-id-1".to_vec()),
            (0x8055, vec![0; 8]),
        ];
        let (packet, request) = check.build();
        let (outcome, bytes) = answer(&packet, teams_client(), &creds(Some(REMOTE_UFRAG)));
        assert!(matches!(outcome, IceOutcome::Respond { .. }), "{outcome:?}");
        let response = decode_response(&bytes, &request);
        assert_eq!(mapped_address(&response), teams_client());
    }

    #[test]
    fn unknown_required_attribute_gets_420() {
        let mut check = Check::valid();
        check.extra = vec![(0x7777, vec![9; 4]), (0x8070, vec![0; 4])];
        let (packet, request) = check.build();
        let (outcome, bytes) = answer(&packet, teams_client(), &creds(None));
        assert_eq!(
            outcome,
            IceOutcome::RespondUnknownAttributes {
                response_len: bytes.len(),
                from: teams_client()
            }
        );
        let response = decode_response(&bytes, &request);
        assert_eq!(response.typ, BINDING_ERROR);
        let mut unknown = UnknownAttributes(Vec::new());
        unknown.get_from(&response).unwrap();
        assert_eq!(unknown.0, vec![AttrType(0x7777)]);
        assert!(response.contains(ATTR_UNKNOWN_ATTRIBUTES));
    }

    #[test]
    fn wrong_username_is_dropped() {
        let cases = [
            Some(format!("other:{REMOTE_UFRAG}")),
            Some(format!("{LOCAL_UFRAG}x:{REMOTE_UFRAG}")),
            Some(format!("{LOCAL_UFRAG}{REMOTE_UFRAG}")),
            Some(format!("{LOCAL_UFRAG}:")),
            Some(format!("{REMOTE_UFRAG}:{LOCAL_UFRAG}")),
            None,
        ];
        for username in cases {
            let mut check = Check::valid();
            check.username = username.clone();
            let (packet, _) = check.build();
            let (outcome, _) = answer(&packet, teams_client(), &creds(None));
            assert_eq!(
                outcome,
                IceOutcome::Drop(IceDropReason::Username),
                "{username:?}"
            );
        }
    }

    #[test]
    fn known_remote_ufrag_must_match_exactly() {
        let mut check = Check::valid();
        check.username = Some(format!("{LOCAL_UFRAG}:someoneElse"));
        let (packet, _) = check.build();
        let (outcome, _) = answer(&packet, teams_client(), &creds(Some(REMOTE_UFRAG)));
        assert_eq!(outcome, IceOutcome::Drop(IceDropReason::Username));
        let (outcome, _) = answer(&packet, teams_client(), &creds(None));
        assert!(matches!(outcome, IceOutcome::Respond { .. }));
    }

    #[test]
    fn wrong_or_missing_integrity_is_dropped() {
        let mut check = Check::valid();
        check.pwd = "notTheRightPassword000".into();
        let (packet, _) = check.build();
        let (outcome, _) = answer(&packet, teams_client(), &creds(None));
        assert_eq!(outcome, IceOutcome::Drop(IceDropReason::Integrity));

        let mut check = Check::valid();
        check.integrity = false;
        let (packet, _) = check.build();
        let (outcome, _) = answer(&packet, teams_client(), &creds(None));
        assert_eq!(outcome, IceOutcome::Drop(IceDropReason::Integrity));
    }

    #[test]
    fn missing_or_wrong_fingerprint_is_dropped() {
        let mut check = Check::valid();
        check.fingerprint = false;
        let (packet, _) = check.build();
        let (outcome, _) = answer(&packet, teams_client(), &creds(None));
        assert_eq!(outcome, IceOutcome::Drop(IceDropReason::Fingerprint));

        let (mut packet, _) = Check::valid().build();
        let last = packet.len() - 1;
        packet[last] ^= 0xFF;
        let (outcome, _) = answer(&packet, teams_client(), &creds(None));
        assert_eq!(outcome, IceOutcome::Drop(IceDropReason::Fingerprint));
    }

    #[test]
    fn indications_and_responses_get_no_answer() {
        let mut check = Check::valid();
        check.typ = MessageType::new(
            stun::message::METHOD_BINDING,
            stun::message::CLASS_INDICATION,
        );
        let (packet, _) = check.build();
        let (outcome, _) = answer(&packet, teams_client(), &creds(None));
        assert_eq!(outcome, IceOutcome::Drop(IceDropReason::Indication));

        let mut check = Check::valid();
        check.typ = BINDING_SUCCESS;
        let (packet, _) = check.build();
        let (outcome, _) = answer(&packet, teams_client(), &creds(None));
        assert_eq!(outcome, IceOutcome::Drop(IceDropReason::NotBindingRequest));
    }

    /// Row 52: checks from several endpoints (forking) are each answered with their own
    /// mapped address; the function keeps no state between them.
    #[test]
    fn row52_checks_from_several_endpoints_are_all_answered() {
        let endpoints = [
            teams_client(),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(52, 112, 1, 9)), 3478),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 50_000),
        ];
        for from in endpoints {
            let (packet, request) = Check::valid().build();
            let (outcome, bytes) = answer(&packet, from, &creds(Some(REMOTE_UFRAG)));
            assert!(matches!(outcome, IceOutcome::Respond { from: f, .. } if f == from));
            assert_eq!(mapped_address(&decode_response(&bytes, &request)), from);
        }
    }

    /// Row 52: before the 200 (remote ufrag unknown) the checks of two forked clients are
    /// both answered, each reported with its own agent identity.
    #[test]
    fn row52_forked_agents_are_told_apart() {
        let mut agents = Vec::new();
        for fork in ["forkA", "forkB"] {
            let mut check = Check::valid();
            check.username = Some(format!("{LOCAL_UFRAG}:{fork}"));
            let (packet, _) = check.build();
            match answer(&packet, teams_client(), &creds(None)).0 {
                IceOutcome::Respond { remote_ufrag, .. } => {
                    assert_eq!(remote_ufrag, UfragId::of(fork.as_bytes()));
                    agents.push(remote_ufrag);
                }
                other => panic!("{fork}: {other:?}"),
            }
        }
        assert_ne!(agents[0], agents[1]);
    }

    #[test]
    fn ufrag_id_is_fnv1a_64() {
        assert_eq!(UfragId::of(b""), UfragId(0xcbf2_9ce4_8422_2325));
        assert_eq!(UfragId::of(b"a"), UfragId(0xaf63_dc4c_8601_ec8c));
        assert_eq!(UfragId::of(b"foobar"), UfragId(0x8594_4171_f739_67e8));
    }

    #[test]
    fn ipv4_mapped_source_is_answered_as_ipv4() {
        let mapped_v6 = SocketAddr::new(
            IpAddr::V6(Ipv4Addr::new(198, 51, 100, 7).to_ipv6_mapped()),
            50_010,
        );
        let (packet, request) = Check::valid().build();
        let (_, bytes) = answer(&packet, mapped_v6, &creds(None));
        assert_eq!(
            mapped_address(&decode_response(&bytes, &request)),
            teams_client()
        );
    }

    #[test]
    fn small_output_buffer_drops() {
        let (packet, _) = Check::valid().build();
        let mut out = [0u8; 40];
        assert_eq!(
            handle_packet(&packet, teams_client(), &creds(None), &mut out),
            IceOutcome::Drop(IceDropReason::BufferTooSmall)
        );
    }

    #[test]
    fn rtp_and_short_packets_are_not_stun() {
        let mut rtp = vec![0x80, 0x00, 0x00, 0x01];
        rtp.extend_from_slice(&[0; 168]);
        let (outcome, _) = answer(&rtp, teams_client(), &creds(None));
        assert_eq!(outcome, IceOutcome::NotStun);
        for len in 0..20 {
            let (packet, _) = Check::valid().build();
            let (outcome, _) = answer(&packet[..len], teams_client(), &creds(None));
            assert_eq!(outcome, IceOutcome::NotStun);
        }
    }

    /// Row 51: malformed packets are dropped silently and never answered.
    #[test]
    fn row51_truncated_extended_and_bit_flipped_checks_are_dropped() {
        let (packet, _) = Check::valid().build();
        for len in 20..packet.len() {
            let (outcome, _) = answer(&packet[..len], teams_client(), &creds(None));
            assert!(matches!(outcome, IceOutcome::Drop(_)), "len {len}");
        }
        let mut longer = packet.clone();
        longer.extend_from_slice(&[0; 4]);
        let (outcome, _) = answer(&longer, teams_client(), &creds(None));
        assert_eq!(outcome, IceOutcome::Drop(IceDropReason::Malformed));

        for byte in 0..packet.len() {
            for bit in 0..8 {
                let mut flipped = packet.clone();
                flipped[byte] ^= 1 << bit;
                let (outcome, _) = answer(&flipped, teams_client(), &creds(None));
                assert!(
                    !matches!(
                        outcome,
                        IceOutcome::Respond { .. } | IceOutcome::RespondUnknownAttributes { .. }
                    ),
                    "flip of byte {byte} bit {bit} was answered"
                );
            }
        }
    }

    #[test]
    fn random_stun_shaped_garbage_never_panics() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        };
        for round in 0..2000 {
            let len = 20 + (round % 120);
            let mut packet: Vec<u8> = (0..len).map(|_| next()).collect();
            packet[0] &= 0x01;
            packet[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            let body = (len - 20) as u16;
            if round % 2 == 0 {
                packet[2..4].copy_from_slice(&body.to_be_bytes());
            }
            let (outcome, _) = answer(&packet, teams_client(), &creds(None));
            assert!(matches!(outcome, IceOutcome::Drop(_)), "{outcome:?}");
        }
    }

    #[test]
    fn drop_labels_are_distinct() {
        let all = [
            IceDropReason::Malformed,
            IceDropReason::Indication,
            IceDropReason::NotBindingRequest,
            IceDropReason::Fingerprint,
            IceDropReason::Username,
            IceDropReason::Integrity,
            IceDropReason::BufferTooSmall,
        ];
        let labels: std::collections::HashSet<_> = all.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), all.len());
    }

    #[test]
    fn credentials_debug_hides_password() {
        assert!(!format!("{:?}", creds(None)).contains(LOCAL_PWD));
    }
}
