//! Real SIPp peers (package `sip-tester`) exchange RTP through a media session.
//!
//! The media engine knows no SIP, so SIPp signals directly UAC -> UAS; the UAS's answer
//! SDP points the UAC's media at the relay's carrier leg (templated into the scenario).
//! The UAC replays a PCMU pcap (`play_pcap_audio`, raw socket: needs root) to the relay; the
//! relay forwards it out of the Teams leg (SRTP: the Teams leg passes nothing else) to the
//! UAS, whose `-rtp_echo` sends every packet back to its source (the Teams leg); the Teams
//! leg's inbound key is its outbound key, so the echoes authenticate, and the relay forwards
//! them to the UAC's media port.
//! The echo proves SIPp received the forwarded packets; the relay's counters prove both
//! directions.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::write_pcmu_pcap;
use teams_sbc::media::srtp::{KeyMaterial, SrtpSuite};
use teams_sbc::media::{
    InterfaceSettings, LatchingMode, LegSide, MediaEngine, MediaSettings, SrtpKeys,
};

const RELAY_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 33, 1);
const UAC_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 33, 2);
const UAS_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 33, 3);
const UAC_SIP_PORT: u16 = 45070;
const UAS_SIP_PORT: u16 = 45080;
const UAC_MEDIA_PORT: u16 = 46000;
const UAS_MEDIA_PORT: u16 = 46100;
const PACKETS: u32 = 100; // 2 s of 20 ms PCMU

fn uac_scenario(pause_ms: u32) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="media-relay uac">
  <send retrans="500"><![CDATA[

      INVITE sip:teams@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:+15550000001@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:teams@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:+15550000001@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=carrier 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
      a=ptime:20

  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
  <send><![CDATA[

      ACK sip:teams@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:+15550000001@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:teams@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <nop><action><exec play_pcap_audio="pcmu.pcap"/></action></nop>
  <pause milliseconds="{pause_ms}"/>
  <send retrans="500"><![CDATA[

      BYE sip:teams@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:+15550000001@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:teams@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <recv response="200"/>
</scenario>
"#
    )
}

/// The UAS answers with the relay's carrier-leg address as its media address.
fn uas_scenario(relay_media: SocketAddr) -> String {
    let (ip, port) = (relay_media.ip(), relay_media.port());
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="media-relay uas">
  <recv request="INVITE"/>
  <send retrans="500"><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:teams@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=teams 1 1 IN IP4 {ip}
      s=-
      c=IN IP4 {ip}
      t=0 0
      m=audio {port} RTP/AVP 0
      a=rtpmap:0 PCMU/8000
      a=ptime:20

  ]]></send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

  ]]></send>
</scenario>
"#
    )
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_bounded(child: &mut KillOnDrop, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.0.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn sipp_uac_and_uas_exchange_rtp_through_a_session() {
    common::require("sipp", "sip-tester");
    let dir = tempfile::tempdir().unwrap();
    write_pcmu_pcap(&dir.path().join("pcmu.pcap"), PACKETS);

    let registry = prometheus::Registry::new();
    let relay_ip = IpAddr::V4(RELAY_IP);
    let settings = MediaSettings {
        interfaces: vec![
            InterfaceSettings::new("carrier", relay_ip, 46200, 46299),
            InterfaceSettings::new("teams", relay_ip, 46300, 46399),
        ],
        workers: 2,
        latching: LatchingMode::Learn { after_packets: 3 },
        // The relay alone: every packet out is one that came in (the SBC's own RTCP reports,
        // row 46, are proven in calls_generated_media).
        rtcp_reports: false,
        ..MediaSettings::default()
    };
    let (media, _events) = MediaEngine::start(settings, &registry).unwrap();
    let session = media.create_session("carrier", "teams", &[]).unwrap();
    let echo_key = SrtpKeys::new(SrtpSuite::AesCm128HmacSha1_80, KeyMaterial::generate());
    media
        .set_srtp(
            session.id,
            LegSide::Teams,
            Some(echo_key.clone()),
            Some(echo_key),
        )
        .unwrap();
    let uac_media = SocketAddr::new(IpAddr::V4(UAC_IP), UAC_MEDIA_PORT);
    let uas_media = SocketAddr::new(IpAddr::V4(UAS_IP), UAS_MEDIA_PORT);
    media
        .set_remote(session.id, LegSide::Carrier, uac_media, None, false)
        .unwrap();
    media
        .set_remote(session.id, LegSide::Teams, uas_media, None, true)
        .unwrap();

    let write = |name: &str, text: &str| {
        let mut f = std::fs::File::create(dir.path().join(name)).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    write("uac.xml", &uac_scenario(PACKETS * 20 + 500));
    write("uas.xml", &uas_scenario(session.carrier.rtp));

    let sipp = |args: &[String]| {
        Command::new("sipp")
            .current_dir(dir.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sipp (apt-get install -y sip-tester)")
    };
    let s = |v: &str| v.to_string();
    let mut uas = KillOnDrop(sipp(&[
        s("-sf"),
        s("uas.xml"),
        s("-i"),
        UAS_IP.to_string(),
        s("-p"),
        UAS_SIP_PORT.to_string(),
        s("-mi"),
        UAS_IP.to_string(),
        s("-mp"),
        UAS_MEDIA_PORT.to_string(),
        s("-rtp_echo"),
        s("-m"),
        s("1"),
        s("-nostdin"),
        s("-timeout"),
        s("30s"),
    ]));
    std::thread::sleep(Duration::from_millis(300));
    let mut uac = KillOnDrop(sipp(&[
        s("-sf"),
        s("uac.xml"),
        s("-i"),
        UAC_IP.to_string(),
        s("-p"),
        UAC_SIP_PORT.to_string(),
        s("-mi"),
        UAC_IP.to_string(),
        s("-mp"),
        UAC_MEDIA_PORT.to_string(),
        s("-m"),
        s("1"),
        s("-nostdin"),
        s("-timeout"),
        s("30s"),
        format!("{UAS_IP}:{UAS_SIP_PORT}"),
    ]));
    let uac_status = wait_bounded(&mut uac, Duration::from_secs(40)).expect("SIPp UAC finished");
    let uas_status = wait_bounded(&mut uas, Duration::from_secs(10)).expect("SIPp UAS finished");
    assert!(uac_status.success(), "SIPp UAC call failed: {uac_status}");
    assert!(uas_status.success(), "SIPp UAS call failed: {uas_status}");

    let stats = media.stats(session.id).unwrap();
    eprintln!("relay stats after the SIPp call: {stats:#?}");
    let minimum = u64::from(PACKETS) * 95 / 100;
    assert!(
        stats.carrier.rx_packets >= minimum,
        "relay got {} of {PACKETS} RTP packets from the SIPp UAC",
        stats.carrier.rx_packets
    );
    assert_eq!(
        stats.teams.tx_packets, stats.carrier.rx_packets,
        "every packet forwarded to the UAS"
    );
    assert!(
        stats.teams.rx_packets >= minimum,
        "the SIPp UAS echoed only {} packets",
        stats.teams.rx_packets
    );
    assert_eq!(
        stats.carrier.tx_packets, stats.teams.rx_packets,
        "every echo forwarded back to the UAC's media port"
    );
    assert_eq!(stats.carrier.lost, 0);
    assert_eq!(stats.carrier.dropped + stats.teams.dropped, 0);
    media.shutdown();
}
