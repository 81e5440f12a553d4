//! The `esdk` command-line tool: help snapshots, round trips, every error path, KMS through the
//! local endpoint, and interop of its files with the official Python ESDK.
//!
//! Help snapshots live in `tests/snapshots/`; `UPDATE_SNAPSHOTS=1` rewrites them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

const RSA_PRIVATE: &str = include_str!("../../../tests/data/rsa-2048-private.pem");
const RSA_PUBLIC: &str = include_str!("../../../tests/data/rsa-2048-public.pem");

fn esdk(dir: &Path, args: &[&str]) -> Output {
    esdk_stdin(dir, args, None)
}

fn esdk_stdin(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_esdk"));
    esdk_testkit::output_with_stdin(cmd.current_dir(dir).args(args), stdin.unwrap_or_default())
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "esdk failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts failure and returns stderr, which must be one error line plus an optional hint.
fn err(out: &Output) -> String {
    assert!(!out.status.success(), "esdk unexpectedly succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.starts_with("esdk: error: "), "{stderr}");
    assert!(stderr.lines().count() <= 3, "{stderr}");
    stderr
}

struct Setup {
    dir: TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("aes.key"), [0x11u8; 32]).unwrap();
        std::fs::write(dir.path().join("other.key"), [0x22u8; 32]).unwrap();
        std::fs::write(dir.path().join("rsa-public.pem"), RSA_PUBLIC).unwrap();
        std::fs::write(dir.path().join("rsa-private.pem"), RSA_PRIVATE).unwrap();
        let data: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
        std::fs::write(dir.path().join("data.bin"), data).unwrap();
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path().join(name)).unwrap()
    }

    fn exists(&self, name: &str) -> bool {
        self.path().join(name).exists()
    }
}

const AES: &str = "namespace=ns,name=k,file=aes.key";

fn snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing snapshot {}", path.display()));
    assert_eq!(actual, expected, "snapshot {name} differs (UPDATE_SNAPSHOTS=1 to accept)");
}

#[test]
fn help_texts_match_snapshots() {
    let s = Setup::new();
    for (args, name) in [
        (&["--help"][..], "help.txt"),
        (&["encrypt", "--help"], "encrypt-help.txt"),
        (&["decrypt", "--help"], "decrypt-help.txt"),
        (&["inspect", "--help"], "inspect-help.txt"),
    ] {
        snapshot(name, &ok(&esdk(s.path(), args)));
    }
}

#[test]
fn raw_aes_round_trip_with_context_and_metadata() {
    let s = Setup::new();
    let out = esdk(
        s.path(),
        &[
            "encrypt",
            "-i",
            "data.bin",
            "-o",
            "data.esdk",
            "--raw-aes-key",
            AES,
            "-c",
            "tenant=42",
            "--metadata-output",
            "-",
        ],
    );
    let meta: serde_json::Value = serde_json::from_str(ok(&out).trim()).unwrap();
    assert_eq!(meta["header"]["algorithm_suite"], "0x0578");
    assert_eq!(meta["header"]["encryption_context"]["tenant"], "42");
    let out = esdk(
        s.path(),
        &[
            "decrypt",
            "-i",
            "data.esdk",
            "-o",
            "data.out",
            "--raw-aes-key",
            AES,
            "-c",
            "tenant=42",
            "--metadata-output",
            "meta.jsonl",
        ],
    );
    ok(&out);
    assert_eq!(s.read("data.out"), s.read("data.bin"));
    let meta: serde_json::Value = serde_json::from_slice(&s.read("meta.jsonl")).unwrap();
    assert_eq!(meta["decrypted_with"]["provider_id"], "ns");
    assert_eq!(meta["decrypted_with"]["provider_info"], "k (+IV)");

    // inspect needs no key
    let header: serde_json::Value =
        serde_json::from_str(&ok(&esdk(s.path(), &["inspect", "-i", "data.esdk"]))).unwrap();
    assert_eq!(header["encryption_context"]["tenant"], "42");
    assert_eq!(header["encrypted_data_keys"][0]["provider_id"], "ns");
}

