//! Encryption-context parsing: never panics; whatever parses re-serializes to something that
//! parses to the same context.
#![no_main]

use esdk::EncryptionContext;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ec) = EncryptionContext::from_bytes(data) {
        let bytes = ec.to_bytes().unwrap();
        assert_eq!(bytes.len(), data.len());
        assert_eq!(EncryptionContext::from_bytes(&bytes).unwrap(), ec);
    }
});
