//! The crypto provider seam: one small internal trait with two implementations.
//!
//! * [`Backend::AwsLc`] (feature `aws-lc-rs`, default): AWS-LC through `aws-lc-rs`. Fastest here,
//!   and its RSA decryption is implemented in constant time, so it is the backend to use for raw
//!   RSA keyrings that decrypt.
//! * [`Backend::RustCrypto`] (feature `rustcrypto`): pure Rust, the digest-0.11 generation
//!   (`aes-gcm` 0.11, `hkdf` 0.13, `sha2` 0.11, `p256`/`p384` 0.14, `rsa` 0.10), the same
//!   generation the AWS SDK uses, so no crypto crate is compiled twice. `rsa` 0.10 is the release
//!   its authors name as the fix for the "Marvin" timing side channel of earlier versions
//!   (RUSTSEC-2023-0071); decryption is blinded as well. PKCS#1 v1.5 *padding* remains a legacy
//!   choice on any backend (the ESDK keeps it for old keys): prefer OAEP for raw RSA keys.
//!
//! Random bytes (data keys, message ids) come from the operating system (`getrandom`) for both
//! backends: its first call costs microseconds, where seeding AWS-LC's generator costs tens of
//! milliseconds per process.

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keyring::ecdh::EcdhCurve;
use crate::suite::{Curve, HashAlg};

#[cfg(feature = "aws-lc-rs")]
mod aws_lc;
pub(crate) mod kdf;
#[cfg(feature = "rustcrypto")]
mod rust_crypto;
pub(crate) mod signature_len;

#[cfg(not(any(feature = "aws-lc-rs", feature = "rustcrypto")))]
compile_error!("enable at least one crypto backend feature: `aws-lc-rs` or `rustcrypto`");

/// A crypto backend compiled into this build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// AWS-LC via `aws-lc-rs`.
    #[cfg(feature = "aws-lc-rs")]
    AwsLc,
    /// Pure-Rust RustCrypto crates. See the module docs for the RSA caveat.
    #[cfg(feature = "rustcrypto")]
    RustCrypto,
}

impl Default for Backend {
    fn default() -> Self {
        #[cfg(feature = "aws-lc-rs")]
        return Backend::AwsLc;
        #[cfg(not(feature = "aws-lc-rs"))]
        return Backend::RustCrypto;
    }
}

impl Backend {
    /// Every backend this build enables, default first.
    pub fn all() -> &'static [Backend] {
        &[
            #[cfg(feature = "aws-lc-rs")]
            Backend::AwsLc,
            #[cfg(feature = "rustcrypto")]
            Backend::RustCrypto,
        ]
    }

    /// Short name (`aws-lc-rs` or `rustcrypto`).
    pub fn name(self) -> &'static str {
        self.provider().name()
    }

    /// SHA-256 of the concatenation of `parts` (for identifiers built from public or secret
    /// data, e.g. record identities; not a MAC).
    pub fn sha256(self, parts: &[&[u8]]) -> [u8; 32] {
        let mut h = self.provider().hasher(HashAlg::Sha256);
        for p in parts {
            h.update(p);
        }
        let digest = h.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(&digest[..32]);
        out
    }

    pub(crate) fn provider(self) -> &'static dyn Provider {
        match self {
            #[cfg(feature = "aws-lc-rs")]
            Backend::AwsLc => &aws_lc::AwsLc,
            #[cfg(feature = "rustcrypto")]
            Backend::RustCrypto => &rust_crypto::RustCrypto,
        }
    }
}

impl core::str::FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Backend::all()
            .iter()
            .copied()
            .find(|b| b.name() == s)
            .ok_or_else(|| Error::InvalidConfig(format!("crypto backend {s:?} is not compiled into this build")))
    }
}

/// RSA padding modes allowed by the raw RSA keyring (`framework/raw-rsa-keyring.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RsaPadding {
    /// PKCS#1 v1.5 encryption padding.
    Pkcs1,
    /// OAEP with SHA-1 and MGF1-SHA-1.
    OaepSha1,
    /// OAEP with SHA-256 and MGF1-SHA-256.
    OaepSha256,
    /// OAEP with SHA-384 and MGF1-SHA-384.
    OaepSha384,
    /// OAEP with SHA-512 and MGF1-SHA-512.
    OaepSha512,
}

/// AES-GCM authentication failed.
#[derive(Debug)]
pub(crate) struct AuthFailed;

/// An AES-GCM key with a 12-byte IV and a 16-byte tag.
pub(crate) trait AeadKey: Send + Sync {
    /// Encrypts `in_out` in place and returns the tag.
    fn seal_in_place(&self, iv: &[u8; 12], aad: &[u8], in_out: &mut [u8]) -> Result<[u8; 16]>;
    /// Decrypts `in_out` in place if `tag` verifies. On failure `in_out` holds no plaintext.
    fn open_in_place(&self, iv: &[u8; 12], aad: &[u8], in_out: &mut [u8], tag: &[u8]) -> Result<(), AuthFailed>;
    /// Encrypts `plaintext` into `out` (the same length) and returns the tag.
    fn seal_to(&self, iv: &[u8; 12], aad: &[u8], plaintext: &[u8], out: &mut [u8]) -> Result<[u8; 16]> {
        out.copy_from_slice(plaintext);
        self.seal_in_place(iv, aad, out)
    }
    /// Decrypts `ciphertext` into `out` (the same length) if `tag` verifies. On failure `out`
    /// holds no plaintext.
    fn open_to(
        &self,
        iv: &[u8; 12],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8],
        out: &mut [u8],
    ) -> Result<(), AuthFailed> {
        out.copy_from_slice(ciphertext);
        self.open_in_place(iv, aad, out, tag)
    }
}