#[test]
fn raw_rsa_round_trip_every_padding_and_options() {
    let s = Setup::new();
    for padding in ["pkcs1", "oaep-sha1", "oaep-sha256", "oaep-sha384", "oaep-sha512"] {
        let public = format!("namespace=rsa,name=r,file=rsa-public.pem,padding={padding}");
        let private = format!("namespace=rsa,name=r,file=rsa-private.pem,padding={padding}");
        ok(&esdk(
            s.path(),
            &[
                "encrypt",
                "-i",
                "data.bin",
                "-o",
                "r.esdk",
                "--raw-rsa-key",
                &public,
                "--algorithm",
                "0x0478",
                "--frame-length",
                "1000",
                "--overwrite",
            ],
        ));
        ok(&esdk(s.path(), &["decrypt", "-i", "r.esdk", "-o", "r.out", "--raw-rsa-key", &private, "--overwrite"]));
        assert_eq!(s.read("r.out"), s.read("data.bin"), "{padding}");
    }
    // Encrypting with a private key PEM is refused: the public key must be given.
    let e = err(&esdk(
        s.path(),
        &[
            "encrypt",
            "-i",
            "data.bin",
            "-o",
            "x.esdk",
            "--raw-rsa-key",
            "namespace=rsa,name=r,file=rsa-private.pem,padding=pkcs1",
        ],
    ));
    assert!(e.contains("public key"), "{e}");
}

#[test]
fn stdin_stdout_base64_legacy_suites_and_buffer() {
    let s = Setup::new();
    let data = s.read("data.bin");
    let encoded = ok(&esdk_stdin(
        s.path(),
        &[
            "encrypt",
            "-i",
            "-",
            "-o",
            "-",
            "--raw-aes-key",
            AES,
            "--encode",
            "--algorithm",
            "AES_256_GCM_HKDF_SHA512_COMMIT_KEY",
        ],
        Some(&data),
    ));
    assert!(encoded.starts_with("AgR4"));
    let out = esdk_stdin(
        s.path(),
        &["decrypt", "-i", "-", "-o", "-", "--raw-aes-key", AES, "--decode"],
        Some(encoded.as_bytes()),
    );
    assert_eq!(out.stdout, data);
    // Base64 input without --decode gets a hint.
    let e =
        err(&esdk_stdin(s.path(), &["decrypt", "-i", "-", "-o", "-", "--raw-aes-key", AES], Some(encoded.as_bytes())));
    assert!(e.contains("--decode"), "{e}");

    // A legacy suite under forbid-encrypt, read with --buffer and with the default policy.
    ok(&esdk(
        s.path(),
        &[
            "encrypt",
            "-i",
            "data.bin",
            "-o",
            "legacy.esdk",
            "--raw-aes-key",
            AES,
            "--commitment-policy",
            "forbid-encrypt-allow-decrypt",
            "--algorithm",
            "0x0378",
        ],
    ));
    let e = err(&esdk(s.path(), &["decrypt", "-i", "legacy.esdk", "-o", "l.out", "--raw-aes-key", AES]));
    assert!(e.contains("require-encrypt-allow-decrypt"), "{e}");
    assert!(!s.exists("l.out"));
    ok(&esdk(
        s.path(),
        &[
            "decrypt",
            "-i",
            "legacy.esdk",
            "-o",
            "l.out",
            "--raw-aes-key",
            AES,
            "--buffer",
            "--commitment-policy",
            "require-encrypt-allow-decrypt",
        ],
    ));
    assert_eq!(s.read("l.out"), data);
    // --decrypt-unsigned refuses the signed legacy suite.
    let e = err(&esdk(
        s.path(),
        &[
            "decrypt",
            "-i",
            "legacy.esdk",
            "-o",
            "u.out",
            "--raw-aes-key",
            AES,
            "--decrypt-unsigned",
            "--commitment-policy",
            "require-encrypt-allow-decrypt",
        ],
    ));
    assert!(e.contains("unsigned"), "{e}");
}

#[test]
fn directories_recursive_with_suffix() {
    let s = Setup::new();
    std::fs::create_dir_all(s.path().join("in/sub")).unwrap();
    std::fs::write(s.path().join("in/a.txt"), b"alpha").unwrap();
    std::fs::write(s.path().join("in/sub/b.txt"), b"beta").unwrap();
    let e = err(&esdk(s.path(), &["encrypt", "-i", "in", "-o", "enc", "--raw-aes-key", AES]));
    assert!(e.contains("--recursive"), "{e}");
    ok(&esdk(s.path(), &["encrypt", "-r", "-i", "in", "-o", "enc", "--raw-aes-key", AES, "--suffix", ".esdk", "-S"]));
    assert!(s.exists("enc/a.txt.esdk") && s.exists("enc/sub/b.txt.esdk"));
    ok(&esdk(s.path(), &["decrypt", "-r", "-i", "enc", "-o", "dec", "--raw-aes-key", AES, "--suffix", ".plain"]));
    assert_eq!(s.read("dec/a.txt.esdk.plain"), b"alpha");
    assert_eq!(s.read("dec/sub/b.txt.esdk.plain"), b"beta");
}

