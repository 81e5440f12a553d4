//! Header parsing (keyless inspection): never panics; a parsed header's computed length matches
//! the bytes it was read from.
#![no_main]

use esdk::{HeaderLimits, MessageHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = HeaderLimits::new(Some(64), 256 * 1024);
    if let Ok((header, len)) = MessageHeader::parse(data, &limits) {
        assert_eq!(header.body_len() + header.auth_len(), len);
        assert!(len <= data.len());
    }
});
