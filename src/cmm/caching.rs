//! Caching materials manager and its local cache (spec `framework/caching-cmm.md`,
//! `framework/local-cryptographic-materials-cache.md`).
//!
//! Reusing a data key for many messages is what keeps KMS out of the per-record path: with a
//! cache, a producer calls `GenerateDataKey` once per entry lifetime and a consumer calls
//! `Decrypt` once per distinct EDK set, not once per message.
//!
//! Cache entry identifiers are exactly the spec's (Appendix A, "Cache Entry Identifier
//! Formulas"): SHA-384 of resource id, scope id, partition id and resource suffix (the suite, the
//! sorted serialized EDKs, the serialized encryption context), separated by NUL bytes.
//!
//! The identifier leaves out two inputs that change what the underlying materials manager
//! returns or checks: on encrypt, the required-only context keys (they decide which pairs the
//! header stores); on decrypt, the reproduced encryption context (the underlying manager checks
//! it against the stored one). Each entry records these as its *binding*, and a lookup whose
//! binding differs is a miss that refetches and replaces the entry, so a cache hit can never skip
//! that check or return materials made for another set of required keys. The identifier formula
//! stays the spec's ("the caching CMM MUST use the formulas specified in this appendix in order to
//! compute the cache entry identifier"); the binding only narrows when an entry may be used. The
//! spec allows that: it says how an identifier is computed, not that every entry found under it
//! must be returned, and a miss only costs a call to the underlying materials manager.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{DecryptMaterialsRequest, EncryptionMaterialsRequest, MaterialsManager};
use crate::crypto::{self, Backend};
use crate::error::{Error, Result};
use crate::materials::{DecryptionMaterials, EncryptionMaterials};
use crate::suite::{HashAlg, Kdf};

/// The ESDK's bound on messages per data key (`caching-cmm.md`, "Limit Messages").
pub const MAX_MESSAGES_PER_KEY: u64 = 1 << 32;

/// Counters a caller can read (all monotonic).
#[derive(Debug, Default)]
pub struct CacheStats {
    hits: AtomicU64,
    misses: AtomicU64,
    underlying_calls: AtomicU64,
    evictions: AtomicU64,
    bypasses: AtomicU64,
}

/// A snapshot of [`CacheStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheCounters {
    /// Requests answered from the cache.
    pub hits: u64,
    /// Requests not found (or found expired / used up).
    pub misses: u64,
    /// Calls to the underlying materials manager (so to KMS, for KMS keyrings).
    pub underlying_calls: u64,
    /// Entries removed for capacity, age or usage limits.
    pub evictions: u64,
    /// Requests that bypass the cache (identity-KDF suites, unknown plaintext length, too large).
    pub bypasses: u64,
}

