//! Media hot-path benchmarks (criterion). Run with `cargo bench --bench media`.
//!
//! * `srtp`: protect / unprotect of one 172-byte G.711 RTP packet (12-byte header + 160
//!   bytes payload), our in-place `SrtpContext` against webrtc-srtp's `Context`, same group.
//! * `forward`: the media core's socket-free `forward_step` (which uses our `SrtpContext`
//!   through `media::cipher::SrtpStream`) carrier RTP -> Teams SRTP and back, plus the bare
//!   composition (header parse + PT rewrite + our SRTP) for reference, and carrier RTP ->
//!   Teams SRTP with in-band DTMF detection on (row 48).
//! * `sdp`: rewriting a Teams bypass offer into the offer sent to the carrier.
//! * `stun`: answering one connectivity check (ICE-lite).
//!
//! On a shared machine set `MEDIA_BENCH_CPU_TIME=1` to measure thread CPU time instead of
//! wall time (see `ThreadCpuTime`).
//!
//! Every iteration uses a new sequence number: both SRTP implementations track the
//! rollover counter, and ours refuses to protect or accept an index twice.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BatchSize, Criterion, Throughput};
use teams_sbc::media::cipher::{SrtpKeys, SrtpStream};
use teams_sbc::media::dtmf_convert::{DtmfConverter, InbandDtmfPlan};
use teams_sbc::media::forward::{forward_step, Action, Ingress, PacketTime};
use teams_sbc::media::leg::{LegPair, LegSide, LegState, SocketRole};
use teams_sbc::media::settings::LatchingMode;
use teams_sbc::media::srtp::{KeyMaterial, SrtpContext, SrtpSuite};
use teams_sbc::sdp::{offer_towards_carrier, CarrierSide, CodecList, LegOrigin, Sdp};
use webrtc_srtp::context::Context as WebrtcContext;
use webrtc_srtp::protection_profile::ProtectionProfile;

const PAYLOAD_LEN: usize = 160;
const PACKET_LEN: usize = 12 + PAYLOAD_LEN;
/// Room for the packet and any SRTP/SRTCP trailer.
const BUF_LEN: usize = 256;
const SSRC: u32 = 0x1234_5678;

fn rtp_packet(seq: u16) -> [u8; BUF_LEN] {
    let mut buf = [0u8; BUF_LEN];
    buf[0] = 0x80;
    buf[1] = 0x08; // PCMA
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    buf[8..12].copy_from_slice(&SSRC.to_be_bytes());
    for (i, byte) in buf[12..PACKET_LEN].iter_mut().enumerate() {
        *byte = 0xD5 ^ (i as u8);
    }
    buf
}

fn webrtc(key: &KeyMaterial) -> WebrtcContext {
    WebrtcContext::new(
        key.master_key(),
        key.master_salt(),
        ProtectionProfile::Aes128CmHmacSha1_80,
        None,
        None,
    )
    .expect("valid key lengths")
}

/// Hands out protected packets with consecutive sequence numbers (setup, not timed).
struct ProtectedSource {
    sender: SrtpContext,
    seq: u16,
}

impl ProtectedSource {
    fn new(key: &KeyMaterial) -> Self {
        Self {
            sender: SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, key),
            seq: 0,
        }
    }

    fn next(&mut self) -> ([u8; BUF_LEN], usize) {
        self.seq = self.seq.wrapping_add(1);
        let mut buf = rtp_packet(self.seq);
        let len = self
            .sender
            .protect_rtp(&mut buf, PACKET_LEN)
            .expect("protect");
        (buf, len)
    }
}

fn srtp<M: Measurement>(c: &mut Criterion<M>) {
    let key = KeyMaterial::generate();
    let mut group = c.benchmark_group("srtp");
    group.throughput(Throughput::Elements(1));

    group.bench_function("protect/ours", |b| {
        let mut ctx = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key);
        let template = rtp_packet(0);
        let mut buf = [0u8; BUF_LEN];
        let mut seq: u16 = 0;
        b.iter(|| {
            seq = seq.wrapping_add(1);
            buf[..PACKET_LEN].copy_from_slice(&template[..PACKET_LEN]);
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            black_box(ctx.protect_rtp(black_box(&mut buf), PACKET_LEN))
        });
    });

    group.bench_function("protect/webrtc-srtp", |b| {
        let mut ctx = webrtc(&key);
        let mut buf = rtp_packet(0);
        let mut seq: u16 = 0;
        b.iter(|| {
            seq = seq.wrapping_add(1);
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            black_box(ctx.encrypt_rtp(black_box(&buf[..PACKET_LEN])))
        });
    });

    group.bench_function("unprotect/ours", |b| {
        let mut source = ProtectedSource::new(&key);
        let mut ctx = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key);
        b.iter_batched_ref(
            || source.next(),
            |(buf, len)| black_box(ctx.unprotect_rtp(&mut buf[..*len])),
            BatchSize::SmallInput,
        );
    });

    group.bench_function("unprotect/webrtc-srtp", |b| {
        let mut source = ProtectedSource::new(&key);
        let mut ctx = webrtc(&key);
        b.iter_batched_ref(
            || source.next(),
            |(buf, len)| black_box(ctx.decrypt_rtp(&buf[..*len])),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn addr(last: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, last], port))
}

