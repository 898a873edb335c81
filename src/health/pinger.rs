//! Per-peer OPTIONS keep-alive state machine (Teams checklist rows 33 and 59). No I/O: the
//! driver asks for a ping when [`OptionsPinger::poll_timeout`] is reached and reports what
//! became of it.

use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{uri_host, HealthMetrics, SbcIdentity, SipTransport};
use crate::sip::{HeaderName, Method, RequestBuilder};
use crate::transaction::{new_branch, new_tag};

/// Microsoft expects OPTIONS from the SBC no more often than every 60 s and no less often than
/// every 180 s (row 33).
pub const TEAMS_OPTIONS_INTERVAL: RangeInclusive<Duration> =
    Duration::from_secs(60)..=Duration::from_secs(180);

/// A peer we ping: a Teams proxy FQDN (sip/sip2/sip3.pstnhub.microsoft.com) or a carrier trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTarget {
    /// Configured name; the `peer` metric label.
    pub name: String,
    /// FQDN (re-resolved every round, row 8) or IP literal.
    pub host: String,
    pub port: u16,
    pub transport: SipTransport,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingerSettings {
    /// Time between pings. Default 60 s; must lie in [`TEAMS_OPTIONS_INTERVAL`] for Teams.
    pub interval: Duration,
    /// Failed pings in a row before an up peer is marked down. Default 1.
    pub failures_before_down: u32,
}

impl Default for PingerSettings {
    fn default() -> Self {
        PingerSettings {
            interval: Duration::from_secs(60),
            failures_before_down: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// No ping has completed yet.
    Unknown,
    Up,
    Down,
}

/// What the rest of the SBC sees of a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerHealth {
    pub state: PeerState,
    /// Status of the last response (any final response means the peer is alive; a 4xx/5xx is
    /// kept here for operators).
    pub last_status: Option<u16>,
    /// When `state` last changed.
    pub last_change: Option<Instant>,
    /// When the last response arrived.
    pub last_response: Option<Instant>,
    pub consecutive_failures: u32,
}

impl PeerHealth {
    pub fn is_up(&self) -> bool {
        self.state == PeerState::Up
    }
}

/// One OPTIONS request to send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionsPing {
    pub call_id: String,
    pub branch: String,
    pub cseq: u32,
    pub from_tag: String,
    /// The whole request, ready for the transaction layer.
    pub bytes: Bytes,
}

/// What became of a ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingOutcome {
    /// A final response (100-199 are not final and are ignored).
    Response(u16),
    /// The client transaction timed out (Timer F).
    Timeout,
    /// Could not connect or send (TCP/TLS connect failure, ICMP error).
    TransportFailure,
    /// The host did not resolve.
    ResolveFailure,
}

pub struct OptionsPinger {
    peer: PeerTarget,
    local: SbcIdentity,
    settings: PingerSettings,
    metrics: HealthMetrics,
    health: PeerHealth,
    next_ping: Instant,
    cseq: u32,
    outstanding: Option<String>,
}

impl OptionsPinger {
    /// The first ping is due at `now`.
    pub fn new(
        peer: PeerTarget,
        local: SbcIdentity,
        settings: PingerSettings,
        metrics: HealthMetrics,
        now: Instant,
    ) -> Self {
        metrics.peer_up.with_label_values(&[&peer.name]).set(0);
        metrics.failures.with_label_values(&[&peer.name]);
        OptionsPinger {
            peer,
            local,
            settings,
            metrics,
            health: PeerHealth {
                state: PeerState::Unknown,
                last_status: None,
                last_change: None,
                last_response: None,
                consecutive_failures: 0,
            },
            next_ping: now,
            cseq: 0,
            outstanding: None,
        }
    }

    pub fn peer(&self) -> &PeerTarget {
        &self.peer
    }

    pub fn health(&self) -> &PeerHealth {
        &self.health
    }

    /// When the next ping is due.
    pub fn poll_timeout(&self) -> Instant {
        self.next_ping
    }

