//! The bounded cache of branch key materials (spec `aws-kms-hierarchical-keyring.md`,
//! "Initialization", "Cache Type", Appendix A), shareable between keyrings.
//!
//! In place of the MPL's storm-tracking cache it gives the same guarantees with less
//! configuration:
//! - concurrent misses of one entry make one store call; the other callers wait for its result,
//!   and a store failure is handed to the callers that waited for it (for one second) instead of
//!   each of them calling again;
//! - within the grace period before an entry expires, one caller refreshes it while every other
//!   caller keeps using the entry; a failed refresh is retried at most once a second, and the
//!   entry is used until it expires.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, KeyStoreError, Result};
use crate::keystore::BranchKeyMaterials;

/// Entries of a cache made without a capacity (the spec's default).
pub const DEFAULT_CACHE_CAPACITY: usize = 1000;

/// The longest grace period before expiry (the MPL's storm-tracking default).
const MAX_GRACE: Duration = Duration::from_secs(10);

/// How long a store failure is handed to waiting callers, and how long a failed refresh waits
/// before the next attempt.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A cache entry identifier (SHA-384, Appendix A).
pub(crate) type EntryId = [u8; 48];

struct Entry {
    materials: Arc<BranchKeyMaterials>,
    created: Instant,
    /// `None`: the TTL reaches past what `Instant` can hold.
    expires: Option<Instant>,
    last_used: u64,
    /// No refresh is tried before this (after a failed one).
    next_refresh: Instant,
}

#[derive(Default)]
struct Entries {
    map: HashMap<EntryId, Entry>,
    tick: u64,
}

/// The last store failure of a fetch, for the callers that waited for it.
type Flight = tokio::sync::Mutex<Option<(Instant, Box<KeyStoreError>)>>;

/// Branch key materials by cache entry id, at most `capacity` of them (expired ones evicted
/// first, then the least recently used). Share one between keyrings with
/// [`super::HierarchicalKeyringBuilder::cache`]; entries are shared only between keyrings with
/// the same partition id, logical store name and branch key id. Such keyrings share what the
/// store gave any of them, a failure for a second included, so give them one partition id only
/// when they have the same access to the store (the spec's "Shared Cache Considerations"). An
/// entry lives for the TTL of the keyring that last fetched it.
pub struct BranchKeyCache {
    capacity: usize,
    entries: Mutex<Entries>,
    flights: Mutex<HashMap<EntryId, Arc<Flight>>>,
}

impl fmt::Debug for BranchKeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BranchKeyCache").field("capacity", &self.capacity).field("len", &self.len()).finish()
    }
}

/// Drops the in-flight lock of an entry once no caller holds or waits for it, also when the
/// caller's future is dropped midway.
struct Landing<'a> {
    cache: &'a BranchKeyCache,
    id: EntryId,
    flight: Option<Arc<Flight>>,
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        let mut flights = self.cache.flights.lock().unwrap_or_else(|p| p.into_inner());
        let Some(flight) = self.flight.take() else { return };
        // The map's reference and this one: nobody else holds or waits for it. References are
        // taken and released only under the map's lock, so the count cannot change meanwhile.
        if Arc::strong_count(&flight) == 2 {
            flights.remove(&self.id);
        }
        drop(flight);
    }
}

impl BranchKeyCache {
    /// A cache of at most `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> Result<Arc<Self>> {
        if capacity == 0 {
            return Err(Error::InvalidConfig("the branch key cache needs a capacity of at least 1".into()));
        }
        Ok(Arc::new(Self { capacity, entries: Mutex::default(), flights: Mutex::default() }))
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock cannot leave an entry half-written: recover the map.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry, how long it stays usable by a keyring with `ttl`, and whether a refresh may
    /// be tried now. Both its own expiry and "cacheEntryWithinLimits" (now − creation ≤ this
    /// keyring's TTL) must hold. An entry past its own expiry is removed (its key wiped).
    fn get(&self, id: &EntryId, ttl: Duration) -> Option<(Arc<BranchKeyMaterials>, Duration, bool)> {
        let now = Instant::now();
        let mut entries = self.lock();
        entries.tick += 1;
        let tick = entries.tick;
        let entry = entries.map.get_mut(id)?;
        if entry.expires.is_some_and(|e| now >= e) {
            entries.map.remove(id);
            return None;
        }
        let until = match (entry.expires, entry.created.checked_add(ttl)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let remaining = match until {
            Some(u) if now >= u => return None,
            Some(u) => u - now,
            None => Duration::MAX,
        };
        entry.last_used = tick;
        Some((entry.materials.clone(), remaining, now >= entry.next_refresh))
    }

    fn put(&self, id: EntryId, materials: Arc<BranchKeyMaterials>, ttl: Duration) {
        let now = Instant::now();
        let mut entries = self.lock();
        entries.tick += 1;
        let tick = entries.tick;
        if !entries.map.contains_key(&id) && entries.map.len() >= self.capacity {
            entries.map.retain(|_, e| e.expires.is_none_or(|x| x > now));
            if entries.map.len() >= self.capacity {
                if let Some(oldest) = entries.map.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| *k) {
                    entries.map.remove(&oldest);
                }
            }
        }
        let entry =
            Entry { materials, created: now, expires: now.checked_add(ttl), last_used: tick, next_refresh: now };
        entries.map.insert(id, entry);
    }

