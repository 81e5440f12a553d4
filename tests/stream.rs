//! Streaming encryption and decryption: agreement with the one-shot path for any chunking,
//! truncation, trailing data, and the release rules for signed messages.

use std::io::{Read, Write};

use esdk::{
    AlgorithmSuite, Client, CommitmentPolicy, DefaultCmm, EncryptionContext, Error, ErrorKind, RawAesKeyring,
    SignedMessages,
};
use proptest::prelude::*;

fn cmm() -> DefaultCmm {
    DefaultCmm::new(RawAesKeyring::new("ns", "stream-key", &[9u8; 32]).unwrap())
}

fn client(suite: AlgorithmSuite, frame: u32) -> Client {
    let policy = if suite.is_committing() {
        CommitmentPolicy::RequireEncryptRequireDecrypt
    } else {
        CommitmentPolicy::ForbidEncryptAllowDecrypt
    };
    Client::builder().commitment_policy(policy).suite(suite).frame_length(frame).build().unwrap()
}

/// Hands out the input in the given chunk sizes (cycled).
struct Chunked<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    i: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = self.sizes[self.i % self.sizes.len()].max(1);
        self.i += 1;
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn stream_encrypt(client: &Client, plaintext: &[u8], ec: &EncryptionContext, writes: &[usize]) -> Vec<u8> {
    let mut w = client.encrypting_writer_blocking(&cmm(), ec, Vec::new()).unwrap();
    let mut rest = plaintext;
    let mut i = 0;
    while !rest.is_empty() {
        let n = writes[i % writes.len()].max(1).min(rest.len());
        w.write_all(&rest[..n]).unwrap();
        rest = &rest[n..];
        i += 1;
    }
    w.finish().unwrap()
}

fn stream_decrypt(
    client: &Client,
    message: &[u8],
    reads: &[usize],
    mode: SignedMessages,
) -> (Vec<u8>, Result<(), Error>) {
    let source = Chunked { data: message, sizes: reads.to_vec(), i: 0 };
    let mut reader = match client.decrypting_reader_blocking(&cmm(), source, None, mode) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let mut buf = vec![0u8; reads[i % reads.len()].max(1)];
        i += 1;
        match reader.read(&mut buf) {
            Ok(0) => return (out, Ok(())),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Err(e.into())),
        }
    }
}

