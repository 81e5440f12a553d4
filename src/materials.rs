//! Cryptographic materials exchanged between the client, materials managers and keyrings
//! (spec `framework/structures.md`, "Encryption Materials" / "Decryption Materials").
//!
//! Secret-holding types ([`DataKey`], [`SigningKey`]) zeroize on drop, do not implement `Clone`,
//! and print no key bytes in `Debug`.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::context::EncryptionContext;
use crate::crypto::{self, Backend, EcdsaSigner, EcdsaVerifier};
use crate::error::{Error, Result};
use crate::format::codec::{put_u16_prefixed, Cursor};
use crate::suite::{AlgorithmSuite, Curve};

/// A plaintext data key. Zeroized on drop; never printed.
pub struct DataKey(Zeroizing<Vec<u8>>);

impl DataKey {
    /// Wraps existing key bytes (copied; zeroize your own buffer).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(Zeroizing::new(bytes.to_vec()))
    }

    /// A fresh random key of `len` bytes from the operating system.
    pub fn generate(len: usize) -> Result<Self> {
        let mut key = Zeroizing::new(vec![0u8; len]);
        crypto::fill_random(&mut key)?;
        Ok(Self(key))
    }

    /// The key bytes. Handle with care: they must never be logged or stored unwrapped.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// Key length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the key is empty (never true for a usable key).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// An explicit copy, for caches that hand the same key to several messages.
    pub(crate) fn duplicate(&self) -> Self {
        Self::from_bytes(&self.0)
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey({} bytes, redacted)", self.0.len())
    }
}

/// An encrypted data key as it appears in a message header (spec `data-format/message-header.md`,
/// "Encrypted Data Key Entries").
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EncryptedDataKey {
    /// Key provider id (`aws-kms`, a raw keyring's namespace, ...).
    pub provider_id: String,
    /// Key provider info (a key ARN, a raw keyring's key name and IV, ...).
    pub provider_info: Vec<u8>,
    /// The wrapped data key.
    pub ciphertext: Vec<u8>,
}

impl EncryptedDataKey {
    /// Exact serialized length.
    pub fn serialized_len(&self) -> usize {
        6 + self.provider_id.len() + self.provider_info.len() + self.ciphertext.len()
    }

    pub(crate) fn check_serializable(&self) -> Result<()> {
        let max = u16::MAX as usize;
        if self.provider_id.len() > max || self.provider_info.len() > max || self.ciphertext.len() > max {
            return Err(Error::InvalidMaterials(format!(
                "an encrypted data key from provider {:?} has a field longer than 65535 bytes",
                self.provider_id
            )));
        }
        Ok(())
    }

    pub(crate) fn serialize_into(&self, out: &mut Vec<u8>) {
        put_u16_prefixed(out, self.provider_id.as_bytes());
        put_u16_prefixed(out, &self.provider_info);
        put_u16_prefixed(out, &self.ciphertext);
    }

    pub(crate) fn parse(cur: &mut Cursor<'_>) -> Result<Self> {
        const F: &str = "encrypted data key";
        let pid = cur.u16_prefixed(F)?;
        let provider_id =
            std::str::from_utf8(pid).map_err(|_| Error::parse(F, "provider id is not valid UTF-8"))?.to_owned();
        let provider_info = cur.u16_prefixed(F)?.to_vec();
        let ciphertext = cur.u16_prefixed(F)?.to_vec();
        Ok(Self { provider_id, provider_info, ciphertext })
    }

    /// Provider info as text for reports (lossy; raw AES infos end in binary IV bytes).
    pub fn provider_info_lossy(&self) -> String {
        display_provider_info(&self.provider_info)
    }
}

pub(crate) fn display_provider_info(info: &[u8]) -> String {
    match std::str::from_utf8(info) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_owned(),
        _ => {
            // Raw AES provider info: key name ‖ 20 bytes of tag length, IV length and IV.
            if info.len() >= 20 {
                if let Ok(name) = std::str::from_utf8(&info[..info.len() - 20]) {
                    return format!("{name} (+IV)");
                }
            }
            format!("0x{}", info.iter().map(|b| format!("{b:02x}")).collect::<String>())
        }
    }
}

impl fmt::Debug for EncryptedDataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedDataKey")
            .field("provider_id", &self.provider_id)
            .field("provider_info", &self.provider_info_lossy())
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// An ECDSA private key used to sign messages. Cheap to clone (shared); never printed.
#[derive(Clone)]
pub struct SigningKey {
    curve: Curve,
    inner: Arc<dyn EcdsaSigner>,
    public_key: Vec<u8>,
}

impl SigningKey {
    /// Generates a key pair for `curve` with `backend`.
    pub fn generate(curve: Curve, backend: Backend) -> Result<Self> {
        let inner: Arc<dyn EcdsaSigner> = Arc::from(backend.provider().generate_ecdsa(curve)?);
        let public_key = inner.compressed_public_key()?;
        Ok(Self { curve, inner, public_key })
    }

