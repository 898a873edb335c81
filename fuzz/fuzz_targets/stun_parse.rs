//! Fuzzes the ICE-lite STUN responder (row 51: unknown attributes ignored, malformed packets
//! dropped, never a panic). Half the inputs are raw datagrams; the other half are turned
//! into Binding requests with fuzzer-chosen attributes and a valid MESSAGE-INTEGRITY and
//! FINGERPRINT, so the attribute handling and response path behind the checks is reached.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use stun::attributes::{AttrType, ATTR_USERNAME};
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{Message, Setter, BINDING_REQUEST};
use teams_sbc::media::ice::{handle_packet, IceCredentials, IceOutcome, MAX_RESPONSE_LEN};

const PWD: &str = "fuzzPasswordOf22Chars0";

fn signed_request(data: &[u8]) -> Vec<u8> {
    let mut m = Message::new();
    m.typ = BINDING_REQUEST;
    let mut id = [0u8; 12];
    for (slot, byte) in id.iter_mut().zip(data) {
        *slot = *byte;
    }
    m.transaction_id.0 = id;
    m.write_header();
    m.add(ATTR_USERNAME, b"fuzz:peer");
    // The rest is a list of (type, length, value) chunks.
    let mut rest = data.get(12..).unwrap_or(&[]);
    while rest.len() >= 3 {
        let typ = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(rest[2]).min(rest.len() - 3);
        m.add(AttrType(typ), &rest[3..3 + len]);
        rest = &rest[3 + len..];
    }
    if MessageIntegrity::new_short_term_integrity(PWD.into())
        .add_to(&mut m)
        .is_err()
    {
        return Vec::new();
    }
    if FINGERPRINT.add_to(&mut m).is_err() {
        return Vec::new();
    }
    m.raw
}

fuzz_target!(|data: &[u8]| {
    let creds = IceCredentials {
        local_ufrag: "fuzz".into(),
        local_pwd: PWD.into(),
        remote_ufrag: None,
    };
    let from = SocketAddr::from(([198, 51, 100, 7], 50_010));
    let (structured, body) = match data.split_first() {
        Some((first, body)) => (first & 1 == 1, body),
        None => (false, data),
    };
    let packet = if structured {
        signed_request(body)
    } else {
        body.to_vec()
    };
    let mut out = [0u8; MAX_RESPONSE_LEN];
    match handle_packet(&packet, from, &creds, &mut out) {
        IceOutcome::Respond { response_len, .. }
        | IceOutcome::RespondUnknownAttributes { response_len, .. } => {
            // Whatever we answer must itself be a well-formed, signed STUN message.
            let mut response = Message::new();
            assert!(response.unmarshal_binary(&out[..response_len]).is_ok());
            assert!(FINGERPRINT.check(&response).is_ok());
            assert!(MessageIntegrity::new_short_term_integrity(PWD.into())
                .check(&mut response)
                .is_ok());
        }
        IceOutcome::NotStun | IceOutcome::Drop(_) => {}
    }
});
