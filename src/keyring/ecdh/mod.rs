//! The ECDH keyrings (spec `framework/raw-ecdh-keyring.md`, `framework/key-agreement-schemas.md`):
//! a data key wrapped under a key derived from an elliptic-curve Diffie-Hellman shared secret
//! between a sender's and a recipient's key pair, interoperable with the official library's
//! `raw-ecdh` and `aws-kms-ecdh` EDKs.
//!
//! P-256, P-384 and P-521 work on both crypto backends (AWS-LC, and RustCrypto's `p256`, `p384`
//! and `p521` crates). SM2, which the spec lists, is offered by neither backend nor by any
//! official runtime.

mod curve;
mod raw;
pub(crate) mod wrap;

pub use curve::EcdhCurve;
pub use raw::{RawEcdhKeyring, RawEcdhScheme};
pub use wrap::{KMS_ECDH_PROVIDER_ID, RAW_ECDH_PROVIDER_ID};

use crate::crypto::Backend;
use crate::error::Result;

/// Lowercase hex, for naming public keys in errors.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A checked public key of `curve`: its uncompressed and compressed SEC1 points.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PublicKey {
    pub(crate) uncompressed: Vec<u8>,
    pub(crate) compressed: Vec<u8>,
}

impl PublicKey {
    /// From a DER SubjectPublicKeyInfo (the spec's "ECC Public Key").
    pub(crate) fn from_spki(curve: EcdhCurve, backend: Backend, der: &[u8]) -> Result<Self> {
        Self::from_sec1(curve, backend, curve.point_from_spki(der)?)
    }

    /// From a SEC1 point, compressed or not; the backend checks it is on the curve.
    pub(crate) fn from_sec1(curve: EcdhCurve, backend: Backend, point: &[u8]) -> Result<Self> {
        let uncompressed = backend.provider().ecdh_public(curve, point)?;
        Ok(Self { compressed: curve.compress(&uncompressed), uncompressed })
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex(&self.compressed))
    }
}
