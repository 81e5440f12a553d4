//! Runs an `awses-decrypt` test-vector manifest (format in the vectors' README) through this
//! crate. Shared by `examples/vectors` and `tests/vectors.rs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use esdk::materials::{DataKey, DecryptionMaterials, EncryptionMaterials};
use esdk::{
    Backend, Client, CommitmentPolicy, DefaultCmm, EncryptedDataKey, EncryptionContext, ErrorKind, Keyring,
    MultiKeyring, RawAesKeyring, RawRsaKeyring, RsaPadding, SignedMessages,
};
use serde_json::Value;

/// Outcome of one manifest run.
#[derive(Debug, Default)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    /// One line per failed test.
    pub failures: Vec<String>,
    /// Negative tests that failed with another class than the manifest's hint, at the hinted stage
    /// of decryption or an earlier one (allowed: a decryptor stops at the first check a tampered
    /// field fails; see [`stage`]).
    pub class_mismatches: Vec<String>,
    /// Negative tests that failed at a *later* stage than hinted: a check that should have caught
    /// the damage let it through. Must stay empty.
    pub later_than_hinted: Vec<String>,
}

/// How each message is decrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `Client::decrypt` on the whole message.
    OneShot,
    /// `DecryptingReader` over a source that returns at most this many bytes per read, read
    /// into a buffer of the same size.
    Streaming(usize),
    /// `TokioDecryptingReader` (feature `tokio`) over an `AsyncRead` that returns at most this
    /// many bytes per read and is not ready every other poll, read into a buffer of that size.
    Tokio(usize),
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::OneShot => f.write_str("one-shot"),
            Mode::Streaming(n) => write!(f, "streaming/{n}"),
            Mode::Tokio(n) => write!(f, "tokio/{n}"),
        }
    }
}