impl CacheStats {
    /// Current values.
    pub fn snapshot(&self) -> CacheCounters {
        CacheCounters {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            underlying_calls: self.underlying_calls.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            bypasses: self.bypasses.load(Ordering::Relaxed),
        }
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A cache entry identifier: SHA-384 (`caching-cmm.md`, Appendix A).
type EntryId = [u8; 48];

/// Appendix A, "Resource Identifier": the caching CMM.
const RESOURCE_CACHING_CMM: u8 = 0x01;
/// Appendix A, "Scope Identifier": encrypt.
const SCOPE_ENCRYPT: u8 = 0x01;
/// Appendix A, "Scope Identifier": decrypt.
const SCOPE_DECRYPT: u8 = 0x02;
/// Appendix A: the fields are "separated by a single NULL_BYTE `0x00`".
const NUL: u8 = 0x00;

enum Cached {
    Encrypt(EncryptionMaterials),
    Decrypt(DecryptionMaterials),
}

struct Entry {
    materials: Cached,
    /// The inputs outside the identifier this entry was made for (see the module docs).
    binding: Vec<u8>,
    created: Instant,
    /// Created plus the max age of the CMM that stored it: TTL-expired from then on.
    expires: Instant,
    last_used: u64,
    messages: u64,
    bytes: u64,
}

/// What [`LocalCache::insert`] stores.
struct NewEntry {
    materials: Cached,
    binding: Vec<u8>,
    ttl: Duration,
    /// Uses already counted (1 for the encryption that fetched it).
    messages: u64,
    bytes: u64,
}

/// How many least recently used entries each put and get checks for TTL-expired ones (spec
/// `local-cryptographic-materials-cache.md`, "Entry Pruning Tail Size").
const PRUNING_TAIL: usize = 10;

/// A bounded in-process cache: at most `capacity` entries, least recently used evicted first,
/// expired entries never returned. Share one between caching CMMs with distinct partitions.
pub struct LocalCache {
    capacity: usize,
    state: Mutex<CacheState>,
    /// One lock per entry being fetched, so concurrent misses make one underlying call.
    flights: Mutex<HashMap<EntryId, Arc<tokio::sync::Mutex<()>>>>,
    stats: CacheStats,
}

#[derive(Default)]
struct CacheState {
    entries: HashMap<EntryId, Entry>,
    /// Entries by last use, oldest first.
    lru: BTreeMap<u64, EntryId>,
    tick: u64,
}

impl CacheState {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// Marks `id` used now.
    fn touch(&mut self, id: &EntryId, tick: u64) {
        if let Some(e) = self.entries.get_mut(id) {
            self.lru.remove(&e.last_used);
            e.last_used = tick;
            self.lru.insert(tick, *id);
        }
    }

    fn remove(&mut self, id: &EntryId) -> bool {
        match self.entries.remove(id) {
            Some(e) => {
                self.lru.remove(&e.last_used);
                true
            }
            None => false,
        }
    }

    /// Evicts the TTL-expired entries among the `PRUNING_TAIL` least recently used; returns how
    /// many.
    fn prune(&mut self, now: Instant) -> u64 {
        let expired: Vec<EntryId> = self
            .lru
            .values()
            .take(PRUNING_TAIL)
            .filter(|id| self.entries.get(*id).is_some_and(|e| e.expires <= now))
            .copied()
            .collect();
        expired.iter().filter(|id| self.remove(id)).count() as u64
    }
}

impl fmt::Debug for LocalCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.state.lock().map(|s| s.entries.len()).unwrap_or(0);
        f.debug_struct("LocalCache").field("capacity", &self.capacity).field("entries", &len).finish()
    }
}

impl LocalCache {
    /// A cache holding at most `capacity` entries. Zero is accepted (spec
    /// `local-cryptographic-materials-cache.md`: "MUST accept entry capacity values between zero
    /// and an implementation-defined maximum"): such a cache stores nothing, so every lookup
    /// misses and the underlying materials manager is called each time.
    pub fn new(capacity: usize) -> Result<Self> {
        Ok(Self {
            capacity,
            state: Mutex::new(CacheState::default()),
            flights: Mutex::new(HashMap::new()),
            stats: CacheStats::default(),
        })
    }

    /// Hit, miss, call and eviction counters.
    pub fn stats(&self) -> CacheCounters {
        self.stats.snapshot()
    }

    /// Number of entries held now.
    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.entries.len()).unwrap_or(0)
    }

    /// Whether the cache holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, CacheState>> {
        self.state
            .lock()
            .map_err(|_| Error::Internal("materials cache lock poisoned (a thread panicked while holding it)"))
    }

    fn flight(&self, id: &EntryId) -> Result<Arc<tokio::sync::Mutex<()>>> {
        let mut flights = self
            .flights
            .lock()
            .map_err(|_| Error::Internal("materials cache lock poisoned (a thread panicked while holding it)"))?;
        Ok(flights.entry(*id).or_default().clone())
    }

    fn land(&self, id: &EntryId) {
        if let Ok(mut flights) = self.flights.lock() {
            // Drop the flight lock once no other task holds it.
            if flights.get(id).is_some_and(|f| Arc::strong_count(f) == 1) {
                flights.remove(id);
            }
        }
    }

    /// Put Cache Entry: prunes, stores, then evicts least recently used entries down to the
    /// capacity.
    fn insert(&self, id: EntryId, entry: NewEntry) -> Result<()> {
        let NewEntry { materials, binding, ttl, messages, bytes } = entry;
        let mut state = self.lock()?;
        let now = Instant::now();
        let pruned = state.prune(now);
        self.stats.evictions.fetch_add(pruned, Ordering::Relaxed);
        let tick = state.next_tick();
        state.remove(&id);
        let expires = now.checked_add(ttl).unwrap_or(now);
        state.entries.insert(id, Entry { materials, binding, created: now, expires, last_used: tick, messages, bytes });
        state.lru.insert(tick, id);
        while state.entries.len() > self.capacity {
            let Some((_, oldest)) = state.lru.first_key_value().map(|(t, k)| (*t, *k)) else { break };
            state.remove(&oldest);
            CacheStats::bump(&self.stats.evictions);
        }
        Ok(())
    }

    /// Locks the state for a Get Cache Entry, after pruning TTL-expired entries.
    fn lock_for_get(&self) -> Result<std::sync::MutexGuard<'_, CacheState>> {
        let mut state = self.lock()?;
        let pruned = state.prune(Instant::now());
        self.stats.evictions.fetch_add(pruned, Ordering::Relaxed);
        Ok(state)
    }
}

