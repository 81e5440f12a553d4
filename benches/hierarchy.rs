//! Per-message cost of the AWS KMS Hierarchical keyring against the raw AES keyring, same suite,
//! same run (issue bar: at most 1.5x). The branch key is read and unwrapped before measuring (once
//! for encrypt, once for decrypt: two cache scopes), as a warm keyring has it: what is measured is the local work per message (cache lookup, key
//! derivation, AES-GCM wrap or unwrap), never a network call.
//!
//! Needs the local AWS endpoint for that one unwrap:
//! `scripts/with-aws-endpoint cargo bench --features hierarchy --bench hierarchy`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use esdk::keyring::hierarchy::HierarchicalKeyring;
use esdk::keystore::{KeyStore, KmsConfiguration};
use esdk::{AlgorithmSuite, Client, DefaultCmm, EncryptionContext, MaterialsManager, RawAesKeyring};
use esdk_testkit::aws::Endpoint;

const REGION: &str = "us-east-2";

fn bench(c: &mut Criterion) {
    let env = Endpoint::from_env();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let arn = rt.block_on(env.create_key(REGION));
    let store = Arc::new(
        KeyStore::new(
            "bench-branch-keys",
            "bench",
            KmsConfiguration::KeyArn(arn),
            env.kms(REGION),
            env.dynamodb(REGION),
        )
        .unwrap(),
    );
    rt.block_on(store.create_key_store()).unwrap();
    let id = rt.block_on(store.create_key(None, &EncryptionContext::new())).unwrap();
    let hierarchy: Arc<dyn MaterialsManager> = Arc::new(DefaultCmm::new(
        HierarchicalKeyring::builder(store.clone(), Duration::from_secs(600)).branch_key_id(&id).build().unwrap(),
    ));
    let raw: Arc<dyn MaterialsManager> =
        Arc::new(DefaultCmm::new(RawAesKeyring::new("bench", "aes-256", &[1u8; 32]).unwrap()));
    let ec: EncryptionContext = [("stream", "orders"), ("tenant", "acme")].into_iter().collect();
    for suite in [AlgorithmSuite::Aes256GcmHkdfSha512CommitKey, AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384] {
        for size in [200usize, 4096] {
            let client = Client::builder().suite(suite).build().unwrap();
            let plaintext = vec![0x42u8; size];
            let mut group = c.benchmark_group(format!("hierarchy/{:04x}/{size}", suite.id()));
            group.throughput(Throughput::Elements(1));
            for (path, cmm) in [("raw-aes", &raw), ("hierarchy", &hierarchy)] {
                let message = client.encrypt_blocking(&**cmm, &plaintext, &ec).unwrap();
                group.bench_function(BenchmarkId::new("encrypt", path), |b| {
                    b.iter(|| client.encrypt_blocking(&**cmm, &plaintext, &ec).unwrap())
                });
                group.bench_function(BenchmarkId::new("decrypt", path), |b| {
                    b.iter(|| client.decrypt_blocking(&**cmm, &message, None).unwrap())
                });
            }
            group.finish();
        }
    }
    // The branch key came from the store twice (encrypt, decrypt), and never again.
    assert_eq!(store.dynamodb_calls().get_item, 2, "the measured loop made store calls");
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
