//! The branch key store and the AWS KMS Hierarchical keyring against the local endpoint
//! (DynamoDB and KMS), and against the official MPL 1.11.3 with the Python ESDK 4.0.7: key
//! stores and branch keys made by either side are used by the other, and messages written by
//! either side decrypt on the other.
//!
//! Each test uses a Region of its own, and none of the Regions whose endpoint call counts other
//! tests assert (ap-northeast-1, ap-southeast-1, eu-central-1, me-central-1).
#![cfg(feature = "hierarchy")]

use std::sync::Arc;
use std::time::Duration;

use esdk::error::{EdkFailure, EdkOutcome, KeyStoreCause, SkipReason};
use esdk::keyring::hierarchy::{BranchKeyCache, BranchKeyIdSupplier, HierarchicalKeyring, HIERARCHY_PROVIDER_ID};
use esdk::keyring::kms::KmsClient;
use esdk::keystore::{KeyStore, KmsConfiguration};
use esdk::{AlgorithmSuite, Backend, DefaultCmm, EncryptionContext, Error, ErrorKind};
use esdk_testkit::aws::{Counting, Endpoint};
use esdk_testkit::client_for as client;

const TTL: Duration = Duration::from_secs(600);

fn ec() -> EncryptionContext {
    [("tenant", "acme"), ("stream", "orders")].into_iter().collect()
}

fn custom() -> EncryptionContext {
    [("tenant", "acme")].into_iter().collect()
}

/// A key store client on `table` in `region` with KMS key `arn`, KMS calls recorded.
fn store(env: &Endpoint, region: &str, table: &str, arn: &str, kms: Arc<dyn KmsClient>) -> Arc<KeyStore> {
    let config = KmsConfiguration::KeyArn(arn.to_owned());
    Arc::new(KeyStore::new(table, table, config, kms, env.dynamodb(region)).unwrap())
}

