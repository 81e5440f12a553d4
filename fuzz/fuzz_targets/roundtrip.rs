//! Encrypt → decrypt with fuzzer-chosen plaintext, context, frame length and suite must round
//! trip exactly, with the predicted size, on both backends.
#![no_main]

mod common;

use arbitrary::Arbitrary;
use esdk::{AlgorithmSuite, Backend, Client, CommitmentPolicy, EncryptionContext};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Case {
    plaintext: Vec<u8>,
    context: Vec<(String, String)>,
    frame_length: u16,
    suite: u8,
    rustcrypto: bool,
}

fuzz_target!(|case: Case| {
    let suite = AlgorithmSuite::ALL[case.suite as usize % AlgorithmSuite::ALL.len()];
    let backend = if case.rustcrypto { Backend::RustCrypto } else { Backend::AwsLc };
    let policy = if suite.is_committing() {
        CommitmentPolicy::RequireEncryptRequireDecrypt
    } else {
        CommitmentPolicy::ForbidEncryptAllowDecrypt
    };
    let client = Client::builder()
        .commitment_policy(policy)
        .suite(suite)
        .frame_length(u32::from(case.frame_length).max(1))
        .backend(backend)
        .build()
        .unwrap();
    let ec: EncryptionContext = case.context.into_iter().collect();
    let cmm = common::cmm(backend);
    let message = match client.encrypt_blocking(&cmm, &case.plaintext, &ec) {
        Ok(m) => m,
        // Reserved or oversized contexts are refused, which is correct.
        Err(e) => {
            assert!(matches!(e.kind(), esdk::ErrorKind::InvalidEncryptionContext), "{e}");
            return;
        }
    };
    let (header, _) = esdk::MessageHeader::parse(&message, &Default::default()).unwrap();
    assert_eq!(message.len() as u64, client.ciphertext_len(&header, case.plaintext.len() as u64));
    let out = client.decrypt_blocking(&cmm, &message, Some(&ec)).unwrap();
    assert_eq!(*out.plaintext, case.plaintext);
});
