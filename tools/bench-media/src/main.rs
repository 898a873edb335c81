//! bench-media: loopback media load benchmark for the relay (issue "Media core", benchmarks).
//!
//! One process plays both media endpoints of N sessions: the carrier side sends G.711 RTP
//! (172 bytes: 12 header + 160 PCMU) to the relay's carrier leg, the Teams side receives what the
//! relay forwards (RTP, or SRTP that we decrypt with webrtc-srtp, an implementation independent of
//! ours), and the reverse direction likewise. Each packet carries its send time (CLOCK_REALTIME,
//! because the kernel receive timestamp SO_TIMESTAMPNS is CLOCK_REALTIME) in its payload; the
//! receiver reports forwarded packets/s, loss and one-way latency percentiles in microseconds.
//!
//! Relays (`--relay`):
//! - `direct`: no relay, the generator sockets talk to each other: the floor to subtract.
//! - `ours`: `teams_sbc::media::MediaEngine` started in this process (its CPU is the process
//!   CPU minus the generator's own threads).
//! - `map`: an external relay (rtpengine) whose sessions were set up beforehand; `--map FILE`
//!   lines are `a_port relay_port_for_a b_port relay_port_for_b key_to_b|- key_from_b|-`
//!   (SDES inline keys, base64 of 16-byte key + 14-byte salt); `--sut-pid` gives its CPU.
//!
//! Sockets: a small pool per side (`--pool`), not one per stream, so 5,000 sessions fit under
//! the open-files limit next to the relay's own sockets. Streams are told apart by SSRC. Each pool
//! socket both sends and receives, so a relay that checks the source against the remote it was
//! given still accepts our packets.
//!
//! Output: a human summary on stderr and one `RESULT key=value ...` line on stdout.
//! `--test` runs a tiny load (10 sessions, 2 s) and exits non-zero unless every packet arrived
//! intact (and, for SRTP, authenticated).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;

use base64::Engine as _;
use clap::{Parser, ValueEnum};
use webrtc_srtp::context::Context as SrtpContext;
use webrtc_srtp::protection_profile::ProtectionProfile;

const RTP_HEADER: usize = 12;
const G711_PACKET: usize = RTP_HEADER + 160;
const SRTP_TAG: usize = 10;
const MAGIC: u32 = 0x4c41_5442; // "LATB"
const SSRC_BASE: u32 = 0x1000_0000;
const BATCH: usize = 64;
const PKT_CAP: usize = 256;
/// 1 us buckets up to 1 s.
const HIST_US: usize = 1_000_000;
/// Packets due within this window are sent now as one burst instead of waking once per packet:
/// the sender sleeps, which leaves the CPU to the relay (2-core box).
const LEAD_NS: u64 = 50_000;
const SDES_KEY_LEN: usize = 30;

type SdesKey = [u8; SDES_KEY_LEN];

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum RelayKind {
    Direct,
    Ours,
    Map,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Direction {
    /// Carrier -> Teams and Teams -> carrier.
    Both,
    /// Carrier -> Teams only (RTP in, SRTP out in `--srtp` mode).
    Fwd,
}

#[derive(Parser, Debug, Clone)]
#[command(about = "Loopback media load benchmark: relay forwarded pps, loss, one-way latency")]
struct Args {
    /// Path under test.
    #[arg(long, value_enum, default_value = "ours")]
    relay: RelayKind,
    /// RTP -> SRTP: the Teams leg is SRTP (AES_CM_128_HMAC_SHA1_80); we decrypt what arrives there.
    #[arg(long)]
    srtp: bool,
    /// Concurrent sessions (each has a carrier and a Teams leg).
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Packets per second per stream per direction (50 = 20 ms ptime).
    #[arg(long, default_value_t = 50.0)]
    pps: f64,
    /// Total offered packets/s over all streams (overrides --pps); 0 = flat out.
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, value_enum, default_value = "both")]
    direction: Direction,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds at the start excluded from the latency statistics (not from loss).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Milliseconds to wait for stragglers after the last packet was sent.
    #[arg(long, default_value_t = 500)]
    drain_ms: u64,
    /// Generator sockets per side (direct/ours).
    #[arg(long, default_value_t = 8)]
    pool: usize,
    /// Packets per sendmmsg. Every packet is stamped before its batch goes out, so a large batch
    /// adds the kernel's per-packet loopback cost of the packets ahead of it to the measured
    /// latency (and a mid-batch reschedule adds milliseconds); 1 = stamp right before each send.
    #[arg(long, default_value_t = 4)]
    tx_batch: usize,
    /// Receiver threads (each owns a share of the pool sockets).
    #[arg(long, default_value_t = 1)]
    rx_threads: usize,
    /// Port map of an external relay (with --relay map).
    #[arg(long)]
    map: Option<String>,
    /// PIDs of an external relay, for its CPU%.
    #[arg(long)]
    sut_pid: Vec<u32>,
    /// Media worker threads of our engine (0 = its default).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    #[arg(long, default_value = "run")]
    label: String,
    /// Quick self-check: 10 sessions for 2 s unless given; exit 1 unless every packet arrived intact.
    #[arg(long)]
    test: bool,
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.test {
        let explicit =
            |name: &str| std::env::args().any(|a| a == name || a.starts_with(&format!("{name}=")));
        if !explicit("--sessions") {
            args.sessions = 10;
        }
        if !explicit("--seconds") {
            args.seconds = 2.0;
        }
        if !explicit("--warmup") {
            args.warmup = 0.2;
        }
    }
    match run(&args) {
        Ok(report) => {
            println!("{}", report.result_line(&args));
            eprintln!("{}", report.summary(&args));
            if args.test && !report.intact() {
                eprintln!("bench-media --test: FAILED (loss, invalid or unauthenticated packets)");
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench-media: {e}");
            ExitCode::from(2)
        }
    }
}

