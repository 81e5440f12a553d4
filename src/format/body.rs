//! Message body codec: frames, the non-framed block, IVs and body AAD
//! (spec `data-format/message-body.md`, `data-format/message-body-aad.md`).

use crate::error::{Error, Result};
use crate::format::codec::Cursor;

/// Marks a final frame.
pub(crate) const FINAL_FRAME_MARKER: u32 = 0xFFFF_FFFF;
/// Largest non-framed content length (`data-format/message-body.md`).
pub const MAX_NON_FRAMED_CONTENT_LEN: u64 = (1 << 36) - 32;
/// Bytes a regular frame adds to its plaintext: sequence number, IV, tag.
pub const REGULAR_FRAME_OVERHEAD: usize = 4 + 12 + 16;
/// Bytes a final frame adds to its plaintext: marker, sequence number, IV, length, tag.
pub const FINAL_FRAME_OVERHEAD: usize = 4 + 4 + 12 + 4 + 16;
/// Bytes a non-framed body adds: IV, length, tag.
pub const NON_FRAMED_OVERHEAD: usize = 12 + 8 + 16;

/// Which body AAD content string applies (`data-format/message-body-aad.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    NonFramed,
    Regular,
    Final,
}

impl BodyKind {
    const fn content_string(self) -> &'static [u8] {
        match self {
            Self::NonFramed => b"AWSKMSEncryptionClient Single Block",
            Self::Regular => b"AWSKMSEncryptionClient Frame",
            Self::Final => b"AWSKMSEncryptionClient Final Frame",
        }
    }
}

/// Body AAD on the stack: message id (≤ 32) ‖ content string (≤ 35) ‖ seq u32 ‖ length u64.
pub(crate) struct BodyAad {
    buf: [u8; 32 + 35 + 4 + 8],
    len: usize,
}

impl BodyAad {
    pub(crate) fn new(message_id: &[u8], kind: BodyKind, seq: u32, content_len: u64) -> Self {
        let mut buf = [0u8; 32 + 35 + 4 + 8];
        let s = kind.content_string();
        let mut n = 0;
        for part in [message_id, s, &seq.to_be_bytes(), &content_len.to_be_bytes()] {
            buf[n..n + part.len()].copy_from_slice(part);
            n += part.len();
        }
        Self { buf, len: n }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The IV of frame `seq`: the sequence number left-padded with zeros to 12 bytes.
pub(crate) fn frame_iv(seq: u32) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[8..].copy_from_slice(&seq.to_be_bytes());
    iv
}

/// One frame (or the non-framed block) borrowed from the input.
#[derive(Debug)]
pub(crate) struct FrameRef<'a> {
    pub(crate) kind: BodyKind,
    pub(crate) seq: u32,
    pub(crate) iv: [u8; 12],
    pub(crate) ciphertext: &'a [u8],
    pub(crate) tag: &'a [u8],
}

/// Result of trying to read a frame from a buffer.
#[derive(Debug)]
pub(crate) enum Read<'a> {
    /// A complete frame and the bytes it occupied.
    Frame(FrameRef<'a>, usize),
    /// The buffer must hold at least this many bytes (from its start) for the frame.
    Need(usize),
}

/// Reads one frame of a framed body from the start of `input`.
///
/// `frame_len` bounds the final frame's content length: a larger value is an error before any
/// allocation or decryption.
pub(crate) fn read_frame(input: &[u8], frame_len: u32) -> Result<Read<'_>> {
    let mut cur = Cursor::new(input);
    let Ok(first) = cur.u32("frame sequence number") else { return Ok(Read::Need(4)) };
    if first != FINAL_FRAME_MARKER {
        let total = REGULAR_FRAME_OVERHEAD + frame_len as usize;
        if input.len() < total {
            return Ok(Read::Need(total));
        }
        let iv = cur.array::<12>("frame IV")?;
        let ciphertext = cur.take(frame_len as usize, "frame ciphertext")?;
        let tag = cur.take(16, "frame tag")?;
        return Ok(Read::Frame(FrameRef { kind: BodyKind::Regular, seq: first, iv, ciphertext, tag }, total));
    }
    const FIXED: usize = 4 + 4 + 12 + 4;
    if input.len() < FIXED {
        return Ok(Read::Need(FIXED));
    }
    let seq = cur.u32("final frame sequence number")?;
    let iv = cur.array::<12>("final frame IV")?;
    let content_len = cur.u32("final frame content length")?;
    if content_len > frame_len {
        return Err(Error::parse(
            "final frame content length",
            format!("{content_len} is larger than the frame length {frame_len} (frame {seq})"),
        ));
    }
    let total = FINAL_FRAME_OVERHEAD + content_len as usize;
    if input.len() < total {
        return Ok(Read::Need(total));
    }
    let ciphertext = cur.take(content_len as usize, "final frame ciphertext")?;
    let tag = cur.take(16, "final frame tag")?;
    Ok(Read::Frame(FrameRef { kind: BodyKind::Final, seq, iv, ciphertext, tag }, total))
}