    /// The curve.
    pub fn curve(&self) -> Curve {
        self.curve
    }

    /// SEC1 compressed public point (what goes, base64, into `aws-crypto-public-key`).
    pub fn compressed_public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// Signs with a signature of the curve's fixed length (see `crypto::signature_len`), so
    /// message sizes are exact before encryption.
    pub(crate) fn sign_digest(&self, digest: &[u8]) -> Result<Vec<u8>> {
        for _ in 0..32 {
            let der = self.inner.sign_digest(digest)?;
            if let Some(fixed) = crate::crypto::signature_len::fix_length(self.curve, &der) {
                return Ok(fixed);
            }
        }
        Err(Error::Crypto("could not produce a fixed-length ECDSA signature"))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({:?}, private key redacted)", self.curve)
    }
}

/// An ECDSA public key used to verify message signatures.
#[derive(Clone)]
pub struct VerificationKey {
    curve: Curve,
    inner: Arc<dyn EcdsaVerifier>,
}

impl VerificationKey {
    /// Parses a SEC1 point for `curve`.
    pub fn from_sec1(curve: Curve, point: &[u8], backend: Backend) -> Result<Self> {
        Ok(Self { curve, inner: Arc::from(backend.provider().ecdsa_verifier(curve, point)?) })
    }

    /// The curve.
    pub fn curve(&self) -> Curve {
        self.curve
    }

    pub(crate) fn verify_digest(&self, digest: &[u8], der: &[u8]) -> bool {
        self.inner.verify_digest(digest, der)
    }
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerificationKey({:?})", self.curve)
    }
}

/// Puts `key` into an empty slot after checking its length against `suite`.
fn install_data_key(slot: &mut Option<DataKey>, suite: AlgorithmSuite, key: DataKey) -> Result<()> {
    if slot.is_some() {
        return Err(Error::InvalidMaterials("a plaintext data key is already present".into()));
    }
    if key.len() != suite.data_key_len() {
        return Err(Error::InvalidMaterials(format!(
            "data key is {} bytes, suite {suite} needs {}",
            key.len(),
            suite.data_key_len()
        )));
    }
    *slot = Some(key);
    Ok(())
}

/// Materials for encrypting one message (spec `framework/structures.md`).
#[derive(Debug)]
pub struct EncryptionMaterials {
    suite: AlgorithmSuite,
    encryption_context: EncryptionContext,
    required_encryption_context_keys: BTreeSet<String>,
    encrypted_data_keys: Vec<EncryptedDataKey>,
    data_key: Option<DataKey>,
    signing_key: Option<SigningKey>,
}

impl EncryptionMaterials {
    /// Materials with no data key yet.
    pub fn new(suite: AlgorithmSuite, encryption_context: EncryptionContext) -> Self {
        Self {
            suite,
            encryption_context,
            required_encryption_context_keys: BTreeSet::new(),
            encrypted_data_keys: Vec::new(),
            data_key: None,
            signing_key: None,
        }
    }

    /// The suite.
    pub fn suite(&self) -> AlgorithmSuite {
        self.suite
    }

    /// The full encryption context (stored and required-only pairs).
    pub fn encryption_context(&self) -> &EncryptionContext {
        &self.encryption_context
    }

    /// Keys authenticated but not stored in the header.
    pub fn required_encryption_context_keys(&self) -> &BTreeSet<String> {
        &self.required_encryption_context_keys
    }

    /// Marks keys of the context as required-only.
    pub fn with_required_encryption_context_keys(mut self, keys: impl IntoIterator<Item = String>) -> Self {
        self.required_encryption_context_keys.extend(keys);
        self
    }

    /// Encrypted data keys added so far.
    pub fn encrypted_data_keys(&self) -> &[EncryptedDataKey] {
        &self.encrypted_data_keys
    }

    /// The plaintext data key, if generated.
    pub fn data_key(&self) -> Option<&DataKey> {
        self.data_key.as_ref()
    }

    /// The signing key (signed suites).
    pub fn signing_key(&self) -> Option<&SigningKey> {
        self.signing_key.as_ref()
    }

    /// Sets the plaintext data key; fails if one is already present or its length is wrong.
    pub fn set_data_key(&mut self, key: DataKey) -> Result<()> {
        install_data_key(&mut self.data_key, self.suite, key)
    }

    /// The data key, generated from the operating system's random source if absent
    /// (keyring OnEncrypt, `framework/keyring-interface.md`).
    pub fn data_key_or_generate(&mut self) -> Result<&DataKey> {
        if self.data_key.is_none() {
            self.data_key = Some(DataKey::generate(self.suite.data_key_len())?);
        }
        self.data_key.as_ref().ok_or(Error::Internal("data key absent right after it was set"))
    }

