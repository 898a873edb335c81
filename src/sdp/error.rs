//! Typed SDP errors. The call layer turns parse errors into `400`/`488` and rewrite errors
//! (no audio, no common codec, no usable key) into `488 Not Acceptable Here`.

use thiserror::Error;

/// Why an SDP body was rejected or could not be rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SdpError {
    /// The body is larger than `SdpLimits::max_bytes`.
    #[error("SDP body of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    /// More lines than `SdpLimits::max_lines`.
    #[error("SDP has more than {limit} lines")]
    TooManyLines { limit: usize },
    /// More `m=` sections than `SdpLimits::max_media`.
    #[error("SDP has more than {limit} media sections")]
    TooManyMedia { limit: usize },
    /// An `m=` line lists more formats than `SdpLimits::max_formats`.
    #[error("SDP m= line has more than {limit} formats")]
    TooManyFormats { limit: usize },
    /// The first line is not `v=0`.
    #[error("SDP does not start with v=0")]
    MissingVersion,
    /// A line that is not `<letter>=<value>`, or whose value we need but cannot read.
    #[error("SDP line {line}: {reason}")]
    BadLine { line: usize, reason: &'static str },
    /// No `m=audio` section with a non-zero port.
    #[error("SDP has no active audio stream")]
    NoAudio,
    /// The active audio stream has no connection address at media or session level.
    #[error("SDP audio stream has no connection address")]
    MissingConnection,
    /// After filtering, no codec is left that both sides accept.
    #[error("no common codec")]
    NoCommonCodec,
    /// The offer carries no `a=crypto` line with a suite and key we can use.
    #[error("no usable SDES crypto line")]
    NoUsableCrypto,
    /// ICE-lite for media bypass needs an IPv4 media address (one IPv4 host candidate).
    #[error("media bypass needs an IPv4 media address")]
    BypassNeedsIpv4,
}

impl SdpError {
    /// SIP status the call layer should answer an offer with when this error hits it.
    pub fn sip_status(&self) -> u16 {
        match self {
            SdpError::TooLarge { .. } => 413,
            SdpError::TooManyLines { .. }
            | SdpError::TooManyMedia { .. }
            | SdpError::TooManyFormats { .. }
            | SdpError::MissingVersion
            | SdpError::BadLine { .. } => 400,
            SdpError::NoAudio
            | SdpError::MissingConnection
            | SdpError::NoCommonCodec
            | SdpError::NoUsableCrypto => 488,
            // Our configuration, not the peer's SDP, is at fault.
            SdpError::BypassNeedsIpv4 => 500,
        }
    }
}
