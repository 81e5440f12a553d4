//! Data key wrapping under an ECDH shared secret, shared by the raw and AWS KMS ECDH keyrings
//! (spec `framework/raw-ecdh-keyring.md`, "Key Provider Information", "Ciphertext", "Data Key
//! Wrapping"; `framework/key-agreement-schemas.md`, "Key Derivation").
//!
//! * Provider info: `version (0x01) ‖ u32 len ‖ recipient key ‖ u32 len ‖ sender key`, both
//!   keys SEC1 compressed.
//! * Fixed info: `"ecdh-key-derivation" 0 curve 0 "HMAC_SHA384" 0 sender ‖ recipient 0 version 0
//!   serialized context` (the official library's order and spelling).
//! * Keying material: 64 bytes of NIST SP 800-108 counter-mode HMAC-SHA-384 over the shared
//!   secret, with the fixed info as label and a random 32-byte salt as context; the first half is
//!   a commitment key, the second the AES-256-GCM wrapping key.
//! * Ciphertext: `salt (32) ‖ commitment key (32) ‖ encrypted key ‖ tag (16)`, sealed with a
//!   zero IV (the key is fresh for every salt) and the fixed info as AAD.

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::EcdhCurve;
use crate::crypto::{self, Backend};
use crate::error::{EdkFailure, Result};

/// Provider id of the raw ECDH keyring's EDKs.
pub const RAW_ECDH_PROVIDER_ID: &str = "raw-ecdh";
/// Provider id of the AWS KMS ECDH keyring's EDKs.
pub const KMS_ECDH_PROVIDER_ID: &str = "aws-kms-ecdh";

/// The keyring version in the provider info and the fixed info.
const VERSION: u8 = 0x01;
const SALT_LEN: usize = 32;
const COMMITMENT_LEN: usize = 32;
const TAG_LEN: usize = 16;
const KDF_LABEL: &[u8] = b"ecdh-key-derivation";
const KDF_PRF: &[u8] = b"HMAC_SHA384";
/// Bits of keying material derived, as the KDF's big-endian `L`.
const KDF_OUTPUT_BITS: [u8; 4] = 512u32.to_be_bytes();

/// The two public keys an EDK names, SEC1 compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EdkKeys<'a> {
    pub(crate) sender: &'a [u8],
    pub(crate) recipient: &'a [u8],
}

/// Serializes the provider info (recipient first, as the spec's table orders it).
pub(crate) fn provider_info(keys: EdkKeys<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 4 + keys.recipient.len() + 4 + keys.sender.len());
    out.push(VERSION);
    out.extend_from_slice(&(keys.recipient.len() as u32).to_be_bytes());
    out.extend_from_slice(keys.recipient);
    out.extend_from_slice(&(keys.sender.len() as u32).to_be_bytes());
    out.extend_from_slice(keys.sender);
    out
}

/// Parses provider info of `curve`. Strict: the version, both length fields and the total length
/// must be what this curve's keys make.
pub(crate) fn parse_provider_info(curve: EcdhCurve, info: &[u8]) -> std::result::Result<EdkKeys<'_>, &'static str> {
    let n = curve.compressed_len();
    if info.len() != 1 + 2 * (4 + n) {
        return Err(match info.len() {
            75 | 107 | 143 => "the EDK's keys are of another curve",
            _ => "not the length of an ECDH provider info",
        });
    }
    if info[0] != VERSION {
        return Err("unknown ECDH keyring version");
    }
    let len_ok = |at: usize| info[at..at + 4] == (n as u32).to_be_bytes();
    if !len_ok(1) || !len_ok(5 + n) {
        return Err("a public key length field is not the curve's compressed point length");
    }
    Ok(EdkKeys { recipient: &info[5..5 + n], sender: &info[5 + n + 4..] })
}

/// The KDF's fixed info (also the AES-GCM AAD).
pub(crate) fn fixed_info(curve: EcdhCurve, keys: EdkKeys<'_>, context: &[u8]) -> Vec<u8> {
    let parts: [&[u8]; 12] = [
        KDF_LABEL,
        &[0],
        curve.kdf_name(),
        &[0],
        KDF_PRF,
        &[0],
        keys.sender,
        keys.recipient,
        &[0],
        &[VERSION],
        &[0],
        context,
    ];
    parts.concat()
}

