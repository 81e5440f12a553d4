//! The CLI's key and option parsers on arbitrary text: errors, never panics.
#![no_main]

use esdk_cli::keyspec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let attrs: Vec<String> = text.split(' ').map(str::to_owned).collect();
    let _ = keyspec::parse_wrapping_keys(&attrs);
    let _ = keyspec::parse_caching(&attrs);
    let _ = keyspec::parse_context(&attrs);
    let _ = keyspec::parse_raw_aes(text);
    let _ = keyspec::parse_raw_rsa(text);
});
