//! AWS KMS RSA keyring (spec `framework/aws-kms/aws-kms-rsa-keyring.md`): data keys are wrapped
//! locally with the public half of a KMS RSA key (RSAES-OAEP), and unwrapped by KMS `Decrypt`.
//!
//! RSA-OAEP in KMS takes no encryption context, so the keyring binds it itself: the wrapped
//! plaintext is the SHA-384 digest of the serialized encryption context followed by the data
//! key, and OnDecrypt compares that digest with the message's. Anyone holding the public key can
//! wrap a data key under any context, so signing suites are refused: their signature would not
//! prove who wrote the message (the spec's test vectors exclude them for this reason).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::arn::{mrk_match, KeyIdentifier, KmsArn};
use super::edk::filter_edks;
use super::{KmsClient, KmsRsaAlgorithm};
use crate::crypto::{Backend, RsaPublic};
use crate::error::{EdkFailure, Error, Result, SkipReason};
use crate::keyring::{ensure_no_data_key, Attempts, Keyring};
use crate::materials::{DataKey, DecryptionMaterials, EncryptedDataKey, EncryptionMaterials};
use crate::suite::{AlgorithmSuite, HashAlg};
use crate::EncryptionContext;

/// Provider id of the EDKs this keyring writes.
pub const RSA_PROVIDER_ID: &str = "aws-kms-rsa";

/// Length of the encryption-context digest in front of the data key (SHA-384).
const DIGEST_LEN: usize = 48;

/// The smallest RSA modulus the keyring takes (spec: "greater than or equal to 2048"); KMS has
/// no smaller RSA keys either.
const MIN_MODULUS_BITS: usize = 2048;

/// Encrypts with the public key of a KMS RSA key (`ENCRYPT_DECRYPT`) and decrypts through KMS
/// with that key. A keyring without a public key cannot encrypt; one without a client cannot
/// decrypt.
pub struct KmsRsaKeyring {
    key_id: KeyIdentifier,
    algorithm: KmsRsaAlgorithm,
    backend: Backend,
    public_key: Option<Box<dyn RsaPublic>>,
    client: Option<Arc<dyn KmsClient>>,
    grant_tokens: Vec<String>,
}

impl KmsRsaKeyring {
    /// A keyring for the RSA key `key_id` (its key ARN: not an alias, which KMS would resolve at
    /// call time, nor a bare key id, which the EDK cannot carry) with `algorithm`. Add the public key with
    /// [`Self::with_public_key_pem`] to encrypt, a client with [`Self::with_client`] to decrypt.
    pub fn new(key_id: &str, algorithm: KmsRsaAlgorithm) -> Result<Self> {
        let key_id = KeyIdentifier::parse(key_id)?;
        if key_id.key_arn().is_none() {
            // The EDK carries this identifier, and OnDecrypt (here and in the MPL) takes only
            // key ARNs: a bare key id would write messages nobody can decrypt.
            return Err(Error::InvalidConfig(format!(
                "the AWS KMS RSA keyring needs the key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), not {key_id}"
            )));
        }
        Ok(Self {
            key_id,
            algorithm,
            backend: Backend::default(),
            public_key: None,
            client: None,
            grant_tokens: Vec::new(),
        })
    }

    /// Wraps with `backend` (the public key is parsed when added: call this first).
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The key's public half (PEM `PUBLIC KEY`, as KMS `GetPublicKey` returns it in DER), at
    /// least 2048 bits. That it belongs to the configured key is not checked here (the spec
    /// wants no call for it): a wrong key makes messages no KMS key can decrypt.
    pub fn with_public_key_pem(mut self, pem: &str) -> Result<Self> {
        let der = crate::keyring::raw_rsa::decode_pem(pem, "PUBLIC KEY")?;
        let key = self.backend.provider().rsa_public(&der)?;
        if key.modulus_bits() < MIN_MODULUS_BITS {
            return Err(Error::InvalidKey(format!(
                "the RSA public key has a {}-bit modulus; the AWS KMS RSA keyring needs at least {MIN_MODULUS_BITS}",
                key.modulus_bits()
            )));
        }
        self.public_key = Some(key);
        Ok(self)
    }

    /// The KMS client `Decrypt` is called with.
    pub fn with_client(mut self, client: Arc<dyn KmsClient>) -> Self {
        self.client = Some(client);
        self
    }

    /// Grant tokens passed with every KMS call.
    pub fn with_grant_tokens(mut self, grant_tokens: Vec<String>) -> Self {
        self.grant_tokens = grant_tokens;
        self
    }

    fn describe(&self) -> String {
        format!("KMS RSA key {} ({})", self.key_id, self.algorithm)
    }

