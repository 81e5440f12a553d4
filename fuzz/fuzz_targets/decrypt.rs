//! One-shot decryption of arbitrary bytes with raw AES and raw RSA keys: errors, never panics.
#![no_main]

mod common;

use esdk::Backend;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cmm = common::cmm(Backend::AwsLc);
    let _ = common::client(Backend::AwsLc).decrypt_blocking(&cmm, data, None);
});
