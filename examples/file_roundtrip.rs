//! The demo job until the Kinesis pipeline lands: encrypt a file with a raw AES-256 key, decrypt
//! it again, check the round trip, and show what the message header reveals without any key.
//!
//! ```text
//! cargo run --release --example file_roundtrip              # synthetic CDC records
//! cargo run --release --example file_roundtrip -- FILE     # your own file
//! ```
//! Outputs go next to the input (`.esdk`, `.decrypted`); the demo key is kept in
//! `target/demo/demo-aes256.key` (created on first use).

use std::path::{Path, PathBuf};
use std::time::Instant;

use esdk::{Client, DefaultCmm, EncryptionContext, HeaderLimits, MessageHeader, RawAesKeyring};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let demo_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/demo");
    std::fs::create_dir_all(&demo_dir)?;
    let input = match std::env::args_os().nth(1) {
        Some(p) => PathBuf::from(p),
        None => write_sample_records(&demo_dir.join("records.jsonl"), 10_000)?,
    };
    let key = demo_key(&demo_dir.join("demo-aes256.key"))?;

    let keyring = RawAesKeyring::new("esdk-demo", "demo-aes256", &key)?;
    let cmm = DefaultCmm::new(keyring);
    let client = Client::new();
    let context: EncryptionContext =
        [("purpose", "esdk demo"), ("file", &*input.file_name().unwrap_or_default().to_string_lossy())]
            .into_iter()
            .collect();

    let plaintext = std::fs::read(&input)?;
    let t = Instant::now();
    let message = client.encrypt_blocking(&cmm, &plaintext, &context)?;
    let enc_time = t.elapsed();
    let encrypted_path = with_suffix(&input, "esdk");
    std::fs::write(&encrypted_path, &message)?;

    let (header, header_len) = MessageHeader::parse(&message, &HeaderLimits::default())?;
    println!("input            {} ({} bytes)", input.display(), plaintext.len());
    println!(
        "encrypted        {} ({} bytes, {} bytes overhead)",
        encrypted_path.display(),
        message.len(),
        message.len() - plaintext.len()
    );
    println!(
        "header (no key)  suite {}, message id {}, {} header bytes, frame length {}",
        header.suite(),
        hex(header.message_id()),
        header_len,
        header.frame_length()
    );
    for (k, v) in header.encryption_context().iter() {
        let shown = if v.len() > 40 { format!("{}…", &v[..40]) } else { v.to_owned() };
        println!("  context        {k} = {shown}");
    }
    for edk in header.encrypted_data_keys() {
        println!("  data key       wrapped by {}/{}", edk.provider_id, edk.provider_info_lossy());
    }

    let t = Instant::now();
    let decrypted = client.decrypt_blocking(&cmm, &message, Some(&context))?;
    let dec_time = t.elapsed();
    let decrypted_path = with_suffix(&input, "decrypted");
    std::fs::write(&decrypted_path, &decrypted.plaintext)?;
    if decrypted.plaintext.to_vec() != plaintext {
        return Err("round trip mismatch: decrypted bytes differ from the input".into());
    }
    let mb = plaintext.len() as f64 / 1e6;
    println!("encrypt          {:.2} ms ({:.0} MB/s)", enc_time.as_secs_f64() * 1e3, mb / enc_time.as_secs_f64());
    println!("decrypt          {:.2} ms ({:.0} MB/s)", dec_time.as_secs_f64() * 1e3, mb / dec_time.as_secs_f64());
    println!("round trip OK: {} matches {}", decrypted_path.display(), input.display());
    Ok(())
}

fn write_sample_records(path: &Path, n: u64) -> std::io::Result<PathBuf> {
    let mut out = String::new();
    for i in 0..n {
        let (h, m, s) = (20 + i / 3600 % 4, i / 60 % 60, i % 60);
        out.push_str(&format!(
            "{{\"Key\": {}, \"CommitTimestamp\": \"2022-07-18T{h:02}:{m:02}:{s:02}\", \"Op\": \"UPDATE\"}}\n",
            12_340_000 + i
        ));
    }
    std::fs::write(path, out)?;
    Ok(path.to_owned())
}

fn demo_key(path: &Path) -> std::io::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(k) if k.len() == 32 => Ok(k),
        _ => {
            let key = esdk::DataKey::generate(32).map_err(std::io::Error::other)?;
            std::fs::write(path, key.expose_secret())?;
            Ok(key.expose_secret().to_vec())
        }
    }
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