/// A materials manager that reuses materials from a [`LocalCache`].
pub struct CachingCmm {
    underlying: Arc<dyn MaterialsManager>,
    cache: Arc<LocalCache>,
    partition_id: String,
    max_age: Duration,
    max_messages: u64,
    max_bytes: u64,
    backend: Backend,
}

impl fmt::Debug for CachingCmm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingCmm")
            .field("partition_id", &self.partition_id)
            .field("max_age", &self.max_age)
            .field("max_messages", &self.max_messages)
            .field("max_bytes", &self.max_bytes)
            .field("cache", &self.cache)
            .finish()
    }
}

impl CachingCmm {
    /// Caches materials of `underlying` in `cache` for at most `max_age` (> 0). Each instance gets a
    /// random partition id unless [`Self::with_partition_id`] sets one.
    pub fn new(underlying: Arc<dyn MaterialsManager>, cache: Arc<LocalCache>, max_age: Duration) -> Result<Self> {
        if max_age.is_zero() {
            return Err(Error::InvalidConfig("a caching CMM needs a max age greater than zero".into()));
        }
        let mut random = [0u8; 16];
        crypto::fill_random(&mut random)?;
        let partition_id: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let backend = Backend::default();
        Ok(Self {
            partition_id,
            underlying,
            cache,
            max_age,
            max_messages: MAX_MESSAGES_PER_KEY,
            max_bytes: i64::MAX as u64,
            backend,
        })
    }

    /// Sets the partition id (CMMs sharing a cache and a partition share entries).
    pub fn with_partition_id(mut self, partition_id: &str) -> Self {
        self.partition_id = partition_id.to_owned();
        self
    }

    /// Maximum messages encrypted under one cached data key (1 to 2^32, default 2^32).
    pub fn with_max_messages(mut self, max: u64) -> Result<Self> {
        if max == 0 || max > MAX_MESSAGES_PER_KEY {
            return Err(Error::InvalidConfig(format!("max messages per data key must be 1 to {MAX_MESSAGES_PER_KEY}")));
        }
        self.max_messages = max;
        Ok(self)
    }

    /// Maximum plaintext bytes encrypted under one cached data key (default 2^63 - 1).
    pub fn with_max_bytes(mut self, max: u64) -> Self {
        self.max_bytes = max.min(i64::MAX as u64);
        self
    }

    /// Crypto backend for the identifier hashes.
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The cache's counters.
    pub fn stats(&self) -> CacheCounters {
        self.cache.stats()
    }

    /// Appendix A, "Encryption Materials, Without/With Algorithm Suite".
    fn encrypt_id(&self, request: &EncryptionMaterialsRequest) -> Result<EntryId> {
        let ec = &request.encryption_context;
        ec.check_serializable()?;
        let mut buf = self.id_prefix(SCOPE_ENCRYPT, 6 + ec.serialized_len());
        match request.suite {
            // "the Algorithm Suite Hex byte `0x00` to indicate Encryption Materials Without
            // Algorithm Suite"
            None => buf.extend_from_slice(&[0x00, NUL]),
            // "`0x01` to indicate Encryption Materials With Algorithm Suite" and "the two-byte
            // Algorithm Suite ID"
            Some(suite) => {
                buf.extend_from_slice(&[0x01, NUL]);
                buf.extend_from_slice(&suite.id_bytes());
                buf.push(NUL);
            }
        }
        ec.serialize_into(&mut buf);
        Ok(sha384(self.backend, &buf))
    }

