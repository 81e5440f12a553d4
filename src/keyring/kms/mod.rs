//! AWS KMS keyrings (spec `framework/aws-kms/`): strict and discovery, each in a plain and a
//! multi-Region-key-aware form, plus the multi-keyring constructors.
//!
//! Decryption is allow-list first: an EDK is sent to KMS only after it passed this keyring's
//! filter (exact ARN, MRK match, or discovery filter), and the `KeyId` of every `Decrypt` call is
//! explicit. EDKs that fail the filter are reported with the reason, without any KMS call.

mod arn;
mod client;
mod discovery;
mod metered;
mod multi;
mod strict;

pub use arn::{check_mrks_unique, mrk_match, KeyIdentifier, KmsArn, ResourceType};
pub use client::{
    load_sdk_config, AwsSdkClientSupplier, AwsSdkKmsClient, ClientSupplier, DecryptOutput, EncryptOutput,
    GenerateDataKeyOutput, KmsClient, KmsError,
};
pub use discovery::{DiscoveryFilter, KmsDiscoveryKeyring, KmsMrkDiscoveryKeyring};
pub use metered::{KmsCallCounts, MeteredKmsClient};
pub use multi::{discovery_multi_keyring, mrk_discovery_multi_keyring, mrk_multi_keyring, strict_multi_keyring};
pub use strict::{KmsKeyring, KmsMrkKeyring};

use super::Attempts;
use crate::materials::{DataKey, DecryptionMaterials, EncryptedDataKey};

/// Provider id of every KMS-wrapped EDK.
pub const PROVIDER_ID: &str = "aws-kms";

/// What a KMS keyring makes of one EDK before its own filter.
enum Candidate {
    /// An `aws-kms` EDK with a valid key ARN.
    Arn(KmsArn),
    /// Not a KMS EDK (recorded as skipped).
    Skip,
    /// An `aws-kms` EDK whose provider info is not a key ARN: the spec makes OnDecrypt fail.
    Malformed,
}

fn candidate(index: usize, edk: &EncryptedDataKey, attempts: &mut Attempts) -> Candidate {
    if edk.provider_id != PROVIDER_ID {
        attempts.record(index, edk, "skipped: not a KMS data key (provider id is not aws-kms)", false);
        return Candidate::Skip;
    }
    let parsed = std::str::from_utf8(&edk.provider_info)
        .map_err(|_| "it is not UTF-8".to_owned())
        .and_then(|info| KmsArn::parse_key_arn(info).map_err(|e| e.to_string()));
    match parsed {
        Ok(arn) => Candidate::Arn(arn),
        Err(why) => {
            attempts.record(index, edk, format!("failed: malformed aws-kms provider info: {why}"), false);
            Candidate::Malformed
        }
    }
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
    tracing::debug!(key_id, edk = index, "calling KMS Decrypt");
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
