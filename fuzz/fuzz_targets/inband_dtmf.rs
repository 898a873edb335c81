//! In-band DTMF: the Goertzel detector (`media::inband_dtmf::ToneDetector`) on arbitrary
//! G.711 payloads of both laws, the G.711 codec tables, and the converter
//! (`media::dtmf_convert::DtmfConverter`) on arbitrary RTP packets both ways: carrier
//! audio towards Teams events, and Teams RFC 4733 events towards carrier tones.
//!
//! Checked: no panic; decode(encode(x)) is stable; what the converter rewrites fits the
//! buffer and is still an RTP packet with the same SSRC.
#![no_main]

use libfuzzer_sys::fuzz_target;
use teams_sbc::media::dtmf_convert::{Converted, DtmfConverter, ToCarrier};
use teams_sbc::media::inband_dtmf::{decode, encode, ToneDetector, G711};
use teams_sbc::media::rtp::read_rtp_header;
use teams_sbc::media::sys::PACKET_BUFFER_LEN;
use teams_sbc::media::InbandDtmfPlan;
use teams_sbc_fuzz::Records;

fuzz_target!(|data: &[u8]| {
    let mut ulaw = ToneDetector::new(G711::Ulaw);
    let mut alaw = ToneDetector::new(G711::Alaw);
    let mut converter = DtmfConverter::new(InbandDtmfPlan {
        event_pt: 101,
        pcmu_pt: Some(0),
        pcma_pt: Some(8),
        teams_event_pt: Some(96),
    });

    for (control, bytes) in Records::new(data) {
        match control & 3 {
            0 => {
                if let Some(digit) = ulaw.feed(bytes) {
                    assert!(digit < 16, "digit code {digit}");
                }
            }
            1 => {
                if let Some(digit) = alaw.feed(bytes) {
                    assert!(digit < 16, "digit code {digit}");
                }
            }
            _ => {
                let mut buf = [0u8; PACKET_BUFFER_LEN];
                let body = bytes.get(..PACKET_BUFFER_LEN - 64).unwrap_or(bytes);
                buf[..body.len()].copy_from_slice(body);
                let Some(header) = read_rtp_header(body) else {
                    continue;
                };
                let rewritten = if control & 3 == 2 {
                    match converter.process(&header, &mut buf, body.len()) {
                        Converted::Rewritten { len } => Some(len),
                        Converted::Audio => None,
                    }
                } else {
                    match converter.event_to_tone(&header, &mut buf, body.len()) {
                        ToCarrier::Tone { len } => Some(len),
                        ToCarrier::Redundant | ToCarrier::Drop => None,
                    }
                };
                if let Some(len) = rewritten {
                    assert!(len <= PACKET_BUFFER_LEN);
                    let out = read_rtp_header(&buf[..len]).expect("rewritten packet is RTP");
                    assert_eq!(out.ssrc, header.ssrc);
                }
            }
        }
    }
    for &byte in data.iter().take(64) {
        for law in [G711::Ulaw, G711::Alaw] {
            let sample = decode(law, byte);
            assert_eq!(decode(law, encode(law, sample)), sample);
        }
    }
});
