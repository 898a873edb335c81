//! INVITE with `Replaces` from Microsoft (row 22, RFC 3891): a new dialog (unknown Call-ID,
//! no To tag) that takes over the Teams leg of a call in progress. It goes to the call whose
//! Teams dialog the header names (`Call::call_id(LegId::Teams)`, or a Teams Call-ID the call
//! took on later) instead of starting a call, and its own Call-ID is routed to that call from
//! now on (its ACK and later BYE use it), as for a transfer's new dialog. The call checks the
//! tags and answers (see `call/flow/replaces.rs`).
//!
//! * No call has that Teams dialog: 481 (RFC 3891 §3).
//! * The header does not parse, or there are several: 400 with the reason.
//! * The INVITE's own Call-ID already belongs to another dialog: 482, as for any new INVITE.
//! * From a carrier trunk: not ours to interpret. It goes on as a new PSTN -> Teams call and
//!   the header is dropped (nothing of the carrier's topology crosses; the SBC never sends
//!   Replaces to Microsoft, row 22); if it carries `Require: replaces`, the call answers 420
//!   with `Unsupported: replaces` (RFC 3261 §8.2.2.3).

use std::time::Instant;

use super::table::TxEntry;
use super::{Dispatcher, Layer, Route};
use crate::call::{Input, LegId, ReplacesHeader};
use crate::sip::{HeaderName, Message, Method};
use crate::transaction::TxId;
use crate::transport::{Peer, Source};

