//! The curves of the ECDH keyrings and their key encodings (spec `framework/raw-ecdh-keyring.md`,
//! "Supported Curve Specifications", "ECC Keys").

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A curve of the ECDH keyrings. (The spec also names SM2, which no official runtime implements
/// and neither backend here offers.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EcdhCurve {
    /// NIST P-256 (`ECC_NIST_P256`).
    P256,
    /// NIST P-384 (`ECC_NIST_P384`).
    P384,
    /// NIST P-521 (`ECC_NIST_P521`).
    P521,
}

impl EcdhCurve {
    /// Every curve, in the order of the spec.
    pub const ALL: [EcdhCurve; 3] = [EcdhCurve::P256, EcdhCurve::P384, EcdhCurve::P521];

    /// The spec's name of the curve (`ECC_NIST_P256`, …): also the KMS key spec.
    pub fn spec_name(self) -> &'static str {
        match self {
            Self::P256 => "ECC_NIST_P256",
            Self::P384 => "ECC_NIST_P384",
            Self::P521 => "ECC_NIST_P521",
        }
    }

    /// The curve's name in the key derivation's fixed info (`p256`, `p384`, `p521`).
    pub(crate) fn kdf_name(self) -> &'static [u8] {
        match self {
            Self::P256 => b"p256",
            Self::P384 => b"p384",
            Self::P521 => b"p521",
        }
    }

    /// Bytes of a field element: the length of the shared secret and of a coordinate.
    pub(crate) fn field_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }

    /// Bytes of a SEC1 compressed point (the form EDKs carry).
    pub(crate) fn compressed_len(self) -> usize {
        1 + self.field_len()
    }

    /// Bytes of a SEC1 uncompressed point.
    pub(crate) fn uncompressed_len(self) -> usize {
        1 + 2 * self.field_len()
    }

    /// The DER of a SubjectPublicKeyInfo of this curve (`id-ecPublicKey`, the named curve, and a
    /// BIT STRING holding an uncompressed point), up to the point. With a named curve and an
    /// uncompressed point the DER encoding is unique, so comparing with this prefix is a strict
    /// parse; these are the lengths (91, 120, 158 bytes) the official library accepts.
    fn spki_prefix(self) -> &'static [u8] {
        match self {
            Self::P256 => &[
                0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
                0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
            ],
            Self::P384 => &[
                0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81,
                0x04, 0x00, 0x22, 0x03, 0x62, 0x00,
            ],
            Self::P521 => &[
                0x30, 0x81, 0x9b, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b,
                0x81, 0x04, 0x00, 0x23, 0x03, 0x81, 0x86, 0x00,
            ],
        }
    }

    /// The uncompressed point of a DER SubjectPublicKeyInfo of this curve. The point itself is
    /// not checked here (the backend does that).
    pub(crate) fn point_from_spki(self, der: &[u8]) -> Result<&[u8]> {
        let prefix = self.spki_prefix();
        match der.strip_prefix(prefix) {
            Some(point) if point.len() == self.uncompressed_len() && point[0] == 0x04 => Ok(point),
            _ => Err(Error::InvalidKey(format!(
                "not a {self} public key: expected a {}-byte DER SubjectPublicKeyInfo with the named curve and an \
                 uncompressed point, got {} bytes{}",
                prefix.len() + self.uncompressed_len(),
                der.len(),
                Self::ALL
                    .into_iter()
                    .find(|c| *c != self && der.starts_with(c.spki_prefix()))
                    .map(|c| format!(" (a {c} key)"))
                    .unwrap_or_default()
            ))),
        }
    }

    /// The DER SubjectPublicKeyInfo of an uncompressed point of this curve.
    pub(crate) fn spki_from_point(self, uncompressed: &[u8]) -> Vec<u8> {
        debug_assert_eq!(uncompressed.len(), self.uncompressed_len());
        [self.spki_prefix(), uncompressed].concat()
    }

    /// The SEC1 compressed form of an uncompressed point: the parity of y, then x.
    pub(crate) fn compress(self, uncompressed: &[u8]) -> Vec<u8> {
        debug_assert_eq!(uncompressed.len(), self.uncompressed_len());
        let n = self.field_len();
        let mut out = Vec::with_capacity(1 + n);
        out.push(0x02 | (uncompressed[2 * n] & 1));
        out.extend_from_slice(&uncompressed[1..=n]);
        out
    }
}

impl fmt::Display for EcdhCurve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
            Self::P521 => "P-521",
        })
    }
}

impl FromStr for EcdhCurve {
    type Err = Error;

    /// Accepts the spec/KMS names (`ECC_NIST_P256`) and the short ones (`p256`, `P-256`).
    fn from_str(s: &str) -> Result<Self> {
        let norm: String = s.chars().filter(|c| *c != '-' && *c != '_').collect::<String>().to_ascii_lowercase();
        match norm.strip_prefix("eccnist").unwrap_or(&norm) {
            "p256" => Ok(Self::P256),
            "p384" => Ok(Self::P384),
            "p521" => Ok(Self::P521),
            _ => Err(Error::InvalidConfig(format!(
                "unknown ECDH curve {s:?}: use ECC_NIST_P256, ECC_NIST_P384 or ECC_NIST_P521 (or p256, p384, p521)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_in_every_spelling() {
        for (s, c) in [("ECC_NIST_P256", EcdhCurve::P256), ("p384", EcdhCurve::P384), ("P-521", EcdhCurve::P521)] {
            assert_eq!(s.parse::<EcdhCurve>().unwrap(), c);
        }
        assert!("secp256k1".parse::<EcdhCurve>().is_err());
        assert!("SM2".parse::<EcdhCurve>().is_err());
    }

    #[test]
    fn spki_lengths_are_the_official_ones() {
        let lens: Vec<usize> = EcdhCurve::ALL.iter().map(|c| c.spki_prefix().len() + c.uncompressed_len()).collect();
        assert_eq!(lens, [91, 120, 158]);
        let compressed: Vec<usize> = EcdhCurve::ALL.iter().map(|c| c.compressed_len()).collect();
        assert_eq!(compressed, [33, 49, 67]);
    }

    #[test]
    fn spki_round_trips_and_names_a_key_of_another_curve() {
        let mut point = vec![4u8; EcdhCurve::P384.uncompressed_len()];
        point[96] = 7;
        let der = EcdhCurve::P384.spki_from_point(&point);
        assert_eq!(EcdhCurve::P384.point_from_spki(&der).unwrap(), &point[..]);
        let err = EcdhCurve::P256.point_from_spki(&der).unwrap_err().to_string();
        assert!(err.contains("a P-384 key"), "{err}");
        assert!(EcdhCurve::P384.point_from_spki(&der[..der.len() - 1]).is_err());
        let compressed = EcdhCurve::P384.compress(&point);
        assert_eq!(compressed[0], 0x03);
        assert_eq!(&compressed[1..], &point[1..49]);
    }
}
