//! The primitive floor: exactly the AWS-LC operations one ESDK message of suite 0x0478 or
//! 0x0578 needs (with materials already at hand), with no message format around them. Shared by
//! the criterion benches and `examples/throughput.rs`, so ratios compare like with like.

use aws_lc_rs::{aead, digest, hkdf, hmac, rand, signature};

/// Pre-built keys and a pre-encrypted body of one size for the floor loops.
pub struct Floor {
    data_key: [u8; 32],
    signer: signature::EcdsaKeyPair,
    verifier: signature::ParsedPublicKey,
    header_aad: Vec<u8>,
    /// Decrypt inputs: header tag, body ciphertext and tag, and a valid signature over them.
    header_tag: Vec<u8>,
    body: Vec<u8>,
    body_tag: Vec<u8>,
    signature: Vec<u8>,
}

const MESSAGE_ID: [u8; 32] = [9u8; 32];

fn iv(n: u32) -> aead::Nonce {
    let mut iv = [0u8; 12];
    iv[8..].copy_from_slice(&n.to_be_bytes());
    aead::Nonce::assume_unique_for_key(iv)
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

impl Floor {
    /// A floor for messages of `size` plaintext bytes.
    pub fn new(size: usize) -> Self {
        use signature::KeyPair;
        let signer = signature::EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_ASN1_SIGNING).unwrap();
        let verifier = signature::UnparsedPublicKey::new(
            &signature::ECDSA_P384_SHA384_ASN1,
            signer.public_key().as_ref().to_vec(),
        )
        .parse()
        .unwrap();
        let mut floor = Self {
            data_key: [7; 32],
            signer,
            verifier,
            header_aad: vec![0x5a; 160],
            header_tag: Vec::new(),
            body: vec![0x33; size],
            body_tag: Vec::new(),
            signature: Vec::new(),
        };
        let key = floor.message_key(&MESSAGE_ID);
        floor.header_tag = key
            .seal_in_place_separate_tag(iv(0), aead::Aad::from(&floor.header_aad), &mut [])
            .unwrap()
            .as_ref()
            .to_vec();
        let mut body = std::mem::take(&mut floor.body);
        floor.body_tag =
            key.seal_in_place_separate_tag(iv(1), aead::Aad::from(&MESSAGE_ID), &mut body).unwrap().as_ref().to_vec();
        floor.body = body;
        let digest = floor.transcript_digest(&floor.body, &floor.body_tag);
        floor.signature = floor.signer.sign_digest(&digest).unwrap().as_ref().to_vec();
        floor
    }

    fn transcript_digest(&self, body: &[u8], body_tag: &[u8]) -> digest::Digest {
        let mut h = digest::Context::new(&digest::SHA384);
        h.update(&self.header_aad);
        h.update(&self.header_tag);
        h.update(body);
        h.update(body_tag);
        h.finish()
    }

    /// Derives the message key and commit key (one extract, two expands) and builds the GCM key.
    fn message_key(&self, message_id: &[u8; 32]) -> aead::LessSafeKey {
        // `hkdf::Salt::extract` would extract again inside each expansion; one HMAC is the extract.
        let extracted = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA512, message_id), &self.data_key);
        let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA512, extracted.as_ref());
        let mut key = [0u8; 32];
        let mut commit = [0u8; 32];
        prk.expand(&[b"\x04\x78", b"DERIVEKEY"], Len(32)).unwrap().fill(&mut key).unwrap();
        prk.expand(&[b"COMMITKEY"], Len(32)).unwrap().fill(&mut commit).unwrap();
        std::hint::black_box(&commit);
        aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_256_GCM, &key).unwrap())
    }

    /// AES-256-GCM over `buf` alone, with a ready key: the narrowest floor.
    pub fn gcm_only(key: &aead::LessSafeKey, buf: &mut [u8]) {
        let tag = key
            .seal_in_place_separate_tag(aead::Nonce::assume_unique_for_key([0; 12]), aead::Aad::from(&[0u8; 8]), buf)
            .unwrap();
        let _ = std::hint::black_box(tag);
    }

    /// A ready AES-256-GCM key for [`Self::gcm_only`].
    pub fn gcm_key() -> aead::LessSafeKey {
        aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_256_GCM, &[3; 32]).unwrap())
    }

    /// Everything one encrypt needs: message id, KDF, header tag, body (`buf`), and for a
    /// signed message the SHA-384 of header and body plus one ECDSA signature.
    pub fn encrypt(&self, buf: &mut [u8], signed: bool) {
        let mut message_id = [0u8; 32];
        rand::fill(&mut message_id).unwrap();
        let key = self.message_key(&message_id);
        let header_tag = key.seal_in_place_separate_tag(iv(0), aead::Aad::from(&self.header_aad), &mut []).unwrap();
        let tag = key.seal_in_place_separate_tag(iv(1), aead::Aad::from(&message_id), buf).unwrap();
        if signed {
            let mut h = digest::Context::new(&digest::SHA384);
            h.update(&self.header_aad);
            h.update(header_tag.as_ref());
            h.update(buf);
            h.update(tag.as_ref());
            std::hint::black_box(self.signer.sign_digest(&h.finish()).unwrap());
        }
        let _ = std::hint::black_box(tag);
    }

    /// Everything one decrypt needs: KDF, header tag check, copy and open the body into `buf`,
    /// and for a signed message SHA-384 plus one ECDSA verification.
    pub fn decrypt(&self, buf: &mut Vec<u8>, signed: bool) {
        let key = self.message_key(&MESSAGE_ID);
        key.open_in_place_separate_tag(iv(0), aead::Aad::from(&self.header_aad), &self.header_tag, &mut []).unwrap();
        buf.clear();
        buf.extend_from_slice(&self.body);
        key.open_in_place_separate_tag(iv(1), aead::Aad::from(&MESSAGE_ID), &self.body_tag, buf).unwrap();
        if signed {
            let digest = self.transcript_digest(&self.body, &self.body_tag);
            assert!(self.verifier.verify_digest_sig(&digest, &self.signature).is_ok());
        }
    }
}
