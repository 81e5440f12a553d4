//! Commitment policy (spec `framework/commitment-policy.md`, `client-apis/client.md`).

use crate::error::Error;
use crate::suite::AlgorithmSuite;

/// Which suites a client may encrypt with and decrypt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CommitmentPolicy {
    /// Encrypt only with non-committing suites; decrypt everything. For migrations only.
    ForbidEncryptAllowDecrypt,
    /// Encrypt only with committing suites; decrypt everything.
    RequireEncryptAllowDecrypt,
    /// Encrypt and decrypt only committing suites (the default).
    #[default]
    RequireEncryptRequireDecrypt,
}

impl CommitmentPolicy {
    /// The suite used for encryption when the caller names none.
    ///
    /// Under `ForbidEncryptAllowDecrypt` the spec mandates 0x0078 (no KDF, no signature); name a
    /// suite explicitly when encrypting under that policy. Otherwise 0x0578.
    pub const fn default_suite(self) -> AlgorithmSuite {
        match self {
            Self::ForbidEncryptAllowDecrypt => AlgorithmSuite::Aes256GcmIv12Tag16NoKdf,
            _ => AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384,
        }
    }

    /// Whether `suite` may be used to encrypt under this policy.
    pub const fn allows_encrypt(self, suite: AlgorithmSuite) -> bool {
        match self {
            Self::ForbidEncryptAllowDecrypt => !suite.is_committing(),
            _ => suite.is_committing(),
        }
    }

    /// Whether a message of `suite` may be decrypted under this policy.
    pub const fn allows_decrypt(self, suite: AlgorithmSuite) -> bool {
        match self {
            Self::RequireEncryptRequireDecrypt => suite.is_committing(),
            _ => true,
        }
    }

    pub(crate) fn check_encrypt(self, suite: AlgorithmSuite) -> Result<(), Error> {
        if self.allows_encrypt(suite) {
            Ok(())
        } else {
            Err(Error::CommitmentPolicy { policy: self, suite, encrypting: true })
        }
    }

    pub(crate) fn check_decrypt(self, suite: AlgorithmSuite) -> Result<(), Error> {
        if self.allows_decrypt(suite) {
            Ok(())
        } else {
            Err(Error::CommitmentPolicy { policy: self, suite, encrypting: false })
        }
    }

    /// The name used in the spec and the test-vector manifests.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ForbidEncryptAllowDecrypt => "FORBID_ENCRYPT_ALLOW_DECRYPT",
            Self::RequireEncryptAllowDecrypt => "REQUIRE_ENCRYPT_ALLOW_DECRYPT",
            Self::RequireEncryptRequireDecrypt => "REQUIRE_ENCRYPT_REQUIRE_DECRYPT",
        }
    }
}

impl core::str::FromStr for CommitmentPolicy {
    type Err = Error;

    /// Accepts the spec names (`REQUIRE_ENCRYPT_REQUIRE_DECRYPT`), case-insensitively, with `-` or `_`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let norm = s.trim().to_ascii_uppercase().replace('-', "_");
        [Self::ForbidEncryptAllowDecrypt, Self::RequireEncryptAllowDecrypt, Self::RequireEncryptRequireDecrypt]
            .into_iter()
            .find(|p| p.name() == norm)
            .ok_or_else(|| {
                Error::InvalidConfig(format!(
                    "unknown commitment policy {s:?}; expected FORBID_ENCRYPT_ALLOW_DECRYPT, \
                     REQUIRE_ENCRYPT_ALLOW_DECRYPT or REQUIRE_ENCRYPT_REQUIRE_DECRYPT"
                ))
            })
    }
}

impl core::fmt::Display for CommitmentPolicy {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}
