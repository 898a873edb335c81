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

/// How the carrier leg learns where to send media (symmetric RTP). Whatever the mode, the
/// carrier leg only takes media from a host the peer's SDP names or from the trunk's
/// networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatchingMode {
    /// Always send to the address signalled with `set_remote`; take media from every
    /// allowed source.
    Off,
    /// Move the remote address to a source after `after_packets` consecutive valid packets
    /// from it, at any time in the call; a later source can take over the same way (and
    /// so can any host in the trunk's networks).
    Learn { after_packets: u32 },
    /// Latch within a window opened by each offer/answer (`set_remote`): the first source
    /// with `after_packets` consecutive valid packets becomes the remote address and closes
    /// the window, as do `leg::LATCH_WINDOW_PACKETS` packets or `leg::LATCH_WINDOW_MILLIS`
    /// without a latch. Then only that source (or the remote address) is accepted until the
    /// next offer/answer; RTCP likewise.
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
    /// Send RTCP sender/receiver reports of our own on a leg whose far side sends none
    /// (row 46).
    pub rtcp_reports: bool,
}

impl Default for MediaSettings {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            workers: 0,
            latching: LatchingMode::Strict { after_packets: 3 },
            inactivity_timeout: Duration::from_secs(60),
            hold_counts_as_activity: true,
            batch_io: true,
            rtcp_reports: true,
        }
    }
}

impl MediaSettings {
    /// Checks names are unique and port ranges usable; the message says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.interfaces.is_empty() {
            return Err("no media interface".into());
        }
        for (n, i) in self.interfaces.iter().enumerate() {
            if i.name.is_empty() {
                return Err("media interface with an empty name".into());
            }
            if self.interfaces[..n].iter().any(|o| o.name == i.name) {
                return Err(format!("media interface {:?} defined twice", i.name));
            }
            if i.port_min == 0 || i.port_min > i.port_max {
                return Err(format!(
                    "media interface {:?}: port range {}-{} is empty or starts at 0",
                    i.name, i.port_min, i.port_max
                ));
            }
            if i.port_max - i.port_min < 3 {
                return Err(format!(
                    "media interface {:?}: port range needs at least 4 ports",
                    i.name
                ));
            }
        }
        if self.inactivity_timeout.is_zero() {
            return Err("media inactivity timeout must be positive".into());
        }
        Ok(())
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn iface(name: &str, min: u16, max: u16) -> InterfaceSettings {
        InterfaceSettings::new(name, IpAddr::V4(Ipv4Addr::LOCALHOST), min, max)
    }

    #[test]
    fn validation_names_the_problem() {
        let mut s = MediaSettings::default();
        assert!(s.validate().unwrap_err().contains("no media interface"));
        s.interfaces = vec![iface("carrier", 20000, 29999), iface("teams", 30000, 39999)];
        assert_eq!(s.validate(), Ok(()));
        s.interfaces.push(iface("teams", 40000, 40010));
        assert!(s.validate().unwrap_err().contains("twice"));
        s.interfaces.pop();
        s.interfaces[0].port_min = 0;
        assert!(s.validate().unwrap_err().contains("carrier"));
        s.interfaces[0] = iface("carrier", 5000, 5001);
        assert!(s.validate().unwrap_err().contains("at least 4"));
    }

    #[test]
    fn advertised_defaults_to_bind_ip() {
        let mut i = iface("teams", 1, 100);
        assert_eq!(i.advertised(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        i.advertised_ip = Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)));
        assert_eq!(i.advertised(), IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)));
        assert!(MediaSettings::default().worker_count() >= 1);
    }
}
