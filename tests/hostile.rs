//! Hostile and malformed input: every case is an error of the right kind, never a panic or an
//! allocation proportional to a length field the input does not back.

use esdk::error::{EdkOutcome, SkipReason};
use esdk::{Client, DefaultCmm, EncryptionContext, ErrorKind, HeaderLimits, MessageHeader, RawAesKeyring};
use esdk_testkit::vectors_dir;

fn cmm() -> DefaultCmm {
    DefaultCmm::new(RawAesKeyring::new("ns", "key", &[1u8; 32]).unwrap())
}

fn message(plaintext: &[u8], frame: u32) -> Vec<u8> {
    let client = Client::builder().frame_length(frame).build().unwrap();
    client.encrypt_blocking(&cmm(), plaintext, &EncryptionContext::new()).unwrap()
}

fn kind(client: &Client, input: &[u8]) -> ErrorKind {
    client.decrypt_blocking(&cmm(), input, None).unwrap_err().kind()
}

/// A v2 header prefix for suite 0x0478 with an empty context, up to the EDK count.
fn v2_prefix(edk_count: u16) -> Vec<u8> {
    let mut h = vec![0x02, 0x04, 0x78];
    h.extend_from_slice(&[0xAB; 32]);
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&edk_count.to_be_bytes());
    h
}

#[test]
fn edk_count_limit_is_enforced_before_reading_edks() {
    let client = Client::builder().max_encrypted_data_keys(3).build().unwrap();
    assert_eq!(kind(&client, &v2_prefix(65_535)), ErrorKind::TooManyEncryptedDataKeys);
    // Without a limit, a claim of 65,535 EDKs backed by nothing is a truncation.
    assert_eq!(kind(&Client::new(), &v2_prefix(65_535)), ErrorKind::Truncated);
}

#[test]
fn header_length_limit_bounds_edk_memory() {
    let mut h = v2_prefix(65_535);
    for _ in 0..200 {
        h.extend_from_slice(&[0, 2, b'n', b's', 0, 0, 0xFF, 0xFF]);
        h.extend_from_slice(&[0u8; 65_535]);
    }
    let client = Client::builder().max_header_len(1 << 20).build().unwrap();
    assert_eq!(kind(&client, &h), ErrorKind::LimitExceeded);
}

#[test]
fn encryption_context_claiming_65535_pairs_is_truncated() {
    let mut h = vec![0x02, 0x04, 0x78];
    h.extend_from_slice(&[0xAB; 32]);
    h.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]); // aad_len 65535, pair count 65535
    h.extend_from_slice(&[0u8; 100]);
    assert_eq!(kind(&Client::new(), &h), ErrorKind::Truncated);
}

