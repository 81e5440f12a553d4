//! AWS KMS keyrings (spec `framework/aws-kms/`): strict and discovery, each in a plain and a
//! multi-Region-key-aware form, plus the multi-keyring constructors, and the RSA keyring
//! (feature `kms`).
//!
//! Decryption is allow-list first: an EDK is sent to KMS only after it passed this keyring's
//! filter (exact ARN, MRK match, or discovery filter), and the `KeyId` of every `Decrypt` call is
//! explicit. EDKs that fail the filter are reported with the reason, without any KMS call.
//!
//! Key identifiers and ARNs ([`KeyIdentifier`], [`KmsArn`], [`mrk_match`]) are pure parsing and
//! are available without feature `kms`, for code that reads EDK key ARNs from headers without
//! calling KMS (a crypto-blind replicator).

mod arn;
#[cfg(feature = "kms")]
pub(crate) mod client;
#[cfg(feature = "kms")]
mod discovery;
#[cfg(feature = "kms")]
mod edk;
#[cfg(feature = "kms")]
mod metered;
#[cfg(feature = "kms")]
mod multi;
#[cfg(feature = "kms")]
mod rsa;
mod rsa_algorithm;
#[cfg(feature = "kms")]
mod strict;

pub use arn::{check_mrks_unique, mrk_match, KeyIdentifier, KmsArn, ResourceType};
#[cfg(feature = "kms")]
pub use client::{
    load_sdk_config, AwsSdkClientSupplier, AwsSdkKmsClient, ClientSupplier, DecryptOutput, EncryptOutput,
    GenerateDataKeyOutput, KmsClient, KmsError,
};
#[cfg(feature = "kms")]
pub use discovery::{DiscoveryFilter, KmsDiscoveryKeyring, KmsMrkDiscoveryKeyring};
#[cfg(feature = "kms")]
pub use metered::{KmsCallCounts, MeteredKmsClient};
#[cfg(feature = "kms")]
pub use multi::{discovery_multi_keyring, mrk_discovery_multi_keyring, mrk_multi_keyring, strict_multi_keyring};
#[cfg(feature = "kms")]
pub use rsa::{KmsRsaKeyring, RSA_PROVIDER_ID};
pub use rsa_algorithm::KmsRsaAlgorithm;
#[cfg(feature = "kms")]
pub use strict::{KmsKeyring, KmsMrkKeyring};

/// Provider id of every KMS-wrapped EDK.
pub const PROVIDER_ID: &str = "aws-kms";