    /// A new OPTIONS when one is due (fresh Call-ID, branch and From tag; CSeq + 1), else
    /// `None`. A ping still outstanding when the next is due counts as failed.
    pub fn poll_ping(&mut self, now: Instant) -> Option<OptionsPing> {
        if now < self.next_ping {
            return None;
        }
        if let Some(stale) = self.outstanding.clone() {
            self.on_outcome(now, &stale, PingOutcome::Timeout);
        }
        let after_due = self.next_ping + self.settings.interval;
        self.next_ping = if after_due > now {
            after_due
        } else {
            now + self.settings.interval
        };
        self.cseq = self.cseq.wrapping_add(1).max(1);
        let call_id = format!("{}@{}", new_tag(), self.local.fqdn);
        let ping = self.build(call_id, self.cseq, new_tag());
        self.outstanding = Some(ping.call_id.clone());
        self.metrics.sent.inc();
        Some(ping)
    }

    /// Report the outcome of the ping with `call_id`. Outcomes of older pings are ignored.
    /// Returns true when the peer's state changed.
    pub fn on_outcome(&mut self, now: Instant, call_id: &str, outcome: PingOutcome) -> bool {
        if self.outstanding.as_deref() != Some(call_id) {
            return false;
        }
        let before = self.health.state;
        match outcome {
            PingOutcome::Response(status) if status < 200 => return false,
            PingOutcome::Response(status) => {
                self.health.last_status = Some(status);
                self.health.last_response = Some(now);
                self.health.consecutive_failures = 0;
                self.health.state = PeerState::Up;
            }
            PingOutcome::Timeout | PingOutcome::TransportFailure | PingOutcome::ResolveFailure => {
                self.metrics
                    .failures
                    .with_label_values(&[&self.peer.name])
                    .inc();
                self.health.consecutive_failures =
                    self.health.consecutive_failures.saturating_add(1);
                let limit = self.settings.failures_before_down.max(1);
                if before != PeerState::Up || self.health.consecutive_failures >= limit {
                    self.health.state = PeerState::Down;
                }
            }
        }
        self.outstanding = None;
        let changed = before != self.health.state;
        if changed {
            self.health.last_change = Some(now);
            let up = i64::from(self.health.state == PeerState::Up);
            self.metrics
                .peer_up
                .with_label_values(&[&self.peer.name])
                .set(up);
        }
        changed
    }

    /// The same ping (Call-ID, CSeq, From tag) with a new branch, for sending it to the next
    /// address of the peer after the first could not be reached (a new client transaction).
    pub fn retry(&self, ping: &OptionsPing) -> OptionsPing {
        self.build(ping.call_id.clone(), ping.cseq, ping.from_tag.clone())
    }

