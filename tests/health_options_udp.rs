//! OPTIONS health end to end over loopback UDP with real peers nobody here wrote:
//! `sipsak` pings our responder (row 34), and a SIPp UAS answers our pinger (rows 33, 59).
//!
//! The small driver below (one task owning a UDP socket and a `TransactionLayer`) is also the
//! shape the app uses: feed parsed messages in, drain outputs, sleep until `poll_timeout`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prometheus::Registry;
use teams_sbc::health::{
    options_response, run_pinger, DnsResolver, HealthMetrics, OptionsPinger, OptionsSender,
    PeerState, PeerTarget, PingOutcome, PingerSettings, SbcIdentity, SipTransport,
};
use teams_sbc::sip::{Limits, Message, Method};
use teams_sbc::transaction::{
    Output, TransactionLayer, TransactionMetrics, TransactionSettings, TuEvent, TxId,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

fn identity(port: u16) -> SbcIdentity {
    SbcIdentity {
        fqdn: "sbc1.example.test".to_string(),
        port,
        transport: SipTransport::Udp,
        product: teams_sbc::health::ProductHeaders::microsoft("ExampleCorp", "RustSBC", "0.1.0"),
    }
}

struct SendCommand {
    dest: SocketAddr,
    request: Bytes,
    reply: oneshot::Sender<PingOutcome>,
}

/// One UDP socket + one transaction layer: answers OPTIONS, sends ours.
async fn run_stack(socket: UdpSocket, mut commands: mpsc::Receiver<SendCommand>) {
    let settings = TransactionSettings {
        t1: Duration::from_millis(20),
        ..TransactionSettings::default()
    };
    let metrics = TransactionMetrics::register(&Registry::new()).unwrap();
    let mut layer: TransactionLayer<SocketAddr> = TransactionLayer::new(settings, metrics);
    let local_port = socket.local_addr().unwrap().port();
    let me = identity(local_port);
    let mut waiting: HashMap<TxId, oneshot::Sender<PingOutcome>> = HashMap::new();
    let mut buf = vec![0u8; 65_535];
    loop {
        while let Some(output) = layer.poll_output() {
            match output {
                Output::Transmit { dest, bytes, tx } => {
                    if socket.send_to(&bytes, dest).await.is_err() {
                        if let Some(tx) = tx {
                            layer.on_transport_error(Instant::now().into_std(), tx);
                        }
                    }
                }
                Output::Deliver(TuEvent::Request { tx, msg, .. }) => {
                    if msg.method() == Some(&Method::Options) {
                        let answer = options_response(&msg, &me);
                        layer
                            .send_response(Instant::now().into_std(), tx, answer)
                            .unwrap();
                    }
                }
                Output::Deliver(TuEvent::Response { tx, msg, .. }) => {
                    let status = msg.status().unwrap_or(0);
                    if status >= 200 {
                        if let Some(reply) = waiting.remove(&tx) {
                            let _ = reply.send(PingOutcome::Response(status));
                        }
                    }
                }
                Output::Deliver(TuEvent::Timeout { tx, .. }) => {
                    if let Some(reply) = waiting.remove(&tx) {
                        let _ = reply.send(PingOutcome::Timeout);
                    }
                }
                Output::Deliver(TuEvent::TransportError { tx }) => {
                    if let Some(reply) = waiting.remove(&tx) {
                        let _ = reply.send(PingOutcome::TransportFailure);
                    }
                }
                Output::Deliver(_) => {}
            }
        }
        let wake = layer
            .poll_timeout()
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let Ok((len, source)) = received else { continue };
                let bytes = Bytes::copy_from_slice(&buf[..len]);
                if let Ok(msg) = Message::parse(bytes, &Limits::default()) {
                    layer.on_incoming(Instant::now().into_std(), msg, source);
                }
            }
            command = commands.recv() => {
                let Some(command) = command else { return };
                let msg = Message::parse(command.request, &Limits::default()).unwrap();
                match layer.send_request(Instant::now().into_std(), msg, command.dest) {
                    Ok(tx) => { waiting.insert(tx, command.reply); }
                    Err(_) => { let _ = command.reply.send(PingOutcome::TransportFailure); }
                }
            }
            _ = tokio::time::sleep_until(wake) => {
                layer.handle_timeout(Instant::now().into_std());
            }
        }
    }
}

struct StackSender(mpsc::Sender<SendCommand>);

impl OptionsSender for StackSender {
    async fn send_options(&self, _: &PeerTarget, dest: SocketAddr, request: Bytes) -> PingOutcome {
        let (reply, answer) = oneshot::channel();
        let command = SendCommand {
            dest,
            request,
            reply,
        };
        if self.0.send(command).await.is_err() {
            return PingOutcome::TransportFailure;
        }
        answer.await.unwrap_or(PingOutcome::TransportFailure)
    }
}