fn stream_keys(key: &KeyMaterial) -> SrtpKeys {
    SrtpKeys::new(SrtpSuite::AesCm128HmacSha1_80, key.clone())
}

/// A carrier leg (plain RTP, latching off) and a Teams leg (SRTP both ways, no ICE).
fn leg_pair(teams_send: &KeyMaterial, teams_receive: &KeyMaterial) -> LegPair {
    let mut carrier = LegState::new(LegSide::Carrier, LatchingMode::Off, true, Arc::default(), 0);
    carrier.set_remote(addr(10, 16_384), None, false);
    let mut teams = LegState::new(LegSide::Teams, LatchingMode::Off, false, Arc::default(), 0);
    teams.set_remote(addr(20, 50_000), None, true);
    teams.srtp_out = Some(SrtpStream::new(&stream_keys(teams_send)));
    teams.srtp_in = Some(SrtpStream::new(&stream_keys(teams_receive)));
    LegPair { carrier, teams }
}

/// Carrier RTP -> Teams SRTP through `forward_step`, a new sequence number each iteration.
fn bench_carrier_to_teams<M: Measurement>(b: &mut criterion::Bencher<'_, M>, pair: &mut LegPair) {
    let ingress = Ingress {
        leg: LegSide::Carrier,
        socket: SocketRole::Rtp,
        from: addr(10, 16_384),
    };
    let template = rtp_packet(0);
    let mut buf = [0u8; 2048];
    let mut seq: u16 = 0;
    let mut micros = 0u64;
    b.iter(|| {
        seq = seq.wrapping_add(1);
        micros += 20_000;
        buf[..PACKET_LEN].copy_from_slice(&template[..PACKET_LEN]);
        buf[2..4].copy_from_slice(&seq.to_be_bytes());
        let action = forward_step(
            pair,
            ingress,
            &mut buf,
            PACKET_LEN,
            PacketTime::from_micros(micros),
        );
        debug_assert!(matches!(action, Action::Forward { .. }), "{action:?}");
        black_box(action)
    });
}