    fn defer_refresh(&self, id: &EntryId) {
        if let Some(entry) = self.lock().map.get_mut(id) {
            entry.next_refresh = Instant::now() + RETRY_AFTER;
        }
    }

    fn landing(&self, id: &EntryId) -> Landing<'_> {
        let flight = self.flights.lock().unwrap_or_else(|p| p.into_inner()).entry(*id).or_default().clone();
        Landing { cache: self, id: *id, flight: Some(flight) }
    }

    /// The materials of `id`, fetched with `fetch` on a miss (one call for concurrent misses)
    /// and refreshed by one caller within the grace period.
    pub(crate) async fn get_or_fetch<F, Fut>(
        &self,
        id: &EntryId,
        ttl: Duration,
        fetch: F,
    ) -> Result<Arc<BranchKeyMaterials>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<BranchKeyMaterials>>,
    {
        let grace = MAX_GRACE.min(ttl / 2);
        if let Some((materials, remaining, may_refresh)) = self.get(id, ttl) {
            if remaining > grace || !may_refresh {
                return Ok(materials);
            }
            let landing = self.landing(id);
            let Some(flight) = &landing.flight else { return Ok(materials) };
            let Ok(_refreshing) = flight.try_lock() else { return Ok(materials) };
            return match fetch().await {
                Ok(fresh) => {
                    let fresh = Arc::new(fresh);
                    self.put(*id, fresh.clone(), ttl);
                    Ok(fresh)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "refreshing a branch key before it expires failed; using the cached one");
                    self.defer_refresh(id);
                    Ok(materials)
                }
            };
        }
        let landing = self.landing(id);
        let Some(flight) = &landing.flight else { return Err(Error::Internal("in-flight lock missing")) };
        let mut last_failure = flight.lock().await;
        if let Some((materials, _, _)) = self.get(id, ttl) {
            return Ok(materials);
        }
        if let Some((at, e)) = &*last_failure {
            if at.elapsed() < RETRY_AFTER {
                return Err(Error::KeyStore(e.clone()));
            }
        }
        match fetch().await {
            Ok(fresh) => {
                *last_failure = None;
                let fresh = Arc::new(fresh);
                self.put(*id, fresh.clone(), ttl);
                Ok(fresh)
            }
            Err(Error::KeyStore(e)) => {
                *last_failure = Some((Instant::now(), e.clone()));
                Err(Error::KeyStore(e))
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::error::KeyStoreCause;
    use crate::materials::DataKey;

    fn materials(version: &str) -> BranchKeyMaterials {
        BranchKeyMaterials::new("bk", version, DataKey::from_bytes(&[1; 32]), Default::default())
    }

    fn id(n: u8) -> EntryId {
        [n; 48]
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    #[test]
    fn entries_live_for_the_shorter_of_their_ttl_and_the_readers() {
        let cache = BranchKeyCache::new(4).unwrap();
        cache.put(id(1), Arc::new(materials("v1")), Duration::from_secs(60));
        assert!(cache
            .get(&id(1), Duration::from_secs(600))
            .is_some_and(|(_, left, _)| left <= Duration::from_secs(60)));
        // cacheEntryWithinLimits: a keyring with a shorter TTL treats the entry as expired.
        std::thread::sleep(Duration::from_millis(20));
        assert!(cache.get(&id(1), Duration::from_millis(10)).is_none());
        assert_eq!(cache.len(), 1, "still valid for others");
        cache.put(id(2), Arc::new(materials("v2")), Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert!(cache.get(&id(2), Duration::from_secs(600)).is_none());
        assert_eq!(cache.len(), 1, "an entry past its own expiry is removed");
        // A TTL beyond what Instant holds does not overflow: the entry never expires.
        cache.put(id(3), Arc::new(materials("v3")), Duration::MAX);
        assert_eq!(cache.get(&id(3), Duration::MAX).map(|(_, left, _)| left), Some(Duration::MAX));
    }

    #[test]
    fn capacity_evicts_expired_entries_then_the_least_recently_used() {
        let cache = BranchKeyCache::new(2).unwrap();
        let ttl = Duration::from_secs(60);
        cache.put(id(1), Arc::new(materials("a")), ttl);
        cache.put(id(2), Arc::new(materials("b")), ttl);
        cache.get(&id(1), ttl).unwrap();
        cache.put(id(3), Arc::new(materials("c")), ttl);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&id(2), ttl).is_none(), "the least recently used went");
        assert!(cache.get(&id(1), ttl).is_some() && cache.get(&id(3), ttl).is_some());
        assert!(BranchKeyCache::new(0).is_err());
    }

    #[test]
    fn concurrent_misses_make_one_call_and_share_a_failure() {
        let cache = BranchKeyCache::new(4).unwrap();
        let calls = AtomicUsize::new(0);
        let ttl = Duration::from_secs(60);
        let fetch = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(materials("v1"))
        };
        block_on(async {
            let key = id(1);
            let all = (0..16).map(|_| Box::pin(cache.get_or_fetch(&key, ttl, fetch)));
            for r in join_all(all.collect()).await {
                assert_eq!(r.unwrap().version(), "v1");
            }
        });
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(cache.flights.lock().unwrap().is_empty(), "no in-flight lock is left behind");

        let failing = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err(Error::KeyStore(Box::new(KeyStoreError {
                operation: "GetActiveBranchKey",
                table: "t".into(),
                branch_key_id: "bk".into(),
                version: None,
                cause: KeyStoreCause::NotFound,
            })))
        };
        block_on(async {
            let key = id(2);
            let all = (0..16).map(|_| Box::pin(cache.get_or_fetch(&key, ttl, failing)));
            for r in join_all(all.collect()).await {
                assert!(matches!(r, Err(Error::KeyStore(_))));
            }
        });
        assert_eq!(calls.load(Ordering::SeqCst), 2, "waiters got the one failure, not a call each");
        assert!(cache.flights.lock().unwrap().is_empty());
    }

    #[test]
    fn one_caller_refreshes_in_the_grace_period_and_a_failure_keeps_the_entry() {
        let cache = BranchKeyCache::new(4).unwrap();
        // TTL 2 s: a grace period of 1 s.
        let ttl = Duration::from_secs(2);
        cache.put(id(1), Arc::new(materials("old")), ttl);
        let fresh = || async { Ok(materials("new")) };
        block_on(async {
            assert_eq!(cache.get_or_fetch(&id(1), ttl, fresh).await.unwrap().version(), "old", "outside the grace");
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let failing = || async { Err(Error::Internal("store down")) };
            assert_eq!(cache.get_or_fetch(&id(1), ttl, failing).await.unwrap().version(), "old");
            // Within a second of that failure nobody tries again, and the entry is still served.
            let calls = AtomicUsize::new(0);
            let counted = || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(materials("new"))
            };
            assert_eq!(cache.get_or_fetch(&id(1), ttl, counted).await.unwrap().version(), "old");
            assert_eq!(calls.load(Ordering::SeqCst), 0);
        });
        cache.put(id(2), Arc::new(materials("old")), ttl);
        block_on(async {
            tokio::time::sleep(Duration::from_millis(1100)).await;
            assert_eq!(cache.get_or_fetch(&id(2), ttl, fresh).await.unwrap().version(), "new", "refreshed");
        });
    }

    #[test]
    fn in_flight_locks_are_released_under_concurrency_across_threads() {
        let cache = BranchKeyCache::new(8).unwrap();
        let ttl = Duration::from_secs(60);
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
        rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for t in 0..8u8 {
                let cache = cache.clone();
                tasks.spawn(async move {
                    for n in 0..500u32 {
                        // Ids shared by pairs of tasks, many more than the capacity.
                        let mut key = [0u8; 48];
                        key[..4].copy_from_slice(&n.to_be_bytes());
                        key[4] = t / 2;
                        let fetch = || async { Ok(materials("v")) };
                        cache.get_or_fetch(&key, ttl, fetch).await.unwrap();
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.unwrap();
            }
        });
        assert!(cache.flights.lock().unwrap().is_empty(), "an in-flight lock leaked");
        assert!(cache.len() <= 8);
    }

    /// Polls every future on the current task until all are done.
    async fn join_all<F: Future + Unpin>(mut futures: Vec<F>) -> Vec<F::Output> {
        let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
                if slot.is_none() {
                    match std::pin::Pin::new(f).poll(cx) {
                        std::task::Poll::Ready(v) => *slot = Some(v),
                        std::task::Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        out.into_iter().map(|v| v.expect("every future completed")).collect()
    }
}
