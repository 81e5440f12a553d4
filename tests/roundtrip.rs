//! Property tests: every plaintext / context / frame length / suite / keyring combination
//! decrypts to itself on every backend, and any single-bit flip anywhere in a message is refused.

use std::sync::Arc;

use esdk::{
    AlgorithmSuite, Backend, Client, CommitmentPolicy, DefaultCmm, EncryptionContext, Keyring, MultiKeyring,
    RawAesKeyring, RawRsaKeyring, RsaPadding,
};
use proptest::prelude::*;

const RSA_PRIVATE: &str = include_str!("data/rsa-2048-private.pem");
const RSA_PUBLIC: &str = include_str!("data/rsa-2048-public.pem");
const PADDINGS: [RsaPadding; 5] =
    [RsaPadding::Pkcs1, RsaPadding::OaepSha1, RsaPadding::OaepSha256, RsaPadding::OaepSha384, RsaPadding::OaepSha512];

#[derive(Clone, Debug)]
enum KeyringSpec {
    Aes(usize),
    Rsa(RsaPadding),
    /// AES generator plus an RSA child.
    Multi(usize, RsaPadding),
}

fn aes(len: usize, backend: Backend) -> RawAesKeyring {
    let key: Vec<u8> = (0..len as u8).collect();
    RawAesKeyring::with_backend("test-ns", &format!("aes-{}", len * 8), &key, backend).unwrap()
}

fn rsa(padding: RsaPadding, backend: Backend) -> RawRsaKeyring {
    RawRsaKeyring::with_backend("test-rsa", "rsa-2048", padding, backend)
        .unwrap()
        .danger_rustcrypto_rsa_decryption()
        .with_public_key_pem(RSA_PUBLIC)
        .unwrap()
        .with_private_key_pem(RSA_PRIVATE)
        .unwrap()
}

fn build(spec: &KeyringSpec, backend: Backend) -> Arc<dyn Keyring> {
    match *spec {
        KeyringSpec::Aes(len) => Arc::new(aes(len, backend)),
        KeyringSpec::Rsa(p) => Arc::new(rsa(p, backend)),
        KeyringSpec::Multi(len, p) => {
            Arc::new(MultiKeyring::new(Some(Arc::new(aes(len, backend))), vec![Arc::new(rsa(p, backend))]).unwrap())
        }
    }
}

fn keyring_spec() -> impl Strategy<Value = KeyringSpec> {
    let padding = proptest::sample::select(PADDINGS.to_vec());
    let aes_len = proptest::sample::select(vec![16usize, 24, 32]);
    prop_oneof![
        4 => aes_len.clone().prop_map(KeyringSpec::Aes),
        1 => padding.clone().prop_map(KeyringSpec::Rsa),
        1 => (aes_len, padding).prop_map(|(l, p)| KeyringSpec::Multi(l, p)),
    ]
}

fn suite() -> impl Strategy<Value = AlgorithmSuite> {
    proptest::sample::select(AlgorithmSuite::ALL.to_vec())
}

fn context() -> impl Strategy<Value = EncryptionContext> {
    proptest::collection::btree_map("[a-zA-Z0-9\u{e9}\u{FF21}\u{1D11E}]{1,12}", ".{0,16}", 0..4)
        .prop_map(|m| m.into_iter().filter(|(k, _)| !k.starts_with("aws-crypto-")).collect())
}

