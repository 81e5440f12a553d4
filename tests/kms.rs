//! KMS keyrings against the local AWS endpoint (moto, started by `scripts/test`), through the
//! real `aws-sdk-kms` client, in two Regions.
//!
//! Every test creates its own keys. Tests that read the endpoint's call counters or inject faults
//! use Regions no other test uses, so they can run in parallel.
#![cfg(feature = "kms")]

#[path = "../examples/vectors/runner.rs"]
#[allow(dead_code)]
mod runner;

use std::sync::Arc;

use esdk::error::{EdkFailure, EdkOutcome, SkipReason};
use esdk::keyring::kms::{
    mrk_multi_keyring, strict_multi_keyring, AwsSdkClientSupplier, ClientSupplier, DiscoveryFilter,
    KmsDiscoveryKeyring, KmsKeyring, KmsMrkDiscoveryKeyring, KmsMrkKeyring,
};
use esdk::{Client, DefaultCmm, EncryptionContext, Error, ErrorKind, Keyring, MultiKeyring, RawAesKeyring};
use esdk_testkit::aws::{self, Counting, Endpoint};

fn ec() -> EncryptionContext {
    [("stream", "orders"), ("commit-ts", "2022-07-18T20:00:00")].into_iter().collect()
}

async fn encrypt(keyring: impl Keyring + 'static, plaintext: &[u8]) -> Vec<u8> {
    Client::new().encrypt(&DefaultCmm::new(keyring), plaintext, &ec()).await.unwrap()
}

