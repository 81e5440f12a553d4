//! Raw RSA keyring (spec `framework/raw-rsa-keyring.md`).
//!
//! Prefer OAEP padding; PKCS#1 v1.5 is kept for keys written by older SDKs. See [`crate::crypto`]
//! for the backends' RSA implementations.

use std::fmt;

use async_trait::async_trait;

use super::{check_raw_namespace, ensure_no_data_key, Attempts, Keyring};
use crate::crypto::{Backend, RsaPadding, RsaPrivate, RsaPublic};
use crate::error::{EdkFailure, Error, Result, SkipReason};
use crate::materials::{DataKey, DecryptionMaterials, EncryptedDataKey, EncryptionMaterials};

/// Wraps data keys with RSA (PKCS#1 v1.5 or OAEP). A keyring with only a public key encrypts
/// but cannot decrypt; one with only a private key decrypts but cannot encrypt (the spec forbids
/// deriving the public key from the private one).
pub struct RawRsaKeyring {
    namespace: String,
    name: String,
    padding: RsaPadding,
    backend: Backend,
    public_key: Option<Box<dyn RsaPublic>>,
    private_key: Option<Box<dyn RsaPrivate>>,
    /// RSA decryption on the RustCrypto backend was asked for knowingly.
    danger_rustcrypto_decryption: bool,
}

impl RawRsaKeyring {
    /// A keyring with no keys yet; add them with [`Self::with_public_key_pem`] and
    /// [`Self::with_private_key_pem`].
    pub fn new(namespace: &str, name: &str, padding: RsaPadding) -> Result<Self> {
        Self::with_backend(namespace, name, padding, Backend::default())
    }

    /// As [`Self::new`] on a chosen backend.
    pub fn with_backend(namespace: &str, name: &str, padding: RsaPadding, backend: Backend) -> Result<Self> {
        check_raw_namespace(namespace)?;
        if name.len() > u16::MAX as usize {
            return Err(Error::InvalidConfig("key name is longer than 65535 bytes".into()));
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            padding,
            backend,
            public_key: None,
            private_key: None,
            danger_rustcrypto_decryption: false,
        })
    }

    /// Allows a private key on the RustCrypto backend. The `rsa` crate's decryption is exposed to
    /// the Marvin timing attack (RUSTSEC-2023-0071; no fixed release): someone who can time many
    /// decryptions of chosen ciphertexts may recover the key. Without this call a RustCrypto
    /// keyring refuses private keys; AWS-LC's RSA has no such issue. Call it before
    /// [`Self::with_private_key_pem`], only where an attacker cannot submit messages and time
    /// their decryption (offline tests, known vectors).
    pub fn danger_rustcrypto_rsa_decryption(mut self) -> Self {
        self.danger_rustcrypto_decryption = true;
        self
    }

    /// Adds the public key (PEM `PUBLIC KEY`, X.509 SubjectPublicKeyInfo) used to encrypt.
    pub fn with_public_key_pem(mut self, pem: &str) -> Result<Self> {
        let der = decode_pem(pem, "PUBLIC KEY")?;
        self.public_key = Some(self.backend.provider().rsa_public(&der)?);
        Ok(self)
    }

    /// Adds the private key (PEM `PRIVATE KEY`, PKCS#8) used to decrypt. On the RustCrypto
    /// backend, only after [`Self::danger_rustcrypto_rsa_decryption`].
    pub fn with_private_key_pem(mut self, pem: &str) -> Result<Self> {
        #[cfg(feature = "rustcrypto")]
        if self.backend == Backend::RustCrypto && !self.danger_rustcrypto_decryption {
            return Err(Error::InvalidConfig(
                "raw RSA decryption on the RustCrypto backend is exposed to the Marvin timing attack \
                 (RUSTSEC-2023-0071, no fixed release of the rsa crate): use the aws-lc-rs backend, or opt in with \
                 RawRsaKeyring::danger_rustcrypto_rsa_decryption where no attacker can time decryptions"
                    .into(),
            ));
        }
        let der = zeroize::Zeroizing::new(decode_pem(pem, "PRIVATE KEY")?);
        self.private_key = Some(self.backend.provider().rsa_private(&der)?);
        Ok(self)
    }

    fn describe(&self) -> String {
        format!("raw RSA key {}/{} ({:?})", self.namespace, self.name, self.padding)
    }
}

pub(crate) fn decode_pem(pem: &str, expected: &str) -> Result<Vec<u8>> {
    let (label, der) = pem_rfc7468::decode_vec(pem.trim().as_bytes())
        .map_err(|e| Error::InvalidKey(format!("not a PEM document: {e}")))?;
    if label != expected {
        return Err(Error::InvalidKey(format!(
            "PEM label is {label:?}, expected {expected:?} (PKCS#8 private keys / SubjectPublicKeyInfo public keys)"
        )));
    }
    Ok(der)
}

impl fmt::Debug for RawRsaKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawRsaKeyring")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("padding", &self.padding)
            .field("has_public_key", &self.public_key.is_some())
            .field("has_private_key", &self.private_key.is_some())
            .finish()
    }
}

#[async_trait]
impl Keyring for RawRsaKeyring {
    async fn on_encrypt(&self, mut materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
        let Some(public_key) = &self.public_key else {
            return Err(Error::Keyring {
                action: "wrap the data key",
                reason: format!("{} has no public key; add one with with_public_key_pem", self.describe()),
                retryable: false,
            });
        };
        let data_key = materials.data_key_or_generate()?.expose_secret();
        let ciphertext = public_key.encrypt(self.padding, data_key)?;
        materials.add_encrypted_data_key(EncryptedDataKey {
            provider_id: self.namespace.clone(),
            provider_info: self.name.as_bytes().to_vec(),
            ciphertext,
        });
        Ok(materials)
    }

    async fn on_decrypt(
        &self,
        mut materials: DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<DecryptionMaterials> {
        ensure_no_data_key(&materials)?;
        let mut attempts = Attempts::new(self.describe(), edks);
        let key_len = materials.suite().data_key_len();
        for (i, edk) in edks.iter().enumerate() {
            if edk.provider_id != self.namespace {
                attempts.skip(i, edk, SkipReason::ProviderId);
                continue;
            }
            if edk.provider_info != self.name.as_bytes() {
                attempts.skip(i, edk, SkipReason::KeyName { found: edk.provider_info_lossy() });
                continue;
            }
            let Some(private_key) = &self.private_key else {
                attempts.fail(i, edk, EdkFailure::NoPrivateKey);
                continue;
            };
            match private_key.decrypt(self.padding, &edk.ciphertext) {
                Some(plain) if plain.len() == key_len => {
                    materials.set_data_key_from_edk(DataKey::from_bytes(&plain), i)?;
                    return Ok(materials);
                }
                // One failure for every padding or length error: nothing distinguishes them.
                _ => attempts.fail(i, edk, EdkFailure::Unwrap),
            }
        }
        Err(attempts.into_error())
    }
}