/// The 64 bytes of keying material for one salt.
fn derive(backend: Backend, secret: &[u8], fixed_info: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 64]>> {
    let provider = backend.provider();
    let mut out = Zeroizing::new([0u8; 64]);
    for (i, chunk) in out.chunks_mut(48).enumerate() {
        let counter = (i as u32 + 1).to_be_bytes();
        let block = provider.hmac_sha384(secret, &[&counter, fixed_info, &[0], salt, &KDF_OUTPUT_BITS])?;
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
    Ok(out)
}

/// Wraps `data_key`: the EDK ciphertext.
pub(crate) fn wrap(backend: Backend, secret: &[u8], fixed_info: &[u8], data_key: &[u8]) -> Result<Vec<u8>> {
    let mut salt = [0u8; SALT_LEN];
    crypto::fill_random(&mut salt)?;
    let keying = derive(backend, secret, fixed_info, &salt)?;
    let (commitment, wrapping_key) = keying.split_at(COMMITMENT_LEN);
    let aead = backend.provider().aes_gcm(wrapping_key)?;
    let mut sealing = Zeroizing::new(Vec::with_capacity(data_key.len() + TAG_LEN));
    sealing.extend_from_slice(data_key);
    let tag = aead.seal_in_place(&[0u8; 12], fixed_info, &mut sealing)?;
    let mut out = Vec::with_capacity(SALT_LEN + COMMITMENT_LEN + data_key.len() + TAG_LEN);
    out.extend_from_slice(&salt);
    out.extend_from_slice(commitment);
    out.extend_from_slice(&sealing);
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Unwraps an EDK ciphertext holding a `key_len`-byte data key. The commitment key is compared
/// in constant time before anything is decrypted.
pub(crate) fn unwrap(
    backend: Backend,
    secret: &[u8],
    fixed_info: &[u8],
    ciphertext: &[u8],
    key_len: usize,
) -> std::result::Result<Zeroizing<Vec<u8>>, EdkFailure> {
    let overhead = SALT_LEN + COMMITMENT_LEN + TAG_LEN;
    if ciphertext.len() != overhead + key_len {
        return Err(EdkFailure::DataKeyLength { found: ciphertext.len().saturating_sub(overhead), expected: key_len });
    }
    let (salt, rest) = ciphertext.split_at(SALT_LEN);
    let (commitment, rest) = rest.split_at(COMMITMENT_LEN);
    let (encrypted, tag) = rest.split_at(key_len);
    let keying = derive(backend, secret, fixed_info, salt).map_err(|_| EdkFailure::Unwrap)?;
    let (expected, wrapping_key) = keying.split_at(COMMITMENT_LEN);
    if !bool::from(expected.ct_eq(commitment)) {
        return Err(EdkFailure::Unwrap);
    }
    let aead = backend.provider().aes_gcm(wrapping_key).map_err(|_| EdkFailure::Unwrap)?;
    let mut plain = Zeroizing::new(encrypted.to_vec());
    aead.open_in_place(&[0u8; 12], fixed_info, &mut plain, tag).map_err(|_| EdkFailure::Unwrap)?;
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_info_round_trips_and_is_strict() {
        for curve in EcdhCurve::ALL {
            let n = curve.compressed_len();
            let sender = vec![2u8; n];
            let recipient = vec![3u8; n];
            let keys = EdkKeys { sender: &sender, recipient: &recipient };
            let info = provider_info(keys);
            assert_eq!(info.len(), [75, 107, 143][EcdhCurve::ALL.iter().position(|c| *c == curve).unwrap()]);
            assert_eq!(parse_provider_info(curve, &info).unwrap(), keys);
            let mut bad = info.clone();
            bad[0] = 2;
            assert!(parse_provider_info(curve, &bad).is_err());
            let mut bad = info.clone();
            bad[4] ^= 1;
            assert!(parse_provider_info(curve, &bad).is_err());
            assert!(parse_provider_info(curve, &info[..info.len() - 1]).is_err());
        }
        let p256 = provider_info(EdkKeys { sender: &[2; 33], recipient: &[2; 33] });
        assert_eq!(parse_provider_info(EcdhCurve::P384, &p256), Err("the EDK's keys are of another curve"));
    }

    /// The KDF against an independent reading of SP 800-108 (HMAC-SHA-384 from the `hmac`
    /// construction over SHA-384, counters 1 and 2), on every backend.
    #[test]
    fn derivation_matches_the_counter_mode_construction() {
        fn hmac384(key: &[u8], msg: &[u8]) -> Vec<u8> {
            let h = |data: &[u8]| {
                let mut hasher = Backend::default().provider().hasher(crate::suite::HashAlg::Sha384);
                hasher.update(data);
                hasher.finish()
            };
            let mut k = [0u8; 128];
            k[..key.len()].copy_from_slice(key);
            let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).chain(msg.iter().copied()).collect();
            let inner = h(&ipad);
            let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).chain(inner).collect();
            h(&opad)
        }
        let secret = [7u8; 48];
        let fixed = fixed_info(EcdhCurve::P384, EdkKeys { sender: &[2; 49], recipient: &[3; 49] }, b"ctx");
        let salt = [9u8; 32];
        let mut expected = Vec::new();
        for i in 1u32..=2 {
            let msg = [&i.to_be_bytes()[..], &fixed, &[0], &salt, &[0, 0, 2, 0]].concat();
            expected.extend(hmac384(&secret, &msg));
        }
        for backend in Backend::all() {
            assert_eq!(&derive(*backend, &secret, &fixed, &salt).unwrap()[..], &expected[..64], "{backend:?}");
        }
    }

    #[test]
    fn fixed_info_has_the_official_layout() {
        let fixed = fixed_info(EcdhCurve::P256, EdkKeys { sender: b"S", recipient: b"R" }, b"EC");
        assert_eq!(fixed, b"ecdh-key-derivation\0p256\0HMAC_SHA384\0SR\0\x01\0EC");
    }

    #[test]
    fn wrap_round_trips_and_any_changed_byte_fails() {
        for backend in Backend::all() {
            let secret = [5u8; 32];
            let fixed = b"fixed".to_vec();
            let ct = wrap(*backend, &secret, &fixed, &[1u8; 32]).unwrap();
            assert_eq!(ct.len(), 32 + 32 + 32 + 16);
            assert_eq!(&unwrap(*backend, &secret, &fixed, &ct, 32).unwrap()[..], &[1u8; 32]);
            for i in [0, 40, 70, ct.len() - 1] {
                let mut bad = ct.clone();
                bad[i] ^= 1;
                assert!(matches!(unwrap(*backend, &secret, &fixed, &bad, 32), Err(EdkFailure::Unwrap)));
            }
            assert!(matches!(unwrap(*backend, &secret, b"other", &ct, 32), Err(EdkFailure::Unwrap)));
            assert!(matches!(
                unwrap(*backend, &secret, &fixed, &ct, 16),
                Err(EdkFailure::DataKeyLength { found: 32, expected: 16 })
            ));
        }
    }
}
