//! AWS KMS keyrings (spec `framework/aws-kms/`): strict and discovery, each in a plain and a
//! multi-Region-key-aware form, plus the multi-keyring constructors.
//!
//! Decryption is allow-list first: an EDK is sent to KMS only after it passed this keyring's
//! filter (exact ARN, MRK match, or discovery filter), and the `KeyId` of every `Decrypt` call is
//! explicit. EDKs that fail the filter are reported with the reason, without any KMS call.

mod arn;
mod client;
mod discovery;
mod multi;
mod strict;

pub use arn::{check_mrks_unique, mrk_match, KeyIdentifier, KmsArn, ResourceType};
pub use client::{
    load_sdk_config, AwsSdkClientSupplier, AwsSdkKmsClient, ClientSupplier, DecryptOutput, EncryptOutput,
    GenerateDataKeyOutput, KmsClient, KmsError,
};
pub use discovery::{DiscoveryFilter, KmsDiscoveryKeyring, KmsMrkDiscoveryKeyring};
pub use multi::{discovery_multi_keyring, mrk_discovery_multi_keyring, mrk_multi_keyring, strict_multi_keyring};
pub use strict::{KmsKeyring, KmsMrkKeyring};

use super::Attempts;
use crate::materials::{DataKey, DecryptionMaterials, EncryptedDataKey};

/// Provider id of every KMS-wrapped EDK.
pub const PROVIDER_ID: &str = "aws-kms";

/// The EDK's key ARN when its provider id is `aws-kms`; `Err` when the provider info is not a
/// key ARN, which the spec treats as a hard failure of OnDecrypt.
fn edk_key_arn(edk: &EncryptedDataKey) -> Result<Option<KmsArn>, String> {
    if edk.provider_id != PROVIDER_ID {
        return Ok(None);
    }
    let info = std::str::from_utf8(&edk.provider_info).map_err(|_| "aws-kms provider info is not UTF-8".to_owned())?;
    KmsArn::parse_key_arn(info).map(Some).map_err(|e| format!("malformed aws-kms provider info: {e}"))
}

/// Calls `Decrypt` with `key_id` and checks the response (`aws-kms-keyring.md`, "OnDecrypt"):
/// the returned KeyId must equal `key_id` and the key length must fit the suite.
async fn decrypt_edk(
    client: &dyn KmsClient,
    key_id: &str,
    index: usize,
    edk: &EncryptedDataKey,
    materials: &DecryptionMaterials,
    grant_tokens: &[String],
    attempts: &mut Attempts,
) -> Option<DataKey> {
    match client.decrypt(key_id, &edk.ciphertext, materials.encryption_context(), grant_tokens).await {
        Err(e) => {
            attempts.record(index, edk, format!("failed: {e}"), e.retryable);
            None
        }
        Ok(out) if out.key_id != key_id => {
            attempts.record(
                index,
                edk,
                format!("failed: KMS Decrypt answered for {} instead of {key_id}", out.key_id),
                false,
            );
            None
        }
        Ok(out) if out.plaintext.len() != materials.suite().data_key_len() => {
            attempts.record(
                index,
                edk,
                format!(
                    "failed: KMS returned a {}-byte key, suite {} needs {}",
                    out.plaintext.len(),
                    materials.suite(),
                    materials.suite().data_key_len()
                ),
                false,
            );
            None
        }
        Ok(out) => Some(out.plaintext),
    }
}
