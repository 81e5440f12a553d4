//! The local endpoint's asymmetric KMS keys (`scripts/moto_plus.py`, fix 7), checked against KMS'
//! documented behaviour through the real `aws-sdk-kms` client: `DeriveSharedSecret` with
//! `KEY_AGREEMENT` keys, RSAES-OAEP `Encrypt`/`Decrypt` with RSA `ENCRYPT_DECRYPT` keys, and
//! the errors KMS answers with. The AWS KMS ECDH and RSA keyrings are tested on these calls, so
//! the emulator is tested first, with an independent implementation (aws-lc-rs) on this side.
#![cfg(all(feature = "kms", feature = "aws-lc-rs"))]

use aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{OaepAlgorithm, OaepPublicEncryptingKey, PublicEncryptingKey};
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{EncryptionAlgorithmSpec, KeyAgreementAlgorithmSpec, KeySpec, KeyUsageType};
use esdk_testkit::aws::Endpoint;

/// The Region of every test here (no other test of this binary uses it; nothing here lists keys).
const REGION: &str = "eu-north-1";

async fn create_key(kms: &aws_sdk_kms::Client, spec: KeySpec, usage: KeyUsageType) -> String {
    let out = kms.create_key().key_spec(spec).key_usage(usage).send().await.expect("CreateKey");
    out.key_metadata().and_then(|m| m.arn()).expect("the new key's ARN").to_owned()
}

/// The error code of a failed call, or a panic naming the call that unexpectedly succeeded.
fn code<T: std::fmt::Debug, E: ProvideErrorMetadata>(
    call: &str,
    r: Result<T, aws_sdk_kms::error::SdkError<E>>,
) -> String {
    match r {
        Ok(v) => panic!("{call} succeeded: {v:?}"),
        Err(e) => e.code().unwrap_or("<no code>").to_owned(),
    }
}