async fn decrypt(keyring: impl Keyring + 'static, message: &[u8]) -> esdk::Result<Vec<u8>> {
    Client::new().decrypt(&DefaultCmm::new(keyring), message, Some(&ec())).await.map(|d| d.plaintext.to_vec())
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn mrk_encrypted_in_a_decrypts_in_b_with_only_the_replica_and_back() {
    let env = Endpoint::from_env();
    let (a, b) = env.create_mrk("us-east-1", "us-west-2").await;
    let kms_a = Counting::new(env.kms("us-east-1"));
    let kms_b = Counting::new(env.kms("us-west-2"));

    let message = encrypt(KmsMrkKeyring::new(&a, kms_a.clone()).unwrap(), b"record in A").await;
    assert_eq!(kms_a.calls(), vec![("GenerateDataKey".to_owned(), a.clone())]);
    let before_a = kms_a.calls().len();
    let plain = decrypt(KmsMrkKeyring::new(&b, kms_b.clone()).unwrap(), &message).await.unwrap();
    assert_eq!(plain, b"record in A");
    assert_eq!(kms_b.calls(), vec![("Decrypt".to_owned(), b.clone())], "B must call only its own replica");
    assert_eq!(kms_a.calls().len(), before_a, "a consumer in B must not call Region A");

    // The reverse: encrypted in B, decrypted in A.
    let message = encrypt(KmsMrkKeyring::new(&b, kms_b.clone()).unwrap(), b"record in B").await;
    let plain = decrypt(KmsMrkKeyring::new(&a, kms_a.clone()).unwrap(), &message).await.unwrap();
    assert_eq!(plain, b"record in B");
    assert_eq!(kms_a.calls().last().unwrap(), &("Decrypt".to_owned(), a.clone()));

    // MRK-aware discovery bound to B rewrites the A ARN to B and calls B.
    let message = encrypt(KmsMrkKeyring::new(&a, kms_a.clone()).unwrap(), b"discover me").await;
    let filter = DiscoveryFilter::new("aws", [aws::ACCOUNT]).unwrap();
    let discovery = KmsMrkDiscoveryKeyring::new(kms_b.clone(), "us-west-2", Some(filter)).unwrap();
    assert_eq!(decrypt(discovery, &message).await.unwrap(), b"discover me");
    assert_eq!(kms_b.calls().last().unwrap(), &("Decrypt".to_owned(), b.clone()));
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn edk_under_a_key_that_is_not_allow_listed_is_refused_without_any_kms_call() {
    let env = Endpoint::from_env();
    // Regions used by this test only, so the endpoint's per-Region counters are ours.
    let (a, b) = env.create_mrk("ap-southeast-1", "ap-northeast-1").await;
    let unrelated = env.create_key("ap-northeast-1").await;
    let message = encrypt(KmsMrkKeyring::new(&a, env.kms("ap-southeast-1")).unwrap(), b"x").await;

    let kms_b = Counting::new(env.kms("ap-northeast-1"));
    let err = decrypt(KmsMrkKeyring::new(&unrelated, kms_b.clone()).unwrap(), &message).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoDecryptableDataKey);
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(text.contains(&a), "the error names the EDK's key ARN: {text}");
    assert!(text.contains(&unrelated), "the error names the allow-list: {text}");
    assert!(text.contains("not allow-listed"), "{text}");

    // A strict (non-MRK-aware) keyring listing the B replica does not match the A ARN either.
    let err = decrypt(KmsKeyring::new(&b, kms_b.clone()).unwrap(), &message).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoDecryptableDataKey);

    assert!(kms_b.calls().is_empty(), "no KMS call for EDKs outside the allow-list: {:?}", kms_b.calls());
    let stats = env.stats().await;
    assert_eq!(stats.get("ap-northeast-1:TrentService.Decrypt"), None, "endpoint saw a Decrypt: {stats:?}");
    assert_eq!(stats.get("ap-southeast-1:TrentService.GenerateDataKey"), Some(&1), "counters work: {stats:?}");
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn discovery_filter_refuses_other_accounts_and_partitions() {
    let env = Endpoint::from_env();
    let key = env.create_key("eu-west-3").await;
    let message = encrypt(KmsKeyring::new(&key, env.kms("eu-west-3")).unwrap(), b"x").await;
    let kms = Counting::new(env.kms("eu-west-3"));
    for (partition, account) in [("aws", "999999999999"), ("aws-cn", aws::ACCOUNT)] {
        let filter = DiscoveryFilter::new(partition, [account]).unwrap();
        let err = decrypt(KmsDiscoveryKeyring::with_filter(kms.clone(), filter), &message).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NoDecryptableDataKey);
        assert!(err.to_string().contains("is outside the discovery filter"), "{err}");
        let Error::NoDecryptableDataKey(report) = err else { unreachable!() };
        let skipped = &report.attempts[0].outcome;
        assert!(
            matches!(skipped, EdkOutcome::Skipped(SkipReason::DiscoveryFilter { key_arn, filter })
                if *key_arn == key && filter.contains(partition) && filter.contains(account)),
            "{skipped:?}"
        );
    }
    assert!(kms.calls().is_empty());
    let filter = DiscoveryFilter::new("aws", [aws::ACCOUNT]).unwrap();
    assert_eq!(decrypt(KmsDiscoveryKeyring::with_filter(kms.clone(), filter), &message).await.unwrap(), b"x");
    assert_eq!(kms.calls(), vec![("Decrypt".to_owned(), key)]);
    // Discovery keyrings cannot encrypt.
    let err =
        Client::new().encrypt(&DefaultCmm::new(KmsDiscoveryKeyring::new(kms.clone())), b"x", &ec()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Keyring);
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn disabled_and_pending_deletion_keys_fail_permanently_with_the_kms_code() {
    let env = Endpoint::from_env();
    let disabled = env.create_key("ca-central-1").await;
    let pending = env.create_key("ca-central-1").await;
    let kms = env.kms("ca-central-1");
    let m1 = encrypt(KmsKeyring::new(&disabled, kms.clone()).unwrap(), b"1").await;
    let m2 = encrypt(KmsKeyring::new(&pending, kms.clone()).unwrap(), b"2").await;
    env.disable_key("ca-central-1", &disabled).await;
    env.schedule_deletion("ca-central-1", &pending).await;
    for (key, message, code) in [(&disabled, &m1, "DisabledException"), (&pending, &m2, "KMSInvalidStateException")] {
        let err = decrypt(KmsKeyring::new(key, kms.clone()).unwrap(), message).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NoDecryptableDataKey);
        assert!(!err.is_retryable(), "{err}");
        let text = err.to_string();
        assert!(text.contains(code) && text.contains("permanent"), "{text}");
    }
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn throttling_is_retried_and_reported_as_transient_when_it_persists() {
    let env = Endpoint::from_env();
    let key = env.create_key("eu-west-1").await;
    let kms = env.kms("eu-west-1");
    let message = encrypt(KmsKeyring::new(&key, kms.clone()).unwrap(), b"retry me").await;

    // Two throttles, then success: the SDK's standard retry (3 attempts) absorbs them.
    env.inject_fault("Decrypt", "eu-west-1", 2, "ThrottlingException").await;
    assert_eq!(decrypt(KmsKeyring::new(&key, kms.clone()).unwrap(), &message).await.unwrap(), b"retry me");

    // Throttled beyond the retries: a clear transient error.
    env.inject_fault("Decrypt", "eu-west-1", 10, "ThrottlingException").await;
    let err = decrypt(KmsKeyring::new(&key, kms.clone()).unwrap(), &message).await.unwrap_err();
    env.clear_faults().await;
    assert_eq!(err.kind(), ErrorKind::NoDecryptableDataKey);
    assert!(err.is_retryable(), "{err}");
    let text = err.to_string();
    assert!(text.contains("ThrottlingException") && text.contains("transient"), "{text}");
    let Error::NoDecryptableDataKey(report) = err else { unreachable!() };
    assert!(
        matches!(&report.attempts[0].outcome, EdkOutcome::Failed(EdkFailure::Kms(k))
            if k.code == "ThrottlingException" && k.retryable && k.operation == "Decrypt" && k.key_id == key),
        "{:?}",
        report.attempts
    );

    // Throttled GenerateDataKey on encrypt is transient too, with the code as a typed field.
    env.inject_fault("GenerateDataKey", "eu-west-1", 10, "ThrottlingException").await;
    let err = Client::new()
        .encrypt(&DefaultCmm::new(KmsKeyring::new(&key, kms.clone()).unwrap()), b"x", &ec())
        .await
        .unwrap_err();
    env.clear_faults().await;
    assert_eq!(err.kind(), ErrorKind::Kms);
    assert!(err.is_retryable(), "{err}");
    assert!(
        matches!(&err, Error::Kms { source, .. } if source.code == "ThrottlingException" && source.operation == "GenerateDataKey"),
        "{err:?}"
    );
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn encryption_context_mismatch_is_refused_before_kms() {
    let env = Endpoint::from_env();
    let key = env.create_key("us-east-2").await;
    let kms = Counting::new(env.kms("us-east-2"));
    let message = encrypt(KmsKeyring::new(&key, kms.clone()).unwrap(), b"x").await;
    let calls = kms.calls().len();
    let wrong: EncryptionContext = [("stream", "payments")].into_iter().collect();
    let err = Client::new()
        .decrypt(&DefaultCmm::new(KmsKeyring::new(&key, kms.clone()).unwrap()), &message, Some(&wrong))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EncryptionContextMismatch);
    assert_eq!(kms.calls().len(), calls);
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn aliases_encrypt_but_are_refused_for_decrypt() {
    let env = Endpoint::from_env();
    let key = env.create_key("us-east-2").await;
    let alias = format!("alias/esdk-test-{}", &key[key.len() - 12..]);
    env.create_alias("us-east-2", &alias, &key).await;
    let kms = env.kms("us-east-2");
    let message = encrypt(KmsKeyring::new(&alias, kms.clone()).unwrap(), b"via alias").await;
    let (header, _) = esdk::MessageHeader::parse(&message, &Default::default()).unwrap();
    assert_eq!(header.encrypted_data_keys()[0].provider_info, key.as_bytes(), "the EDK records the key ARN");
    let err = decrypt(KmsKeyring::new(&alias, kms.clone()).unwrap(), &message).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(err.to_string().contains("configure the key ARN"), "{err}");
    assert_eq!(decrypt(KmsKeyring::new(&key, kms).unwrap(), &message).await.unwrap(), b"via alias");
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn multi_keyrings_compose_kms_and_raw_keys_and_only_the_mrk_aware_ones_refuse_duplicate_mrks() {
    let env = Endpoint::from_env();
    let (a, b) = env.create_mrk("us-east-1", "us-west-2").await;
    let supplier = AwsSdkClientSupplier::from_sdk_config(env.sdk_config("us-east-1"));
    let err = mrk_multi_keyring(Some(&a), &[&b], &supplier, &[]).unwrap_err();
    assert!(err.to_string().contains("same multi-Region key"), "{err}");
    // aws-kms-mrk-multi-keyrings.md: "All AWS KMS identifiers are passed to Assert AWS KMS MRK
    // are unique and the function MUST return success otherwise this MUST fail." (above).
    // aws-kms-multi-keyrings.md, AWS KMS Multi-Keyring, has no such step; its only failure is
    // "If any of the AWS KMS key identifiers is not a valid AWS KMS key ARN, this function MUST
    // fail.", so two replicas of one MRK are accepted and each wraps the data key.
    let both = strict_multi_keyring(Some(&a), &[&b], &supplier, &[]).unwrap();
    let wrapped_twice = encrypt(both, b"two replicas").await;
    let (header, _) = esdk::MessageHeader::parse(&wrapped_twice, &esdk::HeaderLimits::default()).unwrap();
    assert_eq!(header.encrypted_data_keys().len(), 2);

    let raw: Arc<dyn Keyring> = Arc::new(RawAesKeyring::new("backup", "raw", &[3u8; 32]).unwrap());
    let kms_a = Counting::new(supplier.client("us-east-1").unwrap());
    let multi =
        MultiKeyring::new(Some(Arc::new(KmsMrkKeyring::new(&a, kms_a.clone()).unwrap())), vec![raw.clone()]).unwrap();
    let message = encrypt(multi, b"two ways in").await;
    assert_eq!(decrypt(raw, &message).await.unwrap(), b"two ways in");
    let from_b = mrk_multi_keyring(None, &[&b], &supplier, &[]).unwrap();
    assert_eq!(decrypt(from_b, &message).await.unwrap(), b"two ways in");
}

#[test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
fn blocking_api_works_with_kms_outside_any_runtime() {
    let env = Endpoint::from_env();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (key, kms) = rt.block_on(async { (env.create_key("sa-east-1").await, env.kms("sa-east-1")) });
    drop(rt);
    let cmm = DefaultCmm::new(KmsKeyring::new(&key, kms).unwrap());
    let message = Client::new().encrypt_blocking(&cmm, b"sync", &ec()).unwrap();
    assert_eq!(Client::new().decrypt_blocking(&cmm, &message, None).unwrap().plaintext.to_vec(), b"sync");
}

/// Messages written here under KMS keys decrypt in the official Python ESDK pointed at the same
/// endpoint, and the reverse; both across Regions with MRK-aware keyrings on each side.
#[test]
#[ignore = "needs the local AWS endpoint and the official Python ESDK: run scripts/test"]
fn python_esdk_interop_with_kms_multi_region_keys() {
    let env = Endpoint::from_env();
    let py = esdk_testkit::interop_python();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b) = rt.block_on(env.create_mrk("eu-north-1", "eu-south-1"));

    // Ours → Python: encrypt in A, Python decrypts with only the B replica.
    let dir = tempfile::tempdir().unwrap();
    let mut tests = serde_json::Map::new();
    std::fs::create_dir_all(dir.path().join("ciphertexts")).unwrap();
    std::fs::create_dir_all(dir.path().join("plaintexts")).unwrap();
    let kms_a = env.kms("eu-north-1");
    for (i, (suite, frame, size)) in [
        (esdk::AlgorithmSuite::Aes256GcmHkdfSha512CommitKey, 4096u32, 0usize),
        (esdk::AlgorithmSuite::Aes256GcmHkdfSha512CommitKey, 1, 300),
        (esdk::AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384, 4096, 20_000),
        (esdk::AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384, 128, 1000),
    ]
    .into_iter()
    .enumerate()
    {
        let plaintext: Vec<u8> = (0..size).map(|j| (j % 251) as u8).collect();
        let client = Client::builder().suite(suite).frame_length(frame).build().unwrap();
        let cmm = DefaultCmm::new(KmsMrkKeyring::new(&a, kms_a.clone()).unwrap());
        let message = client.encrypt_blocking(&cmm, &plaintext, &ec()).unwrap();
        let name = format!("rs-kms-{i}-{suite}-f{frame}");
        std::fs::write(dir.path().join("ciphertexts").join(&name), message).unwrap();
        std::fs::write(dir.path().join("plaintexts").join(&name), &plaintext).unwrap();
        tests.insert(
            name.clone(),
            serde_json::json!({
                "description": "esdk (Rust) KMS MRK",
                "ciphertext": format!("file://ciphertexts/{name}"),
                "master-keys": [{"type": "aws-kms-mrk-aware", "key": "replica"}],
                "commitment-policy": "REQUIRE_ENCRYPT_REQUIRE_DECRYPT",
                "encryption-context": {"stream": "orders"},
                "result": {"output": {"plaintext": format!("file://plaintexts/{name}")}},
            }),
        );
    }
    let keys = serde_json::json!({"manifest": {"type": "keys", "version": 3},
                                  "keys": {"replica": {"type": "aws-kms", "key-id": b}}});
    std::fs::write(dir.path().join("keys.json"), keys.to_string()).unwrap();
    let manifest = serde_json::json!({"manifest": {"type": "awses-decrypt", "version": 4},
                                      "keys": "file://keys.json", "tests": tests});
    std::fs::write(dir.path().join("manifest.json"), manifest.to_string()).unwrap();
    let out = esdk_testkit::run_python(&py, &["decrypt", dir.path().to_str().unwrap()]);
    assert_eq!(out.lines().last().unwrap_or_default(), "4 passed, 0 failed", "{out}");

    // Python → ours: Python encrypts under B, we decrypt with only the A replica.
    let dir = tempfile::tempdir().unwrap();
    esdk_testkit::run_python(&py, &["encrypt-kms", dir.path().to_str().unwrap(), &b, &a]);
    let summary = runner::run_with(dir.path(), esdk::Backend::default(), runner::Mode::OneShot, None).unwrap();
    assert_eq!((summary.passed, summary.failed), (6, 0), "{:?}", summary.failures);
}

/// Adds an `aws-kms` EDK whose provider info is an alias, not a key ARN, after whatever EDKs the
/// keyrings before it wrote.
#[derive(Debug)]
struct MalformedKmsEdk;

#[async_trait::async_trait]
impl Keyring for MalformedKmsEdk {
    async fn on_encrypt(
        &self,
        mut m: esdk::materials::EncryptionMaterials,
    ) -> esdk::Result<esdk::materials::EncryptionMaterials> {
        m.data_key_or_generate()?;
        m.add_encrypted_data_key(esdk::EncryptedDataKey {
            provider_id: "aws-kms".into(),
            provider_info: b"alias/not-a-key-arn".to_vec(),
            ciphertext: vec![1; 16],
        });
        Ok(m)
    }
    async fn on_decrypt(
        &self,
        _: esdk::materials::DecryptionMaterials,
        _: &[esdk::EncryptedDataKey],
    ) -> esdk::Result<esdk::materials::DecryptionMaterials> {
        Err(Error::InvalidConfig("MalformedKmsEdk is used for encryption only".into()))
    }
}

/// An `aws-kms` EDK whose provider info is not a key ARN fails OnDecrypt (spec) without any KMS call.
#[tokio::test]
async fn malformed_kms_provider_info_fails_without_a_kms_call() {
    let message = encrypt(MalformedKmsEdk, b"x").await;
    let arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let kms = Counting::new(Arc::new(esdk::keyring::kms::AwsSdkKmsClient::new(aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::Config::builder()
            .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
            .region(aws_sdk_kms::config::Region::new("us-east-1"))
            .build(),
    ))));
    let err = decrypt(KmsKeyring::new(arn, kms.clone()).unwrap(), &message).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoDecryptableDataKey);
    assert!(err.to_string().contains("the provider info is not a KMS key ARN"), "{err}");
    assert!(kms.calls().is_empty());
}

