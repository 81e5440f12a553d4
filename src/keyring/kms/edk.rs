//! What every KMS keyring does with one EDK: recognise an EDK of its provider id (`aws-kms`,
//! `aws-kms-rsa`) and its key ARN, filter the list, and call `Decrypt` with an explicit `KeyId`.

use super::arn::KmsArn;
use super::{KmsClient, PROVIDER_ID};
use crate::error::{EdkFailure, Error, SkipReason};
use crate::keyring::Attempts;
use crate::materials::{DataKey, DecryptionMaterials, EncryptedDataKey};

/// What a KMS keyring makes of one EDK before its own filter.
enum Candidate {
    /// An EDK of the keyring's provider id with a valid key ARN.
    Arn(KmsArn),
    /// An EDK of another provider (recorded as skipped).
    Skip,
    /// An EDK of the provider id whose provider info is not a key ARN: the spec makes OnDecrypt fail.
    Malformed,
}

fn candidate(provider_id: &str, index: usize, edk: &EncryptedDataKey, attempts: &mut Attempts) -> Candidate {
    if edk.provider_id != provider_id {
        attempts.skip(index, edk, SkipReason::ProviderId);
        return Candidate::Skip;
    }
    match provider_key_arn(edk) {
        Ok(arn) => Candidate::Arn(arn),
        Err(why) => {
            attempts.fail(index, edk, EdkFailure::MalformedProviderInfo { reason: why });
            Candidate::Malformed
        }
    }
}

/// The key ARN in a KMS EDK's provider info, or why it is none (the spec makes a KMS keyring's
/// OnDecrypt fail on such an EDK of its provider id).
fn provider_key_arn(edk: &EncryptedDataKey) -> Result<KmsArn, String> {
    std::str::from_utf8(&edk.provider_info)
        .map_err(|_| "it is not UTF-8".to_owned())
        .and_then(|info| KmsArn::parse_key_arn(info).map_err(|e| e.to_string()))
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
            attempts.fail(index, edk, EdkFailure::Kms(e));
            None
        }
        Ok(out) if out.key_id != key_id => {
            let failure = EdkFailure::KmsKeyIdMismatch { requested: key_id.to_owned(), returned: out.key_id };
            attempts.fail(index, edk, failure);
            None
        }
        Ok(out) if out.plaintext.len() != materials.suite().data_key_len() => {
            let failure =
                EdkFailure::DataKeyLength { found: out.plaintext.len(), expected: materials.suite().data_key_len() };
            attempts.fail(index, edk, failure);
            None
        }
        Ok(out) => Some(out.plaintext),
    }
}

/// OnDecrypt of every KMS keyring: "The set of encrypted data keys MUST first be filtered to
/// match this keyring's configuration" (`aws-kms-keyring.md` and its MRK and discovery variants).
/// The whole list is filtered before any KMS call, so a malformed `aws-kms` EDK anywhere fails
/// OnDecrypt even when another EDK would decrypt. `select` maps an EDK's key ARN to the `KeyId`
/// to call `Decrypt` with, or to why the keyring skips it. Returns the first data key, with its
/// EDK index, or the error naming every attempt.
pub(super) async fn filter_then_decrypt(
    client: &dyn KmsClient,
    edks: &[EncryptedDataKey],
    materials: &DecryptionMaterials,
    grant_tokens: &[String],
    attempts: Attempts,
    select: impl Fn(KmsArn) -> Result<String, SkipReason>,
) -> Result<(usize, DataKey), Error> {
    let (mut attempts, matching) = filter_edks(PROVIDER_ID, edks, attempts, select)?;
    for (i, edk, key_id) in matching {
        if let Some(key) = decrypt_edk(client, &key_id, i, edk, materials, grant_tokens, &mut attempts).await {
            return Ok((i, key));
        }
    }
    Err(attempts.into_error())
}

/// An EDK that passed the filter: its index, the EDK, and the `KeyId` to call `Decrypt` with.
pub(super) type Selected<'e> = (usize, &'e EncryptedDataKey, String);

/// The filter step of a KMS keyring's OnDecrypt, for EDKs of `provider_id` (`aws-kms` or
/// `aws-kms-rsa`): each EDK whose key ARN `select` maps to the `KeyId` to call `Decrypt` with,
/// in order; the others are recorded in `attempts` as skipped. A malformed EDK of
/// `provider_id` anywhere in the list fails OnDecrypt (the error names every EDK).
pub(super) fn filter_edks<'e>(
    provider_id: &str,
    edks: &'e [EncryptedDataKey],
    mut attempts: Attempts,
    select: impl Fn(KmsArn) -> Result<String, SkipReason>,
) -> Result<(Attempts, Vec<Selected<'e>>), Error> {
    let mut matching = Vec::new();
    for (i, edk) in edks.iter().enumerate() {
        let arn = match candidate(provider_id, i, edk, &mut attempts) {
            Candidate::Arn(arn) => arn,
            Candidate::Skip => continue,
            Candidate::Malformed => return Err(attempts.into_error()),
        };
        match select(arn) {
            Ok(key_id) => matching.push((i, edk, key_id)),
            Err(reason) => attempts.skip(i, edk, reason),
        }
    }
    Ok((attempts, matching))
}
