//! A [`KmsClient`] wrapper that counts calls per operation, for operators' metrics and for
//! checking that caching keeps KMS off the per-record path.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use super::client::{DecryptOutput, EncryptOutput, GenerateDataKeyOutput, KmsClient, KmsError};
use super::KmsRsaAlgorithm;
use crate::context::EncryptionContext;

/// Call counts of a [`MeteredKmsClient`] (attempted calls, failed ones included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KmsCallCounts {
    /// `GenerateDataKey` calls.
    pub generate_data_key: u64,
    /// `Encrypt` calls.
    pub encrypt: u64,
    /// `Decrypt` calls.
    pub decrypt: u64,
    /// `GenerateDataKeyWithoutPlaintext` calls (branch key creation).
    pub generate_data_key_without_plaintext: u64,
    /// `ReEncrypt` calls (branch key creation and versioning).
    pub re_encrypt: u64,
    /// Calls that returned an error.
    pub failed: u64,
}

impl KmsCallCounts {
    /// All calls.
    pub fn total(&self) -> u64 {
        self.generate_data_key
            + self.encrypt
            + self.decrypt
            + self.generate_data_key_without_plaintext
            + self.re_encrypt
    }
}

/// Index of the failed-call count.
const FAILED: usize = 5;

/// Counts the calls made through an inner [`KmsClient`].
pub struct MeteredKmsClient {
    inner: Arc<dyn KmsClient>,
    counts: [AtomicU64; 6],
}

impl fmt::Debug for MeteredKmsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeteredKmsClient").field("inner", &self.inner).field("counts", &self.counts()).finish()
    }
}

impl MeteredKmsClient {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn KmsClient>) -> Arc<Self> {
        Arc::new(Self { inner, counts: Default::default() })
    }

    /// Counts so far.
    pub fn counts(&self) -> KmsCallCounts {
        let c = |i: usize| self.counts[i].load(Ordering::Relaxed);
        KmsCallCounts {
            generate_data_key: c(0),
            encrypt: c(1),
            decrypt: c(2),
            generate_data_key_without_plaintext: c(3),
            re_encrypt: c(4),
            failed: c(FAILED),
        }
    }

    fn count<T>(&self, op: usize, r: Result<T, KmsError>) -> Result<T, KmsError> {
        self.counts[op].fetch_add(1, Ordering::Relaxed);
        if r.is_err() {
            self.counts[FAILED].fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

#[async_trait]
impl KmsClient for MeteredKmsClient {
    fn region(&self) -> Option<&str> {
        self.inner.region()
    }

    async fn generate_data_key(
        &self,
        key_id: &str,
        number_of_bytes: usize,
        encryption_context: &EncryptionContext,
        grant_tokens: &[String],
    ) -> Result<GenerateDataKeyOutput, KmsError> {
        let r = self.inner.generate_data_key(key_id, number_of_bytes, encryption_context, grant_tokens).await;
        self.count(0, r)
    }

    async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        encryption_context: &EncryptionContext,
        grant_tokens: &[String],
    ) -> Result<EncryptOutput, KmsError> {
        let r = self.inner.encrypt(key_id, plaintext, encryption_context, grant_tokens).await;
        self.count(1, r)
    }

    async fn decrypt(
        &self,
        key_id: &str,
        ciphertext_blob: &[u8],
        encryption_context: &EncryptionContext,
        grant_tokens: &[String],
    ) -> Result<DecryptOutput, KmsError> {
        let r = self.inner.decrypt(key_id, ciphertext_blob, encryption_context, grant_tokens).await;
        self.count(2, r)
    }

    async fn decrypt_rsa(
        &self,
        key_id: &str,
        ciphertext_blob: &[u8],
        algorithm: KmsRsaAlgorithm,
        grant_tokens: &[String],
    ) -> Result<DecryptOutput, KmsError> {
        let r = self.inner.decrypt_rsa(key_id, ciphertext_blob, algorithm, grant_tokens).await;
        self.count(2, r)
    }

    async fn generate_data_key_without_plaintext(
        &self,
        key_id: &str,
        number_of_bytes: usize,
        encryption_context: &EncryptionContext,
        grant_tokens: &[String],
    ) -> Result<EncryptOutput, KmsError> {
        let r = self
            .inner
            .generate_data_key_without_plaintext(key_id, number_of_bytes, encryption_context, grant_tokens)
            .await;
        self.count(3, r)
    }

    async fn re_encrypt(
        &self,
        source_key_id: &str,
        ciphertext_blob: &[u8],
        source_context: &EncryptionContext,
        destination_key_id: &str,
        destination_context: &EncryptionContext,
        grant_tokens: &[String],
    ) -> Result<EncryptOutput, KmsError> {
        let r = self
            .inner
            .re_encrypt(
                source_key_id,
                ciphertext_blob,
                source_context,
                destination_key_id,
                destination_context,
                grant_tokens,
            )
            .await;
        self.count(4, r)
    }
}
