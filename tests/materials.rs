//! Commitment policy, CMMs and keyring composition through the public API.

use std::sync::Arc;

use esdk::{
    AlgorithmSuite, Client, CommitmentPolicy, DefaultCmm, EncryptionContext, ErrorKind, Keyring, MaterialsManager,
    MultiKeyring, RawAesKeyring, RawRsaKeyring, RequiredEncryptionContextCmm, RsaPadding,
};

const RSA_PRIVATE: &str = include_str!("data/rsa-2048-private.pem");
const RSA_PUBLIC: &str = include_str!("data/rsa-2048-public.pem");

fn aes(name: &str, byte: u8) -> Arc<dyn Keyring> {
    Arc::new(RawAesKeyring::new("ns", name, &[byte; 32]).unwrap())
}

fn ec(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs.iter().copied().collect()
}

#[test]
fn policy_is_checked_on_encrypt_and_decrypt() {
    let legacy = AlgorithmSuite::Aes256GcmIv12Tag16HkdfSha384EcdsaP384;
    let err = Client::builder().suite(legacy).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CommitmentPolicy);
    let err = Client::builder()
        .commitment_policy(CommitmentPolicy::ForbidEncryptAllowDecrypt)
        .suite(AlgorithmSuite::Aes256GcmHkdfSha512CommitKey)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CommitmentPolicy);

    let cmm = DefaultCmm::from_arc(aes("k", 1));
    let forbid = Client::builder().commitment_policy(CommitmentPolicy::ForbidEncryptAllowDecrypt).build().unwrap();
    let m = forbid.encrypt_blocking(&cmm, b"legacy", &EncryptionContext::new()).unwrap();
    // The spec's default under FORBID_ENCRYPT_ALLOW_DECRYPT.
    assert_eq!(m[0..4], [0x01, 0x80, 0x00, 0x78]);
    let err = Client::new().decrypt_blocking(&cmm, &m, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CommitmentPolicy);
    let allow = Client::builder().commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt).build().unwrap();
    assert_eq!(allow.decrypt_blocking(&cmm, &m, None).unwrap().plaintext.to_vec(), b"legacy");
}

#[test]
fn default_suite_is_0578_and_unsigned_only_refuses_it() {
    let cmm = DefaultCmm::from_arc(aes("k", 1));
    let m = Client::new().encrypt_blocking(&cmm, b"x", &EncryptionContext::new()).unwrap();
    assert_eq!(m[0..3], [0x02, 0x05, 0x78]);
    let err = Client::new().decrypt_unsigned_only_blocking(&cmm, &m, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SignedNotAllowed);
    let unsigned = Client::builder().suite(AlgorithmSuite::Aes256GcmHkdfSha512CommitKey).build().unwrap();
    let m = unsigned.encrypt_blocking(&cmm, b"x", &EncryptionContext::new()).unwrap();
    assert_eq!(Client::new().decrypt_unsigned_only_blocking(&cmm, &m, None).unwrap().plaintext.to_vec(), b"x");
}

