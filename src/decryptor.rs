//! The decrypt state machine shared by one-shot and streaming decryption
//! (spec `client-apis/decrypt.md`). Sans-IO: the caller offers buffered input, the machine
//! consumes whole frames and appends their plaintext to the caller's buffer.

use crate::crypto::kdf::{self, MessageKeys};
use crate::crypto::{AeadKey, Hasher, Provider};
use crate::error::{Error, Result};
use crate::format::body::{self, BodyAad, FrameRef, Read};
use crate::format::footer::{self, Footer};
use crate::format::header::{ContentType, ParsedHeader};
use crate::materials::{DecryptionMaterials, VerificationKey};
use crate::parallel::Workers;
use crate::suite::Curve;

/// What one call to [`Decryptor::step`] achieved.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The input must hold at least this many bytes before progress is possible.
    Need(usize),
    /// A frame (or the footer) was consumed; `plaintext` bytes were appended.
    Consumed { bytes: usize, plaintext: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Body,
    Footer,
    Done,
}

/// Decrypts the body of one message whose header has been authenticated.
pub(crate) struct Decryptor {
    key: Box<dyn AeadKey>,
    message_id: Vec<u8>,
    content_type: ContentType,
    frame_len: u32,
    max_body_len: u64,
    next_seq: u32,
    stage: Stage,
    verifier: Option<(VerificationKey, Box<dyn Hasher>, Curve)>,
}

impl Decryptor {
    /// Derives the message key, checks key commitment and the header authentication tag
    /// (`client-apis/decrypt.md`, "Verify the header"), and prepares the body state machine.
    ///
    /// `header_bytes` are the header body and authentication fields exactly as read.
    pub(crate) fn new(
        provider: &'static dyn Provider,
        parsed: &ParsedHeader,
        header_bytes: &[u8],
        materials: DecryptionMaterials,
        max_body_len: u64,
        max_frame_len: u32,
    ) -> Result<Self> {
        let header = &parsed.header;
        if header.frame_length > max_frame_len {
            return Err(Error::LimitExceeded {
                what: "frame length",
                value: u64::from(header.frame_length),
                limit: u64::from(max_frame_len),
            });
        }
        if materials.suite() != header.suite {
            return Err(Error::InvalidMaterials(format!(
                "materials are for suite {}, the message uses {}",
                materials.suite(),
                header.suite
            )));
        }
        let (data_key, verification_key, ec, required_keys) = materials.into_parts();
        let data_key = data_key.ok_or_else(|| Error::InvalidMaterials("no plaintext data key".into()))?;
        let MessageKeys { aead, commitment } =
            kdf::derive(provider, header.suite, data_key.expose_secret(), &header.message_id)?;
        drop(data_key);
        if let Some(derived) = &commitment {
            kdf::check_commitment(derived, header.commitment.as_ref().map_or(&[][..], |c| &c[..]))?;
        }

        // Header AAD: the header body as read, then the required-only context serialized by us.
        let required_only = ec.subset(required_keys.iter().map(String::as_str));
        required_only.check_serializable()?;
        let mut aad = Vec::with_capacity(parsed.body_len + required_only.serialized_len());
        aad.extend_from_slice(&header_bytes[..parsed.body_len]);
        required_only.serialize_into(&mut aad);
        aead.open_in_place(&header.header_iv, &aad, &mut [], &header.auth_tag)
            .map_err(|_| Error::HeaderAuthentication)?;

        let verifier = match (header.suite.signature(), verification_key) {
            (Some(curve), Some(key)) => {
                let mut h = provider.hasher(curve.hash());
                h.update(&header_bytes[..parsed.total_len]);
                Some((key, h, curve))
            }
            (Some(_), None) => return Err(Error::InvalidMaterials("signed suite but no verification key".into())),
            (None, _) => None,
        };
        Ok(Self {
            key: aead,
            message_id: header.message_id.clone(),
            content_type: header.content_type,
            frame_len: header.frame_length,
            max_body_len,
            next_seq: 1,
            stage: Stage::Body,
            verifier,
        })
    }

    /// Whether the whole message (including any footer) has been verified.
    pub(crate) fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// Whether the body is complete and only the footer (signature) remains.
    pub(crate) fn awaiting_footer(&self) -> bool {
        self.stage == Stage::Footer
    }

