//! Shared harness of the end-to-end call tests (`calls_*.rs`): a test configuration with its
//! own dev certificates, the SBC started in-process with `teams_sbc::app::start` on free
//! loopback ports, SIPp scenarios from `tests/sipp/calls` with placeholders filled in,
//! SIPp message logs, a Teams media end of the test's own (webrtc-srtp) facing a carrier
//! SIPp that echoes RTP, bounded waits, and metric reads from the SBC's registry.
//!
//! Loopback plan: the SBC signals on 127.0.0.1; the carrier peer is 127.0.0.2 (the trunk's
//! source); Microsoft is 127.0.0.3 and 127.0.0.4 (the configured Microsoft source range).
//!
//! Microsoft is played by SIPp behind a [`microsoft::MicrosoftStandIn`] per configured proxy:
//! every call test reaches "Microsoft" over mutual TLS, with Microsoft's own connections for
//! Microsoft's requests. A lab that opts out (`LabSpec::tls_stand_in = false`) talks to SIPp
//! over plain TCP with `teams.lab_plain_tcp`.

#![allow(dead_code)]

pub mod dns;
pub mod microsoft;
pub mod tls;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use teams_sbc::app::Running;
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

pub const BASE: &str = "sbc.example.test";
pub const SBC_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
pub const CARRIER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
pub const TEAMS_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// Microsoft's second source address (its own connections alternate between the two).
pub const TEAMS_IP2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);

/// Fail (never skip) when a peer is missing, saying how to install it.
pub fn require(binary: &str, package: &str) {
    let found = Command::new(binary)
        .arg(if binary == "sipp" { "-v" } else { "-h" })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "`{binary}` not found: install it with `apt-get install -y {package}`"
    );
}