    fn refuse_signing(&self, suite: AlgorithmSuite, action: &'static str) -> Result<()> {
        if suite.is_signed() {
            return Err(Error::Keyring {
                action,
                reason: format!(
                    "{} cannot be used with the signing suite {suite:?}: anyone with the public key can wrap a \
                     data key, so the signature would prove nothing; choose a suite without ECDSA (the CLI: \
                     --algorithm AES_256_GCM_HKDF_SHA512_COMMIT_KEY)",
                    self.describe()
                ),
                retryable: false,
            });
        }
        Ok(())
    }

    /// SHA-384 of the context's header serialization (spec: "Encryption Context Digest").
    fn digest(&self, context: &EncryptionContext) -> Result<Vec<u8>> {
        context.check_serializable()?;
        let mut serialized = Vec::new();
        context.serialize_into(&mut serialized);
        let mut h = self.backend.provider().hasher(HashAlg::Sha384);
        h.update(&serialized);
        Ok(h.finish()[..DIGEST_LEN].to_vec())
    }
}

impl fmt::Debug for KmsRsaKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsRsaKeyring")
            .field("key_id", &self.key_id.to_string())
            .field("algorithm", &self.algorithm)
            .field("has_public_key", &self.public_key.is_some())
            .field("client", &self.client)
            .field("grant_tokens", &self.grant_tokens.len())
            .finish()
    }
}

#[async_trait]
impl Keyring for KmsRsaKeyring {
    async fn on_encrypt(&self, mut materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
        const ACTION: &str = "wrap the data key";
        let Some(public_key) = &self.public_key else {
            return Err(Error::Keyring {
                action: ACTION,
                reason: format!("{} has no public key; add one with with_public_key_pem", self.describe()),
                retryable: false,
            });
        };
        self.refuse_signing(materials.suite(), ACTION)?;
        let digest = self.digest(materials.encryption_context())?;
        let data_key = materials.data_key_or_generate()?.expose_secret();
        let mut plaintext = Zeroizing::new(Vec::with_capacity(DIGEST_LEN + data_key.len()));
        plaintext.extend_from_slice(&digest);
        plaintext.extend_from_slice(data_key);
        let ciphertext = public_key.encrypt(self.algorithm.padding(), &plaintext)?;
        materials.add_encrypted_data_key(EncryptedDataKey {
            provider_id: RSA_PROVIDER_ID.into(),
            provider_info: self.key_id.to_string().into_bytes(),
            ciphertext,
        });
        Ok(materials)
    }

    async fn on_decrypt(
        &self,
        mut materials: DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<DecryptionMaterials> {
        const ACTION: &str = "unwrap the data key";
        let Some(client) = &self.client else {
            return Err(Error::Keyring {
                action: ACTION,
                reason: format!("{} has no KMS client; add one with with_client", self.describe()),
                retryable: false,
            });
        };
        ensure_no_data_key(&materials)?;
        self.refuse_signing(materials.suite(), ACTION)?;
        let expected = self.digest(materials.encryption_context())?;
        let key_len = materials.suite().data_key_len();
        let configured = self.key_id.to_string();
        let attempts = Attempts::new(self.describe(), edks);
        // Decrypt is always called with the configured ARN.
        let select = |arn: KmsArn| {
            if mrk_match(&self.key_id, &KeyIdentifier::Arn(arn.clone())) {
                Ok(configured.clone())
            } else {
                Err(SkipReason::NotAllowListed { key_arn: arn.to_string() })
            }
        };
        let (mut attempts, matching) = filter_edks(RSA_PROVIDER_ID, edks, attempts, select)?;
        for (i, edk, _) in matching {
            tracing::debug!(key_id = %configured, edk = i, "calling KMS Decrypt (RSA)");
            let out = match client.decrypt_rsa(&configured, &edk.ciphertext, self.algorithm, &self.grant_tokens).await {
                Ok(out) => out,
                Err(e) => {
                    attempts.fail(i, edk, EdkFailure::Kms(e));
                    continue;
                }
            };
            if out.key_id != configured {
                let failure = EdkFailure::KmsKeyIdMismatch { requested: configured.clone(), returned: out.key_id };
                attempts.fail(i, edk, failure);
                continue;
            }
            let plain = out.plaintext.expose_secret();
            if plain.len() != DIGEST_LEN + key_len {
                // Lengths of the whole plaintext: the 48-byte digest and the data key.
                attempts.fail(i, edk, EdkFailure::DataKeyLength { found: plain.len(), expected: DIGEST_LEN + key_len });
                continue;
            }
            let (digest, key) = plain.split_at(DIGEST_LEN);
            if !bool::from(digest.ct_eq(&expected)) {
                attempts.fail(i, edk, EdkFailure::EncryptionContextMismatch);
                continue;
            }
            materials.set_data_key_from_edk(DataKey::from_bytes(key), i)?;
            return Ok(materials);
        }
        Err(attempts.into_error())
    }
}
