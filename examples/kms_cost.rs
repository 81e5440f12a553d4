//! KMS cost of a cached pipeline: N records of 1 KiB encrypted under one KMS key through a caching
//! materials manager (max age 5 min, max 10,000 messages per data key), then decrypted by a
//! consumer with its own cache; prints the KMS calls each side made.
//!
//! ```text
//! scripts/with-aws-endpoint cargo run --release --example kms_cost -- [--records 100000] [--key-arn ARN]
//! ```
//! Without `--key-arn` it creates a key in `AWS_REGION` (on the local endpoint, or wherever the
//! standard AWS environment points).

use std::sync::Arc;
use std::time::{Duration, Instant};

use esdk::keyring::kms::{AwsSdkClientSupplier, ClientSupplier, KmsKeyring, MeteredKmsClient};
use esdk::{CachingCmm, Client, DefaultCmm, EncryptionContext, LocalCache, MaterialsManager};

fn caching(underlying: Arc<dyn MaterialsManager>) -> Result<CachingCmm, esdk::Error> {
    CachingCmm::new(underlying, Arc::new(LocalCache::new(100)?), Duration::from_secs(300))?.with_max_messages(10_000)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut records = 100_000usize;
    let mut key_arn = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--records" => records = args.next().ok_or("--records needs a value")?.parse()?,
            "--key-arn" => key_arn = Some(args.next().ok_or("--key-arn needs a value")?),
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    let config = esdk::keyring::kms::load_sdk_config().await;
    let key_arn = match key_arn {
        Some(k) => k,
        None => {
            let admin = aws_sdk_kms::Client::new(&config);
            let out = admin.create_key().description("esdk kms_cost example").send().await?;
            out.key_metadata().and_then(|m| m.arn()).ok_or("CreateKey returned no ARN")?.to_owned()
        }
    };
    let region = key_arn.split(':').nth(3).ok_or("not a key ARN")?.to_owned();
    let supplier = AwsSdkClientSupplier::from_sdk_config(config);

    let producer_kms = MeteredKmsClient::new(supplier.client(&region)?);
    let producer = caching(Arc::new(DefaultCmm::new(KmsKeyring::new(&key_arn, producer_kms.clone())?)))?;
    let consumer_kms = MeteredKmsClient::new(supplier.client(&region)?);
    let consumer = caching(Arc::new(DefaultCmm::new(KmsKeyring::new(&key_arn, consumer_kms.clone())?)))?;

    let client = Client::builder().suite(esdk::AlgorithmSuite::Aes256GcmHkdfSha512CommitKey).build()?;
    let ec: EncryptionContext = [("stream", "orders")].into_iter().collect();
    let record = vec![b'x'; 1024];
    let start = Instant::now();
    let mut messages = Vec::with_capacity(records);
    for _ in 0..records {
        messages.push(client.encrypt(&producer, &record, &ec).await?);
    }
    let encrypt_time = start.elapsed();
    let start = Instant::now();
    for m in &messages {
        let d = client.decrypt(&consumer, m, Some(&ec)).await?;
        if d.plaintext.to_vec() != record {
            return Err("a record did not decrypt to its original".into());
        }
    }
    let decrypt_time = start.elapsed();
    println!(
        "records={records} record_bytes=1024 encrypt_s={:.2} decrypt_s={:.2} producer_generate_data_key={} producer_encrypt={} consumer_decrypt={}",
        encrypt_time.as_secs_f64(),
        decrypt_time.as_secs_f64(),
        producer_kms.counts().generate_data_key,
        producer_kms.counts().encrypt,
        consumer_kms.counts().decrypt,
    );
    Ok(())
}