#[test]
fn huge_frame_length_without_data_is_truncated() {
    let m = message(b"hello", 4096);
    let (header, len) = MessageHeader::parse(&m, &HeaderLimits::default()).unwrap();
    assert_eq!(header.frame_length(), 4096);
    // Frame length sits right before the 32-byte commitment in a v2 header; a 4 GiB frame length
    // is refused by the frame-length limit while the header is parsed, before any key is used
    // (so before header authentication could run), and never allocated.
    let mut t = m.clone();
    let at = len - 16 - 32 - 4;
    t[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    let k = kind(&Client::new(), &t);
    assert_eq!(k, ErrorKind::LimitExceeded);
}

#[test]
fn truncation_anywhere_is_an_error() {
    let m = message(&[7u8; 10_000], 1000);
    let client = Client::new();
    for cut in (0..m.len()).step_by(97).chain([m.len() - 1]) {
        let k = kind(&client, &m[..cut]);
        // A cut inside the footer leaves its length field promising bytes that never come: still
        // truncation, not a bad signature.
        assert_eq!(k, ErrorKind::Truncated, "cut at {cut}");
    }
}

#[test]
fn trailing_bytes_and_empty_input_are_refused() {
    let mut m = message(b"x", 16);
    m.push(0);
    assert_eq!(kind(&Client::new(), &m), ErrorKind::TrailingData);
    assert_eq!(kind(&Client::new(), &[]), ErrorKind::Truncated);
}

#[test]
fn base64_input_gets_a_specific_error() {
    use base64::Engine as _;
    let m = message(b"x", 16);
    let text = base64::engine::general_purpose::STANDARD.encode(&m);
    assert!(text.starts_with("AgV4"));
    let err = Client::new().decrypt_blocking(&cmm(), text.as_bytes(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Base64Input);
    assert!(err.to_string().contains("base64"));
}

#[test]
fn unknown_suites_and_versions_are_parse_errors() {
    let m = message(b"x", 16);
    for id in [0x0000u16, 0x0070, 0x6700, 0x0479, 0xFFFF] {
        let mut t = m.clone();
        t[1..3].copy_from_slice(&id.to_be_bytes());
        assert_eq!(kind(&Client::new(), &t), ErrorKind::Parse, "suite {id:04X}");
    }
    let mut t = m.clone();
    t[0] = 0x03;
    assert_eq!(kind(&Client::new(), &t), ErrorKind::Parse);
}

#[test]
fn error_messages_name_edks_and_configured_keys_without_secrets() {
    let m = message(b"secret plaintext", 16);
    let other = DefaultCmm::new(RawAesKeyring::new("other-ns", "other-key", &[2u8; 32]).unwrap());
    let err = Client::new().decrypt_blocking(&other, &m, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoDecryptableDataKey);
    let text = err.to_string();
    assert!(text.contains("ns/key"), "{text}");
    assert!(text.contains("other-ns/other-key"), "{text}");
    assert!(text.contains("skipped: provider id is not this keyring's"), "{text}");
    assert!(!text.contains("secret plaintext"));
    // The same, typed: callers match on the reason, not on the text.
    let esdk::Error::NoDecryptableDataKey(report) = err else { unreachable!() };
    assert_eq!(report.attempts.len(), 1);
    assert_eq!(report.attempts[0].outcome, EdkOutcome::Skipped(SkipReason::ProviderId));
    assert!(!report.is_retryable());
}

#[test]
fn debug_output_never_shows_key_bytes() {
    let key = [0x5Au8; 32];
    let keyring = RawAesKeyring::new("ns", "name", &key).unwrap();
    let data_key = esdk::DataKey::from_bytes(&key);
    let signing = esdk::materials::SigningKey::generate(esdk::suite::Curve::P384, esdk::Backend::default()).unwrap();
    for text in [format!("{keyring:?}"), format!("{data_key:?}"), format!("{signing:?}"), format!("{:?}", cmm())] {
        assert!(!text.contains("5a") && !text.contains("5A") && !text.contains("90, 90"), "{text}");
    }
    assert!(format!("{data_key:?}").contains("redacted"));
}

#[test]
fn reserved_context_keys_are_refused_on_encrypt() {
    let ec: EncryptionContext = [("aws-crypto-public-key", "x")].into_iter().collect();
    let err = Client::new().encrypt_blocking(&cmm(), b"x", &ec).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidEncryptionContext);
}

#[test]
fn raw_aes_keyring_refuses_the_kms_namespace_and_bad_key_sizes() {
    assert!(RawAesKeyring::new("aws-kms", "k", &[0; 32]).is_err());
    assert!(RawAesKeyring::new("aws-kms-mrk", "k", &[0; 32]).is_err());
    assert!(RawAesKeyring::new("ns", "k", &[0; 20]).is_err());
}

#[test]
fn authentic_header_with_a_4_gib_frame_length_is_refused_by_the_frame_limit() {
    // A genuine message (its header authenticates) announcing 2^32 - 1 byte frames. A client
    // that writes such frames must say it also reads them: its own decrypt limit would refuse
    // its messages otherwise.
    let err = Client::builder().frame_length(u32::MAX).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(err.to_string().contains("max_frame_length"), "{err}");
    let client = Client::builder().frame_length(u32::MAX).max_frame_length(u32::MAX).build().unwrap();
    let m = client.encrypt_blocking(&cmm(), b"small", &EncryptionContext::new()).unwrap();
    let err = Client::new().decrypt_blocking(&cmm(), &m, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err}");
    let streamed = Client::new()
        .decrypting_reader_blocking(&cmm(), &m[..], None, esdk::SignedMessages::VerifyBeforeRelease)
        .and_then(|mut r| {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut r, &mut out).map_err(esdk::Error::from)
        })
        .unwrap_err();
    assert_eq!(streamed.kind(), ErrorKind::LimitExceeded, "{streamed}");
    // Only the configured limit refused it: raised, the same bytes decrypt.
    let raised = Client::builder().max_frame_length(u32::MAX).build().unwrap();
    assert_eq!(raised.decrypt_blocking(&cmm(), &m, None).unwrap().plaintext.to_vec(), b"small");
}

