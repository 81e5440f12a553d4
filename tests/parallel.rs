//! Frame-parallel one-shot encryption and decryption agree with the sequential and streaming
//! paths, on plaintext and on the first error.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};

use esdk::{
    AlgorithmSuite, Client, CommitmentPolicy, DefaultCmm, EncryptionContext, Error, ErrorKind, RawAesKeyring,
    SignedMessages,
};

fn cmm() -> DefaultCmm {
    DefaultCmm::new(RawAesKeyring::new("ns", "parallel", &[5u8; 32]).unwrap())
}

fn client(suite: AlgorithmSuite, frame: u32, threads: usize) -> Client {
    let policy = if suite.is_committing() {
        CommitmentPolicy::RequireEncryptRequireDecrypt
    } else {
        CommitmentPolicy::ForbidEncryptAllowDecrypt
    };
    Client::builder().commitment_policy(policy).suite(suite).frame_length(frame).frame_threads(threads).build().unwrap()
}

fn streamed(client: &Client, message: &[u8]) -> Result<Vec<u8>, Error> {
    let mut r = client.decrypting_reader_blocking(&cmm(), message, None, SignedMessages::VerifyBeforeRelease)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(Error::from)?;
    Ok(out)
}

/// Counts the `esdk::parallel` events emitted on the frame pool's threads (`esdk-frames-N`): the
/// proof that helper threads did part of a message.
struct HelperRuns(AtomicUsize);

static HELPER_RUNS: HelperRuns = HelperRuns(AtomicUsize::new(0));

impl tracing::Subscriber for &'static HelperRuns {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        meta.target() == "esdk::parallel"
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {
        if std::thread::current().name().is_some_and(|n| n.starts_with("esdk-frames-")) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// The tests of this file run one at a time: the helper count is process-wide.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn helper_runs() -> usize {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| tracing::subscriber::set_global_default(&HELPER_RUNS).expect("the first subscriber"));
    HELPER_RUNS.0.load(Ordering::Relaxed)
}

fn sequence(e: &Error) -> Option<u32> {
    match e {
        Error::BodyAuthentication { sequence, .. } => Some(*sequence),
        _ => None,
    }
}

/// Helper threads really take frames of a large message (the parallel path is not the calling
/// thread alone under another name); `frame_threads(1)` never uses them.
#[test]
fn helper_threads_run_frames_of_large_messages() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(cores >= 2, "this test needs at least 2 cores to see a helper thread (found {cores})");
    let plaintext = vec![0x11u8; 4 << 20];
    let suite = AlgorithmSuite::Aes256GcmHkdfSha512CommitKey;
    let before = helper_runs();
    let one = client(suite, 4096, 1);
    let message = one.encrypt_blocking(&cmm(), &plaintext, &EncryptionContext::new()).unwrap();
    assert_eq!(one.decrypt_blocking(&cmm(), &message, None).unwrap().plaintext.len(), plaintext.len());
    assert_eq!(helper_runs(), before, "frame_threads(1) used a helper");
    // Helpers are lent only for cores no other caller used in the last milliseconds (other test
    // binaries may run beside this one), so a few messages may go alone; within 100 some must be
    // shared.
    let many = client(suite, 4096, 0);
    let shared = (0..100).find(|_| {
        assert_eq!(many.decrypt_blocking(&cmm(), &message, None).unwrap().plaintext.len(), plaintext.len());
        helper_runs() > before
    });
    assert!(shared.is_some(), "no helper thread ran a frame in 100 decryptions of 4 MiB");
}

#[test]
fn parallel_and_sequential_paths_agree() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let suites = [
        AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
        AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384,
        AlgorithmSuite::Aes128GcmIv12Tag16HkdfSha256,
    ];
    for suite in suites {
        for (size, frame) in [(256 << 10, 4096u32), ((1 << 20) + 17, 1000), (3 << 20, 65536)] {
            let plaintext: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
            let message =
                client(suite, frame, 4).encrypt_blocking(&cmm(), &plaintext, &EncryptionContext::new()).unwrap();
            assert_eq!(
                message.len() as u64,
                client(suite, frame, 4)
                    .ciphertext_len(&esdk::MessageHeader::parse(&message, &Default::default()).unwrap().0, size as u64)
            );
            for threads in [1, 2, 4] {
                let c = client(suite, frame, threads);
                assert_eq!(c.decrypt_blocking(&cmm(), &message, None).unwrap().plaintext.to_vec(), plaintext);
            }
            assert_eq!(streamed(&client(suite, frame, 1), &message).unwrap(), plaintext);
            let sequential =
                client(suite, frame, 1).encrypt_blocking(&cmm(), &plaintext, &EncryptionContext::new()).unwrap();
            assert_eq!(
                client(suite, frame, 4).decrypt_blocking(&cmm(), &sequential, None).unwrap().plaintext.to_vec(),
                plaintext
            );

            // Damage in a middle frame and in the last regular frame: every path names the frame.
            let header_len = esdk::MessageHeader::parse(&message, &Default::default()).unwrap().1;
            let regular = 4 + 12 + frame as usize + 16;
            let frames = (size - 1) / frame as usize;
            for k in [frames / 2, frames - 1] {
                let mut bad = message.clone();
                bad[header_len + k * regular + 20] ^= 0x01;
                let parallel = client(suite, frame, 4).decrypt_blocking(&cmm(), &bad, None).unwrap_err();
                let one = client(suite, frame, 1).decrypt_blocking(&cmm(), &bad, None).unwrap_err();
                let stream = streamed(&client(suite, frame, 1), &bad).unwrap_err();
                assert_eq!(sequence(&parallel), Some(k as u32 + 1), "{parallel}");
                assert_eq!(sequence(&one), sequence(&parallel));
                assert_eq!(sequence(&stream), sequence(&parallel));
            }
            // Damage in the final frame's tag (sealed and opened as a run of its own).
            let final_len = size - frames * frame as usize;
            let mut bad = message.clone();
            bad[header_len + frames * regular + 4 + 4 + 12 + 4 + final_len + 15] ^= 0x80;
            let parallel = client(suite, frame, 4).decrypt_blocking(&cmm(), &bad, None).unwrap_err();
            assert_eq!(sequence(&parallel), Some(frames as u32 + 1), "{parallel}");
            assert_eq!(sequence(&streamed(&client(suite, frame, 1), &bad).unwrap_err()), Some(frames as u32 + 1));
            // A missing frame, and a cut inside a frame.
            let mut dropped = message.clone();
            dropped.drain(header_len + regular..header_len + 2 * regular);
            let e = client(suite, frame, 4).decrypt_blocking(&cmm(), &dropped, None).unwrap_err();
            assert_eq!(sequence(&e), Some(2), "{e}");
            assert_eq!(sequence(&streamed(&client(suite, frame, 1), &dropped).unwrap_err()), Some(2));
            let cut = &message[..header_len + frames / 2 * regular + 7];
            let e = client(suite, frame, 4).decrypt_blocking(&cmm(), cut, None).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Truncated, "{e}");
            assert_eq!(streamed(&client(suite, frame, 1), cut).unwrap_err().kind(), ErrorKind::Truncated);
        }
    }
}
