//! Caching materials manager and its local cache (spec `framework/caching-cmm.md`,
//! `framework/local-cryptographic-materials-cache.md`).
//!
//! Reusing a data key for many messages is what keeps KMS out of the per-record path: with a
//! cache, a producer calls `GenerateDataKey` once per entry lifetime and a consumer calls
//! `Decrypt` once per distinct EDK set, not once per message.
//!
//! Cache entry identifiers are SHA-512 over an unambiguous (length-prefixed) encoding of the
//! same inputs as the spec's formulas (Appendix A: partition, suite, sorted serialized EDKs,
//! serialized encryption context), in one pass instead of a hash of hashes (a third of the
//! hashing per message; the spec allows either for a cache that is not shared with other SDKs).
//! Two inputs are added: the required-only context keys on encrypt, and on decrypt the reproduced
//! encryption context, so a cache hit can never skip the check that reproduced values match the
//! stored ones.

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

type EntryId = [u8; 64];

enum Cached {
    Encrypt(EncryptionMaterials),
    Decrypt(DecryptionMaterials),
}

struct Entry {
    materials: Cached,
    created: Instant,
    /// Created plus the max age of the CMM that stored it: TTL-expired from then on.
    expires: Instant,
    last_used: u64,
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
    fn insert(&self, id: EntryId, materials: Cached, ttl: Duration, messages: u64, bytes: u64) -> Result<()> {
        let mut state = self.lock()?;
        let now = Instant::now();
        let pruned = state.prune(now);
        self.stats.evictions.fetch_add(pruned, Ordering::Relaxed);
        let tick = state.next_tick();
        state.remove(&id);
        let expires = now.checked_add(ttl).unwrap_or(now);
        state.entries.insert(id, Entry { materials, created: now, expires, last_used: tick, messages, bytes });
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

    fn encrypt_id(&self, request: &EncryptionMaterialsRequest) -> Result<EntryId> {
        request.encryption_context.check_serializable()?;
        let mut buf = self.id_prefix(0x01, request.encryption_context.serialized_len() + 64);
        match request.suite {
            None => buf.push(0x00),
            Some(s) => {
                buf.push(0x01);
                buf.extend_from_slice(&s.id_bytes());
            }
        }
        put_context(&mut buf, &request.encryption_context);
        buf.extend_from_slice(&(request.required_encryption_context_keys.len() as u32).to_be_bytes());
        for k in &request.required_encryption_context_keys {
            buf.extend_from_slice(&(k.len() as u32).to_be_bytes());
            buf.extend_from_slice(k.as_bytes());
        }
        Ok(sha512(self.backend, &buf))
    }

    fn decrypt_id(&self, request: &DecryptMaterialsRequest<'_>) -> Result<EntryId> {
        request.encryption_context.check_serializable()?;
        let edk_len: usize = request.encrypted_data_keys.iter().map(|e| e.serialized_len()).sum();
        let mut buf = self.id_prefix(0x02, edk_len + request.encryption_context.serialized_len() + 64);
        buf.extend_from_slice(&request.suite.id_bytes());
        buf.extend_from_slice(&(request.encrypted_data_keys.len() as u32).to_be_bytes());
        if request.encrypted_data_keys.len() == 1 {
            request.encrypted_data_keys[0].serialize_into(&mut buf);
        } else {
            // Order-independent, as in the spec: sort the serialized EDKs.
            let mut edks: Vec<Vec<u8>> = request
                .encrypted_data_keys
                .iter()
                .map(|edk| {
                    let mut ser = Vec::with_capacity(edk.serialized_len());
                    edk.serialize_into(&mut ser);
                    ser
                })
                .collect();
            edks.sort_unstable();
            edks.iter().for_each(|e| buf.extend_from_slice(e));
        }
        put_context(&mut buf, request.encryption_context);
        match request.reproduced_encryption_context {
            None => buf.push(0x00),
            Some(r) => {
                r.check_serializable()?;
                buf.push(0x01);
                put_context(&mut buf, r);
            }
        }
        Ok(sha512(self.backend, &buf))
    }

    /// `scope ‖ len(partition) ‖ partition` with room for `more` bytes.
    fn id_prefix(&self, scope: u8, more: usize) -> Vec<u8> {
        let mut buf = Vec::with_capacity(1 + 4 + self.partition_id.len() + more);
        buf.push(scope);
        buf.extend_from_slice(&(self.partition_id.len() as u32).to_be_bytes());
        buf.extend_from_slice(self.partition_id.as_bytes());
        buf
    }

    /// A usable encryption entry for `len` more bytes, counting the use; `None` on miss.
    fn take_encrypt(&self, id: &EntryId, len: u64) -> Result<Option<EncryptionMaterials>> {
        let mut state = self.cache.lock_for_get()?;
        let tick = state.next_tick();
        let Some(entry) = state.entries.get_mut(id) else { return Ok(None) };
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

    fn take_decrypt(&self, id: &EntryId) -> Result<Option<DecryptionMaterials>> {
        let mut state = self.cache.lock_for_get()?;
        let tick = state.next_tick();
        let Some(entry) = state.entries.get(id) else { return Ok(None) };
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

fn put_context(buf: &mut Vec<u8>, ec: &crate::context::EncryptionContext) {
    buf.extend_from_slice(&(ec.serialized_len() as u32).to_be_bytes());
    ec.serialize_into(buf);
}

fn sha512(backend: Backend, data: &[u8]) -> [u8; 64] {
    let mut h = backend.provider().hasher(HashAlg::Sha512);
    h.update(data);
    let mut out = [0u8; 64];
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
        if let Some(m) = self.take_encrypt(&id, len)? {
            CacheStats::bump(&self.cache.stats.hits);
            return Ok(m);
        }
        CacheStats::bump(&self.cache.stats.misses);
        let this = self;
        self.single_flight(&id, || this.take_encrypt(&id, len), async move {
            request.max_plaintext_length = Some(this.max_bytes);
            let m = this.underlying.get_encryption_materials(request).await?;
            let copy = m.duplicate();
            this.cache.insert(id, Cached::Encrypt(m), this.max_age, 1, len)?;
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
        if let Some(m) = self.take_decrypt(&id)? {
            CacheStats::bump(&self.cache.stats.hits);
            return Ok(m);
        }
        CacheStats::bump(&self.cache.stats.misses);
        let this = self;
        self.single_flight(&id, || this.take_decrypt(&id), async move {
            let m = this.underlying.decrypt_materials(request).await?;
            let copy = m.fork();
            this.cache.insert(id, Cached::Decrypt(m), this.max_age, 0, 0)?;
            Ok(copy)
        })
        .await
    }
}
