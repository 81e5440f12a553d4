//! Raw AES keyring (spec `framework/raw-aes-keyring.md`).

use std::fmt;

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::{check_raw_namespace, ensure_no_data_key, Attempts, Keyring};
use crate::crypto::{self, AeadKey, Backend};
use crate::error::{EdkFailure, Error, Result, SkipReason};
use crate::materials::{DataKey, DecryptionMaterials, EncryptedDataKey, EncryptionMaterials};

const TAG_LEN_BITS: u32 = 128;
const IV_LEN: u32 = 12;
/// Bytes after the key name in the provider info: tag length, IV length, IV.
const INFO_SUFFIX_LEN: usize = 4 + 4 + IV_LEN as usize;

/// Wraps data keys with a local AES-GCM key (128, 192 or 256 bits).
pub struct RawAesKeyring {
    namespace: String,
    name: String,
    key: Box<dyn AeadKey>,
    key_bits: usize,
}

impl RawAesKeyring {
    /// A keyring for `namespace`/`name` (the EDK provider id and key name) and a 16, 24 or
    /// 32-byte wrapping key, on the default crypto backend.
    pub fn new(namespace: &str, name: &str, wrapping_key: &[u8]) -> Result<Self> {
        Self::with_backend(namespace, name, wrapping_key, Backend::default())
    }

    /// As [`Self::new`] on a chosen backend.
    pub fn with_backend(namespace: &str, name: &str, wrapping_key: &[u8], backend: Backend) -> Result<Self> {
        check_raw_namespace(namespace)?;
        if !matches!(wrapping_key.len(), 16 | 24 | 32) {
            return Err(Error::InvalidKey(format!(
                "raw AES wrapping key is {} bytes; it must be 16, 24 or 32",
                wrapping_key.len()
            )));
        }
        if name.len() > u16::MAX as usize - INFO_SUFFIX_LEN {
            return Err(Error::InvalidConfig("key name is too long for the provider info field".into()));
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            key: backend.provider().aes_gcm(wrapping_key)?,
            key_bits: wrapping_key.len() * 8,
        })
    }

    fn describe(&self) -> String {
        format!("raw AES-{} key {}/{}", self.key_bits, self.namespace, self.name)
    }

    /// Splits provider info into its IV, if it is ours (`raw-aes-keyring.md`, "OnDecrypt").
    fn parse_info<'a>(&self, info: &'a [u8]) -> std::result::Result<&'a [u8], SkipReason> {
        let Some(name_len) = info.len().checked_sub(INFO_SUFFIX_LEN) else {
            return Err(SkipReason::ProviderInfoLayout { reason: "too short" });
        };
        let (name, rest) = info.split_at(name_len);
        if name != self.name.as_bytes() {
            return Err(SkipReason::KeyName { found: String::from_utf8_lossy(name).into_owned() });
        }
        if rest[..4] != TAG_LEN_BITS.to_be_bytes() {
            return Err(SkipReason::ProviderInfoLayout { reason: "tag length is not 128 bits" });
        }
        if rest[4..8] != IV_LEN.to_be_bytes() {
            return Err(SkipReason::ProviderInfoLayout { reason: "IV length is not 12" });
        }
        Ok(&rest[8..])
    }
}

impl fmt::Debug for RawAesKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawAesKeyring")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("key_bits", &self.key_bits)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Keyring for RawAesKeyring {
    async fn on_encrypt(&self, mut materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
        let aad = materials.encryption_context().to_bytes()?;
        let mut iv = [0u8; 12];
        crypto::fill_random(&mut iv)?;
        let data_key = materials.data_key_or_generate()?.expose_secret();
        // The buffer holds the plaintext data key until it is sealed: wiped if sealing fails.
        // Its capacity covers the tag, so appending it cannot leave a stale copy behind.
        let mut sealing = Zeroizing::new(Vec::with_capacity(data_key.len() + 16));
        sealing.extend_from_slice(data_key);
        let tag = self.key.seal_in_place(&iv, &aad, &mut sealing)?;
        sealing.extend_from_slice(&tag);
        let ciphertext = std::mem::take(&mut *sealing);

        let mut info = Vec::with_capacity(self.name.len() + INFO_SUFFIX_LEN);
        info.extend_from_slice(self.name.as_bytes());
        info.extend_from_slice(&TAG_LEN_BITS.to_be_bytes());
        info.extend_from_slice(&IV_LEN.to_be_bytes());
        info.extend_from_slice(&iv);
        materials.add_encrypted_data_key(EncryptedDataKey {
            provider_id: self.namespace.clone(),
            provider_info: info,
            ciphertext,
        });
        Ok(materials)
    }

    async fn on_decrypt(
        &self,
        mut materials: DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<DecryptionMaterials> {
        ensure_no_data_key(&materials)?;
        let mut attempts = Attempts::new(self.describe(), edks);
        let aad = materials.encryption_context().to_bytes()?;
        let key_len = materials.suite().data_key_len();
        for (i, edk) in edks.iter().enumerate() {
            if edk.provider_id != self.namespace {
                attempts.skip(i, edk, SkipReason::ProviderId);
                continue;
            }
            let iv = match self.parse_info(&edk.provider_info) {
                Ok(iv) => iv,
                Err(why) => {
                    attempts.skip(i, edk, why);
                    continue;
                }
            };
            if edk.ciphertext.len() != key_len + 16 {
                attempts.fail(
                    i,
                    edk,
                    EdkFailure::DataKeyLength { found: edk.ciphertext.len().saturating_sub(16), expected: key_len },
                );
                continue;
            }
            let mut iv_arr = [0u8; 12];
            iv_arr.copy_from_slice(iv);
            let (ct, tag) = edk.ciphertext.split_at(key_len);
            let mut plain = Zeroizing::new(ct.to_vec());
            if self.key.open_in_place(&iv_arr, &aad, &mut plain, tag).is_err() {
                attempts.fail(i, edk, EdkFailure::Unwrap);
                continue;
            }
            materials.set_data_key_from_edk(DataKey::from_bytes(&plain), i)?;
            return Ok(materials);
        }
        Err(attempts.into_error())
    }
}
