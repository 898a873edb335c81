//! Port pool of one media interface. Used by the control path only (never by workers).
//!
//! A bitmap remembers which ports this engine holds; a rotating cursor spreads allocations
//! over the range so a just-freed port is not handed out again at once (late packets of
//! the old call would land in the new one). Ports another process holds are skipped: the
//! bind itself is the test.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};

pub struct PortPool {
    ip: IpAddr,
    min: u16,
    max: u16,
    in_use: Vec<bool>,
    cursor: usize,
}

impl PortPool {
    pub fn new(ip: IpAddr, min: u16, max: u16) -> Self {
        let (min, max) = if min <= max { (min, max) } else { (max, min) };
        let size = (max - min) as usize + 1;
        Self {
            ip,
            min,
            max,
            in_use: vec![false; size],
            cursor: 0,
        }
    }

    fn size(&self) -> usize {
        self.in_use.len()
    }

    fn port_at(&self, index: usize) -> u16 {
        self.min + index as u16
    }

    fn bind(&self, port: u16) -> io::Result<UdpSocket> {
        let socket = UdpSocket::bind(SocketAddr::new(self.ip, port))?;
        socket.set_nonblocking(true)?;
        Ok(socket)
    }

    /// One socket on any free port (an rtcp-mux leg).
    pub fn allocate_single(&mut self) -> io::Result<(u16, UdpSocket)> {
        for step in 0..self.size() {
            let index = (self.cursor + step) % self.size();
            if self.in_use[index] {
                continue;
            }
            let port = self.port_at(index);
            if port == 0 {
                continue;
            }
            if let Ok(socket) = self.bind(port) {
                self.in_use[index] = true;
                self.cursor = (index + 1) % self.size();
                return Ok((port, socket));
            }
        }
        Err(exhausted())
    }

    /// An even RTP port and the odd RTCP port above it (RFC 3550 section 11).
    pub fn allocate_pair(&mut self) -> io::Result<(u16, UdpSocket, UdpSocket)> {
        for step in 0..self.size() {
            let index = (self.cursor + step) % self.size();
            let port = self.port_at(index);
            if port % 2 != 0 || port == 0 || port >= self.max {
                continue;
            }
            if self.in_use[index] || self.in_use[index + 1] {
                continue;
            }
            let Ok(rtp) = self.bind(port) else { continue };
            let Ok(rtcp) = self.bind(port + 1) else {
                continue;
            };
            self.in_use[index] = true;
            self.in_use[index + 1] = true;
            self.cursor = (index + 2) % self.size();
            return Ok((port, rtp, rtcp));
        }
        Err(exhausted())
    }

    pub fn release(&mut self, port: u16) {
        if (self.min..=self.max).contains(&port) {
            let index = (port - self.min) as usize;
            self.in_use[index] = false;
        }
    }

    #[cfg(test)]
    pub fn in_use(&self) -> usize {
        self.in_use.iter().filter(|&&u| u).count()
    }
}

fn exhausted() -> io::Error {
    io::Error::new(io::ErrorKind::AddrInUse, "media port range exhausted")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn pairs_are_even_odd_and_exhaust() {
        let mut pool = PortPool::new(LOCAL, 47100, 47107);
        let mut held = Vec::new();
        while let Ok((port, rtp, rtcp)) = pool.allocate_pair() {
            assert_eq!(port % 2, 0);
            assert_eq!(rtp.local_addr().unwrap().port(), port);
            assert_eq!(rtcp.local_addr().unwrap().port(), port + 1);
            held.push((port, rtp, rtcp));
        }
        assert!(!held.is_empty() && held.len() <= 4);
        assert!(pool.allocate_single().is_err());
        let (port, _, _) = held.pop().unwrap();
        pool.release(port);
        pool.release(port + 1);
        assert!(pool.allocate_single().is_ok());
    }

    #[test]
    fn skips_ports_held_elsewhere() {
        let blocker = UdpSocket::bind((LOCAL, 47120)).unwrap();
        let mut pool = PortPool::new(LOCAL, 47120, 47123);
        let (port, _, _) = pool.allocate_pair().unwrap();
        assert_eq!(port, 47122);
        drop(blocker);
        let (single, _) = pool.allocate_single().unwrap();
        assert_eq!(single, 47120);
        assert_eq!(pool.in_use(), 3);
    }
}
