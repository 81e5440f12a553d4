//! The encrypt state machine shared by one-shot and streaming encryption
//! (spec `client-apis/encrypt.md`). Sans-IO: it appends message bytes to a caller's buffer.

use crate::crypto::kdf::{self, MessageKeys};
use crate::crypto::{self, AeadKey, Hasher, Provider};
use crate::error::{Error, Result};
use crate::format::body::{self, BodyAad, BodyKind};
use crate::format::footer;
use crate::format::header::{self, ContentType, MessageHeader};
use crate::materials::{EncryptionMaterials, SigningKey};

/// Encrypts one message frame by frame.
pub(crate) struct Encryptor {
    key: Box<dyn AeadKey>,
    message_id: Vec<u8>,
    frame_len: u32,
    next_seq: u32,
    signer: Option<(SigningKey, Box<dyn Hasher>)>,
    finished: bool,
}

impl Encryptor {
    /// Checks the materials, derives the keys and appends the authenticated header to `out`.
    pub(crate) fn start(
        provider: &'static dyn Provider,
        materials: EncryptionMaterials,
        frame_len: u32,
        max_encrypted_data_keys: Option<u16>,
        out: &mut Vec<u8>,
    ) -> Result<(Self, MessageHeader)> {
        let m = materials.into_parts();
        let suite = m.suite;
        if frame_len == 0 {
            return Err(Error::InvalidConfig("frame length must be at least 1".into()));
        }
        if let Some(max) = max_encrypted_data_keys {
            if m.encrypted_data_keys.len() > max as usize {
                return Err(Error::TooManyEncryptedDataKeys {
                    found: m.encrypted_data_keys.len(),
                    limit: max as usize,
                });
            }
        }
        let data_key = m.data_key.ok_or_else(|| Error::InvalidMaterials("no plaintext data key".into()))?;
        if suite.is_signed() != m.signing_key.is_some() {
            return Err(Error::InvalidMaterials(format!("suite {suite} and the presence of a signing key disagree")));
        }
        for k in &m.required_encryption_context_keys {
            if !m.encryption_context.contains_key(k) {
                return Err(Error::InvalidMaterials(format!("required encryption context key {k:?} has no value")));
            }
        }

        let mut message_id = vec![0u8; suite.message_format_version().message_id_len()];
        crypto::fill_random(&mut message_id)?;
        let MessageKeys { aead, commitment } = kdf::derive(provider, suite, data_key.expose_secret(), &message_id)?;
        drop(data_key);

        let required_only = m.encryption_context.subset(m.required_encryption_context_keys.iter().map(String::as_str));
        let mut stored = m.encryption_context;
        for k in &m.required_encryption_context_keys {
            stored.remove(k);
        }
        let header = MessageHeader {
            suite,
            message_id: message_id.clone(),
            encryption_context: stored,
            encrypted_data_keys: m.encrypted_data_keys,
            content_type: ContentType::Framed,
            frame_length: frame_len,
            header_iv: [0u8; 12],
            commitment: commitment.as_deref().copied(),
        };
        header.check_serializable()?;
        required_only.check_serializable()?;

        let start = out.len();
        header.serialize_body_into(out);
        let mut aad = Vec::with_capacity(out.len() - start + required_only.serialized_len());
        aad.extend_from_slice(&out[start..]);
        required_only.serialize_into(&mut aad);
        let tag = aead.seal_in_place(&header.header_iv, &aad, &mut [])?;
        if header.version() == crate::suite::MessageFormatVersion::V1 {
            out.extend_from_slice(&header.header_iv);
        }
        out.extend_from_slice(&tag);
        debug_assert_eq!(out.len() - start, header.body_len() + header::auth_len(header.version()));

        let signer = match m.signing_key {
            Some(key) => {
                let mut h = provider.hasher(key.curve().hash());
                h.update(&out[start..]);
                Some((key, h))
            }
            None => None,
        };
        Ok((Self { key: aead, message_id, frame_len, next_seq: 1, signer, finished: false }, header))
    }

    /// The frame length in use.
    pub(crate) fn frame_len(&self) -> u32 {
        self.frame_len
    }

    /// Appends one regular frame; `plaintext` must be exactly one frame long.
    pub(crate) fn regular_frame(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if plaintext.len() != self.frame_len as usize {
            return Err(Error::InvalidConfig("a regular frame must be exactly one frame length".into()));
        }
        // The final frame needs a sequence number too, so regular frames stop at 2^32 - 2.
        if self.next_seq == u32::MAX {
            return Err(Error::LimitExceeded {
                what: "frame count",
                value: u64::from(u32::MAX),
                limit: u64::from(u32::MAX),
            });
        }
        self.frame(BodyKind::Regular, plaintext, out)
    }

    /// Appends the final frame (at most one frame long) and, for signed suites, the footer.
    pub(crate) fn final_frame(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if plaintext.len() > self.frame_len as usize {
            return Err(Error::InvalidConfig("the final frame is longer than the frame length".into()));
        }
        self.frame(BodyKind::Final, plaintext, out)?;
        self.finished = true;
        if let Some((key, hasher)) = self.signer.take() {
            let digest = hasher.finish();
            let sig = key.sign_digest(&digest)?;
            footer::put(out, &sig);
        }
        Ok(())
    }

    fn frame(&mut self, kind: BodyKind, plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if self.finished {
            return Err(Error::InvalidConfig("the message is already finished".into()));
        }
        let seq = self.next_seq;
        let start = out.len();
        body::put_frame_prefix(out, kind, seq, plaintext.len());
        let ct_start = out.len();
        out.extend_from_slice(plaintext);
        let aad = BodyAad::new(&self.message_id, kind, seq, plaintext.len() as u64);
        let tag = self.key.seal_in_place(&body::frame_iv(seq), aad.as_bytes(), &mut out[ct_start..])?;
        out.extend_from_slice(&tag);
        if let Some((_, h)) = &mut self.signer {
            h.update(&out[start..]);
        }
        self.next_seq = seq.wrapping_add(1);
        Ok(())
    }
}