pub fn free_udp_port(ip: Ipv4Addr) -> u16 {
    UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_tcp_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port free for both UDP and TCP on `ip` (SIPp binds both for its media).
pub fn free_port_pair(ip: Ipv4Addr) -> u16 {
    for _ in 0..100 {
        let port = free_udp_port(ip);
        if TcpListener::bind((ip, port)).is_ok() && UdpSocket::bind((ip, port + 2)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair on {ip}");
}

/// One `[[tenant]]`.
pub struct TenantSpec {
    pub name: &'static str,
    pub numbers: &'static str,
    pub extra: String,
}

impl TenantSpec {
    pub fn fqdn(&self) -> String {
        format!("{}.{BASE}", self.name)
    }
}

/// What differs between the tests' configurations.
pub struct LabSpec {
    /// `teams.proxies` entries (TOML inline tables or strings).
    pub proxies: Vec<String>,
    /// Where the carrier trunk's SIP peer listens (SIPp UAS on Teams -> PSTN calls).
    pub carrier_port: u16,
    pub tenants: Vec<TenantSpec>,
    /// First port of this test's media range (200 ports: carrier 0..100, Teams 100..200);
    /// unique per test, above 40000.
    pub media_base: u16,
    pub teams_extra: String,
    /// Extra lines of the `[[carrier_trunk]]` table (e.g. `early_media = "relay"`); further
    /// `[[carrier_trunk]]` / `[[tenant]]` tables may follow.
    pub carrier_extra: String,
    /// Extra lines of the `[sbc]`, `[sip]` and `[ops]` tables.
    pub sbc_extra: String,
    pub sip_extra: String,
    pub ops_extra: String,
    /// Lines of the `[media]` table (e.g. `workers = 2`); when empty no `[media]` header is
    /// written, so a test may still open that table in `teams_extra`.
    pub media_extra: String,
    /// Extra lines of the `[media.teams]` table (e.g. `internal_address = ...`).
    pub teams_media_extra: String,
    /// Put a mutual-TLS Microsoft stand-in in front of each SIPp proxy of `proxies` made by
    /// [`LabSpec::tcp_proxy`] (default); false: the SBC reaches SIPp over plain TCP.
    pub tls_stand_in: bool,
}

impl LabSpec {
    pub fn new(media_base: u16) -> LabSpec {
        LabSpec {
            proxies: Vec::new(),
            carrier_port: free_udp_port(CARRIER_IP),
            tenants: vec![
                TenantSpec {
                    name: "acme",
                    numbers: r#"["+4930123400-+4930123499"]"#,
                    extra: String::new(),
                },
                TenantSpec {
                    name: "globex",
                    numbers: r#"["+4940555*"]"#,
                    extra: String::new(),
                },
            ],
            media_base,
            teams_extra: String::new(),
            carrier_extra: String::new(),
            sbc_extra: String::new(),
            sip_extra: String::new(),
            ops_extra: String::new(),
            media_extra: String::new(),
            teams_media_extra: String::new(),
            tls_stand_in: true,
        }
    }

    /// A Microsoft proxy stand-in reached over TCP (SIPp has no TLS).
    pub fn tcp_proxy(host: &str, port: u16) -> String {
        format!(r#"{{ address = "{host}:{port}", transport = "tcp" }}"#)
    }
}

/// The SBC running in-process, with its own runtime, config and certificates.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub udp: u16,
    pub tcp: u16,
    pub tls: u16,
    pub carrier_port: u16,
    running: Option<Running>,
    /// Kept beside `running`: metrics and the ops listener outlive [`Lab::supervise`].
    registry: prometheus::Registry,
    ops_addr: SocketAddr,
    /// The SBC driven as `teams-sbc run` drives it (see [`Lab::supervise`]).
    supervised: Option<tokio::task::JoinHandle<Result<(), teams_sbc::app::AppError>>>,
    runtime: tokio::runtime::Runtime,
    /// The TLS stand-ins, by the address of the SIPp each fronts.
    stand_ins: Vec<(SocketAddr, microsoft::MicrosoftStandIn)>,
}

/// The SIPp address of a proxy entry made by [`LabSpec::tcp_proxy`].
fn sipp_proxy_address(entry: &str) -> Option<SocketAddr> {
    if !entry.contains(r#"transport = "tcp""#) {
        return None;
    }
    entry
        .split('"')
        .nth(1)
        .and_then(|address| address.parse().ok())
}

impl Lab {
    pub fn start(spec: LabSpec) -> Lab {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn,teams_sbc=info".into()),
            )
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        teams_sbc::devcerts::generate(&certs, BASE).unwrap();
        let mut stand_ins = Vec::new();
        let mut proxies = Vec::new();
        for entry in &spec.proxies {
            match sipp_proxy_address(entry).filter(|_| spec.tls_stand_in) {
                Some(sipp) => {
                    let stand_in = microsoft::MicrosoftStandIn::start(
                        &certs,
                        TEAMS_IP,
                        [TEAMS_IP, TEAMS_IP2],
                        BASE,
                    );
                    stand_in.route_default_to(sipp);
                    proxies.push(format!(
                        r#"{{ address = "{}", tls_name = "sip.pstnhub.microsoft.com" }}"#,
                        stand_in.proxy_addr
                    ));
                    stand_ins.push((sipp, stand_in));
                }
                None => proxies.push(entry.clone()),
            }
        }
        let udp = free_udp_port(SBC_IP);
        let tcp = free_tcp_port(SBC_IP);
        let tls = free_tcp_port(SBC_IP);
        let metrics = free_tcp_port(SBC_IP);
        let tenants: String = spec
            .tenants
            .iter()
            .map(|t| {
                format!(
                    "[[tenant]]\nname = \"{}\"\nfqdn = \"{}\"\nnumbers = {}\ncarrier_trunk = \"pstn\"\n{}\n",
                    t.name,
                    t.fqdn(),
                    t.numbers,
                    t.extra
                )
            })
            .collect();
        let config = format!(
            r#"
[sbc]
base_fqdn = "{BASE}"
sip_signaling_port = {tls}
vendor = "TestVendor"
model = "TestModel"
{sbc_extra}

[sip]
t1_ms = 100
connect_timeout_seconds = 2
{sip_extra}

[tls]
cert_chain = "certs/sbc.pem"
private_key = "certs/sbc.key"
roots = "certs/ca.pem"

[[listen]]
transport = "udp"
address = "{SBC_IP}:{udp}"

[[listen]]
transport = "tcp"
address = "{SBC_IP}:{tcp}"

[[listen]]
transport = "tls"
address = "{SBC_IP}:{tls}"

[teams]
proxies = [{proxies}]
# One ping at start (before the stand-ins listen), the next long after the test.
options_interval_seconds = 180
allowed_source_cidrs = ["{TEAMS_IP}/32", "{TEAMS_IP2}/32"]
lab_plain_tcp = {lab_plain_tcp}
{teams_extra}

[[carrier_trunk]]
name = "pstn"
address = "{CARRIER_IP}:{carrier_port}"
transport = "udp"
allowed_source_cidrs = ["{CARRIER_IP}/32"]
codecs = ["PCMU", "PCMA", "telephone-event"]
options_ping = false
{carrier_extra}

{tenants}

{media_table}
[media.carrier]
bind = "{SBC_IP}"
port_min = {cmin}
port_max = {cmax}

[media.teams]
bind = "{SBC_IP}"
port_min = {tmin}
port_max = {tmax}
{teams_media_extra}

[ops]
metrics_listen = "{SBC_IP}:{metrics}"
{ops_extra}
"#,
            proxies = proxies.join(", "),
            // SIPp stand-ins for Microsoft speak plain TCP: only labs may take that.
            lab_plain_tcp = proxies.iter().any(|p| p.contains(r#"transport = "tcp""#)),
            teams_extra = spec.teams_extra,
            sbc_extra = spec.sbc_extra,
            sip_extra = spec.sip_extra,
            ops_extra = spec.ops_extra,
            teams_media_extra = spec.teams_media_extra,
            carrier_extra = spec.carrier_extra,
            media_table = if spec.media_extra.is_empty() {
                String::new()
            } else {
                format!("[media]\n{}\n", spec.media_extra)
            },
            carrier_port = spec.carrier_port,
            cmin = spec.media_base,
            cmax = spec.media_base + 99,
            tmin = spec.media_base + 100,
            tmax = spec.media_base + 199,
        );
        let path = dir.path().join("sbc.toml");
        std::fs::write(&path, config).unwrap();
        let loaded = teams_sbc::config::load(&path)
            .unwrap_or_else(|e| panic!("test config does not load: {e}"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let running = runtime
            .block_on(teams_sbc::app::start(&loaded))
            .unwrap_or_else(|e| panic!("SBC does not start: {e}"));
        for (_, stand_in) in &stand_ins {
            stand_in.send_to_sbc((SBC_IP, tls).into());
        }
        Lab {
            dir,
            udp,
            tcp,
            tls,
            carrier_port: spec.carrier_port,
            registry: running.registry.clone(),
            ops_addr: running.ops_addr,
            supervised: None,
            running: Some(running),
            runtime,
            stand_ins,
        }
    }

    /// Where a SIPp playing Microsoft sends its requests: the first stand-in's entry (which
    /// carries them to the SBC over Microsoft's own TLS connections), else the SBC's TCP
    /// listener.
    pub fn teams_entry(&self) -> SocketAddr {
        self.stand_ins
            .first()
            .map(|(_, s)| s.entry_addr)
            .unwrap_or_else(|| self.tcp_addr())
    }

    /// The stand-in in front of the SIPp at `sipp`.
    pub fn stand_in(&self, sipp: SocketAddr) -> Option<&microsoft::MicrosoftStandIn> {
        self.stand_ins
            .iter()
            .find(|(addr, _)| *addr == sipp)
            .map(|(_, s)| s)
    }

    /// Requests the SBC sent on connections Microsoft opened, over all stand-ins (rows 13,
    /// 14: must stay 0).
    pub fn microsoft_connection_violations(&self) -> usize {
        self.stand_ins.iter().map(|(_, s)| s.violations()).sum()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The SBC itself (its media handle, ops address, registry).
    /// Start the graceful drain a stop signal starts; the receiver resolves once no call is
    /// left.
    pub fn drain(&mut self) -> tokio::sync::oneshot::Receiver<()> {
        let running = self
            .running
            .as_mut()
            .expect("the SBC runs until the lab is dropped");
        self.runtime
            .block_on(running.drain())
            .expect("the SIP core takes the drain")
    }

    /// The configuration file the SBC was started with.
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sbc.toml")).unwrap()
    }

    /// Write `text` as the configuration file and reload it as SIGHUP does; `Err` with the
    /// reason when it is refused (the configuration in force then stays).
    pub fn reload_with(&mut self, text: &str) -> Result<(), String> {
        std::fs::write(self.dir.path().join("sbc.toml"), text).unwrap();
        let running = self
            .running
            .as_mut()
            .expect("the SBC runs until the lab is dropped");
        self.runtime
            .block_on(running.reload_from_file())
            .map_err(|e| e.to_string())
    }

    /// The ops listener (`/metrics`, `/healthz`, `/readyz`).
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_addr
    }

    /// Hand the SBC to `teams_sbc::app::supervise` as `teams-sbc run` does (without
    /// signals): from now on the admin API's reload and drain are served, and the lab's own
    /// `drain`, `reload_with` and `running` are no longer available.
    pub fn supervise(&mut self) {
        let running = self
            .running
            .take()
            .expect("the SBC runs until the lab is dropped");
        self.supervised = Some(self.runtime.spawn(teams_sbc::app::supervise(running, None)));
    }

    /// Wait at most `limit` for the supervised SBC to stop by itself (a drain); its outcome.
    pub fn wait_stopped(&mut self, limit: Duration) -> Result<(), String> {
        let task = self.supervised.take().expect("Lab::supervise was called");
        self.runtime
            .block_on(async { tokio::time::timeout(limit, task).await })
            .map_err(|_| format!("still running after {limit:?}"))?
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    pub fn running(&self) -> &Running {
        self.running
            .as_ref()
            .expect("the SBC runs until the lab is dropped")
    }

    pub fn udp_addr(&self) -> SocketAddr {
        (SBC_IP, self.udp).into()
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        (SBC_IP, self.tcp).into()
    }

    pub fn tls_addr(&self) -> SocketAddr {
        (SBC_IP, self.tls).into()
    }

    /// Sum of the samples of metric `name` whose labels include every pair of `labels` (a
    /// histogram by its `<name>_count` or `<name>_sum`).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        // A histogram's `_count` and `_sum` as Prometheus exposes them.
        let (family_name, part) = match (name.strip_suffix("_count"), name.strip_suffix("_sum")) {
            (Some(family), _) => (family, Some("count")),
            (_, Some(family)) => (family, Some("sum")),
            _ => (name, None),
        };
        self.registry
            .gather()
            .iter()
            .filter(|family| {
                family.name() == name
                    || (family.name() == family_name
                        && family.get_field_type() == prometheus::proto::MetricType::HISTOGRAM)
            })
            .flat_map(|family| {
                let kind = family.get_field_type();
                family.get_metric().iter().map(move |m| (kind, m))
            })
            .filter(|(_, m)| {
                labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                })
            })
            .map(|(kind, m)| match kind {
                prometheus::proto::MetricType::COUNTER => m.get_counter().get_value(),
                prometheus::proto::MetricType::GAUGE => m.get_gauge().get_value(),
                prometheus::proto::MetricType::HISTOGRAM if part == Some("count") => {
                    m.get_histogram().get_sample_count() as f64
                }
                prometheus::proto::MetricType::HISTOGRAM if part == Some("sum") => {
                    m.get_histogram().get_sample_sum()
                }
                _ => 0.0,
            })
            .sum()
    }

    /// Poll `check` every 50 ms for at most `limit`.
    pub fn wait_for(&self, what: &str, limit: Duration, mut check: impl FnMut(&Lab) -> bool) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if check(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("gave up waiting for {what}");
    }

    /// The first OPTIONS ping to each Microsoft stand-in has failed (nothing listened yet), so
    /// the next one comes long after the test: SIPp never sees an OPTIONS it did not expect.
    ///
    /// A proxy behind a TLS stand-in answers OPTIONS itself (as Microsoft does): wait for it
    /// to be up instead, which proves the mutual TLS path.
    pub fn wait_first_pings(&self, peers: &[String]) {
        for peer in peers {
            let stand_in = peer
                .parse::<SocketAddr>()
                .ok()
                .and_then(|addr| self.stand_in(addr));
            match stand_in {
                Some(stand_in) => {
                    let label = stand_in.proxy_addr.to_string();
                    self.wait_for(
                        &format!("the stand-in for {peer} to answer OPTIONS over TLS"),
                        Duration::from_secs(20),
                        |lab| lab.metric("options_peer_up", &[("peer", &label)]) >= 1.0,
                    );
                }
                None => self.wait_for(
                    &format!("the first OPTIONS to {peer} to fail"),
                    Duration::from_secs(20),
                    |lab| lab.metric("options_failures_total", &[("peer", peer)]) >= 1.0,
                ),
            }
        }
    }

    /// Wait until no call and no media session is left.
    ///
    /// Also checks the SBC never sent a request on a connection Microsoft opened (rows 13,
    /// 14: those carry Microsoft's requests only).
    pub fn wait_idle(&self) {
        self.wait_for(
            "calls and media sessions to end",
            Duration::from_secs(20),
            |lab| {
                lab.metric("calls_active", &[]) == 0.0
                    && lab.metric("media_sessions_active", &[]) == 0.0
            },
        );
        assert_eq!(
            self.microsoft_connection_violations(),
            0,
            "the SBC sent requests on connections Microsoft opened"
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            self.runtime.block_on(running.shutdown());
        }
    }
}

/// A child process killed (and reaped) when dropped.
pub struct Peer {
    pub name: String,
    child: Child,
    dir: PathBuf,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    pub fn from_child(name: &str, child: Child, dir: &Path) -> Peer {
        Peer {
            name: name.to_string(),
            child,
            dir: dir.to_path_buf(),
        }
    }

    /// SIPp's error log of this peer.
    pub fn errors(&self) -> String {
        sipp_errors(&self.dir)
    }

    /// Wait at most `limit` for the process to exit.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Assert a clean exit (SIPp: 0 = every call succeeded and every check passed).
    pub fn expect_success(&mut self, limit: Duration) {
        let status = self.wait(limit);
        let errors = sipp_errors(&self.dir);
        assert!(
            status.is_some_and(|s| s.success()),
            "{} ended with {status:?}; SIPp errors:\n{errors}",
            self.name
        );
    }
}

/// The text of every SIPp `*_errors.log` in `dir`.
pub fn sipp_errors(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with("_errors.log") {
            out.push_str(&format!("--- {name}\n"));
            out.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    out
}

/// A scenario from `tests/sipp/calls` with its `@NAME@` placeholders replaced, written to
/// `dir/<name>` (each SIPp runs in its own directory so its logs are its own).
pub fn scenario(dir: &Path, file: &str, values: &[(&str, &str)]) -> PathBuf {
    scenario_in("calls", dir, file, values)
}

/// [`scenario`] from `tests/sipp/<topic>`. Every placeholder must be filled.
pub fn scenario_in(topic: &str, dir: &Path, file: &str, values: &[(&str, &str)]) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(topic)
        .join(file);
    let mut text = std::fs::read_to_string(&source).unwrap();
    for (name, value) in values {
        text = text.replace(&format!("@{name}@"), value);
    }
    // Optional placeholder: a BYE's Reason is checked only when a test asks for it.
    text = text.replace("@BYE_REASON_RE@", ".*");
    if let Some(left) = unfilled_placeholder(&text) {
        panic!("unfilled placeholder {left} in {topic}/{file}");
    }
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

/// The first `@NAME@` (capital letters, digits, `_`) left in `text`.
fn unfilled_placeholder(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let mut start = 0;
    while let Some(at) = text[start..].find('@').map(|i| start + i) {
        let name_len = bytes[at + 1..]
            .iter()
            .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || **b == b'_')
            .count();
        let end = at + 1 + name_len;
        if name_len > 0 && bytes[at + 1].is_ascii_uppercase() && bytes.get(end) == Some(&b'@') {
            return Some(&text[at..=end]);
        }
        start = at + 1;
    }
    None
}

/// A regular expression as an XML attribute value.
fn xml_attr(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// SIPp `<ereg>` actions that must match (`check_it`) or must not (`check_it_inverse`), for a
/// scenario's `@CHECKS@`; each is `(search_in, regexp)`, regexps POSIX extended as SIPp uses
/// them.
pub fn sipp_checks(must: &[(&str, &str)], must_not: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (search_in, regexp)) in must.iter().enumerate() {
        let regexp = xml_attr(regexp);
        out.push_str(&format!(
            "      <ereg regexp=\"{regexp}\" search_in=\"{search_in}\" check_it=\"true\" assign_to=\"must{i}\"/>\n"
        ));
    }
    for (i, (search_in, regexp)) in must_not.iter().enumerate() {
        let regexp = xml_attr(regexp);
        out.push_str(&format!(
            "      <ereg regexp=\"{regexp}\" search_in=\"{search_in}\" check_it_inverse=\"true\" assign_to=\"mustnot{i}\"/>\n"
        ));
    }
    // SIPp refuses a scenario whose variables are assigned but never read.
    let used: Vec<String> = (0..must.len())
        .map(|i| format!("[$must{i}]"))
        .chain((0..must_not.len()).map(|i| format!("[$mustnot{i}]")))
        .collect();
    out.push_str(&format!(
        "      <log message=\"test checks {}\"/>\n",
        used.join(" ")
    ));
    out
}

/// SIPp's global limit for one call of the tests (`-timeout`).
pub const SIPP_LIMIT: &str = "40s";

/// Start SIPp with `args` in `dir` (one call, bounded by SIPp's own global timeout).
pub fn sipp(name: &str, dir: &Path, scenario: &Path, args: &[String]) -> Peer {
    sipp_limited(name, dir, scenario, args, SIPP_LIMIT)
}

/// [`sipp`] with the global limit `limit` (e.g. `"150s"` for a session interval).
pub fn sipp_limited(name: &str, dir: &Path, scenario: &Path, args: &[String], limit: &str) -> Peer {
    require("sipp", "sip-tester");
    let child = Command::new("sipp")
        .arg("-sf")
        .arg(scenario)
        .args(args)
        .args([
            "-m",
            "1",
            "-nostdin",
            "-trace_err",
            "-trace_logs",
            "-timeout",
            limit,
            "-timeout_error",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("spawn sipp ({e}); install it with `apt-get install -y sip-tester`")
        });
    Peer {
        name: name.to_string(),
        child,
        dir: dir.to_path_buf(),
    }
}

pub const PCAP_PACKETS: u32 = 100;

/// The carrier side of a PSTN -> Teams call: a SIPp UAC over UDP calling `called`.
pub fn carrier_uac(lab: &Lab, file: &str, called: &str, values: &[(&str, &str)]) -> Peer {
    carrier_uac_from(lab, CARRIER_IP, file, called, values)
}

/// [`carrier_uac`] from another address (a second trunk's).
pub fn carrier_uac_from(
    lab: &Lab,
    ip: Ipv4Addr,
    file: &str,
    called: &str,
    values: &[(&str, &str)],
) -> Peer {
    let port = free_udp_port(ip);
    let dir = lab.path().join(format!("carrier-{port}"));
    let path = scenario(&dir, file, values);
    write_pcmu_pcap(&dir.join("pcmu.pcap"), PCAP_PACKETS);
    let media = free_port_pair(ip);
    sipp(
        &format!("carrier SIPp UAC ({file})"),
        &dir,
        &path,
        &[
            lab.udp_addr().to_string(),
            "-s".into(),
            called.into(),
            "-t".into(),
            "u1".into(),
            "-i".into(),
            ip.to_string(),
            "-p".into(),
            port.to_string(),
            "-mi".into(),
            ip.to_string(),
            "-mp".into(),
            media.to_string(),
        ],
    )
}

/// The Microsoft stand-in side of a PSTN -> Teams call: a SIPp UAS over TCP (lab mode)
/// echoing media.
pub fn teams_uas(dir: &Path, file: &str, port: u16, values: &[(&str, &str)]) -> Peer {
    let dir = dir.join(format!("teams-{port}"));
    let path = scenario(&dir, file, values);
    let media = free_port_pair(TEAMS_IP);
    let peer = sipp(
        &format!("Teams SIPp UAS ({file})"),
        &dir,
        &path,
        &[
            "-t".into(),
            "t1".into(),
            "-i".into(),
            TEAMS_IP.to_string(),
            "-p".into(),
            port.to_string(),
            "-mi".into(),
            TEAMS_IP.to_string(),
            "-mp".into(),
            media.to_string(),
            "-rtp_echo".into(),
        ],
    );
    wait_listening_tcp((TEAMS_IP, port).into());
    peer
}

/// The carrier side of a Teams -> PSTN call: a SIPp UAS over UDP on the trunk's address,
/// playing `file` of `tests/sipp/calls` and echoing media.
pub fn carrier_uas(lab: &Lab, file: &str, values: &[(&str, &str)]) -> Peer {
    carrier_uas_from(lab, "calls", file, values, SIPP_LIMIT)
}

/// [`carrier_uas`] playing `file` of `tests/sipp/<topic>`, SIPp's global limit `limit`.
pub fn carrier_uas_from(
    lab: &Lab,
    topic: &str,
    file: &str,
    values: &[(&str, &str)],
    limit: &str,
) -> Peer {
    carrier_uas_on(
        lab,
        (CARRIER_IP, lab.carrier_port).into(),
        topic,
        file,
        values,
        limit,
    )
}

/// [`carrier_uas_from`] listening on `addr` (another trunk's address).
pub fn carrier_uas_on(
    lab: &Lab,
    addr: SocketAddr,
    topic: &str,
    file: &str,
    values: &[(&str, &str)],
    limit: &str,
) -> Peer {
    let std::net::IpAddr::V4(ip) = addr.ip() else {
        panic!("IPv4 only");
    };
    let dir = lab.path().join(format!("carrier-uas-{}", addr.port()));
    let path = scenario_in(topic, &dir, file, values);
    let media = free_port_pair(ip);
    let peer = sipp_limited(
        &format!("carrier SIPp UAS ({file})"),
        &dir,
        &path,
        &[
            "-t".into(),
            "u1".into(),
            "-i".into(),
            ip.to_string(),
            "-p".into(),
            addr.port().to_string(),
            "-mi".into(),
            ip.to_string(),
            "-mp".into(),
            media.to_string(),
            "-rtp_echo".into(),
        ],
        limit,
    );
    wait_bound_udp(addr);
    peer
}

/// A Teams -> PSTN INVITE from the Microsoft stand-in (SIPp UAC over TCP to
/// [`Lab::teams_entry`]) playing `file` of `tests/sipp/calls`.
pub fn teams_uac(lab: &Lab, name: &str, file: &str, values: &[(&str, &str)]) -> Peer {
    teams_uac_from(lab, name, "calls", file, values, SIPP_LIMIT)
}

/// [`teams_uac`] playing `file` of `tests/sipp/<topic>`, SIPp's global limit `limit`.
pub fn teams_uac_from(
    lab: &Lab,
    name: &str,
    topic: &str,
    file: &str,
    values: &[(&str, &str)],
    limit: &str,
) -> Peer {
    let port = free_tcp_port(TEAMS_IP);
    let dir = lab.path().join(format!("{name}-{port}"));
    let path = scenario_in(topic, &dir, file, values);
    let media = free_port_pair(TEAMS_IP);
    sipp_limited(
        &format!("Teams SIPp UAC ({name})"),
        &dir,
        &path,
        &[
            lab.teams_entry().to_string(),
            "-t".into(),
            "t1".into(),
            "-i".into(),
            TEAMS_IP.to_string(),
            "-p".into(),
            port.to_string(),
            "-mi".into(),
            TEAMS_IP.to_string(),
            "-mp".into(),
            media.to_string(),
        ],
        limit,
    )
}

/// A lab with one Microsoft stand-in (SIPp over TCP) whose first ping has already failed.
pub fn lab_with_one_proxy(media_base: u16) -> (Lab, u16) {
    lab_with_one_proxy_and(LabSpec::new(media_base))
}

/// [`lab_with_one_proxy`] from a spec the caller prepared.
pub fn lab_with_one_proxy_and(mut spec: LabSpec) -> (Lab, u16) {
    let port = free_tcp_port(TEAMS_IP);
    spec.proxies = vec![LabSpec::tcp_proxy(&TEAMS_IP.to_string(), port)];
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[format!("{TEAMS_IP}:{port}")]);
    (lab, port)
}

/// `text` with the characters a SIPp `ereg` regular expression treats specially escaped.
pub fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if ".+*?()[]{}|^$\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One SIPp call; `-trace_msg` keeps every message it sent and received.
pub fn sipp_traced(name: &str, dir: &Path, scenario: &Path, args: &[String]) -> Peer {
    require("sipp", "sip-tester");
    let child = Command::new("sipp")
        .arg("-sf")
        .arg(scenario)
        .args(args)
        .args([
            "-m",
            "1",
            "-nostdin",
            "-trace_err",
            "-trace_logs",
            "-trace_msg",
            "-timeout",
            "40s",
            "-timeout_error",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("spawn sipp ({e}); install it with `apt-get install -y sip-tester`")
        });
    Peer::from_child(name, child, dir)
}

/// The messages SIPp received (from its `*_messages.log` in `dir`), in order, LF line ends.
pub fn received_messages(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.ends_with("_messages.log") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())
            .unwrap_or_default()
            .replace("\r\n", "\n");
        for block in text.split("----------------------------------------------- ") {
            let Some((head, message)) = block.split_once("\n\n") else {
                continue;
            };
            if head.contains("message received") {
                out.push(message.trim_start().to_owned());
            }
        }
    }
    out
}