fn keyring(store: &Arc<KeyStore>, branch_key_id: &str, backend: Backend) -> HierarchicalKeyring {
    HierarchicalKeyring::builder(store.clone(), TTL).branch_key_id(branch_key_id).backend(backend).build().unwrap()
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn branch_keys_are_created_versioned_and_used_for_every_suite_on_both_backends() {
    const REGION: &str = "ap-southeast-2";
    let env = Endpoint::from_env();
    let arn = env.create_key(REGION).await;
    let kms = Counting::new(env.kms(REGION));
    let store = store(&env, REGION, "branch-keys-lifecycle", &arn, kms.clone());
    assert!(store.create_key_store().await.unwrap().contains("branch-keys-lifecycle"));
    // Creating it again finds the table and checks its key schema.
    store.create_key_store().await.unwrap();

    let id = store.create_key(None, &custom()).await.unwrap();
    assert_eq!(id.len(), 36, "a v4 UUID: {id}");
    let calls: Vec<String> = kms.calls().into_iter().map(|(op, _)| op).collect();
    assert_eq!(calls, ["GenerateDataKeyWithoutPlaintext", "ReEncrypt", "GenerateDataKeyWithoutPlaintext"]);
    let first = store.get_active_branch_key(&id).await.unwrap();
    assert_eq!(first.branch_key_id(), id);
    assert_eq!(first.encryption_context(), &custom());
    assert_eq!(first.expose_secret().len(), 32);
    let same = store.get_branch_key_version(&id, first.version()).await.unwrap();
    assert_eq!(same.expose_secret(), first.expose_secret(), "the ACTIVE copy is the version's key");
    let beacon = store.get_beacon_key(&id).await.unwrap();
    assert_ne!(beacon.expose_secret(), first.expose_secret());
    assert!(!format!("{first:?}{beacon:?}").contains(&format!("{:?}", first.expose_secret())));

    // Messages of every suite, on both backends, before a rotation...
    let plaintext = b"change record".to_vec();
    let mut before = Vec::new();
    for &backend in Backend::all() {
        for suite in AlgorithmSuite::ALL {
            let cmm = DefaultCmm::new(keyring(&store, &id, backend));
            let message = client(suite, backend).encrypt(&cmm, &plaintext, &ec()).await.unwrap();
            before.push((suite, backend, message));
        }
    }
    let (header, _) = esdk::MessageHeader::parse(&before[0].2, &esdk::HeaderLimits::default()).unwrap();
    let edk = &header.encrypted_data_keys()[0];
    assert_eq!(edk.provider_id, HIERARCHY_PROVIDER_ID);
    assert_eq!(edk.provider_info, id.as_bytes());
    assert_eq!(edk.ciphertext.len(), 16 + 12 + 16 + before[0].0.data_key_len() + 16);

    // ...still decrypt after it, through the old version; new messages use the new one.
    let version = store.version_key(&id).await.unwrap();
    let second = store.get_active_branch_key(&id).await.unwrap();
    assert_eq!(second.version(), version);
    assert_ne!(second.version(), first.version());
    assert_ne!(second.expose_secret(), first.expose_secret());
    assert_eq!(second.encryption_context(), &custom(), "the custom context carries over");
    for (suite, backend, message) in &before {
        let other = if *backend == Backend::all()[0] { *Backend::all().last().unwrap() } else { Backend::all()[0] };
        let cmm = DefaultCmm::new(keyring(&store, &id, other));
        let out = client(*suite, other).decrypt(&cmm, message, Some(&ec())).await.unwrap();
        assert_eq!(&out.plaintext[..], &plaintext[..], "{suite} {backend:?}");
    }
    let suite = AlgorithmSuite::Aes256GcmHkdfSha512CommitKey;
    let cmm = DefaultCmm::new(keyring(&store, &id, Backend::default()));
    let message = client(suite, Backend::default()).encrypt(&cmm, b"x", &ec()).await.unwrap();
    let (header, _) = esdk::MessageHeader::parse(&message, &esdk::HeaderLimits::default()).unwrap();
    let named = uuid_of(&header.encrypted_data_keys()[0].ciphertext[28..44]);
    assert_eq!(named, version, "the EDK names the new version");
}

fn uuid_of(bytes: &[u8]) -> String {
    let h = hex::encode(bytes);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn filtering_is_strict_and_failures_name_the_branch_key_and_the_cause() {
    const REGION: &str = "ap-northeast-3";
    let env = Endpoint::from_env();
    let arn = env.create_key(REGION).await;
    let kms = Counting::new(env.kms(REGION));
    let store = store(&env, REGION, "branch-keys-filtering", &arn, kms.clone());
    store.create_key_store().await.unwrap();
    let a = store.create_key(Some("tenant-a"), &custom()).await.unwrap();
    let b = store.create_key(Some("tenant-b"), &custom()).await.unwrap();
    assert_eq!(a, "tenant-a");
    let conflict = store.create_key(Some("tenant-a"), &custom()).await.unwrap_err();
    assert!(matches!(&conflict, Error::KeyStore(e) if e.cause == KeyStoreCause::Conflict), "{conflict}");
    let no_context = store.create_key(Some("tenant-c"), &EncryptionContext::new()).await.unwrap_err();
    assert!(no_context.to_string().contains("needs an encryption context"), "{no_context}");

    let suite = AlgorithmSuite::Aes256GcmHkdfSha512CommitKey;
    let c = client(suite, Backend::default());
    let message = c.encrypt(&DefaultCmm::new(keyring(&store, &a, Backend::default())), b"x", &ec()).await.unwrap();

    // Another branch key's keyring skips the EDK: no DynamoDB read, no KMS call.
    let reads = store.dynamodb_calls().get_item;
    let calls = kms.calls().len();
    let err =
        c.decrypt(&DefaultCmm::new(keyring(&store, &b, Backend::default())), &message, Some(&ec())).await.unwrap_err();
    assert_eq!((store.dynamodb_calls().get_item, kms.calls().len()), (reads, calls));
    let Error::NoDecryptableDataKey(report) = &err else { panic!("{err}") };
    assert!(matches!(
        &report.attempts[0].outcome,
        EdkOutcome::Skipped(SkipReason::BranchKeyId { found, version: Some(_), expected }) if found == &a && expected == &b
    ));
    assert!(err.to_string().contains("needs branch key \"tenant-a\" version "), "{err}");

    // A branch key id the store does not have: the store's error names it and the table.
    let missing =
        c.encrypt(&DefaultCmm::new(keyring(&store, "nobody", Backend::default())), b"x", &ec()).await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::KeyStore);
    let Error::KeyStore(e) = &missing else { panic!("{missing}") };
    assert_eq!(
        (e.operation, e.branch_key_id.as_str(), &e.cause),
        ("GetActiveBranchKey", "nobody", &KeyStoreCause::NotFound)
    );
    assert!(!missing.is_retryable());

    // A stored item changed in the table no longer unwraps: KMS refuses the altered context.
    let ddb = env.dynamodb(REGION);
    let version = store.get_active_branch_key(&a).await.unwrap().version().to_owned();
    ddb.update_item()
        .table_name("branch-keys-filtering")
        .key("branch-key-id", aws_sdk_dynamodb::types::AttributeValue::S(a.clone()))
        .key("type", aws_sdk_dynamodb::types::AttributeValue::S(format!("branch:version:{version}")))
        .update_expression("SET #t = :v")
        .expression_attribute_names("#t", "aws-crypto-ec:tenant")
        .expression_attribute_values(":v", aws_sdk_dynamodb::types::AttributeValue::S("mallory".into()))
        .send()
        .await
        .unwrap();
    let err =
        c.decrypt(&DefaultCmm::new(keyring(&store, &a, Backend::default())), &message, Some(&ec())).await.unwrap_err();
    let Error::NoDecryptableDataKey(report) = &err else { panic!("{err}") };
    let EdkOutcome::Failed(EdkFailure::KeyStore(e)) = &report.attempts[0].outcome else { panic!("{err}") };
    assert_eq!(e.operation, "GetBranchKeyVersion");
    assert_eq!(e.version.as_deref(), Some(version.as_str()));
    assert!(matches!(&e.cause, KeyStoreCause::Kms(k) if k.operation == "Decrypt"), "{e}");

    // A store of another KMS key refuses the items before any KMS call.
    let other_arn = env.create_key(REGION).await;
    let other = self::store(&env, REGION, "branch-keys-filtering", &other_arn, kms.clone());
    let calls = kms.calls().len();
    let err = other.get_active_branch_key(&b).await.unwrap_err();
    assert_eq!(kms.calls().len(), calls);
    assert!(matches!(&err, Error::KeyStore(e) if matches!(e.cause, KeyStoreCause::InvalidItem(_))), "{err}");
    assert!(err.to_string().contains(&arn), "{err}");
    // Nor does it version them: the item's kms-arn is checked before KMS sees anything.
    let err = other.version_key(&b).await.unwrap_err();
    assert_eq!(kms.calls().len(), calls);
    assert!(matches!(&err, Error::KeyStore(e) if matches!(e.cause, KeyStoreCause::InvalidItem(_))), "{err}");

    // Discovery reads every key the items name, and cannot write.
    let discovery =
        KeyStore::new("branch-keys-filtering", "branch-keys-filtering", KmsConfiguration::Discovery, kms.clone(), ddb)
            .unwrap();
    assert_eq!(discovery.get_active_branch_key(&b).await.unwrap().branch_key_id(), b);
    let err = discovery.version_key(&b).await.unwrap_err();
    assert!(matches!(&err, Error::KeyStore(e) if matches!(e.cause, KeyStoreCause::Unsupported(_))), "{err}");
}

/// A store written with a multi-Region key is read in another Region through its replica
/// (configured, or found by multi-Region discovery), and not by a single-Region configuration
/// of the replica.
#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn multi_region_keys_unwrap_branch_keys_through_their_replica() {
    const PRIMARY: &str = "ca-central-1";
    const REPLICA: &str = "us-west-1";
    let env = Endpoint::from_env();
    let (primary, replica) = env.create_mrk(PRIMARY, REPLICA).await;
    let writer = store(&env, PRIMARY, "branch-keys-mrk", &primary, env.kms(PRIMARY));
    writer.create_key_store().await.unwrap();
    let id = writer.create_key(None, &custom()).await.unwrap();
    let expected = writer.get_active_branch_key(&id).await.unwrap();

    let kms = Counting::new(env.kms(REPLICA));
    let reader =
        |config| KeyStore::new("branch-keys-mrk", "branch-keys-mrk", config, kms.clone(), env.dynamodb(PRIMARY));
    for config in
        [KmsConfiguration::MrkKeyArn(replica.clone()), KmsConfiguration::MrDiscovery { region: REPLICA.into() }]
    {
        let before = kms.calls().len();
        let got = reader(config.clone()).unwrap().get_active_branch_key(&id).await.unwrap();
        assert_eq!(got.expose_secret(), expected.expose_secret(), "{config}");
        assert_eq!(kms.calls()[before..], [("Decrypt".to_owned(), replica.clone())], "{config}");
    }
    let exact = reader(KmsConfiguration::KeyArn(replica.clone())).unwrap();
    let err = exact.get_active_branch_key(&id).await.unwrap_err();
    assert!(matches!(&err, Error::KeyStore(e) if matches!(e.cause, KeyStoreCause::InvalidItem(_))), "{err}");
    // Versioning through the replica keeps the primary's ARN in the items.
    let mrk = reader(KmsConfiguration::MrkKeyArn(replica.clone())).unwrap();
    let version = mrk.version_key(&id).await.unwrap();
    let rotated = writer.get_active_branch_key(&id).await.unwrap();
    assert_eq!(rotated.version(), version, "the primary's store reads the new version");
}

