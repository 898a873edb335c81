//! Whole call flows with a simulated clock: inputs in, exact messages out (parsed back).

mod basic;
mod bypass_forks;
mod cause_mapping;
mod comfort_noise;
mod dtmf;
mod failover;
mod forks;
mod hops;
mod identity;
mod lmo;
mod location;
mod profile_rows;
mod random_flows;
mod refer;
mod reinvite;
mod replaces;
mod sdes;
mod session_timers;
mod teardown;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::media::{LegAddresses, SessionId};
use crate::sip::{HeaderName, Limits, Message, Method, ResponseBuilder};
use crate::transport::TransportKind;

pub(super) const TEAMS_KEY_B64: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

pub(super) fn carrier_sdp() -> String {
    "v=0\r\no=carrier 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
     m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
     a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
        .to_owned()
}

pub(super) fn teams_sdp() -> String {
    format!(
        "v=0\r\no=- 9 9 IN IP4 52.112.1.1\r\ns=-\r\nc=IN IP4 52.112.1.1\r\nt=0 0\r\n\
         m=audio 49152 RTP/SAVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{TEAMS_KEY_B64}|2^31\r\n\
         a=rtcp-mux\r\na=sendrecv\r\n"
    )
}

pub(super) fn parse(bytes: &[u8]) -> Message {
    Message::parse(Bytes::copy_from_slice(bytes), &Limits::default()).unwrap()
}

