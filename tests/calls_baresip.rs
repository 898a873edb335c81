//! A PSTN -> Teams call whose Teams side is baresip (package `baresip-core`), a SIP user agent
//! nobody here wrote: SIP over mutual TLS (the SBC connects to baresip's TLS listener, which
//! presents the Microsoft stand-in certificate, and checks it against the dev CA and
//! `sip.pstnhub.microsoft.com`, rows 4 and 7) and SRTP with SDES keys (`mediaenc=srtp-mand`,
//! RTP/SAVP). baresip answers automatically and loops what it hears back out (`aubridge`),
//! re-encoded and re-encrypted with its own key by libsrtp; the SBC decrypts it, so the SRTP
//! on the Teams leg interoperates with an independent implementation in both directions.
//! The carrier side is SIPp over UDP replaying a PCMU pcap.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const ACME_DID: &str = "+4930123450";

/// `port` is baresip's SIP port; it takes `port + 1` for TLS.
fn write_baresip_config(dir: &Path, certs: &Path, port: u16, rtp_base: u16) {
    std::fs::create_dir_all(dir).unwrap();
    // libre wants the certificate and its key in one PEM file.
    let mut pem = std::fs::read_to_string(certs.join("teams.pem")).unwrap();
    pem.push_str(&std::fs::read_to_string(certs.join("teams.key")).unwrap());
    std::fs::write(dir.join("teams-stand-in.pem"), pem).unwrap();
    let config = format!(
        "poll_method\t\tepoll\n\
         sip_listen\t\t{TEAMS_IP}:{port}\n\
         sip_certificate\t\t{cert}\n\
         sip_cafile\t\t{ca}\n\
         sip_trans_def\t\ttls\n\
         audio_player\t\taubridge,loop\n\
         audio_source\t\taubridge,loop\n\
         audio_alert\t\taubridge,alert\n\
         rtp_ports\t\t{rtp_base}-{rtp_end}\n\
         net_interface\t\t{TEAMS_IP}\n\
         module_path\t\t/usr/lib/baresip/modules\n\
         module\t\t\tg711.so\n\
         module\t\t\taubridge.so\n\
         module\t\t\tsrtp.so\n\
         module_app\t\taccount.so\n",
        cert = dir.join("teams-stand-in.pem").display(),
        ca = certs.join("ca.pem").display(),
        rtp_end = rtp_base + 40,
    );
    std::fs::write(dir.join("config"), config).unwrap();
    let account = format!(
        "<sip:{ACME_DID}@{TEAMS_IP}:{tls_port};transport=tls>;regint=0;answermode=auto;\
         mediaenc=srtp-mand;audio_codecs=PCMU\n",
        tls_port = port + 1
    );
    std::fs::write(dir.join("accounts"), account).unwrap();
}

/// Rows 4, 7, 16, 32 and SRTP with a real TLS/SRTP peer as the Teams side.
#[test]
fn baresip_over_tls_with_srtp_sdes_answers_a_pstn_call() {
    require("baresip", "baresip-core");
    // baresip listens for TLS on its SIP port + 1.
    let sip_port = (0..100)
        .map(|_| free_tcp_port(TEAMS_IP))
        .find(|p| std::net::TcpListener::bind((TEAMS_IP, p + 1)).is_ok())
        .expect("two adjacent free ports");
    let port = sip_port + 1;
    let mut spec = LabSpec::new(51600);
    spec.proxies = vec![format!(
        r#"{{ address = "{TEAMS_IP}:{port}", tls_name = "sip.pstnhub.microsoft.com" }}"#
    )];
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[format!("{TEAMS_IP}:{port}")]);

    let home = lab.path().join("baresip");
    write_baresip_config(&home, &lab.path().join("certs"), sip_port, 44600);
    let log = std::fs::File::create(lab.path().join("baresip.log")).unwrap();
    let child = Command::new("baresip")
        .arg("-f")
        .arg(&home)
        .args(["-t", "60"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn baresip (apt-get install -y baresip-core)");
    let mut baresip = Peer::from_child("baresip", child, lab.path());
    wait_listening_tcp((TEAMS_IP, port).into());

    let mut carrier = carrier_uac(
        &lab,
        "carrier_uac.xml",
        ACME_DID,
        &[("CALLER", "+4969111222"), ("HOLD_MS", "3000")],
    );
    let status = carrier.wait(Duration::from_secs(45));
    let baresip_log = std::fs::read_to_string(lab.path().join("baresip.log")).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "carrier SIPp ended with {status:?}; SIPp errors:\n{}\nbaresip log:\n{baresip_log}",
        carrier.errors()
    );
    let to_teams = lab.metric("media_packets_total", &[("direction", "carrier_to_teams")]);
    let from_teams = lab.metric("media_packets_total", &[("direction", "teams_to_carrier")]);
    assert!(
        to_teams >= f64::from(PCAP_PACKETS) * 0.8,
        "carrier -> baresip packets: {to_teams}\n{baresip_log}"
    );
    assert!(
        from_teams >= 20.0,
        "baresip -> carrier packets (decrypted by the SBC): {from_teams}\n{baresip_log}"
    );
    assert_eq!(
        lab.metric("media_packets_dropped_total", &[("reason", "srtp_auth")]),
        0.0,
        "every SRTP packet from baresip authenticated\n{baresip_log}"
    );
    assert!(
        baresip_log.contains("SRTP is Enabled"),
        "baresip negotiated SRTP\n{baresip_log}"
    );
    lab.wait_idle();
    let _ = baresip.wait(Duration::from_millis(10));
}
