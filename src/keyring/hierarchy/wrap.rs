//! Branch key wrapping (spec `framework/aws-kms/aws-kms-hierarchical-keyring.md`, "Branch Key
//! Wrapping", "Branch Key Unwrapping", "Ciphertext"): a per-EDK key derived from the branch key
//! with NIST SP 800-108 counter-mode HMAC-SHA-256, then AES-256-GCM over the data key.
//!
//! The EDK ciphertext is `salt (16) ‖ IV (12) ‖ version UUID (16) ‖ encrypted key ‖ tag (16)`;
//! the AAD is `"aws-kms-hierarchy" ‖ branch key id ‖ version UUID ‖ serialized context`.

use zeroize::Zeroizing;

use crate::crypto::{self, Backend};
use crate::error::{Error, Result};

/// Provider id of the EDKs this keyring writes (also the KDF label and the AAD's prefix).
pub const HIERARCHY_PROVIDER_ID: &str = "aws-kms-hierarchy";

const SALT_LEN: usize = 16;
const IV_LEN: usize = 12;
const VERSION_LEN: usize = 16;
const TAG_LEN: usize = 16;
/// Bytes of an EDK ciphertext besides the encrypted key.
pub(crate) const OVERHEAD: usize = SALT_LEN + IV_LEN + VERSION_LEN + TAG_LEN;

/// The 16 bytes of a branch key version: a UUID in the lowercase hyphenated form the store
/// writes (any other spelling would not be found again from the bytes on decrypt).
pub(crate) fn version_bytes(version: &str) -> Result<[u8; 16]> {
    match uuid::Uuid::try_parse(version) {
        Ok(u) if u.hyphenated().to_string() == version => Ok(*u.as_bytes()),
        _ => Err(Error::InvalidMaterials(format!(
            "branch key version {version:?} is not a lowercase hyphenated UUID, so no EDK can name it"
        ))),
    }
}

/// The 16 version bytes an EDK ciphertext carries.
pub(crate) fn edk_version(ciphertext: &[u8]) -> Option<[u8; 16]> {
    ciphertext.get(SALT_LEN + IV_LEN..SALT_LEN + IV_LEN + VERSION_LEN)?.try_into().ok()
}

/// A version's bytes as the store spells the version (lowercase hyphenated UUID).
pub(crate) fn version_string(bytes: [u8; 16]) -> String {
    uuid::Uuid::from_bytes(bytes).hyphenated().to_string()
}

/// SP 800-108 KDF in counter mode, HMAC-SHA-256, one 32-byte block: `HMAC(branch key,
/// [0,0,0,1] ‖ label ‖ 0x00 ‖ salt ‖ [0,0,1,0])` (the MPL's `KdfCounterMode`, with the label
/// `aws-kms-hierarchy`, the salt as context, and the output length in bits).
fn derive(backend: Backend, branch_key: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
    const COUNTER: [u8; 4] = 1u32.to_be_bytes();
    const LENGTH_BITS: [u8; 4] = 256u32.to_be_bytes();
    backend.provider().hmac_sha256(branch_key, &[&COUNTER, HIERARCHY_PROVIDER_ID.as_bytes(), &[0], salt, &LENGTH_BITS])
}

fn aad(branch_key_id: &str, version: &[u8; 16], serialized_context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HIERARCHY_PROVIDER_ID.len() + branch_key_id.len() + 16 + serialized_context.len());
    aad.extend_from_slice(HIERARCHY_PROVIDER_ID.as_bytes());
    aad.extend_from_slice(branch_key_id.as_bytes());
    aad.extend_from_slice(version);
    aad.extend_from_slice(serialized_context);
    aad
}

/// Wraps `data_key`: returns the EDK ciphertext.
pub(crate) fn wrap(
    backend: Backend,
    branch_key: &[u8],
    branch_key_id: &str,
    version: &[u8; 16],
    serialized_context: &[u8],
    data_key: &[u8],
) -> Result<Vec<u8>> {
    let mut salt_iv = [0u8; SALT_LEN + IV_LEN];
    crypto::fill_random(&mut salt_iv)?;
    let (salt, iv) = salt_iv.split_at(SALT_LEN);
    let derived = derive(backend, branch_key, salt)?;
    let key = backend.provider().aes_gcm(&derived[..])?;
    // The buffer holds the plaintext data key until it is sealed: wiped if sealing fails. Its
    // capacity covers the tag, so appending it leaves no stale copy behind.
    let mut out = Zeroizing::new(Vec::with_capacity(OVERHEAD + data_key.len()));
    out.extend_from_slice(&salt_iv);
    out.extend_from_slice(version);
    let start = out.len();
    out.extend_from_slice(data_key);
    let iv: &[u8; IV_LEN] = iv.try_into().map_err(|_| Error::Internal("IV length"))?;
    let tag = key.seal_in_place(iv, &aad(branch_key_id, version, serialized_context), &mut out[start..])?;
    out.extend_from_slice(&tag);
    Ok(std::mem::take(&mut *out))
}

