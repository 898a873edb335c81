//! Plain settings for the media engine (the config module maps TOML onto these).

use std::net::IpAddr;
use std::time::Duration;

/// One media interface: where sockets are bound and what address is advertised in SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceSettings {
    /// Name the control API refers to, e.g. "carrier" or "teams".
    pub name: String,
    /// Local address sockets bind to.
    pub bind_ip: IpAddr,
    /// Public address to advertise when the SBC sits behind NAT; `None` advertises `bind_ip`.
    pub advertised_ip: Option<IpAddr>,
    /// First port of the range (inclusive).
    pub port_min: u16,
    /// Last port of the range (inclusive).
    pub port_max: u16,
}

impl InterfaceSettings {
    pub fn new(name: &str, bind_ip: IpAddr, port_min: u16, port_max: u16) -> Self {
        Self {
            name: name.to_string(),
            bind_ip,
            advertised_ip: None,
            port_min,
            port_max,
        }
    }

    pub fn advertised(&self) -> IpAddr {
        self.advertised_ip.unwrap_or(self.bind_ip)
    }
}

/// How the carrier leg learns where to send media (symmetric RTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatchingMode {
    /// Always send to the address signalled with `set_remote`.
    Off,
    /// Move the remote address to a source after `after_packets` consecutive valid packets
    /// from it; a later source can take over the same way.
    Learn { after_packets: u32 },
    /// Like `Learn` for the first source; once latched, packets from any other source are
    /// dropped and the latch never moves.
    Strict { after_packets: u32 },
}

/// Settings of the whole media engine.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    pub interfaces: Vec<InterfaceSettings>,
    /// Forwarding threads; `0` means one per available core.
    pub workers: usize,
    pub latching: LatchingMode,
    /// A leg that receives no RTP or RTCP for this long is reported inactive.
    pub inactivity_timeout: Duration,
    /// When true, a leg marked on hold is never reported inactive.
    pub hold_counts_as_activity: bool,
    /// Use recvmmsg/sendmmsg; when false, one recvfrom/sendto per packet.
    pub batch_io: bool,
}

impl Default for MediaSettings {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            workers: 0,
            latching: LatchingMode::Learn { after_packets: 3 },
            inactivity_timeout: Duration::from_secs(60),
            hold_counts_as_activity: true,
            batch_io: true,
        }
    }
}

impl MediaSettings {
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }
}