/// Incremental hash.
pub(crate) trait Hasher: Send {
    fn update(&mut self, data: &[u8]);
    fn finish(self: Box<Self>) -> Vec<u8>;
}

/// An ECDSA private key for message signatures.
pub(crate) trait EcdsaSigner: Send + Sync {
    /// SEC1 compressed public point.
    fn compressed_public_key(&self) -> Result<Vec<u8>>;
    /// DER `ECDSA-Sig-Value` over a digest of the curve's hash.
    fn sign_digest(&self, digest: &[u8]) -> Result<Vec<u8>>;
}

/// An ECDSA public key for verifying message signatures.
pub(crate) trait EcdsaVerifier: Send + Sync {
    fn verify_digest(&self, digest: &[u8], der_signature: &[u8]) -> bool;
}

/// RSA public key (encrypt).
pub(crate) trait RsaPublic: Send + Sync {
    fn encrypt(&self, padding: RsaPadding, plaintext: &[u8]) -> Result<Vec<u8>>;
    /// Bit length of the modulus (the AWS KMS RSA keyring's minimum).
    #[cfg_attr(not(feature = "kms"), allow(dead_code))]
    fn modulus_bits(&self) -> usize;
}

/// RSA private key (decrypt).
pub(crate) trait RsaPrivate: Send + Sync {
    /// `None` when the ciphertext does not decrypt under this key and padding.
    fn decrypt(&self, padding: RsaPadding, ciphertext: &[u8]) -> Option<Zeroizing<Vec<u8>>>;
}

/// An ECDH private key (the ECDH keyrings, `framework/raw-ecdh-keyring.md`).
pub(crate) trait EcdhPrivate: Send + Sync {
    /// The SEC1 uncompressed public point.
    fn public_point(&self) -> &[u8];
    /// ECDH with a peer's SEC1 point (compressed or uncompressed; refused unless it is a point
    /// of the curve other than the identity): the shared x-coordinate, `field_len` bytes.
    fn agree(&self, peer_sec1: &[u8]) -> Result<Zeroizing<Vec<u8>>>;
}

/// The operations one message and the raw keyrings need.
pub(crate) trait Provider: Send + Sync {
    fn name(&self) -> &'static str;
    /// AES-GCM with a 16, 24 or 32-byte key.
    fn aes_gcm(&self, key: &[u8]) -> Result<Box<dyn AeadKey>>;
    /// One HKDF extract, then one expand per output (`info` given in parts).
    fn hkdf(&self, hash: HashAlg, salt: &[u8], ikm: &[u8], outputs: &mut [(&[&[u8]], &mut [u8])]) -> Result<()>;
    fn hasher(&self, hash: HashAlg) -> Box<dyn Hasher>;
    /// HMAC-SHA-256 of the concatenated `parts` (the Hierarchical keyring's counter-mode KDF).
    #[cfg_attr(not(feature = "hierarchy"), allow(dead_code))]
    fn hmac_sha256(&self, key: &[u8], parts: &[&[u8]]) -> Result<Zeroizing<[u8; 32]>>;
    /// HMAC-SHA-384 of the concatenated `parts` (the ECDH keyrings' counter-mode KDF).
    fn hmac_sha384(&self, key: &[u8], parts: &[&[u8]]) -> Result<Zeroizing<[u8; 48]>>;
    fn generate_ecdsa(&self, curve: Curve) -> Result<Box<dyn EcdsaSigner>>;
    /// A fresh ECDH key pair (the ephemeral scheme).
    fn ecdh_generate(&self, curve: EcdhCurve) -> Result<Box<dyn EcdhPrivate>>;
    /// Parses a PKCS#8 DER ECDH private key of `curve`.
    fn ecdh_private(&self, curve: EcdhCurve, pkcs8_der: &[u8]) -> Result<Box<dyn EcdhPrivate>>;
    /// Checks a SEC1 point (compressed or uncompressed) of `curve` and returns it uncompressed.
    fn ecdh_public(&self, curve: EcdhCurve, sec1_point: &[u8]) -> Result<Vec<u8>>;
    /// Parses a SEC1 (compressed or uncompressed) public point.
    fn ecdsa_verifier(&self, curve: Curve, sec1_point: &[u8]) -> Result<Box<dyn EcdsaVerifier>>;
    /// Parses an X.509 SubjectPublicKeyInfo DER RSA public key.
    fn rsa_public(&self, spki_der: &[u8]) -> Result<Box<dyn RsaPublic>>;
    /// Parses a PKCS#8 DER RSA private key.
    fn rsa_private(&self, pkcs8_der: &[u8]) -> Result<Box<dyn RsaPrivate>>;
}

/// Fills `out` with random bytes from the operating system.
pub(crate) fn fill_random(out: &mut [u8]) -> Result<()> {
    getrandom::fill(out).map_err(|_| Error::Crypto("the operating system's random generator failed"))
}
