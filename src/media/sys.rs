//! Thin safe wrappers over the Linux calls the forwarding workers use: epoll, eventfd and
//! batched UDP receive/send (recvmmsg/sendmmsg) with preallocated buffers; and the one call
//! that puts background work (a configuration reload) below calls in the scheduler.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Room for one datagram plus the SRTP/SRTCP tag and index the egress side may add.
pub const PACKET_BUFFER_LEN: usize = 2048;
/// Longest datagram accepted, leaving tail room for protection in place.
pub const MAX_DATAGRAM_LEN: usize = PACKET_BUFFER_LEN - 64;

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// An epoll instance in level-triggered mode.
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    pub fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new fd we own.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `event` is a valid epoll_event living across the call; the kernel copies it.
        check(unsafe {
            libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event)
        })?;
        Ok(())
    }

    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        let mut event = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as in `add`; the event argument is ignored for DEL but must be non-null on
        // old kernels.
        check(unsafe {
            libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut event)
        })?;
        Ok(())
    }

    /// Waits up to `timeout_millis` and returns how many entries of `events` were filled.
    pub fn wait(&self, events: &mut [libc::epoll_event], timeout_millis: i32) -> io::Result<usize> {
        let capacity = events.len().min(i32::MAX as usize) as libc::c_int;
        // SAFETY: the kernel writes at most `capacity` entries into `events`, which is a
        // valid, exclusively borrowed slice of that many epoll_event.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                events.as_mut_ptr(),
                capacity,
                timeout_millis,
            )
        };
        match check(n) {
            Ok(n) => Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// A non-blocking eventfd used to wake a worker when control commands are queued.
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new fd we own.
        let fd = check(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: freshly created fd, owned by nobody else.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64. A full counter (EAGAIN) still leaves the
        // fd readable, which is all the waiter needs, so the result is ignored.
        unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&one as *const u64).cast(),
                size_of::<u64>(),
            );
        }
    }

    pub fn drain(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64; EAGAIN when already drained.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut value as *mut u64).cast(),
                size_of::<u64>(),
            );
        }
    }
}

/// Moves the calling thread to `SCHED_IDLE`: it runs only when no other thread of the box
/// wants the CPU, so background work (parsing a large configuration) never delays the SIP core
/// or the media workers, whatever their own policy. Threads of tokio's blocking pool are reused:
/// call it only on a thread whose whole remaining job is such work, or restore it after.
pub fn current_thread_idle_priority() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 names the calling thread; `param` is a valid, initialised sched_param
    // that the kernel only reads during the call.
    check(unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) }).map(drop)
}

/// Moves the calling thread back to the normal policy (`SCHED_OTHER`).
pub fn current_thread_normal_priority() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: as in `current_thread_idle_priority`.
    check(unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) }).map(drop)
}

/// Converts a kernel socket address into a std one; `None` for other families.
pub fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in; sockaddr_storage is
            // large and aligned enough for it.
            let sin: &libc::sockaddr_in =
                unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above for sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes a std socket address into kernel form, returning the length used.