/// `aws-kms-keyring.md` and `aws-kms-mrk-keyring.md` (and both discovery keyrings), OnDecrypt:
/// "The set of encrypted data keys MUST first be filtered to match this keyring's configuration.
/// [...] The provider info MUST be a valid AWS KMS ARN with a resource type of `key` or OnDecrypt
/// MUST fail." The filter runs over the whole list first, so a malformed EDK *after* one the
/// keyring could decrypt still fails OnDecrypt, and no KMS call is made.
#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn every_kms_keyring_filters_the_whole_edk_list_before_calling_kms() {
    let env = Endpoint::from_env();
    let region = "eu-south-2"; // used by this test only
    let (mrk, _) = env.create_mrk(region, "eu-central-2").await;
    let good = encrypt(KmsKeyring::new(&mrk, env.kms(region)).unwrap(), b"filtered").await;
    let with_malformed = {
        let keyring = MultiKeyring::new(
            Some(Arc::new(KmsKeyring::new(&mrk, env.kms(region)).unwrap())),
            vec![Arc::new(MalformedKmsEdk)],
        )
        .unwrap();
        encrypt(keyring, b"filtered").await
    };

    type Make = fn(&str, Arc<dyn esdk::keyring::kms::KmsClient>, &str) -> Arc<dyn Keyring>;
    let keyrings: [(&str, Make); 4] = [
        ("strict", |arn, kms, _| Arc::new(KmsKeyring::new(arn, kms).unwrap())),
        ("MRK-aware strict", |arn, kms, _| Arc::new(KmsMrkKeyring::new(arn, kms).unwrap())),
        ("discovery", |_, kms, _| Arc::new(KmsDiscoveryKeyring::new(kms))),
        ("MRK-aware discovery", |_, kms, region| Arc::new(KmsMrkDiscoveryKeyring::new(kms, region, None).unwrap())),
    ];
    for (name, make) in keyrings {
        let kms = Counting::new(env.kms(region));
        // The same keyring decrypts the message without the malformed EDK, with one call...
        let plaintext = Client::new()
            .decrypt(&DefaultCmm::new(make(&mrk, kms.clone(), region)), &good, Some(&ec()))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .plaintext;
        assert_eq!(*plaintext, b"filtered");
        assert_eq!(kms.calls().len(), 1, "{name}: {:?}", kms.calls());
        // ...and refuses the one whose second EDK is malformed, before any call.
        let kms = Counting::new(env.kms(region));
        let err = Client::new()
            .decrypt(&DefaultCmm::new(make(&mrk, kms.clone(), region)), &with_malformed, Some(&ec()))
            .await
            .expect_err(name);
        assert_eq!(err.kind(), ErrorKind::NoDecryptableDataKey, "{name}: {err}");
        assert!(!err.is_retryable(), "{name}");
        assert!(err.to_string().contains("the provider info is not a KMS key ARN"), "{name}: {err}");
        assert!(kms.calls().is_empty(), "{name}: KMS was called: {:?}", kms.calls());
    }
}
