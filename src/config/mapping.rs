//! Conversions from [`Config`](super::Config) to the plain settings structs of other modules.

use super::Config;

/// SIP parser limits.
pub fn sip_limits(config: &Config) -> crate::sip::Limits {
    crate::sip::Limits {
        max_message_bytes: config.sip.max_message_bytes,
        max_headers: config.sip.max_headers,
        max_header_line_bytes: config.sip.max_header_line_bytes,
    }
}