/// Runs every test in `dir/manifest.json` with `backend` and `mode`.
pub fn run_with(dir: &Path, backend: Backend, mode: Mode, filter: Option<&str>) -> Result<Summary, String> {
    let manifest = read_json(&dir.join("manifest.json"))?;
    let kind = manifest.pointer("/manifest/type").and_then(Value::as_str).unwrap_or_default();
    if kind != "awses-decrypt" {
        return Err(format!("{}: manifest type is {kind:?}, expected \"awses-decrypt\"", dir.display()));
    }
    let keys_uri = manifest.get("keys").and_then(Value::as_str).ok_or("manifest has no \"keys\"")?;
    let keys = read_json(&resolve(dir, keys_uri)?)?;
    let keys = keys.get("keys").and_then(Value::as_object).ok_or("keys manifest has no \"keys\" object")?.clone();
    let tests = manifest.get("tests").and_then(Value::as_object).ok_or("manifest has no \"tests\" object")?;

    let mut summary = Summary::default();
    let mut names: Vec<&String> = tests.keys().collect();
    names.sort();
    for name in names {
        if filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        match run_one(dir, &keys, &tests[name], backend, mode) {
            Ok(mismatch) => {
                summary.passed += 1;
                match mismatch {
                    Some(Class::Earlier(m)) => summary.class_mismatches.push(format!("{name}: {m}")),
                    Some(Class::Later(m)) => summary.later_than_hinted.push(format!("{name}: {m}")),
                    None => {}
                }
            }
            Err(why) => {
                summary.failed += 1;
                summary.failures.push(format!("FAIL {name} [{}, {mode}]: {why}", backend.name()));
            }
        }
    }
    Ok(summary)
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn resolve(dir: &Path, uri: &str) -> Result<PathBuf, String> {
    let rel = uri.strip_prefix("file://").ok_or_else(|| format!("unsupported URI {uri:?}"))?;
    Ok(dir.join(rel))
}

/// How a passing negative test's error compares with the manifest's hint.
enum Class {
    /// Caught with another class at the hinted stage or an earlier one.
    Earlier(String),
    /// Caught at a later stage than hinted.
    Later(String),
}

/// Returns `Ok(Some(class))` for a passing negative test whose error class differs from the hint.
fn run_one(
    dir: &Path,
    keys: &serde_json::Map<String, Value>,
    test: &Value,
    backend: Backend,
    mode: Mode,
) -> Result<Option<Class>, String> {
    let ct_uri = test.get("ciphertext").and_then(Value::as_str).ok_or("no ciphertext")?;
    let ciphertext = std::fs::read(resolve(dir, ct_uri)?).map_err(|e| format!("ciphertext: {e}"))?;
    let policy: CommitmentPolicy = test
        .get("commitment-policy")
        .and_then(Value::as_str)
        .unwrap_or("REQUIRE_ENCRYPT_REQUIRE_DECRYPT")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let mut builder = Client::builder().commitment_policy(policy).backend(backend);
    if let Some(max) = test.get("max-encrypted-data-keys").and_then(Value::as_u64) {
        builder = builder.max_encrypted_data_keys(u16::try_from(max).map_err(|_| "max-encrypted-data-keys too large")?);
    }
    let client = builder.build().map_err(|e| e.to_string())?;
    let keyring = build_keyring(keys, test.get("master-keys").ok_or("no master-keys")?, backend)?;
    let cmm = DefaultCmm::from_arc(keyring).with_backend(backend);
    let reproduced: Option<EncryptionContext> = test
        .get("encryption-context")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect());
    let unsigned_only = test.get("decryption-method").and_then(Value::as_str) == Some("streaming-unsigned-only");
    let result = match mode {
        Mode::OneShot if unsigned_only => {
            client.decrypt_unsigned_only_blocking(&cmm, &ciphertext, reproduced.as_ref()).map(|d| d.plaintext.to_vec())
        }
        Mode::OneShot => client.decrypt_blocking(&cmm, &ciphertext, reproduced.as_ref()).map(|d| d.plaintext.to_vec()),
        Mode::Streaming(chunk) => {
            let signed = if unsigned_only { SignedMessages::Refuse } else { SignedMessages::VerifyBeforeRelease };
            stream_decrypt(&client, &cmm, &ciphertext, reproduced.as_ref(), signed, chunk)
        }
        Mode::Tokio(chunk) => {
            let signed = if unsigned_only { SignedMessages::Refuse } else { SignedMessages::VerifyBeforeRelease };
            tokio_decrypt(&client, &cmm, &ciphertext, reproduced.as_ref(), signed, chunk)
        }
    };

    let expected = test.get("result").ok_or("no result")?;
    if let Some(pt_uri) = expected.pointer("/output/plaintext").and_then(Value::as_str) {
        let want = std::fs::read(resolve(dir, pt_uri)?).map_err(|e| format!("plaintext: {e}"))?;
        return match result {
            Ok(p) if p == want => Ok(None),
            Ok(p) => Err(format!("plaintext differs ({} bytes, expected {})", p.len(), want.len())),
            Err(e) => Err(format!("expected success, got error: {e}")),
        };
    }
    if expected.get("error").is_none() {
        return Err("result is neither output nor error".into());
    }
    match result {
        Ok(p) => Err(format!("expected an error, but decryption returned {} bytes", p.len())),
        Err(e) => {
            let hint = test.pointer("/metadata/expected-error").and_then(Value::as_str);
            let edks = test.pointer("/metadata/edk-count").and_then(Value::as_u64).unwrap_or(1);
            match hint {
                Some(h) if !class_matches(h, e.kind()) => {
                    let note = format!("expected {h}, got {:?}: {e}", e.kind());
                    // With several EDKs, damage to one of them leaves another to unwrap: the
                    // keyrings try every EDK (spec: multi-keyring OnDecrypt), and the damaged header
                    // is then refused by header authentication.
                    let other_edk =
                        h == "no-decryptable-edk" && edks > 1 && e.kind() == ErrorKind::HeaderAuthentication;
                    match (stage_of_hint(h), stage(e.kind())) {
                        (Some(want), Some(got)) if got <= want || other_edk => Ok(Some(Class::Earlier(note))),
                        _ => Ok(Some(Class::Later(note))),
                    }
                }
                _ => Ok(None),
            }
        }
    }
}

