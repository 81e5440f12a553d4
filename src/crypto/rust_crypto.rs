//! [`Provider`] on the pure-Rust RustCrypto crates. See the parent module for the RSA caveat.

use aes_gcm::aead::consts::{U12, U16};
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{aes, AesGcm};
use ecdsa::elliptic_curve::Generate;
use ecdsa::signature::hazmat::{PrehashVerifier, RandomizedPrehashSigner};
// The OS generator, as the fallible `TryCryptoRng` the RustCrypto APIs take: a failure of the OS
// generator becomes an error here, not a panic.
use getrandom::SysRng;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use sha2::Digest;
use zeroize::{Zeroize, Zeroizing};

use super::{
    AeadKey, AuthFailed, EcdhPrivate, EcdsaSigner, EcdsaVerifier, Hasher, Provider, RsaPadding, RsaPrivate, RsaPublic,
};
use crate::error::{Error, Result};
use crate::keyring::ecdh::EcdhCurve;
use crate::suite::{Curve, HashAlg};

pub(crate) struct RustCrypto;

/// An ECDH key of one curve crate (`SecretKey` wipes its scalar on drop).
struct Ecdh<C: ecdsa::elliptic_curve::CurveArithmetic> {
    key: ecdsa::elliptic_curve::SecretKey<C>,
    public: Vec<u8>,
}

/// The per-curve code of [`Ecdh`]: the three curve crates share their types' shapes, not one
/// trait that would let a generic function name them all.
macro_rules! ecdh_curve {
    ($krate:ident, $curve:ty) => {
        impl Ecdh<$curve> {
            fn boxed(key: $krate::SecretKey) -> Box<dyn EcdhPrivate> {
                use ecdsa::elliptic_curve::sec1::ToSec1Point;
                let public = key.public_key().as_affine().to_sec1_point(false).as_bytes().to_vec();
                Box::new(Self { key, public })
            }

            fn generate() -> Result<Box<dyn EcdhPrivate>> {
                Ok(Self::boxed($krate::SecretKey::try_generate_from_rng(&mut SysRng).map_err(no_rng)?))
            }

            fn from_pkcs8(der: &[u8]) -> Result<Box<dyn EcdhPrivate>> {
                let key = $krate::SecretKey::from_pkcs8_der(der)
                    .map_err(|e| Error::InvalidKey(format!("not a PKCS#8 {} private key: {e}", stringify!($curve))))?;
                Ok(Self::boxed(key))
            }

            fn uncompressed(sec1: &[u8]) -> Option<Vec<u8>> {
                use ecdsa::elliptic_curve::sec1::ToSec1Point;
                let key = $krate::PublicKey::from_sec1_bytes(sec1).ok()?;
                Some(key.as_affine().to_sec1_point(false).as_bytes().to_vec())
            }
        }

        impl EcdhPrivate for Ecdh<$curve> {
            fn public_point(&self) -> &[u8] {
                &self.public
            }

            fn agree(&self, peer_sec1: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
                let peer = $krate::PublicKey::from_sec1_bytes(peer_sec1)
                    .map_err(|_| Error::Crypto("ECDH refused the peer's public key"))?;
                Ok(Zeroizing::new(self.key.diffie_hellman(&peer).raw_secret_bytes().to_vec()))
            }
        }
    };
}

ecdh_curve!(p256, p256::NistP256);
ecdh_curve!(p384, p384::NistP384);
ecdh_curve!(p521, p521::NistP521);

fn no_rng(_: getrandom::Error) -> Error {
    Error::Crypto("the operating system's random number generator failed")
}

struct Gcm<C>(C);