fn suites() -> impl Strategy<Value = AlgorithmSuite> {
    proptest::sample::select(AlgorithmSuite::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn streaming_and_one_shot_agree_for_any_chunking(
        plaintext in proptest::collection::vec(any::<u8>(), 0..5000),
        frame in prop_oneof![1u32..16, 16u32..700, Just(4096u32)],
        suite in suites(),
        writes in proptest::collection::vec(1usize..3000, 1..6),
        reads in proptest::collection::vec(1usize..3000, 1..6),
    ) {
        let client = client(suite, frame);
        let ec: EncryptionContext = [("k", "v")].into_iter().collect();
        let streamed = stream_encrypt(&client, &plaintext, &ec, &writes);
        let one_shot = client.encrypt_blocking(&cmm(), &plaintext, &ec).unwrap();
        if !suite.is_signed() {
            prop_assert_eq!(streamed.len(), one_shot.len(), "same layout whichever way it was written");
        }
        // Every message decrypts to the plaintext both ways.
        for message in [&streamed, &one_shot] {
            prop_assert_eq!(&client.decrypt_blocking(&cmm(), message, None).unwrap().plaintext.to_vec(), &plaintext);
            let (out, res) = stream_decrypt(&client, message, &reads, SignedMessages::VerifyBeforeRelease);
            prop_assert!(res.is_ok(), "{:?}", res);
            prop_assert_eq!(&out, &plaintext);
        }
    }

    #[test]
    fn truncated_streams_never_read_as_complete(
        plaintext in proptest::collection::vec(any::<u8>(), 0..800),
        frame in 1u32..100,
        suite in suites(),
        cut in any::<prop::sample::Index>(),
        reads in proptest::collection::vec(1usize..200, 1..4),
    ) {
        let client = client(suite, frame);
        let message = client.encrypt_blocking(&cmm(), &plaintext, &EncryptionContext::new()).unwrap();
        let cut = cut.index(message.len());
        let one_shot = client.decrypt_blocking(&cmm(), &message[..cut], None).unwrap_err().kind();
        let (_, res) = stream_decrypt(&client, &message[..cut], &reads, SignedMessages::VerifyBeforeRelease);
        let streamed = res.unwrap_err().kind();
        prop_assert_eq!(one_shot, streamed, "both paths classify a cut at {} alike", cut);
        prop_assert_eq!(streamed, ErrorKind::Truncated);
    }
}

#[test]
fn a_writer_dropped_without_finish_leaves_an_incomplete_message() {
    let client = client(AlgorithmSuite::Aes256GcmHkdfSha512CommitKey, 64);
    let mut sink = Vec::new();
    {
        let mut w = client.encrypting_writer_blocking(&cmm(), &EncryptionContext::new(), &mut sink).unwrap();
        w.write_all(&[1u8; 1000]).unwrap();
    }
    let err = client.decrypt_blocking(&cmm(), &sink, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Truncated, "{err}");
}

fn signed_message(frames: usize) -> (Client, Vec<u8>) {
    let client = client(AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384, 100);
    let message = client.encrypt_blocking(&cmm(), &vec![7u8; 100 * frames + 50], &EncryptionContext::new()).unwrap();
    (client, message)
}

#[test]
fn signed_messages_release_nothing_before_the_signature_verifies() {
    let (client, mut message) = signed_message(10);
    let last = message.len() - 1;
    message[last] ^= 1;
    let (out, res) = stream_decrypt(&client, &message, &[64], SignedMessages::VerifyBeforeRelease);
    assert_eq!(res.unwrap_err().kind(), ErrorKind::Signature);
    assert!(out.is_empty(), "released {} bytes of an unverified signed message", out.len());

    // The explicitly dangerous mode releases authenticated regular frames, never the final one.
    let (out, res) = stream_decrypt(&client, &message, &[64], SignedMessages::DangerReleaseFramesBeforeSignature);
    assert_eq!(res.unwrap_err().kind(), ErrorKind::Signature);
    assert_eq!(out.len(), 1000, "the ten regular frames, not the final frame");
}

#[test]
fn unsigned_only_refuses_signed_messages_after_the_header() {
    let (client, message) = signed_message(1);
    let err = client.decrypting_reader_blocking(&cmm(), &message[..], None, SignedMessages::Refuse).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::SignedNotAllowed);
}

#[test]
fn held_plaintext_is_bounded() {
    let (_, message) = signed_message(30);
    let small = Client::builder()
        .suite(AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384)
        .max_buffered_plaintext(1000)
        .build()
        .unwrap();
    let (out, res) = stream_decrypt(&small, &message, &[4096], SignedMessages::VerifyBeforeRelease);
    assert_eq!(res.unwrap_err().kind(), ErrorKind::LimitExceeded);
    assert!(out.is_empty());
}

#[test]
fn trailing_bytes_after_the_message_are_an_error() {
    let client = client(AlgorithmSuite::Aes256GcmHkdfSha512CommitKey, 64);
    let mut message = client.encrypt_blocking(&cmm(), b"payload", &EncryptionContext::new()).unwrap();
    message.extend_from_slice(b"extra");
    let (_, res) = stream_decrypt(&client, &message, &[3], SignedMessages::VerifyBeforeRelease);
    assert_eq!(res.unwrap_err().kind(), ErrorKind::TrailingData);
}

#[test]
fn a_huge_frame_length_is_refused_before_buffering() {
    let client = Client::builder().max_frame_length(1 << 20).build().unwrap();
    let big = Client::builder()
        .suite(AlgorithmSuite::Aes256GcmHkdfSha512CommitKey)
        .frame_length(u32::MAX)
        .max_frame_length(u32::MAX)
        .build()
        .unwrap();
    let message = big.encrypt_blocking(&cmm(), b"tiny", &EncryptionContext::new()).unwrap();
    let err = client.decrypting_reader_blocking(&cmm(), &message[..], None, SignedMessages::Refuse).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::LimitExceeded);
    // A header announcing 4 GiB frames but followed by an endless stream of bytes: refused, not buffered.
    assert_eq!(client.decrypt_blocking(&cmm(), &message, None).unwrap_err().kind(), ErrorKind::LimitExceeded);
}
