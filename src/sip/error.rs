//! Typed parse errors. The server turns one into `400 <reason>` when a response can be built.

/// Why a message was rejected. `reason()` is the 400 reason phrase and the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParseErrorKind {
    /// Fewer bytes than a whole message (stream framing asks for more).
    Incomplete,
    TooLarge,
    TooManyHeaders,
    HeaderLineTooLong,
    BadStartLine,
    BadVersion,
    BadMethod,
    BadRequestUri,
    BadStatusCode,
    BadHeaderLine,
    BadVia,
    BadCSeq,
    BadFromTo,
    BadCallId,
    BadContentLength,
    BadMaxForwards,
    MissingHeader,
    /// CSeq method differs from the request-line method (RFC 3261 §8.2 / RFC 4475 §3.1.2.x).
    CSeqMethodMismatch,
    /// Body shorter or longer than Content-Length.
    BodyLengthMismatch,
    BadEncoding,
}

impl ParseErrorKind {
    /// Short reason phrase used in `400 <reason>` and as the `reason` metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseErrorKind::Incomplete => "Incomplete Message",
            ParseErrorKind::TooLarge => "Message Too Large",
            ParseErrorKind::TooManyHeaders => "Too Many Headers",
            ParseErrorKind::HeaderLineTooLong => "Header Too Long",
            ParseErrorKind::BadStartLine => "Bad Start Line",
            ParseErrorKind::BadVersion => "Bad SIP Version",
            ParseErrorKind::BadMethod => "Bad Method",
            ParseErrorKind::BadRequestUri => "Bad Request-URI",
            ParseErrorKind::BadStatusCode => "Bad Status Code",
            ParseErrorKind::BadHeaderLine => "Bad Header Line",
            ParseErrorKind::BadVia => "Bad Via",
            ParseErrorKind::BadCSeq => "Bad CSeq",
            ParseErrorKind::BadFromTo => "Bad From or To",
            ParseErrorKind::BadCallId => "Bad Call-ID",
            ParseErrorKind::BadContentLength => "Bad Content-Length",
            ParseErrorKind::BadMaxForwards => "Bad Max-Forwards",
            ParseErrorKind::MissingHeader => "Missing Mandatory Header",
            ParseErrorKind::CSeqMethodMismatch => "CSeq Method Mismatch",
            ParseErrorKind::BodyLengthMismatch => "Content-Length Mismatch",
            ParseErrorKind::BadEncoding => "Bad Encoding",
        }
    }

    /// Status the RFC names for this problem (RFC 4475 expectations); 505 for a bad version.
    pub fn status(&self) -> u16 {
        match self {
            ParseErrorKind::BadVersion => 505,
            ParseErrorKind::TooLarge => 513,
            _ => 400,
        }
    }
}

/// A rejected message. When `response` is true the headers needed for a response
/// (Via, From, To, Call-ID, CSeq) were readable and the caller may answer with
/// `ResponseBuilder::error_for_raw`; otherwise the message must be dropped silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub kind: ParseErrorKind,
    /// Byte offset near the problem, for logs.
    pub offset: usize,
    /// A 4xx/5xx response can be built from what was readable.
    pub can_respond: bool,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.kind.reason(), self.offset)
    }
}

impl std::error::Error for ParseError {}
