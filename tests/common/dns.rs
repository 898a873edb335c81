//! A tiny authoritative DNS responder on loopback (RFC 1035, UDP): A records the test sets and
//! changes while the SBC runs, answered with TTL 0 so every lookup reaches it. The SBC is
//! pointed at it with `[sbc] dns_servers`; nothing in the product is faked.
//!
//! A query for a name with an A record gets that record; any other type for a known name an
//! empty NOERROR answer (RFC 2308 NODATA); an unknown name NXDOMAIN. Queries it cannot read
//! are dropped. Every query is counted by name.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
const RCODE_NXDOMAIN: u8 = 3;

#[derive(Default)]
struct Zone {
    records: HashMap<String, Ipv4Addr>,
    queries: HashMap<String, usize>,
}

pub struct DnsResponder {
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DnsResponder {
    /// Serve on `ip` (a free UDP port).
    pub fn start(ip: Ipv4Addr) -> DnsResponder {
        let socket = UdpSocket::bind((ip, 0)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let zone = Arc::new(Mutex::new(Zone::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (z, s) = (zone.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !s.load(Ordering::SeqCst) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(answer) = answer(&z, &buf[..n]) {
                    let _ = socket.send_to(&answer, from);
                }
            }
        });
        DnsResponder {
            addr,
            zone,
            stop,
            thread: Some(thread),
        }
    }

    /// `name` resolves to `ip` from now on (names are compared without case and final dot).
    pub fn set(&self, name: &str, ip: Ipv4Addr) {
        self.zone
            .lock()
            .unwrap()
            .records
            .insert(normalize(name), ip);
    }

    /// Queries received for `name` so far (any type).
    pub fn queries(&self, name: &str) -> usize {
        let zone = self.zone.lock().unwrap();
        zone.queries.get(&normalize(name)).copied().unwrap_or(0)
    }
}

impl Drop for DnsResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The question's name and the offset just past it, or `None` when it is not a plain name
/// (compression is not allowed in a question we answer).
fn read_name(packet: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*packet.get(at)?);
        at += 1;
        if len == 0 {
            return Some((labels.join("."), at));
        }
        if len > 63 {
            return None;
        }
        let label = packet.get(at..at + len)?;
        labels.push(String::from_utf8(label.to_vec()).ok()?);
        at += len;
    }
}

fn answer(zone: &Mutex<Zone>, query: &[u8]) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    let is_query = header[2] & 0x80 == 0;
    let question_count = u16::from_be_bytes([header[4], header[5]]);
    if !is_query || question_count != 1 {
        return None;
    }
    let (name, end) = read_name(query, 12)?;
    let qtype = u16::from_be_bytes([*query.get(end)?, *query.get(end + 1)?]);
    let qclass = u16::from_be_bytes([*query.get(end + 2)?, *query.get(end + 3)?]);
    let question = &query[12..end + 4];
    let record = {
        let mut zone = zone.lock().unwrap();
        let key = normalize(&name);
        *zone.queries.entry(key.clone()).or_default() += 1;
        zone.records.get(&key).copied()
    };
    let recursion_desired = header[2] & 0x01;
    let rcode = if record.is_none() { RCODE_NXDOMAIN } else { 0 };
    let a = record.filter(|_| qtype == TYPE_A && qclass == CLASS_IN);
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&header[..2]); // ID
    out.push(0x84 | recursion_desired); // QR, opcode QUERY, AA
    out.push(rcode);
    out.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    out.extend_from_slice(&u16::from(a.is_some()).to_be_bytes()); // ANCOUNT
    out.extend_from_slice(&0u16.to_be_bytes()); // NSCOUNT
    out.extend_from_slice(&0u16.to_be_bytes()); // ARCOUNT
    out.extend_from_slice(question);
    if let Some(ip) = a {
        out.extend_from_slice(&[0xc0, 0x0c]); // the question's name
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes()); // TTL: ask again every time
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    Some(out)
}