#[test]
fn failures_leave_no_output_and_say_what_to_do() {
    let s = Setup::new();
    ok(&esdk(s.path(), &["encrypt", "-i", "data.bin", "-o", "data.esdk", "--raw-aes-key", AES]));

    // Wrong key: names the EDK and the configured key.
    let e = err(&esdk(
        s.path(),
        &["decrypt", "-i", "data.esdk", "-o", "o1", "--raw-aes-key", "namespace=ns,name=other,file=other.key"],
    ));
    assert!(e.contains("ns/k") && e.contains("ns/other") && e.contains("hint:"), "{e}");
    assert!(!s.exists("o1"));

    // Tampered ciphertext: non-zero exit, no output file, no partial file.
    let mut tampered = s.read("data.esdk");
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0x40;
    std::fs::write(s.path().join("tampered.esdk"), tampered).unwrap();
    let e = err(&esdk(s.path(), &["decrypt", "-i", "tampered.esdk", "-o", "o2", "--raw-aes-key", AES]));
    assert!(e.contains("authentication failed"), "{e}");
    let leftovers: Vec<_> = std::fs::read_dir(s.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("o2") || n.contains("esdk-partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Truncated message.
    let whole = s.read("data.esdk");
    std::fs::write(s.path().join("short.esdk"), &whole[..whole.len() - 10]).unwrap();
    let e = err(&esdk(s.path(), &["decrypt", "-i", "short.esdk", "-o", "o3", "--raw-aes-key", AES]));
    assert!(e.contains("truncated message"), "{e}");
    assert!(!s.exists("o3"));

    // Context mismatch: a pair the message carries with another value is refused as such...
    ok(&esdk(s.path(), &["encrypt", "-i", "data.bin", "-o", "ctx.esdk", "--raw-aes-key", AES, "-c", "tenant=42"]));
    let e = err(&esdk(s.path(), &["decrypt", "-i", "ctx.esdk", "-o", "o4", "--raw-aes-key", AES, "-c", "tenant=1"]));
    assert!(e.contains("encryption context mismatch"), "{e}");
    // ...and a pair it does not carry is a required-only pair (spec: reproduced encryption
    // context), which changes what the data key was wrapped under: no key unwraps.
    let e = err(&esdk(s.path(), &["decrypt", "-i", "data.esdk", "-o", "o4", "--raw-aes-key", AES, "-c", "tenant=1"]));
    assert!(e.contains("no keyring could decrypt") && e.contains("different encryption context"), "{e}");
    assert!(!s.exists("o4"));

    // No clobber.
    std::fs::write(s.path().join("exists"), b"keep me").unwrap();
    let e = err(&esdk(s.path(), &["decrypt", "-i", "data.esdk", "-o", "exists", "--raw-aes-key", AES]));
    assert!(e.contains("--overwrite"), "{e}");
    assert_eq!(s.read("exists"), b"keep me");

    // Too many EDKs: refused before any key is used.
    let other = "namespace=ns,name=other,file=other.key";
    ok(&esdk(s.path(), &["encrypt", "-i", "data.bin", "-o", "two.esdk", "--raw-aes-key", AES, "--raw-aes-key", other]));
    let e = err(&esdk(
        s.path(),
        &["decrypt", "-i", "two.esdk", "-o", "o5", "--raw-aes-key", AES, "--max-encrypted-data-keys", "1"],
    ));
    assert!(e.contains("maximum of 1"), "{e}");
    ok(&esdk(s.path(), &["decrypt", "-i", "two.esdk", "-o", "o5", "--raw-aes-key", other]));

    // Bad arguments: one line with what is accepted.
    for (args, needle) in [
        (&["encrypt", "-i", "data.bin", "-o", "x", "--raw-aes-key", "namespace=ns,name=k"][..], "file="),
        (&["encrypt", "-i", "data.bin", "-o", "x"][..], "no key given"),
        (
            &["encrypt", "-i", "data.bin", "-o", "x", "--raw-aes-key", AES, "--algorithm", "0x0099"][..],
            "unknown algorithm",
        ),
        (&["encrypt", "-i", "data.bin", "-o", "x", "--raw-aes-key", AES, "-c", "aws-crypto-x=1"][..], "reserved"),
        (&["encrypt", "-i", "data.bin", "-o", "x", "-w", "discovery=true"][..], "cannot encrypt"),
        (&["encrypt", "-i", "missing.bin", "-o", "x", "--raw-aes-key", AES][..], "does not exist"),
        (&["decrypt", "-i", "data.esdk", "-o", "x", "-w", "key=alias/mine"][..], "key ARNs"),
        (&["decrypt", "-i", "data.esdk", "-o", "x", "-w", "colour=blue"][..], "unknown wrapping-keys attribute"),
        (
            &[
                "encrypt",
                "-i",
                "data.bin",
                "-o",
                "x",
                "--raw-rsa-key",
                "namespace=n,name=r,file=rsa-public.pem,padding=md5",
            ][..],
            "padding",
        ),
    ] {
        let out = esdk(s.path(), args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
fn kms_mrk_round_trip_through_the_local_endpoint() {
    let env = esdk_testkit::aws::Endpoint::from_env();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b) = rt.block_on(env.create_mrk("us-east-1", "us-west-2"));
    let s = Setup::new();
    ok(&esdk(
        s.path(),
        &["encrypt", "-i", "data.bin", "-o", "k.esdk", "-w", &format!("key={a}"), "-c", "stream=orders"],
    ));
    // Decrypt in B with only the replica allow-listed.
    let out = esdk(
        s.path(),
        &[
            "decrypt",
            "-i",
            "k.esdk",
            "-o",
            "k.out",
            "-w",
            &format!("key={b}"),
            "-c",
            "stream=orders",
            "--metadata-output",
            "-",
        ],
    );
    let meta: serde_json::Value = serde_json::from_str(ok(&out).trim()).unwrap();
    assert_eq!(meta["decrypted_with"]["provider_info"], a.as_str());
    assert_eq!(s.read("k.out"), s.read("data.bin"));
    // An unrelated key: refused with the EDK ARN and a --wrapping-keys hint.
    let other = rt.block_on(env.create_key("us-west-2"));
    let e = err(&esdk(s.path(), &["decrypt", "-i", "k.esdk", "-o", "k2.out", "-w", &format!("key={other}")]));
    assert!(e.contains(&format!("--wrapping-keys key={a}")), "{e}");
    // Discovery with a filter for another account is refused; the right account works.
    let e = err(&esdk(
        s.path(),
        &[
            "decrypt",
            "-i",
            "k.esdk",
            "-o",
            "k3.out",
            "-w",
            "discovery=true",
            "discovery-account=999999999999",
            "discovery-partition=aws",
        ],
    ));
    assert!(e.contains("999999999999"), "{e}");
    ok(&esdk(
        s.path(),
        &[
            "decrypt",
            "-i",
            "k.esdk",
            "-o",
            "k4.out",
            "-w",
            "discovery=true",
            "discovery-account=123456789012",
            "discovery-partition=aws",
            "discovery-region=us-west-2",
        ],
    ));
    assert_eq!(s.read("k4.out"), s.read("data.bin"));
}

#[test]
#[ignore = "needs the official Python ESDK: run scripts/test"]
fn cli_files_interoperate_with_the_python_esdk() {
    let py = esdk_testkit::interop_python();
    let s = Setup::new();
    // CLI → Python: a manifest over files the CLI wrote.
    let mut tests = serde_json::Map::new();
    for (i, (suite, frame)) in [("0x0478", "1"), ("0x0578", "4096"), ("0x0478", "1048576")].iter().enumerate() {
        let name = format!("cli-{i}");
        ok(&esdk(
            s.path(),
            &[
                "encrypt",
                "-i",
                "data.bin",
                "-o",
                &name,
                "--raw-aes-key",
                "namespace=cli-ns,name=aes-256,file=aes.key",
                "--algorithm",
                suite,
                "--frame-length",
                frame,
                "-c",
                "origin=cli",
            ],
        ));
        tests.insert(
            name.clone(),
            serde_json::json!({
                "ciphertext": format!("file://{name}"),
                "master-keys": [{"type": "raw", "encryption-algorithm": "aes", "provider-id": "cli-ns", "key": "k"}],
                "commitment-policy": "REQUIRE_ENCRYPT_REQUIRE_DECRYPT",
                "encryption-context": {"origin": "cli"},
                "result": {"output": {"plaintext": "file://data.bin"}},
            }),
        );
    }
    use base64::Engine as _;
    let keys = serde_json::json!({"keys": {"k": {"type": "symmetric", "key-id": "aes-256",
        "material": base64::engine::general_purpose::STANDARD.encode([0x11u8; 32])}}});
    std::fs::write(s.path().join("keys.json"), keys.to_string()).unwrap();
    let manifest = serde_json::json!({"manifest": {"type": "awses-decrypt", "version": 4}, "keys": "file://keys.json", "tests": tests});
    std::fs::write(s.path().join("manifest.json"), manifest.to_string()).unwrap();
    let out = esdk_testkit::run_python(&py, &["decrypt", s.path().to_str().unwrap()]);
    assert_eq!(out.lines().last().unwrap_or_default(), "3 passed, 0 failed", "{out}");

    // Python → CLI: the Python driver's AES-256 messages (key bytes 0..31, namespace py-ns).
    let py_dir = tempfile::tempdir().unwrap();
    esdk_testkit::run_python(&py, &["encrypt", py_dir.path().to_str().unwrap()]);
    let key: Vec<u8> = (0..32).collect();
    std::fs::write(s.path().join("py.key"), key).unwrap();
    let mut n = 0;
    for entry in std::fs::read_dir(py_dir.path().join("ciphertexts")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.contains("-aes256-") || !(name.starts_with("py-0478") || name.starts_with("py-0578")) {
            continue;
        }
        let plain = name.rsplit('-').next().unwrap().to_owned();
        let out_name = format!("{name}.out");
        ok(&esdk(
            s.path(),
            &[
                "decrypt",
                "-i",
                path.to_str().unwrap(),
                "-o",
                &out_name,
                "--raw-aes-key",
                "namespace=py-ns,name=aes-256,file=py.key",
            ],
        ));
        assert_eq!(s.read(&out_name), std::fs::read(py_dir.path().join("plaintexts").join(plain)).unwrap(), "{name}");
        n += 1;
    }
    assert!(n >= 3, "only {n} Python messages matched");
}

#[test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
fn caching_cuts_kms_calls_for_multi_file_runs() {
    let env = esdk_testkit::aws::Endpoint::from_env();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A Region no other test uses, so the endpoint's counters are this test's.
    let key = rt.block_on(env.create_key("eu-central-1"));
    let s = Setup::new();
    std::fs::create_dir_all(s.path().join("many")).unwrap();
    for i in 0..20 {
        std::fs::write(s.path().join(format!("many/{i:02}.json")), format!("{{\"Key\": {i}}}")).unwrap();
    }
    let caching = ["--caching", "capacity=10", "max_age=300", "max_messages_encrypted=100"];
    let wk = format!("key={key}");
    let mut args = vec!["encrypt", "-r", "-i", "many", "-o", "enc", "-w", &wk];
    args.extend(caching);
    ok(&esdk(s.path(), &args));
    let mut args = vec!["decrypt", "-r", "-i", "enc", "-o", "dec", "-w", &wk];
    args.extend(caching);
    ok(&esdk(s.path(), &args));
    assert_eq!(s.read("dec/00.json.encrypted.decrypted"), b"{\"Key\": 0}");
    let stats = rt.block_on(env.stats());
    assert_eq!(stats.get("eu-central-1:TrentService.GenerateDataKey"), Some(&1), "{stats:?}");
    assert_eq!(stats.get("eu-central-1:TrentService.Decrypt"), Some(&1), "{stats:?}");
    // Bad caching attributes are one clear line.
    let e = err(&esdk(
        s.path(),
        &["encrypt", "-i", "data.bin", "-o", "x", "--raw-aes-key", AES, "--caching", "capacity=0"],
    ));
    assert!(e.contains("capacity"), "{e}");
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

fn partials(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().ends_with(".esdk-partial"))
        .filter(|p| !std::fs::symlink_metadata(p).unwrap().file_type().is_symlink())
        .collect()
}

/// Outputs are written to a private temporary file (mode 0600 whatever the umask) and renamed into
/// place: a symlink at the output path is refused, or with `--overwrite` replaced, never written
/// through; metadata files the same.
#[test]
fn outputs_are_private_and_never_written_through_a_symlink() {
    let s = Setup::new();
    ok(&esdk(s.path(), &["encrypt", "-i", "data.bin", "-o", "data.esdk", "--raw-aes-key", AES]));
    let umask0 = |args: &str| {
        let script = format!("umask 000 && exec \"$0\" {args}");
        Command::new("sh").arg("-c").arg(script).arg(env!("CARGO_BIN_EXE_esdk")).current_dir(s.path()).output().unwrap()
    };
    ok(&umask0(&format!("decrypt -i data.esdk -o plain.bin --raw-aes-key {AES} --metadata-output meta.json")));
    assert_eq!(s.read("plain.bin"), s.read("data.bin"));
    assert_eq!(mode(&s.path().join("plain.bin")), 0o600, "plaintext is not readable by others, umask 000");
    assert_eq!(mode(&s.path().join("meta.json")), 0o600);
    assert!(String::from_utf8(s.read("meta.json")).unwrap().contains("\"mode\":\"decrypt\""));

    std::fs::write(s.path().join("victim.txt"), b"untouched").unwrap();
    for link in ["out.bin", "meta-link.json"] {
        std::os::unix::fs::symlink("victim.txt", s.path().join(link)).unwrap();
    }
    std::os::unix::fs::symlink("nowhere/x", s.path().join("dangling")).unwrap();
    let e = err(&esdk(s.path(), &["decrypt", "-i", "data.esdk", "-o", "out.bin", "--raw-aes-key", AES]));
    assert!(e.contains("already exists") && e.contains("--overwrite"), "{e}");
    let e = err(&esdk(s.path(), &["decrypt", "-i", "data.esdk", "-o", "dangling", "--raw-aes-key", AES]));
    assert!(e.contains("already exists"), "a dangling symlink counts as existing: {e}");
    assert!(!s.path().join("nowhere").exists(), "nothing was created through the dangling link");
    let e = err(&esdk(
        s.path(),
        &["decrypt", "-i", "data.esdk", "-o", "p2", "--raw-aes-key", AES, "--metadata-output", "meta-link.json"],
    ));
    assert!(e.contains("meta-link.json") && e.contains("already exists"), "{e}");
    assert_eq!(s.read("victim.txt"), b"untouched");

    // --overwrite replaces the link itself; the file it pointed to is left alone.
    ok(&esdk(s.path(), &["decrypt", "-i", "data.esdk", "-o", "out.bin", "--raw-aes-key", AES, "--overwrite"]));
    assert!(std::fs::symlink_metadata(s.path().join("out.bin")).unwrap().file_type().is_file());
    assert_eq!(s.read("out.bin"), s.read("data.bin"));
    assert_eq!(s.read("victim.txt"), b"untouched");
    assert!(partials(s.path()).is_empty());
}

/// Ctrl-C / SIGTERM mid-write removes the partial output; the partial file is private while it is
/// written, and its name is random and created exclusively, so a file or symlink planted at a
/// name seen before is never opened.
#[test]
fn an_interrupted_run_removes_its_partial_output_and_never_opens_a_planted_name() {
    use std::os::unix::process::ExitStatusExt;
    let s = Setup::new();
    std::fs::write(s.path().join("victim.txt"), b"untouched").unwrap();
    let run_and_interrupt = |signal: &str| -> PathBuf {
        let mut child = Command::new(env!("CARGO_BIN_EXE_esdk"))
            .current_dir(s.path())
            .args(["encrypt", "-i", "-", "-o", "out.esdk", "--raw-aes-key", AES])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Half a message on stdin, the pipe left open: the run is mid-write.
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, &[7u8; 100_000]).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let partial = loop {
            if let [p] = &partials(s.path())[..] {
                break p.clone();
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("esdk exited ({status}) before it was interrupted");
            }
            assert!(std::time::Instant::now() < deadline, "no partial output appeared");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(mode(&partial), 0o600, "private while it is written");
        let status = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let out = child.wait_with_output().unwrap();
        drop(stdin);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let signo = if signal == "-INT" { 2 } else { 15 };
        assert_eq!(out.status.code(), Some(128 + signo), "{stderr} {:?}", out.status.signal());
        assert!(stderr.contains("partial output file(s) removed"), "{stderr}");
        assert!(partials(s.path()).is_empty(), "partial output left behind");
        assert!(!s.exists("out.esdk"));
        partial
    };
    let first = run_and_interrupt("-TERM");
    let name = first.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(".out.esdk.") && name.len() > ".out.esdk..esdk-partial".len(), "{name}");
    // Plant a symlink at the name the first run used: the next run picks another name.
    std::os::unix::fs::symlink("victim.txt", &first).unwrap();
    let second = run_and_interrupt("-INT");
    assert_ne!(second, first);
    assert_eq!(s.read("victim.txt"), b"untouched");
}

/// Recursive mode does not follow symlinks: a link to a parent directory is no loop, and a link
/// out of the tree is not read.
#[test]
fn recursive_mode_skips_symlinks_so_loops_and_escapes_are_impossible() {
    let s = Setup::new();
    std::fs::create_dir_all(s.path().join("in/sub")).unwrap();
    std::fs::write(s.path().join("in/a.txt"), b"alpha").unwrap();
    std::fs::write(s.path().join("in/sub/b.txt"), b"beta").unwrap();
    std::fs::write(s.path().join("outside.txt"), b"not part of the tree").unwrap();
    std::os::unix::fs::symlink("..", s.path().join("in/sub/up")).unwrap();
    std::os::unix::fs::symlink(".", s.path().join("in/self")).unwrap();
    std::os::unix::fs::symlink("../outside.txt", s.path().join("in/escape.txt")).unwrap();
    let out = esdk(s.path(), &["encrypt", "-r", "-i", "in", "-o", "enc", "--raw-aes-key", AES]);
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for link in ["in/sub/up", "in/self", "in/escape.txt"] {
        assert!(stderr.contains(&format!("skipped {link}: a symlink")), "{link}: {stderr}");
    }
    let mut written: Vec<String> = Vec::new();
    let mut stack = vec![s.path().join("enc")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                written.push(p.strip_prefix(s.path()).unwrap().display().to_string());
            }
        }
    }
    written.sort();
    assert_eq!(written, ["enc/a.txt.encrypted", "enc/sub/b.txt.encrypted"]);
}

#[test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
fn kms_rsa_key_encrypts_locally_and_decrypts_through_kms() {
    let env = esdk_testkit::aws::Endpoint::from_env();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (arn, pem) = rt.block_on(env.create_rsa_key("ca-west-1", 2048));
    let s = Setup::new();
    std::fs::write(s.path().join("kms-rsa.pem"), pem).unwrap();
    let spec = format!("key={arn},algorithm=RSAES_OAEP_SHA_256,public-key=kms-rsa.pem");
    let unsigned = ["--algorithm", "AES_256_GCM_HKDF_SHA512_COMMIT_KEY"];
    ok(&esdk(
        s.path(),
        &[&["encrypt", "-i", "data.bin", "-o", "r.esdk", "--kms-rsa-key", &spec][..], &unsigned].concat(),
    ));
    let out = esdk(
        s.path(),
        &[
            "decrypt",
            "-i",
            "r.esdk",
            "-o",
            "r.out",
            "--kms-rsa-key",
            &format!("key={arn},algorithm=RSAES_OAEP_SHA_256"),
            "--metadata-output",
            "-",
        ],
    );
    let meta: serde_json::Value = serde_json::from_str(ok(&out).trim()).unwrap();
    assert_eq!(meta["decrypted_with"]["provider_id"], "aws-kms-rsa");
    assert_eq!(s.read("r.out"), s.read("data.bin"));

    // Encrypting without the public key, decrypting with an alias, or a signing suite: refused
    // with what to do.
    let e = err(&esdk(
        s.path(),
        &[
            "encrypt",
            "-i",
            "data.bin",
            "-o",
            "x.esdk",
            "--kms-rsa-key",
            &format!("key={arn},algorithm=RSAES_OAEP_SHA_1"),
        ],
    ));
    assert!(e.contains("public-key=PEM"), "{e}");
    let e = err(&esdk(
        s.path(),
        &["decrypt", "-i", "r.esdk", "-o", "x.out", "--kms-rsa-key", "key=alias/orders,algorithm=RSAES_OAEP_SHA_1"],
    ));
    assert!(e.contains("needs the key ARN"), "{e}");
    let e = err(&esdk(s.path(), &["encrypt", "-i", "data.bin", "-o", "y.esdk", "--kms-rsa-key", &spec]));
    assert!(e.contains("signing suite") && e.contains("--algorithm AES_256_GCM_HKDF_SHA512_COMMIT_KEY"), "{e}");
    // Another RSA key: the hint names the EDK's key and the flag to pass it with.
    let (other, _) = rt.block_on(env.create_rsa_key("ca-west-1", 2048));
    let e = err(&esdk(
        s.path(),
        &[
            "decrypt",
            "-i",
            "r.esdk",
            "-o",
            "z.out",
            "--kms-rsa-key",
            &format!("key={other},algorithm=RSAES_OAEP_SHA_256"),
        ],
    ));
    assert!(e.contains(&format!("--kms-rsa-key key={arn},algorithm=")), "{e}");
    let e = err(&esdk(
        s.path(),
        &["decrypt", "-i", "r.esdk", "-o", "x.out", "--kms-rsa-key", &format!("key={arn},algorithm=RSAES_PKCS1")],
    ));
    assert!(e.contains("algorithm=RSAES_PKCS1: expected key=ARN,algorithm=RSAES_OAEP_SHA_256"), "{e}");
}

/// `esdk keystore` makes a store and a branch key, `--hierarchy` encrypts and decrypts with it,
/// and the official MPL reads the CLI's message and writes one the CLI reads.
#[test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
fn keystore_commands_and_the_hierarchy_flag_work_with_the_official_mpl() {
    let env = esdk_testkit::aws::Endpoint::from_env();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let arn = rt.block_on(env.create_key("eu-west-2"));
    let s = Setup::new();
    let store = ["--table", "cli-branch-keys", "--kms-key", &arn];
    let table_arn = ok(&esdk(s.path(), &[&["keystore", "create-store"][..], &store].concat()));
    assert!(table_arn.trim().ends_with("table/cli-branch-keys"), "{table_arn}");
    let out = ok(&esdk(s.path(), &[&["keystore", "create-key"][..], &store, &["-c", "tenant=acme"]].concat()));
    let id = out.lines().last().unwrap().to_owned();
    assert_eq!(id.len(), 36, "{out}");
    let version = ok(&esdk(s.path(), &[&["keystore", "version-key"][..], &store, &["--branch-key-id", &id]].concat()));
    assert_eq!(version.trim().len(), 36, "{version}");
    let e = err(&esdk(s.path(), &[&["keystore", "create-key"][..], &store, &["--branch-key-id", "mine"]].concat()));
    assert!(e.contains("needs an encryption context"), "{e}");

    let spec = format!("key-store=cli-branch-keys,kms-key={arn},branch-key-id={id}");
    ok(&esdk(s.path(), &["encrypt", "-i", "data.bin", "-o", "r.esdk", "-c", "stream=orders", "--hierarchy", &spec]));
    let out =
        esdk(s.path(), &["decrypt", "-i", "r.esdk", "-o", "r.out", "--hierarchy", &spec, "--metadata-output", "-"]);
    let meta: serde_json::Value = serde_json::from_str(ok(&out).trim()).unwrap();
    assert_eq!(meta["decrypted_with"]["provider_id"], "aws-kms-hierarchy");
    assert_eq!(s.read("r.out"), s.read("data.bin"));

    // The official MPL's Hierarchical keyring on the same store: it reads ours, we read its.
    let dir = s.path().join("interop");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(s.path().join("r.esdk"), dir.join("cli.rust")).unwrap();
    std::fs::copy(s.path().join("data.bin"), dir.join("plaintext")).unwrap();
    std::fs::write(dir.join("context.json"), r#"{"stream": "orders"}"#).unwrap();
    std::fs::write(dir.join("suites.json"), "[1400]").unwrap();
    let py = esdk_testkit::interop_python();
    let args = ["hierarchy", "cli-branch-keys", &arn, "cli-branch-keys", &id, dir.to_str().unwrap()];
    let out = esdk_testkit::run_python_script(&py, "mpl_python.py", &args);
    assert_eq!(out.lines().last(), Some("2 passed, 0 failed"), "{out}");
    let theirs = dir.join("0578.python");
    ok(&esdk(s.path(), &["decrypt", "-i", theirs.to_str().unwrap(), "-o", "p.out", "--hierarchy", &spec]));
    assert_eq!(s.read("p.out"), s.read("data.bin"));

    // Another branch key: the hint names the EDK's branch key and the flag to pass it with.
    let other = ok(&esdk(s.path(), &[&["keystore", "create-key"][..], &store, &["-c", "tenant=globex"]].concat()));
    let other = other.lines().last().unwrap();
    let wrong = format!("key-store=cli-branch-keys,kms-key={arn},branch-key-id={other}");
    let e = err(&esdk(s.path(), &["decrypt", "-i", "r.esdk", "-o", "x.out", "--hierarchy", &wrong]));
    assert!(e.contains(&format!("--hierarchy key-store=TABLE,kms-key=ARN,branch-key-id={id}")), "{e}");
    // The right branch key under the wrong logical name: KMS refuses the unwrap, and the hint
    // points at the store, not at another --hierarchy.
    let misnamed = format!("{spec},logical-name=other-name");
    let e = err(&esdk(s.path(), &["decrypt", "-i", "r.esdk", "-o", "x.out", "--hierarchy", &misnamed]));
    assert!(e.contains("GetBranchKeyVersion") && e.contains("check the key store table, its logical name"), "{e}");
    // A logical name of its own, the table's Region and a TTL given explicitly.
    let named = [&store[..], &["--logical-name", "orders-keys", "--region", "eu-west-2"]].concat();
    let out = ok(&esdk(s.path(), &[&["keystore", "create-key"][..], &named, &["-c", "tenant=initech"]].concat()));
    let initech = out.lines().last().unwrap();
    let full = format!(
        "key-store=cli-branch-keys,kms-key={arn},branch-key-id={initech},logical-name=orders-keys,ttl=60,region=eu-west-2"
    );
    ok(&esdk(s.path(), &["encrypt", "-i", "data.bin", "-o", "n.esdk", "--hierarchy", &full]));
    ok(&esdk(s.path(), &["decrypt", "-i", "n.esdk", "-o", "n.out", "--hierarchy", &full]));
    assert_eq!(s.read("n.out"), s.read("data.bin"));
    // A table that does not exist: the error names it and the branch key.
    let missing = format!("key-store=no-such-table,kms-key={arn},branch-key-id={id}");
    let e = err(&esdk(s.path(), &["encrypt", "-i", "data.bin", "-o", "y.esdk", "--hierarchy", &missing]));
    assert!(e.contains("no-such-table") && e.contains(&id) && e.contains("GetItem"), "{e}");
}
