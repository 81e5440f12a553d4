//! The `tokio::io` adapters (feature `tokio`): the same bytes and the same errors as the
//! `std::io` and one-shot paths for any chunking, the signed-message release rules, the memory
//! bound, readers and writers that are not always ready, and futures that can be spawned.
#![cfg(feature = "tokio")]

use std::pin::Pin;
use std::task::{Context, Poll};

use esdk::{
    AlgorithmSuite, Client, CommitmentPolicy, DefaultCmm, EncryptionContext, Error, ErrorKind, RawAesKeyring,
    SignedMessages,
};
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().unwrap()
}

/// Hands out the input in the given chunk sizes (cycled), `Pending` every other poll.
struct Chunked<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    i: usize,
    pend: bool,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        self.pend = !self.pend;
        if self.pend {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let want = self.sizes[self.i % self.sizes.len()].max(1);
        self.i += 1;
        let n = want.min(buf.remaining()).min(self.data.len());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

/// A sink that takes at most `max` bytes per write and is not ready every other poll.
struct SlowSink {
    data: Vec<u8>,
    max: usize,
    pend: bool,
    /// The largest amount of plaintext the writer under test buffered, seen as the largest
    /// single write it was handed.
    largest_write: usize,
}

impl AsyncWrite for SlowSink {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.pend = !self.pend;
        if self.pend {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.largest_write = self.largest_write.max(buf.len());
        let n = buf.len().min(self.max);
        self.data.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

async fn encrypt(client: &Client, plaintext: &[u8], ec: &EncryptionContext, writes: &[usize], max: usize) -> Vec<u8> {
    let sink = SlowSink { data: Vec::new(), max, pend: false, largest_write: 0 };
    let mut w = client.tokio_encrypting_writer(&cmm(), ec, sink).await.unwrap();
    let mut rest = plaintext;
    let mut i = 0;
    while !rest.is_empty() {
        let n = writes[i % writes.len()].max(1).min(rest.len());
        w.write_all(&rest[..n]).await.unwrap();
        rest = &rest[n..];
        i += 1;
    }
    w.finish().await.unwrap().data
}

async fn decrypt(
    client: &Client,
    message: &[u8],
    reads: &[usize],
    mode: SignedMessages,
) -> (Vec<u8>, Result<(), Error>) {
    let source = Chunked { data: message, sizes: reads.to_vec(), i: 0, pend: false };
    let mut reader = match client.tokio_decrypting_reader(&cmm(), source, None, mode).await {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let mut buf = vec![0u8; reads[i % reads.len()].max(1)];
        i += 1;
        match reader.read(&mut buf).await {
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
    fn tokio_std_and_one_shot_agree_for_any_chunking(
        plaintext in proptest::collection::vec(any::<u8>(), 0..5000),
        frame in prop_oneof![1u32..16, 16u32..700, Just(4096u32)],
        suite in suites(),
        writes in proptest::collection::vec(1usize..3000, 1..6),
        reads in proptest::collection::vec(1usize..3000, 1..6),
        sink_max in 1usize..5000,
    ) {
        let client = client(suite, frame);
        let ec: EncryptionContext = [("k", "v")].into_iter().collect();
        let rt = runtime();
        let streamed = rt.block_on(encrypt(&client, &plaintext, &ec, &writes, sink_max));
        let one_shot = client.encrypt_blocking(&cmm(), &plaintext, &ec).unwrap();
        if !suite.is_signed() {
            prop_assert_eq!(streamed.len(), one_shot.len(), "same layout whichever way it was written");
        }
        for message in [&streamed, &one_shot] {
            prop_assert_eq!(&client.decrypt_blocking(&cmm(), message, None).unwrap().plaintext.to_vec(), &plaintext);
            let (out, res) = rt.block_on(decrypt(&client, message, &reads, SignedMessages::VerifyBeforeRelease));
            prop_assert!(res.is_ok(), "{:?}", res);
            prop_assert_eq!(&out, &plaintext);
        }
    }

    #[test]
    fn truncated_streams_fail_as_on_the_other_paths(
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
        let (_, res) = runtime().block_on(decrypt(&client, &message[..cut], &reads, SignedMessages::VerifyBeforeRelease));
        prop_assert_eq!(one_shot, res.unwrap_err().kind(), "both paths classify a cut at {} alike", cut);
    }
}

#[test]
fn the_writer_buffers_at_most_one_frame_and_finishes_on_shutdown() {
    let client = client(AlgorithmSuite::Aes256GcmHkdfSha512CommitKey, 1000);
    let plaintext = vec![3u8; 100_000];
    let sink = SlowSink { data: Vec::new(), max: usize::MAX, pend: false, largest_write: 0 };
    let sink = runtime().block_on(async {
        let mut w = client.tokio_encrypting_writer(&cmm(), &EncryptionContext::new(), sink).await.unwrap();
        // One write of 100 frames' worth is taken a frame at a time.
        w.write_all(&plaintext).await.unwrap();
        w.shutdown().await.unwrap();
        w.into_inner()
    });
    let frame_on_the_wire = 4 + 12 + 1000 + 16;
    assert!(sink.largest_write <= frame_on_the_wire + 32, "{} bytes handed over in one write", sink.largest_write);
    assert_eq!(client.decrypt_blocking(&cmm(), &sink.data, None).unwrap().plaintext.to_vec(), plaintext);
}

#[test]
fn a_writer_dropped_without_finish_leaves_an_incomplete_message() {
    let client = client(AlgorithmSuite::Aes256GcmHkdfSha512CommitKey, 64);
    let message = runtime().block_on(async {
        let mut sink = Vec::new();
        {
            let mut w = client.tokio_encrypting_writer(&cmm(), &EncryptionContext::new(), &mut sink).await.unwrap();
            w.write_all(&[1u8; 1000]).await.unwrap();
            w.flush().await.unwrap();
        }
        sink
    });
    assert_eq!(client.decrypt_blocking(&cmm(), &message, None).unwrap_err().kind(), ErrorKind::Truncated);
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
    let rt = runtime();
    let (out, res) = rt.block_on(decrypt(&client, &message, &[64], SignedMessages::VerifyBeforeRelease));
    assert_eq!(res.unwrap_err().kind(), ErrorKind::Signature);
    assert!(out.is_empty(), "released {} bytes of an unverified signed message", out.len());
    let (out, res) = rt.block_on(decrypt(&client, &message, &[64], SignedMessages::DangerReleaseFramesBeforeSignature));
    assert_eq!(res.unwrap_err().kind(), ErrorKind::Signature);
    assert_eq!(out.len(), 1000, "the ten regular frames, not the final frame");
    let (_, res) = rt.block_on(decrypt(&client, &message, &[64], SignedMessages::Refuse));
    assert_eq!(res.unwrap_err().kind(), ErrorKind::SignedNotAllowed);
}

#[test]
fn held_plaintext_is_bounded_and_trailing_bytes_are_refused() {
    let (_, message) = signed_message(30);
    let small = Client::builder()
        .suite(AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384)
        .max_buffered_plaintext(1000)
        .build()
        .unwrap();
    let rt = runtime();
    let (out, res) = rt.block_on(decrypt(&small, &message, &[4096], SignedMessages::VerifyBeforeRelease));
    assert_eq!(res.unwrap_err().kind(), ErrorKind::LimitExceeded);
    assert!(out.is_empty());

    let client = client(AlgorithmSuite::Aes256GcmHkdfSha512CommitKey, 64);
    let mut message = client.encrypt_blocking(&cmm(), b"payload", &EncryptionContext::new()).unwrap();
    message.extend_from_slice(b"extra");
    let (_, res) = rt.block_on(decrypt(&client, &message, &[3], SignedMessages::VerifyBeforeRelease));
    assert_eq!(res.unwrap_err().kind(), ErrorKind::TrailingData);
}

#[test]
fn readers_and_writers_are_send_and_run_on_a_multi_thread_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let client = client(AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384, 4096);
    let plaintext: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    let expected = plaintext.clone();
    let out = rt
        .block_on(rt.spawn(async move {
            let mut w = client.tokio_encrypting_writer(&cmm(), &EncryptionContext::new(), Vec::new()).await?;
            w.write_all(&plaintext).await?;
            let message = w.finish().await?;
            let mut r = client.tokio_decrypting_reader(&cmm(), &message[..], None, SignedMessages::default()).await?;
            let mut out = Vec::new();
            r.read_to_end(&mut out).await?;
            assert!(r.is_verified());
            Ok::<_, Error>(out)
        }))
        .unwrap()
        .unwrap();
    assert_eq!(out, expected);
}
