//! AWS KMS Hierarchical keyring (spec `framework/aws-kms/aws-kms-hierarchical-keyring.md`,
//! version 0.2.0; feature `hierarchy`): data keys wrapped locally under a key derived from a
//! branch key, which the [`KeyStore`] keeps in DynamoDB wrapped by KMS. A branch key is read
//! and unwrapped once per version per TTL, so KMS and DynamoDB see one call per TTL however
//! many messages are written.
//!
//! Strict filtering holds as in the other KMS keyrings: an EDK of another provider or another
//! branch key is skipped without any call.

mod cache;
mod wrap;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{ensure_no_data_key, Attempts, Keyring};
use crate::crypto::Backend;
use crate::error::{EdkFailure, Error, Result, SkipReason};
use crate::keystore::{BranchKeyMaterials, KeyStore};
use crate::materials::{DataKey, DecryptionMaterials, EncryptedDataKey, EncryptionMaterials};
use crate::EncryptionContext;

pub use cache::{BranchKeyCache, DEFAULT_CACHE_CAPACITY};
pub use wrap::HIERARCHY_PROVIDER_ID;

/// Chooses the branch key of a message from its encryption context (spec "Branch Key
/// Supplier"), for one branch key per tenant.
pub trait BranchKeyIdSupplier: Send + Sync + fmt::Debug {
    /// The branch key id for `context`. An error fails the encrypt or decrypt call.
    fn branch_key_id(&self, context: &EncryptionContext) -> Result<String>;
}

#[derive(Clone, Debug)]
enum BranchKey {
    /// The id and its encrypt-scope cache entry id (computed once).
    Static(String, cache::EntryId),
    Supplier(Arc<dyn BranchKeyIdSupplier>),
}

/// A builder's choice before the entry id can be computed.
#[derive(Clone, Debug)]
enum BranchKeyChoice {
    Static(String),
    Supplier(Arc<dyn BranchKeyIdSupplier>),
}

/// Cache scopes of Appendix A.
const ENCRYPT_SCOPE: u8 = 0x01;
const DECRYPT_SCOPE: u8 = 0x02;
/// Resource id of the Hierarchical keyring (Appendix A).
const RESOURCE_ID: u8 = 0x02;

/// The Hierarchical keyring. Build it with [`HierarchicalKeyring::builder`].
pub struct HierarchicalKeyring {
    store: Arc<KeyStore>,
    branch_key: BranchKey,
    ttl: Duration,
    cache: Arc<BranchKeyCache>,
    partition_id: Vec<u8>,
    backend: Backend,
    /// Decrypt-scope entry ids by EDK version bytes (with their branch key id), so a warm
    /// decrypt hashes nothing to find its branch key. Bounded: cleared when full.
    decrypt_ids: Mutex<HashMap<[u8; 16], (String, cache::EntryId)>>,
}

/// Entries of the decrypt entry id memo.
const MAX_MEMO: usize = 1024;

impl fmt::Debug for HierarchicalKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HierarchicalKeyring")
            .field("store", &self.store)
            .field("branch_key", &self.branch_key)
            .field("ttl", &self.ttl)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// Configures a [`HierarchicalKeyring`]; a branch key id or a supplier is required.
#[derive(Debug)]
pub struct HierarchicalKeyringBuilder {
    store: Arc<KeyStore>,
    ttl: Duration,
    branch_key: Option<BranchKeyChoice>,
    cache: Option<Arc<BranchKeyCache>>,
    capacity: usize,
    partition_id: Option<Vec<u8>>,
    backend: Backend,
}

impl HierarchicalKeyring {
    /// A builder for a keyring on `store` whose cached branch keys are used for at most `ttl`
    /// (spec "Cache Limit TTL", more than zero).
    pub fn builder(store: Arc<KeyStore>, ttl: Duration) -> HierarchicalKeyringBuilder {
        HierarchicalKeyringBuilder {
            store,
            ttl,
            branch_key: None,
            cache: None,
            capacity: DEFAULT_CACHE_CAPACITY,
            partition_id: None,
            backend: Backend::default(),
        }
    }
}

impl HierarchicalKeyringBuilder {
    /// Every message uses branch key `id`.
    pub fn branch_key_id(mut self, id: &str) -> Self {
        self.branch_key = Some(BranchKeyChoice::Static(id.to_owned()));
        self
    }

    /// Each message's branch key is chosen by `supplier` from its encryption context.
    pub fn branch_key_id_supplier(mut self, supplier: Arc<dyn BranchKeyIdSupplier>) -> Self {
        self.branch_key = Some(BranchKeyChoice::Supplier(supplier));
        self
    }