pub(super) fn with_body(head: &str, body: Option<&str>) -> Message {
    let body = body.unwrap_or("");
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    parse(format!("{head}{ct}Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes())
}

pub(super) fn carrier_invite(body: Option<&str>) -> Message {
    with_body(
        "INVITE sip:+14255550100@192.0.2.10:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKcarrier1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:2065550123@10.0.0.1>;tag=c1\r\n\
         To: <sip:+14255550100@192.0.2.10>\r\n\
         Call-ID: carrier-call-1@10.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:2065550123@10.0.0.1:5060>\r\n\
         Record-Route: <sip:10.0.0.99;lr>\r\n\
         P-Asserted-Identity: <sip:+12065559999@10.0.0.1>\r\n",
        body,
    )
}

pub(super) fn teams_invite(extra: &str, body: &str) -> Message {
    with_body(
        &format!(
            "INVITE sip:+12065550123@acme.sbc1.example.net:5068;user=phone SIP/2.0\r\n\
             Via: SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKteams1\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:+14255550100@sip.pstnhub.microsoft.com:5061;user=phone>;tag=t1\r\n\
             To: <sip:+12065550123@acme.sbc1.example.net:5068;user=phone>\r\n\
             Call-ID: teams-call-1\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>\r\n\
             Record-Route: <sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls;lr>\r\n\
             {extra}"
        ),
        Some(body),
    )
}

pub(super) fn setup() -> CallSetup {
    let carrier_rtp: SocketAddr = "192.0.2.10:20000".parse().unwrap();
    let teams_rtp: SocketAddr = "198.51.100.10:30000".parse().unwrap();
    CallSetup {
        media: SessionAllocation {
            id: SessionId(7),
            carrier: LegAddresses {
                rtp: carrier_rtp,
                rtcp: "192.0.2.10:20001".parse().unwrap(),
            },
            teams: LegAddresses {
                rtp: teams_rtp,
                rtcp: teams_rtp,
            },
        },
        teams: TeamsLegSetup {
            tenant_fqdn: "acme.sbc1.example.net".into(),
            sip_port: 5068,
            proxies: ["sip", "sip2", "sip3"]
                .iter()
                .map(|p| ProxyTarget {
                    fqdn: format!("{p}.pstnhub.microsoft.com"),
                    port: 5061,
                })
                .collect(),
            codecs: CodecList::teams_default(),
            ice: None,
            failover_response_codes: vec![408, 503, 504],
            forward_pai: false,
            local_media: None,
        },
        carrier: CarrierLegSetup {
            local_host: "192.0.2.10".into(),
            local_port: 5060,
            transport: TransportKind::Udp,
            targets: ["10.0.0.1", "10.0.0.2"]
                .iter()
                .map(|host| CarrierTarget {
                    host: (*host).into(),
                    port: 5060,
                    transport: TransportKind::Udp,
                    local_host: "192.0.2.10".into(),
                    local_port: 5060,
                    trunk: test_trunk(),
                    numbers: test_numbers(),
                })
                .collect(),
            trunk: test_trunk(),
            offer_rtcp_mux: false,
        },
        numbers: test_numbers(),
        teams_profile: TeamsProfile::new("ExampleCorp", "RustSBC", "0.1.0"),
        timers: CallTimers::default(),
    }
}

/// The trunk of the test setup (the calling trunk and every hop).
fn test_trunk() -> CarrierTrunkSettings {
    CarrierTrunkSettings {
        codecs: CodecList::carrier_default(),
        // The flows of the other test files relay every 18x (forks.rs covers the policies).
        early_media: EarlyMediaPolicy::Relay,
        ..CarrierTrunkSettings::default()
    }
}

fn test_numbers() -> CallNumbers {
    CallNumbers {
        caller: "+12065550123".into(),
        callee: "+14255550100".into(),
    }
}

/// `change` applied to the carrier trunk of `s` and every hop's: the call sees one trunk,
/// whichever direction it goes.
pub(super) fn every_trunk(s: &mut CallSetup, change: impl Fn(&mut CarrierTrunkSettings)) {
    change(&mut s.carrier.trunk);
    for hop in &mut s.carrier.targets {
        change(&mut hop.trunk);
    }
}

/// A trunk's `from_teams` calling-number rules with the one rule `pattern` -> `replacement`.
pub(super) fn calling_rules(pattern: &str, replacement: &str) -> crate::routing::RuleList {
    let rule = crate::config::TranslationRule {
        pattern: pattern.into(),
        replacement: replacement.into(),
        direction: crate::config::TranslationDirection::FromTeams,
        field: crate::config::TranslationField::Calling,
    };
    crate::routing::TrunkTranslation::compile(&[rule])
        .unwrap()
        .from_teams_calling
}

/// A request the call sent, with the TxId the fake driver gave it.
#[derive(Debug, Clone)]
pub(super) struct SentReq {
    pub leg: LegId,
    pub tx: TxId,
    pub target: Target,
    pub msg: Message,
}

/// A call plus a fake driver: hands out TxIds, keeps every output of the last step.
pub(super) struct Harness {
    pub call: Call,
    pub now: Instant,
    pub start: Instant,
    pub out: Vec<Output>,
    /// Every output since the start, in order.
    pub all: Vec<Output>,
    next_tx: u64,
    tx_of: Vec<(RequestToken, TxId)>,
}

impl Harness {
    pub fn inbound(setup: CallSetup, invite: Message) -> Harness {
        let now = Instant::now();
        let call = Call::new_from_carrier(now, setup, invite, TxId(1000));
        Harness::wrap(call, now)
    }

    pub fn outbound(setup: CallSetup, invite: Message) -> Harness {
        let now = Instant::now();
        let call = Call::new_from_teams(now, setup, invite, TxId(1000));
        Harness::wrap(call, now)
    }

    fn wrap(call: Call, now: Instant) -> Harness {
        let mut h = Harness {
            call,
            now,
            start: now,
            out: Vec::new(),
            all: Vec::new(),
            next_tx: 1,
            tx_of: Vec::new(),
        };
        h.drain();
        h
    }

    /// Drains outputs, answering each SendRequest with a fresh TxId like a driver would.
    fn drain(&mut self) {
        self.out.clear();
        let mut guard = 0;
        while let Some(o) = self.call.poll() {
            guard += 1;
            assert!(guard < 1000, "call produced too many outputs");
            if let Output::SendRequest { token, .. } = &o {
                let tx = TxId(self.next_tx);
                self.next_tx += 1;
                self.call.on_sent(self.now, *token, Some(tx));
                self.tx_of.push((*token, tx));
            }
            self.out.push(o.clone());
            self.all.push(o);
        }
    }

    pub fn input(&mut self, input: Input) -> &[Output] {
        self.call.handle(self.now, input);
        self.drain();
        &self.out
    }

    pub fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// The deadline of the last `SetTimer` for `kind`, unless cancelled after it.
    pub fn armed(&self, kind: TimerKind) -> Option<Instant> {
        for o in self.all.iter().rev() {
            match o {
                Output::SetTimer { kind: k, at } if *k == kind => return Some(*at),
                Output::CancelTimer { kind: k } if *k == kind => return None,
                _ => {}
            }
        }
        None
    }

    /// Fire `kind` at its deadline (the last SetTimer for it), advancing the clock.
    pub fn fire(&mut self, kind: TimerKind) -> &[Output] {
        let at = self
            .all
            .iter()
            .rev()
            .find_map(|o| match o {
                Output::SetTimer { kind: k, at } if *k == kind => Some(*at),
                _ => None,
            })
            .expect("timer was set");
        if at > self.now {
            self.now = at;
        }
        self.input(Input::Timer(kind))
    }

    /// Requests sent in the last step.
    pub fn requests(&self) -> Vec<SentReq> {
        requests_in(&self.out, &self.tx_of)
    }

    /// The only request with `method` sent in the last step.
    pub fn request(&self, method: Method) -> SentReq {
        let found: Vec<_> = self
            .requests()
            .into_iter()
            .filter(|r| r.msg.method() == Some(&method))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one {method}, outputs: {:#?}",
            self.out
        );
        found.into_iter().next().unwrap()
    }

    /// Responses sent in the last step (leg, tx, message).
    pub fn responses(&self) -> Vec<(LegId, TxId, Message)> {
        self.out
            .iter()
            .filter_map(|o| match o {
                Output::SendResponse { leg, tx, msg } => Some((*leg, *tx, parse(msg))),
                _ => None,
            })
            .collect()
    }

    pub fn response(&self, status: u16) -> (LegId, TxId, Message) {
        let found: Vec<_> = self
            .responses()
            .into_iter()
            .filter(|r| r.2.status() == Some(status))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one {status}, outputs: {:#?}",
            self.out
        );
        found.into_iter().next().unwrap()
    }

    pub fn acks(&self) -> Vec<(LegId, Target, Message)> {
        self.out
            .iter()
            .filter_map(|o| match o {
                Output::SendAck { leg, target, msg } => Some((*leg, target.clone(), parse(msg))),
                _ => None,
            })
            .collect()
    }

    pub fn media(&self) -> Vec<MediaCommand> {
        self.out
            .iter()
            .filter_map(|o| match o {
                Output::Media(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn records(&self) -> Vec<CallRecord> {
        self.out
            .iter()
            .filter_map(|o| match o {
                Output::Record(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn finished(&self) -> bool {
        self.out.iter().any(|o| matches!(o, Output::Finished))
    }

    /// The peer answers our request `req` with `status` (To tag `tag` unless 100).
    pub fn respond(
        &mut self,
        req: &SentReq,
        status: u16,
        tag: &str,
        extra: &[(&str, &str)],
        body: Option<&str>,
    ) -> &[Output] {
        let msg = peer_response(&req.msg, status, tag, extra, body);
        self.input(Input::Response {
            leg: req.leg,
            tx: req.tx,
            msg,
        })
    }
}

pub(super) fn peer_response(
    req: &Message,
    status: u16,
    tag: &str,
    extra: &[(&str, &str)],
    body: Option<&str>,
) -> Message {
    let mut b = ResponseBuilder::new(req, status, "Peer");
    if status > 100 {
        b = b.to_tag(tag);
    }
    for (name, value) in extra {
        b = b.header(&HeaderName::from_wire(name.as_bytes()), value.as_bytes());
    }
    let bytes = match body {
        Some(sdp) => b.body(Some("application/sdp"), sdp.as_bytes()),
        None => b.build(),
    };
    parse(&bytes)
}

fn requests_in(out: &[Output], tx_of: &[(RequestToken, TxId)]) -> Vec<SentReq> {
    out.iter()
        .filter_map(|o| match o {
            Output::SendRequest {
                leg,
                token,
                target,
                msg,
            } => {
                let tx = tx_of.iter().find(|(t, _)| t == token).map(|(_, tx)| *tx)?;
                Some(SentReq {
                    leg: *leg,
                    tx,
                    target: target.clone(),
                    msg: parse(msg),
                })
            }
            _ => None,
        })
        .collect()
}

pub(super) fn header(msg: &Message, name: HeaderName) -> String {
    String::from_utf8_lossy(&msg.header(&name).unwrap_or_default()).into_owned()
}

pub(super) fn body(msg: &Message) -> String {
    String::from_utf8_lossy(&msg.body()).into_owned()
}

pub(super) fn to_tag(msg: &Message) -> Option<String> {
    msg.to()
        .ok()
        .and_then(|t| t.tag)
        .map(|t| String::from_utf8_lossy(&t).into_owned())
}

/// A request from a peer inside the dialog the SBC set up on `leg` (uses our To/From).
/// `ours` is any message we sent on that leg (request or response) to copy identifiers from.
pub(super) fn peer_in_dialog_request(
    method: &str,
    cseq: u32,
    call_id: &str,
    peer_tag_side: &str,
    our_side: &str,
    via: &str,
) -> Message {
    with_body(
        &format!(
            "{method} sip:sbc@192.0.2.10 SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
             From: {peer_tag_side}\r\nTo: {our_side}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
        ),
        None,
    )
}

/// Answered inbound call (PSTN -> Teams): INVITE, Teams 200, carrier ACK.
pub(super) fn answered_inbound() -> (Harness, SentReq) {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite);
    h.respond(
        &invite,
        200,
        "ms1",
        &[(
            "Contact",
            "<sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>",
        )],
        Some(&teams_sdp()),
    );
    let ack = carrier_ack(&h);
    h.input(Input::Ack {
        leg: LegId::Carrier,
        msg: ack,
    });
    (h, invite)
}

/// The carrier's ACK for the 200 we sent it (taken from `h.all`).
pub(super) fn carrier_ack(h: &Harness) -> Message {
    carrier_ack_with(h, None)
}

/// The carrier's ACK, with an SDP answer (delayed offer).
pub(super) fn carrier_ack_with(h: &Harness, sdp: Option<&str>) -> Message {
    let ok = h
        .all
        .iter()
        .rev()
        .find_map(|o| match o {
            Output::SendResponse {
                leg: LegId::Carrier,
                msg,
                ..
            } if parse(msg).status() == Some(200) => Some(parse(msg)),
            _ => None,
        })
        .expect("200 to carrier");
    with_body(
        &format!(
            "ACK sip:+14255550100@192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKcack\r\n\
             Max-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: carrier-call-1@10.0.0.1\r\nCSeq: 1 ACK\r\n",
            header(&ok, HeaderName::From),
            header(&ok, HeaderName::To)
        ),
        sdp,
    )
}
