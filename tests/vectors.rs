//! Runs the official decrypt vectors (directory from `ESDK_TEST_VECTORS`, default
//! `../shared/vectors`) with every crypto backend this build enables, and checks the HKDF
//! known answers published with the commitment KATs.

#[path = "../examples/vectors/runner.rs"]
#[allow(dead_code)]
mod runner;

use esdk_testkit::vectors_dir;

use std::collections::BTreeMap;

use esdk::Backend;

fn run_modes(modes: &[runner::Mode]) {
    let dir = vectors_dir();
    let mut summaries = BTreeMap::new();
    for &backend in Backend::all() {
        for &mode in modes {
            let summary = runner::run_with(&dir, backend, mode, None).expect("manifest loads");
            assert!(summary.passed > 0, "no vectors ran for {} {mode}", backend.name());
            summaries.insert(format!("{} {mode}", backend.name()), summary);
        }
    }
    let report = runner::render(&summaries, false);
    println!("{report}");
    let failed: usize = summaries.values().map(|s| s.failed).sum();
    assert_eq!(failed, 0, "{report}");
    // Every negative is refused at the stage its damage reaches first, or earlier; a later
    // refusal means a check let the damage through.
    let later: usize = summaries.values().map(|s| s.later_than_hinted.len()).sum();
    assert_eq!(later, 0, "{report}");
}

#[test]
fn official_decrypt_vectors_pass_one_shot_on_every_backend() {
    run_modes(&[runner::Mode::OneShot]);
}

/// The same vectors through `DecryptingReader` with 1-byte, 777-byte and 64 KiB reads.
#[test]
fn official_decrypt_vectors_pass_streaming_on_every_backend() {
    run_modes(&[runner::Mode::Streaming(1), runner::Mode::Streaming(777), runner::Mode::Streaming(65536)]);
}

/// The same vectors through `TokioDecryptingReader` (feature `tokio`) with 1-byte, 777-byte and
/// 64 KiB reads, from a source that is not ready every other poll.
#[cfg(feature = "tokio")]
#[test]
fn official_decrypt_vectors_pass_through_tokio_io_on_every_backend() {
    run_modes(&[runner::Mode::Tokio(1), runner::Mode::Tokio(777), runner::Mode::Tokio(65536)]);
}
