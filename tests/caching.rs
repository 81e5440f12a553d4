//! The caching materials manager: reuse within limits, expiry, bypasses, single-flight,
//! no cached failures, bounded capacity, and decrypt-side caching.

use std::sync::Arc;
use std::time::Duration;

use esdk::cmm::EncryptionMaterialsRequest;
use esdk::{
    AlgorithmSuite, CachingCmm, Client, CommitmentPolicy, DefaultCmm, EncryptionContext, ErrorKind, HeaderLimits,
    Keyring, LocalCache, MaterialsManager, MessageHeader, RawAesKeyring,
};
use esdk_testkit::counting::CountingKeyring;

fn raw() -> Arc<dyn Keyring> {
    Arc::new(RawAesKeyring::new("ns", "cache-test", &[5u8; 32]).unwrap())
}

fn caching(keyring: Arc<CountingKeyring>, capacity: usize, max_age: Duration) -> CachingCmm {
    let underlying: Arc<dyn MaterialsManager> = Arc::new(DefaultCmm::from_arc(keyring));
    CachingCmm::new(underlying, Arc::new(LocalCache::new(capacity).unwrap()), max_age).unwrap()
}

fn ec(v: &str) -> EncryptionContext {
    [("stream", v)].into_iter().collect()
}

fn edk_ciphertext(message: &[u8]) -> Vec<u8> {
    let (h, _) = MessageHeader::parse(message, &HeaderLimits::default()).unwrap();
    h.encrypted_data_keys()[0].ciphertext.clone()
}

#[test]
fn encrypt_materials_are_reused_within_the_message_limit() {
    let keyring = CountingKeyring::new(raw());
    let cmm = caching(keyring.clone(), 10, Duration::from_secs(300)).with_max_messages(10).unwrap();
    let client = Client::new();
    let messages: Vec<Vec<u8>> = (0..100)
        .map(|i| client.encrypt_blocking(&cmm, format!("record {i}").as_bytes(), &ec("orders")).unwrap())
        .collect();
    assert_eq!(keyring.encrypts(), 10, "one data key per 10 messages");
    assert_eq!(edk_ciphertext(&messages[0]), edk_ciphertext(&messages[9]));
    assert_ne!(edk_ciphertext(&messages[9]), edk_ciphertext(&messages[10]));
    let stats = cmm.stats();
    assert_eq!((stats.hits, stats.underlying_calls), (90, 10));
    // Every message still decrypts (and signs with the cached signing key: default suite 0x0578).
    let plain = DefaultCmm::from_arc(raw());
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(
            client.decrypt_blocking(&plain, m, None).unwrap().plaintext.to_vec(),
            format!("record {i}").as_bytes()
        );
    }
}

#[test]
fn entries_expire_and_byte_limits_refresh_or_bypass() {
    let keyring = CountingKeyring::new(raw());
    let cmm = caching(keyring.clone(), 10, Duration::from_millis(80)).with_max_bytes(100);
    let client = Client::new();
    client.encrypt_blocking(&cmm, &[0; 40], &ec("a")).unwrap();
    client.encrypt_blocking(&cmm, &[0; 40], &ec("a")).unwrap();
    assert_eq!(keyring.encrypts(), 1);
    client.encrypt_blocking(&cmm, &[0; 40], &ec("a")).unwrap(); // 120 bytes > 100: refreshed
    assert_eq!(keyring.encrypts(), 2);
    client.encrypt_blocking(&cmm, &[0; 101], &ec("a")).unwrap(); // larger than the limit: bypass
    assert_eq!(keyring.encrypts(), 3);
    assert_eq!(cmm.stats().bypasses, 1);
    std::thread::sleep(Duration::from_millis(100));
    client.encrypt_blocking(&cmm, &[0; 10], &ec("a")).unwrap(); // expired
    assert_eq!(keyring.encrypts(), 4);
}