fn forward<M: Measurement>(c: &mut Criterion<M>) {
    let teams_send = KeyMaterial::generate();
    let teams_receive = KeyMaterial::generate();
    let mut group = c.benchmark_group("forward");
    group.throughput(Throughput::Elements(1));

    group.bench_function("forward_step/rtp_to_srtp", |b| {
        let mut pair = leg_pair(&teams_send, &teams_receive);
        bench_carrier_to_teams(b, &mut pair);
    });

    // The same with in-band DTMF detection on the carrier leg (a trunk without
    // telephone-event, row 48): the Goertzel filters run over every G.711 payload.
    group.bench_function("forward_step/rtp_to_srtp+inband_dtmf", |b| {
        let mut pair = leg_pair(&teams_send, &teams_receive);
        pair.carrier.inband_dtmf = Some(DtmfConverter::new(InbandDtmfPlan {
            event_pt: 101,
            pcmu_pt: Some(0),
            pcma_pt: Some(8),
            teams_event_pt: Some(101),
        }));
        bench_carrier_to_teams(b, &mut pair);
    });

    group.bench_function("forward_step/srtp_to_rtp", |b| {
        let mut pair = leg_pair(&teams_send, &teams_receive);
        let mut source = ProtectedSource::new(&teams_receive);
        let ingress = Ingress {
            leg: LegSide::Teams,
            socket: SocketRole::Rtp,
            from: addr(20, 50_000),
        };
        let mut micros = 0u64;
        b.iter_batched_ref(
            || {
                let (packet, len) = source.next();
                let mut buf = [0u8; 2048];
                buf[..BUF_LEN].copy_from_slice(&packet);
                (buf, len)
            },
            |(buf, len)| {
                micros += 20_000;
                let action = forward_step(
                    &mut pair,
                    ingress,
                    buf,
                    *len,
                    PacketTime::from_micros(micros),
                );
                debug_assert!(matches!(action, Action::Forward { .. }), "{action:?}");
                black_box(action)
            },
            BatchSize::SmallInput,
        );
    });

    // Reference: the minimum a forward step must do with our SRTP, without latching,
    // statistics or counters.
    group.bench_function("composition_ours/rtp_to_srtp", |b| {
        let mut ctx = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &teams_send);
        let template = rtp_packet(0);
        let mut buf = [0u8; BUF_LEN];
        let mut seq: u16 = 0;
        b.iter(|| {
            seq = seq.wrapping_add(1);
            buf[..PACKET_LEN].copy_from_slice(&template[..PACKET_LEN]);
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            rewrite_payload_type(black_box(&mut buf[..PACKET_LEN]));
            black_box(ctx.protect_rtp(&mut buf, PACKET_LEN))
        });
    });

    group.bench_function("composition_ours/srtp_to_rtp", |b| {
        let mut source = ProtectedSource::new(&teams_receive);
        let mut ctx = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &teams_receive);
        b.iter_batched_ref(
            || source.next(),
            |(buf, len)| {
                let plain = ctx.unprotect_rtp(&mut buf[..*len]);
                if let Ok(plain_len) = plain {
                    rewrite_payload_type(&mut buf[..plain_len]);
                }
                black_box(plain)
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

/// Header parse and payload-type rewrite as a PT map would do it (8 -> 8 here, but the
/// table lookup and write are done).
fn rewrite_payload_type(packet: &mut [u8]) {
    static MAP: [u8; 128] = {
        let mut map = [0u8; 128];
        let mut pt = 0;
        while pt < 128 {
            map[pt] = pt as u8;
            pt += 1;
        }
        map
    };
    if packet.len() >= 12 && packet[0] >> 6 == 2 {
        let pt = packet[1] & 0x7F;
        packet[1] = (packet[1] & 0x80) | MAP[usize::from(pt)];
    }
}

const TEAMS_BYPASS_OFFER: &[u8] = include_bytes!("../src/sdp/testdata/teams_bypass_offer.sdp");

fn sdp<M: Measurement>(c: &mut Criterion<M>) {
    let codecs = CodecList::carrier_default();
    let side = CarrierSide {
        local: SocketAddr::from(([203, 0, 113, 10], 16_384)),
        codecs: &codecs,
        offer_rtcp_mux: false,
        strip_vendor_attributes: true,
    };
    let mut group = c.benchmark_group("sdp");
    group.throughput(Throughput::Bytes(TEAMS_BYPASS_OFFER.len() as u64));
    group.bench_function(
        "teams_offer_to_carrier/parse+offer_towards_carrier+write",
        |b| {
            let mut origin = LegOrigin::new(4001, side.local.ip());
            let mut out = Vec::with_capacity(4096);
            b.iter(|| {
                let offer = Sdp::parse(black_box(TEAMS_BYPASS_OFFER)).expect("parse");
                let rewritten = offer_towards_carrier(&offer, &side, &mut origin).expect("rewrite");
                out.clear();
                rewritten.write_to(&mut out);
                black_box(out.len())
            });
        },
    );
    group.finish();
}

/// One authenticated connectivity check answered by the ICE-lite responder (allocates in the
/// stun crate; off the RTP fast path, shown for scale).
fn stun<M: Measurement>(c: &mut Criterion<M>) {
    use stun::attributes::{ATTR_PRIORITY, ATTR_USERNAME, ATTR_USE_CANDIDATE};
    use stun::fingerprint::FINGERPRINT;
    use stun::integrity::MessageIntegrity;
    use stun::message::{Message, Setter, BINDING_REQUEST};
    use teams_sbc::media::ice::{handle_packet, IceCredentials, IceOutcome, MAX_RESPONSE_LEN};

    let creds = IceCredentials {
        local_ufrag: "sbcU".into(),
        local_pwd: "sbcPasswordOf22Chars00".into(),
        remote_ufrag: Some("teamsU".into()),
    };
    let mut request = Message::new();
    request.typ = BINDING_REQUEST;
    request.new_transaction_id().expect("transaction id");
    request.write_header();
    request.add(ATTR_USERNAME, b"sbcU:teamsU");
    request.add(ATTR_PRIORITY, &0x6E00_1EFFu32.to_be_bytes());
    request.add(ATTR_USE_CANDIDATE, &[]);
    MessageIntegrity::new_short_term_integrity(creds.local_pwd.clone())
        .add_to(&mut request)
        .expect("integrity");
    FINGERPRINT.add_to(&mut request).expect("fingerprint");
    let from = SocketAddr::from(([198, 51, 100, 7], 50_010));

    let mut group = c.benchmark_group("stun");
    group.throughput(Throughput::Elements(1));
    group.bench_function("binding_check/handle_packet", |b| {
        let mut out = [0u8; MAX_RESPONSE_LEN];
        b.iter(|| {
            let outcome = handle_packet(black_box(&request.raw), from, &creds, &mut out);
            debug_assert!(matches!(outcome, IceOutcome::Respond { .. }));
            black_box(outcome)
        });
    });
    group.finish();
}

/// Thread CPU time (`CLOCK_THREAD_CPUTIME_ID`) instead of wall time: on a shared, loaded
/// machine wall time also counts the slices other processes run in. Select it with
/// `MEDIA_BENCH_CPU_TIME=1 cargo bench --bench media`.
struct ThreadCpuTime;

fn thread_cpu_nanos() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the duration of the call, and
    // CLOCK_THREAD_CPUTIME_ID is supported on every Linux this project targets; on the
    // (impossible) error the zeroed value is used and only this measurement is wrong.
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now);
    }
    (now.tv_sec as u64) * 1_000_000_000 + now.tv_nsec as u64
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_nanos()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_nanos().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuNanosFormatter
    }
}

