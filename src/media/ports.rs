//! Port pool of one media interface. Used by the control path only (never by workers).
//!
//! Ports are drawn at random from the range: a port that follows from the last call's
//! cannot be guessed by someone who wants to inject media into a call before its peer's
//! packets latch (the "RTP Bleed" class of attack). A just-freed port cools down (is not
//! handed out again) until a number of later releases have passed, so late packets of the
//! old call do not land in a new one; when nothing else is free a cooling port is used.
//! Ports another process holds are skipped: the bind itself is the test.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Random candidates tried before a full scan from a random start.
const RANDOM_TRIES: usize = 32;
/// At most this many freed ports cool down at a time.
const MAX_COOLING: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortState {
    Free,
    InUse,
    /// Released recently; free again once it leaves the cooling queue.
    Cooling,
}

pub struct PortPool {
    ip: IpAddr,
    min: u16,
    max: u16,
    state: Vec<PortState>,
    /// Indexes of cooling ports, oldest first.
    cooling: VecDeque<usize>,
    /// Cooling ports kept at most (a quarter of the range, bounded).
    cooling_limit: usize,
    rng: StdRng,
}

impl PortPool {
    pub fn new(ip: IpAddr, min: u16, max: u16) -> Self {
        let (min, max) = if min <= max { (min, max) } else { (max, min) };
        let size = usize::from(max - min) + 1;
        Self {
            ip,
            min,
            max,
            state: vec![PortState::Free; size],
            cooling: VecDeque::new(),
            cooling_limit: (size / 4).min(MAX_COOLING),
            rng: StdRng::from_entropy(),
        }
    }

    fn size(&self) -> usize {
        self.state.len()
    }

    fn port_at(&self, index: usize) -> u16 {
        self.min + index as u16
    }

    fn bind(&self, port: u16) -> io::Result<UdpSocket> {
        let socket = UdpSocket::bind(SocketAddr::new(self.ip, port))?;
        socket.set_nonblocking(true)?;
        Ok(socket)
    }

    /// One socket on a random free port (an rtcp-mux leg).
    pub fn allocate_single(&mut self) -> io::Result<(u16, UdpSocket)> {
        let (index, mut sockets) = self.allocate(1)?;
        let socket = sockets.pop().ok_or_else(exhausted)?;
        Ok((self.port_at(index), socket))
    }

    /// A random even RTP port and the odd RTCP port above it (RFC 3550 section 11).
    pub fn allocate_pair(&mut self) -> io::Result<(u16, UdpSocket, UdpSocket)> {
        let (index, mut sockets) = self.allocate(2)?;
        let rtcp = sockets.pop().ok_or_else(exhausted)?;
        let rtp = sockets.pop().ok_or_else(exhausted)?;
        Ok((self.port_at(index), rtp, rtcp))
    }

    /// `count` consecutive ports bound from a random start (even when `count` is 2): random
    /// candidates first, then a scan from a random point, then the same with cooling ports.
    fn allocate(&mut self, count: usize) -> io::Result<(usize, Vec<UdpSocket>)> {
        for _ in 0..RANDOM_TRIES {
            let index = self.rng.gen_range(0..self.size());
            if let Some(sockets) = self.try_take(index, count, false) {
                return Ok((index, sockets));
            }
        }
        for allow_cooling in [false, true] {
            let start = self.rng.gen_range(0..self.size());
            for step in 0..self.size() {
                let index = (start + step) % self.size();
                if let Some(sockets) = self.try_take(index, count, allow_cooling) {
                    return Ok((index, sockets));
                }
            }
        }
        Err(exhausted())
    }