/// DynamoDB and KMS faults past the SDK's own retries fail the call with a retryable error that
/// names the call and code, and the next call succeeds; under random faults on both services,
/// callers that retry on `is_retryable()` always get through.
#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn store_faults_are_retryable_and_retries_get_through() {
    const REGION: &str = "eu-west-3";
    let env = Endpoint::from_env();
    let arn = env.create_key(REGION).await;
    let admin = store(&env, REGION, "branch-keys-faults", &arn, env.kms(REGION));
    admin.create_key_store().await.unwrap();
    let id = admin.create_key(None, &custom()).await.unwrap();
    let suite = AlgorithmSuite::Aes256GcmHkdfSha512CommitKey;
    let c = client(suite, Backend::default());
    let fresh = || {
        DefaultCmm::new(keyring(
            &store(&env, REGION, "branch-keys-faults", &arn, env.kms(REGION)),
            &id,
            Backend::default(),
        ))
    };

    // Three throttled GetItems outlast the client's three attempts.
    env.inject_fault("DynamoDB_20120810.GetItem", REGION, 3, "ProvisionedThroughputExceededException").await;
    let writer = fresh();
    let err = c.encrypt(&writer, b"x", &ec()).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let Error::KeyStore(e) = &err else { panic!("{err}") };
    assert!(
        matches!(&e.cause, KeyStoreCause::DynamoDb { call: "GetItem", code, retryable: true, .. } if code == "ProvisionedThroughputExceededException"),
        "{err}"
    );
    let message = c.encrypt(&writer, b"x", &ec()).await.unwrap();

    env.inject_fault("TrentService.Decrypt", REGION, 3, "ThrottlingException").await;
    let reader = fresh();
    let err = c.decrypt(&reader, &message, Some(&ec())).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let Error::NoDecryptableDataKey(report) = &err else { panic!("{err}") };
    let EdkOutcome::Failed(EdkFailure::KeyStore(e)) = &report.attempts[0].outcome else { panic!("{err}") };
    assert!(matches!(&e.cause, KeyStoreCause::Kms(k) if k.code == "ThrottlingException" && k.retryable), "{err}");
    assert_eq!(&c.decrypt(&reader, &message, Some(&ec())).await.unwrap().plaintext[..], b"x");

    // Random faults on every GetItem and Decrypt: each fresh keyring retries until through.
    env.inject_probability("DynamoDB_20120810.GetItem", REGION, 0.5, 7, 400, "ThrottlingException").await;
    env.inject_probability("TrentService.Decrypt", REGION, 0.5, 8, 500, "KMSInternalException").await;
    let mut retried = 0;
    for i in 0..20u32 {
        let (writer, reader) = (fresh(), fresh());
        let plaintext = i.to_be_bytes();
        let attempt = || async {
            let message = c.encrypt(&writer, &plaintext, &ec()).await?;
            c.decrypt(&reader, &message, Some(&ec())).await
        };
        let mut tries = 0;
        let out = loop {
            match attempt().await {
                Ok(out) => break out,
                Err(e) => {
                    assert!(e.is_retryable(), "a fault reported as permanent: {e}");
                    tries += 1;
                    assert!(tries < 50, "never got through: {e}");
                }
            }
        };
        retried += tries;
        assert_eq!(&out.plaintext[..], &plaintext);
    }
    env.clear_faults_in(REGION).await;
    assert!(retried > 0, "the faults never outlasted the SDK's retries: the test did not test anything");
}