struct CpuNanosFormatter;

impl ValueFormatter for CpuNanosFormatter {
    fn scale_values(&self, typical_ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if typical_ns < 1e3 {
            (1.0, "ns (cpu)")
        } else if typical_ns < 1e6 {
            (1e-3, "µs (cpu)")
        } else {
            (1e-6, "ms (cpu)")
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(
        &self,
        _typical_ns: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let (per_iteration, unit) = match *throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => (n as f64 / 1_048_576.0, "MiB/s"),
            Throughput::Elements(n) => (n as f64 / 1e6, "Melem/s"),
        };
        values
            .iter_mut()
            .for_each(|v| *v = per_iteration * 1e9 / *v);
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn run_all<M: Measurement>(c: &mut Criterion<M>) {
    srtp(c);
    forward(c);
    sdp(c);
    stun(c);
}

fn main() {
    if let Ok(op) = std::env::var("MEDIA_BENCH_COUNT") {
        count_mode(&op);
    } else if std::env::var_os("MEDIA_BENCH_CPU_TIME").is_some() {
        let mut c = Criterion::default()
            .with_measurement(ThreadCpuTime)
            .configure_from_args();
        run_all(&mut c);
        c.final_summary();
    } else {
        let mut c = Criterion::default().configure_from_args();
        run_all(&mut c);
        c.final_summary();
    }
}

/// Instruction-count mode for `valgrind --tool=callgrind`: with
/// `MEDIA_BENCH_COUNT=<op>` (`protect`, `unprotect`, `forward_rtp_to_srtp`,
/// `forward_srtp_to_rtp`) the op runs `MEDIA_BENCH_COUNT_N` times (default 10000) inside
/// `counted_op` and nothing else is measured, so
/// `--toggle-collect='*counted_op*'` gives instructions per op = Ir / N.
fn count_mode(op: &str) {
    let iterations: u32 = std::env::var("MEDIA_BENCH_COUNT_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let teams_send = KeyMaterial::generate();
    let teams_receive = KeyMaterial::generate();
    let mut pair = leg_pair(&teams_send, &teams_receive);
    let mut ctx = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &teams_send);
    let mut receiver = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &teams_receive);
    let mut source = ProtectedSource::new(&teams_receive);
    for seq in 1..=iterations {
        let seq = seq as u16;
        let micros = u64::from(seq) * 20_000;
        let (mut buf, len) = match op {
            "unprotect" | "forward_srtp_to_rtp" => source.next(),
            _ => (rtp_packet(seq), PACKET_LEN),
        };
        let ok = match op {
            "protect" => counted_op(|| ctx.protect_rtp(&mut buf, len).is_ok()),
            "unprotect" => counted_op(|| receiver.unprotect_rtp(&mut buf[..len]).is_ok()),
            "forward_rtp_to_srtp" | "forward_srtp_to_rtp" => {
                let from_teams = op == "forward_srtp_to_rtp";
                let ingress = Ingress {
                    leg: if from_teams {
                        LegSide::Teams
                    } else {
                        LegSide::Carrier
                    },
                    socket: SocketRole::Rtp,
                    from: if from_teams {
                        addr(20, 50_000)
                    } else {
                        addr(10, 16_384)
                    },
                };
                counted_op(|| {
                    let action = forward_step(
                        &mut pair,
                        ingress,
                        &mut buf,
                        len,
                        PacketTime::from_micros(micros),
                    );
                    matches!(action, Action::Forward { .. })
                })
            }
            _ => panic!("unknown MEDIA_BENCH_COUNT op {op:?}"),
        };
        assert!(ok, "{op} failed at iteration {seq}");
    }
}

#[inline(never)]
fn counted_op(op: impl FnOnce() -> bool) -> bool {
    black_box(op())
}