    /// The part of the message the machine is waiting for, for truncation errors.
    pub(crate) fn expecting(&self) -> &'static str {
        match (self.stage, self.content_type) {
            (Stage::Body, ContentType::Framed) => "message body (a frame, or the final frame, is missing)",
            (Stage::Body, ContentType::NonFramed) => "non-framed message body",
            (Stage::Footer, _) => "footer (signature)",
            (Stage::Done, _) => "nothing",
        }
    }

    /// Consumes at most one frame or the footer from the start of `input`.
    pub(crate) fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Step> {
        match self.stage {
            Stage::Body => {
                let read = match self.content_type {
                    ContentType::Framed => body::read_frame(input, self.frame_len)?,
                    ContentType::NonFramed => body::read_non_framed(input, self.max_body_len)?,
                };
                match read {
                    Read::Need(n) => Ok(Step::Need(n)),
                    Read::Frame(frame, used) => {
                        let n = self.open_frame(&frame, out)?;
                        if let Some((_, h, _)) = &mut self.verifier {
                            h.update(&input[..used]);
                        }
                        if frame.kind != body::BodyKind::Regular {
                            self.stage = if self.verifier.is_some() { Stage::Footer } else { Stage::Done };
                        }
                        Ok(Step::Consumed { bytes: used, plaintext: n })
                    }
                }
            }
            Stage::Footer => {
                let Some((key, _, curve)) = &self.verifier else {
                    return Err(Error::Internal("decrypt state: footer stage without verifier"));
                };
                match footer::read(input, curve.max_signature_len())? {
                    Footer::Need(n) => Ok(Step::Need(n)),
                    Footer::Signature(sig, used) => {
                        let key = key.clone();
                        let (_, hasher, _) =
                            self.verifier.take().ok_or(Error::Internal("decrypt state: footer without verifier"))?;
                        let digest = hasher.finish();
                        if !key.verify_digest(&digest, sig) {
                            return Err(Error::Signature("the footer signature does not match the message"));
                        }
                        self.stage = Stage::Done;
                        Ok(Step::Consumed { bytes: used, plaintext: 0 })
                    }
                }
            }
            Stage::Done => Ok(Step::Consumed { bytes: 0, plaintext: 0 }),
        }
    }

    /// One-shot decryption of a framed body and its footer from `input` (everything after the
    /// header). Frames are located first (no crypto; regular frames have a fixed size, so nothing
    /// is stored per frame), then opened straight into one plaintext buffer on up to `threads`
    /// threads, then the signature is checked. Errors are those the frame-by-frame path reports,
    /// for the first frame it would have failed at. Returns the plaintext and the bytes consumed.
    /// `out` is resized to the plaintext (a fresh zeroed allocation when it has no capacity,
    /// otherwise reused without zeroing: every byte is overwritten).
    pub(crate) fn open_all(&mut self, input: &[u8], workers: Workers, out: &mut Vec<u8>) -> Result<usize> {
        if self.content_type != ContentType::Framed || self.stage != Stage::Body || self.next_seq != 1 {
            return Err(Error::Internal("decrypt state: open_all needs a fresh framed body"));
        }
        let f = self.frame_len as usize;
        let regular_size = body::REGULAR_FRAME_OVERHEAD + f;
        let mut regular = 0usize;
        let mut pos = 0usize;
        let mut last: Option<(usize, usize)> = None; // final frame: offset, content length
        let scan_error = loop {
            match body::read_frame(&input[pos..], self.frame_len) {
                Ok(Read::Need(_)) => break Some(Error::Truncated { what: self.expecting() }),
                Err(e) => break Some(e),
                Ok(Read::Frame(frame, used)) => {
                    let expected = regular as u64 + 1;
                    if u64::from(frame.seq) != expected {
                        break Some(Error::BodyAuthentication {
                            sequence: expected as u32,
                            reason: "frame out of sequence (a frame is missing, duplicated or reordered)",
                        });
                    }
                    if frame.kind != body::BodyKind::Regular {
                        last = Some((pos, frame.ciphertext.len()));
                        pos += used;
                        break None;
                    }
                    regular += 1;
                    pos += used;
                }
            }
        };
        // Bounded by the input: every byte of plaintext is a byte of ciphertext in `input`.
        let plaintext_len = regular * f + last.map_or(0, |(_, n)| n);
        crate::client::size_for_overwrite(out, plaintext_len);
        let (mut regular_out, final_out) = out.split_at_mut(regular * f);
        let (key, id) = (self.key.as_ref(), self.message_id.as_slice());
        let open = |frame: &FrameRef<'_>, seq: u32, o: &mut [u8]| {
            let aad = BodyAad::new(id, frame.kind, seq, frame.ciphertext.len() as u64);
            key.open_to(&frame.iv, aad.as_bytes(), frame.ciphertext, frame.tag, o).map_err(|_| {
                Error::BodyAuthentication {
                    sequence: seq,
                    reason: "the authentication tag did not verify (tampered or corrupted ciphertext)",
                }
            })
        };
        // Contiguous runs of regular frames, then the final frame as a run of its own, so that it
        // too is opened in parallel: (first frame index, frame count, frames, output).
        let mut runs = Vec::new();
        for r in crate::parallel::split(regular, workers.threads) {
            let (o, tail) = std::mem::take(&mut regular_out).split_at_mut(r.len() * f);
            regular_out = tail;
            runs.push((r.start, r.len(), &input[r.start * regular_size..r.end * regular_size], o));
        }
        if let Some((at, _)) = last {
            runs.push((regular, 1, &input[at..pos], final_out));
        }
        crate::parallel::run(runs, workers, |(first, count, frames, o): (usize, usize, &[u8], &mut [u8])| {
            let (mut at, mut written) = (0, 0);
            for i in 0..count {
                let Ok(Read::Frame(frame, used)) = body::read_frame(&frames[at..], self.frame_len) else {
                    return Err(Error::Internal("a scanned frame no longer parses"));
                };
                let n = frame.ciphertext.len();
                open(&frame, (first + i + 1) as u32, &mut o[written..written + n])?;
                (at, written) = (at + used, written + n);
            }
            Ok(())
        })?;
        if let Some(e) = scan_error {
            return Err(e);
        }
        self.next_seq = (regular + 1) as u32;
        let Some((key, mut hasher, curve)) = self.verifier.take() else {
            self.stage = Stage::Done;
            return Ok(pos);
        };
        self.stage = Stage::Footer;
        hasher.update(&input[..pos]);
        match footer::read(&input[pos..], curve.max_signature_len())? {
            Footer::Need(_) => Err(Error::Truncated { what: self.expecting() }),
            Footer::Signature(sig, used) => {
                if !key.verify_digest(&hasher.finish(), sig) {
                    return Err(Error::Signature("the footer signature does not match the message"));
                }
                self.stage = Stage::Done;
                Ok(pos + used)
            }
        }
    }

    fn open_frame(&mut self, frame: &FrameRef<'_>, out: &mut Vec<u8>) -> Result<usize> {
        let seq = self.next_seq;
        if frame.seq != seq {
            return Err(Error::BodyAuthentication {
                sequence: seq,
                reason: "frame out of sequence (a frame is missing, duplicated or reordered)",
            });
        }
        // The serialized IV is used as the GCM nonce, as the reference SDKs do: GCM authenticates
        // it, so a tampered IV fails the tag check. (Some official KAT messages carry IVs that are
        // not the zero-padded sequence number, and decrypt everywhere.)
        let aad = BodyAad::new(&self.message_id, frame.kind, seq, frame.ciphertext.len() as u64);
        let start = out.len();
        crate::wipe::resize_wiping(out, start + frame.ciphertext.len());
        if self.key.open_to(&frame.iv, aad.as_bytes(), frame.ciphertext, frame.tag, &mut out[start..]).is_err() {
            out.truncate(start);
            return Err(Error::BodyAuthentication {
                sequence: seq,
                reason: "the authentication tag did not verify (tampered or corrupted ciphertext)",
            });
        }
        if frame.kind == body::BodyKind::Regular {
            // A regular frame's number is below 0xFFFFFFFF (that value marks a final frame), so
            // this cannot overflow.
            self.next_seq = seq + 1;
        }
        Ok(frame.ciphertext.len())
    }
}
