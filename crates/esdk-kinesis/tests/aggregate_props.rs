//! Aggregates without AWS: aggregate → encrypt → decrypt → de-aggregate is the identity for any
//! record sizes, keys and counts; the predicted sizes are exact; hostile aggregates are errors.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use esdk::{Client, DefaultCmm, MaterialsManager, RawAesKeyring};
use esdk_kinesis::aggregate::{bucket_of, deaggregate, deaggregate_all, AggregateBuilder, AggregateError, MAGIC};
use esdk_kinesis::record::{RecordCodec, RecordHeader, EC_AGGREGATE};
use proptest::prelude::*;

fn codec() -> RecordCodec {
    let cmm: Arc<dyn MaterialsManager> =
        Arc::new(DefaultCmm::new(RawAesKeyring::new("ns", "agg", &[3u8; 32]).unwrap()));
    RecordCodec::builder(cmm, "orders", "us-east-1").record_limit(64 * 1024).build().unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
}

fn keys() -> impl Strategy<Value = String> {
    prop_oneof![Just("k".to_owned()), "[a-z0-9]{1,8}", "\\PC{1,20}"]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn aggregate_encrypt_decrypt_deaggregate_is_the_identity(
        records in proptest::collection::vec((keys(), proptest::collection::vec(any::<u8>(), 0..600)), 1..60),
    ) {
        let mut b = AggregateBuilder::new();
        for (k, d) in &records {
            let predicted = b.serialized_len_with(k, d.len());
            b.push(k, d);
            prop_assert_eq!(b.serialized_len(), predicted);
        }
        let predicted = b.serialized_len();
        let bytes = b.finish();
        prop_assert_eq!(bytes.len(), predicted, "exact size prediction");
        let codec = codec();
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let record = block_on(codec.encrypt_aggregate("outer", &bytes, Some(t))).unwrap();
        prop_assert!(RecordHeader::parse(&record.data).unwrap().is_aggregate());
        let cmm: Arc<dyn MaterialsManager> =
            Arc::new(DefaultCmm::new(RawAesKeyring::new("ns", "agg", &[3u8; 32]).unwrap()));
        let plain = Client::new().decrypt_blocking(cmm.as_ref(), &record.data, None).unwrap();
        prop_assert_eq!(plain.encryption_context.get(EC_AGGREGATE), Some("kpl"));
        let users = deaggregate(&bytes::Bytes::from_owner(plain.plaintext)).unwrap();
        prop_assert_eq!(users.len(), records.len());
        for (u, (k, d)) in users.iter().zip(&records) {
            prop_assert_eq!(&u.partition_key, k);
            prop_assert_eq!(&u.data[..], &d[..]);
        }
    }

    #[test]
    fn the_budget_is_exact_for_the_record_limit(
        key in "[a-z]{1,20}",
        sizes in proptest::collection::vec(1usize..3000, 1..40),
    ) {
        let codec = codec();
        let budget = block_on(codec.aggregate_budgets(std::slice::from_ref(&key), Some(SystemTime::now()))).unwrap()[0] as usize;
        // Fill an aggregate as the producer does; it encrypts to at most the limit, key counted.
        let mut b = AggregateBuilder::new();
        for (i, s) in sizes.iter().enumerate() {
            let k = format!("user-{i}");
            if b.serialized_len_with(&k, *s) > budget {
                break;
            }
            b.push(&k, &vec![1u8; *s]);
        }
        let len = b.serialized_len();
        let bytes = b.finish();
        let record = block_on(codec.encrypt_aggregate(&key, &bytes, Some(SystemTime::now()))).unwrap();
        prop_assert_eq!(record.data.len() + key.len() - len, 64 * 1024 - budget, "overhead is exact");
        prop_assert!(record.data.len() + key.len() <= 64 * 1024);
    }

    #[test]
    fn hostile_aggregates_are_errors_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&body);
        // With a wrong trailer: refused by the digest (or too short).
        let _ = deaggregate(&bytes::Bytes::from(bytes));
        // With a right trailer: the protobuf and its indexes are checked.
        let mut good = MAGIC.to_vec();
        good.extend_from_slice(&body);
        let digest = <md5::Md5 as md5::Digest>::digest(&body);
        good.extend_from_slice(&digest);
        match deaggregate(&bytes::Bytes::from(good)) {
            Ok(users) => prop_assert!(!users.is_empty()),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Sealing and splitting many aggregates at once (MD5s side by side) gives what one by one
    /// gives, whatever their sizes and however many, and a damaged one fails alone.
    #[test]
    fn batches_seal_and_split_as_one_by_one(
        aggregates in proptest::collection::vec(
            proptest::collection::vec((keys(), proptest::collection::vec(any::<u8>(), 0..300)), 1..12),
            0..40,
        ),
        damage in proptest::collection::vec((any::<proptest::sample::Index>(), 0u8..4), 0..6),
    ) {
        let build = |records: &[(String, Vec<u8>)], capacity: bool| {
            let mut b = if capacity { AggregateBuilder::with_capacity(64) } else { AggregateBuilder::new() };
            for (k, d) in records {
                b.push(k, d);
            }
            b
        };
        let one_by_one: Vec<Vec<u8>> = aggregates.iter().map(|r| build(r, false).finish().to_vec()).collect();
        let together: Vec<Vec<u8>> =
            AggregateBuilder::finish_all(aggregates.iter().map(|r| build(r, true)).collect())
                .iter()
                .map(|z| z.to_vec())
                .collect();
        prop_assert_eq!(&together, &one_by_one);
        let mut bytes: Vec<bytes::Bytes> = one_by_one.into_iter().map(bytes::Bytes::from).collect();
        if !bytes.is_empty() {
            for (at, how) in &damage {
                let i = at.index(bytes.len());
                let mut v = bytes[i].to_vec();
                match how {
                    0 => { let n = v.len(); v[n - 1] ^= 1; }   // trailer
                    1 => v[0] ^= 1,                              // magic
                    2 => v.truncate(v.len().min(10)),            // too short
                    _ => { let n = v.len(); v[n / 2] ^= 0x40; }  // body (the MD5 no longer matches)
                }
                bytes[i] = bytes::Bytes::from(v);
            }
        }
        let split = deaggregate_all(&bytes);
        prop_assert_eq!(split.len(), bytes.len());
        for (b, s) in bytes.iter().zip(split) {
            prop_assert_eq!(s, deaggregate(b));
        }
    }
}