/// A source that hands out at most `chunk` bytes per read.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl std::io::Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.chunk).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Decrypts through `DecryptingReader`, reading `chunk` bytes at a time.
fn stream_decrypt(
    client: &Client,
    cmm: &DefaultCmm,
    ciphertext: &[u8],
    reproduced: Option<&EncryptionContext>,
    signed: SignedMessages,
    chunk: usize,
) -> esdk::Result<Vec<u8>> {
    use std::io::Read as _;
    let source = Chunked { data: ciphertext, chunk };
    let mut reader = client.decrypting_reader_blocking(cmm, source, reproduced, signed)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e.into()),
        }
    }
}

/// An `AsyncRead` that hands out at most `chunk` bytes per read and answers `Pending` (after
/// waking its task) every other poll, so the reader's resumption paths run.
#[cfg(feature = "tokio")]
struct AsyncChunked<'a> {
    data: &'a [u8],
    chunk: usize,
    pend: bool,
}

#[cfg(feature = "tokio")]
impl tokio::io::AsyncRead for AsyncChunked<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.pend = !self.pend;
        if self.pend {
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        let n = buf.remaining().min(self.chunk).min(self.data.len());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        std::task::Poll::Ready(Ok(()))
    }
}

/// Decrypts through `TokioDecryptingReader` on a current-thread runtime, reading `chunk` bytes
/// at a time.
#[cfg(feature = "tokio")]
fn tokio_decrypt(
    client: &Client,
    cmm: &DefaultCmm,
    ciphertext: &[u8],
    reproduced: Option<&EncryptionContext>,
    signed: SignedMessages,
    chunk: usize,
) -> esdk::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let rt = tokio::runtime::Builder::new_current_thread().build().map_err(esdk::Error::from)?;
    rt.block_on(async {
        let source = AsyncChunked { data: ciphertext, chunk, pend: false };
        let mut reader = client.tokio_decrypting_reader(cmm, source, reproduced, signed).await?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => return Ok(out),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e.into()),
            }
        }
    })
}

#[cfg(not(feature = "tokio"))]
fn tokio_decrypt(
    _: &Client,
    _: &DefaultCmm,
    _: &[u8],
    _: Option<&EncryptionContext>,
    _: SignedMessages,
    _: usize,
) -> esdk::Result<Vec<u8>> {
    Err(esdk::Error::InvalidConfig("the tokio mode needs esdk built with feature `tokio`".into()))
}

/// Where in decryption an error arises, in the order of the spec (client-apis/decrypt.md: parse
/// the header, check it against the configuration, get decryption materials, verify the
/// commitment, authenticate the header, then the body, then the signature). A decryptor stops at
/// the first check that fails, so a tampered field may fail earlier than the manifest's informal
/// class (a flipped content type is a structural error before header authentication; a changed
/// encryption context changes the AAD the keyrings unwrap with; a changed message id changes the
/// derived key the commitment is checked against), never later.
fn stage(kind: ErrorKind) -> Option<u8> {
    Some(match kind {
        ErrorKind::Parse | ErrorKind::Base64Input | ErrorKind::Truncated => 0,
        ErrorKind::CommitmentPolicy | ErrorKind::TooManyEncryptedDataKeys | ErrorKind::SignedNotAllowed => 1,
        ErrorKind::NoDecryptableDataKey | ErrorKind::InvalidMaterials | ErrorKind::EncryptionContextMismatch => 2,
        ErrorKind::CommitmentMismatch => 3,
        ErrorKind::HeaderAuthentication => 4,
        ErrorKind::BodyAuthentication => 5,
        ErrorKind::Signature => 6,
        _ => return None,
    })
}

