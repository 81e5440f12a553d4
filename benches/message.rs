//! Encrypt and decrypt throughput for suites 0x0478 and 0x0578 at 64 B .. 1 MiB, on the raw
//! keyring path and the cached-materials path, beside the primitive floor (the same AWS-LC
//! operations without the message format) and bare AES-GCM, in one criterion group per size so
//! the ratios are visible in one report.
//!
//! `cargo bench --bench message` (add `-- 0478/1024` to filter).

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use esdk::{
    AlgorithmSuite, CachingCmm, Client, DefaultCmm, EncryptionContext, LocalCache, MaterialsManager, RawAesKeyring,
};

#[path = "floor.rs"]
mod floor;

const SIZES: [usize; 5] = [64, 1024, 16 * 1024, 256 * 1024, 1024 * 1024];

fn bench(c: &mut Criterion) {
    let raw: Arc<dyn MaterialsManager> =
        Arc::new(DefaultCmm::new(RawAesKeyring::new("bench", "aes-256", &[1u8; 32]).unwrap()));
    let cached: Arc<dyn MaterialsManager> = Arc::new(
        CachingCmm::new(raw.clone(), Arc::new(LocalCache::new(16).unwrap()), Duration::from_secs(300)).unwrap(),
    );
    let ec: EncryptionContext = [("stream", "orders")].into_iter().collect();
    for suite in [AlgorithmSuite::Aes256GcmHkdfSha512CommitKey, AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384] {
        let signed = suite.is_signed();
        for size in SIZES {
            // One frame per message up to 1 MiB, as a record-sized message would be written.
            let client = Client::builder().suite(suite).frame_length(size.max(1) as u32).build().unwrap();
            let plaintext = vec![0x42u8; size];
            let mut group = c.benchmark_group(format!("{:04x}/{size}", suite.id()));
            group.throughput(Throughput::Bytes(size as u64));
            if size >= 256 * 1024 {
                group.sample_size(20);
            }
            let floor = floor::Floor::new(size);
            let gcm = floor::Floor::gcm_key();
            let mut buf = vec![0u8; size];
            group.bench_function("floor/aes-gcm-only", |b| b.iter(|| floor::Floor::gcm_only(&gcm, &mut buf)));
            group.bench_function("floor/encrypt-primitives", |b| b.iter(|| floor.encrypt(&mut buf, signed)));
            let mut out = Vec::with_capacity(size);
            group.bench_function("floor/decrypt-primitives", |b| b.iter(|| floor.decrypt(&mut out, signed)));
            for (path, cmm) in [("raw", &raw), ("cached", &cached)] {
                group.bench_function(BenchmarkId::new("encrypt", path), |b| {
                    b.iter(|| client.encrypt_blocking(&**cmm, &plaintext, &ec).unwrap())
                });
                let message = client.encrypt_blocking(&**cmm, &plaintext, &ec).unwrap();
                group.bench_function(BenchmarkId::new("decrypt", path), |b| {
                    b.iter(|| client.decrypt_blocking(&**cmm, &message, None).unwrap())
                });
            }
            group.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
