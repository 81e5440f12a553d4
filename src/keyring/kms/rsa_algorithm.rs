//! KMS' RSA encryption algorithms, for the AWS KMS RSA keyring (spec
//! `framework/aws-kms/aws-kms-rsa-keyring.md`, "Supported Padding Schemes"). Pure names, available
//! without feature `kms` (the CLI's key specs parse them).

use std::fmt;
use std::str::FromStr;

use crate::crypto::RsaPadding;
use crate::error::{Error, Result};

/// KMS' RSA encryption algorithms (the `EncryptionAlgorithm` of `Decrypt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KmsRsaAlgorithm {
    /// `RSAES_OAEP_SHA_1`: OAEP with SHA-1 and MGF1-SHA-1.
    RsaesOaepSha1,
    /// `RSAES_OAEP_SHA_256`: OAEP with SHA-256 and MGF1-SHA-256.
    RsaesOaepSha256,
}

impl KmsRsaAlgorithm {
    /// The name KMS uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RsaesOaepSha1 => "RSAES_OAEP_SHA_1",
            Self::RsaesOaepSha256 => "RSAES_OAEP_SHA_256",
        }
    }

    #[cfg_attr(not(feature = "kms"), allow(dead_code))]
    pub(crate) fn padding(self) -> RsaPadding {
        match self {
            Self::RsaesOaepSha1 => RsaPadding::OaepSha1,
            Self::RsaesOaepSha256 => RsaPadding::OaepSha256,
        }
    }
}

impl fmt::Display for KmsRsaAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KmsRsaAlgorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "RSAES_OAEP_SHA_1" => Ok(Self::RsaesOaepSha1),
            "RSAES_OAEP_SHA_256" => Ok(Self::RsaesOaepSha256),
            other => Err(Error::InvalidConfig(format!(
                "{other:?} is not a KMS RSA encryption algorithm: use RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1"
            ))),
        }
    }
}
