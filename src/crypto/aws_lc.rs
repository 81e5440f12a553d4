//! [`Provider`] on AWS-LC (`aws-lc-rs`).

use aws_lc_rs::encoding::{AsBigEndian, AsDer, EcPublicKeyCompressedBin};
use aws_lc_rs::signature::{self, KeyPair};
use aws_lc_rs::{aead, agreement, digest, hkdf, hmac, rsa};
use zeroize::Zeroizing;

use super::{
    AeadKey, AuthFailed, EcdhPrivate, EcdsaSigner, EcdsaVerifier, Hasher, Provider, RsaPadding, RsaPrivate, RsaPublic,
};
use crate::error::{Error, Result};
use crate::keyring::ecdh::EcdhCurve;
use crate::suite::{Curve, HashAlg};

pub(crate) struct AwsLc;

fn ecdh_alg(curve: EcdhCurve) -> &'static agreement::Algorithm {
    match curve {
        EcdhCurve::P256 => &agreement::ECDH_P256,
        EcdhCurve::P384 => &agreement::ECDH_P384,
        EcdhCurve::P521 => &agreement::ECDH_P521,
    }
}

/// An ECDH key; AWS-LC wipes the scalar when it is freed.
struct Ecdh {
    key: agreement::PrivateKey,
    public: Vec<u8>,
}

impl Ecdh {
    fn new(key: agreement::PrivateKey) -> Result<Self> {
        let public = key
            .compute_public_key()
            .map_err(|_| Error::Crypto("ECDH public key computation failed"))?
            .as_ref()
            .to_vec();
        Ok(Self { key, public })
    }
}

impl EcdhPrivate for Ecdh {
    fn public_point(&self) -> &[u8] {
        &self.public
    }

    fn agree(&self, peer_sec1: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let peer = agreement::UnparsedPublicKey::new(self.key.algorithm(), peer_sec1);
        agreement::agree(&self.key, peer, Error::Crypto("ECDH refused the peer's public key"), |secret| {
            Ok(Zeroizing::new(secret.to_vec()))
        })
    }
}

struct Gcm(aead::LessSafeKey);

impl AeadKey for Gcm {
    fn seal_in_place(&self, iv: &[u8; 12], aad: &[u8], in_out: &mut [u8]) -> Result<[u8; 16]> {
        let tag = self
            .0
            .seal_in_place_separate_tag(aead::Nonce::assume_unique_for_key(*iv), aead::Aad::from(aad), in_out)
            .map_err(|_| Error::Crypto("AES-GCM encryption failed"))?;
        let mut out = [0u8; 16];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    fn open_in_place(&self, iv: &[u8; 12], aad: &[u8], in_out: &mut [u8], tag: &[u8]) -> Result<(), AuthFailed> {
        let nonce = aead::Nonce::assume_unique_for_key(*iv);
        if self.0.open_in_place_separate_tag(nonce, aead::Aad::from(aad), tag, in_out).is_err() {
            in_out.fill(0);
            return Err(AuthFailed);
        }
        Ok(())
    }

    fn seal_to(&self, iv: &[u8; 12], aad: &[u8], plaintext: &[u8], out: &mut [u8]) -> Result<[u8; 16]> {
        let mut tag = [0u8; 16];
        self.0
            .seal_out_of_place_scatter(
                aead::Nonce::assume_unique_for_key(*iv),
                aead::Aad::from(aad),
                plaintext,
                out,
                &[],
                &mut tag,
            )
            .map_err(|_| Error::Crypto("AES-GCM encryption failed"))?;
        Ok(tag)
    }

    fn open_to(
        &self,
        iv: &[u8; 12],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8],
        out: &mut [u8],
    ) -> Result<(), AuthFailed> {
        let nonce = aead::Nonce::assume_unique_for_key(*iv);
        if self.0.open_separate_gather(nonce, aead::Aad::from(aad), ciphertext, tag, out).is_err() {
            out.fill(0);
            return Err(AuthFailed);
        }
        Ok(())
    }
}

