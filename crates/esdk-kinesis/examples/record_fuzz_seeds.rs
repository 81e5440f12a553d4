//! Writes the seed corpus of the `record_header` fuzz target (`fuzz/corpus/record_header/`):
//! records as the record codec writes them (stream, origin Region and commit time in the
//! context), under a raw AES key. `cargo run -p esdk-kinesis --example record_fuzz_seeds`.

use std::path::Path;
use std::sync::Arc;

use esdk::{DefaultCmm, MaterialsManager, RawAesKeyring};
use esdk_kinesis::record::{CommitTimeInContext, RecordCodec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/record_header");
    std::fs::create_dir_all(&root)?;
    let cmm: Arc<dyn MaterialsManager> = Arc::new(DefaultCmm::new(RawAesKeyring::new("fuzz", "aes", &[0x11; 32])?));
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    for (i, mode) in [CommitTimeInContext::default(), CommitTimeInContext::Exact].into_iter().enumerate() {
        let codec = RecordCodec::builder(cmm.clone(), "orders-cdc", "us-east-1").commit_time(mode).build()?;
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_658_174_400_123);
        let record = runtime.block_on(codec.encrypt("12349999", br#"{"Key": 12349999}"#, Some(t)))?;
        std::fs::write(root.join(format!("seed-record-{i}")), &record.data)?;
    }
    println!("seeds written to {}", root.display());
    Ok(())
}