fn bad_input(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

fn validate(args: &Args) -> io::Result<()> {
    if args.sessions == 0 || args.sessions > 100_000 {
        return Err(bad_input("--sessions must be 1..=100000"));
    }
    if !(args.seconds > 0.0 && args.seconds <= 600.0) {
        return Err(bad_input("--seconds must be in (0, 600]"));
    }
    if !(args.warmup >= 0.0 && args.warmup < args.seconds) {
        return Err(bad_input("--warmup must be in [0, seconds)"));
    }
    if !(args.pps > 0.0 && args.pps <= 100_000.0) {
        return Err(bad_input("--pps must be in (0, 100000]"));
    }
    if let Some(r) = args.rate {
        if !(0.0..=10_000_000.0).contains(&r) {
            return Err(bad_input("--rate must be in [0, 1e7]"));
        }
    }
    if args.tx_batch == 0 || args.tx_batch > BATCH {
        return Err(bad_input(format!("--tx-batch must be 1..={BATCH}")));
    }
    if args.pool == 0 || args.pool > 1024 || args.rx_threads == 0 || args.rx_threads > 16 {
        return Err(bad_input("--pool must be 1..=1024 and --rx-threads 1..=16"));
    }
    if args.drain_ms > 10_000 {
        return Err(bad_input("--drain-ms must be <= 10000"));
    }
    if args.relay == RelayKind::Ours && !args.srtp {
        return Err(bad_input(
            "--relay ours needs --srtp: our Teams leg passes nothing but SRTP",
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------ plan

/// One session as the generator sees it: which of its sockets play the carrier and Teams ends,
/// where each end sends, and the SRTP keys of the Teams leg.
#[derive(Clone, Debug)]
struct SessionPlan {
    carrier_sock: usize,
    teams_sock: usize,
    /// Where the carrier end sends (relay carrier leg, or the Teams socket when direct).
    fwd_dst: SocketAddrV4,
    /// Where the Teams end sends.
    rev_dst: SocketAddrV4,
    /// Key the relay encrypts with towards Teams: we decrypt fwd packets with it.
    key_to_teams: Option<SdesKey>,
    /// Key the Teams end encrypts with: we encrypt rev packets with it.
    key_from_teams: Option<SdesKey>,
}

struct Plan {
    sockets: Vec<UdpSocket>,
    sessions: Vec<SessionPlan>,
    /// Keeps our in-process relay alive for the run.
    _relay: Option<ours::Relay>,
}

fn loopback_socket(port: u16) -> io::Result<UdpSocket> {
    let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
        .map_err(|e| io::Error::new(e.kind(), format!("bind 127.0.0.1:{port}: {e}")))?;
    let s2 = socket2::SockRef::from(&sock);
    // Best effort: the kernel caps at net.core.rmem_max/wmem_max.
    let _ = s2.set_recv_buffer_size(4 << 20);
    let _ = s2.set_send_buffer_size(4 << 20);
    sys::enable_rx_timestamps(sock.as_raw_fd())?;
    Ok(sock)
}

fn local_v4(sock: &UdpSocket) -> io::Result<SocketAddrV4> {
    match sock.local_addr()? {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(_) => Err(bad_input("expected an IPv4 socket")),
    }
}

fn ephemeral_pool(n: usize) -> io::Result<Vec<UdpSocket>> {
    (0..2 * n).map(|_| loopback_socket(0)).collect()
}

fn direct_plan(args: &Args) -> io::Result<Plan> {
    let sockets = ephemeral_pool(args.pool)?;
    let mut sessions = Vec::with_capacity(args.sessions);
    for s in 0..args.sessions {
        let carrier_sock = s % args.pool;
        let teams_sock = args.pool + s % args.pool;
        sessions.push(SessionPlan {
            carrier_sock,
            teams_sock,
            fwd_dst: local_v4(&sockets[teams_sock])?,
            rev_dst: local_v4(&sockets[carrier_sock])?,
            key_to_teams: None,
            key_from_teams: None,
        });
    }
    Ok(Plan {
        sockets,
        sessions,
        _relay: None,
    })
}

fn parse_key(field: &str) -> io::Result<Option<SdesKey>> {
    if field == "-" {
        return Ok(None);
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(field)
        .map_err(|e| bad_input(format!("bad SDES key {field:?}: {e}")))?;
    let key: SdesKey = raw
        .as_slice()
        .try_into()
        .map_err(|_| bad_input(format!("SDES key {field:?} is not 30 bytes")))?;
    Ok(Some(key))
}

fn map_plan(args: &Args) -> io::Result<Plan> {
    let path = args
        .map
        .as_deref()
        .ok_or_else(|| bad_input("--relay map needs --map FILE"))?;
    let text = fs::read_to_string(path)?;
    let mut sockets = Vec::new();
    let mut by_port: BTreeMap<u16, usize> = BTreeMap::new();
    let mut sock_for = |port: u16, sockets: &mut Vec<UdpSocket>| -> io::Result<usize> {
        if let Some(&i) = by_port.get(&port) {
            return Ok(i);
        }
        sockets.push(loopback_socket(port)?);
        by_port.insert(port, sockets.len() - 1);
        Ok(sockets.len() - 1)
    };
    let mut sessions = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() < 6 {
            return Err(bad_input(format!("{path}:{}: need 6 fields", n + 1)));
        }
        let port = |i: usize| -> io::Result<u16> {
            f[i].parse()
                .map_err(|_| bad_input(format!("{path}:{}: bad port {:?}", n + 1, f[i])))
        };
        let (a, ra, b, rb) = (port(0)?, port(1)?, port(2)?, port(3)?);
        sessions.push(SessionPlan {
            carrier_sock: sock_for(a, &mut sockets)?,
            teams_sock: sock_for(b, &mut sockets)?,
            fwd_dst: SocketAddrV4::new(Ipv4Addr::LOCALHOST, ra),
            rev_dst: SocketAddrV4::new(Ipv4Addr::LOCALHOST, rb),
            key_to_teams: parse_key(f[4])?,
            key_from_teams: parse_key(f[5])?,
        });
        if sessions.len() == args.sessions {
            break;
        }
    }
    if sessions.len() < args.sessions {
        return Err(bad_input(format!(
            "{path} has {} sessions, --sessions {}",
            sessions.len(),
            args.sessions
        )));
    }
    if args.srtp
        && sessions
            .iter()
            .any(|s| s.key_to_teams.is_none() || s.key_from_teams.is_none())
    {
        return Err(bad_input("--srtp needs both keys on every map line"));
    }
    Ok(Plan {
        sockets,
        sessions,
        _relay: None,
    })
}

// ------------------------------------------------------------------ streams

fn stream_ssrc(id: usize) -> u32 {
    SSRC_BASE.wrapping_add(id as u32)
}

fn srtp_context(key: &SdesKey) -> io::Result<SrtpContext> {
    SrtpContext::new(
        &key[..16],
        &key[16..],
        ProtectionProfile::Aes128CmHmacSha1_80,
        None,
        None,
    )
    .map_err(|e| io::Error::other(format!("SRTP context: {e}")))
}

/// A stream as the sender sees it. Stream id 2s is session s carrier -> Teams, 2s+1 the reverse.
struct TxStream {
    id: u32,
    sock: usize,
    dst: libc::sockaddr_in,
    seq: u16,
    timestamp: u32,
    sent: u64,
    encrypt: Option<SrtpContext>,
}

/// A stream as its receiver sees it.
#[derive(Default)]
struct RxStream {
    decrypt: Option<SrtpContext>,
    recv: u64,
    expected_len: usize,
}

/// The streams of a run: sender side, receiver side (indexed by stream id) and, per stream id,
/// the pool socket it arrives on.
struct Streams {
    tx: Vec<TxStream>,
    rx: Vec<Option<RxStream>>,
    rx_sock: Vec<usize>,
}

fn build_streams(args: &Args, plan: &Plan) -> io::Result<Streams> {
    let nstreams = 2 * plan.sessions.len();
    let mut tx = Vec::new();
    let mut rx: Vec<Option<RxStream>> = (0..nstreams).map(|_| None).collect();
    // For each stream: index of the socket it arrives on.
    let mut rx_sock = vec![usize::MAX; nstreams];
    for (s, sp) in plan.sessions.iter().enumerate() {
        let srtp = args.srtp && args.relay != RelayKind::Direct;
        for rev in [false, true] {
            if rev && args.direction == Direction::Fwd {
                continue;
            }
            let id = 2 * s + usize::from(rev);
            let (from, to, dst) = if rev {
                (sp.teams_sock, sp.carrier_sock, sp.rev_dst)
            } else {
                (sp.carrier_sock, sp.teams_sock, sp.fwd_dst)
            };
            let encrypt = match (srtp && rev, &sp.key_from_teams) {
                (true, Some(k)) => Some(srtp_context(k)?),
                (true, None) => return Err(bad_input("SRTP session without a Teams-side key")),
                _ => None,
            };
            let decrypt = match (srtp && !rev, &sp.key_to_teams) {
                (true, Some(k)) => Some(srtp_context(k)?),
                (true, None) => return Err(bad_input("SRTP session without a relay-side key")),
                _ => None,
            };
            let expected_len = if decrypt.is_some() {
                G711_PACKET + SRTP_TAG
            } else {
                G711_PACKET
            };
            tx.push(TxStream {
                id: id as u32,
                sock: from,
                dst: sys::sockaddr_in(dst),
                seq: (id as u32).wrapping_mul(7919) as u16,
                timestamp: (id as u32).wrapping_mul(104_729),
                sent: 0,
                encrypt,
            });
            rx[id] = Some(RxStream {
                decrypt,
                recv: 0,
                expected_len,
            });
            rx_sock[id] = to;
        }
    }
    Ok(Streams { tx, rx, rx_sock })
}

// ------------------------------------------------------------------ sender

struct TxReport {
    sent: u64,
    send_errors: u64,
    encrypt_errors: u64,
    elapsed_s: f64,
    /// CPU time of this thread during the sending window.
    cpu_ns: u64,
    per_stream: Vec<(u32, u64)>,
}

struct SendQueue {
    bufs: Vec<[u8; PKT_CAP]>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_in>,
    owners: Vec<usize>,
    n: usize,
}

impl SendQueue {
    fn new() -> Self {
        SendQueue {
            bufs: vec![[0u8; PKT_CAP]; BATCH],
            lens: vec![0; BATCH],
            addrs: vec![sys::sockaddr_in(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)); BATCH],
            owners: vec![0; BATCH],
            n: 0,
        }
    }
}

/// Writes the next packet of `st` into a free slot of `q`. Returns false on an SRTP error.
fn build_packet(st: &mut TxStream, q: &mut SendQueue, owner: usize) -> bool {
    st.seq = st.seq.wrapping_add(1);
    st.timestamp = st.timestamp.wrapping_add(160);
    let mut pkt = [0xffu8; G711_PACKET]; // PCMU silence
    pkt[0] = 0x80;
    pkt[1] = 0; // PT 0 = PCMU
    pkt[2..4].copy_from_slice(&st.seq.to_be_bytes());
    pkt[4..8].copy_from_slice(&st.timestamp.to_be_bytes());
    pkt[8..12].copy_from_slice(&stream_ssrc(st.id as usize).to_be_bytes());
    pkt[12..16].copy_from_slice(&MAGIC.to_be_bytes());
    pkt[16..20].copy_from_slice(&st.id.to_be_bytes());
    pkt[20..28].copy_from_slice(&sys::realtime_ns().to_be_bytes());
    let slot = q.n;
    let len = match &mut st.encrypt {
        None => {
            q.bufs[slot][..G711_PACKET].copy_from_slice(&pkt);
            G711_PACKET
        }
        Some(ctx) => match ctx.encrypt_rtp(&pkt) {
            Ok(out) if out.len() <= PKT_CAP => {
                q.bufs[slot][..out.len()].copy_from_slice(&out);
                out.len()
            }
            _ => return false,
        },
    };
    q.lens[slot] = len;
    q.addrs[slot] = st.dst;
    q.owners[slot] = owner;
    q.n += 1;
    true
}

struct Schedule {
    start_ns: u64,
    end_ns: u64,
    /// 0 = flat out.
    step_ns: f64,
    batch: usize,
}

fn sender(sockets: Vec<i32>, mut streams: Vec<TxStream>, sched: Schedule) -> TxReport {
    sys::set_timer_slack_1ns();
    let mut queues: Vec<SendQueue> = sockets.iter().map(|_| SendQueue::new()).collect();
    let mut dirty: Vec<usize> = Vec::with_capacity(sockets.len());
    let (mut send_errors, mut encrypt_errors) = (0u64, 0u64);
    let n = streams.len() as u64;
    let mut k: u64 = 0;
    sys::sleep_until_realtime(sched.start_ns);
    let cpu0 = sys::thread_cpu_ns();
    let flush = |q: &mut SendQueue, fd: i32, streams: &mut [TxStream], errors: &mut u64| {
        let sent = sys::send_batch(fd, q);
        for i in 0..q.n {
            if i < sent {
                streams[q.owners[i]].sent += 1;
            } else {
                *errors += 1;
            }
        }
        q.n = 0;
    };
    loop {
        let now = sys::realtime_ns();
        if now >= sched.end_ns {
            break;
        }
        // Packets due by `horizon` go out in this round; flat out: one full batch per socket.
        let burst_limit = if sched.step_ns > 0.0 {
            4 * BATCH * sockets.len()
        } else {
            BATCH * sockets.len()
        };
        let mut built = 0;
        if sched.step_ns > 0.0 {
            let due = sched.start_ns + (k as f64 * sched.step_ns) as u64;
            if due >= sched.end_ns {
                break;
            }
            if due > now + LEAD_NS {
                sys::sleep_until_realtime(due);
                continue;
            }
        }
        let horizon = now + LEAD_NS;
        while built < burst_limit {
            if sched.step_ns > 0.0 {
                let due = sched.start_ns + (k as f64 * sched.step_ns) as u64;
                if due > horizon || due >= sched.end_ns {
                    break;
                }
            }
            let owner = (k % n) as usize;
            k += 1;
            built += 1;
            let sock = streams[owner].sock;
            let q = &mut queues[sock];
            if q.n == 0 {
                dirty.push(sock);
            }
            if !build_packet(&mut streams[owner], q, owner) {
                encrypt_errors += 1;
                if q.n == 0 {
                    dirty.pop();
                }
                continue;
            }
            if q.n >= sched.batch {
                flush(q, sockets[sock], &mut streams, &mut send_errors);
                dirty.retain(|&d| d != sock);
            }
        }
        for sock in dirty.drain(..) {
            let q = &mut queues[sock];
            if q.n > 0 {
                flush(q, sockets[sock], &mut streams, &mut send_errors);
            }
        }
    }
    let cpu_ns = sys::thread_cpu_ns().saturating_sub(cpu0);
    let end = sys::realtime_ns().min(sched.end_ns).max(sched.start_ns + 1);
    TxReport {
        sent: streams.iter().map(|s| s.sent).sum(),
        send_errors,
        encrypt_errors,
        elapsed_s: (end - sched.start_ns) as f64 / 1e9,
        cpu_ns,
        per_stream: streams.iter().map(|s| (s.id, s.sent)).collect(),
    }
}

// ------------------------------------------------------------------ receiver

struct RxReport {
    hist: Vec<u32>,
    app_hist: Vec<u32>,
    samples: u64,
    recv: u64,
    invalid: u64,
    auth_fail: u64,
    wrong_size: u64,
    rx_bytes: u64,
    /// CPU time of this thread during the sending window.
    cpu_ns: u64,
    per_stream: Vec<(usize, u64)>,
}

fn record(hist: &mut [u32], lat_ns: u64) {
    let us = ((lat_ns / 1000) as usize).min(HIST_US - 1);
    hist[us] = hist[us].saturating_add(1);
}

/// Times of a run, CLOCK_REALTIME ns: sending starts, latency counts from `warm`, sending
/// ends, receivers stop after the drain.
#[derive(Clone, Copy)]
struct Window {
    start_ns: u64,
    warm_ns: u64,
    end_ns: u64,
    stop_ns: u64,
}

fn receiver(
    sockets: Vec<i32>,
    mut streams: Vec<Option<RxStream>>,
    window: Window,
) -> io::Result<RxReport> {
    let Window {
        start_ns,
        warm_ns,
        end_ns,
        stop_ns,
    } = window;
    let ep = sys::Epoll::new()?;
    for (i, &fd) in sockets.iter().enumerate() {
        ep.add(fd, i as u64)?;
    }
    let mut r = RxReport {
        hist: vec![0; HIST_US],
        app_hist: vec![0; HIST_US],
        samples: 0,
        recv: 0,
        invalid: 0,
        auth_fail: 0,
        wrong_size: 0,
        rx_bytes: 0,
        cpu_ns: 0,
        per_stream: Vec::new(),
    };
    let (mut cpu0, mut cpu1) = (None, None);
    let mut batch = sys::RecvBatch::new();
    let mut ready = Vec::with_capacity(sockets.len());
    loop {
        let now = sys::realtime_ns();
        if now >= stop_ns {
            break;
        }
        if cpu0.is_none() && now >= start_ns {
            cpu0 = Some(sys::thread_cpu_ns());
        }
        if cpu1.is_none() && now >= end_ns {
            cpu1 = Some(sys::thread_cpu_ns());
        }
        ep.wait(&mut ready, 5)?;
        for &i in &ready {
            let fd = sockets[i as usize];
            // Bounded: a socket that never runs dry cannot starve the others for long.
            for _ in 0..64 {
                let got = batch.recv(fd)?;
                let app_ns = sys::realtime_ns();
                for j in 0..got {
                    let (pkt, kernel_ns) = batch.packet(j);
                    handle_packet(pkt, kernel_ns, app_ns, warm_ns, &mut streams, &mut r);
                }
                if got < BATCH {
                    break;
                }
            }
        }
    }
    r.cpu_ns = cpu1
        .unwrap_or_else(sys::thread_cpu_ns)
        .saturating_sub(cpu0.unwrap_or(0));
    r.per_stream = streams
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.as_ref().map(|s| (i, s.recv)))
        .collect();
    Ok(r)
}

fn handle_packet(
    pkt: &[u8],
    kernel_ns: Option<u64>,
    app_ns: u64,
    warm_ns: u64,
    streams: &mut [Option<RxStream>],
    r: &mut RxReport,
) {
    if pkt.len() < RTP_HEADER || pkt[0] & 0xc0 != 0x80 {
        r.invalid += 1;
        return;
    }
    let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
    let id = ssrc.wrapping_sub(SSRC_BASE) as usize;
    let Some(Some(st)) = streams.get_mut(id) else {
        r.invalid += 1;
        return;
    };
    if pkt.len() != st.expected_len {
        r.wrong_size += 1;
    }
    let plain_owned;
    let plain: &[u8] = match &mut st.decrypt {
        None => pkt,
        Some(ctx) => match ctx.decrypt_rtp(pkt) {
            Ok(p) => {
                plain_owned = p;
                &plain_owned
            }
            Err(_) => {
                r.auth_fail += 1;
                return;
            }
        },
    };
    if plain.len() < 28
        || u32::from_be_bytes([plain[12], plain[13], plain[14], plain[15]]) != MAGIC
        || u32::from_be_bytes([plain[16], plain[17], plain[18], plain[19]]) as usize != id
    {
        r.invalid += 1;
        return;
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&plain[20..28]);
    let sent_ns = u64::from_be_bytes(ts);
    st.recv += 1;
    r.recv += 1;
    r.rx_bytes += pkt.len() as u64;
    if sent_ns < warm_ns {
        return;
    }
    if let Some(k) = kernel_ns {
        if k >= sent_ns {
            record(&mut r.hist, k - sent_ns);
            r.samples += 1;
        }
    }
    if app_ns >= sent_ns {
        record(&mut r.app_hist, app_ns - sent_ns);
    }
}

// ------------------------------------------------------------------ run + report

struct Report {
    offered_pps: f64,
    sessions: usize,
    streams: usize,
    tx: TxReport,
    hist: Vec<u32>,
    app_hist: Vec<u32>,
    samples: u64,
    recv: u64,
    lost: u64,
    extra: u64,
    invalid: u64,
    auth_fail: u64,
    wrong_size: u64,
    rx_bytes: u64,
    relay_cpu: Option<f64>,
    gen_cpu: f64,
}

fn percentile(hist: &[u32], n: u64, p: f64) -> i64 {
    if n == 0 {
        return -1;
    }
    // Nearest rank: the ceil(p*n)-th smallest sample.
    let want = ((p * n as f64).ceil() as u64).clamp(1, n) - 1;
    let mut c = 0u64;
    for (i, &h) in hist.iter().enumerate() {
        c += u64::from(h);
        if c > want {
            return i as i64;
        }
    }
    HIST_US as i64
}

fn hist_max(hist: &[u32]) -> i64 {
    hist.iter().rposition(|&h| h > 0).map_or(-1, |i| i as i64)
}

impl Report {
    fn loss_pct(&self) -> f64 {
        if self.tx.sent == 0 {
            return 100.0;
        }
        100.0 * self.lost as f64 / self.tx.sent as f64
    }

    fn intact(&self) -> bool {
        self.tx.sent > 0
            && self.lost == 0
            && self.invalid == 0
            && self.auth_fail == 0
            && self.wrong_size == 0
            && self.tx.send_errors == 0
            && self.tx.encrypt_errors == 0
            && self.samples > 0
    }

    fn pcts(&self) -> [i64; 4] {
        [
            percentile(&self.hist, self.samples, 0.50),
            percentile(&self.hist, self.samples, 0.99),
            percentile(&self.hist, self.samples, 0.999),
            hist_max(&self.hist),
        ]
    }

    fn result_line(&self, args: &Args) -> String {
        let [p50, p99, p999, max] = self.pcts();
        let app_n: u64 = self.app_hist.iter().map(|&h| u64::from(h)).sum();
        let relay = match args.relay {
            RelayKind::Direct => "direct",
            RelayKind::Ours => "ours",
            RelayKind::Map => "map",
        };
        let cpu = self
            .relay_cpu
            .map_or("-".to_string(), |c| format!("{c:.0}"));
        format!(
            "RESULT label={} relay={} srtp={} sessions={} streams={} offered_pps={:.0} sent={} recv={} lost={} \
             loss_pct={:.4} fwd_pps={:.0} send_pps={:.0} k_p50={} k_p99={} k_p999={} k_max={} a_p50={} a_p99={} \
             a_p999={} samples={} invalid={} auth_fail={} wrong_size={} extra={} send_errors={} rx_size={:.0} \
             relay_cpu={} gen_cpu={:.0}",
            args.label,
            relay,
            u8::from(args.srtp),
            self.sessions,
            self.streams,
            self.offered_pps,
            self.tx.sent,
            self.recv,
            self.lost,
            self.loss_pct(),
            self.recv as f64 / self.tx.elapsed_s,
            self.tx.sent as f64 / self.tx.elapsed_s,
            p50,
            p99,
            p999,
            max,
            percentile(&self.app_hist, app_n, 0.50),
            percentile(&self.app_hist, app_n, 0.99),
            percentile(&self.app_hist, app_n, 0.999),
            self.samples,
            self.invalid,
            self.auth_fail,
            self.wrong_size,
            self.extra,
            self.tx.send_errors + self.tx.encrypt_errors,
            if self.recv > 0 { self.rx_bytes as f64 / self.recv as f64 } else { 0.0 },
            cpu,
            self.gen_cpu,
        )
    }

    fn summary(&self, args: &Args) -> String {
        let [p50, p99, p999, max] = self.pcts();
        format!(
            "{}: {} sessions, {} streams, sent {} ({:.0} pps), received {} ({:.0} pps), loss {:.3}%, \
             invalid {}, auth failures {}; one-way latency us (kernel rx): p50 {} p99 {} p99.9 {} max {}; \
             CPU % of one core: relay {}, generator {:.0}",
            args.label,
            self.sessions,
            self.streams,
            self.tx.sent,
            self.tx.sent as f64 / self.tx.elapsed_s,
            self.recv,
            self.recv as f64 / self.tx.elapsed_s,
            self.loss_pct(),
            self.invalid,
            self.auth_fail,
            p50,
            p99,
            p999,
            max,
            self.relay_cpu.map_or("-".to_string(), |c| format!("{c:.0}")),
            self.gen_cpu,
        )
    }
}

fn run(args: &Args) -> io::Result<Report> {
    validate(args)?;
    sys::raise_nofile_limit()?;
    let plan = match args.relay {
        RelayKind::Direct => direct_plan(args)?,
        RelayKind::Map => map_plan(args)?,
        RelayKind::Ours => ours::plan(args)?,
    };
    let Streams {
        tx: tx_streams,
        rx: rx_streams,
        rx_sock,
    } = build_streams(args, &plan)?;
    let nstreams = tx_streams.len();
    let offered_pps = args.rate.unwrap_or(args.pps * nstreams as f64);
    let fds: Vec<i32> = plan.sockets.iter().map(|s| s.as_raw_fd()).collect();

    // Receiver threads own disjoint socket subsets and the streams that arrive on them.
    let nrx = args.rx_threads.min(fds.len());
    let mut rx_parts: Vec<(Vec<i32>, Vec<Option<RxStream>>)> = (0..nrx)
        .map(|_| (Vec::new(), (0..rx_streams.len()).map(|_| None).collect()))
        .collect();
    for (i, &fd) in fds.iter().enumerate() {
        rx_parts[i % nrx].0.push(fd);
    }
    for (id, st) in rx_streams.into_iter().enumerate() {
        if let Some(st) = st {
            rx_parts[rx_sock[id] % nrx].1[id] = Some(st);
        }
    }

    let start_ns = sys::realtime_ns() + 100_000_000;
    let end_ns = start_ns + (args.seconds * 1e9) as u64;
    let warm_ns = start_ns + (args.warmup * 1e9) as u64;
    let stop_ns = end_ns + args.drain_ms * 1_000_000;
    let step_ns = if offered_pps > 0.0 {
        1e9 / offered_pps
    } else {
        0.0
    };

    let rx_handles: Vec<_> = rx_parts
        .into_iter()
        .enumerate()
        .map(|(i, (socks, streams))| {
            std::thread::Builder::new()
                .name(format!("gen-rx{i}"))
                .spawn(move || {
                    receiver(
                        socks,
                        streams,
                        Window {
                            start_ns,
                            warm_ns,
                            end_ns,
                            stop_ns,
                        },
                    )
                })
        })
        .collect::<io::Result<_>>()?;
    let tx_fds = fds.clone();
    let tx_batch = args.tx_batch;
    let tx_handle = std::thread::Builder::new()
        .name("gen-tx".into())
        .spawn(move || {
            sender(
                tx_fds,
                tx_streams,
                Schedule {
                    start_ns,
                    end_ns,
                    step_ns,
                    batch: tx_batch,
                },
            )
        })?;

    // CPU is sampled over the sending window only (not setup, not the drain). Our own
    // process and threads use their CPU clocks; an external relay its /proc ticks.
    sys::sleep_until_realtime(start_ns);
    let proc0 = sys::process_cpu_ns();
    let sut0 = cpu::sum_ticks(&args.sut_pid);
    sys::sleep_until_realtime(end_ns);
    let proc1 = sys::process_cpu_ns();
    let sut1 = cpu::sum_ticks(&args.sut_pid);

    let tx = tx_handle
        .join()
        .map_err(|_| io::Error::other("sender thread panicked"))?;
    let mut rxs = Vec::new();
    for h in rx_handles {
        rxs.push(
            h.join()
                .map_err(|_| io::Error::other("receiver thread panicked"))??,
        );
    }
    let gen_ns = tx.cpu_ns + rxs.iter().map(|r| r.cpu_ns).sum::<u64>();
    let ns_pct = |ns: u64| 100.0 * ns as f64 / 1e9 / args.seconds;
    let relay_cpu = match args.relay {
        RelayKind::Direct => None,
        RelayKind::Ours => Some(ns_pct(proc1.saturating_sub(proc0).saturating_sub(gen_ns))),
        RelayKind::Map if args.sut_pid.is_empty() => None,
        RelayKind::Map => Some(cpu::pct(sut1.saturating_sub(sut0), args.seconds)),
    };

    let mut sent_per = vec![0u64; 2 * plan.sessions.len()];
    for &(id, n) in &tx.per_stream {
        sent_per[id as usize] = n;
    }
    let mut recv_per = vec![0u64; sent_per.len()];
    let mut hist = vec![0u32; HIST_US];
    let mut app_hist = vec![0u32; HIST_US];
    let mut rep = Report {
        offered_pps: if offered_pps > 0.0 {
            offered_pps
        } else {
            tx.sent as f64 / tx.elapsed_s
        },
        sessions: plan.sessions.len(),
        streams: nstreams,
        hist: Vec::new(),
        app_hist: Vec::new(),
        samples: 0,
        recv: 0,
        lost: 0,
        extra: 0,
        invalid: 0,
        auth_fail: 0,
        wrong_size: 0,
        rx_bytes: 0,
        relay_cpu,
        gen_cpu: ns_pct(gen_ns),
        tx,
    };
    for r in rxs {
        for (i, (h, a)) in r.hist.iter().zip(&r.app_hist).enumerate() {
            hist[i] = hist[i].saturating_add(*h);
            app_hist[i] = app_hist[i].saturating_add(*a);
        }
        rep.samples += r.samples;
        rep.recv += r.recv;
        rep.invalid += r.invalid;
        rep.auth_fail += r.auth_fail;
        rep.wrong_size += r.wrong_size;
        rep.rx_bytes += r.rx_bytes;
        for (id, n) in r.per_stream {
            recv_per[id] += n;
        }
    }
    for (s, r) in sent_per.iter().zip(&recv_per) {
        rep.lost += s.saturating_sub(*r);
        rep.extra += r.saturating_sub(*s);
    }
    rep.hist = hist;
    rep.app_hist = app_hist;
    drop(plan);
    Ok(rep)
}

// ------------------------------------------------------------------ our relay

mod ours {
    use super::*;
    use std::net::IpAddr;
    use teams_sbc::media::srtp::{KeyMaterial, SrtpSuite};
    use teams_sbc::media::{
        InterfaceSettings, LegSide, MediaEngine, MediaEvents, MediaHandle, MediaSettings, SrtpKeys,
    };

    /// Ports of the engine: outside the kernel's ephemeral range (where the generator's pool
    /// sockets live) and large enough for 5,000 sessions (carrier: RTP+RTCP pairs).
    const CARRIER_PORTS: (u16, u16) = (12_000, 23_999);
    const TEAMS_PORTS: (u16, u16) = (24_000, 31_999);

    /// Our media engine, kept alive (with its event stream) for the duration of the run.
    pub struct Relay {
        handle: MediaHandle,
        _events: MediaEvents,
    }

    impl Drop for Relay {
        fn drop(&mut self) {
            self.handle.shutdown();
        }
    }

    fn random_key() -> SdesKey {
        let mut k = [0u8; SDES_KEY_LEN];
        rand::Rng::fill(&mut rand::thread_rng(), &mut k[..]);
        k
    }

    fn srtp_keys(k: &SdesKey) -> SrtpKeys {
        let mut key = [0u8; 16];
        let mut salt = [0u8; 14];
        key.copy_from_slice(&k[..16]);
        salt.copy_from_slice(&k[16..]);
        SrtpKeys::new(SrtpSuite::AesCm128HmacSha1_80, KeyMaterial::new(key, salt))
    }

    fn v4(a: SocketAddr) -> io::Result<SocketAddrV4> {
        match a {
            SocketAddr::V4(a) => Ok(a),
            SocketAddr::V6(_) => Err(bad_input("engine returned an IPv6 address")),
        }
    }

    fn media_err(e: teams_sbc::media::MediaError) -> io::Error {
        io::Error::other(format!("media engine: {e}"))
    }

    pub fn plan(args: &Args) -> io::Result<Plan> {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let settings = MediaSettings {
            interfaces: vec![
                InterfaceSettings::new("carrier", lo, CARRIER_PORTS.0, CARRIER_PORTS.1),
                InterfaceSettings::new("teams", lo, TEAMS_PORTS.0, TEAMS_PORTS.1),
            ],
            workers: args.workers,
            ..MediaSettings::default()
        };
        let registry = prometheus::Registry::new();
        let (handle, events) = MediaEngine::start(settings, &registry).map_err(media_err)?;
        let relay = Relay {
            handle,
            _events: events,
        };
        let sockets = ephemeral_pool(args.pool)?;
        let mut sessions = Vec::with_capacity(args.sessions);
        for s in 0..args.sessions {
            let carrier_sock = s % args.pool;
            let teams_sock = args.pool + s % args.pool;
            let carrier_end = local_v4(&sockets[carrier_sock])?;
            let teams_end = local_v4(&sockets[teams_sock])?;
            let h = &relay.handle;
            let alloc = h
                .create_session("carrier", "teams", &[])
                .map_err(media_err)?;
            let (key_to_teams, key_from_teams) = if args.srtp {
                let (to, from) = (random_key(), random_key());
                // Teams leg: inbound = what the Teams end sends us, outbound = what we send it.
                // Keys go in before the remote, so no packet can leave in clear towards Teams.
                h.set_srtp(
                    alloc.id,
                    LegSide::Teams,
                    Some(srtp_keys(&from)),
                    Some(srtp_keys(&to)),
                )
                .map_err(media_err)?;
                (Some(to), Some(from))
            } else {
                (None, None)
            };
            h.set_remote(
                alloc.id,
                LegSide::Carrier,
                SocketAddr::V4(carrier_end),
                None,
                false,
            )
            .map_err(media_err)?;
            h.set_remote(
                alloc.id,
                LegSide::Teams,
                SocketAddr::V4(teams_end),
                None,
                true,
            )
            .map_err(media_err)?;
            sessions.push(SessionPlan {
                carrier_sock,
                teams_sock,
                fwd_dst: v4(alloc.carrier.rtp)?,
                rev_dst: v4(alloc.teams.rtp)?,
                key_to_teams,
                key_from_teams,
            });
        }
        Ok(Plan {
            sockets,
            sessions,
            _relay: Some(relay),
        })
    }
}

// ------------------------------------------------------------------ CPU accounting

mod cpu {
    use std::fs;

    fn clock_ticks() -> f64 {
        // SAFETY: sysconf has no memory-safety preconditions.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 {
            t as f64
        } else {
            100.0
        }
    }

    /// utime + stime from a /proc stat line (fields 14 and 15; comm may contain spaces).
    fn stat_ticks(path: &str) -> Option<u64> {
        let s = fs::read_to_string(path).ok()?;
        let rest = &s[s.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    }

    pub fn process_ticks(pid: u32) -> u64 {
        stat_ticks(&format!("/proc/{pid}/stat")).unwrap_or(0)
    }

    pub fn sum_ticks(pids: &[u32]) -> u64 {
        pids.iter().map(|&p| process_ticks(p)).sum()
    }

    /// Ticks over `secs` seconds as % of one core.
    pub fn pct(ticks: u64, secs: f64) -> f64 {
        100.0 * ticks as f64 / clock_ticks() / secs
    }
}

// ------------------------------------------------------------------ thin libc drivers

mod sys {
    use super::{SendQueue, BATCH, PKT_CAP};
    use std::io;
    use std::mem;
    use std::net::SocketAddrV4;

    pub fn realtime_ns() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    pub fn sleep_until_realtime(ns: u64) {
        let ts = libc::timespec {
            tv_sec: (ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (ns % 1_000_000_000) as _,
        };
        // Bounded: an absolute deadline; EINTR just returns early and callers re-check the clock.
        // SAFETY: `ts` is a valid timespec; the remainder pointer may be null with TIMER_ABSTIME.
        unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_REALTIME,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
    }

    pub fn set_timer_slack_1ns() {
        // SAFETY: PR_SET_TIMERSLACK takes an integer argument and touches no memory of ours.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    }

    fn cpu_clock_ns(clock: libc::clockid_t) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    /// CPU time of the calling thread.
    pub fn thread_cpu_ns() -> u64 {
        cpu_clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
    }

    /// CPU time of this whole process (all threads, including exited ones).
    pub fn process_cpu_ns() -> u64 {
        cpu_clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID)
    }

    pub fn raise_nofile_limit() -> io::Result<()> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a valid, writable rlimit.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit read just above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn enable_rx_timestamps(fd: i32) -> io::Result<()> {
        let on: libc::c_int = 1;
        // SAFETY: `on` lives across the call and its size is passed.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                &on as *const libc::c_int as *const libc::c_void,
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn sockaddr_in(a: SocketAddrV4) -> libc::sockaddr_in {
        // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
        let mut s: libc::sockaddr_in = unsafe { mem::zeroed() };
        s.sin_family = libc::AF_INET as libc::sa_family_t;
        s.sin_port = a.port().to_be();
        s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
        s
    }

    /// sendmmsg of the queued packets; returns how many the kernel took (the rest count as
    /// send errors: on loopback that means a full socket buffer).
    pub fn send_batch(fd: i32, q: &mut SendQueue) -> usize {
        let n = q.n.min(BATCH);
        // SAFETY: iovec/mmsghdr are plain old data; all-zero is valid and every used field is set below.
        let mut iov: [libc::iovec; BATCH] = unsafe { mem::zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
        for i in 0..n {
            iov[i].iov_base = q.bufs[i].as_mut_ptr() as *mut libc::c_void;
            iov[i].iov_len = q.lens[i].min(PKT_CAP);
            msgs[i].msg_hdr.msg_name =
                &mut q.addrs[i] as *mut libc::sockaddr_in as *mut libc::c_void;
            msgs[i].msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            msgs[i].msg_hdr.msg_iov = &mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        let mut done = 0usize;
        // A partial send is retried from the first unsent packet; bounded by BATCH attempts.
        for _ in 0..BATCH {
            if done >= n {
                break;
            }
            // SAFETY: msgs[done..n] point at iov/buffers/addresses that stay alive and unmoved for
            // the call; lengths never exceed the buffers (PKT_CAP).
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    msgs.as_mut_ptr().add(done),
                    (n - done) as libc::c_uint,
                    0,
                )
            };
            if r <= 0 {
                let e = io::Error::last_os_error();
                if r < 0 && e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
            done += r as usize;
        }
        done
    }

    const CTRL_LEN: usize = 64;

    pub struct RecvBatch {
        bufs: Vec<[u8; PKT_CAP]>,
        ctrl: Vec<[u64; CTRL_LEN / 8]>,
        lens: [usize; BATCH],
        ts: [Option<u64>; BATCH],
    }

    impl RecvBatch {
        pub fn new() -> Self {
            RecvBatch {
                bufs: vec![[0; PKT_CAP]; BATCH],
                ctrl: vec![[0; CTRL_LEN / 8]; BATCH],
                lens: [0; BATCH],
                ts: [None; BATCH],
            }
        }

        /// recvmmsg without blocking; returns the number of packets now held.
        pub fn recv(&mut self, fd: i32) -> io::Result<usize> {
            // SAFETY: plain old data, every used field is set below.
            let mut iov: [libc::iovec; BATCH] = unsafe { mem::zeroed() };
            // SAFETY: as above.
            let mut msgs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
            for i in 0..BATCH {
                iov[i].iov_base = self.bufs[i].as_mut_ptr() as *mut libc::c_void;
                iov[i].iov_len = PKT_CAP;
                msgs[i].msg_hdr.msg_iov = &mut iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
                msgs[i].msg_hdr.msg_control = self.ctrl[i].as_mut_ptr() as *mut libc::c_void;
                msgs[i].msg_hdr.msg_controllen = CTRL_LEN as _;
            }
            // SAFETY: every mmsghdr points at live buffers of the stated sizes owned by `self`,
            // which outlives the call; MSG_DONTWAIT keeps it non-blocking.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    msgs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                    // An ICMP error queued by an earlier send: nothing to read, not fatal.
                    io::ErrorKind::ConnectionRefused => Ok(0),
                    _ => Err(e),
                };
            }
            let n = r as usize;
            for (i, msg) in msgs.iter().enumerate().take(n) {
                let truncated = msg.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
                self.lens[i] = if truncated {
                    0
                } else {
                    (msg.msg_len as usize).min(PKT_CAP)
                };
                self.ts[i] = None;
                let hdr = &msg.msg_hdr;
                // SAFETY: CMSG_* walk the control buffer the kernel filled, bounded by msg_controllen.
                unsafe {
                    let mut c = libc::CMSG_FIRSTHDR(hdr);
                    while !c.is_null() {
                        if (*c).cmsg_level == libc::SOL_SOCKET
                            && (*c).cmsg_type == libc::SCM_TIMESTAMPNS
                        {
                            let t: libc::timespec = std::ptr::read_unaligned(
                                libc::CMSG_DATA(c) as *const libc::timespec
                            );
                            self.ts[i] = Some(t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64);
                        }
                        c = libc::CMSG_NXTHDR(hdr, c);
                    }
                }
            }
            Ok(n)
        }

        /// Packet `i` of the last batch and its kernel receive time (CLOCK_REALTIME ns).
        pub fn packet(&self, i: usize) -> (&[u8], Option<u64>) {
            (&self.bufs[i][..self.lens[i]], self.ts[i])
        }
    }

    pub struct Epoll(i32);

    impl Epoll {
        pub fn new() -> io::Result<Self> {
            // SAFETY: epoll_create1 has no memory preconditions.
            let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Epoll(fd))
        }

        pub fn add(&self, fd: i32, token: u64) -> io::Result<()> {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: token,
            };
            // SAFETY: `ev` is valid for the call.
            if unsafe { libc::epoll_ctl(self.0, libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        /// Waits up to `timeout_ms`; fills `ready` with the tokens of readable sockets.
        pub fn wait(&self, ready: &mut Vec<u64>, timeout_ms: i32) -> io::Result<()> {
            let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 64];
            // SAFETY: `evs` has room for the 64 events we announce.
            let n = unsafe { libc::epoll_wait(self.0, evs.as_mut_ptr(), 64, timeout_ms) };
            ready.clear();
            if n < 0 {
                let e = io::Error::last_os_error();
                return if e.kind() == io::ErrorKind::Interrupted {
                    Ok(())
                } else {
                    Err(e)
                };
            }
            ready.extend(evs[..n as usize].iter().map(|e| e.u64));
            Ok(())
        }
    }

    impl Drop for Epoll {
        fn drop(&mut self) {
            // SAFETY: we own this descriptor and close it once.
            unsafe { libc::close(self.0) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["bench-media"];
        v.extend_from_slice(extra);
        Args::parse_from(v)
    }

    fn tx_stream(id: u32, key: Option<&SdesKey>) -> TxStream {
        TxStream {
            id,
            sock: 0,
            dst: sys::sockaddr_in(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9)),
            seq: 100,
            timestamp: 0,
            sent: 0,
            encrypt: key.map(|k| srtp_context(k).unwrap()),
        }
    }

    fn empty_report() -> RxReport {
        RxReport {
            hist: vec![0; HIST_US],
            app_hist: vec![0; HIST_US],
            samples: 0,
            recv: 0,
            invalid: 0,
            auth_fail: 0,
            wrong_size: 0,
            rx_bytes: 0,
            cpu_ns: 0,
            per_stream: Vec::new(),
        }
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut h = vec![0u32; HIST_US];
        h[10] = 98;
        h[200] = 1;
        h[5000] = 1;
        assert_eq!(percentile(&h, 100, 0.50), 10);
        assert_eq!(percentile(&h, 100, 0.99), 200);
        assert_eq!(percentile(&h, 100, 0.999), 5000);
        assert_eq!(hist_max(&h), 5000);
        assert_eq!(percentile(&h, 0, 0.5), -1);
    }

    #[test]
    fn sdes_keys_parse_and_reject_garbage() {
        let key = [7u8; SDES_KEY_LEN];
        let text = base64::engine::general_purpose::STANDARD.encode(key);
        assert_eq!(parse_key(&text).unwrap(), Some(key));
        assert_eq!(parse_key("-").unwrap(), None);
        assert!(parse_key("not base64!").is_err());
        assert!(parse_key("AAAA").is_err());
    }

    #[test]
    fn srtp_packet_is_decrypted_timed_and_tampering_is_caught() {
        let key = [3u8; SDES_KEY_LEN];
        // What a relay encrypting towards Teams would send: our packet under its key.
        let mut relay_side = tx_stream(6, Some(&key));
        let mut q = SendQueue::new();
        assert!(build_packet(&mut relay_side, &mut q, 0));
        assert!(build_packet(&mut relay_side, &mut q, 0));
        assert_eq!(q.lens[0], G711_PACKET + SRTP_TAG);
        let mut streams: Vec<Option<RxStream>> = (0..8).map(|_| None).collect();
        streams[6] = Some(RxStream {
            decrypt: Some(srtp_context(&key).unwrap()),
            recv: 0,
            expected_len: G711_PACKET + SRTP_TAG,
        });
        let mut r = empty_report();
        let now = sys::realtime_ns() + 1_000_000;
        handle_packet(
            &q.bufs[0][..q.lens[0]],
            Some(now),
            now,
            0,
            &mut streams,
            &mut r,
        );
        assert_eq!((r.recv, r.auth_fail, r.invalid, r.samples), (1, 0, 0, 1));
        let mut tampered = q.bufs[1][..q.lens[1]].to_vec();
        tampered[40] ^= 1;
        handle_packet(&tampered, Some(now), now, 0, &mut streams, &mut r);
        assert_eq!((r.recv, r.auth_fail), (1, 1));
    }

    #[test]
    fn packets_of_unknown_streams_or_not_rtp_are_invalid() {
        let mut streams: Vec<Option<RxStream>> = (0..2).map(|_| None).collect();
        streams[0] = Some(RxStream {
            expected_len: G711_PACKET,
            ..Default::default()
        });
        let mut r = empty_report();
        let mut stranger = tx_stream(1, None);
        let mut q = SendQueue::new();
        assert!(build_packet(&mut stranger, &mut q, 0));
        handle_packet(&q.bufs[0][..q.lens[0]], None, 0, 0, &mut streams, &mut r);
        handle_packet(&[0u8; 20], None, 0, 0, &mut streams, &mut r);
        handle_packet(&[0x80u8; 5], None, 0, 0, &mut streams, &mut r);
        assert_eq!((r.recv, r.invalid), (0, 3));
    }

    #[test]
    fn direct_run_delivers_every_packet_both_ways() {
        let a = args(&[
            "--relay",
            "direct",
            "--sessions",
            "4",
            "--seconds",
            "0.4",
            "--warmup",
            "0.1",
            "--drain-ms",
            "300",
            "--pool",
            "2",
        ]);
        let rep = run(&a).unwrap();
        assert_eq!(rep.streams, 8);
        assert!(rep.tx.sent > 0);
        assert!(rep.intact(), "{}", rep.result_line(&a));
        assert!(rep
            .result_line(&a)
            .starts_with("RESULT label=run relay=direct"));
    }

    /// Our engine end to end: RTP<->SRTP, every packet checked by an independent SRTP
    /// implementation (webrtc-srtp) on the Teams side. Plain RTP on our Teams leg is refused.
    #[test]
    fn our_relay_forwards_every_packet_and_its_srtp_authenticates() {
        assert!(validate(&args(&["--relay", "ours"])).is_err());
        {
            let mut v = vec![
                "--relay",
                "ours",
                "--sessions",
                "4",
                "--seconds",
                "0.4",
                "--warmup",
                "0.1",
                "--drain-ms",
                "300",
                "--pool",
                "2",
            ];
            v.push("--srtp");
            let a = args(&v);
            let rep = run(&a).unwrap();
            assert!(rep.intact(), "{}", rep.result_line(&a));
            assert!(rep.relay_cpu.is_some());
        }
    }

    #[test]
    fn bad_arguments_are_rejected() {
        assert!(validate(&args(&["--sessions", "0"])).is_err());
        assert!(validate(&args(&["--seconds", "0"])).is_err());
        assert!(validate(&args(&["--warmup", "20", "--seconds", "10"])).is_err());
        assert!(validate(&args(&["--tx-batch", "0"])).is_err());
        assert!(run(&args(&["--relay", "map"])).is_err());
    }
}