#[test]
fn non_framed_body_claiming_2_pow_64_minus_1_bytes_is_refused_without_allocating() {
    let dir = vectors_dir();
    // A non-framed 0x0114 message written by the Python ESDK, under the vectors' raw AES-256 key.
    let m = std::fs::read(dir.join("ciphertexts/python-esdk-4.0.7-generated/gen-0114-legacy-aes256-f0-p1000-ec1-16"))
        .unwrap();
    let keys: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("keys.json")).unwrap()).unwrap();
    let material = keys["keys"]["aes-256"]["material"].as_str().unwrap();
    let key = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, material).unwrap();
    let cmm = DefaultCmm::new(RawAesKeyring::new("aws-raw-vectors-persistent", "aes-256", &key).unwrap());
    let client =
        Client::builder().commitment_policy(esdk::CommitmentPolicy::RequireEncryptAllowDecrypt).build().unwrap();
    let (header, header_len) = MessageHeader::parse(&m, &HeaderLimits::default()).unwrap();
    assert_eq!(header.content_type(), esdk::ContentType::NonFramed);
    assert_eq!(client.decrypt_blocking(&cmm, &m, None).unwrap().plaintext.len(), 1000, "the vector itself decrypts");

    // Body: IV (12), content length (8), content, tag (16).
    let mut t = m.clone();
    t[header_len + 12..header_len + 20].copy_from_slice(&u64::MAX.to_be_bytes());
    let err = client.decrypt_blocking(&cmm, &t, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Parse, "{err}");
    let streamed = client
        .decrypting_reader_blocking(&cmm, &t[..], None, esdk::SignedMessages::VerifyBeforeRelease)
        .and_then(|mut r| {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut r, &mut out).map_err(esdk::Error::from)
        })
        .unwrap_err();
    assert_eq!(streamed.kind(), ErrorKind::Parse, "one codec, one kind on every path: {streamed}");
}

/// message-header.md, Encrypted Data Key Count: a UInt16, and "This value MUST be greater than
/// 0.", so a valid message may carry 65,535 EDKs and the default limits must read such a header
/// (defaults must not refuse what the format allows): 65,535 EDKs shaped like raw AES ones.
#[test]
fn the_default_limits_read_a_header_with_65535_edks() {
    let mut h = v2_prefix(65_535);
    for i in 0..65_535u32 {
        let info = format!("key-{i:05}");
        h.extend_from_slice(&2u16.to_be_bytes());
        h.extend_from_slice(b"ns");
        h.extend_from_slice(&(info.len() as u16).to_be_bytes());
        h.extend_from_slice(info.as_bytes());
        h.extend_from_slice(&48u16.to_be_bytes());
        h.extend_from_slice(&[0x5a; 48]);
    }
    h.push(0x02); // content type: framed
    h.extend_from_slice(&4096u32.to_be_bytes());
    h.extend_from_slice(&[0xCD; 32]); // commitment
    h.extend_from_slice(&[0xEF; 16]); // header auth tag
    let (header, len) = MessageHeader::parse(&h, &HeaderLimits::default()).unwrap();
    assert_eq!(header.encrypted_data_keys().len(), 65_535);
    assert_eq!(len, h.len());
    // Decrypting it gets past parsing to the keyrings (none of these EDKs unwraps).
    assert_eq!(kind(&Client::new(), &h), ErrorKind::NoDecryptableDataKey);
}