/// The first line of `message` starting with `prefix` (SDP lines sit at the line start).
pub fn sdp_line<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(prefix))
}

/// A random SDES inline key (16-byte key + 14-byte salt, base64).
pub fn new_inline_key() -> String {
    let raw: [u8; 30] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// A fresh SRTP context (rollover counter 0) for `inline`, from webrtc-srtp.
pub fn srtp_context(inline: &str) -> Context {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(inline)
        .expect("SDES inline key is base64");
    assert_eq!(raw.len(), 30, "AES_CM_128 key + salt");
    Context::new(
        &raw[..16],
        &raw[16..],
        ProtectionProfile::Aes128CmHmacSha1_80,
        None,
        None,
    )
    .unwrap()
}

/// A PCMU RTP packet whose payload is derived from `seq` (SSRC 0x7e570002).
pub fn rtp_packet(seq: u16) -> Vec<u8> {
    let mut packet = vec![0x80, 0x00];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    packet.extend_from_slice(&0x7e57_0002u32.to_be_bytes());
    packet.extend((0..160u16).map(|i| (i as u8) ^ (seq as u8)));
    packet
}

/// `(address, key)` the Teams stand-in logged after `tag` (SBC-MEDIA / SBC-REKEY).
pub fn logged_sbc_media(dir: &Path, tag: &str) -> Option<(SocketAddr, String)> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        if !entry.file_name().to_string_lossy().ends_with("_logs.log") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).ok()?;
        let line = text.lines().find(|l| l.contains(tag))?;
        let mut fields = line.split(tag).nth(1)?.split_whitespace();
        let ip = fields.next()?;
        let port = fields.next()?;
        let key = fields.next()?.to_string();
        return Some((format!("{ip}:{port}").parse().ok()?, key));
    }
    None
}

