//! The ESDK message format: one bounded codec shared by every encrypt and decrypt path
//! (spec `data-format/message.md`).

pub mod body;
pub(crate) mod codec;
pub(crate) mod footer;
pub mod header;

pub use body::framed_body_len;
pub use header::{ContentType, HeaderLimits, MessageHeader};