pub fn to_sockaddr(addr: &SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in, and
            // we hold it exclusively.
            let sin: &mut libc::sockaddr_in =
                unsafe { &mut *(storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            sin.sin_zero = [0; 8];
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above for sockaddr_in6.
            let sin6: &mut libc::sockaddr_in6 =
                unsafe { &mut *(storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            sin6.sin6_scope_id = v6.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Preallocated buffers and headers for batched receive and send. One per worker; the
/// kernel-facing header arrays are rebuilt (pointers only) before every call, so moving the
/// struct is harmless.
pub struct PacketBatch {
    pub buffers: Vec<[u8; PACKET_BUFFER_LEN]>,
    pub lens: Vec<usize>,
    pub addrs: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside `iovecs`/`headers` only ever point into this struct's own
// vectors and are rewritten before each use; sending the batch to another thread moves
// those vectors with it.
unsafe impl Send for PacketBatch {}

impl PacketBatch {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            buffers: vec![[0u8; PACKET_BUFFER_LEN]; capacity],
            lens: vec![0; capacity],
            // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which
            // all-zero bytes are a valid value.
            addrs: vec![unsafe { zeroed() }; capacity],
            iovecs: vec![unsafe { zeroed() }; capacity],
            headers: vec![unsafe { zeroed() }; capacity],
        }
    }

    pub fn capacity(&self) -> usize {
        self.buffers.len()
    }

    /// Points headers `range` at their buffers and addresses. A receive offers each buffer's
    /// first `MAX_DATAGRAM_LEN` bytes; a send offers `lens[i]`, never more than the buffer
    /// holds (an entry longer than its buffer is refused before this, see `send`): every
    /// iovec this leaves behind lies inside its buffer.
    fn prepare(&mut self, range: std::ops::Range<usize>, receive: bool) {
        for i in range {
            let buffer_len = self.buffers[i].len();
            let len = if receive {
                MAX_DATAGRAM_LEN.min(buffer_len)
            } else {
                self.lens[i].min(buffer_len)
            };
            self.iovecs[i] = libc::iovec {
                iov_base: self.buffers[i].as_mut_ptr().cast(),
                iov_len: len,
            };
            let header = &mut self.headers[i].msg_hdr;
            header.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            header.msg_namelen = if receive {
                size_of::<libc::sockaddr_storage>() as libc::socklen_t
            } else {
                sockaddr_len(&self.addrs[i])
            };
            header.msg_iov = &mut self.iovecs[i];
            header.msg_iovlen = 1;
            header.msg_control = std::ptr::null_mut();
            header.msg_controllen = 0;
            header.msg_flags = 0;
            self.headers[i].msg_len = 0;
        }
    }

    /// Receives up to `capacity()` datagrams without blocking; `Ok(0)` when none is queued.
    pub fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
        let capacity = self.capacity();
        // Indexes every vector up to `capacity`, so a caller who shrank one panics here,
        // before the kernel is handed anything.
        self.prepare(0..capacity, true);
        // SAFETY: `prepare` just pointed `headers[..capacity]` at iovecs, buffers and
        // addresses owned by `self`; each iovec covers at most its own buffer and each name
        // length is the size of its `sockaddr_storage`. `&mut self` keeps all of them alive
        // and unaliased for the call, and the kernel writes at most `capacity` headers.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                capacity as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let n = match check(n) {
            Ok(n) => n as usize,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) => return Err(e),
        };
        for i in 0..n {
            // A datagram longer than the buffer is reported with its true length so the
            // caller drops it instead of forwarding a truncated packet.
            self.lens[i] = if self.headers[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                PACKET_BUFFER_LEN + 1
            } else {
                self.headers[i].msg_len as usize
            };
        }
        Ok(n)
    }

    /// Receives one datagram with recvfrom into slot 0 (the non-batched fallback).
    pub fn receive_one(&mut self, fd: RawFd) -> io::Result<usize> {
        let mut addr_len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: the buffer and address storage are owned by `self`, writable, and at
        // least as large as the lengths passed.
        let n = unsafe {
            libc::recvfrom(
                fd,
                self.buffers[0].as_mut_ptr().cast(),
                MAX_DATAGRAM_LEN,
                // MSG_TRUNC: return the real length, so oversized datagrams are dropped.
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                (&mut self.addrs[0] as *mut libc::sockaddr_storage).cast(),
                &mut addr_len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        self.lens[0] = n as usize;
        Ok(1)
    }

    /// Sends entries `start..end` (lens and addrs already filled) on `fd`; returns how many
    /// the kernel accepted. An entry whose length exceeds its buffer is refused: never sent
    /// (not even truncated) and not counted as accepted.
    pub fn send(&mut self, fd: RawFd, start: usize, end: usize, batched: bool) -> usize {
        let end = end.min(self.capacity());
        let mut accepted = 0;
        let mut run_start = start;
        while run_start < end {
            if !self.fits_its_buffer(run_start) {
                run_start += 1;
                continue;
            }
            let mut run_end = run_start + 1;
            while run_end < end && self.fits_its_buffer(run_end) {
                run_end += 1;
            }
            accepted += if batched {
                self.send_run_batched(fd, run_start..run_end)
            } else {
                self.send_run_one_by_one(fd, run_start..run_end)
            };
            run_start = run_end;
        }
        accepted
    }

    fn fits_its_buffer(&self, i: usize) -> bool {
        self.lens[i] <= self.buffers[i].len()
    }

    /// sendmmsg over `run`, whose entries all fit their buffers.
    fn send_run_batched(&mut self, fd: RawFd, run: std::ops::Range<usize>) -> usize {
        self.prepare(run.clone(), false);
        let mut sent = run.start;
        while sent < run.end {
            // SAFETY: `prepare` pointed `headers[run]` at iovecs, buffers and addresses owned
            // by `self`, each iovec no longer than its buffer (it clamps to the buffer) and
            // each name length no longer than its `sockaddr_storage`; `sent..run.end` lies
            // inside `run`, which `prepare` indexed, so the kernel reads `run.end - sent`
            // valid headers. `&mut self` keeps everything alive and unaliased for the call.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.headers[sent..].as_mut_ptr(),
                    (run.end - sent) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                // Skip the packet the kernel refused and carry on with the rest.
                sent += 1;
                continue;
            }
            sent += n as usize;
        }
        self.count_accepted(run)
    }

    /// One sendto per entry of `run`, whose entries all fit their buffers.
    fn send_run_one_by_one(&mut self, fd: RawFd, run: std::ops::Range<usize>) -> usize {
        let mut ok = 0;
        for i in run {
            let buffer = &self.buffers[i];
            let len = self.lens[i].min(buffer.len());
            let addr = &self.addrs[i];
            // SAFETY: `buffer` is valid for reads of `len` bytes (clamped to its length just
            // above) and `addr` for reads of `sockaddr_len(addr)` bytes (at most the size of a
            // `sockaddr_storage`); both are borrowed from `self` for the call.
            let n = unsafe {
                libc::sendto(
                    fd,
                    buffer.as_ptr().cast(),
                    len,
                    libc::MSG_DONTWAIT,
                    (addr as *const libc::sockaddr_storage).cast(),
                    sockaddr_len(addr),
                )
            };
            if n >= 0 {
                ok += 1;
            }
        }
        ok
    }

    fn count_accepted(&self, run: std::ops::Range<usize>) -> usize {
        run.filter(|&i| self.headers[i].msg_len as usize == self.lens[i])
            .count()
    }
}

fn sockaddr_len(storage: &libc::sockaddr_storage) -> libc::socklen_t {
    if storage.ss_family as libc::c_int == libc::AF_INET6 {
        size_of::<libc::sockaddr_in6>() as libc::socklen_t
    } else {
        size_of::<libc::sockaddr_in>() as libc::socklen_t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn sockaddr_round_trip() {
        // SAFETY: all-zero sockaddr_storage is valid.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        for addr in ["127.0.0.1:4000", "[::1]:5000", "[fe80::1%2]:6"] {
            let a: SocketAddr = addr.parse().unwrap();
            to_sockaddr(&a, &mut storage);
            assert_eq!(from_sockaddr(&storage), Some(a));
        }
    }

    #[test]
    fn batch_receive_and_send_over_loopback() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..5u8 {
            tx.send_to(&[i; 100], rx.local_addr().unwrap()).unwrap();
        }
        let mut batch = PacketBatch::new(8);
        let mut got = 0;
        for _ in 0..100 {
            got += batch.receive(rx.as_raw_fd()).unwrap();
            if got >= 5 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(got, 5);
        assert_eq!(batch.lens[0], 100);
        assert_eq!(
            from_sockaddr(&batch.addrs[0]),
            Some(tx.local_addr().unwrap())
        );
        // Send them back to `tx` in one sendmmsg.
        for i in 0..got {
            to_sockaddr(&tx.local_addr().unwrap(), &mut batch.addrs[i]);
        }
        assert_eq!(batch.send(rx.as_raw_fd(), 0, got, true), 5);
        // An oversized datagram is reported longer than any buffer, batched or not.
        tx.send_to(&[9u8; MAX_DATAGRAM_LEN + 10], rx.local_addr().unwrap())
            .unwrap();
        tx.send_to(&[9u8; MAX_DATAGRAM_LEN + 10], rx.local_addr().unwrap())
            .unwrap();
        let mut oversized = PacketBatch::new(1);
        for receive_one in [false, true] {
            let mut n = 0;
            for _ in 0..100 {
                n = if receive_one {
                    oversized.receive_one(rx.as_raw_fd()).unwrap()
                } else {
                    oversized.receive(rx.as_raw_fd()).unwrap()
                };
                if n > 0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            assert_eq!(n, 1);
            assert!(oversized.lens[0] > MAX_DATAGRAM_LEN);
        }
        assert_eq!(batch.send(rx.as_raw_fd(), 0, 1, false), 1);
        tx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 200];
        for _ in 0..6 {
            let (n, _) = tx.recv_from(&mut buf).unwrap();
            assert_eq!(n, 100);
        }
    }

    /// A length longer than its buffer, given through the public `lens`, would have had the
    /// kernel read past the buffer: the entry is refused, its neighbours still go out.
    #[test]
    fn send_refuses_a_length_longer_than_its_buffer() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let to = tx.local_addr().unwrap();
        for batched in [true, false] {
            let mut batch = PacketBatch::new(3);
            for (i, len) in [(0, PACKET_BUFFER_LEN + 100), (1, 100), (2, 50)] {
                batch.buffers[i] = [i as u8 + 1; PACKET_BUFFER_LEN];
                batch.lens[i] = len;
                to_sockaddr(&to, &mut batch.addrs[i]);
            }
            assert_eq!(batch.send(rx.as_raw_fd(), 0, 3, batched), 2, "{batched}");
            let mut buf = [0u8; 4 * PACKET_BUFFER_LEN];
            for (len, byte) in [(100, 2), (50, 3)] {
                let (n, _) = tx.recv_from(&mut buf).unwrap();
                assert_eq!((n, buf[0]), (len, byte), "{batched}: entries 1 and 2 only");
            }
            tx.set_nonblocking(true).unwrap();
            assert!(tx.recv_from(&mut buf).is_err(), "{batched}: nothing else");
            tx.set_nonblocking(false).unwrap();
        }
    }

    #[test]
    fn epoll_and_eventfd_wake() {
        let epoll = Epoll::new().unwrap();
        let waker = EventFd::new().unwrap();
        epoll.add(waker.raw(), 77).unwrap();
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
        assert_eq!(epoll.wait(&mut events, 0).unwrap(), 0);
        waker.signal();
        assert_eq!(epoll.wait(&mut events, 1000).unwrap(), 1);
        let token = events[0].u64;
        assert_eq!(token, 77);
        waker.drain();
        assert_eq!(epoll.wait(&mut events, 0).unwrap(), 0);
    }
}
