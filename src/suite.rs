//! The ESDK algorithm suites (spec `framework/algorithm-suites.md`).
//!
//! Only the eleven suites the ESDK supports exist here; any other identifier (the reserved
//! `0x0000`, S3EC or DB-ESDK suites, random values) is refused by [`AlgorithmSuite::from_id`].

use core::fmt;

/// Message format version implied by a suite (`data-format/message-header.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageFormatVersion {
    /// Version 1: 16-byte message id, header IV, no commitment.
    V1,
    /// Version 2: 32-byte message id, key commitment in the header.
    V2,
}

impl MessageFormatVersion {
    /// The version byte that starts a header.
    pub const fn byte(self) -> u8 {
        match self {
            Self::V1 => 0x01,
            Self::V2 => 0x02,
        }
    }

    /// Length of the message id for this version.
    pub const fn message_id_len(self) -> usize {
        match self {
            Self::V1 => 16,
            Self::V2 => 32,
        }
    }
}

/// Key derivation applied to the plaintext data key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kdf {
    /// The data key is the encryption key.
    Identity,
    /// HKDF with SHA-256, no salt, info = suite id ‖ message id.
    HkdfSha256,
    /// HKDF with SHA-384, no salt, info = suite id ‖ message id.
    HkdfSha384,
    /// HKDF with SHA-512, salt = message id, info = suite id ‖ "DERIVEKEY", plus a commit key.
    HkdfSha512Committing,
}

/// Hash functions used by the suites.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// SHA-1 (RSA-OAEP only).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HashAlg {
    /// Digest length in bytes.
    pub const fn output_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }
}

/// Elliptic curves used for message signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Curve {
    /// NIST P-256 with SHA-256.
    P256,
    /// NIST P-384 with SHA-384.
    P384,
}

impl Curve {
    /// Hash used with this curve by the ESDK suites.
    pub const fn hash(self) -> HashAlg {
        match self {
            Self::P256 => HashAlg::Sha256,
            Self::P384 => HashAlg::Sha384,
        }
    }

    /// Length of a SEC1 compressed point.
    pub const fn compressed_point_len(self) -> usize {
        match self {
            Self::P256 => 33,
            Self::P384 => 49,
        }
    }

    /// Largest DER `ECDSA-Sig-Value` for this curve.
    pub const fn max_signature_len(self) -> usize {
        match self {
            Self::P256 => 72,
            Self::P384 => 104,
        }
    }
}

/// One of the eleven ESDK algorithm suites.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum AlgorithmSuite {
    /// 0x0014: AES-128-GCM, identity KDF.
    Aes128GcmIv12Tag16NoKdf,
    /// 0x0046: AES-192-GCM, identity KDF.
    Aes192GcmIv12Tag16NoKdf,
    /// 0x0078: AES-256-GCM, identity KDF.
    Aes256GcmIv12Tag16NoKdf,
    /// 0x0114: AES-128-GCM, HKDF-SHA256.
    Aes128GcmIv12Tag16HkdfSha256,
    /// 0x0146: AES-192-GCM, HKDF-SHA256.
    Aes192GcmIv12Tag16HkdfSha256,
    /// 0x0178: AES-256-GCM, HKDF-SHA256.
    Aes256GcmIv12Tag16HkdfSha256,
    /// 0x0214: AES-128-GCM, HKDF-SHA256, ECDSA P-256.
    Aes128GcmIv12Tag16HkdfSha256EcdsaP256,
    /// 0x0346: AES-192-GCM, HKDF-SHA384, ECDSA P-384.
    Aes192GcmIv12Tag16HkdfSha384EcdsaP384,
    /// 0x0378: AES-256-GCM, HKDF-SHA384, ECDSA P-384.
    Aes256GcmIv12Tag16HkdfSha384EcdsaP384,
    /// 0x0478: AES-256-GCM, HKDF-SHA512 with key commitment.
    Aes256GcmHkdfSha512CommitKey,
    /// 0x0578: AES-256-GCM, HKDF-SHA512 with key commitment, ECDSA P-384.
    Aes256GcmHkdfSha512CommitKeyEcdsaP384,
}

