//! Per-message cost of the AWS KMS Hierarchical keyring against the raw AES keyring, same suite
//! (0x0478), same process, and the store calls each side makes: 100,000 records of 200 bytes
//! encrypted by one keyring and decrypted by another, each with its own key store client.
//!
//! The two keyrings run in alternating rounds (raw, hierarchy, raw, ...), so drift on a shared
//! machine touches both; the report gives the median of the rounds' per-message times.
//!
//! ```text
//! scripts/with-aws-endpoint cargo run --release --features hierarchy --example hierarchy_cost -- [--records 100000]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use esdk::keyring::hierarchy::HierarchicalKeyring;
use esdk::keyring::kms::MeteredKmsClient;
use esdk::keystore::{KeyStore, KmsConfiguration};
use esdk::{AlgorithmSuite, Client, DefaultCmm, EncryptionContext, MaterialsManager, RawAesKeyring};
use esdk_testkit::aws::Endpoint;

const REGION: &str = "us-east-2";
const ROUNDS: usize = 20;

fn main() {
    let records: usize = std::env::args()
        .skip_while(|a| a != "--records")
        .nth(1)
        .map(|v| v.parse().expect("--records N"))
        .unwrap_or(100_000);
    let env = Endpoint::from_env();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let arn = rt.block_on(env.create_key(REGION));
    let open = |kms| {
        let config = KmsConfiguration::KeyArn(arn.clone());
        Arc::new(KeyStore::new("cost-branch-keys", "cost", config, kms, env.dynamodb(REGION)).unwrap())
    };
    let admin = open(env.kms(REGION));
    rt.block_on(admin.create_key_store()).unwrap();
    let id = rt.block_on(admin.create_key(None, &EncryptionContext::new())).unwrap();

    let ttl = Duration::from_secs(600);
    let (writer_kms, reader_kms) = (MeteredKmsClient::new(env.kms(REGION)), MeteredKmsClient::new(env.kms(REGION)));
    let (writer_store, reader_store) = (open(writer_kms.clone()), open(reader_kms.clone()));
    let ring =
        |store: &Arc<KeyStore>| HierarchicalKeyring::builder(store.clone(), ttl).branch_key_id(&id).build().unwrap();
    let writer: Arc<dyn MaterialsManager> = Arc::new(DefaultCmm::new(ring(&writer_store)));
    let reader: Arc<dyn MaterialsManager> = Arc::new(DefaultCmm::new(ring(&reader_store)));
    let raw: Arc<dyn MaterialsManager> =
        Arc::new(DefaultCmm::new(RawAesKeyring::new("cost", "aes-256", &[1u8; 32]).unwrap()));

    let client = Client::builder().suite(AlgorithmSuite::Aes256GcmHkdfSha512CommitKey).build().unwrap();
    let ec: EncryptionContext = [("stream", "orders"), ("tenant", "acme")].into_iter().collect();
    let plaintext = vec![0x42u8; 200];
    let per_round = records.div_ceil(ROUNDS).max(1);
    // Per-message nanoseconds of each round: (raw encrypt, raw decrypt, hierarchy encrypt, hierarchy decrypt).
    let mut times: [Vec<f64>; 4] = Default::default();
    let round = |enc: &Arc<dyn MaterialsManager>, dec: &Arc<dyn MaterialsManager>| {
        let start = Instant::now();
        let mut last = Vec::new();
        for _ in 0..per_round {
            last = client.encrypt_blocking(&**enc, &plaintext, &ec).unwrap();
        }
        let encrypt = start.elapsed().as_nanos() as f64 / per_round as f64;
        let start = Instant::now();
        for _ in 0..per_round {
            client.decrypt_blocking(&**dec, &last, None).unwrap();
        }
        (encrypt, start.elapsed().as_nanos() as f64 / per_round as f64)
    };
    for _ in 0..ROUNDS {
        let (e, d) = round(&raw, &raw);
        times[0].push(e);
        times[1].push(d);
        let (e, d) = round(&writer, &reader);
        times[2].push(e);
        times[3].push(d);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [re, rd, he, hd] = times.each_mut().map(median);
    let messages = per_round * ROUNDS;
    println!("{messages} messages of 200 bytes each way, suite 0x0478, {ROUNDS} alternating rounds (medians):");
    println!("  encrypt: raw AES {:.2} us, hierarchy {:.2} us per message: {:.2}x", re / 1e3, he / 1e3, he / re);
    println!("  decrypt: raw AES {:.2} us, hierarchy {:.2} us per message: {:.2}x", rd / 1e3, hd / 1e3, hd / rd);
    let (w, r) = (writer_kms.counts(), reader_kms.counts());
    println!(
        "  writer: {} KMS call(s), {} DynamoDB read(s); reader: {} KMS call(s), {} DynamoDB read(s)",
        w.total(),
        writer_store.dynamodb_calls().get_item,
        r.total(),
        reader_store.dynamodb_calls().get_item
    );
}