/// Unwraps an EDK ciphertext (its length checked by the caller against the suite's key length:
/// the encrypted key is what follows the fixed fields); `None` when it does not authenticate.
pub(crate) fn unwrap(
    backend: Backend,
    branch_key: &[u8],
    branch_key_id: &str,
    serialized_context: &[u8],
    ciphertext: &[u8],
) -> Result<Option<Zeroizing<Vec<u8>>>> {
    let Some(key_len) = ciphertext.len().checked_sub(OVERHEAD) else {
        return Err(Error::Internal("EDK ciphertext shorter than the hierarchy overhead"));
    };
    let (salt, rest) = ciphertext.split_at(SALT_LEN);
    let (iv, rest) = rest.split_at(IV_LEN);
    let (version, rest) = rest.split_at(VERSION_LEN);
    let (encrypted, tag) = rest.split_at(key_len);
    let version: &[u8; 16] = version.try_into().map_err(|_| Error::Internal("version length"))?;
    let iv: &[u8; IV_LEN] = iv.try_into().map_err(|_| Error::Internal("IV length"))?;
    let derived = derive(backend, branch_key, salt)?;
    let key = backend.provider().aes_gcm(&derived[..])?;
    let mut plain = Zeroizing::new(encrypted.to_vec());
    match key.open_in_place(iv, &aad(branch_key_id, version, serialized_context), &mut plain, tag) {
        Ok(()) => Ok(Some(plain)),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERSION: &str = "83eec007-5659-4554-bf11-699b90f41ac6";

    /// The KDF as SP 800-108 writes it, computed with the hash primitive alone (HMAC from
    /// RFC 2104), so the backends' HMAC and the input layout are both checked.
    fn reference_kdf(key: &[u8; 32], salt: &[u8]) -> [u8; 32] {
        let sha = |parts: &[&[u8]]| Backend::default().sha256(parts);
        let mut ipad = [0x36u8; 64];
        let mut opad = [0x5cu8; 64];
        for i in 0..32 {
            ipad[i] ^= key[i];
            opad[i] ^= key[i];
        }
        let inner = sha(&[&ipad, &[0, 0, 0, 1], b"aws-kms-hierarchy", &[0], salt, &[0, 0, 1, 0]]);
        sha(&[&opad, &inner])
    }

    #[test]
    fn kdf_is_sp800_108_counter_mode_on_every_backend() {
        let key = [0x42u8; 32];
        let salt = [7u8; 16];
        for &backend in Backend::all() {
            assert_eq!(*derive(backend, &key, &salt).unwrap(), reference_kdf(&key, &salt), "{}", backend.name());
        }
    }

    #[test]
    fn wraps_and_unwraps_across_backends_and_refuses_changes() {
        let branch_key = [9u8; 32];
        let version = version_bytes(VERSION).unwrap();
        let data_key = [5u8; 32];
        for &a in Backend::all() {
            for &b in Backend::all() {
                let ct = wrap(a, &branch_key, "bk", &version, b"ctx", &data_key).unwrap();
                assert_eq!(ct.len(), OVERHEAD + 32);
                assert_eq!(edk_version(&ct).map(version_string).as_deref(), Some(VERSION));
                assert_eq!(unwrap(b, &branch_key, "bk", b"ctx", &ct).unwrap().unwrap().as_slice(), &data_key);
                assert!(unwrap(b, &branch_key, "other", b"ctx", &ct).unwrap().is_none());
                assert!(unwrap(b, &branch_key, "bk", b"ctX", &ct).unwrap().is_none());
                assert!(unwrap(b, &[8u8; 32], "bk", b"ctx", &ct).unwrap().is_none());
                let mut flipped = ct.clone();
                flipped[30] ^= 1; // the version
                assert!(unwrap(b, &branch_key, "bk", b"ctx", &flipped).unwrap().is_none());
            }
        }
    }

    #[test]
    fn versions_must_be_uuids() {
        assert!(version_bytes("not-a-uuid").is_err());
        assert!(version_bytes(&VERSION.to_uppercase()).is_err());
        assert!(version_bytes(&VERSION.replace('-', "")).is_err());
        assert_eq!(uuid::Uuid::from_bytes(version_bytes(VERSION).unwrap()).to_string(), VERSION);
    }
}
