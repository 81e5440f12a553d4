//! Cryptographic materials managers (spec `framework/cmm-interface.md`).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::context::EncryptionContext;
use crate::error::Result;
use crate::materials::{DecryptionMaterials, EncryptedDataKey, EncryptionMaterials};
use crate::policy::CommitmentPolicy;
use crate::suite::AlgorithmSuite;

pub mod caching;
mod default;
mod required_context;

pub use caching::{CacheCounters, CachingCmm, LocalCache};
pub use default::DefaultCmm;
pub use required_context::RequiredEncryptionContextCmm;

/// Input to [`MaterialsManager::get_encryption_materials`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EncryptionMaterialsRequest {
    /// The caller's encryption context.
    pub encryption_context: EncryptionContext,
    /// The client's commitment policy.
    pub commitment_policy: CommitmentPolicy,
    /// The suite the caller asked for, if any.
    pub suite: Option<AlgorithmSuite>,
    /// Plaintext length, when known in advance.
    pub max_plaintext_length: Option<u64>,
    /// Context keys to authenticate without storing them in the header.
    pub required_encryption_context_keys: BTreeSet<String>,
}

impl EncryptionMaterialsRequest {
    /// A request for `encryption_context` under `commitment_policy`.
    pub fn new(encryption_context: EncryptionContext, commitment_policy: CommitmentPolicy) -> Self {
        Self {
            encryption_context,
            commitment_policy,
            suite: None,
            max_plaintext_length: None,
            required_encryption_context_keys: BTreeSet::new(),
        }
    }
}

/// Input to [`MaterialsManager::decrypt_materials`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DecryptMaterialsRequest<'a> {
    /// Suite from the message header.
    pub suite: AlgorithmSuite,
    /// The client's commitment policy.
    pub commitment_policy: CommitmentPolicy,
    /// EDKs from the header.
    pub encrypted_data_keys: &'a [EncryptedDataKey],
    /// Encryption context stored in the header.
    pub encryption_context: &'a EncryptionContext,
    /// Context the caller supplied at decrypt (values must match; extra keys are authenticated).
    pub reproduced_encryption_context: Option<&'a EncryptionContext>,
}

impl<'a> DecryptMaterialsRequest<'a> {
    /// A request built from header fields.
    pub fn new(
        suite: AlgorithmSuite,
        commitment_policy: CommitmentPolicy,
        encrypted_data_keys: &'a [EncryptedDataKey],
        encryption_context: &'a EncryptionContext,
        reproduced_encryption_context: Option<&'a EncryptionContext>,
    ) -> Self {
        Self { suite, commitment_policy, encrypted_data_keys, encryption_context, reproduced_encryption_context }
    }
}

/// A cryptographic materials manager.
#[async_trait]
pub trait MaterialsManager: Send + Sync + fmt::Debug {
    /// Materials to encrypt one message.
    async fn get_encryption_materials(&self, request: EncryptionMaterialsRequest) -> Result<EncryptionMaterials>;
    /// Materials to decrypt one message.
    async fn decrypt_materials(&self, request: DecryptMaterialsRequest<'_>) -> Result<DecryptionMaterials>;
}

#[async_trait]
impl<M: MaterialsManager + ?Sized> MaterialsManager for Arc<M> {
    async fn get_encryption_materials(&self, request: EncryptionMaterialsRequest) -> Result<EncryptionMaterials> {
        (**self).get_encryption_materials(request).await
    }
    async fn decrypt_materials(&self, request: DecryptMaterialsRequest<'_>) -> Result<DecryptionMaterials> {
        (**self).decrypt_materials(request).await
    }
}