impl AlgorithmSuite {
    /// Every ESDK suite, legacy first.
    pub const ALL: [AlgorithmSuite; 11] = [
        Self::Aes128GcmIv12Tag16NoKdf,
        Self::Aes192GcmIv12Tag16NoKdf,
        Self::Aes256GcmIv12Tag16NoKdf,
        Self::Aes128GcmIv12Tag16HkdfSha256,
        Self::Aes192GcmIv12Tag16HkdfSha256,
        Self::Aes256GcmIv12Tag16HkdfSha256,
        Self::Aes128GcmIv12Tag16HkdfSha256EcdsaP256,
        Self::Aes192GcmIv12Tag16HkdfSha384EcdsaP384,
        Self::Aes256GcmIv12Tag16HkdfSha384EcdsaP384,
        Self::Aes256GcmHkdfSha512CommitKey,
        Self::Aes256GcmHkdfSha512CommitKeyEcdsaP384,
    ];

    /// AES-GCM IV length for every ESDK suite.
    pub const IV_LEN: usize = 12;
    /// AES-GCM tag length for every ESDK suite.
    pub const TAG_LEN: usize = 16;
    /// Suite data (commit key) length for committing suites.
    pub const COMMITMENT_LEN: usize = 32;

    /// Looks up a suite by its two-byte identifier; `None` for anything the ESDK does not support.
    pub const fn from_id(id: u16) -> Option<Self> {
        Some(match id {
            0x0014 => Self::Aes128GcmIv12Tag16NoKdf,
            0x0046 => Self::Aes192GcmIv12Tag16NoKdf,
            0x0078 => Self::Aes256GcmIv12Tag16NoKdf,
            0x0114 => Self::Aes128GcmIv12Tag16HkdfSha256,
            0x0146 => Self::Aes192GcmIv12Tag16HkdfSha256,
            0x0178 => Self::Aes256GcmIv12Tag16HkdfSha256,
            0x0214 => Self::Aes128GcmIv12Tag16HkdfSha256EcdsaP256,
            0x0346 => Self::Aes192GcmIv12Tag16HkdfSha384EcdsaP384,
            0x0378 => Self::Aes256GcmIv12Tag16HkdfSha384EcdsaP384,
            0x0478 => Self::Aes256GcmHkdfSha512CommitKey,
            0x0578 => Self::Aes256GcmHkdfSha512CommitKeyEcdsaP384,
            _ => return None,
        })
    }

    /// The suite's two-byte identifier.
    pub const fn id(self) -> u16 {
        match self {
            Self::Aes128GcmIv12Tag16NoKdf => 0x0014,
            Self::Aes192GcmIv12Tag16NoKdf => 0x0046,
            Self::Aes256GcmIv12Tag16NoKdf => 0x0078,
            Self::Aes128GcmIv12Tag16HkdfSha256 => 0x0114,
            Self::Aes192GcmIv12Tag16HkdfSha256 => 0x0146,
            Self::Aes256GcmIv12Tag16HkdfSha256 => 0x0178,
            Self::Aes128GcmIv12Tag16HkdfSha256EcdsaP256 => 0x0214,
            Self::Aes192GcmIv12Tag16HkdfSha384EcdsaP384 => 0x0346,
            Self::Aes256GcmIv12Tag16HkdfSha384EcdsaP384 => 0x0378,
            Self::Aes256GcmHkdfSha512CommitKey => 0x0478,
            Self::Aes256GcmHkdfSha512CommitKeyEcdsaP384 => 0x0578,
        }
    }

    /// Big-endian identifier bytes, as used in headers and HKDF info.
    pub const fn id_bytes(self) -> [u8; 2] {
        self.id().to_be_bytes()
    }