/// Chooses the branch key from the message's `tenant`.
#[derive(Debug)]
struct ByTenant;

impl BranchKeyIdSupplier for ByTenant {
    fn branch_key_id(&self, context: &EncryptionContext) -> esdk::Result<String> {
        context
            .get("tenant")
            .map(|t| format!("tenant-{t}"))
            .ok_or_else(|| Error::InvalidConfig("the message has no tenant in its context".into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn one_branch_key_serves_100000_messages_with_one_kms_call_and_one_read_per_side() {
    const REGION: &str = "ap-south-2";
    let env = Endpoint::from_env();
    let arn = env.create_key(REGION).await;
    let admin = store(&env, REGION, "branch-keys-cost", &arn, env.kms(REGION));
    admin.create_key_store().await.unwrap();
    for tenant in ["tenant-acme", "tenant-globex"] {
        admin.create_key(Some(tenant), &custom()).await.unwrap();
    }

    // The writer and the reader are separate keyrings with stores of their own, as in two
    // processes; the writer picks each message's branch key by tenant.
    let writer_kms = Counting::new(env.kms(REGION));
    let writer_store = store(&env, REGION, "branch-keys-cost", &arn, writer_kms.clone());
    let writer = Arc::new(
        HierarchicalKeyring::builder(writer_store.clone(), TTL)
            .branch_key_id_supplier(Arc::new(ByTenant))
            .build()
            .unwrap(),
    );
    let reader_kms = Counting::new(env.kms(REGION));
    let reader_store = store(&env, REGION, "branch-keys-cost", &arn, reader_kms.clone());
    let reader = Arc::new(keyring(&reader_store, "tenant-acme", Backend::default()));
    let suite = AlgorithmSuite::Aes256GcmHkdfSha512CommitKey;
    let c = client(suite, Backend::default());
    let (write_cmm, read_cmm) = (Arc::new(DefaultCmm::from_arc(writer)), DefaultCmm::from_arc(reader));

    // Cold start under concurrency: 64 callers miss together and make one store call.
    let mut callers = tokio::task::JoinSet::new();
    for i in 0..64u32 {
        let (c, cmm) = (c.clone(), write_cmm.clone());
        callers.spawn(async move { c.encrypt(&*cmm, &i.to_be_bytes(), &ec()).await });
    }
    while let Some(done) = callers.join_next().await {
        done.unwrap().unwrap();
    }
    assert_eq!(writer_store.dynamodb_calls().get_item, 1);
    for i in 0..100_000u32 {
        let message = c.encrypt(&*write_cmm, &i.to_be_bytes(), &ec()).await.unwrap();
        if i % 10_000 == 0 {
            let out = c.decrypt(&read_cmm, &message, Some(&ec())).await.unwrap();
            assert_eq!(&out.plaintext[..], &i.to_be_bytes());
        }
    }
    let mut last = Vec::new();
    for i in 0..100_000u32 {
        if i % 25_000 == 0 {
            last.push(c.encrypt(&*write_cmm, &i.to_be_bytes(), &ec()).await.unwrap());
        }
        let message = &last[last.len() - 1];
        c.decrypt(&read_cmm, message, Some(&ec())).await.unwrap();
    }
    assert_eq!(writer_kms.calls(), [("Decrypt".to_owned(), arn.clone())], "writer: one KMS call");
    assert_eq!(writer_store.dynamodb_calls().get_item, 1, "writer: one DynamoDB read");
    assert_eq!(reader_kms.calls(), [("Decrypt".to_owned(), arn.clone())], "reader: one KMS call");
    assert_eq!(reader_store.dynamodb_calls().get_item, 1, "reader: one DynamoDB read");

    // Another tenant is another branch key: one more read and call for the writer only.
    let globex: EncryptionContext = [("tenant", "globex")].into_iter().collect();
    let message = c.encrypt(&*write_cmm, b"g", &globex).await.unwrap();
    let (header, _) = esdk::MessageHeader::parse(&message, &esdk::HeaderLimits::default()).unwrap();
    assert_eq!(header.encrypted_data_keys()[0].provider_info, b"tenant-globex");
    assert_eq!(writer_store.dynamodb_calls().get_item, 2);
    let err = c.encrypt(&*write_cmm, b"g", &EncryptionContext::new()).await.unwrap_err();
    assert!(err.to_string().contains("no tenant"), "{err}");

    // A shared cache: keyrings with the same partition id share entries, others do not.
    let cache = BranchKeyCache::new(10).unwrap();
    let shared = |partition: &str| {
        let ring = HierarchicalKeyring::builder(reader_store.clone(), TTL)
            .branch_key_id("tenant-acme")
            .cache(cache.clone())
            .partition_id(partition)
            .build()
            .unwrap();
        DefaultCmm::new(ring)
    };
    let reads = reader_store.dynamodb_calls().get_item;
    c.decrypt(&shared("p1"), &last[0], Some(&ec())).await.unwrap();
    c.decrypt(&shared("p1"), &last[0], Some(&ec())).await.unwrap();
    assert_eq!(reader_store.dynamodb_calls().get_item, reads + 1, "one partition: one read");
    c.decrypt(&shared("p2"), &last[0], Some(&ec())).await.unwrap();
    assert_eq!(reader_store.dynamodb_calls().get_item, reads + 2, "another partition: its own read");
    assert_eq!(cache.len(), 2);
}

/// `key=value` lines of the driver's output.
fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|l| l.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key} in {out}"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Backend::default().sha256(&[bytes]))
}

/// Key stores and branch keys made by either side are read by the other (the same keys
/// unwrapped, compared by digest), and messages of every suite cross both ways.
#[test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
fn the_official_mpl_reads_our_key_store_and_messages_and_we_read_its() {
    const REGION: &str = "eu-south-1";
    let env = Endpoint::from_env();
    let py = esdk_testkit::interop_python();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let arn = rt.block_on(env.create_key(REGION));
    let plaintext: Vec<u8> = (0..3000).map(|i| (i % 251) as u8).collect();
    let context: EncryptionContext = [("région", "Montréal"), ("tenant", "acme")].into_iter().collect();
    let suites = AlgorithmSuite::ALL;

    // Theirs: the MPL creates the store, a branch key, a message under its first version, and a
    // second version.
    let first = tempfile::NamedTempFile::new().unwrap();
    let first_path = first.path().to_str().unwrap();
    let args = ["hierarchy-create", "mpl-store", &arn, "mpl-logical", first_path];
    let out = esdk_testkit::run_python_script(&py, "mpl_python.py", &args);
    let theirs = field(&out, "branch-key-id").to_owned();
    let their_store = Arc::new(
        KeyStore::new(
            "mpl-store",
            "mpl-logical",
            KmsConfiguration::KeyArn(arn.clone()),
            env.kms(REGION),
            env.dynamodb(REGION),
        )
        .unwrap(),
    );
    let active = rt.block_on(their_store.get_active_branch_key(&theirs)).unwrap();
    assert_eq!(active.version(), field(&out, "active-version"));
    assert_eq!(sha256_hex(active.expose_secret()), field(&out, "active-sha256"));
    let beacon = rt.block_on(their_store.get_beacon_key(&theirs)).unwrap();
    assert_eq!(sha256_hex(beacon.expose_secret()), field(&out, "beacon-sha256"));
    assert_eq!(active.encryption_context(), &custom());
    let message = std::fs::read(first.path()).unwrap();
    let (header, _) = esdk::MessageHeader::parse(&message, &esdk::HeaderLimits::default()).unwrap();
    assert_ne!(uuid_of(&header.encrypted_data_keys()[0].ciphertext[28..44]), active.version(), "an older version");
    let ring = keyring(&their_store, &theirs, Backend::default());
    let c = client(AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384, Backend::default());
    let out_first = rt.block_on(c.decrypt(&DefaultCmm::new(ring), &message, None)).unwrap();
    assert_eq!(&out_first.plaintext[..], b"written under the first version");

    // Ours: this crate creates a store, a key and a version; the MPL reads them.
    let our_store = Arc::new(
        KeyStore::new(
            "rust-store",
            "rust-logical",
            KmsConfiguration::KeyArn(arn.clone()),
            env.kms(REGION),
            env.dynamodb(REGION),
        )
        .unwrap(),
    );
    rt.block_on(our_store.create_key_store()).unwrap();
    let ours = rt.block_on(our_store.create_key(None, &custom())).unwrap();
    let ours_v1 = rt.block_on(our_store.get_active_branch_key(&ours)).unwrap();
    // A message under the first version, which the MPL decrypts after the rotation.
    let first_suite = AlgorithmSuite::Aes256GcmHkdfSha512CommitKey;
    let ring = keyring(&our_store, &ours, Backend::default());
    let our_first = rt
        .block_on(client(first_suite, Backend::default()).encrypt(&DefaultCmm::new(ring), &plaintext, &context))
        .unwrap();
    rt.block_on(our_store.version_key(&ours)).unwrap();
    let our_active = rt.block_on(our_store.get_active_branch_key(&ours)).unwrap();
    let out = esdk_testkit::run_python_script(
        &py,
        "mpl_python.py",
        &["hierarchy-describe", "rust-store", &arn, "rust-logical", &ours],
    );
    assert_eq!(field(&out, "active-version"), our_active.version());
    assert_eq!(field(&out, "active-sha256"), sha256_hex(our_active.expose_secret()));
    let our_beacon = rt.block_on(our_store.get_beacon_key(&ours)).unwrap();
    assert_eq!(field(&out, "beacon-sha256"), sha256_hex(our_beacon.expose_secret()));
    assert_eq!(field(&out, "context"), r#"{"tenant": "acme"}"#);

    // Messages both ways, on each store, for every suite; one of ours under the old version.
    let mut checks = 0;
    for (table, logical, store, branch_key_id) in
        [("mpl-store", "mpl-logical", &their_store, &theirs), ("rust-store", "rust-logical", &our_store, &ours)]
    {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("plaintext"), &plaintext).unwrap();
        std::fs::write(path("context.json"), esdk_testkit::context_json(&context)).unwrap();
        let ids: Vec<u16> = suites.iter().map(|s| s.id()).collect();
        std::fs::write(path("suites.json"), serde_json::to_string(&ids).unwrap()).unwrap();
        for suite in suites {
            let ring = keyring(store, branch_key_id, Backend::default());
            let message =
                rt.block_on(client(suite, Backend::default()).encrypt(&DefaultCmm::new(ring), &plaintext, &context));
            std::fs::write(path(&format!("{:04x}.rust", suite.id())), message.unwrap()).unwrap();
        }
        let first_version = table == "rust-store";
        if first_version {
            std::fs::write(path("first-version.rust"), &our_first).unwrap();
        }
        let dir_path = dir.path().to_str().unwrap().to_owned();
        let out = esdk_testkit::run_python_script(
            &py,
            "mpl_python.py",
            &["hierarchy", table, &arn, logical, branch_key_id, &dir_path],
        );
        let total = 2 * suites.len() + usize::from(first_version);
        assert_eq!(out.lines().last().unwrap_or_default(), format!("{total} passed, 0 failed"), "{out}");
        checks += total;
        for suite in suites {
            let message = std::fs::read(path(&format!("{:04x}.python", suite.id()))).unwrap();
            let ring = keyring(store, branch_key_id, Backend::default());
            let out = rt.block_on(client(suite, Backend::default()).decrypt(
                &DefaultCmm::new(ring),
                &message,
                Some(&context),
            ));
            assert_eq!(&out.unwrap().plaintext[..], &plaintext[..], "{table} {suite}");
            checks += 1;
        }
    }
    assert_eq!(checks, 6 * suites.len() + 1);
    assert_ne!(ours_v1.version(), our_active.version());
}
