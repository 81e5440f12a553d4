//! Keyrings generate, wrap and unwrap data keys (spec `framework/keyring-interface.md`).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{EdkAttempt, EdkFailure, EdkOutcome, Error, Result, SkipReason, UnwrapReport};
use crate::materials::{DecryptionMaterials, EncryptedDataKey, EncryptionMaterials};

pub mod ecdh;
#[cfg(feature = "hierarchy")]
pub mod hierarchy;
pub mod kms;
mod multi;
mod raw_aes;
mod raw_rsa;

pub use ecdh::{EcdhCurve, RawEcdhKeyring, RawEcdhScheme};
#[cfg(feature = "hierarchy")]
pub use hierarchy::HierarchicalKeyring;
pub use multi::MultiKeyring;
pub use raw_aes::RawAesKeyring;
pub use raw_rsa::RawRsaKeyring;

/// A keyring (spec `framework/keyring-interface.md`).
///
/// Keyrings that only use local keys complete without awaiting anything.
#[async_trait]
pub trait Keyring: Send + Sync + fmt::Debug {
    /// OnEncrypt: generate the data key if the materials have none, then add this keyring's
    /// encrypted data key(s).
    async fn on_encrypt(&self, materials: EncryptionMaterials) -> Result<EncryptionMaterials>;

    /// OnDecrypt: set the plaintext data key from one of `edks`. Materials that already hold a
    /// data key are refused. When no EDK can be used the error is
    /// [`Error::NoDecryptableDataKey`] with one entry per EDK saying why.
    async fn on_decrypt(
        &self,
        materials: DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<DecryptionMaterials>;
}

#[async_trait]
impl<K: Keyring + ?Sized> Keyring for Arc<K> {
    async fn on_encrypt(&self, materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
        (**self).on_encrypt(materials).await
    }
    async fn on_decrypt(
        &self,
        materials: DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<DecryptionMaterials> {
        (**self).on_decrypt(materials, edks).await
    }
}

/// Collects why each EDK was skipped or failed, for [`Error::NoDecryptableDataKey`].
pub(crate) struct Attempts {
    keyring: String,
    report: UnwrapReport,
}

impl Attempts {
    pub(crate) fn new(keyring: String, edks: &[EncryptedDataKey]) -> Self {
        let present = edks.iter().map(|e| (e.provider_id.clone(), e.provider_info_lossy())).collect();
        Self { report: UnwrapReport { present, configured: vec![keyring.clone()], attempts: Vec::new() }, keyring }
    }

    /// The EDK was excluded by the keyring's filter, without any call.
    pub(crate) fn skip(&mut self, index: usize, edk: &EncryptedDataKey, reason: SkipReason) {
        self.record(index, edk, EdkOutcome::Skipped(reason));
    }

    /// The EDK was tried and failed.
    pub(crate) fn fail(&mut self, index: usize, edk: &EncryptedDataKey, failure: EdkFailure) {
        self.record(index, edk, EdkOutcome::Failed(failure));
    }

    fn record(&mut self, index: usize, edk: &EncryptedDataKey, outcome: EdkOutcome) {
        tracing::debug!(keyring = %self.keyring, edk = index, provider_id = %edk.provider_id, %outcome, "EDK not used");
        self.report.attempts.push(EdkAttempt {
            keyring: self.keyring.clone(),
            index,
            provider_id: edk.provider_id.clone(),
            provider_info: edk.provider_info_lossy(),
            outcome,
        });
    }

    pub(crate) fn into_error(self) -> Error {
        Error::NoDecryptableDataKey(Box::new(self.report))
    }
}

/// Refuses materials that already carry a plaintext data key (`framework/keyring-interface.md`).
pub(crate) fn ensure_no_data_key(materials: &DecryptionMaterials) -> Result<()> {
    if materials.data_key().is_some() {
        return Err(Error::InvalidMaterials("OnDecrypt called with materials that already hold a data key".into()));
    }
    Ok(())
}

/// Namespaces starting with `aws-kms` are reserved for the KMS keyrings (`framework/keyring-interface.md`).
pub(crate) fn check_raw_namespace(namespace: &str) -> Result<()> {
    if namespace.starts_with("aws-kms") {
        return Err(Error::InvalidConfig(format!(
            "key namespace {namespace:?} is reserved for AWS KMS keyrings; choose another namespace"
        )));
    }
    if namespace.len() > u16::MAX as usize {
        return Err(Error::InvalidConfig("key namespace is longer than 65535 bytes".into()));
    }
    Ok(())
}