    /// Binds the `count` ports from `index` and marks them in use, or leaves everything as
    /// it was.
    fn try_take(
        &mut self,
        index: usize,
        count: usize,
        allow_cooling: bool,
    ) -> Option<Vec<UdpSocket>> {
        let port = self.port_at(index);
        if port == 0 || (count == 2 && port % 2 != 0) || index + count > self.size() {
            return None;
        }
        let usable = |state: PortState| {
            state == PortState::Free || (allow_cooling && state == PortState::Cooling)
        };
        if !self.state[index..index + count].iter().all(|&s| usable(s)) {
            return None;
        }
        let mut sockets = Vec::with_capacity(count);
        for offset in 0..count {
            sockets.push(self.bind(port + offset as u16).ok()?);
        }
        for i in index..index + count {
            if self.state[i] == PortState::Cooling {
                self.cooling.retain(|&c| c != i);
            }
            self.state[i] = PortState::InUse;
        }
        Some(sockets)
    }

    pub fn release(&mut self, port: u16) {
        if !(self.min..=self.max).contains(&port) {
            return;
        }
        let index = usize::from(port - self.min);
        if self.state[index] != PortState::InUse {
            return;
        }
        if self.cooling_limit == 0 {
            self.state[index] = PortState::Free;
            return;
        }
        self.state[index] = PortState::Cooling;
        self.cooling.push_back(index);
        while self.cooling.len() > self.cooling_limit {
            if let Some(cooled) = self.cooling.pop_front() {
                self.state[cooled] = PortState::Free;
            }
        }
    }

    #[cfg(test)]
    pub fn in_use(&self) -> usize {
        self.state
            .iter()
            .filter(|&&s| s == PortState::InUse)
            .count()
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
        assert!([47120, 47121].contains(&single));
        assert_eq!(pool.in_use(), 3);
    }

    /// RTP Bleed: a port must not follow from the previous call's. Over many allocations
    /// (each released at once) the pairs spread over the whole range and the next port is
    /// not the previous one plus two.
    #[test]
    fn rtp_bleed_ports_are_drawn_at_random_not_in_sequence() {
        const MIN: u16 = 47200;
        const MAX: u16 = 47599;
        const DRAWS: usize = 300;
        let mut pool = PortPool::new(LOCAL, MIN, MAX);
        let mut ports = Vec::with_capacity(DRAWS);
        for _ in 0..DRAWS {
            let (port, rtp, rtcp) = pool.allocate_pair().unwrap();
            drop((rtp, rtcp));
            pool.release(port);
            pool.release(port + 1);
            ports.push(port);
        }
        let in_sequence = ports.windows(2).filter(|w| w[1] == w[0] + 2).count();
        assert!(in_sequence < DRAWS / 20, "{in_sequence} sequential draws");
        // Four quarters of the range each get a fair share of the draws.
        let quarter = (MAX - MIN + 1) / 4;
        for q in 0..4 {
            let low = MIN + q * quarter;
            let hits = ports
                .iter()
                .filter(|&&p| (low..low + quarter).contains(&p))
                .count();
            assert!(hits > DRAWS / 8, "quarter {q}: {hits} of {DRAWS}");
        }
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn a_released_port_cools_down_before_it_is_drawn_again() {
        let mut pool = PortPool::new(LOCAL, 47700, 47739);
        let (first, _) = pool.allocate_single().unwrap();
        pool.release(first);
        // 40 ports, 10 may cool: the next 9 allocations (released at once) never get it back.
        for _ in 0..9 {
            let (port, socket) = pool.allocate_single().unwrap();
            assert_ne!(port, first);
            drop(socket);
            pool.release(port);
        }
        // Only cooling ports left (8 ports, 2 may cool): one of them is used rather than
        // failing.
        let mut pool = PortPool::new(LOCAL, 47740, 47747);
        let mut held: Vec<_> = (0..8).map(|_| pool.allocate_single().unwrap()).collect();
        let released: Vec<u16> = held.drain(..2).map(|(port, _)| port).collect();
        for port in &released {
            pool.release(*port);
        }
        let (port, _) = pool.allocate_single().unwrap();
        assert!(released.contains(&port));
    }
}
