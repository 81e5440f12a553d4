//! `esdk` as a drop-in for the official `aws-encryption-cli` (PyPI `aws-encryption-sdk-cli`
//! 4.3.0, installed by `scripts/setup-aws-encryption-cli`), over KMS on the local endpoint:
//! messages each writes decrypt with the other, the metadata records agree field for field, and
//! the official tool's documented command lines give the same exit status, the same output files
//! and the same plaintexts with either program — except where the official tool is unsafe (it
//! exits 0 after an encryption context mismatch; `esdk` exits 1).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use esdk_testkit::aws::Endpoint;
use serde_json::Value;

/// The official program (`ESDK_OFFICIAL_CLI`, set by `scripts/test`, or the repository's venv).
fn official_cli() -> PathBuf {
    if let Some(p) = std::env::var_os("ESDK_OFFICIAL_CLI") {
        return p.into();
    }
    let venv = esdk_testkit::repo_root().join(".venv-cli/bin/aws-encryption-cli");
    if venv.is_file() {
        return venv;
    }
    esdk_testkit::missing("aws-encryption-cli 4.3.0 (run scripts/setup-aws-encryption-cli, or set ESDK_OFFICIAL_CLI)")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    Official,
    Esdk,
}

struct Env {
    endpoint: Endpoint,
    region: &'static str,
    arn: String,
    /// Messages the official tool wrote once, copied into the scratch directories that need them.
    encrypted: std::sync::OnceLock<tempfile::TempDir>,
}

impl Env {
    fn new(region: &'static str) -> Self {
        let endpoint = Endpoint::from_env();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let arn = rt.block_on(endpoint.create_key(region));
        Self { endpoint, region, arn, encrypted: std::sync::OnceLock::new() }
    }

    /// Runs `tool` in `dir` with `args` (`{ARN}` replaced by the key ARN) and `stdin`.
    fn run(&self, tool: Tool, dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let program = match tool {
            Tool::Official => official_cli(),
            Tool::Esdk => PathBuf::from(env!("CARGO_BIN_EXE_esdk")),
        };
        let args: Vec<String> = args.iter().map(|a| a.replace("{ARN}", &self.arn)).collect();
        let mut cmd = self.endpoint.command(program);
        cmd.current_dir(dir)
            .args(&args)
            .env("AWS_DEFAULT_REGION", self.region)
            .env("AWS_REGION", self.region)
            .env("KEY_ARN", &self.arn)
            // A named profile for `profile=` (scratch() writes the files).
            .env("AWS_CONFIG_FILE", dir.join("aws.conf"))
            .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("aws-credentials.conf"));
        esdk_testkit::output_with_stdin(&mut cmd, stdin.unwrap_or_default())
    }

    fn ok(&self, tool: Tool, dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
        let out = self.run(tool, dir, args, stdin);
        assert!(out.status.success(), "{tool:?} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }
}

/// Every file under `dir` (relative path → contents), metadata files and argument files left out.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                if !rel.ends_with(".json") && !rel.ends_with(".conf") {
                    out.insert(rel, std::fs::read(&p).unwrap());
                }
            }
        }
    }
    out
}

/// The metadata lines of `file`, parsed.
fn metadata(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// A metadata record with what differs between two runs of the same command (message ids, data
/// keys, commitment values, signing keys, the scratch directory) replaced by its shape.
fn shape(v: &Value, dir: &Path) -> Value {
    let dir = dir.display().to_string();
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        "message_id" | "commitment_key" | "encrypted_data_key" | "tag" | "aws-crypto-public-key" => {
                            Value::String(if v.is_null() { "null" } else { "<varies>" }.into())
                        }
                        _ => shape(v, Path::new(&dir)),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| shape(v, Path::new(&dir))).collect()),
        Value::String(s) => Value::String(s.replace(&dir, "<dir>")),
        other => other.clone(),
    }
}

/// A scratch directory with the inputs the documented command lines use.
fn scratch(env: &Env) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("hello.txt"), b"Hello, World!\n").unwrap();
    std::fs::create_dir_all(p.join("tree/sub/deeper")).unwrap();
    std::fs::write(p.join("tree/a.txt"), b"alpha\n").unwrap();
    std::fs::write(p.join("tree/b.log"), vec![7u8; 10_000]).unwrap();
    std::fs::write(p.join("tree/sub/c.txt"), b"gamma\n").unwrap();
    std::fs::write(p.join("tree/sub/deeper/d.txt"), (0..=255u8).cycle().take(70_000).collect::<Vec<_>>()).unwrap();
    std::fs::create_dir(p.join("out")).unwrap();
    // Arguments from a file, with a comment and a variable (the official docs' "configuration file").
    std::fs::write(p.join("keys.conf"), "# the key\n--wrapping-keys key=$KEY_ARN\n").unwrap();
    std::fs::write(p.join("aws.conf"), format!("[profile p]\nregion = {}\n", env.region)).unwrap();
    std::fs::write(
        p.join("aws-credentials.conf"),
        "[p]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .unwrap();
    dir
}