/// The stage of a manifest's `expected-error` class.
fn stage_of_hint(hint: &str) -> Option<u8> {
    Some(match hint {
        "parse" | "truncated" => 0,
        "commitment-policy" | "max-edks" | "signed-not-allowed" => 1,
        "no-decryptable-edk" | "ec-mismatch" => 2,
        "commitment-mismatch" => 3,
        "header-auth" => 4,
        "body-auth" => 5,
        "signature" => 6,
        _ => return None,
    })
}

fn class_matches(hint: &str, kind: ErrorKind) -> bool {
    let want: &[ErrorKind] = match hint {
        "parse" => &[ErrorKind::Parse, ErrorKind::Base64Input],
        "truncated" => &[ErrorKind::Truncated],
        "header-auth" => &[ErrorKind::HeaderAuthentication],
        "commitment-mismatch" => &[ErrorKind::CommitmentMismatch],
        "body-auth" => &[ErrorKind::BodyAuthentication],
        "signature" => &[ErrorKind::Signature],
        "no-decryptable-edk" => &[ErrorKind::NoDecryptableDataKey],
        "commitment-policy" => &[ErrorKind::CommitmentPolicy],
        "max-edks" => &[ErrorKind::TooManyEncryptedDataKeys],
        "signed-not-allowed" => &[ErrorKind::SignedNotAllowed],
        "ec-mismatch" => &[ErrorKind::EncryptionContextMismatch],
        _ => return true,
    };
    want.contains(&kind)
}

fn build_keyring(
    keys: &serde_json::Map<String, Value>,
    master_keys: &Value,
    backend: Backend,
) -> Result<Arc<dyn Keyring>, String> {
    let list = master_keys.as_array().ok_or("master-keys is not a list")?;
    let mut rings = list.iter().map(|mk| one_keyring(keys, mk, backend)).collect::<Result<Vec<_>, _>>()?;
    match rings.len() {
        0 => Err("master-keys is empty".into()),
        1 => Ok(rings.remove(0)),
        _ => {
            let generator = rings.remove(0);
            Ok(Arc::new(MultiKeyring::new(Some(generator), rings).map_err(|e| e.to_string())?))
        }
    }
}

fn one_keyring(
    keys: &serde_json::Map<String, Value>,
    mk: &Value,
    backend: Backend,
) -> Result<Arc<dyn Keyring>, String> {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned).ok_or(format!("missing {k:?}"));
    let key_name = s(mk, "key")?;
    let key = keys.get(&key_name).ok_or_else(|| format!("key {key_name:?} not in keys manifest"))?;
    match s(mk, "type")?.as_str() {
        "raw" => {
            let provider_id = s(mk, "provider-id")?;
            let key_id = s(key, "key-id")?;
            let material = s(key, "material")?;
            match s(mk, "encryption-algorithm")?.as_str() {
                "aes" => {
                    let bytes =
                        base64::engine::general_purpose::STANDARD.decode(material).map_err(|e| e.to_string())?;
                    Ok(Arc::new(
                        RawAesKeyring::with_backend(&provider_id, &key_id, &bytes, backend)
                            .map_err(|e| e.to_string())?,
                    ))
                }
                "rsa" => {
                    let padding =
                        match (s(mk, "padding-algorithm")?.as_str(), mk.get("padding-hash").and_then(Value::as_str)) {
                            ("pkcs1", _) => RsaPadding::Pkcs1,
                            ("oaep-mgf1", Some("sha1")) => RsaPadding::OaepSha1,
                            ("oaep-mgf1", Some("sha256")) => RsaPadding::OaepSha256,
                            ("oaep-mgf1", Some("sha384")) => RsaPadding::OaepSha384,
                            ("oaep-mgf1", Some("sha512")) => RsaPadding::OaepSha512,
                            other => return Err(format!("unsupported RSA padding {other:?}")),
                        };
                    // Known vectors, no attacker timing decryptions: RustCrypto's RSA is allowed.
                    let ring = RawRsaKeyring::with_backend(&provider_id, &key_id, padding, backend)
                        .map_err(|e| e.to_string())?
                        .danger_rustcrypto_rsa_decryption();
                    let ring = match s(key, "type")?.as_str() {
                        "private" => ring.with_private_key_pem(&material),
                        "public" => ring.with_public_key_pem(&material),
                        t => return Err(format!("unsupported RSA key type {t:?}")),
                    }
                    .map_err(|e| e.to_string())?;
                    Ok(Arc::new(ring))
                }
                a => Err(format!("unsupported raw algorithm {a:?}")),
            }
        }
        #[cfg(feature = "kms")]
        kms_type @ ("aws-kms" | "aws-kms-mrk-aware") => {
            use esdk::keyring::kms::{ClientSupplier, KeyIdentifier, KmsKeyring, KmsMrkKeyring};
            let arn = s(key, "key-id")?;
            let region = match KeyIdentifier::parse(&arn).map_err(|e| e.to_string())? {
                KeyIdentifier::Arn(a) => a.region().to_owned(),
                _ => return Err(format!("KMS key {arn:?} is not an ARN")),
            };
            let client = kms_supplier()?.client(&region).map_err(|e| e.to_string())?;
            Ok(if kms_type == "aws-kms" {
                Arc::new(KmsKeyring::new(&arn, client).map_err(|e| e.to_string())?)
            } else {
                Arc::new(KmsMrkKeyring::new(&arn, client).map_err(|e| e.to_string())?)
            })
        }
        "static-material-keyring" => {
            let b64 = s(key, "plaintextDataKey")?;
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| e.to_string())?;
            Ok(Arc::new(StaticDataKey(bytes)))
        }
        t => Err(format!("unsupported master key type {t:?}")),
    }
}