    /// Message format version this suite is written with.
    pub const fn message_format_version(self) -> MessageFormatVersion {
        if self.is_committing() {
            MessageFormatVersion::V2
        } else {
            MessageFormatVersion::V1
        }
    }

    /// Whether the suite commits to its data key (`0x0478`, `0x0578`).
    pub const fn is_committing(self) -> bool {
        matches!(self, Self::Aes256GcmHkdfSha512CommitKey | Self::Aes256GcmHkdfSha512CommitKeyEcdsaP384)
    }

    /// Length of the plaintext data key and of the derived AES key.
    pub const fn data_key_len(self) -> usize {
        match self {
            Self::Aes128GcmIv12Tag16NoKdf
            | Self::Aes128GcmIv12Tag16HkdfSha256
            | Self::Aes128GcmIv12Tag16HkdfSha256EcdsaP256 => 16,
            Self::Aes192GcmIv12Tag16NoKdf
            | Self::Aes192GcmIv12Tag16HkdfSha256
            | Self::Aes192GcmIv12Tag16HkdfSha384EcdsaP384 => 24,
            _ => 32,
        }
    }

    /// Key derivation function.
    pub const fn kdf(self) -> Kdf {
        match self {
            Self::Aes128GcmIv12Tag16NoKdf | Self::Aes192GcmIv12Tag16NoKdf | Self::Aes256GcmIv12Tag16NoKdf => {
                Kdf::Identity
            }
            Self::Aes128GcmIv12Tag16HkdfSha256
            | Self::Aes192GcmIv12Tag16HkdfSha256
            | Self::Aes256GcmIv12Tag16HkdfSha256
            | Self::Aes128GcmIv12Tag16HkdfSha256EcdsaP256 => Kdf::HkdfSha256,
            Self::Aes192GcmIv12Tag16HkdfSha384EcdsaP384 | Self::Aes256GcmIv12Tag16HkdfSha384EcdsaP384 => {
                Kdf::HkdfSha384
            }
            Self::Aes256GcmHkdfSha512CommitKey | Self::Aes256GcmHkdfSha512CommitKeyEcdsaP384 => {
                Kdf::HkdfSha512Committing
            }
        }
    }

    /// Signature curve, if the suite signs its messages.
    pub const fn signature(self) -> Option<Curve> {
        match self {
            Self::Aes128GcmIv12Tag16HkdfSha256EcdsaP256 => Some(Curve::P256),
            Self::Aes192GcmIv12Tag16HkdfSha384EcdsaP384
            | Self::Aes256GcmIv12Tag16HkdfSha384EcdsaP384
            | Self::Aes256GcmHkdfSha512CommitKeyEcdsaP384 => Some(Curve::P384),
            _ => None,
        }
    }

    /// Whether messages of this suite end with a signature footer.
    pub const fn is_signed(self) -> bool {
        self.signature().is_some()
    }
}

impl fmt::Debug for AlgorithmSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AlgorithmSuite(0x{:04X})", self.id())
    }
}

impl fmt::Display for AlgorithmSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04X}", self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_unknown_ids_are_refused() {
        for suite in AlgorithmSuite::ALL {
            assert_eq!(AlgorithmSuite::from_id(suite.id()), Some(suite));
        }
        let known: Vec<u16> = AlgorithmSuite::ALL.iter().map(|s| s.id()).collect();
        for id in 0..=u16::MAX {
            if !known.contains(&id) {
                assert_eq!(AlgorithmSuite::from_id(id), None, "0x{id:04X}");
            }
        }
    }

    #[test]
    fn versions_follow_commitment() {
        for suite in AlgorithmSuite::ALL {
            let v2 = suite.message_format_version() == MessageFormatVersion::V2;
            assert_eq!(v2, suite.is_committing());
            assert_eq!(v2, suite.kdf() == Kdf::HkdfSha512Committing);
        }
    }
}
