//! The AWS KMS RSA keyring against the local endpoint's RSA keys (`tests/emulator_kms.rs` checks
//! the endpoint): messages round-trip for both OAEP hashes, on both crypto backends where they
//! wrap, with KMS called only for EDKs of the configured key; the encryption context is bound;
//! signing suites are refused.
#![cfg(feature = "kms")]

use esdk::error::{EdkFailure, EdkOutcome, SkipReason};
use esdk::keyring::kms::{KmsRsaAlgorithm, KmsRsaKeyring, RSA_PROVIDER_ID};
use esdk::{AlgorithmSuite, Backend, DefaultCmm, EncryptionContext, Error, RawAesKeyring};
use esdk_testkit::aws::{Counting, Endpoint};
use esdk_testkit::client_for as client;

/// Every test here uses this Region alone.
const REGION: &str = "ap-south-1";

/// A new RSA key of `bits` in [`REGION`] and its public key as PEM.
async fn rsa_key(env: &Endpoint, bits: u32) -> (String, String) {
    env.create_rsa_key(REGION, bits).await
}

fn ec() -> EncryptionContext {
    [("tenant", "acme"), ("stream", "orders")].into_iter().collect()
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn messages_round_trip_with_both_oaep_hashes_and_every_unsigned_suite() {
    let env = Endpoint::from_env();
    let (arn, pem) = rsa_key(&env, 2048).await;
    let kms = Counting::new(env.kms(REGION));
    for algorithm in [KmsRsaAlgorithm::RsaesOaepSha256, KmsRsaAlgorithm::RsaesOaepSha1] {
        for &backend in Backend::all() {
            for suite in AlgorithmSuite::ALL.into_iter().filter(|s| !s.is_signed()) {
                let encrypting = KmsRsaKeyring::new(&arn, algorithm)
                    .unwrap()
                    .with_backend(backend)
                    .with_public_key_pem(&pem)
                    .unwrap();
                let c = client(suite, backend);
                let before = kms.calls().len();
                let message = c.encrypt(&DefaultCmm::new(encrypting), b"change record", &ec()).await.unwrap();
                assert_eq!(kms.calls().len(), before, "encryption is local: no KMS call");

                let decrypting = KmsRsaKeyring::new(&arn, algorithm).unwrap().with_client(kms.clone());
                let out = c.decrypt(&DefaultCmm::new(decrypting), &message, Some(&ec())).await.unwrap();
                assert_eq!(&out.plaintext[..], b"change record", "{algorithm} {suite} {backend:?}");
                assert_eq!(kms.calls()[before..], [("Decrypt".to_owned(), arn.clone())]);
                let (header, _) = esdk::MessageHeader::parse(&message, &esdk::HeaderLimits::default()).unwrap();
                let edk = &header.encrypted_data_keys()[0];
                assert_eq!(edk.provider_id, RSA_PROVIDER_ID);
                assert_eq!(edk.provider_info, arn.as_bytes());
            }
        }
    }
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn the_encryption_context_is_bound_and_other_keys_are_skipped_without_a_call() {
    let env = Endpoint::from_env();
    let (arn, pem) = rsa_key(&env, 3072).await;
    let (other_arn, _) = rsa_key(&env, 2048).await;
    let kms = Counting::new(env.kms(REGION));
    let alg = KmsRsaAlgorithm::RsaesOaepSha256;
    let suite = AlgorithmSuite::Aes256GcmHkdfSha512CommitKey;
    let encrypting = KmsRsaKeyring::new(&arn, alg).unwrap().with_public_key_pem(&pem).unwrap();
    let message = client(suite, Backend::default()).encrypt(&DefaultCmm::new(encrypting), b"x", &ec()).await.unwrap();

    // The context is in the header, so a decryptor cannot change it there; the keyring's
    // digest catches a context changed under it. Check the keyring directly: materials with
    // another context than the one the data key was wrapped under.
    let (header, _) = esdk::MessageHeader::parse(&message, &esdk::HeaderLimits::default()).unwrap();
    let edks = header.encrypted_data_keys().to_vec();
    let keyring = KmsRsaKeyring::new(&arn, alg).unwrap().with_client(kms.clone());
    let mut changed = ec();
    changed.insert("tenant", "mallory");
    let materials = esdk::materials::DecryptionMaterials::new(suite, changed);
    let err = esdk::Keyring::on_decrypt(&keyring, materials, &edks).await.unwrap_err();
    let Error::NoDecryptableDataKey(report) = err else { panic!("{err:?}") };
    assert!(
        matches!(report.attempts[0].outcome, EdkOutcome::Failed(EdkFailure::EncryptionContextMismatch)),
        "{report:?}"
    );

    // A keyring for another key skips the EDK without calling KMS; so does every keyring for an
    // EDK of another provider.
    let before = kms.calls().len();
    let other = KmsRsaKeyring::new(&other_arn, alg).unwrap().with_client(kms.clone());
    let err = client(suite, Backend::default()).decrypt(&DefaultCmm::new(other), &message, None).await.unwrap_err();
    let Error::NoDecryptableDataKey(report) = err else { panic!("{err:?}") };
    assert!(
        matches!(&report.attempts[0].outcome, EdkOutcome::Skipped(SkipReason::NotAllowListed { key_arn }) if *key_arn == arn),
        "{report:?}"
    );
    let aes_message = client(suite, Backend::default())
        .encrypt(&DefaultCmm::new(RawAesKeyring::new("ns", "k", &[7; 32]).unwrap()), b"x", &ec())
        .await
        .unwrap();
    let rsa = KmsRsaKeyring::new(&arn, alg).unwrap().with_client(kms.clone());
    let err = client(suite, Backend::default()).decrypt(&DefaultCmm::new(rsa), &aes_message, None).await.unwrap_err();
    assert!(matches!(err, Error::NoDecryptableDataKey(_)), "{err:?}");
    assert_eq!(kms.calls().len(), before, "no KMS call for EDKs the keyring does not match");

    // The wrong OAEP hash is a KMS failure, reported with its code.
    let sha1 = KmsRsaKeyring::new(&arn, KmsRsaAlgorithm::RsaesOaepSha1).unwrap().with_client(kms.clone());
    let err = client(suite, Backend::default()).decrypt(&DefaultCmm::new(sha1), &message, None).await.unwrap_err();
    let Error::NoDecryptableDataKey(report) = err else { panic!("{err:?}") };
    assert!(
        matches!(&report.attempts[0].outcome, EdkOutcome::Failed(EdkFailure::Kms(e)) if e.code == "InvalidCiphertextException"),
        "{report:?}"
    );
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn signing_suites_aliases_and_short_keys_are_refused() {
    let env = Endpoint::from_env();
    let (arn, pem) = rsa_key(&env, 2048).await;
    let suite = AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384;
    let keyring =
        KmsRsaKeyring::new(&arn, KmsRsaAlgorithm::RsaesOaepSha256).unwrap().with_public_key_pem(&pem).unwrap();
    let err = client(suite, Backend::default()).encrypt(&DefaultCmm::new(keyring), b"x", &ec()).await.unwrap_err();
    assert!(matches!(&err, Error::Keyring { reason, .. } if reason.contains("signing suite")), "{err:?}");

    assert!(KmsRsaKeyring::new("alias/orders", KmsRsaAlgorithm::RsaesOaepSha256).is_err());
    let bare = KmsRsaKeyring::new("1234abcd-12ab-34cd-56ef-1234567890ab", KmsRsaAlgorithm::RsaesOaepSha256);
    assert!(matches!(&bare, Err(Error::InvalidConfig(m)) if m.contains("key ARN")), "{bare:?}");
    // Decrypting with a signing suite is refused too (the materials say which suite).
    let keyring = KmsRsaKeyring::new(&arn, KmsRsaAlgorithm::RsaesOaepSha256).unwrap().with_client(env.kms(REGION));
    let materials = esdk::materials::DecryptionMaterials::new(suite, ec());
    let err = esdk::Keyring::on_decrypt(&keyring, materials, &[]).await.unwrap_err();
    assert!(matches!(&err, Error::Keyring { reason, .. } if reason.contains("signing suite")), "{err:?}");
    assert!(
        KmsRsaKeyring::new("arn:aws:kms:ap-south-1:123456789012:alias/orders", KmsRsaAlgorithm::RsaesOaepSha1).is_err()
    );
    assert!("RSAES_PKCS1_V1_5".parse::<KmsRsaAlgorithm>().is_err());

    // Under 2048 bits the keyring refuses the key (aws-lc-rs refuses it itself when parsing).
    let short = include_str!("data/rsa1024_public.pem");
    for &backend in Backend::all() {
        let keyring = KmsRsaKeyring::new(&arn, KmsRsaAlgorithm::RsaesOaepSha1).unwrap().with_backend(backend);
        let err = keyring.with_public_key_pem(short).unwrap_err();
        assert!(matches!(err, Error::InvalidKey(_)), "{backend:?}: {err}");
        if backend.name() == "rustcrypto" {
            // The rsa crate parses the key: the keyring's own check refuses it.
            assert!(err.to_string().contains("at least 2048"), "{err}");
        }
    }
}

/// Both directions against the official MPL 1.11.3 with the Python ESDK 4.0.7, for both OAEP
/// hashes: our messages decrypt there, theirs here, every unsigned suite.
#[test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
fn the_official_mpl_keyring_reads_our_messages_and_we_read_its() {
    let env = Endpoint::from_env();
    let py = esdk_testkit::interop_python();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (arn, pem) = rt.block_on(rsa_key(&env, 2048));
    let suites: Vec<AlgorithmSuite> = AlgorithmSuite::ALL.into_iter().filter(|s| !s.is_signed()).collect();
    let plaintext: Vec<u8> = (0..3000).map(|i| (i % 251) as u8).collect();
    // The digest is the interop risk: a context with non-ASCII pairs, and the empty context.
    let non_ascii: EncryptionContext =
        [("région", "Montréal"), ("stream", "orders"), ("ключ", "значение")].into_iter().collect();
    for (algorithm, context) in
        [(KmsRsaAlgorithm::RsaesOaepSha256, non_ascii), (KmsRsaAlgorithm::RsaesOaepSha1, EncryptionContext::new())]
    {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("key.pem"), &pem).unwrap();
        std::fs::write(path("plaintext"), &plaintext).unwrap();
        std::fs::write(path("context.json"), esdk_testkit::context_json(&context)).unwrap();
        let ids: Vec<u16> = suites.iter().map(|s| s.id()).collect();
        std::fs::write(path("suites.json"), serde_json::to_string(&ids).unwrap()).unwrap();
        for &suite in &suites {
            let keyring = KmsRsaKeyring::new(&arn, algorithm).unwrap().with_public_key_pem(&pem).unwrap();
            let message =
                rt.block_on(client(suite, Backend::default()).encrypt(&DefaultCmm::new(keyring), &plaintext, &context));
            std::fs::write(path(&format!("{:04x}.rust", suite.id())), message.unwrap()).unwrap();
        }
        let (pem_path, dir_path) = (path("key.pem"), dir.path().to_path_buf());
        let args = ["kms-rsa", &arn, pem_path.to_str().unwrap(), algorithm.as_str(), dir_path.to_str().unwrap()];
        let out = esdk_testkit::run_python_script(&py, "mpl_python.py", &args);
        let total = 2 * suites.len();
        assert_eq!(out.lines().last().unwrap_or_default(), format!("{total} passed, 0 failed"), "{out}");

        let kms = env.kms(REGION);
        for &suite in &suites {
            let message = std::fs::read(path(&format!("{:04x}.python", suite.id()))).unwrap();
            let keyring = KmsRsaKeyring::new(&arn, algorithm).unwrap().with_client(kms.clone());
            let out = rt.block_on(client(suite, Backend::default()).decrypt(
                &DefaultCmm::new(keyring),
                &message,
                Some(&context),
            ));
            assert_eq!(&out.unwrap().plaintext[..], &plaintext[..], "{algorithm} {suite}");
        }
    }
}