/// KMS clients from the standard AWS environment, created once per process.
#[cfg(feature = "kms")]
fn kms_supplier() -> Result<&'static esdk::keyring::kms::AwsSdkClientSupplier, String> {
    static SUPPLIER: std::sync::OnceLock<esdk::keyring::kms::AwsSdkClientSupplier> = std::sync::OnceLock::new();
    if let Some(s) = SUPPLIER.get() {
        return Ok(s);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let supplier = rt.block_on(esdk::keyring::kms::AwsSdkClientSupplier::from_env());
    Ok(SUPPLIER.get_or_init(|| supplier))
}

/// The manifest's `static-material-keyring`: returns a known plaintext data key.
struct StaticDataKey(Vec<u8>);

impl std::fmt::Debug for StaticDataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticDataKey")
    }
}

#[async_trait]
impl Keyring for StaticDataKey {
    async fn on_encrypt(&self, _materials: EncryptionMaterials) -> esdk::Result<EncryptionMaterials> {
        Err(esdk::Error::InvalidConfig("the static-material test keyring only decrypts".into()))
    }

    async fn on_decrypt(
        &self,
        mut materials: DecryptionMaterials,
        _edks: &[EncryptedDataKey],
    ) -> esdk::Result<DecryptionMaterials> {
        materials.set_data_key(DataKey::from_bytes(&self.0))?;
        Ok(materials)
    }
}

/// Renders a summary the way the runner prints it; the last line is `N passed, M failed`.
pub fn render(summaries: &BTreeMap<String, Summary>, verbose: bool) -> String {
    let mut out = String::new();
    let (mut passed, mut failed) = (0, 0);
    for (backend, s) in summaries {
        for f in &s.failures {
            let _ = writeln!(out, "{f}");
        }
        for m in &s.later_than_hinted {
            let _ = writeln!(out, "LATER [{backend}] error class: {m}");
        }
        if verbose {
            for m in &s.class_mismatches {
                let _ = writeln!(out, "note [{backend}] error class: {m}");
            }
        }
        let _ = writeln!(
            out,
            "{backend}: {} passed, {} failed; negatives refused with another class than hinted: {} at the hinted stage or earlier, {} later",
            s.passed,
            s.failed,
            s.class_mismatches.len(),
            s.later_than_hinted.len()
        );
        passed += s.passed;
        failed += s.failed;
    }
    let _ = write!(out, "{passed} passed, {failed} failed");
    out
}
