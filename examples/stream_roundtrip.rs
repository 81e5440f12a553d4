//! Streams a large generated plaintext through `EncryptingWriter` into a file and back through
//! `DecryptingReader`, comparing on the fly; memory stays bounded by the frame length.
//!
//! ```text
//! cargo run --release --example stream_roundtrip -- --size 1073741824 [--suite 0x0478] [--frame 65536]
//! /usr/bin/time -v target/release/examples/stream_roundtrip --size 1073741824   # peak RSS
//! ```

use std::io::{self, BufWriter, Read, Write};
use std::time::Instant;

use esdk::{AlgorithmSuite, Client, DefaultCmm, EncryptionContext, RawAesKeyring, SignedMessages};

/// Deterministic pseudo-random bytes (xorshift), `remaining` of them.
struct Generator {
    state: u64,
    remaining: u64,
}

impl Read for Generator {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.remaining) as usize;
        for b in &mut buf[..n] {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            *b = self.state as u8;
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut size: u64 = 256 << 20;
    let mut suite = AlgorithmSuite::Aes256GcmHkdfSha512CommitKey;
    let mut frame: u32 = 64 * 1024;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().ok_or(format!("{a} needs a value"))?;
        match a.as_str() {
            "--size" => size = v.parse()?,
            "--frame" => frame = v.parse()?,
            "--suite" => {
                let id = u16::from_str_radix(v.trim_start_matches("0x"), 16)?;
                suite = AlgorithmSuite::from_id(id).ok_or(format!("unknown suite {v}"))?;
            }
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/demo");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("stream_roundtrip.esdk");
    let cmm = DefaultCmm::new(RawAesKeyring::new("esdk-demo", "stream", &[0x42; 32])?);
    let client = Client::builder().suite(suite).frame_length(frame).build()?;
    let ec: EncryptionContext = [("purpose", "stream demo")].into_iter().collect();

    let t = Instant::now();
    let file = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
    let mut writer = client.encrypting_writer_blocking(&cmm, &ec, file)?;
    io::copy(&mut Generator { state: 0x9E37_79B9_7F4A_7C15, remaining: size }, &mut writer)?;
    writer.finish()?.flush()?;
    let enc = t.elapsed();
    let message_len = std::fs::metadata(&path)?.len();

    let t = Instant::now();
    let file = io::BufReader::with_capacity(1 << 20, std::fs::File::open(&path)?);
    let mut reader = client.decrypting_reader_blocking(&cmm, file, Some(&ec), SignedMessages::VerifyBeforeRelease)?;
    let mut expected = Generator { state: 0x9E37_79B9_7F4A_7C15, remaining: size };
    let (mut got, mut want) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut got)?;
        if n == 0 {
            break;
        }
        expected.read_exact(&mut want[..n])?;
        if got[..n] != want[..n] {
            return Err(format!("plaintext differs near byte {total}").into());
        }
        total += n as u64;
    }
    let dec = t.elapsed();
    if total != size {
        return Err(format!("decrypted {total} bytes, expected {size}").into());
    }
    std::fs::remove_file(&path)?;
    let mb = size as f64 / 1e6;
    println!(
        "suite={suite} frame={frame} size={size} message={message_len} encrypt_mb_per_s={:.0} decrypt_mb_per_s={:.0} round_trip=ok",
        mb / enc.as_secs_f64(),
        mb / dec.as_secs_f64()
    );
    Ok(())
}