fn client_for(suite: AlgorithmSuite, frame_length: u32, backend: Backend) -> Client {
    let policy = if suite.is_committing() {
        CommitmentPolicy::RequireEncryptRequireDecrypt
    } else {
        CommitmentPolicy::ForbidEncryptAllowDecrypt
    };
    Client::builder()
        .commitment_policy(policy)
        .suite(suite)
        .frame_length(frame_length)
        .backend(backend)
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn round_trips(
        plaintext in proptest::collection::vec(any::<u8>(), 0..2500),
        frame_length in prop_oneof![1u32..40, 40u32..600, Just(4096u32)],
        suite in suite(),
        ec in context(),
        spec in keyring_spec(),
    ) {
        for &backend in Backend::all() {
            let cmm = DefaultCmm::from_arc(build(&spec, backend)).with_backend(backend);
            let client = client_for(suite, frame_length, backend);
            let message = client.encrypt_blocking(&cmm, &plaintext, &ec).unwrap();
            prop_assert_eq!(message.len() as u64, predicted_len(&client, &message, plaintext.len()), "exact size prediction");
            // Decrypt on every backend, with and without the expected context.
            for &other in Backend::all() {
                let dec_cmm = DefaultCmm::from_arc(build(&spec, other)).with_backend(other);
                let dec_client = client_for(suite, frame_length, other);
                let out = dec_client.decrypt_blocking(&dec_cmm, &message, Some(&ec)).unwrap();
                prop_assert_eq!(&out.plaintext.to_vec(), &plaintext);
                prop_assert_eq!(out.header.suite(), suite);
                for (k, v) in ec.iter() {
                    prop_assert_eq!(out.encryption_context.get(k), Some(v));
                }
                let out = dec_client.decrypt_blocking(&dec_cmm, &message, None).unwrap();
                prop_assert_eq!(&out.plaintext.to_vec(), &plaintext);
            }
        }
    }

    #[test]
    fn max_plaintext_len_inverts_ciphertext_len(
        frame_length in prop_oneof![1u32..64, Just(4096u32), Just(1 << 20)],
        suite in suite(),
        budget in 200u64..3_000_000,
    ) {
        let client = client_for(suite, frame_length, Backend::default());
        let cmm = DefaultCmm::new(aes(32, Backend::default()));
        let message = client.encrypt_blocking(&cmm, b"", &EncryptionContext::new()).unwrap();
        let (header, _) = esdk::MessageHeader::parse(&message, &esdk::HeaderLimits::default()).unwrap();
        match client.max_plaintext_len(&header, budget) {
            None => prop_assert!(client.ciphertext_len(&header, 0) > budget),
            Some(n) => {
                prop_assert!(client.ciphertext_len(&header, n) <= budget);
                prop_assert!(client.ciphertext_len(&header, n + 1) > budget);
            }
        }
    }

    #[test]
    fn any_bit_flip_is_rejected(
        plaintext in proptest::collection::vec(any::<u8>(), 0..300),
        frame_length in 1u32..128,
        suite in suite(),
        ec in context(),
        spec in keyring_spec(),
        flips in proptest::collection::vec(any::<prop::sample::Index>(), 16),
    ) {
        let backend = Backend::default();
        let cmm = DefaultCmm::from_arc(build(&spec, backend)).with_backend(backend);
        let client = client_for(suite, frame_length, backend);
        let message = client.encrypt_blocking(&cmm, &plaintext, &ec).unwrap();
        for flip in flips {
            let bit = flip.index(message.len() * 8);
            let mut tampered = message.clone();
            tampered[bit / 8] ^= 1 << (bit % 8);
            let res = client.decrypt_blocking(&cmm, &tampered, None);
            prop_assert!(res.is_err(), "flipping bit {} of {} was accepted", bit, message.len() * 8);
        }
    }
}

/// The client's size prediction for the message's header and plaintext length.
fn predicted_len(client: &Client, message: &[u8], plaintext_len: usize) -> u64 {
    let (header, _) = esdk::MessageHeader::parse(message, &esdk::HeaderLimits::default()).unwrap();
    client.ciphertext_len(&header, plaintext_len as u64)
}

#[test]
fn every_single_bit_flip_of_small_messages_is_rejected() {
    // Exhaustive over all bit positions, one message per encrypt suite.
    let backend = Backend::default();
    for suite in [
        AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
        AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384,
        AlgorithmSuite::Aes128GcmIv12Tag16HkdfSha256EcdsaP256,
        AlgorithmSuite::Aes192GcmIv12Tag16NoKdf,
    ] {
        let cmm = DefaultCmm::new(aes(32, backend));
        let client = client_for(suite, 7, backend);
        let ec: EncryptionContext = [("tenant", "a")].into_iter().collect();
        let message = client.encrypt_blocking(&cmm, b"sixteen bytes!!!", &ec).unwrap();
        for bit in 0..message.len() * 8 {
            let mut tampered = message.clone();
            tampered[bit / 8] ^= 1 << (bit % 8);
            assert!(client.decrypt_blocking(&cmm, &tampered, None).is_err(), "suite {suite}: bit {bit} flip accepted");
        }
    }
}

/// The header authentication fields a writer reports are the ones on the wire (what the CLI's
/// `header_auth` metadata records), for v1 and v2 messages.
#[test]
fn header_auth_fields_match_the_serialized_header() {
    use std::io::Write;
    let backend = Backend::default();
    for suite in [AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384, AlgorithmSuite::Aes128GcmIv12Tag16HkdfSha256] {
        let cmm = DefaultCmm::new(aes(16, backend));
        let client = client_for(suite, 64, backend);
        let mut w = client.encrypting_writer_blocking(&cmm, &EncryptionContext::new(), Vec::new()).unwrap();
        w.write_all(&[5u8; 100]).unwrap();
        let written = w.header().clone();
        let message = w.finish().unwrap();
        let (parsed, len) = esdk::MessageHeader::parse(&message, &esdk::HeaderLimits::default()).unwrap();
        assert_eq!(parsed.header_auth(), written.header_auth(), "suite {suite}");
        assert_eq!(&message[len - 16..len], written.header_auth().1, "suite {suite}: the tag ends the header");
        assert_eq!(written.header_auth().0, &[0u8; 12]);
    }
}