/// Whether a SIPp of `dir` has logged a line containing `tag` yet.
pub fn sipp_log_has(dir: &Path, tag: &str) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().ends_with("_logs.log"))
        .any(|entry| std::fs::read_to_string(entry.path()).is_ok_and(|text| text.contains(tag)))
}

/// Every datagram queued on `socket` now; with a short read timeout on the socket, reading
/// one that has nothing also paces a sending loop.
pub fn drain(socket: &UdpSocket) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    for _ in 0..1000 {
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => out.push(buf[..n].to_vec()),
            Err(_) => break,
        }
    }
    out
}

pub fn wait_logged(dir: &Path, tag: &str) -> (SocketAddr, String) {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        if let Some(found) = logged_sbc_media(dir, tag) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "the Teams stand-in never logged {tag}; SIPp errors:\n{}",
            sipp_errors(dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends RTP `seqs` encrypted with `encrypt` to `sbc` and returns the sequence numbers of
/// the echoes (carrier SIPp `-rtp_echo`, re-encrypted by the SBC) that `decrypt` accepts,
/// plus how many echoes `stale` (the keys before a re-key) still accepts.
pub fn echo_round(
    socket: &UdpSocket,
    sbc: SocketAddr,
    seqs: &[u16],
    encrypt: &mut Context,
    decrypt: &mut Context,
    mut stale: Option<&mut Context>,
) -> (std::collections::BTreeSet<u16>, usize) {
    let mut echoed = std::collections::BTreeSet::new();
    let mut stale_ok = 0;
    let mut buf = [0u8; 2048];
    let mut take = |n: usize, buf: &[u8], echoed: &mut std::collections::BTreeSet<u16>| {
        if let Some(old) = stale.as_deref_mut() {
            if old.decrypt_rtp(&buf[..n]).is_ok() {
                stale_ok += 1;
            }
        }
        if let Ok(plain) = decrypt.decrypt_rtp(&buf[..n]) {
            let seq = u16::from_be_bytes([plain[2], plain[3]]);
            assert_eq!(&plain[12..], &rtp_packet(seq)[12..], "payload of {seq}");
            echoed.insert(seq);
        }
    };
    let total = seqs.len();
    for &seq in seqs {
        let protected = encrypt.encrypt_rtp(&rtp_packet(seq)).unwrap();
        socket.send_to(&protected, sbc).unwrap();
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            take(n, &buf, &mut echoed);
        }
    }
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle && echoed.len() < total {
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            take(n, &buf, &mut echoed);
        }
    }
    (echoed, stale_ok)
}

/// One HTTP/1.1 GET to the ops listener: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("ops listener reachable");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("a whole response");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Wait until something listens for TCP on `addr` (a SIPp UAS is up). Read from
/// /proc/net/tcp rather than by connecting, so SIPp never sees a stray connection.
pub fn wait_listening_tcp(addr: SocketAddr) {
    let std::net::IpAddr::V4(ip) = addr.ip() else {
        panic!("IPv4 only");
    };
    let wanted = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(ip.octets()),
        addr.port()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        let listening = table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&wanted.as_str()) && fields.get(3) == Some(&"0A")
        });
        if listening {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {addr}");
}

/// Wait until `addr` is bound for UDP by someone else (a SIPp UAS is up).
pub fn wait_bound_udp(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if UdpSocket::bind(addr).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing bound {addr}");
}

/// A PCMU pcap (Ethernet/IPv4/UDP/RTP, 20 ms packets of a 400 Hz tone) for
/// `play_pcap_audio`; SIPp rewrites the addresses and ports when replaying.
pub fn write_pcmu_pcap(path: &Path, packets: u32) {
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
