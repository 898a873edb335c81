//! Transport metrics. Every label value comes from code (transport names, method labels
//! from `sip::Method::metric_label`, status classes, `ParseErrorKind::reason`), never from
//! network input.

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::sip::{Message, Method};

#[derive(Clone)]
pub struct TransportMetrics {
    /// `sip_messages_received_total{transport,kind}`; kind = method label or `1xx`..`6xx`.
    pub messages_received: IntCounterVec,
    /// `sip_messages_sent_total{transport,kind}`.
    pub messages_sent: IntCounterVec,
    /// `sip_parse_errors_total{reason}`.
    pub parse_errors: IntCounterVec,
    /// `tls_handshakes_total{direction=inbound|outbound,result=ok|error|timeout}`.
    pub tls_handshakes: IntCounterVec,
    /// `connections_open{transport}` (tcp, tls).
    pub connections_open: IntGaugeVec,
    /// `connections_refused_total{transport}`: over the per-IP or total limit.
    pub connections_refused: IntCounterVec,
    /// `connections_retired_total{transport}`: connections we opened that reached
    /// `max_connection_age` and take no new requests (row 14).
    pub connections_retired: IntCounterVec,
    /// `sip_inbound_dropped_total`: datagrams dropped because the consumer queue was full.
    pub inbound_dropped: IntCounter,
    /// `sip_unknown_source_dropped_total{transport,stage}`: input from outside
    /// [`TransportSettings::allowed_sources`](super::TransportSettings::allowed_sources)
    /// dropped unanswered; stage = `malformed` (no error response) or `accept` (connection
    /// refused, also counted in `connections_refused_total`).
    pub unknown_source_dropped: IntCounterVec,
}

impl TransportMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<TransportMetrics> {
        let messages_received = IntCounterVec::new(
            Opts::new("sip_messages_received_total", "SIP messages received"),
            &["transport", "kind"],
        )?;
        let messages_sent = IntCounterVec::new(
            Opts::new("sip_messages_sent_total", "SIP messages sent"),
            &["transport", "kind"],
        )?;
        let parse_errors = IntCounterVec::new(
            Opts::new(
                "sip_parse_errors_total",
                "SIP messages rejected by the parser",
            ),
            &["reason"],
        )?;
        let tls_handshakes = IntCounterVec::new(
            Opts::new(
                "tls_handshakes_total",
                "TLS handshakes by direction and result",
            ),
            &["direction", "result"],
        )?;
        let connections_open = IntGaugeVec::new(
            Opts::new("connections_open", "Open SIP stream connections"),
            &["transport"],
        )?;
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "connections_refused_total",
                "Inbound connections refused by connection limits",
            ),
            &["transport"],
        )?;
        let connections_retired = IntCounterVec::new(
            Opts::new(
                "connections_retired_total",
                "Connections we opened retired at their maximum age (new requests open new ones)",
            ),
            &["transport"],
        )?;
        let inbound_dropped = IntCounter::new(
            "sip_inbound_dropped_total",
            "Received SIP messages dropped because the consumer queue was full",
        )?;
        registry.register(Box::new(messages_received.clone()))?;
        registry.register(Box::new(messages_sent.clone()))?;
        registry.register(Box::new(parse_errors.clone()))?;
        registry.register(Box::new(tls_handshakes.clone()))?;
        registry.register(Box::new(connections_open.clone()))?;
        registry.register(Box::new(connections_refused.clone()))?;
        registry.register(Box::new(connections_retired.clone()))?;
        let unknown_source_dropped = IntCounterVec::new(
            Opts::new(
                "sip_unknown_source_dropped_total",
                "Input from a source outside the allowed networks dropped without an answer",
            ),
            &["transport", "stage"],
        )?;
        registry.register(Box::new(inbound_dropped.clone()))?;
        registry.register(Box::new(unknown_source_dropped.clone()))?;
        Ok(TransportMetrics {
            messages_received,
            messages_sent,
            parse_errors,
            tls_handshakes,
            connections_open,
            connections_refused,
            connections_retired,
            inbound_dropped,
            unknown_source_dropped,
        })
    }
}

/// Metric `kind` label of a parsed message.
pub(crate) fn message_kind(message: &Message) -> &'static str {
    match (message.method(), message.status()) {
        (Some(method), _) => method.metric_label(),
        (None, Some(status)) => status_class(status),
        (None, None) => "other",
    }
}

/// Metric `kind` label of outgoing wire bytes, read from the start line without a full parse.
pub(crate) fn wire_kind(bytes: &[u8]) -> &'static str {
    if let Some(rest) = bytes.strip_prefix(b"SIP/2.0 ") {
        let digits = rest.get(..3).unwrap_or_default();
        if digits.iter().all(u8::is_ascii_digit) && digits.len() == 3 {
            let status = digits
                .iter()
                .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
            return status_class(status);
        }
        return "other";
    }
    let token_end = bytes.iter().position(|b| *b == b' ').unwrap_or(0);
    if token_end == 0 {
        return "other";
    }
    Method::from_token(&bytes[..token_end]).metric_label()
}

fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        6 => "6xx",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_kind_labels() {
        assert_eq!(wire_kind(b"INVITE sip:a@b SIP/2.0\r\n"), "INVITE");
        assert_eq!(wire_kind(b"FOO sip:a@b SIP/2.0\r\n"), "OTHER");
        assert_eq!(wire_kind(b"SIP/2.0 180 Ringing\r\n"), "1xx");
        assert_eq!(wire_kind(b"SIP/2.0 603 Decline\r\n"), "6xx");
        assert_eq!(wire_kind(b"SIP/2.0 99"), "other");
        assert_eq!(wire_kind(b"SIP/2.0 999 x"), "other");
        assert_eq!(wire_kind(b""), "other");
        assert_eq!(wire_kind(b" x"), "other");
    }

    #[test]
    fn registers_in_a_fresh_registry() {
        let registry = Registry::new();
        let m = TransportMetrics::register(&registry).unwrap();
        m.messages_received
            .with_label_values(&["udp", "INVITE"])
            .inc();
        assert!(registry
            .gather()
            .iter()
            .any(|f| f.name() == "sip_messages_received_total"));
        assert!(
            TransportMetrics::register(&registry).is_err(),
            "duplicate names refused"
        );
    }
}
