//! The parser proper: start line, header index, body.

use bytes::Bytes;

use super::error::ParseError;
use super::message::Message;
use super::Limits;

pub fn parse_message(buf: Bytes, limits: &Limits) -> Result<Message, ParseError> {
    let _ = (buf, limits);
    todo!("sip module")
}
