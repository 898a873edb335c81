//! Real SIPp peers (package `sip-tester`) exchange RTP through a media session.
//!
//! The media engine knows no SIP, so SIPp signals directly UAC -> UAS; the UAS's answer
//! SDP points the UAC's media at the relay's carrier leg (templated into the scenario).
//! The UAC replays a PCMU pcap (`play_pcap_audio`, raw socket: needs root) to the relay; the
//! relay forwards it out of the Teams leg to the UAS, whose `-rtp_echo` sends every packet
//! back to its source (the Teams leg); the relay forwards those to the UAC's media port.
//! The echo proves SIPp received the forwarded packets; the relay's counters prove both
//! directions.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use teams_sbc::media::{InterfaceSettings, LatchingMode, LegSide, MediaEngine, MediaSettings};

const RELAY_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 33, 1);
const UAC_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 33, 2);
const UAS_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 33, 3);
const UAC_SIP_PORT: u16 = 45070;
const UAS_SIP_PORT: u16 = 45080;
const UAC_MEDIA_PORT: u16 = 46000;
const UAS_MEDIA_PORT: u16 = 46100;
const PACKETS: u32 = 100; // 2 s of 20 ms PCMU

fn require_sipp() {
    let found = Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "the `sipp` binary is missing: install it with `apt-get install -y sip-tester`"
    );
}

/// A PCMU pcap (Ethernet/IPv4/UDP/RTP, 20 ms packets of a 400 Hz tone) for
/// `play_pcap_audio`; SIPp rewrites the addresses and ports when replaying.
fn write_pcmu_pcap(path: &Path, packets: u32) {
    let mut out = Vec::new();
    // Global header: magic, v2.4, tz 0, sigfigs 0, snaplen 65535, linktype Ethernet.
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for i in 0..packets {
        let mut rtp = vec![0x80, if i == 0 { 0x80 } else { 0 }];
        rtp.extend_from_slice(&((1000 + i) as u16).to_be_bytes());
        rtp.extend_from_slice(&(160_000 + 160 * i).to_be_bytes());
        rtp.extend_from_slice(&0x5eed_1234u32.to_be_bytes());
        for n in 0..160u32 {
            let phase = 2.0 * std::f64::consts::PI * 400.0 * f64::from(i * 160 + n) / 8000.0;
            rtp.push(linear_to_ulaw((phase.sin() * 8000.0) as i16));
        }
        let mut udp = Vec::new();
        udp.extend_from_slice(&7000u16.to_be_bytes());
        udp.extend_from_slice(&8000u16.to_be_bytes());
        udp.extend_from_slice(&((8 + rtp.len()) as u16).to_be_bytes());
        udp.extend_from_slice(&0u16.to_be_bytes());
        udp.extend_from_slice(&rtp);
        let mut ip = vec![0x45, 0xb8];
        ip.extend_from_slice(&((20 + udp.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&(i as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
        let checksum = ip_checksum(&ip);
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&udp);
        let micros = i * 20_000;
        out.extend_from_slice(&(micros / 1_000_000).to_le_bytes());
        out.extend_from_slice(&(micros % 1_000_000).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    std::fs::write(path, out).unwrap();
}

fn ip_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// G.711 u-law encoding of one 16-bit sample.
fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let sign = if sample < 0 { 0x80 } else { 0 };
    let magnitude = (i32::from(sample).abs().min(CLIP)) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && magnitude & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (magnitude >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) | mantissa) as u8
}

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
    require_sipp();
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
        ..MediaSettings::default()
    };
    let (media, _events) = MediaEngine::start(settings, &registry).unwrap();
    let session = media.create_session("carrier", "teams").unwrap();
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
