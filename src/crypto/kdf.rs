//! Key derivation and key commitment (spec `framework/algorithm-suites.md`,
//! `framework/transitive-requirements.md` "HKDF Encryption Key" / "HKDF Commit Key").

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{AeadKey, Provider};
use crate::error::{Error, Result};
use crate::suite::{AlgorithmSuite, HashAlg, Kdf};

const DERIVE_KEY_LABEL: &[u8] = b"DERIVEKEY";
const COMMIT_KEY_LABEL: &[u8] = b"COMMITKEY";

/// The per-message AES-GCM key and, for committing suites, the commitment value.
pub(crate) struct MessageKeys {
    pub(crate) aead: Box<dyn AeadKey>,
    pub(crate) commitment: Option<Zeroizing<[u8; 32]>>,
}

/// Derives the message keys from the plaintext data key with one HKDF extract.
pub(crate) fn derive(
    provider: &dyn Provider,
    suite: AlgorithmSuite,
    data_key: &[u8],
    message_id: &[u8],
) -> Result<MessageKeys> {
    if data_key.len() != suite.data_key_len() {
        return Err(Error::InvalidMaterials(format!(
            "data key is {} bytes, suite {suite} needs {}",
            data_key.len(),
            suite.data_key_len()
        )));
    }
    let suite_id = suite.id_bytes();
    let mut enc_key = Zeroizing::new([0u8; 32]);
    let enc_key = &mut enc_key[..suite.data_key_len()];
    match suite.kdf() {
        Kdf::Identity => Ok(MessageKeys { aead: provider.aes_gcm(data_key)?, commitment: None }),
        Kdf::HkdfSha256 | Kdf::HkdfSha384 => {
            let hash = if suite.kdf() == Kdf::HkdfSha256 { HashAlg::Sha256 } else { HashAlg::Sha384 };
            let info: [&[u8]; 2] = [&suite_id, message_id];
            provider.hkdf(hash, &[], data_key, &mut [(&info, enc_key)])?;
            Ok(MessageKeys { aead: provider.aes_gcm(enc_key)?, commitment: None })
        }
        Kdf::HkdfSha512Committing => {
            let mut commit = Zeroizing::new([0u8; 32]);
            let enc_info: [&[u8]; 2] = [&suite_id, DERIVE_KEY_LABEL];
            let commit_info: [&[u8]; 1] = [COMMIT_KEY_LABEL];
            provider.hkdf(
                HashAlg::Sha512,
                message_id,
                data_key,
                &mut [(&enc_info, &mut enc_key[..]), (&commit_info, &mut commit[..])],
            )?;
            Ok(MessageKeys { aead: provider.aes_gcm(enc_key)?, commitment: Some(commit) })
        }
    }
}

/// Constant-time comparison of the derived commitment with the header's suite data
/// (`client-apis/decrypt.md`, "Verify the header").
pub(crate) fn check_commitment(derived: &[u8; 32], stored: &[u8]) -> Result<()> {
    if stored.len() == derived.len() && bool::from(derived.ct_eq(stored)) {
        Ok(())
    } else {
        Err(Error::CommitmentMismatch)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;
    use crate::crypto::Backend;

    fn b64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    /// Commitment KAT #1 of "AWS Encryption SDK - Message Format V2 Test Vectors" (2020-09-18).
    #[test]
    fn committing_kdf_matches_published_kat() {
        let message_id = b64("TfvRMU2dVZJbgXIyxeNtbj5eIw8BiTDiwsHyQ/Z9wXk=");
        let data_key = b64("+p6+whPVw9kOrYLZFMRBJ2n6Vli6T/7TkjDouS+25s0=");
        let commit = b64("F88I9zPbUQSfOlzLXv+uIY2+m/E6j2PMsbgeHVH/L0w=");
        let derived = b64("V67301yMJtk0jxOc3QJeBac6uKxO3XylWtkKTYmUU+M=");
        for &backend in Backend::all() {
            let p = backend.provider();
            let keys = derive(p, AlgorithmSuite::Aes256GcmHkdfSha512CommitKey, &data_key, &message_id).unwrap();
            assert_eq!(&keys.commitment.as_ref().unwrap()[..], &commit[..], "{}", backend.name());
            check_commitment(keys.commitment.as_ref().unwrap(), &commit).unwrap();
            // The derived key is opaque; compare it through a GCM tag under the published key.
            let reference = p.aes_gcm(&derived).unwrap();
            let iv = [9u8; 12];
            assert_eq!(
                keys.aead.seal_in_place(&iv, b"aad", &mut []).unwrap(),
                reference.seal_in_place(&iv, b"aad", &mut []).unwrap()
            );
            let mut wrong = commit.clone();
            wrong[31] ^= 1;
            assert!(matches!(
                check_commitment(keys.commitment.as_ref().unwrap(), &wrong),
                Err(Error::CommitmentMismatch)
            ));
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        ::hex::decode(s).unwrap()
    }

    /// RFC 5869 appendix A, test cases 1 and 3 (HKDF-SHA256, 42 bytes: two expansion blocks; case 3
    /// with empty salt and info), on every backend, and one extract shared by two outputs.
    #[test]
    fn provider_hkdf_matches_rfc5869() {
        let ikm = [0x0bu8; 22];
        let cases = [
            (
                hex("000102030405060708090a0b0c"),
                hex("f0f1f2f3f4f5f6f7f8f9"),
                "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
            ),
            (
                Vec::new(),
                Vec::new(),
                "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
            ),
        ];
        for &backend in Backend::all() {
            for (salt, info, okm) in &cases {
                let (mut a, mut b) = ([0u8; 42], [0u8; 42]);
                let (head, tail): (&[u8], &[u8]) = info.split_at(info.len() / 2);
                let split: [&[u8]; 2] = [head, tail];
                let whole: [&[u8]; 1] = [info];
                backend
                    .provider()
                    .hkdf(HashAlg::Sha256, salt, &ikm, &mut [(&whole, &mut a), (&split, &mut b)])
                    .unwrap();
                assert_eq!(a.to_vec(), hex(okm), "{}", backend.name());
                assert_eq!(a, b, "{}", backend.name());
            }
        }
    }

    #[test]
    fn data_key_length_is_checked() {
        let p = Backend::default().provider();
        assert!(derive(p, AlgorithmSuite::Aes256GcmHkdfSha512CommitKey, &[0; 16], &[0; 32]).is_err());
        assert!(derive(p, AlgorithmSuite::Aes128GcmIv12Tag16NoKdf, &[0; 16], &[0; 16]).is_ok());
    }
}
