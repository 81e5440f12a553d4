//! Streaming decryption with fuzzer-chosen read sizes must agree with one-shot decryption:
//! same plaintext on success, failure on both sides otherwise.
#![no_main]

mod common;

use std::io::Read;

use esdk::{Backend, SignedMessages};
use libfuzzer_sys::fuzz_target;

struct Chunked<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    i: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = if self.sizes.is_empty() { 4096 } else { self.sizes[self.i % self.sizes.len()] as usize + 1 };
        self.i += 1;
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&n, rest)) = input.split_first() else { return };
    let (sizes, message) = rest.split_at((n as usize % 8).min(rest.len()));
    let cmm = common::cmm(Backend::AwsLc);
    let client = common::client(Backend::AwsLc);
    let one_shot = client.decrypt_blocking(&cmm, message, None);
    let streamed = client
        .decrypting_reader_blocking(
            &cmm,
            Chunked { data: message, sizes, i: 0 },
            None,
            SignedMessages::VerifyBeforeRelease,
        )
        .and_then(|mut r| {
            let mut out = Vec::new();
            r.read_to_end(&mut out).map_err(esdk::Error::from)?;
            Ok(out)
        });
    match (one_shot, streamed) {
        (Ok(a), Ok(b)) => assert_eq!(*a.plaintext, b),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("one-shot {:?} vs streaming {:?}", a.map(|d| d.plaintext.len()), b.map(|p| p.len())),
    }
});
