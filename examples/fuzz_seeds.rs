//! Writes the checked-in seed corpora of the fuzz targets (`fuzz/corpus/<target>/`): one small
//! message per suite under the fuzz targets' keys, contexts, and key-spec strings.
//! `cargo run --example fuzz_seeds`; the Kinesis record seeds come from
//! `cargo run -p esdk-kinesis --example record_fuzz_seeds`. `scripts/fuzz` also feeds the official vectors
//! from `../shared/vectors` as an extra, read-only corpus.

use std::path::Path;
use std::sync::Arc;

use esdk::{
    AlgorithmSuite, Client, CommitmentPolicy, DefaultCmm, EncryptionContext, MultiKeyring, RawAesKeyring,
    RawRsaKeyring, RsaPadding,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let aes = RawAesKeyring::new("fuzz", "aes", &[0x11; 32])?;
    let rsa = RawRsaKeyring::new("fuzz-rsa", "rsa", RsaPadding::OaepSha256)?
        .with_public_key_pem(include_str!("../tests/data/rsa-2048-public.pem"))?;
    let cmm = DefaultCmm::new(MultiKeyring::new(Some(Arc::new(aes)), vec![Arc::new(rsa)])?);
    let ec: EncryptionContext = [("stream", "orders"), ("\u{e9}", "\u{1D11E}")].into_iter().collect();
    for target in ["header", "record_header", "decrypt", "decrypt_stream", "differential"] {
        std::fs::create_dir_all(root.join(target))?;
    }
    for suite in AlgorithmSuite::ALL {
        let policy = if suite.is_committing() {
            CommitmentPolicy::RequireEncryptRequireDecrypt
        } else {
            CommitmentPolicy::ForbidEncryptAllowDecrypt
        };
        for (i, (frame, size)) in [(16u32, 40usize), (4096, 5)].into_iter().enumerate() {
            let client = Client::builder().commitment_policy(policy).suite(suite).frame_length(frame).build()?;
            let plaintext: Vec<u8> = (0..size as u8).collect();
            let message = client.encrypt_blocking(&cmm, &plaintext, &ec)?;
            let name = format!("seed-{:04x}-{i}", suite.id());
            for target in ["header", "record_header", "decrypt", "differential"] {
                std::fs::write(root.join(target).join(&name), &message)?;
            }
            // decrypt_stream: first byte picks how many read-size bytes follow.
            let mut stream = vec![3u8, 0, 6, 200];
            stream.extend_from_slice(&message);
            std::fs::write(root.join("decrypt_stream").join(&name), stream)?;
        }
    }
    std::fs::create_dir_all(root.join("encryption_context"))?;
    std::fs::write(root.join("encryption_context/seed-1"), ec.to_bytes()?)?;
    std::fs::write(root.join("encryption_context/seed-empty"), b"")?;
    std::fs::create_dir_all(root.join("keyspec"))?;
    for (i, s) in [
        "key=arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab key=alias/x",
        "discovery=true discovery-account=111122223333 discovery-partition=aws discovery-region=us-west-2",
        "namespace=ns,name=k,file=/tmp/k,padding=oaep-sha256",
        "capacity=10 max_age=60.5 max_messages_encrypted=100 max_bytes_encrypted=1000",
        "tenant=42 a=b=c",
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(root.join("keyspec").join(format!("seed-{i}")), s)?;
    }
    std::fs::create_dir_all(root.join("roundtrip"))?;
    std::fs::write(root.join("roundtrip/seed-0"), [7u8; 64])?;
    println!("seeds written to {}", root.display());
    Ok(())
}
