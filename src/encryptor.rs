//! The encrypt state machine shared by one-shot and streaming encryption
//! (spec `client-apis/encrypt.md`). Sans-IO: it appends message bytes to a caller's buffer.

use crate::crypto::kdf::{self, MessageKeys};
use crate::crypto::{self, AeadKey, Hasher, Provider};
use crate::error::{Error, Result};
use crate::format::body::{self, BodyAad, BodyKind};
use crate::format::footer;
use crate::format::header::{self, ContentType, MessageHeader};
use crate::materials::{EncryptionMaterials, SigningKey};
use crate::parallel::Workers;

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
        let mut header = MessageHeader {
            suite,
            message_id: message_id.clone(),
            encryption_context: stored,
            encrypted_data_keys: m.encrypted_data_keys,
            content_type: ContentType::Framed,
            frame_length: frame_len,
            header_iv: [0u8; 12],
            commitment: commitment.as_deref().copied(),
            auth_tag: [0u8; 16],
        };
        header.check_serializable()?;
        required_only.check_serializable()?;

        let start = out.len();
        header.serialize_body_into(out);
        let mut aad = Vec::with_capacity(out.len() - start + required_only.serialized_len());
        aad.extend_from_slice(&out[start..]);
        required_only.serialize_into(&mut aad);
        let tag = aead.seal_in_place(&header.header_iv, &aad, &mut [])?;
        header.auth_tag = tag;
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
            return Err(Error::Internal("a regular frame must be exactly one frame length"));
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
            return Err(Error::Internal("the final frame is longer than the frame length"));
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
            return Err(Error::Internal("the message is already finished"));
        }
        let seq = self.next_seq;
        let start = out.len();
        out.resize(start + body::frame_size(kind, plaintext.len()), 0);
        seal_frame(self.key.as_ref(), &self.message_id, kind, seq, plaintext, &mut out[start..])?;
        if let Some((_, h)) = &mut self.signer {
            h.update(&out[start..]);
        }
        self.next_seq = seq.wrapping_add(1);
        Ok(())
    }

    /// One-shot: writes every frame of `plaintext` and, for signed suites, the footer into `out`,
    /// which must be exactly that long. Frames are sealed by `workers`.
    pub(crate) fn seal_all(mut self, plaintext: &[u8], out: &mut [u8], workers: Workers) -> Result<()> {
        let f = self.frame_len as usize;
        let (regular, last) = body::split_frames(plaintext.len() as u64, self.frame_len);
        if self.next_seq != 1 || regular > body::MAX_REGULAR_FRAMES {
            return Err(Error::LimitExceeded {
                what: "regular frame count",
                value: regular,
                limit: body::MAX_REGULAR_FRAMES,
            });
        }
        let regular = regular as usize;
        let regular_size = body::frame_size(BodyKind::Regular, f);
        let final_size = body::frame_size(BodyKind::Final, last as usize);
        let body_len = regular * regular_size + final_size;
        if out.len() < body_len {
            return Err(Error::Internal("output buffer shorter than the message"));
        }
        let (mut frames_out, rest) = out.split_at_mut(regular * regular_size);
        let (final_out, footer_out) = rest.split_at_mut(final_size);
        let (key, id) = (self.key.as_ref(), self.message_id.as_slice());
        // Contiguous runs of regular frames, then the final frame as a run of its own, so that it
        // too is sealed in parallel: (first frame index, frame kind, plaintext, output).
        let mut runs = Vec::new();
        for r in crate::parallel::split(regular, workers.threads) {
            let (o, tail) = std::mem::take(&mut frames_out).split_at_mut(r.len() * regular_size);
            frames_out = tail;
            runs.push((r.start, BodyKind::Regular, &plaintext[r.start * f..r.end * f], o));
        }
        runs.push((regular, BodyKind::Final, &plaintext[regular * f..], final_out));
        crate::parallel::run(runs, workers, |(first, kind, pt, o): (usize, BodyKind, &[u8], &mut [u8])| {
            if kind == BodyKind::Final {
                return seal_frame(key, id, kind, (first + 1) as u32, pt, o);
            }
            for (i, (p, o)) in pt.chunks_exact(f).zip(o.chunks_exact_mut(regular_size)).enumerate() {
                seal_frame(key, id, kind, (first + i + 1) as u32, p, o)?;
            }
            Ok::<(), Error>(())
        })?;
        self.finished = true;
        if let Some((key, mut hasher)) = self.signer.take() {
            hasher.update(&out[..body_len]);
            let sig = key.sign_digest(&hasher.finish())?;
            footer::write(&mut out[body_len..], &sig)?;
        } else if !footer_out.is_empty() {
            return Err(Error::Internal("output buffer longer than the message"));
        }
        Ok(())
    }
}

/// Seals one frame into `out` (exactly [`body::frame_size`] bytes): prefix, ciphertext, tag.
fn seal_frame(
    key: &dyn AeadKey,
    message_id: &[u8],
    kind: BodyKind,
    seq: u32,
    plaintext: &[u8],
    out: &mut [u8],
) -> Result<()> {
    let prefix = body::write_frame_prefix(out, kind, seq, plaintext.len());
    let (ciphertext, tag_out) = out[prefix..].split_at_mut(plaintext.len());
    let aad = BodyAad::new(message_id, kind, seq, plaintext.len() as u64);
    let tag = key.seal_to(&body::frame_iv(seq), aad.as_bytes(), plaintext, ciphertext)?;
    tag_out.copy_from_slice(&tag);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Backend;

    fn encryptor(frame_len: u32) -> Encryptor {
        let provider = Backend::default().provider();
        Encryptor {
            key: provider.aes_gcm(&[7u8; 32]).unwrap(),
            message_id: vec![0x42; 32],
            frame_len,
            next_seq: 1,
            signer: None,
            finished: false,
        }
    }

    #[test]
    fn parallel_frames_are_byte_identical_to_sequential_ones() {
        let plaintext: Vec<u8> = (0..(3 << 20) + 4097).map(|i| (i * 31 % 251) as u8).collect();
        for frame_len in [1000u32, 4096, 65536] {
            let body = body::framed_body_len(plaintext.len() as u64, frame_len) as usize;
            let mut sequential = vec![0u8; body];
            encryptor(frame_len).seal_all(&plaintext, &mut sequential, Workers::ONE).unwrap();
            // The frame-by-frame (streaming) path agrees too.
            let mut streamed = Vec::new();
            let mut e = encryptor(frame_len);
            let (regular, _) = body::split_frames(plaintext.len() as u64, frame_len);
            let cut = regular as usize * frame_len as usize;
            for chunk in plaintext[..cut].chunks_exact(frame_len as usize) {
                e.regular_frame(chunk, &mut streamed).unwrap();
            }
            e.final_frame(&plaintext[cut..], &mut streamed).unwrap();
            assert_eq!(streamed, sequential);
            for threads in [2, 3, 8] {
                let mut parallel = vec![0u8; body];
                encryptor(frame_len)
                    .seal_all(&plaintext, &mut parallel, Workers { threads, linger: std::time::Duration::ZERO })
                    .unwrap();
                assert!(parallel == sequential, "frame {frame_len}, {threads} threads");
            }
        }
    }
}