    /// Adds an encrypted data key.
    pub fn add_encrypted_data_key(&mut self, edk: EncryptedDataKey) {
        self.encrypted_data_keys.push(edk);
    }

    /// Sets the signing key.
    pub fn set_signing_key(&mut self, key: SigningKey) {
        self.signing_key = Some(key);
    }

    /// A copy for another message (caching): the data key is copied, the signing key shared.
    pub(crate) fn duplicate(&self) -> Self {
        Self {
            suite: self.suite,
            encryption_context: self.encryption_context.clone(),
            required_encryption_context_keys: self.required_encryption_context_keys.clone(),
            encrypted_data_keys: self.encrypted_data_keys.clone(),
            data_key: self.data_key.as_ref().map(DataKey::duplicate),
            signing_key: self.signing_key.clone(),
        }
    }

    pub(crate) fn into_parts(self) -> EncryptionParts {
        EncryptionParts {
            suite: self.suite,
            encryption_context: self.encryption_context,
            required_encryption_context_keys: self.required_encryption_context_keys,
            encrypted_data_keys: self.encrypted_data_keys,
            data_key: self.data_key,
            signing_key: self.signing_key,
        }
    }
}

pub(crate) struct EncryptionParts {
    pub(crate) suite: AlgorithmSuite,
    pub(crate) encryption_context: EncryptionContext,
    pub(crate) required_encryption_context_keys: BTreeSet<String>,
    pub(crate) encrypted_data_keys: Vec<EncryptedDataKey>,
    pub(crate) data_key: Option<DataKey>,
    pub(crate) signing_key: Option<SigningKey>,
}

/// Materials for decrypting one message.
#[derive(Debug)]
pub struct DecryptionMaterials {
    suite: AlgorithmSuite,
    encryption_context: EncryptionContext,
    required_encryption_context_keys: BTreeSet<String>,
    data_key: Option<DataKey>,
    verification_key: Option<VerificationKey>,
    unwrapped_edk: Option<usize>,
}

impl DecryptionMaterials {
    /// Materials with no data key yet.
    pub fn new(suite: AlgorithmSuite, encryption_context: EncryptionContext) -> Self {
        Self {
            suite,
            encryption_context,
            required_encryption_context_keys: BTreeSet::new(),
            data_key: None,
            verification_key: None,
            unwrapped_edk: None,
        }
    }

    /// The suite.
    pub fn suite(&self) -> AlgorithmSuite {
        self.suite
    }

    /// Stored plus reproduced (required-only) encryption context.
    pub fn encryption_context(&self) -> &EncryptionContext {
        &self.encryption_context
    }

    /// Keys supplied only at decrypt that the header authenticates.
    pub fn required_encryption_context_keys(&self) -> &BTreeSet<String> {
        &self.required_encryption_context_keys
    }

    /// The plaintext data key, once a keyring found it.
    pub fn data_key(&self) -> Option<&DataKey> {
        self.data_key.as_ref()
    }

    /// The verification key (signed suites).
    pub fn verification_key(&self) -> Option<&VerificationKey> {
        self.verification_key.as_ref()
    }

    /// Sets the plaintext data key; fails if one is already present or its length is wrong.
    pub fn set_data_key(&mut self, key: DataKey) -> Result<()> {
        install_data_key(&mut self.data_key, self.suite, key)
    }

    /// Sets the data key unwrapped from the EDK at `index` in the header, so callers can tell
    /// which key decrypted the message.
    pub fn set_data_key_from_edk(&mut self, key: DataKey, index: usize) -> Result<()> {
        self.set_data_key(key)?;
        self.unwrapped_edk = Some(index);
        Ok(())
    }

    /// Index of the EDK the data key came from, when the keyring reported it.
    pub fn unwrapped_edk(&self) -> Option<usize> {
        self.unwrapped_edk
    }

    /// Sets the verification key.
    pub fn set_verification_key(&mut self, key: VerificationKey) {
        self.verification_key = Some(key);
    }

    /// A copy for trying another keyring on unmodified input (multi-keyring).
    pub(crate) fn fork(&self) -> Self {
        Self {
            suite: self.suite,
            encryption_context: self.encryption_context.clone(),
            required_encryption_context_keys: self.required_encryption_context_keys.clone(),
            data_key: self.data_key.as_ref().map(DataKey::duplicate),
            verification_key: self.verification_key.clone(),
            unwrapped_edk: self.unwrapped_edk,
        }
    }

    pub(crate) fn add_required_pair(&mut self, key: String, value: String) {
        self.required_encryption_context_keys.insert(key.clone());
        self.encryption_context.insert(key, value);
    }

    pub(crate) fn into_parts(self) -> (Option<DataKey>, Option<VerificationKey>, EncryptionContext, BTreeSet<String>) {
        (self.data_key, self.verification_key, self.encryption_context, self.required_encryption_context_keys)
    }
}