impl<C: AeadInOut + Send + Sync> AeadKey for Gcm<C>
where
    C: aes_gcm::aead::AeadCore<NonceSize = U12, TagSize = U16>,
{
    fn seal_in_place(&self, iv: &[u8; 12], aad: &[u8], in_out: &mut [u8]) -> Result<[u8; 16]> {
        let tag = self
            .0
            .encrypt_inout_detached(iv.into(), aad, in_out.into())
            .map_err(|_| Error::Crypto("AES-GCM encryption failed"))?;
        let mut t = [0u8; 16];
        t.copy_from_slice(&tag);
        Ok(t)
    }

    fn open_in_place(&self, iv: &[u8; 12], aad: &[u8], in_out: &mut [u8], tag: &[u8]) -> Result<(), AuthFailed> {
        let Ok(tag) = <&[u8; 16]>::try_from(tag) else { return Err(AuthFailed) };
        if self.0.decrypt_inout_detached(iv.into(), aad, in_out.into(), tag.into()).is_err() {
            in_out.fill(0);
            return Err(AuthFailed);
        }
        Ok(())
    }
}

struct Hash<D>(D);

impl<D: Digest + Send> Hasher for Hash<D> {
    fn update(&mut self, data: &[u8]) {
        Digest::update(&mut self.0, data);
    }
    fn finish(self: Box<Self>) -> Vec<u8> {
        self.0.finalize().to_vec()
    }
}

enum SigningKey {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
}

impl EcdsaSigner for SigningKey {
    fn compressed_public_key(&self) -> Result<Vec<u8>> {
        Ok(match self {
            Self::P256(k) => k.verifying_key().to_sec1_point(true).as_bytes().to_vec(),
            Self::P384(k) => k.verifying_key().to_sec1_point(true).as_bytes().to_vec(),
        })
    }

    /// Hedged signing (RFC 6979 nonce mixed with fresh randomness): a repeated call yields a new
    /// signature, which fixed-length signing relies on.
    fn sign_digest(&self, digest: &[u8]) -> Result<Vec<u8>> {
        let fail = |_| Error::Crypto("ECDSA signing failed");
        let mut rng = SysRng;
        Ok(match self {
            Self::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign_prehash_with_rng(&mut rng, digest).map_err(fail)?;
                sig.to_der().as_bytes().to_vec()
            }
            Self::P384(k) => {
                let sig: p384::ecdsa::Signature = k.sign_prehash_with_rng(&mut rng, digest).map_err(fail)?;
                sig.to_der().as_bytes().to_vec()
            }
        })
    }
}

enum VerifyingKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
}

impl EcdsaVerifier for VerifyingKey {
    fn verify_digest(&self, digest: &[u8], der: &[u8]) -> bool {
        match self {
            Self::P256(k) => p256::ecdsa::Signature::from_der(der).is_ok_and(|s| k.verify_prehash(digest, &s).is_ok()),
            Self::P384(k) => p384::ecdsa::Signature::from_der(der).is_ok_and(|s| k.verify_prehash(digest, &s).is_ok()),
        }
    }
}

struct RsaPub(rsa::PublicKey);

impl RsaPublic for RsaPub {
    fn modulus_bits(&self) -> usize {
        rsa::traits::PublicKeyParts::n(&self.0).bit_width() as usize
    }

    fn encrypt(&self, padding: RsaPadding, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut rng = SysRng;
        let res = match padding {
            RsaPadding::Pkcs1 => self.0.encrypt(&mut rng, rsa::Pkcs1v15Encrypt, plaintext),
            RsaPadding::OaepSha1 => self.0.encrypt(&mut rng, rsa::Oaep::<sha1::Sha1>::new(), plaintext),
            RsaPadding::OaepSha256 => self.0.encrypt(&mut rng, rsa::Oaep::<sha2::Sha256>::new(), plaintext),
            RsaPadding::OaepSha384 => self.0.encrypt(&mut rng, rsa::Oaep::<sha2::Sha384>::new(), plaintext),
            RsaPadding::OaepSha512 => self.0.encrypt(&mut rng, rsa::Oaep::<sha2::Sha512>::new(), plaintext),
        };
        res.map_err(|_| Error::Crypto("RSA encryption failed (is the data key too long for the key and padding?)"))
    }
}

struct RsaPriv(rsa::PrivateKey);

