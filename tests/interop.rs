//! Interoperability with the official Python ESDK 4.0.7, both directions:
//! messages this crate writes (every suite allowed for encrypt, raw AES and raw RSA keys, frame
//! lengths 1 B .. 1 MiB, empty and non-empty contexts, each backend) decrypt in Python, and
//! messages Python writes (including non-framed ones) decrypt here.
//!
//! `scripts/test` installs the Python ESDK into `.venv-test` and sets `ESDK_INTEROP_PYTHON`.
//! Without it the test fails under `CI=true` and prints a NOT RUN notice otherwise.

#[path = "../examples/vectors/runner.rs"]
#[allow(dead_code)]
mod runner;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use esdk::{
    AlgorithmSuite, Backend, Client, CommitmentPolicy, DefaultCmm, EncryptionContext, Keyring, MultiKeyring,
    RawAesKeyring, RawRsaKeyring, RsaPadding,
};
use serde_json::{json, Value};

const RSA_PRIVATE: &str = include_str!("data/rsa-2048-private.pem");
const RSA_PUBLIC: &str = include_str!("data/rsa-2048-public.pem");

struct KeyringCase {
    name: &'static str,
    /// Manifest `master-keys` entries.
    master_keys: Value,
    build: fn(Backend) -> Arc<dyn Keyring>,
}

fn aes_key(len: usize) -> Vec<u8> {
    (0..len as u8).map(|b| b.wrapping_mul(7).wrapping_add(3)).collect()
}

fn aes_ring(len: usize, backend: Backend) -> RawAesKeyring {
    RawAesKeyring::with_backend("rs-ns", &format!("aes-{}", len * 8), &aes_key(len), backend).unwrap()
}

fn rsa_ring(padding: RsaPadding, backend: Backend) -> RawRsaKeyring {
    // Encrypt with the public key only, as a producer would.
    RawRsaKeyring::with_backend("rs-rsa", "rsa-2048", padding, backend)
        .unwrap()
        .with_public_key_pem(RSA_PUBLIC)
        .unwrap()
}

fn aes_mk(len: usize) -> Value {
    json!({"type": "raw", "encryption-algorithm": "aes", "provider-id": "rs-ns", "key": format!("aes-{}", len * 8)})
}

fn rsa_mk(padding: &str, hash: Option<&str>) -> Value {
    let mut v = json!({"type": "raw", "encryption-algorithm": "rsa", "provider-id": "rs-rsa", "key": "rsa-2048",
                       "padding-algorithm": padding});
    if let Some(h) = hash {
        v["padding-hash"] = json!(h);
    }
    v
}

fn keyring_cases() -> Vec<KeyringCase> {
    vec![
        KeyringCase { name: "aes128", master_keys: json!([aes_mk(16)]), build: |b| Arc::new(aes_ring(16, b)) },
        KeyringCase { name: "aes192", master_keys: json!([aes_mk(24)]), build: |b| Arc::new(aes_ring(24, b)) },
        KeyringCase { name: "aes256", master_keys: json!([aes_mk(32)]), build: |b| Arc::new(aes_ring(32, b)) },
        KeyringCase {
            name: "rsa-pkcs1",
            master_keys: json!([rsa_mk("pkcs1", None)]),
            build: |b| Arc::new(rsa_ring(RsaPadding::Pkcs1, b)),
        },
        KeyringCase {
            name: "rsa-oaep-sha1",
            master_keys: json!([rsa_mk("oaep-mgf1", Some("sha1"))]),
            build: |b| Arc::new(rsa_ring(RsaPadding::OaepSha1, b)),
        },
        KeyringCase {
            name: "rsa-oaep-sha256",
            master_keys: json!([rsa_mk("oaep-mgf1", Some("sha256"))]),
            build: |b| Arc::new(rsa_ring(RsaPadding::OaepSha256, b)),
        },
        KeyringCase {
            name: "rsa-oaep-sha384",
            master_keys: json!([rsa_mk("oaep-mgf1", Some("sha384"))]),
            build: |b| Arc::new(rsa_ring(RsaPadding::OaepSha384, b)),
        },
        KeyringCase {
            name: "rsa-oaep-sha512",
            master_keys: json!([rsa_mk("oaep-mgf1", Some("sha512"))]),
            build: |b| Arc::new(rsa_ring(RsaPadding::OaepSha512, b)),
        },
        KeyringCase {
            name: "multi",
            master_keys: json!([aes_mk(32), rsa_mk("oaep-mgf1", Some("sha256"))]),
            build: |b| {
                Arc::new(
                    MultiKeyring::new(
                        Some(Arc::new(aes_ring(32, b))),
                        vec![Arc::new(rsa_ring(RsaPadding::OaepSha256, b))],
                    )
                    .unwrap(),
                )
            },
        },
    ]
}

fn keys_manifest() -> Value {
    let b64 = |k: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(k);
    let mut keys = serde_json::Map::new();
    for len in [16usize, 24, 32] {
        keys.insert(
            format!("aes-{}", len * 8),
            json!({"type": "symmetric", "algorithm": "aes", "bits": len * 8, "encoding": "base64",
                   "key-id": format!("aes-{}", len * 8), "material": b64(aes_key(len))}),
        );
    }
    keys.insert(
        "rsa-2048".into(),
        json!({"type": "private", "algorithm": "rsa", "bits": 2048, "encoding": "pem", "key-id": "rsa-2048",
               "material": RSA_PRIVATE}),
    );
    json!({"manifest": {"type": "keys", "version": 3}, "keys": keys})
}