/// Sizing aggregates gets the materials of the first aggregate's context, through the cache:
/// it costs no data key of its own (a producer's KMS calls stay those of its commit windows).
#[test]
fn budgets_use_the_materials_of_the_first_aggregate() {
    let raw: Arc<dyn MaterialsManager> =
        Arc::new(DefaultCmm::new(RawAesKeyring::new("ns", "agg", &[3u8; 32]).unwrap()));
    let caching = Arc::new(
        esdk::CachingCmm::new(raw, Arc::new(esdk::LocalCache::new(8).unwrap()), Duration::from_secs(60)).unwrap(),
    );
    let codec = RecordCodec::builder(caching.clone(), "orders", "us-east-1")
        .commit_time(esdk_kinesis::record::CommitTimeInContext::Window(Duration::from_secs(60)))
        .record_limit(64 * 1024)
        .build()
        .unwrap();
    let t = UNIX_EPOCH + Duration::from_secs(1_700_000_030);
    block_on(codec.aggregate_budgets(&["outer".to_owned()], Some(t))).unwrap();
    let mut b = AggregateBuilder::new();
    b.push("k", b"v");
    block_on(codec.encrypt_aggregate("outer", &b.finish(), Some(t + Duration::from_secs(5)))).unwrap();
    let stats = caching.stats();
    assert_eq!((stats.underlying_calls, stats.hits, stats.bypasses), (1, 1, 0), "{stats:?}");
}

#[test]
fn a_budget_too_small_for_anything_is_an_error_and_keys_spread_over_buckets() {
    let cmm: Arc<dyn MaterialsManager> =
        Arc::new(DefaultCmm::new(RawAesKeyring::new("ns", "agg", &[3u8; 32]).unwrap()));
    let tiny = RecordCodec::builder(cmm, "orders", "us-east-1").record_limit(100).build().unwrap();
    let err = block_on(tiny.aggregate_budgets(&["k".to_owned()], None)).unwrap_err();
    assert_eq!(err.kind(), esdk::ErrorKind::TooLargeAfterEncryption, "{err}");
    let mut counts = [0u32; 16];
    for i in 0..16_000 {
        counts[bucket_of(&format!("row-{i}"), 16) as usize] += 1;
    }
    assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
    assert_eq!(deaggregate(&bytes::Bytes::from_static(&MAGIC)), Err(AggregateError::TooShort(4)));
}
