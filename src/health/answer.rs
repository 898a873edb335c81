//! Our answer to an inbound OPTIONS (Teams checklist rows 34, 36, 59).

use bytes::Bytes;

use super::SbcIdentity;
use crate::sip::{HeaderName, Message, ResponseBuilder};
use crate::transaction::new_tag;

/// Methods we advertise: REFER and NOTIFY included (row 36).
pub const ALLOW_METHODS: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, REFER";

/// `200 OK` to `req` (an OPTIONS): To tag, FQDN Contact with the transport of the listener it
/// arrived on, Allow, Accept and the product headers for that peer (X-MS-SBC to Microsoft).
/// Answered statelessly: a retransmitted OPTIONS simply gets another 200.
pub fn options_response(req: &Message, identity: &SbcIdentity) -> Bytes {
    let builder = ResponseBuilder::new(req, 200, "OK")
        .to_tag(&new_tag())
        .header(&HeaderName::Contact, identity.contact().as_bytes())
        .header(&HeaderName::Allow, ALLOW_METHODS.as_bytes())
        .header(
            &HeaderName::Other(Bytes::from_static(b"Accept")),
            b"application/sdp",
        );
    identity.product.to_response(builder).build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{ProductHeaders, SipTransport};
    use crate::sip::Limits;

    fn identity(transport: SipTransport) -> SbcIdentity {
        SbcIdentity {
            fqdn: "sbc1.example.net".to_string(),
            port: 5061,
            transport,
            product: crate::health::ProductHeaders::microsoft("ExampleCorp", "RustSBC", "0.1.0"),
        }
    }

    fn teams_options() -> Message {
        let text = "OPTIONS sip:sbc1.example.net:5061;transport=tls SIP/2.0\r\n\
             Via: SIP/2.0/TLS 52.114.148.0:5061;branch=z9hG4bKms1\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:sip-du-a-us.pstnhub.microsoft.com:5061>;tag=ms1\r\n\
             To: <sip:sbc1.example.net>\r\n\
             Call-ID: ms-opt-1\r\n\
             CSeq: 7 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n";
        Message::parse(Bytes::from_static(text.as_bytes()), &Limits::default()).unwrap()
    }

    fn parse(bytes: Bytes) -> Message {
        Message::parse(bytes, &Limits::default()).unwrap()
    }

    #[test]
    fn row34_teams_options_gets_200_with_fqdn_contact_and_to_tag() {
        let req = teams_options();
        let resp = parse(options_response(&req, &identity(SipTransport::Tls)));
        assert_eq!(resp.status(), Some(200));
        let contact = resp.header(&HeaderName::Contact).unwrap();
        assert_eq!(
            contact.as_ref(),
            b"<sip:sbc1.example.net:5061;transport=tls>"
        );
        assert!(resp.to().unwrap().tag.is_some(), "a 200 carries a To tag");
        // Dialog-identifying headers come from the request.
        assert_eq!(resp.call_id().as_deref(), Some(&b"ms-opt-1"[..]));
        assert_eq!(resp.cseq().unwrap().seq, 7);
        assert_eq!(resp.from().unwrap().tag.as_deref(), Some(&b"ms1"[..]));
        assert_eq!(
            resp.top_via().unwrap().branch.as_deref(),
            Some(&b"z9hG4bKms1"[..])
        );
    }

    #[test]
    fn row36_allow_advertises_refer_and_notify_and_accepts_sdp() {
        let resp = parse(options_response(
            &teams_options(),
            &identity(SipTransport::Tls),
        ));
        let allow: Vec<String> = resp
            .header_values(&HeaderName::Allow)
            .iter()
            .map(|v| String::from_utf8_lossy(v).trim().to_string())
            .collect();
        for method in [
            "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "NOTIFY", "REFER",
        ] {
            assert!(
                allow.iter().any(|m| m == method),
                "{method} missing in {allow:?}"
            );
        }
        let accept = resp
            .header(&HeaderName::Other(Bytes::from_static(b"accept")))
            .unwrap();
        assert_eq!(accept.as_ref(), b"application/sdp");
    }

    #[test]
    fn row59_microsoft_hears_x_ms_sbc_and_no_server_header() {
        let resp = parse(options_response(
            &teams_options(),
            &identity(SipTransport::Tls),
        ));
        assert_eq!(
            resp.header(&HeaderName::XMsSbc).unwrap().as_ref(),
            b"ExampleCorp/RustSBC/0.1.0"
        );
        assert!(resp.header(&HeaderName::Server).is_none());
    }

    #[test]
    fn carriers_hear_no_version_unless_one_is_configured() {
        let mut id = identity(SipTransport::Udp);
        id.product = ProductHeaders::carrier(None);
        let resp = parse(options_response(&teams_options(), &id));
        assert!(resp.header(&HeaderName::XMsSbc).is_none());
        assert!(resp.header(&HeaderName::Server).is_none());
        id.product = ProductHeaders::carrier(Some("Carrier SBC"));
        let resp = parse(options_response(&teams_options(), &id));
        assert_eq!(
            resp.header(&HeaderName::Server).unwrap().as_ref(),
            b"Carrier SBC"
        );
    }

    #[test]
    fn contact_transport_follows_the_listener() {
        let resp = parse(options_response(
            &teams_options(),
            &identity(SipTransport::Udp),
        ));
        assert_eq!(
            resp.header(&HeaderName::Contact).unwrap().as_ref(),
            b"<sip:sbc1.example.net:5061;transport=udp>"
        );
    }

    #[test]
    fn configured_identity_cannot_inject_header_lines() {
        let microsoft = ProductHeaders::microsoft("ExampleCorp", "RustSBC", "1.0\r\nEvil: yes");
        assert_eq!(
            microsoft.x_ms_sbc.as_deref(),
            Some("ExampleCorp/RustSBC/1.0Evil:yes")
        );
        let carrier = ProductHeaders::carrier(Some("SBC\r\nEvil: yes"));
        assert_eq!(carrier.server.as_deref(), Some("SBCEvil: yes"));
    }
}