/// `client-apis/encrypt.md`, "Get the encryption materials": "the algorithm suite in the retrieved
/// encryption materials MAY be different from the input algorithm suite. [...] If this algorithm
/// suite is not supported by the commitment policy, encryption MUST fail."
#[test]
fn a_materials_manager_may_choose_another_suite_within_the_policy() {
    #[derive(Debug)]
    struct ChoosesSuite(DefaultCmm, AlgorithmSuite);

    #[async_trait::async_trait]
    impl MaterialsManager for ChoosesSuite {
        async fn get_encryption_materials(
            &self,
            mut request: esdk::cmm::EncryptionMaterialsRequest,
        ) -> esdk::Result<esdk::materials::EncryptionMaterials> {
            request.suite = Some(self.1);
            self.0.get_encryption_materials(request).await
        }
        async fn decrypt_materials(
            &self,
            request: esdk::cmm::DecryptMaterialsRequest<'_>,
        ) -> esdk::Result<esdk::materials::DecryptionMaterials> {
            self.0.decrypt_materials(request).await
        }
    }

    let asks_unsigned = Client::builder().suite(AlgorithmSuite::Aes256GcmHkdfSha512CommitKey).build().unwrap();
    let signed = ChoosesSuite(DefaultCmm::from_arc(aes("k", 1)), AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384);
    let m = asks_unsigned.encrypt_blocking(&signed, b"chosen", &EncryptionContext::new()).unwrap();
    assert_eq!(m[0..3], [0x02, 0x05, 0x78], "the header carries the suite of the materials");
    assert_eq!(Client::new().decrypt_blocking(&signed, &m, None).unwrap().plaintext.to_vec(), b"chosen");

    // A suite the policy does not allow is still refused, whoever chose it.
    let legacy = ChoosesSuite(DefaultCmm::from_arc(aes("k", 1)), AlgorithmSuite::Aes256GcmIv12Tag16HkdfSha384EcdsaP384);
    let err = asks_unsigned.encrypt_blocking(&legacy, b"x", &EncryptionContext::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CommitmentPolicy);
}

/// `Decrypted.plaintext` is wiped when dropped, like the Kinesis consumer's records, and never
/// shown by `Debug`.
#[test]
fn decrypted_plaintext_is_zeroized_on_drop_and_not_in_debug_output() {
    let cmm = DefaultCmm::from_arc(aes("k", 1));
    let m = Client::new().encrypt_blocking(&cmm, b"the secret plaintext", &EncryptionContext::new()).unwrap();
    let decrypted = Client::new().decrypt_blocking(&cmm, &m, None).unwrap();
    let plaintext: &zeroize::Zeroizing<Vec<u8>> = &decrypted.plaintext;
    assert_eq!(**plaintext, b"the secret plaintext");
    let debug = format!("{decrypted:?}");
    assert!(!debug.contains("secret"), "{debug}");
    assert!(debug.contains("plaintext_len: 20"), "{debug}");
}

#[test]
fn expected_context_must_match() {
    let cmm = DefaultCmm::from_arc(aes("k", 1));
    let m = Client::new().encrypt_blocking(&cmm, b"x", &ec(&[("tenant", "a")])).unwrap();
    let err = Client::new().decrypt_blocking(&cmm, &m, Some(&ec(&[("tenant", "b")]))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EncryptionContextMismatch);
    assert!(err.to_string().contains("tenant"));
    // A key that was never authenticated joins the context the raw AES keyring binds into its
    // wrapping (`raw-aes-keyring.md`: the serialized context is the AAD), so the unwrap fails
    // before the header tag is checked.
    let err = Client::new().decrypt_blocking(&cmm, &m, Some(&ec(&[("tenant", "a"), ("extra", "1")]))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoDecryptableDataKey, "{err}");
}

#[test]
fn required_context_is_authenticated_but_not_stored() {
    let inner: Arc<dyn MaterialsManager> = Arc::new(DefaultCmm::from_arc(aes("k", 1)));
    let cmm = RequiredEncryptionContextCmm::new(inner, ["secret-ish"]).unwrap();
    let client = Client::new();
    let full = ec(&[("secret-ish", "v"), ("public", "p")]);
    let m = client.encrypt_blocking(&cmm, b"payload", &full).unwrap();
    let (header, _) = esdk::MessageHeader::parse(&m, &esdk::HeaderLimits::default()).unwrap();
    assert!(header.encryption_context().get("secret-ish").is_none());
    assert_eq!(header.encryption_context().get("public"), Some("p"));

    let out = client.decrypt_blocking(&cmm, &m, Some(&ec(&[("secret-ish", "v")]))).unwrap();
    assert_eq!(out.plaintext.to_vec(), b"payload");
    assert_eq!(out.encryption_context.get("secret-ish"), Some("v"));
    // Missing: refused by the CMM. Wrong value: the raw AES unwrap (its AAD is the full context)
    // fails before the header tag is checked.
    assert_eq!(client.decrypt_blocking(&cmm, &m, None).unwrap_err().kind(), ErrorKind::EncryptionContextMismatch);
    let err = client.decrypt_blocking(&cmm, &m, Some(&ec(&[("secret-ish", "w")]))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoDecryptableDataKey, "{err}");
    // Encrypting without the required key is refused.
    let err = client.encrypt_blocking(&cmm, b"x", &ec(&[("public", "p")])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidEncryptionContext);
}