    /// Appendix A, "Decryption Materials".
    fn decrypt_id(&self, request: &DecryptMaterialsRequest<'_>) -> Result<EntryId> {
        let ec = request.encryption_context;
        ec.check_serializable()?;
        let edks = request.encrypted_data_keys;
        let edk_len: usize = edks.iter().map(|e| e.serialized_len()).sum();
        let mut buf = self.id_prefix(SCOPE_DECRYPT, 4 + edk_len + ec.serialized_len());
        buf.extend_from_slice(&request.suite.id_bytes());
        buf.push(NUL);
        // "the concatenation of the lexicographically-sorted serialized encrypted data keys"
        if let [edk] = edks {
            edk.serialize_into(&mut buf);
        } else {
            let mut serialized: Vec<Vec<u8>> = edks
                .iter()
                .map(|edk| {
                    let mut ser = Vec::with_capacity(edk.serialized_len());
                    edk.serialize_into(&mut ser);
                    ser
                })
                .collect();
            serialized.sort_unstable();
            serialized.iter().for_each(|e| buf.extend_from_slice(e));
        }
        buf.push(NUL);
        ec.serialize_into(&mut buf);
        Ok(sha384(self.backend, &buf))
    }

    /// `resource-id NUL scope-id NUL partition-id NUL`, with room for `more` bytes.
    fn id_prefix(&self, scope: u8, more: usize) -> Vec<u8> {
        let mut buf = Vec::with_capacity(5 + self.partition_id.len() + more);
        buf.extend_from_slice(&[RESOURCE_CACHING_CMM, NUL, scope, NUL]);
        buf.extend_from_slice(self.partition_id.as_bytes());
        buf.push(NUL);
        buf
    }

    /// A usable encryption entry for `len` more bytes, counting the use; `None` on miss.
    fn take_encrypt(&self, id: &EntryId, binding: &[u8], len: u64) -> Result<Option<EncryptionMaterials>> {
        let mut state = self.cache.lock_for_get()?;
        let tick = state.next_tick();
        let Some(entry) = state.entries.get_mut(id) else { return Ok(None) };
        if entry.binding != binding {
            return Ok(None);
        }
        let usable = entry.created.elapsed() < self.max_age
            && entry.messages < self.max_messages
            && entry.bytes.saturating_add(len) <= self.max_bytes;
        if !usable {
            state.remove(id);
            CacheStats::bump(&self.cache.stats.evictions);
            return Ok(None);
        }
        let Cached::Encrypt(m) = &entry.materials else { return Ok(None) };
        entry.messages += 1;
        entry.bytes += len;
        let m = m.duplicate();
        state.touch(id, tick);
        Ok(Some(m))
    }

    fn take_decrypt(&self, id: &EntryId, binding: &[u8]) -> Result<Option<DecryptionMaterials>> {
        let mut state = self.cache.lock_for_get()?;
        let tick = state.next_tick();
        let Some(entry) = state.entries.get(id) else { return Ok(None) };
        if entry.binding != binding {
            return Ok(None);
        }
        if entry.created.elapsed() >= self.max_age {
            state.remove(id);
            CacheStats::bump(&self.cache.stats.evictions);
            return Ok(None);
        }
        let Cached::Decrypt(m) = &entry.materials else { return Ok(None) };
        let m = m.fork();
        state.touch(id, tick);
        Ok(Some(m))
    }
}

impl CachingCmm {
    /// Runs `fetch` for an entry at most once at a time: concurrent misses for `id` wait for the
    /// first and then find its result through `take`. Failures are returned, never stored.
    async fn single_flight<T, F>(&self, id: &EntryId, take: impl Fn() -> Result<Option<T>>, fetch: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        let flight = self.cache.flight(id)?;
        let result = async {
            let _guard = flight.lock().await;
            match take()? {
                Some(found) => Ok(found),
                None => {
                    CacheStats::bump(&self.cache.stats.underlying_calls);
                    fetch.await
                }
            }
        }
        .await;
        drop(flight);
        self.cache.land(id);
        result
    }
}

/// An encryption entry's binding: the required-only context keys (empty when there are none).
fn encrypt_binding(request: &EncryptionMaterialsRequest) -> Vec<u8> {
    let keys = &request.required_encryption_context_keys;
    if keys.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(4 + keys.iter().map(|k| 4 + k.len()).sum::<usize>());
    out.extend_from_slice(&(keys.len() as u32).to_be_bytes());
    for k in keys {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
    }
    out
}