#[test]
#[ignore = "needs the local AWS endpoint and aws-encryption-cli 4.3.0: run scripts/test"]
fn messages_written_by_either_decrypt_with_the_other_and_their_metadata_agree() {
    let env = Env::new("ap-northeast-2");
    let dir = scratch(&env);
    let p = dir.path();
    for (writer, reader) in [(Tool::Official, Tool::Esdk), (Tool::Esdk, Tool::Official)] {
        for extra in [
            &[][..],
            &["--algorithm", "AES_256_GCM_HKDF_SHA512_COMMIT_KEY", "--frame-length", "1024"],
            &[
                "--commitment-policy",
                "forbid-encrypt-allow-decrypt",
                "--algorithm",
                "AES_128_GCM_IV12_TAG16_HKDF_SHA256",
            ],
        ] {
            let _ = std::fs::remove_file(p.join("w.json"));
            let _ = std::fs::remove_file(p.join("r.json"));
            let mut enc = vec!["-e", "-i", "tree/sub/deeper/d.txt", "-o", "m.enc", "-w", "key={ARN}"];
            enc.extend(["--metadata-output", "w.json", "-c", "purpose=interop", "team=ü"]);
            enc.extend_from_slice(extra);
            env.ok(writer, p, &enc, None);
            let policy = if extra.contains(&"forbid-encrypt-allow-decrypt") {
                "require-encrypt-allow-decrypt"
            } else {
                "require-encrypt-require-decrypt"
            };
            let dec = [
                "-d",
                "-i",
                "m.enc",
                "-o",
                "m.dec",
                "-w",
                "key={ARN}",
                "--metadata-output",
                "r.json",
                "-c",
                "purpose=interop",
                "--commitment-policy",
                policy,
            ];
            env.ok(reader, p, &dec, None);
            assert_eq!(
                std::fs::read(p.join("m.dec")).unwrap(),
                std::fs::read(p.join("tree/sub/deeper/d.txt")).unwrap()
            );
            // The same message's header, recorded by the writer on encrypt and by the reader on
            // decrypt: every field equal, byte strings included.
            let (w, r) = (metadata(&p.join("w.json")), metadata(&p.join("r.json")));
            assert_eq!((w.len(), r.len()), (1, 1));
            assert_eq!(w[0]["header"], r[0]["header"], "{writer:?} → {reader:?} {extra:?}");
            assert_eq!((w[0]["mode"].as_str(), r[0]["mode"].as_str()), (Some("encrypt"), Some("decrypt")));
            assert!(r[0]["header_auth"]["tag"].is_string(), "{}", r[0]);
            // Both spell a line the same way (Python's json.dumps): compare the writer's line with
            // what the other program writes for it.
            let line = std::fs::read_to_string(p.join("w.json")).unwrap();
            assert!(line.contains("\"team\": \"\\u00fc\""), "{line}");
        }
        // Pipes, base64 both ways.
        let enc =
            env.ok(writer, p, &["-e", "-i", "-", "-o", "-", "-w", "key={ARN}", "-S", "--encode"], Some(b"piped\n"));
        assert!(enc.iter().all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()), "base64 expected");
        let dec = env.ok(reader, p, &["-d", "-i", "-", "-o", "-", "-w", "key={ARN}", "-S", "--decode"], Some(&enc));
        assert_eq!(dec, b"piped\n");
    }
}

/// What one program did with one command line.
#[derive(Debug, PartialEq)]
struct Outcome {
    code: Option<i32>,
    files: BTreeMap<String, Vec<u8>>,
    metadata: Vec<Value>,
}

/// Puts a case's inputs into a scratch directory.
type Prepare = dyn Fn(&Env, &Path);

