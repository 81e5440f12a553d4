//! Message footer: the ECDSA signature over header and body (spec `data-format/message-footer.md`).

use crate::error::{Error, Result};

/// Outcome of reading the footer from a buffer.
#[derive(Debug)]
pub(crate) enum Footer<'a> {
    /// The DER signature and the bytes the footer occupied.
    Signature(&'a [u8], usize),
    /// The buffer must hold at least this many bytes.
    Need(usize),
}

/// Reads `sig_len u16 ‖ signature`. A length beyond what the curve can produce is refused
/// before waiting for more input.
pub(crate) fn read(input: &[u8], max_signature_len: usize) -> Result<Footer<'_>> {
    if input.len() < 2 {
        return Ok(Footer::Need(2));
    }
    let len = u16::from_be_bytes([input[0], input[1]]) as usize;
    if len == 0 || len > max_signature_len {
        return Err(Error::Signature("the footer's signature length is impossible for this suite's curve"));
    }
    if input.len() < 2 + len {
        return Ok(Footer::Need(2 + len));
    }
    Ok(Footer::Signature(&input[2..2 + len], 2 + len))
}

/// Appends the footer.
pub(crate) fn put(out: &mut Vec<u8>, signature: &[u8]) {
    out.extend_from_slice(&(signature.len() as u16).to_be_bytes());
    out.extend_from_slice(signature);
}

/// Writes the footer into `out`, which must be exactly its length (`2 + signature.len()`).
pub(crate) fn write(out: &mut [u8], signature: &[u8]) -> Result<()> {
    if out.len() != 2 + signature.len() {
        return Err(Error::Internal("signature length differs from the predicted one"));
    }
    out[..2].copy_from_slice(&(signature.len() as u16).to_be_bytes());
    out[2..].copy_from_slice(signature);
    Ok(())
}
