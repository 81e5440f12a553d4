//! Strict KMS keyrings (spec `framework/aws-kms/aws-kms-keyring.md`, `aws-kms-mrk-keyring.md`).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use super::arn::{mrk_match, KeyIdentifier, KmsArn};
use super::edk::filter_then_decrypt;
use super::{KmsClient, PROVIDER_ID};
use crate::error::{Error, Result, SkipReason};
use crate::keyring::{ensure_no_data_key, Attempts, Keyring};
use crate::materials::{DecryptionMaterials, EncryptedDataKey, EncryptionMaterials};

/// How configured and EDK key ids are compared on decrypt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Matching {
    /// The EDK's ARN must equal the configured ARN.
    Exact,
    /// Multi-Region keys match across Regions (`aws-kms-mrk-match-for-decrypt.md`).
    Mrk,
}

/// Shared implementation of the strict keyrings.
struct Strict {
    key_id: KeyIdentifier,
    client: Arc<dyn KmsClient>,
    grant_tokens: Vec<String>,
    matching: Matching,
}

impl Strict {
    fn new(key_id: &str, client: Arc<dyn KmsClient>, matching: Matching) -> Result<Self> {
        Ok(Self { key_id: KeyIdentifier::parse(key_id)?, client, grant_tokens: Vec::new(), matching })
    }

    fn describe(&self) -> String {
        match self.matching {
            Matching::Exact => format!("KMS key {}", self.key_id),
            Matching::Mrk => format!("KMS key {} (MRK-aware)", self.key_id),
        }
    }

    async fn on_encrypt(&self, mut materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
        let key_id = self.key_id.to_string();
        let kms_failure = |source: super::KmsError, action| Error::Kms { action, source };
        let (arn, ciphertext) = match materials.data_key() {
            None => {
                let len = materials.suite().data_key_len();
                let out = self
                    .client
                    .generate_data_key(&key_id, len, materials.encryption_context(), &self.grant_tokens)
                    .await
                    .map_err(|e| kms_failure(e, "generate the data key"))?;
                if out.plaintext.len() != len {
                    return Err(Error::Keyring {
                        action: "generate the data key",
                        reason: format!("KMS returned {} bytes for {key_id}, expected {len}", out.plaintext.len()),
                        retryable: false,
                    });
                }
                let arn = response_arn(&out.key_id, "generate the data key")?;
                materials.set_data_key(out.plaintext)?;
                (arn, out.ciphertext_blob)
            }
            Some(data_key) => {
                let out = self
                    .client
                    .encrypt(&key_id, data_key.expose_secret(), materials.encryption_context(), &self.grant_tokens)
                    .await
                    .map_err(|e| kms_failure(e, "wrap the data key"))?;
                (response_arn(&out.key_id, "wrap the data key")?, out.ciphertext_blob)
            }
        };
        materials.add_encrypted_data_key(EncryptedDataKey {
            provider_id: PROVIDER_ID.into(),
            provider_info: arn.to_string().into_bytes(),
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
        let Some(configured) = self.key_id.key_arn() else {
            return Err(Error::InvalidConfig(format!(
                "{} cannot decrypt: aliases and bare key ids are not allow-listable (KMS would resolve them \
                 at call time); configure the key ARN",
                self.describe()
            )));
        };
        let configured_str = configured.to_string();
        let attempts = Attempts::new(self.describe(), edks);
        let select = |arn: KmsArn| {
            let allowed = match self.matching {
                Matching::Exact => arn == *configured,
                Matching::Mrk => mrk_match(&self.key_id, &KeyIdentifier::Arn(arn.clone())),
            };
            // Decrypt is always called with the configured ARN.
            if allowed {
                Ok(configured_str.clone())
            } else {
                Err(SkipReason::NotAllowListed { key_arn: arn.to_string() })
            }
        };
        let (i, key) =
            filter_then_decrypt(&*self.client, edks, &materials, &self.grant_tokens, attempts, select).await?;
        materials.set_data_key_from_edk(key, i)?;
        Ok(materials)
    }
}

/// KMS must answer with a key ARN (`aws-kms-keyring.md`, "OnEncrypt").
fn response_arn(key_id: &str, action: &'static str) -> Result<KmsArn> {
    KmsArn::parse_key_arn(key_id).map_err(|e| Error::Keyring {
        action,
        reason: format!("KMS returned a KeyId that is not a key ARN: {e}"),
        retryable: false,
    })
}

macro_rules! strict_keyring {
    ($(#[$doc:meta])* $name:ident, $matching:expr) => {
        $(#[$doc])*
        pub struct $name(Strict);

        impl $name {
            /// A keyring for `key_id` (key ARN; aliases and bare key ids work for encrypt only).
            pub fn new(key_id: &str, client: Arc<dyn KmsClient>) -> Result<Self> {
                Strict::new(key_id, client, $matching).map(Self)
            }

            /// Grant tokens passed with every KMS call.
            pub fn with_grant_tokens(mut self, grant_tokens: Vec<String>) -> Self {
                self.0.grant_tokens = grant_tokens;
                self
            }

            /// The configured key identifier.
            pub fn key_id(&self) -> &KeyIdentifier {
                &self.0.key_id
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("key_id", &self.0.key_id.to_string())
                    .field("client", &self.0.client)
                    .field("grant_tokens", &self.0.grant_tokens.len())
                    .finish()
            }
        }

        #[async_trait]
        impl Keyring for $name {
            async fn on_encrypt(&self, materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
                self.0.on_encrypt(materials).await
            }
            async fn on_decrypt(
                &self,
                materials: DecryptionMaterials,
                edks: &[EncryptedDataKey],
            ) -> Result<DecryptionMaterials> {
                self.0.on_decrypt(materials, edks).await
            }
        }
    };
}

strict_keyring!(
    /// Strict KMS keyring: encrypts under one key and decrypts only EDKs wrapped under exactly
    /// that key ARN, calling KMS `Decrypt` with it as `KeyId`.
    KmsKeyring,
    Matching::Exact
);

strict_keyring!(
    /// MRK-aware strict KMS keyring: like [`KmsKeyring`], but an EDK wrapped under any replica
    /// of the configured multi-Region key is decrypted with the configured ARN, so a consumer in
    /// Region B that lists its B replica calls only Region B.
    KmsMrkKeyring,
    Matching::Mrk
);