/// A decryption entry's binding: the reproduced encryption context, if the caller gave one.
fn decrypt_binding(request: &DecryptMaterialsRequest<'_>) -> Result<Vec<u8>> {
    let Some(reproduced) = request.reproduced_encryption_context else { return Ok(Vec::new()) };
    reproduced.check_serializable()?;
    let mut out = Vec::with_capacity(1 + reproduced.serialized_len());
    out.push(0x01);
    reproduced.serialize_into(&mut out);
    Ok(out)
}

fn sha384(backend: Backend, data: &[u8]) -> EntryId {
    let mut h = backend.provider().hasher(HashAlg::Sha384);
    h.update(data);
    let mut out = [0u8; 48];
    out.copy_from_slice(&h.finish());
    out
}

#[async_trait]
impl MaterialsManager for CachingCmm {
    async fn get_encryption_materials(&self, mut request: EncryptionMaterialsRequest) -> Result<EncryptionMaterials> {
        let suite = request.suite.unwrap_or(request.commitment_policy.default_suite());
        let len = match request.max_plaintext_length {
            Some(len) if suite.kdf() != Kdf::Identity && len <= self.max_bytes => len,
            _ => {
                CacheStats::bump(&self.cache.stats.bypasses);
                CacheStats::bump(&self.cache.stats.underlying_calls);
                return self.underlying.get_encryption_materials(request).await;
            }
        };
        let id = self.encrypt_id(&request)?;
        let binding = encrypt_binding(&request);
        if let Some(m) = self.take_encrypt(&id, &binding, len)? {
            CacheStats::bump(&self.cache.stats.hits);
            return Ok(m);
        }
        CacheStats::bump(&self.cache.stats.misses);
        let this = self;
        self.single_flight(&id, || this.take_encrypt(&id, &binding, len), async {
            request.max_plaintext_length = Some(this.max_bytes);
            let m = this.underlying.get_encryption_materials(request).await?;
            let copy = m.duplicate();
            let entry = NewEntry {
                materials: Cached::Encrypt(m),
                binding: binding.clone(),
                ttl: this.max_age,
                messages: 1,
                bytes: len,
            };
            this.cache.insert(id, entry)?;
            Ok(copy)
        })
        .await
    }