impl RsaPrivate for RsaPriv {
    fn decrypt(&self, padding: RsaPadding, ciphertext: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        // Always blinded; see the module docs for the remaining timing caveat.
        let mut rng = SysRng;
        let res = match padding {
            RsaPadding::Pkcs1 => self.0.decrypt_blinded(&mut rng, rsa::Pkcs1v15Encrypt, ciphertext),
            RsaPadding::OaepSha1 => self.0.decrypt_blinded(&mut rng, rsa::Oaep::<sha1::Sha1>::new(), ciphertext),
            RsaPadding::OaepSha256 => self.0.decrypt_blinded(&mut rng, rsa::Oaep::<sha2::Sha256>::new(), ciphertext),
            RsaPadding::OaepSha384 => self.0.decrypt_blinded(&mut rng, rsa::Oaep::<sha2::Sha384>::new(), ciphertext),
            RsaPadding::OaepSha512 => self.0.decrypt_blinded(&mut rng, rsa::Oaep::<sha2::Sha512>::new(), ciphertext),
        };
        res.ok().map(Zeroizing::new)
    }
}

impl Provider for RustCrypto {
    fn name(&self) -> &'static str {
        "rustcrypto"
    }

    fn aes_gcm(&self, key: &[u8]) -> Result<Box<dyn AeadKey>> {
        let bad = |_| Error::Crypto("AES-GCM key setup failed");
        Ok(match key.len() {
            16 => Box::new(Gcm(AesGcm::<aes::Aes128, U12>::new_from_slice(key).map_err(bad)?)),
            24 => Box::new(Gcm(AesGcm::<aes::Aes192, U12>::new_from_slice(key).map_err(bad)?)),
            32 => Box::new(Gcm(AesGcm::<aes::Aes256, U12>::new_from_slice(key).map_err(bad)?)),
            n => return Err(Error::InvalidKey(format!("AES-GCM key of {n} bytes; expected 16, 24 or 32"))),
        })
    }

    fn hkdf(&self, hash: HashAlg, salt: &[u8], ikm: &[u8], outputs: &mut [(&[&[u8]], &mut [u8])]) -> Result<()> {
        macro_rules! run {
            ($h:ty) => {{
                // Extract through `HkdfExtract` so the PRK it returns can be wiped (`Hkdf::new`
                // drops its copy unwiped); the HMAC state keeping it is wiped on drop (sha2's
                // `zeroize` feature).
                let mut extract = hkdf::HkdfExtract::<$h>::new(Some(salt));
                extract.input_ikm(ikm);
                let (mut prk, hk) = extract.finalize();
                prk.as_mut_slice().zeroize();
                for (info, out) in outputs.iter_mut() {
                    hk.expand_multi_info(info, out).map_err(|_| Error::Crypto("HKDF expand failed"))?;
                }
                Ok(())
            }};
        }
        match hash {
            HashAlg::Sha256 => run!(sha2::Sha256),
            HashAlg::Sha384 => run!(sha2::Sha384),
            HashAlg::Sha512 => run!(sha2::Sha512),
            HashAlg::Sha1 => Err(Error::Crypto("HKDF-SHA1 is not used by any suite")),
        }
    }

    fn hasher(&self, hash: HashAlg) -> Box<dyn Hasher> {
        match hash {
            HashAlg::Sha1 => Box::new(Hash(sha1::Sha1::new())),
            HashAlg::Sha256 => Box::new(Hash(sha2::Sha256::new())),
            HashAlg::Sha384 => Box::new(Hash(sha2::Sha384::new())),
            HashAlg::Sha512 => Box::new(Hash(sha2::Sha512::new())),
        }
    }

    fn hmac_sha256(&self, key: &[u8], parts: &[&[u8]]) -> Result<Zeroizing<[u8; 32]>> {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(key)
            .map_err(|_| Error::Crypto("HMAC-SHA-256 refused the key"))?;
        for part in parts {
            mac.update(part);
        }
        let mut out = Zeroizing::new([0u8; 32]);
        let mut tag = mac.finalize().into_bytes();
        out.copy_from_slice(&tag);
        tag[..].zeroize();
        Ok(out)
    }

    fn hmac_sha384(&self, key: &[u8], parts: &[&[u8]]) -> Result<Zeroizing<[u8; 48]>> {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha384> as hmac::digest::KeyInit>::new_from_slice(key)
            .map_err(|_| Error::Crypto("HMAC-SHA-384 refused the key"))?;
        for part in parts {
            mac.update(part);
        }
        let mut out = Zeroizing::new([0u8; 48]);
        let mut tag = mac.finalize().into_bytes();
        out.copy_from_slice(&tag);
        tag[..].zeroize();
        Ok(out)
    }

    fn ecdh_generate(&self, curve: EcdhCurve) -> Result<Box<dyn EcdhPrivate>> {
        match curve {
            EcdhCurve::P256 => Ecdh::<p256::NistP256>::generate(),
            EcdhCurve::P384 => Ecdh::<p384::NistP384>::generate(),
            EcdhCurve::P521 => Ecdh::<p521::NistP521>::generate(),
        }
    }

    fn ecdh_private(&self, curve: EcdhCurve, pkcs8_der: &[u8]) -> Result<Box<dyn EcdhPrivate>> {
        match curve {
            EcdhCurve::P256 => Ecdh::<p256::NistP256>::from_pkcs8(pkcs8_der),
            EcdhCurve::P384 => Ecdh::<p384::NistP384>::from_pkcs8(pkcs8_der),
            EcdhCurve::P521 => Ecdh::<p521::NistP521>::from_pkcs8(pkcs8_der),
        }
    }

    fn ecdh_public(&self, curve: EcdhCurve, sec1_point: &[u8]) -> Result<Vec<u8>> {
        match curve {
            EcdhCurve::P256 => Ecdh::<p256::NistP256>::uncompressed(sec1_point),
            EcdhCurve::P384 => Ecdh::<p384::NistP384>::uncompressed(sec1_point),
            EcdhCurve::P521 => Ecdh::<p521::NistP521>::uncompressed(sec1_point),
        }
        .ok_or_else(|| Error::InvalidKey(format!("not a {curve} public point")))
    }

    fn generate_ecdsa(&self, curve: Curve) -> Result<Box<dyn EcdsaSigner>> {
        Ok(Box::new(match curve {
            Curve::P256 => {
                SigningKey::P256(p256::ecdsa::SigningKey::try_generate_from_rng(&mut SysRng).map_err(no_rng)?)
            }
            Curve::P384 => {
                SigningKey::P384(p384::ecdsa::SigningKey::try_generate_from_rng(&mut SysRng).map_err(no_rng)?)
            }
        }))
    }

    fn ecdsa_verifier(&self, curve: Curve, sec1_point: &[u8]) -> Result<Box<dyn EcdsaVerifier>> {
        let bad = |_| Error::InvalidMaterials(format!("the signature verification key is not a valid {curve:?} point"));
        Ok(Box::new(match curve {
            Curve::P256 => VerifyingKey::P256(p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1_point).map_err(bad)?),
            Curve::P384 => VerifyingKey::P384(p384::ecdsa::VerifyingKey::from_sec1_bytes(sec1_point).map_err(bad)?),
        }))
    }

    fn rsa_public(&self, spki_der: &[u8]) -> Result<Box<dyn RsaPublic>> {
        let key = rsa::PublicKey::from_public_key_der(spki_der)
            .map_err(|e| Error::InvalidKey(format!("not an RSA SubjectPublicKeyInfo public key: {e}")))?;
        Ok(Box::new(RsaPub(key)))
    }

    fn rsa_private(&self, pkcs8_der: &[u8]) -> Result<Box<dyn RsaPrivate>> {
        let key = rsa::PrivateKey::from_pkcs8_der(pkcs8_der)
            .map_err(|e| Error::InvalidKey(format!("not an RSA PKCS#8 private key: {e}")))?;
        Ok(Box::new(RsaPriv(key)))
    }
}