    /// Uses a cache shared with other keyrings (spec `Shared` cache type). Keyrings share
    /// entries only when their partition ids, logical store names and branch key ids are equal.
    pub fn cache(mut self, cache: Arc<BranchKeyCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Entries of this keyring's own cache (1000 by default; ignored with [`Self::cache`]).
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The partition id (spec "Partition ID"): its UTF-8 bytes go into every cache entry id.
    /// Without one, the 16 bytes of a random v4 UUID: this keyring then shares no entry with any
    /// other.
    pub fn partition_id(mut self, partition_id: &str) -> Self {
        self.partition_id = Some(partition_id.as_bytes().to_vec());
        self
    }

    /// The crypto backend of the local wrapping.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The keyring.
    pub fn build(self) -> Result<HierarchicalKeyring> {
        let Some(choice) = self.branch_key else {
            return Err(Error::InvalidConfig(
                "the Hierarchical keyring needs a branch key id or a branch key id supplier".into(),
            ));
        };
        if let BranchKeyChoice::Static(id) = &choice {
            if id.is_empty() {
                return Err(Error::InvalidConfig("the branch key id must not be empty".into()));
            }
        }
        if self.ttl.is_zero() {
            return Err(Error::InvalidConfig("the Hierarchical keyring's cache TTL must be more than zero".into()));
        }
        let cache = match self.cache {
            Some(c) => c,
            None => BranchKeyCache::new(self.capacity)?,
        };
        let partition_id = match self.partition_id {
            Some(p) => p,
            None => crate::keystore::new_uuid_bytes()?.to_vec(),
        };
        let branch_key = match choice {
            BranchKeyChoice::Static(id) => {
                let entry = entry_id(self.backend, &partition_id, self.store.logical_name(), ENCRYPT_SCOPE, &id, None);
                BranchKey::Static(id, entry)
            }
            BranchKeyChoice::Supplier(s) => BranchKey::Supplier(s),
        };
        Ok(HierarchicalKeyring {
            store: self.store,
            branch_key,
            ttl: self.ttl,
            cache,
            partition_id,
            backend: self.backend,
            decrypt_ids: Mutex::default(),
        })
    }
}

/// Appendix A: SHA-384 of resource id, scope, partition id, logical store name, branch key id
/// (and version), separated by zero bytes.
fn entry_id(
    backend: Backend,
    partition_id: &[u8],
    logical_name: &str,
    scope: u8,
    id: &str,
    version: Option<&str>,
) -> cache::EntryId {
    let mut h = backend.provider().hasher(crate::suite::HashAlg::Sha384);
    h.update(&[RESOURCE_ID, 0, scope, 0]);
    h.update(partition_id);
    h.update(&[0]);
    h.update(logical_name.as_bytes());
    h.update(&[0]);
    h.update(id.as_bytes());
    if let Some(v) = version {
        h.update(&[0]);
        h.update(v.as_bytes());
    }
    let mut out = [0u8; 48];
    out.copy_from_slice(&h.finish()[..48]);
    out
}

impl HierarchicalKeyring {
    fn branch_key_id(&self, context: &EncryptionContext) -> Result<Cow<'_, str>> {
        match &self.branch_key {
            BranchKey::Static(id, _) => Ok(Cow::Borrowed(id)),
            BranchKey::Supplier(s) => {
                let id = s.branch_key_id(context)?;
                if id.is_empty() {
                    return Err(Error::InvalidConfig("the branch key id supplier returned an empty id".into()));
                }
                Ok(Cow::Owned(id))
            }
        }
    }

    fn describe(&self, id: &str) -> String {
        format!("Hierarchical keyring for branch key {id} in key store {}", self.store.info().table)
    }

    fn entry_id(&self, scope: u8, id: &str, version: Option<&str>) -> cache::EntryId {
        entry_id(self.backend, &self.partition_id, self.store.logical_name(), scope, id, version)
    }

    async fn active(&self, id: &str) -> Result<Arc<BranchKeyMaterials>> {
        let entry = match &self.branch_key {
            BranchKey::Static(_, entry) => *entry,
            BranchKey::Supplier(_) => self.entry_id(ENCRYPT_SCOPE, id, None),
        };
        self.cache.get_or_fetch(&entry, self.ttl, || self.store.get_active_branch_key(id)).await
    }

