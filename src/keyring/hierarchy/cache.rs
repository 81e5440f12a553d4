//! The bounded cache of branch key materials (spec `aws-kms-hierarchical-keyring.md`,
//! "Initialization", "Cache Type", Appendix A), shareable between keyrings.
//!
//! In place of the MPL's storm-tracking cache it gives the same two guarantees with less
//! configuration:
//! - concurrent misses of one entry make one store call; the other callers wait for its result;
//! - within the grace period before an entry expires, one caller refreshes it while every other
//!   caller keeps using the entry (if the refresh fails, the entry is used until it expires), so
//!   a busy keyring never stalls all its callers on an expiry.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::keystore::BranchKeyMaterials;

/// Entries of a cache made without a capacity (the spec's default).
pub const DEFAULT_CACHE_CAPACITY: usize = 1000;

/// The longest grace period before expiry (the MPL's storm-tracking default).
const MAX_GRACE: Duration = Duration::from_secs(10);

/// A cache entry identifier (SHA-384, Appendix A).
pub(crate) type EntryId = [u8; 48];

struct Entry {
    materials: Arc<BranchKeyMaterials>,
    created: Instant,
    expires: Instant,
    last_used: u64,
}

#[derive(Default)]
struct Entries {
    map: HashMap<EntryId, Entry>,
    tick: u64,
}

/// Branch key materials by cache entry id, at most `capacity` of them (least recently used
/// evicted first, expired ones before that). Share one between keyrings with
/// [`super::HierarchicalKeyringBuilder::cache`]; entries are shared only between keyrings with
/// the same partition id, logical store name and branch key id.
pub struct BranchKeyCache {
    capacity: usize,
    entries: Mutex<Entries>,
    flights: Mutex<HashMap<EntryId, Arc<tokio::sync::Mutex<()>>>>,
}

impl fmt::Debug for BranchKeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BranchKeyCache").field("capacity", &self.capacity).field("len", &self.len()).finish()
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

    /// Entries held (expired ones not yet evicted included).
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

    /// The entry and how long it stays usable by a keyring with `ttl`: both its own expiry and
    /// "cacheEntryWithinLimits" (now − creation ≤ this keyring's TTL) must hold.
    fn get(&self, id: &EntryId, ttl: Duration) -> Option<(Arc<BranchKeyMaterials>, Duration)> {
        let now = Instant::now();
        let mut entries = self.lock();
        entries.tick += 1;
        let tick = entries.tick;
        let entry = entries.map.get_mut(id)?;
        let until = entry.expires.min(entry.created + ttl);
        if now >= until {
            return None;
        }
        entry.last_used = tick;
        Some((entry.materials.clone(), until - now))
    }

    fn put(&self, id: EntryId, materials: Arc<BranchKeyMaterials>, ttl: Duration) {
        let now = Instant::now();
        let mut entries = self.lock();
        entries.tick += 1;
        let tick = entries.tick;
        if !entries.map.contains_key(&id) && entries.map.len() >= self.capacity {
            entries.map.retain(|_, e| e.expires > now);
            if entries.map.len() >= self.capacity {
                if let Some(oldest) = entries.map.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| *k) {
                    entries.map.remove(&oldest);
                }
            }
        }
        entries.map.insert(id, Entry { materials, created: now, expires: now + ttl, last_used: tick });
    }

    fn flight(&self, id: &EntryId) -> Arc<tokio::sync::Mutex<()>> {
        self.flights.lock().unwrap_or_else(|p| p.into_inner()).entry(*id).or_default().clone()
    }

    /// Drops the in-flight lock of `id` once no caller holds or waits for it.
    fn land(&self, id: &EntryId, flight: Arc<tokio::sync::Mutex<()>>) {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        // The map's reference and `flight` itself: nobody else is waiting.
        if Arc::strong_count(&flight) == 2 {
            flights.remove(id);
        }
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
        if let Some((materials, remaining)) = self.get(id, ttl) {
            if remaining > grace {
                return Ok(materials);
            }
            let flight = self.flight(id);
            let refreshed = match flight.try_lock() {
                Ok(_refreshing) => match fetch().await {
                    Ok(fresh) => {
                        let fresh = Arc::new(fresh);
                        self.put(*id, fresh.clone(), ttl);
                        Some(fresh)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "refreshing a branch key before it expires failed; using the cached one");
                        None
                    }
                },
                Err(_) => None,
            };
            self.land(id, flight);
            return Ok(refreshed.unwrap_or(materials));
        }
        let flight = self.flight(id);
        let result = {
            let _only_caller = flight.lock().await;
            match self.get(id, ttl) {
                Some((materials, _)) => Ok(materials),
                None => fetch().await.map(|fresh| {
                    let fresh = Arc::new(fresh);
                    self.put(*id, fresh.clone(), ttl);
                    fresh
                }),
            }
        };
        self.land(id, flight);
        result
    }
}