struct Hash(digest::Context);

impl Hasher for Hash {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    fn finish(self: Box<Self>) -> Vec<u8> {
        self.0.finish().as_ref().to_vec()
    }
}

fn digest_alg(hash: HashAlg) -> &'static digest::Algorithm {
    match hash {
        HashAlg::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        HashAlg::Sha256 => &digest::SHA256,
        HashAlg::Sha384 => &digest::SHA384,
        HashAlg::Sha512 => &digest::SHA512,
    }
}

struct Signer {
    pair: signature::EcdsaKeyPair,
    hash: &'static digest::Algorithm,
}

impl EcdsaSigner for Signer {
    fn compressed_public_key(&self) -> Result<Vec<u8>> {
        let bin: EcPublicKeyCompressedBin<'static> =
            self.pair.public_key().as_be_bytes().map_err(|_| Error::Crypto("EC public key compression failed"))?;
        Ok(bin.as_ref().to_vec())
    }

    fn sign_digest(&self, d: &[u8]) -> Result<Vec<u8>> {
        let d = digest::Digest::import_less_safe(d, self.hash).map_err(|_| Error::Crypto("digest length mismatch"))?;
        let sig = self.pair.sign_digest(&d).map_err(|_| Error::Crypto("ECDSA signing failed"))?;
        Ok(sig.as_ref().to_vec())
    }
}

struct Verifier {
    key: signature::ParsedPublicKey,
    hash: &'static digest::Algorithm,
}

impl EcdsaVerifier for Verifier {
    fn verify_digest(&self, d: &[u8], der_signature: &[u8]) -> bool {
        match digest::Digest::import_less_safe(d, self.hash) {
            Ok(d) => self.key.verify_digest_sig(&d, der_signature).is_ok(),
            Err(_) => false,
        }
    }
}

struct RsaPub(rsa::PublicEncryptingKey);

impl RsaPublic for RsaPub {
    fn modulus_bits(&self) -> usize {
        self.0.key_size_bits()
    }

    fn encrypt(&self, padding: RsaPadding, plaintext: &[u8]) -> Result<Vec<u8>> {
        let fail = |_| Error::Crypto("RSA encryption failed (is the data key too long for the key and padding?)");
        let mut out = vec![0u8; self.0.key_size_bytes()];
        let n = match oaep_alg(padding) {
            None => rsa::Pkcs1PublicEncryptingKey::new(self.0.clone())
                .map_err(fail)?
                .encrypt(plaintext, &mut out)
                .map_err(fail)?
                .len(),
            Some(alg) => rsa::OaepPublicEncryptingKey::new(self.0.clone())
                .map_err(fail)?
                .encrypt(alg, plaintext, &mut out, None)
                .map_err(fail)?
                .len(),
        };
        out.truncate(n);
        Ok(out)
    }
}

struct RsaPriv(rsa::PrivateDecryptingKey);

impl RsaPrivate for RsaPriv {
    fn decrypt(&self, padding: RsaPadding, ciphertext: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let mut out = Zeroizing::new(vec![0u8; self.0.key_size_bytes()]);
        let n = match oaep_alg(padding) {
            None => rsa::Pkcs1PrivateDecryptingKey::new(self.0.clone()).ok()?.decrypt(ciphertext, &mut out).ok()?.len(),
            Some(alg) => rsa::OaepPrivateDecryptingKey::new(self.0.clone())
                .ok()?
                .decrypt(alg, ciphertext, &mut out, None)
                .ok()?
                .len(),
        };
        out.truncate(n);
        Some(out)
    }
}

fn oaep_alg(padding: RsaPadding) -> Option<&'static rsa::OaepAlgorithm> {
    match padding {
        RsaPadding::Pkcs1 => None,
        RsaPadding::OaepSha1 => Some(&rsa::OAEP_SHA1_MGF1SHA1),
        RsaPadding::OaepSha256 => Some(&rsa::OAEP_SHA256_MGF1SHA256),
        RsaPadding::OaepSha384 => Some(&rsa::OAEP_SHA384_MGF1SHA384),
        RsaPadding::OaepSha512 => Some(&rsa::OAEP_SHA512_MGF1SHA512),
    }
}

