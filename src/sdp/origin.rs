//! The `o=` line the SBC writes on one call leg: a stable origin (user, session id, address)
//! whose version goes up exactly when the SDP sent on that leg changes (RFC 3264 §8).

use std::fmt::Write as _;
use std::net::IpAddr;

use super::model::{Line, Sdp};

/// Origin state of one leg. Create one per leg when the call starts and pass it to every
/// rewrite for that leg; it never reveals the other leg's `o=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegOrigin {
    username: String,
    session_id: u64,
    version: u64,
    address: IpAddr,
    /// Digest of the last SDP stamped (without its `o=` line), to detect a change.
    last_digest: Option<u64>,
}

impl LegOrigin {
    /// Origin `- <session_id> <session_id> IN IP4|IP6 <address>`; the version starts at the id.
    pub fn new(session_id: u64, address: IpAddr) -> LegOrigin {
        LegOrigin::with_username("-", session_id, address)
    }

    /// Session id from the thread-local RNG, kept below 2^62 so versions never overflow.
    pub fn random(address: IpAddr) -> LegOrigin {
        let id = rand::random::<u64>() >> 2;
        LegOrigin::new(id, address)
    }

    /// Origin with a configured username (some carriers want the SBC name there).
    pub fn with_username(username: &str, session_id: u64, address: IpAddr) -> LegOrigin {
        let username = if username.is_empty() || username.contains([' ', '\t', '\r', '\n']) {
            "-"
        } else {
            username
        };
        LegOrigin {
            username: username.to_owned(),
            session_id,
            version: session_id,
            address,
            last_digest: None,
        }
    }

    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// Version of the last SDP stamped (or the initial one).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Writes this leg's `o=` into `sdp` (replacing any `o=` or inserting it after `v=`).
    /// The version is incremented when the rest of `sdp` differs from the previous SDP
    /// stamped on this leg, and kept when it is the same (a refresh re-INVITE, or the 183 and
    /// 200 carrying the same answer).
    pub fn stamp(&mut self, sdp: &mut Sdp) {
        let digest = digest_without_origin(sdp);
        if let Some(last) = self.last_digest {
            if last != digest {
                self.version = self.version.wrapping_add(1);
            }
        }
        self.last_digest = Some(digest);
        let mut value = String::with_capacity(64);
        let kind = if self.address.is_ipv4() { "IP4" } else { "IP6" };
        let _ = write!(
            value,
            "{} {} {} IN {kind} {}",
            self.username, self.session_id, self.version, self.address
        );
        let line = Line::new(b'o', value);
        let session = sdp.session_lines_mut();
        match session.iter_mut().find(|l| l.kind() == b'o') {
            Some(origin) => *origin = line,
            None => {
                let at = usize::from(session.first().is_some_and(|l| l.kind() == b'v'));
                session.insert(at, line);
            }
        }
    }
}

/// FNV-style mix, eight bytes at a time, over every line except `o=`. Not cryptographic: it
/// only has to notice edits of our own output.
fn digest_without_origin(sdp: &Sdp) -> u64 {
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |word: u64| {
        h = (h ^ word).wrapping_mul(PRIME).rotate_left(29);
    };
    for line in sdp.lines().filter(|l| l.kind() != b'o') {
        let bytes = line.value_bytes();
        mix(u64::from(line.kind()) << 32 | bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            mix(u64::from_le_bytes(word));
        }
        let mut tail = [0u8; 8];
        for (slot, byte) in tail.iter_mut().zip(chunks.remainder()) {
            *slot = *byte;
        }
        mix(u64::from_le_bytes(tail));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdp(port: u16) -> Sdp {
        let text = format!(
            "v=0\r\no=carrier 99 99 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0\r\n"
        );
        Sdp::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn version_changes_only_with_content() {
        let mut origin = LegOrigin::new(4001, "203.0.113.10".parse().unwrap());
        let mut first = sdp(1000);
        origin.stamp(&mut first);
        assert_eq!(
            first.origin().unwrap(),
            crate::sdp::Origin {
                username: "-",
                session_id: 4001,
                session_version: 4001,
                address_type: "IP4",
                address: "203.0.113.10"
            }
        );
        let mut same = sdp(1000);
        origin.stamp(&mut same);
        assert_eq!(same.origin().unwrap().session_version, 4001);
        let mut changed = sdp(1002);
        origin.stamp(&mut changed);
        assert_eq!(changed.origin().unwrap().session_version, 4002);
        assert_eq!(changed.origin().unwrap().session_id, 4001);
        assert_eq!(origin.version(), 4002);
    }

    #[test]
    fn inserts_after_version_when_missing() {
        let mut s = Sdp::parse(b"v=0\r\ns=-\r\nt=0 0\r\n").unwrap();
        LegOrigin::with_username("sbc", 7, "2001:db8::1".parse().unwrap()).stamp(&mut s);
        assert_eq!(
            s.to_bytes(),
            b"v=0\r\no=sbc 7 7 IN IP6 2001:db8::1\r\ns=-\r\nt=0 0\r\n".to_vec()
        );
    }
}