impl Dispatcher {
    /// Takes an INVITE with Replaces from Microsoft; gives every other request back.
    pub(super) fn route_replaces(
        &mut self,
        now: Instant,
        layer: &mut Layer,
        tx: TxId,
        msg: Message,
        from: &Source,
    ) -> Option<Message> {
        let initial_invite = msg.method() == Some(&Method::Invite)
            && msg.to().ok().is_some_and(|to| to.tag.is_none());
        if !initial_invite
            || !msg.has_header(&HeaderName::Replaces)
            || from.peer != Some(Peer::Microsoft)
        {
            return Some(msg);
        }
        let replaces = match ReplacesHeader::of(&msg) {
            Ok(Some(replaces)) => replaces,
            Ok(None) => return Some(msg),
            Err(reason) => {
                let reason = format!("Bad Request ({reason})");
                self.reply(now, layer, tx, &msg, 400, &reason, None, from.peer.clone());
                return None;
            }
        };
        let Some((key, LegId::Teams)) = self.table.by_call_id(&replaces.call_id) else {
            self.reply(
                now,
                layer,
                tx,
                &msg,
                481,
                "Call/Transaction Does Not Exist",
                None,
                from.peer.clone(),
            );
            return None;
        };
        let Some(call_id) = msg.call_id() else {
            self.reply(
                now,
                layer,
                tx,
                &msg,
                400,
                "Bad Request (no Call-ID)",
                None,
                from.peer.clone(),
            );
            return None;
        };
        match self.table.by_call_id(&call_id) {
            None => self.add_call_id(key, LegId::Teams, &call_id),
            // A new attempt on a Call-ID this call already took after refusing it (a 491);
            // never the Teams dialog in use nor the one to replace.
            Some((known, LegId::Teams))
                if known == key
                    && call_id != replaces.call_id
                    && self
                        .table
                        .get(key)
                        .is_some_and(|slot| *slot.call.call_id(LegId::Teams) != call_id) => {}
            Some(_) => {
                self.reply(
                    now,
                    layer,
                    tx,
                    &msg,
                    482,
                    "Loop Detected",
                    None,
                    from.peer.clone(),
                );
                return None;
            }
        }
        // No flow update: our BYE on the replaced dialog still goes on the old dialog's flow;
        // the new dialog's ACK sets the flow for what follows.
        self.table.add_tx(
            tx,
            TxEntry {
                call: key,
                leg: LegId::Teams,
                client: false,
                responded: false,
                proxy: None,
            },
        );
        self.trace_received(now, key, LegId::Teams, &Route::Back(from.clone()), &msg);
        self.feed(
            now,
            layer,
            key,
            Input::Request {
                leg: LegId::Teams,
                tx,
                msg,
            },
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use bytes::Bytes;
    use prometheus::Registry;

    use super::super::{start, DispatchEvents, Dispatcher, Layer, Route};
    use crate::sip::{HeaderName, Limits, Message, ResponseBuilder};
    use crate::transaction::{
        Output as TxOutput, TransactionLayer, TransactionMetrics, TransactionSettings,
    };
    use crate::transport::{Source, TransportKind};

    const CONFIG: &str = r#"
[sbc]
base_fqdn = "sbc.example.test"
vendor = "V"
model = "M"

[tls]
cert_chain = "sbc.pem"
private_key = "sbc.key"

[[listen]]
transport = "udp"
address = "127.0.0.1:5060"

[[listen]]
transport = "tls"
address = "127.0.0.1:5061"

[teams]
proxies = [{ address = "127.0.0.3:5061", transport = "tcp" }]
allowed_source_cidrs = ["127.0.0.3/32"]
lab_plain_tcp = true

[[carrier_trunk]]
name = "pstn"
address = "127.0.0.2:5060"
allowed_source_cidrs = ["127.0.0.2/32"]

[[tenant]]
name = "acme"
fqdn = "acme.sbc.example.test"
numbers = ["+4930123400-+4930123499"]
carrier_trunk = "pstn"

[media.carrier]
bind = "127.0.0.1"
port_min = 42600
port_max = 42649

[media.teams]
bind = "127.0.0.1"
port_min = 42650
port_max = 42699
"#;

    const TEAMS_SDP: &str = "v=0\r\no=- 9 9 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\n\
        t=0 0\r\nm=audio 49152 RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\n\
        a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^31\r\n\
        a=rtcp-mux\r\na=sendrecv\r\n";

    struct Bench {
        calls: Dispatcher,
        _events: DispatchEvents,
        layer: Layer,
    }

    fn bench() -> Bench {
        let mut loaded =
            crate::config::parse_str(CONFIG, "test.toml", std::path::Path::new("."), false)
                .unwrap();
        // No call detail record file in the source tree (relative paths resolve against ".").
        loaded.config.cdr.enabled = false;
        let registry = Registry::new();
        let local = vec![(TransportKind::Udp, "127.0.0.1:5060".parse().unwrap())];
        let (calls, events) = start(&loaded.config, &registry, local).unwrap();
        let layer = TransactionLayer::new(
            TransactionSettings::default(),
            TransactionMetrics::register(&registry).unwrap(),
        );
        Bench {
            calls,
            _events: events,
            layer,
        }
    }

    /// A message from `ip` over `kind`, its peer identified by the test config's rules as
    /// the transport would.
    fn source(ip: [u8; 4], kind: TransportKind) -> Source {
        let loaded =
            crate::config::parse_str(CONFIG, "test.toml", std::path::Path::new("."), false)
                .unwrap();
        let remote = SocketAddr::from((ip, 5070));
        Source {
            kind,
            local: "127.0.0.1:5060".parse().unwrap(),
            remote,
            connection: None,
            peer: crate::config::mapping::peer_rules(&loaded.config)
                .classify_plain(kind, remote.ip()),
        }
    }

    fn parse(text: &str) -> Message {
        Message::parse(Bytes::from(text.replace('\n', "\r\n")), &Limits::default()).unwrap()
    }

    fn with_sdp(head: &str, sdp: &str) -> Message {
        let head = head.replace('\n', "\r\n");
        Message::parse(
            Bytes::from(format!(
                "{head}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            )),
            &Limits::default(),
        )
        .unwrap()
    }

    /// Feed `msg` through the transaction layer and the dispatcher; everything transmitted
    /// (100 Trying left out), parsed.
    fn exchange(bench: &mut Bench, msg: Message, from: Source) -> Vec<Message> {
        let now = std::time::Instant::now();
        bench.layer.on_incoming(now, msg, Route::Back(from));
        let mut sent = Vec::new();
        let mut guard = 0;
        while let Some(output) = bench.layer.poll_output() {
            guard += 1;
            assert!(guard < 100, "runaway output");
            match output {
                TxOutput::Transmit { bytes, .. } => {
                    let msg = Message::parse(bytes, &Limits::default()).unwrap();
                    if msg.status() != Some(100) {
                        sent.push(msg);
                    }
                }
                TxOutput::Deliver(event) => {
                    let rest = bench.calls.on_tu_event(now, &mut bench.layer, event);
                    assert!(rest.is_none(), "a call-layer event was handed back");
                }
            }
        }
        sent
    }

    fn value(msg: &Message, name: HeaderName) -> String {
        String::from_utf8_lossy(&msg.header(&name).unwrap_or_default()).into_owned()
    }

    fn tag(value: &str) -> String {
        value.split(";tag=").nth(1).unwrap_or("").to_owned()
    }

    fn teams_replaces_invite(call_id: &str, replaces: &str) -> Message {
        teams_replaces_invite_on(call_id, replaces, call_id)
    }

    fn teams_replaces_invite_on(call_id: &str, replaces: &str, branch: &str) -> Message {
        with_sdp(
            &format!(
                "INVITE sip:+4969111222@acme.sbc.example.test:5061;transport=tls SIP/2.0\n\
                 Via: SIP/2.0/TCP 127.0.0.3:5061;branch=z9hG4bKrep{branch}\n\
                 Max-Forwards: 70\n\
                 From: <sip:+4930123450@sip.pstnhub.microsoft.com;user=phone>;tag=ms2\n\
                 To: <sip:+4969111222@acme.sbc.example.test;user=phone>\n\
                 Call-ID: {call_id}\nCSeq: 1 INVITE\n\
                 Contact: <sip:127.0.0.3:5061;transport=tcp>\nReplaces: {replaces}\n"
            ),
            TEAMS_SDP,
        )
    }

    fn teams() -> Source {
        source([127, 0, 0, 3], TransportKind::Tcp)
    }

    #[tokio::test]
    async fn row22_replaces_for_no_call_gets_481_and_a_bad_header_400_no_call_is_made() {
        let mut bench = bench();
        let sent = exchange(
            &mut bench,
            teams_replaces_invite("new-1", "nobody;to-tag=a;from-tag=b"),
            teams(),
        );
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].status(), Some(481));
        let sent = exchange(
            &mut bench,
            teams_replaces_invite("new-2", "nobody;to-tag=a"),
            teams(),
        );
        assert_eq!(sent[0].status(), Some(400));
        let reason = String::from_utf8_lossy(sent[0].bytes()).into_owned();
        assert!(
            reason.starts_with("SIP/2.0 400 Bad Request (Replaces"),
            "{reason}"
        );
        assert_eq!(bench.calls.call_count(), 0);
        bench.calls.shutdown();
    }

    /// Row 22 through the driver: the Replaces INVITE reaches the call whose Teams dialog it
    /// names, its own Call-ID routes there too (ACK, BYE), and no second call is made.
    #[tokio::test]
    async fn row22_replaces_invite_is_routed_to_the_call_and_its_call_id_follows() {
        let mut bench = bench();
        let carrier = source([127, 0, 0, 2], TransportKind::Udp);
        let invite = with_sdp(
            "INVITE sip:+4930123450@127.0.0.1 SIP/2.0\n\
             Via: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKc1\n\
             Max-Forwards: 70\n\
             From: <sip:+4969111222@127.0.0.2>;tag=c1\n\
             To: <sip:+4930123450@127.0.0.1>\n\
             Call-ID: carrier-1\nCSeq: 1 INVITE\n\
             Contact: <sip:+4969111222@127.0.0.2:5070>\n",
            "v=0\r\no=c 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
             m=audio 7000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
        );
        let sent = exchange(&mut bench, invite, carrier.clone());
        let to_teams = sent.into_iter().next().unwrap();
        let teams_call_id = value(&to_teams, HeaderName::CallId);
        let our_tag = tag(&value(&to_teams, HeaderName::From));
        let ok = ResponseBuilder::new(&to_teams, 200, "OK")
            .to_tag("ms1")
            .header(&HeaderName::Contact, b"<sip:127.0.0.3:5061;transport=tcp>")
            .body(Some("application/sdp"), TEAMS_SDP.as_bytes());
        let ok = Message::parse(ok, &Limits::default()).unwrap();
        let sent = exchange(&mut bench, ok, teams());
        let carrier_ok = sent.iter().find(|m| m.status() == Some(200)).unwrap();
        let ack = parse(&format!(
            "ACK sip:+4930123450@127.0.0.1 SIP/2.0\n\
             Via: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKc1ack\n\
             Max-Forwards: 70\nFrom: <sip:+4969111222@127.0.0.2>;tag=c1\nTo: {}\n\
             Call-ID: carrier-1\nCSeq: 1 ACK\nContent-Length: 0\n\n",
            value(carrier_ok, HeaderName::To)
        ));
        assert!(exchange(&mut bench, ack, carrier.clone()).is_empty());

        let replaces = format!("{teams_call_id};to-tag={our_tag};from-tag=ms1");
        let sent = exchange(
            &mut bench,
            teams_replaces_invite("new-dialog", &replaces),
            teams(),
        );
        assert_eq!(bench.calls.call_count(), 1, "no second call");
        let ok = sent.iter().find(|m| m.status() == Some(200)).expect("200");
        assert_eq!(value(ok, HeaderName::CallId), "new-dialog");
        assert!(String::from_utf8_lossy(&ok.body()).contains("RTP/SAVP"));
        let bye = sent
            .iter()
            .find(|m| m.method() == Some(&crate::sip::Method::Bye))
            .expect("BYE on the replaced dialog");
        assert_eq!(value(bye, HeaderName::CallId), teams_call_id);
        assert_eq!(sent.len(), 2, "nothing to the carrier");

        // A new INVITE on the Call-ID of the dialog in use is a loop, Replaces or not.
        let again = teams_replaces_invite_on("new-dialog", &replaces, "again");
        let sent = exchange(&mut bench, again, teams());
        assert_eq!(sent[0].status(), Some(482), "{sent:?}");

        // The new dialog's ACK and BYE reach the call by its Call-ID.
        let to = value(ok, HeaderName::To);
        let ack = parse(&format!(
            "ACK sip:x@127.0.0.1 SIP/2.0\nVia: SIP/2.0/TCP 127.0.0.3:5061;branch=z9hG4bKnack\n\
             Max-Forwards: 70\nFrom: <sip:+4930123450@sip.pstnhub.microsoft.com;user=phone>;tag=ms2\n\
             To: {to}\nCall-ID: new-dialog\nCSeq: 1 ACK\nContent-Length: 0\n\n"
        ));
        assert!(exchange(&mut bench, ack, teams()).is_empty());
        let bye = parse(&format!(
            "BYE sip:x@127.0.0.1 SIP/2.0\nVia: SIP/2.0/TCP 127.0.0.3:5061;branch=z9hG4bKnbye\n\
             Max-Forwards: 70\nFrom: <sip:+4930123450@sip.pstnhub.microsoft.com;user=phone>;tag=ms2\n\
             To: {to}\nCall-ID: new-dialog\nCSeq: 2 BYE\nContent-Length: 0\n\n"
        ));
        let sent = exchange(&mut bench, bye, teams());
        assert!(sent.iter().any(|m| m.status() == Some(200)), "{sent:?}");
        assert!(
            sent.iter()
                .any(|m| m.method() == Some(&crate::sip::Method::Bye)
                    && value(m, HeaderName::CallId) == "carrier-1"),
            "the carrier is released"
        );
        bench.calls.shutdown();
    }
}