/// Asserts that both programs did the same, naming the first difference.
fn assert_same(official: &Outcome, esdk: &Outcome, args: &[&str]) {
    assert_eq!(official.code, esdk.code, "exit status of {args:?}");
    let names = |o: &Outcome| o.files.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(official), names(esdk), "files after {args:?}");
    for (name, bytes) in &official.files {
        assert!(esdk.files[name] == *bytes, "{name} differs after {args:?}");
    }
    assert_eq!(official.metadata.len(), esdk.metadata.len(), "metadata lines of {args:?}");
    for (o, e) in official.metadata.iter().zip(&esdk.metadata) {
        assert_eq!(o, e, "metadata of {args:?}:\n official {o}\n esdk     {e}");
    }
}

/// Runs `args` with both programs, each in its own scratch directory prepared by `prepare`, and
/// returns both outcomes. Encrypted outputs are decrypted again (by the official tool) before they
/// are compared, since the same command encrypts to different bytes each time.
fn both(env: &Env, args: &[&str], prepare: &Prepare) -> (Outcome, Outcome) {
    let run = |tool| {
        let dir = scratch(env);
        let p = dir.path();
        prepare(env, p);
        let out = env.run(tool, p, args, None);
        let mut files = tree(p);
        for (name, bytes) in files.iter_mut() {
            if !(name.starts_with("out/") || name.starts_with("enc/")) {
                continue;
            }
            // ESDK messages (version byte 1 or 2), binary or base64: compared by their plaintext.
            let base64 = bytes.starts_with(b"AgV4") || bytes.starts_with(b"AYA");
            if matches!(bytes.first(), Some(1 | 2)) || base64 {
                // Read back with esdk's own subcommand (fast; the test above proves it reads what
                // the official tool writes, and the reverse).
                let mut dec = vec!["decrypt", "-i", name.as_str(), "-o", "-", "-w", "key={ARN}"];
                dec.extend(["--commitment-policy", "require-encrypt-allow-decrypt"]);
                if base64 {
                    dec.push("--decode");
                }
                *bytes = env.ok(Tool::Esdk, p, &dec, None);
            }
        }
        // In the order of the inputs' names: the official tool walks directories in the order the
        // file system lists them.
        let mut metadata: Vec<Value> = metadata(&p.join("meta.json")).iter().map(|m| shape(m, p)).collect();
        metadata.sort_by_key(|m| m["input"].to_string());
        let outcome = Outcome { code: out.status.code(), files, metadata };
        (outcome, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let ((official, official_err), (esdk, esdk_err)) = (run(Tool::Official), run(Tool::Esdk));
    eprintln!("{args:?}\n  official: {official_err}\n  esdk: {esdk_err}");
    (official, esdk)
}

/// The encrypted inputs and a metadata file with a line in it already.
fn existing_metadata(env: &Env, p: &Path) {
    encrypted_inputs(env, p);
    std::fs::write(p.join("meta.json"), "{\"earlier\": true}\n").unwrap();
}

/// `enc/`: `hello.txt` and the tree encrypted by the official tool (the inputs of decrypt cases),
/// written once and copied.
fn encrypted_inputs(env: &Env, p: &Path) {
    let template = env.encrypted.get_or_init(|| {
        let t = scratch(env);
        std::fs::create_dir(t.path().join("enc")).unwrap();
        let hello = ["-e", "-i", "hello.txt", "-o", "enc", "-w", "key={ARN}", "-S", "-c", "purpose=test"];
        env.ok(Tool::Official, t.path(), &hello, None);
        env.ok(Tool::Official, t.path(), &["-e", "-i", "tree", "-o", "enc", "-r", "-w", "key={ARN}", "-S"], None);
        t
    });
    for (name, bytes) in tree(&template.path().join("enc")) {
        let to = p.join("enc").join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, bytes).unwrap();
    }
}

#[test]
#[ignore = "needs the local AWS endpoint and aws-encryption-cli 4.3.0: run scripts/test"]
fn documented_command_lines_give_the_same_results_with_either_program() {
    let env = Env::new("ca-central-1");
    let none = |_: &Env, _: &Path| {};
    let existing = |env: &Env, p: &Path| {
        encrypted_inputs(env, p);
        std::fs::write(p.join("out/hello.txt.encrypted.decrypted"), b"old contents\n").unwrap();
    };
    let encrypt_cases: &[&str] = &[
        // File to directory, metadata to a file, an encryption context.
        "--encrypt --input hello.txt --output out --wrapping-keys key={ARN} --metadata-output meta.json --encryption-context purpose=test dept=IT",
        // A directory tree, recursively; -R spelling.
        "-e -i tree -o out -R -w key={ARN} --metadata-output meta.json",
        // A glob pattern (quoted, so the program expands it).
        "-e -i tree/*.txt -o out -w key={ARN} --metadata-output meta.json",
        // Custom suffix, and an empty one.
        "-e -i hello.txt -o out --suffix .enc -w key={ARN} -S",
        "-e -i tree/a.txt -o out --suffix -w key={ARN} -S",
        // A directory without -r: skipped with a warning, success.
        "-e -i tree -o out -w key={ARN} -S",
        // Arguments from a file with a variable in it.
        "-e -i hello.txt -o out/hello.enc @keys.conf --metadata-output meta.json -q",
        // Caching, frame length, legacy suite under the legacy policy; base64 output.
        "-e -i tree -o out -r -w key={ARN} -S --caching capacity=10 max_age=60 --frame-length 512 --encode",
        "-e -i hello.txt -o out/v1.enc -w key={ARN} -S --commitment-policy forbid-encrypt-allow-decrypt --algorithm AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384",
        // Key attributes: the plugin's provider name, a Region and grant tokens; flags given twice,
        // short flags clustered, -v, a bound on the EDK count that two keys exceed.
        "-e -i hello.txt -o out -w provider=aws-encryption-sdk-cli::aws-kms key={ARN} region=ca-central-1 grant_tokens=t1 -S -S -qr -v",
        "-e -i hello.txt -o out -w key={ARN} key={ARN} --max-encrypted-data-keys 1 -S",
        // A named profile's credentials and Region.
        "-e -i hello.txt -o out/p.enc -w key={ARN} profile=p -S",
        // Refused command lines: no metadata choice (usage, 2), a missing input (1), a file
        // output in a directory that does not exist (1), discovery on encrypt (usage, 2).
        "-e -i hello.txt -o out -w key={ARN}",
        "-e -i missing.txt -o out -w key={ARN} -S",
        "-e -i hello.txt -o nodir/x.enc -w key={ARN} -S",
        "-e -i hello.txt -o out -w discovery=true -S",
    ];
    for line in encrypt_cases {
        let args: Vec<&str> = line.split_whitespace().collect();
        let (official, esdk) = both(&env, &args, &none);
        assert_same(&official, &esdk, &args);
    }
    let decrypt_cases: &[(&str, &Prepare)] = &[
        (
            "-d -i enc/hello.txt.encrypted -o out -w key={ARN} --metadata-output meta.json -c purpose=test",
            &encrypted_inputs,
        ),
        (
            "--decrypt -i enc -o out -r -w key={ARN} --metadata-output meta.json --buffer",
            &encrypted_inputs,
        ),
        // Discovery, with a filter that matches the account and with one that does not.
        (
            "-d -i enc/hello.txt.encrypted -o out -w discovery=true discovery-partition=aws discovery-account=123456789012 -S",
            &encrypted_inputs,
        ),
        (
            "-d -i enc/hello.txt.encrypted -o out -w discovery=true discovery-partition=aws discovery-account=111122223333 -S",
            &encrypted_inputs,
        ),
        // The metadata file replaced instead of appended to; -b; the EDK bound met.
        (
            "-d -i enc/hello.txt.encrypted -o out -w key={ARN} --metadata-output meta.json --overwrite-metadata -b --max-encrypted-data-keys 1",
            &existing_metadata,
        ),
        // An existing output: replaced by default, kept with --no-overwrite (which wins over
        // --interactive).
        ("-d -i enc/hello.txt.encrypted -o out -w key={ARN} -S", &existing),
        ("-d -i enc/hello.txt.encrypted -o out -w key={ARN} -S --no-overwrite --interactive", &existing),
        // Signed messages refused by --decrypt-unsigned; frames over --max-length refused.
        (
            "--decrypt-unsigned -i enc/hello.txt.encrypted -o out -w key={ARN} -S",
            &encrypted_inputs,
        ),
        (
            "-d -i enc/hello.txt.encrypted -o out -w key={ARN} -S --max-length 100",
            &encrypted_inputs,
        ),
        // discovery=false with keys is a strict allow-list.
        ("-d -i enc/hello.txt.encrypted -o out -w discovery=false key={ARN} -S", &encrypted_inputs),
        // The required key is present (a key without a value on decrypt); another key is refused.
        (
            "-d -i enc/hello.txt.encrypted -o out -w key={ARN} --metadata-output meta.json -c purpose",
            &encrypted_inputs,
        ),
        (
            "-d -i enc/hello.txt.encrypted -o out -w key=arn:aws:kms:ca-central-1:123456789012:key/0b5a1a5e-0000-4000-8000-000000000000 -S",
            &encrypted_inputs,
        ),
    ];
    for (line, prepare) in decrypt_cases {
        let args: Vec<&str> = line.split_whitespace().collect();
        let (official, esdk) = both(&env, &args, *prepare);
        assert_same(&official, &esdk, &args);
    }
    // Where esdk is safer: a failed decrypt leaves an existing output as it was (the official
    // tool truncates it, then deletes it).
    let args = ["--decrypt-unsigned", "-i", "enc/hello.txt.encrypted", "-o", "out", "-w", "key={ARN}", "-S"];
    let (official, esdk) = both(&env, &args, &existing);
    assert_eq!((official.code, esdk.code), (Some(1), Some(1)));
    assert!(!official.files.contains_key("out/hello.txt.encrypted.decrypted"));
    assert_eq!(esdk.files["out/hello.txt.encrypted.decrypted"], b"old contents\n");
    // The documented exception: a context mismatch. The official tool records the skip, deletes
    // the output and exits 0; esdk records the same skip, leaves the output alone and exits 1.
    let args = [
        "-d",
        "-i",
        "enc/hello.txt.encrypted",
        "-o",
        "out",
        "-w",
        "key={ARN}",
        "--metadata-output",
        "meta.json",
        "-c",
        "purpose=other",
    ];
    let (official, esdk) = both(&env, &args, &encrypted_inputs);
    assert_eq!((official.code, esdk.code), (Some(0), Some(1)));
    assert_eq!(official.metadata, esdk.metadata);
    assert_eq!(official.metadata[0]["skipped"], true);
    assert_eq!(official.files, esdk.files);
    assert!(!esdk.files.keys().any(|f| f.starts_with("out/")), "{:?}", esdk.files.keys());
}

#[test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
fn the_official_dialect_keeps_esdk_safety() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new("sa-east-1");
    let dir = scratch(&env);
    let p = dir.path();
    let mode = |f: &str| std::fs::metadata(p.join(f)).unwrap().permissions().mode() & 0o777;
    // Outputs and a new metadata file are private.
    env.ok(
        Tool::Esdk,
        p,
        &["-e", "-i", "hello.txt", "-o", "h.enc", "-w", "key={ARN}", "--metadata-output", "m.json"],
        None,
    );
    assert_eq!((mode("h.enc"), mode("m.json")), (0o600, 0o600));
    // A metadata path that is a symlink is not written through.
    std::fs::write(p.join("victim"), b"keep\n").unwrap();
    std::os::unix::fs::symlink(p.join("victim"), p.join("link.json")).unwrap();
    let out = env.run(
        Tool::Esdk,
        p,
        &["-e", "-i", "hello.txt", "-o", "h2.enc", "-w", "key={ARN}", "--metadata-output", "link.json"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("symlink"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(p.join("victim")).unwrap(), b"keep\n");
    // --interactive: "n" keeps the existing output, "y" replaces it.
    std::fs::write(p.join("h.dec"), b"old\n").unwrap();
    let dec = ["-d", "-i", "h.enc", "-o", "h.dec", "-w", "key={ARN}", "-S", "--interactive"];
    env.ok(Tool::Esdk, p, &dec, Some(b"n\n"));
    assert_eq!(std::fs::read(p.join("h.dec")).unwrap(), b"old\n");
    env.ok(Tool::Esdk, p, &dec, Some(b"y\n"));
    assert_eq!(std::fs::read(p.join("h.dec")).unwrap(), b"Hello, World!\n");
    // No non-framed messages are written; the refusal says so before any KMS call.
    let out = env.run(
        Tool::Esdk,
        p,
        &["-e", "-i", "hello.txt", "-o", "nf.enc", "-w", "key={ARN}", "-S", "--frame-length", "0"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("non-framed"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!p.join("nf.enc").exists());
    // Usage errors exit 2, as argparse's do: a missing metadata choice, discovery on encrypt.
    for args in [
        &["-e", "-i", "hello.txt", "-o", "x", "-w", "key={ARN}"][..],
        &["-e", "-i", "hello.txt", "-o", "x", "-w", "discovery=true", "-S"],
    ] {
        assert_eq!(env.run(Tool::Esdk, p, args, None).status.code(), Some(2), "{args:?}");
    }
}