/// RUSTSEC-2023-0071 (Marvin): the `rsa` crate's decryption leaks timing and has no fixed
/// release, so a RustCrypto keyring takes a private key only through the `danger` opt-in.
#[cfg(feature = "rustcrypto")]
#[test]
fn rustcrypto_rsa_decryption_needs_the_danger_opt_in() {
    use esdk::Backend;
    let ring = || RawRsaKeyring::with_backend("rsa", "k", RsaPadding::OaepSha256, Backend::RustCrypto).unwrap();
    let err = ring().with_private_key_pem(RSA_PRIVATE).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(err.to_string().contains("RUSTSEC-2023-0071") && err.to_string().contains("aws-lc-rs"), "{err}");
    assert!(ring().with_public_key_pem(RSA_PUBLIC).is_ok(), "encryption (public key) is not affected");
    assert!(ring().danger_rustcrypto_rsa_decryption().with_private_key_pem(RSA_PRIVATE).is_ok());
}

#[test]
fn rsa_public_only_encrypts_private_only_decrypts() {
    let public =
        RawRsaKeyring::new("rsa", "k", RsaPadding::OaepSha256).unwrap().with_public_key_pem(RSA_PUBLIC).unwrap();
    let private =
        RawRsaKeyring::new("rsa", "k", RsaPadding::OaepSha256).unwrap().with_private_key_pem(RSA_PRIVATE).unwrap();
    let enc = DefaultCmm::new(public);
    let dec = DefaultCmm::new(private);
    let m = Client::new().encrypt_blocking(&enc, b"rsa", &EncryptionContext::new()).unwrap();
    assert_eq!(Client::new().decrypt_blocking(&dec, &m, None).unwrap().plaintext.to_vec(), b"rsa");
    let err = Client::new().decrypt_blocking(&enc, &m, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoDecryptableDataKey);
    assert!(err.to_string().contains("only a public key"), "{err}");
    assert!(Client::new().encrypt_blocking(&dec, b"x", &EncryptionContext::new()).is_err());
    // Wrong padding on decrypt is a failed unwrap, not a panic.
    let wrong = RawRsaKeyring::new("rsa", "k", RsaPadding::Pkcs1).unwrap().with_private_key_pem(RSA_PRIVATE).unwrap();
    assert_eq!(
        Client::new().decrypt_blocking(&DefaultCmm::new(wrong), &m, None).unwrap_err().kind(),
        ErrorKind::NoDecryptableDataKey
    );
}

#[test]
fn multi_keyring_wraps_under_all_and_unwraps_with_any() {
    let multi = MultiKeyring::new(Some(aes("a", 1)), vec![aes("b", 2), aes("c", 3)]).unwrap();
    let m = Client::new().encrypt_blocking(&DefaultCmm::new(multi), b"m", &EncryptionContext::new()).unwrap();
    let (header, _) = esdk::MessageHeader::parse(&m, &esdk::HeaderLimits::default()).unwrap();
    assert_eq!(header.encrypted_data_keys().len(), 3);
    for (name, byte) in [("a", 1), ("b", 2), ("c", 3)] {
        let out = Client::new().decrypt_blocking(&DefaultCmm::from_arc(aes(name, byte)), &m, None).unwrap();
        assert_eq!(out.plaintext.to_vec(), b"m");
    }
    // A multi-keyring whose members all fail reports every attempt.
    let none = MultiKeyring::new(None, vec![aes("x", 9), aes("y", 9)]).unwrap();
    let err = Client::new().decrypt_blocking(&DefaultCmm::new(none), &m, None).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("ns/x") && text.contains("ns/y") && text.contains("3 EDK(s) present"), "{text}");
    // max_encrypted_data_keys applies to encrypt and decrypt.
    let strict = Client::builder().max_encrypted_data_keys(2).build().unwrap();
    let err = strict.decrypt_blocking(&DefaultCmm::from_arc(aes("a", 1)), &m, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooManyEncryptedDataKeys);
    assert!(MultiKeyring::new(None, vec![]).is_err());
}