    fn build(&self, call_id: String, cseq: u32, from_tag: String) -> OptionsPing {
        let local = &self.local;
        let peer_host = uri_host(&self.peer.host);
        let branch = new_branch();
        let request_uri = format!(
            "sip:{}:{};transport={}",
            peer_host,
            self.peer.port,
            self.peer.transport.uri_param()
        );
        let rport = if self.peer.transport == SipTransport::Udp {
            ";rport"
        } else {
            ""
        };
        let via = format!(
            "SIP/2.0/{} {}:{};branch={}{}",
            self.peer.transport.via_token(),
            uri_host(&local.fqdn),
            local.port,
            branch,
            rport
        );
        let from = format!("<{}>;tag={}", local.uri(), from_tag);
        let to = format!("<sip:{}:{}>", peer_host, self.peer.port);
        let contact = local.contact();
        let builder = RequestBuilder::new(&Method::Options, request_uri.as_bytes())
            .header(&HeaderName::Via, via.as_bytes())
            .header(&HeaderName::MaxForwards, b"70")
            .header(&HeaderName::From, from.as_bytes())
            .header(&HeaderName::To, to.as_bytes())
            .header(&HeaderName::CallId, call_id.as_bytes())
            .header(&HeaderName::CSeq, format!("{cseq} OPTIONS").as_bytes())
            .header(&HeaderName::Contact, contact.as_bytes());
        let bytes = local.product.to_request(builder).build();
        OptionsPing {
            call_id,
            branch,
            cseq,
            from_tag,
            bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use prometheus::Registry;

    use super::*;
    use crate::sip::{Limits, Message};

    const T: Duration = Duration::from_secs(60);

    struct Harness {
        pinger: OptionsPinger,
        metrics: HealthMetrics,
        t0: Instant,
    }

    fn harness(settings: PingerSettings) -> Harness {
        let metrics = HealthMetrics::register(&Registry::new()).unwrap();
        let t0 = Instant::now();
        let pinger = OptionsPinger::new(
            PeerTarget {
                name: "teams-sip2".to_string(),
                host: "sip2.pstnhub.microsoft.com".to_string(),
                port: 5061,
                transport: SipTransport::Tls,
            },
            SbcIdentity {
                fqdn: "sbc1.example.net".to_string(),
                port: 5068,
                transport: SipTransport::Tls,
                product: crate::health::ProductHeaders::microsoft(
                    "ExampleCorp",
                    "RustSBC",
                    "0.1.0",
                ),
            },
            settings,
            metrics.clone(),
            t0,
        );
        Harness {
            pinger,
            metrics,
            t0,
        }
    }

    fn parse(ping: &OptionsPing) -> Message {
        Message::parse(ping.bytes.clone(), &Limits::default()).unwrap()
    }

    fn header(msg: &Message, name: HeaderName) -> String {
        String::from_utf8_lossy(&msg.header(&name).unwrap()).to_string()
    }

    #[test]
    fn row33_default_interval_is_60s_and_within_the_teams_window() {
        assert_eq!(PingerSettings::default().interval, Duration::from_secs(60));
        assert!(TEAMS_OPTIONS_INTERVAL.contains(&PingerSettings::default().interval));
    }

    #[test]
    fn row33_pings_follow_the_interval_schedule() {
        let mut h = harness(PingerSettings::default());
        let t0 = h.t0;
        assert_eq!(h.pinger.poll_timeout(), t0, "first ping at once");
        let first = h.pinger.poll_ping(t0).unwrap();
        assert_eq!(h.pinger.poll_timeout(), t0 + T);
        assert_eq!(h.pinger.poll_ping(t0 + T - Duration::from_millis(1)), None);
        h.pinger.on_outcome(
            t0 + Duration::from_millis(80),
            &first.call_id,
            PingOutcome::Response(200),
        );
        let second = h.pinger.poll_ping(t0 + T).unwrap();
        assert_eq!(
            h.pinger.poll_timeout(),
            t0 + 2 * T,
            "cadence kept, no drift"
        );
        // A late driver (woke 5 s late) keeps the next ping on the grid.
        h.pinger
            .on_outcome(t0 + T, &second.call_id, PingOutcome::Response(200));
        assert!(h
            .pinger
            .poll_ping(t0 + 2 * T + Duration::from_secs(5))
            .is_some());
        assert_eq!(h.pinger.poll_timeout(), t0 + 3 * T);
        // A driver asleep for more than an interval restarts the grid from now.
        let late = t0 + 10 * T;
        assert!(h.pinger.poll_ping(late).is_some());
        assert_eq!(h.pinger.poll_timeout(), late + T);
        assert_eq!(h.metrics.sent.get(), 4);
    }

    #[test]
    fn row33_row59_options_request_headers() {
        let mut h = harness(PingerSettings::default());
        let ping = h.pinger.poll_ping(h.t0).unwrap();
        let msg = parse(&ping);
        assert_eq!(msg.method(), Some(&Method::Options));
        assert_eq!(
            msg.request_uri().unwrap().raw().as_ref(),
            b"sip:sip2.pstnhub.microsoft.com:5061;transport=tls"
        );
        assert_eq!(msg.max_forwards(), Some(70));
        let via = msg.top_via().unwrap();
        assert_eq!(via.transport.as_ref(), b"TLS");
        assert_eq!(via.host.as_ref(), b"sbc1.example.net");
        assert_eq!(via.port, Some(5068));
        assert!(via.has_rfc3261_branch());
        assert_eq!(via.branch.as_deref(), Some(ping.branch.as_bytes()));
        let from = msg.from().unwrap();
        assert_eq!(from.uri.raw().as_ref(), b"sip:sbc1.example.net:5068");
        assert!(from.tag.is_some());
        let to = msg.to().unwrap();
        assert_eq!(
            to.uri.raw().as_ref(),
            b"sip:sip2.pstnhub.microsoft.com:5061"
        );
        assert_eq!(to.tag, None);
        assert_eq!(
            header(&msg, HeaderName::Contact),
            "<sip:sbc1.example.net:5068;transport=tls>",
            "Contact = base FQDN, never an IP (row 33)"
        );
        assert_eq!(
            header(&msg, HeaderName::XMsSbc),
            "ExampleCorp/RustSBC/0.1.0"
        );
        assert!(
            msg.header(&HeaderName::UserAgent).is_none(),
            "no version beyond X-MS-SBC"
        );
        let cseq = msg.cseq().unwrap();
        assert_eq!((cseq.seq, cseq.method), (1, Method::Options));
        assert_eq!(msg.call_id().as_deref(), Some(ping.call_id.as_bytes()));
        assert!(ping.call_id.ends_with("@sbc1.example.net"));
        assert_eq!(msg.content_length(), Some(0));
    }

    #[test]
    fn each_ping_has_fresh_call_id_branch_and_from_tag_and_the_next_cseq() {
        let mut h = harness(PingerSettings::default());
        let mut call_ids = HashSet::new();
        let mut branches = HashSet::new();
        let mut from_tags = HashSet::new();
        for round in 0..5u32 {
            let ping = h.pinger.poll_ping(h.t0 + T * round).unwrap();
            let msg = parse(&ping);
            assert_eq!(msg.cseq().unwrap().seq, round + 1);
            assert_eq!(ping.cseq, round + 1);
            call_ids.insert(ping.call_id.clone());
            branches.insert(ping.branch.clone());
            from_tags.insert(msg.from().unwrap().tag.unwrap());
            h.pinger
                .on_outcome(h.t0 + T * round, &ping.call_id, PingOutcome::Response(200));
        }
        assert_eq!((call_ids.len(), branches.len(), from_tags.len()), (5, 5, 5));
    }

    #[test]
    fn up_on_any_final_response_down_on_timeout_or_transport_failure() {
        let mut h = harness(PingerSettings::default());
        let t0 = h.t0;
        let up = || vec!["teams-sip2"];
        assert_eq!(h.pinger.health().state, PeerState::Unknown);
        assert_eq!(h.metrics.peer_up.with_label_values(&up()).get(), 0);

        let p = h.pinger.poll_ping(t0).unwrap();
        assert!(
            !h.pinger
                .on_outcome(t0, &p.call_id, PingOutcome::Response(100)),
            "1xx is not final"
        );
        assert!(h.pinger.on_outcome(
            t0 + Duration::from_secs(1),
            &p.call_id,
            PingOutcome::Response(200)
        ));
        assert_eq!(h.pinger.health().state, PeerState::Up);
        assert_eq!(
            h.pinger.health().last_change,
            Some(t0 + Duration::from_secs(1))
        );
        assert_eq!(h.metrics.peer_up.with_label_values(&up()).get(), 1);

        let p = h.pinger.poll_ping(t0 + T).unwrap();
        assert!(h.pinger.on_outcome(
            t0 + T + Duration::from_secs(32),
            &p.call_id,
            PingOutcome::Timeout
        ));
        let health = h.pinger.health().clone();
        assert_eq!(health.state, PeerState::Down);
        assert_eq!(health.last_change, Some(t0 + T + Duration::from_secs(32)));
        assert_eq!(health.last_status, Some(200), "last status kept");
        assert_eq!(h.metrics.peer_up.with_label_values(&up()).get(), 0);
        assert_eq!(h.metrics.failures.with_label_values(&up()).get(), 1);

        let p = h.pinger.poll_ping(t0 + 2 * T).unwrap();
        assert!(
            !h.pinger
                .on_outcome(t0 + 2 * T, &p.call_id, PingOutcome::TransportFailure),
            "still down"
        );
        assert_eq!(h.pinger.health().consecutive_failures, 2);
        assert_eq!(
            h.pinger.health().last_change,
            Some(t0 + T + Duration::from_secs(32))
        );

        // A 503 still proves the peer is reachable; its status is recorded.
        let p = h.pinger.poll_ping(t0 + 3 * T).unwrap();
        assert!(h
            .pinger
            .on_outcome(t0 + 3 * T, &p.call_id, PingOutcome::Response(503)));
        assert_eq!(h.pinger.health().state, PeerState::Up);
        assert_eq!(h.pinger.health().last_status, Some(503));
        assert_eq!(h.pinger.health().consecutive_failures, 0);
        assert_eq!(h.metrics.failures.with_label_values(&up()).get(), 2);
    }

    #[test]
    fn retry_keeps_the_request_but_takes_a_new_branch() {
        let mut h = harness(PingerSettings::default());
        let ping = h.pinger.poll_ping(h.t0).unwrap();
        let again = h.pinger.retry(&ping);
        assert_eq!(
            (&again.call_id, again.cseq, &again.from_tag),
            (&ping.call_id, ping.cseq, &ping.from_tag)
        );
        assert_ne!(again.branch, ping.branch);
        let msg = parse(&again);
        assert_eq!(
            msg.top_via().unwrap().branch.as_deref(),
            Some(again.branch.as_bytes())
        );
        assert_eq!(
            msg.from().unwrap().tag.as_deref(),
            Some(ping.from_tag.as_bytes())
        );
        assert!(h
            .pinger
            .on_outcome(h.t0, &again.call_id, PingOutcome::Response(200)));
    }

    #[test]
    fn failures_before_down_gives_hysteresis() {
        let mut h = harness(PingerSettings {
            interval: T,
            failures_before_down: 2,
        });
        let t0 = h.t0;
        let p = h.pinger.poll_ping(t0).unwrap();
        h.pinger
            .on_outcome(t0, &p.call_id, PingOutcome::Response(200));
        let p = h.pinger.poll_ping(t0 + T).unwrap();
        assert!(!h
            .pinger
            .on_outcome(t0 + T, &p.call_id, PingOutcome::Timeout));
        assert_eq!(h.pinger.health().state, PeerState::Up);
        let p = h.pinger.poll_ping(t0 + 2 * T).unwrap();
        assert!(h
            .pinger
            .on_outcome(t0 + 2 * T, &p.call_id, PingOutcome::Timeout));
        assert_eq!(h.pinger.health().state, PeerState::Down);
    }

    #[test]
    fn stale_outcomes_are_ignored_and_an_unanswered_ping_counts_as_failed() {
        let mut h = harness(PingerSettings::default());
        let t0 = h.t0;
        let first = h.pinger.poll_ping(t0).unwrap();
        // No outcome reported before the next ping is due: the first counts as timed out.
        let second = h.pinger.poll_ping(t0 + T).unwrap();
        assert_eq!(h.pinger.health().state, PeerState::Down);
        assert!(!h
            .pinger
            .on_outcome(t0 + T, &first.call_id, PingOutcome::Response(200)));
        assert_eq!(
            h.pinger.health().state,
            PeerState::Down,
            "late answer to an old ping ignored"
        );
        assert!(h
            .pinger
            .on_outcome(t0 + T, &second.call_id, PingOutcome::Response(200)));
        assert!(
            !h.pinger
                .on_outcome(t0 + T, &second.call_id, PingOutcome::Timeout),
            "one outcome per ping"
        );
        assert_eq!(h.pinger.health().state, PeerState::Up);
    }

    #[test]
    fn udp_peer_gets_rport_and_ipv6_hosts_get_brackets() {
        let metrics = HealthMetrics::register(&Registry::new()).unwrap();
        let now = Instant::now();
        let mut pinger = OptionsPinger::new(
            PeerTarget {
                name: "carrier-a".to_string(),
                host: "2001:db8::10".to_string(),
                port: 5060,
                transport: SipTransport::Udp,
            },
            SbcIdentity {
                fqdn: "sbc1.example.net".to_string(),
                port: 5060,
                transport: SipTransport::Udp,
                product: crate::health::ProductHeaders::microsoft("V", "M", "1"),
            },
            PingerSettings::default(),
            metrics,
            now,
        );
        let msg = parse(&pinger.poll_ping(now).unwrap());
        assert_eq!(
            msg.request_uri().unwrap().raw().as_ref(),
            b"sip:[2001:db8::10]:5060;transport=udp"
        );
        let via = msg.top_via().unwrap();
        assert_eq!(via.transport.as_ref(), b"UDP");
        assert!(via.rport.is_some());
        assert_eq!(
            header(&msg, HeaderName::Contact),
            "<sip:sbc1.example.net:5060;transport=udp>"
        );
    }
}
