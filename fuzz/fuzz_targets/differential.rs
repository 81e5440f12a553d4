//! The aws-lc-rs and RustCrypto backends must agree on every input: same plaintext, or errors of
//! the same kind.
#![no_main]

mod common;

use esdk::Backend;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let a = common::client(Backend::AwsLc).decrypt_blocking(&common::cmm(Backend::AwsLc), data, None);
    let b = common::client(Backend::RustCrypto).decrypt_blocking(&common::cmm(Backend::RustCrypto), data, None);
    match (a, b) {
        (Ok(x), Ok(y)) => assert_eq!(x.plaintext, y.plaintext),
        (Err(x), Err(y)) => assert_eq!(x.kind(), y.kind(), "{x} vs {y}"),
        (x, y) => panic!("backends disagree: {:?} vs {:?}", x.map(|d| d.plaintext.len()), y.map(|d| d.plaintext.len())),
    }
});