async fn public_key(kms: &aws_sdk_kms::Client, arn: &str) -> Vec<u8> {
    let out = kms.get_public_key().key_id(arn).send().await.expect("GetPublicKey");
    out.public_key().expect("a public key").as_ref().to_vec()
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn derive_shared_secret_agrees_with_a_local_ecdh_on_every_nist_curve() {
    let kms = Endpoint::from_env().admin(REGION);
    let rng = SystemRandom::new();
    for (spec, alg, len) in [
        (KeySpec::EccNistP256, &agreement::ECDH_P256, 32),
        (KeySpec::EccNistP384, &agreement::ECDH_P384, 48),
        (KeySpec::EccNistP521, &agreement::ECDH_P521, 66),
    ] {
        let arn = create_key(&kms, spec.clone(), KeyUsageType::KeyAgreement).await;
        let info = kms.get_public_key().key_id(&arn).send().await.unwrap();
        assert_eq!(info.key_id(), Some(arn.as_str()), "GetPublicKey answers with the ARN");
        assert_eq!(info.key_usage(), Some(&KeyUsageType::KeyAgreement));
        assert_eq!(info.key_agreement_algorithms(), [KeyAgreementAlgorithmSpec::Ecdh]);
        assert!(info.encryption_algorithms().is_empty() && info.signing_algorithms().is_empty(), "{spec:?}");

        let ours = EphemeralPrivateKey::generate(alg, &rng).unwrap();
        let our_public = ours.compute_public_key().unwrap();
        let spki = AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(&our_public).unwrap();
        let out = kms
            .derive_shared_secret()
            .key_id(&arn)
            .key_agreement_algorithm(KeyAgreementAlgorithmSpec::Ecdh)
            .public_key(Blob::new(spki.as_ref()))
            .send()
            .await
            .expect("DeriveSharedSecret");
        assert_eq!(out.key_id(), Some(arn.as_str()));
        assert_eq!(out.key_agreement_algorithm(), Some(&KeyAgreementAlgorithmSpec::Ecdh));
        let theirs = out.shared_secret().expect("a shared secret").as_ref().to_vec();
        assert_eq!(theirs.len(), len, "{spec:?}: the x coordinate, as wide as the field");

        let kms_public = public_key(&kms, &arn).await;
        let local = agreement::agree_ephemeral(ours, UnparsedPublicKey::new(alg, &kms_public), (), |s| Ok(s.to_vec()))
            .expect("ECDH with the key's public key");
        assert_eq!(theirs, local, "{spec:?}: both sides derive the same secret");
    }
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn derive_shared_secret_refuses_what_kms_refuses() {
    let kms = Endpoint::from_env().admin(REGION);
    let rng = SystemRandom::new();
    let p256 = EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng).unwrap();
    let p256 = AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(&p256.compute_public_key().unwrap()).unwrap();
    let p384 = EphemeralPrivateKey::generate(&agreement::ECDH_P384, &rng).unwrap();
    let p384 = AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(&p384.compute_public_key().unwrap()).unwrap();
    let derive = |key: String, public: Vec<u8>, alg: KeyAgreementAlgorithmSpec| {
        let kms = kms.clone();
        async move {
            kms.derive_shared_secret()
                .key_id(key)
                .key_agreement_algorithm(alg)
                .public_key(Blob::new(public))
                .send()
                .await
        }
    };
    let agreement_key = create_key(&kms, KeySpec::EccNistP256, KeyUsageType::KeyAgreement).await;
    let signing_key = create_key(&kms, KeySpec::EccNistP256, KeyUsageType::SignVerify).await;
    let symmetric = create_key(&kms, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    let ecdh = || KeyAgreementAlgorithmSpec::Ecdh;

    let r = derive(signing_key.clone(), p256.as_ref().to_vec(), ecdh()).await;
    assert_eq!(code("DeriveSharedSecret with a SIGN_VERIFY key", r), "InvalidKeyUsageException");
    let r = derive(symmetric.clone(), p256.as_ref().to_vec(), ecdh()).await;
    assert_eq!(code("DeriveSharedSecret with a symmetric key", r), "InvalidKeyUsageException");
    // KMS documents no code for a public key on another curve: ValidationException is this
    // endpoint's convention (as for the other undocumented cases below).
    let r = derive(agreement_key.clone(), p384.as_ref().to_vec(), ecdh()).await;
    assert_eq!(code("DeriveSharedSecret with a P-384 public key on a P-256 key", r), "ValidationException");
    let r = derive(agreement_key.clone(), b"not a public key".to_vec(), ecdh()).await;
    assert_eq!(code("DeriveSharedSecret with garbage for a public key", r), "ValidationException");
    let r = derive(agreement_key.clone(), p256.as_ref().to_vec(), KeyAgreementAlgorithmSpec::from("DH")).await;
    assert_eq!(code("DeriveSharedSecret with an unknown algorithm", r), "ValidationException");

    kms.disable_key().key_id(&agreement_key).send().await.unwrap();
    let r = derive(agreement_key.clone(), p256.as_ref().to_vec(), ecdh()).await;
    assert_eq!(code("DeriveSharedSecret with a disabled key", r), "DisabledException");
    let r = kms.get_public_key().key_id(&agreement_key).send().await;
    assert_eq!(code("GetPublicKey of a disabled key", r), "DisabledException");
    let usable = create_key(&kms, KeySpec::EccNistP384, KeyUsageType::KeyAgreement).await;
    let r = kms
        .derive_shared_secret()
        .key_id(usable)
        .key_agreement_algorithm(ecdh())
        .public_key(Blob::new(p384.as_ref()))
        .dry_run(true)
        .send()
        .await;
    assert_eq!(code("DeriveSharedSecret with DryRun", r), "DryRunOperationException");

    // KEY_AGREEMENT is for NIST curves (and SM2) only; ECC keys cannot encrypt.
    let r = kms.create_key().key_spec(KeySpec::Rsa2048).key_usage(KeyUsageType::KeyAgreement).send().await;
    assert_eq!(code("CreateKey RSA_2048 KEY_AGREEMENT", r), "ValidationException");
    let r = kms.create_key().key_spec(KeySpec::EccNistP256).key_usage(KeyUsageType::EncryptDecrypt).send().await;
    assert_eq!(code("CreateKey ECC_NIST_P256 ENCRYPT_DECRYPT", r), "ValidationException");
    let r = kms.get_public_key().key_id(&symmetric).send().await;
    assert_eq!(code("GetPublicKey of a symmetric key", r), "UnsupportedOperationException");
}

fn oaep(spec: &EncryptionAlgorithmSpec) -> &'static OaepAlgorithm {
    match spec {
        EncryptionAlgorithmSpec::RsaesOaepSha1 => &aws_lc_rs::rsa::OAEP_SHA1_MGF1SHA1,
        EncryptionAlgorithmSpec::RsaesOaepSha256 => &aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256,
        other => panic!("not an OAEP algorithm: {other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn rsa_keys_decrypt_what_their_public_key_encrypts_with_oaep() {
    let kms = Endpoint::from_env().admin(REGION);
    for (spec, modulus) in [(KeySpec::Rsa2048, 256), (KeySpec::Rsa3072, 384)] {
        let arn = create_key(&kms, spec.clone(), KeyUsageType::EncryptDecrypt).await;
        let info = kms.get_public_key().key_id(&arn).send().await.unwrap();
        assert_eq!(
            info.encryption_algorithms(),
            [EncryptionAlgorithmSpec::RsaesOaepSha1, EncryptionAlgorithmSpec::RsaesOaepSha256]
        );
        let public =
            OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(&public_key(&kms, &arn).await).unwrap())
                .unwrap();
        for (alg, hash_len) in
            [(EncryptionAlgorithmSpec::RsaesOaepSha1, 20), (EncryptionAlgorithmSpec::RsaesOaepSha256, 32)]
        {
            let limit = modulus - 2 * hash_len - 2;
            for plaintext in [vec![0x5a; 32], vec![0xa5; limit]] {
                // Encrypted here with the public key, decrypted by KMS.
                let mut out = vec![0; public.ciphertext_size()];
                let ct = public.encrypt(oaep(&alg), &plaintext, &mut out, None).unwrap().to_vec();
                let got = kms
                    .decrypt()
                    .key_id(&arn)
                    .encryption_algorithm(alg.clone())
                    .ciphertext_blob(Blob::new(ct.clone()))
                    .send()
                    .await
                    .expect("Decrypt");
                assert_eq!(got.plaintext().unwrap().as_ref(), &plaintext[..], "{spec:?} {alg:?}");
                assert_eq!(got.key_id(), Some(arn.as_str()));
                assert_eq!(got.encryption_algorithm(), Some(&alg));

                // Encrypted by KMS, decrypted by KMS.
                let enc = kms
                    .encrypt()
                    .key_id(&arn)
                    .encryption_algorithm(alg.clone())
                    .plaintext(Blob::new(plaintext.clone()))
                    .send()
                    .await
                    .expect("Encrypt");
                assert_eq!(enc.key_id(), Some(arn.as_str()));
                assert_eq!(enc.encryption_algorithm(), Some(&alg));
                let blob = enc.ciphertext_blob().unwrap().as_ref().to_vec();
                assert_eq!(blob.len(), modulus, "an RSA ciphertext is as long as the modulus");
                let back = kms
                    .decrypt()
                    .key_id(&arn)
                    .encryption_algorithm(alg.clone())
                    .ciphertext_blob(Blob::new(blob))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(back.plaintext().unwrap().as_ref(), &plaintext[..]);

                // The other OAEP hash does not decrypt it.
                let other = match alg {
                    EncryptionAlgorithmSpec::RsaesOaepSha1 => EncryptionAlgorithmSpec::RsaesOaepSha256,
                    _ => EncryptionAlgorithmSpec::RsaesOaepSha1,
                };
                let r =
                    kms.decrypt().key_id(&arn).encryption_algorithm(other).ciphertext_blob(Blob::new(ct)).send().await;
                assert_eq!(code("Decrypt with the other OAEP hash", r), "InvalidCiphertextException");
            }
            let r = kms
                .encrypt()
                .key_id(&arn)
                .encryption_algorithm(alg.clone())
                .plaintext(Blob::new(vec![1; limit + 1]))
                .send()
                .await;
            assert_eq!(code("Encrypt one byte past the OAEP limit", r), "ValidationException");
        }
    }
}

#[tokio::test]
#[ignore = "needs the local AWS endpoint: run scripts/test"]
async fn rsa_and_symmetric_keys_refuse_each_others_algorithms() {
    let kms = Endpoint::from_env().admin(REGION);
    let rsa = create_key(&kms, KeySpec::Rsa2048, KeyUsageType::EncryptDecrypt).await;
    let signing = create_key(&kms, KeySpec::Rsa2048, KeyUsageType::SignVerify).await;
    let symmetric = create_key(&kms, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    let sha256 = || EncryptionAlgorithmSpec::RsaesOaepSha256;
    let data = || Blob::new(b"data key".to_vec());

    let r = kms.encrypt().key_id(&rsa).plaintext(data()).send().await;
    assert_eq!(code("Encrypt with an RSA key and SYMMETRIC_DEFAULT", r), "InvalidKeyUsageException");
    let r = kms.generate_data_key().key_id(&rsa).number_of_bytes(32).send().await;
    assert_eq!(code("GenerateDataKey with an RSA key", r), "InvalidKeyUsageException");
    let sym = kms.encrypt().key_id(&symmetric).plaintext(data()).send().await.unwrap();
    let r =
        kms.re_encrypt().ciphertext_blob(sym.ciphertext_blob().unwrap().clone()).destination_key_id(&rsa).send().await;
    assert_eq!(code("ReEncrypt to an RSA key", r), "InvalidKeyUsageException");
    let r = kms.encrypt().key_id(&rsa).encryption_algorithm(sha256()).plaintext(Blob::new(Vec::new())).send().await;
    assert_eq!(code("Encrypt of an empty plaintext", r), "ValidationException");
    let r = kms.encrypt().key_id(&symmetric).encryption_algorithm(sha256()).plaintext(data()).send().await;
    assert_eq!(code("Encrypt with a symmetric key and RSAES_OAEP_SHA_256", r), "InvalidKeyUsageException");
    let r = kms.encrypt().key_id(&signing).encryption_algorithm(sha256()).plaintext(data()).send().await;
    assert_eq!(code("Encrypt with a SIGN_VERIFY key", r), "InvalidKeyUsageException");
    let r = kms
        .encrypt()
        .key_id(&rsa)
        .encryption_algorithm(sha256())
        .encryption_context("stream", "orders")
        .plaintext(data())
        .send()
        .await;
    assert_eq!(code("Encrypt with an RSA key and an encryption context", r), "ValidationException");

    let ct = kms.encrypt().key_id(&rsa).encryption_algorithm(sha256()).plaintext(data()).send().await.unwrap();
    let ct = ct.ciphertext_blob().unwrap().clone();
    let r = kms.decrypt().encryption_algorithm(sha256()).ciphertext_blob(ct.clone()).send().await;
    assert_eq!(code("Decrypt with an asymmetric algorithm and no KeyId", r), "ValidationException");
    let r = kms.decrypt().key_id(&rsa).ciphertext_blob(ct.clone()).send().await;
    assert_eq!(code("Decrypt with an RSA key and SYMMETRIC_DEFAULT", r), "InvalidKeyUsageException");

    // Symmetric keys work as before, with and without the algorithm named.
    let sym = kms.encrypt().key_id(&symmetric).plaintext(data()).send().await.unwrap();
    let back = kms
        .decrypt()
        .encryption_algorithm(EncryptionAlgorithmSpec::SymmetricDefault)
        .ciphertext_blob(sym.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(back.plaintext().unwrap().as_ref(), b"data key");

    kms.disable_key().key_id(&rsa).send().await.unwrap();
    let r = kms.decrypt().key_id(&rsa).encryption_algorithm(sha256()).ciphertext_blob(ct).send().await;
    assert_eq!(code("Decrypt with a disabled RSA key", r), "DisabledException");
}