#[test]
fn identity_suites_and_unknown_lengths_are_never_cached() {
    let keyring = CountingKeyring::new(raw());
    let cmm = caching(keyring.clone(), 10, Duration::from_secs(60));
    let legacy = Client::builder()
        .commitment_policy(CommitmentPolicy::ForbidEncryptAllowDecrypt)
        .suite(AlgorithmSuite::Aes256GcmIv12Tag16NoKdf)
        .build()
        .unwrap();
    for _ in 0..3 {
        let m = legacy.encrypt_blocking(&cmm, b"x", &ec("a")).unwrap();
        legacy.decrypt_blocking(&cmm, &m, None).unwrap();
    }
    assert_eq!((keyring.encrypts(), keyring.decrypts()), (3, 3));
    // Streaming encryption does not know the plaintext length up front: bypass.
    for _ in 0..2 {
        let w = Client::new().encrypting_writer_blocking(&cmm, &ec("a"), Vec::new()).unwrap();
        w.finish().unwrap();
    }
    assert_eq!(keyring.encrypts(), 5);
    assert!(cmm.stats().bypasses >= 8);
}

#[test]
fn decrypt_materials_are_cached_per_edk_set_and_context() {
    let enc_keyring = CountingKeyring::new(raw());
    let enc = caching(enc_keyring.clone(), 10, Duration::from_secs(60));
    let client = Client::new();
    let messages: Vec<Vec<u8>> = (0..50).map(|_| client.encrypt_blocking(&enc, b"r", &ec("orders")).unwrap()).collect();
    assert_eq!(enc_keyring.encrypts(), 1);

    let dec_keyring = CountingKeyring::new(raw());
    let dec = caching(dec_keyring.clone(), 10, Duration::from_secs(60));
    for m in &messages {
        assert_eq!(client.decrypt_blocking(&dec, m, Some(&ec("orders"))).unwrap().plaintext.to_vec(), b"r");
    }
    assert_eq!(dec_keyring.decrypts(), 1, "one unwrap for 50 messages sharing a data key");
    // A mismatching expected context is still refused: the entry is bound to the reproduced
    // context it was checked against, so another one misses and is checked again.
    let err = client.decrypt_blocking(&dec, &messages[0], Some(&ec("payments"))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EncryptionContextMismatch);
}