/// Raw RSA: every way an EDK can fail to unwrap (the wrong padding mode, a corrupted ciphertext,
/// a ciphertext that decrypts to garbage) gives the same error, word for word, so no padding
/// oracle reaches callers, logs or the CLI.
#[test]
fn raw_rsa_unwrap_failures_are_indistinguishable() {
    let public =
        RawRsaKeyring::new("rsa", "k", RsaPadding::OaepSha256).unwrap().with_public_key_pem(RSA_PUBLIC).unwrap();
    let message = Client::new().encrypt_blocking(&DefaultCmm::new(public), b"rsa", &EncryptionContext::new()).unwrap();
    let (header, _) = esdk::MessageHeader::parse(&message, &Default::default()).unwrap();
    let edk = header.encrypted_data_keys()[0].ciphertext.clone();
    let at = message.windows(edk.len()).position(|w| w == edk.as_slice()).unwrap();
    let with_edk = |bytes: &[u8]| {
        let mut m = message.clone();
        m[at..at + bytes.len()].copy_from_slice(bytes);
        m
    };
    let mut corrupted = edk.clone();
    corrupted[edk.len() / 2] ^= 0x01;
    let private = |padding| {
        DefaultCmm::new(RawRsaKeyring::new("rsa", "k", padding).unwrap().with_private_key_pem(RSA_PRIVATE).unwrap())
    };
    let errors: Vec<String> = [
        (RsaPadding::OaepSha1, message.clone()),
        (RsaPadding::Pkcs1, message.clone()),
        (RsaPadding::OaepSha256, with_edk(&corrupted)),
        (RsaPadding::OaepSha256, with_edk(&vec![0u8; edk.len()])),
    ]
    .into_iter()
    .map(|(padding, m)| {
        let err = Client::new().decrypt_blocking(&private(padding), &m, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NoDecryptableDataKey, "{err}");
        // The keyring's own description names its padding; what failed must not differ.
        let text = err.to_string();
        text[text.rfind(": failed:").expect("the EDK's failure")..].to_owned()
    })
    .collect();
    assert!(errors.windows(2).all(|w| w[0] == w[1]), "{errors:#?}");
    assert!(!errors[0].contains("padding") && !errors[0].contains("bytes"), "{}", errors[0]);
}

/// client-apis/encrypt.md: the frame bound is checked before materials are requested, so a
/// message that cannot be written costs no KMS call. 2^32 bytes in 1-byte frames would need
/// 2^32 frames, one more than message-body.md allows ("The number of frames in a single message
/// MUST be less than or equal to `2^32 - 1`."); the buffer is zero pages the check never reads.
#[test]
fn a_message_with_too_many_frames_is_refused_before_any_keyring_call() {
    let counting = esdk_testkit::counting::CountingKeyring::new(aes("k", 1));
    let cmm = DefaultCmm::from_arc(counting.clone());
    let client = Client::builder().frame_length(1).build().unwrap();
    let plaintext = vec![0u8; 1 << 32];
    let err = client.encrypt_blocking(&cmm, &plaintext, &EncryptionContext::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err}");
    assert_eq!(counting.encrypts(), 0, "the keyring was asked for materials");
}
