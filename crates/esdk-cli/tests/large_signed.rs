//! A 1 GiB message of the default, signed suite decrypts to a file in bounded memory: the private
//! temporary output file holds the plaintext of authenticated frames until the signature
//! verifies, and is renamed into place only then; a bad signature leaves no output and no
//! temporary file; standard output keeps its bounded hold and says how to proceed. Alone in its
//! own test binary (it writes 2 GiB and reads 4 GiB).

#![cfg_attr(not(target_os = "linux"), allow(unused))]

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const SIZE: u64 = 1 << 30;
const AES: &str = "namespace=ns,name=k,file=aes.key";
/// The bound the streaming decryptor used to refuse signed messages at (the default hold).
const RSS_LIMIT_KIB: u64 = 64 * 1024;

/// Runs `esdk args` in `dir`; returns whether it succeeded, its stderr and its peak RSS (KiB),
/// sampled from /proc every 10 ms (VmHWM only grows, so the last sample is the peak to within
/// the memory of the last 10 ms).
fn esdk(dir: &Path, args: &[&str]) -> (bool, String, u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_esdk"))
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = esdk_testkit::proc_status_kib(&pid, "VmHWM") {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (status.success(), stderr, peak)
}

fn leftovers(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix) || n.contains("esdk-partial"))
        .collect()
}

#[test]
#[cfg_attr(not(target_os = "linux"), ignore = "peak RSS is read from /proc: Linux only")]
fn a_gigabyte_signed_message_decrypts_to_a_file_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("aes.key"), [0x42u8; 32]).unwrap();
    // 1 GiB of zeros, sparse on disk.
    std::fs::File::create(p.join("big.bin")).unwrap().set_len(SIZE).unwrap();

    let (ok, err, enc_rss) = esdk(p, &["encrypt", "-i", "big.bin", "-o", "big.esdk", "--raw-aes-key", AES]);
    assert!(ok, "{err}");
    let (ok, err, dec_rss) = esdk(p, &["decrypt", "-i", "big.esdk", "-o", "big.out", "--raw-aes-key", AES]);
    assert!(ok, "{err}");
    eprintln!("1 GiB, suite 0x0578: peak RSS encrypt {} MiB, decrypt to a file {} MiB", enc_rss / 1024, dec_rss / 1024);
    assert!(dec_rss > 0, "peak RSS was not read");
    assert!(dec_rss <= RSS_LIMIT_KIB, "decrypt peak RSS {dec_rss} KiB");
    let mut out = std::fs::File::open(p.join("big.out")).unwrap();
    assert_eq!(out.metadata().unwrap().len(), SIZE);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().all(|b| *b == 0), "plaintext differs");
    }

    // Standard output cannot take bytes back: the bounded hold, and a hint naming the way out.
    let (ok, err, _) = esdk(p, &["decrypt", "-i", "big.esdk", "-o", "-", "--raw-aes-key", AES]);
    assert!(!ok);
    assert!(err.contains("-o FILE") && err.contains("--buffer"), "{err}");

    // A bad signature (its last byte): every frame authenticates, the signature does not. The
    // temporary file is removed and no output appears.
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(p.join("big.esdk")).unwrap();
    f.seek(SeekFrom::End(-1)).unwrap();
    let mut last = [0u8; 1];
    f.read_exact(&mut last).unwrap();
    f.seek(SeekFrom::End(-1)).unwrap();
    f.write_all(&[last[0] ^ 0x01]).unwrap();
    drop(f);
    let (ok, err, _) = esdk(p, &["decrypt", "-i", "big.esdk", "-o", "bad.out", "--raw-aes-key", AES]);
    assert!(!ok);
    assert!(err.contains("signature"), "{err}");
    assert!(leftovers(p, "bad.out").is_empty(), "{:?}", leftovers(p, "bad.out"));
}