/// The spec's identifier (Appendix A) leaves out the required-only context keys, which decide what
/// the header stores: the entry's binding keeps materials made for one set of them from serving a
/// request with another (each such request misses and replaces the entry).
#[tokio::test]
async fn required_context_keys_bind_encryption_entries() {
    let keyring = CountingKeyring::new(raw());
    let cmm = caching(keyring.clone(), 10, Duration::from_secs(300));
    let request = |required: &[&str]| {
        let mut r = EncryptionMaterialsRequest::new(ec("orders"), CommitmentPolicy::RequireEncryptRequireDecrypt);
        r.max_plaintext_length = Some(1);
        r.required_encryption_context_keys = required.iter().map(|k| k.to_string()).collect();
        r
    };
    for _ in 0..3 {
        let m = cmm.get_encryption_materials(request(&[])).await.unwrap();
        assert!(m.required_encryption_context_keys().is_empty());
    }
    assert_eq!(keyring.encrypts(), 1, "same request, one entry");
    let m = cmm.get_encryption_materials(request(&["stream"])).await.unwrap();
    assert_eq!(m.required_encryption_context_keys().iter().collect::<Vec<_>>(), ["stream"]);
    assert_eq!(keyring.encrypts(), 2, "same identifier, other required keys: a miss");
    let m = cmm.get_encryption_materials(request(&["stream"])).await.unwrap();
    assert_eq!(m.required_encryption_context_keys().len(), 1);
    assert_eq!(keyring.encrypts(), 2, "the replacing entry serves its own binding");
    assert!(cmm.get_encryption_materials(request(&[])).await.unwrap().required_encryption_context_keys().is_empty());
    assert_eq!(keyring.encrypts(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_underlying_call_and_failures_are_not_cached() {
    let keyring = CountingKeyring::with(raw(), 0, Duration::from_millis(50));
    let cmm = Arc::new(caching(keyring.clone(), 10, Duration::from_secs(60)));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let cmm = cmm.clone();
        tasks.push(tokio::spawn(async move { Client::new().encrypt(&*cmm, b"x", &ec("same")).await.unwrap() }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(keyring.encrypts(), 1, "single-flight: 16 concurrent misses, one call");
    assert_eq!(cmm.stats().underlying_calls, 1);

    let flaky = CountingKeyring::with(raw(), 1, Duration::ZERO);
    let cmm = caching(flaky.clone(), 10, Duration::from_secs(60));
    let err = Client::new().encrypt(&cmm, b"x", &ec("f")).await.unwrap_err();
    assert!(err.is_retryable());
    Client::new().encrypt(&cmm, b"x", &ec("f")).await.unwrap();
    Client::new().encrypt(&cmm, b"x", &ec("f")).await.unwrap();
    assert_eq!(flaky.encrypts(), 2, "the failure was not cached; the success was");
}

#[test]
fn capacity_is_bounded_least_recently_used_first() {
    let keyring = CountingKeyring::new(raw());
    let cache = Arc::new(LocalCache::new(2).unwrap());
    let underlying: Arc<dyn MaterialsManager> = Arc::new(DefaultCmm::from_arc(keyring.clone()));
    let cmm = CachingCmm::new(underlying, cache.clone(), Duration::from_secs(60)).unwrap();
    let client = Client::new();
    for v in ["a", "b", "a", "c", "a"] {
        client.encrypt_blocking(&cmm, b"x", &ec(v)).unwrap();
        assert!(cache.len() <= 2);
    }
    // a, b miss; a hit; c miss evicts b (least recently used); a hit.
    assert_eq!(keyring.encrypts(), 3);
    assert_eq!(cache.stats().evictions, 1);
}

#[test]
fn a_cache_of_capacity_zero_is_accepted_and_stores_nothing() {
    // local-cryptographic-materials-cache.md, Entry Capacity: "The local CMC MUST accept entry
    // capacity values between zero and an implementation-defined maximum, inclusive."
    let keyring = CountingKeyring::new(raw());
    let cmm = caching(keyring.clone(), 0, Duration::from_secs(300));
    let client = Client::new();
    for _ in 0..3 {
        client.encrypt_blocking(&cmm, b"x", &ec("orders")).unwrap();
    }
    assert_eq!(keyring.encrypts(), 3, "every lookup misses");
    assert_eq!(cmm.stats().evictions, 3, "each stored entry is evicted before the put returns");
}

#[test]
fn ttl_expired_entries_are_pruned_on_access() {
    // local-cryptographic-materials-cache.md, Get Cache Entry: "the local CMC MUST prune
    // TTL-expired cache entries"; Pruning: "MUST evict all TTL-expired entries among the N least
    // recently used entries". An entry of a short-lived CMM leaves the shared cache when another
    // CMM reads it, not only when its own CMM looks it up again.
    let cache = Arc::new(LocalCache::new(10).unwrap());
    let underlying: Arc<dyn MaterialsManager> = Arc::new(DefaultCmm::from_arc(raw()));
    let short = CachingCmm::new(underlying.clone(), cache.clone(), Duration::from_millis(50)).unwrap();
    let long = CachingCmm::new(underlying, cache.clone(), Duration::from_secs(300)).unwrap();
    let client = Client::new();
    client.encrypt_blocking(&short, b"x", &ec("a")).unwrap();
    client.encrypt_blocking(&long, b"x", &ec("b")).unwrap();
    assert_eq!(cache.len(), 2);
    std::thread::sleep(Duration::from_millis(80));
    client.encrypt_blocking(&long, b"x", &ec("b")).unwrap();
    assert_eq!(cache.len(), 1, "the expired entry of the other CMM was pruned by this get");
    assert_eq!(cache.stats().hits, 1);
}

#[test]
fn invalid_configuration_is_refused() {
    let underlying: Arc<dyn MaterialsManager> = Arc::new(DefaultCmm::from_arc(raw()));
    let cache = Arc::new(LocalCache::new(1).unwrap());
    assert!(CachingCmm::new(underlying.clone(), cache.clone(), Duration::ZERO).is_err());
    let cmm = CachingCmm::new(underlying, cache, Duration::from_secs(1)).unwrap();
    assert!(cmm.with_max_messages((1 << 32) + 1).is_err());
}