/// Reads the non-framed body from the start of `input`, refusing content longer than
/// `max_len` (itself at most [`MAX_NON_FRAMED_CONTENT_LEN`]) before anything is buffered.
pub(crate) fn read_non_framed(input: &[u8], max_len: u64) -> Result<Read<'_>> {
    const FIXED: usize = 12 + 8;
    if input.len() < FIXED {
        return Ok(Read::Need(FIXED));
    }
    let mut cur = Cursor::new(input);
    let iv = cur.array::<12>("body IV")?;
    let content_len = cur.u64("body content length")?;
    if content_len > MAX_NON_FRAMED_CONTENT_LEN {
        return Err(Error::parse("body content length", format!("{content_len} exceeds the format's 2^36-32")));
    }
    if content_len > max_len {
        return Err(Error::LimitExceeded { what: "non-framed body length", value: content_len, limit: max_len });
    }
    let total = FIXED + content_len as usize + 16;
    if input.len() < total {
        return Ok(Read::Need(total));
    }
    let ciphertext = cur.take(content_len as usize, "body ciphertext")?;
    let tag = cur.take(16, "body tag")?;
    Ok(Read::Frame(FrameRef { kind: BodyKind::NonFramed, seq: 1, iv, ciphertext, tag }, total))
}

/// Bytes a frame with `content_len` bytes of content occupies.
pub(crate) fn frame_size(kind: BodyKind, content_len: usize) -> usize {
    content_len + if kind == BodyKind::Final { FINAL_FRAME_OVERHEAD } else { REGULAR_FRAME_OVERHEAD }
}

/// Writes the fixed fields that precede a frame's ciphertext to the start of `out`; returns
/// their length.
pub(crate) fn write_frame_prefix(out: &mut [u8], kind: BodyKind, seq: u32, content_len: usize) -> usize {
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    if kind == BodyKind::Final {
        put(&FINAL_FRAME_MARKER.to_be_bytes());
    }
    put(&seq.to_be_bytes());
    put(&frame_iv(seq));
    if kind == BodyKind::Final {
        put(&(content_len as u32).to_be_bytes());
    }
    at
}

/// Exact length of a framed body carrying `plaintext_len` bytes in frames of `frame_len`, as this
/// crate writes it: full regular frames, then a final frame holding the rest (a full frame when
/// the plaintext is a non-zero multiple of the frame length, as the reference SDKs do).
pub fn framed_body_len(plaintext_len: u64, frame_len: u32) -> u64 {
    let (regular, last) = split_frames(plaintext_len, frame_len.max(1));
    // Saturates instead of overflowing: a length no message can have stays larger than any limit.
    regular
        .saturating_mul(REGULAR_FRAME_OVERHEAD as u64 + frame_len as u64)
        .saturating_add(FINAL_FRAME_OVERHEAD as u64)
        .saturating_add(last)
}

/// Most frames one message may hold (spec `data-format/message-body.md`: sequence numbers start
/// at 1 and the final frame's "MUST be less than or equal to" 2^32 - 1): 2^32 - 2 regular frames
/// and the final one.
pub(crate) const MAX_REGULAR_FRAMES: u64 = u32::MAX as u64 - 1;

/// Whether a plaintext of `plaintext_len` bytes fits one framed message with `frame_len`-byte
/// frames (at most [`MAX_REGULAR_FRAMES`] regular frames plus a final frame of up to one frame).
pub(crate) fn frames_fit(plaintext_len: u64, frame_len: u32) -> bool {
    frame_len > 0 && split_frames(plaintext_len, frame_len).0 <= MAX_REGULAR_FRAMES
}

/// Number of regular frames and the final frame's length for a plaintext.
pub(crate) fn split_frames(plaintext_len: u64, frame_len: u32) -> (u64, u64) {
    let f = frame_len as u64;
    if plaintext_len == 0 {
        return (0, 0);
    }
    let regular = (plaintext_len - 1) / f;
    (regular, plaintext_len - regular * f)
}

#[cfg(test)]
mod frame_bound_tests {
    use super::*;

    #[test]
    fn exactly_the_spec_maximum_of_frames_fits() {
        // message-body.md: "The number of frames in a single message MUST be less than or equal to
        // `2^32 - 1`." and "The Final Frame Sequence number MUST be equal to the total number of
        // frames in the Framed Data.": 2^32 - 2 regular frames and the final one, so
        // (2^32 - 1) full frames are the largest message.
        for f in [1u32, 4096, u32::MAX] {
            let max = u64::from(u32::MAX) * u64::from(f);
            assert!(frames_fit(max, f), "frame length {f}");
            assert_eq!(split_frames(max, f).0, MAX_REGULAR_FRAMES);
            assert!(!frames_fit(max + 1, f), "frame length {f}");
        }
        assert!(frames_fit(0, 1) && !frames_fit(1, 0));
    }

    proptest::proptest! {
        /// Any u64 length and frame length: no overflow, and never smaller than the plaintext.
        #[test]
        fn framed_body_len_never_overflows(len in proptest::prop_oneof![proptest::num::u64::ANY, proptest::strategy::Just(u64::MAX)], frame in 0u32..=u32::MAX) {
            let n = framed_body_len(len, frame);
            proptest::prop_assert!(n >= len);
            let _ = frames_fit(len, frame);
        }
    }
}