/// Writes this crate's messages and an awses-decrypt manifest into `dir`.
fn write_our_messages(dir: &Path) -> usize {
    std::fs::create_dir_all(dir.join("ciphertexts")).unwrap();
    std::fs::create_dir_all(dir.join("plaintexts")).unwrap();
    let plaintexts: BTreeMap<&str, Vec<u8>> = [
        ("empty", Vec::new()),
        ("small", b"Hello from Rust!".to_vec()),
        ("mid", (0..10_000u32).map(|i| (i % 251) as u8).collect()),
        ("large", (0..(2 * (1u32 << 20) + 4099)).map(|i| (i % 253) as u8).collect()),
    ]
    .into_iter()
    .collect();
    for (name, data) in &plaintexts {
        std::fs::write(dir.join("plaintexts").join(name), data).unwrap();
    }
    let frames = [1u32, 7, 128, 4096, 65536, 1 << 20];
    let contexts: [EncryptionContext; 3] = [
        EncryptionContext::new(),
        [("purpose", "interop")].into_iter().collect(),
        [("\u{e9}t\u{e9}", "\u{1D11E}"), ("\u{FF21}BC", "wide"), ("a", "")].into_iter().collect(),
    ];
    let mut tests = serde_json::Map::new();
    let mut n = 0usize;
    let mut add = |suite: AlgorithmSuite,
                   case: &KeyringCase,
                   frame: u32,
                   pname: &str,
                   ec: &EncryptionContext,
                   backend: Backend| {
        let policy = if suite.is_committing() {
            CommitmentPolicy::RequireEncryptRequireDecrypt
        } else {
            CommitmentPolicy::ForbidEncryptAllowDecrypt
        };
        let client = Client::builder()
            .commitment_policy(policy)
            .suite(suite)
            .frame_length(frame)
            .backend(backend)
            .build()
            .unwrap();
        let cmm = DefaultCmm::from_arc((case.build)(backend)).with_backend(backend);
        let message = client.encrypt_blocking(&cmm, &plaintexts[pname], ec).unwrap();
        let name = format!("rs-{n:03}-{suite}-{}-f{frame}-{pname}-{}", case.name, backend.name());
        n += 1;
        std::fs::write(dir.join("ciphertexts").join(&name), message).unwrap();
        let ec_json: serde_json::Map<String, Value> = ec.iter().map(|(k, v)| (k.to_owned(), json!(v))).collect();
        tests.insert(
            name.clone(),
            json!({
                "description": format!("esdk (Rust) {suite} {} frame {frame} {pname}", case.name),
                "ciphertext": format!("file://ciphertexts/{name}"),
                "master-keys": case.master_keys,
                "commitment-policy": policy.name(),
                "encryption-context": ec_json,
                "result": {"output": {"plaintext": format!("file://plaintexts/{pname}")}},
            }),
        );
    };
    let cases = keyring_cases();
    // Every encrypt suite with every keyring, cycling frame lengths, plaintexts and contexts.
    let mut i = 0;
    for &backend in Backend::all() {
        for suite in AlgorithmSuite::ALL {
            for case in &cases {
                let frame = frames[i % 4 + 1]; // 7 .. 65536
                let pname = ["small", "mid", "empty"][i % 3];
                add(suite, case, frame, pname, &contexts[i % 3], backend);
                i += 1;
            }
        }
    }
    // Frame lengths from 1 byte to 1 MiB with the committing suites.
    let aes256 = &cases[2];
    for suite in [AlgorithmSuite::Aes256GcmHkdfSha512CommitKey, AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384] {
        for frame in frames {
            let pname = match frame {
                1 => "small",
                f if f >= 65536 => "large",
                _ => "mid",
            };
            add(suite, aes256, frame, pname, &contexts[2], Backend::default());
        }
        // Plaintext an exact multiple of the frame length (full final frame).
        add(suite, aes256, 16, "small", &contexts[1], Backend::default());
    }
    std::fs::write(dir.join("keys.json"), serde_json::to_vec_pretty(&keys_manifest()).unwrap()).unwrap();
    let manifest =
        json!({"manifest": {"type": "awses-decrypt", "version": 4}, "keys": "file://keys.json", "tests": tests});
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    n
}

#[test]
#[ignore = "needs the official Python ESDK: run scripts/test"]
fn python_esdk_decrypts_our_messages() {
    let py = esdk_testkit::interop_python();
    let dir = tempfile::tempdir().unwrap();
    let n = write_our_messages(dir.path());
    let out = esdk_testkit::run_python(&py, &["decrypt", dir.path().to_str().unwrap()]);
    let last = out.lines().last().unwrap_or_default();
    assert_eq!(last, format!("{n} passed, 0 failed"), "{out}");
    // And we decrypt our own messages with the same manifest, on every backend.
    for &backend in Backend::all() {
        let s = runner::run_with(dir.path(), backend, runner::Mode::OneShot, None).unwrap();
        assert_eq!((s.passed, s.failed), (n, 0), "{:?}", s.failures);
    }
}

#[test]
#[ignore = "needs the official Python ESDK: run scripts/test"]
fn we_decrypt_python_esdk_messages() {
    let py = esdk_testkit::interop_python();
    let dir = tempfile::tempdir().unwrap();
    esdk_testkit::run_python(&py, &["encrypt", dir.path().to_str().unwrap()]);
    for &backend in Backend::all() {
        let s = runner::run_with(dir.path(), backend, runner::Mode::OneShot, None).unwrap();
        assert!(s.passed >= 79, "only {} Python messages", s.passed);
        assert_eq!(s.failed, 0, "{:?}", s.failures);
    }
}
