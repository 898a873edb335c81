//! Typed parse errors. The server turns one into `400 <reason>` when a response can be built.

use std::borrow::Cow;

use super::header::HeaderName;

/// Why a message was rejected. `reason()` is the metric label and the answer's reason
/// phrase (which [`ParseError::response_reason`] extends for bad octets).
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
    /// A Contact value that is not a name-addr, an addr-spec or `*` (RFC 4475 §3.1.2.13).
    BadContact,
    /// A Date that is not an RFC 1123 date in GMT (RFC 4475 §3.1.2.12).
    BadDate,
    MissingHeader,
    /// CSeq method differs from the request-line method (RFC 3261 §8.2 / RFC 4475 §3.1.2.x).
    CSeqMethodMismatch,
    /// Body shorter or longer than Content-Length.
    BodyLengthMismatch,
    /// A control octet where RFC 3261 §25.1 allows none: any C0 but HTAB (CR and LF only as
    /// line ends and folding), DEL, a C1 control in UTF-8.
    ControlCharacter,
    /// Octets that are not UTF-8 (malformed, overlong, surrogates, beyond U+10FFFF) where
    /// RFC 3261 wants UTF-8 text (TEXT-UTF8 in values, quoted strings, reason phrases).
    InvalidUtf8,
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
            ParseErrorKind::BadContact => "Bad Contact",
            ParseErrorKind::BadDate => "Bad Date",
            ParseErrorKind::MissingHeader => "Missing Mandatory Header",
            ParseErrorKind::CSeqMethodMismatch => "CSeq Method Mismatch",
            ParseErrorKind::BodyLengthMismatch => "Content-Length Mismatch",
            ParseErrorKind::ControlCharacter => "Control Character",
            ParseErrorKind::InvalidUtf8 => "Invalid UTF-8",
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
    /// The header whose value holds the problem, where the answer names it (bad octets).
    pub header: Option<HeaderName>,
}

/// Longest extension header name quoted back in a reason phrase; longer ones are not named.
const MAX_NAMED_HEADER: usize = 32;

impl ParseError {
    /// Reason phrase of the answer: [`ParseErrorKind::reason`], except that a bad octet is
    /// answered `Bad Request (control character in Subject)` so the sender can find it. The
    /// metric label stays `kind.reason()` (bounded).
    pub fn response_reason(&self) -> Cow<'static, str> {
        let what = match self.kind {
            ParseErrorKind::ControlCharacter => "control character",
            ParseErrorKind::InvalidUtf8 => "invalid UTF-8",
            _ => return Cow::Borrowed(self.kind.reason()),
        };
        // Header names are tokens (checked by the line splitter), so they are safe to echo.
        let name = match &self.header {
            Some(h) if h.as_str().len() <= MAX_NAMED_HEADER => h.as_str(),
            Some(_) => "an extension header",
            None => "a header",
        };
        Cow::Owned(format!("Bad Request ({what} in {name})"))
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.header {
            Some(h) => write!(
                f,
                "{} in {} at byte {}",
                self.kind.reason(),
                h.as_str(),
                self.offset
            ),
            None => write!(f, "{} at byte {}", self.kind.reason(), self.offset),
        }
    }
}

impl std::error::Error for ParseError {}