impl Provider for AwsLc {
    fn name(&self) -> &'static str {
        "aws-lc-rs"
    }

    fn aes_gcm(&self, key: &[u8]) -> Result<Box<dyn AeadKey>> {
        let alg = match key.len() {
            16 => &aead::AES_128_GCM,
            24 => &aead::AES_192_GCM,
            32 => &aead::AES_256_GCM,
            _ => return Err(Error::InvalidKey(format!("AES-GCM key of {} bytes; expected 16, 24 or 32", key.len()))),
        };
        let key = aead::UnboundKey::new(alg, key).map_err(|_| Error::Crypto("AES-GCM key setup failed"))?;
        Ok(Box::new(Gcm(aead::LessSafeKey::new(key))))
    }

    fn hkdf(&self, hash: HashAlg, salt: &[u8], ikm: &[u8], outputs: &mut [(&[&[u8]], &mut [u8])]) -> Result<()> {
        let (alg, mac) = match hash {
            HashAlg::Sha256 => (hkdf::HKDF_SHA256, hmac::HMAC_SHA256),
            HashAlg::Sha384 => (hkdf::HKDF_SHA384, hmac::HMAC_SHA384),
            HashAlg::Sha512 => (hkdf::HKDF_SHA512, hmac::HMAC_SHA512),
            HashAlg::Sha1 => return Err(Error::Crypto("HKDF-SHA1 is not used by any suite")),
        };
        // HKDF-Extract (RFC 5869, section 2.2) is HMAC(salt, IKM); it is computed once here and
        // expanded per output. (`hkdf::Salt::extract` only stores its inputs and extracts again
        // inside every expansion: two extracts per committing-suite message.) An empty salt is
        // the RFC's string of zeros: HMAC pads its key with zeros either way. The PRK then lives
        // in `hkdf::Prk`, which aws-lc-rs wipes on drop; the `hmac::Tag` it is copied from is a
        // stack value aws-lc-rs offers no way to wipe (that would take `unsafe`, or `Salt::extract`
        // at one more HMAC per expansion).
        let prk = hkdf::Prk::new_less_safe(alg, hmac::sign(&hmac::Key::new(mac, salt), ikm).as_ref());
        for (info, out) in outputs.iter_mut() {
            let okm = prk.expand(info, OkmLen(out.len())).map_err(|_| Error::Crypto("HKDF expand failed"))?;
            okm.fill(out).map_err(|_| Error::Crypto("HKDF expand failed"))?;
        }
        Ok(())
    }

    fn hasher(&self, hash: HashAlg) -> Box<dyn Hasher> {
        Box::new(Hash(digest::Context::new(digest_alg(hash))))
    }

    fn hmac_sha256(&self, key: &[u8], parts: &[&[u8]]) -> Result<Zeroizing<[u8; 32]>> {
        let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, key));
        for part in parts {
            ctx.update(part);
        }
        let mut out = Zeroizing::new([0u8; 32]);
        // The `hmac::Tag` is a stack value aws-lc-rs offers no way to wipe (as in `hkdf` above);
        // the copy the caller keeps is wiped on drop.
        out.copy_from_slice(ctx.sign().as_ref());
        Ok(out)
    }

    fn hmac_sha384(&self, key: &[u8], parts: &[&[u8]]) -> Result<Zeroizing<[u8; 48]>> {
        let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA384, key));
        for part in parts {
            ctx.update(part);
        }
        let mut out = Zeroizing::new([0u8; 48]);
        out.copy_from_slice(ctx.sign().as_ref());
        Ok(out)
    }

    fn ecdh_generate(&self, curve: EcdhCurve) -> Result<Box<dyn EcdhPrivate>> {
        let key = agreement::PrivateKey::generate(ecdh_alg(curve))
            .map_err(|_| Error::Crypto("ECDH key generation failed"))?;
        Ok(Box::new(Ecdh::new(key)?))
    }

    fn ecdh_private(&self, curve: EcdhCurve, pkcs8_der: &[u8]) -> Result<Box<dyn EcdhPrivate>> {
        let key = agreement::PrivateKey::from_private_key_der(ecdh_alg(curve), pkcs8_der)
            .map_err(|e| Error::InvalidKey(format!("not a PKCS#8 {curve} private key: {e}")))?;
        Ok(Box::new(Ecdh::new(key)?))
    }

    fn ecdh_public(&self, curve: EcdhCurve, sec1_point: &[u8]) -> Result<Vec<u8>> {
        let alg = match curve {
            EcdhCurve::P256 => &signature::ECDSA_P256_SHA256_ASN1,
            EcdhCurve::P384 => &signature::ECDSA_P384_SHA384_ASN1,
            EcdhCurve::P521 => &signature::ECDSA_P521_SHA512_ASN1,
        };
        let bad = || Error::InvalidKey(format!("not a {curve} public point"));
        let key = signature::ParsedPublicKey::new(alg, sec1_point).map_err(|_| bad())?;
        // AWS-LC writes the SubjectPublicKeyInfo with the point uncompressed.
        let der = key.as_der().map_err(|_| bad())?;
        Ok(curve.point_from_spki(der.as_ref())?.to_vec())
    }

    fn generate_ecdsa(&self, curve: Curve) -> Result<Box<dyn EcdsaSigner>> {
        let alg = match curve {
            Curve::P256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            Curve::P384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        };
        let pair = signature::EcdsaKeyPair::generate(alg).map_err(|_| Error::Crypto("ECDSA key generation failed"))?;
        Ok(Box::new(Signer { pair, hash: digest_alg(curve.hash()) }))
    }

    fn ecdsa_verifier(&self, curve: Curve, sec1_point: &[u8]) -> Result<Box<dyn EcdsaVerifier>> {
        let alg = match curve {
            Curve::P256 => &signature::ECDSA_P256_SHA256_ASN1,
            Curve::P384 => &signature::ECDSA_P384_SHA384_ASN1,
        };
        // Only raw SEC1 points: refuse anything that is not 0x02/0x03/0x04-prefixed of the right size,
        // so an X.509 structure smuggled into the context is not accepted either.
        let n = curve.compressed_point_len();
        let ok_len = (sec1_point.len() == n && matches!(sec1_point[0], 2 | 3))
            || (sec1_point.len() == 2 * n - 1 && sec1_point[0] == 4);
        if !ok_len {
            return Err(Error::InvalidMaterials(format!(
                "the signature verification key is not a {curve:?} SEC1 point"
            )));
        }
        let key = signature::UnparsedPublicKey::new(alg, sec1_point).parse().map_err(|_| {
            Error::InvalidMaterials(format!("the signature verification key is not a valid {curve:?} point"))
        })?;
        Ok(Box::new(Verifier { key, hash: digest_alg(curve.hash()) }))
    }

    fn rsa_public(&self, spki_der: &[u8]) -> Result<Box<dyn RsaPublic>> {
        let key = rsa::PublicEncryptingKey::from_der(spki_der)
            .map_err(|e| Error::InvalidKey(format!("not an RSA SubjectPublicKeyInfo public key: {e}")))?;
        Ok(Box::new(RsaPub(key)))
    }

    fn rsa_private(&self, pkcs8_der: &[u8]) -> Result<Box<dyn RsaPrivate>> {
        let key = rsa::PrivateDecryptingKey::from_pkcs8(pkcs8_der)
            .map_err(|e| Error::InvalidKey(format!("not an RSA PKCS#8 private key: {e}")))?;
        Ok(Box::new(RsaPriv(key)))
    }
}

struct OkmLen(usize);

impl hkdf::KeyType for OkmLen {
    fn len(&self) -> usize {
        self.0
    }
}