    /// The branch key version an EDK names (by its 16 version bytes).
    async fn version(&self, id: &str, version: [u8; 16]) -> Result<Arc<BranchKeyMaterials>> {
        let memo = self.decrypt_ids.lock().unwrap_or_else(|p| p.into_inner()).get(&version).cloned();
        let entry = match memo {
            Some((memo_id, entry)) if memo_id == id => entry,
            _ => {
                let entry = self.entry_id(DECRYPT_SCOPE, id, Some(&wrap::version_string(version)));
                let mut ids = self.decrypt_ids.lock().unwrap_or_else(|p| p.into_inner());
                if ids.len() >= MAX_MEMO {
                    ids.clear();
                }
                ids.insert(version, (id.to_owned(), entry));
                entry
            }
        };
        let fetch = || async move { self.store.get_branch_key_version(id, &wrap::version_string(version)).await };
        self.cache.get_or_fetch(&entry, self.ttl, fetch).await
    }
}

#[async_trait]
impl Keyring for HierarchicalKeyring {
    async fn on_encrypt(&self, mut materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
        let id = self.branch_key_id(materials.encryption_context())?;
        let serialized = materials.encryption_context().to_bytes()?;
        let branch_key = self.active(&id).await?;
        let version = wrap::version_bytes(branch_key.version()).map_err(|e| Error::Keyring {
            action: "wrap the data key",
            reason: format!("{}: {e}", self.describe(&id)),
            retryable: false,
        })?;
        let data_key = materials.data_key_or_generate()?.expose_secret();
        let ciphertext = wrap::wrap(self.backend, branch_key.expose_secret(), &id, &version, &serialized, data_key)?;
        materials.add_encrypted_data_key(EncryptedDataKey {
            provider_id: HIERARCHY_PROVIDER_ID.into(),
            provider_info: id.as_bytes().to_vec(),
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
        let id = self.branch_key_id(materials.encryption_context())?;
        let serialized = materials.encryption_context().to_bytes()?;
        let key_len = materials.suite().data_key_len();
        let mut attempts = Attempts::new(self.describe(&id), edks);
        for (i, edk) in edks.iter().enumerate() {
            if edk.provider_id != HIERARCHY_PROVIDER_ID {
                attempts.skip(i, edk, SkipReason::ProviderId);
                continue;
            }
            if edk.provider_info != id.as_bytes() {
                let found = edk.provider_info_lossy();
                let version = wrap::edk_version(&edk.ciphertext).map(wrap::version_string);
                attempts.skip(i, edk, SkipReason::BranchKeyId { found, version, expected: id.to_string() });
                continue;
            }
            if edk.ciphertext.len() != wrap::OVERHEAD + key_len {
                let found = edk.ciphertext.len().saturating_sub(wrap::OVERHEAD);
                attempts.fail(i, edk, EdkFailure::DataKeyLength { found, expected: key_len });
                continue;
            }
            let Some(version) = wrap::edk_version(&edk.ciphertext) else {
                return Err(Error::Internal("EDK ciphertext length checked above"));
            };
            let branch_key = match self.version(&id, version).await {
                Ok(k) => k,
                Err(Error::KeyStore(e)) => {
                    attempts.fail(i, edk, EdkFailure::KeyStore(e));
                    continue;
                }
                Err(e) => {
                    let retryable = e.is_retryable();
                    attempts.fail(i, edk, EdkFailure::Keyring { error: e.to_string(), retryable });
                    continue;
                }
            };
            match wrap::unwrap(self.backend, branch_key.expose_secret(), &id, &serialized, &edk.ciphertext)? {
                Some(key) => {
                    materials.set_data_key_from_edk(DataKey::from_bytes(&key), i)?;
                    return Ok(materials);
                }
                None => attempts.fail(i, edk, EdkFailure::Unwrap),
            }
        }
        Err(attempts.into_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appendix A's formulas, against SHA-384 digests computed independently (Python hashlib)
    /// over the spec's byte layout.
    #[test]
    fn cache_entry_ids_follow_appendix_a() {
        let version = "83eec007-5659-4554-bf11-699b90f41ac6";
        for &backend in Backend::all() {
            let encrypt = entry_id(backend, b"p1", "store", ENCRYPT_SCOPE, "bk", None);
            let decrypt = entry_id(backend, b"p1", "store", DECRYPT_SCOPE, "bk", Some(version));
            assert_eq!(
                hex(&encrypt),
                "eefc332340e5987393c3fb759010ab1892789aae25c72d131cdf28c5f95a4d804203f1cf24267b8938d83e1c0d42814e"
            );
            assert_eq!(
                hex(&decrypt),
                "7bfd668ba781dd5dfa77939c4bcc207c74d3093357b9fe464a3b89652f1d337ea20fed5270da5af9cfc83bea294ad0c5"
            );
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