    async fn decrypt_materials(&self, request: DecryptMaterialsRequest<'_>) -> Result<DecryptionMaterials> {
        if request.suite.kdf() == Kdf::Identity {
            CacheStats::bump(&self.cache.stats.bypasses);
            CacheStats::bump(&self.cache.stats.underlying_calls);
            return self.underlying.decrypt_materials(request).await;
        }
        let id = self.decrypt_id(&request)?;
        let binding = decrypt_binding(&request)?;
        if let Some(m) = self.take_decrypt(&id, &binding)? {
            CacheStats::bump(&self.cache.stats.hits);
            return Ok(m);
        }
        CacheStats::bump(&self.cache.stats.misses);
        let this = self;
        self.single_flight(&id, || this.take_decrypt(&id, &binding), async {
            let m = this.underlying.decrypt_materials(request).await?;
            let copy = m.fork();
            let entry = NewEntry {
                materials: Cached::Decrypt(m),
                binding: binding.clone(),
                ttl: this.max_age,
                messages: 0,
                bytes: 0,
            };
            this.cache.insert(id, entry)?;
            Ok(copy)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::materials::EncryptedDataKey;
    use crate::policy::CommitmentPolicy;
    use crate::suite::AlgorithmSuite;
    use crate::{DefaultCmm, EncryptionContext, RawAesKeyring};

    fn cmm() -> CachingCmm {
        let keyring = RawAesKeyring::new("ns", "name", &[7u8; 32]).unwrap();
        let underlying: Arc<dyn MaterialsManager> = Arc::new(DefaultCmm::new(keyring));
        CachingCmm::new(underlying, Arc::new(LocalCache::new(4).unwrap()), Duration::from_secs(60))
            .unwrap()
            .with_partition_id("partition-1")
    }

    fn hex(id: &EntryId) -> String {
        id.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn ec() -> EncryptionContext {
        [("k", "v"), ("a", "1")].into_iter().collect()
    }

    fn edk(provider_id: &str, provider_info: &[u8], ciphertext: &[u8]) -> EncryptedDataKey {
        EncryptedDataKey {
            provider_id: provider_id.into(),
            provider_info: provider_info.to_vec(),
            ciphertext: ciphertext.to_vec(),
        }
    }

    // The expected identifiers are SHA-384 (Python's hashlib) of the preimages the spec's
    // formulas give, written out byte by byte:
    //   resource-id 01 ‖ 00 ‖ scope-id ‖ 00 ‖ "partition-1" ‖ 00 ‖ resource suffix,
    // with SerializeEncryptionContext({"a":"1","k":"v"}) = 0002 0001 61 0001 31 0001 6b 0001 76.

    /// `caching-cmm.md`, Appendix A, "Encryption Materials, Without Algorithm Suite": "MUST be the
    /// Algorithm Suite Hex byte `0x00` to indicate Encryption Materials Without Algorithm Suite".
    #[test]
    fn encrypt_identifier_without_a_suite_is_the_spec_formula() {
        let request = EncryptionMaterialsRequest::new(ec(), CommitmentPolicy::RequireEncryptRequireDecrypt);
        // 01 00 01 00 "partition-1" 00 | 00 00 | EC
        assert_eq!(
            hex(&cmm().encrypt_id(&request).unwrap()),
            "27d173a302b6571fc333aef209a096b11dcd1ee5f8870087bdff255c44091a4b095e0ef7138c7247146a0c85ace54d87"
        );
    }

    /// Appendix A, "Encryption Materials, With Algorithm Suite": "MUST be the Algorithm Suite Hex
    /// byte `0x01` [...] MUST be the two-byte Algorithm Suite ID corresponding to the algorithm
    /// suite in the request".
    #[test]
    fn encrypt_identifier_with_a_suite_is_the_spec_formula() {
        let mut request = EncryptionMaterialsRequest::new(ec(), CommitmentPolicy::RequireEncryptRequireDecrypt);
        request.suite = Some(AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384);
        // 01 00 01 00 "partition-1" 00 | 01 00 05 78 00 | EC
        assert_eq!(
            hex(&cmm().encrypt_id(&request).unwrap()),
            "c03c3b3c2ac91598c071372f98ef1222c3c19ef0eab26f5b052fbe6ab102a12411202cca9177ba9a7f3d44f62fe2c317"
        );
    }

    /// Appendix A, "Decryption Materials": "MUST be the two-byte Algorithm Suite ID [...] MUST be
    /// the concatenation of the lexicographically-sorted serialized encrypted data keys [...] MUST
    /// be the serialized encryption context", separated by NUL bytes.
    #[test]
    fn decrypt_identifier_is_the_spec_formula_and_independent_of_edk_order() {
        let raw = edk("raw", b"zz", &[9, 9]);
        let kms = edk("aws-kms", b"arn:x", &[1, 2, 3]);
        let context = ec();
        let suite = AlgorithmSuite::Aes256GcmHkdfSha512CommitKey;
        let policy = CommitmentPolicy::RequireEncryptRequireDecrypt;
        let expected =
            "55c19a94ced3feade96ca4d7a301b7a21942cd6a14f26fd8ef059a9cf2cec6085d581b6bf727b638fedfa17079da57ba";
        for edks in [[raw.clone(), kms.clone()], [kms.clone(), raw.clone()]] {
            let request = DecryptMaterialsRequest::new(suite, policy, &edks, &context, None);
            // 01 00 02 00 "partition-1" 00 | 04 78 00 | sorted EDKs 00 | EC
            assert_eq!(hex(&cmm().decrypt_id(&request).unwrap()), expected);
        }
        // An empty context serializes to nothing: the identifier ends with the NUL after the EDKs.
        let empty = EncryptionContext::default();
        let edks = [raw];
        let request = DecryptMaterialsRequest::new(suite, policy, &edks, &empty, None);
        assert_eq!(
            hex(&cmm().decrypt_id(&request).unwrap()),
            "8b775026439593b68f14112a7f791f5bbdba46517551247e7921af6c266fdf8a27aa14e411f951345af82b520aefc5db"
        );
    }
}