async fn start_stack() -> (
    SocketAddr,
    mpsc::Sender<SendCommand>,
    tokio::task::JoinHandle<()>,
) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (commands_tx, commands_rx) = mpsc::channel(16);
    let task = tokio::spawn(run_stack(socket, commands_rx));
    (addr, commands_tx, task)
}

fn require(tool: &str, package: &str) {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "the `{tool}` binary is missing: install it with `apt-get install -y {package}`"
    );
}

#[tokio::test]
async fn row34_sipsak_options_gets_200_with_fqdn_contact_and_x_ms_sbc() {
    require("sipsak", "sipsak");
    let (addr, _commands, task) = start_stack().await;
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new("sipsak")
            .arg("-vvv")
            .arg("-s")
            .arg(format!("sip:ping@127.0.0.1:{}", addr.port()))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("sipsak finished within 20 s")
    .expect("sipsak runs");
    task.abort();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "sipsak exit 0 means it received a 200:\n{stdout}"
    );
    let expected_contact = format!(
        "Contact: <sip:sbc1.example.test:{};transport=udp>",
        addr.port()
    );
    assert!(stdout.contains(&expected_contact), "{stdout}");
    assert!(
        stdout.contains("X-MS-SBC: ExampleCorp/RustSBC/0.1.0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, REFER"),
        "{stdout}"
    );
}

/// SIPp UAS that answers OPTIONS and fails the call unless X-MS-SBC and an FQDN Contact are
/// present.
const SIPP_OPTIONS_UAS: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="options uas">
  <recv request="OPTIONS">
    <action>
      <ereg regexp="ExampleCorp/RustSBC/0.1.0" search_in="hdr" header="X-MS-SBC:" check_it="true" assign_to="1"/>
      <ereg regexp="&lt;sip:sbc1.example.test:[0-9]+;transport=udp&gt;" search_in="hdr" header="Contact:" check_it="true" assign_to="2"/>
    </action>
  </recv>
  <send>
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]>
  </send>
  <Reference variables="1,2"/>
</scenario>
"#;

#[tokio::test]
async fn row33_pinger_is_up_while_sipp_answers_and_down_after_it_stops() {
    require("sipp", "sip-tester");
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("options_uas.xml");
    std::fs::write(&scenario, SIPP_OPTIONS_UAS).unwrap();
    // Fixed port above 40000, unique to this test (SIPp needs one to listen on).
    let sipp_port: u16 = 47_161;
    let mut sipp = tokio::process::Command::new("sipp")
        .args(["-sf", scenario.to_str().unwrap()])
        .args(["-i", "127.0.0.1", "-p", &sipp_port.to_string()])
        .args(["-m", "2"])
        .arg("-nostdin")
        .args(["-trace_err", "-error_file"])
        .arg(dir.path().join("errors.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sipp (apt-get install -y sip-tester)");
    // Give SIPp a moment to bind; a ping before that just counts as one failure.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (stack_addr, commands, stack) = start_stack().await;
    let now = Instant::now().into_std();
    let pinger = OptionsPinger::new(
        PeerTarget {
            name: "sipp".to_string(),
            host: "127.0.0.1".to_string(),
            port: sipp_port,
            transport: SipTransport::Udp,
        },
        identity(stack_addr.port()),
        PingerSettings {
            interval: Duration::from_millis(500),
            failures_before_down: 1,
        },
        HealthMetrics::register(&Registry::new()).unwrap(),
        now,
    );
    let (status_tx, mut status_rx) = watch::channel(pinger.health().clone());
    let resolver = Arc::new(DnsResolver::from_system().unwrap());
    let pinger_task = tokio::spawn(run_pinger(
        pinger,
        Arc::new(StackSender(commands)),
        resolver,
        status_tx,
    ));

    let up = tokio::time::timeout(
        Duration::from_secs(20),
        status_rx.wait_for(|h| h.state == PeerState::Up),
    )
    .await
    .expect("peer up within 20 s")
    .map(|h| h.last_status)
    .unwrap();
    assert_eq!(up, Some(200));

    // SIPp exits after 2 answered OPTIONS (-m 2); the next ping times out (Timer F).
    let sipp_status = tokio::time::timeout(Duration::from_secs(30), sipp.wait())
        .await
        .expect("sipp exits after two calls")
        .unwrap();
    let down = tokio::time::timeout(
        Duration::from_secs(30),
        status_rx.wait_for(|h| h.state == PeerState::Down),
    )
    .await
    .expect("peer down within 30 s")
    .map(|h| (h.last_status, h.consecutive_failures))
    .unwrap();
    pinger_task.abort();
    stack.abort();
    let errors = std::fs::read_to_string(dir.path().join("errors.log")).unwrap_or_default();
    assert!(
        sipp_status.success(),
        "SIPp saw a bad OPTIONS (missing X-MS-SBC or FQDN Contact?): {errors}"
    );
    assert_eq!(down.0, Some(200), "last status kept while down");
    assert!(down.1 >= 1);
}
